#!/usr/bin/env bash
# hack/run-tests.sh - build every test binary of the workspace once, then run them as a pool of
# concurrent jobs, longest first. Each integration test binary starts its own control plane (and
# the e2e binary its own node cluster), so binaries share nothing and can run side by side; the
# long suites (soak, faults, delivery, e2e) mostly wait on token lifetimes, not on the CPU.
#
# Output: each binary's log is printed whole when it finishes (never interleaved), followed by
# one closing line for the whole workspace: `tests: N passed, M failed`.
#
# Environment: TEST_JOBS (binaries at once, default 3), TEST_THREADS (tests at once inside one
# binary, default 4), TEST_ONLY (a regex; run only binaries whose name matches).
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."

jobs_max="${TEST_JOBS:-3}"
threads="${TEST_THREADS:-4}"
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

# Build once; cargo prints one JSON line per artifact: keep the test executables and the
# package directory each must run in (cargo runs tests from their package root).
cargo test --workspace --locked --no-run --message-format=json-render-diagnostics \
  | sed -n 's/.*"manifest_path":"\([^"]*\)".*"profile":{[^}]*"test":true[^}]*}.*"executable":"\([^"]*\)".*/\1 \2/p' \
    >"$logs/binaries"

# Longest first, so the slow suites start at once and the short ones fill the gaps.
priority() {
  case "$(basename "$1")" in
    e2e-*) echo 0 ;; soak-*) echo 1 ;; faults-*) echo 2 ;; delivery-*) echo 3 ;;
    chart-*) echo 4 ;; oauth-*) echo 5 ;; events-*) echo 6 ;; *) echo 9 ;;
  esac
}
while read -r manifest exe; do
  printf '%s %s %s\n' "$(priority "$exe")" "$(dirname "$manifest")" "$exe"
done <"$logs/binaries" | sort -n -k1,1 >"$logs/queue"

if [[ -n ${TEST_ONLY:-} ]]; then
  grep -E "${TEST_ONLY}" "$logs/queue" >"$logs/queue.only" || true
  mv "$logs/queue.only" "$logs/queue"
fi
total=$(wc -l <"$logs/queue")
[[ $total -gt 0 ]] || { echo "no test binaries found" >&2; exit 1; }
printf '==> %d test binaries, %d at a time\n' "$total" "$jobs_max" >&2

run_one() { # DIR EXE LOG
  local started=$SECONDS rc=0
  (cd "$1" && CARGO_MANIFEST_DIR="$1" "$2" --test-threads="$threads") >"$3" 2>&1 </dev/null || rc=$?
  printf '%s\n' "$rc" >"$3.rc"
  printf '%s\n' "$((SECONDS - started))" >"$3.secs"
}

# A pool of at most $jobs_max background runs; print each log as its run ends.
declare -A running=()
printed=0
print_done() {
  local pid
  for pid in "${!running[@]}"; do
    kill -0 "$pid" 2>/dev/null && continue
    wait "$pid" || true
    local log=${running[$pid]}
    unset "running[$pid]"
    printf '\n==> %s (exit %s, %ss)\n' "$(basename "$log" .log)" "$(cat "$log.rc")" "$(cat "$log.secs")"
    cat "$log"
    printed=$((printed + 1))
  done
}
while read -r _ dir exe; do
  while ((${#running[@]} >= jobs_max)); do
    sleep 1
    print_done
  done
  log="$logs/$(basename "$exe").log"
  run_one "$dir" "$exe" "$log" &
  running[$!]=$log
done <"$logs/queue"
while ((${#running[@]} > 0)); do
  sleep 1
  print_done
done

status=0
for rc in "$logs"/*.rc; do
  [[ "$(cat "$rc")" == 0 ]] || status=1
done
printf '\n==> durations\n'
for secs in "$logs"/*.secs; do
  printf '  %5ss  %s\n' "$(cat "$secs")" "$(basename "$secs" .log.secs)"
done | sort -rn
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$logs"/*.log
exit "$status"
