#!/bin/bash
# slurm/smoke.sh: the CI smoke job. One node, 2 MPI ranks, jobs/smoke.toml (esmpi/PointMass-v0,
# a few seconds), with the same signal / checkpoint / requeue handling as the big jobs
# (slurm/lib.sh). tests/slurm/test_slurm_jobs.py submits it to a local Slurm cluster.
#
#   sbatch slurm/smoke.sh                                   # from the repository root
#   ESMPI_SET="run.generations=20" sbatch slurm/smoke.sh    # config overrides
#   sbatch slurm/smoke.sh --set run.seed=3                  # arguments go to python -m esmpi.run
#
# Pre-empt it by hand: scancel --batch --signal=USR1 <jobid>  (checkpoint, requeue, resume).
#
# Job name: also names the run directory runs/<job name>-<job id>.
#SBATCH --job-name=esmpi-smoke
# One node, two MPI ranks (one per core).
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=2
# Each rank is single threaded.
#SBATCH --cpus-per-task=1
# Small: 2 ranks of ~250 MB and a 400 kB noise table.
#SBATCH --mem=2G
# A few seconds of work; the limit only guards against a hang.
#SBATCH --time=00:10:00
# SIGUSR1 to the batch shell (B:) 60 s before the limit (Slurm may send it up to 60 s earlier):
# the trap in slurm/lib.sh forwards it to the ranks, which checkpoint and exit 75, then requeue.
#SBATCH --signal=B:USR1@60
# The job may be requeued (by itself after a pre-emption signal, or by Slurm).
#SBATCH --requeue
# A requeued run appends to the output file instead of truncating it.
#SBATCH --open-mode=append
# Output file in the submit directory: <job name>-<job id>.out.
#SBATCH --output=%x-%j.out
set -euo pipefail
# Slurm runs a copy of this script from its spool directory: find the repository via ESMPI_ROOT
# (default: the directory sbatch was called from).
. "${ESMPI_ROOT:-${SLURM_SUBMIT_DIR:-.}}/slurm/lib.sh"
esmpi_setup
esmpi_main jobs/smoke.toml "$@"
