//! Why an access token was refused, or a verifier could not be built.

/// Why a token was refused (or a verifier, a key or an issuer could not be
/// built).
///
/// Messages are for logs and operators: they may name a claim, a key id or
/// an algorithm, never token bytes. What a client may see is
/// [`TokenError::description`].
///
/// # Examples
///
/// ```
/// use rolegraph::token::TokenError;
///
/// let e = TokenError::Algorithm { alg: "none".into() };
/// assert_eq!(e.to_string(), "access token algorithm `none` is not allowed");
/// assert_eq!(e.description(), "the access token is invalid");
/// assert!(!e.is_unavailable());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not a compact JWS: not three base64url parts, a header or payload
    /// that is not a JSON object, an unsupported `crit` header, or too long.
    #[error("access token is not a well-formed jwt")]
    Malformed,
    /// The header's `alg` is not one of the verifier's allowed algorithms
    /// (`none` and the HMAC algorithms never are).
    #[error("access token algorithm `{alg}` is not allowed")]
    Algorithm {
        /// The header's `alg`.
        alg: String,
    },
    /// The key the header names cannot verify the header's algorithm (an
    /// RSA key for `ES256`, or a key whose own `alg` differs).
    #[error("signing key `{kid}` does not fit algorithm `{alg}`")]
    KeyMismatch {
        /// The header's `kid`.
        kid: String,
        /// The header's `alg`.
        alg: String,
    },
    /// No key with the header's `kid` (empty when the header has none), even
    /// after refetching the key set (or while refetching is throttled).
    #[error("signing key `{kid}` is unknown")]
    UnknownKey {
        /// The header's `kid`.
        kid: String,
    },
    /// The key set could not be fetched and no earlier copy holds the key:
    /// the failure is the server's, not the client's.
    #[error("signing keys are unavailable: the key set could not be fetched")]
    KeysUnavailable,
    /// The signature does not verify with the named key.
    #[error("access token signature is invalid")]
    Signature,
    /// `exp` is in the past (beyond the leeway).
    #[error("access token is expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("access token is not valid yet")]
    NotYetValid,
    /// `iss` is missing or not the configured issuer.
    #[error("access token issuer is not trusted")]
    Issuer,
    /// `aud` is missing or names none of the configured audiences.
    #[error("access token audience does not match")]
    Audience,
    /// A claim is missing, or present with the wrong type.
    #[error("claim `{claim}` is {problem}")]
    Claims {
        /// The claim's name.
        claim: String,
        /// `missing`, or what is wrong with it.
        problem: String,
    },
    /// A signing key or key set could not be read or generated.
    #[error("signing key is unusable: {reason}")]
    Key {
        /// What went wrong.
        reason: String,
    },
    /// The verifier's configuration is invalid (an HMAC algorithm, an empty
    /// issuer, a key set URL that is not http(s), …).
    #[error("token verifier configuration is invalid: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
}

impl TokenError {
    /// A short, client-safe text for RFC 6750's `error_description`: no
    /// secrets, no token bytes, no key ids.
    ///
    /// # Examples
    ///
    /// ```
    /// use rolegraph::token::TokenError;
    ///
    /// assert_eq!(TokenError::Expired.description(), "the access token expired");
    /// ```
    pub fn description(&self) -> &'static str {
        match self {
            TokenError::Expired => "the access token expired",
            TokenError::NotYetValid => "the access token is not valid yet",
            TokenError::Issuer => "the access token has the wrong issuer",
            TokenError::Audience => "the access token has the wrong audience",
            TokenError::UnknownKey { .. } => "the access token is signed with an unknown key",
            TokenError::Signature => "the access token signature is invalid",
            TokenError::Claims { .. } => "the access token lacks a required claim",
            TokenError::KeysUnavailable => "the signing keys are temporarily unavailable",
            TokenError::Key { .. } | TokenError::Config { .. } => {
                "the token verifier is misconfigured"
            }
            TokenError::Malformed
            | TokenError::Algorithm { .. }
            | TokenError::KeyMismatch { .. } => "the access token is invalid",
        }
    }

    /// True when the failure is the server's, not the token's: the key set
    /// could not be fetched and no cached key could decide (a middleware may
    /// answer 503 instead of 401), or the verifier is misconfigured.
    ///
    /// # Examples
    ///
    /// ```
    /// use rolegraph::token::TokenError;
    ///
    /// assert!(TokenError::KeysUnavailable.is_unavailable());
    /// assert!(!TokenError::Signature.is_unavailable());
    /// ```
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            TokenError::KeysUnavailable | TokenError::Key { .. } | TokenError::Config { .. }
        )
    }

    pub(crate) fn key(reason: impl std::fmt::Display) -> Self {
        TokenError::Key {
            reason: crate::text::Lowercase(&reason).to_string(),
        }
    }

    pub(crate) fn config(reason: impl Into<String>) -> Self {
        TokenError::Config {
            reason: reason.into(),
        }
    }
}
