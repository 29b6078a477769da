#!/usr/bin/env bash
# Benchmarks (not tests): every figure of docs/benchmarks.md in one run, side by side.
#
#   scripts/bench.sh [--runs N] [--orders N] [--mem-seconds S] [--stations 16,24,32]
#                    [--keyframe-stations 32,40] [--json FILE]
#
#   1. OCR ms per frame: ocrsegment (full frame, region, unchanged) vs the bare engine, and
#      the same frame through pip rapidocr + onnxruntime (the replaced Python way).
#   2. Frames/s of 100 KB PUTs: minioframesink vs raw aws-sdk-s3 vs a boto3 uploader,
#      same concurrency, same local S3 server.
#   3. Order latency marker -> result (labels recogniser, 3 frames) and marker discovery.
#   4. Peak RSS of a station pipeline and of the orchestrator with 8 stations, and of the
#      detection model alone in ONNX Runtime (arena on/off, two input sizes).
#   5. Station density: 1280x720 H.264 cameras at 15 fps replayed over loopback RTSP,
#      pipelines at 1 frame/s with OCR on a region; --stations lists the counts tried with
#      rtsp-camera.pipeline, --keyframe-stations with rtsp-camera-keyframes.pipeline.
# Prints each benchmark's own output, then one table and `BENCH_JSON {...}` (also written
# to --json FILE). The Python side lives in .deps/bench-venv (created here from PyPI).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# Where cargo put the binaries (CARGO_TARGET_DIR is honoured).
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
RUNS=20 ORDERS=20 MEM_SECONDS=30 JSON="" STATIONS=16,24,32 KEYFRAME_STATIONS=32,40
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=$2; shift 2 ;;
        --orders) ORDERS=$2; shift 2 ;;
        --mem-seconds) MEM_SECONDS=$2; shift 2 ;;
        --json) JSON=$2; shift 2 ;;
        --stations) STATIONS=$2; shift 2 ;;
        --keyframe-stations) KEYFRAME_STATIONS=$2; shift 2 ;;
        [0-9]*) RUNS=$1; shift ;;  # old form: scripts/bench.sh RUNS
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "bench: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
done
scripts/setup.sh --no-build > /dev/null
export AWS_EC2_METADATA_DISABLED=true

VENV=.deps/bench-venv
if ! "$VENV/bin/python" -c 'import rapidocr, onnxruntime, boto3' 2> /dev/null; then
    echo "==> Python venv $VENV (rapidocr 3.10.0, onnxruntime 1.32.0, boto3)"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --find-links .deps/wheels rapidocr==3.10.0 onnxruntime==1.32.0 boto3
fi
PY=$ROOT/$VENV/bin/python

cargo build --release -q -p gst-plugin-orderaccuracy --lib --example bench_ocr --example bench_sink
cargo build --release -q -p oa-ocr --example bench_ort_memory
cargo build --release -q -p orchestrator --bin orchestrator --example bench_latency
cargo build --release -q -p oa-s3-server
cargo build --release -q -p station-sim --example bench_density --example bench_reload

LOGS=$(mktemp -d)
trap 'rm -rf "$LOGS"' EXIT
MACHINE="$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(free -g | awk '/^Mem/ {print $2}') GiB, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "machine: $MACHINE, $(date -u +%FT%TZ)"
echo "{\"machine\":\"$MACHINE\",\"date\":\"$(date -u +%FT%TZ)\"}" | sed 's/^/BENCH_JSON /' > "$LOGS/0.log"

echo "==> 1. OCR per frame ($RUNS runs each)"
"$BIN"/examples/bench_ocr "$RUNS" --ppm "$LOGS/frame.ppm" | tee "$LOGS/1.log"
ROI=$(sed -n 's/.*"roi":"\([0-9,]*\)".*/\1/p' "$LOGS/1.log")
DET=$(sed -n 's/.*"det_max_side":\([0-9]*\).*/\1/p' "$LOGS/1.log")
"$PY" scripts/bench/python_ocr.py --frame "$LOGS/frame.ppm" --models "$ROOT/models" \
    --roi "$ROI" --det-max-side "$DET" --runs "$RUNS" | tee "$LOGS/2.log"

echo "==> 2. S3 uploads"
"$BIN"/examples/bench_sink --python "$PY" | tee "$LOGS/3.log"

echo "==> 3. order latency and marker discovery ($ORDERS orders)"
"$BIN"/examples/bench_latency --orders "$ORDERS" 2>&1 | grep -v ' order .* validated ' | tee "$LOGS/4.log"

echo "==> 4. memory ($MEM_SECONDS s each)"
scripts/bench/memory.sh "$MEM_SECONDS" | tee "$LOGS/5.log"
"$BIN"/examples/bench_ort_memory | tee "$LOGS/6.log"

echo "==> 5. station density ($STATIONS stations)"
"$BIN"/examples/bench_density --stations "$STATIONS" 2>&1 | grep -v '^  ' | tee "$LOGS/7.log"
echo "==> 6. station density, key frames only ($KEYFRAME_STATIONS stations)"
"$BIN"/examples/bench_density --pipeline rtsp-camera-keyframes.pipeline \
    --stations "$KEYFRAME_STATIONS" 2>&1 | grep -v '^  ' | tee "$LOGS/8.log"

echo "==> 7. reloading the station list with 16 stations running (20 reloads)"
"$BIN"/examples/bench_reload --reloads 20 2>&1 | grep -v '^  ' | tee "$LOGS/9.log"

echo
echo "==> summary ($MACHINE)"
ARGS=()
[ -n "$JSON" ] && ARGS=(--json "$JSON")
"$PY" scripts/bench/report.py "$LOGS"/*.log "${ARGS[@]}"
