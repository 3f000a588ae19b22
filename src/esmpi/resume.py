"""Resuming a run: find its newest checkpoint and decide which config changes are allowed.

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
    foreign = [p.name for p in run_dir.iterdir() if p.name not in OWN_FILES]
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
