//! One connection as the event loop sees it: the core's protocol state
//! machine plus this lab's own I/O state, and the one function that moves
//! bytes between them.

use std::io::{self, IoSlice, Read, Write};
use std::time::Instant;

use mio::net::TcpStream;
use rtlab_adapter::{Secured, Socket, Step, Ticket, TlsSession, Unsent, step};
use rtlab_core::Connection;

use crate::timers::NOT_FILED;

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
    /// The last event said readable, and no read has hit `WouldBlock` since.
    readable: bool,
    /// No write has hit `WouldBlock` since the last writable event.
    writable: bool,
    /// Bytes taken from the core that the kernel's send buffer refused: the
    /// *pending write*. `None` (and no allocation: a box is one pointer)
    /// whenever everything taken was written, i.e. nearly always.
    unsent: Option<Box<Unsent>>,
    /// The TLS session, if the server speaks TLS (boxed: one pointer, and
    /// none of rustls' state, in a plain connection).
    tls: Option<Box<TlsSession>>,
    /// The core must be told that time passed or a publisher woke it
    /// ([`Connection::on_tick`]) before the next write.
    pub(crate) tick: bool,
    /// Already in the loop's list of connections to drive this turn.
    pub(crate) queued: bool,
    /// The time this connection is filed under in the loop's timer heap
    /// (or [`NOT_FILED`]).
    pub(crate) filed: u64,
    /// Its place at the gate, given back when the slab drops it.
    _admitted: Ticket,
}
// ANCHOR_END: conn

impl Conn {
    /// A freshly accepted connection. A new socket has an empty send buffer,
    /// so it starts writable; whether it is readable, an event will say.
    pub(crate) fn new(conn: Connection, stream: TcpStream, tls: Option<Box<TlsSession>>, admitted: Ticket) -> Conn {
        Conn {
            conn,
            stream,
            readable: false,
            writable: true,
            unsent: None,
            tls,
            tick: false,
            queued: false,
            filed: NOT_FILED,
            _admitted: admitted,
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
    /// Runs the shared step ([`rtlab_adapter::step`]) for this connection
    /// until it has to wait: tick the core if it was woken or its deadline
    /// passed, write what it has, half-close when it says so, read what it
    /// wants. `now` is the loop's cached time; `stopping` says the server is
    /// shutting down.
    ///
    /// Everything the core has queued for this connection — a response, ten
    /// fan-out frames, a ping — leaves in one `writev`: the core hands out up
    /// to a batch of shared buffers, and [`Unsent::write_to`] passes them to
    /// the kernel as one `iovec` array, without copying them together. The
    /// batch is the loop's (`scratch`); it becomes the connection's own only
    /// if the kernel refuses part of it.
    pub(crate) fn drive(&mut self, scratch: &mut Scratch, now: Instant, stopping: bool) -> Step {
        let woken = std::mem::take(&mut self.tick);
        debug_assert!(scratch.unsent.is_empty(), "the loop's batch holds another connection's bytes");
        // A pending write goes first: it is older than anything in the core.
        let mut own = self.unsent.take();
        let unsent = own.as_deref_mut().unwrap_or(&mut scratch.unsent);
        let ready = Ready { stream: &self.stream, readable: &mut self.readable, writable: &mut self.writable };
        let mut socket = Secured::new(self.tls.as_deref_mut(), ready);
        let next = step(&mut self.conn, unsent, &mut socket, &mut scratch.read_buf, now, woken, stopping);
        if !unsent.is_empty() {
            // What the kernel refused leaves the loop's batch, which the next
            // connection will use: kept until the kernel says writable again.
            self.unsent = Some(own.unwrap_or_else(|| Box::new(std::mem::take(&mut scratch.unsent))));
        }
        next
    }
    // ANCHOR_END: drive
}

// ANCHOR: ready
/// The socket with the readiness its edge-triggered events reported: a read
/// or write that the kernel has already said would block returns
/// `WouldBlock` without a system call, and one that hits `WouldBlock`
/// clears the flag until the next event sets it again. That is how an
/// edge-triggered loop avoids asking the kernel about sockets it knows are
/// empty or full.
struct Ready<'a> {
    stream: &'a TcpStream,
    readable: &'a mut bool,
    writable: &'a mut bool,
}

impl Socket for Ready<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !*self.readable {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let result = (&*self.stream).read(buf);
        if matches!(&result, Ok(0)) || matches!(&result, Err(e) if e.kind() == io::ErrorKind::WouldBlock) {
            *self.readable = false;
        }
        result
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if !*self.writable {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let result = (&*self.stream).write_vectored(bufs);
        if matches!(&result, Err(e) if e.kind() == io::ErrorKind::WouldBlock) {
            *self.writable = false;
        }
        result
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        self.stream.shutdown(std::net::Shutdown::Write)
    }
}
// ANCHOR_END: ready

#[cfg(test)]
mod tests {
    use super::*;
    use rtlab_adapter::Gate;
    use rtlab_core::{Config, Server, Wake};
    use std::sync::Arc;
    use std::time::Duration;

    /// A place at a gate of its own.
    fn ticket() -> Ticket {
        Gate::start(&Server::new(Config::default())).expect("gate").admit().expect("a place")
    }

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
        let mut conn = Connection::new(Server::new(Config::default()), Arc::new(NoWake), 0, Instant::now());
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
        let mut a = Conn::new(answered(b"GET /poll?topic=a HTTP/1.1\r\n\r\n"), stream, None, ticket());
        assert_eq!(a.drive(&mut scratch, Instant::now(), false), Step::Done);
        assert!(scratch.unsent.is_empty(), "a's answer must not stay in the loop's batch");
        // Connection b, driven next with the same scratch, gets its own answer only.
        let (stream, mut client) = pair();
        let mut b = Conn::new(answered(b"GET /stats HTTP/1.1\r\n\r\n"), stream, None, ticket());
        assert!(matches!(b.drive(&mut scratch, Instant::now(), false), Step::Wait { .. }));
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
        println!("  Ticket           {:>4} bytes (its place at the gate)", size_of::<Ticket>());
        // The core's Connection, the socket, the gate's ticket, 24 bytes of
        // I/O state and the TLS session's box (one pointer).
        let bound = size_of::<Connection>() + size_of::<TcpStream>() + size_of::<Ticket>() + 24 + 8;
        assert!(size_of::<Conn>() <= bound, "Conn is {} bytes", size_of::<Conn>());
    }
}
