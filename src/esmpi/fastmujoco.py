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
  other kwarg (``xml_file``, ``render_mode``, ...) refuses it.

``obs`` is one preallocated (obs_dim,) float64 buffer per env, overwritten by the next step: copy it
to keep it (Gymnasium returns a fresh array). ``info`` is empty. ``mj_rnePostConstraint`` (which
Gymnasium runs after every step) runs only for Ant and Humanoid, whose contact forces it computes:
elsewhere ``data.cacc/cfrc_int/cfrc_ext`` are not refreshed after a step (nothing in ``mj_step`` reads
them; call it yourself if you need them).
"""

from __future__ import annotations

import mujoco
import numpy as np

from .fastkernels import ant, centre_of_mass, humanoid, inverted_pendulum, planar

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
GYMNASIUM_MAJOR = "1."   # the v5 tasks' step as written in Gymnasium 1.x; others are refused
_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)
CHECK_SEEDS, CHECK_STEPS = (11, 12), 40


class Unsupported(Exception):
    """Why the fast step cannot stand in for this env's Gymnasium step."""


def _num(x, what: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise Unsupported(f"{what}={x!r} is not a plain int/float")
    if x != x:
        raise Unsupported(f"{what} is NaN")
    return float(x)


def _pair(x, what: str) -> tuple[float, float]:
    if not (isinstance(x, (tuple, list)) and len(x) == 2):
        raise Unsupported(f"{what}={x!r} is not a pair")
    return _num(x[0], what), _num(x[1], what)


def _flag(x, what: str) -> bool:
    if not isinstance(x, bool):
        raise Unsupported(f"{what}={x!r} is not a bool")
    return x


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
    if not version.startswith(GYMNASIUM_MAJOR):
        raise Unsupported(f"Gymnasium {version} (the fast step reproduces 1.x)")
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
        return _FAMILIES[family](env, kind)
    except AttributeError as ex:   # a Gymnasium whose env keeps its settings elsewhere
        raise Unsupported(f"{env_id}: Gymnasium internals differ ({ex})") from None


def _common(env):
    m, d = env.model, env.data
    fs = int(env.frame_skip)
    if fs < 1:
        raise Unsupported(f"frame_skip={fs}")
    return m, d, fs, type(env).step.__get__(env), (m.nu,)


def _by_dtype(nu: int, ctrl_cost_weight):
    """dtype -> (squares scratch, ctrl weight as that dtype's 1-element array): np.square(action) is in the
    action's dtype, and NumPy 2 multiplies a python-float weight by a float32 sum in float32."""
    w = _num(ctrl_cost_weight, "ctrl_cost_weight")
    return {dt: (np.zeros(nu, dt), np.array([w], dt)) for dt in (_F32, _F64)}


def _planar(env, kind):
    m, d, fs, slow, shape = _common(env)
    swimmer = type(env).__name__ == "SwimmerEnv"
    skip = (2 if swimmer else 1) * _flag(env._exclude_current_positions_from_observation,
                                         "exclude_current_positions_from_observation")
    p = np.zeros(12)
    p[0] = _num(env._forward_reward_weight, "forward_reward_weight")
    if kind:
        p[1] = _num(env._healthy_reward, "healthy_reward")
        p[2:4] = _pair(env._healthy_z_range, "healthy_z_range")
        p[4:6] = _pair(env._healthy_angle_range, "healthy_angle_range")
        p[6] = _flag(env._terminate_when_unhealthy, "terminate_when_unhealthy")
        if kind == 1:
            p[7:9] = _pair(env._healthy_state_range, "healthy_state_range")
    p[9:12] = kind, skip, kind != 0     # Hopper and Walker2d clip qvel to [-10, 10] in obs
    by_dtype = _by_dtype(m.nu, env._ctrl_cost_weight)
    qpos, qvel, ctrl, opt = d.qpos, d.qvel, d.ctrl, m.opt
    obs = np.zeros(m.nq + m.nv - skip)
    mj_step, ndarray = mujoco.mj_step, np.ndarray

    def step(action):
        if type(action) is not ndarray or action.shape != shape or action.dtype not in by_dtype:
            return slow(action)
        sq, w = by_dtype[action.dtype]
        x0 = qpos[0]
        ctrl[:] = action
        mj_step(m, d, fs)
        r, terminated = planar(qpos, qvel, action, sq, w, obs, x0, opt.timestep * fs, p)
        return obs, r, terminated, False, {}

    return step


def _ant(env, _):
    m, d, fs, slow, shape = _common(env)
    skip = 2 * _flag(env._exclude_current_positions_from_observation, "exclude_current_positions_from_observation")
    with_cfrc = _flag(env._include_cfrc_ext_in_observation, "include_cfrc_ext_in_observation")
    main = m.body(env._main_body).id
    p = np.array([_num(env._forward_reward_weight, "forward_reward_weight"),
                  _num(env._contact_cost_weight, "contact_cost_weight"), _num(env._healthy_reward, "healthy_reward"),
                  *_pair(env._healthy_z_range, "healthy_z_range"),
                  *_pair(env._contact_force_range, "contact_force_range"),
                  _flag(env._terminate_when_unhealthy, "terminate_when_unhealthy")])
    by_dtype = _by_dtype(m.nu, env._ctrl_cost_weight)
    qpos, qvel, xpos, cfrc_ext, ctrl, opt = d.qpos, d.qvel, d.xpos, d.cfrc_ext, d.ctrl, m.opt
    csq = np.zeros(cfrc_ext.size)
    obs = np.zeros(m.nq + m.nv - skip + with_cfrc * (cfrc_ext.size - 6))
    mj_step, rne, ndarray = mujoco.mj_step, mujoco.mj_rnePostConstraint, np.ndarray

    def step(action):
        if type(action) is not ndarray or action.shape != shape or action.dtype not in by_dtype:
            return slow(action)
        sq, w = by_dtype[action.dtype]
        x0 = xpos[main, 0]
        ctrl[:] = action
        mj_step(m, d, fs)
        rne(m, d)
        r, terminated = ant(qpos, qvel, xpos, cfrc_ext, action, sq, w, csq, obs, x0, opt.timestep * fs, p, main,
                            skip, with_cfrc)
        return obs, r, terminated, False, {}

    return step


def _humanoid(env, _):
    m, d, fs, slow, shape = _common(env)
    skip = 2 * _flag(env._exclude_current_positions_from_observation, "exclude_current_positions_from_observation")
    inc = np.array([_flag(getattr(env, f"_include_{k}_in_observation"), f"include_{k}_in_observation")
                    for k in ("cinert", "cvel", "qfrc_actuator", "cfrc_ext")], np.int64)
    p = np.array([_num(env._forward_reward_weight, "forward_reward_weight"),
                  _num(env._ctrl_cost_weight, "ctrl_cost_weight"),
                  _num(env._contact_cost_weight, "contact_cost_weight"),
                  *_pair(env._contact_cost_range, "contact_cost_range"), _num(env._healthy_reward, "healthy_reward"),
                  *_pair(env._healthy_z_range, "healthy_z_range"),
                  _flag(env._terminate_when_unhealthy, "terminate_when_unhealthy")])
    qpos, qvel, ctrl, mass, xipos, cfrc_ext, opt = d.qpos, d.qvel, d.ctrl, m.body_mass, d.xipos, d.cfrc_ext, m.opt
    cinert, cvel, qfrc_actuator = d.cinert, d.cvel, d.qfrc_actuator
    nb = m.nbody
    obs = np.zeros(m.nq + m.nv - skip + (nb - 1) * (10 * inc[0] + 6 * inc[1] + 6 * inc[3]) + (m.nv - 6) * inc[2])
    com0, sq, csq = np.zeros(3), np.zeros(m.nu), np.zeros(cfrc_ext.size)
    mj_step, rne, ndarray = mujoco.mj_step, mujoco.mj_rnePostConstraint, np.ndarray

    def step(action):
        # Humanoid's control cost squares data.ctrl (float64), so any float action dtype takes this path
        if type(action) is not ndarray or action.shape != shape or action.dtype not in _FLOATS:
            return slow(action)
        centre_of_mass(mass, xipos, com0)
        ctrl[:] = action
        mj_step(m, d, fs)
        rne(m, d)
        r, terminated = humanoid(qpos, qvel, cinert, cvel, qfrc_actuator, cfrc_ext, ctrl, mass, xipos, sq, csq, obs,
                                 com0, opt.timestep * fs, p, skip, inc)
        return obs, r, terminated, False, {}

    return step


def _inverted_pendulum(env, _):
    m, d, fs, slow, shape = _common(env)
    qpos, qvel, ctrl = d.qpos, d.qvel, d.ctrl
    obs = np.zeros(m.nq + m.nv)
    mj_step, ndarray = mujoco.mj_step, np.ndarray

    def step(action):
        if type(action) is not ndarray or action.shape != shape or action.dtype not in _FLOATS:
            return slow(action)
        ctrl[:] = action
        mj_step(m, d, fs)
        terminated = inverted_pendulum(qpos, qvel, obs)
        return obs, 0 if terminated else 1, terminated, False, {}

    return step


def _inverted_double_pendulum(env, _):
    """In NumPy, not numba: np.sin/np.cos may be SIMD code whose bits libm's need not match, and the reward's
    x**2 on np.float64 scalars is NumPy's pow; the same calls on the same types give the same bits."""
    m, d, fs, slow, shape = _common(env)
    hr = _num(env._healthy_reward, "healthy_reward")
    qpos, qvel, site_xpos, qfrc_constraint, ctrl = d.qpos, d.qvel, d.site_xpos, d.qfrc_constraint, d.ctrl
    n = m.nq - 1
    obs = np.zeros(1 + 2 * n + m.nv + 1)
    angles, o_sin, o_cos = qpos[1:], obs[1:1 + n], obs[1 + n:1 + 2 * n]
    o_vel, o_qfc, qfc0 = obs[1 + 2 * n:1 + 2 * n + m.nv], obs[-1:], qfrc_constraint[:1]
    mj_step, ndarray, sin, cos, npclip = mujoco.mj_step, np.ndarray, np.sin, np.cos, np.clip

    def step(action):
        if type(action) is not ndarray or action.shape != shape or action.dtype not in _FLOATS:
            return slow(action)
        ctrl[:] = action
        mj_step(m, d, fs)
        x, _, y = site_xpos[0]
        obs[0] = qpos[0]
        sin(angles, out=o_sin)
        cos(angles, out=o_cos)
        npclip(qvel, -10, 10, out=o_vel)
        npclip(qfc0, -10, 10, out=o_qfc)
        terminated = bool(y <= 1)
        v1, v2 = qvel[1], qvel[2]
        dist_penalty = 0.01 * x**2 + (y - 2) ** 2
        vel_penalty = 1e-3 * v1**2 + 5e-3 * v2**2
        return obs, hr * int(not terminated) - dist_penalty - vel_penalty, terminated, False, {}

    return step


_FAMILIES = {"planar": _planar, "ant": _ant, "humanoid": _humanoid, "ip": _inverted_pendulum,
             "idp": _inverted_double_pendulum}
_FLOATS = {_F32: None, _F64: None}


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
