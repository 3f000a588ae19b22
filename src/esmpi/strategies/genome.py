"""Seed-encoded genomes (Such et al. 2017) and the node-shared cache of the GA's parent thetas.

A **genome** is an int64 array ``[init, offset_1, ..., offset_m]``: theta is the fresh initialisation
addressed by ``init`` (``objective.initial_theta(rng(run_seed, INIT_THETA, init))``), then one
mutation per generation, ``theta <- theta + sigma * table[offset : offset + d]``. Each mutation is
``noise.perturb`` (the bits of float32 ``scaled = table[...] * float32(sigma)``, ``theta + scaled``),
the kernel ``Evaluator.materialize`` uses for a candidate with an offset. So a child materialised
from its cached parent (one axpy) has the bits of its genome rebuilt from scratch (m axpys), by
induction over the generations. 8 bytes per generation instead of 4 d bytes of parameters.

``ParentCache`` holds the T parents' thetas: a derived cache (DESIGN.md rule 5), never checkpointed
or hashed, rebuilt from the genomes on resume by the same float32 operations. One copy per node
(``alloc`` from ``Strategy.attach``: an MPI-3 shared window, filled by one rank per node) plus one
scratch row. From one generation to the next it is updated in place: a new parent whose genome is
an old row's genome (the elite, kept) is a copy; one that extends an old row's genome by one offset
(a child) is one axpy from that row; anything else (a resume) is rebuilt from its genome, common
prefixes once. Rows are
written in an order that never overwrites a row another pending row still reads; when every pending
row is read by another one (a permutation of rows), one row is saved to the scratch row first.
"""

from __future__ import annotations

import heapq

import numpy as np

from ..noise import perturb


def mutate(out: np.ndarray, base: np.ndarray, noise, offset: int, sigma: float) -> np.ndarray:
    """``out = base + float32(sigma) * table[offset : offset + d]`` (``out`` may be ``base``): one fused
    pass (``noise.perturb``) with the bits of numpy's ``multiply`` then ``add``."""
    return perturb(out, base, noise.get(int(offset), out.size), sigma)


def theta_from_genome(genome: np.ndarray, fresh, noise, sigma: float, out: np.ndarray | None = None) -> np.ndarray:
    """(d,) float32 theta of a genome, rebuilt from nothing but the genome and the noise table."""
    theta0 = fresh(int(genome[0]))
    out = np.array(theta0, np.float32) if out is None else out
    if out is not theta0:
        out[:] = theta0
    for off in genome[1:]:
        mutate(out, out, noise, off, sigma)
    return out


def pack(genomes: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(flat (sum of lengths,) int64, lengths (n,) int64): how genomes are stored in the state."""
    lengths = np.array([g.size for g in genomes], np.int64)
    flat = np.concatenate(genomes).astype(np.int64) if genomes else np.zeros(0, np.int64)
    return flat, lengths


def unpack(flat: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    if np.any(lengths < 0) or int(lengths.sum()) != flat.size:
        raise ValueError(f"genome lengths {lengths.tolist()[:8]}... do not add up to the {flat.size} stored offsets")
    ends = np.cumsum(lengths)
    return [flat[e - n : e] for e, n in zip(ends, lengths) if n > 0]


class ParentCache:
    """(T, d) float32 parent thetas, one copy per node, updated in place from genome to genome."""

    def __init__(self, T: int, d: int, noise, fresh, sigma: float, alloc, barrier):
        self.T, self.d, self.noise, self.fresh, self.sigma = T, d, noise, fresh, sigma
        self.alloc, self.barrier = alloc, barrier
        self.buf = None
        self.fill = False
        self.held: list[bytes | None] = [None] * (T + 1)   # genome bytes of each row (row T: scratch)
        self.rebuilt = 0                                    # rows rebuilt from their genome (resume), for tests
        self.axpys = 0                                      # mutations applied while rebuilding, for tests

    def rows(self, genomes: list[np.ndarray]) -> np.ndarray:
        """(len(genomes), d) view of the cache holding these genomes' thetas, in this order.
        Collective over the node (every rank calls it with the same genomes)."""
        if self.buf is None:
            flat, self.fill = self.alloc((self.T + 1) * self.d, np.float32)
            self.buf = flat.reshape(self.T + 1, self.d)
        keys = [g.tobytes() for g in genomes]
        if keys != self.held[: len(keys)]:
            order = self._plan(keys, genomes)
            self.barrier()          # no rank still reads the old rows (evaluation, tell) ...
            if self.fill:
                self._apply(order, genomes)
            self.barrier()          # ... and every rank sees the new ones
            self.held = keys + [None] * (self.T + 1 - len(keys))
        return self.buf[: len(keys)]

    def _plan(self, keys: list[bytes], genomes: list[np.ndarray]) -> list[tuple]:
        """Steps ``(row, op, source)`` with op 'copy' | 'mutate' | 'rebuild' | 'save' (source -> scratch)."""
        where: dict[bytes, int] = {}
        for j, k in enumerate(self.held[: self.T]):
            if k is not None:
                where.setdefault(k, j)
        src, ops = {}, {}
        for i, (k, g) in enumerate(zip(keys, genomes)):
            if k in where:
                ops[i], src[i] = "copy", where[k]
            elif g.size > 1 and g[:-1].tobytes() in where:
                ops[i], src[i] = "mutate", where[g[:-1].tobytes()]
            else:
                ops[i], src[i] = "rebuild", None
        readers: dict[int, set] = {}
        for i, j in src.items():
            if j is not None:
                readers.setdefault(j, set()).add(i)
        pending = set(ops)
        scratch = self.T

        def free(i):   # row i may be written: no other pending row reads it
            return not (readers.get(i, set()) - {i})

        ready = [i for i in pending if free(i)]
        heapq.heapify(ready)
        steps = []
        while pending:
            if not ready:                       # a permutation: save the smallest pending row first
                j = min(pending)
                steps.append((scratch, "save", j))
                for i in readers.pop(j):
                    src[i] = scratch
                readers[scratch] = {i for i in pending if src[i] == scratch}
                heapq.heappush(ready, j)
                continue
            i = heapq.heappop(ready)
            if i not in pending:
                continue
            steps.append((i, ops[i], src[i]))
            pending.discard(i)
            j = src[i]
            if j is not None:
                readers[j].discard(i)
                if j in pending and free(j):
                    heapq.heappush(ready, j)
        return steps

    def _apply(self, steps: list[tuple], genomes: list[np.ndarray]) -> None:
        buf = self.buf
        rebuild = []
        for row, op, j in steps:
            if op == "save":
                buf[row] = buf[j]
            elif op == "copy":
                if j != row:
                    buf[row] = buf[j]
            elif op == "mutate":
                mutate(buf[row], buf[j], self.noise, genomes[row][-1], self.sigma)
            else:
                rebuild.append(row)
        # last: a rebuilt row reads no old row, and no old row is read after this point
        self._rebuild(rebuild, genomes)

    def _rebuild(self, rows: list[int], genomes: list[np.ndarray]) -> None:
        """Rebuild ``rows`` from their genomes, sharing common prefixes: each group of genomes with a
        common prefix is built once in its first row, copied to the first row of each branch, then
        extended per branch. The same float32 operations, in the same order, as ``theta_from_genome``
        for every row (copies do not change bits); after a truncation GA's generations the parents'
        genomes share most of their ancestry, so this is about (ancestry + branches) axpys instead of
        T x length."""
        buf = self.buf
        todo = []                                        # (rows sharing a prefix; theta of it is in rows[0]; its length)
        for init in sorted({int(genomes[r][0]) for r in rows}):
            group = [r for r in rows if genomes[r][0] == init]
            buf[group[0]] = self.fresh(init)
            todo.append((group, 1))
        while todo:
            group, depth = todo.pop()
            first = genomes[group[0]]
            L = min(genomes[r].size for r in group)
            for r in group[1:]:                          # the longest common prefix of the group
                neq = np.flatnonzero(genomes[r][depth:L] != first[depth:L])
                L = depth + int(neq[0]) if neq.size else L
            for off in first[depth:L]:
                mutate(buf[group[0]], buf[group[0]], self.noise, off, self.sigma)
                self.axpys += 1
            branches: dict = {}
            for r in group:                              # by the next offset (None: the genome ends here)
                nxt = int(genomes[r][L]) if genomes[r].size > L else None
                branches.setdefault(nxt, []).append(r)
            for nxt, sub in branches.items():
                if sub[0] != group[0]:
                    buf[sub[0]] = buf[group[0]]
                for r in sub[1:] if nxt is None else ():  # identical genomes: copies
                    buf[r] = buf[sub[0]]
            for nxt, sub in branches.items():          # every branch now holds theta(prefix) in its own row
                if nxt is not None:
                    todo.append((sub, L))
        self.rebuilt += len(rows)
