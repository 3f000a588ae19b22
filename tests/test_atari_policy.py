"""CNN policies: layout and parameter counts, init, the forward pass and the VBN statistics checked
against a plain numpy reference written in the kernels' summation order (to the bit), VBN
recomputed per theta, failure signalling and bad input. Tiny and fast: no emulator."""

import numpy as np
import pytest

from esmpi.errors import ConfigError
from esmpi.policies.cnn import CNNPolicy, CNNSpec, require_norm_layers


# ---------------------------------------------------------------- numpy reference (same order)
def _im2col(x, k, s):
    """(c, H, W) -> (c*k*k, OH*OW), rows ordered (c, i, j) as the theta layout."""
    c, H, W = x.shape
    oh, ow = (H - k) // s + 1, (W - k) // s + 1
    rows = [x[ci, i:i + s * (oh - 1) + 1:s, j:j + s * (ow - 1) + 1:s].ravel()
            for ci in range(c) for i in range(k) for j in range(k)]
    return np.stack(rows), (oh, ow)


def _sum_rows(P, W):
    """out[o, q] = sum_r W[r, o] * P[r, q] accumulated in float32 over r in index order."""
    acc = np.zeros((W.shape[1], P.shape[1]), np.float32)
    for r in range(W.shape[0]):
        acc += W[r][:, None] * P[r][None, :]
    return acc


def _stats(h_b, eps):
    """Per channel over (batch, positions): float64 sums in (b, position) order (numpy sums an axis-0
    reduction of a (rows, C) array row by row), biased variance, cast to float32."""
    B, C = h_b.shape[:2]
    a = h_b.reshape(B, C, -1).transpose(0, 2, 1).reshape(-1, C).astype(np.float64)
    n = np.float64(a.shape[0])
    mu = a.sum(axis=0) / n
    d = a - mu
    var = (d * d).sum(axis=0) / n
    return mu.astype(np.float32), (1.0 / np.sqrt(var + eps)).astype(np.float32)


def _relu(v):
    return np.where(v < 0, np.float32(0.0), v)


def _layer(spec, li, W, x_b):
    """Raw activations of hidden layer li for a batch (B, ...) -> (B, c_out, ...)."""
    out = []
    for x in x_b:
        if li < len(spec.convs):
            _, k, s, co, oh, ow = spec.convs[li]
            P, _ = _im2col(x, k, s)
            out.append(_sum_rows(P, W).reshape(co, oh, ow))
        else:
            out.append(_sum_rows(x.reshape(-1, 1), W)[:, 0])
    return np.stack(out)


def _reference(spec, theta, ref_u8, obs_u8):
    """(logits, action, [(mean, inv_std) per hidden layer]) of one observation."""
    lut = (np.arange(256) / 255.0).astype(np.float32)
    layers = spec.unflatten(theta)
    stats = []
    xr, xo = (lut[ref_u8] if spec.vbn else None), lut[obs_u8][None]
    for li in range(len(spec.convs) + len(spec.fcs)):
        W, shift = layers[li]
        ho = _layer(spec, li, W, xo)
        sh = shift.reshape((-1,) + (1,) * (ho.ndim - 2))
        if spec.vbn:
            hr = _layer(spec, li, W, xr)
            m, inv = _stats(hr, spec.vbn_eps)
            stats.append((m, inv))
            m, inv = m.reshape(sh.shape), inv.reshape(sh.shape)
            xr = _relu((hr - m) * inv + sh)
            xo = _relu((ho - m) * inv + sh)
        else:
            xo = _relu(ho + sh)
    W, b = layers[-1]
    logits = _sum_rows(xo[0].reshape(-1, 1), W)[:, 0] + b
    return logits, int(np.argmax(logits)), stats


def _policy(net, vbn, n_actions=4, size=84, B=6, seed=0):
    spec = CNNSpec(net, n_actions, (4, size, size), vbn=vbn)
    pol = CNNPolicy(spec)
    rng = np.random.default_rng(seed)
    ref = rng.integers(0, 256, (B, 4, size, size), dtype=np.uint8)
    if vbn:
        pol.set_reference_batch(ref)
    theta = spec.init_theta(rng)
    theta += np.float32(0.05) * rng.standard_normal(theta.size).astype(np.float32)  # nonzero shifts too
    return spec, pol, theta, ref, rng


# ---------------------------------------------------------------- tests
@pytest.mark.parametrize("net,n_actions,expected", [("a3c", 6, 677_686), ("nature", 18, 1_693_362)])
def test_parameter_counts_and_layout(net, n_actions, expected):
    # nature with 18 actions is the DQN paper's 1,693,362 parameters
    spec = CNNSpec(net, n_actions)
    assert spec.num_params == expected
    theta = np.arange(spec.num_params, dtype=np.float32)
    views = spec.unflatten(theta)
    flat = np.concatenate([np.concatenate([W.ravel(), b]) for W, b in views])
    assert np.array_equal(flat, theta)                       # the views tile theta exactly, in order
    assert all(np.shares_memory(W, theta) for W, _ in views)
    first_fc = views[len(spec.convs)][0]
    assert first_fc.shape == ((2592, 256) if net == "a3c" else (3136, 512))
    assert views[-1][0].shape[1] == n_actions


def test_init_is_seeded_scaled_by_fan_in_and_shifts_zero():
    spec = CNNSpec("a3c", 6)
    t1, t2 = spec.init_theta(np.random.default_rng(5)), spec.init_theta(np.random.default_rng(5))
    assert t1.dtype == np.float32 and np.array_equal(t1, t2)
    views = spec.unflatten(t1)
    for li, (W, b) in enumerate(views):
        gain = 0.1 if li == len(views) - 1 else 1.0
        assert np.all(b == 0)
        assert abs(W.std() * np.sqrt(W.shape[0]) / gain - 1) < 0.1


@pytest.mark.parametrize("net", ["a3c", "nature"])
@pytest.mark.parametrize("vbn", [True, False])
def test_forward_and_vbn_statistics_equal_numpy_reference_to_the_bit(net, vbn):
    spec, pol, theta, ref, rng = _policy(net, vbn)
    assert pol.set_theta(theta)
    for _ in range(2):
        obs = rng.integers(0, 256, spec.in_shape, dtype=np.uint8)
        a = pol(obs)
        logits, a_ref, stats = _reference(spec, theta, ref, obs)
        assert np.array_equal(pol.logits, logits)
        assert a == a_ref
    for (m, inv), m_p, inv_p in zip(stats, pol.vbn_mean, pol.vbn_inv_std):
        assert np.array_equal(m, m_p) and np.array_equal(inv, inv_p)


def test_vbn_statistics_are_recomputed_for_every_theta():
    spec, pol, theta, ref, rng = _policy("a3c", True)
    other = theta + np.float32(0.3) * rng.standard_normal(theta.size).astype(np.float32)
    pol.set_theta(theta)
    s1 = [x.copy() for x in pol.vbn_mean + pol.vbn_inv_std]
    pol.set_theta(other)
    s2 = [x.copy() for x in pol.vbn_mean + pol.vbn_inv_std]
    assert all(not np.array_equal(a, b) for a, b in zip(s1, s2))
    pol.set_theta(theta)
    assert all(np.array_equal(a, x) for a, x in zip(s1, pol.vbn_mean + pol.vbn_inv_std))
    # the statistics normalise the reference batch: layer 1 pre-activations have mean 0, variance ~1
    _, _, stats = _reference(spec, theta, ref, ref[0])
    h = _layer(spec, 0, spec.unflatten(theta)[0][0], (np.arange(256) / 255.0).astype(np.float32)[ref])
    z = (h - stats[0][0][:, None, None]) * stats[0][1][:, None, None]
    assert np.allclose(z.mean(axis=(0, 2, 3)), 0, atol=1e-4) and np.allclose(z.var(axis=(0, 2, 3)), 1, atol=0.05)


def test_non_finite_theta_or_logits_signal_minus_one():
    spec, pol, theta, ref, rng = _policy("a3c", True)
    bad = theta.copy()
    bad[7] = np.nan
    assert pol.set_theta(bad) is False and pol(ref[0]) == -1
    huge = theta.copy()
    views = spec.unflatten(huge)
    views[-1][0][:] = np.float32(3e38)        # finite theta, overflowing logits
    assert pol.set_theta(huge) and pol(ref[0]) == -1
    assert pol.set_theta(theta) and pol(ref[0]) >= 0


def test_bad_input():
    with pytest.raises(ConfigError, match=r"policy.vbn = true.*'mlp'.*no normalisation layers"):
        require_norm_layers("mlp", True)
    require_norm_layers("mlp", False)
    require_norm_layers("a3c", True)
    with pytest.raises(ConfigError, match="atari.net = 'resnet'"):
        CNNSpec("resnet", 4)
    with pytest.raises(ConfigError, match="atari.screen_size = 30"):
        CNNSpec("nature", 4, (4, 30, 30))
    spec = CNNSpec("a3c", 4)
    pol = CNNPolicy(spec)
    with pytest.raises(ConfigError, match="reference batch"):
        pol.set_reference_batch(np.zeros((3, 4, 80, 80), np.uint8))
    with pytest.raises(ConfigError, match="reference batch"):
        pol.set_reference_batch(np.zeros((1, 4, 84, 84), np.uint8))
    with pytest.raises(ValueError, match="float32"):
        pol.set_theta(np.zeros(spec.num_params))
    with pytest.raises(RuntimeError, match="set_reference_batch"):
        pol.set_theta(np.zeros(spec.num_params, np.float32))


def test_spec_round_trips_through_json():
    import json

    spec = CNNSpec("nature", 9, (4, 84, 84), vbn=False, vbn_eps=1e-4)
    d = json.loads(json.dumps(spec.to_dict()))
    again = CNNSpec.from_dict(d)
    assert again.to_dict() == spec.to_dict() and again.num_params == spec.num_params
    pol, rebuilt = CNNPolicy(spec), CNNPolicy.from_spec(json.loads(json.dumps(CNNPolicy(spec).spec())))
    theta = spec.init_theta(np.random.default_rng(2))
    obs = np.random.default_rng(3).integers(0, 256, spec.in_shape, dtype=np.uint8)
    pol.set_theta(theta)
    rebuilt.set_theta(theta)
    assert pol(obs) == rebuilt(obs) and np.array_equal(pol.logits, rebuilt.logits)


@pytest.mark.parametrize("c_in,k,s,c_out,size", [(1, 3, 1, 3, 7), (2, 3, 2, 5, 9), (3, 4, 2, 2, 10)])
def test_kernels_on_odd_shapes_equal_the_reference_to_the_bit(c_in, k, s, c_out, size):
    """Odd channel counts and r counts not divisible by 4 take the kernels' tail loops."""
    from esmpi.policies import cnn_kernels as K

    rng = np.random.default_rng(c_in * 100 + c_out)
    x = rng.standard_normal((c_in, size, size)).astype(np.float32)
    W = rng.standard_normal((c_in * k * k, c_out)).astype(np.float32)
    P, (oh, ow) = _im2col(x, k, s)
    out = np.zeros((c_out, oh, ow), np.float32)
    K.conv_raw(x, W, k, s, np.zeros((1,) + P.shape, np.float32), np.zeros(1, np.int64), out)
    assert np.array_equal(out, _sum_rows(P, W).reshape(c_out, oh, ow))
    v = rng.standard_normal(c_in * k * k).astype(np.float32)
    h = np.zeros(c_out, np.float32)
    K.dense_raw(v, W, h)
    assert np.array_equal(h, _sum_rows(v.reshape(-1, 1), W)[:, 0])


def test_reusing_patches_of_shifted_frame_stacks_gives_the_same_bits():
    """Along a frame-stacked sequence (obs_t[c] = frame[t + c]) the first layer reuses the patches of
    the three older frames; a reset (no shift) re-extracts all. Every step must equal a fresh policy
    (no history) and the numpy reference."""
    spec, pol, theta, ref, rng = _policy("a3c", True, B=4)
    fresh = CNNPolicy(spec)
    fresh.set_reference_batch(ref)
    pol.set_theta(theta)
    fresh.set_theta(theta)
    frames = rng.integers(0, 256, (9, 84, 84), dtype=np.uint8)
    seq = [frames[t:t + 4] for t in range(6)] + [ref[1], frames[5:9]]    # shifts, a reset, a non-shift
    for obs in seq:
        a = pol(np.ascontiguousarray(obs))
        fresh._have_prev[0] = 0                                        # forget history: extract all
        assert a == fresh(np.ascontiguousarray(obs)) and np.array_equal(pol.logits, fresh.logits)
    logits, a_ref, _ = _reference(spec, theta, ref, seq[-1])
    assert np.array_equal(pol.logits, logits)
