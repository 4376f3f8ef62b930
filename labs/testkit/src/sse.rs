//! Server-Sent Events over a raw connection: the response head checked, then
//! the stream read block by block (a block ends at a blank line) and parsed
//! into events the way the SSE spec's parser dispatches them.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::TIMEOUT;
use crate::http::{Chunked, RawConn, assert_content_type, find, request};

/// One dispatched SSE event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `id:` field's number, if any (`N` of `E-N`, or a bare `N`).
    pub id: Option<u64>,
    /// The `id:` field's epoch (`E` of `E-N`), if it has one.
    pub epoch: Option<String>,
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// How many `data:` lines there were.
    pub data_lines: usize,
}

/// An event-stream reader over a raw socket.
///
/// Raw rather than an `EventSource` library so that a test sees the stream
/// as sent: each block's lines, comments (keep-alives) counted, and where
/// the stream ends. A stream without `Content-Length` ends with the
/// connection; a `Transfer-Encoding: chunked` one (the axum baseline's) is
/// decoded, and ends with its last chunk.
#[derive(Debug)]
pub struct Sse {
    conn: RawConn,
    /// The decoded body read so far and not yet consumed.
    body: Vec<u8>,
    chunked: Option<Chunked>,
    /// Comment-only blocks (keep-alives) skipped by [`Sse::next_event`].
    pub comments: usize,
}

impl Sse {
    /// `GET target` with `extra` header lines; asserts `200 text/event-stream`
    /// without `Content-Length`.
    pub fn connect(addr: SocketAddr, target: &str, extra: &str) -> Sse {
        Sse::open(RawConn::connect(addr), target, extra)
    }

    /// Like [`Sse::connect`] on an already connected socket.
    pub fn open(mut conn: RawConn, target: &str, extra: &str) -> Sse {
        conn.send(&request("GET", target, &format!("Accept: text/event-stream\r\n{extra}")));
        let head = conn.read_head();
        assert_eq!(head.status, 200, "GET {target}: {:?}", head);
        assert_content_type(head.header("content-type"), "text/event-stream");
        assert!(head.header("content-length").is_none(), "an event stream has no Content-Length");
        let chunked = head.has_token("transfer-encoding", "chunked").then(Chunked::default);
        Sse { conn, body: Vec::new(), chunked, comments: 0 }
    }

    /// Whether the server framed the stream with `Transfer-Encoding: chunked`.
    pub fn is_chunked(&self) -> bool {
        self.chunked.is_some()
    }

    /// Decodes more of the body; `false` at its end.
    fn more(&mut self, deadline: Instant) -> bool {
        loop {
            let before = self.body.len();
            match &mut self.chunked {
                None => self.body.append(&mut self.conn.buf),
                Some(chunked) => chunked.decode(&mut self.conn.buf, &mut self.body),
            }
            if self.body.len() > before {
                return true;
            }
            if self.chunked.as_ref().is_some_and(Chunked::done) {
                return false;
            }
            if self.conn.fill(deadline, "an SSE event") == 0 {
                assert!(self.chunked.is_none(), "the chunked event stream ended without its last chunk");
                return false;
            }
        }
    }

    /// The next block of lines up to a blank line, or `None` at the end of
    /// the stream (an unfinished block there is discarded, as the SSE spec
    /// says).
    pub fn next_block(&mut self, timeout: Duration) -> Option<Vec<String>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(pos) = find(&self.body, b"\n\n") {
                let block: Vec<u8> = self.body.drain(..pos + 2).collect();
                let text = String::from_utf8(block[..pos].to_vec()).expect("an event stream is UTF-8");
                return Some(text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l).to_owned()).collect());
            }
            if !self.more(deadline) {
                return None;
            }
        }
    }

    /// The next event, skipping comment-only blocks; `None` at the end.
    pub fn next_event(&mut self, timeout: Duration) -> Option<SseEvent> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let block = self.next_block(left.max(Duration::from_millis(1)))?;
            match parse_sse_block(&block) {
                Some(event) => return Some(event),
                None => self.comments += 1,
            }
        }
    }

    /// The next event, which must be a message: `(id, data)`.
    pub fn message(&mut self) -> (u64, String) {
        let ev = self.next_event(TIMEOUT).expect("the event stream ended while a message was expected");
        assert_eq!(ev.event, None, "expected a message event, got {ev:?}");
        let id = ev.id.unwrap_or_else(|| panic!("a message event needs an id line: {ev:?}"));
        (id, ev.data)
    }

    /// Asserts the stream ends (after any events still buffered, which are
    /// returned).
    pub fn drain_to_eof(&mut self) -> Vec<SseEvent> {
        let deadline = Instant::now() + TIMEOUT;
        let mut events = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "the event stream did not end");
            match self.next_event(left) {
                Some(ev) => events.push(ev),
                None => return events,
            }
        }
    }

    /// Asserts that the connection then closes cleanly with nothing more.
    pub fn expect_eof(&mut self, context: &str) {
        assert!(self.body.is_empty(), "{context}: unread stream bytes {:?}", String::from_utf8_lossy(&self.body));
        self.conn.expect_eof(context);
    }
}

/// Parses one block; `None` if it dispatches nothing (comments only).
/// Panics on an `id` that is not `N` or `E-N`, or a field the contract does not use.
pub fn parse_sse_block(lines: &[String]) -> Option<SseEvent> {
    let mut ev = SseEvent { id: None, epoch: None, event: None, data: String::new(), data_lines: 0 };
    let mut fields = 0;
    for line in lines {
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        fields += 1;
        match field {
            "id" => {
                let (epoch, n) = match value.split_once('-') {
                    Some((e, n)) => (Some(e.to_owned()), n),
                    None => (None, value),
                };
                ev.id = Some(n.parse().unwrap_or_else(|_| panic!("SSE id {value:?} is not N or E-N")));
                ev.epoch = epoch;
            }
            "event" => ev.event = Some(value.to_owned()),
            "data" => {
                if ev.data_lines > 0 {
                    ev.data.push('\n');
                }
                ev.data.push_str(value);
                ev.data_lines += 1;
            }
            other => panic!("unexpected SSE field {other:?} in {lines:?}"),
        }
    }
    (fields > 0).then_some(ev)
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;

    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.split('\n').map(str::to_owned).collect()
    }

    #[test]
    fn blocks_parse_into_events() {
        let ev = parse_sse_block(&lines("id: 7\ndata: one\ndata:two\ndata: ")).expect("an event");
        assert_eq!(ev, SseEvent { id: Some(7), epoch: None, event: None, data: "one\ntwo\n".into(), data_lines: 3 });
        let ev = parse_sse_block(&lines("id: k3J9-8\ndata: x")).expect("an event");
        assert_eq!((ev.epoch.as_deref(), ev.id), (Some("k3J9"), Some(8)));
        let ev = parse_sse_block(&lines("event: missed\ndata: {}")).expect("an event");
        assert_eq!((ev.id, ev.event.as_deref()), (None, Some("missed")));
        assert_eq!(parse_sse_block(&lines(": keep-alive")), None);
    }

    /// A server thread that answers one request with `response`, sent in
    /// small pieces, then closes.
    fn serve_once(response: &'static [u8]) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            let _ = s.read(&mut [0u8; 1024]);
            for piece in response.chunks(7) {
                s.write_all(piece).expect("write");
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        addr
    }

    #[test]
    fn a_close_delimited_stream() {
        let addr = serve_once(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n\
              : keep-alive\n\nid: 1\ndata: a\n\nid: 2\ndata: b\ndata: c\n\n",
        );
        let mut sse = Sse::connect(addr, "/sse?topic=t", "");
        assert_eq!(sse.message(), (1, "a".into()));
        assert_eq!(sse.comments, 1);
        let rest = sse.drain_to_eof();
        assert_eq!(rest.iter().map(|e| (e.id, e.data.as_str())).collect::<Vec<_>>(), [(Some(2), "b\nc")]);
    }

    #[test]
    fn a_chunked_stream_ends_with_its_last_chunk() {
        let addr = serve_once(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n\
              f\r\nid:1\ndata:one\n\n\r\n7\r\nid:2\nda\r\n8\r\nta:two\n\n\r\n0\r\n\r\n",
        );
        let mut sse = Sse::connect(addr, "/sse?topic=t", "");
        assert_eq!(sse.message(), (1, "one".into()));
        assert_eq!(sse.message(), (2, "two".into()), "an event split across chunks");
        assert!(sse.drain_to_eof().is_empty());
        sse.expect_eof("after the last chunk");
    }
}
