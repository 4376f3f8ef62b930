//! The gate: how many connections a lab serves at once, and the one way
//! every lab turns a client away.
//!
//! Every lab accepts in its own way (a tokio task, an event loop, a
//! coroutine, a thread), but what happens at the door is the same, so it is
//! written once, here: a connection is *admitted* ([`Gate::admit`]) while the
//! process serves fewer than its limit, and holds a [`Ticket`] for as long as
//! it lives; past the limit — or when the runtime itself has no room, no
//! thread or no coroutine stack — it is *refused* ([`Gate::refuse_full`],
//! [`Gate::refuse_capacity`]): a `503` with a one-line reason, and the socket
//! is handed to the gate, which closes it without hurting the answer.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtlab_core::{Refusal, Server};

// ANCHOR: constants
/// Descriptors kept back from the open-files limit when
/// [`Config::max_connections`](rtlab_core::Config::max_connections) is 0
/// (derived): the server's own (the listener, epoll sets and eventfds, the
/// signal pipe, standard streams: a few dozen at most) and the refused
/// sockets the gate holds ([`MAX_REFUSED`]).
pub const RESERVED_FDS: usize = 128;

/// Refused sockets held at once while their clients read the `503`; past
/// this, the oldest is closed early. Bounded, because a refusal must cost the
/// server (nearly) nothing, also in a flood.
pub const MAX_REFUSED: usize = 64;

/// How long a refused socket is held, at most, for its client to read the
/// answer and close.
pub const REFUSED_LINGER: Duration = Duration::from_secs(1);
// ANCHOR_END: constants

/// How often the gate's thread looks for refused sockets that arrived while
/// it was waiting for the ones it holds.
const TEND_EVERY: Duration = Duration::from_millis(50);

// ANCHOR: gate
/// The door of one server: its connection limit, how many it serves, and
/// the thread that looks after refused sockets.
///
/// A refusal answers at once, on the thread that accepted: a new socket's
/// send buffer is empty, so the short `503` fits without waiting. Then the
/// write half is shut down (the client reads the answer, then end of file),
/// and the socket goes to the gate's thread, which reads and discards what
/// the client still sends until it closes, or [`REFUSED_LINGER`] passes.
/// Closing at once instead would be a trap: closing a socket with unread
/// input makes the kernel send a reset, which can destroy the `503` before
/// the client has read it.
///
/// That thread is the one thing a refusal needs that a lab could run out
/// of, so it is started with the gate, before anything is refused: the
/// threads lab refuses precisely when it cannot start a thread.
pub struct Gate {
    server: Arc<Server>,
    max: usize,
    open: AtomicUsize,
    /// To the gate's thread (a `Sender` is shared between threads as it is).
    refused: Sender<(TcpStream, Instant)>,
}
// ANCHOR_END: gate

impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gate").field("max", &self.max).field("open", &self.open()).finish_non_exhaustive()
    }
}

/// A place at the gate: held by an admitted connection for its whole life
/// (in its task, its thread, its coroutine, its slot in an event loop);
/// dropping it frees the place.
#[derive(Debug)]
pub struct Ticket(Arc<Gate>);

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Gate {
    /// The gate of `server`: its limit resolved (and shown in `/stats`), its
    /// thread for refused sockets started.
    pub fn start(server: &Arc<Server>) -> io::Result<Arc<Gate>> {
        let max = connection_limit(server.config.max_connections, open_files_limit());
        server.stats.set_max_connections(max);
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new().name("refused".into()).stack_size(64 * 1024).spawn(move || tend(&rx))?;
        tracing::info!(max_connections = max, "connection limit");
        Ok(Arc::new(Gate { server: server.clone(), max, open: AtomicUsize::new(0), refused: tx }))
    }

    /// The connection limit in force.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Connections admitted and not yet gone.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    // ANCHOR: admit
    /// A place for one more connection, if the limit allows. Counting first
    /// and checking after means two threads that accept at once (the mio
    /// lab's loops) cannot both take the last place.
    pub fn admit(self: &Arc<Self>) -> Option<Ticket> {
        if self.open.fetch_add(1, Ordering::AcqRel) < self.max {
            Some(Ticket(self.clone()))
        } else {
            self.open.fetch_sub(1, Ordering::AcqRel);
            None
        }
    }
    // ANCHOR_END: admit

    /// Refuses a client because the process serves its limit of connections.
    pub fn refuse_full(&self, stream: TcpStream) {
        let reason = format!("too many connections (this server serves at most {} at once)", self.max);
        self.refuse(stream, Refusal::Connections, &reason);
    }

    /// Refuses a client because the runtime has no room for it: `what` says
    /// what it lacks ("no thread available").
    pub fn refuse_capacity(&self, stream: TcpStream, what: &str) {
        self.refuse(stream, Refusal::Capacity, &format!("server at capacity: {what}"));
    }

    // ANCHOR: refuse
    /// Answers `503` with `reason`, shuts down the write half and hands the
    /// socket to the gate's thread.
    fn refuse(&self, stream: TcpStream, why: Refusal, reason: &str) {
        self.server.stats.refused(why);
        let count = self.server.stats.refused_count(why);
        if count.is_power_of_two() {
            tracing::warn!("refusing a connection with 503: {reason} ({count} so far)");
        }
        let answer = rtlab_core::http::unavailable(reason);
        let _ = stream.set_nonblocking(true);
        if (&stream).write_all(&answer).is_err() || stream.shutdown(Shutdown::Write).is_err() {
            return; // The client is gone already.
        }
        let _ = self.refused.send((stream, Instant::now() + REFUSED_LINGER));
    }
    // ANCHOR_END: refuse
}

// ANCHOR: limit
/// The connection limit: `configured`, or when it is 0, the open-files
/// limit less [`RESERVED_FDS`] (at least half of it, for a tiny limit).
///
/// Past the open-files limit a server cannot even accept: the client waits
/// in the listen backlog with no answer, while the accept loop backs off.
/// Stopping short of it, by default, turns that silence into a `503` that
/// says why, with descriptors left for the answer. A `configured` limit
/// above the open-files limit lets the process meet the OS limit instead.
pub fn connection_limit(configured: usize, open_files: Option<usize>) -> usize {
    match (configured, open_files) {
        (0, Some(files)) => files.saturating_sub(RESERVED_FDS).max(files / 2),
        (0, None) => usize::MAX,
        (n, _) => n,
    }
}
// ANCHOR_END: limit

/// The process's open-files limit (the soft `RLIMIT_NOFILE`), if it has one.
pub fn open_files_limit() -> Option<usize> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit with a valid resource and a valid struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 || limit.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    Some(usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX))
}

// ANCHOR: tend
/// The gate's thread: holds refused sockets until their client closes or
/// their time is up, reading and discarding what they send. Sleeps in
/// `recv` while it holds none; ends when the gate is dropped.
fn tend(refusals: &Receiver<(TcpStream, Instant)>) {
    let mut held: VecDeque<(TcpStream, Instant)> = VecDeque::new();
    loop {
        if held.is_empty() {
            match refusals.recv() {
                Ok(refused) => held.push_back(refused),
                Err(_) => return,
            }
        }
        loop {
            match refusals.try_recv() {
                Ok(refused) => {
                    if held.len() == MAX_REFUSED {
                        held.pop_front(); // The oldest goes early: a flood costs no more.
                    }
                    held.push_back(refused);
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
        let now = Instant::now();
        let next = held.iter().map(|(_, until)| *until).min().unwrap_or(now);
        wait_readable(&held, next.saturating_duration_since(now).min(TEND_EVERY));
        let now = Instant::now();
        held.retain(|(stream, until)| drain(stream) && now < *until);
    }
}
// ANCHOR_END: tend

/// Waits until one of `held` is readable (input, end of file or an error),
/// at most `limit`.
fn wait_readable(held: &VecDeque<(TcpStream, Instant)>, limit: Duration) {
    let mut fds: Vec<libc::pollfd> =
        held.iter().map(|(s, _)| libc::pollfd { fd: s.as_raw_fd(), events: libc::POLLIN, revents: 0 }).collect();
    let ms = limit.as_millis().clamp(1, i32::MAX as u128) as i32;
    // SAFETY: `fds` is a valid array of `fds.len()` pollfds for the call.
    unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
}

/// Reads and discards what the client sent; `false` once it has closed (or
/// the socket failed): then the socket can be dropped without a reset.
fn drain(mut stream: &TcpStream) -> bool {
    let mut sink = [0u8; 1024];
    loop {
        match stream.read(&mut sink) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtlab_core::Config;
    use std::net::TcpListener;

    #[test]
    fn the_derived_limit_keeps_descriptors_back() {
        assert_eq!(connection_limit(0, Some(20_000)), 20_000 - RESERVED_FDS);
        assert_eq!(connection_limit(0, Some(64)), 32, "a tiny limit keeps half");
        assert_eq!(connection_limit(0, None), usize::MAX);
        assert_eq!(connection_limit(10, Some(20_000)), 10, "a configured limit is taken as it is");
    }

    fn gate(max: usize) -> Arc<Gate> {
        let server = Server::new(Config { max_connections: max, ..Config::default() });
        Gate::start(&server).unwrap()
    }

    #[test]
    fn tickets_count_places_and_give_them_back() {
        let gate = gate(2);
        let a = gate.admit().expect("first");
        let b = gate.admit().expect("second");
        assert!(gate.admit().is_none(), "the limit");
        assert_eq!(gate.open(), 2);
        drop(a);
        let c = gate.admit().expect("a place came free");
        drop((b, c));
        assert_eq!(gate.open(), 0);
    }

    #[test]
    fn admitting_from_many_threads_never_passes_the_limit() {
        let gate = gate(10);
        let tickets: Vec<Ticket> = std::thread::scope(|s| {
            let handles: Vec<_> =
                (0..8).map(|_| s.spawn(|| (0..100).filter_map(|_| gate.admit()).collect::<Vec<_>>())).collect();
            handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(tickets.len(), 10);
        assert_eq!(gate.open(), 10);
    }

    /// A refused client reads the whole `503` and then end of file — also
    /// when it sent a request the server never read (which, closed at once,
    /// would make the kernel reset the connection under the answer).
    #[test]
    fn a_refused_client_reads_the_503_then_end_of_file() {
        let gate = gate(1);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client.write_all(b"GET /stats HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let (accepted, _) = listener.accept().unwrap();
        std::thread::sleep(Duration::from_millis(50)); // Let the request arrive, unread.
        gate.refuse_full(accepted);
        client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut answer = String::new();
        client.read_to_string(&mut answer).expect("the answer, then end of file (no reset)");
        assert!(answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{answer}");
        assert!(answer.ends_with("too many connections (this server serves at most 1 at once)\n"), "{answer}");
        assert_eq!(gate.server.stats.refused_count(Refusal::Connections), 1);
    }
}
