"""The part of the benchmark that runs under ``mpiexec -n k`` (launched by ``python -m esmpi.bench``).

    mpiexec -n K python -m esmpi.bench.mpi_worker SPEC.json

One launch per rank count k measures, in this order and on one shared noise table (the trainer's):
startup (launch -> first generation; ``ESMPI_BENCH_LAUNCH`` holds the launcher's ``time.time()``),
a few instrumented trainer generations (sections 5 and 6), the table's PSS (section 4), the serial
update (section 2, only when ``serial_update`` and k = 1), the node-split update (section 3) and
the collective micro-benchmark (section 5). Rank 0 writes every rank's records to ``spec["out"]``.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback

T_IMPORT = time.time()


def main(spec_path: str) -> int:
    spec = json.loads(open(spec_path).read())
    from ..comm import make_comm
    from . import collectives, memory, trainer_probe, update
    from .common import _jsonable

    comm = make_comm()
    try:
        launch = float(os.environ.get("ESMPI_BENCH_LAUNCH", "nan"))
        t_comm = time.time()
        probe, trainer = trainer_probe.run_probe(comm, spec["probe_pairs"], spec["table"], spec["generations"],
                                                 launch if launch == launch else None)
        probe["marks"]["python_start"] = T_IMPORT
        probe["marks"]["comm"] = t_comm
        mem = memory.table_usage(trainer.noise.noise, comm.barrier)
        comm.barrier()
        mem["table_bytes"] = int(trainer.noise.noise.nbytes)
        serial = None
        if spec.get("serial_update") and comm.size == 1:
            serial = update.bench_serial(trainer.noise, spec["update_d"], spec["update_pairs"],
                                         spec["update_repeats"], spec.get("reference_pairs"))
            serial.pop("_samples")
        split = None
        if spec.get("split_repeats"):
            split = update.bench_node_split(comm, trainer.noise, spec["update_d"], spec["update_pairs"],
                                            spec["split_repeats"])
        coll = collectives.bench(comm, spec["coll_pairs"], spec["obs_dim"], spec["n_eval"], spec["coll_repeats"])
        mine = {"rank": comm.rank, "node_rank": comm.node_rank, "probe": probe, "memory": mem, "split": split,
                "coll": coll, "serial": serial, "library": getattr(comm, "library", "")}
        everyone = comm.allgather_obj(_jsonable(mine))
        if comm.rank == 0:
            with open(spec["out"], "w") as f:
                json.dump({"size": comm.size, "node_size": comm.node_size, "oversubscribed": comm.oversubscribed,
                           "ranks": everyone}, f)
        comm.barrier()
        return 0
    except Exception:
        sys.stderr.write(f"[rank {comm.rank}] bench worker failed:\n{traceback.format_exc()}")
        sys.stderr.flush()
        comm.abort(1)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
