//! The email → Scalekit user link: a `user.organization_membership_*` event
//! naming both a `usr_…` id and an email teaches the handler who the email
//! is; a directory event, which names the user by email only, then also
//! updates the `usr_…` membership (the one a token's `sub` finds first).
//! The link is journaled with the event, so it survives a restart.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod webhook_common;

use std::sync::Arc;

use rolegraph::scalekit::{Handler, HandlerOptions, UserKey};
use rolegraph::{Engine, Policy};
use serde_json::json;
use webhook_common::*;

const ORG: &str = "org_1";

fn policy() -> Policy {
    let mut p = projects_policy();
    p.organization(ORG);
    p
}

/// `user.organization_membership_{kind}` with the user's roles in the
/// payload.
fn membership(kind: &str, evt: &str, t: u32, usr: &str, email: &str, roles: &[&str]) -> Vec<u8> {
    let roles: Vec<_> = roles.iter().map(|r| json!({"name": r})).collect();
    event(
        &format!("user.organization_membership_{kind}"),
        evt,
        t,
        Some(ORG),
        json!({
            "organization": {"id": ORG},
            "user": {"id": usr, "email": email},
            "roles": roles,
        }),
    )
}

/// A directory event about `{user}@Example.com`.
fn directory(kind: &str, evt: &str, t: u32, user: &str, roles: &[&str]) -> Vec<u8> {
    user_event(kind, evt, t, ORG, user, roles, true)
}

fn roles(h: &Handler, user: &str) -> Option<Vec<String>> {
    membership_roles(h, ORG, user)
}

fn applied(h: &Handler, id: &str, body: &[u8]) {
    let o = deliver(h, id, body);
    assert_eq!(o.label(), "applied", "{id}: {o:?}");
}

fn v(names: &[&str]) -> Option<Vec<String>> {
    Some(names.iter().map(|n| (*n).to_owned()).collect())
}

#[test]
fn a_directory_event_by_email_updates_the_linked_usr_membership() {
    let h = Handler::new(Engine::new(&policy()).unwrap(), verifier());
    applied(
        &h,
        "m1",
        &membership("created", "e1", 10, "usr_1", "Ann@Example.com", &["admin"]),
    );
    assert_eq!(roles(&h, "usr_1"), v(&["admin"]));

    applied(
        &h,
        "m2",
        &directory("updated", "e2", 20, "ann", &["viewer"]),
    );
    assert_eq!(roles(&h, "ann@example.com"), v(&["viewer"]));
    assert_eq!(
        roles(&h, "usr_1"),
        v(&["viewer"]),
        "the usr_ membership follows"
    );

    // Deprovisioned in the directory: gone by both keys.
    applied(&h, "m3", &directory("deleted", "e3", 30, "ann", &[]));
    assert_eq!(roles(&h, "ann@example.com"), None);
    assert_eq!(roles(&h, "usr_1"), None);
}

#[test]
fn without_a_link_a_directory_event_touches_only_its_email() {
    let h = Handler::new(Engine::new(&policy()).unwrap(), verifier());
    applied(
        &h,
        "m1",
        &membership("created", "e1", 10, "usr_2", "bob@example.com", &["admin"]),
    );
    applied(
        &h,
        "m2",
        &directory("updated", "e2", 20, "ann", &["viewer"]),
    );
    assert_eq!(roles(&h, "ann@example.com"), v(&["viewer"]));
    assert_eq!(roles(&h, "usr_2"), v(&["admin"]));
}

#[test]
fn an_older_directory_event_does_not_undo_a_newer_membership_event() {
    let h = Handler::new(Engine::new(&policy()).unwrap(), verifier());
    applied(
        &h,
        "m1",
        &membership("created", "e1", 10, "usr_1", "ann@example.com", &["admin"]),
    );
    applied(
        &h,
        "m2",
        &membership("updated", "e2", 30, "usr_1", "ann@example.com", &["editor"]),
    );
    // Occurred at 20, before the last change to usr_1.
    applied(
        &h,
        "m3",
        &directory("updated", "e3", 20, "ann", &["viewer"]),
    );
    assert_eq!(roles(&h, "ann@example.com"), v(&["viewer"]));
    assert_eq!(roles(&h, "usr_1"), v(&["editor"]));
}

#[test]
fn the_latest_link_of_an_email_wins() {
    let h = Handler::new(Engine::new(&policy()).unwrap(), verifier());
    applied(
        &h,
        "m1",
        &membership("created", "e1", 10, "usr_1", "ann@example.com", &["admin"]),
    );
    // The address now belongs to another Scalekit user.
    applied(
        &h,
        "m2",
        &membership("created", "e2", 20, "usr_9", "ann@example.com", &["admin"]),
    );
    applied(
        &h,
        "m3",
        &directory("updated", "e3", 30, "ann", &["viewer"]),
    );
    assert_eq!(roles(&h, "usr_9"), v(&["viewer"]));
    assert_eq!(roles(&h, "usr_1"), v(&["admin"]));
}

#[test]
fn a_user_who_left_is_not_brought_back_by_a_directory_event() {
    let h = Handler::new(Engine::new(&policy()).unwrap(), verifier());
    applied(
        &h,
        "m1",
        &membership("created", "e1", 10, "usr_1", "ann@example.com", &["admin"]),
    );
    applied(
        &h,
        "m2",
        &membership("deleted", "e2", 20, "usr_1", "ann@example.com", &[]),
    );
    applied(
        &h,
        "m3",
        &directory("updated", "e3", 30, "ann", &["viewer"]),
    );
    assert_eq!(roles(&h, "ann@example.com"), v(&["viewer"]));
    assert_eq!(roles(&h, "usr_1"), None);
}

#[test]
fn the_link_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let h = Handler::new(Engine::open(dir.path(), &policy()).unwrap(), verifier());
        applied(
            &h,
            "m1",
            &membership("created", "e1", 10, "usr_1", "ann@example.com", &["admin"]),
        );
    }
    let h = Handler::new(Engine::open(dir.path(), &policy()).unwrap(), verifier());
    assert_eq!(roles(&h, "usr_1"), v(&["admin"]));
    applied(
        &h,
        "m2",
        &directory("updated", "e2", 20, "ann", &["editor"]),
    );
    assert_eq!(roles(&h, "usr_1"), v(&["editor"]));
}

#[test]
fn links_hold_when_directory_memberships_are_keyed_by_directory_user_id() {
    let h = Handler::new(Engine::new(&policy()).unwrap(), verifier())
        .with_options(HandlerOptions::default().with_user_key(UserKey::DirectoryUserId));
    applied(
        &h,
        "m1",
        &membership("created", "e1", 10, "usr_1", "Ann@Example.com", &["admin"]),
    );
    applied(
        &h,
        "m2",
        &directory("updated", "e2", 20, "ann", &["viewer"]),
    );
    assert_eq!(roles(&h, "diruser_ann"), v(&["viewer"]));
    assert_eq!(
        roles(&h, "usr_1"),
        v(&["viewer"]),
        "the usr_ membership follows the directory, as in the email mode"
    );
    // No membership by email is made in this mode.
    assert_eq!(roles(&h, "ann@example.com"), None);
    applied(&h, "m3", &directory("deleted", "e3", 30, "ann", &[]));
    assert_eq!(roles(&h, "diruser_ann"), None);
    assert_eq!(roles(&h, "usr_1"), None);
}

/// Two handlers on one engine (two app instances, or a fleet's peers):
/// directory events about ann and membership events about her `usr_1`, in
/// increasing time order each, race. A membership event landing between a
/// directory event's plan and its batch makes the batch stale on `usr_1`
/// alone: the directory event is decided again without the link, never
/// dropped as stale (its own entity only ever moves forward).
#[test]
fn a_concurrent_membership_event_never_makes_a_directory_event_stale() {
    let engine = Engine::new(&policy()).unwrap();
    let directory_side = Arc::new(Handler::new(engine.clone(), verifier()));
    let membership_side = Handler::new(engine, verifier());
    applied(
        &membership_side,
        "m0",
        &membership("created", "e0", 1, "usr_1", "ann@example.com", &["admin"]),
    );
    const ROUNDS: u32 = 1_000;
    // Both sides start each round together, so that their events overlap.
    let round = Arc::new(std::sync::Barrier::new(2));
    let d = Arc::clone(&directory_side);
    let r = Arc::clone(&round);
    let directories = std::thread::spawn(move || {
        let mut labels = Vec::new();
        for k in 0..ROUNDS {
            r.wait();
            let role = ["viewer", "editor"][k as usize % 2];
            let body = directory("updated", &format!("d{k}"), 10 + 2 * k, "ann", &[role]);
            labels.push(deliver(&d, &format!("md{k}"), &body).label());
        }
        labels
    });
    for k in 0..ROUNDS {
        round.wait();
        let body = membership(
            "updated",
            &format!("u{k}"),
            11 + 2 * k,
            "usr_1",
            "ann@example.com",
            &["admin"],
        );
        let o = deliver(&membership_side, &format!("mu{k}"), &body);
        // A membership event is stale only behind a newer directory event
        // that followed the link.
        assert!(matches!(o.label(), "applied" | "stale"), "{o:?}");
    }
    let labels = directories.join().unwrap();
    let stale = labels.iter().filter(|l| **l != "applied").count();
    assert_eq!(stale, 0, "{labels:?}");
    let last = ["viewer", "editor"][(ROUNDS as usize - 1) % 2];
    assert_eq!(roles(&directory_side, "ann@example.com"), v(&[last]));
}
