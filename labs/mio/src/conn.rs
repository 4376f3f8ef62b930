//! One connection as the event loop sees it: the core's protocol state
//! machine plus this lab's own I/O state, and the one function that moves
//! bytes between them.

use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::time::Instant;

use mio::net::TcpStream;
use rtlab_core::{Bytes, Connection, Status, WRITE_BATCH};

use crate::timers::NOT_FILED;

/// Most buffers handed to one vectored write (one `iovec` array for `writev`).
const MAX_IOV: usize = 64;

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
    /// Output taken from the core for one vectored write.
    pub(crate) batch: Vec<Bytes>,
}

impl Scratch {
    /// A read buffer of `read_size` bytes and an empty batch.
    pub(crate) fn new(read_size: usize) -> Scratch {
        Scratch { read_buf: vec![0; read_size].into_boxed_slice(), batch: Vec::new() }
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
    /// *pending write*. `None` (and no allocation) whenever everything taken
    /// was written, i.e. nearly always.
    #[expect(clippy::box_collection, reason = "a thin pointer: 8 bytes in every connection, not a Vec's 24")]
    unsent: Option<Box<Vec<Bytes>>>,
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
            let flushed = match self.flush(&mut scratch.batch) {
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
    /// up to [`WRITE_BATCH`] bytes as shared buffers, and the loop passes them
    /// to the kernel as one `iovec` array, without copying them together.
    fn flush(&mut self, batch: &mut Vec<Bytes>) -> io::Result<bool> {
        while self.writable {
            batch.clear();
            match self.unsent.take() {
                Some(mut unsent) => batch.append(&mut unsent),
                None => {
                    self.conn.take_output(batch, WRITE_BATCH);
                }
            }
            if batch.is_empty() {
                return Ok(true);
            }
            let mut first = 0; // batch[first..] is not written yet.
            while first < batch.len() {
                let mut iov = [IoSlice::new(&[]); MAX_IOV];
                let count = (batch.len() - first).min(MAX_IOV);
                for (slice, bytes) in iov.iter_mut().zip(&batch[first..first + count]) {
                    *slice = IoSlice::new(bytes);
                }
                match self.stream.write_vectored(&iov[..count]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => {
                        self.conn.written(n);
                        first = consume(batch, first, n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.writable = false;
                        self.unsent = Some(Box::new(batch.drain(first..).collect()));
                        return Ok(false);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(false)
    }
    // ANCHOR_END: flush
}

/// Marks `n` more bytes of `batch[first..]` as written; returns the index of
/// the first buffer not completely written (trimming a partly written one).
fn consume(batch: &mut [Bytes], mut first: usize, mut n: usize) -> usize {
    while n > 0 {
        let len = batch[first].len();
        if n < len {
            batch[first] = batch[first].slice(n..);
            break;
        }
        n -= len;
        first += 1;
    }
    first
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn consume_handles_partial_writes() {
        let mut batch: Vec<Bytes> = ["abc", "de", "fgh"].map(|s| Bytes::from_static(s.as_bytes())).into();
        let first = consume(&mut batch, 0, 4);
        assert_eq!(first, 1);
        assert_eq!(&batch[1][..], b"e");
        let first = consume(&mut batch, first, 1);
        assert_eq!(first, 2);
        assert_eq!(consume(&mut batch, first, 3), 3);
    }
}
