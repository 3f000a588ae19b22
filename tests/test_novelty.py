"""Novelty-seeking ES (NS, NSR, NSRA): exact arithmetic on hand-made archives, the seeded member
draw, NSRA's weight schedule, a smoke run per variant, exact resume with the archive, bad input at
the CLI, NaN behaviour characterisations, the maze envs, and (marked mpi) world-size invariance."""

import math
import subprocess
import sys

import numpy as np
import pytest

from esmpi import checkpoint, seeding
from esmpi.comm import SerialComm
from esmpi.config import config_from_dict
from esmpi.objectives.gym import EnvObjective
from esmpi.state import digest
from esmpi.strategies import archive as A
from esmpi.train import Trainer

from helpers import tiny_config

VARIANTS = ("ns", "nsr", "nsra")


def ns_config(variant="nsr", **sections):
    """tiny_config's run under novelty_es (without the keys only openai_es reads)."""
    nov = {"variant": variant, "population": 3, "k": 4, "bc_episodes": 2, "nsra_patience": 2}
    nov.update(sections.pop("novelty", {}))
    es = {"min_timesteps_per_generation": 0, "pairs_per_generation": 5, **sections.pop("es", {})}
    tree = tiny_config(es=es, **sections).to_dict()
    for key in ("eval_episodes", "shaping"):
        tree["es"].pop(key)
    tree["strategy"]["name"] = "novelty_es"
    tree["novelty"] = nov
    return config_from_dict(tree, "<test>")


# ---------------------------------------------------------------- exact arithmetic
def test_novelty_on_a_hand_made_archive():
    archive = np.array([[0.0, 0.0], [3.0, 4.0], [1.0, 0.0], [0.0, 2.0]])
    bc = np.array([0.0, 0.0])                             # distances 0, 5, 1, 2
    assert A.novelty(archive, bc, 2) == 0.5               # (0 + 1) / 2
    assert A.novelty(archive, bc, 3) == 1.0               # (0 + 1 + 2) / 3
    assert A.novelty(archive, bc, 10) == 2.0              # k > n: the whole archive, (0 + 1 + 2 + 5) / 4
    assert A.novelty(archive, np.array([3.0, 0.0]), 1) == 2.0     # nearest (1, 0)
    assert A.novelty(np.zeros((0, 2)), bc, 10) == 0.0
    assert A.novelty(archive, np.array([np.nan, 0.0]), 2) == -math.inf
    np.testing.assert_array_equal(A.novelties(archive, np.array([[[0.0, 0.0], [3.0, 0.0]]]), 1), [[0.0, 2.0]])


def test_member_selection_is_proportional_to_novelty():
    nov = np.array([1.0, 2.0, 1.0])                       # cumulative 1, 3, 4
    assert [A.select_member(nov, u) for u in (0.0, 0.2, 0.3, 0.7, 0.76, 0.999)] == [0, 0, 1, 1, 2, 2]
    assert A.select_member(np.array([0.0, 0.0, 0.0, 0.0]), 0.6) == 2          # all equal BCs: uniform
    assert A.select_member(np.array([0.0, -math.inf, 3.0]), 0.1) == 2         # weightless members never drawn


def test_member_selection_is_reproducible_from_the_seed():
    cfg = ns_config(novelty={"population": 4})
    objective = EnvObjective(cfg)
    t = Trainer(cfg, objective, SerialComm())
    s = t.state.strategy
    from dataclasses import replace
    s = replace(s, archive=np.array([[0.0, 0.0], [1.0, 0.0], [5.0, 5.0]]),
                member_bc=np.array([[0.0, 0.0], [1.0, 0.0], [5.0, 5.0], [2.0, 0.0]]))
    nov = A.novelties(s.archive, s.member_bc, cfg.novelty.k)
    for g in range(20):
        u = float(seeding.rng(cfg.run.seed, seeding.NS_MEMBER, g).random())
        m, got = t.strategy.choose(s, g)
        assert m == A.select_member(nov, u) == t.strategy.choose(s, g)[0]
        np.testing.assert_array_equal(got, nov)
    assert len({t.strategy.choose(s, g)[0] for g in range(20)}) > 1          # the draw does vary with g


def test_nsra_weight_schedule_on_scripted_returns():
    w, best, stale = 1.0, -math.inf, 0
    ws = []
    for ret in [1.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.9, 2.0, 2.0, 2.0, 2.0]:
        w, best, stale = A.nsra_weight(w, best, stale, ret, 0.25, 3)
        ws.append(w)
    # new best at 1.0 (w stays clipped at 1), three stale -> 0.75, three more -> 0.5, a fourth stale
    # (0.9 < 1.0), then a new best 2.0 -> 0.75, then three stale (2.0 is no improvement) -> 0.5
    assert ws == [1.0, 1.0, 1.0, 0.75, 0.75, 0.75, 0.5, 0.5, 0.75, 0.75, 0.75, 0.5]
    w, best, stale = 1.0, 1.0, 0                         # with a tolerance, noise on a plateau is no progress
    for ret in [1.05, 1.09, 1.02]:
        w, best, stale = A.nsra_weight(w, best, stale, ret, 0.25, 3, min_improvement=0.1)
    assert (w, best, stale) == (0.75, 1.0, 0)
    w, best, stale = A.nsra_weight(0.5, 1.0, 2, 1.2, 0.25, 3, min_improvement=0.1)
    assert (w, best, stale) == (0.75, 1.2, 0)
    w = 0.0
    for _ in range(3):
        w, _, _ = A.nsra_weight(w, 5.0, 2, 1.0, 0.25, 3)
    assert w == 0.0                                       # never below 0


def test_variant_mix_of_ranks():
    ret = np.array([[1.0, 2.0], [3.0, 0.0]])              # centered ranks -1/6, 1/6, 1/2, -1/2
    nov = np.array([[0.0, 3.0], [2.0, 1.0]])              # -1/2, 1/2, 1/6, -1/6
    cr_r = np.array([[-1 / 6, 1 / 6], [0.5, -0.5]], np.float32)
    cr_n = np.array([[-0.5, 0.5], [1 / 6, -1 / 6]], np.float32)
    np.testing.assert_array_equal(A.mix("ns", ret, nov, 0.3), cr_n)
    np.testing.assert_array_equal(A.mix("nsr", ret, nov, 0.3), (cr_r + cr_n) / np.float32(2))
    np.testing.assert_array_equal(A.mix("nsra", ret, nov, 1.0), cr_r)
    np.testing.assert_array_equal(A.mix("nsra", ret, nov, 0.0), cr_n)
    np.testing.assert_allclose(A.mix("nsra", ret, nov, 0.5), A.mix("nsr", ret, nov, 0.3), atol=1e-7)


# ---------------------------------------------------------------- the loop
@pytest.mark.parametrize("variant", VARIANTS)
def test_smoke_run_per_variant(variant):
    cfg = ns_config(variant)
    t = Trainer(cfg, EnvObjective(cfg), SerialComm())
    s0 = t.state.strategy
    assert s0.thetas.shape[0] == 3 and not np.array_equal(s0.thetas[0], s0.thetas[1])   # members start apart
    before = s0.thetas.copy()
    t.generation()
    s1 = t.state.strategy
    m = t.history[-1]["NSMember"]
    changed = [i for i in range(3) if not np.array_equal(before[i], s1.thetas[i])]
    assert changed == [m] and s1.to_measure.tolist() == [m]
    assert s1.archive.shape == (3, 2)                    # every member's BC at generation 0
    t.run()
    s = t.state.strategy
    assert s.archive.shape == (3 + cfg.run.generations - 1, 2)      # + the updated member's BC per generation
    assert np.all(np.isfinite(s.archive)) and np.all((s.weight >= 0) & (s.weight <= 1))
    h = t.history[-1]
    for key in ("NSMember", "NSArchiveSize", "NSReturn2", "NSNovelty0", "NSWeight1"):
        assert key in h and key in t.history_keys
    assert h["EvalEpCount"] == cfg.novelty.bc_episodes             # the measured member's episodes


def test_resume_with_the_archive_is_exact(tmp_path):
    cfg = ns_config("nsra", run={"generations": 5})
    full = Trainer(cfg, EnvObjective(cfg), SerialComm())
    full.run()
    part = Trainer(ns_config("nsra", run={"generations": 2}), EnvObjective(cfg), SerialComm())
    part.run()
    path = part.save_checkpoint(tmp_path / "ck.h5")
    ck = checkpoint.load(path)
    assert digest(ck["state"]) == digest(part.state)
    assert ck["state"].strategy.archive.shape == (4, 2)
    resumed = Trainer(cfg, EnvObjective(cfg), SerialComm(), state=ck["state"], history=ck["history"])
    resumed.run()
    assert digest(resumed.state) == digest(full.state)
    np.testing.assert_array_equal(resumed.state.strategy.archive, full.state.strategy.archive)
    assert [h["NSMember"] for h in resumed.history] == [h["NSMember"] for h in full.history]


def test_nan_behaviour_fails_the_episode():
    cfg = ns_config()
    obj = EnvObjective(cfg)
    theta = obj.initial_theta(np.random.default_rng(0))
    assert obj.bc_dim == 2 and np.all(np.isfinite(obj.episode(theta, 1, 50).bc))
    obj._bc = lambda: np.array([np.nan, 0.0])
    r = obj.episode(theta, 1, 50)
    assert r.failed and r.ret == -math.inf and "behaviour characterisation" in r.reason


# ---------------------------------------------------------------- bad input at the CLI
TINY = ["--set", 'env.id="esmpi/PointMass-v0"', "--set", "noise.size=100000", "--set", "policy.hidden=[8]",
        "--set", "es.pairs_per_generation=4", "--set", "run.generations=2", "--set", 'strategy.name="novelty_es"', "-q"]


@pytest.mark.parametrize("extra, expect", [
    (["novelty.population=0"], "key 'novelty.population': Input should be greater than or equal to 1"),
    (["novelty.k=0"], "key 'novelty.k': Input should be greater than or equal to 1"),
    (["novelty.nsra_initial_weight=1.5"], "key 'novelty.nsra_initial_weight': Input should be less than or equal to 1"),
    (["novelty.variant=nsx"], "key 'novelty.variant'"),
    (['env.id="CartPole-v1"'], "strategy 'novelty_es' needs behaviour characterisations, but env 'CartPole-v1' gives none"),
    (["env.bc=none"], "env.bc = 'none', but strategy 'novelty_es' needs behaviour characterisations"),
    (['strategy.name="openai_es"', "novelty.k=3"], "key 'novelty.k' belongs to strategy 'novelty_es'"),
    (["es.eval_episodes=3"], "key 'es.eval_episodes' belongs to strategy 'openai_es' or 'ars'"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, extra, expect):
    args = list(TINY)
    for e in extra:
        args += ["--set", e]
    r = subprocess.run([sys.executable, "-m", "esmpi.run", *args, "--out", str(tmp_path / "run")], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert expect in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- the deceptive tasks
def test_point_maze_trap_and_goal():
    from esmpi.envs import make_env
    from esmpi.mazes import GOAL, TRAP_BOX

    env = make_env(tiny_config(env={"id": "esmpi/PointMaze-v0"}).env)
    assert env.max_episode_steps == 100 and env.obs_dim == 4
    u = env.gym_env.unwrapped
    env.reset(seed=0)
    ret = sum(env.step(np.array([1.0, 0.0], np.float32))[1] for _ in range(100))    # straight at the goal
    x, y = u.behaviour()
    assert TRAP_BOX[0] < x < TRAP_BOX[1] and TRAP_BOX[2] < y < TRAP_BOX[3] and 0.7 < ret < 0.9   # the trap
    env.reset(seed=0)
    ret, waypoints = 0.0, [(-1.4, 0.0), (-1.4, 1.5), (1.5, 1.5), GOAL]   # out of the mouth, around, in
    for t in range(100):
        pos = u.behaviour()
        if len(waypoints) > 1 and math.dist(pos, waypoints[0]) < 0.2:
            waypoints.pop(0)
        a = np.clip(3.0 * (np.array(waypoints[0]) - pos), -1, 1).astype(np.float32)
        ret += env.step(a)[1]
    assert math.dist(u.behaviour(), GOAL) < 0.5 and ret > 2.5


def test_humanoid_trap_has_the_authors_walls():
    from esmpi.envs import make_gym_env

    u = make_gym_env("esmpi/HumanoidTrap-v5").unwrapped
    walls = {u.model.geom(i).name: (u.model.geom_pos[i].tolist(), u.model.geom_size[i].tolist())
             for i in range(u.model.ngeom) if u.model.geom(i).name.startswith("trap_")}
    assert walls == {"trap_front": ([5.5, 0, 0], [0.1, 1.5, 2]), "trap_left": ([4, 1.5, 0], [1.5, 0.1, 2]),
                     "trap_right": ([4, -1.5, 0], [1.5, 0.1, 2])}
    assert u.observation_space.shape == (348,)            # Humanoid-v5's observation, unchanged


# ---------------------------------------------------------------- MPI: valid at any world size
@pytest.mark.mpi
@pytest.mark.parametrize("variant", VARIANTS)
def test_world_size_invariance(variant):
    from esmpi.comm import make_comm

    cfg = ns_config(variant, env={"kwargs": {"nan_prob": 0.1}}, es={"obs_stat_fraction": 0.5})
    mpi = Trainer(cfg, EnvObjective(cfg), make_comm())
    mpi.run()
    serial = Trainer(cfg, EnvObjective(cfg), SerialComm())
    serial.run()
    assert digest(mpi.state) == digest(serial.state)
    assert [h["NSMember"] for h in mpi.history] == [h["NSMember"] for h in serial.history]


def test_maze_run_and_generic_mujoco_behaviour():
    """The loop on the maze (MuJoCo BCs gathered with the returns), and any MuJoCo env's centre of
    mass as a BC when an ES run asks for one."""
    cfg = ns_config("nsra", env={"id": "esmpi/PointMaze-v0"}, run={"generations": 2}, policy={"hidden": [4]})
    t = Trainer(cfg, EnvObjective(cfg), SerialComm())
    t.run()
    s = t.state.strategy
    assert s.archive.shape == (4, 2) and np.all(np.abs(s.archive) < 3.1)      # inside the arena
    es = EnvObjective(tiny_config(env={"id": "InvertedPendulum-v5", "bc": "com_xy"}))
    r = es.episode(es.initial_theta(np.random.default_rng(0)), 3, 20)
    assert es.bc_dim == 2 and r.bc.shape == (2,) and np.all(np.isfinite(r.bc)) and not r.failed
    assert EnvObjective(tiny_config(env={"id": "InvertedPendulum-v5"})).bc_dim == 0    # 'auto' under openai_es
