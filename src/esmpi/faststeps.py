"""The per-task step functions of the direct MuJoCo step (see ``esmpi.fastmujoco``, which picks and checks them).

``FAMILIES[name](env, kind) -> step``: a closure over the unwrapped Gymnasium env's ``model``, ``data``
and settings (read from the env's own attributes, validated as plain numbers/pairs/bools, else
``Unsupported``), preallocated ``obs`` (obs_dim,) float64 and scratch arrays. ``step(action)`` sends any
action that is not a float32/float64 ndarray of shape ``(nu,)`` to Gymnasium's step (which converts or
raises exactly as Gymnasium does); otherwise it writes ``data.ctrl``, calls ``mj_step(model, data,
frame_skip)`` (plus ``mj_rnePostConstraint`` where contact forces are read) and one kernel of
``esmpi.fastkernels``, and returns ``(obs, reward, terminated, False, {})``. No array is allocated per step.
"""

from __future__ import annotations

import math

import mujoco
import numpy as np

from .fastkernels import MAX_SUM, ant, centre_of_mass, humanoid, inverted_pendulum, planar

_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)


class Unsupported(Exception):
    """Why the fast step cannot stand in for this env's Gymnasium step."""


def _num(x, what: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise Unsupported(f"{what}={x!r} is not a plain int/float")
    if math.isnan(x):
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


def _common(env):
    m, d = env.model, env.data
    fs = int(env.frame_skip)
    if fs < 1:
        raise Unsupported(f"frame_skip={fs}")
    if max(m.nu, 6 * m.nbody) > MAX_SUM:   # the kernels' sums reproduce NumPy's pairwise sum up to 128 terms
        raise Unsupported(f"model too large for the fast step's sums (nu={m.nu}, nbody={m.nbody})")
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
        sel = by_dtype.get(action.dtype) if type(action) is ndarray and action.shape == shape else None
        if sel is None:
            return slow(action)
        sq, w = sel
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
        sel = by_dtype.get(action.dtype) if type(action) is ndarray and action.shape == shape else None
        if sel is None:
            return slow(action)
        sq, w = sel
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


FAMILIES = {"planar": _planar, "ant": _ant, "humanoid": _humanoid, "ip": _inverted_pendulum,
             "idp": _inverted_double_pendulum}
_FLOATS = {_F32: None, _F64: None}
