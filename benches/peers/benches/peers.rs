//! rolegraph against casbin 2.20 (`Enforcer`, `CachedEnforcer`), Cedar 4.14
//! (one policy per role; one flattened policy) and a naive baseline, in one
//! process, on the same workloads, after asserting that every engine gives
//! the reference answer to every query (see `rolegraph_peers::agree`).
//!
//! Groups `peers/<workload>`, ids `<engine>/<size>`. Every timed check goes
//! from the request's names (a user, or a token's role names) to a decision:
//! rolegraph loads the engine's snapshot, builds the principal and tests the
//! route's requirement (resolved once at start-up, as a route declares it).
//!
//! ```text
//! cargo bench -p rolegraph-peers --bench peers -- --warm-up-time 1 --measurement-time 2
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::hint::black_box;

use criterion::measurement::WallTime;
use criterion::{criterion_main, BenchmarkGroup, BenchmarkId, Criterion};
use rolegraph_peers::engines::{
    Casbin, CasbinCached, CedarFlat, CedarPerRole, Config, Naive, Peer, Rolegraph, RolegraphUser,
};
use rolegraph_peers::workload::{self, Workload};

/// Slow engines get criterion's smallest sample: a casbin check at 10,000
/// roles walks every policy line, milliseconds each.
const SMALL_SAMPLE: usize = 10;

/// Times `P` on every timed query of `w`, after checking that it agrees.
fn checks<P: Peer>(c: &mut Criterion, w: &Workload, size: usize, slow: bool) {
    let queries = w.all_queries();
    let config = Config::for_queries(&w.spec, &queries);
    let engine = rolegraph_peers::agree::<P>(&w.spec, config, &queries);
    for (label, query) in &w.timed {
        let mut group = c.benchmark_group(format!("peers/{label}"));
        if slow {
            group.sample_size(SMALL_SAMPLE);
        }
        let request = engine.request(&w.spec, query);
        let expected = w.spec.decide(query);
        assert_eq!(engine.decide(&request), expected);
        group.bench_function(BenchmarkId::new(P::NAME, size), |b| {
            b.iter(|| engine.decide(black_box(&request)));
        });
        group.finish();
    }
}

/// Every engine on one workload. `slow` picks which are sampled less.
fn all_checks(c: &mut Criterion, w: &Workload, size: usize, big: bool) {
    checks::<Rolegraph>(c, w, size, false);
    checks::<Casbin>(c, w, size, big);
    checks::<CasbinCached>(c, w, size, false);
    checks::<CedarPerRole>(c, w, size, big);
    checks::<CedarFlat>(c, w, size, false);
    checks::<Naive>(c, w, size, false);
}

fn bench_checks(c: &mut Criterion) {
    for r in [100, 1_000, 10_000] {
        let w = workload::w1(r);
        // W1 asks casbin and Cedar about a user they store; rolegraph is
        // timed both ways: from the user's token, and resolving the user
        // through its stored memberships, as those peers do.
        checks::<RolegraphUser>(c, &w, r, false);
        all_checks(c, &w, r, r >= 1_000);
    }
    for d in [1, 4, 16, 64] {
        all_checks(c, &workload::w2(d), d, false);
    }
    all_checks(c, &workload::w3(), workload::DIAMOND_ROLES, true);
    for k in [1, 3, 10] {
        all_checks(c, &workload::w6(k), k, true);
    }
}

/// U1: the change applied, then the check that must see it; the change
/// alternates between two states so that every iteration is a real change.
fn update<P: Peer>(group: &mut BenchmarkGroup<'_, WallTime>, r: usize) {
    let (w, change) = workload::u1(r);
    let queries = w.all_queries();
    let config = Config::for_queries(&w.spec, &queries);
    let mut engine = rolegraph_peers::agree::<P>(&w.spec, config, &queries);
    let request = engine.request(&w.spec, &change.query);
    let mut state = false;
    let mut wrong = 0usize;
    group.bench_function(BenchmarkId::new(P::NAME, r), |b| {
        b.iter(|| {
            state = !state;
            engine.apply(&w.spec, &change, state);
            let seen = engine.decide(black_box(&request));
            wrong += usize::from(seen != state);
            seen
        });
    });
    assert_eq!(wrong, 0, "{} did not show its own change", P::NAME);
}

fn bench_updates(c: &mut Criterion) {
    for r in [1_000, 10_000] {
        let mut group = c.benchmark_group("peers/u1_update");
        group.sample_size(SMALL_SAMPLE);
        update::<Rolegraph>(&mut group, r);
        update::<Casbin>(&mut group, r);
        update::<CasbinCached>(&mut group, r);
        update::<CedarPerRole>(&mut group, r);
        update::<CedarFlat>(&mut group, r);
        update::<Naive>(&mut group, r);
        group.finish();
    }
}

/// From the workload's data to a ready engine: W1's 10,000 roles and their
/// grants (no users, so that every engine is handed the same data).
fn build<P: Peer>(group: &mut BenchmarkGroup<'_, WallTime>, w: &Workload, r: usize) {
    let queries = w.all_queries();
    let config = Config::for_queries(&w.spec, &queries);
    drop(rolegraph_peers::agree::<P>(&w.spec, config, &queries));
    group.bench_function(BenchmarkId::new(P::NAME, r), |b| {
        // The engine is dropped outside the timed region.
        b.iter_with_large_drop(|| P::build(black_box(&w.spec), config));
    });
}

fn bench_build(c: &mut Criterion) {
    let r = 10_000;
    let mut w = workload::w1(r);
    w.spec.users.clear();
    w.timed.clear();
    w.extra
        .retain(|q| matches!(q.subject, workload::Subject::Token(_)));
    let mut group = c.benchmark_group("peers/build");
    group.sample_size(SMALL_SAMPLE);
    build::<Rolegraph>(&mut group, &w, r);
    build::<Casbin>(&mut group, &w, r);
    build::<CasbinCached>(&mut group, &w, r);
    build::<CedarPerRole>(&mut group, &w, r);
    build::<CedarFlat>(&mut group, &w, r);
    build::<Naive>(&mut group, &w, r);
    group.finish();
}

// `criterion_group!` makes an undocumented `pub fn`: keep it in a private module.
mod group {
    criterion::criterion_group!(
        benches,
        super::bench_checks,
        super::bench_updates,
        super::bench_build
    );
}
criterion_main!(group::benches);
