#!/usr/bin/env bash
# hack/bench.sh - zoom-operator's benchmarks (docs/benchmarks.md). Builds the release binaries,
# then runs one benchmark, which starts its own control plane (kube-apiserver 1.20.2 with an
# audit log), zoom-sim and operator, and prints its figures with N, the machine and the command.
#
#   bash hack/bench.sh startup --n 1000
#   bash hack/bench.sh memory --n 5000
#   bash hack/bench.sh restart --n 5000
#   bash hack/bench.sh refresh --n 1000 --seconds 600
#   bash hack/bench.sh webhooks --seconds 10
#   bash hack/bench.sh all --small      # each once at a small N, as CI does (asserts no figure)
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."

cargo build --release --locked -p zoom-operator -p zoom-sim -p bench --bin zoom-operator --bin zoom-sim --bin bench >&2

if [[ ${1:-} == all ]]; then
  [[ ${2:-} == --small ]] || { echo "usage: hack/bench.sh all --small" >&2; exit 2; }
  ./target/release/bench startup --n 50
  ./target/release/bench memory --n 50
  ./target/release/bench restart --n 50
  ./target/release/bench refresh --n 20 --seconds 40
  ./target/release/bench webhooks --seconds 2
  exit 0
fi
exec ./target/release/bench "$@"
