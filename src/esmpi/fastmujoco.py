"""The direct MuJoCo step: Gymnasium's v5 locomotion and pendulum tasks stepped without Gymnasium's Python.

``attach(unwrapped_env, version) -> (step, reason)``: for the env ids in ``TASKS``, built by Gymnasium's
own class, ``step(action) -> (obs, reward, terminated, False, {})`` writes ``data.ctrl``, calls
``mujoco.mj_step(model, data, frame_skip)`` on the env's own ``model``/``data`` and computes the
observation, reward and termination straight from ``MjData`` in one numba kernel; ``step`` is None
and ``reason`` says why when the env is not supported. Resets stay Gymnasium's (its reset noise and
seeding). Bitwise equal to Gymnasium's step, by construction and by check:

- the same float operations in the same order and dtypes: NumPy's pairwise summation (8 accumulators
  for 8..128 terms) for ``np.sum(np.square(.))``, float32 control costs when the action is float32
  (NumPy 2 promotion: python-float weight * float32 sum is float32), ``einsum`` order for Humanoid's
  centre of mass, clipping as ``min(max(x, lo), hi)``. Actions are not clipped (Gymnasium does not:
  MuJoCo clamps ``ctrl`` to ``ctrlrange`` inside ``mj_step``; the control cost uses the raw action).
  Actions that are not a float32/float64 array of shape ``(nu,)`` go to Gymnasium's step.
- ``attach`` runs a self-check: two seeded resets, 40 steps each of a fixed action sequence reaching
  1.6x outside the action box, Gymnasium's step then this one on the same env; any difference in a
  bit of obs, reward or flag, or in the physics state, refuses the fast step.
- only the env kwargs the kernels honour (``KWARGS``), with plain int/float/bool/pair values; any
  other kwarg (``xml_file``, ``render_mode``, ...) refuses it; so do Gymnasium versions other than the
  tested ones (``TESTED_GYMNASIUM``) and env classes other than Gymnasium's own. The self-check also
  guards the NumPy summation order the kernels reproduce (a different order changes reward bits).

``obs`` is one preallocated (obs_dim,) float64 buffer per env, overwritten by the next step: copy it
to keep it (Gymnasium returns a fresh array). ``info`` is empty. ``mj_rnePostConstraint`` (which
Gymnasium runs after every step) runs only for Ant and Humanoid, whose contact forces it computes:
elsewhere ``data.cacc/cfrc_int/cfrc_ext`` are not refreshed after a step (nothing in ``mj_step`` reads
them; call it yourself if you need them).
"""

from __future__ import annotations

import mujoco
import numpy as np

from .faststeps import FAMILIES, Unsupported

# id -> (Gymnasium module, class, kernel family, planar kind: 0 none, 1 Hopper health, 2 Walker2d health)
TASKS = {
    "HalfCheetah-v5": ("half_cheetah_v5", "HalfCheetahEnv", "planar", 0),
    "Swimmer-v5": ("swimmer_v5", "SwimmerEnv", "planar", 0),
    "Hopper-v5": ("hopper_v5", "HopperEnv", "planar", 1),
    "Walker2d-v5": ("walker2d_v5", "Walker2dEnv", "planar", 2),
    "Ant-v5": ("ant_v5", "AntEnv", "ant", 0),
    "Humanoid-v5": ("humanoid_v5", "HumanoidEnv", "humanoid", 0),
    "InvertedPendulum-v5": ("inverted_pendulum_v5", "InvertedPendulumEnv", "ip", 0),
    "InvertedDoublePendulum-v5": ("inverted_double_pendulum_v5", "InvertedDoublePendulumEnv", "idp", 0),
}
_COMMON = {"frame_skip", "reset_noise_scale", "default_camera_config"}   # reset/render only, or read below
_PLANAR = {"forward_reward_weight", "ctrl_cost_weight", "exclude_current_positions_from_observation"}
_HEALTH = {"healthy_reward", "terminate_when_unhealthy", "healthy_z_range"}
KWARGS = {
    "HalfCheetah-v5": _COMMON | _PLANAR, "Swimmer-v5": _COMMON | _PLANAR,
    "Hopper-v5": _COMMON | _PLANAR | _HEALTH | {"healthy_state_range", "healthy_angle_range"},
    "Walker2d-v5": _COMMON | _PLANAR | _HEALTH | {"healthy_angle_range"},
    "Ant-v5": _COMMON | _PLANAR | _HEALTH | {"contact_cost_weight", "main_body", "contact_force_range",
                                             "include_cfrc_ext_in_observation"},
    "Humanoid-v5": _COMMON | _PLANAR | _HEALTH | {"contact_cost_weight", "contact_cost_range",
                                                  "include_cinert_in_observation", "include_cvel_in_observation",
                                                  "include_qfrc_actuator_in_observation",
                                                  "include_cfrc_ext_in_observation"},
    "InvertedPendulum-v5": _COMMON, "InvertedDoublePendulum-v5": _COMMON | {"healthy_reward"},
}
# Gymnasium versions whose v5 step this reproduces, checked by tests/test_fast_step.py (add one only after
# running that test against it): any other version is refused, even if its self-check would pass
TESTED_GYMNASIUM = ("1.4.",)
CHECK_SEEDS, CHECK_STEPS = (11, 12), 40


def attach(env, env_id: str, gymnasium_version: str):
    """``env``: the *unwrapped* Gymnasium env. Returns ``(step, "")`` or ``(None, reason)``."""
    try:
        step = _build(env, env_id, gymnasium_version)
        _self_check(env, step)
    except Unsupported as ex:
        return None, str(ex)
    return step, ""


def _build(env, env_id: str, version: str):
    if env_id not in TASKS:
        raise Unsupported(f"{env_id} is not one of the fast-stepped tasks")
    if not version.startswith(TESTED_GYMNASIUM):
        raise Unsupported(f"Gymnasium {version} is not a version the fast step was tested against "
                          f"({', '.join(v + 'x' for v in TESTED_GYMNASIUM)})")
    mod, cls, family, kind = TASKS[env_id]
    t = type(env)
    if t.__module__ != f"gymnasium.envs.mujoco.{mod}" or t.__name__ != cls:
        raise Unsupported(f"{env_id} is made by {t.__module__}.{t.__name__}, not Gymnasium's {cls}")
    extra = sorted(set(env.spec.kwargs if env.spec else {}) - KWARGS[env_id])
    if extra:
        raise Unsupported(f"{env_id} kwargs {extra} are not honoured by the fast step")
    if env.render_mode is not None:
        raise Unsupported(f"render_mode={env.render_mode!r} (Gymnasium's step renders)")
    try:
        return FAMILIES[family](env, kind)
    except AttributeError as ex:   # a Gymnasium whose env keeps its settings elsewhere
        raise Unsupported(f"{env_id}: Gymnasium internals differ ({ex})") from None


def _state(env) -> np.ndarray:
    m, d = env.model, env.data
    spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
    out = np.empty(mujoco.mj_stateSize(m, spec))
    mujoco.mj_getState(m, d, out, spec)
    return out


def check_actions(low: np.ndarray, high: np.ndarray, n: int) -> np.ndarray:
    """(n, nu) float32 actions, a fixed deterministic sweep reaching 1.6x beyond each side of the box."""
    t = np.arange(n)[:, None]
    j = np.arange(low.size)[None, :]
    u = np.sin(1.7 * t + 2.3 * j + 0.4 * t * j)
    mid, half = (high + low) / 2, (high - low) / 2
    return (mid + 1.6 * half * u).astype(np.float32)


def _self_check(env, fast) -> None:
    """Gymnasium's step, then ``fast``, from the same seeded resets with the same actions: every obs,
    reward, flag and the full physics state must match to the bit (NaN == NaN). The env is left reset."""
    slow = type(env).step.__get__(env)
    acts = check_actions(env.action_space.low, env.action_space.high, CHECK_STEPS)
    runs = []
    for step in (slow, fast):
        rec = []
        for seed in CHECK_SEEDS:
            env.reset(seed=seed)
            for a in acts:
                obs, r, term, trunc, _ = step(a)
                rec.append((np.array(obs, dtype=np.float64), np.float64(r), bool(term), bool(trunc), _state(env)))
        runs.append(rec)
    for i, (g, f) in enumerate(zip(*runs)):
        for what, x, y in zip(("observation", "reward", "terminated", "truncated", "physics state"), g, f):
            if np.asarray(x).tobytes() != np.asarray(y).tobytes():
                raise Unsupported(f"self-check: {what} differs from Gymnasium's at check step {i} "
                                  "(this Gymnasium's step is not the one the fast step reproduces)")
    env.reset(seed=CHECK_SEEDS[0])
