//! `http/peer/axum_casbin/10000` against `http/peer/rolegraph/10000`: the
//! same route (`GET /data500`, W1 at 10,000 roles), the same tower stack and
//! handler, driven directly on a current-thread runtime (no sockets), over a
//! rotation of 1,024 distinct users (the 100 users allowed on that route and
//! 924 others, interleaved), each with its own RS256 access token.
//!
//! Both sides do the same work per request: the bearer token is verified by
//! the same verifier (`JwksVerifier`, each side its own instance, every
//! token a verified-token cache hit after the first pass), then the decision:
//!
//! - axum-casbin 1.3: a minimal authentication layer (the token's `sub` into
//!   `CasbinVals`, as axum-casbin expects an authentication layer in front),
//!   then its `CasbinAxumLayer` over casbin's `CachedEnforcer`
//!   (write-locked per request, as the layer does). Two variants:
//!   - `axum_casbin`: casbin's memo on (its default 200-entry cache, which
//!     mini-moka's admission still lets answer most of the rotation): a
//!     decision memoized per (subject, path, method), which also keeps
//!     serving a revoked role until the memo is cleared;
//!   - `axum_casbin_unmemoized`: the same layer with the memo replaced by
//!     one that never remembers (`CachedApi::set_cache`): what every request
//!     costs when the memo cannot answer (more distinct users than it holds,
//!     or right after a policy change clears it). Measured with 10 samples.
//! - rolegraph: `AuthorizeLayer` (claims mode: the principal from the
//!   token's `roles`) and the route's requirement `data500:read`; denials
//!   answer RFC 6750 with a problem+json body, where axum-casbin answers a
//!   bare 403.
//!
//! The `*_repeated` ids send one user's request over and over.
//!
//! ```text
//! cargo bench -p rolegraph-peers --bench http -- --warm-up-time 1 --measurement-time 3
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, Response};
use axum_casbin::casbin::{
    Cache, CachedApi, CachedEnforcer, CoreApi, DefaultModel, MemoryAdapter, MgmtApi,
};
use axum_casbin::{CasbinAxumLayer, CasbinVals};
use criterion::{criterion_main, BenchmarkId, Criterion};
use rolegraph::http::AuthorizeLayer;
use rolegraph::token::{DevClaims, DevIssuer, JwksVerifier, Verifier};
use rolegraph::Engine;
use rolegraph_peers::engines::{casbin_rules, rolegraph_policy, CASBIN_MODEL};
use rolegraph_peers::workload::w1;
use tower::{Service, ServiceBuilder, ServiceExt};

const ROLES: usize = 10_000;
const ISSUER: &str = "https://peer.scalekit.local";
const AUDIENCE: &str = "prj_peer";

/// casbin's memo, never remembering: every request is a full `enforce`.
struct NoMemo;

impl Cache<u64, bool> for NoMemo {
    fn get(&self, _: &u64) -> Option<bool> {
        None
    }
    fn has(&self, _: &u64) -> bool {
        false
    }
    fn set(&self, _: u64, _: bool) {}
    fn clear(&self) {}
}

/// The authentication axum-casbin expects in front of it: verifies the
/// bearer token and hands its `sub` to casbin.
#[derive(Clone)]
struct VerifySubject<S> {
    inner: S,
    verifier: Arc<JwksVerifier>,
}

impl<S> Service<Request<Body>> for VerifySubject<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verifier = Arc::clone(&self.verifier);
        Box::pin(async move {
            let token = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            let subject = match token {
                Some(token) => verifier.verify(token).await.ok().map(|c| c.subject.clone()),
                None => None,
            };
            let Some(subject) = subject else {
                let mut r = Response::new(Body::empty());
                *r.status_mut() = axum::http::StatusCode::UNAUTHORIZED;
                return Ok(r);
            };
            req.extensions_mut().insert(CasbinVals {
                subject,
                domain: None,
            });
            inner.call(req).await
        })
    }
}

async fn handler(_req: Request<Body>) -> Result<Response<Body>, std::convert::Infallible> {
    Ok(Response::new(Body::from("ok")))
}

fn drive<S, F>(rt: &tokio::runtime::Runtime, svc: &mut S, mut request: F, iters: u64) -> Duration
where
    S: Service<Request<Body>>,
    S::Error: std::fmt::Debug,
    F: FnMut() -> Request<Body>,
{
    rt.block_on(async {
        let start = Instant::now();
        for _ in 0..iters {
            let req = request();
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
    let spec = w1(ROLES).spec;
    let user = &spec.users[5 * ROLES + 1];
    let role = &spec.roles[user.roles[0]];
    let perm = &spec.permissions[role.grants[0]];
    let path = format!("/{}", perm.object);

    // casbin: the same rules, the object as the route's path, `GET` for `read`.
    let enforcer = || {
        rt.block_on(async {
            let model = DefaultModel::from_str(CASBIN_MODEL).await.unwrap();
            let mut e = CachedEnforcer::new(model, MemoryAdapter::default())
                .await
                .unwrap();
            e.enable_auto_build_role_links(false);
            let (p, g) = casbin_rules(&spec);
            let p: Vec<Vec<String>> = p
                .into_iter()
                .map(|l| vec![l[0].clone(), format!("/{}", l[1]), "GET".into()])
                .collect();
            e.add_policies(p).await.unwrap();
            e.add_grouping_policies(g).await.unwrap();
            e.build_role_links().unwrap();
            e
        })
    };
    let issuer = DevIssuer::generate("peer-1").unwrap();
    let verifier = || JwksVerifier::from_jwks_json(&issuer.jwks_json(), ISSUER, AUDIENCE).unwrap();
    let casbin_stack = |enforcer: CachedEnforcer| {
        let layer = CasbinAxumLayer::set_enforcer(Arc::new(tokio::sync::RwLock::new(enforcer)));
        VerifySubject {
            inner: ServiceBuilder::new().layer(layer).service_fn(handler),
            verifier: Arc::new(verifier()),
        }
    };
    let mut casbin = casbin_stack(enforcer());
    let mut unmemoized = enforcer();
    unmemoized.set_cache(Box::new(NoMemo));
    let mut casbin_unmemoized = casbin_stack(unmemoized);

    // rolegraph: the route's requirement.
    let engine = Engine::new(&rolegraph_policy(&spec)).unwrap();
    let bearer_for = |u: &rolegraph_peers::workload::UserDef| {
        let mut claims = DevClaims::new(u.name.as_str(), ISSUER, [AUDIENCE]);
        claims.roles = u
            .roles
            .iter()
            .map(|&r| spec.roles[r].name.clone())
            .collect();
        format!("Bearer {}", issuer.mint(&claims).unwrap())
    };
    let bearer = bearer_for(user);
    let rolegraph_verifier = Arc::new(verifier());
    let auth = AuthorizeLayer::new(engine, rolegraph_verifier.clone());
    let mut rolegraph = ServiceBuilder::new()
        .layer(auth.clone())
        .layer(auth.require(perm.name().as_str()).unwrap())
        .service_fn(handler);
    // The same request for both: the route and the user's token.
    let request_for = |bearer: &str| {
        Request::get(path.as_str())
            .header("authorization", bearer)
            .body(Body::empty())
            .unwrap()
    };
    let request = || request_for(&bearer);

    // The rotation: the users allowed on the route (those holding a role that
    // grants it) interleaved with as many others spread over the population,
    // 1,024 distinct users in all.
    let allowed: Vec<usize> = (0..spec.users.len())
        .filter(|&j| {
            spec.users[j]
                .roles
                .iter()
                .any(|&r| spec.roles[r].grants.contains(&role.grants[0]))
        })
        .collect();
    let mut rotation: Vec<usize> = Vec::with_capacity(1024);
    let mut others = (0..spec.users.len())
        .map(|k| (k * 9_767) % spec.users.len())
        .filter(|j| !allowed.contains(j));
    let mut allowed_iter = allowed.iter().copied();
    while rotation.len() < 1024 {
        if rotation.len().is_multiple_of(10) {
            if let Some(j) = allowed_iter.next() {
                rotation.push(j);
                continue;
            }
        }
        rotation.push(others.next().unwrap());
    }
    let rotation_bearers: Vec<String> = rotation
        .iter()
        .map(|&j| bearer_for(&spec.users[j]))
        .collect();

    // All three give the same answer to every request of the rotation (the
    // unmemoized casbin on the first 50: each costs milliseconds), and the
    // repeated one is allowed, before timing. This pass also puts every
    // token into each side's verified-token cache.
    rt.block_on(async {
        for svc_status in [
            call(&mut casbin, request()).await,
            call(&mut casbin_unmemoized, request()).await,
            call(&mut rolegraph, request()).await,
        ] {
            assert_eq!(svc_status, 200);
        }
        let mut allows = 0;
        for (k, bearer) in rotation_bearers.iter().enumerate() {
            let c = call(&mut casbin, request_for(bearer)).await;
            let r = call(&mut rolegraph, request_for(bearer)).await;
            assert_eq!(c, r, "{bearer}");
            if k < 50 {
                let u = call(&mut casbin_unmemoized, request_for(bearer)).await;
                assert_eq!(u, r, "{bearer}");
            }
            allows += usize::from(r == 200);
        }
        let expected = rotation.iter().filter(|j| allowed.contains(j)).count();
        assert_eq!(allows, expected);
        assert!(expected >= 100, "{expected}");
    });
    let verified = |v: &JwksVerifier| v.stats().signature_verifications;
    let before = [
        verified(&casbin.verifier),
        verified(&casbin_unmemoized.verifier),
        verified(rolegraph_verifier.as_ref()),
    ];

    let rotating = |mut next: usize| {
        move || {
            next = (next + 1) % 1024;
            next
        }
    };
    let mut g = c.benchmark_group("http/peer");
    g.bench_function(BenchmarkId::new("axum_casbin", ROLES), |b| {
        let mut at = rotating(0);
        b.iter_custom(|iters| {
            drive(
                &rt,
                &mut casbin,
                || request_for(&rotation_bearers[at()]),
                iters,
            )
        });
    });
    g.bench_function(BenchmarkId::new("rolegraph", ROLES), |b| {
        let mut at = rotating(0);
        b.iter_custom(|iters| {
            drive(
                &rt,
                &mut rolegraph,
                || request_for(&rotation_bearers[at()]),
                iters,
            )
        });
    });
    g.bench_function(BenchmarkId::new("axum_casbin_repeated", ROLES), |b| {
        b.iter_custom(|iters| drive(&rt, &mut casbin, request, iters));
    });
    g.bench_function(BenchmarkId::new("rolegraph_repeated", ROLES), |b| {
        b.iter_custom(|iters| drive(&rt, &mut rolegraph, request, iters));
    });
    g.finish();

    // Milliseconds per request: 10 samples.
    let mut g = c.benchmark_group("http/peer");
    g.sample_size(10);
    g.bench_function(BenchmarkId::new("axum_casbin_unmemoized", ROLES), |b| {
        let mut at = rotating(0);
        b.iter_custom(|iters| {
            drive(
                &rt,
                &mut casbin_unmemoized,
                || request_for(&rotation_bearers[at()]),
                iters,
            )
        });
    });
    g.finish();

    // No side verified a signature while timed: every request was a cache
    // hit on both sides.
    let after = [
        verified(&casbin.verifier),
        verified(&casbin_unmemoized.verifier),
        verified(rolegraph_verifier.as_ref()),
    ];
    assert_eq!(before, after);
}

/// One request's status.
async fn call<S>(svc: &mut S, req: Request<Body>) -> u16
where
    S: Service<Request<Body>>,
    S::Response: Status,
    S::Error: std::fmt::Debug,
{
    svc.ready()
        .await
        .unwrap()
        .call(req)
        .await
        .unwrap()
        .status_code()
}

trait Status {
    fn status_code(&self) -> u16;
}

impl<B> Status for Response<B> {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

fn benches() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
}

criterion_main!(benches);
