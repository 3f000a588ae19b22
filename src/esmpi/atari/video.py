"""``esmpi video`` for Atari runs: the ALE's own colour screen, no OpenGL.

The policy acts on the preprocessed observation (84x84 grey, max of the last two frames, a stack
of 4) exactly as in training and ``esmpi eval``; the video shows what a player sees: the console's
RGB screen (210 x 160) after each agent step, i.e. the last of the ``frame_skip`` emulator frames
the action was repeated for. Real time is therefore ``60 / frame_skip`` agent steps per second
(15 at frame skip 4); ``--fps`` lower than that keeps every ``stride``-th step. The default size is
the native screen doubled (320 x 420), scaled with nearest-neighbour (sharp pixels).

Episodes follow one another with the seeds of ``esmpi eval`` (``replay.episode_seed(seed, e)``) and
end where the objective ends them (game over, the ALE frame cap, ``max_episode_steps``), so the
completed returns equal the ``eval`` returns of the same seed, episode for episode.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

ATARI_FPS = 60.0     # the console's frame rate (NTSC)


def render_atari(pi, out: Path, kind: str, frames: int, width: int | None, height: int | None,
                 fps: float | None, seed: int) -> dict:
    """``pi``: an ``esmpi.policy_io.LoadedAtariPolicy``. Returns the dict of ``replay.render_video``."""
    from PIL import Image

    from ..replay import VideoWriter, record_episodes

    obj = pi.objective
    env, ale = obj.env, obj.env.unwrapped.ale
    h, w = (int(x) for x in ale.getScreenDims())
    size = (width or 2 * w, height or 2 * h)
    real_time = ATARI_FPS / obj.settings.frame_skip
    stride = max(1, round(real_time / float(fps))) if fps else 1
    writer = VideoWriter(out, kind, real_time / stride)
    rgb = np.empty((h, w, 3), np.uint8)

    def emit():
        ale.getScreenRGB(rgb)
        img = rgb if size == (w, h) else np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.NEAREST))
        writer.append(img)

    ep, returns = record_episodes(env, pi, writer, frames, stride, seed, emit, obj.max_episode_steps)
    return {"path": str(out), "frames": writer.n, "fps": writer.fps, "stride": stride, "episodes": ep,
            "completed_returns": returns, "backend": "ale (no OpenGL)", "size": list(size)}
