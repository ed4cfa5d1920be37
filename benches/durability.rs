//! What durability costs: opening a directory, and a writer or reader while
//! a checkpoint is due, slow, or failing.
//!
//! - `open/after_changes/{10000,1000000}`: `Engine::open` on a directory
//!   whose journal holds that many batches (one membership each, cycling
//!   over 1,000 users so the state stays small; a checkpoint every 10,000
//!   batches, so at most 10,000 are replayed). The directory is built once,
//!   with sync off. Open time should follow the batches since the last
//!   checkpoint, not the length of the log.
//! - `update/membership_checkpoint_failing/100000`: one membership change on
//!   an engine holding 100,000 memberships (10,000-role policy) whose every
//!   checkpoint fails (`checkpoint.tmp` is a directory) and that wants one
//!   after every batch. Before: each apply re-encoded the whole state
//!   (645 ms for 5 applies).
//! - `update/membership_checkpoint_every_1/100000`: the same with a working
//!   disk: a checkpoint is due after every batch. Before: each apply wrote a
//!   checkpoint (~180 ms at 100,000) under the writer lock.
//! - `read/delivered_during_checkpoint/100000`: `Engine::delivered` while a
//!   checkpoint of that engine runs on another thread. Before: it waited on
//!   the writer lock for the whole checkpoint.
//!
//! ```text
//! cargo bench --bench durability -- --warm-up-time 1 --measurement-time 3
//! ```

// Benches are not library code: a broken fixture should stop the run loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::hint::black_box;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{role_name, Workload};
use criterion::{criterion_main, BenchmarkId, Criterion, SamplingMode};
use rolegraph::{Change, ChangeMeta, Engine, EngineOptions, Policy};

fn options(checkpoint_every: u64) -> EngineOptions {
    let mut o = EngineOptions::default();
    o.checkpoint_every = checkpoint_every;
    o.sync = false;
    o
}

fn small_policy() -> Policy {
    let mut p = Policy::new();
    p.permission("docs:read").permission("docs:write");
    p.role("viewer").grant("docs:read");
    p.role("editor").extends("viewer").grant("docs:write");
    p.organization("org_1");
    p
}

/// A directory whose journal holds `changes` batches.
fn build(dir: &Path, changes: u64) {
    let engine = Engine::open_with(dir, &small_policy(), options(10_000)).unwrap();
    let started = Instant::now();
    for k in 0..changes {
        let role = if (k / 1_000) % 2 == 0 {
            "viewer"
        } else {
            "editor"
        };
        engine
            .apply(
                Change::SetMembership {
                    organization: "org_1".into(),
                    user: format!("user-{}", k % 1_000),
                    roles: vec![role.into()],
                    groups: None,
                    creator: false,
                },
                ChangeMeta::by("bench").at(k),
            )
            .unwrap();
    }
    drop(engine);
    // Every log segment (`journal.log`, `journal-<base>.log`): the audit
    // history, and the newest, the live one recovery replays.
    let mut segments: Vec<(String, u64)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let is_log = name.starts_with("journal") && name.ends_with(".log");
            is_log.then(|| (name, e.metadata().unwrap().len()))
        })
        .collect();
    segments.sort_by_key(|(name, _)| name.replace("journal.log", "journal-0.log"));
    let total: u64 = segments.iter().map(|(_, len)| len).sum();
    let live = segments.last();
    eprintln!(
        "open/after_changes/{changes}: built {changes} batches in {:.1?}, journal {:.1} MB \
         in {} segments, live segment {:?}",
        started.elapsed(),
        total as f64 / 1e6,
        segments.len(),
        live,
    );
}

fn bench_open(c: &mut Criterion) {
    let mut group = c.benchmark_group("open/after_changes");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    for changes in [10_000u64, 1_000_000] {
        // Built on first use: a filtered-out size costs nothing.
        let mut dir: Option<tempfile::TempDir> = None;
        group.bench_function(BenchmarkId::from_parameter(changes), |b| {
            let dir = dir.get_or_insert_with(|| {
                let tmp = tempfile::TempDir::new().unwrap();
                build(tmp.path(), changes);
                tmp
            });
            b.iter(|| {
                let engine =
                    Engine::open_with(dir.path(), &small_policy(), options(10_000)).unwrap();
                assert_eq!(engine.revision(), changes);
                engine
            });
        });
    }
    group.finish();
}

const MEMBERS: usize = 100_000;
const ORGS: usize = 100;

/// A durable engine holding 100,000 memberships over a 10,000-role policy.
fn loaded(dir: &Path, checkpoint_every: u64) -> Engine {
    let n = 10_000;
    let w = Workload::new(n);
    let policy = w.policy;
    let engine = Engine::open_with(dir, &policy, options(0)).unwrap();
    let member = |i: usize| Change::SetMembership {
        organization: format!("org-{}", i % ORGS),
        user: format!("user-{i}"),
        roles: vec![role_name(i % n)],
        groups: None,
        creator: false,
    };
    for chunk in (0..MEMBERS).collect::<Vec<_>>().chunks(10_000) {
        engine
            .apply_batch(
                chunk.iter().map(|&i| member(i)).collect(),
                ChangeMeta::default(),
            )
            .unwrap();
    }
    drop(engine);
    Engine::open_with(dir, &policy, options(checkpoint_every)).unwrap()
}

/// Applies a membership change that alternates between two roles.
fn flip(engine: &Engine, next: &mut usize) {
    let target = MEMBERS / 2;
    *next ^= 1;
    engine
        .apply(
            Change::SetMembership {
                organization: format!("org-{}", target % ORGS),
                user: format!("user-{target}"),
                roles: vec![role_name(1 + *next)],
                groups: None,
                creator: false,
            },
            ChangeMeta::default(),
        )
        .unwrap();
}

fn bench_checkpoint_pressure(c: &mut Criterion) {
    let mut group = c.benchmark_group("update");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(20);

    let mut next = 0;
    for (name, failing) in [
        ("membership_checkpoint_failing", true),
        ("membership_checkpoint_every_1", false),
    ] {
        let mut fixture: Option<(tempfile::TempDir, Engine)> = None;
        group.bench_function(BenchmarkId::new(name, MEMBERS), |b| {
            let (_, engine) = fixture.get_or_insert_with(|| {
                let tmp = tempfile::TempDir::new().unwrap();
                let engine = loaded(tmp.path(), 1);
                if failing {
                    std::fs::create_dir(tmp.path().join("checkpoint.tmp")).unwrap();
                }
                (tmp, engine)
            });
            b.iter(|| flip(engine, &mut next));
        });
        if let Some((_, engine)) = fixture {
            let stats = engine.stats();
            eprintln!(
                "{name}: {} applies, {} checkpoints written, {} failed",
                stats.accepted, stats.checkpoints_written, stats.checkpoint_failures
            );
        }
    }
    group.finish();
}

fn bench_read_during_checkpoint(c: &mut Criterion) {
    let tmp = tempfile::TempDir::new().unwrap();
    let engine = loaded(tmp.path(), 0);
    let stop = Arc::new(AtomicBool::new(false));
    // Checkpoints back to back on another thread.
    let checkpointer = {
        let (engine, stop) = (engine.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut n = 0u32;
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                engine.checkpoint().unwrap();
                n += 1;
            }
            (n, started.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(50));
    let mut group = c.benchmark_group("read");
    group.bench_function(
        BenchmarkId::new("delivered_during_checkpoint", MEMBERS),
        |b| b.iter(|| engine.delivered(black_box("msg_1"))),
    );
    group.finish();
    stop.store(true, Ordering::Relaxed);
    let (n, elapsed) = checkpointer.join().unwrap();
    if n > 0 {
        eprintln!(
            "delivered_during_checkpoint: {n} checkpoints meanwhile, {:.1?} each",
            elapsed / n
        );
    }
}

// `criterion_group!` makes an undocumented `pub fn`: inside a private module
// it is not public API, so `missing_docs` leaves it alone.
mod group {
    criterion::criterion_group!(
        benches,
        super::bench_open,
        super::bench_checkpoint_pressure,
        super::bench_read_during_checkpoint
    );
}
criterion_main!(group::benches);
