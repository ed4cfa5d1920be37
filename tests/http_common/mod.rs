//! Shared helpers of the HTTP tests: a token issuer and its verifier, a
//! policy, an app served on 127.0.0.1, a client.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use rolegraph::http::{Authenticated, AuthorizeLayer, Rule};
use rolegraph::token::{DevClaims, DevIssuer, JwksVerifier, Verifier, VerifierStats, VerifyFuture};
use rolegraph::Policy;

pub const ISSUER: &str = "https://test.scalekit.local";
pub const AUDIENCE: &str = "prj_test";
pub const ORG: &str = "org_1";

pub fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// What a test token says.
#[derive(Clone, Debug)]
pub struct TestClaims {
    pub sub: String,
    pub oid: Option<String>,
    pub roles: Vec<String>,
    pub permissions: Vec<String>,
    pub email: Option<String>,
    pub iss: String,
    pub aud: Vec<String>,
    pub exp: u64,
    pub nbf: Option<u64>,
}

impl TestClaims {
    /// A valid token of `sub` in `org_1` with `roles`, for an hour.
    pub fn new(sub: &str, roles: &[&str]) -> Self {
        Self {
            sub: sub.into(),
            oid: Some(ORG.into()),
            roles: roles.iter().map(|r| (*r).into()).collect(),
            permissions: Vec::new(),
            email: None,
            iss: ISSUER.into(),
            aud: vec![AUDIENCE.into()],
            exp: now_s() + 3600,
            nbf: None,
        }
    }
}

/// Signs RS256 tokens with the committed TEST-ONLY key, serves its JWKS on
/// 127.0.0.1, and hands out a `JwksVerifier` fetching from there (wrapped
/// to count calls).
pub struct Issuer {
    dev: DevIssuer,
    jwks: JwksVerifier,
    pub verifications: Arc<AtomicU64>,
}

impl Issuer {
    pub async fn start() -> Self {
        let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let pem =
            std::fs::read_to_string(here.join("tests/data/jwt/test_only_rsa_private.pem")).unwrap();
        let dev = DevIssuer::from_pkcs8_pem("test-1", &pem).unwrap();
        let keys = dev.jwks_json();
        let base = serve(Router::new().route("/keys", get(move || async move { keys }))).await;
        let jwks = JwksVerifier::builder(format!("{base}/keys"), ISSUER, AUDIENCE)
            .refresh_interval(std::time::Duration::ZERO)
            .build()
            .unwrap();
        jwks.refresh().await.unwrap();
        Self {
            dev,
            jwks,
            verifications: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn mint(&self, claims: &TestClaims) -> String {
        let mut c = DevClaims::new(claims.sub.clone(), claims.iss.clone(), claims.aud.clone());
        c.organization = claims.oid.clone();
        c.roles = claims.roles.clone();
        c.permissions = claims.permissions.clone();
        c.email = claims.email.clone();
        c.expires_at = claims.exp;
        c.not_before = claims.nbf;
        self.dev.mint(&c).unwrap()
    }

    pub fn verifier(&self) -> Arc<dyn Verifier> {
        Arc::new(Counting {
            inner: self.jwks.clone(),
            count: Arc::clone(&self.verifications),
        })
    }

    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> VerifierStats {
        self.jwks.stats()
    }
}

struct Counting {
    inner: JwksVerifier,
    count: Arc<AtomicU64>,
}

impl Verifier for Counting {
    fn verify<'a>(&'a self, token: &'a str) -> VerifyFuture<'a> {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.inner.verify(token)
    }

    // Forwarded, so the layer's no-future path (a cache hit) is what the
    // HTTP tests exercise for a token seen before.
    fn verified(&self, token: &str) -> Option<Arc<rolegraph::token::VerifiedClaims>> {
        self.inner.verified(token)
    }
}

/// permissions `projects:{read,write,delete}`, `users:write`; roles
/// `viewer` < `editor` < `admin`, `hr` (users:write), `guest`; organization `org_1`.
pub fn policy() -> Policy {
    let mut p = Policy::new();
    p.permission("projects:read")
        .permission("projects:write")
        .permission("projects:delete")
        .permission("users:write");
    p.role("viewer").grant("projects:read");
    p.role("editor").extends("viewer").grant("projects:write");
    p.role("admin").extends("editor").grant("projects:delete");
    p.role("hr").grant("users:write");
    p.role("guest");
    p.organization(ORG);
    p
}

/// The test routes behind `auth`:
/// - `GET /projects`: `projects:read`
/// - `POST /projects/delete`: `projects:delete`
/// - `GET /admin`: role `admin` or `users:write`
/// - `GET /me`: no requirement (`Option<Authenticated>`)
///
/// Protected routes answer the subject, with `x-revision` and `x-source`.
pub fn router(auth: &AuthorizeLayer) -> Router {
    Router::new()
        .route(
            "/projects",
            get(show).route_layer(auth.require("projects:read").unwrap()),
        )
        .route(
            "/projects/delete",
            post(show).route_layer(auth.require("projects:delete").unwrap()),
        )
        .route(
            "/admin",
            get(show).route_layer(
                auth.require(Rule::role("admin").or(Rule::any_of(["users:write"])))
                    .unwrap(),
            ),
        )
        .route("/me", get(me))
        .layer(auth.clone())
}

async fn show(who: Authenticated) -> impl IntoResponse {
    let mut headers = HeaderMap::new();
    headers.insert("x-revision", who.revision().into());
    headers.insert("x-source", who.source().as_str().parse().unwrap());
    (headers, who.claims().subject.clone())
}

async fn me(who: Option<Authenticated>) -> String {
    match who {
        Some(who) => format!(
            "{} {:?}",
            who.claims().subject,
            who.principal().permissions()
        ),
        None => "anonymous".into(),
    }
}

/// Serves `app` on 127.0.0.1, an ephemeral port; the base URL.
pub async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// A response reduced to what the tests assert.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub challenge: Option<String>,
    pub content_type: Option<String>,
    pub revision: Option<u64>,
    pub source: Option<String>,
    pub retry_after: Option<String>,
    pub body: String,
}

impl Answer {
    pub async fn of(response: reqwest::Response) -> Self {
        let h = response.headers();
        let get = |name: &str| h.get(name).map(|v| v.to_str().unwrap().to_owned());
        Self {
            status: response.status().as_u16(),
            challenge: get("www-authenticate"),
            content_type: get("content-type"),
            revision: get("x-revision").map(|v| v.parse().unwrap()),
            source: get("x-source"),
            retry_after: get("retry-after"),
            body: response.text().await.unwrap(),
        }
    }

    pub fn problem(&self) -> serde_json::Value {
        assert_eq!(
            self.content_type.as_deref(),
            Some("application/problem+json")
        );
        serde_json::from_str(&self.body).unwrap()
    }
}

/// `GET base+path` with `Authorization: Bearer token` (none when `None`).
pub async fn get_as(client: &reqwest::Client, url: &str, token: Option<&str>) -> Answer {
    let mut req = client.get(url);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    Answer::of(req.send().await.unwrap()).await
}

/// One HTTP/1.1 exchange over a raw socket: `head` (request line and
/// headers, without the blank line), then `chunks` written as they are;
/// the status and body of the answer. For bodies a client library would
/// not send (chunked past a limit, a length it never delivers).
pub async fn raw(base: &str, head: &str, chunks: &[Vec<u8>]) -> (u16, String) {
    tokio::time::timeout(
        std::time::Duration::from_secs(20),
        raw_exchange(base, head, chunks),
    )
    .await
    .expect("no answer within 20 s")
}

async fn raw_exchange(base: &str, head: &str, chunks: &[Vec<u8>]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("{head}\r\nhost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    for c in chunks {
        if s.write_all(c).await.is_err() {
            break;
        }
    }
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    loop {
        let n = match s.read(&mut tmp).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&tmp[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}
