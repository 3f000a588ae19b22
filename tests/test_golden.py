"""The guard of the strategy refactor (issue 11): OpenAI-ES is bitwise what esmpi's first loop computed.

``golden/v1_digests.json`` was recorded with the pre-refactor code (``golden/record_v1.py``, commit
8aaa345): per-field sha256 of the final states of the MPI test configurations, of the black-box API
and of the smoke job, and of every v1 checkpoint in ``results/runs/``, plus a resume of one of them.
Each is recomputed here with today's code and must match to the bit, except the history's two
diagnostic norms (``Norm``, ``GradNorm``): v1 computed them with BLAS ``dot``, whose summation order
depends on the CPU's SIMD width (they differed in the last bit on a machine without AVX2); esmpi now
sums them in one fixed order (``metrics.l2norm``), the same on every CPU, so they are compared to a
relative 1e-13 here. The state, which never depended on them, is still compared bit for bit.
"""

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from esmpi import checkpoint
from esmpi.comm import SerialComm
from esmpi.config import load_config
from esmpi.objectives.gym import EnvObjective
from esmpi.train import Trainer

from helpers import tiny_config

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = json.loads((Path(__file__).parent / "golden" / "v1_digests.json").read_text())


def _h(a) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def fields(st) -> dict:
    s = st.strategy
    return {"theta": _h(s.theta), "opt_m": _h(s.optimizer.m), "opt_v": _h(s.optimizer.v), "opt_t": s.optimizer.t,
            "obs_sum": _h(st.obs.sum), "obs_sumsq": _h(st.obs.sumsq), "obs_count": float(st.obs.count).hex(),
            "generation": st.generation, "episodes_so_far": st.episodes_so_far,
            "timesteps_so_far": st.timesteps_so_far, "cutoff": st.cutoff}


NORMS = ("GradNorm", "Norm")


def hist(hs) -> list:
    keys = ("EpRewMean", "EpRewMax", "EvalEpRewMean", "TimestepsThisIter", "ObCount", "EpFailures")
    return [{k: (float(x[k]).hex() if isinstance(x[k], float) else x[k]) for k in keys} for x in hs]


def assert_history(hs, golden) -> None:
    """Exact on every key, except the diagnostic norms (relative 1e-13; see the module docstring)."""
    assert hist(hs) == [{k: v for k, v in row.items() if k not in NORMS} for row in golden]
    for x, row in zip(hs, golden):
        for k in NORMS:
            assert x[k] == pytest.approx(float.fromhex(row[k]), rel=1e-13, abs=0), k


@pytest.mark.parametrize("name", sorted(GOLDEN["cases"]))
def test_openai_es_is_bitwise_the_v1_loop(name):
    case = GOLDEN["cases"][name]
    cfg = tiny_config(**case["overrides"])
    t = Trainer(cfg, EnvObjective(cfg), SerialComm())
    t.run()
    assert fields(t.state) == case["state"]
    assert_history(t.history, case["history"])


def test_black_box_api_and_smoke_job_are_bitwise_v1():
    import esmpi
    f = lambda w: -float(np.sum((w - np.array([1.0, -2.0, 0.5], np.float32)) ** 2))
    r = esmpi.optimize(f, np.zeros(3), generations=40, pairs=9, noise_stdev=0.1, stepsize=0.05, seed=4)
    assert fields(r.state) == GOLDEN["optimize"]["state"]
    cfg = load_config(ROOT / "jobs" / "smoke.toml", ["run.generations=6"])
    t = Trainer(cfg, EnvObjective(cfg), SerialComm())
    t.run()
    assert fields(t.state) == GOLDEN["smoke"]["state"]
    assert_history(t.history, GOLDEN["smoke"]["history"])


def test_every_v1_checkpoint_in_results_loads_unchanged():
    runs = ROOT / "results" / "runs"
    got = {name: fields(checkpoint.load(runs / name / "latest.h5")["state"]) for name in GOLDEN["v1_checkpoints"]}
    assert got == GOLDEN["v1_checkpoints"]
    for name in GOLDEN["v1_checkpoints"]:     # still the files the first loop wrote (runs added since are layout 2)
        assert checkpoint.load(runs / name / "latest.h5")["attrs"]["layout_version"] == 1


def test_a_v1_run_resumes_bitwise_and_writes_layout_2(tmp_path):
    from esmpi.run import main
    run = tmp_path / "ip"
    shutil.copytree(ROOT / "results" / "runs" / "invertedpendulum-s0", run)
    assert main(["--resume", str(run), "--set", "run.max_timesteps=0", "--set", "run.generations=64", "-q"]) == 0
    ck = checkpoint.load(run / "latest.h5")
    assert ck["attrs"]["layout_version"] == 2
    assert {"rc": 0, "state": fields(ck["state"])} == GOLDEN["v1_resume_invertedpendulum_s0_to_gen64"]
