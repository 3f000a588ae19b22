"""Section 7: a calibrated scale model of a Humanoid generation at 18, 144, 720 and 1,440 cores.

    python -m esmpi.bench.scale [--report bench/out/report.json] [--measure] [--json]

Calibration (measured, from ``report.json``'s ``calibration`` section, or measured now with
``--measure`` or when there is no report): esmpi's CPU µs per Humanoid-v5 step in short (random-init)
and long (1000-step) episodes, reset cost, per-pair perturbation cost, the episode-length sample of
perturbed random-init 256-256 policies, the single-core weighted-sum rate (GB/s) of the current
kernel, and the fixed cost of OpenAI-ES's ``tell`` besides the weighted sum.

Assumed (documented in ``ASSUMED``; override with ``--set key=value``):
- the paper's cluster: 1,440 cores on 80 machines, so 18 cores (ranks) per node; one rank per core;
- a generation is the reference's ``humanoid.json``: 10,000 episodes (5,000 antithetic pairs), at
  least 100,000 timesteps, ``eval_prob`` 0.003 (~30 evaluation episodes), d = 159,505 (v5 obs);
- node memory bandwidth 80 GB/s (a 2-socket node of the paper's era streams 60-100 GB/s);
- interconnect (Hockney alpha-beta): ``cloud`` = 10 GbE TCP (alpha 25 µs, 1.0 GB/s), ``hpc`` =
  InfiniBand EDR (alpha 1.5 µs, 10 GB/s); inside a node alpha 0.5 µs, 5 GB/s (shared memory).
  ``allgather``: recursive doubling (ceil(log2 p) steps, the first log2(cores per node) of them
  inside a node; bytes (p-1)/p x total) or ring ((p-1) alpha + the same bytes), whichever is
  cheaper (MPICH switches by size); ``allreduce`` of 8 bytes: ceil(log2 p) latencies. Per generation
  the trainer does 3 ``allgather_rows`` (each an Allgather of counts + an Allgatherv) and 1 allreduce.
  The locally measured shared-memory latencies are reported next to these but not used.

Episode lengths (what the extrapolation assumes):
- ``random_init``: the measured sample (perturbed random-init policies fall after ~20-40 steps);
- ``mid``: the measured sample's relative spread scaled to a mean of 300 steps (capped at 1000);
- ``trained``: 90% of perturbed episodes reach the 1000-step limit and 10% fall uniformly between
  step 100 and 1000 (a walking policy; its perturbations mostly keep walking). Per-step cost: the
  short-episode CPU cost (standing/walking has few contacts; the measured lying-down cost is the
  upper bound and would *raise* efficiency, so this is the conservative choice).

Variants (rows of the tables; "as is" is detected from the installed trainer):
- ``static pairs, replicated update``: pair j on rank j mod p, evaluation episodes on the ranks with
  fewest pairs, the generation waits for the slowest rank; every rank reads all the noise for the
  update, so a node reads it 18 times through one memory bus (esmpi before the node split);
- ``static pairs, node-split update``: one read per node, 1/18 per rank, + a barrier and a copy;
- ``steal schedule``: esmpi's opt-in ``es.schedule = 'steal'``: ranks done with their static share
  evaluate extra pairs until the slowest finishes; the pair in flight then is abandoned. Efficiency
  counts only completed work;
- ``episodes round-robin``: episode (pair, sign) i on rank i mod p (a static change: 2x finer units);
- ``dynamic episodes``: ranks take the next episode from a shared counter (one remote atomic, an
  alpha, per episode); results stay keyed by (pair, sign), so the update stays bitwise reproducible;

Efficiency E(p) = T(1) / (p T(p)), T(1) the one-core generation (all episodes, one update).
The budget: the paper's humanoid took 10 minutes on 1,440 cores (Salimans et al. 2017, abstract
and Fig. 1). Under this model that is ``600 s / T(1440)`` generations of the ``trained`` scenario (an
upper bound on time per generation, since early generations are shorter); the same number of
generations is then timed at the other core counts.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import sys
from pathlib import Path

import numpy as np

ASSUMED = {
    "cores": [18, 144, 720, 1440],
    "cores_per_node": 18,
    "pairs": 5000,
    "min_timesteps": 100_000,
    "eval_episodes": 30,
    "d": 159_505,
    "obs_dim": 348,
    "obs_fraction": 0.01,
    "node_bw_GBps": 80.0,
    "alpha_intra_s": 0.5e-6,
    "bw_intra_GBps": 5.0,
    "nets": {"cloud": {"alpha_s": 25e-6, "bw_GBps": 1.0}, "hpc": {"alpha_s": 1.5e-6, "bw_GBps": 10.0}},
    "trained_fall_fraction": 0.10,
    "trained_fall_min": 100,
    "max_steps": 1000,
    "mid_mean_length": 300,
    "budget_s": 600.0,
    "budget_cores": 1440,
    "monte_carlo": 8,
    "target_efficiency": 0.90,
}

# Used only when nothing was measured (numbers from docs of this machine kind, quiet machine).
FALLBACK_CALIBRATION = {
    "humanoid_cpu_us_per_step_short_episodes": 200.0,
    "humanoid_cpu_us_per_step_long_episodes": 365.0,
    "humanoid_us_reset": 60.0,
    "humanoid_us_perturb_pair": 150.0,
    "humanoid_random_init_episode_lengths": [22] * 50,
    "update_gbps": 24.0,
    "tell_fixed_s": 0.005,
}


# ------------------------------------------------------------------ costs
def _log2c(x: int) -> int:
    return max(0, math.ceil(math.log2(x))) if x > 1 else 0


def allgather_time(p: int, nbytes: float, a: dict, net: dict) -> float:
    if p <= 1:
        return 0.0
    c = a["cores_per_node"]
    inter = p > c
    steps = _log2c(p)
    intra_steps = min(steps, _log2c(c))
    a_in, a_out = a["alpha_intra_s"], net["alpha_s"]
    bw = (net["bw_GBps"] if inter else a["bw_intra_GBps"]) * 1e9
    vol = (p - 1) / p * nbytes / bw
    rd = intra_steps * a_in + (steps - intra_steps) * a_out + vol
    ring = (p - 1) * (a_out if inter else a_in) + vol
    return min(rd, ring)


def allreduce_time(p: int, a: dict, net: dict) -> float:
    if p <= 1:
        return 0.0
    steps = _log2c(p)
    intra = min(steps, _log2c(a["cores_per_node"]))
    return intra * a["alpha_intra_s"] + (steps - intra) * net["alpha_s"]


def collectives_time(p: int, a: dict, net: dict) -> float:
    pairs = a["pairs"]
    obs_rows = math.ceil(pairs * a["obs_fraction"])
    sizes = [pairs * 7 * 8, obs_rows * (2 + 2 * a["obs_dim"]) * 8, a["eval_episodes"] * 4 * 8]
    t = sum(allgather_time(p, 8 * p, a, net) + allgather_time(p, s, a, net) for s in sizes)
    return t + allreduce_time(p, a, net)


def update_time(p: int, a: dict, cal: dict, mode: str) -> float:
    nbytes = a["d"] * a["pairs"] * 4
    bw_core = cal["update_gbps"] * 1e9
    bw_node = a["node_bw_GBps"] * 1e9
    c = min(p, a["cores_per_node"])
    if mode == "replicated" or c == 1:
        return max(nbytes / bw_core, c * nbytes / bw_node)
    copy = a["d"] * 4 / 10e9
    return max(nbytes / (c * bw_core), nbytes / bw_node) + copy + _log2c(c) * a["alpha_intra_s"]


# ------------------------------------------------------------------ episode lengths
def length_sampler(scenario: str, a: dict, cal: dict):
    sample = np.asarray(cal["humanoid_random_init_episode_lengths"], dtype=np.float64)
    sample = sample[sample > 0] if sample.size else np.array([22.0])
    cap = a["max_steps"]

    def draw(rng, n):
        if scenario == "random_init":
            return rng.choice(sample, n)
        if scenario == "mid":
            x = rng.choice(sample, n) / sample.mean() * a["mid_mean_length"]
            return np.minimum(np.maximum(np.round(x), 1), cap)
        if scenario == "trained":
            out = np.full(n, float(cap))
            fall = rng.random(n) < a["trained_fall_fraction"]
            out[fall] = rng.integers(a["trained_fall_min"], cap, fall.sum())
            return out
        raise ValueError(scenario)
    return draw


def step_cost_s(scenario: str, cal: dict) -> float:
    return cal["humanoid_cpu_us_per_step_short_episodes"] * 1e-6


# ------------------------------------------------------------------ one generation
def rollout_makespan(p: int, task_cost: np.ndarray, eval_cost: np.ndarray, schedule: str, pull_s: float) -> float:
    """Slowest rank's rollout time. ``task_cost``: the cost of each unit of work in index order (a pair, or
    an episode); static = unit i on rank i mod p and evaluation episode e on rank p-1-(e mod p)."""
    n = task_cost.size
    if p == 1:
        return float(task_cost.sum() + eval_cost.sum())
    if schedule == "static":
        load = np.bincount(np.arange(n) % p, weights=task_cost, minlength=p)
        e_rank = p - 1 - (np.arange(eval_cost.size) % p)
        load += np.bincount(e_rank, weights=eval_cost, minlength=p)
        return float(load.max())
    # dynamic: evaluation episodes first (they are known up front), then the units in index order
    heap = [0.0] * p
    for c in np.concatenate([eval_cost, task_cost]):
        t = heapq.heappop(heap)
        heapq.heappush(heap, t + pull_s + float(c))
    return max(heap)


def steal_makespan(p: int, task_cost: np.ndarray, eval_cost: np.ndarray, rng, draw, cs: float, reset: float,
                   perturb: float) -> tuple[float, float, float]:
    """esmpi's opt-in 'steal' schedule: the static shares, then every rank that is done evaluates extra
    pairs until the slowest rank finishes its share; the pair in flight then is abandoned (wasted).
    Returns (makespan, useful extra work in seconds, extra steps)."""
    n = task_cost.size
    if p == 1:
        return float(task_cost.sum() + eval_cost.sum()), 0.0, 0.0
    load = np.bincount(np.arange(n) % p, weights=task_cost, minlength=p)
    load += np.bincount(p - 1 - (np.arange(eval_cost.size) % p), weights=eval_cost, minlength=p)
    T = float(load.max())
    extra = steps = 0.0
    for r in range(p):
        rem = T - load[r]
        while rem > 0:
            L = draw(rng, 2)
            c = float((L * cs + reset).sum() + perturb)
            if c > rem:
                break
            rem -= c
            extra += c
            steps += float(L.sum())
    return T, extra, steps


def generation(p: int, scenario: str, unit: str, schedule: str, upd: str, net_name: str, a: dict, cal: dict,
               seed: int = 0) -> dict:
    net = a["nets"][net_name]
    rng = np.random.default_rng(seed)
    draw = length_sampler(scenario, a, cal)
    cs = step_cost_s(scenario, cal)
    reset = cal["humanoid_us_reset"] * 1e-6
    perturb = cal["humanoid_us_perturb_pair"] * 1e-6
    pull = net["alpha_s"] if p > a["cores_per_node"] else a["alpha_intra_s"]
    mks, tot, steps = [], [], []
    for m in range(a["monte_carlo"] if schedule in ("static", "steal") else max(2, a["monte_carlo"] // 4)):
        L = draw(rng, 2 * a["pairs"]).reshape(-1, 2)
        Le = draw(rng, a["eval_episodes"])
        ep = L * cs + reset
        if unit == "pair":
            tasks = ep.sum(axis=1) + perturb
        else:   # one episode per unit; each computes its own perturbation (a pair's cost, ~2/3 of it really)
            tasks = (ep + perturb).ravel()
        ec = Le * cs + reset
        if schedule == "steal":
            mk, extra, extra_steps = steal_makespan(p, tasks, ec, rng, draw, cs, reset, perturb)
        else:
            mk, extra, extra_steps = rollout_makespan(p, tasks, ec, schedule, pull), 0.0, 0.0
        mks.append(mk)
        tot.append(ep.sum() + perturb * a["pairs"] + ec.sum() + extra)
        steps.append(L.sum() + extra_steps)
    roll = float(np.mean(mks))
    coll = collectives_time(p, a, net)
    up = update_time(p, a, cal, upd)
    fixed = cal["tell_fixed_s"]
    T = roll + coll + up + fixed
    T1 = float(np.mean(tot)) + update_time(1, a, cal, "replicated") + fixed
    return {"p": p, "T": T, "T1": T1, "E": T1 / (p * T), "rollout": roll, "coll": coll, "update": up, "fixed": fixed,
            "ideal_rollout": float(np.mean(tot)) / p, "steps": float(np.mean(steps)),
            "blocks_needed": math.ceil(a["min_timesteps"] / max(1.0, float(np.mean(steps))))}


VARIANTS = {  # name -> (unit of work, schedule, update)
    "static pairs, replicated update": ("pair", "static", "replicated"),
    "static pairs, node-split update": ("pair", "static", "split"),
    "steal schedule, node-split": ("pair", "steal", "split"),
    "episodes round-robin, node-split": ("episode", "static", "split"),
    "dynamic episodes, node-split": ("episode", "dynamic", "split"),
}
BEST = "dynamic episodes, node-split"


def as_is(cal: dict) -> str:
    """The variant today's trainer runs by default (detected by the bench: does train.py use the node split?)."""
    if cal.get("static_unit", trainer_static_unit()) == "episode":
        return "episodes round-robin, node-split"
    return "static pairs, node-split update" if cal.get("trainer_node_split") else "static pairs, replicated update"


def predict(cal: dict, a: dict | None = None, nets=("cloud", "hpc"), scenarios=("random_init", "mid", "trained")) -> dict:
    a = dict(ASSUMED, **(a or {}))
    measured = {k: v for k, v in cal.items() if v is not None}
    fallback = sorted(k for k in FALLBACK_CALIBRATION if k not in measured)
    cal = dict(FALLBACK_CALIBRATION, **measured)
    rows = []
    for net in nets:
        for sc in scenarios:
            for vname, (unit, sched, upd) in VARIANTS.items():
                for p in a["cores"]:
                    g = generation(p, sc, unit, sched, upd, net, a, cal)
                    rows.append({"net": net, "scenario": sc, "variant": vname, **g})
    out = {"assumed": a, "calibration": {k: (v if k != "humanoid_random_init_episode_lengths" else
                                             _len_summary(v)) for k, v in cal.items()}, "rows": rows,
           # calibration figures not measured in this run: FALLBACK_CALIBRATION stands in, and says so
           "calibration_fallback": fallback}
    out["as_is"] = as_is(cal)
    out["budget"] = budget(rows, a, out["as_is"])
    return out


def _len_summary(v) -> dict:
    x = np.asarray(v, dtype=float)
    if not x.size:
        return {}
    return {"n": int(x.size), "mean": float(x.mean()), "std": float(x.std()), "min": float(x.min()),
            "p50": float(np.median(x)), "p90": float(np.percentile(x, 90)), "max": float(x.max())}


def pick(rows, **k) -> dict:
    for r in rows:
        if all(r[a] == b for a, b in k.items()):
            return r
    raise KeyError(k)


def budget(rows: list, a: dict, now: str) -> dict:
    out = {}
    for net in sorted({r["net"] for r in rows}):
        for v in dict.fromkeys((now, BEST)):
            r = pick(rows, net=net, scenario="trained", variant=v, p=a["budget_cores"])
            G = a["budget_s"] / r["T"]
            out[f"{net}/{v}"] = {
                "generations_in_budget": G, "timesteps": G * r["steps"], "episodes": G * 2 * a["pairs"],
                "T_gen_s": r["T"],
                "wall_s": {p: G * pick(rows, net=net, scenario="trained", variant=v, p=p)["T"] for p in a["cores"]},
            }
    return out


# ------------------------------------------------------------------ report glue
def calibration_from_report(data: dict) -> dict:
    cal = dict(data.get("sections", {}).get("rollout", {}).get("calibration", {}))
    upd = data.get("sections", {}).get("update", {})
    if upd.get("kernel_gbps_quiet_estimate"):
        cal["update_gbps"] = upd["kernel_gbps_quiet_estimate"]
    elif upd.get("kernel_gbps"):
        cal["update_gbps"] = upd["kernel_gbps"]
    tp = data.get("sections", {}).get("trainer", {})
    if tp.get("tell_fixed_s"):
        cal["tell_fixed_s"] = tp["tell_fixed_s"]
    cal["trainer_node_split"] = data.get("sections", {}).get("code", {}).get("trainer_node_split", False)
    cal["static_unit"] = data.get("sections", {}).get("code", {}).get("static_unit", trainer_static_unit())
    return cal


def trainer_static_unit() -> str:
    """What esmpi's static schedule deals out round-robin: 'episode' or 'pair'."""
    from .. import evaluate
    return getattr(evaluate, "STATIC_UNIT", "pair")


def trainer_uses_node_split() -> bool:
    """Does esmpi's trainer (as installed now) use a node-split update?"""
    import inspect

    from .. import train
    return "NodeSplitSum" in inspect.getsource(train)


def measure_calibration(quick: bool = True) -> dict:
    from . import rollout, update
    from ..noise import NoiseTable

    r = rollout.bench_env("Humanoid-v5", (256, 256), 1200 if quick else 4000, 3, n_lengths=100 if quick else 300)
    long = rollout.long_episode_cost(1000, 1)
    over = rollout.episode_overheads(r["d"], 2)
    noise = NoiseTable(25_000_000, 123)
    u = update.bench_serial(noise, 160_000, 300, 3, reference_pairs=20)
    return {"humanoid_cpu_us_per_step_short_episodes": r["us_per_step_esmpi_cpu"],
            "humanoid_cpu_us_per_step_long_episodes": long["us_per_step_cpu"],
            "humanoid_us_reset": over["us_reset"], "humanoid_us_perturb_pair": over["us_perturb_pair"],
            "humanoid_random_init_episode_lengths": r["episode_lengths"], "update_gbps": u["kernel_gbps_cpu"],
            "trainer_node_split": trainer_uses_node_split(), "static_unit": trainer_static_unit()}


def figures(pred: dict) -> list:
    from .common import figure

    a = pred["assumed"]
    rows = pred["rows"]
    P = a["budget_cores"]
    NOW = pred["as_is"]
    figs = []

    def at(v, p=P, sc="trained"):
        return pick(rows, net="cloud", scenario=sc, variant=v, p=p)

    now, best = at(NOW), at(BEST)
    rep, split = at("static pairs, replicated update"), at("static pairs, node-split update")
    rr, steal = at("episodes round-robin, node-split"), at("steal schedule, node-split")
    why = (f"T(1440) = {now['T']:.2f} s = rollout {now['rollout']:.2f} s (ideal {now['ideal_rollout']:.2f} s: static "
           f"pair assignment gives some ranks {math.ceil(a['pairs'] / P)} pairs vs {a['pairs'] / P:.2f} on average, "
           f"and the slowest rank sets the pace) + update {now['update']:.3f} s + collectives {now['coll'] * 1e3:.1f} "
           f"ms. Replicated update (every rank reads {a['d'] * a['pairs'] * 4 / 1e9:.1f} GB, 18 per node) "
           f"{rep['E']:.0%}; node-split {split['E']:.0%}; 'steal' {steal['E']:.0%}; episodes instead of pairs "
           f"round-robin {rr['E']:.0%}; dynamic per-episode schedule {best['E']:.0%}.")
    figs.append(figure("scale.efficiency.p1440", "7 scale", "Humanoid, trained-length episodes, 1,440 cores "
                       f"(10 GbE): parallel efficiency, esmpi as is ({NOW})", now["E"], "fraction",
                       target=a["target_efficiency"], op=">=", why=why, raw=[], load={}, cpu_wall={},
                       info=f"T = {now['T']:.2f} s per generation."))
    for p in a["cores"]:
        if p == P:
            continue
        r = at(NOW, p)
        figs.append(figure(f"scale.efficiency.p{p}", "7 scale", f"efficiency at {p} cores (trained lengths, as is)",
                           r["E"], "fraction", raw=[], load={}, cpu_wall={},
                           info=f"T = {r['T']:.2f} s per generation."))
    figs.append(figure("scale.efficiency.p1440.recommended", "7 scale", "efficiency at 1,440 cores with node-split + "
                       "dynamic per-episode schedule", best["E"], "fraction",
                       target=a["target_efficiency"], op=">=", raw=[], load={}, cpu_wall={},
                       why=f"T = {best['T']:.2f} s vs ideal {best['ideal_rollout']:.2f} s of rollouts.",
                       info=f"T = {best['T']:.2f} s per generation; 'episodes round-robin' alone (a static change) "
                            f"{rr['E']:.0%}."))
    ri, ri_b = at(NOW, sc="random_init"), at(BEST, sc="random_init")
    figs.append(figure("scale.efficiency.p1440.random_init", "7 scale", "efficiency at 1,440 cores, random-init "
                       "episode lengths (first generations)", ri["E"], "fraction", raw=[], load={}, cpu_wall={},
                       info=f"T = {ri['T'] * 1e3:.0f} ms, of which update {ri['update'] * 1e3:.0f} ms and ideal "
                            f"rollout {ri['ideal_rollout'] * 1e3:.0f} ms; with all recommendations {ri_b['E']:.0%}."))
    b = pred["budget"][f"cloud/{NOW}"]
    br = pred["budget"][f"cloud/{BEST}"]
    figs.append(figure("scale.budget.generations", "7 scale", "paper budget (10 min on 1,440 cores) = generations "
                       "of trained-length episodes", b["generations_in_budget"], "generations", raw=[], load={},
                       cpu_wall={},
                       info=f"= {b['timesteps'] / 1e9:.2f}e9 timesteps, {b['episodes'] / 1e6:.1f}M episodes at "
                            f"{b['T_gen_s']:.2f} s per generation (esmpi as is); with the recommendations "
                            f"{br['generations_in_budget']:.0f} generations."))
    G = b["generations_in_budget"]
    for p in a["cores"]:
        if p == P:
            continue
        best_p = G * at(BEST, p)["T"]
        figs.append(figure(f"scale.budget.wall.p{p}", "7 scale", f"wall time for those generations at {p} cores",
                           b["wall_s"][p] / 3600, "hours", raw=[], load={}, cpu_wall={},
                           info=f"esmpi as is: {b['wall_s'][p] / 60:.0f} min; with the recommendations "
                                f"{best_p / 60:.0f} min for the same {G:.0f} generations."))
    return figs


def markdown(pred: dict, net: str = "cloud", scenario: str = "trained") -> str:
    a = pred["assumed"]
    lines = [f"### Scale model: Humanoid generation ({scenario} episode lengths, {net} interconnect)", "",
             "| variant | " + " | ".join(f"{p} cores: T (s) / E" for p in a["cores"]) + " |",
             "|---|" + "---|" * len(a["cores"])]
    for v in VARIANTS:
        cells = []
        for p in a["cores"]:
            r = pick(pred["rows"], net=net, scenario=scenario, variant=v, p=p)
            cells.append(f"{r['T']:.3g} / {r['E']:.0%}")
        mark = " (esmpi as is)" if v == pred["as_is"] else ""
        lines.append(f"| {v}{mark} | " + " | ".join(cells) + " |")
    r = pick(pred["rows"], net=net, scenario=scenario, variant=pred["as_is"], p=a["cores"][-1])
    lines += ["", f"Breakdown at {a['cores'][-1]} cores, esmpi as is: rollout {r['rollout']:.3f} s (ideal "
              f"{r['ideal_rollout']:.3f}), update {r['update']:.3f} s, collectives {r['coll'] * 1e3:.2f} ms, "
              f"tell fixed {r['fixed'] * 1e3:.1f} ms.", ""]
    return "\n".join(lines)


def full_markdown(pred: dict) -> str:
    out = [markdown(pred, "cloud", sc) for sc in ("trained", "mid", "random_init")]
    out.append(markdown(pred, "hpc", "trained"))
    b = pred["budget"]
    out.append("### Budget: the paper's 10 minutes on 1,440 cores\n")
    for k, v in b.items():
        walls = ", ".join(f"{p} cores {v['wall_s'][p] / 60:.0f} min" for p in v["wall_s"])
        out.append(f"- {k}: {v['generations_in_budget']:.0f} generations x {v['T_gen_s']:.2f} s = "
                   f"{v['timesteps'] / 1e9:.2f}e9 timesteps; the same generations take: {walls}.")
    a = pred["assumed"]
    out.append("\nAssumed (`python -m esmpi.bench.scale --set KEY=VALUE` changes them): " + ", ".join(
        f"{k}={v}" for k, v in a.items() if k not in ("monte_carlo",)) + ". 'steal' counts its extra pairs as useful "
        "work; its generation still waits for the slowest static share.")
    c = pred["calibration"]
    fb = set(pred.get("calibration_fallback", ()))
    out.append("\nCalibration used: " + ", ".join(
        f"{k}={v if not isinstance(v, float) else round(v, 3)}" + (" (FALLBACK, not measured in this run)" if k in fb else "")
        for k, v in c.items()) + ".\n")
    if fb:
        out.append(f"**Not measured in this run; fallback calibration numbers stand in:** {', '.join(sorted(fb))} "
                   "(`FALLBACK_CALIBRATION` in src/esmpi/bench/scale.py).\n")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m esmpi.bench.scale", description=__doc__.split("\n\n")[0])
    ap.add_argument("--report", default="bench/out/report.json", help="calibration source (default %(default)s)")
    ap.add_argument("--measure", action="store_true", help="measure the calibration now (~1 min) instead")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="override an assumption, e.g. --set node_bw_GBps=120 (JSON value)")
    ap.add_argument("--json", action="store_true", help="print the whole prediction as JSON")
    args = ap.parse_args(argv)
    over = {}
    for s in args.sets:
        k, v = s.split("=", 1)
        if k not in ASSUMED:
            ap.error(f"unknown assumption {k!r}; known: {', '.join(ASSUMED)}")
        over[k] = json.loads(v)
    path = Path(args.report)
    if args.measure or not path.is_file():
        if not args.measure:
            print(f"no {path}: measuring the calibration now (or run `make bench` first)", file=sys.stderr)
        cal = measure_calibration()
    else:
        cal = calibration_from_report(json.loads(path.read_text()))
        print(f"calibration from {path}", file=sys.stderr)
    pred = predict(cal, over)
    if args.json:
        print(json.dumps(pred, indent=1, default=float))
    else:
        print(full_markdown(pred))
    return 0


if __name__ == "__main__":
    sys.exit(main())
