"""Tools of the ES-vs-SGD study (Zhang, Clune & Stanley 2017): how well does ES follow the gradient?

- ``cosine(a, b)`` and ``pearson(a, b)``: the correlation of two gradient vectors (float64). The
  small-sigma theory below is about the cosine; for gradients of mean ~0 the two agree closely.
- ``theory_correlation(pairs, d) = sqrt(p / (p + d - 1))``: the expected cosine between the ES
  estimate from ``p`` antithetic pairs and the true gradient in ``d`` parameters, for raw rewards
  and sigma -> 0 (then ``f(theta + sigma eps) - f(theta - sigma eps) = 2 sigma eps.g``, so the
  estimate is ``(1/p) sum_j eps_j eps_j^T g``: a component ``S/p`` along g and ``S chi2_{d-1}/p^2``
  of squared length across it, with ``S ~ chi2_p``; cosine = ``sqrt(S / (S + chi2_{d-1}))``).
  ``pairs_for_correlation(rho, d)`` inverts it. The paper's figures are this formula with
  p = offspring / 2: 10,000 pseudo-offspring on 3,274,634 parameters give 3.9%, and a 20%
  correlation needs 272,886 (the paper: about 274,000).
- ``proxy_gradient(g_true, rho, rng)``: the SGD-with-noise proxy ``g_true + m * g_noise`` whose
  cosine with g_true is exactly ``rho``: g_noise is a seeded Gaussian made orthogonal to g_true and
  of unit length, and ``m = |g_true| sqrt(1/rho^2 - 1)``. (With a plain N(0, I) g_noise, the paper's
  form, ``m = |g_true| sqrt((1/rho^2 - 1) / d)`` gives rho in expectation: ``proxy_scale``.)
- ``es_gradient(rewards, offsets, noise, d, shaping)``: the ES loop's own ``g`` for a (N, 2)
  reward matrix, bit for bit as OpenAI-ES's ``tell`` computes it: shaping, pair weights,
  ``NoiseTable.weighted_sum`` in pair order, divided by 2N. ``g / sigma`` estimates the gradient.
- ``perturbed_rewards(f, theta, sigma, offsets, noise)``: the (N, 2) rewards of ``f`` at
  ``theta +- sigma eps_j``, with the loop's float32 perturbation arithmetic (``esmpi.evaluate``).
- ``objective_es_gradient`` / ``objective_correlation``: both of the above on a
  ``SupervisedObjective``, with one shared mini-batch (mini-batch ES) or one per pair.
- ``search_pairs``: the measured population that reaches a target correlation, beside the theory's.
- ``python -m esmpi.supervised.study``: a correlation table at the initial theta.
"""

from __future__ import annotations

import math

import numpy as np

from .. import seeding
from ..shaping import SHAPINGS, pair_weights


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    den = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / den) if den > 0 else math.nan


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return cosine(a - a.mean(), b - b.mean())


def theory_correlation(pairs, d: int):
    p = np.asarray(pairs, np.float64)
    return np.sqrt(p / (p + d - 1))


def pairs_for_correlation(rho: float, d: int) -> int:
    """The smallest number of antithetic pairs whose theoretical correlation reaches ``rho``."""
    if not 0 < rho < 1:
        raise ValueError(f"rho must be in (0, 1), got {rho}")
    return math.ceil(rho * rho * (d - 1) / (1 - rho * rho) - 1e-9)


def proxy_scale(g_norm: float, rho: float, d: int, orthogonal: bool = True) -> float:
    """m in ``g_true + m * g_noise`` for cosine rho (orthogonal unit g_noise: exact; N(0, I): expected)."""
    m = g_norm * math.sqrt(1.0 / (rho * rho) - 1.0)
    return m if orthogonal else m / math.sqrt(d)


def proxy_gradient(g_true: np.ndarray, rho: float, rng: np.random.Generator) -> np.ndarray:
    """(d,) float64: g_true + m * u, u a seeded unit Gaussian direction orthogonal to g_true (rho = 1: g_true)."""
    g = np.asarray(g_true, np.float64)
    if rho >= 1:
        return g.copy()
    u = rng.standard_normal(g.size)
    gg = g @ g
    if gg > 0:
        u -= (u @ g) / gg * g
    u /= np.linalg.norm(u)
    return g + proxy_scale(math.sqrt(gg), rho, g.size) * u


def perturbed_rewards(f, theta: np.ndarray, sigma: float, offsets: np.ndarray, noise) -> np.ndarray:
    """(N, 2) float64: column 0 = f(theta + sigma eps_j, j, 0), column 1 = f(theta - sigma eps_j, j, 1)."""
    theta = np.asarray(theta, np.float32)
    scaled, perturbed = np.empty_like(theta), np.empty_like(theta)
    out = np.empty((len(offsets), 2))
    for j, off in enumerate(offsets):
        np.multiply(noise.get(int(off), theta.size), np.float32(sigma), out=scaled)
        np.add(theta, scaled, out=perturbed)
        out[j, 0] = f(perturbed, j, 0)
        np.subtract(theta, scaled, out=perturbed)
        out[j, 1] = f(perturbed, j, 1)
    return out


def es_gradient(rewards_n2: np.ndarray, offsets: np.ndarray, noise, d: int, shaping: str = "identity") -> np.ndarray:
    """(d,) float32: ``sum_j (s+_j - s-_j) eps_j / (2N)`` with ``s = SHAPINGS[shaping](rewards)``, as the loop."""
    w = pair_weights(SHAPINGS[shaping](np.asarray(rewards_n2, np.float64)))
    g = noise.weighted_sum(w, np.asarray(offsets, np.int64), d)
    g /= np.float32(rewards_n2.size)
    return g


def study_offsets(noise, run_seed: int, step: int, pairs: int, d: int) -> np.ndarray:
    """(pairs,) int64 noise offsets of study step ``step`` (purpose GRAD_STUDY, kind 0)."""
    return seeding.rng(run_seed, seeding.GRAD_STUDY, step, 0).integers(0, noise.size - d + 1, size=pairs, dtype=np.int64)


SHARED_BATCH, PAIR_BATCH, OTHER_BATCH = 1, 2, 3    # address kinds (kind 0: noise offsets)


def batch_seed(run_seed: int, step: int, kind: int = SHARED_BATCH, pair: int = 0) -> int:
    """Mini-batch seed of study step ``step``: the shared batch, pair ``pair``'s own batch
    (no-mini-batch ES) or an independent second batch (the SGD-vs-SGD correlation)."""
    return seeding.episode_seed(run_seed, seeding.GRAD_STUDY, step, kind, pair)


def objective_es_gradient(objective, theta, sigma: float, noise, run_seed: int, step: int, pairs: int,
                          shared_batch: bool = True, shaping: str = "identity") -> np.ndarray:
    """(d,) float32: the loop's g for ``objective`` at theta (divide by sigma for the gradient scale)."""
    offsets = study_offsets(noise, run_seed, step, pairs, objective.num_params)
    seeds = [batch_seed(run_seed, step) if shared_batch else batch_seed(run_seed, step, PAIR_BATCH, j)
             for j in range(pairs)]
    rewards = perturbed_rewards(lambda th, j, s: objective.episode(th, seeds[j], 1).ret, theta, sigma, offsets, noise)
    return es_gradient(rewards, offsets, noise, objective.num_params, shaping)


def objective_correlation(objective, theta, sigma: float, noise, run_seed: int, step: int, pairs: int) -> dict:
    """One row of the correlation table at theta: ES (p pairs, shared batch) vs the exact gradient of that
    batch, the same for the theory, and SGD vs SGD on two independent batches (the paper: 39.04%)."""
    g_true = objective.gradient(theta, batch_seed(run_seed, step))
    g_es = objective_es_gradient(objective, theta, sigma, noise, run_seed, step, pairs)
    g_other = objective.gradient(theta, batch_seed(run_seed, step, OTHER_BATCH))
    return {"step": step, "pairs": pairs, "d": objective.num_params, "sigma": sigma,
            "es_true": cosine(g_es, g_true), "theory": float(theory_correlation(pairs, objective.num_params)),
            "sgd_sgd": cosine(g_true, g_other)}


def search_pairs(objective, theta, sigma: float, noise, rho: float, run_seed: int, step: int = 0,
                 start: int = 16, max_pairs: int = 1 << 20) -> dict:
    """The population that reaches a measured correlation ``rho`` at theta: double the pairs from
    ``start`` until one measurement (shared batch of ``step``) reaches rho, then bisect between the
    last two sizes. Returns the rows measured and the smallest passing pair count (None if
    ``max_pairs`` did not reach it), with the theory's answer beside it."""
    rows, lo, hi, p = [], None, None, start
    while p <= max_pairs:
        rows.append(objective_correlation(objective, theta, sigma, noise, run_seed, step, p))
        if rows[-1]["es_true"] >= rho:
            hi = p
            break
        lo, p = p, 2 * p
    while hi is not None and lo is not None and hi - lo > max(1, lo // 16):    # to ~6% of the size
        mid = (lo + hi) // 2
        rows.append(objective_correlation(objective, theta, sigma, noise, run_seed, step, mid))
        lo, hi = (lo, mid) if rows[-1]["es_true"] >= rho else (mid, hi)
    return {"rho": rho, "pairs": hi, "theory_pairs": pairs_for_correlation(rho, objective.num_params), "rows": rows}


def main(argv=None) -> int:
    """``python -m esmpi.supervised.study --data DIR --pairs 100,1000``: a correlation table at the initial theta."""
    import argparse
    import sys

    from ..errors import EsmpiError
    from ..noise import NoiseTable
    from ..objectives.supervised import SupervisedObjective, SupervisedSettings

    ap = argparse.ArgumentParser(prog="python -m esmpi.supervised.study", description=main.__doc__)
    ap.add_argument("--data", required=True)
    ap.add_argument("--net", default="small_cnn")
    ap.add_argument("--pairs", default="100,1000", help="comma list of antithetic pair counts")
    ap.add_argument("--sigma", type=float, default=0.002, help="noise_stdev (the paper: 0.002)")
    ap.add_argument("--steps", type=int, default=1, help="independent repeats (batches and noise) per row")
    ap.add_argument("--table", type=int, default=50_000_000, help="noise table size")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--theta", metavar="RUN", help="measure at the theta of an esmpi run (directory or .h5 "
                    "checkpoint, same --net) instead of the initial theta: the correlation during training")
    a = ap.parse_args(argv)
    try:
        obj = SupervisedObjective(SupervisedSettings(a.data, a.net, test_limit=1))
        pairs = [int(p) for p in a.pairs.split(",")]
        theta = obj.initial_theta(seeding.rng(a.seed, seeding.INIT_THETA))
        where = "initial theta"
        if a.theta:
            from ..runs import load_run
            rd = load_run(a.theta)
            theta = np.asarray(rd.state.theta, np.float32)
            where = f"theta of {a.theta} after generation {rd.state.generation}"
            if theta.size != obj.num_params:
                raise EsmpiError(f"--theta {a.theta}: {theta.size} parameters, but --net {a.net} has {obj.num_params}")
    except (EsmpiError, ValueError) as ex:
        print(f"error: {ex}", file=sys.stderr)
        return 2
    noise = NoiseTable(a.table, 123)
    print(f"{a.net}, d = {obj.num_params:,}, sigma = {a.sigma}, batch {obj.settings.batch_size}, {a.data}, {where}")
    print("| pairs | ES vs true (measured) | theory sqrt(p/(p+d-1)) | SGD vs SGD |\n|---:|---:|---:|---:|")
    for p in pairs:
        rows = [objective_correlation(obj, theta, a.sigma, noise, a.seed, step, p) for step in range(a.steps)]
        es = [r["es_true"] for r in rows]
        sd = f" ± {np.std(es, ddof=1) / math.sqrt(len(es)):.4f}" if len(es) > 1 else ""
        print(f"| {p:,} | {np.mean(es):.4f}{sd} | {rows[0]['theory']:.4f} | {np.mean([r['sgd_sgd'] for r in rows]):.4f} |",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
