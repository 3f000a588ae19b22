"""The only mpi4py import: a small communicator object and its serial twin.

``make_comm()`` returns ``MPIComm`` over ``COMM_WORLD`` (also for one process launched without
mpiexec), ``SerialComm()`` needs no MPI at all. Both offer:

- ``rank``, ``size``, ``node_rank``, ``node_size``
- ``allgather_rows(rows (n_i, w) float64) -> (sum_i n_i, w)``: rows of every rank, in rank order
  (buffer ``Allgatherv``; the caller restores pair order from an index column)
- ``any_flags(bits: int) -> int``: bitwise OR over ranks (integer, so exact): collective decisions
- ``ibarrier()``: a non-blocking barrier request (``Test()``, ``Wait()``), for the 'steal' schedule
- ``allgather_obj`` / ``bcast_obj``: small Python objects, for set-up only (never per generation)
- ``node_shared_array(n, dtype) -> (array, fill_here)``: one copy per node in an MPI-3 shared
  window; exactly one rank per node gets ``fill_here=True``; then call ``node_barrier()``
  (``node_ibarrier()``: its non-blocking form, for waiting with short sleeps)
- ``abort(code)``: end every rank now (used when one rank raised)

``ESMPI_TEST_PRETEND_NODES=k`` (tests only) splits every node's ranks into ``k`` pretend nodes, each
with its own shared windows, so multi-node code paths run on one machine.

When there are more ranks on a node than CPUs, MPICH's busy-polling in blocking collectives steals
CPU from ranks still computing; ``wait_for_all()`` then polls a non-blocking barrier with short
sleeps, so waiting ranks yield the CPU.
"""

from __future__ import annotations

import os
import time

import numpy as np


class _Done:
    """A completed request (serial twin of MPI.Request)."""

    def Test(self):
        return True

    def Wait(self):
        pass


class SerialComm:
    rank, size, node_rank, node_size = 0, 1, 0, 1
    shared_windows = False      # node_shared_array is a plain array (MPIComm: an MPI window in /dev/shm)
    oversubscribed = False
    library = "none (serial)"

    def allgather_rows(self, rows: np.ndarray) -> np.ndarray:
        return np.array(rows, dtype=np.float64, copy=True)

    def any_flags(self, bits: int) -> int:
        return int(bits)

    def allgather_obj(self, obj):
        return [obj]

    def bcast_obj(self, obj, root: int = 0):
        return obj

    def node_shared_array(self, n: int, dtype):
        return np.empty(n, dtype=dtype), True

    def node_barrier(self):
        pass

    def node_ibarrier(self):
        return _Done()

    def barrier(self):
        pass

    def wait_for_all(self):
        pass

    def ibarrier(self):
        return _Done()

    def abort(self, code: int = 1):
        os._exit(code)

    def free(self):
        pass


class MPIComm:
    shared_windows = True

    def __init__(self, comm=None):
        from mpi4py import MPI

        self.MPI = MPI
        self.comm = comm if comm is not None else MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.node = self.comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        pretend = int(os.environ.get("ESMPI_TEST_PRETEND_NODES", "0") or 0)
        if pretend > 1:
            # tests only: split each real node into `pretend` groups of consecutive ranks, so the
            # node-split and shared-window code meets a cross-node allgather on one machine
            real = self.node
            color = real.Get_rank() * min(pretend, real.Get_size()) // real.Get_size()
            self.node = real.Split(color, key=self.rank)
            real.Free()
        self.node_rank, self.node_size = self.node.Get_rank(), self.node.Get_size()
        try:
            ncpu = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover (non-Linux)
            ncpu = os.cpu_count() or 1
        self.oversubscribed = self.node_size > ncpu
        self._windows = []
        self.library = " ".join(MPI.Get_library_version().split()[:3])

    # ---- per-generation collectives (buffers only) ----
    def allgather_rows(self, rows: np.ndarray) -> np.ndarray:
        rows = np.ascontiguousarray(rows, dtype=np.float64)
        width = rows.shape[1] if rows.ndim == 2 else 0
        counts = np.empty(self.size, dtype=np.int64)
        self.comm.Allgather(np.array([rows.size], dtype=np.int64), counts)
        total = int(counts.sum())
        out = np.empty(total, dtype=np.float64)
        displs = np.concatenate([[0], np.cumsum(counts)[:-1]])
        self.comm.Allgatherv(rows.ravel(), [out, counts, displs, self.MPI.DOUBLE])
        if width == 0:  # this rank had no rows; learn the width from the others
            return out.reshape(0, 0) if total == 0 else out
        return out.reshape(-1, width)

    def any_flags(self, bits: int) -> int:
        out = np.zeros(1, dtype=np.int64)
        self.comm.Allreduce(np.array([bits], dtype=np.int64), out, op=self.MPI.BOR)
        return int(out[0])

    def wait_for_all(self, poll_seconds: float = 2e-4):
        if not self.oversubscribed or self.size == 1:
            return
        req = self.comm.Ibarrier()
        while not req.Test():
            time.sleep(poll_seconds)

    def ibarrier(self):
        """Non-blocking barrier: ``Test()`` turns true once every rank has entered it."""
        return self.comm.Ibarrier()

    # ---- set-up only ----
    def allgather_obj(self, obj):
        return self.comm.allgather(obj)

    def bcast_obj(self, obj, root: int = 0):
        return self.comm.bcast(obj, root=root)

    def node_shared_array(self, n: int, dtype):
        dtype = np.dtype(dtype)
        nbytes = n * dtype.itemsize if self.node_rank == 0 else 0
        win = self.MPI.Win.Allocate_shared(nbytes, dtype.itemsize, comm=self.node)
        # one passive-target epoch for the window's life, so node_barrier can Win_sync it (the MPI-3
        # shared-memory pattern: Win_sync, Barrier, Win_sync makes other ranks' stores visible)
        win.Lock_all(self.MPI.MODE_NOCHECK)
        self._windows.append(win)
        buf, _ = win.Shared_query(0)
        return np.ndarray(buffer=buf, dtype=dtype, shape=(n,)), self.node_rank == 0

    def node_barrier(self):
        """Barrier of the node's ranks that also orders memory: every store a node rank made to a
        shared array before the barrier is visible to every node rank after it."""
        for w in self._windows:
            w.Sync()
        self.node.Barrier()
        for w in self._windows:
            w.Sync()

    def node_ibarrier(self):
        """Non-blocking barrier of the node's ranks (no memory ordering: follow with ``node_barrier``)."""
        return self.node.Ibarrier()

    def barrier(self):
        self.comm.Barrier()

    def abort(self, code: int = 1):
        self.comm.Abort(code)

    def free(self):
        for w in self._windows:
            w.Unlock_all()
            w.Free()
        self._windows.clear()


def make_comm(serial: bool = False):
    return SerialComm() if serial else MPIComm()


def mpi_versions() -> dict:
    """Versions of mpi4py and the MPI library, for checkpoints (empty if mpi4py is unavailable)."""
    try:
        import mpi4py
        from mpi4py import MPI
        return {"mpi4py": mpi4py.__version__, "mpi_library": MPI.Get_library_version().splitlines()[0].strip()}
    except Exception:  # pragma: no cover
        return {}
