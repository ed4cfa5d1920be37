//! Freshness you can ask for (issue 11), over real HTTP: a write hands back
//! its revision in `x-rolegraph-revision`; a request sending it is decided
//! on a snapshot at or after it, waiting a bounded time for the engine to
//! publish it, else 503 with `Retry-After`; a bad value is a 400.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod http_common;
mod webhook_common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use http_common::*;
use rolegraph::http::{webhook_route, AuthorizeLayer, Mode, REVISION_HEADER};
use rolegraph::scalekit::Handler;
use rolegraph::{Change, ChangeMeta, Engine};

struct App {
    base: String,
    engine: Engine,
    issuer: Issuer,
}

async fn app(max_wait: Duration) -> App {
    let engine = Engine::new(&policy()).unwrap();
    let handler = Arc::new(Handler::new(engine.clone(), webhook_common::verifier()));
    let issuer = Issuer::start().await;
    let auth = AuthorizeLayer::new(engine.clone(), issuer.verifier())
        .mode(Mode::Membership)
        .realm("projects")
        .retry_after(Duration::from_secs(2))
        .min_revision_header(REVISION_HEADER, max_wait)
        .unwrap();
    let router = router(&auth).route("/webhooks/scalekit", webhook_route(handler, 1 << 20));
    App {
        base: serve(router).await,
        engine,
        issuer,
    }
}

/// Declares one more permission: the revision goes up by one.
fn bump(engine: &Engine, k: u32) -> u64 {
    engine
        .apply(
            Change::CreatePermission {
                name: format!("extra:{k}"),
                description: None,
            },
            ChangeMeta::by("test"),
        )
        .unwrap()
        .revision
}

/// `GET /projects` as a viewer, with the minimum revision header when given.
async fn projects(app: &App, token: &str, min: Option<&str>) -> Answer {
    let mut req = client()
        .get(format!("{}/projects", app.base))
        .bearer_auth(token);
    if let Some(min) = min {
        req = req.header(REVISION_HEADER, min);
    }
    Answer::of(req.send().await.unwrap()).await
}

fn viewer(app: &App) -> String {
    app.issuer.mint(&TestClaims::new("usr_v", &["viewer"]))
}

#[tokio::test]
async fn a_revision_already_published_is_served_at_once_and_no_header_never_waits() {
    let app = app(Duration::from_secs(30)).await;
    let r = bump(&app.engine, 1);
    let token = viewer(&app);
    for min in [None, Some("0"), Some(&*r.to_string()), Some(" 1 ")] {
        let a = projects(&app, &token, min).await;
        assert_eq!((a.status, a.revision), (200, Some(r)), "{min:?}: {a:?}");
    }
}

#[tokio::test]
async fn a_request_waits_for_its_revision_then_is_decided_at_or_after_it() {
    let app = app(Duration::from_secs(30)).await;
    let token = viewer(&app);
    // The verifier holds the token: the wait must not be skipped for it.
    assert_eq!(projects(&app, &token, None).await.status, 200);
    let wanted = app.engine.revision() + 3;
    let engine = app.engine.clone();
    // Published from another thread while the request waits.
    let writer = std::thread::spawn(move || {
        for k in 0..3 {
            std::thread::sleep(Duration::from_millis(100));
            bump(&engine, k);
        }
    });
    let start = Instant::now();
    let a = projects(&app, &token, Some(&wanted.to_string())).await;
    writer.join().unwrap();
    assert_eq!(a.status, 200, "{a:?}");
    assert!(a.revision.unwrap() >= wanted, "{a:?}");
    // Woken by the publish, not by the end of the 30 s wait.
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn a_revision_not_reached_in_time_is_a_503_with_retry_after() {
    let app = app(Duration::from_millis(200)).await;
    let token = viewer(&app);
    let wanted = app.engine.revision() + 1;
    // For a token the verifier holds (the layer's no-future path) and for
    // one it does not.
    let cold = app.issuer.mint(&TestClaims::new("usr_w", &["viewer"]));
    let a = projects(&app, &cold, Some(&wanted.to_string())).await;
    assert_eq!(a.status, 503, "{a:?}");
    assert_eq!(projects(&app, &token, None).await.status, 200);
    let start = Instant::now();
    let a = projects(&app, &token, Some(&wanted.to_string())).await;
    assert!(start.elapsed() >= Duration::from_millis(200), "{a:?}");
    assert_eq!(a.status, 503, "{a:?}");
    assert_eq!(a.retry_after.as_deref(), Some("2"));
    assert_eq!(a.challenge, None);
    assert_eq!(
        a.problem()["detail"],
        format!("revision {wanted} is not reached yet, retry later")
    );
    // Once published, the same request passes.
    bump(&app.engine, 1);
    let a = projects(&app, &token, Some(&wanted.to_string())).await;
    assert_eq!((a.status, a.revision), (200, Some(wanted)), "{a:?}");
}

#[tokio::test]
async fn a_bad_revision_is_a_400_invalid_request() {
    let app = app(Duration::from_secs(30)).await;
    let token = viewer(&app);
    for bad in [
        "",
        "abc",
        "-1",
        "1.0",
        "1 2",
        "0x10",
        "18446744073709551616",
    ] {
        let a = projects(&app, &token, Some(bad)).await;
        assert_eq!(a.status, 400, "{bad:?}: {a:?}");
        assert_eq!(
            a.challenge.as_deref(),
            Some(
                r#"Bearer realm="projects", error="invalid_request", error_description="the minimum revision header is not one decimal revision""#
            ),
            "{bad:?}"
        );
    }
    // Two values are refused too.
    let resp = client()
        .get(format!("{}/projects", app.base))
        .bearer_auth(&token)
        .header(REVISION_HEADER, "0")
        .header(REVISION_HEADER, "0")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn an_unauthenticated_request_never_waits() {
    let app = app(Duration::from_secs(30)).await;
    let far = (app.engine.revision() + 1_000).to_string();
    let start = Instant::now();
    let a = projects(&app, "garbage", Some(&far)).await;
    assert_eq!(a.status, 401, "{a:?}");
    let none = client()
        .get(format!("{}/projects", app.base))
        .header(REVISION_HEADER, &far)
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 401);
    // A wait would have lasted 30 s.
    assert!(start.elapsed() < Duration::from_secs(15));
}

/// Read-your-writes through the webhook route: its answer carries the
/// revision it produced (a duplicate: the revision when answered), and a
/// request sending it back sees the delivery's effect.
#[tokio::test]
async fn the_webhook_answer_carries_the_revision_it_produced() {
    let app = app(Duration::from_secs(30)).await;
    let deliver = |id: &'static str, body: Vec<u8>| {
        let base = app.base.clone();
        async move {
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
            let revision = resp
                .headers()
                .get(REVISION_HEADER)
                .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
            (resp.status().as_u16(), revision, resp.text().await.unwrap())
        }
    };
    let event = webhook_common::user_event("updated", "evt_1", 1, ORG, "alice", &["admin"], true);
    let (status, revision, body) = deliver("msg_1", event.clone()).await;
    assert_eq!(status, 200, "{body}");
    let revision = revision.expect("an applied delivery carries its revision");
    assert!(
        body.starts_with(&format!(r#"{{"status":"applied","revision":{revision}"#)),
        "{body}"
    );
    assert_eq!(revision, app.engine.revision());

    let mut claims = TestClaims::new("usr_alice", &[]);
    claims.email = Some("alice@example.com".into());
    let token = app.issuer.mint(&claims);
    let resp = client()
        .post(format!("{}/projects/delete", app.base))
        .bearer_auth(&token)
        .header(REVISION_HEADER, revision.to_string())
        .send()
        .await
        .unwrap();
    let a = Answer::of(resp).await;
    assert_eq!(
        (a.status, a.source.as_deref()),
        (200, Some("email")),
        "{a:?}"
    );
    assert!(a.revision.unwrap() >= revision);

    bump(&app.engine, 1);
    let (status, duplicate, body) = deliver("msg_1", event).await;
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"status":"duplicate","id":"msg_1"}"#)
    );
    assert_eq!(duplicate, Some(revision + 1));

    // A refused delivery carries none.
    let ts = now_s();
    let resp = client()
        .post(format!("{}/webhooks/scalekit", app.base))
        .header("webhook-id", "msg_2")
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", "v1,AAAA")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().get(REVISION_HEADER).is_none());
}

#[test]
fn the_blocking_wait_times_out_then_sees_a_publish_from_another_thread() {
    let engine = Engine::new(&policy()).unwrap();
    let start = Instant::now();
    assert!(!engine.wait_for_revision(1, Duration::from_millis(100)));
    assert!(start.elapsed() >= Duration::from_millis(100));
    assert!(engine.wait_for_revision(0, Duration::ZERO));
    let writer = engine.clone();
    let thread = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        bump(&writer, 1);
        bump(&writer, 2);
    });
    assert!(engine.wait_for_revision(2, Duration::from_secs(30)));
    assert!(engine.revision() >= 2);
    thread.join().unwrap();
}
