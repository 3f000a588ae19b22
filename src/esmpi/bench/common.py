"""Shared machinery of the benchmark: interleaved repeats, load/CPU records, figures, report files.

Every timing is a ``Sample`` (wall seconds, CPU seconds of this process, 1-minute load average at
its start and end). ``interleave`` runs several variants A, B, ... in alternating order (ABBA...),
so a comparison is a median of per-repeat ratios measured side by side, not two runs minutes apart.

A ``Figure`` is one reported number: ``value``, ``unit``, ``target`` (``op`` one of ``>=``, ``<=``,
``==``), ``met`` (bool; ``None`` only for informational figures, which have ``target = None``) and
a ``note`` that says by how much a target is missed and why.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

SCHEMA = "esmpi-bench/1"
FIGURE_KEYS = ("id", "section", "name", "value", "unit", "target", "op", "met", "note", "repeats", "load", "cpu_wall")


def loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        return [math.nan] * 3


@dataclass
class Sample:
    wall: float
    cpu: float
    load0: float
    load1: float
    extra: dict = field(default_factory=dict)

    @property
    def cpu_wall(self) -> float:
        return self.cpu / self.wall if self.wall > 0 else math.nan


def timed(fn, *args, **kwargs) -> tuple[Sample, object]:
    l0 = os.getloadavg()[0]
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn(*args, **kwargs)
    t1, c1 = time.perf_counter(), time.process_time()
    s = Sample(t1 - t0, c1 - c0, l0, os.getloadavg()[0])
    if isinstance(out, dict):
        s.extra = out
    return s, out


def interleave(variants: dict, repeats: int, warmup: int = 1) -> dict[str, list[Sample]]:
    """Run every variant ``repeats`` times, alternating the order each repeat (A B, B A, A B, ...).

    A variant is a zero-argument callable; if it returns a dict, the dict is kept in ``Sample.extra``
    (e.g. the number of env steps done)."""
    names = list(variants)
    for _ in range(warmup):
        for n in names:
            variants[n]()
    out: dict[str, list[Sample]] = {n: [] for n in names}
    for r in range(repeats):
        order = names if r % 2 == 0 else names[::-1]
        for n in order:
            s, _ = timed(variants[n])
            out[n].append(s)
    return out


def median(xs) -> float:
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return float(statistics.median(xs)) if xs else math.nan


def load_summary(samples: list[Sample]) -> dict:
    loads = [s.load0 for s in samples] + [s.load1 for s in samples]
    return {"min": round(min(loads), 2), "median": round(median(loads), 2), "max": round(max(loads), 2)} if loads else {}


def cpu_wall_summary(samples: list[Sample]) -> dict:
    r = [s.cpu_wall for s in samples]
    return {"min": round(min(r), 3), "median": round(median(r), 3), "max": round(max(r), 3)} if r else {}


@dataclass
class Figure:
    id: str
    section: str
    name: str
    value: object
    unit: str
    target: object = None
    op: str | None = None
    met: bool | None = None
    note: str = ""
    repeats: int = 0
    load: dict = field(default_factory=dict)
    cpu_wall: dict = field(default_factory=dict)
    samples: list = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["value"] = _clean(d["value"])
        d["samples"] = [_clean(x) for x in d["samples"]]
        return d


def _clean(x):
    if isinstance(x, float):
        if math.isnan(x) or math.isinf(x):
            return None
        return float(f"{x:.6g}")
    return x


def check(value, op: str | None, target) -> bool | None:
    if op is None or target is None:
        return None
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    if op == ">=":
        return bool(value >= target)
    if op == "<=":
        return bool(value <= target)
    if op == "==":
        return bool(value == target)
    raise ValueError(op)


def figure(id: str, section: str, name: str, value, unit: str, *, target=None, op: str | None = None,
           why: str = "", samples: list[Sample] | None = None, raw: list | None = None, load=None, cpu_wall=None,
           info: str = "") -> Figure:
    """Build a figure; ``why`` explains a miss, ``info`` is always shown."""
    met = check(value, op, target)
    note = _margin_note(value, op, target, met)
    if met is False and why:
        note += f" Why: {why}"
    if info:
        note = (note + " " + info).strip()
    samples = samples or []
    return Figure(id, section, name, value, unit, target, op, met, note.strip(),
                  repeats=len(raw if raw is not None else samples),
                  load=load if load is not None else load_summary(samples),
                  cpu_wall=cpu_wall if cpu_wall is not None else cpu_wall_summary(samples),
                  samples=list(raw) if raw is not None else [s.wall for s in samples])


def _margin_note(value, op, target, met) -> str:
    if met is None:
        return "Informational (no target)."
    if op == "==":
        return "Met." if met else f"MISSED: got {value!r}, expected {target!r}."
    if not isinstance(value, (int, float)) or not target:
        return "Met." if met else "MISSED."
    rel = (value - target) / abs(target)
    if met:
        return f"Met ({abs(rel) * 100:.0f}% margin)."
    if op == ">=":
        return f"MISSED by {abs(rel) * 100:.0f}% ({_fmt(value)} vs {op} {_fmt(target)}; {target / value:.2f}x short)." \
            if value > 0 else f"MISSED ({_fmt(value)} vs {op} {_fmt(target)})."
    return f"MISSED by {abs(rel) * 100:.0f}% ({_fmt(value)} vs {op} {_fmt(target)}; {value / target:.2f}x over)."


def _fmt(x) -> str:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return repr(x)
    if x == 0:
        return "0"
    a = abs(x)
    if a >= 1e5 or a < 1e-3:
        return f"{x:.3g}"
    if a >= 100:
        return f"{x:,.0f}"
    return f"{x:.3g}"


# ---------------------------------------------------------------------------------------- report
def host_info() -> dict:
    info = {"python": sys.version.split()[0], "platform": platform.platform(), "ncpu": os.cpu_count()}
    try:
        info["affinity_cpus"] = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:  # pragma: no cover
        pass
    for mod in ("numpy", "numba", "mujoco", "gymnasium", "mpi4py"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:  # pragma: no cover
            info[mod] = None
    return info


class Report:
    def __init__(self, quick: bool, argv=None):
        self.t0 = time.perf_counter()
        self.data = {"schema": SCHEMA, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "quick": bool(quick),
                     "argv": list(argv or []), "host": host_info(), "load_start": loadavg(), "figures": [],
                     "sections": {}, "errors": []}
        self.extra_md: list[str] = []

    def add(self, *figs: Figure) -> None:
        self.data["figures"].extend(f.to_dict() for f in figs)

    def section(self, name: str, details: dict) -> None:
        self.data["sections"][name] = _jsonable(details)

    def error(self, section: str, message: str) -> None:
        self.data["errors"].append({"section": section, "message": message})

    def finish(self) -> dict:
        self.data["load_end"] = loadavg()
        # group by section ("1 rollout" < "2 update" < ...), keeping the order within a section
        self.data["figures"].sort(key=lambda f: f["section"].split()[0])
        self.data["duration_s"] = round(time.perf_counter() - self.t0, 1)
        figs = self.data["figures"]
        self.data["summary"] = {"targets": sum(f["met"] is not None for f in figs),
                                "met": sum(f["met"] is True for f in figs),
                                "missed": [f["id"] for f in figs if f["met"] is False]}
        return self.data

    def write(self, out_dir: Path, docs_copy: Path | None = None) -> tuple[Path, Path]:
        out_dir.mkdir(parents=True, exist_ok=True)
        data = self.finish()
        j = out_dir / "report.json"
        j.write_text(json.dumps(_jsonable(data), indent=1) + "\n")
        m = out_dir / "report.md"
        md = markdown(data) + "".join("\n" + x for x in self.extra_md)
        m.write_text(md)
        if docs_copy is not None:
            docs_copy.write_text(docs_header() + METHODS + "\n" + md.replace("# esmpi benchmark", "## Latest full run", 1))
        return j, m


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if hasattr(x, "item") and callable(x.item) and getattr(x, "ndim", 1) == 0:
        x = x.item()
    if hasattr(x, "tolist"):
        return _jsonable(x.tolist())
    if isinstance(x, float):
        return None if (math.isnan(x) or math.isinf(x)) else x
    return x


def validate(data: dict) -> list[str]:
    """Schema problems of a report (empty list = valid); used by the tests."""
    errs = []
    if data.get("schema") != SCHEMA:
        errs.append(f"schema is {data.get('schema')!r}")
    for k in ("created", "quick", "host", "load_start", "load_end", "figures", "sections", "summary"):
        if k not in data:
            errs.append(f"missing top-level key {k!r}")
    ids = set()
    for f in data.get("figures", []):
        for k in FIGURE_KEYS:
            if k not in f:
                errs.append(f"figure {f.get('id')}: missing {k!r}")
        if f.get("id") in ids:
            errs.append(f"duplicate figure id {f.get('id')}")
        ids.add(f.get("id"))
        if f.get("target") is None:
            if f.get("met") is not None:
                errs.append(f"figure {f['id']}: met without target")
        else:
            if not isinstance(f.get("met"), bool):
                errs.append(f"figure {f['id']}: met is not a bool")
            if f.get("op") not in (">=", "<=", "=="):
                errs.append(f"figure {f['id']}: bad op {f.get('op')!r}")
        if f.get("met") is False and "MISSED" not in f.get("note", ""):
            errs.append(f"figure {f['id']}: missed without a note")
    return errs


def failed_correctness(data: dict) -> list[str]:
    """Ids of correctness figures (bitwise checks: boolean figures whose target is True) that are not
    True. These gate: ``python -m esmpi.bench`` exits 1, whatever the timing figures say."""
    return [f["id"] for f in data.get("figures", [])
            if f.get("unit") == "bool" and f.get("target") is True and f.get("value") is not True]


def docs_header() -> str:
    return ("<!-- Generated by `make bench` (python -m esmpi.bench): do not edit by hand; the methods text "
            "lives in src/esmpi/bench/common.py (METHODS). -->\n")


METHODS = """# Benchmark (`make bench`)

`make bench` runs `python -m esmpi.bench` (under 10 minutes on 2 cores) and writes
`bench/out/report.json` (machine-readable) and `bench/out/report.md`, and refreshes this page.
`make bench-ci` runs `--quick` (25M table, d = 16k, 500 pairs, short rollouts; about 1 minute) and
leaves this page alone. `python -m esmpi.bench.scale` prints the scale model from the last report.
The bench imports and calls esmpi's own code (rollout, policy, noise, comm, train), so re-running it
measures whatever those modules contain now.

**Method.** Every figure is the median of several repeats. Every comparison is the median of
per-repeat ratios with the variants interleaved (A B, B A, ...) in the same process, so both sides
see the same machine state. Each figure records the 1-minute load average during its repeats and
the measuring process's CPU/wall ratio: the machine is shared, and a cpu/wall well below 1 means the
process was waiting for a CPU, which inflates wall times (ratios suffer less). A figure has `value`,
`unit`, `target`, `op`, `met` (bool; `null` only for informational figures, which have no target)
and a `note` that says by how much a target is missed and why.

| section | what | how |
|---|---|---|
| 1 rollout | esmpi's `EnvObjective.episode` (obs normalisation on, perturbed random-init policy; its default step path, the fast MuJoCo step of `esmpi.fastmujoco`) vs a bare Gymnasium `env.unwrapped.step` loop with a zero action, vs a bare Gymnasium-step loop replaying esmpi's recorded actions (bitwise the same states, so the physics cost is identical), vs a bare `mj_step` loop replaying them (the physics' limit), and vs itself on Gymnasium's step; HalfCheetah-v5 64-64 and Humanoid-v5 256-256 | same env, same reset seeds, fixed step count per repeat, the bare loops reset where esmpi's episodes ended (so all pay the same resets); the policy forward pass is timed alone to split the gap |
| 2 update | `NoiseTable.weighted_sum`, d = 160,000, 5,000 pairs, 250M table | GB/s = d x pairs x 4 bytes / s; bitwise vs `weighted_sum_reference` on the full problem; the previous one-pair-per-pass kernel side by side |
| 3 node-split | `esmpi.bench.update.node_split_weighted_sum` (prototype) and the trainer's `esmpi.noise.NodeSplitSum`, k = 1, 2 ranks | serial = rank 0 alone (others sleep in a non-blocking barrier), replicated = every rank the whole sum, split; interleaved; time of the slowest rank; bitwise vs serial on every rank |
| 4 memory | PSS of the noise table's mapping summed over the ranks, k = 1, 2, 4 | every rank touches every page, barrier, then reads `/proc/self/smaps` (PSS of the mappings holding the table) and `smaps_rollup` |
| 5 comm | collectives per generation in the real trainer (barrier inserted before each collective so waiting is not counted) and a micro-benchmark of `allgather_rows` x3 + `any_flags` with 5,000 pairs' rows; startup = `mpiexec` launch to the first generation with a 250M table | k = 1, 2, 4 (4 on 2 cores is oversubscribed: informational) |
| 6 utilisation | per-rank rollout and idle (waiting) fractions of a generation, Humanoid-v5, 2 ranks, 24 pairs | the trainer's evaluator and comm methods are wrapped per instance; static and (if present) 'steal' schedules alternate generation by generation |
| 7 scale | predicted Humanoid generation time and parallel efficiency at 18, 144, 720, 1,440 cores; the paper's budget | calibrated from sections 1, 2 and 5 (CPU-time costs, so other jobs' load does not inflate them); assumptions in `src/esmpi/bench/scale.py` (`ASSUMED`, printed under the tables) |
| 9 ga | Deep GA (`src/esmpi/bench/ga.py`): a child materialised from its cached parent vs a bare numpy `parent + sigma * eps` at d = 160k and 4M; genome bytes per generation and the compact-encoding ratio at d = 4M after 1,000 generations; GA / ES env steps per CPU second on HalfCheetah-v5 at equal episodes per generation; the parent cache's PSS per node at T = 20, d = 4M | interleaved batches of different noise offsets; the encoding from `GAState.encoding` of a state of that shape; whole generations of both trainers interleaved; one `mpiexec -n 2` launch touching the cache on both ranks |

Startup and memory are one launch per rank count (each launch fills a 1 GB table), not medians.
The scale model's inputs that are *assumed* rather than measured: 18 ranks per node (the paper's
1,440 cores on 80 machines), 80 GB/s node memory bandwidth, a 10 GbE (alpha 25 µs, 1 GB/s) or
InfiniBand (1.5 µs, 10 GB/s) interconnect, the reference's 10,000 episodes per generation, and the
episode-length distribution of a trained policy (90% reach 1000 steps, 10% fall between 100 and
1000). The 10-minute budget is converted to generations with trained-length episodes, an upper
bound on the time per generation (early generations are much shorter).
"""


def _val(f) -> str:
    v = f["value"]
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return _fmt(v)
    return str(v)


def _tgt(f) -> str:
    if f["target"] is None:
        return "–"
    t = f["target"]
    if isinstance(t, bool):
        return "identical" if t else "different"
    return f"{f['op']} {_fmt(t) if isinstance(t, (int, float)) else t}"


def markdown(data: dict) -> str:
    q = " (quick)" if data.get("quick") else ""
    h = data.get("host", {})
    lines = [f"# esmpi benchmark{q}", "",
             f"{data.get('created', '')} · {h.get('cpu', '?')} · {h.get('affinity_cpus', h.get('ncpu'))} CPUs · "
             f"load average (1/5/15 min) at start {data.get('load_start')} and end {data.get('load_end')} · "
             f"{data.get('duration_s', '?')} s", "",
             "Every figure is a median of repeats; comparisons are medians of per-repeat ratios measured side "
             "by side (interleaved). *load* is the 1-minute load average during the repeats (min–max); "
             "*cpu/wall* is the measuring process's CPU time over wall time (< 0.9: it was not running all "
             "the time, i.e. the machine was contended).", "",
             "| # | figure | value | unit | target | met | load | cpu/wall | note |",
             "|---|---|---|---|---|---|---|---|---|"]
    for f in data["figures"]:
        met = {True: "yes", False: "**NO**", None: "–"}[f["met"]]
        ld = f.get("load") or {}
        load = f"{ld.get('min')}–{ld.get('max')}" if ld else ""
        cw = f.get("cpu_wall") or {}
        cpu = f"{cw.get('median')}" if cw else ""
        note = f["note"].replace("|", "/").replace("\n", " ")
        lines.append(f"| {f['section']} | {f['name']} | {_val(f)} | {f['unit']} | {_tgt(f)} | {met} | {load} | "
                     f"{cpu} | {note} |")
    s = data.get("summary", {})
    lines += ["", f"Targets met: {s.get('met')}/{s.get('targets')}."
              + (f" Missed: {', '.join(s['missed'])}." if s.get("missed") else "")]
    if data.get("errors"):
        lines += ["", "Errors:"] + [f"- {e['section']}: {e['message']}" for e in data["errors"]]
    return "\n".join(lines) + "\n"
