"""CNN policies over a flat float32 theta for Atari from pixels, with virtual batch normalisation.

Nets (ReLU, valid padding, argmax over the game's minimal action set):

- ``a3c``    conv 16 8x8/4, conv 32 4x4/2, fc 256 (Mnih et al. 2016; Salimans et al. 2017)
- ``nature`` conv 32 8x8/4, conv 64 4x4/2, conv 64 3x3/1, fc 512 (Mnih et al. 2015; Such et al. 2017)

Layout of theta (float32, ``(num_params,)``), layer by layer, hidden layers then the output:
``W`` of shape (fan_in, n_out) row-major, then ``shift`` (n_out,). A conv's rows are ordered
``(c_in, i, j)``, i.e. PyTorch's (out, in, kh, kw) weight transposed to (in, kh, kw, out); the fc
layer reads the last conv's output flattened as (channel, y, x). Without VBN ``shift`` is the
bias; with VBN it is batch norm's beta, added after normalising (a bias before the normalisation
would cancel out, so the slot is reused and the layout is the same with VBN on or off). The output
layer's ``shift`` is its bias.

Virtual batch normalisation (Salimans et al. 2016, 2017), after every hidden layer and before its
ReLU: ``relu((h - mean) * inv_std + beta)`` where ``mean`` and ``inv_std = 1/sqrt(var + eps)`` are
the statistics of that layer's activations on the fixed reference batch under the *current* theta,
recomputed by ``set_theta`` (each perturbed theta gets its own statistics; the observation being
acted on is not part of the batch). No learned scale gamma: as uber-research/deep-neuroevolution's
``ModelVirtualBN`` (the next layer's weights carry the scale).

Initialisation (``init_theta``): ``W ~ N(0, 1) * gain / sqrt(fan_in)`` with gain 1 for hidden
layers and 0.1 for the output layer, shifts 0 (the Deep GA code's init: a policy starts near
uniform logits without saturating any unit).
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from . import cnn_kernels as K

NETS = {  # name -> (convs as (c_out, kernel, stride), fc sizes)
    "a3c": (((16, 8, 4), (32, 4, 2)), (256,)),
    "nature": (((32, 8, 4), (64, 4, 2), (64, 3, 1)), (512,)),
}
_LUT = (np.arange(256, dtype=np.float64) / 255.0).astype(np.float32)  # uint8 pixel -> [0, 1]


def require_norm_layers(policy_type: str, vbn: bool, key: str = "policy.vbn") -> None:
    """VBN needs normalisation layers: only the CNNs have them."""
    if vbn and policy_type not in NETS:
        raise ConfigError(f"{key} = true: the {policy_type!r} policy has no normalisation layers; "
                          f"use a CNN policy ({', '.join(NETS)}) or set {key} = false")


class CNNSpec:
    """The architecture: ``net`` in NETS, input (stack, size, size) uint8 frames, ``n_actions``."""

    def __init__(self, net: str, n_actions: int, in_shape=(4, 84, 84), vbn: bool = True, vbn_eps: float = 1e-3):
        if net not in NETS:
            raise ConfigError(f"atari.net = {net!r}: unknown network; use one of {', '.join(NETS)}")
        self.net, self.n_actions, self.vbn, self.vbn_eps = net, int(n_actions), bool(vbn), float(vbn_eps)
        self.in_shape = tuple(int(x) for x in in_shape)
        convs, fcs = NETS[net]
        c, h, w = self.in_shape
        self.convs = []                          # (c_in, k, s, c_out, OH, OW)
        for c_out, k, s in convs:
            oh, ow = (h - k) // s + 1, (w - k) // s + 1
            if oh < 1 or ow < 1:
                raise ConfigError(f"atari.screen_size = {self.in_shape[1]}: too small for the {net} net")
            self.convs.append((c, k, s, c_out, oh, ow))
            c, h, w = c_out, oh, ow
        self.fcs = [(c * h * w if i == 0 else fcs[i - 1], n) for i, n in enumerate(fcs)]
        self.shapes = [(ci * k * k, co) for ci, k, s, co, _, _ in self.convs] + list(self.fcs) \
            + [(fcs[-1], self.n_actions)]
        self.num_params = sum(a * b + b for a, b in self.shapes)

    def unflatten(self, theta: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Views (W, shift) per layer into ``theta`` (no copies)."""
        out, p = [], 0
        for a, b in self.shapes:
            out.append((theta[p:p + a * b].reshape(a, b), theta[p + a * b:p + a * b + b]))
            p += a * b + b
        return out

    def init_theta(self, rng: np.random.Generator) -> np.ndarray:
        theta = np.zeros(self.num_params, np.float32)
        for li, (W, _) in enumerate(self.unflatten(theta)):
            gain = 0.1 if li == len(self.shapes) - 1 else 1.0
            W[:] = rng.standard_normal(W.shape) * (gain / np.sqrt(W.shape[0]))
        return theta

    def to_dict(self) -> dict:
        return {"type": "cnn", "net": self.net, "n_actions": self.n_actions, "in_shape": list(self.in_shape),
                "vbn": self.vbn, "vbn_eps": self.vbn_eps, "num_params": self.num_params,
                "theta_layout": "per layer: W (fan_in, n_out) row-major (conv rows (c_in, i, j)), then shift (n_out,)"}

    @classmethod
    def from_dict(cls, d: dict) -> "CNNSpec":
        return cls(d["net"], d["n_actions"], tuple(d["in_shape"]), d["vbn"], d["vbn_eps"])


class CNNPolicy:
    """``set_reference_batch(frames)`` once, ``set_theta(theta)`` per candidate, ``policy(obs) -> action``
    (an index into the minimal action set, or -1 when theta or the logits are not finite). All buffers
    are allocated here; a step allocates nothing. The first layer's patches are kept per frame and
    reused when the next observation is this one shifted by a frame (``cnn_kernels.stack_patches``)."""

    def __init__(self, spec: CNNSpec):
        self.s = spec
        self.num_params = spec.num_params
        stack, k, _, _, oh, ow = spec.convs[0]
        self._blocks = np.zeros((stack, k * k, oh * ow), np.float32)   # first-layer patches, one block per frame
        self._order = np.arange(stack, dtype=np.int64)                   # input channel c -> its block
        self._prev = np.zeros(spec.in_shape, np.uint8)
        self._have_prev = np.zeros(1, np.int64)
        self._P = [np.zeros((1, ci * k * k, oh * ow), np.float32) for ci, k, _, _, oh, ow in spec.convs[1:]]
        self._order0 = np.zeros(1, np.int64)
        self._h = [np.zeros((co, oh, ow), np.float32) for _, _, _, co, oh, ow in spec.convs] + \
                  [np.zeros(n, np.float32) for _, n in spec.fcs]
        self._logits = np.zeros(spec.n_actions, np.float32)
        self.vbn_mean = [np.zeros(h.shape[0], np.float32) for h in self._h]
        self.vbn_inv_std = [np.ones(h.shape[0], np.float32) for h in self._h]
        self._ref = None
        self._ref_h = None
        self._layers = None
        self.ok = False

    def init_theta(self, rng: np.random.Generator) -> np.ndarray:
        return self.s.init_theta(rng)

    def spec(self) -> dict:
        return self.s.to_dict()

    @classmethod
    def from_spec(cls, d: dict) -> "CNNPolicy":
        """Rebuild from ``spec()`` (e.g. a checkpoint's JSON); a VBN policy then needs its reference batch."""
        return cls(CNNSpec.from_dict(d))

    def set_reference_batch(self, frames_u8: np.ndarray) -> None:
        """(B, stack, H, W) uint8 observations, kept for every set_theta."""
        frames_u8 = np.ascontiguousarray(frames_u8, dtype=np.uint8)
        if frames_u8.ndim != 4 or frames_u8.shape[1:] != self.s.in_shape or frames_u8.shape[0] < 2:
            raise ConfigError(f"VBN reference batch: shape {frames_u8.shape}, expected (B >= 2, "
                              f"{', '.join(map(str, self.s.in_shape))})")
        self._ref = frames_u8
        B = frames_u8.shape[0]
        self._ref_h = [np.zeros((B,) + h.shape, np.float32) for h in self._h]
        self._ref_blocks = np.zeros_like(self._blocks)
        self._ref_order = np.arange(self.s.in_shape[0], dtype=np.int64)
        self._ref_prev = np.zeros(self.s.in_shape, np.uint8)
        self._ref_flag = np.zeros(1, np.int64)

    def set_theta(self, theta: np.ndarray) -> bool:
        """Bind theta (kept by reference: do not modify it while acting) and, with VBN, recompute the
        reference statistics under it. Returns ``self.ok``: False if theta or a statistic is not finite."""
        if theta.dtype != np.float32 or theta.shape != (self.num_params,):
            raise ValueError(f"theta: expected ({self.num_params},) float32, got {theta.shape} {theta.dtype}")
        self._layers = self.s.unflatten(theta)
        self.ok = bool(np.isfinite(theta).all())
        if self.ok and self.s.vbn:
            if self._ref is None:
                raise RuntimeError("VBN policy: set_reference_batch must be called before set_theta")
            self._reference_stats()
            self.ok = all(np.isfinite(m).all() and np.isfinite(v).all()
                          for m, v in zip(self.vbn_mean, self.vbn_inv_std))
        return self.ok

    def _raw(self, li, x, h, blocks=None, order=None):
        """Layer li's raw (pre-normalisation) activations of one input into ``h``."""
        s, W = self.s, self._layers[li][0]
        if li == 0:
            K.patch_sum(blocks, order, W, h)
        elif li < len(s.convs):
            _, k, st, _, _, _ = s.convs[li]
            K.conv_raw(x, W, k, st, self._P[li - 1], self._order0, h)
        else:
            K.dense_raw(x.ravel(), W, h)

    def _reference_stats(self) -> None:
        """Layer by layer over the whole reference batch: raw activations, their statistics, then the
        normalised ReLU output that feeds the next layer (so layer l's statistics see layers < l
        normalised by theirs)."""
        s, eps = self.s, self.s.vbn_eps
        _, k, st, _, oh, ow = s.convs[0]
        x_b = None
        for li, h_b in enumerate(self._ref_h):
            for b in range(h_b.shape[0]):
                if li == 0:
                    self._ref_flag[0] = 0      # reference frames are not consecutive: extract all
                    K.stack_patches(self._ref[b], self._ref_prev, self._ref_flag, _LUT, k, st, oh, ow,
                                    self._ref_blocks, self._ref_order)
                self._raw(li, None if li == 0 else x_b[b], h_b[b], self._ref_blocks, self._ref_order)
            K.batch_stats(h_b, eps, self.vbn_mean[li], self.vbn_inv_std[li])
            shift = self._layers[li][1]
            for b in range(h_b.shape[0]):
                K.shift_relu(h_b[b], shift, self.vbn_mean[li], self.vbn_inv_std[li], True)
            x_b = h_b

    def __call__(self, obs_u8: np.ndarray) -> int:
        if not self.ok:
            return -1
        s, L, vbn = self.s, self._layers, self.s.vbn
        _, k, st, _, oh, ow = s.convs[0]
        K.stack_patches(obs_u8, self._prev, self._have_prev, _LUT, k, st, oh, ow, self._blocks, self._order)
        x = None
        for li, h in enumerate(self._h):
            self._raw(li, x, h, self._blocks, self._order)
            K.shift_relu(h, L[li][1], self.vbn_mean[li], self.vbn_inv_std[li], vbn)
            x = h
        W, b = L[-1]
        return int(K.out_argmax(x.ravel(), W, b, self._logits))

    @property
    def logits(self) -> np.ndarray:
        """The last call's logits (bias included), (n_actions,) float32."""
        return self._logits
