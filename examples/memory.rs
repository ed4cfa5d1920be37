//! Reports the memory a compiled snapshot takes at 100,000 roles × 1,000
//! permissions (the benches' workload), against DESIGN.md's target: memory
//! ≤ 1.5 × the bitsets' own size; or, with `orgs`, at the multi-tenant
//! workload of issue 10 (`OrgRoles`: 100,000 organizations × 10 roles over 20
//! environment roles, 5,000 permissions, 1,000,020 roles), against its
//! target: ≤ 64 MB for the whole snapshot, ≤ 64 bytes per role.
//!
//! ```text
//! cargo run --release --example memory [ROLES]
//! cargo run --release --example memory orgs [ORGANIZATIONS]
//! ```
//!
//! The figure is an allocator count: the global allocator is wrapped
//! (`stats_alloc`, which keeps this crate free of `unsafe`) and counts the
//! bytes the compile allocates and the bytes still held once it returns —
//! what the snapshot retains; dropping the snapshot must free them again.
//! Beside it: the snapshot's own estimate ([`Snapshot::memory_bytes`]),
//! [`Snapshot::bitset_bytes`], and, on Linux, what the process saw: resident
//! memory kept after the compile, and the peak reached during it (VmHWM,
//! reset just before the compile when the kernel allows).

// An example, not library code: a broken fixture should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "../benches/common/mod.rs"]
mod common;

use std::alloc::System;
use std::time::Instant;

use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

use common::{OrgRoles, Workload};
use rolegraph::Snapshot;

/// A `kB` field of `/proc/self/status`, in bytes (`None` off Linux).
fn status_bytes(field: &str) -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: usize = line
        .trim_start_matches(field)
        .trim_start_matches(':')
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Resets VmHWM to the current RSS (Linux ≥ 4.0); whether it worked.
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes still allocated since `region` began (allocations minus frees).
fn live_growth(region: &Region<'_, System>) -> (usize, isize) {
    let change = region.change();
    (
        change.bytes_allocated,
        change.bytes_allocated as isize - change.bytes_deallocated as isize,
    )
}

fn mib(bytes: usize) -> String {
    format!("{:.2} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn main() {
    let mut args = std::env::args().skip(1).peekable();
    let orgs = args.next_if(|a| a == "orgs").is_some();
    let size: Option<usize> = args
        .next()
        .map(|a| a.parse().expect("the size is a number"));
    let (policy, generated_depth) = if orgs {
        (OrgRoles::new(size.unwrap_or(100_000)).policy, None)
    } else {
        let w = Workload::new(size.unwrap_or(100_000));
        let depth = w.max_depth();
        (w.policy, Some(depth))
    };
    let rss_before = status_bytes("VmRSS");
    let peak_reset = reset_peak();
    let peak_before = status_bytes("VmHWM");

    let region = Region::new(GLOBAL);
    let started = Instant::now();
    let snapshot: Snapshot = policy.compile().expect("the workload compiles");
    let elapsed = started.elapsed();
    let (allocated, retained) = live_growth(&region);

    let rss_after = status_bytes("VmRSS");
    let peak_after = status_bytes("VmHWM");

    let bitsets = snapshot.bitset_bytes();
    let estimate = snapshot.memory_bytes();
    let retained =
        usize::try_from(retained).expect("a compile does not free more than it allocates");
    let ratio = retained as f64 / bitsets as f64;
    println!("roles              {}", snapshot.roles_len());
    println!("permissions        {}", snapshot.permissions_len());
    println!("organizations      {}", snapshot.organizations_len());
    match generated_depth {
        Some(d) => println!(
            "max depth          {} roles (generator: {d})",
            snapshot.max_depth()
        ),
        None => println!("max depth          {} roles", snapshot.max_depth()),
    }
    println!("distinct rows      {}", snapshot.distinct_rows());
    println!("compile (1 run)    {elapsed:.1?}");
    println!("bitset_bytes       {bitsets} ({})", mib(bitsets));
    println!(
        "retained (counted) {retained} ({}): heap the snapshot holds, by allocator count",
        mib(retained)
    );
    println!(
        "allocated          {allocated} ({}): every byte the compile asked for, scratch included",
        mib(allocated)
    );
    println!(
        "memory_bytes       {estimate} ({}): the snapshot's own estimate, {:+.1} % off the count",
        mib(estimate),
        (estimate as f64 / retained as f64 - 1.0) * 100.0
    );
    if orgs {
        let per_role = retained as f64 / snapshot.roles_len() as f64;
        println!(
            "per role           {per_role:.1} bytes retained (target <= 64 B and <= 64 MB in all: {})",
            if per_role <= 64.0 && retained <= 64 << 20 {
                "met"
            } else {
                "MISSED"
            }
        );
    } else {
        println!(
            "ratio              {ratio:.3} retained / bitsets (target <= 1.5: {})",
            if ratio <= 1.5 { "met" } else { "MISSED" }
        );
    }
    match (rss_before, rss_after) {
        (Some(before), Some(after)) => {
            let kept = after.saturating_sub(before);
            println!(
                "RSS kept           +{} ({:.3} x bitsets; includes freed compile scratch the allocator kept)",
                mib(kept),
                kept as f64 / bitsets as f64
            );
        }
        _ => println!("RSS kept           unavailable (no /proc/self/status)"),
    }
    match (rss_before, peak_before, peak_after) {
        (Some(before), Some(_), Some(after)) if peak_reset => {
            let peak = after.saturating_sub(before);
            println!(
                "peak RSS growth    +{} ({:.3} x bitsets; VmHWM reset before the compile)",
                mib(peak),
                peak as f64 / bitsets as f64
            );
        }
        (_, Some(before), Some(after)) => println!(
            "peak RSS growth    >= +{} (VmHWM could not be reset: a lower bound)",
            mib(after.saturating_sub(before))
        ),
        _ => println!("peak RSS growth    unavailable (no /proc/self/status)"),
    }
    let region = Region::new(GLOBAL);
    drop(snapshot);
    let (_, freed) = live_growth(&region);
    println!(
        "freed on drop      {} ({}): the snapshot held what was counted",
        -freed,
        mib(usize::try_from(-freed).unwrap_or(0))
    );
}
