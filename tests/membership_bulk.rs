//! Memberships loaded in bulk answer as the same changes applied one by
//! one: a batch large enough that the engine builds the membership index
//! anew (keeping the entries it had, storing the roles the batch's
//! validation resolved) must leave every membership, its roles and its
//! principal as a batch of one change at a time does, and as the testkit
//! oracle resolves them from the policy. Group mappings, default roles,
//! users in several organizations, removals and policy changes in the
//! same batch included.
#![expect(
    clippy::indexing_slicing,
    reason = "test helpers outside #[test] functions fail loudly on purpose"
)]

use proptest::prelude::*;
use rolegraph::{Change, ChangeMeta, Engine, Policy, Snapshot};

const ORGS: usize = 3;
const USERS: usize = 200;
/// Role names a membership may hold: two environment roles, and `admin`,
/// which every organization has.
const ROLES: [&str; 3] = ["viewer", "editor", "admin"];
/// Directory groups: `Eng` maps to a role in `o0`, `Ops` nowhere (so a
/// member only in `Ops` gets the default member role).
const GROUPS: [&str; 2] = ["Eng", "Ops"];

fn org(i: usize) -> String {
    format!("o{i}")
}

fn user(i: usize) -> String {
    format!("user-{i}")
}

fn policy() -> Policy {
    let mut p = Policy::new();
    p.permission("doc:read");
    p.permission("doc:write");
    p.permission("doc:admin");
    p.role("viewer").grant("doc:read");
    p.role("editor").extends("viewer");
    for o in 0..ORGS {
        p.organization(org(o))
            .role("admin")
            .extends("editor")
            .grant("doc:admin");
    }
    p.organization("o0").map_group("Eng", ["editor"]);
    p
}

/// Changes every one of which is valid on its own, whatever came before,
/// so a batch of them and the same changes one by one are both accepted.
fn op() -> impl Strategy<Value = Change> {
    let roles = || prop::collection::vec(0..ROLES.len(), 0..3);
    let names = |r: Vec<usize>| r.into_iter().map(|i| ROLES[i].to_owned()).collect();
    prop_oneof![
        12 => (0..ORGS, 0..USERS, roles(), prop::option::of(prop::collection::vec(0..GROUPS.len(), 0..3)), any::<bool>())
            .prop_map(move |(o, u, r, g, creator)| Change::SetMembership {
                organization: org(o),
                user: user(u),
                roles: names(r),
                groups: g.map(|g| g.into_iter().map(|i| GROUPS[i].to_owned()).collect()),
                creator,
            }),
        2 => (0..ORGS, 0..USERS, roles()).prop_map(move |(o, u, r)| Change::AddMembershipRoles {
            organization: org(o),
            user: user(u),
            roles: names(r),
        }),
        2 => (0..ORGS, 0..USERS, roles()).prop_map(move |(o, u, r)| Change::RemoveMembershipRoles {
            organization: org(o),
            user: user(u),
            roles: names(r),
        }),
        3 => (0..ORGS, 0..USERS).prop_map(|(o, u)| Change::RemoveMembership {
            organization: org(o),
            user: user(u),
        }),
        1 => (0..USERS).prop_map(|u| Change::RemoveUser { user: user(u) }),
        // A grant changes rows, not role names: the index is kept.
        1 => any::<bool>().prop_map(|grant| if grant {
            Change::GrantPermission { organization: None, role: "editor".into(), permission: "doc:write".into() }
        } else {
            Change::RevokePermission { organization: None, role: "editor".into(), permission: "doc:write".into() }
        }),
    ]
}

/// A group mapping or a default: changes how every membership resolves,
/// so the index is built again from the model.
fn remap() -> impl Strategy<Value = Change> {
    let names = |r: Vec<usize>| r.into_iter().map(|i| ROLES[i].to_owned()).collect();
    prop_oneof![
        prop::collection::vec(0..ROLES.len(), 0..2).prop_map(move |r| Change::SetGroupRoles {
            organization: org(1),
            group: "Ops".into(),
            roles: names(r),
        }),
        prop::option::of(0..ROLES.len()).prop_map(|r| Change::SetOrganizationDefaultRole {
            organization: org(2),
            role: r.map(|i| ROLES[i].to_owned()),
        }),
    ]
}

/// Small batches and bulk ones (more than a quarter of the index and
/// more than a shard's worth: the index is built anew).
fn batch() -> impl Strategy<Value = Vec<Change>> {
    prop_oneof![
        prop::collection::vec(prop_oneof![9 => op(), 1 => remap()], 1..6),
        prop::collection::vec(op(), 150..400),
        (prop::collection::vec(op(), 150..400), remap(), 0..150usize).prop_map(
            |(mut batch, remap, at)| {
                batch.insert(at.min(batch.len()), remap);
                batch
            }
        ),
    ]
}

/// (organization, user, membership's role names, resolved roles by name).
type Answer = (String, String, Option<Vec<String>>, Vec<String>);

/// Every (organization, user): its membership and its roles by name.
fn answers(s: &Snapshot) -> Vec<Answer> {
    let mut out = Vec::new();
    for o in 0..ORGS {
        for u in 0..USERS {
            let (o, u) = (org(o), user(u));
            let m = s.membership(&o, &u).map(|m| m.roles.clone());
            let roles = s
                .user_roles(&o, &u)
                .iter()
                .map(|r| s.role_name(*r).to_owned())
                .collect();
            out.push((o, u, m, roles));
        }
    }
    out
}

/// The index of `s` against the testkit's oracle, for every pair.
fn oracle_agrees(s: &Snapshot) -> Result<(), String> {
    for o in 0..ORGS {
        for u in 0..USERS {
            rolegraph_testkit::membership_equivalent(s, &org(o), &user(u))?;
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(24),
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_bulk_batch_answers_as_one_change_at_a_time(
        batches in prop::collection::vec(batch(), 1..6),
    ) {
        let bulk = Engine::new(&policy()).unwrap();
        let single = Engine::new(&policy()).unwrap();
        for batch in &batches {
            bulk.apply_batch(batch.clone(), ChangeMeta::default()).unwrap();
            for change in batch {
                single.apply(change.clone(), ChangeMeta::default()).unwrap();
            }
            let (b, s) = (bulk.snapshot(), single.snapshot());
            prop_assert_eq!(b.memberships_len(), s.memberships_len());
            prop_assert_eq!(answers(&b), answers(&s));
            if let Err(diff) = oracle_agrees(&b) {
                prop_assert!(false, "bulk: {}", diff);
            }
        }
    }
}

fn member(o: usize, u: usize, role: &str) -> Change {
    Change::SetMembership {
        organization: org(o),
        user: user(u),
        roles: vec![role.to_owned()],
        groups: None,
        creator: false,
    }
}

/// A second bulk batch (more than a quarter of the index) builds the index
/// anew: the memberships the first one loaded are carried over as they
/// were, the new and the changed ones as the second batch resolved them.
#[test]
fn a_second_bulk_load_keeps_the_first() {
    let engine = Engine::new(&policy()).unwrap();
    let first: Vec<Change> = (0..USERS).map(|u| member(u % ORGS, u, "viewer")).collect();
    engine.apply_batch(first, ChangeMeta::default()).unwrap();
    // 100 new memberships (a second organization for half the users), 20
    // changed, 10 removed: 130 > 200 / 4 + 64.
    let mut second: Vec<Change> = (0..100)
        .map(|u| member((u + 1) % ORGS, u, "admin"))
        .collect();
    second.extend((100..120).map(|u| member(u % ORGS, u, "editor")));
    second.extend((120..130).map(|u| Change::RemoveMembership {
        organization: org(u % ORGS),
        user: user(u),
    }));
    engine.apply_batch(second, ChangeMeta::default()).unwrap();
    let s = engine.snapshot();
    assert_eq!(s.memberships_len(), 200 + 100 - 10);
    for u in 0..USERS {
        let home = s
            .membership(&org(u % ORGS), &user(u))
            .map(|m| m.roles.clone());
        let want = match u {
            0..100 | 130.. => Some(vec!["viewer".to_owned()]),
            100..120 => Some(vec!["editor".to_owned()]),
            _ => None,
        };
        assert_eq!(home, want, "{}", user(u));
        let second = s.membership(&org((u + 1) % ORGS), &user(u)).is_some();
        assert_eq!(second, u < 100, "{}", user(u));
    }
    oracle_agrees(&s).unwrap();
}

/// A bulk batch naming a role that does not exist where the membership is
/// held is refused whole, with the first such role, and loads nothing.
#[test]
fn a_bulk_load_with_one_unknown_role_is_refused_whole() {
    let engine = Engine::new(&policy()).unwrap();
    let mut changes: Vec<Change> = (0..150).map(|u| member(u % ORGS, u, "viewer")).collect();
    changes.insert(
        77,
        Change::SetMembership {
            organization: "o9".into(),
            user: user(77),
            roles: vec!["viewer".into(), "admin".into(), "ghost".into()],
            groups: None,
            creator: false,
        },
    );
    let err = engine
        .apply_batch(changes, ChangeMeta::default())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        rolegraph::ChangeError::UnknownMembershipRole {
            organization: "o9".into(),
            role: "admin".into(),
        }
        .to_string()
    );
    assert_eq!(engine.revision(), 0);
    assert_eq!(engine.snapshot().memberships_len(), 0);
}
