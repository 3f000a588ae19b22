"""The wire schema of the loop: candidate tables (what to evaluate) and gathered results (what came back).

A strategy's ``ask`` returns a **candidate table**: a structured array with one row per evaluation,
``CANDIDATE`` below. Every rank rebuilds the same table from the strategy state (nothing about a
candidate is ever sent); candidate ``c`` runs on rank ``c["slot"] % size``; its results come back
keyed by ``c["index"]`` and are sorted by it after the allgather, so ``tell`` sees identical arrays
at any world size (DESIGN.md, rule 3).

A candidate's parameters are ``bases[base]`` (or a fresh initialisation addressed by ``init`` when
``base == -1``), with ``sign * scale * table[offset + lo : offset + hi]`` added to the slice
``[lo, hi)`` when ``offset >= 0`` (``sign`` +1 or -1). Its episode (or mini-batch) is addressed by
``addr[:addr_len]``: the seed is ``seeding.episode_seed(run_seed, *addr)`` and the action-noise
stream ``seeding.rng(run_seed, *addr)``, a pure function of the address, never of the rank.

Gathered rows are float64: results ``[index, return, length, failed, bc_0 .. bc_{b-1}]``, for
candidates with ``record_obs``, observation sums ``[index, count, sum_0 .. sum_{o-1}, sumsq_0 ..]``,
and for candidates with ``keep_states = k`` (only a table that has some gathers them), one row
``[index, obs_0 .. obs_{o-1}]`` per kept raw observation, in episode order (at most k per candidate;
none if the episode failed). ``Results`` holds them sorted by index (a stable sort: the episode
order of a candidate's states survives). Indices are unique within a round and stay below 2**53
(exact in float64); evaluation episodes are numbered from ``EVAL_BASE``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import seeding

TRAIN, EVAL, VALIDATE, PROBE = 0, 1, 2, 3        # kinds: VALIDATE rows count as training episodes; EVAL and PROBE do not
KIND_NAMES = {TRAIN: "train", EVAL: "eval", VALIDATE: "validate", PROBE: "probe"}
ADDR_MAX = 8                                     # longest episode address (purpose tag + indices)
EVAL_BASE = 2**52        # evaluation episodes are indexed after every training candidate (indices are unique per round)

CANDIDATE = np.dtype([
    ("index", np.int64),       # result key within the round; rows are sorted by it after the allgather
    ("kind", np.int8),         # TRAIN | EVAL | VALIDATE | PROBE
    ("slot", np.int64),        # runs on rank slot % size (any integer; results never depend on it)
    ("base", np.int32),        # row of the strategy's bases(), or -1 = a fresh initialisation
    ("init", np.int64),        # base == -1: theta = objective.initial_theta(rng(run_seed, INIT_THETA, init))
    ("offset", np.int64),      # noise-table offset of the perturbation, or -1 = unperturbed
    ("sign", np.int8),         # +1: base + scale * eps; -1: base - scale * eps
    ("lo", np.int64),          # the perturbed slice [lo, hi) of theta ((0, d) = full perturbation)
    ("hi", np.int64),
    ("scale", np.float32),     # sigma (ES, ARS) or the mutation power (GA)
    ("record_obs", np.bool_),  # feed the observation normaliser from this episode
    ("keep_states", np.int32), # k > 0: also return a seeded sample of k raw observations of the episode (SM-G)
    ("addr_len", np.int8),
    ("addr", np.int64, (ADDR_MAX,)),
])


def table(n: int) -> np.ndarray:
    """An empty candidate table of ``n`` rows: unperturbed base 0, full slice, no obs recording."""
    t = np.zeros(n, dtype=CANDIDATE)
    t["init"] = -1
    t["offset"] = -1
    t["sign"] = 1
    return t


def set_addr(rows: np.ndarray, *columns) -> None:
    """Address each row: ``columns`` are ints (same for every row) or (n,) int arrays."""
    if len(columns) > ADDR_MAX:
        raise ValueError(f"an episode address has at most {ADDR_MAX} parts")
    for k, c in enumerate(columns):
        rows["addr"][:, k] = c
    rows["addr_len"] = len(columns)


def address(row) -> tuple[int, ...]:
    return tuple(int(x) for x in row["addr"][: int(row["addr_len"])])


def antithetic_pairs(run_seed: int, g: int, block: int, n_pairs: int, d: int, noise_size: int, sigma: float,
                     obs_fraction: float, obs_dim: int, base: int = 0) -> np.ndarray:
    """Block ``block`` of generation ``g``: ``n_pairs`` antithetic pairs around ``bases[base]``.

    Pair ``j`` uses ``offset_j`` from ``rng(run_seed, OFFSETS, g, block)``; its episodes are
    ``e = 2 j + s`` (s = 0: +eps, 1: -eps), indexed ``2 (block * n_pairs + j) + s``, dealt out
    round-robin over the block (slot ``e``: episodes, not pairs, so the largest share stays small),
    seeded by ``(EPISODE, g, block, j, s)``; a seeded fraction of the pairs records observations.
    These are exactly the draws of esmpi's first (v1) loop, so OpenAI-ES runs are bitwise unchanged.
    """
    if d > noise_size:
        raise ValueError(f"noise table of {noise_size} entries is smaller than the {d} parameters")
    offsets = seeding.rng(run_seed, seeding.OFFSETS, g, block).integers(0, noise_size - d + 1, size=n_pairs,
                                                                         dtype=np.int64)
    if obs_dim == 0 or obs_fraction <= 0:
        mask = np.zeros(n_pairs, dtype=bool)
    else:
        mask = seeding.rng(run_seed, seeding.OBS_STAT, g, block).random(n_pairs) < obs_fraction
    t = table(2 * n_pairs)
    e = np.arange(2 * n_pairs, dtype=np.int64)
    j, s = e // 2, e % 2
    t["index"] = 2 * (block * n_pairs + j) + s
    t["kind"] = TRAIN
    t["slot"] = e
    t["base"] = base
    t["offset"] = offsets[j]
    t["sign"] = np.where(s == 0, 1, -1)
    t["hi"] = d
    t["scale"] = np.float32(sigma)
    t["record_obs"] = mask[j]
    set_addr(t, seeding.EPISODE, g, block, j, s)
    return t


def evaluations(g: int, n: int, base: int = 0, purpose: int = seeding.EVAL, first_index: int = EVAL_BASE) -> np.ndarray:
    """``n`` episodes of the unperturbed ``bases[base]``, seeded by ``(purpose, g, e)``; episode ``e``
    runs on rank ``size - 1 - e % size`` (slot ``-1 - e``): the ranks with the fewest training episodes."""
    t = table(n)
    e = np.arange(n, dtype=np.int64)
    t["index"] = first_index + e
    t["kind"] = EVAL
    t["slot"] = -1 - e
    t["base"] = base
    set_addr(t, purpose, g, e)
    return t


def mine(table_: np.ndarray, rank: int, size: int) -> np.ndarray:
    """This rank's share of a candidate table."""
    return table_[table_["slot"] % size == rank]


@dataclass
class Results:
    """One round's gathered results, sorted by candidate index (identical on every rank).

    ``returns``, ``lengths``, ``failed``: (n,) aligned with ``index``; ``bc``: (n, bc_dim) float64;
    observation sums ``obs_index``/``obs_count`` (m,), ``obs_sum``/``obs_sumsq`` (m, obs_dim).
    """

    index: np.ndarray
    returns: np.ndarray
    lengths: np.ndarray
    failed: np.ndarray
    bc: np.ndarray
    obs_index: np.ndarray
    obs_count: np.ndarray
    obs_sum: np.ndarray
    obs_sumsq: np.ndarray
    state_index: np.ndarray | None = None    # (s,) int64: the candidate of each kept state (keep_states)
    states: np.ndarray | None = None         # (s, obs_dim) float64 raw observations, episode order per candidate

    def kept_states(self, index: int) -> np.ndarray:
        """(k, obs_dim) float64: the raw observations candidate ``index`` kept (empty: none or failed)."""
        if self.states is None:
            return np.zeros((0, self.obs_sum.shape[1]))
        lo, hi = np.searchsorted(self.state_index, [index, index + 1])
        return self.states[lo:hi]

    @staticmethod
    def from_rows(rows: np.ndarray, obs_rows: np.ndarray, bc_dim: int, obs_dim: int,
                  state_rows: np.ndarray | None = None) -> "Results":
        rows = rows.reshape(-1, 4 + bc_dim)
        rows = rows[np.argsort(rows[:, 0], kind="stable")]
        if np.any(np.diff(rows[:, 0]) == 0):
            raise RuntimeError("two candidates of a round share an index")   # a strategy bug, never user input
        obs_rows = obs_rows.reshape(-1, 2 + 2 * obs_dim)
        obs_rows = obs_rows[np.argsort(obs_rows[:, 0], kind="stable")]
        kept = {}
        if state_rows is not None:
            state_rows = state_rows.reshape(-1, 1 + obs_dim)
            state_rows = state_rows[np.argsort(state_rows[:, 0], kind="stable")]
            kept = {"state_index": state_rows[:, 0].astype(np.int64), "states": state_rows[:, 1:].copy()}
        return Results(index=rows[:, 0].astype(np.int64), returns=rows[:, 1].copy(),
                       lengths=rows[:, 2].astype(np.int64), failed=rows[:, 3] != 0, bc=rows[:, 4:].copy(),
                       obs_index=obs_rows[:, 0].astype(np.int64), obs_count=obs_rows[:, 1].copy(),
                       obs_sum=obs_rows[:, 2 : 2 + obs_dim], obs_sumsq=obs_rows[:, 2 + obs_dim :], **kept)

    def of(self, index: np.ndarray) -> np.ndarray:
        """Positions of the given candidate indices in this result (every index must be present)."""
        pos = np.searchsorted(self.index, index)
        if np.any(pos >= self.index.size) or np.any(self.index[np.minimum(pos, self.index.size - 1)] != index):
            raise RuntimeError("gathered results are missing candidates")   # a bug, never user input
        return pos


@dataclass
class Round:
    """A candidate table and its gathered results (same candidates, sorted by index)."""

    candidates: np.ndarray
    results: Results

    def rows(self, kind: int) -> tuple[np.ndarray, np.ndarray]:
        """(candidates, positions in results) of one kind, in index order."""
        c = self.candidates[self.candidates["kind"] == kind]
        c = c[np.argsort(c["index"], kind="stable")]
        return c, self.results.of(c["index"])
