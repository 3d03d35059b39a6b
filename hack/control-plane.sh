#!/usr/bin/env bash
# hack/control-plane.sh - the old entry point to the local control plane, kept for the scripts
# and docs that call it. The work is done elsewhere:
#
#   hack/control-plane.sh build [--quick]               hack/build-kubernetes.sh: apt, Debian's
#                                                       kubernetes source, make, the cache
#   hack/control-plane.sh start [--watch-pid PID] DIR   testenv control-plane start (the
#   hack/control-plane.sh stop DIR                      supervisor, testenv/src/lib.rs), by
#                                                       cargo run; the same flags and output
set -euo pipefail
root="$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."

case ${1:-} in
build)
  shift
  exec bash "${root}/hack/build-kubernetes.sh" "$@"
  ;;
start | stop)
  exec cargo run --quiet --locked --manifest-path "${root}/Cargo.toml" -p testenv --bin testenv \
    -- control-plane "$@"
  ;;
*)
  sed -n '5,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
  ;;
esac
