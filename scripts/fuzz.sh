#!/usr/bin/env bash
# Runs every fuzz target under fuzz/ for SECONDS each (default 30; CI runs them this way), from
# the committed seed corpus, and prints one line per target: executions, seconds, and whether
# it found anything. New interesting inputs go to target/fuzz-corpus/<target>, crashes to
# fuzz/artifacts/<target>/ (and the run fails).
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]      e.g. scripts/fuzz.sh 600 resp
# cargo-fuzz needs nightly flags: RUSTC_BOOTSTRAP=1 lets the stable toolchain build them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SECONDS_EACH="${1:-30}"
shift || true
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
export RUSTC_BOOTSTRAP=1
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cd fuzz && cargo fuzz list)
fi
cd fuzz
# Optimised with debug assertions and AddressSanitizer: cargo-fuzz's defaults.
cargo fuzz build
failed=0
printf '| target | executions | seconds | result |\n|---|---:|---:|---|\n'
for t in "${targets[@]}"; do
  work="../target/fuzz-corpus/$t"
  mkdir -p "$work"
  log="../target/fuzz-corpus/$t.log"
  if cargo fuzz run "$t" "$work" "corpus/$t" -- -max_total_time="$SECONDS_EACH" -print_final_stats=1 \
       > "$log" 2>&1; then
    result="no finding"
  else
    result="FINDING (see fuzz/artifacts/$t, $log)"
    failed=1
  fi
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  printf '| %s | %s | %s | %s |\n' "$t" "${runs:-?}" "$SECONDS_EACH" "$result"
done
exit "$failed"
