#!/bin/bash
# slurm/seeds.sh: one config over several seeds, one array task per seed, each in its own run
# directory (siblings: runs/<job name>-<array job id>_<task id>), the input of multi-seed plots.
# Each task is an ordinary esmpi job: checkpointed, requeued after a pre-emption signal, resumed.
#
#   sbatch slurm/seeds.sh                                       # jobs/default.toml, seeds 0-4
#   sbatch --array=0-9 slurm/seeds.sh                           # seeds 0..9
#   ESMPI_CONFIG=jobs/humanoid.toml sbatch --array=1-3 -N 4 --ntasks-per-node=18 slurm/seeds.sh
#   ESMPI_SET="run.generations=300" sbatch slurm/seeds.sh
#
# seed = SLURM_ARRAY_TASK_ID, unless ESMPI_SEED is set (then ESMPI_SEED + SLURM_ARRAY_TASK_ID).
# (A run.seed in ESMPI_SET is overridden by this seed; one in the script's arguments would win and
# give every task the same seed.)
#
# Job name: also names the run directories runs/<job name>-<array job id>_<task id>.
#SBATCH --job-name=esmpi-seeds
# One array task per seed: seeds 0-4, at most 5 tasks running at once (%5).
#SBATCH --array=0-4%5
# Each seed runs on one node ...
#SBATCH --nodes=1
# ... with one MPI rank per core (set it to the node's core count).
#SBATCH --ntasks-per-node=18
# One core per single-threaded rank.
#SBATCH --cpus-per-task=1
# Memory per node: the default job's 100 MB noise table + ~0.3 GB per rank.
#SBATCH --mem=8G
# Wall-time limit of one run of one task; a task checkpoints before it and continues when requeued.
#SBATCH --time=04:00:00
# SIGUSR1 to the batch shell (B:) 120 s before the limit (up to 60 s earlier): checkpoint and requeue.
#SBATCH --signal=B:USR1@120
# Allow requeueing (by the script after the signal, by Slurm on pre-emption).
#SBATCH --requeue
# Requeued runs append to the output file.
#SBATCH --open-mode=append
# Output file per task: <job name>-<array job id>_<task id>.out.
#SBATCH --output=%x-%A_%a.out
set -euo pipefail
# Slurm runs a copy of this script from its spool directory: find the repository via ESMPI_ROOT
# (default: the directory sbatch was called from).
. "${ESMPI_ROOT:-${SLURM_SUBMIT_DIR:-.}}/slurm/lib.sh"
[ -n "${SLURM_ARRAY_TASK_ID:-}" ] || { echo "slurm/seeds.sh is an array job: submit it with --array" >&2; exit 2; }
seed=$(( ${ESMPI_SEED:-0} + SLURM_ARRAY_TASK_ID ))
esmpi_setup
esmpi_main jobs/default.toml --set "run.seed=$seed" "$@"
