#!/usr/bin/env bash
# hack/test.sh - the whole test suite, from a fresh Debian machine: installs what it needs
# (apt packages, the local Kubernetes control plane build, helm), checks formatting and lints,
# then runs every unit, integration, chart and simulator test, and each system benchmark once at a
# small N. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."

log() { printf '\n==> %s\n' "$*" >&2; }
started=$(date +%s)

log "Local control plane (kube-apiserver/kube-controller-manager 1.20.2, etcd)"
bash hack/build-kubernetes.sh

log "helm"
HELM=$(bash hack/install-helm.sh)
export HELM

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "build (benchmarks included; run them with: cargo bench)"
cargo build --workspace --all-targets --locked

log "images for the end-to-end suite (hack/e2e.sh --prepare: release build, hack/image.sh)"
bash hack/e2e.sh --prepare

log "tests"
# Every test binary, a few at a time (integration binaries each start their own control plane):
# see hack/run-tests.sh. It prints one closing line for the whole workspace.
status=0
bash hack/run-tests.sh || status=$?

log "benchmarks, each once at a small N (hack/bench.sh all --small: proves they run, asserts no figure)"
bash hack/bench.sh all --small || status=$?

log "done in $(( $(date +%s) - started ))s"
exit "$status"
