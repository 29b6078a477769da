#!/usr/bin/env bash
# Everything a fresh Debian 12 machine needs to build, test and run order-accuracy.
# Idempotent: a second run checks what is there and only does what is missing.
#
#   scripts/setup.sh            Debian packages, ONNX Runtime, OCR models, release build
#   scripts/setup.sh --no-build everything but the cargo build
#   scripts/setup.sh --runtime  only the Debian packages an installed orchestrator needs
#                               to run (the container image's last stage)
#
# What lands where (all git-ignored, inside the checkout):
#   models/PP-OCRv6_det_small.onnx, models/PP-OCRv6_rec_small.onnx   (from the rapidocr wheel)
#   .deps/onnxruntime/libonnxruntime.so                                (from the onnxruntime wheel)
#   target/release/libgstorderaccuracy.so, target/release/oa-s3-server
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

ORT_VERSION=1.32.0
RAPIDOCR_VERSION=3.10.0
DET_MODEL=PP-OCRv6_det_small.onnx
REC_MODEL=PP-OCRv6_rec_small.onnx
BUILD=1
RUNTIME=0
for arg in "$@"; do
    case "$arg" in
        --no-build) BUILD=0 ;;
        --runtime) RUNTIME=1 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "setup: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
    esac
done

step() { printf '\n==> %s\n' "$*"; }

# What the installed orchestrator and its pipelines run with.
RUNTIME_PACKAGES=(
    ca-certificates coreutils
    gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
    gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav
    gstreamer1.0-rtsp
)
# Building, testing (a real browser, broker and Prometheus) and the demo.
APT_PACKAGES=(
    "${RUNTIME_PACKAGES[@]}"
    pkg-config meson ninja-build python3-pip unzip openssl git
    libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev
    libgstrtspserver-1.0-dev
    chromium chromium-driver
    gstreamer1.0-x
    fonts-dejavu-core fonts-liberation2
    prometheus
    mosquitto mosquitto-clients
    systemd
)
if [ "$RUNTIME" = 1 ]; then
    APT_PACKAGES=("${RUNTIME_PACKAGES[@]}")
fi

step "Debian packages"
missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
else
    echo "all ${#APT_PACKAGES[@]} packages present"
fi

if [ "$RUNTIME" = 1 ]; then
    step "set-up complete (runtime packages)"
    exit 0
fi

WHEELS="$ROOT/.deps/wheels"
mkdir -p "$WHEELS" "$ROOT/models" "$ROOT/.deps/onnxruntime"

fetch_wheel() { # name version
    local found
    found=$(ls "$WHEELS"/"$1"-"$2"-*.whl 2>/dev/null | head -n1 || true)
    if [ -z "$found" ]; then
        echo "downloading $1==$2 from PyPI" >&2
        python3 -m pip download --quiet --no-deps --dest "$WHEELS" "$1==$2" >&2
        found=$(ls "$WHEELS"/"$1"-"$2"-*.whl | head -n1)
    fi
    echo "$found"
}

step "ONNX Runtime $ORT_VERSION (pip wheel onnxruntime)"
ORT_LIB="$ROOT/.deps/onnxruntime/libonnxruntime.so"
if [ ! -s "$ORT_LIB" ]; then
    whl=$(fetch_wheel onnxruntime "$ORT_VERSION")
    tmp=$(mktemp -d)
    unzip -q -o "$whl" "onnxruntime/capi/libonnxruntime.so.$ORT_VERSION" -d "$tmp"
    mv "$tmp/onnxruntime/capi/libonnxruntime.so.$ORT_VERSION" "$ORT_LIB.$ORT_VERSION"
    ln -sf "libonnxruntime.so.$ORT_VERSION" "$ORT_LIB"
    rm -rf "$tmp"
fi
echo "$ORT_LIB"

step "PP-OCR models (pip wheel rapidocr $RAPIDOCR_VERSION, Apache-2.0)"
if [ ! -s "models/$DET_MODEL" ] || [ ! -s "models/$REC_MODEL" ]; then
    whl=$(fetch_wheel rapidocr "$RAPIDOCR_VERSION")
    tmp=$(mktemp -d)
    unzip -q -o "$whl" "rapidocr/models/$DET_MODEL" "rapidocr/models/$REC_MODEL" -d "$tmp"
    mv "$tmp/rapidocr/models/$DET_MODEL" "$tmp/rapidocr/models/$REC_MODEL" models/
    rm -rf "$tmp"
fi
ls -l models/

step "Python checkers the tests call (jsonschema: docs/events.schema.json; openapi-spec-validator: /api/openapi.json; kubernetes-validate: deploy/kubernetes)"
if ! python3 -c "import jsonschema, openapi_spec_validator, kubernetes_validate" 2>/dev/null; then
    python3 -m pip install --quiet "jsonschema==4.26.0" "openapi-spec-validator==0.9.0" \
        "kubernetes-validate==1.31.0"
fi
python3 -c "import jsonschema; print('jsonschema', jsonschema.__version__)" 2>/dev/null \
    || python3 -m pip show jsonschema | head -2

if [ "$BUILD" = 1 ]; then
    step "cargo build --release (first build takes a while on a small machine)"
    cargo build --release --workspace
fi

step "set-up complete"
