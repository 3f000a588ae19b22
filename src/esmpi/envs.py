"""The only gymnasium import: make an environment from the config and describe its spaces.

``make_env(env_cfg)`` returns an ``Env`` whose ``step``/``reset`` are the *unwrapped* env's
methods (the gymnasium wrappers cost time per step and add nothing we need): the time limit is
applied by the rollout's own step counter, from ``max_episode_steps``. For Gymnasium's v5 MuJoCo
tasks ``step`` is ``esmpi.fastmujoco``'s direct step (bitwise Gymnasium's, self-checked at make time)
unless ``env.fast_step = false``; ``Env.step_path`` says which ran ("fast" or "gymnasium") and
``Env.step_note`` why not fast. The fast step's observation is a buffer the next step overwrites.

Also registers ``esmpi/PointMass-v0``, a tiny deterministic numpy env used by the fast tests
(its kwargs can inject NaN rewards or exceptions to exercise failure handling), and the deceptive
tasks of novelty search (``mazes.py``, docs/novelty.md): ``esmpi/PointMaze-v0`` and
``esmpi/HumanoidTrap-v5``; and the recurrent memory task of safe mutations (``recall.py``,
docs/robustness.md): ``esmpi/DelayedRecall-v0``. ``com_xy_reader`` gives an episode's behaviour
characterisation.
"""

from __future__ import annotations

import difflib
import sys
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from .errors import EnvError
from .policies.mlp import ActionSpec


class PointMassEnv(gym.Env):
    """Point mass in R^dim pushed towards a fixed target. obs = (position, velocity) (2*dim,),
    action in [-1, 1]^dim, reward = -|pos - target|^2 per step; terminates if |pos|_inf > 4.

    kwargs: ``nan_prob`` (episodes whose reset draw falls below it return a NaN reward at step 3),
    ``raise_prob`` (same, but ``step`` raises RuntimeError), ``slow_rank_bias`` (unused by the
    env, kept 0), ``discrete`` (2*dim discrete actions instead of a box).
    """

    metadata = {"render_modes": []}

    def __init__(self, dim: int = 2, nan_prob: float = 0.0, raise_prob: float = 0.0, discrete: bool = False):
        self.dim = dim
        self.nan_prob, self.raise_prob = nan_prob, raise_prob
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2 * dim,), np.float64)
        if discrete:
            self.action_space = gym.spaces.Discrete(2 * dim)
        else:
            self.action_space = gym.spaces.Box(-1.0, 1.0, (dim,), np.float32)
        self.discrete = discrete
        self.target = np.where(np.arange(dim) % 2 == 0, 1.0, -1.0)
        self.pos = np.zeros(dim)
        self.vel = np.zeros(dim)
        self.t = 0
        self.fault = None

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = self.np_random.uniform(-0.5, 0.5, self.dim)
        self.vel = np.zeros(self.dim)
        self.t = 0
        u = self.np_random.uniform()
        self.fault = "nan" if u < self.nan_prob else "raise" if u < self.nan_prob + self.raise_prob else None
        return np.concatenate([self.pos, self.vel]), {}

    def step(self, action):
        if self.discrete:
            a = np.zeros(self.dim)
            a[action // 2] = 1.0 if action % 2 == 0 else -1.0
        else:
            a = np.asarray(action, dtype=np.float64)
        self.vel = 0.9 * self.vel + 0.1 * a
        self.pos = self.pos + 0.1 * self.vel
        self.t += 1
        reward = -float(np.sum((self.pos - self.target) ** 2))
        if self.fault and self.t == 3:
            if self.fault == "raise":
                raise RuntimeError("PointMass: injected failure")
            reward = float("nan")
        terminated = bool(np.max(np.abs(self.pos)) > 4.0)
        return np.concatenate([self.pos, self.vel]), reward, terminated, False, {}

    def behaviour(self) -> np.ndarray:
        """(2,) float64: the first two coordinates of the position (the novelty tests' BC)."""
        return np.resize(self.pos, 2).astype(np.float64)


TEST_ENV_ID = "esmpi/PointMass-v0"
if TEST_ENV_ID not in gym.envs.registry:
    gym.register(id=TEST_ENV_ID, entry_point=PointMassEnv, max_episode_steps=50)


class PointMazeEnv(gym.Env):
    """``esmpi.mazes.PointMaze`` (a MuJoCo point mass in a U-trap maze) as a gymnasium env."""

    metadata = {"render_modes": []}

    def __init__(self, **kwargs):
        from .mazes import PointMaze

        self.maze = PointMaze(**kwargs)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float64)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.behaviour = self.maze.behaviour

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.maze.reset(self.np_random), {}

    def step(self, action):
        obs, reward = self.maze.step(action)
        return obs, reward, False, False, {}


def humanoid_trap(**kwargs) -> gym.Env:
    """Humanoid-v5 (reward, observations, termination unchanged) in the authors' U-shaped trap."""
    from gymnasium.envs.mujoco import humanoid_v5

    from .mazes import humanoid_trap_xml

    return humanoid_v5.HumanoidEnv(xml_file=humanoid_trap_xml(humanoid_v5.__file__), **kwargs)


def _register_mazes() -> None:
    from . import mazes

    for env_id, entry, steps in ((mazes.POINT_MAZE_ID, PointMazeEnv, mazes.POINT_MAZE_STEPS),
                                 (mazes.HUMANOID_TRAP_ID, humanoid_trap, 1000)):
        if env_id not in gym.envs.registry:
            gym.register(id=env_id, entry_point=entry, max_episode_steps=steps)


_register_mazes()


class DelayedRecallEnv(gym.Env):
    """``esmpi.recall.DelayedRecall`` (remember a cue over a delay) as a gymnasium env."""

    metadata = {"render_modes": []}

    def __init__(self, trials: int = 4, delay: int = 8):
        from .recall import DelayedRecall

        self.task = DelayedRecall(trials, delay)
        self.observation_space = gym.spaces.Box(0.0, 1.0, (3,), np.float64)
        self.action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.task.reset(self.np_random), {}

    def step(self, action):
        obs, reward, done = self.task.step(action)
        return obs, reward, done, False, {}


def _register_recall() -> None:
    from .recall import DELAYED_RECALL_ID, MAX_STEPS

    if DELAYED_RECALL_ID not in gym.envs.registry:
        gym.register(id=DELAYED_RECALL_ID, entry_point=DelayedRecallEnv, max_episode_steps=MAX_STEPS)


_register_recall()


def com_xy_reader(env: "Env"):
    """``() -> (2,) float64``: the (x, y) of the env's centre of mass after the latest step, or None if
    the env exposes none. An env's own ``behaviour()`` comes first; any other MuJoCo env gives the
    centre of mass of all its bodies (``data.subtree_com[0]``, as of the last step's kinematics:
    MuJoCo computes it at the start of ``mj_step``, which is where the authors' code read it too)."""
    u = env.gym_env.unwrapped
    if callable(getattr(u, "behaviour", None)):
        return u.behaviour
    data = getattr(u, "data", None)
    if data is not None and hasattr(data, "subtree_com"):
        return lambda: np.array(data.subtree_com[0, :2], np.float64)
    return None


@dataclass
class Env:
    """A made env: ``reset(seed) -> (obs, info)``, ``step(a) -> (obs, r, terminated, truncated, info)``."""

    id: str
    gym_env: gym.Env
    obs_dim: int
    action: ActionSpec
    max_episode_steps: int
    fast_step: bool = False

    def __post_init__(self):
        u = self.gym_env.unwrapped
        self.reset = u.reset
        self.step, self.step_path, self.step_note = u.step, "gymnasium", "env.fast_step = false"
        if self.fast_step:
            from .fastmujoco import TASKS, attach
            fast, why = attach(u, self.id, gym.__version__)
            if fast is None:
                self.step_note = why
                if self.id in TASKS:   # a task that could step fast but does not: say why (others are silent)
                    _note_once(f"esmpi: env {self.id}: Gymnasium's step ({why})")
            else:
                self.step, self.step_path, self.step_note = fast, "fast", ""

    def close(self):
        self.gym_env.close()


_NOTED: set = set()


def _note_once(msg: str) -> None:
    """One stderr line per distinct note per process (the fast step's fallback reason)."""
    if msg not in _NOTED:
        _NOTED.add(msg)
        print(msg, file=sys.stderr, flush=True)


_KNOWN_HARMLESS = ("compiler attribute 'settotalmass' is deprecated",)  # gymnasium's HalfCheetah XML


def _route_mujoco_warnings() -> None:
    """MuJoCo's default warning handler appends to MUJOCO_LOG.TXT in the working directory and prints
    to stderr, once per rank (1,440 lines on the paper's cluster). Drop the known-harmless asset
    deprecation and send anything else to stderr once per distinct message per process."""
    try:
        import mujoco
    except ImportError:
        return
    seen = set()

    def handler(msg):
        msg = msg.decode() if isinstance(msg, bytes) else str(msg)
        if any(k in msg for k in _KNOWN_HARMLESS) or msg in seen:
            return
        seen.add(msg)
        print(f"MuJoCo warning: {msg}", file=sys.stderr, flush=True)

    mujoco.set_mju_user_warning(handler)


# Which modules a "module:Env-vN" id may import. None: any (the id comes from the user's own config
# or command line). A set: only these; set by `--resume`, `esmpi eval/video` and ``load_policy``,
# where the id comes from a checkpoint, so that a file never decides by itself what code runs.
_IMPORTABLE: set | None = None
_IMPORT_FLAG = "--allow-import"


def restrict_imports(modules, flag: str = "--allow-import") -> None:
    """``None``: env ids may import any module; an iterable: only these (named by the user via ``flag``)."""
    global _IMPORTABLE, _IMPORT_FLAG
    _IMPORTABLE = None if modules is None else set(modules)
    _IMPORT_FLAG = flag


def _check_id(env_id: str) -> None:
    if ":" in env_id:  # "module:Env-vN" imports a module first; let gymnasium resolve it
        module = env_id.split(":", 1)[0]
        if _IMPORTABLE is not None and module not in _IMPORTABLE:
            raise EnvError(f"env.id {env_id!r} (from a checkpoint) would import the Python module {module!r}; "
                           f"esmpi imports code named in a file only when you name it: add {_IMPORT_FLAG} {module}")
        return
    if env_id not in gym.envs.registry:
        close = difflib.get_close_matches(env_id, list(gym.envs.registry), n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise EnvError(f"env.id {env_id!r}: unknown Gymnasium environment.{hint} "
                       "List them with: python -c \"import gymnasium; print(sorted(gymnasium.envs.registry))\"")


def describe_spaces(env_id: str, observation_space, action_space) -> tuple[int, ActionSpec]:
    obs = observation_space
    if not (isinstance(obs, gym.spaces.Box) and len(obs.shape) == 1):
        raise EnvError(f"env {env_id!r}: observation space {obs} is not supported; esmpi's MLP takes a flat "
                       "Box (wrap the env with gymnasium.wrappers.FlattenObservation in a registered entry point)")
    act = action_space
    if isinstance(act, gym.spaces.Discrete):
        return obs.shape[0], ActionSpec("discrete", n=int(act.n))
    if isinstance(act, gym.spaces.Box) and len(act.shape) == 1:
        if not (np.all(np.isfinite(act.low)) and np.all(np.isfinite(act.high))):
            raise EnvError(f"env {env_id!r}: action box {act} has infinite bounds; esmpi clips actions to the box "
                           "and needs finite bounds (rescale the env's actions with a wrapper)")
        return obs.shape[0], ActionSpec("box", dim=act.shape[0], low=tuple(float(x) for x in act.low),
                                        high=tuple(float(x) for x in act.high))
    raise EnvError(f"env {env_id!r}: action space {act} is not supported; use a 1-D Box or a Discrete space")


def make_gym_env(env_id: str, **kwargs) -> gym.Env:
    """A plain (wrapped) gymnasium env, e.g. with ``render_mode="rgb_array"`` for videos."""
    _check_id(env_id)
    _route_mujoco_warnings()
    return gym.make(env_id, **kwargs)


def make_env(env_cfg) -> Env:
    """``env_cfg``: the ``[env]`` config section (id, kwargs, max_episode_steps, fast_step)."""
    _check_id(env_cfg.id)
    _route_mujoco_warnings()
    try:
        e = gym.make(env_cfg.id, disable_env_checker=True, **dict(env_cfg.kwargs))
    except gym.error.Error as ex:
        raise EnvError(f"env.id {env_cfg.id!r}: gymnasium could not make it: {ex}") from None
    except TypeError as ex:
        raise EnvError(f"env.kwargs {dict(env_cfg.kwargs)!r} for {env_cfg.id!r}: {ex}") from None
    except (ImportError, AttributeError, OSError) as ex:
        import os
        gl = os.environ.get("MUJOCO_GL")
        hint = (f" MUJOCO_GL={gl} is set: training needs no rendering, so unset it (or install that backend, "
                "see docs/analysis.md)." if gl else "")
        raise EnvError(f"env {env_cfg.id!r} could not be created: {type(ex).__name__}: {ex}.{hint}") from None
    obs_dim, action = describe_spaces(env_cfg.id, e.observation_space, e.action_space)
    limit = env_cfg.max_episode_steps or (e.spec.max_episode_steps if e.spec else None)
    if not limit:
        raise EnvError(f"env {env_cfg.id!r} has no registered time limit; set env.max_episode_steps in the config")
    return Env(env_cfg.id, e, obs_dim, action, int(limit), bool(getattr(env_cfg, "fast_step", True)))


def make_atari_env(game_env, noop_max: int, frame_skip: int, screen_size: int, frame_stack: int) -> gym.Env:
    """DeepMind preprocessing with gymnasium's own wrappers around a raw ale-py env (built by
    ``esmpi.atari.games``, frame skip 1): ``AtariPreprocessing`` (1..noop_max no-ops drawn from the
    env's seeded generator, the action repeated ``frame_skip`` times with the max over the last two
    frames, grey ``screen_size`` squared by area interpolation, uint8, no life-loss terminal, no
    reward clipping: those are the wrapper's defaults) then ``FrameStackObservation`` (the last
    ``frame_stack`` frames, (stack, H, W) uint8, padded at reset with the reset frame; always applied,
    so a stack of 1 still has its leading axis)."""
    from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

    try:
        import cv2
    except ImportError:  # pragma: no cover - a dependency
        raise EnvError("atari: gymnasium's AtariPreprocessing needs OpenCV; pip install opencv-python-headless") from None
    cv2.setNumThreads(1)  # one rank per core: OpenCV's thread pool would oversubscribe the node
    env = AtariPreprocessing(game_env, noop_max=noop_max, frame_skip=frame_skip, screen_size=screen_size,
                             terminal_on_life_loss=False, grayscale_obs=True, scale_obs=False)
    return FrameStackObservation(env, frame_stack)
