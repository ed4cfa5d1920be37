//! Declaring permissions against wildcard grants, through the incremental
//! patch: the roles holding a matching wildcard (and every role inheriting
//! from them) gain the new permission, and no other role does, as a full
//! compile of the same policy says; many permissions declared or deleted in
//! one batch agree with the full compile too.
//!
//! The patch finds the roles to recompute in an index of wildcard holders
//! kept up to date as roles gain and lose wildcards, so these cases change
//! the holders first, then declare.
#![expect(
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions fail loudly on purpose"
)]

use rolegraph::{Change, ChangeMeta, Engine, Permission, Policy, Role, Snapshot};
use rolegraph_testkit::Probe;

fn create_permission(name: &str) -> Change {
    Change::CreatePermission {
        name: name.to_owned(),
        description: None,
    }
}

fn delete_permission(name: &str) -> Change {
    Change::DeletePermission {
        name: name.to_owned(),
    }
}

fn set_grants(organization: Option<&str>, role: &str, grants: &[&str]) -> Change {
    Change::UpdateRole {
        organization: organization.map(str::to_owned),
        name: role.to_owned(),
        display_name: None,
        description: None,
        permissions: Some(grants.iter().map(|g| (*g).to_owned()).collect()),
        extends: None,
    }
}

fn role(name: &str, grants: &[&str], extends: &[&str]) -> Role {
    let mut r = Role::named(name);
    for g in grants {
        r.grant(*g);
    }
    for e in extends {
        r.extends(*e);
    }
    r
}

/// `doc:*` on `writer` (extended by `lead`), `doc:se*` on `secret`,
/// `doc:s*` on `wide_s`, `*` on
/// `root`, `task:*` on an organization role, an exact `doc:a` on `plain`.
fn policy() -> Policy {
    let mut p = Policy {
        permissions: ["doc:a", "task:a"]
            .iter()
            .map(|n| Permission {
                name: (*n).to_owned(),
                description: None,
            })
            .collect(),
        roles: vec![
            role("writer", &["doc:*"], &[]),
            role("lead", &[], &["writer"]),
            role("secret", &["doc:se*"], &[]),
            role("wide_s", &["doc:s*"], &[]),
            role("root", &["*"], &[]),
            role("plain", &["doc:a"], &[]),
        ],
        ..Policy::default()
    };
    p.organization("org_a")
        .role("tasker")
        .grant("task:*")
        .extends("plain");
    p
}

/// Runs `batch` through the engine's patch and compares the result, bit for
/// bit, with a full compile of the engine's policy; returns the snapshot.
fn apply(engine: &Engine, batch: Vec<Change>) -> Snapshot {
    let patches = engine.stats().incremental_compiles;
    engine
        .apply_batch(batch.clone(), ChangeMeta::by("test"))
        .expect("a valid batch");
    assert!(
        engine.stats().incremental_compiles > patches,
        "{batch:?} was patched, not compiled whole"
    );
    let live = engine.snapshot();
    let full = engine.policy().compile().expect("the policy compiles");
    let probe = Probe {
        groups: &[],
        seed: live.revision(),
        ..Probe::default()
    };
    if let Err(diff) = rolegraph_testkit::equivalent(&live, &full, &probe) {
        panic!("after {batch:?}: {diff}");
    }
    // A retired permission's column is clear: rows that differed only in it
    // are one row.
    if let Err(diff) = rolegraph_testkit::rows_match_distinct_sets(&live) {
        panic!("after {batch:?}: {diff}");
    }
    live
}

fn has(s: &Snapshot, org: Option<&str>, role: &str, permission: &str) -> bool {
    let id = s.role(org, role).expect("the role exists");
    s.role_has_permission(id, permission)
}

#[test]
fn a_declared_permission_reaches_exactly_the_roles_of_matching_wildcards() {
    let engine = Engine::new(&policy()).expect("the policy compiles");
    let s = apply(&engine, vec![create_permission("doc:secret")]);
    for r in ["writer", "lead", "secret", "root"] {
        assert!(has(&s, None, r, "doc:secret"), "{r}");
    }
    assert!(!has(&s, None, "plain", "doc:secret"));
    assert!(!has(&s, Some("org_a"), "tasker", "doc:secret"));

    let s = apply(&engine, vec![create_permission("task:b")]);
    assert!(has(&s, Some("org_a"), "tasker", "task:b"));
    assert!(has(&s, None, "root", "task:b"));
    assert!(!has(&s, None, "writer", "task:b"));
}

#[test]
fn roles_gaining_and_losing_wildcards_are_found_by_later_declarations() {
    let engine = Engine::new(&policy()).expect("the policy compiles");
    // `plain` gains `doc:*` and `task:*`; `writer` loses `doc:*`.
    apply(
        &engine,
        vec![
            set_grants(None, "plain", &["doc:a", "doc:*", "task:*"]),
            set_grants(None, "writer", &["doc:a"]),
        ],
    );
    let s = apply(&engine, vec![create_permission("doc:b")]);
    assert!(has(&s, None, "plain", "doc:b"));
    // `tasker` inherits from `plain`.
    assert!(has(&s, Some("org_a"), "tasker", "doc:b"));
    assert!(!has(&s, None, "writer", "doc:b"));
    assert!(!has(&s, None, "lead", "doc:b"));

    // A role gains a wildcard and a matching permission is declared in the
    // same batch.
    let s = apply(
        &engine,
        vec![
            set_grants(None, "writer", &["doc:*"]),
            create_permission("doc:c"),
        ],
    );
    assert!(has(&s, None, "lead", "doc:c"));
}

#[test]
fn many_permissions_declared_and_deleted_in_one_batch_agree_with_a_full_compile() {
    let engine = Engine::new(&policy()).expect("the policy compiles");
    let mut names: Vec<String> = (0..300)
        .map(|i| format!("{}:{i}", ["doc", "task", "doc:se", "misc"][i % 4]))
        .collect();
    // Tells `wide_s` (`doc:s*`) apart from `secret` (`doc:se*`) until deleted.
    names.push("doc:sx".to_owned());
    let s = apply(
        &engine,
        names.iter().map(|n| create_permission(n)).collect(),
    );
    assert!(has(&s, None, "wide_s", "doc:sx") && !has(&s, None, "secret", "doc:sx"));
    assert!(has(&s, None, "secret", "doc:se:2"));
    assert!(!has(&s, None, "secret", "doc:0"));
    // Every other one deleted (`doc:sx` too), with the original exact
    // grant's target.
    let mut batch: Vec<Change> = names
        .iter()
        .step_by(2)
        .map(|n| delete_permission(n))
        .collect();
    batch.push(set_grants(None, "plain", &[]));
    batch.push(delete_permission("doc:a"));
    let s = apply(&engine, batch);
    assert!(!has(&s, None, "root", "doc:0"));
    assert!(has(&s, None, "root", "task:1"));
    // Declared again: their retired ids back, through the wildcards.
    let s = apply(
        &engine,
        vec![create_permission("doc:0"), create_permission("doc:a")],
    );
    assert!(has(&s, None, "lead", "doc:0"));
    assert!(has(&s, None, "lead", "doc:a"));
    assert!(!has(&s, None, "plain", "doc:a"));
}
