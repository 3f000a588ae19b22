#!/usr/bin/env bash
# slurm-local.sh - throw-away single-node Slurm cluster on localhost, used by
# CI to run the project's `sbatch` scripts for real.  Debian 12 (Slurm 22.05),
# needs root; needs neither systemd nor cgroups.
#
#   scripts/slurm-local.sh start    install packages if missing, write config,
#                                   start a private munged, slurmctld and one
#                                   slurmd; return once the node is idle.
#                                   Prints `export SLURM_CONF=...` on stdout.
#   scripts/slurm-local.sh stop     cancel all jobs, stop the daemons this script
#                                   started (by recorded pid).
#   scripts/slurm-local.sh status   daemons, sinfo, squeue.
#   scripts/slurm-local.sh purge    stop, then delete config, state and logs.
#
# Both start and stop are idempotent.  Clients select this cluster with
#   . "$ESMPI_SLURM_BASE/env.sh"        (i.e. export SLURM_CONF=.../etc/slurm.conf)
# /etc/slurm is never touched.
#
# Exit codes: 0 ok, 1 cluster failed to come up / other error, 2 usage,
#             3 cannot run here (not root, no apt-get, install failed).
#
# Knobs (environment):
#   ESMPI_SLURM_BASE        work dir                          (/tmp/esmpi-slurm)
#   ESMPI_SLURM_CPUS        CPUs advertised by the node       (4; may exceed the
#                           real count: SlurmdParameters=config_overrides)
#   ESMPI_SLURM_PORT        slurmctld port; slurmd uses +1    (6817)
#   ESMPI_SLURM_TIMEOUT     seconds to wait for the node      (60)
#   ESMPI_SLURM_NO_INSTALL  1 = never call apt-get
#
# Job-script gotchas this cluster shares with real ones (see
# /work/shared/notes/slurm-local.md): MpiDefault=pmi2 because the pip `mpich`
# wheel has no PMIx; `--signal=B:SIG` reaches only the batch shell; a requeued
# job is held 120 s unless `scontrol update JobId=N StartTime=now`, sent once it
# is PENDING and in a later second than the requeue (else slurmd rejects the
# relaunch with "Job credential revoked" and the job ends FAILED);
# proctrack/linuxproc lets background children of a finished batch shell
# survive, so job scripts must kill their children in their traps.
set -euo pipefail
umask 022 # the munge user must be able to traverse $BASE

BASE=${ESMPI_SLURM_BASE:-/tmp/esmpi-slurm}
CPUS=${ESMPI_SLURM_CPUS:-4}
PORT=${ESMPI_SLURM_PORT:-6817}
TIMEOUT=${ESMPI_SLURM_TIMEOUT:-60}
NODE=$(hostname -s)

ETC=$BASE/etc RUN=$BASE/run LOG=$BASE/log STATE=$BASE/state
SPOOL=$BASE/spool MUNGE=$BASE/munge
CONF=$ETC/slurm.conf
MUNGE_SOCK=$MUNGE/munge.socket.2
export SLURM_CONF=$CONF

log() { echo "[slurm-local] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
cannot() { log "CANNOT RUN HERE: $*"; exit 3; }

# Print the pid recorded in pidfile $1 if it is alive and its comm is $2
# (so a recycled pid is never mistaken for our daemon).
live_pid() {
    local pid
    pid=$(cat "$1" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ] || return 1
    echo "$pid"
}

wait_live() { # $1=pidfile $2=comm; up to 10 s
    local i
    for ((i = 0; i < 100; i++)); do live_pid "$1" "$2" >/dev/null && return 0; sleep 0.1; done
    return 1
}

# SIGTERM the daemon recorded in pidfile $1 (comm $2), SIGKILL after $3 s.
stop_daemon() {
    local pid i
    if pid=$(live_pid "$1" "$2"); then
        log "stopping $2 (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < $3 * 10; i++)); do
            [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ] || break
            sleep 0.1
        done
        if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ]; then
            log "$2 (pid $pid) ignored SIGTERM for $3 s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$1"
}

install_packages() {
    local pkgs=(slurmctld slurmd slurm-client munge) missing=() p
    for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "${ESMPI_SLURM_NO_INSTALL:-0}" = 1 ] && cannot "missing packages ${missing[*]} and ESMPI_SLURM_NO_INSTALL=1"
    command -v apt-get >/dev/null || cannot "missing packages ${missing[*]} and no apt-get (Debian/Ubuntu only)"
    log "apt-get install ${missing[*]} (log: $BASE/apt.log)"
    export DEBIAN_FRONTEND=noninteractive
    # Postinst scripts may try to start the system services; without systemd
    # (policy-rc.d exit 101) they do not, and they would not be ours anyway.
    if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >"$BASE/apt.log" 2>&1; then
        log "install failed; apt-get update and retry"
        { apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; } >>"$BASE/apt.log" 2>&1 ||
            { tail -n 15 "$BASE/apt.log" >&2; cannot "apt-get install ${missing[*]} failed"; }
    fi
}

write_config() {
    local mem
    mem=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
    [ -n "$mem" ] || die "slurmd -C reported no RealMemory"
    cat >"$CONF.new" <<EOF
# generated by scripts/slurm-local.sh: one-node localhost cluster for CI
ClusterName=esmpi-local
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCK
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$STATE
SlurmdSpoolDir=$SPOOL
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
# no systemd, no cgroups
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
# no slurmdbd, so no sacct: read results with scontrol show job (kept
# MinJobAge s) or from the jobcomp file
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$LOG/jobcomp.txt
MinJobAge=600
# pip mpich has PMI-1/2 only; with MpiDefault=none each srun task of an MPI
# program would silently run as a singleton
MpiDefault=pmi2
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
# start batch jobs on the next 1 s tick instead of every 3 s
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
# reject impossible requests (-n too large) at submit time, not PENDING forever
EnforcePartLimits=ALL
# advertise more CPUs than the machine has
SlurmdParameters=config_overrides
ReturnToService=2
KillWait=10
MailProg=/bin/true
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS Sockets=1 CoresPerSocket=$CPUS ThreadsPerCore=1 RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    CONF_CHANGED=0
    if cmp -s "$CONF.new" "$CONF"; then
        rm -f "$CONF.new"
    else
        mv "$CONF.new" "$CONF"
        CONF_CHANGED=1
    fi
}

start_munge() {
    live_pid "$MUNGE/munged.pid" munged >/dev/null && return 0
    # Private munged with its own key and socket; a system munged is left alone.
    # The socket dir must be o+x (0755) or munged refuses it.
    install -d -o munge -g munge -m 0755 "$MUNGE"
    runuser -u munge -- test -w "$MUNGE" ||
        fail_start "user munge cannot reach $MUNGE; put ESMPI_SLURM_BASE under a world-traversable dir"
    [ -s "$MUNGE/munge.key" ] || runuser -u munge -- mungekey --create --keyfile="$MUNGE/munge.key"
    runuser -u munge -- /usr/sbin/munged --socket="$MUNGE_SOCK" \
        --key-file="$MUNGE/munge.key" --pid-file="$MUNGE/munged.pid" \
        --log-file="$MUNGE/munged.log" --seed-file="$MUNGE/munged.seed"
    wait_live "$MUNGE/munged.pid" munged || fail_start "munged did not start"
    munge -S "$MUNGE_SOCK" -n | unmunge -S "$MUNGE_SOCK" >/dev/null || fail_start "munge self-test failed"
}

# Start failed: show the logs, stop whatever we started, exit 1.
fail_start() {
    log "ERROR: $*"
    tail -n 15 "$LOG/slurmctld.log" "$LOG/slurmd.log" "$MUNGE/munged.log" >&2 2>/dev/null || true
    stop
    exit 1
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

node_state() { sinfo -h -N -n "$NODE" -o %T 2>/dev/null | head -n 1; }

start() {
    [ "$(id -u)" = 0 ] || cannot "must run as root (slurmd and munged need it)"
    mkdir -p "$ETC" "$RUN" "$LOG" "$STATE" "$SPOOL"
    install_packages
    write_config
    if [ "$CONF_CHANGED" = 1 ] && live_pid "$RUN/slurmctld.pid" slurmctld >/dev/null; then
        # node CPUs etc. need a restart, not just `scontrol reconfigure`
        log "config changed while running: restarting the cluster"
        stop
    fi
    start_munge
    if ! live_pid "$RUN/slurmctld.pid" slurmctld >/dev/null; then
        port_free "$PORT" || fail_start "port $PORT is in use (another Slurm?); set ESMPI_SLURM_PORT"
        log "starting slurmctld"
        slurmctld -f "$CONF" # daemonizes and writes its pid file
        wait_live "$RUN/slurmctld.pid" slurmctld || fail_start "slurmctld did not start"
    fi
    if ! live_pid "$RUN/slurmd.pid" slurmd >/dev/null; then
        port_free $((PORT + 1)) || fail_start "port $((PORT + 1)) is in use (another slurmd?); set ESMPI_SLURM_PORT"
        log "starting slurmd (node $NODE, $CPUS CPUs)"
        slurmd -f "$CONF" -N "$NODE"
        wait_live "$RUN/slurmd.pid" slurmd || fail_start "slurmd did not start"
    fi
    local i state=""
    for ((i = 0; i < TIMEOUT * 5; i++)); do
        state=$(node_state) || true
        case "$state" in
        idle | mixed | allocated | completing) break ;; # busy: re-run on a live cluster
        down* | drain* | fail*) scontrol update NodeName="$NODE" State=RESUME 2>/dev/null || true ;;
        esac
        sleep 0.2
    done
    case "$state" in
    idle | mixed | allocated | completing) ;;
    *) fail_start "node $NODE not ready after ${TIMEOUT}s (state: ${state:-none})" ;;
    esac
    printf 'export SLURM_CONF=%q\n' "$CONF" >"$BASE/env.sh"
    log "cluster up: node $NODE $state, $CPUS CPUs; logs in $LOG"
    cat "$BASE/env.sh"
}

stop() {
    local i
    if live_pid "$RUN/slurmctld.pid" slurmctld >/dev/null &&
        [ -n "$(squeue -h -o %A 2>/dev/null)" ]; then
        # otherwise slurmstepd and job processes outlive slurmd
        log "cancelling all jobs"
        scancel $(squeue -h -o %A 2>/dev/null) 2>/dev/null || true
        for ((i = 0; i < 150; i++)); do
            [ -z "$(squeue -h -t PD,R,CG,S,CF -o %A 2>/dev/null)" ] && break
            sleep 0.1
        done
    fi
    stop_daemon "$RUN/slurmd.pid" slurmd 30
    # slurmctld and munged each take ~2 s to exit: stop them in parallel
    stop_daemon "$RUN/slurmctld.pid" slurmctld 30 &
    stop_daemon "$MUNGE/munged.pid" munged 10 &
    wait
    log "stopped"
}

status() {
    local d p rc=0
    for d in munged slurmctld slurmd; do
        if p=$(live_pid "$RUN/$d.pid" "$d" || live_pid "$MUNGE/$d.pid" "$d"); then
            echo "$d: running (pid $p)"
        else
            echo "$d: not running"
            rc=1
        fi
    done
    if live_pid "$RUN/slurmctld.pid" slurmctld >/dev/null; then
        sinfo
        squeue
    fi
    return $rc
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) status ;;
purge)
    stop
    rm -rf "$ETC" "$RUN" "$LOG" "$STATE" "$SPOOL" "$MUNGE" "$BASE/env.sh" "$BASE/apt.log"
    rmdir "$BASE" 2>/dev/null || true
    ;;
*)
    echo "usage: $0 start|stop|status|purge" >&2
    exit 2
    ;;
esac
