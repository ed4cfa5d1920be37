//! The engine's side of a fleet: the shared-log seam the writer appends
//! through (compare-and-append), and the remote path that applies what
//! other instances appended — through the same `prepare` and `commit` as a
//! local batch, so the snapshot, the readers' state, the feed, the local
//! journal, the stats and the revision watch all see it.
//!
//! The transport (Redis Streams) lives in [`crate::fleet`]; nothing here
//! knows it.

use std::sync::atomic::AtomicBool;
use std::sync::Weak;

use super::{
    checkpoint_bytes, lock, model_from_checkpoint, Attempt, ChangeError, ChangeMeta, Data, Engine,
    Entry, Prepared, Shared, State, Writer,
};
use crate::journal::JournalError;

/// How many times a writer catches up and validates again before it
/// reports the conflict.
pub(crate) const MAX_CONFLICTS: u32 = 8;

/// The wait before the first retry after a lost compare-and-append, in
/// microseconds; it doubles with each further loss, up to
/// [`CONFLICT_BACKOFF_MAX_US`].
const CONFLICT_BACKOFF_FIRST_US: u64 = 200;
const CONFLICT_BACKOFF_MAX_US: u64 = 3_200;

/// How long a writer waits before its `n`-th retry (from 1) after losing
/// the compare-and-append: half of the step (200 µs doubling, capped at
/// 3.2 ms) plus a random part of up to the other half, so that writers that
/// collided spread out instead of colliding again in lockstep. All
/// [`MAX_CONFLICTS`] retries wait at most 15.8 ms in total.
pub(crate) fn conflict_backoff(n: u32) -> std::time::Duration {
    use std::hash::BuildHasher;
    let step =
        (CONFLICT_BACKOFF_FIRST_US << n.saturating_sub(1).min(4)).min(CONFLICT_BACKOFF_MAX_US);
    let half = step / 2;
    // A fresh `RandomState` is randomly keyed: jitter without a dependency.
    let jitter = std::collections::hash_map::RandomState::new().hash_one(n) % (half + 1);
    std::time::Duration::from_micros(half + jitter)
}

#[cfg(test)]
thread_local! {
    /// The waits [`Engine::conflict_wait`] made on this thread: the wait
    /// chosen, how long it took, and whether the writer lock was free
    /// during it.
    static BACKOFFS: std::cell::RefCell<Vec<(std::time::Duration, std::time::Duration, bool)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// One record of the shared log, as read back.
#[derive(Debug)]
pub(crate) enum LogRecord {
    /// A batch, at the revision its id says.
    Entry(Entry),
    /// Something that is not a batch of ours at its id (corrupt, foreign,
    /// an id this log never writes): never applied, never skipped.
    Refused {
        /// The log's id for it.
        id: String,
        /// Why it is refused.
        reason: String,
    },
}

/// Why the shared log did not do what was asked.
#[derive(Debug)]
pub(crate) enum LogError {
    /// Compare-and-append lost: the log is above the revision the batch
    /// was validated at.
    Conflict,
    /// The log ends below the revision the batch was validated at: it lost
    /// batches this instance had acknowledged.
    Behind {
        /// Where the log ends.
        top: u64,
    },
    /// The log cannot be reached or answered nonsense.
    Unavailable(String),
}

/// The log every instance of a fleet appends to and follows.
pub(crate) trait SharedLog: Send {
    /// Appends `entry` as revision `after + 1` if and only if the log ends
    /// at `after`.
    fn append(&mut self, after: u64, entry: &Entry) -> Result<(), LogError>;
    /// The next records after revision `after`, in order (a bounded page;
    /// empty at the end).
    fn read_after(&mut self, after: u64) -> Result<Vec<LogRecord>, LogError>;
    /// The newest checkpoint published next to the log, encoded.
    fn latest_checkpoint(&mut self) -> Result<Option<Vec<u8>>, LogError>;
    /// Where the log ends: its last entry, or its newest checkpoint when it
    /// holds no entry; `None` for a log nobody has written to.
    fn top(&mut self) -> Result<Option<u64>, LogError>;
    /// Publishes a checkpoint at `revision` unless one is there; whether
    /// this call wrote it.
    fn publish_checkpoint(&mut self, revision: u64, bytes: &[u8]) -> Result<bool, LogError>;
}

/// Why a local batch was not appended to the shared log.
#[derive(Debug)]
pub(crate) enum Appended {
    /// Another instance appended first; this engine has applied what it
    /// wrote and the batch must be validated again.
    Conflict,
    /// The batch cannot be appended now: the message for the caller.
    Failed(String),
}

/// Why catching up with the shared log stopped.
#[derive(Debug)]
pub(crate) enum Fault {
    /// The log cannot be reached: try again later.
    Unavailable(String),
    /// The log ends below this engine's revision.
    Behind {
        /// Where the log ends.
        top: u64,
        /// This engine's revision.
        revision: u64,
    },
    /// The tail stopped at a refused entry, for good.
    Stopped {
        /// The log's id of the entry.
        id: String,
        /// Why.
        reason: String,
    },
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unavailable(reason) => write!(f, "the fleet's log is unreachable: {reason}"),
            Self::Behind { top, revision } => write!(
                f,
                "the fleet's log ends at revision `{top}`, below this instance's revision `{revision}`: it lost acknowledged batches"
            ),
            Self::Stopped { id, reason } => write!(
                f,
                "the fleet's log entry `{id}` is refused ({reason}): this instance stopped following the log there"
            ),
        }
    }
}

impl From<LogError> for Fault {
    fn from(e: LogError) -> Self {
        match e {
            LogError::Unavailable(reason) => Self::Unavailable(reason),
            LogError::Conflict => {
                Self::Unavailable("the log answered a read with a conflict".into())
            }
            LogError::Behind { top } => Self::Behind { top, revision: 0 },
        }
    }
}

/// A handle on an engine that does not keep it alive (the tail thread's).
#[derive(Clone)]
pub(crate) struct WeakEngine(Weak<Shared>);

impl WeakEngine {
    /// The engine, while a handle on it exists.
    pub(crate) fn upgrade(&self) -> Option<Engine> {
        self.0.upgrade().map(|shared| Engine { shared })
    }
}

impl Engine {
    /// A handle that does not keep the engine alive.
    pub(crate) fn downgrade(&self) -> WeakEngine {
        WeakEngine(Arc::downgrade(&self.shared))
    }

    /// Set when the last handle on the engine is dropped.
    pub(crate) fn closing(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.shared.closing)
    }

    /// Whether the engine follows a shared log.
    pub(crate) fn has_shared_log(&self) -> bool {
        lock(&self.shared.writer).log.is_some()
    }

    /// Where the tail stopped at a refused entry, if it did.
    pub(crate) fn fleet_stopped(&self) -> bool {
        lock(&self.shared.stats).fleet_stopped_at.is_some()
    }

    /// Records (or clears) why the shared log is not being followed.
    pub(crate) fn set_fleet_error(&self, error: Option<String>) {
        let mut stats = lock(&self.shared.stats);
        if stats.fleet_stopped_at.is_none() {
            stats.fleet_error = error;
        }
    }

    /// The published state, encoded as a checkpoint, and its revision: read
    /// without the writer lock.
    pub(crate) fn published_checkpoint(&self) -> Result<(u64, Vec<u8>), JournalError> {
        let state = self.shared.state.load_full();
        checkpoint_bytes(&state.model, state.revision).map(|bytes| (state.revision, bytes))
    }

    /// Joins the fleet through `log`: brings this engine up to the log's
    /// end (from the fleet's checkpoint when the log no longer holds what it
    /// needs, or when the engine has nothing yet), publishes the first
    /// checkpoint of an empty fleet, and from then on writes through it.
    pub(crate) fn attach_log(&self, mut log: Box<dyn SharedLog>) -> Result<(), Fault> {
        let mut writer = lock(&self.shared.writer);
        let revision = self.revision();
        match log.top()? {
            None => {
                let bytes = checkpoint_bytes(&writer.model, revision)
                    .map_err(|e| Fault::Unavailable(e.to_string()))?;
                let won = log.publish_checkpoint(revision, &bytes)?;
                if !won && revision == 0 {
                    self.adopt_checkpoint(&mut writer, log.as_mut(), 0)?;
                }
            }
            Some(top) if top < revision => return Err(Fault::Behind { top, revision }),
            Some(_) if revision == 0 => {
                // Nothing here yet: start from the fleet's state, not from
                // a local initial policy the fleet may have moved past.
                self.adopt_checkpoint(&mut writer, log.as_mut(), 0)?;
            }
            Some(_) => {}
        }
        self.catch_up_with(&mut writer, log.as_mut())?;
        writer.log = Some(log);
        Ok(())
    }

    /// Applies what the shared log holds beyond this engine's revision
    /// (the tail's step).
    pub(crate) fn pull(&self) -> Result<u64, Fault> {
        let mut writer = lock(&self.shared.writer);
        let result = self.catch_up_locked(&mut writer);
        self.record_fault(result.as_ref().err());
        result
    }

    /// Records the outcome of an attempt to publish a fleet checkpoint.
    pub(crate) fn record_fleet_checkpoint(&self, result: Result<(), String>) {
        let mut stats = lock(&self.shared.stats);
        match result {
            Ok(()) => stats.last_fleet_checkpoint_error = None,
            Err(e) => {
                #[cfg(feature = "tracing")]
                tracing::warn!(error = %e, "rolegraph fleet checkpoint not published");
                stats.fleet_checkpoint_failures += 1;
                stats.last_fleet_checkpoint_error = Some(e);
            }
        }
    }

    fn record_fault(&self, fault: Option<&Fault>) {
        match fault {
            Some(Fault::Stopped { .. }) => {}
            Some(f) => self.set_fleet_error(Some(f.to_string())),
            None => self.set_fleet_error(None),
        }
    }

    /// One try at a local batch in a fleet: appended to the shared log as
    /// the revision after the one it was validated at, then journaled and
    /// published like any batch; or, when another instance appended first
    /// (and this engine has applied what it wrote), a retry after a short
    /// jittered wait, which [`Engine::with_writer`] waits out with the
    /// writer lock released. `conflicts` counts the losses so far.
    pub(super) fn apply_shared(
        &self,
        writer: &mut Writer,
        changes: Vec<crate::Change>,
        meta: &ChangeMeta,
        conflicts: &mut u32,
    ) -> Attempt {
        let batch = match self.prepare(writer, changes, meta) {
            Ok(Prepared::Unchanged(outcome)) => return Attempt::Done(Ok(outcome)),
            Ok(Prepared::Ready(batch)) => batch,
            Err(e) => return Attempt::Done(Err(e)),
        };
        Attempt::Done(match self.append_shared(writer, &batch.entry) {
            Ok(()) => self.commit(writer, *batch),
            Err(Appended::Conflict) if *conflicts < MAX_CONFLICTS => {
                *conflicts += 1;
                return Attempt::Retry {
                    changes: batch.entry.changes,
                    wait: conflict_backoff(*conflicts),
                };
            }
            Err(Appended::Conflict) => Err(ChangeError::Journal(format!(
                "the fleet's log moved on {conflicts} times while this batch was validated: retry it"
            ))),
            Err(Appended::Failed(reason)) => Err(ChangeError::Journal(reason)),
        })
    }

    /// Waits out a conflict's backoff; called without the writer lock.
    pub(super) fn conflict_wait(&self, wait: std::time::Duration) {
        #[cfg(test)]
        let started = std::time::Instant::now();
        std::thread::sleep(wait);
        #[cfg(test)]
        {
            let free = self.shared.writer.try_lock().is_ok();
            BACKOFFS.with(|b| b.borrow_mut().push((wait, started.elapsed(), free)));
        }
    }

    /// Appends a prepared batch to the shared log; on a lost race, applies
    /// what the winner wrote first.
    fn append_shared(&self, writer: &mut Writer, entry: &Entry) -> Result<(), Appended> {
        let Some(log) = writer.log.as_mut() else {
            return Ok(());
        };
        let after = entry.revision.saturating_sub(1);
        match log.append(after, entry) {
            Ok(()) => Ok(()),
            Err(LogError::Conflict) => match self.catch_up_locked(writer) {
                Ok(_) => Err(Appended::Conflict),
                Err(fault) => {
                    self.record_fault(Some(&fault));
                    Err(Appended::Failed(fault.to_string()))
                }
            },
            Err(LogError::Behind { top }) => Err(Appended::Failed(
                Fault::Behind {
                    top,
                    revision: after,
                }
                .to_string(),
            )),
            Err(LogError::Unavailable(reason)) => {
                let fault = Fault::Unavailable(reason);
                self.record_fault(Some(&fault));
                Err(Appended::Failed(fault.to_string()))
            }
        }
    }

    fn catch_up_locked(&self, writer: &mut Writer) -> Result<u64, Fault> {
        let Some(mut log) = writer.log.take() else {
            return Ok(0);
        };
        let result = self.catch_up_with(writer, log.as_mut());
        writer.log = Some(log);
        result
    }

    /// Applies the log's entries after the current revision, in order. A
    /// gap (an id skipped, entries trimmed) loads the fleet's checkpoint; a
    /// refused entry stops the tail there.
    fn catch_up_with(&self, writer: &mut Writer, log: &mut dyn SharedLog) -> Result<u64, Fault> {
        if let Some(id) = lock(&self.shared.stats).fleet_stopped_at.clone() {
            return Err(Fault::Stopped {
                id,
                reason: "stopped earlier".into(),
            });
        }
        let mut applied = 0;
        loop {
            let records = log.read_after(self.revision())?;
            if records.is_empty() {
                return Ok(applied);
            }
            for record in records {
                let entry = match record {
                    LogRecord::Entry(entry) => entry,
                    LogRecord::Refused { id, reason } => return Err(self.stop(id, reason)),
                };
                let current = self.revision();
                if entry.revision <= current {
                    continue;
                }
                let id = format!("{}-1", entry.revision);
                if entry.revision > current + 1 {
                    self.adopt_checkpoint(writer, log, entry.revision - 1)?;
                    if entry.revision <= self.revision() {
                        continue;
                    }
                }
                self.apply_remote(writer, entry)
                    .map_err(|reason| self.stop(id, reason))?;
                applied += 1;
            }
        }
    }

    /// Stops following the log at `id`, loudly.
    fn stop(&self, id: String, reason: String) -> Fault {
        let fault = Fault::Stopped { id, reason };
        let mut stats = lock(&self.shared.stats);
        if let Fault::Stopped { id, .. } = &fault {
            stats.fleet_stopped_at = Some(id.clone());
        }
        stats.fleet_error = Some(fault.to_string());
        #[cfg(feature = "tracing")]
        tracing::error!(error = %fault, "rolegraph fleet tail stopped");
        fault
    }

    /// Applies one batch another instance appended, as the next revision.
    fn apply_remote(&self, writer: &mut Writer, entry: Entry) -> Result<(), String> {
        let Entry {
            revision,
            at_ms,
            actor,
            changes,
            memberships,
        } = entry;
        let meta = ChangeMeta {
            actor,
            at_ms: Some(at_ms),
        };
        let batch = match self.prepare(writer, changes, &meta) {
            Ok(Prepared::Ready(batch)) => batch,
            Ok(Prepared::Unchanged(_)) => {
                return Err("it changes nothing here: this instance's state has diverged".into())
            }
            Err(e) => return Err(format!("it does not apply here: {e}")),
        };
        if batch.entry.revision != revision {
            return Err(format!(
                "it would be revision `{}` here",
                batch.entry.revision
            ));
        }
        if batch.entry.memberships != memberships {
            return Err(
                "it does not change the memberships it records: this instance's state has diverged"
                    .into(),
            );
        }
        self.commit(writer, *batch).map_err(|e| e.to_string())?;
        let mut stats = lock(&self.shared.stats);
        stats.remote_applied += 1;
        stats.revision = revision;
        Ok(())
    }

    /// Replaces the state with the fleet's newest checkpoint, which must be
    /// at least at revision `needed` (the log resumes right after it).
    fn adopt_checkpoint(
        &self,
        writer: &mut Writer,
        log: &mut dyn SharedLog,
        needed: u64,
    ) -> Result<(), Fault> {
        let bytes = log.latest_checkpoint()?.ok_or_else(|| Fault::Stopped {
            id: format!("{}-1", needed + 1),
            reason: "the log skips revisions and the fleet has no checkpoint".into(),
        })?;
        let (model, revision) = model_from_checkpoint(&bytes).map_err(|e| Fault::Stopped {
            id: format!("{}-1", needed + 1),
            reason: format!("the fleet's checkpoint does not decode: {e}"),
        })?;
        let current = self.revision();
        if revision < needed || (revision < current) {
            return Err(self.stop(
                format!("{}-1", needed + 1),
                format!(
                    "the log skips from revision `{current}` to `{}` and the fleet's newest checkpoint is at `{revision}`",
                    needed + 1
                ),
            ));
        }
        let snapshot = model.to_policy().compile().map_err(|e| Fault::Stopped {
            id: format!("{}-1", needed + 1),
            reason: format!("the fleet's checkpoint does not compile: {e}"),
        })?;
        if let Some(journal) = writer.journal.as_mut() {
            journal.checkpoint(revision, &bytes).map_err(|e| {
                Fault::Unavailable(format!("cannot keep the fleet's checkpoint locally: {e}"))
            })?;
        }
        // Publish the whole state; the history between the two revisions
        // is not this instance's to tell.
        self.shared.current.store(Arc::new(Data::published(
            revision,
            Arc::clone(&snapshot.arc().core),
            model.members.clone(),
            None,
        )));
        self.shared.state.store(Arc::new(State {
            revision,
            model: model.clone(),
            history: imbl::Vector::new(),
            log_end: writer
                .journal
                .as_ref()
                .map(crate::journal::Journal::end)
                .unwrap_or_default(),
        }));
        writer.model = model;
        writer.since_checkpoint = 0;
        self.shared.watch.publish(revision);
        // Subscribers missed the batches in between: cut them off where
        // they stop, as for a lag.
        if revision > current {
            lock(&self.shared.feed).retain(|s| {
                s.lagged.store(current + 1, super::Ordering::Release);
                false
            });
        }
        let mut stats = lock(&self.shared.stats);
        stats.revision = revision;
        stats.fleet_checkpoint_loads += 1;
        Ok(())
    }
}

use std::sync::Arc;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Change, Policy};

    /// A shared log another instance always writes to first: every append
    /// loses, and there is never anything new to read.
    struct AlwaysBehind {
        appends: Arc<std::sync::atomic::AtomicU32>,
    }

    impl SharedLog for AlwaysBehind {
        fn append(&mut self, _after: u64, _entry: &Entry) -> Result<(), LogError> {
            self.appends
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Err(LogError::Conflict)
        }
        fn read_after(&mut self, _after: u64) -> Result<Vec<LogRecord>, LogError> {
            Ok(Vec::new())
        }
        fn latest_checkpoint(&mut self) -> Result<Option<Vec<u8>>, LogError> {
            Ok(None)
        }
        fn top(&mut self) -> Result<Option<u64>, LogError> {
            Ok(None)
        }
        fn publish_checkpoint(&mut self, _revision: u64, _bytes: &[u8]) -> Result<bool, LogError> {
            Ok(true)
        }
    }

    #[test]
    fn a_writer_that_keeps_losing_backs_off_with_jitter_then_reports_the_conflict() {
        let mut policy = Policy::new();
        policy.permission("docs:read");
        policy.role("viewer");
        let engine = Engine::new(&policy).unwrap();
        let appends = Arc::default();
        engine
            .attach_log(Box::new(AlwaysBehind {
                appends: Arc::clone(&appends),
            }))
            .unwrap();
        BACKOFFS.with(|b| b.borrow_mut().clear());
        let grant = Change::GrantPermission {
            organization: None,
            role: "viewer".into(),
            permission: "docs:read".into(),
        };
        let err = engine.apply(grant, ChangeMeta::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot record the change: the fleet's log moved on 8 times while this batch was validated: retry it",
        );
        assert_eq!(
            appends.load(std::sync::atomic::Ordering::Relaxed),
            MAX_CONFLICTS + 1
        );
        // One wait before each retry, each within its step's bounds.
        let waits = BACKOFFS.with(|b| b.borrow().clone());
        assert_eq!(waits.len(), MAX_CONFLICTS as usize);
        for (n, (wait, slept, free)) in (1..).zip(&waits) {
            // Waited (a lower bound: a sleep never ends early), without
            // holding the writer lock: a local writer is not held by it.
            assert!(slept >= wait, "retry {n}: {slept:?} < {wait:?}");
            assert!(free, "retry {n}: waited holding the writer lock");
            let step = (200u64 << (n - 1u32).min(4)).min(3_200);
            let micros = u64::try_from(wait.as_micros()).unwrap();
            assert!(
                (step / 2..=step).contains(&micros),
                "retry {n}: {micros} µs"
            );
        }
        let total: std::time::Duration = waits.iter().map(|(wait, _, _)| *wait).sum();
        assert!(
            total <= std::time::Duration::from_micros(15_800),
            "{total:?}"
        );
    }

    #[test]
    fn backoffs_are_jittered() {
        // The same retry does not always wait the same: 64 draws from a
        // range of 1,601 values are all equal with probability 1601^-63.
        let draws: std::collections::BTreeSet<_> = (0..64).map(|_| conflict_backoff(5)).collect();
        assert!(draws.len() > 1, "{draws:?}");
        assert!(draws.iter().all(|d| {
            let us = d.as_micros();
            (1_600..=3_200).contains(&us)
        }));
    }
}
