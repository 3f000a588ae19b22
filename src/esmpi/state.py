"""``TrainState``: everything a run needs to continue, and the one generic walk over it.

A ``TrainState`` is the strategy's own frozen dataclass (theta and optimizer for OpenAI-ES, genomes
for the GA, members and archive for novelty search, ...), the observation statistics and the loop's
counters. Nothing the run needs lives anywhere else, and no layout is hand-listed:

- ``walk(state)`` yields ``(path, value)`` for every leaf in a fixed order (dataclass field order,
  sorted dict keys, list position): numpy arrays and Python scalars (int, float, bool, str);
- ``digest(state)`` hashes that walk (path, dtype, shape and bytes of every leaf), so a new field is
  covered by construction (the replica check and the resume tests use it);
- ``rebuild(template, read)`` builds a state of the template's shape from a reader of paths,
  checking every leaf against the template: an array's dtype, shape (axes marked ``VAR`` may differ
  in length) and finiteness (unless marked ``NONFINITE``), a scalar's type. ``checkpoint.py`` writes
  and reads HDF5 through these two functions.

Field metadata: ``field(metadata=VAR)`` for arrays whose first axis grows (an archive, genomes),
``NONFINITE`` for arrays that may hold +-inf/NaN (a best return that is still -inf), ``NONNEG`` for
arrays that are never negative (second moments, sums of squares).
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, Callable, Iterator

import numpy as np

from .obs_norm import ObsStats

VAR = {"var": True}
NONFINITE = {"nonfinite": True}
VAR_NONFINITE = {"var": True, "nonfinite": True}
NONNEG = {"nonneg": True}


@dataclass(frozen=True)
class TrainState:
    strategy: Any                 # the strategy's state dataclass; its ``theta`` is the policy to deploy
    obs: ObsStats                 # obs_dim may be 0 (no normalisation)
    generation: int = 0           # generations completed
    episodes_so_far: int = 0      # training episodes (evaluation episodes not included, as in the reference)
    timesteps_so_far: int = 0
    cutoff: int = 0               # current episode step limit (adaptive cutoff state)
    extra: dict = dataclasses.field(default_factory=dict)   # objective state, e.g. a VBN reference batch

    @property
    def theta(self) -> np.ndarray:
        """(d,) float32: the parameters a user deploys (ES: the mean; GA: the elite; NS: the best member)."""
        return self.strategy.theta


Leaf = Any


def walk(obj, prefix: str = "", meta=None) -> Iterator[tuple[str, Leaf, dict]]:
    """``(path, leaf, metadata)`` for every leaf of a state, in a fixed order."""
    meta = meta or {}
    if is_dataclass(obj):
        for f in fields(obj):
            yield from walk(getattr(obj, f.name), f"{prefix}/{f.name}", dict(f.metadata))
    elif isinstance(obj, dict):
        for k in sorted(obj):
            yield from walk(obj[k], f"{prefix}/{k}", meta)
    elif isinstance(obj, (list, tuple)):
        for i, x in enumerate(obj):
            yield from walk(x, f"{prefix}/{i}", meta)
    elif isinstance(obj, (np.ndarray, int, float, bool, str, np.integer, np.floating)):
        yield prefix, obj, meta
    else:
        raise TypeError(f"state field {prefix} has unsupported type {type(obj).__name__}")


def digest(state) -> bytes:
    """sha256 of every leaf (path, dtype, shape, bytes): equal digests == bitwise-equal replicas."""
    h = hashlib.sha256()
    for path, v, _ in walk(state):
        h.update(path.encode())
        if isinstance(v, np.ndarray):
            h.update(f"{v.dtype.str}{v.shape}".encode())
            h.update(np.ascontiguousarray(v).tobytes())
        else:
            h.update(f"{type(v).__name__}:{v!r}".encode())
    return h.digest()


class StateError(ValueError):
    """A leaf read back does not match the template. ``path`` names it, ``kind`` is 'dataset' (an
    array) or 'attribute' (a scalar), ``what`` says what is wrong and what was expected."""

    def __init__(self, path: str, kind: str, what: str):
        super().__init__(f"{kind} '{path}' {what}")
        self.path, self.kind, self.what = path, kind, what


def check_leaf(path: str, got, want, meta: dict):
    """``got`` as the template leaf ``want`` demands, or StateError naming ``path``."""
    if isinstance(want, np.ndarray):
        def bad(what):
            raise StateError(path, "dataset", what)
        if not isinstance(got, np.ndarray):
            bad(f"is a {type(got).__name__}, expected a {want.dtype} array of shape {want.shape}")
        if got.dtype != want.dtype:
            bad(f"has dtype {got.dtype}, expected {want.dtype}")
        same = got.shape == want.shape or (meta.get("var") and got.ndim == want.ndim and got.shape[1:] == want.shape[1:])
        if not same:
            expect = ("(N, " + ", ".join(map(str, want.shape[1:])) + ")") if meta.get("var") else str(want.shape)
            bad(f"has shape {got.shape}, expected {expect}")
        if got.dtype.kind == "f" and not meta.get("nonfinite") and not np.all(np.isfinite(got)):
            bad(f"holds {int(np.sum(~np.isfinite(got)))} NaN/inf value(s); a saved state is always finite "
                "(the file is damaged)")
        if meta.get("nonneg") and np.any(got < 0):
            bad("holds negative values, expected >= 0 (the file is damaged)")
        return got

    def wrong(expected):
        raise StateError(path, "attribute", f"is {got!r} ({type(got).__name__}), expected {expected}")
    if isinstance(want, (bool, np.bool_)):
        if not isinstance(got, (bool, np.bool_)):
            wrong("a boolean")
        return bool(got)
    if isinstance(want, (int, np.integer)):
        if isinstance(got, (bool, np.bool_)) or not isinstance(got, (int, np.integer)):
            wrong("an integer")
        if int(got) < 0:
            wrong("a non-negative integer")
        return int(got)
    if isinstance(want, (float, np.floating)):
        if isinstance(got, (bool, np.bool_)) or not isinstance(got, (int, float, np.integer, np.floating)):
            wrong("a number")
        if not meta.get("nonfinite") and not np.isfinite(got):
            wrong("a finite number")
        return float(got)
    if isinstance(want, str):
        if not isinstance(got, str):
            wrong("a string")
        return got
    raise TypeError(f"unsupported template leaf at {path}")   # pragma: no cover


def rebuild(template, read: Callable[[str], Leaf], prefix: str = "", meta=None):
    """A state shaped like ``template`` whose leaves come from ``read(path)``, each checked by ``check_leaf``.

    ``read`` raises ``KeyError`` for a missing path; lists and dicts take their keys from the template
    (their lengths and keys are fixed by the config and the objective).
    """
    meta = meta or {}
    if is_dataclass(template):
        kwargs = {f.name: rebuild(getattr(template, f.name), read, f"{prefix}/{f.name}", dict(f.metadata))
                  for f in fields(template)}
        return dataclasses.replace(template, **kwargs)
    if isinstance(template, dict):
        return {k: rebuild(v, read, f"{prefix}/{k}", meta) for k, v in template.items()}
    if isinstance(template, (list, tuple)):
        out = [rebuild(x, read, f"{prefix}/{i}", meta) for i, x in enumerate(template)]
        return type(template)(out) if isinstance(template, tuple) else out
    return check_leaf(prefix, read(prefix), template, meta)
