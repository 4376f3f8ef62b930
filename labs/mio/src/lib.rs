//! # rtlab-mio: the mio lab
//!
//! The contract served by event loops written by hand on [`mio`] — the
//! readiness-based design of nginx, Redis and uWebSockets. There are no
//! tasks and no futures: a loop asks the kernel (epoll) which sockets are
//! ready, and moves bytes between those sockets and the protocol core.
//!
//! Like the tokio lab, this crate is only the *runtime adapter* of a sans-IO
//! design: HTTP routing, topics, replay, encoding, outboxes and their policy,
//! WebSocket framing and heartbeats are all in [`rtlab_core`]. What this
//! crate adds is what a runtime would otherwise hide: readiness, buffers,
//! timers, wake-ups across threads, and running out of file descriptors.
//!
//! ## Map
//!
//! * [`serve`] — one event loop per core, all sharing the listening socket
//!   and the adapter's [`Gate`] (the connection limit: past it, a `503`);
//!   stop them and wait for their connections to close.
//! * `event_loop` — `EventLoop`: the epoll set, a slab of connections, the
//!   turn of the loop (poll, note events, wake-ups and deadlines, accept,
//!   drive), accepting with a backoff when file descriptors run out.
//! * `conn` — `Conn`: one connection's socket and I/O state (readiness
//!   remembered from edge-triggered events, the pending write) around the
//!   core's `Connection`, and `drive`, which runs the adapters' shared step
//!   for it with the loop's buffers.
//! * `timers` — `Timers`: every deadline of a loop in one min-heap with lazy
//!   invalidation.
//! * `waker` — `LoopWaker`: the core's [`Wake`](rtlab_core::Wake) for a loop,
//!   a list of woken connections plus an eventfd that every loop watches.
//!
//! ## Why one loop per core, sharing one listener
//!
//! Each loop is a thread with its own epoll set, and each registers the one
//! listening socket in it; whichever loop is awake first accepts. A connection
//! then belongs to the loop that accepted it, for life: no locks around a
//! connection, no hand-off between threads. The alternatives: `SO_REUSEPORT`
//! needs one listener per loop, bound before the server gets its socket (the
//! binary hands every lab one already-bound listener), and strands a loop's
//! backlog if that loop is busy; an acceptor thread that hands sockets to
//! workers costs a cross-thread hand-off per connection. The price of sharing
//! is that a new connection wakes every loop (a thundering herd, of two).
//!
//! ## Descriptors of its own
//!
//! At the open-files limit, every file descriptor the server keeps for itself
//! is a client it cannot hold. Besides the listening socket it is given, the
//! lab keeps one epoll set per loop and one eventfd that all loops watch;
//! everything else is a connection, or a refused one the gate holds for a
//! moment (which is why the derived connection limit keeps a reserve).
//!
//! ## Where an idle connection's memory goes
//!
//! In the slab: one `Conn` (the core's `Connection`, the socket's file
//! descriptor, the gate's ticket, a few flags). Behind it: the core's `Peer` (its outbox, empty)
//! and one hub entry per subscription, and one entry in the timer heap. No
//! read buffer (every read lands in the loop's one buffer, and the core keeps
//! only an unfinished request head or frame), no write buffer (output waits
//! in the core's outbox as shared `Bytes`, and leaves by vectored writes).

use std::io;
use std::sync::Arc;
use std::thread;

use rtlab_adapter::{Gate, Stop, Tls};
use rtlab_core::Server;

mod conn;
mod event_loop;
mod timers;
mod waker;

use event_loop::EventLoop;
use waker::EventFd;

// ANCHOR: serve
/// Serves the contract on `listener` until `stop` is requested, then stops
/// accepting, lets every connection say goodbye (WebSocket close 1001, the
/// end of event streams, answers to held long polls) and returns.
///
/// Runs one event loop per core: the first on the calling thread, the others
/// on threads of their own.
pub fn serve(listener: std::net::TcpListener, server: Arc<Server>, stop: Arc<Stop>, tls: Option<Tls>) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = Arc::new(mio::net::TcpListener::from_std(listener));
    let eventfd = Arc::new(EventFd::new()?);
    let gate = Gate::start(&server)?;
    let count = thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let mut loops = (0..count)
        .map(|id| EventLoop::new(id, listener.clone(), eventfd.clone(), server.clone(), gate.clone(), tls.clone()))
        .collect::<io::Result<Vec<_>>>()?;
    let wakers: Vec<_> = loops.iter().map(EventLoop::waker).collect();
    stop.on_stop(move || wakers.iter().for_each(|waker| waker.wake_loop()));

    let first = loops.remove(0);
    let mut threads = Vec::new();
    let mut result = Ok(());
    for event_loop in loops {
        let loop_stop = stop.clone();
        let name = format!("mio-loop-{}", event_loop.id());
        match thread::Builder::new().name(name).spawn(move || run(event_loop, &loop_stop)) {
            Ok(thread) => threads.push(thread),
            Err(e) => {
                result = Err(e);
                stop.stop();
                break;
            }
        }
    }
    if result.is_ok() {
        result = run(first, &stop);
    }
    for thread in threads {
        let joined = thread.join().unwrap_or_else(|_| Err(io::Error::other("an event loop panicked")));
        result = result.and(joined);
    }
    result
}
// ANCHOR_END: serve

/// Runs one loop; if it fails, the others stop too (one server, one fate).
fn run(event_loop: EventLoop, stop: &Stop) -> io::Result<()> {
    let result = event_loop.run(stop);
    if let Err(e) = &result {
        tracing::error!("event loop failed: {e}");
        stop.stop();
    }
    result
}
