//! `PolicyBuilder` builds exactly what the `Policy` setters build, in linear
//! time.

use proptest::prelude::*;
use rolegraph::{Policy, PolicyBuilder};

/// One setter call, applied the same way to a `Policy` and a `PolicyBuilder`.
#[derive(Debug, Clone)]
enum Op {
    Permission(u8),
    Grant(u8, u8),
    Extends(u8, u8),
    DefaultCreator(u8),
    DefaultMember(u8),
    OrgRole(u8, u8, u8),
    OrgDefault(u8, u8),
    MapGroup(u8, u8, Vec<u8>),
}

fn op() -> impl Strategy<Value = Op> {
    // Small name spaces, so that names repeat and lookups find existing entries.
    let n = 0u8..6;
    prop_oneof![
        n.clone().prop_map(Op::Permission),
        (n.clone(), n.clone()).prop_map(|(r, p)| Op::Grant(r, p)),
        (n.clone(), n.clone()).prop_map(|(r, b)| Op::Extends(r, b)),
        n.clone().prop_map(Op::DefaultCreator),
        n.clone().prop_map(Op::DefaultMember),
        (0u8..3, n.clone(), n.clone()).prop_map(|(o, r, p)| Op::OrgRole(o, r, p)),
        (0u8..3, n.clone()).prop_map(|(o, r)| Op::OrgDefault(o, r)),
        (0u8..3, 0u8..3, prop::collection::vec(n, 0..4))
            .prop_map(|(o, g, rs)| Op::MapGroup(o, g, rs)),
    ]
}

fn both(ops: &[Op]) -> (Policy, Policy) {
    let mut policy = Policy::new();
    let mut builder = Policy::builder();
    for op in ops {
        match op {
            Op::Permission(p) => {
                policy.permission(format!("p:{p}"));
                builder.permission(format!("p:{p}"));
            }
            Op::Grant(r, p) => {
                policy.role(format!("r{r}")).grant(format!("p:{p}"));
                builder.role(format!("r{r}")).grant(format!("p:{p}"));
            }
            Op::Extends(r, b) => {
                policy.role(format!("r{r}")).extends(format!("r{b}"));
                builder.role(format!("r{r}")).extends(format!("r{b}"));
            }
            Op::DefaultCreator(r) => {
                policy.set_default_creator_role(format!("r{r}"));
                builder.set_default_creator_role(format!("r{r}"));
            }
            Op::DefaultMember(r) => {
                policy.set_default_member_role(format!("r{r}"));
                builder.set_default_member_role(format!("r{r}"));
            }
            Op::OrgRole(o, r, p) => {
                policy
                    .organization(format!("org_{o}"))
                    .role(format!("o{r}"))
                    .grant(format!("p:{p}"));
                builder
                    .organization(format!("org_{o}"))
                    .role(format!("o{r}"))
                    .grant(format!("p:{p}"));
            }
            Op::OrgDefault(o, r) => {
                policy
                    .organization(format!("org_{o}"))
                    .set_default_member_role(format!("o{r}"));
                builder
                    .organization(format!("org_{o}"))
                    .set_default_member_role(format!("o{r}"));
            }
            Op::MapGroup(o, g, rs) => {
                let roles: Vec<String> = rs.iter().map(|r| format!("o{r}")).collect();
                policy
                    .organization(format!("org_{o}"))
                    .map_group(format!("g{g}"), roles.clone());
                builder
                    .organization(format!("org_{o}"))
                    .map_group(format!("g{g}"), roles);
            }
        }
    }
    (policy, builder.build())
}

proptest! {
    /// Any sequence of setter calls: the builder's policy is the setters'
    /// policy, field for field and byte for byte in JSON.
    #[test]
    fn builder_equals_the_policy_setters(ops in prop::collection::vec(op(), 0..60)) {
        let (expected, built) = both(&ops);
        prop_assert_eq!(built.to_json(), expected.to_json());
        prop_assert_eq!(built, expected);
    }

    /// A builder resumed from a policy (`From<Policy>`) continues it exactly
    /// as the setters would.
    #[test]
    fn resumed_builder_continues_like_the_setters(
        first in prop::collection::vec(op(), 0..30),
        then in prop::collection::vec(op(), 0..30),
    ) {
        let (start, _) = both(&first);
        let all: Vec<Op> = first.iter().chain(&then).cloned().collect();
        let (expected, _) = both(&all);
        let mut builder = PolicyBuilder::from(start);
        apply(&mut builder, &then);
        prop_assert_eq!(builder.build(), expected);
    }
}

/// One call on a role's or a group's own list: `(role or group, name,
/// kind)`, kind 0 a grant, 1 a base, 2 a group mapping of two roles.
type ListOp = (u8, u8, u8);

/// `ops` applied with the `Policy` setters (the naive oracle: a scan of the
/// role's list per call) and with a builder resumed from the same `start`.
fn lists_both(start: &Policy, ops: &[ListOp]) -> (Policy, Policy) {
    let mut policy = start.clone();
    let mut builder = PolicyBuilder::from(start.clone());
    for &(r, n, kind) in ops {
        let (role, org_role) = (format!("r{r}"), format!("o{r}"));
        if kind == 2 {
            let roles = [format!("o{n}"), format!("o{}", (usize::from(n) * 7) % 40)];
            policy
                .organization("org_1")
                .map_group(format!("g{r}"), roles.clone());
            builder
                .organization("org_1")
                .map_group(format!("g{r}"), roles);
        } else if kind == 0 {
            policy.role(&role).grant(format!("p:{n}"));
            builder.role(&role).grant(format!("p:{n}"));
            policy
                .organization("org_1")
                .role(&org_role)
                .grant(format!("p:{n}"));
            builder
                .organization("org_1")
                .role(&org_role)
                .grant(format!("p:{n}"));
        } else {
            policy.role(&role).extends(format!("b{n}"));
            builder.role(&role).extends(format!("b{n}"));
        }
    }
    (policy, builder.build())
}

proptest! {
    /// Roles and group mappings whose own lists grow past the builder's
    /// scan limit (40 names over 3 roles or groups, so lists reach 40
    /// entries and names repeat): the
    /// builder's O(1) setters keep exactly the order and the duplicates the
    /// setters' scan keeps.
    #[test]
    fn long_role_lists_equal_the_setters(
        ops in prop::collection::vec((0u8..3, 0u8..40, 0u8..3), 0..300),
    ) {
        let (expected, built) = lists_both(&Policy::new(), &ops);
        prop_assert_eq!(built, expected);
    }

    /// Resumed from a policy whose lists are already long and hold
    /// duplicates (a file may), the builder adds what the setters add.
    #[test]
    fn resumed_long_lists_equal_the_setters(
        grants in prop::collection::vec(0u8..30, 0..40),
        bases in prop::collection::vec(0u8..30, 0..40),
        ops in prop::collection::vec((0u8..3, 0u8..40, 0u8..3), 0..100),
    ) {
        let mut start = Policy::new();
        let role = start.role("r0");
        role.permissions = grants.iter().map(|n| format!("p:{n}")).collect();
        role.extends = bases.iter().map(|n| format!("b{n}")).collect();
        let org = start.organization("org_1");
        org.role("o0").permissions = grants.iter().map(|n| format!("p:{n}")).collect();
        org.map_group("g0", ["o0"]);
        org.group_roles[0].roles = bases.iter().map(|n| format!("o{n}")).collect();
        let (expected, built) = lists_both(&start, &ops);
        prop_assert_eq!(built, expected);
    }
}

/// A role with 5,000 grants and 5,000 bases, each given twice, the second
/// round in another order: the hashed lists keep the first-given order and
/// add nothing twice. (Its cost is `build/role_grants/5000`'s business.)
#[test]
fn five_thousand_grants_on_one_role_keep_first_order() {
    const N: usize = 5_000;
    let mut builder = Policy::builder();
    for round in 0..2 {
        let role = builder.role("wide");
        for i in 0..N {
            role.grant(format!("p:{}", (i + round) % N));
            role.extends(format!("b{}", (i * 7 + round) % N));
        }
    }
    let policy = builder.build();
    let role = &policy.roles[0];
    let expected: Vec<String> = (0..N).map(|i| format!("p:{i}")).collect();
    assert_eq!(role.permissions, expected);
    assert_eq!(role.extends.len(), N);
    assert_eq!(role.extends[1], "b7");
}

fn apply(builder: &mut PolicyBuilder, ops: &[Op]) {
    for op in ops {
        match op {
            Op::Permission(p) => {
                builder.permission(format!("p:{p}"));
            }
            Op::Grant(r, p) => {
                builder.role(format!("r{r}")).grant(format!("p:{p}"));
            }
            Op::Extends(r, b) => {
                builder.role(format!("r{r}")).extends(format!("r{b}"));
            }
            Op::DefaultCreator(r) => {
                builder.set_default_creator_role(format!("r{r}"));
            }
            Op::DefaultMember(r) => {
                builder.set_default_member_role(format!("r{r}"));
            }
            Op::OrgRole(o, r, p) => {
                builder
                    .organization(format!("org_{o}"))
                    .role(format!("o{r}"))
                    .grant(format!("p:{p}"));
            }
            Op::OrgDefault(o, r) => {
                builder
                    .organization(format!("org_{o}"))
                    .set_default_member_role(format!("o{r}"));
            }
            Op::MapGroup(o, g, rs) => {
                builder
                    .organization(format!("org_{o}"))
                    .map_group(format!("g{g}"), rs.iter().map(|r| format!("o{r}")));
            }
        }
    }
}

/// The fixture the module docs build with the setters, built both ways.
#[test]
fn named_fixture_has_the_same_json() {
    let mut policy = Policy::new();
    policy
        .permission("projects:read")
        .permission("projects:update");
    policy.role("viewer").grant("projects:read");
    policy
        .role("editor")
        .extends("viewer")
        .grant("projects:update");
    policy.set_default_member_role("viewer");
    policy
        .organization("org_1")
        .role("manager")
        .extends("editor")
        .grant("projects:*");

    let mut builder = Policy::builder();
    builder
        .permission("projects:read")
        .permission("projects:update");
    builder.role("viewer").grant("projects:read");
    builder
        .role("editor")
        .extends("viewer")
        .grant("projects:update");
    builder.set_default_member_role("viewer");
    builder
        .organization("org_1")
        .role("manager")
        .extends("editor")
        .grant("projects:*");

    assert_eq!(builder.build().to_json(), policy.to_json());
}

/// 100,000 roles and 100,000 permissions, each then looked up again: about
/// 400,000 setter calls. Linear, this is well under a second even unoptimized;
/// with the setters' linear search it would be ~10¹⁰ string comparisons,
/// minutes at least, and the test would time out.
#[test]
fn two_hundred_thousand_entries_build_in_linear_time() {
    const N: usize = 100_000;
    let mut builder = Policy::builder();
    for i in 0..N {
        builder.permission(format!("p:{i}"));
        let role = builder.role(format!("r{i}"));
        role.grant(format!("p:{i}"));
        if i > 0 {
            role.extends(format!("r{}", i / 2));
        }
    }
    // Every name again: found, not added.
    for i in (0..N).rev() {
        builder.permission(format!("p:{i}"));
        builder.role(format!("r{i}")).grant(format!("p:{i}"));
    }
    let policy = builder.build();
    assert_eq!(policy.permissions.len(), N);
    assert_eq!(policy.roles.len(), N);
    assert_eq!(policy.roles[7].name, "r7");
    assert_eq!(policy.roles[7].permissions, ["p:7"]);
    assert_eq!(policy.roles[7].extends, ["r3"]);
    let snapshot = policy.compile().unwrap();
    assert_eq!(snapshot.roles_len(), N);
}
