"""The SM-G study of docs/robustness.md section 3: the Deep GA with plain mutation against safe mutations
(SM-G-SUM, SM-G-ABS, SM-G-SO) on a deep narrow tanh MLP (``--task pointmass``) and on a GRU that must
remember a cue (``--task recall``), over mutation powers and seeds.

    PYTHONPATH=src .venv/bin/python scripts/smg_study.py runs   --out results/smg     # 1 rank per run, resumable
    PYTHONPATH=src .venv/bin/python scripts/smg_study.py report --out results/smg --figure docs/robustness/smg.png

``runs`` trains every (depth, mutation, sigma, seed) of the grid below in this process (one rank: the runs are
bitwise the same at any world size), one after the other, and writes ``<out>/runs/<name>.json``: the
config, a per-generation history (test return, elite validation, timesteps, probe timesteps) and a
summary (solved, generation and timesteps at the first success, wall time). A run whose file exists is
skipped, so an interrupted sweep is continued by running it again. No checkpoints are written.
``sensitivities`` writes ``<out>/sensitivities.md`` (seconds): how the authors' floor and clip act on
these nets at initialisation. ``report`` reads the run files and writes ``<out>/summary.json`` (what is committed: every run's summary
and test-return curve, about 1 kB per run), ``<out>/table.md`` and the figure; without ``<out>/runs/``
(a fresh checkout) it redraws both from ``summary.json``.

``--task pointmass``: ``esmpi/PointMass-v0`` (2-D point mass, 50 steps) with a tanh MLP of ``depth`` hidden
layers of ``WIDTH`` units (``DEPTHS``; the policy's default normc initialisation). Success = the trailing
``WINDOW``-generation mean of the elite's test return reaches ``TARGET`` (``run.target_return``: the run
stops there) within ``GENERATIONS`` generations. -25 needs feedback control: the best constant action
scores about -41, a hand-tuned PD controller -18.

``--task recall``: ``esmpi/DelayedRecall-v0`` (4 trials of cue, ``delay`` blank steps, recall; return =
trials recalled, a policy without memory scores 2 on average) with a GRU of ``GRU_UNITS`` units
(``policy.kind = "gru"``), over the delays ``DELAYS``. Success: the trailing ``WINDOW``-generation mean of
the elite's test return (20 episodes) reaches ``RECALL_TARGET`` (3.95 of 4: all but one of 60 trials).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

DEPTHS, WIDTH = (4, 16, 48), 8
GENERATIONS, TARGET, WINDOW = 100, -25.0, 3
MUTATIONS = ("plain", "sm_g_sum", "sm_g_abs", "sm_g_so")
NAMES = {"plain": "plain", "sm_g_sum": "SM-G-SUM", "sm_g_abs": "SM-G-ABS", "sm_g_so": "SM-G-SO"}
SIGMAS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
PLAIN_MIN_SIGMA = 0.01               # below it plain mutation only crawls (SM-G's own scale is ~100x smaller: its
                                     # 0.01 sensitivity floor multiplies sigma by up to 100; docs/robustness.md)
SEEDS = tuple(range(4))
OUTPUT_STD = 0.01                    # policy.output_init_std (esmpi's default); the control run sets 1.0
SO_CELLS = {(4, 0.1), (16, 0.1), (48, 0.1)}     # SM-G-SO is ~10x dearer per child: only these (depth, sigma) cells
KEEP = ("EvalEpRewMean", "GAEliteValidation", "TimestepsSoFar", "GAProbeTimesteps", "TimeElapsed")
DELAYS, GRU_UNITS, RECALL_TARGET = (16, 32), 8, 3.95
RECALL_SIGMAS = (0.01, 0.03, 0.1, 0.3, 1.0)
TASK = "pointmass"                   # set by --task
SMG_FLOOR, SMG_CLIP = 0.01, 0.2      # the authors' values; --smg-floor / --smg-clip for the controls
AXIS = {"pointmass": "depth", "recall": "delay"}


def axis() -> str:
    return AXIS[TASK]


def target() -> float:
    return RECALL_TARGET if TASK == "recall" else TARGET


def config(depth: int, mutation: str, sigma: float, seed: int, generations: int | None = None):
    """The run's config; ``depth`` is the MLP's depth (pointmass) or the recall delay (recall)."""
    from esmpi.config import config_from_dict

    generations = generations or GENERATIONS
    if TASK == "recall":
        tree = {"strategy": {"name": "ga"},
                "run": {"seed": seed, "generations": generations, "target_return": RECALL_TARGET,
                        "target_window": WINDOW},
                "env": {"id": "esmpi/DelayedRecall-v0", "kwargs": {"trials": 4, "delay": depth}},
                "policy": {"kind": "gru", "hidden": [GRU_UNITS]},
                "es": {"obs_stat_fraction": 0.0},        # the inputs are one-hot already
                "noise": {"size": 2_000_000, "seed": 7}, "checks": {"replica_check_every": 0},
                "ga": {"population": 50, "truncation": 10, "sigma": sigma, "validation_top": 5,
                       "validation_episodes": 5, "test_episodes": 20, "mutation": mutation}}
        if mutation != "plain":
            tree["ga"].update(smg_states=100, smg_floor=SMG_FLOOR, smg_clip=SMG_CLIP)
        return config_from_dict(tree, "<smg study>")
    tree = {"strategy": {"name": "ga"},
            "run": {"seed": seed, "generations": generations, "target_return": TARGET, "target_window": WINDOW},
            "env": {"id": "esmpi/PointMass-v0"}, "policy": {"hidden": [WIDTH] * depth, "output_init_std": OUTPUT_STD},
            "es": {"obs_stat_fraction": 0.1}, "noise": {"size": 2_000_000, "seed": 7},
            "checks": {"replica_check_every": 0},
            "ga": {"population": 40, "truncation": 8, "sigma": sigma, "validation_top": 4, "validation_episodes": 5,
                   "test_episodes": 20, "mutation": mutation}}
    if mutation != "plain":
        tree["ga"].update(smg_states=100, smg_floor=SMG_FLOOR, smg_clip=SMG_CLIP)
    return config_from_dict(tree, "<smg study>")


def name(depth: int, mutation: str, sigma: float, seed: int) -> str:
    if TASK == "recall":
        return f"recall-delay{depth}-gru{GRU_UNITS}-{mutation}-sigma{sigma:g}-s{seed}"
    out = "" if OUTPUT_STD == 0.01 else f"-out{OUTPUT_STD:g}"
    if mutation != "plain":
        out += ("" if SMG_FLOOR == 0.01 else f"-floor{SMG_FLOOR:g}") + ("" if SMG_CLIP == 0.2 else f"-clip{SMG_CLIP:g}")
    return f"d{depth}{out}-{mutation}-sigma{sigma:g}-s{seed}"


def first_success(evals: list[float]) -> int | None:
    """Generation (history row) at which the trailing WINDOW mean of the test return first reached TARGET."""
    for g in range(WINDOW - 1, len(evals)):
        w = evals[g - WINDOW + 1 : g + 1]
        if all(math.isfinite(x) for x in w) and sum(w) / WINDOW >= target():
            return g
    return None


def best_trailing(evals: list[float]) -> float:
    """The best trailing WINDOW-generation mean of the test return (NaN generations skipped)."""
    w = [sum(evals[g - WINDOW + 1 : g + 1]) / WINDOW for g in range(WINDOW, len(evals))]
    w = [x for x in w if math.isfinite(x)]
    return max(w) if w else math.nan


def run_one(depth: int, mutation: str, sigma: float, seed: int, out: Path) -> None:
    from esmpi.comm import SerialComm
    from esmpi.objectives.gym import EnvObjective
    from esmpi.train import Trainer

    path = out / "runs" / f"{name(depth, mutation, sigma, seed)}.json"
    if path.exists():
        return
    cfg = config(depth, mutation, sigma, seed)
    t0, c0 = time.time(), time.process_time()
    tr = Trainer(cfg, EnvObjective(cfg), SerialComm())
    tr.run()
    hist = [{k: h.get(k, math.nan) for k in KEEP} for h in tr.history]
    evals = [h["EvalEpRewMean"] for h in hist]
    g = first_success(evals)
    summary = {axis(): depth, **({} if TASK == "recall" else {"output_init_std": OUTPUT_STD}),
               **({} if mutation == "plain" else {"smg_floor": SMG_FLOOR, "smg_clip": SMG_CLIP}), "mutation": mutation, "sigma": sigma, "seed": seed, "solved": g is not None, "generation": g,
               "timesteps": hist[g]["TimestepsSoFar"] if g is not None else None,
               "probe_timesteps": float(np.nansum([h["GAProbeTimesteps"] for h in hist])),
               "generations_run": len(hist), "best_eval": float(np.nanmax(evals)) if len(evals) > 1 else math.nan,
               "best_trailing": best_trailing(evals),
               "wall_s": round(time.time() - t0, 2), "cpu_s": round(time.process_time() - c0, 2),
               "num_params": tr.objective.num_params}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"config": cfg.to_dict(), "summary": summary, "history": hist}, allow_nan=True))
    tmp.replace(path)
    print(f"{path.name}: solved={summary['solved']} gen={g} best={summary['best_eval']:.1f} "
          f"cpu={summary['cpu_s']}s", flush=True)


def runs(out: Path, depths, mutations, sigmas, seeds) -> None:
    for seed in seeds:                 # seeds outermost: a cut-short sweep still covers every cell evenly
        for depth in depths:
            for sigma in sigmas:
                for m in mutations:
                    if TASK == "pointmass" and (m == "sm_g_so" and (depth, sigma) not in SO_CELLS
                                                or m == "plain" and sigma < PLAIN_MIN_SIGMA):
                        continue
                    run_one(depth, m, sigma, seed, out)


def load(out: Path) -> list[dict]:
    """Every run: from ``<out>/runs/*.json`` when they are here (after ``runs``), else from the committed
    ``<out>/summary.json`` (summaries and test-return curves only)."""
    files = sorted((out / "runs").glob("*.json"))
    if not files:
        return [{"summary": r["summary"], "history": [{"EvalEpRewMean": math.nan if x is None else x} for x in r["eval"]]}
                for r in json.loads((out / "summary.json").read_text())["runs"]]
    return [json.loads(p.read_text()) for p in files]


def compact(data: list[dict]) -> dict:
    """What is committed: one example config, and per run its summary and test-return curve (0.01 precision)."""
    runs = [{"summary": d["summary"], "eval": [round(h["EvalEpRewMean"], 2) if math.isfinite(h["EvalEpRewMean"])
                                               else None for h in d["history"]]} for d in data]
    return {"about": "scripts/smg_study.py: one entry per (depth or delay, mutation, sigma, seed); config of the first run "
                     "(policy.hidden, ga.mutation, ga.sigma and run.seed vary)",
            "config": data[0].get("config") if data else None, "runs": runs}


def table(data: list[dict]) -> str:
    cells: dict = {}
    for d in data:
        s = d["summary"]
        cells.setdefault((s[axis()], s["mutation"], s["sigma"]), []).append(s)
    sigmas = sorted({k[2] for k in cells})
    gens = max(d["summary"]["generations_run"] for d in data) if data else GENERATIONS
    ostd = sorted({d["summary"].get("output_init_std", 0.01) for d in data})
    if TASK == "recall":
        head = (f"Solved / runs (median generation of the first success) on esmpi/DelayedRecall-v0 (4 trials), GRU of "
                f"{GRU_UNITS} units, target {RECALL_TARGET:g} of 4 recalled (trailing {WINDOW}-generation mean of the "
                f"elite's test return over 20 episodes) within {gens} generations; in brackets the median best "
                f"{WINDOW}-generation mean where no seed solved (no memory: 2).")
    lines = [head, "", f"| {axis()} | mutation | " + " | ".join(f"sigma {s:g}" for s in sigmas) + " | all |",
             "|---:|---|" + "---:|" * (len(sigmas) + 1)] if TASK == "recall" else [f"Solved / runs (median generation of the first success) on esmpi/PointMass-v0, tanh MLP of "
             f"depth x {WIDTH} units (policy.output_init_std {', '.join(f'{x:g}' for x in ostd)}), target {TARGET:g} (trailing {WINDOW}-generation mean of the elite's test "
             f"return over 20 episodes) within {gens} generations; in brackets the median best {WINDOW}-generation "
             "mean where no seed solved.", "",
             "| depth | mutation | " + " | ".join(f"sigma {s:g}" for s in sigmas) + " | all |",
             "|---:|---|" + "---:|" * (len(sigmas) + 1)]
    for depth in sorted({k[0] for k in cells}):
        for m in [m for m in MUTATIONS if any(k[:2] == (depth, m) for k in cells)]:
            row, tot, n = [], 0, 0
            for s in sigmas:
                c = cells.get((depth, m, s), [])
                ok = [x["generation"] for x in c if x["solved"]]
                tot, n = tot + len(ok), n + len(c)
                if not c:
                    row.append("-")
                elif ok:
                    row.append(f"{len(ok)}/{len(c)} ({int(np.median(ok))})")
                else:
                    fmt = ".2f" if TASK == "recall" else ".0f"
                    row.append(f"0/{len(c)} [{np.median([x['best_trailing'] for x in c]):{fmt}}]")
            lines.append(f"| {depth} | {NAMES[m]} | " + " | ".join(row) + f" | {tot}/{n} |")
    fc = sorted({(d["summary"]["smg_floor"], d["summary"]["smg_clip"]) for d in data if "smg_floor" in d["summary"]})
    if fc and fc != [(0.01, 0.2)]:
        lines += ["", "SM-G runs with " + "; ".join(f"ga.smg_floor = {f:g}, ga.smg_clip = {c:g}" for f, c in fc)
                  + " (the authors': 0.01 and 0.2)."]
    cpu = sum(d["summary"]["cpu_s"] for d in data)
    lines += ["", f"{len(data)} runs, {cpu / 60:.1f} CPU-minutes in total (1 rank each)."]
    return "\n".join(lines) + "\n"


def figure(data: list[dict], path: Path) -> None:
    from matplotlib.figure import Figure

    depths = sorted({d["summary"][axis()] for d in data})
    sigmas = sorted({d["summary"]["sigma"] for d in data})
    fig = Figure(figsize=(max(4.2 * len(depths), 7.0), 7.4))
    axes = fig.subplots(2, len(depths), squeeze=False)
    colors = {m: f"C{i}" for i, m in enumerate(MUTATIONS)}
    for j, depth in enumerate(depths):
        top, bottom = axes[0, j], axes[1, j]
        for m in MUTATIONS:
            rows = [d["summary"] for d in data if d["summary"][axis()] == depth and d["summary"]["mutation"] == m]
            if not rows:
                continue
            xs = [s for s in sigmas if any(r["sigma"] == s for r in rows)]
            rate = [np.mean([r["solved"] for r in rows if r["sigma"] == s]) for s in xs]
            shift = 1 + 0.05 * (MUTATIONS.index(m) - 1.5)      # side by side, so equal rates stay visible
            top.plot(np.array(xs) * shift, rate, marker="o", color=colors[m], label=NAMES[m])
            def merit(s):      # the highest success rate, then the fewest generations (or the best plateau)
                cell = [r for r in rows if r["sigma"] == s]
                gens = [r["generation"] for r in cell if r["solved"]]
                return (rate[xs.index(s)], -np.median(gens) if gens else np.median([r["best_trailing"] for r in cell]))
            best = max(xs, key=merit)
            for d in data:
                s = d["summary"]
                if s[axis()] == depth and s["mutation"] == m and s["sigma"] == best:
                    ev = np.array([h["EvalEpRewMean"] for h in d["history"]], float)
                    k = np.ones(WINDOW) / WINDOW          # the success criterion's trailing mean
                    bottom.plot(np.arange(WINDOW - 1, ev.size), np.convolve(ev, k, "valid"), color=colors[m],
                                alpha=0.6, lw=1, label=f"{NAMES[m]}, sigma {best:g}" if s["seed"] == 0 else None)
        top.set_xscale("log")
        top.set_xlabel("mutation power sigma")
        top.set_ylim(-0.05, 1.05)
        top.set_title(f"GRU {GRU_UNITS}, delay {depth}" if TASK == "recall" else f"tanh MLP {depth} x {WIDTH}")
        bottom.axhline(target(), color="k", ls=":", lw=1)
        bottom.set_ylim(*((1, 4.1) if TASK == "recall" else (-90, -10)))
        bottom.set_xlabel("generation")
        bottom.legend(fontsize=7)
    axes[0, 0].set_ylabel("fraction of seeds solved")
    axes[0, 0].legend(fontsize=8)
    axes[1, 0].set_ylabel(f"elite's test return ({WINDOW}-generation mean)")
    task = "DelayedRecall" if TASK == "recall" else "esmpi/PointMass-v0"
    fig.suptitle(f"Deep GA on {task}: plain mutation vs SM-G (bottom: each at its best sigma, every seed)",
                 fontsize=10 if len(depths) < 3 else 12)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def sensitivities(out: Path) -> str:
    """How SM-G's floor (0.01) and clip (0.2) act on these nets at initialisation: per depth and output-layer
    scale, the fraction of weights whose SUM / ABS sensitivity (100 states of one episode of the initial
    policy) is below the floor, and the fraction of mutations clipped at sigma = 0.1. Seconds; no training."""
    from esmpi import seeding
    from esmpi.objectives.gym import EnvObjective
    from esmpi.policies.sensitivity import FLOOR, CLIP, sensitivity

    lines = ["| depth | policy.output_init_std | d | SUM: median s | SUM: s < 0.01 | SUM: clipped at sigma 0.1 "
             "| ABS: median s | ABS: s < 0.01 | ABS: clipped at sigma 0.1 |", "|---:|---:|---:|" + "---:|" * 6]
    eps = None
    for depth in DEPTHS:
        for ostd in (0.01, 1.0):
            tree = config(depth, "sm_g_sum", 0.1, 0).to_dict()
            tree["policy"]["output_init_std"] = ostd
            from esmpi.config import config_from_dict
            obj = EnvObjective(config_from_dict(tree))
            theta = obj.initial_theta(seeding.rng(0, seeding.INIT_THETA, 0))
            G = obj.output_jacobians(theta, obj.episode(theta, 1, 50, keep_obs=True).states)
            eps = np.random.default_rng(0).standard_normal(theta.size).astype(np.float32)
            row = [str(depth), f"{ostd:g}", str(theta.size)]
            for m in ("sum", "abs"):
                sens = sensitivity(G, m)
                floored = np.maximum(np.where(sens == 0, 1, sens), FLOOR)
                row += [f"{np.median(sens):.2g}", f"{np.mean(sens < FLOOR):.0%}",
                        f"{np.mean(np.abs(np.float32(0.1) * eps / floored) > CLIP):.0%}"]
            lines.append("| " + " | ".join(row) + " |")
    text = "\n".join(lines) + "\n"
    (out / "sensitivities.md").write_text(text)
    return text


def recall_sensitivities(out: Path) -> str:
    """Where SM-G puts its mutation on the GRU: per parameter block of the initial GRU (delay 32, the
    first 100 states of one episode), the median SUM / ABS sensitivity and the median |mutation| at
    sigma 0.1 relative to plain's (0.1 |eps|). Seconds; no training."""
    from esmpi import seeding
    from esmpi.objectives.gym import EnvObjective
    from esmpi.policies.sensitivity import CLIP, FLOOR, safe_mutation, sensitivity

    lines = ["| GRU units | block | weights | SUM: median s | SUM: median step / plain | ABS: median s "
             "| ABS: median step / plain |", "|---:|---|---:|---:|---:|---:|---:|"]
    for units in (8, 24):
        globals()["GRU_UNITS"] = units
        obj = EnvObjective(config(32, "sm_g_sum", 0.1, 0))
        theta = obj.initial_theta(seeding.rng(0, seeding.INIT_THETA, 0))
        states = obj.episode(theta, 1, 1000, keep_obs=True).states[:100]
        G = obj.output_jacobians(theta, states)
        eps = np.random.default_rng(0).standard_normal(theta.size).astype(np.float32)
        plain = np.abs(np.float32(0.1) * eps)
        steps = {m: np.abs(safe_mutation(theta, eps, sensitivity(G, m), 0.1, FLOOR, CLIP)) for m in ("sum", "abs")}
        sens = {m: sensitivity(G, m) for m in ("sum", "abs")}
        for block, (pos, shape) in obj.spec.offsets().items():
            sl = slice(pos, pos + int(np.prod(shape)))
            row = [str(units), f"`{block}`", str(int(np.prod(shape)))]
            for m in ("sum", "abs"):
                row += [f"{np.median(sens[m][sl]):.2g}", f"{np.median(steps[m][sl] / plain[sl]):.2g}"]
            lines.append("| " + " | ".join(row) + " |")
    text = "\n".join(lines) + "\n"
    (out / "sensitivities.md").write_text(text)
    return text


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("runs", "report", "sensitivities"))
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "smg")
    ap.add_argument("--figure", type=Path, default=ROOT / "docs" / "robustness" / "smg.png")
    ap.add_argument("--task", choices=("pointmass", "recall"), default="pointmass")
    ap.add_argument("--depths", default=None, help="MLP depths (pointmass) or recall delays (recall)")
    ap.add_argument("--mutations", default=None, help="default: all four (pointmass); plain, SUM, ABS (recall)")
    ap.add_argument("--sigmas", default=None)
    ap.add_argument("--seeds", type=int, default=len(SEEDS))
    ap.add_argument("--generations", type=int, default=GENERATIONS, help="budget per run (a pilot's)")
    ap.add_argument("--output-init-std", type=float, default=OUTPUT_STD, help="the control: 1.0")
    ap.add_argument("--gru-units", type=int, default=GRU_UNITS, help="recall: the GRU's hidden units")
    ap.add_argument("--smg-floor", type=float, default=SMG_FLOOR, help="ga.smg_floor of the SM-G runs")
    ap.add_argument("--smg-clip", type=float, default=SMG_CLIP, help="ga.smg_clip of the SM-G runs")
    a = ap.parse_args(argv)
    globals()["TASK"] = a.task
    recall = a.task == "recall"
    a.depths = a.depths or ",".join(map(str, DELAYS if recall else DEPTHS))
    a.mutations = a.mutations or ",".join(MUTATIONS[:3] if recall else MUTATIONS)
    a.sigmas = a.sigmas or ",".join(map(str, RECALL_SIGMAS if recall else SIGMAS))
    globals()["GENERATIONS"] = a.generations
    globals()["OUTPUT_STD"] = a.output_init_std
    globals()["SMG_FLOOR"], globals()["SMG_CLIP"] = a.smg_floor, a.smg_clip
    globals()["GRU_UNITS"] = a.gru_units
    if a.what == "sensitivities":
        print(recall_sensitivities(a.out) if recall else sensitivities(a.out))
    elif a.what == "runs":
        runs(a.out, [int(x) for x in a.depths.split(",")], a.mutations.split(","),
             [float(x) for x in a.sigmas.split(",")], range(a.seeds))
    else:
        data = load(a.out)
        if (a.out / "runs").is_dir():
            (a.out / "summary.json").write_text(json.dumps(compact(data), separators=(",", ":")))
        (a.out / "table.md").write_text(table(data))
        figure(data, a.figure)
        print(table(data))


if __name__ == "__main__":
    main()
