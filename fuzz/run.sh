#!/usr/bin/env bash
# Builds every fuzz target (cargo-fuzz, libFuzzer) and runs each in turn for N seconds
# (default 60) from its seed corpus in fuzz/corpus/<target>; exits non-zero on the
# first crash, leaving the input in fuzz/artifacts/<target>/.
#
# Usage: fuzz/run.sh [seconds] [target...]     (all targets when none is named)
#
# One target at a time, one process each: the machines this runs on have two cores.
# New inputs go to a scratch directory, so the committed corpus changes only on
# purpose (see fuzz/README.md to minimise and add them). Only a stable toolchain is
# needed: RUSTC_BOOTSTRAP lets cargo-fuzz pass its -Z flags. No sanitizer: the code
# under test is safe Rust, whose bounds and overflow checks (debug assertions are on)
# already turn memory errors into panics, and AddressSanitizer would halve the speed.
set -euo pipefail
cd "$(dirname "$0")"

seconds=${1:-60}
shift || true
export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

cargo fuzz build --sanitizer none
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
export TMPDIR="$scratch" # the config target writes its files there
for t in "${targets[@]}"; do
  echo "fuzz/run.sh: $t for ${seconds}s" >&2
  mkdir -p "$scratch/$t" "corpus/$t" "artifacts/$t"
  log="$scratch/$t.log"
  if ! cargo fuzz run --sanitizer none "$t" "$scratch/$t" "corpus/$t" -- \
    -max_total_time="$seconds" -timeout=10 -print_final_stats=1 \
    -artifact_prefix="artifacts/$t/" >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "fuzz/run.sh: $t failed; the input is in fuzz/artifacts/$t/" >&2
    exit 1
  fi
  grep -E '^(#[0-9]+[[:space:]]+DONE|Done|stat::)' "$log" || tail -n 5 "$log"
done
echo "fuzz/run.sh: ${#targets[@]} targets ran ${seconds}s each without a crash" >&2
