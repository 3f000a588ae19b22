"""The suite cannot pass by not running: the MPI tier's world-size check and CI's no-skip rule
(tests/conftest.py), exercised on a throw-away test file in a pytest subprocess."""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def _root_conftest():
    """tests/conftest.py by path (the name 'conftest' may be tests/slurm's in sys.modules)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("esmpi_root_conftest", HERE / "conftest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_world_size_mismatch_is_refused():
    check_world_size = _root_conftest().check_world_size

    check_world_size(2, {"ESMPI_EXPECT_NP": "2", "PMI_SIZE": "2"})
    check_world_size(1, {})                           # a plain singleton run, no launcher
    for env in ({"ESMPI_EXPECT_NP": "2"}, {"PMI_SIZE": "3"}, {"OMPI_COMM_WORLD_SIZE": "4"}):
        with pytest.raises(pytest.UsageError, match="mpi4py sees a world of 1 rank"):
            check_world_size(1, env)


def test_mpi_tier_launched_with_the_wrong_size_fails_loudly(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pytest", "--only-mpi", "-q", "-p", "no:cacheprovider",
                        str(HERE / "test_mpi.py")], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, ESMPI_EXPECT_NP="2"), cwd=HERE.parent)
    assert r.returncode != 0
    assert "mpi4py sees a world of 1 rank(s) but ESMPI_EXPECT_NP=2" in r.stdout + r.stderr


def _run_skipping(tmp_path, ci: str, mpi_tier: bool = False):
    (tmp_path / "conftest.py").write_text(textwrap.dedent(f"""
        import importlib.util
        spec = importlib.util.spec_from_file_location("esmpi_tests_conftest", {str(HERE / "conftest.py")!r})
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        pytest_runtest_makereport = mod.pytest_runtest_makereport
        pytest_configure = mod.pytest_configure
    """))
    (tmp_path / "test_tier.py").write_text(textwrap.dedent("""
        import pytest

        @pytest.mark.ci_required
        def test_needs_a_renderer():
            pytest.skip("no headless OpenGL backend")

        def test_optional():
            pytest.skip("optional extra")
    """))
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci:
        env["CI"] = ci
    plugin = ["--only-mpi"] if mpi_tier else ["-p", "no:mpi"]
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *plugin,
                           "--rootdir", str(tmp_path), "-c", os.devnull, str(tmp_path / "test_tier.py")],
                          capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)


def test_a_required_tier_that_skips_under_ci_fails(tmp_path):
    r = _run_skipping(tmp_path, ci="")
    assert r.returncode == 0 and "2 skipped" in r.stdout, r.stdout
    assert "no headless OpenGL backend" in r.stdout and "optional extra" in r.stdout    # -rs shows every reason
    if not (os.geteuid() == 0 and shutil.which("apt-get")):
        pytest.skip("the CI rule applies on a root machine with apt-get only")
    r = _run_skipping(tmp_path, ci="true")
    assert r.returncode == 1, r.stdout
    assert "1 failed" in r.stdout and "1 skipped" in r.stdout, r.stdout
    assert "where its tier must run: no headless OpenGL backend" in r.stdout


def test_the_mpi_tier_skipping_non_mpi_tests_is_not_a_tier_failure(tmp_path):
    """pytest-mpi's --only-mpi skips every test without the mpi mark ("test does not use mpi"); those
    tests run in the serial tier, so the MPI tier must not turn that skip into a CI failure."""
    if not (os.geteuid() == 0 and shutil.which("apt-get")):
        pytest.skip("the CI rule applies on a root machine with apt-get only")
    r = _run_skipping(tmp_path, ci="true", mpi_tier=True)
    assert r.returncode == 0, r.stdout
    assert "2 skipped" in r.stdout and "does not use mpi" in r.stdout, r.stdout
