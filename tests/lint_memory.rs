//! The peak memory of what `rolegraph lint` does — read the policy file,
//! parse it, compile it, list its warnings — by a counting allocator that
//! keeps the peak (its own test binary: the allocator is process-wide).
//!
//! Issue 10 measured `lint` at 1.1 GB RSS on 1,000,020 roles. The bound
//! here is per role, on the multi-tenant workload at 100,020 roles
//! (`OrgRoles`: 10,000 organizations × 10 roles over 20 environment roles,
//! 5,000 permissions), so that a per-role regression (slack in every parsed
//! list, a finding or a `Vec<String>` per role, a second copy of the input)
//! fails here rather than at a million roles.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "../benches/common/mod.rs"]
mod common;

use peak_alloc::PeakAlloc;
use rolegraph::Policy;

#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc;

const ORGS: usize = 10_000;

/// One test: the counts are process-wide, so nothing may run beside it.
#[test]
fn lint_of_100k_roles_peaks_at_a_few_hundred_bytes_per_role() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("org_roles.json");
    let text_len = {
        let text = common::OrgRoles::new(ORGS).policy.to_json();
        std::fs::write(&file, &text).unwrap();
        text.len()
    };

    let base = ALLOC.current_usage();
    ALLOC.reset_peak_usage();
    // What `rolegraph lint` does, step by step.
    let policy = Policy::from_path(&file).unwrap();
    let parsed = ALLOC.current_usage() - base;
    let snapshot = policy.compile().unwrap();
    let warnings = snapshot.warnings();
    let peak = ALLOC.peak_usage() - base;
    drop(policy);
    let compiled = ALLOC.current_usage() - base;

    let roles = snapshot.roles_len();
    assert_eq!(roles, ORGS * common::ROLES_PER_ORG + common::ORG_ENV_ROLES);
    assert_eq!(warnings.len(), 4_000, "permissions no role grants");
    let per_role = |bytes: usize| bytes / roles;
    eprintln!(
        "lint at {roles} roles: peak {peak} B ({} B per role); input {text_len} B, parsed policy \
         {parsed} B ({} B per role), snapshot and warnings {compiled} B ({} B per role)",
        per_role(peak),
        per_role(parsed),
        per_role(compiled),
    );
    // The parsed policy is the floor: every role is a `Role` of 120 bytes
    // plus its name, its base list and the base's name.
    assert!(
        per_role(parsed) <= 200,
        "the parsed policy takes {} B per role",
        per_role(parsed)
    );
    // At the peak, the input text is gone and the snapshot is being built
    // beside the parsed policy: a small multiple of the two, nothing per role
    // on top.
    assert!(
        peak <= (parsed + compiled) * 3 / 2,
        "peak {peak} B against {parsed} B parsed and {compiled} B compiled"
    );
    assert!(per_role(peak) <= 320, "peak {} B per role", per_role(peak));
}
