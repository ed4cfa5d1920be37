//! `http/peer/axum_casbin/10000` against `http/peer/rolegraph/10000`: the
//! same route (`GET /data500`, W1 at 10,000 roles), the same tower stack and
//! handler, driven directly on a current-thread runtime (no sockets), over a
//! rotation of 1,024 distinct users (the 100 users allowed on that route and
//! 924 others, interleaved): what a route sees in production, and what keeps
//! casbin's decision cache (200 entries) from answering a repeated request.
//! The `*_repeated` ids send one user's request over and over: casbin then
//! answers from its memo, and rolegraph from its verified-token cache.
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
    let casbin_request_for = |subject: &str| {
        let mut req = Request::get(path.as_str()).body(Body::empty()).unwrap();
        req.extensions_mut().insert(CasbinVals {
            subject: subject.to_owned(),
            domain: None,
        });
        req
    };
    let casbin_request = || casbin_request_for(&subject);

    // rolegraph: a token of the user's roles, the route's requirement.
    let engine = Engine::new(&rolegraph_policy(&spec)).unwrap();
    let issuer = DevIssuer::generate("peer-1").unwrap();
    let verifier = JwksVerifier::from_jwks_json(&issuer.jwks_json(), ISSUER, AUDIENCE).unwrap();
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
    let auth = AuthorizeLayer::new(engine, Arc::new(verifier));
    let mut rolegraph = ServiceBuilder::new()
        .layer(auth.clone())
        .layer(auth.require(perm.name().as_str()).unwrap())
        .service_fn(handler);
    let rolegraph_request_for = |bearer: &str| {
        Request::get(path.as_str())
            .header("authorization", bearer)
            .body(Body::empty())
            .unwrap()
    };
    let rolegraph_request = || rolegraph_request_for(&bearer);

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
    let rotation_subjects: Vec<String> = rotation
        .iter()
        .map(|&j| spec.users[j].name.clone())
        .collect();

    // Both give the same answer to every request of the rotation (and the
    // repeated one is allowed), before timing.
    rt.block_on(async {
        let r = casbin
            .ready()
            .await
            .unwrap()
            .call(casbin_request())
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let r = rolegraph
            .ready()
            .await
            .unwrap()
            .call(rolegraph_request())
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let mut allows = 0;
        for (subject, bearer) in rotation_subjects.iter().zip(&rotation_bearers) {
            let c = casbin
                .ready()
                .await
                .unwrap()
                .call(casbin_request_for(subject))
                .await
                .unwrap();
            let r = rolegraph
                .ready()
                .await
                .unwrap()
                .call(rolegraph_request_for(bearer))
                .await
                .unwrap();
            assert_eq!(c.status(), r.status(), "{subject}");
            allows += usize::from(r.status() == 200);
        }
        let expected = rotation.iter().filter(|j| allowed.contains(j)).count();
        assert_eq!(allows, expected);
        assert!(expected >= 100, "{expected}");
    });

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
                || casbin_request_for(&rotation_subjects[at()]),
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
                || rolegraph_request_for(&rotation_bearers[at()]),
                iters,
            )
        });
    });
    g.bench_function(BenchmarkId::new("axum_casbin_repeated", ROLES), |b| {
        b.iter_custom(|iters| drive(&rt, &mut casbin, casbin_request, iters));
    });
    g.bench_function(BenchmarkId::new("rolegraph_repeated", ROLES), |b| {
        b.iter_custom(|iters| drive(&rt, &mut rolegraph, rolegraph_request, iters));
    });
    g.finish();
}
fn benches() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
}

criterion_main!(benches);
