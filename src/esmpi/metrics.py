"""Per-generation metrics: one plain dict per generation, and sinks that take those dicts.

``HISTORY_KEYS`` is the fixed column list of the history (HDF5 table, JSONL, CSV). The reference's
log keys are kept with their meaning, except ``Norm`` and ``GradNorm``, which are L2 norms here
(the reference logged squared norms), computed by ``l2norm``: one fixed-order float64 loop, so the
history is the same on every CPU (BLAS's ``dot`` picks its summation order by SIMD width).

Sinks: ``ProgressLine`` (one concise line per generation, for terminals and Slurm logs) and
``JsonlSink`` (``progress.jsonl``, flushed every generation so ``tail -f`` works).
"""

from __future__ import annotations

import json
import math
import sys
from typing import Sequence

import numba
import numpy as np

@numba.njit(cache=True, nogil=True)
def _sumsq(x):
    acc = 0.0
    for i in range(x.size):
        v = np.float64(x[i])
        acc += v * v
    return acc


def l2norm(x: np.ndarray) -> float:
    """L2 norm of a float vector, summed in index order in float64 (no BLAS, no SIMD reassociation)."""
    return math.sqrt(_sumsq(np.ascontiguousarray(x).reshape(-1)))


HISTORY_KEYS = [
    "Generation",
    "EpRewMean", "EpRewStd", "EpRewMax", "EpLenMean", "EpFailures",
    "EvalEpRewMean", "EvalEpRewStd", "EvalEpLenMean", "EvalEpCount", "EvalPopRank",
    "Norm", "GradNorm", "UpdateRatio",
    "EpisodesThisIter", "EpisodesSoFar", "TimestepsThisIter", "TimestepsSoFar",
    "ObCount", "EpisodeCutoff", "BlocksThisIter",
    "TimeElapsedThisIter", "TimeElapsed", "TimeRollout", "TimeComm", "TimeUpdate", "StepsPerSec",
    "EnvStepFast",
]


# history columns that hold counts (stored as float64 in HDF5; restored as int on load)
INT_KEYS = {"Generation", "EpFailures", "EvalEpCount", "EpisodesThisIter", "EpisodesSoFar", "TimestepsThisIter",
            "TimestepsSoFar", "ObCount", "EpisodeCutoff", "BlocksThisIter",
            # strategies' own counts (esmpi.strategies: ARS, the GA, novelty search)
            "ARSKept", "GAEliteNew", "GAGenomeLength", "NSMember", "NSArchiveSize"}


def _kind(rounds, kinds) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(returns, lengths, failed) of the given candidate kinds, in (round, index) order."""
    from .candidates import Round  # noqa: F401  (documents the argument type)

    parts = [(rd.results.returns[p], rd.results.lengths[p], rd.results.failed[p])
             for rd in rounds for k in kinds for p in [rd.rows(k)[1]]]
    if not parts:
        return np.zeros(0), np.zeros(0, np.int64), np.zeros(0, bool)
    return tuple(np.concatenate(x) for x in zip(*parts))


def generation_metrics(rounds, stats: dict, state, times: dict) -> dict:
    """The history row of one generation, from its gathered rounds (identical on every rank)."""
    from .candidates import EVAL, TRAIN, VALIDATE

    tr_ret, tr_len, tr_fail = _kind(rounds, (TRAIN,))
    _, all_len, _ = _kind(rounds, (TRAIN, VALIDATE))
    ev_ret, ev_len, ev_fail = _kind(rounds, (EVAL,))
    rets = tr_ret[~tr_fail]
    ev = ev_ret[~ev_fail]
    steps = int(all_len.sum())
    m = {
        "Generation": state.generation,
        "EpRewMean": float(rets.mean()) if rets.size else math.nan,
        "EpRewStd": float(rets.std()) if rets.size else math.nan,
        "EpRewMax": float(rets.max()) if rets.size else math.nan,
        "EpLenMean": float(tr_len.mean()) if tr_len.size else math.nan,
        "EpFailures": int(tr_fail.sum()),
        "EvalEpRewMean": float(ev.mean()) if ev.size else math.nan,
        "EvalEpRewStd": float(ev.std()) if ev.size else math.nan,
        "EvalEpLenMean": float(ev_len[~ev_fail].mean()) if ev.size else math.nan,
        "EvalEpCount": int(ev.size),
        # fraction of this generation's perturbed returns below the mean evaluation return
        "EvalPopRank": float(np.searchsorted(np.sort(rets.ravel()), ev.mean()) / rets.size) if ev.size and rets.size else math.nan,
        "EpisodesThisIter": int(all_len.size),
        "EpisodesSoFar": state.episodes_so_far,
        "TimestepsThisIter": steps,
        "TimestepsSoFar": state.timesteps_so_far,
        "ObCount": int(sum(float(rd.results.obs_count.sum()) for rd in rounds)),
        "EpisodeCutoff": state.cutoff,
        "BlocksThisIter": len(rounds),
        "TimeElapsedThisIter": times["generation"],
        "TimeElapsed": times["elapsed"],
        "TimeRollout": times["rollout"],
        "TimeComm": times["comm"],
        "TimeUpdate": times["update"],
        "StepsPerSec": steps / times["generation"] if times["generation"] > 0 else math.nan,
    }
    m.update(stats)
    return m


def _si(x: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= div:
            return f"{x / div:.2f}{unit}"
    return f"{x:.0f}"


def _dur(s: float) -> str:
    if not math.isfinite(s):
        return "?"
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class ProgressLine:
    """Prints e.g. ``gen   12 | steps 1.23M | ret -123.4 ± 56.7 (max 80.1) | eval 234.5 | 45.2k st/s | 3.1s | ETA 5m12s``."""

    def __init__(self, run_cfg, stream=None):
        self.run_cfg = run_cfg
        self.stream = stream or sys.stdout

    def eta(self, m: dict) -> float:
        rc = self.run_cfg
        per_gen = m["TimeElapsed"] / max(m["Generation"], 1)
        cands = []
        if rc.generations:
            cands.append((rc.generations - m["Generation"]) * per_gen)
        if rc.max_timesteps and m["StepsPerSec"] > 0:
            cands.append(max(rc.max_timesteps - m["TimestepsSoFar"], 0) / (m["TimestepsSoFar"] / max(m["TimeElapsed"], 1e-9)))
        if rc.max_seconds:
            cands.append(rc.max_seconds - m["TimeElapsed"])
        return max(min(cands), 0.0) if cands else math.nan

    def __call__(self, m: dict) -> None:
        ev = "  n/a" if not m["EvalEpCount"] else f"{m['EvalEpRewMean']:.1f}"
        fail = f" | {m['EpFailures']} failed" if m["EpFailures"] else ""
        print(f"gen {m['Generation']:4d} | steps {_si(m['TimestepsSoFar']):>7} | ret {m['EpRewMean']:9.2f} ± {m['EpRewStd']:.2f}"
              f" (max {m['EpRewMax']:.1f}) | eval {ev} | len {m['EpLenMean']:.0f} | {_si(m['StepsPerSec'])} st/s"
              f" | {m['TimeElapsedThisIter']:.2f}s | ETA {_dur(self.eta(m))}{fail}", file=self.stream, flush=True)


class JsonlSink:
    """progress.jsonl, one line per generation (rank 0). A failed write (disk full, read-only file
    system) is an ``OutputError``: one line, every rank aborted with exit 5, checkpoints intact."""

    def __init__(self, path):
        self.path = path
        try:
            self.f = open(path, "a", buffering=1)
        except OSError as e:
            self._fail(e)

    def _fail(self, e: OSError):
        from .errors import OutputError
        raise OutputError(f"{self.path}: cannot write the progress log ({e.strerror or e})") from None

    @staticmethod
    def line(m: dict) -> str:
        return json.dumps({k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in m.items()}) + "\n"

    def __call__(self, m: dict) -> None:
        try:
            self.f.write(self.line(m))
        except OSError as e:
            self._fail(e)

    def close(self):
        self.f.close()


def history_column(history: Sequence[dict], key: str) -> np.ndarray:
    """One history column as float64; NaN where a generation lacks it (e.g. no evaluation)."""
    return np.array([np.nan if h.get(key) is None else h[key] for h in history], np.float64)


def smoothed_eval(history: Sequence[dict], window: int, key: str = "EvalEpRewMean") -> np.ndarray:
    """Trailing mean of ``key`` over the last ``window`` generations, per generation; NaN where fewer
    than ``window`` generations exist so far (or any of them lacks an evaluation)."""
    if window < 1:
        raise ValueError("window must be >= 1")
    y = history_column(history, key)
    out = np.full(y.shape, np.nan)
    if y.size >= window:
        # sum / window per window (NaN propagates: a window with a missing evaluation is NaN)
        out[window - 1:] = np.lib.stride_tricks.sliding_window_view(y, window).mean(axis=1)
    return out


def target_reached(history: Sequence[dict], target: float, window: int) -> bool:
    """The last generation's trailing ``window``-generation mean of EvalEpRewMean is >= ``target``:
    the stop rule of ``run.target_return`` and the crossing rule of ``esmpi.paper``."""
    s = smoothed_eval(history[-window:], window)
    return bool(s.size and np.isfinite(s[-1]) and s[-1] >= target)
