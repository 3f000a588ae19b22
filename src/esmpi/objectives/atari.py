"""``AtariObjective``: one Atari episode from pixels of a CNN policy with a flat float32 theta.

The objective interface of ``esmpi.objectives`` (``num_params``, ``obs_dim = 0``: no running
observation normalisation, VBN instead; ``bc_dim``: 128 when the RAM behaviour characterisation is
on, else 0; ``max_episode_steps``; ``initial_theta``; ``set_obs_norm`` (no-op); ``episode``;
``spec_dict``; ``close``), plus the objective's own state: the VBN reference batch.

- ``initial_objective_state(run_seed) -> {"vbn_ref_batch": (B, stack, H, W) uint8}`` gathers the
  batch by seeded random play (``esmpi.atari.refbatch``); ``{}`` when VBN is off.
- ``set_objective_state(d)`` installs it (from the fresh gather or from a checkpoint; a resumed run
  never regathers). Episodes need it first when VBN is on.

Episode conventions: ``reset(seed=seed)`` seeds the no-op count and the ALE's sticky-action RNG;
the episode ends at game over, at the ALE frame cap (``atari.frame_cap``) or after ``cutoff``
agent steps. The return is the sum of raw game scores (no clipping). A non-finite theta, VBN
statistic, logit or reward, or an exception from the emulator, fails the episode (return -inf).
``action_noise_rng`` is ignored: the action is an argmax over discrete actions.
"""

from __future__ import annotations

import math

import numpy as np

from ..atari import games, refbatch
from ..atari.settings import AtariSettings
from ..errors import CheckpointError
from ..policies.cnn import CNNPolicy, CNNSpec
from .episode import EpisodeResult

REF_KEY = "vbn_ref_batch"


class AtariObjective:
    def __init__(self, settings: AtariSettings | dict | None = None, where: str = "<config>"):
        from ..envs import make_atari_env  # the only gymnasium import lives there

        s = settings if isinstance(settings, AtariSettings) else AtariSettings.from_dict(settings, where)
        self.settings = s
        self.game = games.check_game(s.game)
        self.env = make_atari_env(games.make_game(s), s.noop_max, s.frame_skip, s.screen_size, s.frame_stack)
        self.n_actions = int(self.env.action_space.n)
        self.obs_shape = tuple(self.env.observation_space.shape)        # (stack, H, W)
        self.spec = CNNSpec(s.net, self.n_actions, self.obs_shape, s.vbn, s.vbn_eps)
        self.policy = CNNPolicy(self.spec)
        self.num_params = self.spec.num_params
        self.obs_dim = 0
        self.bc_dim = games.RAM_BYTES if s.bc else 0
        self.max_episode_steps = s.max_episode_steps
        self._ram = np.zeros(games.RAM_BYTES, np.uint8)
        self._has_ref = not s.vbn

    def initial_theta(self, rng: np.random.Generator) -> np.ndarray:
        return self.spec.init_theta(rng)

    def set_obs_norm(self, mean, std) -> None:
        pass

    # ------------------------------------------------------------------ objective state
    def initial_objective_state(self, run_seed: int) -> dict[str, np.ndarray]:
        s = self.settings
        if not s.vbn:
            return {}
        return {REF_KEY: refbatch.gather(self.env, self.n_actions, run_seed, s.ref_batch_size, s.ref_batch_prob)}

    def set_objective_state(self, d: dict[str, np.ndarray]) -> None:
        if not self.settings.vbn:
            return
        want = (self.settings.ref_batch_size,) + self.obs_shape
        ref = d.get(REF_KEY)
        if ref is None or ref.shape != want or ref.dtype != np.uint8:
            got = "missing" if ref is None else f"{ref.dtype} {ref.shape}"
            raise CheckpointError(f"objective state {REF_KEY!r}: {got}, expected uint8 {want} "
                                  "(a checkpoint of another game or preprocessing, or not an Atari run)")
        self.policy.set_reference_batch(ref)
        self._has_ref = True

    # ------------------------------------------------------------------ episodes
    def episode(self, theta: np.ndarray, seed: int, cutoff: int, record_obs: bool = False,
                action_noise_rng=None, abandon=None) -> EpisodeResult | None:
        """One episode; ``abandon()`` (polled every 64 steps) returning True ends it early with None."""
        if not self._has_ref:
            raise RuntimeError("AtariObjective: set_objective_state(initial_objective_state(seed)) first (VBN)")
        policy, env = self.policy, self.env
        if not policy.set_theta(theta):
            return EpisodeResult(-math.inf, 0, True, "non-finite theta or VBN statistics")
        ret, t = 0.0, 0
        step = env.step
        isfinite = math.isfinite
        try:
            obs, _ = env.reset(seed=seed)
            while True:
                a = policy(obs)
                if a < 0:
                    return EpisodeResult(-math.inf, t, True, f"non-finite logits at step {t}")
                obs, r, terminated, truncated, _ = step(a)
                t += 1
                if abandon is not None and not (t & 63) and abandon():
                    return None
                if not isfinite(r):
                    return EpisodeResult(-math.inf, t, True, f"non-finite reward {r} at step {t}")
                ret += r
                if terminated or truncated or t >= cutoff:
                    break
            bc = games.read_ram(env, self._ram).astype(np.float64) if self.bc_dim else None
        except Exception as ex:  # an emulator crash fails the episode, not the run
            return EpisodeResult(-math.inf, t, True, f"{type(ex).__name__} from env at step {t}: {ex}")
        return EpisodeResult(float(ret), t, bc=bc)

    def spec_dict(self) -> dict:
        """The policy's layout and the env settings, stored in checkpoints to rebuild the policy."""
        return self.spec.to_dict() | {"objective": "atari", "game": self.game, "atari": self.settings.to_dict(),
                                      "actions": games.action_meanings(self.env),
                                      "max_episode_steps": self.max_episode_steps}

    def close(self) -> None:
        self.env.close()
