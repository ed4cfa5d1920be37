//! The live engine: lock-free reads of the current snapshot, one writer that
//! applies changes incrementally and publishes, a revision counter, a change
//! feed, an audit history, and (when opened on a directory) a durable journal.

mod model;
mod patch;

use std::path::Path;
use std::sync::{mpsc, Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

use crate::change::{Change, ChangeError, ChangeMeta, Outcome};
use crate::check::{Principal, Requirement};
use crate::compile::compile_with;
use crate::journal::{Journal, JournalError};
use crate::model::Policy;
use crate::snapshot::{Data, Snapshot};
use model::{Effects, Model};

/// An accepted batch of changes, as the journal records it and the change
/// feed delivers it: the audit log's unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Entry {
    /// The revision the batch was published at.
    pub revision: u64,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Who made it, when the change said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// The changes, in order.
    pub changes: Vec<Change>,
    /// Every membership the batch changed: roles before and after.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub memberships: Vec<RolesChanged>,
}

/// One user's roles in one organization, before and after a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolesChanged {
    /// The organization.
    pub organization: String,
    /// The user key.
    pub user: String,
    /// Roles before (empty when the user was not a member).
    pub before: Vec<String>,
    /// Roles after (empty when the membership was removed).
    pub after: Vec<String>,
}

/// One step of a user's role history in an organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoleAssignment {
    /// The revision of the change.
    pub revision: u64,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Who made it.
    pub actor: Option<String>,
    /// Roles before.
    pub before: Vec<String>,
    /// Roles after.
    pub after: Vec<String>,
}

/// Counters and timestamps of the writer, for dashboards and health checks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Stats {
    /// The current revision.
    pub revision: u64,
    /// Batches accepted (no-op batches included) since the engine started.
    pub accepted: u64,
    /// Batches rejected since the engine started.
    pub rejected: u64,
    /// When the last batch was accepted (ms since the Unix epoch).
    pub last_accepted_ms: Option<u64>,
    /// When the last batch was rejected (ms since the Unix epoch).
    pub last_rejected_ms: Option<u64>,
    /// Why the last batch was rejected.
    pub last_error: Option<String>,
    /// Published batches whose policy change was patched incrementally.
    pub incremental_compiles: u64,
    /// Published batches that needed the full compiler (role deletions,
    /// organization changes, several structural changes at once).
    pub full_compiles: u64,
}

/// Who may make a guarded assignment: any of these roles (or a role
/// extending one) or any of these permissions.
///
/// The default is Scalekit's documented rule: role `admin`, or permission
/// `users.write` or `roles.assign`. Names the policy does not declare are
/// left out when the guard is checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignmentGuard {
    /// Roles that may assign.
    pub roles: Vec<String>,
    /// Permissions that may assign.
    pub permissions: Vec<String>,
}

impl Default for AssignmentGuard {
    fn default() -> Self {
        Self {
            roles: vec!["admin".into()],
            permissions: vec!["users.write".into(), "roles.assign".into()],
        }
    }
}

impl AssignmentGuard {
    /// The guard as a requirement on `snapshot`, leaving out undeclared names.
    fn resolve(&self, snapshot: &Snapshot) -> Result<Requirement, ChangeError> {
        let mut parts = Vec::new();
        for role in &self.roles {
            if let Ok(r) = Requirement::role(snapshot, role) {
                parts.push(r);
            }
        }
        let declared: Vec<&String> = self
            .permissions
            .iter()
            .filter(|p| snapshot.permission_id(p).is_some())
            .collect();
        if let Ok(r) = Requirement::any_of(snapshot, declared) {
            parts.push(r);
        }
        parts
            .into_iter()
            .reduce(Requirement::or)
            .ok_or_else(|| ChangeError::GuardUnavailable {
                reason: format!(
                    "none of the guard's roles ({}) or permissions ({}) exists in the policy",
                    quoted(&self.roles),
                    quoted(&self.permissions)
                ),
            })
    }
}

fn quoted(items: &[String]) -> String {
    if items.is_empty() {
        return "none".into();
    }
    items
        .iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How an engine opened on a directory behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct EngineOptions {
    /// Write a checkpoint after this many accepted batches (0: never;
    /// default 10,000). A checkpoint serializes the whole state while the
    /// writer waits (about 180 ms at 100,000 roles and memberships); replay
    /// of the journal after it is cheap (model updates, then one compile).
    pub checkpoint_every: u64,
    /// fsync every journal record before reporting success (default true;
    /// turning it off is for tests and benchmarks only).
    pub sync: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            checkpoint_every: 10_000,
            sync: true,
        }
    }
}

/// Setters: the struct is `#[non_exhaustive]`, so code outside the crate
/// starts from [`EngineOptions::default`] and changes what it needs.
///
/// # Examples
///
/// ```
/// use rolegraph::{Engine, EngineOptions, Policy};
///
/// let dir = tempfile::tempdir()?;
/// let options = EngineOptions::default()
///     .with_checkpoint_every(100)
///     .with_sync(false);
/// assert_eq!((options.checkpoint_every, options.sync), (100, false));
/// let engine = Engine::open_with(dir.path(), &Policy::new(), options)?;
/// # drop(engine);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
impl EngineOptions {
    /// Sets [`checkpoint_every`](Self::checkpoint_every).
    #[must_use]
    pub fn with_checkpoint_every(mut self, batches: u64) -> Self {
        self.checkpoint_every = batches;
        self
    }

    /// Sets [`sync`](Self::sync).
    #[must_use]
    pub fn with_sync(mut self, sync: bool) -> Self {
        self.sync = sync;
        self
    }
}

/// The engine could not be opened on its directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The journal or checkpoint could not be read or is corrupt.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The initial policy is invalid.
    #[error("{0}")]
    Invalid(#[from] crate::compile::CompileError),
    /// A record or checkpoint decoded to something the engine cannot use.
    #[error("cannot recover `{path}`: {reason}")]
    Recovery {
        /// The directory.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

/// The live policy: cheap to clone, `Send + Sync`.
///
/// Readers call [`snapshot`](Self::snapshot) once per request — one
/// lock-free load — and keep a consistent view for the whole request; a
/// reader is never blocked by a writer and never sees a half-applied change.
/// Writers are serialized: a batch is applied to a copy of the model,
/// compiled (incrementally where it can be), journaled when the engine is
/// durable, and only then published with the next revision.
///
/// # Examples
///
/// ```
/// use rolegraph::{Change, ChangeMeta, Engine, Policy, Requirement};
///
/// let mut policy = Policy::new();
/// policy.permission("projects:read").permission("projects:update");
/// policy.role("viewer").grant("projects:read");
/// let engine = Engine::new(&policy)?;
/// let update = Requirement::permission(&engine.snapshot(), "projects:update")?;
/// assert!(!engine.snapshot().principal(None, ["viewer"]).satisfies(&update));
///
/// engine.apply(
///     Change::GrantPermission { organization: None, role: "viewer".into(), permission: "projects:update".into() },
///     ChangeMeta::by("alice"),
/// )?;
/// assert!(engine.snapshot().principal(None, ["viewer"]).satisfies(&update));
/// assert_eq!(engine.snapshot().revision(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
}

struct Shared {
    current: ArcSwap<Data>,
    writer: Mutex<Writer>,
    stats: Mutex<Stats>,
    feed: Mutex<Vec<mpsc::Sender<Arc<Entry>>>>,
}

struct Writer {
    model: Model,
    journal: Option<Journal>,
    history: Vec<Arc<Entry>>,
    guard: AssignmentGuard,
    options: EngineOptions,
    since_checkpoint: u64,
    /// The reverse inheritance graph of the published policy, for the
    /// incremental recompiler.
    reverse: patch::Reverse,
}

/// What a checkpoint holds.
#[derive(Serialize, Deserialize)]
struct Checkpoint {
    revision: u64,
    policy: Policy,
    memberships: Vec<StoredMembership>,
    #[serde(default)]
    deliveries: Vec<(String, u64)>,
    #[serde(default)]
    clocks: Vec<(String, u64)>,
}

#[derive(Serialize, Deserialize)]
struct StoredMembership {
    organization: String,
    user: String,
    #[serde(flatten)]
    membership: crate::membership::Membership,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock cannot leave our state half-written: the
    // model is replaced whole, so the data behind a poisoned lock is sound.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Engine {
    /// An in-memory engine starting from `policy` at revision 0.
    ///
    /// # Errors
    ///
    /// The policy's [`CompileError`](crate::CompileError).
    pub fn new(policy: &Policy) -> Result<Self, crate::compile::CompileError> {
        let snapshot = policy.compile()?;
        Ok(Self::start(
            Model::from_policy(policy),
            snapshot,
            0,
            None,
            Vec::new(),
            EngineOptions::default(),
        ))
    }

    /// A durable engine on `dir`: recovers the state found there (the last
    /// checkpoint plus the journal after it), or starts from `initial` when
    /// the directory holds no state yet.
    ///
    /// # Errors
    ///
    /// [`OpenError`] when the journal is corrupt anywhere but its tail (a
    /// torn tail is truncated to the last whole record), cannot be read or
    /// written, or the initial policy is invalid.
    pub fn open(dir: impl AsRef<Path>, initial: &Policy) -> Result<Self, OpenError> {
        Self::open_with(dir, initial, EngineOptions::default())
    }

    /// [`open`](Self::open) with options.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub fn open_with(
        dir: impl AsRef<Path>,
        initial: &Policy,
        options: EngineOptions,
    ) -> Result<Self, OpenError> {
        let dir = dir.as_ref();
        let (mut journal, recovery) = Journal::open_with(
            dir,
            crate::journal::JournalOptions::new().with_sync(options.sync),
        )?;
        #[cfg(feature = "tracing")]
        if let Some(bytes) = recovery.truncated_tail {
            tracing::warn!(bytes, dir = %dir.display(), "rolegraph journal: cut a torn tail (an unacknowledged write)");
        }
        let bad = |reason: String| OpenError::Recovery {
            path: dir.display().to_string(),
            reason,
        };
        let (mut model, mut revision) = match &recovery.checkpoint {
            Some((_, bytes)) => {
                let cp: Checkpoint = serde_json::from_slice(bytes)
                    .map_err(|e| bad(format!("checkpoint does not decode: {e}")))?;
                let mut model = Model::from_policy(&cp.policy);
                for (id, at) in cp.deliveries {
                    model.delivery_times.insert((at, id.clone()), ());
                    model.deliveries.insert(id, at);
                }
                for (entity, at) in cp.clocks {
                    model.clocks.insert(entity, at);
                }
                for m in cp.memberships {
                    let orgs = model.members.entry(Arc::from(m.user.as_str())).or_default();
                    orgs.insert(Arc::from(m.organization.as_str()), Arc::new(m.membership));
                }
                (model, cp.revision)
            }
            None if !recovery.records.is_empty() => {
                return Err(bad("journal records but no checkpoint".into()));
            }
            None => {
                initial.compile()?;
                let model = Model::from_policy(initial);
                journal.checkpoint(0, &checkpoint_bytes(&model, 0))?;
                (model, 0)
            }
        };
        let mut history = Vec::with_capacity(recovery.records.len());
        for (rev, bytes) in &recovery.records {
            let entry: Entry = serde_json::from_slice(bytes)
                .map_err(|e| bad(format!("journal record {rev} does not decode: {e}")))?;
            if *rev > revision {
                let mut fx = Effects::default();
                for change in &entry.changes {
                    model
                        .apply(change, &mut fx)
                        .map_err(|e| bad(format!("journal record {rev} does not replay: {e}")))?;
                }
                revision = *rev;
            }
            history.push(Arc::new(entry));
        }
        let snapshot = model.to_policy().compile()?;
        Ok(Self::start(
            model,
            snapshot,
            revision,
            Some(journal),
            history,
            options,
        ))
    }

    fn start(
        model: Model,
        snapshot: Snapshot,
        revision: u64,
        journal: Option<Journal>,
        history: Vec<Arc<Entry>>,
        options: EngineOptions,
    ) -> Self {
        let data = Data {
            revision,
            core: Arc::clone(&snapshot.arc().core),
            members: model.members.clone(),
        };
        Self {
            shared: Arc::new(Shared {
                current: ArcSwap::from_pointee(data),
                writer: Mutex::new(Writer {
                    model,
                    journal,
                    history,
                    guard: AssignmentGuard::default(),
                    options,
                    since_checkpoint: 0,
                    reverse: None,
                }),
                stats: Mutex::new(Stats {
                    revision,
                    ..Stats::default()
                }),
                feed: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The current snapshot: one lock-free load. Keep it for the whole
    /// request (it stays valid however many changes are published
    /// meanwhile); do not hold it for long-lived work, which would pin old
    /// policies in memory.
    #[must_use]
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::from_arc(self.shared.current.load_full())
    }

    /// The current revision.
    #[must_use]
    pub fn revision(&self) -> u64 {
        self.shared.current.load().revision
    }

    /// The current policy, as a policy file would write it.
    #[must_use]
    pub fn policy(&self) -> Policy {
        lock(&self.shared.writer).model.to_policy()
    }

    /// Counters and the last rejection.
    #[must_use]
    pub fn stats(&self) -> Stats {
        lock(&self.shared.stats).clone()
    }

    /// Applies one change; see [`apply_batch`](Self::apply_batch).
    ///
    /// # Errors
    ///
    /// As [`apply_batch`](Self::apply_batch).
    pub fn apply(&self, change: Change, meta: ChangeMeta) -> Result<Outcome, ChangeError> {
        self.apply_batch(vec![change], meta)
    }

    /// Applies a batch atomically: all of it or nothing.
    ///
    /// On success the new snapshot is published with the next revision (after
    /// the journal has it on disk, for a durable engine). A batch that
    /// changes nothing publishes nothing and keeps the revision.
    ///
    /// # Errors
    ///
    /// A [`ChangeError`]: the compiler's errors for a batch that would make
    /// the policy invalid, or what the change itself names wrongly. The
    /// previous snapshot keeps serving and the revision does not move.
    pub fn apply_batch(
        &self,
        changes: Vec<Change>,
        meta: ChangeMeta,
    ) -> Result<Outcome, ChangeError> {
        let mut writer = lock(&self.shared.writer);
        let result = self.apply_locked(&mut writer, changes, meta);
        // Recorded before the writer lock goes, so concurrent writers record
        // in revision order.
        self.record(&result);
        drop(writer);
        result
    }

    fn record(&self, result: &Result<Outcome, ChangeError>) {
        let mut stats = lock(&self.shared.stats);
        match result {
            Ok(outcome) => {
                stats.accepted += 1;
                stats.revision = outcome.revision;
                stats.last_accepted_ms = Some(now_ms());
                #[cfg(feature = "tracing")]
                tracing::debug!(
                    revision = outcome.revision,
                    changed = outcome.changed,
                    "rolegraph change accepted"
                );
            }
            // A redelivery or a stale event is an answer, not a failure.
            Err(ChangeError::Duplicate { .. } | ChangeError::Stale { .. }) => {}
            Err(e) => {
                stats.rejected += 1;
                stats.last_rejected_ms = Some(now_ms());
                stats.last_error = Some(e.to_string());
                #[cfg(feature = "tracing")]
                tracing::warn!(error = %e, "rolegraph change rejected");
            }
        }
    }

    fn apply_locked(
        &self,
        writer: &mut Writer,
        changes: Vec<Change>,
        meta: ChangeMeta,
    ) -> Result<Outcome, ChangeError> {
        if changes.is_empty() {
            return Err(ChangeError::Malformed(
                "a batch needs at least one change".into(),
            ));
        }
        let current = self.shared.current.load_full();
        let mut draft = writer.model.clone();
        let mut fx = Effects::default();
        for change in &changes {
            draft.apply(change, &mut fx)?;
        }
        let mut outcome = std::mem::take(&mut fx.outcome);
        outcome.revision = current.revision;
        if !outcome.changed {
            return Ok(outcome);
        }
        let mut full = false;
        let core = match patch::patch(&current.core, &draft, &fx, &mut writer.reverse) {
            Some(core) => core,
            None => {
                full = true;
                let previous = Snapshot::from_arc(Arc::clone(&current));
                let compiled = compile_with(&draft.to_policy(), Some(&previous))
                    .map_err(ChangeError::Invalid)?;
                Arc::clone(&compiled.arc().core)
            }
        };
        // Memberships must name roles that exist where they are held.
        let mut memberships = Vec::new();
        fx.members.sort();
        fx.members.dedup();
        for (org, user) in &fx.members {
            let after = draft.membership(org, user);
            if let Some(m) = after {
                let scope = core.scope_number(Some(org));
                if let Some(role) = m
                    .roles
                    .iter()
                    .find(|r| core.resolve_role(scope, r).is_none())
                {
                    return Err(ChangeError::UnknownMembershipRole {
                        organization: org.clone(),
                        role: role.clone(),
                    });
                }
            }
            memberships.push(RolesChanged {
                organization: org.clone(),
                user: user.clone(),
                before: writer
                    .model
                    .membership(org, user)
                    .map(|m| m.roles.clone())
                    .unwrap_or_default(),
                after: after.map(|m| m.roles.clone()).unwrap_or_default(),
            });
        }
        let revision = current.revision + 1;
        let entry = Entry {
            revision,
            at_ms: meta.at_ms.unwrap_or_else(now_ms),
            actor: meta.actor,
            changes,
            memberships,
        };
        if let Some(journal) = writer.journal.as_mut() {
            let bytes = serde_json::to_vec(&entry)
                .map_err(|e| ChangeError::Journal(format!("cannot encode: {e}")))?;
            journal
                .append(revision, &bytes)
                .map_err(|e| ChangeError::Journal(e.to_string()))?;
        }
        // Publish: from here on nothing can fail.
        let core_before = Arc::clone(&current.core);
        let published_core = Arc::clone(&core);
        self.shared.current.store(Arc::new(Data {
            revision,
            core,
            members: draft.members.clone(),
        }));
        writer.model = draft;
        let entry = Arc::new(entry);
        writer.history.push(Arc::clone(&entry));
        lock(&self.shared.feed).retain(|tx| tx.send(Arc::clone(&entry)).is_ok());
        writer.since_checkpoint += 1;
        let every = writer.options.checkpoint_every;
        if every > 0 && writer.since_checkpoint >= every && writer.journal.is_some() {
            let bytes = checkpoint_bytes(&writer.model, revision);
            if let Some(journal) = writer.journal.as_mut() {
                // The change is already durable in the journal; a failed
                // checkpoint only makes the next recovery longer.
                if journal.checkpoint(revision, &bytes).is_ok() {
                    writer.since_checkpoint = 0;
                }
            }
        }
        if !Arc::ptr_eq(&core_before, &published_core) {
            let mut stats = lock(&self.shared.stats);
            if full {
                stats.full_compiles += 1;
            } else {
                stats.incremental_compiles += 1;
            }
        }
        outcome.revision = revision;
        outcome.roles_affected.sort();
        outcome.roles_reparented.sort();
        outcome.users_affected.sort();
        outcome.users_affected.dedup();
        Ok(outcome)
    }

    /// Subscribes to accepted batches, in revision order, from now on.
    ///
    /// The receiver gets every batch accepted after this call; combine with
    /// [`entries_since`](Self::entries_since) to catch up from an older
    /// revision first. A dropped receiver is forgotten at the next change.
    #[must_use]
    pub fn subscribe(&self) -> mpsc::Receiver<Arc<Entry>> {
        let (tx, rx) = mpsc::channel();
        lock(&self.shared.feed).push(tx);
        rx
    }

    /// Every accepted batch with a revision greater than `revision`, in order
    /// (from the journal for a durable engine: the whole audit history).
    #[must_use]
    pub fn entries_since(&self, revision: u64) -> Vec<Arc<Entry>> {
        let writer = lock(&self.shared.writer);
        let start = writer.history.partition_point(|e| e.revision <= revision);
        writer.history.get(start..).unwrap_or(&[]).to_vec()
    }

    /// The history of `user`'s roles in `organization`: who changed them,
    /// when, and from what to what.
    #[must_use]
    pub fn user_role_history(&self, organization: &str, user: &str) -> Vec<RoleAssignment> {
        let writer = lock(&self.shared.writer);
        writer
            .history
            .iter()
            .flat_map(|e| {
                e.memberships
                    .iter()
                    .filter(|m| m.organization == organization && m.user == user)
                    .map(|m| RoleAssignment {
                        revision: e.revision,
                        at_ms: e.at_ms,
                        actor: e.actor.clone(),
                        before: m.before.clone(),
                        after: m.after.clone(),
                    })
            })
            .collect()
    }

    /// Every accepted batch that changed the role `name` of `organization`
    /// (`None`: an environment role) or a permission it had.
    #[must_use]
    pub fn role_history(&self, organization: Option<&str>, name: &str) -> Vec<Arc<Entry>> {
        let writer = lock(&self.shared.writer);
        writer
            .history
            .iter()
            .filter(|e| {
                e.changes
                    .iter()
                    .any(|c| mentions_role(c, organization, name))
            })
            .cloned()
            .collect()
    }

    /// Whether the delivery `id` was applied (and is still remembered: see
    /// [`Change::RecordDelivery`]).
    #[must_use]
    pub fn delivered(&self, id: &str) -> bool {
        lock(&self.shared.writer).model.deliveries.contains_key(id)
    }

    /// How many delivery ids are remembered.
    #[must_use]
    pub fn deliveries_len(&self) -> usize {
        lock(&self.shared.writer).model.deliveries.len()
    }

    /// The `occurred_at` (ns) of the last event applied to `entity`.
    #[must_use]
    pub fn entity_clock(&self, entity: &str) -> Option<u64> {
        lock(&self.shared.writer).model.clocks.get(entity).copied()
    }

    /// Sets who may make guarded assignments.
    ///
    /// # Errors
    ///
    /// [`ChangeError::GuardUnavailable`] when none of its names exists in the
    /// current policy: the guard is set anyway, and every guarded assignment
    /// is refused until the policy declares one of them.
    pub fn set_assignment_guard(&self, guard: AssignmentGuard) -> Result<(), ChangeError> {
        let check = guard.resolve(&self.snapshot()).map(|_| ());
        lock(&self.shared.writer).guard = guard;
        check
    }

    /// Sets `user`'s roles in `organization` on behalf of `actor`, if the
    /// actor meets the assignment guard and every role exists there.
    ///
    /// Only `actor` is checked, as given: build it from the current snapshot
    /// (for example [`Snapshot::user_principal`]) so that a right revoked a
    /// moment ago no longer counts.
    ///
    /// # Errors
    ///
    /// [`ChangeError::Forbidden`], [`ChangeError::GuardUnavailable`],
    /// [`ChangeError::UnknownMembershipRole`], or the usual change errors.
    pub fn assign_roles(
        &self,
        actor: &Principal,
        actor_name: &str,
        organization: &str,
        user: &str,
        roles: &[&str],
    ) -> Result<Outcome, ChangeError> {
        let mut writer = lock(&self.shared.writer);
        let result = (|| {
            let snapshot = self.snapshot();
            let requirement = writer.guard.resolve(&snapshot)?;
            if !actor.satisfies(&requirement) {
                return Err(ChangeError::Forbidden {
                    actor: actor_name.to_owned(),
                    organization: organization.to_owned(),
                    requirement: requirement.to_string(),
                });
            }
            if let Some(role) = roles
                .iter()
                .find(|r| snapshot.role(Some(organization), r).is_none())
            {
                return Err(ChangeError::UnknownMembershipRole {
                    organization: organization.to_owned(),
                    role: (*role).to_owned(),
                });
            }
            let change = Change::SetMembership {
                organization: organization.to_owned(),
                user: user.to_owned(),
                roles: roles.iter().map(|r| (*r).to_owned()).collect(),
                groups: None,
                creator: false,
            };
            self.apply_locked(&mut writer, vec![change], ChangeMeta::by(actor_name))
        })();
        self.record(&result);
        drop(writer);
        result
    }

    /// Writes a checkpoint now (durable engines; a no-op in memory).
    ///
    /// # Errors
    ///
    /// The journal's error when the checkpoint cannot be written.
    pub fn checkpoint(&self) -> Result<(), JournalError> {
        let mut writer = lock(&self.shared.writer);
        if writer.journal.is_none() {
            return Ok(());
        }
        let revision = self.revision();
        let bytes = checkpoint_bytes(&writer.model, revision);
        if let Some(journal) = writer.journal.as_mut() {
            journal.checkpoint(revision, &bytes)?;
        }
        writer.since_checkpoint = 0;
        Ok(())
    }
}

fn mentions_role(change: &Change, organization: Option<&str>, name: &str) -> bool {
    let is = |org: &Option<String>, n: &str| org.as_deref() == organization && n == name;
    match change {
        Change::CreateRole { organization, role } => is(organization, &role.name),
        Change::UpdateRole {
            organization, name, ..
        }
        | Change::DeleteRole {
            organization, name, ..
        } => is(organization, name),
        Change::GrantPermission {
            organization, role, ..
        }
        | Change::RevokePermission {
            organization, role, ..
        } => is(organization, role),
        _ => false,
    }
}

fn checkpoint_bytes(model: &Model, revision: u64) -> Vec<u8> {
    let mut memberships = Vec::new();
    for (user, orgs) in model.members.iter() {
        for (org, m) in orgs.iter() {
            memberships.push(StoredMembership {
                organization: org.to_string(),
                user: user.to_string(),
                membership: (**m).clone(),
            });
        }
    }
    let cp = Checkpoint {
        revision,
        policy: model.to_policy(),
        memberships,
        deliveries: model
            .deliveries
            .iter()
            .map(|(id, at)| (id.clone(), *at))
            .collect(),
        clocks: model
            .clocks
            .iter()
            .map(|(e, at)| (e.clone(), *at))
            .collect(),
    };
    serde_json::to_vec(&cp).unwrap_or_default()
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("revision", &self.revision())
            .finish_non_exhaustive()
    }
}
