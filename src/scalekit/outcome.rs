//! What the handler answers, and how that maps onto HTTP.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::change::Outcome;

use super::error::WebhookError;

/// What became of one delivery. [`status`](Self::status),
/// [`body`](Self::body) and [`retry_after`](Self::retry_after) are the HTTP
/// answer, whatever the framework.
///
/// | outcome | status | the sender… |
/// |---|---|---|
/// | [`Applied`](Self::Applied), [`Duplicate`](Self::Duplicate), [`Stale`](Self::Stale), [`Ignored`](Self::Ignored), [`Rejected`](Self::Rejected) | 200 | stops |
/// | [`Malformed`](Self::Malformed) | 400 | gives up (retrying cannot help) |
/// | [`Unauthorized`](Self::Unauthorized) | 401 | gives up or alerts |
/// | [`Failed`](Self::Failed) | 500 | retries |
/// | [`RetryLater`](Self::RetryLater) | 503 + `Retry-After` | retries |
///
/// A rejected event (one that would break the policy, such as a cycle) is
/// answered 200: retrying the same event can never succeed, and a 5xx would
/// make the sender retry it for its whole retry window. The rejection is
/// counted ([`WebhookStats::rejected`]), logged as a `tracing` warning, and
/// recorded as the engine's last error.
///
/// # Examples
///
/// ```
/// use rolegraph::scalekit::WebhookOutcome;
///
/// let outcome = WebhookOutcome::Duplicate { id: "msg_1".into() };
/// assert_eq!(outcome.status(), 200);
/// assert_eq!(outcome.body(), r#"{"status":"duplicate","id":"msg_1"}"#);
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum WebhookOutcome {
    /// The event was applied (or recorded, when it changed nothing but its
    /// delivery record).
    Applied(Box<Applied>),
    /// This delivery was applied before: nothing was done again.
    Duplicate {
        /// The delivery id.
        id: String,
    },
    /// A newer event about the same entity was applied already: this one
    /// was ignored.
    Stale {
        /// The entity (`user:org_1/alice@example.com`, `role:-/editor` …).
        entity: String,
        /// When the last event applied to it occurred (ns since the epoch).
        last_ns: u64,
        /// When this one occurred (ns since the epoch).
        got_ns: u64,
    },
    /// An event type rolegraph does not act on, or an event with nothing to
    /// act on: acknowledged and counted.
    Ignored {
        /// The event type.
        event_type: String,
        /// Why.
        reason: String,
    },
    /// The event would break the policy (a cycle, an invalid name): nothing
    /// was changed, and the sender is told not to retry.
    Rejected(WebhookError),
    /// The body is not an event of a known shape.
    Malformed(WebhookError),
    /// The signature did not verify.
    Unauthorized(WebhookError),
    /// The event depends on something not there yet, the source could not
    /// be reached, or the change could not be made durable (the journal
    /// failed, or the fleet's shared log is unreachable): the sender should
    /// deliver it again later.
    RetryLater {
        /// Why.
        error: WebhookError,
        /// How long to wait (the `Retry-After` header).
        after: Duration,
    },
    /// The handler failed in a way a retry may not fix by itself (it is
    /// answered 500 so the sender retries and an operator notices). The
    /// handler answers a journal or shared-log failure with
    /// [`RetryLater`](Self::RetryLater) instead.
    Failed(WebhookError),
}

/// An applied event: the engine's outcome plus what the handler did beside it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Applied {
    /// The delivery id.
    pub id: String,
    /// The event type.
    pub event_type: String,
    /// The engine's outcome: the revision now published and what a deletion
    /// changed (roles detached, grants dropped, users who lost a role).
    pub outcome: Outcome,
    /// Roles fetched from the source because the event depended on them,
    /// as `organization/role` or `role`.
    pub fetched: Vec<String>,
    /// Whether the event triggered a full resync from the source.
    pub resynced: bool,
    /// Role names dropped from the event because they were deleted after
    /// it occurred.
    pub dropped: Vec<String>,
}

impl WebhookOutcome {
    /// The HTTP status to answer with.
    #[must_use]
    pub fn status(&self) -> u16 {
        match self {
            Self::Applied(_)
            | Self::Duplicate { .. }
            | Self::Stale { .. }
            | Self::Ignored { .. }
            | Self::Rejected(_) => 200,
            Self::Malformed(_) => 400,
            Self::Unauthorized(_) => 401,
            Self::Failed(_) => 500,
            Self::RetryLater { .. } => 503,
        }
    }

    /// Whether the sender should consider the delivery done (a 2xx status).
    #[must_use]
    pub fn is_acknowledged(&self) -> bool {
        (200..300).contains(&self.status())
    }

    /// The `Retry-After` delay, for [`RetryLater`](Self::RetryLater).
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RetryLater { after, .. } => Some(*after),
            _ => None,
        }
    }

    /// A short name of the outcome: `applied`, `duplicate`, `stale`,
    /// `ignored`, `rejected`, `malformed`, `unauthorized`, `retry_later`,
    /// `failed`.
    #[must_use]
    pub fn label(&self) -> &'static str {
        match self {
            Self::Applied(_) => "applied",
            Self::Duplicate { .. } => "duplicate",
            Self::Stale { .. } => "stale",
            Self::Ignored { .. } => "ignored",
            Self::Rejected(_) => "rejected",
            Self::Malformed(_) => "malformed",
            Self::Unauthorized(_) => "unauthorized",
            Self::RetryLater { .. } => "retry_later",
            Self::Failed(_) => "failed",
        }
    }

    /// The response body: a short JSON object whose `status` is
    /// [`label`](Self::label), with the revision, the error or what a
    /// deletion changed.
    #[must_use]
    pub fn body(&self) -> String {
        let mut body = Body {
            status: self.label(),
            ..Body::default()
        };
        let nonempty = |v: &'_ Vec<String>| (!v.is_empty()).then_some(v.clone());
        match self {
            Self::Applied(a) => {
                body.revision = Some(a.outcome.revision);
                body.roles_affected = nonempty(&a.outcome.roles_affected);
                body.roles_reparented = nonempty(&a.outcome.roles_reparented);
                body.users_affected = nonempty(&a.outcome.users_affected);
                body.fetched = nonempty(&a.fetched);
                body.dropped = nonempty(&a.dropped);
                body.resynced = a.resynced.then_some(true);
            }
            Self::Duplicate { id } => body.id = Some(id.clone()),
            Self::Stale { entity, .. } => body.entity = Some(entity.clone()),
            Self::Ignored { event_type, .. } => body.event_type = Some(event_type.clone()),
            Self::Rejected(e)
            | Self::Malformed(e)
            | Self::Unauthorized(e)
            | Self::Failed(e)
            | Self::RetryLater { error: e, .. } => body.error = Some(e.to_string()),
        }
        // Plain strings, numbers and lists: serializing cannot fail.
        serde_json::to_string(&body).unwrap_or_default()
    }
}

/// The response body, fields in this order, absent ones left out.
#[derive(Default, Serialize)]
struct Body {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    revision: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    entity: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    event_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    roles_affected: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    roles_reparented: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    users_affected: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fetched: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dropped: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resynced: Option<bool>,
}

/// Counters of the handler since it was made, for dashboards and alerts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct WebhookStats {
    /// Events applied.
    pub applied: u64,
    /// Redeliveries of applied events.
    pub duplicates: u64,
    /// Events older than the last one applied to the same entity.
    pub stale: u64,
    /// Unknown event types and events with nothing to act on.
    pub ignored: u64,
    /// Events that would have broken the policy.
    pub rejected: u64,
    /// Events answered "retry later" (missing dependency, source down).
    pub retry_later: u64,
    /// Deliveries whose signature did not verify.
    pub bad_signature: u64,
    /// Verified deliveries whose body was not a known event shape.
    pub malformed: u64,
    /// Events whose change could not be made durable.
    pub failed: u64,
    /// Full resyncs from the source.
    pub resyncs: u64,
    /// Roles fetched from the source to satisfy a dependency.
    pub fetched_roles: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    applied: AtomicU64,
    duplicates: AtomicU64,
    stale: AtomicU64,
    ignored: AtomicU64,
    rejected: AtomicU64,
    retry_later: AtomicU64,
    bad_signature: AtomicU64,
    malformed: AtomicU64,
    failed: AtomicU64,
    pub(crate) resyncs: AtomicU64,
    pub(crate) fetched_roles: AtomicU64,
}

impl Counters {
    pub(crate) fn count(&self, outcome: &WebhookOutcome) {
        let counter = match outcome {
            WebhookOutcome::Applied(_) => &self.applied,
            WebhookOutcome::Duplicate { .. } => &self.duplicates,
            WebhookOutcome::Stale { .. } => &self.stale,
            WebhookOutcome::Ignored { .. } => &self.ignored,
            WebhookOutcome::Rejected(_) => &self.rejected,
            WebhookOutcome::Malformed(_) => &self.malformed,
            WebhookOutcome::Unauthorized(_) => &self.bad_signature,
            WebhookOutcome::RetryLater { .. } => &self.retry_later,
            WebhookOutcome::Failed(_) => &self.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> WebhookStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        WebhookStats {
            applied: get(&self.applied),
            duplicates: get(&self.duplicates),
            stale: get(&self.stale),
            ignored: get(&self.ignored),
            rejected: get(&self.rejected),
            retry_later: get(&self.retry_later),
            bad_signature: get(&self.bad_signature),
            malformed: get(&self.malformed),
            failed: get(&self.failed),
            resyncs: get(&self.resyncs),
            fetched_roles: get(&self.fetched_roles),
        }
    }
}
