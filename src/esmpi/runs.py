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

    def column(self, key: str) -> np.ndarray:
        return np.array([h.get(key, np.nan) for h in self.history], dtype=np.float64)


def _run_dir_of(checkpoint: Path) -> Path | None:
    if checkpoint.name == "latest.h5" and (checkpoint.parent / "config.toml").is_file():
        return checkpoint.parent
    if checkpoint.parent.name == "checkpoints" and (checkpoint.parent.parent / "config.toml").is_file():
        return checkpoint.parent.parent
    return None


def load_run(run: str | Path, checkpoint: str | Path | None = None) -> RunData:
    from . import checkpoint as _ck

    source = Path(run)
    path = resolve_checkpoint(source, checkpoint)
    ck = _ck.load(path)
    run_dir = source if source.is_dir() else _run_dir_of(path)
    try:
        config = json.loads(ck["config_json"] or "{}")
    except json.JSONDecodeError:
        config = {}
    label = run_dir.name if run_dir is not None else path.stem
    return RunData(source, path, run_dir, ck, config, ck["history"], label)
