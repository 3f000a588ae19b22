"""Test tiers: exact unit tests, fast loop tests on esmpi/PointMass-v0, MPI tests (marked ``mpi``,
valid at any world size: run them under ``mpiexec -n 1/2/3 ... --only-mpi``), and slow real
learning tests (marked ``slow``).

Under MPI only rank 0 reports, and a failure on any rank aborts the whole job at once, because the
other ranks may be blocked in a collective and would otherwise hang the suite.
"""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _mpi_on(config):
    return config.getoption("--with-mpi", default=False) or config.getoption("--only-mpi", default=False)


def _rank_size():
    from mpi4py import MPI
    return MPI.COMM_WORLD.rank, MPI.COMM_WORLD.size


@pytest.hookimpl(trylast=True)  # after the terminal plugin has registered its reporter
def pytest_configure(config):
    if _mpi_on(config) and _rank_size()[0] != 0:
        tr = config.pluginmanager.getplugin("terminalreporter")
        if tr is not None:
            config.pluginmanager.unregister(tr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    rep = (yield).get_result()
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
