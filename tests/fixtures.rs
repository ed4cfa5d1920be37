//! The compiler and the snapshot over named fixture graphs: `diamond`,
//! `self_loop`, `two_disjoint_cycles`, `intersecting_cycles`,
//! `org_role_extends_env_role`, `org_cycle`, `deep_chain` and a deep cycle.

#![expect(
    clippy::indexing_slicing,
    clippy::panic,
    clippy::unwrap_used,
    reason = "helpers outside #[test] functions may fail the test"
)]

use std::collections::BTreeSet;
use std::time::Instant;

use rolegraph::{
    Claims, CompileError, Cycle, PermissionReason, Policy, Problem, Requirement, Role,
};

/// `top` extends `right` and `left` (declared in that order, so ids and names
/// disagree); both extend `base`.
fn diamond() -> Policy {
    let mut p = Policy::new();
    p.permission("base:read")
        .permission("left:write")
        .permission("right:write")
        .permission("top:admin");
    p.role("top")
        .extends("right")
        .extends("left")
        .grant("top:admin");
    p.role("right").extends("base").grant("right:write");
    p.role("left").extends("base").grant("left:write");
    p.role("base").grant("base:read");
    p
}

fn compile_err(policy: &Policy) -> CompileError {
    match policy.compile() {
        Ok(s) => panic!("policy should be rejected, compiled {s:?}"),
        Err(e) => e,
    }
}

fn effective(snapshot: &rolegraph::Snapshot, org: Option<&str>, role: &str) -> Vec<String> {
    snapshot
        .effective_permissions(org, role)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect()
}

/// Every `(role, base)` pair written in environment scope.
fn env_edges(policy: &Policy) -> BTreeSet<(String, String)> {
    policy
        .roles
        .iter()
        .flat_map(|r| r.extends.iter().map(|b| (r.name.clone(), b.clone())))
        .collect()
}

/// The path closes at its first member and walks real `extends` edges.
fn assert_cycle_path_is_real(cycle: &Cycle, edges: &BTreeSet<(String, String)>) {
    let path = cycle.path();
    assert!(
        path.len() >= 2,
        "a cycle path has at least one edge: {path:?}"
    );
    assert_eq!(
        path.first(),
        cycle.members().first(),
        "path starts at the first member"
    );
    assert_eq!(
        path.first(),
        path.last(),
        "path closes at its start: {path:?}"
    );
    for pair in path.windows(2) {
        assert!(
            edges.contains(&(pair[0].clone(), pair[1].clone())),
            "`{}` -> `{}` is not an extends edge",
            pair[0],
            pair[1]
        );
        assert!(cycle.members().contains(&pair[1]), "path leaves the group");
    }
}

fn assert_sorted(members: &[String]) {
    assert!(
        members.windows(2).all(|w| w[0] < w[1]),
        "not sorted: {members:?}"
    );
}

// ---------------------------------------------------------------- diamond

#[test]
fn diamond_effective_sets_are_the_union_of_both_branches() {
    let s = diamond().compile().unwrap();
    assert_eq!(effective(&s, None, "base"), ["base:read"]);
    assert_eq!(effective(&s, None, "left"), ["base:read", "left:write"]);
    assert_eq!(effective(&s, None, "right"), ["base:read", "right:write"]);
    assert_eq!(
        effective(&s, None, "top"),
        ["base:read", "left:write", "right:write", "top:admin"]
    );
    let left = s.role(None, "left").unwrap();
    assert!(!s.role_has_permission(left, "right:write"));
    assert!(!s.role_has_permission(left, "top:admin"));
    assert_eq!(s.max_depth(), 3);
    assert_eq!(s.roles_len(), 4);
}

#[test]
fn diamond_paths_are_shortest_with_ties_broken_by_role_name() {
    let s = diamond().compile().unwrap();
    let eff = s.effective_permissions(None, "top").unwrap();
    let by_name = |n: &str| eff.get(n).unwrap();
    let path = |n: &str| eff.path(by_name(n));
    // `left` and `right` both lead to `base`; `left` sorts first even though
    // `right` is declared (and extended) first.
    assert_eq!(path("base:read"), ["top", "left", "base"]);
    assert_eq!(by_name("base:read").grant, "base:read");
    assert_eq!(by_name("base:read").source_role(), "base");
    assert_eq!(path("right:write"), ["top", "right"]);
    assert_eq!(path("top:admin"), ["top"]);
    assert_eq!(
        by_name("base:read").to_string(),
        "`base:read`: `base` grants `base:read`"
    );

    let claims = Claims {
        roles: vec!["top".into()],
        ..Claims::default()
    };
    let why = s.explain(&claims, &Requirement::permission(&s, "base:read").unwrap());
    assert!(why.allowed);
    assert_eq!(
        why.permissions,
        [PermissionReason::ByRole {
            permission: "base:read".into(),
            path: vec!["top".into(), "left".into(), "base".into()],
            grant: "base:read".into(),
        }]
    );
    assert_eq!(
        why.to_string(),
        "allow\n`base:read`: granted by `top` -> `left` -> `base` (grants `base:read`)"
    );
}

#[test]
fn a_shorter_path_wins_over_a_smaller_name() {
    let mut p = Policy::new();
    p.permission("p:x");
    p.role("top").extends("a_long").extends("z_short");
    p.role("a_long").extends("a_mid");
    p.role("a_mid").grant("p:x");
    p.role("z_short").grant("p:x");
    let s = p.compile().unwrap();
    let eff = s.effective_permissions(None, "top").unwrap();
    assert_eq!(eff.len(), 1);
    assert_eq!(eff.path(&eff[0]), ["top", "z_short"]);
    // A role's own grant beats everything it inherits.
    p.role("top").grant("p:x");
    let s = p.compile().unwrap();
    let eff = s.effective_permissions(None, "top").unwrap();
    assert_eq!(eff.path(&eff[0]), ["top"]);
}

#[test]
fn explain_with_several_token_roles_takes_the_nearest_one() {
    let s = diamond().compile().unwrap();
    let claims = Claims {
        roles: vec!["top".into(), "right".into()],
        ..Claims::default()
    };
    let why = s.explain(&claims, &Requirement::permission(&s, "base:read").unwrap());
    // From `top` the path has three roles, from `right` two.
    assert_eq!(
        why.permissions,
        [PermissionReason::ByRole {
            permission: "base:read".into(),
            path: vec!["right".into(), "base".into()],
            grant: "base:read".into(),
        }]
    );
}

// ---------------------------------------------------------------- cycles

#[test]
fn self_loop_is_a_cycle_of_one() {
    let mut p = Policy::new();
    p.permission("p:x");
    p.role("a").extends("a").grant("p:x");
    p.role("b").extends("a");
    let err = compile_err(&p);
    let cycles: Vec<&Cycle> = err.cycles().collect();
    assert_eq!(cycles.len(), 1);
    assert_eq!(cycles[0].members(), ["a"]);
    assert_eq!(cycles[0].path(), ["a", "a"]);
    assert_eq!(cycles[0].organization(), None);
    assert_eq!(err.problems().len(), 1, "{err}");
    assert_eq!(
        err.to_string(),
        "role inheritance has a cycle among `a`: `a` -> `a`"
    );
}

#[test]
fn two_disjoint_cycles_are_two_problems() {
    let mut p = Policy::new();
    p.role("outside").extends("b");
    p.role("b").extends("a");
    p.role("a").extends("b");
    p.role("e").extends("c");
    p.role("d").extends("e");
    p.role("c").extends("d");
    p.role("after").extends("c");
    let err = compile_err(&p);
    let cycles: Vec<&Cycle> = err.cycles().collect();
    assert_eq!(cycles.len(), 2, "{err}");
    assert_eq!(err.problems().len(), 2);
    let groups: BTreeSet<Vec<String>> = cycles.iter().map(|c| c.members().to_vec()).collect();
    let expected: BTreeSet<Vec<String>> = [vec!["a", "b"], vec!["c", "d", "e"]]
        .into_iter()
        .map(|g| g.into_iter().map(String::from).collect())
        .collect();
    assert_eq!(groups, expected);
    let edges = env_edges(&p);
    for c in &cycles {
        assert_sorted(c.members());
        assert_cycle_path_is_real(c, &edges);
    }
    let text = err.to_string();
    assert_eq!(text.lines().count(), 2);
    assert!(text.contains("`a` -> `b` -> `a`"), "{text}");
    assert!(text.contains("`c` -> `d` -> `e` -> `c`"), "{text}");
    assert!(
        !text.contains("outside") && !text.contains("after"),
        "{text}"
    );
}

#[test]
fn intersecting_cycles_name_every_member_of_the_strongly_connected_set() {
    // a -> b -> a and b -> c -> b: the loop through `a` never visits `c`.
    let mut p = Policy::new();
    p.role("c").extends("b");
    p.role("b").extends("c").extends("a");
    p.role("a").extends("b");
    let err = compile_err(&p);
    let cycles: Vec<&Cycle> = err.cycles().collect();
    assert_eq!(cycles.len(), 1, "{err}");
    assert_eq!(cycles[0].members(), ["a", "b", "c"]);
    assert_eq!(cycles[0].path(), ["a", "b", "a"]);
    assert_cycle_path_is_real(cycles[0], &env_edges(&p));
    assert_eq!(
        err.to_string(),
        "role inheritance has a cycle among `a`, `b`, `c`: `a` -> `b` -> `a`"
    );
}

#[test]
fn the_cycle_path_is_the_shortest_loop_through_the_first_member() {
    // a -> z -> y -> a and a -> m -> a: the two-edge loop is reported.
    let mut p = Policy::new();
    p.role("a").extends("z").extends("m");
    p.role("z").extends("y");
    p.role("y").extends("a");
    p.role("m").extends("a");
    let err = compile_err(&p);
    let cycle = err.cycles().next().unwrap();
    assert_eq!(cycle.members(), ["a", "m", "y", "z"]);
    assert_eq!(cycle.path(), ["a", "m", "a"]);
}

#[test]
fn cycle_errors_do_not_depend_on_declaration_order() {
    let mut p = Policy::new();
    for (role, bases) in [
        ("a", &["b"][..]),
        ("b", &["c", "a"][..]),
        ("c", &["b"][..]),
        ("x", &["y"][..]),
        ("y", &["x"][..]),
        ("free", &["a"][..]),
    ] {
        let r = p.role(role);
        for b in bases {
            r.extends(*b);
        }
    }
    let first = compile_err(&p).to_string();
    p.roles.reverse();
    for r in &mut p.roles {
        r.extends.reverse();
    }
    assert_eq!(compile_err(&p).to_string(), first);
}

// ------------------------------------------------------ organizations

fn orgs() -> Policy {
    let mut p = Policy::new();
    p.permission("p:read")
        .permission("p:write")
        .permission("x:only")
        .permission("y:only");
    p.role("viewer").grant("p:read");
    p.organization("org_x")
        .role("manager")
        .extends("viewer")
        .grant("p:write");
    p.organization("org_x").role("lead").grant("x:only");
    p.organization("org_y").role("lead").grant("y:only");
    p.organization("org_y").role("boss").extends("lead");
    p
}

#[test]
fn org_role_extends_env_role() {
    let s = orgs().compile().unwrap();
    assert_eq!(s.organizations_len(), 2);
    assert_eq!(s.roles_len(), 5);

    let manager = s.principal(Some("org_x"), ["manager"]);
    let read = Requirement::permission(&s, "p:read").unwrap();
    let write = Requirement::permission(&s, "p:write").unwrap();
    assert!(manager.satisfies(&read) && manager.satisfies(&write));
    assert_eq!(manager.unknown_roles(), 0);
    let eff = s.effective_permissions(Some("org_x"), "manager").unwrap();
    assert_eq!(eff.path(&eff[0]), ["manager", "viewer"]);

    // The same role name resolves to each organization's own role.
    let x_only = Requirement::permission(&s, "x:only").unwrap();
    let y_only = Requirement::permission(&s, "y:only").unwrap();
    let lead_x = s.principal(Some("org_x"), ["lead"]);
    let lead_y = s.principal(Some("org_y"), ["lead"]);
    assert!(lead_x.satisfies(&x_only) && !lead_x.satisfies(&y_only));
    assert!(lead_y.satisfies(&y_only) && !lead_y.satisfies(&x_only));
    assert_eq!(effective(&s, Some("org_y"), "boss"), ["y:only"]);
    let lead = s.role(Some("org_x"), "lead").unwrap();
    assert_eq!(s.role_organization(lead), Some("org_x"));
    assert_eq!(s.role_name(lead), "lead");

    // Environment roles resolve in every organization and without one.
    assert!(s.principal(Some("org_y"), ["viewer"]).satisfies(&read));
    assert!(s.principal(None, ["viewer"]).satisfies(&read));
    assert_eq!(s.role_organization(s.role(None, "viewer").unwrap()), None);

    // Organization roles do not resolve outside their organization.
    for org in [None, Some("org_y"), Some("org_unknown")] {
        let p = s.principal(org, ["manager"]);
        assert!(!p.satisfies(&write), "{org:?}");
        assert_eq!(p.unknown_roles(), 1);
        assert_eq!(s.role(org, "manager"), None);
    }
    assert!(!s
        .principal(Some("org_unknown"), ["lead"])
        .satisfies(&x_only));
}

#[test]
fn an_env_role_cannot_extend_an_org_role() {
    let mut p = orgs();
    p.role("chief").extends("manager");
    let err = compile_err(&p);
    assert_eq!(
        err.to_string(),
        "role `chief` extends unknown role `manager` (environment roles may extend environment roles only)"
    );
    assert!(matches!(
        &err.problems()[0],
        Problem::UnknownBaseRole { organization: None, role, base } if role == "chief" && base == "manager"
    ));
}

#[test]
fn an_org_role_cannot_extend_another_orgs_role() {
    let mut p = orgs();
    p.organization("org_y").role("thief").extends("manager");
    let err = compile_err(&p);
    assert_eq!(
        err.to_string(),
        "role `thief` in organization `org_y` extends unknown role `manager`"
    );
}

#[test]
fn org_cycle_names_its_organization() {
    let mut p = orgs();
    p.organization("org_x")
        .role("m1")
        .extends("m2")
        .extends("viewer");
    p.organization("org_x").role("m2").extends("m1");
    let err = compile_err(&p);
    let cycle = err.cycles().next().unwrap();
    assert_eq!(cycle.organization(), Some("org_x"));
    assert_eq!(cycle.members(), ["m1", "m2"]);
    assert_eq!(
        err.to_string(),
        "role inheritance has a cycle in organization `org_x` among `m1`, `m2`: `m1` -> `m2` -> `m1`"
    );
}

#[test]
fn same_named_cycles_in_two_organizations_are_reported_per_organization() {
    let mut p = Policy::new();
    for org in ["org_b", "org_a"] {
        p.organization(org).role("m").extends("n");
        p.organization(org).role("n").extends("m");
    }
    let err = compile_err(&p);
    let orgs: Vec<Option<&str>> = err.cycles().map(Cycle::organization).collect();
    assert_eq!(orgs, [Some("org_a"), Some("org_b")]);
    for c in err.cycles() {
        assert_eq!(c.members(), ["m", "n"]);
        assert_eq!(c.path(), ["m", "n", "m"]);
    }
}

// ------------------------------------------------------- deep graphs

const DEEP: usize = 100_000;

fn role(name: String, extends: Vec<String>, permissions: Vec<String>) -> Role {
    Role {
        name,
        extends,
        permissions,
        ..Role::default()
    }
}

/// `r0 <- r1 <- … <- r99999`, declared leaf first so that declaration order
/// is the reverse of the topological order. Built without the builder, whose
/// lookups are linear.
fn deep_chain() -> Policy {
    let mut p = Policy::new();
    p.permission("root:perm").permission("leaf:perm");
    p.roles = (0..DEEP)
        .rev()
        .map(|i| {
            let extends = if i == 0 {
                vec![]
            } else {
                vec![format!("r{}", i - 1)]
            };
            let grants = match i {
                0 => vec!["root:perm".to_owned()],
                i if i == DEEP - 1 => vec!["leaf:perm".to_owned()],
                _ => vec![],
            };
            role(format!("r{i}"), extends, grants)
        })
        .collect();
    p
}

/// Runs in the default test thread (a small stack): nothing may recurse in
/// proportion to depth.
#[test]
fn deep_chain_of_100k_roles_compiles_without_recursion() {
    let policy = deep_chain();
    let started = Instant::now();
    let s = policy.compile().unwrap();
    let compiled = started.elapsed();
    assert_eq!(s.roles_len(), DEEP);
    assert_eq!(s.max_depth(), DEEP);
    let leaf = s.role(None, &format!("r{}", DEEP - 1)).unwrap();
    let root = s.role(None, "r0").unwrap();
    assert!(s.role_has_permission(leaf, "root:perm"));
    assert!(s.role_has_permission(leaf, "leaf:perm"));
    assert!(!s.role_has_permission(root, "leaf:perm"));
    assert_eq!(s.roles_granting("root:perm").unwrap().len(), DEEP);
    assert_eq!(s.roles_granting("leaf:perm").unwrap(), [leaf]);

    let eff = s
        .effective_permissions(None, &format!("r{}", DEEP - 1))
        .unwrap();
    let root_perm = eff.iter().find(|e| e.name == "root:perm").unwrap();
    assert_eq!(eff.path(root_perm).len(), DEEP);
    assert_eq!(root_perm.source_role(), "r0");
    eprintln!(
        "deep chain: compiled in {compiled:?}, total {:?}",
        started.elapsed()
    );
}

#[test]
fn deep_cycle_of_100k_roles_is_rejected_naming_every_member() {
    let mut p = Policy::new();
    p.roles = (0..DEEP)
        .map(|i| {
            role(
                format!("r{i}"),
                vec![format!("r{}", (i + 1) % DEEP)],
                vec![],
            )
        })
        .collect();
    let started = Instant::now();
    let err = compile_err(&p);
    let elapsed = started.elapsed();
    let cycles: Vec<&Cycle> = err.cycles().collect();
    assert_eq!(cycles.len(), 1);
    let c = cycles[0];
    assert_eq!(c.members().len(), DEEP);
    assert_sorted(c.members());
    let named: BTreeSet<&str> = c.members().iter().map(String::as_str).collect();
    assert_eq!(named.len(), DEEP);
    assert!(named.contains("r0") && named.contains("r99999"));
    // The only loop passes through every role: r0 -> r1 -> … -> r0.
    assert_eq!(c.path().len(), DEEP + 1);
    assert_eq!(c.path().first().map(String::as_str), Some("r0"));
    assert_eq!(c.path().last().map(String::as_str), Some("r0"));
    for (i, name) in c.path().iter().enumerate() {
        assert_eq!(*name, format!("r{}", i % DEEP));
    }
    assert_eq!(err.to_string().lines().count(), 1);
    eprintln!(
        "deep cycle: rejected in {elapsed:?}, total {:?}",
        started.elapsed()
    );
}
