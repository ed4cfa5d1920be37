//! Handles resolved once (requirements) stay right on every snapshot they
//! meet: another compile of the same policy, an engine's snapshots across
//! full and incremental recompiles, a permission deleted and declared again.
//! Never a quiet deny for a principal that holds what is required.

#![expect(
    clippy::unwrap_used,
    reason = "fixture helpers outside #[test] functions fail loudly on purpose"
)]

use rolegraph::{Change, ChangeMeta, Engine, Policy, Requirement, Role};

fn policy() -> Policy {
    let mut p = Policy::new();
    p.permission("doc:read")
        .permission("doc:write")
        .permission("user:admin");
    p.role("viewer").grant("doc:read");
    p.role("editor").extends("viewer").grant("doc:write");
    p.role("admin").extends("editor").grant("user:*");
    p.role("guest");
    p.organization("org_1").role("lead").extends("editor");
    p
}

fn meta() -> ChangeMeta {
    ChangeMeta::by("test")
}

/// Every kind of requirement, built on one snapshot.
fn requirements(s: &rolegraph::Snapshot) -> Vec<(&'static str, Requirement)> {
    vec![
        ("write", Requirement::permission(s, "doc:write").unwrap()),
        (
            "any",
            Requirement::any_of(s, ["user:admin", "doc:write"]).unwrap(),
        ),
        (
            "all",
            Requirement::all_of(s, ["doc:read", "doc:write"]).unwrap(),
        ),
        ("role", Requirement::role(s, "editor").unwrap()),
        (
            "or",
            Requirement::role(s, "admin")
                .unwrap()
                .or(Requirement::permission(s, "doc:write").unwrap()),
        ),
        (
            "and",
            Requirement::permission(s, "doc:read")
                .unwrap()
                .and(Requirement::permission(s, "doc:write").unwrap()),
        ),
    ]
}

#[test]
fn a_requirement_from_a_direct_compile_answers_on_an_engine_snapshot() {
    let policy = policy();
    let compiled = policy.compile().unwrap();
    let engine = Engine::new(&policy).unwrap();
    let live = engine.snapshot();
    for (what, req) in requirements(&compiled) {
        for (roles, expected) in [(&["editor"][..], true), (&["guest"][..], false)] {
            // The answer a requirement built on the live snapshot gives.
            let own = requirements(&live)
                .into_iter()
                .find(|(w, _)| *w == what)
                .unwrap()
                .1;
            let principal = live.principal(None, roles);
            assert_eq!(principal.satisfies(&own), expected, "{what} {roles:?}");
            assert_eq!(principal.satisfies(&req), expected, "{what} {roles:?}");
            // Asked again (cached now), and from the other side.
            assert_eq!(principal.satisfies(&req), expected, "{what} {roles:?}");
            assert_eq!(
                compiled.principal(None, roles).satisfies(&own),
                expected,
                "{what} {roles:?}"
            );
        }
        let lead = live.principal(Some("org_1"), ["lead"]);
        assert!(lead.satisfies(&req), "{what}: an org role extending editor");
    }
}

#[test]
fn requirements_from_two_compiles_combine() {
    let policy = policy();
    let (a, b) = (policy.compile().unwrap(), policy.compile().unwrap());
    let either = Requirement::role(&a, "admin")
        .unwrap()
        .or(Requirement::permission(&b, "doc:write").unwrap());
    let both = Requirement::permission(&a, "doc:read")
        .unwrap()
        .and(Requirement::permission(&b, "doc:write").unwrap());
    for s in [&a, &b] {
        assert!(s.principal(None, ["editor"]).satisfies(&either));
        assert!(s.principal(None, ["editor"]).satisfies(&both));
        assert!(!s.principal(None, ["viewer"]).satisfies(&both));
        assert!(!s.principal(None, ["guest"]).satisfies(&either));
    }
}

#[test]
fn start_up_requirements_survive_every_kind_of_recompile() {
    let engine = Engine::new(&policy()).unwrap();
    let reqs = requirements(&engine.snapshot());
    let check = |when: &str| {
        let s = engine.snapshot();
        for (what, req) in &reqs {
            assert!(
                s.principal(None, ["editor"]).satisfies(req),
                "{when}: {what}"
            );
            assert!(
                s.principal(Some("org_1"), ["lead"]).satisfies(req),
                "{when}: {what}"
            );
            assert!(
                !s.principal(None, ["guest"]).satisfies(req),
                "{when}: {what}"
            );
        }
    };
    // Incremental: a new role.
    engine
        .apply(
            Change::CreateRole {
                organization: None,
                role: Role::named("temp"),
            },
            meta(),
        )
        .unwrap();
    check("after an incremental patch");
    // Full: a role deletion renumbers roles; an organization change too.
    engine
        .apply(
            Change::DeleteRole {
                organization: None,
                name: "temp".into(),
                reassign_to: None,
                reparent: None,
            },
            meta(),
        )
        .unwrap();
    engine
        .apply(Change::CreateOrganization { id: "org_0".into() }, meta())
        .unwrap();
    assert!(engine.stats().full_compiles >= 2);
    check("after full recompiles");
}

#[test]
fn a_permission_deleted_and_declared_again_is_required_again() {
    let engine = Engine::new(&policy()).unwrap();
    let write = Requirement::permission(&engine.snapshot(), "doc:write").unwrap();
    let all = Requirement::all_of(&engine.snapshot(), ["doc:read", "doc:write"]).unwrap();
    engine
        .apply(
            Change::DeletePermission {
                name: "doc:write".into(),
            },
            meta(),
        )
        .unwrap();
    assert!(!engine
        .snapshot()
        .principal(None, ["editor"])
        .satisfies(&write));
    // A full recompile while the permission is gone.
    engine
        .apply(
            Change::DeleteRole {
                organization: None,
                name: "guest".into(),
                reassign_to: None,
                reparent: None,
            },
            meta(),
        )
        .unwrap();
    engine
        .apply_batch(
            vec![
                Change::CreatePermission {
                    name: "doc:write".into(),
                    description: None,
                },
                Change::GrantPermission {
                    organization: None,
                    role: "editor".into(),
                    permission: "doc:write".into(),
                },
            ],
            meta(),
        )
        .unwrap();
    let s = engine.snapshot();
    assert!(s.principal(None, ["editor"]).satisfies(&write));
    assert!(s.principal(None, ["editor"]).satisfies(&all));
    assert!(!s.principal(None, ["viewer"]).satisfies(&write));
}

#[test]
fn a_permission_another_compile_lacks_denies_there_until_declared() {
    let policy = policy();
    let compiled = policy.compile().unwrap();
    let write = Requirement::permission(&compiled, "doc:write").unwrap();
    let mut without = policy.clone();
    without.permissions.retain(|p| p.name != "doc:write");
    for r in &mut without.roles {
        r.permissions.retain(|p| p != "doc:write");
    }
    let engine = Engine::new(&without).unwrap();
    assert!(!engine
        .snapshot()
        .principal(None, ["editor"])
        .satisfies(&write));
    engine
        .apply_batch(
            vec![
                Change::CreatePermission {
                    name: "doc:write".into(),
                    description: None,
                },
                Change::GrantPermission {
                    organization: None,
                    role: "viewer".into(),
                    permission: "doc:write".into(),
                },
            ],
            meta(),
        )
        .unwrap();
    assert!(
        engine
            .snapshot()
            .principal(None, ["editor"])
            .satisfies(&write),
        "declared later in that lineage, it is found"
    );
}

#[test]
fn a_role_requirement_answers_each_snapshot_by_its_own_hierarchy() {
    let engine = Engine::new(&policy()).unwrap();
    let editor = Requirement::role(&engine.snapshot(), "editor").unwrap();
    let old = engine.snapshot();
    // `admin` stops extending `editor`.
    engine
        .apply(
            Change::UpdateRole {
                organization: None,
                name: "admin".into(),
                display_name: None,
                description: None,
                permissions: None,
                extends: Some(vec!["viewer".into()]),
            },
            meta(),
        )
        .unwrap();
    let new = engine.snapshot();
    // Interleaved, as requests in flight during a swap are.
    for _ in 0..3 {
        assert!(old.principal(None, ["admin"]).satisfies(&editor));
        assert!(!new.principal(None, ["admin"]).satisfies(&editor));
        assert!(new.principal(None, ["editor"]).satisfies(&editor));
    }
}

#[test]
fn role_ids_survive_patches_and_are_refused_after_a_renumbering() {
    let engine = Engine::new(&policy()).unwrap();
    let first = engine.snapshot();
    let editor = first.role(None, "editor").unwrap();
    let held = |s: &rolegraph::Snapshot| {
        s.principal_from_roles(&[editor])
            .map(|p| p.permissions().join(","))
    };
    assert_eq!(held(&first).unwrap(), "doc:read,doc:write");
    // An incremental patch keeps every id.
    engine
        .apply(
            Change::CreateRole {
                organization: None,
                role: Role::named("temp"),
            },
            meta(),
        )
        .unwrap();
    let patched = engine.snapshot();
    assert_eq!(held(&patched).unwrap(), "doc:read,doc:write");
    assert_eq!(patched.role_name(editor), "editor");
    // A full recompile renumbers: the old id is refused, never read as
    // whichever role now has its index.
    engine
        .apply(
            Change::DeleteRole {
                organization: None,
                name: "viewer".into(),
                reassign_to: None,
                reparent: Some(rolegraph::Reparent::ToBases),
            },
            meta(),
        )
        .unwrap();
    let renumbered = engine.snapshot();
    let err = held(&renumbered).unwrap_err();
    assert!(
        matches!(err, rolegraph::LookupError::ForeignRole { .. }),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "role id {} is from another compiled policy; resolve the role again by name",
            editor.index()
        )
    );
    assert_eq!(renumbered.role_name(editor), "");
    assert!(!renumbered.role_has_permission(editor, "doc:write"));
    assert_eq!(renumbered.role_bases(editor).count(), 0);
    // Resolved again by name, it works.
    let again = renumbered.role(None, "editor").unwrap();
    assert_eq!(
        renumbered
            .principal_from_roles(&[again])
            .unwrap()
            .permissions(),
        ["doc:write"]
    );
    // An id from an unrelated compile of the same policy is refused too.
    let other = policy().compile().unwrap();
    let foreign = other.role(None, "editor").unwrap();
    assert!(first.principal_from_roles(&[foreign]).is_err());
    assert_eq!(first.role_organization(foreign), None);
}
