#!/usr/bin/env bash
# Runs every fuzz target briefly on its seed corpus and fails on any crash (CI calls this). New inputs the
# run finds go to a scratch directory, so the repository's corpus stays as committed.
#
#   fuzz/run-ci.sh                       # each target for GFJ_FUZZ_SECS seconds (default 10) or GFJ_FUZZ_RUNS runs
#   cargo +nightly fuzz run issue_keys   # a long local run (its new inputs stay out of git)
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=(webhook_parse jwt_verify lifecycle_body issue_keys url_allow_list)
SECS=${GFJ_FUZZ_SECS:-10}
RUNS=${GFJ_FUZZ_RUNS:-200000}

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

cargo +nightly fuzz build --fuzz-dir fuzz
for target in "${TARGETS[@]}"; do
    mkdir -p "$scratch/$target"
    echo "== fuzz $target (${SECS}s or ${RUNS} runs)"
    cargo +nightly fuzz run --fuzz-dir fuzz "$target" "$scratch/$target" "fuzz/corpus/$target" -- \
        -max_total_time="$SECS" -runs="$RUNS" -max_len=65536 -print_final_stats=1
done
echo "all fuzz targets ran without a crash"
