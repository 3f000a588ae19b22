"""Section 8: images per second per core of the supervised networks (issue 14).

esmpi's ``Net.forward`` (numba im2col into reused workspaces + one single-threaded BLAS product per
layer + fused bias/ReLU/max-pool) against the plain numpy im2col forward of
``esmpi.supervised.reference`` (``np.pad``, ``sliding_window_view``, copying reshapes, fresh arrays
every call), on the paper's small CNN (28,938 parameters), a batch of ``img_batch`` random
28x28 images, interleaved repeats. Also (informational): forward + exact backward of the small
CNN, and the forward of the large CNN (3,274,634 parameters). The logits of both forwards are
compared (max abs difference, float32).

Also the limited-perturbation update at the paper's sizes (Zhang et al. 2017: 10,000 full
pseudo-offspring vs 50,000 perturbing one bucket of 5,000 of the large CNN's 3,274,634 parameters;
their update took 90 s vs 1.4 s): ``NoiseTable.weighted_sum`` of a few full pairs, scaled linearly
to 5,000 pairs, against ``NoiseTable.slice_sum`` of 25,000 one-bucket pairs.
"""

from __future__ import annotations

import numpy as np

from ..noise import NoiseTable
from ..strategies.antithetic import bucket_edges
from ..supervised import reference
from ..supervised.nets import Net, NetSpec
from .common import figure, interleave, median

RATIO_TARGET = 1.0   # esmpi's forward must not be slower than the textbook numpy one
LIMITED_TARGET = 10.0  # the limited update of 5x the offspring must be an order of magnitude cheaper (paper: 64x)
D_LARGE, FULL_PAIRS, LIMITED_PAIRS, BUCKET = 3_274_634, 5_000, 25_000, 5_000


def _batch(B: int, rng) -> tuple[np.ndarray, np.ndarray]:
    x = (rng.integers(0, 256, size=(B, 28, 28, 1)).astype(np.float32) * np.float32(1 / 255))
    return x, rng.integers(0, 10, B).astype(np.int32)


def run(prof: dict):
    B, reps, k = prof["img_batch"], prof["img_repeats"], prof["img_calls"]
    rng = np.random.default_rng(0)
    x, y = _batch(B, rng)
    figs, details = [], {"batch": B, "calls_per_repeat": k, "repeats": reps}

    spec = NetSpec.preset("small_cnn")
    theta = spec.init_theta(rng)
    net = Net(spec)
    diff = float(np.abs(net.forward(theta, x) - reference.forward(spec, theta, x)).max())

    def ours():
        for _ in range(k):
            net.forward(theta, x)

    def plain():
        for _ in range(k):
            reference.forward(spec, theta, x)

    def grad():
        for _ in range(k):
            net.loss_and_grad(theta, x, y)

    s = interleave({"esmpi": ours, "numpy_im2col": plain, "forward_backward": grad}, reps)
    ips = {n: B * k / median([q.wall for q in v]) for n, v in s.items()}
    # per CPU-second too: on a shared machine the wall rate understates what one core does
    ipc = {n: B * k / median([q.cpu for q in v]) for n, v in s.items()}
    ratio = median([p.wall / o.wall for o, p in zip(s["esmpi"], s["numpy_im2col"])])
    details["small_cnn"] = {"images_per_s": ips, "images_per_cpu_s": ipc, "ratio": ratio, "max_abs_logit_diff": diff}
    figs.append(figure("images.small_cnn.forward", "8 images", f"small CNN forward, batch {B}: images/s per core",
                       ips["esmpi"], "images/s", samples=s["esmpi"],
                       info=f"per CPU-second {ipc['esmpi']:,.0f}; plain numpy im2col forward {ips['numpy_im2col']:,.0f} "
                            f"images/s ({ipc['numpy_im2col']:,.0f} per CPU-second); logits agree to {diff:.1e}."))
    figs.append(figure("images.small_cnn.ratio", "8 images", "small CNN forward: esmpi / plain numpy im2col speed",
                       ratio, "x", target=RATIO_TARGET, op=">=", samples=s["esmpi"] + s["numpy_im2col"],
                       why="the BLAS products dominate both; esmpi only saves the im2col copies and allocations.",
                       raw=[p.wall / o.wall for o, p in zip(s["esmpi"], s["numpy_im2col"])],
                       info="median of per-repeat ratios, variants interleaved."))
    figs.append(figure("images.small_cnn.backward", "8 images", f"small CNN forward + exact gradient, batch {B}: "
                       "images/s per core", ips["forward_backward"], "images/s", samples=s["forward_backward"],
                       info=f"per CPU-second {ipc['forward_backward']:,.0f}."))

    big = NetSpec.preset("large_cnn")
    theta_big = big.init_theta(rng)
    net_big = Net(big)
    kb = max(1, k // 8)

    def ours_big():
        for _ in range(kb):
            net_big.forward(theta_big, x)

    def plain_big():
        for _ in range(kb):
            reference.forward(big, theta_big, x)

    sb = interleave({"esmpi": ours_big, "numpy_im2col": plain_big}, max(2, reps // 2))
    ips_b = {n: B * kb / median([q.wall for q in v]) for n, v in sb.items()}
    ratio_b = median([p.wall / o.wall for o, p in zip(sb["esmpi"], sb["numpy_im2col"])])
    details["large_cnn"] = {"images_per_s": ips_b, "ratio": ratio_b}
    figs.append(figure("images.large_cnn.forward", "8 images", f"large CNN forward, batch {B}: images/s per core",
                       ips_b["esmpi"], "images/s", samples=sb["esmpi"],
                       info=f"plain numpy im2col {ips_b['numpy_im2col']:,.0f} images/s ({ratio_b:.2f}x)."))
    figs.append(limited_update(prof, details))
    return figs, details


def limited_update(prof: dict, details: dict):
    """The update's noise sum: full (scaled from a few pairs) vs limited perturbation, at the paper's sizes."""
    tiny = prof["img_batch"] < 64
    n_full, n_lim = (2, 1_000) if tiny else (20, LIMITED_PAIRS)
    noise = NoiseTable(2 * D_LARGE, 5)
    rng = np.random.default_rng(1)
    edges = bucket_edges(D_LARGE, BUCKET)
    off_f, w_f = rng.integers(0, D_LARGE + 1, n_full), rng.standard_normal(n_full).astype(np.float32)
    off_l, w_l = rng.integers(0, D_LARGE + 1, n_lim), rng.standard_normal(n_lim).astype(np.float32)
    k = rng.integers(0, edges.size - 1, n_lim)
    lo, hi = edges[k], edges[k + 1]
    s = interleave({"full": lambda: noise.weighted_sum(w_f, off_f, D_LARGE),
                    "limited": lambda: noise.slice_sum(w_l, off_l, lo, hi, D_LARGE)}, prof["img_repeats"])
    full_s = median([q.cpu for q in s["full"]]) * FULL_PAIRS / n_full
    lim_s = median([q.cpu for q in s["limited"]]) * LIMITED_PAIRS / n_lim
    ratio = full_s / lim_s
    details["limited_update"] = {"d": D_LARGE, "full_pairs_measured": n_full, "limited_pairs_measured": n_lim,
                                 "full_5000_pairs_cpu_s": full_s, "limited_25000_pairs_cpu_s": lim_s, "ratio": ratio}
    return figure("images.limited_update", "8 images", "update of the large CNN: 10,000 full pseudo-offspring / "
                  "50,000 limited to 5,000 parameters (CPU time)", ratio, "x", target=LIMITED_TARGET, op=">=",
                  samples=s["full"] + s["limited"],
                  why="the limited sum reads 25,000 x 5,000 noise entries, the full one 5,000 x 3,274,634.",
                  info=f"full {full_s:.2f} s of CPU (scaled from {n_full} pairs), limited {lim_s:.3f} s "
                       f"(from {n_lim} pairs); the paper: 90 s vs 1.4 s (64x).")
