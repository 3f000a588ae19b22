"""Small shared builders for tests: tiny configs on the PointMass test env."""

from esmpi.config import config_from_dict


def tiny_config(**sections):
    base = {
        "run": {"seed": 3, "generations": 4},
        "env": {"id": "esmpi/PointMass-v0"},
        "policy": {"hidden": [8]},
        "es": {"pairs_per_generation": 7, "noise_stdev": 0.05, "obs_stat_fraction": 0.5, "eval_episodes": 3,
               "min_timesteps_per_generation": 1000},
        "optimizer": {"stepsize": 0.05},
        "noise": {"size": 50_000, "seed": 7},
        "checks": {"replica_check_every": 2},
    }
    for k, v in sections.items():
        base.setdefault(k, {}).update(v)
    return config_from_dict(base, "<test>")


def pair_rounds(offsets, returns, lengths=None, failed=None, d=1):
    """One gathered round of antithetic pairs, as the loop hands it to ``tell`` (for exact unit tests)."""
    import numpy as np

    from esmpi import candidates as C

    offsets = np.asarray(offsets, np.int64)
    returns = np.asarray(returns, np.float64)
    n = offsets.size
    lengths = np.ones((n, 2), np.int64) if lengths is None else np.asarray(lengths)
    failed = np.zeros((n, 2), bool) if failed is None else np.asarray(failed)
    t = C.table(2 * n)
    t["index"] = np.arange(2 * n)
    t["kind"] = C.TRAIN
    t["offset"] = np.repeat(offsets, 2)
    t["sign"] = np.tile([1, -1], n)
    t["hi"] = d
    rows = np.stack([np.arange(2 * n), returns.ravel(), lengths.ravel(), failed.ravel()], axis=1).astype(np.float64)
    return [C.Round(t, C.Results.from_rows(rows, np.zeros((0, 2)), 0, 0))]


# the smallest config that exercises each strategy's own keys
STRATEGY_CONFIGS = {
    "openai_es": {},
    "ars": {"strategy": {"name": "ars"}, "ars": {"top_directions": 4, "stepsize": 0.05, "reward_shift": 0.5},
            "es": {"l2coeff": None, "shaping": None}},
    "ga": {"strategy": {"name": "ga"},
           "ga": {"population": 12, "truncation": 4, "sigma": 0.05, "validation_top": 3, "validation_episodes": 2,
                  "test_episodes": 3},
           "es": {k: None for k in ("l2coeff", "shaping", "noise_stdev", "pairs_per_generation",
                                    "min_timesteps_per_generation", "max_blocks_per_generation", "eval_episodes")}},
    "novelty_es": {"strategy": {"name": "novelty_es"},
                   "novelty": {"variant": "nsra", "population": 3, "k": 2, "bc_episodes": 2, "nsra_patience": 1},
                   "es": {"shaping": None, "eval_episodes": None}},
}

# the recurrent memory task at its smallest (10 steps per episode) with a GRU of 4 units
GRU_TASK = {"env": {"id": "esmpi/DelayedRecall-v0", "kwargs": {"trials": 2, "delay": 3}},
            "policy": {"kind": "gru", "hidden": [4],
                       **{k: None for k in ("nonlinearity", "action_bins", "hidden_init_std", "output_init_std")}}}

# variants of a strategy that change what its state holds or how it draws (covered by the same contract
# and world-size tests as the strategies themselves): the GA's safe mutations (SM-G) store parent thetas
# and add a probe round; a GRU policy keeps a hidden state within an episode
STRATEGY_VARIANTS = {
    **STRATEGY_CONFIGS,
    "ga_smg_sum": {**STRATEGY_CONFIGS["ga"], "ga": {**STRATEGY_CONFIGS["ga"]["ga"], "mutation": "sm_g_sum",
                                                     "smg_states": 10}},
    "ga_smg_so": {**STRATEGY_CONFIGS["ga"], "ga": {**STRATEGY_CONFIGS["ga"]["ga"], "mutation": "sm_g_so",
                                                    "smg_states": 7}},
    # a recurrent policy: SM-G's probe keeps a sequence and differentiates through time
    "ga_smg_gru": {**STRATEGY_CONFIGS["ga"], **GRU_TASK, "ga": {**STRATEGY_CONFIGS["ga"]["ga"], "mutation": "sm_g_abs",
                                                                "smg_states": 9}},
    "openai_es_gru": GRU_TASK,
}
VARIANT_NAMES = tuple(STRATEGY_VARIANTS)


def strategy_config(name, **extra):
    """tiny_config's PointMass run under strategy (or variant) ``name``; None removes a key (another strategy's)."""
    from esmpi.config import config_from_dict

    sections = __import__('copy').deepcopy(STRATEGY_VARIANTS[name])
    for k, v in extra.items():
        sections.setdefault(k, {}).update(v)
    cfg_tree = tiny_config().to_dict()
    for sec, vals in sections.items():
        cfg_tree.setdefault(sec, {})
        for k, v in vals.items():
            if v is None:
                cfg_tree[sec].pop(k, None)
            else:
                cfg_tree[sec][k] = v
    if cfg_tree.get("strategy", {}).get("name", "openai_es") != "openai_es":
        cfg_tree.pop("optimizer", None)
    return config_from_dict(cfg_tree, f"<{name}>")


_MAKE_RUNS = """
import json, sys
from esmpi.run import main
for out, sets in json.loads(sys.argv[1]).items():
    args = ["-q", "--out", out]
    for s in sets:
        args += ["--set", s]
    code = main(args)
    if code:
        sys.exit(code)
"""


def make_runs(root, runs: dict, timeout: int = 180) -> dict:
    """Train each ``{name: [--set overrides]}`` into ``root/name`` with ``esmpi.run`` in one fresh
    process (the way a user runs it, so its numba kernels compile once); returns ``{name: path}``."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(root)
    spec = {str(root / name): sets for name, sets in runs.items()}
    r = subprocess.run([sys.executable, "-c", _MAKE_RUNS, json.dumps(spec)], cwd=root, capture_output=True,
                       text=True, timeout=timeout)
    assert r.returncode == 0, r.stdout + r.stderr
    return {name: root / name for name in runs}
