//! A local RSA issuer for development and tests.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::traits::PublicKeyParts;
use serde::Serialize;

use super::TokenError;

/// A local RSA issuer for development and tests: signs `RS256` tokens and
/// serves the matching key set.
///
/// Never a production issuer: its key lives in memory (or in a file you
/// gave it), and nothing rotates it.
///
/// # Examples
///
/// ```
/// use rolegraph::token::{DevClaims, DevIssuer};
/// # fn main() -> Result<(), rolegraph::token::TokenError> {
/// let issuer = DevIssuer::generate("dev-1")?; // a fresh 2048-bit key
/// assert!(issuer.jwks_json().contains(r#""kid":"dev-1""#));
/// let token = issuer.mint(&DevClaims::new("usr_1", "http://localhost", ["dev"]))?;
/// assert_eq!(token.split('.').count(), 3);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct DevIssuer {
    kid: String,
    key: EncodingKey,
    /// The public modulus and exponent, base64url.
    n: String,
    e: String,
}

impl fmt::Debug for DevIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The private key stays out of logs.
        f.debug_struct("DevIssuer")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl DevIssuer {
    /// An issuer with a fresh 2048-bit RSA key from the operating system's
    /// random source.
    ///
    /// # Errors
    ///
    /// [`TokenError::Key`] when key generation fails (no system randomness).
    pub fn generate(kid: &str) -> Result<Self, TokenError> {
        let private =
            rsa::PrivateKey::new(&mut getrandom::SysRng, 2048).map_err(TokenError::key)?;
        let der = private.to_pkcs1_der().map_err(TokenError::key)?;
        Ok(Self::from_parts(kid, &private, der.as_bytes()))
    }

    /// An issuer signing with an RSA private key in PEM (PKCS#8
    /// `BEGIN PRIVATE KEY`, or PKCS#1 `BEGIN RSA PRIVATE KEY`).
    ///
    /// # Errors
    ///
    /// [`TokenError::Key`] when `pem` is not an RSA private key.
    pub fn from_pkcs8_pem(kid: &str, pem: &str) -> Result<Self, TokenError> {
        let key = EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(TokenError::key)?;
        let private = rsa::PrivateKey::from_pkcs1_der(key.as_bytes()).map_err(TokenError::key)?;
        Ok(Self {
            kid: kid.to_owned(),
            n: URL_SAFE_NO_PAD.encode(private.n_bytes()),
            e: URL_SAFE_NO_PAD.encode(private.e_bytes()),
            key,
        })
    }

    fn from_parts(kid: &str, private: &rsa::PrivateKey, pkcs1_der: &[u8]) -> Self {
        Self {
            kid: kid.to_owned(),
            key: EncodingKey::from_rsa_der(pkcs1_der),
            n: URL_SAFE_NO_PAD.encode(private.n_bytes()),
            e: URL_SAFE_NO_PAD.encode(private.e_bytes()),
        }
    }

    /// The key id tokens name in their header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The key set to serve (`{"keys":[{kty,n,e,kid,alg,use}]}`).
    pub fn jwks_json(&self) -> String {
        serde_json::json!({ "keys": [self.jwk()] }).to_string()
    }

    /// This issuer's public key as one JWK object, to combine several
    /// issuers' keys into one key set.
    ///
    /// # Examples
    ///
    /// ```
    /// # use rolegraph::token::DevIssuer;
    /// # fn main() -> Result<(), rolegraph::token::TokenError> {
    /// let (old, new) = (DevIssuer::generate("k1")?, DevIssuer::generate("k2")?);
    /// let both = serde_json::json!({ "keys": [old.jwk(), new.jwk()] }).to_string();
    /// # let _ = both; Ok(()) }
    /// ```
    pub fn jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "RSA",
            "n": self.n,
            "e": self.e,
            "kid": self.kid,
            "alg": "RS256",
            "use": "sig",
        })
    }

    /// Signs `claims` as an `RS256` JWT naming this issuer's `kid`.
    ///
    /// # Errors
    ///
    /// [`TokenError::Key`] when signing fails.
    pub fn mint(&self, claims: &DevClaims) -> Result<String, TokenError> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &Payload::from(claims), &self.key).map_err(TokenError::key)
    }
}

/// The claims a [`DevIssuer`] signs, in Scalekit's shape.
///
/// # Examples
///
/// ```
/// use rolegraph::token::DevClaims;
///
/// let mut claims = DevClaims::new("usr_1", "http://localhost:8080", ["skc_1"]);
/// claims.organization = Some("org_1".into());
/// claims.roles = vec!["admin".into()];
/// assert!(claims.expires_at > claims.issued_at);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DevClaims {
    /// `sub`; left out of the token when empty.
    pub subject: String,
    /// `oid`.
    pub organization: Option<String>,
    /// `roles`.
    pub roles: Vec<String>,
    /// `permissions`.
    pub permissions: Vec<String>,
    /// `email`.
    pub email: Option<String>,
    /// `scopes`; left out when empty.
    pub scopes: Vec<String>,
    /// `iss`.
    pub issuer: String,
    /// `aud`: one audience is written as a string, several as an array, none
    /// leaves the claim out.
    pub audience: Vec<String>,
    /// `exp`, seconds since the Unix epoch.
    pub expires_at: u64,
    /// `nbf`.
    pub not_before: Option<u64>,
    /// `iat`.
    pub issued_at: u64,
    /// `jti`.
    pub token_id: Option<String>,
}

impl DevClaims {
    /// Claims for `subject`, issued now by `issuer` for `audience`, valid for
    /// one hour.
    pub fn new<A: Into<String>>(
        subject: impl Into<String>,
        issuer: impl Into<String>,
        audience: impl IntoIterator<Item = A>,
    ) -> Self {
        let now = super::jwks::unix_now();
        Self {
            subject: subject.into(),
            issuer: issuer.into(),
            audience: audience.into_iter().map(Into::into).collect(),
            issued_at: now,
            expires_at: now.saturating_add(3600),
            ..Self::default()
        }
    }
}

/// The JSON payload of a [`DevClaims`].
#[derive(Serialize)]
struct Payload<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    sub: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    oid: Option<&'a str>,
    roles: &'a [String],
    permissions: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    scopes: &'a [String],
    iss: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<serde_json::Value>,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nbf: Option<u64>,
    iat: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    jti: Option<&'a str>,
}

impl<'a> From<&'a DevClaims> for Payload<'a> {
    fn from(c: &'a DevClaims) -> Self {
        let aud = match c.audience.as_slice() {
            [] => None,
            [one] => Some(serde_json::Value::from(one.as_str())),
            many => Some(serde_json::Value::from(many.to_vec())),
        };
        Payload {
            sub: &c.subject,
            oid: c.organization.as_deref(),
            roles: &c.roles,
            permissions: &c.permissions,
            email: c.email.as_deref(),
            scopes: &c.scopes,
            iss: &c.issuer,
            aud,
            exp: c.expires_at,
            nbf: c.not_before,
            iat: c.issued_at,
            jti: c.token_id.as_deref(),
        }
    }
}
