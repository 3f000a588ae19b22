"""Image classifiers over a flat theta: the small and large CNNs of Zhang et al. (2017) and an MLP.

A network is ``convs`` (each: k x k convolution with 'same' zero padding, stride 1, + bias, ReLU,
2x2 max-pool of stride 2), then ``hidden`` fully connected ReLU layers, then a linear layer to
``num_classes`` logits. Images are NHWC, pixels in [0, 1].

- ``small_cnn``: conv 16, conv 32, fc 10 on 28x28x1: 416 + 12,832 + 15,690 = 28,938 parameters
  (the paper's count needs 'same' padding: 28 -> 14 -> 7, so the fc layer sees 7*7*32 = 1,568 inputs;
  'valid' padding would give 28 -> 24 -> 12 -> 8 -> 4 and 18,378 parameters).
- ``large_cnn``: conv 32, conv 64, fc 1,024, fc 10: 832 + 51,264 + 3,212,288 + 10,250 = 3,274,634.
- ``mlp``: 784 -> 100 -> 10 (ReLU): 79,510.

Layout of theta (``(num_params,)``, layer by layer): a conv layer's ``W`` of shape
``(k, k, c_in, c_out)`` row-major, then ``b`` ``(c_out,)``; a dense layer's ``W`` ``(n_in, n_out)``
row-major (inputs flattened in (y, x, c) order), then ``b`` ``(n_out,)``.

Initial theta (``init_theta``): He-normal weights, ``std = sqrt(2 / fan_in)`` (fan_in = k*k*c_in
or n_in) for the ReLU layers, ``sqrt(1 / fan_in)`` for the output layer; biases 0.

``Net`` runs any batch size in float32 (training) or float64 (gradient checks): convolutions are
im2col + one BLAS matrix product each, in workspaces allocated once per batch size. BLAS runs
single-threaded (esmpi sets ``OPENBLAS_NUM_THREADS=1``), so a batch gives the same bits on any rank
of one CPU type; a different CPU type may round the last bit differently.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import kernels as K

PRESETS = {"small_cnn": ((16, 32), ()), "large_cnn": ((32, 64), (1024,)), "mlp": ((), (100,))}


@dataclass(frozen=True)
class NetSpec:
    image_shape: tuple[int, int, int] = (28, 28, 1)   # (rows, cols, channels)
    convs: tuple[int, ...] = (16, 32)                 # output channels of each conv + ReLU + pool block
    hidden: tuple[int, ...] = ()                      # hidden dense ReLU layers
    num_classes: int = 10
    kernel: int = 5
    layers: list = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        H, W, C = self.image_shape
        layers, off = [], 0
        for c_out in self.convs:
            if H % 2 or W % 2:
                raise ValueError(f"a 2x2 max-pool needs even image sizes, got {H}x{W} before conv {c_out}")
            n_w = self.kernel * self.kernel * C * c_out
            layers.append({"kind": "conv", "in": (H, W, C), "out": c_out, "w": (off, off + n_w),
                           "b": (off + n_w, off + n_w + c_out)})
            off += n_w + c_out
            H, W, C = H // 2, W // 2, c_out
        n_in = H * W * C
        for n_out in (*self.hidden, self.num_classes):
            layers.append({"kind": "dense", "in": n_in, "out": n_out, "w": (off, off + n_in * n_out),
                           "b": (off + n_in * n_out, off + n_in * n_out + n_out)})
            off += n_in * n_out + n_out
            n_in = n_out
        object.__setattr__(self, "layers", layers)

    @classmethod
    def preset(cls, name: str, image_shape=(28, 28, 1), num_classes: int = 10) -> NetSpec:
        convs, hidden = PRESETS[name]
        return cls(tuple(image_shape), convs, hidden, num_classes)

    @property
    def num_params(self) -> int:
        return self.layers[-1]["b"][1]

    def init_theta(self, rng: np.random.Generator) -> np.ndarray:
        theta = np.zeros(self.num_params, np.float32)
        for i, L in enumerate(self.layers):
            fan_in = self.kernel * self.kernel * L["in"][2] if L["kind"] == "conv" else L["in"]
            gain = 1.0 if i == len(self.layers) - 1 else 2.0
            lo, hi = L["w"]
            theta[lo:hi] = rng.standard_normal(hi - lo, dtype=np.float32) * np.float32(np.sqrt(gain / fan_in))
        return theta

    def to_dict(self) -> dict:
        return {"image_shape": list(self.image_shape), "convs": list(self.convs), "hidden": list(self.hidden),
                "num_classes": self.num_classes, "kernel": self.kernel, "num_params": self.num_params,
                "conv": f"{self.kernel}x{self.kernel} 'same' zero padding, stride 1, + bias, ReLU, 2x2 max-pool",
                "theta_layout": "per layer: conv W (k, k, c_in, c_out) or dense W (n_in, n_out) row-major, then b; "
                                "dense inputs flattened in (y, x, c) order"}


class Net:
    """Forward, loss, accuracy and exact gradient of a ``NetSpec`` for batches of images."""

    def __init__(self, spec: NetSpec, dtype=np.float32):
        self.spec, self.dtype = spec, np.dtype(dtype)
        self._ws: dict[int, dict] = {}

    def _workspace(self, B: int) -> dict:
        ws = self._ws.get(B)
        if ws is None:
            dt, k = self.dtype, self.spec.kernel
            ws = {"conv": [], "dense": []}
            for L in self.spec.layers:
                if L["kind"] == "conv":
                    H, W, C = L["in"]
                    ws["conv"].append({"cols": np.empty((B * H * W, k * k * C), dt), "z": np.empty((B * H * W, L["out"]), dt),
                                       "pad": np.zeros((B, H + k - 1, W + k - 1, C), dt),   # border stays 0
                                       "out": np.empty((B, H // 2, W // 2, L["out"]), dt),
                                       "arg": np.empty((B, H // 2, W // 2, L["out"]), np.uint8),
                                       "dx": np.empty((B, H, W, C), dt) if ws["conv"] else None,
                                       "dpad": np.empty((B, H + k - 1, W + k - 1, C), dt) if ws["conv"] else None,
                                       "out_d": np.empty((B, H // 2, W // 2, L["out"]), dt)})
                else:
                    ws["dense"].append({"h": np.empty((B, L["out"]), dt), "d": np.empty((B, L["out"]), dt)})
            ws["probs"] = np.empty((B, self.spec.num_classes), dt)
            self._ws[B] = ws
        return ws

    def _params(self, theta, L):
        lo, hi = L["w"]
        n_in = self.spec.kernel ** 2 * L["in"][2] if L["kind"] == "conv" else L["in"]
        return theta[lo:hi].reshape(n_in, L["out"]), theta[L["b"][0]:L["b"][1]]

    def forward(self, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        """x (B, rows, cols, channels) -> logits (B, num_classes), a view into the workspace."""
        theta = np.asarray(theta, self.dtype)
        B = x.shape[0]
        ws, a = self._workspace(B), x
        ci = di = 0
        for L in self.spec.layers:
            W, b = self._params(theta, L)
            if L["kind"] == "conv":
                c = ws["conv"][ci]
                K.im2col(a, self.spec.kernel, c["pad"], c["cols"])
                np.dot(c["cols"], W, out=c["z"])
                H, Wd, _ = L["in"]
                K.bias_relu_pool(c["z"].reshape(B, H, Wd, L["out"]), b, c["out"], c["arg"])
                a, ci = c["out"], ci + 1
            else:
                h = ws["dense"][di]["h"]
                np.dot(a.reshape(B, -1), W, out=h)
                K.bias_relu(h, b, di < len(ws["dense"]) - 1)
                a, di = h, di + 1
        return a

    def loss(self, theta, x, labels) -> float:
        """Mean cross-entropy over the batch (float; inf or nan if theta or the logits are not finite)."""
        logits = self.forward(theta, x)
        return K.softmax_xent(logits, labels, self._ws[x.shape[0]]["probs"]) / x.shape[0]

    def correct(self, theta, x, labels) -> tuple[int, bool]:
        """(number classified right, all logits finite)."""
        return K.count_correct(self.forward(theta, x), labels)

    def loss_and_grad(self, theta, x, labels, grad: np.ndarray | None = None) -> tuple[float, np.ndarray]:
        """(mean cross-entropy, its exact gradient w.r.t. theta as ``(num_params,)`` of the net's dtype)."""
        theta = np.asarray(theta, self.dtype)
        B = x.shape[0]
        loss = self.loss(theta, x, labels)
        ws = self._ws[B]
        if grad is None:
            grad = np.empty(self.spec.num_params, self.dtype)
        layers, dense, conv = self.spec.layers, ws["dense"], ws["conv"]
        d = dense[-1]["d"]
        K.xent_backward(ws["probs"], labels, self.dtype.type(1.0 / B), d)
        for li in range(len(layers) - 1, -1, -1):
            L = layers[li]
            W, _ = self._params(theta, L)
            gW, gb = self._params(grad, L)
            if L["kind"] == "dense":
                di = li - len(conv)
                a_in = (dense[di - 1]["h"] if di > 0 else conv[-1]["out"] if conv else x).reshape(B, -1)
                np.dot(a_in.T, d, out=gW)
                np.sum(d, axis=0, out=gb)
                if li == 0:
                    break
                d_in = dense[di - 1]["d"] if di > 0 else conv[-1]["out_d"]
                np.dot(d, W.T, out=d_in.reshape(B, -1))
                if di > 0:
                    K.relu_backward(dense[di - 1]["h"], d_in)
                d = d_in
            else:
                c = conv[li]
                H, Wd, _ = L["in"]
                z4 = c["z"].reshape(B, H, Wd, L["out"])
                K.bias_relu_pool_backward(d.reshape(c["out"].shape), c["out"], c["arg"], z4)
                dz = c["z"]                      # the pre-activations are no longer needed: reuse
                np.dot(c["cols"].T, dz, out=gW)
                np.sum(dz, axis=0, out=gb)
                if li == 0:
                    break
                np.dot(dz, W.T, out=c["cols"])   # d cols, into the cols buffer (used above for the last time)
                K.col2im(c["cols"], self.spec.kernel, c["dpad"], c["dx"])
                d = c["dx"]                      # = d of the previous block's pooled output
        return loss, grad
