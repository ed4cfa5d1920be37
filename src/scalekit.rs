//! Scalekit webhooks: verified, idempotent, order-safe ingestion that keeps
//! an [`Engine`](crate::Engine) current (feature `scalekit`; the REST source
//! needs `scalekit-rest`).
//!
//! ```text
//! headers + raw body ──► Verifier ──► Event::parse ──► plan (event → changes)
//!                                                          │
//!   WebhookOutcome ◄── Engine::apply_batch([RecordDelivery, …changes]) ◄┘
//!   (status, body)            ▲ missing role? fetched from the Source
//! ```
//!
//! - [`Verifier`]: Standard Webhooks signatures (`webhook-id`,
//!   `webhook-timestamp`, `webhook-signature`; HMAC-SHA256; several secrets
//!   for rotation; ±300 s; constant-time).
//! - [`Event`]: the envelope and the `data` of every event type rolegraph
//!   acts on.
//! - [`Handler`]: headers and raw body in, a [`WebhookOutcome`] out, with
//!   [`status`](WebhookOutcome::status) and [`body`](WebhookOutcome::body)
//!   for any HTTP framework; [`WebhookStats`] counts every outcome.
//! - [`Source`]: what events leave out (role permissions, roles an event
//!   depends on, a full resync); `RestSource` (feature `scalekit-rest`) reads
//!   Scalekit's REST API.
//!
//! # How events map to changes
//!
//! | event | change |
//! |---|---|
//! | `organization.directory.user_created` / `_updated` | the user's roles in the organization become exactly `data.roles[].role_name`; `active: false` removes every role; no roles → the organization's default member role only with [`HandlerOptions::default_member_role`] |
//! | `organization.directory.user_deleted` | the membership is removed |
//! | `organization.directory.group_deleted` | the organization's mapping of that group (by id or display name) is removed |
//! | `organization.directory.group_created` / `_updated` | recorded only (no roles in the payload; Scalekit sends `user_updated` for affected members) |
//! | `role.created` / `role.updated` | the role is created or updated (display name, description, base); its direct permissions are fetched from the source, in the same batch — without a source a new role has none and an updated one keeps its grants |
//! | `role.deleted` | the role is deleted; roles extending it are resynced from the source, or detached without one; members lose it; the outcome lists every role and user changed |
//! | `permission.created` / `.updated` / `.deleted` | declared, described, removed (with every grant of it) |
//! | `user.organization_membership_created` / `_updated` | the membership keyed by the Scalekit user id (`data.user.id`, `usr_…`) gets exactly the user's roles in the organization: the payload's when it carries any, else fetched from the source (`GET /api/v1/organizations/{org}/users/{usr}/roles`); a source that knows no such membership removes it; without a source (or one that cannot fetch user roles) the answer is 503, so that Scalekit delivers it again |
//! | `user.organization_membership_deleted` | the `usr_…` membership is removed, and so is the one keyed by the payload's email (with [`UserKey::Email`]): the user left the organization |
//! | `organization.deleted` | its roles, mapping and memberships go |
//! | anything else | acknowledged, ignored, counted |
//!
//! # What memberships are keyed by
//!
//! | events | key |
//! |---|---|
//! | `user.organization_membership_*` | the Scalekit user id (`usr_…`), what access tokens carry as `sub`; a payload without one falls back to the email key below |
//! | `organization.directory.user_*` | [`UserKey`]: the lower-cased email (the default, as Scalekit's example handlers do) or the directory user id (`diruser_…`) |
//!
//! A request is matched to a membership by its token's `sub` first, then by
//! its `email` claim when the token has one (what the authorization layer
//! does in its membership mode: [`Snapshot::user_principal`] with `sub`,
//! then with the lower-cased email); only when the engine knows neither
//! does the token's own `roles` claim decide. When both memberships exist,
//! the `usr_…` one decides.
//!
//! A directory user's membership records no groups: Scalekit's `roles`
//! already apply its group mapping, and applying the local one again could
//! only add roles Scalekit did not give.
//!
//! [`Snapshot::user_principal`]: crate::Snapshot::user_principal
//!
//! Role events are scoped to the organization in `data.organization_id`, or
//! the envelope's `organization_id`; without either they are environment
//! roles.
//!
//! # Delivery guarantees
//!
//! Scalekit delivers at least once and out of order; the handler makes that
//! the normal case.
//!
//! - **Idempotent.** Every applied event is journaled in the same batch as a
//!   [`Change::RecordDelivery`](crate::Change::RecordDelivery) keyed by its
//!   `webhook-id` (the same for every retry of a message), so a redelivery is
//!   a [`Duplicate`](WebhookOutcome::Duplicate), also after a restart. The
//!   record is bounded (200,000 ids) and expires after
//!   [`HandlerOptions::retention`] (3 days: longer than Scalekit's retries).
//! - **Ordered per entity.** The same record carries the event's
//!   `occurred_at` for the entity it is about (`user:{org}/{key}`,
//!   `role:{org or -}/{name}`, `permission:{name}`, `group:{org}/{id}`,
//!   `organization:{id}`); an older event about the same entity is
//!   [`Stale`](WebhookOutcome::Stale) and changes nothing. A deletion's clock
//!   stays behind as a tombstone: a late `role.created` after `role.deleted`
//!   is stale, and a late user event naming a role deleted after it occurred
//!   leaves that role out (listed in [`Applied::dropped`]). Events about an
//!   organization older than its `organization.deleted` are stale.
//! - **Dependencies out of order.** An event naming a role that does not
//!   exist yet (a base role, a user's role) is never acknowledged and
//!   dropped. With a source, the missing roles are fetched and created in
//!   the same batch as the event (up to 8 rounds, for bases of bases).
//! - **No fetch under the lock.** Deliveries are applied one at a time,
//!   under the handler's own lock, but the source is never read while it
//!   is held: an attempt plans on the current state, and when it needs
//!   data from the source (a role's permissions, a missing role, a user's
//!   roles, the whole state) it lets the lock go, fetches, and plans again
//!   under the lock against the state of then, using only what still
//!   applies (a fetched role is created only if it is still missing; a
//!   fetched whole state only if the policy did not change since it was
//!   read). At most 12 attempts, then 503. A slow or retrying source
//!   delays only the delivery that needs it.
//!   Without one, or when the source does not know them either, the answer
//!   is 503 with `Retry-After` ([`RetryLater`](WebhookOutcome::RetryLater)):
//!   the sender keeps the event and delivers it again, by which time the
//!   dependency's own event has usually arrived. We chose the sender's retry
//!   queue over holding events here because it is already durable: an event
//!   held in memory after a 2xx would be lost by a crash, and the journal has
//!   no place for unapplied events. Per-entity clocks keep a late retry from
//!   undoing anything newer.
//! - **Policy-breaking events.** An event that would make the policy invalid
//!   (a cycle, an invalid name) changes nothing, and is answered 200 with
//!   `{"status":"rejected","error":…}` so that the sender does not retry it
//!   forever; it is counted in [`WebhookStats::rejected`], logged as a
//!   `tracing` warning (feature `tracing`), and kept as the engine's
//!   [`last_error`](crate::Stats::last_error).
//! - **Resync.** [`Handler::resync`] replaces the policy with the source's
//!   state as one batch (memberships are kept); [`Handler::bootstrap`] does
//!   it when the engine has no state yet. Role, permission, group and
//!   organization events older than the resync (minus
//!   [`HandlerOptions::resync_skew`]) are then stale: the resync holds their
//!   effect.
//!
//! # Examples
//!
//! ```
//! use std::time::SystemTime;
//! use rolegraph::scalekit::{Handler, HandlerOptions, Verifier};
//! use rolegraph::{Engine, Policy};
//!
//! let mut policy = Policy::new();
//! policy.permission("projects:read").permission("projects:update");
//! policy.role("viewer").grant("projects:read");
//! policy.role("editor").extends("viewer").grant("projects:update");
//! let engine = Engine::new(&policy)?;
//! let verifier = Verifier::new(["whsec_dGVzdHNlY3JldA=="])?;
//! let handler = Handler::new(engine.clone(), verifier.clone())
//!     .with_options(HandlerOptions::default().with_default_member_role(true));
//!
//! // What the HTTP route does with a delivery:
//! let body = br#"{"id":"evt_2","type":"organization.directory.user_updated",
//!   "occurred_at":"2025-01-06T18:44:25Z","organization_id":"org_1",
//!   "data":{"id":"diruser_7","email":"bo@example.com","roles":[{"role_name":"editor"}]}}"#;
//! let now = SystemTime::now();
//! let ts = now.duration_since(SystemTime::UNIX_EPOCH)?.as_secs() as i64;
//! let sig = verifier.sign("msg_2", ts, body);
//! let ts = ts.to_string();
//! let outcome = handler.handle_at(
//!     [("webhook-id", "msg_2"), ("webhook-timestamp", &ts), ("webhook-signature", &sig)],
//!     body,
//!     now,
//! );
//! assert_eq!((outcome.status(), outcome.label()), (200, "applied"));
//!
//! let snapshot = engine.snapshot();
//! let bo = snapshot.user_principal("org_1", "bo@example.com");
//! assert!(bo.satisfies(&rolegraph::Requirement::permission(&snapshot, "projects:update")?));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod event;
mod handler;
mod outcome;
#[cfg(feature = "scalekit-rest")]
mod rest;
mod source;
mod verify;

pub use error::WebhookError;
pub use event::{
    parse_rfc3339_ns, DirectoryGroup, DirectoryUser, Event, EventKind, Lifecycle, MembershipData,
    PermissionData, RoleData, MAX_BODY_BYTES,
};
pub use handler::{Handler, HandlerOptions, UserKey};
pub use outcome::{Applied, WebhookOutcome, WebhookStats};
#[cfg(feature = "scalekit-rest")]
pub use rest::{RestOptions, RestSource};
pub use source::{Source, SourceError};
pub use verify::{
    Verified, Verifier, DEFAULT_TOLERANCE, WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP,
};
