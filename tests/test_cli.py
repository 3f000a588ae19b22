"""Entry-point tests as a user runs them (subprocesses): bad input gets a clear one-line error and
exit code 2 and loses nothing; a run creates its documented directory; a crash on one MPI rank
ends every rank promptly with that rank's traceback."""

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import pytest

from esmpi.envs import describe_spaces
from esmpi.errors import EnvError

TINY = ["--set", 'env.id="esmpi/PointMass-v0"', "--set", "noise.size=100000", "--set", "policy.hidden=[8]",
        "--set", "es.pairs_per_generation=6", "--set", "run.generations=3", "-q"]


def run(args, cwd, timeout=120, env=None):
    return subprocess.run([sys.executable, "-m", "esmpi.run", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


def write(tmp_path, text, name="job.toml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


@pytest.mark.parametrize("toml, expect", [
    ("[es]\nnoise_stdv = 0.02\n", "unknown key 'es.noise_stdv'; did you mean 'es.noise_stdev'?"),
    ("[es]\nnoise_stdev = \"0.02\"\n", "key 'es.noise_stdev': Input should be a valid number (got '0.02' of type str)"),
    ("[es]\nnoise_stdev = -1.0\n", "key 'es.noise_stdev': Input should be greater than 0"),
    ("[es]\npairs_per_generation = 0\n", "key 'es.pairs_per_generation': Input should be greater than or equal to 1"),
    ("[es]\npairs_per_generation = 2.5\n", "key 'es.pairs_per_generation': Input should be a valid integer"),
    ("[policy]\naction_bins = 1\n", "action_bins must be 0 (continuous) or >= 2"),
    ("[es]\nshaping = \"ranks\"\n", "unknown shaping 'ranks'"),
    ("[run]\ngenerations = 0\nmax_seconds = 0.0\n", "no budget"),
    ("[envv]\nid = \"Hopper-v5\"\n", "unknown key 'envv'; did you mean 'env'?"),
    ("[es\n", "not valid TOML"),
])
def test_bad_config_is_one_clear_error(tmp_path, toml, expect):
    job = write(tmp_path, toml)
    r = run(["--config", str(job), "--out", str(tmp_path / "run")], tmp_path)
    assert r.returncode == 2, r.stderr
    assert str(job) in r.stderr and expect in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "run").exists()          # nothing created on bad input


def test_bad_override_names_the_set_flag(tmp_path):
    r = run(["--set", "es.sigma=0.1", "--out", str(tmp_path / "run")], tmp_path)
    assert r.returncode == 2 and "unknown key 'es.sigma'" in r.stderr and "--set es.sigma=0.1" in r.stderr


def test_missing_config_file(tmp_path):
    r = run(["--config", "jobs/nope.toml"], tmp_path)
    assert r.returncode == 2 and "jobs/nope.toml: config file not found" in r.stderr


def test_unknown_env_id_suggests(tmp_path):
    r = run(["--set", 'env.id="HalfCheetah-v9"', "--out", str(tmp_path / "run")], tmp_path)
    assert r.returncode == 2, r.stderr
    assert "env.id 'HalfCheetah-v9': unknown Gymnasium environment. Did you mean 'HalfCheetah-v5'" in r.stderr


def test_unsupported_spaces_are_explained():
    import gymnasium as gym
    with pytest.raises(EnvError, match="observation space .* is not supported"):
        describe_spaces("X", gym.spaces.Dict({"a": gym.spaces.Discrete(2)}), gym.spaces.Discrete(2))
    with pytest.raises(EnvError, match="infinite bounds"):
        describe_spaces("X", gym.spaces.Box(-1, 1, (3,)), gym.spaces.Box(-float("inf"), float("inf"), (2,)))
    with pytest.raises(EnvError, match="action space .* is not supported"):
        describe_spaces("X", gym.spaces.Box(-1, 1, (3,)), gym.spaces.MultiBinary(3))


def test_existing_run_directory_is_refused_and_untouched(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "precious.txt").write_text("results")
    r = run([*TINY, "--out", str(out)], tmp_path)
    assert r.returncode == 2 and f"run directory {out} already exists" in r.stderr
    assert [p.name for p in out.iterdir()] == ["precious.txt"] and (out / "precious.txt").read_text() == "results"


def _check_run_dir(out: Path, generations: int, world_size: int):
    assert (out / "config.toml").is_file()
    lines = (out / "progress.jsonl").read_text().splitlines()
    assert [json.loads(x)["Generation"] for x in lines] == list(range(1, generations + 1))
    assert (out / "latest.h5").is_symlink()
    with h5py.File(out / "latest.h5") as f:       # readable with h5py alone
        assert f.attrs["format"] == "esmpi-checkpoint" and f.attrs["world_size"] == world_size
        assert f["state"].attrs["generation"] == generations
        assert f["history"].shape == (generations,)
    assert (out / "checkpoints" / "best.h5").is_file()


def test_serial_run_writes_the_documented_directory(tmp_path):
    out = tmp_path / "run"
    r = run([*TINY, "--out", str(out)], tmp_path)
    assert r.returncode == 0, r.stderr
    _check_run_dir(out, 3, 1)


def test_mpi_run_and_progress_output(tmp_path, venv_bin):
    out = tmp_path / "run"
    r = subprocess.run([str(venv_bin / "mpiexec"), "-n", "2", sys.executable, "-m", "esmpi.run",
                        *[a for a in TINY if a != "-q"], "--out", str(out)],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    _check_run_dir(out, 3, 2)
    progress = [l for l in r.stdout.splitlines() if l.startswith("gen ")]
    assert len(progress) == 3 and "ETA" in progress[0] and "st/s" in progress[0]   # rank 0 only


CRASH = """
import sys, numpy as np
from esmpi.comm import make_comm
from esmpi.run import guarded
from esmpi.objectives.function import FunctionObjective
from esmpi.train import Trainer
from esmpi.config import config_from_dict

comm = make_comm()
class Boom(FunctionObjective):
    def episode(self, theta, *a, **k):
        if comm.rank == 1 and self.calls > 3:
            raise ZeroDivisionError("rank 1 exploded")
        self.calls += 1
        return super().episode(theta, *a, **k)
obj = Boom(lambda w: -float(w @ w), np.ones(3))
obj.calls = 0
cfg = config_from_dict({"run": {"generations": 1000}, "noise": {"size": 1000}, "es": {"obs_stat_fraction": 0.0}})
sys.exit(guarded(comm, lambda: Trainer(cfg, obj, comm).run() and 0))
"""


def test_crash_on_one_rank_aborts_all_promptly(tmp_path, venv_bin):
    script = tmp_path / "crash.py"
    script.write_text(CRASH)
    t0 = time.monotonic()
    r = subprocess.run([str(venv_bin / "mpiexec"), "-n", "2", sys.executable, str(script)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode != 0
    assert time.monotonic() - t0 < 30
    assert "[rank 1] esmpi crashed" in r.stderr and "ZeroDivisionError: rank 1 exploded" in r.stderr


def test_sigterm_checkpoints_and_exits_75(tmp_path):
    out = tmp_path / "run"
    args = [a if a != "run.generations=3" else "run.generations=100000" for a in TINY]
    p = subprocess.Popen([sys.executable, "-m", "esmpi.run", *args, "--out", str(out)], cwd=tmp_path,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if (out / "progress.jsonl").exists() and len((out / "progress.jsonl").read_text().splitlines()) >= 3:
            break
        time.sleep(0.1)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 75, err
    n = len((out / "progress.jsonl").read_text().splitlines())
    with h5py.File(out / "latest.h5") as f:
        assert f["state"].attrs["generation"] == n      # nothing finished was lost


def test_sigusr2_checkpoints_on_demand_and_goes_on(tmp_path):
    out = tmp_path / "run"
    args = [a if a != "run.generations=3" else "run.generations=100000" for a in TINY]
    args += ["--set", "checkpoint.every=0", "--set", "checkpoint.keep_last=100"]
    p = subprocess.Popen([sys.executable, "-m", "esmpi.run", *args, "--out", str(out)], cwd=tmp_path,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ck = out / "checkpoints"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (out / "progress.jsonl").exists():
            time.sleep(0.05)
        p.send_signal(signal.SIGUSR2)
        while time.monotonic() < deadline and not list(ck.glob("gen_*.h5")):
            time.sleep(0.05)
        first = sorted(ck.glob("gen_*.h5"))
        assert len(first) == 1 and p.poll() is None          # a checkpoint, and the run goes on
        time.sleep(0.5)
        p.send_signal(signal.SIGUSR2)
        while time.monotonic() < deadline and len(list(ck.glob("gen_*.h5"))) < 2:
            time.sleep(0.05)
        assert len(list(ck.glob("gen_*.h5"))) == 2 and p.poll() is None
    finally:
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=60)
    assert p.returncode == 75


def test_a_signal_during_start_up_is_not_lost(tmp_path):
    """Handlers go in before MPI starts and again after MPI_Init (MPICH installs its own SIGUSR1
    handler, which would swallow the request): a batch system's early warning still ends the run
    cleanly with 75."""
    out = tmp_path / "run"
    args = [a if a != "run.generations=3" else "run.generations=100000" for a in TINY]
    p = subprocess.Popen([sys.executable, "-m", "esmpi.run", *args, "--out", str(out)], cwd=tmp_path,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.6)                      # interpreter up; somewhere in imports, MPI_Init or set-up
    p.send_signal(signal.SIGUSR1)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 75, err
    assert "Traceback" not in err
