#!/usr/bin/env bash
# hack/build-kubernetes.sh - the Kubernetes v1.20.2 binaries zoom-operator's local control plane
# (testenv, see testenv/src/lib.rs) and one-node cluster (hack/cluster.sh) run, built from
# Debian's `kubernetes` source package and cached outside the checkout.
#
# What this script owns:
#   * the apt packages it needs (installed only when missing), and one apt
#     source file, /etc/apt/sources.list.d/zoom-operator-deb-src.sources, added
#     only when apt cannot otherwise find Debian's `kubernetes` source package;
#   * the build cache ${ZOOM_OPERATOR_CACHE:-/var/cache/zoom-operator}/kubernetes-1.20.2/
#     (bin/kube-apiserver, bin/kube-controller-manager, bin/kube-scheduler, bin/kubelet,
#     bin/kube-proxy, bin/pause, bin/.verified, .lock), so it survives fresh clones.
#
# Usage:
#   hack/build-kubernetes.sh [--quick]
#       Install the runtime packages (etcd, openssl, curl) and the build deps, fetch Debian's
#       kubernetes 1.20.2 source, build and cache the binaries (~10 minutes on 2 cores).
#       Exits at once when the cached binaries already run; with --quick, when the cache's
#       stamp says they did (what starting a control plane checks, without exec'ing them).
#
# Environment: ZOOM_OPERATOR_CACHE (cache root, see above).
# Diagnostics go to stderr only.  Works from any directory.  Needs root (or passwordless sudo)
# when something is missing.

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

log() { printf '[build-kubernetes] %s\n' "$*" >&2; }
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
# Added by zoom-operator hack/build-kubernetes.sh to fetch the kubernetes source.
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

# Cheap check for --quick (every control plane start): the stamp is only written
# after the binaries passed binary_ok, so this avoids exec'ing two 100 MB binaries.
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

main() {
  if [[ $# -eq 0 ]]; then
    cmd_build
    log "kubernetes ${K8S_VERSION} binaries are in ${BIN_DIR}"
  elif [[ $# -eq 1 && $1 == --quick ]]; then
    cmd_build --quick
  else
    usage
  fi
}

# Braces: bash parses this whole line before running it, and exits without
# reading further, so editing the file while it runs is harmless.
{ main "$@"; exit; }
