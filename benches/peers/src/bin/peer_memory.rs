//! Each engine's memory at 10,000 roles: the heap it holds once built (live
//! bytes after the build, with the workload's own data excluded) and the
//! peak reached while building, counted by a global allocator wrapper.
//!
//! ```text
//! cargo run --release -p rolegraph-peers --bin peer_memory [ROLES]
//! ```
//!
//! Two workloads: W1's roles and grants only (the same data for every
//! engine), and W1 as benchmarked (plus 10 users per role, which casbin,
//! Cedar and the naive baseline store because they are asked about users;
//! rolegraph answers the same questions from the token's roles).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use rolegraph_peers::engines::{
    rolegraph_policy, Casbin, CasbinCached, CedarFlat, CedarPerRole, Config, Naive, Peer, Rolegraph,
};
use rolegraph_peers::workload::{self, Spec};

/// The system allocator, counting live and peak bytes.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to `System` unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Live heap growth once built, and peak growth during the build.
fn measure<T>(build: impl FnOnce() -> T) -> (usize, usize) {
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let engine = build();
    let held = LIVE.load(Ordering::Relaxed).saturating_sub(before);
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(before);
    drop(engine);
    (held, peak)
}

fn row<P: Peer>(spec: &Spec, config: Config) {
    let (held, peak) = measure(|| P::build(spec, config));
    println!("| {} | {} | {} |", P::NAME, mib(held), mib(peak));
}

fn table(title: &str, spec: &Spec) {
    let config = Config::default();
    println!(
        "\n{title}: {} roles, {} permissions, {} users\n",
        spec.roles.len(),
        spec.permissions.len(),
        spec.users.len()
    );
    println!("| engine | heap held once built | peak heap growth while building |");
    println!("|---|---:|---:|");
    row::<Rolegraph>(spec, config);
    let policy = rolegraph_policy(spec);
    let (held, peak) = measure(|| policy.compile().unwrap());
    println!(
        "| rolegraph (compiled `Snapshot` only, from a parsed `Policy`) | {} | {} |",
        mib(held),
        mib(peak)
    );
    row::<Casbin>(spec, config);
    row::<CasbinCached>(spec, config);
    row::<CedarPerRole>(spec, config);
    row::<CedarFlat>(spec, config);
    row::<Naive>(spec, config);
}

fn main() {
    let roles: usize = std::env::args()
        .nth(1)
        .map_or(10_000, |a| a.parse().expect("ROLES is a number"));
    let mut w = workload::w1(roles);
    let with_users = w.spec.clone();
    w.spec.users.clear();
    table("W1, roles and grants only", &w.spec);
    table("W1 as benchmarked (with users)", &with_users);
    let snapshot = rolegraph_policy(&w.spec).compile().unwrap();
    println!(
        "\nrolegraph's own accounting of that snapshot: memory_bytes {} (bitsets {})",
        mib(snapshot.memory_bytes()),
        mib(snapshot.bitset_bytes())
    );
}
