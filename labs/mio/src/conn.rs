//! One connection as the event loop sees it: the core's protocol state
//! machine plus this lab's own I/O state, and the one function that moves
//! bytes between them.

use std::io::{self, Read};
use std::net::Shutdown;
use std::time::Instant;

use mio::net::TcpStream;
use rtlab_core::{Connection, Status, Unsent};

use crate::timers::NOT_FILED;

/// Reads one connection may do per turn of the loop before the others get
/// theirs: a client that sends without pause cannot starve its neighbours.
const READS_PER_TURN: usize = 4;

// ANCHOR: phase
/// Where a connection is in its life *as far as the socket is concerned*.
///
/// The protocol states — reading a request, an upgraded WebSocket, a
/// streaming SSE response, a held long poll — belong to the core's
/// [`Connection`]; the loop never looks at them. What the loop adds is how the
/// socket goes away, which the core describes with [`Status`]:
///
/// ```text
///   Serving ──status Closing──▶ Flushing ──all written, FIN sent──▶ Draining ──EOF or linger──▶ dropped
///      └──────────────status Closed (peer gone, error)────────────────────────────────────────▶ dropped
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// The core's status is `Open`: read while the core wants input, write
    /// whatever output it produces.
    Serving,
    /// The core's status is `Closing`: write what is left. Input is still
    /// read (the core discards it), so that the peer's end of file is seen.
    Flushing,
    /// Half-closed: everything is written and our FIN is sent
    /// (`shutdown(Write)`). Input is read and discarded — drained — until the
    /// peer's FIN or the core's linger deadline. Closing a socket that still
    /// has unread input makes the kernel send a reset, which can destroy the
    /// last response before the peer has read it.
    Draining,
}
// ANCHOR_END: phase

/// What the loop does with a connection after driving it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Nothing to do until an event, a wake-up or its deadline.
    Wait,
    /// It has more input but used up its turn: drive it again next turn.
    Again,
    /// Close the socket and forget the connection.
    Drop,
}

/// Buffers owned by the loop and lent to whichever connection it drives:
/// an idle connection owns neither.
#[derive(Debug)]
pub(crate) struct Scratch {
    /// Every read lands here first; the core copies out only what it must
    /// keep (an unfinished request head or frame).
    pub(crate) read_buf: Box<[u8]>,
    /// Output taken from the core for a vectored write, while it is written;
    /// a connection takes it over only if the kernel refuses part of it.
    pub(crate) unsent: Unsent,
}

impl Scratch {
    /// A read buffer of `read_size` bytes, nothing unsent.
    pub(crate) fn new(read_size: usize) -> Scratch {
        Scratch { read_buf: vec![0; read_size].into_boxed_slice(), unsent: Unsent::new() }
    }
}

// ANCHOR: conn
/// One connection of the loop: the core's [`Connection`], its socket, and
/// the I/O state that a readiness-based loop must keep itself.
///
/// *Registered interest* is the same for a connection's whole life: the
/// socket is registered once, edge-triggered, for both readable and
/// writable, as nginx does. An edge-triggered event reports a *change*
/// ("data arrived", "room in the send buffer again"), not a level, so
/// nothing ever needs re-registering (an `epoll_ctl` per state change);
/// instead the connection remembers what the last events said in
/// `readable` and `writable`, and clears them when a read or write hits
/// `WouldBlock` — the kernel then owes it a new edge.
///
/// An idle connection (an SSE stream or a WebSocket between messages) is
/// this struct, the core's `Peer` and a hub entry — no buffer of its own:
/// `unsent` exists only while the kernel has refused bytes.
#[derive(Debug)]
pub(crate) struct Conn {
    /// The protocol state machine (rtlab-core).
    pub(crate) conn: Connection,
    stream: TcpStream,
    phase: Phase,
    /// The last event said readable, and no read has hit `WouldBlock` since.
    readable: bool,
    /// No write has hit `WouldBlock` since the last writable event.
    writable: bool,
    /// Bytes taken from the core that the kernel's send buffer refused: the
    /// *pending write*. `None` (and no allocation: a box is one pointer)
    /// whenever everything taken was written, i.e. nearly always.
    unsent: Option<Box<Unsent>>,
    /// The core must be told that time passed or a publisher woke it
    /// ([`Connection::on_tick`]) before the next write.
    pub(crate) tick: bool,
    /// Already in the loop's list of connections to drive this turn.
    pub(crate) queued: bool,
    /// The time this connection is filed under in the loop's timer heap
    /// (or [`NOT_FILED`]).
    pub(crate) filed: u64,
}
// ANCHOR_END: conn

impl Conn {
    /// A freshly accepted connection. A new socket has an empty send buffer,
    /// so it starts writable; whether it is readable, an event will say.
    pub(crate) fn new(conn: Connection, stream: TcpStream) -> Conn {
        Conn {
            conn,
            stream,
            phase: Phase::Serving,
            readable: false,
            writable: true,
            unsent: None,
            tick: false,
            queued: false,
            filed: NOT_FILED,
        }
    }

    // ANCHOR: on_event
    /// Records what an event says. An error or hang-up marks both directions
    /// ready, so that the next read or write reports it.
    pub(crate) fn on_event(&mut self, event: &mio::event::Event) {
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            self.readable = true;
        }
        if event.is_writable() || event.is_write_closed() || event.is_error() {
            self.writable = true;
        }
    }
    // ANCHOR_END: on_event

    // ANCHOR: drive
    /// Runs the core's loop for this connection until it has to wait: tick
    /// the core if it was woken or its deadline passed, write what it has,
    /// obey its status, read what it wants. `now` is the loop's cached time.
    pub(crate) fn drive(&mut self, scratch: &mut Scratch, now: Instant) -> Next {
        if std::mem::take(&mut self.tick) {
            self.conn.on_tick(now);
        }
        let mut reads = 0;
        loop {
            // 1. Write what the core has, in as few system calls as possible.
            let flushed = match self.flush(&mut scratch.unsent) {
                Ok(flushed) => flushed,
                Err(_) => return Next::Drop, // Reset by the peer: nothing more can be sent.
            };
            // 2. Obey the core's status.
            match self.conn.status() {
                Status::Closed => return Next::Drop,
                Status::Closing if self.phase == Phase::Serving => self.phase = Phase::Flushing,
                Status::Open | Status::Closing => {}
            }
            if self.phase == Phase::Flushing && flushed {
                // Everything is written: send our FIN and drain.
                if self.stream.shutdown(Shutdown::Write).is_err() {
                    return Next::Drop;
                }
                self.phase = Phase::Draining;
            }
            // 3. Read, if the core wants input and the kernel may have some.
            if !(self.readable && self.conn.wants_read()) {
                return Next::Wait;
            }
            if reads == READS_PER_TURN {
                return Next::Again;
            }
            reads += 1;
            match self.stream.read(&mut scratch.read_buf) {
                Ok(0) => {
                    self.readable = false;
                    self.conn.on_eof(now);
                }
                Ok(n) => self.conn.on_read(&scratch.read_buf[..n], now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.readable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Next::Drop,
            }
        }
    }
    // ANCHOR_END: drive

    // ANCHOR: flush
    /// Writes output until the core has none left (`Ok(true)`) or the kernel's
    /// send buffer is full (`Ok(false)`, the rest kept in `unsent`).
    ///
    /// Everything the core has queued for this connection — a response, ten
    /// fan-out frames, a ping — leaves in one `writev`: the core hands out
    /// up to a batch of shared buffers, and [`Unsent::write_to`] passes them
    /// to the kernel as one `iovec` array, without copying them together.
    /// The batch is the loop's (`scratch`); it becomes the connection's own
    /// only if the kernel refuses part of it.
    fn flush(&mut self, scratch: &mut Unsent) -> io::Result<bool> {
        debug_assert!(scratch.is_empty(), "the loop's batch holds another connection's bytes");
        // A pending write goes first: it is older than anything in the core.
        let mut own = self.unsent.take();
        let unsent = own.as_deref_mut().unwrap_or(scratch);
        let result = loop {
            if !self.writable {
                break Ok(false);
            }
            if !unsent.refill(&mut self.conn) {
                break Ok(true);
            }
            match unsent.write_to(&mut self.conn, &mut self.stream) {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        if !unsent.is_empty() {
            // Whatever is left leaves the loop's batch, which the next
            // connection will use: kept until the kernel says writable again,
            // or dropped with the connection after an error.
            let rest = own.unwrap_or_else(|| Box::new(std::mem::take(scratch)));
            if result.is_ok() {
                self.unsent = Some(rest);
            }
        }
        result
    }
    // ANCHOR_END: flush
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtlab_core::{Config, Server, Wake};
    use std::sync::Arc;
    use std::time::Duration;

    /// A connected pair: the server's end as the loop holds it, and a
    /// blocking client end.
    fn pair() -> (TcpStream, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        server.set_nonblocking(true).expect("nonblocking");
        (TcpStream::from_std(server), client)
    }

    /// A connection that has been sent `request` and has its answer queued.
    fn answered(request: &[u8]) -> Connection {
        struct NoWake;
        impl Wake for NoWake {
            fn wake(&self, _token: usize) {}
        }
        let mut conn = Connection::new(Server::new(Config::default()), Arc::new(NoWake), 0);
        conn.on_read(request, Instant::now());
        conn
    }

    #[test]
    fn a_failed_write_leaves_nothing_in_the_loops_batch() {
        let mut scratch = Scratch::new(1024);
        // Connection a: its client has reset the connection, so writing fails.
        let (stream, client) = pair();
        socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO)).expect("linger");
        drop(client);
        std::thread::sleep(Duration::from_millis(50));
        let mut a = Conn::new(answered(b"GET /poll?topic=a HTTP/1.1\r\n\r\n"), stream);
        assert!(a.flush(&mut scratch.unsent).is_err());
        assert!(scratch.unsent.is_empty(), "a's answer must not stay in the loop's batch");
        // Connection b, driven next with the same scratch, gets its own answer only.
        let (stream, mut client) = pair();
        let mut b = Conn::new(answered(b"GET /stats HTTP/1.1\r\n\r\n"), stream);
        assert!(b.flush(&mut scratch.unsent).expect("write"));
        client.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let mut got = vec![0u8; 4096];
        let n = client.read(&mut got).expect("read");
        let got = String::from_utf8_lossy(&got[..n]);
        assert!(got.contains("\"connections\"") && !got.contains("\"messages\""), "{got}");
    }

    /// `cargo test --release -p rtlab-mio --lib sizes -- --nocapture`
    /// prints what one connection occupies in the loop's slab.
    #[test]
    fn sizes_of_an_idle_connection() {
        println!("Conn (in the slab) {:>4} bytes", size_of::<Conn>());
        println!("  Connection       {:>4} bytes (rtlab-core)", size_of::<Connection>());
        println!("  TcpStream        {:>4} bytes (mio adds a selector id in debug builds)", size_of::<TcpStream>());
        println!("timer heap entry   {:>4} bytes", size_of::<u64>());
        // The core's Connection plus the socket and 24 bytes of I/O state.
        let bound = size_of::<Connection>() + size_of::<TcpStream>() + 24;
        assert!(size_of::<Conn>() <= bound, "Conn is {} bytes", size_of::<Conn>());
    }
}
