"""Test tiers: exact unit tests, fast loop tests on esmpi/PointMass-v0, MPI tests (marked ``mpi``,
valid at any world size: run them under ``mpiexec -n 1/2/3 ... --only-mpi``), and slow real
learning tests (marked ``slow``).

Under MPI only rank 0 reports, and a failure on any rank aborts the whole job at once, because the
other ranks may be blocked in a collective and would otherwise hang the suite.

The suite cannot pass by not running: the MPI tier refuses to start unless mpi4py sees the world
size the launcher started (``ESMPI_EXPECT_NP``, which the Makefile passes, or the launcher's own
``PMI_SIZE`` / ``OMPI_COMM_WORLD_SIZE``), and under ``CI=true`` on a root machine with apt-get a
skipped test marked ``ci_required`` (the Slurm tier, the video test) is reported as a failure.
"""

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _mpi_on(config):
    return config.getoption("--with-mpi", default=False) or config.getoption("--only-mpi", default=False)


def _rank_size():
    from mpi4py import MPI
    return MPI.COMM_WORLD.rank, MPI.COMM_WORLD.size


_LAUNCHER_SIZE_VARS = ("ESMPI_EXPECT_NP", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS")


def check_world_size(size: int, environ=os.environ) -> None:
    """Raise UsageError if the world size mpi4py reports differs from the one the launcher started
    (a launcher of another MPI turns every rank into a passing singleton)."""
    for var in _LAUNCHER_SIZE_VARS[:3]:
        want = environ.get(var)
        if want and want.isdigit() and int(want) != size:
            raise pytest.UsageError(f"MPI tier: mpi4py sees a world of {size} rank(s) but {var}={want}: the launcher "
                                    "and mpi4py's MPI library do not match (use the venv's mpiexec and python)")


def ci_requires_every_tier() -> bool:
    """Under CI=true on a root machine with apt-get every tier can be installed, so none may skip."""
    return (os.environ.get("CI", "").lower() == "true" and hasattr(os, "geteuid") and os.geteuid() == 0
            and shutil.which("apt-get") is not None)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/slurm/" in item.nodeid.replace("\\", "/") or item.nodeid.startswith("slurm/"):
            item.add_marker(pytest.mark.ci_required)


@pytest.hookimpl(trylast=True)  # after the terminal plugin has registered its reporter
def pytest_configure(config):
    config.addinivalue_line("markers", "ci_required: a tier that must not skip under CI=true as root with apt-get")
    if _mpi_on(config):
        check_world_size(_rank_size()[1])
    if _mpi_on(config) and _rank_size()[0] != 0:
        tr = config.pluginmanager.getplugin("terminalreporter")
        if tr is not None:
            config.pluginmanager.unregister(tr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    rep = (yield).get_result()
    reason = rep.longrepr[2] if rep.skipped and isinstance(rep.longrepr, tuple) else str(rep.longrepr)
    reason = reason.removeprefix("Skipped: ")
    # The MPI tier (--only-mpi) skips every non-MPI test by design; the tier guard belongs to the
    # serial run, where these tests are meant to execute.
    if (rep.skipped and item.get_closest_marker("ci_required") and ci_requires_every_tier()
            and not item.config.getoption("--only-mpi", default=False)
            and "ESMPI_SLURM_SKIP=1" not in reason):   # an explicit opt-out stays a (reported) skip
        rep.outcome = "failed"
        rep.longrepr = (f"{item.nodeid} skipped under CI=true on a root machine with apt-get, where its tier "
                        f"must run: {reason}")
    if rep.failed and _mpi_on(item.config):
        rank, size = _rank_size()
        if size > 1:
            sys.stderr.write(f"\n[rank {rank}] FAILED {item.nodeid}\n{rep.longreprtext}\n")
            sys.stderr.flush()
            from mpi4py import MPI
            MPI.COMM_WORLD.Abort(1)


@pytest.fixture
def venv_bin():
    """Directory of the interpreter running the tests (the venv's python and mpiexec live there)."""
    return Path(sys.executable).parent


@pytest.fixture
def run_env():
    env = dict(os.environ)
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    return env
