"""Section 4: proportional set size (PSS) of the noise table, per rank and summed over a node.

PSS charges each resident page to the processes that map it, divided by their number, so the sum
over the ranks of a node is the memory the node really uses: one shared table sums to its size
whatever the number of ranks; a private copy per rank sums to ``ranks x size``. A rank is only
charged for pages it has touched, so ``touch`` reads one float per 4 KiB page first (over a run,
random perturbation offsets touch the whole table anyway).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def pss_rollup(pid: str | int = "self") -> int:
    """Whole-process PSS in bytes (``/proc/PID/smaps_rollup``)."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no Pss line in smaps_rollup")


def mapping_usage(addr: int, nbytes: int, pid: str | int = "self") -> dict:
    """Rss/Pss/Shared/Private bytes of the mappings overlapping ``[addr, addr + nbytes)``
    (``/proc/PID/smaps``), plus the mappings' names (a ``/dev/shm`` file for a shared window)."""
    tot = {"Rss": 0, "Pss": 0, "Shared_Clean": 0, "Shared_Dirty": 0, "Private_Clean": 0, "Private_Dirty": 0}
    names, size, hit = [], 0, False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split(None, 1)
        if "-" in head[0] and not head[0].endswith(":"):
            lo, hi = (int(x, 16) for x in head[0].split("-"))
            hit = lo < addr + nbytes and hi > addr
            if hit:
                size += hi - lo
                parts = line.split()
                names.append(parts[5] if len(parts) > 5 else "[anon]")
            continue
        if hit:
            key = head[0].rstrip(":")
            if key in tot:
                tot[key] += int(line.split()[1]) * 1024
    tot["mapping_bytes"] = size
    tot["names"] = names
    return tot


def touch(arr: np.ndarray) -> float:
    """Read one element per 4 KiB page (maps every page into this process)."""
    step = max(1, 4096 // arr.itemsize)
    return float(arr[::step].sum(dtype=np.float64))


def table_usage(table: np.ndarray, sync=None) -> dict:
    """Touch every page, wait for the other ranks to have touched theirs (``sync``: a barrier), then
    read the PSS. Without the barrier a rank that measures early is charged alone for pages the
    others have not mapped yet, and the sum over ranks overcounts."""
    touch(table)
    if sync is not None:
        sync()
    addr = table.__array_interface__["data"][0]
    u = mapping_usage(addr, table.nbytes)
    u["rollup_pss"] = pss_rollup()
    return u
