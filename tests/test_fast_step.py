"""The direct MuJoCo step (esmpi.fastmujoco) against Gymnasium's own step on a twin env, to the bit:
observations, rewards and flags over seeded resets and random actions reaching outside the action box,
episodes run to termination where the task terminates, non-default kwargs; and the fallbacks
(unknown id, unsupported kwarg, other Gymnasium version, a Gymnasium step that behaves differently,
the config key)."""

from types import SimpleNamespace

import numpy as np
import pytest
from helpers import tiny_config

from esmpi.envs import make_env
from esmpi.fastmujoco import TASKS, attach, check_actions
from esmpi.objectives.gym import EnvObjective


def env_pair(env_id, kwargs=None):
    cfg = {"id": env_id, "kwargs": dict(kwargs or {}), "max_episode_steps": 0}
    fast = make_env(SimpleNamespace(**cfg, fast_step=True))
    slow = make_env(SimpleNamespace(**cfg, fast_step=False))
    return fast, slow


def bits(x):
    return np.asarray(x, dtype=np.float64).tobytes()


def compare(fast, slow, seed, max_steps, dtype=np.float32):
    """Same reset seed, same actions (1.6x beyond the box on either side, from a seeded generator): every
    step's obs, reward and flags equal to the bit. Returns the episode length (stops at termination)."""
    assert fast.step_path == "fast", fast.step_note
    assert slow.step_path == "gymnasium"
    low, high = np.array(fast.action.low), np.array(fast.action.high)
    mid, half = (low + high) / 2, (high - low) / 2
    rng = np.random.default_rng(seed)
    o_f, _ = fast.reset(seed=seed)
    o_s, _ = slow.reset(seed=seed)
    assert bits(o_f) == bits(o_s)
    for t in range(max_steps):
        a = (mid + 1.6 * half * rng.uniform(-1, 1, low.size)).astype(dtype)
        of, rf, tf, uf, _ = fast.step(a)
        os_, rs, ts, us, _ = slow.step(a.copy())
        assert bits(of) == bits(os_), (t, of, os_)
        assert bits(rf) == bits(rs), (t, rf, rs)
        assert (bool(tf), bool(uf)) == (bool(ts), bool(us)), t
        if ts:
            return t + 1
    return max_steps


# id -> (kwargs, max steps per episode, seeds, must terminate in every episode)
CASES = {
    "HalfCheetah-v5": ({}, 150, (0, 1), False),
    "Swimmer-v5": ({}, 150, (0, 1), False),
    "Hopper-v5": ({}, 1000, (0, 1, 2), True),
    "Walker2d-v5": ({}, 1000, (0, 1, 2), True),
    "Ant-v5": ({"healthy_z_range": (0.45, 1.0)}, 1000, (0, 1), True),
    "Humanoid-v5": ({}, 1000, (0, 1, 2), True),
    "InvertedPendulum-v5": ({}, 1000, (0, 1, 2), True),
    "InvertedDoublePendulum-v5": ({}, 1000, (0, 1, 2), True),
}


@pytest.mark.parametrize("env_id", sorted(CASES))
def test_bitwise_equal_to_gymnasium(env_id):
    kwargs, max_steps, seeds, terminates = CASES[env_id]
    fast, slow = env_pair(env_id, kwargs)
    for seed in seeds:
        n = compare(fast, slow, seed, max_steps)
        assert (n < max_steps) == terminates, (env_id, seed, n)
    # float64 actions take the float64 control-cost path
    compare(fast, slow, 9, 30, dtype=np.float64)


NON_DEFAULT = {
    "HalfCheetah-v5": {"forward_reward_weight": 2, "ctrl_cost_weight": 0.3,
                       "exclude_current_positions_from_observation": False, "frame_skip": 3},
    "Swimmer-v5": {"ctrl_cost_weight": 0, "exclude_current_positions_from_observation": False},
    "Hopper-v5": {"healthy_state_range": (-5.0, 5.0), "healthy_z_range": (0.9, 1.6), "healthy_angle_range": (-0.5, 0.5),
                  "healthy_reward": 2, "ctrl_cost_weight": 0.01, "reset_noise_scale": 0.05},
    "Walker2d-v5": {"terminate_when_unhealthy": False, "healthy_z_range": (1.0, 1.5),
                    "exclude_current_positions_from_observation": False},
    "Ant-v5": {"include_cfrc_ext_in_observation": False, "contact_force_range": (-0.5, 0.25), "main_body": "torso",
               "contact_cost_weight": 0.01, "exclude_current_positions_from_observation": False},
    "Humanoid-v5": {"include_cinert_in_observation": False, "include_cvel_in_observation": False,
                    "contact_cost_range": (-np.inf, 1e-3), "terminate_when_unhealthy": False,
                    "healthy_z_range": (1.1, 2.0), "exclude_current_positions_from_observation": False},
    "InvertedPendulum-v5": {"reset_noise_scale": 0.05, "frame_skip": 1},
    "InvertedDoublePendulum-v5": {"healthy_reward": 3.5, "reset_noise_scale": 0.2},
}


@pytest.mark.parametrize("env_id", sorted(NON_DEFAULT))
def test_kwargs_honoured(env_id):
    fast, slow = env_pair(env_id, NON_DEFAULT[env_id])
    assert fast.obs_dim == slow.obs_dim
    for seed in (3, 4):
        compare(fast, slow, seed, 60)


def test_episode_through_rollout_matches():
    """EnvObjective's episodes (obs sums taken from the reused obs buffer) equal Gymnasium's to the bit."""
    res = {}
    for fast in (True, False):
        obj = EnvObjective(tiny_config(env={"id": "Hopper-v5", "fast_step": fast}, policy={"hidden": [16]}))
        assert obj.spec_dict()["env_step"] == ("fast" if fast else "gymnasium")
        theta = obj.initial_theta(np.random.default_rng(0)) * np.float32(3)
        res[fast] = [obj.episode(theta, s, 1000, record_obs=True) for s in range(3)]
    for a, b in zip(res[True], res[False]):
        assert (bits(a.ret), a.length, bits(a.obs_sum), bits(a.obs_sumsq)) == \
               (bits(b.ret), b.length, bits(b.obs_sum), bits(b.obs_sumsq))


def test_strided_and_readonly_actions():
    fast, slow = env_pair("HalfCheetah-v5")
    buf = np.linspace(-1.5, 1.5, 12, dtype=np.float32)
    ro = buf[:6].copy()
    ro.flags.writeable = False
    for a in (buf[::2], buf[1::2], ro):
        fast.reset(seed=2)
        slow.reset(seed=2)
        of, rf, *_ = fast.step(a)
        os_, rs, *_ = slow.step(a)
        assert bits(of) == bits(os_) and bits(rf) == bits(rs)


def test_nan_action_matches():
    fast, slow = env_pair("HalfCheetah-v5")
    for e in (fast, slow):
        e.reset(seed=5)
    a = np.full(fast.action.dim, np.nan, np.float32)
    (of, rf, tf, *_), (os_, rs, ts, *_) = fast.step(a), slow.step(a)
    assert np.array_equal(of, os_, equal_nan=True) and np.isnan(rf) and np.isnan(rs) and tf == ts


def test_other_action_types_use_gymnasium_step():
    fast, slow = env_pair("Hopper-v5")
    for a in ([0.5, -2.0, 0.1], np.array([1, 0, -1]), np.zeros((1, 3), np.float32)):
        fast.reset(seed=1)
        slow.reset(seed=1)
        if np.asarray(a).shape != (3,):
            with pytest.raises(ValueError):
                fast.step(a)
            continue
        of, rf, *_ = fast.step(a)
        os_, rs, *_ = slow.step(a)
        assert bits(of) == bits(os_) and bits(rf) == bits(rs)


def test_fallbacks(capsys):
    e = make_env(SimpleNamespace(id="Reacher-v5", kwargs={}, max_episode_steps=0, fast_step=True))
    assert e.step_path == "gymnasium" and "not one of" in e.step_note
    e = make_env(SimpleNamespace(id="Hopper-v5", kwargs={"xml_file": "hopper.xml"}, max_episode_steps=0,
                                 fast_step=True))
    assert e.step_path == "gymnasium" and "xml_file" in e.step_note
    assert "xml_file" in capsys.readouterr().err
    e = make_env(SimpleNamespace(id="esmpi/PointMass-v0", kwargs={}, max_episode_steps=0, fast_step=True))
    assert e.step_path == "gymnasium"
    e = make_env(SimpleNamespace(id="Hopper-v5", kwargs={}, max_episode_steps=0, fast_step=True))
    step, why = attach(e.gym_env.unwrapped, "Hopper-v5", "0.29.1")
    assert step is None and "0.29.1" in why


def test_self_check_refuses_a_different_gymnasium_step(monkeypatch):
    e = make_env(SimpleNamespace(id="Walker2d-v5", kwargs={}, max_episode_steps=0, fast_step=True))
    cls = type(e.gym_env.unwrapped)
    orig = cls.step

    def changed(self, action):   # a Gymnasium whose reward differs in the last bit
        obs, r, term, trunc, info = orig(self, action)
        return obs, np.nextafter(r, np.inf), term, trunc, info

    monkeypatch.setattr(cls, "step", changed)
    step, why = attach(e.gym_env.unwrapped, "Walker2d-v5", "1.4.0")
    assert step is None and "self-check: reward" in why


def test_config_key_turns_it_off():
    on = EnvObjective(tiny_config(env={"id": "HalfCheetah-v5"}))
    off = EnvObjective(tiny_config(env={"id": "HalfCheetah-v5", "fast_step": False}))
    assert (on.env.step_path, off.env.step_path) == ("fast", "gymnasium")
    assert off.spec_dict()["env_step_note"] == "env.fast_step = false"


def test_check_actions_leave_the_box():
    a = check_actions(np.array([-1.0, -0.4]), np.array([1.0, 0.4]), 40)
    assert a.dtype == np.float32 and (a.min(0) < [-1, -0.4]).all() and (a.max(0) > [1, 0.4]).all()
    assert set(TASKS) == set(CASES)
