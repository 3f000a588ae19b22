"""Load a trained policy from a checkpoint, for use outside esmpi (no MPI, no env, no trainer).

    >>> import gymnasium as gym, esmpi
    >>> pi = esmpi.load_policy("runs/Hopper-v5-s0-20260101-120000")   # run directory or .h5 file
    >>> env = gym.make(pi.env_id)
    >>> obs, _ = env.reset(seed=0)
    >>> obs, r, terminated, truncated, _ = env.step(pi(obs))

``load_policy`` rebuilds the MLP (or the GRU: call ``pi.reset()`` after every ``env.reset``) from the
checkpoint's ``policy_json`` attribute (layer sizes, nonlinearity, action spec, ``obs_clip``) and applies the saved observation normalisation
(``state.obs`` with the run's ``es.obs_std_floor``): exactly the function the trainer evaluates,
without action noise. Also here: ``resolve_checkpoint`` (which file a run directory stands for),
shared with ``esmpi.analyze``.

This module imports only numpy and esmpi.policies.mlp at import time (``esmpi/__init__`` exports
``load_policy``); the checkpoint (and so h5py) is imported when a file is read.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .errors import CheckpointError
from .policies.mlp import ActionSpec, MLPPolicy, MLPSpec


def resolve_checkpoint(run: str | Path, checkpoint: str | Path | None = None) -> Path:
    """The checkpoint file that ``run`` stands for.

    ``run`` is a ``.h5`` file (returned as is) or a run directory: its ``latest.h5`` (newest
    periodic checkpoint), else the newest ``checkpoints/gen_*.h5``, else ``checkpoints/best.h5``.
    ``checkpoint`` overrides that choice: a path, or a name looked up in ``RUN/checkpoints/``
    (``best`` means ``best.h5``, ``gen_000010`` means ``gen_000010.h5``).
    """
    run = Path(run)
    if checkpoint is not None:
        c = Path(checkpoint)
        if c.is_file():
            return c
        if run.is_dir():
            name = c.name if c.suffix == ".h5" else c.name + ".h5"
            for cand in (run / "checkpoints" / name, run / name):
                if cand.is_file():
                    return cand
        raise CheckpointError(f"{checkpoint}: no such checkpoint (not a file, nor a name in {run / 'checkpoints'})")
    if run.is_file():
        return run
    if not run.is_dir():
        raise CheckpointError(f"{run}: no such run directory or checkpoint file")
    latest = run / "latest.h5"
    if latest.is_file():  # follows the symlink
        return latest
    gens = sorted((run / "checkpoints").glob("gen_*.h5"))
    if gens:
        return gens[-1]
    best = run / "checkpoints" / "best.h5"
    if best.is_file():
        return best
    raise CheckpointError(f"{run}: no checkpoint yet (no latest.h5, checkpoints/gen_*.h5 or checkpoints/best.h5); "
                          "a run writes its first one after checkpoint.every generations or when it stops")


def spec_from_policy_json(policy: dict):
    """Rebuild the ``MLPSpec`` or ``GRUSpec`` from a checkpoint's ``policy_json`` (as written by
    ``EnvObjective.spec_dict``)."""
    if policy.get("type") == "cnn":
        raise CheckpointError(f"policy_json type is 'cnn' ({policy.get('net')} net, {policy.get('n_actions')} actions): "
                              "an Atari checkpoint, not a gym/MuJoCo MLP; load it with esmpi.load_policy(path), "
                              "which rebuilds the CNN, the env and the VBN reference batch")
    if policy.get("type") not in ("mlp", "gru"):
        raise CheckpointError(f"policy_json type is {policy.get('type')!r}, not 'mlp' or 'gru': this checkpoint holds "
                              "no env policy (was it written by esmpi.optimize or a custom objective?)")
    sizes = [int(s) for s in policy["layer_sizes"]]
    a = policy["action"]
    action = ActionSpec(a["kind"], dim=int(a.get("dim", 0)), low=tuple(float(x) for x in a.get("low", ())),
                        high=tuple(float(x) for x in a.get("high", ())), n=int(a.get("n", 0)))
    if policy["type"] == "gru":
        from .policies.gru import GRUSpec
        if len(sizes) != 3:
            raise CheckpointError(f"policy_json of a GRU has layer_sizes [n_in, H, n_out], got {sizes}")
        return GRUSpec(sizes[0], sizes[1], sizes[2], action)
    return MLPSpec(sizes[0], action, tuple(sizes[1:-1]), policy["nonlinearity"], int(policy.get("action_bins", 0)))


class LoadedPolicy:
    """Callable ``obs -> action`` (a fresh float32 array for Box actions, an ``int`` for Discrete);
    raises ValueError for an observation holding NaN/inf.

    Attributes: ``path`` (the checkpoint read), ``env_id``, ``max_episode_steps``, ``env_kwargs``
    (the run's ``env.kwargs``), ``spec`` (``MLPSpec`` or ``GRUSpec``), ``theta``, ``obs_mean``/``obs_std``
    (float32, the normalisation applied), ``generation``, ``config`` (the run's config as a dict).
    """

    def __init__(self, path: Path, spec: MLPSpec, theta: np.ndarray, obs_mean: np.ndarray, obs_std: np.ndarray,
                 obs_clip: float, policy: dict, config: dict, generation: int, allow_import=()):
        self.path, self.spec, self.theta = path, spec, theta
        self.obs_mean, self.obs_std = obs_mean, obs_std
        self.env_id = policy.get("env_id") or config.get("env", {}).get("id", "")
        self.max_episode_steps = int(policy.get("max_episode_steps") or 0)
        self.env_kwargs = dict(config.get("env", {}).get("kwargs", {}))
        self.config, self.generation = config, generation
        self.allow_import = set(allow_import)
        if isinstance(spec, MLPSpec):
            self._pi = MLPPolicy(spec, obs_clip)
        else:
            from .policies.gru import GRUPolicy
            self._pi = GRUPolicy(spec, obs_clip)
        self._pi.set_theta(theta)
        self._pi.set_obs_norm(obs_mean, obs_std)

    def reset(self) -> None:
        """Start a new episode: a recurrent (GRU) policy forgets its hidden state; call it after
        every ``env.reset`` (an MLP has nothing to forget)."""
        self._pi.reset()

    def __call__(self, obs):
        a = self._pi(np.asarray(obs))
        if a is None:  # the policy's signal for a NaN/inf observation
            raise ValueError(f"observation contains NaN or inf: {obs!r}")
        return a if isinstance(a, (int, np.integer)) else a.copy()  # the policy reuses its output buffer

    def make_env(self, **kwargs):
        """``gymnasium.make`` of the run's env with its ``env.kwargs`` (plus ``kwargs``, e.g. render_mode).
        An env id ``module:Env-vN`` (read from the file) imports ``module`` only if it was named in
        ``load_policy(..., allow_import=[module])``."""
        from .envs import make_gym_env  # the one module that imports gymnasium
        from .errors import EnvError

        if ":" in self.env_id and self.env_id.split(":", 1)[0] not in self.allow_import:
            module = self.env_id.split(":", 1)[0]
            raise EnvError(f"env id {self.env_id!r} in {self.path} would import the Python module {module!r}; "
                           f"a file never decides by itself what code runs: pass allow_import=[{module!r}] "
                           f"(esmpi eval/video: --allow-import {module})")
        return make_gym_env(self.env_id, **{**self.env_kwargs, **kwargs})

    def __repr__(self):
        kind = self.spec.nonlinearity if isinstance(self.spec, MLPSpec) else "gru"
        return (f"LoadedPolicy({self.env_id!r}, layers={self.spec.layer_sizes}, {kind}, "
                f"generation={self.generation}, from {str(self.path)!r})")


class LoadedAtariPolicy:
    """Callable ``obs (stack, H, W) uint8 -> action index`` of an Atari run: its CNN with the saved theta
    and, with VBN, the saved reference batch (statistics recomputed once, as in training).
    ``make_env()`` gives the same preprocessed env; ``env_id`` is ``atari-GAME``."""

    def __init__(self, path: Path, ck: dict):
        from .objectives import make

        cfg = ck["config"]
        self.path, self.config, self.generation = path, ck["config_json"], ck["state"].generation
        self._obj = self.objective = make(cfg)      # the AtariObjective: its env, settings and CNN
        self._obj.set_objective_state(ck["state"].extra)
        self.theta = ck["state"].theta
        if self._obj.num_params != self.theta.size:
            raise CheckpointError(f"{path}: the [atari] config describes {self._obj.num_params} parameters, "
                                  f"theta has {self.theta.size}")
        if not self._obj.policy.set_theta(self.theta):
            raise CheckpointError(f"{path}: theta gives non-finite VBN statistics")
        self.env_id = f"atari-{self._obj.game}"
        self.max_episode_steps = self._obj.max_episode_steps

    def __call__(self, obs) -> int:
        a = self._obj.policy(np.asarray(obs))
        if a < 0:
            raise ValueError("non-finite logits for this observation")
        return int(a)

    def make_env(self, **kwargs):
        """The preprocessed env the policy was trained in (one per policy; its screens: ``esmpi video``).
        It takes no gymnasium keyword arguments: the env is ale-py's behind esmpi's preprocessing."""
        if kwargs:
            from .errors import EnvError
            raise EnvError(f"{self.env_id}: make_env takes no keyword arguments (got {', '.join(sorted(kwargs))}); "
                           "render the policy with `esmpi video RUN -o out.gif`, which draws the ALE screen")
        return self._obj.env

    def __repr__(self):
        return f"LoadedAtariPolicy({self.env_id!r}, generation={self.generation}, from {str(self.path)!r})"


def policy_from_checkpoint(ck: dict, path: Path, allow_import=()):
    """Build the policy from an already loaded checkpoint dict (``esmpi.checkpoint.load``)."""
    if ck.get("config") is not None and ck["config"].objective.kind == "atari":
        return LoadedAtariPolicy(path, ck)
    attrs = ck["attrs"]
    try:
        policy = json.loads(attrs.get("policy_json") or "{}")
        config = json.loads(ck["config_json"] or "{}")
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: policy_json or config_json is not valid JSON: {e}") from None
    try:
        spec = spec_from_policy_json(policy)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: policy_json is incomplete ({e!r}): {policy}") from None
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    state = ck["state"]
    if spec.num_params != state.theta.size:
        raise CheckpointError(f"{path}: policy_json describes {spec.num_params} parameters "
                              f"(layers {spec.layer_sizes}) but theta has {state.theta.size}")
    if state.obs.sum.size not in (0, spec.obs_dim):
        raise CheckpointError(f"{path}: observation statistics have size {state.obs.sum.size}, "
                              f"the policy takes {spec.obs_dim} inputs")
    floor = float(config.get("es", {}).get("obs_std_floor", 0.1))
    if state.obs.sum.size:
        mean, std = state.obs.mean_std(floor)
    else:
        mean, std = np.zeros(spec.obs_dim, np.float32), np.ones(spec.obs_dim, np.float32)
    return LoadedPolicy(path, spec, state.theta, mean, std, float(policy.get("obs_clip", 5.0)), policy, config,
                        state.generation, allow_import)


def load_policy(path: str | Path, checkpoint: str | Path | None = None, allow_import=()) -> LoadedPolicy:
    """Load the policy saved in ``path`` (a checkpoint ``.h5`` or a run directory, see
    ``resolve_checkpoint``). Returns a ``LoadedPolicy``: ``action = policy(obs)``, deterministic,
    with the saved observation normalisation; usable in any gymnasium loop, without MPI. The file is
    validated as strictly as for ``--resume`` (``esmpi.checkpoint.load``). ``allow_import``: modules
    that a ``module:Env-vN`` env id in the file may import in ``make_env``."""
    from . import checkpoint as _ck

    p = resolve_checkpoint(path, checkpoint)
    return policy_from_checkpoint(_ck.load(p), p, allow_import)
