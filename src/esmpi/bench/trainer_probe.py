"""Sections 5 and 6 (trainer part): a few generations of the real ``Trainer`` with per-rank timers.

The probe wraps, on this rank's objects only (instance attributes, the classes are untouched):
- ``trainer.evaluator.run``: rollout time, CPU time, steps and episodes of this rank (calls with
  ``abandon``, the 'steal' schedule's extra pairs, are counted apart);
- ``comm.allgather_rows`` / ``comm.any_flags``: a barrier is inserted *before* each collective and
  timed as **wait** (this rank is done and waits for the slowest), so the collective itself is
  timed without the load imbalance (**coll**);
- ``comm.wait_for_all`` (the trainer's sleeping barrier when oversubscribed): counted as wait.

Per generation and rank: ``gen`` (wall of ``generation()`` + ``decide()``), rollout, wait, coll,
update (the history's ``TimeUpdate``), and the history's ``TimeRollout``/``TimeComm``/
``TimeElapsedThisIter``. Generation 0 (JIT/cache load, first touch of the table) is reported apart.
"""

from __future__ import annotations

import time
from collections import defaultdict

import numpy as np


def probe_config(pairs: int, table: int, eval_episodes: int = 2, env_id: str = "Humanoid-v5",
                 hidden=(256, 256)):
    from ..config import config_from_dict

    return config_from_dict({
        "run": {"seed": 0, "generations": 10_000},
        "env": {"id": env_id},
        "policy": {"hidden": list(hidden)},
        "es": {"pairs_per_generation": pairs, "eval_episodes": eval_episodes, "obs_stat_fraction": 0.01},
        "noise": {"size": table, "seed": 123},
        "checks": {"replica_check_every": 0},
        "checkpoint": {"every": 0},
    }, "<bench trainer probe>")


class Probe:
    def __init__(self, trainer):
        self.trainer = trainer
        self.cur: dict = defaultdict(float)
        comm, ev = trainer.comm, trainer.evaluator
        self._saved = []
        orig_run = ev.run
        orig_ag, orig_flags, orig_wait = comm.allgather_rows, comm.any_flags, comm.wait_for_all

        def run(*a, **k):
            extra = k.get("abandon") is not None   # the 'steal' schedule's extra pairs (abandoned episode included)
            c0, t0 = time.process_time(), time.perf_counter()
            got = orig_run(*a, **k)
            rows = got[0] if got is not None else np.zeros((0, 4))
            self.cur["extra" if extra else "rollout"] += time.perf_counter() - t0
            self.cur["rollout_cpu"] += time.process_time() - c0
            if extra:
                self.cur["extra_steps"] += float(rows[:, 2].sum()) if rows.size else 0.0
                self.cur["extra_pairs"] += len(rows) // 2
            else:
                self.cur["steps"] += float(rows[:, 2].sum()) if rows.size else 0.0
                self.cur["episodes"] += len(rows)
            return got

        def barrier_then(fn):
            def wrapped(*a, **k):
                t0 = time.perf_counter()
                orig_wait()
                comm.barrier()
                t1 = time.perf_counter()
                out = fn(*a, **k)
                self.cur["wait"] += t1 - t0
                self.cur["coll"] += time.perf_counter() - t1
                return out
            return wrapped

        def wait_for_all():
            t0 = time.perf_counter()
            orig_wait()
            self.cur["wait"] += time.perf_counter() - t0

        for obj, name, new in ((ev, "run", run),
                               (comm, "allgather_rows", barrier_then(orig_ag)),
                               (comm, "any_flags", barrier_then(orig_flags)), (comm, "wait_for_all", wait_for_all)):
            self._saved.append((obj, name))
            setattr(obj, name, new)

    def restore(self):
        for obj, name in self._saved:
            if name in vars(obj):
                delattr(obj, name)

    def generation(self, cfg=None) -> dict:
        """One generation (+ the stop decision), with ``cfg`` swapped in if given (schedule A/B)."""
        self.cur.clear()
        if cfg is not None:
            self.trainer.cfg = cfg
        c0, t0 = time.process_time(), time.perf_counter()
        m = self.trainer.generation()
        self.trainer.decide()
        rec = dict(self.cur)
        rec["gen"] = time.perf_counter() - t0
        rec["cpu"] = time.process_time() - c0
        rec["update"] = m["TimeUpdate"]
        rec["hist_rollout"] = m["TimeRollout"]
        rec["hist_comm"] = m["TimeComm"]
        rec["hist_elapsed"] = m["TimeElapsedThisIter"]
        rec["timesteps"] = m["TimestepsThisIter"]
        rec["ep_len_mean"] = m["EpLenMean"]
        rec["load"] = __import__("os").getloadavg()[0]
        rec["schedule"] = getattr(self.trainer.cfg.es, "schedule", "static")
        return rec


def steal_config(cfg):
    """``cfg`` with ``es.schedule = 'steal'``, or None if this esmpi has no such schedule."""
    if "schedule" not in type(cfg.es).model_fields:
        return None
    return cfg.model_copy(update={"es": cfg.es.model_copy(update={"schedule": "steal"})})


def run_probe(comm, pairs: int, table: int, generations: int, t_launch: float | None = None,
              ab_steal: bool = True) -> tuple[dict, object]:
    """Build the trainer (timed: this includes filling the noise table), run a warm-up generation and
    ``generations`` instrumented ones per schedule: static and, with several ranks and if available,
    'steal', alternating generation by generation (A/B side by side). Returns this rank's records and
    the trainer (its noise table is reused by the other sections)."""
    from ..objectives.gym import EnvObjective
    from ..train import Trainer

    marks = {"probe_start": time.time()}
    cfg = probe_config(pairs, table)
    obj = EnvObjective(cfg)
    marks["objective"] = time.time()
    trainer = Trainer(cfg, obj, comm)
    marks["trainer"] = time.time()
    probe = Probe(trainer)
    steal = steal_config(cfg) if (ab_steal and comm.size > 1) else None
    order = [cfg] + ([cfg, steal] * generations if steal is not None else [cfg] * generations)
    recs = []
    for g, c in enumerate(order):
        if g == 0:
            marks["gen0_start"] = time.time()
        rec = probe.generation(c)
        rec["index"] = g
        recs.append(rec)
        if g == 0:
            marks["gen0_end"] = time.time()
    trainer.cfg = cfg
    probe.restore()
    return {"rank": comm.rank, "marks": marks, "t_launch": t_launch, "gens": recs,
            "d": int(trainer.state.theta.size)}, trainer


def summarise(per_rank: list[dict], schedule: str = "static") -> dict:
    """Rank-0 view over ranks and this schedule's generations (the warm-up generation 0 excluded)."""
    size = len(per_rank)
    gens = len(per_rank[0]["gens"])
    use = [i for i, g in enumerate(per_rank[0]["gens"]) if i > 0 and g.get("schedule", "static") == schedule]
    if not use:
        use = [0]
    rows = []
    for r in per_rank:
        g = [r["gens"][i] for i in use]
        tot = {k: float(sum(x.get(k, 0.0) for x in g)) for k in ("gen", "rollout", "rollout_cpu", "wait", "coll",
                                                                  "update", "steps", "episodes", "cpu", "extra",
                                                                  "extra_steps", "extra_pairs", "hist_rollout",
                                                                  "hist_comm", "hist_elapsed")}
        us_step = tot["rollout"] / tot["steps"] if tot["steps"] else np.nan
        # the 'steal' schedule's extra-pair time that did not produce kept steps (the abandoned episode)
        waste = max(0.0, tot["extra"] - tot["extra_steps"] * us_step) if tot["extra"] else 0.0
        rows.append({"rank": r["rank"], **tot, "waste": waste, "waste_frac": waste / tot["gen"],
                     "useful_steps_per_s": (tot["steps"] + tot["extra_steps"]) / tot["gen"],
                     "rollout_frac": (tot["rollout"] + tot["extra"] - waste) / tot["gen"],
                     "idle_frac": tot["wait"] / tot["gen"],
                     "coll_frac": tot["coll"] / tot["gen"], "update_frac": tot["update"] / tot["gen"],
                     "cpu_wall": tot["cpu"] / tot["gen"],
                     "rollout_cpu_wall": tot["rollout_cpu"] / tot["rollout"] if tot["rollout"] else np.nan,
                     "us_per_step": tot["rollout"] / tot["steps"] * 1e6 if tot["steps"] else np.nan})
    r0 = per_rank[0]
    m = r0["marks"]
    launch = r0.get("t_launch")
    per_gen_coll = [max(r["gens"][i]["coll"] for r in per_rank) for i in use]
    per_gen_time = [max(r["gens"][i]["gen"] for r in per_rank) for i in use]
    roll = [x["rollout"] for x in rows]
    return {
        "schedule": schedule, "size": size, "generations": gens, "used_generations": use, "ranks": rows,
        "useful_steps_per_s": float(sum(x["useful_steps_per_s"] for x in rows)),
        "max_waste_frac": max(x["waste_frac"] for x in rows),
        "gen_s": float(np.median(per_gen_time)), "coll_s_per_gen": float(np.median(per_gen_coll)),
        "coll_frac": float(np.median([c / t for c, t in zip(per_gen_coll, per_gen_time)])),
        "hist_comm_s_per_gen": float(np.median([r0["gens"][i]["hist_comm"] for i in use])),
        "hist_rollout_frac": float(np.median([r0["gens"][i]["hist_rollout"] / r0["gens"][i]["hist_elapsed"]
                                              for i in use])),
        "max_idle_frac": max(x["idle_frac"] for x in rows), "mean_idle_frac": float(np.mean([x["idle_frac"] for x in rows])),
        "imbalance": max(roll) / float(np.mean(roll)) if np.mean(roll) > 0 else np.nan,
        "steps_imbalance": max(x["steps"] for x in rows) / float(np.mean([x["steps"] for x in rows])),
        "ep_len_mean": float(np.median([r0["gens"][i]["ep_len_mean"] for i in use])),
        "startup": {
            "launch_to_gen0_start_s": (m["gen0_start"] - launch) if launch else None,
            "launch_to_gen0_end_s": (m["gen0_end"] - launch) if launch else None,
            "launch_to_probe_s": (m["probe_start"] - launch) if launch else None,
            "objective_s": m["objective"] - m["probe_start"],
            "trainer_init_s": m["trainer"] - m["objective"],
            "gen0_s": m["gen0_end"] - m["gen0_start"],
        },
        "load": [r["gens"][i]["load"] for r in per_rank for i in use],
        "cpu_wall": [x["cpu_wall"] for x in rows],
    }
