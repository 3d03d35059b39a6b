#!/usr/bin/env bash
# hack/run-local.sh - the whole thing on this machine, ready to try: a local Kubernetes control
# plane, zoom-sim standing in for Zoom (with a consent page), the operator pointed at both, and
# an example ZoomConnection. Prints the authorize URL to open in a browser, then keeps running
# until Ctrl-C, when it stops everything it started.
#
# Ports (override with env): OPERATOR_PORT=8080 METRICS_PORT=9090 SIM_PORT=9000.
#
# hack/run-local.sh --in-cluster: the same demo with the operator (the Helm chart, 2 replicas)
# and zoom-sim as Pods on a one-node cluster with a real kubelet (hack/cluster.sh), from the
# images hack/image.sh builds. The browser reaches them at 10.231.0.2 (NodePorts 30080 for the
# operator, 30090 for zoom-sim) through the route hack/cluster.sh adds; nothing else is exposed.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."

if [[ ${1:-} == --in-cluster ]]; then
  exec bash hack/run-in-cluster.sh
elif [[ $# -gt 0 ]]; then
  echo "usage: hack/run-local.sh [--in-cluster]" >&2
  exit 2
fi

OPERATOR_PORT=${OPERATOR_PORT:-8080}
METRICS_PORT=${METRICS_PORT:-9090}
SIM_PORT=${SIM_PORT:-9000}
STATE=${ZOOM_OPERATOR_LOCAL_DIR:-/tmp/zoom-operator-local}
NS=demo

log() { printf '==> %s\n' "$*" >&2; }

log "Building the control plane's binaries (cached after the first run)"
bash hack/build-kubernetes.sh
log "Building zoom-operator, zoom-sim and testenv (the control plane's supervisor)"
cargo build --workspace --locked --bins
BIN=$(pwd)/target/debug

mkdir -p "$STATE"
pids=()
cleanup() {
  log "Stopping"
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  "$BIN/testenv" control-plane stop "$STATE/cluster" || true
}
trap cleanup EXIT INT TERM

log "Starting the control plane in $STATE/cluster"
line=$("$BIN/testenv" control-plane start --watch-pid $$ "$STATE/cluster")
export "${line?}"
log "$line"

kubectl apply --server-side -f crds/zoomconnections.zoom-operator.io.yaml >/dev/null
kubectl wait --for=condition=Established --timeout=60s crd/zoomconnections.zoom-operator.io >/dev/null
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl create namespace zoom-operator --dry-run=client -o yaml | kubectl apply -f - >/dev/null

log "Starting zoom-sim on 127.0.0.1:$SIM_PORT (it asks for consent in the browser)"
"$BIN/zoom-sim" serve --listen "127.0.0.1:$SIM_PORT" --consent page \
  --app "kind=oauth,client_id=demo-client-id,client_secret=demo-client-secret,secret_token=demo-secret-token,account_id=demo-account,user_id=demo-user,email=demo@example.com,event_url=http://127.0.0.1:$OPERATOR_PORT/zoom/event" \
  >"$STATE/zoom-sim.out" 2>"$STATE/zoom-sim.log" &
pids+=($!)

log "Starting zoom-operator on 127.0.0.1:$OPERATOR_PORT (metrics on :$METRICS_PORT)"
"$BIN/zoom-operator" run \
  --listen "127.0.0.1:$OPERATOR_PORT" --metrics-listen "127.0.0.1:$METRICS_PORT" \
  --public-url "http://127.0.0.1:$OPERATOR_PORT" \
  --zoom-oauth-url "http://127.0.0.1:$SIM_PORT" --zoom-api-url "http://127.0.0.1:$SIM_PORT" \
  --lease-namespace zoom-operator \
  >"$STATE/operator.log" 2>&1 &
pids+=($!)

log "Applying the example connection ($NS/sales-bot)"
kubectl -n "$NS" create secret generic zoom-app \
  --from-literal=clientId=demo-client-id \
  --from-literal=clientSecret=demo-client-secret \
  --from-literal=secretToken=demo-secret-token \
  --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl -n "$NS" apply -f - >/dev/null <<'YAML'
apiVersion: zoom-operator.io/v1alpha1
kind: ZoomConnection
metadata:
  name: sales-bot
spec:
  authType: PrivateOAuth
  credentialsRef:
    name: zoom-app
YAML

url=""
for _ in $(seq 1 120); do
  url=$(kubectl -n "$NS" get zc sales-bot -o jsonpath='{.status.authorizeURL}' 2>/dev/null || true)
  [ -n "$url" ] && break
  sleep 0.5
done
if [ -z "$url" ]; then
  log "The operator did not publish an authorize URL; its log:"
  tail -n 50 "$STATE/operator.log" >&2
  exit 1
fi

cat <<EOF

zoom-operator is running.

  export KUBECONFIG=$KUBECONFIG
  kubectl get zc -A                       # the connection, its Ready reason and expiry
  kubectl -n $NS describe zc sales-bot    # conditions, URLs, events

Open this URL in a browser to authorize the example connection (Approve at zoom-sim):

  $url

Then: kubectl -n $NS get secret sales-bot-zoom-token -o yaml
      curl -s http://127.0.0.1:$METRICS_PORT/metrics | grep zoom_operator
      $BIN/zoom-sim send-event --url http://127.0.0.1:$OPERATOR_PORT/zoom/event --secret-token demo-secret-token --validate

Logs: $STATE/operator.log, $STATE/zoom-sim.log. Ctrl-C stops everything.
EOF

wait -n "${pids[@]}" || true
log "A process exited; see the logs above"
