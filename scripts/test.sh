#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine (scripts/setup.sh) and runs every check CI runs:
# formatting, clippy, unit tests, element tests against real models and a real S3 server,
# and the end-to-end tests through gst-launch-1.0 over loopback RTSP.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

scripts/setup.sh

step() { printf '\n==> %s\n' "$*"; }
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
export GST_PLUGIN_PATH="$BIN${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}"
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$ROOT/.deps/onnxruntime/libonnxruntime.so}"
# Nothing in the tests may reach a cloud metadata service.
export AWS_EC2_METADATA_DISABLED=true

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --release --workspace --all-targets -- -D warnings

step "cargo test"
rm -f "$BIN/fault-table.md" "$BIN/shards-table.txt"
cargo test --release --workspace -- --test-threads="${TEST_THREADS:-2}"
if [ -f "$BIN/fault-table.md" ]; then
    step "the fault table (station-sim/tests/faults_end_to_end.rs, 20 s outages)"
    cat "$BIN/fault-table.md"
fi
if [ -f "$BIN/shards-table.txt" ]; then
    step "scaled out (station-sim/tests/shards_end_to_end.rs: 3 station shards, 2 consumers, SIGKILLs)"
    cat "$BIN/shards-table.txt"
fi

step "the main command (scripts/demo.sh): every order of the demo scenario with its expected status"
scripts/demo.sh

step "deployment files (scripts/check-deploy.sh): kustomize, kubernetes-validate, Containerfile"
scripts/check-deploy.sh

step "a prefix install (scripts/install-check.sh): meson install, systemd-analyze verify, the demo installed"
scripts/install-check.sh

step "all tests passed"
