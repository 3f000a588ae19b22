"""The local Slurm cluster is real: batch jobs, job steps, MPI, signals, requeue."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from slurmutil import job_field, release_requeued, run, submit, wait_for, wait_job  # conftest puts it on sys.path

pytestmark = pytest.mark.slurm


def write_script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/bash\n" + textwrap.dedent(body).lstrip())
    path.chmod(0o755)
    return path


def test_srun_two_tasks(slurm_cluster, tmp_path):
    env = slurm_cluster["env"]
    out = tmp_path / "out.txt"
    jid = submit(None, env=env, cwd=tmp_path,
                 opts=["-n", "2", "-o", str(out), "--wrap", "srun -n 2 hostname"])
    assert wait_job(jid, 20, env=env) == ("COMPLETED", 0), out.read_text()
    lines = out.read_text().split()
    assert len(lines) == 2
    assert set(lines) == {socket.gethostname().split(".")[0]}


def test_impossible_request_rejected_at_submit(slurm_cluster, tmp_path):
    # EnforcePartLimits=ALL: without it this job would stay PENDING forever
    with pytest.raises(RuntimeError, match="sbatch"):
        submit(None, env=slurm_cluster["env"], cwd=tmp_path,
               opts=["-n", "64", "-o", "/dev/null", "--wrap", "true"])


def test_mpi_two_ranks(slurm_cluster, tmp_path):
    python = os.environ.get("ESMPI_TEST_PYTHON", sys.executable)
    bindir = Path(python).parent  # no resolve(): keep the venv's bin dir
    mpiexec = bindir / "mpiexec"
    probe = subprocess.run([python, "-c", "import mpi4py"], capture_output=True)
    if probe.returncode != 0 or not mpiexec.exists():
        pytest.skip(f"{python} lacks mpi4py or {mpiexec} (pip install mpi4py mpich)")
    # rank 0 reports what it gathered: one line, so no interleaved output
    prog = ("from mpi4py import MPI; c = MPI.COMM_WORLD; r = c.gather(c.rank); "
            "c.rank or print(f'ranks {r} of {c.size}', flush=True)")
    script = write_script(tmp_path / "mpi.sh", f"""
        #SBATCH -n 2
        set -eo pipefail
        "{mpiexec}" -n 2 "{python}" -c "{prog}" | sed 's/^/mpiexec /'
        # plain srun: works because MpiDefault=pmi2 (else 2 singletons)
        srun "{python}" -c "{prog}" | sed 's/^/srun /'
    """)
    env = dict(slurm_cluster["env"], PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    out = tmp_path / "out.txt"
    jid = submit(script, env=env, cwd=tmp_path, opts=["--export=ALL", "-o", str(out)])
    assert wait_job(jid, 20, env=env) == ("COMPLETED", 0), out.read_text()
    assert out.read_text().splitlines() == [
        "mpiexec ranks [0, 1] of 2", "srun ranks [0, 1] of 2"], out.read_text()


def test_batch_signal_reaches_trap(slurm_cluster, tmp_path):
    env = slurm_cluster["env"]
    script = write_script(tmp_path / "sig.sh", """
        # what a checkpoint-on-preemption handler looks like; linuxproc does
        # not kill leftovers, so the trap kills its own child
        trap 'echo "USR1 in $SLURM_JOB_ID" > usr1.marker; kill $child; exit 0' USR1
        touch started
        sleep 60 & child=$!
        wait $child
        echo "no signal" > usr1.marker
    """)
    jid = submit(script, env=env, cwd=tmp_path, opts=["-o", str(tmp_path / "out.txt")])
    wait_for(lambda: (tmp_path / "started").exists(), 15, "job start")
    run(["scancel", "--batch", "--signal=USR1", jid], env)
    assert wait_job(jid, 15, env=env) == ("COMPLETED", 0)
    assert (tmp_path / "usr1.marker").read_text().strip() == f"USR1 in {jid}"


def test_requeue_restarts_job(slurm_cluster, tmp_path):
    env = slurm_cluster["env"]
    out = tmp_path / "out.txt"
    script = write_script(tmp_path / "requeue.sh", """
        #SBATCH --requeue --open-mode=append
        echo "run restart=${SLURM_RESTART_COUNT:-unset}"
        if [ -z "$SLURM_RESTART_COUNT" ]; then
            trap 'kill $child 2>/dev/null; exit 0' TERM  # requeue: SIGTERM to all
            sleep 60 & child=$!
            touch started
            wait $child
        fi
        echo done
    """)
    jid = submit(script, env=env, cwd=tmp_path, opts=["-o", str(out)])
    wait_for(lambda: (tmp_path / "started").exists(), 15, "first run")
    run(["scontrol", "requeue", jid], env)

    release_requeued(jid, env)  # else held for 120 s; see its docstring
    assert wait_job(jid, 15, env=env) == ("COMPLETED", 0), out.read_text()
    assert job_field(jid, "Restarts", env) == "1"
    # (slurmstepd also appends "*** JOB N ... CANCELLED ... DUE TO JOB REQUEUE ***")
    ours = [ln for ln in out.read_text().splitlines() if not ln.startswith("slurmstepd")]
    assert ours == ["run restart=unset", "run restart=1", "done"], out.read_text()
