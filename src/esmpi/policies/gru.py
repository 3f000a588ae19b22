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
backward pass (``esmpi.policies.sensitivity``) needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .mlp import tanh

GATES = ("z", "r", "h")


@dataclass(frozen=True)
class GRUSpec:
    n_in: int
    hidden: int = 16
    n_out: int = 1

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


class GRUPolicy:
    """Callable ``obs (n_in,) -> output (n_out,) float32`` keeping its hidden state; ``reset()`` zeroes it."""

    def __init__(self, spec: GRUSpec, theta: np.ndarray):
        self.spec, self.theta = spec, np.asarray(theta, np.float32)
        self.reset()

    def reset(self) -> None:
        self.h = np.zeros((1, self.spec.hidden), np.float32)

    def __call__(self, obs) -> np.ndarray:
        P = self.spec.unflatten(self.theta)
        x = np.asarray(obs, np.float32).reshape(1, -1)
        h = self.h
        z = sigmoid(_affine(P["b_z"], [(x, P["W_z"]), (h, P["U_z"])]))
        r = sigmoid(_affine(P["b_r"], [(x, P["W_r"]), (h, P["U_r"])]))
        c = tanh(_affine(P["b_h"], [(x, P["W_h"]), (r * h, P["U_h"])]))
        self.h = (np.float32(1) - z) * h + z * c
        return _affine(P["b_o"], [(self.h, P["W_o"])])[0]
