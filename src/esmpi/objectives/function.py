"""``FunctionObjective``: a black-box ``f(theta) -> float`` to maximise (``esmpi.optimize``)."""

from __future__ import annotations

import math

import numpy as np

from .episode import EpisodeResult


class FunctionObjective:
    """Black-box ``f(theta) -> float`` to maximise; each evaluation counts as one timestep."""

    obs_dim = 0
    max_episode_steps = 1

    def __init__(self, f, theta0: np.ndarray):
        self.f = f
        self.theta0 = np.asarray(theta0, dtype=np.float32).copy()
        self.num_params = self.theta0.size

    def initial_theta(self, rng) -> np.ndarray:
        return self.theta0.copy()

    def set_obs_norm(self, mean, std) -> None:
        pass

    def episode(self, theta, seed, cutoff, record_obs=False, action_noise_rng=None, abandon=None) -> EpisodeResult:
        try:
            v = float(self.f(theta))
        except Exception as ex:
            return EpisodeResult(-math.inf, 1, True, f"{type(ex).__name__} from f: {ex}")
        if not math.isfinite(v):
            return EpisodeResult(-math.inf, 1, True, f"f returned {v}")
        return EpisodeResult(v, 1)

    def close(self):
        pass
