"""Section 8: images per second per core of the supervised networks (issue 14).

esmpi's ``Net.forward`` (numba im2col into reused workspaces + one single-threaded BLAS product per
layer + fused bias/ReLU/max-pool) against the plain numpy im2col forward of
``esmpi.supervised.reference`` (``np.pad``, ``sliding_window_view``, copying reshapes, fresh arrays
every call), on the paper's small CNN (28,938 parameters), a batch of ``img_batch`` random
28x28 images, interleaved repeats. Also (informational): forward + exact backward of the small
CNN, and the forward of the large CNN (3,274,634 parameters). The logits of both forwards are
compared (max abs difference, float32).
"""

from __future__ import annotations

import numpy as np

from ..supervised import reference
from ..supervised.nets import Net, NetSpec
from .common import figure, interleave, median

RATIO_TARGET = 1.0   # esmpi's forward must not be slower than the textbook numpy one


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
    return figs, details
