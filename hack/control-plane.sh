#!/usr/bin/env bash
# hack/control-plane.sh - a real, throwaway local Kubernetes v1.20.2 control
# plane (etcd + kube-apiserver + kube-controller-manager, no nodes/kubelet) for
# zoom-operator's integration tests and local demos.
#
# What this script owns:
#   * the apt packages it needs (installed only when missing), and one apt
#     source file, /etc/apt/sources.list.d/zoom-operator-deb-src.sources, added
#     only when apt cannot otherwise find Debian's `kubernetes` source package;
#   * the build cache ${ZOOM_OPERATOR_CACHE:-/var/cache/zoom-operator}/kubernetes-1.20.2/
#     (bin/kube-apiserver, bin/kube-controller-manager, bin/.verified, .lock),
#     outside the checkout so it survives fresh clones;
#   * everything under the DIR given to `start`/`stop`: etcd data, keys,
#     tokens.csv, kubeconfig, ports, pids ("NAME PID STARTTIME" per line) and
#     one log per component.  `start` replaces any cluster already in DIR.
#
# Usage:
#   hack/control-plane.sh build
#       Install build deps, fetch Debian's kubernetes 1.20.2 source, build and
#       cache the two binaries (~10 minutes on 2 cores).  Exits at once when
#       the cached binaries already run.
#   hack/control-plane.sh start [--watch-pid PID] DIR
#       Build if needed, then start a fresh control plane under DIR.  When it
#       is ready, prints exactly one line on stdout: KUBECONFIG=DIR/kubeconfig
#       (DIR made absolute).  With --watch-pid, a detached watchdog stops the
#       control plane once PID exits.
#   hack/control-plane.sh stop DIR
#       Stop what DIR/pids lists (SIGTERM, SIGKILL after 5s).  Idempotent.
#
# Environment: ZOOM_OPERATOR_CACHE (cache root, see above),
# ZOOM_CONTROL_PLANE_TIMEOUT (seconds per readiness wait, default 120).
# Diagnostics go to stderr only.  Works from any directory.  Linux (uses
# /proc); the apt/build step needs root (or passwordless sudo).
#
# The cluster: no nodes, no scheduler.  Clients authenticate with a static
# token in group system:masters (kubeconfig uses insecure-skip-tls-verify).
# kube-controller-manager runs only the garbagecollector, namespace,
# serviceaccount and serviceaccount-token controllers.  The ServiceAccount
# admission plugin is disabled, so pods can be created right after their
# namespace.

set -euo pipefail

readonly K8S_VERSION=1.20.2
readonly DEB_SRC_PACKAGE=kubernetes
readonly DEB_SRC_VERSION=1.20.5+really1.20.2-1.1+deb12u1
readonly CACHE_ROOT="${ZOOM_OPERATOR_CACHE:-/var/cache/zoom-operator}"
readonly K8S_CACHE="${CACHE_ROOT}/kubernetes-${K8S_VERSION}"
readonly BIN_DIR="${K8S_CACHE}/bin"
readonly APISERVER_BIN="${BIN_DIR}/kube-apiserver"
readonly KCM_BIN="${BIN_DIR}/kube-controller-manager"
# The node components are built in the same make run (shared compile) for the
# real-node cluster (hack/cluster.sh); the control plane alone does not use them.
readonly NODE_BINS=(kube-scheduler kubelet kube-proxy)
readonly STAMP_VALUE="v${K8S_VERSION}+node"
readonly STAMP="${BIN_DIR}/.verified"
readonly ETCD_BIN=/usr/bin/etcd
readonly DEB_SRC_LIST=/etc/apt/sources.list.d/zoom-operator-deb-src.sources
SCRIPT="$(readlink -f "${BASH_SOURCE[0]}")"
readonly SCRIPT

# Packages needed to run a control plane, and additionally to build one.
readonly RUNTIME_PKGS=(etcd-server openssl curl util-linux)
readonly BUILD_PKGS=(golang-go golang-github-modern-go-reflect2-dev dpkg-dev
  xz-utils rsync make gcc libc6-dev)
readonly REFLECT2_SRC=/usr/share/gocode/src/github.com/modern-go/reflect2

# Controllers we run: enough for owner-reference garbage collection, namespace
# deletion and default service accounts (+ their token secrets).
readonly KCM_CONTROLLERS=garbagecollector,namespace,serviceaccount,serviceaccount-token

START_TIMEOUT="${ZOOM_CONTROL_PLANE_TIMEOUT:-120}" # seconds, per wait

log() { printf '[control-plane] %s\n' "$*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}

usage() {
  sed -n '/^# Usage:/,/^# Environment:/p' "${SCRIPT}" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
}

# ---------------------------------------------------------------------------
# apt helpers
# ---------------------------------------------------------------------------

as_root() {
  if [[ ${EUID} -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo -n "$@"
  else
    die "need root to run: $*"
  fi
}

APT_UPDATED=0
apt_update() {
  ((APT_UPDATED)) && return 0
  log "apt-get update"
  as_root apt-get -q update -o DPkg::Lock::Timeout=600 >&2
  APT_UPDATED=1
}

pkg_installed() {
  [[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" == installed ]]
}

ensure_packages() {
  local missing=() p
  for p in "$@"; do
    pkg_installed "${p}" || missing+=("${p}")
  done
  ((${#missing[@]})) || return 0
  log "installing apt packages: ${missing[*]}"
  apt_update
  # Keep package postinst scripts from starting a system-wide etcd service
  # (we always run our own etcd on our own ports); only if no policy exists.
  local policy=/usr/sbin/policy-rc.d created_policy=0
  if [[ ! -e ${policy} ]]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee "${policy}" >/dev/null
    as_root chmod 0755 "${policy}"
    created_policy=1
  fi
  local rc=0
  as_root env DEBIAN_FRONTEND=noninteractive apt-get -q install -y \
    --no-install-recommends -o DPkg::Lock::Timeout=600 -o Dpkg::Use-Pty=0 \
    "${missing[@]}" >&2 || rc=$?
  ((created_policy)) && as_root rm -f "${policy}"
  ((rc == 0)) || die "apt-get install ${missing[*]} failed (exit ${rc})"
}

# Prints the kubernetes source versions apt knows about (one per line).
src_versions() {
  apt-cache showsrc --only-source "${DEB_SRC_PACKAGE}" 2>/dev/null |
    sed -n 's/^Version: //p' || true
}

# mirror_uri SUFFIX FILE...: first active apt URI ending in /SUFFIX.
mirror_uri() {
  local suffix=$1
  shift
  grep -hE '^[[:space:]]*(URIs:|deb[[:space:]])' "$@" 2>/dev/null |
    grep -oE "(https?|file)://[^[:space:]]*/${suffix}/?([[:space:]]|\$)" | head -n1 | tr -d '[:space:]' || true
}

# Make sure `apt-get source kubernetes` can work: add deb-src entries mirroring
# the configured Debian mirrors if none provide the source package.
ensure_deb_src() {
  if [[ -n "$(src_versions)" ]]; then return 0; fi
  apt_update # the lists may just be stale/missing
  if [[ -n "$(src_versions)" ]]; then return 0; fi

  local codename main_uri security_uri
  codename="$(sed -n 's/^VERSION_CODENAME=//p' /etc/os-release 2>/dev/null || true)"
  codename="${codename:-bookworm}"
  # Reuse the mirrors the machine is configured with (deb822 or one-line
  # format; active files and lines only).
  local files=() f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [[ -f ${f} && ${f} != "${DEB_SRC_LIST}" ]] && files+=("${f}")
  done
  if ((${#files[@]})); then
    main_uri="$(mirror_uri debian "${files[@]}")"
    security_uri="$(mirror_uri debian-security "${files[@]}")"
  fi
  main_uri="${main_uri:-http://deb.debian.org/debian}"
  security_uri="${security_uri:-http://deb.debian.org/debian-security}"
  log "adding deb-src entries (${main_uri}, ${security_uri}) in ${DEB_SRC_LIST}"
  as_root tee "${DEB_SRC_LIST}" >/dev/null <<EOF
# Added by zoom-operator hack/control-plane.sh to fetch the kubernetes source.
Types: deb-src
URIs: ${main_uri}
Suites: ${codename} ${codename}-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: ${security_uri}
Suites: ${codename}-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  APT_UPDATED=0
  apt_update
  [[ -n "$(src_versions)" ]] || die "apt still cannot find source package '${DEB_SRC_PACKAGE}'"
}

# ---------------------------------------------------------------------------
# build
# ---------------------------------------------------------------------------

# True when a cached binary exists and reports the expected version.
binary_ok() {
  [[ -x $1 ]] && "$1" --version 2>/dev/null | grep -q "v${K8S_VERSION}\$"
}

binaries_ok() {
  binary_ok "${APISERVER_BIN}" && binary_ok "${KCM_BIN}" || return 1
  local b
  for b in "${NODE_BINS[@]}"; do
    binary_ok "${BIN_DIR}/${b}" || return 1
  done
  [[ -x ${BIN_DIR}/pause ]]
}

# Cheap check used by `start`: the stamp is only written after the binaries
# passed binary_ok, so this avoids exec'ing two 100 MB binaries every start.
binaries_stamped() {
  [[ -x ${APISERVER_BIN} && -x ${KCM_BIN} && -f ${STAMP} ]] &&
    [[ "$(<"${STAMP}")" == "${STAMP_VALUE}" ]]
}

runtime_ok() {
  [[ -x ${ETCD_BIN} ]] && command -v openssl >/dev/null && command -v curl >/dev/null &&
    command -v setsid >/dev/null && command -v flock >/dev/null
}

# cmd_build [--quick]: make sure runtime packages and cached binaries exist.
cmd_build() {
  if [[ ${1:-} == --quick ]] && binaries_stamped && runtime_ok; then
    return 0
  fi
  if binaries_ok && runtime_ok; then
    [[ -f ${STAMP} ]] || echo "${STAMP_VALUE}" >"${STAMP}" 2>/dev/null || true
    return 0
  fi
  as_root mkdir -p "${K8S_CACHE}"
  local lock_fd
  exec {lock_fd}>"${K8S_CACHE}/.lock"
  if ! flock -n "${lock_fd}"; then
    log "another process is building kubernetes ${K8S_VERSION}; waiting for its lock"
    flock "${lock_fd}"
  fi
  # Re-check under the lock: whoever held it may have done the work.
  ensure_packages "${RUNTIME_PKGS[@]}"
  if ! binaries_ok; then
    build_binaries
  fi
  echo "${STAMP_VALUE}" >"${STAMP}"
  exec {lock_fd}>&-
}

build_binaries() {
  local started=${SECONDS}
  log "building kube-apiserver + kube-controller-manager ${K8S_VERSION} (takes ~6-10 minutes)"
  ensure_packages "${BUILD_PKGS[@]}"
  ensure_deb_src

  local work="${K8S_CACHE}/build.tmp"
  rm -rf "${work}"
  mkdir -p "${work}/src"

  # Prefer the version known to work; fall back to whatever apt offers as long
  # as it is still the 1.20.2 tree (the archive may have moved on).
  local version="${DEB_SRC_VERSION}"
  if ! src_versions | grep -qxF "${DEB_SRC_VERSION}"; then
    version="$(src_versions | grep -F "really${K8S_VERSION}" | head -n1 || true)"
    [[ -n ${version} ]] || die "no '${DEB_SRC_PACKAGE}' source for ${K8S_VERSION} in apt (have: $(src_versions | tr '\n' ' '))"
    log "WARNING: ${DEB_SRC_PACKAGE}=${DEB_SRC_VERSION} not available; using ${version}"
  fi
  log "fetching source ${DEB_SRC_PACKAGE}=${version}"
  (cd "${work}/src" && apt-get -q source -o APT::Sandbox::User=root \
    "${DEB_SRC_PACKAGE}=${version}" >&2) || die "apt-get source ${DEB_SRC_PACKAGE}=${version} failed"
  local tree
  tree="$(find "${work}/src" -mindepth 1 -maxdepth 1 -type d -name "${DEB_SRC_PACKAGE}-*" | head -n1)"
  [[ -n ${tree} && -f ${tree}/Makefile ]] || die "unpacked source tree not found under ${work}/src"

  # The vendored reflect2 v1.0.1 crashes (SIGSEGV) with Go >= 1.18; use
  # Debian's patched copy.  Same import path, so vendor/modules.txt still holds.
  log "replacing vendor/github.com/modern-go/reflect2 with Debian's copy"
  local vendored="${tree}/vendor/github.com/modern-go/reflect2"
  [[ -d ${vendored} && -d ${REFLECT2_SRC} ]] || die "reflect2 directories missing (${vendored}, ${REFLECT2_SRC})"
  find "${vendored}" -maxdepth 1 -type f \( -name '*.go' -o -name '*.s' \) -delete
  find "${REFLECT2_SRC}" -maxdepth 1 -type f \( -name '*.go' -o -name '*.s' \) ! -name '*_test.go' \
    -exec cp {} "${vendored}/" \;

  log "running make (log: ${work}/make.log)"
  mkdir -p "${work}/home" "${work}/gocache"
  # Debian's Go first in PATH, whatever else the machine has; no network.
  if ! (cd "${tree}" && env -u GOROOT -u GOPATH PATH="/usr/lib/go/bin:${PATH}" \
    HOME="${work}/home" GOCACHE="${work}/gocache" \
    CGO_ENABLED=0 GOFLAGS=-mod=vendor GOPROXY=off GO111MODULE=on \
    make WHAT="cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler cmd/kubelet cmd/kube-proxy" >"${work}/make.log" 2>&1); then
    tail -n 60 "${work}/make.log" >&2
    die "kubernetes build failed; full log in ${work}/make.log"
  fi

  local out="${tree}/_output/bin"
  mkdir -p "${work}/bin"
  local b
  for b in kube-apiserver kube-controller-manager "${NODE_BINS[@]}"; do
    install -m 0755 "${out}/${b}" "${work}/bin/"
    binary_ok "${work}/bin/${b}" || die "the built ${b} does not report v${K8S_VERSION}"
  done
  # The Pod sandbox ("pause") binary, for the real-node cluster's local pause image:
  # the tree's own source, linked statically so the image needs no libc.
  gcc -Os -static -o "${work}/bin/pause" "${tree}/build/pause/linux/pause.c" ||
    die "building the pause binary failed (gcc with static glibc, package libc6-dev)"
  strip "${work}/bin/pause" 2>/dev/null || true
  rm -rf "${BIN_DIR}"
  mv "${work}/bin" "${BIN_DIR}"
  rm -rf "${work}"
  log "built and cached in ${BIN_DIR} in $((SECONDS - started))s"
}

# ---------------------------------------------------------------------------
# process helpers
# ---------------------------------------------------------------------------

# Field 22 of /proc/PID/stat: the process start time; guards against PID reuse.
proc_starttime() {
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }" # drop "pid (comm) "; comm may contain spaces
  local fields
  read -r -a fields <<<"${stat}"
  echo "${fields[19]}"
}

# running PID: exists and is not a zombie (kill -0 succeeds on zombies).
running() {
  local state
  state="$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null)" || return 1
  [[ -n ${state} && ${state} != Z && ${state} != X ]]
}

# alive PID STARTTIME: still running and still the process we recorded.
alive() {
  local now
  now="$(proc_starttime "$1")" || return 1
  [[ ${now} == "$2" ]] && running "$1"
}

port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# pick_port: sets PICKED_PORT to a random free loopback port, below Linux's
# ephemeral range (32768+) so outgoing connections rarely take it first.
PICKED_PORTS=" "
pick_port() {
  local port i
  for ((i = 0; i < 200; i++)); do
    port=$((10000 + RANDOM % 22000))
    [[ ${PICKED_PORTS} == *" ${port} "* ]] && continue
    port_in_use "${port}" && continue
    PICKED_PORTS+="${port} "
    PICKED_PORT=${port}
    return 0
  done
  die "could not find a free port"
}

# launch NAME LOGFILE CMD...: start CMD detached (own session via setsid, no
# inherited stdio, so callers reading our stdout to EOF never hang), record
# "NAME PID STARTTIME" in DIR/pids and set LAST_PID.
LAST_PID=""
launch() {
  local name=$1 logfile=$2
  shift 2
  setsid "$@" </dev/null >"${logfile}" 2>&1 &
  LAST_PID=$!
  echo "${name} ${LAST_PID} $(proc_starttime "${LAST_PID}" || echo 0)" >>"${DIR}/pids"
}

fail_component() { # NAME LOGFILE MESSAGE
  log "ERROR: $3"
  if [[ -f $2 ]]; then
    log "---- last lines of $2 ----"
    tail -n 40 "$2" >&2 || true
    log "---- end of $2 ----"
  fi
  exit 1
}

# await NAME PID LOGFILE WHAT CHECK-CMD...: poll CHECK-CMD until it succeeds.
# Returns 0 when ready, 1 when the process died of a port clash (the caller
# retries with new ports); any other death, or a timeout, is fatal.
await() {
  local name=$1 pid=$2 logfile=$3 what=$4
  shift 4
  local deadline=$((SECONDS + START_TIMEOUT))
  until "$@" >/dev/null 2>&1; do
    if ! running "${pid}"; then
      grep -q 'address already in use' "${logfile}" 2>/dev/null && return 1
      fail_component "${name}" "${logfile}" "${name} exited while waiting for ${what}"
    fi
    ((SECONDS < deadline)) ||
      fail_component "${name}" "${logfile}" "timed out after ${START_TIMEOUT}s waiting for ${what}"
    sleep 0.1
  done
}

# shellcheck disable=SC2317 # called indirectly, by await
etcd_healthy() { # PORT
  [[ "$(curl -fsS --max-time 2 "http://127.0.0.1:$1/health")" == *'"health":"true"'* ]]
}

# shellcheck disable=SC2317 # called indirectly, by await
healthz_ok() { # URL [extra curl args]: HTTPS 2xx with body "ok"
  local url=$1
  shift
  [[ "$(curl -fsSk --max-time 2 "$@" "${url}")" == ok ]]
}

# shellcheck disable=SC2317 # called indirectly, by await
api_get() { # PORT TOKEN PATH: authenticated GET against the apiserver, 2xx
  curl -fsSk --max-time 2 -H "Authorization: Bearer $2" -o /dev/null "https://127.0.0.1:$1$3"
}

now_ms() { echo $((${EPOCHREALTIME//[!0-9]/} / 1000)); } # locale-proof
since() { # START_MS -> "1.234s"
  local d=$(($(now_ms) - $1))
  printf '%d.%03ds' $((d / 1000)) $((d % 1000))
}

# ---------------------------------------------------------------------------
# start / stop
# ---------------------------------------------------------------------------

# gen_keys PKI_DIR: service-account signing key + self-signed serving cert.
gen_keys() {
  openssl genrsa -out "$1/sa.key" 2048 &&
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=zoom-local-apiserver \
      -addext "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:10.0.0.1" \
      -keyout "$1/serving.key" -out "$1/serving.crt"
}

# term_wait NAME PID STARTTIME: SIGTERM, wait up to 5s, then SIGKILL.
term_wait() {
  local name=$1 pid=$2 st=$3 i
  alive "${pid}" "${st}" || return 0
  kill -TERM "${pid}" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    alive "${pid}" "${st}" || return 0
    sleep 0.1
  done
  log "${name} (pid ${pid}) ignored SIGTERM for 5s; sending SIGKILL"
  kill -KILL "${pid}" 2>/dev/null || true
}

# stop_dir DIR [QUIET]: stop DIR's processes in reverse start order, so the
# apiserver can still reach etcd while it shuts down (it hangs otherwise), then
# drop etcd's data (~60 MB of preallocated WAL); logs stay for post-mortems.
stop_dir() {
  local dir=$1 quiet=${2:-0}
  local pids="${dir}/pids"
  [[ -f ${pids} ]] || return 0
  local name pid st i entries=()
  while read -r name pid st; do
    [[ -n ${st:-} && ${pid} != "$$" ]] || continue # $$: the watchdog exec'ed into us
    alive "${pid}" "${st}" && entries+=("${name} ${pid} ${st}")
  done <"${pids}"
  if ((${#entries[@]})); then
    ((quiet)) || log "stopping ${#entries[@]} process(es) of ${dir}"
    for ((i = ${#entries[@]} - 1; i >= 0; i--)); do
      read -r name pid st <<<"${entries[i]}"
      term_wait "${name}" "${pid}" "${st}"
    done
  fi
  rm -rf "${dir}/etcd"
  rm -f "${pids}"
}

cmd_stop() {
  [[ $# -eq 1 ]] || usage
  [[ -d $1 ]] || return 0
  stop_dir "$(cd "$1" && pwd)"
}

watchdog() { # WATCHED_PID WATCHED_STARTTIME DIR
  local wpid=$1 wst=$2 dir=$3
  # `wait` (unlike a foreground sleep) lets SIGTERM from `stop` end us at once.
  while alive "${wpid}" "${wst}"; do
    sleep 1 &
    wait $! || true
  done
  log "watched pid ${wpid} is gone; stopping the control plane in ${dir}"
  exec "${BASH}" "${SCRIPT}" stop "${dir}"
}

cmd_start() {
  local watch_pid="" dir_arg=""
  while (($#)); do
    case $1 in
    --watch-pid)
      [[ $# -ge 2 ]] || usage
      watch_pid=$2
      shift 2
      ;;
    --watch-pid=*)
      watch_pid=${1#*=}
      shift
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
  local watch_st=""
  if [[ -n ${watch_pid} ]]; then
    [[ ${watch_pid} =~ ^[0-9]+$ ]] || die "--watch-pid needs a numeric pid, got '${watch_pid}'"
    watch_st="$(proc_starttime "${watch_pid}")" || die "--watch-pid ${watch_pid}: no such process"
  fi

  local t0
  t0="$(now_ms)"
  cmd_build --quick

  mkdir -p "${dir_arg}"
  DIR="$(cd "${dir_arg}" && pwd)"
  # A previous control plane in DIR is replaced, never reused.
  stop_dir "${DIR}"
  rm -rf "${DIR}/etcd" "${DIR}/pki" "${DIR}/kubeconfig" "${DIR}/tokens.csv" "${DIR}/ports" \
    "${DIR}/etcd.log" "${DIR}/kube-apiserver.log" "${DIR}/kube-controller-manager.log" \
    "${DIR}/watchdog.log"
  mkdir -p "${DIR}/pki"
  : >"${DIR}/pids"

  # If anything below fails or we are interrupted, don't leave half a control
  # plane running.
  trap 'rc=$?; if ((rc != 0)); then stop_dir "${DIR}" 1; fi' EXIT
  trap 'exit 129' HUP
  trap 'exit 130' INT
  trap 'exit 143' TERM

  local token
  token="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
  (umask 077 && echo "${token},zoom-admin,zoom-admin,system:masters" >"${DIR}/tokens.csv")
  # Keys and the serving certificate (shared by apiserver and controller
  # manager; clients skip verification) are made while etcd starts.
  local keygen_pid
  gen_keys "${DIR}/pki" >"${DIR}/pki/openssl.log" 2>&1 &
  keygen_pid=$!

  # Each component gets fresh random loopback ports; if another process grabs
  # one between our check and the bind, retry with new ports.
  local attempt pid

  # --- etcd ---
  local etcd_port peer_port etcd_log="${DIR}/etcd.log" etcd_env=()
  case "$(uname -m)" in
  aarch64 | arm64) etcd_env=(ETCD_UNSUPPORTED_ARCH=arm64) ;; # etcd 3.4 wants an opt-in
  esac
  for attempt in 1 2 3; do
    pick_port && etcd_port=${PICKED_PORT}
    pick_port && peer_port=${PICKED_PORT}
    rm -rf "${DIR}/etcd" && mkdir -m 0700 "${DIR}/etcd"
    launch etcd "${etcd_log}" env "${etcd_env[@]}" "${ETCD_BIN}" \
      --name zoom --data-dir "${DIR}/etcd" \
      --listen-client-urls "http://127.0.0.1:${etcd_port}" \
      --advertise-client-urls "http://127.0.0.1:${etcd_port}" \
      --listen-peer-urls "http://127.0.0.1:${peer_port}" \
      --initial-advertise-peer-urls "http://127.0.0.1:${peer_port}" \
      --initial-cluster "zoom=http://127.0.0.1:${peer_port}" \
      --initial-cluster-state new --logger zap --log-level warn \
      --heartbeat-interval 10 --election-timeout 100 # single member: elect at once
    pid=${LAST_PID}
    await etcd "${pid}" "${etcd_log}" "etcd /health" etcd_healthy "${etcd_port}" && break
    ((attempt < 3)) || fail_component etcd "${etcd_log}" "etcd: ports kept clashing"
    log "etcd lost a port race; retrying with other ports"
  done
  log "etcd up on 127.0.0.1:${etcd_port} after $(since "${t0}")"

  wait "${keygen_pid}" || fail_component openssl "${DIR}/pki/openssl.log" "generating keys failed"

  # --- kube-apiserver (1.20 has no insecure port: static token + RBAC) ---
  local api_port api_log="${DIR}/kube-apiserver.log"
  for attempt in 1 2 3; do
    pick_port && api_port=${PICKED_PORT}
    launch kube-apiserver "${api_log}" "${APISERVER_BIN}" \
      --etcd-servers "http://127.0.0.1:${etcd_port}" \
      --bind-address 127.0.0.1 --advertise-address 127.0.0.1 \
      --secure-port "${api_port}" --insecure-port 0 \
      --tls-cert-file "${DIR}/pki/serving.crt" --tls-private-key-file "${DIR}/pki/serving.key" \
      --token-auth-file "${DIR}/tokens.csv" \
      --authorization-mode RBAC \
      --service-account-issuer https://kubernetes.default.svc.cluster.local \
      --service-account-key-file "${DIR}/pki/sa.key" \
      --service-account-signing-key-file "${DIR}/pki/sa.key" \
      --service-cluster-ip-range 10.0.0.0/24 \
      --disable-admission-plugins ServiceAccount \
      --allow-privileged=true \
      --enable-priority-and-fairness=false \
      --endpoint-reconciler-type none \
      --profiling=false
    pid=${LAST_PID}
    await kube-apiserver "${pid}" "${api_log}" "kube-apiserver /readyz" \
      healthz_ok "https://127.0.0.1:${api_port}/readyz" -H "Authorization: Bearer ${token}" && break
    ((attempt < 3)) || fail_component kube-apiserver "${api_log}" "kube-apiserver: ports kept clashing"
    log "kube-apiserver lost a port race; retrying with another port"
  done
  await kube-apiserver "${pid}" "${api_log}" "namespace 'default'" \
    api_get "${api_port}" "${token}" /api/v1/namespaces/default ||
    fail_component kube-apiserver "${api_log}" "kube-apiserver exited"
  log "kube-apiserver ready on https://127.0.0.1:${api_port} after $(since "${t0}")"

  local kubeconfig="${DIR}/kubeconfig"
  (
    umask 077
    cat >"${kubeconfig}.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: zoom-local
  cluster:
    server: https://127.0.0.1:${api_port}
    insecure-skip-tls-verify: true
users:
- name: zoom-admin
  user:
    token: ${token}
contexts:
- name: zoom-local
  context:
    cluster: zoom-local
    user: zoom-admin
    namespace: default
current-context: zoom-local
EOF
  )
  mv "${kubeconfig}.tmp" "${kubeconfig}"

  # --- kube-controller-manager (GC, namespace deletion, service accounts) ---
  local kcm_port kcm_log="${DIR}/kube-controller-manager.log"
  for attempt in 1 2 3; do
    pick_port && kcm_port=${PICKED_PORT}
    launch kube-controller-manager "${kcm_log}" "${KCM_BIN}" \
      --kubeconfig "${kubeconfig}" \
      --controllers "${KCM_CONTROLLERS}" \
      --use-service-account-credentials=false \
      --leader-elect=false \
      --port 0 --bind-address 127.0.0.1 --secure-port "${kcm_port}" \
      --tls-cert-file "${DIR}/pki/serving.crt" --tls-private-key-file "${DIR}/pki/serving.key" \
      --service-account-private-key-file "${DIR}/pki/sa.key" \
      --root-ca-file "${DIR}/pki/serving.crt" \
      --profiling=false
    pid=${LAST_PID}
    await kube-controller-manager "${pid}" "${kcm_log}" "kube-controller-manager /healthz" \
      healthz_ok "https://127.0.0.1:${kcm_port}/healthz" && break
    ((attempt < 3)) || fail_component kube-controller-manager "${kcm_log}" \
      "kube-controller-manager: ports kept clashing"
    log "kube-controller-manager lost a port race; retrying with another port"
  done
  log "kube-controller-manager healthy on 127.0.0.1:${kcm_port} after $(since "${t0}")"

  printf 'etcd=%s\nkube-apiserver=%s\nkube-controller-manager=%s\n' \
    "${etcd_port}" "${api_port}" "${kcm_port}" >"${DIR}/ports"

  if [[ -n ${watch_pid} ]]; then
    # Detached like the components, so it never holds the caller's stdio.
    setsid "${BASH}" "${SCRIPT}" __watchdog "${watch_pid}" "${watch_st}" "${DIR}" \
      </dev/null >>"${DIR}/watchdog.log" 2>&1 &
    echo "watchdog $! $(proc_starttime "$!" || echo 0)" >>"${DIR}/pids"
    log "watchdog (pid $!) stops the control plane when pid ${watch_pid} exits"
  fi

  trap - EXIT HUP INT TERM
  log "control plane ready in $(since "${t0}"); logs and state in ${DIR}"
  echo "KUBECONFIG=${kubeconfig}"
}

main() {
  [[ $# -ge 1 ]] || usage
  local cmd=$1
  shift
  case ${cmd} in
  build)
    [[ $# -eq 0 ]] || usage
    cmd_build
    log "kube-apiserver and kube-controller-manager ${K8S_VERSION} are in ${BIN_DIR}"
    ;;
  start) cmd_start "$@" ;;
  stop) cmd_stop "$@" ;;
  __watchdog) watchdog "$@" ;;
  *) usage ;;
  esac
}

# Braces: bash parses this whole line before running it, and exits without
# reading further, so editing the file while it runs is harmless.
{ main "$@"; exit; }
