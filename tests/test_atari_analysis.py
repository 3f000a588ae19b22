"""The analysis tools on Atari runs (issue 15): `esmpi eval/video/info/plot` and `esmpi.load_policy`
on tiny ES (Space Invaders, VBN on), Deep GA (Frostbite, VBN off) and NS-ES (Pong, RAM BCs) runs
made once per module in one subprocess (esmpi.run.main installs signal handlers)."""

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest
from helpers import make_runs

pytest.importorskip("ale_py")

from esmpi import analyze, checkpoint, replay  # noqa: E402
from esmpi.errors import CheckpointError, EsmpiError  # noqa: E402
from esmpi.policy_io import load_policy, spec_from_policy_json  # noqa: E402

TINY = ['objective.kind="atari"', "atari.frame_cap=400", "atari.ref_batch_size=8", "atari.ref_batch_prob=0.5",
        "noise.size=2000000", "checkpoint.every=1", "run.generations=2", "es.obs_stat_fraction=0.0"]
RUNS = {
    "es": TINY + ['atari.game="space_invaders"', "es.pairs_per_generation=2", "es.eval_episodes=2"],
    "ga": TINY + ['atari.game="frostbite"', "atari.vbn=false", 'strategy.name="ga"', "ga.population=3",
                  "ga.truncation=2", "ga.validation_top=2", "ga.validation_episodes=1", "ga.test_episodes=2"],
    "ns": TINY + ['atari.game="pong"', "atari.bc=true", 'strategy.name="novelty_es"', "novelty.population=2",
                  "novelty.k=2", "novelty.bc_episodes=1", "es.pairs_per_generation=1", "run.generations=1"],
}


def _cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "esmpi.analyze", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("atari_runs")
    return make_runs(root, RUNS, timeout=300)


@pytest.mark.parametrize("name", ["es", "ga"])
def test_eval_replays_the_trainers_evaluation_episodes_to_the_bit(runs, name):
    rd = analyze.load_run(runs[name], "best")        # the state a history row evaluated
    res = replay.evaluate(rd, replay.training_eval_episodes(rd), training=True)
    row = next(h for h in rd.history if h["Generation"] == rd.state.generation + 1)
    assert res["failed"] == 0 and res["episodes"] == 2
    assert res["return_mean"] == row["EvalEpRewMean"] == res["history_eval"]
    assert res["length_mean"] == row["EvalEpLenMean"]
    r = _cli("eval", runs[name], "--checkpoint", "best", "--training")
    assert r.returncode == 0 and "(equal)" in r.stdout, r.stdout + r.stderr


def test_eval_of_a_novelty_run_and_its_training_replay_refusal(runs):
    res = replay.evaluate(analyze.load_run(runs["ns"]), 1)
    assert res["failed"] == 0 and res["env_id"] == "atari-pong"
    r = _cli("eval", runs["ns"], "--training")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "drop --training" in r.stderr


@pytest.mark.parametrize("name", ["es", "ga", "ns"])
def test_load_policy_plays_the_episodes_of_eval(runs, name):
    from esmpi.policy_io import LoadedAtariPolicy

    pi = load_policy(runs[name])
    assert isinstance(pi, LoadedAtariPolicy) and pi.env_id.startswith("atari-")
    res = replay.evaluate(analyze.load_run(runs[name]), 2, seed=5)
    env = pi.make_env()
    for e in range(2):
        obs, _ = env.reset(seed=replay.episode_seed(5, e))
        ret, t, done = 0.0, 0, False
        while not done:
            obs, r, terminated, truncated, _ = env.step(pi(obs))
            ret, t = ret + r, t + 1
            done = terminated or truncated or t >= pi.max_episode_steps
        assert (ret, t) == (res["returns"][e], res["lengths"][e])
    with pytest.raises(EsmpiError, match="make_env takes no keyword arguments \\(got render_mode\\)"):
        pi.make_env(render_mode="human")          # not silently ignored


def test_video_renders_the_ale_screen_with_the_eval_episodes(runs, tmp_path):
    from PIL import Image

    out = tmp_path / "si.gif"
    r = _cli("video", runs["es"], "-o", out, "--frames", 150, "--seed", 3)
    assert r.returncode == 0, r.stderr
    with Image.open(out) as im:
        assert im.size == (320, 420)               # the 160 x 210 screen doubled
        total = 0
        for k in range(im.n_frames):               # Pillow merges identical frames, adding their delays
            im.seek(k)
            total += im.info["duration"]
    assert total == 10_000                         # 150 frames at 15 fps (60 Hz / frame skip 4): 10 s
    res = replay.evaluate(analyze.load_run(runs["es"]), 1, seed=3)
    first = float(r.stdout.split("returns of completed episodes: ")[1].split(",")[0])
    assert res["lengths"][0] < 150 and first == res["returns"][0]


def test_info_lists_the_atari_settings_and_the_vbn_reference_batch(runs):
    rd = analyze.load_run(runs["es"])
    ref = rd.state.extra["vbn_ref_batch"]
    s = analyze.summarize(rd)
    assert s["atari"]["vbn_ref_batch"]["shape"] == [8, 4, 84, 84]
    assert s["atari"]["vbn_ref_batch"]["sha256"] == hashlib.sha256(ref.tobytes()).hexdigest()
    text = analyze.format_info(s)
    assert "space_invaders, net a3c, frame skip 4, frame cap 400" in text and "VBN on" in text
    assert f"8 observations (4, 84, 84) uint8 in the state (sha256 {s['atari']['vbn_ref_batch']['sha256'][:16]}" in text
    assert "policy.hidden" not in text
    assert "vbn batch    none (VBN off)" in analyze.format_info(analyze.summarize(analyze.load_run(runs["ga"])))


def test_plot_draws_atari_runs_of_every_strategy(runs, tmp_path):
    r = _cli("plot", runs["es"], runs["ga"], runs["ns"], "-o", tmp_path / "c.png")
    assert r.returncode == 0 and "3 run(s) in 3 group(s)" in r.stdout, r.stderr
    assert (tmp_path / "c.png").stat().st_size > 10_000
    assert analyze._default_title([analyze.load_run(runs["es"])]) == "atari-space_invaders: 1 run(s)"
    bare = tmp_path / "es-no-checkpoints"          # committed results keep only config.toml + progress.jsonl
    bare.mkdir()
    for f in ("config.toml", "progress.jsonl"):
        (bare / f).write_bytes((runs["es"] / f).read_bytes())
    r = _cli("plot", bare, runs["ga"], "-o", tmp_path / "d.png", "--x", "generation")
    assert r.returncode == 0 and "2 run(s) in 2 group(s)" in r.stdout, r.stderr
    a, b = analyze.load_run(bare, history_only=True), analyze.load_run(runs["es"])
    for key in ("Generation", "EpRewMean", "EvalEpRewMean", "TimestepsSoFar", "TimeElapsed"):
        np.testing.assert_array_equal(a.column(key), b.column(key))


def test_an_atari_checkpoint_loaded_as_a_mujoco_one_is_a_one_line_error(runs, tmp_path):
    ck = checkpoint.load(runs["es"] / "latest.h5")
    with pytest.raises(CheckpointError, match="an Atari checkpoint, not a gym/MuJoCo MLP; load it with esmpi.load_policy"):
        spec_from_policy_json(json.loads(ck["attrs"]["policy_json"]))
    r = subprocess.run([sys.executable, "-m", "esmpi.run", "-q", "--out", runs["es"], "--set", "run.auto_resume=true",
                        "--set", 'env.id="Hopper-v5"', "--set", "run.generations=3"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "objective.kind = 'atari' run, the job is objective.kind = 'gym'" in r.stderr


def test_vbn_probe_counts_actions_of_perturbed_thetas_with_and_without_vbn(runs, tmp_path):
    from esmpi.atari import probe

    a = probe.probe(str(runs["es"]), k=2, n_frames=16, steps=20)
    assert a == probe.probe(str(runs["es"]), k=2, n_frames=16, steps=20)     # addressed draws: same numbers
    assert [r["vbn"] for r in a["rows"]] == [True, False] and a["rows"][0]["sigma"] == 0.02
    for r in a["rows"]:
        assert len(r["per_theta"]) == 2 and 1 <= r["frames_distinct_mean"] <= 6 and 0 <= r["play_one_action"] <= 1
        assert all(p["play_steps"] == 20 for p in r["per_theta"])
    assert "| space_invaders es: generation 2 | on | 2 | 0.02 |" in probe.format_rows(a)
    assert all(0 <= p["frames_agree"] <= 1 for r in a["rows"] for p in r["per_theta"])
    bad = tmp_path / "gym.toml"
    bad.write_text('[env]\nid = "Hopper-v5"\n')
    assert probe.main([str(bad)]) == 2


def test_report_tabulates_the_runs_and_fills_the_marked_section(runs, tmp_path):
    from esmpi.atari import report

    text = report.tables(runs["es"].parent)
    rows = [line for line in text.splitlines() if line.startswith("| es |") or line.startswith("| ga |")]
    assert len(rows) == 2 and "| OpenAI-ES | space_invaders | a3c | on | 2 pairs | 2 |" in rows[0]
    assert "| Deep GA | frostbite | a3c | off | pop 3 | 2 |" in rows[1]
    doc = tmp_path / "atari.md"
    doc.write_text(f"intro\n{report.BEGIN}\nold\n{report.END}\nafter\n")
    report.update_doc(doc, text)
    assert doc.read_text() == f"intro\n{report.BEGIN}\n{text}\n{report.END}\nafter\n"


def test_docs_atari_results_are_what_make_atari_results_writes():
    """docs/atari.md's results section against esmpi.atari.report on the committed results/atari/."""
    from pathlib import Path

    from esmpi.atari import report

    root = Path(__file__).resolve().parents[1]
    if not (root / "results/atari").is_dir():
        pytest.skip("results/atari is not in this checkout")
    doc = (root / "docs/atari.md").read_text()
    assert f"{report.BEGIN}\n{report.tables(root / 'results/atari')}\n{report.END}" in doc, \
        "docs/atari.md: the results section is stale; run make atari-results"
