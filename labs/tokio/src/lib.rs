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
//!   close every connection gracefully.
//! * `connection` — the per-connection loop: one `select!` over "socket
//!   readable", "socket writable (if output is pending)", "woken by a
//!   publisher", "deadline passed" and "server stopping".
//! * `TaskWaker` — the core's [`Wake`] on a `tokio::sync::Notify`.
//!
//! ## Where a connection's memory goes
//!
//! The task's future holds the [`Connection`] and an [`Unsent`] list of
//! handles to the bytes being written; there is no per-connection read buffer: the task
//! waits for readability, then reads into a buffer on the worker thread's
//! stack and hands the bytes to the core, which keeps only an unfinished
//! request or frame.

use std::io::{self, IoSlice, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtlab_core::{Connection, Server, Status, Stop, Unsent, Wake};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

/// Bytes read from a socket at once, into a buffer on the stack.
const READ_CHUNK: usize = 16 * 1024;

/// How long shutdown waits for connections beyond the close linger.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

// ANCHOR: serve
/// Serves the contract on `listener` until `stop` is requested, then stops
/// accepting, lets every connection say goodbye (WebSocket close 1001, the
/// end of event streams, answers to held long polls) and returns.
pub fn serve(listener: std::net::TcpListener, server: Arc<Server>, stop: Arc<Stop>) -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
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
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        server.config.tune_socket(socket2::SockRef::from(&stream));
                        tasks.spawn(connection(stream, server.clone(), stop_rx.clone()));
                    }
                    // Out of file descriptors (EMFILE/ENFILE) or a connection
                    // reset before accept: not fatal. Back off briefly so a
                    // persistent error cannot spin a core at 100%.
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                _ = stopping.changed() => break,
            }
            // Reap finished connections so the set does not grow forever.
            while tasks.try_join_next().is_some() {}
        }
        drop(listener);
        tracing::info!("stopping: closing {} connections", tasks.len());
        let grace = server.config.close_linger + SHUTDOWN_GRACE;
        if tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await.is_err() {
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
struct TaskWaker(Notify);

impl Wake for TaskWaker {
    fn wake(&self, _token: usize) {
        self.0.notify_one();
    }
}
// ANCHOR_END: waker

// ANCHOR: connection
/// One connection's task: moves bytes between the socket and the core.
async fn connection(stream: TcpStream, server: Arc<Server>, mut stop: watch::Receiver<bool>) {
    let waker = Arc::new(TaskWaker(Notify::new()));
    let mut conn = Connection::new(server, waker.clone(), 0);
    let mut stream = stream;
    // Output taken from the core and not yet accepted by the socket.
    let mut unsent = Unsent::new();
    let mut stopping = *stop.borrow_and_update();
    let mut write_closed = false;
    if stopping {
        conn.shutdown(Instant::now());
    }
    loop {
        let has_output = unsent.refill(&mut conn);
        match conn.status() {
            Status::Closed => break,
            Status::Closing if !has_output && !write_closed => {
                // Everything is written: send FIN, then drain input until the
                // peer closes too (or the linger deadline passes).
                write_closed = true;
                if stream.shutdown().await.is_err() {
                    break;
                }
            }
            _ => {}
        }
        let deadline = conn.next_deadline().map(tokio::time::Instant::from_std);
        tokio::select! {
            ready = stream.readable(), if conn.wants_read() => {
                if ready.is_err() {
                    break;
                }
                let mut buf = [0u8; READ_CHUNK];
                match stream.try_read(&mut buf) {
                    Ok(0) => conn.on_eof(Instant::now()),
                    Ok(n) => conn.on_read(&buf[..n], Instant::now()),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => break,
                }
            }
            ready = stream.writable(), if has_output => {
                if ready.is_err() {
                    break;
                }
                match unsent.write_to(&mut conn, &mut TryWrite(&stream)) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => break,
                }
            }
            _ = waker.0.notified() => conn.on_tick(Instant::now()),
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)), if deadline.is_some() => {
                conn.on_tick(Instant::now());
            }
            _ = stop.changed(), if !stopping => {
                stopping = true;
                conn.shutdown(Instant::now());
            }
        }
    }
}
// ANCHOR_END: connection

// ANCHOR: try_write
/// `std::io::Write` over tokio's non-blocking `try_write*`: a write that
/// would block returns `WouldBlock` instead of waiting, so the core's
/// [`Unsent`] can drive a tokio socket like any non-blocking one.
struct TryWrite<'a>(&'a TcpStream);

impl Write for TryWrite<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
// ANCHOR_END: try_write
