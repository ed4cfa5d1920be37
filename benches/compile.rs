//! Compile cost: an already-parsed [`rolegraph::Policy`] to a snapshot.
//!
//! Workload: `benches/common` (random forest of 1,000 / 100,000 roles, chains
//! up to 16 roles deep, 1,000 permissions, 1–3 direct grants per role).
//! Target (DESIGN.md): 100,000 roles × 1,000 permissions in ≤ 1 s. The
//! timed region is the compile alone: each snapshot is dropped outside it.
//!
//! ```text
//! cargo bench --bench compile -- --warm-up-time 1 --measurement-time 3
//! ```

// Benches are not library code: a broken fixture should stop the run loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::hint::black_box;

use common::Workload;
use criterion::{criterion_main, BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput};

/// Policy sizes, in roles.
const SIZES: [usize; 2] = [1_000, 100_000];

fn bench_compile(c: &mut Criterion) {
    let mut group = c.benchmark_group("compile/roles");
    for roles in SIZES {
        let workload = Workload::new(roles);
        let snapshot = workload.policy.compile().expect("the workload compiles");
        assert_eq!(snapshot.roles_len(), roles);
        drop(snapshot);

        if roles >= 100_000 {
            // Tens of milliseconds per compile: ten samples of a few
            // iterations each fit the default measurement time.
            group.sample_size(10).sampling_mode(SamplingMode::Flat);
        }
        group.throughput(Throughput::Elements(roles as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(roles),
            &workload.policy,
            // One compile per batch, its snapshot dropped after the clock
            // stops: freeing 12.8 MB of rows is not part of compiling.
            |b, policy| {
                b.iter_batched(
                    || (),
                    |()| black_box(policy).compile(),
                    BatchSize::PerIteration,
                );
            },
        );
    }
    group.finish();
}

// `criterion_group!` makes an undocumented `pub fn`: inside a private module
// it is not public API, so `missing_docs` leaves it alone.
mod group {
    criterion::criterion_group!(benches, super::bench_compile);
}
criterion_main!(group::benches);
