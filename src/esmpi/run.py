"""``python -m esmpi.run``: train one job under ``mpiexec -n N`` (any N >= 1).

    python -m esmpi.run [--config jobs/NAME.toml] [--set key=value ...] [--out RUN_DIR]
    python -m esmpi.run --resume RUN_DIR [--set run.generations=N ...]

Without ``--config`` it trains the default job (``jobs/default.toml`` values, which are also the
built-in defaults). The run directory (default ``runs/<env>-s<seed>-<time>``) must not exist:
esmpi never overwrites results.

Signals: SIGTERM, SIGINT, SIGUSR1 on any rank: checkpoint at the next generation boundary and exit
75. SIGUSR2: checkpoint at the next generation boundary and go on.

Exit codes: 0 done; 2 bad input (config, env, run directory, checkpoint, memory, output location),
checked before the run directory is created; 3 replicas diverged; 4 theta became non-finite; 5 a
checkpoint or log could not be written mid-run (disk full, read-only file system; the previous
checkpoint is intact, resume from it); 75 stopped by a signal after writing a checkpoint (also one
of the initial state when the signal came before the first generation), or during the noise-table
fill before anything was written; 1 a crash (every rank is aborted and the failing rank's
traceback is printed).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import signal
import sys
import traceback
from pathlib import Path

from .errors import EsmpiError, RunDirError

EXIT_SIGNALLED = 75  # EX_TEMPFAIL: "try again", what requeueing batch scripts look for


class _Flag:
    """Set by a signal handler; read only at generation boundaries (collectively).
    ``once``: reading it clears it (a request, e.g. 'checkpoint now'), else it stays set ('stop')."""

    def __init__(self, once: bool = False):
        self.set = False
        self.once = once
        self.signum = None

    def __call__(self) -> bool:
        v = self.set
        if self.once:
            self.set = False
        return v

    def handler(self, signum, frame):
        self.set, self.signum = True, signum


class _Signals:
    """Stop/checkpoint requests from signals. Installed before MPI starts (a signal during start-up
    must not kill the rank) and again after ``MPI_Init``, which installs its own SIGUSR1 handler
    and would otherwise swallow the request silently. Restored on exit (``main`` may run in-process)."""

    STOP = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)

    def __init__(self):
        self.stop, self.checkpoint = _Flag(), _Flag(once=True)
        self.previous = {}

    def install(self):
        for sig in self.STOP:
            old = signal.signal(sig, self.stop.handler)
            self.previous.setdefault(sig, old)
        old = signal.signal(signal.SIGUSR2, self.checkpoint.handler)
        self.previous.setdefault(signal.SIGUSR2, old)

    def restore(self):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


# As early as possible when run as a program: before numpy, numba and MPI are loaded.
_EARLY_SIGNALS = None
if __name__ == "__main__":
    _EARLY_SIGNALS = _Signals()
    _EARLY_SIGNALS.install()




def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m esmpi.run", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", "-c", help="TOML job file (see jobs/); default: the built-in default job")
    ap.add_argument("--set", "-s", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config key, value in TOML syntax (e.g. --set es.noise_stdev=0.05); repeatable")
    ap.add_argument("--out", "-o", help="run directory to create (must not exist, unless run.auto_resume = true)")
    ap.add_argument("--resume", "-r", metavar="RUN_DIR",
                    help="continue RUN_DIR from its newest checkpoint, bitwise as if never stopped, at any world size; "
                         "--set may change budgets and cadence only")
    ap.add_argument("--runs-root", default="runs", help="parent of the default run directory (default: runs)")
    ap.add_argument("--quiet", "-q", action="store_true", help="no progress line per generation")
    ap.add_argument("--allow-import", action="append", default=[], metavar="MODULE",
                    help="on --resume: let the checkpoint's env id 'MODULE:Env-vN' import MODULE (a file never "
                         "decides by itself what code runs); repeatable")
    return ap.parse_args(argv)


def _default_run_dir(cfg, root: str) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    name = cfg.task.replace("/", "_").replace(":", "_")
    return Path(root) / f"{name}-s{cfg.run.seed}-{stamp}"


def _agree(comm, fn):
    """Run ``fn`` on every rank; if it raised an EsmpiError on any rank, raise the first one's message on all."""
    err = None
    try:
        out = fn()
    except EsmpiError as e:
        err, out = (type(e).__name__, str(e), e.exit_code), None
    errs = [e for e in comm.allgather_obj(err) if e is not None]
    if errs:
        name, msg, code = errs[0]
        ex = EsmpiError(msg)
        ex.exit_code = code
        raise ex
    return out


def guarded(comm, fn) -> int:
    """Run ``fn()`` (returning an exit code) so that no rank is ever left hanging.

    An EsmpiError is raised identically on every rank (set-up errors are agreed collectively, later
    ones derive from replicated state): rank 0 prints it and every rank returns its exit code.
    Anything else is a crash on *this* rank: print its traceback and abort every rank.
    """
    try:
        return fn()
    except EsmpiError as e:
        if getattr(e, "local", False):   # raised on this rank only (e.g. rank 0 cannot write a checkpoint)
            print(f"esmpi: error: {e}", file=sys.stderr, flush=True)
            if comm.size > 1:
                comm.abort(e.exit_code)
            return e.exit_code
        if comm.rank == 0:
            print(f"esmpi: error: {e}", file=sys.stderr, flush=True)
        return e.exit_code
    except BaseException:
        sys.stderr.write(f"[rank {comm.rank}] esmpi crashed:\n{traceback.format_exc()}")
        sys.stderr.flush()
        if comm.size > 1:
            comm.abort(1)
        return 1


def main(argv=None) -> int:
    signals = _EARLY_SIGNALS or _Signals()
    signals.install()
    args = parse_args(argv)
    try:
        from .comm import make_comm

        comm = make_comm()
        signals.install()
        try:
            return guarded(comm, lambda: _main(args, comm, signals))
        finally:
            comm.free()
    finally:
        signals.restore()


def _main(args, comm, signals) -> int:
    """Check everything (config, run directory, checkpoint, env, policy, memory, output location),
    build the trainer (noise table), and only then create or touch the run directory."""
    import json

    from . import checkpoint, envs, objectives, resume
    from .config import load_config

    if args.resume and args.out:
        raise EsmpiError("give either --resume RUN_DIR (continue a run) or --out RUN_DIR (a new run), not both")
    cfg = None
    if args.config or not args.resume:
        cfg = _agree(comm, lambda: load_config(args.config, args.overrides))

    # ---- where, and fresh or resumed: rank 0 looks at the file system, every rank gets its answer
    def decide_dir():
        if comm.rank != 0:
            return None
        if args.resume:
            d, mode = Path(args.resume), "resume"
            resume.newest_checkpoint(d)          # a missing directory or checkpoint is named first
        else:
            d = Path(args.out) if args.out else _default_run_dir(cfg, args.runs_root)
            if cfg.run.auto_resume and args.out:
                mode = resume.auto_resume_action(d)
            elif not d.exists():
                mode = "fresh"
            elif resume.never_started(d):   # left by a start that failed or was killed before training
                mode = "restart"
            else:
                raise RunDirError(f"run directory {d} already exists; esmpi never overwrites results: choose another "
                                  f"--out, continue it with --resume {d}, or set run.auto_resume = true")
        resume.check_writable(d)
        return str(d), mode

    run_dir, mode = comm.bcast_obj(_agree(comm, decide_dir))
    run_dir = Path(run_dir)

    state = history = None
    resumes: list = []
    time_offset = 0.0
    if mode == "resume":
        # the env id comes from a file: a `module:Env` id imports code only if the user names the module
        envs.restrict_imports(args.allow_import, "--allow-import")
        ck_path = Path(comm.bcast_obj(_agree(comm, lambda: str(resume.newest_checkpoint(run_dir)) if comm.rank == 0 else None)))
        ck = _agree(comm, lambda: checkpoint.load(ck_path))       # every rank reads it: nothing is broadcast
        old_tree = json.loads(ck["config_json"])
        if cfg is None:
            cfg = _agree(comm, lambda: load_config(None, args.overrides, base_tree=old_tree, base_source=str(ck_path)))
        changes = resume.config_changes(old_tree, json.loads(json.dumps(cfg.to_dict())))
        _agree(comm, lambda: resume.check_changes(changes, ck_path))
        state, history = ck["state"], ck["history"]
        time_offset = history[-1]["TimeElapsed"] if history else 0.0
        resumes = resume.load_resumes(ck["attrs"]) + [resume.resume_record(state.generation, comm.size, changes)]
    else:
        envs.restrict_imports(None)   # the user's own config or command line names the env

    objective = _agree(comm, lambda: objectives.make(cfg, comm, str(args.config or run_dir / "config.toml")))
    if state is not None:
        _agree(comm, lambda: resume.check_state_fits(ck_path, state, objective))
    return _train(comm, cfg, objective, run_dir, mode, state, history, time_offset, resumes, signals, args)


def _train(comm, cfg, objective, run_dir, mode, state, history, time_offset, resumes, signals, args) -> int:
    from . import resume
    from .metrics import JsonlSink, ProgressLine
    from .train import SIGNALLED, Trainer

    sinks = [] if args.quiet else [ProgressLine(cfg.run)]
    # the noise table is filled here (a signal during the fill stops every rank: FillInterrupted, exit
    # 75, nothing written); the run directory is touched only once the trainer exists
    trainer = _agree(comm, lambda: Trainer(cfg, objective, comm, run_dir=run_dir, state=state, history=history,
                                           sinks=sinks, stop_requested=signals.stop, time_offset=time_offset,
                                           resumes=resumes, checkpoint_requested=signals.checkpoint))
    _agree(comm, lambda: resume.prepare_run_dir(run_dir, mode, cfg, history) if comm.rank == 0 else None)
    jsonl = JsonlSink(run_dir / "progress.jsonl") if comm.rank == 0 else None
    if jsonl:
        trainer.sinks.append(jsonl)
    if mode == "resume":
        trainer.check_replicas()
    if comm.rank == 0:
        skip = {"seed", "auto_resume"} | ({"target_window"} if cfg.run.target_return is None else set())
        budget = ", ".join(f"{k}={v}" for k, v in cfg.run.model_dump().items() if k not in skip and v)
        what = {"fresh": "run directory", "restart": "restarting (no checkpoint yet) in",
                "resume": f"resuming generation {trainer.state.generation} of"}[mode]
        print(f"esmpi: {cfg.task}, {objective.num_params} parameters, {comm.size} rank(s) "
              f"[{getattr(comm, 'library', '')}], {trainer.strategy.describe()}, "
              f"seed {cfg.run.seed}, budget {budget}\nesmpi: {what} {run_dir}", flush=True)
        if mode == "resume" and resumes[-1]["changes"]:
            print(f"esmpi: config changes on resume: {resumes[-1]['changes']}", flush=True)
    state = trainer.run()
    if jsonl:
        jsonl.close()
    objective.close()
    if comm.rank == 0:
        last = trainer.history[-1] if trainer.history else {}
        print(f"esmpi: done after {state.generation} generations, {state.timesteps_so_far} timesteps; "
              f"last eval {last.get('EvalEpRewMean', float('nan')):.2f}; best eval {trainer.best_eval:.2f}; "
              f"state in {run_dir / 'latest.h5'}", flush=True)
        if cfg.run.target_return is not None and trainer.target_reached():
            print(f"esmpi: target reached: mean eval over the last {cfg.run.target_window} generations "
                  f">= run.target_return = {cfg.run.target_return:g}", flush=True)
    if trainer.stopped_by == SIGNALLED:   # a signal, and the budget is not used up: come back later
        if comm.rank == 0:
            print(f"esmpi: stopped by a signal after a checkpoint (exit {EXIT_SIGNALLED}); continue with "
                  f"--resume {run_dir}", flush=True)
        return EXIT_SIGNALLED
    return 0


if __name__ == "__main__":
    sys.exit(main())
