#!/usr/bin/env bash
# Regenerates every number in BENCHMARKS.md, and benches/peers/plot.svg, at
# the commit checked out, in one command:
#
#   benches/regenerate.sh
#
# 1. builds every bench (nothing is timed while something compiles; the
#    memory reports and the renderer are built after the timed runs);
# 2. runs every criterion bench BENCHMARKS.md quotes, each with
#    `--warm-up-time $BENCH_WARM_UP --measurement-time $BENCH_MEASUREMENT`
#    (default 1 s and 2 s, to fit a loaded 2-core machine in ~30 minutes):
#    root `check`, `compile`, `update`, `durability`, `token`, `http`,
#    `webhook` (all features), peers `peers` and `http`; results go to a
#    fresh criterion directory (`$CRITERION_HOME`, default
#    target/regenerate/criterion), so no table can quote an older run;
# 3. runs `examples/memory.rs` (allocator count, 100,000 roles) and
#    `peer_memory` (10,000 roles, every engine);
# 4. rewrites the blocks between `<!-- generated:... -->` and
#    `<!-- /generated -->` of BENCHMARKS.md with `peer_report --markdown`
#    (criterion medians from `new/estimates.json`), stamped with the commit
#    (`-dirty` when tracked files differ from it), the date, the load
#    average before and after every bench, and the machine. The prose
#    outside the blocks is never touched: re-read it against the new numbers.
#
# BENCH_ONLY="check token" runs a subset (the other blocks then fail to
# render, and BENCHMARKS.md is left as it was). Every step's output is kept
# in target/regenerate/logs/.
set -euo pipefail
cd "$(dirname "$0")/.."

warm="${BENCH_WARM_UP:-1}"
measure="${BENCH_MEASUREMENT:-2}"
out="$PWD/target/regenerate"
export CRITERION_HOME="${CRITERION_HOME:-$out/criterion}"
root_benches=(check compile update membership durability token http webhook)
peer_benches=(peers http)
only=" ${BENCH_ONLY:-} "
wanted() { [[ "$only" == "  " || "$only" == *" $1 "* ]]; }

rm -rf "$CRITERION_HOME" "$out/logs"
mkdir -p "$CRITERION_HOME" "$out/logs"
load() { cut -d' ' -f1-3 /proc/loadavg; }

commit="$(git rev-parse --short HEAD)"
if [[ -n "$(git status --porcelain --untracked-files=no)" ]]; then
    commit="$commit-dirty"
fi
started="$(date -u '+%Y-%m-%d %H:%M UTC')"
load_start="$(load)"
t0=$SECONDS

echo "== building (load $(load))"
cargo bench --all-features --no-run > "$out/logs/build-root.log" 2>&1
cargo bench -p rolegraph-peers --no-run > "$out/logs/build-peers.log" 2>&1

loads="$out/loads.md"
{
    echo "| step | load average before | after | wall time |"
    echo "|---|---|---|---:|"
} > "$loads"
step() {
    local name="$1"
    shift
    local before start
    before="$(load)"
    start=$SECONDS
    echo "== $name (load $before)"
    "$@" > "$out/logs/$name.out" 2> "$out/logs/$name.log" || {
        tail -n 40 "$out/logs/$name.out" "$out/logs/$name.log" >&2
        echo "== FAILED: $name" >&2
        exit 1
    }
    echo "| $name | $before | $(load) | $((SECONDS - start)) s |" >> "$loads"
}

for b in "${root_benches[@]}"; do
    wanted "$b" || continue
    step "bench-$b" cargo bench --all-features --bench "$b" -- \
        --warm-up-time "$warm" --measurement-time "$measure"
done
for b in "${peer_benches[@]}"; do
    wanted "peers-$b" || continue
    step "bench-peers-$b" cargo bench -p rolegraph-peers --bench "$b" -- \
        --warm-up-time "$warm" --measurement-time "$measure"
done
load_end="$(load)"

# The memory reports and the renderer, built after the timed runs. The peer
# tools are built through `cargo test --release --no-run`, which unifies
# features with the benches' dev-dependencies and so reuses their build
# (a plain `cargo build -p rolegraph-peers` rebuilds casbin and Cedar).
echo "== building the memory reports and peer_report"
cargo build --release --example memory > "$out/logs/build-memory.log" 2>&1
cargo test --release -p rolegraph-peers --no-run > "$out/logs/build-peer-tools.log" 2>&1
if wanted memory; then
    step memory "${CARGO_TARGET_DIR:-target}/release/examples/memory"
    step peer_memory "${CARGO_TARGET_DIR:-target}/release/peer_memory"
fi

cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
mem="$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
stamp="$out/stamp.md"
{
    echo "**Run.** rolegraph at commit \`$commit\`, started $started, $((SECONDS - t0)) s in all"
    echo "(builds included), by \`benches/regenerate.sh\` with \`--warm-up-time $warm"
    echo "--measurement-time $measure\`. Load average (1, 5, 15 min) $load_start at the"
    echo "start, $load_end at the end. **Machine.** $(nproc) CPUs ($cpu), $mem RAM,"
    echo "Linux $(uname -r), $(rustc --version | cut -d' ' -f1-2), criterion 0.7, release profile."
    echo
    cat "$loads"
} > "$stamp"

texts=(--text stamp="$stamp")
if wanted memory; then
    { echo '```text'; cat "$out/logs/memory.out"; echo '```'; } > "$out/memory.md"
    cp "$out/logs/peer_memory.out" "$out/peer_memory.md"
    texts+=(--text memory="$out/memory.md" --text peer_memory="$out/peer_memory.md")
fi

echo "== rendering BENCHMARKS.md and benches/peers/plot.svg"
"${CARGO_TARGET_DIR:-target}/release/peer_report" --markdown BENCHMARKS.md \
    --criterion "$CRITERION_HOME" --svg benches/peers/plot.svg "${texts[@]}"
echo "== done in $((SECONDS - t0)) s; review the prose of BENCHMARKS.md against the new tables"
