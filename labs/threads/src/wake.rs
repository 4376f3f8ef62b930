//! Waking one thread out of `ppoll(2)`: a signal aimed at it, which it keeps
//! blocked except while it sleeps in `ppoll`.
//!
//! The textbook alternative is a second descriptor per connection (a pipe or
//! an `eventfd`) polled next to the socket. It works, but doubles the
//! descriptors: with a 20,000-descriptor limit per process, the lab would
//! stop near 10,000 clients for a reason that has nothing to do with threads.
//! `ppoll` exists for exactly this race: it swaps in the signal mask and
//! sleeps in one atomic step, so a signal sent just before the thread sleeps
//! is not lost — it stays pending and ends the `ppoll` at once.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once, PoisonError};

use rtlab_core::Wake;

/// The signal. `SIGURG` is ignored by default — a stray one can never kill
/// the process — and means "urgent TCP data" only to a process that asked
/// for it with `F_SETOWN`, which rtlab never does. (Go's runtime picked it
/// for goroutine preemption for the same reasons.)
pub(crate) const SIGNAL: libc::c_int = libc::SIGURG;

/// Installs the (empty) handler once per process. A handler, rather than
/// the default action, is what makes the signal interrupt `ppoll`.
pub(crate) fn install() -> io::Result<()> {
    static INSTALL: Once = Once::new();
    let mut result = Ok(());
    INSTALL.call_once(|| {
        extern "C" fn on_signal(_: libc::c_int) {}
        // SAFETY: a zeroed sigaction with an async-signal-safe handler (it
        // does nothing) and an empty mask is a valid argument.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(SIGNAL, &action, std::ptr::null_mut()) != 0 {
                result = Err(io::Error::last_os_error());
            }
        }
    });
    result
}

// ANCHOR: waker
/// The core's [`Wake`] for a connection thread.
///
/// A publisher sets the flag and, if it was not set yet, sends the signal
/// to the thread (`pthread_kill`). The thread keeps the signal blocked, so
/// it stays pending until the thread sleeps in `ppoll`, which unblocks it
/// and returns at once. The lock makes sure no signal is ever sent to a
/// thread that has ended.
pub(crate) struct ThreadWaker {
    woken: AtomicBool,
    thread: Mutex<Option<libc::pthread_t>>,
}

impl Wake for ThreadWaker {
    fn wake(&self, _token: usize) {
        if !self.woken.swap(true, Ordering::AcqRel) {
            if let Some(thread) = *self.thread.lock().unwrap_or_else(PoisonError::into_inner) {
                // SAFETY: `thread` is alive: it clears this field before it ends.
                unsafe { libc::pthread_kill(thread, SIGNAL) };
            }
        }
    }
}
// ANCHOR_END: waker

impl ThreadWaker {
    /// A waker not attached to any thread yet: wakes only set the flag.
    pub(crate) fn new() -> ThreadWaker {
        ThreadWaker { woken: AtomicBool::new(false), thread: Mutex::new(None) }
    }

    /// Whether a wake came since the last call.
    pub(crate) fn take(&self) -> bool {
        self.woken.swap(false, Ordering::AcqRel)
    }

    /// Called by the connection thread when it starts: blocks the signal in
    /// this thread and lets wakes reach it. Returns the signal mask to sleep
    /// with (the thread's own, with the signal unblocked).
    pub(crate) fn attach(&self) -> io::Result<libc::sigset_t> {
        // SAFETY: sigset_t is plain data, initialised by sigemptyset and
        // pthread_sigmask before use.
        unsafe {
            let mut block: libc::sigset_t = std::mem::zeroed();
            let mut sleep_mask: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut block);
            libc::sigaddset(&mut block, SIGNAL);
            let err = libc::pthread_sigmask(libc::SIG_BLOCK, &block, &mut sleep_mask);
            if err != 0 {
                return Err(io::Error::from_raw_os_error(err));
            }
            libc::sigdelset(&mut sleep_mask, SIGNAL);
            *self.thread.lock().unwrap_or_else(PoisonError::into_inner) = Some(libc::pthread_self());
            Ok(sleep_mask)
        }
    }

    /// Called by the connection thread before it ends.
    pub(crate) fn detach(&self) {
        *self.thread.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}
