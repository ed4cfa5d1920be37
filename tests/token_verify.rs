//! Access-token verification against a real JWKS server on 127.0.0.1, with
//! tokens signed by the test-only keys in `tests/data/jwt` (never use them
//! elsewhere).

// Test helpers outside `#[test]` functions may fail loudly too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rolegraph::token::{DevClaims, DevIssuer, JwksVerifier, TokenError, Verifier};

const ISSUER: &str = "https://env.example.test";
const AUDIENCE: &str = "skc_test";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn key_1() -> DevIssuer {
    let pem = include_str!("data/jwt/test_only_rsa_private.pem");
    DevIssuer::from_pkcs8_pem("test-1", pem).unwrap()
}

fn key_2() -> DevIssuer {
    let pem = include_str!("data/jwt/test_only_rsa_private_2.pem");
    DevIssuer::from_pkcs8_pem("test-2", pem).unwrap()
}

fn claims() -> DevClaims {
    let mut c = DevClaims::new("usr_1", ISSUER, [AUDIENCE]);
    c.organization = Some("org_1".into());
    c.roles = vec!["admin".into()];
    c.permissions = vec!["projects:read".into()];
    c.email = Some("ada@example.com".into());
    c.token_id = Some("tkn_1".into());
    c
}

fn with_jti(jti: &str) -> DevClaims {
    let mut c = claims();
    c.token_id = Some(jti.into());
    c
}

fn static_verifier(issuer: &DevIssuer) -> JwksVerifier {
    JwksVerifier::from_jwks_json(&issuer.jwks_json(), ISSUER, AUDIENCE).unwrap()
}

/// A token with a hand-made header and payload, signed by nothing.
fn unsigned(header: &serde_json::Value, payload: &serde_json::Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload.to_string())
    )
}

fn payload() -> serde_json::Value {
    serde_json::json!({"sub": "usr_1", "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 600})
}

/// A JWKS server on 127.0.0.1 that counts the requests it answered; its
/// body can change (key rotation), it can be slow, and it can be stopped.
struct JwksServer {
    addr: SocketAddr,
    body: Arc<Mutex<String>>,
    delay: Arc<Mutex<Duration>>,
    hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl JwksServer {
    fn start(body: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let body = Arc::new(Mutex::new(body));
        let delay = Arc::new(Mutex::new(Duration::ZERO));
        let hits = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (body, delay, hits, stop) =
                (body.clone(), delay.clone(), hits.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(mut stream) = stream else { continue };
                    stream
                        .set_read_timeout(Some(Duration::from_secs(2)))
                        .unwrap();
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    if !request.starts_with(b"GET /keys ") {
                        let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                        continue;
                    }
                    hits.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(*delay.lock().unwrap());
                    let body = body.lock().unwrap().clone();
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                }
            })
        };
        Self {
            addr,
            body,
            delay,
            hits,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://{}/keys", self.addr)
    }

    fn serve(&self, body: String) {
        *self.body.lock().unwrap() = body;
    }

    fn slow(&self, delay: Duration) {
        *self.delay.lock().unwrap() = delay;
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Stops answering: the listener is closed, connections are refused.
    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn url_verifier(server: &JwksServer) -> rolegraph::token::JwksVerifierBuilder {
    JwksVerifier::builder(server.url(), ISSUER, AUDIENCE).refresh_interval(Duration::ZERO)
}

#[tokio::test]
async fn a_valid_token_yields_its_claims() {
    let issuer = key_1();
    let verifier = static_verifier(&issuer);
    let c = claims();
    let verified = verifier.verify(&issuer.mint(&c).unwrap()).await.unwrap();
    assert_eq!(verified.subject, "usr_1");
    assert_eq!(verified.organization.as_deref(), Some("org_1"));
    assert_eq!(verified.roles, ["admin"]);
    assert_eq!(verified.permissions, ["projects:read"]);
    assert_eq!(verified.email.as_deref(), Some("ada@example.com"));
    assert_eq!(verified.issuer, ISSUER);
    assert_eq!(verified.audience, [AUDIENCE]);
    assert_eq!(verified.expires_at, c.expires_at);
    assert_eq!(verified.token_id.as_deref(), Some("tkn_1"));
    assert_eq!(verified.claims().roles, ["admin"]);
}

#[tokio::test]
async fn expired_tokens_are_refused_beyond_the_leeway() {
    let issuer = key_1();
    let verifier = static_verifier(&issuer);
    let mut c = with_jti("expired");
    c.expires_at = now() - 120;
    assert_eq!(
        verifier
            .verify(&issuer.mint(&c).unwrap())
            .await
            .unwrap_err(),
        TokenError::Expired
    );
    // Within the default 60 s leeway: accepted.
    let mut c = with_jti("skewed");
    c.expires_at = now() - 20;
    assert!(verifier.verify(&issuer.mint(&c).unwrap()).await.is_ok());
    // Without leeway: refused.
    let strict = JwksVerifier::builder_from_jwks_json(issuer.jwks_json(), ISSUER, AUDIENCE)
        .leeway(Duration::ZERO)
        .build()
        .unwrap();
    assert_eq!(
        strict.verify(&issuer.mint(&c).unwrap()).await.unwrap_err(),
        TokenError::Expired
    );
}

#[tokio::test]
async fn tokens_not_yet_valid_are_refused() {
    let issuer = key_1();
    let verifier = static_verifier(&issuer);
    let mut c = claims();
    c.not_before = Some(now() + 600);
    let e = verifier
        .verify(&issuer.mint(&c).unwrap())
        .await
        .unwrap_err();
    assert_eq!(e, TokenError::NotYetValid);
    c.not_before = Some(now() + 10); // within the leeway
    assert!(verifier.verify(&issuer.mint(&c).unwrap()).await.is_ok());
}

#[tokio::test]
async fn a_wrong_issuer_is_refused() {
    let issuer = key_1();
    let verifier = static_verifier(&issuer);
    let mut c = claims();
    c.issuer = "https://evil.example.test".into();
    assert_eq!(
        verifier
            .verify(&issuer.mint(&c).unwrap())
            .await
            .unwrap_err(),
        TokenError::Issuer
    );
    c.issuer = String::new();
    assert_eq!(
        verifier
            .verify(&issuer.mint(&c).unwrap())
            .await
            .unwrap_err(),
        TokenError::Issuer
    );
}

#[tokio::test]
async fn audiences_match_as_a_string_or_any_of_an_array() {
    let issuer = key_1();
    let verifier = static_verifier(&issuer);
    let mut c = claims();
    c.audience = vec!["someone-else".into()];
    assert_eq!(
        verifier
            .verify(&issuer.mint(&c).unwrap())
            .await
            .unwrap_err(),
        TokenError::Audience
    );
    c.audience = vec![];
    assert_eq!(
        verifier
            .verify(&issuer.mint(&c).unwrap())
            .await
            .unwrap_err(),
        TokenError::Audience
    );
    c.audience = vec!["someone-else".into(), AUDIENCE.into()];
    let verified = verifier.verify(&issuer.mint(&c).unwrap()).await.unwrap();
    assert_eq!(verified.audience, ["someone-else", AUDIENCE]);

    let two = JwksVerifier::builder_from_jwks_json(issuer.jwks_json(), ISSUER, AUDIENCE)
        .audience("api")
        .build()
        .unwrap();
    c.audience = vec!["api".into()];
    assert!(two.verify(&issuer.mint(&c).unwrap()).await.is_ok());
}

#[tokio::test]
async fn alg_none_is_refused_before_any_key() {
    let verifier = static_verifier(&key_1());
    for (alg, signature) in [
        ("none", ""),
        ("none", "c2ln"),
        ("None", ""),
        ("RS999", "c2ln"),
    ] {
        let token = unsigned(
            &serde_json::json!({"alg": alg, "kid": "test-1"}),
            &payload(),
            signature,
        );
        assert_eq!(
            verifier.verify(&token).await.unwrap_err(),
            TokenError::Algorithm { alg: alg.into() },
            "{alg}"
        );
    }
    assert_eq!(verifier.stats().signature_verifications, 0);
}

#[tokio::test]
async fn hmac_tokens_keyed_with_the_public_key_bytes_are_refused() {
    let verifier = static_verifier(&key_1());
    let pem = include_bytes!("data/jwt/test_only_rsa_public.pem");
    let der = include_bytes!("data/jwt/test_only_rsa_public.der");
    for (alg, secret) in [
        (jsonwebtoken::Algorithm::HS256, &pem[..]),
        (jsonwebtoken::Algorithm::HS256, &der[..]),
        (jsonwebtoken::Algorithm::HS384, &pem[..]),
        (jsonwebtoken::Algorithm::HS512, &der[..]),
    ] {
        let mut header = jsonwebtoken::Header::new(alg);
        header.kid = Some("test-1".into());
        let key = jsonwebtoken::EncodingKey::from_secret(secret).unwrap();
        let token = jsonwebtoken::encode(&header, &payload(), &key).unwrap();
        let e = verifier.verify(&token).await.unwrap_err();
        assert!(
            matches!(&e, TokenError::Algorithm { alg } if alg.starts_with("HS")),
            "{e}"
        );
    }
    assert_eq!(verifier.stats().signature_verifications, 0);
    // And no configuration can allow them.
    let e = JwksVerifier::builder_from_jwks_json(key_1().jwks_json(), ISSUER, AUDIENCE)
        .algorithms(["HS256", "none"])
        .build()
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "token verifier configuration is invalid: algorithm `HS256` uses a shared secret, \
         only public-key algorithms are allowed; algorithm `none` is never allowed"
    );
}

#[tokio::test]
async fn a_key_that_does_not_fit_the_algorithm_is_refused() {
    let issuer = key_1();
    let mut jwk = issuer.jwk();
    jwk["alg"] = "RS384".into();
    let jwks = serde_json::json!({"keys": [jwk]}).to_string();
    let verifier = JwksVerifier::builder_from_jwks_json(jwks, ISSUER, AUDIENCE)
        .algorithms(["RS256", "RS384", "ES256"])
        .build()
        .unwrap();
    let e = verifier
        .verify(&issuer.mint(&claims()).unwrap())
        .await
        .unwrap_err();
    assert_eq!(
        e,
        TokenError::KeyMismatch {
            kid: "test-1".into(),
            alg: "RS256".into()
        }
    );
    let es = unsigned(
        &serde_json::json!({"alg": "ES256", "kid": "test-1"}),
        &payload(),
        "c2ln",
    );
    let e = verifier.verify(&es).await.unwrap_err();
    assert_eq!(
        e,
        TokenError::KeyMismatch {
            kid: "test-1".into(),
            alg: "ES256".into()
        }
    );
    assert_eq!(verifier.stats().signature_verifications, 0);

    // A JWK without `alg`: its type alone must fit the token's algorithm.
    let mut jwk = issuer.jwk();
    jwk.as_object_mut().unwrap().remove("alg");
    let jwks = serde_json::json!({"keys": [jwk]}).to_string();
    let untyped = JwksVerifier::builder_from_jwks_json(jwks, ISSUER, AUDIENCE)
        .algorithms(["RS256", "ES256"])
        .build()
        .unwrap();
    let e = untyped.verify(&es).await.unwrap_err();
    assert_eq!(
        e,
        TokenError::KeyMismatch {
            kid: "test-1".into(),
            alg: "ES256".into()
        }
    );
    assert_eq!(untyped.stats().signature_verifications, 0);
    assert!(untyped
        .verify(&issuer.mint(&claims()).unwrap())
        .await
        .is_ok());
}

#[tokio::test]
async fn garbage_is_malformed_and_a_tampered_token_fails_its_signature() {
    let issuer = key_1();
    let verifier = static_verifier(&issuer);
    let huge = format!("{}.e30.c2ln", "a".repeat(70_000));
    for garbage in [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "!!!.###.$$$",
        "e30.e30.c2ln",
        "bm90IGpzb24.e30.c2ln",
        &huge,
    ] {
        let e = verifier.verify(garbage).await.unwrap_err();
        assert!(
            matches!(e, TokenError::Malformed | TokenError::Algorithm { .. }),
            "{garbage:.20}: {e}"
        );
        assert_eq!(e.description(), "the access token is invalid");
    }
    let token = issuer.mint(&claims()).unwrap();
    let mut parts: Vec<&str> = token.split('.').collect();
    let mut forged = payload();
    forged["sub"] = "usr_admin".into();
    let forged = URL_SAFE_NO_PAD.encode(forged.to_string());
    parts[1] = &forged;
    assert_eq!(
        verifier.verify(&parts.join(".")).await.unwrap_err(),
        TokenError::Signature
    );
    // A token signed by another key under the same kid.
    let impostor = DevIssuer::from_pkcs8_pem(
        "test-1",
        include_str!("data/jwt/test_only_rsa_private_2.pem"),
    )
    .unwrap();
    assert_eq!(
        verifier
            .verify(&impostor.mint(&claims()).unwrap())
            .await
            .unwrap_err(),
        TokenError::Signature
    );
}

#[tokio::test]
async fn missing_and_required_claims_are_named() {
    let issuer = key_1();
    let verifier = JwksVerifier::builder_from_jwks_json(issuer.jwks_json(), ISSUER, AUDIENCE)
        .require_claim("oid")
        .build()
        .unwrap();
    let mut c = claims();
    c.organization = None;
    let e = verifier
        .verify(&issuer.mint(&c).unwrap())
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), "claim `oid` is missing");
    // A token without `exp` (hand-signed: DevClaims always has one).
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("test-1".into());
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(include_bytes!(
        "data/jwt/test_only_rsa_private.pem"
    ))
    .unwrap();
    let no_exp =
        serde_json::json!({"sub": "usr_1", "oid": "org_1", "iss": ISSUER, "aud": AUDIENCE});
    let token = jsonwebtoken::encode(&header, &no_exp, &key).unwrap();
    assert_eq!(
        verifier.verify(&token).await.unwrap_err().to_string(),
        "claim `exp` is missing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_kid_refetches_and_a_rotated_key_verifies() {
    let (k1, k2) = (key_1(), key_2());
    let server = JwksServer::start(k1.jwks_json());
    let verifier = url_verifier(&server)
        .min_refetch_interval(Duration::from_millis(200))
        .build()
        .unwrap();
    verifier.refresh().await.unwrap();
    assert!(verifier.verify(&k1.mint(&claims()).unwrap()).await.is_ok());
    let fetched = server.hits();

    // Rotation: the issuer now signs with k2 and publishes both keys.
    server.serve(serde_json::json!({"keys": [k1.jwk(), k2.jwk()]}).to_string());
    tokio::time::sleep(Duration::from_millis(250)).await;
    let verified = verifier.verify(&k2.mint(&claims()).unwrap()).await.unwrap();
    assert_eq!(verified.subject, "usr_1");
    assert_eq!(
        server.hits(),
        fetched + 1,
        "one refetch for the unknown kid"
    );
    // The old key still verifies; no further fetch.
    assert!(verifier
        .verify(&k1.mint(&with_jti("old")).unwrap())
        .await
        .is_ok());
    assert_eq!(server.hits(), fetched + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_random_kids_causes_at_most_one_fetch_per_interval() {
    // No timing is asserted against machine speed: the interval (30 s) and
    // the server's delay (1.5 s) dwarf the work of 200 failing requests, so a
    // loaded CI machine cannot turn a pass into a failure or the reverse.
    let server = JwksServer::start(key_1().jwks_json());
    let verifier = url_verifier(&server)
        .min_refetch_interval(Duration::from_secs(30))
        .build()
        .unwrap();
    server.slow(Duration::from_millis(1500));

    let storm = |round: usize| {
        let verifier = verifier.clone();
        async move {
            let tasks: Vec<_> = (0..200)
                .map(|i| {
                    let verifier = verifier.clone();
                    tokio::spawn(async move {
                        let kid = format!("random-{round}-{i}-{}", rand::random::<u64>());
                        let token = unsigned(
                            &serde_json::json!({"alg": "RS256", "kid": kid}),
                            &payload(),
                            "c2ln",
                        );
                        (kid.clone(), verifier.verify(&token).await.unwrap_err())
                    })
                })
                .collect();
            for task in tasks {
                let (kid, e) = task.await.unwrap();
                assert_eq!(e, TokenError::UnknownKey { kid });
            }
        }
    };
    // In-flight requests join the one fetch (the first, since no key set
    // was loaded yet)...
    storm(1).await;
    assert_eq!(server.hits(), 1, "one fetch for 200 unknown kids");
    // ...and within the interval, the next storm fails fast without fetching
    // (a fetch would take the server's 1.5 s).
    let started = Instant::now();
    storm(2).await;
    assert!(
        started.elapsed() < Duration::from_millis(1400),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(server.hits(), 1);
    let stats = verifier.stats();
    assert_eq!(stats.jwks_fetches, 1);
    assert_eq!(stats.signature_verifications, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_keys_keep_serving_while_the_endpoint_is_down() {
    let issuer = key_1();
    let mut server = JwksServer::start(issuer.jwks_json());
    let verifier = url_verifier(&server)
        .min_refetch_interval(Duration::ZERO)
        .build()
        .unwrap();
    verifier.refresh().await.unwrap();
    assert!(verifier
        .verify(&issuer.mint(&with_jti("before")).unwrap())
        .await
        .is_ok());
    server.stop();

    assert_eq!(
        verifier.refresh().await.unwrap_err(),
        TokenError::KeysUnavailable
    );
    let verified = verifier
        .verify(&issuer.mint(&with_jti("during")).unwrap())
        .await
        .unwrap();
    assert_eq!(verified.token_id.as_deref(), Some("during"));
    // An unknown kid while the endpoint is down: the server's failure.
    let other = key_2();
    let e = verifier
        .verify(&other.mint(&claims()).unwrap())
        .await
        .unwrap_err();
    assert_eq!(e, TokenError::KeysUnavailable);
    assert!(e.is_unavailable());
    assert!(verifier.stats().jwks_fetch_failures >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verifier_that_never_got_keys_is_unavailable_not_unauthorized() {
    let mut server = JwksServer::start(key_1().jwks_json());
    let url = server.url();
    server.stop();
    let verifier = JwksVerifier::builder(url, ISSUER, AUDIENCE)
        .refresh_interval(Duration::ZERO)
        .build()
        .unwrap();
    let token = key_1().mint(&claims()).unwrap();
    // Whether it waits for the start-up fetch or is throttled after it.
    for _ in 0..3 {
        let e = verifier.verify(&token).await.unwrap_err();
        assert_eq!(e, TokenError::KeysUnavailable);
        assert!(e.is_unavailable());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_or_broken_key_set_never_replaces_good_keys() {
    let issuer = key_1();
    let server = JwksServer::start(issuer.jwks_json());
    let verifier = url_verifier(&server).max_jwks_bytes(4096).build().unwrap();
    verifier.refresh().await.unwrap();
    server.serve(format!(r#"{{"keys": [], "pad": "{}"}}"#, "x".repeat(8000)));
    assert_eq!(
        verifier.refresh().await.unwrap_err(),
        TokenError::KeysUnavailable
    );
    server.serve(r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "test-1"}]}"#.into());
    assert_eq!(
        verifier.refresh().await.unwrap_err(),
        TokenError::KeysUnavailable
    );
    server.serve("not json".into());
    assert_eq!(
        verifier.refresh().await.unwrap_err(),
        TokenError::KeysUnavailable
    );
    assert!(verifier
        .verify(&issuer.mint(&claims()).unwrap())
        .await
        .is_ok());
    assert_eq!(verifier.stats().keys, 1);
}

#[tokio::test]
async fn a_cached_token_is_not_verified_again() {
    let issuer = key_1();
    let verifier = static_verifier(&issuer);
    let token = issuer.mint(&claims()).unwrap();
    for _ in 0..5 {
        assert_eq!(verifier.verify(&token).await.unwrap().subject, "usr_1");
    }
    let stats = verifier.stats();
    assert_eq!(stats.signature_verifications, 1);
    assert_eq!((stats.cache_hits, stats.cache_misses), (4, 1));
    // Another token is verified on its own.
    verifier
        .verify(&issuer.mint(&with_jti("other")).unwrap())
        .await
        .unwrap();
    assert_eq!(verifier.stats().signature_verifications, 2);

    let uncached = JwksVerifier::builder_from_jwks_json(issuer.jwks_json(), ISSUER, AUDIENCE)
        .cache_capacity(0)
        .build()
        .unwrap();
    for _ in 0..5 {
        uncached.verify(&token).await.unwrap();
    }
    let stats = uncached.stats();
    assert_eq!(
        (
            stats.signature_verifications,
            stats.cache_hits,
            stats.cache_misses
        ),
        (5, 0, 0)
    );
}

/// `Verifier::verified`, the layer's no-future path: only a token verified
/// before, counted as a hit; never a token it has not verified, never with
/// the cache off.
#[tokio::test]
async fn verified_answers_only_tokens_verified_before() {
    let issuer = key_1();
    let verifier = static_verifier(&issuer);
    let token = issuer.mint(&claims()).unwrap();
    assert!(verifier.verified(&token).is_none());
    assert!(verifier.verified("e30.e30.c2ln").is_none());
    assert_eq!(verifier.stats().signature_verifications, 0);
    verifier.verify(&token).await.unwrap();
    assert_eq!(verifier.verified(&token).unwrap().subject, "usr_1");
    // A tampered copy (one byte of the signature) is not the cached token.
    let mut tampered = token.clone().into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    assert!(verifier
        .verified(std::str::from_utf8(&tampered).unwrap())
        .is_none());
    let stats = verifier.stats();
    assert_eq!((stats.signature_verifications, stats.cache_hits), (1, 1));

    let uncached = JwksVerifier::builder_from_jwks_json(issuer.jwks_json(), ISSUER, AUDIENCE)
        .cache_capacity(0)
        .build()
        .unwrap();
    uncached.verify(&token).await.unwrap();
    assert!(uncached.verified(&token).is_none());
}

#[tokio::test]
async fn the_cache_never_serves_a_token_after_its_exp() {
    let issuer = key_1();
    let verifier = JwksVerifier::builder_from_jwks_json(issuer.jwks_json(), ISSUER, AUDIENCE)
        .leeway(Duration::ZERO)
        .build()
        .unwrap();
    let mut c = claims();
    c.expires_at = now() + 2;
    let token = issuer.mint(&c).unwrap();
    verifier.verify(&token).await.unwrap();
    verifier.verify(&token).await.unwrap();
    assert_eq!(verifier.stats().cache_hits, 1);
    while now() < c.expires_at {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(verifier.verified(&token).is_none(), "no-future path");
    assert_eq!(
        verifier.verify(&token).await.unwrap_err(),
        TokenError::Expired
    );
    assert_eq!(verifier.stats().cache_hits, 1, "not served from the cache");
    assert_eq!(verifier.stats().signature_verifications, 2);
}

#[tokio::test]
async fn the_cache_is_bounded() {
    let issuer = key_1();
    let verifier = JwksVerifier::builder_from_jwks_json(issuer.jwks_json(), ISSUER, AUDIENCE)
        .cache_capacity(8)
        .build()
        .unwrap();
    let tokens: Vec<String> = (0..30)
        .map(|i| issuer.mint(&with_jti(&format!("t{i}"))).unwrap())
        .collect();
    for token in &tokens {
        verifier.verify(token).await.unwrap();
    }
    assert_eq!(verifier.stats().cached_tokens, 8);
    // Every token still verifies (evicted ones by signature again).
    for token in &tokens {
        verifier.verify(token).await.unwrap();
    }
    let stats = verifier.stats();
    assert!(stats.cached_tokens <= 8);
    assert_eq!(stats.cache_hits + stats.signature_verifications, 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_refresh_stops_when_the_verifier_is_dropped() {
    let server = JwksServer::start(key_1().jwks_json());
    let verifier = JwksVerifier::builder(server.url(), ISSUER, AUDIENCE)
        .refresh_interval(Duration::from_millis(50))
        .build()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        server.hits() >= 3,
        "refreshed periodically: {}",
        server.hits()
    );
    drop(verifier);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after_drop = server.hits();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.hits(), after_drop, "no refresh after drop");
}

#[tokio::test]
async fn a_generated_dev_issuer_signs_verifiable_tokens() {
    let issuer = DevIssuer::generate("dev-1").unwrap();
    assert_eq!(issuer.kid(), "dev-1");
    let verifier = static_verifier(&issuer);
    let mut c = DevClaims::new("", ISSUER, [AUDIENCE]);
    c.scopes = vec!["read".into()];
    let verified = verifier.verify(&issuer.mint(&c).unwrap()).await.unwrap();
    assert_eq!(verified.subject, "", "an M2M token has no subject");
    assert_eq!(verified.scopes, ["read"]);
    // Its key is not the committed test key.
    assert_eq!(
        static_verifier(&key_1())
            .verify(&issuer.mint(&c).unwrap())
            .await
            .unwrap_err(),
        TokenError::UnknownKey {
            kid: "dev-1".into()
        }
    );
}

#[test]
fn verifiers_and_errors_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<JwksVerifier>();
    assert_send_sync::<DevIssuer>();
    assert_send_sync::<TokenError>();
    assert_send_sync::<Arc<dyn Verifier>>();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_verifications_under_eviction_always_return_their_own_claims() {
    let issuer = key_1();
    let verifier = JwksVerifier::builder_from_jwks_json(issuer.jwks_json(), ISSUER, AUDIENCE)
        .cache_capacity(8)
        .build()
        .unwrap();
    let tokens: Arc<Vec<(String, String)>> = Arc::new(
        (0..24)
            .map(|i| {
                let jti = format!("tkn_{i}");
                (jti.clone(), issuer.mint(&with_jti(&jti)).unwrap())
            })
            .collect(),
    );
    let tasks: Vec<_> = (0..4)
        .map(|t| {
            let (verifier, tokens) = (verifier.clone(), tokens.clone());
            tokio::spawn(async move {
                for round in 0..150 {
                    let (jti, token) = &tokens[(round * 7 + t * 5) % tokens.len()];
                    let verified = verifier.verify(token).await.unwrap();
                    assert_eq!(verified.token_id.as_deref(), Some(jti.as_str()));
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let stats = verifier.stats();
    assert_eq!(stats.cache_hits + stats.cache_misses, 600);
    assert!(stats.cached_tokens <= 8);
}

#[tokio::test]
async fn algorithms_are_configuration() {
    let pem = include_bytes!("data/jwt/test_only_ec_p256_private.pem");
    let key = jsonwebtoken::EncodingKey::from_ec_pem(pem).unwrap();
    let mut jwk = serde_json::to_value(
        jsonwebtoken::jwk::Jwk::from_encoding_key(&key, jsonwebtoken::Algorithm::ES256).unwrap(),
    )
    .unwrap();
    jwk["kid"] = "ec-1".into();
    let jwks = serde_json::json!({"keys": [jwk, key_1().jwk()]}).to_string();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("ec-1".into());
    let es256 = jsonwebtoken::encode(&header, &payload(), &key).unwrap();

    // The default allows RS256 only.
    let default = JwksVerifier::from_jwks_json(&jwks, ISSUER, AUDIENCE).unwrap();
    assert_eq!(
        default.verify(&es256).await.unwrap_err(),
        TokenError::Algorithm {
            alg: "ES256".into()
        }
    );
    let both = JwksVerifier::builder_from_jwks_json(jwks, ISSUER, AUDIENCE)
        .algorithms(["ES256", "RS256"])
        .build()
        .unwrap();
    assert_eq!(both.verify(&es256).await.unwrap().subject, "usr_1");
    assert!(both.verify(&key_1().mint(&claims()).unwrap()).await.is_ok());
    // An RS256 header naming the EC key: the key does not fit.
    let mut c = claims();
    c.token_id = Some("mismatch".into());
    let rs_on_ec =
        DevIssuer::from_pkcs8_pem("ec-1", include_str!("data/jwt/test_only_rsa_private.pem"))
            .unwrap()
            .mint(&c)
            .unwrap();
    assert_eq!(
        both.verify(&rs_on_ec).await.unwrap_err(),
        TokenError::KeyMismatch {
            kid: "ec-1".into(),
            alg: "RS256".into()
        }
    );
}
