"""Fitness shaping: pure functions from raw returns (shape ``(n_pairs, 2)``, column 0 = +eps,
column 1 = -eps) to shaped returns of the same shape, picked by name from ``SHAPINGS``.

Convention: we *maximise* return. Failed episodes arrive as ``-inf`` and so rank last; ties share
their average rank (see ``ranks``).
Centered ranks lie in [-0.5, 0.5] and are computed over all 2N returns together, as in the
reference (``compute_centered_ranks(returns_n2)``).
"""

from __future__ import annotations

import numpy as np


def ranks(x: np.ndarray) -> np.ndarray:
    """Ranks in [0, len(x)) of a 1-D array, float64; tied values share their average rank.

    The reference breaks ties by sort position, which gives a pair whose two episodes tie (both
    failed, or both at an env's return cap such as CartPole's 500) an arbitrary non-zero weight.
    With average ranks such a pair contributes nothing. Without ties the two are identical.
    """
    order = np.argsort(x, kind="stable")
    xs = x[order]
    pos = np.arange(x.size, dtype=np.float64)
    # start index of each run of equal values, and each element's run
    starts = np.flatnonzero(np.concatenate([[True], xs[1:] != xs[:-1]]))
    run = np.cumsum(np.concatenate([[False], xs[1:] != xs[:-1]]))
    ends = np.append(starts[1:], x.size) - 1
    r = np.empty(x.size, dtype=np.float64)
    r[order] = ((starts + ends) / 2.0)[run] if x.size else pos
    return r


def centered_ranks(returns_n2: np.ndarray) -> np.ndarray:
    n = returns_n2.size
    if n == 1:
        return np.zeros_like(returns_n2, dtype=np.float32)
    y = (ranks(np.asarray(returns_n2, dtype=np.float64).ravel()) / (n - 1) - 0.5).astype(np.float32)
    return y.reshape(returns_n2.shape)


def identity(returns_n2: np.ndarray) -> np.ndarray:
    """Raw returns (failed episodes get the worst finite return seen, so the sum stays finite)."""
    r = np.asarray(returns_n2, dtype=np.float64).copy()
    bad = ~np.isfinite(r)
    if bad.any():
        r[bad] = r[~bad].min() if (~bad).any() else 0.0
    return r.astype(np.float32)


def raw(returns_n2: np.ndarray) -> np.ndarray:
    """Raw returns kept in float64 (failed episodes as in ``identity``): the antithetic difference is
    then taken in float64 and rounded once by ``pair_weights``. ``identity`` rounds each return to
    float32 first, which loses most of a small difference between two large returns, e.g. two
    cross-entropies of about 2.3 that differ by 1e-6 (sigma 0.002 on one mini-batch, docs/mnist.md).
    ``identity`` stays as it is: published runs depend on its bits."""
    r = np.asarray(returns_n2, dtype=np.float64).copy()
    bad = ~np.isfinite(r)
    if bad.any():
        r[bad] = r[~bad].min() if (~bad).any() else 0.0
    return r


def sign(returns_n2: np.ndarray) -> np.ndarray:
    """Sign of each pair's difference (+1/-1/0 split evenly between the two columns)."""
    d = np.sign(returns_n2[:, 0] - returns_n2[:, 1]).astype(np.float32)
    return np.stack([0.5 * d, -0.5 * d], axis=1)


SHAPINGS = {"centered_ranks": centered_ranks, "identity": identity, "raw": raw, "sign": sign}


def pair_weights(shaped_n2: np.ndarray) -> np.ndarray:
    """Weights w_j = shaped(+eps_j) - shaped(-eps_j), float32, the coefficients of the noise sum (the
    difference is taken in the shaped dtype, float64 for ``raw``, and rounded to float32 once)."""
    return (shaped_n2[:, 0] - shaped_n2[:, 1]).astype(np.float32)
