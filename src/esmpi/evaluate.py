"""Evaluate this rank's share of a candidate table. No MPI, no strategy logic.

For each candidate row (``esmpi.candidates``): build its parameters from the strategy's bases and
the noise table (``materialize``), run its episode on the objective with the seed of its address,
and return float64 rows ready for ``comm.allgather_rows``:

- results ``(k, 4 + bc_dim)``: ``[index, return, length, failed, bc...]`` (failed: return -inf);
- observation sums ``(m, 2 + 2 obs_dim)``: ``[index, count, sum..., sumsq...]`` for candidates with
  ``record_obs`` whose episode did not fail.
- kept states (``self.kept``, ``(s, 1 + obs_dim)``): ``[index, obs...]`` for candidates with
  ``keep_states = k > 0`` whose episode did not fail: k raw observations the policy acted on, picked
  without replacement by ``rng(run_seed, KEEP_STATES, *addr)`` and kept in episode order (all of
  them if the episode was shorter); the first k for an objective with ``sequential_states`` (a
  recurrent policy). The GA's safe mutations (SM-G) take a parent's recorded states from them.

A strategy may supply ``mutation(c, base, eps, out) -> out``: the parameters of a candidate with an
offset, instead of ``base + sign * scale * eps`` (the GA's SM-G; ``eps`` is the full-length noise slice).

TRAIN and VALIDATE episodes stop at the loop's current cutoff, EVAL and PROBE episodes at the env's
own limit. Action noise (``es.action_noise_std``) applies to TRAIN episodes only. Nothing here
depends on the rank except which rows it is handed, so results are the same at any world size.

The perturbation is ``base +- float32(scale) * table[offset + lo : offset + hi]`` on the slice, in one
fused pass (``noise.perturb``) with the bits of numpy's ``multiply`` then ``add``/``subtract``: the
same operations, hence bits, as esmpi's first loop.
"""

from __future__ import annotations

import sys

import numpy as np

from . import candidates as C
from . import seeding
from .noise import perturb

MAX_FAILURE_LINES = 5  # per rank and generation; the count goes to the history
STATIC_UNIT = "episode"  # what the static schedule deals out round-robin (read by the scale model)


class Evaluator:
    """Holds the perturbation buffers (no per-episode allocation) and runs candidates."""

    def __init__(self, objective, noise, run_seed: int, rank: int, use_action_noise: bool = False, mutation=None):
        self.objective, self.noise = objective, noise
        self.mutation = mutation
        self.run_seed, self.rank = run_seed, rank
        self.use_action_noise = use_action_noise
        self.bc_dim = getattr(objective, "bc_dim", 0)
        d = objective.num_params
        self._perturbed = np.empty(d, np.float32)
        self._init_cache: tuple[int, np.ndarray] | None = None
        self.failure_lines = 0

    def _log_failure(self, generation, what, reason):
        if self.failure_lines < MAX_FAILURE_LINES:
            print(f"[rank {self.rank}] generation {generation}: {what} failed: {reason}", file=sys.stderr, flush=True)
        self.failure_lines += 1

    def materialize(self, c, bases: np.ndarray) -> np.ndarray:
        """The candidate's parameters (d,) float32 (a view of a reused buffer or of ``bases``)."""
        if c["base"] >= 0:
            base = bases[c["base"]]
        else:   # a fresh initialisation (GA generation 0, random search)
            init = int(c["init"])
            if self._init_cache is None or self._init_cache[0] != init:
                self._init_cache = (init, fresh_theta(self.objective, self.run_seed, init))
            base = self._init_cache[1]
        off = int(c["offset"])
        if off < 0:
            return base
        lo, hi = int(c["lo"]), int(c["hi"])
        out = self._perturbed
        if self.mutation is not None:
            return self.mutation(c, base, self.noise.get(off, out.size), out)
        if lo > 0 or hi < out.size:
            out[:lo] = base[:lo]
            out[hi:] = base[hi:]
        perturb(out[lo:hi], base[lo:hi], self.noise.get(off + lo, hi - lo), c["scale"], int(c["sign"]))
        return out

    def run(self, rows: np.ndarray, bases: np.ndarray, generation: int, cutoff: int, max_steps: int,
            abandon=None):
        """Evaluate candidate ``rows``; returns (results, obs rows), or None if ``abandon()`` ended one."""
        obj = self.objective
        out, obs, kept = [], [], []
        eval_episode = getattr(obj, "eval_episode", None)
        for c in rows:
            theta = self.materialize(c, bases)
            addr = C.address(c)
            seed = seeding.episode_seed(self.run_seed, *addr)
            kind = int(c["kind"])
            keep = int(c["keep_states"])
            if keep:             # any kind: the episode's own limit for PROBE/EVAL, the cutoff for TRAIN
                lim = cutoff if kind in (C.TRAIN, C.VALIDATE) else max_steps
                r = obj.episode(theta, seed, lim, bool(c["record_obs"]), None, keep_obs=True)
                if not r.failed and r.states is not None and len(r.states):
                    kept.append(_sample(r.states, keep, seeding.rng(self.run_seed, seeding.KEEP_STATES, *addr),
                                        float(c["index"]), getattr(obj, "sequential_states", False)))
            elif kind in (C.TRAIN, C.VALIDATE):
                an_rng = seeding.rng(self.run_seed, *addr) if self.use_action_noise and kind == C.TRAIN else None
                r = obj.episode(theta, seed, cutoff, bool(c["record_obs"]), an_rng, abandon)
                if r is None:
                    return None
            elif eval_episode is not None:   # an objective with its own evaluation (supervised: test accuracy)
                r = eval_episode(theta, seed, max_steps, addr)
            else:
                r = obj.episode(theta, seed, max_steps, False, None)
            if r.failed:
                self._log_failure(generation, describe(c), r.reason)
            row = [float(c["index"]), r.ret, float(r.length), float(r.failed)]
            if self.bc_dim:
                bc = getattr(r, "bc", None)
                row += list(np.full(self.bc_dim, np.nan) if r.failed or bc is None else np.asarray(bc, np.float64))
            out.append(row)
            if c["record_obs"] and r.obs_count and not r.failed:
                obs.append(np.concatenate([[float(c["index"]), r.obs_count], r.obs_sum, r.obs_sumsq]))
        w = 2 + 2 * obj.obs_dim
        self.kept = np.concatenate(kept) if kept else np.zeros((0, 1 + obj.obs_dim))
        return (np.array(out, dtype=np.float64).reshape(len(out), 4 + self.bc_dim),
                np.array(obs, dtype=np.float64).reshape(len(obs), w))


def _sample(states: np.ndarray, k: int, rng: np.random.Generator, index: float, sequential: bool = False) -> np.ndarray:
    """(min(k, n), 1 + obs_dim) rows ``[index, obs...]``: k of the n states without replacement, in episode
    order; ``sequential`` (a recurrent policy, whose outputs depend on the whole history): the first k."""
    states = np.asarray(states, np.float64)
    n = states.shape[0]
    pick = np.arange(min(n, k)) if sequential or n <= k else np.sort(rng.choice(n, size=k, replace=False))
    return np.concatenate([np.full((pick.size, 1), index), states[pick]], axis=1)


def fresh_theta(objective, run_seed: int, init: int) -> np.ndarray:
    """(d,) float32: the fresh initialisation ``init`` of a candidate with ``base == -1`` (also what GA
    genomes start from: ``Strategy.attach``'s ``fresh``)."""
    return np.asarray(objective.initial_theta(seeding.rng(run_seed, seeding.INIT_THETA, init)), np.float32)


def describe(c) -> str:
    """A candidate as the failure log names it: 'pair 12 (+)', 'evaluation episode 1', ..."""
    kind, i = int(c["kind"]), int(c["index"])
    if kind == C.TRAIN and c["offset"] >= 0:
        return f"pair {i // 2} ({'+' if c['sign'] > 0 else '-'})"
    if kind == C.EVAL:
        return f"evaluation episode {i - C.EVAL_BASE if i >= C.EVAL_BASE else i}"
    return f"{C.KIND_NAMES[kind]} candidate {i}"
