"""The loop: rounds of ask -> evaluate -> allgather -> tell, the same for every strategy, every rank equal.

Per generation ``g``, on every rank (``Trainer.generation``):
    set the observation normaliser from the state  ->  while ``strategy.ask`` gives a candidate table
    for round r: evaluate this rank's share (candidate c on rank ``c.slot % size``), allgather the
    scalar result rows and observation sums, sort them by candidate index  ->  ``strategy.tell``
    (identical update everywhere)  ->  ``advance``: merge the observation sums in candidate order,
    the adaptive cutoff, the counters  ->  metrics  ->  replica check every N generations  ->
    collective stop/checkpoint decision (one integer OR-reduction).

Nothing but scalar rows and small observation sums crosses the network; theta is never sent.
Rank 0 writes files (checkpoints, progress); every decision is agreed by all ranks.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from . import candidates as C
from . import checkpoint, seeding, strategies
from .errors import ConfigError, ReplicaMismatch
from .evaluate import Evaluator, fresh_theta
from .metrics import generation_metrics, target_reached
from .noise import NodeSplitSum, NoiseTable
from .obs_norm import ObsStats
from .state import TrainState, digest

STOP = 1          # budget reached (generations, timesteps, wall time or run.target_return)
SIGNALLED = 2     # a rank received SIGTERM/SIGINT/SIGUSR1: checkpoint and stop
CHECKPOINT = 4    # a rank received SIGUSR2: checkpoint now and go on


def context(cfg, objective) -> strategies.Context:
    return strategies.Context(run_seed=cfg.run.seed, d=objective.num_params, noise_size=cfg.noise.size,
                              obs_dim=objective.obs_dim, bc_dim=getattr(objective, "bc_dim", 0),
                              max_episode_steps=objective.max_episode_steps)


def initial_state(cfg, objective, strategy) -> TrainState:
    """Generation 0: theta0 from ``(run seed, INIT_THETA)``, the strategy's own state around it."""
    theta0 = objective.initial_theta(seeding.rng(cfg.run.seed, seeding.INIT_THETA))
    max_steps = objective.max_episode_steps
    cutoff = min(cfg.es.cutoff_initial, max_steps) if cfg.es.episode_cutoff == "adaptive" else max_steps
    extra = objective.initial_objective_state(cfg.run.seed) if hasattr(objective, "initial_objective_state") else {}
    return TrainState(strategy.init(theta0), ObsStats.initial(objective.obs_dim), cutoff=int(cutoff), extra=extra)


def advance(ts: TrainState, strat, rounds: list, es_cfg, max_cutoff: int, counts_validation: bool = True) -> TrainState:
    """The loop's own state after a generation: observation sums merged in (round, candidate) order,
    the reference's adaptive cutoff, the counters (TRAIN, and VALIDATE if the strategy counts it)."""
    obs = ts.obs
    if obs.sum.size:
        res = [rd.results for rd in rounds if rd.results.obs_count.size]
        if res:
            obs = obs.merged(np.concatenate([r.obs_sum for r in res]), np.concatenate([r.obs_sumsq for r in res]),
                             np.concatenate([r.obs_count for r in res]))
    kinds = (C.TRAIN, C.VALIDATE) if counts_validation else (C.TRAIN,)
    lengths = np.concatenate([rd.results.lengths[rd.rows(k)[1]] for rd in rounds for k in kinds])
    train_lengths = np.concatenate([rd.results.lengths[rd.rows(C.TRAIN)[1]] for rd in rounds])
    cutoff = ts.cutoff
    if es_cfg.episode_cutoff == "adaptive" and train_lengths.size:
        if np.mean(train_lengths == cutoff) >= es_cfg.cutoff_increase_threshold:
            cutoff = min(int(es_cfg.cutoff_increase_ratio * cutoff), max_cutoff)
    return replace(ts, strategy=strat, obs=obs, generation=ts.generation + 1,
                   episodes_so_far=ts.episodes_so_far + int(lengths.size),
                   timesteps_so_far=ts.timesteps_so_far + int(lengths.sum()), cutoff=cutoff)


class Trainer:
    """Owns the noise table, the objective, the strategy and the current ``TrainState``; ``run()`` trains.

    ``state``/``history`` may come from a checkpoint (resume); otherwise the state is initialised from
    ``(run seed, INIT_THETA)`` by the objective and the strategy.
    """

    def __init__(self, cfg, objective, comm, *, run_dir: str | Path | None = None, state: TrainState | None = None,
                 history: list[dict] | None = None, sinks=(), time_offset: float = 0.0, stop_requested=None,
                 resumes: list[dict] | None = None, checkpoint_requested=None):
        self.cfg, self.objective, self.comm = cfg, objective, comm
        self.run_dir = Path(run_dir) if run_dir is not None else None
        d = objective.num_params
        if cfg.noise.size < d:
            raise ConfigError(f"noise.size = {cfg.noise.size} is smaller than the policy's {d} parameters; "
                              f"set noise.size >= {d} (a table 100x larger keeps perturbations nearly independent)")
        self.strategy = strategies.make(cfg, context(cfg, objective))
        self.noise = NoiseTable(cfg.noise.size, cfg.noise.seed, comm, stop_requested=stop_requested)
        self.strategy.attach(self.noise, comm.node_shared_array, comm.node_barrier,
                             fresh=lambda init: fresh_theta(objective, cfg.run.seed, init),
                             jacobians=getattr(objective, "output_jacobians", None))
        # the update's noise sum: split over the ranks of a node (same bits, 1/k of the reading each)
        self.summer = NodeSplitSum(self.noise, comm, d) if getattr(comm, "node_size", 1) > 1 else self.noise
        self.max_steps = objective.max_episode_steps
        self.state = state if state is not None else initial_state(cfg, objective, self.strategy)
        if self.state.extra and hasattr(objective, "set_objective_state"):
            objective.set_objective_state(self.state.extra)
        self.history: list[dict] = list(history or [])
        self.sinks = list(sinks) if comm.rank == 0 else []
        self.evaluator = Evaluator(objective, self.noise, cfg.run.seed, comm.rank,
                                   use_action_noise=cfg.es.action_noise_std > 0, mutation=self.strategy.mutation)
        self.time_offset = time_offset
        self.resumes = list(resumes or [])   # one record per resume: generation, world size, config changes
        self.stop_requested = stop_requested or (lambda: False)
        # returns True once per request (it clears itself), read only at generation boundaries
        self.checkpoint_requested = checkpoint_requested or (lambda: False)
        self.best_eval = max((h["EvalEpRewMean"] for h in self.history if np.isfinite(h.get("EvalEpRewMean", np.nan))),
                             default=-np.inf)
        self._t_start = time.perf_counter()
        self.policy_json = json.dumps(getattr(objective, "spec_dict", lambda: {})())

    @property
    def steal(self) -> bool:
        """The opt-in 'steal' schedule is on (read each round: the benchmark swaps the config)."""
        return self.cfg.es.schedule == "steal" and self.comm.size > 1 and self.strategy.accepts_steal

    @property
    def history_keys(self) -> list[str]:
        from .metrics import HISTORY_KEYS
        return HISTORY_KEYS + [k for k in self.strategy.history_keys if k not in HISTORY_KEYS]

    # ------------------------------------------------------------------ one generation
    def _round(self, cand: np.ndarray, bases: np.ndarray, g: int, r: int, cutoff: int):
        """Evaluate this rank's share of one candidate table and gather everyone's rows."""
        comm, ev = self.comm, self.evaluator
        rows, obs = ev.run(C.mine(cand, comm.rank, comm.size), bases, g, cutoff, self.max_steps)
        if self.steal:   # keep working until every rank has finished its static share
            req = comm.ibarrier()
            xs, xr, xo, k = [], [], [], 0
            while not req.Test():
                x = self.strategy.steal_pair(self.state.strategy, g, r, comm.rank, comm.size, k)
                got = ev.run(x, bases, g, cutoff, self.max_steps, abandon=req.Test)
                if got is None:      # abandoned: a pair counts only whole
                    break
                xs.append(x)
                xr.append(got[0])
                xo.append(got[1])
                k += 1
            req.Wait()
            rows, obs = np.concatenate([rows, *xr]), np.concatenate([obs, *xo])
            mine = np.concatenate(xs) if xs else C.table(0)
            extra = np.stack([mine["index"], mine["offset"]], axis=1).astype(np.float64)
        tb = time.perf_counter()
        comm.wait_for_all()
        R = comm.allgather_rows(rows)
        O = comm.allgather_rows(obs)
        # kept raw states (SM-G's recorded states): gathered only for a table that asks for them
        S = comm.allgather_rows(ev.kept) if cand["keep_states"].any() else None
        if self.steal:           # every rank rebuilds every rank's extra candidates from (index, offset)
            from .strategies.antithetic import extra_rows
            X = comm.allgather_rows(extra).reshape(-1, 2)
            X = X[np.argsort(X[:, 0], kind="stable")]
            cand = np.concatenate([cand, extra_rows(X[:, 0].astype(np.int64), X[:, 1].astype(np.int64),
                                                    self.cfg.es.noise_stdev, self.objective.num_params)])
        res = C.Results.from_rows(R, O, getattr(self.objective, "bc_dim", 0), self.objective.obs_dim, S)
        return C.Round(cand, res), tb

    def generation(self) -> dict:
        cfg, st, strategy = self.cfg, self.state, self.strategy
        t0 = time.perf_counter()
        g = st.generation
        if self.objective.obs_dim:
            self.objective.set_obs_norm(*st.obs.mean_std(cfg.es.obs_std_floor))
        cutoff = min(st.cutoff, self.max_steps)
        bases = strategy.bases(st.strategy)
        self.evaluator.failure_lines = 0
        rounds: list[C.Round] = []
        t_roll = t_comm = 0.0
        while (cand := strategy.ask(st.strategy, g, len(rounds), rounds)) is not None:
            ta = time.perf_counter()
            rd, tb = self._round(cand, bases, g, len(rounds), cutoff)
            rounds.append(rd)
            t_roll += tb - ta
            t_comm += time.perf_counter() - tb
        tu = time.perf_counter()
        self.scored_state = st    # the state this generation's evaluation episodes measured
        strat, stats = strategy.tell(st.strategy, g, rounds, self.summer)
        self.state = advance(st, strat, rounds, cfg.es, self.max_steps, strategy.counts_validation)
        t_update = time.perf_counter() - tu
        now = time.perf_counter()
        times = {"generation": now - t0, "elapsed": self.time_offset + now - self._t_start,
                 "rollout": t_roll, "comm": t_comm, "update": t_update}
        m = generation_metrics(rounds, stats, self.state, times)
        # which env step ran: 1 = esmpi.fastmujoco (bitwise Gymnasium's), 0 = Gymnasium's, NaN = no env
        path = getattr(getattr(self.objective, "env", None), "step_path", None)
        m["EnvStepFast"] = float(path == "fast") if path else math.nan
        self.history.append(m)
        for sink in self.sinks:
            sink(m)
        return m

    # ------------------------------------------------------------------ invariants and decisions
    def check_replicas(self) -> None:
        """Every rank compares the sha256 of its whole state with every other rank's; on a mismatch
        every rank raises the same ReplicaMismatch naming the groups of ranks that differ."""
        digest_ = np.frombuffer(digest(self.state), dtype=np.uint8).astype(np.float64)
        rows = self.comm.allgather_rows(digest_.reshape(1, -1))
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
    def save_checkpoint(self, path: Path, state: TrainState | None = None) -> Path:
        return checkpoint.save(path, state or self.state, self.history, self.config_json(), world_size=self.comm.size,
                               policy_json=self.policy_json, mpi_library=getattr(self.comm, "library", ""),
                               history_keys=self.history_keys, strategy=self.strategy.name,
                               bc_dim=getattr(self.objective, "bc_dim", 0),
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
    def run(self) -> TrainState:
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
