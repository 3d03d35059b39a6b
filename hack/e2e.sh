#!/usr/bin/env bash
# hack/e2e.sh - the end-to-end suite (tests/e2e.rs): builds the images (hack/image.sh: the
# release build, cached in target/), makes sure helm and the node binaries exist, and runs the
# suite, which brings up the one-node cluster itself (hack/cluster.sh) and takes it down when
# it exits. hack/test.sh calls this; it also runs on its own. Prints each step's time.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."

log() { printf '\n==> %s\n' "$*" >&2; }
step_started=${SECONDS}
took() { log "$1 took $((SECONDS - step_started))s"; step_started=${SECONDS}; }

log "e2e: node binaries (hack/control-plane.sh build: cached after the first run)"
bash hack/control-plane.sh build
took "node binaries"

log "e2e: images (hack/image.sh zoom-operator zoom-sim busybox)"
bash hack/image.sh zoom-operator zoom-sim busybox >/dev/null
took "images"

HELM=$(bash hack/install-helm.sh)
export HELM

log "e2e: cargo test --test e2e (cluster up, chart installs, failover, upgrade)"
# One at a time: the tests share the cluster and take turns with it.
nice -n 10 cargo test --locked --features e2e --test e2e -- --test-threads=1
took "e2e suite"
