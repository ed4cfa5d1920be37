//! Grants and inheritance, token resolution, requirements, explanations,
//! defaults and group mappings on compiled snapshots.

#![expect(
    clippy::unwrap_used,
    reason = "helpers outside #[test] functions may fail the test"
)]

use rolegraph::{
    Claims, LookupError, PermissionReason, Policy, Requirement, RoleId, RoleReason, Snapshot,
    Warning,
};

/// A small product policy: wildcards, a diamond-free chain, an organization
/// with an override and group mappings.
fn policy() -> Policy {
    let mut p = Policy::new();
    for name in [
        "projects:read",
        "projects:update",
        "projects:delete",
        "projects_archive:read",
        "tasks:assign",
        "users.write",
        "roles.assign",
        "billing:read",
    ] {
        p.permission(name);
    }
    p.role("viewer").grant("projects:read");
    p.role("editor").extends("viewer").grant("projects:update");
    p.role("planner").grant("tasks:assign");
    p.role("lead").extends("editor").extends("planner");
    p.role("admin").grant("*");
    p.role("projects_owner").grant("projects:*");
    p.role("hr").grant("users.write");
    p.set_default_member_role("viewer")
        .set_default_creator_role("admin");
    let org = p.organization("org_1");
    org.role("manager").extends("lead").grant("projects:*");
    org.role("accountant").grant("billing:read");
    org.set_default_member_role("editor");
    org.map_group("Engineering", ["editor"])
        .map_group("dirgroup_123", ["planner"])
        .map_group("Finance", ["accountant", "viewer"]);
    p.organization("org_2").map_group("Everyone", ["viewer"]);
    p
}

fn snapshot() -> Snapshot {
    policy().compile().unwrap()
}

fn has(s: &Snapshot, org: Option<&str>, role: &str, perm: &str) -> bool {
    s.role_has_permission(s.role(org, role).unwrap(), perm)
}

fn names(s: &Snapshot, roles: &[RoleId]) -> Vec<String> {
    let mut out: Vec<String> = roles.iter().map(|r| s.role_name(*r).to_owned()).collect();
    out.sort();
    out
}

fn perm(s: &Snapshot, name: &str) -> Requirement {
    Requirement::permission(s, name).unwrap()
}

// ------------------------------------------------------------ wildcards

#[test]
fn wildcards_expand_to_declared_permissions_by_prefix() {
    let s = snapshot();
    let owner = s.role(None, "projects_owner").unwrap();
    for p in ["projects:read", "projects:update", "projects:delete"] {
        assert!(s.role_has_permission(owner, p), "{p}");
    }
    // `projects:*` is a prefix on `projects:`, not on `projects`.
    assert!(!s.role_has_permission(owner, "projects_archive:read"));
    assert!(!s.role_has_permission(owner, "tasks:assign"));
    let admin = s.role(None, "admin").unwrap();
    for p in s.permissions() {
        assert!(s.role_has_permission(admin, p), "`*` grants {p}");
    }
    assert_eq!(s.permissions().count(), 8);
}

#[test]
fn a_wildcard_matching_nothing_is_valid_and_picks_up_later_permissions() {
    let mut p = Policy::new();
    p.permission("a:read");
    p.role("future").grant("reports:*");
    let s = p.compile().unwrap();
    let future = s.role(None, "future").unwrap();
    assert!(!s.role_has_permission(future, "a:read"));
    assert!(s.effective_permissions(None, "future").unwrap().is_empty());
    assert!(s.warnings().contains(&Warning::WildcardMatchesNothing {
        role: "future".into(),
        organization: None,
        grant: "reports:*".into(),
    }));

    p.permission("reports:view");
    let s = p.compile().unwrap();
    let future = s.role(None, "future").unwrap();
    assert!(s.role_has_permission(future, "reports:view"));
    let eff = s.effective_permissions(None, "future").unwrap();
    assert_eq!(eff.len(), 1);
    assert_eq!(eff[0].grant, "reports:*");
}

#[test]
fn the_most_specific_grant_is_named_whatever_the_declaration_order() {
    let grant_of = |p: &Policy, role: &str, perm: &str| {
        let s = p.compile().unwrap();
        let eff = s.effective_permissions(None, role).unwrap();
        eff.into_iter().find(|e| e.name == perm).unwrap().grant
    };
    let mut p = Policy::new();
    p.permission("projects:read").permission("tasks:read");
    // `*` is seen first in the policy and first in `admin`'s grants.
    p.role("early").grant("*");
    p.role("admin").grant("*").grant("projects:*");
    assert_eq!(grant_of(&p, "admin", "projects:read"), "projects:*");
    assert_eq!(grant_of(&p, "admin", "tasks:read"), "*");
    p.roles.reverse();
    p.roles[0].permissions.reverse();
    assert_eq!(grant_of(&p, "admin", "projects:read"), "projects:*");
    // An exact grant beats any wildcard.
    p.role("admin").grant("projects:read");
    assert_eq!(grant_of(&p, "admin", "projects:read"), "projects:read");
}

#[test]
fn a_policy_with_no_permissions_and_wildcards_compiles() {
    let mut p = Policy::new();
    p.role("all").grant("*");
    let s = p.compile().unwrap();
    assert_eq!(s.permissions_len(), 0);
    let all = s.role(None, "all").unwrap();
    assert!(!s.role_has_permission(all, "anything"));
    assert!(s.principal(None, ["all"]).permissions().is_empty());
}

// ---------------------------------------------------------- inheritance

#[test]
fn inheritance_only_adds() {
    let mut p = policy();
    p.role("editor").grant("projects:read");
    let s = p.compile().unwrap();
    let eff = s.effective_permissions(None, "editor").unwrap();
    let read = eff.iter().find(|e| e.name == "projects:read").unwrap();
    assert_eq!(
        eff.path(read),
        ["editor"],
        "the direct grant is the shortest path"
    );

    // Removing the direct grant leaves the inherited one.
    p.role("editor")
        .permissions
        .retain(|g| g != "projects:read");
    let s = p.compile().unwrap();
    assert!(has(&s, None, "editor", "projects:read"));
    let eff = s.effective_permissions(None, "editor").unwrap();
    let read = eff.iter().find(|e| e.name == "projects:read").unwrap();
    assert_eq!(eff.path(read), ["editor", "viewer"]);
    assert_eq!(read.role, "viewer");

    // A base role's grant reaches every role below it.
    p.role("viewer").grant("tasks:assign");
    let s = p.compile().unwrap();
    for role in ["viewer", "editor", "lead"] {
        assert!(has(&s, None, role, "tasks:assign"), "{role}");
    }
    assert!(has(&s, Some("org_1"), "manager", "tasks:assign"));
}

#[test]
fn effective_permissions_has_scalekits_permissions_all_shape() {
    let s = snapshot();
    let eff = s.effective_permissions(Some("org_1"), "manager").unwrap();
    let rows: Vec<(String, Vec<String>, String)> = eff
        .iter()
        .map(|e| {
            let path = eff.path(e).into_iter().map(str::to_owned).collect();
            (e.name.clone(), path, e.grant.clone())
        })
        .collect();
    let row = |n: &str, path: &[&str], g: &str| {
        (
            n.to_owned(),
            path.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
            g.to_owned(),
        )
    };
    assert_eq!(
        rows,
        [
            row("projects:delete", &["manager"], "projects:*"),
            row("projects:read", &["manager"], "projects:*"),
            row("projects:update", &["manager"], "projects:*"),
            row(
                "tasks:assign",
                &["manager", "lead", "planner"],
                "tasks:assign"
            ),
        ]
    );
    assert_eq!(eff[3].source_role(), "planner");
    assert_eq!(eff.get("tasks:assign"), Some(&eff[3]));
    assert_eq!(eff.get("tasks:read"), None);
    // Scalekit's entry: the permission and the role it comes from.
    let json = serde_json::to_value(&eff[3]).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "name": "tasks:assign",
            "role_name": "planner",
            "grant": "tasks:assign"
        })
    );

    assert_eq!(
        s.effective_permissions(Some("org_9"), "viewer"),
        Err(LookupError::UnknownOrganization { id: "org_9".into() })
    );
    assert_eq!(
        s.effective_permissions(None, "manager"),
        Err(LookupError::UnknownRole {
            name: "manager".into(),
            organization: None
        })
    );
    let err = s
        .effective_permissions(Some("org_2"), "manager")
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "role `manager` does not exist in organization `org_2`"
    );
    // Environment roles are in reach from an organization.
    assert_eq!(
        s.effective_permissions(Some("org_2"), "viewer").unwrap(),
        s.effective_permissions(None, "viewer").unwrap()
    );
}

#[test]
fn roles_granting_lists_every_role_with_the_permission() {
    let s = snapshot();
    assert_eq!(
        names(&s, &s.roles_granting("tasks:assign").unwrap()),
        ["admin", "lead", "manager", "planner"]
    );
    assert_eq!(
        names(&s, &s.roles_granting("projects:delete").unwrap()),
        ["admin", "manager", "projects_owner"]
    );
    let ids = s.roles_granting("users.write").unwrap();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "in id order");
    assert_eq!(
        s.roles_granting("nope:x"),
        Err(LookupError::UnknownPermission {
            name: "nope:x".into()
        })
    );
}

// ----------------------------------------------------------- principals

#[test]
fn unknown_token_roles_contribute_nothing_and_are_explained() {
    let s = snapshot();
    let read = perm(&s, "projects:read");
    let p = s.principal(None, ["ghost", "viewer", "ghost"]);
    assert!(
        p.satisfies(&read),
        "an unknown role does not turn the answer into a deny"
    );
    assert_eq!(p.unknown_roles(), 2);
    assert_eq!(p.roles().len(), 1);
    assert_eq!(p.permissions(), ["projects:read"]);
    assert!(!s.principal(None, ["ghost"]).satisfies(&read));

    let claims = Claims {
        roles: vec!["ghost".into(), "viewer".into(), "ghost".into()],
        ..Claims::default()
    };
    let why = s.explain(&claims, &read);
    assert!(why.allowed);
    assert_eq!(why.unknown_roles, ["ghost"]);
    assert!(why
        .to_string()
        .ends_with("\nunknown token role `ghost`: ignored"));
}

#[test]
fn claimed_permissions_count_only_when_declared() {
    let s = snapshot();
    let p =
        s.principal(None, Vec::<String>::new())
            .with_permissions(["tasks:assign", "made:up", "*"]);
    assert_eq!(p.permissions(), ["tasks:assign"]);
    assert!(p.satisfies(&perm(&s, "tasks:assign")));
    assert!(!p.satisfies(&perm(&s, "projects:read")), "`*` is no claim");

    let claims = Claims {
        organization: None,
        roles: vec![],
        permissions: vec!["made:up".into(), "tasks:assign".into()],
    };
    let req = Requirement::all_of(&s, ["tasks:assign", "projects:read"]).unwrap();
    let why = s.explain(&claims, &req);
    assert!(!why.allowed);
    assert_eq!(why.ignored_permissions, ["made:up"]);
    assert_eq!(
        why.permissions,
        [
            PermissionReason::Claimed {
                permission: "tasks:assign".into()
            },
            PermissionReason::Missing {
                permission: "projects:read".into()
            },
        ]
    );
    assert_eq!(
        why.to_string(),
        "deny\n`tasks:assign`: claimed in the token's permissions\n\
         `projects:read`: missing: no token role grants it and the token does not claim it\n\
         undeclared claimed permission `made:up`: ignored"
    );
}

#[test]
fn default_roles_are_never_added_to_a_request() {
    let s = snapshot();
    let read = perm(&s, "projects:read");
    for org in [None, Some("org_1"), Some("org_2"), Some("org_unknown")] {
        let p = s.principal(org, Vec::<&str>::new());
        assert!(p.permissions().is_empty(), "{org:?}");
        assert!(!p.satisfies(&read));
        let claims = Claims {
            organization: org.map(str::to_owned),
            ..Claims::default()
        };
        assert!(!s.principal_for(&claims).satisfies(&read));
        assert!(!s.explain(&claims, &read).allowed);
    }
}

#[test]
fn principal_for_claims_resolves_the_organization_then_the_environment() {
    let s = snapshot();
    let claims: Claims = serde_json::from_str(
        r#"{"sub": "usr_1", "oid": "org_1", "roles": ["manager", "hr"], "permissions": ["billing:read"]}"#,
    )
    .unwrap();
    let p = s.principal_for(&claims);
    for name in [
        "projects:delete",
        "tasks:assign",
        "users.write",
        "billing:read",
    ] {
        assert!(p.satisfies(&perm(&s, name)), "{name}");
    }
    assert!(!p.satisfies(&perm(&s, "roles.assign")));
    let by_org: Claims = serde_json::from_str(r#"{"org": "org_1", "roles": ["manager"]}"#).unwrap();
    assert_eq!(by_org.organization.as_deref(), Some("org_1"));
    assert!(s
        .principal_for(&by_org)
        .satisfies(&perm(&s, "projects:delete")));
    let mut other_org = claims.clone();
    other_org.organization = Some("org_2".into());
    let p = s.principal_for(&other_org);
    assert_eq!(p.unknown_roles(), 1);
    assert!(!p.satisfies(&perm(&s, "projects:delete")));
    assert!(p.satisfies(&perm(&s, "users.write")));
}

// ---------------------------------------------------------- requirements

#[test]
fn requirements_any_all_role_or_and() {
    let s = snapshot();
    let any = Requirement::any_of(&s, ["users.write", "roles.assign"]).unwrap();
    let all = Requirement::all_of(&s, ["projects:read", "tasks:assign"]).unwrap();
    let lead = Requirement::role(&s, "lead").unwrap();

    let viewer = s.principal(None, ["viewer"]);
    let hr = s.principal(None, ["hr"]);
    let lead_p = s.principal(None, ["lead"]);
    let split = s.principal(None, ["viewer", "planner"]);
    let manager = s.principal(Some("org_1"), ["manager"]);

    assert!(!viewer.satisfies(&any));
    assert!(hr.satisfies(&any));
    assert!(!viewer.satisfies(&all));
    assert!(lead_p.satisfies(&all));
    assert!(split.satisfies(&all), "all of may be met by several roles");
    assert!(!s.principal(None, ["planner"]).satisfies(&all));

    assert!(lead_p.satisfies(&lead));
    assert!(manager.satisfies(&lead), "a role extending `lead` holds it");
    assert!(
        !split.satisfies(&lead),
        "the same permissions are not the role"
    );
    assert!(!s.principal(None, ["admin"]).satisfies(&lead));

    let lead_or_any = lead.clone().or(any.clone());
    assert!(hr.satisfies(&lead_or_any) && lead_p.satisfies(&lead_or_any));
    assert!(!viewer.satisfies(&lead_or_any));
    let all_and_any = all.clone().and(any.clone());
    assert!(!lead_p.satisfies(&all_and_any));
    assert!(s.principal(None, ["lead", "hr"]).satisfies(&all_and_any));
    let nested = all.and(any).or(lead);
    assert!(manager.satisfies(&nested));
    assert!(!hr.satisfies(&nested));

    let one = perm(&s, "users.write");
    assert_eq!(one.as_permission(), s.permission_id("users.write"));
    assert!(hr.has(s.permission_id("users.write").unwrap()));
}

#[test]
fn requirements_are_checked_when_declared() {
    let s = snapshot();
    assert_eq!(
        Requirement::permission(&s, "projects:raed").unwrap_err(),
        LookupError::UnknownPermission {
            name: "projects:raed".into()
        }
    );
    assert_eq!(
        Requirement::any_of(&s, Vec::<&str>::new()).unwrap_err(),
        LookupError::EmptyRequirement
    );
    assert_eq!(
        Requirement::all_of(&s, Vec::<&str>::new()).unwrap_err(),
        LookupError::EmptyRequirement
    );
    assert_eq!(
        Requirement::all_of(&s, ["projects:read", "nope:x"]).unwrap_err(),
        LookupError::UnknownPermission {
            name: "nope:x".into()
        }
    );
    assert!(Requirement::any_of(&s, ["nope:x", "projects:read"]).is_err());
    assert!(
        Requirement::permission(&s, "projects:*").is_err(),
        "no wildcard checks"
    );
    assert!(matches!(
        Requirement::role(&s, "ghost"),
        Err(LookupError::UnknownRole { .. })
    ));
    assert_eq!(
        LookupError::EmptyRequirement.to_string(),
        "a requirement needs at least one permission"
    );
    assert_eq!(
        Requirement::permission(&s, "x").unwrap_err().to_string(),
        "permission `x` is not declared"
    );
}

#[test]
fn a_requirement_from_an_unrelated_compile_is_resolved_again_by_name() {
    let s1 = snapshot();
    let s2 = snapshot();
    let read1 = perm(&s1, "projects:read");
    let any1 = Requirement::any_of(&s1, ["projects:read"]).unwrap();
    let role1 = Requirement::role(&s1, "viewer").unwrap();
    let p2 = s2.principal(None, ["admin", "viewer"]);
    assert!(p2.satisfies(&perm(&s2, "projects:read")));
    for req in [&read1, &any1, &role1] {
        // Never a silent deny: it answers as if built on `s2`.
        assert!(p2.satisfies(req), "{req}");
        assert!(!s2.principal(None, ["nobody"]).satisfies(req), "{req}");
        assert!(s1.principal(None, ["viewer"]).satisfies(req), "{req}");
    }
    // Mixing the two lineages in one requirement works on both.
    let mixed = read1.and(perm(&s2, "projects:read"));
    assert!(p2.satisfies(&mixed));
    assert!(s1.principal(None, ["viewer"]).satisfies(&mixed));
    assert!(!s1.principal(None, ["nobody"]).satisfies(&mixed));
}

#[test]
fn explain_reports_roles_and_requirement_text() {
    let s = snapshot();
    let req = Requirement::role(&s, "viewer")
        .unwrap()
        .or(Requirement::any_of(&s, ["users.write", "roles.assign"]).unwrap());
    let claims = Claims {
        organization: Some("org_1".into()),
        roles: vec!["manager".into()],
        permissions: vec![],
    };
    let why = s.explain(&claims, &req);
    assert!(why.allowed);
    assert_eq!(
        why.requirement,
        "(role `viewer` or a role extending it) or (any of `users.write`, `roles.assign`)"
    );
    assert_eq!(
        why.roles,
        [RoleReason {
            role: "viewer".into(),
            path: Some(vec![
                "manager".into(),
                "lead".into(),
                "editor".into(),
                "viewer".into()
            ]),
        }]
    );
    assert_eq!(why.permissions.len(), 2);
    assert!(why
        .permissions
        .iter()
        .all(|p| matches!(p, PermissionReason::Missing { .. })));
    let explained = s.explain(&claims, &req);
    assert_eq!(explained, why, "deterministic");

    let nobody = Claims::default();
    let why = s.explain(&nobody, &req);
    assert!(!why.allowed);
    assert_eq!(why.roles[0].path, None);
    assert!(why
        .to_string()
        .contains("role `viewer`: missing: no token role is or extends it"));
}

#[test]
fn explain_agrees_with_the_principal() {
    let s = snapshot();
    let reqs = [
        perm(&s, "projects:delete"),
        Requirement::any_of(&s, ["billing:read", "users.write"]).unwrap(),
        Requirement::all_of(&s, ["projects:read", "tasks:assign"]).unwrap(),
        Requirement::role(&s, "editor").unwrap(),
    ];
    let tokens: [(Option<&str>, &[&str]); 6] = [
        (None, &["viewer"]),
        (None, &["lead", "ghost"]),
        (Some("org_1"), &["manager"]),
        (Some("org_1"), &["accountant"]),
        (Some("org_2"), &["accountant", "hr"]),
        (None, &[]),
    ];
    for (org, roles) in tokens {
        let claims = Claims {
            organization: org.map(str::to_owned),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            permissions: vec![],
        };
        let principal = s.principal(org, roles);
        for req in &reqs {
            assert_eq!(
                s.explain(&claims, req).allowed,
                principal.satisfies(req),
                "{org:?} {roles:?} {req}"
            );
        }
    }
}

// -------------------------------------------------- defaults and groups

#[test]
fn default_roles() {
    let s = snapshot();
    let name = |r: Option<RoleId>| r.map(|r| s.role_name(r).to_owned());
    assert_eq!(name(s.default_creator_role()), Some("admin".into()));
    assert_eq!(name(s.default_member_role(None)), Some("viewer".into()));
    assert_eq!(
        name(s.default_member_role(Some("org_1"))),
        Some("editor".into())
    );
    assert_eq!(
        name(s.default_member_role(Some("org_2"))),
        Some("viewer".into())
    );

    let mut p = Policy::new();
    p.role("r");
    p.organization("org_1");
    let s = p.compile().unwrap();
    assert_eq!(s.default_creator_role(), None);
    assert_eq!(s.default_member_role(None), None);
    assert_eq!(s.default_member_role(Some("org_1")), None);
    // Either default may be given without the other.
    p.set_default_creator_role("r");
    let s = p.compile().unwrap();
    assert_eq!(s.default_creator_role(), s.role(None, "r"));
    assert_eq!(s.default_member_role(None), None);
}

#[test]
fn roles_for_groups() {
    let s = snapshot();
    let groups = |org: &str, gs: &[&str]| names(&s, &s.roles_for_groups(org, gs).unwrap());

    // The union of every mapped group; by id or by display name.
    assert_eq!(groups("org_1", &["Engineering"]), ["editor"]);
    assert_eq!(groups("org_1", &["dirgroup_123"]), ["planner"]);
    assert_eq!(
        groups("org_1", &["Engineering", "dirgroup_123", "Finance"]),
        ["accountant", "editor", "planner", "viewer"]
    );
    assert_eq!(
        groups("org_1", &["Finance", "Finance", "Unmapped"]),
        ["accountant", "viewer"]
    );
    let ids = s
        .roles_for_groups("org_1", ["Finance", "Engineering"])
        .unwrap();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "sorted and deduplicated"
    );

    // No group maps: the organization's default member role, else the environment's.
    assert_eq!(groups("org_1", &[]), ["editor"]);
    assert_eq!(groups("org_1", &["Unmapped"]), ["editor"]);
    assert_eq!(groups("org_2", &["Unmapped"]), ["viewer"]);
    assert_eq!(groups("org_2", &["Everyone"]), ["viewer"]);
    // Group names are exact: `finance` maps nothing, so the default applies.
    assert_eq!(groups("org_1", &["finance"]), ["editor"]);

    assert_eq!(
        s.roles_for_groups("org_9", ["Engineering"]),
        Err(LookupError::UnknownOrganization { id: "org_9".into() })
    );
    assert_eq!(
        LookupError::UnknownOrganization { id: "org_9".into() }.to_string(),
        "organization `org_9` does not exist"
    );

    // A group written twice maps to the union of both entries.
    let mut p = policy();
    p.organizations[0].group_roles.push(rolegraph::GroupRoles {
        group: "Engineering".into(),
        roles: vec!["planner".into()],
    });
    let s2 = p.compile().unwrap();
    assert_eq!(
        names(&s2, &s2.roles_for_groups("org_1", ["Engineering"]).unwrap()),
        ["editor", "planner"]
    );

    // With no default anywhere, an unmapped user gets nothing.
    let mut p = Policy::new();
    p.role("r");
    p.organization("org_1").map_group("g", ["r"]);
    let s = p.compile().unwrap();
    assert!(s.roles_for_groups("org_1", ["other"]).unwrap().is_empty());
    assert_eq!(
        s.roles_for_groups("org_1", ["g"]).unwrap(),
        [s.role(None, "r").unwrap()]
    );

    // The roles a group maps to become a principal's.
    let s = snapshot();
    let roles = s.roles_for_groups("org_1", ["Finance"]).unwrap();
    let p = s.principal_from_roles(&roles).unwrap();
    assert!(p.satisfies(&perm(&s, "billing:read")));
    assert!(p.satisfies(&perm(&s, "projects:read")));
    assert!(!p.satisfies(&perm(&s, "projects:update")));
}

#[test]
fn warnings_name_likely_mistakes_only() {
    let mut p = Policy::new();
    p.permission("used:x").permission("unused:x");
    p.role("base").grant("used:x").grant("none:*");
    p.role("top").extends("base");
    // Roles assigned to users directly: nothing extends or maps them.
    p.role("solo").grant("used:x");
    p.organization("org_1").role("local").grant("used:x");
    let s = p.compile().unwrap();
    assert_eq!(
        s.warnings(),
        [
            Warning::UngrantedPermission {
                name: "unused:x".into()
            },
            Warning::WildcardMatchesNothing {
                role: "base".into(),
                organization: None,
                grant: "none:*".into()
            },
        ]
    );
}
