#!/usr/bin/env bash
# The fault table: each scenario of `station-sim chaos` on real parts (loopback RTSP, the
# S3 server stopped and started, real processes signalled), with the full outages (S3 for
# 3 minutes, the camera and the VLM for 2) unless --quick is given. About 15 minutes.
#   scripts/chaos.sh                      # every scenario, full outages
#   scripts/chaos.sh --quick              # 20 s outages, what CI runs (about 8 minutes)
#   scripts/chaos.sh --fault store-outage # one scenario (repeatable; see --help)
# Prints one Markdown table: scenario | outage | orders expected | results | correct | lost |
# duplicated | frames left out | frames stored | running after | seconds; exits 1 when a
# row loses, duplicates or leaves out anything.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
case "${1:-}" in -h|--help) sed -n '2,10p' "$0"; exec cargo run -q --release -p station-sim -- chaos --help ;; esac
scripts/setup.sh
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
export GST_PLUGIN_PATH="$BIN${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}"
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$ROOT/.deps/onnxruntime/libonnxruntime.so}"
export AWS_EC2_METADATA_DISABLED=true
exec "$BIN/station-sim" chaos "$@"
