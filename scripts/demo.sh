#!/usr/bin/env bash
# The main job on its embedded defaults: sets up the machine (scripts/setup.sh), starts a
# local S3 server on 127.0.0.1, runs ONE persistent station pipeline on a generated video
# that shows three order slips in turn, stops it with SIGINT (gst-launch -e, so the open
# order is completed), and prints every order it stored.
#
#   scripts/demo.sh [--seconds N] [--keep DIR]
#     --seconds N   how long the camera runs (default 40)
#     --keep DIR    keep the S3 data in DIR (default: a temporary folder, removed at exit)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

SECONDS_TO_RUN=40
KEEP=""
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) SECONDS_TO_RUN="$2"; shift 2 ;;
        --keep) KEEP="$2"; shift 2 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "demo: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
done

scripts/setup.sh

step() { printf '\n==> %s\n' "$*"; }
WORK=$(mktemp -d)
DATA="${KEEP:-$WORK/s3}"
mkdir -p "$DATA"
cleanup() {
    [ -n "${S3_PID:-}" ] && kill "$S3_PID" 2>/dev/null || true
    [ -n "${LAUNCH_PID:-}" ] && kill "$LAUNCH_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# Demo-only credentials for the local server; a real deployment uses its own AWS chain.
export AWS_ACCESS_KEY_ID=demo-access-key AWS_SECRET_ACCESS_KEY=demo-secret-key
export AWS_EC2_METADATA_DISABLED=true
export GST_PLUGIN_PATH="$ROOT/target/release"

step "S3 server on 127.0.0.1 (data in $DATA)"
target/release/oa-s3-server --root "$DATA" --addr 127.0.0.1:0 --bucket frames > "$WORK/s3.out" 2>&1 &
S3_PID=$!
for _ in $(seq 1 100); do
    grep -q "^listening on " "$WORK/s3.out" 2>/dev/null && break
    sleep 0.1
done
ENDPOINT=$(sed -n 's/^listening on //p' "$WORK/s3.out" | head -n1)
[ -n "$ENDPOINT" ] || { echo "S3 server did not start:"; cat "$WORK/s3.out"; exit 1; }
echo "endpoint $ENDPOINT"

# The slips the generated camera shows: 384 for 8 s, 651 for 6 s, a pause, then 925.
cat > "$WORK/slips.srt" <<'EOF'
1
00:00:01,000 --> 00:00:09,000
ORDER #384

2
00:00:09,000 --> 00:00:15,000
ORDER #651

3
00:00:28,000 --> 00:00:36,000
#925
EOF

PIPELINE=$(grep -v '^[[:space:]]*#' pipelines/test-source.pipeline | tr '\n' ' ' \
    | sed -e "s|{source}|$WORK/slips.srt|" -e 's|{station_id}|station_1|' \
          -e 's| roi="{roi}"||' -e 's|{idle_timeout_ms}|10000|' -e "s|{endpoint}|$ENDPOINT|" \
          -e 's|{bucket}|frames|' -e 's| prefix="{prefix}"||' \
          -e "s|{pipeline_instance}|demo-$$|")

step "station_1 pipeline for $SECONDS_TO_RUN s (started once; orders are cut while it runs)"
echo "gst-launch-1.0 -e $PIPELINE"
# shellcheck disable=SC2086 # the pipeline is meant to be split into words here
GST_DEBUG="${GST_DEBUG:-eosmarker:4,minioframesink:3}" gst-launch-1.0 -e -m $PIPELINE \
    > "$WORK/launch.log" 2>&1 &
LAUNCH_PID=$!
start=$(date +%s)
: > "$WORK/seen.old"
while kill -0 "$LAUNCH_PID" 2>/dev/null && [ $(( $(date +%s) - start )) -lt "$SECONDS_TO_RUN" ]; do
    sleep 1
    elapsed=$(( $(date +%s) - start ))
    grep -h -o 'order [^ ]* complete ([^)]*)' "$WORK/launch.log" 2>/dev/null | sort -u > "$WORK/seen.new" || true
    comm -13 "$WORK/seen.old" "$WORK/seen.new" | sed "s/^/  [${elapsed}s] /"
    mv "$WORK/seen.new" "$WORK/seen.old"
    if [ $(( elapsed % 10 )) -eq 0 ]; then echo "  [${elapsed}s] running"; fi
done
echo "  stopping with SIGINT (the open order is completed, not lost)"
kill -INT "$LAUNCH_PID" 2>/dev/null || true
wait "$LAUNCH_PID" || { echo "pipeline failed:"; tail -n 40 "$WORK/launch.log"; exit 1; }
LAUNCH_PID=""

step "what the bucket holds"
python3 - "$DATA/frames" <<'EOF'
import json, os, sys
root = sys.argv[1]
orders = 0
for station in sorted(os.listdir(root)):
    sdir = os.path.join(root, station)
    if station.startswith(".") or not os.path.isdir(sdir):
        continue
    for order in sorted(os.listdir(sdir)):
        odir = os.path.join(sdir, order)
        files = sorted(f for f in os.listdir(odir) if not f.startswith("."))
        marker = os.path.join(odir, "__EOS__")
        frames = [f for f in files if f.startswith("frame_")]
        if os.path.exists(marker):
            m = json.load(open(marker))
            orders += 1
            print(f"{station}/{order}: {m['frame_count']} frames, reason {m['reason']}, "
                  f"{m['first_unix_ms']}..{m['last_unix_ms']} ms")
            for f in m["frames"][:3]:
                print(f"    {f['key']} ({f['bytes']} bytes)")
            if len(m["frames"]) > 3:
                print(f"    ... {len(m['frames']) - 3} more")
        else:
            print(f"{station}/{order}: {len(frames)} frames, NO MARKER")
print(f"{orders} complete orders stored")
sys.exit(0 if orders else 1)
EOF
