"""Objectives: what a candidate theta is scored on (one episode, a mini-batch, a black-box f).

Every objective offers ``num_params, obs_dim (0 = no normalisation), bc_dim (0 = no behaviour
characterisation), max_episode_steps, initial_theta(rng), set_obs_norm(mean, std),
episode(theta, seed, cutoff, record_obs, action_noise_rng, abandon) -> EpisodeResult,
spec_dict(), close()``; ``episode.py`` holds ``EpisodeResult`` and the episode conventions.

gym.py (any gymnasium id, MuJoCo included), atari.py (pixels, VBN), supervised.py (image
classification on IDX files), function.py (a black-box ``f(theta)``); ``make(cfg)`` picks one from
``[objective] kind``. To add an objective: a module here with that interface, one branch in ``make``.
"""


def make(cfg, comm=None, where: str = ""):
    """The objective of a run: ``objective.kind`` 'gym' (``env.id``), 'atari' (``[atari]``) or
    'supervised' (``[supervised]``; its dataset is shared by the ranks of a node through ``comm``).
    ``where`` (the job file) prefixes the supervised objective's errors about its data."""
    if cfg.objective.kind == "supervised":
        from dataclasses import replace

        from ..supervised.settings import SupervisedSettings
        from .supervised import SupervisedObjective
        s = SupervisedSettings.from_dict(cfg.supervised, where or "[supervised]")
        return SupervisedObjective(replace(s, key_prefix=f"{where}: supervised" if where else "supervised"), comm)
    if cfg.objective.kind == "atari":
        from .atari import AtariObjective
        return AtariObjective(cfg.atari, "[atari]")
    from .gym import EnvObjective
    return EnvObjective(cfg)


def extra_template(cfg) -> dict:
    """Zeros shaped like the objective state a run of ``cfg`` keeps in ``TrainState.extra`` (what a
    checkpoint is checked against), built without an env: the VBN reference batch for Atari."""
    import numpy as np

    if cfg.objective.kind != "atari":
        return {}
    from ..atari.settings import AtariSettings
    from .atari import REF_KEY

    s = AtariSettings.from_dict(cfg.atari)
    if not s.vbn:
        return {}
    return {REF_KEY: np.zeros((s.ref_batch_size, s.frame_stack, s.screen_size, s.screen_size), np.uint8)}
