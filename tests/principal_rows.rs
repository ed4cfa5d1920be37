//! A principal reads its roles' rows in place (one distinct row, or a few in
//! a wide policy) or copies their union: either way it must answer exactly
//! the naive OR of its roles' rows, for every permission and requirement,
//! on narrow and wide policies, with equal and different rows, and keep
//! answering from its own snapshot across a swap. A user's principal from
//! the stored memberships (`user_principal`) answers the same.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use proptest::prelude::*;
use rolegraph::{Change, ChangeMeta, Engine, Policy, Principal, Requirement, RoleId, Snapshot};

fn perm(i: usize) -> String {
    format!("p:{i}")
}

/// `bases` roles with their grants, then `aliases` roles that each extend
/// one base and grant nothing (a row equal to the base's, as organization
/// roles that only extend an environment role).
fn policy(perms: usize, bases: &[Vec<usize>], aliases: &[usize]) -> Policy {
    let mut p = Policy::new();
    p.organization("o");
    for i in 0..perms {
        p.permission(perm(i));
    }
    for (b, grants) in bases.iter().enumerate() {
        let role = p.role(format!("base{b}"));
        for g in grants {
            role.grant(perm(g % perms));
        }
    }
    for (a, b) in aliases.iter().enumerate() {
        p.role(format!("alias{a}"))
            .extends(format!("base{}", b % bases.len()));
    }
    p
}

/// The naive answer: some role's row has the permission.
fn naive(s: &Snapshot, roles: &[RoleId], p: &str) -> bool {
    roles.iter().any(|r| s.role_has_permission(*r, p))
}

fn check(
    s: &Snapshot,
    principal: &Principal,
    roles: &[RoleId],
    claimed: &[String],
) -> Result<(), TestCaseError> {
    let perms: Vec<String> = s.permissions().map(str::to_owned).collect();
    let mut expected = Vec::new();
    for p in &perms {
        let want = naive(s, roles, p) || claimed.contains(p);
        let id = s.permission_id(p).unwrap();
        prop_assert_eq!(principal.has(id), want, "`{}` for {:?}", p, roles);
        let one = Requirement::permission(s, p).unwrap();
        prop_assert_eq!(principal.satisfies(&one), want);
        if want {
            expected.push(p.as_str());
        }
    }
    expected.sort_unstable();
    prop_assert_eq!(principal.permissions(), expected);
    // Any-of and all-of across words (the first, a middle and the last).
    let picks = [0, perms.len() / 2, perms.len() - 1];
    let names: Vec<&String> = picks.iter().map(|&i| &perms[i]).collect();
    let holds: Vec<bool> = names
        .iter()
        .map(|p| naive(s, roles, p) || claimed.contains(p))
        .collect();
    let any = Requirement::any_of(s, &names).unwrap();
    let all = Requirement::all_of(s, &names).unwrap();
    prop_assert_eq!(principal.satisfies(&any), holds.iter().any(|h| *h));
    prop_assert_eq!(principal.satisfies(&all), holds.iter().all(|h| *h));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn a_principal_answers_the_or_of_its_roles_rows(
        // Narrow (one word, inline copies) or wide (> 16 words: rows read in place).
        wide in any::<bool>(),
        // Up to 11 bases: more distinct rows than a principal reads in place.
        bases in prop::collection::vec(prop::collection::vec(0usize..2_000, 0..6), 1..12),
        aliases in prop::collection::vec(0usize..8, 0..8),
        // Role picks: several roles, repeats and equal rows included.
        picks in prop::collection::vec(0usize..24, 0..14),
        claimed in prop::collection::vec(0usize..2_000, 0..2),
        swap in 0usize..8,
    ) {
        let perms = if wide { 1_500 } else { 60 };
        let engine = Engine::new(&policy(perms, &bases, &aliases)).unwrap();
        let all: Vec<RoleId> = engine.snapshot().roles().collect();
        let roles: Vec<RoleId> = picks.iter().map(|i| all[i % all.len()]).collect();
        let member = |names: Vec<String>| Change::SetMembership {
            organization: "o".into(),
            user: "u".into(),
            roles: names,
            groups: None,
            creator: false,
        };
        let names: Vec<String> =
            roles.iter().map(|r| engine.snapshot().role_name(*r).to_owned()).collect();
        engine.apply(member(names), ChangeMeta::default()).unwrap();
        let s = engine.snapshot();
        let claimed: Vec<String> = claimed.iter().map(|c| perm(c % perms)).collect();
        let mut distinct = roles.clone();
        distinct.sort_unstable();
        distinct.dedup();

        let by_id = s.principal_from_roles(&roles).unwrap();
        check(&s, &by_id, &distinct, &[])?;
        let names: Vec<&str> = roles.iter().map(|r| s.role_name(*r)).collect();
        let by_name = s.principal(None, &names);
        check(&s, &by_name, &distinct, &[])?;
        let with_claims = by_name.clone().with_permissions(&claimed);
        check(&s, &with_claims, &distinct, &claimed)?;
        let user = s.user_principal("o", "u");
        check(&s, &user, &distinct, &[])?;
        prop_assert_eq!(user.roles(), &distinct[..]);

        // A swap: one base role gains the permission every role lacks most
        // likely; the old principal keeps its snapshot's answers, a new one
        // sees the change.
        let base = format!("base{}", swap % bases.len());
        engine
            .apply(
                Change::GrantPermission { organization: None, role: base, permission: perm(perms - 1) },
                ChangeMeta::default(),
            )
            .unwrap();
        let after = engine.snapshot();
        check(&s, &by_id, &distinct, &[])?;
        let ids: Vec<RoleId> = names.iter().map(|n| after.role(None, n).unwrap()).collect();
        let mut distinct_after = ids.clone();
        distinct_after.sort_unstable();
        distinct_after.dedup();
        check(&after, &after.principal_from_roles(&ids).unwrap(), &distinct_after, &[])?;
        check(&after, &after.principal(None, &names), &distinct_after, &[])?;
        check(&s, &user, &distinct, &[])?;
        check(&after, &after.user_principal("o", "u"), &distinct_after, &[])?;
    }
}

/// A user holding more distinct rows than a principal reads in place (12
/// roles, each granting its own permission), in a narrow and a wide policy:
/// every row counts, whether read in place or copied.
#[test]
fn a_user_of_many_distinct_rows_holds_every_one() {
    for perms in [60, 1_500] {
        let bases: Vec<Vec<usize>> = (0..12).map(|b| vec![b * 5]).collect();
        let engine = Engine::new(&policy(perms, &bases, &[])).unwrap();
        let names: Vec<String> = (0..12).map(|b| format!("base{b}")).collect();
        engine
            .apply(
                Change::SetMembership {
                    organization: "o".into(),
                    user: "u".into(),
                    roles: names,
                    groups: None,
                    creator: false,
                },
                ChangeMeta::default(),
            )
            .unwrap();
        let s = engine.snapshot();
        let user = s.user_principal("o", "u");
        let roles: Vec<RoleId> = s.roles().collect();
        assert_eq!(user.roles(), &roles[..], "{perms} permissions");
        check(&s, &user, &roles, &[]).unwrap();
        let granted: Vec<String> = (0..12).map(|b| perm(b * 5)).collect();
        let mut expected: Vec<&str> = granted.iter().map(String::as_str).collect();
        expected.sort_unstable();
        assert_eq!(user.permissions(), expected, "{perms} permissions");
    }
}
