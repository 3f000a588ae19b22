"""The Deep GA and random search beside OpenAI-ES (and ARS) at equal timesteps (issue 12; docs/results.md).

Run directories ``ga-TASK-sSEED`` (the Deep GA, ``jobs/ga-TASK.toml``) and ``rs-TASK-sSEED`` (random
search, ``jobs/rs-TASK.toml``) are compared with the same task's ``TASK-sSEED`` (OpenAI-ES) and
``ars-TASK-sSEED`` runs **at the GA's budget** B: the median over the GA runs' ``run.max_timesteps``.
Every run's history is cut at its first generation with ``TimestepsSoFar >= B`` (a longer ES run is
read as it stood at B; a run stopped before B is read where it stopped, and its timesteps are shown).
On the cut history, with ``esmpi.paper``'s 5-generation rule (``EvalEpRewMean``: the unperturbed ES
mean, ARS's theta, the GA's elite on its test episodes):

- timesteps to the task's Table 1 threshold (TRPO's 5M-timestep return), median [range] (k/n);
- the last 5-generation eval mean at B (per seed, and the median), and the best 5-generation mean;
- wall time to B (``TimeElapsed``; one rank each) with the mean sampled load average of the run's
  sessions from ``results/logs/walltime*.jsonl`` (the machine was shared).

The GA counts its validation episodes as training timesteps (as Such et al. do), its elite's test
episodes not (as ES's evaluation episodes). ``section(runs, logs)`` is the markdown;
``figures(runs, outdir)`` one learning-curve PNG per task (``esmpi.analyze.plot_runs``, x cut at B).
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from . import paper as P

GA_RE = re.compile(r"^(?P<kind>ga|rs)-(?P<task>[a-z0-9]+)-s(?P<seed>\d+)$")
STRATEGIES = (("es", "OpenAI-ES"), ("ars", "ARS"), ("ga", "Deep GA"), ("rs", "random search"))


def ga_task_of(run: P.Run) -> str | None:
    """The task of a ``ga-TASK-sN`` / ``rs-TASK-sN`` run directory, if TASK is a Table 1 task."""
    m = GA_RE.match(run.name)
    return m.group("task") if m and m.group("task") in P.TASKS else None


def _kind(run: P.Run) -> str | None:
    if P.task_of(run):
        return "es"
    if P.ars_task_of(run):
        return "ars"
    m = GA_RE.match(run.name)
    return m.group("kind") if m else None


def _task(run: P.Run) -> str | None:
    return P.task_of(run) or P.ars_task_of(run) or ga_task_of(run)


def groups(runs: list[P.Run]) -> dict[str, dict[str, list[P.Run]]]:
    """{task: {kind: runs}} for every task that has a GA or random-search run."""
    tasks = {ga_task_of(r) for r in runs} - {None}
    out: dict[str, dict[str, list[P.Run]]] = {}
    for key in P.TASKS:                                     # Table 1's task order
        if key in tasks:
            out[key] = {k: [r for r in runs if _task(r) == key and _kind(r) == k] for k, _ in STRATEGIES}
    return out


def budget(ga_runs: list[P.Run]) -> float:
    """The GA's budget B: the median ``run.max_timesteps`` of the GA runs (their job file's)."""
    b = [float(P._cfg(r, "run.max_timesteps", 0) or r.timesteps) for r in ga_runs]
    return float(np.median(b))


def cut(history: list, b: float) -> list:
    """The history up to and including its first generation with TimestepsSoFar >= b."""
    ts = P._col(history, "TimestepsSoFar")
    hit = np.nonzero(ts >= b)[0]
    return list(history[: hit[0] + 1]) if hit.size else list(history)


def _cut_run(r: P.Run, b: float) -> P.Run:
    return P.Run(r.name, r.path, cut(r.history, b), r.config, r.world_size, r.rd)


def _load(runs: list[P.Run], logs: dict[str, list[dict]]) -> str:
    loads = [s["loadavg_mean_sampled"] for r in runs for s in logs.get(r.name, []) if "loadavg_mean_sampled" in s]
    return f"{min(loads):.1f}-{max(loads):.1f}" if loads else "not logged"


def _med(xs: list[float]) -> str:
    xs = [x for x in xs if math.isfinite(x)]
    return P._fmt_ret(float(np.median(xs))) if xs else "-"


def table(runs: list[P.Run], logs: dict[str, list[dict]] | None = None, window: int = P.DEFAULT_WINDOW) -> str:
    """One row per (task, strategy): see the module docstring."""
    logs = logs or {}
    lines = ["| task, GA budget B | strategy | runs | timesteps to the Table 1 threshold by B, median [range] (k/n) "
             "| last 5-gen eval mean at B: median (per seed) | best 5-gen eval mean by B, median "
             "| wall time to B, median (load avg of the sessions) |",
             "|---|---|---|---|---|---|---|"]
    for key, by_kind in groups(runs).items():
        t = P.TASKS[key]
        b = budget(by_kind["ga"] or by_kind["rs"])
        for kind, label in STRATEGIES:
            rs = [_cut_run(r, b) for r in by_kind[kind]]
            if not rs:
                continue
            cross = P.summarize_seeds([P.first_crossing(r.history, t.threshold, window) for r in rs],
                                      [r.timesteps for r in rs])
            last = [P._last_mean(r, window) for r in rs]
            short = [f" @{P.fmt_steps(r.timesteps)}" if r.timesteps < 0.99 * b else "" for r in rs]
            per = " / ".join(P._fmt_ret(v) + s for v, s in zip(last, short))
            best = _med([P._best_smoothed(r, window) for r in rs])
            wall = P._fmt_dur(float(np.median([r.wall for r in rs])))
            seeds = ", ".join(r.name for r in rs)
            lines.append(f"| {t.env}, {P.fmt_steps(b)} (threshold {t.threshold:g}) | {label} | {seeds} | {cross} | "
                         f"{_med(last)} ({per}) | {best} | {wall} ({_load(rs, logs)}) |")
    return "\n".join(lines) if len(lines) > 2 else "(no GA or random-search runs)"


def figures(runs: list[P.Run], outdir: Path) -> list[Path]:
    """Per task: the GA, random search, ARS and OpenAI-ES learning curves (median and IQR over
    seeds, ``esmpi.analyze.plot_runs``) against timesteps, up to the GA's budget."""
    from . import analyze

    outdir.mkdir(parents=True, exist_ok=True)
    made = []
    for key, by_kind in groups(runs).items():
        t = P.TASKS[key]
        b = budget(by_kind["ga"] or by_kind["rs"])
        rds = [r.rd for k, _ in STRATEGIES for r in by_kind[k] if r.rd is not None]
        if not rds:
            continue
        n = {k: len(v) for k, v in by_kind.items()}
        fig = analyze.plot_runs(rds, x="timesteps", title=(
            f"{t.env} at the GA's budget ({P.fmt_steps(b)} timesteps): Deep GA ({n['ga']}), random search "
            f"({n['rs']}), ARS ({n['ars']}), OpenAI-ES ({n['es']}) runs; median and IQR over seeds"))
        ax = fig.axes[0]
        _strategy_legend(fig, ax, rds, {r.name: label for k, label in STRATEGIES for r in by_kind[k]})
        ax.set_xlim(0, 1.02 * b)
        ax.axhline(t.threshold, color="k", lw=0.8, ls="-.", alpha=0.6)
        ax.annotate("Table 1 threshold", (0, t.threshold), xycoords=("axes fraction", "data"), fontsize=7,
                    xytext=(2, 2), textcoords="offset points")
        made.append(analyze.save_figure(fig, outdir / f"ga-vs-es-{key}.png"))
    return made


def _strategy_legend(fig, ax, rds, label_of: dict[str, str]) -> None:
    """Name plot_runs' seed groups by strategy (its own legend names them by config differences)."""
    from . import analyze

    groups = analyze.group_runs(rds)
    handles, _ = ax.get_legend_handles_labels()
    if len(handles) != len(groups):
        return
    for leg in list(fig.legends):
        leg.remove()
    names = [f"{label_of.get(g[0].label, g[0].label)} ({len(g)} run{'s' if len(g) > 1 else ''})" for g in groups]
    fig.legend(handles, names, loc="outside lower center", ncols=min(len(handles), 4), fontsize=8,
               title="solid: EvalEpRewMean (ES mean, ARS theta, GA elite; median and IQR over seeds), "
                     "dashed: EpRewMean (population mean)", title_fontsize=8)


def section(runs: list[P.Run], logs: dict[str, list[dict]] | None = None, window: int = P.DEFAULT_WINDOW) -> str:
    """The generated markdown: the rule in one paragraph, then the table."""
    return ("All runs of a task read at the Deep GA's budget B (each history cut at its first generation with "
            "`TimestepsSoFar >= B`; see `esmpi.paper_ga`); a run that stopped before B (the ARS runs stop at the "
            "threshold, `run.target_return`) is read where it stopped (`@` its timesteps). The GA counts its "
            "validation episodes as training timesteps, as Such et al. do; the score is the elite's test return (`EvalEpRewMean`), as ES's is its "
            "unperturbed mean's. One rank per run on the shared 2-core machine; the load average is beside the "
            "wall time.\n\n" + table(runs, logs, window))

