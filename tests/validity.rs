//! Every validity rule of DESIGN.md produces its own problem; all of them are
//! reported together, one per line, in a deterministic order.

#![expect(
    clippy::panic,
    clippy::unwrap_used,
    reason = "helpers outside #[test] functions may fail the test"
)]

use rolegraph::{
    CompileError, DefaultRole, GroupRoles, Organization, Permission, Policy, Problem, Role,
};

fn compile_err(policy: &Policy) -> CompileError {
    match policy.compile() {
        Ok(s) => panic!("policy should be rejected, compiled {s:?}"),
        Err(e) => e,
    }
}

fn perm(name: &str) -> Permission {
    Permission {
        name: name.into(),
        description: None,
    }
}

fn role(name: &str, extends: &[&str], grants: &[&str]) -> Role {
    Role {
        name: name.into(),
        extends: extends.iter().map(|s| (*s).to_owned()).collect(),
        permissions: grants.iter().map(|s| (*s).to_owned()).collect(),
        ..Role::default()
    }
}

fn org(id: &str, roles: Vec<Role>) -> Organization {
    Organization {
        id: id.into(),
        roles,
        ..Organization::default()
    }
}

/// A message line follows the house style: lowercase start, no trailing period.
fn assert_style(line: &str) {
    let first = line.chars().next().unwrap();
    assert!(!first.is_uppercase(), "starts uppercase: {line}");
    assert!(!line.ends_with('.'), "ends with a period: {line}");
    assert!(!line.contains('\n'));
}

/// One policy breaking every rule once (and a valid remainder).
fn broken() -> Policy {
    let mut p = Policy::new();
    p.permissions = vec![
        perm("ok:read"),
        perm("bad name"),
        perm("dup:perm"),
        perm("dup:perm"),
        perm("star:*"),
    ];
    p.roles = vec![
        role("viewer", &[], &["ok:read"]),
        role("bad role", &[], &[]),
        role("twice", &[], &[]),
        role("twice", &[], &[]),
        role("orphan", &["ghost_base"], &[]),
        role("greedy", &[], &["undeclared:perm"]),
        role("weird", &[], &["a*b"]),
        role("loop", &["loop"], &[]),
    ];
    p.default_creator_role = Some("no_creator".into());
    p.default_member_role = Some("no_member".into());
    let mut org_b = org(
        "org_b",
        vec![
            role("viewer", &[], &[]),
            role("dupe", &[], &[]),
            role("dupe", &[], &[]),
            role("manager", &["viewer", "nobody"], &["ok:*"]),
        ],
    );
    org_b.default_member_role = Some("no_org_member".into());
    org_b.group_roles = vec![GroupRoles {
        group: "Engineering".into(),
        roles: vec!["manager".into(), "no_group_role".into()],
    }];
    let org_a = org("org_a", vec![role("solo", &["solo"], &[])]);
    let org_a_again = org("org_a", vec![]);
    p.organizations = vec![org_b, org_a, org_a_again];
    p
}

const EXPECTED: &[&str] = &[
    "permission name `bad name` is invalid: use 1-128 characters from `A-Z a-z 0-9 _ . : -`",
    "permission name `star:*` is invalid: use 1-128 characters from `A-Z a-z 0-9 _ . : -`",
    "permission `dup:perm` is declared more than once",
    "organization `org_a` is declared more than once",
    "role name `bad role` is invalid: use 1-128 characters from `A-Z a-z 0-9 _ . : -`",
    "role `twice` is declared more than once",
    "role `orphan` extends unknown role `ghost_base` (environment roles may extend environment roles only)",
    "role `weird` grants `a*b`, which is neither a permission name nor a wildcard ending in `*`",
    "role `greedy` grants undeclared permission `undeclared:perm`",
    "default creator role `no_creator` is not a role in reach",
    "default member role `no_member` is not a role in reach",
    "role inheritance has a cycle among `loop`: `loop` -> `loop`",
    "role inheritance has a cycle in organization `org_a` among `solo`: `solo` -> `solo`",
    "role `dupe` in organization `org_b` is declared more than once",
    "role `viewer` in organization `org_b` has the name of an environment role",
    "role `manager` in organization `org_b` extends unknown role `nobody`",
    "default member role `no_org_member` of organization `org_b` is not a role in reach",
    "group `Engineering` in organization `org_b` maps to unknown role `no_group_role`",
];

#[test]
fn every_rule_has_its_own_problem_and_all_are_reported_together() {
    let err = compile_err(&broken());
    let text = err.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), err.problems().len(), "one problem per line");
    let mut got = lines.clone();
    got.sort_unstable();
    let mut want = EXPECTED.to_vec();
    want.sort_unstable();
    assert_eq!(got, want, "\n{text}");
    for line in &lines {
        assert_style(line);
    }
    for (line, problem) in lines.iter().zip(err.problems()) {
        assert_eq!(*line, problem.to_string());
    }
}

#[test]
fn problems_carry_structured_data() {
    let err = compile_err(&broken());
    let has = |f: &dyn Fn(&Problem) -> bool| err.problems().iter().any(f);
    assert!(has(
        &|p| matches!(p, Problem::InvalidPermissionName { name } if name == "bad name")
    ));
    assert!(has(
        &|p| matches!(p, Problem::DuplicatePermission { name } if name == "dup:perm")
    ));
    assert!(has(
        &|p| matches!(p, Problem::DuplicateOrganization { id } if id == "org_a")
    ));
    assert!(has(&|p| matches!(p,
        Problem::InvalidRoleName { organization: None, name } if name == "bad role")));
    assert!(has(&|p| matches!(p,
        Problem::DuplicateRole { organization: Some(o), name } if o == "org_b" && name == "dupe")));
    assert!(has(&|p| matches!(p,
        Problem::ShadowsEnvironmentRole { organization, name } if organization == "org_b" && name == "viewer")));
    assert!(has(&|p| matches!(p,
        Problem::UnknownBaseRole { organization: Some(o), role, base }
            if o == "org_b" && role == "manager" && base == "nobody")));
    assert!(has(&|p| matches!(p,
        Problem::InvalidGrant { role, grant, .. } if role == "weird" && grant == "a*b")));
    assert!(has(&|p| matches!(p,
        Problem::UnknownPermission { role, permission, .. }
            if role == "greedy" && permission == "undeclared:perm")));
    assert!(has(&|p| matches!(p,
        Problem::UnknownDefaultRole { organization: None, which: DefaultRole::Creator, role }
            if role == "no_creator")));
    assert!(has(&|p| matches!(p,
        Problem::UnknownDefaultRole { organization: Some(o), which: DefaultRole::Member, role }
            if o == "org_b" && role == "no_org_member")));
    assert!(has(&|p| matches!(p,
        Problem::UnknownGroupRole { organization, group, role }
            if organization == "org_b" && group == "Engineering" && role == "no_group_role")));
    assert_eq!(err.cycles().count(), 2);
    // Scopes come in order: the environment first, then organizations by id.
    let scopes: Vec<Option<&str>> = err.problems().iter().map(Problem::organization).collect();
    let mut sorted = scopes.clone();
    sorted.sort();
    assert_eq!(scopes, sorted);
    assert_eq!(scopes.first(), Some(&None));
}

#[test]
fn the_error_is_deterministic_whatever_the_declaration_order() {
    let policy = broken();
    let first = compile_err(&policy);
    assert_eq!(compile_err(&policy), first, "same policy, same error");

    let mut shuffled = broken();
    shuffled.permissions.reverse();
    shuffled.roles.reverse();
    shuffled.roles.rotate_left(3);
    for o in &mut shuffled.organizations {
        o.roles.reverse();
        for r in &mut o.roles {
            r.extends.reverse();
        }
    }
    // Swapping the two `org_a` entries changes which one is "the duplicate",
    // so keep their relative order and move `org_b` last instead.
    shuffled.organizations.rotate_left(1);
    assert_eq!(compile_err(&shuffled).to_string(), first.to_string());
}

#[test]
fn names_follow_the_character_and_length_rules() {
    let mut p = Policy::new();
    let long_ok = "a".repeat(128);
    let too_long = "b".repeat(129);
    for name in [
        long_ok.as_str(),
        "projects:read",
        "users.write",
        "sk_org-users_read",
    ] {
        p.permission(name);
        p.role(name.replace(':', "_")).grant(name);
    }
    assert!(p.compile().is_ok(), "{:?}", p.compile().err());

    for bad in [
        too_long.as_str(),
        "",
        "has space",
        "é",
        "semi;colon",
        "slash/",
    ] {
        let mut p = Policy::new();
        p.permission(bad);
        let err = compile_err(&p);
        assert!(
            matches!(err.problems(), [Problem::InvalidPermissionName { name }] if name == bad),
            "{bad:?}: {err}"
        );
        let mut p = Policy::new();
        p.role(bad);
        let err = compile_err(&p);
        assert!(
            matches!(err.problems(), [Problem::InvalidRoleName { name, .. }] if name == bad),
            "{bad:?}: {err}"
        );
    }
}

#[test]
fn invalid_grants_are_rejected_and_trailing_wildcards_accepted() {
    for bad in ["a*b", "**", "*a", "pro jects:*", "", "projects:**"] {
        let mut p = Policy::new();
        p.permission("projects:read");
        p.role("r").grant(bad);
        let err = compile_err(&p);
        assert!(
            matches!(err.problems(), [Problem::InvalidGrant { grant, .. }] if grant == bad),
            "{bad:?}: {err}"
        );
    }
    // A wildcard is at most 128 characters, like a name.
    let longest = format!("{}*", "a".repeat(127));
    let too_long = format!("{}*", "a".repeat(128));
    let mut p = Policy::new();
    p.role("r").grant(too_long.as_str());
    assert!(matches!(
        compile_err(&p).problems(),
        [Problem::InvalidGrant { grant, .. }] if *grant == too_long
    ));
    for good in [
        "*",
        "projects:*",
        "projects*",
        "p*",
        "nothing:*",
        longest.as_str(),
    ] {
        let mut p = Policy::new();
        p.permission("projects:read");
        p.role("r").grant(good);
        assert!(p.compile().is_ok(), "{good:?}");
    }
}

#[test]
fn extends_reaches_only_environment_roles_and_the_own_organization() {
    let mut p = Policy::new();
    p.role("env");
    p.organization("org_1").role("local").extends("env");
    p.organization("org_1").role("local2").extends("local");
    assert!(p.compile().is_ok());

    p.organization("org_2").role("other").extends("local");
    let err = compile_err(&p);
    assert_eq!(
        err.to_string(),
        "role `other` in organization `org_2` extends unknown role `local`"
    );
}

#[test]
fn defaults_and_group_mappings_resolve_in_reach() {
    let mut p = Policy::new();
    p.role("env");
    p.organization("org_1").role("local");
    p.organization("org_1").set_default_member_role("local");
    p.organization("org_1").map_group("g", ["local", "env"]);
    p.set_default_member_role("env")
        .set_default_creator_role("env");
    assert!(p.compile().is_ok());

    // An organization role is out of reach for the environment's defaults and
    // for another organization.
    p.set_default_member_role("local");
    p.organization("org_2").map_group("g", ["local"]);
    p.organization("org_2").set_default_member_role("local");
    let err = compile_err(&p);
    assert_eq!(
        err.to_string(),
        [
            "default member role `local` is not a role in reach",
            "default member role `local` of organization `org_2` is not a role in reach",
            "group `g` in organization `org_2` maps to unknown role `local`",
        ]
        .join("\n")
    );
}

#[test]
fn an_empty_policy_compiles() {
    let s = Policy::new().compile().unwrap();
    assert_eq!(s.roles_len(), 0);
    assert_eq!(s.permissions_len(), 0);
    assert_eq!(s.max_depth(), 0);
}
