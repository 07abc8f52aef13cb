#!/usr/bin/env bash
# The accelerator suite with a hard time limit: kills the run after LIMIT seconds (default
# 480 = 8 minutes); what was measured by then is in $OUT/gpu_suite.json (rewritten after each
# measurement). Extra arguments go to benchmarks/gpu_suite.py (see its --help).
#   OUT=results/h200 bash benchmarks/gpu_suite.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu_suite_out}"
LIMIT="${LIMIT:-480}"
mkdir -p "$OUT"
timeout --signal=TERM --kill-after=15 "$LIMIT" python -m benchmarks.gpu_suite --out "$OUT" "$@" \
    2>&1 | tee "$OUT/gpu_suite.log"
