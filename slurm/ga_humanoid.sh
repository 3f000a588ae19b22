#!/bin/bash
# slurm/ga_humanoid.sh: the Deep GA on Humanoid-v5 at the scale of Such et al. (2017) (population
# 12,500), jobs/ga-humanoid.toml, on 1,440 MPI ranks (80 machines x 18 cores, as our ES Humanoid job),
# one rank per core, checkpointed and requeued across time limits and pre-emptions until the run is
# done. Same machinery as slurm/humanoid_1440.sh (slurm/lib.sh); see docs/cluster.md and docs/ga.md.
#
#   sbatch -p <partition> -A <account> slurm/ga_humanoid.sh          # from the repository root
#   sbatch -p big -N 40 -t 12:00:00 slurm/ga_humanoid.sh             # sbatch options beat #SBATCH lines
#   ESMPI_SET="run.seed=1 run.generations=500" sbatch slurm/ga_humanoid.sh
#   ESMPI_VENV=/path/to/venv ESMPI_LAUNCHER=mpiexec sbatch slurm/ga_humanoid.sh
#   sbatch --test-only slurm/ga_humanoid.sh                          # check the request only
#
# The run directory is runs/<job name>-<job id> (Slurm keeps the job id across requeues); every run
# of the job passes run.auto_resume=true, so a requeued run resumes from its newest checkpoint.
# Outcome: exit 0 done; 75 pre-empted and requeued; anything else failed (not requeued).
#
# Job name: also names the run directory runs/<job name>-<job id> and the output file.
#SBATCH --job-name=esmpi-ga-humanoid
# 80 nodes x 18 ranks = 1,440 ranks: ~9 of the 12,500 children per rank and generation, plus the
# 300 validation and 30 test episodes (any rank count gives the same bits).
#SBATCH --nodes=80
# One MPI rank per physical core (Salimans et al.'s machines had 18 cores each); with other node sizes,
# set --ntasks-per-node to the cores per node, e.g. sbatch -N 23 --ntasks-per-node=64 (1,472 ranks).
#SBATCH --ntasks-per-node=18
# One core per rank: each rank is single threaded (the thread pools are pinned to 1 in slurm/lib.sh).
#SBATCH --cpus-per-task=1
# Memory per node: the shared 1 GB noise table + the shared 0.4 GB parent cache (626 x 159,505 float32)
# + ~0.4 GB per rank x 18 ranks, with headroom.
#SBATCH --mem=16G
# Wall-time limit of one run (each requeued run gets a new one). Keep it below the partition's limit;
# the job checkpoints before it and continues in the next run.
#SBATCH --time=24:00:00
# SIGUSR1 to the batch shell only (B:) 300 s before the time limit (Slurm may send it up to 60 s
# earlier): the trap forwards it to the ranks, they finish the current generation, checkpoint and
# exit 75, and the script requeues the job. 300 s covers a generation (~12.8M timesteps over 1,440
# cores: tens of seconds) plus the checkpoint (genomes: a few MB).
#SBATCH --signal=B:USR1@300
# Allow requeueing: by the script after the signal, and by Slurm on pre-emption or node failure.
#SBATCH --requeue
# Requeued runs append to the output file instead of truncating it.
#SBATCH --open-mode=append
# Output file in the submit directory: <job name>-<job id>.out (stdout and stderr).
#SBATCH --output=%x-%j.out
# Site specific, deliberately not set here: pass them to sbatch (-p PARTITION, -A ACCOUNT, --qos=...).
set -euo pipefail
# Slurm runs a copy of this script from its spool directory: find the repository via ESMPI_ROOT
# (default: the directory sbatch was called from).
. "${ESMPI_ROOT:-${SLURM_SUBMIT_DIR:-.}}/slurm/lib.sh"
esmpi_setup
esmpi_main jobs/ga-humanoid.toml "$@"
