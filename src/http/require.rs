//! Route requirements: a rule of names, resolved at start-up, re-resolved
//! by name whenever the engine publishes a recompiled policy.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::body::ResponseBody;
use super::reject::{Answers, Rejection};
use super::Authenticated;
use crate::check::{Principal, Requirement};
use crate::ids::PermissionId;
use crate::snapshot::{LookupError, Snapshot};

/// What a route requires, by name: permissions, roles, and their
/// combinations. Turned into a layer by
/// [`AuthorizeLayer::require`](super::AuthorizeLayer::require), which
/// resolves it (an undeclared name fails there, at start-up).
///
/// A `&str` is a [`Rule::permission`].
///
/// # Examples
///
/// Scalekit's documented admin check: role `admin`, or permission
/// `users.write`, or permission `roles.assign`.
///
/// ```
/// use rolegraph::http::Rule;
///
/// let admin = Rule::role("admin").or(Rule::any_of(["users.write", "roles.assign"]));
/// assert_eq!(
///     admin.to_string(),
///     "(role `admin` or a role extending it) or (any of `users.write`, `roles.assign`)"
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule(Spec);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Spec {
    Permission(Box<str>),
    Any(Vec<Box<str>>),
    All(Vec<Box<str>>),
    Role(Box<str>),
    Or(Vec<Spec>),
    And(Vec<Spec>),
}

impl Rule {
    /// One permission.
    #[must_use]
    pub fn permission(name: &str) -> Self {
        Self(Spec::Permission(name.into()))
    }

    /// At least one of the permissions.
    #[must_use]
    pub fn any_of<I>(names: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        Self(Spec::Any(
            names.into_iter().map(|n| n.as_ref().into()).collect(),
        ))
    }

    /// Every one of the permissions.
    #[must_use]
    pub fn all_of<I>(names: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        Self(Spec::All(
            names.into_iter().map(|n| n.as_ref().into()).collect(),
        ))
    }

    /// The role `name` (in any scope) or a role extending it.
    #[must_use]
    pub fn role(name: &str) -> Self {
        Self(Spec::Role(name.into()))
    }

    /// Met when either rule is met.
    #[must_use]
    pub fn or(self, other: impl Into<Rule>) -> Self {
        Self(match (self.0, other.into().0) {
            (Spec::Or(mut a), Spec::Or(b)) => {
                a.extend(b);
                Spec::Or(a)
            }
            (Spec::Or(mut a), b) => {
                a.push(b);
                Spec::Or(a)
            }
            (a, b) => Spec::Or(vec![a, b]),
        })
    }

    /// Met when both rules are met.
    #[must_use]
    pub fn and(self, other: impl Into<Rule>) -> Self {
        Self(match (self.0, other.into().0) {
            (Spec::And(mut a), Spec::And(b)) => {
                a.extend(b);
                Spec::And(a)
            }
            (Spec::And(mut a), b) => {
                a.push(b);
                Spec::And(a)
            }
            (a, b) => Spec::And(vec![a, b]),
        })
    }

    /// Resolves the rule against `snapshot`, reporting every name that does
    /// not resolve (sorted, deduplicated).
    ///
    /// # Errors
    ///
    /// Every [`LookupError`] of the rule's names.
    pub fn resolve(&self, snapshot: &Snapshot) -> Result<Requirement, Vec<LookupError>> {
        let mut problems = Vec::new();
        let resolved = self.0.resolve(snapshot, &mut problems);
        match resolved {
            Some(r) if problems.is_empty() => Ok(r),
            _ => {
                problems.sort_by_key(ToString::to_string);
                problems.dedup();
                Err(problems)
            }
        }
    }

    /// The permission names the rule mentions, in order.
    fn permissions(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.0.permissions(&mut out);
        out
    }
}

impl From<&str> for Rule {
    fn from(name: &str) -> Self {
        Self::permission(name)
    }
}

impl Spec {
    fn resolve(&self, snapshot: &Snapshot, problems: &mut Vec<LookupError>) -> Option<Requirement> {
        let mut keep = |r: Result<Requirement, LookupError>| match r {
            Ok(r) => Some(r),
            Err(e) => {
                problems.push(e);
                None
            }
        };
        match self {
            Self::Permission(name) => keep(Requirement::permission(snapshot, name)),
            // Check each name so that every undeclared one is reported.
            Self::Any(names) | Self::All(names) => {
                let known = names
                    .iter()
                    .filter(|n| keep(Requirement::permission(snapshot, n)).is_some())
                    .count();
                if known < names.len() {
                    return None;
                }
                keep(if matches!(self, Self::Any(_)) {
                    Requirement::any_of(snapshot, names)
                } else {
                    Requirement::all_of(snapshot, names)
                })
            }
            Self::Role(name) => keep(Requirement::role(snapshot, name)),
            Self::Or(specs) | Self::And(specs) => {
                let parts: Vec<Option<Requirement>> = specs
                    .iter()
                    .map(|s| s.resolve(snapshot, problems))
                    .collect();
                let mut parts = parts.into_iter().collect::<Option<Vec<_>>>()?.into_iter();
                let first = parts.next()?;
                Some(parts.fold(first, |acc, r| {
                    if matches!(self, Self::Or(_)) {
                        acc.or(r)
                    } else {
                        acc.and(r)
                    }
                }))
            }
        }
    }

    fn permissions<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Self::Permission(n) => out.push(n),
            Self::Any(ns) | Self::All(ns) => out.extend(ns.iter().map(|n| &**n)),
            Self::Role(_) => {}
            Self::Or(specs) | Self::And(specs) => specs.iter().for_each(|s| s.permissions(out)),
        }
    }
}

impl fmt::Display for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::check::{fmt_joined as join, fmt_list as list};
        match self {
            Self::Permission(n) => write!(f, "`{n}`"),
            Self::Any(ns) => list(f, "any", ns),
            Self::All(ns) => list(f, "all", ns),
            Self::Role(n) => write!(f, "role `{n}` or a role extending it"),
            Self::Or(specs) => join(f, " or ", specs),
            Self::And(specs) => join(f, " and ", specs),
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A route requirement names something the policy does not declare.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("route requirement {rule} does not resolve: {}", join_problems(.problems))]
#[non_exhaustive]
pub struct RequireError {
    /// The requirement, as text.
    pub rule: String,
    /// Every name that did not resolve, sorted by message.
    pub problems: Vec<LookupError>,
}

fn join_problems(problems: &[LookupError]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The rule and its resolution for the compiled policy that last asked.
struct Route {
    rule: Rule,
    text: Box<str>,
    /// The permissions the rule names, in order, each once.
    names: Box<[Box<str>]>,
    /// The default 403 when the principal holds none of `names` (always the
    /// case for a one-permission or a role rule), built once: a denial then
    /// costs two reference-count increments, not a `format!` and a JSON
    /// encoding.
    denied: Prebuilt,
    resolved: ArcSwap<Resolved>,
}

struct Resolved {
    /// The compiled policy (`Core::id`) this was resolved against: memberships
    /// change without recompiling, so this changes only with the policy.
    core: u64,
    requirement: Option<Requirement>,
    /// The ids of `Route::names` in that policy (`None`: not declared).
    ids: Box<[Option<PermissionId>]>,
}

/// A default answer's parts, shared by every request that gets it.
struct Prebuilt {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Prebuilt {
    fn of(response: Response<Bytes>) -> Self {
        let (parts, body) = response.into_parts();
        Self {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    fn response(&self) -> Response<Bytes> {
        // `HeaderValue`s and `Bytes` built from owned data are shared, so
        // the clones copy no header or body bytes.
        let mut response = Response::new(self.body.clone());
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers.clone();
        response
    }
}

impl Route {
    /// Whether `principal` meets the rule, re-resolving the rule by name when
    /// the principal's snapshot holds another compiled policy than the last
    /// one asked about. A rule that no longer resolves denies (and is
    /// logged): a deleted permission is not met, a re-created one is met
    /// again, whatever ids it gets.
    fn allows(&self, principal: &Principal) -> bool {
        let snapshot = principal.snapshot();
        let core = snapshot.data().id();
        let current = self.resolved.load();
        if current.core == core {
            return current
                .requirement
                .as_ref()
                .is_some_and(|r| principal.satisfies(r));
        }
        drop(current);
        let resolved = Arc::new(self.resolve(snapshot));
        self.resolved.store(Arc::clone(&resolved));
        resolved
            .requirement
            .as_ref()
            .is_some_and(|r| principal.satisfies(r))
    }

    fn resolve(&self, snapshot: &Snapshot) -> Resolved {
        let requirement = match self.rule.resolve(snapshot) {
            Ok(r) => Some(r),
            Err(_problems) => {
                super::log!(
                    warn,
                    rule = %self.text,
                    revision = snapshot.revision(),
                    problems = %join_problems(&_problems),
                    "rolegraph route requirement no longer resolves: denying"
                );
                None
            }
        };
        Resolved {
            core: snapshot.data().id(),
            requirement,
            ids: ids(snapshot, &self.names),
        }
    }

    /// Whether `principal` holds each of the rule's permissions, in the
    /// order of `names`.
    fn held<'a>(&self, principal: &'a Principal) -> impl Iterator<Item = bool> + 'a {
        let snapshot = principal.snapshot();
        let resolved = self.resolved.load_full();
        let ids = if resolved.core == snapshot.data().id() {
            resolved.ids.clone()
        } else {
            ids(snapshot, &self.names)
        };
        ids.into_vec()
            .into_iter()
            .map(move |id| id.is_some_and(|id| principal.has(id)))
    }

    /// The permissions the rule names that `principal` lacks.
    fn missing(&self, principal: &Principal) -> Vec<String> {
        self.names
            .iter()
            .zip(self.held(principal))
            .filter(|(_, held)| !held)
            .map(|(name, _)| name.to_string())
            .collect()
    }

    /// Whether `principal` lacks every permission the rule names (so the
    /// prebuilt answer is the right one), without allocating when the rule's
    /// resolution is current.
    fn lacks_all(&self, principal: &Principal) -> bool {
        let snapshot = principal.snapshot();
        let resolved = self.resolved.load();
        if resolved.core == snapshot.data().id() {
            return !resolved
                .ids
                .iter()
                .any(|id| id.is_some_and(|id| principal.has(id)));
        }
        drop(resolved);
        !self.held(principal).any(|held| held)
    }
}

/// The ids of `names` in `snapshot`.
fn ids(snapshot: &Snapshot, names: &[Box<str>]) -> Box<[Option<PermissionId>]> {
    names.iter().map(|n| snapshot.permission_id(n)).collect()
}

/// Whether denials are logged (tracing at debug), which needs the
/// [`Rejection`].
fn logging_denials() -> bool {
    #[cfg(feature = "tracing")]
    {
        ::tracing::enabled!(::tracing::Level::DEBUG)
    }
    #[cfg(not(feature = "tracing"))]
    {
        false
    }
}

/// A route requirement: the tower [`Layer`] of [`Require`]. Made by
/// [`AuthorizeLayer::require`](super::AuthorizeLayer::require); put it under
/// the authorization layer (axum: `route_layer`).
///
/// The rule is resolved by name against each compiled policy the engine
/// publishes (once per policy, not per request), so it stays right across
/// swaps — including a permission deleted and declared again. A rule that no
/// longer resolves denies every request and logs a warning (feature
/// `tracing`).
///
/// Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct RequireLayer {
    route: Arc<Route>,
    answers: Answers,
}

impl RequireLayer {
    pub(crate) fn resolve(
        snapshot: &Snapshot,
        rule: Rule,
        answers: Answers,
    ) -> Result<Self, RequireError> {
        let requirement = rule.resolve(snapshot).map_err(|problems| RequireError {
            rule: rule.to_string(),
            problems,
        })?;
        let mut names: Vec<Box<str>> = Vec::new();
        for name in rule.permissions() {
            if !names.iter().any(|n| **n == *name) {
                names.push(name.into());
            }
        }
        let text = rule.to_string();
        let denied = Prebuilt::of(
            Rejection::InsufficientScope {
                missing: names.iter().map(ToString::to_string).collect(),
                requirement: text.clone(),
            }
            .default_response(&answers.realm),
        );
        Ok(Self {
            route: Arc::new(Route {
                text: text.into(),
                resolved: ArcSwap::from_pointee(Resolved {
                    core: snapshot.data().id(),
                    requirement: Some(requirement),
                    ids: ids(snapshot, &names),
                }),
                rule,
                names: names.into(),
                denied,
            }),
            answers,
        })
    }

    /// The rule, as written.
    #[must_use]
    pub fn rule(&self) -> &Rule {
        &self.route.rule
    }

    /// Whether an authenticated request meets the requirement (what the
    /// service decides, without a service).
    #[must_use]
    pub fn allows(&self, authenticated: &Authenticated) -> bool {
        self.route.allows(authenticated.principal())
    }

    /// `None` when the request may go on, else the answer.
    fn check(&self, authenticated: Option<&Authenticated>) -> Option<Response<Bytes>> {
        let Some(auth) = authenticated else {
            return Some(self.refuse(&Rejection::MissingCredentials));
        };
        if self.route.allows(auth.principal()) {
            return None;
        }
        // The common denial (none of the rule's permissions held, default
        // answers, nothing logged) is answered from the prebuilt parts.
        if self.answers.responder.is_none()
            && !logging_denials()
            && self.route.lacks_all(auth.principal())
        {
            return Some(self.route.denied.response());
        }
        super::log_denial(auth, &self.route.rule, &self.route.text);
        Some(self.refuse(&Rejection::InsufficientScope {
            missing: self.route.missing(auth.principal()),
            requirement: self.route.text.to_string(),
        }))
    }

    fn refuse(&self, rejection: &Rejection) -> Response<Bytes> {
        super::log_rejection(rejection);
        self.answers.respond(rejection)
    }
}

impl fmt::Debug for RequireLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireLayer")
            .field("rule", &self.route.text)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for RequireLayer {
    type Service = Require<S>;

    fn layer(&self, inner: S) -> Require<S> {
        Require {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`RequireLayer`]: calls `S` when the request's
/// [`Authenticated`] meets the rule, answers 403 otherwise (401 when no
/// authorization layer ran before it).
#[derive(Clone, Debug)]
pub struct Require<S> {
    inner: S,
    layer: RequireLayer,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Require<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = RequireFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        match self.layer.check(req.extensions().get::<Authenticated>()) {
            // The inner service was driven to readiness by `poll_ready` and
            // is called right away: no clone needed.
            None => RequireFuture {
                state: RequireState::Inner {
                    future: self.inner.call(req),
                },
            },
            Some(response) => RequireFuture {
                state: RequireState::Rejected {
                    response: Some(response),
                },
            },
        }
    }
}

pin_project! {
    /// The future of [`Require`].
    #[derive(Debug)]
    pub struct RequireFuture<F> {
        #[pin]
        state: RequireState<F>,
    }
}

pin_project! {
    #[project = RequireStateProj]
    #[derive(Debug)]
    enum RequireState<F> {
        Inner {
            #[pin]
            future: F,
        },
        Rejected {
            response: Option<Response<Bytes>>,
        },
    }
}

impl<F, ResBody, E> Future for RequireFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            RequireStateProj::Inner { future } => future
                .poll(cx)
                .map(|r| r.map(|res| res.map(ResponseBody::inner))),
            RequireStateProj::Rejected { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response.map(ResponseBody::rejection))),
                None => super::authorize::polled_after_completion(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Policy;

    fn snapshot() -> Snapshot {
        let mut p = Policy::new();
        p.permission("a").permission("b");
        p.role("viewer").grant("a");
        p.compile().unwrap()
    }

    #[test]
    fn every_bad_name_is_reported_sorted() {
        let rule = Rule::permission("zz")
            .and(Rule::any_of(["a", "yy", "b"]))
            .or(Rule::role("ghost"));
        let problems = rule.resolve(&snapshot()).unwrap_err();
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "permission `yy` is not declared",
                "permission `zz` is not declared",
                "role `ghost` does not exist"
            ]
        );
    }

    #[test]
    fn rule_resolves_to_the_same_decisions_as_a_requirement() {
        let s = snapshot();
        let rule = Rule::role("viewer").or(Rule::all_of(["a", "b"]));
        let req = rule.resolve(&s).unwrap();
        assert!(s.principal(None, ["viewer"]).satisfies(&req));
        assert!(!s.principal(None, ["nobody"]).satisfies(&req));
        assert!(s
            .principal(None, ["nobody"])
            .with_permissions(["a", "b"])
            .satisfies(&req));
        assert!(!s
            .principal(None, ["nobody"])
            .with_permissions(["a"])
            .satisfies(&req));
    }

    /// The answer the layer sends for `roles` under `rule`, by the
    /// prebuilt path when it applies and by the general one otherwise: the
    /// status, the challenge and the body.
    fn answer(rule: Rule, roles: &[&str]) -> Option<(u16, String, String)> {
        let s = snapshot();
        let layer = RequireLayer::resolve(&s, rule, Answers::new()).unwrap();
        let auth = Authenticated::new(
            s.principal(None, roles),
            Arc::new(crate::token::VerifiedClaims::default()),
            super::super::PrincipalSource::Claims,
        );
        let response = layer.check(Some(&auth))?;
        let challenge = response.headers()[http::header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .to_owned();
        let body = String::from_utf8(response.body().to_vec()).unwrap();
        Some((response.status().as_u16(), challenge, body))
    }

    #[test]
    fn denials_name_exactly_the_missing_permissions_on_either_path() {
        let scope = |rule: Rule, roles: &[&str]| {
            answer(rule, roles).map(|(status, challenge, body)| {
                assert_eq!(status, 403);
                let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                assert_eq!(v["status"], 403);
                challenge
                    .split_once("scope=\"")
                    .map(|(_, s)| s.trim_end_matches('"').to_owned())
            })
        };
        // None held: the prebuilt answer names every permission.
        assert_eq!(
            scope(Rule::all_of(["a", "b", "a"]), &["nobody"]),
            Some(Some("a b".into()))
        );
        // One held: the general path names only the other.
        assert_eq!(
            scope(Rule::all_of(["a", "b"]), &["viewer"]),
            Some(Some("b".into()))
        );
        assert_eq!(
            scope(Rule::permission("b"), &["viewer"]),
            Some(Some("b".into()))
        );
        // A role rule names no permission.
        assert_eq!(scope(Rule::role("viewer"), &["nobody"]), Some(None));
        // Allowed: no answer.
        assert_eq!(scope(Rule::permission("a"), &["viewer"]), None);
        // The prebuilt answer is byte for byte the general one.
        let rejection = Rejection::InsufficientScope {
            missing: vec!["a".into(), "b".into()],
            requirement: String::new(),
        }
        .default_response("api");
        let (_, challenge, body) = answer(Rule::any_of(["a", "b"]), &["nobody"]).unwrap();
        assert_eq!(
            challenge,
            rejection.headers()[http::header::WWW_AUTHENTICATE]
        );
        assert_eq!(body.as_bytes(), &rejection.body()[..]);
    }
}
