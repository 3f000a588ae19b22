"""Per-purpose random streams derived from the run seed.

Every stream is ``numpy.random.Generator(PCG64(SeedSequence([seed, PURPOSE, *indices])))``, a pure
function of its address, so any rank can rebuild any draw without communication and the result
does not depend on which rank made it. The global numpy RNG is never used.
"""

from __future__ import annotations

import numpy as np

# Purpose tags: never renumber (checkpoints and published runs depend on them).
OFFSETS = 1          # (g, block) -> noise offsets of the block's pairs
OBS_STAT = 2         # (g, block) -> which pairs record observation statistics
EPISODE = 3          # (g, block, pair, sign) -> env reset seed and action noise
EVAL = 4             # (g, episode) -> evaluation episode seed
INIT_THETA = 5       # () -> initial policy parameters
EXTRA = 6            # (g, block, rank, k) -> offset, obs-stat draw and episode seeds of a 'steal' extra pair
REF_BATCH = 7        # (episode) -> reset seed of a reference-batch episode; () -> its actions and frame picks
SGD_BATCH = 8        # (iteration,) -> mini-batch seed of the SGD/Adam baseline (esmpi.supervised.sgd)
GRAD_STUDY = 9       # (step, kind, ...) -> batches and noise offsets of the gradient study (esmpi.supervised.study)
PROBE = 10           # (k,) -> noise offset of perturbation k of a saved policy (esmpi.robustness; analysis seed)
GA_PARENT = 11       # (g,) -> the parent of each GA child of generation g
GA_MUTATION = 12     # (g,) -> the noise offset (mutation) of each GA child of generation g
GA_EPISODE = 13      # (g, i) -> reset seed of child i's training episode
GA_VALIDATE = 14     # (g, i, e) -> reset seed of validation episode e of individual i (N - 1: the elite)
GA_OBS_STAT = 15     # (g,) -> which GA children record observation statistics
NS_MEMBER = 16       # (g,) -> which novelty-search member is updated in generation g
NS_BC = 17           # (g, member, episode) -> seed of a behaviour-characterisation episode of a member
MINIBATCH = 18       # (g,) or (g, block, pair) -> the training mini-batch of an ES candidate (es.batch_mode)
BUCKET = 19          # (g, block) -> which parameter bucket each pair perturbs (es.perturb_bucket)
GA_PROBE = 20        # (g, p) -> reset seed of parent p's probe episode (SM-G's recorded states)
KEEP_STATES = 21     # (*address of an episode) -> which of its observations a keep_states candidate keeps


def rng(seed: int, purpose: int, *indices: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, purpose, *indices])))


def episode_seed(seed: int, purpose: int, *indices: int) -> int:
    """A 63-bit integer seed for ``env.reset(seed=...)``."""
    return int(np.random.SeedSequence([seed, purpose, *indices]).generate_state(2, np.uint64)[0] >> np.uint64(1))
