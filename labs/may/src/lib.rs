//! # rtlab-may: the may lab
//!
//! The contract served by stackful coroutines: one [`may`] coroutine per
//! connection, thousands of them on a few OS threads (one per core). A
//! coroutine is written like blocking code — a loop that does its work and
//! then waits — and `may` parks it on its own small stack whenever it waits,
//! so that the OS thread can run another one.
//!
//! Like every lab this crate is only the runtime half of a sans-IO design:
//! all protocol logic lives in [`rtlab_core`]; this crate moves bytes between
//! sockets and [`Connection`](rtlab_core::Connection)s and turns the core's
//! deadlines into wake-ups.
//!
//! ## Map
//!
//! * [`serve`] / [`serve_with`] — configure `may` (stack size, workers), run
//!   the accept loop in a coroutine until [`Stop`], then close every
//!   connection gracefully. A client past the connection limit, or refused a
//!   coroutine stack, gets a `503` from the adapter's [`Gate`].
//! * `conn` — the per-connection coroutine: a step that reads, writes and
//!   ticks the core without waiting, then a park in `wait_io` until the
//!   socket, a publisher or the timer wakes it.
//! * `stack` — one work stack per worker thread, on which every step runs,
//!   so that a coroutine's own stack only holds its wait: one page.
//! * `timer` — one thread that turns the connections' deadlines into wakes
//!   (`may` has timers, but none that can interrupt `wait_io`).
//! * [`Options`] — the coroutine stack size and the work-stack switch: the
//!   two choices this lab's memory and safety depend on.
//!
//! ## Where a connection's memory goes
//!
//! Each coroutine owns a stack: one memory mapping of [`STACK_WORDS`] words
//! plus a guard page (two of the kernel's `vm.max_map_count` mappings), of
//! which only touched pages are resident. The protocol work — parsing,
//! routing, encoding, however deep a client makes it go — runs on the worker
//! thread's [`WORK_STACK`], shared by all its coroutines, and so does reading,
//! into one buffer per worker. What remains per connection is one page of
//! stack and the core's connection state on the heap.

mod conn;
mod stack;
mod timer;

pub use stack::WORK_STACK;

use std::io;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use may::coroutine;
use may::net::{TcpListener, TcpStream};
use rtlab_adapter::{ACCEPT_BACKOFF, Gate, Roster, Stop, Tls, accept_failed, begin_shutdown, tune_socket, wake_accept};
use rtlab_core::Server;

use crate::timer::Timers;

// ANCHOR: stack_size
/// The coroutine stack, in **words** (8 bytes each on 64-bit): one page in a
/// release build, two in a debug build.
///
/// A connection's coroutine runs only its loop and `may`'s parking on this
/// stack; all its work runs on the worker's [`WORK_STACK`]. Measured by
/// painting (`examples/stack_depth.rs`, see the book), that loop uses well
/// under a page in a release build and most of one in a debug build, whose
/// frames are several times larger: hence two there. `may` marks the lowest
/// 64 bytes of each stack and treats a coroutine that reached them as
/// overflowed, and below them is the guard page, so nothing may ever run on
/// this stack that the measurement did not see — see [`serve_with`] for
/// signal handlers.
pub const STACK_WORDS: usize = if cfg!(debug_assertions) { 1024 } else { 512 };
// ANCHOR_END: stack_size

/// The accept loop's stack, in words: it logs, spawns and allocates on its
/// own stack, and there is only one of it.
const ACCEPT_STACK_WORDS: usize = 64 * 1024;

/// Finished coroutines `may` keeps (with their stacks) for reuse. `may`
/// creates them all when it starts, so this is also a fixed cost of an idle
/// server: a few hundred mappings, not the default thousand.
pub const POOL_CAPACITY: usize = 256;

/// The lab's tunables.
#[derive(Debug, Clone)]
pub struct Options {
    /// Coroutine stack size in words; [`STACK_WORDS`] unless overridden.
    ///
    /// An **odd** size makes `may` paint every coroutine stack and print,
    /// when each coroutine ends, how much of it was used (`stack size = S,
    /// used size = U`, in words), and makes this lab paint the work stacks
    /// and print `work stack used = B` (bytes): that is how the sizes were
    /// measured. Painting touches every page: for measurements only.
    pub stack_words: usize,
    /// Run each step on the worker's work stack (the default). Without it
    /// the steps run on the coroutine's own stack, which then needs room for
    /// the deepest request: the naive design, kept to measure the difference
    /// and to show what a stack overflow does (`examples/overflow.rs`).
    pub work_stack: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { stack_words: STACK_WORDS, work_stack: true }
    }
}

impl Options {
    /// The defaults, with `RTLAB_MAY_STACK_WORDS` (a number of words) and
    /// `RTLAB_MAY_WORK_STACK` (`0` turns the work stack off) read from the
    /// environment if set, for experiments and measurements.
    pub fn from_env() -> Options {
        let mut options = Options::default();
        if let Some(words) = std::env::var("RTLAB_MAY_STACK_WORDS").ok().and_then(|v| v.parse().ok()) {
            options.stack_words = words;
        }
        if std::env::var("RTLAB_MAY_WORK_STACK").is_ok_and(|v| v == "0") {
            options.work_stack = false;
        }
        options
    }
}

/// What every coroutine of one server shares.
struct Shared {
    server: Arc<Server>,
    work_stack: bool,
    /// The live connections, and whether the server is stopping.
    roster: Roster,
    timers: Timers,
    /// The connection limit, and where refused clients go.
    gate: Arc<Gate>,
    /// The server's TLS configuration, if it speaks TLS.
    tls: Option<Tls>,
}

/// Serves the contract on `listener` until `stop` is requested, then stops
/// accepting, lets every connection say goodbye (WebSocket close 1001, the
/// end of event streams, answers to held long polls) and returns.
pub fn serve(listener: std::net::TcpListener, server: Arc<Server>, stop: Arc<Stop>, tls: Option<Tls>) -> io::Result<()> {
    serve_with(listener, server, stop, Options::from_env(), tls)
}

/// [`serve`] with explicit [`Options`].
///
/// `may` reads its configuration when its scheduler starts (the first time
/// any coroutine is spawned in the process) and keeps it: call this first,
/// with the same options every time.
///
/// The scheduler's threads are started with asynchronous signals blocked
/// (they inherit the mask of the thread that starts them). A signal handler
/// runs on whatever stack its thread is on, and a signal frame with the CPU's
/// vector state is a few KiB: on a one-page coroutine stack it would overflow.
/// Blocked there, a `SIGTERM` is delivered to another thread instead.
pub fn serve_with(
    listener: std::net::TcpListener,
    server: Arc<Server>,
    stop: Arc<Stop>,
    options: Options,
    tls: Option<Tls>,
) -> io::Result<()> {
    may::config().set_stack_size(options.stack_words).set_pool_capacity(POOL_CAPACITY);
    // An odd size is may's signal to paint coroutine stacks; paint the work
    // stacks too, so that one run measures both.
    stack::set_painting(options.stack_words % 2 == 1);
    // may pins its workers to cores by default; on a machine shared with the
    // load generator a pinned worker cannot move away from a busy core.
    may::config().set_worker_pin(false);

    let listening = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    // SAFETY: the descriptor comes from a listener we own and give up here.
    let listener = unsafe { TcpListener::from_raw_fd(listener.into_raw_fd()) };
    let shared = Arc::new(Shared {
        server: server.clone(),
        work_stack: options.work_stack,
        roster: Roster::new(),
        timers: Timers::start()?,
        gate: Gate::start(&server)?,
        tls,
    });

    let on_stop = shared.clone();
    stop.on_stop(move || {
        on_stop.roster.stop();
        // The accept loop is parked in accept(): a connection wakes it.
        wake_accept(listening);
    });

    let accepting = shared.clone();
    // The first spawn starts may's threads: with async signals blocked.
    let accept = with_async_signals_blocked(|| {
        // SAFETY: the accept loop keeps no thread-local state across its
        // waits, and its stack is large (and there is one).
        unsafe {
            coroutine::Builder::new().stack_size(ACCEPT_STACK_WORDS).spawn(move || accept_loop(listener, &accepting))
        }
    })?;
    if accept.join().is_err() {
        return Err(io::Error::other("the accept loop panicked"));
    }

    tracing::info!("stopping: closing {} connections", shared.roster.len());
    // The serving thread waits, not a coroutine: a plain sleep is fine.
    shared.roster.wait_empty(begin_shutdown(&server, Instant::now()));
    shared.timers.stop();
    Ok(())
}

// ANCHOR: accept
/// Accepts until the server stops, one coroutine per connection.
fn accept_loop(listener: TcpListener, shared: &Arc<Shared>) {
    loop {
        // Blocking style: this parks the coroutine until a client connects.
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) => {
                if !accept_failed(&e, shared.roster.is_stopping()) {
                    return;
                }
                coroutine::sleep(ACCEPT_BACKOFF);
                continue;
            }
        };
        if shared.roster.is_stopping() {
            return; // The wake-up connection from `stop`, or a late client.
        }
        let Some(ticket) = shared.gate.admit() else {
            shared.gate.refuse_full(into_std(stream));
            continue;
        };
        tune_socket(&shared.server.config, socket2::SockRef::from(stream.inner()));
        let stream = Arc::new(stream);
        let (mine, mine_shared) = (stream.clone(), shared.clone());
        // A new coroutine needs a new stack mapping once may's pool is empty;
        // when the kernel refuses it (vm.max_map_count, memory), the stack
        // allocator panics. That is this lab's ceiling: refuse this client
        // with a 503 and keep serving the others.
        // SAFETY: the connection coroutine never holds a thread-local across
        // a yield (see `conn`), and its deepest use fits `STACK_WORDS` (see
        // there for how that was measured).
        let spawned = panic::catch_unwind(AssertUnwindSafe(|| unsafe {
            coroutine::Builder::new().spawn(move || conn::run(mine, mine_shared, ticket))
        }));
        if !matches!(spawned, Ok(Ok(_))) {
            // The closure, with its handle on the socket and the ticket, was dropped unrun.
            if let Ok(stream) = Arc::try_unwrap(stream) {
                shared.gate.refuse_capacity(into_std(stream), "no coroutine stack available");
            }
        }
    }
}
// ANCHOR_END: accept

/// A `may` socket as a plain `std` one, for the gate: `may` stops watching
/// it (its `into_raw_fd` deregisters it), and the descriptor moves over.
fn into_std(stream: TcpStream) -> std::net::TcpStream {
    // SAFETY: the descriptor was just given up by its only owner.
    unsafe { std::net::TcpStream::from_raw_fd(stream.into_raw_fd()) }
}

// ANCHOR: signals
/// Runs `f` with every asynchronous signal blocked in this thread, so that
/// the threads it starts inherit that mask; restores the mask after.
fn with_async_signals_blocked<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: sigset_t is plain data, initialised by sigfillset; the calls
    // only change this thread's mask and restore it.
    unsafe {
        let mut block: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut block);
        // Faults are delivered to the faulting thread whatever its mask:
        // leave them alone (may's overflow detection relies on SIGSEGV).
        for fault in [libc::SIGSEGV, libc::SIGBUS, libc::SIGILL, libc::SIGFPE, libc::SIGTRAP, libc::SIGSYS] {
            libc::sigdelset(&mut block, fault);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &block, &mut old);
        let result = f();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        result
    }
}
// ANCHOR_END: signals
