#!/usr/bin/env bash
# Several JAX processes on this machine, each with its own fake CPU devices, joined by
# jax.distributed through a coordinator on localhost: the multi-host code paths (per-host data,
# cross-process collectives, collective checkpoints, chief-only logs) without a cluster. The
# result equals one process on NUM_PROCESSES x DEVICES_PER_PROCESS devices
# (tests/test_multihost.py checks it).
#
#   launch/local_cpu.sh [--config.FIELD=VALUE ...]      # extra args go to modnet_jax.train
#   DRY_RUN=1 NUM_PROCESSES=4 launch/local_cpu.sh        # print the commands only
#
# Variables (environment) [default]:
#   NUM_PROCESSES        processes to start [2]
#   DEVICES_PER_PROCESS  fake CPU devices per process [4]
#   CONFIG               config file[:variant] [configs/supervised.py:tiny of this checkout]
#   WORKDIR              run directory, shared by all processes [workdir/local_cpu]
#   PORT                 coordinator port on localhost [a free one]
#   LOG_DIR              where processes 1.. write their output (process 0 writes to this
#                        terminal) [a new temporary directory]
#   PER_DEVICE_BATCH     global batch = this x all devices [1]; SCALE_LR etc.: launch/common.sh
#   PYTHON, DRY_RUN      see launch/common.sh
# SIGTERM/SIGINT to this script is passed on as SIGTERM: the processes agree on a step, write
# a checkpoint there and exit (rerun the same command to resume). If one process fails, the
# others are stopped.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=SCRIPTDIR/common.sh
source "$REPO/launch/common.sh"

NUM_PROCESSES=${NUM_PROCESSES:-2}
DEVICES_PER_PROCESS=${DEVICES_PER_PROCESS:-4}
CONFIG=${CONFIG:-$REPO/configs/supervised.py:tiny}
WORKDIR=${WORKDIR:-workdir/local_cpu}
PER_DEVICE_BATCH=${PER_DEVICE_BATCH:-1}
if [[ -z "${PORT:-}" ]]; then
  PORT=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("localhost", 0)); print(s.getsockname()[1])')
fi
if [[ -z "${LOG_DIR:-}" ]]; then
  if is_dry_run; then LOG_DIR=/tmp/modnet_jax_local_cpu_logs; else LOG_DIR=$(mktemp -d); fi
fi
((NUM_PROCESSES >= 1 && DEVICES_PER_PROCESS >= 1)) || launch_error "counts must be >= 1"
scaling_args $((NUM_PROCESSES * DEVICES_PER_PROCESS))

# Each process gets exactly DEVICES_PER_PROCESS CPU devices (any count already in XLA_FLAGS
# is replaced).
xla_flags=$(printf '%s' "${XLA_FLAGS:-}" | sed -E 's/--xla_force_host_platform_device_count=[0-9]+//g')
xla_flags="${xla_flags} --xla_force_host_platform_device_count=${DEVICES_PER_PROCESS}"

is_dry_run || mkdir -p "$LOG_DIR"
pids=()
for ((i = 0; i < NUM_PROCESSES; i++)); do
  cmd=(env JAX_PLATFORMS=cpu "XLA_FLAGS=${xla_flags# }"
    "$PYTHON" -m modnet_jax.train --config "$CONFIG" --workdir "$WORKDIR"
    --coordinator "localhost:$PORT" --num_processes "$NUM_PROCESSES" --process_id "$i"
    "${SCALING_ARGS[@]}" "$@")
  log="$LOG_DIR/process_$i.log"
  if is_dry_run; then
    if ((i == 0)); then show_cmd "${cmd[@]}"; else echo "$(show_cmd "${cmd[@]}") > $log 2>&1"; fi
  elif ((i == 0)); then
    "${cmd[@]}" &
    pids+=($!)
  else
    "${cmd[@]}" >"$log" 2>&1 &
    pids+=($!)
  fi
done
is_dry_run && exit 0
echo "local_cpu: $NUM_PROCESSES processes x $DEVICES_PER_PROCESS devices, coordinator" \
  "localhost:$PORT; output of processes 1..: $LOG_DIR" >&2

# shellcheck disable=SC2317  # (called by the trap)
forward_stop() {
  echo "local_cpu: stopping (SIGTERM to every process; each checkpoints at an agreed step)" >&2
  kill -TERM "${pids[@]}" 2>/dev/null || true
}
trap forward_stop TERM INT

# Wait for all; on the first failure stop the rest (they would wait for the dead process at
# their next collective): SIGTERM, then SIGKILL 20 s later.
status=0
kill_at=
remaining=("${pids[@]}")
while ((${#remaining[@]})); do
  still=()
  for pid in "${remaining[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      still+=("$pid")
    elif wait "$pid"; then
      :
    else
      rc=$?
      if ((status == 0)); then
        status=$rc
        echo "local_cpu: process with pid $pid exited with status $rc; stopping the others" >&2
        kill -TERM "${pids[@]}" 2>/dev/null || true
        kill_at=$((SECONDS + 20))
      fi
    fi
  done
  remaining=("${still[@]+"${still[@]}"}")
  if [[ -n "$kill_at" ]] && ((SECONDS >= kill_at && ${#remaining[@]})); then
    kill -KILL "${remaining[@]}" 2>/dev/null || true
  fi
  if ((${#remaining[@]})); then sleep 0.5; fi
done
if ((status != 0)); then
  for ((i = 1; i < NUM_PROCESSES; i++)); do
    echo "--- last lines of $LOG_DIR/process_$i.log" >&2
    tail -n 20 "$LOG_DIR/process_$i.log" >&2 || true
  done
fi
exit "$status"
