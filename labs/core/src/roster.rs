//! The live connections of a server whose connections each run on their own
//! (a coroutine or a thread per connection), so that a stop reaches them all.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::hub::Wake;

// ANCHOR: roster
/// Every live connection's [`Wake`], by key.
///
/// An event loop knows its connections; a runtime that gives each
/// connection its own coroutine or thread does not, so each one joins the
/// roster when it starts and leaves when it ends. On stop the runtime sets
/// its own "stopping" flag, then calls [`wake_all`](Roster::wake_all): every
/// connection wakes, sees the flag and says goodbye
/// ([`Connection::shutdown`](crate::Connection::shutdown)). Joining before
/// looking at the flag, and setting the flag before waking, means that no
/// connection can miss the stop.
#[derive(Default)]
pub struct Roster {
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
        f.debug_struct("Roster").field("len", &self.len()).finish()
    }
}

impl Roster {
    /// An empty roster.
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

    /// Wakes every live connection (token 0).
    pub fn wake_all(&self) {
        for waker in self.lock().wakers.values() {
            waker.wake(0);
        }
    }
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
        roster.wake_all();
        assert_eq!(a.0.load(Ordering::SeqCst), 0);
        assert_eq!(b.0.load(Ordering::SeqCst), 1);
        assert_eq!(roster.len(), 1);
    }
}
