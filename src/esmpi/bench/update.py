"""Sections 2 and 3: the weighted noise sum (the update's hot path) and its node-split prototype.

``node_split_weighted_sum(comm, noise, weights, offsets, d)`` is the node-split update, ready to
integrate: the ``node_size`` ranks of a node each compute a disjoint slice ``[lo, hi)`` of
``sum_j w_j * table[o_j : o_j + d]`` with ``NoiseTable.weighted_sum(lo=, hi=, out=)`` straight into a
node-shared buffer, meet at ``comm.node_barrier()``, and copy the whole result out. A node then
reads the noise once instead of once per rank, and every rank holds the identical result: the
kernel's per-element order (j ascending, no FMA) does not depend on the slice, so the result is
bitwise equal to the serial ``NoiseTable.weighted_sum`` for any node size. Nodes compute
independently (no inter-node traffic).

``weighted_sum_j1`` is esmpi's previous kernel (one pair per pass over ``out``), kept as the
baseline of the current four-pairs-per-pass kernel: same per-element order, same bits.
"""

from __future__ import annotations

import time

import numba
import numpy as np

from ..noise import NodeSplitSum
from .common import figure, interleave, median

PAIRS_FULL, D_FULL = 5_000, 160_000
PAIRS_QUICK, D_QUICK = 500, 16_000
TARGET_GBPS = 25.0


# ------------------------------------------------------------------ the node-split update
def node_split_weighted_sum(comm, noise, weights, offsets, d: int, out: np.ndarray | None = None) -> np.ndarray:
    """``sum_j weights[j] * noise.table[offsets[j] : offsets[j] + d]`` (float32, ``(d,)``), computed
    once per node and bitwise equal to ``noise.weighted_sum(weights, offsets, d)``. Collective over
    the node: every rank of the node must call it with the same arguments."""
    key = (id(comm), id(noise), int(d))
    ns = _CACHE.get(key)
    if ns is None:
        ns = _CACHE[key] = NodeSplitSum(noise, comm, d)
    return ns.weighted_sum(weights, offsets, d, out=out)


_CACHE: dict = {}


# ------------------------------------------------------------------ the previous kernel, as a baseline
@numba.njit(cache=True, nogil=True)
def weighted_sum_j1(noise, offsets, weights, lo, hi, out):
    """esmpi's first kernel: one pair per pass over ``out`` (same bits as the current one)."""
    n = hi - lo
    for k in range(n):
        out[k] = np.float32(0.0)
    for j in range(offsets.size):
        w = weights[j]
        b = offsets[j] + lo
        x = noise[b:b + n]
        for k in range(n):
            out[k] = out[k] + w * x[k]


def problem(noise, d: int, pairs: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Weights like a generation's (differences of centered ranks, in [-1, 1]) and table offsets."""
    rng = np.random.default_rng(seed)
    ranks = rng.permutation(2 * pairs).reshape(pairs, 2) / (2 * pairs - 1) - 0.5
    w = (ranks[:, 0] - ranks[:, 1]).astype(np.float32)
    offs = noise.offsets(seed, 0, 0, pairs, d)
    return w, offs


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and bool(np.array_equal(a.view(np.uint32), b.view(np.uint32)))


# ------------------------------------------------------------------ section 2 (one process)
def bench_serial(noise, d: int, pairs: int, repeats: int, reference_pairs: int | None = None) -> dict:
    """Kernel vs the numpy loop vs the previous j1 kernel, interleaved; bitwise checks. ``reference_pairs``
    limits the numpy-loop check to the first pairs (None: all of them)."""
    from ..noise import weighted_sum_reference

    w, offs = problem(noise, d, pairs)
    nref = pairs if reference_pairs is None else min(pairs, reference_pairs)
    out_j1 = np.empty(d, np.float32)
    res: dict = {}

    def kernel():
        res["kernel"] = noise.weighted_sum(w, offs, d)

    def numpy_loop():
        res["numpy"] = weighted_sum_reference(noise.noise, w[:nref], offs[:nref], d)

    def j1():
        weighted_sum_j1(noise.noise, offs, w, 0, d, out_j1)

    t0 = time.perf_counter()
    kernel()       # first call: JIT compile or cache load
    first = time.perf_counter() - t0
    samples = interleave({"kernel": kernel, "numpy": numpy_loop, "j1": j1}, repeats, warmup=1)
    ref_sub = res["numpy"] if nref == pairs else None
    if ref_sub is None:   # compare the kernel on the same subset
        ref_k = noise.weighted_sum(w[:nref], offs[:nref], d)
        bit_ref = same_bits(ref_k, res["numpy"])
    else:
        bit_ref = same_bits(res["kernel"], ref_sub)
    nbytes = d * pairs * 4
    tk = [s.wall for s in samples["kernel"]]
    tn = [s.wall * pairs / nref for s in samples["numpy"]]
    tj = [s.wall for s in samples["j1"]]
    return {"d": d, "pairs": pairs, "table": noise.size, "bytes": nbytes, "first_call_s": first,
            "kernel_s": median(tk), "numpy_s": median(tn), "j1_s": median(tj),
            "kernel_gbps": nbytes / median(tk) / 1e9, "numpy_gbps": nbytes / median(tn) / 1e9,
            # bytes per CPU second: the rate without other jobs' CPU contention (memory contention remains)
            "kernel_gbps_cpu": nbytes / max(1e-9, median([s.cpu for s in samples["kernel"]])) / 1e9,
            "j1_gbps": nbytes / median(tj) / 1e9,
            "speedup_vs_numpy": median([b / a for a, b in zip(tk, tn)]),
            "speedup_vs_j1": median([b / a for a, b in zip(tk, tj)]),
            "bitwise_reference": bit_ref, "reference_pairs": nref,
            "bitwise_j1": same_bits(res["kernel"], out_j1),
            "samples": {k: [vars(s) for s in v] for k, v in samples.items()}, "_samples": samples}


def serial_figures(r: dict) -> list:
    s = r["_samples"]
    gb = [r["bytes"] / x.wall / 1e9 for x in s["kernel"]]
    sub = "" if r["reference_pairs"] == r["pairs"] else f" (checked on the first {r['reference_pairs']} pairs)"
    cw = median([x.cpu_wall for x in s["kernel"]])
    why = (f"per CPU second the kernel read {r['kernel_gbps_cpu']:.1f} GB/s (cpu/wall {cw:.2f}: "
           + ("the process waited for a CPU, so the wall-clock rate mostly measures the load" if cw < 0.9 else
              "it had a CPU") + f"); it streams {r['bytes'] / 1e9:.2f} GB of noise and loads+stores the "
           f"{r['d'] * 4 / 1e3:.0f} kB output once per four pairs; the previous one-pair-per-pass kernel "
           f"ran {r['j1_gbps']:.1f} GB/s (current = {r['speedup_vs_j1']:.2f}x it).")
    return [
        figure("update.serial.gbps", "2 update", f"weighted sum d={r['d']:,}, {r['pairs']:,} pairs, "
               f"{r['table'] / 1e6:.0f}M table: noise read rate", median(gb), "GB/s", target=TARGET_GBPS, op=">=",
               why=why + " Memory bandwidth is also shared with other jobs on this machine.",
               samples=s["kernel"], raw=gb,
               info=f"{r['kernel_s']:.3f} s per update; numpy loop {r['numpy_s']:.3f} s "
                    f"({r['speedup_vs_numpy']:.2f}x slower)."),
        figure("update.serial.seconds", "2 update", "weighted sum time (one core)", r["kernel_s"], "s",
               samples=s["kernel"]),
        figure("update.serial.bitwise", "2 update", "kernel == numpy loop (bitwise)" + sub, r["bitwise_reference"],
               "bool", target=True, op="=="),
        figure("update.j1.gbps", "2 update", "previous kernel (1 pair per pass): noise read rate",
               r["j1_gbps"], "GB/s", samples=s["j1"], raw=[r["bytes"] / x.wall / 1e9 for x in s["j1"]],
               info=f"the current kernel is {r['speedup_vs_j1']:.2f}x it, side by side; bitwise identical: "
                    f"{r['bitwise_j1']}."),
    ]


# ------------------------------------------------------------------ section 3 (under mpiexec)
def quiet_barrier(comm, poll: float = 1e-4) -> None:
    """Barrier whose waiting ranks sleep (MPICH busy-polls in blocking collectives, which would steal
    the CPU from the rank being timed)."""
    c = getattr(comm, "comm", None)
    if c is None or comm.size == 1:
        return
    req = c.Ibarrier()
    while not req.Test():
        time.sleep(poll)


def bench_node_split(comm, noise, d: int, pairs: int, repeats: int) -> dict:
    """Per rank: serial (rank 0 alone, the others sleep), replicated (every rank the full sum at the
    same time: today's trainer) and node-split, interleaved; bitwise checks against serial."""
    w, offs = problem(noise, d, pairs)
    serial_ref = noise.weighted_sum(w, offs, d)
    ns = NodeSplitSum(noise, comm, d)              # the trainer's (esmpi.noise)
    bit_split = same_bits(ns.weighted_sum(w, offs, d), serial_ref)
    # a second call uses the other buffer, with different weights: exercises the double buffering
    w2 = (w[::-1] * np.float32(0.5)).copy()
    bit_split2 = same_bits(ns.weighted_sum(w2, offs, d), noise.weighted_sum(w2, offs, d))
    out = np.empty(d, np.float32)

    def wrap(op):
        def run():
            quiet_barrier(comm)
            c0, t0 = time.process_time(), time.perf_counter()
            op()
            t1, c1 = time.perf_counter(), time.process_time()
            quiet_barrier(comm)
            return {"t": t1 - t0, "cpu": c1 - c0}
        return run

    def serial():
        if comm.rank == 0:
            noise.weighted_sum(w, offs, d, out=out)

    variants = {"serial": wrap(serial), "replicated": wrap(lambda: noise.weighted_sum(w, offs, d, out=out)),
                "split": wrap(lambda: ns.weighted_sum(w, offs, d, out=out))}
    samples = interleave(variants, repeats, warmup=1)
    t = {k: [s.extra["t"] for s in v] for k, v in samples.items()}
    return {"rank": comm.rank, "size": comm.size, "node_size": comm.node_size, "lo": ns.lo, "hi": ns.hi,
            "bitwise_split": bit_split and bit_split2, "times": t,
            "cpu": {k: [s.extra["cpu"] for s in v] for k, v in samples.items()},
            "load": [s.load0 for v in samples.values() for s in v]}


def combine_node_split(per_rank: list[dict]) -> dict:
    """Rank-0 view: a variant's time per repeat is the slowest rank's (the update is done when the
    last rank has it); serial is rank 0's."""
    k = per_rank[0]["node_size"]
    reps = len(per_rank[0]["times"]["serial"])
    ser = per_rank[0]["times"]["serial"]
    rep = [max(r["times"]["replicated"][i] for r in per_rank) for i in range(reps)]
    spl = [max(r["times"]["split"][i] for r in per_rank) for i in range(reps)]
    return {"k": k, "serial_s": median(ser), "replicated_s": median(rep), "split_s": median(spl),
            "split_ratio": median([b / a for a, b in zip(ser, spl)]),
            "replicated_ratio": median([b / a for a, b in zip(ser, rep)]),
            "bitwise": all(r["bitwise_split"] for r in per_rank),
            "slices": [(r["lo"], r["hi"]) for r in per_rank],
            "ratios": [b / a for a, b in zip(ser, spl)],
            "load": [x for r in per_rank for x in r["load"]],
            "cpu_wall_split": [c / t for r in per_rank for c, t in zip(r["cpu"]["split"], r["times"]["split"]) if t > 0]}


def node_split_figures(c: dict, d: int, pairs: int) -> list:
    k = c["k"]
    tgt = 1.2 / k
    loads = c["load"]
    ld = {"min": round(min(loads), 2), "median": round(median(loads), 2), "max": round(max(loads), 2)} if loads else {}
    cw = c["cpu_wall_split"]
    cwd = {"min": round(min(cw), 3), "median": round(median(cw), 3), "max": round(max(cw), 3)} if cw else {}
    why = ("the ranks share one memory bus and, on this shared machine, the CPUs: "
           f"when all {k} ranks sum concurrently (replicated) each takes {c['replicated_ratio']:.2f}x the "
           "serial time, so a split cannot reach 1/k either.") if k > 1 else \
        "barrier + copy-out overhead on top of the serial sum."
    figs = [
        figure(f"nodesplit.k{k}.ratio", "3 node-split", f"node-split update, k={k} ranks: time / serial",
               c["split_ratio"], "ratio", target=round(tgt, 3), op="<=", why=why, raw=c["ratios"], load=ld,
               cpu_wall=cwd, info=f"serial {c['serial_s']:.3f} s, split {c['split_s']:.3f} s, replicated "
                                  f"(every rank the full sum) {c['replicated_s']:.3f} s; d={d:,}, {pairs:,} pairs."),
        figure(f"nodesplit.k{k}.bitwise", "3 node-split", f"node-split result == serial on every rank (k={k})",
               c["bitwise"], "bool", target=True, op="=="),
    ]
    return figs
