"""The VBN reference batch: observations gathered once per run by seeded random play.

``gather(env, n_actions, run_seed, size, prob)`` plays uniformly random actions from the start of
episodes whose reset seeds are ``episode_seed(run_seed, REF_BATCH, e)`` (e = 0, 1, ...) and keeps
each observation with probability ``prob`` (so the batch spreads over many moments of play instead
of the first few frames), until ``size`` are kept. Actions and picks come from
``rng(run_seed, REF_BATCH)``: the batch is a pure function of (run seed, env settings, size, prob),
the same on every rank. It is part of the run state (stored in checkpoints) so resume never
regathers it, and an ALE or preprocessing change between versions cannot silently change it.
"""

from __future__ import annotations

import numpy as np

from .. import seeding


def gather(env, n_actions: int, run_seed: int, size: int, prob: float, address: tuple = (seeding.REF_BATCH,)) -> np.ndarray:
    """(size, *obs_shape) uint8 observations (observations after a step; resets are not kept).
    ``address``: the seeding address (default: the run's reference batch; ``esmpi.atari.probe`` draws
    a held-out batch from another)."""
    shape = env.observation_space.shape
    out = np.empty((size,) + tuple(shape), np.uint8)
    rng = seeding.rng(run_seed, *address)
    k = e = 0
    while k < size:
        env.reset(seed=seeding.episode_seed(run_seed, *address, e))
        e += 1
        while k < size:
            obs, _, terminated, truncated, _ = env.step(int(rng.integers(n_actions)))
            if terminated or truncated:
                break
            if rng.random() < prob:
                out[k] = obs
                k += 1
    return out
