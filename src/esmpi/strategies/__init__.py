"""Strategies: pure ``init / bases / ask / tell`` over the shared candidate table (DESIGN.md).

To add a strategy: write ``strategies/<name>.py`` with a frozen state dataclass (a ``theta`` field or
property: the policy a user deploys) and a ``Strategy`` subclass, add it to ``STRATEGIES`` below,
and give it a config table in ``config.py`` if it has keys of its own. The loop (``train.py``)
needs nothing else. Rules (DESIGN.md): ``ask`` and ``tell`` never see rank, size or clock; every
random draw is addressed with ``esmpi.seeding``; every float sum that feeds the state runs in
candidate order (``noise.weighted_sum``, explicit loops); derived caches are never checkpointed.

The protocol, called by ``train.Trainer.generation`` on every rank with identical arguments:

- ``attach(noise, alloc, barrier)``: once, before anything else: the noise table (strategies that
  rebuild parameters from offsets, e.g. GA genomes, need it) and ``alloc(n, dtype) -> (array,
  fill_here)`` / ``barrier()`` for node-shared derived caches (one copy per node; the rank with
  ``fill_here`` fills it, then everyone calls ``barrier``). These are the only rank-aware hooks, and
  what they fill must be the same bits on every node; ``fresh(i) -> (d,) float32``: the objective's
  initialisation addressed ``(INIT_THETA, i)``, the one a candidate with ``base == -1, init == i`` gets
  (the GA rebuilds genomes from it; novelty search starts its members with it); ``jacobians(theta,
  obs) -> (n_out, T, d)``: the policy's output gradients at raw observations under the current
  normalisation, or None when the objective has none (the GA's safe mutations);
- ``init(theta0) -> state``: theta0 (d,) float32 from ``objective.initial_theta``; a strategy that
  starts several parameter vectors (novelty search's members) may call ``self.fresh(i)`` (None when
  only a checkpoint template is built, where the values do not matter);
- ``bases(state) -> (M, d) float32``: the parameter vectors candidates are built around;
- ``ask(state, g, r, prior) -> candidate table | None``: round ``r`` of generation ``g`` given the
  earlier rounds' ``Round``s; ``None`` ends the generation;
- ``tell(state, g, rounds, noise) -> (state, stats)``: the update; ``noise.weighted_sum`` is the
  fixed-order kernel (node-split under MPI: same bits); ``stats`` keys go to the history.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Context:
    """What a strategy may know besides its config: fixed for the whole run, identical on every rank."""

    run_seed: int
    d: int                    # number of parameters
    noise_size: int           # entries in the noise table
    obs_dim: int = 0          # 0 = the objective has no observation normalisation
    bc_dim: int = 0           # 0 = the objective gives no behaviour characterisation
    max_episode_steps: int = 1


class Strategy:
    name = ""
    history_keys: tuple[str, ...] = ()   # strategy-specific history columns (besides metrics.HISTORY_KEYS)
    accepts_steal = False                # may run with es.schedule = "steal" (results then depend on timing)
    counts_validation = True             # VALIDATE episodes count towards the timestep budget
    mutation = None                      # or (c, base, eps, out) -> out: materialise a candidate with an offset
                                         # instead of base + sign * scale * eps (the Evaluator's hook; GA SM-G)

    def __init__(self, cfg, ctx: Context):
        self.cfg, self.ctx = cfg, ctx
        self.fresh = None      # i -> (d,) float32, the objective's initialisation (INIT_THETA, i); set by attach

    def attach(self, noise, alloc=None, barrier=None, fresh=None, jacobians=None) -> None:
        self.noise = noise
        self.jacobians = jacobians
        self.alloc = alloc or (lambda n, dtype: (np.empty(n, dtype), True))
        self.barrier = barrier or (lambda: None)
        self.fresh = fresh

    def describe(self) -> str:
        """What a generation evaluates, for the start-up line of ``esmpi.run``."""
        return f"{self.cfg.es.pairs_per_generation} pairs/generation"

    def init(self, theta0: np.ndarray):
        raise NotImplementedError

    def bases(self, s) -> np.ndarray:
        return s.theta.reshape(1, -1)

    def ask(self, s, g: int, r: int, prior: list):
        raise NotImplementedError

    def tell(self, s, g: int, rounds: list, noise):
        raise NotImplementedError


def _registry() -> dict[str, type[Strategy]]:
    from .ars import ARS
    from .ga import GA
    from .novelty import NoveltyES
    from .openai_es import OpenAIES

    return {"openai_es": OpenAIES, "ars": ARS, "ga": GA, "novelty_es": NoveltyES}


STRATEGY_NAMES = ("openai_es", "ars", "ga", "novelty_es")   # config.py validates against this (importing no numerics)
NEEDS_BC = ("novelty_es",)     # strategies that need the objective's behaviour characterisations (bc_dim > 0)


def make(cfg, ctx: Context) -> Strategy:
    return _registry()[cfg.strategy.name](cfg, ctx)
