"""Evaluate this rank's share of a block of antithetic pairs, and its evaluation episodes. No MPI.

Rank conventions (static, world-size invariant results):
- pair ``j`` of a block goes to rank ``j % size``;
- evaluation episode ``e`` goes to rank ``size - 1 - (e % size)`` (the ranks with fewest pairs).
Each episode's seed depends only on (run seed, generation, block, pair, sign) or
(run seed, generation, eval episode), never on the rank that runs it.

The 'steal' schedule adds *extra* pairs: a rank that has finished its static share draws pair
``k`` of its own stream ``(run seed, EXTRA, generation, block, rank, k)`` until ``done()`` says
every rank has finished; an episode in flight at that moment is abandoned. Extra pairs get
global indices ``EXTRA_BASE + ((block * size + rank) << 24) + k``, after all static pairs.

Rows returned (float64, ready for ``allgather_rows``):
- pair rows ``(k, PAIR_W)``: ``[global_pair, ret+, ret-, len+, len-, failed+, failed-, noise_offset]``
- obs rows ``(m, 2 + 2*obs_dim)``: ``[global_pair, count, sum..., sumsq...]`` for pairs chosen to
  record observation statistics (the + episode's sums, then the - episode's, added in that order)
- eval rows ``(k, EVAL_W)``: ``[episode, ret, len, failed]``
"""

from __future__ import annotations

import sys

import numpy as np

from . import seeding

PAIR_W = 8
EVAL_W = 4
EXTRA_BASE = 2**50   # float64-exact pair indices: extras sort after every static pair
MAX_FAILURE_LINES = 5  # per rank and generation; the count goes to the history


def obs_mask(run_seed: int, generation: int, block: int, n_pairs: int, fraction: float, obs_dim: int) -> np.ndarray:
    """(n_pairs,) bool: which pairs of the block record observation statistics."""
    if obs_dim == 0 or fraction <= 0:
        return np.zeros(n_pairs, dtype=bool)
    return seeding.rng(run_seed, seeding.OBS_STAT, generation, block).random(n_pairs) < fraction


class BlockEvaluator:
    """Holds the perturbation buffers (no per-pair allocation) and runs pairs and eval episodes."""

    def __init__(self, objective, noise, run_seed: int, noise_stdev: float, rank: int, size: int,
                 use_action_noise: bool = False):
        self.objective, self.noise = objective, noise
        self.use_action_noise = use_action_noise
        self.run_seed, self.rank, self.size = run_seed, rank, size
        self.sigma = np.float32(noise_stdev)
        d = objective.num_params
        self._scaled = np.empty(d, np.float32)
        self._perturbed = np.empty(d, np.float32)
        self.failure_lines = 0

    def _log_failure(self, generation, what, reason):
        if self.failure_lines < MAX_FAILURE_LINES:
            print(f"[rank {self.rank}] generation {generation}: {what} failed: {reason}", file=sys.stderr, flush=True)
        self.failure_lines += 1

    def _pair(self, theta, offset: int, record: bool, cutoff: int, seed_addr: tuple, what: str, generation: int,
              abandon=None):
        """Both episodes of one pair: (row values after the index, obs row or None), or None if abandoned."""
        d = theta.size
        np.multiply(self.noise.get(offset, d), self.sigma, out=self._scaled)
        vals = np.empty(PAIR_W - 1)
        vals[6] = offset
        s = ss = None
        count = 0
        for sign in (0, 1):  # 0: theta + sigma*eps, 1: theta - sigma*eps
            if sign == 0:
                np.add(theta, self._scaled, out=self._perturbed)
            else:
                np.subtract(theta, self._scaled, out=self._perturbed)
            seed = seeding.episode_seed(self.run_seed, *seed_addr, sign)
            an_rng = seeding.rng(self.run_seed, *seed_addr, sign) if self.use_action_noise else None
            r = self.objective.episode(self._perturbed, seed, cutoff, record, an_rng, abandon)
            if r is None:
                return None
            vals[sign], vals[2 + sign], vals[4 + sign] = r.ret, r.length, float(r.failed)
            if r.failed:
                self._log_failure(generation, f"{what} ({'+-'[sign]})", r.reason)
            elif r.obs_count:
                s = r.obs_sum.copy() if s is None else s + r.obs_sum
                ss = r.obs_sumsq.copy() if ss is None else ss + r.obs_sumsq
                count += r.obs_count
        return vals, ((count, s, ss) if count else None)

    def _rows(self, results, obs_dim):
        pair_rows = np.array([[gj, *vals] for gj, vals, _ in results]).reshape(len(results), PAIR_W)
        obs = [np.concatenate([[gj, o[0]], o[1], o[2]]) for gj, _, o in results if o is not None]
        return pair_rows, np.array(obs).reshape(len(obs), 2 + 2 * obs_dim)

    def pairs(self, theta, generation: int, block: int, offsets: np.ndarray, mask: np.ndarray, cutoff: int):
        """This rank's static share of the block: pairs j = rank, rank + size, ..."""
        n_pairs = offsets.size
        results = []
        for j in range(self.rank, n_pairs, self.size):
            gj = block * n_pairs + j
            vals, o = self._pair(theta, int(offsets[j]), bool(mask[j]), cutoff,
                                 (seeding.EPISODE, generation, block, j), f"pair {gj}", generation)
            results.append((gj, vals, o))
        return self._rows(results, self.objective.obs_dim)

    def extra_pairs(self, theta, generation: int, block: int, cutoff: int, obs_fraction: float, done):
        """'steal' schedule: extra pairs from this rank's own stream until ``done()``."""
        d, obs_dim = theta.size, self.objective.obs_dim
        results = []
        k = 0
        while not done():
            r = seeding.rng(self.run_seed, seeding.EXTRA, generation, block, self.rank, k)
            offset = int(r.integers(0, self.noise.size - d + 1))
            record = obs_dim > 0 and obs_fraction > 0 and r.random() < obs_fraction
            gj = EXTRA_BASE + ((block * self.size + self.rank) << 24) + k
            out = self._pair(theta, offset, record, cutoff, (seeding.EXTRA, generation, block, self.rank, k),
                             f"extra pair {k}", generation, abandon=done)
            if out is None:
                break
            results.append((gj, *out))
            k += 1
        return self._rows(results, obs_dim)

    def evals(self, theta, generation: int, n_eval: int, cutoff: int):
        mine = [e for e in range(n_eval) if self.size - 1 - (e % self.size) == self.rank]
        rows = np.empty((len(mine), EVAL_W))
        for i, e in enumerate(mine):
            seed = seeding.episode_seed(self.run_seed, seeding.EVAL, generation, e)
            r = self.objective.episode(theta, seed, cutoff, False, None)
            if r.failed:
                self._log_failure(generation, f"evaluation episode {e}", r.reason)
            rows[i] = (e, np.nan if r.failed else r.ret, r.length, float(r.failed))
        return rows
