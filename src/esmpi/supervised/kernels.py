"""Numba kernels of the networks' forward and backward passes (all NHWC, any float dtype).

The matrix products are BLAS calls made by ``nets.py``; these kernels do everything around them
without allocating: ``im2col`` / ``col2im`` for 'same'-padded k x k convolutions, the fused
bias + ReLU + 2x2 max-pool and its backward, and the numerically stable softmax cross-entropy.

NaN is never hidden: ReLU is written ``0 if v <= 0 else v`` (NaN passes through, where
``max(v, 0)`` could drop it), so a non-finite theta gives a non-finite loss and the caller
fails the evaluation. No fastmath: no FMA contraction, no reassociation.
"""

from __future__ import annotations

import math

import numba


@numba.njit(cache=True, nogil=True)
def im2col(x, k, pad, cols):
    """x (B, H, W, C) -> cols (B*H*W, k*k*C): row (b, y, x), column (ky, kx, c), zero 'same' padding.

    ``pad`` (B, H + k - 1, W + k - 1, C) holds x with a zero border (zeroed once by the caller and
    never written here), so each (row, ky) is one contiguous run of k*C values: no branches, and
    the copy vectorises."""
    B, H, W, C = x.shape
    p = (k - 1) // 2
    for b in range(B):
        for y in range(H):
            for xx in range(W):
                for c in range(C):
                    pad[b, y + p, xx + p, c] = x[b, y, xx, c]
    Hp, Wp = pad.shape[1], pad.shape[2]
    flat = pad.reshape(B, Hp, Wp * C)
    KC = k * C
    row = 0
    for b in range(B):
        for y in range(H):
            for xx in range(W):
                for ky in range(k):
                    src = flat[b, y + ky, xx * C: xx * C + KC]
                    dst = cols[row, ky * KC: (ky + 1) * KC]
                    for q in range(KC):
                        dst[q] = src[q]
                row += 1


@numba.njit(cache=True, nogil=True)
def col2im(cols, k, dpad, dx):
    """The adjoint of ``im2col``: dx (B, H, W, C) = the sum of the columns that read each pixel,
    accumulated into ``dpad`` (B, H + k - 1, W + k - 1, C, scratch) in contiguous runs, row order."""
    B, H, W, C = dx.shape
    p = (k - 1) // 2
    dpad[...] = 0
    Hp, Wp = dpad.shape[1], dpad.shape[2]
    flat = dpad.reshape(B, Hp, Wp * C)
    KC = k * C
    row = 0
    for b in range(B):
        for y in range(H):
            for xx in range(W):
                for ky in range(k):
                    dst = flat[b, y + ky, xx * C: xx * C + KC]
                    src = cols[row, ky * KC: (ky + 1) * KC]
                    for q in range(KC):
                        dst[q] += src[q]
                row += 1
    for b in range(B):
        for y in range(H):
            for xx in range(W):
                for c in range(C):
                    dx[b, y, xx, c] = dpad[b, y + p, xx + p, c]


@numba.njit(cache=True, nogil=True)
def bias_relu_pool(z, bias, out, arg):
    """out = relu(max over each 2x2 window of z + bias): z (B, H, W, C), out and arg (B, H/2, W/2, C);
    arg (uint8) keeps the window position 2*dy + dx of the maximum (the first one on ties)."""
    B, Ho, Wo, C = out.shape
    for b in range(B):
        for py in range(Ho):
            for px in range(Wo):
                y, x = 2 * py, 2 * px
                for c in range(C):
                    best = z[b, y, x, c]
                    a = 0
                    # "or v != v": a NaN anywhere in the window wins and stays (NaN > x is false)
                    v = z[b, y, x + 1, c]
                    if v > best or v != v:
                        best, a = v, 1
                    v = z[b, y + 1, x, c]
                    if v > best or v != v:
                        best, a = v, 2
                    v = z[b, y + 1, x + 1, c]
                    if v > best or v != v:
                        best, a = v, 3
                    v = best + bias[c]
                    out[b, py, px, c] = 0 if v <= 0 else v
                    arg[b, py, px, c] = a


@numba.njit(cache=True, nogil=True)
def bias_relu_pool_backward(dout, out, arg, dz):
    """dz (B, H, W, C) = dout routed to each window's maximum where the ReLU was active, else 0."""
    dz[...] = 0
    B, Ho, Wo, C = out.shape
    for b in range(B):
        for py in range(Ho):
            for px in range(Wo):
                for c in range(C):
                    if out[b, py, px, c] > 0:
                        a = arg[b, py, px, c]
                        dz[b, 2 * py + a // 2, 2 * px + a % 2, c] = dout[b, py, px, c]


@numba.njit(cache=True, nogil=True)
def bias_relu(h, bias, relu):
    """h (B, n) += bias, then ReLU in place if ``relu`` (NaN kept)."""
    B, n = h.shape
    for i in range(B):
        for j in range(n):
            v = h[i, j] + bias[j]
            h[i, j] = 0 if (relu and v <= 0) else v


@numba.njit(cache=True, nogil=True)
def relu_backward(a, d):
    """d (B, n) *= (a > 0), in place: a is the ReLU's output."""
    B, n = a.shape
    for i in range(B):
        for j in range(n):
            if not a[i, j] > 0:
                d[i, j] = 0


@numba.njit(cache=True, nogil=True)
def softmax_xent(logits, labels, probs):
    """Sum over the batch of -log softmax(logits)[label], in float64 in index order (stable:
    log-sum-exp around the row maximum). ``probs`` (B, K) receives the softmax. Any non-finite
    logit, even a harmless -inf, returns NaN (never an exception): it means theta overflowed."""
    B, K = logits.shape
    total = 0.0
    for i in range(B):
        m = logits[i, 0]
        for j in range(K):
            v = logits[i, j]
            if not (v - v == 0):
                return math.nan
            if v > m:
                m = v
        s = 0.0
        for j in range(K):
            e = math.exp(float(logits[i, j]) - float(m))
            probs[i, j] = e
            s += e
        for j in range(K):
            probs[i, j] = probs[i, j] / s
        total += float(m) + math.log(s) - float(logits[i, labels[i]])
    return total


@numba.njit(cache=True, nogil=True)
def xent_backward(probs, labels, scale, d):
    """d (B, K) = (probs - onehot(labels)) * scale: the gradient of scale * sum of cross-entropies."""
    B, K = probs.shape
    for i in range(B):
        for j in range(K):
            d[i, j] = probs[i, j] * scale
        d[i, labels[i]] -= scale


@numba.njit(cache=True, nogil=True)
def count_correct(logits, labels):
    """(number of rows whose first maximal logit is the label, whether every logit is finite)."""
    B, K = logits.shape
    n, finite = 0, True
    for i in range(B):
        best = 0
        for j in range(K):
            v = logits[i, j]
            if not (v - v == 0):      # NaN or inf
                finite = False
            if v > logits[i, best]:
                best = j
        if best == labels[i]:
            n += 1
    return n, finite
