//! Access-token verification (feature `jwt`):
//!
//! - `token/verify_rs256`: a cold verification (cache disabled): header,
//!   key lookup, RS256 signature, claims — the cost the cache removes;
//! - `token/cached`: the same token answered from the verified-token cache
//!   (a keyed hash of the token, one shard probe, a full comparison, one
//!   `Arc` clone); target well under 1 µs.
//!
//! The token is Scalekit-sized (3 roles, 15 permissions, about 900 bytes).
//! Futures are polled once with a no-op waker: a known key never waits, so
//! no executor cost is measured.
//!
//! ```text
//! cargo bench --features jwt --bench token -- --warm-up-time 1 --measurement-time 3
//! ```

// Benches are not library code: a broken fixture should stop the run loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use criterion::{criterion_main, Criterion};
use rolegraph::token::{DevClaims, DevIssuer, JwksVerifier, TokenError, VerifiedClaims, Verifier};

const ISSUER: &str = "https://env.example.test";
const AUDIENCE: &str = "skc_bench";

/// Polls a verification that cannot wait (its key is known) to completion.
fn verify_now(verifier: &JwksVerifier, token: &str) -> Result<Arc<VerifiedClaims>, TokenError> {
    let mut future = verifier.verify(token);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(result) => result,
        Poll::Pending => panic!("a verification with a known key waited"),
    }
}

fn token_and_issuer() -> (String, DevIssuer) {
    let pem = include_str!("../tests/data/jwt/test_only_rsa_private.pem");
    let issuer = DevIssuer::from_pkcs8_pem("bench-1", pem).unwrap();
    let mut claims = DevClaims::new("usr_123456789012345678", ISSUER, [AUDIENCE]);
    claims.organization = Some("org_123456789012345678".into());
    claims.roles = vec!["admin".into(), "project_admin".into(), "member".into()];
    claims.permissions = (0..15).map(|i| format!("resource_{i}:write")).collect();
    claims.email = Some("ada.lovelace@example.com".into());
    claims.token_id = Some("tkn_123456789012345678".into());
    (issuer.mint(&claims).unwrap(), issuer)
}

fn bench(c: &mut Criterion) {
    let (token, issuer) = token_and_issuer();
    let mut group = c.benchmark_group("token");

    let cold = JwksVerifier::builder_from_jwks_json(issuer.jwks_json(), ISSUER, AUDIENCE)
        .cache_capacity(0)
        .build()
        .unwrap();
    verify_now(&cold, &token).unwrap();
    group.bench_function("verify_rs256", |b| {
        b.iter(|| verify_now(&cold, black_box(&token)).unwrap());
    });

    let cached = JwksVerifier::from_jwks_json(&issuer.jwks_json(), ISSUER, AUDIENCE).unwrap();
    verify_now(&cached, &token).unwrap();
    group.bench_function("cached", |b| {
        b.iter(|| verify_now(&cached, black_box(&token)).unwrap());
    });
    assert_eq!(cached.stats().signature_verifications, 1);

    group.finish();
    eprintln!("token length: {} bytes", token.len());
}

// `criterion_group!` makes an undocumented `pub fn`: inside a private module
// it needs no docs.
mod group {
    criterion::criterion_group!(benches, super::bench);
}
criterion_main!(group::benches);
