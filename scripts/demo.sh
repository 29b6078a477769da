#!/usr/bin/env bash
# The main job on its embedded defaults: sets up the machine (scripts/setup.sh), starts two
# simulated packing stations served as RTSP cameras on 127.0.0.1 (station-sim, scenario
# station-sim/scenarios/demo.toml) and the orchestrator with its embedded S3 server
# and the embedded `labels` recogniser; the orchestrator runs one persistent
# gst-launch-1.0 pipeline per station. Prints each order's result as it arrives and a summary against the scenario's
# ground truth; ends by itself when the scenario ends.
#
#   scripts/demo.sh [--scenario FILE] [--loop] [--stay] [--keep DIR] [--installed PREFIX]
#     --scenario FILE  scenario to play (default station-sim/scenarios/demo.toml)
#     --loop           replay the scenario until Ctrl-C instead of ending
#     --stay           after the summary, keep the orchestrator, its dashboard and API up until Ctrl-C
#     --keep DIR       keep the S3 data (frames, manifests, results) in DIR
#     --installed PREFIX  run PREFIX/bin/orchestrator (a `meson install`) on its compiled-in
#                      defaults: no pipelines_dir or plugin_path in its configuration and
#                      no GST_PLUGIN_PATH, ORT_DYLIB_PATH or OA_MODEL_DIR in its environment
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# Where cargo put the binaries (CARGO_TARGET_DIR is honoured).
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
# shellcheck source=scripts/lib/common.sh
. "$ROOT/scripts/lib/common.sh"

SCENARIO="station-sim/scenarios/demo.toml"
LOOP=""
STAY=""
KEEP=""
INSTALLED=""
while [ $# -gt 0 ]; do
    case "$1" in
        --scenario) SCENARIO="$2"; shift 2 ;;
        --loop) LOOP="--loop"; shift ;;
        --stay) STAY=1; shift ;;
        --keep) KEEP="$2"; shift 2 ;;
        --installed) INSTALLED=$(realpath "$2"); shift 2 ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "demo: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
done
SCENARIO=$(realpath "$SCENARIO")

scripts/setup.sh

step() { printf '\n==> %s\n' "$*"; }
WORK=$(mktemp -d)
DATA="${KEEP:-$WORK/s3}"
mkdir -p "$DATA"
cleanup() {
    [ -n "${ORCH_PID:-}" ] && kill "$ORCH_PID" 2>/dev/null || true
    [ -n "${SIM_PID:-}" ] && kill "$SIM_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Demo-only credentials for the embedded S3 server; a real deployment uses its own AWS chain.
export AWS_ACCESS_KEY_ID=demo-access-key AWS_SECRET_ACCESS_KEY=demo-secret-key
export AWS_EC2_METADATA_DISABLED=true

step "simulated stations ($SCENARIO)"
# shellcheck disable=SC2086 # empty or --loop
start_station_sim "$SCENARIO" "$WORK/sim" "$WORK/sim.out" $LOOP
grep '^station ' "$WORK/sim.out" | sed 's/^station /  /'

HTTP_PORT=$(free_port)
S3_PORT=$(free_port)
{
    cat <<EOF
orders_file = "$WORK/sim/orders.json"
inventory_file = "$WORK/sim/inventory.json"

[storage]
# S3 inside the orchestrator (s3s-fs); point endpoint at MinIO/AWS and drop this to use one.
embedded_root = "$DATA"
endpoint = "http://127.0.0.1:$S3_PORT"
bucket = "frames"
force_path_style = true

[recognition]
backend = "labels"

[http]
bind = "127.0.0.1:$HTTP_PORT"

[supervision]
backoff_s = [1, 2]
EOF
    if [ -z "$INSTALLED" ]; then
        printf 'pipelines_dir = "%s"\nplugin_path = "%s"\n' "$ROOT/pipelines" "$BIN"
    fi
    cat <<EOF

[processing]
frames_per_order = 4
# The demo's unknown order never gets its expected items: wait 5 s for them, not 300.
expected_wait_s = 5
EOF
    station_tables "$WORK/sim.out"
} > "$WORK/orchestrator.toml"

step "orchestrator with its embedded S3 server (data in $DATA)"
echo "  dashboard: http://127.0.0.1:$HTTP_PORT/ (results also at http://127.0.0.1:$HTTP_PORT/api/orders)"
if [ -n "$INSTALLED" ]; then
    echo "  installed build: $("$INSTALLED/bin/orchestrator" --version)"
    env -u GST_PLUGIN_PATH -u ORT_DYLIB_PATH -u OA_MODEL_DIR \
        "$INSTALLED/bin/orchestrator" run --config "$WORK/orchestrator.toml" > "$WORK/orch.log" 2>&1 &
else
    "$BIN"/orchestrator run --config "$WORK/orchestrator.toml" > "$WORK/orch.log" 2>&1 &
fi
ORCH_PID=$!
EXPECTED=$(grep -c '"order_id"' "$WORK/sim/ground_truth.json")
echo "  $EXPECTED orders expected; each line below is one result as it arrives"
start=$(date +%s)
seen=0
: > "$WORK/seen"
new_results() { # elapsed: prints the results not printed yet, one line each
python3 - "$HTTP_PORT" "$WORK/seen" "$1" <<'EOF'
import json, sys, urllib.request
port, seen_file, elapsed = sys.argv[1], sys.argv[2], sys.argv[3]
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/orders", timeout=2) as r:
        results = json.load(r)
except Exception:
    sys.exit(0)  # not serving yet
results = results.get("orders", results) if isinstance(results, dict) else results
seen = set(open(seen_file).read().split())
with open(seen_file, "a") as out:
    for r in results:
        key = f"{r['station_id']}/{r['order_id']}"
        if key in seen:
            continue
        print(f"  [{elapsed}s] {r['station_id']} order {r['order_id']} {r['status']} "
              f"accuracy={r['accuracy']:.2f} total_ms={r['timings_ms']['total']}")
        out.write(key + "\n")
EOF
}
sim_ended=""
while :; do
    sleep 1
    kill -0 "$ORCH_PID" 2>/dev/null || { echo "orchestrator exited:"; tail -n 40 "$WORK/orch.log"; exit 1; }
    elapsed=$(( $(date +%s) - start ))
    # Results as the API serves them (not log lines: those are for people).
    new_results "$elapsed"
    seen=$(wc -l < "$WORK/seen")
    if [ -z "$sim_ended" ] && ! kill -0 "$SIM_PID" 2>/dev/null; then
        sim_ended=$elapsed
        echo "  [${elapsed}s] scenario ended"
    fi
    [ -z "$LOOP" ] && [ "$seen" -ge "$EXPECTED" ] && break
    if [ -n "$sim_ended" ] && [ $(( elapsed - sim_ended )) -ge 60 ]; then
        echo "  [${elapsed}s] gave up waiting: $seen of $EXPECTED results"
        break
    fi
    if [ $(( elapsed % 15 )) -eq 0 ]; then echo "  [${elapsed}s] running ($seen of $EXPECTED results)"; fi
done
summary() {
python3 - "$DATA/frames/results" "$WORK/sim/ground_truth.json" <<'EOF'
import json, os, sys
results_dir, truth = sys.argv[1], json.load(open(sys.argv[2]))
got = {}
if os.path.isdir(results_dir):
    for st in sorted(os.listdir(results_dir)):
        d = os.path.join(results_dir, st)
        if st.startswith(".") or not os.path.isdir(d):
            continue
        for f in sorted(os.listdir(d)):
            if f.endswith(".json"):
                got[(st, f[:-5])] = json.load(open(os.path.join(d, f)))
def items(v):
    return ", ".join(f"{i['name']} x{i['quantity']}" for i in v) or "-"
ok = 0
for e in truth["orders"]:
    key = (e["station_id"], e["order_id"])
    r = got.pop(key, None)
    if r is None:
        print(f"{key[0]}/{key[1]}: NOT FOUND (expected {e['status']})")
        continue
    match = r["status"] == e["status"]
    ok += match
    extra = ""
    if r["missing"]: extra += f"; missing {items(r['missing'])}"
    if r["extra"]: extra += f"; extra {items(r['extra'])}"
    for q in r["quantity_mismatch"]:
        extra += f"; {q['name']} {q['detected']} of {q['expected']}"
    print(f"{key[0]}/{key[1]}: {r['status']}{extra} "
          f"(expected {e['status']}: {'ok' if match else 'WRONG'})")
for key, r in sorted(got.items()):
    print(f"{key[0]}/{key[1]}: {r['status']} (not in the scenario)")
n = len(truth["orders"])
print(f"{ok} of {n} orders found with the expected status")
sys.exit(0 if ok == n and not got else 1)
EOF
}

if [ -n "$STAY" ]; then
    step "summary against the scenario's ground truth"
    summary || true
    echo
    echo "The orchestrator keeps running: dashboard http://127.0.0.1:$HTTP_PORT/, API /api/orders, /api/stations, /metrics"
    echo "Press Ctrl-C to stop."
    wait "$ORCH_PID" || true
    exit 0
fi
echo "  stopping the orchestrator with SIGINT"
kill -INT "$ORCH_PID" 2>/dev/null || true
wait "$ORCH_PID" || true
ORCH_PID=""

step "summary against the scenario's ground truth"
summary
