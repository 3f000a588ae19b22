"""Study tools of issue 14: the ES estimate built with esmpi's own noise sum, its correlation with the
true gradient against the small-sigma theory, the SGD-with-noise proxy, and the SGD baseline."""

import math

import numpy as np
import pytest

from esmpi.noise import NoiseTable, weighted_sum_reference
from esmpi.objectives.supervised import SupervisedObjective, SupervisedSettings
from esmpi.shaping import centered_ranks, identity
from esmpi.supervised import study as S
from esmpi.supervised.sgd import train_sgd
from esmpi.supervised.synthetic import write_synthetic


@pytest.fixture(scope="module")
def table():
    return NoiseTable(2_000_000, 7)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("tiny"), n_train=60, n_test=30, size=8)


def test_cosine_pearson():
    a = np.array([1.0, 2.0, 3.0])
    assert S.cosine(a, 2 * a) == pytest.approx(1.0) and S.cosine(a, -a) == pytest.approx(-1.0)
    assert S.pearson(a, a + 10) == pytest.approx(1.0) and S.cosine(a, a + 10) < 0.99
    assert math.isnan(S.cosine(a, np.zeros(3)))


def test_theory_and_the_papers_figures():
    d = 3_274_634
    assert S.theory_correlation(5_000, d) == pytest.approx(0.039, abs=5e-4)        # 10,000 offspring: 3.9%
    p20 = S.pairs_for_correlation(0.2, d)
    assert 2 * p20 == pytest.approx(274_000, rel=0.01)                              # 20%: ~274,000 offspring
    assert S.theory_correlation(p20, d) >= 0.2 > S.theory_correlation(p20 - 1, d)
    assert S.theory_correlation(1, 1) == 1.0


def test_es_gradient_is_the_loops_sum(table):
    rng = np.random.default_rng(0)
    d, n = 37, 9
    offsets = rng.integers(0, table.size - d, n)
    rewards = rng.standard_normal((n, 2))
    for shaping, shaped in (("identity", identity(rewards)), ("centered_ranks", centered_ranks(rewards))):
        w = (shaped[:, 0] - shaped[:, 1]).astype(np.float32)
        want = weighted_sum_reference(table.noise, w, offsets, d) / np.float32(2 * n)
        assert np.array_equal(S.es_gradient(rewards, offsets, table, d, shaping), want)


@pytest.mark.parametrize("pairs", [25, 100, 400])
def test_es_correlation_matches_small_sigma_theory(table, pairs):
    """A quadratic reward (antithetic differences are exactly linear): the mean cosine of R estimates
    agrees with sqrt(p / (p + d - 1)) within 4 standard errors of the mean."""
    d, R = 100, 60
    rng = np.random.default_rng(pairs)
    target = rng.standard_normal(d).astype(np.float32)
    theta = rng.standard_normal(d).astype(np.float32)

    def f(x, j, sign):
        return -0.5 * float(np.sum((x.astype(np.float64) - target) ** 2))

    cos = []
    for step in range(R):
        off = S.study_offsets(table, 11, step, pairs, d)
        g = S.es_gradient(S.perturbed_rewards(f, theta, 1e-3, off, table), off, table, d)
        cos.append(S.cosine(g, target - theta))
    se = np.std(cos, ddof=1) / math.sqrt(R)
    assert abs(np.mean(cos) - S.theory_correlation(pairs, d)) < 4 * se, (np.mean(cos), se)


def test_proxy_has_the_target_correlation():
    g = np.random.default_rng(1).standard_normal(5_000)
    for rho in (0.039, 0.2, 0.9):
        assert S.cosine(S.proxy_gradient(g, rho, np.random.default_rng(2)), g) == pytest.approx(rho, rel=1e-9)
        noise = np.random.default_rng(3).standard_normal(g.size)
        m = S.proxy_scale(np.linalg.norm(g), rho, g.size, orthogonal=False)
        assert S.cosine(g + m * noise, g) == pytest.approx(rho, abs=0.02)       # the paper's form, in expectation


def test_objective_correlation_row(tiny, table):
    obj = SupervisedObjective(SupervisedSettings(str(tiny), net="mlp", hidden=(8,), batch_size=20))
    theta = obj.initial_theta(np.random.default_rng(0))
    row = S.objective_correlation(obj, theta, 1e-3, table, run_seed=5, step=0, pairs=300)
    assert row["d"] == obj.num_params == 64 * 8 + 8 + 8 * 10 + 10
    # small sigma: the network is locally linear, so the theory holds to sampling error (sd ~0.03 here)
    assert abs(row["es_true"] - row["theory"]) < 0.15 and row["theory"] > 0.5
    assert 0 < row["sgd_sgd"] < 1
    shared = S.objective_es_gradient(obj, theta, 1e-3, table, 5, 0, 50)
    per_pair = S.objective_es_gradient(obj, theta, 1e-3, table, 5, 0, 50, shared_batch=False)
    assert shared.shape == per_pair.shape == (obj.num_params,) and not np.array_equal(shared, per_pair)


def test_sgd_baseline_learns_and_is_deterministic(tiny):
    obj = SupervisedObjective(SupervisedSettings(str(tiny), net="mlp", hidden=(16,), batch_size=10))
    theta, hist = train_sgd(obj, seed=3, iterations=60, stepsize=1e-2, eval_every=20)
    theta2, hist2 = train_sgd(obj, seed=3, iterations=60, stepsize=1e-2, eval_every=20)
    assert np.array_equal(theta, theta2)
    assert [h["EvalEpRewMean"] for h in hist if h["EvalEpCount"]] == [h["EvalEpRewMean"] for h in hist2 if h["EvalEpCount"]]
    assert len(hist) == 60 and hist[-1]["TimestepsSoFar"] == 600 and math.isnan(hist[0]["EvalEpRewMean"])
    assert hist[-1]["EvalEpRewMean"] >= 0.8                       # 10 classes: chance is 0.1
    assert np.mean([h["EpRewMean"] for h in hist[-10:]]) > np.mean([h["EpRewMean"] for h in hist[:10]])


def test_sgd_entry_point(tiny, tmp_path, capsys):
    import json
    import subprocess
    import sys

    from esmpi.supervised.sgd import main
    out = tmp_path / "sgd"
    args = ["--data", str(tiny), "--net", "mlp", "--iterations", "5", "--batch-size", "10", "--eval-every", "2",
            "--out", str(out)]
    p = subprocess.run([sys.executable, "-m", "esmpi.supervised.sgd", *args], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    rows = [json.loads(line) for line in (out / "progress.jsonl").read_text().splitlines()]
    assert [r["Generation"] for r in rows] == [1, 2, 3, 4, 5] and rows[0]["EvalEpRewMean"] is None
    assert (out / "history.csv").read_text().startswith("Generation,") and json.loads((out / "config.json").read_text())
    capsys.readouterr()
    for argv, what in ((args, "progress.jsonl exists"),                               # never overwrite a run
                       (["--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")], "nothing"),
                       (args[:-1] + [str(tmp_path / "y"), "--batch-size", "61"], "batch_size = 61")):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert what in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_proxy_training_and_eval_split(tiny):
    obj = SupervisedObjective(SupervisedSettings(str(tiny), net="mlp", hidden=(16,), batch_size=10, eval_chunk=7))
    plain, _ = train_sgd(obj, seed=4, iterations=5, stepsize=1e-2, eval_every=0)
    exact, _ = train_sgd(obj, seed=4, iterations=5, stepsize=1e-2, eval_every=0, proxy_rho=1.0)
    noisy, hist = train_sgd(obj, seed=4, iterations=5, stepsize=1e-2, eval_every=0, proxy_rho=0.3)
    assert np.array_equal(plain, exact) and not np.array_equal(plain, noisy) and math.isnan(hist[-1]["EvalEpRewMean"])
    # the test set split into parts: integer counts add up to eval_episode exactly
    parts = [obj.eval_counts(plain, lo, min(lo + 11, 30)) for lo in range(0, 30, 11)]
    assert sum(c for c, _, _ in parts) / sum(n for _, n, _ in parts) == obj.eval_episode(plain, 0, 1).ret


def test_search_pairs_brackets_the_measured_crossing(tiny, table):
    obj = SupervisedObjective(SupervisedSettings(str(tiny), net="mlp", hidden=(4,), batch_size=20))
    theta = obj.initial_theta(np.random.default_rng(0))
    res = S.search_pairs(obj, theta, 1e-3, table, rho=0.5, run_seed=1, start=32, max_pairs=4096)
    by_p = {r["pairs"]: r["es_true"] for r in res["rows"]}
    assert by_p[res["pairs"]] >= 0.5 and all(v < 0.5 for p, v in by_p.items() if p < res["pairs"] and p >= 32 and
                                              p in (32, 64, 128, 256, 512, 1024, 2048))
    assert 0.5 <= res["pairs"] / res["theory_pairs"] <= 2.0       # d = 310: the theory says 103 pairs
