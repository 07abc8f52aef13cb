#!/usr/bin/env bash
# One machine, several GPUs: one process drives every visible GPU (jax.pmap over the local
# devices); no jax.distributed needed.
#
#   launch/single_node_gpu.sh --config.data.layout=adobe --config.data.root=/data/D646 \
#       --config.data.bg_root=/data/coco                  # extra args go to modnet_jax.train
#   DRY_RUN=1 GPUS=0,1,2,3 PER_DEVICE_BATCH=4 SCALE_LR=1 launch/single_node_gpu.sh
#
# Variables (environment) [default]:
#   GPUS              comma-separated GPU indices to use (sets CUDA_VISIBLE_DEVICES) [all]
#   NUM_GPUS          how many GPUs that is (only needed for PER_DEVICE_BATCH) [counted from
#                     GPUS, else from CUDA_VISIBLE_DEVICES, else from nvidia-smi -L]
#   CONFIG            config file[:variant] [configs/supervised_gpu.py of this checkout]
#   WORKDIR           run directory [workdir/supervised_gpu]
#   PER_DEVICE_BATCH  if set: global batch = PER_DEVICE_BATCH x NUM_GPUS (else the config's
#                     batch_size, which must be a multiple of the GPU count)
#   SCALE_LR, BASE_LR, BASE_BATCH, PYTHON, DRY_RUN   see launch/common.sh
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=SCRIPTDIR/common.sh
source "$REPO/launch/common.sh"

CONFIG=${CONFIG:-$REPO/configs/supervised_gpu.py}
WORKDIR=${WORKDIR:-workdir/supervised_gpu}
env_args=()
if [[ -n "${GPUS:-}" ]]; then
  env_args+=("CUDA_VISIBLE_DEVICES=$GPUS")
  IFS=, read -r -a gpu_list <<<"$GPUS"
  NUM_GPUS=${NUM_GPUS:-${#gpu_list[@]}}
fi
if [[ -n "${PER_DEVICE_BATCH:-}" && -z "${NUM_GPUS:-}" ]]; then
  if [[ -n "${CUDA_VISIBLE_DEVICES:-}" ]]; then  # JAX sees only these
    IFS=, read -r -a gpu_list <<<"$CUDA_VISIBLE_DEVICES"
    NUM_GPUS=${#gpu_list[@]}
  else
    command -v nvidia-smi >/dev/null || launch_error "no nvidia-smi: set NUM_GPUS (or GPUS)"
    NUM_GPUS=$(nvidia-smi -L | grep -c '^GPU' || true)
  fi
  ((NUM_GPUS >= 1)) || launch_error "no GPU found: set GPUS or NUM_GPUS"
fi
scaling_args "${NUM_GPUS:-1}"

cmd=("$PYTHON" -m modnet_jax.train --config "$CONFIG" --workdir "$WORKDIR"
  "${SCALING_ARGS[@]}" "$@")
if ((${#env_args[@]})); then cmd=(env "${env_args[@]}" "${cmd[@]}"); fi
run_cmd "${cmd[@]}"
