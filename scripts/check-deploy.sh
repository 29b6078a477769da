#!/usr/bin/env bash
# Checks the deployment files offline (CI runs it from scripts/test.sh):
#   - deploy/kubernetes: both overlays render with `kubectl kustomize` and pass
#     `kubernetes-validate --strict` (a deliberately broken copy must fail it); every
#     StatefulSet's replicas equals the N of its OA_SHARD=ordinal/N; the ConfigMap's
#     orchestrator.toml passes `orchestrator check-config` in each pod's role and shard;
#   - Containerfile: both stages install through scripts/setup.sh, it runs as a non-root
#     user and has a HEALTHCHECK on /healthz (no container engine runs here to build it).
# The systemd unit is checked on an installed tree by scripts/install-check.sh.
#
#   scripts/check-deploy.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
step() { printf '\n==> %s\n' "$*"; }
fail() { echo "check-deploy: $*" >&2; exit 1; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

command -v kubectl > /dev/null || fail "kubectl is missing (it renders the kustomizations)"
command -v kubernetes-validate > /dev/null || fail "kubernetes-validate is missing: scripts/setup.sh installs it"

for overlay in single-node scaled; do
    step "deploy/kubernetes/overlays/$overlay: kustomize + kubernetes-validate --strict"
    out="$WORK/$overlay.yaml"
    kubectl kustomize "deploy/kubernetes/overlays/$overlay" > "$out"
    kubernetes-validate --strict --quiet "$out"
    python3 - "$out" "$WORK/$overlay" <<'PY'
import os, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
out = sys.argv[2]
os.makedirs(out, exist_ok=True)
kinds = sorted(d["kind"] for d in docs)
print("  objects:", ", ".join(kinds))
roles = []
for d in docs:
    if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("oa-config"):
        for name, text in d["data"].items():
            open(os.path.join(out, name), "w").write(text)
    if d["kind"] in ("StatefulSet", "Deployment"):
        c = d["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        for p in ("livenessProbe", "readinessProbe"):
            path = c.get(p, {}).get("httpGet", {}).get("path")
            want = "/healthz" if p == "livenessProbe" else "/readyz"
            if path != want:
                sys.exit(f"{d['kind']} {d['metadata']['name']}: {p} on {path}, want {want}")
        if "requests" not in c.get("resources", {}):
            sys.exit(f"{d['kind']} {d['metadata']['name']}: no resource requests")
        shard = env.get("OA_SHARD")
        replicas = d["spec"].get("replicas", 1)
        if shard is not None:
            k, n = shard.split("/")
            if k != "ordinal" or int(n) != replicas:
                sys.exit(f"{d['kind']} {d['metadata']['name']}: OA_SHARD={shard} with {replicas} replicas: N must equal replicas")
        for k in range(replicas if shard else 1):
            roles.append((d["metadata"]["name"], env.get("OA_ROLE", "all"), shard, k))
with open(os.path.join(out, "roles.txt"), "w") as f:
    for name, role, shard, k in roles:
        f.write(f"{name} {role} {shard or '-'} {k}\n")
PY
    while read -r name role shard k; do
        args=(--role "$role")
        env_args=()
        if [ "$shard" != "-" ]; then
            args+=(--shard "$shard")
            env_args=(HOSTNAME="$name-$k")
        fi
        line=$(env "${env_args[@]}" OA_API_READ_TOKENS=check-deploy-read-token-0001 \
            OA_API_WRITE_TOKENS=check-deploy-write-token-001 \
            "$BIN/orchestrator" check-config --config "$WORK/$overlay/orchestrator.toml" "${args[@]}") \
            || fail "$overlay: the ConfigMap's orchestrator.toml fails check-config as $name-$k"
        echo "  $name-$k: $line"
    done < "$WORK/$overlay/roles.txt"
done

step "kubernetes-validate catches a broken manifest (the check can fail)"
sed 's/^  replicas:/  replica:/' "$WORK/scaled.yaml" > "$WORK/broken.yaml"
if kubernetes-validate --strict --quiet "$WORK/broken.yaml" > "$WORK/broken.out" 2>&1; then
    fail "kubernetes-validate accepted a Deployment with 'replica:'"
fi
grep -m1 -i "replica" "$WORK/broken.out" | sed 's/^/  /'

step "Containerfile"
cf=Containerfile
[ "$(grep -c '^FROM ' "$cf")" -ge 2 ] || fail "$cf: expected a build and a runtime stage"
grep -q 'scripts/setup.sh --no-build' "$cf" || fail "$cf: the build stage must install with scripts/setup.sh"
grep -q 'setup.sh --runtime' "$cf" || fail "$cf: the runtime stage must install with scripts/setup.sh --runtime"
user=$(awk '/^USER /{u=$2} END{print u}' "$cf")
case "$user" in ''|root|0|0:*) fail "$cf: the image must run as a non-root USER (got '$user')" ;; esac
grep -A2 '^HEALTHCHECK' "$cf" | grep -q '/healthz' || fail "$cf: HEALTHCHECK must probe /healthz"
grep -q 'meson install' "$cf" || fail "$cf: the image must hold a meson install"
echo "  two stages through scripts/setup.sh, USER $user, HEALTHCHECK on /healthz"

step "deployment files OK"
