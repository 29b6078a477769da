#!/usr/bin/env bash
# Peak RSS (VmHWM) of one station pipeline and of the orchestrator supervising 8 stations.
#
#   scripts/bench/memory.sh [SECONDS]     (default 30)
#
# Both use pipelines/test-source.pipeline (a generated 1280x720 picture at 1 frame/s with
# an order slip) against oa-s3-server on 127.0.0.1. The single pipeline runs OCR on the whole
# frame (the most memory: detection); the 8 stations of the orchestrator read a region.
# Prints a human summary and `BENCH_JSON {...}`.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
# shellcheck source=scripts/lib/common.sh
. "$ROOT/scripts/lib/common.sh"
SECS=${1:-30}
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
export AWS_ACCESS_KEY_ID=bench-access AWS_SECRET_ACCESS_KEY=bench-secret-0123456789
export AWS_EC2_METADATA_DISABLED=true GST_PLUGIN_PATH="$BIN"

hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

start_s3_server "$WORK/s3" "$WORK/s3.out"
PIDS+=("$S3_PID")
ENDPOINT=$S3_ENDPOINT

cat > "$WORK/slips.srt" <<'SRT'
1
00:00:01,000 --> 00:00:09,000
ORDER #384

2
00:00:09,000 --> 00:00:15,000
ORDER #651

3
00:00:20,000 --> 00:01:00,000
ORDER #925
SRT

# 1) one station pipeline, whole-frame OCR
PIPELINE=$(grep -v '^[[:space:]]*#' pipelines/test-source.pipeline | tr '\n' ' ' \
    | sed -e "s|{source}|$WORK/slips.srt|" -e 's|{station_id}|station_1|' \
          -e 's| roi="{roi}"||' -e 's|{idle_timeout_ms}|5000|' -e "s|{endpoint}|$ENDPOINT|" \
          -e 's|{bucket}|frames|' -e 's| prefix="{prefix}"||' -e 's|{pipeline_instance}|bench-1|' -e 's|{reuse_after_s}|1800|')
# shellcheck disable=SC2086 # split into words on purpose
GST_DEBUG=${GST_DEBUG:-eosmarker:4} gst-launch-1.0 -e $PIPELINE > "$WORK/launch.log" 2>&1 < /dev/null &
LP=$!
PIDS+=($LP)
PIPE_KB=0
for _ in $(seq 1 "$SECS"); do
    sleep 1
    k=$(hwm_kb "$LP"); if [ "${k:-0}" -gt "$PIPE_KB" ]; then PIPE_KB=$k; fi
done
stop_pid "$LP" "$WORK/launch.log"
grep -q 'order-complete\|complete' "$WORK/launch.log" || tail -n 5 "$WORK/launch.log"
ORDERS1=$( (find "$WORK/s3/frames/station_1" -name __EOS__ 2>/dev/null || true) | wc -l)
echo "station pipeline (test-source, full-frame OCR, ${SECS} s): peak RSS $((PIPE_KB / 1024)) MiB, $ORDERS1 orders stored"

# 2) orchestrator with 8 stations (region OCR), labels recogniser
echo '{"384":[{"name":"green apple","quantity":1}]}' > "$WORK/orders.json"
echo '{"items":[{"id":"1","name":"green apple"}]}' > "$WORK/inventory.json"
{
    echo 'orders_file = "orders.json"'
    echo 'inventory_file = "inventory.json"'
    for i in $(seq 1 8); do
        printf '[[stations]]\nid = "st%s"\nsource = "%s"\npipeline = "test-source.pipeline"\nroi = "0,0,1280,200"\nidle_timeout_ms = 5000\n' \
            "$i" "$WORK/slips.srt"
    done
    printf '[storage]\nendpoint = "%s"\nbucket = "frames"\n' "$ENDPOINT"
    printf '[http]\nbind = "127.0.0.1:0"\n'
    printf '[supervision]\npipelines_dir = "%s/pipelines"\nplugin_path = "%s"\n' "$ROOT" "$BIN"
} > "$WORK/orchestrator.toml"
"$BIN"/orchestrator run --config "$WORK/orchestrator.toml" > "$WORK/orch.log" 2>&1 &
OP=$!
PIDS+=($OP)
ORCH_KB=0
CHILD_KB=0
for _ in $(seq 1 "$SECS"); do
    sleep 1
    k=$(hwm_kb "$OP"); if [ "${k:-0}" -gt "$ORCH_KB" ]; then ORCH_KB=$k; fi
    for c in $(pgrep -P "$OP" || true); do
        k=$(hwm_kb "$c"); if [ "${k:-0}" -gt "$CHILD_KB" ]; then CHILD_KB=$k; fi
    done
done
NCHILD=$(pgrep -c -P "$OP" || true)
stop_pid "$OP" "$WORK/orch.log"
RESULTS=$( (find "$WORK/s3/frames/results" -name "*.json" 2>/dev/null || true) | wc -l)
echo "orchestrator with 8 stations (${SECS} s, $NCHILD pipelines running, $RESULTS results): peak RSS $((ORCH_KB / 1024)) MiB; largest station pipeline (region OCR) $((CHILD_KB / 1024)) MiB"
if [ "$NCHILD" -lt 8 ]; then tail -n 20 "$WORK/orch.log"; cat "$WORK/orchestrator.toml"; fi
echo "BENCH_JSON {\"memory\":{\"seconds\":$SECS,\"pipeline_mib\":$((PIPE_KB / 1024)),\"pipeline_orders\":$ORDERS1,\"orchestrator_mib\":$((ORCH_KB / 1024)),\"orchestrator_stations\":$NCHILD,\"orchestrator_results\":$RESULTS,\"station_roi_pipeline_mib\":$((CHILD_KB / 1024))}}"
