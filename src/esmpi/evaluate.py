"""Evaluate this rank's share of a block of antithetic pairs, and its evaluation episodes. No MPI.

Rank conventions (static, world-size invariant results):
- the 2N episodes of a block are numbered ``e = 2 j + sign`` (pair ``j``; sign 0: theta + sigma
  eps_j, sign 1: theta - sigma eps_j) and episode ``e`` goes to rank ``e % size``. Dealing out
  episodes rather than pairs halves the largest share's excess: with 5,000 pairs on 1,440 ranks a
  rank does 6 or 7 episodes, not 6 or 8 (modelled efficiency 93% instead of 81%, docs/bench.md);
- evaluation episode ``e`` goes to rank ``size - 1 - (e % size)`` (the ranks with fewest episodes).
Each episode's seed depends only on (run seed, generation, block, pair, sign) or
(run seed, generation, eval episode), never on the rank that runs it.

The 'steal' schedule adds *extra* pairs: a rank that has finished its static share draws pair
``k`` of its own stream ``(run seed, EXTRA, generation, block, rank, k)`` until ``done()`` says
every rank has finished; a pair in flight at that moment is abandoned. Extra pairs get global
indices ``EXTRA_BASE + ((block * size + rank) << 24) + k``, after all static pairs.

Rows returned (float64, ready for ``allgather_rows``), keyed by the global episode index
``2 * global_pair + sign`` so that sorting restores pair order at any world size:
- episode rows ``(k, EP_W)``: ``[episode, return, length, failed, noise_offset]``
- obs rows ``(m, 2 + 2*obs_dim)``: ``[episode, count, sum..., sumsq...]`` for the episodes of pairs
  chosen to record observation statistics (failed episodes give none)
- eval rows ``(k, EVAL_W)``: ``[episode, return, length, failed]``
"""

from __future__ import annotations

import sys

import numpy as np

from . import seeding

EP_W = 5
EVAL_W = 4
EXTRA_BASE = 2**50   # extras sort after every static pair; 2 * index stays float64-exact (< 2**53)
MAX_FAILURE_LINES = 5  # per rank and generation; the count goes to the history
STATIC_UNIT = "episode"  # what the static schedule deals out round-robin (read by the scale model)


def obs_mask(run_seed: int, generation: int, block: int, n_pairs: int, fraction: float, obs_dim: int) -> np.ndarray:
    """(n_pairs,) bool: which pairs of the block record observation statistics."""
    if obs_dim == 0 or fraction <= 0:
        return np.zeros(n_pairs, dtype=bool)
    return seeding.rng(run_seed, seeding.OBS_STAT, generation, block).random(n_pairs) < fraction


class BlockEvaluator:
    """Holds the perturbation buffers (no per-episode allocation) and runs episodes."""

    def __init__(self, objective, noise, run_seed: int, noise_stdev: float, rank: int, size: int,
                 use_action_noise: bool = False):
        self.objective, self.noise = objective, noise
        self.use_action_noise = use_action_noise
        self.run_seed, self.rank, self.size = run_seed, rank, size
        self.sigma = np.float32(noise_stdev)
        d = objective.num_params
        self._scaled = np.empty(d, np.float32)
        self._scaled_offset = -1          # sigma * eps is reused when a pair's two episodes run here
        self._perturbed = np.empty(d, np.float32)
        self.failure_lines = 0

    def _log_failure(self, generation, what, reason):
        if self.failure_lines < MAX_FAILURE_LINES:
            print(f"[rank {self.rank}] generation {generation}: {what} failed: {reason}", file=sys.stderr, flush=True)
        self.failure_lines += 1

    def _episode(self, theta, offset: int, sign: int, record: bool, cutoff: int, seed_addr: tuple, what: str,
                 generation: int, abandon=None):
        """One episode of theta + sigma eps (sign 0) or theta - sigma eps (sign 1); None if abandoned."""
        if offset != self._scaled_offset:
            np.multiply(self.noise.get(offset, theta.size), self.sigma, out=self._scaled)
            self._scaled_offset = offset
        if sign == 0:
            np.add(theta, self._scaled, out=self._perturbed)
        else:
            np.subtract(theta, self._scaled, out=self._perturbed)
        seed = seeding.episode_seed(self.run_seed, *seed_addr, sign)
        an_rng = seeding.rng(self.run_seed, *seed_addr, sign) if self.use_action_noise else None
        r = self.objective.episode(self._perturbed, seed, cutoff, record, an_rng, abandon)
        if r is not None and r.failed:
            self._log_failure(generation, f"{what} ({'+-'[sign]})", r.reason)
        return r

    @staticmethod
    def _add(rows, obs, e, r, offset):
        rows.append((e, r.ret, r.length, float(r.failed), offset))
        if r.obs_count and not r.failed:
            obs.append(np.concatenate([[e, r.obs_count], r.obs_sum, r.obs_sumsq]))

    def _arrays(self, rows, obs):
        w = 2 + 2 * self.objective.obs_dim
        return np.array(rows, dtype=np.float64).reshape(len(rows), EP_W), np.array(obs).reshape(len(obs), w)

    def pairs(self, theta, generation: int, block: int, offsets: np.ndarray, mask: np.ndarray, cutoff: int):
        """This rank's static share of the block's 2N episodes: e = rank, rank + size, ..."""
        n_pairs = offsets.size
        rows, obs = [], []
        for e in range(self.rank, 2 * n_pairs, self.size):
            j, sign = divmod(e, 2)
            gj = block * n_pairs + j
            off = int(offsets[j])
            r = self._episode(theta, off, sign, bool(mask[j]), cutoff, (seeding.EPISODE, generation, block, j),
                              f"pair {gj}", generation)
            self._add(rows, obs, 2 * gj + sign, r, off)
        return self._arrays(rows, obs)

    def extra_pairs(self, theta, generation: int, block: int, cutoff: int, obs_fraction: float, done):
        """'steal' schedule: whole extra pairs from this rank's own stream until ``done()``."""
        d, obs_dim = theta.size, self.objective.obs_dim
        rows, obs = [], []
        k = 0
        while not done():
            r = seeding.rng(self.run_seed, seeding.EXTRA, generation, block, self.rank, k)
            off = int(r.integers(0, self.noise.size - d + 1))
            record = obs_dim > 0 and obs_fraction > 0 and r.random() < obs_fraction
            gj = EXTRA_BASE + ((block * self.size + self.rank) << 24) + k
            addr = (seeding.EXTRA, generation, block, self.rank, k)
            plus = self._episode(theta, off, 0, record, cutoff, addr, f"extra pair {k}", generation, done)
            minus = plus and self._episode(theta, off, 1, record, cutoff, addr, f"extra pair {k}", generation, done)
            if minus is None:      # abandoned: a pair counts only whole
                break
            self._add(rows, obs, 2 * gj, plus, off)
            self._add(rows, obs, 2 * gj + 1, minus, off)
            k += 1
        return self._arrays(rows, obs)

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
