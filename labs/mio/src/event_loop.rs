//! One event loop: a `mio::Poll` (an epoll set), the connections registered
//! in it, their deadlines, and the loop that turns readiness into calls on
//! the core.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use rtlab_adapter::{ACCEPT_BACKOFF, Gate, READ_CHUNK, Step, Stop, Tls, begin_shutdown, session_for, tune_socket};
use rtlab_core::{Connection, Server};
use slab::Slab;

use crate::conn::{Conn, Scratch};
use crate::timers::{MAX_KEYS, NOT_FILED, Timers};
use crate::waker::{EventFd, LoopWaker};

/// The token of the shared [`EventFd`]; connections use their slab key.
const WAKER: Token = Token(usize::MAX);
/// The token of the shared listening socket.
const LISTENER: Token = Token(usize::MAX - 1);

/// Events taken from the kernel per `epoll_wait`.
const EVENTS: usize = 1024;
/// Connections accepted per turn before the loop serves the ones it has.
const ACCEPTS_PER_TURN: usize = 64;
/// Stale timer entries tolerated beyond twice the connections before the
/// heap is rebuilt.
const STALE_TIMERS: usize = 1024;

// ANCHOR: accept_state
/// Whether the loop should call `accept` on the shared listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Accept {
    /// Everything pending was accepted; a readiness event will say when a
    /// new connection is waiting.
    Idle,
    /// A full batch was accepted and more may be waiting: the listener is
    /// edge-triggered, so no new event would come for them. Accept again
    /// next turn.
    Ready,
    /// `accept` failed for want of a file descriptor (`EMFILE`, `ENFILE`) or
    /// of kernel memory. The connection that failed is still in the backlog
    /// and the listener's edge has been spent: no event will come again until
    /// yet another client connects, perhaps never. So the loop retries on a
    /// timer, `ACCEPT_BACKOFF` apart: a few system calls a second while the
    /// limit lasts, a new connection served within that once descriptors are
    /// free again.
    Paused { until: Instant },
    /// Shutting down: the listener is no longer watched.
    Stopped,
}
// ANCHOR_END: accept_state

// ANCHOR: event_loop
/// One event loop, run by one thread: the epoll set, every connection this
/// loop accepted, and their deadlines.
///
/// Connections live in a [`Slab`] — a vector with a free list — and their key
/// in it is both their mio [`Token`] (how an event names them) and their
/// core wake-up token (how a publisher names them). Nothing about a
/// connection lives anywhere else in the loop, apart from one timer entry.
#[derive(Debug)]
pub(crate) struct EventLoop {
    id: usize,
    poll: Poll,
    events: Events,
    server: Arc<Server>,
    /// The listening socket, shared by every loop (each watches it in its
    /// own epoll set).
    listener: Arc<TcpListener>,
    /// The connection limit, shared by every loop.
    gate: Arc<Gate>,
    /// The server's TLS configuration, if it speaks TLS.
    tls: Option<Tls>,
    accept: Accept,
    conns: Slab<Conn>,
    timers: Timers,
    waker: Arc<LoopWaker>,
    /// Connections to drive this turn, each once (`Conn::queued`).
    ready: Vec<usize>,
    /// The waker's list, swapped out each turn.
    woken: Vec<usize>,
    scratch: Scratch,
}
// ANCHOR_END: event_loop

impl EventLoop {
    /// A loop with its own epoll set, watching the shared `listener` and the
    /// shared `eventfd`.
    pub(crate) fn new(
        id: usize,
        listener: Arc<TcpListener>,
        eventfd: Arc<EventFd>,
        server: Arc<Server>,
        gate: Arc<Gate>,
        tls: Option<Tls>,
    ) -> io::Result<EventLoop> {
        let poll = Poll::new()?;
        // The listener is one socket in several epoll sets: register its file
        // descriptor, which mio allows without taking ownership.
        poll.registry().register(&mut SourceFd(&listener.as_raw_fd()), LISTENER, Interest::READABLE)?;
        eventfd.register(poll.registry(), WAKER)?;
        let waker = Arc::new(LoopWaker::new(eventfd));
        Ok(EventLoop {
            id,
            poll,
            events: Events::with_capacity(EVENTS),
            server,
            listener,
            gate,
            tls,
            accept: Accept::Ready, // Connections may have queued before we registered.
            conns: Slab::new(),
            timers: Timers::new(Instant::now()),
            waker,
            ready: Vec::new(),
            woken: Vec::new(),
            scratch: Scratch::new(READ_CHUNK),
        })
    }

    /// This loop's number, for its thread's name.
    pub(crate) fn id(&self) -> usize {
        self.id
    }

    /// The waker that interrupts this loop's `poll`.
    pub(crate) fn waker(&self) -> Arc<LoopWaker> {
        self.waker.clone()
    }

    // ANCHOR: run
    /// Runs until `stop`, then closes every connection gracefully and returns.
    ///
    /// One turn: sleep in `epoll_wait` until an event, a wake-up or the
    /// earliest deadline; note what happened; then drive each connection
    /// that something happened to, once.
    pub(crate) fn run(mut self, stop: &Stop) -> io::Result<()> {
        let mut shutdown: Option<Instant> = None;
        loop {
            let now = Instant::now();
            if shutdown.is_none() && stop.is_stopped() {
                shutdown = Some(self.begin_shutdown(now));
            }
            if let Some(deadline) = shutdown {
                if self.conns.is_empty() {
                    break;
                }
                if now >= deadline {
                    tracing::warn!(loop_id = self.id, "{} connections did not close in time", self.conns.len());
                    break;
                }
            }
            let timeout = self.timeout(now, shutdown);
            if let Err(e) = self.poll.poll(&mut self.events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            // The time, read once per turn: every connection driven in this
            // turn sees the same `now`.
            let now = Instant::now();
            self.note_events();
            self.note_wakeups();
            self.note_deadlines(now);
            if self.accept_due(now) {
                self.accept(now);
            }
            self.drive_ready(now, shutdown.is_some());
        }
        Ok(())
    }
    // ANCHOR_END: run

    /// How long `poll` may sleep: not at all if work is left over, else until
    /// the earliest deadline, accept retry or shutdown deadline.
    fn timeout(&self, now: Instant, shutdown: Option<Instant>) -> Option<Duration> {
        if !self.ready.is_empty() || self.accept == Accept::Ready {
            return Some(Duration::ZERO);
        }
        let retry = match self.accept {
            Accept::Paused { until } => Some(until),
            _ => None,
        };
        [self.timers.next(), retry, shutdown]
            .into_iter()
            .flatten()
            .min()
            .map(|wake| wake.saturating_duration_since(now))
    }

    // ANCHOR: note_events
    /// Records what each event says in its connection and queues the
    /// connection to be driven.
    fn note_events(&mut self) {
        for event in self.events.iter() {
            match event.token() {
                WAKER => {} // The list is read in `note_wakeups`.
                LISTENER => {
                    if self.accept == Accept::Idle {
                        self.accept = Accept::Ready;
                    }
                }
                Token(key) => {
                    if let Some(conn) = self.conns.get_mut(key) {
                        conn.on_event(event);
                        queue(&mut self.ready, key, conn);
                    }
                }
            }
        }
    }
    // ANCHOR_END: note_events

    // ANCHOR: note_wakeups
    /// Queues every connection a publisher woke, to be ticked.
    fn note_wakeups(&mut self) {
        self.waker.take(&mut self.woken);
        for key in self.woken.drain(..) {
            if let Some(conn) = self.conns.get_mut(key) {
                conn.tick = true;
                queue(&mut self.ready, key, conn);
            }
        }
    }

    /// Queues every connection whose deadline passed, to be ticked.
    fn note_deadlines(&mut self, now: Instant) {
        let (conns, ready) = (&mut self.conns, &mut self.ready);
        self.timers.expire(now, |key, at| {
            if let Some(conn) = conns.get_mut(key) {
                if conn.filed == at {
                    conn.filed = NOT_FILED;
                    conn.tick = true;
                    queue(ready, key, conn);
                }
            }
        });
    }
    // ANCHOR_END: note_wakeups

    // ANCHOR: drive_ready
    /// Drives each queued connection once, then files it under its next
    /// deadline, queues it again, or drops it.
    fn drive_ready(&mut self, now: Instant, stopping: bool) {
        let mut ready = std::mem::take(&mut self.ready);
        for key in ready.drain(..) {
            let Some(conn) = self.conns.get_mut(key) else { continue };
            conn.queued = false;
            match conn.drive(&mut self.scratch, now, stopping) {
                Step::Wait { deadline, .. } => self.timers.schedule(key, &mut conn.filed, deadline),
                // It read its share and may have more: drive it again next turn.
                Step::Yield => {
                    self.timers.schedule(key, &mut conn.filed, conn.conn.next_deadline());
                    queue(&mut self.ready, key, conn);
                }
                Step::Done => {
                    // Closing the socket also removes it from the epoll set.
                    self.conns.remove(key);
                }
            }
        }
        if self.ready.is_empty() {
            self.ready = ready; // Keep the allocation for the next turn.
        }
        if self.timers.len() > 2 * self.conns.len() + STALE_TIMERS {
            let live = self.conns.iter().filter(|(_, c)| c.filed != NOT_FILED).map(|(key, c)| (key, c.filed));
            self.timers.compact(live);
        }
    }
    // ANCHOR_END: drive_ready

    fn accept_due(&self, now: Instant) -> bool {
        match self.accept {
            Accept::Ready => true,
            Accept::Paused { until } => now >= until,
            Accept::Idle | Accept::Stopped => false,
        }
    }

    // ANCHOR: accept
    /// Accepts up to a batch of connections from the shared listener.
    fn accept(&mut self, now: Instant) {
        let was_paused = matches!(self.accept, Accept::Paused { .. });
        self.accept = Accept::Ready;
        for _ in 0..ACCEPTS_PER_TURN {
            match self.listener.accept() {
                Ok((stream, _)) => self.add(stream, now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if was_paused {
                        tracing::info!(loop_id = self.id, open = self.conns.len(), "accepting again");
                    }
                    self.accept = Accept::Idle;
                    return;
                }
                Err(e) if out_of_resources(&e) => {
                    if !was_paused {
                        tracing::warn!(
                            loop_id = self.id,
                            open = self.conns.len(),
                            "accept: {e}; retrying every {ACCEPT_BACKOFF:?}"
                        );
                    }
                    self.accept = Accept::Paused { until: now + ACCEPT_BACKOFF };
                    return;
                }
                // The client gave up before we accepted (ECONNABORTED), a
                // signal, a firewall: that connection only.
                Err(e) => tracing::debug!(loop_id = self.id, "accept: {e}"),
            }
        }
    }
    // ANCHOR_END: accept

    // ANCHOR: add
    /// Admits an accepted socket at the gate (or lets the gate refuse it),
    /// sets it up and registers it, once, for both directions.
    fn add(&mut self, mut stream: TcpStream, now: Instant) {
        let Some(ticket) = self.gate.admit() else {
            return self.gate.refuse_full(stream.into());
        };
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        if key >= MAX_KEYS {
            return self.gate.refuse_capacity(stream.into(), "this event loop's timer keys are all taken");
        }
        tune_socket(&self.server.config, socket2::SockRef::from(&stream));
        let tls = match session_for(self.tls.as_ref()) {
            Ok(tls) => tls,
            Err(e) => return tracing::warn!(loop_id = self.id, "cannot start a TLS session: {e}"),
        };
        if let Err(e) = self.poll.registry().register(&mut stream, Token(key), Interest::READABLE | Interest::WRITABLE)
        {
            tracing::warn!(loop_id = self.id, "cannot register a connection: {e}");
            return; // Dropping the stream closes it.
        }
        let conn = Connection::new(self.server.clone(), self.waker.clone(), key, now);
        entry.insert(Conn::new(conn, stream, tls, ticket));
    }
    // ANCHOR_END: add

    // ANCHOR: shutdown
    /// Stops watching the listener, queues every connection to hear that the
    /// server is shutting down (its next drive says goodbye), and returns the
    /// time by which all must be gone.
    fn begin_shutdown(&mut self, now: Instant) -> Instant {
        let listener = self.listener.as_raw_fd();
        if let Err(e) = self.poll.registry().deregister(&mut SourceFd(&listener)) {
            tracing::debug!(loop_id = self.id, "deregister listener: {e}");
        }
        self.accept = Accept::Stopped;
        tracing::info!(loop_id = self.id, "stopping: closing {} connections", self.conns.len());
        for (key, conn) in &mut self.conns {
            queue(&mut self.ready, key, conn);
        }
        begin_shutdown(&self.server, now)
    }
    // ANCHOR_END: shutdown
}

/// Adds a connection to the list of those to drive this turn, once.
fn queue(ready: &mut Vec<usize>, key: usize, conn: &mut Conn) {
    if !conn.queued {
        conn.queued = true;
        ready.push(key);
    }
}

/// `accept` errors that say the process or the system ran out of something:
/// the same call will fail again until a connection closes.
fn out_of_resources(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM))
}

