"""Memory this machine (or node) can give, checked before a large allocation is made.

A table that does not fit is otherwise handed out lazily by the kernel (overcommit) and the process
is killed half-way through filling it, with no message. ``check_fits(nbytes, what)`` refuses such a
request up front with the size asked for and the memory available: ``MemAvailable`` of
``/proc/meminfo``, the cgroup's remaining ``memory.max`` when it is lower, and for node-shared MPI
windows (``shared=True``, backed by files in ``/dev/shm``) the free space of ``/dev/shm``.

``ESMPI_MEM_AVAILABLE`` (bytes) replaces the measured figure; the tests use it to exercise the
refusal without allocating anything.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import EsmpiError


class ResourceError(EsmpiError):
    """An allocation that cannot fit in this machine's memory."""


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_available() -> int | None:
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit == "max":
            return None
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        return max(int(limit) - used, 0)
    except (OSError, ValueError):
        return None


def _shm_available() -> int | None:
    try:
        st = os.statvfs("/dev/shm")
        return st.f_bavail * st.f_frsize
    except OSError:
        return None


def available(shared: bool = False) -> tuple[int | None, str]:
    """(bytes available, where that figure comes from); None when nothing could be measured."""
    forced = os.environ.get("ESMPI_MEM_AVAILABLE")
    if forced:
        return int(forced), "ESMPI_MEM_AVAILABLE"
    figures = [(_meminfo_available(), "MemAvailable in /proc/meminfo"), (_cgroup_available(), "the cgroup's memory.max")]
    if shared:
        figures.append((_shm_available(), "free space in /dev/shm (node-shared MPI windows live there)"))
    figures = [(b, w) for b, w in figures if b is not None]
    return min(figures) if figures else (None, "")


def gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


def check_fits(nbytes: int, what: str, *, shared: bool = False) -> None:
    """Raise ResourceError if ``nbytes`` cannot be allocated here (``shared``: in a node-shared window)."""
    have, where = available(shared)
    if have is not None and nbytes > have:
        raise ResourceError(f"{what} needs {gib(nbytes)} ({nbytes} bytes) but only {gib(have)} ({have} bytes) is available "
                            f"({where}); reduce it or run on a machine with more memory")
