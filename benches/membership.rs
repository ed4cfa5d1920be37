//! The user path of issue 10: a check from an organization and a user key
//! (the memberships the engine stores), and loading memberships in bulk.
//!
//! Workload: [`common::OrgRoles`] with 10,000 organizations (100,020 roles
//! over 5,000 permissions) and 100,000 members, user `i` in organization
//! `i % 10,000` holding two of its roles.
//!
//! - `check/membership/100000`: `snapshot.user_principal(org, user)` and one
//!   permission check, rotating over [`ROTATION`] random members so the
//!   index is not all in cache. Target ≤ 60 ns.
//! - `load/memberships/100000`: one batch of 100,000 `SetMembership` changes
//!   applied to a fresh in-memory engine (the engine is built, and dropped,
//!   outside the timed region). Target ≤ 100 ms.
//!
//! ```text
//! cargo bench --bench membership -- --warm-up-time 1 --measurement-time 3
//! ```

// Benches are not library code: a broken fixture should stop the run loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::hint::black_box;

use criterion::{criterion_main, BatchSize, BenchmarkId, Criterion};
use rolegraph::{Change, ChangeMeta, Engine, Requirement};

/// Members stored.
const MEMBERS: usize = 100_000;

/// Organizations of the workload.
const ORGS: usize = 10_000;

/// Distinct members cycled through by the check.
const ROTATION: usize = 1_024;

/// Member `i`: organization `i % ORGS`, two of its roles.
fn member(i: usize) -> Change {
    Change::SetMembership {
        organization: common::org_id(i % ORGS),
        user: format!("user-{i}"),
        roles: vec![
            common::org_role_name(i % common::ROLES_PER_ORG),
            common::org_role_name((i + 3) % common::ROLES_PER_ORG),
        ],
        groups: None,
        creator: false,
    }
}

fn members() -> Vec<Change> {
    (0..MEMBERS).map(member).collect()
}

fn bench_check(c: &mut Criterion) {
    let workload = common::OrgRoles::new(ORGS);
    let engine = Engine::new(&workload.policy).expect("the workload compiles");
    engine
        .apply_batch(members(), ChangeMeta::default())
        .expect("valid memberships");
    let snapshot = engine.snapshot();
    assert_eq!(snapshot.memberships_len(), MEMBERS);
    let requirement =
        Requirement::permission(&snapshot, &common::permission_name(0)).expect("declared");
    let mut rng = common::SplitMix64::new(0x0075_7365_7273); // "users"
    let asks: Vec<(String, String)> = (0..ROTATION)
        .map(|_| {
            let i = rng.below(MEMBERS);
            (common::org_id(i % ORGS), format!("user-{i}"))
        })
        .collect();
    for (org, user) in &asks {
        assert_eq!(snapshot.user_principal(org, user).roles().len(), 2);
    }
    let mut group = c.benchmark_group("check/membership");
    group.bench_function(BenchmarkId::from_parameter(MEMBERS), |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % ROTATION;
            let (org, user) = black_box(&asks[i]);
            snapshot
                .user_principal(org, user)
                .satisfies(black_box(&requirement))
        });
    });
    group.finish();
}

fn bench_load(c: &mut Criterion) {
    let workload = common::OrgRoles::new(ORGS);
    let changes = members();
    let mut group = c.benchmark_group("load/memberships");
    group.sample_size(10);
    group.bench_function(BenchmarkId::from_parameter(MEMBERS), |b| {
        b.iter_batched(
            || {
                (
                    Engine::new(&workload.policy).expect("the workload compiles"),
                    changes.clone(),
                )
            },
            |(engine, changes)| {
                engine
                    .apply_batch(changes, ChangeMeta::default())
                    .expect("valid memberships");
                engine
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

// `criterion_group!` makes an undocumented `pub fn`: inside a private module
// it is not public API, so `missing_docs` leaves it alone.
mod group {
    criterion::criterion_group!(benches, super::bench_check, super::bench_load);
}
criterion_main!(group::benches);
