"""Section 1: rollout throughput of esmpi's own rollout vs a bare ``env.unwrapped.step`` loop and vs the physics.

Both loops run the same env instance for a fixed number of steps, start every episode with
``reset(seed=seed0 + i)`` (same seeds, same order), end an episode on termination, truncation or
the env's time limit (counted by the loop), and count the steps actually done. The bare loop also
ends its episode i at the length esmpi's episode i had (esmpi is deterministic for a fixed theta and
seed, so a pre-pass records them): both loops reset at the same points, and a Humanoid episode that
falls after 20 steps costs both one reset.

- **A (esmpi)**: ``EnvObjective.episode(theta, seed, cutoff)`` with a 256-256 (Humanoid) or 64-64
  (HalfCheetah) tanh policy, observation normalisation on (``set_obs_norm`` with the mean/std of
  observations from a short bare rollout, std floored at 0.1), theta = normc init + 0.02 * N(0, 1)
  (a perturbed random policy).
  esmpi steps the env with its default step path: ``esmpi.fastmujoco``'s direct step for these tasks
  (bitwise Gymnasium's; ``env.fast_step``).
- **AG (esmpi, Gymnasium's step)**: A with the env's step swapped for Gymnasium's (the path before the
  fast step, and with ``env.fast_step = false``).
- **B (bare)**: Gymnasium's ``env.unwrapped.step(a)`` with a constant zero action (the random policy's outputs
  are ~1e-2, so the dynamics are comparable; mean episode lengths of both are reported and are
  equal unless the zero-action humanoid falls earlier).
- **R (replay)**: the bare loop replaying the exact actions esmpi's policy produced (recorded in the
  pre-pass). The env is deterministic, so R visits bitwise the same states as A: A/R isolates
  esmpi's own per-step cost (policy, normalisation, bookkeeping) from the physics, which differs
  between a moving policy and a constant action (contacts change the cost of ``mj_step``).
- **RP (replay + policy)**: R plus a policy call per step whose output is ignored: the policy's
  cost in situ (its weights and MuJoCo's data compete for the caches), so A - RP is the loop's own
  bookkeeping.
- **P (policy)**: the policy forward pass alone on recorded observations (hot caches), µs per call.
- **RF (replay, fast step)**: R with esmpi's fast step instead of Gymnasium's (the step's own cost).
- **M (physics)**: the physics' limit: ``data.ctrl[:] = a; mujoco.mj_step(model, data, frame_skip)``
  replaying esmpi's actions (bitwise the same states; resets through Gymnasium at the same points), no
  observation, reward or termination at all.

Targets: A/B >= 1.15 and A/R >= 1.15 (the fast step takes back Gymnasium's Python around the physics),
A/M >= 0.90 (esmpi within 10% of the physics alone, policy included).

Also returns calibration data for the scale model: Humanoid episode lengths of the perturbed
random policy, µs per step in long episodes (``terminate_when_unhealthy=False``: 1000-step episodes),
reset cost and the per-episode perturbation cost (``theta +- sigma * eps`` for d params).
"""

from __future__ import annotations

import numpy as np

from .common import figure, interleave, median

ENVS = {  # env id -> (hidden, steps per repeat (full), steps per repeat (quick))
    "HalfCheetah-v5": ((64, 64), 20_000, 5_000),
    "Humanoid-v5": ((256, 256), 4_000, 1_200),
}
TARGET_RATIO = 1.15      # esmpi (fast step) / bare Gymnasium step
TARGET_PHYSICS = 0.90    # esmpi / bare mj_step loop


def make_objective(env_id: str, hidden, env_kwargs=None):
    from ..config import config_from_dict
    from ..objectives.gym import EnvObjective

    cfg = config_from_dict({"env": {"id": env_id, "kwargs": dict(env_kwargs or {})},
                            "policy": {"hidden": list(hidden)}, "run": {"seed": 0}}, "<bench>")
    return EnvObjective(cfg)


def perturbed_theta(obj, seed: int = 0, sigma: float = 0.02) -> np.ndarray:
    rng = np.random.default_rng(seed)
    theta = obj.initial_theta(rng)
    return (theta + np.float32(sigma) * rng.standard_normal(theta.size).astype(np.float32)).astype(np.float32)


def bare_steps(env, action, n_steps: int, seed0: int, cutoff: int, collect_obs: list | None = None,
               schedule: list | None = None, actions: list | None = None, policy=None, step=None) -> dict:
    """Bare loop; ``schedule[i]`` (optional) caps episode i at the length esmpi's episode i had, so both
    loops reset at the same points (an episode still ends early if the bare env terminates first).
    ``actions`` (optional): replay these per-step actions instead of the constant ``action``.
    ``policy`` (optional): also call ``policy(obs)`` before each step and ignore its output (the
    policy's cost in situ, with the physics' working set competing for the caches).
    ``step`` (optional): the step function; default Gymnasium's own ``env.unwrapped.step``."""
    step, reset = step or env.gym_env.unwrapped.step, env.reset
    steps = eps = 0
    while steps < n_steps:
        obs, _ = reset(seed=seed0 + eps)
        lim = min(cutoff, n_steps - steps)
        if schedule is not None and eps < len(schedule):
            lim = min(lim, schedule[eps])
        t = 0
        while True:
            if policy is not None:
                policy(obs)
            obs, _, term, trunc, _ = step(action if actions is None else actions[steps + t])
            t += 1
            if collect_obs is not None:
                collect_obs.append(obs.copy())   # the fast step's obs is a buffer the next step overwrites
            if term or trunc or t >= lim:
                break
        steps += t
        eps += 1
    return {"steps": steps, "episodes": eps}


def physics_steps(env, n_steps: int, seed0: int, schedule: list, actions: list) -> dict:
    """The bare physics: ``ctrl[:] = a; mj_step(model, data, frame_skip)`` replaying ``actions``, episode i
    ``schedule[i]`` steps long, each from Gymnasium's ``reset(seed=seed0 + i)``."""
    import mujoco

    u = env.gym_env.unwrapped
    m, d, fs, ctrl, mj_step, reset = u.model, u.data, u.frame_skip, u.data.ctrl, mujoco.mj_step, env.reset
    steps = eps = 0
    while steps < n_steps:
        reset(seed=seed0 + eps)
        lim = min(schedule[eps] if eps < len(schedule) else n_steps, n_steps - steps)
        for a in actions[steps:steps + lim]:
            ctrl[:] = a
            mj_step(m, d, fs)
        steps += lim
        eps += 1
    return {"steps": steps, "episodes": eps}


def esmpi_steps(obj, theta, n_steps: int, seed0: int, cutoff: int, lengths: list | None = None) -> dict:
    """esmpi's rollout for ``n_steps`` steps; appends every episode's length to ``lengths``."""
    steps = eps = 0
    while steps < n_steps:
        lim = min(cutoff, n_steps - steps)
        r = obj.episode(theta, seed0 + eps, lim)
        steps += r.length
        eps += 1
        if lengths is not None:
            lengths.append(r.length)
    return {"steps": steps, "episodes": eps}


def record_actions(obj, run) -> list:
    """Run ``run()`` (esmpi episodes on ``obj``) and return the actions it sent to the env, in order
    (the env's ``step`` is wrapped on this instance only for the duration)."""
    env = obj.env
    orig = env.step
    out: list = []

    def step(a):
        out.append(np.array(a, copy=True))
        return orig(a)

    env.step = step
    try:
        run()
    finally:
        env.step = orig
    return out


def episode_length_sample(obj, n_episodes: int, sigma: float = 0.02, seed: int = 7) -> list[int]:
    """Lengths of ``n_episodes`` complete episodes, each with its own perturbation of the random-init
    theta (what a generation of a fresh run sees)."""
    rng = np.random.default_rng(seed)
    theta0 = obj.initial_theta(rng)
    out = []
    for i in range(n_episodes):
        theta = (theta0 + np.float32(sigma) * rng.standard_normal(theta0.size).astype(np.float32)).astype(np.float32)
        out.append(int(obj.episode(theta, 50_000 + i, obj.max_episode_steps).length))
    return out


def obs_norm_from(obs_list, floor: float = 0.1):
    o = np.asarray(obs_list, dtype=np.float64)
    mean = o.mean(axis=0)
    std = np.maximum(o.std(axis=0), floor)
    return mean.astype(np.float32), std.astype(np.float32)


def bench_env(env_id: str, hidden, n_steps: int, repeats: int, seed0: int = 1000, n_lengths: int = 0) -> dict:
    obj = make_objective(env_id, hidden)
    env = obj.env
    theta = perturbed_theta(obj)
    cutoff = obj.max_episode_steps
    zero = np.zeros(env.action.dim, dtype=np.float32)
    # non-trivial observation normalisation from a short bare rollout
    obs_rec: list = []
    bare_steps(env, zero, min(2000, n_steps), seed0 + 10_000, cutoff, collect_obs=obs_rec)
    mean, std = obs_norm_from(obs_rec)
    obj.set_obs_norm(mean, std)
    obs_arr = np.asarray(obs_rec[:1000])
    obj.policy.set_theta(theta)
    schedule: list = []   # esmpi's episode lengths (deterministic: same theta, same seeds)
    actions = record_actions(obj, lambda: esmpi_steps(obj, theta, n_steps, seed0, cutoff, schedule))

    def policy_calls():
        p = obj.policy
        for o in obs_arr:
            p(o)
        return {"calls": len(obs_arr)}

    gym_step, fast_step = env.gym_env.unwrapped.step, env.step

    def esmpi_gymnasium():
        env.step = gym_step
        try:
            return esmpi_steps(obj, theta, n_steps, seed0, cutoff)
        finally:
            env.step = fast_step

    variants = {
        "esmpi": lambda: esmpi_steps(obj, theta, n_steps, seed0, cutoff),
        "esmpi_gym": esmpi_gymnasium,
        "bare": lambda: bare_steps(env, zero, n_steps, seed0, cutoff, schedule=schedule),
        "replay": lambda: bare_steps(env, zero, n_steps, seed0, cutoff, schedule=schedule, actions=actions),
        "replay_policy": lambda: bare_steps(env, zero, n_steps, seed0, cutoff, schedule=schedule, actions=actions,
                                            policy=obj.policy),
        "policy": policy_calls,
        "fast_replay": lambda: bare_steps(env, zero, n_steps, seed0, cutoff, schedule=schedule, actions=actions,
                                          step=fast_step),
        "physics": lambda: physics_steps(env, n_steps, seed0, schedule, actions),
    }
    res = interleave(variants, repeats, warmup=1)
    rate = {k: [s.extra["steps"] / s.wall for s in res[k]]
            for k in ("esmpi", "esmpi_gym", "bare", "replay", "fast_replay", "physics")}
    cpu_us = {k: [s.cpu / s.extra["steps"] * 1e6 for s in res[k]]
              for k in ("esmpi", "esmpi_gym", "bare", "replay", "fast_replay", "physics")}

    def paired(a, b, cpu=False):   # per-repeat ratios of steps/s (interleaved neighbours), by wall or CPU time
        return [y / x for x, y in zip(cpu_us[a], cpu_us[b])] if cpu else [x / y for x, y in zip(rate[a], rate[b])]

    ratios = [a / b for a, b in zip(rate["esmpi"], rate["bare"])]
    ratios_replay = [a / b for a, b in zip(rate["esmpi"], rate["replay"])]
    ratios_replay_cpu = [(b.cpu / b.extra["steps"]) / (a.cpu / a.extra["steps"])
                         for a, b in zip(res["esmpi"], res["replay"])]
    us_policy = [s.wall / s.extra["calls"] * 1e6 for s in res["policy"]]
    us_a = [1e6 / r for r in rate["esmpi"]]
    us_a_cpu = [s.cpu / s.extra["steps"] * 1e6 for s in res["esmpi"]]
    us_b_cpu = [s.cpu / s.extra["steps"] * 1e6 for s in res["bare"]]
    us_r_cpu = [s.cpu / s.extra["steps"] * 1e6 for s in res["replay"]]
    us_policy_cpu = [s.cpu / s.extra["calls"] * 1e6 for s in res["policy"]]
    us_rp_cpu = [s.cpu / s.extra["steps"] * 1e6 for s in res["replay_policy"]]
    ratios_cpu = [(b.cpu / b.extra["steps"]) / (a.cpu / a.extra["steps"]) for a, b in zip(res["esmpi"], res["bare"])]
    us_b = [1e6 / r for r in rate["bare"]]
    gap = median([a - b for a, b in zip(us_a, us_b)])
    ep_len = {k: median([s.extra["steps"] / s.extra["episodes"] for s in res[k]]) for k in ("esmpi", "bare")}
    lengths = episode_length_sample(obj, n_lengths) if n_lengths else []
    obj.close()
    extra = {"step_path": env.step_path, "step_note": env.step_note,
             "ratios_physics": paired("esmpi", "physics"), "ratios_fast_step_physics": paired("fast_replay", "physics"),
             "ratios_fast_vs_gym": paired("esmpi", "esmpi_gym"),
             "ratio_physics": median(paired("esmpi", "physics")),
             "ratio_physics_cpu_time": median(paired("esmpi", "physics", cpu=True)),
             "ratio_fast_step_physics": median(paired("fast_replay", "physics")),
             "ratio_fast_step_physics_cpu_time": median(paired("fast_replay", "physics", cpu=True)),
             "ratio_fast_vs_gym": median(paired("esmpi", "esmpi_gym")),
             "ratio_fast_vs_gym_cpu_time": median(paired("esmpi", "esmpi_gym", cpu=True)),
             "ratio_gym_vs_bare": median(paired("esmpi_gym", "bare")),
             "steps_per_s": {k: median(v) for k, v in rate.items()},
             "cpu_us_per_step": {k: median(v) for k, v in cpu_us.items()}}
    return extra | {"env": env_id, "hidden": list(hidden), "d": int(theta.size), "steps_per_repeat": n_steps,
            "repeats": repeats, "samples": res, "rate": rate, "ratios": ratios,
            "ratio": median(ratios), "esmpi_steps_per_s": median(rate["esmpi"]),
            "cpu_us": {"esmpi": median(us_a_cpu), "bare": median(us_b_cpu), "replay": median(us_r_cpu),
                       "replay_policy": median(us_rp_cpu), "policy": median(us_policy_cpu)},
            "ratios_replay": ratios_replay, "ratio_replay": median(ratios_replay),
            "ratio_replay_cpu_time": median(ratios_replay_cpu), "replay_steps_per_s": median(rate["replay"]),
            "replay_episode_length": median([s.extra["steps"] / s.extra["episodes"] for s in res["replay"]]),
            "bare_steps_per_s": median(rate["bare"]), "us_per_step_esmpi": median(us_a),
            "us_per_step_bare": median(us_b), "us_per_step_esmpi_cpu": median(us_a_cpu),
            "ratio_cpu_time": median(ratios_cpu), "us_policy_call": median(us_policy), "us_gap": gap,
            "us_loop_overhead": gap - median(us_policy), "mean_episode_length": ep_len,
            "episode_lengths": lengths}


def long_episode_cost(n_steps: int, repeats: int) -> dict:
    """Humanoid-v5 that never terminates (lying on the floor: contact-heavy, an upper bound on the
    per-step cost of 1000-step episodes), esmpi rollout, µs per step."""
    obj = make_objective("Humanoid-v5", (256, 256), {"terminate_when_unhealthy": False})
    theta = perturbed_theta(obj)
    res = interleave({"esmpi": lambda: esmpi_steps(obj, theta, n_steps, 5000, obj.max_episode_steps)}, repeats, 0)
    obj.close()
    return {"us_per_step": median([s.wall / s.extra["steps"] * 1e6 for s in res["esmpi"]]),
            "us_per_step_cpu": median([s.cpu / s.extra["steps"] * 1e6 for s in res["esmpi"]]),
            "samples": res["esmpi"]}


def episode_overheads(d: int, repeats: int = 3, table_size: int = 20_000_000) -> dict:
    """µs per Humanoid reset, and per antithetic pair's perturbation work (scale eps from a random table
    offset, theta + and -; what BlockEvaluator.pairs does per pair) for d params."""
    import time

    obj = make_objective("Humanoid-v5", (256, 256))
    env = obj.env
    t = []
    for r in range(repeats):
        t0 = time.perf_counter()
        for i in range(50):
            env.reset(seed=i)
        t.append((time.perf_counter() - t0) / 50 * 1e6)
    obj.close()
    table = np.random.default_rng(0).standard_normal(max(table_size, 2 * d), dtype=np.float32)
    theta = np.zeros(d, np.float32)
    scaled, pert = np.empty(d, np.float32), np.empty(d, np.float32)
    offs = np.random.default_rng(1).integers(0, table.size - d, 200)
    tp = []
    for r in range(repeats):
        t0 = time.perf_counter()
        for o in offs:
            np.multiply(table[o:o + d], np.float32(0.02), out=scaled)
            np.add(theta, scaled, out=pert)
            np.subtract(theta, scaled, out=pert)
        tp.append((time.perf_counter() - t0) / offs.size * 1e6)
    return {"us_reset": median(t), "us_perturb_pair": median(tp), "d": d}


def run(prof: dict) -> tuple[list, dict]:
    """Section 1 at the sizes of a profile (see ``profiles.py``)."""
    reps = prof["rollout_repeats"]
    figs, details = [], {}
    for env_id, (hidden, _, _) in ENVS.items():
        n_len = prof["n_lengths"] if env_id.startswith("Humanoid") else 0
        r = bench_env(env_id, hidden, prof["rollout_steps"][env_id], reps, n_lengths=n_len)
        short = env_id.split("-")[0].lower()
        samples = r["samples"]["esmpi"] + r["samples"]["bare"]
        c = r["cpu_us"]
        why = (f"CPU µs per step: esmpi {c['esmpi']:.1f}; bare (zero action) {c['bare']:.1f}; bare replaying esmpi's "
               f"actions {c['replay']:.1f}; the same + a policy call per step {c['replay_policy']:.1f}; the policy "
               f"forward alone (hot caches) {c['policy']:.1f} µs/call (obs norm + {len(hidden)}x{hidden[0]} MLP). So "
               f"{c['replay'] - c['bare']:+.1f} µs/step come from the physics of a moving vs a still body, "
               f"{c['replay_policy'] - c['replay']:+.1f} from the policy in situ (cold caches: its weights and the "
               f"physics' data evict each other) and {c['esmpi'] - c['replay_policy']:+.1f} from esmpi's loop "
               "(medians of differences of noisy numbers).")
        info = (f"esmpi {r['esmpi_steps_per_s']:,.0f} vs bare {r['bare_steps_per_s']:,.0f} steps/s; "
                f"ratio by CPU time {r['ratio_cpu_time']:.3f}; "
                f"mean episode length {r['mean_episode_length']['esmpi']:.0f} (esmpi) vs "
                f"{r['mean_episode_length']['bare']:.0f} (bare); d={r['d']}.")
        figs.append(figure(f"rollout.{short}.ratio", "1 rollout", f"{env_id} {hidden[0]}-{hidden[1]}: esmpi / bare Gymnasium-step "
                           "steps/s", r["ratio"], "ratio", target=TARGET_RATIO, op=">=", why=why,
                           samples=samples, raw=r["ratios"], info=info))
        figs.append(figure(f"rollout.{short}.ratio_replay", "1 rollout", f"{env_id}: esmpi / bare Gymnasium-step loop replaying "
                           "esmpi's actions (same states)", r["ratio_replay"], "ratio", target=TARGET_RATIO, op=">=",
                           why=f"esmpi's own per-step cost (CPU): {c['esmpi'] - c['replay']:.1f} µs on a "
                               f"{c['replay']:.1f} µs step: the policy in situ {c['replay_policy'] - c['replay']:.1f} "
                               f"µs (hot-cache forward {c['policy']:.1f}), the loop {c['esmpi'] - c['replay_policy']:.1f}.",
                           samples=r["samples"]["esmpi"] + r["samples"]["replay"], raw=r["ratios_replay"],
                           info=f"ratio by CPU time {r['ratio_replay_cpu_time']:.3f}; replay "
                                f"{r['replay_steps_per_s']:,.0f} steps/s, mean episode length "
                                f"{r['replay_episode_length']:.0f} (esmpi {r['mean_episode_length']['esmpi']:.0f})."))
        cu = r["cpu_us_per_step"]
        path = f"esmpi's step path: {r['step_path']}" + (f" ({r['step_note']})" if r["step_note"] else "")
        figs.append(figure(f"rollout.{short}.physics_ratio", "1 rollout", f"{env_id}: esmpi / bare mj_step loop "
                           "replaying esmpi's actions (the physics' limit)", r["ratio_physics"], "ratio",
                           target=TARGET_PHYSICS, op=">=",
                           why=f"CPU µs per step: esmpi {cu['esmpi']:.1f}, of which the physics (mj_step alone) "
                               f"{cu['physics']:.1f}, the fast step's own work {cu['fast_replay'] - cu['physics']:+.1f}, "
                               f"the policy in situ {c['replay_policy'] - c['replay']:+.1f} and the loop the rest.",
                           samples=r["samples"]["esmpi"] + r["samples"]["physics"], raw=r["ratios_physics"],
                           info=f"ratio by CPU time {r['ratio_physics_cpu_time']:.3f}; {path}."))
        figs.append(figure(f"rollout.{short}.fast_step_physics_ratio", "1 rollout", f"{env_id}: fast step / bare "
                           "mj_step loop, both replaying esmpi's actions (no policy)", r["ratio_fast_step_physics"],
                           "ratio", samples=r["samples"]["fast_replay"] + r["samples"]["physics"],
                           raw=r["ratios_fast_step_physics"],
                           info=f"ratio by CPU time {r['ratio_fast_step_physics_cpu_time']:.3f}; CPU µs per step: fast "
                                f"step {cu['fast_replay']:.1f}, Gymnasium's step {cu['replay']:.1f}, mj_step alone "
                                f"{cu['physics']:.1f}."))
        figs.append(figure(f"rollout.{short}.fast_vs_gymnasium", "1 rollout", f"{env_id}: esmpi with the fast step / "
                           "esmpi with Gymnasium's step", r["ratio_fast_vs_gym"], "ratio",
                           samples=r["samples"]["esmpi"] + r["samples"]["esmpi_gym"], raw=r["ratios_fast_vs_gym"],
                           info=f"ratio by CPU time {r['ratio_fast_vs_gym_cpu_time']:.3f}; esmpi with Gymnasium's step "
                                f"/ bare: {r['ratio_gym_vs_bare']:.3f}."))
        figs.append(figure(f"rollout.{short}.esmpi_rate", "1 rollout", f"{env_id}: esmpi rollout per core",
                           r["esmpi_steps_per_s"], "steps/s", samples=r["samples"]["esmpi"], raw=r["rate"]["esmpi"],
                           info=f"CPU {c['esmpi']:.1f} µs/step, of which policy forward {c['policy']:.1f} µs."))
        details[env_id] = {k: v for k, v in r.items() if k != "samples"}
        details[env_id]["samples"] = {k: [vars(s) for s in v] for k, v in r["samples"].items()}
    hum = details["Humanoid-v5"]
    long = long_episode_cost(prof["long_steps"], prof["long_repeats"])
    over = episode_overheads(hum["d"], prof["overhead_repeats"], prof["overhead_table"])
    details["calibration"] = {
        "humanoid_us_per_step_short_episodes": hum["us_per_step_esmpi"],
        "humanoid_us_per_step_long_episodes": long["us_per_step"],
        # CPU time per step: the step's cost without other jobs' CPU contention (the scale model uses it)
        "humanoid_cpu_us_per_step_short_episodes": hum["us_per_step_esmpi_cpu"],
        "humanoid_cpu_us_per_step_long_episodes": long["us_per_step_cpu"],
        "humanoid_random_init_episode_lengths": hum["episode_lengths"],
        "humanoid_us_reset": over["us_reset"],
        "humanoid_us_perturb_pair": over["us_perturb_pair"],
        "humanoid_d": hum["d"],
    }
    figs.append(figure("rollout.humanoid.long_episode_us", "1 rollout", "Humanoid-v5 esmpi µs/step in 1000-step "
                       "episodes (no termination)", long["us_per_step"], "µs/step", samples=long["samples"],
                       info=f"CPU {long['us_per_step_cpu']:.0f} µs/step. Lying on the floor, contact-heavy: an upper "
                            "bound for a trained policy's long episodes."))
    lens = np.asarray(hum["episode_lengths"])
    if lens.size:
        figs.append(figure("rollout.humanoid.episode_length", "1 rollout", "Humanoid-v5 episode length, perturbed "
                           "random-init 256-256", float(np.median(lens)), "steps", raw=[float(x) for x in lens],
                           load={}, cpu_wall={},
                           info=f"n={lens.size}, mean {lens.mean():.1f}, min {lens.min()}, p90 "
                                f"{np.percentile(lens, 90):.0f}, max {lens.max()}; the scale model's random-init sample."))
    return figs, details
