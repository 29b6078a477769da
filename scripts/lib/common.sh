# Sourced by scripts/demo.sh, scripts/bench/memory.sh and scripts/soak.sh: starting the
# parts on 127.0.0.1 and stopping them. Expects ROOT (the checkout) and BIN (the release
# binaries) to be set.

# wait_for_line FILE REGEX WHAT: up to 15 s for a line matching REGEX in FILE, else
# prints FILE and exits.
wait_for_line() {
    for _ in $(seq 1 150); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "$3 did not start:"; cat "$1"; exit 1
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# stop_pid PID LOG: SIGINT (EOS for a pipeline), then up to 20 s to finish, then SIGKILL
# (saying so, with the last lines of LOG).
stop_pid() {
    kill -INT "$1" 2>/dev/null || true
    for _ in $(seq 1 200); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$1" 2>/dev/null; then
        echo "  (pid $1 did not stop within 20 s of SIGINT; killed. Last log lines:)"
        tail -n 4 "$2" | cut -c1-200 | sed "s/^/    /"
        kill -KILL "$1"
    fi
    wait "$1" 2>/dev/null || true
}

# start_s3_server DATA_DIR LOG: oa-s3-server on a free port of 127.0.0.1 with bucket
# `frames` in DATA_DIR; sets S3_PID and S3_ENDPOINT. The credentials are the
# environment's AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
start_s3_server() {
    "$BIN"/oa-s3-server --root "$1" --bucket frames > "$2" 2>&1 &
    S3_PID=$!
    wait_for_line "$2" '^listening on ' "oa-s3-server"
    S3_ENDPOINT=$(sed -n 's/^listening on //p' "$2")
}

# start_station_sim SCENARIO OUT_DIR LOG [ARGS...]: station-sim serving SCENARIO's
# stations as RTSP cameras on a free port; writes orders.json, inventory.json and
# ground_truth.json into OUT_DIR; sets SIM_PID.
start_station_sim() {
    local scenario=$1 out=$2 log=$3
    shift 3
    mkdir -p "$out"
    "$BIN"/station-sim serve --scenario "$scenario" --out "$out" --port 0 "$@" > "$log" 2>&1 &
    SIM_PID=$!
    wait_for_line "$log" "^serving" "station-sim"
}

# station_tables SIM_LOG: one orchestrator [[stations]] table per station the simulator
# serves (idle timeout 3 s).
station_tables() {
    grep '^station ' "$1" | while read -r _ id url; do
        printf '\n[[stations]]\nid = "%s"\nsource = "%s"\nidle_timeout_ms = 3000\n' "$id" "$url"
    done
}
