//! # rtlab-adapter: what every runtime adapter shares
//!
//! [`rtlab_core`] is the protocol: bytes and time in, bytes and deadlines
//! out, no sockets. A runtime lab (tokio, mio, may, OS threads) owns the
//! sockets and the timers. Between the two sits the part that is the same
//! for every runtime — *how* bytes move between a non-blocking socket and a
//! [`Connection`](rtlab_core::Connection) — and it lives here, once, so that
//! each lab's own code is only what its runtime makes different: how it
//! waits, how it is woken, and where its buffers live.
//!
//! ## Map of the crate
//!
//! | module | what it owns |
//! |---|---|
//! | [`drive`] | [`step`]: the one loop every lab runs for a connection — tick, write, half-close, read — until it must wait, and the [`Socket`] it needs |
//! | [`unsent`] | [`Unsent`]: output taken from a connection that the socket has not accepted yet (partial writes) |
//! | [`socket`] | per-socket options ([`tune_socket`]) and the self-connect that wakes a blocking `accept` |
//! | [`stop`] | [`Stop`]: a runtime-neutral stop request (graceful shutdown), and [`begin_shutdown`], a server's first step when it stops |
//! | [`gate`] | [`Gate`]: the connection limit ([`Gate::admit`], a [`Ticket`] per connection) and the one way every lab refuses a client: a `503`, a half-close, a brief drain, on the gate's thread |
//! | [`tls`] | [`Secured`]: a lab's socket with an optional rustls session ([`TlsSession`]) under the same step; [`Tls`], a server's certificate and ALPN; [`self_signed`] for tests |
//! | [`roster`] | [`Roster`]: the live connections of a lab with a coroutine or thread per connection, for stop and the shutdown wait |
//!
//! ## The constants every lab shares
//!
//! The labs are compared side by side, so anything that is not the runtime
//! itself — how much is read at once, how often a reader yields, how long
//! accepting pauses, how long shutdown waits — is one constant here, never a
//! per-lab choice.

pub mod drive;
pub mod gate;
pub mod roster;
pub mod socket;
pub mod stop;
pub mod tls;
pub mod unsent;

use std::time::{Duration, Instant};

pub use drive::{Socket, Step, step};
pub use gate::{Gate, Ticket};
pub use roster::Roster;
pub use socket::{self_connect_addr, tune_socket, wake_accept};
pub use stop::Stop;
pub use tls::{Secured, Tls, TlsSession, self_signed, session_for};
pub use unsent::{Unsent, WRITE_BATCH};

use rtlab_core::{Config, Server};

// ANCHOR: constants
/// Bytes read from a socket at once. A read hands the core whatever the
/// kernel has, up to this; 16 KiB holds a whole request head (the core's
/// limit is 8 KiB), and is small enough to live on a thread's stack.
pub const READ_CHUNK: usize = 16 * 1024;

/// Reads one [`step`] may do before it gives the other connections of its
/// thread a turn ([`Step::Yield`]): 16 reads of [`READ_CHUNK`], 256 KiB. A
/// client that sends without pause cannot starve its neighbours on an event
/// loop or a cooperative scheduler.
pub const READS_PER_STEP: u32 = 16;

/// How long accepting pauses after an accept error (out of file
/// descriptors, out of memory): the same call would fail again at once, so
/// a persistent error would otherwise spin a core. A client waiting in the
/// backlog is served within this once a descriptor is free.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How long a stopping server waits for its connections beyond their close
/// linger ([`Config::close_linger`]) before it gives up on them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);
// ANCHOR_END: constants

/// How long a stopping server waits for its connections: each may take the
/// close linger to flush and close, plus [`SHUTDOWN_GRACE`].
pub fn shutdown_wait(config: &Config) -> Duration {
    config.close_linger + SHUTDOWN_GRACE
}

// ANCHOR: begin_shutdown
/// A server begins to stop at `now`: it is marked stopping in the core
/// ([`Server::begin_stop`]: publishing is refused from now on), and the
/// time is returned by which the lab stops waiting for its connections.
///
/// Every connection's goodbye ([`Connection::shutdown`](rtlab_core::Connection::shutdown))
/// marks the server stopping too, before it leaves its topic; this call
/// covers the connections a lab gives up on at the deadline, which are
/// dropped without a goodbye.
pub fn begin_shutdown(server: &Server, now: Instant) -> Instant {
    server.begin_stop();
    now + shutdown_wait(&server.config)
}
// ANCHOR_END: begin_shutdown

/// What an accept loop does when `accept` fails: returns `false` if the
/// server is stopping (the loop ends: the failure is the stop closing the
/// listener, or does not matter any more); otherwise logs the error and
/// returns `true`: the loop sleeps [`ACCEPT_BACKOFF`] its own way (a thread
/// sleeps, a coroutine parks) and accepts again.
pub fn accept_failed(e: &std::io::Error, stopping: bool) -> bool {
    if stopping {
        return false;
    }
    tracing::warn!("accept failed: {e}");
    true
}
