"""Numba kernels of the direct MuJoCo step (``esmpi.fastmujoco``): observation, reward and termination of
Gymnasium's v5 tasks from ``MjData`` arrays, in Gymnasium's float operations and order.

Each kernel fills the preallocated ``obs`` (obs_dim,) float64 and returns ``(reward, terminated)``.
``sumsq(x, sq)`` is ``np.sum(np.square(x))`` to the bit: squares in x's dtype (into the scratch ``sq``,
same dtype and size), then NumPy's pairwise sum (sequential below 8 terms, 8 interleaved accumulators
combined as ((r0+r1)+(r2+r3))+((r4+r5)+(r6+r7)) up to 128 terms, then the tail in order).
``clip(x, lo, hi)`` is ``np.clip``'s ``min(max(x, lo), hi)`` with NumPy's NaN-propagating ``max(a, b) =
a if isnan(a) or a > b else b`` (so a bound equal to x, e.g. a signed zero, wins, as in NumPy). No fastmath: no
reassociation, no FMA contraction, so the compiled order is the written order.
"""

from __future__ import annotations

import numba
import numpy as np

MAX_SUM = 128   # NumPy's pairwise block: longer sums recurse, which sumsq does not reproduce


@numba.njit(cache=True, nogil=True)
def sumsq(x, sq):
    xf = x.ravel()
    for i in range(xf.size):
        sq[i] = xf[i] * xf[i]
    return pairwise_sum(sq)


@numba.njit(cache=True, nogil=True)
def clip(x, lo, hi):
    y = x if (np.isnan(x) or x > lo) else lo
    return y if (np.isnan(y) or y < hi) else hi


@numba.njit(cache=True, nogil=True)
def planar(qpos, qvel, action, sq, w, obs, x0, dt, p):
    """HalfCheetah, Swimmer (kind 0), Hopper (1), Walker2d (2). p: [forward_w, healthy_reward, z lo, z hi,
    angle lo, angle hi, terminate, state lo, state hi, kind, skip, clip_vel]; w: (1,) ctrl weight in
    the action's dtype (float32 actions: a float32 control cost, as NumPy 2 computes it)."""
    kind, skip, clipv = int(p[9]), int(p[10]), p[11] != 0.0
    k = 0
    for i in range(skip, qpos.size):
        obs[k] = qpos[i]
        k += 1
    for i in range(qvel.size):
        obs[k] = clip(qvel[i], -10.0, 10.0) if clipv else qvel[i]
        k += 1
    forward = p[0] * ((qpos[0] - x0) / dt)
    ctrl_cost = w[0] * sumsq(action, sq)
    if kind == 0:
        return forward - ctrl_cost, False
    z, angle = qpos[1], qpos[2]
    healthy = p[2] < z < p[3] and p[4] < angle < p[5]
    if kind == 1:
        for i in range(2, qpos.size):
            healthy = healthy and p[7] < qpos[i] < p[8]
        for i in range(qvel.size):
            healthy = healthy and p[7] < qvel[i] < p[8]
    return (forward + healthy * p[1]) - ctrl_cost, (not healthy) and p[6] != 0.0


@numba.njit(cache=True, nogil=True)
def ant(qpos, qvel, xpos, cfrc_ext, action, sq, w, csq, obs, x0, dt, p, main, skip, with_cfrc):
    """Ant. p: [forward_w, contact_w, healthy_reward, z lo, z hi, force lo, force hi, terminate]."""
    k = 0
    for i in range(skip, qpos.size):
        obs[k] = qpos[i]
        k += 1
    for i in range(qvel.size):
        obs[k] = qvel[i]
        k += 1
    nb = cfrc_ext.shape[0]
    for b in range(nb):
        for j in range(6):
            c = clip(cfrc_ext[b, j], p[5], p[6])
            csq[b * 6 + j] = c     # sumsq squares in place: csq holds the clipped forces first
            if with_cfrc and b > 0:
                obs[k] = c
                k += 1
    forward = ((xpos[main, 0] - x0) / dt) * p[0]
    healthy = True
    for i in range(qpos.size):
        healthy = healthy and np.isfinite(qpos[i])
    for i in range(qvel.size):
        healthy = healthy and np.isfinite(qvel[i])
    healthy = healthy and p[3] <= qpos[2] <= p[4]
    costs = w[0] * sumsq(action, sq) + p[1] * sumsq(csq, csq)
    return (forward + healthy * p[2]) - costs, (not healthy) and p[7] != 0.0


@numba.njit(cache=True, nogil=True)
def centre_of_mass(mass, xipos, com):
    """com = einsum("b,bj->j", mass, xipos) (bodies summed in order from 0, as NumPy's einsum does)."""
    for j in range(3):
        com[j] = 0.0
    for b in range(mass.size):
        for j in range(3):
            com[j] += mass[b] * xipos[b, j]


@numba.njit(cache=True, nogil=True)
def humanoid(qpos, qvel, cinert, cvel, qfrc_actuator, cfrc_ext, ctrl, mass, xipos, sq, csq, obs, com0, dt, p,
             skip, inc):
    """Humanoid. com0: centre of mass before the step (unnormalised sums, from centre_of_mass).
    p: [forward_w, ctrl_w, contact_w, contact cost lo, hi, healthy_reward, z lo, z hi, terminate];
    inc: include cinert, cvel, qfrc_actuator, cfrc_ext (0/1)."""
    k = 0
    for i in range(skip, qpos.size):
        obs[k] = qpos[i]
        k += 1
    for i in range(qvel.size):
        obs[k] = qvel[i]
        k += 1
    nb = cinert.shape[0]
    if inc[0]:
        for b in range(1, nb):
            for j in range(10):
                obs[k] = cinert[b, j]
                k += 1
    if inc[1]:
        for b in range(1, nb):
            for j in range(6):
                obs[k] = cvel[b, j]
                k += 1
    if inc[2]:
        for i in range(6, qfrc_actuator.size):
            obs[k] = qfrc_actuator[i]
            k += 1
    if inc[3]:
        for b in range(1, nb):
            for j in range(6):
                obs[k] = cfrc_ext[b, j]
                k += 1
    total = pairwise_sum(mass)
    x_before = com0[0] / total
    x_after = 0.0
    for b in range(mass.size):
        x_after += mass[b] * xipos[b, 0]
    x_after = x_after / total
    forward = p[0] * ((x_after - x_before) / dt)
    healthy = p[6] < qpos[2] < p[7]
    contact = clip(p[2] * sumsq(cfrc_ext, csq), p[3], p[4])
    reward = (forward + healthy * p[5]) - (p[1] * sumsq(ctrl, sq) + contact)
    return reward, (not healthy) and p[8] != 0.0


@numba.njit(cache=True, nogil=True)
def pairwise_sum(x):
    """np.sum(x) to the bit for a contiguous 1-D x of 1..128 elements."""
    n = x.size
    if n < 8:
        res = x[0]
        for i in range(1, n):
            res += x[i]
        return res
    r0, r1, r2, r3, r4, r5, r6, r7 = x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7]
    i, m = 8, n - n % 8
    while i < m:
        r0 += x[i]
        r1 += x[i + 1]
        r2 += x[i + 2]
        r3 += x[i + 3]
        r4 += x[i + 4]
        r5 += x[i + 5]
        r6 += x[i + 6]
        r7 += x[i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += x[i]
        i += 1
    return res


@numba.njit(cache=True, nogil=True)
def inverted_pendulum(qpos, qvel, obs):
    """InvertedPendulum: obs = (qpos, qvel); terminated if obs is not finite or |obs[1]| > 0.2."""
    k = 0
    for i in range(qpos.size):
        obs[k] = qpos[i]
        k += 1
    for i in range(qvel.size):
        obs[k] = qvel[i]
        k += 1
    finite = True
    for i in range(obs.size):
        finite = finite and np.isfinite(obs[i])
    return not finite or abs(obs[1]) > 0.2
