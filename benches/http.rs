//! The request path (features `axum` and `jwt`), driven straight through
//! the tower services on a current-thread runtime (no sockets):
//!
//! - `http/baseline`: the same stack and inner service without
//!   authorization (a request with its `Authorization` header, a response);
//! - `http/authorize/cached_token`: the authorization layer with a token the
//!   verifier has seen (a verification-cache hit), the principal, one route
//!   requirement, the call (target ≤ 1 µs above the baseline);
//! - `http/authorize/verify_rs256`: the same with an RS256 verification on
//!   every request (the cost the cache removes);
//! - `http/authorize/denied`: a cached token whose principal does not meet
//!   the route's requirement: the RFC 6750 403 with its problem+json body
//!   (answered from parts built when the route was).
//!
//! ```text
//! cargo bench --features axum --bench http -- --warm-up-time 1 --measurement-time 3
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
use rolegraph::token::{DevClaims, DevIssuer, JwksVerifier, Verifier};
use rolegraph::{Engine, Policy};
use tower::{Service, ServiceBuilder, ServiceExt};

const ISSUER: &str = "https://bench.scalekit.local";
const AUDIENCE: &str = "prj_bench";

fn policy() -> Policy {
    let mut p = Policy::new();
    p.permission("projects:read")
        .permission("projects:write")
        .permission("projects:delete");
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

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let engine = Engine::new(&policy()).unwrap();
    let pem = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/jwt/test_only_rsa_private.pem"),
    )
    .unwrap();
    let issuer = DevIssuer::from_pkcs8_pem("bench-1", &pem).unwrap();
    let mut claims = DevClaims::new("usr_1", ISSUER, [AUDIENCE]);
    claims.organization = Some("org_1".into());
    claims.roles = vec!["editor".into()];
    let token = issuer.mint(&claims).unwrap();
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

    for (id, cache) in [
        ("authorize/cached_token", 10_000),
        ("authorize/verify_rs256", 0),
    ] {
        let verifier = JwksVerifier::builder_from_jwks_json(issuer.jwks_json(), ISSUER, AUDIENCE)
            .cache_capacity(cache)
            .build()
            .unwrap();
        let auth =
            AuthorizeLayer::new(engine.clone(), Arc::new(verifier.clone())).mode(Mode::Claims);
        let mut svc = ServiceBuilder::new()
            .layer(auth.clone())
            .layer(auth.require("projects:read").unwrap())
            .service_fn(inner);
        // The request is allowed (not a cheap rejection).
        let status = rt.block_on(async {
            let mut req = Request::new(());
            *req.headers_mut() = headers.clone();
            svc.ready().await.unwrap().call(req).await.unwrap().status()
        });
        assert_eq!(status, 200);
        g.bench_function(id, |b| {
            b.iter_custom(|iters| drive(&rt, &mut svc, &headers, iters));
        });
        if cache > 0 {
            // Attribution: the verifier's cache hit alone.
            g.bench_function("parts/verify_cached", |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let start = Instant::now();
                        for _ in 0..iters {
                            black_box(verifier.verify(black_box(&token)).await.unwrap());
                        }
                        start.elapsed()
                    })
                });
            });
        }
        if cache > 0 {
            let mut denied = ServiceBuilder::new()
                .layer(auth.clone())
                .layer(auth.require("projects:delete").unwrap())
                .service_fn(inner);
            let status = rt.block_on(async {
                let mut req = Request::new(());
                *req.headers_mut() = headers.clone();
                denied
                    .ready()
                    .await
                    .unwrap()
                    .call(req)
                    .await
                    .unwrap()
                    .status()
            });
            assert_eq!(status, 403);
            g.bench_function("authorize/denied", |b| {
                b.iter_custom(|iters| drive(&rt, &mut denied, &headers, iters));
            });
        }
        let stats = verifier.stats();
        if cache == 0 {
            assert_eq!(stats.cache_hits, 0);
        } else {
            assert!(stats.signature_verifications <= 1, "{stats:?}");
        }
    }
    g.finish();
}

fn benches() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
}

criterion_main!(benches);
