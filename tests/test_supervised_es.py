"""The supervised objective in the ES loop (issue 14): config, the three ES modes (mini-batch, no-mini-batch,
limited perturbation) as options of the antithetic strategies, the slice-sum kernel, raw rewards,
resume equality, world-size invariance (``mpi``) and a small learning test (``slow``).
All on a tiny generated dataset (8x8 images, an MLP of a few hundred parameters)."""

import subprocess
import sys

import numpy as np
import pytest

from esmpi import candidates as C
from esmpi import checkpoint, objectives, seeding
from esmpi.comm import SerialComm
from esmpi.config import ConfigError, config_from_dict
from esmpi.noise import NoiseTable, slice_sum_reference, weighted_sum_reference
from esmpi.shaping import SHAPINGS, pair_weights
from esmpi.state import digest
from esmpi.strategies import Context, make
from esmpi.strategies.antithetic import bucket_edges
from esmpi.supervised.settings import NETS
from esmpi.supervised.synthetic import write_synthetic
from esmpi.train import Trainer

from helpers import pair_rounds

MODES = {
    "minibatch": {"es": {"batch_mode": "shared"}},
    "nominibatch": {"es": {"batch_mode": "per_pair"}},
    "per_offspring": {"es": {"batch_mode": "episode"}},
    "split_eval": {"es": {"batch_mode": "shared", "eval_episodes": 3}, "supervised": {"eval_parts": 3}},
    "limited": {"es": {"batch_mode": "per_pair", "perturb_bucket": 100}},
    "ars_limited": {"strategy": {"name": "ars"}, "ars": {"stepsize": 0.05},
                    "es": {"batch_mode": "shared", "perturb_bucket": 64, "l2coeff": None, "shaping": None}},
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("tiny"), n_train=60, n_test=30, size=8)


def sup_config(data, mode="nominibatch", **extra):
    tree = {"run": {"seed": 3, "generations": 4, "max_seconds": 0.0},
            "objective": {"kind": "supervised"},
            "supervised": {"data": str(data), "net": "mlp", "hidden": [8], "batch_size": 10},
            "es": {"pairs_per_generation": 5, "noise_stdev": 0.02, "shaping": "raw", "l2coeff": 2e-4,
                   "eval_episodes": 1, "obs_stat_fraction": 0.0, "min_timesteps_per_generation": 150},
            "optimizer": {"stepsize": 0.01},
            "noise": {"size": 100_000, "seed": 7},
            "checks": {"replica_check_every": 2}}
    for part in (MODES[mode], extra):
        for sec, vals in part.items():
            for k, v in vals.items():
                if v is None:
                    tree.get(sec, {}).pop(k, None)
                else:
                    tree.setdefault(sec, {})[k] = v
    if tree.get("strategy", {}).get("name") == "ars":
        tree.pop("optimizer")
    return config_from_dict(tree, "<test>")


def train(cfg, comm=None, **kw):
    comm = comm or SerialComm()
    t = Trainer(cfg, objectives.make(cfg, comm), comm, **kw)
    t.run()
    return t


# ------------------------------------------------------------------ config and settings
def test_settings_nets_match_the_presets():
    from esmpi.supervised.nets import PRESETS
    assert NETS == tuple(PRESETS)


def test_supervised_config_builds_the_objective(tiny):
    cfg = sup_config(tiny)
    obj = objectives.make(cfg)
    assert obj.num_params == 64 * 8 + 8 + 8 * 10 + 10 and obj.settings.batch_size == 10
    assert cfg.task == f"supervised-{tiny.name}"
    assert "supervised" in cfg.to_dict() and "atari" not in cfg.to_dict()


@pytest.mark.parametrize("tree, expect", [
    ({"objective": {"kind": "supervised"}, "supervised": {"net": "cnn"}}, "supervised.net = 'cnn': must be one of"),
    ({"objective": {"kind": "supervised"}, "supervised": {"batch": 5}}, "supervised.batch: unknown key (did you mean supervised.batch_size?)"),
    ({"objective": {"kind": "supervised"}, "supervised": {"batch_size": 0}}, "supervised.batch_size = 0: must be >= 1"),
    ({"objective": {"kind": "supervised"}, "supervised": {"hidden": 8}}, "supervised.hidden = 8: expected a list"),
    ({"supervised": {"net": "mlp"}}, "key 'supervised.net' needs objective.kind = \"supervised\""),
    ({"es": {"perturb_bucket": 0}}, "key 'es.perturb_bucket': Input should be greater than or equal to 1"),
    ({"es": {"batch_mode": "pair"}}, "key 'es.batch_mode'"),
    ({"es": {"batch_mode": "shared", "schedule": "steal"}}, "es.schedule = 'steal'"),
    ({"objective": {"kind": "supervised"}, "supervised": {"eval_parts": 3}, "es": {"eval_episodes": 2}},
     "key 'es.eval_episodes' = 2 must be a multiple of supervised.eval_parts = 3"),
])
def test_bad_supervised_keys_are_one_line_errors(tree, expect):
    with pytest.raises(ConfigError) as e:
        config_from_dict(tree, "job.toml")
    msg = str(e.value)
    assert msg.startswith("job.toml: ") and expect in msg and "\n" not in msg, msg


@pytest.mark.parametrize("body, expect", [
    ('[supervised]\ndata = "TINY"\nbatch_size = 61\n', "supervised.batch_size = 61 is larger than the 60 training images"),
    ('[supervised]\ndata = "TINY"\n[es]\nperturb_bucket = 0\n', "key 'es.perturb_bucket': Input should be greater than or equal to 1"),
])
def test_bad_input_exits_2_naming_file_and_key_and_creates_nothing(tiny, tmp_path, body, expect):
    job = tmp_path / "job.toml"
    job.write_text('[objective]\nkind = "supervised"\n[noise]\nsize = 10000\n' + body.replace("TINY", str(tiny)))
    r = subprocess.run([sys.executable, "-m", "esmpi.run", "--config", str(job), "--out", str(tmp_path / "run"), "-q"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert f"{job}: " in r.stderr and expect in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------ the modes in the candidate table
def _ask(cfg, d, g=2):
    ctx = Context(run_seed=cfg.run.seed, d=d, noise_size=cfg.noise.size)
    s = make(cfg, ctx)
    st = s.init(np.zeros(d, np.float32))
    first = s.ask(st, g, 0, [])
    return first[first["kind"] == C.TRAIN], first[first["kind"] == C.EVAL]


def test_batch_modes_address_the_mini_batches(tiny):
    n = 5
    plain, _ = _ask(sup_config(tiny, "per_offspring"), 610)
    ref = C.antithetic_pairs(3, 2, 0, n, 610, 100_000, 0.02, 0.0, 0)
    np.testing.assert_array_equal(plain, ref)              # 'episode' = the loop's original rows, bit for bit
    shared, ev = _ask(sup_config(tiny, "minibatch"), 610)
    assert {C.address(c) for c in shared} == {(seeding.MINIBATCH, 2)} and ev.size == 1
    pp, _ = _ask(sup_config(tiny, "nominibatch"), 610)
    assert [C.address(c) for c in pp] == [(seeding.MINIBATCH, 2, 0, j) for j in range(n) for _ in (0, 1)]
    for t in (shared, pp):   # only the addresses change: offsets, signs, slots, indices as before
        for f in ("index", "slot", "offset", "sign", "lo", "hi", "scale"):
            np.testing.assert_array_equal(t[f], ref[f], err_msg=f)


def test_bucket_edges():
    np.testing.assert_array_equal(bucket_edges(10, 3), [0, 2, 5, 7, 10])
    np.testing.assert_array_equal(bucket_edges(6, 3), [0, 3, 6])
    np.testing.assert_array_equal(bucket_edges(6, 100), [0, 6])
    e = bucket_edges(3_274_634, 5_000)
    assert e.size - 1 == 655 and np.diff(e).max() <= 5_000 and np.diff(e).min() >= 4_999


def test_limited_perturbation_rows_carry_one_seeded_bucket_per_pair(tiny):
    cfg = sup_config(tiny, "limited")
    t, _ = _ask(cfg, 610)
    edges = bucket_edges(610, 100)
    k = seeding.rng(3, seeding.BUCKET, 2, 0).integers(0, edges.size - 1, size=5, dtype=np.int64)
    np.testing.assert_array_equal(t["lo"], np.repeat(edges[k], 2))
    np.testing.assert_array_equal(t["hi"], np.repeat(edges[k + 1], 2))
    assert np.all(t["hi"] - t["lo"] <= 100)


def test_a_limited_candidate_perturbs_only_its_slice(tiny):
    from esmpi.evaluate import Evaluator
    cfg = sup_config(tiny, "limited")
    obj = objectives.make(cfg)
    noise = NoiseTable(cfg.noise.size, cfg.noise.seed)
    t, _ = _ask(cfg, obj.num_params)
    base = np.arange(obj.num_params, dtype=np.float32).reshape(1, -1)
    ev = Evaluator(obj, noise, 3, 0)
    for c in t[:4]:
        lo, hi, off = int(c["lo"]), int(c["hi"]), int(c["offset"])
        x = ev.materialize(c, base).copy()
        want = base[0].copy()
        want[lo:hi] = base[0, lo:hi] + np.float32(c["sign"]) * (np.float32(0.02) * noise.noise[off + lo : off + hi])
        np.testing.assert_array_equal(x, want)


# ------------------------------------------------------------------ the slice-sum kernel
def _bits(a):
    return np.asarray(a, np.float32).view(np.uint32)


@pytest.mark.parametrize("d, n", [(1, 3), (37, 9), (610, 40), (5_003, 17)])
def test_slice_sum_is_bitwise_the_numpy_loop_for_any_split(d, n):
    rng = np.random.default_rng(d)
    t = NoiseTable(20_000, 5)
    offs = rng.integers(0, t.size - d + 1, n)
    w = rng.standard_normal(n).astype(np.float32) * np.float32(1e3) ** rng.integers(-2, 3, n).astype(np.float32)
    lo = rng.integers(0, d, n)
    hi = np.minimum(d, lo + rng.integers(0, d // 3 + 2, n))
    lo[0], hi[0] = 0, d                                   # one full perturbation, one empty slice
    if n > 1:
        hi[1] = lo[1]
    ref = slice_sum_reference(t.noise, w, offs, lo, hi, d)
    np.testing.assert_array_equal(_bits(t.slice_sum(w, offs, lo, hi, d)), _bits(ref))
    cut = sorted({0, d, *rng.integers(0, d + 1, 3).tolist()})
    parts = [t.slice_sum(w, offs, lo, hi, d, a, b) for a, b in zip(cut[:-1], cut[1:])]
    np.testing.assert_array_equal(_bits(np.concatenate(parts)), _bits(ref))
    full = t.slice_sum(w, offs, np.zeros(n, np.int64), np.full(n, d), d)
    np.testing.assert_array_equal(_bits(full), _bits(weighted_sum_reference(t.noise, w, offs, d)))
    np.testing.assert_array_equal(_bits(full), _bits(t.weighted_sum(w, offs, d)))


def test_limited_update_changes_only_perturbed_slices(tiny):
    from esmpi.strategies.openai_es import OpenAIES
    cfg = sup_config(tiny, "limited", es={"l2coeff": 0.0})
    d = 610
    noise = NoiseTable(cfg.noise.size, cfg.noise.seed)
    rounds = pair_rounds([10, 500, 77], [[-2.30, -2.31], [-1.0, -0.9], [-3.0, -3.0]], d=d)
    c = rounds[0].candidates
    c["lo"], c["hi"] = np.repeat([0, 300, 100], 2), np.repeat([100, 400, 200], 2)
    s = OpenAIES(cfg, Context(3, d, cfg.noise.size))
    st = s.init(np.ones(d, np.float32))
    new, _ = s.tell(st, 0, rounds, noise)
    w = pair_weights(SHAPINGS["raw"](np.array([[-2.30, -2.31], [-1.0, -0.9], [-3.0, -3.0]])))
    g = slice_sum_reference(noise.noise, w, [10, 500, 77], [0, 300, 100], [100, 400, 200], d) / np.float32(6)
    changed = new.theta != st.theta
    np.testing.assert_array_equal(changed, g != 0)       # Adam moves exactly the coordinates with a gradient
    assert changed[:100].all() and changed[300:400].all() and not changed[100:300].any() and not changed[400:].any()


# ------------------------------------------------------------------ raw rewards
def test_raw_shaping_keeps_the_float64_difference():
    r = np.array([[-2.302585092994046, -2.302584092994046], [-np.inf, -1.0]])
    raw = SHAPINGS["raw"](r)
    assert raw.dtype == np.float64 and raw[1, 0] == -2.302585092994046   # failed: worst finite return
    w = pair_weights(raw)
    assert w[0] == np.float32(r[0, 0] - r[0, 1])                          # one rounding, of the difference
    w_id = pair_weights(SHAPINGS["identity"](r))
    assert abs(w_id[0] - w[0]) > 1e-2 * abs(w[0])                          # identity loses it in float32


# ------------------------------------------------------------------ the loop
@pytest.mark.parametrize("mode", list(MODES))
def test_each_mode_trains_evaluates_and_resumes_exactly(tiny, tmp_path, mode):
    full = train(sup_config(tiny, mode, run={"generations": 4}))
    half = train(sup_config(tiny, mode, run={"generations": 2}))
    ck = checkpoint.load(half.save_checkpoint(tmp_path / "c.h5"))
    cont = train(sup_config(tiny, mode, run={"generations": 4}), state=ck["state"], history=ck["history"])
    assert digest(cont.state) == digest(full.state)
    assert [h["EvalEpRewMean"] for h in cont.history] == [h["EvalEpRewMean"] for h in full.history]
    h = full.history[0]
    # two blocks of 5 pairs x 2 x 10 images reach min_timesteps_per_generation = 150; one evaluation
    assert h["TimestepsThisIter"] == 200 and h["BlocksThisIter"] == 2
    obj = objectives.make(sup_config(tiny, mode))
    theta0 = obj.initial_theta(seeding.rng(3, seeding.INIT_THETA))
    first = full.state.theta if mode.startswith("ars") else theta0   # ARS starts at zero (ars.zero_init)
    if mode == "split_eval":                  # three parts of the 30 test images, one EVAL candidate each
        whole = objectives.make(sup_config(tiny, "minibatch")).eval_episode(first, 0, 1).ret
        assert h["EvalEpCount"] == 3 and abs(h["EvalEpRewMean"] - whole) < 1e-12
    elif not mode.startswith("ars"):
        assert h["EvalEpRewMean"] == obj.eval_episode(first, 0, 1).ret   # test accuracy of the unperturbed theta


# ------------------------------------------------------------------ MPI: any world size, same bits
@pytest.mark.mpi
@pytest.mark.parametrize("mode", list(MODES))
def test_each_mode_is_world_size_invariant(tmp_path, mode):
    from esmpi.comm import make_comm
    comm = make_comm()
    data = write_synthetic(tmp_path / "tiny", n_train=60, n_test=30, size=8)   # same bytes on every rank
    cfg = sup_config(data, mode, run={"generations": 3})
    mpi, serial = train(cfg, comm), train(cfg)
    assert digest(mpi.state) == digest(serial.state)
    for a, b in zip(mpi.history, serial.history):
        for k in ("EpRewMean", "EvalEpRewMean", "TimestepsThisIter", "EpFailures"):
            assert a[k] == b[k], k
    assert len(set(comm.allgather_obj(digest(mpi.state).hex()))) == 1


# ------------------------------------------------------------------ learning (slow, seconds)
@pytest.mark.slow
@pytest.mark.parametrize("mode", ["minibatch", "nominibatch", "limited"])
def test_es_improves_test_accuracy(tiny, mode):
    """80 generations of 20 pairs on 10-image batches (about a CPU-second): test accuracy goes from
    chance (0.07 of 30 test images) to >= 0.8 (measured 0.93-0.97 at the last generations); limited
    perturbation moves 100 of the 610 parameters per pair, so it is slower: >= 0.5 (measured 0.6-0.9
    over run seeds 3-5)."""
    cfg = sup_config(tiny, mode, run={"generations": 80},
                     es={"pairs_per_generation": 20, "min_timesteps_per_generation": 0, "noise_stdev": 0.02},
                     optimizer={"stepsize": 0.05})
    t = train(cfg)
    acc = [h["EvalEpRewMean"] for h in t.history]
    assert acc[0] < 0.35 and max(acc[-5:]) >= (0.5 if mode == "limited" else 0.8), acc


# ------------------------------------------------------------------ the SGD baseline beside ES in `esmpi plot`
def test_plot_draws_an_sgd_baseline_beside_es_runs(tiny, tmp_path):
    from esmpi.analyze import group_runs, load_run, plot_runs
    from esmpi.supervised.sgd import main as sgd_main
    assert sgd_main(["--data", str(tiny), "--net", "mlp", "--iterations", "4", "--batch-size", "10",
                     "--eval-every", "2", "--out", str(tmp_path / "sgd")]) == 0
    es = []
    for mode in ("minibatch", "nominibatch"):
        t = Trainer(sup_config(tiny, mode, run={"generations": 2}), objectives.make(sup_config(tiny, mode)),
                    SerialComm(), run_dir=tmp_path / mode)
        (tmp_path / mode).mkdir()
        (tmp_path / mode / "config.toml").write_text("")
        t.run()
        es.append(load_run(tmp_path / mode))
    sgd = load_run(tmp_path / "sgd")
    assert sgd.config["strategy"]["name"] == "sgd_adam" and len(sgd.history) == 4
    assert np.isnan(sgd.history[0]["EvalEpRewMean"]) and sgd.history[1]["EvalEpRewMean"] >= 0
    assert [len(g) for g in group_runs([*es, sgd])] == [1, 1, 1]     # two ES modes and SGD: three curves
    fig = plot_runs([*es, sgd], x="generation")
    assert len(fig.axes[0].get_lines()) == 6
