//! Distinct rows stored once: roles with equal effective permissions share
//! one row, after a full compile and after every live update. Changing one
//! role of a shared row gives it a row of its own (copy-on-write: the old
//! snapshot and the other roles keep theirs), reverting it shares again,
//! and a row no role uses any more is dropped.
#![expect(
    clippy::indexing_slicing,
    clippy::expect_used,
    reason = "test helpers outside #[test] functions fail loudly on purpose"
)]

use proptest::prelude::*;
use rolegraph::{Change, ChangeMeta, Engine, Policy, Role, Snapshot};
use rolegraph_testkit::{rows_match_distinct_sets, Probe};

const ORGS: [&str; 3] = ["org_a", "org_b", "org_c"];
const ENV_ROLES: usize = 4;
const ORG_ROLES: usize = 6;
const PERMS: usize = 8;

fn perm(i: usize) -> String {
    format!("{}:{}", ["doc", "task"][i % 2], i / 2)
}

fn env_role(e: usize) -> String {
    format!("env{e}")
}

fn org_role(j: usize) -> String {
    format!("member{j}")
}

/// The `tenants` fixture: environment role `env{e}` grants permissions `e`
/// and `e + 1` and, when `e` is odd, extends `env{e-1}`; each of the three
/// organizations has six roles `member{j}` that only extend
/// `env{(o + j) % 4}`. 22 roles, 4 distinct rows.
fn tenants() -> Policy {
    let mut b = Policy::builder();
    for i in 0..PERMS {
        b.permission(perm(i));
    }
    for e in 0..ENV_ROLES {
        let r = b.role(env_role(e)).grant(perm(e)).grant(perm(e + 1));
        if e % 2 == 1 {
            r.extends(env_role(e - 1));
        }
    }
    for (o, id) in ORGS.iter().enumerate() {
        let org = b.organization(*id);
        for j in 0..ORG_ROLES {
            org.role(org_role(j)).extends(env_role((o + j) % ENV_ROLES));
        }
    }
    b.build()
}

/// The live snapshot answers like a full compile, and both store exactly
/// one row per distinct permission set.
fn check(engine: &Engine) -> Result<(), String> {
    let live = engine.snapshot();
    let full = engine
        .policy()
        .compile()
        .map_err(|e| format!("the policy no longer compiles: {e}"))?;
    rolegraph_testkit::equivalent(&live, &full, &Probe::default())?;
    rows_match_distinct_sets(&live).map_err(|e| format!("live: {e}"))?;
    rows_match_distinct_sets(&full).map_err(|e| format!("full: {e}"))?;
    Ok(())
}

fn has(s: &Snapshot, org: Option<&str>, role: &str, p: usize) -> bool {
    let id = s.role(org, role).expect("the role exists");
    s.role_has_permission(id, &perm(p))
}

fn grant(org: Option<&str>, role: &str, p: usize) -> Change {
    Change::GrantPermission {
        organization: org.map(str::to_owned),
        role: role.to_owned(),
        permission: perm(p),
    }
}

fn revoke(org: Option<&str>, role: &str, p: usize) -> Change {
    Change::RevokePermission {
        organization: org.map(str::to_owned),
        role: role.to_owned(),
        permission: perm(p),
    }
}

#[test]
fn the_tenants_fixture_stores_four_rows_for_twenty_two_roles() {
    let s = tenants().compile().unwrap();
    assert_eq!(s.roles_len(), 22);
    assert_eq!(s.distinct_rows(), 4);
    assert_eq!(rolegraph_testkit::distinct_permission_sets(&s), 4);
}

#[test]
fn bitset_memory_grows_with_distinct_rows_not_roles() {
    // 2,000 organizations × 6 roles over 4 rows of 79 words (5,000 permissions).
    let mut b = Policy::builder();
    for i in 0..5_000 {
        b.permission(format!("p:{i}"));
    }
    for e in 0..ENV_ROLES {
        b.role(env_role(e)).grant(format!("p:{}", e * 1_000));
    }
    for o in 0..2_000 {
        let org = b.organization(format!("org_{o}"));
        for j in 0..ORG_ROLES {
            org.role(org_role(j)).extends(env_role((o + j) % ENV_ROLES));
        }
    }
    let s = b.build().compile().unwrap();
    let roles = s.roles_len();
    assert_eq!((roles, s.distinct_rows()), (12_004, 4));
    // A 4-byte key per role and 4 rows, where a row per role took 632 bytes.
    assert!(
        s.bitset_bytes() < roles * 5,
        "{} bytes of bitsets for {roles} roles",
        s.bitset_bytes()
    );
    assert!(s.memory_bytes() < roles * 100, "{}", s.memory_bytes());
}

#[test]
fn changing_one_role_of_a_shared_row_copies_it_and_reverting_shares_again() {
    let engine = Engine::new(&tenants()).unwrap();
    let before = engine.snapshot();
    // org_a (o = 0) member0 and org_b (o = 1) member3 both share env0's row.
    let (a, b) = (Some("org_a"), Some("org_b"));
    assert!(!has(&before, a, "member0", 7) && !has(&before, b, "member3", 7));

    engine
        .apply(grant(a, "member0", 7), ChangeMeta::default())
        .unwrap();
    let changed = engine.snapshot();
    assert!(has(&changed, a, "member0", 7), "the changed role has it");
    assert!(!has(&changed, b, "member3", 7), "its row's other roles not");
    assert!(!has(&changed, None, "env0", 7), "nor the base");
    assert!(
        !has(&before, a, "member0", 7),
        "the old snapshot is untouched"
    );
    assert_eq!(changed.distinct_rows(), 5, "one row of its own");
    check(&engine).unwrap();

    engine
        .apply(revoke(a, "member0", 7), ChangeMeta::default())
        .unwrap();
    let reverted = engine.snapshot();
    assert!(!has(&reverted, a, "member0", 7));
    assert_eq!(reverted.distinct_rows(), 4, "shared again, its row dropped");
    assert!(has(&changed, a, "member0", 7), "the older snapshot kept it");
    check(&engine).unwrap();

    // The shared row's own role: every role sharing it follows, still one row.
    engine
        .apply(grant(None, "env0", 7), ChangeMeta::default())
        .unwrap();
    let wide = engine.snapshot();
    assert!(has(&wide, a, "member0", 7) && has(&wide, b, "member3", 7));
    assert!(has(&wide, None, "env1", 7), "env1 extends env0");
    assert!(!has(&wide, None, "env2", 7));
    assert_eq!(wide.distinct_rows(), 4);
    assert!(
        !has(&reverted, b, "member3", 7),
        "copy-on-write across snapshots"
    );
    check(&engine).unwrap();

    // Two rows made equal by a change merge into one.
    engine
        .apply(grant(None, "env0", 2), ChangeMeta::default())
        .unwrap();
    let merged = engine.snapshot();
    // env0 = {0, 1, 2, 7} = env1 = {0, 1, 2} ∪ env0.
    assert_eq!(merged.distinct_rows(), 3);
    check(&engine).unwrap();
}

#[test]
fn deleting_a_permission_merges_the_rows_it_alone_told_apart() {
    let engine = Engine::new(&tenants()).unwrap();
    // env2 = {2, 3} and env3 = {2, 3, 4}: only permission 4 tells them apart.
    engine
        .apply(
            Change::DeletePermission { name: perm(4) },
            ChangeMeta::default(),
        )
        .unwrap();
    let s = engine.snapshot();
    assert_eq!(s.distinct_rows(), 3);
    check(&engine).unwrap();
}

#[test]
fn rows_freed_by_many_patches_are_reused_not_accumulated() {
    let engine = Engine::new(&tenants()).unwrap();
    // Give every org role a row of its own, then take them all back, twice.
    for round in 0..2 {
        for (o, id) in ORGS.iter().enumerate() {
            for j in 0..ORG_ROLES {
                let p = (o * ORG_ROLES + j + round) % PERMS;
                engine
                    .apply(grant(Some(id), &org_role(j), p), ChangeMeta::default())
                    .unwrap();
            }
        }
        check(&engine).unwrap();
        for id in ORGS {
            for j in 0..ORG_ROLES {
                let role = engine
                    .policy()
                    .organizations
                    .iter()
                    .find(|o| o.id == id)
                    .and_then(|o| o.roles.iter().find(|r| r.name == org_role(j)))
                    .cloned()
                    .unwrap();
                engine
                    .apply(
                        Change::UpdateRole {
                            organization: Some(id.to_owned()),
                            name: role.name,
                            display_name: None,
                            description: None,
                            permissions: Some(Vec::new()),
                            extends: None,
                        },
                        ChangeMeta::default(),
                    )
                    .unwrap();
            }
        }
        assert_eq!(engine.snapshot().distinct_rows(), 4);
        check(&engine).unwrap();
    }
    assert!(
        engine.stats().incremental_compiles > 0,
        "the patches took the incremental path"
    );
}

fn role_key(i: usize) -> (Option<String>, String) {
    match i % 4 {
        0 => (None, env_role(i / 4 % ENV_ROLES)),
        k => (Some(ORGS[k - 1].to_owned()), org_role(i / 4 % ORG_ROLES)),
    }
}

fn change_strategy() -> impl Strategy<Value = Change> {
    let role = 0usize..24;
    prop_oneof![
        4 => (role.clone(), 0..PERMS).prop_map(|(r, p)| {
            let (org, name) = role_key(r);
            grant(org.as_deref(), &name, p)
        }),
        4 => (role.clone(), 0..PERMS).prop_map(|(r, p)| {
            let (org, name) = role_key(r);
            revoke(org.as_deref(), &name, p)
        }),
        2 => (role.clone(), prop::option::of(0..ENV_ROLES), prop::option::of(prop::collection::vec(0..PERMS, 0..3)))
            .prop_map(|(r, base, grants)| {
                let (org, name) = role_key(r);
                Change::UpdateRole {
                    // An environment role may only extend a lower one (no cycle).
                    extends: base
                        .filter(|b| org.is_some() || *b < r / 4 % ENV_ROLES)
                        .map(|b| vec![env_role(b)]),
                    organization: org,
                    name,
                    display_name: None,
                    description: None,
                    permissions: grants.map(|g| g.into_iter().map(perm).collect()),
                }
            }),
        1 => (0..ORGS.len(), 0..3usize, 0..ENV_ROLES).prop_map(|(o, n, e)| Change::CreateRole {
            organization: Some(ORGS[o].to_owned()),
            role: {
                let mut r = Role::named(format!("extra{n}"));
                r.extends(env_role(e));
                r
            },
        }),
        1 => (0..PERMS + 2).prop_map(|p| Change::CreatePermission { name: perm(p), description: None }),
        1 => (0..PERMS + 2).prop_map(|p| Change::DeletePermission { name: perm(p) }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(64),
        ..ProptestConfig::default()
    })]

    /// Incremental = full, and rows stored = distinct permission sets, on a
    /// policy where most rows are shared, after every change: grants and
    /// revokes on shared rows and on the roles sharing them, rebasing,
    /// new roles, new and deleted permissions.
    #[test]
    fn shared_rows_stay_exact_under_any_patch(
        changes in prop::collection::vec(change_strategy(), 1..30),
    ) {
        let engine = Engine::new(&tenants()).unwrap();
        for change in changes {
            // Refused changes (unknown names) leave everything as it was.
            let _ = engine.apply(change.clone(), ChangeMeta::default());
            if let Err(diff) = check(&engine) {
                prop_assert!(false, "after {:?}: {}", change, diff);
            }
        }
    }
}
