//! Webhook deliveries stay idempotent across a fleet: the delivery record
//! travels in the batch, so a retry that lands on another instance — even
//! one that has not caught up yet — is a duplicate there. Real Redis, real
//! handlers, signed deliveries.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

mod fleet_common;
mod webhook_common;

use std::time::Duration;

use fleet_common::{initial, Redis};
use rolegraph::fleet::FleetOptions;
use rolegraph::scalekit::{Handler, WebhookOutcome};
use rolegraph::{Change, Engine};
use webhook_common::{deliver, role_event, verifier};

fn instance(redis: &Redis, name: &str) -> Handler {
    let engine = Engine::new(&initial()).unwrap();
    engine
        .join_fleet(
            FleetOptions::new(redis.url())
                .with_key("hooks")
                .with_instance(name),
        )
        .unwrap();
    Handler::new(engine, verifier())
}

#[test]
fn a_retry_on_another_instance_is_a_duplicate() {
    let redis = Redis::start();
    let a = instance(&redis, "a");
    let b = instance(&redis, "b");
    for k in 0..20 {
        let id = format!("msg_{k}");
        let body = role_event(
            "created",
            &format!("evt_{k}"),
            k,
            &format!("role_{k}"),
            None,
        );
        let first = deliver(&a, &id, &body);
        assert!(matches!(first, WebhookOutcome::Applied(_)), "{first:?}");
        // At once, before B has necessarily caught up.
        let retry = deliver(&b, &id, &body);
        assert!(
            matches!(retry, WebhookOutcome::Duplicate { .. }),
            "delivery {id} on the other instance: {retry:?}"
        );
        assert_eq!(retry.status(), 200);
    }
    let mut ids: Vec<String> = redis
        .entries("hooks")
        .into_iter()
        .flat_map(|e| e.changes)
        .filter_map(|c| match c {
            Change::RecordDelivery { id, .. } => Some(id),
            _ => None,
        })
        .collect();
    assert_eq!(ids.len(), 20, "each delivery recorded once: {ids:?}");
    ids.dedup();
    assert_eq!(ids.len(), 20);
    let top = a.engine().revision();
    assert!(b.engine().wait_for_revision(top, Duration::from_secs(5)));
    assert_eq!(a.engine().policy(), b.engine().policy());
}

#[test]
fn with_redis_down_a_delivery_is_answered_for_a_retry_and_applied_after() {
    let mut redis = Redis::start();
    let a = instance(&redis, "a");
    let b = instance(&redis, "b");
    let body = role_event("created", "evt_1", 1, "auditor2", None);
    redis.kill();
    let out = deliver(&a, "msg_1", &body);
    assert!(!out.is_acknowledged(), "{out:?}");
    // 503 with Retry-After: Scalekit retries, and nobody is paged for it.
    assert_eq!(out.status(), 503, "{out:?}");
    assert!(out.retry_after().is_some(), "{out:?}");
    redis.restart();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let out = loop {
        let out = deliver(&a, "msg_1", &body);
        if out.is_acknowledged() || std::time::Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(matches!(out, WebhookOutcome::Applied(_)), "{out:?}");
    let retry = deliver(&b, "msg_1", &body);
    assert!(
        matches!(retry, WebhookOutcome::Duplicate { .. }),
        "{retry:?}"
    );
}
