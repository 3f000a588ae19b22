"""Real learning tests with small budgets (marked ``slow``; a few seconds each on 2 cores).

Budgets were measured over seeds 0-2: CartPole-v1 crossed 475 within 4-10 generations and
InvertedPendulum-v5 reached 1000 within 11-18 generations; the caps below leave about 2x margin.
"""

import pytest

from esmpi.comm import SerialComm
from esmpi.config import config_from_dict
from esmpi.objectives.gym import EnvObjective
from esmpi.train import Trainer

pytestmark = pytest.mark.slow


def generations_to_threshold(env_id, hidden, sigma, stepsize, threshold, max_generations, seed=0):
    cfg = config_from_dict({
        "run": {"seed": seed, "generations": max_generations}, "env": {"id": env_id},
        "policy": {"hidden": hidden},
        "es": {"pairs_per_generation": 20, "noise_stdev": sigma, "eval_episodes": 4, "obs_stat_fraction": 0.1,
               "l2coeff": 0.0},
        "optimizer": {"stepsize": stepsize}, "noise": {"size": 1_000_000}, "checks": {"replica_check_every": 0},
    }, f"<learning test {env_id}>")
    t = Trainer(cfg, EnvObjective(cfg), SerialComm())
    while t.state.generation < max_generations:
        m = t.generation()
        if m["Generation"] == 1:      # row 1 evaluates the initial theta: it must not pass already
            assert m["EvalEpRewMean"] < threshold, f"{env_id}: the initial policy already scores " \
                f"{m['EvalEpRewMean']} >= {threshold}; the test would prove nothing"
        if m["EvalEpRewMean"] >= threshold:   # the unperturbed policy, not the best perturbation
            return m["Generation"]
    pytest.fail(f"{env_id}: eval return {[round(h['EvalEpRewMean']) for h in t.history]} never reached {threshold}")


def test_cartpole_is_solved():
    assert generations_to_threshold("CartPole-v1", [16], 0.1, 0.05, 475, 25) <= 25


def test_inverted_pendulum_v5_is_solved():
    assert generations_to_threshold("InvertedPendulum-v5", [32, 32], 0.05, 0.03, 1000, 40) <= 40
