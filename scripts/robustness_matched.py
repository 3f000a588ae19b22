"""Issue 16's matched robustness comparison: OpenAI-ES vs the Deep GA vs ARS policies of similar
return on HalfCheetah-v5 and Walker2d-v5, probed with ``esmpi.robustness.probe`` (docs/robustness.md).

    PYTHONPATH=src .venv/bin/python scripts/robustness_matched.py [--only SET] [-k 100] [--out docs/robustness]
    .venv/bin/mpiexec -n 2 .venv/bin/python scripts/robustness_matched.py ...   (same bits, spread over ranks)

1. **Policies** (``POLICIES``): one checkpoint per (task, strategy, seed), picked by hand so that the
   unperturbed returns R0 (10 episodes, ``esmpi eval -n 10``) are close; the table prints R0 and its
   distance from the group's median. Our run directories keep only their newest periodic checkpoint
   and ``best.h5`` (``checkpoint.keep_last = 1``), so an *earlier* policy of a run that is ahead is
   made by **replaying** the run: its own ``config.toml`` again, up to a timestep budget, with a
   checkpoint every generation. A run is bitwise reproducible, so the replay's generation g is the
   run's generation g; this script checks it (the replayed history's evaluation column must equal the
   committed run's, to the bit) before using a replayed checkpoint. The chosen replayed checkpoints are
   committed in ``results/robustness/checkpoints/`` (40-80 KB each); a missing one is replayed
   into ``results/robustness/replays/`` (a few CPU-minutes per run) and copied there.
   After a ``run.target_return`` stop the newest checkpoint is one unevaluated update past the scored
   policy (ars-walker2d-s1's ``latest.h5`` scores 957 where its ``best.h5`` scores 3,915), so such a
   run is probed at ``best.h5``.
2. **Probe**: K perturbations ``theta + s * eps_k`` per scale at the common absolute scales ``COMMON``
   and at 1x and 2x each run's own training scale (ES sigma, GA mutation power, ARS nu), plus 10
   unperturbed episodes for R0 (analysis seed 0: every policy meets the same eps_k offsets and start
   states).
3. **Output** in ``--out`` for the set ``--only SET`` (without it, every set in ``matched.json/.md``): ``matched_SET.json``
   (every return), ``matched_SET.md`` (the tables pasted into docs/robustness.md), ``matched_<task>*.png``
   (one panel per common scale, a box per policy). ``--tables JSON`` rewrites a set's tables from its JSON.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "results/runs"
CKPTS = ROOT / "results/robustness/checkpoints"
REPLAYS = ROOT / "results/robustness/replays"
COMMON = [0.005, 0.01, 0.02, 0.04]
STRATEGY = {"openai_es": "OpenAI-ES", "ga": "Deep GA", "ars": "ARS"}

# (set, task, run, checkpoint): checkpoint None = the run's latest.h5, "best" = best.h5, an int g = the
# run's state after g generations (replayed to REPLAY[run] timesteps when not committed). --only SET.
POLICIES = [
    ("halfcheetah", "HalfCheetah-v5", "halfcheetah-s0", None),
    ("halfcheetah", "HalfCheetah-v5", "halfcheetah-s2", 43),
    ("halfcheetah", "HalfCheetah-v5", "ga-halfcheetah-s0", 37),
    ("halfcheetah", "HalfCheetah-v5", "ga-halfcheetah-s1", 64),
    ("halfcheetah", "HalfCheetah-v5", "ars-halfcheetah-s0", None),
    ("halfcheetah", "HalfCheetah-v5", "ars-halfcheetah-s1", None),
    ("halfcheetah", "HalfCheetah-v5 (higher return)", "ga-halfcheetah-s0", None),
    ("halfcheetah", "HalfCheetah-v5 (higher return)", "halfcheetah-s2", 82),
    ("walker2d", "Walker2d-v5", "walker2d-s0", None),
    ("walker2d", "Walker2d-v5", "walker2d-s1", None),
    ("walker2d", "Walker2d-v5", "ars-walker2d-s0", None),
    ("walker2d", "Walker2d-v5", "ars-walker2d-s1", "best"),
    ("walker2d", "Walker2d-v5", "ars-walker2d-s2", None),
    ("walker2d_ga", "Walker2d-v5 (lower return, with the GA)", "ga-walker2d-s0", None),
    ("walker2d_ga", "Walker2d-v5 (lower return, with the GA)", "ars-walker2d-s2", 58),
    ("walker2d_ga", "Walker2d-v5 (lower return, with the GA)", "walker2d-s0", 38),
]
REPLAY = {"ga-halfcheetah-s0": 2_600_000, "halfcheetah-s2": 3_700_000, "ga-halfcheetah-s1": 3_300_000,
          "ars-walker2d-s2": 1_500_000, "walker2d-s0": 1_800_000}


def replayed_checkpoint(run: str, gen: int) -> Path:
    """The committed copy of ``run``'s generation-``gen`` checkpoint; replays the run if missing."""
    dest = CKPTS / f"{run}-gen_{gen:06d}.h5"
    if dest.is_file():
        return dest
    out = REPLAYS / run
    if not (out / "checkpoints" / f"gen_{gen:06d}.h5").is_file():
        if out.exists():
            sys.exit(f"{out} exists without gen_{gen:06d}.h5: remove it to replay {run}")
        cmd = [sys.executable, "-m", "esmpi.run", "-q", "--config", str(RUNS / run / "config.toml"), "--out", str(out),
               "--set", f"run.max_timesteps={REPLAY[run]}", "--set", "run.max_seconds=0",
               "--set", "checkpoint.every=1", "--set", "checkpoint.keep_last=1000"]
        print(f"replaying {run} to {REPLAY[run]:,} timesteps: {' '.join(cmd[1:])}", flush=True)
        subprocess.run(cmd, check=True)
    check_replay(run, out)
    CKPTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(out / "checkpoints" / f"gen_{gen:06d}.h5", dest)
    return dest


def check_replay(run: str, out: Path) -> None:
    """The replay is the run: the same EvalEpRewMean and TimestepsSoFar, bit for bit, generation by generation."""
    rows = lambda p: [json.loads(l) for l in (p / "progress.jsonl").read_text().splitlines() if l.strip()]
    new, old = rows(out), rows(RUNS / run)
    for a, b in zip(new, old):
        if (a["EvalEpRewMean"], a["TimestepsSoFar"]) != (b["EvalEpRewMean"], b["TimestepsSoFar"]) and not (
                a["EvalEpRewMean"] != a["EvalEpRewMean"] and b["EvalEpRewMean"] != b["EvalEpRewMean"]):   # NaN == NaN
            sys.exit(f"replay of {run} differs from the committed run at generation {a['Generation']}")
    print(f"{run}: the replay's {len(new)} generations equal the committed run's, bit for bit", flush=True)


def load(run: str, ck):
    from esmpi import analyze

    if isinstance(ck, int):
        return _relabel(analyze.load_run(replayed_checkpoint(run, ck)), f"{run} gen {ck} (replayed)")
    rd = analyze.load_run(RUNS / run, ck)
    g = rd.state.generation
    return _relabel(rd, f"{run} {ck} (gen {g})" if ck else f"{run} latest (gen {g})")


def _relabel(rd, label: str):
    import dataclasses

    return dataclasses.replace(rd, label=label)


def _cells(scales: list[dict], key: str) -> str:
    return " / ".join("n/a" if x[key] is None else f"{x[key]:.2f}" for x in scales)


def _policy_row(r: dict, med0: float) -> str:
    u = r["unperturbed"]
    com = [s for s in r["scales"] if s["kind"] == "common"]
    own = [s for s in r["scales"] if s["kind"] == "own"]
    rel = 0.01 * r["num_params"] ** 0.5 / r["theta_norm"]          # |0.01 eps| / |theta|
    return (f"| {r['label']} | {STRATEGY.get(r['strategy'], r['strategy'])} | {u['mean']:,.0f} ± {u['std']:,.0f} "
            f"({u['mean'] / med0 - 1:+.0%}) | {r['num_params']:,}, {rel:.3f} | {_cells(com, 'rel_median')} | "
            f"{_cells(com, 'rel_p10')} | {_cells(com, 'keep90')} | {r['training_sigma']:g} | "
            f"{_cells(own, 'rel_median')} | {_cells(own, 'rel_p10')} | {_cells(own, 'keep90')} |")


def _strategy_row(strat: str, ss: list[dict]) -> str:
    def mean(key: str, c: float) -> float:
        return float(np.mean([next(x for x in r["scales"] if x["kind"] == "common" and x["sigma"] == c)[key] or 0.0
                              for r in ss]))

    cell = lambda key: " / ".join(f"{mean(key, c):.2f}" for c in COMMON)
    return f"| {STRATEGY.get(strat, strat)} | {len(ss)} | {cell('rel_median')} | {cell('rel_p10')} | {cell('keep90')} |"


def fmt_tables(results: list[dict]) -> str:
    """Markdown: per task, R0 and the relative median / p10 / keep90 at the common and the own scales."""
    out = []
    for task in dict.fromkeys(r["task"] for r in results):
        rs = [r for r in results if r["task"] == task]
        med0 = statistics.median(r["unperturbed"]["mean"] for r in rs)
        head = " / ".join(f"{s:g}" for s in COMMON)
        out += [f"**{task}** (R0: mean of {rs[0]['episodes']} unperturbed episodes; "
                f"the policies' median R0 is {med0:,.0f})", "",
                f"| policy | strategy | R0 (vs median) | d, \\|0.01 eps\\| / \\|theta\\| | median R/R0 at s = {head} "
                f"| p10 R/R0 at {head} | keep90 at {head} "
                "| own scale: s | median R/R0 at 1x / 2x | p10 R/R0 at 1x / 2x | keep90 at 1x / 2x |",
                "|---|---|---:|---|---|---|---|---:|---|---|---|"]
        out += [_policy_row(r, med0) for r in rs]
        out += ["", f"Per strategy (mean over its policies above) at s = {head}:", "",
                "| strategy | policies | median R/R0 | p10 R/R0 | keep90 |", "|---|---:|---|---|---|"]
        strategies = dict.fromkeys(r["strategy"] for r in rs)
        out += [_strategy_row(st, [r for r in rs if r["strategy"] == st]) for st in strategies]
        out.append("")
    return "\n".join(out)


def main(argv=None) -> int:
    from esmpi import analyze, robustness
    from esmpi.comm import make_comm
    from esmpi.metrics import l2norm

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-k", type=int, default=100, help="perturbations per scale (default 100)")
    ap.add_argument("--episodes", type=int, default=10, help="unperturbed episodes for R0 (default 10)")
    ap.add_argument("--out", default=str(ROOT / "docs/robustness"),
                    help="directory for matched_SET.{json,md} and the figures")
    ap.add_argument("--only", choices=sorted({p[0] for p in POLICIES}), help="only this set of policies")
    ap.add_argument("--tables", metavar="JSON", help="only rewrite the tables from a matched*.json (no episodes)")
    a = ap.parse_args(argv)
    if a.tables:
        results = json.loads(Path(a.tables).read_text())
        for r in results:
            r.setdefault("theta_norm", l2norm(analyze.load_run(r["checkpoint"]).state.theta))
        Path(a.tables).write_text(json.dumps(results, indent=1))
        Path(a.tables).with_suffix(".md").write_text(fmt_tables(results))
        print(fmt_tables(results))
        return 0
    comm = make_comm()
    out = Path(a.out)
    results, tables = [], {}
    for group, task, run, ck in POLICIES:
        if a.only and group != a.only:
            continue
        rd = load(run, ck)
        own = [robustness.training_sigma(rd.config) * m for m in (1.0, 2.0)]
        res = robustness.probe(rd, a.k, COMMON + own, episodes=a.episodes, seed=0, comm=comm, tables=tables)
        for i, s in enumerate(res["scales"]):
            s["kind"] = "common" if i < len(COMMON) else "own"
        res["task"] = task
        res["theta_norm"] = l2norm(rd.state.theta)     # |s eps| ~ s sqrt(d): the relative size of a perturbation
        results.append(res)
        if comm.rank == 0:
            print(f"{task:<32} {res['label']:<40} R0 {res['unperturbed']['mean']:9.1f}  "
                  f"{res['seconds']:.0f} s, load {res['loadavg']}", flush=True)
    if comm.rank:
        return 0
    out.mkdir(parents=True, exist_ok=True)
    suffix = f"_{a.only}" if a.only else ""
    (out / f"matched{suffix}.json").write_text(json.dumps(results, indent=1))
    (out / f"matched{suffix}.md").write_text(fmt_tables(results))
    for task in dict.fromkeys(r["task"] for r in results):
        rs = [dict(r, scales=[s for s in r["scales"] if s["kind"] == "common"], label=r["label"].replace(" (", "\n("))
              for r in results if r["task"] == task]
        name = task.split("-")[0].lower() + ("_high" if "higher" in task else "_ga" if "GA" in task else "")
        fig = robustness.plot_robustness(rs, title=f"{task}: policies of similar return, K = {a.k} perturbations "
                                                   "per scale, common absolute scales")
        analyze.save_figure(fig, out / f"matched_{name}.png")
    print(fmt_tables(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
