"""Objectives: what a candidate theta is scored on (one episode, a mini-batch, a black-box f).

Every objective offers ``num_params, obs_dim (0 = no normalisation), bc_dim (0 = no behaviour
characterisation), max_episode_steps, initial_theta(rng), set_obs_norm(mean, std),
episode(theta, seed, cutoff, record_obs, action_noise_rng, abandon) -> EpisodeResult,
spec_dict(), close()``; see ``esmpi.rollout`` for the episode conventions.
"""
