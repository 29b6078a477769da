#!/usr/bin/env bash
# Benchmarks (not tests): prints OCR milliseconds per frame through ocrsegment (full frame,
# region of interest, unchanged-skip) against the bare engine, and minioframesink frames
# per second against raw aws-sdk-s3 PUTs on the same local S3 server.
#
#   scripts/bench.sh [OCR_RUNS]     (default 20)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
scripts/setup.sh --no-build
export AWS_EC2_METADATA_DISABLED=true
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(date -u +%F)"
cargo run --release -q -p gst-plugin-orderaccuracy --example bench_ocr -- "${1:-20}"
cargo run --release -q -p gst-plugin-orderaccuracy --example bench_sink
