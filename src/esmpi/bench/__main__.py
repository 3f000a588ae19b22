"""``python -m esmpi.bench``: run the benchmark and write bench/out/report.json + report.md.

    python -m esmpi.bench                 # full (make bench): < 10 min on 2 cores; copies the table to docs/bench.md
    python -m esmpi.bench --quick         # reduced sizes (make bench-ci): ~1-2 min; docs untouched
    python -m esmpi.bench --profile tiny --out /tmp/b --sections rollout,mpi --ranks 1,2

Exit 1 when a section failed or any correctness figure (a bitwise check) is false; timing targets
never gate (they are reported with a note).
"""

from __future__ import annotations

import argparse
import sys

from .profiles import PROFILES
from .common import failed_correctness
from .runner import SECTIONS, run_bench


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(prog="python -m esmpi.bench", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--quick", action="store_true", help="same as --profile quick")
    ap.add_argument("--profile", choices=sorted(PROFILES), default=None, help="sizes (default: full)")
    ap.add_argument("--out", default="bench/out", help="output directory (default %(default)s)")
    ap.add_argument("--docs", default=None, help="also write the table here (default: docs/bench.md for the full "
                    "profile, nothing otherwise)")
    ap.add_argument("--no-docs", action="store_true", help="do not write the docs copy")
    ap.add_argument("--sections", default=",".join(SECTIONS), help="comma list of %(default)s")
    ap.add_argument("--ranks", default=None, help="comma list of MPI rank counts (default: the profile's)")
    ap.add_argument("--mpiexec", default=None, help="launcher (default: the mpiexec next to this interpreter)")
    args = ap.parse_args(argv)
    profile = args.profile or ("quick" if args.quick else "full")
    docs = None if args.no_docs else (args.docs or ("docs/bench.md" if profile == "full" else None))
    sections = tuple(s.strip() for s in args.sections.split(",") if s.strip())
    bad = [s for s in sections if s not in SECTIONS]
    if bad:
        ap.error(f"unknown section(s) {bad}; choose from {SECTIONS}")
    ranks = [int(x) for x in args.ranks.split(",")] if args.ranks else None
    data = run_bench(profile, args.out, docs, ranks, sections, args.mpiexec, argv)
    print(open(f"{args.out}/report.md").read())
    bad = failed_correctness(data)
    if bad:
        print(f"esmpi.bench: correctness figure(s) false: {', '.join(bad)}", file=sys.stderr)
    return 1 if data.get("errors") or bad else 0


if __name__ == "__main__":
    sys.exit(main())
