//! The engine's membership model (hash-keyed by user, one organization
//! inline, several in an ordered map) against a naive ordered map: random
//! batches of sets, removals, user removals and organization deletions,
//! with users moving between one and several organizations.
#![expect(
    clippy::indexing_slicing,
    reason = "test helpers outside #[test] functions fail loudly on purpose"
)]

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use rolegraph::{Change, ChangeMeta, Engine, Policy};

const ORGS: usize = 4;
const USERS: usize = 6;
/// Roles a membership may hold: environment roles, and `admin`, which
/// every organization has.
const ROLES: [&str; 3] = ["viewer", "editor", "admin"];

fn org(i: usize) -> String {
    format!("o{i}")
}

fn user(i: usize) -> String {
    format!("u{i}")
}

fn policy() -> Policy {
    let mut p = Policy::new();
    p.permission("doc:read");
    p.permission("doc:write");
    p.role("viewer").grant("doc:read");
    p.role("editor").extends("viewer").grant("doc:write");
    for o in 0..ORGS {
        p.organization(org(o)).role("admin").extends("editor");
    }
    p
}

#[derive(Debug, Clone)]
enum Op {
    Set(usize, usize, Vec<usize>),
    Remove(usize, usize),
    RemoveUser(usize),
    DeleteOrg(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..ORGS, 0..USERS, prop::collection::vec(0..ROLES.len(), 1..3))
            .prop_map(|(o, u, r)| Op::Set(o, u, r)),
        2 => (0..ORGS, 0..USERS).prop_map(|(o, u)| Op::Remove(o, u)),
        1 => (0..USERS).prop_map(Op::RemoveUser),
        1 => (0..ORGS).prop_map(Op::DeleteOrg),
    ]
}

/// (user, organization) → roles, the naive model.
type Naive = BTreeMap<(String, String), Vec<String>>;

fn change(op: &Op) -> Change {
    match op {
        Op::Set(o, u, r) => Change::SetMembership {
            organization: org(*o),
            user: user(*u),
            roles: r.iter().map(|&i| ROLES[i].to_owned()).collect(),
            groups: None,
            creator: false,
        },
        Op::Remove(o, u) => Change::RemoveMembership {
            organization: org(*o),
            user: user(*u),
        },
        Op::RemoveUser(u) => Change::RemoveUser { user: user(*u) },
        Op::DeleteOrg(o) => Change::DeleteOrganization { id: org(*o) },
    }
}

/// What `op` does to the naive model.
fn naive_apply(naive: &mut Naive, deleted: &mut BTreeSet<usize>, op: &Op) {
    match op {
        Op::Set(o, u, r) => {
            let mut roles: Vec<String> = Vec::new();
            for &i in r {
                if !roles.iter().any(|x| x == ROLES[i]) {
                    roles.push(ROLES[i].to_owned());
                }
            }
            naive.insert((user(*u), org(*o)), roles);
        }
        Op::Remove(o, u) => {
            naive.remove(&(user(*u), org(*o)));
        }
        Op::RemoveUser(u) => naive.retain(|(x, _), _| *x != user(*u)),
        Op::DeleteOrg(o) => {
            deleted.insert(*o);
            naive.retain(|(_, x), _| *x != org(*o));
        }
    }
}

/// Whether the engine must accept a batch that leaves `naive`: no
/// membership may hold `admin` in an organization that no longer exists.
fn valid(naive: &Naive, deleted: &BTreeSet<usize>) -> bool {
    naive.iter().all(|((_, o), roles)| {
        !roles.iter().any(|r| r == "admin") || !deleted.iter().any(|d| org(*d) == *o)
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(96),
        ..ProptestConfig::default()
    })]

    #[test]
    fn memberships_follow_a_naive_map(
        batches in prop::collection::vec(prop::collection::vec(op(), 1..6), 1..25),
    ) {
        let engine = Engine::new(&policy()).unwrap();
        let mut naive = Naive::new();
        let mut deleted = BTreeSet::new();
        for batch in &batches {
            let mut next = naive.clone();
            let mut next_deleted = deleted.clone();
            for op in batch {
                naive_apply(&mut next, &mut next_deleted, op);
            }
            let accepted = valid(&next, &next_deleted);
            let revision = engine.revision();
            let result = engine.apply_batch(batch.iter().map(change).collect(), ChangeMeta::by("test"));
            prop_assert_eq!(result.is_ok(), accepted, "{:?}: {:?}", batch, result);
            if !accepted {
                continue;
            }
            // The audit record: each membership the batch changed once,
            // with its roles before and after the whole batch.
            if engine.revision() > revision {
                let entries = engine.entries_since(revision).unwrap();
                prop_assert_eq!(entries.len(), 1);
                let mut seen = BTreeSet::new();
                for r in &entries[0].memberships {
                    let key = (r.user.clone(), r.organization.clone());
                    prop_assert!(seen.insert(key.clone()), "{:?} recorded twice", key);
                    prop_assert_eq!(&r.before, &naive.get(&key).cloned().unwrap_or_default());
                    prop_assert_eq!(&r.after, &next.get(&key).cloned().unwrap_or_default());
                }
                for key in naive.keys().chain(next.keys()) {
                    if naive.get(key) != next.get(key) {
                        prop_assert!(seen.contains(key), "{:?} changed, not recorded", key);
                    }
                }
            } else {
                prop_assert_eq!(&naive, &next, "{:?} changed nothing", batch);
            }
            naive = next;
            deleted = next_deleted;
            let s = engine.snapshot();
            prop_assert_eq!(s.memberships_len(), naive.len());
            for u in 0..USERS {
                let listed: Vec<(String, Vec<String>)> = s
                    .memberships_of(&user(u))
                    .map(|(o, m)| (o.to_owned(), m.roles.clone()))
                    .collect();
                let expected: Vec<(String, Vec<String>)> = naive
                    .iter()
                    .filter(|((x, _), _)| *x == user(u))
                    .map(|((_, o), r)| (o.clone(), r.clone()))
                    .collect();
                prop_assert_eq!(listed, expected, "memberships_of(u{})", u);
                for o in 0..ORGS {
                    let got = s.membership(&org(o), &user(u)).map(|m| m.roles.clone());
                    prop_assert_eq!(&got, &naive.get(&(user(u), org(o))).cloned());
                    if let Err(diff) = rolegraph_testkit::membership_equivalent(&s, &org(o), &user(u)) {
                        prop_assert!(false, "{}", diff);
                    }
                }
            }
        }
    }
}

/// Users in several organizations, checkpointed and opened again: the
/// memberships come back, and the checkpoint lists them by user, then
/// organization, whatever order the model keeps them in.
#[test]
fn a_checkpoint_keeps_every_membership_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy();
    let mut changes = Vec::new();
    for u in (0..40).rev() {
        for o in 0..=(u % ORGS) {
            changes.push(Change::SetMembership {
                organization: org(o),
                user: format!("user-{u:02}"),
                roles: vec![ROLES[(u + o) % ROLES.len()].to_owned()],
                groups: None,
                creator: false,
            });
        }
    }
    let expected: Vec<(String, String, Vec<String>)> = {
        let engine = Engine::open(dir.path(), &policy).unwrap();
        engine.apply_batch(changes, ChangeMeta::default()).unwrap();
        engine.checkpoint().unwrap();
        let s = engine.snapshot();
        (0..40)
            .flat_map(|u| {
                let name = format!("user-{u:02}");
                s.memberships_of(&name)
                    .map(|(o, m)| (name.clone(), o.to_owned(), m.roles.clone()))
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    assert_eq!(expected.len(), (0..40).map(|u| u % ORGS + 1).sum::<usize>());
    let engine = Engine::open(dir.path(), &policy).unwrap();
    let s = engine.snapshot();
    assert_eq!(s.memberships_len(), expected.len());
    for (u, o, roles) in &expected {
        assert_eq!(&s.membership(o, u).unwrap().roles, roles, "{o}/{u}");
    }
    // The checkpoint file lists (user, organization) in order.
    let bytes = std::fs::read(dir.path().join("checkpoint")).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    let mut listed = Vec::new();
    let mut at = 0;
    while let Some(i) = text[at..].find("\"user\":\"") {
        let start = at + i + 8;
        let end = start + text[start..].find('"').unwrap();
        listed.push(text[start..end].to_owned());
        at = end;
    }
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(listed.len(), expected.len());
    assert_eq!(listed, sorted);
}

/// Deleting an organization records the memberships it dropped by user
/// key, whatever order the model keeps them in.
#[test]
fn deleting_an_organization_reports_users_in_order() {
    let engine = Engine::new(&policy()).unwrap();
    let changes: Vec<Change> = (0..200)
        .rev()
        .map(|u| Change::SetMembership {
            organization: org(1),
            user: format!("user-{u:03}"),
            roles: vec!["admin".to_owned()],
            groups: None,
            creator: false,
        })
        .collect();
    engine.apply_batch(changes, ChangeMeta::default()).unwrap();
    let outcome = engine
        .apply(
            Change::DeleteOrganization { id: org(1) },
            ChangeMeta::default(),
        )
        .unwrap();
    let expected: Vec<String> = (0..200).map(|u| format!("o1/user-{u:03}")).collect();
    assert_eq!(outcome.users_affected, expected);
    // The audit record too (the engine sorts the outcome, not the record):
    // every instance of a fleet writes the same.
    let entry = engine.entries_since(outcome.revision - 1).unwrap();
    let recorded: Vec<String> = entry[0]
        .memberships
        .iter()
        .map(|r| format!("{}/{}", r.organization, r.user))
        .collect();
    assert_eq!(recorded, expected);
    assert_eq!(engine.snapshot().memberships_len(), 0);
}

/// Several organizations deleted in one batch, with memberships set between
/// the deletions: each deletion drops exactly the memberships its
/// organization holds at that point of the batch, those set after the
/// batch's first deletion included, and nothing else.
#[test]
fn one_batch_deleting_organizations_drops_what_each_holds_then() {
    let engine = Engine::new(&policy()).unwrap();
    let set = |o: usize, u: &str| Change::SetMembership {
        organization: org(o),
        user: u.to_owned(),
        roles: vec!["viewer".to_owned()],
        groups: None,
        creator: false,
    };
    engine
        .apply_batch(
            vec![set(0, "ann"), set(1, "ann"), set(1, "bob"), set(2, "cy")],
            ChangeMeta::default(),
        )
        .unwrap();
    let outcome = engine
        .apply_batch(
            vec![
                Change::DeleteOrganization { id: org(0) },
                // New in o1 and in o2 after the first deletion.
                set(1, "dee"),
                set(2, "eve"),
                // Gone from o1 before its deletion: not dropped by it.
                Change::RemoveMembership {
                    organization: org(1),
                    user: "bob".to_owned(),
                },
                // Gone and back: dropped once.
                Change::RemoveMembership {
                    organization: org(1),
                    user: "ann".to_owned(),
                },
                set(1, "ann"),
                Change::DeleteOrganization { id: org(1) },
                // Back in o1 after its deletion, then deleted again.
                set(1, "fay"),
                Change::RemoveMembership {
                    organization: org(2),
                    user: "cy".to_owned(),
                },
                Change::DeleteOrganization { id: org(1) },
            ],
            ChangeMeta::default(),
        )
        .unwrap();
    let snapshot = engine.snapshot();
    let left: Vec<(String, String)> = ["ann", "bob", "cy", "dee", "eve", "fay"]
        .iter()
        .flat_map(|u| (0..3).map(move |o| (org(o), (*u).to_owned())))
        .filter(|(o, u)| snapshot.membership(o, u).is_some())
        .collect();
    assert_eq!(left, vec![(org(2), "eve".to_owned())]);
    assert_eq!(snapshot.memberships_len(), 1);
    // The memberships the deletions dropped, each once.
    assert_eq!(
        outcome.users_affected,
        ["o0/ann", "o1/ann", "o1/dee", "o1/fay"]
    );
}

/// From a batch's second organization deletion on, the users of each
/// organization come from a map built then: a membership removed, or
/// removed and set again, after that point is dropped by a later deletion
/// only if it still exists, and once.
#[test]
fn memberships_changed_after_the_second_deletion_are_dropped_as_they_stand() {
    let engine = Engine::new(&policy()).unwrap();
    let set = |o: usize, u: &str| Change::SetMembership {
        organization: org(o),
        user: u.to_owned(),
        roles: vec!["viewer".to_owned()],
        groups: None,
        creator: false,
    };
    let remove = |o: usize, u: &str| Change::RemoveMembership {
        organization: org(o),
        user: u.to_owned(),
    };
    engine
        .apply_batch(
            vec![set(0, "ann"), set(1, "bob"), set(2, "cy"), set(2, "dee")],
            ChangeMeta::default(),
        )
        .unwrap();
    let outcome = engine
        .apply_batch(
            vec![
                Change::DeleteOrganization { id: org(0) },
                // The second deletion: the map of o2's users is built here.
                Change::DeleteOrganization { id: org(1) },
                remove(2, "cy"),
                remove(2, "dee"),
                set(2, "dee"),
                Change::DeleteOrganization { id: org(2) },
            ],
            ChangeMeta::default(),
        )
        .unwrap();
    assert_eq!(outcome.users_affected, ["o0/ann", "o1/bob", "o2/dee"]);
    assert_eq!(engine.snapshot().memberships_len(), 0);
}
