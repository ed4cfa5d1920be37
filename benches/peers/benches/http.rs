//! `http/peer/axum_casbin/10000` against `http/peer/rolegraph/10000`: the
//! same route (`GET /data500`, W1 at 10,000 roles, the user holding
//! `group5000`), the same tower stack and handler, driven directly on a
//! current-thread runtime (no sockets).
//!
//! - axum-casbin 1.3: its `CasbinAxumLayer` over casbin's `CachedEnforcer`
//!   (write-locked per request, as the layer does), the subject put in the
//!   request's extensions beforehand (its layer expects an authentication
//!   layer in front; that cost is left out, in casbin's favour);
//! - rolegraph: `AuthorizeLayer` (an RS256 token of the user's roles, a
//!   verified-token cache hit) and the route's requirement `data500:read`.
//!
//! ```text
//! cargo bench -p rolegraph-peers --bench http -- --warm-up-time 1 --measurement-time 3
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, Response};
use axum_casbin::casbin::{CachedEnforcer, CoreApi, DefaultModel, MemoryAdapter, MgmtApi};
use axum_casbin::{CasbinAxumLayer, CasbinVals};
use criterion::{criterion_main, BenchmarkId, Criterion};
use rolegraph::http::AuthorizeLayer;
use rolegraph::token::{DevClaims, DevIssuer, JwksVerifier};
use rolegraph::Engine;
use rolegraph_peers::engines::{casbin_rules, rolegraph_policy, CASBIN_MODEL};
use rolegraph_peers::workload::w1;
use tower::{Service, ServiceBuilder, ServiceExt};

const ROLES: usize = 10_000;
const ISSUER: &str = "https://peer.scalekit.local";
const AUDIENCE: &str = "prj_peer";

async fn handler(_req: Request<Body>) -> Result<Response<Body>, std::convert::Infallible> {
    Ok(Response::new(Body::from("ok")))
}

fn drive<S, F>(rt: &tokio::runtime::Runtime, svc: &mut S, request: F, iters: u64) -> Duration
where
    S: Service<Request<Body>>,
    S::Error: std::fmt::Debug,
    F: Fn() -> Request<Body>,
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
    let enforcer = rt.block_on(async {
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
    });
    let casbin_layer = CasbinAxumLayer::set_enforcer(Arc::new(tokio::sync::RwLock::new(enforcer)));
    let mut casbin = ServiceBuilder::new()
        .layer(casbin_layer)
        .service_fn(handler);
    let subject = user.name.clone();
    let casbin_request = || {
        let mut req = Request::get(path.as_str()).body(Body::empty()).unwrap();
        req.extensions_mut().insert(CasbinVals {
            subject: subject.clone(),
            domain: None,
        });
        req
    };

    // rolegraph: a token of the user's roles, the route's requirement.
    let engine = Engine::new(&rolegraph_policy(&spec)).unwrap();
    let issuer = DevIssuer::generate("peer-1").unwrap();
    let verifier = JwksVerifier::from_jwks_json(&issuer.jwks_json(), ISSUER, AUDIENCE).unwrap();
    let mut claims = DevClaims::new(user.name.as_str(), ISSUER, [AUDIENCE]);
    claims.roles = vec![role.name.clone()];
    let bearer = format!("Bearer {}", issuer.mint(&claims).unwrap());
    let auth = AuthorizeLayer::new(engine, Arc::new(verifier));
    let mut rolegraph = ServiceBuilder::new()
        .layer(auth.clone())
        .layer(auth.require(perm.name().as_str()).unwrap())
        .service_fn(handler);
    let rolegraph_request = || {
        Request::get(path.as_str())
            .header("authorization", bearer.as_str())
            .body(Body::empty())
            .unwrap()
    };

    // Both allow the request (and deny another user's), before timing.
    rt.block_on(async {
        let r = casbin
            .ready()
            .await
            .unwrap()
            .call(casbin_request())
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let mut other = casbin_request();
        other.extensions_mut().insert(CasbinVals {
            subject: "user0".into(),
            domain: None,
        });
        let r = casbin.ready().await.unwrap().call(other).await.unwrap();
        assert_eq!(r.status(), 403);
        let r = rolegraph
            .ready()
            .await
            .unwrap()
            .call(rolegraph_request())
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    });

    let mut g = c.benchmark_group("http/peer");
    g.bench_function(BenchmarkId::new("axum_casbin", ROLES), |b| {
        b.iter_custom(|iters| drive(&rt, &mut casbin, casbin_request, iters));
    });
    g.bench_function(BenchmarkId::new("rolegraph", ROLES), |b| {
        b.iter_custom(|iters| drive(&rt, &mut rolegraph, rolegraph_request, iters));
    });
    g.finish();
}

fn benches() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
}

criterion_main!(benches);
