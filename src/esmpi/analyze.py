"""Offline analysis of esmpi runs: summary, learning curves and CSV export (evaluation and video of
a saved policy are in ``esmpi.replay``).

Everything reads checkpoints through ``esmpi.checkpoint.load`` (the one h5py user). A ``RUN``
argument is a run directory (its newest periodic checkpoint, via ``latest.h5``) or a ``.h5``
file; see ``policy_io.resolve_checkpoint``. The command line is ``esmpi.cli`` (``esmpi ...`` or
``python -m esmpi.analyze ...``); docs/analysis.md describes both.

- ``load_run`` -> ``RunData`` (checkpoint, config, history, label)
- ``summarize`` / ``format_info``: the ``info`` command
- ``group_runs`` / ``plot_runs`` -> matplotlib ``Figure``: the ``plot`` command
- ``export_csv``: the ``export`` command
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
import warnings
from pathlib import Path

import numpy as np

from .config import flatten
from .errors import EsmpiError
from .runs import RunData, load_run  # noqa: F401  (the analysis commands' input)

# ---------------------------------------------------------------------------------------------- info
HIGHLIGHT_KEYS = [
    "run.seed", "policy.kind", "policy.hidden", "policy.nonlinearity", "policy.action_bins", "es.pairs_per_generation",
    "es.noise_stdev", "es.l2coeff", "es.shaping", "es.eval_episodes", "es.episode_cutoff", "es.obs_stat_fraction",
    "es.action_noise_std", "optimizer.name", "optimizer.stepsize", "noise.size", "strategy.name", "ga.mode",
    "ga.population", "ga.truncation", "ga.sigma", "ga.validation_top", "ga.validation_episodes", "ga.test_episodes",
    "ga.mutation", "ga.smg_states", "ga.smg_floor", "ga.smg_clip",
]
# keys that mean nothing for pixels (the CNN is configured in [atari]; VBN instead of observation statistics)
ATARI_SKIP = ("policy.", "es.obs_stat_fraction", "es.action_noise_std")


def atari_summary(rd: RunData) -> dict | None:
    """The [atari] settings and the VBN reference batch held in the state (shape, dtype, sha256), or None."""
    if rd.objective_kind != "atari":
        return None
    import hashlib

    out = {"settings": dict(rd.config.get("atari") or {})}
    ref = (rd.state.extra or {}).get("vbn_ref_batch") if rd.state is not None else None
    if ref is not None:
        ref = np.ascontiguousarray(ref)
        out["vbn_ref_batch"] = {"shape": list(ref.shape), "dtype": str(ref.dtype),
                                "sha256": hashlib.sha256(ref.tobytes()).hexdigest(),
                                "mean_pixel": float(ref.mean()) if ref.size else None}
    return out


def _finite(v) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


def _median(a: np.ndarray) -> float:
    a = a[np.isfinite(a)]
    return float(np.median(a)) if a.size else math.nan


def summarize(rd: RunData) -> dict:
    """Everything ``info`` prints, as a JSON-serialisable dict."""
    st, attrs, hist = rd.state, rd.attrs, rd.history
    flat = flatten(rd.config)
    try:
        policy = json.loads(attrs.get("policy_json") or "{}")
    except json.JSONDecodeError:
        policy = {}
    try:
        vers = json.loads(attrs.get("versions_json") or "{}")
    except json.JSONDecodeError:
        vers = {}
    try:
        resumes = json.loads(attrs.get("resumes_json") or "[]")
    except json.JSONDecodeError:
        resumes = []
    ev = rd.column("EvalEpRewMean")
    gen = rd.column("Generation")
    best = last = None
    if np.isfinite(ev).any():
        i = int(np.nanargmax(ev))
        best = {"return": float(ev[i]), "generation": int(gen[i])}
        j = int(np.flatnonzero(np.isfinite(ev))[-1])
        last = {"return": float(ev[j]), "generation": int(gen[j])}
    times = {k: _median(rd.column(col)) for k, col in
             (("generation", "TimeElapsedThisIter"), ("rollout", "TimeRollout"), ("comm", "TimeComm"),
              ("update", "TimeUpdate"))}
    wall = rd.column("TimeElapsed")
    out = {
        "checkpoint": str(rd.checkpoint),
        "run_dir": str(rd.run_dir) if rd.run_dir else None,
        "env_id": policy.get("env_id") or (f"atari-{policy['game']}" if policy.get("objective") == "atari" else None)
                  or rd.config.get("env", {}).get("id"),
        "strategy": rd.attrs.get("strategy", "openai_es"),
        "env_kwargs": rd.config.get("env", {}).get("kwargs", {}),
        "policy_layers": policy.get("layer_sizes") or policy.get("net"),
        "policy_type": policy.get("type"),
        "num_params": attrs.get("num_params"),
        "config": {k: flat[k] for k in HIGHLIGHT_KEYS
                   if k in flat and not (rd.objective_kind == "atari" and k.startswith(ATARI_SKIP))},
        "atari": atari_summary(rd),
        "budget": {k: v for k, v in rd.config.get("run", {}).items() if k != "seed" and v},
        "generation": st.generation,
        "history_rows": len(hist),
        "timesteps": st.timesteps_so_far,
        "episodes": st.episodes_so_far,
        "episode_cutoff": st.cutoff,
        "wall_time_s": float(wall[-1]) if wall.size and np.isfinite(wall[-1]) else None,
        "best_eval": best,
        "last_eval": last,
        "failed_episodes": int(np.nansum(rd.column("EpFailures"))) if hist else 0,
        "world_size": attrs.get("world_size"),
        "esmpi_version": attrs.get("esmpi_version"),
        "git_commit": attrs.get("git_commit") or None,
        "created_utc": attrs.get("created_utc"),
        "versions": vers,
        "resumes": resumes,
        "time_median_s": times,
        "steps_per_sec_median": _median(rd.column("StepsPerSec")),
    }
    if hasattr(st.strategy, "encoding"):      # seed-encoded genomes (GA): bytes against float32 parameters
        out["encoding"] = st.strategy.encoding()
    if rd.run_dir is not None:
        d = rd.run_dir
        files = []
        for p in sorted((d / "checkpoints").glob("*.h5")):
            files.append({"name": f"checkpoints/{p.name}", "bytes": p.stat().st_size})
        out["checkpoint_files"] = files
        latest = d / "latest.h5"
        out["latest"] = os.readlink(latest) if latest.is_symlink() else (str(latest) if latest.exists() else None)
        prog = d / "progress.jsonl"
        if prog.is_file():
            with open(prog, "rb") as f:
                out["progress_lines"] = sum(1 for _ in f)
    return out


def _fmt_dur(s) -> str:
    if not _finite(s):
        return "?"
    if s < 60:
        return f"{s:.1f}s"
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _fmt_t(s) -> str:
    if not _finite(s):
        return "n/a"
    return f"{s * 1e3:.2f}ms" if s < 1 else f"{s:.2f}s"


def format_info(s: dict) -> str:
    """The human-readable ``info`` text for a ``summarize`` dict."""
    L = []
    L.append(f"checkpoint   {s['checkpoint']}" + (f"  (run {s['run_dir']})" if s.get("run_dir") else ""))
    kw = f" {s['env_kwargs']}" if s.get("env_kwargs") else ""
    L.append(f"env          {s['env_id']}{kw}")
    L.append(f"strategy     {s['strategy']}")
    if s.get("policy_type") == "gru":   # recurrent: [inputs, hidden units, outputs]
        L.append(f"policy       GRU {s['policy_layers']} (inputs, hidden units, outputs), {s['num_params']} parameters")
    else:
        L.append(f"policy       layers {s['policy_layers']}, {s['num_params']} parameters")
    cfg = s["config"]
    L.append("config       " + ", ".join(f"{k}={v}" for k, v in cfg.items()))
    if s.get("atari"):
        a = s["atari"]["settings"]
        L.append(f"atari        {a.get('game')}, net {a.get('net', 'a3c')}, frame skip {a.get('frame_skip', 4)}, "
                 f"frame cap {a.get('frame_cap', 108000)}, no-op max {a.get('noop_max', 30)}, "
                 f"sticky actions {a.get('sticky_actions', 0.0)}, VBN {'on' if a.get('vbn', True) else 'off'}")
        ref = s["atari"].get("vbn_ref_batch")
        L.append("vbn batch    " + (f"{ref['shape'][0]} observations {tuple(ref['shape'][1:])} {ref['dtype']} in the state "
                                    f"(sha256 {ref['sha256'][:16]}, mean pixel {ref['mean_pixel']:.1f})" if ref
                                    else "none (VBN off)"))
    if s.get("budget"):
        L.append("budget       " + ", ".join(f"{k}={v}" for k, v in s["budget"].items()))
    L.append(f"progress     {s['generation']} generations, {s['timesteps']:,} timesteps, {s['episodes']:,} episodes, "
             f"wall time {_fmt_dur(s['wall_time_s'])}, episode cutoff {s['episode_cutoff']}")
    if s["best_eval"]:
        b, la = s["best_eval"], s["last_eval"]
        L.append(f"eval return  best {b['return']:.2f} (generation {b['generation']}), "
                 f"last {la['return']:.2f} (generation {la['generation']})")
    else:
        L.append("eval return  n/a (no evaluation episodes: es.eval_episodes = 0, or all failed)")
    if s["failed_episodes"]:
        L.append(f"failures     {s['failed_episodes']} failed training episodes in total")
    t = s["time_median_s"]
    parts = [f"{k} {_fmt_t(t[k])}" + (f" ({100 * t[k] / t['generation']:.0f}%)" if _finite(t[k]) and _finite(t["generation"])
                                      and t["generation"] > 0 else "") for k in ("rollout", "comm", "update")]
    L.append(f"time/gen     median {_fmt_t(t['generation'])}: " + ", ".join(parts)
             + (f"; {s['steps_per_sec_median']:,.0f} steps/s" if _finite(s["steps_per_sec_median"]) else ""))
    if s.get("encoding"):
        e = s["encoding"]
        L.append(f"encoding     elite genome {e['elite_genome_bytes']:,} B vs {e['elite_param_bytes']:,} B of float32 "
                 f"parameters ({e['ratio']:,.0f}x compact); genomes stored {e['stored_genome_bytes']:,} B vs "
                 f"{e['stored_param_bytes_if_not']:,} B as parameter vectors"
                 + (f" (SM-G: genomes do not rebuild theta; the state stores the parents' "
                    f"{e['smg_parent_theta_bytes']:,} B)" if "smg_parent_theta_bytes" in e else ""))
    L.append(f"world size   {s['world_size']} rank(s)")
    for r in s.get("resumes") or []:
        if isinstance(r, dict):
            ch = r.get("changes") or {}
            chs = ", ".join(f"{k}: {v[0]} -> {v[1]}" if isinstance(v, (list, tuple)) and len(v) == 2 else f"{k}: {v}"
                            for k, v in ch.items())
            L.append(f"resumed      at generation {r.get('generation')} on {r.get('world_size')} rank(s), "
                     f"{r.get('time_utc')}" + (f"; changed {chs}" if chs else ""))
    v = s.get("versions") or {}
    L.append("versions     " + ", ".join(f"{k} {v[k]}" for k in sorted(v)))
    L.append(f"git commit   {s['git_commit'] or 'unknown (not run from a git checkout)'}; written {s['created_utc']}")
    if "checkpoint_files" in s:
        files = ", ".join(f"{f['name']} ({f['bytes'] / 1e6:.2f} MB)" for f in s["checkpoint_files"]) or "none"
        L.append(f"files        {files}; latest.h5 -> {s.get('latest')}")
        if "progress_lines" in s:
            extra = s["progress_lines"] - s["history_rows"]
            note = f" ({extra} more than this checkpoint's history)" if extra > 0 else ""
            L.append(f"progress     progress.jsonl has {s['progress_lines']} lines{note}")
    return "\n".join(L)


# ---------------------------------------------------------------------------------------------- plot
X_AXES = {
    "timesteps": ("TimestepsSoFar", "timesteps"),
    "time": ("TimeElapsed", "wall time [s]"),
    "generation": ("Generation", "generation"),
}
# Config tables that do not change what a run learns ([run]: seed and budget; checkpointing and
# checks): runs whose configs differ only there are seeds of one experiment.
GROUP_IGNORE_PREFIXES = ("run.", "checkpoint.", "checks.")


def _learning_config(rd: RunData, keys: set[str] | None = None) -> dict:
    return {k: v for k, v in flatten(rd.config).items()
            if not k.startswith(GROUP_IGNORE_PREFIXES) and (keys is None or k in keys)}


def _common_keys(rds: list[RunData]) -> set[str]:
    """Keys every run's config has (checkpoints from other esmpi versions may lack new keys)."""
    sets = [set(_learning_config(rd)) for rd in rds]
    return set.intersection(*sets) if sets else set()


def _strategy(rd: RunData) -> str:
    st = rd.config.get("strategy")
    return str(st.get("name", "openai_es")) if isinstance(st, dict) else "openai_es"


def group_runs(runs: list[RunData]) -> list[list[RunData]]:
    """Runs of one strategy whose configs are equal apart from the ``[run]`` table (seed, budget)
    and the checkpoint/checks tables, in order of first appearance. Keys missing from some of the
    configs of a strategy (other esmpi versions) are not compared; runs of different strategies
    (e.g. ES and the SGD baseline) never share a group."""
    keys = {name: _common_keys([rd for rd in runs if _strategy(rd) == name]) for name in {_strategy(rd) for rd in runs}}
    groups: dict[str, list[RunData]] = {}
    for rd in runs:
        name = _strategy(rd)
        groups.setdefault(name + json.dumps(_learning_config(rd, keys[name]), sort_keys=True, default=str), []).append(rd)
    return list(groups.values())


def _group_labels(groups: list[list[RunData]]) -> list[str]:
    keys = _common_keys([g[0] for g in groups])
    flats = [_learning_config(g[0], keys) for g in groups]
    differing = [k for k in sorted(keys) if len({json.dumps(f.get(k), default=str) for f in flats}) > 1]
    labels = []
    for g, f in zip(groups, flats):
        if len(g) == 1:
            labels.append(g[0].label)
            continue
        desc = ", ".join(f"{k}={f.get(k)}" for k in differing[:3]) or str(f.get("env.id", g[0].label))
        labels.append(f"{desc} (median of {len(g)} seeds, IQR)")
    return labels


def _xy(rd: RunData, xkey: str, ykey: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = rd.column(xkey), rd.column(ykey)
    ok = np.isfinite(x) & np.isfinite(y)
    return x[ok], y[ok]


def _band(members: list[RunData], xkey: str, ykey: str, points: int = 200):
    """Median and quartiles of the members' curves interpolated onto a common x grid (the x range
    all members cover; their union if they do not overlap). None if no member has data."""
    curves = [c for c in (_xy(rd, xkey, ykey) for rd in members) if c[0].size]
    if not curves:
        return None
    lo, hi = max(c[0][0] for c in curves), min(c[0][-1] for c in curves)
    if hi <= lo:
        lo, hi = min(c[0][0] for c in curves), max(c[0][-1] for c in curves)
    if xkey == "Generation":
        grid = np.arange(math.ceil(lo), math.floor(hi) + 1, dtype=np.float64)
    else:
        grid = np.linspace(lo, hi, points)
    if grid.size == 0:
        grid = np.array([lo])
    Y = np.array([np.interp(grid, x, y, left=np.nan, right=np.nan) for x, y in curves])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns at the union's edges
        q25, med, q75 = np.nanpercentile(Y, [25, 50, 75], axis=0)
    return grid, med, q25, q75


def plot_runs(runs: list[RunData], x: str | None = None, title: str | None = None):
    """Learning curves of one or more runs -> ``matplotlib.figure.Figure`` (no pyplot, no GUI).

    Return panels (``fig.axes[:-1]``), one per x axis (``x`` in ``X_AXES``, or all three): per run
    or seed group, EvalEpRewMean solid and EpRewMean dashed, i.e. two ``Line2D`` each; groups of
    several seeds draw medians with an interquartile band on the evaluation curve. The last panel
    (``fig.axes[-1]``) is the time split per generation: stacked areas for one run, stacked bars of
    the per-generation medians for several.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    if not runs:
        raise ValueError("plot_runs needs at least one run")
    xs = [x] if x else list(X_AXES)
    for k in xs:
        if k not in X_AXES:
            raise EsmpiError(f"--x {k!r}: choose one of {', '.join(X_AXES)}")
    groups = group_runs(runs)
    labels = _group_labels(groups)
    n = len(xs) + 1
    ncols = 2
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(6.4 * ncols, 4.2 * nrows), layout="constrained")
    axes = [fig.add_subplot(nrows, ncols, i + 1) for i in range(n)]
    for ax, xname in zip(axes, xs):
        xkey, xlabel = X_AXES[xname]
        for gi, (members, label) in enumerate(zip(groups, labels)):
            color = f"C{gi % 10}"
            for ykey, style in (("EvalEpRewMean", "-"), ("EpRewMean", "--")):
                if len(members) == 1:
                    cx, cy = _xy(members[0], xkey, ykey)
                else:
                    b = _band(members, xkey, ykey)
                    cx = cy = np.empty(0)
                    if b is not None:
                        cx, cy, q25, q75 = b
                        if style == "-":
                            ax.fill_between(cx, q25, q75, color=color, alpha=0.2, linewidth=0)
                if cx.size:  # the group's first line carries its label (EpRewMean only if no evaluation)
                    ax.plot(cx, cy, style, color=color, label=label, alpha=1.0 if style == "-" else 0.6)
                    label = None
        ax.set_xlabel(xlabel)
        ax.set_ylabel("return")
        ax.set_title(f"return vs {xlabel}", fontsize=10)
        ax.grid(alpha=0.3)
        if xname == "timesteps":
            ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 3))
        elif xname == "generation":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    handles, names = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, names, loc="outside lower center", ncols=min(len(handles), 2), fontsize=8,
                   title="solid: EvalEpRewMean (unperturbed theta), dashed: EpRewMean (population mean)",
                   title_fontsize=8)
    _time_panel(axes[len(xs)], runs)
    fig.suptitle(title or _default_title(runs), fontsize=11)
    return fig


def _default_title(runs: list[RunData]) -> str:
    envs = sorted({r.task for r in runs})
    return f"{', '.join(envs)}: {len(runs)} run(s)"


TIME_PARTS = (("TimeRollout", "rollout"), ("TimeComm", "comm"), ("TimeUpdate", "update"))


def _time_parts(rd: RunData) -> list[np.ndarray]:
    parts = [np.nan_to_num(rd.column(k)) for k, _ in TIME_PARTS]
    other = np.nan_to_num(rd.column("TimeElapsedThisIter")) - sum(parts)
    return parts + [np.clip(other, 0, None)]


def _time_panel(ax, runs: list[RunData]) -> None:
    from matplotlib.ticker import MaxNLocator

    names = [n for _, n in TIME_PARTS] + ["other"]
    colors = ["C0", "C1", "C2", "0.7"]
    if len(runs) == 1:
        rd = runs[0]
        ax.stackplot(rd.column("Generation"), *_time_parts(rd), labels=names, colors=colors)
        ax.set_xlabel("generation")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("seconds")
        ax.set_title(f"time per generation ({rd.label})", fontsize=10)
    else:
        y = np.arange(len(runs))
        left = np.zeros(len(runs))
        meds = np.array([[_median(p) for p in _time_parts(rd)] for rd in runs])
        meds = np.nan_to_num(meds)
        for i, (name, c) in enumerate(zip(names, colors)):
            ax.barh(y, meds[:, i], left=left, color=c, label=name)
            left += meds[:, i]
        ax.set_yticks(y, [rd.label for rd in runs], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("seconds (median over generations)")
        ax.set_title("time per generation", fontsize=10)
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)


def check_output_path(out: Path) -> None:
    """Refuse, in one line, an output file that cannot be written: a missing parent directory, a
    parent that is a file, a read-only file system, no permission, an existing directory."""
    out = Path(out)
    parent = out.parent
    anc = parent
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise EsmpiError(f"{out}: {anc} is not a directory")
    if anc != parent:
        raise EsmpiError(f"{out}: directory {parent} does not exist; create it first")
    if out.is_dir():
        raise EsmpiError(f"{out}: is a directory; give a file name")
    if os.statvfs(parent).f_flag & os.ST_RDONLY:
        raise EsmpiError(f"{out}: {parent} is on a read-only file system")
    if not os.access(parent, os.W_OK | os.X_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise EsmpiError(f"{out}: no permission to write there")


def write_error(out, e: OSError) -> EsmpiError:
    """An OSError met while writing ``out`` (disk full, permissions) as one line naming the file."""
    return EsmpiError(f"{out}: cannot write it: {e.strerror or e}")


def save_figure(fig, out: str | Path, dpi: int = 100) -> Path:
    out = Path(out)
    kinds = fig.canvas.get_supported_filetypes()
    if out.suffix.lower().lstrip(".") not in kinds:
        raise EsmpiError(f"{out}: unsupported image format {out.suffix or '(no extension)'!r}; use one of "
                         f"{', '.join('.' + k for k in sorted(kinds))}")
    check_output_path(out)
    try:
        fig.savefig(out, dpi=dpi)
    except OSError as e:
        raise write_error(out, e) from None
    return out


# ---------------------------------------------------------------------------------------------- export
def _csv_value(v) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "" if v is None or math.isnan(v) else repr(v)
    if isinstance(v, float) and v.is_integer() and abs(v) < 2**53:
        return str(int(v))
    return repr(v)


def export_csv(history: list[dict], out) -> int:
    """Write the history table as CSV (header = history keys; NaN as an empty field; integral
    values without '.0'; other floats with full precision). ``out``: a path or a text file.
    Returns the number of rows."""
    from .metrics import HISTORY_KEYS

    keys = list(history[0]) if history else list(HISTORY_KEYS)
    own = not hasattr(out, "write")
    if own:
        check_output_path(Path(out))
    try:
        f = open(out, "w", newline="") if own else out
        try:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(keys)
            for row in history:
                w.writerow([_csv_value(row.get(k)) for k in keys])
        finally:
            if own:
                f.close()
    except OSError as e:
        if not own or isinstance(e, BrokenPipeError):
            raise
        raise write_error(out, e) from None
    return len(history)


if __name__ == "__main__":  # python -m esmpi.analyze: the same subcommands as the `esmpi` command
    from esmpi.cli import main as _main

    sys.exit(_main(prog="python -m esmpi.analyze"))
