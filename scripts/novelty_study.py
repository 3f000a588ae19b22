"""The PointMaze study of docs/novelty.md: plain ES against NS-ES, NSR-ES and NSRA-ES over 5 seeds.

    .venv/bin/python scripts/novelty_study.py queue results/novelty_queue.jsonl      # 20 runs, 1 rank each
    .venv/bin/python scripts/paper_queue.py results/novelty_queue.jsonl --slots 2 --deadline 2026-12-03T06:00Z
    .venv/bin/python scripts/novelty_study.py report results/runs --out docs/results/novelty

``queue`` writes one paper_queue.py entry per (algorithm, seed), named ``pointmaze-<alg>-s<seed>``
(run directories results/runs/<name>). ``report`` reads those run directories and writes
``maze.png`` (the maze with the final position of every member of every novelty run and of every
ES run, replayed from the checkpoint, and the novelty runs' archives), ``returns.png`` (best measured return per generation: ES's
evaluation mean, the novelty runs' best member) and ``table.md`` (per algorithm: seeds that ever
reached the goal region, seeds whose deployable policy ends there, seeds whose policy ends in the trap).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

ALGS = ("es", "ns", "nsr", "nsra")
NAMES = {"es": "ES", "ns": "NS-ES", "nsr": "NSR-ES", "nsra": "NSRA-ES"}


def queue(path: Path, seeds: int) -> None:
    with open(path, "a") as f:
        for seed in range(seeds):
            for alg in ALGS:
                f.write(json.dumps({"name": f"pointmaze-{alg}-s{seed}", "np": 1,
                                    "args": ["--config", f"jobs/pointmaze_{alg}.toml", "--set", f"run.seed={seed}"]}) + "\n")
    print(f"appended {seeds * len(ALGS)} runs to {path}")


def final_positions(rd) -> list[np.ndarray]:
    """Final (x, y) of one deterministic episode of each member (novelty) or of theta (ES)."""
    from esmpi.replay import _objective, episode_seed

    obj = _objective(rd)
    s = rd.state.strategy
    thetas = s.thetas if hasattr(s, "thetas") else s.theta[None]
    return [obj.episode(th, episode_seed(0, 0), obj.max_episode_steps).bc for th in thetas]


def best_curve(rd) -> tuple[np.ndarray, np.ndarray]:
    """(timesteps, best measured return per generation): ES's evaluation mean, or the best member's."""
    x = rd.column("TimestepsSoFar")
    members = [k for k in (rd.history[0] if rd.history else {}) if k.startswith("NSReturn")]
    if members:
        y = np.max(np.stack([rd.column(k) for k in members]), axis=0)
    else:
        y = rd.column("EvalEpRewMean")
    return x, np.where(np.isfinite(y), y, np.nan)


def report(runs: Path, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from esmpi.analyze import load_run
    from esmpi.mazes import GOAL, GOAL_RADIUS, POINT_MAZE_XML, TRAP_BOX

    out.mkdir(parents=True, exist_ok=True)
    start_goal = math.dist((0.0, 0.0), GOAL)
    fig_m, axes = plt.subplots(1, 4, figsize=(16, 4.2), sharey=True)
    fig_r, ax_r = plt.subplots(figsize=(7, 4.5))
    rows = []
    walls = [tuple(float(v) for v in line.split('pos="')[1].split('"')[0].split()[:2] +
                   line.split('size="')[1].split('"')[0].split()[:2])
             for line in POINT_MAZE_XML.splitlines() if 'type="box"' in line]
    for ax, alg in zip(axes, ALGS):
        for x, y, hx, hy in walls:
            ax.add_patch(Rectangle((x - hx, y - hy), 2 * hx, 2 * hy, color="0.4"))
        ax.add_patch(plt.Circle(GOAL, GOAL_RADIUS, color="tab:green", alpha=0.3))
        ax.plot([0], [0], "k^")
        ever = final = trapped = n = 0
        for i, d in enumerate(sorted(runs.glob(f"pointmaze-{alg}-s*"))):
            if not (d / "latest.h5").exists():
                continue
            rd = load_run(d)
            pos = final_positions(rd)
            xs, ys = np.array(pos).T
            if hasattr(rd.state.strategy, "archive"):      # where the run has been: every archived BC
                ax.plot(*rd.state.strategy.archive.T, ".", ms=1.5, color=f"C{i}", alpha=0.25)
            ax.plot(xs, ys, "o", ms=5, alpha=0.8, color=f"C{i}", label=f"seed {d.name.rsplit('s', 1)[1]}")
            s = rd.state.strategy
            k = int(np.argmax(s.member_return)) if hasattr(s, "member_return") else 0
            bx, by = pos[k]
            tx, ty = best_curve(rd)
            ax_r.plot(tx, ty, color=f"C{ALGS.index(alg)}", alpha=0.6, lw=1, label=NAMES[alg] if i == 0 else None)
            n += 1
            ever += bool(np.nanmax(ty) >= start_goal - GOAL_RADIUS)
            final += bool(math.dist((bx, by), GOAL) < GOAL_RADIUS)
            trapped += bool(TRAP_BOX[0] < bx < TRAP_BOX[1] and TRAP_BOX[2] < by < TRAP_BOX[3])
        rows.append((NAMES[alg], n, ever, final, trapped))
        ax.set_title(NAMES[alg])
        ax.set_xlim(-3.3, 5.3)
        ax.set_ylim(-3.3, 3.3)
        ax.set_aspect("equal")
    axes[0].legend(fontsize=7, loc="lower left")
    fig_m.suptitle("PointMaze: final positions (large: every member of the novelty runs, theta of the ES runs; small: archive)")
    fig_m.savefig(out / "maze.png", dpi=100, bbox_inches="tight")
    ax_r.axhline(start_goal - GOAL_RADIUS, color="tab:green", ls="--", lw=1, label="goal region")
    ax_r.set_xlabel("timesteps")
    ax_r.set_ylabel("best measured return")
    ax_r.legend()
    fig_r.savefig(out / "returns.png", dpi=100, bbox_inches="tight")
    lines = ["| algorithm | runs | ever reached the goal region | deployable policy ends at the goal | ends in the trap |",
             "|---|---|---|---|---|"] + [f"| {a} | {n} | {e} | {f} | {t} |" for a, n, e, f, t in rows]
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("queue")
    q.add_argument("path", type=Path)
    q.add_argument("--seeds", type=int, default=5)
    r = sub.add_parser("report")
    r.add_argument("runs", type=Path)
    r.add_argument("--out", type=Path, default=ROOT / "docs/results/novelty")
    a = ap.parse_args()
    if a.cmd == "queue":
        queue(a.path, a.seeds)
    else:
        report(a.runs, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
