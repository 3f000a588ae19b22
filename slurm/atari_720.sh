#!/bin/bash
# slurm/atari_720.sh: ES on an Atari game at the paper's scale (Salimans et al. 2017, section 4.2:
# 1B frames in about an hour on 720 CPU cores), jobs/atari-pong-es.toml by default, one MPI rank per
# core, checkpointed and requeued across time limits and pre-emptions until the run is done.
# See docs/atari.md and docs/cluster.md.
#
#   sbatch -p <partition> -A <account> slurm/atari_720.sh                       # Pong, A3C net + VBN
#   ESMPI_SET='atari.game="frostbite"' sbatch slurm/atari_720.sh                # another game
#   ESMPI_SET="atari.frame_skip=2" sbatch slurm/atari_720.sh                    # the paper's frame-skip study
#   ESMPI_SET="atari.vbn=false" sbatch slurm/atari_720.sh                       # the VBN ablation
#   ESMPI_CONFIG=jobs/ga-atari-frostbite.toml sbatch slurm/atari_720.sh         # the Deep GA (Such et al.)
#   sbatch --test-only slurm/atari_720.sh                                       # check the request only
#
# The run directory is runs/<job name>-<job id> (Slurm keeps the job id across requeues); every run
# of the job passes run.auto_resume=true, so a requeued run resumes from its newest checkpoint.
# Outcome: exit 0 done; 75 pre-empted and requeued; anything else failed (not requeued).
#
# Job name: also names the run directory runs/<job name>-<job id> and the output file.
#SBATCH --job-name=esmpi-atari
# 40 nodes x 18 ranks = 720 ranks, the paper's Atari scale (arXiv:1703.03864 section 4.2: "720 CPUs").
#SBATCH --nodes=40
# One MPI rank per physical core (the paper's machines had 18 cores each); with other node sizes,
# set --ntasks-per-node to the cores per node, e.g. sbatch -N 23 --ntasks-per-node=64 (1,472 ranks).
#SBATCH --ntasks-per-node=18
# One core per rank: each rank is single threaded (the thread pools are pinned to 1 in slurm/lib.sh).
#SBATCH --cpus-per-task=1
# Memory per node: one shared 1 GB noise table + per rank the CNN (~3 MB), the VBN reference batch
# (3.6 MB) and the emulator (~0.3 GB) x 18 ranks, with headroom.
#SBATCH --mem=16G
# Wall-time limit of one run (each requeued run gets a new one). Keep it below the partition's limit;
# the job checkpoints before it and continues in the next run.
#SBATCH --time=24:00:00
# SIGUSR1 to the batch shell only (B:) 300 s before the time limit (Slurm may send it up to 60 s
# earlier): the trap forwards it to the ranks, they finish the current generation, checkpoint and
# exit 75, and the script requeues the job. 300 s covers a generation plus the checkpoint many times.
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
esmpi_main jobs/atari-pong-es.toml "$@"
