"""The ES vs finite-differences toy study: the landscapes have the optima the docs claim, the
methods behave as the study reports on one start point each, and the study's outputs are made."""

import numpy as np

import esmpi
from esmpi import toys


def test_gap_landscape_has_a_local_optimum_left_of_the_trench_and_the_global_one_beyond():
    xs = np.linspace(-1.0, 0.0, 10001)
    f = np.array([toys.gap((x, 0.0)) for x in xs])
    x_local = xs[np.argmax(f)]
    assert -0.2 < x_local < -0.1 and f.max() < -1.0
    assert toys.gap((2.0, 0.0)) == 0.0 and toys.gap((0.0, 0.0)) < -2.9


def test_finite_differences_stop_at_the_gap_and_wide_es_crosses_it():
    th0 = toys.start_point("gap", 0)
    fd = toys.fd_run(toys.gap, th0, steps=400)
    assert -0.3 < fd[-1][0] < 0.0                      # stuck at the trench's left wall
    es = toys.es_run(toys.gap, th0, 0.5, seed=0, steps=300)
    assert es.shape == (301, 2) and es[-1][0] > 1.0     # crossed towards the optimum at x = 2


def test_narrowing_path_stops_wide_es_but_not_finite_differences():
    th0 = toys.start_point("path", 0)
    fd = toys.fd_run(toys.path, th0, steps=300)
    wide = toys.es_run(toys.path, th0, 0.5, seed=0, steps=300)
    assert fd[-1][0] > 4.0 and wide[-1][0] < 3.5


def test_optimize_callback_sees_the_new_mean_of_every_generation():
    seen = []
    res = esmpi.optimize(lambda w: -float(np.sum(w**2)), np.ones(2), generations=5, pairs=3, noise_stdev=0.1,
                         stepsize=0.1, seed=0, noise_size=1000, callback=lambda m: seen.append(m["theta"]))
    assert len(seen) == 5 and np.array_equal(seen[-1], res.theta)
    assert all("theta" not in h for h in res.history)


def test_study_table_figure_and_command(tmp_path, capsys):
    res = toys.study(seeds=1, steps=10, sweep_seeds=1)
    assert [len(v) for v in res["sweep"]["success"].values()] == [len(toys.SWEEP)] * 2
    assert toys.sweep_table(res).count("\n") == 1 + len(toys.SWEEP)
    md = toys.table(res)
    assert md.count("\n") == 2 + 6 - 1 and "finite differences" in md
    fig = toys.figure(res)
    assert len(fig.axes) == 6
    assert toys.main(["--out", str(tmp_path / "missing")]) == 2
    assert toys.main(["--out", str(tmp_path), "--seeds", "1", "--steps", "5", "--sweep-seeds", "1"]) == 0
    assert {p.name for p in tmp_path.iterdir()} == {"toys.json", "toys.md", "toys.png"}
