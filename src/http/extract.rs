//! axum extractors: [`Authenticated`], [`Principal`] and [`VerifiedClaims`],
//! each also as `Option<…>`.

use std::convert::Infallible;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::Authenticated;
use crate::check::Principal;
use crate::token::VerifiedClaims;

/// The rejection of the [`Authenticated`], [`Principal`] and
/// [`VerifiedClaims`] extractors: no authorization layer ran before the
/// handler. A wiring mistake of the server, so it answers 500 (as axum's
/// `Extension` does), and logs an error (feature `tracing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthenticationMissing;

impl std::fmt::Display for AuthenticationMissing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no authorization layer ran before this handler")
    }
}

impl std::error::Error for AuthenticationMissing {}

impl IntoResponse for AuthenticationMissing {
    fn into_response(self) -> Response {
        super::log!(
            error,
            "rolegraph: {self}; add `AuthorizeLayer` to the router"
        );
        (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
    }
}

fn authenticated(parts: &Parts) -> Option<&Authenticated> {
    parts.extensions.get::<Authenticated>()
}

impl<S: Send + Sync> FromRequestParts<S> for Authenticated {
    type Rejection = AuthenticationMissing;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        authenticated(parts).cloned().ok_or(AuthenticationMissing)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Authenticated {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(authenticated(parts).cloned())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = AuthenticationMissing;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        authenticated(parts)
            .map(|a| a.principal().clone())
            .ok_or(AuthenticationMissing)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Principal {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(authenticated(parts).map(|a| a.principal().clone()))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for VerifiedClaims {
    type Rejection = AuthenticationMissing;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        authenticated(parts)
            .map(|a| (**a.claims()).clone())
            .ok_or(AuthenticationMissing)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for VerifiedClaims {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(authenticated(parts).map(|a| (**a.claims()).clone()))
    }
}
