//! Several clients making thousands of requests over real HTTP while a
//! thousand signed webhook deliveries change the user's roles: no 5xx, each
//! client sees revisions that never go backwards, and every decision is the
//! one the membership at that revision gives.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod http_common;
mod webhook_common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::get;
use http_common::*;
use rolegraph::http::{webhook_route, Authenticated, AuthorizeLayer, Mode};
use rolegraph::scalekit::Handler;
use rolegraph::Engine;

const CLIENTS: usize = 4;
const REQUESTS: usize = 1_250;
const CHANGES: u32 = 1_000;

/// `revision has_delete` of the request's principal.
async fn check(who: Authenticated) -> String {
    let p = who.principal();
    let id = p.snapshot().permission_id("projects:delete").unwrap();
    format!("{} {}", who.revision(), p.has(id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_see_monotonic_revisions_and_fresh_decisions_while_webhooks_land() {
    let started = Instant::now();
    let engine = Engine::new(&policy()).unwrap();
    let handler = Arc::new(Handler::new(engine.clone(), webhook_common::verifier()));
    let issuer = Issuer::start().await;
    let auth = AuthorizeLayer::new(engine.clone(), issuer.verifier()).mode(Mode::Membership);
    let app = router(&auth)
        .route("/check", get(check).layer(auth.clone()))
        .route(
            "/webhooks/scalekit",
            webhook_route(Arc::clone(&handler), 1 << 20),
        );
    let base = serve(app).await;

    // Alice starts as an admin; deliveries alternate viewer / admin.
    let admin_at = |k: u32| k.is_multiple_of(2);
    let mut claims = TestClaims::new("usr_alice", &["admin"]);
    claims.email = Some("alice@example.com".into());
    let token = issuer.mint(&claims);

    let sender = {
        let base = base.clone();
        tokio::spawn(async move {
            let c = client();
            // revision -> whether alice is an admin from it on
            let mut applied = BTreeMap::new();
            for k in 0..=CHANGES {
                let roles: &[&str] = if admin_at(k) { &["admin"] } else { &["viewer"] };
                let id = format!("msg_{k}");
                let body = webhook_common::user_event(
                    "updated",
                    &format!("evt_{k}"),
                    k + 1,
                    ORG,
                    "alice",
                    roles,
                    true,
                );
                let ts = now_s() as i64;
                let sig = webhook_common::verifier().sign(&id, ts, &body);
                let resp = c
                    .post(format!("{base}/webhooks/scalekit"))
                    .header("webhook-id", &id)
                    .header("webhook-timestamp", ts.to_string())
                    .header("webhook-signature", sig)
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200);
                let v: serde_json::Value = resp.json_text().await;
                assert_eq!(v["status"], "applied", "{v}");
                applied.insert(v["revision"].as_u64().unwrap(), admin_at(k));
                if k == 0 {
                    // Let the clients start against a known membership.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            applied
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;

    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let base = base.clone();
        let token = token.clone();
        clients.push(tokio::spawn(async move {
            let c = client();
            let mut seen = Vec::with_capacity(REQUESTS);
            let mut last = 0u64;
            for n in 0..REQUESTS {
                // Alternate a protected route and the decision probe.
                let path = if (n + i) % 2 == 0 {
                    "/projects"
                } else {
                    "/check"
                };
                let a = get_as(&c, &format!("{base}{path}"), Some(&token)).await;
                assert!(a.status < 500, "5xx: {a:?}");
                assert_eq!(a.status, 200, "{a:?}");
                let revision = if path == "/check" {
                    let (r, has) = a.body.split_once(' ').unwrap();
                    let r: u64 = r.parse().unwrap();
                    seen.push((r, has == "true"));
                    r
                } else {
                    a.revision.unwrap()
                };
                assert!(
                    revision >= last,
                    "client {i}: revision {revision} after {last}"
                );
                last = revision;
            }
            seen
        }));
    }
    let mut observed = Vec::new();
    for c in clients {
        observed.extend(c.await.unwrap());
    }
    let applied = sender.await.unwrap();
    assert_eq!(applied.len(), CHANGES as usize + 1);

    // Every decision is the membership's at the revision the request saw.
    let mut checked = 0;
    let observed_revisions: Vec<u64> = observed.iter().map(|(r, _)| *r).collect();
    for (revision, has_delete) in observed {
        if let Some((_, admin)) = applied.range(..=revision).next_back() {
            assert_eq!(has_delete, *admin, "revision {revision}");
            checked += 1;
        }
    }
    assert!(
        checked > 100,
        "only {checked} decisions overlapped the changes"
    );
    let distinct: std::collections::BTreeSet<u64> = observed_revisions.into_iter().collect();
    assert!(
        distinct.len() > 20,
        "the clients saw only {} revisions: the principal is not fresh",
        distinct.len()
    );

    // Once the changes stop, the next request sees the last one.
    let a = get_as(&client(), &format!("{base}/check"), Some(&token)).await;
    assert_eq!(
        a.body,
        format!("{} {}", engine.revision(), admin_at(CHANGES))
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}

trait JsonText {
    async fn json_text(self) -> serde_json::Value;
}

impl JsonText for reqwest::Response {
    async fn json_text(self) -> serde_json::Value {
        serde_json::from_str(&self.text().await.unwrap()).unwrap()
    }
}
