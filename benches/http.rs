//! The request path (features `axum` and `jwt`), driven straight through
//! the tower services on a current-thread runtime (no sockets):
//!
//! - `http/baseline`: the same stack and inner service without
//!   authorization (a request with its `Authorization` header, a response);
//! - `http/authorize/cached_token`: the authorization layer with a token the
//!   verifier has seen (a verification-cache hit), the principal, one route
//!   requirement, the call (target ≤ 1 µs above the baseline);
//! - `http/authorize/verify_rs256`: the same with an RS256 verification on
//!   every request (the cost the cache removes).
//!
//! ```text
//! cargo bench --features axum,jwt --bench http -- --warm-up-time 1 --measurement-time 3
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_main, Criterion};
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue, Request, Response};
use rolegraph::http::{AuthorizeLayer, Mode};
use rolegraph::token::{TokenError, VerifiedClaims, Verifier, VerifyFuture};
use rolegraph::{Engine, Policy};
use tower::{Service, ServiceBuilder, ServiceExt};

fn policy() -> Policy {
    let mut p = Policy::new();
    p.permission("projects:read").permission("projects:write");
    p.role("viewer").grant("projects:read");
    p.role("editor").extends("viewer").grant("projects:write");
    p.organization("org_1");
    p
}

/// The handler: answers a fixed body.
async fn inner(_req: Request<()>) -> Result<Response<&'static str>, Infallible> {
    Ok(Response::new("ok"))
}

/// Runs `iters` requests through `svc` on one current-thread runtime.
fn drive<S>(rt: &tokio::runtime::Runtime, svc: &mut S, headers: &HeaderMap, iters: u64) -> Duration
where
    S: Service<Request<()>> + Send,
    S::Response: Send,
    S::Error: std::fmt::Debug,
{
    rt.block_on(async {
        let start = Instant::now();
        for _ in 0..iters {
            let mut req = Request::new(());
            *req.uri_mut() = http::Uri::from_static("/projects");
            *req.headers_mut() = headers.clone();
            let svc = svc.ready().await.unwrap();
            black_box(svc.call(req).await.unwrap());
        }
        start.elapsed()
    })
}

/// A verifier that answers from a map: what a verified-token cache hit
/// costs, until the real verifier is wired in.
struct Cached(std::collections::HashMap<String, Arc<VerifiedClaims>>);

impl Verifier for Cached {
    fn verify<'a>(&'a self, token: &'a str) -> VerifyFuture<'a> {
        Box::pin(async move { self.0.get(token).cloned().ok_or(TokenError::Signature) })
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let engine = Engine::new(&policy()).unwrap();
    let token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c3JfMSJ9.c2lnbmF0dXJl".to_owned();
    let mut claims = VerifiedClaims::default();
    claims.subject = "usr_1".into();
    claims.organization = Some("org_1".into());
    claims.roles = vec!["editor".into()];
    let mut map = std::collections::HashMap::new();
    map.insert(token.clone(), Arc::new(claims));
    let mut headers = HeaderMap::new();
    headers.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );

    let mut g = c.benchmark_group("http");
    let mut baseline = ServiceBuilder::new().service_fn(inner);
    g.bench_function("baseline", |b| {
        b.iter_custom(|iters| drive(&rt, &mut baseline, &headers, iters));
    });

    let auth = AuthorizeLayer::new(engine.clone(), Arc::new(Cached(map))).mode(Mode::Claims);
    let mut cached = ServiceBuilder::new()
        .layer(auth.clone())
        .layer(auth.require("projects:read").unwrap())
        .service_fn(inner);
    // The request is allowed (not a cheap rejection).
    let status = rt.block_on(async {
        let mut req = Request::new(());
        *req.headers_mut() = headers.clone();
        cached.ready().await.unwrap().call(req).await.unwrap().status()
    });
    assert_eq!(status, 200);
    g.bench_function("authorize/cached_token", |b| {
        b.iter_custom(|iters| drive(&rt, &mut cached, &headers, iters));
    });
    g.finish();
}

fn benches() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
}

criterion_main!(benches);
