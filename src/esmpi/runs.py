"""A run as offline analysis sees it: ``RunData`` and ``load_run`` (a run directory or a checkpoint file).

Every analysis command (``esmpi info/plot/export/eval/video/robustness``, ``esmpi.paper``) starts here,
so the validated checkpoint load (``esmpi.checkpoint.load``) is the one way in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .policy_io import resolve_checkpoint


@dataclass
class RunData:
    source: Path                 # what the user named
    checkpoint: Path             # the file read
    run_dir: Path | None         # the run directory, when the checkpoint lives in one
    ck: dict                     # esmpi.checkpoint.load(...) result
    config: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
    label: str = ""

    @property
    def attrs(self) -> dict:
        return self.ck["attrs"]

    @property
    def state(self):
        return self.ck["state"]

    @property
    def objective_kind(self) -> str:
        """'gym', 'atari' or 'supervised' (the config's objective.kind)."""
        obj = self.config.get("objective")
        return str(obj.get("kind", "gym")) if isinstance(obj, dict) else "gym"

    @property
    def task(self) -> str:
        """What the run learns, for titles and tables: 'atari-GAME', the env id, or the data set."""
        if self.objective_kind == "atari":
            return f"atari-{(self.config.get('atari') or {}).get('game', 'pong')}"
        if self.objective_kind == "supervised":
            return str((self.config.get("supervised") or {}).get("data", "supervised"))
        return str((self.config.get("env") or {}).get("id", "?"))

    def column(self, key: str) -> np.ndarray:
        return np.array([h.get(key, np.nan) for h in self.history], dtype=np.float64)


def _run_dir_of(checkpoint: Path) -> Path | None:
    if checkpoint.name == "latest.h5" and (checkpoint.parent / "config.toml").is_file():
        return checkpoint.parent
    if checkpoint.parent.name == "checkpoints" and (checkpoint.parent.parent / "config.toml").is_file():
        return checkpoint.parent.parent
    return None


def is_sgd_dir(path: Path) -> bool:
    """An SGD baseline directory (``python -m esmpi.supervised.sgd --out``): config.json and
    progress.jsonl, no checkpoint."""
    return (path.is_dir() and (path / "config.json").is_file() and (path / "progress.jsonl").is_file()
            and not (path / "config.toml").exists())


def load_sgd_run(path: str | Path) -> RunData:
    """An SGD baseline as a ``RunData`` for the curves (no checkpoint: ``ck`` holds empty attrs).

    Its config is mapped onto the ES tables it shares (``strategy.name = "sgd_adam"``, ``run.seed``,
    ``optimizer``, ``[supervised]``), so ``esmpi plot`` draws it beside ES runs and never groups
    it with them. ``null`` values in progress.jsonl (no evaluation that iteration) become NaN."""
    path = Path(path)
    try:
        a = json.loads((path / "config.json").read_text())
        history = [{k: (np.nan if v is None else v) for k, v in json.loads(line).items()}
                   for line in (path / "progress.jsonl").read_text().splitlines() if line.strip()]
    except (OSError, json.JSONDecodeError) as e:
        from .errors import EsmpiError
        raise EsmpiError(f"{path}: not a readable SGD baseline directory ({e}); rerun python -m esmpi.supervised.sgd") from None
    prev = 0.0
    for h in history:   # the per-iteration wall time, for the time panel of the plot
        t = h.get("TimeElapsed", np.nan)
        h.setdefault("TimeElapsedThisIter", t - prev)
        prev = t
    config = {"strategy": {"name": "sgd_adam"}, "run": {"seed": a.get("seed")},
              "objective": {"kind": "supervised"},
              "supervised": {"data": a.get("data"), "net": a.get("net"), "batch_size": a.get("batch_size")},
              "optimizer": {"name": "adam", "stepsize": a.get("stepsize")}, "es": {"l2coeff": a.get("l2coeff")},
              "sgd": {"proxy_rho": a.get("proxy_rho")}}
    return RunData(path, path / "progress.jsonl", path, {"attrs": {}, "state": None, "history": history},
                   config, history, path.name)


def load_progress_run(path: Path) -> RunData:
    """A run directory without checkpoints (e.g. committed results whose checkpoints are too large to
    keep: results/atari/) as a ``RunData`` for the curves: config.toml and progress.jsonl only."""
    import tomllib

    try:
        config = tomllib.loads((path / "config.toml").read_text())
        history = [json.loads(line) for line in (path / "progress.jsonl").read_text().splitlines() if line.strip()]
    except (OSError, ValueError) as e:
        from .errors import EsmpiError
        raise EsmpiError(f"{path}: no checkpoint, and config.toml/progress.jsonl are unreadable ({e})") from None
    return RunData(path, path / "progress.jsonl", path, {"attrs": {}, "state": None, "history": history},
                   config, history, path.name)


def load_run(run: str | Path, checkpoint: str | Path | None = None, history_only: bool = False) -> RunData:
    """The run or checkpoint ``run`` names. ``history_only`` (for curves): a run directory without any
    checkpoint but with config.toml and progress.jsonl is read from those two files."""
    from . import checkpoint as _ck

    source = Path(run)
    if checkpoint is None and is_sgd_dir(source):
        return load_sgd_run(source)
    if (history_only and checkpoint is None and source.is_dir() and not (source / "latest.h5").exists()
            and not list((source / "checkpoints").glob("*.h5")) and (source / "config.toml").is_file()
            and (source / "progress.jsonl").is_file()):
        return load_progress_run(source)
    path = resolve_checkpoint(source, checkpoint)
    ck = _ck.load(path)
    run_dir = source if source.is_dir() else _run_dir_of(path)
    try:
        config = json.loads(ck["config_json"] or "{}")
    except json.JSONDecodeError:
        config = {}
    label = run_dir.name if run_dir is not None else path.stem
    return RunData(source, path, run_dir, ck, config, ck["history"], label)
