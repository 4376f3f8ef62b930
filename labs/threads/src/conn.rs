//! One connection, one OS thread: the loop that moves bytes between a socket
//! and the core, and sleeps in `ppoll` when there is nothing to do.

use std::io;
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Instant;

use rtlab_adapter::{READ_CHUNK, Secured, Step, Ticket, TlsSession, Unsent, session_for, step};
use rtlab_core::Connection;

use crate::Shared;
use crate::wake::ThreadWaker;

/// The connection thread: attaches its waker, runs the loop, leaves (and
/// gives its place at the gate back, with `ticket`).
pub(crate) fn run(stream: &TcpStream, waker: &Arc<ThreadWaker>, key: u64, shared: &Shared, ticket: Ticket) {
    let _admitted = ticket;
    match (waker.attach(), stream.set_nonblocking(true), session_for(shared.tls.as_ref())) {
        (Ok(sleep_mask), Ok(()), Ok(tls)) => {
            let conn = Connection::new(shared.server.clone(), waker.clone(), 0, Instant::now());
            drive(stream, conn, tls, waker, &sleep_mask, shared);
        }
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => tracing::warn!("connection setup failed: {e}"),
    }
    waker.detach();
    shared.roster.leave(key);
}

// ANCHOR: connection
/// Moves bytes between the socket and the core until the connection closes.
///
/// The socket is non-blocking; [`rtlab_adapter::step`] does every piece of
/// work that is possible without waiting — the stop, a wake, a passed
/// deadline, writing, reading — and only when none is left does the thread
/// sleep in `ppoll`, which returns when the socket is readable (if the core
/// wants input) or writable (if output is waiting), when the next deadline
/// comes, or when a wake's signal arrives.
fn drive(
    stream: &TcpStream,
    mut conn: Connection,
    mut tls: Option<Box<TlsSession>>,
    waker: &ThreadWaker,
    sleep_mask: &libc::sigset_t,
    shared: &Shared,
) {
    let mut unsent = Unsent::new();
    let mut buf = [0u8; READ_CHUNK];
    loop {
        let (woken, stopping) = (waker.take(), shared.roster.is_stopping());
        let mut socket = Secured::new(tls.as_deref_mut(), stream);
        match step(&mut conn, &mut unsent, &mut socket, &mut buf, Instant::now(), woken, stopping) {
            Step::Done => return,
            // The kernel schedules threads preemptively: nobody to yield to.
            Step::Yield => {}
            Step::Wait { read, write, deadline } => {
                if !matches!(sleep(stream, read, write, deadline, sleep_mask), Ok(true)) {
                    return;
                }
            }
        }
    }
}
// ANCHOR_END: connection

// ANCHOR: sleep
/// One `ppoll` on the socket: for input if `read`, for room if `write`, until
/// `deadline`, with the wake signal unblocked. Returns `false` if the socket
/// has an error or hang-up that neither a read nor a write would notice.
fn sleep(
    stream: &TcpStream,
    read: bool,
    write: bool,
    deadline: Option<Instant>,
    mask: &libc::sigset_t,
) -> io::Result<bool> {
    let mut events = 0;
    if read {
        events |= libc::POLLIN;
    }
    if write {
        events |= libc::POLLOUT;
    }
    let mut fds = [libc::pollfd { fd: stream.as_raw_fd(), events, revents: 0 }];
    let timeout = deadline.map(|d| {
        let left = d.saturating_duration_since(Instant::now());
        libc::timespec { tv_sec: left.as_secs() as libc::time_t, tv_nsec: left.subsec_nanos().into() }
    });
    let timeout_ptr = timeout.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: one valid pollfd, a valid or null timeout and a valid mask,
    // all outliving the call.
    let n = unsafe { libc::ppoll(fds.as_mut_ptr(), 1, timeout_ptr, mask) };
    if n < 0 {
        let e = io::Error::last_os_error();
        // EINTR: the wake signal (or any other) arrived. The loop looks.
        return if e.kind() == io::ErrorKind::Interrupted { Ok(true) } else { Err(e) };
    }
    let broken = fds[0].revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0;
    Ok(!broken || read || write)
}
// ANCHOR_END: sleep
