//! Per-request cost: a check on a built principal, and a principal built
//! from a token's role names plus one check.
//!
//! Workload: `benches/common` (random forest of 100 / 10,000 / 100,000
//! roles, chains up to 16 roles deep, 1,000 permissions). Each iteration
//! takes the next of [`ROTATION`] distinct principals (or tokens of 3 role
//! names drawn at random from the whole policy), so that at 100,000 roles the
//! rows and the name index are not all in cache, as in a server answering
//! many users; the `_hot` groups repeat one principal (3 of the deepest
//! roles, checking a permission inherited from the root of a 16-role chain)
//! for comparison. Targets (DESIGN.md): `check/principal` ≤ 5 ns and flat
//! across sizes; `check/token3` ≤ 150 ns.
//!
//! `check/role_requirement/50000` checks a role requirement (the root of
//! the principal's deepest chain) with principals of one snapshot;
//! `check/role_requirement_across_swaps/50000` alternates principals of the
//! snapshots before and after a change, as requests in flight during a swap
//! do: the two must stay within a few nanoseconds of each other (each
//! compiled policy keeps the roles extending a name; the requirement keeps a
//! few of them).
//!
//! ```text
//! cargo bench --bench check -- --warm-up-time 1 --measurement-time 3
//! ```

// Benches are not library code: a broken fixture should stop the run loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::hint::black_box;

use common::Workload;
use criterion::{criterion_main, BenchmarkId, Criterion};
use rolegraph::{Change, ChangeMeta, Engine, Requirement, Snapshot};

/// Policy sizes, in roles.
const SIZES: [usize; 3] = [100, 10_000, 100_000];

/// Distinct principals and tokens cycled through by the rotating groups.
const ROTATION: usize = 1_024;

/// A compiled workload with the principal's role names and the requirement.
struct Fixture {
    roles: usize,
    snapshot: Snapshot,
    role_names: Vec<String>,
    requirement: Requirement,
    /// [`ROTATION`] tokens of 3 role names each, drawn at random.
    tokens: Vec<[String; 3]>,
}

fn fixture(roles: usize) -> Fixture {
    let workload = Workload::new(roles);
    let snapshot = workload.policy.compile().expect("the workload compiles");
    assert_eq!(snapshot.roles_len(), roles);
    assert!(snapshot.max_depth() <= common::MAX_DEPTH as usize);
    let requirement = Requirement::permission(&snapshot, &workload.checked_permission)
        .expect("the checked permission is declared");
    let role_names = workload.principal_role_names();
    let principal = snapshot.principal(None, &role_names);
    assert_eq!(principal.roles().len(), common::PRINCIPAL_ROLES);
    assert!(
        principal.satisfies(&requirement),
        "the workload's answer is allow"
    );
    let mut rng = common::SplitMix64::new(0x746f_6b65_6e73 ^ roles as u64); // "tokens"
    let tokens = (0..ROTATION)
        .map(|_| [0; 3].map(|_| common::role_name(rng.below(roles))))
        .collect();
    Fixture {
        roles,
        snapshot,
        role_names,
        requirement,
        tokens,
    }
}

fn bench_check(c: &mut Criterion) {
    // Compile each size once for both groups.
    let fixtures: Vec<Fixture> = SIZES.iter().map(|&n| fixture(n)).collect();

    let mut group = c.benchmark_group("check/principal");
    for f in &fixtures {
        let principals: Vec<_> = f
            .tokens
            .iter()
            .map(|t| f.snapshot.principal(None, t))
            .collect();
        group.bench_with_input(
            BenchmarkId::from_parameter(f.roles),
            &(&principals, &f.requirement),
            |b, &(principals, requirement)| {
                let mut i = 0;
                b.iter(|| {
                    i = (i + 1) % ROTATION;
                    black_box(&principals[i]).satisfies(black_box(requirement))
                });
            },
        );
    }
    group.finish();

    let mut group = c.benchmark_group("check/principal_hot");
    for f in &fixtures {
        let principal = f.snapshot.principal(None, &f.role_names);
        group.bench_with_input(
            BenchmarkId::from_parameter(f.roles),
            &(&principal, &f.requirement),
            |b, &(principal, requirement)| {
                b.iter(|| black_box(principal).satisfies(black_box(requirement)));
            },
        );
    }
    group.finish();

    let mut group = c.benchmark_group("check/token3");
    for f in &fixtures {
        group.bench_with_input(
            BenchmarkId::from_parameter(f.roles),
            &(&f.snapshot, &f.tokens, &f.requirement),
            |bencher, &(snapshot, tokens, requirement)| {
                let mut i = 0;
                // The principal is built, checked and dropped, as in a request.
                bencher.iter(|| {
                    i = (i + 1) % ROTATION;
                    let principal = snapshot.principal(None, black_box(&tokens[i]));
                    principal.satisfies(black_box(requirement))
                });
            },
        );
    }
    group.finish();

    let mut group = c.benchmark_group("check/token3_hot");
    for f in &fixtures {
        let [a, b, c] = [0, 1, 2].map(|i| f.role_names[i].as_str());
        group.bench_with_input(
            BenchmarkId::from_parameter(f.roles),
            &(&f.snapshot, &f.requirement),
            |bencher, &(snapshot, requirement)| {
                // The principal is built, checked and dropped, as in a request.
                bencher.iter(|| {
                    let principal = snapshot.principal(None, black_box([a, b, c]));
                    principal.satisfies(black_box(requirement))
                });
            },
        );
    }
    group.finish();
}

/// Roles of the role-requirement workload.
const SWAP_ROLES: usize = 50_000;

fn bench_role_requirement(c: &mut Criterion) {
    let workload = Workload::new(SWAP_ROLES);
    let mut root = workload.principal_roles[0];
    while let Some(up) = workload.parent[root] {
        root = up;
    }
    let engine = Engine::new(&workload.policy).expect("the workload compiles");
    let before = engine.snapshot();
    let required = Requirement::role(&before, &common::role_name(root)).expect("a role");
    // Any published change makes a new compiled policy.
    engine
        .apply(
            Change::GrantPermission {
                organization: None,
                role: common::role_name(SWAP_ROLES - 1),
                permission: common::permission_name(0),
            },
            ChangeMeta::default(),
        )
        .expect("a valid change");
    let after = engine.snapshot();
    let names = workload.principal_role_names();
    let principals = [
        before.principal(None, &names),
        after.principal(None, &names),
    ];
    for p in &principals {
        assert!(p.satisfies(&required), "the workload's answer is allow");
    }

    let mut group = c.benchmark_group("check/role_requirement");
    group.bench_function(BenchmarkId::from_parameter(SWAP_ROLES), |b| {
        b.iter(|| black_box(&principals[1]).satisfies(black_box(&required)));
    });
    group.finish();

    let mut group = c.benchmark_group("check/role_requirement_across_swaps");
    group.bench_function(BenchmarkId::from_parameter(SWAP_ROLES), |b| {
        let mut i = 0;
        b.iter(|| {
            i ^= 1;
            black_box(&principals[i]).satisfies(black_box(&required))
        });
    });
    group.finish();
}

/// Organizations of the multi-tenant workload (1,000,020 roles).
const ORG_ROLES_ORGS: usize = 100_000;

/// `check/token3/1000000`: the multi-tenant workload of issue 10
/// ([`common::OrgRoles`], 5,000 permissions: 79-word rows), a token of 3
/// organization roles of a rotating organization, built, checked and dropped.
/// The three rows are read in place: no heap allocation
/// (`tests/principal_alloc.rs` counts).
fn bench_token3_org_roles(c: &mut Criterion) {
    let workload = common::OrgRoles::new(ORG_ROLES_ORGS);
    let snapshot = workload.policy.compile().expect("the workload compiles");
    let requirement =
        Requirement::permission(&snapshot, &common::permission_name(0)).expect("declared");
    let mut rng = common::SplitMix64::new(0x6f72_6773); // "orgs"
    let tokens: Vec<(String, [String; 3])> = (0..ROTATION)
        .map(|i| {
            (
                common::org_id(rng.below(ORG_ROLES_ORGS)),
                common::OrgRoles::token_roles(i),
            )
        })
        .collect();
    let p = snapshot.principal(Some(&tokens[0].0), &tokens[0].1);
    assert_eq!(p.roles().len(), 3);
    assert_eq!(p.unknown_roles(), 0);
    let mut group = c.benchmark_group("check/token3");
    group.bench_function(
        BenchmarkId::from_parameter(snapshot.roles_len() / 1_000 * 1_000),
        |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % ROTATION;
                let (org, roles) = black_box(&tokens[i]);
                let principal = snapshot.principal(Some(org), roles);
                principal.satisfies(black_box(&requirement))
            });
        },
    );
    group.finish();
}

// `criterion_group!` makes an undocumented `pub fn`: inside a private module
// it is not public API, so `missing_docs` leaves it alone.
mod group {
    criterion::criterion_group!(
        benches,
        super::bench_check,
        super::bench_role_requirement,
        super::bench_token3_org_roles
    );
}
criterion_main!(group::benches);
