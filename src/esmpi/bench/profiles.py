"""Sizes of the benchmark: ``full`` (``make bench``, < 10 min on 2 cores), ``quick`` (``make bench-ci``,
~1-2 min) and ``tiny`` (the test suite: seconds; checks plumbing and bitwise identity, not speed)."""

PROFILES = {
    "full": {
        # 1 rollout: steps per repeat (HalfCheetah, Humanoid), repeats, Humanoid episode-length sample
        "rollout_steps": {"HalfCheetah-v5": 20_000, "Humanoid-v5": 4_000}, "rollout_repeats": 7,
        "n_lengths": 300, "long_steps": 3_000, "long_repeats": 3, "overhead_repeats": 3, "overhead_table": 20_000_000,
        # 2/3 update: the paper's sizes
        "table": 250_000_000, "update_d": 160_000, "update_pairs": 5_000, "update_repeats": 5, "reference_pairs": None,
        "split_repeats": 5, "split_repeats_oversubscribed": 2,
        # 5/6 trainer probe (Humanoid-v5 256-256; generations per schedule, after one warm-up) and
        # collectives (the paper's 5,000 pairs)
        "probe_pairs": 24, "generations": 6, "coll_pairs": 5_000, "coll_repeats": 100, "n_eval": 30, "obs_dim": 348,
        "ranks": [1, 2, 4], "mpi_timeout": 300, "monte_carlo": 8,
        # 8 atari: agent steps per repeat, repeats, episode cap (a random Pong episode lasts ~800 steps),
        # forward calls per timing
        "atari_steps": 3_000, "atari_repeats": 5, "atari_cutoff": 1_000, "atari_forward_calls": 300,
        # 8 images: batch size, forward calls per repeat, repeats
        "img_batch": 256, "img_calls": 8, "img_repeats": 7,
        # 9 GA: child materialisation at the Humanoid and Atari sizes; parent cache at T = 20, d = 4M
        "ga_d": [160_000, 4_000_000], "ga_repeats": 7, "ga_cache_d": 4_000_000,
        "ga_tp_env": "HalfCheetah-v5", "ga_tp_pairs": 20, "ga_tp_max_steps": 0,
    },
    "quick": {
        "rollout_steps": {"HalfCheetah-v5": 5_000, "Humanoid-v5": 1_200}, "rollout_repeats": 3,
        "n_lengths": 60, "long_steps": 1_000, "long_repeats": 1, "overhead_repeats": 2, "overhead_table": 5_000_000,
        "table": 25_000_000, "update_d": 16_000, "update_pairs": 500, "update_repeats": 3, "reference_pairs": None,
        "split_repeats": 3, "split_repeats_oversubscribed": 1,
        "probe_pairs": 8, "generations": 3, "coll_pairs": 500, "coll_repeats": 30, "n_eval": 4, "obs_dim": 348,
        "ranks": [1, 2, 4], "mpi_timeout": 180, "monte_carlo": 4,
        "atari_steps": 1_000, "atari_repeats": 3, "atari_cutoff": 500, "atari_forward_calls": 100,
        "img_batch": 256, "img_calls": 2, "img_repeats": 3,
        "ga_d": [16_000, 400_000], "ga_repeats": 3, "ga_cache_d": 400_000,
        "ga_tp_env": "HalfCheetah-v5", "ga_tp_pairs": 10, "ga_tp_max_steps": 300,
    },
    "tiny": {
        "rollout_steps": {"HalfCheetah-v5": 300, "Humanoid-v5": 200}, "rollout_repeats": 2,
        "n_lengths": 10, "long_steps": 100, "long_repeats": 1, "overhead_repeats": 1, "overhead_table": 1_000_000,
        "table": 2_000_000, "update_d": 4_000, "update_pairs": 64, "update_repeats": 2, "reference_pairs": None,
        "split_repeats": 2, "split_repeats_oversubscribed": 1,
        "probe_pairs": 2, "generations": 1, "coll_pairs": 64, "coll_repeats": 5, "n_eval": 2, "obs_dim": 348,
        "ranks": [1, 2], "mpi_timeout": 120, "monte_carlo": 2,
        "atari_steps": 100, "atari_repeats": 1, "atari_cutoff": 50, "atari_forward_calls": 5,
        "img_batch": 16, "img_calls": 1, "img_repeats": 2,
        "ga_d": [4_000, 40_000], "ga_repeats": 2, "ga_cache_d": 40_000,
        "ga_tp_env": "HalfCheetah-v5", "ga_tp_pairs": 4, "ga_tp_max_steps": 50,
    },
}
