"""The classifiers of issue 14: parameter counts, forward against the plain numpy reference, the
exact backward pass against central finite differences in float64, stability and NaN handling."""

import numpy as np
import pytest

from esmpi.supervised import kernels, reference
from esmpi.supervised.nets import Net, NetSpec

TINY = {"conv_conv_dense": dict(image_shape=(8, 8, 1), convs=(2, 3), hidden=(4,), num_classes=3, kernel=3),
        "conv_5x5": dict(image_shape=(8, 8, 2), convs=(2,), hidden=(), num_classes=4, kernel=5),
        "mlp": dict(image_shape=(4, 4, 1), convs=(), hidden=(5, 3), num_classes=3)}


def test_paper_parameter_counts():
    assert NetSpec.preset("small_cnn").num_params == 28_938          # 'same' padding: 28 -> 14 -> 7
    assert NetSpec.preset("large_cnn").num_params == 3_274_634
    assert NetSpec.preset("mlp").num_params == 784 * 100 + 100 + 100 * 10 + 10
    s = NetSpec.preset("small_cnn")
    assert [L["w"][1] - L["w"][0] for L in s.layers] == [5 * 5 * 16, 5 * 5 * 16 * 32, 7 * 7 * 32 * 10]


def test_init_theta_he_scaled():
    s = NetSpec.preset("small_cnn")
    th = s.init_theta(np.random.default_rng(0))
    conv2, fc = s.layers[1], s.layers[2]
    assert np.std(th[slice(*conv2["w"])]) == pytest.approx(np.sqrt(2 / 400), rel=0.03)
    assert np.std(th[slice(*fc["w"])]) == pytest.approx(np.sqrt(1 / 1568), rel=0.05)
    assert not th[slice(*conv2["b"])].any()


@pytest.mark.parametrize("name", ["small_cnn", "mlp"])
def test_forward_matches_reference(name):
    s = NetSpec.preset(name)
    rng = np.random.default_rng(1)
    th = s.init_theta(rng)
    x = rng.random((5, 28, 28, 1), dtype=np.float32)
    n64 = Net(s, np.float64)
    assert np.array_equal(n64.forward(th.astype(np.float64), x.astype(np.float64)),
                          reference.forward(s, th.astype(np.float64), x.astype(np.float64)))
    assert np.allclose(Net(s).forward(th, x), reference.forward(s, th, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", list(TINY))
def test_backward_matches_finite_differences(name):
    s = NetSpec(**TINY[name])
    rng = np.random.default_rng(2)
    th = s.init_theta(rng).astype(np.float64) + 0.05 * rng.standard_normal(s.num_params)   # non-zero biases
    x = rng.random((4, *s.image_shape))
    y = rng.integers(0, s.num_classes, 4)
    net = Net(s, np.float64)
    loss, g = net.loss_and_grad(th, x, y)
    assert loss == pytest.approx(reference.mean_xent(reference.forward(s, th, x), y), rel=1e-12)
    fd = np.empty_like(g)
    eps = 1e-6
    for i in range(s.num_params):
        e = np.zeros_like(th)
        e[i] = eps
        fd[i] = (net.loss(th + e, x, y) - net.loss(th - e, x, y)) / (2 * eps)
    assert np.abs(g).max() > 1e-3
    assert np.abs(g - fd).max() <= 1e-7 + 1e-6 * np.abs(g).max()


def test_workspaces_are_reused_and_batch_independent():
    s = NetSpec(**TINY["conv_conv_dense"])
    net = Net(s, np.float64)
    rng = np.random.default_rng(3)
    th, x = s.init_theta(rng).astype(np.float64), rng.random((6, 8, 8, 1))
    y = rng.integers(0, 3, 6)
    _, g6 = net.loss_and_grad(th, x, y)
    ws = net._ws[6]["conv"][0]["cols"]
    _, g6b = net.loss_and_grad(th, x, y)
    assert net._ws[6]["conv"][0]["cols"] is ws and np.array_equal(g6, g6b)
    # the batch mean of per-image gradients
    per = [net.loss_and_grad(th, x[i:i + 1], y[i:i + 1])[1].copy() for i in range(6)]
    assert np.allclose(np.mean(per, axis=0), g6, atol=1e-14)


def test_softmax_xent_stable_and_nonfinite():
    logits = np.array([[1e4, 0.0, -1e4], [0.0, 0.0, 0.0]])
    probs = np.empty_like(logits)
    total = kernels.softmax_xent(logits, np.array([1, 2]), probs)
    assert total == pytest.approx(1e4 + np.log(3.0)) and np.isfinite(probs).all()
    for bad in (np.nan, np.inf, -np.inf):
        logits[0, 0] = bad
        assert not np.isfinite(kernels.softmax_xent(logits, np.array([1, 2]), probs))
        assert kernels.count_correct(logits, np.array([1, 2]))[1] is False


def test_nan_passes_relu_and_pool():
    z = np.zeros((1, 2, 2, 1))
    z[0, 1, 1, 0] = np.nan
    out, arg = np.empty((1, 1, 1, 1)), np.empty((1, 1, 1, 1), np.uint8)
    kernels.bias_relu_pool(z, np.zeros(1), out, arg)
    assert np.isnan(out).all()
    h = np.array([[np.nan, -1.0, 2.0]])
    kernels.bias_relu(h, np.zeros(3), True)
    assert np.isnan(h[0, 0]) and h[0, 1] == 0 and h[0, 2] == 2
