//! The authorization layer: bearer token → verified claims → principal.

use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, AUTHORIZATION};
use http::{HeaderMap, Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::body::ResponseBody;
use super::reject::{Answers, Rejection, Responder};
use super::require::{RequireError, RequireLayer, Rule};
use super::{Authenticated, Mode, PrincipalSource};
use crate::check::Principal;
use crate::engine::Engine;
use crate::snapshot::Snapshot;
use crate::token::{VerifiedClaims, Verifier};

/// Authenticates every request and builds its [`Principal`]: the tower
/// [`Layer`] of [`Authorize`].
///
/// Per request: the `Authorization` header is parsed (one
/// `Bearer <token68>`), the token verified by the [`Verifier`], the engine's
/// current snapshot loaded once (lock-free), and the principal built as the
/// [`Mode`] says. The request then goes on with an [`Authenticated`] in its
/// extensions; a refused one is answered per RFC 6750 (see [`Rejection`]).
///
/// Route requirements are separate layers made by
/// [`require`](Self::require), so that one authorization layer serves a
/// whole router and each route states what it needs.
///
/// Cheap to clone (a few `Arc`s).
///
/// # Examples
///
/// ```
/// # use std::sync::Arc;
/// # use rolegraph::token::{Verifier, VerifyFuture, TokenError};
/// # struct Refuse;
/// # impl Verifier for Refuse {
/// #     fn verify<'a>(&'a self, _: &'a str) -> VerifyFuture<'a> {
/// #         Box::pin(async { Err(TokenError::Signature) })
/// #     }
/// # }
/// use rolegraph::http::{AuthorizeLayer, Mode, Rule};
/// use rolegraph::{Engine, Policy};
///
/// let mut policy = Policy::new();
/// policy.permission("projects:read");
/// policy.role("viewer").grant("projects:read");
/// let engine = Engine::new(&policy)?;
///
/// let auth = AuthorizeLayer::new(engine, Arc::new(Refuse))
///     .mode(Mode::Membership)
///     .realm("projects");
/// let read = auth.require(Rule::permission("projects:read"))?;
/// assert!(auth.require(Rule::permission("projects:reed")).is_err());
/// # let _ = read;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct AuthorizeLayer {
    shared: Arc<Shared>,
}

#[derive(Clone)]
struct Shared {
    engine: Engine,
    verifier: Arc<dyn Verifier>,
    mode: Mode,
    answers: Answers,
    min_revision: Option<MinRevision>,
}

/// Where a request asks for a minimum revision, and how long it may wait.
#[derive(Clone, Debug)]
struct MinRevision {
    header: HeaderName,
    max_wait: Duration,
}

impl AuthorizeLayer {
    /// A layer over `engine`'s current snapshots, verifying tokens with
    /// `verifier`, in [`Mode::Claims`] and realm `api`.
    #[must_use]
    pub fn new(engine: Engine, verifier: Arc<dyn Verifier>) -> Self {
        Self {
            shared: Arc::new(Shared {
                engine,
                verifier,
                mode: Mode::Claims,
                answers: Answers::new(),
                min_revision: None,
            }),
        }
    }

    fn with(mut self, f: impl FnOnce(&mut Shared)) -> Self {
        f(Arc::make_mut(&mut self.shared));
        self
    }

    /// Where the principal comes from (default [`Mode::Claims`]).
    #[must_use]
    pub fn mode(self, mode: Mode) -> Self {
        self.with(|s| s.mode = mode)
    }

    /// The realm named in `WWW-Authenticate` (default `api`).
    #[must_use]
    pub fn realm(self, realm: &str) -> Self {
        self.with(|s| s.answers.realm = Arc::from(realm))
    }

    /// The `Retry-After` answered when the verifier cannot reach its keys
    /// (default 5 s).
    #[must_use]
    pub fn retry_after(self, after: Duration) -> Self {
        self.with(|s| s.answers.retry_after = after)
    }

    /// Replaces the default RFC 6750 answers, for this layer and the
    /// requirement layers made from it afterwards.
    #[must_use]
    pub fn responder(self, responder: impl Responder) -> Self {
        self.with(|s| s.answers.responder = Some(Arc::new(responder)))
    }

    /// Lets a request ask for a minimum revision (read-your-writes, like
    /// SpiceDB's `ZedToken`): a request carrying `header` (say
    /// [`REVISION_HEADER`](super::REVISION_HEADER)) with a revision is
    /// decided on a snapshot at or after it. When the engine has not
    /// published it yet, the request waits for it up to `max_wait`, parking
    /// its task (never a runtime thread), then gets a 503 with `Retry-After`
    /// ([`Rejection::Behind`]). A value that is not one decimal revision is a
    /// 400 `invalid_request`. Requests without the header do not wait.
    ///
    /// The wait uses tokio's timer: the runtime needs its time driver
    /// (`#[tokio::main]` and axum's usual runtimes have it).
    ///
    /// Writes hand the revision back in the same header: the
    /// Scalekit webhook route (`webhook_route`) does, and so does the
    /// example app's role assignment.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use rolegraph::token::{Verifier, VerifyFuture, TokenError};
    /// # struct Refuse;
    /// # impl Verifier for Refuse {
    /// #     fn verify<'a>(&'a self, _: &'a str) -> VerifyFuture<'a> {
    /// #         Box::pin(async { Err(TokenError::Signature) })
    /// #     }
    /// # }
    /// use rolegraph::http::{AuthorizeLayer, REVISION_HEADER};
    /// use rolegraph::{Engine, Policy};
    ///
    /// let engine = Engine::new(&Policy::new())?;
    /// let auth = AuthorizeLayer::new(engine, Arc::new(Refuse))
    ///     .min_revision_header(REVISION_HEADER, Duration::from_millis(500))?;
    /// # let _ = auth;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`http::header::InvalidHeaderName`] when `header` is not a header
    /// name.
    pub fn min_revision_header(
        self,
        header: &str,
        max_wait: Duration,
    ) -> Result<Self, http::header::InvalidHeaderName> {
        let header = HeaderName::from_bytes(header.as_bytes())?;
        Ok(self.with(|s| s.min_revision = Some(MinRevision { header, max_wait })))
    }

    /// The mode in force.
    #[must_use]
    pub fn current_mode(&self) -> Mode {
        self.shared.mode
    }

    /// The engine the layer reads.
    #[must_use]
    pub fn engine(&self) -> &Engine {
        &self.shared.engine
    }

    /// A route requirement layer (for axum's `route_layer`), with this
    /// layer's realm and responder, resolved now against the engine's
    /// current snapshot.
    ///
    /// # Errors
    ///
    /// [`RequireError`] listing every permission or role the rule names that
    /// the policy does not declare.
    pub fn require(&self, rule: impl Into<Rule>) -> Result<RequireLayer, RequireError> {
        RequireLayer::resolve(
            &self.shared.engine.snapshot(),
            rule.into(),
            self.shared.answers.clone(),
        )
    }

    /// Authenticates a raw `Authorization` header set, as the service does:
    /// for frameworks that are not tower, and for tests.
    ///
    /// # Errors
    ///
    /// The [`Rejection`] the layer would answer.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Authenticated, Rejection> {
        let token = bearer(headers)?;
        let min = self.shared.min_revision(headers)?;
        self.shared.authenticate(token, min).await
    }
}

impl fmt::Debug for AuthorizeLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizeLayer")
            .field("mode", &self.shared.mode)
            .field("answers", &self.shared.answers)
            .field("min_revision", &self.shared.min_revision)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for AuthorizeLayer {
    type Service = Authorize<S>;

    fn layer(&self, inner: S) -> Authorize<S> {
        Authorize {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

impl Shared {
    /// The minimum revision the request asks for, when the layer takes one.
    fn min_revision(&self, headers: &HeaderMap) -> Result<Option<u64>, Rejection> {
        let Some(min) = &self.min_revision else {
            return Ok(None);
        };
        let mut values = headers.get_all(&min.header).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        let bad = Rejection::InvalidRequest {
            description: "the minimum revision header is not one decimal revision",
        };
        if values.next().is_some() {
            return Err(bad);
        }
        let bytes = value.as_bytes().trim_ascii();
        if bytes.is_empty() || bytes.len() > 20 || !bytes.iter().all(u8::is_ascii_digit) {
            return Err(bad);
        }
        std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .map(Some)
            .ok_or(bad)
    }

    /// Waits (bounded) until the engine has published `revision`.
    async fn reach(&self, revision: u64) -> Result<(), Rejection> {
        let max_wait = self
            .min_revision
            .as_ref()
            .map_or(Duration::ZERO, |m| m.max_wait);
        if self.engine.reach_revision(revision, max_wait).await {
            return Ok(());
        }
        Err(Rejection::Behind {
            wanted: revision,
            revision: self.engine.revision(),
            retry_after: self.answers.retry_after,
        })
    }

    async fn authenticate(
        self: &Arc<Self>,
        token: &str,
        min_revision: Option<u64>,
    ) -> Result<Authenticated, Rejection> {
        let claims = match self.verifier.verify(token).await {
            Ok(claims) => claims,
            Err(error) if error.is_unavailable() => {
                return Err(Rejection::Unavailable {
                    error,
                    retry_after: self.answers.retry_after,
                })
            }
            Err(error) => return Err(Rejection::InvalidToken(error)),
        };
        // After verification: an unauthenticated request never waits.
        if let Some(revision) = min_revision {
            self.reach(revision).await?;
        }
        Ok(self.authenticated(claims))
    }

    /// The request's principal from verified claims, on the current
    /// snapshot.
    fn authenticated(&self, claims: Arc<VerifiedClaims>) -> Authenticated {
        // INVARIANT: the one snapshot load of the request; the principal
        // keeps this snapshot, so every check of the request sees one policy
        // (at or after any revision asked for: revisions only grow).
        let snapshot = self.engine.snapshot();
        let (principal, source) = principal(&snapshot, &claims, self.mode);
        Authenticated::new(principal, claims, source)
    }

    /// The request's principal at once, when the verifier holds the token
    /// and no wait is asked for: no boxed future, no async step.
    fn at_once(&self, token: &str, min_revision: Option<u64>) -> Option<Authenticated> {
        if min_revision.is_some_and(|r| self.engine.revision() < r) {
            return None;
        }
        let claims = self.verifier.verified(token)?;
        Some(self.authenticated(claims))
    }
}

/// The principal of verified claims, and what decided it.
pub(crate) fn principal(
    snapshot: &Snapshot,
    claims: &VerifiedClaims,
    mode: Mode,
) -> (Principal, PrincipalSource) {
    let from_claims = || {
        snapshot
            .principal(claims.organization.as_deref(), &claims.roles)
            .with_permissions(&claims.permissions)
    };
    let (Mode::Membership, Some(org)) = (mode, claims.organization.as_deref()) else {
        return (from_claims(), PrincipalSource::Claims);
    };
    if !claims.subject.is_empty() && snapshot.membership(org, &claims.subject).is_some() {
        return (
            snapshot.user_principal(org, &claims.subject),
            PrincipalSource::Subject,
        );
    }
    if let Some(email) = claims.email.as_deref() {
        // Memberships keyed by email hold it trimmed and lower-cased.
        let email = email.trim().to_lowercase();
        if snapshot.membership(org, &email).is_some() {
            return (snapshot.user_principal(org, &email), PrincipalSource::Email);
        }
    }
    (from_claims(), PrincipalSource::Claims)
}

/// The token of the one `Authorization: Bearer <token68>` header.
pub(crate) fn bearer(headers: &HeaderMap) -> Result<&str, Rejection> {
    let (value, range) = bearer_range(headers)?;
    token_at(value, range)
}

/// The one `Authorization` header and where its token68 lies in it.
///
/// # Complexity
///
/// Two passes over the header, both vectorized: an ASCII check and the
/// token68 check.
fn bearer_range(headers: &HeaderMap) -> Result<(&[u8], Range<usize>), Rejection> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(Rejection::MissingCredentials);
    };
    let invalid = |description| Err(Rejection::InvalidRequest { description });
    if values.next().is_some() {
        return invalid("more than one authorization header");
    }
    let bytes = value.as_bytes();
    if !bytes.is_ascii() {
        return invalid("the authorization header is not ascii");
    }
    let start = bytes.len() - bytes.trim_ascii_start().len();
    let end = bytes.trim_ascii_end().len();
    let trimmed = bytes.get(start..end).unwrap_or_default();
    let Some(space) = trimmed.iter().position(|&b| b == b' ') else {
        return invalid("the authorization header is not `Bearer <token>`");
    };
    let (scheme, rest) = trimmed.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return invalid("the authorization scheme is not `Bearer`");
    }
    let token = rest.trim_ascii_start();
    if !is_token68(token) {
        return invalid("the bearer token is not a token68");
    }
    Ok((bytes, end - token.len()..end))
}

/// The token at `range` of a header that [`bearer_range`] accepted.
fn token_at(value: &[u8], range: Range<usize>) -> Result<&str, Rejection> {
    value
        .get(range)
        .and_then(|t| std::str::from_utf8(t).ok())
        .ok_or(Rejection::InvalidRequest {
            description: "the bearer token is not a token68",
        })
}

/// RFC 7235 `token68`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
///
/// # Complexity
///
/// One pass without early exit, written as range tests so that it
/// vectorizes: tokens are long (a Scalekit access token is most of a
/// kilobyte) and this runs on every request.
fn is_token68(s: &[u8]) -> bool {
    let padding = s.iter().rev().take_while(|&&b| b == b'=').count();
    let body = s.get(..s.len() - padding).unwrap_or_default();
    !body.is_empty() && body.iter().fold(true, |ok, &b| ok & is_token68_byte(b))
}

#[inline]
fn is_token68_byte(b: u8) -> bool {
    let letter = (b | 0x20).wrapping_sub(b'a') < 26;
    let digit = b.wrapping_sub(b'0') < 10;
    // `+`, `-`, `.`, `/` are 0x2B, 0x2D, 0x2E, 0x2F; then `_` and `~`.
    let sign = b.wrapping_sub(b'+') < 5 && b != b',';
    letter | digit | sign | (b == b'_') | (b == b'~')
}

/// The service of [`AuthorizeLayer`]: authenticates, then calls `S` with an
/// [`Authenticated`] in the request's extensions.
#[derive(Clone)]
pub struct Authorize<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: fmt::Debug> fmt::Debug for Authorize<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorize")
            .field("inner", &self.inner)
            .field("mode", &self.shared.mode)
            .finish_non_exhaustive()
    }
}

type AuthFuture<B> = Pin<Box<dyn Future<Output = Result<Request<B>, Rejection>> + Send>>;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Authorize<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ReqBody: Send + 'static,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let parsed = bearer_range(req.headers())
            .and_then(|(_, range)| Ok((range, self.shared.min_revision(req.headers())?)));
        let (range, min_revision) = match parsed {
            Ok(parsed) => parsed,
            Err(rejection) => {
                super::log_rejection(&rejection);
                return ResponseFuture::done(self.shared.answers.respond(&rejection));
            }
        };
        // A token the verifier holds: decided now, the inner service called
        // right away (it was driven to readiness by `poll_ready`).
        let value = req
            .headers()
            .get(AUTHORIZATION)
            .map_or(&[][..], |v| v.as_bytes());
        let ready = token_at(value, range.clone())
            .ok()
            .and_then(|token| self.shared.at_once(token, min_revision));
        if let Some(authenticated) = ready {
            req.extensions_mut().insert(authenticated);
            return ResponseFuture {
                state: State::Calling {
                    future: self.inner.call(req),
                },
            };
        }
        // The service that was driven to readiness goes into the future; a
        // clone stays for the next call (tower's `mem::replace` pattern).
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let shared = Arc::clone(&self.shared);
        // The request moves into the one boxed future: the token is read
        // where it lies, never copied.
        let auth: AuthFuture<ReqBody> = Box::pin(async move {
            let authenticated = {
                let value = req
                    .headers()
                    .get(AUTHORIZATION)
                    .map_or(&[][..], |v| v.as_bytes());
                let token = token_at(value, range)?;
                shared.authenticate(token, min_revision).await?
            };
            req.extensions_mut().insert(authenticated);
            Ok(req)
        });
        ResponseFuture {
            state: State::Authenticating {
                auth,
                inner: Some(inner),
                shared: Arc::clone(&self.shared),
            },
        }
    }
}

pin_project! {
    /// The future of [`Authorize`]: verification, then the inner service.
    pub struct ResponseFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        state: State<S, ReqBody>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        Authenticating {
            auth: AuthFuture<ReqBody>,
            inner: Option<S>,
            shared: Arc<Shared>,
        },
        Calling {
            #[pin]
            future: S::Future,
        },
        Done {
            response: Option<Response<Bytes>>,
        },
    }
}

impl<S, ReqBody> ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    fn done(response: Response<Bytes>) -> Self {
        Self {
            state: State::Done {
                response: Some(response),
            },
        }
    }
}

impl<S, ReqBody> fmt::Debug for ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Authenticating { .. } => "authenticating",
            State::Calling { .. } => "calling",
            State::Done { .. } => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<S, ReqBody, ResBody> Future for ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut this = self.as_mut().project();
            match this.state.as_mut().project() {
                StateProj::Authenticating {
                    auth,
                    inner,
                    shared,
                } => {
                    let result = ready!(auth.as_mut().poll(cx));
                    match (result, inner.take()) {
                        (Ok(req), Some(mut inner)) => {
                            let future = inner.call(req);
                            this.state.set(State::Calling { future });
                        }
                        (Err(rejection), _) => {
                            super::log_rejection(&rejection);
                            let response = shared.answers.respond(&rejection);
                            this.state.set(State::Done {
                                response: Some(response),
                            });
                        }
                        (Ok(_), None) => polled_after_completion(),
                    }
                }
                StateProj::Calling { future } => {
                    let response = ready!(future.poll(cx))?;
                    return Poll::Ready(Ok(response.map(ResponseBody::inner)));
                }
                StateProj::Done { response } => {
                    let Some(response) = response.take() else {
                        polled_after_completion()
                    };
                    return Poll::Ready(Ok(response.map(ResponseBody::rejection)));
                }
            }
        }
    }
}

#[expect(
    clippy::panic,
    reason = "the Future contract: polling after completion may panic"
)]
pub(crate) fn polled_after_completion() -> ! {
    panic!("rolegraph::http::ResponseFuture polled after completion")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    fn parse(values: &[&[u8]]) -> Result<String, String> {
        bearer(&headers(values))
            .map(str::to_owned)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn token68_bytes_are_exactly_the_grammar() {
        for b in 0..=255u8 {
            let expected = b.is_ascii_alphanumeric() || b"-._~+/".contains(&b);
            assert_eq!(is_token68_byte(b), expected, "byte {b:#04x}");
        }
    }

    #[test]
    fn bearer_header_grammar() {
        assert_eq!(
            parse(&[b"Bearer abc.DEF-_~+/=="]).unwrap(),
            "abc.DEF-_~+/=="
        );
        assert_eq!(parse(&[b"bearer  abc"]).unwrap(), "abc");
        assert_eq!(parse(&[]).unwrap_err(), "no bearer token");
        for bad in [
            &b"Bearer"[..],
            b"Bearer ",
            b"Basic abc",
            b"Bearer a b",
            b"Bearer a=b",
            b"Bearer ===",
            b"Bearer \xc3\xa9t\xc3\xa9",
            b"abc",
        ] {
            let e = parse(&[bad]).unwrap_err();
            assert!(e.starts_with("malformed"), "{bad:?}: {e}");
        }
        assert!(parse(&[b"Bearer a", b"Bearer a"])
            .unwrap_err()
            .contains("more than one"));
    }
}
