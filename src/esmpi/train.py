"""The ES loop: Algorithm 2 of Salimans et al. (2017), every rank equal.

Per generation, on every rank:
    set the observation normaliser from the state  ->  for each block of pairs: evaluate my pairs
    (episode e = 2 * pair + sign on rank e % size; in block 0 also my evaluation episodes)  ->
    allgather the scalar rows  ->  (more blocks while
    the generation has fewer than ``min_timesteps_per_generation`` steps)  ->  restore pair order
    ->  ``es.tell`` (identical update everywhere)  ->  metrics  ->  replica check every N
    generations  ->  collective stop/checkpoint decision (one integer OR-reduction).

Nothing but scalar rows and small observation sums crosses the network; theta is never sent.
Rank 0 writes files (checkpoints, progress); every decision is agreed by all ranks.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from . import checkpoint, es, seeding
from .errors import ConfigError, ReplicaMismatch
from .evaluate import EP_W, BlockEvaluator, obs_mask
from .metrics import generation_metrics, target_reached
from .noise import NodeSplitSum, NoiseTable

STOP = 1          # budget reached (generations, timesteps, wall time or run.target_return)
SIGNALLED = 2     # a rank received SIGTERM/SIGINT/SIGUSR1: checkpoint and stop
CHECKPOINT = 4    # a rank received SIGUSR2: checkpoint now and go on


class Trainer:
    """Owns the noise table, the objective and the current ``ESState``; ``run()`` trains.

    ``state``/``history`` may come from a checkpoint (resume); otherwise theta is initialised from
    ``(run seed, INIT_THETA)`` by the objective.
    """

    def __init__(self, cfg, objective, comm, *, run_dir: str | Path | None = None, state: es.ESState | None = None,
                 history: list[dict] | None = None, sinks=(), time_offset: float = 0.0, stop_requested=None,
                 resumes: list[dict] | None = None, checkpoint_requested=None):
        self.cfg, self.objective, self.comm = cfg, objective, comm
        self.run_dir = Path(run_dir) if run_dir is not None else None
        d = objective.num_params
        if cfg.noise.size < d:
            raise ConfigError(f"noise.size = {cfg.noise.size} is smaller than the policy's {d} parameters; "
                              f"set noise.size >= {d} (a table 100x larger keeps perturbations nearly independent)")
        self.noise = NoiseTable(cfg.noise.size, cfg.noise.seed, comm, stop_requested=stop_requested)
        # the update's noise sum: split over the ranks of a node (same bits, 1/k of the reading each)
        self.summer = NodeSplitSum(self.noise, comm, d) if getattr(comm, "node_size", 1) > 1 else self.noise
        self.max_steps = objective.max_episode_steps
        if state is None:
            theta0 = objective.initial_theta(seeding.rng(cfg.run.seed, seeding.INIT_THETA))
            cutoff = min(cfg.es.cutoff_initial, self.max_steps) if cfg.es.episode_cutoff == "adaptive" else self.max_steps
            state = es.initial_state(theta0, objective.obs_dim, cutoff)
        self.state = state
        self.history: list[dict] = list(history or [])
        self.sinks = list(sinks) if comm.rank == 0 else []
        self.evaluator = BlockEvaluator(objective, self.noise, cfg.run.seed, cfg.es.noise_stdev, comm.rank, comm.size,
                                        use_action_noise=cfg.es.action_noise_std > 0)
        self.time_offset = time_offset
        self.resumes = list(resumes or [])   # one record per resume: generation, world size, config changes
        self.stop_requested = stop_requested or (lambda: False)
        # returns True once per request (it clears itself), read only at generation boundaries
        self.checkpoint_requested = checkpoint_requested or (lambda: False)
        self.best_eval = max((h["EvalEpRewMean"] for h in self.history if np.isfinite(h.get("EvalEpRewMean", np.nan))),
                             default=-np.inf)
        self._t_start = time.perf_counter()
        self.policy_json = json.dumps(getattr(objective, "spec_dict", lambda: {})())

    # ------------------------------------------------------------------ one generation
    def generation(self) -> dict:
        cfg, st, comm = self.cfg, self.state, self.comm
        escfg = cfg.es
        t0 = time.perf_counter()
        g = st.generation
        d = st.theta.size
        if self.objective.obs_dim:
            self.objective.set_obs_norm(*st.obs.mean_std(escfg.obs_std_floor))
        cutoff = min(st.cutoff, self.max_steps)
        n = escfg.pairs_per_generation
        steal = escfg.schedule == "steal" and comm.size > 1
        self.evaluator.failure_lines = 0
        pairs, obs, evals = [], [], None
        t_roll = t_comm = 0.0
        block = steps = 0
        while True:
            o = self.noise.offsets(cfg.run.seed, g, block, n, d)
            mask = obs_mask(cfg.run.seed, g, block, n, escfg.obs_stat_fraction, self.objective.obs_dim)
            ta = time.perf_counter()
            p_rows, o_rows = self.evaluator.pairs(st.theta, g, block, o, mask, cutoff)
            e_rows = self.evaluator.evals(st.theta, g, escfg.eval_episodes, self.max_steps) if block == 0 else None
            if steal:   # keep working until every rank has finished its static share
                req = comm.ibarrier()
                xp, xo = self.evaluator.extra_pairs(st.theta, g, block, cutoff, escfg.obs_stat_fraction, req.Test)
                req.Wait()
                p_rows, o_rows = np.concatenate([p_rows, xp]), np.concatenate([o_rows, xo])
            tb = time.perf_counter()
            comm.wait_for_all()
            P = comm.allgather_rows(p_rows)
            O = comm.allgather_rows(o_rows)
            if block == 0:
                evals = comm.allgather_rows(e_rows)
            t_roll += tb - ta
            t_comm += time.perf_counter() - tb
            pairs.append(P)
            obs.append(O)
            steps += int(P[:, 2].sum())
            block += 1
            if steps >= escfg.min_timesteps_per_generation or block >= escfg.max_blocks_per_generation:
                break
        batch = _assemble(pairs, obs, evals, self.objective.obs_dim)
        tu = time.perf_counter()
        self.scored_state = st    # the theta this generation's evaluation episodes measured
        self.state, stats = es.tell(st, batch, self.summer, escfg, cfg.optimizer, self.max_steps)
        t_update = time.perf_counter() - tu
        now = time.perf_counter()
        times = {"generation": now - t0, "elapsed": self.time_offset + now - self._t_start,
                 "rollout": t_roll, "comm": t_comm, "update": t_update}
        m = generation_metrics(batch, stats, self.state.generation, self.state, times, block)
        self.history.append(m)
        for sink in self.sinks:
            sink(m)
        return m

    # ------------------------------------------------------------------ invariants and decisions
    def check_replicas(self) -> None:
        """Every rank compares the sha256 of its whole state with every other rank's; on a mismatch
        every rank raises the same ReplicaMismatch naming the groups of ranks that differ."""
        digest = np.frombuffer(es.state_digest(self.state), dtype=np.uint8).astype(np.float64)
        rows = self.comm.allgather_rows(digest.reshape(1, -1))
        groups: dict[bytes, list[int]] = {}
        for r, row in enumerate(rows):
            groups.setdefault(row.astype(np.uint8).tobytes(), []).append(r)
        if len(groups) > 1:
            desc = "; ".join(f"ranks {v} hold state {k[:4].hex()}" for k, v in groups.items())
            raise ReplicaMismatch(f"replica check failed after generation {self.state.generation}: {desc}. "
                                  "The replicas diverged (non-deterministic env, library or hardware difference); "
                                  "resume from the last checkpoint after fixing the cause")

    def _budget_reached(self) -> bool:
        rc, st = self.cfg.run, self.state
        if rc.generations and st.generation >= rc.generations:
            return True
        if rc.max_timesteps and st.timesteps_so_far >= rc.max_timesteps:
            return True
        if rc.target_return is not None and self.target_reached():
            return True
        return bool(rc.max_seconds and self.time_offset + time.perf_counter() - self._t_start >= rc.max_seconds)

    def target_reached(self) -> bool:
        """The trailing ``run.target_window``-generation mean of EvalEpRewMean is >= ``run.target_return``
        (the same rule as ``esmpi.paper.first_crossing``; the history spans resumes)."""
        rc = self.cfg.run
        return target_reached(self.history, rc.target_return, rc.target_window)

    def decide(self) -> int:
        """One integer OR over ranks: every rank leaves the loop (or checkpoints) at the same generation."""
        bits = (STOP if self._budget_reached() else 0) | (SIGNALLED if self.stop_requested() else 0)
        bits |= CHECKPOINT if self.checkpoint_requested() else 0
        return self.comm.any_flags(bits)

    # ------------------------------------------------------------------ files (rank 0)
    def save_checkpoint(self, path: Path, state: es.ESState | None = None) -> Path:
        return checkpoint.save(path, state or self.state, self.history, self.config_json(), world_size=self.comm.size,
                               policy_json=self.policy_json, mpi_library=getattr(self.comm, "library", ""),
                               extra_attrs={"resumes_json": json.dumps(self.resumes)})

    def config_json(self) -> str:
        return json.dumps(self.cfg.to_dict())

    def _checkpoint_files(self, m: dict, final: bool, now: bool = False) -> None:
        if self.comm.rank != 0 or self.run_dir is None:
            return
        ck = self.run_dir / "checkpoints"
        ck.mkdir(exist_ok=True)
        g = self.state.generation
        every = self.cfg.checkpoint.every
        if final or now or (every and g % every == 0):
            path = self.save_checkpoint(ck / f"gen_{g:06d}.h5")
            _point_latest(self.run_dir / "latest.h5", path)
            old = sorted(ck.glob("gen_*.h5"))[:-self.cfg.checkpoint.keep_last]
            for p in old:
                p.unlink()
        ev = m.get("EvalEpRewMean", np.nan)
        if np.isfinite(ev) and ev > self.best_eval:
            # history row g evaluates theta *before* generation g's update: save that state
            self.best_eval = ev
            self.save_checkpoint(ck / "best.h5", self.scored_state)

    # ------------------------------------------------------------------ the loop
    def run(self) -> es.ESState:
        every = self.cfg.checks.replica_check_every
        bits = self.decide()
        # a checkpoint request (SIGUSR2) that arrived during start-up is served at the first
        # generation boundary, not dropped
        pending = bits & CHECKPOINT
        self.stopped_by = bits = bits & ~CHECKPOINT
        if bits & SIGNALLED:
            # stopped before the first generation: checkpoint the state we start from, so that the
            # "continue with --resume" printed on exit 75 holds
            self._checkpoint_files({}, final=True)
        while not bits:
            m = self.generation()
            if every and self.state.generation % every == 0:
                self.check_replicas()
            bits = self.decide() | pending
            pending = 0
            self._checkpoint_files(m, final=bool(bits & ~CHECKPOINT), now=bool(bits & CHECKPOINT))
            self.stopped_by = bits = bits & ~CHECKPOINT
        if every:
            self.check_replicas()
        # no rank leaves before rank 0 has written the final checkpoint (a launcher may kill the job
        # on the first rank's exit)
        self.comm.barrier()
        return self.state


def _point_latest(link: Path, target: Path) -> None:
    tmp = link.with_name(link.name + ".tmp")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(Path(target).relative_to(link.parent))
    tmp.replace(link)


def _assemble(episodes, obs, evals, obs_dim) -> es.Batch:
    """Concatenate the blocks and put every gathered row back in global episode order
    (episode ``2 * pair + sign``; static pairs by block and index, then any 'steal' extras)."""
    P = np.concatenate(episodes)
    P = P[np.argsort(P[:, 0], kind="stable")].reshape(-1, 2, EP_W)
    if not (np.all(P[:, 0, 0] % 2 == 0) and np.array_equal(P[:, 1, 0], P[:, 0, 0] + 1)):
        raise RuntimeError("gathered episodes do not form complete pairs")   # a bug, never user input
    O = np.concatenate([o.reshape(-1, 2 + 2 * obs_dim) for o in obs])
    O = O[np.argsort(O[:, 0], kind="stable")]
    E = evals.reshape(-1, 4)
    E = E[np.argsort(E[:, 0], kind="stable")]
    return es.Batch(
        offsets=P[:, 0, 4].astype(np.int64),
        returns=P[:, :, 1].copy(),
        lengths=P[:, :, 2].astype(np.int64),
        failed=P[:, :, 3] != 0,
        obs_sum=O[:, 2 : 2 + obs_dim],
        obs_sumsq=O[:, 2 + obs_dim :],
        obs_count=O[:, 1],
        eval_returns=E[:, 1].copy(),
        eval_lengths=E[:, 2].astype(np.int64),
        eval_failed=E[:, 3] != 0,
    )
