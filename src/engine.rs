//! The live engine: lock-free reads of the current snapshot, one writer that
//! applies changes incrementally and publishes, a revision counter, a change
//! feed, an audit history, and (when opened on a directory) a durable journal.

mod model;
mod patch;
#[cfg(feature = "redis")]
pub(crate) mod replica;
mod watch;

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

use crate::change::{Change, ChangeError, ChangeMeta, Outcome};
use crate::check::{Principal, Requirement};
use crate::compile::compile_with;
use crate::journal::{read_history, CheckpointTicket, Journal, JournalError, LogEnd, Rotation};
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
    /// Checkpoints written since the engine started.
    pub checkpoints_written: u64,
    /// Checkpoints that failed since the engine started. Each failure
    /// doubles the wait before the next automatic attempt (up to 64 times
    /// [`EngineOptions::checkpoint_every`]); the journal keeps every change
    /// durable meanwhile, only recovery gets longer.
    pub checkpoint_failures: u64,
    /// Why the last checkpoint failed, while it is the latest attempt
    /// (cleared by the next success).
    pub last_checkpoint_error: Option<String>,
    /// The revision of the last checkpoint this engine wrote.
    pub last_checkpoint_revision: Option<u64>,
    /// A checkpoint is being written in the background.
    pub checkpoint_in_progress: bool,
    /// Batches applied from the fleet's shared log (written by other
    /// instances), since the engine started.
    pub remote_applied: u64,
    /// Times this engine replaced its state with a fleet checkpoint because
    /// the shared log no longer held the entries it needed.
    pub fleet_checkpoint_loads: u64,
    /// Checkpoints this engine's tail could not publish to the fleet (they
    /// are retried with a growing wait; the shared log is trimmed only
    /// below a published one, so nothing is lost meanwhile).
    pub fleet_checkpoint_failures: u64,
    /// Why the last fleet checkpoint could not be published, while it is
    /// the latest attempt (cleared by the next success).
    pub last_fleet_checkpoint_error: Option<String>,
    /// Why the shared log is not being followed right now (Redis
    /// unreachable, a refused entry), cleared when it is again.
    pub fleet_error: Option<String>,
    /// The shared log's entry id at which this engine's tail stopped
    /// because the entry was corrupt or foreign: it is never applied nor
    /// skipped, and writes fail until an operator repairs the log.
    pub fleet_stopped_at: Option<String>,
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

/// The guard's names as a message lists them: each capped as
/// [`crate::text::Quote`] caps it, and at most [`QUOTED_NAMES`] of them,
/// then how many more, so a guard of a million long names costs a line.
fn quoted(items: &[String]) -> String {
    if items.is_empty() {
        return "none".into();
    }
    use std::fmt::Write as _;
    let shown = items.get(..QUOTED_NAMES).unwrap_or(items);
    let mut out = crate::text::QuoteList(shown).to_string();
    if items.len() > shown.len() {
        let _ = write!(out, " and {} more", items.len() - shown.len());
    }
    out
}

/// The most guard names [`quoted`] lists.
const QUOTED_NAMES: usize = 8;

/// How an engine opened on a directory behaves.
///
/// Build it with the `with_…` setters from [`EngineOptions::default`].
///
/// # Examples
///
/// ```
/// use rolegraph::{EngineOptions, Existing};
///
/// let options = EngineOptions::default()
///     .with_required_revision(41)
///     .with_on_existing(Existing::Reconcile);
/// assert_eq!(options.required_revision, Some(41));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct EngineOptions {
    /// Write a checkpoint after this many accepted batches (0: never;
    /// default 10,000). The state is copied in O(1) under the writer lock
    /// and encoded and written by a background thread, so neither writers
    /// nor readers wait for it. A failed checkpoint is retried after twice
    /// as many batches each time (up to 64 times the interval), and is
    /// reported in [`Stats`] and [`Outcome::checkpoint_error`].
    pub checkpoint_every: u64,
    /// fsync every journal record before reporting success (default true;
    /// turning it off is for tests and benchmarks only).
    pub sync: bool,
    /// Refuse to open when recovery ends below this revision
    /// ([`OpenError::Behind`]): for a caller that knows the last revision
    /// it had acknowledged (default `None`: any revision).
    pub required_revision: Option<u64>,
    /// What to do with the `initial` policy when the directory already
    /// holds state (default [`Existing::KeepJournal`]).
    pub on_existing: Existing,
    /// How many journal segments older than the last checkpoint's to keep
    /// (default `None`: all, the whole audit history). Each written
    /// checkpoint seals the segment it was taken in (its own, always kept)
    /// and starts a new one; with `Some(n)`, it deletes the segments beyond
    /// the `n` before its own, and history older than
    /// the oldest kept segment is gone from
    /// [`entries_since`](Engine::entries_since) and the other history reads.
    pub retain_segments: Option<usize>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            checkpoint_every: 10_000,
            required_revision: None,
            on_existing: Existing::KeepJournal,
            sync: true,
            retain_segments: None,
        }
    }
}

/// What [`Engine::open`] does with its `initial` policy when the directory
/// already holds state. Either way `initial` is validated first: an invalid
/// policy is an [`OpenError::Invalid`], never silently ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Existing {
    /// The journal is the source of truth: `initial` only seeds an empty
    /// directory. Changes made through the engine since then are kept.
    #[default]
    KeepJournal,
    /// `initial` is the source of truth (a policy file kept in git, say):
    /// after recovery, the difference between the journal's policy and
    /// `initial` is applied as one audited batch (actor `rolegraph-reconcile`)
    /// and reported in [`Recovery::reconciled`]. Memberships are kept; a
    /// difference that would leave a membership naming a deleted role is
    /// refused with [`OpenError::Reconcile`].
    Reconcile,
}

impl EngineOptions {
    /// Sets [`required_revision`](Self::required_revision): opening fails
    /// with [`OpenError::Behind`] when recovery ends below `revision`.
    #[must_use]
    pub const fn with_required_revision(mut self, revision: u64) -> Self {
        self.required_revision = Some(revision);
        self
    }

    /// Sets [`retain_segments`](Self::retain_segments).
    #[must_use]
    pub const fn with_retain_segments(mut self, keep: Option<usize>) -> Self {
        self.retain_segments = keep;
        self
    }

    /// Sets [`on_existing`](Self::on_existing).
    #[must_use]
    pub const fn with_on_existing(mut self, existing: Existing) -> Self {
        self.on_existing = existing;
        self
    }
}

/// What [`Engine::recover`] did to bring a directory back: returned next to
/// the engine, and kept for [`Engine::recovery`].
///
/// A crash can tear at most the one record being written when it struck,
/// which was never acknowledged; [`dropped_bytes`](Self::dropped_bytes) says
/// whether that happened. Anything worse is an [`OpenError`], not a report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Recovery {
    /// The revision the engine serves after recovery.
    pub revision: u64,
    /// The directory held no state: the engine started from `initial`.
    pub fresh: bool,
    /// The revision of the checkpoint recovery started from, if any.
    pub checkpoint_revision: Option<u64>,
    /// Journal records replayed on top of the checkpoint.
    pub records_replayed: u64,
    /// Bytes cut from the end of the journal: a record torn by a crash
    /// mid-write (never acknowledged). 0 for a clean journal.
    pub dropped_bytes: u64,
    /// Records those bytes belonged to: 0 or 1 (appends are sequential and
    /// synced one by one, so a crash tears at most one).
    pub dropped_records: u64,
    /// The revision of the reconciling batch, when
    /// [`Existing::Reconcile`] found a difference to apply.
    pub reconciled: Option<u64>,
}

impl Recovery {
    /// Whether recovery dropped nothing from the journal.
    #[must_use]
    pub fn is_clean(&self) -> bool {
        self.dropped_bytes == 0
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
    /// Recovery ended below [`EngineOptions::required_revision`]: the
    /// directory lost changes the caller knows were acknowledged (a restored
    /// backup, another machine's disk). Nothing on disk is changed beyond
    /// cutting a torn tail (a write that was never acknowledged).
    #[error("`{path}` recovered revision `{recovered}`, below the required revision `{required}`")]
    Behind {
        /// The directory.
        path: String,
        /// The revision recovery reached.
        recovered: u64,
        /// The revision the caller required.
        required: u64,
    },
    /// [`Existing::Reconcile`] could not apply the difference to `initial`.
    #[error("cannot reconcile `{path}` with the initial policy: {source}")]
    Reconcile {
        /// The directory.
        path: String,
        /// Why the reconciling batch was refused.
        source: ChangeError,
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
/// # Blocking
///
/// - Never wait: [`snapshot`](Self::snapshot), [`revision`](Self::revision),
///   [`policy`](Self::policy), [`delivered`](Self::delivered),
///   [`entity_clock`](Self::entity_clock), [`stats`](Self::stats), and the
///   histories' latest 10,000 batches: they read published, immutable state.
/// - Wait for other writers and, when durable, their own journal fsync:
///   [`apply`](Self::apply), [`apply_batch`](Self::apply_batch),
///   [`assign_roles`](Self::assign_roles). Automatic checkpoints run on a
///   background thread and add nothing to them.
/// - Read or write files: [`open`](Self::open) / [`recover`](Self::recover),
///   [`checkpoint`](Self::checkpoint), and history older than the latest
///   10,000 batches ([`entries_since`](Self::entries_since) and friends).
///
/// From async code, call the last two groups in `spawn_blocking` (or a
/// dedicated thread); the first group is fine on the executor.
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
    /// The model and audit history at the published revision, for the
    /// readers (`policy`, `delivered`, `entity_clock`, `entries_since`, …)
    /// that must never wait on the writer.
    state: ArcSwap<State>,
    /// Shared with the checkpoint thread, which takes it for a moment to
    /// start the next log segment (without keeping the engine alive).
    writer: Arc<Mutex<Writer>>,
    stats: Mutex<Stats>,
    feed: Mutex<Vec<Subscriber>>,
    checkpoints: Arc<Checkpoints>,
    recovery: Option<Recovery>,
    /// The journal's directory, for history older than what memory keeps.
    journal_dir: Option<std::path::PathBuf>,
    /// The published revision, for [`Engine::wait_for_revision`].
    watch: watch::Watch,
    /// Set when the last handle goes: the fleet's tail thread ends.
    #[cfg(feature = "redis")]
    closing: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The last handle is gone: finish a checkpoint in flight, so that the
        // directory (whose lock the checkpoint shares) can be reopened as
        // soon as the engine is dropped.
        #[cfg(feature = "redis")]
        self.closing.store(true, Ordering::Release);
        self.checkpoints.join();
    }
}

/// The writer's end of one subscription.
struct Subscriber {
    tx: mpsc::SyncSender<Arc<Entry>>,
    /// The first revision not delivered, once the queue overflowed (0: none).
    lagged: Arc<AtomicU64>,
}

/// How many batches a [`Subscription`] from [`Engine::subscribe`] holds
/// before it lags.
pub const FEED_CAPACITY: usize = 1024;

/// One item of the change feed: see [`Engine::subscribe`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Feed {
    /// An accepted batch.
    Entry(Arc<Entry>),
    /// The subscriber fell a whole queue behind and was cut off: batches
    /// from revision `resume_from` on were not delivered, and nothing more
    /// will be. Subscribe again, then read
    /// [`entries_since(resume_from - 1)`](Engine::entries_since), skipping
    /// revisions the new subscription also delivers.
    Lagged {
        /// The first revision the subscriber missed.
        resume_from: u64,
    },
}

/// The receiving end of the change feed: accepted batches in revision
/// order, then — only if the subscriber fell [its capacity](Engine::subscribe_with_capacity)
/// behind — one [`Feed::Lagged`], then the end. The writer never waits for
/// a subscriber.
#[derive(Debug)]
pub struct Subscription {
    rx: mpsc::Receiver<Arc<Entry>>,
    lagged: Arc<AtomicU64>,
}

impl Subscription {
    /// The next item, waiting for it.
    ///
    /// # Errors
    ///
    /// [`RecvError`](mpsc::RecvError) once the feed has ended: the engine
    /// is gone, or the [`Feed::Lagged`] was delivered.
    pub fn recv(&self) -> Result<Feed, mpsc::RecvError> {
        match self.rx.recv() {
            Ok(entry) => Ok(Feed::Entry(entry)),
            Err(e) => self.lag().ok_or(e),
        }
    }

    /// The next item if there is one now.
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`](mpsc::TryRecvError::Empty) when nothing is
    /// waiting, [`TryRecvError::Disconnected`](mpsc::TryRecvError::Disconnected)
    /// once the feed has ended.
    pub fn try_recv(&self) -> Result<Feed, mpsc::TryRecvError> {
        match self.rx.try_recv() {
            Ok(entry) => Ok(Feed::Entry(entry)),
            Err(mpsc::TryRecvError::Disconnected) => {
                self.lag().ok_or(mpsc::TryRecvError::Disconnected)
            }
            Err(e) => Err(e),
        }
    }

    /// The next item, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`try_recv`](Self::try_recv), with a timeout for `Empty`.
    pub fn recv_timeout(
        &self,
        timeout: std::time::Duration,
    ) -> Result<Feed, mpsc::RecvTimeoutError> {
        match self.rx.recv_timeout(timeout) {
            Ok(entry) => Ok(Feed::Entry(entry)),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                self.lag().ok_or(mpsc::RecvTimeoutError::Disconnected)
            }
            Err(e) => Err(e),
        }
    }

    /// Every item waiting now, without blocking.
    pub fn try_iter(&self) -> impl Iterator<Item = Feed> + '_ {
        std::iter::from_fn(|| self.try_recv().ok())
    }

    /// The lag notice, once, after the queued batches.
    fn lag(&self) -> Option<Feed> {
        match self.lagged.swap(0, Ordering::AcqRel) {
            0 => None,
            resume_from => Some(Feed::Lagged { resume_from }),
        }
    }
}

/// What readers see besides the snapshot: replaced whole at each publish.
#[derive(Clone, Default)]
struct State {
    revision: u64,
    model: Model,
    /// The most recent batches, at most [`HISTORY_IN_MEMORY`]; a durable
    /// engine reads older ones from the journal.
    history: imbl::Vector<Arc<Entry>>,
    /// The journal's end once the batch at `revision` was appended: every
    /// record before it is whole and synced.
    log_end: LogEnd,
}

/// How many of the latest batches the engine keeps in memory for the audit
/// history and the feed's catch-up; older ones are read from the journal on
/// demand (an in-memory engine forgets them).
#[cfg(not(test))]
const HISTORY_IN_MEMORY: usize = 10_000;
#[cfg(test)]
const HISTORY_IN_MEMORY: usize = 8;

struct Writer {
    model: Model,
    journal: Option<Journal>,
    guard: AssignmentGuard,
    options: EngineOptions,
    since_checkpoint: u64,
    /// The fleet's shared log, when the engine has joined one: every batch
    /// is appended there (compare-and-append) before it is journaled and
    /// published.
    #[cfg(feature = "redis")]
    log: Option<Box<dyn replica::SharedLog>>,
}

/// One try at a batch under the writer lock.
enum Attempt {
    /// The answer, to record before the lock goes.
    Done(Result<Outcome, ChangeError>),
    /// The fleet's log moved on first (the engine has caught up with it):
    /// try `changes` again after `wait`, with the writer lock released for
    /// the wait so that other local writers are not held by it.
    #[cfg(feature = "redis")]
    Retry {
        changes: Vec<Change>,
        wait: std::time::Duration,
    },
}

/// What [`Engine::prepare`] makes of a batch.
enum Prepared {
    /// The batch changes nothing: the answer, nothing to publish.
    Unchanged(Outcome),
    /// The batch, validated and compiled, to publish at the next revision.
    Ready(Box<Batch>),
}

/// A validated, compiled batch, not yet logged or published.
struct Batch {
    draft: Model,
    /// The published data the batch was prepared on: the membership index
    /// is updated from it.
    data_before: Arc<Data>,
    /// Whether the batch renames, renumbers or remaps roles (the index is
    /// then built again), and the memberships it touched.
    renamed: bool,
    touched: Vec<crate::membership::Touched>,
    core_before: Arc<crate::compiled::Core>,
    core: Arc<crate::compiled::Core>,
    full: bool,
    entry: Entry,
    outcome: Outcome,
}

/// Checkpoints in the background: at most one written at a time.
#[derive(Default)]
struct Checkpoints {
    /// Held while a checkpoint is encoded and written (only checkpoints wait
    /// on it).
    io: Mutex<()>,
    status: Mutex<CheckpointStatus>,
    worker: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Tests hold a checkpoint here, after the state is taken and before it
    /// is written, until they send on the paired sender.
    #[cfg(test)]
    gate: Mutex<Option<mpsc::Receiver<()>>>,
}

#[derive(Default)]
struct CheckpointStatus {
    in_progress: bool,
    last_written: Option<u64>,
    written: u64,
    failures: u64,
    /// Failures since the last success: the backoff exponent.
    consecutive: u32,
    last_error: Option<String>,
}

/// The longest backoff after failed checkpoints, as a power of two of the
/// interval.
const MAX_BACKOFF_SHIFT: u32 = 6;

impl Checkpoints {
    /// Encodes `model` and writes it with `ticket`, unless a newer
    /// checkpoint is already written; then starts the next log segment;
    /// records the result.
    ///
    /// The encoding and every write and sync happen outside the writer's
    /// lock, which is taken only for the rename that starts the segment
    /// ([`Journal::start_segment`]); the directory sync that makes it
    /// durable runs after that lock is released (an append that comes
    /// first syncs the directory itself). A checkpoint that fails leaves
    /// the journal's directory as it was.
    fn write(
        &self,
        ticket: CheckpointTicket,
        model: &Model,
        writer: &Mutex<Writer>,
    ) -> Result<(), JournalError> {
        let _io = lock(&self.io);
        #[cfg(test)]
        if let Some(gate) = lock(&self.gate).take() {
            let _ = gate.recv();
        }
        let revision = ticket.revision();
        let result = if lock(&self.status).last_written > Some(revision) {
            Ok(None)
        } else {
            checkpoint_bytes(model, revision).and_then(|bytes| ticket.write(&bytes))
        };
        let result = result.map(|next| {
            let Some(next) = next else { return };
            let rotation = match lock(writer).journal.as_mut() {
                Some(journal) => journal.start_segment(next),
                None => Rotation::Skipped(next),
            };
            match rotation {
                // A failed sync is redone by the next append, which
                // fails (and says so) if it cannot.
                Rotation::Started(dir_sync) => drop(dir_sync.sync()),
                Rotation::Skipped(next) => next.discard(),
                Rotation::Failed(next, _e) => {
                    #[cfg(feature = "tracing")]
                    tracing::warn!(error = %_e, revision, "rolegraph journal: cannot start a new segment");
                    next.discard();
                }
            }
        });
        let mut status = lock(&self.status);
        match &result {
            Ok(()) => {
                status.written += 1;
                status.consecutive = 0;
                status.last_error = None;
                status.last_written = status.last_written.max(Some(revision));
            }
            Err(e) => {
                status.failures += 1;
                status.consecutive = status.consecutive.saturating_add(1);
                status.last_error = Some(e.to_string());
                #[cfg(feature = "tracing")]
                tracing::warn!(error = %e, revision, "rolegraph checkpoint failed");
            }
        }
        result
    }

    /// Batches to wait after the last checkpoint attempt: `every`, doubled
    /// for each failure in a row.
    fn interval(&self, every: u64) -> u64 {
        let shift = lock(&self.status).consecutive.min(MAX_BACKOFF_SHIFT);
        every.saturating_mul(1 << shift)
    }

    fn join(&self) {
        if let Some(worker) = lock(&self.worker).take() {
            // A panicking checkpoint has nothing to hand back: its status
            // still says in progress, and the data on disk is whole.
            let _ = worker.join();
        }
    }
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

/// The actor of the batch [`Existing::Reconcile`] applies.
const RECONCILE_ACTOR: &str = "rolegraph-reconcile";

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
            imbl::Vector::new(),
            EngineOptions::default(),
            None,
        ))
    }

    /// A durable engine on `dir` with the default options: see
    /// [`recover`](Self::recover), which also returns what recovery did.
    /// That report stays available from [`recovery`](Self::recovery); check
    /// it (or set [`EngineOptions::required_revision`]) where losing the
    /// torn tail of a crash matters.
    ///
    /// # Blocking
    ///
    /// Reads the journal and compiles: call it before serving, or from
    /// `spawn_blocking` in async code.
    ///
    /// # Errors
    ///
    /// As [`recover`](Self::recover).
    pub fn open(dir: impl AsRef<Path>, initial: &Policy) -> Result<Self, OpenError> {
        Self::recover(dir, initial, EngineOptions::default()).map(|(engine, _)| engine)
    }

    /// [`open`](Self::open) with options.
    ///
    /// # Errors
    ///
    /// As [`recover`](Self::recover).
    pub fn open_with(
        dir: impl AsRef<Path>,
        initial: &Policy,
        options: EngineOptions,
    ) -> Result<Self, OpenError> {
        Self::recover(dir, initial, options).map(|(engine, _)| engine)
    }

    /// A durable engine on `dir`, and what recovery did: restores the last
    /// checkpoint plus the journal after it, or starts from `initial` when
    /// the directory holds no state yet.
    ///
    /// `initial` is always validated. For a directory that holds state,
    /// [`EngineOptions::on_existing`] says whether the journal or `initial`
    /// wins ([`Existing`]); the default keeps the journal.
    ///
    /// # Blocking
    ///
    /// Reads the journal and compiles: call it before serving, or from
    /// `spawn_blocking` in async code.
    ///
    /// # Errors
    ///
    /// [`OpenError`] when the journal is corrupt anywhere but its tail (a
    /// torn tail is truncated to the last whole record and reported in
    /// [`Recovery::dropped_bytes`]), cannot be read or written, the initial
    /// policy is invalid, recovery ends below
    /// [`EngineOptions::required_revision`], or a reconcile is refused.
    ///
    /// # Examples
    ///
    /// ```
    /// use rolegraph::{Engine, EngineOptions, OpenError, Policy};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let mut policy = Policy::new();
    /// policy.permission("docs:read");
    /// let (engine, recovery) = Engine::recover(dir.path(), &policy, EngineOptions::default())?;
    /// assert!(recovery.fresh && recovery.is_clean());
    /// drop(engine);
    ///
    /// // A caller that had acknowledged revision 3 refuses an older state.
    /// let options = EngineOptions::default().with_required_revision(3);
    /// let err = Engine::recover(dir.path(), &policy, options).unwrap_err();
    /// assert!(matches!(err, OpenError::Behind { recovered: 0, required: 3, .. }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recover(
        dir: impl AsRef<Path>,
        initial: &Policy,
        options: EngineOptions,
    ) -> Result<(Self, Recovery), OpenError> {
        let dir = dir.as_ref();
        initial.compile()?;
        let (mut journal, found) = Journal::open_with(
            dir,
            crate::journal::JournalOptions::new()
                .with_sync(options.sync)
                .with_read_all(false)
                .with_retain_segments(options.retain_segments),
        )?;
        let dropped_bytes = found.truncated_tail.unwrap_or(0);
        #[cfg(feature = "tracing")]
        if dropped_bytes > 0 {
            tracing::warn!(bytes = dropped_bytes, dir = %dir.display(), "rolegraph journal: cut a torn tail (an unacknowledged write)");
        }
        let path = dir.display().to_string();
        let bad = |reason: String| OpenError::Recovery {
            path: path.clone(),
            reason,
        };
        let mut report = Recovery {
            dropped_bytes,
            dropped_records: u64::from(dropped_bytes > 0),
            checkpoint_revision: found.checkpoint.as_ref().map(|(r, _)| *r),
            ..Recovery::default()
        };
        let (mut model, mut revision) = match &found.checkpoint {
            Some((_, bytes)) => model_from_checkpoint(bytes)
                .map_err(|e| bad(format!("checkpoint does not decode: {e}")))?,
            None if !found.records.is_empty() => {
                return Err(bad("journal records but no checkpoint".into()));
            }
            None => {
                let model = Model::from_policy(initial);
                let bytes = checkpoint_bytes(&model, 0)?;
                journal.checkpoint(0, &bytes)?;
                report.fresh = true;
                (model, 0)
            }
        };
        // Only the records after the checkpoint are decoded: older ones are
        // audit history, read from the journal when asked for.
        let mut history = imbl::Vector::new();
        for (rev, bytes) in &found.records {
            if *rev <= revision {
                continue;
            }
            let entry: Entry = serde_json::from_slice(bytes)
                .map_err(|e| bad(format!("journal record {rev} does not decode: {e}")))?;
            let mut fx = Effects::default();
            for change in &entry.changes {
                model
                    .apply(change, &mut fx)
                    .map_err(|e| bad(format!("journal record {rev} does not replay: {e}")))?;
            }
            revision = *rev;
            report.records_replayed += 1;
            history.push_back(Arc::new(entry));
            if history.len() > HISTORY_IN_MEMORY {
                history.pop_front();
            }
        }
        drop(found);
        report.revision = revision;
        if let Some(required) = options.required_revision {
            if revision < required {
                return Err(OpenError::Behind {
                    path,
                    recovered: revision,
                    required,
                });
            }
        }
        let snapshot = model.to_policy().compile()?;
        let reconcile = options.on_existing == Existing::Reconcile && !report.fresh;
        let mut engine = Self::start(
            model,
            snapshot,
            revision,
            Some(journal),
            history,
            options,
            None,
        );
        if reconcile {
            let changes = crate::change::reconcile_changes(&engine.policy(), initial);
            if !changes.is_empty() {
                let outcome = engine
                    .apply_batch(changes, ChangeMeta::by(RECONCILE_ACTOR))
                    .map_err(|source| OpenError::Reconcile {
                        path: path.clone(),
                        source,
                    })?;
                if outcome.changed {
                    report.reconciled = Some(outcome.revision);
                    report.revision = outcome.revision;
                }
            }
        }
        if let Some(shared) = Arc::get_mut(&mut engine.shared) {
            shared.recovery = Some(report.clone());
        }
        Ok((engine, report))
    }

    fn start(
        model: Model,
        snapshot: Snapshot,
        revision: u64,
        journal: Option<Journal>,
        history: imbl::Vector<Arc<Entry>>,
        options: EngineOptions,
        recovery: Option<Recovery>,
    ) -> Self {
        let data = Data::published(
            revision,
            Arc::clone(&snapshot.arc().core),
            model.members.clone(),
            None,
        );
        let journal_dir = journal.as_ref().map(|j| j.dir().to_path_buf());
        let state = State {
            revision,
            model: model.clone(),
            history,
            log_end: journal.as_ref().map(Journal::end).unwrap_or_default(),
        };
        Self {
            shared: Arc::new(Shared {
                current: ArcSwap::from_pointee(data),
                state: ArcSwap::from_pointee(state),
                writer: Arc::new(Mutex::new(Writer {
                    model,
                    journal,
                    guard: AssignmentGuard::default(),
                    options,
                    since_checkpoint: 0,
                    #[cfg(feature = "redis")]
                    log: None,
                })),
                stats: Mutex::new(Stats {
                    revision,
                    ..Stats::default()
                }),
                feed: Mutex::new(Vec::new()),
                checkpoints: Arc::default(),
                recovery,
                journal_dir,
                watch: watch::Watch::new(revision),
                #[cfg(feature = "redis")]
                closing: Arc::default(),
            }),
        }
    }

    /// What recovery did when this engine was opened on a directory
    /// (`None` for an in-memory engine); see [`recover`](Self::recover).
    #[must_use]
    pub fn recovery(&self) -> Option<&Recovery> {
        self.shared.recovery.as_ref()
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
    ///
    /// # Blocking
    ///
    /// Never waits on the writer: it reads the published state.
    #[must_use]
    pub fn policy(&self) -> Policy {
        self.shared.state.load().model.to_policy()
    }

    /// Counters, the last rejection and the checkpoints' health.
    #[must_use]
    pub fn stats(&self) -> Stats {
        let mut stats = lock(&self.shared.stats).clone();
        let status = lock(&self.shared.checkpoints.status);
        stats.checkpoints_written = status.written;
        stats.checkpoint_failures = status.failures;
        stats.last_checkpoint_error.clone_from(&status.last_error);
        stats.last_checkpoint_revision = status.last_written;
        stats.checkpoint_in_progress = status.in_progress;
        stats
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
    /// # Blocking
    ///
    /// Takes the writer lock, so it waits for other writers (`apply*`,
    /// [`assign_roles`](Self::assign_roles), the capture step of
    /// [`checkpoint`](Self::checkpoint)); a durable engine then appends and
    /// fsyncs one journal record (about a millisecond on an SSD) under it.
    /// Checkpoints due every [`EngineOptions::checkpoint_every`] batches are
    /// written by a background thread and never add to its latency. Readers
    /// ([`snapshot`](Self::snapshot), [`policy`](Self::policy),
    /// [`delivered`](Self::delivered), [`entity_clock`](Self::entity_clock),
    /// [`entries_since`](Self::entries_since) and the histories) never wait
    /// on it. From async code, call it in `spawn_blocking`.
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
        self.with_writer(changes, |writer, changes, conflicts| {
            self.apply_locked(writer, changes, &meta, conflicts)
        })
    }

    /// Runs `attempt` under the writer lock until it is done, and records
    /// its answer before the lock goes (so concurrent writers record in
    /// revision order). A fleet conflict's backoff is waited out with the
    /// lock released, then the batch is validated again from scratch under
    /// the lock re-acquired: whatever another writer published meanwhile is
    /// what it is checked against.
    #[cfg(feature = "redis")]
    fn with_writer(
        &self,
        mut changes: Vec<Change>,
        mut attempt: impl FnMut(&mut Writer, Vec<Change>, &mut u32) -> Attempt,
    ) -> Result<Outcome, ChangeError> {
        let mut conflicts = 0;
        loop {
            let mut writer = lock(&self.shared.writer);
            match attempt(&mut writer, changes, &mut conflicts) {
                Attempt::Done(result) => {
                    self.record(&result);
                    drop(writer);
                    return result;
                }
                Attempt::Retry {
                    changes: again,
                    wait,
                } => {
                    drop(writer);
                    self.conflict_wait(wait);
                    changes = again;
                }
            }
        }
    }

    /// Runs `attempt` under the writer lock, and records its answer before
    /// the lock goes (so concurrent writers record in revision order).
    #[cfg(not(feature = "redis"))]
    fn with_writer(
        &self,
        changes: Vec<Change>,
        mut attempt: impl FnMut(&mut Writer, Vec<Change>, &mut u32) -> Attempt,
    ) -> Result<Outcome, ChangeError> {
        let mut writer = lock(&self.shared.writer);
        let Attempt::Done(result) = attempt(&mut writer, changes, &mut 0);
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

    /// One try at a batch; `conflicts` counts the fleet conflicts this
    /// batch has lost so far.
    fn apply_locked(
        &self,
        writer: &mut Writer,
        changes: Vec<Change>,
        meta: &ChangeMeta,
        conflicts: &mut u32,
    ) -> Attempt {
        // In a fleet the shared log decides the order first.
        #[cfg(feature = "redis")]
        if writer.log.is_some() {
            return self.apply_shared(writer, changes, meta, conflicts);
        }
        #[cfg(not(feature = "redis"))]
        let _ = conflicts; // conflicts happen only in a fleet
        Attempt::Done(match self.prepare(writer, changes, meta) {
            Ok(Prepared::Unchanged(outcome)) => Ok(outcome),
            Ok(Prepared::Ready(batch)) => self.commit(writer, *batch),
            Err(e) => Err(e),
        })
    }

    /// Validates and compiles `changes` against the writer's model: the
    /// batch as it would be published at the next revision, or the answer
    /// when it changes nothing.
    fn prepare(
        &self,
        writer: &Writer,
        changes: Vec<Change>,
        meta: &ChangeMeta,
    ) -> Result<Prepared, ChangeError> {
        if changes.is_empty() {
            return Err(ChangeError::Malformed(
                "a batch needs at least one change".into(),
            ));
        }
        let current = self.shared.current.load_full();
        let mut draft = writer.model.clone();
        let mut fx = Effects::default();
        fx.reserve_members(changes.len());
        for change in &changes {
            draft.apply(change, &mut fx)?;
        }
        let mut outcome = std::mem::take(&mut fx.outcome);
        outcome.revision = current.revision;
        outcome.checkpoint_error = lock(&self.shared.checkpoints.status).last_error.clone();
        if !outcome.changed {
            return Ok(Prepared::Unchanged(outcome));
        }
        let mut full = false;
        let core = match patch::patch(&current.core, &draft, &fx) {
            Some(core) => core,
            None => {
                full = true;
                let compiled = compile_with(&draft.to_policy(), Some(&current.core))
                    .map_err(ChangeError::Invalid)?;
                Arc::new(compiled)
            }
        };
        // Memberships must name roles that exist where they are held.
        // Each membership once, in the order the batch first touched it,
        // with what it was before the batch and what it is after (recorded
        // then: no lookup). The roles resolved here are the ones the index
        // stores (no second resolution when it is built).
        let policy = Snapshot::policy_only(&core);
        let mut memberships = Vec::with_capacity(fx.members.len());
        let mut touched = Vec::with_capacity(fx.members.len());
        let afters = std::mem::take(&mut fx.members_after);
        for (((org, user), before), after) in
            fx.members.into_iter().zip(&fx.members_before).zip(afters)
        {
            let after = match after {
                Some(m) => match policy.index_roles(&org, &m) {
                    Ok(roles) => Some((m, roles)),
                    Err(role) => {
                        return Err(ChangeError::UnknownMembershipRole {
                            organization: org.to_string(),
                            role: role.clone(),
                        })
                    }
                },
                None => None,
            };
            memberships.push(RolesChanged {
                // Copied, not formatted (`to_string` goes through `Display`).
                organization: String::from(&*org),
                user: String::from(&*user),
                before: before.as_ref().map(|m| m.roles.clone()).unwrap_or_default(),
                after: after
                    .as_ref()
                    .map(|(m, _)| m.roles.clone())
                    .unwrap_or_default(),
            });
            touched.push(((org, user), after));
        }
        let entry = Entry {
            revision: current.revision + 1,
            at_ms: meta.at_ms.unwrap_or_else(now_ms),
            actor: meta.actor.clone(),
            changes,
            memberships,
        };
        // A batch that renames, renumbers or remaps roles changes how every
        // membership resolves: the index is built again; else only the
        // memberships it touched are resolved again.
        let renamed = full || fx.structural || fx.defaults || !fx.created.is_empty();
        Ok(Prepared::Ready(Box::new(Batch {
            draft,
            core_before: Arc::clone(&current.core),
            data_before: current,
            renamed,
            touched,
            core,
            full,
            entry,
            outcome,
        })))
    }

    /// Journals a prepared batch (durable engines) and publishes it: the
    /// one path every accepted batch takes, local or from the fleet, so the
    /// snapshot, the readers' state, the feed, the stats and the revision
    /// watch all see it.
    fn commit(&self, writer: &mut Writer, batch: Batch) -> Result<Outcome, ChangeError> {
        let Batch {
            draft,
            data_before,
            renamed,
            touched,
            core_before,
            core,
            full,
            entry,
            mut outcome,
        } = batch;
        let revision = entry.revision;
        if let Some(journal) = writer.journal.as_mut() {
            let bytes = serde_json::to_vec(&entry)
                .map_err(|e| ChangeError::Journal(format!("cannot encode: {e}")))?;
            journal
                .append(revision, &bytes)
                .map_err(|e| ChangeError::Journal(e.to_string()))?;
        }
        // Publish: from here on nothing can fail.
        let published_core = Arc::clone(&core);
        let entry = Arc::new(entry);
        let mut history = self.shared.state.load().history.clone();
        history.push_back(Arc::clone(&entry));
        if history.len() > HISTORY_IN_MEMORY {
            history.pop_front();
        }
        let before = (!renamed).then_some((&*data_before, touched.as_slice()));
        self.shared.current.store(Arc::new(Data::published(
            revision,
            core,
            draft.members.clone(),
            before,
        )));
        self.shared.state.store(Arc::new(State {
            revision,
            model: draft.clone(),
            history,
            log_end: writer
                .journal
                .as_ref()
                .map(Journal::end)
                .unwrap_or_default(),
        }));
        writer.model = draft;
        self.shared.watch.publish(revision);
        lock(&self.shared.feed).retain(|s| match s.tx.try_send(Arc::clone(&entry)) {
            Ok(()) => true,
            Err(mpsc::TrySendError::Full(_)) => {
                // Dropping the sender ends the feed after what is queued;
                // the subscription then reports where to resume.
                s.lagged.store(revision, Ordering::Release);
                false
            }
            Err(mpsc::TrySendError::Disconnected(_)) => false,
        });
        writer.since_checkpoint += 1;
        self.checkpoint_if_due(writer, revision);
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

    /// Waits until this engine has published `revision` (made here or,
    /// in a fleet, by another instance and applied from the shared log),
    /// at most `timeout`; whether it has.
    ///
    /// This is how a caller reads its own writes on another instance: a
    /// write returns its [`Outcome::revision`]; a later request that carries
    /// it waits here, bounded, before it decides (and answers 503 when the
    /// wait times out).
    ///
    /// # Blocking
    ///
    /// Up to `timeout`; it never holds a lock that a writer or a reader
    /// waits on while it waits. From async code, call it in
    /// `spawn_blocking`, or with a zero timeout to ask without waiting.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use rolegraph::{Change, ChangeMeta, Engine, Policy};
    ///
    /// let mut policy = Policy::new();
    /// policy.permission("docs:read");
    /// policy.role("viewer");
    /// let engine = Engine::new(&policy)?;
    /// assert!(!engine.wait_for_revision(1, Duration::from_millis(10)));
    /// let grant = Change::GrantPermission { organization: None, role: "viewer".into(), permission: "docs:read".into() };
    /// let written = engine.apply(grant, ChangeMeta::default())?.revision;
    /// assert!(engine.wait_for_revision(written, Duration::ZERO));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn wait_for_revision(&self, revision: u64, timeout: std::time::Duration) -> bool {
        self.shared.watch.wait_for(revision, timeout)
    }

    /// Starts a background checkpoint of the state at `revision` (just
    /// published) when one is due and none is in flight.
    fn checkpoint_if_due(&self, writer: &mut Writer, revision: u64) {
        let every = writer.options.checkpoint_every;
        let checkpoints = &self.shared.checkpoints;
        if every == 0 || writer.since_checkpoint < checkpoints.interval(every) {
            return;
        }
        if writer.journal.is_none() {
            return;
        }
        {
            let mut status = lock(&checkpoints.status);
            if status.in_progress {
                // Tried again after the next batch.
                return;
            }
            status.in_progress = true;
        }
        writer.since_checkpoint = 0;
        // The previous worker has finished (it was not in progress).
        checkpoints.join();
        let model = writer.model.clone();
        let Some(journal) = writer.journal.as_mut() else {
            return;
        };
        let ticket = match journal.ticket(revision) {
            Ok(ticket) => ticket,
            Err(e) => {
                let mut status = lock(&checkpoints.status);
                status.in_progress = false;
                status.failures += 1;
                status.consecutive = status.consecutive.saturating_add(1);
                status.last_error = Some(e.to_string());
                return;
            }
        };
        let worker = Arc::clone(checkpoints);
        let writer_lock = Arc::clone(&self.shared.writer);
        let spawned = std::thread::Builder::new()
            .name("rolegraph-checkpoint".into())
            .spawn(move || {
                let _ = worker.write(ticket, &model, &writer_lock);
                lock(&worker.status).in_progress = false;
            });
        match spawned {
            Ok(handle) => *lock(&checkpoints.worker) = Some(handle),
            Err(e) => {
                let mut status = lock(&checkpoints.status);
                status.in_progress = false;
                status.failures += 1;
                status.consecutive = status.consecutive.saturating_add(1);
                status.last_error = Some(format!("cannot start the checkpoint thread: {e}"));
            }
        }
    }

    /// Subscribes to accepted batches, in revision order, from now on, with
    /// a queue of [`FEED_CAPACITY`] batches; see
    /// [`subscribe_with_capacity`](Self::subscribe_with_capacity).
    #[must_use]
    pub fn subscribe(&self) -> Subscription {
        self.subscribe_with_capacity(FEED_CAPACITY)
    }

    /// Subscribes to accepted batches, in revision order, from now on.
    ///
    /// The subscription gets every batch accepted after this call; combine
    /// with [`entries_since`](Self::entries_since) to catch up from an older
    /// revision first. At most `capacity` batches wait for the subscriber
    /// (at least 1): the writer never blocks on a slow subscriber, it cuts it
    /// off with a [`Feed::Lagged`] saying where to resume. A dropped
    /// subscription is forgotten at the next change.
    ///
    /// # Examples
    ///
    /// ```
    /// use rolegraph::{Change, ChangeMeta, Engine, Feed, Policy};
    ///
    /// let mut policy = Policy::new();
    /// policy.permission("a").permission("b").permission("c");
    /// policy.role("viewer");
    /// let engine = Engine::new(&policy)?;
    /// let feed = engine.subscribe_with_capacity(2);
    /// for p in ["a", "b", "c"] {
    ///     let grant = Change::GrantPermission { organization: None, role: "viewer".into(), permission: p.into() };
    ///     engine.apply(grant, ChangeMeta::default())?;
    /// }
    /// let got: Vec<Feed> = feed.try_iter().collect();
    /// assert!(matches!(&got[..], [Feed::Entry(a), Feed::Entry(b), Feed::Lagged { resume_from: 3 }]
    ///     if a.revision == 1 && b.revision == 2));
    /// assert_eq!(engine.entries_since(2)?.len(), 1); // where to resume
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn subscribe_with_capacity(&self, capacity: usize) -> Subscription {
        let (tx, rx) = mpsc::sync_channel(capacity.max(1));
        let lagged = Arc::new(AtomicU64::new(0));
        lock(&self.shared.feed).push(Subscriber {
            tx,
            lagged: Arc::clone(&lagged),
        });
        Subscription { rx, lagged }
    }

    /// Every accepted batch with a revision greater than `revision`, in
    /// order: the whole audit history from 0. See
    /// [`entries_page`](Self::entries_page) to read a long history in pages.
    ///
    /// # Blocking
    ///
    /// Never waits on the writer. The latest 10,000 batches are in memory;
    /// older ones are read from the journal's segments (one per checkpoint
    /// interval; segments wholly at or below `revision` are not read, and
    /// segments deleted by [`EngineOptions::retain_segments`] are gone from
    /// the history). An in-memory engine keeps only those 10,000.
    ///
    /// # Errors
    ///
    /// [`JournalError`] when the journal cannot be read back.
    pub fn entries_since(&self, revision: u64) -> Result<Vec<Arc<Entry>>, JournalError> {
        self.entries_page(revision, usize::MAX)
    }

    /// At most `limit` accepted batches with a revision greater than
    /// `after`, in order: pass the last revision of a page to get the next.
    ///
    /// # Blocking
    ///
    /// As [`entries_since`](Self::entries_since); memory holds one page.
    ///
    /// # Errors
    ///
    /// [`JournalError`] when the journal cannot be read back.
    pub fn entries_page(&self, after: u64, limit: usize) -> Result<Vec<Arc<Entry>>, JournalError> {
        self.entries_where(after, limit, |_| true)
    }

    /// At most `limit` batches after revision `after` that `keep` selects,
    /// in order: the one page collector behind the entry histories.
    fn entries_where(
        &self,
        after: u64,
        limit: usize,
        keep: impl Fn(&Entry) -> bool,
    ) -> Result<Vec<Arc<Entry>>, JournalError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        self.visit_history(after, |e| {
            if keep(e) {
                out.push(Arc::clone(e));
            }
            if out.len() >= limit {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })?;
        Ok(out)
    }

    /// Visits the batches after revision `after`, in order, from the journal
    /// and then memory, until `visit` breaks.
    fn visit_history(
        &self,
        after: u64,
        mut visit: impl FnMut(&Arc<Entry>) -> ControlFlow<()>,
    ) -> Result<(), JournalError> {
        let state = self.shared.state.load_full();
        let in_memory = state
            .history
            .front()
            .map_or(state.revision + 1, |e| e.revision);
        if let Some(dir) = self
            .shared
            .journal_dir
            .as_deref()
            .filter(|_| after.saturating_add(1) < in_memory)
        {
            let mut failed = None;
            let mut stopped = false;
            read_history(dir, state.log_end, after, |revision, bytes| {
                if revision >= in_memory {
                    return ControlFlow::Break(());
                }
                if revision <= after {
                    return ControlFlow::Continue(());
                }
                match serde_json::from_slice::<Entry>(bytes) {
                    Ok(entry) => {
                        stopped = visit(&Arc::new(entry)).is_break();
                        if stopped {
                            ControlFlow::Break(())
                        } else {
                            ControlFlow::Continue(())
                        }
                    }
                    Err(e) => {
                        failed = Some(JournalError::Decode {
                            revision,
                            reason: e.to_string(),
                        });
                        ControlFlow::Break(())
                    }
                }
            })?;
            if let Some(e) = failed {
                return Err(e);
            }
            if stopped {
                return Ok(());
            }
        }
        let start = state
            .history
            .binary_search_by(|e| {
                if e.revision <= after {
                    std::cmp::Ordering::Less
                } else {
                    std::cmp::Ordering::Greater
                }
            })
            .unwrap_or_else(|at| at);
        for entry in state.history.iter().skip(start) {
            if visit(entry).is_break() {
                break;
            }
        }
        Ok(())
    }

    /// The history of `user`'s roles in `organization`: who changed them,
    /// when, and from what to what.
    ///
    /// # Blocking
    ///
    /// As [`entries_since`](Self::entries_since): memory holds the answer,
    /// not the history.
    ///
    /// # Errors
    ///
    /// [`JournalError`] when the journal cannot be read back.
    pub fn user_role_history(
        &self,
        organization: &str,
        user: &str,
    ) -> Result<Vec<RoleAssignment>, JournalError> {
        self.user_role_history_page(organization, user, 0, usize::MAX)
    }

    /// A page of [`user_role_history`](Self::user_role_history): the
    /// changes with a revision greater than `after`, in order, until at
    /// least `limit` are found (a batch's changes are never split); pass the
    /// last revision of a page to get the next. Journal segments older than
    /// `after` are not read.
    ///
    /// # Examples
    ///
    /// ```
    /// use rolegraph::{Change, ChangeMeta, Engine, Policy};
    ///
    /// let mut policy = Policy::new();
    /// policy.role("viewer");
    /// policy.role("editor");
    /// let engine = Engine::new(&policy)?;
    /// for roles in [["viewer"], ["editor"], ["viewer"]] {
    ///     let set = Change::SetMembership {
    ///         organization: "org_1".into(), user: "ada".into(),
    ///         roles: roles.map(String::from).to_vec(), groups: None, creator: false,
    ///     };
    ///     engine.apply(set, ChangeMeta::default())?;
    /// }
    /// let first = engine.user_role_history_page("org_1", "ada", 0, 2)?;
    /// assert_eq!(first.iter().map(|a| a.revision).collect::<Vec<_>>(), [1, 2]);
    /// let next = engine.user_role_history_page("org_1", "ada", 2, 2)?;
    /// assert_eq!(next[0].after, ["viewer"]);
    /// assert_eq!(next.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`JournalError`] when the journal cannot be read back.
    pub fn user_role_history_page(
        &self,
        organization: &str,
        user: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<RoleAssignment>, JournalError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        self.visit_history(after, |e| {
            out.extend(
                e.memberships
                    .iter()
                    .filter(|m| m.organization == organization && m.user == user)
                    .map(|m| RoleAssignment {
                        revision: e.revision,
                        at_ms: e.at_ms,
                        actor: e.actor.clone(),
                        before: m.before.clone(),
                        after: m.after.clone(),
                    }),
            );
            if out.len() >= limit {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })?;
        Ok(out)
    }

    /// Every accepted batch that changed the role `name` of `organization`
    /// (`None`: an environment role) or a permission it had.
    ///
    /// # Blocking
    ///
    /// As [`user_role_history`](Self::user_role_history).
    ///
    /// # Errors
    ///
    /// [`JournalError`] when the journal cannot be read back.
    pub fn role_history(
        &self,
        organization: Option<&str>,
        name: &str,
    ) -> Result<Vec<Arc<Entry>>, JournalError> {
        self.role_history_page(organization, name, 0, usize::MAX)
    }

    /// A page of [`role_history`](Self::role_history): at most `limit`
    /// batches with a revision greater than `after`, in order; pass the last
    /// revision of a page to get the next. Journal segments older than
    /// `after` are not read.
    ///
    /// # Errors
    ///
    /// [`JournalError`] when the journal cannot be read back.
    pub fn role_history_page(
        &self,
        organization: Option<&str>,
        name: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Arc<Entry>>, JournalError> {
        self.entries_where(after, limit, |e| {
            e.changes
                .iter()
                .any(|c| mentions_role(c, organization, name))
        })
    }

    /// Whether the delivery `id` was applied (and is still remembered: see
    /// [`Change::RecordDelivery`]).
    ///
    /// # Blocking
    ///
    /// Never waits on the writer: it reads the published state.
    #[must_use]
    pub fn delivered(&self, id: &str) -> bool {
        self.shared.state.load().model.deliveries.contains_key(id)
    }

    /// How many delivery ids are remembered.
    #[must_use]
    pub fn deliveries_len(&self) -> usize {
        self.shared.state.load().model.deliveries.len()
    }

    /// The `occurred_at` (ns) of the last event applied to `entity`.
    ///
    /// # Blocking
    ///
    /// Never waits on the writer: it reads the published state.
    #[must_use]
    pub fn entity_clock(&self, entity: &str) -> Option<u64> {
        self.shared.state.load().model.clocks.get(entity).copied()
    }

    /// The entity clocks whose entity starts with `prefix`, in entity order
    /// (the Scalekit handler's email → user links).
    ///
    /// # Complexity
    ///
    /// One ordered-map seek, then one step per entity returned.
    #[cfg(feature = "scalekit")]
    pub(crate) fn entity_clocks_with_prefix(&self, prefix: &str) -> Vec<(String, u64)> {
        use std::ops::Bound;
        let state = self.shared.state.load();
        state
            .model
            .clocks
            .range::<_, str>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(entity, _)| entity.starts_with(prefix))
            .map(|(entity, at)| (entity.clone(), *at))
            .collect()
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
    /// # Blocking
    ///
    /// As [`apply_batch`](Self::apply_batch).
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
        // Checked on each try, under the writer lock: a fleet conflict's
        // backoff releases it, and the policy may move meanwhile.
        self.with_writer(Vec::new(), |writer, _, conflicts| {
            let change = (|| {
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
                Ok(Change::SetMembership {
                    organization: organization.to_owned(),
                    user: user.to_owned(),
                    roles: roles.iter().map(|r| (*r).to_owned()).collect(),
                    groups: None,
                    creator: false,
                })
            })();
            match change {
                Ok(change) => {
                    self.apply_locked(writer, vec![change], &ChangeMeta::by(actor_name), conflicts)
                }
                Err(e) => Attempt::Done(Err(e)),
            }
        })
    }

    /// Writes a checkpoint of the current state now and returns when it is
    /// on disk (durable engines; a no-op in memory).
    ///
    /// # Blocking
    ///
    /// Holds the writer lock only to take an O(1) copy of the state; the
    /// encoding and the writes (about 180 ms at 100,000 roles and
    /// memberships) happen after it is released, so writers and readers go
    /// on meanwhile. It waits for a background checkpoint in flight. From
    /// async code, call it in `spawn_blocking`.
    ///
    /// # Errors
    ///
    /// The journal's error when the state cannot be encoded
    /// ([`JournalError::Encode`]) or the checkpoint cannot be written; the
    /// previous checkpoint then stays in place, and the failure shows in
    /// [`stats`](Self::stats).
    pub fn checkpoint(&self) -> Result<(), JournalError> {
        let (ticket, model) = {
            let mut writer = lock(&self.shared.writer);
            let Some(journal) = writer.journal.as_mut() else {
                return Ok(());
            };
            let ticket = journal.ticket(self.revision())?;
            writer.since_checkpoint = 0;
            (ticket, writer.model.clone())
        };
        self.shared
            .checkpoints
            .write(ticket, &model, &self.shared.writer)
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

/// The model and revision a checkpoint holds.
///
/// # Errors
///
/// The decoder's message when `bytes` is not a checkpoint.
fn model_from_checkpoint(bytes: &[u8]) -> Result<(Model, u64), serde_json::Error> {
    let cp: Checkpoint = serde_json::from_slice(bytes)?;
    let mut model = Model::from_policy(&cp.policy);
    for (id, at) in cp.deliveries {
        model.delivery_times.insert((at, id.clone()), ());
        model.deliveries.insert(id, at);
    }
    for (entity, at) in cp.clocks {
        model.clocks.insert(entity, at);
    }
    for m in cp.memberships {
        model
            .members
            .insert(&m.organization, &m.user, Arc::new(m.membership));
    }
    Ok((model, cp.revision))
}

/// The checkpoint of `model` at `revision`, encoded.
///
/// # Errors
///
/// [`JournalError::Encode`]: an empty or partial checkpoint is never
/// written in its place.
fn checkpoint_bytes(model: &Model, revision: u64) -> Result<Vec<u8>, JournalError> {
    // By user, then organization, as before the model was hash-keyed.
    let memberships = model
        .members
        .sorted()
        .into_iter()
        .map(|(user, org, m)| StoredMembership {
            organization: org.to_string(),
            user: user.to_string(),
            membership: (**m).clone(),
        })
        .collect();
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
    #[cfg(test)]
    if tests::FAIL_ENCODE.with(std::cell::Cell::get) {
        return Err(JournalError::Encode {
            revision,
            reason: "injected failure".into(),
        });
    }
    serde_json::to_vec(&cp).map_err(|e| JournalError::Encode {
        revision,
        reason: e.to_string(),
    })
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("revision", &self.revision())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    thread_local! {
        /// Makes `checkpoint_bytes` fail on this thread.
        pub(super) static FAIL_ENCODE: Cell<bool> = const { Cell::new(false) };
    }

    fn policy() -> Policy {
        let mut p = Policy::new();
        p.permission("docs:read");
        p.role("viewer").grant("docs:read");
        p.organization("org_1");
        p
    }

    fn member(user: &str) -> Change {
        Change::SetMembership {
            organization: "org_1".into(),
            user: user.into(),
            roles: vec!["viewer".into()],
            groups: None,
            creator: false,
        }
    }

    fn every(n: u64) -> EngineOptions {
        EngineOptions {
            checkpoint_every: n,
            sync: false,
            ..EngineOptions::default()
        }
    }

    /// Runs `f` on another thread; fails the test when it does not finish in
    /// time (it waits on something it must not).
    fn finishes<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || tx.send(f()));
        rx.recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("{what} waited on the checkpoint"))
    }

    /// Applies `member(user)` on another thread, failing the test when it
    /// waits on the checkpoint.
    fn apply_member(engine: &Engine, user: &str) -> u64 {
        let e = engine.clone();
        let user = user.to_owned();
        finishes("apply", move || e.apply(member(&user), ChangeMeta::by("a")))
            .unwrap()
            .revision
    }

    #[test]
    fn writers_do_not_wait_while_a_checkpoint_syncs() {
        let tmp = tempfile::TempDir::new().unwrap();
        let durable = EngineOptions {
            checkpoint_every: 3,
            sync: true,
            ..EngineOptions::default()
        };
        let engine = Engine::open_with(tmp.path(), &policy(), durable).unwrap();
        let users: Vec<String> = (1..=9).map(|k| format!("u{k}")).collect();
        // The next sync of a file in the directory (or of the directory)
        // waits until released; an append's own fsync is not held.
        let (reached, release) = crate::journal::sync_gate::hold(tmp.path());
        for (k, user) in users.iter().enumerate().take(3) {
            assert_eq!(apply_member(&engine, user), k as u64 + 1);
        }
        // The checkpoint of revision 3 is held in its first sync.
        reached
            .recv_timeout(Duration::from_secs(30))
            .expect("the checkpoint reached a sync");
        assert!(engine.stats().checkpoint_in_progress);
        for (k, user) in users.iter().enumerate().take(6).skip(3) {
            assert_eq!(apply_member(&engine, user), k as u64 + 1);
        }
        assert!(engine.stats().checkpoint_in_progress);
        assert_eq!(engine.stats().checkpoints_written, 0);
        release.send(()).unwrap();
        while engine.stats().checkpoint_in_progress {
            std::thread::sleep(Duration::from_millis(1));
        }
        let stats = engine.stats();
        assert_eq!(
            (stats.checkpoints_written, stats.last_checkpoint_revision),
            (1, Some(3))
        );
        assert_eq!(stats.last_checkpoint_error, None);
        for user in users.iter().skip(6) {
            apply_member(&engine, user);
        }
        while engine.stats().checkpoint_in_progress {
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(engine);
        // Nothing acknowledged is lost or doubled; the state is the one an
        // in-memory engine reaches with the same changes.
        let oracle = Engine::new(&policy()).unwrap();
        for user in &users {
            oracle.apply(member(user), ChangeMeta::by("a")).unwrap();
        }
        let (engine, recovery) = Engine::recover(tmp.path(), &policy(), durable).unwrap();
        assert!(recovery.is_clean());
        assert_eq!(recovery.revision, 9);
        // The checkpoint due at 6, while that of 3 ran, was taken at 7.
        assert_eq!(recovery.checkpoint_revision, Some(7));
        assert_eq!(recovery.records_replayed, 2);
        assert_eq!(engine.policy(), oracle.policy());
        let revisions: Vec<u64> = engine
            .entries_since(0)
            .unwrap()
            .iter()
            .map(|e| e.revision)
            .collect();
        assert_eq!(revisions, (1..=9).collect::<Vec<_>>());
        for user in &users {
            let permissions = |e: &Engine| {
                let snapshot = e.snapshot();
                let principal = snapshot.user_principal("org_1", user);
                principal
                    .permissions()
                    .into_iter()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            };
            assert_eq!(permissions(&engine), permissions(&oracle), "{user}");
            assert_eq!(permissions(&engine), ["docs:read"], "{user}");
        }
    }

    #[test]
    fn readers_and_writers_do_not_wait_for_a_checkpoint() {
        let tmp = tempfile::TempDir::new().unwrap();
        let engine = Engine::open_with(tmp.path(), &policy(), every(1)).unwrap();
        let (release, gate) = mpsc::channel();
        *lock(&engine.shared.checkpoints.gate) = Some(gate);
        let delivery = Change::RecordDelivery {
            id: "msg_1".into(),
            received_ms: 1,
            entities: vec![crate::change::EntityClock {
                entity: "usr_1".into(),
                occurred_at_ns: 7,
            }],
            retention_ms: u64::MAX,
        };
        let e = engine.clone();
        finishes("the first apply", move || {
            e.apply_batch(vec![delivery, member("u1")], ChangeMeta::by("a"))
        })
        .unwrap();
        // The background checkpoint of revision 1 now sits at the gate,
        // holding the checkpoint lock.
        assert!(engine.stats().checkpoint_in_progress);
        let e = engine.clone();
        let out = finishes("apply", move || e.apply(member("u2"), ChangeMeta::by("a")));
        assert_eq!(out.unwrap().revision, 2);
        let explicit = {
            let engine = engine.clone();
            std::thread::spawn(move || engine.checkpoint())
        };
        let e = engine.clone();
        assert!(finishes("delivered", move || e.delivered("msg_1")));
        let e = engine.clone();
        assert_eq!(
            finishes("entity_clock", move || e.entity_clock("usr_1")),
            Some(7)
        );
        let e = engine.clone();
        let now = finishes("policy", move || e.policy());
        assert_eq!(now.roles.len(), 1);
        let e = engine.clone();
        assert_eq!(
            finishes("entries_since", move || e.entries_since(0).unwrap()).len(),
            2
        );
        let e = engine.clone();
        assert_eq!(finishes("stats", move || e.stats()).revision, 2);
        let e = engine.clone();
        assert_eq!(
            finishes("user_role_history", move || e
                .user_role_history("org_1", "u2")
                .unwrap())
            .len(),
            1
        );
        // An explicit checkpoint (of revision 2) waits behind it.
        assert!(!explicit.is_finished());

        // Readers do not wait on the writer either (it holds its lock across
        // the journal's fsync).
        let writer = lock(&engine.shared.writer);
        let e = engine.clone();
        assert!(finishes("delivered", move || e.delivered("msg_1")));
        let e = engine.clone();
        assert_eq!(
            finishes("entity_clock", move || e.entity_clock("usr_1")),
            Some(7)
        );
        let e = engine.clone();
        assert_eq!(
            finishes("entries_since", move || e.entries_since(1).unwrap()).len(),
            1
        );
        let e = engine.clone();
        finishes("policy", move || e.policy());
        drop(writer);

        release.send(()).unwrap();
        explicit.join().unwrap().unwrap();
        let stats = engine.stats();
        assert_eq!(stats.last_checkpoint_revision, Some(2));
        assert_eq!(stats.checkpoint_failures, 0);
        drop(engine);
        let (_, recovery) = Engine::recover(tmp.path(), &policy(), every(0)).unwrap();
        assert_eq!(recovery.checkpoint_revision, Some(2));
    }

    #[test]
    fn history_beyond_the_window_is_read_from_the_journal() {
        let tmp = tempfile::TempDir::new().unwrap();
        let engine = Engine::open_with(tmp.path(), &policy(), every(0)).unwrap();
        let feed = engine.subscribe_with_capacity(100);
        for k in 0..30 {
            engine
                .apply(member(&format!("u{k}")), ChangeMeta::by("a"))
                .unwrap();
        }
        assert_eq!(engine.shared.state.load().history.len(), HISTORY_IN_MEMORY);
        let fed: Vec<Arc<Entry>> = feed
            .try_iter()
            .map(|f| match f {
                Feed::Entry(e) => e,
                lagged => panic!("{lagged:?}"),
            })
            .collect();
        assert_eq!(fed.len(), 30);
        assert_eq!(engine.entries_since(0).unwrap(), fed);
        let revisions = |page: Vec<Arc<Entry>>| page.iter().map(|e| e.revision).collect::<Vec<_>>();
        assert_eq!(
            revisions(engine.entries_page(0, 7).unwrap()),
            (1..=7).collect::<Vec<_>>()
        );
        // Across the boundary between disk (..=22) and memory (23..).
        assert_eq!(revisions(engine.entries_page(20, 3).unwrap()), [21, 22, 23]);
        assert_eq!(
            revisions(engine.entries_page(7, 100).unwrap()),
            (8..=30).collect::<Vec<_>>()
        );
        assert!(engine.entries_page(30, 5).unwrap().is_empty());
        assert!(engine.entries_page(0, 0).unwrap().is_empty());
        let u3 = engine.user_role_history("org_1", "u3").unwrap();
        assert_eq!((u3.len(), u3[0].revision), (1, 4));
        let u29 = engine.user_role_history("org_1", "u29").unwrap();
        assert_eq!((u29.len(), u29[0].revision), (1, 30));

        // After a checkpoint nothing is replayed: the history is all on disk.
        engine.checkpoint().unwrap();
        drop(engine);
        let (engine, recovery) = Engine::recover(tmp.path(), &policy(), every(0)).unwrap();
        assert_eq!(recovery.records_replayed, 0);
        assert!(engine.shared.state.load().history.is_empty());
        assert_eq!(engine.entries_since(0).unwrap(), fed);

        // An in-memory engine keeps the window only.
        let engine = Engine::new(&policy()).unwrap();
        for k in 0..30 {
            engine
                .apply(member(&format!("u{k}")), ChangeMeta::by("a"))
                .unwrap();
        }
        assert_eq!(
            revisions(engine.entries_since(0).unwrap()),
            (23..=30).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_checkpoint_that_cannot_be_encoded_is_an_error_and_writes_nothing() {
        let tmp = tempfile::TempDir::new().unwrap();
        let engine = Engine::open_with(tmp.path(), &policy(), every(0)).unwrap();
        engine.apply(member("u1"), ChangeMeta::by("a")).unwrap();
        engine.checkpoint().unwrap();
        engine.apply(member("u2"), ChangeMeta::by("a")).unwrap();
        let before = std::fs::read(tmp.path().join("checkpoint")).unwrap();
        let names = || {
            let mut names: Vec<_> = std::fs::read_dir(tmp.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            names.sort();
            names
        };
        let files_before = names();
        FAIL_ENCODE.with(|f| f.set(true));
        let err = engine.checkpoint().unwrap_err();
        FAIL_ENCODE.with(|f| f.set(false));
        assert_eq!(
            err.to_string(),
            "cannot encode the checkpoint of revision `2`: injected failure"
        );
        assert_eq!(
            std::fs::read(tmp.path().join("checkpoint")).unwrap(),
            before
        );
        // No new segment either: the journal goes on where it was.
        assert_eq!(names(), files_before);
        let stats = engine.stats();
        assert_eq!(
            (stats.checkpoint_failures, stats.checkpoints_written),
            (1, 1)
        );
        assert!(stats.last_checkpoint_error.is_some());
        drop(engine);
        let (engine, recovery) = Engine::recover(tmp.path(), &policy(), every(0)).unwrap();
        assert_eq!(recovery.checkpoint_revision, Some(1));
        assert_eq!(engine.revision(), 2);
    }
}
