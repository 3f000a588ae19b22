"""Orchestration: run the sections, launch the MPI parts, turn results into figures, write the report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from . import scale
from .common import Report, Sample, figure, median
from .profiles import PROFILES

SECTIONS = ("rollout", "mpi", "scale", "atari", "images", "ga")
STARTUP_TARGET_S = 6.0      # 1% of the paper's 10-minute run
IDLE_TARGET = 0.10          # what a 90% parallel efficiency leaves for waiting
PSS_TARGET = 1.05           # summed table PSS / table bytes: one table per node (+5% slack)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.2f}] {msg}", file=sys.stderr, flush=True)


def default_mpiexec() -> str:
    return str(Path(sys.executable).parent / "mpiexec")


# ------------------------------------------------------------------ MPI launches
def run_mpi(k: int, prof: dict, out_dir: Path, mpiexec: str) -> dict:
    spec = {"out": str(out_dir / f"mpi_k{k}.json"), "table": prof["table"], "probe_pairs": prof["probe_pairs"],
            "generations": prof["generations"], "update_d": prof["update_d"], "update_pairs": prof["update_pairs"],
            "update_repeats": prof["update_repeats"], "reference_pairs": prof["reference_pairs"],
            "serial_update": k == 1,
            "split_repeats": prof["split_repeats"] if k <= (os.cpu_count() or 1) else prof["split_repeats_oversubscribed"],
            "coll_pairs": prof["coll_pairs"], "coll_repeats": prof["coll_repeats"], "n_eval": prof["n_eval"],
            "obs_dim": prof["obs_dim"]}
    spec_path = out_dir / f"mpi_k{k}.spec.json"
    spec_path.write_text(json.dumps(spec))
    out = Path(spec["out"])
    if out.exists():
        out.unlink()
    env = dict(os.environ)
    env["ESMPI_BENCH_LAUNCH"] = repr(time.time())
    cmd = [mpiexec, "-n", str(k), sys.executable, "-m", "esmpi.bench.mpi_worker", str(spec_path)]
    with open(out_dir / f"mpi_k{k}.log", "w") as logf:
        p = subprocess.run(cmd, env=env, stdout=logf, stderr=subprocess.STDOUT, timeout=prof["mpi_timeout"])
    if p.returncode != 0 or not out.exists():
        tail = (out_dir / f"mpi_k{k}.log").read_text()[-2000:]
        raise RuntimeError(f"mpiexec -n {k} failed (rc {p.returncode}); log tail:\n{tail}")
    return json.loads(out.read_text())


def _samples(dicts) -> list[Sample]:
    return [Sample(**d) for d in dicts]


def _ld(xs) -> dict:
    xs = [x for x in xs if x is not None]
    return {"min": round(min(xs), 2), "median": round(median(xs), 2), "max": round(max(xs), 2)} if xs else {}


def _cw(xs) -> dict:
    xs = [x for x in xs if x is not None and np.isfinite(x)]
    return {"min": round(min(xs), 3), "median": round(median(xs), 3), "max": round(max(xs), 3)} if xs else {}


# ------------------------------------------------------------------ MPI results -> figures
def mpi_figures(results: dict[int, dict], prof: dict, report: Report) -> None:
    from . import trainer_probe, update

    ncpu = os.cpu_count() or 1
    # section 2: serial update (k = 1)
    if 1 in results and results[1]["ranks"][0].get("serial"):
        r = dict(results[1]["ranks"][0]["serial"])
        r["_samples"] = {k: _samples(v) for k, v in r["samples"].items()}
        report.add(*update.serial_figures(r))
        r.pop("_samples")
        report.section("update", {k: v for k, v in r.items() if k != "samples"} |
                       {"kernel_gbps_quiet_estimate": r.get("kernel_gbps_cpu")})
    # section 3: node split
    split = {}
    for k, res in sorted(results.items()):
        per = [x["split"] for x in res["ranks"] if x.get("split")]
        if len(per) != k:
            continue
        c = update.combine_node_split(per)
        split[k] = c
        figs = update.node_split_figures(c, prof["update_d"], prof["update_pairs"])
        if k > ncpu:   # oversubscribed: timing is meaningless, keep the bitwise checks only
            figs = [f for f in figs if f.id.endswith("bitwise")]
            for f in figs:
                f.name += " (oversubscribed)"
        report.add(*figs)
    report.section("nodesplit", split)
    # section 4: memory
    mem = {}
    for k, res in sorted(results.items()):
        rows = [x["memory"] for x in res["ranks"]]
        tb = rows[0]["table_bytes"]
        # a mapping larger than the table (a small table malloc'ed inside [heap]) also holds other data:
        # the table's share of it is at most the table itself
        big = any(x["mapping_bytes"] > 1.05 * tb for x in rows)
        pss = sum(min(x["Pss"], tb) if x["mapping_bytes"] > 1.05 * tb else x["Pss"] for x in rows)
        roll = sum(x["rollup_pss"] for x in rows)
        ratio = pss / tb
        mem[k] = {"table_bytes": tb, "sum_table_pss": pss, "sum_rollup_pss": roll, "ratio": ratio,
                  "per_rank": rows}
        report.add(figure(f"memory.k{k}.table_pss", "4 memory", f"noise table PSS summed over {k} rank(s) / table size",
                          ratio, "tables per node", target=PSS_TARGET, op="<=",
                          why=f"each rank maps a private copy (per-rank table PSS {rows[0]['Pss'] / 2**20:.0f} MiB).",
                          raw=[x["Pss"] for x in rows], load={}, cpu_wall={},
                          info=f"table {tb / 2**20:.0f} MiB; summed table PSS {pss / 2**20:.0f} MiB; whole-process PSS "
                               f"summed {roll / 2**20:.0f} MiB; mapping {rows[0]['names'][:1]}"
                               + ("; the mapping also holds other heap data, so each rank's table PSS is capped at the table size"
                                  if big else "") + "."))
    report.section("memory", mem)
    # sections 5 and 6: trainer probe, collectives, startup
    tp, co = {}, {}
    for k, res in sorted(results.items()):
        s = trainer_probe.summarise([x["probe"] for x in res["ranks"]])
        tp[k] = s
        c = _collectives_combine([x["coll"] for x in res["ranks"]])
        co[k] = c
        over = k > ncpu
        tag = " (oversubscribed)" if over else ""
        st = s["startup"]
        report.add(figure(f"comm.trainer.k{k}", "5 comm", f"trainer: collectives per generation, {k} rank(s){tag}",
                          s["coll_s_per_gen"] * 1e3, "ms", raw=[], load=_ld(s["load"]), cpu_wall=_cw(s["cpu_wall"]),
                          info=f"{s['coll_frac']:.2%} of a {s['gen_s']:.3f} s generation "
                               f"({prof['probe_pairs']} pairs of Humanoid-v5); the history's TimeComm (includes "
                               f"waiting for the slowest rank) {s['hist_comm_s_per_gen'] * 1e3:.2f} ms."))
        report.add(figure(f"comm.micro.k{k}", "5 comm", f"allgather_rows x3 + any_flags with {prof['coll_pairs']:,} "
                          f"pairs' rows, {k} rank(s){tag}", c["gen_coll_s"] * 1e3, "ms", raw=c["gen_coll_samples"],
                          load=_ld(c["load"]), cpu_wall={},
                          info=f"{c['bytes_per_gen'] / 1e3:.0f} kB gathered per generation"
                               + (f"; Allgather 1 f64 {c['allgather_1f64_s'] * 1e6:.1f} µs, 1 MiB total "
                                  f"{c['allgather_1MiB_s'] * 1e3:.2f} ms ({c['bandwidth_GBps']:.1f} GB/s)"
                                  if "allgather_1f64_s" in c else "") + "."))
        fill = st["trainer_init_s"]
        report.add(figure(f"startup.k{k}", "5 comm", f"startup: launch to first generation, {prof['table'] / 1e6:.0f}M "
                          f"table, {k} rank(s){tag}", st["launch_to_gen0_start_s"], "s",
                          target=None if over else STARTUP_TARGET_S, op=None if over else "<=",
                          why=f"Trainer() took {fill:.1f} s, nearly all of it the noise table fill by one rank "
                              f"per node ({prof['table'] / max(fill, 1e-9) / 1e6:.0f} M floats/s; a quiet machine "
                              f"does 57-71 M/s, i.e. ~4 s for 250M); python start + imports + MPI init "
                              f"{st['launch_to_probe_s']:.1f} s; env + policy {st['objective_s']:.2f} s.",
                          raw=[], load=_ld(s["load"][:1]), cpu_wall={},
                          info=f"first generation took {st['gen0_s']:.2f} s (numba cache load, first touch)."))
        st_steal = None
        if any(g.get("schedule") == "steal" for g in res["ranks"][0]["probe"]["gens"]):
            st_steal = trainer_probe.summarise([x["probe"] for x in res["ranks"]], "steal")
            tp[f"{k}_steal"] = st_steal
        if k > 1 and not over:
            ranks = s["ranks"]
            fr = ", ".join(f"rank {x['rank']}: rollout {x['rollout_frac']:.0%} idle {x['idle_frac']:.0%} "
                           f"({int(x['steps'])} steps, cpu/wall {x['rollout_cpu_wall']:.2f})" for x in ranks)
            report.add(figure(f"utilisation.k{k}.idle", "6 utilisation", f"Humanoid-v5, {k} ranks, "
                              f"{prof['probe_pairs']} pairs: largest per-rank idle fraction", s["max_idle_frac"],
                              "fraction", target=IDLE_TARGET, op="<=",
                              why=f"episode lengths differ (steps imbalance max/mean {s['steps_imbalance']:.2f}) "
                                  f"and the ranks' speed differs on a shared machine (rollout time imbalance "
                                  f"{s['imbalance']:.2f}); static pair-to-rank assignment makes the fast rank wait.",
                              raw=[x["idle_frac"] for x in ranks], load=_ld(s["load"]), cpu_wall=_cw(s["cpu_wall"]),
                              info=f"{fr}; history TimeRollout/TimeElapsedThisIter (rank 0) "
                                   f"{s['hist_rollout_frac']:.0%}; mean episode length {s['ep_len_mean']:.0f}."))
            if st_steal is not None:
                x = st_steal
                fr = ", ".join(f"rank {r['rank']}: idle {r['idle_frac']:.0%}, {int(r['extra_pairs'])} extra pairs, "
                               f"abandoned ~{r['waste_frac']:.0%}" for r in x["ranks"])
                report.add(figure(f"utilisation.k{k}.idle_steal", "6 utilisation", "same, es.schedule='steal' "
                                  "(generations alternate with static): largest idle fraction", x["max_idle_frac"],
                                  "fraction", target=IDLE_TARGET, op="<=",
                                  why="ranks still wait at the non-blocking barrier's completion and in collectives.",
                                  raw=[r["idle_frac"] for r in x["ranks"]], load=_ld(x["load"]),
                                  cpu_wall=_cw(x["cpu_wall"]),
                                  info=f"{fr}; useful steps/s (all ranks) {x['useful_steps_per_s']:,.0f} vs static "
                                       f"{s['useful_steps_per_s']:,.0f} = {x['useful_steps_per_s'] / s['useful_steps_per_s']:.2f}x."))
    report.section("trainer", {"per_k": tp, "tell_fixed_s": _tell_fixed(tp, prof, results)})
    report.section("collectives", co)


def _tell_fixed(tp, prof, results) -> float | None:
    if 1 not in tp:
        return None
    upd = [g["update"] for g in results[1]["ranks"][0]["probe"]["gens"][1:]] or \
          [g["update"] for g in results[1]["ranks"][0]["probe"]["gens"]]
    return float(np.median(upd))


def _collectives_combine(per_rank):
    from . import collectives

    return collectives.combine(per_rank)


def code_facts() -> dict:
    """What the installed esmpi does (the scale model's 'as is' follows it)."""
    facts = {"trainer_node_split": scale.trainer_uses_node_split(), "static_unit": scale.trainer_static_unit()}
    try:
        from ..config import ESConfig
        f = ESConfig.model_fields.get("schedule")
        facts["schedules"] = list(getattr(f.annotation, "__args__", ())) if f else ["static"]
        facts["default_schedule"] = f.default if f else "static"
    except Exception:  # pragma: no cover
        pass
    try:
        import subprocess as sp
        facts["git_head"] = sp.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                   cwd=Path(__file__).resolve().parent, timeout=5).stdout.strip() or None
    except Exception:  # pragma: no cover
        facts["git_head"] = None
    return facts


# ------------------------------------------------------------------ the run
def run_bench(profile: str = "full", out_dir: str | Path = "bench/out", docs: str | Path | None = None,
              ranks=None, sections=SECTIONS, mpiexec: str | None = None, argv=None) -> dict:
    prof = dict(PROFILES[profile])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = Report(quick=profile != "full", argv=argv)
    report.data["profile"] = profile
    report.data["sizes"] = prof
    report.section("code", code_facts())
    rollout_details = {}
    if "rollout" in sections:
        log("section 1: rollout throughput")
        try:
            from . import rollout
            figs, rollout_details = rollout.run(prof)
            report.add(*figs)
            report.section("rollout", rollout_details)
        except Exception:
            report.error("rollout", traceback.format_exc())
    results = {}
    if "mpi" in sections:
        for k in ranks or prof["ranks"]:
            log(f"sections 2-6: mpiexec -n {k}")
            try:
                results[k] = run_mpi(k, prof, out_dir, mpiexec or default_mpiexec())
            except Exception as e:
                report.error(f"mpi k={k}", str(e) if isinstance(e, RuntimeError) else traceback.format_exc())
        try:
            mpi_figures(results, prof, report)
        except Exception:
            report.error("mpi figures", traceback.format_exc())
    if "scale" in sections:
        log("section 7: scale model")
        try:
            cal = scale.calibration_from_report(report.data)
            pred = scale.predict(cal, {"monte_carlo": prof["monte_carlo"]})
            report.add(*scale.figures(pred))
            report.section("scale", pred)
            report.extra_md.append(scale.full_markdown(pred))
        except Exception:
            report.error("scale", traceback.format_exc())
    if "atari" in sections:
        log("section 8: Atari rollout and CNN forward")
        try:
            from . import atari
            figs, details = atari.run(prof)
            report.add(*figs)
            report.section("atari", details)
        except Exception:
            report.error("atari", traceback.format_exc())
    if "images" in sections:
        log("section 9: images/s of the supervised networks")
        try:
            from . import images
            figs, details = images.run(prof)
            report.add(*figs)
            report.section("images", details)
        except Exception:
            report.error("images", traceback.format_exc())
    if "ga" in sections:
        log("section 10: Deep GA (child materialisation, encoding, parent cache)")
        try:
            from . import ga
            report.add(*ga.run(prof, out_dir, mpiexec or default_mpiexec()))
        except Exception:
            report.error("ga", traceback.format_exc())
    j, m = report.write(out_dir, Path(docs) if docs else None)
    log(f"wrote {j} and {m}" + (f" and {docs}" if docs else ""))
    return report.data
