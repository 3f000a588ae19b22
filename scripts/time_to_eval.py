"""Issue 17's end-to-end figure: the default job's wall time to evaluation 4800 on 2 ranks, with the fast
MuJoCo step and with Gymnasium's step (``env.fast_step = true/false``), median over seeds.

    .venv/bin/python scripts/time_to_eval.py [--seeds 0,1,2] [--target 4800] [--max-seconds 1200] [--out DIR]

Each run is ``.venv/bin/mpiexec -n 2 .venv/bin/python -m esmpi.run --config jobs/default.toml`` with ``run.seed``,
``env.fast_step``, ``run.target_return`` (it stops once the trailing 5-generation mean of
EvalEpRewMean reaches the target, esmpi's own rule) and ``run.max_seconds`` as a safety cap. Runs
alternate fast/Gymnasium, switching which goes first each seed, so a change of machine load hits
both. The two paths are bitwise equal, so each seed takes the same generations either way: only the
wall time differs (the script checks that the timestep counts match). Costs about 1 CPU-hour at the
defaults on 2 cores; prints one JSON line per run (with the load average before and after) and a summary.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = Path(sys.executable)
MPIEXEC = PY.parent / "mpiexec"


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def first_crossing(progress: Path, target: float, window: int = 5) -> dict | None:
    """The first generation whose trailing ``window``-generation mean of EvalEpRewMean is >= target."""
    rows = [json.loads(line) for line in progress.read_text().splitlines() if line.strip()]
    ev = [r.get("EvalEpRewMean", float("nan")) for r in rows]
    for i in range(window - 1, len(rows)):
        m = statistics.fmean(ev[i - window + 1:i + 1])
        if not math.isnan(m) and m >= target:
            return {"generation": rows[i]["Generation"], "seconds": rows[i]["TimeElapsed"],
                    "timesteps": rows[i]["TimestepsSoFar"], "eval_mean": m}
    return None


def run_one(seed: int, fast: bool, target: float, max_seconds: float, out: Path) -> dict:
    run_dir = out / f"s{seed}-{'fast' if fast else 'gymnasium'}"
    cmd = [str(MPIEXEC), "-n", "2", str(PY), "-m", "esmpi.run", "--config", str(ROOT / "jobs/default.toml"),
           "--set", f"run.seed={seed}", "--set", f"env.fast_step={'true' if fast else 'false'}",
           "--set", f"run.target_return={target}", "--set", f"run.max_seconds={max_seconds}", "--out", str(run_dir)]
    load0, t0 = loadavg(), time.time()
    rc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, check=False).returncode
    rec = {"seed": seed, "fast_step": fast, "rc": rc, "wall_s": round(time.time() - t0, 1), "load_before": load0,
           "load_after": loadavg(), "run_dir": str(run_dir)}
    rec["crossing"] = first_crossing(run_dir / "progress.jsonl", target) if rc == 0 else None
    print(json.dumps(rec), flush=True)
    return rec


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--target", type=float, default=4800.0)
    ap.add_argument("--max-seconds", type=float, default=1200.0, help="safety cap per run")
    ap.add_argument("--out", default=f"/tmp/esmpi-time-to-eval-{int(time.time())}")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=False)
    recs = []
    for i, seed in enumerate(int(s) for s in a.seeds.split(",")):
        for fast in ((True, False) if i % 2 == 0 else (False, True)):
            recs.append(run_one(seed, fast, a.target, a.max_seconds, out))
    summary = {}
    for fast in (True, False):
        cross = [r["crossing"] for r in recs if r["fast_step"] is fast and r["crossing"]]
        summary["fast" if fast else "gymnasium"] = {
            "reached": len(cross), "median_seconds": statistics.median([c["seconds"] for c in cross]) if cross else None,
            "timesteps": [c["timesteps"] for c in cross]}
    f, g = summary["fast"], summary["gymnasium"]
    if f["median_seconds"] and g["median_seconds"]:
        summary["speedup"] = round(g["median_seconds"] / f["median_seconds"], 3)
    summary["same_timesteps"] = f["timesteps"] == g["timesteps"]   # bitwise-equal paths: same generations
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
