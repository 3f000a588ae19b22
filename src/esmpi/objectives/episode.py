"""``EpisodeResult``: what one evaluation of a (perturbed) theta returns, for every objective.

An episode ends when the env terminates or truncates, or at ``cutoff`` steps. A NaN/inf reward
or observation, or an exception from the env, makes the episode *failed*: its return is -inf (it
ranks last), the reason is kept for the log, and no observation statistics are taken from it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class EpisodeResult:
    ret: float
    length: int
    failed: bool = False
    reason: str = ""
    obs_sum: np.ndarray | None = None     # (obs_dim,) float64 when recorded
    obs_sumsq: np.ndarray | None = None
    obs_count: int = 0
    bc: np.ndarray | None = None          # (bc_dim,) float64 behaviour characterisation, when the objective has one
    states: np.ndarray | None = None      # (length, obs_dim) float64 raw observations the policy acted on (keep_obs)
