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
def im2col(x, k, s, oh, ow, P):
    """Patches of (c_in, H, W) ``x`` into ``P[r, oy * ow + ox]``, r = (c * k + i) * k + j."""
    r = 0
    for c in range(x.shape[0]):
        for i in range(k):
            for j in range(k):
                for oy in range(oh):
                    row = x[c, oy * s + i]
                    for ox in range(ow):
                        P[r, oy * ow + ox] = row[ox * s + j]
                r += 1


@numba.njit(cache=True, nogil=True)
def frame_patches(frame_u8, lut, k, s, oh, ow, block):
    """Patches of one uint8 frame (H, W), converted by ``lut``, into ``block[i * k + j, q]``."""
    for i in range(k):
        for j in range(k):
            r = i * k + j
            for oy in range(oh):
                row = frame_u8[oy * s + i]
                for ox in range(ow):
                    block[r, oy * ow + ox] = lut[row[ox * s + j]]


@numba.njit(cache=True, nogil=True)
def _same(a, b):
    fa, fb = a.ravel(), b.ravel()
    for i in range(fa.size):
        if fa[i] != fb[i]:
            return False
    return True


@numba.njit(cache=True, nogil=True)
def stack_patches(obs_u8, prev_u8, have_prev, lut, k, s, oh, ow, blocks, order):
    """First-layer patches of a (stack, H, W) uint8 observation as one block per frame, input channel
    c reading ``blocks[order[c]]``. When the observation is the previous one shifted by a frame (the
    frame stack's normal step: obs[c] == prev[c + 1]), the blocks rotate and only the newest frame is
    extracted: a quarter of the work for a stack of 4; otherwise (a reset) every frame is. The
    patches, and so the bits downstream, are the same either way."""
    n = obs_u8.shape[0]
    shifted = have_prev[0] == 1
    if shifted:
        for c in range(n - 1):
            if not _same(obs_u8[c], prev_u8[c + 1]):
                shifted = False
                break
    if shifted:
        first = order[0]
        for c in range(n - 1):
            order[c] = order[c + 1]
        order[n - 1] = first
        frame_patches(obs_u8[n - 1], lut, k, s, oh, ow, blocks[first])
    else:
        for c in range(n):
            order[c] = c
            frame_patches(obs_u8[c], lut, k, s, oh, ow, blocks[c])
    prev_u8[:] = obs_u8
    have_prev[0] = 1


@numba.njit(cache=True, nogil=True)
def patch_sum(P, order, W, out):
    """``out[o, q] = sum_r P_r[q] * W[r, o]`` summed over r in order, where patch row r is
    ``P[order[r // rpb], r % rpb]`` (rpb = P.shape[1]; one block of rows per input channel group).
    Two output channels at a time, four r per pass: each patch row loaded once feeds 8 products and
    a row of outputs is loaded/stored once per 4 terms (2-4x faster than one r at a time); the
    parenthesised sums keep every output's terms in r order, so the bits are those of a plain loop."""
    R, c_out = W.shape
    rpb = P.shape[1]
    npos = out.size // c_out
    o2 = out.reshape(c_out, npos)
    for o in range(c_out):
        for q in range(npos):
            o2[o, q] = np.float32(0.0)
    o = 0
    while o + 2 <= c_out:
        ra, rb = o2[o], o2[o + 1]
        r = 0
        while r + 4 <= R:
            a0, a1, a2, a3 = W[r, o], W[r + 1, o], W[r + 2, o], W[r + 3, o]
            b0, b1, b2, b3 = W[r, o + 1], W[r + 1, o + 1], W[r + 2, o + 1], W[r + 3, o + 1]
            p0 = P[order[r // rpb], r % rpb]
            p1 = P[order[(r + 1) // rpb], (r + 1) % rpb]
            p2 = P[order[(r + 2) // rpb], (r + 2) % rpb]
            p3 = P[order[(r + 3) // rpb], (r + 3) % rpb]
            for q in range(npos):
                x0, x1, x2, x3 = p0[q], p1[q], p2[q], p3[q]
                ra[q] = (((ra[q] + a0 * x0) + a1 * x1) + a2 * x2) + a3 * x3
                rb[q] = (((rb[q] + b0 * x0) + b1 * x1) + b2 * x2) + b3 * x3
            r += 4
        while r < R:
            a0, b0, p0 = W[r, o], W[r, o + 1], P[order[r // rpb], r % rpb]
            for q in range(npos):
                ra[q] += a0 * p0[q]
                rb[q] += b0 * p0[q]
            r += 1
        o += 2
    if o < c_out:  # an odd channel count
        ra = o2[o]
        for r in range(R):
            a0, p0 = W[r, o], P[order[r // rpb], r % rpb]
            for q in range(npos):
                ra[q] += a0 * p0[q]


@numba.njit(cache=True, nogil=True)
def conv_raw(x, W, k, s, P, order0, out):
    """``out[o, y, x] = sum_r patch(y, x)[r] * W[r, o]`` for a float32 (c_in, H, W) input; ``P`` is
    (1, c_in*k*k, OH*OW) im2col scratch, ``order0`` a (1,) int64 zero. The inner loop is an axpy
    over all output positions (it vectorises) while every output sums its r terms in index order."""
    c_out, oh, ow = out.shape
    im2col(x, k, s, oh, ow, P[0])
    patch_sum(P, order0, W, out)


@numba.njit(cache=True, nogil=True)
def dense_raw(x, W, out):
    """``out[o] = sum_r x[r] * W[r, o]`` (x flat (n_in,), W (n_in, n_out))."""
    n_out = out.size
    for o in range(n_out):
        out[o] = np.float32(0.0)
    R = x.size
    r = 0
    while r + 4 <= R:  # four inputs per pass over out, summed in r order (as in conv_raw)
        v0, v1, v2, v3 = x[r], x[r + 1], x[r + 2], x[r + 3]
        w0, w1, w2, w3 = W[r], W[r + 1], W[r + 2], W[r + 3]
        for o in range(n_out):
            out[o] = (((out[o] + v0 * w0[o]) + v1 * w1[o]) + v2 * w2[o]) + v3 * w3[o]
        r += 4
    while r < R:
        v0, w0 = x[r], W[r]
        for o in range(n_out):
            out[o] += v0 * w0[o]
        r += 1


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
