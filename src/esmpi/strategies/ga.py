"""Deep GA and random search (Such et al. 2017, Algorithm 1), with seed-encoded genomes.

Population N, truncation T, mutation power sigma, no crossover (``[ga]`` in the config). Per
generation g, two rounds of the one loop:

- round 0, TRAIN: the children, one episode each. Generation 0 (and every generation of random
  search): fresh initialisations (base -1, ``init = g N + i``). Later: N - 1 children, child i of
  parent ``p_i`` (uniform over the T parents, ``rng(GA_PARENT, g)``) with a new noise offset
  (``rng(GA_MUTATION, g)``): ``theta_i = theta_{p_i} + sigma * eps_i``, one axpy from the parent
  cache. The elite is the N-th individual, carried unmutated; as in the paper's Algorithm 1 it is not
  scored on a training episode (its fitness is its validation). With them, EVAL: ``ga.test_episodes``
  episodes of the current elite (its test return, the history's EvalEpRewMean; not counted in the
  budget, as every EVAL row). Like ES's evaluation of theta, history row g measures the state
  generation g started from, with the observation normalisation that state holds: what
  ``best.h5``, ``esmpi eval`` and ``load_policy`` deploy. Generation 0 has no elite yet, so no test.
- round 1, VALIDATE: the elite candidates, V episodes each (addressed by ``(GA_VALIDATE, g, i, e)``,
  i the individual, N - 1 for the elite): the top k children (generation 0), or the previous elite
  and the top k - 1 children. These episodes count as training (the paper counts them).

``tell``: the elite is the candidate with the best validation mean; the parents of the next
generation are ``[elite] + the children in fitness order without the elite``, the first T (the
paper's ``P <- [Elite, P - {Elite}]``). Ties are broken deterministically: children by index
(a stable sort of the fitness), elite candidates in the order [previous elite, children by
fitness], so an equal score keeps the previous elite. Failed episodes (NaN, env exception) have
fitness -inf and rank last; a validation mean with any failed episode is -inf.

Random search (``ga.mode = "random_search"``) is the same algorithm with T = 0: no parents, so
every child is a fresh initialisation, and the elite (re-validated each generation against the
new top k - 1) is the best found by validation. ``ga.truncation = 0`` under ``mode = "ga"`` is the
same run, bit for bit (a test checks it).

State: the genomes of the T parents and of the elite (``genome.py``), the elite's validation mean,
and the elite's theta (d,) float32: the policy ``load_policy``/``esmpi eval`` deploy without
rebuilding a noise table. The parents' thetas are a derived cache, never stored.

Safe mutations (``ga.mutation = "sm_g_*"``, ``safe_mutation.py``): a generation with parents starts
with a probe round (round 0: one episode per parent keeping its recorded states), so the children
are round 1 and the validation round 2; children are ``parent + safe_mutation(...)``, and the state
(``SMGState``) also stores the parents' thetas, since genomes no longer rebuild them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .. import candidates as C
from .. import seeding
from ..state import NONFINITE, VAR
from ..metrics import l2norm
from . import Strategy
from .genome import ParentCache, mutate, pack, unpack
from .safe_mutation import SafeMutation, probe_table


@dataclass(frozen=True)
class GAState:
    theta: np.ndarray                                    # (d,) float32: the elite's parameters (theta0 before generation 0)
    elite: np.ndarray = field(metadata=VAR)              # (m,) int64: the elite's genome [init, offset_1, ...]; empty before generation 0
    parents: np.ndarray = field(metadata=VAR)            # (sum of lengths,) int64: the parents' genomes, concatenated; parent 0 = the elite
    parent_lengths: np.ndarray                           # (T,) int64: genome length of each parent (0 = none yet)
    elite_validation: float = field(default=-math.inf, metadata=NONFINITE)   # the elite's validation mean

    def genomes(self) -> list[np.ndarray]:
        return unpack(self.parents, self.parent_lengths)

    def encoding(self) -> dict:
        """Bytes of the compact encoding (genomes) against float32 parameter vectors (``esmpi info``)."""
        d, n_par = int(self.theta.size), int(np.count_nonzero(self.parent_lengths))
        elite = max(int(self.elite.size), 1) * 8
        return {"elite_genome_bytes": int(self.elite.size) * 8, "elite_param_bytes": 4 * d, "ratio": 4 * d / elite,
                "stored_genome_bytes": 8 * int(self.parents.size + self.elite.size),
                "stored_param_bytes_if_not": 4 * d * (n_par + 1)}


@dataclass(frozen=True)
class SMGState(GAState):
    """``GAState`` plus the parents' parameters, under SM-G (whose children genomes cannot rebuild)."""

    parent_thetas: np.ndarray = field(default=None, metadata=VAR)   # (T', d) float32: row p = parent p (0: the elite)

    def encoding(self) -> dict:
        return {**super().encoding(), "smg_parent_theta_bytes": int(self.parent_thetas.nbytes)}


def order_by_fitness(returns: np.ndarray, failed: np.ndarray) -> np.ndarray:
    """Indices sorted by fitness, best first; failed/non-finite last; ties by index."""
    f = np.where(failed | ~np.isfinite(returns), -np.inf, returns)
    return np.argsort(-f, kind="stable")


def validation_means(returns: np.ndarray, failed: np.ndarray, V: int) -> np.ndarray:
    """(n,) mean of each candidate's V returns (exactly rounded: ``math.fsum``, the same on every CPU)."""
    out = []
    for r, f in zip(returns.reshape(-1, V), failed.reshape(-1, V)):
        out.append(-math.inf if f.any() or not np.all(np.isfinite(r)) else math.fsum(r) / V)
    return np.array(out, np.float64)


class GA(Strategy):
    name = "ga"
    history_keys = ("GAEliteValidation", "GAValidationMean", "GAEliteNew", "GAGenomeLength")

    def __init__(self, cfg, ctx):
        super().__init__(cfg, ctx)
        a = cfg.ga
        self.N, self.k, self.V, self.sigma = a.population, a.validation_top, a.validation_episodes, a.sigma
        self.T = 0 if a.mode == "random_search" else a.truncation
        self.cache: ParentCache | None = None
        self.smg: SafeMutation | None = None
        if a.mutation != "plain":
            self.history_keys = GA.history_keys + ("GAProbeTimesteps",)

    def attach(self, noise, alloc=None, barrier=None, fresh=None, jacobians=None) -> None:
        super().attach(noise, alloc, barrier, fresh, jacobians)
        if self.cfg.ga.mutation != "plain":
            a = self.cfg.ga
            self.smg = SafeMutation(a.mutation, jacobians, a.smg_floor, a.smg_clip)
            self.mutation = self._smg_child        # Evaluator's hook: children materialise safely
        elif self.T:
            self.cache = ParentCache(self.T, self.ctx.d, noise, fresh, self.sigma, self.alloc, self.barrier)

    def describe(self) -> str:
        smg = "" if self.cfg.ga.mutation == "plain" else f", {self.cfg.ga.mutation} over {self.cfg.ga.smg_states} states"
        return f"GA population {self.N}, truncation {self.T}{smg}" if self.T else f"random search, population {self.N}"

    def init(self, theta0: np.ndarray) -> GAState:
        e = np.zeros(0, np.int64)
        s = GAState(np.asarray(theta0, np.float32).copy(), e, e.copy(), np.zeros(self.T, np.int64))
        if self.cfg.ga.mutation != "plain":
            s = SMGState(**vars(s), parent_thetas=np.zeros((0, self.ctx.d), np.float32))
        return s

    def bases(self, s: GAState) -> np.ndarray:
        if isinstance(s, SMGState):
            return s.parent_thetas
        genomes = s.genomes()
        if not genomes:
            return np.zeros((0, self.ctx.d), np.float32)
        return self.cache.rows(genomes)

    # ------------------------------------------------------------------ SM-G (safe_mutation.py)
    def probes(self, s: GAState) -> int:
        """1 if generations of this state start with SM-G's probe round (SM-G and parents), else 0."""
        return int(isinstance(s, SMGState) and s.parent_thetas.shape[0] > 0)

    def _smg_child(self, c, base, eps, out):
        return self.smg.child(int(c["base"]), base, eps, c["scale"], out, int(c["offset"]))

    def _child_theta(self, parent: np.ndarray, p: int, offset: int) -> np.ndarray:
        """(d,) float32: the child of parent row p with this offset (plain or SM-G), as the evaluator built it."""
        out = np.empty(self.ctx.d, np.float32)
        if self.smg is not None:
            return self.smg.child(p, parent, self.noise.get(int(offset), self.ctx.d), np.float32(self.sigma), out,
                                  int(offset))
        return mutate(out, parent, self.noise, offset, self.sigma)

    # ------------------------------------------------------------------ the population
    def children(self, s: GAState, g: int) -> dict:
        """Generation g's children: (n,) arrays base, init, offset (the candidate columns)."""
        n_par = int(np.count_nonzero(s.parent_lengths))
        n = self.N - 1 if s.elite.size else self.N
        if n_par == 0:
            return {"base": np.full(n, -1), "init": g * self.N + np.arange(n, dtype=np.int64), "offset": np.full(n, -1)}
        base = seeding.rng(self.ctx.run_seed, seeding.GA_PARENT, g).integers(0, n_par, size=n, dtype=np.int64)
        off = seeding.rng(self.ctx.run_seed, seeding.GA_MUTATION, g).integers(
            0, self.ctx.noise_size - self.ctx.d + 1, size=n, dtype=np.int64)
        return {"base": base, "init": np.full(n, -1), "offset": off}

    def _fill(self, t: np.ndarray, s: GAState, kids: dict, member: np.ndarray) -> None:
        """Candidate columns of individuals ``member`` (child index, or -1 for the previous elite)."""
        elite = member < 0
        m = np.where(elite, 0, member)
        t["base"] = np.where(elite, 0, kids["base"][m])
        t["init"] = np.where(elite, -1, kids["init"][m])
        t["offset"] = np.where(elite, -1, kids["offset"][m])
        if elite.any() and not np.count_nonzero(s.parent_lengths):   # random search: the elite is a fresh init
            t["base"][elite], t["init"][elite] = -1, s.elite[0]
        t["sign"] = 1
        t["hi"] = self.ctx.d
        t["scale"] = np.float32(self.sigma)

    def elite_candidates(self, s: GAState, g: int, round0) -> np.ndarray:
        """Individuals validated in generation g: [-1 (previous elite)] + the top k (or k - 1) children."""
        _, pos = round0.rows(C.TRAIN)
        order = order_by_fitness(round0.results.returns[pos], round0.results.failed[pos])
        top = self.k - 1 if s.elite.size else self.k
        return np.concatenate([[-1] if s.elite.size else [], order[:top]]).astype(np.int64)

    def choose_elite(self, s: GAState, g: int, rounds) -> tuple[int, np.ndarray]:
        """(individual of the new elite (-1: the previous one), validation means of the candidates)."""
        k = self.probes(s)
        cand = self.elite_candidates(s, g, rounds[k])
        _, pos = rounds[k + 1].rows(C.VALIDATE)
        means = validation_means(rounds[k + 1].results.returns[pos], rounds[k + 1].results.failed[pos], self.V)
        return int(cand[int(np.argmax(means))]), means    # argmax: the first of equal maxima

    def ask(self, s: GAState, g: int, r: int, prior: list):
        kids = self.children(s, g)
        n = kids["base"].size
        k = self.probes(s)
        if k and r == 0:
            return probe_table(g, s.parent_thetas.shape[0], self.ctx.d, self.cfg.ga.smg_states)
        if k:
            self.smg.prepare(g, s.parent_thetas, prior[0])
            r, prior = r - 1, prior[1:]
        if r == 0:
            t = C.table(n)
            t["index"] = t["slot"] = np.arange(n)
            t["kind"] = C.TRAIN
            self._fill(t, s, kids, np.arange(n))
            frac = self.cfg.es.obs_stat_fraction
            if self.ctx.obs_dim and frac > 0:
                t["record_obs"] = seeding.rng(self.ctx.run_seed, seeding.GA_OBS_STAT, g).random(n) < frac
            C.set_addr(t, seeding.GA_EPISODE, g, np.arange(n))
            if s.elite.size and self.cfg.ga.test_episodes:     # the current elite's test episodes
                e = C.evaluations(g, self.cfg.ga.test_episodes)
                self._fill(e, s, kids, np.full(e.size, -1))
                t = np.concatenate([t, e])
            return t
        if r == 1:
            cand = self.elite_candidates(s, g, prior[0])
            V = self.V
            t = C.table(cand.size * V)
            t["index"] = t["slot"] = np.arange(t.size)
            t["kind"] = C.VALIDATE
            member = np.repeat(cand, V)
            self._fill(t, s, kids, member)
            C.set_addr(t, seeding.GA_VALIDATE, g, np.where(member < 0, self.N - 1, member), np.tile(np.arange(V), cand.size))
            return t
        return None

    # ------------------------------------------------------------------ selection
    def tell(self, s: GAState, g: int, rounds: list, noise) -> tuple[GAState, dict]:
        kids = self.children(s, g)
        who, means = self.choose_elite(s, g, rounds)
        parents = s.genomes()
        cache = self.bases(s)
        k = self.probes(s)
        if k:
            self.smg.prepare(g, s.parent_thetas, rounds[0])

        def genome(i):
            if kids["offset"][i] < 0:
                return np.array([kids["init"][i]], np.int64)
            return np.append(parents[kids["base"][i]], kids["offset"][i])

        if who < 0:
            elite, theta = s.elite, s.theta
        else:
            elite = genome(who)
            if kids["offset"][who] < 0:
                theta = np.array(self.fresh(int(kids["init"][who])), np.float32)
            else:
                theta = self._child_theta(cache[kids["base"][who]], int(kids["base"][who]), kids["offset"][who])
        thetas = None
        if self.T:
            _, pos = rounds[k].rows(C.TRAIN)
            order = order_by_fitness(rounds[k].results.returns[pos], rounds[k].results.failed[pos])
            rest = [i for i in order[: self.T] if i != who][: self.T - 1]
            chosen = [elite] + [genome(i) for i in rest]
            flat, lengths = pack(chosen)
            if self.smg is not None:      # SM-G: the parents' thetas are state (their genomes do not rebuild them)
                def child_theta(i):
                    if kids["offset"][i] < 0:
                        return np.asarray(self.fresh(int(kids["init"][i])), np.float32)
                    return self._child_theta(cache[kids["base"][i]], int(kids["base"][i]), kids["offset"][i])
                thetas = np.stack([theta] + [child_theta(i) for i in rest]).astype(np.float32, copy=False)
        else:
            flat, lengths = np.zeros(0, np.int64), np.zeros(0, np.int64)
        best = float(means.max())
        stats = {"GAEliteValidation": best, "GAValidationMean": float(np.mean(means[np.isfinite(means)]))
                 if np.isfinite(means).any() else math.nan, "GAEliteNew": int(who >= 0),
                 "GAGenomeLength": int(elite.size), "Norm": l2norm(theta),
                 "GradNorm": math.nan, "UpdateRatio": math.nan}
        new = GAState(theta, np.asarray(elite, np.int64), flat, lengths, best)
        if self.smg is None:
            return new, stats
        stats["GAProbeTimesteps"] = int(rounds[0].results.lengths.sum()) if k else 0
        return SMGState(**vars(new), parent_thetas=thetas), stats
