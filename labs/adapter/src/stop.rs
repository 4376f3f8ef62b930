//! A stop request that any runtime can wait on.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

type Callback = Box<dyn FnOnce() + Send>;

// ANCHOR: stop
/// A one-shot "stop serving" request, shared by whoever asks (the binary's
/// signal handler, a test) and the lab that serves.
///
/// It has no threads and no runtime, so it cannot block on anything;
/// instead a lab registers a callback with [`on_stop`](Stop::on_stop) that
/// wakes its own loop (a `tokio::sync::Notify`, a `mio::Waker`, a connection
/// to its own listener that unblocks `accept`).
#[derive(Default)]
pub struct Stop {
    stopped: AtomicBool,
    callbacks: Mutex<Vec<Callback>>,
}
// ANCHOR_END: stop

impl fmt::Debug for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stop").field("stopped", &self.is_stopped()).finish()
    }
}

impl Stop {
    /// A stop that has not been requested.
    pub fn new() -> Arc<Stop> {
        Arc::new(Stop::default())
    }

    /// Requests the stop; runs every registered callback once.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        let callbacks = std::mem::take(&mut *self.callbacks.lock().unwrap_or_else(PoisonError::into_inner));
        for callback in callbacks {
            callback();
        }
    }

    /// Whether the stop was requested.
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Runs `callback` when the stop is requested (at once if it already was).
    pub fn on_stop(&self, callback: impl FnOnce() + Send + 'static) {
        let mut callbacks = self.callbacks.lock().unwrap_or_else(PoisonError::into_inner);
        if self.is_stopped() {
            drop(callbacks);
            callback();
        } else {
            callbacks.push(Box::new(callback));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn callbacks_run_once_before_or_after() {
        let stop = Stop::new();
        let n = Arc::new(AtomicUsize::new(0));
        let m = n.clone();
        stop.on_stop(move || {
            m.fetch_add(1, Ordering::SeqCst);
        });
        assert!(!stop.is_stopped());
        stop.stop();
        stop.stop();
        assert_eq!(n.load(Ordering::SeqCst), 1);
        let m = n.clone();
        stop.on_stop(move || {
            m.fetch_add(10, Ordering::SeqCst);
        });
        assert_eq!(n.load(Ordering::SeqCst), 11);
    }
}
