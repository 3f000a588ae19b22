"""Section 9: the Deep GA's hot path and its compact encoding (``esmpi.strategies.ga``).

- **Child materialisation**: ``Evaluator.materialize`` of a GA child (its cached parent's row plus
  ``sigma * eps`` at a fresh noise offset: one fused pass, ``noise.perturb``, into a reused buffer)
  against a bare numpy ``parent + sigma * eps`` (which allocates), side by side (interleaved
  repeats, each over a batch of different offsets, so neither hits a warm cache), at
  d = 160k (the paper's Humanoid policy) and d = 4M (the Atari network). Target: <= 1.5x.
- **Genome bytes per generation** (one int64 offset: 8 B) and the **compact-encoding ratio** at
  d = 4M after 1,000 generations, from ``GAState.encoding`` of a state of that shape.
- **Evaluation throughput against ES**: env steps per second of rollout time (materialisation,
  episodes and evaluation rows included) of a GA generation against an OpenAI-ES generation with as
  many episodes, the same env and policy, one process, generations interleaved. Target: >= 0.95.
- **Parent-cache memory per node** at T = 20, d = 4M: the cache's proportional set size summed
  over the ranks of ``mpiexec -n 2`` (one node), in copies of the (T + 1) d float32 rows (T parents
  and the scratch row). Target: <= 1.05 (one copy per node, as the noise table).

``python -m esmpi.bench.ga SPEC.json`` is the MPI worker of the last figure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from .common import figure, interleave, median

SECTION = "9 ga"
TARGET_RATIO = 1.5
PSS_TARGET = 1.05


def materialize_figures(d: int, repeats: int, batch: int, sigma: float = 0.002) -> list:
    from .. import candidates as C
    from ..evaluate import Evaluator
    from ..noise import NoiseTable

    table = NoiseTable(d + 8_000_000, seed=1)
    parent = np.random.default_rng(0).standard_normal((1, d)).astype(np.float32)
    ev = Evaluator(SimpleNamespace(num_params=d, obs_dim=0), table, 0, 0)
    rows = C.table(batch)
    rows["offset"] = np.random.default_rng(1).integers(0, table.size - d, size=batch)
    rows["hi"], rows["scale"] = d, np.float32(sigma)
    offsets = [int(o) for o in rows["offset"]]
    s32 = np.float32(sigma)
    assert np.array_equal(ev.materialize(rows[0], parent), parent[0] + s32 * table.noise[offsets[0]: offsets[0] + d])

    def ours():
        for c in rows:
            ev.materialize(c, parent)

    def bare():
        for o in offsets:
            parent[0] + s32 * table.noise[o: o + d]

    samples = interleave({"ours": ours, "bare": bare}, repeats)
    ratios = [a.wall / b.wall for a, b in zip(samples["ours"], samples["bare"])]
    per = median([s.wall for s in samples["ours"]]) / batch
    return [figure(f"ga.materialize.{_k(d)}.ratio", SECTION, f"GA child materialisation / bare numpy axpy, d = {d:,}",
                   median(ratios), "x", target=TARGET_RATIO, op="<=", samples=samples["ours"] + samples["bare"],
                   raw=ratios, info=f"{per * 1e3:.3f} ms per child ({d * 8 / per / 1e9:.1f} GB/s read).")]


def _k(d: int) -> str:
    return f"{d // 1_000_000}M" if d >= 1_000_000 else f"{d // 1000}k"


def encoding_figures(d: int = 4_000_000, generations: int = 1000, T: int = 20) -> list:
    from ..strategies.ga import GAState

    elite = np.arange(generations + 1, dtype=np.int64)
    s = GAState(np.zeros(d, np.float32), elite, np.tile(elite, T), np.full(T, generations + 1, np.int64), 0.0)
    e = s.encoding()
    per_gen = e["elite_genome_bytes"] / (generations + 1)
    return [
        figure("ga.genome.bytes_per_generation", SECTION, "GA genome bytes per generation (one int64 noise offset)",
               per_gen, "B", target=8, op="<="),
        figure("ga.encoding.ratio", SECTION,
               f"GA compact encoding after {generations:,} generations, d = {d:,}: float32 parameters / genome",
               e["ratio"], "x", info=f"{e['elite_param_bytes']:,} B of parameters vs {e['elite_genome_bytes']:,} B of "
               f"genome; a checkpoint's {T} parents + elite: {e['stored_genome_bytes']:,} B of genomes (+ the elite's "
               f"theta, {e['elite_param_bytes']:,} B) instead of {e['stored_param_bytes_if_not']:,} B of parameters."),
    ]


def throughput_figure(env_id: str, pairs: int, repeats: int, max_steps: int = 0) -> list:
    from ..comm import SerialComm
    from ..config import config_from_dict
    from ..objectives.gym import EnvObjective
    from ..train import Trainer

    common = {"run": {"generations": 10**6, "max_seconds": 0.0}, "env": {"id": env_id, "max_episode_steps": max_steps},
              "policy": {"hidden": [64, 64]}, "noise": {"size": 5_000_000}, "checks": {"replica_check_every": 0}}
    es = {**common, "es": {"pairs_per_generation": pairs, "eval_episodes": 2, "obs_stat_fraction": 0.01}}
    ga = {**common, "strategy": {"name": "ga"}, "es": {"obs_stat_fraction": 0.01},
          "ga": {"population": 2 * pairs - 1, "truncation": 4, "sigma": 0.02, "validation_top": 2,
                 "validation_episodes": 1, "test_episodes": 2}}    # 2 pairs - 2 children + 2 validation + 2 test
    trainers = {k: Trainer(c := config_from_dict(t, f"<bench {k}>"), EnvObjective(c), SerialComm())
                for k, t in (("es", es), ("ga", ga))}
    steps = {"ga": [], "es": []}

    def gen(k):
        def run():
            m = trainers[k].generation()
            ev = m["EvalEpCount"] * m["EvalEpLenMean"] if m["EvalEpCount"] else 0
            steps[k].append(m["TimestepsThisIter"] + ev)
        return run

    for t in trainers.values():    # past generation 0 (the GA's fresh initialisations, no elite yet)
        t.generation()
    samples = interleave({"ga": gen("ga"), "es": gen("es")}, repeats)
    # per CPU second of the whole generation (rollouts, materialisation, tell): steps/s per core, and
    # robust to other processes sharing the machine (wall time is not)
    rate = {k: [n / s.cpu for n, s in zip(v[-repeats:], samples[k])] for k, v in steps.items()}
    ratios = [g / e for g, e in zip(rate["ga"], rate["es"])]
    return [figure("ga.throughput.ratio", SECTION,
                   f"GA / ES env steps per CPU second, {env_id}, 64-64 policy, ~{2 * pairs} episodes per generation",
                   median(ratios), "x", target=0.95, op=">=", samples=samples["ga"] + samples["es"], raw=ratios,
                   info=f"GA {median(rate['ga']):,.0f}, ES {median(rate['es']):,.0f} steps per CPU second (medians; "
                   "one process). The populations differ (GA children are far apart, ES perturbations close to "
                   "theta), so the physics may cost differently per step.")]


def cache_memory_figure(out_dir: Path, mpiexec: str, T: int = 20, d: int = 4_000_000, ranks: int = 2) -> list:
    spec = out_dir / "ga_cache.spec.json"
    out = out_dir / "ga_cache.json"
    spec.write_text(json.dumps({"T": T, "d": d, "out": str(out)}))
    if out.exists():
        out.unlink()
    l0 = os.getloadavg()[0]
    p = subprocess.run([mpiexec, "-n", str(ranks), sys.executable, "-m", "esmpi.bench.ga", str(spec)],
                       check=False, capture_output=True, text=True, timeout=300)
    if p.returncode != 0 or not out.exists():
        raise RuntimeError(f"mpiexec -n {ranks} esmpi.bench.ga failed (rc {p.returncode}): {p.stderr[-2000:]}")
    r = json.loads(out.read_text())
    one = (T + 1) * d * 4
    copies = sum(r["pss"]) / one
    return [figure(f"ga.cache.k{ranks}.copies", SECTION,
                   f"GA parent cache per node, T = {T}, d = {d:,}, {ranks} ranks: summed PSS / one copy", copies,
                   "copies", target=PSS_TARGET, op="<=", raw=r["pss"], load={"start": l0, "end": os.getloadavg()[0]},
                   info=f"one copy = (T + 1) d 4 B = {one / 1e6:.0f} MB; per-rank PSS {[round(x / 1e6) for x in r['pss']]} MB; "
                   f"rows bitwise equal on every rank: {r['same']}.")]


def run(prof: dict, out_dir: Path, mpiexec: str) -> list:
    figs = []
    for d in prof["ga_d"]:
        figs += materialize_figures(d, prof["ga_repeats"], max(8, 32_000_000 // d))
    figs += encoding_figures()
    figs += throughput_figure(prof["ga_tp_env"], prof["ga_tp_pairs"], prof["ga_repeats"], prof["ga_tp_max_steps"])
    figs += cache_memory_figure(out_dir, mpiexec, d=prof["ga_cache_d"])
    return figs


def _worker(spec_path: str) -> None:
    """Under mpiexec: fill a ParentCache (T fresh parents, then one generation of children, in place),
    touch it, and report each rank's PSS of the cache mapping."""
    from ..comm import make_comm
    from ..noise import NoiseTable
    from ..strategies.genome import ParentCache
    from .memory import table_usage

    spec = json.loads(Path(spec_path).read_text())
    comm = make_comm()
    T, d = spec["T"], spec["d"]
    noise = NoiseTable(d + 100_000, seed=3, comm=comm)
    cache = ParentCache(T, d, noise, lambda i: np.full(d, i, np.float32), 0.002, comm.node_shared_array,
                        comm.node_barrier)
    genomes = [np.array([i], np.int64) for i in range(T)]
    cache.rows(genomes)
    rows = cache.rows([np.append(genomes[(i * 7) % T], 1000 * i) for i in range(T)])
    digest = float(rows[:, ::4096].astype(np.float64).sum())
    u = table_usage(cache.buf, sync=comm.node_barrier)
    pss = comm.allgather_obj(u["Pss"])
    sums = comm.allgather_obj(digest)
    if comm.rank == 0:
        Path(spec["out"]).write_text(json.dumps({"pss": pss, "same": len(set(sums)) == 1, "time": time.time()}))
    comm.barrier()
    comm.free()


if __name__ == "__main__":
    _worker(sys.argv[1])
