//! The framework-neutral webhook handler: headers and raw body in, an
//! outcome that maps onto an HTTP answer out.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::change::{Change, ChangeError, ChangeMeta, EntityClock, Outcome, Reparent};
use crate::compile::Problem;
use crate::engine::Engine;
use crate::model::{Permission, Policy, Role};
use crate::snapshot::Snapshot;

use super::error::WebhookError;
use super::event::{Event, EventKind, Lifecycle};
use super::outcome::{Applied, Counters, WebhookOutcome, WebhookStats};
use super::source::{resync_changes, Source};
use super::verify::Verifier;

/// The entity whose clock records the last full resync.
pub(crate) const RESYNC_ENTITY: &str = "resync";

/// Rounds of fetching missing roles from the source for one event (each
/// round fetches every role the previous attempt found missing).
const MAX_FETCH_ROUNDS: usize = 8;

/// Locked attempts at one delivery. An attempt that needs data from the
/// source ends, releases the lock, fetches it with no lock held, and the
/// next attempt plans again on the state of then (bases of bases need one
/// attempt each, hence more than [`MAX_FETCH_ROUNDS`]).
const MAX_ATTEMPTS: usize = MAX_FETCH_ROUNDS + 4;

/// Reads of the source's whole state for one resync, when the policy keeps
/// changing while it is read.
const RESYNC_ATTEMPTS: usize = 4;

/// What memberships from directory events (`organization.directory.user_*`)
/// are keyed by. `user.organization_membership_*` events key by the
/// Scalekit user id (`usr_…`, a token's `sub`) whatever this says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UserKey {
    /// The user's email, lower-cased (what Scalekit's example handlers use,
    /// and what a token's `email` claim is matched on).
    #[default]
    Email,
    /// The directory user id (`diruser_…`).
    DirectoryUserId,
}

/// How the handler maps events.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use rolegraph::scalekit::{HandlerOptions, UserKey};
///
/// let options = HandlerOptions::default()
///     .with_user_key(UserKey::DirectoryUserId)
///     .with_default_member_role(true)
///     .with_retention(Duration::from_secs(7 * 24 * 3600));
/// assert!(options.default_member_role);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandlerOptions {
    /// What memberships are keyed by (default: the lower-cased email).
    pub user_key: UserKey,
    /// Give a directory user whose event lists no roles the organization's
    /// default member role (default `false`: such a user holds no role).
    pub default_member_role: bool,
    /// How long applied delivery ids are remembered (default 3 days, longer
    /// than Scalekit's retry window of minutes to hours).
    pub retention: Duration,
    /// The `Retry-After` answered with a 503 (default 30 s).
    pub retry_after: Duration,
    /// How far a full resync's clock is set back, to absorb clock skew
    /// between Scalekit and this host (default 60 s): role, permission,
    /// group and organization events older than the resync minus this are
    /// stale, since the resync already holds their effect.
    pub resync_skew: Duration,
}

impl Default for HandlerOptions {
    fn default() -> Self {
        Self {
            user_key: UserKey::Email,
            default_member_role: false,
            retention: Duration::from_secs(3 * 24 * 3600),
            retry_after: Duration::from_secs(30),
            resync_skew: Duration::from_secs(60),
        }
    }
}

impl HandlerOptions {
    /// Sets [`user_key`](Self::user_key).
    #[must_use]
    pub fn with_user_key(mut self, key: UserKey) -> Self {
        self.user_key = key;
        self
    }

    /// Sets [`default_member_role`](Self::default_member_role).
    #[must_use]
    pub fn with_default_member_role(mut self, on: bool) -> Self {
        self.default_member_role = on;
        self
    }

    /// Sets [`retention`](Self::retention).
    #[must_use]
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// Sets [`retry_after`](Self::retry_after).
    #[must_use]
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = after;
        self
    }

    /// Sets [`resync_skew`](Self::resync_skew).
    #[must_use]
    pub fn with_resync_skew(mut self, skew: Duration) -> Self {
        self.resync_skew = skew;
        self
    }
}

/// Verifies, parses and applies Scalekit webhook deliveries to an
/// [`Engine`]. `Send + Sync`: share it (in an `Arc`) between request
/// handlers.
///
/// Deliveries are applied one at a time (a lock of the handler's own, never
/// held by readers), so that what an event is mapped to is decided on the
/// state it is applied to. The lock is never held while the [`Source`] is
/// read: a delivery that needs the source's data gives the lock up, fetches,
/// and plans again under the lock against the state of then (up to 12
/// times), so a slow source delays only the deliveries that need it.
///
/// # Examples
///
/// ```
/// use std::time::SystemTime;
/// use rolegraph::scalekit::{Handler, Verifier};
/// use rolegraph::{Engine, Policy};
///
/// let mut policy = Policy::new();
/// policy.permission("projects:read");
/// policy.role("viewer").grant("projects:read");
/// let engine = Engine::new(&policy)?;
/// let verifier = Verifier::new(["whsec_dGVzdHNlY3JldA=="])?;
/// let handler = Handler::new(engine.clone(), verifier.clone());
///
/// let body = br#"{"spec_version":"1","id":"evt_1","type":"organization.directory.user_updated",
///   "occurred_at":"2025-01-06T18:44:25.153954Z","organization_id":"org_1",
///   "data":{"id":"diruser_1","email":"Ann@Example.com","active":true,"roles":[{"role_name":"viewer"}]}}"#;
/// let now = SystemTime::now();
/// let ts = now.duration_since(SystemTime::UNIX_EPOCH)?.as_secs() as i64;
/// let signature = verifier.sign("msg_1", ts, body);
/// let ts = ts.to_string();
/// let headers = [("webhook-id", "msg_1"), ("webhook-timestamp", ts.as_str()), ("webhook-signature", signature.as_str())];
///
/// let outcome = handler.handle_at(headers, body, now);
/// assert_eq!(outcome.status(), 200, "{}", outcome.body());
/// assert_eq!(engine.snapshot().membership("org_1", "ann@example.com").unwrap().roles, ["viewer"]);
///
/// // The same delivery again is a no-op.
/// assert_eq!(handler.handle_at(headers, body, now).label(), "duplicate");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Handler {
    engine: Engine,
    verifier: Verifier,
    options: HandlerOptions,
    source: Option<Arc<dyn Source>>,
    counters: Counters,
    serial: Mutex<()>,
}

impl fmt::Debug for Handler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handler")
            .field("engine", &self.engine)
            .field("verifier", &self.verifier)
            .field("options", &self.options)
            .field("source", &self.source.is_some())
            .field("stats", &self.counters.snapshot())
            .finish()
    }
}

/// What one event becomes.
struct Plan {
    entities: Vec<EntityClock>,
    changes: Vec<Change>,
    /// Role names left out because they were deleted after the event.
    dropped: Vec<String>,
    /// A role deletion: what to do if roles still extend it.
    deletes_role: Option<(Option<String>, String)>,
    /// The entity of the `usr_…` membership a directory event also updates
    /// through an email link. When a newer event for that user lands between
    /// the plan and the batch (another handler on the same engine, a fleet
    /// peer), the batch is refused as stale on this entity: the event is
    /// then decided again, and the new plan leaves the link out, instead of
    /// the whole directory event being dropped as stale.
    linked: Option<String>,
}

/// A role in a scope: (organization, name); `None` for the environment.
type RoleKey = (Option<String>, String);

/// A role as fetched: the scope it was found in, and the role.
type FoundRole = (Option<String>, Role);

/// What the source answered for one delivery so far. Kept across the
/// delivery's attempts: each answer is the source's state when it was read,
/// as good as one read under the lock, and every use is checked against the
/// state it is applied to.
#[derive(Default)]
struct Fetched {
    /// A role's direct permissions, by (organization, name).
    permissions: BTreeMap<RoleKey, Vec<Permission>>,
    /// A role as seen from an organization (with the scope it was found in),
    /// or `None` when the source does not know it.
    roles: BTreeMap<RoleKey, Option<FoundRole>>,
    /// A Scalekit user's roles by (organization, `usr_…`), or `None` when
    /// the source knows no such membership.
    user_roles: BTreeMap<(String, String), Option<Vec<String>>>,
    /// The source's whole state, and the engine's policy read just before
    /// it: used only while the engine's policy is still that one.
    policy: Option<(Policy, Policy)>,
}

/// What an attempt needs from the source before it can go on.
#[derive(Debug)]
enum Need {
    RolePermissions(Option<String>, String),
    Roles(Vec<RoleKey>),
    UserRoles(String, String),
    Policy,
}

/// How one locked attempt at a delivery ended.
enum Step {
    Done(WebhookOutcome),
    Fetch(Need),
    /// Decide again on the current state: another writer moved an entity
    /// the plan only touched through an email link (see [`Plan::linked`]).
    Again,
}

impl Plan {
    fn new(entity: String, occurred: u64, changes: Vec<Change>) -> Self {
        Self {
            entities: vec![EntityClock {
                entity,
                occurred_at_ns: occurred,
            }],
            changes,
            dropped: Vec::new(),
            deletes_role: None,
            linked: None,
        }
    }
}

fn lock(m: &Mutex<()>) -> MutexGuard<'_, ()> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn scope_text(org: Option<&str>) -> &str {
    org.unwrap_or("-")
}

fn role_entity(org: Option<&str>, name: &str) -> String {
    format!("role:{}/{name}", scope_text(org))
}

fn user_entity(org: &str, key: &str) -> String {
    format!("user:{org}/{key}")
}

/// The entity recording that `email` is Scalekit user `user` in `org`
/// (`link:org_1/ann@example.com>usr_1`): kept with the entity clocks, so it
/// is journaled with the event that taught it and survives restarts.
///
/// Links are not removed: the engine's entity clocks can only be set
/// (`Change::RecordDelivery`), never dropped. A link is followed only while
/// its user is a member and no newer event moved them, so an old link is
/// inert; what it costs is one clock entry per (organization, email, user)
/// ever linked, the same bound as the `user:` clocks every membership event
/// leaves. Dropping both needs a way to forget an entity clock in the
/// engine.
fn link_entity(org: &str, email: &str, user: &str) -> String {
    format!("{}{user}", link_prefix(org, email))
}

fn link_prefix(org: &str, email: &str) -> String {
    format!("link:{org}/{email}>")
}

/// An email as links (and email-keyed memberships) hold it: trimmed and
/// lower-cased; `None` when empty.
fn normalized_email(email: Option<&str>) -> Option<String> {
    email
        .map(|e| e.trim().to_lowercase())
        .filter(|e| !e.is_empty())
}

fn role_label(org: Option<&str>, name: &str) -> String {
    match org {
        Some(o) => format!("{o}/{name}"),
        None => name.to_owned(),
    }
}

impl Handler {
    /// A handler applying verified deliveries to `engine`.
    #[must_use]
    pub fn new(engine: Engine, verifier: Verifier) -> Self {
        Self {
            engine,
            verifier,
            options: HandlerOptions::default(),
            source: None,
            counters: Counters::default(),
            serial: Mutex::new(()),
        }
    }

    /// Sets the options.
    #[must_use]
    pub fn with_options(mut self, options: HandlerOptions) -> Self {
        self.options = options;
        self
    }

    /// Sets the source of what events leave out: role permissions, roles an
    /// event depends on, full resyncs.
    #[must_use]
    pub fn with_source(mut self, source: impl Source + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// The engine.
    #[must_use]
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The options.
    #[must_use]
    pub fn options(&self) -> &HandlerOptions {
        &self.options
    }

    /// Counters since the handler was made.
    #[must_use]
    pub fn stats(&self) -> WebhookStats {
        self.counters.snapshot()
    }

    /// Handles one delivery at the current time; see
    /// [`handle_at`](Self::handle_at).
    pub fn handle<I, K, V>(&self, headers: I, body: &[u8]) -> WebhookOutcome
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<[u8]>,
    {
        self.handle_at(headers, body, SystemTime::now())
    }

    /// Handles one delivery: verifies the signature (against `now`), parses
    /// the event, and applies it. Nothing changes unless the signature
    /// verifies.
    ///
    /// Never panics and never returns an error: every failure is an
    /// outcome with its HTTP status.
    pub fn handle_at<I, K, V>(&self, headers: I, body: &[u8], now: SystemTime) -> WebhookOutcome
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<[u8]>,
    {
        let verified = match self.verifier.verify(headers, body, now) {
            Ok(v) => v,
            Err(e) => return self.finish(WebhookOutcome::Unauthorized(e), None, None),
        };
        match Event::parse(body) {
            Ok(event) => self.apply_event(verified.id(), &event, now),
            Err(e) => self.finish(WebhookOutcome::Malformed(e), Some(verified.id()), None),
        }
    }

    /// Applies an event that was verified already (or comes from a trusted
    /// store), as delivery `delivery_id` received at `now`.
    pub fn apply_event(&self, delivery_id: &str, event: &Event, now: SystemTime) -> WebhookOutcome {
        let outcome = self.process(delivery_id, event, now);
        self.finish(outcome, Some(delivery_id), Some(&event.event_type))
    }

    /// Replaces the policy with the source's state, as one batch, and marks
    /// role, permission, group and organization events older than the
    /// resync (minus [`HandlerOptions::resync_skew`]) as stale. Memberships
    /// are kept, except that roles that are gone drop out of them and
    /// organizations the source no longer lists take theirs along.
    ///
    /// The source is read with no lock held (deliveries go on meanwhile);
    /// the replacement is then applied under the handler's lock only if the
    /// engine's policy is still the one read before the source was: a
    /// delivery applied during the read could be missing from what was
    /// read, and would be undone. Otherwise the source is read again, up to
    /// 4 times.
    ///
    /// Blocks for as long as the source takes.
    ///
    /// # Errors
    ///
    /// [`WebhookError::NoSource`], the source's error,
    /// [`WebhookError::Contended`] when the policy changed during every
    /// read, or the engine's error (for a source state that is not a valid
    /// policy).
    pub fn resync(&self) -> Result<Outcome, WebhookError> {
        let source = self.source.as_ref().ok_or(WebhookError::NoSource)?;
        for _ in 0..RESYNC_ATTEMPTS {
            let started = SystemTime::now();
            let before = self.engine.policy();
            let target = source.fetch_policy()?;
            let _serial = lock(&self.serial);
            if self.engine.policy() != before {
                continue;
            }
            let mut changes = vec![self.resync_record(started)];
            changes.extend(resync_changes(&before, &target));
            let outcome = self
                .engine
                .apply_batch(changes, ChangeMeta::by("scalekit:resync"))?;
            self.counters.resyncs.fetch_add(1, Ordering::Relaxed);
            #[cfg(feature = "tracing")]
            tracing::info!(revision = outcome.revision, "scalekit: full resync applied");
            return Ok(outcome);
        }
        Err(WebhookError::Contended {
            attempts: RESYNC_ATTEMPTS,
        })
    }

    /// Starts an engine that has no local state from the source: when the
    /// engine is at revision 0 (nothing was ever applied to it), runs a
    /// [`resync`](Self::resync) and returns `true`.
    ///
    /// Open a durable engine with an empty policy, then call this: the first
    /// start takes the source's state, every later start recovers the
    /// journal and lets webhooks catch up.
    ///
    /// # Errors
    ///
    /// As [`resync`](Self::resync).
    pub fn bootstrap(&self) -> Result<bool, WebhookError> {
        if self.engine.revision() != 0 {
            return Ok(false);
        }
        self.resync().map(|_| true)
    }

    fn resync_record(&self, started: SystemTime) -> Change {
        let skew = u64::try_from(self.options.resync_skew.as_nanos()).unwrap_or(u64::MAX);
        let at = nanos(started).saturating_sub(skew);
        // Never move the clock back (equal is accepted by the engine).
        let at = at.max(self.engine.entity_clock(RESYNC_ENTITY).unwrap_or(0));
        Change::RecordDelivery {
            id: format!("resync:{}", nanos(started)),
            received_ms: millis(started),
            entities: vec![EntityClock {
                entity: RESYNC_ENTITY.into(),
                occurred_at_ns: at,
            }],
            retention_ms: self.retention_ms(),
        }
    }

    fn retention_ms(&self) -> u64 {
        u64::try_from(self.options.retention.as_millis()).unwrap_or(u64::MAX)
    }

    fn finish(
        &self,
        outcome: WebhookOutcome,
        delivery: Option<&str>,
        event_type: Option<&str>,
    ) -> WebhookOutcome {
        self.counters.count(&outcome);
        #[cfg(feature = "tracing")]
        trace(&outcome, delivery, event_type);
        #[cfg(not(feature = "tracing"))]
        let _ = (delivery, event_type);
        outcome
    }

    fn process(&self, id: &str, event: &Event, now: SystemTime) -> WebhookOutcome {
        if matches!(event.kind, EventKind::Other) {
            return WebhookOutcome::Ignored {
                event_type: event.event_type.clone(),
                reason: "rolegraph does not act on this event type".into(),
            };
        }
        let Some(occurred) = event.occurred_at_ns else {
            return WebhookOutcome::Malformed(WebhookError::MalformedEvent {
                reason: format!("`{}` has no `occurred_at`", event.event_type),
            });
        };
        // A redelivery needs no fetch (checked again under the lock).
        if self.engine.delivered(id) {
            return WebhookOutcome::Duplicate { id: id.to_owned() };
        }
        let mut fetched = Fetched::default();
        for _ in 0..MAX_ATTEMPTS {
            let step = {
                let _serial = lock(&self.serial);
                self.attempt(id, event, occurred, now, &fetched)
            };
            match step {
                Step::Done(outcome) => return outcome,
                Step::Fetch(need) => {
                    if let Err(e) = self.fetch(need, &mut fetched) {
                        return self.retry_later(e);
                    }
                }
                Step::Again => {}
            }
        }
        self.retry_later(WebhookError::MissingDependency {
            what: format!(
                "the state kept moving while the source was read ({MAX_ATTEMPTS} attempts)"
            ),
        })
    }

    /// One attempt under the handler's lock: decide on the current state,
    /// with what was fetched so far, and apply — or say what to fetch.
    fn attempt(
        &self,
        id: &str,
        event: &Event,
        occurred: u64,
        now: SystemTime,
        fetched: &Fetched,
    ) -> Step {
        if self.engine.delivered(id) {
            return Step::Done(WebhookOutcome::Duplicate { id: id.to_owned() });
        }
        if let Some(stale) = self.tombstoned(event, occurred) {
            return Step::Done(stale);
        }
        match self.plan(event, occurred, fetched) {
            Ok(plan) => self.execute(id, event, plan, now, fetched),
            Err(step) => step,
        }
    }

    /// Reads what `need` names from the source; called with no lock held.
    fn fetch(&self, need: Need, fetched: &mut Fetched) -> Result<(), WebhookError> {
        let Some(source) = &self.source else {
            return Err(WebhookError::MissingDependency {
                what: format!("{need:?} needs a source, and none is configured"),
            });
        };
        match need {
            Need::RolePermissions(org, name) => {
                let permissions = source.fetch_role_permissions(org.as_deref(), &name)?;
                fetched.permissions.insert((org, name), permissions);
            }
            Need::Roles(roles) => {
                for (org, name) in roles {
                    let found = fetch_role(source.as_ref(), org.as_deref(), &name)?;
                    if found.is_some() {
                        self.counters.fetched_roles.fetch_add(1, Ordering::Relaxed);
                    }
                    fetched.roles.insert((org, name), found);
                }
            }
            Need::UserRoles(org, user) => {
                let roles = source.fetch_user_roles(&org, &user)?;
                fetched.user_roles.insert((org, user), roles);
            }
            Need::Policy => {
                let before = self.engine.policy();
                let target = source.fetch_policy()?;
                fetched.policy = Some((before, target));
            }
        }
        Ok(())
    }

    /// `Stale` when `entity` already saw an event newer than `occurred`
    /// (checked before fetching for an event the engine would refuse).
    fn stale(&self, entity: &str, occurred: u64) -> Option<WebhookOutcome> {
        let last = self.engine.entity_clock(entity)?;
        (last > occurred).then(|| WebhookOutcome::Stale {
            entity: entity.to_owned(),
            last_ns: last,
            got_ns: occurred,
        })
    }

    /// An event older than the deletion of its organization, or (for what a
    /// resync covers) older than the last resync.
    fn tombstoned(&self, event: &Event, occurred: u64) -> Option<WebhookOutcome> {
        let (org, covered_by_resync) = match &event.kind {
            EventKind::DirectoryUser { user, .. } => (user.organization_id.clone(), false),
            EventKind::Membership { membership, .. } => (membership.organization_id.clone(), false),
            EventKind::DirectoryGroup { group, .. } => (group.organization_id.clone(), true),
            EventKind::Role { role, .. } => (
                role.organization_id
                    .clone()
                    .or_else(|| event.organization_id.clone()),
                true,
            ),
            EventKind::Permission { .. } | EventKind::OrganizationDeleted { .. } => (None, true),
            EventKind::Other => (None, false),
        };
        let mut checks = Vec::with_capacity(2);
        if let Some(org) = org {
            checks.push(format!("organization:{org}"));
        }
        if covered_by_resync {
            checks.push(RESYNC_ENTITY.to_owned());
        }
        checks.into_iter().find_map(|entity| {
            let last = self.engine.entity_clock(&entity)?;
            (last > occurred).then_some(WebhookOutcome::Stale {
                entity,
                last_ns: last,
                got_ns: occurred,
            })
        })
    }

    fn user_key(&self, id: &str, email: Option<&str>) -> Option<String> {
        match self.options.user_key {
            UserKey::DirectoryUserId => Some(id.to_owned()).filter(|s| !s.is_empty()),
            UserKey::Email => normalized_email(email),
        }
    }

    /// The Scalekit user id a directory event about `email` in `org` (its
    /// membership keyed by `key`) also updates: the one a membership event
    /// linked to that email last, when that user is still a member and no
    /// newer event than `occurred` changed their membership. Links are
    /// learned and followed by email whatever [`UserKey`] says: directory
    /// events and membership events share no other key.
    fn linked_user(
        &self,
        snapshot: &Snapshot,
        org: &str,
        (key, email): (&str, Option<&str>),
        occurred: u64,
    ) -> Option<String> {
        let email = normalized_email(email)?;
        let prefix = link_prefix(org, &email);
        let (user, _) = self
            .engine
            .entity_clocks_with_prefix(&prefix)
            .into_iter()
            .filter_map(|(entity, at)| {
                let user = entity.get(prefix.len()..)?;
                (!user.is_empty() && !user.contains('>')).then(|| (user.to_owned(), at))
            })
            // The latest link; ties by id, so the choice is deterministic.
            .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)))?;
        let newer = self
            .engine
            .entity_clock(&user_entity(org, &user))
            .is_some_and(|at| at > occurred);
        (snapshot.membership(org, &user).is_some() && !newer && user != key).then_some(user)
    }

    /// What `event` becomes on the current state, or what to fetch first.
    fn plan(&self, event: &Event, occurred: u64, fetched: &Fetched) -> Result<Plan, Step> {
        let malformed = |reason: String| {
            Step::Done(WebhookOutcome::Malformed(WebhookError::MalformedEvent {
                reason,
            }))
        };
        let ignored = |reason: &str| {
            Step::Done(WebhookOutcome::Ignored {
                event_type: event.event_type.clone(),
                reason: reason.to_owned(),
            })
        };
        let snapshot = self.engine.snapshot();
        match &event.kind {
            EventKind::DirectoryUser { change, user } => {
                let org = user.organization_id.clone().unwrap_or_default();
                let key = self
                    .user_key(&user.id, user.email.as_deref())
                    .ok_or_else(|| {
                        malformed(format!(
                            "`{}` has no `data.email`, and memberships are keyed by email",
                            event.event_type
                        ))
                    })?;
                let linked =
                    self.linked_user(&snapshot, &org, (&key, user.email.as_deref()), occurred);
                let inactive = user.active == Some(false);
                let mut plan = if *change == Lifecycle::Deleted {
                    removal(org.clone(), key, occurred)
                } else {
                    self.membership_plan(
                        &snapshot,
                        occurred,
                        org.clone(),
                        key,
                        &user.roles,
                        inactive,
                    )
                };
                // The same user's membership by Scalekit user id, which a
                // token's `sub` finds first, follows the directory.
                if let Some(user_id) = linked {
                    plan.linked = Some(user_entity(&org, &user_id));
                    let also = if *change == Lifecycle::Deleted {
                        removal(org, user_id, occurred)
                    } else {
                        self.membership_plan(
                            &snapshot,
                            occurred,
                            org,
                            user_id,
                            &user.roles,
                            inactive,
                        )
                    };
                    plan.entities.extend(also.entities);
                    plan.changes.extend(also.changes);
                    plan.dropped.extend(also.dropped);
                }
                Ok(plan)
            }
            EventKind::Membership { change, membership } => {
                let Some(org) = membership.organization_id.clone().filter(|o| !o.is_empty()) else {
                    return Err(ignored("the payload names no organization"));
                };
                // The key directory events use, when it is the email.
                let email_key = self.user_key("", membership.email.as_deref());
                let Some(user_id) = membership.user_id.clone().filter(|u| !u.trim().is_empty())
                else {
                    let Some(key) = email_key else {
                        return Err(ignored(
                            "the payload names no scalekit user id, and no email to key by",
                        ));
                    };
                    return match (change, &membership.roles) {
                        (Lifecycle::Deleted, _) => Ok(removal(org, key, occurred)),
                        (_, Some(roles)) => {
                            Ok(self.membership_plan(&snapshot, occurred, org, key, roles, false))
                        }
                        (_, None) => Err(ignored(
                            "the payload names no scalekit user id and carries no role names",
                        )),
                    };
                };
                if *change == Lifecycle::Deleted {
                    // The user left the organization: the membership directory
                    // events keyed by their email goes with it.
                    let mut plan = removal(org.clone(), user_id.clone(), occurred);
                    if let Some(key) = email_key.filter(|k| *k != user_id) {
                        let by_email = removal(org, key, occurred);
                        plan.entities.extend(by_email.entities);
                        plan.changes.extend(by_email.changes);
                    }
                    return Ok(plan);
                }
                let roles = match &membership.roles {
                    Some(roles) => roles.clone(),
                    None => match fetched.user_roles.get(&(org.clone(), user_id.clone())) {
                        Some(Some(roles)) => roles.clone(),
                        // The source knows no such membership (any more): the
                        // user is not a member, whatever the older event said.
                        Some(None) => return Ok(removal(org, user_id, occurred)),
                        None => {
                            if let Some(stale) = self.stale(&user_entity(&org, &user_id), occurred)
                            {
                                return Err(Step::Done(stale));
                            }
                            if self.source.is_none() {
                                return Err(Step::Done(self.retry_later(
                                    WebhookError::MissingDependency {
                                        what: format!(
                                            "the roles of `{user_id}` in `{org}`: the event carries none, and no source is configured to fetch them"
                                        ),
                                    },
                                )));
                            }
                            return Err(Step::Fetch(Need::UserRoles(org, user_id)));
                        }
                    },
                };
                let link = normalized_email(membership.email.as_deref())
                    .map(|email| link_entity(&org, &email, &user_id));
                let mut plan =
                    self.membership_plan(&snapshot, occurred, org, user_id, &roles, false);
                // Directory events name this user by email only: remember
                // who the email is, so that they reach this membership too.
                plan.entities.extend(link.map(|entity| EntityClock {
                    entity,
                    occurred_at_ns: occurred,
                }));
                Ok(plan)
            }
            EventKind::DirectoryGroup { change, group } => {
                let org = group.organization_id.clone().unwrap_or_default();
                let entity = format!("group:{org}/{}", group.id);
                let mut changes = Vec::new();
                let org_known = snapshot.roles_for_groups(&org, [""; 0]).is_ok();
                if *change == Lifecycle::Deleted && org_known {
                    let mut names = vec![group.id.clone()];
                    names.extend(group.display_name.clone().filter(|n| *n != group.id));
                    for name in names {
                        changes.push(Change::SetGroupRoles {
                            organization: org.clone(),
                            group: name,
                            roles: Vec::new(),
                        });
                    }
                }
                Ok(Plan::new(entity, occurred, changes))
            }
            EventKind::Role { change, role } => {
                let org = role
                    .organization_id
                    .clone()
                    .or_else(|| event.organization_id.clone())
                    .filter(|o| !o.is_empty());
                let entity = role_entity(org.as_deref(), &role.name);
                let exists = role_exists(&snapshot, org.as_deref(), &role.name);
                if *change == Lifecycle::Deleted {
                    let mut plan = Plan::new(entity, occurred, Vec::new());
                    if exists {
                        plan.changes.push(Change::DeleteRole {
                            organization: org.clone(),
                            name: role.name.clone(),
                            reassign_to: None,
                            reparent: None,
                        });
                        plan.deletes_role = Some((org, role.name.clone()));
                    }
                    return Ok(plan);
                }
                let (extends, dropped) = self.keep_live_roles(
                    &snapshot,
                    org.as_deref(),
                    role.extends.iter().cloned(),
                    occurred,
                );
                let mut changes = Vec::new();
                if let Some(o) = &org {
                    changes.push(Change::CreateOrganization { id: o.clone() });
                }
                let permissions = match (&role.permissions, &self.source) {
                    (Some(names), _) => Some(names.clone()),
                    (None, Some(_)) => {
                        let key = (org.clone(), role.name.clone());
                        let Some(granted) = fetched.permissions.get(&key) else {
                            if let Some(stale) = self.stale(&entity, occurred) {
                                return Err(Step::Done(stale));
                            }
                            return Err(Step::Fetch(Need::RolePermissions(key.0, key.1)));
                        };
                        for p in granted.iter().filter(|p| !p.name.contains('*')) {
                            changes.push(Change::CreatePermission {
                                name: p.name.clone(),
                                description: p.description.clone(),
                            });
                        }
                        Some(granted.iter().map(|p| p.name.clone()).collect())
                    }
                    (None, None) => None,
                };
                if exists {
                    changes.push(Change::UpdateRole {
                        organization: org,
                        name: role.name.clone(),
                        display_name: role.display_name.clone(),
                        description: role.description.clone(),
                        permissions,
                        extends: Some(extends),
                    });
                } else {
                    changes.push(Change::CreateRole {
                        organization: org,
                        role: Role {
                            name: role.name.clone(),
                            display_name: role.display_name.clone(),
                            description: role.description.clone(),
                            permissions: permissions.unwrap_or_default(),
                            extends,
                        },
                    });
                }
                let mut plan = Plan::new(entity, occurred, changes);
                plan.dropped = dropped;
                Ok(plan)
            }
            EventKind::Permission { change, permission } => {
                let entity = format!("permission:{}", permission.name);
                let name = permission.name.clone();
                let changes = match change {
                    Lifecycle::Created => vec![Change::CreatePermission {
                        name,
                        description: permission.description.clone(),
                    }],
                    Lifecycle::Updated => vec![
                        Change::CreatePermission {
                            name: name.clone(),
                            description: None,
                        },
                        Change::UpdatePermission {
                            name,
                            description: permission.description.clone(),
                        },
                    ],
                    Lifecycle::Deleted => vec![Change::DeletePermission { name }],
                };
                Ok(Plan::new(entity, occurred, changes))
            }
            EventKind::OrganizationDeleted { id } => Ok(Plan::new(
                format!("organization:{id}"),
                occurred,
                vec![Change::DeleteOrganization { id: id.clone() }],
            )),
            EventKind::Other => Err(ignored("rolegraph does not act on this event type")),
        }
    }

    /// The changes that make `key`'s roles in `org` exactly `roles` (none
    /// for an `inactive` user).
    fn membership_plan(
        &self,
        snapshot: &Snapshot,
        occurred: u64,
        org: String,
        key: String,
        roles: &[String],
        inactive: bool,
    ) -> Plan {
        let entity = user_entity(&org, &key);
        let listed = if inactive { &[][..] } else { roles };
        let (kept, dropped) =
            self.keep_live_roles(snapshot, Some(&org), listed.iter().cloned(), occurred);
        let set = |roles: Vec<String>| Change::SetMembership {
            organization: org.clone(),
            user: key.clone(),
            roles,
            // Scalekit's list is the whole truth: local group mappings must
            // not add to it (nor the default role to users in no mapped group).
            groups: Some(Vec::new()),
            creator: false,
        };
        let changes = if listed.is_empty() && !inactive && self.options.default_member_role {
            // A new membership without roles gets the default member role
            // (the organization's, else the environment's), decided by the
            // engine on the state it applies to.
            vec![
                Change::RemoveMembership {
                    organization: org.clone(),
                    user: key.clone(),
                },
                set(Vec::new()),
            ]
        } else if kept.is_empty() {
            // Make sure the membership exists first, so that the engine does
            // not give a new one the default role.
            vec![
                Change::AddMembershipRoles {
                    organization: org.clone(),
                    user: key.clone(),
                    roles: Vec::new(),
                },
                set(Vec::new()),
            ]
        } else {
            vec![set(kept)]
        };
        let mut plan = Plan::new(entity, occurred, changes);
        plan.dropped = dropped;
        plan
    }

    /// Splits role names into those to keep and those deleted after the
    /// event occurred (a deletion already applied removed them from where
    /// this older event would put them back).
    fn keep_live_roles(
        &self,
        snapshot: &Snapshot,
        org: Option<&str>,
        names: impl Iterator<Item = String>,
        occurred: u64,
    ) -> (Vec<String>, Vec<String>) {
        let mut kept = Vec::new();
        let mut dropped = Vec::new();
        for name in names {
            if snapshot.role(org, &name).is_some() {
                kept.push(name);
                continue;
            }
            let mut deleted_at = self.engine.entity_clock(&role_entity(None, &name));
            if org.is_some() {
                deleted_at = deleted_at.max(self.engine.entity_clock(&role_entity(org, &name)));
            }
            if deleted_at.is_some_and(|at| at >= occurred) {
                dropped.push(name);
            } else {
                kept.push(name);
            }
        }
        (kept, dropped)
    }

    fn retry_later(&self, error: WebhookError) -> WebhookOutcome {
        WebhookOutcome::RetryLater {
            error,
            after: self.options.retry_after,
        }
    }

    /// Applies `plan` with the delivery record, under the handler's lock.
    /// Roles the engine finds missing are taken from what was fetched (only
    /// those still missing now), or asked for.
    fn execute(
        &self,
        id: &str,
        event: &Event,
        plan: Plan,
        now: SystemTime,
        fetched: &Fetched,
    ) -> Step {
        let record = Change::RecordDelivery {
            id: id.to_owned(),
            received_ms: millis(now),
            entities: plan.entities.clone(),
            retention_ms: self.retention_ms(),
        };
        let meta = ChangeMeta::by(format!("scalekit:{}", event.id)).at(millis(now));
        let applied = |outcome: Outcome, fetched: Vec<String>, resynced: bool| {
            WebhookOutcome::Applied(Box::new(Applied {
                id: id.to_owned(),
                event_type: event.event_type.clone(),
                outcome,
                fetched,
                resynced,
                dropped: plan.dropped.clone(),
            }))
        };
        let mut prefix: Vec<Change> = Vec::new();
        let mut labels: Vec<String> = Vec::new();
        let mut tried: BTreeSet<(Option<String>, String)> = BTreeSet::new();
        for _ in 0..MAX_FETCH_ROUNDS {
            let mut batch = Vec::with_capacity(1 + prefix.len() + plan.changes.len());
            batch.push(record.clone());
            batch.extend(prefix.iter().cloned());
            batch.extend(plan.changes.iter().cloned());
            let error = match self.engine.apply_batch(batch, meta.clone()) {
                Ok(outcome) => return Step::Done(applied(outcome, labels, false)),
                Err(e) => e,
            };
            match error {
                ChangeError::Duplicate { id } => {
                    return Step::Done(WebhookOutcome::Duplicate { id })
                }
                ChangeError::Stale { entity, .. } if plan.linked.as_ref() == Some(&entity) => {
                    return Step::Again
                }
                ChangeError::Stale {
                    entity,
                    last_ns,
                    got_ns,
                } => {
                    return Step::Done(WebhookOutcome::Stale {
                        entity,
                        last_ns,
                        got_ns,
                    })
                }
                ChangeError::HasDependents { .. } if plan.deletes_role.is_some() => {
                    let (org, name) = plan.deletes_role.clone().unwrap_or_default();
                    return match self.delete_with_dependents(record, meta, org, name, now, fetched)
                    {
                        Ok((outcome, resynced)) => Step::Done(applied(outcome, labels, resynced)),
                        Err(step) => step,
                    };
                }
                ChangeError::Journal(_) => {
                    return Step::Done(self.retry_later(WebhookError::Change(error)))
                }
                // Only another writer can remove an organization between the
                // plan and the batch: decide again on the next delivery.
                ChangeError::UnknownOrganization { .. } => {
                    return Step::Done(self.retry_later(WebhookError::MissingDependency {
                        what: error.to_string(),
                    }))
                }
                _ => {}
            }
            let Some(missing) = missing_roles(&error) else {
                return Step::Done(WebhookOutcome::Rejected(WebhookError::Change(error)));
            };
            if self.source.is_none() {
                return Step::Done(self.retry_later(WebhookError::MissingDependency {
                    what: error.to_string(),
                }));
            }
            let mut progress = false;
            let mut need = Vec::new();
            for (org, name) in missing {
                if !tried.insert((org.clone(), name.clone())) {
                    continue;
                }
                let Some(found) = fetched.roles.get(&(org.clone(), name.clone())) else {
                    need.push((org, name));
                    continue;
                };
                let Some((scope, role)) = found.clone() else {
                    continue;
                };
                if let Some(o) = &scope {
                    prefix.push(Change::CreateOrganization { id: o.clone() });
                }
                for p in role.permissions.iter().filter(|p| !p.contains('*')) {
                    prefix.push(Change::CreatePermission {
                        name: p.clone(),
                        description: None,
                    });
                }
                labels.push(role_label(scope.as_deref(), &role.name));
                prefix.push(Change::CreateRole {
                    organization: scope,
                    role,
                });
                progress = true;
            }
            if !need.is_empty() {
                return Step::Fetch(Need::Roles(need));
            }
            if !progress {
                return Step::Done(self.retry_later(WebhookError::MissingDependency {
                    what: error.to_string(),
                }));
            }
        }
        Step::Done(self.retry_later(WebhookError::MissingDependency {
            what: format!("more than {MAX_FETCH_ROUNDS} rounds of missing roles"),
        }))
    }

    /// A deleted role that other roles still extend: with a source, resync
    /// from it (whatever Scalekit did to the dependents is then mirrored),
    /// then delete; without one (or if the source's state does not apply),
    /// detach the dependents. Either way members holding the role lose it,
    /// and the outcome lists every role and user changed.
    ///
    /// The source's state is used only if the engine's policy is still the
    /// one read before it; otherwise it is read again.
    fn delete_with_dependents(
        &self,
        record: Change,
        meta: ChangeMeta,
        org: Option<String>,
        name: String,
        now: SystemTime,
        fetched: &Fetched,
    ) -> Result<(Outcome, bool), Step> {
        let delete = Change::DeleteRole {
            organization: org,
            name,
            reassign_to: None,
            reparent: Some(Reparent::Detach),
        };
        if self.source.is_some() {
            let Some((before, target)) = &fetched.policy else {
                return Err(Step::Fetch(Need::Policy));
            };
            if self.engine.policy() != *before {
                return Err(Step::Fetch(Need::Policy));
            }
            let mut batch = vec![record.clone(), self.resync_record(now)];
            batch.extend(resync_changes(before, target));
            batch.push(delete.clone());
            match self.engine.apply_batch(batch, meta.clone()) {
                Ok(outcome) => {
                    self.counters.resyncs.fetch_add(1, Ordering::Relaxed);
                    return Ok((outcome, true));
                }
                Err(e @ ChangeError::Journal(_)) => {
                    return Err(Step::Done(self.retry_later(WebhookError::Change(e))))
                }
                Err(_e) => {
                    #[cfg(feature = "tracing")]
                    tracing::warn!(error = %_e, "scalekit: the source's state does not apply; detaching instead");
                }
            }
        }
        let done = |o: WebhookOutcome| Err(Step::Done(o));
        match self.engine.apply_batch(vec![record, delete], meta) {
            Ok(outcome) => Ok((outcome, false)),
            Err(e @ ChangeError::Journal(_)) => done(self.retry_later(WebhookError::Change(e))),
            Err(ChangeError::Duplicate { id }) => done(WebhookOutcome::Duplicate { id }),
            Err(e) => done(WebhookOutcome::Rejected(WebhookError::Change(e))),
        }
    }
}

/// A user leaving an organization.
fn removal(org: String, key: String, occurred: u64) -> Plan {
    let entity = user_entity(&org, &key);
    let changes = vec![Change::RemoveMembership {
        organization: org,
        user: key,
    }];
    Plan::new(entity, occurred, changes)
}

/// Whether role `name` exists in exactly that scope.
fn role_exists(snapshot: &Snapshot, org: Option<&str>, name: &str) -> bool {
    snapshot
        .role(org, name)
        .is_some_and(|id| snapshot.role_organization(id) == org)
}

/// The roles an engine error says are missing (as organization, name), or
/// `None` when the error is not (only) about missing roles.
fn missing_roles(error: &ChangeError) -> Option<Vec<(Option<String>, String)>> {
    match error {
        ChangeError::UnknownMembershipRole { organization, role } => {
            Some(vec![(Some(organization.clone()), role.clone())])
        }
        ChangeError::UnknownRole { organization, name } => {
            Some(vec![(organization.clone(), name.clone())])
        }
        ChangeError::Invalid(e) => {
            let mut out = Vec::new();
            for p in e.problems() {
                match p {
                    Problem::UnknownBaseRole {
                        organization, base, ..
                    } => out.push((organization.clone(), base.clone())),
                    Problem::UnknownGroupRole {
                        organization, role, ..
                    } => out.push((Some(organization.clone()), role.clone())),
                    Problem::UnknownDefaultRole {
                        organization, role, ..
                    } => out.push((organization.clone(), role.clone())),
                    _ => return None,
                }
            }
            (!out.is_empty()).then_some(out)
        }
        _ => None,
    }
}

/// Role `name` as seen from `org`: the organization's own role, else the
/// environment role.
fn fetch_role(
    source: &dyn Source,
    org: Option<&str>,
    name: &str,
) -> Result<Option<(Option<String>, Role)>, super::source::SourceError> {
    if let Some(o) = org {
        if let Some(role) = source.fetch_role(Some(o), name)? {
            return Ok(Some((Some(o.to_owned()), role)));
        }
    }
    Ok(source.fetch_role(None, name)?.map(|r| (None, r)))
}

#[cfg(feature = "tracing")]
fn trace(outcome: &WebhookOutcome, delivery: Option<&str>, event_type: Option<&str>) {
    let delivery = delivery.unwrap_or("-");
    let event_type = event_type.unwrap_or("-");
    match outcome {
        WebhookOutcome::Applied(a) => tracing::debug!(
            delivery,
            event_type,
            revision = a.outcome.revision,
            "scalekit webhook applied"
        ),
        WebhookOutcome::Duplicate { .. } => {
            tracing::debug!(delivery, event_type, "scalekit webhook: duplicate delivery")
        }
        WebhookOutcome::Stale { entity, .. } => {
            tracing::debug!(delivery, event_type, entity = %entity, "scalekit webhook: stale event")
        }
        WebhookOutcome::Ignored { reason, .. } => {
            tracing::debug!(delivery, event_type, reason = %reason, "scalekit webhook ignored")
        }
        WebhookOutcome::Rejected(e) => {
            tracing::warn!(delivery, event_type, error = %e, "scalekit webhook rejected: it would break the policy")
        }
        WebhookOutcome::Malformed(e) => {
            tracing::warn!(delivery, event_type, error = %e, "scalekit webhook malformed")
        }
        WebhookOutcome::Unauthorized(e) => {
            tracing::warn!(error = %e, "scalekit webhook signature refused")
        }
        WebhookOutcome::RetryLater { error, .. } => {
            tracing::info!(delivery, event_type, error = %error, "scalekit webhook deferred: retry later")
        }
        WebhookOutcome::Failed(e) => {
            tracing::error!(delivery, event_type, error = %e, "scalekit webhook failed")
        }
    }
}
