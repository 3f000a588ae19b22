"""MPI tests, valid at any world size: ``mpiexec -n N python -m pytest --only-mpi`` for N = 1, 2, 3.

World-size invariance is proven by comparing, on every rank, the state reached with the MPI
communicator against the state the same process reaches alone with the serial communicator:
equal sha256 of the whole state at every N means equal bits at 1, 2 and 3 ranks.
"""

import numpy as np
import pytest

from esmpi.comm import SerialComm, make_comm
from esmpi.errors import ReplicaMismatch
from esmpi.state import digest as state_digest
from esmpi.objectives.gym import EnvObjective
from esmpi.train import Trainer


from helpers import VARIANT_NAMES, strategy_config, tiny_config

pytestmark = pytest.mark.mpi


@pytest.fixture(scope="module")
def comm():
    return make_comm()


def _final_state(cfg, comm):
    t = Trainer(cfg, EnvObjective(cfg), comm)
    t.run()
    return t


@pytest.mark.parametrize("overrides", [
    {},                                                                     # obs norm on, 2+ blocks, evals
    {"es": {"pairs_per_generation": 2, "eval_episodes": 5, "min_timesteps_per_generation": 0}},  # fewer pairs than ranks
    {"env": {"kwargs": {"nan_prob": 0.2}}, "es": {"episode_cutoff": "adaptive", "cutoff_initial": 10}},
    {"es": {"action_noise_std": 0.1}, "optimizer": {"name": "sgd"}, "policy": {"action_bins": 3}},
])
def test_world_size_invariance(comm, overrides):
    cfg = tiny_config(**overrides)
    mpi = _final_state(cfg, comm)
    serial = _final_state(cfg, SerialComm())
    assert mpi.state.generation == serial.state.generation == cfg.run.generations
    assert state_digest(mpi.state) == state_digest(serial.state)
    np.testing.assert_array_equal(mpi.state.theta, serial.state.theta)
    # the gathered scalars agree too (not just the update)
    for a, b in zip(mpi.history, serial.history):
        for k in ("EpRewMean", "EvalEpRewMean", "TimestepsThisIter", "ObCount", "EpFailures"):
            assert a[k] == b[k] or (np.isnan(a[k]) and np.isnan(b[k])), k


@pytest.mark.parametrize("name", VARIANT_NAMES)
def test_every_strategy_is_world_size_invariant(comm, name):
    cfg = strategy_config(name, run={"generations": 5})
    mpi, serial = _final_state(cfg, comm), _final_state(cfg, SerialComm())
    assert state_digest(mpi.state) == state_digest(serial.state)
    assert [h["EvalEpRewMean"] for h in mpi.history] == [h["EvalEpRewMean"] for h in serial.history]


def test_node_shared_noise_table_is_identical_everywhere(comm):
    from esmpi.noise import NoiseTable
    t = NoiseTable(100_003, seed=11, comm=comm)
    ref = np.random.default_rng(11).standard_normal(100_003, dtype=np.float32)
    np.testing.assert_array_equal(t.noise, ref)


def test_node_split_update_equals_the_serial_sum(comm):
    from esmpi.noise import NodeSplitSum, NoiseTable
    t = NoiseTable(200_000, seed=3, comm=comm)
    rng = np.random.default_rng(5)
    for d in (1, 100, 4_097):
        offs = rng.integers(0, t.size - d, 50)
        w = rng.standard_normal(50).astype(np.float32)
        split = NodeSplitSum(t, comm, d)
        for _ in range(2):                         # the shared buffer is reused safely
            np.testing.assert_array_equal(split.weighted_sum(w, offs, d), t.weighted_sum(w, offs, d))
        assert split.hi - split.lo <= -(-d // comm.node_size) + NodeSplitSum.ALIGN


def test_black_box_api_under_mpi_matches_serial(comm):
    import esmpi
    f = lambda w: -float(np.sum((w - np.array([1.0, -2.0], np.float32)) ** 2))
    a = esmpi.optimize(f, np.zeros(2), generations=30, pairs=9, noise_stdev=0.1, stepsize=0.05, comm=comm)
    b = esmpi.optimize(f, np.zeros(2), generations=30, pairs=9, noise_stdev=0.1, stepsize=0.05)
    np.testing.assert_array_equal(a.theta, b.theta)


@pytest.mark.mpi(min_size=2)
def test_replica_check_catches_a_perturbed_rank(comm):
    cfg = tiny_config(run={"generations": 1})
    t = _final_state(cfg, comm)
    t.check_replicas()                       # in sync after training
    if comm.rank == 1:
        t.state.theta[0] = np.nextafter(t.state.theta[0], np.float32(np.inf))   # one ulp on one rank
    with pytest.raises(ReplicaMismatch) as e:
        t.check_replicas()
    others = [r for r in range(comm.size) if r != 1]
    assert f"ranks {others} hold state" in str(e.value) and "ranks [1] hold state" in str(e.value)


def test_steal_schedule_keeps_replicas_identical(comm):
    """'steal' trades world-size invariance for no idle ranks: results depend on timing, but every
    rank must still apply the same update, and no static pair may be lost."""
    cfg = tiny_config(es={"schedule": "steal", "min_timesteps_per_generation": 0, "pairs_per_generation": 4},
                      run={"generations": 6})
    t = Trainer(cfg, EnvObjective(cfg), comm)
    t.run()                                    # check_replicas runs every 2 generations and at the end
    t.check_replicas()
    assert all(h["EpisodesThisIter"] >= 8 for h in t.history)
    if comm.size == 1:                         # nothing to steal from: identical to 'static'
        static = _final_state(tiny_config(es={"min_timesteps_per_generation": 0, "pairs_per_generation": 4},
                                          run={"generations": 6}), SerialComm())
        assert state_digest(t.state) == state_digest(static.state)


@pytest.fixture
def pretend_nodes(monkeypatch):
    """A communicator whose ranks form min(2, size) pretend nodes (ESMPI_TEST_PRETEND_NODES), each with
    its own shared windows, so node-local code meets a cross-node allgather on one machine."""
    monkeypatch.setenv("ESMPI_TEST_PRETEND_NODES", "2")
    c = make_comm()
    yield c
    c.free()


def test_pretend_nodes_split_the_world(pretend_nodes):
    c = pretend_nodes
    leaders = c.allgather_obj(c.node_rank == 0)
    assert sum(leaders) == min(2, c.size)                 # really 2 nodes once there are 2 ranks
    sizes = c.allgather_obj(c.node_size)
    assert sum(1 / s for s in sizes) == pytest.approx(min(2, c.size))   # node sizes add up per node


def test_training_across_pretend_nodes_with_a_chunked_fill_equals_serial(pretend_nodes, monkeypatch):
    """Two or more nodes (one with >= 2 ranks at 3+ ranks: its NodeSplitSum and shared windows meet
    the other node's plain sum in the allgather), and a noise table filled in 13 chunks per node."""
    import esmpi.noise as noise_mod
    monkeypatch.setattr(noise_mod, "FILL_CHUNK", 4_000)
    cfg = tiny_config()
    assert cfg.noise.size > 10 * noise_mod.FILL_CHUNK
    mpi = _final_state(cfg, pretend_nodes)
    ref = np.random.default_rng(cfg.noise.seed).standard_normal(cfg.noise.size, dtype=np.float32)
    np.testing.assert_array_equal(mpi.noise.noise, ref)   # every pretend node filled its own copy, chunk by chunk
    monkeypatch.setattr(noise_mod, "FILL_CHUNK", 10_000_000)
    serial = _final_state(cfg, SerialComm())
    assert state_digest(mpi.state) == state_digest(serial.state)
