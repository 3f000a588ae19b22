"""``EnvObjective``: one episode of a policy (built from ``[policy]``) in a gymnasium env.

The objective interface every objective offers (see ``esmpi.objectives``):

- ``num_params``, ``obs_dim`` (0 = no observation normalisation), ``bc_dim``, ``max_episode_steps``
- ``initial_theta(rng) -> (num_params,) float32``
- ``set_obs_norm(mean, std)`` before a generation's episodes
- ``episode(theta, seed, cutoff, record_obs, action_noise_rng, abandon=None, keep_obs=False) -> EpisodeResult | None``
  (``abandon``: polled during long episodes; True ends the episode with None, for the 'steal' schedule;
  ``keep_obs``: the result's ``states`` holds every raw observation the policy acted on)
- ``output_jacobians(theta, obs) -> (n_out, T, d)``: gradients of the policy's raw outputs on raw
  observations under the current normalisation (the GA's safe mutations, SM-G); with
  ``sequential_states`` (a recurrent policy) ``obs`` is one sequence from the episode's reset

Episode conventions: ``esmpi.objectives.episode``. The only gymnasium import stays in ``envs.py``.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import EsmpiError
from .episode import EpisodeResult


class EnvObjective:
    def __init__(self, cfg):
        from ..envs import make_env  # the only gymnasium import lives there

        from .. import policies

        self.env = make_env(cfg.env)
        try:
            self.spec, self.policy = policies.make(cfg.policy, self.env.obs_dim, self.env.action, cfg.es.obs_clip)
        except EsmpiError as e:
            raise type(e)(f"{cfg.env.id}: {e}") from None
        p = cfg.policy
        self.num_params = self.spec.num_params
        self.obs_dim = self.env.obs_dim
        self.max_episode_steps = self.env.max_episode_steps
        self.action_noise_std = cfg.es.action_noise_std
        self.obs_std_floor = cfg.es.obs_std_floor
        self._continuous = self.env.action.kind == "box" and not p.action_bins
        self._bc = _behaviour(cfg, self.env)
        self.bc_dim = 0 if self._bc is None else 2
        # a recurrent policy's recorded states must stay a sequence from the reset (SM-G's probe)
        self.sequential_states = self.policy.recurrent

    def initial_theta(self, rng: np.random.Generator) -> np.ndarray:
        return self.spec.init_theta(rng)

    def spec_dict(self) -> dict:
        """The policy's layout, stored in checkpoints so a policy can be rebuilt without the env."""
        s = self.spec
        kind = "gru" if self.policy.recurrent else "mlp"
        head = {"type": kind, "env_id": self.env.id, "layer_sizes": list(s.layer_sizes)}
        if kind == "mlp":
            head.update(nonlinearity=s.nonlinearity, action_bins=s.action_bins)
        return {**head, "action": {"kind": s.action.kind, "dim": s.action.dim, "n": s.action.n,
                                   "low": list(s.action.low), "high": list(s.action.high)},
                "obs_clip": float(self.policy.obs_clip), "obs_std_floor": self.obs_std_floor,
                "max_episode_steps": self.max_episode_steps,
                "theta_layout": ("per layer: W (n_in, n_out) row-major, then b (n_out,)" if kind == "mlp" else
                                 "W_z, U_z, b_z, W_r, U_r, b_r, W_h, U_h, b_h, W_o, b_o; each matrix (n_in, n_out) "
                                 "row-major; hidden state zero at every reset (esmpi.policies.gru)"),
                "tanh": "float32 rational approximation, esmpi.policies.mlp.tanh",
                # which env step ran ("fast": esmpi.fastmujoco, bitwise Gymnasium's; "gymnasium") and why not fast
                "env_step": self.env.step_path, "env_step_note": self.env.step_note}

    def set_obs_norm(self, mean: np.ndarray, std: np.ndarray) -> None:
        self.policy.set_obs_norm(mean, std)

    def output_jacobians(self, theta: np.ndarray, obs: np.ndarray) -> np.ndarray:
        """(n_out, T, d) float32 gradients of the raw outputs at raw observations ``obs`` (T, obs_dim),
        normalised as the policy does now (``set_obs_norm``): ``esmpi.policies.sensitivity.jacobians``."""
        from ..policies.sensitivity import jacobians, normalized_inputs

        p = self.policy
        x = normalized_inputs(obs, p.mean, p.std, p.obs_clip)
        # a recurrent policy: the states are one sequence from the reset, (1, T, obs_dim)
        return jacobians(self.spec, theta, x[None] if self.sequential_states else x)

    def episode(self, theta: np.ndarray, seed: int, cutoff: int, record_obs: bool = False,
                action_noise_rng: np.random.Generator | None = None, abandon=None,
                keep_obs: bool = False) -> EpisodeResult | None:
        """One episode; ``abandon()`` (polled every 64 steps) returning True ends it early with None."""
        policy, env = self.policy, self.env
        policy.set_theta(theta)
        noisy = action_noise_rng is not None and self.action_noise_std > 0 and self._continuous
        kept = [] if keep_obs else None
        if record_obs:
            s = np.zeros(self.obs_dim)
            ss = np.zeros(self.obs_dim)
        ret, t = 0.0, 0
        step = env.step
        isfinite = math.isfinite
        try:
            obs, _ = env.reset(seed=seed)
            policy.reset()
            while True:
                a = policy(obs)          # None: obs holds NaN/inf (checked inside the kernel)
                if a is None:
                    return EpisodeResult(-math.inf, t, True, f"non-finite observation at step {t}")
                if record_obs:
                    s += obs
                    ss += np.square(obs)
                if keep_obs:
                    kept.append(np.array(obs, np.float64))
                if noisy:
                    a = np.clip(a + self.action_noise_std * action_noise_rng.standard_normal(a.shape),
                                policy._low, policy._high).astype(np.float32)
                obs, r, terminated, truncated, _ = step(a)
                t += 1
                if abandon is not None and not (t & 63) and abandon():
                    return None
                if not isfinite(r):
                    return EpisodeResult(-math.inf, t, True, f"non-finite reward {r} at step {t}")
                ret += r
                if terminated or truncated or t >= cutoff:
                    break
        except Exception as ex:  # an env crash fails the episode, not the run
            return EpisodeResult(-math.inf, t, True, f"{type(ex).__name__} from env at step {t}: {ex}")
        bc = None
        if self._bc is not None:
            bc = self._bc()
            if not (math.isfinite(bc[0]) and math.isfinite(bc[1])):
                return EpisodeResult(-math.inf, t, True, f"non-finite behaviour characterisation {bc.tolist()}")
        states = np.array(kept, np.float64).reshape(-1, self.obs_dim) if keep_obs else None
        if record_obs:
            return EpisodeResult(ret, t, False, "", s, ss, t, bc, states)
        return EpisodeResult(ret, t, bc=bc, states=states)

    def close(self):
        self.env.close()


def _behaviour(cfg, env):
    """``() -> (2,) float64`` reading the final (x, y) centre of mass, or None (``env.bc``); a strategy
    that needs BCs on an env that has none is a ConfigError naming the env."""
    from ..envs import com_xy_reader
    from ..errors import ConfigError
    from ..strategies import NEEDS_BC

    needs = cfg.strategy.name in NEEDS_BC
    if cfg.env.bc == "none" and needs:
        raise ConfigError(f"env.bc = 'none', but strategy '{cfg.strategy.name}' needs behaviour characterisations: "
                          "set env.bc = 'com_xy' (or 'auto')")
    if cfg.env.bc == "none" or (cfg.env.bc == "auto" and not needs):
        return None
    reader = com_xy_reader(env)
    if reader is None:
        who = f"strategy '{cfg.strategy.name}' needs" if needs else "env.bc = 'com_xy' needs"
        raise ConfigError(f"{who} behaviour characterisations, but env {cfg.env.id!r} gives none: use a MuJoCo env "
                          "(final centre of mass), esmpi/PointMass-v0 or esmpi/PointMaze-v0")
    return reader
