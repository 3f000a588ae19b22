"""Every strategy in the registry, one contract: ask is pure, the digest covers every state field, a
checkpoint round-trips the whole state, k + resume + k == 2k, and a PointMass run works. Plus ARS's
update checked exactly against a hand computation, and the strategy keys of the config.
(World-size invariance of every strategy: tests/test_mpi.py.)"""

import copy

import numpy as np
import pytest

from esmpi import candidates as C
from esmpi import checkpoint
from esmpi.comm import SerialComm
from esmpi.config import ConfigError, load_config
from esmpi.noise import weighted_sum_reference
from esmpi.objectives.gym import EnvObjective
from esmpi.state import digest, walk
from esmpi.strategies import STRATEGY_NAMES, Context, make
from esmpi.train import Trainer

from helpers import STRATEGY_CONFIGS, VARIANT_NAMES, pair_rounds, strategy_config, tiny_config

def test_every_registered_strategy_has_a_test_config():
    assert set(STRATEGY_CONFIGS) == set(STRATEGY_NAMES)


def train(cfg, **kw):
    t = Trainer(cfg, EnvObjective(cfg), SerialComm(), **kw)
    t.run()
    return t


@pytest.mark.parametrize("name", VARIANT_NAMES)
def test_ask_is_a_pure_function_of_its_inputs(name):
    cfg = strategy_config(name)
    t = Trainer(cfg, EnvObjective(cfg), SerialComm())
    s = t.state.strategy
    a = t.strategy.ask(s, 3, 0, [])
    b = make(cfg, t.strategy.ctx).ask(copy.deepcopy(s), 3, 0, [])
    assert a.dtype == C.CANDIDATE and a.tobytes() == b.tobytes()
    assert len(np.unique(a["index"])) == len(a)                       # indices unique within a round
    assert t.strategy.ask(s, 4, 0, []).tobytes() != a.tobytes()        # and addressed by the generation


@pytest.mark.parametrize("name", VARIANT_NAMES)
def test_the_digest_sees_every_leaf_of_the_state(name):
    cfg = strategy_config(name, run={"generations": 2})
    st = train(cfg).state
    base = digest(st)
    leaves = list(walk(st))
    assert any(p.startswith("/strategy/") for p, _, _ in leaves)
    for path, leaf, _ in leaves:
        if isinstance(leaf, np.ndarray) and leaf.size:
            old = leaf.flat[0]
            leaf.flat[0] = np.nextafter(old, np.inf, dtype=leaf.dtype) if leaf.dtype.kind == "f" else old + 1
            assert digest(st) != base, path
            leaf.flat[0] = old
    assert digest(st) == base


@pytest.mark.parametrize("name", VARIANT_NAMES)
def test_checkpoint_round_trip_and_resume_equality(name, tmp_path):
    full = train(strategy_config(name, run={"generations": 6}))
    half = train(strategy_config(name, run={"generations": 3}))
    p = half.save_checkpoint(tmp_path / "c.h5")
    ck = checkpoint.load(p)
    assert ck["attrs"]["strategy"] == half.cfg.strategy.name and digest(ck["state"]) == digest(half.state)
    cont = train(strategy_config(name, run={"generations": 6}), state=ck["state"], history=ck["history"])
    assert digest(cont.state) == digest(full.state)
    for k in half.strategy.history_keys:
        assert k in ck["history"][-1]


@pytest.mark.parametrize("name", VARIANT_NAMES)
def test_pointmass_smoke_run(name):
    t = train(strategy_config(name, run={"generations": 8}))
    assert t.state.generation == 8 and np.all(np.isfinite(t.state.theta))
    assert all(k in t.history[-1] for k in t.strategy.history_keys)
    assert t.history[-1]["EvalEpCount"] > 0          # the unperturbed policy is measured every generation


# ---------------------------------------------------------------- ARS, exactly
def test_ars_update_matches_a_hand_computation():
    cfg = strategy_config("ars", ars={"top_directions": 2, "stepsize": 0.1, "reward_shift": 1.0})
    d = 5
    table = np.random.default_rng(0).standard_normal(200).astype(np.float32)
    ars = make(cfg, Context(0, d, table.size))
    s = ars.init(np.ones(d, np.float32))
    assert not s.theta.any()                                            # zero_init, as the paper
    offsets = [0, 50, 100, 150]
    returns = np.array([[10.0, 2.0], [1.0, 3.0], [7.0, 9.0], [-np.inf, 20.0]])
    lengths = np.array([[2, 2], [1, 1], [4, 2], [3, 5]])
    failed = np.isinf(returns)

    class Table:
        def weighted_sum(self, w, offs, dim):
            return weighted_sum_reference(table, w, offs, dim)

    new, stats = ars.tell(s, 0, pair_rounds(offsets, returns, lengths, failed, d=d), Table())
    # by hand: shifted = r - 1.0 * len; pair 3 failed (never kept); max per pair: 8, 2, 7 -> keep pairs 0 and 2
    shifted = returns - lengths
    kept = [0, 2]
    r = shifted[kept]
    sigma_r = np.std(r)
    step = np.zeros(d)
    for j in kept:
        step += (shifted[j, 0] - shifted[j, 1]) / sigma_r * table[offsets[j] : offsets[j] + d]
    np.testing.assert_allclose(new.theta, 0.1 / 2 * step, rtol=1e-6)
    assert stats["ARSKept"] == 2 and stats["ARSRewardStd"] == pytest.approx(sigma_r)


def test_ars_without_usable_pairs_leaves_theta_unchanged():
    cfg = strategy_config("ars")
    ars = make(cfg, Context(0, 3, 100))
    s = ars.init(np.zeros(3, np.float32))
    class Never:
        def weighted_sum(self, *a):
            raise AssertionError("no update expected")
    new, stats = ars.tell(s, 0, pair_rounds([0, 10], [[1.0, 1.0], [1.0, 1.0]], d=3), Never())
    assert not new.theta.any() and stats["ARSRewardStd"] == 0.0


# ---------------------------------------------------------------- config
def _write(tmp_path, text):
    p = tmp_path / "job.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("text, key", [
    ('[ars]\ntop_directions = 2\n', "ars.top_directions"),                       # ARS key under OpenAI-ES
    ('[strategy]\nname = "ars"\n[optimizer]\nstepsize = 0.1\n', "optimizer.stepsize"),
    ('[strategy]\nname = "ars"\n[es]\nl2coeff = 0.1\n', "es.l2coeff"),
])
def test_a_key_of_another_strategy_is_refused(tmp_path, text, key):
    with pytest.raises(ConfigError) as e:
        load_config(_write(tmp_path, text))
    msg = str(e.value)
    assert str(tmp_path / "job.toml") in msg and f"'{key}' belongs to strategy" in msg and "\n" not in msg


def test_unknown_strategy_and_too_many_top_directions(tmp_path):
    with pytest.raises(ConfigError, match="unknown strategy 'arz'; did you mean 'ars'"):
        load_config(_write(tmp_path, '[strategy]\nname = "arz"\n'))
    with pytest.raises(ConfigError, match="ars.top_directions = 30 is larger than es.pairs_per_generation = 20"):
        load_config(_write(tmp_path, '[strategy]\nname = "ars"\n[ars]\ntop_directions = 30\n'))


def test_a_saved_ars_config_loads_back_under_the_ownership_check():
    cfg = strategy_config("ars")
    tree = cfg.to_dict()
    assert "optimizer" not in tree and "l2coeff" not in tree["es"] and tree["ars"]["top_directions"] == 4
    from esmpi.config import config_from_dict
    assert config_from_dict(tree).to_dict() == tree
    assert "ars" not in tiny_config().to_dict()


@pytest.mark.parametrize("toml, expect", [
    ('[strategy]\nname = "cmaes"\n', "unknown strategy 'cmaes'"),
    ('[ars]\nstepsize = 0.1\n', "key 'ars.stepsize' belongs to strategy 'ars', but strategy.name = 'openai_es'"),
    ('[strategy]\nname = "ars"\n[optimizer]\nname = "sgd"\n', "key 'optimizer.name' belongs to strategy 'openai_es'"),
])
def test_strategy_errors_at_the_command_line(tmp_path, toml, expect):
    import subprocess
    import sys
    job = _write(tmp_path, toml)
    r = subprocess.run([sys.executable, "-m", "esmpi.run", "--config", str(job), "--out", str(tmp_path / "run")],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and str(job) in r.stderr and expect in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "run").exists()


def test_an_ars_checkpoint_cannot_resume_as_openai_es(tmp_path):
    import subprocess
    import sys
    t = train(strategy_config("ars", run={"generations": 2}))
    (tmp_path / "run").mkdir()
    from esmpi.config import dump_config
    (tmp_path / "run" / "config.toml").write_text(dump_config(t.cfg))
    (tmp_path / "run" / "checkpoints").mkdir(exist_ok=True)
    t.save_checkpoint(tmp_path / "run" / "checkpoints" / "gen_000002.h5")
    before = sorted(p.name for p in (tmp_path / "run").rglob("*"))
    r = subprocess.run([sys.executable, "-m", "esmpi.run", "--resume", str(tmp_path / "run"), "--set",
                        'strategy.name="openai_es"', "--set", "run.generations=4"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "belongs to strategy 'ars', but strategy.name = 'openai_es'" in r.stderr, r.stderr
    assert sorted(p.name for p in (tmp_path / "run").rglob("*")) == before
