#!/usr/bin/env bash
# hack/run-in-cluster.sh - `hack/run-local.sh --in-cluster`: the local demo with the operator
# installed by its Helm chart (2 replicas, leader election, the chart's RBAC and security
# context) and zoom-sim as a Pod, on the one-node cluster of hack/cluster.sh. Prints the
# authorize URL, then keeps running until Ctrl-C, when it takes the cluster down.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."

STATE=${ZOOM_OPERATOR_LOCAL_DIR:-/tmp/zoom-operator-node}
NODE=10.231.0.2
NS=demo
TAG=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)

log() { printf '==> %s\n' "$*" >&2; }

log "Building the images (hack/image.sh; the release build is cached in target/)"
bash hack/image.sh zoom-operator zoom-sim >/dev/null
HELM=$(bash hack/install-helm.sh)

cleanup() {
  log "Stopping the cluster"
  bash hack/cluster.sh down "$STATE" || true
}
trap cleanup EXIT INT TERM

log "Starting the one-node cluster in $STATE"
line=$(bash hack/cluster.sh up --watch-pid $$ "$STATE")
export "${line?}"
for image in zoom-operator zoom-sim; do
  bash hack/cluster.sh load "$STATE" "target/images/$image.tar" "$image"
done

kubectl create namespace zoom-operator >/dev/null
kubectl create namespace zoom-sim >/dev/null
kubectl create namespace "$NS" >/dev/null

log "zoom-sim as a Pod (consent page), NodePort $NODE:30090"
kubectl -n zoom-sim apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: zoom-sim, labels: {app: zoom-sim}}
spec:
  terminationGracePeriodSeconds: 1
  securityContext: {runAsNonRoot: true, runAsUser: 65532}
  containers:
  - name: zoom-sim
    image: local/zoom-sim:$TAG
    imagePullPolicy: Never
    args: [serve, --listen=0.0.0.0:9000, --consent=page,
      "--app=kind=oauth,client_id=demo-client-id,client_secret=demo-client-secret,secret_token=demo-secret-token,account_id=demo-account,user_id=demo-user,email=demo@example.com,event_url=http://zoom-operator.zoom-operator.svc:8080/zoom/event"]
    securityContext: {readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
---
apiVersion: v1
kind: Service
metadata: {name: zoom-sim}
spec:
  type: NodePort
  selector: {app: zoom-sim}
  ports: [{port: 9000, nodePort: 30090}]
YAML

log "helm install zoom-operator (image local/zoom-operator:$TAG), NodePort $NODE:30080"
"$HELM" install zoom-operator charts/zoom-operator -n zoom-operator --wait --timeout 4m \
  --set image.repository=local/zoom-operator --set image.pullPolicy=Never \
  --set operator.publicURL="http://$NODE:30080" \
  --set operator.zoomOAuthURL="http://$NODE:30090" \
  --set operator.zoomAPIURL=http://zoom-sim.zoom-sim.svc:9000 \
  --set operator.logFormat=text >/dev/null
kubectl -n zoom-operator apply -f - >/dev/null <<'YAML'
apiVersion: v1
kind: Service
metadata: {name: zoom-operator-public}
spec:
  type: NodePort
  selector: {app.kubernetes.io/name: zoom-operator, app.kubernetes.io/instance: zoom-operator}
  ports: [{port: 8080, targetPort: http, nodePort: 30080}]
YAML

log "Applying the example connection ($NS/sales-bot)"
kubectl -n "$NS" create secret generic zoom-app --from-literal=clientId=demo-client-id \
  --from-literal=clientSecret=demo-client-secret --from-literal=secretToken=demo-secret-token >/dev/null
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
[ -n "$url" ] || { kubectl -n zoom-operator logs deploy/zoom-operator --tail=50 >&2; exit 1; }

cat <<EOF

zoom-operator is running as Pods (kubectl -n zoom-operator get pods).

  export KUBECONFIG=$KUBECONFIG
  kubectl get zc -A
  kubectl -n zoom-operator logs -l app.kubernetes.io/name=zoom-operator --prefix

Open this URL in a browser on this machine to authorize the example (Approve at zoom-sim):

  $url

Ctrl-C stops the cluster.
EOF
while bash hack/cluster.sh status "$STATE" >/dev/null 2>&1; do sleep 5; done
log "The cluster stopped"
