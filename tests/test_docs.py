"""Documentation and job files that must not drift from the code."""

from pathlib import Path

import pytest

from esmpi.config import load_config, markdown

ROOT = Path(__file__).resolve().parents[1]


def test_config_reference_is_current():
    assert (ROOT / "docs/config.md").read_text() == markdown(), \
        "docs/config.md is stale: regenerate with  python -m esmpi.config > docs/config.md"


@pytest.mark.parametrize("job", sorted((ROOT / "jobs").glob("*.toml")), ids=lambda p: p.name)
def test_every_job_file_is_a_valid_config(job):
    if job.read_text().startswith("# DRAFT"):   # e.g. jobs/atari-*.toml until the strategy layer loads them
        pytest.skip(f"{job.name} is marked as a draft")
    load_config(job)


def test_running_without_arguments_is_the_default_job():
    """`mpirun -n 8 python -m esmpi.run` with no arguments must train jobs/default.toml."""
    assert load_config(None) == load_config(ROOT / "jobs/default.toml")
    assert load_config(None).env.id == "HalfCheetah-v5"
