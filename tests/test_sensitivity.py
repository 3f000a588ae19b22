"""SM-G building blocks: analytic output gradients of the MLP and GRU policies against finite
differences of the policies themselves, the three sensitivities against float64 definitions, the
authors' clamp and clip, determinism, and one-line errors."""

import numpy as np
import pytest

from esmpi.errors import ConfigError
from esmpi.policies import sensitivity as S
from esmpi.policies.gru import GRUPolicy, GRUSpec, forward as gru_forward
from esmpi.policies.mlp import ActionSpec, MLPPolicy, MLPSpec


def _mlp(nonlinearity="tanh", hidden=(4, 3), obs_dim=3, act_dim=2, seed=0):
    spec = MLPSpec(obs_dim, ActionSpec("box", act_dim, (-1.0,) * act_dim, (1.0,) * act_dim), hidden, nonlinearity)
    rng = np.random.default_rng(seed)
    theta = (rng.standard_normal(spec.num_params) * 0.7).astype(np.float32)
    x = rng.uniform(-2, 2, size=(5, obs_dim)).astype(np.float32)
    return spec, theta, x


def _mlp_outputs(spec, theta, x):
    """Raw outputs (T, n_out) of the policy kernel itself (identity normalisation, no input clipping)."""
    pi = MLPPolicy(spec, obs_clip=1e6)
    pi.set_theta(np.asarray(theta, np.float32))
    out = []
    for row in x:
        pi(row.astype(np.float64))
        out.append(pi.output.astype(np.float64).copy())
    return np.array(out)


def _fd(fun, theta, h):
    """(n_out, T, d) central differences of fun(theta) -> (T, n_out)."""
    cols = []
    for k in range(theta.size):
        e = np.zeros_like(theta)
        e[k] = h
        cols.append((fun(theta + e) - fun(theta - e)) / (2 * h))
    return np.stack(cols, axis=-1).transpose(1, 0, 2)


@pytest.mark.parametrize("nonlinearity", ["tanh", "elu", "selu", "linear", "relu"])
def test_mlp_gradients_match_finite_differences_of_the_policy(nonlinearity):
    spec, theta, x = _mlp(nonlinearity)
    G = S.jacobians(spec, theta, x)
    assert G.shape == (spec.n_out, 5, spec.num_params) and G.dtype == np.float32
    h = 3e-4 if nonlinearity == "relu" else 3e-3    # a smaller step keeps relu's kinks outside [-h, h]
    num = _fd(lambda th: _mlp_outputs(spec, th, x), theta, h)
    np.testing.assert_allclose(G, num, rtol=1e-2, atol=2e-3)


def test_gru_gradients_through_time_match_finite_differences():
    spec = GRUSpec(n_in=2, hidden=4, n_out=2)
    rng = np.random.default_rng(1)
    theta = (rng.standard_normal(spec.num_params) * 0.8).astype(np.float32)
    xs = rng.uniform(-1, 1, size=(3, 5, 2)).astype(np.float32)
    G = S.jacobians(spec, theta, xs)
    assert G.shape == (2, 15, spec.num_params)

    def outputs(th):
        return gru_forward(spec, th, xs).y.astype(np.float64).reshape(15, 2)     # sample b L + t
    num = _fd(outputs, theta, 3e-3)
    np.testing.assert_allclose(G, num, rtol=1e-2, atol=2e-3)
    # the step-by-step policy is the same function, to the bit
    pi = GRUPolicy(spec, obs_clip=1e6)
    pi.set_theta(theta)
    y = gru_forward(spec, theta, xs).y
    for b in range(3):
        pi.reset()
        for t in range(5):
            assert np.array_equal(pi(xs[b, t]), y[b, t])


def test_sensitivities_match_their_float64_definitions():
    spec, theta, x = _mlp()
    G = S.jacobians(spec, theta, x)
    G64 = G.astype(np.float64)
    np.testing.assert_allclose(S.sensitivity(G, "sum"), np.sqrt((G64.sum(axis=1) ** 2).sum(axis=0)), rtol=1e-5)
    np.testing.assert_allclose(S.sensitivity(G, "abs"), np.sqrt((np.abs(G64).mean(axis=1) ** 2).sum(axis=0)),
                               rtol=1e-5)
    v = np.random.default_rng(2).standard_normal(spec.num_params).astype(np.float32)
    J = G64.transpose(1, 0, 2)                       # (T, n_out, d)
    H = 2.0 / J.shape[0] * np.einsum("tid,tie->de", J, J)
    want = np.sqrt(np.abs(H @ (v / np.linalg.norm(v))))
    np.testing.assert_allclose(S.sensitivity(G, "so", direction=v), want, rtol=1e-4, atol=1e-6)


def test_sensitivity_of_the_authors_toy_two_weight_model():
    # sm_simple: outputs y = (100 w0 x0, 0.1 w1 x1); here a linear layer with inputs scaled the same way
    spec = MLPSpec(2, ActionSpec("box", 2, (-1.0, -1.0), (1.0, 1.0)), (), "linear")
    theta = np.array([0.5, 0.0, 0.0, -0.5, 0.0, 0.0], np.float32)          # W (2, 2) row-major, b (2,)
    x = np.array([[100.0, 0.1], [100.0, 0.1]], np.float32)
    s = S.sensitivity(S.jacobians(spec, theta, x), "sum")
    np.testing.assert_array_equal(s, np.float32([200, 200, 0.2, 0.2, 2, 2]))
    eps = np.ones(6, np.float32)
    d = S.safe_mutation(theta, eps, s, 0.1)
    np.testing.assert_allclose(d, [0.0005, 0.0005, 0.2, 0.2, 0.05, 0.05], rtol=1e-6)   # 0.1/0.2 = 0.5 -> clipped


def test_safe_mutation_clamps_and_clips_like_the_authors_code():
    sens = np.float32([0.0, 0.001, 0.5, 2.0, 1e-5, 0.0])
    eps = np.float32([1.0, 1.0, -1.0, 3.0, -0.5, -50.0])
    d = S.safe_mutation(np.zeros(6, np.float32), eps, sens, 0.01)
    # 0 -> 1 (mutated plainly); < 0.01 -> 0.01; then the per-weight clip at +-0.2
    want = np.clip(np.float32(0.01) * eps / np.float32([1.0, 0.01, 0.5, 2.0, 0.01, 1.0]), -0.2, 0.2)
    np.testing.assert_array_equal(d, want)
    assert d.dtype == np.float32 and np.abs(d).max() <= S.CLIP


def test_sensitivities_are_bitwise_deterministic_and_summed_in_sample_order():
    spec, theta, x = _mlp(hidden=(6, 6, 6), seed=3)
    G = S.jacobians(spec, theta, x)
    a = S.sensitivity(G, "sum")
    assert np.array_equal(a, S.sensitivity(S.jacobians(spec, theta.copy(), x.copy()), "sum"))
    acc = np.zeros(spec.num_params, np.float32)
    for i in range(spec.n_out):
        s = np.zeros(spec.num_params, np.float32)
        for t in range(x.shape[0]):
            s = s + G[i, t]
        acc = acc + s * s
    assert np.array_equal(a, np.sqrt(acc))


@pytest.mark.parametrize("call, expect", [
    (lambda: S.jacobians(_mlp()[0], _mlp()[1], np.zeros((0, 3), np.float32)),
     "batch of recorded observations is empty"),
    (lambda: S.jacobians(_mlp()[0], _mlp()[1], np.zeros((4, 5), np.float32)), "the MLP takes (T, 3)"),
    (lambda: S.jacobians(object(), np.zeros(3, np.float32), np.zeros((2, 3))), "needs output gradients"),
    (lambda: S.sensitivity(np.zeros((1, 2, 3), np.float32), "max"), "unknown SM-G method 'max'"),
    (lambda: S.jacobians(_mlp()[0], _mlp()[1], np.full((2, 3), np.nan)), "NaN or inf"),
])
def test_bad_input_is_a_one_line_config_error(call, expect):
    with pytest.raises(ConfigError) as e:
        call()
    assert expect in str(e.value) and "\n" not in str(e.value)


def test_normalized_inputs_are_the_policy_kernels():
    spec, theta, _ = _mlp()
    obs = np.array([[0.3, -7.0, 2.5]])
    mean, std = np.float32([0.1, 0.0, -1.0]), np.float32([0.5, 1.0, 0.25])
    pi = MLPPolicy(spec, obs_clip=5.0)
    pi.set_theta(theta)
    pi.set_obs_norm(mean, std)
    pi(obs[0])
    x = S.normalized_inputs(obs, mean, std, 5.0)
    ident = MLPPolicy(spec, obs_clip=1e6)
    ident.set_theta(theta)
    ident(x[0].astype(np.float64))
    assert np.array_equal(pi.output, ident.output)


@pytest.mark.parametrize("nonlinearity", ["tanh", "selu"])
def test_batch_forward_is_the_policy_kernel_to_the_bit(nonlinearity):
    spec, theta, x = _mlp(nonlinearity, hidden=(8, 8, 8))
    np.testing.assert_array_equal(S.mlp_outputs(spec, theta, x), _mlp_outputs(spec, theta, x).astype(np.float32))


def test_parent_sensitivity_from_raw_observations():
    spec, theta, _ = _mlp()
    obs = np.random.default_rng(4).normal(0, 3, size=(7, 3))
    mean, std = np.float32([0.5, 0, -1]), np.float32([2, 1, 0.5])
    got = S.parent_sensitivity(spec, theta, obs, mean, std, 5.0, "abs")
    want = S.sensitivity(S.jacobians(spec, theta, S.normalized_inputs(obs, mean, std, 5.0)), "abs")
    assert np.array_equal(got, want)
    with pytest.raises(ConfigError, match="empty"):
        S.parent_sensitivity(spec, theta, np.zeros((0, 3)), mean, std, 5.0)
    with pytest.raises(ConfigError, match="per child"):
        S.parent_sensitivity(spec, theta, obs, mean, std, 5.0, "so")
