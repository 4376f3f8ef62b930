//! The live connections of a server whose connections each run on their own
//! (a coroutine or a thread per connection), so that a stop reaches them all
//! and the server knows when the last one has gone.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rtlab_core::Wake;

// ANCHOR: roster
/// Every live connection's [`Wake`], by key, and whether the server is
/// stopping.
///
/// An event loop knows its connections; a runtime that gives each
/// connection its own coroutine or thread does not, so each one joins the
/// roster when it starts and leaves when it ends. On stop,
/// [`stop`](Roster::stop) sets the flag, then wakes every connection; each
/// wakes, sees [`is_stopping`](Roster::is_stopping) and says goodbye
/// ([`Connection::shutdown`](rtlab_core::Connection::shutdown)). Joining
/// before looking at the flag, and setting the flag before waking, means
/// that no connection can miss the stop. The server then waits, bounded,
/// for the roster to empty ([`wait_empty`](Roster::wait_empty)).
#[derive(Default)]
pub struct Roster {
    stopping: AtomicBool,
    inner: Mutex<Inner>,
}
// ANCHOR_END: roster

#[derive(Default)]
struct Inner {
    next: u64,
    wakers: HashMap<u64, Arc<dyn Wake>>,
}

impl fmt::Debug for Roster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Roster").field("len", &self.len()).field("stopping", &self.is_stopping()).finish()
    }
}

impl Roster {
    /// An empty roster, not stopping.
    pub fn new() -> Roster {
        Roster::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a connection; the key is for [`leave`](Roster::leave).
    pub fn join(&self, waker: Arc<dyn Wake>) -> u64 {
        let mut inner = self.lock();
        inner.next += 1;
        let key = inner.next;
        inner.wakers.insert(key, waker);
        key
    }

    /// Removes a connection.
    pub fn leave(&self, key: u64) {
        let mut inner = self.lock();
        inner.wakers.remove(&key);
        if inner.wakers.is_empty() {
            inner.wakers = HashMap::new(); // Give the table's memory back.
        }
    }

    /// Live connections.
    pub fn len(&self) -> usize {
        self.lock().wakers.len()
    }

    /// Whether no connection is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The server is stopping: sets the flag, then wakes every live
    /// connection (token 0).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        for waker in self.lock().wakers.values() {
            waker.wake(0);
        }
    }

    /// Whether [`stop`](Roster::stop) was called.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    // ANCHOR: wait_empty
    /// Waits until every connection has left or `deadline` passes, whichever
    /// is first; logs and returns how many were left. Threads and coroutines
    /// cannot be cancelled: a connection still live at the deadline ends at
    /// its own close linger, after the server has returned.
    pub fn wait_empty(&self, deadline: Instant) -> usize {
        while !self.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let left = self.len();
        if left > 0 {
            tracing::warn!("{left} connections did not close in time; leaving them");
        }
        left
    }
    // ANCHOR_END: wait_empty
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Default)]
    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(&self, _token: usize) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn wakes_the_live_ones() {
        let roster = Roster::new();
        let (a, b) = (Arc::new(Count::default()), Arc::new(Count::default()));
        let ka = roster.join(a.clone());
        let _kb = roster.join(b.clone());
        roster.leave(ka);
        assert!(!roster.is_stopping());
        roster.stop();
        assert!(roster.is_stopping());
        assert_eq!(a.0.load(Ordering::SeqCst), 0);
        assert_eq!(b.0.load(Ordering::SeqCst), 1);
        assert_eq!(roster.len(), 1);
        assert_eq!(roster.wait_empty(Instant::now()), 1, "one still live at the deadline");
    }
}
