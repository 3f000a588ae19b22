"""Atari in the one loop (issue 15): a tiny Pong run trains, checkpoints the VBN reference batch with
the state, resumes bitwise without regathering it, loads back as a policy, gives the same bits at any
world size; the Deep GA and novelty search (RAM behaviour characterisations) run on it too."""

import numpy as np
import pytest

pytest.importorskip("ale_py")

from esmpi import checkpoint  # noqa: E402
from esmpi.comm import SerialComm  # noqa: E402
from esmpi.config import config_from_dict  # noqa: E402
from esmpi.objectives import make  # noqa: E402
from esmpi.state import digest  # noqa: E402
from esmpi.train import Trainer  # noqa: E402


def pong(generations):
    return config_from_dict({
        "run": {"seed": 1, "generations": generations},
        "objective": {"kind": "atari"},
        "atari": {"game": "pong", "frame_cap": 160, "ref_batch_size": 8, "ref_batch_prob": 0.5},
        "es": {"pairs_per_generation": 2, "eval_episodes": 1, "obs_stat_fraction": 0.0},
        "noise": {"size": 1_000_000},
        "checks": {"replica_check_every": 1},
    }, "<atari test>")


def train(cfg, **kw):
    t = Trainer(cfg, make(cfg), SerialComm(), **kw)
    t.run()
    return t


def test_pong_trains_checkpoints_its_reference_batch_and_resumes_bitwise(tmp_path):
    full = train(pong(3))
    ref = full.state.extra["vbn_ref_batch"]
    assert ref.shape == (8, 4, 84, 84) and ref.dtype == np.uint8 and ref.any()
    half = train(pong(2))
    ck = checkpoint.load(half.save_checkpoint(tmp_path / "c.h5"))
    np.testing.assert_array_equal(ck["state"].extra["vbn_ref_batch"], ref)
    obj = make(pong(3))
    obj.initial_objective_state = None          # a resumed run must never regather the batch
    cont = Trainer(pong(3), obj, SerialComm(), state=ck["state"], history=ck["history"])
    cont.run()
    assert digest(cont.state) == digest(full.state)
    import esmpi
    p = esmpi.load_policy(tmp_path / "c.h5")
    assert 0 <= p(np.zeros((4, 84, 84), np.uint8)) < 6


def test_atari_keys_need_the_atari_objective():
    from esmpi.config import ConfigError
    with pytest.raises(ConfigError, match="key 'atari.game' needs objective.kind = \"atari\""):
        config_from_dict({"atari": {"game": "pong"}}, "job.toml")
    with pytest.raises(ConfigError, match="job.toml: atari.frame_skip = 0"):
        config_from_dict({"objective": {"kind": "atari"}, "atari": {"frame_skip": 0}}, "job.toml")


@pytest.mark.parametrize("strategy", ["ga", "novelty_es"])
def test_the_ga_and_novelty_search_run_on_pong_and_checkpoint(strategy, tmp_path):
    tree = pong(2).to_dict()
    tree["strategy"] = {"name": strategy}
    tree.pop("optimizer", None)
    for k in ("pairs_per_generation", "eval_episodes", "l2coeff", "shaping"):
        tree["es"].pop(k, None)
    if strategy == "ga":
        tree["ga"] = {"population": 4, "truncation": 2, "sigma": 0.002, "validation_top": 2,
                      "validation_episodes": 1, "test_episodes": 1}
        for k in ("noise_stdev", "min_timesteps_per_generation", "max_blocks_per_generation"):
            tree["es"].pop(k, None)
    else:
        tree["atari"]["bc"] = True                       # the console RAM at episode end: the BC
        tree["novelty"] = {"population": 2, "k": 2, "bc_episodes": 1}
        tree["es"]["pairs_per_generation"] = 2
    cfg = config_from_dict(tree, f"<{strategy} on pong>")
    t = train(cfg)
    assert t.state.generation == 2 and np.all(np.isfinite(t.state.theta))
    ck = checkpoint.load(t.save_checkpoint(tmp_path / "c.h5"))
    assert digest(ck["state"]) == digest(t.state) and ck["attrs"]["strategy"] == strategy


@pytest.mark.mpi
def test_pong_es_is_world_size_invariant():
    from esmpi.comm import make_comm
    comm = make_comm()
    cfg = pong(2)
    mpi = Trainer(cfg, make(cfg), comm)
    mpi.run()
    assert digest(mpi.state) == digest(train(cfg).state)
