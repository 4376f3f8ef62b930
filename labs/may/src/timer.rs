//! Deadlines → wakes, for coroutines parked in `wait_io`.
//!
//! `may` has timers of its own — a socket read timeout, `park_timeout`,
//! `sleep` — but each belongs to one kind of wait, and a connection
//! coroutine waits on its socket *and* on publishers at once, in `wait_io`,
//! which has no timeout. So the lab keeps its own timer: one plain thread
//! (not a coroutine: it blocks on a condition variable, which a coroutine
//! must never do) with a heap of deadlines, which wakes each connection
//! through the same [`Wake`] a publisher uses.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::Instant;

use rtlab_core::Wake;

// ANCHOR: timers
/// The timer thread and its heap of deadlines.
///
/// A connection adds an entry when its next deadline is earlier than the one
/// it already has here (or that one has passed), so it has at most a couple
/// of entries at a time; an entry whose deadline has moved later wakes the
/// connection early, which then finds nothing due and adds the new one.
pub(crate) struct Timers {
    inner: Arc<Inner>,
    thread: Mutex<Option<JoinHandle<()>>>,
}
// ANCHOR_END: timers

struct Inner {
    state: Mutex<State>,
    changed: Condvar,
}

struct State {
    heap: BinaryHeap<Entry>,
    stopped: bool,
}

/// One deadline. A connection that closes leaves its entries behind; the
/// `Weak` lets them go without keeping anything of it alive.
struct Entry {
    at: Instant,
    waker: Weak<dyn Wake>,
}

// The heap is a max-heap: order entries so that the earliest is the greatest.
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        other.at.cmp(&self.at)
    }
}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}
impl Eq for Entry {}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Timers {
    /// Starts the timer thread.
    pub(crate) fn start() -> io::Result<Timers> {
        let inner = Arc::new(Inner {
            state: Mutex::new(State { heap: BinaryHeap::new(), stopped: false }),
            changed: Condvar::new(),
        });
        let run = inner.clone();
        let thread = std::thread::Builder::new().name("may-timers".into()).spawn(move || run_timers(&run))?;
        Ok(Timers { inner, thread: Mutex::new(Some(thread)) })
    }

    /// Wakes `waker` at `at`. Called from coroutines: it only takes a lock
    /// for a heap push and, if the new deadline is the earliest, signals the
    /// thread — nothing that blocks for long.
    pub(crate) fn wake_at(&self, at: Instant, waker: Weak<dyn Wake>) {
        let mut state = self.inner.lock();
        let earliest = state.heap.peek().is_none_or(|e| at < e.at);
        state.heap.push(Entry { at, waker });
        drop(state);
        if earliest {
            self.inner.changed.notify_one();
        }
    }

    /// Stops the thread and waits for it.
    pub(crate) fn stop(&self) {
        self.inner.lock().stopped = true;
        self.inner.changed.notify_one();
        if let Some(thread) = self.thread.lock().unwrap_or_else(PoisonError::into_inner).take() {
            let _ = thread.join();
        }
    }
}

// ANCHOR: run_timers
/// The timer thread: sleeps until the earliest deadline, wakes every
/// connection whose deadline has come (outside the lock), repeats.
fn run_timers(inner: &Inner) {
    let mut due = Vec::new();
    let mut state = inner.lock();
    loop {
        if state.stopped {
            return;
        }
        let now = Instant::now();
        while state.heap.peek().is_some_and(|e| e.at <= now) {
            due.extend(state.heap.pop().map(|e| e.waker));
        }
        if !due.is_empty() {
            drop(state);
            for waker in due.drain(..) {
                if let Some(waker) = waker.upgrade() {
                    waker.wake(0);
                }
            }
            state = inner.lock();
            continue;
        }
        state = match state.heap.peek().map(|e| e.at) {
            Some(at) => inner.changed.wait_timeout(state, at - now).unwrap_or_else(PoisonError::into_inner).0,
            None => inner.changed.wait(state).unwrap_or_else(PoisonError::into_inner),
        };
    }
}
// ANCHOR_END: run_timers

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Records which waker fired, and when.
    struct Record(usize, Arc<Mutex<Vec<(usize, Instant)>>>);
    impl Wake for Record {
        fn wake(&self, _token: usize) {
            self.1.lock().unwrap().push((self.0, Instant::now()));
        }
    }

    #[test]
    fn fires_in_deadline_order_not_early_and_skips_the_gone() {
        let timers = Timers::start().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (a, b, gone) =
            (Arc::new(Record(1, log.clone())), Arc::new(Record(2, log.clone())), Arc::new(Record(3, log.clone())));
        let now = Instant::now();
        let (at_a, at_b) = (now + Duration::from_millis(60), now + Duration::from_millis(30));
        timers.wake_at(at_a, Arc::downgrade(&a) as Weak<dyn Wake>);
        timers.wake_at(at_b, Arc::downgrade(&b) as Weak<dyn Wake>);
        timers.wake_at(now + Duration::from_millis(10), Arc::downgrade(&gone) as Weak<dyn Wake>);
        drop(gone);
        let limit = Instant::now() + Duration::from_secs(10);
        while log.lock().unwrap().len() < 2 && Instant::now() < limit {
            std::thread::sleep(Duration::from_millis(5));
        }
        timers.stop();
        let log = log.lock().unwrap();
        assert_eq!(log.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![2, 1], "in order, without the closed one");
        assert!(log[0].1 >= at_b && log[1].1 >= at_a, "never early");
    }
}
