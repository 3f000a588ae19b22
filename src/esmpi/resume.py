"""Resuming a run and taking its directory: find the newest checkpoint, decide which config changes
are allowed, check a run directory before use (writable, never started, stale temporary files)
and create or update it (``prepare_run_dir``, the last step of start-up).

A run continues bitwise identically to an uninterrupted one, at any world size, because the state
in the checkpoint is complete and every random draw of generation g is addressed by (seed, g).

Keys in ``ALLOWED_CHANGES`` may differ on resume (budgets, cadence, evaluation count: nothing
that feeds theta); each change is recorded in the checkpoint's ``resumes_json`` attribute. Any
other change (env, policy shape, noise table, seed, sigma, ...) would silently make a different
run, so it is refused with a message listing each key, its old and new value.
"""

from __future__ import annotations

import json
from pathlib import Path

from .config import flatten
from .errors import CheckpointError, ConfigError, RunDirError

ALLOWED_CHANGES = {
    "run.generations", "run.max_timesteps", "run.max_seconds", "run.auto_resume", "run.target_return",
    "run.target_window",
    "checkpoint.every", "checkpoint.keep_last", "checks.replica_check_every", "es.eval_episodes",
    "ga.test_episodes",
}

OWN_FILES = {"config.toml", "progress.jsonl", "checkpoints", "latest.h5"}


def config_changes(old: dict, new: dict) -> dict:
    """{dotted key: (old, new)} for every key whose value differs. A key the old config lacks (written
    by an esmpi that did not have it yet, e.g. ``strategy.name`` before strategies) counts as its default."""
    from .config import Config

    defaults = flatten(Config().model_dump(mode="python"))
    a, b = flatten(old), flatten(new)
    a = {**{k: v for k, v in defaults.items() if k in b}, **a}
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def check_changes(changes: dict, checkpoint_path) -> None:
    bad = {k: v for k, v in changes.items() if k not in ALLOWED_CHANGES}
    if "objective.kind" in bad:   # e.g. an Atari run directory resumed with a MuJoCo job: one line, not 30 keys
        old, new = bad["objective.kind"]
        raise ConfigError(f"resuming {checkpoint_path}: it holds an objective.kind = {old!r} run, the job is "
                          f"objective.kind = {new!r} (an Atari checkpoint cannot continue as a gym/MuJoCo run or "
                          "back); start a new run (--out NEW_DIR) or resume with the run's own config.toml")
    if bad:
        lines = "\n".join(f"  {k}: {o!r} -> {n!r}" for k, (o, n) in bad.items())
        raise ConfigError(f"resuming {checkpoint_path}: these keys cannot change without making a different run:\n"
                          f"{lines}\nStart a new run (--out NEW_DIR) instead; keys that may change on resume: "
                          f"{', '.join(sorted(ALLOWED_CHANGES))}")


def checkpoint_files(run_dir: Path) -> list[Path]:
    """Periodic checkpoints of a run, oldest first (temporary files of interrupted writes ignored)."""
    return sorted(p for p in (Path(run_dir) / "checkpoints").glob("gen_*.h5") if p.name[4:10].isdigit())


def newest_checkpoint(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"--resume {run_dir}: no such run directory")
    files = checkpoint_files(run_dir)
    if not files:
        raise CheckpointError(f"--resume {run_dir}: no checkpoint in {run_dir / 'checkpoints'} (the run stopped before "
                              "its first checkpoint); start it again with --out and run.auto_resume = true")
    return files[-1]


def auto_resume_action(run_dir: Path) -> str:
    """For ``run.auto_resume``: 'fresh' (no directory), 'resume' (has checkpoints), 'restart' (our
    directory, but the run died before its first checkpoint). Anything else is refused."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        return "fresh"
    if checkpoint_files(run_dir):
        return "resume"
    foreign = [p.name for p in run_dir.iterdir() if p.name not in OWN_FILES and not _is_stale(p.name)]
    if foreign:
        raise RunDirError(f"run directory {run_dir} exists, has no esmpi checkpoint and holds other files "
                          f"({', '.join(sorted(foreign)[:5])}); refusing to use it: choose another --out")
    return "restart"


def resume_record(generation: int, world_size: int, changes: dict) -> dict:
    import datetime as _dt
    return {"generation": generation, "world_size": world_size,
            "time_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "changes": {k: [o, n] for k, (o, n) in changes.items()}}


def load_resumes(attrs: dict) -> list:
    try:
        return json.loads(attrs.get("resumes_json", "[]"))
    except json.JSONDecodeError:
        return []


# ---------------------------------------------------------------- the run directory before it is used
def never_started(run_dir: Path) -> bool:
    """True for a directory an earlier start made but never trained in (killed or failed before its
    first generation): only esmpi's own files, no checkpoint, no logged generation. Reusing it loses
    nothing."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir() or checkpoint_files(run_dir) or (run_dir / "checkpoints" / "best.h5").exists():
        return False
    names = {p.name for p in run_dir.iterdir() if not _is_stale(p.name)}
    if not names <= OWN_FILES:
        return False
    jl = run_dir / "progress.jsonl"
    return not (jl.is_file() and jl.stat().st_size > 0)


def check_writable(run_dir: Path) -> None:
    """Refuse a run directory that cannot be created or written: it, or its nearest existing
    ancestor, must be a writable directory on a writable, not full, file system. Checked before
    anything is built."""
    import errno
    import os

    run_dir = Path(run_dir)
    anc = run_dir.absolute()
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise RunDirError(f"run directory {run_dir}: {anc} is not a directory ({os.strerror(errno.ENOTDIR)})")
    st = os.statvfs(anc)
    if st.f_flag & os.ST_RDONLY:
        raise RunDirError(f"run directory {run_dir}: {anc} is on a read-only file system; choose another --out")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise RunDirError(f"run directory {run_dir}: no permission to create it in {anc}; choose another --out")
    if st.f_bavail * st.f_frsize < 1 << 20:
        raise RunDirError(f"run directory {run_dir}: the file system of {anc} is full "
                          f"({st.f_bavail * st.f_frsize} bytes free); free space or choose another --out")


def _is_stale(name: str) -> bool:
    return ".tmp-" in name or name.endswith(".tmp")


def remove_stale_files(run_dir: Path) -> list[str]:
    """Remove temporary files of writes that were killed (``*.tmp-<pid>``, ``*.tmp``) and repoint a
    ``latest.h5`` whose target is gone to the newest checkpoint. Returns the names removed. Called by
    rank 0 when it takes the run directory, so no writer of this run is active."""
    run_dir = Path(run_dir)
    removed = []
    for d in (run_dir, run_dir / "checkpoints"):
        if d.is_dir():
            for p in sorted(d.iterdir()):
                if _is_stale(p.name) and (p.is_file() or p.is_symlink()):
                    p.unlink()
                    removed.append(str(p.relative_to(run_dir)))
    latest = run_dir / "latest.h5"
    if latest.is_symlink() and not latest.exists():
        files = checkpoint_files(run_dir)
        latest.unlink()
        if files:
            latest.symlink_to(files[-1].relative_to(run_dir))
    return removed


def check_state_fits(checkpoint_path, state, objective) -> None:
    """The checkpoint's arrays against the env and policy built from its config (the file may be
    self-consistent and still not fit: another env version, another observation size)."""
    if state.theta.size != objective.num_params:
        raise CheckpointError(f"{checkpoint_path}: theta has {state.theta.size} parameters but the policy built "
                              f"from its config has {objective.num_params}; the env or policy code changed")
    if state.obs.sum.size != objective.obs_dim:
        raise CheckpointError(f"{checkpoint_path}: observation statistics have size {state.obs.sum.size} but the "
                              f"env observes {objective.obs_dim} values")


def prepare_run_dir(run_dir: Path, mode: str, cfg, history) -> None:
    """Rank 0: create (fresh) or update (resume, restart) the run directory. Everything before this
    only read; a failure here removes what this call created."""
    from .config import dump_config
    from .metrics import JsonlSink

    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=mode != "fresh")
        stale = remove_stale_files(run_dir)
        if stale:
            print(f"esmpi: removed {len(stale)} temporary file(s) of an interrupted write: {', '.join(stale)}",
                  flush=True)
        _atomic_write(run_dir / "config.toml", dump_config(cfg))
        # the checkpoint's history is the truth: generations logged after it are recomputed identically
        jl = run_dir / "progress.jsonl"
        if mode == "resume":
            _atomic_write(jl, "".join(JsonlSink.line(h) for h in history))
        elif jl.exists():
            jl.unlink()
    except OSError as e:
        if created:
            import shutil
            shutil.rmtree(run_dir, ignore_errors=True)
        raise RunDirError(f"run directory {run_dir}: cannot write {e.filename or run_dir}: {e.strerror}") from None


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
