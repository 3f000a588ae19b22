"""ES vs a finite-difference gradient follower on two 2-D fitness landscapes of our own.

Lehman, Chen, Clune & Stanley (2017), "ES is more than just a traditional finite-difference
approximator", show that ES at a large sigma optimises the *smoothed* landscape (the expected
fitness of a Gaussian cloud around theta) and not the gradient at theta: it crosses a narrow gap of
low fitness that a gradient follower cannot, and it stalls where a path of high fitness narrows,
which a gradient follower (or ES at a small sigma) can still climb. Two landscapes reproduce this,
both maximised over theta = (x, y):

- ``gap``:     ``f = -0.25 (x - 2)^2 - 0.25 y^2 - 2 exp(-x^2 / (2 * 0.05^2))``: a bowl whose top (2, 0)
  is the global optimum, cut by a trench of width 0.05 across x = 0; coming from x < 0 a gradient
  follower stops at the trench's left wall (a local optimum at x ~ -0.15).
- ``path``:    ``f = x - 5 (1 - exp(-y^2 / (2 w(x)^2)))``, ``w(x) = exp(-x / 2)``: progress along x on a
  ridge around y = 0 whose width w(x) shrinks; stepping off costs up to 5.

Methods, with the same optimizer (``esmpi.optim.adam``, same stepsize) and the same budget of
4 evaluations per step: ES through ``esmpi.optimize`` (2 antithetic pairs per generation, centered
ranks; it also evaluates the unperturbed mean once per generation, for monitoring only) at a small
and a large sigma, and a central finite-difference gradient (``h = 1e-3``, 2 d = 4 evaluations).
Seed ``i`` draws the start point from ``rng(i, TOY_START)`` (the same for every method).

``python -m esmpi.toys --out DIR`` (``make toys``) runs the study and writes ``toys.json``,
``toys.md`` (the outcome table and a sweep of ES's sigma) and ``toys.png`` (trajectories over the
landscapes). The JSON holds the outcomes (not the paths), the seconds taken and the load average.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from .optim import adam, init_state

TOY_START = 1001        # seeding purpose of the start points (an analysis tag, outside the trainer's)
STEPS = 600             # generations of ES = steps of the FD follower
STEPSIZE = 0.02
SIGMAS = {"ES sigma 0.02": 0.02, "ES sigma 0.5": 0.5}
SWEEP = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5)   # is there one sigma that does both? (ES only, fewer seeds)
FD_H = 1e-3
ADAM = {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8}


def gap(theta) -> float:
    x, y = float(theta[0]), float(theta[1])
    return -0.25 * (x - 2) ** 2 - 0.25 * y * y - 2.0 * math.exp(-x * x / (2 * 0.05**2))


def path_width(x: float) -> float:
    return math.exp(-x / 2)


def path(theta) -> float:
    x, y = float(theta[0]), float(theta[1])
    return x - 5.0 * (1.0 - math.exp(-y * y / (2 * path_width(x) ** 2)))


# landscape -> (f, start box ((x lo, x hi), (y lo, y hi)), plot box, outcome name, outcome test on the final theta)
LANDSCAPES = {
    "gap": (gap, ((-2.0, -1.5), (-1.0, 1.0)), ((-2.5, 3.0), (-1.5, 1.5)), "crossed the gap (x > 0.15)",
            lambda th: th[0] > 0.15),
    "path": (path, ((-0.5, 0.0), (-0.2, 0.2)), ((-0.7, 12.0), (-1.2, 1.2)), "reached x > 4 (width < 0.14)",
             lambda th: th[0] > 4.0),
}


def start_point(landscape: str, seed: int) -> np.ndarray:
    from . import seeding

    box = LANDSCAPES[landscape][1]
    u = seeding.rng(seed, TOY_START).random(2)
    return np.array([lo + (hi - lo) * ui for (lo, hi), ui in zip(box, u)], np.float32)


def es_run(f, theta0, sigma: float, seed: int, steps: int = STEPS) -> np.ndarray:
    """ES through the black-box API; the (steps + 1, 2) path of the mean."""
    import esmpi

    trail = [np.array(theta0, np.float32)]
    esmpi.optimize(f, theta0, generations=steps, pairs=2, noise_stdev=sigma, stepsize=STEPSIZE, l2coeff=0.0,
                   seed=seed, noise_size=10_000, callback=lambda m: trail.append(m["theta"]))
    return np.array(trail)


def fd_run(f, theta0, steps: int = STEPS, h: float = FD_H) -> np.ndarray:
    """Central finite differences (2 d evaluations per step) followed with Adam; the path."""
    theta = np.array(theta0, np.float32)
    d = theta.size
    opt = init_state(d)
    trail = [theta.copy()]
    for _ in range(steps):
        g = np.empty(d, np.float32)
        for i in range(d):
            e = np.zeros(d, np.float64)
            e[i] = h
            g[i] = (f(theta + e) - f(theta - e)) / (2 * h)
        step, opt = adam(opt, -g, STEPSIZE, **ADAM)   # the optimizer descends: pass minus the ascent direction
        theta = (theta + step).astype(np.float32)
        trail.append(theta.copy())
    return np.array(trail)


def study(seeds: int = 20, steps: int = STEPS, sweep_seeds: int = 10) -> dict:
    """Every method on every landscape from ``seeds`` start points (paths and outcomes), then the
    ES success rate over the first ``sweep_seeds`` start points at every sigma of ``SWEEP`` (runs
    already made by the main study are reused: the same seed and sigma give the same bits)."""
    out = {"steps": steps, "seeds": seeds, "stepsize": STEPSIZE, "fd_h": FD_H, "landscapes": {},
           "sweep": {"seeds": sweep_seeds, "sigmas": list(SWEEP), "success": {}}}
    done = {}
    for name, (f, _, _, what, ok) in LANDSCAPES.items():
        runs = {}
        for method in [*SIGMAS, "finite differences"]:
            paths = []
            for s in range(seeds):
                th0 = start_point(name, s)
                paths.append(es_run(f, th0, SIGMAS[method], s, steps) if method in SIGMAS else fd_run(f, th0, steps))
                if method in SIGMAS:
                    done[name, SIGMAS[method], s] = paths[-1][-1]
            final = np.array([p[-1] for p in paths])
            runs[method] = {"success": int(sum(bool(ok(p)) for p in final)), "final_x": final[:, 0].tolist(),
                            "final_f": [f(p) for p in final], "paths": [p.tolist() for p in paths]}
        out["landscapes"][name] = {"outcome": what, "methods": runs}
        rates = []
        for sigma in SWEEP:
            finals = [done[name, sigma, s] if (name, sigma, s) in done else
                      es_run(f, start_point(name, s), sigma, s, steps)[-1] for s in range(sweep_seeds)]
            rates.append(int(sum(bool(ok(p)) for p in finals)))
        out["sweep"]["success"][name] = rates
    return out


def sweep_table(res: dict) -> str:
    sw = res["sweep"]
    names = list(sw["success"])
    lines = ["| ES sigma | " + " | ".join(f"{n}: {res['landscapes'][n]['outcome']}" for n in names) + " |",
             "|---|" + "---|" * len(names)]
    for k, sigma in enumerate(sw["sigmas"]):
        lines.append(f"| {sigma:g} | " + " | ".join(f"{sw['success'][n][k]}/{sw['seeds']}" for n in names) + " |")
    return "\n".join(lines)


def table(res: dict) -> str:
    n = res["seeds"]
    lines = ["| landscape | outcome | method | successes | median final x | median final f |",
             "|---|---|---|---|---|---|"]
    for name, L in res["landscapes"].items():
        for method, r in L["methods"].items():
            lines.append(f"| {name} | {L['outcome']} | {method} | {r['success']}/{n} | "
                         f"{np.median(r['final_x']):.2f} | {np.median(r['final_f']):.2f} |")
    return "\n".join(lines)


def figure(res: dict):
    """One row per landscape: contour + the paths of every seed, one column per method."""
    from matplotlib.figure import Figure

    names = list(res["landscapes"])
    methods = list(res["landscapes"][names[0]]["methods"])
    fig = Figure(figsize=(4.2 * len(methods), 3.4 * len(names)), layout="constrained")
    axes = fig.subplots(len(names), len(methods), squeeze=False)
    for row, name in enumerate(names):
        f, _, ((x0, x1), (y0, y1)), _, _ = LANDSCAPES[name]
        xs, ys = np.linspace(x0, x1, 300), np.linspace(y0, y1, 200)
        z = np.array([[f((x, y)) for x in xs] for y in ys])
        L = res["landscapes"][name]
        for col, method in enumerate(methods):
            ax = axes[row][col]
            ax.contourf(xs, ys, z, levels=30, cmap="viridis")
            for p in L["methods"][method]["paths"]:
                p = np.array(p)
                ax.plot(p[:, 0], p[:, 1], color="w", lw=0.7, alpha=0.8)
                ax.plot(p[0, 0], p[0, 1], "o", color="w", ms=2)
                ax.plot(p[-1, 0], p[-1, 1], "x", color="r", ms=4)
            r = L["methods"][method]
            ax.set_title(f"{name}: {method}: {r['success']}/{res['seeds']}", fontsize=9)
            ax.set_xlim(x0, x1)
            ax.set_ylim(y0, y1)
    fig.suptitle(f"paths of {res['seeds']} seeds, {res['steps']} steps of 4 evaluations each "
                 "(o start, x end; success = " + "; ".join(L["outcome"] for L in res["landscapes"].values()) + ")",
                 fontsize=9)
    return fig


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m esmpi.toys", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="directory for toys.json, toys.md and toys.png")
    ap.add_argument("--seeds", type=int, default=20, help="start points per method (default: 20)")
    ap.add_argument("--steps", type=int, default=STEPS, help=f"steps per run (default: {STEPS})")
    ap.add_argument("--sweep-seeds", type=int, default=10, help="start points per sigma of the sweep (default: 10)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if not out.is_dir():
        print(f"python -m esmpi.toys: error: --out {out}: no such directory", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    res = study(args.seeds, args.steps, args.sweep_seeds)
    res["seconds"] = time.perf_counter() - t0
    res["loadavg"] = open("/proc/loadavg").read().split()[:3] if Path("/proc/loadavg").exists() else []
    small = {**res, "landscapes": {n: {**L, "methods": {m: {k: v for k, v in r.items() if k != "paths"}
                                                         for m, r in L["methods"].items()}}
                                   for n, L in res["landscapes"].items()}}
    (out / "toys.json").write_text(json.dumps(small, indent=1))   # outcomes only: the paths are in the figure
    (out / "toys.md").write_text(table(res) + "\n\n" + sweep_table(res) + "\n")
    figure(res).savefig(out / "toys.png", dpi=90)
    print(table(res) + "\n\n" + sweep_table(res))
    print(f"wrote {out}/toys.json, toys.md, toys.png in {res['seconds']:.0f} s (load {' '.join(res['loadavg'])})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
