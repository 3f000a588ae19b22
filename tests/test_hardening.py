"""Issue 10, one test per class of bad input, at the command line as a user runs it: the exit code, a
one-line message naming the file/key/path, no traceback, and the file system as it was.

Read-only locations are a read-only tmpfs mounted by the test (root only; elsewhere those cases skip
with the reason) and, everywhere, a path under a regular file (ENOTDIR). A full disk at checkpoint
time is simulated by making the checkpoint's fsync fail with ENOSPC (in-process trainer).
"""

import errno
import hashlib
import json
import os
import random
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
from esmpi import checkpoint_schema as schema
from esmpi.errors import CheckpointError, EnvError, OutputError

TINY = ["--set", 'env.id="esmpi/PointMass-v0"', "--set", "noise.size=100000", "--set", "policy.hidden=[8]",
        "--set", "es.pairs_per_generation=4", "--set", "es.eval_episodes=1", "--set", "checkpoint.every=1", "-q"]


def esmpi_run(args, cwd, timeout=120, env=None):
    return subprocess.run([sys.executable, "-m", "esmpi.run", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


def esmpi_cli(args, cwd, timeout=120, env=None):
    return subprocess.run([sys.executable, "-m", "esmpi.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


def snapshot(d: Path) -> dict:
    """Every file and link under d with its bytes' hash and mtime: 'nothing created or changed'."""
    out = {}
    for p in sorted(Path(d).rglob("*")):
        st = p.lstat()
        body = os.readlink(p) if p.is_symlink() else (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "")
        out[str(p.relative_to(d))] = (body, st.st_mtime_ns)
    return out


def one_clean_line(r, code: int, *needles):
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1, err
    for n in needles:
        assert str(n) in err, err
    return err


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A 2-generation run of the test env: its directory and newest checkpoint."""
    d = tmp_path_factory.mktemp("tiny")
    r = esmpi_run([*TINY, "--set", "run.generations=2", "--out", str(d / "run")], d)
    assert r.returncode == 0, r.stderr
    return d / "run"


@pytest.fixture
def run_copy(tiny_run, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(tiny_run, dst, symlinks=True)
    return dst


@pytest.fixture
def ro_dir(tmp_path):
    """A directory on a read-only file system (a read-only tmpfs; root can write anywhere else)."""
    d = tmp_path / "ro"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "esmpi-test", str(d)], capture_output=True,
                       text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here ({r.stderr.strip()}); the ENOTDIR cases still run")
    yield d
    subprocess.run(["umount", str(d)], check=True)


# ---------------------------------------------------------------- checkpoints: trust nothing in the file
def _replace(f, name, data):
    del f[name]
    f.create_dataset(name, data=data)


def _set(group, name, value):
    return lambda f: f[group].attrs.__setitem__(name, value) if group else f.attrs.__setitem__(name, value)


DAMAGES = {
    # arrays of the wrong length, but the attributes made consistent with them
    "short_theta": (lambda f: (_replace(f, "state/strategy/theta", f["state/strategy/theta"][()][:-3]),
                               f.attrs.__setitem__("num_params", f.attrs["num_params"] - 3)),
                    "attribute 'num_params' is"),
    "adam_m_shape": (lambda f: _replace(f, "state/strategy/optimizer/m", np.zeros((2, 3), np.float32)),
                     "dataset 'state/strategy/optimizer/m' has shape (2, 3)"),
    "adam_v_dtype": (lambda f: _replace(f, "state/strategy/optimizer/v", f["state/strategy/optimizer/v"][()].astype(np.float64)),
                     "dataset 'state/strategy/optimizer/v' has dtype float64, expected float32"),
    "obs_sum_shape": (lambda f: _replace(f, "state/obs/sum", np.zeros(7)),
                      "dataset 'state/obs/sum' has shape (7,)"),
    "theta_nan": (lambda f: f["state/strategy/theta"].__setitem__(0, np.nan), "dataset 'state/strategy/theta' holds 1 NaN/inf"),
    "theta_inf": (lambda f: f["state/strategy/theta"].__setitem__(1, np.inf), "dataset 'state/strategy/theta' holds 1 NaN/inf"),
    "negative_v": (lambda f: f["state/strategy/optimizer/v"].__setitem__(0, -1.0), "dataset 'state/strategy/optimizer/v' holds negative"),
    "generation_is_string": (_set("state", "generation", "7"), "attribute 'state/generation' is '7' (str), expected an integer"),
    "count_is_inf": (_set("state/obs", "count", np.inf), "attribute 'state/obs/count' is inf"),
    "config_is_array": (_set("", "config_json", np.arange(3)), "attribute 'config_json' is ndarray"),
    "config_not_json": (_set("", "config_json", "{not json"), "attribute 'config_json' is not valid JSON"),
    "policy_not_object": (_set("", "policy_json", "[1, 2]"), "attribute 'policy_json' holds JSON list"),
    "config_not_a_config": (_set("", "config_json", '{"es": {"noise_stdev": "big"}}'),
                            "attribute 'config_json' is not a valid esmpi config: config_json: key 'es.noise_stdev'"),
    "obs_clip_is_string": (lambda f: f.attrs.__setitem__("policy_json", f.attrs["policy_json"].replace(
        '"obs_clip": 5.0', '"obs_clip": "5"')), "attribute 'policy_json['obs_clip']' is '5' (str)"),
    "history_not_table": (lambda f: _replace(f, "history", np.zeros(3)), "dataset 'history' has dtype float64"),
}


RESUMED = {"short_theta", "adam_m_shape", "theta_nan", "generation_is_string", "config_not_json", "config_is_array"}


@pytest.mark.parametrize("name", sorted(DAMAGES))
def test_damaged_checkpoint_is_refused_by_resume_info_and_load_policy(run_copy, tmp_path, capsys, name):
    import esmpi
    from esmpi.cli import main as cli_main

    damage, message = DAMAGES[name]
    newest = sorted((run_copy / "checkpoints").glob("gen_*.h5"))[-1]
    with h5py.File(newest, "r+") as f:
        damage(f)
        # re-signed, as a buggy writer would: the validator, not the content checksum, must catch it
        f.attrs[schema.DIGEST_ATTR] = schema.content_digest(*checkpoint._collect(f))
    before = snapshot(run_copy)
    if name in RESUMED:   # a trainer start costs seconds: --resume for one case of each kind, info for all
        r = esmpi_run(["--resume", str(run_copy), "--set", "run.generations=4"], tmp_path)
        one_clean_line(r, 2, newest, message)
        assert snapshot(run_copy) == before                   # nothing written
    assert cli_main(["info", str(newest)]) == 2           # in-process: the same code path, faster
    assert snapshot(run_copy) == before
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(newest) in err and message in err, err
    with pytest.raises(CheckpointError) as e:
        esmpi.load_policy(newest)
    assert str(newest) in str(e.value) and message in str(e.value)


def test_a_damaged_unsigned_change_is_caught_by_the_content_checksum(run_copy, tmp_path):
    newest = sorted((run_copy / "checkpoints").glob("gen_*.h5"))[-1]
    with h5py.File(newest, "r+") as f:
        f["state/strategy/theta"][0] += 1.0       # well-formed, finite, and wrong
    one_clean_line(esmpi_cli(["info", str(newest)], tmp_path), 2, newest, "content checksum")


def _content(ck):
    from esmpi.state import digest as state_digest
    return state_digest(ck["state"]), json.dumps(ck["history"]), ck["config_json"], ck["attrs"]["policy_json"]


def test_random_byte_flips_and_truncations_always_give_a_clean_error(tiny_run, tmp_path):
    """Property: a checkpoint damaged at random (bytes flipped anywhere, or cut at any offset) loads
    either to exactly the original content (the damage hit unused bytes) or raises CheckpointError;
    never another exception, never different numbers. HDF5 >= 1.10 metadata checksums and the
    datasets' Fletcher-32 checksums are what make the second half hold."""
    src = sorted((tiny_run / "checkpoints").glob("gen_*.h5"))[-1]
    good = src.read_bytes()
    want = _content(checkpoint.load(src))
    rng = random.Random(10)
    p = tmp_path / "damaged.h5"
    outcomes = {"error": 0, "identical": 0}
    for trial in range(40):
        b = bytearray(good)
        if trial % 4 == 3:
            b = b[: rng.randrange(0, len(good))]
        else:
            for _ in range(rng.choice([1, 1, 2, 8])):
                i = rng.randrange(len(b))
                b[i] ^= rng.randrange(1, 256)
        p.write_bytes(bytes(b))
        try:
            got = _content(checkpoint.load(p))
        except CheckpointError as e:
            assert str(p) in str(e) and "\n" not in str(e)
            outcomes["error"] += 1
        else:
            assert got == want, f"trial {trial}: a damaged file loaded with different content"
            outcomes["identical"] += 1
    print(f"damaged checkpoints: {outcomes}")
    assert outcomes["error"] >= 20, outcomes
    # and as a user meets it: one line from the command line
    p.write_bytes(good[: len(good) // 3])
    one_clean_line(esmpi_cli(["info", str(p)], tmp_path), 2, p)


def test_stale_temporary_files_are_removed_and_latest_points_to_a_loadable_file(run_copy, tmp_path):
    ck = run_copy / "checkpoints"
    (ck / "gen_000003.h5.tmp-4242").write_bytes(b"half a checkpoint")
    (run_copy / "config.toml.tmp").write_text("half")
    (run_copy / "latest.h5").unlink()
    (run_copy / "latest.h5").symlink_to("checkpoints/gen_000099.h5")      # dangling
    r = esmpi_run(["--resume", str(run_copy), "--set", "run.generations=3"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "removed 2 temporary file(s) of an interrupted write" in r.stdout
    assert not list(run_copy.rglob("*.tmp*"))
    assert checkpoint.load(run_copy / "latest.h5")["state"].generation == 3


# ---------------------------------------------------------------- numbers and sizes
@pytest.mark.parametrize("override, key", [
    ("es.noise_stdev=inf", "es.noise_stdev"), ("optimizer.stepsize=inf", "optimizer.stepsize"),
    ("es.obs_clip=nan", "es.obs_clip"), ("run.target_return=-inf", "run.target_return"),
    ("optimizer.epsilon=inf", "optimizer.epsilon"),
])
def test_non_finite_numbers_are_refused(tmp_path, override, key):
    r = esmpi_run([*TINY, "--set", override, "--out", str(tmp_path / "run")], tmp_path)
    one_clean_line(r, 2, f"key '{key}'")
    assert not (tmp_path / "run").exists()


def test_every_float_key_refuses_inf_unless_documented():
    from esmpi.config import ALL_KEYS, Config, config_from_dict
    from esmpi.errors import ConfigError

    defaults = Config().model_dump()      # every strategy's tables (to_dict keeps only the chosen one's)
    floats = [k for k in ALL_KEYS if "." in k and isinstance(defaults[k.split(".")[0]][k.split(".")[1]], float)]
    assert len(floats) >= 15
    for k in floats:
        sec, name = k.split(".")
        for bad in (float("inf"), float("nan")):
            with pytest.raises(ConfigError, match=f"key '{k}'"):
                config_from_dict({sec: {name: bad}})


def test_a_noise_table_larger_than_memory_is_refused_before_allocating(tmp_path):
    t0 = time.monotonic()
    r = esmpi_run([*TINY, "--set", "noise.size=1099511627776", "--out", str(tmp_path / "run")], tmp_path)
    one_clean_line(r, 2, "noise table (noise.size = 1099511627776", "needs 4096.00 GiB", "available")
    assert time.monotonic() - t0 < 30 and not (tmp_path / "run").exists()
    # a table that would fit nowhere but the figure is forced small: the same refusal
    env = dict(os.environ, ESMPI_MEM_AVAILABLE="300000")
    r = esmpi_run([*TINY, "--set", "run.generations=1", "--out", str(tmp_path / "run")], tmp_path, env=env)
    one_clean_line(r, 2, "(400000 bytes) but only", "(300000 bytes) is available (ESMPI_MEM_AVAILABLE)")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("content, message", [
    (b"\xff\xfe[es]\nnoise_stdev = 0.1\n", "not UTF-8 text"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "not UTF-8 text"),
    (b"es.noise_stdev: 0.1\n", "not valid TOML"),
])
def test_config_file_that_is_not_utf8_toml(tmp_path, content, message):
    job = tmp_path / "job.toml"
    job.write_bytes(content)
    r = esmpi_run(["--config", str(job), "--out", str(tmp_path / "run")], tmp_path)
    one_clean_line(r, 2, job, message)
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- the run directory: created last
@pytest.mark.parametrize("sets, message", [
    (['env.id="NoSuchEnv-v0"'], "unknown Gymnasium environment"),
    (['env.id="no_such_module_xyz:Env-v0"'], "could not be created"),
    (['env.kwargs={dim = 2, bogus = 1}'], "env.kwargs"),
    (['env.id="Blackjack-v1"'], "observation space Tuple"),
])
def test_nothing_is_created_when_the_env_or_policy_fails(tmp_path, sets, message):
    out = tmp_path / "run"
    args = [*TINY] + [x for s in sets for x in ("--set", s)] + ["--out", str(out)]
    one_clean_line(esmpi_run(args, tmp_path), 2, message)
    assert not out.exists()
    # the corrected command is not refused because of a left-over directory
    r = esmpi_run([*TINY, "--set", "run.generations=1", "--out", str(out)], tmp_path)
    assert r.returncode == 0, r.stderr


def test_a_never_started_run_directory_is_reused(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.toml").write_text("# left by a start that was killed\n")
    (out / "progress.jsonl").write_text("")
    r = esmpi_run([*TINY, "--set", "run.generations=1", "--out", str(out)], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "restarting (no checkpoint yet)" in r.stdout
    # a directory with results is still never reused
    r = esmpi_run([*TINY, "--set", "run.generations=1", "--out", str(out)], tmp_path)
    one_clean_line(r, 2, "already exists")


def test_read_only_output_for_the_trainer(tmp_path, ro_dir):
    one_clean_line(esmpi_run([*TINY, "--out", str(ro_dir / "run")], tmp_path), 2, ro_dir / "run",
                   "read-only file system")


def test_unwritable_output_under_a_file_for_the_trainer(tmp_path):
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "afile" / "run"
    one_clean_line(esmpi_run([*TINY, "--out", str(out)], tmp_path), 2, out, "is not a directory")


def test_a_failed_checkpoint_write_keeps_the_previous_one_and_exits_5(tmp_path, monkeypatch):
    """Disk full at the second checkpoint (fsync raises ENOSPC): one line naming the file, exit 5
    (documented), the first checkpoint and latest.h5 intact, no temporary file left."""
    import esmpi.checkpoint as ck_mod
    from esmpi.comm import SerialComm
    from esmpi.objectives.gym import EnvObjective
    from esmpi.run import guarded
    from esmpi.train import Trainer

    from helpers import tiny_config

    cfg = tiny_config(checkpoint={"every": 1}, run={"generations": 3})
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    t = Trainer(cfg, EnvObjective(cfg), SerialComm(), run_dir=run_dir)
    real_fsync, calls = os.fsync, []

    def fsync(fd):
        calls.append(fd)
        if len(calls) > 2:        # checkpoint 1 (file + directory) succeeds
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(ck_mod.os, "fsync", fsync)
    assert guarded(SerialComm(), t.run) == 5
    files = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert files == ["gen_000001.h5"]
    assert checkpoint.load(run_dir / "latest.h5")["state"].generation == 1
    with pytest.raises(OutputError, match="gen_000002.h5: cannot write the checkpoint .No space left"):
        t.save_checkpoint(run_dir / "checkpoints" / "gen_000002.h5")


def test_plot_export_video_refuse_unwritable_outputs(tiny_run, tmp_path):
    (tmp_path / "afile").write_text("x")
    cases = [
        (["plot", str(tiny_run), "-o", str(tmp_path / "c.docx")], "unsupported image format '.docx'"),
        (["plot", str(tiny_run), "-o", str(tmp_path / "nodir" / "c.png")], "directory"),
        (["plot", str(tiny_run), "-o", str(tmp_path / "afile" / "c.png")], "is not a directory"),
        (["export", str(tiny_run), "--csv", str(tmp_path / "nodir" / "h.csv")], "does not exist"),
        (["export", str(tiny_run), "--csv", str(tmp_path / "afile" / "h.csv")], "is not a directory"),
        (["video", str(tiny_run), "-o", str(tmp_path / "v.avi")], "unsupported video format '.avi'"),
        (["video", str(tiny_run), "-o", str(tmp_path / "nodir" / "v.gif")], "does not exist"),
    ]
    before = snapshot(tmp_path)
    for args, message in cases:
        one_clean_line(esmpi_cli(args, tmp_path), 2, message)
    assert snapshot(tmp_path) == before


def test_plot_export_video_refuse_a_read_only_file_system(tiny_run, tmp_path, ro_dir):
    for args in (["plot", str(tiny_run), "-o", str(ro_dir / "c.png")],
                 ["export", str(tiny_run), "--csv", str(ro_dir / "h.csv")],
                 ["video", str(tiny_run), "-o", str(ro_dir / "v.gif")]):
        one_clean_line(esmpi_cli(args, tmp_path), 2, ro_dir, "read-only file system")
    assert not list(ro_dir.iterdir())


# ---------------------------------------------------------------- signals during start-up, resume refusals
def test_sigterm_before_the_first_generation_leaves_a_resumable_checkpoint(tmp_path):
    """The stop flag is read at the first generation boundary: the initial state is checkpointed, so
    the printed 'continue with --resume DIR' holds."""
    from esmpi.comm import SerialComm
    from esmpi.state import digest as state_digest
    from esmpi.objectives.gym import EnvObjective
    from esmpi.train import SIGNALLED, Trainer

    from helpers import tiny_config

    cfg = tiny_config()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    stop = [False]
    t = Trainer(cfg, EnvObjective(cfg), SerialComm(), run_dir=run_dir, stop_requested=lambda: stop[0])
    stop[0] = True            # SIGTERM after the noise fill, before the first generation
    t.run()
    assert t.stopped_by == SIGNALLED and t.state.generation == 0
    assert state_digest(checkpoint.load(run_dir / "latest.h5")["state"]) == state_digest(t.state)
    (run_dir / "config.toml").write_text("")
    r = esmpi_run(["--resume", str(run_dir), "-q"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert checkpoint.load(run_dir / "latest.h5")["state"].generation == cfg.run.generations


def test_a_signal_during_start_up_exits_75_and_tells_the_truth(tmp_path):
    out = tmp_path / "run"
    p = subprocess.Popen([sys.executable, "-m", "esmpi.run", *TINY, "--set", "run.generations=100000",
                          "--out", str(out)], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    p.send_signal(signal.SIGTERM)
    o, e = p.communicate(timeout=60)
    assert p.returncode == 75 and "Traceback" not in e, e
    if out.exists():      # after the fill: the initial state was checkpointed and resume works
        assert f"continue with --resume {out}" in o
        r = esmpi_run(["--resume", str(out), "--set", "run.generations=1"], tmp_path)
        assert r.returncode == 0, r.stderr
    else:                 # during the fill: nothing was written, and it says so
        assert "nothing was written: run the same command again" in e


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def test_sigterm_during_a_long_noise_fill_stops_promptly(tmp_path):
    """A 400 MB table (about 3 s to fill here): SIGTERM once the fill is under way ends the job within
    about one 10M-entry chunk, with exit 75 and nothing written."""
    out = tmp_path / "run"
    args = [a if a != "noise.size=100000" else "noise.size=100000000" for a in TINY]
    p = subprocess.Popen([sys.executable, "-m", "esmpi.run", *args, "--out", str(out)], cwd=tmp_path,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while _rss_mb(p.pid) < 250 and p.poll() is None and time.monotonic() < deadline:   # imports: ~150 MB
        time.sleep(0.02)
    rss = _rss_mb(p.pid)
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    _, e = p.communicate(timeout=60)
    took = time.monotonic() - t0
    assert p.returncode == 75, e
    assert "while filling the noise table" in e and "nothing was written" in e, e
    assert not out.exists()
    print(f"SIGTERM during fill to exit: {took:.2f} s at RSS {rss:.0f} MB")
    assert took < 2.0, f"{took:.2f} s after SIGTERM (RSS at signal {rss:.0f} MB; load {os.getloadavg()})"


def test_fill_checks_the_stop_flag_between_chunks():
    from esmpi.noise import FillInterrupted, NoiseTable

    calls = []

    def stop():
        calls.append(1)
        return len(calls) >= 3
    with pytest.raises(FillInterrupted):
        NoiseTable(10_000, seed=1, stop_requested=stop, chunk=1_000)
    assert len(calls) == 3                                   # 2 chunks filled, stopped before the third
    t = NoiseTable(10_001, seed=1, chunk=1_000)              # 11 chunks, the last one partial
    np.testing.assert_array_equal(t.noise, np.random.default_rng(1).standard_normal(10_001, dtype=np.float32))


def test_a_refused_resume_changes_nothing(run_copy, tmp_path):
    before = snapshot(run_copy)
    r = esmpi_run(["--resume", str(run_copy), "--set", "es.noise_stdev=0.5"], tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "cannot change" in r.stderr and "es.noise_stdev: 0.02 -> 0.5" in r.stderr, r.stderr
    assert snapshot(run_copy) == before


EVIL = '''
import gymnasium as gym
from pathlib import Path
from esmpi.envs import PointMassEnv
Path("{marker}").write_text("imported")
if "Evil-v0" not in gym.envs.registry:
    gym.register(id="Evil-v0", entry_point=PointMassEnv, max_episode_steps=20)
'''


def test_a_module_env_id_in_a_checkpoint_imports_only_when_named(tmp_path):
    import esmpi

    marker = tmp_path / "imported.txt"
    (tmp_path / "evilenv.py").write_text(EVIL.format(marker=marker))
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    out = tmp_path / "run"
    args = [a if a != 'env.id="esmpi/PointMass-v0"' else 'env.id="evilenv:Evil-v0"' for a in TINY]
    r = esmpi_run([*args, "--set", "run.generations=1", "--out", str(out)], tmp_path, env=env)
    assert r.returncode == 0, r.stderr                   # the user named it: it is imported
    marker.unlink()
    before = snapshot(out)
    for cmd, run in ((["--resume", str(out), "--set", "run.generations=2"], esmpi_run),
                     (["eval", str(out), "-n", "1"], esmpi_cli)):
        r = run(cmd, tmp_path, env=env)
        one_clean_line(r, 2, "would import the Python module 'evilenv'", "--allow-import evilenv")
        assert not marker.exists() and snapshot(out) == before
    with pytest.raises(EnvError, match="allow_import=\\['evilenv'\\]"):
        esmpi.load_policy(out).make_env()
    r = esmpi_cli(["eval", str(out), "-n", "1", "--allow-import", "evilenv"], tmp_path, env=env)
    assert r.returncode == 0 and marker.exists(), r.stderr
    r = esmpi_run(["--resume", str(out), "--set", "run.generations=2", "--allow-import", "evilenv"], tmp_path, env=env)
    assert r.returncode == 0, r.stderr


def _ranks_of(tag: str) -> dict:
    """{PMI_RANK: pid} of the processes whose environment holds ESMPI_TEST_TAG=tag."""
    out = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                env = dict(kv.split("=", 1) for kv in (d / "environ").read_bytes().decode(errors="replace").split("\0")
                           if "=" in kv)
            except OSError:
                continue
            if env.get("ESMPI_TEST_TAG") == tag and "PMI_RANK" in env and (d / "cmdline").read_bytes().count(b"esmpi.run"):
                out[int(env["PMI_RANK"])] = int(d.name)
    return out


def test_sigterm_to_a_waiting_rank_during_the_fill_stops_the_filler_too(tmp_path, venv_bin):
    """Two ranks on one node: rank 0 fills the shared table, rank 1 waits. SIGTERM to rank 1 only
    reaches the filler through the node-shared flag: the job ends promptly with 75, nothing written."""
    out = tmp_path / "run"
    tag = f"fill-{os.getpid()}"
    args = [a if a != "noise.size=100000" else "noise.size=100000000" for a in TINY]
    p = subprocess.Popen([str(venv_bin / "mpiexec"), "-n", "2", sys.executable, "-m", "esmpi.run", *args, "--out", str(out)],
                         cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, ESMPI_TEST_TAG=tag))
    deadline = time.monotonic() + 60
    ranks = {}
    while time.monotonic() < deadline and p.poll() is None:
        ranks = ranks if len(ranks) == 2 else _ranks_of(tag)
        if len(ranks) == 2 and _rss_mb(ranks[0]) > 250:      # rank 0 is filling
            break
        time.sleep(0.02)
    assert len(ranks) == 2, "could not find the two ranks"
    t0 = time.monotonic()
    os.kill(ranks[1], signal.SIGTERM)
    _, e = p.communicate(timeout=60)
    took = time.monotonic() - t0
    assert p.returncode == 75, e
    assert "while filling the noise table" in e and "Traceback" not in e, e
    assert not out.exists()
    print(f"rank 1 SIGTERM to exit: {took:.2f} s")
    assert took < 2.5, f"{took:.2f} s after SIGTERM (load {os.getloadavg()})"
