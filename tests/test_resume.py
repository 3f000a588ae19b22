"""Checkpoints and resume: bitwise resume at another world size, refused config changes, automatic
resume, corrupt/foreign/newer files, interrupted writes, and kill -9 of a rank mid-run."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from esmpi import checkpoint
from esmpi.errors import CheckpointError
from esmpi.state import digest as state_digest

BASE = ["--set", 'env.id="esmpi/PointMass-v0"', "--set", "noise.size=100000", "--set", "policy.hidden=[8]",
        "--set", "es.pairs_per_generation=5", "--set", "es.obs_stat_fraction=0.5", "--set", "checkpoint.every=2",
        "--set", "es.min_timesteps_per_generation=600", "-q"]
TIMING = {"TimeElapsedThisIter", "TimeElapsed", "TimeRollout", "TimeComm", "TimeUpdate", "StepsPerSec"}


def esmpi_run(args, cwd, n=None, venv_bin=None, timeout=180, check=True):
    cmd = [sys.executable, "-m", "esmpi.run", *args]
    if n:
        cmd = [str(venv_bin / "mpiexec"), "-n", str(n), *cmd]
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def assert_same_run(a: Path, b: Path):
    ca, cb = checkpoint.load(a / "latest.h5"), checkpoint.load(b / "latest.h5")
    assert ca["state"].generation == cb["state"].generation
    assert state_digest(ca["state"]) == state_digest(cb["state"])
    for ha, hb in zip(ca["history"], cb["history"], strict=True):
        for k in ha.keys() - TIMING:
            assert ha[k] == hb[k] or (np.isnan(ha[k]) and np.isnan(hb[k])), k


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    d = tmp_path_factory.mktemp("full")
    esmpi_run([*BASE, "--set", "run.generations=6", "--out", str(d / "run")], d)
    return d / "run"


@pytest.mark.parametrize("n", [2, 3])
def test_resume_at_another_world_size_is_bitwise_identical(tmp_path, uninterrupted, venv_bin, n):
    run = tmp_path / "run"
    esmpi_run([*BASE, "--set", "run.generations=3", "--out", str(run)], tmp_path)            # 1 rank, 3 generations
    esmpi_run(["--resume", str(run), "--set", "run.generations=6", "-q"], tmp_path, n=n, venv_bin=venv_bin)
    assert_same_run(uninterrupted, run)
    ck = checkpoint.load(run / "latest.h5")
    rec = json.loads(ck["attrs"]["resumes_json"])
    assert rec[0]["generation"] == 3 and rec[0]["world_size"] == n and rec[0]["changes"] == {"run.generations": [3, 6]}
    assert ck["attrs"]["world_size"] == n
    assert [json.loads(l)["Generation"] for l in (run / "progress.jsonl").read_text().splitlines()] == [1, 2, 3, 4, 5, 6]


def test_changing_a_key_that_shapes_the_run_is_refused(tmp_path):
    run = tmp_path / "run"
    esmpi_run([*BASE, "--set", "run.generations=2", "--out", str(run)], tmp_path)
    before = {p.name: p.stat().st_mtime_ns for p in (run / "checkpoints").iterdir()}
    r = esmpi_run(["--resume", str(run), "--set", "es.noise_stdev=0.1", "--set", "noise.seed=1"], tmp_path, check=False)
    assert r.returncode == 2
    assert "these keys cannot change" in r.stderr and "es.noise_stdev: 0.02 -> 0.1" in r.stderr
    assert "noise.seed: 123 -> 1" in r.stderr and "Start a new run (--out NEW_DIR)" in r.stderr
    assert {p.name: p.stat().st_mtime_ns for p in (run / "checkpoints").iterdir()} == before


def test_auto_resume_for_requeued_jobs(tmp_path, uninterrupted):
    run = tmp_path / "run"
    args = [*BASE, "--set", "run.auto_resume=true", "--out", str(run)]
    esmpi_run([*args, "--set", "run.generations=3"], tmp_path)          # first start: fresh
    r = esmpi_run([*args, "--set", "run.generations=6"], tmp_path)      # requeued: resumes
    assert_same_run(uninterrupted, run)
    # a directory whose run died before its first checkpoint is restarted, anything else is refused
    dead = tmp_path / "dead"
    dead.mkdir()
    (dead / "config.toml").write_text("")
    esmpi_run([*BASE, "--set", "run.auto_resume=true", "--set", "run.generations=1", "--out", str(dead)], tmp_path)
    assert checkpoint.load(dead / "latest.h5")["state"].generation == 1
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    r = esmpi_run([*BASE, "--set", "run.auto_resume=true", "--out", str(other)], tmp_path, check=False)
    assert r.returncode == 2 and "holds other files (notes.txt)" in r.stderr


def test_resume_without_checkpoint_or_directory(tmp_path):
    r = esmpi_run(["--resume", str(tmp_path / "nope")], tmp_path, check=False)
    assert r.returncode == 2 and "no such run directory" in r.stderr
    (tmp_path / "empty").mkdir()
    r = esmpi_run(["--resume", str(tmp_path / "empty")], tmp_path, check=False)
    assert r.returncode == 2 and "no checkpoint in" in r.stderr


# ---------------------------------------------------------------- corrupt, foreign, newer files
@pytest.fixture
def good_ckpt(tmp_path, uninterrupted):
    p = tmp_path / "good.h5"
    shutil.copy(uninterrupted / "latest.h5", p)
    return p


def _edit(path, fn):
    with h5py.File(path, "r+") as f:
        fn(f)


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "not a readable HDF5 file"),
    (lambda p: p.write_bytes(b"\x00garbage" * 100), "not a readable HDF5 file"),
    (lambda p: p.write_bytes(b""), "not a readable HDF5 file"),
    (lambda p: _edit(p, lambda f: f.attrs.__delitem__("format")), "not an esmpi checkpoint (format attribute is None)"),
    (lambda p: _edit(p, lambda f: f.attrs.__setitem__("layout_version", 99)), "layout version 99 is newer"),
    (lambda p: _edit(p, lambda f: f.__delitem__("state/strategy/optimizer/v")), "missing 'state/strategy/optimizer/v'"),
    (lambda p: _edit(p, lambda f: f["state"].attrs.__delitem__("cutoff")), "missing 'state/cutoff'"),
])
def test_damaged_checkpoints_get_a_clear_error(good_ckpt, damage, message):
    checkpoint.load(good_ckpt)
    damage(good_ckpt)
    with pytest.raises(CheckpointError) as e:
        checkpoint.load(good_ckpt)
    assert str(good_ckpt) in str(e.value) and message in str(e.value)


def test_foreign_hdf5_file(tmp_path):
    p = tmp_path / "model.h5"
    with h5py.File(p, "w") as f:
        f["weights"] = np.zeros(3)
    with pytest.raises(CheckpointError, match="not an esmpi checkpoint"):
        checkpoint.load(p)


def test_resume_from_a_corrupt_newest_checkpoint_names_it_and_changes_nothing(tmp_path):
    run = tmp_path / "run"
    esmpi_run([*BASE, "--set", "run.generations=4", "--out", str(run)], tmp_path)
    newest = run / "checkpoints" / "gen_000004.h5"
    newest.write_bytes(newest.read_bytes()[:1000])
    listing = sorted(p.name for p in (run / "checkpoints").iterdir())
    r = esmpi_run(["--resume", str(run), "--set", "run.generations=8"], tmp_path, check=False)
    assert r.returncode == 2 and f"{newest}: not a readable HDF5 file" in r.stderr
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == listing


# ---------------------------------------------------------------- interrupted writes
class Boom(Exception):
    pass


@pytest.mark.parametrize("where", ["create_dataset", "fsync", "replace", "fsync_dir"])
def test_interrupted_write_leaves_the_previous_checkpoint(tmp_path, good_ckpt, monkeypatch, where):
    ck = checkpoint.load(good_ckpt)
    digest = state_digest(ck["state"])
    state = ck["state"]

    def boom(*a, **k):
        raise Boom(where)
    if where == "create_dataset":
        calls = {"n": 0}
        orig = h5py.Group.create_dataset

        def flaky(self, *a, **k):
            calls["n"] += 1
            if calls["n"] == 3:
                raise Boom(where)
            return orig(self, *a, **k)
        monkeypatch.setattr(h5py.Group, "create_dataset", flaky)
    elif where == "fsync":
        monkeypatch.setattr(checkpoint.os, "fsync", boom)
    elif where == "replace":
        monkeypatch.setattr(checkpoint.os, "replace", boom)
    else:
        monkeypatch.setattr(checkpoint, "_fsync_dir", boom)
    with pytest.raises(Boom):
        checkpoint.save(good_ckpt, state, ck["history"] + ck["history"], ck["config_json"], world_size=1)
    monkeypatch.undo()
    after = checkpoint.load(good_ckpt)
    assert [p.name for p in good_ckpt.parent.iterdir() if ".tmp" in p.name] == []
    if where == "fsync_dir":     # the rename had happened: the new file is complete
        assert len(after["history"]) == 2 * len(ck["history"])
    else:
        assert len(after["history"]) == len(ck["history"])
    assert state_digest(after["state"]) == digest


WRITER = """
import sys
from esmpi import checkpoint
ck = checkpoint.load(sys.argv[1])
print("ready", flush=True)
while True:
    checkpoint.save(sys.argv[2], ck["state"], ck["history"] * 50, ck["config_json"], world_size=1)
"""


def test_kill_9_during_writes_never_leaves_a_broken_file(tmp_path, good_ckpt):
    target = tmp_path / "ck.h5"
    shutil.copy(good_ckpt, target)
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    rng = np.random.default_rng(0)
    for _ in range(5):
        p = subprocess.Popen([sys.executable, str(script), str(good_ckpt), str(target)], stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "ready"
        time.sleep(float(rng.uniform(0.05, 0.4)))
        p.send_signal(signal.SIGKILL)
        p.wait()
        checkpoint.load(target)          # always a complete file, old or new
        for t in tmp_path.glob("ck.h5.tmp-*"):
            t.unlink()                   # the dead writer's partial temporary file is never read


def _pids_of(pattern):
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()
    return [int(x) for x in out]


def test_kill_9_of_one_rank_ends_the_job_and_resume_reaches_the_same_state(tmp_path, uninterrupted, venv_bin):
    run = tmp_path / "killed"
    args = [*BASE, "--set", "run.generations=100000", "--out", str(run)]
    p = subprocess.Popen([str(venv_bin / "mpiexec"), "-n", "2", sys.executable, "-m", "esmpi.run", *args],
                         cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (run / "checkpoints" / "gen_000004.h5").exists():
        time.sleep(0.05)
    ranks = [pid for pid in _pids_of(f"esmpi.run .*{run}") if pid != p.pid]
    ranks = [pid for pid in ranks if Path(f"/proc/{pid}/comm").read_text().startswith("python")]
    assert len(ranks) == 2, ranks
    t0 = time.monotonic()
    os.kill(ranks[1], signal.SIGKILL)
    p.communicate(timeout=60)
    assert time.monotonic() - t0 < 20 and p.returncode != 0
    time.sleep(0.5)
    assert not [pid for pid in ranks if Path(f"/proc/{pid}").exists()]          # no rank left hanging
    # resume from the newest surviving checkpoint to two generations past it; compare with a run
    # that was never interrupted
    newest = checkpoint.load(sorted((run / "checkpoints").glob("gen_*.h5"))[-1])["state"].generation
    target = newest + 2
    esmpi_run(["--resume", str(run), "--set", f"run.generations={target}", "-q"], tmp_path, n=2, venv_bin=venv_bin)
    esmpi_run([*BASE, "--set", f"run.generations={target}", "--out", str(tmp_path / "ref")], tmp_path)
    assert_same_run(tmp_path / "ref", run)
