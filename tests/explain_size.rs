//! The size of `effective_permissions`' result, by allocator count (its own
//! test binary: the counting allocator is process-wide).
//!
//! The guide: no output quadratic in input. A chain where every role grants a
//! permission of its own is the worst case for a result that stores each
//! permission's whole path (10,000 roles: 50 million path steps); the result
//! must stay linear in the roles and permissions, paths walked on demand.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::alloc::System;

use rolegraph::{Permission, Policy, Role, Snapshot};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// `r0` <- `r1` <- ... <- `r{depth-1}`, each `rI` granting `pI` of its own.
fn chain(depth: usize) -> Snapshot {
    let mut p = Policy::new();
    for i in 0..depth {
        p.permissions.push(Permission {
            name: format!("p{i}"),
            description: None,
        });
        let mut role = Role::named(format!("r{i}"));
        role.grant(format!("p{i}"));
        if i > 0 {
            role.extends(format!("r{}", i - 1));
        }
        p.roles.push(role);
    }
    p.compile().unwrap()
}

/// The bytes the result of `effective_permissions` for the chain's last role
/// holds while it is alive (allocated and not freed during the call), after
/// checking the answer itself.
fn result_bytes(depth: usize) -> usize {
    let s = chain(depth);
    let top = format!("r{}", depth - 1);
    let region = Region::new(GLOBAL);
    let effective = s.effective_permissions(None, &top).unwrap();
    let stats = region.change();
    let kept =
        stats.bytes_allocated as isize - stats.bytes_deallocated as isize + stats.bytes_reallocated;

    // The answer: every permission, at its own role, reached down the chain.
    assert_eq!(effective.len(), depth);
    assert_eq!(effective.inheritance().roles().len(), depth);
    let root = effective.get("p0").unwrap();
    assert_eq!((root.role.as_str(), root.grant.as_str()), ("r0", "p0"));
    let path = effective.path(root);
    assert_eq!(path.len(), depth);
    assert_eq!((path[0], path[depth - 1]), (top.as_str(), "r0"));
    let own = effective.get(&format!("p{}", depth - 1)).unwrap();
    assert_eq!(effective.path(own), [top.as_str()]);
    drop(effective);
    usize::try_from(kept).unwrap()
}

/// One test: the counts are process-wide, so nothing may run beside it.
#[test]
fn effective_permissions_of_a_10k_deep_chain_are_linear_in_size() {
    let small = result_bytes(2_500);
    let large = result_bytes(10_000);
    let per_role = large / 10_000;
    eprintln!(
        "effective_permissions result: {small} B at depth 2,500, {large} B at depth 10,000 \
         ({per_role} B per role)"
    );
    // Four times the roles: about four times the bytes (a stored path per
    // permission would be sixteen times, and about 1.2 GB at 10,000).
    assert!(
        large <= small * 5,
        "{large} B at 10,000 against {small} B at 2,500: not linear"
    );
    // Each role: one entry and one tree node, with their short names.
    assert!(per_role <= 1_024, "{per_role} B per role");
}
