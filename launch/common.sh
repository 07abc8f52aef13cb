# shellcheck shell=bash
# Helpers shared by the launch scripts (sourced, not run). Variables every script reads:
#   PYTHON            interpreter on the machine(s) that train [python3]
#   DRY_RUN           1: print each command (copy-pasteable) instead of running it [0]
#   PER_DEVICE_BATCH  if set: --config.batch_size = PER_DEVICE_BATCH x all devices of all hosts
#                     (and --config.eval_batch_size the same, so evaluation fills every device)
#   SCALE_LR          1: --config.optimizer.learning_rate = BASE_LR x batch / BASE_BATCH (the
#                     linear scaling rule; needs PER_DEVICE_BATCH) [0]
#   BASE_LR, BASE_BATCH  the recipe the rule scales from [0.01, 16: SGD 0.01 at batch 16]

PYTHON=${PYTHON:-python3}
DRY_RUN=${DRY_RUN:-0}

launch_error() {
  echo "error: $*" >&2
  exit 2
}

is_dry_run() {
  [[ "$DRY_RUN" == 1 ]]
}

# show_cmd CMD...: the command on one line, each word quoted for the shell if it needs it.
show_cmd() {
  local arg words=()
  for arg in "$@"; do
    if [[ "$arg" =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then
      words+=("$arg")
    else
      words+=("'${arg//\'/\'\\\'\'}'")
    fi
  done
  echo "${words[*]}"
}

# run_cmd CMD...: run it, or print it under DRY_RUN=1.
run_cmd() {
  if is_dry_run; then
    show_cmd "$@"
  else
    "$@"
  fi
}

# require_vars NAME...: stop with a message naming the first unset one.
require_vars() {
  local name
  for name in "$@"; do
    [[ -n "${!name:-}" ]] || launch_error "set $name (see the variables at the top of $0)"
  done
}

# scaling_args TOTAL_DEVICES: fills the array SCALING_ARGS with the batch / lr overrides.
scaling_args() {
  local devices=$1 batch lr
  SCALING_ARGS=()
  if [[ -n "${PER_DEVICE_BATCH:-}" ]]; then
    batch=$((PER_DEVICE_BATCH * devices))
    SCALING_ARGS+=("--config.batch_size=$batch")
    if [[ "${SCALE_LR:-0}" == 1 ]]; then
      lr=$(awk -v b="${BASE_LR:-0.01}" -v n="$batch" -v d="${BASE_BATCH:-16}" \
        'BEGIN { printf "%.6g", b * n / d }')
      SCALING_ARGS+=("--config.optimizer.learning_rate=$lr")
    fi
    SCALING_ARGS+=("--config.eval_batch_size=$batch")
  elif [[ "${SCALE_LR:-0}" == 1 ]]; then
    launch_error "SCALE_LR=1 needs PER_DEVICE_BATCH (the rule scales with the global batch)"
  fi
}
