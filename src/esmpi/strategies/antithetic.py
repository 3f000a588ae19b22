"""The ``ask`` shared by the antithetic strategies (OpenAI-ES, ARS, and the novelty family's inner ES).

Round ``r`` of generation ``g`` is block ``r`` of ``es.pairs_per_generation`` antithetic pairs around
one base; round 0 also evaluates the unperturbed base ``es.eval_episodes`` times. Further blocks are
asked while the generation has fewer than ``es.min_timesteps_per_generation`` training steps, up to
``es.max_blocks_per_generation`` (the reference's ``timesteps_per_batch``).

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
    if r == 0 and es_cfg.eval_episodes and eval_base is not None:
        t = np.concatenate([t, C.evaluations(g, es_cfg.eval_episodes, eval_base)])
    return t


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
