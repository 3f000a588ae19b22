"""The ``ask`` shared by the antithetic strategies (OpenAI-ES, ARS, and the novelty family's inner ES).

Round ``r`` of generation ``g`` is block ``r`` of ``es.pairs_per_generation`` antithetic pairs around
one base; round 0 also evaluates the unperturbed base ``es.eval_episodes`` times. Further blocks are
asked while the generation has fewer than ``es.min_timesteps_per_generation`` training steps, up to
``es.max_blocks_per_generation`` (the reference's ``timesteps_per_batch``).

Two options of the supervised study (Zhang, Clune & Stanley 2017; docs/mnist.md) change only the
candidate rows, never the draws above, so every default run keeps its bits:

- ``es.batch_mode``: which episode (mini-batch) a training candidate is scored on: its own
  (``'episode'``, the default: ``(EPISODE, g, block, pair, sign)``), one per generation for every
  candidate (``'shared'``: ``(MINIBATCH, g)``, mini-batch ES) or one per antithetic pair
  (``'per_pair'``: ``(MINIBATCH, g, block, pair)``, no-mini-batch ES);
- ``es.perturb_bucket = B``: theta is split into ``ceil(d / B)`` contiguous buckets of near-equal
  size (``bucket_edges``) and pair j of block r perturbs only bucket
  ``rng(run_seed, BUCKET, g, r).integers(0, n_buckets, N)[j]``: the rows carry its ``[lo, hi)``
  and ``update_sum`` adds only those slices (``NoiseTable.slice_sum``).

``gather_pairs`` turns the rounds back into the ``(N, 2)`` arrays of the paper, in pair order.
"""

from __future__ import annotations

import numpy as np

from .. import candidates as C
from .. import seeding


def ask_pairs(ctx, es_cfg, g: int, r: int, prior: list, base: int = 0, eval_base: int | None = 0):
    steps = sum(int(rd.results.lengths[rd.rows(C.TRAIN)[1]].sum()) for rd in prior)
    if r > 0 and (steps >= es_cfg.min_timesteps_per_generation or r >= es_cfg.max_blocks_per_generation):
        return None
    t = C.antithetic_pairs(ctx.run_seed, g, r, es_cfg.pairs_per_generation, ctx.d, ctx.noise_size,
                           es_cfg.noise_stdev, es_cfg.obs_stat_fraction, ctx.obs_dim, base)
    _study_options(t, ctx, es_cfg, g, r)
    if r == 0 and es_cfg.eval_episodes and eval_base is not None:
        t = np.concatenate([t, C.evaluations(g, es_cfg.eval_episodes, eval_base)])
    return t


def bucket_edges(d: int, bucket: int) -> np.ndarray:
    """(n_buckets + 1,) int64 edges of ``ceil(d / bucket)`` contiguous buckets of ``floor`` or ``ceil``
    of ``d / n_buckets`` parameters each (never more than ``bucket``)."""
    n = -(-d // bucket)
    return np.arange(n + 1, dtype=np.int64) * d // n


def _study_options(t: np.ndarray, ctx, es_cfg, g: int, r: int) -> None:
    """Apply ``es.batch_mode`` and ``es.perturb_bucket`` to the block's pair rows, in place."""
    mode, bucket = es_cfg.batch_mode, es_cfg.perturb_bucket
    if mode == "episode" and not bucket:
        return
    n = es_cfg.pairs_per_generation
    j = np.arange(2 * n, dtype=np.int64) // 2
    if mode == "shared":
        C.set_addr(t, seeding.MINIBATCH, g)
    elif mode == "per_pair":
        C.set_addr(t, seeding.MINIBATCH, g, r, j)
    if bucket:
        edges = bucket_edges(ctx.d, bucket)
        k = seeding.rng(ctx.run_seed, seeding.BUCKET, g, r).integers(0, edges.size - 1, size=n, dtype=np.int64)
        t["lo"] = edges[k][j]
        t["hi"] = edges[k + 1][j]


def update_sum(noise, weights: np.ndarray, offsets: np.ndarray, slices, d: int) -> np.ndarray:
    """``sum_j w_j eps_j`` (d,) float32 in pair order: the full ``weighted_sum``, or with ``slices =
    (lo, hi)`` (limited perturbation) only each pair's perturbed slice (``slice_sum``)."""
    if slices is None:
        return noise.weighted_sum(weights, offsets, d)
    return noise.slice_sum(weights, offsets, slices[0], slices[1], d)


def steal_pair(ctx, es_cfg, g: int, r: int, rank: int, size: int, k: int, base: int = 0) -> np.ndarray:
    """'steal' schedule: extra pair ``k`` of this rank's own stream ``(EXTRA, g, r, rank, k)``
    (results then depend on timing and world size: opt-in, for strategies with ``accepts_steal``)."""
    rng = seeding.rng(ctx.run_seed, seeding.EXTRA, g, r, rank, k)
    off = int(rng.integers(0, ctx.noise_size - ctx.d + 1))
    record = ctx.obs_dim > 0 and es_cfg.obs_stat_fraction > 0 and rng.random() < es_cfg.obs_stat_fraction
    gj = EXTRA_BASE + ((r * size + rank) << 24) + k
    return extra_rows(np.array([2 * gj, 2 * gj + 1]), np.array([off, off]), es_cfg.noise_stdev, ctx.d, record,
                      (seeding.EXTRA, g, r, rank, k), base)


EXTRA_BASE = 2**50   # extras sort after every static pair; 2 * index stays float64-exact (< 2**53)


def extra_rows(index, offsets, sigma, d, record=False, addr=None, base=0) -> np.ndarray:
    """Candidate rows of extra pairs from their (index, offset): what every rank rebuilds after the
    allgather, so ``tell`` sees them like static pairs (only the episode address is not rebuilt)."""
    index = np.asarray(index, np.int64)
    t = C.table(index.size)
    t["index"] = index
    t["kind"] = C.TRAIN
    t["base"] = base
    t["offset"] = offsets
    t["sign"] = np.where(index % 2 == 0, 1, -1)
    t["hi"] = d
    t["scale"] = np.float32(sigma)
    t["record_obs"] = record
    if addr is not None:
        C.set_addr(t, *addr, index % 2)
    return t


def gather_pairs(rounds: list) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(offsets (N,), returns (N, 2), lengths (N, 2), failed (N, 2)) of every TRAIN pair, in pair order
    (round, then index; column 0 = +eps)."""
    offs, rets, lens, fail = [], [], [], []
    for rd in rounds:
        c, pos = rd.rows(C.TRAIN)
        if not (np.all(c["index"][0::2] % 2 == 0) and np.array_equal(c["index"][1::2], c["index"][0::2] + 1)):
            raise RuntimeError("gathered episodes do not form complete pairs")   # a bug, never user input
        offs.append(c["offset"][0::2])
        rets.append(rd.results.returns[pos].reshape(-1, 2))
        lens.append(rd.results.lengths[pos].reshape(-1, 2))
        fail.append(rd.results.failed[pos].reshape(-1, 2))
    return np.concatenate(offs), np.concatenate(rets), np.concatenate(lens), np.concatenate(fail)


def gather_slices(rounds: list) -> tuple[np.ndarray, np.ndarray]:
    """(lo (N,), hi (N,)) int64: the perturbed slice of every TRAIN pair, in ``gather_pairs``' order."""
    lo, hi = [], []
    for rd in rounds:
        c, _ = rd.rows(C.TRAIN)
        lo.append(c["lo"][0::2])
        hi.append(c["hi"][0::2])
    return np.concatenate(lo), np.concatenate(hi)
