//! Waiting for a revision: [`Engine::wait_for_revision`] (blocking) and, with
//! feature `tower`, an async wait that parks the task, never a runtime
//! thread.
//!
//! The engine calls [`Watch::published`] after every publish (after the new
//! snapshot is stored): waiters re-read [`Engine::revision`], so the watch
//! holds no revision of its own and cannot disagree with the snapshot.

use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::Engine;

/// Wakes the waiters of [`Engine::wait_for_revision`] at each publish.
#[derive(Default)]
pub(crate) struct Watch {
    /// Taken by a blocking waiter around its check-then-wait, and by the
    /// publisher around its notify, so a publish between the check and the
    /// wait cannot be missed.
    lock: Mutex<()>,
    blocked: Condvar,
    #[cfg(feature = "tower")]
    tasks: tokio::sync::Notify,
}

impl Watch {
    /// Called by the writer after each publish.
    pub(crate) fn published(&self) {
        drop(self.lock.lock().unwrap_or_else(PoisonError::into_inner));
        self.blocked.notify_all();
        #[cfg(feature = "tower")]
        self.tasks.notify_waiters();
    }
}

impl Engine {
    /// Waits until the published snapshot's revision is at least `revision`,
    /// for at most `timeout`: `true` when it is (at once if it already is),
    /// `false` on timeout.
    ///
    /// # Blocking
    ///
    /// Parks the calling thread; do not call it on an async runtime's thread
    /// (the request layer uses an async wait instead).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use rolegraph::{Change, ChangeMeta, Engine, Policy};
    ///
    /// let mut policy = Policy::new();
    /// policy.permission("a");
    /// let engine = Engine::new(&policy)?;
    /// assert!(!engine.wait_for_revision(1, Duration::from_millis(1)));
    /// let writer = engine.clone();
    /// let thread = std::thread::spawn(move || {
    ///     writer.apply(
    ///         Change::CreatePermission { name: "b".into(), description: None },
    ///         ChangeMeta::by("me"),
    ///     )
    /// });
    /// assert!(engine.wait_for_revision(1, Duration::from_secs(30)));
    /// # thread.join().unwrap()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn wait_for_revision(&self, revision: u64, timeout: Duration) -> bool {
        let watch = &self.shared.watch;
        let deadline = Instant::now().checked_add(timeout);
        let mut guard = watch.lock.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if self.revision() >= revision {
                return true;
            }
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::MAX,
            };
            if left.is_zero() {
                return false;
            }
            guard = watch
                .blocked
                .wait_timeout(guard, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// The async [`wait_for_revision`](Self::wait_for_revision): parks the
    /// task, not the thread. The timer is tokio's, so the runtime must have
    /// its time driver enabled (`enable_time`/`enable_all`; `#[tokio::main]`
    /// does) when the revision is not already reached.
    #[cfg(feature = "tower")]
    pub(crate) async fn reach_revision(&self, revision: u64, timeout: Duration) -> bool {
        if self.revision() >= revision {
            return true;
        }
        let wait = async {
            loop {
                let notified = self.shared.watch.tasks.notified();
                tokio::pin!(notified);
                // Registered before the check: a publish after it wakes us.
                notified.as_mut().enable();
                if self.revision() >= revision {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok() || self.revision() >= revision
    }
}
