//! The incrementally maintained snapshot answers exactly like a full compile
//! of the same policy, after any sequence of changes, accepted or rejected.
#![expect(
    clippy::indexing_slicing,
    reason = "test helpers outside #[test] functions fail loudly on purpose"
)]

use std::collections::BTreeSet;

use proptest::prelude::*;
use rolegraph::{Change, ChangeMeta, Engine, Policy, Reparent, Requirement, Role, Snapshot};
use rolegraph_testkit::Probe;

const ORGS: [&str; 2] = ["org_a", "org_b"];

fn perm_name(i: usize) -> String {
    format!("{}:{}", ["doc", "task", "user"][i % 3], i / 3)
}

fn role_name(i: usize) -> String {
    format!("r{i}")
}

fn org(i: usize) -> Option<String> {
    match i % 3 {
        0 => None,
        k => Some(ORGS[k - 1].to_owned()),
    }
}

fn grant(i: usize) -> String {
    match i % 9 {
        0 => "doc:*".into(),
        1 => "*".into(),
        2 => "task:*".into(),
        3 => "nope:x".into(),
        _ => perm_name(i),
    }
}

/// A valid starting policy: roles extend earlier roles only.
fn initial_policy(perms: usize, roles: &[(Vec<usize>, Vec<usize>)]) -> Policy {
    let mut p = Policy::new();
    for i in 0..perms {
        p.permission(perm_name(i));
    }
    for (i, (bases, grants)) in roles.iter().enumerate() {
        let r = p.role(role_name(i));
        for b in bases.iter().filter(|b| **b < i) {
            r.extends(role_name(*b));
        }
        for g in grants {
            let g = perm_name(*g % perms.max(1));
            if perms > 0 {
                r.grant(g);
            }
        }
    }
    p.organization("org_a")
        .role("lead")
        .extends(role_name(0))
        .grant("task:*");
    p.organization("org_a").map_group("Eng", [role_name(0)]);
    p.organization("org_b");
    p
}

fn change_strategy() -> impl Strategy<Value = Change> {
    let name = 0usize..12;
    prop_oneof![
        (0usize..15).prop_map(|i| Change::CreatePermission {
            name: perm_name(i),
            description: None
        }),
        (0usize..15).prop_map(|i| Change::DeletePermission { name: perm_name(i) }),
        (0usize..15).prop_map(|i| Change::UpdatePermission {
            name: perm_name(i),
            description: Some(format!("d{i}"))
        }),
        (
            name.clone(),
            0usize..3,
            prop::collection::vec(0usize..12, 0..3),
            prop::collection::vec(0usize..20, 0..3)
        )
            .prop_map(|(n, o, bases, grants)| Change::CreateRole {
                organization: org(o),
                role: Role {
                    name: role_name(n),
                    permissions: grants.into_iter().map(grant).collect(),
                    extends: bases.into_iter().map(role_name).collect(),
                    ..Role::default()
                },
            }),
        (
            name.clone(),
            0usize..3,
            prop::option::of(prop::collection::vec(0usize..20, 0..3)),
            prop::option::of(prop::collection::vec(0usize..12, 0..3))
        )
            .prop_map(|(n, o, grants, bases)| Change::UpdateRole {
                organization: org(o),
                name: role_name(n),
                display_name: None,
                description: None,
                permissions: grants.map(|g| g.into_iter().map(grant).collect()),
                extends: bases.map(|b| b.into_iter().map(role_name).collect()),
            }),
        (name.clone(), 0usize..3, 0usize..20).prop_map(|(n, o, g)| Change::GrantPermission {
            organization: org(o),
            role: role_name(n),
            permission: grant(g)
        }),
        (name.clone(), 0usize..3, 0usize..20).prop_map(|(n, o, g)| Change::RevokePermission {
            organization: org(o),
            role: role_name(n),
            permission: grant(g)
        }),
        (
            name.clone(),
            0usize..3,
            prop::option::of(0usize..12),
            0usize..4
        )
            .prop_map(|(n, o, to, rp)| Change::DeleteRole {
                organization: org(o),
                name: role_name(n),
                reassign_to: to.map(role_name),
                reparent: match rp {
                    0 => None,
                    1 => Some(Reparent::Detach),
                    2 => Some(Reparent::ToBases),
                    _ => Some(Reparent::To(role_name(0))),
                },
            }),
        (
            prop::option::of(name.clone()),
            prop::option::of(name.clone())
        )
            .prop_map(|(c, m)| Change::SetDefaultRoles {
                creator: c.map(role_name),
                member: m.map(role_name)
            }),
        (0usize..2, prop::option::of(name.clone())).prop_map(|(o, r)| {
            Change::SetOrganizationDefaultRole {
                organization: ORGS[o].into(),
                role: r.map(role_name),
            }
        }),
        (
            0usize..2,
            0usize..3,
            prop::collection::vec(name.clone(), 0..3)
        )
            .prop_map(|(o, g, roles)| Change::SetGroupRoles {
                organization: ORGS[o].into(),
                group: ["Eng", "Ops", "dirgroup_1"][g].into(),
                roles: roles.into_iter().map(role_name).collect(),
            }),
        (
            0usize..3,
            0usize..4,
            prop::collection::vec(name.clone(), 0..3),
            any::<bool>(),
            prop::option::of(prop::collection::vec(0usize..3, 0..3)),
        )
            .prop_map(|(o, u, roles, creator, groups)| Change::SetMembership {
                organization: ["org_a", "org_b", "org_z"][o].into(),
                user: format!("u{u}"),
                roles: roles.into_iter().map(role_name).collect(),
                // Directory groups: mapped ones, and ones no mapping names.
                groups: groups.map(|g| g.into_iter().map(|i| GROUPS[i].to_owned()).collect()),
                creator,
            }),
        (
            0usize..2,
            0usize..4,
            prop::collection::vec(name.clone(), 1..3)
        )
            .prop_map(|(o, u, roles)| Change::RemoveMembershipRoles {
                organization: ORGS[o].into(),
                user: format!("u{u}"),
                roles: roles.into_iter().map(role_name).collect(),
            }),
        (0usize..4).prop_map(|u| Change::RemoveUser {
            user: format!("u{u}")
        }),
        (0usize..3).prop_map(|o| Change::CreateOrganization {
            id: ["org_a", "org_b", "org_c"][o].into()
        }),
        (0usize..3).prop_map(|o| Change::DeleteOrganization {
            id: ["org_a", "org_b", "org_c"][o].into()
        }),
    ]
}

/// The group names the strategies use.
const GROUPS: &[&str] = &["Eng", "Ops", "dirgroup_1"];

/// The policy's answers (the shared oracle's) and every membership.
fn answers(s: &Snapshot) -> Vec<String> {
    let mut out = rolegraph_testkit::answers(s, GROUPS);
    for o in ["org_a", "org_b", "org_z"] {
        for u in 0..4 {
            let user = format!("u{u}");
            let roles: BTreeSet<&str> = s
                .user_roles(o, &user)
                .into_iter()
                .map(|r| s.role_name(r))
                .collect();
            out.push(format!(
                "member {o}/{user} {:?} {roles:?}",
                s.membership(o, &user)
            ));
        }
    }
    out
}

static INCREMENTAL_RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static INCREMENTAL_PATCHES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

proptest! {
    // 96 cases by default; PROPTEST_CASES=N runs more (a long soak).
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(96),
        ..ProptestConfig::default()
    })]

    #[test]
    fn incremental_equals_full_compile(
        perms in 0usize..9,
        roles in prop::collection::vec((prop::collection::vec(0usize..10, 0..3), prop::collection::vec(0usize..20, 0..3)), 1..10),
        changes in prop::collection::vec(change_strategy(), 1..40),
        batch_sizes in prop::collection::vec(1usize..4, 40),
    ) {
        let policy = initial_policy(perms, &roles);
        INCREMENTAL_RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let engine = Engine::new(&policy).unwrap();
        let first = engine.snapshot();
        let stable: Vec<(String, Requirement)> = first
            .permissions()
            .map(|p| (p.to_owned(), Requirement::permission(&first, p).unwrap()))
            .collect();
        let mut rest = changes.as_slice();
        let mut sizes = batch_sizes.iter().cycle();
        while !rest.is_empty() {
            let n = (*sizes.next().unwrap()).min(rest.len());
            let (batch, tail) = rest.split_at(n);
            rest = tail;
            let before = engine.snapshot();
            let before_answers = answers(&before);
            match engine.apply_batch(batch.to_vec(), ChangeMeta::by("test")) {
                Ok(outcome) => {
                    let after = engine.snapshot();
                    prop_assert_eq!(outcome.revision, after.revision());
                    if outcome.changed {
                        prop_assert_eq!(after.revision(), before.revision() + 1);
                    } else {
                        prop_assert_eq!(after.revision(), before.revision());
                    }
                }
                Err(e) => {
                    // Rejected: nothing moved.
                    let after = engine.snapshot();
                    prop_assert_eq!(after.revision(), before.revision(), "{}", e);
                    prop_assert_eq!(answers(&after), before_answers);
                    prop_assert!(!e.to_string().is_empty() && !e.to_string().contains('\n') || matches!(e, rolegraph::ChangeError::Invalid(_)));
                }
            }
            let live = engine.snapshot();
            let full = engine.policy().compile().unwrap();
            // Every compiled bit, answer and explanation, by name.
            let probe = Probe { groups: GROUPS, seed: live.revision(), ..Probe::default() };
            if let Err(diff) = rolegraph_testkit::equivalent(&live, &full, &probe) {
                prop_assert!(false, "after {:?}: {}", batch, diff);
            }
            // Each distinct row stored once, patched or compiled whole.
            for s in [&live, &full] {
                if let Err(diff) = rolegraph_testkit::rows_match_distinct_sets(s) {
                    prop_assert!(false, "after {:?}: {}", batch, diff);
                }
            }

            // The membership index answers as the naive oracle, for every
            // user and organization the strategies touch (and absent ones).
            for o in ["org_a", "org_b", "org_c", "org_z"] {
                for u in 0..5 {
                    if let Err(diff) = rolegraph_testkit::membership_equivalent(&live, o, &format!("u{u}")) {
                        prop_assert!(false, "after {:?}: {}", batch, diff);
                    }
                }
            }
            prop_assert_eq!(
                live.memberships_len(),
                ["org_a", "org_b", "org_c", "org_z"].iter().map(|o| (0..5).filter(|u| live.memberships_of(&format!("u{u}")).any(|(x, _)| x == *o)).count()).sum::<usize>()
            );
            // Every membership names roles that exist where it is held.
            for o in ["org_a", "org_b", "org_z"] {
                for u in 0..4 {
                    if let Some(m) = live.membership(o, &format!("u{u}")) {
                        for r in &m.roles {
                            prop_assert!(live.role(Some(o), r).is_some(), "{o}/u{u} holds missing role {r}");
                        }
                    }
                }
            }
            INCREMENTAL_PATCHES.fetch_max(engine.stats().incremental_compiles, std::sync::atomic::Ordering::Relaxed);
            // Requirements resolved on the first snapshot still answer as
            // the full compile does.
            let full_roles = rolegraph_testkit::roles_by_key(&full);
            for (name, req) in &stable {
                for r in live.roles() {
                    let expected = full.role_has_permission(full_roles[&rolegraph_testkit::key(&live, r)], name);
                    prop_assert_eq!(live.principal_from_roles(&[r]).unwrap().satisfies(req), expected, "{} on {}", name, live.role_name(r));
                }
            }
        }
    }
}

#[test]
fn the_property_exercises_the_incremental_path() {
    incremental_equals_full_compile();
    assert!(INCREMENTAL_RUNS.load(std::sync::atomic::Ordering::Relaxed) > 0);
    assert!(
        INCREMENTAL_PATCHES.load(std::sync::atomic::Ordering::Relaxed) > 3,
        "the random changes should be patched incrementally, not only recompiled"
    );
}

#[test]
fn rejected_changes_leave_revision_and_answers_alone() {
    let mut policy = Policy::new();
    policy.permission("a:read").permission("a:write");
    policy.role("viewer").grant("a:read");
    policy.role("editor").extends("viewer").grant("a:write");
    policy.role("lead").extends("editor");
    let engine = Engine::new(&policy).unwrap();
    engine
        .apply(
            Change::GrantPermission {
                organization: None,
                role: "lead".into(),
                permission: "a:read".into(),
            },
            ChangeMeta::default(),
        )
        .unwrap();
    let before = engine.snapshot();
    let before_answers = answers(&before);

    // A cycle introduced by an update.
    let err = engine
        .apply(
            Change::UpdateRole {
                organization: None,
                name: "viewer".into(),
                display_name: None,
                description: None,
                permissions: None,
                extends: Some(vec!["lead".into()]),
            },
            ChangeMeta::default(),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "role inheritance has a cycle among `editor`, `lead`, `viewer`: `editor` -> `viewer` -> `lead` -> `editor`"
    );
    // Deleting a base role with dependents.
    let err = engine
        .apply(
            Change::DeleteRole {
                organization: None,
                name: "viewer".into(),
                reassign_to: None,
                reparent: None,
            },
            ChangeMeta::default(),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot delete role `viewer`: `editor` extend it; say how to re-parent them"
    );
    // An unknown permission.
    let err = engine
        .apply(
            Change::GrantPermission {
                organization: None,
                role: "editor".into(),
                permission: "a:delete".into(),
            },
            ChangeMeta::default(),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "role `editor` grants undeclared permission `a:delete`"
    );
    // A batch whose second change fails applies nothing.
    let err = engine
        .apply_batch(
            vec![
                Change::CreatePermission {
                    name: "a:admin".into(),
                    description: None,
                },
                Change::GrantPermission {
                    organization: None,
                    role: "ghost".into(),
                    permission: "a:admin".into(),
                },
            ],
            ChangeMeta::default(),
        )
        .unwrap_err();
    assert_eq!(err.to_string(), "role `ghost` does not exist");

    let after = engine.snapshot();
    assert_eq!(after.revision(), before.revision());
    assert_eq!(answers(&after), before_answers);
    assert!(after.permission_id("a:admin").is_none());
    let stats = engine.stats();
    assert_eq!((stats.accepted, stats.rejected), (1, 4));
    assert_eq!(
        stats.last_error.as_deref(),
        Some("role `ghost` does not exist")
    );
}

#[test]
fn deleting_a_granted_permission_drops_the_grants_and_says_where() {
    let mut policy = Policy::new();
    policy.permission("a:read").permission("a:write");
    policy.role("viewer").grant("a:read");
    policy
        .role("editor")
        .extends("viewer")
        .grant("a:write")
        .grant("a:read");
    policy.organization("org_1").role("boss").grant("a:read");
    let engine = Engine::new(&policy).unwrap();
    let read = Requirement::permission(&engine.snapshot(), "a:read").unwrap();
    let outcome = engine
        .apply(
            Change::DeletePermission {
                name: "a:read".into(),
            },
            ChangeMeta::default(),
        )
        .unwrap();
    assert_eq!(outcome.roles_affected, ["editor", "org_1/boss", "viewer"]);
    let s = engine.snapshot();
    assert!(
        !s.principal(None, ["editor"]).satisfies(&read),
        "a deleted permission denies"
    );
    // Declared again, it is a fresh permission nobody holds; the old requirement sees it.
    engine
        .apply(
            Change::CreatePermission {
                name: "a:read".into(),
                description: None,
            },
            ChangeMeta::default(),
        )
        .unwrap();
    engine
        .apply(
            Change::GrantPermission {
                organization: None,
                role: "viewer".into(),
                permission: "a:read".into(),
            },
            ChangeMeta::default(),
        )
        .unwrap();
    assert!(engine
        .snapshot()
        .principal(None, ["editor"])
        .satisfies(&read));
}

#[test]
fn setting_the_same_thing_twice_is_one_revision() {
    let mut policy = Policy::new();
    policy.permission("a:read");
    policy.role("viewer").grant("a:read");
    policy.set_default_member_role("viewer");
    let engine = Engine::new(&policy).unwrap();
    let set = Change::SetMembership {
        organization: "o".into(),
        user: "u".into(),
        roles: vec!["viewer".into()],
        groups: None,
        creator: false,
    };
    assert!(
        engine
            .apply(set.clone(), ChangeMeta::default())
            .unwrap()
            .changed
    );
    let again = engine.apply(set, ChangeMeta::default()).unwrap();
    assert!(!again.changed);
    assert_eq!(again.revision, 1);
    assert_eq!(engine.revision(), 1);
    // A new membership without roles gets the default member role.
    engine
        .apply(
            Change::SetMembership {
                organization: "o".into(),
                user: "v".into(),
                roles: vec![],
                groups: None,
                creator: false,
            },
            ChangeMeta::default(),
        )
        .unwrap();
    assert_eq!(
        engine.snapshot().membership("o", "v").unwrap().roles,
        ["viewer"]
    );
}

#[test]
fn an_organization_gaining_its_first_role_resolves_it_for_tokens() {
    let mut policy = Policy::new();
    policy.permission("a:read").permission("a:write");
    policy.role("viewer").grant("a:read");
    policy.organization("org_1");
    let engine = Engine::new(&policy).unwrap();
    let write = Requirement::permission(&engine.snapshot(), "a:write").unwrap();
    let before = engine.snapshot();
    assert!(!before.principal(Some("org_1"), ["boss"]).satisfies(&write));
    assert!(before.principal(Some("org_1"), ["viewer"]).unknown_roles() == 0);
    engine
        .apply(
            Change::CreateRole {
                organization: Some("org_1".into()),
                role: Role {
                    name: "boss".into(),
                    permissions: vec!["a:write".into()],
                    extends: vec!["viewer".into()],
                    ..Role::default()
                },
            },
            ChangeMeta::default(),
        )
        .unwrap();
    let after = engine.snapshot();
    let boss = after.principal(Some("org_1"), ["boss", "viewer"]);
    assert!(boss.satisfies(&write));
    assert_eq!(boss.unknown_roles(), 0);
    // Environment roles still resolve from the organization, and the org role
    // stays invisible outside it.
    assert!(!after.principal(None, ["boss"]).satisfies(&write));
    assert_eq!(engine.stats().incremental_compiles, 1);
}

#[test]
fn permission_names_and_sizes_follow_the_lineage() {
    let mut policy = Policy::new();
    policy.permission("a:read").permission("a:write");
    policy.role("viewer").grant("a:read");
    let engine = Engine::new(&policy).unwrap();
    let first = engine.snapshot();
    let read = first.permission_id("a:read").unwrap();
    assert_eq!(first.permission_name(read), Some("a:read"));
    // One role, two permissions: one row of one word, and the role's 4-byte
    // key to it; the whole snapshot is more.
    assert_eq!(first.bitset_bytes(), 8 + 4);
    assert!(first.memory_bytes() > first.bitset_bytes());
    engine
        .apply(
            Change::DeletePermission {
                name: "a:read".into(),
            },
            ChangeMeta::default(),
        )
        .unwrap();
    let after = engine.snapshot();
    assert_eq!(
        after.permission_name(read),
        None,
        "a deleted id has no name"
    );
    assert_eq!(
        first.permission_name(read),
        Some("a:read"),
        "old snapshots are untouched"
    );
    engine
        .apply(
            Change::CreatePermission {
                name: "a:read".into(),
                description: None,
            },
            ChangeMeta::default(),
        )
        .unwrap();
    let again = engine.snapshot();
    assert_eq!(
        again.permission_id("a:read"),
        Some(read),
        "declared again, it gets its id back"
    );
    assert_eq!(again.permission_name(read), Some("a:read"));
}

#[test]
fn a_group_mapping_changed_after_the_membership_resolves_it_again() {
    // The membership index resolves roles when a snapshot is published: a
    // batch that only remaps a group must still reach memberships it did
    // not touch.
    let mut policy = Policy::new();
    policy.permission("a:read");
    policy.role("viewer").grant("a:read");
    policy.organization("o");
    let engine = Engine::new(&policy).unwrap();
    let meta = || ChangeMeta::by("test");
    engine
        .apply(
            Change::SetMembership {
                organization: "o".into(),
                user: "u".into(),
                roles: vec![],
                groups: Some(vec!["Eng".into()]),
                creator: false,
            },
            meta(),
        )
        .unwrap();
    let read = Requirement::permission(&engine.snapshot(), "a:read").unwrap();
    assert!(engine.snapshot().user_roles("o", "u").is_empty());
    assert!(!engine.snapshot().user_principal("o", "u").satisfies(&read));
    engine
        .apply(
            Change::SetGroupRoles {
                organization: "o".into(),
                group: "Eng".into(),
                roles: vec!["viewer".into()],
            },
            meta(),
        )
        .unwrap();
    let s = engine.snapshot();
    rolegraph_testkit::membership_equivalent(&s, "o", "u").unwrap();
    assert_eq!(s.user_roles("o", "u"), [s.role(None, "viewer").unwrap()]);
    assert!(s.user_principal("o", "u").satisfies(&read));
}
