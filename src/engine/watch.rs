//! The revision watch: callers wait, bounded, for the engine to reach a
//! revision (a write they made elsewhere in the fleet, a token from a
//! client). The publish path advances it after every publish, local or
//! remote; the lock is held only to read or bump one number, never across
//! I/O. With feature `tower`, an async wait parks the task, never a runtime
//! thread (the request layer's minimum-revision header).

use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The latest published revision, and the waiters on it.
#[derive(Debug, Default)]
pub(super) struct Watch {
    revision: Mutex<u64>,
    changed: Condvar,
    /// Async waiters, woken at every publish.
    #[cfg(feature = "tower")]
    tasks: tokio::sync::Notify,
}

impl Watch {
    /// A watch starting at `revision`.
    pub(super) fn new(revision: u64) -> Self {
        Self {
            revision: Mutex::new(revision),
            changed: Condvar::new(),
            #[cfg(feature = "tower")]
            tasks: tokio::sync::Notify::new(),
        }
    }

    /// Records that `revision` is published and wakes the waiters.
    /// Revisions only go up: an older one is ignored.
    pub(super) fn publish(&self, revision: u64) {
        let mut current = self.revision.lock().unwrap_or_else(PoisonError::into_inner);
        if revision > *current {
            *current = revision;
            drop(current);
            self.changed.notify_all();
            #[cfg(feature = "tower")]
            self.tasks.notify_waiters();
        }
    }

    /// Waits until `revision` is published or `timeout` has passed; whether
    /// it was reached.
    pub(super) fn wait_for(&self, revision: u64, timeout: Duration) -> bool {
        let deadline = Instant::now().checked_add(timeout);
        let mut current = self.revision.lock().unwrap_or_else(PoisonError::into_inner);
        while *current < revision {
            let left = match deadline {
                Some(deadline) => deadline.saturating_duration_since(Instant::now()),
                // A timeout too large to add to now: wait in long steps.
                None => Duration::from_secs(3600),
            };
            if left.is_zero() {
                return false;
            }
            current = self
                .changed
                .wait_timeout(current, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }
}

impl super::Engine {
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_waiter_wakes_at_the_revision_and_times_out_below_it() {
        let watch = Arc::new(Watch::new(3));
        assert!(watch.wait_for(3, Duration::ZERO));
        assert!(!watch.wait_for(4, Duration::from_millis(20)));
        let w = Arc::clone(&watch);
        let waiter = std::thread::spawn(move || w.wait_for(6, Duration::from_secs(10)));
        watch.publish(5);
        std::thread::sleep(Duration::from_millis(20));
        assert!(!waiter.is_finished(), "woke below the revision");
        watch.publish(6);
        assert!(waiter.join().unwrap());
        // Going back is ignored.
        watch.publish(2);
        assert!(watch.wait_for(6, Duration::ZERO));
    }
}
