#!/usr/bin/env bash
#SBATCH --job-name=modnet_jax
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=8
#SBATCH --time=24:00:00
#SBATCH --output=%x-%j.out
#SBATCH --signal=TERM@120
#
# Multi-node GPU training under SLURM. Submit from the repository root:
#
#   sbatch launch/slurm_gpu.sh --config.data.root=/shared/D646 --config.data.bg_root=/shared/bg
#   sbatch --nodes=4 launch/slurm_gpu.sh ...                  # the #SBATCH lines are defaults
#   MODE=per_node sbatch launch/slurm_gpu.sh ...              # one process per node
#   DRY_RUN=1 NODES=2 launch/slurm_gpu.sh                     # print the srun command only
#
# Every task runs python -m modnet_jax.train --distributed: jax.distributed.initialize() reads
# the job from SLURM's variables (coordinator: the first node, port from the job id or
# JAX_COORDINATOR_PORT; process count: SLURM_NTASKS; index: SLURM_PROCID). Arguments go to
# modnet_jax.train. Only process 0 writes logs and images; all write checkpoints together.
# --signal=TERM@120 sends SIGTERM two minutes before the time limit: the processes agree on a
# step, checkpoint there and exit; submitting the same command again resumes.
#
# Variables (environment; sbatch passes them on) [default]:
#   MODE           per_gpu: one process per GPU; JAX gives task SLURM_LOCALID the GPU of that
#                  index, so do not bind GPUs to tasks (no --gpus-per-task) [per_gpu]
#                  per_node: one process per node driving all its GPUs (--local_device_ids)
#   NODES          nodes [SLURM_JOB_NUM_NODES]
#   GPUS_PER_NODE  [SLURM_GPUS_ON_NODE, else 8]
#   CPUS_PER_GPU   CPU cores per GPU, for data workers [SLURM_CPUS_PER_TASK, else 8]; per_gpu
#                  gives each process CPUS_PER_GPU cores: set --config.data.num_workers below
#                  that (configs/supervised_gpu.py asks for 8 workers per process)
#   REPO_DIR       this checkout, on a filesystem every node sees [SLURM_SUBMIT_DIR]
#   CONFIG         config file[:variant] [REPO_DIR/configs/supervised_gpu.py]
#   WORKDIR        run directory; must be on a filesystem every node shares (checkpoints are
#                  written by process 0 and read back by all); a resubmitted job resumes from
#                  its checkpoints, so the default names the job, not the job id
#                  [REPO_DIR/workdir/<job name>]
#   SRUN_ARGS      extra srun options (space-separated) []
#   PER_DEVICE_BATCH, SCALE_LR, BASE_LR, BASE_BATCH, PYTHON, DRY_RUN   see launch/common.sh
set -euo pipefail
# sbatch runs a copy of this file from a spool directory: find the checkout from the submit
# directory, not from this file's path.
REPO_DIR=${REPO_DIR:-${SLURM_SUBMIT_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}}
[[ -f "$REPO_DIR/launch/common.sh" ]] ||
  { echo "error: $REPO_DIR is not a modnet_jax checkout: submit from it or set REPO_DIR" >&2; exit 2; }
# shellcheck source=SCRIPTDIR/common.sh
source "$REPO_DIR/launch/common.sh"

MODE=${MODE:-per_gpu}
NODES=${NODES:-${SLURM_JOB_NUM_NODES:-}}
GPUS_PER_NODE=${GPUS_PER_NODE:-${SLURM_GPUS_ON_NODE:-8}}
CPUS_PER_GPU=${CPUS_PER_GPU:-${SLURM_CPUS_PER_TASK:-8}}
CONFIG=${CONFIG:-$REPO_DIR/configs/supervised_gpu.py}
WORKDIR=${WORKDIR:-$REPO_DIR/workdir/${SLURM_JOB_NAME:-modnet_slurm}}
require_vars NODES
scaling_args $((NODES * GPUS_PER_NODE))

train=("$PYTHON" -m modnet_jax.train --distributed --config "$CONFIG" --workdir "$WORKDIR")
case "$MODE" in
  per_gpu)
    tasks_per_node=$GPUS_PER_NODE
    cpus_per_task=$CPUS_PER_GPU
    ;;
  per_node)
    tasks_per_node=1
    cpus_per_task=$((CPUS_PER_GPU * GPUS_PER_NODE))
    train+=(--local_device_ids "$(seq -s, 0 $((GPUS_PER_NODE - 1)))")
    ;;
  *) launch_error "MODE must be per_gpu or per_node, not '$MODE'" ;;
esac
read -r -a srun_extra <<<"${SRUN_ARGS:-}"
cmd=(srun --nodes="$NODES" --ntasks-per-node="$tasks_per_node" --cpus-per-task="$cpus_per_task"
  --kill-on-bad-exit=1 "${srun_extra[@]}" "${train[@]}" "${SCALING_ARGS[@]}" "$@")
is_dry_run || mkdir -p "$WORKDIR"
run_cmd "${cmd[@]}"
