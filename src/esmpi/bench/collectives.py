"""Section 5 (micro-benchmark): one generation's collectives with the rows of ``pairs`` pairs.

Per generation the trainer calls ``allgather_rows`` three times (pair rows ``(n_i, 7)``, observation
rows of the ~1% of pairs that record statistics ``(m_i, 2 + 2 obs_dim)``, evaluation rows
``(e_i, 4)``), each an ``Allgather`` of the row counts plus an ``Allgatherv``, and ``any_flags`` once
(an ``Allreduce``). A repeat is a barrier, then that sequence; its time is the slowest rank's.

Also two point measurements for the Hockney (alpha-beta) model: ``Allgather`` of one float64 per
rank (latency) and an ``Allgatherv`` of 1 MiB in total (bandwidth). These are shared-memory numbers
on one node; the scale model uses documented cluster constants for the interconnect.
"""

from __future__ import annotations

import time

import numpy as np

from ..candidates import EVAL_BASE

RESULT_W = 4   # [index, return, length, failed]: one gathered row per candidate (no behaviour columns)


def generation_rows(rank: int, size: int, pairs: int, obs_dim: int, n_eval: int, seed: int = 0):
    rng = np.random.default_rng(seed + rank)
    mine = np.arange(rank, 2 * pairs, size)          # the trainer deals out episodes e = 2 * pair + sign
    p = np.column_stack([mine, rng.standard_normal((mine.size, RESULT_W - 1))])
    rec = mine[(mine // 2) % 100 == 0]               # ~1% of pairs record observation statistics
    o = np.column_stack([rec, np.full(rec.size, 2000.0), rng.standard_normal((rec.size, 2 * obs_dim))]) \
        if rec.size else np.empty((0, 2 + 2 * obs_dim))
    ev = [e for e in range(n_eval) if size - 1 - (e % size) == rank]
    e = np.column_stack([np.add(ev, EVAL_BASE), rng.standard_normal((len(ev), RESULT_W - 1))]) if ev else np.empty((0, RESULT_W))
    return np.concatenate([p, e]), o


def bench(comm, pairs: int, obs_dim: int, n_eval: int, repeats: int) -> dict:
    p, o = generation_rows(comm.rank, comm.size, pairs, obs_dim, n_eval)
    t_gen = []
    for _ in range(repeats + 3):
        comm.wait_for_all()
        comm.barrier()
        t0 = time.perf_counter()
        P = comm.allgather_rows(p)
        comm.allgather_rows(o)
        comm.any_flags(0)
        t_gen.append(time.perf_counter() - t0)
    assert P.shape == (2 * pairs + n_eval, RESULT_W)
    t_gen = t_gen[3:]
    # point measurements (raw mpi4py when available)
    lat, bw = [], []
    c = getattr(comm, "comm", None)
    if c is not None and comm.size > 1:
        one = np.zeros(1)
        all1 = np.zeros(comm.size)
        per = (1 << 20) // 8 // comm.size
        big = np.zeros(per)
        allb = np.zeros(per * comm.size)
        for _ in range(max(20, repeats)):
            comm.wait_for_all()
            c.Barrier()
            t0 = time.perf_counter()
            c.Allgather(one, all1)
            lat.append(time.perf_counter() - t0)
        for _ in range(max(5, repeats // 4)):
            comm.wait_for_all()
            c.Barrier()
            t0 = time.perf_counter()
            c.Allgather(big, allb)
            bw.append(time.perf_counter() - t0)
    nbytes = 8 * ((2 * pairs + n_eval) * RESULT_W + 2 * (len(range(0, pairs, 100))) * (2 + 2 * obs_dim))
    return {"rank": comm.rank, "size": comm.size, "t_gen": t_gen, "lat": lat, "bw": bw, "bytes_per_gen": nbytes,
            "load": __import__("os").getloadavg()[0]}


def combine(per_rank: list[dict]) -> dict:
    n = len(per_rank[0]["t_gen"])
    per_rep = [max(r["t_gen"][i] for r in per_rank) for i in range(n)]
    out = {"size": per_rank[0]["size"], "bytes_per_gen": per_rank[0]["bytes_per_gen"],
           "gen_coll_s": float(np.median(per_rep)), "gen_coll_samples": per_rep,
           "load": [r["load"] for r in per_rank]}
    if per_rank[0]["lat"]:
        lat = [max(r["lat"][i] for r in per_rank) for i in range(len(per_rank[0]["lat"]))]
        bw = [max(r["bw"][i] for r in per_rank) for i in range(len(per_rank[0]["bw"]))]
        out["allgather_1f64_s"] = float(np.median(lat))
        out["allgather_1MiB_s"] = float(np.median(bw))
        out["bandwidth_GBps"] = (1 << 20) / out["allgather_1MiB_s"] / 1e9
    return out
