//! # rtlab-tokio: the tokio lab
//!
//! The contract served by async tasks: one tokio task per connection on a
//! multi-threaded runtime (one worker per core). This crate is deliberately
//! small — it is the *runtime adapter* half of a sans-IO design. All protocol
//! logic (HTTP routing, topics, replay, encoding, outboxes and their policy,
//! WebSocket framing, heartbeats) lives in [`rtlab_core`]; this crate only
//! moves bytes between sockets and [`Connection`]s, and turns the core's
//! deadlines into timers.
//!
//! ## Map
//!
//! * [`serve`] — build the runtime, run the accept loop until [`Stop`], then
//!   close every connection gracefully. Past the connection limit, the
//!   adapter's [`Gate`] refuses the client with a `503`.
//! * `connection` — the per-connection loop: one `select!` over "socket
//!   readable", "socket writable (if output is pending)", "woken by a
//!   publisher", "deadline passed" and "server stopping".
//! * `TaskWaker` — the core's [`Wake`] on a `tokio::sync::Notify`.
//! * TLS: with a [`Tls`] configuration, the handshake runs first
//!   (tokio-rustls, to learn the ALPN protocol); an HTTP/1.1 connection
//!   then goes on as every lab does, its rustls session under the shared
//!   step ([`Secured`]), and an HTTP/2 one goes to `http2`, the HTTP/2 front:
//!   one core [`Connection`] per stream.
//!
//! ## Where a connection's memory goes
//!
//! The task's future holds the [`Connection`] and an [`Unsent`] list of
//! handles to the bytes being written; there is no per-connection read buffer: the task
//! waits for readability, then reads into a buffer on the worker thread's
//! stack and hands the bytes to the core, which keeps only an unfinished
//! request or frame.

mod http2;

pub use http2::MAX_STREAMS;

use std::io::{self, IoSlice};
use std::sync::Arc;
use std::time::Instant;

use rtlab_adapter::{
    ACCEPT_BACKOFF, Gate, READ_CHUNK, Secured, Socket, Step, Stop, Ticket, Tls, TlsSession, Unsent, begin_shutdown,
    step, tune_socket,
};
use rtlab_core::{Connection, Server, Wake};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

// ANCHOR: serve
/// Serves the contract on `listener` until `stop` is requested, then stops
/// accepting, lets every connection say goodbye (WebSocket close 1001, the
/// end of event streams, answers to held long polls) and returns.
pub fn serve(listener: std::net::TcpListener, server: Arc<Server>, stop: Arc<Stop>, tls: Option<Tls>) -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let gate = Gate::start(&server)?;
    runtime.block_on(async move {
        listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(listener)?;
        let (stop_tx, stop_rx) = watch::channel(false);
        stop.on_stop(move || {
            let _ = stop_tx.send(true);
        });
        let mut stopping = stop_rx.clone();
        let mut tasks = JoinSet::new();
        loop {
            tokio::select! {
                // ANCHOR: admit
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => match gate.admit() {
                        Some(ticket) => {
                            tune_socket(&server.config, socket2::SockRef::from(&stream));
                            tasks.spawn(negotiate(stream, server.clone(), stop_rx.clone(), ticket, tls.clone()));
                        }
                        // Past the limit: the gate answers 503 and closes.
                        None => match stream.into_std() {
                            Ok(stream) => gate.refuse_full(stream),
                            Err(e) => tracing::warn!("refusing a connection: {e}"),
                        },
                    },
                    // ANCHOR_END: admit
                    // Out of file descriptors (EMFILE/ENFILE) or a connection
                    // reset before accept: not fatal. Back off briefly so a
                    // persistent error cannot spin a core at 100%.
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                },
                _ = stopping.changed() => break,
            }
            // Reap finished connections so the set does not grow forever.
            while tasks.try_join_next().is_some() {}
        }
        drop(listener);
        // Tasks that already ended are not connections to close.
        while tasks.try_join_next().is_some() {}
        tracing::info!("stopping: closing {} connections", tasks.len());
        let deadline = tokio::time::Instant::from_std(begin_shutdown(&server, Instant::now()));
        if tokio::time::timeout_at(deadline, async { while tasks.join_next().await.is_some() {} }).await.is_err() {
            tracing::warn!("{} connections did not close in time; dropping them", tasks.len());
            tasks.abort_all();
        }
        Ok(())
    })
}
// ANCHOR_END: serve

// ANCHOR: waker
/// The core's [`Wake`] for a tokio task: a publisher on any thread calls
/// `notify_one`, which wakes the connection's task — or, if the task is busy,
/// stores a permit so that its next `notified()` returns at once. No wake-up
/// is ever lost, and none costs more than an atomic operation when the task
/// is already awake.
pub(crate) struct TaskWaker(Notify);

impl Wake for TaskWaker {
    fn wake(&self, _token: usize) {
        self.0.notify_one();
    }
}
// ANCHOR_END: waker

// ANCHOR: negotiate
/// A new connection: plain, straight to [`connection`]; with TLS, the
/// handshake first (bounded by the idle timeout), then by the protocol
/// the client chose (ALPN): HTTP/2 to the HTTP/2 front, HTTP/1.1 to
/// [`connection`] with its rustls session.
async fn negotiate(
    stream: TcpStream,
    server: Arc<Server>,
    stop: watch::Receiver<bool>,
    ticket: Ticket,
    tls: Option<Tls>,
) {
    let Some(tls) = tls else { return connection(stream, None, server, stop, ticket).await };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config);
    let stream = match tokio::time::timeout(server.config.idle_timeout, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return tracing::debug!("TLS handshake failed: {e}"),
        Err(_) => return tracing::debug!("TLS handshake timed out"),
    };
    if stream.get_ref().1.alpn_protocol() == Some(rtlab_adapter::tls::ALPN_H2) {
        return http2::connection(stream, server, stop, ticket).await;
    }
    let (stream, session) = stream.into_inner();
    connection(stream, Some(TlsSession::from_connection(session)), server, stop, ticket).await
}
// ANCHOR_END: negotiate

// ANCHOR: connection
/// One connection's task: moves bytes between the socket and the core.
///
/// [`rtlab_adapter::step`] does all that can be done without waiting, with
/// tokio's non-blocking `try_read`/`try_write_vectored`; then one `select!`
/// waits for whatever the step said it needs — the socket readable or
/// writable, the deadline — or for a publisher's wake or the stop. The
/// gate's `ticket` is held for as long as the task runs.
async fn connection(
    stream: TcpStream,
    mut tls: Option<Box<TlsSession>>,
    server: Arc<Server>,
    mut stop: watch::Receiver<bool>,
    ticket: Ticket,
) {
    let _admitted = ticket;
    let waker = Arc::new(TaskWaker(Notify::new()));
    let mut conn = Connection::new(server, waker.clone(), 0, Instant::now());
    // Output taken from the core and not yet accepted by the socket.
    let mut unsent = Unsent::new();
    let mut stopping = *stop.borrow_and_update();
    let mut woken = false;
    loop {
        let mut socket = Secured::new(tls.as_deref_mut(), TrySocket(&stream));
        let next = step_task(&mut conn, &mut unsent, &mut socket, woken, stopping);
        woken = false;
        let (read, write, deadline) = match after(next).await {
            Next::Over => break,
            Next::Again => continue,
            Next::Wait { read, write, deadline } => (read, write, deadline),
        };
        tokio::select! {
            ready = stream.readable(), if read => if ready.is_err() { break },
            ready = stream.writable(), if write => if ready.is_err() { break },
            _ = waker.0.notified() => woken = true,
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)), if deadline.is_some() => woken = true,
            _ = stop.changed(), if !stopping => stopping = true,
        }
    }
}
// ANCHOR_END: connection

// ANCHOR: task_step
/// One step of a task ([`rtlab_adapter::step`], at the current time). The
/// read buffer lives on the worker thread's stack for the step only: it is
/// not held across an `.await`, so it is not part of the task's future, and
/// an idle connection does not pay for it.
pub(crate) fn step_task<S: Socket>(
    conn: &mut Connection,
    unsent: &mut Unsent,
    socket: &mut S,
    woken: bool,
    stopping: bool,
) -> Step {
    let mut buf = [0u8; READ_CHUNK];
    step(conn, unsent, socket, &mut buf, Instant::now(), woken, stopping)
}

/// What a task does after a step.
pub(crate) enum Next {
    /// The connection (or stream) is over.
    Over,
    /// Step again at once (the worker was yielded to other tasks first).
    Again,
    /// Wait for the socket (`read`, `write`), the `deadline`, a wake or the stop.
    Wait { read: bool, write: bool, deadline: Option<tokio::time::Instant> },
}

/// A step's result for a task: a [`Step::Yield`] yields the worker here.
pub(crate) async fn after(next: Step) -> Next {
    match next {
        Step::Done => Next::Over,
        Step::Yield => {
            tokio::task::yield_now().await;
            Next::Again
        }
        Step::Wait { read, write, deadline } => {
            Next::Wait { read, write, deadline: deadline.map(tokio::time::Instant::from_std) }
        }
    }
}
// ANCHOR_END: task_step

// ANCHOR: try_write
/// A tokio socket as [`rtlab_adapter::step`] needs it: tokio's non-blocking
/// `try_*` calls return `WouldBlock` instead of waiting (and clear tokio's
/// readiness, so that the next `readable()`/`writable()` waits for the
/// kernel), so the shared step drives a tokio socket like any other.
struct TrySocket<'a>(&'a TcpStream);

impl Socket for TrySocket<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        // `AsyncWriteExt::shutdown` on a TcpStream is this same `shutdown(2)`,
        // which never blocks; tokio only wraps it in a future.
        socket2::SockRef::from(self.0).shutdown(std::net::Shutdown::Write)
    }
}
// ANCHOR_END: try_write
