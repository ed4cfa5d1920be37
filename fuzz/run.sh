#!/usr/bin/env bash
# Runs rolegraph's fuzz targets for a bounded time each and fails on a crash,
# a panic, a hang (an input taking longer than FUZZ_TIMEOUT seconds) or a
# leak. Prints how many executions each target ran clean.
#
#   fuzz/run.sh [SECONDS] [TARGET...]
#
# SECONDS per target: the first argument, else $FUZZ_SECONDS, else 30.
# TARGETs: default every fuzz_targets/*.rs. cargo-fuzz is installed when
# missing; it needs nightly features, enabled on stable by RUSTC_BOOTSTRAP.
# Each run starts from fuzz/corpus/<target> (the committed seed-* files plus
# whatever earlier local runs kept there); a crashing input is written to
# fuzz/artifacts/<target>/ and reproduced with
# `RUSTC_BOOTSTRAP=1 cargo fuzz run <target> fuzz/artifacts/<target>/<file>`.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${1:-${FUZZ_SECONDS:-30}}"
if [[ $# -gt 0 ]]; then shift; fi
case "$seconds" in
    '' | *[!0-9]*) echo "fuzz/run.sh: SECONDS must be a whole number, got '$seconds'" >&2; exit 2 ;;
esac
timeout_per_input="${FUZZ_TIMEOUT:-20}"
# Structured inputs need room: let libFuzzer use long inputs from the start
# rather than growing them slowly, which a short run never gets past.
max_len="${FUZZ_MAX_LEN:-1024}"

targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
    for f in fuzz_targets/*.rs; do
        targets+=("$(basename "$f" .rs)")
    done
fi

export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version > /dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install --locked cargo-fuzz
fi

echo "== building ${targets[*]}"
for target in "${targets[@]}"; do
    cargo fuzz build "$target"
done

log_dir="$(mktemp -d)"
trap 'rm -rf "$log_dir"' EXIT
for target in "${targets[@]}"; do
    echo "== fuzzing $target for ${seconds}s"
    mkdir -p "corpus/$target"
    log="$log_dir/$target.log"
    if ! cargo fuzz run "$target" -- \
        -max_total_time="$seconds" -timeout="$timeout_per_input" \
        -max_len="$max_len" -len_control=0 -print_final_stats=1 \
        > "$log" 2>&1; then
        tail -n 60 "$log" >&2
        echo "== FAILED: $target (input saved under fuzz/artifacts/$target/)" >&2
        exit 1
    fi
    runs="$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | tail -n 1)"
    echo "== $target: clean, ${runs:-no summary} (corpus: $(find "corpus/$target" -type f | wc -l) inputs)"
done
