#!/usr/bin/env bash
# hack/bench-memory.sh - the operator's memory with many connections and many unrelated Secrets.
#
# cert-manager's users saw gigabytes of memory from caching every Secret in the cluster; this
# operator watches credentials Secrets by metadata only. The benchmark starts a local control
# plane, creates CONNECTIONS ZoomConnections and SECRETS unrelated Secrets of SECRET_KB each,
# and prints the operator's resident memory before and after the Secrets arrive.
#
#   CONNECTIONS=500 SECRETS=2000 SECRET_KB=16 bash hack/bench-memory.sh
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."

CONNECTIONS=${CONNECTIONS:-500}
SECRETS=${SECRETS:-2000}
SECRET_KB=${SECRET_KB:-16}
dir=$(mktemp -d /tmp/zoom-operator-bench-XXXX)
op_pid=""
cleanup() {
  [ -n "$op_pid" ] && kill "$op_pid" 2>/dev/null || true
  ./target/release/testenv control-plane stop "$dir/cluster" >/dev/null 2>&1 || true
}
trap cleanup EXIT

cargo build --release --locked -p zoom-operator --bin zoom-operator -p testenv --bin testenv >&2
line=$(./target/release/testenv control-plane start --watch-pid $$ "$dir/cluster")
export "${line?}"
kubectl apply --server-side -f crds/zoomconnections.zoom-operator.io.yaml >/dev/null
kubectl wait --for=condition=Established crd/zoomconnections.zoom-operator.io >/dev/null
kubectl create namespace bench >/dev/null

rss_mib() { awk '/^VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$op_pid/status"; }

apply_many() { # kind count
  local kind=$1 count=$2 i
  for ((i = 0; i < count; i += 100)); do
    for ((j = i; j < i + 100 && j < count; j++)); do
      if [ "$kind" = zc ]; then
        printf 'apiVersion: zoom-operator.io/v1alpha1\nkind: ZoomConnection\nmetadata: {name: c%d, namespace: bench}\nspec: {authType: PrivateOAuth, credentialsRef: {name: creds-%d}}\n---\n' "$j" "$j"
      else
        printf 'apiVersion: v1\nkind: Secret\nmetadata: {name: s%d, namespace: bench}\nstringData: {blob: "%s"}\n---\n' "$j" "$(head -c $((SECRET_KB * 768)) /dev/urandom | base64 -w0)"
      fi
    done | kubectl apply -f - >/dev/null
  done
}

./target/release/zoom-operator run --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 \
  --public-url https://zoom.example.com --lease-namespace bench --leader-election=false \
  >"$dir/operator.log" 2>&1 &
op_pid=$!
sleep 3
printf 'idle:                                   %s MiB\n' "$(rss_mib)"
apply_many zc "$CONNECTIONS"
sleep 15
printf '%5d connections reconciled:           %s MiB\n' "$CONNECTIONS" "$(rss_mib)"
apply_many secret "$SECRETS"
sleep 15
printf '+ %5d unrelated Secrets of %3d KiB:    %s MiB  (%d MiB of Secret data in the cluster)\n' \
  "$SECRETS" "$SECRET_KB" "$(rss_mib)" $((SECRETS * SECRET_KB / 1024))
ready=$(kubectl -n bench get zc -o jsonpath='{range .items[*]}{.status.conditions[0].reason}{"\n"}{end}' | grep -c SecretNotFound || true)
printf 'connections with status written:        %d of %d\n' "$ready" "$CONNECTIONS"
