#!/usr/bin/env bash
# Installs the project into a fresh prefix with meson, as a user would, and checks the
# installed tree (CI runs it from scripts/test.sh):
#   - `meson install` puts the orchestrator, the plugin, the models, ONNX Runtime, the
#     pipeline files, the example configuration and the systemd unit in FHS paths;
#   - `orchestrator --version` names the build; `gst-inspect-1.0` finds the elements from
#     the installed plugin;
#   - `systemd-analyze verify` accepts orchestrator.service;
#   - the demo scenario runs on the installed orchestrator with no variable set
#     (scripts/demo.sh --installed: no GST_PLUGIN_PATH, ORT_DYLIB_PATH or OA_MODEL_DIR).
#
#   scripts/install-check.sh [PREFIX]     (default: a temporary folder)
# The cargo build goes to $CARGO_TARGET_DIR/meson (target/meson): the install paths are
# compiled in, so it cannot share the checkout build's outputs, but it is kept for the
# next run.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
step() { printf '\n==> %s\n' "$*"; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
PREFIX="${1:-$WORK/prefix}"
mkdir -p "$PREFIX"
PREFIX=$(realpath "$PREFIX")

step "meson setup / compile / install into $PREFIX (cargo target $TARGET/meson)"
meson setup "$WORK/build" --prefix="$PREFIX" -Dcargo_target_dir="$TARGET/meson" > "$WORK/setup.log" \
    || { cat "$WORK/setup.log"; exit 1; }
meson compile -C "$WORK/build" > "$WORK/compile.log" 2>&1 || { tail -40 "$WORK/compile.log"; exit 1; }
meson install -C "$WORK/build" --quiet
( cd "$PREFIX" && find . -type f | sort | sed 's/^\./  /' )

step "the installed binaries, with no variable set"
clean_env=(env -u GST_PLUGIN_PATH -u ORT_DYLIB_PATH -u OA_MODEL_DIR -u LD_LIBRARY_PATH)
version=$("${clean_env[@]}" "$PREFIX/bin/orchestrator" --version)
echo "  $version"
case "$version" in
    *"installed in $PREFIX"*) ;;
    *) echo "install-check: --version does not name the installed build: $version" >&2; exit 1 ;;
esac
plugin=$(find "$PREFIX" -name libgstorderaccuracy.so | head -1)
[ -n "$plugin" ] || { echo "install-check: no plugin installed" >&2; exit 1; }
"${clean_env[@]}" GST_PLUGIN_SYSTEM_PATH_1_0="$(dirname "$plugin")" gst-inspect-1.0 orderaccuracy \
    | grep -E '^  (ocrsegment|eosmarker|minioframesink):' | sed 's/^/  /'

step "systemd-analyze verify orchestrator.service"
unit="$PREFIX/lib/systemd/system/orchestrator.service"
[ -f "$unit" ] || { echo "install-check: $unit not installed" >&2; exit 1; }
grep -E '^(ExecStart|DynamicUser|ProtectSystem|StateDirectory|Restart)=' "$unit" | sed 's/^/  /'
# verify wants the unit's binaries to exist, which they do in the prefix.
SYSTEMD_LOG_LEVEL=notice systemd-analyze verify "$unit"
echo "  verified"

step "the demo on the installed orchestrator (scripts/demo.sh --installed $PREFIX)"
"${clean_env[@]}" scripts/demo.sh --installed "$PREFIX"
