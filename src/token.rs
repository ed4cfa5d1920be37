//! Access-token verification: a bearer token in, [`VerifiedClaims`] out.
//!
//! [`JwksVerifier`] verifies Scalekit (or any OIDC issuer's) access tokens
//! against the issuer's JSON Web Key Set:
//!
//! - **Algorithms are configuration**, `RS256` by default. A token whose
//!   header names another algorithm is refused before any key is looked at;
//!   `none` and the HMAC algorithms can never be allowed, so a token "signed"
//!   with the public key's bytes as an HMAC secret is refused. A key whose
//!   type or own `alg` does not fit the token's algorithm is refused too.
//! - **Key rotation without a restart.** The key set is held behind a
//!   lock-free swap (every verification reads it without locking). A token
//!   naming an unknown `kid` triggers one refetch, shared by every request
//!   waiting for it and throttled: an attacker sending random `kid`s causes at
//!   most one fetch per interval, and the other requests fail fast. A
//!   background task refreshes the set periodically; a failed fetch never
//!   drops the keys already known, so a JWKS outage does not become an
//!   authentication outage.
//! - **Claims**: `iss`, `aud` (a string or an array; any configured audience
//!   matches), `exp` (required) and `nbf` with a leeway (60 s by default),
//!   and any claims the configuration requires.
//! - **A verified-token cache**: a token seen before costs a hash and a
//!   comparison, not an RSA verification. It is bounded, keyed by a keyed
//!   hash of the token and holding the whole token, compared byte for byte
//!   on a hit (so no hash collision can authenticate another token), and an
//!   entry is never served at or after its token's `exp`.
//!
//! [`Verifier`] is a trait: bring your own, or wrap [`JwksVerifier`].
//! [`DevIssuer`] signs tokens with a local RSA key and serves its key set, for
//! tests, examples and a development mode.
//!
//! # Examples
//!
//! A verifier over a static key set (no network), checking a token minted by
//! a local issuer:
//!
//! ```
//! use rolegraph::token::{DevClaims, DevIssuer, JwksVerifier, TokenError, Verifier};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let pem = std::fs::read_to_string("tests/data/jwt/test_only_rsa_private.pem")?;
//! // `DevIssuer::generate("dev-1")` makes a fresh key; tests load a fixed one.
//! let issuer = DevIssuer::from_pkcs8_pem("dev-1", &pem)?;
//! let verifier = JwksVerifier::from_jwks_json(&issuer.jwks_json(), "https://env.example", "skc_1")?;
//!
//! let mut claims = DevClaims::new("usr_1", "https://env.example", ["skc_1"]);
//! claims.organization = Some("org_1".into());
//! claims.roles = vec!["admin".into()];
//! let token = issuer.mint(&claims)?;
//!
//! let runtime = tokio::runtime::Builder::new_current_thread().build()?;
//! let verified = runtime.block_on(verifier.verify(&token))?;
//! assert_eq!(verified.subject, "usr_1");
//! assert_eq!(verified.claims().roles, ["admin"]);
//!
//! let forged = runtime.block_on(verifier.verify("e30.e30.c2ln"));
//! assert!(matches!(forged, Err(TokenError::Malformed | TokenError::Algorithm { .. })));
//! # Ok(()) }
//! ```
//!
//! Against Scalekit, the key set is at `{environment_url}/keys` and the
//! issuer is the environment URL:
//!
//! ```no_run
//! use std::time::Duration;
//! use rolegraph::token::JwksVerifier;
//! # fn main() -> Result<(), rolegraph::token::TokenError> {
//! let verifier = JwksVerifier::for_environment("https://acme.scalekit.com", "skc_123")
//!     .leeway(Duration::from_secs(30))
//!     .build()?;
//! # let _ = verifier; Ok(()) }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

mod cache;
mod claims;
mod dev;
mod err;
mod jwks;

pub use dev::{DevClaims, DevIssuer};
pub use err::TokenError;
pub use jwks::{JwksVerifier, JwksVerifierBuilder, VerifierStats};

/// What a verified access token says (Scalekit's claims).
///
/// # Examples
///
/// ```
/// # fn get(v: &rolegraph::token::VerifiedClaims) {
/// let claims: rolegraph::Claims = v.claims(); // what authorization reads
/// # let _ = claims; }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifiedClaims {
    /// `sub` (a Scalekit user id, `usr_…`); empty when absent (M2M tokens).
    pub subject: String,
    /// `oid`, the organization.
    pub organization: Option<String>,
    /// `roles`, empty when absent.
    pub roles: Vec<String>,
    /// `permissions`, empty when absent.
    pub permissions: Vec<String>,
    /// `email`.
    pub email: Option<String>,
    /// `scopes` (M2M tokens), empty when absent.
    pub scopes: Vec<String>,
    /// `iss`.
    pub issuer: String,
    /// `aud`, a string or an array in the token.
    pub audience: Vec<String>,
    /// `exp`, seconds since the Unix epoch.
    pub expires_at: u64,
    /// `jti`.
    pub token_id: Option<String>,
}

impl VerifiedClaims {
    /// Claims with only a subject, an issuer and an expiry; set the other
    /// (public) fields as needed. For a [`Verifier`] of your own.
    ///
    /// # Examples
    ///
    /// ```
    /// use rolegraph::token::VerifiedClaims;
    ///
    /// let mut claims = VerifiedClaims::new("usr_1", "https://auth.example", 1_900_000_000);
    /// claims.organization = Some("org_1".into());
    /// claims.roles = vec!["admin".into()];
    /// assert_eq!(claims.claims().roles, ["admin"]);
    /// ```
    pub fn new(subject: impl Into<String>, issuer: impl Into<String>, expires_at: u64) -> Self {
        Self {
            subject: subject.into(),
            organization: None,
            roles: Vec::new(),
            permissions: Vec::new(),
            email: None,
            scopes: Vec::new(),
            issuer: issuer.into(),
            audience: Vec::new(),
            expires_at,
            token_id: None,
        }
    }

    /// The claims authorization reads, as [`crate::Claims`] (for
    /// [`crate::Snapshot::principal_for`] and the like).
    pub fn claims(&self) -> crate::Claims {
        crate::Claims {
            organization: self.organization.clone(),
            roles: self.roles.clone(),
            permissions: self.permissions.clone(),
        }
    }
}

/// The future [`Verifier::verify`] returns.
pub type VerifyFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Arc<VerifiedClaims>, TokenError>> + Send + 'a>>;

/// Anything that turns a bearer token into verified claims.
///
/// [`JwksVerifier`] is the one this crate provides; implement the trait to
/// bring your own (an introspection endpoint, a test double).
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use rolegraph::token::{TokenError, VerifiedClaims, Verifier, VerifyFuture};
///
/// /// Refuses everything.
/// struct Closed;
/// impl Verifier for Closed {
///     fn verify<'a>(&'a self, _token: &'a str) -> VerifyFuture<'a> {
///         Box::pin(async { Err(TokenError::Signature) })
///     }
/// }
/// let shared: Arc<dyn Verifier> = Arc::new(Closed);
/// let _also_a_verifier: &dyn Verifier = &shared;
/// ```
pub trait Verifier: Send + Sync + 'static {
    /// Verifies `token` (the bearer token, without the `Bearer ` prefix).
    ///
    /// # Errors
    ///
    /// Why the token is refused, or [`TokenError::KeysUnavailable`] when the
    /// verifier cannot decide ([`TokenError::is_unavailable`]).
    fn verify<'a>(&'a self, token: &'a str) -> VerifyFuture<'a>;

    /// The claims of `token` when the verifier has them at hand without
    /// waiting (a token it verified before and still holds), `None`
    /// otherwise. Lets the request layer decide a request without an async
    /// step or an allocation; [`verify`](Self::verify) stays the authority,
    /// so the default (`None`) is always correct. An answer must be what
    /// `verify` would answer now.
    fn verified(&self, token: &str) -> Option<Arc<VerifiedClaims>> {
        let _ = token;
        None
    }
}

impl<V: Verifier + ?Sized> Verifier for Arc<V> {
    fn verify<'a>(&'a self, token: &'a str) -> VerifyFuture<'a> {
        (**self).verify(token)
    }

    fn verified(&self, token: &str) -> Option<Arc<VerifiedClaims>> {
        (**self).verified(token)
    }
}
