//! Into the request path: a tower layer that turns a bearer token into a
//! [`Principal`], route requirements, RFC 6750 answers, and (feature `axum`)
//! extractors and the Scalekit webhook route.
//!
//! - [`AuthorizeLayer`] (service [`Authorize`]): per request, parses
//!   `Authorization: Bearer <token>`, verifies the token with a
//!   [`Verifier`](crate::token::Verifier), loads the engine's snapshot once
//!   (lock-free), builds the principal as the [`Mode`] says, and puts an
//!   [`Authenticated`] into the request's extensions.
//! - [`RequireLayer`] (service [`Require`]), made by
//!   [`AuthorizeLayer::require`] from a [`Rule`]: what a route needs,
//!   resolved when the router is built (an undeclared name is an error
//!   then), and kept right across policy swaps.
//! - [`Rejection`] and [`Responder`]: the RFC 6750 §3 answers, replaceable.
//!
//! # Modes
//!
//! - [`Mode::Claims`]: the token's `oid`, `roles` and `permissions`
//!   (Scalekit semantics). A revoked role keeps working until the token
//!   expires.
//! - [`Mode::Membership`]: the engine's membership for (`oid`, `sub`), then
//!   (`oid`, `email`); the token's claims only when the engine knows
//!   neither. A role revoked by a webhook is denied on the very next
//!   request. The token's `permissions` claim is not added to a membership
//!   principal (it was derived from the roles at issue time, so it would
//!   bring a revoked role's permissions back). [`Authenticated::source`]
//!   says which one decided.
//!
//! # Answers (RFC 6750 §3)
//!
//! | case | status | `WWW-Authenticate` |
//! |---|---|---|
//! | no `Authorization` header | 401 | `Bearer realm="…"` |
//! | header not one `Bearer <token68>` | 400 | `Bearer realm="…", error="invalid_request", error_description="…"` |
//! | token refused (signature, `exp`, `nbf`, `iss`, `aud` …) | 401 | `Bearer realm="…", error="invalid_token", error_description="…"` |
//! | signing keys unreachable | 503 + `Retry-After` | — |
//! | minimum revision header not a number | 400 | `Bearer realm="…", error="invalid_request", error_description="…"` |
//! | minimum revision not reached within the wait | 503 + `Retry-After` | — |
//! | requirement not met | 403 | `Bearer realm="…", error="insufficient_scope", scope="…"` |
//!
//! Bodies are `application/problem+json` (RFC 9457) with a short `detail`.
//! Why a request was denied ([`Snapshot::explain`](crate::Snapshot::explain))
//! goes to `tracing` at debug level (feature `tracing`), never to the client.
//!
//! # Examples
//!
//! An axum app (features `axum` and `scalekit`): one authorization layer for
//! the router, one requirement per route, and the webhook route.
//!
//! ```no_run
//! # #[cfg(all(feature = "axum", feature = "scalekit"))]
//! # async fn app() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use axum::{routing::get, Router};
//! use rolegraph::http::{webhook_route, Authenticated, AuthorizeLayer, Mode, Rule};
//! use rolegraph::scalekit::{Handler, Verifier as WebhookVerifier};
//! use rolegraph::token::Verifier;
//! use rolegraph::{Engine, Policy};
//!
//! # fn token_verifier() -> Arc<dyn Verifier> { unimplemented!() }
//! let policy: Policy = std::fs::read_to_string("policy.json")?.parse()?;
//! let engine = Engine::open("state", &policy)?;
//! let webhooks = Arc::new(Handler::new(
//!     engine.clone(),
//!     WebhookVerifier::new([std::env::var("SCALEKIT_WEBHOOK_SECRET")?])?,
//! ));
//! // A `JwksVerifier` in production; anything implementing `Verifier`.
//! let auth = AuthorizeLayer::new(engine.clone(), token_verifier())
//!     .mode(Mode::Membership)
//!     .realm("projects");
//!
//! async fn list(who: Authenticated) -> String {
//!     format!("projects of {} (revision {})", who.claims().subject, who.revision())
//! }
//! async fn delete() -> &'static str {
//!     "deleted"
//! }
//!
//! let app = Router::new()
//!     .route("/projects", get(list).route_layer(auth.require("projects:read")?))
//!     .route(
//!         "/projects/{id}",
//!         axum::routing::delete(delete)
//!             .route_layer(auth.require(Rule::role("admin").or(Rule::permission("projects:delete")))?),
//!     )
//!     .layer(auth)
//!     // After `.layer(auth)`: webhooks carry no bearer token.
//!     .route("/webhooks/scalekit", webhook_route(webhooks, 1 << 20));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await?;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::sync::Arc;

use crate::check::Principal;
use crate::token::VerifiedClaims;

mod authorize;
mod body;
#[cfg(feature = "axum")]
mod extract;
mod reject;
mod require;
#[cfg(all(feature = "axum", feature = "scalekit"))]
mod webhook;

pub use authorize::{Authorize, AuthorizeLayer, ResponseFuture};
pub use body::ResponseBody;
#[cfg(feature = "axum")]
pub use extract::AuthenticationMissing;
pub use reject::{Rejection, Responder};
pub use require::{Require, RequireError, RequireFuture, RequireLayer, Rule};
#[cfg(all(feature = "axum", feature = "scalekit"))]
pub use webhook::webhook_route;

/// The header that carries a revision: written by the
/// Scalekit webhook route, `webhook_route` (the revision a delivery produced) and read, when
/// the layer is told to with
/// [`AuthorizeLayer::min_revision_header`], as the minimum revision a
/// request must be decided at.
pub const REVISION_HEADER: &str = "x-rolegraph-revision";

/// Where a request's principal comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Mode {
    /// From the token's `oid`, `roles` and `permissions`.
    #[default]
    Claims,
    /// From the engine's current membership of the token's user (by `sub`,
    /// then `email`), falling back to the claims when the engine knows
    /// neither.
    Membership,
}

/// What decided a request's principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PrincipalSource {
    /// The engine's membership of (`oid`, `sub`).
    Subject,
    /// The engine's membership of (`oid`, `email`).
    Email,
    /// The token's own claims.
    Claims,
}

impl PrincipalSource {
    /// `subject`, `email` or `claims`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Subject => "subject",
            Self::Email => "email",
            Self::Claims => "claims",
        }
    }
}

impl fmt::Display for PrincipalSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the authorization layer puts into a request's extensions: the
/// principal, the verified claims, the revision of the snapshot the
/// principal was built from, and what decided it.
///
/// Cheap to clone (one `Arc`). With feature `axum` it is an extractor, and
/// so is `Option<Authenticated>`.
#[derive(Clone)]
pub struct Authenticated(Arc<Inner>);

struct Inner {
    principal: Principal,
    claims: Arc<VerifiedClaims>,
    source: PrincipalSource,
}

impl Authenticated {
    pub(crate) fn new(
        principal: Principal,
        claims: Arc<VerifiedClaims>,
        source: PrincipalSource,
    ) -> Self {
        Self(Arc::new(Inner {
            principal,
            claims,
            source,
        }))
    }

    /// What the request may do.
    #[must_use]
    pub fn principal(&self) -> &Principal {
        &self.0.principal
    }

    /// The verified token.
    #[must_use]
    pub fn claims(&self) -> &Arc<VerifiedClaims> {
        &self.0.claims
    }

    /// The revision of the snapshot the principal was built from.
    #[must_use]
    pub fn revision(&self) -> u64 {
        self.0.principal.snapshot().revision()
    }

    /// What decided the principal.
    #[must_use]
    pub fn source(&self) -> PrincipalSource {
        self.0.source
    }
}

impl fmt::Debug for Authenticated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticated")
            .field("subject", &self.0.claims.subject)
            .field("organization", &self.0.claims.organization)
            .field("source", &self.0.source)
            .field("revision", &self.revision())
            .field("principal", &self.0.principal)
            .finish()
    }
}

/// `tracing::$level!(…)` with feature `tracing`, nothing without.
macro_rules! log {
    ($level:ident, $($arg:tt)*) => {{
        #[cfg(feature = "tracing")]
        ::tracing::$level!($($arg)*);
    }};
}
pub(crate) use log;

/// Logs a refused request at debug level (no token bytes).
fn log_rejection(_rejection: &Rejection) {
    log!(debug, rejection = %_rejection, "rolegraph request refused");
}

/// Logs why a principal does not meet a rule, with the full explanation,
/// at debug level; computed only when debug is enabled.
fn log_denial(_auth: &Authenticated, _rule: &Rule, _text: &str) {
    #[cfg(feature = "tracing")]
    if ::tracing::enabled!(::tracing::Level::DEBUG) {
        let principal = _auth.principal();
        let snapshot = principal.snapshot();
        let claims = match _auth.source() {
            PrincipalSource::Claims => _auth.claims().claims(),
            PrincipalSource::Subject | PrincipalSource::Email => crate::Claims {
                organization: _auth.claims().organization.clone(),
                roles: principal
                    .roles()
                    .iter()
                    .map(|r| snapshot.role_name(*r).to_owned())
                    .collect(),
                permissions: Vec::new(),
            },
        };
        let explanation = _rule
            .resolve(snapshot)
            .ok()
            .map(|r| snapshot.explain(&claims, &r).to_string());
        ::tracing::debug!(
            subject = %_auth.claims().subject,
            source = %_auth.source(),
            revision = _auth.revision(),
            requirement = %_text,
            explanation = explanation.as_deref().unwrap_or("the requirement does not resolve"),
            "rolegraph request denied"
        );
    }
}
