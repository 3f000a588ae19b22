"""Record per-field sha256 of final states with the pre-refactor (v1) code: the guard of issue 11.

Ran once with the v1 code (commit 8aaa345) from the repository root: python tests/golden/record_v1.py
"""
import hashlib, json, shutil, sys, tempfile
from pathlib import Path
import numpy as np
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from helpers import tiny_config
from esmpi.comm import SerialComm
from esmpi.rollout import EnvObjective
from esmpi.train import Trainer

def h(a): return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()

def fields(st):
    return {"theta": h(st.theta), "opt_m": h(st.opt.m), "opt_v": h(st.opt.v), "opt_t": st.opt.t,
            "obs_sum": h(st.obs.sum), "obs_sumsq": h(st.obs.sumsq), "obs_count": float(st.obs.count).hex(),
            "generation": st.generation, "episodes_so_far": st.episodes_so_far,
            "timesteps_so_far": st.timesteps_so_far, "cutoff": st.cutoff}

def hist(hs):
    keys = ("EpRewMean", "EpRewMax", "EvalEpRewMean", "TimestepsThisIter", "ObCount", "EpFailures", "GradNorm", "Norm")
    return [{k: (float(x[k]).hex() if isinstance(x[k], float) else x[k]) for k in keys} for x in hs]

CASES = {
    "base": {},
    "few_pairs": {"es": {"pairs_per_generation": 2, "eval_episodes": 5, "min_timesteps_per_generation": 0}},
    "nan_adaptive": {"env": {"kwargs": {"nan_prob": 0.2}}, "es": {"episode_cutoff": "adaptive", "cutoff_initial": 10}},
    "sgd_bins_noise": {"es": {"action_noise_std": 0.1}, "optimizer": {"name": "sgd"}, "policy": {"action_bins": 3}},
    "raise_discrete": {"env": {"kwargs": {"raise_prob": 0.15, "discrete": True}}, "run": {"generations": 3}},
    "linear_identity": {"policy": {"hidden": []}, "es": {"shaping": "identity", "l2coeff": 0.0}},
}
out = {"cases": {}}
for name, ov in CASES.items():
    try:
        cfg = tiny_config(**ov)
    except Exception as e:
        print("skip", name, e); continue
    t = Trainer(cfg, EnvObjective(cfg), SerialComm()); t.run()
    out["cases"][name] = {"overrides": ov, "state": fields(t.state), "history": hist(t.history)}
    print(name, out["cases"][name]["state"]["theta"][:12])

import esmpi
f = lambda w: -float(np.sum((w - np.array([1.0, -2.0, 0.5], np.float32)) ** 2))
r = esmpi.optimize(f, np.zeros(3), generations=40, pairs=9, noise_stdev=0.1, stepsize=0.05, seed=4)
out["optimize"] = {"theta": h(r.theta), "state": fields(r.state)}

# smoke job, 6 generations
from esmpi.config import load_config
cfg = load_config(ROOT / "jobs" / "smoke.toml", ["run.generations=6"])
t = Trainer(cfg, EnvObjective(cfg), SerialComm()); t.run()
out["smoke"] = {"state": fields(t.state), "history": hist(t.history)}

# v1 checkpoints: load each results/runs/*/latest.h5 and record its fields
from esmpi import checkpoint
out["v1_checkpoints"] = {}
for p in sorted((ROOT / "results" / "runs").glob("*/latest.h5")):
    ck = checkpoint.load(p)
    out["v1_checkpoints"][p.parent.name] = fields(ck["state"])
# resume invertedpendulum-s0 for 2 generations (copy of the run dir)
tmp = Path(tempfile.mkdtemp())
shutil.copytree(ROOT / "results" / "runs" / "invertedpendulum-s0", tmp / "ip")
from esmpi.run import main
rc = main(["--resume", str(tmp / "ip"), "--set", "run.max_timesteps=0", "--set", "run.generations=64", "-q"])
ck = checkpoint.load(tmp / "ip" / "latest.h5")
out["v1_resume_invertedpendulum_s0_to_gen64"] = {"rc": rc, "state": fields(ck["state"])}
(ROOT / "tests" / "golden" / "v1_digests.json").write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
print("ok", rc)
