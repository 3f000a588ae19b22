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
