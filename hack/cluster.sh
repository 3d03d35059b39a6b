#!/usr/bin/env bash
# hack/cluster.sh - a throwaway one-node Kubernetes 1.20.2 cluster with a real kubelet, inside a
# network namespace of its own, for zoom-operator's end-to-end suite (tests/e2e.rs) and
# `hack/run-local.sh --in-cluster`.
#
# What this script owns:
#   * the network namespace "zoom-node" (no default route: nothing in it can reach beyond the
#     machine) and the veth pair zn-host (root namespace, 10.231.0.1/32) <-> zn-node (in it,
#     10.231.0.2/32, the node and API address), with one host route each way, so the test
#     process reaches the API server and NodePorts at 10.231.0.2 and nothing else;
#   * everything under DIR: etcd, keys, tokens, kubeconfigs, containerd's root/state/socket,
#     the kubelet's root, CNI config and IPAM, DNS hosts, pids, one log per component;
#   * the lock /run/zoom-operator-cluster.lock (one such cluster at a time: the names above and
#     the kubelet's fixed host paths are machine-wide) and the fixed host paths the kubelet and
#     containerd write whatever their flags say (/var/lib/kubelet/device-plugins, /var/log/pods,
#     /var/log/containers, /var/lib/cni/results, /run/containerd/{s,runc}) and /run/netns,
#     each removed by `down` when `up` created it.
#
# Usage:
#   hack/cluster.sh up [--watch-pid PID] DIR
#       Build/install what is missing (hack/build-kubernetes.sh, apt packages), start the
#       cluster, wait until the node is Ready. Prints one line on stdout:
#       KUBECONFIG=DIR/kubeconfig (cluster-admin, server https://10.231.0.2:6443). With
#       --watch-pid, a detached watchdog runs `down DIR` once PID exits.
#   hack/cluster.sh load DIR TARBALL NAME
#       Import an OCI tarball (hack/image.sh) as docker.io/local/NAME:<its tag>.
#   hack/cluster.sh deps            install the apt packages and build the binaries `up` needs
#   hack/cluster.sh status DIR      exit 0 when every component runs and the node is Ready
#   hack/cluster.sh down DIR        stop everything, remove Pods, mounts, cgroups, namespaces
#
# The cluster: etcd, kube-apiserver (Node,RBAC; static tokens), kube-controller-manager (all
# default controllers, one ServiceAccount per controller), kube-scheduler, containerd + runc
# (CNI bridge 10.88.0.0/16 without masquerading), kubelet, kube-proxy (iptables), and dnsmasq
# answering <svc>.<ns>.svc.cluster.local from the Service list. Services use 10.96.0.0/16.
# Local images only: Pods use image local/NAME:TAG with imagePullPolicy Never.
#
# Environment: ZOOM_OPERATOR_CACHE (as hack/build-kubernetes.sh), ZOOM_CLUSTER_TIMEOUT (seconds
# per readiness wait, default 180). Needs root.

set -euo pipefail

readonly CACHE_ROOT="${ZOOM_OPERATOR_CACHE:-/var/cache/zoom-operator}"
readonly BIN_DIR="${CACHE_ROOT}/kubernetes-1.20.2/bin"
readonly NETNS=zoom-node
readonly NETNS_PATH=/run/netns/${NETNS}
readonly HOST_IF=zn-host HOST_IP=10.231.0.1
readonly NODE_IF=zn-node NODE_IP=10.231.0.2
readonly NODE_NAME=zoom-node
readonly POD_CIDR=10.88.0.0/16 SERVICE_CIDR=10.96.0.0/16 KUBERNETES_SVC_IP=10.96.0.1
readonly PAUSE_IMAGE=docker.io/local/pause:3.4.1
readonly LOCK=/run/zoom-operator-cluster.lock
readonly HOST_PATHS=(/var/lib/kubelet /var/log/pods /var/log/containers /var/lib/cni
  /run/containerd)
readonly PKGS=(containerd runc containernetworking-plugins umoci dnsmasq-base iproute2 iptables
  conntrack util-linux openssl curl etcd-server)
SCRIPT="$(readlink -f "${BASH_SOURCE[0]}")"
readonly SCRIPT
TIMEOUT="${ZOOM_CLUSTER_TIMEOUT:-180}"

log() { printf '[cluster] %s\n' "$*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}
usage() {
  sed -n '/^# Usage:/,/^# The cluster:/p' "${SCRIPT}" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
}

pkg_installed() { [[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" == installed ]]; }

ensure_packages() {
  local missing=() p
  for p in "${PKGS[@]}"; do pkg_installed "${p}" || missing+=("${p}"); done
  ((${#missing[@]})) || return 0
  log "installing apt packages: ${missing[*]}"
  apt-get -q update -o DPkg::Lock::Timeout=600 >&2
  # Keep postinst scripts from starting system-wide containerd/etcd services.
  local policy=/usr/sbin/policy-rc.d created=0 rc=0
  if [[ ! -e ${policy} ]]; then
    printf '#!/bin/sh\nexit 101\n' >"${policy}" && chmod 0755 "${policy}" && created=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get -q install -y --no-install-recommends \
    -o DPkg::Lock::Timeout=600 -o Dpkg::Use-Pty=0 "${missing[@]}" >&2 || rc=$?
  ((created)) && rm -f "${policy}"
  ((rc == 0)) || die "apt-get install ${missing[*]} failed (exit ${rc})"
}

# ---------------------------------------------------------------------------
# processes (same conventions as testenv: DIR/pids has "NAME PID STARTTIME")
# ---------------------------------------------------------------------------

proc_starttime() {
  local stat fields
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"
  read -r -a fields <<<"${stat}"
  echo "${fields[19]}"
}
alive() {
  local now state
  now="$(proc_starttime "$1")" || return 1
  [[ ${now} == "$2" ]] || return 1
  state="$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null)" || return 1
  [[ -n ${state} && ${state} != Z && ${state} != X ]]
}

# launch NAME CMD...: CMD detached, inside the node's network namespace, logging to DIR/NAME.log.
launch() {
  local name=$1
  shift
  setsid nsenter --net="${NETNS_PATH}" -- "$@" </dev/null >"${DIR}/logs/${name}.log" 2>&1 &
  local pid=$!
  echo "${name} ${pid} $(proc_starttime "${pid}" || echo 0)" >>"${DIR}/pids"
  LAST_PID=${pid}
}

in_node() { nsenter --net="${NETNS_PATH}" -- "$@"; }

# await WHAT PID CHECK...: poll CHECK until it succeeds; the process dying or a timeout is fatal.
await() {
  local what=$1 pid=$2 deadline=$((SECONDS + TIMEOUT))
  shift 2
  until "$@" >/dev/null 2>&1; do
    if [[ ${pid} != - ]] && ! kill -0 "${pid}" 2>/dev/null; then
      die "${what}: the process exited; see ${DIR}/logs/"
    fi
    ((SECONDS < deadline)) || die "timed out after ${TIMEOUT}s waiting for ${what}; see ${DIR}/logs/"
    sleep 0.2
  done
}

term_wait() { # PID STARTTIME
  local i
  alive "$1" "$2" || return 0
  kill -TERM "$1" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    alive "$1" "$2" || return 0
    sleep 0.1
  done
  kill -KILL "$1" 2>/dev/null || true
}

# stop_named DIR NAME...: stop the recorded processes with these names, in the order given.
stop_named() {
  local dir=$1 want name pid st
  shift
  [[ -f ${dir}/pids ]] || return 0
  for want in "$@"; do
    while read -r name pid st; do
      [[ ${name} == "${want}" && ${pid} != "$$" ]] || continue
      # dns-sync leads its own process group (setsid): its kubectl watch goes with it.
      if [[ ${name} == dns-sync ]] && alive "${pid}" "${st}"; then kill -TERM -- "-${pid}" 2>/dev/null || true; fi
      term_wait "${pid}" "${st}"
    done <"${dir}/pids"
  done
  return 0
}

# ---------------------------------------------------------------------------
# configuration files
# ---------------------------------------------------------------------------

gen_pki() { # PKI_DIR
  local p=$1
  openssl genrsa -out "${p}/sa.key" 2048
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=zoom-node-ca \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    -keyout "${p}/ca.key" -out "${p}/ca.crt"
  openssl req -newkey rsa:2048 -nodes -subj /CN=kube-apiserver -keyout "${p}/apiserver.key" \
    -out "${p}/apiserver.csr"
  printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=serverAuth" \
    "subjectAltName=IP:${NODE_IP},IP:${KUBERNETES_SVC_IP},IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost" \
    >"${p}/apiserver.ext"
  openssl x509 -req -in "${p}/apiserver.csr" -CA "${p}/ca.crt" -CAkey "${p}/ca.key" \
    -CAcreateserial -days 3650 -extfile "${p}/apiserver.ext" -out "${p}/apiserver.crt"
}

write_kubeconfig() { # FILE USER TOKEN
  (
    umask 077
    cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: zoom-node
  cluster:
    server: https://${NODE_IP}:6443
    certificate-authority-data: $(base64 -w0 "${DIR}/pki/ca.crt")
users:
- name: $2
  user:
    token: $3
contexts:
- name: zoom-node
  context: {cluster: zoom-node, user: $2, namespace: default}
current-context: zoom-node
EOF
  )
}

write_configs() {
  local c=${DIR}/containerd
  mkdir -p "${c}/root" "${c}/state" "${c}/opt" "${DIR}/run" "${DIR}/cni/net.d" "${DIR}/cni/ipam" \
    "${DIR}/kubelet" "${DIR}/dns/hosts"
  cat >"${c}/config.toml" <<EOF
version = 2
root = "${c}/root"
state = "${c}/state"
oom_score = 0
[grpc]
  address = "${DIR}/run/containerd.sock"
[ttrpc]
  address = "${DIR}/run/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "${c}/opt"
[plugins."io.containerd.gc.v1.scheduler"]
  pause_threshold = 0.02
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "${DIR}/cni/net.d"
EOF
  cat >"${DIR}/cni/net.d/10-zoom-node.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "zoom-node",
  "plugins": [
    {
      "type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": {
        "type": "host-local", "dataDir": "${DIR}/cni/ipam",
        "ranges": [[{"subnet": "${POD_CIDR}", "gateway": "10.88.0.1"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    }
  ]
}
EOF
  printf 'nameserver %s\nsearch cluster.local\n' "${NODE_IP}" >"${DIR}/resolv.conf"
  cat >"${DIR}/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: ${NODE_IP}
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
failSwapOn: false
# Mounted Secrets follow their Secret within about this long.
syncFrequency: 10s
resolvConf: ${DIR}/resolv.conf
clusterDNS: [${NODE_IP}]
clusterDomain: cluster.local
# Local images cannot be pulled again: never collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
serializeImagePulls: false
maxPods: 60
EOF
}

# ---------------------------------------------------------------------------
# network
# ---------------------------------------------------------------------------

net_up() {
  ip netns add "${NETNS}"
  ip link add "${HOST_IF}" type veth peer name "${NODE_IF}" netns "${NETNS}"
  ip addr add "${HOST_IP}/32" dev "${HOST_IF}"
  ip link set "${HOST_IF}" up
  ip route add "${NODE_IP}/32" dev "${HOST_IF}" src "${HOST_IP}"
  in_node ip link set lo up
  in_node ip addr add "${NODE_IP}/32" dev "${NODE_IF}"
  in_node ip link set "${NODE_IF}" up
  in_node ip route add "${HOST_IP}/32" dev "${NODE_IF}" src "${NODE_IP}"
  # Routing between Pods, Services and the node happens inside the namespace only.
  in_node sysctl -qw net.ipv4.ip_forward=1
  in_node sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null || true
}

net_down() {
  ip link del "${HOST_IF}" 2>/dev/null || true
  if [[ -e ${NETNS_PATH} ]]; then ip netns del "${NETNS}" 2>/dev/null || true; fi
}

# ---------------------------------------------------------------------------
# images
# ---------------------------------------------------------------------------

ctr_() { ctr --address "${DIR}/run/containerd.sock" -n k8s.io "$@"; }

# The Pod sandbox image: the static pause binary hack/build-kubernetes.sh builds, as an OCI image.
pause_image() {
  local work=${DIR}/pause-image
  rm -rf "${work}" && mkdir -p "${work}"
  umoci init --layout "${work}/layout"
  umoci new --image "${work}/layout:3.4.1"
  umoci unpack --image "${work}/layout:3.4.1" "${work}/bundle" >/dev/null
  install -m 0755 "${BIN_DIR}/pause" "${work}/bundle/rootfs/pause"
  umoci repack --image "${work}/layout:3.4.1" "${work}/bundle"
  umoci config --image "${work}/layout:3.4.1" --config.entrypoint /pause --config.user 65535:65535
  tar -C "${work}/layout" -cf "${work}/pause.tar" oci-layout index.json blobs
  ctr_ images import --base-name docker.io/local/pause "${work}/pause.tar" >&2
  rm -rf "${work}"
}

cmd_load() {
  [[ $# -eq 3 ]] || usage
  DIR="$(cd "$1" && pwd)"
  [[ -f $2 ]] || die "no image tarball at $2 (run hack/image.sh)"
  [[ $3 =~ ^[a-z0-9][a-z0-9._-]*$ ]] || die "'$3' is not an image name"
  ctr_ images import --base-name "docker.io/local/$3" "$2" >&2
}

# ---------------------------------------------------------------------------
# DNS: dnsmasq serves DIR/dns/hosts, which this loop regenerates from the Service list
# ---------------------------------------------------------------------------

dns_sync() { # DIR
  local dir=$1
  export KUBECONFIG=${dir}/kubeconfig
  # A watch says when Services change (idle costs nothing); each change rewrites the list. When
  # the watch ends (API server timeout or restart), list again and watch anew.
  while true; do
    dns_write "${dir}/dns/hosts/services"
    kubectl get services -A --watch -o name 2>/dev/null | while read -r _; do
      dns_write "${dir}/dns/hosts/services"
    done
    sleep 1 &
    wait $! || true
  done
}

dns_write() { # HOSTS_FILE: "<clusterIP> <svc>.<ns>.svc.cluster.local <svc>.<ns>.svc" lines
  local now
  now="$(kubectl get services -A -o \
    go-template='{{range .items}}{{if and .spec.clusterIP (ne .spec.clusterIP "None")}}{{.spec.clusterIP}} {{.metadata.name}}.{{.metadata.namespace}}.svc.cluster.local {{.metadata.name}}.{{.metadata.namespace}}.svc{{"\n"}}{{end}}{{end}}' \
    2>/dev/null)" || return 0
  if [[ ! -f $1 || "$(<"$1")" != "${now}" ]]; then
    printf '%s\n' "${now}" >"$1.tmp" && mv "$1.tmp" "$1"
  fi
}

# ---------------------------------------------------------------------------
# up
# ---------------------------------------------------------------------------

node_ready() {
  [[ "$(KUBECONFIG=${DIR}/kubeconfig kubectl get node "${NODE_NAME}" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]]
}
https_ok() { curl -fsSk --max-time 2 "$@" >/dev/null; }
in_node_ok() { in_node curl -fsSk --max-time 2 "$@" >/dev/null; }
admin_get() { KUBECONFIG=${DIR}/kubeconfig kubectl get --raw "$1" >/dev/null; }

start_control_plane() {
  local pid tok
  launch etcd /usr/bin/etcd --name zoom-node --data-dir "${DIR}/etcd" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster zoom-node=http://127.0.0.1:2380 --initial-cluster-state new \
    --logger zap --log-level warn --heartbeat-interval 10 --election-timeout 100
  await etcd "${LAST_PID}" in_node_ok http://127.0.0.1:2379/health
  tok=$(awk -F, '$2=="zoom-admin"{print $1}' "${DIR}/tokens.csv")
  launch kube-apiserver "${BIN_DIR}/kube-apiserver" --etcd-servers http://127.0.0.1:2379 \
    --bind-address "${NODE_IP}" --advertise-address "${NODE_IP}" --secure-port 6443 --insecure-port 0 \
    --tls-cert-file "${DIR}/pki/apiserver.crt" --tls-private-key-file "${DIR}/pki/apiserver.key" \
    --token-auth-file "${DIR}/tokens.csv" --authorization-mode Node,RBAC \
    --enable-admission-plugins NodeRestriction \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "${DIR}/pki/sa.key" --service-account-signing-key-file "${DIR}/pki/sa.key" \
    --service-cluster-ip-range "${SERVICE_CIDR}" --allow-privileged=true \
    --kubelet-preferred-address-types InternalIP --enable-priority-and-fairness=false --profiling=false
  pid=${LAST_PID}
  await kube-apiserver "${pid}" https_ok -H "Authorization: Bearer ${tok}" "https://${NODE_IP}:6443/readyz"
  await "namespace default" "${pid}" admin_get /api/v1/namespaces/default
  launch kube-controller-manager "${BIN_DIR}/kube-controller-manager" \
    --kubeconfig "${DIR}/kcm.kubeconfig" --use-service-account-credentials=true \
    --service-account-private-key-file "${DIR}/pki/sa.key" --root-ca-file "${DIR}/pki/ca.crt" \
    --cluster-signing-cert-file "${DIR}/pki/ca.crt" --cluster-signing-key-file "${DIR}/pki/ca.key" \
    --leader-elect=false --port 0 --bind-address 127.0.0.1 --secure-port 10257 --profiling=false
  launch kube-scheduler "${BIN_DIR}/kube-scheduler" --kubeconfig "${DIR}/scheduler.kubeconfig" \
    --leader-elect=false --port 0 --bind-address 127.0.0.1 --secure-port 10259 --profiling=false
}

start_node() {
  launch containerd /usr/bin/containerd --config "${DIR}/containerd/config.toml"
  await containerd "${LAST_PID}" test -S "${DIR}/run/containerd.sock"
  await "containerd CRI" "${LAST_PID}" ctr_ version
  pause_image
  launch kubelet "${BIN_DIR}/kubelet" --config "${DIR}/kubelet/config.yaml" \
    --kubeconfig "${DIR}/kubelet.kubeconfig" --container-runtime remote \
    --container-runtime-endpoint "unix://${DIR}/run/containerd.sock" --runtime-request-timeout 5m \
    --root-dir "${DIR}/kubelet" --cert-dir "${DIR}/kubelet/pki" --hostname-override "${NODE_NAME}" \
    --node-ip "${NODE_IP}" --oom-score-adj=0 --v=1
  launch kube-proxy "${BIN_DIR}/kube-proxy" --kubeconfig "${DIR}/kube-proxy.kubeconfig" \
    --proxy-mode iptables --hostname-override "${NODE_NAME}" --bind-address "${NODE_IP}" \
    --cluster-cidr "${POD_CIDR}" --masquerade-all --conntrack-max-per-core=0 \
    --conntrack-tcp-timeout-established=0 --conntrack-tcp-timeout-close-wait=0 --oom-score-adj=0 \
    --healthz-bind-address 127.0.0.1:10256 --metrics-bind-address 127.0.0.1:10249
  : >"${DIR}/dns/hosts/services"
  launch dnsmasq /usr/sbin/dnsmasq --keep-in-foreground --no-resolv --no-hosts --no-poll \
    --listen-address "${NODE_IP}" --bind-interfaces --hostsdir "${DIR}/dns/hosts" \
    --local=/cluster.local/ --domain-needed --user=root --pid-file= --log-facility=-
  launch dns-sync "${BASH}" "${SCRIPT}" __dns "${DIR}"
}

# write_credentials: one static token per component (tokens.csv) and a kubeconfig each, so
# the Node authorizer and RBAC see the identities a kubeadm cluster's components have.
write_credentials() {
  local who tokens=()
  for who in zoom-admin kubelet kube-proxy scheduler kcm; do
    tokens+=("$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')")
  done
  (
    umask 077
    printf '%s\n' "${tokens[0]},zoom-admin,zoom-admin,system:masters" \
      "${tokens[1]},system:node:${NODE_NAME},node-${NODE_NAME},system:nodes" \
      "${tokens[2]},system:kube-proxy,kube-proxy" \
      "${tokens[3]},system:kube-scheduler,kube-scheduler" \
      "${tokens[4]},system:kube-controller-manager,kube-controller-manager" >"${DIR}/tokens.csv"
  )
  write_kubeconfig "${DIR}/kubeconfig" zoom-admin "${tokens[0]}"
  write_kubeconfig "${DIR}/kubelet.kubeconfig" "system:node:${NODE_NAME}" "${tokens[1]}"
  write_kubeconfig "${DIR}/kube-proxy.kubeconfig" system:kube-proxy "${tokens[2]}"
  write_kubeconfig "${DIR}/scheduler.kubeconfig" system:kube-scheduler "${tokens[3]}"
  write_kubeconfig "${DIR}/kcm.kubeconfig" system:kube-controller-manager "${tokens[4]}"
}

cmd_up() {
  local watch_pid="" dir_arg=""
  while (($#)); do
    case $1 in
    --watch-pid)
      [[ $# -ge 2 ]] || usage
      watch_pid=$2
      shift 2
      ;;
    -*) usage ;;
    *)
      [[ -z ${dir_arg} ]] || usage
      dir_arg=$1
      shift
      ;;
    esac
  done
  [[ -n ${dir_arg} ]] || usage
  [[ ${EUID} -eq 0 ]] || die "needs root (network namespaces, containerd, kubelet)"
  local watch_st=""
  if [[ -n ${watch_pid} ]]; then
    watch_st="$(proc_starttime "${watch_pid}")" || die "--watch-pid ${watch_pid}: no such process"
  fi
  local t0=${SECONDS}
  ensure_packages
  bash "$(dirname "${SCRIPT}")/build-kubernetes.sh" >&2
  [[ -x ${BIN_DIR}/kubelet && -x ${BIN_DIR}/pause ]] || die "no kubelet/pause in ${BIN_DIR}"

  mkdir -p "${dir_arg}"
  DIR="$(cd "${dir_arg}" && pwd)"
  ((${#DIR} <= 60)) || die "DIR path too long for containerd's sockets (${#DIR} > 60 characters)"
  take_lock
  trap 'rc=$?; if ((rc != 0)); then log "start failed; cleaning up"; down_dir "${DIR}"; fi' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM HUP
  rm -rf "${DIR:?}"/{etcd,pki,logs,containerd,kubelet,cni,dns,run,pids,created,*.kubeconfig,kubeconfig,tokens.csv}
  mkdir -p "${DIR}/pki" "${DIR}/logs"
  : >"${DIR}/pids"
  local p
  for p in "${HOST_PATHS[@]}" /run/netns; do [[ -e ${p} ]] || echo "${p}" >>"${DIR}/created"; done
  gen_pki "${DIR}/pki" >"${DIR}/logs/openssl.log" 2>&1 || die "openssl failed; see ${DIR}/logs/openssl.log"
  write_credentials
  write_configs
  net_up
  start_control_plane
  start_node
  await "node ${NODE_NAME} Ready" - node_ready
  await "ServiceAccount default/default" - admin_get /api/v1/namespaces/default/serviceaccounts/default
  if [[ -n ${watch_pid} ]]; then
    setsid "${BASH}" "${SCRIPT}" __watchdog "${watch_pid}" "${watch_st}" "${DIR}" \
      </dev/null >>"${DIR}/logs/watchdog.log" 2>&1 &
    echo "watchdog $! $(proc_starttime "$!" || echo 0)" >>"${DIR}/pids"
  fi
  trap - EXIT INT TERM HUP
  log "cluster ready in $((SECONDS - t0))s (node ${NODE_NAME} at ${NODE_IP}); state in ${DIR}"
  echo "KUBECONFIG=${DIR}/kubeconfig"
}

# take_lock: one cluster at a time. A lock whose cluster is gone (its DIR has no running
# processes) is stale and taken over after cleaning up what that cluster left.
take_lock() {
  exec {LOCK_FD}>"${LOCK}.flock"
  flock -w 60 "${LOCK_FD}" || die "timed out waiting for ${LOCK}.flock"
  if [[ -f ${LOCK} ]]; then
    local other
    other="$(<"${LOCK}")"
    if [[ ${other} != "${DIR}" ]] && dir_running "${other}"; then
      die "a cluster is already running in ${other} (hack/cluster.sh down ${other})"
    fi
    log "cleaning up the previous cluster in ${other}"
    local mine=${DIR}
    down_dir "${other}"
    DIR=${mine}
  elif [[ -e ${NETNS_PATH} ]]; then
    die "network namespace ${NETNS} exists but ${LOCK} does not: not ours; remove it by hand"
  fi
  echo "${DIR}" >"${LOCK}"
  exec {LOCK_FD}>&-
}

dir_running() {
  local name pid st
  [[ -f $1/pids ]] || return 1
  while read -r name pid st; do
    alive "${pid}" "${st}" && return 0
  done <"$1/pids"
  return 1
}

# ---------------------------------------------------------------------------
# down
# ---------------------------------------------------------------------------

# remove_containers: kill and delete every container; remember their network namespaces.
remove_containers() {
  local ids id netns_paths=()
  ids="$(ctr_ containers ls -q 2>/dev/null)" || return 0
  for id in ${ids}; do
    local path
    path="$(ctr_ containers info "${id}" 2>/dev/null |
      grep -A1 '"type": "network"' | sed -n 's/.*"path": "\(.*\)".*/\1/p' | head -n1)" || true
    if [[ -n ${path} ]]; then netns_paths+=("${path}"); fi
    ctr_ tasks kill -s SIGKILL "${id}" >/dev/null 2>&1 || true
  done
  sleep 0.5
  for id in ${ids}; do
    ctr_ tasks delete -f "${id}" >/dev/null 2>&1 || true
    ctr_ containers delete "${id}" >/dev/null 2>&1 || true
  done
  printf '%s\n' "${netns_paths[@]}" | sort -u >"${DIR}/pod-netns" || true
}

# kill_strays: shims and container processes of this cluster's containerd, by PID.
kill_strays() {
  local pid
  for pid in $(pgrep -f "containerd-shim-runc-v2 .*-address ${DIR}/run/containerd.sock" 2>/dev/null || true); do
    kill -KILL "${pid}" 2>/dev/null || true
  done
  local procs
  for procs in /sys/fs/cgroup/*/kubepods/cgroup.procs /sys/fs/cgroup/*/kubepods/*/cgroup.procs \
    /sys/fs/cgroup/*/kubepods/*/*/cgroup.procs /sys/fs/cgroup/*/kubepods/*/*/*/cgroup.procs; do
    [[ -f ${procs} ]] || continue
    while read -r pid; do kill -KILL "${pid}" 2>/dev/null || true; done <"${procs}"
  done
}

remove_cgroups() {
  local d
  for d in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    [[ -d ${d} ]] || continue
    find "${d}" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
}

unmount_under() { # PATH...
  local m
  for m in $(awk '{print $5}' /proc/self/mountinfo | grep -E "^($(
    IFS='|'
    echo "$*"
  ))" | sort -r); do
    umount -l "${m}" 2>/dev/null || true
  done
}

down_dir() {
  DIR=$1
  [[ -d ${DIR} ]] || return 0
  stop_named "${DIR}" watchdog dns-sync dnsmasq kube-proxy kubelet kube-scheduler \
    kube-controller-manager
  if [[ -S ${DIR}/run/containerd.sock ]]; then remove_containers; fi
  stop_named "${DIR}" containerd kube-apiserver etcd
  kill_strays
  sleep 0.3
  remove_cgroups
  local p
  if [[ -f ${DIR}/pod-netns ]]; then
    while read -r p; do
      [[ ${p} == /var/run/netns/* || ${p} == /run/netns/* ]] || continue
      umount "${p}" 2>/dev/null || true
      rm -f "${p}"
    done <"${DIR}/pod-netns"
  fi
  unmount_under "${DIR}/" /run/containerd/
  net_down
  if [[ -f ${DIR}/created ]]; then
    while read -r p; do
      if [[ ${p} == /run/netns ]]; then
        # `ip netns add` made it a shared bind mount; keep it while anyone else uses it.
        rmdir /run/netns/* 2>/dev/null || true
        if [[ -z "$(ls -A /run/netns 2>/dev/null)" ]]; then umount /run/netns 2>/dev/null || true; fi
        rmdir /run/netns 2>/dev/null || true
      else
        rm -rf "${p}"
      fi
    done <"${DIR}/created"
  fi
  rm -rf "${DIR}/etcd" "${DIR}/containerd" "${DIR}/kubelet/pods" "${DIR}/cni/ipam" "${DIR}/pids" \
    "${DIR}/created"
  if [[ -f ${LOCK} && "$(<"${LOCK}")" == "${DIR}" ]]; then rm -f "${LOCK}"; fi
}

cmd_down() {
  [[ $# -eq 1 ]] || usage
  [[ -d $1 ]] || return 0
  local t0=${SECONDS}
  down_dir "$(cd "$1" && pwd)"
  log "cluster in $1 stopped in $((SECONDS - t0))s"
}

cmd_status() {
  [[ $# -eq 1 && -d $1 ]] || usage
  DIR="$(cd "$1" && pwd)"
  local name pid st bad=0
  [[ -f ${DIR}/pids ]] || die "no cluster in ${DIR}"
  while read -r name pid st; do
    if alive "${pid}" "${st}"; then echo "${name} running (pid ${pid})"; else
      echo "${name} NOT running"
      bad=1
    fi
  done <"${DIR}/pids"
  if node_ready; then echo "node ${NODE_NAME} Ready"; else
    echo "node ${NODE_NAME} not Ready"
    bad=1
  fi
  return "${bad}"
}

watchdog() { # PID STARTTIME DIR
  while alive "$1" "$2"; do
    sleep 1 &
    wait $! || true
  done
  log "watched pid $1 is gone; stopping the cluster in $3"
  exec "${BASH}" "${SCRIPT}" down "$3"
}

main() {
  [[ $# -ge 1 ]] || usage
  local cmd=$1
  shift
  case ${cmd} in
  up) cmd_up "$@" ;;
  deps)
    [[ $# -eq 0 ]] || usage
    ensure_packages
    bash "$(dirname "${SCRIPT}")/build-kubernetes.sh" >&2
    ;;
  down) cmd_down "$@" ;;
  status) cmd_status "$@" ;;
  load) cmd_load "$@" ;;
  __dns) dns_sync "$@" ;;
  __watchdog) watchdog "$@" ;;
  *) usage ;;
  esac
}

{
  main "$@"
  exit
}
