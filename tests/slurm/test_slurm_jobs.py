"""The project's batch scripts (slurm/*.sh) on the local Slurm cluster, for real.

Every job runs the project venv: ESMPI_VENV is the venv of the interpreter running the tests
(ESMPI_TEST_PYTHON overrides), ESMPI_ROOT is this repository, and jobs are submitted from a
temporary directory, so their run directories land in tmp_path/runs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from slurmutil import job_field, job_state, release_requeued, run, submit, wait_for, wait_job  # conftest puts it on sys.path

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[2]
SLURM = REPO / "slurm"
PYTHON = Path(os.environ.get("ESMPI_TEST_PYTHON", sys.executable))
VENV = PYTHON.parent.parent  # no resolve(): keep the venv, not the interpreter it links to
MPIEXEC = VENV / "bin" / "mpiexec"
SMOKE_TOML = REPO / "jobs" / "smoke.toml"
# our variables, which must not leak in from the caller's environment
OURS = ("ESMPI_SET", "ESMPI_CONFIG", "ESMPI_RUN_DIR", "ESMPI_RUNS_ROOT", "ESMPI_LAUNCHER", "ESMPI_SRUN_ARGS",
        "ESMPI_SRUN_WAIT", "ESMPI_REQUEUE", "ESMPI_RESEND", "ESMPI_SEED")


@pytest.fixture(scope="module", autouse=True)
def _venv_ok():
    probe = subprocess.run([str(PYTHON), "-c", "import esmpi, mpi4py"], capture_output=True)
    if probe.returncode != 0 or not MPIEXEC.exists():
        pytest.skip(f"{PYTHON} cannot import esmpi/mpi4py or {MPIEXEC} is missing (make setup)")


@pytest.fixture
def sbatch(slurm_cluster, tmp_path):
    """``sbatch(script_name, env, opts)`` from tmp_path; a job still queued after the test is cancelled."""
    submitted = []

    def _submit(script: str, env, opts=()) -> str:
        jid = submit(SLURM / script, env=env, cwd=tmp_path, opts=list(opts))
        submitted.append((jid, env))
        return jid

    yield _submit
    for jid, env in submitted:
        run(["scancel", jid], env, check=False)


def job_env(cluster, **extra) -> dict:
    env = {k: v for k, v in cluster["env"].items() if k not in OURS}
    env.update({"ESMPI_ROOT": str(REPO), "ESMPI_VENV": str(VENV), **extra})
    return env


def smoke_generations() -> int:
    return tomllib.loads(SMOKE_TOML.read_text())["run"]["generations"]


def digest(path: Path) -> str:
    from esmpi import checkpoint
    from esmpi.state import digest as state_digest

    return state_digest(checkpoint.load(path)["state"]).hex()


def load_state(path: Path):
    from esmpi import checkpoint

    return checkpoint.load(path)["state"]


def newest_checkpoint(run_dir: Path) -> Path:
    from esmpi import resume

    return resume.newest_checkpoint(run_dir)


def first_checkpoint(run_dir: Path, timeout: float, jid: str, env) -> Path:
    """Wait until the run has written a periodic checkpoint (its signal handlers are installed then)."""

    def found():
        if job_state(jid, env) not in (None, "PENDING", "CONFIGURING", "RUNNING"):
            raise AssertionError(f"job {jid} ended before its first checkpoint: {job_state(jid, env)}")
        hits = sorted((run_dir / "checkpoints").glob("gen_*.h5"))
        return hits[0] if hits else None

    return wait_for(found, timeout, f"first checkpoint in {run_dir}")


def text(path: Path) -> str:
    return path.read_text() if path.exists() else f"<{path} missing>"


def direct_run(out: Path, *sets: str) -> Path:
    """The same config, uninterrupted, with the venv's mpiexec on 2 ranks outside Slurm."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "PMI_")) and k not in OURS}
    cmd = [str(MPIEXEC), "-n", "2", str(PYTHON), "-m", "esmpi.run", "--config", str(SMOKE_TOML), "--out", str(out),
           "-q", *[a for s in sets for a in ("--set", s)]]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}"
    return out / "latest.h5"


# ---------------------------------------------------------------------------------------------- smoke.sh


def test_smoke_job_completes(slurm_cluster, sbatch, tmp_path):
    env = job_env(slurm_cluster)
    out = tmp_path / "smoke.out"
    jid = sbatch("smoke.sh", env, ["-o", str(out)])
    assert wait_job(jid, 120, env=env) == ("COMPLETED", 0), text(out)
    run_dir = tmp_path / "runs" / f"esmpi-smoke-{jid}"
    gens = smoke_generations()
    assert (run_dir / "config.toml").is_file(), text(out)
    assert len((run_dir / "progress.jsonl").read_text().splitlines()) == gens
    ck = run_dir / "checkpoints" / f"gen_{gens:06d}.h5"
    assert ck.is_file(), sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert (run_dir / "latest.h5").resolve() == ck.resolve()
    state = load_state(ck)
    assert state.generation == gens
    assert job_field(jid, "Restarts", env) == "0"
    log = text(out)
    assert f"run directory {run_dir}" in log
    assert "step finished (exit 0)" in log and "scontrol requeue" not in log, log


def test_preempted_job_checkpoints_requeues_and_resumes_bitwise(slurm_cluster, sbatch, tmp_path):
    """USR1 to the batch shell only (what --signal=B:USR1@N does): the trap forwards it to the ranks,
    they checkpoint and exit 75, the script requeues the job, the next run resumes, and the final state
    is bitwise that of an uninterrupted run."""
    env = job_env(slurm_cluster)
    out = tmp_path / "smoke.out"
    jid = sbatch("smoke.sh", env, ["-o", str(out)])
    run_dir = tmp_path / "runs" / f"esmpi-smoke-{jid}"
    first_checkpoint(run_dir, 60, jid, env)
    run(["scancel", "--batch", "--signal=USR1", jid], env)
    release_requeued(jid, env, timeout=30)  # else Slurm holds it for 120 s
    assert wait_job(jid, 120, env=env) == ("COMPLETED", 0), text(out)
    assert job_field(jid, "Restarts", env) == "1", text(out)

    log = text(out)
    gens = smoke_generations()
    assert "batch shell got SIGUSR1: forwarding SIGUSR1 to the job step" in log, log
    assert f"exit 75): scontrol requeue {jid}" in log, log
    m = re.search(r"resuming generation (\d+) of", log)
    assert m, log
    assert 1 <= int(m.group(1)) < gens, f"the signal did not arrive mid-run:\n{log}"
    assert "step finished (exit 0)" in log, log
    assert load_state(run_dir / "latest.h5").generation == gens

    ref = direct_run(tmp_path / "direct")
    assert digest(run_dir / "latest.h5") == digest(ref)


def test_scancel_leaves_loadable_checkpoint(slurm_cluster, sbatch, tmp_path):
    """scancel: SIGTERM to every process of the job; esmpi checkpoints at the generation boundary
    within KillWait, the script exits 75 and does not requeue."""
    env = job_env(slurm_cluster)
    out = tmp_path / "smoke.out"
    jid = sbatch("smoke.sh", env, ["-o", str(out)])
    run_dir = tmp_path / "runs" / f"esmpi-smoke-{jid}"
    first_checkpoint(run_dir, 60, jid, env)
    run(["scancel", jid], env)
    state, _ = wait_job(jid, 60, env=env)
    assert state == "CANCELLED", text(out)
    log = text(out)
    assert "stopped by a signal after a checkpoint (exit 75)" in log, log
    assert "not requeueing" in log and "scontrol requeue" not in log, log
    assert job_field(jid, "Restarts", env) == "0"
    # the checkpoint written on the signal is the newest and loads
    ck = newest_checkpoint(run_dir)
    st = load_state(ck)
    m = re.search(r"esmpi: done after (\d+) generations", log)
    assert m and st.generation == int(m.group(1)), log
    assert 1 <= st.generation < smoke_generations()


# ---------------------------------------------------------------------------------------------- seeds.sh


def test_seed_array_runs_sibling_directories(slurm_cluster, sbatch, tmp_path):
    gens = 20
    env = job_env(slurm_cluster, ESMPI_CONFIG="jobs/smoke.toml", ESMPI_SET=f"run.generations={gens}")
    jid = sbatch("seeds.sh", env, ["--array=0-1", "-N", "1", "--ntasks-per-node=2", "--mem=2G", "-t", "10"])
    results = {task: wait_job(f"{jid}_{task}", 120, env=env) for task in (0, 1)}
    outs = {task: tmp_path / f"esmpi-seeds-{jid}_{task}.out" for task in (0, 1)}
    assert results == {0: ("COMPLETED", 0), 1: ("COMPLETED", 0)}, "\n".join(text(o) for o in outs.values())
    runs = sorted((tmp_path / "runs").iterdir())
    assert [p.name for p in runs] == [f"esmpi-seeds-{jid}_0", f"esmpi-seeds-{jid}_1"]
    digests = []
    for task, run_dir in enumerate(runs):
        cfg = tomllib.loads((run_dir / "config.toml").read_text())
        assert cfg["run"]["seed"] == task and cfg["env"]["id"] == "esmpi/PointMass-v0"
        assert cfg["run"]["generations"] == gens
        assert load_state(run_dir / "latest.h5").generation == gens
        digests.append(digest(run_dir / "latest.h5"))
    assert digests[0] != digests[1]


# ---------------------------------------------------------------------------------------------- humanoid_1440.sh


def test_humanoid_script_accepted_with_resources_overridden(slurm_cluster, tmp_path):
    """``sbatch --test-only``: the script's options parse and, scaled down on the command line, fit.

    ``-n 2`` alone is not enough: the script's --ntasks-per-node=18 still asks for 18 CPUs on the
    node (more than this cluster has), so scaling down means overriding --ntasks-per-node too."""
    env = job_env(slurm_cluster)
    script = str(SLURM / "humanoid_1440.sh")
    for opts in (["-N", "1", "--ntasks-per-node=2"], ["-N", "1", "-n", "2", "--ntasks-per-node=2"]):
        p = run(["sbatch", "--test-only", *opts, "--mem=4G", script], env, check=False, cwd=tmp_path)
        assert p.returncode == 0 and "to start at" in p.stderr and "using 2 processors" in p.stderr, (opts, p.stderr)
    # as written (80 nodes x 18 tasks) this one-node cluster refuses it at once, as it should
    p = run(["sbatch", "--test-only", script], env, check=False, cwd=tmp_path)
    assert p.returncode != 0, p.stderr


@pytest.mark.parametrize("script", ["atari_720.sh", "ga_humanoid.sh", "humanoid_trap.sh", "mnist_paper.sh"])
def test_the_other_paper_scale_scripts_are_accepted_scaled_down(slurm_cluster, tmp_path, script):
    """The cluster scripts of the GA, novelty search, Atari and MNIST studies parse and, scaled down on
    the command line to this one-node cluster, fit (``sbatch --test-only``)."""
    env = job_env(slurm_cluster)
    p = run(["sbatch", "--test-only", "-N", "1", "--ntasks-per-node=2", "--mem=4G", str(SLURM / script)], env,
            check=False, cwd=tmp_path)
    assert p.returncode == 0 and "to start at" in p.stderr, p.stderr


def test_humanoid_script_runs_humanoid_on_one_node(slurm_cluster, sbatch, tmp_path):
    gens = 2
    sets = (f"run.generations={gens} noise.size=1_000_000 es.pairs_per_generation=4 "
            "es.min_timesteps_per_generation=0 es.eval_episodes=1 checkpoint.every=1")
    env = job_env(slurm_cluster, ESMPI_SET=sets)
    out = tmp_path / "humanoid.out"
    jid = sbatch("humanoid_1440.sh", env, ["-N", "1", "--ntasks-per-node=2", "--mem=4G", "-o", str(out)])
    # the command line beat the #SBATCH lines; the rest came from the script
    info = run(["scontrol", "show", "job", "-o", jid], env).stdout
    for want in ("JobName=esmpi-humanoid", "NumNodes=1", "NumTasks=2", "TimeLimit=1-00:00:00", "Requeue=1"):
        assert want in info, info
    assert wait_job(jid, 180, env=env) == ("COMPLETED", 0), text(out)
    run_dir = tmp_path / "runs" / f"esmpi-humanoid-{jid}"
    cfg = tomllib.loads((run_dir / "config.toml").read_text())
    assert cfg["env"]["id"] == "Humanoid-v5" and cfg["policy"]["hidden"] == [256, 256]
    assert cfg["es"]["noise_stdev"] == 0.02 and cfg["noise"]["seed"] == 123 and cfg["run"]["auto_resume"] is True
    from esmpi import checkpoint

    ck = checkpoint.load(run_dir / "checkpoints" / f"gen_{gens:06d}.h5")
    assert ck["state"].generation == gens and ck["attrs"]["world_size"] == 2
    assert ck["attrs"]["num_params"] == 348 * 256 + 256 + 256 * 256 + 256 + 256 * 17 + 17
    assert len(ck["history"]) == gens


# ---------------------------------------------------------------------------------------------- who gets the signal

PROBE = textwrap.dedent("""\
    # stands in for `python -m esmpi.run`: logs every signal this rank receives. PROBE_MODE:
    #   catch          exit 75 after the first SIGUSR1/SIGTERM/SIGINT (esmpi after its set-up)
    #   swallow_first  the first SIGUSR1 has no effect (esmpi between MPI_Init and its handlers)
    #   default        no handlers: SIGUSR1 kills the rank (esmpi before MPI_Init)
    import os, signal, sys, time
    mode = os.environ.get("PROBE_MODE", "catch")
    # PMI_RANK first: under mpiexec, SLURM_PROCID numbers hydra's proxies (one per node), not ranks
    rank = int(os.environ.get("PMI_RANK") or os.environ.get("SLURM_PROCID") or -1)
    log = open(f"rank{rank}.log", "a", buffering=1)
    got = []
    def handler(signum, frame):
        got.append(signum)
        log.write(f"{signal.Signals(signum).name}\\n")
    if mode != "default":
        for s in (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT):
            signal.signal(s, handler)
    need = 2 if mode == "swallow_first" else 1
    open(f"rank{rank}.ready", "w").close()
    deadline = time.monotonic() + 60
    while len(got) < need and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5 + rank)   # leave at different times, like ranks of a big job
    sys.exit(75 if got else 0)
""")


def run_probe(sbatch, cluster, tmp_path, launcher: str, mode: str, **extra):
    """smoke.sh with a fake venv whose python is PROBE; USR1 to the batch shell once both ranks are
    up; no requeue (ESMPI_REQUEUE=0). Returns ((state, exit), job output, {rank: signals received})."""
    fake = tmp_path / "venv" / "bin"
    fake.mkdir(parents=True)
    (tmp_path / "probe.py").write_text(PROBE)
    (fake / "python").write_text(f'#!/bin/sh\nexec "{PYTHON}" "{tmp_path / "probe.py"}" "$@"\n')
    (fake / "python").chmod(0o755)
    for tool in MPIEXEC.parent.glob("*"):  # mpiexec finds hydra_pmi_proxy next to itself
        if tool.name.startswith(("mpiexec", "hydra_")):
            (fake / tool.name).symlink_to(tool)
    env = job_env(cluster, ESMPI_VENV=str(fake.parent), ESMPI_LAUNCHER=launcher, ESMPI_REQUEUE="0",
                  PROBE_MODE=mode, **extra)
    out = tmp_path / "probe.out"
    jid = sbatch("smoke.sh", env, ["-o", str(out)])

    def ready():
        assert job_state(jid, env) in ("PENDING", "CONFIGURING", "RUNNING"), text(out)
        return all((tmp_path / f"rank{r}.ready").exists() for r in (0, 1))

    wait_for(ready, 60, "both ranks ready")
    run(["scancel", "--batch", "--signal=USR1", jid], env)
    result = wait_job(jid, 60, env=env)
    got = {r: (tmp_path / f"rank{r}.log").read_text().split() for r in (0, 1)}
    return result, text(out), got


@pytest.mark.parametrize("launcher", ["srun", "mpiexec"])
def test_batch_signal_reaches_every_rank_once_via_the_trap(slurm_cluster, sbatch, tmp_path, launcher):
    """A B: signal reaches the batch shell only (no rank sees it twice); the trap forwards one SIGUSR1
    to each rank; ranks that exit 75 at different times still give the step exit code 75."""
    result, log, got = run_probe(sbatch, slurm_cluster, tmp_path, launcher, "catch")
    assert result == ("FAILED", 75), log  # 75 without requeue (ESMPI_REQUEUE=0) ends the job FAILED
    assert got == {0: ["SIGUSR1"], 1: ["SIGUSR1"]}, log
    assert "batch shell got SIGUSR1: forwarding SIGUSR1" in log and "ESMPI_REQUEUE=0: not requeueing" in log, log
    assert "sending SIGUSR1 again" not in log, log


def test_swallowed_signal_is_sent_again(slurm_cluster, sbatch, tmp_path):
    """A SIGUSR1 that lands between MPI_Init and esmpi's handlers is swallowed (MPICH's own handler);
    the batch shell sends it again while the step runs."""
    result, log, got = run_probe(sbatch, slurm_cluster, tmp_path, "srun", "swallow_first", ESMPI_RESEND="2")
    assert result == ("FAILED", 75), log
    assert got == {0: ["SIGUSR1", "SIGUSR1"], 1: ["SIGUSR1", "SIGUSR1"]}, log
    assert "sending SIGUSR1 again" in log, log


@pytest.mark.parametrize("launcher", ["srun", "mpiexec"])
def test_signal_during_startup_counts_as_preemption(slurm_cluster, sbatch, tmp_path, launcher):
    """Ranks killed by the forwarded SIGUSR1 before esmpi handles it: requeue-worthy, not a failure."""
    result, log, got = run_probe(sbatch, slurm_cluster, tmp_path, launcher, "default")
    assert result == ("FAILED", 75), log
    assert got == {0: [], 1: []}, log
    assert "killed by SIGUSR1 during start-up" in log and "not requeueing" in log, log
