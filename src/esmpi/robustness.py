"""Robustness of a saved policy to parameter perturbation (the ``robustness`` command).

Lehman, Chen, Clune & Stanley (2017), "ES is more than just a traditional finite-difference
approximator": ES optimises the expected return of a *cloud* of parameters around theta, so its
solutions should keep their return under random perturbation ``theta + s * eps`` better than
solutions of similar return found by a GA or a gradient method. This module measures that:

- ``probe(rd, k, sigmas, episodes, seed, comm) -> dict``: evaluate ``episodes`` unperturbed episodes
  of the saved policy and ``k`` perturbations ``theta + s * eps_k`` at every scale ``s``; one
  candidate table (``candidates.PROBE`` rows + ``EVAL`` rows) evaluated by ``evaluate.Evaluator``
  (the trainer's code), spread over the ranks (row ``i`` on rank ``i % size``), gathered with
  ``comm.allgather_rows`` and sorted by index: the result is the same bits at any world size.
- ``format_table(results)``: the table for people; ``plot_robustness(results)``: a figure.

Addresses (all from the *analysis* seed ``seed``, not the run's seed): ``eps_k`` is
``table[offset_k : offset_k + d]`` of the run's own noise table with ``offset_k`` drawn from
``rng(seed, PROBE, k)`` (so K = 100 is a prefix of K = 1000 and every scale uses the same eps_k);
unperturbed episode ``e`` resets like ``esmpi eval --seed seed`` episode ``e``, and perturbation
``k`` runs on the reset seed of episode ``k % episodes``: each perturbed episode has an unperturbed
twin on the same start state (common random numbers), and the reference return is their mean.

Statistics are empirical quantiles (``inverted_cdf``: always a sample, defined with failed
episodes, whose return is -inf; in the JSON a failed episode's return, or a quantile that falls on
one, is null). "keeps 90%" means ``R >= R0 - 0.1 |R0|``; the relative return
``R / R0`` is reported only when ``R0 > 0``.
"""

from __future__ import annotations

import math
import os
import time

import numpy as np

from . import candidates as C
from . import seeding
from .errors import EsmpiError

QUANTILES = (0.1, 0.5, 0.9)
SIGMA_KEYS = ("mutation_power", "sigma", "noise_stdev")   # a strategy's own table may name its scale so


def training_sigma(config: dict) -> float:
    """The perturbation scale the run trained with: its strategy table's ``mutation_power`` /
    ``sigma`` / ``noise_stdev`` if it has one (the GA's mutation power), else ``es.noise_stdev``."""
    name = config.get("strategy", {}).get("name", "openai_es")
    own = config.get(name, {})
    for k in SIGMA_KEYS:
        if isinstance(own, dict) and isinstance(own.get(k), (int, float)):
            return float(own[k])
    return float(config.get("es", {}).get("noise_stdev", 0.02))


def probe_table(d: int, noise_size: int, k: int, sigmas: list[float], episodes: int, seed: int) -> np.ndarray:
    """Perturbation ``k_i`` at scale ``i``: index ``i K + k_i`` (PROBE); unperturbed episode ``e``:
    index ``EVAL_BASE + e`` (EVAL); slots deal the whole table round-robin over the ranks."""
    from .replay import ANALYSIS_EVAL

    if d > noise_size:
        raise EsmpiError(f"the noise table ({noise_size} entries) is smaller than the policy's {d} parameters")
    offsets = np.array([seeding.rng(seed, seeding.PROBE, j).integers(0, noise_size - d + 1) for j in range(k)],
                       dtype=np.int64)
    parts = []
    for i, s in enumerate(sigmas):
        t = C.table(k)
        j = np.arange(k, dtype=np.int64)
        t["index"] = i * k + j
        t["kind"] = C.PROBE
        t["offset"] = offsets
        t["scale"] = np.float32(s)
        C.set_addr(t, ANALYSIS_EVAL, j % episodes)
        parts.append(t)
    ev = C.table(episodes)
    e = np.arange(episodes, dtype=np.int64)
    ev["index"] = C.EVAL_BASE + e
    ev["kind"] = C.EVAL
    C.set_addr(ev, ANALYSIS_EVAL, e)
    parts.append(ev)
    t = np.concatenate(parts)
    t["hi"] = d
    t["slot"] = np.arange(t.size)
    return t


def _check(k: int, sigmas: list[float], episodes: int) -> None:
    if k < 1:
        raise EsmpiError(f"-k {k}: need at least 1 perturbation")
    if episodes < 1:
        raise EsmpiError(f"--episodes {episodes}: need at least 1 unperturbed episode")
    bad = [s for s in sigmas if not (s > 0 and math.isfinite(s))]
    if not sigmas or bad:
        raise EsmpiError(f"--sigma {bad[0] if bad else '(none)'}: perturbation scales must be finite and > 0")


def _stats(r: np.ndarray, r0: float) -> dict:
    q = np.quantile(r, QUANTILES, method="inverted_cdf")
    # R0 = -inf (an unperturbed episode failed): nothing to keep
    keep = float(np.mean(r >= r0 - 0.1 * abs(r0))) if math.isfinite(r0) else None
    out = {"p10": _num(q[0]), "median": _num(q[1]), "p90": _num(q[2]), "failed": int(np.sum(~np.isfinite(r))),
           "keep90": keep}
    rel = (q / r0) if r0 > 0 else [None] * 3
    out.update({"rel_p10": _num(rel[0]), "rel_median": _num(rel[1]), "rel_p90": _num(rel[2])})
    return out


def _num(x):
    return None if x is None or not math.isfinite(x) else float(x)


def probe(rd, k: int = 1000, sigmas: list[float] | None = None, multiples=(1.0, 2.0), episodes: int = 10,
          seed: int = 0, comm=None, tables: dict | None = None) -> dict:
    """Robustness of ``rd``'s saved policy (``analyze.RunData``): see the module docstring.
    ``sigmas`` (absolute scales) default to ``multiples`` x the run's training sigma. ``tables``:
    a dict that keeps noise tables by (size, seed) across calls (runs of one config share one)."""
    from .comm import SerialComm
    from .evaluate import Evaluator
    from .noise import NoiseTable
    from .replay import _objective

    comm = comm or SerialComm()
    sig0 = training_sigma(rd.config)
    sigmas = [float(s) for s in (sigmas if sigmas else [m * sig0 for m in multiples])]
    _check(k, sigmas, episodes)
    cfg = rd.ck["config"]
    theta = np.asarray(rd.state.theta, np.float32)
    table = probe_table(theta.size, cfg.noise.size, k, sigmas, episodes, seed)
    t0 = time.perf_counter()
    obj = _objective(rd)          # the run's env and policy with the saved observation normalisation
    try:
        key = (cfg.noise.size, cfg.noise.seed)
        tables = {} if tables is None else tables
        noise = tables[key] if key in tables else tables.setdefault(key, NoiseTable(*key, comm))
        ev = Evaluator(obj, noise, seed, comm.rank)
        rows, _ = ev.run(C.mine(table, comm.rank, comm.size), theta.reshape(1, -1), 0, obj.max_episode_steps,
                         obj.max_episode_steps)
    finally:
        obj.close()
    res = C.Results.from_rows(comm.allgather_rows(rows), np.zeros((0, 2)), ev.bc_dim, 0)
    seconds = time.perf_counter() - t0
    base = res.returns[res.of(C.EVAL_BASE + np.arange(episodes))]
    ok = bool(np.all(np.isfinite(base)))
    r0 = float(np.mean(base)) if ok else -math.inf
    scales = []
    for i, s in enumerate(sigmas):
        r = res.returns[res.of(i * k + np.arange(k))]
        scales.append({"sigma": s, "multiple": s / sig0, **_stats(r, r0),
                       "returns": [None if not math.isfinite(x) else float(x) for x in r]})
    return {"checkpoint": str(rd.checkpoint), "label": rd.label, "env_id": rd.config.get("env", {}).get("id"),
            "strategy": rd.config.get("strategy", {}).get("name", "openai_es"), "generation": rd.state.generation,
            "num_params": int(theta.size), "training_sigma": sig0, "k": k, "seed": seed, "episodes": episodes,
            "unperturbed": {"mean": _num(r0), "std": _num(np.std(base)) if ok else None,
                            "returns": [_num(x) for x in base]},
            "scales": scales, "ranks": comm.size, "seconds": seconds,
            "loadavg": " ".join(open("/proc/loadavg").read().split()[:3]) if os.path.exists("/proc/loadavg") else ""}


def format_table(results: list[dict]) -> str:
    """One line per (run, scale): the perturbed-return distribution next to the unperturbed return."""
    def f(x, p=1):
        return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{p}f}"

    head = (f"{'run':<28} {'strategy':<10} {'R0 (mean of n)':>18} {'sigma':>8} {'x':>4} {'p10':>9} {'median':>9} "
            f"{'p90':>9} {'rel p10':>7} {'rel med':>7} {'rel p90':>7} {'keep90':>6} {'fail':>4}")
    lines = [head, "-" * len(head)]
    for r in results:
        u = r["unperturbed"]
        ref = f"{f(u['mean'])} (n={r['episodes']})"
        for s in r["scales"]:
            lines.append(f"{r['label'][:28]:<28} {r['strategy'][:10]:<10} {ref:>18} "
                         f"{s['sigma']:>8.4g} {s['multiple']:>4.3g} {f(s['p10']):>9} {f(s['median']):>9} "
                         f"{f(s['p90']):>9} {f(s['rel_p10'], 2):>7} {f(s['rel_median'], 2):>7} "
                         f"{f(s['rel_p90'], 2):>7} {f(s['keep90'], 2):>6} {s['failed']:>4}")
    r = results[0]
    lines.append(f"K = {r['k']} perturbations theta + sigma * eps_k per scale (analysis seed {r['seed']}); "
                 f"rel = R / R0; keep90 = fraction with R >= R0 - 0.1 |R0|; "
                 f"{r['ranks']} rank(s), {sum(x['seconds'] for x in results):.1f} s, load {r['loadavg']}")
    return "\n".join(lines)


def plot_robustness(results: list[dict], title: str | None = None):
    """One panel per scale (position in the scale list): boxes of the perturbed returns per run
    relative to the unperturbed return, whiskers at the 10th and 90th percentiles. Relative is
    R / R0 (lines at 1 and 0.9) when every run has R0 > 0, else R - R0 (line at 0)."""
    from matplotlib.figure import Figure

    ratio = all((r["unperturbed"]["mean"] or 0) > 0 for r in results)
    n = max(len(r["scales"]) for r in results)
    fig = Figure(figsize=(1.2 + max(3.0, 1.1 * len(results)) * n, 4.4), layout="constrained")
    axes = fig.subplots(1, n, squeeze=False, sharey=True)[0]
    for i, ax in enumerate(axes):
        data, labels = [], []
        for r in results:
            r0 = r["unperturbed"]["mean"]          # None: an unperturbed episode failed
            s = r["scales"][i] if i < len(r["scales"]) else None
            if s is None or r0 is None:
                data.append([])
                labels.append(f"{r['label']}\n{r['strategy']}")
                continue
            x = np.array([v if v is not None else -np.inf for v in s["returns"]])
            x = x / r0 if ratio else x - r0
            lo = np.nanmin(np.where(np.isfinite(x), x, np.nan)) if np.isfinite(x).any() else -1.0
            data.append(np.maximum(x, lo))          # failed episodes (-inf) drawn at the worst finite value
            labels.append(f"{r['label']}\n{r['strategy']}\nsigma {s['sigma']:.3g}")
        ax.boxplot(data, whis=(10, 90), showfliers=False, medianprops={"color": "C3"})
        ax.set_xticks(range(1, len(labels) + 1), labels, fontsize=7)
        for y, ls in (((1.0, "-"), (0.9, "--")) if ratio else ((0.0, "-"),)):
            ax.axhline(y, color="0.3", lw=0.8, ls=ls)
        mult = sorted({round(r["scales"][i]["multiple"], 3) for r in results if i < len(r["scales"])})
        sig = sorted({float(r["scales"][i]["sigma"]) for r in results if i < len(r["scales"])})
        what = f"{', '.join(f'{m:g}' for m in mult)} x training sigma"
        ax.set_title(f"s = {sig[0]:g} ({what})" if len(sig) == 1 else f"perturbation scale {what}", fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    axes[0].set_ylabel(("R / R0" if ratio else "R - R0") + " (box: quartiles, whiskers: 10th-90th pct.)")
    k = results[0]["k"]
    fig.suptitle(title or f"robustness to parameter perturbation: K = {k} perturbations per scale", fontsize=10)
    return fig
