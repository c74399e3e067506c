#!/usr/bin/env bash
# Runs every cargo-fuzz target for MINUTES minutes each (default 10) and
# prints one summary line per target: runs, corpus size and whether it
# crashed. Crashing inputs stay in fuzz/artifacts/TARGET/. Needs cargo-fuzz
# (installed here if missing); the stable toolchain runs it through
# RUSTC_BOOTSTRAP. `SECONDS_EACH=N` overrides the time in seconds (CI uses a
# few seconds per target to catch a broken harness).
set -uo pipefail
cd "$(dirname "$0")/../fuzz"
minutes="${1:-10}"
seconds="${SECONDS_EACH:-$((minutes * 60))}"
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
export RUSTC_BOOTSTRAP=1
targets="${TARGETS:-$(cargo fuzz list)}"
RUSTC_BOOTSTRAP=1 cargo fuzz build || exit 1
failed=0
summary=()
for target in $targets; do
  log=$(mktemp)
  mkdir -p "corpus/$target"
  if cargo fuzz run "$target" "corpus/$target" -- -max_total_time="$seconds" \
      -print_final_stats=1 >"$log" 2>&1; then
    verdict="ok"
  else
    verdict="CRASH (see fuzz/artifacts/$target)"
    failed=1
    tail -40 "$log" >&2
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  corpus=$(find "corpus/$target" -type f | wc -l)
  summary+=("$(printf '%-16s %6ss %12s runs %6s corpus  %s' "$target" "$seconds" "$runs" "$corpus" "$verdict")")
  rm -f "$log"
done
printf '%s\n' "${summary[@]}"
exit $failed
