"""``esmpi robustness``: the probe table's addresses, the statistics, world-size invariance (MPI) and
the command on real tiny runs of every strategy (subprocesses: one-line errors, exit 2)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from esmpi import candidates as C
from esmpi import robustness, seeding
from esmpi.analyze import RunData
from esmpi.comm import SerialComm, make_comm
from esmpi.config import config_from_dict
from esmpi.objectives.gym import EnvObjective
from esmpi.train import Trainer

from helpers import make_runs, tiny_config

PM = ['env.id="esmpi/PointMass-v0"', "noise.size=100000", "policy.hidden=[8]", "es.pairs_per_generation=6",
      "es.eval_episodes=2", "run.generations=2"]
RUNS = {"es": PM, "ars": PM + ['strategy.name="ars"', "ars.top_directions=3"]}


def _trained_rundata(strategy="openai_es", **sections):
    """A tiny trained PointMass state as ``RunData`` (in memory, the same on every rank)."""
    cfg = tiny_config(run={"generations": 2}, **sections)
    if strategy != "openai_es":      # tiny_config sets OpenAI-ES's optimizer, which other strategies refuse
        tree = cfg.to_dict()
        tree.pop("optimizer")
        for k in ("l2coeff", "shaping"):
            tree["es"].pop(k)
        cfg = config_from_dict({**tree, "strategy": {"name": strategy}}, "<test>")
    t = Trainer(cfg, EnvObjective(cfg), SerialComm())
    t.run()
    return RunData(Path("mem"), Path("mem.h5"), None, {"state": t.state, "config": cfg, "attrs": {}},
                   cfg.to_dict(), [], f"tiny-{strategy}")


# ---------------------------------------------------------------------------------------------- units
def test_probe_table_addresses_are_prefix_stable_and_shared_across_scales():
    t = robustness.probe_table(d=10, noise_size=1000, k=7, sigmas=[0.1, 0.2], episodes=3, seed=5)
    probes = t[t["kind"] == C.PROBE]
    evals = t[t["kind"] == C.EVAL]
    assert len(np.unique(t["index"])) == t.size == 2 * 7 + 3
    np.testing.assert_array_equal(probes["offset"][:7], probes["offset"][7:])     # same eps_k at every scale
    np.testing.assert_array_equal(probes["scale"], np.float32([0.1] * 7 + [0.2] * 7))
    want = [seeding.rng(5, seeding.PROBE, j).integers(0, 1000 - 10 + 1) for j in range(7)]
    np.testing.assert_array_equal(probes["offset"][:7], want)
    small = robustness.probe_table(d=10, noise_size=1000, k=3, sigmas=[0.1], episodes=3, seed=5)
    np.testing.assert_array_equal(small[small["kind"] == C.PROBE]["offset"], want[:3])   # K=3 is a prefix of K=7
    # perturbation k runs on the start state of unperturbed episode k % episodes
    assert [C.address(c)[1] for c in probes[:7]] == [0, 1, 2, 0, 1, 2, 0]
    assert [C.address(c)[1] for c in evals] == [0, 1, 2]
    assert np.all(t["hi"] == 10) and np.all(evals["offset"] == -1)


def test_stats_quantiles_keep90_and_failures():
    r = np.array([100.0, 95.0, 89.0, 50.0, -np.inf])
    s = robustness._stats(r, 100.0)
    assert s["keep90"] == pytest.approx(0.4) and s["failed"] == 1
    assert s["median"] == 89.0 and s["p90"] == 100.0 and s["p10"] is None     # a failed episode: null in JSON
    assert s["rel_median"] == pytest.approx(0.89) and s["rel_p10"] is None
    neg = robustness._stats(np.array([-100.0, -109.0, -111.0]), -100.0)
    assert neg["keep90"] == pytest.approx(2 / 3) and neg["rel_median"] is None


def test_training_sigma_reads_the_strategy_table_then_es():
    assert robustness.training_sigma({"es": {"noise_stdev": 0.03}}) == 0.03
    assert robustness.training_sigma({"strategy": {"name": "ga"}, "ga": {"mutation_power": 0.002},
                                      "es": {"noise_stdev": 0.03}}) == 0.002


def test_probe_matches_the_trainers_evaluator_and_is_seeded():
    rd = _trained_rundata()
    a = robustness.probe(rd, k=6, multiples=(1.0, 2.0), episodes=2, seed=1)
    b = robustness.probe(rd, k=6, multiples=(1.0, 2.0), episodes=2, seed=1)
    assert a["scales"][0]["returns"] == b["scales"][0]["returns"]
    assert a["training_sigma"] == 0.05 and [s["sigma"] for s in a["scales"]] == [0.05, 0.1]
    # perturbation 0 at scale 1 by hand: theta + 0.05 * eps_0 on episode 0's start state
    obj = EnvObjective(rd.ck["config"])
    obj.set_obs_norm(*rd.state.obs.mean_std(rd.ck["config"].es.obs_std_floor))
    from esmpi.noise import NoiseTable
    from esmpi.replay import ANALYSIS_EVAL
    noise = NoiseTable(rd.ck["config"].noise.size, rd.ck["config"].noise.seed)
    off = int(seeding.rng(1, seeding.PROBE, 0).integers(0, noise.size - obj.num_params + 1))
    theta = rd.state.theta + np.float32(0.05) * noise.get(off, obj.num_params)
    r = obj.episode(theta, seeding.episode_seed(1, ANALYSIS_EVAL, 0), obj.max_episode_steps)
    assert r.ret == a["scales"][0]["returns"][0]
    r0 = obj.episode(rd.state.theta, seeding.episode_seed(1, ANALYSIS_EVAL, 1), obj.max_episode_steps)
    assert r0.ret == a["unperturbed"]["returns"][1]     # the same episode as `esmpi eval --seed 1`
    c = robustness.probe(rd, k=6, multiples=(1.0,), episodes=2, seed=2)
    assert c["scales"][0]["returns"] != a["scales"][0]["returns"]


def test_failed_episodes_are_counted_and_null_in_strict_json():
    rd = _trained_rundata(env={"kwargs": {"nan_prob": 0.3}})   # PointMass: some start states give a NaN reward
    a = robustness.probe(rd, k=20, sigmas=[0.05], episodes=8, seed=0)
    assert a["scales"][0]["failed"] == a["scales"][0]["returns"].count(None) > 0
    # perturbation k shares its start with unperturbed episode k % 8, so the reference failed too
    assert a["unperturbed"]["mean"] is None and None in a["unperturbed"]["returns"]
    assert a["scales"][0]["keep90"] is None and a["scales"][0]["rel_median"] is None
    json.dumps(a, allow_nan=False)                                  # no NaN/Infinity tokens
    assert "n/a (n=8)" in robustness.format_table([a])
    robustness.plot_robustness([a, robustness.probe(_trained_rundata(), k=5, episodes=2)])


# ---------------------------------------------------------------------------------------------- MPI
@pytest.mark.mpi
@pytest.mark.parametrize("strategy", ["openai_es", "ars"])
def test_robustness_is_the_same_bits_at_any_world_size(strategy):
    rd = _trained_rundata(strategy)
    comm = make_comm()
    mpi = robustness.probe(rd, k=9, sigmas=[0.05, 0.2], episodes=3, seed=4, comm=comm)
    serial = robustness.probe(rd, k=9, sigmas=[0.05, 0.2], episodes=3, seed=4, comm=SerialComm())
    assert mpi["ranks"] == comm.size
    for key in ("unperturbed", "scales"):
        assert json.dumps(mpi[key]) == json.dumps(serial[key])


# ---------------------------------------------------------------------------------------------- command
@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return make_runs(root, RUNS, timeout=180)


def _cli(*args, mpi=0):
    cmd = [sys.executable, "-m", "esmpi.analyze", "robustness", *map(str, args)]
    if mpi:
        cmd = [str(Path(sys.executable).parent / "mpiexec"), "-n", str(mpi), *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


def test_command_json_table_and_figure_for_every_strategy(runs, tmp_path):
    fig = tmp_path / "rob.png"
    r = _cli(runs["es"], runs["ars"], "-k", 8, "--episodes", 2, "--json", "-o", fig)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert [x["strategy"] for x in res] == ["openai_es", "ars"]
    assert all(len(s["returns"]) == 8 for x in res for s in x["scales"])
    assert [s["multiple"] for s in res[0]["scales"]] == [1.0, 2.0]
    assert fig.stat().st_size > 1000
    t = _cli(runs["es"], "-k", 8, "--episodes", 2, "--sigma", 0.01)
    assert t.returncode == 0 and "R0 (mean of n)" in t.stdout and "(n=2)" in t.stdout and "keep90" in t.stdout
    # two ranks, the same numbers
    m = _cli(runs["es"], runs["ars"], "-k", 8, "--episodes", 2, "--json", mpi=2)
    assert m.returncode == 0, m.stderr
    got = json.loads(m.stdout)
    assert [x["scales"] for x in got] == [x["scales"] for x in res] and got[0]["ranks"] == 2


@pytest.mark.parametrize("args, expect", [
    (["{empty}"], "no checkpoint yet"),
    (["{es}", "-k", "0"], "-k 0: need at least 1 perturbation"),
    (["{es}", "--sigma", "0"], "--sigma 0.0: perturbation scales must be finite and > 0"),
    (["{es}", "--times", "-2"], "--times -2.0: perturbation scales must be finite and > 0"),
    (["{es}", "--episodes", "0"], "--episodes 0: need at least 1"),
    (["{es}", "-o", "{nodir}/x.png"], "does not exist"),
])
def test_bad_input_is_one_line_and_exit_2(runs, tmp_path, args, expect):
    (tmp_path / "empty").mkdir()
    fill = {"empty": tmp_path / "empty", "es": runs["es"], "nodir": tmp_path / "nodir"}
    r = _cli(*[a.format(**fill) for a in args])
    assert r.returncode == 2, r.stderr
    assert expect in r.stderr and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert list(tmp_path.iterdir()) == [tmp_path / "empty"]
