//! # rtlab-threads: the threads lab (the baseline)
//!
//! The contract served the classic way: one OS thread per connection, with
//! `std::net` sockets. It is the first design everyone writes and the
//! baseline the other labs are measured against: the code is plain, and the
//! cost is one kernel thread — a kernel stack, a scheduler entry, a user
//! stack mapping — for every client, idle or not.
//!
//! Like every lab this crate is only the runtime half of a sans-IO design:
//! all protocol logic lives in [`rtlab_core`]; this crate moves bytes between
//! sockets and [`Connection`](rtlab_core::Connection)s and turns the core's
//! deadlines into `ppoll` timeouts.
//!
//! ## Map
//!
//! * [`serve`] / [`serve_with`] — the accept loop on the calling thread until
//!   [`Stop`], one thread per accepted connection, then a graceful close.
//!   When no thread can be created, the new client gets a `503` and everyone
//!   else keeps being served.
//! * `conn` — the per-connection thread: one loop that reads, writes and then
//!   sleeps in `ppoll(2)` on its socket until data, room to write, a deadline
//!   or a wake arrives.
//! * `wake` — how a publisher on another thread interrupts that `ppoll`: a
//!   signal aimed at the one thread, unblocked only inside `ppoll`.
//! * [`Options`] — thread stack size and an optional cap on threads.
//!
//! ## Where a connection's memory goes
//!
//! Its thread: a stack mapping of [`Options::stack_size`] bytes plus a guard
//! page, of which only the touched pages are resident (the thread's control
//! block and thread-locals at the top, the connection loop and its 16 KiB
//! read buffer below), and in the kernel a task and a kernel stack. Then the
//! core's connection state, on the heap. One file descriptor: the socket.

mod conn;
mod wake;

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtlab_adapter::{ACCEPT_BACKOFF, Roster, Stop, shutdown_deadline, tune_socket, wake_accept};
use rtlab_core::Server;

use crate::wake::ThreadWaker;

// ANCHOR: stack_size
/// The connection threads' stack: 512 KiB of address space (std's default
/// is 2 MiB, glibc's 8 MiB), of which only the touched pages are resident.
///
/// A connection thread runs everything on its own stack: the loop, its
/// 16 KiB read buffer and all the protocol work. The deepest any client can
/// push it is a `/ws` publish whose JSON nests 128 levels (serde_json's
/// limit), deepest in a debug build (which the tests use), whose frames are
/// several times larger. `examples/stack_floor.rs` finds the smallest stack
/// that survives that request; this size leaves the debug build about twice
/// that. An overflow hits the guard page, and std aborts the whole process.
pub const STACK_SIZE: usize = 512 * 1024;
// ANCHOR_END: stack_size

/// Refused sockets waiting for their client to read the 503 and close.
const MAX_REFUSED: usize = 64;

/// How long a refused socket may linger.
const REFUSED_LINGER: Duration = Duration::from_secs(1);

/// The lab's tunables.
#[derive(Debug, Clone)]
pub struct Options {
    /// Stack size of each connection thread, in bytes.
    pub stack_size: usize,
    /// At most this many connection threads; the next client is refused
    /// exactly as when the OS cannot create a thread (a `503`). `None`: only
    /// the OS limits them (see [`thread_ceiling`]).
    pub max_threads: Option<usize>,
}

impl Default for Options {
    fn default() -> Self {
        Options { stack_size: STACK_SIZE, max_threads: None }
    }
}

impl Options {
    /// The defaults, with `RTLAB_THREADS_STACK` (bytes) and
    /// `RTLAB_THREADS_MAX` (threads) read from the environment if set — to
    /// try a smaller stack, or to see the `503` without exhausting the OS.
    pub fn from_env() -> Options {
        let number = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<usize>().ok());
        let mut options = Options::default();
        if let Some(bytes) = number("RTLAB_THREADS_STACK") {
            options.stack_size = bytes;
        }
        options.max_threads = number("RTLAB_THREADS_MAX");
        options
    }
}

// ANCHOR: ceiling
/// Memory mappings each connection thread costs: its stack and the stack's
/// guard page (glibc), and the signal stack and its guard page that std
/// gives every thread it starts, for its stack-overflow message.
pub const MAPS_PER_THREAD: usize = 4;

/// Mappings left for everything else (the allocator's arenas grow).
const MAPS_RESERVE: usize = 1024;

/// How many connection threads the kernel's `vm.max_map_count` leaves room
/// for, counted once at start (`None` if `/proc` cannot say).
///
/// This is the one OS limit the lab must not run into: the thread's own
/// stack is mapped before `pthread_create` returns, so a refusal there is an
/// error the accept loop answers with a `503`; but std maps the signal stack
/// from inside the new thread, where a refusal cannot be returned to anyone
/// and aborts the whole process. So the lab stops one thread short of it.
/// (Process ids, `kernel.threads-max`, `RLIMIT_NPROC` and memory fail in
/// `pthread_create` and need no such care.)
pub fn thread_ceiling() -> Option<usize> {
    let max: usize = std::fs::read_to_string("/proc/sys/vm/max_map_count").ok()?.trim().parse().ok()?;
    let used = std::fs::read_to_string("/proc/self/maps").ok()?.lines().count();
    Some(max.saturating_sub(used + MAPS_RESERVE) / MAPS_PER_THREAD)
}
// ANCHOR_END: ceiling

/// What every connection thread of one server shares.
struct Shared {
    server: Arc<Server>,
    /// The live connections, and whether the server is stopping.
    roster: Roster,
}

/// Serves the contract on `listener` until `stop` is requested, then stops
/// accepting, lets every connection say goodbye (WebSocket close 1001, the
/// end of event streams, answers to held long polls) and returns.
pub fn serve(listener: TcpListener, server: Arc<Server>, stop: Arc<Stop>) -> io::Result<()> {
    serve_with(listener, server, stop, Options::from_env())
}

/// [`serve`] with explicit [`Options`].
pub fn serve_with(listener: TcpListener, server: Arc<Server>, stop: Arc<Stop>, options: Options) -> io::Result<()> {
    wake::install()?;
    listener.set_nonblocking(false)?;
    let listening = listener.local_addr()?;
    let shared = Arc::new(Shared { server: server.clone(), roster: Roster::new() });

    let on_stop = shared.clone();
    stop.on_stop(move || {
        on_stop.roster.stop();
        // The accept loop is blocked in accept() or poll(): a connection wakes it.
        wake_accept(listening);
    });

    let ceiling = thread_ceiling();
    let max_threads = match (options.max_threads, ceiling) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    tracing::info!(?max_threads, "threads lab: one thread per connection, {} KiB stacks", options.stack_size / 1024);
    accept_loop(&listener, &shared, &Options { max_threads, ..options });
    drop(listener);

    tracing::info!("stopping: closing {} connections", shared.roster.len());
    shared.roster.wait_empty(shutdown_deadline(&server.config, Instant::now()));
    Ok(())
}

// ANCHOR: accept
/// Accepts until the server stops, one thread per connection.
fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>, options: &Options) {
    let mut refused = Refused::default();
    let mut refusals: u64 = 0;
    loop {
        // Refused sockets need a look now and then; otherwise block.
        if !refused.is_empty() && !wait_readable(listener, Duration::from_millis(50)) {
            refused.tend();
            continue;
        }
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) => {
                if shared.roster.is_stopping() {
                    return;
                }
                tracing::warn!("accept failed: {e}");
                std::thread::sleep(ACCEPT_BACKOFF);
                continue;
            }
        };
        if shared.roster.is_stopping() {
            return; // The wake-up connection from `stop`, or a late client.
        }
        tune_socket(&shared.server.config, socket2::SockRef::from(&stream));
        let stream = Arc::new(stream);
        // The connection joins the roster here, before its thread exists, so
        // that the count of threads is exact and a stop cannot miss it.
        let waker = Arc::new(ThreadWaker::new());
        let key = shared.roster.join(waker.clone());
        let spawned = if options.max_threads.is_some_and(|max| shared.roster.len() > max) {
            Err(io::Error::new(io::ErrorKind::WouldBlock, "at the thread cap or the vm.max_map_count budget"))
        } else {
            let (mine, shared) = (stream.clone(), shared.clone());
            std::thread::Builder::new()
                .stack_size(options.stack_size)
                .spawn(move || conn::run(&mine, &waker, key, &shared))
                .map(drop)
        };
        // When the OS cannot create another thread (process ids,
        // kernel.threads-max, RLIMIT_NPROC, a cgroup's pids.max, memory),
        // spawn fails and the closure — with its handle on the socket — is
        // dropped unrun; the map budget is checked above, before std could
        // abort. This lab's ceiling: refuse this client, keep the rest.
        if let Err(e) = spawned {
            shared.roster.leave(key);
            refusals += 1;
            if refusals.is_power_of_two() {
                tracing::warn!("no thread for a new connection ({e}): answering 503 ({refusals} so far)");
            }
            refused.add(stream);
        }
        refused.tend();
    }
}
// ANCHOR_END: accept

/// Waits until `listener` has a connection to accept, at most `limit`.
fn wait_readable(listener: &TcpListener, limit: Duration) -> bool {
    let mut fds = [libc::pollfd { fd: listener.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
    let ms = limit.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd for the duration of the call.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), 1, ms) };
    n > 0
}

// ANCHOR: refused
/// Clients refused with a `503`, until they have read it.
///
/// Closing a socket whose client has sent bytes the server never read makes
/// the kernel send a reset, which can destroy the `503` before the client
/// reads it. So a refused socket is answered, shut down for writing, and kept
/// here (without a thread: the accept loop looks after them) until its
/// client closes or a second passes.
#[derive(Default)]
struct Refused(VecDeque<(Arc<TcpStream>, Instant)>);

impl Refused {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn add(&mut self, stream: Arc<TcpStream>) {
        let answer = rtlab_core::http::unavailable("server at capacity: no thread available");
        let _ = stream.set_nonblocking(true);
        // A new socket's send buffer is empty: the short answer fits at once.
        if (&*stream).write_all(&answer).is_err() || stream.shutdown(Shutdown::Write).is_err() {
            return;
        }
        if self.0.len() == MAX_REFUSED {
            self.0.pop_front();
        }
        self.0.push_back((stream, Instant::now() + REFUSED_LINGER));
    }

    /// Drops the sockets whose client has closed, or whose time is up.
    fn tend(&mut self) {
        let now = Instant::now();
        let mut sink = [0u8; 1024];
        self.0.retain(|(stream, deadline)| {
            loop {
                match (&**stream).read(&mut sink) {
                    Ok(0) => return false,
                    Ok(_) => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return now < *deadline,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => return false,
                }
            }
        });
    }
}
// ANCHOR_END: refused
