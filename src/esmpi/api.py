"""The black-box API: run the same ES engine on any ``f(theta) -> float`` (maximised).

    >>> import numpy as np, esmpi
    >>> target = np.array([0.5, 0.1, -0.3], dtype=np.float32)
    >>> res = esmpi.optimize(lambda w: -np.sum((w - target) ** 2), np.zeros(3), generations=300,
    ...                      pairs=50, noise_stdev=0.1, stepsize=0.03, seed=0)
    >>> bool(np.allclose(res.theta, target, atol=0.05))
    True

Under ``mpiexec`` pass ``comm=esmpi.comm.make_comm()``: every rank evaluates its share of the
pairs and all ranks end with the same ``res.theta``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class OptimizeResult:
    theta: np.ndarray      # (d,) float32, the final mean of the search distribution
    state: object          # esmpi.state.TrainState (strategy state: theta, optimizer moments; counters)
    history: list          # one dict of metrics per generation (see esmpi.metrics.HISTORY_KEYS)


def optimize(f, theta0, *, generations: int = 100, pairs: int = 50, noise_stdev: float = 0.02,
             stepsize: float = 0.01, l2coeff: float = 0.0, optimizer: str = "adam",
             shaping: str = "centered_ranks", seed: int = 0, noise_size: int | None = None,
             comm=None, callback=None) -> OptimizeResult:
    """Maximise ``f`` with OpenAI-ES from ``theta0``; ``callback(metrics_dict)`` after each generation
    (the dict also holds ``"theta"``: a copy of the new mean, e.g. to draw the path; the history does not)."""
    from .comm import SerialComm
    from .config import config_from_dict
    from .objectives.function import FunctionObjective
    from .train import Trainer

    theta0 = np.asarray(theta0, dtype=np.float32).ravel()
    cfg = config_from_dict({
        "run": {"seed": seed, "generations": generations},
        "es": {"noise_stdev": float(noise_stdev), "pairs_per_generation": pairs, "l2coeff": float(l2coeff),
               "shaping": shaping, "obs_stat_fraction": 0.0, "eval_episodes": 1},
        "optimizer": {"name": optimizer, "stepsize": float(stepsize)},
        "noise": {"size": int(noise_size or max(1_000_000, 20 * theta0.size))},
        "checks": {"replica_check_every": 0},
    }, "esmpi.optimize(...)")
    trainer = None

    def sink(metrics):   # called after the generation's update: trainer.state holds the new theta
        callback({**metrics, "theta": trainer.state.theta.copy()})

    trainer = Trainer(cfg, FunctionObjective(f, theta0), comm or SerialComm(), sinks=[sink] if callback else [])
    state = trainer.run()
    return OptimizeResult(state.theta.copy(), state, trainer.history)
