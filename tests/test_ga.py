"""The Deep GA and random search: selection and elitism on hand-made fitness tables, genomes rebuilt
bitwise equal to the parent cache, random search == the GA with T = 0, resume equality, world-size
invariance (``pytest.mark.mpi``), a PointMass smoke run, and a small learning test (``slow``)."""

import math

import numpy as np
import pytest

from esmpi import candidates as C
from esmpi import checkpoint, seeding
from esmpi.comm import SerialComm, make_comm
from esmpi.config import config_from_dict
from esmpi.evaluate import Evaluator
from esmpi.noise import NoiseTable
from esmpi.objectives.gym import EnvObjective
from esmpi.state import digest
from esmpi.strategies import Context, make
from esmpi.strategies.genome import ParentCache, theta_from_genome
from esmpi.train import Trainer


def ga_config(run=None, **ga):
    g = {"population": 12, "truncation": 4, "sigma": 0.05, "validation_top": 3, "validation_episodes": 2,
         "test_episodes": 3}
    g.update(ga)
    g = {k: v for k, v in g.items() if v is not None}     # None: leave the key out
    tree = {"strategy": {"name": "ga"}, "run": {"seed": 3, "generations": 6, **(run or {})},
            "env": {"id": "esmpi/PointMass-v0"}, "policy": {"hidden": [8]}, "es": {"obs_stat_fraction": 0.5},
            "noise": {"size": 50_000, "seed": 7}, "checks": {"replica_check_every": 2}, "ga": g}
    return config_from_dict(tree, "<ga test>")


def train(cfg, comm=None, **kw):
    t = Trainer(cfg, EnvObjective(cfg), comm or SerialComm(), **kw)
    t.run()
    return t


def same_evals(a, b):
    """The two runs logged the same test returns (NaN in generation 0: no elite yet)."""
    col = lambda t: np.array([h["EvalEpRewMean"] for h in t.history])
    return np.array_equal(col(a), col(b), equal_nan=True)


# ---------------------------------------------------------------- selection and elitism, by hand
D = 3
NOISE = NoiseTable(1_000, seed=1)


def fresh(i):
    return np.full(D, float(i), np.float32)     # init id i -> (i, i, i): easy to recognise


def unit_ga(**ga):
    cfg = ga_config(**{"population": 6, "truncation": 3, "validation_top": 3, "validation_episodes": 2, **ga})
    strat = make(cfg, Context(run_seed=5, d=D, noise_size=NOISE.size))
    strat.attach(NOISE, fresh=fresh)
    return strat


def gathered(table, returns):
    """The Round the loop would hand over: ``returns`` per candidate row (NaN = a failed episode)."""
    r = np.asarray(returns, np.float64)
    rows = np.stack([table["index"], np.where(np.isnan(r), -np.inf, r), np.ones(r.size), np.isnan(r)], axis=1)
    return C.Round(table, C.Results.from_rows(rows, np.zeros((0, 2)), 0, 0))


def test_generation_0_selection_and_elitism_by_hand():
    ga = unit_ga()
    s = ga.init(np.zeros(D, np.float32))
    t0 = ga.ask(s, 0, 0, [])
    assert list(t0["base"]) == [-1] * 6 and list(t0["init"]) == [0, 1, 2, 3, 4, 5] and (t0["kind"] == C.TRAIN).all()
    # fitness: children 1 and 2 tie (index breaks it), 3 and 5 failed (rank last)
    r0 = gathered(t0, [1.0, 5.0, 5.0, np.nan, 3.0, np.nan])
    t1 = ga.ask(s, 0, 1, [r0])
    assert (t1["kind"] == C.VALIDATE).all() and list(t1["init"]) == [1, 1, 2, 2, 4, 4]      # top k = 3
    assert [tuple(a[:4]) for a in t1["addr"]] == [(seeding.GA_VALIDATE, 0, i, e) for i in (1, 2, 4) for e in (0, 1)]
    # validation: 1 -> mean 3, 2 -> mean 3 (tie: the better-trained 1 wins), 4 -> a failed episode: -inf
    r1 = gathered(t1, [2.0, 4.0, 3.0, 3.0, 10.0, np.nan])
    assert ga.ask(s, 0, 2, [r0, r1]) is None
    new, stats = ga.tell(s, 0, [r0, r1], NOISE)
    assert list(new.elite) == [1] and np.array_equal(new.theta, fresh(1))
    assert [list(g) for g in new.genomes()] == [[1], [2], [4]]          # [elite] + children by fitness
    assert new.elite_validation == 3.0 and stats["GAEliteNew"] == 1 and stats["GAEliteValidation"] == 3.0


def _generation_1(ga, validation):
    s = ga.init(np.zeros(D, np.float32))
    s = type(s)(fresh(1), np.array([1]), np.array([1, 2, 4]), np.array([1, 1, 1]), 3.0)
    t0 = ga.ask(s, 1, 0, [])
    parent = seeding.rng(5, seeding.GA_PARENT, 1).integers(0, 3, size=5)
    offset = seeding.rng(5, seeding.GA_MUTATION, 1).integers(0, NOISE.size - D + 1, size=5)
    train_rows, test = t0[t0["kind"] == C.TRAIN], t0[t0["kind"] == C.EVAL]
    assert train_rows.size == 5 and list(train_rows["base"]) == list(parent)                      # N - 1 children
    assert list(train_rows["offset"]) == list(offset)
    # the current elite's test episodes: parent 0, unmutated (0 of them when test_episodes = 0)
    assert test.size == ga.cfg.ga.test_episodes and (test["base"] == 0).all() and (test["offset"] == -1).all()
    r0 = gathered(t0, [0.0, 7.0, 7.0, 2.0, -1.0] + [0.0] * test.size)
    t1 = ga.ask(s, 1, 1, [r0])
    # the previous elite (parent 0, unmutated; addressed as individual N - 1) and the top k - 1 = 2 children
    assert list(t1["base"][::2]) == [0, parent[1], parent[2]] and list(t1["offset"][::2]) == [-1, offset[1], offset[2]]
    assert [a[2] for a in t1["addr"][::2]] == [5, 1, 2]
    rounds = [r0, gathered(t1, validation)]
    return s, parent, offset, rounds


def test_a_tie_keeps_the_previous_elite_and_it_stays_parent_0():
    ga = unit_ga(test_episodes=0)
    s, parent, offset, rounds = _generation_1(ga, [4.0, 4.0, 4.0, 4.0, 1.0, 1.0])
    assert ga.ask(s, 1, 2, rounds) is None
    new, stats = ga.tell(s, 1, rounds, NOISE)
    assert list(new.elite) == [1] and new.theta is s.theta and stats["GAEliteNew"] == 0
    parents = [[1], [2], [4]]
    assert [list(g) for g in new.genomes()] == [[1], parents[parent[1]] + [offset[1]], parents[parent[2]] + [offset[2]]]


def test_a_better_child_becomes_the_elite_with_its_rebuilt_theta():
    ga = unit_ga()
    s, parent, offset, rounds = _generation_1(ga, [4.0, 4.0, 4.0, 4.0, 9.0, 9.0])
    new, _ = ga.tell(s, 1, rounds, NOISE)
    parents = [[1], [2], [4]]
    child = lambda i: parents[parent[i]] + [offset[i]]
    assert list(new.elite) == child(2)
    # fitness order 1, 2, 3, 0, 4 (1 and 2 tie at 7: index order); the elite first, then without it
    assert [list(g) for g in new.genomes()] == [child(2), child(1), child(3)]
    want = fresh(parents[parent[2]][0]) + np.float32(0.05) * NOISE.get(offset[2], D)
    assert np.array_equal(new.theta, want)
    assert np.array_equal(new.theta, theta_from_genome(new.elite, fresh, NOISE, 0.05))


def test_validation_means_are_exact_and_failures_rank_last():
    from esmpi.strategies.ga import order_by_fitness, validation_means
    r = np.array([0.1, 0.2, 0.3, 1e16, 1.0, -1e16])
    m = validation_means(r, np.zeros(6, bool), 3)
    assert m[0] == math.fsum([0.1, 0.2, 0.3]) / 3 and m[1] == 1.0 / 3
    f = np.array([2.0, np.nan, 2.0, -np.inf, 5.0])
    assert list(order_by_fitness(f, np.array([0, 0, 0, 0, 1], bool))) == [0, 2, 1, 3, 4]


# ---------------------------------------------------------------- genomes and the parent cache
def test_rebuilding_from_the_genome_alone_gives_the_cached_bits():
    t = train(ga_config())
    s, ga = t.state.strategy, t.strategy
    cache = ga.bases(s)
    assert cache.shape[0] == 4 and ga.cache.rebuilt == 4           # only generation 0's fresh parents were rebuilt
    for g, row in zip(s.genomes(), cache):
        assert np.array_equal(theta_from_genome(g, ga.fresh, t.noise, 0.05), row)
    assert np.array_equal(theta_from_genome(s.elite, ga.fresh, t.noise, 0.05), t.state.theta)
    assert np.array_equal(cache[0], t.state.theta)                  # parent 0 is the elite
    # a child materialised by the evaluator (one axpy from its cached parent) == its genome rebuilt
    kids = ga.children(s, t.state.generation)
    ev = Evaluator(t.objective, t.noise, 3, 0)
    rows = ga.ask(s, t.state.generation, 0, [])
    for i in range(3):
        genome = np.append(s.genomes()[kids["base"][i]], kids["offset"][i])
        assert np.array_equal(ev.materialize(rows[i], cache), theta_from_genome(genome, ga.fresh, t.noise, 0.05))


def test_the_in_place_cache_update_survives_permutations_copies_and_rebuilds():
    rng = np.random.default_rng(0)
    d, T = 7, 5
    cache = ParentCache(T, d, NOISE, lambda i: np.full(d, i, np.float32), 0.1,
                        lambda n, dt: (np.empty(n, dt), True), lambda: None)
    genomes = [np.array([i], np.int64) for i in range(T)]
    for step in range(40):
        rows = cache.rows(genomes)
        for g, row in zip(genomes, rows):
            assert np.array_equal(theta_from_genome(g, cache.fresh, NOISE, 0.1), row), step
        nxt = []
        perm = rng.permutation(T)        # a permutation of sources makes cycles: the scratch row is needed
        for i in range(T):
            kind = rng.choice(["child", "copy", "fresh"], p=[0.7, 0.2, 0.1])
            src = genomes[perm[i] if step % 2 else rng.integers(T)]
            if kind == "child":
                nxt.append(np.append(src, rng.integers(0, NOISE.size - d)))
            elif kind == "copy":
                nxt.append(src.copy())
            else:
                nxt.append(np.array([100 + step * T + i], np.int64))
        genomes = nxt


def test_a_resume_rebuilds_shared_ancestry_once():
    d = 5
    g = lambda *x: np.array(x, np.int64)
    genomes = [g(1, 10, 20, 30), g(1, 10, 20, 31), g(1, 10, 20), g(1, 10, 21, 40), g(2, 50), g(1, 10, 20, 30), g(1, 10, 20)]
    cache = ParentCache(7, d, NOISE, lambda i: np.full(d, i, np.float32), 0.1,
                        lambda n, dt: (np.empty(n, dt), True), lambda: None)
    rows = cache.rows(genomes)
    for genome, row in zip(genomes, rows):
        assert np.array_equal(theta_from_genome(genome, cache.fresh, NOISE, 0.1), row)
    # the trie's edges: 10, 20, 30, 31, 21, 40, 50 (duplicates and prefixes are copies), not 16 axpys
    assert cache.axpys == 7 and cache.rebuilt == 7


def test_the_checkpoint_holds_genomes_and_the_elite_and_info_reports_the_ratio(tmp_path):
    from esmpi.analyze import format_info, load_run, summarize
    t = train(ga_config())
    p = t.save_checkpoint(tmp_path / "c.h5")
    ck = checkpoint.load(p)
    assert ck["attrs"]["strategy"] == "ga" and digest(ck["state"]) == digest(t.state)
    s = summarize(load_run(p))
    e = s["encoding"]
    assert e["elite_genome_bytes"] == 8 * t.state.strategy.elite.size
    assert e["elite_param_bytes"] == 4 * t.objective.num_params and e["ratio"] == e["elite_param_bytes"] / e["elite_genome_bytes"]
    assert "x compact" in format_info(s)
    import esmpi
    pi = esmpi.load_policy(p)
    assert np.array_equal(pi.theta, t.state.theta)


def test_the_test_return_measures_the_state_the_generation_started_from(tmp_path):
    t = train(ga_config(run={"generations": 8}), run_dir=tmp_path)
    ev = [h["EvalEpRewMean"] for h in t.history]
    assert np.isnan(ev[0]) and t.history[0]["EvalEpCount"] == 0 and np.isfinite(ev[1:]).all()   # no elite yet in generation 0
    best = checkpoint.load(tmp_path / "checkpoints" / "best.h5")
    i = int(np.nanargmax(ev))
    assert best["state"].generation == i              # row i tested the elite of the state after i generations
    # replaying best.h5's theta with its own observation normalisation on the test's episode seeds
    # gives the logged test return exactly: the score and the deployed policy are the same function
    st, obj = best["state"], EnvObjective(t.cfg)
    obj.set_obs_norm(*st.obs.mean_std(t.cfg.es.obs_std_floor))
    eval_episode = getattr(obj, "eval_episode", None) or (lambda th, sd, n: obj.episode(th, sd, n, False, None))
    rets = [eval_episode(st.theta, seeding.episode_seed(3, seeding.EVAL, i, e), obj.max_episode_steps).ret
            for e in range(3)]
    assert np.mean(rets) == ev[i]


# ---------------------------------------------------------------- runs
def test_random_search_is_the_ga_with_no_parents():
    rs = train(ga_config(mode="random_search", truncation=None))
    t0 = train(ga_config(truncation=0))
    assert digest(rs.state) == digest(t0.state)
    assert same_evals(rs, t0)
    s = rs.state.strategy
    assert s.parents.size == 0 and s.elite.size == 1 and rs.strategy.cache is None
    # every generation's children are fresh initialisations (init ids g N + i), never mutations
    rows = rs.strategy.ask(s, 6, 0, [])
    assert (rows["base"] == -1).all() and (rows["offset"] == -1).all() and rows["init"][0] == 6 * 12


def test_pointmass_smoke_run():
    t = train(ga_config(run={"generations": 5}))
    h = t.history[-1]
    assert t.state.generation == 5 and h["EvalEpCount"] == 3 and t.state.obs.count > 1e-2
    # N - 1 = 11 children + k V = 6 validation episodes per generation count as training; 12 + 6 in generation 0
    assert [x["EpisodesThisIter"] for x in t.history] == [18] + [17] * 4


def test_failed_episodes_rank_last_and_never_poison_the_state(capfd):
    tree = ga_config().to_dict()
    tree["env"]["kwargs"] = {"nan_prob": 0.3}
    cfg = config_from_dict(tree)
    t = train(cfg)
    assert sum(h["EpFailures"] for h in t.history) > 0 and np.all(np.isfinite(t.state.theta))
    assert "failed: non-finite reward" in capfd.readouterr().err


def test_resume_equality_k_plus_k_is_2k(tmp_path):
    full = train(ga_config(run={"generations": 6}))
    half = train(ga_config(run={"generations": 3}))
    ck = checkpoint.load(half.save_checkpoint(tmp_path / "c.h5"))
    cont = train(ga_config(run={"generations": 6}), state=ck["state"], history=ck["history"])
    assert cont.strategy.cache.rebuilt == 4            # on resume the 4 parents are rebuilt from their genomes, then axpys
    assert digest(cont.state) == digest(full.state)
    assert same_evals(cont, full)


def test_target_return_stops_on_the_elites_test_return():
    t = train(ga_config(run={"generations": 50, "target_return": -60.0, "target_window": 1}))
    assert t.history[-1]["EvalEpRewMean"] >= -60 and t.state.generation < 50


# ---------------------------------------------------------------- MPI
@pytest.mark.mpi
@pytest.mark.parametrize("mode", ["ga", "random_search"])
def test_world_size_invariance_and_resume_at_another_size(mode, tmp_path_factory):
    comm = make_comm()
    over = {"mode": mode, "truncation": None} if mode == "random_search" else {}
    cfg = ga_config(run={"generations": 5}, **over)
    mpi, serial = train(cfg, comm), train(cfg)
    assert digest(mpi.state) == digest(serial.state)
    assert same_evals(mpi, serial)
    # 3 generations under MPI, checkpoint, 2 more alone == 5 alone
    half = train(ga_config(run={"generations": 3}, **over), comm)
    path = comm.bcast_obj(str(tmp_path_factory.mktemp("ga")) if comm.rank == 0 else None)
    if comm.rank == 0:
        half.save_checkpoint(f"{path}/c.h5")
    comm.barrier()
    ck = checkpoint.load(f"{path}/c.h5")
    cont = train(cfg, state=ck["state"], history=ck["history"])
    assert digest(cont.state) == digest(serial.state)


@pytest.mark.mpi(min_size=2)
def test_replica_check_sees_one_changed_genome_offset():
    from esmpi.errors import ReplicaMismatch
    comm = make_comm()
    t = train(ga_config(run={"generations": 2}), comm)
    t.check_replicas()
    if comm.rank == 1:
        t.state.strategy.parents[-1] += 1            # one offset of one parent's genome, on one rank
    with pytest.raises(ReplicaMismatch, match=r"ranks \[1\] hold state"):
        t.check_replicas()


# ---------------------------------------------------------------- learning
@pytest.mark.slow
def test_ga_learns_pointmass():
    # untrained, the point drifts off (the first elite, the best of 40 random inits, tests at about
    # -100); reaching the target within the 50 steps scores about -20. Seeds 3, 4, 5: first elite
    # -103, -97, -108; mean of the last 5 tests -23, -28, -27 (64k timesteps, ~10 s)
    cfg = ga_config(run={"generations": 25}, population=40, truncation=8, sigma=0.1, validation_top=4,
                    validation_episodes=3, test_episodes=5)
    t = train(cfg)
    first, last = t.history[1]["EvalEpRewMean"], np.mean([h["EvalEpRewMean"] for h in t.history[-5:]])
    assert last > first + 30 and last > -60, (first, last)


# ---------------------------------------------------------------- bad input, at the command line
def _run_cli(args, cwd):
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-m", "esmpi.run", *args], cwd=cwd, check=False, capture_output=True, text=True,
                          timeout=120)


GA_JOB = '[strategy]\nname = "ga"\n[env]\nid = "esmpi/PointMass-v0"\n[policy]\nhidden = [8]\n[noise]\nsize = 100000\n'


@pytest.mark.parametrize("toml, expect", [
    ('[ga]\npopulation = 10\ntruncation = 11\n', "ga.truncation = 11 is larger than ga.population = 10"),
    ('[ga]\ntruncation = -1\n', "key 'ga.truncation': Input should be greater than or equal to 0"),
    ('[ga]\npopulation = 1\ntruncation = 1\nvalidation_top = 2\n', "key 'ga.population': Input should be greater than or equal to 2"),
    ('[ga]\nsigma = 0.0\n', "key 'ga.sigma': Input should be greater than 0"),
    ('[ga]\npopulation = 10\ntruncation = 5\nvalidation_top = 11\n', "ga.validation_top = 11 is larger than ga.population = 10"),
    ('[ga]\nvalidation_episodes = 0\n', "key 'ga.validation_episodes': Input should be greater than or equal to 1"),
    ('[ga]\nmode = "random_search"\ntruncation = 5\n', "ga.truncation = 5 has no meaning under ga.mode = 'random_search'"),
    ('[es]\nnoise_stdev = 0.1\n', "key 'es.noise_stdev' belongs to strategy 'openai_es' or 'ars' or 'novelty_es', but strategy.name = 'ga'"),
    ('[optimizer]\nstepsize = 0.1\n', "key 'optimizer.stepsize' belongs to strategy 'openai_es' or 'novelty_es', but strategy.name = 'ga'"),
    ("ES", "key 'ga.population' belongs to strategy 'ga', but strategy.name = 'openai_es'"),
])
def test_bad_ga_input_is_one_line_exit_2_nothing_written(tmp_path, toml, expect):
    text = '[env]\nid = "esmpi/PointMass-v0"\n[ga]\npopulation = 10\n' if toml == "ES" else GA_JOB + toml
    job = tmp_path / "job.toml"
    job.write_text(text)
    r = _run_cli(["--config", str(job), "--out", str(tmp_path / "run")], tmp_path)
    assert r.returncode == 2, r.stderr
    line = r.stderr.strip()
    assert "\n" not in line and str(job) in line and expect in line, r.stderr
    assert not (tmp_path / "run").exists()


def test_ga_run_sigterm_resume_refused_as_es_then_info_and_eval(tmp_path):
    """A GA run as a user runs it: SIGTERM checkpoints and exits 75; resuming it as ES is refused
    (one line, exit 2, nothing touched); resuming it as itself finishes; info and eval read it."""
    import signal
    import subprocess
    import sys
    import time
    job = tmp_path / "job.toml"
    job.write_text(GA_JOB + "[run]\ngenerations = 100000\n[ga]\npopulation = 6\ntruncation = 2\nvalidation_top = 2\n"
                   "validation_episodes = 1\ntest_episodes = 1\n")
    out = tmp_path / "run"
    p = subprocess.Popen([sys.executable, "-m", "esmpi.run", "--config", str(job), "--out", str(out), "-q"],
                         cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if (out / "progress.jsonl").exists() and len((out / "progress.jsonl").read_text().splitlines()) >= 2:
            break
        time.sleep(0.1)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 75, err
    n = len((out / "progress.jsonl").read_text().splitlines())
    assert checkpoint.load(out / "latest.h5")["state"].generation == n
    before = {q: q.stat().st_mtime_ns for q in out.rglob("*")}
    r = _run_cli(["--resume", str(out), "--set", "strategy.name=openai_es"], tmp_path)
    assert r.returncode == 2 and "\n" not in r.stderr.strip(), r.stderr
    assert f"gen_{n:06d}.h5" in r.stderr and "key 'ga.mode' belongs to strategy 'ga'" in r.stderr, r.stderr
    assert {q: q.stat().st_mtime_ns for q in out.rglob("*")} == before
    r = _run_cli(["--resume", str(out), "--set", f"run.generations={n + 1}", "-q"], tmp_path)
    assert r.returncode == 0, r.stderr
    esmpi = [sys.executable, "-m", "esmpi.analyze"]
    info = subprocess.run([*esmpi, "info", str(out)], check=False, capture_output=True, text=True, timeout=120)
    assert info.returncode == 0 and "x compact" in info.stdout and f"{n + 1} generations" in info.stdout, info.stderr
    ev = subprocess.run([*esmpi, "eval", str(out), "--episodes", "2"], check=False, capture_output=True, text=True, timeout=120)
    assert ev.returncode == 0, ev.stderr


# ---------------------------------------------------------------- a GA run deployed: load_policy, eval, video
GA_PEND = ['strategy.name="ga"', 'env.id="InvertedPendulum-v5"', "noise.size=100000", "policy.hidden=[8]",
           "es.obs_stat_fraction=1.0", "ga.population=8", "ga.truncation=3", "ga.sigma=0.5", "ga.validation_top=2",
           "ga.validation_episodes=1", "ga.test_episodes=3", "run.seed=4", "run.generations=4", "checkpoint.every=1"]


def _gym_return(pi, seed):
    """One episode of a ``LoadedPolicy`` in a plain Gymnasium env, as a user would run it."""
    env = pi.make_env()
    obs, _ = env.reset(seed=seed)
    ret = 0.0
    while True:
        obs, r, terminated, truncated, _ = env.step(pi(obs))
        ret += r
        if terminated or truncated:
            env.close()
            return ret


def test_a_ga_elite_deploys_with_load_policy_eval_and_video(tmp_path):
    """The elite of a tiny MuJoCo GA run, read back as users read it: ``load_policy`` in a plain
    Gymnasium env on the trainer's test-episode seeds gives the history's ``EvalEpRewMean`` of that
    checkpoint exactly (best.h5 and a periodic one), ``esmpi eval`` gives what ``load_policy`` gives on
    the analysis seeds, and ``esmpi video`` writes a file."""
    import json
    import subprocess
    import sys

    import esmpi
    from esmpi import replay

    out = tmp_path / "run"
    r = _run_cli(["-q", "--out", str(out), *[a for s in GA_PEND for a in ("--set", s)]], tmp_path)
    assert r.returncode == 0, r.stderr
    history = checkpoint.load(out / "latest.h5")["history"]
    for name in ("best", "gen_000002"):
        pi = esmpi.load_policy(out, checkpoint=name)
        g = pi.generation                          # history row g tested the state saved after g generations
        assert g >= 1 and not np.allclose(pi.obs_std, 1.0)
        rets = [_gym_return(pi, seeding.episode_seed(4, seeding.EVAL, g, e)) for e in range(3)]
        assert float(np.mean(rets)) == history[g]["EvalEpRewMean"], name
    esmpi_cmd = [sys.executable, "-m", "esmpi.analyze"]
    ev = subprocess.run([*esmpi_cmd, "eval", str(out), "--checkpoint", "best", "-n", "3", "--seed", "9", "--json"],
                        capture_output=True, text=True, timeout=120)
    assert ev.returncode == 0, ev.stderr
    pi = esmpi.load_policy(out, checkpoint="best")
    assert json.loads(ev.stdout)["returns"] == [_gym_return(pi, replay.episode_seed(9, e)) for e in range(3)]
    gif = tmp_path / "elite.gif"
    v = subprocess.run([*esmpi_cmd, "video", str(out), "-o", str(gif), "--frames", "6", "--width", "64",
                        "--height", "48"], capture_output=True, text=True, timeout=120)
    if v.returncode == 2 and "cannot render headless" in v.stderr:
        pytest.skip("no headless OpenGL backend on this machine (see docs/analysis.md):\n" + v.stderr)
    assert v.returncode == 0 and "wrote" in v.stdout, v.stderr
    assert gif.stat().st_size > 0
