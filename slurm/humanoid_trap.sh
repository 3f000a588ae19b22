#!/bin/bash
# slurm/humanoid_trap.sh: the Humanoid deceptive trap of Conti et al. (2018) at the authors' scale
# (1,000 episodes per generation, 256-256 policy, M = 5 members), one array task per algorithm:
# task 0 = plain ES, 1 = NS-ES, 2 = NSR-ES, 3 = NSRA-ES (jobs/humanoid_trap_{es,ns,nsr,nsra}.toml).
# Each task is an ordinary esmpi job: checkpointed, requeued after a pre-emption signal, resumed.
# See docs/novelty.md.
#
#   sbatch -p <partition> -A <account> slurm/humanoid_trap.sh        # all four, seed 0
#   ESMPI_SEED=1 sbatch slurm/humanoid_trap.sh                       # all four, seed 1
#   sbatch --array=2 slurm/humanoid_trap.sh                          # NSR-ES only
#   ESMPI_SET="run.generations=300" sbatch -N 2 slurm/humanoid_trap.sh
#
# Job name: also names the run directories runs/<job name>-<array job id>_<task id>.
#SBATCH --job-name=esmpi-humanoid-trap
# One array task per algorithm (0 es, 1 ns, 2 nsr, 3 nsra), all four at once.
#SBATCH --array=0-3%4
# 4 nodes x 18 ranks = 72 ranks per task: ~14 of the 1,000 episodes per rank and generation
# (the novelty variants add 5 deterministic BC episodes, run on the ranks with the fewest pairs).
#SBATCH --nodes=4
#SBATCH --ntasks-per-node=18
# One core per single-threaded rank.
#SBATCH --cpus-per-task=1
# Memory per node: one shared 1 GB noise table + ~0.4 GB per rank (5 members of 167k parameters
# and their Adam moments are ~10 MB per rank).
#SBATCH --mem=16G
# Wall-time limit of one run of one task; a task checkpoints before it and continues when requeued.
#SBATCH --time=24:00:00
# SIGUSR1 to the batch shell (B:) 300 s before the limit: checkpoint and requeue.
#SBATCH --signal=B:USR1@300
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
[ -n "${SLURM_ARRAY_TASK_ID:-}" ] || { echo "slurm/humanoid_trap.sh is an array job: submit it with --array" >&2; exit 2; }
variants=(es ns nsr nsra)
[ "$SLURM_ARRAY_TASK_ID" -lt 4 ] || { echo "slurm/humanoid_trap.sh: array task ids are 0-3 (es ns nsr nsra)" >&2; exit 2; }
esmpi_setup
esmpi_main "jobs/humanoid_trap_${variants[$SLURM_ARRAY_TASK_ID]}.toml" --set "run.seed=${ESMPI_SEED:-0}" "$@"
