"""Section 8: Atari rollout throughput (issue 15) and the CNN forward pass.

- **A (esmpi)**: ``AtariObjective.episode(theta, seed0 + i, cutoff)`` on Pong with the A3C net and
  VBN (a 128-frame reference batch; ``set_theta`` recomputes its statistics at the start of every
  episode, so that cost is included), theta = init + 0.02 * N(0, 1), episodes capped at
  ``atari_cutoff`` agent steps, until ``atari_steps`` steps are done.
- **B (bare)**: the same preprocessed env (gymnasium's AtariPreprocessing + FrameStackObservation
  on ale-py), ``reset(seed=seed0 + i)`` and uniformly random actions, episode i ending where A's
  episode i ended (or earlier at game over): both loops reset at the same points.

A and B alternate (ABBA...); the figure is the median of the per-repeat ratios of steps/s (target
>= 0.6). Also the forward pass alone per agent step for both nets (VBN on), over the frames of a
random-play episode in their order (so the first layer reuses the patches of the three frames
it saw one step earlier, as in a rollout), wall and CPU time, and ``set_theta`` (the VBN
statistics over the 128 reference frames) per net.
"""

from __future__ import annotations

import os
import time

import numpy as np

from .common import figure, interleave, load_summary, median

TARGET_RATIO = 0.6


def _objective(net: str, ref_batch_size: int = 128):
    from ..objectives.atari import AtariObjective

    return AtariObjective({"game": "pong", "net": net, "vbn": True, "ref_batch_size": ref_batch_size})


def _theta(obj, seed=0, sigma=0.02):
    rng = np.random.default_rng(seed)
    t = obj.initial_theta(rng)
    return (t + np.float32(sigma) * rng.standard_normal(t.size).astype(np.float32)).astype(np.float32)


def _esmpi(obj, theta, n_steps, cutoff, seed0, lengths):
    steps = eps = 0
    lengths.clear()
    while steps < n_steps:
        r = obj.episode(theta, seed0 + eps, min(cutoff, n_steps - steps))
        lengths.append(r.length)
        steps += r.length
        eps += 1
    return {"steps": steps, "episodes": eps}


def _bare(env, n_actions, n_steps, seed0, schedule):
    rng = np.random.default_rng(seed0)
    steps = eps = 0
    while steps < n_steps:
        env.reset(seed=seed0 + eps)
        lim = schedule[eps] if eps < len(schedule) else n_steps - steps
        t = 0
        while t < lim:
            _, _, term, trunc, _ = env.step(int(rng.integers(n_actions)))
            t += 1
            if term or trunc:
                break
        steps += t
        eps += 1
    return {"steps": steps, "episodes": eps}


def _per_call(fn, n):
    """(wall, CPU) seconds per call of ``fn(i)``, i = 0..n-1, after one warm-up call."""
    fn(0)
    t, c = time.perf_counter(), time.process_time()
    for i in range(n):
        fn(i)
    return (time.perf_counter() - t) / n, (time.process_time() - c) / n


def _play(obj, n):
    """n consecutive observations of a seeded random-play episode (the order a rollout sees them)."""
    rng = np.random.default_rng(0)
    obs, _ = obj.env.reset(seed=7)
    out = [obs]
    while len(out) < n:
        obs, _, term, trunc, _ = obj.env.step(int(rng.integers(obj.n_actions)))
        out.append(obs)
        if term or trunc:
            obs, _ = obj.env.reset(seed=8 + len(out))
            out.append(obs)
    return out[:n]


def run(prof: dict):
    n_steps, repeats, cutoff = prof["atari_steps"], prof["atari_repeats"], prof["atari_cutoff"]
    obj = _objective("a3c")
    state = obj.initial_objective_state(0)
    obj.set_objective_state(state)
    theta = _theta(obj)
    lengths: list[int] = []
    _esmpi(obj, theta, n_steps, cutoff, 1000, lengths)       # fixes the episode schedule (deterministic)
    schedule = list(lengths)
    samples = interleave({"esmpi": lambda: _esmpi(obj, theta, n_steps, cutoff, 1000, lengths),
                          "bare": lambda: _bare(obj.env, obj.n_actions, n_steps, 1000, schedule)}, repeats)
    sps = {k: [s.extra["steps"] / s.wall for s in v] for k, v in samples.items()}
    ratios = [a / b for a, b in zip(sps["esmpi"], sps["bare"])]
    figs = []
    ref = state["vbn_ref_batch"]
    frames = _play(obj, prof["atari_forward_calls"])
    details = {"sps": sps, "ratios": ratios, "episode_lengths": schedule}
    for net in ("a3c", "nature"):
        o = obj if net == "a3c" else _objective(net)
        if net != "a3c":
            o.set_objective_state(state)
        th = theta if net == "a3c" else _theta(o)
        pol = o.policy
        pol.set_theta(th)
        fwd, fwd_cpu, st, loads = [], [], [], []
        for _ in range(repeats):
            loads.append(os.getloadavg()[0])
            w, c = _per_call(lambda i: pol(frames[i % len(frames)]), len(frames))
            fwd.append(w * 1e6)
            fwd_cpu.append(c * 1e6)
            st.append(_per_call(lambda i: pol.set_theta(th), 2)[0] * 1e3)
        ld = {"min": round(min(loads), 2), "median": round(median(loads), 2), "max": round(max(loads), 2)}
        figs.append(figure(f"atari.forward.{net}", "8 atari", f"{net} net + VBN forward pass per agent step, "
                           f"4x84x84 uint8 frames of a random Pong episode in order ({o.num_params:,} params, "
                           f"{o.n_actions} actions)", median(fwd), "µs", raw=fwd, load=ld, cpu_wall={},
                           info=f"CPU time of this process {median(fwd_cpu):.0f} µs per step (on a contended "
                                f"machine the wall time also holds other processes' turns); set_theta (VBN statistics over {len(ref)} reference "
                                f"frames, once per episode): {median(st):.1f} ms."))
        details[f"forward_us_{net}"] = fwd
        details[f"forward_cpu_us_{net}"] = fwd_cpu
        details[f"set_theta_ms_{net}"] = st
        if o is not obj:
            o.close()
    all_s = samples["esmpi"] + samples["bare"]
    figs.insert(0, figure("atari.rollout.ratio", "8 atari", "Pong, A3C net + VBN: esmpi agent steps/s / bare preprocessed "
                   "env with random actions", median(ratios), "ratio", target=TARGET_RATIO, op=">=",
                   why=f"per step esmpi adds the A3C forward pass ({median(details['forward_cpu_us_a3c']):.0f} µs "
                       f"CPU) and the per-episode VBN pass over the reference batch "
                       f"({median(details['set_theta_ms_a3c']):.0f} ms per episode = "
                       f"{median(details['set_theta_ms_a3c']) * 1e3 / max(np.mean(schedule), 1):.0f} µs per step at "
                       f"this episode length) to the bare step ({1e6 / median(sps['bare']):.0f} µs wall).",
                   raw=ratios, load=load_summary(all_s), cpu_wall={},
                   info=f"esmpi {median(sps['esmpi']):,.0f} steps/s, bare {median(sps['bare']):,.0f} steps/s "
                        f"(median of {repeats}); {len(schedule)} episodes of mean length "
                        f"{np.mean(schedule):.0f} (cap {cutoff}) per repeat; VBN statistics recomputed per episode."))
    obj.close()
    return figs, details
