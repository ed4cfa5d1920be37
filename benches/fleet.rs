//! A fleet over Redis Streams (issue 11), against a real `redis-server` on
//! loopback (AOF on; `appendfsync` from `ROLEGRAPH_BENCH_FSYNC`, default
//! `always`), every engine holding the 10,000-role workload policy.
//!
//! - `fleet/converge`: one membership change applied on instance A, until
//!   B's snapshot shows it (`wait_for_revision`). Before the criterion run,
//!   1,000 changes are timed one by one and p50/p99/max printed.
//! - `fleet/append/{1,3}_writers`: accepted batches through the log with
//!   one and with three instances writing at once (each its own engine; a
//!   lost compare-and-append is caught up and retried). Time per accepted
//!   batch: batches per second is its inverse.
//! - `fleet/full_reload/10000`: what a casbin-style watcher does on every
//!   change: compile the whole 10,000-role policy again. The ratio to
//!   `fleet/converge` is printed.
//!
//! ```text
//! cargo bench --features redis --bench fleet -- --warm-up-time 1 --measurement-time 3
//! ```

// Benches are not library code: a broken fixture should stop the run loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
#[path = "../tests/fleet_common/mod.rs"]
mod fleet_common;

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{role_name, Workload};
use criterion::{criterion_main, Criterion};
use fleet_common::Redis;
use rolegraph::fleet::FleetOptions;
use rolegraph::{Change, ChangeError, ChangeMeta, Engine};

const ROLES: usize = 10_000;

fn redis() -> Redis {
    match std::env::var("ROLEGRAPH_BENCH_FSYNC").as_deref() {
        Ok("everysec") => Redis::start_with_fsync("everysec"),
        _ => Redis::start(),
    }
}

fn join(engine: &Engine, redis: &Redis, key: &str, name: &str) {
    engine
        .join_fleet(
            FleetOptions::new(redis.url())
                .with_key(key)
                .with_instance(name)
                .with_checkpoint_every(10_000),
        )
        .unwrap();
}

/// Membership change `k`: a distinct user each time, so every batch
/// changes something.
fn change(k: u64) -> Change {
    Change::SetMembership {
        organization: "org_bench".into(),
        user: format!("user_{k}"),
        roles: vec![role_name((k % 100) as usize)],
        groups: None,
        creator: false,
    }
}

fn policy() -> rolegraph::Policy {
    let mut policy = Workload::new(ROLES).policy;
    policy.organization("org_bench");
    policy
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

fn bench_converge(c: &mut Criterion) {
    let redis = redis();
    let policy = policy();
    let a = Engine::new(&policy).unwrap();
    let b = Engine::new(&policy).unwrap();
    join(&a, &redis, "converge", "a");
    join(&b, &redis, "converge", "b");
    let next = AtomicU64::new(0);
    let one = || {
        let k = next.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let revision = a
            .apply(change(k), ChangeMeta::by("bench"))
            .unwrap()
            .revision;
        assert!(b.wait_for_revision(revision, Duration::from_secs(10)));
        started.elapsed()
    };
    let mut times: Vec<Duration> = (0..1_000).map(|_| one()).collect();
    times.sort();
    let p50 = percentile(&times, 0.50);
    eprintln!(
        "fleet/converge over 1,000 changes: p50 {:.3?}, p99 {:.3?}, max {:.3?}",
        p50,
        percentile(&times, 0.99),
        times[times.len() - 1]
    );
    c.bench_function("fleet/converge", |bench| {
        bench.iter_custom(|iters| (0..iters).map(|_| one()).sum());
    });

    // The watcher's way, in the same run.
    let started = Instant::now();
    let reloads = 5;
    for _ in 0..reloads {
        black_box(policy.compile().unwrap());
    }
    let reload = started.elapsed() / reloads;
    eprintln!(
        "fleet/full_reload/10000: {reload:.3?} per change, {:.0}x the converge p50",
        reload.as_secs_f64() / p50.as_secs_f64()
    );
    let mut group = c.benchmark_group("fleet/full_reload");
    group.sample_size(10);
    group.bench_function("10000", |bench| {
        bench.iter(|| black_box(policy.compile().unwrap()));
    });
    group.finish();
}

fn bench_append(c: &mut Criterion) {
    let redis = redis();
    let policy = policy();
    let mut group = c.benchmark_group("fleet/append");
    for writers in [1_usize, 3] {
        let key = format!("append{writers}");
        let engines: Vec<Engine> = (0..writers)
            .map(|i| {
                let e = Engine::new(&policy).unwrap();
                join(&e, &redis, &key, &format!("w{i}"));
                e
            })
            .collect();
        let next = Arc::new(AtomicU64::new(0));
        let conflicts = Arc::new(AtomicU64::new(0));
        group.bench_function(format!("{writers}_writers"), |bench| {
            bench.iter_custom(|iters| {
                let per = iters.div_ceil(writers as u64);
                let started = Instant::now();
                std::thread::scope(|s| {
                    for engine in &engines {
                        let next = Arc::clone(&next);
                        let conflicts = Arc::clone(&conflicts);
                        s.spawn(move || {
                            for _ in 0..per {
                                let k = next.fetch_add(1, Ordering::Relaxed);
                                loop {
                                    match engine.apply(change(k), ChangeMeta::by("bench")) {
                                        Ok(_) => break,
                                        Err(ChangeError::Journal(m)) if m.contains("moved on") => {
                                            conflicts.fetch_add(1, Ordering::Relaxed);
                                        }
                                        Err(e) => panic!("{e}"),
                                    }
                                }
                            }
                        });
                    }
                });
                // Per accepted batch.
                started.elapsed() * u32::try_from(iters).unwrap_or(u32::MAX)
                    / u32::try_from(per * writers as u64).unwrap_or(u32::MAX)
            });
        });
        eprintln!(
            "fleet/append/{writers}_writers: {} batches, {} reported conflicts (8 lost races in a row)",
            next.load(Ordering::Relaxed),
            conflicts.load(Ordering::Relaxed)
        );
    }
    group.finish();
}

// `criterion_group!` makes an undocumented `pub fn`: inside a private module
// it is not public API, so `missing_docs` leaves it alone.
mod group {
    criterion::criterion_group!(benches, super::bench_converge, super::bench_append);
}
criterion_main!(group::benches);
