//! `http/peer/axum_casbin/10000` against `http/peer/rolegraph/10000`: the
//! same route (`GET /data500`, W1 at 10,000 roles), the same tower stack and
//! handler, driven directly on a current-thread runtime (no sockets), over a
//! rotation of 1,024 distinct users (the 100 users allowed on that route and
//! 924 others), each with its own RS256 access token.
//!
//! The users arrive as independent users do: each request is one of the
//! 1,024 drawn uniformly at random (a seeded sequence, the same for every
//! id), not a fixed cycle. A cycle is what casbin's memo (TinyLFU admission)
//! handles worst and most unevenly: it keeps a fixed set of 200 users, so a
//! window of the cycle is all hits or all misses, and a criterion sample of a
//! few requests measured one or the other. With random arrivals every window
//! holds the steady mix of hits and misses. casbin's ids that cost
//! milliseconds per request are measured as 10 samples of equal size (flat
//! sampling), each many requests long, so each sample's mean, and the median
//! of the samples, is the steady-state cost per request; the bench prints
//! the memo's hits and misses counted while each was timed.
//!
//! Both sides do the same work per request: the bearer token is verified by
//! the same verifier (`JwksVerifier`, each side its own instance, every
//! token a verified-token cache hit after the first pass), then the decision:
//!
//! - axum-casbin 1.3: a minimal authentication layer (the token's `sub` into
//!   `CasbinVals`, as axum-casbin expects an authentication layer in front),
//!   then its `CasbinAxumLayer` over casbin's `CachedEnforcer`
//!   (write-locked per request, as the layer does). Two variants:
//!   - `axum_casbin`: casbin's memo on (its default: a mini-moka cache of
//!     200 entries, TinyLFU admission): a decision memoized per (subject,
//!     path, method), which also keeps serving a revoked role until the
//!     memo is cleared. 1,024 users arriving at random over 200 entries
//!     mostly miss (the bench prints the hit rates); 10 flat samples;
//!   - `axum_casbin_unmemoized`: the same layer with the memo replaced by
//!     one that never remembers (`CachedApi::set_cache`): a full `enforce`
//!     per request. Measured with 10 samples.
//! - rolegraph: `AuthorizeLayer` (claims mode: the principal from the
//!   token's `roles`) and the route's requirement `data500:read`; denials
//!   answer RFC 6750 with a problem+json body, where axum-casbin answers a
//!   bare 403. Two variants:
//!   - `rolegraph`: claims mode, the principal from the token's `roles`;
//!   - `rolegraph_membership`: like for like with casbin, which resolves
//!     the user through its `g` rules inside the timed path: the engine
//!     keeps every W1 user's membership, the tokens carry only `sub` and
//!     `oid`, and each request's principal comes from the membership index
//!     (`Mode::Membership`).
//!
//! The decomposition, over the same 1,024-user rotation:
//!
//! - `verified_only`: the shared part alone, casbin's side without its
//!   layer (token verified, `sub` into the request, the handler);
//! - `axum_casbin_decision`, `rolegraph_decision`: each side's decision
//!   without the token step, the subject handed over in the request
//!   (casbin: `CasbinVals` in the extensions; rolegraph: a short `u<k>`
//!   token that indexes claims verified before). casbin's: 10 flat samples.
//!
//! casbin's memo under other traffic:
//!
//! - `*_population`: 10,000 distinct active users arriving at random, each side's
//!   verifier holding all their tokens (casbin's memo counted; 10 samples
//!   for casbin);
//! - `*_after_change`: each user's first request after a policy write (an
//!   untimed write starts every pass over the 1,024-user rotation; casbin
//!   clears its memo on every write).
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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, Response};
use axum_casbin::casbin::{
    Cache, CachedApi, CachedEnforcer, CoreApi, DefaultCache, DefaultModel, MemoryAdapter, MgmtApi,
};
use axum_casbin::{CasbinAxumLayer, CasbinVals};
use criterion::measurement::WallTime;
use criterion::{criterion_main, BenchmarkGroup, BenchmarkId, Criterion, SamplingMode};
use rolegraph::http::{AuthorizeLayer, Mode};
use rolegraph::token::{
    DevClaims, DevIssuer, JwksVerifier, TokenError, VerifiedClaims, Verifier, VerifyFuture,
};
use rolegraph::{Change, ChangeMeta, Engine};
use rolegraph_peers::engines::{
    casbin_rules, rolegraph_policy, user_memberships, CASBIN_MODEL, USER_ORG,
};
use rolegraph_peers::workload::w1;
use tower::{Service, ServiceBuilder, ServiceExt};

const ROLES: usize = 10_000;
/// Distinct users in the rotation of the `*_population` ids: 50 times the
/// 200 entries of casbin's default memo, a tenth of W1's 100,000 users.
const ACTIVE: usize = 10_000;
/// casbin's `CachedEnforcer` memo capacity (`DefaultCache::new(200)` in
/// `CachedEnforcer::new_raw`, casbin 2.20.0).
const CASBIN_MEMO: usize = 200;
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

/// casbin's default memo (mini-moka, 200 entries), counting its hits and
/// misses: for the `*_population` ids, whose requests cost milliseconds, so
/// two relaxed counter increments do not show.
struct CountingMemo {
    inner: DefaultCache<u64, bool>,
    hits: Arc<AtomicU64>,
    misses: Arc<AtomicU64>,
}

impl Cache<u64, bool> for CountingMemo {
    fn get(&self, k: &u64) -> Option<bool> {
        let found = self.inner.get(k);
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }
    fn has(&self, k: &u64) -> bool {
        self.inner.has(k)
    }
    fn set(&self, k: u64, v: bool) {
        self.inner.set(k, v);
    }
    fn clear(&self) {
        self.inner.clear();
    }
}

/// The `*_decision` ids' verifier: the token is the index (`u<k>`) of claims
/// the real verifier verified before, so rolegraph's layer is handed the
/// subject as casbin's is (in the request), without the shared token step.
struct IndexVerifier(Vec<Arc<VerifiedClaims>>);

impl IndexVerifier {
    fn claims(&self, token: &str) -> Option<Arc<VerifiedClaims>> {
        let k: usize = token.strip_prefix('u')?.parse().ok()?;
        self.0.get(k).cloned()
    }
}

impl Verifier for IndexVerifier {
    fn verify<'a>(&'a self, token: &'a str) -> VerifyFuture<'a> {
        let claims = self.claims(token).ok_or(TokenError::Signature);
        Box::pin(async move { claims })
    }
    fn verified(&self, token: &str) -> Option<Arc<VerifiedClaims>> {
        self.claims(token)
    }
}

/// Requests arriving from `users` distinct users, each request's user drawn
/// uniformly at random: `len` user positions from a fixed seed (splitmix64,
/// Lemire's range reduction), the same sequence on every run and every id.
fn arrivals(users: usize, len: usize) -> Vec<u32> {
    let mut state: u64 = 0x5eed_0fa1_11d5;
    (0..len)
        .map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            (((z >> 32) * users as u64) >> 32) as u32
        })
        .collect()
}

/// Requests per arrival sequence: it repeats after this many, far more
/// than any casbin id sends (milliseconds each).
const ARRIVALS: usize = 1 << 16;

/// The requests of the users `order` names, from `start` on, cyclically:
/// `request(k)` for user position `k`. Each id starts at its own place in
/// the sequence: two ids over one memo starting at the same place, the
/// second would ask for the users the first just put into it.
fn arriving<'a>(
    order: &'a [u32],
    start: usize,
    request: impl Fn(usize) -> Request<Body> + 'a,
) -> impl FnMut() -> Request<Body> + 'a {
    let mut next = start % order.len();
    move || {
        let at = order[next] as usize;
        next = (next + 1) % order.len();
        request(at)
    }
}

/// The hit rate of casbin's default memo (the same `DefaultCache` of 200
/// entries, keyed as `CachedEnforcer` keys it: the hash of
/// `[subject, path, method]`) when `users` distinct users request one route
/// in the bench's random arrival order: the hits of the last half of
/// `ARRIVALS` requests.
fn memo_hit_rate(users: usize) -> f64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let memo: DefaultCache<u64, bool> = DefaultCache::new(CASBIN_MEMO);
    let key = |k: u32| {
        let mut h = DefaultHasher::new();
        vec![format!("user{k}"), "/data500".to_owned(), "GET".to_owned()].hash(&mut h);
        h.finish()
    };
    let order = arrivals(users, ARRIVALS);
    let mut hits = 0;
    for (n, &k) in order.iter().enumerate() {
        let key = key(k);
        if memo.get(&key).is_some() {
            hits += usize::from(n >= ARRIVALS / 2);
        } else {
            memo.set(key, true);
        }
    }
    hits as f64 / (ARRIVALS / 2) as f64
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
    let casbin_stack = |enforcer: Arc<tokio::sync::RwLock<CachedEnforcer>>| {
        let layer = CasbinAxumLayer::set_enforcer(enforcer);
        VerifySubject {
            inner: ServiceBuilder::new().layer(layer).service_fn(handler),
            verifier: Arc::new(verifier()),
        }
    };
    let shared = |e: CachedEnforcer| Arc::new(tokio::sync::RwLock::new(e));
    // casbin's default memo, counted (the same 200-entry cache
    // `CachedEnforcer::new` makes).
    let (memo_hits, memo_misses) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut memoized = enforcer();
    memoized.set_cache(Box::new(CountingMemo {
        inner: DefaultCache::new(CASBIN_MEMO),
        hits: Arc::clone(&memo_hits),
        misses: Arc::clone(&memo_misses),
    }));
    let casbin_enforcer = shared(memoized);
    let mut casbin = casbin_stack(Arc::clone(&casbin_enforcer));
    let mut unmemoized = enforcer();
    unmemoized.set_cache(Box::new(NoMemo));
    let mut casbin_unmemoized = casbin_stack(shared(unmemoized));
    // casbin's decision alone: its layer over the same enforcer (the same
    // memo), the subject put into the request by the request itself.
    let mut casbin_decision = ServiceBuilder::new()
        .layer(CasbinAxumLayer::set_enforcer(Arc::clone(&casbin_enforcer)))
        .service_fn(handler);
    // The shared part alone: casbin's side without its layer (the token
    // verified, its subject into the request, the handler).
    let mut verified_only = VerifySubject {
        inner: ServiceBuilder::new().service_fn(handler),
        verifier: Arc::clone(&casbin.verifier),
    };

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
    let rotation_of = |len: usize| {
        let mut rotation: Vec<usize> = Vec::with_capacity(len);
        // 9,767 is prime to 100,000: a permutation of the users.
        let mut others = (0..spec.users.len())
            .map(|k| (k * 9_767) % spec.users.len())
            .filter(|j| !allowed.contains(j));
        let mut allowed_iter = allowed.iter().copied();
        while rotation.len() < len {
            if rotation.len().is_multiple_of(10) {
                if let Some(j) = allowed_iter.next() {
                    rotation.push(j);
                    continue;
                }
            }
            rotation.push(others.next().unwrap());
        }
        rotation
    };
    let rotation = rotation_of(1024);
    let rotation_bearers: Vec<String> = rotation
        .iter()
        .map(|&j| bearer_for(&spec.users[j]))
        .collect();
    // The decision ids' requests: the subject handed over in the request,
    // no token to verify (casbin: `CasbinVals` in the extensions; rolegraph:
    // `u<k>`, an index into claims verified before).
    let decision_casbin = |k: usize| {
        let mut req = Request::get(path.as_str()).body(Body::empty()).unwrap();
        req.extensions_mut().insert(CasbinVals {
            subject: spec.users[rotation[k]].name.clone(),
            domain: None,
        });
        req
    };
    let decision_bearers: Vec<String> = (0..rotation.len())
        .map(|k| format!("Bearer u{k}"))
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
            } else {
                // Its token into the verifier's cache, as the others'.
                let token = &bearer["Bearer ".len()..];
                casbin_unmemoized.verifier.verify(token).await.unwrap();
            }
            allows += usize::from(r == 200);
        }
        let expected = rotation.iter().filter(|j| allowed.contains(j)).count();
        assert_eq!(allows, expected);
        assert!(expected >= 100, "{expected}");
    });
    let index = IndexVerifier(
        rotation_bearers
            .iter()
            .map(|b| rolegraph_verifier.verified(&b["Bearer ".len()..]).unwrap())
            .collect(),
    );
    let mut rolegraph_decision = ServiceBuilder::new()
        .layer(AuthorizeLayer::new(auth.engine().clone(), Arc::new(index)))
        .layer(auth.require(perm.name().as_str()).unwrap())
        .service_fn(handler);
    // The decision alone answers as the whole stack, on every request of
    // the rotation; without authorization every request passes.
    rt.block_on(async {
        for (k, bearer) in rotation_bearers.iter().enumerate() {
            let whole = call(&mut rolegraph, request_for(bearer)).await;
            let c = call(&mut casbin_decision, decision_casbin(k)).await;
            let r = call(&mut rolegraph_decision, request_for(&decision_bearers[k])).await;
            assert_eq!((c, r), (whole, whole), "{k}");
            assert_eq!(call(&mut verified_only, request_for(bearer)).await, 200);
        }
    });
    // rolegraph resolving the user inside the timed path, as casbin does
    // (like for like): the engine keeps every W1 user's membership in
    // `USER_ORG`, and the tokens carry only `sub` and `oid`, no roles, so
    // each request's principal comes from the membership index
    // (`Mode::Membership`); a fallback to the claims would deny every user.
    let mut member_policy = rolegraph_policy(&spec);
    member_policy.organization(USER_ORG);
    let member_engine = Engine::new(&member_policy).unwrap();
    member_engine
        .apply_batch(user_memberships(&spec), ChangeMeta::default())
        .unwrap();
    let member_verifier = Arc::new(verifier());
    let member_auth =
        AuthorizeLayer::new(member_engine, member_verifier.clone()).mode(Mode::Membership);
    let mut rolegraph_membership = ServiceBuilder::new()
        .layer(member_auth.clone())
        .layer(member_auth.require(perm.name().as_str()).unwrap())
        .service_fn(handler);
    let member_bearers: Vec<String> = rotation
        .iter()
        .map(|&j| {
            let mut claims = DevClaims::new(spec.users[j].name.as_str(), ISSUER, [AUDIENCE]);
            claims.organization = Some(USER_ORG.to_owned());
            format!("Bearer {}", issuer.mint(&claims).unwrap())
        })
        .collect();
    // The same answers as the claims stack on the whole rotation (this pass
    // also caches every token); at least the 100 allowed users pass, which
    // only their memberships can grant.
    rt.block_on(async {
        let mut allows = 0;
        for (k, bearer) in member_bearers.iter().enumerate() {
            let whole = call(&mut rolegraph, request_for(&rotation_bearers[k])).await;
            let m = call(&mut rolegraph_membership, request_for(bearer)).await;
            assert_eq!(m, whole, "{k}");
            allows += usize::from(m == 200);
        }
        assert!(allows >= 100, "{allows}");
    });
    let verified = |v: &JwksVerifier| v.stats().signature_verifications;
    let before = [
        verified(&casbin.verifier),
        verified(&casbin_unmemoized.verifier),
        verified(rolegraph_verifier.as_ref()),
        verified(member_verifier.as_ref()),
    ];

    // Every rotating id draws its users from the same random arrivals. Each
    // id keeps its position across criterion's calls of the routine (one per
    // sample and warm-up step), so its samples go on through the sequence.
    let order = arrivals(rotation.len(), ARRIVALS);
    let mut g = c.benchmark_group("http/peer");
    let rt = &rt;
    timed(
        &mut g,
        rt,
        "rolegraph",
        &mut rolegraph,
        arriving(&order, 1 << 12, |k| request_for(&rotation_bearers[k])),
    );
    timed(
        &mut g,
        rt,
        "rolegraph_membership",
        &mut rolegraph_membership,
        arriving(&order, 2 << 12, |k| request_for(&member_bearers[k])),
    );
    timed(
        &mut g,
        rt,
        "verified_only",
        &mut verified_only,
        arriving(&order, 3 << 12, |k| request_for(&rotation_bearers[k])),
    );
    timed(
        &mut g,
        rt,
        "rolegraph_decision",
        &mut rolegraph_decision,
        arriving(&order, 4 << 12, |k| request_for(&decision_bearers[k])),
    );
    timed(&mut g, rt, "axum_casbin_repeated", &mut casbin, request);
    timed(&mut g, rt, "rolegraph_repeated", &mut rolegraph, request);
    g.finish();

    // casbin over the rotation: most requests miss its memo and cost
    // milliseconds, a few hit it and cost microseconds. 10 samples of equal
    // size, each many requests long, so that every sample holds the steady
    // mix; the memo's hits and misses are counted while each id runs.
    let mut g = c.benchmark_group("http/peer");
    g.sample_size(10).sampling_mode(SamplingMode::Flat);
    let memo_counted = |id: &str, run: &mut dyn FnMut()| {
        memo_hits.store(0, Ordering::Relaxed);
        memo_misses.store(0, Ordering::Relaxed);
        run();
        let (h, m) = (
            memo_hits.load(Ordering::Relaxed),
            memo_misses.load(Ordering::Relaxed),
        );
        // Nothing counted: the id was filtered out of this run.
        if h + m == 0 {
            return;
        }
        eprintln!(
            "{id}: casbin memo hits {h}, misses {m} ({:.1} % hits, warm-up included)",
            100.0 * h as f64 / (h + m) as f64
        );
    };
    memo_counted("axum_casbin", &mut || {
        let requests = arriving(&order, 5 << 12, |k| request_for(&rotation_bearers[k]));
        timed(&mut g, rt, "axum_casbin", &mut casbin, requests);
    });
    memo_counted("axum_casbin_decision", &mut || {
        let requests = arriving(&order, 6 << 12, decision_casbin);
        timed(
            &mut g,
            rt,
            "axum_casbin_decision",
            &mut casbin_decision,
            requests,
        );
    });
    timed(
        &mut g,
        rt,
        "axum_casbin_unmemoized",
        &mut casbin_unmemoized,
        arriving(&order, 7 << 12, |k| request_for(&rotation_bearers[k])),
    );
    g.finish();

    // No side verified a signature while timed: every request was a cache
    // hit on both sides.
    let after = [
        verified(&casbin.verifier),
        verified(&casbin_unmemoized.verifier),
        verified(rolegraph_verifier.as_ref()),
        verified(member_verifier.as_ref()),
    ];
    assert_eq!(before, after);

    // What casbin's default memo holds (untimed, the memo alone): the hit
    // rate of n users arriving at random over one route.
    for users in [100, CASBIN_MEMO, 1_024, ACTIVE, spec.users.len()] {
        eprintln!(
            "casbin's default memo ({CASBIN_MEMO} entries), {users} users arriving at random: {:.1} % hits",
            100.0 * memo_hit_rate(users)
        );
    }

    // The population: 10,000 distinct active users arriving at random (100
    // allowed on the route). Each side gets a verifier whose token cache
    // holds them all, warmed untimed; casbin's memo is a fresh default one,
    // counted.
    let population = rotation_of(ACTIVE);
    let population_bearers: Vec<String> = population
        .iter()
        .map(|&j| bearer_for(&spec.users[j]))
        .collect();
    let big_verifier = || {
        Arc::new(
            JwksVerifier::builder_from_jwks_json(issuer.jwks_json(), ISSUER, AUDIENCE)
                .cache_capacity(4 * ACTIVE)
                .build()
                .unwrap(),
        )
    };
    rt.block_on(async {
        casbin_enforcer
            .write()
            .await
            .set_cache(Box::new(CountingMemo {
                inner: DefaultCache::new(CASBIN_MEMO),
                hits: Arc::clone(&memo_hits),
                misses: Arc::clone(&memo_misses),
            }));
    });
    let mut casbin_population = VerifySubject {
        inner: casbin.inner.clone(),
        verifier: big_verifier(),
    };
    let rolegraph_population_verifier = big_verifier();
    let mut rolegraph_population = ServiceBuilder::new()
        .layer(AuthorizeLayer::new(
            auth.engine().clone(),
            rolegraph_population_verifier.clone(),
        ))
        .layer(auth.require(perm.name().as_str()).unwrap())
        .service_fn(handler);
    rt.block_on(async {
        for bearer in &population_bearers {
            let token = &bearer["Bearer ".len()..];
            casbin_population.verifier.verify(token).await.unwrap();
            rolegraph_population_verifier.verify(token).await.unwrap();
        }
        // rolegraph against the workload's answer on every user; casbin
        // against rolegraph on the first 50 (each a full `enforce`).
        for (k, (bearer, j)) in population_bearers.iter().zip(&population).enumerate() {
            let r = call(&mut rolegraph_population, request_for(bearer)).await;
            assert_eq!(r == 200, allowed.contains(j), "{bearer}");
            if k < 50 {
                let c = call(&mut casbin_population, request_for(bearer)).await;
                assert_eq!(c, r, "{bearer}");
            }
        }
    });
    let population_before = [
        verified(&casbin_population.verifier),
        verified(&rolegraph_population_verifier),
    ];
    let population_order = arrivals(ACTIVE, ARRIVALS);
    let mut g = c.benchmark_group("http/peer");
    g.sample_size(10).sampling_mode(SamplingMode::Flat);
    memo_counted("axum_casbin_population", &mut || {
        let requests = arriving(&population_order, 8 << 12, |k| {
            request_for(&population_bearers[k])
        });
        timed(
            &mut g,
            rt,
            "axum_casbin_population",
            &mut casbin_population,
            requests,
        );
    });
    g.finish();
    let mut g = c.benchmark_group("http/peer");
    timed(
        &mut g,
        rt,
        "rolegraph_population",
        &mut rolegraph_population,
        arriving(&population_order, 9 << 12, |k| {
            request_for(&population_bearers[k])
        }),
    );
    g.finish();
    assert_eq!(
        population_before,
        [
            verified(&casbin_population.verifier),
            verified(&rolegraph_population_verifier),
        ]
    );

    // The first request per user after a policy write: before each timed
    // request (1,024-user rotation), one untimed write to each side's
    // policy. casbin clears its memo on every write (a webhook revocation
    // is one); rolegraph has no memo to lose.
    rt.block_on(async {
        casbin_enforcer
            .write()
            .await
            .set_cache(Box::new(DefaultCache::new(CASBIN_MEMO)));
    });
    let mut writes = 0u64;
    let mut casbin_write = || {
        writes += 1;
        let line = vec![
            "bench_writer".to_owned(),
            "/bench".to_owned(),
            "GET".to_owned(),
        ];
        rt.block_on(async {
            let mut e = casbin_enforcer.write().await;
            if writes % 2 == 1 {
                assert!(e.add_policy(line).await.unwrap());
            } else {
                assert!(e.remove_policy(line).await.unwrap());
            }
        });
    };
    let engine = auth.engine().clone();
    let mut edits = 0u64;
    let mut rolegraph_write = || {
        edits += 1;
        engine
            .apply(
                Change::UpdatePermission {
                    name: perm.name().to_string(),
                    description: Some(format!("edit {edits}")),
                },
                ChangeMeta::by("bench"),
            )
            .unwrap();
    };
    // Each pass over the rotation starts with a write: every request is a
    // user's first after a write. The writes are not timed.
    let mut g = c.benchmark_group("http/peer");
    g.sample_size(10);
    let mut at = 0;
    g.bench_function(BenchmarkId::new("axum_casbin_after_change", ROLES), |b| {
        b.iter_custom(|iters| {
            drive_after_writes(
                rt,
                &mut casbin,
                |k| request_for(&rotation_bearers[k]),
                (&mut at, rotation.len()),
                &mut casbin_write,
                iters,
            )
        });
    });
    g.finish();
    let mut g = c.benchmark_group("http/peer");
    let mut at = 0;
    g.bench_function(BenchmarkId::new("rolegraph_after_change", ROLES), |b| {
        b.iter_custom(|iters| {
            drive_after_writes(
                rt,
                &mut rolegraph,
                |k| request_for(&rotation_bearers[k]),
                (&mut at, rotation.len()),
                &mut rolegraph_write,
                iters,
            )
        });
    });
    g.finish();
}

/// `iters` requests over a rotation of `len` users from `*at` on, with an
/// untimed `write` before each pass over the rotation starts.
fn drive_after_writes<S, F>(
    rt: &tokio::runtime::Runtime,
    svc: &mut S,
    mut request: F,
    (at, len): (&mut usize, usize),
    write: &mut dyn FnMut(),
    iters: u64,
) -> Duration
where
    S: Service<Request<Body>>,
    S::Error: std::fmt::Debug,
    F: FnMut(usize) -> Request<Body>,
{
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        if *at == 0 {
            write();
        }
        let n = left.min((len - *at) as u64);
        total += drive(
            rt,
            svc,
            || {
                let req = request(*at);
                *at = (*at + 1) % len;
                req
            },
            n,
        );
        left -= n;
    }
    total
}

/// Times `id` (at `ROLES`) in `g`: `svc` answering `request()` after
/// `request()`, one request an iteration.
fn timed<S, F>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    rt: &tokio::runtime::Runtime,
    id: &str,
    svc: &mut S,
    mut request: F,
) where
    S: Service<Request<Body>>,
    S::Error: std::fmt::Debug,
    F: FnMut() -> Request<Body>,
{
    g.bench_function(BenchmarkId::new(id, ROLES), |b| {
        b.iter_custom(|iters| drive(rt, svc, &mut request, iters));
    });
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
