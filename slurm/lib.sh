# slurm/lib.sh: shared code of the esmpi batch scripts (humanoid_1440.sh, smoke.sh, seeds.sh).
# Sourced by bash, never submitted itself. See docs/cluster.md.
#
#   . "${ESMPI_ROOT:-$SLURM_SUBMIT_DIR}/slurm/lib.sh"
#   esmpi_setup                      # venv, threads, run directory
#   esmpi_main CONFIG [ARGS...]      # run the job step, then exit: done / requeue / fail
#
# Slurm runs a *copy* of the batch script from its spool directory, so the scripts find this file
# through ESMPI_ROOT (default: the directory sbatch was called from, i.e. the repository root).
#
# Environment (all optional):
#   ESMPI_ROOT       repository root: jobs/*.toml and this file          (default: $SLURM_SUBMIT_DIR)
#   ESMPI_VENV       the project's venv; its python and mpiexec are used  (default: $ESMPI_ROOT/.venv)
#   ESMPI_SET        config overrides, space separated: "run.generations=50 es.pairs_per_generation=64"
#                    (no spaces inside a value: policy.hidden=[64,64])
#   ESMPI_CONFIG     job file instead of the script's default
#   ESMPI_RUN_DIR    run directory (default below; must differ per array task)
#   ESMPI_RUNS_ROOT  parent of the default run directory                  (default: runs, relative to the
#                    batch script's working directory, i.e. the submit directory unless --chdir)
#   ESMPI_LAUNCHER   srun (default: srun --mpi=pmi2) or mpiexec (the venv's MPICH hydra, which starts
#                    its proxies with srun inside the allocation)
#   ESMPI_SRUN_ARGS  extra srun arguments, space separated (e.g. "--cpu-bind=cores")
#   ESMPI_SRUN_WAIT  seconds srun lets the other ranks run on after the first one ended (default 120)
#   ESMPI_REQUEUE    1 (default): requeue the job when the step stops on a signal with exit 75; 0: don't
#   ESMPI_RESEND     after a stop request, send SIGUSR1 to the step again every N s while it runs (30; 0: never)
#
# The default run directory is stable across requeues, because Slurm keeps the job id:
#   runs/<job name>-<job id>                  plain job
#   runs/<job name>-<array job id>_<task id>  array task
# and esmpi runs with run.auto_resume=true: a new directory starts fresh, a directory with
# checkpoints resumes from the newest one, bitwise as if never interrupted.
#
# Signals (measured on Slurm 22.05, docs/cluster.md has the table):
#   --signal=B:USR1@N and `scancel --batch --signal=USR1` reach ONLY the batch shell (not srun,
#   not mpiexec, not the ranks). Our trap forwards SIGUSR1 to the step's launcher (srun or
#   mpiexec), and both forward it to every rank. esmpi then finishes the current generation,
#   writes a checkpoint on rank 0 and every rank exits 75; we then `scontrol requeue` the job.
#   scancel / the time limit / preemption send SIGTERM to every process of the job (batch shell,
#   launcher, ranks) and SIGKILL KillWait seconds later: esmpi checkpoints on SIGTERM too if the
#   generation ends in time; the script then exits without requeueing.
#   A TERM is never forwarded as TERM: srun answers SIGTERM with "forcing job termination".
#   Start-up: esmpi installs its handlers only after MPI_Init and its set-up. A SIGUSR1 before
#   MPI_Init kills the ranks (default action): treated as a pre-emption (requeue; auto_resume
#   restarts from the newest checkpoint). One after MPI_Init but before esmpi's handlers is
#   swallowed by MPICH's own SIGUSR1 handler: hence the resend every ESMPI_RESEND seconds.
#
# Exit code of the batch script: 0 the run is done; 75 stopped after a checkpoint (before the first
# generation: a checkpoint of the initial state), stopped during the noise-table fill before anything
# was written (the next start begins afresh), or killed by the forwarded SIGUSR1 during start-up
# (requeued unless ESMPI_REQUEUE=0 or the job is being cancelled, i.e. the batch shell got
# SIGTERM/SIGINT); anything else is the step's failure code (esmpi: 2 bad input, 3 replicas
# diverged, 4 non-finite theta, 5 a checkpoint or log could not be written, e.g. disk full: the
# previous checkpoint is intact; 1 crash) and is not requeued.

ESMPI_EXIT_SIGNALLED=75

esmpi_log() { printf '[esmpi-slurm %s] %s\n' "$(date '+%F %T')" "$*"; }

esmpi_die() {
    esmpi_log "ERROR: $*"
    exit 2
}

# Resolve the repository, the venv, the thread settings and the run directory.
esmpi_setup() {
    ESMPI_ROOT=${ESMPI_ROOT:-${SLURM_SUBMIT_DIR:-$PWD}}
    ESMPI_VENV=${ESMPI_VENV:-$ESMPI_ROOT/.venv}
    [ -d "$ESMPI_ROOT/jobs" ] || esmpi_die "ESMPI_ROOT=$ESMPI_ROOT has no jobs/: submit from the repository root or set ESMPI_ROOT"
    [ -x "$ESMPI_VENV/bin/python" ] || esmpi_die "no python in ESMPI_VENV=$ESMPI_VENV: run 'make setup' or set ESMPI_VENV"
    ESMPI_PYTHON=$ESMPI_VENV/bin/python
    # The venv's interpreter *and* launcher: a system mpiexec or python would silently mismatch.
    export VIRTUAL_ENV=$ESMPI_VENV
    export PATH=$ESMPI_VENV/bin:$PATH
    unset PYTHONHOME
    # One rank per core, each single threaded: no library may start a thread pool of its own.
    export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1
    export VECLIB_MAXIMUM_THREADS=1 NUMEXPR_NUM_THREADS=1
    if [ -z "${ESMPI_RUN_DIR:-}" ]; then
        local name=${SLURM_JOB_NAME:-esmpi}
        name=${name//[^A-Za-z0-9._-]/_}
        if [ -n "${SLURM_ARRAY_JOB_ID:-}" ]; then
            ESMPI_RUN_DIR=${ESMPI_RUNS_ROOT:-runs}/$name-${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}
        else
            ESMPI_RUN_DIR=${ESMPI_RUNS_ROOT:-runs}/$name-${SLURM_JOB_ID:?not inside a Slurm job}
        fi
    fi
    case $ESMPI_RUN_DIR in /*) ;; *) ESMPI_RUN_DIR=$PWD/$ESMPI_RUN_DIR ;; esac
    mkdir -p "$(dirname "$ESMPI_RUN_DIR")"
}

# Run `python -m esmpi.run --config CONFIG --out RUN_DIR --set run.auto_resume=true [ESMPI_SET] ARGS`
# as one job step, forward signals, and exit with the outcome (never returns).
esmpi_main() {
    local config=${ESMPI_CONFIG:-$1}
    shift
    case $config in /*) ;; *) config=$ESMPI_ROOT/$config ;; esac
    [ -f "$config" ] || esmpi_die "config $config not found"
    local -a sets=() launch=() extra=()
    local s
    read -r -a extra <<<"${ESMPI_SET:-}"
    for s in "${extra[@]}"; do sets+=(--set "$s"); done
    case ${ESMPI_LAUNCHER:-srun} in
    srun)
        read -r -a extra <<<"${ESMPI_SRUN_ARGS:-}"
        # --kill-on-bad-exit=0: ranks leave at slightly different times after a signal, and with =1 the
        #   first rank's exit 75 would make srun kill the others (srun then returns 143, not 75).
        # --wait: but if a rank dies (a crash esmpi could not turn into MPI_Abort), end the others
        #   after ESMPI_SRUN_WAIT seconds instead of letting them hang in a collective until the limit.
        launch=(srun --mpi=pmi2 --kill-on-bad-exit=0 --wait="${ESMPI_SRUN_WAIT:-120}" "${extra[@]}")
        ;;
    mpiexec) launch=("$ESMPI_VENV/bin/mpiexec" ${SLURM_NTASKS:+-n "$SLURM_NTASKS"}) ;;
    *) esmpi_die "ESMPI_LAUNCHER=${ESMPI_LAUNCHER} (use srun or mpiexec)" ;;
    esac
    local -a cmd=("${launch[@]}" "$ESMPI_PYTHON" -m esmpi.run --config "$config" --out "$ESMPI_RUN_DIR"
        --set run.auto_resume=true "${sets[@]}" "$@")

    esmpi_log "job ${SLURM_JOB_ID:-?}${SLURM_ARRAY_JOB_ID:+ (array ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID})}" \
        "run ${SLURM_RESTART_COUNT:-0} (SLURM_RESTART_COUNT), ${SLURM_NTASKS:-?} tasks on ${SLURM_JOB_NUM_NODES:-?} node(s)" \
        "${SLURM_JOB_NODELIST:-}, batch shell pid $$"
    esmpi_log "run directory $ESMPI_RUN_DIR"
    esmpi_log "exec: ${cmd[*]}"

    _esmpi_signal=""   # the first signal the batch shell received
    _esmpi_intr=0      # set by a trap: the current `wait` was interrupted
    _esmpi_step=""
    trap '_esmpi_on_signal USR1' USR1
    trap '_esmpi_on_signal TERM' TERM
    trap '_esmpi_on_signal INT' INT
    trap '_esmpi_cleanup' EXIT
    set +e
    "${cmd[@]}" &      # background + wait: a trap runs at once, not after the step ends
    _esmpi_step=$!
    local rc last=""
    while :; do
        _esmpi_intr=0
        wait "$_esmpi_step"
        rc=$?
        # 127: already reaped after an interrupted wait whose status we kept
        if [ "$rc" = 127 ] && [ -n "$last" ]; then rc=$last; break; fi
        if [ "$_esmpi_intr" = 1 ] && [ "$rc" -gt 128 ]; then
            last=$rc
            _esmpi_resend
            continue
        fi
        break
    done
    _esmpi_step=""

    # a rank killed by the forwarded SIGUSR1 itself: srun reports 128+10, mpiexec (hydra) 10
    local killed_by_usr1=$((128 + 10))
    [ "${ESMPI_LAUNCHER:-srun}" = mpiexec ] && killed_by_usr1=10
    local what="stopped after a checkpoint (exit 75)"
    if [ -n "$_esmpi_signal" ] && [ "$rc" = "$killed_by_usr1" ]; then
        # The signal came while the ranks were starting, before esmpi installed its handlers, and
        # SIGUSR1's default action ended them. Nothing is lost that the newest checkpoint lacks
        # (auto_resume resumes from it, or restarts), so this is a pre-emption like exit 75.
        what="killed by SIGUSR1 during start-up, before esmpi could handle it (exit $rc)"
        rc=$ESMPI_EXIT_SIGNALLED
    fi

    case $rc in
    0)
        esmpi_log "step finished (exit 0): run complete in $ESMPI_RUN_DIR"
        exit 0
        ;;
    "$ESMPI_EXIT_SIGNALLED")
        if [ "$_esmpi_signal" = TERM ] || [ "$_esmpi_signal" = INT ]; then
            esmpi_log "step $what on SIG$_esmpi_signal: the job is being" \
                "cancelled, timed out or preempted by Slurm, so not requeueing it here"
        elif [ "${ESMPI_REQUEUE:-1}" != 1 ]; then
            esmpi_log "step $what; ESMPI_REQUEUE=${ESMPI_REQUEUE}: not requeueing"
        elif [ -z "${SLURM_JOB_ID:-}" ]; then
            esmpi_log "step $what; not in a Slurm job: nothing to requeue"
        else
            esmpi_log "step $what: scontrol requeue $SLURM_JOB_ID"
            # Requeueing ends this run (Slurm sends SIGTERM to the job): exit whatever arrives.
            trap 'exit 75' TERM USR1 INT
            if scontrol requeue "$SLURM_JOB_ID"; then
                esmpi_log "requeued; the next run resumes from the newest checkpoint in $ESMPI_RUN_DIR"
            else
                esmpi_log "scontrol requeue failed (submitted with --no-requeue?); resume with: sbatch <this script>" \
                    "with ESMPI_RUN_DIR=$ESMPI_RUN_DIR"
            fi
        fi
        exit "$ESMPI_EXIT_SIGNALLED"
        ;;
    *)
        esmpi_log "step FAILED with exit code $rc: not requeueing (see the esmpi error above)"
        exit "$rc"
        ;;
    esac
}

# After a stop request: while the step runs, send SIGUSR1 again every ESMPI_RESEND seconds. A signal
# that reaches a rank after MPI_Init but before esmpi installs its handlers is swallowed by MPICH's
# own SIGUSR1 handler; esmpi ignores repeats, so resending is safe and catches that case.
_esmpi_resend() {
    local every=${ESMPI_RESEND:-30} t=0
    [ "$every" -gt 0 ] 2>/dev/null || return 0
    while [ -n "$_esmpi_step" ] && kill -0 "$_esmpi_step" 2>/dev/null; do
        sleep 1
        t=$((t + 1))
        if [ $((t % every)) = 0 ] && kill -0 "$_esmpi_step" 2>/dev/null; then
            esmpi_log "step still running ${t}s after the stop request: sending SIGUSR1 again"
            kill -USR1 "$_esmpi_step" 2>/dev/null
        fi
    done
}

# Trap: remember the signal and ask the step to checkpoint and stop. esmpi treats SIGUSR1, SIGTERM
# and SIGINT alike, but only SIGUSR1 is safe to hand to srun (it answers SIGTERM/SIGINT itself).
_esmpi_on_signal() {
    _esmpi_intr=1
    [ -n "$_esmpi_signal" ] || _esmpi_signal=$1
    if [ -n "$_esmpi_step" ] && kill -0 "$_esmpi_step" 2>/dev/null; then
        esmpi_log "batch shell got SIG$1: forwarding SIGUSR1 to the job step (launcher pid $_esmpi_step);" \
            "esmpi checkpoints at the end of the current generation and exits 75"
        kill -USR1 "$_esmpi_step" 2>/dev/null
    else
        esmpi_log "batch shell got SIG$1 (no running step)"
    fi
}

# EXIT trap: proctrack/linuxproc lets a background child outlive the batch shell, so never leave
# the launcher behind (normally it has already exited here).
_esmpi_cleanup() {
    local i
    if [ -n "${_esmpi_step:-}" ] && kill -0 "$_esmpi_step" 2>/dev/null; then
        esmpi_log "batch shell exiting with the step still running: stopping launcher pid $_esmpi_step"
        kill -TERM "$_esmpi_step" 2>/dev/null
        for ((i = 0; i < 50; i++)); do kill -0 "$_esmpi_step" 2>/dev/null || return 0; sleep 0.2; done
        kill -KILL "$_esmpi_step" 2>/dev/null
    fi
    return 0
}
