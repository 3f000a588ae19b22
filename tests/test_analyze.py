"""Offline analysis (esmpi.analyze, the `esmpi` CLI, esmpi.load_policy) on real tiny runs.

The runs are made once per module, in one subprocess (esmpi.run.main installs signal handlers, so
it does not run inside pytest): three PointMass runs (two seeds of one config, one other config),
and a one-generation InvertedPendulum run for the MuJoCo paths (load_policy, video).
"""

import csv
import ctypes.util
import json
import math
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import make_runs

from esmpi import analyze, checkpoint, cli, replay, seeding
from esmpi.config import config_from_dict
from esmpi.errors import CheckpointError
from esmpi.metrics import HISTORY_KEYS
from esmpi.policy_io import load_policy, resolve_checkpoint
from esmpi.objectives.gym import EnvObjective

PM = ['env.id="esmpi/PointMass-v0"', "noise.size=100000", "policy.hidden=[8]", "es.pairs_per_generation=6",
      "es.obs_stat_fraction=1.0", "es.eval_episodes=3", "checkpoint.every=2", "run.generations=4"]
RUNS = {
    "pm_s1": PM + ["run.seed=1"],
    "pm_s2": PM + ["run.seed=2", "run.generations=5"],           # same experiment, other seed and budget
    "pm_other": PM + ["run.seed=1", "es.noise_stdev=0.05"],      # another experiment
    "pend": ['env.id="InvertedPendulum-v5"', "noise.size=100000", "policy.hidden=[8]", "es.pairs_per_generation=3",
             "es.obs_stat_fraction=1.0", "es.eval_episodes=2", "run.generations=1"],
}


def _cli(*args, env=None, timeout=120, mpi=0):
    cmd = [sys.executable, "-m", "esmpi.analyze", *map(str, args)]
    if mpi:
        cmd = [str(Path(sys.executable).parent / "mpiexec"), "-n", str(mpi), *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return make_runs(root, RUNS, timeout=180)


# ---------------------------------------------------------------------------------------------- locating
def test_run_directory_means_its_newest_periodic_checkpoint(runs, tmp_path, capsys):
    d = runs["pm_s1"]
    assert resolve_checkpoint(d) == d / "latest.h5"
    assert (d / "latest.h5").resolve() == (d / "checkpoints/gen_000004.h5").resolve()
    assert resolve_checkpoint(d, "best") == d / "checkpoints/best.h5"
    assert resolve_checkpoint(d, "gen_000002") == d / "checkpoints/gen_000002.h5"
    f = d / "checkpoints/gen_000002.h5"
    assert resolve_checkpoint(f) == f
    with pytest.raises(CheckpointError, match="no checkpoint yet"):
        resolve_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="no such run directory"):
        resolve_checkpoint(tmp_path / "missing")
    assert cli.main(["info", str(tmp_path / "missing")]) == 2
    assert "esmpi info: error: " in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- info
def test_info_summarises_the_run(runs, capsys):
    rd = analyze.load_run(runs["pm_s2"])
    s = analyze.summarize(rd)
    ck = checkpoint.load(runs["pm_s2"] / "latest.h5")
    assert s["env_id"] == "esmpi/PointMass-v0" and s["generation"] == 5 == ck["state"].generation
    assert s["timesteps"] == ck["state"].timesteps_so_far == ck["history"][-1]["TimestepsSoFar"]
    ev = [h["EvalEpRewMean"] for h in ck["history"]]
    assert s["best_eval"] == {"return": max(ev), "generation": int(np.argmax(ev)) + 1}
    assert s["last_eval"] == {"return": ev[-1], "generation": 5}
    assert s["world_size"] == 1 and s["versions"]["numpy"] == np.__version__
    assert s["config"]["run.seed"] == 2 and s["config"]["policy.hidden"] == [8]
    names = [f["name"] for f in s["checkpoint_files"]]
    assert names == ["checkpoints/best.h5", "checkpoints/gen_000002.h5", "checkpoints/gen_000004.h5",
                     "checkpoints/gen_000005.h5"]
    assert s["latest"] == "checkpoints/gen_000005.h5"
    assert set(s["time_median_s"]) == {"generation", "rollout", "comm", "update"}

    assert cli.main(["info", str(runs["pm_s2"])]) == 0
    text = capsys.readouterr().out
    for needle in ("esmpi/PointMass-v0", "5 generations", f"best {max(ev):.2f} (generation", "world size   1",
                   "rollout", "comm", "update", "gen_000005.h5", "git commit"):
        assert needle in text, needle
    assert cli.main(["info", str(runs["pm_s2"]), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["generation"] == 5


# ---------------------------------------------------------------------------------------------- export
def test_export_writes_the_history_as_csv(runs, tmp_path, capsys):
    out = tmp_path / "history.csv"
    assert cli.main(["export", str(runs["pm_s1"]), "--csv", str(out)]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {out}: 4 generations x {len(HISTORY_KEYS)} columns")
    with open(out, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == HISTORY_KEYS
    hist = checkpoint.load(runs["pm_s1"] / "latest.h5")["history"]
    assert len(rows) == 1 + len(hist) == 5
    for row, h in zip(rows[1:], hist):
        for k, v in zip(rows[0], row):
            want = float(h[k])
            assert (v == "" and math.isnan(want)) or float(v) == want, (k, v, want)  # full precision
    assert cli.main(["export", str(runs["pm_s1"])]) == 0  # default: standard output
    assert capsys.readouterr().out.splitlines()[0] == ",".join(HISTORY_KEYS)


# ---------------------------------------------------------------------------------------------- plot
def test_seeds_of_one_config_form_a_group(runs):
    rds = [analyze.load_run(runs[k]) for k in ("pm_s1", "pm_other", "pm_s2")]
    groups = analyze.group_runs(rds)
    assert [[r.label for r in g] for g in groups] == [["pm_s1", "pm_s2"], ["pm_other"]]


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_plot_overlays_runs_and_groups_seeds(runs, tmp_path):
    from matplotlib.collections import PolyCollection

    rds = [analyze.load_run(runs[k]) for k in ("pm_s1", "pm_s2", "pm_other")]
    fig = analyze.plot_runs(rds)
    ret_axes, time_ax = fig.axes[:3], fig.axes[3]
    assert [ax.get_xlabel() for ax in ret_axes] == ["timesteps", "wall time [s]", "generation"]
    for ax in ret_axes:
        lines = ax.get_lines()
        # 2 groups x (EvalEpRewMean solid + EpRewMean dashed)
        assert len(lines) == 4
        assert sorted(line.get_linestyle() for line in lines) == ["-", "-", "--", "--"]
        # one interquartile band, for the two-seed group only
        assert sum(isinstance(c, PolyCollection) for c in ax.collections) == 1
    gen_ax = ret_axes[2]
    median = [line for line in gen_ax.get_lines() if line.get_label().startswith("es.noise_stdev=0.02")][0]
    s1, s2 = (np.array([h["EvalEpRewMean"] for h in r.history]) for r in rds[:2])
    assert np.allclose(median.get_ydata(), np.median([s1[:4], s2[:4]], axis=0))  # common x range: 4 gens
    assert len(time_ax.patches) == 3 * 4  # stacked bars: 3 runs x (rollout, comm, update, other)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["es.noise_stdev=0.02 (median of 2 seeds, IQR)", "pm_other"]

    out = tmp_path / "curves.png"
    assert cli.main(["plot", *(str(runs[k]) for k in ("pm_s1", "pm_s2", "pm_other")), "-o", str(out),
                     "--dpi", "50"]) == 0
    assert _png_size(out) == (640, 420)  # figsize (12.8, 8.4) inches at 50 dpi
    assert out.stat().st_size > 10_000

    one = analyze.plot_runs([rds[0]], x="generation")
    assert len(one.axes) == 2 and len(one.axes[0].get_lines()) == 2
    assert len(one.axes[1].collections) == 4  # stacked areas per generation


# ---------------------------------------------------------------------------------------------- policy
def _objective_for(path):
    ck = checkpoint.load(path)
    cfg = config_from_dict(json.loads(ck["config_json"]))
    obj = EnvObjective(cfg)
    obj.set_obs_norm(*ck["state"].obs.mean_std(cfg.es.obs_std_floor))
    return ck, obj


def _gym_episode(pi, seed):
    env = pi.make_env()
    obs, _ = env.reset(seed=seed)
    ret, t = 0.0, 0
    while True:
        obs, r, terminated, truncated, _ = env.step(pi(obs))
        ret += r
        t += 1
        if terminated or truncated:
            env.close()
            return ret, t


@pytest.mark.parametrize("name", ["pm_s1", "pend"])
def test_load_policy_reproduces_an_esmpi_episode_exactly(runs, name):
    import esmpi

    pi = esmpi.load_policy(runs[name])
    assert pi.path == runs[name] / "latest.h5"
    assert not np.allclose(pi.obs_std, 1.0)  # the saved normalisation is really in use
    ck, obj = _objective_for(pi.path)
    for seed in (11, 12345):
        r = obj.episode(ck["state"].theta, seed, obj.max_episode_steps)
        assert (r.ret, r.length) == _gym_episode(pi, seed)
    obj.close()
    with pytest.raises(ValueError, match="NaN or inf"):
        pi(np.full(pi.spec.obs_dim, np.nan))


def test_checkpoint_policy_replays_the_next_generations_evaluation(runs):
    """gen_000002.h5 holds the theta and normaliser that generation 3 evaluated (its history row
    3): load_policy with the trainer's evaluation seeds gives exactly that EvalEpRewMean."""
    d = runs["pm_s1"]
    pi = load_policy(d, checkpoint="gen_000002")
    row = checkpoint.load(d / "latest.h5")["history"][2]
    assert row["Generation"] == 3
    rets = [_gym_episode(pi, seeding.episode_seed(1, seeding.EVAL, 2, e))[0] for e in range(3)]
    assert float(np.mean(rets)) == row["EvalEpRewMean"]


# ---------------------------------------------------------------------------------------------- eval
def test_eval_uses_saved_policy_and_per_episode_seeds(runs, capsys):
    rd = analyze.load_run(runs["pm_s1"])
    res = replay.evaluate(rd, episodes=5, seed=7)
    ck, obj = _objective_for(rd.checkpoint)
    want = [obj.episode(ck["state"].theta, replay.episode_seed(7, e), obj.max_episode_steps).ret for e in range(5)]
    assert res["returns"] == want
    assert res["return_mean"] == float(np.mean(want)) and res["return_min"] == min(want)
    assert cli.main(["eval", str(runs["pm_s1"]), "--episodes", "5", "--seed", "7"]) == 0
    out = capsys.readouterr().out
    assert f"mean {np.mean(want):.3f}" in out and "5 episodes" in out


def test_eval_under_mpi_does_not_depend_on_the_number_of_ranks(runs):
    if not (Path(sys.executable).parent / "mpiexec").exists():
        pytest.skip("no mpiexec next to the interpreter")
    serial = replay.evaluate(analyze.load_run(runs["pm_s1"]), episodes=5, seed=3)
    r = _cli("eval", runs["pm_s1"], "--episodes", 5, "--seed", 3, "--json", mpi=2)
    assert r.returncode == 0, r.stderr
    par = json.loads(r.stdout)  # one JSON document: only rank 0 printed
    assert par["ranks"] == 2
    assert par["returns"] == serial["returns"] and par["lengths"] == serial["lengths"]


# ---------------------------------------------------------------------------------------------- video
def _gif_frames(path: Path) -> tuple[int, int, tuple]:
    from PIL import Image

    with Image.open(path) as im:
        total = 0
        for i in range(im.n_frames):
            im.seek(i)
            total += im.info["duration"]
        return im.n_frames, total, im.size


@pytest.mark.ci_required
def test_video_renders_the_requested_number_of_frames(runs, tmp_path):
    out = tmp_path / "pend.gif"
    r = _cli("video", runs["pend"], "-o", out, "--frames", 12, "--width", 64, "--height", 48)
    if r.returncode == 2 and "cannot render headless" in r.stderr:
        pytest.skip("no headless OpenGL backend on this machine (see docs/analysis.md):\n" + r.stderr)
    assert r.returncode == 0, r.stderr
    assert "wrote" in r.stdout and "12 frames at 25.0 fps" in r.stdout
    n, total_ms, size = _gif_frames(out)
    # Pillow merges identical consecutive frames and adds up their delays: count by duration
    assert size == (64, 48) and 1 < n <= 12 and total_ms == 12 * 40


def test_video_names_the_missing_backend_packages(runs, tmp_path):
    if ctypes.util.find_library("OSMesa"):
        pytest.skip("libOSMesa is installed here, so the missing-backend path cannot be shown with osmesa")
    env = dict(os.environ, MUJOCO_GL="osmesa", PYOPENGL_PLATFORM="osmesa")
    r = _cli("video", runs["pend"], "-o", tmp_path / "x.gif", "--frames", 2, env=env)
    assert r.returncode == 2
    assert "apt-get install -y libosmesa6" in r.stderr and "MUJOCO_GL=osmesa PYOPENGL_PLATFORM=osmesa" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "x.gif").exists()


@pytest.mark.ci_required
def test_video_mp4_needs_imageio_ffmpeg(runs, tmp_path, monkeypatch):
    out = tmp_path / "pend.mp4"
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        monkeypatch.setenv("MUJOCO_GL", "egl")  # restored afterwards; the check comes before any rendering
        monkeypatch.setenv("PYOPENGL_PLATFORM", "egl")
        with pytest.raises(replay.RenderError, match=r"\.gif instead, or run: pip install imageio-ffmpeg"):
            replay.render_video(analyze.load_run(runs["pend"]), out, frames=3)
        return
    r = _cli("video", runs["pend"], "-o", out, "--frames", 6, "--width", 64, "--height", 48)
    if r.returncode == 2 and "cannot render headless" in r.stderr:
        pytest.skip("no headless OpenGL backend on this machine:\n" + r.stderr)
    assert r.returncode == 0, r.stderr
    import imageio.v2 as iio

    with iio.get_reader(out) as rd:
        assert rd.count_frames() == 6


def test_video_refuses_envs_without_frames_and_unknown_formats(runs, tmp_path, monkeypatch):
    with pytest.raises(replay.RenderError, match="use .gif or .mp4"):
        replay.render_video(analyze.load_run(runs["pend"]), tmp_path / "x.avi")
    monkeypatch.setattr(replay, "probe_render_backend", lambda backend=None: None)  # keep OpenGL out of pytest
    with pytest.raises(replay.RenderError, match="'esmpi/PointMass-v0' cannot render frames"):
        replay.render_video(analyze.load_run(runs["pm_s1"]), tmp_path / "x.gif", frames=2)
    assert not (tmp_path / "x.gif").exists()


# ---------------------------------------------------------------------------------------------- entry points
def test_console_script_and_module_share_the_subcommands(capsys):
    from importlib.metadata import entry_points

    (ep,) = [e for e in entry_points(group="console_scripts") if e.name == "esmpi"]
    assert ep.value == "esmpi.cli:main"
    with pytest.raises(SystemExit) as ex:
        cli.main(["--help"])
    assert ex.value.code == 0
    out = capsys.readouterr().out
    for sub in ("info", "plot", "export", "eval", "video"):
        assert sub in out
    # `python -m esmpi.analyze` runs cli.main: exercised by the eval (mpiexec) and video tests
    assert "cli import main" in Path(analyze.__file__).read_text()
