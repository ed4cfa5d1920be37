//! Random bodies and headers through the whole handler: never a panic, no
//! state change unless the signature verifies, and every verified event
//! leaves a valid policy. (The same properties as the cargo-fuzz target,
//! run on every `cargo test`.)

// Test helpers outside `#[test]` functions may fail loudly too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod webhook_common;

use proptest::collection::vec;
use proptest::prelude::*;
use rolegraph::scalekit::Handler;
use rolegraph::{Engine, Policy};
use serde_json::{json, Value};
use webhook_common::*;

fn handler() -> Handler {
    let mut p = Policy::new();
    p.permission("a:read").permission("a:write");
    p.role("viewer").grant("a:read");
    p.role("editor").extends("viewer").grant("a:write");
    p.organization("org_1").map_group("dirgroup_1", ["editor"]);
    Handler::new(Engine::new(&p).unwrap(), verifier())
}

const TYPES: &[&str] = &[
    "organization.directory.user_created",
    "organization.directory.user_updated",
    "organization.directory.user_deleted",
    "organization.directory.group_created",
    "organization.directory.group_deleted",
    "role.created",
    "role.updated",
    "role.deleted",
    "permission.created",
    "permission.updated",
    "permission.deleted",
    "user.organization_membership_created",
    "user.organization_membership_deleted",
    "organization.deleted",
    "user.login",
];

const NAMES: &[&str] = &[
    "viewer", "editor", "admin", "x", "", "bad name", "a:read", "a:write",
];

fn name() -> impl Strategy<Value = Value> {
    prop_oneof![
        proptest::sample::select(NAMES).prop_map(|s| json!(s)),
        Just(Value::Null),
        any::<i64>().prop_map(|n| json!(n)),
        ".{0,8}".prop_map(|s| json!(s)),
    ]
}

fn data() -> impl Strategy<Value = Value> {
    (
        name(),
        name(),
        name(),
        prop_oneof![
            Just(json!("org_1")),
            Just(json!("org_2")),
            Just(Value::Null)
        ],
        vec(name(), 0..4),
        prop_oneof![Just(json!(true)), Just(json!(false)), Just(Value::Null)],
        name(),
    )
        .prop_map(|(id, n, extends, org, roles, active, email)| {
            let roles: Vec<Value> = roles.into_iter().map(|r| json!({"role_name": r})).collect();
            json!({
                "id": id, "name": n, "extends": extends, "organization_id": org,
                "roles": roles, "active": active, "email": email, "display_name": n,
            })
        })
}

fn event() -> impl Strategy<Value = Value> {
    (
        proptest::sample::select(TYPES),
        ".{0,6}",
        prop_oneof![
            (0u32..50).prop_map(|t| json!(at(t))),
            Just(json!("not a time")),
            Just(Value::Null),
        ],
        prop_oneof![Just(json!("org_1")), Just(Value::Null)],
        prop_oneof![data(), Just(Value::Null), Just(json!([1, 2]))],
    )
        .prop_map(|(t, id, occurred, org, data)| {
            json!({"id": id, "type": t, "occurred_at": occurred, "organization_id": org, "data": data})
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn unsigned_deliveries_change_nothing(
        body in vec(any::<u8>(), 0..600),
        id in ".{0,40}",
        ts in prop_oneof![".{0,20}", Just(NOW_S.to_string())],
        sig in prop_oneof![".{0,120}", "v1,[A-Za-z0-9+/]{43}="],
        header_names in vec(proptest::sample::select(&["webhook-id", "Webhook-Signature", "x-other", "WEBHOOK-TIMESTAMP"][..]), 0..3),
    ) {
        let h = handler();
        let before = h.engine().policy();
        let mut headers = vec![
            ("webhook-id".to_owned(), id.clone()),
            ("webhook-timestamp".to_owned(), ts.clone()),
            ("webhook-signature".to_owned(), sig.clone()),
        ];
        for n in header_names {
            headers.push((n.to_owned(), id.clone()));
        }
        let out = h.handle_at(headers, &body, now());
        prop_assert_eq!(out.status(), 401, "{}", out.body());
        prop_assert_eq!(h.engine().revision(), 0);
        prop_assert_eq!(h.engine().policy(), before);
    }

    #[test]
    fn signed_events_never_panic_and_leave_a_valid_policy(events in vec(event(), 1..6)) {
        let h = handler();
        for (i, e) in events.iter().enumerate() {
            let body = serde_json::to_vec(e).unwrap();
            let out = deliver(&h, &format!("msg_{i}"), &body);
            prop_assert!(matches!(out.status(), 200 | 400 | 503), "{}: {}", out.status(), out.body());
            prop_assert!(serde_json::from_str::<Value>(&out.body()).is_ok());
            prop_assert!(h.engine().policy().compile().is_ok());
        }
    }

    #[test]
    fn signed_random_bytes_never_panic(body in vec(any::<u8>(), 0..600)) {
        let h = handler();
        let out = deliver(&h, "msg_1", &body);
        prop_assert!(matches!(out.status(), 200 | 400), "{}", out.body());
        prop_assert!(h.engine().policy().compile().is_ok());
    }
}
