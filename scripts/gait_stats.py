"""Gait statistics of a saved locomotion policy (docs/results.md, Hopper/Walker2d discussion).

    .venv/bin/python scripts/gait_stats.py results/runs/hopper-s0/checkpoints/best.h5 [EPISODES]

Runs EPISODES (default 5) deterministic episodes of the saved policy (esmpi.load_policy: the
function the trainer evaluates) and prints, per quantity, the mean/min/max over episodes: return,
length, mean forward velocity (Gymnasium's info["x_velocity"]), the reward split into forward,
control and healthy terms (v5's info keys), and the fraction of action components at the bounds.
"""
import sys

import gymnasium as gym
import numpy as np

import esmpi


def episode(pi, env, seed: int) -> dict:
    obs, _ = env.reset(seed=seed)
    ret, length, fwd, ctrl, healthy, vx, acts = 0.0, 0, 0.0, 0.0, 0.0, [], []
    while True:
        a = pi(obs)
        acts.append(np.asarray(a))
        obs, r, terminated, truncated, info = env.step(a)
        ret, length = ret + r, length + 1
        fwd += info.get("reward_forward", 0.0)
        ctrl += info.get("reward_ctrl", 0.0)
        healthy += info.get("reward_survive", info.get("reward_healthy", 0.0))
        vx.append(info.get("x_velocity", np.nan))
        if terminated or truncated:
            break
    return dict(ret=ret, len=length, vx=float(np.mean(vx)), fwd=fwd, ctrl=ctrl, healthy=healthy,
                frac_at_bounds=float(np.mean(np.abs(np.array(acts)) > 0.99)))


def main() -> None:
    path, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 5
    pi = esmpi.load_policy(path)
    env = gym.make(pi.env_id)
    rows = [episode(pi, env, 10_000 + e) for e in range(n)]
    print(f"{path}: {pi.env_id}, {n} episodes")
    for k in rows[0]:
        v = np.array([r[k] for r in rows])
        print(f"{k:15s} mean {v.mean():9.3f}  min {v.min():9.3f}  max {v.max():9.3f}")


if __name__ == "__main__":
    main()
