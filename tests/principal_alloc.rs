//! Heap allocations on the request path, counted by a counting global
//! allocator (its own test binary: the allocator is process-wide).
//!
//! Issue 10: on a wide policy (5,000 permissions, 79-word rows) a token of 3
//! organization roles, and a user resolved from the stored memberships,
//! build a principal and check it without touching the heap; and the memory
//! a stored membership takes, by allocator count.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "../benches/common/mod.rs"]
mod common;

use std::alloc::System;

use rolegraph::{Change, ChangeMeta, Engine, Requirement};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const ORGS: usize = 200;
const MEMBERS: usize = 20_000;

fn member(i: usize) -> Change {
    Change::SetMembership {
        organization: common::org_id(i % ORGS),
        user: format!("user-{i}"),
        roles: vec![
            common::org_role_name(i % common::ROLES_PER_ORG),
            common::org_role_name((i + 3) % common::ROLES_PER_ORG),
            common::org_role_name((i + 5) % common::ROLES_PER_ORG),
        ],
        groups: None,
        creator: false,
    }
}

/// One test: the counts are process-wide, so nothing may run beside it.
#[test]
fn the_request_path_does_not_allocate_and_a_membership_costs_little() {
    let workload = common::OrgRoles::new(ORGS);
    let engine = Engine::new(&workload.policy).unwrap();

    // Memory per membership: what a bulk load leaves allocated.
    let changes: Vec<Change> = (0..MEMBERS).map(member).collect();
    let region = Region::new(GLOBAL);
    engine.apply_batch(changes, ChangeMeta::default()).unwrap();
    let stats = region.change();
    let kept =
        stats.bytes_allocated as isize - stats.bytes_deallocated as isize + stats.bytes_reallocated;
    let per_member = kept / MEMBERS as isize;
    eprintln!("memory per membership (allocator count, {MEMBERS} loaded): {per_member} B");
    // 724 B at the hash-keyed model (1,382 B with a map node per user).
    assert!(per_member < 1_024, "{per_member} B per membership");

    let snapshot = engine.snapshot();
    assert!(snapshot.permissions_len() > 16 * 64, "a wide policy");
    let requirement = Requirement::permission(&snapshot, &common::permission_name(0)).unwrap();
    let any = Requirement::any_of(
        &snapshot,
        [common::permission_name(4_999), common::permission_name(60)],
    )
    .unwrap();
    let tokens: Vec<(String, [String; 3])> = (0..64)
        .map(|i| {
            (
                common::org_id(i * 7 % ORGS),
                common::OrgRoles::token_roles(i),
            )
        })
        .collect();
    let users: Vec<(String, String)> = (0..64)
        .map(|i| (common::org_id(i * 13 % ORGS), format!("user-{}", i * 13)))
        .collect();
    // Warm: requirements and caches resolved once.
    let mut allowed = 0;
    for (org, roles) in &tokens {
        let p = snapshot.principal(Some(org), roles);
        assert_eq!(p.roles().len(), 3);
        allowed += usize::from(p.satisfies(&requirement) || p.satisfies(&any));
    }
    for (org, user) in &users {
        assert_eq!(snapshot.user_principal(org, user).roles().len(), 3);
    }
    assert!(
        allowed > 0 && allowed < tokens.len(),
        "{allowed}: both answers occur"
    );

    let region = Region::new(GLOBAL);
    let mut decisions = 0usize;
    for _ in 0..10 {
        for (org, roles) in &tokens {
            let p = snapshot.principal(Some(org), roles);
            decisions += usize::from(p.satisfies(&requirement));
            decisions += usize::from(p.satisfies(&any));
        }
        for (org, user) in &users {
            let p = snapshot.user_principal(org, user);
            decisions += usize::from(p.satisfies(&requirement));
        }
    }
    let stats = region.change();
    assert_eq!(
        (stats.allocations, stats.reallocations),
        (0, 0),
        "the request path allocated ({decisions} decisions)"
    );
}
