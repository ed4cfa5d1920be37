//! The webhook route over real HTTP: a signed delivery revokes a role and
//! the next request is denied (membership mode); a body over the limit is
//! refused with 413 before any signature is computed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod http_common;
mod webhook_common;

use std::sync::Arc;

use http_common::*;
use rolegraph::http::{webhook_route, AuthorizeLayer, Mode};
use rolegraph::scalekit::{Handler, WebhookStats};
use rolegraph::Engine;

const LIMIT: usize = 1 << 20;

struct App {
    base: String,
    engine: Engine,
    handler: Arc<Handler>,
    issuer: Issuer,
}

async fn app() -> App {
    let engine = Engine::new(&policy()).unwrap();
    let handler = Arc::new(Handler::new(engine.clone(), webhook_common::verifier()));
    let issuer = Issuer::start().await;
    let auth = AuthorizeLayer::new(engine.clone(), issuer.verifier())
        .mode(Mode::Membership)
        .realm("projects");
    let router = router(&auth).route(
        "/webhooks/scalekit",
        webhook_route(Arc::clone(&handler), LIMIT),
    );
    App {
        base: serve(router).await,
        engine,
        handler,
        issuer,
    }
}

/// POSTs `body` as delivery `id`, signed now; status and body.
async fn deliver(base: &str, id: &str, body: Vec<u8>) -> (u16, String) {
    let ts = now_s() as i64;
    let sig = webhook_common::verifier().sign(id, ts, &body);
    let resp = client()
        .post(format!("{base}/webhooks/scalekit"))
        .header("webhook-id", id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", sig)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

fn alice(evt: &str, t: u32, roles: &[&str]) -> Vec<u8> {
    webhook_common::user_event("updated", evt, t, ORG, "alice", roles, true)
}

#[tokio::test]
async fn a_signed_webhook_revokes_a_role_and_the_next_request_is_denied() {
    let app = app().await;
    let (status, body) = deliver(&app.base, "msg_1", alice("evt_1", 1, &["admin"])).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.starts_with(r#"{"status":"applied","revision":"#),
        "{body}"
    );

    // The token still says admin, and will until it expires.
    let mut claims = TestClaims::new("usr_alice", &["admin"]);
    claims.email = Some("alice@example.com".into());
    claims.permissions = vec!["projects:delete".into()];
    let token = app.issuer.mint(&claims);
    let delete = || async {
        let url = format!("{}/projects/delete", app.base);
        Answer::of(client().post(url).bearer_auth(&token).send().await.unwrap()).await
    };
    let a = delete().await;
    assert_eq!(
        (a.status, a.source.as_deref()),
        (200, Some("email")),
        "{a:?}"
    );

    let (status, body) = deliver(&app.base, "msg_2", alice("evt_2", 2, &["viewer"])).await;
    assert_eq!(status, 200, "{body}");
    let a = delete().await;
    assert_eq!(a.status, 403, "{a:?}");
    assert_eq!(
        a.challenge.as_deref(),
        Some(r#"Bearer realm="projects", error="insufficient_scope", scope="projects:delete""#)
    );
    // Still a viewer.
    let a = get_as(&client(), &format!("{}/projects", app.base), Some(&token)).await;
    assert_eq!((a.status, a.revision), (200, Some(app.engine.revision())));

    // A redelivery is acknowledged and changes nothing.
    let (status, body) = deliver(&app.base, "msg_2", alice("evt_2", 2, &["viewer"])).await;
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"status":"duplicate","id":"msg_2"}"#)
    );
    assert_eq!(app.handler.stats().applied, 2);
}

#[tokio::test]
async fn a_bad_signature_is_401_from_the_handler() {
    let app = app().await;
    let body = alice("evt_1", 1, &["admin"]);
    let resp = client()
        .post(format!("{}/webhooks/scalekit", app.base))
        .header("webhook-id", "msg_1")
        .header("webhook-timestamp", now_s().to_string())
        .header("webhook-signature", "v1,AAAA")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(app.handler.stats().bad_signature, 1);
}

#[tokio::test]
async fn a_2_mb_body_is_refused_with_413_before_verification() {
    let app = app().await;
    let before = app.engine.revision();
    let big = vec![b'x'; 2 << 20];

    // Declared too long: answered from the headers, no body read.
    let (status, body) = raw(
        &app.base,
        &format!(
            "POST /webhooks/scalekit HTTP/1.1\r\nwebhook-id: msg_1\r\nwebhook-timestamp: {}\r\n\
             webhook-signature: v1,AAAA\r\ncontent-length: {}",
            now_s(),
            big.len()
        ),
        &[],
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body, format!("the body is over the limit of {LIMIT} bytes"));

    // Chunked, no length given: refused once the bytes read pass the limit.
    let mut chunks = Vec::new();
    for piece in big[..LIMIT + (64 << 10)].chunks(64 << 10) {
        let mut c = format!("{:x}\r\n", piece.len()).into_bytes();
        c.extend_from_slice(piece);
        c.extend_from_slice(b"\r\n");
        chunks.push(c);
    }
    let (status, body) = raw(
        &app.base,
        &format!(
            "POST /webhooks/scalekit HTTP/1.1\r\nwebhook-id: msg_2\r\nwebhook-timestamp: {}\r\n\
             webhook-signature: v1,AAAA\r\ntransfer-encoding: chunked",
            now_s()
        ),
        &chunks,
    )
    .await;
    assert_eq!(status, 413);
    assert_eq!(body, format!("the body is over the limit of {LIMIT} bytes"));

    // Neither reached the handler: not even a failed signature was counted.
    assert_eq!(app.handler.stats(), WebhookStats::default());
    assert_eq!(app.engine.revision(), before);

    // At the limit exactly, the handler runs (and refuses the signature).
    let (status, _) = raw(
        &app.base,
        &format!(
            "POST /webhooks/scalekit HTTP/1.1\r\nwebhook-id: msg_3\r\nwebhook-timestamp: {}\r\n\
             webhook-signature: v1,AAAA\r\ncontent-length: {LIMIT}",
            now_s()
        ),
        &[big[..LIMIT].to_vec()],
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(app.handler.stats().bad_signature, 1);
}
