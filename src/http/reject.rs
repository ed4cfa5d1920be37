//! Why a request was refused, and the RFC 6750 / RFC 9457 answer for it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Response, StatusCode};

use crate::token::TokenError;

/// Why the layer refused a request. Handed to a [`Responder`], which turns it
/// into the response; [`default_response`](Self::default_response) is the
/// answer RFC 6750 §3 asks for.
///
/// | rejection | status | `WWW-Authenticate` |
/// |---|---|---|
/// | [`MissingCredentials`](Self::MissingCredentials) | 401 | `Bearer realm="…"` (no error code) |
/// | [`InvalidRequest`](Self::InvalidRequest) | 400 | `Bearer realm="…", error="invalid_request", error_description="…"` |
/// | [`InvalidToken`](Self::InvalidToken) | 401 | `Bearer realm="…", error="invalid_token", error_description="…"` |
/// | [`Unavailable`](Self::Unavailable) | 503 + `Retry-After` | none |
/// | [`Behind`](Self::Behind) | 503 + `Retry-After` | none |
/// | [`InsufficientScope`](Self::InsufficientScope) | 403 | `Bearer realm="…", error="insufficient_scope", scope="…"` |
///
/// Every default answer has an `application/problem+json` body (RFC 9457)
/// with a short `detail`; none carries the token, the claims or the
/// explanation of a denial.
#[derive(Debug)]
#[non_exhaustive]
pub enum Rejection {
    /// No `Authorization` header (or, for a requirement layer, no
    /// authorization layer in front of it).
    MissingCredentials,
    /// The `Authorization` header is not one `Bearer <token68>`.
    InvalidRequest {
        /// What is wrong, client-safe.
        description: &'static str,
    },
    /// The token did not verify.
    InvalidToken(TokenError),
    /// The token could not be verified for a reason of ours (signing keys
    /// unreachable): the client may retry.
    Unavailable {
        /// The verifier's error.
        error: TokenError,
        /// The `Retry-After` to answer with.
        retry_after: Duration,
    },
    /// The request asked for a revision (see
    /// [`AuthorizeLayer::min_revision_header`](super::AuthorizeLayer::min_revision_header))
    /// that this instance did not reach within the wait: the client may
    /// retry.
    Behind {
        /// The revision asked for.
        wanted: u64,
        /// The revision published when the wait ended.
        revision: u64,
        /// The `Retry-After` to answer with.
        retry_after: Duration,
    },
    /// The principal does not meet the route's requirement.
    InsufficientScope {
        /// The permissions the requirement names that the principal lacks,
        /// in the requirement's order (empty when only a role is missing).
        missing: Vec<String>,
        /// The requirement, as text (for logs; not sent by default).
        requirement: String,
    },
}

impl Rejection {
    /// The HTTP status of the default answer.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingCredentials | Self::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            Self::InvalidRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unavailable { .. } | Self::Behind { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::InsufficientScope { .. } => StatusCode::FORBIDDEN,
        }
    }

    /// The RFC 6750 error code (`invalid_request`, `invalid_token`,
    /// `insufficient_scope`), none for missing credentials or unavailable
    /// keys.
    #[must_use]
    pub fn error_code(&self) -> Option<&'static str> {
        match self {
            Self::MissingCredentials | Self::Unavailable { .. } | Self::Behind { .. } => None,
            Self::InvalidRequest { .. } => Some("invalid_request"),
            Self::InvalidToken(_) => Some("invalid_token"),
            Self::InsufficientScope { .. } => Some("insufficient_scope"),
        }
    }

    /// The answer RFC 6750 §3 asks for, with an `application/problem+json`
    /// body. `realm` goes into `WWW-Authenticate`.
    ///
    /// # Examples
    ///
    /// ```
    /// use rolegraph::http::Rejection;
    ///
    /// let denied = Rejection::InsufficientScope {
    ///     missing: vec!["projects:delete".into()],
    ///     requirement: "`projects:delete`".into(),
    /// };
    /// let response = denied.default_response("api");
    /// assert_eq!(response.status(), 403);
    /// assert_eq!(
    ///     response.headers()["www-authenticate"],
    ///     r#"Bearer realm="api", error="insufficient_scope", scope="projects:delete""#
    /// );
    /// ```
    #[must_use]
    pub fn default_response(&self, realm: &str) -> Response<Bytes> {
        let status = self.status();
        let mut challenge = format!("Bearer realm=\"{}\"", quoted(realm));
        let detail: String = match self {
            Self::MissingCredentials => "a bearer token is required".into(),
            Self::InvalidRequest { description } => {
                challenge_param(&mut challenge, "error", "invalid_request");
                challenge_param(&mut challenge, "error_description", description);
                (*description).into()
            }
            Self::InvalidToken(e) => {
                challenge_param(&mut challenge, "error", "invalid_token");
                challenge_param(&mut challenge, "error_description", e.description());
                e.description().into()
            }
            Self::Unavailable { error, .. } => error.description().into(),
            Self::Behind { wanted, .. } => {
                format!("revision {wanted} is not reached yet, retry later")
            }
            Self::InsufficientScope { missing, .. } => {
                challenge_param(&mut challenge, "error", "insufficient_scope");
                let scope: Vec<&str> = missing
                    .iter()
                    .map(String::as_str)
                    .filter(|s| is_scope_token(s))
                    .collect();
                if scope.is_empty() {
                    "the token does not grant access to this resource".into()
                } else {
                    let scope = scope.join(" ");
                    challenge_param(&mut challenge, "scope", &scope);
                    format!("missing permission: {scope}")
                }
            }
        };
        let body = problem(status, &detail);
        let mut response = Response::new(Bytes::from(body));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Self::Unavailable { retry_after, .. } | Self::Behind { retry_after, .. } = self {
            headers.insert(RETRY_AFTER, HeaderValue::from(retry_after.as_secs().max(1)));
        } else if let Ok(value) = HeaderValue::from_str(&challenge) {
            headers.insert(WWW_AUTHENTICATE, value);
        }
        response
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingCredentials => f.write_str("no bearer token"),
            Self::InvalidRequest { description } => {
                write!(f, "malformed authorization header: {description}")
            }
            Self::InvalidToken(e) => write!(f, "invalid token: {e}"),
            Self::Unavailable { error, .. } => write!(f, "token not verifiable now: {error}"),
            Self::Behind {
                wanted, revision, ..
            } => {
                write!(f, "revision {wanted} not reached (at {revision})")
            }
            Self::InsufficientScope { requirement, .. } => {
                write!(f, "requirement {requirement} not met")
            }
        }
    }
}

/// Turns a [`Rejection`] into the response sent to the client; set one with
/// [`AuthorizeLayer::responder`](super::AuthorizeLayer::responder).
///
/// Closures `Fn(&Rejection, &str) -> Response<Bytes>` (the rejection and the
/// realm) are responders. Answer the kinds you do not customize with
/// [`Rejection::default_response`].
///
/// # Examples
///
/// ```
/// use bytes::Bytes;
/// use http::Response;
/// use rolegraph::http::Rejection;
///
/// // Hide which permission is missing: a bare 403 instead.
/// let responder = |rejection: &Rejection, realm: &str| match rejection {
///     Rejection::InsufficientScope { .. } => {
///         let mut r = Response::new(Bytes::from_static(b"forbidden"));
///         *r.status_mut() = http::StatusCode::FORBIDDEN;
///         r
///     }
///     other => other.default_response(realm),
/// };
/// # fn assert_responder<R: rolegraph::http::Responder>(_: &R) {}
/// # assert_responder(&responder);
/// ```
pub trait Responder: Send + Sync + 'static {
    /// The response for `rejection`, in `realm`.
    fn respond(&self, rejection: &Rejection, realm: &str) -> Response<Bytes>;
}

impl<F> Responder for F
where
    F: Fn(&Rejection, &str) -> Response<Bytes> + Send + Sync + 'static,
{
    fn respond(&self, rejection: &Rejection, realm: &str) -> Response<Bytes> {
        self(rejection, realm)
    }
}

/// What the authorization and requirement layers share about answers.
#[derive(Clone)]
pub(crate) struct Answers {
    pub(crate) realm: Arc<str>,
    pub(crate) responder: Option<Arc<dyn Responder>>,
    pub(crate) retry_after: Duration,
}

impl Answers {
    pub(crate) fn new() -> Self {
        Self {
            realm: Arc::from("api"),
            responder: None,
            retry_after: Duration::from_secs(5),
        }
    }

    pub(crate) fn respond(&self, rejection: &Rejection) -> Response<Bytes> {
        match &self.responder {
            Some(r) => r.respond(rejection, &self.realm),
            None => rejection.default_response(&self.realm),
        }
    }
}

impl fmt::Debug for Answers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Answers")
            .field("realm", &self.realm)
            .field("responder", &self.responder.is_some())
            .field("retry_after", &self.retry_after)
            .finish()
    }
}

/// Appends `, name="value"` to a challenge.
fn challenge_param(challenge: &mut String, name: &str, value: &str) {
    challenge.push_str(", ");
    challenge.push_str(name);
    challenge.push_str("=\"");
    challenge.push_str(&quoted(value));
    challenge.push('"');
}

/// The contents of a quoted-string: printable ASCII, `"` and `\` escaped,
/// anything else dropped (a header value must stay valid).
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => {}
        }
    }
    out
}

/// RFC 6750 `scope-token`: `%x21 / %x23-5B / %x5D-7E`, at least one.
fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

/// An RFC 9457 problem document.
fn problem(status: StatusCode, detail: &str) -> String {
    let doc = serde_json::json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
    });
    doc.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn challenge(r: &Rejection) -> String {
        let resp = r.default_response("my \"realm\"");
        resp.headers()
            .get(WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }

    #[test]
    fn challenges_follow_rfc_6750() {
        assert_eq!(
            challenge(&Rejection::MissingCredentials),
            r#"Bearer realm="my \"realm\"""#
        );
        assert_eq!(
            challenge(&Rejection::InvalidToken(TokenError::Expired)),
            r#"Bearer realm="my \"realm\"", error="invalid_token", error_description="the access token expired""#
        );
        assert_eq!(
            challenge(&Rejection::InsufficientScope {
                missing: vec!["a:b".into(), "bad name".into(), "c".into()],
                requirement: String::new()
            }),
            r#"Bearer realm="my \"realm\"", error="insufficient_scope", scope="a:b c""#
        );
    }

    #[test]
    fn unavailable_is_a_503_with_retry_after_and_no_challenge() {
        let r = Rejection::Unavailable {
            error: TokenError::KeysUnavailable,
            retry_after: Duration::from_secs(7),
        };
        let resp = r.default_response("api");
        assert_eq!(resp.status(), 503);
        assert_eq!(resp.headers()[RETRY_AFTER], "7");
        assert!(resp.headers().get(WWW_AUTHENTICATE).is_none());
    }

    #[test]
    fn problem_body_is_rfc_9457() {
        let resp = Rejection::MissingCredentials.default_response("api");
        assert_eq!(resp.headers()[CONTENT_TYPE], "application/problem+json");
        let v: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
        assert_eq!(v["status"], 401);
        assert_eq!(v["title"], "Unauthorized");
        assert_eq!(v["type"], "about:blank");
        assert_eq!(v["detail"], "a bearer token is required");
    }
}
