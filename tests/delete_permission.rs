//! Deleting permissions through the engine: the roles that lose a grant are
//! found through the model's grant index, which must follow every change
//! made earlier in the same batch (grants, revocations, created and deleted
//! roles, a deleted organization). The result is compared with the naive
//! deletion — every role of every scope scanned — on the policy, the roles
//! the outcome reports, and the compiled snapshot (by the testkit oracle).

use rolegraph::{Change, ChangeMeta, Engine, Policy, Reparent, Role};
use rolegraph_testkit::{assert_equivalent, Probe};

const ORGS: usize = 30;

fn perm(i: usize) -> String {
    format!("p:{i}")
}

/// 10 permissions; environment roles `e0`..`e4` granting two each (`e4`
/// also `p:*`); 30 organizations whose role `r{j}` grants `p:{(o + j) % 10}`
/// and extends `e{j}`.
fn policy() -> Policy {
    let mut p = Policy::builder();
    for i in 0..10 {
        p.permission(perm(i));
    }
    for e in 0..5 {
        p.role(format!("e{e}")).grant(perm(e)).grant(perm(e + 5));
    }
    p.role("e4").grant("p:*");
    for o in 0..ORGS {
        let org = p.organization(format!("org_{o:02}"));
        for j in 0..3 {
            org.role(format!("r{j}"))
                .grant(perm((o + j) % 10))
                .extends(format!("e{j}"));
        }
    }
    p.build()
}

/// Changes to grants and roles made before the deletes, in the same batch.
fn edits() -> Vec<Change> {
    let mut new_role = Role::named("fresh");
    new_role.grant(perm(3)).grant(perm(4));
    vec![
        Change::GrantPermission {
            organization: Some("org_05".into()),
            role: "r1".into(),
            permission: perm(3),
        },
        Change::RevokePermission {
            organization: None,
            role: "e3".into(),
            permission: perm(3),
        },
        Change::DeleteRole {
            organization: Some("org_01".into()),
            name: "r2".into(),
            reassign_to: None,
            reparent: Some(Reparent::Detach),
        },
        Change::DeleteOrganization {
            id: "org_11".into(),
        },
        Change::CreateRole {
            organization: Some("org_02".into()),
            role: new_role,
        },
        Change::UpdateRole {
            organization: Some("org_13".into()),
            name: "r0".into(),
            display_name: None,
            description: None,
            permissions: Some(vec![perm(4), perm(3), perm(4)]),
            extends: None,
        },
    ]
}

/// The deletion of `names` as the model did it before its index: every
/// role of every scope scanned, environment first, organizations by id,
/// roles by name (the model's order). Returns the roles that lost a grant.
fn naive_delete(policy: &mut Policy, names: &[String]) -> Vec<String> {
    let mut affected = Vec::new();
    for name in names {
        policy.permissions.retain(|p| &p.name != name);
        let mut roles: Vec<(Option<&str>, &mut Role)> =
            policy.roles.iter_mut().map(|r| (None, r)).collect();
        for org in &mut policy.organizations {
            roles.extend(org.roles.iter_mut().map(|r| (Some(org.id.as_str()), r)));
        }
        roles.sort_by(|a, b| (a.0, &a.1.name).cmp(&(b.0, &b.1.name)));
        for (org, role) in roles {
            if role.permissions.contains(name) {
                role.permissions.retain(|p| p != name);
                affected.push(match org {
                    Some(o) => format!("{o}/{}", role.name),
                    None => role.name.clone(),
                });
            }
        }
    }
    affected
}

#[test]
fn deletes_after_edits_in_one_batch_equal_the_naive_scan() {
    let deleted = [perm(3), perm(4)];
    // The state the deletes start from, through the engine.
    let before = Engine::new(&policy()).expect("the fixture compiles");
    before
        .apply_batch(edits(), ChangeMeta::default())
        .expect("the edits apply");
    let mut expected = before.policy();
    let affected = naive_delete(&mut expected, &deleted);
    assert!(affected.len() > ORGS / 2, "{affected:?}");

    // The edits and the deletes in one batch.
    let engine = Engine::new(&policy()).expect("the fixture compiles");
    let mut batch = edits();
    batch.extend(
        deleted
            .iter()
            .map(|name| Change::DeletePermission { name: name.clone() }),
    );
    let outcome = engine
        .apply_batch(batch, ChangeMeta::default())
        .expect("the batch applies");

    assert_eq!(engine.policy(), expected);
    // Only the deletes report roles affected (the engine sorts them; the
    // model's own order is its unit property's business).
    let mut affected = affected;
    affected.sort();
    assert_eq!(outcome.roles_affected, affected);
    let full = expected.compile().expect("the expected policy compiles");
    assert_equivalent(&engine.snapshot(), &full, &Probe::default());
}
