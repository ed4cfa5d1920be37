//! PLACEHOLDER until branch `h-auth` lands: the agreed interface of the token
//! verifier (see the auth helper's `src/token.rs`), only what the HTTP layer
//! needs. On merge, take `h-auth`'s file whole.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// What a verified access token says (Scalekit claims).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifiedClaims {
    /// `sub` (`usr_…`); empty when absent (M2M).
    pub subject: String,
    /// `oid`.
    pub organization: Option<String>,
    /// `roles`.
    pub roles: Vec<String>,
    /// `permissions`.
    pub permissions: Vec<String>,
    /// `email`.
    pub email: Option<String>,
    /// `scopes` (M2M).
    pub scopes: Vec<String>,
    /// `iss`.
    pub issuer: String,
    /// `aud`.
    pub audience: Vec<String>,
    /// `exp`, Unix seconds.
    pub expires_at: u64,
    /// `jti`.
    pub token_id: Option<String>,
}

impl VerifiedClaims {
    /// The claims authorization reads.
    #[must_use]
    pub fn claims(&self) -> crate::Claims {
        crate::Claims {
            organization: self.organization.clone(),
            roles: self.roles.clone(),
            permissions: self.permissions.clone(),
        }
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not a JWT.
    #[error("the token is not a well-formed jwt")]
    Malformed,
    /// Keys unavailable.
    #[error("the signing keys are unavailable")]
    KeysUnavailable,
    /// Bad signature.
    #[error("the token's signature does not verify")]
    Signature,
    /// Expired.
    #[error("the token has expired")]
    Expired,
    /// Not yet valid.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// Wrong issuer.
    #[error("the token's issuer is not accepted")]
    Issuer,
    /// Wrong audience.
    #[error("the token's audience is not accepted")]
    Audience,
}

impl TokenError {
    /// A short, client-safe text for RFC 6750 `error_description`.
    #[must_use]
    pub fn description(&self) -> &'static str {
        match self {
            Self::Malformed => "the token is malformed",
            Self::KeysUnavailable => "the signing keys are unavailable",
            Self::Signature => "the token signature is invalid",
            Self::Expired => "the token has expired",
            Self::NotYetValid => "the token is not valid yet",
            Self::Issuer => "the token issuer is not accepted",
            Self::Audience => "the token audience is not accepted",
        }
    }

    /// True when the failure is ours.
    #[must_use]
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::KeysUnavailable)
    }
}

/// The future a [`Verifier`] returns.
pub type VerifyFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Arc<VerifiedClaims>, TokenError>> + Send + 'a>>;

/// Anything that turns a bearer token into verified claims.
pub trait Verifier: Send + Sync + 'static {
    /// Verifies `token`.
    fn verify<'a>(&'a self, token: &'a str) -> VerifyFuture<'a>;
}

impl<V: Verifier + ?Sized> Verifier for Arc<V> {
    fn verify<'a>(&'a self, token: &'a str) -> VerifyFuture<'a> {
        (**self).verify(token)
    }
}
