//! The Scalekit webhook route for axum.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::scalekit::{Handler, WebhookOutcome};

/// A `POST` route that hands Scalekit webhook deliveries to `handler`.
///
/// - A body over `limit` bytes is refused with 413 before anything else:
///   at once when `Content-Length` says so, otherwise as soon as the bytes
///   read pass the limit (the body is never buffered past it, and no
///   signature is computed over it).
/// - The handler runs on tokio's blocking pool (`spawn_blocking`): it
///   verifies, applies, and waits for the journal's fsync.
/// - The answer is the outcome's: [`status`](WebhookOutcome::status),
///   [`body`](WebhookOutcome::body) as `application/json`, and
///   `Retry-After` when it says to retry later.
/// - An acknowledged delivery carries [`REVISION_HEADER`](super::REVISION_HEADER):
///   the revision it produced, or for a duplicate, stale or ignored event
///   the revision published when it was answered (its effect, if any, is
///   at or before it). A request sending that header to a layer with
///   [`min_revision_header`](super::AuthorizeLayer::min_revision_header)
///   is decided on a snapshot that includes the delivery.
///
/// Mount it outside the authorization layer (webhooks carry a signature,
/// not a bearer token): add it to the router after `.layer(auth)`, or nest
/// it.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use axum::Router;
/// use rolegraph::http::webhook_route;
/// use rolegraph::scalekit::{Handler, Verifier};
/// use rolegraph::{Engine, Policy};
///
/// let engine = Engine::new(&Policy::new())?;
/// let handler = Arc::new(Handler::new(engine, Verifier::new(["whsec_dGVzdHNlY3JldA=="])?));
/// let app: Router = Router::new().route("/webhooks/scalekit", webhook_route(handler, 1 << 20));
/// # let _ = app;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn webhook_route<S>(handler: Arc<Handler>, limit: usize) -> MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    axum::routing::post(move |request: Request| {
        let handler = Arc::clone(&handler);
        async move { deliver(handler, limit, request).await }
    })
}

async fn deliver(handler: Arc<Handler>, limit: usize, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large(limit);
    }
    let body = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => return too_large(limit),
        Err(_) => {
            return plain(
                StatusCode::BAD_REQUEST,
                "the request body could not be read",
            );
        }
    };
    let headers: Vec<(String, Vec<u8>)> = parts
        .headers
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect();
    let outcome = tokio::task::spawn_blocking(move || {
        let outcome = handler.handle(headers, &body);
        let revision = handler.engine().revision();
        (outcome, revision)
    })
    .await;
    match outcome {
        Ok((outcome, revision)) => answer(&outcome, revision),
        Err(_) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the webhook handler did not finish",
        ),
    }
}

/// The outcome's answer; `current` is the engine's revision after it.
fn answer(outcome: &WebhookOutcome, current: u64) -> Response {
    let status =
        StatusCode::from_u16(outcome.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, outcome.body()).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(after) = outcome.retry_after() {
        headers.insert(RETRY_AFTER, HeaderValue::from(after.as_secs().max(1)));
    }
    let revision = match outcome {
        WebhookOutcome::Applied(applied) => Some(applied.outcome.revision),
        _ if outcome.is_acknowledged() => Some(current),
        _ => None,
    };
    if let Some(revision) = revision {
        headers.insert(
            HeaderName::from_static(super::REVISION_HEADER),
            HeaderValue::from(revision),
        );
    }
    response
}

fn too_large(limit: usize) -> Response {
    super::log!(
        debug,
        limit,
        "scalekit webhook refused: body over the limit"
    );
    plain(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("the body is over the limit of {limit} bytes"),
    )
}

fn plain(status: StatusCode, text: &str) -> Response {
    let mut response = Response::new(Body::from(text.to_owned()));
    *response.status_mut() = status;
    response
}
