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
//!   Past the connection limit, or when no thread can be created, the new
//!   client gets a `503` from the adapter's [`Gate`] and everyone else keeps
//!   being served.
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

use std::io;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Instant;

use rtlab_adapter::{ACCEPT_BACKOFF, Gate, Roster, Stop, Tls, accept_failed, begin_shutdown, tune_socket, wake_accept};
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
    /// The connection limit, and where refused clients go.
    gate: Arc<Gate>,
    /// The server's TLS configuration, if it speaks TLS.
    tls: Option<Tls>,
}

/// Serves the contract on `listener` until `stop` is requested, then stops
/// accepting, lets every connection say goodbye (WebSocket close 1001, the
/// end of event streams, answers to held long polls) and returns.
pub fn serve(listener: TcpListener, server: Arc<Server>, stop: Arc<Stop>, tls: Option<Tls>) -> io::Result<()> {
    serve_with(listener, server, stop, Options::from_env(), tls)
}

/// [`serve`] with explicit [`Options`].
pub fn serve_with(
    listener: TcpListener,
    server: Arc<Server>,
    stop: Arc<Stop>,
    options: Options,
    tls: Option<Tls>,
) -> io::Result<()> {
    wake::install()?;
    listener.set_nonblocking(false)?;
    let listening = listener.local_addr()?;
    let shared = Arc::new(Shared { server: server.clone(), roster: Roster::new(), gate: Gate::start(&server)?, tls });

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
    shared.roster.wait_empty(begin_shutdown(&server, Instant::now()));
    Ok(())
}

// ANCHOR: accept
/// Accepts until the server stops, one thread per connection.
fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>, options: &Options) {
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) => {
                if !accept_failed(&e, shared.roster.is_stopping()) {
                    return;
                }
                std::thread::sleep(ACCEPT_BACKOFF);
                continue;
            }
        };
        if shared.roster.is_stopping() {
            return; // The wake-up connection from `stop`, or a late client.
        }
        let Some(ticket) = shared.gate.admit() else {
            shared.gate.refuse_full(stream);
            continue;
        };
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
                .spawn(move || conn::run(&mine, &waker, key, &shared, ticket))
                .map(drop)
        };
        // When the OS cannot create another thread (process ids,
        // kernel.threads-max, RLIMIT_NPROC, a cgroup's pids.max, memory),
        // spawn fails and the closure — with its handles on the socket and
        // the gate's ticket — is dropped unrun; the map budget is checked
        // above, before std could abort. This lab's ceiling: the gate
        // refuses this client, the rest are served.
        if let Err(e) = spawned {
            shared.roster.leave(key);
            tracing::debug!("no thread for a new connection: {e}");
            if let Ok(stream) = Arc::try_unwrap(stream) {
                shared.gate.refuse_capacity(stream, "no thread available");
            }
        }
    }
}
// ANCHOR_END: accept
