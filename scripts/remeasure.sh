#!/usr/bin/env bash
# Re-run every measurement the README reports for the shipped weights, after they change.
#
#   bash scripts/remeasure.sh [LOGDIR]        (default LOGDIR: out/remeasure)
#
# Two lanes run side by side, one core each (OMP_NUM_THREADS=1, pinned with taskset when it
# exists), then the speed benchmark runs alone on the idle machine. Each command's output goes to
# LOGDIR/<name>.log; the JSON results go where the README says. It needs the prepared photos
# (`python -m m3unet prepare-data`) and took about 20 minutes on this 2-core CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
LOG=${1:-out/remeasure}
mkdir -p "$LOG" out docs
PY=.venv/bin/python
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

pin() {  # pin CORE CMD...: run on one core when taskset exists
    local core=$1; shift
    if command -v taskset >/dev/null; then taskset -c "$core" "$@"; else "$@"; fi
}

run() {  # run NAME CORE ARGS...: one measurement, logged; stops the lane on failure
    local name=$1 core=$2; shift 2
    echo "[$(date +%H:%M:%S)] start $name"
    if ! pin "$core" $PY -m m3unet "$@" >"$LOG/$name.log" 2>&1; then
        echo "FAILED: $name (see $LOG/$name.log)"; return 1
    fi
    echo "[$(date +%H:%M:%S)] done $name"
}

lane_a() {  # the automatic path: the order table first, since eval --auto reads it
    run plan-orders 0 plan-orders
    run eval-auto 0 eval --auto --json out/eval_auto.json
    run eval-auto-1step 0 eval --auto --pool-steps 1 --json out/eval_auto_1step.json
    run eval-auto-rules 0 eval --auto-rules
    run eval-text-ablation 0 eval --text-ablation
    run example 0 restore assets/examples/coffee_degraded.png -o out --reference assets/examples/coffee_clean.png
    run bench-peers 0 bench --peers --threads 1 --json out/field_bench.json --plot docs/field_speed.png
}

lane_b() {  # fidelity against inputs, baselines and peers
    run eval 1 eval --steps 2 --json out/eval.json
    run eval-peers 1 eval --peers --threads 1 --json out/field_eval.json --plot docs/field_steps.png
    run eval-ocr 1 eval --ocr --threads 1 --json out/field_ocr.json --plot docs/field_ocr.png
}

lane_a & a=$!
lane_b & b=$!
status=0
wait $a || status=1
wait $b || status=1
unset OMP_NUM_THREADS MKL_NUM_THREADS
run bench 0-1 bench --steps 2 || status=1   # alone, so the timings are not shared with the lanes
exit $status
