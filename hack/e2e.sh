#!/usr/bin/env bash
# hack/e2e.sh - the end-to-end suite (tests/e2e.rs). Builds what it needs: the node binaries
# (hack/build-kubernetes.sh, cached under /var/cache/zoom-operator), helm, and the images
# (hack/image.sh: the release build, cached in target/), then runs the suite, which brings up
# the one-node cluster itself (hack/cluster.sh) and takes it down when it exits.
#
#   hack/e2e.sh             prepare, then run tests/e2e.rs
#   hack/e2e.sh --prepare   only prepare (hack/test.sh does this, then runs every test binary,
#                           e2e included, with hack/run-tests.sh)
# Prints each step's time.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."

log() { printf '\n==> %s\n' "$*" >&2; }
step_started=${SECONDS}
took() {
  log "$1 took $((SECONDS - step_started))s"
  step_started=${SECONDS}
}

log "e2e: node packages and binaries (hack/cluster.sh deps; the build is cached after the first run)"
bash hack/cluster.sh deps
# tests/argocd.rs runs the Argo CD health check with Debian's Lua 5.1 (Argo CD's dialect).
if ! command -v lua5.1 >/dev/null; then
  apt-get -q update -o DPkg::Lock::Timeout=600 >&2
  DEBIAN_FRONTEND=noninteractive apt-get -q install -y --no-install-recommends \
    -o DPkg::Lock::Timeout=600 lua5.1 >&2
fi
took "node packages and binaries"

log "e2e: images (hack/image.sh zoom-operator zoom-sim busybox)"
bash hack/image.sh zoom-operator zoom-sim busybox >/dev/null
took "images"

[[ ${1:-} == --prepare ]] && exit 0

HELM=$(bash hack/install-helm.sh)
export HELM
log "e2e: cargo test --test e2e (cluster up, chart installs, failover, upgrade)"
nice -n 10 cargo test --locked --test e2e
took "e2e suite"
