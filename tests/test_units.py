"""Exact unit tests on tiny arrays: shaping, gradient estimate, optimizers, observation statistics,
noise offsets and the weighted noise sum, policy layout and forward pass."""

import numpy as np
import pytest

from esmpi import optim, seeding, shaping
from esmpi.state import TrainState
from esmpi.state import digest as state_digest
from esmpi.strategies import Context, make
from esmpi.noise import NoiseTable, weighted_sum_reference
from esmpi.obs_norm import ObsStats
from esmpi.policies.mlp import ActionSpec, MLPPolicy, MLPSpec, tanh

from helpers import pair_rounds, tiny_config


# ---------------------------------------------------------------- shaping
def test_centered_ranks_exact():
    r = np.array([[3.0, -1.0], [10.0, 2.0], [0.5, 7.0]])
    # ascending order: -1, 0.5, 2, 3, 7, 10 -> ranks 0..5 -> /5 - 0.5
    expected = (np.array([[3, 0], [5, 2], [1, 4]]) / 5 - 0.5).astype(np.float32)  # computed in float64
    np.testing.assert_array_equal(shaping.centered_ranks(r), expected.astype(np.float32))
    assert shaping.centered_ranks(r).min() == -0.5 and shaping.centered_ranks(r).max() == 0.5


def test_failed_episodes_rank_last_and_ties_share_their_rank():
    r = np.array([[-np.inf, 1.0], [1.0, 5.0], [-np.inf, -np.inf]])
    cr = shaping.centered_ranks(r)
    # sorted: -inf, -inf, -inf (ranks 0,1,2 -> 1), 1, 1 (3,4 -> 3.5), 5 (5); /5 - 0.5
    expected = np.array([[1, 3.5], [3.5, 5], [1, 1]]) / 5 - 0.5
    np.testing.assert_allclose(cr, expected, rtol=1e-6)
    w = shaping.pair_weights(cr)
    assert w[2] == 0.0                            # both episodes failed: no contribution
    np.testing.assert_array_equal(w, cr[:, 0] - cr[:, 1])


def test_identity_shaping_replaces_failures_with_worst_finite():
    out = shaping.identity(np.array([[-np.inf, 2.0], [-3.0, 4.0]]))
    np.testing.assert_array_equal(out, np.array([[-3.0, 2.0], [-3.0, 4.0]], np.float32))


# ---------------------------------------------------------------- gradient estimate
class _Identity:
    """A 'noise table' whose weighted_sum is the numpy reference loop (for the analytic check)."""

    def __init__(self, table):
        self.noise = table

    def weighted_sum(self, w, offsets, d):
        return weighted_sum_reference(self.noise, w, offsets, d)


def test_gradient_on_quadratic_matches_analytic_value():
    """f(theta) = -|theta - c|^2. With antithetic pairs the quadratic terms cancel exactly:
    f(theta + s e) - f(theta - s e) = 2 s e.grad, so with raw returns (identity shaping) esmpi's
    estimate g = sum_j (f+_j - f-_j) e_j / (2N) equals s * (E^T E / N) grad in closed form. The
    estimate is taken from esmpi's own update: OpenAI-ES's ``tell`` with esmpi's NoiseTable, SGD with
    stepsize 1 and no momentum from theta = 0, so the new theta IS g."""
    rng = np.random.default_rng(0)
    d, n, sigma = 5, 40, 0.1
    table = NoiseTable(10_000, seed=4)
    offsets = table.offsets(run_seed=1, generation=0, block=0, n_pairs=n, dim=d)
    c = rng.standard_normal(d)
    theta = np.zeros(d)
    E = np.stack([table.get(o, d).astype(np.float64) for o in offsets])
    f = lambda x: -np.sum((x - c) ** 2)
    returns = np.array([[f(theta + sigma * e), f(theta - sigma * e)] for e in E])
    cfg = tiny_config(es={"shaping": "identity", "l2coeff": 0.0}, optimizer={"name": "sgd", "stepsize": 1.0,
                                                                           "momentum": 0.0})
    es = make(cfg, Context(run_seed=1, d=d, noise_size=table.size))
    new, stats = es.tell(es.init(theta.astype(np.float32)), 0, pair_rounds(offsets, returns, d=d), table)
    g = new.theta.astype(np.float64)
    grad = -2 * (theta - c)
    np.testing.assert_allclose(g, sigma * (E.T @ E / n) @ grad, rtol=2e-5, atol=1e-6)   # float32 arithmetic
    assert stats["GradNorm"] == pytest.approx(np.linalg.norm(g), rel=1e-6)
    assert g @ grad > 0                               # and the estimate points uphill


def test_tell_applies_reference_update_exactly():
    """tell() = centered ranks -> g/(2N) -> Adam(-g + l2*theta), recomputed by hand."""
    cfg = tiny_config(es={"l2coeff": 0.01}, optimizer={"stepsize": 0.1})
    d, n = 6, 4
    rng = np.random.default_rng(1)
    table = rng.standard_normal(1000).astype(np.float32)
    es = make(cfg, Context(run_seed=0, d=d, noise_size=table.size))
    st = es.init(rng.standard_normal(d).astype(np.float32))
    offsets = np.array([0, 10, 500, 990 - d])
    returns = rng.standard_normal((n, 2))
    new, stats = es.tell(st, 0, pair_rounds(offsets, returns, np.full((n, 2), 50), d=d), _Identity(table))
    w = shaping.pair_weights(shaping.centered_ranks(returns))
    g = weighted_sum_reference(table, w, offsets, d) / np.float32(2 * n)
    step, _ = optim.adam(optim.init_state(d), -g + np.float32(0.01) * st.theta, 0.1, 0.9, 0.999, 1e-8)
    np.testing.assert_array_equal(new.theta, st.theta + step)
    assert new.optimizer.t == 1
    assert stats["GradNorm"] == pytest.approx(np.linalg.norm(g), rel=1e-6)


# ---------------------------------------------------------------- optimizers
def test_adam_first_step_is_stepsize_times_sign():
    g = np.array([0.5, -2.0, 0.1], np.float32)  # |g| >> eps/sqrt(1-beta2)
    step, s = optim.adam(optim.init_state(3), g, 0.01, 0.9, 0.999, 1e-8)
    # t=1: m = 0.1 g, v = 0.001 g^2, a = 0.01 sqrt(0.001)/0.1 -> step = -0.01 g/|g| (up to eps)
    np.testing.assert_allclose(step, -0.01 * np.sign(g), rtol=1e-4)
    assert s.t == 1
    np.testing.assert_allclose(s.m, 0.1 * g, rtol=1e-6)
    np.testing.assert_allclose(s.v, 0.001 * g * g, rtol=1e-5)


def test_adam_matches_textbook_over_several_steps():
    rng = np.random.default_rng(2)
    st = optim.init_state(4)
    m = v = np.zeros(4)
    for t in range(1, 6):
        g = rng.standard_normal(4).astype(np.float32)
        step, st = optim.adam(st, g, 0.01, 0.9, 0.999, 1e-8)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g.astype(np.float64) ** 2
        expect = -0.01 * np.sqrt(1 - 0.999**t) / (1 - 0.9**t) * m / (np.sqrt(v) + 1e-8)
        np.testing.assert_allclose(step, expect, rtol=1e-5)


def test_sgd_momentum():
    st = optim.init_state(2)
    step, st = optim.sgd(st, np.array([1.0, -1.0], np.float32), stepsize=0.5, momentum=0.9)
    np.testing.assert_allclose(step, [-0.05, 0.05], rtol=1e-6)


# ---------------------------------------------------------------- observation statistics
def test_obs_stats_initial_normaliser_is_identity_like():
    mean, std = ObsStats.initial(3).mean_std(0.1)
    np.testing.assert_array_equal(mean, np.zeros(3, np.float32))
    np.testing.assert_allclose(std, np.ones(3), rtol=1e-6)


def test_obs_stats_merge_matches_pooled_statistics():
    rng = np.random.default_rng(3)
    episodes = [rng.normal(2.0, 3.0, (int(rng.integers(5, 50)), 4)) for _ in range(6)]
    sums = np.stack([e.sum(0) for e in episodes])
    sumsqs = np.stack([(e * e).sum(0) for e in episodes])
    counts = np.array([len(e) for e in episodes], float)
    merged = ObsStats.initial(4).merged(sums, sumsqs, counts)
    allobs = np.concatenate(episodes)
    assert merged.count == pytest.approx(len(allobs) + 1e-2)
    mean, std = merged.mean_std(0.1)
    np.testing.assert_allclose(mean, allobs.mean(0), rtol=1e-3)
    np.testing.assert_allclose(std, allobs.std(0), rtol=1e-3)
    # merging is an explicit ordered sum: same order, same bits
    again = ObsStats.initial(4).merged(sums, sumsqs, counts)
    np.testing.assert_array_equal(merged.sum, again.sum)


def test_obs_std_floor():
    s = ObsStats(np.array([10.0]), np.array([100.0]), 1.0)   # variance 0
    assert s.mean_std(0.1)[1][0] == pytest.approx(0.1)


# ---------------------------------------------------------------- noise table
def test_noise_table_is_the_seeded_float32_stream():
    t = NoiseTable(1234, seed=5)
    np.testing.assert_array_equal(t.noise, np.random.default_rng(5).standard_normal(1234, dtype=np.float32))


def test_offsets_are_a_pure_function_of_seed_generation_block():
    t = NoiseTable(1000, seed=1)
    a = t.offsets(9, 3, 0, 20, 100)
    np.testing.assert_array_equal(a, t.offsets(9, 3, 0, 20, 100))
    assert not np.array_equal(a, t.offsets(9, 4, 0, 20, 100))
    assert not np.array_equal(a, t.offsets(9, 3, 1, 20, 100))
    assert not np.array_equal(a, t.offsets(10, 3, 0, 20, 100))
    big = t.offsets(9, 3, 0, 5000, 100)
    assert big.min() >= 0 and big.max() <= 900 and big.max() > 850
    with pytest.raises(ValueError):
        t.offsets(9, 0, 0, 1, 1001)


@pytest.mark.parametrize("d", [1, 7, 64, 1000])
def test_weighted_sum_bitwise_equals_numpy_loop(d):
    t = NoiseTable(50_000, seed=2)
    rng = np.random.default_rng(d)
    offs = rng.integers(0, t.size - d, 37)
    w = rng.standard_normal(37).astype(np.float32)
    ref = weighted_sum_reference(t.noise, w, offs, d)
    np.testing.assert_array_equal(t.weighted_sum(w, offs, d), ref)
    # any split of the d axis gives the same bits (what the node-split update relies on)
    if d > 2:
        lo, hi = d // 3, 2 * d // 3
        np.testing.assert_array_equal(t.weighted_sum(w, offs, d, lo, hi), ref[lo:hi])


def test_episode_seeds_differ_by_address():
    seeds = {seeding.episode_seed(1, seeding.EPISODE, g, b, j, s) for g in range(3) for b in range(2)
             for j in range(5) for s in range(2)}
    assert len(seeds) == 60 and all(0 <= x < 2**63 for x in seeds)


# ---------------------------------------------------------------- policy
def _spec(**kw):
    return MLPSpec(3, ActionSpec("box", 2, (-1.0, -1.0), (1.0, 1.0)), hidden=(4,), **kw)


def test_layout_and_normc_init():
    spec = _spec()
    assert spec.layer_sizes == [3, 4, 2] and spec.num_params == 4 * 3 + 4 + 2 * 4 + 2
    theta = spec.init_theta(np.random.default_rng(0))
    (W1, b1), (W2, b2) = spec.unflatten(theta)
    assert W1.shape == (3, 4) and W2.shape == (4, 2)          # (n_in, n_out), the reference's layout
    np.testing.assert_allclose(np.linalg.norm(W1, axis=0), 1.0, rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(W2, axis=0), 0.01, rtol=1e-5)
    assert not b1.any() and not b2.any()
    assert np.shares_memory(W1, theta)


def test_forward_matches_manual_computation():
    spec = _spec()
    theta = np.random.default_rng(1).standard_normal(spec.num_params).astype(np.float32)
    pol = MLPPolicy(spec, obs_clip=5.0)
    pol.set_theta(theta)
    mean, std = np.array([1.0, 0, -1], np.float32), np.array([2.0, 1, 0.5], np.float32)
    pol.set_obs_norm(mean, std)
    obs = np.array([3.0, 100.0, -1.2])
    (W1, b1), (W2, b2) = spec.unflatten(theta)
    x = np.clip((obs.astype(np.float32) - mean) / std, -5, 5)
    expect = np.clip(np.tanh(x @ W1 + b1) @ W2 + b2, -1, 1)
    np.testing.assert_allclose(pol(obs), expect, rtol=1e-5)
    # exactly: the kernel sums inputs in index order, in float32, then the policy's tanh
    h = b1.copy()
    for k in range(3):
        h = h + x[k] * W1[k]
    h = tanh(h)
    o = b2.copy()
    for k in range(4):
        o = o + h[k] * W2[k]
    np.testing.assert_array_equal(pol(obs), np.clip(o, -1, 1))
    assert pol(np.array([1.0, np.nan, 0.0])) is None          # non-finite observation


def test_policy_tanh_is_within_6_ulp_of_exact_tanh():
    x = np.concatenate([np.linspace(-12, 12, 200_001), np.linspace(-1e-3, 1e-3, 10_001)]).astype(np.float32)
    exact = np.tanh(x.astype(np.float64))
    err = np.abs(tanh(x).astype(np.float64) - exact)
    assert err.max() < 4e-7
    assert (err / np.spacing(np.abs(exact).astype(np.float32))).max() < 6
    np.testing.assert_array_equal(tanh(-x), -tanh(x))          # odd


def test_discretised_actions_map_bins_to_the_box():
    spec = MLPSpec(2, ActionSpec("box", 2, (-1.0, 0.0), (1.0, 4.0)), hidden=(3,), action_bins=5)
    assert spec.n_out == 10
    theta = np.zeros(spec.num_params, np.float32)
    (_, _), (_, b2) = spec.unflatten(theta)
    b2[4] = 1.0            # dim 0 -> bin 4 (high end)
    b2[5 + 2] = 1.0        # dim 1 -> bin 2 (middle)
    pol = MLPPolicy(spec)
    pol.set_theta(theta)
    np.testing.assert_allclose(pol(np.zeros(2)), [1.0, 2.0])


def test_discrete_action_space_argmax():
    spec = MLPSpec(2, ActionSpec("discrete", n=3), hidden=(2,))
    theta = np.zeros(spec.num_params, np.float32)
    spec.unflatten(theta)[1][1][2] = 1.0
    pol = MLPPolicy(spec)
    pol.set_theta(theta)
    assert pol(np.zeros(2)) == 2


def test_state_digest_sees_every_field():
    from dataclasses import replace

    from esmpi.state import walk
    cfg = tiny_config()
    st = TrainState(make(cfg, Context(0, 3, 100)).init(np.zeros(3, np.float32)), ObsStats.initial(2), cutoff=10)
    base = state_digest(st)
    assert state_digest(replace(st, cutoff=11)) != base
    # every array leaf of the walk, changed by the smallest amount, changes the digest
    for path, leaf, _ in walk(st):
        if isinstance(leaf, np.ndarray):
            old = leaf.flat[-1]
            leaf.flat[-1] = np.nextafter(old, np.inf, dtype=leaf.dtype)
            assert state_digest(st) != base, path
            leaf.flat[-1] = old
            assert state_digest(st) == base
    # and each counter (one unit), the optimizer's step count and the observation count
    for name in ("generation", "episodes_so_far", "timesteps_so_far", "cutoff"):
        assert state_digest(replace(st, **{name: getattr(st, name) + 1})) != base, name
    opt = st.strategy.optimizer
    assert state_digest(replace(st, strategy=replace(st.strategy, optimizer=replace(opt, t=opt.t + 1)))) != base
    assert state_digest(replace(st, obs=replace(st.obs, count=np.nextafter(st.obs.count, np.inf)))) != base


def test_l2norm_sums_in_index_order_in_float64():
    """The history's norms are the same on every CPU: one float64 loop in index order, no BLAS."""
    import math

    from esmpi.metrics import l2norm
    x = np.random.default_rng(5).standard_normal(1001).astype(np.float32) * np.float32(1e3)
    acc = 0.0
    for v in x.astype(np.float64):
        acc += v * v
    assert l2norm(x) == math.sqrt(acc)
    assert l2norm(np.zeros(0, np.float32)) == 0.0 and l2norm(np.array([3.0, 4.0])) == 5.0


@pytest.mark.parametrize("sign", [1, -1])
def test_perturb_is_numpys_two_ufuncs_to_the_bit(sign):
    """One fused pass (the GA child, the ES candidate) with the bits of ``scaled = eps * s; base +- scaled``."""
    from esmpi.noise import perturb
    rng = np.random.default_rng(11)
    base = rng.standard_normal(10_007).astype(np.float32) * np.float32(3)
    eps = rng.standard_normal(10_007).astype(np.float32)
    for s in (0.002, 0.02, 1 / 3, 7.5):
        scaled = eps * np.float32(s)
        want = base + scaled if sign > 0 else base - scaled
        got = perturb(np.empty_like(base), base, eps, s, sign)
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32))
        inplace = base.copy()
        assert np.array_equal(perturb(inplace, inplace, eps, s, sign), want)
    with pytest.raises(ValueError, match="float32 arrays of one shape"):
        perturb(np.empty(3, np.float32), base[:3].astype(np.float64), eps[:3], 0.1)
