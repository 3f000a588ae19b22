"""Fitness shaping: pure functions from raw returns (shape ``(n_pairs, 2)``, column 0 = +eps,
column 1 = -eps) to shaped returns of the same shape, picked by name from ``SHAPINGS``.

Convention: we *maximise* return. Failed episodes arrive as ``-inf`` and so rank last.
Centered ranks lie in [-0.5, 0.5] and are computed over all 2N returns together, as in the
reference (``compute_centered_ranks(returns_n2)``).
"""

from __future__ import annotations

import numpy as np


def ranks(x: np.ndarray) -> np.ndarray:
    """Ranks in [0, len(x)) of a 1-D array; ties broken by position (stable sort) so every
    rank computes the same ranks."""
    r = np.empty(x.size, dtype=np.int64)
    r[np.argsort(x, kind="stable")] = np.arange(x.size)
    return r


def centered_ranks(returns_n2: np.ndarray) -> np.ndarray:
    n = returns_n2.size
    if n == 1:
        return np.zeros_like(returns_n2, dtype=np.float32)
    y = ranks(returns_n2.ravel()).reshape(returns_n2.shape).astype(np.float32)
    y /= np.float32(n - 1)
    y -= np.float32(0.5)
    return y


def identity(returns_n2: np.ndarray) -> np.ndarray:
    """Raw returns (failed episodes get the worst finite return seen, so the sum stays finite)."""
    r = np.asarray(returns_n2, dtype=np.float64).copy()
    bad = ~np.isfinite(r)
    if bad.any():
        r[bad] = r[~bad].min() if (~bad).any() else 0.0
    return r.astype(np.float32)


def sign(returns_n2: np.ndarray) -> np.ndarray:
    """Sign of each pair's difference (+1/-1/0 split evenly between the two columns)."""
    d = np.sign(returns_n2[:, 0] - returns_n2[:, 1]).astype(np.float32)
    return np.stack([0.5 * d, -0.5 * d], axis=1)


SHAPINGS = {"centered_ranks": centered_ranks, "identity": identity, "sign": sign}


def pair_weights(shaped_n2: np.ndarray) -> np.ndarray:
    """Weights w_j = shaped(+eps_j) - shaped(-eps_j), float32, the coefficients of the noise sum."""
    return (shaped_n2[:, 0] - shaped_n2[:, 1]).astype(np.float32)
