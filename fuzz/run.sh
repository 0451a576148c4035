#!/usr/bin/env bash
# Runs the gossip-core fuzz targets with nightly cargo-fuzz.
#
# Usage: fuzz/run.sh [TARGET|all] [SECONDS]
#   TARGET   handle_message, operations, sealed, or all (default: all, one after the other)
#   SECONDS  run time per target (default: 60)
#
# Extra libFuzzer flags can be passed in FUZZ_ARGS, e.g. FUZZ_ARGS="-jobs=2".
# Crashes land in fuzz/artifacts/<target>/; reproduce one with
#   cargo +nightly fuzz run <target> fuzz/artifacts/<target>/<file>
# and minimise it with
#   cargo +nightly fuzz tmin <target> fuzz/artifacts/<target>/<file>
set -euo pipefail

target="${1:-all}"
seconds="${2:-60}"

case "$seconds" in
  '' | *[!0-9]*)
    echo "run.sh: SECONDS must be a whole number, got '$seconds'" >&2
    exit 2
    ;;
esac

cd "$(dirname "$0")"

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "run.sh: a nightly toolchain is required (rustup toolchain install nightly)" >&2
  exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "run.sh: installing cargo-fuzz" >&2
  cargo install cargo-fuzz
fi

all_targets=(handle_message operations sealed)
if [ "$target" = all ]; then
  targets=("${all_targets[@]}")
else
  found=0
  for t in "${all_targets[@]}"; do
    if [ "$t" = "$target" ]; then found=1; fi
  done
  if [ "$found" = 0 ]; then
    echo "run.sh: unknown target '$target' (expected one of: ${all_targets[*]}, all)" >&2
    exit 2
  fi
  targets=("$target")
fi

for t in "${targets[@]}"; do
  echo "==> fuzzing $t for ${seconds}s" >&2
  # shellcheck disable=SC2086 # FUZZ_ARGS is deliberately word-split
  cargo +nightly fuzz run "$t" -- -max_total_time="$seconds" -print_final_stats=1 ${FUZZ_ARGS:-}
done
