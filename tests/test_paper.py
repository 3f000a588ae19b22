"""esmpi.paper: the threshold-crossing rule on synthetic histories, and the results-table generator
on a tiny run directory (one real PointMass run with checkpoints, plus synthetic progress-only runs)."""

import json
import math
import subprocess
import sys
import textwrap


from esmpi import paper


def hist(evals, steps_per_gen=1000):
    return [{"Generation": i + 1, "EvalEpRewMean": e, "TimestepsSoFar": (i + 1) * steps_per_gen,
             "TimeElapsed": float(i + 1)} for i, e in enumerate(evals)]


# ---------------------------------------------------------------------------------------------- crossing
def test_raw_crossing_is_the_first_generation_at_or_above_the_threshold():
    h = hist([0, 5, 9, 10, 3, 12])
    assert paper.first_crossing(h, 10, window=1) == 4000
    assert paper.first_crossing(h, 9, window=1) == 3000          # >=, not >
    assert paper.first_crossing(h, -1, window=1) == 1000
    assert paper.first_crossing(h, 13, window=1) is None


def test_smoothed_crossing_ignores_a_single_lucky_generation():
    h = hist([0, 0, 100, 0, 0, 40, 40, 40])
    assert paper.first_crossing(h, 50, window=1) == 3000         # the raw eval is fooled
    assert paper.first_crossing(h, 50, window=3) is None          # the 3-generation mean is not
    assert paper.first_crossing(h, 40, window=3) == 8000          # mean(40, 40, 40) at generation 8


def test_smoothed_eval_needs_a_full_window_and_skips_missing_evaluations():
    h = hist([100, 100, 100])
    s = paper.smoothed_eval(h, 5)
    assert all(math.isnan(v) for v in s)                          # fewer generations than the window
    assert paper.first_crossing(h, 0, window=5) is None
    h = hist([1, 2, 3, 4])
    h[1]["EvalEpRewMean"] = None                                  # eval_episodes = 0 in that generation
    s = paper.smoothed_eval(h, 2)
    assert math.isnan(s[0]) and math.isnan(s[1]) and math.isnan(s[2]) and s[3] == 3.5
    assert paper.first_crossing(h, 3.5, window=2) == 4000


def test_crossing_on_another_x_axis_and_the_default_window():
    h = hist([0] * 4 + [20] * 5)
    assert paper.DEFAULT_WINDOW == 5
    assert paper.first_crossing(h, 20) == 9000
    assert paper.first_crossing(h, 20, x="TimeElapsed") == 9.0


def test_paper_numbers():
    t = paper.TASKS["hopper"]
    assert (t.threshold, t.es_timesteps, t.fractions) == (3403.46, 31.6e6, (877.45, 1718.16, 2561.11))
    assert [v for _, v in paper.TASKS["halfcheetah"].thresholds()] == [-1.35, 793.55, 1589.83, 2385.79]
    assert set(paper.TASKS) == {"halfcheetah", "hopper", "walker2d", "swimmer", "invertedpendulum",
                                "inverteddoublependulum"}
    for t in paper.TASKS.values():
        assert t.fractions[0] < t.fractions[1] < t.fractions[2] < t.threshold


def test_seed_summary_counts_unreached_seeds_as_infinite():
    assert paper.summarize_seeds([1e6, 2e6, 3e6], [5e6] * 3) == "2.00M [1.00M - 3.00M] (3/3)"
    assert paper.summarize_seeds([1e6, None, 3e6], [5e6, 4e6, 5e6]) == "3.00M [1.00M - >4.00M] (2/3)"
    assert paper.summarize_seeds([1e6, None, None], [5e6, 4e6, 6e6]) == ">4.00M [1.00M - >6.00M] (1/3)"
    assert paper.summarize_seeds([None], [2e6]) == ">2.00M (1 seed)"
    assert paper.summarize_seeds([], []) == "-"


# ---------------------------------------------------------------------------------------------- generator
MAKE_RUN = textwrap.dedent("""
    import sys
    from esmpi.run import main
    sys.exit(main(["-q", "--out", sys.argv[1], "--set", 'env.id="esmpi/PointMass-v0"', "--set", "noise.size=100000",
                   "--set", "policy.hidden=[8]", "--set", "es.pairs_per_generation=4", "--set", "es.eval_episodes=2",
                   "--set", "run.generations=6", "--set", "checkpoint.every=2", "--set", "checkpoint.keep_last=1"]))
""")


def _fake_run(d, name, env_id, evals, sets=""):
    r = d / name
    r.mkdir()
    (r / "config.toml").write_text(f'[env]\nid = "{env_id}"\n[run]\nmax_timesteps = 10000\n{sets}')
    with open(r / "progress.jsonl", "w") as f:
        for row in hist(evals):
            f.write(json.dumps(row) + "\n")


def test_table_generator_on_a_tiny_run_directory(tmp_path):
    runs = tmp_path / "results" / "runs"
    runs.mkdir(parents=True)
    r = subprocess.run([sys.executable, "-c", MAKE_RUN, str(runs / "invertedpendulum-s0")], cwd=tmp_path,
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    _fake_run(runs, "swimmer-s0", "Swimmer-v5", [10, 50, 130, 130, 130, 130, 130, 130])
    _fake_run(runs, "swimmer-s1", "Swimmer-v5", [10, 20, 30, 40, 50, 60])
    _fake_run(runs, "halfcheetah-sigma0.05-s0", "HalfCheetah-v5", [0, 900, 900, 900, 900, 900],
              "[es]\nnoise_stdev = 0.05\n")
    logs = tmp_path / "results" / "logs"
    logs.mkdir()
    (logs / "walltime.jsonl").write_text(json.dumps(
        {"name": "swimmer-s0", "wall_s": 12.4, "rc": 0, "loadavg_start": [1.5, 1, 1], "loadavg_mean_sampled": 2.0,
         "loadavg_end": [2.5, 1, 1]}) + "\n")
    out = tmp_path / "docs" / "results.md"
    out.parent.mkdir()
    out.write_text("# Results\n\nhand-written intro\n\n<!-- BEGIN GENERATED -->\nold\n<!-- END GENERATED -->\n\n"
                   "## Discussion\nkept\n")
    code = paper.main([str(runs), "-o", str(out), "--figures", str(tmp_path / "docs" / "results"),
                       "--csv", str(tmp_path / "results" / "csv")])
    assert code == 0
    text = out.read_text()
    assert "hand-written intro" in text and "## Discussion\nkept" in text and "\nold\n" not in text
    assert text.count(paper.BEGIN) == 1 and text.count(paper.END) == 1
    # the main table: the paper's numbers beside ours; swimmer-s0 crossed 128.25 (5-gen mean) at 7000 steps
    line = next(l for l in text.splitlines() if l.startswith("| Swimmer-v5 | 128.25"))
    assert "1.39M" in line and ">6k" in line and "(1/2)" in line
    assert "| Hopper-v5 | 3403.46 | 31.60M | not run |" in text
    assert "| swimmer-s0 |" in text and "12 s, 1.50/2.00/2.50 (rc 0)" in text
    assert "| halfcheetah-sigma0.05-s0 | HalfCheetah-v5 | 0.05 |" in text
    assert "| invertedpendulum-s0 | esmpi/PointMass-v0 |" in text       # the real run, from its checkpoint
    assert (tmp_path / "docs" / "results" / "invertedpendulum.png").stat().st_size > 0
    assert "![invertedpendulum](results/invertedpendulum.png)" in text
    assert (tmp_path / "results" / "csv" / "swimmer-s1.csv").read_text().startswith("Generation,")
    # run again: idempotent
    assert paper.main([str(runs), "-o", str(out), "--figures", str(tmp_path / "docs" / "results")]) == 0
    assert out.read_text() == text


def test_table_generator_refuses_a_missing_directory(tmp_path):
    assert paper.main([str(tmp_path / "nope"), "-o", str(tmp_path / "r.md")]) == 2


def test_humanoid_section_reads_thresholds_per_1000_and_the_scale_prediction(tmp_path):
    _fake_run(tmp_path, "humanoid-local-s0", "Humanoid-v5", [100, 600, 1100, 1100, 1100, 1100, 1100, 1400],
              "[es]\npairs_per_generation = 40\n")
    _fake_run(tmp_path, "hopper-s0", "Hopper-v5", [900, 3500, 3500, 3500, 3500, 3500],
              "target_return = 3403.46\n")
    runs = paper.load_runs(tmp_path)
    row = lambda scen, T, steps: {"net": "cloud", "p": 1440, "variant": "as is", "scenario": scen, "T": T,
                                  "steps": steps, "E": 0.9}
    scale = {"as_is": "as is", "assumed": {"mid_mean_length": 300, "pairs": 5000},
             "calibration": {"humanoid_random_init_episode_lengths": {"mean": 26.2}},
             "rows": [row("random_init", 0.5, 250), row("mid", 1.0, 1000), row("trained", 2.0, 4000),
                      {**row("mid", 9.0, 1), "p": 18}]}
    text = paper.humanoid_section(runs, scale)
    # 5-generation mean first >= 1,000 at generation 6 (6,000 timesteps, 6 s); 2,000 never
    assert "| 1,000 | 6k | 6 | 0m06s | 6k, 0m06s | 6.0 s - 12.0 s | 3.0 s - 6.0 s |" in text, text
    assert "| 2,000 |" not in text
    assert "300-step / 26-step" in text and "10,000 episodes" in text and "80 episodes" in text
    assert "parallel efficiency 90%" in text and "spends 125x the timesteps" in text
    assert paper.humanoid_section([r for r in runs if r.name.startswith("hopper")], scale) == "(no Humanoid run)"
    # below 1,000 the readings come every 250 of return
    _fake_run(tmp_path, "humanoid-slow-s0", "Humanoid-v5", [100, 300, 600, 600, 600, 600, 600])
    slow = [r for r in paper.load_runs(tmp_path) if r.name == "humanoid-slow-s0"]
    text = paper.humanoid_section(slow, scale)
    assert "has not reached a 5-generation eval mean of 1,000" in text
    assert "| 250 | 5k | 5 |" in text and "| 500 | 6k | 6 |" in text and "| 750 |" not in text, text
    # a run that stopped at its run.target_return is done, not resumable
    hopper = next(r for r in runs if r.name == "hopper-s0")
    assert paper._status(hopper).startswith("done")
    assert "hopper-s0" not in paper.resume_commands(runs)
