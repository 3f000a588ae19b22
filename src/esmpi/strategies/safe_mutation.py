"""Safe mutations through output gradients (SM-G; Lehman, Chen, Clune & Stanley 2017) for the Deep GA.

With ``ga.mutation = "sm_g_sum" | "sm_g_abs" | "sm_g_so"`` a child of parent p is

    theta = theta_p + clip(sigma * eps / max(s_p, floor), -clip, clip)    (``policies.sensitivity.safe_mutation``)

with ``s_p`` the sensitivity of the policy's raw outputs to each weight over ``ga.smg_states`` states
of parent p (SUM and ABS: one (d,) vector per parent; SO: per child, from the parent's gradients and
the child's direction eps); ``floor`` = ``ga.smg_floor`` (authors: 0.01), ``clip`` = ``ga.smg_clip``
(authors: 0.2). Those states are the parent's own: each generation with parents starts
with a **probe round**, one PROBE candidate per parent (``base = p``, unperturbed, addressed
``(GA_PROBE, g, p)``, run to the env's own limit, not counted in the budget) whose episode keeps a
seeded sample of ``smg_states`` raw observations (the candidate column ``keep_states``; a recurrent
policy keeps the episode's first ``smg_states`` observations instead, one sequence from the reset). The samples
are allgathered with the round's results and sorted by candidate index, so every rank holds the same
states, computes the same gradients at the current observation normalisation (the one the probe and
the children run with) and the same sensitivities: ``SafeMutation``, a derived cache of one
generation (DESIGN.md rule 5), rebuilt from (state, g, probe round), never checkpointed. A generation
always runs whole, so a resume simply redoes its probe round.

A parent whose probe episode failed (NaN, env exception) has no states: its sensitivity is 0, which
``safe_mutation`` treats as 1 (a plain mutation, clipped per weight). Its state is never touched.

Children are no longer ``parent + sigma * eps``, and rebuilding a lineage would need every
ancestor's sensitivities at its own generation's normalisation, which the state does not hold. So
the state under SM-G (``ga.SMGState``) also stores the T parents' thetas; the genomes are kept (they
name the lineage) but do not rebuild theta. docs/ga.md says why.
"""

from __future__ import annotations

import hashlib

import numpy as np

from .. import candidates as C
from .. import seeding
from ..errors import ConfigError
from ..policies.sensitivity import safe_mutation, sensitivity

METHOD = {"sm_g_sum": "sum", "sm_g_abs": "abs", "sm_g_so": "so"}


def probe_table(g: int, n_parents: int, d: int, k: int) -> np.ndarray:
    """Round 0 of an SM-G generation: parent p's probe episode, keeping k of its raw observations."""
    t = C.table(n_parents)
    t["index"] = t["slot"] = np.arange(n_parents)
    t["kind"] = C.PROBE
    t["base"] = np.arange(n_parents)
    t["hi"] = d
    t["keep_states"] = k
    C.set_addr(t, seeding.GA_PROBE, g, np.arange(n_parents))
    return t


class SafeMutation:
    """One generation's per-parent sensitivities (SUM, ABS) or output gradients (SO), and children."""

    def __init__(self, mutation: str, jacobians, floor: float = 0.01, clip: float = 0.2):
        if jacobians is None:
            raise ConfigError(f"ga.mutation = '{mutation}' needs output gradients, which this objective's policy "
                              "does not provide (SM-G supports the MLP and GRU policies of gym objectives): set ga.mutation = 'plain'")
        self.method, self.jacobians = METHOD[mutation], jacobians
        self.floor, self.clip = floor, clip
        self.key = None
        self.per_parent: list[np.ndarray] = []
        self.so_memo: dict = {}         # SO: (parent, offset) -> the child's sensitivity (validation re-runs children)

    def prepare(self, g: int, parents: np.ndarray, probe: C.Round) -> None:
        """Compute the cache for generation g from the parents' thetas (n, d) and the gathered probe round
        (once per generation: ``ask`` of the children's round and ``tell`` both call it)."""
        res = probe.results
        key = (g, hashlib.sha256(parents.tobytes()).digest(),
               hashlib.sha256(res.states.tobytes() if res.states is not None else b"").digest())
        if self.key == key:
            return
        cands, _ = probe.rows(C.PROBE)
        self.per_parent, self.so_memo = [], {}
        for p, c in enumerate(cands):
            states = probe.results.kept_states(int(c["index"]))
            d = parents.shape[1]
            if states.shape[0] == 0:           # the probe failed: no states, a plain (clipped) mutation
                self.per_parent.append(np.zeros(d, np.float32))
                continue
            G = self.jacobians(parents[p], states)
            self.per_parent.append(G if self.method == "so" else sensitivity(G, self.method))
        self.key = key

    def child(self, p: int, base: np.ndarray, eps: np.ndarray, sigma, out: np.ndarray, offset: int = -1) -> np.ndarray:
        """``out = base + safe_mutation(base, eps, s_p, sigma)`` (float32; the same bits on every rank);
        ``offset`` (that of eps) lets SO reuse a child's sensitivity within the generation."""
        s = self.per_parent[p]
        if s.ndim == 3:                        # SO: the sensitivity along this child's direction
            memo = self.so_memo.get((p, offset)) if offset >= 0 else None
            if memo is None:
                memo = sensitivity(s, "so", eps)
                if offset >= 0:
                    self.so_memo[(p, offset)] = memo
            s = memo
        return np.add(base, safe_mutation(base, eps, s, sigma, self.floor, self.clip), out=out)
