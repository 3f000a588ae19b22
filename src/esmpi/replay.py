"""Replaying a saved policy: evaluation episodes (the ``eval`` command) and video (``video``).

Both take a ``RunData`` from ``esmpi.runs.load_run`` and rebuild the run's env and policy from the
checkpoint's config with its saved observation normalisation.

- ``evaluate``: episodes spread over MPI ranks (episode ``e`` on rank ``e % size``), rank-count invariant
- ``prepare_render_backend`` / ``render_video``: headless MuJoCo rendering via EGL (docs/analysis.md)
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from .runs import RunData
from .errors import EsmpiError

# seeding purpose tag for `eval`/`video` episodes: outside the trainer's tags (esmpi.seeding), so
# analysis episodes never replay training or in-training evaluation episodes.
ANALYSIS_EVAL = 1000


class RenderError(EsmpiError):
    """Rendering is impossible here (no headless OpenGL backend, no MP4 writer, env cannot render)."""


# ---------------------------------------------------------------------------------------------- eval
def episode_seed(seed: int, episode: int) -> int:
    """Reset seed of analysis episode ``episode``: a function of (seed, episode) only."""
    from . import seeding

    return seeding.episode_seed(seed, ANALYSIS_EVAL, episode)


def _objective(rd: RunData):
    """The run's objective (env and policy, or Atari game and CNN) with the checkpoint's observation
    normalisation and objective state (a VBN reference batch) set."""
    from .config import config_from_dict
    from .objectives import make

    cfg = config_from_dict(rd.config, f"{rd.checkpoint} (config_json)")
    obj = make(cfg)
    if obj.num_params != rd.state.theta.size:
        raise EsmpiError(f"{rd.checkpoint}: the config's policy has {obj.num_params} parameters, theta has "
                         f"{rd.state.theta.size}: the env or policy code changed since this checkpoint was written")
    if rd.state.obs.sum.size != obj.obs_dim:
        raise EsmpiError(f"{rd.checkpoint}: observation statistics have size {rd.state.obs.sum.size} but the env "
                         f"observes {obj.obs_dim} values: the env changed since this checkpoint was written")
    if obj.obs_dim:
        obj.set_obs_norm(*rd.state.obs.mean_std(cfg.es.obs_std_floor))
    if rd.state.extra and hasattr(obj, "set_objective_state"):
        obj.set_objective_state(rd.state.extra)
    return obj


def training_eval_episodes(rd: RunData) -> int:
    """How many evaluation episodes the trainer ran per generation (es.eval_episodes; GA: ga.test_episodes)."""
    if rd.attrs.get("strategy") == "novelty_es":
        raise EsmpiError(f"{rd.checkpoint}: --training replays the evaluation episodes of theta, and a novelty_es "
                         "run evaluates its members' behaviour episodes instead; drop --training")
    if rd.attrs.get("strategy") == "ga":
        return int((rd.config.get("ga") or {}).get("test_episodes", 0))
    return int((rd.config.get("es") or {}).get("eval_episodes", 0))


def evaluate(rd: RunData, episodes: int, seed: int = 0, comm=None, training: bool = False) -> dict:
    """Run ``episodes`` deterministic episodes (no action noise, env time limit) of the saved theta
    with the saved observation normalisation. Episode ``e`` resets with ``episode_seed(seed, e)``
    and runs on rank ``e % size``; rows are allgathered, so every rank returns the same result,
    independent of the number of ranks.

    ``training=True`` replays instead the evaluation episodes the trainer itself ran on this state:
    the run's seed and the addresses ``(EVAL, generation, e)``. The state of generation G is the one
    history row G + 1 evaluated (``checkpoints/best.h5`` holds exactly such a state), so with the
    first ``training_eval_episodes`` episodes the mean equals that row's EvalEpRewMean, to the bit,
    if the checkpoint, the preprocessing and the VBN reference batch reproduce training."""
    from . import seeding
    from .comm import SerialComm

    comm = comm or SerialComm()
    if episodes < 1:
        raise EsmpiError(f"--episodes {episodes}: need at least 1")
    from . import candidates as C
    from .evaluate import Evaluator

    obj = _objective(rd)
    table = C.table(episodes)                  # the trainer's candidate table and evaluator, EVAL rows only
    table["index"] = table["slot"] = np.arange(episodes)
    table["kind"] = C.EVAL
    if training:
        seed = int((rd.config.get("run") or {}).get("seed", 0))
        C.set_addr(table, seeding.EVAL, rd.state.generation, np.arange(episodes))
    else:
        C.set_addr(table, ANALYSIS_EVAL, np.arange(episodes))
    try:
        rows, _ = Evaluator(obj, None, seed, comm.rank).run(C.mine(table, comm.rank, comm.size),
                                                           rd.state.theta.reshape(1, -1), 0, obj.max_episode_steps,
                                                           obj.max_episode_steps)
    finally:
        obj.close()
    res = C.Results.from_rows(comm.allgather_rows(rows), np.zeros((0, 2 + 2 * obj.obs_dim)),
                              getattr(obj, "bc_dim", 0), obj.obs_dim)
    failed, rets, lens = res.failed, res.returns, res.lengths
    ok = rets[~failed]

    def stat(a, fn):
        return float(fn(a)) if a.size else math.nan

    row = next((h for h in rd.history if h.get("Generation") == rd.state.generation + 1), {}) if training else {}
    return {
        "checkpoint": str(rd.checkpoint), "env_id": rd.task, "generation": rd.state.generation,
        "training_replay": bool(training), "history_eval": row.get("EvalEpRewMean"),
        "episodes": int(episodes), "seed": int(seed), "ranks": int(comm.size), "failed": int(failed.sum()),
        "return_mean": stat(ok, np.mean), "return_std": stat(ok, np.std), "return_min": stat(ok, np.min),
        "return_max": stat(ok, np.max), "length_mean": float(lens.mean()), "length_std": float(lens.std()),
        "length_min": int(lens.min()), "length_max": int(lens.max()),
        "returns": [None if f else float(r) for r, f in zip(rets, failed)], "lengths": [int(n) for n in lens],
    }


def format_eval(r: dict) -> str:
    how = "the trainer's evaluation episodes, run " if r.get("training_replay") else ""
    lines = [f"{r['env_id']}, generation {r['generation']} ({r['checkpoint']}): {r['episodes']} episodes, "
             f"{how}seed {r['seed']}, {r['ranks']} rank(s)",
             f"return  mean {r['return_mean']:.3f}  std {r['return_std']:.3f}  min {r['return_min']:.3f}  "
             f"max {r['return_max']:.3f}",
             f"length  mean {r['length_mean']:.1f}  std {r['length_std']:.1f}  min {r['length_min']}  max {r['length_max']}"]
    if r.get("training_replay"):
        h = r.get("history_eval")
        lines.append(f"history EvalEpRewMean of generation {r['generation'] + 1}: "
                     + (f"{h:.3f} ({'equal' if h == r['return_mean'] else 'DIFFERENT'})" if h is not None
                        else "not in this checkpoint's history (use --checkpoint best)"))
    if r["failed"]:
        lines.append(f"failed  {r['failed']} episode(s) (NaN/inf or an env exception; excluded from the return stats)")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- video
DEFAULT_GL = "egl"
APT = {
    "egl": ("apt-get install -y libegl1 libopengl0 libgl1-mesa-dri libegl-mesa0", "MUJOCO_GL=egl"),
    "osmesa": ("apt-get install -y libosmesa6", "MUJOCO_GL=osmesa PYOPENGL_PLATFORM=osmesa"),
}


def prepare_render_backend() -> str:
    """Choose the headless OpenGL backend before mujoco/PyOpenGL are imported: ``MUJOCO_GL=egl``
    (and ``PYOPENGL_PLATFORM=egl``) unless the user set ``MUJOCO_GL``; returns the backend name."""
    backend = os.environ.get("MUJOCO_GL", "").strip().lower()
    if not backend:
        backend = DEFAULT_GL
        os.environ["MUJOCO_GL"] = backend
    if backend in ("egl", "osmesa"):
        os.environ.setdefault("PYOPENGL_PLATFORM", backend)
    return backend


def probe_render_backend(backend: str | None = None) -> str | None:
    """Try to create a tiny offscreen OpenGL context with ``backend`` (default: ``$MUJOCO_GL``).
    Returns None if it works, else the error text."""
    backend = (backend or os.environ.get("MUJOCO_GL", "")).strip().lower()
    try:
        if backend == "egl":
            from mujoco.egl import GLContext
        elif backend == "osmesa":
            from mujoco.osmesa import GLContext
        elif backend == "glfw":
            from mujoco.glfw import GLContext
        else:
            return f"MUJOCO_GL={backend!r} is not a backend gymnasium supports (egl, osmesa, glfw)"
        ctx = GLContext(16, 16)
        ctx.make_current()
        ctx.free()
    except Exception as e:  # missing library, no display, wrong PYOPENGL_PLATFORM, ...
        return f"{type(e).__name__}: {e}".strip()
    return None


def backend_help(backend: str, error: str) -> str:
    pkgs, env = APT.get(backend, APT[DEFAULT_GL])
    lines = [f"cannot render headless: the MuJoCo OpenGL backend MUJOCO_GL={backend} does not work here ({error})."]
    if backend in APT:
        lines += ["Install it (Debian/Ubuntu, as root):", f"    {pkgs}",
                  f"and run with {env} (esmpi sets MUJOCO_GL=egl itself when it is unset)."]
    else:
        lines += ["On a machine without a display use EGL: unset MUJOCO_GL (esmpi then uses egl) and install:",
                  f"    {APT['egl'][0]}"]
    other = "osmesa" if backend == "egl" else "egl"
    lines.append(f"Alternative: {APT[other][0]} and run with {APT[other][1]}. See docs/analysis.md.")
    return "\n".join(lines)


def _check_video_output(out: Path) -> str:
    kind = out.suffix.lower().lstrip(".")
    if kind not in ("gif", "mp4"):
        raise RenderError(f"{out}: unsupported video format {out.suffix!r}; use .gif or .mp4")
    if kind == "mp4":
        try:
            import imageio_ffmpeg  # noqa: F401
        except ImportError:
            raise RenderError(f"{out}: writing MP4 needs the imageio-ffmpeg package, which is not installed; "
                              "write a .gif instead, or run: pip install imageio-ffmpeg") from None
    from .analyze import check_output_path

    check_output_path(out)
    return kind


class VideoWriter:
    """Frames (H, W, 3) uint8 to a GIF (Pillow) or an MP4 (imageio-ffmpeg) at ``fps``; ``close()`` writes.
    GIF delays are in 1/100 s, and Pillow merges identical consecutive frames (adding their delays):
    the file's total duration is frames / fps (to 10 ms), the way to count its frames."""

    def __init__(self, out: Path, kind: str, fps: float):
        self.out, self.fps, self.n = out, fps, 0
        self._writer = self._frames = None
        if kind == "mp4":
            import imageio.v2 as iio

            self._writer = iio.get_writer(out, fps=fps, codec="libx264", quality=7, macro_block_size=2)
        else:
            self._frames = []

    def append(self, img: np.ndarray) -> None:
        if self._writer is not None:
            self._writer.append_data(img)
        else:
            from PIL import Image

            self._frames.append(Image.fromarray(img).convert("P", palette=Image.Palette.ADAPTIVE))
        self.n += 1

    def discard(self) -> None:
        """After an error: close an MP4 writer, drop GIF frames (no partial GIF is written)."""
        if self._writer is not None:
            self._writer.close()
        self._writer, self._frames = None, []

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        elif self._frames:
            # each delay a whole number of 1/100 s, cumulated so the total is n / fps to 10 ms (15 fps: 70, 60, 70, ...)
            ends = [10 * round(100 * (k + 1) / self.fps) for k in range(len(self._frames))]
            delays = [b - a for a, b in zip([0] + ends[:-1], ends)]
            try:
                self._frames[0].save(self.out, save_all=True, append_images=self._frames[1:],
                                     duration=delays, loop=0, optimize=False)
            except OSError as e:
                from .analyze import write_error
                raise write_error(self.out, e) from None


def record_episodes(env, pi, writer, frames: int, stride: int, seed: int, emit,
                    max_steps: int | None = None) -> tuple[int, list[float]]:
    """Play ``pi`` in ``env`` with ``esmpi eval``'s episode seeds until ``writer`` holds ``frames``
    frames, calling ``emit()`` (append the current frame) at each reset and every ``stride``-th step.
    An episode ends where the env ends it (or at ``max_steps``), so its return equals eval's.
    Returns (episodes started, returns of the completed ones); the writer is closed, or discarded
    on any exception."""
    ep, returns = 0, []
    try:
        while writer.n < frames:
            obs, _ = env.reset(seed=episode_seed(seed, ep))
            getattr(pi, "reset", lambda: None)()        # a recurrent policy starts each episode afresh
            emit()
            t, ret = 0, 0.0
            while writer.n < frames:
                obs, r, terminated, truncated, _ = env.step(pi(obs))
                t += 1
                ret += float(r)
                if t % stride == 0:
                    emit()
                if terminated or truncated or (max_steps is not None and t >= max_steps):
                    returns.append(ret)
                    break
            ep += 1
    except BaseException:
        writer.discard()
        raise
    writer.close()
    return ep, returns


def render_video(rd: RunData, out: str | Path, frames: int = 300, width: int | None = None, height: int | None = None,
                 fps: float | None = None, seed: int = 0, allow_import=()) -> dict:
    """Render ``frames`` frames of the saved policy (deterministic, saved normalisation) to a GIF
    or MP4. Episodes follow one another (episode e resets with ``episode_seed(seed, e)``, as in
    ``evaluate``) until enough frames exist. One frame every ``stride`` env steps, stride =
    round(render_fps / fps); ``fps`` defaults to the env's real-time rate capped at 50. MuJoCo:
    ``width`` x ``height`` (default 480 x 360), call ``prepare_render_backend`` before anything
    imports mujoco; Atari runs render the ALE's own screen (``esmpi.atari.video``, no OpenGL).
    Returns dict(frames, fps, stride, episodes, completed_returns, path, backend)."""
    from .policy_io import policy_from_checkpoint

    out = Path(out)
    kind = _check_video_output(out)
    if frames < 1 or (width is not None and width < 1) or (height is not None and height < 1):
        raise RenderError("--frames, --width and --height must be >= 1")
    if rd.objective_kind == "atari":
        from .atari.video import render_atari

        return render_atari(policy_from_checkpoint(rd.ck, rd.checkpoint), out, kind, frames, width, height, fps, seed)
    width, height = width or 480, height or 360
    backend = os.environ.get("MUJOCO_GL", "")
    err = probe_render_backend(backend)  # first: with a broken MUJOCO_GL even `import mujoco` fails
    if err:
        raise RenderError(backend_help(backend, err))
    pi = policy_from_checkpoint(rd.ck, rd.checkpoint, allow_import)
    probe_env = pi.make_env()
    modes = list(probe_env.metadata.get("render_modes") or [])
    probe_env.close()
    if "rgb_array" not in modes:
        raise RenderError(f"env {pi.env_id!r} cannot render frames: its render_modes are {modes}, without 'rgb_array'")
    try:
        env = pi.make_env(render_mode="rgb_array", width=width, height=height)
    except TypeError:  # not a MuJoCo env: no width/height arguments
        env = pi.make_env(render_mode="rgb_array")
    render_fps = float(env.metadata.get("render_fps") or 30)
    target = float(fps) if fps else min(render_fps, 50.0)
    stride = max(1, round(render_fps / target))
    writer = VideoWriter(out, kind, render_fps / stride)
    try:
        ep, returns = record_episodes(env, pi, writer, frames, stride, seed, lambda: writer.append(env.render()))
    finally:
        env.close()
    return {"path": str(out), "frames": writer.n, "fps": writer.fps, "stride": stride, "episodes": ep,
            "completed_returns": returns, "backend": backend}
