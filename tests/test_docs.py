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


def _readme_results() -> dict:
    """{task: (esmpi, paper)} from the README's results table."""
    text = (ROOT / "README.md").read_text().split("## The paper's MuJoCo results", 1)[1]
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] not in ("task", "---") and not cells[0].startswith("-"):
            rows[cells[0]] = (cells[1], cells[2])
        elif rows and not line.startswith("|"):
            break
    return rows


def _steps(s: str) -> float:
    """'321k' -> 321e3, '19.95M' -> 19.95e6 (the README may drop trailing zeros: 31.6M == 31.60M)."""
    return float(s[:-1]) * {"k": 1e3, "M": 1e6}[s[-1]] if s[-1] in "kM" else float(s)


def test_results_in_docs_and_readme_are_what_make_results_generates():
    """docs/results.md's tables and the README's hand-copied numbers, against esmpi.paper run on the
    committed run directories (what `make results` does; figures are not redrawn)."""
    from esmpi import paper, paper_ga

    runs_dir = ROOT / "results/runs"
    if not runs_dir.is_dir():
        pytest.skip("results/runs is not in this checkout")
    runs = paper.load_runs(runs_dir)
    assert runs, "no run directories under results/runs"
    doc = (ROOT / "docs/results.md").read_text()
    walllog = paper.walltime_logs(ROOT / "results/logs")
    w = paper.DEFAULT_WINDOW
    for name, table in (("Table 1", paper.main_table(runs, w)), ("Table 3", paper.fraction_table(runs, w)),
                        ("every run", paper.run_table(runs, walllog, w)), ("other runs", paper.extra_table(runs, w)),
                        ("GA", paper_ga.table(runs, paper.walltime_logs(ROOT / "results/logs"), w))):
        assert table in doc, f"docs/results.md: the {name} table differs from what `make results` generates"
    readme = _readme_results()
    assert len(readme) == 6, readme
    for key, t in paper.TASKS.items():
        rs = [r for r in runs if paper.task_of(r) == key]
        vals = [paper.first_crossing(r.history, t.threshold, w) for r in rs]
        ours = paper.summarize_seeds(vals, [r.timesteps for r in rs])
        task = t.env.split("-")[0]
        if task not in readme:
            continue
        esmpi_cell, paper_cell = readme[task]
        assert _steps(paper_cell) == _steps(paper.fmt_steps(t.es_timesteps)), task
        median = ours.split()[0]
        k, n = sum(v is not None for v in vals), len(vals)
        got = esmpi_cell.split(" (")
        assert _steps(got[0]) == _steps(median), f"README {task}: {esmpi_cell!r}, generated {ours!r}"
        assert got[1:] == ([] if k == n else [f"{k} of {n} seeds)"]), f"README {task}: {esmpi_cell!r} vs ({k}/{n})"
    # and the ARS table below it: (task, ARS median, OpenAI-ES median) as generated
    text = (ROOT / "README.md").read_text().split("esmpi ARS | esmpi OpenAI-ES |", 1)[1]
    ars_rows = {c[0]: c[1] for line in text.splitlines()[2:] if line.startswith("|")
                for c in [[x.strip() for x in line.strip().strip("|").split("|")]]}
    assert ars_rows, "README: no ARS table"
    for key, t in paper.TASKS.items():
        task = t.env.split("-")[0]
        if task not in ars_rows:
            continue
        rs = [r for r in runs if paper.ars_task_of(r) == key]
        vals = [paper.first_crossing(r.history, t.threshold, w) for r in rs]
        median = paper.summarize_seeds(vals, [r.timesteps for r in rs]).split()[0]
        k, n = sum(v is not None for v in vals), len(vals)
        got = ars_rows[task].split(" (")
        assert _steps(got[0]) == _steps(median), f"README ARS {task}: {ars_rows[task]!r}, generated {median!r}"
        assert got[1:] == ([] if k == n else [f"{k} of {n} seeds)"]), f"README ARS {task}: {ars_rows[task]!r}"
