//! Compile cost: an already-parsed [`rolegraph::Policy`] to a snapshot.
//!
//! Workload: `benches/common` (random forest of 1,000 / 100,000 roles, chains
//! up to 16 roles deep, 1,000 permissions, 1–3 direct grants per role).
//! Target (DESIGN.md): 100,000 roles × 1,000 permissions in ≤ 1 s. The
//! timed region is the compile alone: each snapshot is dropped outside it.
//!
//! `compile/org_roles/1000000` compiles the multi-tenant workload of issue 10
//! (`OrgRoles`: 100,000 organizations × 10 roles extending one of 20
//! environment roles, 5,000 permissions; 1,000,020 roles, 20 distinct rows).
//! Target (issue 10): ≤ 1 s.
//!
//! `build/policy_builder/100000` times [`rolegraph::PolicyBuilder`] building
//! 100,000 roles (each granting one permission and extending an earlier role)
//! and 100,000 permissions: linear, where the `Policy` setters are quadratic.
//!
//! `build/role_grants/5000` times one builder role given 5,000 distinct
//! grants and 5,000 distinct bases (issue 10's linear builders: a role's own
//! lists are kept unique by a hash index, where a scan per call made this
//! 25 million string comparisons).
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

/// `compile/org_roles/1000000`: see the module documentation.
fn bench_compile_org_roles(c: &mut Criterion) {
    let w = common::OrgRoles::new(100_000);
    let snapshot = w.policy.compile().expect("the workload compiles");
    assert_eq!(snapshot.roles_len(), 1_000_020);
    assert_eq!(snapshot.distinct_rows(), common::ORG_ENV_ROLES);
    drop(snapshot);
    let mut group = c.benchmark_group("compile/org_roles");
    group.sample_size(10).sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(1_000_020));
    group.bench_with_input(
        BenchmarkId::from_parameter(1_000_000),
        &w.policy,
        |b, policy| {
            b.iter_batched(
                || (),
                |()| black_box(policy).compile(),
                BatchSize::PerIteration,
            );
        },
    );
    group.finish();
}

/// `n` roles and `n` permissions through [`rolegraph::PolicyBuilder`], names
/// made beforehand so that the timed region is the builder alone.
fn bench_policy_builder(c: &mut Criterion) {
    const N: usize = 100_000;
    // Role `i` extends role `i / 2`; the root extends nothing.
    let names: Vec<(String, String, Option<String>)> = (0..N)
        .map(|i| {
            let base = (i > 0).then(|| common::role_name(i / 2));
            (common::permission_name(i), common::role_name(i), base)
        })
        .collect();
    let mut group = c.benchmark_group("build/policy_builder");
    group.sample_size(10).sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(2 * N as u64));
    group.bench_function(BenchmarkId::from_parameter(N), |b| {
        b.iter_batched(
            || names.clone(),
            |names| {
                let mut builder = rolegraph::Policy::builder();
                for (permission, role, base) in names {
                    builder.permission(permission.clone());
                    let role = builder.role(role).grant(permission);
                    if let Some(base) = base {
                        role.extends(base);
                    }
                }
                builder.build()
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

/// `build/role_grants/5000`: see the module documentation.
fn bench_role_grants(c: &mut Criterion) {
    const N: usize = 5_000;
    let names: Vec<(String, String)> = (0..N)
        .map(|i| (common::permission_name(i), common::role_name(i)))
        .collect();
    let mut group = c.benchmark_group("build/role_grants");
    group.sample_size(20).sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(2 * N as u64));
    group.bench_function(BenchmarkId::from_parameter(N), |b| {
        b.iter_batched(
            || names.clone(),
            |names| {
                let mut builder = rolegraph::Policy::builder();
                let role = builder.role("wide");
                for (permission, base) in names {
                    role.grant(permission).extends(base);
                }
                assert_eq!(role.permissions.len(), N);
                builder
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

// `criterion_group!` makes an undocumented `pub fn`: inside a private module
// it is not public API, so `missing_docs` leaves it alone.
mod group {
    criterion::criterion_group!(
        benches,
        super::bench_compile,
        super::bench_compile_org_roles,
        super::bench_policy_builder,
        super::bench_role_grants
    );
}
criterion_main!(group::benches);
