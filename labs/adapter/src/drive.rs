//! The one loop every lab runs for a connection: tick the core, write what
//! it has, half-close when it says so, read what it wants — until nothing
//! more can be done without waiting.
//!
//! The four labs differ in *how they wait* (a `select!` on a task, an epoll
//! set, a parked coroutine, a thread in `ppoll`) and in *where their buffers
//! live*, never in what they do between two waits. That part is [`step`].

use std::io::{self, IoSlice, Read, Write};
use std::time::Instant;

use rtlab_core::{Connection, Status};

use crate::READS_PER_STEP;
use crate::unsent::Unsent;

// ANCHOR: socket
/// A non-blocking socket, as [`step`] uses it: read, vectored write, and
/// shut down the write half. A call that would block returns
/// [`io::ErrorKind::WouldBlock`]; the lab then waits for readiness its own
/// way.
///
/// Implemented here for `std`'s `TcpStream` (the threads and may labs); the
/// tokio lab wraps tokio's `try_read`/`try_write_vectored`, and the mio lab
/// wraps its stream with the readiness its edge-triggered events reported,
/// so that a read the kernel has already said would block costs no system
/// call.
pub trait Socket {
    /// Reads into `buf`; `Ok(0)` is end of file.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes from `bufs`, in order, as much as the socket takes.
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
    /// Shuts down the write half: the peer reads end of file after the last byte.
    fn shutdown_write(&mut self) -> io::Result<()>;
    /// Writes what a layer below the core's output still holds (TLS
    /// records, see [`Secured`](crate::tls::Secured)); a plain socket holds
    /// nothing.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// Such a layer holds bytes that wait for room in the socket: the lab
    /// must wait for writable even when the core has nothing unsent.
    fn wants_write(&self) -> bool {
        false
    }
}
// ANCHOR_END: socket

impl Socket for &std::net::TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Read::read(self, buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        Write::write_vectored(self, bufs)
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        self.shutdown(std::net::Shutdown::Write)
    }
}

/// `std::io::Write` over a [`Socket`], for [`Unsent::write_to`].
pub(crate) struct Writer<'a, S: Socket + ?Sized>(pub(crate) &'a mut S);

impl<S: Socket + ?Sized> Write for Writer<'_, S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

// ANCHOR: step_enum
/// What the lab does after a [`step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing more can be done now. Wait until the socket is readable (if
    /// `read`), writable (if `write`), `deadline` passes, or the
    /// connection's waker fires; then step again (with `woken` set if it
    /// was the waker or the deadline).
    Wait {
        /// The core wants input.
        read: bool,
        /// Output is waiting for room in the socket's send buffer.
        write: bool,
        /// When the core must be ticked even if nothing else happens.
        deadline: Option<Instant>,
    },
    /// [`READS_PER_STEP`] reads were done and more input may be waiting:
    /// let the thread's other connections run, then step again.
    Yield,
    /// The connection is over (closed, reset, or the peer is gone): drop it
    /// and its socket. The [`Unsent`] given has been emptied.
    Done,
}
// ANCHOR_END: step_enum

// ANCHOR: step
/// Does everything that can be done for `conn` without waiting.
///
/// * `now`: the time (a lab may read the clock once for many connections);
/// * `woken`: the connection's waker fired or its timer expired since the
///   last step (the core's deadline is checked here too);
/// * `stopping`: the server is shutting down — the connection says goodbye
///   ([`Connection::shutdown`], which does nothing the second time);
/// * `unsent`: output taken from the core and not yet written, kept between
///   steps (a lab may lend one to many connections, see the mio lab);
/// * `buf`: where reads land (the core copies out only what it must keep).
///
/// Then, in a loop: write until the core has nothing left or the socket is
/// full; obey the core ([`Status::Closed`]: done; [`Connection::take_fin`]:
/// half-close); read once if the core wants input, and go round again if
/// anything came.
pub fn step<S: Socket + ?Sized>(
    conn: &mut Connection,
    unsent: &mut Unsent,
    socket: &mut S,
    buf: &mut [u8],
    now: Instant,
    woken: bool,
    stopping: bool,
) -> Step {
    if stopping {
        conn.shutdown(now);
    }
    if woken || conn.next_deadline().is_some_and(|d| d <= now) {
        conn.on_tick(now);
    }
    let mut reads = 0;
    loop {
        // 1. Write until everything is out or the socket is full: first what
        //    a layer below holds (TLS records), then the core's output.
        match socket.flush() {
            Ok(()) => {}
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {}
            Err(_) => return done(unsent),
        }
        while unsent.refill(conn) {
            match unsent.write_to(conn, &mut Writer(socket)) {
                Ok(0) => return done(unsent),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return done(unsent), // Reset by the peer: nothing more can be sent.
            }
        }
        // 2. Obey the core: gone, or everything written and time for our FIN.
        if conn.status() == Status::Closed {
            return done(unsent);
        }
        if conn.take_fin() && socket.shutdown_write().is_err() {
            return done(unsent);
        }
        // 3. Read once; if anything came, go round again (answer it, read more).
        if conn.wants_read() {
            if reads == READS_PER_STEP {
                return Step::Yield;
            }
            reads += 1;
            match socket.read(buf) {
                Ok(0) => {
                    conn.on_eof(now);
                    continue;
                }
                Ok(n) => {
                    conn.on_read(&buf[..n], now);
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return done(unsent),
            }
        }
        let write = !unsent.is_empty() || socket.wants_write();
        return Step::Wait { read: conn.wants_read(), write, deadline: conn.next_deadline() };
    }
}
// ANCHOR_END: step

/// The connection is over: nothing it took may stay in a buffer that the
/// lab lends to the next connection.
fn done(unsent: &mut Unsent) -> Step {
    unsent.clear();
    Step::Done
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtlab_core::{Config, Server, Wake};
    use std::sync::Arc;
    use std::time::Duration;

    struct NoWake;
    impl Wake for NoWake {
        fn wake(&self, _token: usize) {}
    }

    /// An in-memory socket: input to hand out, room left in its send buffer
    /// (none: a write would block), what was written, and whether FIN was sent.
    #[derive(Default)]
    struct Fake {
        input: Vec<Vec<u8>>,
        eof: bool,
        room: usize,
        fail_writes: bool,
        out: Vec<u8>,
        fin: bool,
    }

    impl Socket for Fake {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.input.is_empty() {
                return if self.eof { Ok(0) } else { Err(io::ErrorKind::WouldBlock.into()) };
            }
            let chunk = self.input.remove(0);
            buf[..chunk.len()].copy_from_slice(&chunk);
            Ok(chunk.len())
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            if self.fail_writes {
                return Err(io::ErrorKind::ConnectionReset.into());
            }
            if self.room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let before = self.out.len();
            for b in bufs {
                let k = b.len().min(self.room);
                self.out.extend_from_slice(&b[..k]);
                self.room -= k;
            }
            Ok(self.out.len() - before)
        }
        fn shutdown_write(&mut self) -> io::Result<()> {
            self.fin = true;
            Ok(())
        }
    }

    fn conn() -> Connection {
        Connection::new(Server::new(Config::default()), Arc::new(NoWake), 0, Instant::now())
    }

    fn run(conn: &mut Connection, unsent: &mut Unsent, socket: &mut Fake) -> Step {
        let mut buf = [0u8; 1024];
        step(conn, unsent, socket, &mut buf, Instant::now(), false, false)
    }

    #[test]
    fn answers_then_half_closes_then_waits_for_the_peer() {
        let (mut c, mut unsent) = (conn(), Unsent::new());
        let mut s = Fake { room: usize::MAX, ..Fake::default() };
        s.input.push(b"GET /stats HTTP/1.1\r\nConnection: close\r\n\r\n".to_vec());
        let first = run(&mut c, &mut unsent, &mut s);
        assert!(String::from_utf8_lossy(&s.out).starts_with("HTTP/1.1 200 OK"));
        assert!(s.fin, "everything written: FIN sent");
        assert!(matches!(first, Step::Wait { read: true, write: false, deadline: Some(_) }), "{first:?}");
        s.eof = true;
        assert_eq!(run(&mut c, &mut unsent, &mut s), Step::Done, "the peer closed too");
    }

    #[test]
    fn a_full_socket_keeps_the_rest_and_delays_the_fin() {
        let (mut c, mut unsent) = (conn(), Unsent::new());
        let mut s = Fake { room: 10, ..Fake::default() };
        s.input.push(b"GET /stats HTTP/1.1\r\nConnection: close\r\n\r\n".to_vec());
        // The socket takes 10 bytes, then says "would block" until it is
        // given room again.
        let got = run(&mut c, &mut unsent, &mut s);
        assert!(matches!(got, Step::Wait { write: true, .. }), "{got:?}");
        assert!(!s.fin, "no FIN while bytes are unsent");
        s.room = usize::MAX;
        run(&mut c, &mut unsent, &mut s);
        assert!(s.fin);
        assert!(unsent.is_empty());
        let text = String::from_utf8(s.out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK") && text.ends_with('}'), "{text}");
    }

    #[test]
    fn a_reset_ends_the_connection_and_empties_the_batch() {
        let (mut c, mut unsent) = (conn(), Unsent::new());
        let mut s = Fake { fail_writes: true, ..Fake::default() };
        s.input.push(b"GET /stats HTTP/1.1\r\n\r\n".to_vec());
        assert_eq!(run(&mut c, &mut unsent, &mut s), Step::Done);
        assert!(unsent.is_empty(), "nothing stays in a buffer the lab lends to the next connection");
    }

    #[test]
    fn a_client_that_never_pauses_yields_its_turn() {
        let (mut c, mut unsent) = (conn(), Unsent::new());
        let mut s = Fake { room: usize::MAX, ..Fake::default() };
        for _ in 0..READS_PER_STEP + 5 {
            s.input.push(b"GET /poll?topic=t HTTP/1.1\r\n\r\n".to_vec());
        }
        assert_eq!(run(&mut c, &mut unsent, &mut s), Step::Yield);
        assert_eq!(s.input.len(), 5, "exactly READS_PER_STEP reads");
        assert!(matches!(run(&mut c, &mut unsent, &mut s), Step::Wait { .. }));
        let text = String::from_utf8(s.out).unwrap();
        assert_eq!(text.matches("HTTP/1.1 200 OK").count() as u32, READS_PER_STEP + 5);
    }

    #[test]
    fn stopping_says_goodbye() {
        let (mut c, mut unsent) = (conn(), Unsent::new());
        let mut s = Fake { room: usize::MAX, ..Fake::default() };
        s.input.push(b"GET /sse?topic=t HTTP/1.1\r\n\r\n".to_vec());
        let got = run(&mut c, &mut unsent, &mut s);
        assert!(matches!(got, Step::Wait { deadline: Some(_), .. }), "keep-alive deadline: {got:?}");
        assert!(!s.fin);
        let mut buf = [0u8; 64];
        let later = Instant::now() + Duration::from_millis(1);
        step(&mut c, &mut unsent, &mut s, &mut buf, later, false, true);
        assert!(s.fin, "an event stream ends with the server's FIN");
    }
}
