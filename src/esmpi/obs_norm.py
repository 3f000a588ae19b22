"""Observation normalisation statistics as mergeable float64 sums.

``ObsStats(sum, sumsq, count)`` with shapes ``(obs_dim,)``, ``(obs_dim,)``, scalar. Initialised
like the reference's ``RunningStat(eps=1e-2)``: sum 0, sumsq eps, count eps, so the first
generation normalises with mean 0 and std 1 (after the floor). Merging adds per-episode sums
in pair order, the same on every rank and at every world size (no float Allreduce).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

INIT_EPS = 1e-2


@dataclass(frozen=True)
class ObsStats:
    sum: np.ndarray      # (obs_dim,) float64
    sumsq: np.ndarray = field(metadata={"nonneg": True})   # (obs_dim,) float64
    count: float = field(metadata={"nonneg": True})

    @staticmethod
    def initial(obs_dim: int) -> "ObsStats":
        return ObsStats(np.zeros(obs_dim), np.full(obs_dim, INIT_EPS), INIT_EPS)

    def merged(self, sums: np.ndarray, sumsqs: np.ndarray, counts: np.ndarray) -> "ObsStats":
        """Add episode statistics row by row, in the given (pair) order.

        sums, sumsqs: ``(n, obs_dim)``; counts: ``(n,)``. The explicit loop fixes the order.
        """
        s, ss, c = self.sum.copy(), self.sumsq.copy(), self.count
        for i in range(len(counts)):
            s += sums[i]
            ss += sumsqs[i]
            c += float(counts[i])
        return ObsStats(s, ss, c)

    def mean_std(self, std_floor: float) -> tuple[np.ndarray, np.ndarray]:
        """float32 mean and std for the policy input; std = sqrt(max(var, floor^2))."""
        mean = self.sum / self.count
        var = np.maximum(self.sumsq / self.count - mean * mean, std_floor * std_floor)
        return mean.astype(np.float32), np.sqrt(var).astype(np.float32)
