"""Augmented Random Search (Mania, Guy & Recht 2018, Algorithm 1): V1, V1-t, V2, V2-t.

Per iteration, ``N = es.pairs_per_generation`` directions ``delta_k`` from the shared noise table
are evaluated at ``theta +- nu delta_k`` (``nu = es.noise_stdev``), exactly the antithetic rounds of
OpenAI-ES. Then, in the paper's notation:

    keep the b directions with the largest max(r+_k, r-_k)       (b = ars.top_directions; 0 = all N)
    sigma_R = std of the 2b kept returns
    theta <- theta + alpha / (b sigma_R) * sum_k (r+_k - r-_k) delta_k      (alpha = ars.stepsize)

Plain SGD, no Adam, no L2, no rank shaping. The versions map onto keys the loop already has:
V2 = observation normalisation on (``es.obs_stat_fraction > 0``; ARS uses every state: set it to
1.0), V1 = off (``es.obs_stat_fraction = 0``); "-t" = ``ars.top_directions < N``.
``ars.reward_shift`` subtracts a per-step constant (the survival bonus: 1 for Hopper/Walker2d/Ant,
5 for Humanoid) from training returns only, as ``return - shift * length``; evaluation episodes,
the history and ``run.target_return`` never see it.

Where we differ from the authors' code, and why:
- exactly b directions are kept (ties broken by direction order); their code keeps every direction
  at or above a percentile, so ties can keep more than b;
- a pair with a failed episode (NaN/inf, env exception) is never kept, and an iteration with no
  usable pair or sigma_R == 0 leaves theta unchanged (their code would divide by zero);
- ``ars.zero_init`` starts from theta = 0 as the paper does; our linear policy (``policy.hidden = []``)
  has a bias and clips actions to the box, theirs is ``M x`` without either.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import NonFiniteTheta
from ..metrics import l2norm
from . import Strategy
from .antithetic import ask_pairs, gather_pairs, gather_slices, update_sum


@dataclass(frozen=True)
class ARSState:
    theta: np.ndarray      # (d,) float32: M (flattened) of the paper


def select_top(returns: np.ndarray, failed: np.ndarray, b: int) -> np.ndarray:
    """Indices (ascending) of the ``b`` pairs with the largest max(r+, r-); failed pairs never kept."""
    ok = ~failed.any(axis=1)
    score = np.where(ok, returns.max(axis=1), -np.inf)
    order = np.argsort(-score, kind="stable")           # descending, ties in pair order
    kept = order[: min(b, int(ok.sum()))]
    return np.sort(kept)


class ARS(Strategy):
    name = "ars"
    history_keys = ("ARSRewardStd", "ARSKept")

    def init(self, theta0: np.ndarray) -> ARSState:
        theta0 = np.asarray(theta0, dtype=np.float32)
        return ARSState(np.zeros_like(theta0) if self.cfg.ars.zero_init else theta0.copy())

    def ask(self, s: ARSState, g: int, r: int, prior: list):
        return ask_pairs(self.ctx, self.cfg.es, g, r, prior)

    def tell(self, s: ARSState, g: int, rounds: list, noise) -> tuple[ARSState, dict]:
        a = self.cfg.ars
        d = s.theta.size
        offsets, returns, lengths, failed = gather_pairs(rounds)
        shifted = returns - a.reward_shift * lengths        # training returns only
        b = a.top_directions or offsets.size
        kept = select_top(shifted, failed, b)
        r = shifted[kept]
        sigma_r = float(np.std(r)) if kept.size else 0.0
        if kept.size == 0 or not sigma_r > 0:
            step = np.zeros(d, np.float32)
        else:
            w = ((r[:, 0] - r[:, 1]) / sigma_r).astype(np.float32)
            slices = None
            if self.cfg.es.perturb_bucket:   # limited perturbation: the kept pairs' slices only
                lo, hi = gather_slices(rounds)
                slices = (lo[kept], hi[kept])
            step = update_sum(noise, w, offsets[kept], slices, d)
            step *= np.float32(a.stepsize / kept.size)
        theta = s.theta + step
        if not np.all(np.isfinite(theta)):
            raise NonFiniteTheta(f"theta became non-finite at generation {g + 1}; lower ars.stepsize "
                                 "(all ranks stopped; the last checkpoint is intact)")
        norm = l2norm(theta)
        step_norm = l2norm(step)
        stats = {"GradNorm": step_norm / a.stepsize, "UpdateRatio": step_norm / max(norm, 1e-30), "Norm": norm,
                 "ARSRewardStd": sigma_r, "ARSKept": int(kept.size)}
        return ARSState(theta.astype(np.float32)), stats
