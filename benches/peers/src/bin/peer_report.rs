//! Renders the peer benchmarks' results: the Markdown table of medians and
//! ratios (stdout) and the latency plot (SVG), from criterion's output.
//!
//! ```text
//! cargo run -p rolegraph-peers --bin peer_report -- [CRITERION_DIR] [SVG_OUT]
//! ```
//!
//! Defaults: `target/criterion` (or `$CARGO_TARGET_DIR/criterion`) and
//! `benches/peers/plot.svg`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().map_or_else(
        || {
            let target = std::env::var_os("CARGO_TARGET_DIR").unwrap_or_else(|| "target".into());
            PathBuf::from(target).join("criterion")
        },
        PathBuf::from,
    );
    let out = args
        .next()
        .map_or_else(|| PathBuf::from("benches/peers/plot.svg"), PathBuf::from);
    let medians = rolegraph_peers::report::read(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    assert!(
        !medians.is_empty(),
        "no peers/* results under {}",
        dir.display()
    );
    print!("{}", rolegraph_peers::report::table(&medians));
    std::fs::write(&out, rolegraph_peers::report::svg(&medians))
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
    eprintln!("wrote {}", out.display());
}
