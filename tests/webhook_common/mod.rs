//! Shared helpers of the webhook tests: a fixed clock, signed deliveries,
//! event bodies in Scalekit's shape.

#![allow(dead_code, clippy::unwrap_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rolegraph::scalekit::{Handler, Verifier, WebhookOutcome};
use rolegraph::Policy;
use serde_json::{json, Value};

/// The test vector's secret (key bytes `testsecret`).
pub const SECRET: &str = "whsec_dGVzdHNlY3JldA==";

/// The receiver's clock in every test: 2025-06-01T00:00:00Z.
pub const NOW_S: i64 = 1_748_736_000;

pub fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW_S as u64)
}

pub fn verifier() -> Verifier {
    Verifier::new([SECRET]).unwrap()
}

/// Headers of a delivery of `body` as `id`, signed now.
pub fn headers(id: &str, body: &[u8]) -> Vec<(String, String)> {
    vec![
        ("webhook-id".into(), id.into()),
        ("webhook-timestamp".into(), NOW_S.to_string()),
        ("webhook-signature".into(), verifier().sign(id, NOW_S, body)),
    ]
}

/// Delivers `body` as `id` to `handler`, signed, at the fixed clock.
pub fn deliver(handler: &Handler, id: &str, body: &[u8]) -> WebhookOutcome {
    handler.handle_at(headers(id, body), body, now())
}

/// `occurred_at` for second `t` of 2025-05-31 (before the clock).
pub fn at(t: u32) -> String {
    format!(
        "2025-05-31T{:02}:{:02}:{:02}.{:06}Z",
        t / 3600 % 24,
        t / 60 % 60,
        t % 60,
        t % 1000
    )
}

/// An event body.
pub fn event(event_type: &str, evt: &str, t: u32, org: Option<&str>, data: Value) -> Vec<u8> {
    let mut v = json!({
        "spec_version": "1",
        "id": evt,
        "type": event_type,
        "occurred_at": at(t),
        "environment_id": "env_1",
        "object": "Thing",
        "data": data,
    });
    if let Some(org) = org {
        v["organization_id"] = json!(org);
    }
    serde_json::to_vec(&v).unwrap()
}

/// `organization.directory.user_updated` (or `_created`) in Scalekit's shape.
pub fn user_event(
    kind: &str,
    evt: &str,
    t: u32,
    org: &str,
    user: &str,
    roles: &[&str],
    active: bool,
) -> Vec<u8> {
    let roles: Vec<Value> = roles.iter().map(|r| json!({"role_name": r})).collect();
    event(
        &format!("organization.directory.user_{kind}"),
        evt,
        t,
        Some(org),
        json!({
            "id": format!("diruser_{user}"),
            "organization_id": org,
            "dp_id": "ext",
            "email": format!("{user}@Example.com"),
            "active": active,
            "name": user,
            "roles": roles,
            "groups": [],
            "raw_attributes": {},
        }),
    )
}

/// `role.created` / `role.updated` / `role.deleted`.
pub fn role_event(kind: &str, evt: &str, t: u32, name: &str, extends: Option<&str>) -> Vec<u8> {
    event(
        &format!("role.{kind}"),
        evt,
        t,
        None,
        json!({
            "id": format!("role_{name}"),
            "name": name,
            "display_name": name.to_uppercase(),
            "description": format!("the {name} role"),
            "extends": extends,
        }),
    )
}

/// `permission.created` / `.updated` / `.deleted`.
pub fn permission_event(kind: &str, evt: &str, t: u32, name: &str) -> Vec<u8> {
    event(
        &format!("permission.{kind}"),
        evt,
        t,
        None,
        json!({"id": format!("perm_{name}"), "name": name, "description": format!("may {name}")}),
    )
}

/// The status label and HTTP status of an outcome, for compact asserts.
pub fn label(o: &WebhookOutcome) -> (&'static str, u16) {
    (o.label(), o.status())
}

/// Roles of `user` (email key) in `org`, sorted.
pub fn roles_of(handler: &Handler, org: &str, user: &str) -> Option<Vec<String>> {
    membership_roles(handler, org, &format!("{user}@example.com"))
}

/// Roles of the membership stored under `key` in `org`, sorted.
pub fn membership_roles(handler: &Handler, org: &str, key: &str) -> Option<Vec<String>> {
    handler.engine().snapshot().membership(org, key).map(|m| {
        let mut r = m.roles.clone();
        r.sort();
        r
    })
}

/// The webhook tests' base policy: `projects:read`, `projects:update`,
/// `users:write`, and `viewer` < `editor` < `admin` granting one each.
pub fn projects_policy() -> Policy {
    let mut p = Policy::new();
    p.permission("projects:read")
        .permission("projects:update")
        .permission("users:write");
    p.role("viewer").grant("projects:read");
    p.role("editor").extends("viewer").grant("projects:update");
    p.role("admin").extends("editor").grant("users:write");
    p
}
