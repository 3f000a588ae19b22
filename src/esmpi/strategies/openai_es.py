"""OpenAI-ES (Salimans et al. 2017, Algorithm 2): antithetic pairs, centered ranks, Adam.

State: ``theta`` (d,) float32 and the optimizer state. ``tell`` applies one generation:
1. shape the 2N returns (centered ranks over all of them, in [-0.5, 0.5]; failed episodes are
   -inf and rank last; ties share their average rank);
2. ``g = sum_j (s+_j - s-_j) eps_j / (2N)``: the weighted noise sum in pair order (bitwise fixed);
   like the reference we do **not** divide by sigma (Adam is invariant to that scale); with
   ``es.perturb_bucket`` each pair adds only its perturbed slice (limited-perturbation ES);
3. optimizer step on ``-g + l2coeff * theta``: **we maximise return**, the optimizer descends,
   hence the minus sign.
Observation statistics, the adaptive cutoff and the counters are the loop's (``train.advance``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import optim
from ..errors import NonFiniteTheta
from ..shaping import SHAPINGS, pair_weights
from ..metrics import l2norm
from . import Strategy
from .antithetic import ask_pairs, gather_pairs, gather_slices, steal_pair, update_sum


@dataclass(frozen=True)
class ESState:
    theta: np.ndarray          # (d,) float32: the mean of the search distribution
    optimizer: optim.OptState  # Adam moments (or SGD velocity) and step count


class OpenAIES(Strategy):
    name = "openai_es"
    accepts_steal = True

    def init(self, theta0: np.ndarray) -> ESState:
        theta0 = np.asarray(theta0, dtype=np.float32)
        return ESState(theta0.copy(), optim.init_state(theta0.size))

    def ask(self, s: ESState, g: int, r: int, prior: list):
        return ask_pairs(self.ctx, self.cfg.es, g, r, prior)

    def steal_pair(self, s, g: int, r: int, rank: int, size: int, k: int) -> np.ndarray:
        return steal_pair(self.ctx, self.cfg.es, g, r, rank, size, k)

    def tell(self, s: ESState, g: int, rounds: list, noise) -> tuple[ESState, dict]:
        es_cfg, d = self.cfg.es, s.theta.size
        offsets, returns, _, _ = gather_pairs(rounds)
        shaped = SHAPINGS[es_cfg.shaping](returns)
        w = pair_weights(shaped)
        slices = gather_slices(rounds) if es_cfg.perturb_bucket else None
        grad = update_sum(noise, w, offsets, slices, d)
        grad /= np.float32(returns.size)
        opt_kwargs = self.cfg.optimizer.model_dump()
        step, opt_state = optim.OPTIMIZERS[opt_kwargs.pop("name")](
            s.optimizer, -grad + np.float32(es_cfg.l2coeff) * s.theta, **opt_kwargs)
        theta = s.theta + step
        if not np.all(np.isfinite(theta)):
            raise NonFiniteTheta(f"theta became non-finite at generation {g + 1}; lower optimizer.stepsize or "
                                 "check the objective (all ranks stopped; the last checkpoint is intact)")
        theta_norm = l2norm(theta)
        stats = {"GradNorm": l2norm(grad),
                 "UpdateRatio": float(l2norm(step) / max(theta_norm, 1e-30)),
                 "Norm": theta_norm}
        return ESState(theta.astype(np.float32), opt_state), stats
