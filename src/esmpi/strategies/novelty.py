"""NS-ES, NSR-ES and NSRA-ES (Conti et al. 2018): OpenAI-ES on a meta-population that seeks novelty.

State: M members (thetas (M, d) float32, one Adam state each), an archive of behaviour
characterisations (BCs; (n, b) float64, grows by one row per generation), each member's last BC,
measured return and NSRA weight. ``novelty.variant`` picks the fitness (``archive.mix``):
'ns' novelty only, 'nsr' the mean of return and novelty ranks, 'nsra' an adaptive mix.

Generation g runs two or more rounds:
- round 0: ``novelty.bc_episodes`` deterministic EVAL episodes of each member in ``to_measure``
  (all M at g = 0, afterwards the member updated at g - 1); their mean BC is the member's BC and
  is appended to the archive, their mean return is the member's return (NSRA's schedule reads it);
- round 1, 2, ...: one member m is drawn with probability proportional to its novelty (mean
  distance to the k nearest archive BCs), from ``rng(run_seed, NS_MEMBER, g)``, and blocks of
  antithetic pairs around it are evaluated exactly as in OpenAI-ES (``antithetic.ask_pairs``);
- ``tell``: every training episode's novelty against the archive (round 0's BC included), the
  variant's mix of centered ranks, the weighted noise sum in pair order, and m's Adam step on
  ``-g + l2coeff * theta_m``. Round 0 of g + 1 then measures m.

``ask`` and ``tell`` recompute round 0's effect on the archive from the same gathered rows, so
both are pure functions of (state, g, rounds). Where this differs from the authors' code
(uber-research/deep-neuroevolution ``es_distributed/nses.py``) is listed in docs/novelty.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from .. import candidates as C
from .. import optim, seeding
from ..errors import ConfigError, NonFiniteTheta
from ..shaping import pair_weights
from ..state import NONFINITE, VAR
from ..metrics import l2norm
from . import Strategy
from . import archive as A
from .antithetic import ask_pairs, gather_pairs


@dataclass(frozen=True)
class NoveltyState:
    thetas: np.ndarray                    # (M, d) float32: the members
    optimizers: list                      # M x optim.OptState
    archive: np.ndarray = field(metadata=VAR)           # (n, b) float64: every BC added so far
    to_measure: np.ndarray = field(metadata=VAR)        # (k,) int64: members round 0 of the next generation measures
    member_bc: np.ndarray                 # (M, b) float64: each member's last measured BC
    member_return: np.ndarray = field(metadata=NONFINITE)   # (M,) float64: last measured mean return (-inf: none)
    best_return: np.ndarray = field(metadata=NONFINITE)     # (M,) float64: NSRA's best so far
    weight: np.ndarray                    # (M,) float64: NSRA's reward weight w in [0, 1]
    stale: np.ndarray                     # (M,) int64: generations since the member's best improved

    @property
    def theta(self) -> np.ndarray:
        """(d,) float32: the member with the best measured return (member 0 before any measurement)."""
        return self.thetas[int(np.argmax(self.member_return))]


class NoveltyES(Strategy):
    name = "novelty_es"

    def __init__(self, cfg, ctx):
        super().__init__(cfg, ctx)
        if ctx.bc_dim == 0:
            raise ConfigError(f"strategy 'novelty_es' needs behaviour characterisations, but env {cfg.env.id!r} "
                              "gives none; use a MuJoCo env (final centre of mass), esmpi/PointMass-v0 or "
                              "esmpi/PointMaze-v0")
        self.nov = cfg.novelty
        M = self.nov.population
        self.history_keys = ("NSMember", "NSArchiveSize", "NSWeight") + tuple(
            f"NS{what}{m}" for what in ("Return", "Novelty", "Weight") for m in range(M))

    # ------------------------------------------------------------------ state
    def init(self, theta0: np.ndarray) -> NoveltyState:
        """Member 0 starts at theta0, member m > 0 at the objective's initialisation addressed
        ``(INIT_THETA, m)`` (``self.fresh``; the authors initialise every member afresh)."""
        M, b, d = self.nov.population, self.ctx.bc_dim, np.asarray(theta0).size
        fresh = self.fresh
        thetas = np.stack([np.asarray(theta0, np.float32)] +
                          [np.asarray(fresh(m) if fresh else theta0, np.float32) for m in range(1, M)])
        return NoveltyState(thetas=thetas, optimizers=[optim.init_state(d) for _ in range(M)],
                            archive=np.zeros((0, b)), to_measure=np.arange(M, dtype=np.int64),
                            member_bc=np.zeros((M, b)), member_return=np.full(M, -np.inf),
                            best_return=np.full(M, -np.inf), weight=np.full(M, float(self.nov.nsra_initial_weight)),
                            stale=np.zeros(M, np.int64))

    def bases(self, s: NoveltyState) -> np.ndarray:
        return s.thetas

    # ------------------------------------------------------------------ rounds
    def _bc_table(self, s: NoveltyState, g: int) -> np.ndarray:
        n = self.nov.bc_episodes
        members = np.repeat(s.to_measure, n)
        e = np.arange(members.size, dtype=np.int64)
        t = C.table(members.size)
        t["index"] = C.EVAL_BASE + e
        t["kind"] = C.EVAL
        t["slot"] = -1 - e
        t["base"] = members
        C.set_addr(t, seeding.NS_BC, g, members, e % n)
        return t

    def measure(self, s: NoveltyState, g: int, rd: C.Round) -> NoveltyState:
        """Round 0's effect: each measured member's mean BC (appended to the archive, in ``to_measure``
        order) and mean return, and NSRA's schedule for it (not at g = 0: that is the first measurement).
        A member whose BC episodes all failed keeps its BC and adds nothing to the archive."""
        _, pos = rd.rows(C.EVAL)
        n, nv = self.nov.bc_episodes, self.nov
        res = rd.results
        archive, bc, ret = [s.archive], s.member_bc.copy(), s.member_return.copy()
        best, weight, stale = s.best_return.copy(), s.weight.copy(), s.stale.copy()
        for p, m in enumerate(s.to_measure):
            rows = pos[p * n:(p + 1) * n]
            ok = [i for i in rows if not res.failed[i]]
            if ok:
                tot_bc, tot_r = np.zeros(bc.shape[1]), 0.0
                for i in ok:                       # fixed order: episode order
                    tot_bc = tot_bc + res.bc[i]
                    tot_r += float(res.returns[i])
                bc[m] = tot_bc / len(ok)
                ret[m] = tot_r / len(ok)
                archive.append(bc[m:m + 1].copy())
            else:
                ret[m] = -np.inf
            if g == 0:
                best[m] = ret[m]
            else:
                weight[m], best[m], stale[m] = A.nsra_weight(float(weight[m]), float(best[m]), int(stale[m]),
                                                             float(ret[m]), nv.nsra_delta, nv.nsra_patience,
                                                             nv.nsra_min_improvement)
        return replace(s, archive=np.concatenate(archive), member_bc=bc, member_return=ret, best_return=best,
                       weight=weight, stale=stale)

    def choose(self, s: NoveltyState, g: int) -> tuple[int, np.ndarray]:
        """(member to update, (M,) member novelties) for a state whose round 0 is already measured."""
        nov = A.novelties(s.archive, s.member_bc, self.nov.k)
        u = float(seeding.rng(self.ctx.run_seed, seeding.NS_MEMBER, g).random())
        return A.select_member(nov, u), nov

    def ask(self, s: NoveltyState, g: int, r: int, prior: list):
        if r == 0:
            return self._bc_table(s, g)
        m, _ = self.choose(self.measure(s, g, prior[0]), g)
        return ask_pairs(self.ctx, self.cfg.es, g, r - 1, prior[1:], base=m, eval_base=None)

    # ------------------------------------------------------------------ update
    def tell(self, s: NoveltyState, g: int, rounds: list, noise) -> tuple[NoveltyState, dict]:
        es_cfg, nv = self.cfg.es, self.nov
        s = self.measure(s, g, rounds[0])
        m, member_nov = self.choose(s, g)
        offsets, returns, _, failed = gather_pairs(rounds[1:])
        bcs = np.concatenate([rd.results.bc[rd.rows(C.TRAIN)[1]] for rd in rounds[1:]]).reshape(-1, 2, s.archive.shape[1])
        nov_n2 = A.novelties(s.archive, bcs, nv.k)
        nov_n2[failed] = -np.inf
        w_m = float(s.weight[m])
        shaped = A.mix(nv.variant, returns, nov_n2, w_m)
        d = s.thetas.shape[1]
        grad = noise.weighted_sum(pair_weights(shaped), offsets, d)
        grad /= np.float32(returns.size)
        theta = s.thetas[m]
        opt_kwargs = self.cfg.optimizer.model_dump()
        step, opt_m = optim.OPTIMIZERS[opt_kwargs.pop("name")](
            s.optimizers[m], -grad + np.float32(es_cfg.l2coeff) * theta, **opt_kwargs)
        new = (theta + step).astype(np.float32)
        if not np.all(np.isfinite(new)):
            raise NonFiniteTheta(f"member {m} became non-finite at generation {g + 1}; lower optimizer.stepsize "
                                 "(all ranks stopped; the last checkpoint is intact)")
        thetas = s.thetas.copy()
        thetas[m] = new
        opts = list(s.optimizers)
        opts[m] = opt_m
        out = replace(s, thetas=thetas, optimizers=opts, to_measure=np.array([m], np.int64))
        norm = l2norm(new)
        stats = {"GradNorm": l2norm(grad),
                 "UpdateRatio": float(l2norm(step) / max(norm, 1e-30)), "Norm": norm,
                 "NSMember": m, "NSArchiveSize": int(s.archive.shape[0]), "NSWeight": w_m}
        for k in range(thetas.shape[0]):
            stats[f"NSReturn{k}"] = float(s.member_return[k])
            stats[f"NSNovelty{k}"] = float(member_nov[k])
            stats[f"NSWeight{k}"] = float(s.weight[k])
        return out, stats
