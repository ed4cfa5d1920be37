//! Peer benchmarks: rolegraph against casbin 2.20, Cedar 4.14 (two
//! encodings) and a naive baseline, built from the same workload data and
//! asked the same questions. See `BENCHMARKS.md` at the repository root.
//!
//! - [`workload`]: the workloads (W1 … W6, U1) in engine-neutral terms, with
//!   a reference answer for every query.
//! - [`engines`]: one adapter per engine, behind the [`engines::Peer`] trait.
//! - [`agree`]: before anything is timed, every engine must give the
//!   reference answer to every query of the workload.
//! - [`report`]: the table and plot of BENCHMARKS.md, from criterion's output
//!   (`peer_report`); `peer_memory` measures each engine's heap.

// A benchmark harness, not library code: a broken fixture or an engine
// error should stop the run loudly, so `unwrap` is the right tool here (the
// workspace's library lints do not apply to this package, but say so anyway).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "../../common/mod.rs"]
mod common;

pub mod engines;
pub mod report;
pub mod workload;

use engines::{Config, Peer};
use workload::{Query, Spec};

/// Asserts that engine `P`, built from `spec`, answers every query as the
/// reference does; returns the engine for timing.
///
/// # Panics
///
/// On the first disagreement, naming the engine, the query and both answers.
pub fn agree<P: Peer>(spec: &Spec, config: Config, queries: &[Query]) -> P {
    let engine = P::build(spec, config);
    for q in queries {
        let expected = spec.decide(q);
        let got = engine.decide(&engine.request(spec, q));
        assert_eq!(
            got,
            expected,
            "{} disagrees with the reference on {q:?}",
            P::NAME
        );
    }
    engine
}
