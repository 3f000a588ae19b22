"""The benchmark (``python -m esmpi.bench``): its pieces at tiny sizes, the report's schema, and that the
bitwise-identity checks are real. No timing assertions: this machine is shared."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from esmpi.bench import scale
from esmpi.bench.common import Report, figure, validate
from esmpi.bench.update import node_split_weighted_sum, problem, same_bits, weighted_sum_j1
from esmpi.comm import SerialComm
from esmpi.noise import NodeSplitSum, NoiseTable, weighted_sum_reference


@pytest.fixture(scope="module")
def table():
    return NoiseTable(300_000, 11)


class NodeRank(SerialComm):
    """Rank ``rank`` of a node of ``size`` ranks, without MPI (the shared buffer is private here)."""

    def __init__(self, size, rank):
        self.node_size, self.node_rank = size, rank


def split_range(d, parts, i):
    ns = NodeSplitSum(None, NodeRank(parts, i), d)
    return ns.lo, ns.hi


@pytest.mark.parametrize("d", [1, 15, 16, 1000, 4097])
@pytest.mark.parametrize("parts", [1, 2, 3, 4, 7])
def test_split_range_tiles_the_vector(d, parts):
    cover = []
    for i in range(parts):
        lo, hi = split_range(d, parts, i)
        assert 0 <= lo <= hi <= d
        assert lo % 16 == 0 or lo == d
        cover.extend(range(lo, hi))
    assert cover == list(range(d))


@pytest.mark.parametrize("parts", [1, 2, 3, 5])
def test_slices_assemble_to_the_serial_sum_bitwise(table, parts):
    d, pairs = 1003, 97
    w, offs = problem(table, d, pairs)
    serial = table.weighted_sum(w, offs, d)
    assert same_bits(serial, weighted_sum_reference(table.noise, w, offs, d))
    out = np.full(d, np.nan, np.float32)
    for i in range(parts):   # what each node rank writes into the shared buffer
        lo, hi = split_range(d, parts, i)
        if hi > lo:
            table.weighted_sum(w, offs, d, lo, hi, out=out[lo:hi])
    assert same_bits(out, serial)


def test_bitwise_check_is_real(table):
    d = 500
    w, offs = problem(table, d, 40)
    a = table.weighted_sum(w, offs, d)
    b = a.copy()
    b[123] = np.nextafter(b[123], np.float32(np.inf))   # one ulp
    assert not same_bits(a, b)
    # the same sum in another order is close but not bitwise equal
    rev = weighted_sum_reference(table.noise, w[::-1], offs[::-1], d)
    assert np.allclose(rev, a, atol=1e-4)
    assert not same_bits(rev, a)


def test_node_split_and_previous_kernel_equal_serial(table):
    d = 777
    w, offs = problem(table, d, 33)
    serial = table.weighted_sum(w, offs, d)
    comm = SerialComm()
    assert same_bits(node_split_weighted_sum(comm, table, w, offs, d), serial)
    ns = NodeSplitSum(table, comm, d)
    w2 = w[::-1].copy()
    g1 = ns.weighted_sum(w, offs, d)
    g2 = ns.weighted_sum(w2, offs, d)          # second buffer
    g1[:] = 0                                  # the result is a private copy
    assert same_bits(ns.weighted_sum(w, offs, d), serial)
    assert same_bits(g2, table.weighted_sum(w2, offs, d))
    out = np.empty(d, np.float32)
    weighted_sum_j1(table.noise, offs, w, 0, d, out)   # one pair per pass: same bits as four
    assert same_bits(out, serial)


def test_report_schema_and_missed_note(tmp_path):
    r = Report(quick=True)
    r.add(figure("a.ok", "1 x", "ok", 1.0, "ratio", target=0.9, op=">="),
          figure("a.miss", "1 x", "miss", 0.5, "ratio", target=0.9, op=">=", why="because"),
          figure("a.info", "1 x", "info", 3.0, "s"),
          figure("a.bits", "1 x", "bits", False, "bool", target=True, op="=="))
    j, m = r.write(tmp_path, tmp_path / "bench.md")
    data = json.loads(j.read_text())
    assert validate(data) == []
    f = {x["id"]: x for x in data["figures"]}
    assert f["a.ok"]["met"] is True and f["a.info"]["met"] is None and f["a.bits"]["met"] is False
    assert "MISSED by 44%" in f["a.miss"]["note"] and "because" in f["a.miss"]["note"]
    assert data["summary"]["missed"] == ["a.miss", "a.bits"]
    assert "| figure | value |" in m.read_text() and (tmp_path / "bench.md").read_text().startswith("<!--")
    bad = dict(data, figures=[dict(f["a.miss"], met="no", note="")])
    assert validate(bad)


def test_scale_model_is_consistent():
    pred = scale.predict({}, {"monte_carlo": 1, "cores": [1, 18, 1440]})
    for r in pred["rows"]:
        assert 0 < r["E"] <= 1.0 + 1e-9
        assert r["T"] >= r["ideal_rollout"]
    now = scale.pick(pred["rows"], scenario="trained", variant=pred["as_is"], p=1)
    # per-episode units charge sigma*eps per episode (the trainer reuses it when a pair's two
    # episodes share a rank, as on 1 core): 0.04% off at p = 1
    assert now["E"] == pytest.approx(1.0, abs=1e-3)
    best = scale.pick(pred["rows"], scenario="trained", variant=scale.BEST, p=1440)
    assert best["E"] >= scale.pick(pred["rows"], scenario="trained", variant=pred["as_is"], p=1440)["E"]
    # the steal schedule keeps ranks busy: its efficiency is not below static's
    steal = scale.pick(pred["rows"], scenario="trained", variant="steal schedule, node-split", p=1440)
    assert steal["E"] >= scale.pick(pred["rows"], scenario="trained", variant="static pairs, node-split update",
                                    p=1440)["E"] - 1e-9
    assert scale.figures(pred)


@pytest.mark.timeout(240)
def test_tiny_bench_end_to_end(tmp_path):
    """The whole bench at tiny sizes, MPI at 1 and 2 ranks: a valid report, and the node-split result
    equals the serial one on every rank (read from the workers' raw records, not only the figure)."""
    mpiexec = Path(sys.executable).parent / "mpiexec"
    if not mpiexec.exists():
        pytest.skip("no mpiexec next to the interpreter")
    from esmpi.bench.runner import run_bench

    data = run_bench("tiny", tmp_path, docs=tmp_path / "bench.md", ranks=[1, 2], mpiexec=str(mpiexec))
    assert data["errors"] == []
    assert validate(json.loads((tmp_path / "report.json").read_text())) == []
    f = {x["id"]: x for x in data["figures"]}
    for k in ("rollout.halfcheetah.ratio", "rollout.humanoid.ratio", "update.serial.gbps", "nodesplit.k2.ratio",
              "memory.k2.table_pss", "comm.micro.k2", "startup.k1", "utilisation.k2.idle", "scale.efficiency.p1440",
              "ga.materialize.40k.ratio", "ga.encoding.ratio", "ga.cache.k2.copies"):
        assert k in f, k
    for k in ("update.serial.bitwise", "nodesplit.k1.bitwise", "nodesplit.k2.bitwise"):
        assert f[k]["value"] is True and f[k]["met"] is True, k
    raw = json.loads((tmp_path / "mpi_k2.json").read_text())
    assert [r["split"]["bitwise_split"] for r in raw["ranks"]] == [True, True]
    assert sorted((r["split"]["lo"], r["split"]["hi"]) for r in raw["ranks"]) == [(0, 2000), (2000, 4000)]
    # one noise table per node: two ranks together are charged about one table, not two
    assert f["memory.k2.table_pss"]["value"] < 1.5
    for fig in data["figures"]:
        assert "load" in fig and "cpu_wall" in fig
    assert (tmp_path / "report.md").read_text().count("\n|") > 10


def test_a_false_bitwise_figure_fails_the_bench_command(tmp_path, monkeypatch):
    """Correctness gates: `python -m esmpi.bench` exits 1 when a bitwise figure is false, even with
    no section error (timing targets never gate)."""
    import esmpi.bench.__main__ as bench_main
    from esmpi.bench.common import failed_correctness

    def fake_run(profile, out, docs, ranks, sections, mpiexec, argv):
        r = Report(quick=True)
        r.add(figure("update.serial.bitwise", "2 update", "bits", False, "bool", target=True, op="=="),
              figure("a.slow", "1 x", "slow", 0.5, "ratio", target=0.9, op=">=", why="shared machine"))
        r.write(Path(out))
        return r.data

    monkeypatch.setattr(bench_main, "run_bench", fake_run)
    assert bench_main.main(["--profile", "tiny", "--out", str(tmp_path)]) == 1
    assert failed_correctness(json.loads((tmp_path / "report.json").read_text())) == ["update.serial.bitwise"]
    ok = {"figures": [{"id": "x.bitwise", "unit": "bool", "target": True, "value": True},
                      {"id": "a.slow", "unit": "ratio", "target": 0.9, "value": 0.5}]}
    assert failed_correctness(ok) == []


def test_fallback_calibration_is_labelled():
    pred = scale.predict({"update_gbps": 10.0}, {"monte_carlo": 1})
    assert "update_gbps" not in pred["calibration_fallback"]
    assert "tell_fixed_s" in pred["calibration_fallback"]
    md = scale.full_markdown(pred)
    assert "tell_fixed_s=0.005 (FALLBACK, not measured in this run)" in md
    assert "update_gbps=10.0," in md and "fallback calibration numbers stand in" in md
