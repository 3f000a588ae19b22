"""Atari under MPI, valid at any world size (``mpiexec -n N python -m pytest --only-mpi``): every rank
gathers the same VBN reference batch from the run seed, and a candidate table evaluated with
candidate c on rank c % size, gathered and sorted by c, equals what each process computes alone, to
the bit (returns, lengths and the RAM behaviour characterisations). Separate processes run the same
numba kernels on the same inputs, so this also checks that nothing process-specific leaks in."""

import hashlib

import numpy as np
import pytest

from esmpi import seeding
from esmpi.comm import SerialComm, make_comm
from esmpi.objectives.atari import REF_KEY, AtariObjective

pytestmark = pytest.mark.mpi

RUN_SEED, N_CANDIDATES = 5, 6


@pytest.fixture(scope="module")
def comm():
    return make_comm()


@pytest.fixture(scope="module")
def obj():
    o = AtariObjective({"game": "pong", "frame_cap": 400, "ref_batch_size": 16, "ref_batch_prob": 0.2, "bc": True})
    o.set_objective_state(o.initial_objective_state(RUN_SEED))
    yield o
    o.close()


def _rows(obj, comm):
    theta0 = obj.initial_theta(seeding.rng(RUN_SEED, seeding.INIT_THETA))
    rows = []
    for c in range(N_CANDIDATES):
        if c % comm.size != comm.rank:
            continue
        eps = seeding.rng(RUN_SEED, seeding.OFFSETS, c).standard_normal(theta0.size).astype(np.float32)
        theta = theta0 + np.float32(0.02) * eps
        r = obj.episode(theta, seeding.episode_seed(RUN_SEED, seeding.EPISODE, 0, c), obj.max_episode_steps)
        rows.append(np.concatenate([[c, r.ret, r.length, r.failed], r.bc]))
    width = 4 + obj.bc_dim
    got = comm.allgather_rows(np.array(rows, np.float64).reshape(-1, width)).reshape(-1, width)
    return got[np.argsort(got[:, 0], kind="stable")]


def test_reference_batch_is_identical_on_every_rank(comm, obj):
    digest = hashlib.sha256(obj.initial_objective_state(RUN_SEED)[REF_KEY].tobytes()).hexdigest()
    assert len(set(comm.allgather_obj(digest))) == 1


def test_candidate_table_is_world_size_invariant(comm, obj):
    mpi = _rows(obj, comm)
    serial = _rows(obj, SerialComm())
    assert mpi.shape == (N_CANDIDATES, 4 + 128)
    assert np.array_equal(mpi, serial)
    assert not mpi[:, 3].any() and len(set(map(bytes, mpi[:, 4:].astype(np.uint8)))) > 1
