//! How publishers on any thread wake a connection of an event loop.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use rtlab_core::Wake;

/// An `eventfd`: a counter in the kernel that becomes readable when written
/// to, and so can interrupt an `epoll_wait` from any thread.
///
/// One serves every loop of the server: each registers it, edge-triggered,
/// and every write is an event in each of their epoll sets. A loop woken for
/// another loop's sake finds its own list empty and sleeps again. One
/// descriptor instead of one per loop (which is what `mio::Waker` would
/// cost) matters at the open-files limit, where every descriptor the server
/// keeps for itself is a client it cannot hold: the lab's own descriptors are
/// one epoll set per loop and this.
#[derive(Debug)]
pub(crate) struct EventFd(File);

impl EventFd {
    /// A new eventfd (non-blocking, closed on exec).
    pub(crate) fn new() -> io::Result<EventFd> {
        // SAFETY: eventfd(2) takes no pointers; it returns a new descriptor or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a valid descriptor that nothing else owns.
        Ok(EventFd(unsafe { File::from_raw_fd(fd) }))
    }

    /// Watches it from one loop's epoll set.
    pub(crate) fn register(&self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(&mut SourceFd(&self.0.as_raw_fd()), token, Interest::READABLE)
    }

    /// Interrupts every loop's `poll`. Nobody reads the counter: with
    /// edge-triggered epoll, each write is an event of its own.
    pub(crate) fn wake(&self) -> io::Result<()> {
        match (&self.0).write(&1u64.to_ne_bytes()) {
            Ok(_) => Ok(()),
            // The counter is at its maximum (after 2^64 - 2 writes): reset it.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let _ = (&self.0).read(&mut [0u8; 8]);
                self.wake()
            }
            Err(e) => Err(e),
        }
    }
}

// ANCHOR: waker
/// The core's [`Wake`] for one event loop: a list of woken tokens plus the
/// shared [`EventFd`].
///
/// A publisher — on this loop's thread or on any other — pushes the token of
/// the connection it gave output to. Only the push that makes the list
/// non-empty writes to the eventfd: however many subscribers one publish
/// reaches, a loop is interrupted by one system call, and then finds every
/// woken connection in the list. The loop swaps the list out under the lock,
/// so the lock is held for a push or a swap, never while a connection runs.
///
/// Every connection of a loop shares this one waker (an `Arc` in the core's
/// `Peer`); the token tells them apart. A token whose connection has gone
/// meanwhile, or whose slot a new connection took, costs one spurious tick:
/// the core checks the time and its outbox, never trusts the wake-up itself.
pub(crate) struct LoopWaker {
    eventfd: Arc<EventFd>,
    woken: Mutex<Vec<usize>>,
}
// ANCHOR_END: waker

impl fmt::Debug for LoopWaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoopWaker").field("woken", &self.list().len()).finish_non_exhaustive()
    }
}

impl LoopWaker {
    /// A waker that interrupts its loop's `poll` through `eventfd`.
    pub(crate) fn new(eventfd: Arc<EventFd>) -> LoopWaker {
        LoopWaker { eventfd, woken: Mutex::new(Vec::new()) }
    }

    /// Interrupts the loop's `poll` (a wake-up without a connection: stop).
    pub(crate) fn wake_loop(&self) {
        if let Err(e) = self.eventfd.wake() {
            tracing::error!("cannot wake an event loop: {e}");
        }
    }

    /// Moves the woken tokens into `into` (which the loop passes empty).
    pub(crate) fn take(&self, into: &mut Vec<usize>) {
        std::mem::swap(&mut *self.list(), into);
    }

    fn list(&self) -> MutexGuard<'_, Vec<usize>> {
        // A push or a swap cannot leave the list inconsistent: ignore poisoning.
        self.woken.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Wake for LoopWaker {
    fn wake(&self, token: usize) {
        self.wake_all(&[token]);
    }

    /// All of one publish's connections on this loop, under one lock: the
    /// loop, woken by the first push that finds the list empty, takes them
    /// all at once — from a broker's thread, a push per connection would
    /// wake it again and again for a few connections each time.
    fn wake_all(&self, tokens: &[usize]) {
        let first = {
            let mut woken = self.list();
            let was_empty = woken.is_empty();
            woken.extend_from_slice(tokens);
            was_empty && !tokens.is_empty()
        };
        if first {
            self.wake_loop();
        }
    }
}
