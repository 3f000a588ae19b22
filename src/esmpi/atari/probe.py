"""The VBN probe: do perturbed convnets "always take one specific action" without virtual batch norm?

Salimans et al. (2017, section 4.2) report that without VBN the perturbed networks of ES on Atari
"always took one specific action". This measures it on a run or a job file:

    python -m esmpi.atari.probe RUN_OR_CONFIG [-k 20] [--sigma S] [--frames 256] [--steps 500] [--init]

For a theta (the run's checkpoint, or with ``--init``/a .toml the config's initial theta), K
perturbations ``theta + sigma * eps_k`` (sigma: the run's es.noise_stdev, or ga.sigma for the GA;
``eps_k`` from ``rng(seed, PROBE, 0, k)``) are each evaluated twice, with VBN (the run's reference
batch, or one gathered as the run would) and without (the same theta: the layout is shared, the
shift is a bias). Per perturbed theta:

- frames: its argmax action on held-out observations (random play, ``address (PROBE, 1)``, never
  the reference batch): the number of distinct actions, the entropy of their histogram (bits), and
  the share of frames on which it acts as the unperturbed theta does (perturbations that change
  nothing give 100%: ES then sees only ties);
- play (``--steps N`` > 0): one episode of at most N agent steps from ``episode_seed(seed, PROBE, 2, k)``:
  distinct actions taken, their entropy, and the return of those N steps (not a whole game's).

Reported per (theta, VBN): the means over K, the share of thetas that take a single action, and how
many different actions are the most frequent one across the K thetas. Pure analysis: nothing is written.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from .. import seeding
from ..errors import EsmpiError


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum()) + 0.0


def _load(source: str, checkpoint: str | None, init: bool):
    """(config, theta, reference batch or None, label) from a run directory / checkpoint or a job file."""
    from ..config import load_config
    from ..objectives.atari import REF_KEY

    if source.endswith(".toml"):
        cfg = load_config(source)
        if cfg.objective.kind != "atari":
            raise EsmpiError(f"{source}: objective.kind = {cfg.objective.kind!r}: the probe needs an Atari job "
                             "(objective.kind = \"atari\")")
        return cfg, None, None, f"{Path(source).stem}: initial theta"
    from ..runs import load_run

    rd = load_run(source, checkpoint)
    cfg = rd.ck["config"]
    if cfg is None or cfg.objective.kind != "atari":
        raise EsmpiError(f"{source}: not an Atari run (objective.kind is not 'atari'); the probe needs one")
    label = f"{rd.label}: {'initial theta' if init else f'generation {rd.state.generation}'}"
    return cfg, None if init else rd.state.theta, (rd.state.extra or {}).get(REF_KEY), label


def _actions_on_frames(policy, frames: np.ndarray) -> np.ndarray:
    return np.array([policy(f) for f in frames], np.int64)


def _play(policy, env, seed: int, steps: int) -> tuple[np.ndarray, float]:
    obs, _ = env.reset(seed=seed)
    acts, ret = [], 0.0
    for _ in range(steps):
        a = policy(obs)
        acts.append(a)
        obs, r, terminated, truncated, _ = env.step(a)
        ret += float(r)
        if terminated or truncated:
            break
    return np.array(acts, np.int64), ret


def probe(source: str, k: int = 20, sigma: float | None = None, n_frames: int = 256, steps: int = 0,
          seed: int = 0, checkpoint: str | None = None, init: bool = False) -> dict:
    from ..objectives.atari import AtariObjective
    from ..policies.cnn import CNNPolicy, CNNSpec
    from . import refbatch
    from .settings import AtariSettings

    cfg, theta, ref, label = _load(source, checkpoint, init)
    s = AtariSettings.from_dict(cfg.atari)
    obj = AtariObjective(replace(s, vbn=False))              # the env; policies built below
    if theta is None:
        theta = obj.initial_theta(seeding.rng(cfg.run.seed, seeding.INIT_THETA))
    if sigma is None:
        sigma = cfg.ga.sigma if cfg.strategy.name == "ga" else cfg.es.noise_stdev
    if ref is None:   # a run without VBN: the batch the run would have gathered
        ref = refbatch.gather(obj.env, obj.n_actions, cfg.run.seed, s.ref_batch_size, s.ref_batch_prob)
    frames = refbatch.gather(obj.env, obj.n_actions, seed, n_frames, s.ref_batch_prob, (seeding.PROBE, 1))
    rows = []
    for vbn in (True, False):
        pol = CNNPolicy(CNNSpec(s.net, obj.n_actions, obj.obs_shape, vbn, s.vbn_eps))
        if vbn:
            pol.set_reference_batch(ref)
        if not pol.set_theta(theta):
            raise EsmpiError(f"{source}: theta gives non-finite VBN statistics")
        base = _actions_on_frames(pol, frames)               # the unperturbed theta's actions
        per = []
        for j in range(k):
            eps = seeding.rng(seed, seeding.PROBE, 0, j).standard_normal(theta.size, dtype=np.float32)
            if not pol.set_theta((theta + np.float32(sigma) * eps).astype(np.float32)):
                raise EsmpiError(f"{source}: perturbation {j} gives non-finite VBN statistics")
            a = _actions_on_frames(pol, frames)
            c = np.bincount(a, minlength=obj.n_actions)
            rec = {"frames_distinct": int((c > 0).sum()), "frames_entropy": _entropy(c), "frames_mode": int(c.argmax()),
                   "frames_agree": float(np.mean(a == base))}
            if steps:
                pa, ret = _play(pol, obj.env, seeding.episode_seed(seed, seeding.PROBE, 2, j), steps)
                pc = np.bincount(pa, minlength=obj.n_actions)
                rec |= {"play_distinct": int((pc > 0).sum()), "play_entropy": _entropy(pc), "play_return": ret,
                        "play_steps": int(pa.size)}
            per.append(rec)
        row = {"theta": label, "vbn": vbn, "k": k, "sigma": float(sigma), "n_actions": obj.n_actions,
               "frames": n_frames, "steps": steps,
               "frames_distinct_mean": float(np.mean([r["frames_distinct"] for r in per])),
               "frames_entropy_mean": float(np.mean([r["frames_entropy"] for r in per])),
               "frames_one_action": float(np.mean([r["frames_distinct"] == 1 for r in per])),
               "modes_distinct": len({r["frames_mode"] for r in per}),
               "frames_agree_mean": float(np.mean([r["frames_agree"] for r in per])), "per_theta": per}
        if steps:
            row |= {"play_distinct_mean": float(np.mean([r["play_distinct"] for r in per])),
                    "play_entropy_mean": float(np.mean([r["play_entropy"] for r in per])),
                    "play_one_action": float(np.mean([r["play_distinct"] == 1 for r in per])),
                    "play_return_mean": float(np.mean([r["play_return"] for r in per]))}
        rows.append(row)
    obj.close()
    return {"game": s.game, "net": s.net, "rows": rows}


HEADER = ("| theta | VBN | K | sigma | frames: distinct actions | entropy (bits) | one-action thetas | "
          "modal actions across K | same action as unperturbed | play: distinct actions | entropy (bits) | "
          "one-action thetas | return (capped) |")


def format_rows(res: dict, header: bool = True) -> str:
    L = [HEADER, "|" + "---|" * (HEADER.count("|") - 1)] if header else []
    for r in res["rows"]:
        play = (f"{r['play_distinct_mean']:.1f} | {r['play_entropy_mean']:.2f} | {r['play_one_action']:.0%} | "
                f"{r['play_return_mean']:.0f}") if r["steps"] else "- | - | - | -"
        L.append(f"| {res['game']} {r['theta']} | {'on' if r['vbn'] else 'off'} | {r['k']} | {r['sigma']:g} | "
                 f"{r['frames_distinct_mean']:.1f} of {r['n_actions']} | {r['frames_entropy_mean']:.2f} "
                 f"(max {math.log2(r['n_actions']):.2f}) | {r['frames_one_action']:.0%} | {r['modes_distinct']} | "
                 f"{r['frames_agree_mean']:.0%} | {play} |")
    return "\n".join(L)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m esmpi.atari.probe", description=__doc__.split("\n\n")[0])
    ap.add_argument("source", metavar="RUN_OR_CONFIG", help="Atari run directory, checkpoint .h5, or job .toml")
    ap.add_argument("--checkpoint", help="checkpoint name or path instead of the run's newest")
    ap.add_argument("--init", action="store_true", help="probe the run's initial theta instead of its checkpoint's")
    ap.add_argument("-k", type=int, default=20, help="perturbed thetas (default: 20)")
    ap.add_argument("--sigma", type=float, help="perturbation scale (default: es.noise_stdev, or ga.sigma)")
    ap.add_argument("--frames", type=int, default=256, help="held-out observations per theta (default: 256)")
    ap.add_argument("--steps", type=int, default=0, help="also play one episode of at most N steps per theta")
    ap.add_argument("--seed", type=int, default=0, help="probe seed: perturbations, frames, episodes (default: 0)")
    ap.add_argument("--no-header", action="store_true", help="table rows only (to append to another table)")
    ap.add_argument("--json", action="store_true", help="print every measurement as JSON")
    a = ap.parse_args(argv)
    try:
        if a.k < 1 or a.frames < 1 or a.steps < 0:
            raise EsmpiError("-k and --frames must be >= 1, --steps >= 0")
        res = probe(a.source, a.k, a.sigma, a.frames, a.steps, a.seed, a.checkpoint, a.init)
    except EsmpiError as e:
        print(f"esmpi.atari.probe: error: {e}", file=sys.stderr)
        return e.exit_code
    print(json.dumps(res, indent=1) if a.json else format_rows(res, not a.no_header))
    return 0


if __name__ == "__main__":
    sys.exit(main())
