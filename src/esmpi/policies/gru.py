"""A small recurrent policy: one GRU cell and a linear read-out, on a flat float32 theta.

Layout of theta (float32, ``(num_params,)``), for ``n_in`` inputs, ``H`` hidden units, ``n_out``
outputs, each matrix row-major like ``esmpi.policies.mlp``'s layers:

    W_z (n_in, H), U_z (H, H), b_z (H,),      update gate
    W_r (n_in, H), U_r (H, H), b_r (H,),      reset gate
    W_h (n_in, H), U_h (H, H), b_h (H,),      candidate state
    W_o (H, n_out), b_o (n_out,)              read-out

One step, from h (H,) and input x (n_in,) (h = 0 at the start of a sequence):

    z = sigmoid(x W_z + h U_z + b_z),  r = sigmoid(x W_r + h U_r + b_r)
    c = tanh(x W_h + (r * h) U_h + b_h),  h' = (1 - z) * h + z * c,  y = h' W_o + b_o

``tanh`` is ``esmpi.policies.mlp``'s float32 kernel and ``sigmoid(a) = 0.5 + 0.5 tanh(a / 2)`` (exact
identity), so no libm or SIMD-dispatched transcendental is used. Matrix products are explicit loops
over the input index (``_affine``): no BLAS, the same bits on every CPU.

``forward(theta, xs (B, L, n_in)) -> GRUTrace`` runs B sequences of L steps and keeps what the
backward pass (``esmpi.policies.sensitivity``) needs. ``GRUPolicy`` is the policy an env objective
runs (``policy.kind = "gru"``): one numba step per observation (``_step``, the same loops in the
same order, so the same bits as ``forward``: tested), observation normalisation and the action map
of ``esmpi.policies.mlp`` (a box: the outputs clipped to it; a discrete space: the first argmax),
and a hidden state that every episode starts at zero (``reset``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from .mlp import _TANH_P, _TANH_Q, ActionSpec, KernelPolicy, _activate, tanh

GATES = ("z", "r", "h")


@dataclass(frozen=True)
class GRUSpec:
    n_in: int
    hidden: int = 16
    n_out: int = 1
    action: ActionSpec | None = None     # the env's action space (a policy; n_out = its size); None: raw outputs

    @property
    def obs_dim(self) -> int:
        return self.n_in

    @property
    def layer_sizes(self) -> list[int]:
        return [self.n_in, self.hidden, self.n_out]

    def shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        H = self.hidden
        out = []
        for g in GATES:
            out += [(f"W_{g}", (self.n_in, H)), (f"U_{g}", (H, H)), (f"b_{g}", (H,))]
        return out + [("W_o", (H, self.n_out)), ("b_o", (self.n_out,))]

    @property
    def num_params(self) -> int:
        return sum(int(np.prod(s)) for _, s in self.shapes())

    def offsets(self) -> dict[str, tuple[int, tuple[int, ...]]]:
        """name -> (start in theta, shape)."""
        pos, out = 0, {}
        for name, shape in self.shapes():
            out[name] = (pos, shape)
            pos += int(np.prod(shape))
        return out

    def unflatten(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        """Views of theta by name (no copy)."""
        return {n: theta[p : p + int(np.prod(s))].reshape(s) for n, (p, s) in self.offsets().items()}

    def init_theta(self, rng: np.random.Generator) -> np.ndarray:
        """Weights N(0, 1 / fan_in), biases 0 (the read-out scaled by 0.1)."""
        theta = np.zeros(self.num_params, np.float32)
        for name, w in self.unflatten(theta).items():
            if name[0] in "WU":
                w[:] = rng.standard_normal(w.shape) / np.sqrt(w.shape[0]) * (0.1 if name == "W_o" else 1.0)
        return theta


def sigmoid(a: np.ndarray) -> np.ndarray:
    return np.float32(0.5) + np.float32(0.5) * tanh(a * np.float32(0.5))


def _affine(b: np.ndarray, pairs) -> np.ndarray:
    """``b + sum over (x (B, k), W (k, n)) of x @ W``, summed term by term in input order (no BLAS)."""
    out = np.broadcast_to(b, (pairs[0][0].shape[0], b.size)).copy()
    for x, W in pairs:
        for k in range(W.shape[0]):
            out += x[:, k : k + 1] * W[k]
    return out


@dataclass
class GRUTrace:
    """Per step t (lists of L arrays (B, ...)): the input, the previous state and the gates; and the outputs."""

    xs: list
    h_prev: list
    z: list
    r: list
    c: list
    h: list
    y: np.ndarray       # (B, L, n_out) float32


def forward(spec: GRUSpec, theta: np.ndarray, xs: np.ndarray) -> GRUTrace:
    xs = np.asarray(xs, np.float32)
    if xs.ndim != 3 or xs.shape[2] != spec.n_in:
        raise ValueError(f"inputs must be (B, L, {spec.n_in}), got {xs.shape}")
    P = spec.unflatten(np.asarray(theta, np.float32))
    B, L, _ = xs.shape
    h = np.zeros((B, spec.hidden), np.float32)
    tr = GRUTrace([], [], [], [], [], [], np.empty((B, L, spec.n_out), np.float32))
    for t in range(L):
        x = xs[:, t, :]
        z = sigmoid(_affine(P["b_z"], [(x, P["W_z"]), (h, P["U_z"])]))
        r = sigmoid(_affine(P["b_r"], [(x, P["W_r"]), (h, P["U_r"])]))
        c = tanh(_affine(P["b_h"], [(x, P["W_h"]), (r * h, P["U_h"])]))
        h_new = (np.float32(1) - z) * h + z * c
        for lst, v in ((tr.xs, x), (tr.h_prev, h), (tr.z, z), (tr.r, r), (tr.c, c), (tr.h, h_new)):
            lst.append(v)
        tr.y[:, t, :] = _affine(P["b_o"], [(h_new, P["W_o"])])
        h = h_new
    return tr


@numba.njit(cache=True, nogil=True)
def _gate(a, b, W, U, x, h, n_in, H):
    # a = b + x W + h U, summed term by term in input order (``_affine``'s order, no FMA contraction)
    for j in range(H):
        a[j] = b[j]
    for k in range(n_in):
        for j in range(H):
            a[j] = a[j] + x[k] * W[k * H + j]
    for k in range(H):
        for j in range(H):
            a[j] = a[j] + h[k] * U[k * H + j]


@numba.njit(cache=True, nogil=True)
def _sigmoid(a, P, Q):
    for j in range(a.size):
        a[j] = a[j] * np.float32(0.5)
    _activate(a, 0, P, Q)
    for j in range(a.size):
        a[j] = np.float32(0.5) + np.float32(0.5) * a[j]


@numba.njit(cache=True, nogil=True)
def _step(obs, theta, aux, meta, h, scratch, action, P, Q):
    """One step of the GRU policy: obs (n_in,) float64 and state h (H,) float32 (updated in place) ->
    -1 (box: ``action`` filled), the discrete action index (>= 0), or -2 if obs holds NaN/inf (h kept).

    meta (int64): [n_in, H, n_out, mode (0 box, 1 discrete, 2 raw outputs)];
    aux (float32): [mean (n_in), std (n_in), low (act_dim), high (act_dim), obs_clip];
    scratch (float32, n_in + 5 H + n_out): x, z, r, c, r * h, h', y. Same bits as ``forward``."""
    n_in, H, n_out, mode = meta[0], meta[1], meta[2], meta[3]
    clip = aux[aux.size - 1]
    x = scratch[:n_in]
    for i in range(n_in):
        o = obs[i]
        if not np.isfinite(o):
            return -2
        v = (np.float32(o) - aux[i]) / aux[n_in + i]
        x[i] = min(max(v, -clip), clip)
    z = scratch[n_in : n_in + H]
    r = scratch[n_in + H : n_in + 2 * H]
    c = scratch[n_in + 2 * H : n_in + 3 * H]
    rh = scratch[n_in + 3 * H : n_in + 4 * H]
    hn = scratch[n_in + 4 * H : n_in + 5 * H]
    y = scratch[n_in + 5 * H :]
    blk = n_in * H + H * H + H                       # one gate's W, U, b
    for g in range(3):
        pos = g * blk
        W, U, b = theta[pos : pos + n_in * H], theta[pos + n_in * H : pos + blk - H], theta[pos + blk - H : pos + blk]
        if g == 0:
            _gate(z, b, W, U, x, h, n_in, H)
            _sigmoid(z, P, Q)
        elif g == 1:
            _gate(r, b, W, U, x, h, n_in, H)
            _sigmoid(r, P, Q)
        else:
            for k in range(H):
                rh[k] = r[k] * h[k]
            _gate(c, b, W, U, x, rh, n_in, H)
            _activate(c, 0, P, Q)
    for j in range(H):
        hn[j] = (np.float32(1.0) - z[j]) * h[j] + z[j] * c[j]
    for j in range(H):
        h[j] = hn[j]
    pos = 3 * blk
    for j in range(n_out):
        y[j] = theta[pos + H * n_out + j]
    for k in range(H):
        for j in range(n_out):
            y[j] = y[j] + h[k] * theta[pos + k * n_out + j]
    if mode == 1:
        best = 0
        for j in range(n_out):
            if y[j] > y[best]:
                best = j
        return best
    if mode == 0:
        lo = 2 * n_in
        for j in range(n_out):
            action[j] = min(max(y[j], aux[lo + j]), aux[lo + n_out + j])
    return -1


class GRUPolicy(KernelPolicy):
    """The policy: ``obs (n_in,) float64 -> action`` (float32 array for a box, int for a discrete
    space, the raw outputs for a spec without action), or ``None`` when obs holds NaN/inf; the
    hidden state persists between calls and ``reset()`` zeroes it (every episode starts with one).
    The same interface as ``esmpi.policies.mlp.MLPPolicy``; the returned array is a reused buffer."""

    recurrent = True

    def __init__(self, spec: GRUSpec, obs_clip: float = 5.0):
        a = spec.action
        self._mode = 2 if a is None else 1 if a.kind == "discrete" else 0
        self._init_kernel_inputs(spec, a if self._mode == 0 else None, obs_clip)
        self._meta = np.array([spec.n_in, spec.hidden, spec.n_out, self._mode], np.int64)
        self._scratch = np.zeros(spec.n_in + 5 * spec.hidden + spec.n_out, np.float32)
        self.h = np.zeros(spec.hidden, np.float32)

    def reset(self) -> None:
        self.h[:] = 0

    def __call__(self, obs: np.ndarray):
        r = _step(np.asarray(obs, np.float64), self._theta, self._aux, self._meta, self.h, self._scratch,
                  self._action, _TANH_P, _TANH_Q)
        if r == -2:
            return None
        return int(r) if self._mode == 1 else self._action if self._mode == 0 else self.output

    @property
    def output(self) -> np.ndarray:
        """The raw outputs y (n_out,) of the latest call (a view)."""
        return self._scratch[-self.spec.n_out :]
