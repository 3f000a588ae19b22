"""Novelty-search arithmetic: k-NN novelty against a behaviour archive, novelty-proportional member
selection, NSRA-ES's adaptive reward weight, and the variants' fitness mix.

Everything here is a pure function of its arguments and bitwise identical on every rank and
machine (DESIGN.md, rule 4): distances are built dimension by dimension from elementwise IEEE
operations (``-``, ``*``, ``+``, ``sqrt`` are correctly rounded; no BLAS, no pairwise-summation
reduction over the archive), and the sums that follow (the k nearest distances, the selection
weights) run in an explicit Python loop in a fixed order.

Shapes: an archive is ``(n, b)`` float64 (n behaviour characterisations of dimension b), a BC is
``(b,)`` float64.
"""

from __future__ import annotations

import math

import numpy as np

from ..shaping import centered_ranks


def distances(archive: np.ndarray, bc: np.ndarray) -> np.ndarray:
    """(n,) Euclidean distances from ``bc`` (b,) to every archive row, accumulated over the b
    dimensions in order (each entry's sum is a fixed sequence of correctly rounded operations)."""
    d2 = np.zeros(archive.shape[0], np.float64)
    for j in range(archive.shape[1]):
        diff = archive[:, j] - bc[j]
        d2 += diff * diff
    return np.sqrt(d2)


def novelty(archive: np.ndarray, bc: np.ndarray, k: int) -> float:
    """Mean distance from ``bc`` to its ``min(k, n)`` nearest archive entries (the authors'
    ``compute_novelty_vs_archive``). A non-finite BC (a failed episode) has novelty -inf, so it
    ranks last; an empty archive gives 0."""
    if not np.all(np.isfinite(bc)):
        return -math.inf
    if archive.shape[0] == 0:
        return 0.0
    nearest = np.sort(distances(archive, bc))[: min(k, archive.shape[0])]
    total = 0.0
    for x in nearest:          # fixed order: ascending distance
        total += float(x)
    return total / nearest.size


def novelties(archive: np.ndarray, bcs: np.ndarray, k: int) -> np.ndarray:
    """Novelty of each row of ``bcs`` (..., b), same leading shape, float64."""
    flat = bcs.reshape(-1, bcs.shape[-1])
    out = np.array([novelty(archive, x, k) for x in flat], np.float64)
    return out.reshape(bcs.shape[:-1])


def select_member(nov: np.ndarray, u: float) -> int:
    """Member index drawn with probability proportional to ``nov`` (M,), from one uniform ``u`` in
    [0, 1): the first member whose running sum exceeds ``u * total``. Non-finite or negative
    novelties weigh 0; if every weight is 0 (all BCs identical) the draw is uniform."""
    w = [float(x) if math.isfinite(x) and x > 0 else 0.0 for x in nov]
    total = 0.0
    for x in w:
        total += x
    if not total > 0:
        return min(int(u * len(w)), len(w) - 1)
    target, acc = u * total, 0.0
    last = 0
    for m, x in enumerate(w):
        if x > 0:
            acc += x
            last = m
            if target < acc:
                return m
    return last                # u * total rounded up to the total: the last member with weight


def nsra_weight(w: float, best: float, stale: int, ret: float, delta: float, patience: int,
                min_improvement: float = 0.0) -> tuple[float, float, int]:
    """One step of NSRA-ES's schedule for a member measured at return ``ret``: a new best (above
    ``best + min_improvement``) raises the reward weight ``w`` by ``delta`` and resets the stagnation
    count; otherwise the count grows, and at ``patience`` measurements without improvement ``w``
    drops by ``delta`` (count reset). ``w`` stays in [0, 1]. Returns (w, best, stale)."""
    if ret > best + min_improvement:
        return min(1.0, w + delta), ret, 0
    stale += 1
    if stale >= patience:
        return max(0.0, w - delta), best, 0
    return w, best, stale


def mix(variant: str, returns_n2: np.ndarray, novelty_n2: np.ndarray, w: float) -> np.ndarray:
    """The shaped (N, 2) float32 fitness of a variant: 'ns' centered ranks of novelty; 'nsr' the
    mean of the centered ranks of return and novelty; 'nsra' w * ranks(return) + (1 - w) * ranks(novelty)."""
    nov = centered_ranks(novelty_n2)
    if variant == "ns":
        return nov
    ret = centered_ranks(returns_n2)
    if variant == "nsr":
        return (ret + nov) / np.float32(2.0)
    if variant == "nsra":
        return np.float32(w) * ret + np.float32(1.0 - w) * nov
    raise ValueError(f"unknown novelty variant {variant!r}")   # config.py refuses it first
