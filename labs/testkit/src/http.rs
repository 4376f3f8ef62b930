//! Raw HTTP/1.1 over a plain TCP socket: whatever bytes a test wants to send
//! (malformed ones included), and responses read with a deadline.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::TIMEOUT;
use crate::tls::Stream;

/// A minimal request head: the request line, `Host`, the `extra` header
/// lines (each ending in `\r\n`) and the blank line. The body, if any, is
/// the caller's to append.
pub fn request(method: &str, target: &str, extra: &str) -> Vec<u8> {
    format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n").into_bytes()
}

/// Asserts a Content-Type's media type (parameters such as `charset` allowed).
pub fn assert_content_type(value: Option<&str>, expected: &str) {
    let value = value.unwrap_or_else(|| panic!("no Content-Type header (expected {expected})"));
    let media = value.split(';').next().unwrap_or("").trim();
    assert!(media.eq_ignore_ascii_case(expected), "Content-Type {value:?}, expected {expected}");
}

/// A response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The status code.
    pub status: u16,
    /// The reason phrase of the status line (`OK`, `Service Unavailable`).
    pub reason: String,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// Parses a head without its final blank line; panics on a malformed one.
    pub fn parse(head: &str) -> Head {
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        assert!(version == "HTTP/1.1" || version == "HTTP/1.0", "bad status line {status_line:?}");
        let status =
            parts.next().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let reason = parts.next().unwrap_or("").to_owned();
        let headers = lines
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap_or_else(|| panic!("bad header line {l:?}"));
                (n.trim().to_ascii_lowercase(), v.trim().to_owned())
            })
            .collect();
        Head { status, reason, headers }
    }

    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Whether a header called `name` lists `token` (comma-separated,
    /// case-insensitive), in any of its occurrences.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .any(|(_, v)| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }

    /// Whether `Connection` lists `close`.
    pub fn connection_close(&self) -> bool {
        self.has_token("connection", "close")
    }
}

/// A complete response with a `Content-Length` body.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status and headers.
    pub head: Head,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The body as text (panics if it is not UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("the body is UTF-8")
    }
}

/// A raw TCP connection with a read buffer: it writes any bytes and reads
/// responses, event streams and frames, every read with a deadline.
///
/// Raw, because a test of a server must be able to send what no proper
/// client library would (malformed heads, bytes cut anywhere, pipelined
/// requests) and to see exactly what comes back, connection close included.
#[derive(Debug)]
pub struct RawConn {
    /// Plain TCP, or TLS if the server's address is marked ([`crate::tls`]).
    stream: Stream,
    /// Bytes read and not yet consumed.
    pub(crate) buf: Vec<u8>,
}

impl RawConn {
    /// Connects (within [`TIMEOUT`]); `TCP_NODELAY`, a write timeout.
    pub fn connect(addr: SocketAddr) -> RawConn {
        let stream = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect");
        RawConn::from_stream(stream)
    }

    /// Connects with a small `SO_RCVBUF`, set before `connect` so that the
    /// TCP window is negotiated small: a client that then stops reading
    /// stalls the server quickly.
    pub fn connect_small_rcvbuf(addr: SocketAddr, bytes: usize) -> RawConn {
        let socket = new_socket(addr);
        socket.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
        socket.connect_timeout(&addr.into(), TIMEOUT).expect("connect");
        RawConn::from_stream(socket.into())
    }

    /// Connects, sends `send_first`, then closes abortively (`SO_LINGER` 0:
    /// an RST, not a FIN).
    pub fn connect_and_reset(addr: SocketAddr, send_first: &[u8]) {
        let socket = new_socket(addr);
        socket.connect_timeout(&addr.into(), TIMEOUT).expect("connect");
        let mut stream: TcpStream = socket.into();
        stream.write_all(send_first).expect("write");
        socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO)).expect("SO_LINGER");
        drop(stream);
    }

    /// Wraps a connected stream (in TLS, if its address is marked).
    pub fn from_stream(stream: TcpStream) -> RawConn {
        stream.set_nodelay(true).expect("TCP_NODELAY");
        stream.set_write_timeout(Some(TIMEOUT)).expect("write timeout");
        RawConn { stream: Stream::wrap(stream), buf: Vec::new() }
    }

    /// Writes all of `bytes`.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).and_then(|()| self.stream.flush()).expect("write to the server");
    }

    /// Reads more into the buffer; `0` at end of file. Panics at `deadline`.
    pub(crate) fn fill(&mut self, deadline: Instant, what: &str) -> usize {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "timed out waiting for {what}");
            self.stream.tcp().set_read_timeout(Some(left)).expect("read timeout");
            match self.stream.read(&mut chunk) {
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return n;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    panic!("timed out waiting for {what}")
                }
                Err(e) => panic!("read error while waiting for {what}: {e}"),
            }
        }
    }

    /// Reads one response head (`100 Continue` included, it is a head too).
    pub fn read_head(&mut self) -> Head {
        let deadline = Instant::now() + TIMEOUT;
        let end = loop {
            if let Some(pos) = find(&self.buf, b"\r\n\r\n") {
                break pos;
            }
            assert!(self.buf.len() < 64 * 1024, "response head too long");
            if self.fill(deadline, "a response head") == 0 {
                panic!(
                    "the server closed the connection before a complete response head (got {:?})",
                    String::from_utf8_lossy(&self.buf)
                );
            }
        };
        let head = String::from_utf8(self.buf[..end].to_vec()).expect("the response head is ASCII");
        self.buf.drain(..end + 4);
        Head::parse(&head)
    }

    /// Reads a complete response whose body has a `Content-Length` (a
    /// response without one fails the test).
    pub fn read_response(&mut self) -> Response {
        let head = self.read_head();
        let len: usize = head
            .header("content-length")
            .unwrap_or_else(|| panic!("response {} without Content-Length: {:?}", head.status, head.headers))
            .parse()
            .expect("numeric Content-Length");
        let deadline = Instant::now() + TIMEOUT;
        while self.buf.len() < len {
            if self.fill(deadline, "a response body") == 0 {
                panic!("the server closed the connection in the middle of a response body");
            }
        }
        let body = self.buf.drain(..len).collect();
        Response { head, body }
    }

    /// Asserts that the server closes the connection (cleanly, with a FIN)
    /// and sends nothing more.
    pub fn expect_eof(&mut self, context: &str) {
        let deadline = Instant::now() + TIMEOUT;
        assert!(self.buf.is_empty(), "{context}: unexpected bytes {:?}", String::from_utf8_lossy(&self.buf));
        let mut chunk = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "{context}: the server did not close the connection");
            self.stream.tcp().set_read_timeout(Some(left)).expect("read timeout");
            match self.stream.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => panic!("{context}: unexpected bytes {:?}", String::from_utf8_lossy(&chunk[..n])),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    panic!("{context}: the server did not close the connection")
                }
                Err(e) => panic!("{context}: expected a clean close (FIN), got {e}"),
            }
        }
    }

    /// Consumes `n` buffered-or-read bytes; `None` at end of file first.
    pub(crate) fn take_exact(&mut self, n: usize, deadline: Instant, what: &str) -> Option<Vec<u8>> {
        while self.buf.len() < n {
            if self.fill(deadline, what) == 0 {
                return None;
            }
        }
        Some(self.buf.drain(..n).collect())
    }
}

fn new_socket(addr: SocketAddr) -> socket2::Socket {
    socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, Some(socket2::Protocol::TCP))
        .expect("socket")
}

pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A `Transfer-Encoding: chunked` body, decoded as it arrives: used by the
/// SSE reader when a server frames its stream in chunks.
#[derive(Debug, Default)]
pub(crate) struct Chunked {
    part: Part,
}

/// Where in a chunked body the decoder is.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// Before a chunk-size line.
    #[default]
    Size,
    /// Inside a chunk's data, with this many bytes to come.
    Data(usize),
    /// Before the CRLF that ends a chunk's data.
    DataEnd,
    /// After the last chunk: trailer fields up to a blank line.
    Trailer,
    /// The body has ended.
    Done,
}

impl Chunked {
    /// Whether the last chunk and the trailer's blank line have been read.
    pub(crate) fn done(&self) -> bool {
        self.part == Part::Done
    }

    /// Moves the complete pieces at the front of `input` to `out` (data) or
    /// drops them (sizes, CRLFs, trailer); leaves an incomplete line in
    /// `input`. Panics on a malformed body.
    pub(crate) fn decode(&mut self, input: &mut Vec<u8>, out: &mut Vec<u8>) {
        let mut at = 0;
        loop {
            let rest = &input[at..];
            match self.part {
                Part::Size => {
                    let Some(eol) = find(rest, b"\r\n") else { break };
                    let line = String::from_utf8_lossy(&rest[..eol]);
                    let size = line.split(';').next().unwrap_or("").trim();
                    let size =
                        usize::from_str_radix(size, 16).unwrap_or_else(|_| panic!("bad chunk-size line {line:?}"));
                    self.part = if size == 0 { Part::Trailer } else { Part::Data(size) };
                    at += eol + 2;
                }
                Part::Data(left) => {
                    let take = left.min(rest.len());
                    if take == 0 {
                        break;
                    }
                    out.extend_from_slice(&rest[..take]);
                    self.part = if take == left { Part::DataEnd } else { Part::Data(left - take) };
                    at += take;
                }
                Part::DataEnd => {
                    if rest.len() < 2 {
                        break;
                    }
                    assert_eq!(&rest[..2], b"\r\n", "a chunk's data must end with CRLF");
                    self.part = Part::Size;
                    at += 2;
                }
                Part::Trailer => {
                    let Some(eol) = find(rest, b"\r\n") else { break };
                    if eol == 0 {
                        self.part = Part::Done;
                    }
                    at += eol + 2;
                }
                Part::Done => break,
            }
        }
        input.drain(..at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_parse() {
        let head =
            Head::parse("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 3\r\nConnection: keep-alive, Close");
        assert_eq!((head.status, head.reason.as_str()), (503, "Service Unavailable"));
        assert_eq!(head.header("CONTENT-LENGTH"), Some("3"));
        assert!(head.connection_close());
        assert!(!Head::parse("HTTP/1.0 200 OK").connection_close());
    }

    #[test]
    fn request_head() {
        assert_eq!(request("GET", "/x", "A: b\r\n"), b"GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\nA: b\r\n\r\n");
    }

    #[test]
    fn chunked_in_any_pieces() {
        let body = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nTrailer: x\r\n\r\n";
        for step in 1..body.len() {
            let (mut dec, mut input, mut out) = (Chunked::default(), Vec::new(), Vec::new());
            for piece in body.chunks(step) {
                input.extend_from_slice(piece);
                dec.decode(&mut input, &mut out);
            }
            assert_eq!(out, b"hello, world", "in pieces of {step}");
            assert!(dec.done() && input.is_empty(), "in pieces of {step}");
        }
    }

    #[test]
    fn raw_conn_reads_pipelined_responses_and_eof() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            let mut got = [0u8; 1024];
            let n = s.read(&mut got).expect("read");
            s.write_all(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiHTTP/1.1 404 ")
                .expect("write");
            s.write_all(b"Not Found\r\ncontent-length: 0\r\nConnection: close\r\n\r\n").expect("write");
            got[..n].to_vec()
        });
        let mut conn = RawConn::connect(addr);
        conn.send(&request("GET", "/", ""));
        assert_eq!(conn.read_head().status, 100);
        let ok = conn.read_response();
        assert_eq!((ok.head.status, ok.text().as_str()), (200, "hi"));
        let missing = conn.read_response();
        assert_eq!((missing.head.status, missing.body.len()), (404, 0));
        assert!(missing.head.connection_close());
        conn.expect_eof("after Connection: close");
        assert_eq!(server.join().expect("server"), request("GET", "/", ""));
    }
}
