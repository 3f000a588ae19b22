"""Safe mutations through output gradients (SM-G; Lehman, Chen, Clune & Stanley 2017).

A mutation ``sigma * eps`` of a large or recurrent network changes its outputs very unevenly: a
few weights (early layers, recurrent loops) move everything, most move little. SM-G divides each
weight's mutation by the *sensitivity* of the network's outputs to that weight over a batch of
states the parent visited, so that every weight moves the outputs about equally.

- ``jacobians(spec, theta, x) -> G (n_out, T, d) float32``: per-sample, per-output gradients
  ``G[i, t] = d y_i(x_t) / d theta`` of the raw outputs (before the action map: clipping and
  argmax have no gradient) for ``esmpi.policies.mlp.MLPSpec`` (``x``: normalised inputs (T, obs_dim),
  see ``normalized_inputs``) and ``esmpi.policies.gru.GRUSpec`` (``x``: (B, L, n_in) sequences
  from h = 0; sample t = (sequence, step), gradients through time);
- ``sensitivity(G, method, direction=None) -> (d,) float32``, as the authors' code computes it:
  ``"sum"`` (SM-G-SUM) ``sqrt(sum_i (sum_t G[i, t])^2)``; ``"abs"`` (SM-G-ABS)
  ``sqrt(sum_i (mean_t |G[i, t]|)^2)``; ``"so"`` (SM-G-SO) ``sqrt(|H v|)`` with ``v`` the unit
  mutation direction and ``H`` the Hessian at theta of ``mean_t sum_i (y_i(x_t; theta') -
  y_i(x_t; theta))^2``, which there is exactly ``(2/T) sum_t J_t^T J_t`` (the residual is zero);
- ``mlp_outputs(spec, theta, x) -> (T, n_out)``: the batch forward pass (the policy kernel's bits);
- ``parent_sensitivity(spec, theta, obs, mean, std, clip, method)``: the above from raw observations
  (MLP);
- ``safe_mutation(theta, eps, sens, sigma) -> (d,) float32``: ``sigma * eps / s`` with ``s`` the
  sensitivity where it is 0 replaced by 1 (a weight that changes nothing is mutated plainly) and
  floored at ``FLOOR`` = 0.01, then clipped per weight to +-``CLIP`` = 0.2 (the authors' maze code;
  ``ga.smg_floor`` and ``ga.smg_clip`` change both).

Every rank recomputes the sensitivities (a derived cache, DESIGN.md rule 5), so the arithmetic is
deterministic to the bit on any CPU: float32 elementwise numpy (exactly rounded per element), the
policy's own numba nonlinearities (no SIMD-dispatched transcendental), and every reduction in
index order (products as loops over the input index, sums over samples as a loop over t, dot
products in a numba loop without fastmath). No BLAS.
"""

from __future__ import annotations

import numba
import numpy as np

from ..errors import ConfigError
from .mlp import _TANH_P, _TANH_Q, NONLIN, MLPSpec, _activate
from .gru import GRUSpec, GRUTrace, _affine, forward as gru_forward

FLOOR = 0.01
CLIP = 0.2
METHODS = ("sum", "abs", "so")


def normalized_inputs(obs: np.ndarray, mean: np.ndarray, std: np.ndarray, clip: float) -> np.ndarray:
    """(T, n0) float32: ``clip((float32(obs) - mean) / std, -clip, clip)``, as the policy kernel does."""
    x = (np.asarray(obs, np.float32) - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.clip(x, -np.float32(clip), np.float32(clip))


def _act(pre: np.ndarray, nonlin: int) -> np.ndarray:
    out = np.array(pre, np.float32, copy=True)
    _activate(out.reshape(-1), nonlin, _TANH_P, _TANH_Q)   # the policy's own kernel
    return out


def _act_grad(pre: np.ndarray, post: np.ndarray, nonlin: int) -> np.ndarray:
    one = np.float32(1)
    if nonlin == NONLIN["tanh"]:
        return one - post * post
    if nonlin == NONLIN["relu"]:
        return (pre > 0).astype(np.float32)
    if nonlin == NONLIN["elu"]:          # elu'(a) = exp(a) = elu(a) + 1 for a < 0
        return np.where(pre > 0, one, post + one)
    if nonlin == NONLIN["selu"]:         # selu'(a) = scale alpha exp(a) = selu(a) + scale alpha for a < 0
        scale, alpha = np.float32(1.0507009873554805), np.float32(1.6732632423543772)
        return np.where(pre > 0, scale, post + np.float32(scale * alpha))
    return np.ones_like(pre)


def _mlp_forward(spec: MLPSpec, layers, x: np.ndarray):
    nonlin = NONLIN[spec.nonlinearity]
    acts, pres = [np.asarray(x, np.float32)], []
    for li, (W, b) in enumerate(layers):
        pre = _affine(b, [(acts[-1], W)])
        pres.append(pre)
        acts.append(pre if li == len(layers) - 1 else _act(pre, nonlin))
    return acts, pres


def mlp_outputs(spec: MLPSpec, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
    """(T, n_out) raw outputs of the MLP on normalised inputs x (T, obs_dim), in the same float order."""
    return _mlp_forward(spec, spec.unflatten(np.asarray(theta, np.float32)), x)[0][-1]


def mlp_jacobians(spec: MLPSpec, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
    nonlin = NONLIN[spec.nonlinearity]
    layers = spec.unflatten(np.asarray(theta, np.float32))
    acts, pres = _mlp_forward(spec, layers, x)
    T, n_out = acts[0].shape[0], spec.n_out
    G = np.zeros((n_out, T, spec.num_params), np.float32)
    for i in range(n_out):
        delta = np.zeros((T, n_out), np.float32)
        delta[:, i] = 1
        pos_end = spec.num_params
        for li in range(len(layers) - 1, -1, -1):
            W, b = layers[li]
            n_in, n = W.shape
            G[i, :, pos_end - n : pos_end] = delta                                    # d y / d b
            G[i, :, pos_end - n - n_in * n : pos_end - n] = \
                (acts[li][:, :, None] * delta[:, None, :]).reshape(T, n_in * n)      # d y / d W (row-major)
            pos_end -= n + n_in * n
            if li:
                back = _affine(np.zeros(n_in, np.float32), [(delta, W.T)])          # delta @ W.T, in order
                delta = back * _act_grad(pres[li - 1], acts[li], nonlin)
    return G


def _rows(x: np.ndarray, W: np.ndarray) -> np.ndarray:
    """``x @ W`` for x (..., k), summed in input order (``_affine``) over the flattened leading dims."""
    flat = x.reshape(-1, x.shape[-1])
    return _affine(np.zeros(W.shape[1], np.float32), [(flat, W)]).reshape(*x.shape[:-1], W.shape[1])


def _bptt_step(P, tr: GRUTrace, s: int, dh: np.ndarray, grad: dict) -> np.ndarray:
    """Step s of C backward chains at once: accumulate the parameter gradients (C, B, ...) given
    dL/dh_s (C, B, H); returns dL/dh_{s-1}. The forward values at step s are (B, ...) and broadcast
    over the chains, so each chain gets exactly the bits a chain run alone would."""
    one = np.float32(1)
    x, hp, z, r, c = tr.xs[s], tr.h_prev[s], tr.z[s], tr.r[s], tr.c[s]
    da_h = dh * z * (one - c * c)
    da_z = dh * (c - hp) * z * (one - z)
    rh_bar = _rows(da_h, P["U_h"].T)
    da_r = rh_bar * hp * r * (one - r)
    for g, da, h_in in (("z", da_z, hp), ("r", da_r, hp), ("h", da_h, r * hp)):
        grad[f"W_{g}"] += x[:, :, None] * da[..., None, :]
        grad[f"U_{g}"] += h_in[:, :, None] * da[..., None, :]
        grad[f"b_{g}"] += da
    flat = (da_z.reshape(-1, da_z.shape[-1]), da_r.reshape(-1, da_r.shape[-1]))
    back = _affine(np.zeros(hp.shape[1], np.float32), [(flat[0], P["U_z"].T), (flat[1], P["U_r"].T)])
    return dh * (one - z) + rh_bar * r + back.reshape(dh.shape)


def gru_jacobians(spec: GRUSpec, theta: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Per-sample gradients by backpropagation through time: for output i, one backward chain per
    target step t (all B sequences in a batch), run together from step L - 1 down to 0 (chain t joins
    at step t), so the cost is L batched steps instead of L (L + 1) / 2 single ones."""
    tr = gru_forward(spec, theta, xs)
    P = spec.unflatten(np.asarray(theta, np.float32))
    B, L, _ = tr.y.shape
    H = spec.hidden
    offs = spec.offsets()
    G = np.zeros((spec.n_out, B * L, spec.num_params), np.float32)
    for i in range(spec.n_out):
        grad = {n: np.zeros((L, B, *s), np.float32) for n, (_, s) in offs.items()}   # chain t, sequence b
        for t in range(L):
            grad["W_o"][t, :, :, i] = tr.h[t]
            grad["b_o"][t, :, i] = 1
        dh = np.broadcast_to(P["W_o"][:, i], (L, B, H)).astype(np.float32)
        for s in range(L - 1, -1, -1):              # chains t >= s are active at step s
            dh[s:] = _bptt_step(P, tr, s, dh[s:], {n: g[s:] for n, g in grad.items()})
        for n, (p, shape) in offs.items():          # sample (b, t) is row b L + t
            G[i, :, p : p + int(np.prod(shape))] = grad[n].transpose(1, 0, *range(2, grad[n].ndim)).reshape(B * L, -1)
    return G


def jacobians(spec, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Per-sample, per-output gradients (n_out, T, d); a one-line ConfigError for what SM-G cannot use."""
    x = np.asarray(x)
    if x.shape[0] == 0 or x.size == 0:
        raise ConfigError("SM-G needs at least one recorded state: the batch of recorded observations is empty")
    if not np.all(np.isfinite(x)):
        raise ConfigError("SM-G: the recorded observations hold NaN or inf")
    if isinstance(spec, MLPSpec):
        if x.ndim != 2 or x.shape[1] != spec.obs_dim:
            raise ConfigError(f"SM-G: recorded states have shape {x.shape}, the MLP takes (T, {spec.obs_dim})")
        return mlp_jacobians(spec, theta, x)
    if isinstance(spec, GRUSpec):
        if x.ndim != 3 or x.shape[2] != spec.n_in:
            raise ConfigError(f"SM-G: recorded sequences have shape {x.shape}, the GRU takes (B, L, {spec.n_in})")
        return gru_jacobians(spec, theta, x)
    raise ConfigError(f"SM-G needs output gradients, which policy {type(spec).__name__} does not provide "
                      "(supported: the MLP and the GRU policy); use plain mutation")


@numba.njit(cache=True, nogil=True)
def _dot(a, b):
    # index order, float32, no fastmath: no reassociation, no FMA contraction
    s = np.float32(0.0)
    for k in range(a.size):
        s = s + a[k] * b[k]
    return s


def _sum_rows(A: np.ndarray) -> np.ndarray:
    acc = np.zeros(A.shape[1], np.float32)
    for row in A:                      # t ascending
        acc += row
    return acc


def sensitivity(G: np.ndarray, method: str = "sum", direction: np.ndarray | None = None) -> np.ndarray:
    """(d,) float32 sensitivities from ``G`` (n_out, T, d); ``direction`` (d,) for ``"so"``."""
    if method not in METHODS:
        raise ConfigError(f"unknown SM-G method {method!r}; choose one of {', '.join(METHODS)}")
    n_out, T, d = G.shape
    acc = np.zeros(d, np.float32)
    if method == "so":
        if direction is None or np.shape(direction) != (d,):
            raise ValueError(f"SM-G-SO needs the mutation direction, shape ({d},)")
        v = np.asarray(direction, np.float32)
        v = v / np.sqrt(np.float32(_dot(v, v)))
        for t in range(T):
            for i in range(n_out):
                acc += np.float32(_dot(G[i, t], v)) * G[i, t]
        return np.sqrt(np.abs(acc * np.float32(2.0 / T)))
    for i in range(n_out):
        s = _sum_rows(G[i]) if method == "sum" else _sum_rows(np.abs(G[i])) / np.float32(T)
        acc += s * s
    return np.sqrt(acc)


def parent_sensitivity(spec: MLPSpec, theta: np.ndarray, obs: np.ndarray, obs_mean: np.ndarray,
                       obs_std: np.ndarray, obs_clip: float, method: str = "sum") -> np.ndarray:
    """The MLP parent's (d,) sensitivities from raw recorded observations (T, obs_dim) and the
    normalisation the parent was evaluated with (the GA's per-parent derived cache; not "so",
    which depends on each child's direction: call ``sensitivity(G, "so", eps)`` per child)."""
    if method == "so":
        raise ConfigError("SM-G-SO depends on the mutation direction: compute it per child with "
                          "sensitivity(G, 'so', eps)")
    obs = np.asarray(obs)
    if obs.ndim != 2 or obs.shape[0] == 0:
        raise ConfigError("SM-G needs at least one recorded state: the batch of recorded observations is empty")
    return sensitivity(jacobians(spec, theta, normalized_inputs(obs, obs_mean, obs_std, obs_clip)), method)


def safe_mutation(theta: np.ndarray, eps: np.ndarray, sens: np.ndarray, sigma: float, floor: float = FLOOR,
                  clip: float = CLIP) -> np.ndarray:
    """The perturbation (d,) float32 to add to ``theta``: ``clip(sigma * eps / s, -clip, clip)`` with
    ``s = sens`` (0 -> 1, then at least ``floor``); the authors' values are the defaults."""
    d = np.shape(theta)[0]
    if np.shape(eps) != (d,) or np.shape(sens) != (d,):
        raise ValueError(f"theta, eps and sens must all be ({d},)")
    s = np.asarray(sens, np.float32)
    s = np.where(s == 0, np.float32(1), np.maximum(s, np.float32(floor)))
    delta = (np.float32(sigma) * np.asarray(eps, np.float32)) / s
    return np.clip(delta, -np.float32(clip), np.float32(clip))
