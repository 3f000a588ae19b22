"""A plain numpy forward pass of the same networks: the oracle of the tests and the benchmark's baseline.

Textbook im2col: ``np.pad``, ``sliding_window_view``, a copying reshape, ``@`` and a reshape-max
pool, allocating every array on every call. It shares nothing with ``nets.Net`` but the theta
layout, so the two agreeing (tests/test_supervised_nets.py) checks both.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .nets import NetSpec


def forward(spec: NetSpec, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
    """x (B, rows, cols, channels) -> logits (B, num_classes), in theta's dtype."""
    k, p = spec.kernel, (spec.kernel - 1) // 2
    a = np.asarray(x, theta.dtype)
    B = a.shape[0]
    for L in spec.layers:
        lo, hi = L["w"]
        b = theta[L["b"][0]:L["b"][1]]
        if L["kind"] == "conv":
            H, W, C = L["in"]
            padded = np.pad(a, ((0, 0), (p, p), (p, p), (0, 0)))
            win = sliding_window_view(padded, (k, k), axis=(1, 2))          # (B, H, W, C, k, k)
            cols = win.transpose(0, 1, 2, 4, 5, 3).reshape(B * H * W, k * k * C)
            z = (cols @ theta[lo:hi].reshape(k * k * C, L["out"]) + b).reshape(B, H, W, L["out"])
            a = np.maximum(z, 0).reshape(B, H // 2, 2, W // 2, 2, L["out"]).max(axis=(2, 4))
        else:
            a = a.reshape(B, -1) @ theta[lo:hi].reshape(L["in"], L["out"]) + b
            if L is not spec.layers[-1]:
                a = np.maximum(a, 0)
    return a


def mean_xent(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean softmax cross-entropy, stable (log-sum-exp around the row maximum)."""
    m = logits.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(logits - m).sum(axis=1))
    return float(np.mean(lse - logits[np.arange(len(labels)), labels]))
