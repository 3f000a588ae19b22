"""Fixtures for tests that run jobs on a real, local, single-node Slurm cluster.

``slurm_cluster`` starts the cluster with ``scripts/slurm-local.sh start``
(installing Slurm with apt-get the first time; needs root) once per session
and stops it afterwards.  Job helpers live in ``slurmutil.py``.

Environment:
  ESMPI_SLURM_BASE   cluster work dir, passed through to the script
  ESMPI_SLURM_SKIP=1 skip all cluster tests
  ESMPI_SLURM_KEEP=1 leave the cluster running after the session
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # make `import slurmutil` work under any --import-mode
    sys.path.insert(0, str(HERE))

SCRIPT = HERE.parents[1] / "scripts" / "slurm-local.sh"
EXIT_CANNOT_RUN_HERE = 3  # slurm-local.sh: not root / no apt-get / install failed


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slurm: needs the local Slurm cluster (scripts/slurm-local.sh; root)"
    )


def _script(cmd: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), cmd], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="session")
def slurm_cluster():
    """Start the local cluster; yield {"env", "conf", "base"}.

    ``env`` is os.environ plus SLURM_CONF: pass it to every sbatch, srun,
    squeue, scontrol and scancel call.
    """
    if os.environ.get("ESMPI_SLURM_SKIP") == "1":
        pytest.skip("ESMPI_SLURM_SKIP=1")
    if os.geteuid() != 0:
        pytest.skip("local Slurm cluster needs root (scripts/slurm-local.sh)")
    p = _script("start", timeout=600)  # cold start incl. apt-get install: ~10 s
    if p.returncode == EXIT_CANNOT_RUN_HERE:
        pytest.skip(f"cannot run a local Slurm cluster here: {p.stderr.strip()[-500:]}")
    if p.returncode != 0:
        pytest.fail(f"scripts/slurm-local.sh start failed ({p.returncode}):\n{p.stderr[-3000:]}")
    # stdout is the env.sh line: export SLURM_CONF=/path/to/slurm.conf
    words = shlex.split(p.stdout.strip().splitlines()[-1])
    conf = words[-1].partition("=")[2]
    base = Path(conf).parents[1]
    env = dict(os.environ, SLURM_CONF=conf)
    try:
        yield {"env": env, "conf": conf, "base": base}
    finally:
        if os.environ.get("ESMPI_SLURM_KEEP") != "1":
            p = _script("stop", timeout=120)
            if p.returncode != 0:
                print(f"slurm-local.sh stop failed ({p.returncode}): {p.stderr}", file=sys.stderr)
