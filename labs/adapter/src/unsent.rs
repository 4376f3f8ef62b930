//! Output a runtime has taken from a [`Connection`] but the socket has not
//! accepted yet: the one piece of write bookkeeping every lab needs, kept
//! here so that it is written once.

use std::io::{self, IoSlice, Write};

use rtlab_core::{Bytes, Connection};

/// Largest batch taken from a connection for one vectored write: enough to
/// carry many queued frames in one system call.
pub const WRITE_BATCH: usize = 64 * 1024;

/// Most buffers handed to one vectored write (Linux accepts 1024; 64 carry a
/// whole [`WRITE_BATCH`] of small frames).
pub const MAX_IOV: usize = 64;

/// The bytes between [`Connection::take_output`] and the socket.
///
/// A runtime calls [`refill`](Unsent::refill) before deciding whether it
/// must wait for the socket to become writable, and
/// [`write_to`](Unsent::write_to) when it may write. Partial writes are
/// normal on a non-blocking socket: what the socket did not take stays here,
/// in order, and is offered again. Only cheap handles to the shared encoded
/// messages are held, never copies.
///
/// An idle connection holds no allocation: the list of handles is given back
/// as soon as everything in it has been written.
#[derive(Debug, Default)]
pub struct Unsent {
    bufs: Vec<Bytes>,
    /// Buffers of `bufs` already written completely.
    done: usize,
}

impl Unsent {
    /// Nothing unsent.
    pub fn new() -> Unsent {
        Unsent::default()
    }

    /// Whether everything taken has been written.
    pub fn is_empty(&self) -> bool {
        self.done == self.bufs.len()
    }

    /// Unwritten bytes.
    pub fn len(&self) -> usize {
        self.bufs[self.done..].iter().map(Bytes::len).sum()
    }

    /// When everything taken has been written, takes the connection's next
    /// batch (up to [`WRITE_BATCH`] bytes). Returns whether anything is unsent.
    pub fn refill(&mut self, conn: &mut Connection) -> bool {
        if self.is_empty() {
            self.clear();
            conn.take_output(&mut self.bufs, WRITE_BATCH);
        }
        !self.is_empty()
    }

    // ANCHOR: write_to
    /// One vectored write of the unsent bytes to `w` (a non-blocking socket);
    /// what it accepted is reported to `conn` with [`Connection::written`].
    /// Returns the number of bytes written; `WouldBlock` means "wait until
    /// the socket is writable".
    pub fn write_to(&mut self, conn: &mut Connection, w: &mut impl Write) -> io::Result<usize> {
        // The `iovec` array lives on the stack: a write allocates nothing.
        let mut slices = [IoSlice::new(&[]); MAX_IOV];
        let count = (self.bufs.len() - self.done).min(MAX_IOV);
        for (slice, buf) in slices.iter_mut().zip(&self.bufs[self.done..]) {
            *slice = IoSlice::new(buf);
        }
        let n = w.write_vectored(&slices[..count])?;
        self.advance(n);
        conn.written(n);
        Ok(n)
    }
    // ANCHOR_END: write_to

    /// Forgets the first `n` unsent bytes (the socket took them).
    fn advance(&mut self, mut n: usize) {
        while n > 0 && self.done < self.bufs.len() {
            let front = &mut self.bufs[self.done];
            if n >= front.len() {
                n -= front.len();
                self.done += 1;
            } else {
                let _ = front.split_to(n);
                n = 0;
            }
        }
        if self.is_empty() {
            self.clear();
        }
    }

    /// Releases the handles (and the list's memory): once all are written, or
    /// when the connection is dropped with bytes still unsent.
    pub fn clear(&mut self) {
        self.bufs = Vec::new();
        self.done = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtlab_core::{Config, Server, Wake};
    use std::sync::Arc;
    use std::time::Instant;

    struct NoWake;
    impl Wake for NoWake {
        fn wake(&self, _token: usize) {}
    }

    /// A writer that accepts at most `limit` bytes per call.
    struct Trickle {
        limit: usize,
        got: Vec<u8>,
    }
    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(self.limit);
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            let mut n = 0;
            for b in bufs {
                let k = b.len().min(self.limit - n);
                self.got.extend_from_slice(&b[..k]);
                n += k;
                if n == self.limit {
                    break;
                }
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn partial_writes_keep_order_and_release_memory() {
        let server = Server::new(Config::default());
        let mut conn = Connection::new(server, Arc::new(NoWake), 0, Instant::now());
        conn.on_read(b"GET /poll?topic=t HTTP/1.1\r\n\r\nGET /poll?topic=u HTTP/1.1\r\n\r\n", Instant::now());
        let mut unsent = Unsent::new();
        assert!(unsent.refill(&mut conn));
        let total = unsent.len();
        let mut w = Trickle { limit: 7, got: Vec::new() };
        while unsent.refill(&mut conn) {
            assert!(unsent.write_to(&mut conn, &mut w).unwrap() <= 7);
        }
        assert_eq!(w.got.len(), total);
        let text = String::from_utf8(w.got).unwrap();
        assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2);
        assert_eq!(unsent.bufs.capacity(), 0, "an idle connection holds no list");
        assert!(!unsent.refill(&mut conn));
    }
}
