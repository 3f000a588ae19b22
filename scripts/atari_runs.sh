#!/bin/bash
# The local Atari study (issue 15, docs/atari.md "Results"), one experiment at a time on one rank,
# niced: ES with and without VBN on Space Invaders (seeds 0 and 1), the Deep GA and random search on
# Frostbite.
# Resumable: every run passes run.auto_resume=true, so rerunning continues a run from its newest
# checkpoint and skips a finished one. Usage: PY=.venv/bin/python scripts/atari_runs.sh [NAME ...]
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=${OUT:-results/atari}
mkdir -p "$OUT"

run() {   # run NAME JOB [--set ...]
  local name=$1 job=$2; shift 2
  echo "== $name ($(date -u +%H:%M:%S), load $(cut -d' ' -f1 /proc/loadavg))"
  nice -n 10 "$PY" -m esmpi.run --config "$job" --out "$OUT/$name" --set run.auto_resume=true -q "$@"
}

want() { [ $# -eq 0 ] || [[ " $* " == *" $name "* ]]; }
for name in es-vbn es-novbn ga rs es-novbn-s1 es-vbn-s1; do
  want "${@}" || continue
  case $name in
    es-vbn)   run $name jobs/atari-local-spaceinvaders-es.toml ;;
    es-novbn) run $name jobs/atari-local-spaceinvaders-es.toml --set atari.vbn=false ;;
    ga)       run $name jobs/atari-local-frostbite-ga.toml ;;
    rs)       run $name jobs/atari-local-frostbite-ga.toml --set 'ga.mode="random_search"' --set ga.truncation=0 ;;
    es-vbn-s1)   run $name jobs/atari-local-spaceinvaders-es.toml --set run.seed=1 ;;
    es-novbn-s1) run $name jobs/atari-local-spaceinvaders-es.toml --set run.seed=1 --set atari.vbn=false ;;
  esac
done
