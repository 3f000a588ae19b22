"""Evaluate this rank's share of a block of antithetic pairs, and its evaluation episodes. No MPI.

Rank conventions (static, world-size invariant results):
- pair ``j`` of a block goes to rank ``j % size``;
- evaluation episode ``e`` goes to rank ``size - 1 - (e % size)`` (the ranks with fewest pairs).
Each episode's seed depends only on (run seed, generation, block, pair, sign) or
(run seed, generation, eval episode), never on the rank that runs it.

Rows returned (float64, ready for ``allgather_rows``):
- pair rows ``(k, PAIR_W)``: ``[global_pair, ret+, ret-, len+, len-, failed+, failed-]``
- obs rows ``(m, 2 + 2*obs_dim)``: ``[global_pair, count, sum..., sumsq...]`` for pairs chosen to
  record observation statistics (the + episode's sums, then the - episode's, added in that order)
- eval rows ``(k, EVAL_W)``: ``[episode, ret, len, failed]``
"""

from __future__ import annotations

import sys

import numpy as np

from . import seeding

PAIR_W = 7
EVAL_W = 4
MAX_FAILURE_LINES = 5  # per rank and generation; the count goes to the history


def obs_mask(run_seed: int, generation: int, block: int, n_pairs: int, fraction: float, obs_dim: int) -> np.ndarray:
    """(n_pairs,) bool: which pairs of the block record observation statistics."""
    if obs_dim == 0 or fraction <= 0:
        return np.zeros(n_pairs, dtype=bool)
    return seeding.rng(run_seed, seeding.OBS_STAT, generation, block).random(n_pairs) < fraction


class BlockEvaluator:
    """Holds the perturbation buffers (no per-pair allocation) and runs pairs and eval episodes."""

    def __init__(self, objective, noise, run_seed: int, noise_stdev: float, rank: int, size: int):
        self.objective, self.noise = objective, noise
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

    def pairs(self, theta, generation: int, block: int, offsets: np.ndarray, mask: np.ndarray, cutoff: int,
              use_action_noise: bool):
        n_pairs, d = offsets.size, theta.size
        obs_dim = self.objective.obs_dim
        mine = range(self.rank, n_pairs, self.size)
        pair_rows = np.empty((len(mine), PAIR_W))
        obs_rows = []
        for row, j in enumerate(mine):
            np.multiply(self.noise.get(int(offsets[j]), d), self.sigma, out=self._scaled)
            gj = block * n_pairs + j
            out = pair_rows[row]
            out[0] = gj
            s = ss = None
            count = 0
            for sign in (0, 1):  # 0: theta + sigma*eps, 1: theta - sigma*eps
                if sign == 0:
                    np.add(theta, self._scaled, out=self._perturbed)
                else:
                    np.subtract(theta, self._scaled, out=self._perturbed)
                seed = seeding.episode_seed(self.run_seed, seeding.EPISODE, generation, block, j, sign)
                an_rng = seeding.rng(self.run_seed, seeding.EPISODE, generation, block, j, sign) if use_action_noise else None
                r = self.objective.episode(self._perturbed, seed, cutoff, bool(mask[j]), an_rng)
                out[1 + sign], out[3 + sign], out[5 + sign] = r.ret, r.length, float(r.failed)
                if r.failed:
                    self._log_failure(generation, f"pair {gj} ({'+-'[sign]})", r.reason)
                elif r.obs_count:
                    s = r.obs_sum.copy() if s is None else s + r.obs_sum
                    ss = r.obs_sumsq.copy() if ss is None else ss + r.obs_sumsq
                    count += r.obs_count
            if count:
                obs_rows.append(np.concatenate([[gj, count], s, ss]))
        obs_arr = np.array(obs_rows).reshape(len(obs_rows), 2 + 2 * obs_dim)
        return pair_rows, obs_arr

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
