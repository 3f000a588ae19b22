"""The recurrent policy (``policy.kind = "gru"``) and its memory task (``esmpi/DelayedRecall-v0``):
the step kernel against the batch forward pass to the bit, resets, the action maps, the task's rules,
config errors as one line, SM-G's probe keeping a sequence from the reset and children built from
gradients through time, and a trained run read back with ``load_policy`` and ``esmpi eval``.
Contract, resume and world-size tests of GRU runs: the ``*_gru`` variants of tests/test_strategies.py
and tests/test_mpi.py."""

import json
import subprocess
import sys

import numpy as np
import pytest

from esmpi import candidates as C
from esmpi import checkpoint, policies, seeding
from esmpi.comm import SerialComm
from esmpi.config import ConfigError, config_from_dict
from esmpi.evaluate import Evaluator
from esmpi.objectives.gym import EnvObjective
from esmpi.policies.gru import GRUPolicy, GRUSpec, forward as gru_forward
from esmpi.policies.mlp import ActionSpec
from esmpi.policies.sensitivity import jacobians, normalized_inputs, safe_mutation, sensitivity
from esmpi.recall import DelayedRecall
from esmpi.train import Trainer

from helpers import make_runs, strategy_config

BOX = ActionSpec("box", 2, (-0.5, -1.0), (0.5, 1.0))


def _theta(spec, seed=0, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(spec.num_params) * scale).astype(np.float32)


# ---------------------------------------------------------------- the policy
def test_the_step_kernel_is_the_batch_forward_pass_with_normalisation_and_the_action_maps():
    spec = GRUSpec(3, 5, 2, BOX)
    theta = _theta(spec, 1)
    mean, std = np.array([0.1, -0.2, 0.3], np.float32), np.array([0.5, 2.0, 1.0], np.float32)
    obs = np.random.default_rng(2).uniform(-4, 4, size=(2, 7, 3))
    x = normalized_inputs(obs.reshape(-1, 3), mean, std, 1.5).reshape(2, 7, 3)
    y = gru_forward(spec, theta, x).y
    pi = GRUPolicy(spec, obs_clip=1.5)
    pi.set_theta(theta)
    pi.set_obs_norm(mean, std)
    for b in range(2):
        pi.reset()
        for t in range(7):
            a = pi(obs[b, t])
            assert np.array_equal(pi.output, y[b, t])                          # bit for bit
            assert np.array_equal(a, np.clip(y[b, t], [-0.5, -1.0], [0.5, 1.0]).astype(np.float32))
    disc = GRUPolicy(GRUSpec(3, 5, 4, ActionSpec("discrete", n=4)), obs_clip=5.0)
    disc.set_theta(_theta(disc.spec, 3))
    a = disc(obs[0, 0])
    assert isinstance(a, int) and a == int(np.argmax(disc.output))


def test_the_hidden_state_persists_within_an_episode_and_reset_forgets_it():
    spec = GRUSpec(3, 4, 2, BOX)
    pi = GRUPolicy(spec)
    pi.set_theta(_theta(spec, 4))
    pi(np.ones(3))
    first = pi.output.copy()
    pi(np.ones(3))
    assert not np.array_equal(pi.output, first)           # same input, another state
    pi.reset()
    pi(np.ones(3))
    assert np.array_equal(pi.output, first)


def test_a_non_finite_observation_is_none_and_keeps_the_state():
    spec = GRUSpec(3, 4, 2, BOX)
    pi = GRUPolicy(spec)
    pi.set_theta(_theta(spec, 5))
    pi(np.ones(3))
    h = pi.h.copy()
    assert pi(np.array([0.0, np.nan, 1.0])) is None
    np.testing.assert_array_equal(pi.h, h)


def test_policies_make_builds_the_gru_from_the_config():
    cfg = strategy_config("openai_es_gru")
    spec, pi = policies.make(cfg.policy, 3, ActionSpec("discrete", n=2), 5.0)
    assert isinstance(pi, GRUPolicy) and spec == GRUSpec(3, 4, 2, ActionSpec("discrete", n=2))
    assert spec.num_params == 3 * (3 * 4 + 4 * 4 + 4) + 4 * 2 + 2
    assert spec.layer_sizes == [3, 4, 2] and spec.obs_dim == 3


# ---------------------------------------------------------------- the task
def test_delayed_recall_scores_the_recall_step_only():
    task = DelayedRecall(trials=3, delay=2)
    obs = task.reset(np.random.default_rng(0))
    cues, seen, ret, steps, done = task.cues.copy(), [obs], 0.0, 0, False
    while not done:
        phase = steps % 4
        # a perfect recaller: answers the cue at the recall step, the wrong one everywhere else
        action = cues[steps // 4] if phase == 3 else 1 - cues[steps // 4]
        obs, r, done = task.step(action)
        ret, steps = ret + r, steps + 1
        seen.append(obs)
    assert ret == 3.0 and steps == 12
    for k, o in enumerate(seen[:-1]):
        want = np.zeros(3)
        if k % 4 == 0:
            want[cues[k // 4]] = 1
        elif k % 4 == 3:
            want[2] = 1
        np.testing.assert_array_equal(o, want)


def test_without_memory_a_policy_cannot_beat_chance():
    """The two constant answers together recall every trial exactly once (so any policy that cannot
    tell the cues apart scores trials / 2 on average), and the cues are fair coins."""
    task = DelayedRecall(trials=4, delay=1)
    totals = []
    for seed in range(2000):
        scores = []
        for answer in (0, 1):
            task.reset(np.random.default_rng(seed))
            done, ret = False, 0.0
            while not done:
                _, r, done = task.step(answer)
                ret += r
            scores.append(ret)
        assert sum(scores) == 4.0
        totals.append(scores[0])
    assert abs(np.mean(totals) - 2.0) < 0.1


def test_the_env_seeds_its_cues_and_ends_the_episode():
    cfg = strategy_config("openai_es_gru")
    obj = EnvObjective(cfg)
    a = obj.episode(obj.initial_theta(np.random.default_rng(0)), seed=11, cutoff=1000, keep_obs=True)
    b = obj.episode(obj.initial_theta(np.random.default_rng(0)), seed=11, cutoff=1000, keep_obs=True)
    assert a.length == 10 and 0 <= a.ret <= 2 and np.array_equal(a.states, b.states) and a.ret == b.ret
    with pytest.raises(ValueError, match="trials >= 1"):
        DelayedRecall(trials=0)


# ---------------------------------------------------------------- config
@pytest.mark.parametrize("policy, expect", [
    ({"kind": "gru", "hidden": [4, 4]}, "set policy.hidden = \\[H\\]"),
    ({"kind": "gru", "hidden": [4], "nonlinearity": "relu"}, "policy.nonlinearity is an MLP key"),
    ({"kind": "gru", "hidden": [4], "action_bins": 5}, "policy.action_bins is an MLP key"),
    ({"kind": "lstm"}, "key 'policy.kind'"),
])
def test_bad_gru_keys_are_one_line(policy, expect):
    with pytest.raises(ConfigError, match=expect) as e:
        config_from_dict({"policy": policy}, "job.toml")
    assert "\n" not in str(e.value) and "job.toml" in str(e.value)


def test_gru_configs_load_back_and_mlp_configs_keep_their_keys():
    cfg = strategy_config("ga_smg_gru", ga={"smg_floor": 0.001, "smg_clip": 0.5})
    tree = cfg.to_dict()
    assert tree["policy"] == {"kind": "gru", "hidden": (4,)} and tree["ga"]["smg_floor"] == 0.001
    assert config_from_dict(tree) == cfg
    mlp = strategy_config("ga").to_dict()          # an MLP GA run under plain mutation: the tree it always had
    assert "kind" not in mlp["policy"] and not {"smg_states", "smg_floor", "smg_clip"} & set(mlp["ga"])


def test_gru_with_a_pixel_objective_and_floor_under_plain_mutation_are_refused():
    with pytest.raises(ConfigError, match="policy.kind' = 'gru' is a policy for objective.kind = 'gym'"):
        config_from_dict({"objective": {"kind": "atari"}, "policy": {"kind": "gru", "hidden": [4]}}, "job.toml")
    with pytest.raises(ConfigError, match="ga.smg_floor = 0.1 is not read under ga.mutation = 'plain'"):
        strategy_config("ga", ga={"smg_floor": 0.1})
    with pytest.raises(ConfigError, match="ga.smg_clip"):
        strategy_config("ga_smg_sum", ga={"smg_clip": 0})


def test_floor_and_clip_are_the_configured_ones():
    eps = np.array([1.0, -2.0, 3.0, 0.5], np.float32)
    sens = np.array([0.0, 1e-4, 0.05, 2.0], np.float32)
    got = safe_mutation(np.zeros(4, np.float32), eps, sens, 0.1, floor=1e-3, clip=5.0)
    want = np.float32(0.1) * eps / np.array([1.0, 1e-3, 0.05, 2.0], np.float32)
    np.testing.assert_array_equal(got, np.clip(want, -5, 5))
    assert got[1] == np.float32(-5.0)                     # -200 clipped
    np.testing.assert_array_equal(safe_mutation(np.zeros(4, np.float32), eps, sens, 0.1),
                                  np.clip(np.float32(0.1) * eps / np.array([1, 0.01, 0.05, 2], np.float32), -0.2, 0.2))


# ---------------------------------------------------------------- SM-G on the GRU
def test_the_probe_keeps_a_sequence_from_the_reset_and_children_use_gradients_through_time():
    cfg = strategy_config("ga_smg_gru", ga={"smg_floor": 0.02, "smg_clip": 0.3})
    t = Trainer(cfg, EnvObjective(cfg), SerialComm())
    t.generation()
    s, g = t.state.strategy, t.state.generation
    t.objective.set_obs_norm(*t.state.obs.mean_std(t.cfg.es.obs_std_floor))
    probe = t.strategy.ask(s, g, 0, [])
    ev = Evaluator(t.objective, t.noise, cfg.run.seed, 0, mutation=t.strategy.mutation)
    ev.run(probe, s.parent_thetas, g, t.state.cutoff, t.max_steps)
    kept = ev.kept.copy()
    for p in range(s.parent_thetas.shape[0]):          # the first 9 of the 10 observations, in order
        full = t.objective.episode(s.parent_thetas[p], seeding.episode_seed(3, seeding.GA_PROBE, g, p),
                                   t.max_steps, keep_obs=True).states
        np.testing.assert_array_equal(kept[kept[:, 0] == p, 1:], full[:9])
    res = C.Results.from_rows(np.array([[i, 1.0, 10, 0] for i in range(len(probe))], float), np.zeros((0, 8)), 0,
                              3, kept)
    rd = C.Round(probe, res)
    t.strategy.smg.prepare(g, s.parent_thetas, rd)
    kids = t.strategy.ask(s, g, 1, [rd])
    pi = t.objective.policy
    for c in kids[kids["kind"] == C.TRAIN][:3]:
        p = int(c["base"])
        parent, states = s.parent_thetas[p], res.kept_states(p)
        x = normalized_inputs(states, pi.mean, pi.std, pi.obs_clip)[None]          # one sequence (1, 9, 3)
        sens = sensitivity(jacobians(t.objective.spec, parent, x), "abs")
        eps = t.noise.get(int(c["offset"]), parent.size)
        want = parent + safe_mutation(parent, eps, sens, np.float32(cfg.ga.sigma), 0.02, 0.3)
        np.testing.assert_array_equal(ev.materialize(c, s.parent_thetas), want)


# ---------------------------------------------------------------- a trained run, read back
GRU_RUN = ['strategy.name="ga"', 'env.id="esmpi/DelayedRecall-v0"', "env.kwargs={trials=3, delay=4}",
           'policy.kind="gru"', "policy.hidden=[6]", "noise.size=100000", "es.obs_stat_fraction=0.0",
           "ga.population=12", 'ga.mutation="sm_g_sum"', "ga.smg_states=18", "ga.truncation=3", "ga.sigma=0.3",
           "ga.validation_top=2", "ga.validation_episodes=2", "ga.test_episodes=4", "run.seed=5",
           "run.generations=4", "checkpoint.every=1"]


def test_a_gru_run_deploys_with_load_policy_and_eval(tmp_path):
    """``load_policy`` (with ``reset()`` after every ``env.reset``) on the trainer's test seeds gives the
    history's EvalEpRewMean; ``esmpi eval`` gives what it gives on the analysis seeds; ``esmpi info`` says GRU."""
    import esmpi
    from esmpi import replay

    out = make_runs(tmp_path, {"run": [a for s in GRU_RUN for a in (s,)]})["run"]
    history = checkpoint.load(out / "latest.h5")["history"]
    pi = esmpi.load_policy(out, checkpoint="gen_000003")
    assert "gru" in repr(pi) and pi.spec == GRUSpec(3, 6, 2, ActionSpec("discrete", n=2))

    def episode(seed):
        env = pi.make_env()
        obs, _ = env.reset(seed=seed)
        pi.reset()
        ret, done = 0.0, False
        while not done:
            obs, r, terminated, truncated, _ = env.step(pi(obs))
            ret, done = ret + r, terminated or truncated
        return ret

    g = pi.generation
    rets = [episode(seeding.episode_seed(5, seeding.EVAL, g, e)) for e in range(4)]
    assert float(np.mean(rets)) == history[g]["EvalEpRewMean"]
    cmd = [sys.executable, "-m", "esmpi.analyze"]
    ev = subprocess.run([*cmd, "eval", str(out), "-n", "3", "--seed", "9", "--json"], capture_output=True,
                        text=True, timeout=120)
    assert ev.returncode == 0, ev.stderr
    last = esmpi.load_policy(out)
    pi = last
    assert json.loads(ev.stdout)["returns"] == [episode(replay.episode_seed(9, e)) for e in range(3)]
    info = subprocess.run([*cmd, "info", str(out)], capture_output=True, text=True, timeout=120)
    assert info.returncode == 0 and "GRU [3, 6, 2] (inputs, hidden units, outputs)" in info.stdout, info.stderr
    assert "policy.kind=gru" in info.stdout and "ga.mutation=sm_g_sum" in info.stdout, info.stdout
