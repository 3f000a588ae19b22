"""Flat-theta MLP policy: layout, normc initialisation and the forward pass (hot path).

Layout of theta (float32, shape ``(num_params,)``): for each layer l with sizes (n_in, n_out),
``W_l`` of shape ``(n_out, n_in)`` row-major, then ``b_l`` of shape ``(n_out,)``. Layer sizes
are ``[obs_dim, *hidden, n_out]`` with ``n_out = act_dim`` (continuous), ``act_dim * bins``
(discretised box) or ``n`` (discrete space). Weights use the reference's normc initialiser
(each unit's incoming weight vector has norm ``hidden_init_std`` / ``output_init_std``), biases 0.

The forward pass works on preallocated float32 buffers (no per-step allocation):
``x = clip((obs - mean) / std, -clip, clip)``, ``h = act(W h + b)``, then the action map.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_ACTS = {
    "tanh": lambda h: np.tanh(h, out=h),
    "relu": lambda h: np.maximum(h, 0, out=h),
    "linear": lambda h: h,
}


def _elu(h):
    neg = h < 0
    h[neg] = np.expm1(h[neg])
    return h


def _selu(h):
    _elu(h)
    h[h < 0] *= np.float32(1.6732632)
    h *= np.float32(1.0507010)
    return h


_ACTS["elu"] = _elu
_ACTS["selu"] = _selu


@dataclass(frozen=True)
class ActionSpec:
    """What the env accepts: ``kind`` 'box' (``dim``, ``low``, ``high``) or 'discrete' (``n``)."""

    kind: str
    dim: int = 0
    low: tuple = ()
    high: tuple = ()
    n: int = 0


@dataclass(frozen=True)
class MLPSpec:
    obs_dim: int
    action: ActionSpec
    hidden: tuple = (64, 64)
    nonlinearity: str = "tanh"
    action_bins: int = 0
    hidden_init_std: float = 1.0
    output_init_std: float = 0.01

    @property
    def n_out(self) -> int:
        if self.action.kind == "discrete":
            return self.action.n
        return self.action.dim * (self.action_bins if self.action_bins else 1)

    @property
    def layer_sizes(self) -> list[int]:
        return [self.obs_dim, *self.hidden, self.n_out]

    @property
    def num_params(self) -> int:
        s = self.layer_sizes
        return sum(s[i + 1] * s[i] + s[i + 1] for i in range(len(s) - 1))

    def unflatten(self, theta: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Views ``[(W (n_out, n_in), b (n_out,)), ...]`` into theta (no copy)."""
        out, pos, s = [], 0, self.layer_sizes
        for i in range(len(s) - 1):
            n_in, n_out = s[i], s[i + 1]
            W = theta[pos : pos + n_in * n_out].reshape(n_out, n_in)
            pos += n_in * n_out
            b = theta[pos : pos + n_out]
            pos += n_out
            out.append((W, b))
        return out

    def init_theta(self, rng: np.random.Generator) -> np.ndarray:
        theta = np.zeros(self.num_params, dtype=np.float32)
        layers = self.unflatten(theta)
        for i, (W, _) in enumerate(layers):
            std = self.output_init_std if i == len(layers) - 1 else self.hidden_init_std
            w = rng.standard_normal(W.shape)
            w *= std / np.sqrt(np.square(w).sum(axis=1, keepdims=True))
            W[:] = w
        return theta


class MLPPolicy:
    """Callable ``obs (obs_dim,) float64 -> action``; set theta and normalisation first.

    The returned action array is a reused buffer: copy it if you keep it.
    """

    def __init__(self, spec: MLPSpec, obs_clip: float = 5.0):
        self.spec = spec
        self.obs_clip = np.float32(obs_clip)
        sizes = spec.layer_sizes
        self._x = np.zeros(sizes[0], np.float32)
        self._h = [np.zeros(n, np.float32) for n in sizes[1:]]
        self._act = _ACTS[spec.nonlinearity]
        self.mean = np.zeros(spec.obs_dim, np.float32)
        self.std = np.ones(spec.obs_dim, np.float32)
        self._layers = None
        a = spec.action
        if a.kind == "box":
            self._low = np.asarray(a.low, np.float32)
            self._high = np.asarray(a.high, np.float32)
            self._action = np.zeros(a.dim, np.float32)
            if spec.action_bins:
                k = spec.action_bins
                self._bin_scale = (self._high - self._low) / np.float32(k - 1)
                self._rows = np.arange(a.dim)

    def set_theta(self, theta: np.ndarray) -> None:
        self._layers = self.spec.unflatten(theta)

    def set_obs_norm(self, mean: np.ndarray, std: np.ndarray) -> None:
        self.mean[:] = mean
        self.std[:] = std

    def __call__(self, obs: np.ndarray):
        x = self._x
        x[:] = obs
        x -= self.mean
        x /= self.std
        np.clip(x, -self.obs_clip, self.obs_clip, out=x)
        last = len(self._layers) - 1
        for i, (W, b) in enumerate(self._layers):
            h = self._h[i]
            np.matmul(W, x, out=h)
            h += b
            if i < last:
                self._act(h)
            x = h
        spec = self.spec
        if spec.action.kind == "discrete":
            return int(np.argmax(x))
        if spec.action_bins:
            idx = np.argmax(x.reshape(spec.action.dim, spec.action_bins), axis=1)
            np.multiply(idx, self._bin_scale, out=self._action)
            self._action += self._low
            return self._action
        return np.clip(x, self._low, self._high, out=self._action)
