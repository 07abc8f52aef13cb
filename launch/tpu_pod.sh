#!/usr/bin/env bash
# A Cloud TPU VM pod slice: the same train command on every worker at once
# (gcloud compute tpus tpu-vm ssh --worker=all). On TPU VMs jax.distributed.initialize() finds
# the coordinator, process count and index by itself (--distributed); each worker feeds its
# local TPU chips with its rows of every global batch, only worker 0 writes logs and images,
# and all write checkpoints together.
#
#   TPU_NAME=my-v4-32 ZONE=us-central2-b WORKDIR=/mnt/shared/runs/d646 launch/tpu_pod.sh \
#       --config.data.root=/mnt/shared/D646 --config.data.bg_root=/mnt/shared/bg
#   DRY_RUN=1 TPU_NAME=my-v4-32 ZONE=us-central2-b WORKDIR=/mnt/shared/run launch/tpu_pod.sh
#
# Each worker needs this repository at REPO_DIR (e.g. git clone on all workers through
# `gcloud compute tpus tpu-vm ssh NAME --worker=all --command="git clone URL modnet_jax"`) and
# the same data paths; SETUP=1 installs the package there first.
#
# Variables (environment) [default]:
#   TPU_NAME     the TPU VM (pod slice) name (required)
#   ZONE         its zone (required)
#   PROJECT      Google Cloud project [gcloud's default]
#   WORKDIR      run directory on a filesystem all workers share: a Filestore/NFS or gcsfuse
#                mount (checkpoints are written by worker 0 and read back by all) (required)
#   REPO_DIR     the checkout on each worker, relative to the home directory or absolute
#                [modnet_jax]
#   CONFIG       config file[:variant], relative to REPO_DIR [configs/supervised_tpu.py]
#   NUM_DEVICES  TPU devices in the slice (jax.device_count(); only for PER_DEVICE_BATCH)
#   SETUP        1: first run SETUP_CMD on every worker [0]
#   SETUP_CMD    [pip install -U "jax[tpu]" and pip install -e REPO_DIR]
#   DETACH       1: start training in the background on each worker (nohup, output in
#                LOG_FILE) and return; 0: stream worker output here until training ends [0]
#   LOG_FILE     per-worker output file with DETACH=1 [modnet_jax_train.log in the home dir]
#   PER_DEVICE_BATCH, SCALE_LR, BASE_LR, BASE_BATCH, PYTHON, DRY_RUN   see launch/common.sh
# Preemption / maintenance sends SIGTERM: the workers agree on a step, checkpoint there and
# exit; running this script again resumes.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=SCRIPTDIR/common.sh
source "$REPO/launch/common.sh"

require_vars TPU_NAME ZONE WORKDIR
REPO_DIR=${REPO_DIR:-modnet_jax}
CONFIG=${CONFIG:-configs/supervised_tpu.py}
SETUP=${SETUP:-0}
DETACH=${DETACH:-0}
LOG_FILE=${LOG_FILE:-modnet_jax_train.log}
if [[ -n "${PER_DEVICE_BATCH:-}" ]]; then
  require_vars NUM_DEVICES
fi
scaling_args "${NUM_DEVICES:-1}"

gcloud_ssh=(gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=all)
if [[ -n "${PROJECT:-}" ]]; then gcloud_ssh+=(--project="$PROJECT"); fi

if [[ "$SETUP" == 1 ]]; then
  setup=${SETUP_CMD:-"$(show_cmd "$PYTHON" -m pip install -U "jax[tpu]") && $(show_cmd "$PYTHON" -m pip install -e "$REPO_DIR")"}
  run_cmd "${gcloud_ssh[@]}" --command="$setup"
fi

train=$(show_cmd "$PYTHON" -m modnet_jax.train --distributed --config "$CONFIG" \
  --workdir "$WORKDIR" "${SCALING_ARGS[@]}" "$@")
if [[ "$DETACH" == 1 ]]; then
  remote="cd $(show_cmd "$REPO_DIR") && nohup $train > $(show_cmd "$LOG_FILE") 2>&1 < /dev/null &"
else
  remote="cd $(show_cmd "$REPO_DIR") && $train"
fi
run_cmd "${gcloud_ssh[@]}" --command="$remote"
