"""The paper's MuJoCo numbers and the reproduction table (issue 6; docs/results.md).

Salimans, Ho, Chen, Sidor, Sutskever (2017), "Evolution Strategies as a Scalable Alternative to
Reinforcement Learning", arXiv:1703.03864v2:

- Table 1: for each MuJoCo task, TRPO's return after 5M timesteps (the threshold) and the
  timesteps ES needed to reach it (gym v1 envs, mujoco-py).
- Table 3: the thresholds at 25%, 50% and 75% of that (the paper's fractions of TRPO's learning
  progress, as given there).

Threshold crossing (:func:`first_crossing`)
-------------------------------------------
The score is ``EvalEpRewMean``: the mean return of the *unperturbed* theta over ``es.eval_episodes``
episodes (no action noise), never the best perturbation. A single generation's evaluation of two
episodes is noisy (a lucky pair of episodes can cross a threshold that the policy does not hold),
and the paper does not say how its crossing points were read off its curves. **We use a trailing
mean over the last ``window`` generations (default 5, i.e. 10 episodes at eval_episodes = 2)**: a
run reaches a threshold at the first generation ``g`` whose mean of ``EvalEpRewMean`` over
generations ``g-window+1 .. g`` is ``>= threshold``, and the reported x is ``TimestepsSoFar`` of
generation ``g``: the training timesteps spent by the end of the generation in which the last of
those evaluations ran (conservative by at most one generation, since the evaluated theta is the one
before that generation's update). Evaluation episodes are not counted in ``TimestepsSoFar`` (as in
the reference implementation). ``window=1`` gives the raw, single-generation crossing; the table
generator prints both in the per-run table.

Command line
------------
``python -m esmpi.paper results/runs -o docs/results.md --figures docs/results --csv results/csv``
writes the tables between the ``<!-- BEGIN GENERATED -->`` / ``<!-- END GENERATED -->`` markers of
the output (the hand-written text around them is kept; a new file gets the tables only), one
learning-curve PNG per task made with :func:`esmpi.analyze.plot_runs`, and one CSV of each run's
history (``esmpi export``). Run directories are named ``TASK-sSEED`` (e.g. ``hopper-s0``) for the
main table; any other run directory (sensitivity runs such as ``halfcheetah-sigma0.05-s0``, a local
``humanoid-...`` run) is listed in the per-run and extra tables.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .errors import EsmpiError
from .metrics import history_column as _col, smoothed_eval, target_reached


@dataclass(frozen=True)
class PaperTask:
    key: str                  # run-directory prefix / jobs file stem
    env_v1: str               # the paper's env (gym, mujoco-py)
    env: str                  # ours (gymnasium, mujoco)
    threshold: float          # Table 1: TRPO's return at 5M timesteps
    es_timesteps: float       # Table 1: ES timesteps to reach it
    fractions: tuple[float, float, float]   # Table 3: 25%, 50%, 75% thresholds
    budget: float             # our run budget (jobs/KEY.toml run.max_timesteps)

    def thresholds(self) -> list[tuple[str, float]]:
        return [("25%", self.fractions[0]), ("50%", self.fractions[1]), ("75%", self.fractions[2]),
                ("100%", self.threshold)]


TASKS: dict[str, PaperTask] = {t.key: t for t in [
    PaperTask("invertedpendulum", "InvertedPendulum-v1", "InvertedPendulum-v5", 1000.00, 0.455e6,
              (276.59, 519.15, 753.17), 1e6),
    PaperTask("swimmer", "Swimmer-v1", "Swimmer-v5", 128.25, 1.39e6, (41.97, 70.73, 99.68), 3e6),
    PaperTask("halfcheetah", "HalfCheetah-v1", "HalfCheetah-v5", 2385.79, 2.88e6, (-1.35, 793.55, 1589.83), 5e6),
    PaperTask("inverteddoublependulum", "InvertedDoublePendulum-v1", "InvertedDoublePendulum-v5", 9104.07, 5.39e6,
              (2358.98, 4609.68, 6874.03), 8e6),
    PaperTask("hopper", "Hopper-v1", "Hopper-v5", 3403.46, 31.6e6, (877.45, 1718.16, 2561.11), 40e6),
    PaperTask("walker2d", "Walker2d-v1", "Walker2d-v5", 3830.03, 37.9e6, (957.68, 1916.48, 2872.81), 45e6),
]}

DEFAULT_WINDOW = 5
BEGIN, END = "<!-- BEGIN GENERATED -->", "<!-- END GENERATED -->"


# ------------------------------------------------------------------------------------------ crossing
def first_crossing(history: Sequence[dict], threshold: float, window: int = DEFAULT_WINDOW,
                   key: str = "EvalEpRewMean", x: str = "TimestepsSoFar") -> float | None:
    """First ``x`` (default TimestepsSoFar) at which the trailing ``window``-generation mean of
    ``key`` (default EvalEpRewMean, the unperturbed theta) is ``>= threshold``; None if never.
    ``window=1`` is the raw single-generation evaluation. See the module docstring."""
    s = smoothed_eval(history, window, key)
    xs = _col(history, x)
    hit = np.nonzero(np.isfinite(s) & (s >= threshold))[0]
    return float(xs[hit[0]]) if hit.size else None


def crossings(history: Sequence[dict], task: PaperTask, window: int = DEFAULT_WINDOW) -> dict[str, float | None]:
    return {name: first_crossing(history, thr, window) for name, thr in task.thresholds()}


# ------------------------------------------------------------------------------------------ formatting
def fmt_steps(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return "-"
    if v >= 1e6:
        return f"{v / 1e6:.2f}M"
    if v >= 1e3:
        return f"{v / 1e3:.0f}k"
    return f"{v:.0f}"


def summarize_seeds(values: list[float | None], reached_max: list[float]) -> str:
    """'median [min-max] (k/n)' over seeds; a seed that never crossed counts as +inf ('>its budget')."""
    n = len(values)
    if n == 0:
        return "-"
    inf = [v if v is not None else math.inf for v in values]
    k = sum(v is not None for v in values)
    unreached = [b for v, b in zip(values, reached_max) if v is None]
    over = f">{fmt_steps(min(unreached))}" if unreached else ">budget"
    med = float(np.median(inf))   # inf when half or more of the seeds never crossed
    med_s = fmt_steps(med) if math.isfinite(med) else over
    if n == 1:
        return f"{med_s} (1 seed)"
    lo, hi = min(inf), max(inf)
    lo_s = fmt_steps(lo) if math.isfinite(lo) else over
    hi_s = fmt_steps(hi) if math.isfinite(hi) else f">{fmt_steps(max(unreached))}"
    return f"{med_s} [{lo_s} - {hi_s}] ({k}/{n})"


# ------------------------------------------------------------------------------------------ runs
@dataclass
class Run:
    name: str
    path: Path
    history: list
    config: dict
    world_size: int
    rd: object = None   # esmpi.analyze.RunData when loaded from a checkpoint

    @property
    def timesteps(self) -> float:
        return float(self.history[-1]["TimestepsSoFar"]) if self.history else 0.0

    @property
    def wall(self) -> float:
        return float(self.history[-1]["TimeElapsed"]) if self.history else 0.0


MAIN_RE = re.compile(r"^(?P<task>[a-z0-9]+)-s(?P<seed>\d+)$")
ARS_RE = re.compile(r"^ars-(?P<task>[a-z0-9]+)-s(?P<seed>\d+)$")    # ARS runs beside ES's (issue 11)


def load_runs(root: Path) -> list[Run]:
    """Every run directory under ``root`` (one with config.toml), history from its newest checkpoint
    (esmpi.analyze.load_run) or, without one, from progress.jsonl."""
    from . import analyze

    runs = []
    for d in sorted(p for p in Path(root).iterdir() if (p / "config.toml").is_file()):
        try:
            rd = analyze.load_run(d)
            hist, cfg, ws = list(rd.history), rd.config, int(rd.attrs.get("world_size", 0) or 0)
            prog = d / "progress.jsonl"
            if prog.is_file():  # generations logged after the newest checkpoint (e.g. a kill -9)
                rows = [json.loads(l) for l in prog.read_text().splitlines() if l.strip()]
                if len(rows) > len(hist):
                    hist = rows
        except EsmpiError:
            rd = None
            prog = d / "progress.jsonl"
            if not prog.is_file():
                continue
            hist = [json.loads(l) for l in prog.read_text().splitlines() if l.strip()]
            import tomllib
            cfg = tomllib.loads((d / "config.toml").read_text())
            ws = 0
        if hist:
            runs.append(Run(d.name, d, hist, cfg, ws, rd))
    return runs


def task_of(run: Run) -> str | None:
    m = MAIN_RE.match(run.name)
    return m.group("task") if m and m.group("task") in TASKS else None


def ars_task_of(run: Run) -> str | None:
    m = ARS_RE.match(run.name)
    return m.group("task") if m and m.group("task") in TASKS else None


def is_extra(run: Run) -> bool:
    """Neither a Table 1 run (ES, ARS) nor a GA / random-search run of a Table 1 task (esmpi.paper_ga)."""
    from .paper_ga import ga_task_of

    return task_of(run) is None and ars_task_of(run) is None and ga_task_of(run) is None


def _walltime_log(path: Path | None) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    if path and path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                out.setdefault(r["name"], []).append(r)
    return out


def walltime_logs(logs_dir: Path | None) -> dict[str, list[dict]]:
    """Sessions of every ``walltime*.jsonl`` in ``logs_dir`` (each queue's per-run wall time and load)."""
    out: dict[str, list[dict]] = {}
    for p in sorted(Path(logs_dir).glob("walltime*.jsonl")) if logs_dir else []:
        for name, rows in _walltime_log(p).items():
            out.setdefault(name, []).extend(rows)
    return out


def _cfg(run: Run, dotted: str, default=None):
    node = run.config
    for k in dotted.split("."):
        if not isinstance(node, dict) or k not in node:
            return default
        node = node[k]
    return node


def _last_mean(run: Run, n: int = DEFAULT_WINDOW) -> float:
    y = _col(run.history, "EvalEpRewMean")[-n:]
    y = y[np.isfinite(y)]
    return float(y.mean()) if y.size else math.nan


def _best_smoothed(run: Run, window: int = DEFAULT_WINDOW) -> float:
    s = smoothed_eval(run.history, window)
    return float(np.nanmax(s)) if np.isfinite(s).any() else math.nan


def _status(run: Run) -> str:
    target = _cfg(run, "run.target_return")
    if target is not None and target_reached(run.history, target, int(_cfg(run, "run.target_window", DEFAULT_WINDOW))):
        return "done (run.target_return reached)"
    budget = _cfg(run, "run.max_timesteps", 0) or 0
    if budget and run.timesteps >= budget:
        return "done"
    gens = _cfg(run, "run.generations", 0) or 0
    if gens and len(run.history) >= gens:
        return "done"
    return "stopped (resumable)"


def _fmt_ret(v: float) -> str:
    return "-" if not math.isfinite(v) else f"{v:.1f}"


def _fmt_dur(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


# ------------------------------------------------------------------------------------------ tables
def main_table(runs: list[Run], window: int = DEFAULT_WINDOW) -> str:
    lines = [
        "| task (ours: v5) | threshold (TRPO @ 5M, v1) | paper ES timesteps | ours: timesteps to threshold, median [range] (seeds reached/run) | our budget per seed (median reached) | ours, ARS: timesteps to threshold (seeds reached/run) |",
        "|---|---:|---:|---|---|---|",
    ]
    for key, t in TASKS.items():
        rs = [r for r in runs if task_of(r) == key]
        if rs:
            vals = [first_crossing(r.history, t.threshold, window) for r in rs]
            ours = summarize_seeds(vals, [r.timesteps for r in rs])
            reached = fmt_steps(float(np.median([r.timesteps for r in rs])))
        else:
            ours, reached = "not run", "-"
        ars = [r for r in runs if ars_task_of(r) == key]
        ars_cell = summarize_seeds([first_crossing(r.history, t.threshold, window) for r in ars],
                                   [r.timesteps for r in ars]) if ars else "not run"
        lines.append(f"| {t.env} | {t.threshold:.2f} | {fmt_steps(t.es_timesteps)} | {ours} | "
                     f"{fmt_steps(t.budget)} ({reached}) | {ars_cell} |")
    return "\n".join(lines)


def fraction_table(runs: list[Run], window: int = DEFAULT_WINDOW) -> str:
    lines = ["| task | 25% | 50% | 75% | 100% |", "|---|---|---|---|---|"]
    for key, t in TASKS.items():
        rs = [r for r in runs if task_of(r) == key]
        if not rs:
            continue
        cells = []
        for name, thr in t.thresholds():
            vals = [first_crossing(r.history, thr, window) for r in rs]
            cells.append(f"{thr:g}: {summarize_seeds(vals, [r.timesteps for r in rs])}")
        lines.append(f"| {t.env} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_table(runs: list[Run], walllog: dict[str, list[dict]], window: int = DEFAULT_WINDOW) -> str:
    lines = [
        "| run | env | timesteps | gens | last-5 eval mean | best 5-gen eval mean | 100% crossing (5-gen / raw) "
        "| wall time (TimeElapsed) | ranks | sessions: wall s, load avg (start / mean / end) | status |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|---|---|",
    ]
    for r in runs:
        t = TASKS.get(task_of(r) or "") or next((t for t in TASKS.values() if t.env == _cfg(r, "env.id")), None)
        if t is not None:
            c5 = fmt_steps(first_crossing(r.history, t.threshold, window))
            c1 = fmt_steps(first_crossing(r.history, t.threshold, 1))
            cross = f"{c5} / {c1}"
        else:
            cross = "n/a"
        sess = []
        for s in walllog.get(r.name, []):
            la = s.get("loadavg_start", [math.nan])[0], s.get("loadavg_mean_sampled", math.nan), s.get("loadavg_end", [math.nan])[0]
            sess.append(f"{s.get('wall_s', 0):.0f} s, {la[0]:.2f}/{la[1]:.2f}/{la[2]:.2f} (rc {s.get('rc')})")
        lines.append(
            f"| {r.name} | {_cfg(r, 'env.id', '?')} | {fmt_steps(r.timesteps)} | {len(r.history)} | "
            f"{_fmt_ret(_last_mean(r))} | {_fmt_ret(_best_smoothed(r, window))} | {cross} | {_fmt_dur(r.wall)} | "
            f"{r.world_size or '?'} | {'; '.join(sess) or '-'} | {_status(r)} |")
    return "\n".join(lines)


def extra_table(runs: list[Run], window: int = DEFAULT_WINDOW) -> str:
    """Runs outside the main table: their key settings and the timesteps/wall time to each
    threshold of their task (HalfCheetah sensitivity) or to each multiple of 1,000 (others)."""
    extra = [r for r in runs if is_extra(r)]
    if not extra:
        return "(none yet)"
    lines = ["| run | env | sigma | pairs/gen (GA: population) | timesteps | last-5 eval mean | timesteps (wall time) to each threshold |",
             "|---|---|---:|---:|---:|---:|---|"]
    for r in extra:
        t = next((t for t in TASKS.values() if t.env == _cfg(r, "env.id")), None)
        if t is not None:
            thr = t.thresholds()
        else:
            top = _best_smoothed(r, window)
            thr = [(f"{k}k", 1000.0 * k) for k in range(1, max(1, int(top // 1000)) + 1)] if math.isfinite(top) else []
        cells = []
        for name, v in thr:
            x = first_crossing(r.history, v, window)
            w = first_crossing(r.history, v, window, x="TimeElapsed")
            cells.append(f"{name} ({v:g}): {fmt_steps(x) if x is not None else '>' + fmt_steps(r.timesteps)}"
                         + (f" ({_fmt_dur(w)})" if w is not None else ""))
        sigma = _cfg(r, "es.noise_stdev") or _cfg(r, "ga.sigma", "?")      # the GA's mutation power
        pop = _cfg(r, "es.pairs_per_generation")
        pop = pop if pop is not None else f"N = {_cfg(r, 'ga.population', '?')}"
        lines.append(f"| {r.name} | {_cfg(r, 'env.id', '?')} | {sigma} | "
                     f"{pop} | {fmt_steps(r.timesteps)} | {_fmt_ret(_last_mean(r))} | "
                     f"{'; '.join(cells) or '-'} |")
    return "\n".join(lines)


def _scale_rows(scale: dict, net: str = "cloud", p: int = 1440) -> dict[str, dict]:
    """{scenario: row} of the scale model's prediction for esmpi as installed ('as_is'), at p cores."""
    return {r["scenario"]: r for r in scale.get("rows", [])
            if r["net"] == net and r["p"] == p and r["variant"] == scale.get("as_is")}


def _fmt_secs(s: float) -> str:
    """A short duration that stays readable from milliseconds to hours."""
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 100:
        return f"{s:.1f} s"
    return _fmt_dur(s)


def _episodes_per_gen(run: Run) -> int:
    return 2 * int(_cfg(run, "es.pairs_per_generation", 0) or 0)


def humanoid_section(runs: list[Run], scale: dict | None, window: int = DEFAULT_WINDOW) -> str:
    """Local Humanoid runs: timesteps, generations and wall time to each multiple of 1,000 of
    return (trailing-mean rule), and what the scale model (``python -m esmpi.bench.scale --json``,
    committed as results/scale.json) predicts for the same progress on 1,440 cores."""
    hs = [r for r in runs if str(_cfg(r, "env.id", "")).startswith("Humanoid")]
    if not hs:
        return "(no Humanoid run)"
    scale = scale or {}
    rows = _scale_rows(scale)
    assumed = scale.get("assumed", {})
    theirs = 2 * assumed.get("pairs", 0)      # episodes per generation of the modelled cluster job
    thr = {k: v["steps"] / v["T"] for k, v in rows.items()}   # timesteps/s at 1,440 cores per scenario
    out = []
    for r in hs:
        top = _best_smoothed(r, window)
        cpu_min = r.wall * (r.world_size or 1) / 60
        cost = (f" Cost: about {cpu_min:,.0f} CPU-minutes (wall time x ranks; the machine was shared, so this is an "
                "upper bound), against ARS's ~1,000 (median 21 minutes on 48 CPUs to 6,000) and the paper's 14,400 "
                "(1,440 cores x 10 minutes).")
        lines = [f"**{r.name}** ({_cfg(r, 'strategy.name', 'openai_es')}, policy {_cfg(r, 'policy.hidden', '?')}): "
                 f"{fmt_steps(r.timesteps)} timesteps, {len(r.history)} generations of "
                 f"{_episodes_per_gen(r) or '?'} episodes, {_fmt_dur(r.wall)} wall time "
                 f"(TimeElapsed over all sessions; last session on {r.world_size or '?'} rank(s)), "
                 f"{r.timesteps / max(r.wall, 1e-9):,.0f} timesteps/s overall; best {window}-generation eval mean "
                 f"{_fmt_ret(top)}." + cost, ""]
        # steps of 1,000 of return (the unit); below 1,000, steps of 250 so that the cost of
        # the progress made so far is still read off the curve
        step = 1000.0 if math.isfinite(top) and top >= 1000 else 250.0
        levels = [step * k for k in range(1, int(top // step) + 1)] if math.isfinite(top) else []
        if step < 1000:
            lines.append(f"It has not reached a {window}-generation eval mean of 1,000; below, the same "
                         f"readings at every {step:,.0f} of return.")
            lines.append("")
        if not levels:
            out.append("\n".join(lines))
            continue
        hdr = f"| return | timesteps | generations | wall time | this {step:,.0f}: timesteps, wall time |"
        if rows:
            short = scale.get("calibration", {}).get("humanoid_random_init_episode_lengths", {}).get("mean", math.nan)
            mid_len = assumed.get("mid_mean_length", math.nan)
            hdr += (f" 1,440 cores, same timesteps (at {mid_len:.0f}-step / {short:.0f}-step episode throughput) |"
                    f" 1,440 cores, same generations of {theirs:,} episodes |")
        lines += [hdr, "|" + "---|" * (hdr.count("|") - 1)]
        prev_x = prev_w = 0.0
        for L in levels:
            x = first_crossing(r.history, L, window)
            g = first_crossing(r.history, L, window, x="Generation")
            w = first_crossing(r.history, L, window, x="TimeElapsed")
            cell = (f"| {L:,.0f} | {fmt_steps(x)} | {g:.0f} | {_fmt_dur(w)} | "
                    f"{fmt_steps(x - prev_x)}, {_fmt_dur(w - prev_w)} |")
            if rows:
                cell += (f" {_fmt_secs(x / thr['mid'])} - {_fmt_secs(x / thr['random_init'])} |"
                         f" {_fmt_secs(g * rows['random_init']['T'])} - {_fmt_secs(g * rows['mid']['T'])} |")
            lines.append(cell)
            prev_x, prev_w = x, w
        out.append("\n".join(lines))
    if rows:
        mid, rnd, trn = rows["mid"], rows["random_init"], rows["trained"]
        ours = _episodes_per_gen(hs[0]) or math.nan
        out.append(
            "Scale model (`results/scale.json`: `python -m esmpi.bench.scale --json`, calibrated by `make bench`; "
            f"10 GbE; the reference's {theirs:,}-episode generations): at 1,440 cores a generation takes "
            f"{rnd['T']:.2f} s with random-init episodes ({rnd['steps'] / rnd['T'] / 1e6:.1f}M timesteps/s), "
            f"{mid['T']:.2f} s with the mid-training episode lengths ({mid['steps'] / mid['T'] / 1e6:.1f}M timesteps/s) and "
            f"{trn['T']:.2f} s with trained, mostly 1,000-step episodes ({trn['steps'] / trn['T'] / 1e6:.1f}M timesteps/s; "
            f"parallel efficiency {trn['E']:.0%}). 'Same timesteps' assumes the local run's timesteps-to-return carry over "
            f"to the paper's population (they do not: a {theirs:,}-episode generation spends {theirs / ours:.0f}x the "
            f"timesteps of ours per update), so it is a lower bound on wall time; 'same generations' assumes a "
            f"{theirs:,}-episode generation is worth no more than our {ours:.0f}-episode one, an upper bound in "
            "generations.")
    return "\n\n".join(out)


def resume_commands(runs: list[Run], runs_dir: str = "results/runs") -> str:
    """The exact command that continues each unfinished run (bitwise, at any number of ranks)."""
    lines = []
    for r in runs:
        if _status(r).startswith("done"):
            continue
        sets = []
        secs = _cfg(r, "run.max_seconds", 0) or 0
        if secs:  # a wall-time budget stopped it: lift it, or extend it when it is the only budget
            has_other = (_cfg(r, "run.max_timesteps", 0) or 0) or (_cfg(r, "run.generations", 0) or 0)
            sets.append("run.max_seconds=0" if has_other else f"run.max_seconds={int(2 * max(secs, r.wall))}")
        budget = _cfg(r, "run.max_timesteps", 0) or 0
        note = f"  # {fmt_steps(r.timesteps)} of {fmt_steps(budget)} timesteps" if budget else \
            f"  # {fmt_steps(r.timesteps)} timesteps, {_fmt_dur(r.wall)}"
        cmd = f".venv/bin/mpiexec -n 2 .venv/bin/python -m esmpi.run --resume {runs_dir}/{r.name}"
        cmd += "".join(f" --set {s}" for s in sets)
        lines.append(cmd + note)
    if not lines:
        return "(every run reached its budget)"
    return "```sh\n" + "\n".join(lines) + "\n```"


# ------------------------------------------------------------------------------------------ figures, csv
def _figure(runs: list[Run], out: Path, title: str, thresholds: Iterable[tuple[str, float]] = ()) -> Path:
    from . import analyze

    rds = [r.rd for r in runs if r.rd is not None]
    if not rds:
        return out
    fig = analyze.plot_runs(rds, x="timesteps", title=title)
    ax = fig.axes[0]
    if len(rds) > 1:  # plot_runs' band covers only the x range all seeds reached: add each seed, thin
        for rd in rds:
            x, y = rd.column("TimestepsSoFar"), rd.column("EvalEpRewMean")
            ok = np.isfinite(x) & np.isfinite(y)
            ax.plot(x[ok], y[ok], lw=0.6, alpha=0.35, color="0.3")
    for i, (name, v) in enumerate(thresholds):
        ax.axhline(v, color="k", lw=0.8, ls=":" if name != "100%" else "-.", alpha=0.6)
        ax.annotate(f"paper {name}", (0, v), xycoords=("axes fraction", "data"), fontsize=7, alpha=0.8,
                    xytext=(2, 2), textcoords="offset points")
    return analyze.save_figure(fig, out)


def figures(runs: list[Run], outdir: Path) -> list[Path]:
    outdir.mkdir(parents=True, exist_ok=True)
    made = []
    for key, t in TASKS.items():
        rs = [r for r in runs if task_of(r) == key]
        if rs:
            made.append(_figure(rs, outdir / f"{key}.png",
                                f"{t.env}: {len(rs)} seed(s), ES timesteps to TRPO@5M (v1) = {t.threshold:g} in the paper: "
                                f"{fmt_steps(t.es_timesteps)}", t.thresholds()))
        ars = [r for r in runs if ars_task_of(r) == key]
        if ars:   # ARS and OpenAI-ES side by side (plot_runs groups them by config)
            made.append(_figure(ars + rs, outdir / f"ars-{key}.png",
                                f"{t.env}: ARS ({len(ars)} seed(s)) and OpenAI-ES ({len(rs)})", t.thresholds()))
    extra = [r for r in runs if is_extra(r)]
    by_prefix: dict[str, list[Run]] = {}
    for r in extra:
        by_prefix.setdefault(re.sub(r"[0-9.]+-s\d+$|-s\d+$", "", r.name), []).append(r)
    for prefix, rs in by_prefix.items():
        t = next((t for t in TASKS.values() if t.env == _cfg(rs[0], "env.id")), None)
        if t is not None:  # the task's own setting (seed 0) for comparison, e.g. sigma 0.02 and 20 pairs
            rs = rs + [r for r in runs if r.name == f"{t.key}-s0"]
        made.append(_figure(rs, outdir / f"{prefix}.png", f"{prefix}: {len(rs)} run(s)",
                            t.thresholds() if t else ()))
    return made


def export_csvs(runs: list[Run], outdir: Path) -> list[Path]:
    from . import analyze

    outdir.mkdir(parents=True, exist_ok=True)
    made = []
    for r in runs:
        p = outdir / f"{r.name}.csv"
        with open(p, "w", newline="") as f:
            analyze.export_csv(r.history, f)
        made.append(p)
    return made


# ------------------------------------------------------------------------------------------ report
def report(runs: list[Run], walllog: dict[str, list[dict]], figs: list[Path], md_dir: Path,
           window: int = DEFAULT_WINDOW, scale: dict | None = None, logs_dir: Path | None = None) -> str:
    from . import paper_ga

    def rel(p: Path) -> str:
        try:
            return str(p.resolve().relative_to(md_dir.resolve()))
        except ValueError:
            return str(p)

    parts = [
        "_Generated by `python -m esmpi.paper` (`make results`) from the run directories; do not edit between "
        "the markers._",
        "",
        f"Crossing rule: first `TimestepsSoFar` at which the mean `EvalEpRewMean` (unperturbed theta) over the last "
        f"{window} generations is >= the threshold (see `esmpi.paper`). `>X` = not reached within the X timesteps run; "
        "`(k/n)` = seeds that reached it. Median over seeds counts an unreached seed as infinite.",
        "",
        "### Table 1: timesteps to TRPO's 5M-timestep return",
        "",
        main_table(runs, window),
        "",
        "### Table 3 thresholds (25 / 50 / 75 / 100%): our timesteps, median [range] (seeds reached/run)",
        "",
        fraction_table(runs, window),
        "",
        "### Every run",
        "",
        run_table(runs, walllog, window),
        "",
        "### Other runs (sensitivity, Humanoid)",
        "",
        extra_table(runs, window),
        "",
        "### The Deep GA and random search beside OpenAI-ES and ARS at equal timesteps",
        "",
        paper_ga.section(runs, walltime_logs(logs_dir), window),
        "",
        "### Humanoid-v5 on this machine, and the 1,440-core prediction",
        "",
        humanoid_section(runs, scale, window),
        "",
        "### Unfinished runs: the exact commands that continue them",
        "",
        "Each continues bitwise from its newest checkpoint, at any number of ranks (`-n`); "
        "`run.max_timesteps` in its config.toml is then the budget.",
        "",
        resume_commands(runs),
        "",
        "### Learning curves",
        "",
    ]
    for f in figs:
        parts += [f"![{f.stem}]({rel(f)})", ""]
    return "\n".join(parts).rstrip() + "\n"


def write_report(out: Path, body: str) -> None:
    block = f"{BEGIN}\n{body}{END}\n"
    if out.is_file():
        text = out.read_text()
        if BEGIN in text and END in text:
            pre, rest = text.split(BEGIN, 1)
            post = rest.split(END, 1)[1].lstrip("\n")
            out.write_text(pre + block + ("\n" + post if post else ""))
            return
        out.write_text(text.rstrip() + "\n\n" + block)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("# Reproducing the paper's MuJoCo results\n\n" + block)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m esmpi.paper",
                                 description="Results table of the paper reproduction (docs/results.md).")
    ap.add_argument("runs", help="directory holding the run directories (e.g. results/runs)")
    ap.add_argument("-o", "--out", default="docs/results.md", help="markdown file; tables go between its markers")
    ap.add_argument("--figures", default=None, help="directory for the PNGs (default: OUT without .md, e.g. docs/results/)")
    ap.add_argument("--csv", default=None, help="directory for one history CSV per run (default: none)")
    ap.add_argument("--walltime-log", default=None,
                    help="JSON lines of per-session wall time and load (default: every RUNS/../logs/walltime*.jsonl)")
    ap.add_argument("--window", type=int, default=DEFAULT_WINDOW, help="generations in the trailing eval mean (1 = raw)")
    ap.add_argument("--scale", default=None,
                    help="scale-model prediction JSON (`python -m esmpi.bench.scale --json`; default: RUNS/../scale.json)")
    a = ap.parse_args(argv)
    root = Path(a.runs)
    if not root.is_dir():
        print(f"{root}: not a directory", file=sys.stderr)
        return 2
    runs = load_runs(root)
    out = Path(a.out)
    figdir = Path(a.figures) if a.figures else out.with_suffix("")
    walllog = _walltime_log(Path(a.walltime_log)) if a.walltime_log else walltime_logs(root.parent / "logs")
    from . import paper_ga
    figs = figures(runs, figdir) + paper_ga.figures(runs, figdir)
    if a.csv:
        export_csvs(runs, Path(a.csv))
    scale_path = Path(a.scale) if a.scale else root.parent / "scale.json"
    scale = json.loads(scale_path.read_text()) if scale_path.is_file() else None
    write_report(out, report(runs, walllog, figs, out.parent, a.window, scale, root.parent / "logs"))
    print(f"{out}: {len(runs)} run(s), {len(figs)} figure(s) in {figdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
