"""numba kernels of the CNN policies: convolution, dense layer, virtual-batch-norm statistics.

Every sum runs in one fixed order with float32 accumulation and no fastmath (no FMA contraction,
no reassociation): output channels sit in the vector lanes and the inputs are summed in index
order ``r = (c * k + i) * k + j`` (the row order of the weight matrix). So the bits depend only on
the inputs, not on the CPU's SIMD width or a BLAS library's blocking: every rank of a run, on any
x86 node, computes the same actions. ``tests/test_atari_policy.py`` checks every kernel against a
numpy reference written in the same order, to the bit.

Shapes: a conv input ``x`` is (c_in, H, W) float32, its weights ``W`` (c_in*k*k, c_out), its output
(c_out, OH, OW) with ``OH = (H - k) // s + 1`` (valid padding, as DQN/A3C). A dense input is flat.
VBN statistics are float64 sums over (batch, y, x) in that order, cast to float32 at the end.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def to_float(obs_u8, lut, out):
    """uint8 frames -> float32 ``lut[obs]`` (lut = arange(256) / 255): exact, no division per pixel."""
    o = out.ravel()
    b = obs_u8.ravel()
    for i in range(b.size):
        o[i] = lut[b[i]]


@numba.njit(cache=True, nogil=True)
def conv_raw(x, W, k, s, P, out):
    """``out[o, y, x] = sum_r patch(y, x)[r] * W[r, o]``, summed over r in order. ``P`` is
    (c_in*k*k, >= OH*OW) scratch for the patches (im2col, one row per r): the inner loop is then
    an axpy over all output positions, which vectorises, while each output still sums its r terms
    in index order (the same bits as a per-position loop)."""
    c_in = x.shape[0]
    c_out, oh, ow = out.shape
    npos = oh * ow
    r = 0
    for c in range(c_in):
        for i in range(k):
            for j in range(k):
                for oy in range(oh):
                    row = x[c, oy * s + i]
                    for ox in range(ow):
                        P[r, oy * ow + ox] = row[ox * s + j]
                r += 1
    o2 = out.reshape(c_out, npos)
    # one output channel at a time: its row of positions stays in L1 while r runs over P
    for o in range(c_out):
        row = o2[o]
        for q in range(npos):
            row[q] = np.float32(0.0)
        for r in range(c_in * k * k):
            w = W[r, o]
            pr = P[r]
            for q in range(npos):
                row[q] += w * pr[q]


@numba.njit(cache=True, nogil=True)
def dense_raw(x, W, out):
    """``out[o] = sum_r x[r] * W[r, o]`` (x flat (n_in,), W (n_in, n_out))."""
    n_out = out.size
    for o in range(n_out):
        out[o] = np.float32(0.0)
    for r in range(x.size):
        v = x[r]
        for o in range(n_out):
            out[o] += v * W[r, o]


@numba.njit(cache=True, nogil=True)
def shift_relu(h, shift, mean, inv_std, vbn):
    """In place on (c, ...) activations: ``relu((h - mean) * inv_std + shift)`` with VBN, else
    ``relu(h + shift)``. NaN stays NaN (the output layer's check sees it)."""
    c = h.shape[0]
    m = h.size // c
    f = h.reshape(c, m)
    for o in range(c):
        for q in range(m):
            v = f[o, q]
            if vbn:
                v = (v - mean[o]) * inv_std[o] + shift[o]
            else:
                v = v + shift[o]
            f[o, q] = v if not v < np.float32(0.0) else np.float32(0.0)


@numba.njit(cache=True, nogil=True)
def batch_stats(h_b, eps, mean_out, inv_std_out):
    """VBN statistics of (B, c, ...) raw activations: per channel c, the mean and ``1/sqrt(var + eps)``
    over (batch, positions), summed in float64 in (b, position) order; two passes (mean, then the
    mean squared deviation: the biased variance, as batch norm's). Results cast to float32."""
    B, c = h_b.shape[0], h_b.shape[1]
    m = h_b.size // (B * c)
    f = h_b.reshape(B, c, m)
    n = np.float64(B * m)
    for o in range(c):
        s = 0.0
        for b in range(B):
            for q in range(m):
                s += np.float64(f[b, o, q])
        mu = s / n
        ss = 0.0
        for b in range(B):
            for q in range(m):
                d = np.float64(f[b, o, q]) - mu
                ss += d * d
        mean_out[o] = np.float32(mu)
        inv_std_out[o] = np.float32(1.0 / np.sqrt(ss / n + eps))


@numba.njit(cache=True, nogil=True)
def out_argmax(h, W, b, logits):
    """Logits ``h @ W + b`` (summed in order, then the bias) and the first index of their maximum;
    -1 if any logit is NaN or infinite (the episode then fails)."""
    dense_raw(h, W, logits)
    best = 0
    for a in range(logits.size):
        v = logits[a] + b[a]
        logits[a] = v
        if not np.isfinite(v):
            return -1
        if v > logits[best]:
            best = a
    return best
