"""Run the issue-6 reproduction runs (docs/results.md) from a queue, at most SLOTS training processes
at a time, recording wall time and load average per run in results/logs/walltime.jsonl.

    .venv/bin/python scripts/paper_queue.py QUEUE.jsonl --slots 2 --deadline 2026-11-22T02:45Z
    PYTHONPATH=$PWD/src /work/main/.venv/bin/python scripts/paper_queue.py Q.jsonl --venv /work/main/.venv --nice 10 ...

QUEUE.jsonl: one JSON object per line, read again before every launch (append to it while running):
    {"name": "hopper-s0", "np": 1, "args": ["--config", "jobs/hopper.toml", "--set", "run.seed=0"]}
    {"name": "hopper-s0", "np": 1, "resume": true, "args": ["--set", "run.max_timesteps=40000000"]}
A name is run once per queue process (resume entries are keyed "name+resume#k"); a new run whose
directory already exists is skipped, so a queue can be started again on the same file. At the deadline nothing more is
launched and running ones get SIGTERM (they checkpoint and exit 75: continue with --resume).
Without --exit-when-done the queue waits for new lines until the deadline; with it, it returns as soon
as every line has run and nothing is running (to chain commands after it).
"""
from __future__ import annotations

import argparse, datetime as dt, json, os, signal, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def loadavg() -> list[float]:
    return [float(x) for x in open("/proc/loadavg").read().split()[:3]]


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def line_keys(entries: list[dict]) -> list[str]:
    """The key each queue line runs under: its name, or "name+resume#k" for the k-th resume line of a name."""
    counts: dict[str, int] = {}
    keys = []
    for e in entries:
        key = e["name"]
        if e.get("resume"):
            counts[key] = counts.get(key, 0) + 1
            key = f"{key}+resume#{counts[key]}"
        keys.append(key)
    return keys


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("queue")
    ap.add_argument("--slots", type=int, default=2, help="cores to use (a run with np=2 takes 2)")
    ap.add_argument("--deadline", required=True, help="UTC, e.g. 2026-11-22T02:45Z")
    ap.add_argument("--exit-when-done", action="store_true",
                    help="return when every queue line has run and nothing is running (default: wait for new lines)")
    ap.add_argument("--runs", default="results/runs")
    ap.add_argument("--log", default="results/logs/walltime.jsonl")
    ap.add_argument("--venv", default=str(ROOT / ".venv"),
                    help="the venv whose python and mpiexec run the jobs (a worktree without its own: the main "
                         "checkout's, with PYTHONPATH=<worktree>/src so the worktree's code runs)")
    ap.add_argument("--nice", type=int, default=0, help="run the jobs under nice -n NICE (0: not niced)")
    a = ap.parse_args()
    py, mpiexec = Path(a.venv) / "bin/python", Path(a.venv) / "bin/mpiexec"
    deadline = dt.datetime.fromisoformat(a.deadline.replace("Z", "+00:00"))
    runs, log = ROOT / a.runs, ROOT / a.log
    log.parent.mkdir(parents=True, exist_ok=True)
    started: set[str] = set()
    live: dict[str, dict] = {}
    stop_file = log.parent / "STOP"          # touch it to stop the queue early (like the deadline)
    terminated = False
    while True:
        # reap
        for key, r in list(live.items()):
            rc = r["proc"].poll()
            r["loads"].append(loadavg()[0])
            if rc is not None:
                end = time.time()
                rec = {k: v for k, v in r.items() if k not in ("proc", "loads", "fh")}
                rec.update(end_utc=now().isoformat(timespec="seconds"), wall_s=round(end - r["t0"], 1), rc=rc,
                           loadavg_end=loadavg(), loadavg_mean_sampled=round(sum(r["loads"]) / len(r["loads"]), 2))
                rec.pop("t0")
                with open(log, "a") as f:
                    f.write(json.dumps(rec) + "\n")
                r["fh"].close()
                print(f"[queue] {key} rc={rc} wall={rec['wall_s']}s", flush=True)
                del live[key]
        past = now() >= deadline or stop_file.exists()
        if past and not terminated:
            for key, r in live.items():
                print(f"[queue] deadline: SIGTERM {key}", flush=True)
                os.killpg(r["proc"].pid, signal.SIGTERM)
            terminated = True
        if past and not live:
            return 0
        used = sum(r["np"] for r in live.values())
        if not past:
            entries = [json.loads(l) for l in open(a.queue) if l.strip() and not l.startswith("#")]
            keys = line_keys(entries)
            for e, key in zip(entries, keys):
                if key in started:
                    continue
                # a resume waits for the run itself to finish
                if e.get("resume") and any(k.split("+")[0] == e["name"] for k in live):
                    continue
                n = int(e.get("np", 1))
                if used + n > a.slots:
                    break  # keep queue order
                out = runs / e["name"]
                if not e.get("resume") and out.exists():   # a queue started again: that run is done or resumable
                    started.add(key)
                    print(f"[queue] skip {key}: {out} exists (add a resume entry to continue it)", flush=True)
                    continue
                if e.get("resume"):
                    cmd = ["--resume", str(out), *e.get("args", [])]
                else:
                    cmd = [*e["args"], "--out", str(out)]
                cmd = [str(mpiexec), "-n", str(n), str(py), "-m", "esmpi.run", "--quiet", *cmd]
                if a.nice:
                    cmd = ["nice", "-n", str(a.nice), *cmd]
                fh = open(log.parent / f"{key.replace('+', '_').replace('#', '')}.log", "a")   # a later queue may resume it again
                proc = subprocess.Popen(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
                started.add(key)
                live[key] = dict(name=e["name"], key=key, np=n, cmd=" ".join(cmd[cmd.index("-m"):]),
                                 start_utc=now().isoformat(timespec="seconds"), loadavg_start=loadavg(),
                                 t0=time.time(), proc=proc, loads=[], fh=fh)
                used += n
                print(f"[queue] start {key} (np={n})", flush=True)
            if a.exit_when_done and not live and all(k in started for k in keys):
                print("[queue] every line has run", flush=True)
                return 0
        time.sleep(5)


if __name__ == "__main__":
    sys.exit(main())
