"""The shared noise table and the weighted noise sum (the update's hot path).

``NoiseTable``: ``size`` float32 standard normals from ``default_rng(seed)``, filled in chunks
(bitwise identical to one ``standard_normal(size, dtype=float32)`` call). The reference draws
``RandomState(123).randn`` in float64 and casts; we use the faster PCG64 float32 stream, so our
table has the same distribution but different values. Under MPI the table lives in one
node-shared window per node (filled by the node's first rank); for one process it is a plain array.

A perturbation is addressed, never sent: ``eps_j = table[offset_j : offset_j + dim]`` with
``offsets(seed, g, block, n_pairs)`` a pure function of its arguments.

``weighted_sum`` computes ``sum_j w_j * eps_j`` in float32 in a fixed order (j ascending, no
FMA contraction, no blocking), bitwise identical to the numpy loop ``g += w[j] * eps_j``, on every
rank, at every world size, and for any split of the ``d`` axis.

``perturb(out, base, eps, scale, sign)`` materialises one candidate, ``base +- scale * eps``, in one
pass with the bits of numpy's ``scaled = eps * scale; base +- scaled`` (both rounded to float32, no
FMA contraction): 3 memory streams instead of 5, which is what a child costs at d = 4M.

``NodeSplitSum`` uses that last property: the ranks of a node each compute a disjoint slice of
``g`` into one node-shared buffer, so a node reads the noise once per update instead of once per
rank, and every rank ends with the identical full ``g``. Only node-local shared memory is used;
nothing crosses the network.
"""

from __future__ import annotations

import time

import numba
import numpy as np

from . import resources, seeding
from .errors import EsmpiError

FILL_CHUNK = 10_000_000


class FillInterrupted(EsmpiError):
    """A stop signal arrived while the table was being filled: every rank stops, nothing was written."""

    exit_code = 75   # run.EXIT_SIGNALLED: "try again"


class NoiseTable:
    """``stop_requested()`` is polled between fill chunks (``chunk`` entries each), so a scheduler's
    SIGTERM during a long fill stops every rank promptly: the filling rank stops after the current
    chunk (also when only another rank of its node got the signal: that rank raises a node-shared
    flag while it waits), and all ranks agree (one OR over the world) to raise ``FillInterrupted``."""

    def __init__(self, size: int, seed: int, comm=None, *, stop_requested=None, chunk: int | None = None):
        self.size, self.seed = int(size), int(seed)
        self._check_memory(comm)
        if comm is None:
            self.noise = np.empty(self.size, dtype=np.float32)
            fill_here = True
        else:
            self.noise, fill_here = comm.node_shared_array(self.size, np.float32)
        stop = stop_requested or (lambda: False)
        chunk = int(chunk or FILL_CHUNK)   # read at call time: tests shrink FILL_CHUNK to exercise many chunks
        shared = comm is not None and getattr(comm, "node_size", 1) > 1
        if shared:
            # one node-shared int: a waiting rank that receives a stop signal raises it, the filler
            # reads it between chunks (a best-effort plain store; the world agreement below is exact)
            node_stop = comm.node_shared_array(1, np.int32)[0]
            if fill_here:
                node_stop[0] = 0
            comm.node_barrier()
        interrupted = False
        if fill_here:
            g = np.random.default_rng(self.seed)
            for s in range(0, self.size, chunk):
                if stop() or (shared and node_stop[0]):
                    interrupted = True
                    break
                g.standard_normal(dtype=np.float32, out=self.noise[s : s + chunk])
        if shared:
            # the others wait in a non-blocking barrier with short sleeps: no busy-polling against
            # the filler for CPU, and their own stop requests are passed on to it
            req = comm.node_ibarrier()
            while not req.Test():
                if stop():
                    node_stop[0] = 1
                time.sleep(0.005)
        if comm is not None:
            comm.node_barrier()
            interrupted = bool(comm.any_flags(int(interrupted or stop())))
        if interrupted:
            raise FillInterrupted(f"stopped by a signal while filling the noise table ({self.size} entries), "
                                  "before the run started; nothing was written: run the same command again")

    def _check_memory(self, comm) -> None:
        """Refuse a table that cannot fit, on every rank alike, before any rank allocates (the
        shared-window allocation is collective: one rank raising alone would leave the others hanging)."""
        err = None
        if comm is None or getattr(comm, "node_rank", 0) == 0:
            try:
                resources.check_fits(4 * self.size, f"the noise table (noise.size = {self.size} float32 entries)",
                                     shared=getattr(comm, "shared_windows", False))
            except resources.ResourceError as e:
                err = str(e)
        if comm is not None:
            errs = [e for e in comm.allgather_obj(err) if e]
            err = errs[0] if errs else None
        if err:
            raise resources.ResourceError(err)

    def get(self, offset: int, dim: int) -> np.ndarray:
        return self.noise[offset : offset + dim]

    def offsets(self, run_seed: int, generation: int, block: int, n_pairs: int, dim: int) -> np.ndarray:
        """(n_pairs,) int64 offsets of block ``block`` of generation ``generation``."""
        if dim > self.size:
            raise ValueError(f"noise table of {self.size} entries is smaller than the {dim} parameters")
        r = seeding.rng(run_seed, seeding.OFFSETS, generation, block)
        return r.integers(0, self.size - dim + 1, size=n_pairs, dtype=np.int64)

    def weighted_sum(self, weights: np.ndarray, offsets: np.ndarray, dim: int, lo: int = 0, hi: int | None = None,
                     out: np.ndarray | None = None) -> np.ndarray:
        """``sum_j weights[j] * table[offsets[j] + lo : offsets[j] + hi]`` as float32 ``(hi - lo,)``."""
        hi = dim if hi is None else hi
        if out is None:
            out = np.empty(hi - lo, dtype=np.float32)
        _weighted_sum(self.noise, np.ascontiguousarray(offsets, dtype=np.int64),
                      np.ascontiguousarray(weights, dtype=np.float32), lo, hi, out)
        return out


    def slice_sum(self, weights: np.ndarray, offsets: np.ndarray, los: np.ndarray, his: np.ndarray, dim: int,
                  lo: int = 0, hi: int | None = None, out: np.ndarray | None = None) -> np.ndarray:
        """Limited perturbation: ``g[los[j]:his[j]] += weights[j] * table[offsets[j] + los[j] : offsets[j] + his[j]]``
        over j ascending, from ``g = 0``; returns ``g[lo:hi]`` float32 (the same fixed-order rules as
        ``weighted_sum``: bitwise ``slice_sum_reference``, for any split of the ``dim`` axis)."""
        hi = dim if hi is None else hi
        if out is None:
            out = np.empty(hi - lo, dtype=np.float32)
        _slice_sum(self.noise, np.ascontiguousarray(offsets, dtype=np.int64),
                   np.ascontiguousarray(weights, dtype=np.float32), np.ascontiguousarray(los, dtype=np.int64),
                   np.ascontiguousarray(his, dtype=np.int64), lo, hi, out)
        return out


class NodeSplitSum:
    """``weighted_sum`` with the same signature and bits, split over the ranks of a node.

    Rank ``r`` of ``n`` node ranks computes ``g[lo_r:hi_r]`` (slices aligned to 16 floats, 64
    bytes, so no two ranks write one cache line) into a node-shared buffer; one node barrier, then
    every rank copies the whole ``g``. Two buffers alternate: call ``n`` writes buffer ``n % 2``,
    and a rank can only start call ``n + 1`` after every node rank reached call ``n``'s barrier,
    i.e. finished copying call ``n - 1``'s result from the other buffer: one barrier per call.
    """

    ALIGN = 16

    def __init__(self, noise: NoiseTable, comm, dim: int):
        self.noise, self.comm, self.dim = noise, comm, dim
        self._bufs = [comm.node_shared_array(dim, np.float32)[0] for _ in range(2)]
        self._next = 0
        n, r = comm.node_size, comm.node_rank
        chunk = -(-dim // n)
        chunk = -(-chunk // self.ALIGN) * self.ALIGN
        self.lo, self.hi = min(r * chunk, dim), min((r + 1) * chunk, dim)

    def weighted_sum(self, weights, offsets, dim: int, lo: int = 0, hi: int | None = None, out=None) -> np.ndarray:
        assert dim == self.dim and lo == 0 and hi in (None, dim)
        return self._split(lambda a, b, part: self.noise.weighted_sum(weights, offsets, dim, a, b, out=part), out)

    def slice_sum(self, weights, offsets, los, his, dim: int, lo: int = 0, hi: int | None = None, out=None) -> np.ndarray:
        assert dim == self.dim and lo == 0 and hi in (None, dim)
        return self._split(lambda a, b, part: self.noise.slice_sum(weights, offsets, los, his, dim, a, b, out=part), out)

    def _split(self, fill, out) -> np.ndarray:
        dim = self.dim
        buf = self._bufs[self._next]
        self._next ^= 1
        if self.hi > self.lo:
            fill(self.lo, self.hi, buf[self.lo : self.hi])
        self.comm.node_barrier()
        if out is None:
            out = np.empty(dim, np.float32)
        out[:] = buf            # a private copy: the caller scales g in place
        return out


@numba.njit(cache=True, nogil=True)
def _weighted_sum(noise, offsets, weights, lo, hi, out):
    # Slice-view form (the inner loops vectorise; noise[b + k] indexing is 5-6x slower), no
    # fastmath (no FMA contraction), so each out[k] is the left-to-right sum over j, rounded at
    # every step: the bits of numpy's g += w * x. Four pairs per pass over out, with the additions
    # still in j order, loads and stores the (d,) output a quarter as often: same bits, 1.4-1.6x
    # faster (measured by the benchmark, docs/bench.md).
    n = hi - lo
    for k in range(n):
        out[k] = np.float32(0.0)
    J = offsets.size
    j = 0
    while j + 4 <= J:
        w0, w1, w2, w3 = weights[j], weights[j + 1], weights[j + 2], weights[j + 3]
        b0, b1, b2, b3 = offsets[j] + lo, offsets[j + 1] + lo, offsets[j + 2] + lo, offsets[j + 3] + lo
        x0, x1, x2, x3 = noise[b0 : b0 + n], noise[b1 : b1 + n], noise[b2 : b2 + n], noise[b3 : b3 + n]
        for k in range(n):
            out[k] = (((out[k] + w0 * x0[k]) + w1 * x1[k]) + w2 * x2[k]) + w3 * x3[k]
        j += 4
    while j < J:
        w = weights[j]
        b = offsets[j] + lo
        x = noise[b : b + n]
        for k in range(n):
            out[k] = out[k] + w * x[k]
        j += 1


@numba.njit(cache=True, nogil=True)
def _slice_sum(noise, offsets, weights, los, his, lo, hi, out):
    # out = g[lo:hi]. Pair j adds w_j * its noise slice to [los_j, his_j) clipped to [lo, hi): j in
    # ascending order, rounded at every step, no fastmath (no FMA), so each out[k] is the left-to-right
    # sum over the pairs whose slice covers k: the bits of the numpy loop, for any (lo, hi) split.
    for k in range(hi - lo):
        out[k] = np.float32(0.0)
    for j in range(offsets.size):
        a, b = max(los[j], lo), min(his[j], hi)
        if a >= b:
            continue
        w = weights[j]
        x = noise[offsets[j] + a : offsets[j] + b]
        o = out[a - lo : b - lo]
        for k in range(b - a):
            o[k] = o[k] + w * x[k]


@numba.njit(cache=True, nogil=True)
def _perturb(out, base, eps, scale, sign):
    # no fastmath: eps[k] * scale is rounded to float32 before the add (numpy's two ufuncs); the
    # loops are separate so each vectorises without a per-element branch
    if sign > 0:
        for k in range(out.size):
            out[k] = base[k] + eps[k] * scale
    else:
        for k in range(out.size):
            out[k] = base[k] - eps[k] * scale


def perturb(out: np.ndarray, base: np.ndarray, eps: np.ndarray, scale, sign: int = 1) -> np.ndarray:
    """``out = base + sign * float32(scale) * eps`` (n,) float32 in one pass; ``out`` may be ``base``."""
    if not (out.shape == base.shape == eps.shape and out.dtype == base.dtype == eps.dtype == np.float32):
        raise ValueError(f"perturb: float32 arrays of one shape expected, got {out.shape} {base.shape} {eps.shape}")
    _perturb(out, base, eps, np.float32(scale), 1 if sign > 0 else -1)
    return out


def slice_sum_reference(noise: np.ndarray, weights, offsets, los, his, dim: int) -> np.ndarray:
    """The plain numpy loop ``slice_sum`` must match bit for bit (tests)."""
    g = np.zeros(dim, dtype=np.float32)
    for w, o, a, b in zip(np.asarray(weights, np.float32), offsets, los, his):
        g[a:b] += w * noise[o + a : o + b]
    return g


def weighted_sum_reference(noise: np.ndarray, weights, offsets, dim: int) -> np.ndarray:
    """The simple numpy loop the kernel must match bit for bit (tests and benchmark)."""
    g = np.zeros(dim, dtype=np.float32)
    for w, o in zip(np.asarray(weights, np.float32), offsets):
        g += w * noise[o : o + dim]
    return g
