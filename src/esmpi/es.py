"""OpenAI-ES state and update, as pure functions (no MPI, no env, no I/O).

``ESState`` is everything a run needs to continue and is what a checkpoint stores: theta,
optimizer state, observation statistics, counters and the adaptive episode cutoff.

``tell(state, batch, noise, cfg) -> (new_state, stats)`` applies one generation, in this order:
1. shape the 2N returns (centered ranks over all of them; failed episodes are -inf, ranked last);
2. ``g = sum_j (s+_j - s-_j) eps_j / (2N)``: the weighted noise sum in pair order (bitwise fixed);
   like the reference we do **not** divide by sigma (Adam is invariant to that scale);
3. optimizer step on ``-g + l2coeff * theta`` (the optimizer descends, we ascend the return);
4. merge this generation's observation statistics, in pair order (used from the next generation);
5. the reference's adaptive cutoff: if at least ``cutoff_increase_threshold`` of the episodes hit
   the cutoff, multiply it by ``cutoff_increase_ratio``;
6. counters.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import numpy as np

from . import optim
from .errors import NonFiniteTheta
from .obs_norm import ObsStats
from .shaping import SHAPINGS, pair_weights


@dataclass(frozen=True)
class ESState:
    theta: np.ndarray           # (d,) float32
    opt: optim.OptState
    obs: ObsStats               # obs_dim may be 0 (no normalisation)
    generation: int = 0         # generations completed
    episodes_so_far: int = 0    # training episodes (evaluation episodes not included, as in the reference)
    timesteps_so_far: int = 0
    cutoff: int = 0             # current episode step limit (adaptive cutoff state)


def initial_state(theta0: np.ndarray, obs_dim: int, cutoff: int) -> ESState:
    theta0 = np.asarray(theta0, dtype=np.float32)
    return ESState(theta0.copy(), optim.init_state(theta0.size), ObsStats.initial(obs_dim), cutoff=int(cutoff))


def state_digest(state: ESState) -> bytes:
    """sha256 of every array and counter of the state: equal digests == bitwise-equal replicas."""
    h = hashlib.sha256()
    for a in (state.theta, state.opt.m, state.opt.v, state.obs.sum, state.obs.sumsq):
        h.update(np.ascontiguousarray(a).tobytes())
    h.update(repr((state.opt.t, float(state.obs.count), state.generation, state.episodes_so_far,
                   state.timesteps_so_far, state.cutoff)).encode())
    return h.digest()


@dataclass
class Batch:
    """One generation's gathered results, in pair order (identical on every rank)."""

    offsets: np.ndarray        # (N,) int64 noise offsets
    returns: np.ndarray        # (N, 2) float64, column 0 = theta + sigma*eps; failed = -inf
    lengths: np.ndarray        # (N, 2) int64
    failed: np.ndarray         # (N, 2) bool
    obs_sum: np.ndarray        # (M, obs_dim) float64, recorded pairs in pair order
    obs_sumsq: np.ndarray      # (M, obs_dim)
    obs_count: np.ndarray      # (M,)
    eval_returns: np.ndarray   # (E,) float64 (failed = nan)
    eval_lengths: np.ndarray   # (E,) int64
    eval_failed: np.ndarray    # (E,) bool


def tell(state: ESState, batch: Batch, noise, es_cfg, opt_cfg, max_cutoff: int | None = None) -> tuple[ESState, dict]:
    """One ES update. ``noise`` provides ``weighted_sum(w, offsets, d)`` (a NoiseTable, or a
    NodeSplitSum sharing the work among a node's ranks: same bits); ``max_cutoff`` caps the
    adaptive cutoff (the env's own time limit)."""
    n_pairs = batch.offsets.size
    d = state.theta.size
    shaped = SHAPINGS[es_cfg.shaping](batch.returns)
    w = pair_weights(shaped)
    g = noise.weighted_sum(w, batch.offsets, d)
    g /= np.float32(batch.returns.size)
    opt_kwargs = opt_cfg.model_dump() if hasattr(opt_cfg, "model_dump") else dict(opt_cfg)
    step, opt_state = optim.OPTIMIZERS[opt_kwargs.pop("name")](
        state.opt, -g + np.float32(es_cfg.l2coeff) * state.theta, **opt_kwargs)
    theta = state.theta + step
    if not np.all(np.isfinite(theta)):
        raise NonFiniteTheta(f"theta became non-finite at generation {state.generation + 1}; lower "
                             "optimizer.stepsize or check the objective (all ranks stopped; the last checkpoint is intact)")
    obs = state.obs
    if obs.sum.size and len(batch.obs_count):
        obs = obs.merged(batch.obs_sum, batch.obs_sumsq, batch.obs_count)
    cutoff = state.cutoff
    if es_cfg.episode_cutoff == "adaptive":
        if np.mean(batch.lengths == cutoff) >= es_cfg.cutoff_increase_threshold:
            cutoff = int(es_cfg.cutoff_increase_ratio * cutoff)
            if max_cutoff:
                cutoff = min(cutoff, max_cutoff)
    new = replace(state, theta=theta.astype(np.float32), opt=opt_state, obs=obs, generation=state.generation + 1,
                  episodes_so_far=state.episodes_so_far + 2 * n_pairs,
                  timesteps_so_far=state.timesteps_so_far + int(batch.lengths.sum()), cutoff=cutoff)
    theta_norm = float(np.linalg.norm(theta.astype(np.float64)))
    stats = {
        "GradNorm": float(np.linalg.norm(g.astype(np.float64))),
        "UpdateRatio": float(np.linalg.norm(step.astype(np.float64)) / max(theta_norm, 1e-30)),
        "Norm": theta_norm,
        "ObCount": int(np.sum(batch.obs_count)) if len(batch.obs_count) else 0,
        "EpisodeCutoff": cutoff,
    }
    return new, stats
