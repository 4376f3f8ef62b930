//! In-memory tests of [`Connection`]: a fake runtime feeds it bytes and
//! simulated time (a base `Instant` plus durations; nothing sleeps), writes
//! everything `take_output` gives, and checks what comes out.

use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::outbox::Policy;

const SEC: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);

/// The RFC 6455 §1.3 example key and the accept value it must produce.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

// ---------------------------------------------------------------------------
// A fake runtime.

/// A waker that records the tokens it is woken with.
#[derive(Debug, Default)]
struct Wakes(Mutex<Vec<usize>>);

impl Wake for Wakes {
    fn wake(&self, token: usize) {
        self.0.lock().unwrap().push(token);
    }
}

impl Wakes {
    /// The tokens woken since the last call.
    fn take(&self) -> Vec<usize> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// One simulated client socket: a connection and its waker.
struct Client {
    conn: Connection,
    wakes: Arc<Wakes>,
}

impl Client {
    /// A client whose connection the runtime accepted at `now`.
    fn new(server: &Arc<Server>, token: usize, now: Instant) -> Client {
        let wakes = Arc::new(Wakes::default());
        Client { conn: Connection::new(server.clone(), wakes.clone(), token, now), wakes }
    }

    fn send(&mut self, data: impl AsRef<[u8]>, now: Instant) {
        self.conn.on_read(data.as_ref(), now);
    }

    /// Everything the runtime would write now, all of it accepted by the socket.
    fn output(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let n = self.conn.take_output(&mut out, usize::MAX);
        assert_eq!(n, out.iter().map(Bytes::len).sum::<usize>(), "take_output counts what it gives");
        self.conn.written(n);
        out.concat()
    }

    fn text(&mut self) -> String {
        String::from_utf8(self.output()).expect("UTF-8 output")
    }

    /// The WebSocket frames written now.
    fn frames(&mut self) -> Vec<Frame> {
        server_frames(&self.output())
    }
}

fn server_with(configure: impl FnOnce(&mut Config)) -> Arc<Server> {
    let mut config = Config::default();
    configure(&mut config);
    Server::with_epoch(config, "E")
}

// ---------------------------------------------------------------------------
// Requests.

fn publish(topic: &str, body: &str) -> String {
    format!("POST /publish?topic={topic} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}", body.len())
}

fn get(target: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n")
}

fn upgrade(target: &str) -> String {
    format!(
        "GET {target} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n\r\n"
    )
}

/// Publishes through a connection of its own, like a separate client would;
/// returns the id.
fn publish_via(server: &Arc<Server>, topic: &str, data: &str, now: Instant) -> u64 {
    let mut p = Client::new(server, usize::MAX, now);
    p.send(publish(topic, data), now);
    let r = one_response(&p.output());
    assert_eq!(r.status, 200);
    r.json()["id"].as_u64().expect("an id")
}

/// Opens a WebSocket; returns the client and the frames that followed the
/// `101` (a replay).
fn open_ws(server: &Arc<Server>, target: &str, token: usize, now: Instant) -> (Client, Vec<Frame>) {
    let mut c = Client::new(server, token, now);
    c.send(upgrade(target), now);
    let out = c.output();
    let (head, rest) = parse_response(&out);
    assert_eq!(head.status, 101, "{head:?}");
    assert_eq!(head.header("Upgrade"), Some("websocket"));
    assert_eq!(head.header("Connection"), Some("Upgrade"));
    assert_eq!(head.header("Sec-WebSocket-Accept"), Some(ACCEPT));
    assert_eq!(c.conn.status(), Status::Open);
    (c, server_frames(rest))
}

/// Opens an event stream; returns the client and what followed the head.
fn open_sse(server: &Arc<Server>, request: &str, token: usize, now: Instant) -> (Client, String) {
    let mut c = Client::new(server, token, now);
    c.send(request, now);
    let out = c.output();
    assert!(out.starts_with(http::SSE_HEAD), "{:?}", String::from_utf8_lossy(&out));
    let (head, rest) = parse_response(&out);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("Content-Type"), Some("text/event-stream"));
    (c, String::from_utf8(rest.to_vec()).unwrap())
}

// ---------------------------------------------------------------------------
// Responses.

#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        assert_eq!(self.header("Content-Type"), Some("application/json"));
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// Splits one response (head, and a body of `Content-Length` bytes if
/// given) off the front of `bytes`.
fn parse_response(bytes: &[u8]) -> (Response, &[u8]) {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut r = httparse::Response::new(&mut headers);
    let Ok(httparse::Status::Complete(head)) = r.parse(bytes) else {
        panic!("not a complete response: {:?}", String::from_utf8_lossy(bytes));
    };
    let headers: Vec<(String, String)> = r
        .headers
        .iter()
        .map(|h| (h.name.to_owned(), String::from_utf8(h.value.to_vec()).unwrap()))
        .collect();
    let status = r.code.unwrap();
    let len = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, v)| v.parse().unwrap());
    let body = bytes[head..head + len].to_vec();
    (Response { status, headers, body }, &bytes[head + len..])
}

/// Every response in `bytes`.
fn responses(mut bytes: &[u8]) -> Vec<Response> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (r, rest) = parse_response(bytes);
        out.push(r);
        bytes = rest;
    }
    out
}

fn one_response(bytes: &[u8]) -> Response {
    let mut all = responses(bytes);
    assert_eq!(all.len(), 1, "{all:?}");
    all.pop().unwrap()
}

// ---------------------------------------------------------------------------
// WebSocket frames.

/// A masked client frame; `first` is the FIN bit and opcode (the test kit's
/// one frame builder).
fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    rtlab_testkit::ws::client_frame(first, payload, true)
}

fn text_frame(text: &str) -> Vec<u8> {
    client_frame(0x81, text.as_bytes())
}

fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    client_frame(0x88, &payload)
}

/// A frame from the server: FIN/opcode byte and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Frame {
    first: u8,
    payload: Vec<u8>,
}

impl Frame {
    fn json(&self) -> Value {
        assert_eq!(self.first, 0x81, "a final text frame");
        serde_json::from_slice(&self.payload).expect("a JSON text frame")
    }

    fn close_code(&self) -> u16 {
        assert_eq!(self.first, 0x88, "a close frame, not {self:?}");
        u16::from_be_bytes([self.payload[0], self.payload[1]])
    }
}

/// The frames in `bytes`, which must be whole, unmasked server frames.
fn server_frames(mut bytes: &[u8]) -> Vec<Frame> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        assert_eq!(bytes[1] & 0x80, 0, "server frames are not masked");
        let (len, head) = match bytes[1] & 0x7f {
            126 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
            127 => (u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize, 10),
            n => (n as usize, 2),
        };
        frames.push(Frame { first: bytes[0], payload: bytes[head..head + len].to_vec() });
        bytes = &bytes[head + len..];
    }
    frames
}

// ---------------------------------------------------------------------------
// Plain HTTP.

#[test]
fn publish_answers_id_and_serves_a_pipelined_request_on_the_same_connection() {
    let server = Server::with_epoch(Config::default(), "E");
    let t0 = Instant::now();
    let mut c = Client::new(&server, 1, t0);
    c.send(publish("t", "hello") + &get("/poll?topic=t"), t0);
    let rs = responses(&c.output());
    assert_eq!(rs.len(), 2, "{rs:?}");
    assert_eq!(rs[0].status, 200);
    assert_eq!(rs[0].header("Content-Type"), Some("application/json"));
    assert_eq!(rs[0].body, br#"{"id":1}"#);
    assert_eq!(rs[1].json(), json!({"epoch": "E", "messages": [{"id": 1, "data": "hello"}], "last_id": 1}));
    assert_eq!(c.conn.status(), Status::Open);
    assert!(c.conn.wants_read());
    assert_eq!(c.conn.next_deadline(), Some(t0 + server.config.idle_timeout), "idle until the next request");
    assert_eq!(c.conn.kind(), Kind::Http);

    // Keep-alive: the next request gets the next id; ids are per topic.
    c.send(publish("t", "again"), t0 + SEC);
    assert_eq!(one_response(&c.output()).body, br#"{"id":2}"#);
    c.send(publish("other", "x"), t0 + SEC);
    assert_eq!(one_response(&c.output()).body, br#"{"id":1}"#);
    assert_eq!(c.conn.status(), Status::Open);

    // `Connection: close`: answered, then closing; what follows is not served.
    c.send("GET /poll?topic=t HTTP/1.1\r\nConnection: close\r\n\r\n".to_owned() + &publish("t", "late"), t0 + 2 * SEC);
    assert_eq!(c.conn.status(), Status::Closing);
    c.conn.on_eof(t0 + 2 * SEC);
    assert_eq!(c.conn.status(), Status::Closing, "the response is not written yet");
    let r = one_response(&c.output());
    assert_eq!(r.json()["last_id"], 2);
    assert_eq!(c.conn.status(), Status::Closed);
    assert_eq!(server.hub.last_id("t"), 2);
}

#[test]
fn the_fin_is_due_once_when_everything_is_written() {
    let server = Server::with_epoch(Config::default(), "E");
    let t0 = Instant::now();
    let mut c = Client::new(&server, 1, t0);
    c.send(get("/stats"), t0);
    assert!(!c.conn.take_fin(), "an open connection sends no FIN");
    c.send("GET /poll?topic=t HTTP/1.1\r\nConnection: close\r\n\r\n", t0);
    assert_eq!(c.conn.status(), Status::Closing);
    assert!(!c.conn.take_fin(), "not while responses are unwritten");
    let mut taken = Vec::new();
    let n = c.conn.take_output(&mut taken, usize::MAX);
    assert!(!c.conn.take_fin(), "not while bytes are taken but not written");
    c.conn.written(n - 1);
    assert!(!c.conn.take_fin(), "not while one byte is unwritten");
    c.conn.written(1);
    assert!(c.conn.take_fin(), "everything written: half-close now");
    assert!(!c.conn.take_fin(), "once");
    assert_eq!(c.conn.status(), Status::Closing, "draining until the peer's end of file");
    c.conn.on_eof(t0);
    assert_eq!(c.conn.status(), Status::Closed);
}

#[test]
fn a_request_split_into_one_byte_reads() {
    let server = Server::with_epoch(Config::default(), "E");
    let t0 = Instant::now();
    let mut c = Client::new(&server, 1, t0);
    for request in [publish("t", "split body"), get("/poll?topic=t")] {
        let bytes = request.as_bytes();
        for (i, b) in bytes.iter().enumerate() {
            c.send([*b], t0 + i as u32 * MS);
            if i + 1 < bytes.len() {
                assert!(c.output().is_empty(), "answered after {} of {} bytes", i + 1, bytes.len());
                assert_eq!(c.conn.status(), Status::Open);
            }
        }
        let r = one_response(&c.output());
        assert_eq!(r.status, 200);
        if request.starts_with("POST") {
            assert_eq!(r.body, br#"{"id":1}"#);
        } else {
            assert_eq!(r.json()["messages"][0]["data"], "split body");
        }
    }
}

#[test]
fn expect_100_continue_gets_the_go_ahead_before_the_body() {
    let server = Server::with_epoch(Config::default(), "E");
    let t0 = Instant::now();
    let mut c = Client::new(&server, 1, t0);
    let head = "POST /publish?topic=t HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n";
    c.send(head, t0);
    assert_eq!(c.output(), http::CONTINUE);
    assert_eq!(http::CONTINUE, b"HTTP/1.1 100 Continue\r\n\r\n");
    c.send("01234", t0);
    assert!(c.output().is_empty(), "one 100 Continue per request");
    c.send("56789", t0);
    assert_eq!(one_response(&c.output()).body, br#"{"id":1}"#);
    assert_eq!(&server.hub.poll("t", &crate::hub::Cursor::at(0)).messages[0].json()[..], br#"{"id":1,"data":"0123456789"}"#);

    // The next request on the connection gets its own go-ahead...
    c.send(head, t0);
    assert_eq!(c.output(), http::CONTINUE);
    c.send("abcdefghij", t0);
    assert_eq!(one_response(&c.output()).body, br#"{"id":2}"#);
    // ...unless its body came with the head.
    c.send(head.to_owned() + "klmnopqrst", t0);
    let r = one_response(&c.output());
    assert_eq!((r.status, r.body), (200, br#"{"id":3}"#.to_vec()));
}

#[test]
fn error_responses_close_the_connection() {
    let server = Server::with_epoch(Config::default(), "E");
    let linger = server.config.close_linger;
    let t0 = Instant::now();
    let mut bad_utf8 = b"POST /publish?topic=t HTTP/1.1\r\nContent-Length: 2\r\n\r\n".to_vec();
    bad_utf8.extend_from_slice(&[0xff, 0xfe]);
    let cases: Vec<(u16, Vec<u8>)> = vec![
        (400, b"GARBAGE\r\n\r\n".to_vec()),
        (400, get("/poll").into_bytes()),
        (400, get("/poll?topic=no/slash").into_bytes()),
        (400, bad_utf8),
        (404, get("/nope").into_bytes()),
        (405, get("/publish?topic=t").into_bytes()),
        (405, "POST /sse?topic=t HTTP/1.1\r\n\r\n".into()),
        (411, "POST /publish?topic=t HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".into()),
        // Both framings at once (RFC 9112 §6.1): 400 with the true reason, not 411.
        (400, "POST /publish?topic=t HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\nhello".into()),
        (413, "POST /publish?topic=t HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 65537\r\n\r\n".into()),
        (431, format!("GET /stats HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(9000)).into_bytes()),
        // An unfinished head that is already too large.
        (431, format!("GET /stats HTTP/1.1\r\nX-Big: {}", "a".repeat(9000)).into_bytes()),
    ];
    let mut healthy = Client::new(&server, 1000, t0);
    for (i, (status, request)) in cases.into_iter().enumerate() {
        let now = t0 + i as u32 * SEC;
        let mut c = Client::new(&server, i, t0);
        c.send(&request, now);
        // Input after a bad request is discarded.
        c.send(publish("t", "never"), now);
        assert_eq!(c.conn.status(), Status::Closing, "case {i}");
        assert_eq!(c.conn.next_deadline(), Some(now + linger), "case {i}");
        if i % 2 == 0 {
            // The peer closes: closed once the response is written.
            c.conn.on_eof(now);
            assert_eq!(c.conn.status(), Status::Closing, "case {i}: response still unwritten");
        }
        let r = one_response(&c.output());
        assert_eq!(r.status, status, "case {i}: {r:?}");
        assert_eq!(r.header("Content-Type"), Some("text/plain; charset=utf-8"));
        assert_eq!(r.header("Connection"), Some("close"), "case {i}: the response says the connection closes");
        let reason = std::str::from_utf8(&r.body).unwrap();
        assert!(reason.ends_with('\n') && reason.lines().count() == 1, "case {i}: {reason:?}");
        if i % 2 == 0 {
            assert_eq!(c.conn.status(), Status::Closed, "case {i}");
        } else {
            // The peer never closes: the linger deadline does it.
            assert_eq!(c.conn.status(), Status::Closing);
            c.conn.on_tick(now + linger - MS);
            assert_eq!(c.conn.status(), Status::Closing, "case {i}");
            c.conn.on_tick(now + linger);
            assert_eq!(c.conn.status(), Status::Closed, "case {i}");
            assert_eq!(c.conn.next_deadline(), None);
        }
        assert!(!c.conn.wants_read());
        assert!(c.output().is_empty());
        // A bad request never takes another connection down.
        healthy.send(get("/poll?topic=t"), now);
        assert_eq!(one_response(&healthy.output()).status, 200);
    }
    assert_eq!(server.hub.last_id("t"), 0, "nothing is stored for a rejected publish");
}

#[test]
fn short_poll_returns_retained_messages_as_json() {
    let server = server_with(|c| c.retention = 3);
    let t0 = Instant::now();
    for i in 1..=5 {
        assert_eq!(publish_via(&server, "t", &format!("m{i}"), t0), i);
    }
    let mut c = Client::new(&server, 1, t0);
    c.send(get("/poll?topic=t&after=3"), t0);
    let r = one_response(&c.output());
    assert_eq!(r.body, br#"{"epoch":"E","messages":[{"id":4,"data":"m4"},{"id":5,"data":"m5"}],"last_id":5}"#);
    // From the start: ids 1 and 2 are no longer retained, and the client is told.
    c.send(get("/poll?topic=t"), t0);
    assert_eq!(
        one_response(&c.output()).json(),
        json!({
            "epoch": "E",
            "messages": [{"id": 3, "data": "m3"}, {"id": 4, "data": "m4"}, {"id": 5, "data": "m5"}],
            "last_id": 5,
            "missed": {"from": 1, "to": 2},
        })
    );
    c.send(get("/poll?topic=t&after=5"), t0);
    assert_eq!(one_response(&c.output()).json(), json!({"epoch": "E", "messages": [], "last_id": 5}));
    c.send(get("/poll?topic=nobody-published-here"), t0);
    assert_eq!(one_response(&c.output()).body, br#"{"epoch":"E","messages":[],"last_id":0}"#);
    assert_eq!(c.conn.status(), Status::Open);
    assert_eq!(c.conn.next_deadline(), Some(t0 + server.config.idle_timeout), "a short poll is never held: idle");
}

// ---------------------------------------------------------------------------
// Long polls.

#[test]
fn long_poll_is_held_until_another_connection_publishes() {
    let server = Server::with_epoch(Config::default(), "E");
    let t0 = Instant::now();
    let asked = t0 + SEC;
    let mut lp = Client::new(&server, 7, t0);
    lp.send(get("/poll?topic=t&after=0&wait=30"), asked);
    assert!(lp.output().is_empty(), "held");
    assert_eq!(lp.conn.next_deadline(), Some(asked + 30 * SEC));
    assert_eq!(lp.conn.kind(), Kind::LongPoll);
    assert_eq!(lp.conn.status(), Status::Open);
    assert_eq!(server.hub.subscriber_count("t"), 1);

    // A tick with nothing new (a spurious wake-up) changes nothing.
    lp.conn.on_tick(asked + 5 * SEC);
    assert!(lp.output().is_empty());
    assert_eq!(lp.conn.next_deadline(), Some(asked + 30 * SEC));
    assert!(lp.wakes.take().is_empty());

    // Another connection on the same server publishes.
    let mut publisher = Client::new(&server, 8, t0);
    publisher.send(publish("t", "wake up"), asked + 10 * SEC);
    assert_eq!(one_response(&publisher.output()).body, br#"{"id":1}"#);
    assert_eq!(lp.wakes.take(), vec![7], "the held poll's waker fired with its token");
    assert!(publisher.wakes.take().is_empty());
    assert!(lp.output().is_empty(), "answered by the runtime's tick, not by the publisher");

    lp.conn.on_tick(asked + 10 * SEC);
    let r = one_response(&lp.output());
    assert_eq!(r.json(), json!({"epoch": "E", "messages": [{"id": 1, "data": "wake up"}], "last_id": 1}));
    assert_eq!(lp.conn.kind(), Kind::Http);
    assert_eq!(lp.conn.status(), Status::Open);
    assert_eq!(lp.conn.next_deadline(), Some(asked + 10 * SEC + server.config.idle_timeout), "idle from the answer");
    assert_eq!(server.hub.subscriber_count("t"), 0);

    // The connection is kept alive for the next poll.
    lp.send(get("/poll?topic=t&after=1"), asked + 11 * SEC);
    assert_eq!(one_response(&lp.output()).json()["messages"], json!([]));
}

#[test]
fn long_poll_is_not_answered_by_a_message_it_already_has() {
    let server = Server::with_epoch(Config::default(), "E");
    let t0 = Instant::now();
    let mut lp = Client::new(&server, 3, t0);
    lp.send(get("/poll?topic=t&after=1&wait=10"), t0);
    assert!(lp.output().is_empty());
    publish_via(&server, "t", "one", t0 + SEC);
    assert_eq!(lp.wakes.take(), vec![3]);
    lp.conn.on_tick(t0 + SEC);
    assert!(lp.output().is_empty(), "id 1 is not after 1: still held");
    assert_eq!(lp.conn.kind(), Kind::LongPoll);
    publish_via(&server, "t", "two", t0 + 2 * SEC);
    assert_eq!(lp.wakes.take(), vec![3]);
    lp.conn.on_tick(t0 + 2 * SEC);
    assert_eq!(one_response(&lp.output()).json()["messages"], json!([{"id": 2, "data": "two"}]));
}

#[test]
fn long_poll_times_out_with_no_messages_then_serves_what_was_pipelined() {
    let server = Server::with_epoch(Config::default(), "E");
    let t0 = Instant::now();
    publish_via(&server, "t", "a", t0);
    publish_via(&server, "t", "b", t0);
    let mut lp = Client::new(&server, 1, t0);
    lp.send(get("/poll?topic=t&after=2&wait=5") + &get("/stats"), t0);
    assert!(lp.output().is_empty(), "the stats request waits behind the poll");
    let deadline = t0 + 5 * SEC;
    assert_eq!(lp.conn.next_deadline(), Some(deadline));
    lp.conn.on_tick(deadline - MS);
    assert!(lp.output().is_empty());
    lp.conn.on_tick(deadline);
    let rs = responses(&lp.output());
    assert_eq!(rs.len(), 2, "{rs:?}");
    assert_eq!(rs[0].body, br#"{"epoch":"E","messages":[],"last_id":2}"#);
    assert_eq!(rs[1].json()["connections"]["long_poll"], 0);
    assert_eq!(lp.conn.status(), Status::Open);
    assert_eq!(lp.conn.next_deadline(), Some(deadline + server.config.idle_timeout));
    assert_eq!(server.hub.subscriber_count("t"), 0);
}

#[test]
fn input_behind_a_held_long_poll_is_bounded() {
    let server = server_with(|c| c.read_pause = 4096);
    let t0 = Instant::now();
    let mut lp = Client::new(&server, 1, t0);
    lp.send(get("/poll?topic=t&wait=5"), t0);
    let request = get("/poll?topic=other");
    let mut pipelined = 0;
    while lp.conn.wants_read() {
        assert!(pipelined < 1000, "a client pipelining behind a held poll is never paused");
        lp.send(&request, t0);
        pipelined += 1;
    }
    assert!(pipelined * request.len() >= 4096);
    assert!(lp.output().is_empty());
    // At the deadline the poll is answered, then everything pipelined: up
    // to `read_pause` bytes of answers at a time, the next ones once the
    // client has read those (`written` wakes the connection).
    lp.conn.on_tick(t0 + 5 * SEC);
    let mut rs = responses(&lp.output());
    while lp.wakes.take() == [1] {
        lp.conn.on_tick(t0 + 5 * SEC);
        rs.extend(responses(&lp.output()));
    }
    assert_eq!(rs.len(), 1 + pipelined);
    assert!(rs.iter().all(|r| r.status == 200));
    assert!(lp.conn.wants_read());
}

// ---------------------------------------------------------------------------
// Server-Sent Events.

#[test]
fn sse_streams_events_and_keepalives() {
    let server = Server::with_epoch(Config::default(), "E");
    let keepalive = server.config.keepalive;
    let t0 = Instant::now();
    let (mut sse, rest) = open_sse(&server, &get("/sse?topic=t"), 3, t0);
    assert_eq!(rest, "", "no replay without Last-Event-ID");
    assert_eq!(sse.conn.kind(), Kind::Sse);
    assert_eq!(sse.conn.next_deadline(), Some(t0 + keepalive));
    assert_eq!(server.hub.subscriber_count("t"), 1);

    publish_via(&server, "t", "line one\nline two", t0 + SEC);
    assert_eq!(sse.wakes.take(), vec![3]);
    assert_eq!(sse.text(), "id: E-1\ndata: line one\ndata: line two\n\n");
    // Anything the client sends on an event stream is ignored.
    sse.send("GET / HTTP/1.1\r\n\r\n", t0 + SEC);
    assert!(sse.output().is_empty());
    assert_eq!(sse.conn.status(), Status::Open);

    // A quiet stream gets a comment at the deadline, not before.
    sse.conn.on_tick(t0 + keepalive - MS);
    assert!(sse.output().is_empty());
    sse.conn.on_tick(t0 + keepalive);
    assert_eq!(sse.text(), ": keep-alive\n\n");
    assert_eq!(sse.conn.next_deadline(), Some(t0 + 2 * keepalive));

    // Output waiting at the deadline: no comment on top of it.
    publish_via(&server, "t", "two", t0 + keepalive + SEC);
    sse.conn.on_tick(t0 + 2 * keepalive);
    assert_eq!(sse.text(), "id: E-2\ndata: two\n\n");
    assert_eq!(sse.conn.next_deadline(), Some(t0 + 3 * keepalive));

    // Output taken but not yet written counts as waiting too.
    publish_via(&server, "t", "three", t0 + 2 * keepalive + SEC);
    let mut out = Vec::new();
    let n = sse.conn.take_output(&mut out, usize::MAX);
    assert_eq!(out.concat(), b"id: E-3\ndata: three\n\n");
    sse.conn.on_tick(t0 + 3 * keepalive);
    assert!(sse.output().is_empty());
    sse.conn.written(n);
    sse.conn.on_tick(t0 + 4 * keepalive);
    assert_eq!(sse.text(), ": keep-alive\n\n");

    sse.conn.on_eof(t0 + 4 * keepalive);
    assert_eq!(sse.conn.status(), Status::Closed);
    assert_eq!(server.hub.subscriber_count("t"), 0);
}

#[test]
fn sse_replays_after_last_event_id_and_marks_what_was_missed() {
    let server = server_with(|c| c.retention = 3);
    let t0 = Instant::now();
    for i in 1..=5 {
        publish_via(&server, "t", &format!("m{i}"), t0);
    }
    let request = "GET /sse?topic=t HTTP/1.1\r\nLast-Event-ID: 1\r\n\r\n";
    let (mut sse, replay) = open_sse(&server, request, 1, t0);
    assert_eq!(
        replay,
        "event: missed\ndata: {\"from\":2,\"to\":2}\n\nid: E-3\ndata: m3\n\nid: E-4\ndata: m4\n\nid: E-5\ndata: m5\n\n"
    );
    publish_via(&server, "t", "m6", t0 + SEC);
    assert_eq!(sse.text(), "id: E-6\ndata: m6\n\n", "then live");

    // The query parameter works too; nothing missed, no marker.
    let (_, replay) = open_sse(&server, &get("/sse?topic=t&lastEventId=5"), 2, t0 + SEC);
    assert_eq!(replay, "id: E-6\ndata: m6\n\n");
}

// ---------------------------------------------------------------------------
// /ws.

#[test]
fn ws_publish_op_reaches_every_subscriber() {
    let server = Server::with_epoch(Config::default(), "E");
    let t0 = Instant::now();
    let (mut a, replay) = open_ws(&server, "/ws?topic=t", 1, t0);
    assert!(replay.is_empty());
    let (mut b, _) = open_ws(&server, "/ws?topic=t", 2, t0);
    let (mut elsewhere, _) = open_ws(&server, "/ws?topic=u", 3, t0);
    assert_eq!(a.conn.kind(), Kind::Ws);
    assert_eq!(a.conn.next_deadline(), Some(t0 + server.config.ping_interval));
    assert_eq!(server.hub.subscriber_count("t"), 2);

    a.send(text_frame(r#"{"op":"publish","data":"hi \"there\""}"#), t0 + SEC);
    assert_eq!(b.wakes.take(), vec![2]);
    assert_eq!(a.wakes.take(), vec![1], "the publisher is a subscriber too");
    for c in [&mut a, &mut b] {
        let frames = c.frames();
        assert_eq!(frames.len(), 1, "{frames:?}");
        assert_eq!(frames[0].json(), json!({"id": 1, "epoch": "E", "data": "hi \"there\""}));
        assert_eq!(frames[0].payload, br#"{"id":1,"epoch":"E","data":"hi \"there\""}"#, "keys in contract order");
    }
    assert!(elsewhere.output().is_empty());
    assert!(elsewhere.wakes.take().is_empty());

    // Ids are shared with HTTP publishes.
    assert_eq!(publish_via(&server, "t", "via http", t0 + 2 * SEC), 2);
    for c in [&mut a, &mut b] {
        assert_eq!(c.frames()[0].json(), json!({"id": 2, "epoch": "E", "data": "via http"}));
    }
    assert_eq!(a.conn.status(), Status::Open);
}

#[test]
fn ws_after_replays_with_a_missed_marker() {
    let server = server_with(|c| c.retention = 3);
    let t0 = Instant::now();
    for i in 1..=5 {
        publish_via(&server, "t", &format!("m{i}"), t0);
    }
    let (mut ws, replay) = open_ws(&server, "/ws?topic=t&after=1", 1, t0);
    let replay: Vec<Value> = replay.iter().map(Frame::json).collect();
    assert_eq!(
        replay,
        vec![
            json!({"missed": {"from": 2, "to": 2}}),
            json!({"id": 3, "epoch": "E", "data": "m3"}),
            json!({"id": 4, "epoch": "E", "data": "m4"}),
            json!({"id": 5, "epoch": "E", "data": "m5"}),
        ]
    );
    publish_via(&server, "t", "m6", t0);
    assert_eq!(ws.frames()[0].json(), json!({"id": 6, "epoch": "E", "data": "m6"}));
}

#[test]
fn ws_bad_requests_get_an_error_frame_and_stay_open() {
    let server = server_with(|c| c.max_message = 16);
    let t0 = Instant::now();
    let (mut ws, _) = open_ws(&server, "/ws?topic=t", 1, t0);
    let bad = [
        text_frame("not json"),
        text_frame(r#"{"op":"subscribe","data":"x"}"#),
        text_frame(r#"{"op":"publish"}"#),
        text_frame(r#"{"op":"publish","data":5}"#),
        text_frame(r#"{"op":"publish","data":"seventeen bytes!!"}"#),
        client_frame(0x82, b"binary"),
    ];
    for frame in bad {
        ws.send(&frame, t0);
        let frames = ws.frames();
        assert_eq!(frames.len(), 1);
        let v = frames[0].json();
        assert!(v["error"].is_string(), "{v}");
        assert_eq!(ws.conn.status(), Status::Open);
    }
    assert_eq!(server.hub.last_id("t"), 0, "nothing was published");
    ws.send(text_frame(r#"{"op":"publish","data":"sixteen bytes!!!"}"#), t0);
    assert_eq!(ws.frames()[0].json(), json!({"id": 1, "epoch": "E", "data": "sixteen bytes!!!"}));
}

#[test]
fn ws_ping_gets_pong_and_client_close_is_echoed() {
    let server = Server::with_epoch(Config::default(), "E");
    let t0 = Instant::now();
    let (mut ws, _) = open_ws(&server, "/ws?topic=t", 1, t0);
    ws.send(client_frame(0x89, b"abc"), t0);
    assert_eq!(ws.frames(), vec![Frame { first: 0x8A, payload: b"abc".to_vec() }]);

    // A close, and a publish behind it that must be ignored.
    let mut input = close_frame(1000, "bye");
    input.extend(text_frame(r#"{"op":"publish","data":"too late"}"#));
    ws.send(&input, t0 + SEC);
    let frames = ws.frames();
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0].close_code(), 1000);
    assert_eq!(ws.conn.status(), Status::Closing);
    assert_eq!(ws.conn.next_deadline(), Some(t0 + SEC + server.config.close_linger));
    assert_eq!(server.hub.last_id("t"), 0);
    assert_eq!(server.hub.subscriber_count("t"), 0, "a closing socket leaves its topic");
    publish_via(&server, "t", "after close", t0 + SEC);
    assert!(ws.output().is_empty(), "nothing follows a close frame");
    ws.conn.on_eof(t0 + 2 * SEC);
    assert_eq!(ws.conn.status(), Status::Closed);

    // A close without a code is answered without one, even when the client
    // half-closes right after it: the echo is still written.
    let (mut ws, _) = open_ws(&server, "/ws?topic=t", 2, t0);
    ws.send(client_frame(0x88, b""), t0);
    ws.conn.on_eof(t0);
    assert_eq!(ws.conn.status(), Status::Closing);
    assert_eq!(ws.frames(), vec![Frame { first: 0x88, payload: vec![] }]);
    assert_eq!(ws.conn.status(), Status::Closed);
}

#[test]
fn ws_server_pings_and_closes_a_peer_that_stops_answering() {
    let server = server_with(|c| c.ping_interval = 10 * SEC);
    let t0 = Instant::now();
    let (mut ws, _) = open_ws(&server, "/ws?topic=t", 1, t0);
    let ping = Frame { first: 0x89, payload: b"rtlab".to_vec() };
    assert_eq!(ws.conn.next_deadline(), Some(t0 + 10 * SEC));
    ws.conn.on_tick(t0 + 10 * SEC - MS);
    assert!(ws.output().is_empty());
    ws.conn.on_tick(t0 + 10 * SEC);
    assert_eq!(ws.frames(), vec![ping.clone()]);
    ws.send(client_frame(0x8A, b"rtlab"), t0 + 12 * SEC);
    assert!(ws.output().is_empty(), "a pong needs no answer");
    ws.conn.on_tick(t0 + 20 * SEC);
    assert_eq!(ws.frames(), vec![ping.clone()]);
    assert_eq!(ws.conn.next_deadline(), Some(t0 + 30 * SEC));
    // No pong this time.
    ws.conn.on_tick(t0 + 30 * SEC);
    assert_eq!(ws.frames(), vec![ping]);
    // Two intervals after the last pong (12 s): dead.
    assert_eq!(ws.conn.next_deadline(), Some(t0 + 32 * SEC));
    ws.conn.on_tick(t0 + 32 * SEC - MS);
    assert!(ws.output().is_empty());
    assert_eq!(ws.conn.status(), Status::Open);
    ws.conn.on_tick(t0 + 32 * SEC);
    let frames = ws.frames();
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].close_code(), 1008);
    assert_eq!(ws.conn.status(), Status::Closing);
    let linger = t0 + 32 * SEC + server.config.close_linger;
    assert_eq!(ws.conn.next_deadline(), Some(linger));
    ws.conn.on_tick(linger);
    assert_eq!(ws.conn.status(), Status::Closed);
}

// ---------------------------------------------------------------------------
// /echo.

#[test]
fn echo_returns_text_and_binary_messages() {
    let server = Server::with_epoch(Config::default(), "E");
    let t0 = Instant::now();
    let (mut echo, _) = open_ws(&server, "/echo", 1, t0);
    assert_eq!(echo.conn.kind(), Kind::Echo);
    assert_eq!(echo.conn.next_deadline(), None);

    echo.send(client_frame(0x81, "héllo".as_bytes()), t0);
    assert_eq!(echo.frames(), vec![Frame { first: 0x81, payload: "héllo".as_bytes().to_vec() }]);
    echo.send(client_frame(0x82, &[0, 1, 255]), t0);
    assert_eq!(echo.frames(), vec![Frame { first: 0x82, payload: vec![0, 1, 255] }]);
    let big: Vec<u8> = (0..300).map(|i| i as u8).collect();
    echo.send(client_frame(0x82, &big), t0);
    assert_eq!(echo.frames(), vec![Frame { first: 0x82, payload: big }]);

    // Fragments with a ping between them, delivered one byte at a time.
    let mut input = client_frame(0x01, b"frag");
    input.extend(client_frame(0x89, b"p"));
    input.extend(client_frame(0x80, b"ment"));
    for b in &input {
        echo.send([*b], t0);
    }
    assert_eq!(
        echo.frames(),
        vec![Frame { first: 0x8A, payload: b"p".to_vec() }, Frame { first: 0x81, payload: b"fragment".to_vec() }]
    );
    assert_eq!(echo.conn.status(), Status::Open);
}

#[test]
fn echo_frames_sent_with_the_handshake_are_answered() {
    let server = Server::with_epoch(Config::default(), "E");
    let t0 = Instant::now();
    let mut c = Client::new(&server, 1, t0);
    let mut input = upgrade("/echo").into_bytes();
    input.extend(text_frame("right behind"));
    c.send(&input, t0);
    let out = c.output();
    let (head, rest) = parse_response(&out);
    assert_eq!(head.status, 101);
    assert_eq!(server_frames(rest), vec![Frame { first: 0x81, payload: b"right behind".to_vec() }]);
}

#[test]
fn echo_protocol_violations_close_with_their_codes() {
    let server = server_with(|c| c.max_echo_message = 16);
    let t0 = Instant::now();
    let cases: [(u16, Vec<u8>); 4] = [
        (1002, vec![0x81, 0x01, b'a']),          // unmasked
        (1002, client_frame(0x80, b"orphan")),   // continuation of nothing
        (1007, client_frame(0x81, &[b'a', 0xff])), // not UTF-8
        (1009, client_frame(0x82, &[0; 17])),    // over max_echo_message
    ];
    for (code, bad) in cases {
        let (mut echo, _) = open_ws(&server, "/echo", 1, t0);
        // A good frame first: it is echoed before the close.
        let mut input = text_frame("ok");
        input.extend(&bad);
        echo.send(&input, t0);
        let frames = echo.frames();
        assert_eq!(frames.len(), 2, "{frames:?}");
        assert_eq!(frames[0].payload, b"ok");
        assert_eq!(frames[1].close_code(), code);
        assert_eq!(echo.conn.status(), Status::Closing);
        echo.send(text_frame("ignored"), t0);
        assert!(echo.output().is_empty());
    }
}

// ---------------------------------------------------------------------------
// Backpressure.

#[test]
fn slow_consumers_are_disconnected() {
    let server = server_with(|c| {
        c.outbox_budget = 1000;
        c.policy = Policy::Disconnect;
    });
    let t0 = Instant::now();
    let (mut ws, _) = open_ws(&server, "/ws?topic=t", 5, t0);
    let (mut sse, _) = open_sse(&server, &get("/sse?topic=t"), 6, t0);
    let (mut fast, _) = open_ws(&server, "/ws?topic=t", 7, t0);
    let mut publisher = Client::new(&server, 9, t0);
    let message = "x".repeat(100);
    let mut fast_got = 0;
    for i in 1..=20 {
        publisher.send(publish("t", &message), t0 + i * MS);
        assert_eq!(one_response(&publisher.output()).status, 200);
        fast_got += fast.frames().len();
    }
    // The two that never wrote are cut off and woken.
    assert_eq!(fast_got, 20);
    assert_eq!(server.hub.subscriber_count("t"), 1);
    assert!(ws.wakes.take().contains(&5));
    assert!(sse.wakes.take().contains(&6));
    assert_eq!(ws.conn.status(), Status::Open, "until the runtime's tick");

    let now = t0 + SEC;
    ws.conn.on_tick(now);
    assert_eq!(ws.conn.status(), Status::Closing);
    let frames = ws.frames();
    assert_eq!(frames.len(), 1, "queued messages are dropped: {frames:?}");
    assert_eq!(frames[0].close_code(), 1008);
    assert_eq!(&frames[0].payload[2..], b"slow consumer");

    sse.conn.on_tick(now);
    assert_eq!(sse.conn.status(), Status::Closing);
    assert!(sse.output().is_empty());

    assert_eq!(fast.conn.status(), Status::Open);
    let mut asker = Client::new(&server, 10, t0);
    asker.send(get("/stats"), now);
    let stats = one_response(&asker.output()).json();
    assert_eq!(stats["slow_disconnects"], 2);
    assert_eq!(stats["published"], 20);
    ws.conn.on_eof(now);
    assert_eq!(ws.conn.status(), Status::Closed);
}

#[test]
fn drop_oldest_tells_the_subscriber_what_it_missed() {
    let server = server_with(|c| {
        c.outbox_budget = 500;
        c.policy = Policy::DropOldest;
    });
    let t0 = Instant::now();
    let (mut ws, _) = open_ws(&server, "/ws?topic=t", 1, t0);
    let (mut sse, _) = open_sse(&server, &get("/sse?topic=t"), 2, t0);
    for i in 1..=20 {
        publish_via(&server, "t", &format!("message {i:02} {}", "x".repeat(40)), t0);
    }
    ws.conn.on_tick(t0 + SEC);
    sse.conn.on_tick(t0 + SEC);
    assert_eq!(ws.conn.status(), Status::Open);
    assert_eq!(sse.conn.status(), Status::Open);

    let frames: Vec<Value> = ws.frames().iter().map(Frame::json).collect();
    let to = frames[0]["missed"]["to"].as_u64().expect("a missed marker first");
    assert_eq!(frames[0]["missed"]["from"], 1);
    assert!((1..20).contains(&to));
    let ids: Vec<u64> = frames[1..].iter().map(|f| f["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, (to + 1..=20).collect::<Vec<_>>(), "the newest messages, in order");

    let text = sse.text();
    let first = text.split("\n\n").next().unwrap();
    assert!(first.starts_with("event: missed\ndata: {\"from\":1,\"to\":"), "{text}");
    assert!(text.ends_with(&format!("id: E-20\ndata: message 20 {}\n\n", "x".repeat(40))));

    // Caught up: the next message comes alone.
    publish_via(&server, "t", "fresh", t0 + 2 * SEC);
    assert_eq!(ws.frames().iter().map(Frame::json).collect::<Vec<_>>(), vec![json!({"id": 21, "epoch": "E", "data": "fresh"})]);
}

#[test]
fn reading_pauses_while_output_waits() {
    let server = server_with(|c| c.read_pause = 1000);
    let t0 = Instant::now();
    let mut c = Client::new(&server, 1, t0);
    let mut sent = 0;
    while c.conn.wants_read() {
        assert!(sent < 100, "never paused");
        c.send(get("/poll?topic=t"), t0);
        sent += 1;
    }
    assert!(sent > 1);
    let mut out = Vec::new();
    let n = c.conn.take_output(&mut out, usize::MAX);
    assert!(n >= 1000);
    assert!(!c.conn.wants_read(), "bytes in flight still count");
    c.conn.written(n);
    assert!(c.conn.wants_read());
    assert_eq!(responses(&out.concat()).len(), sent);

    // An echo client that never reads is paused too.
    let (mut echo, _) = open_ws(&server, "/echo", 2, t0);
    let frame = client_frame(0x82, &[7; 100]);
    let mut sent = 0;
    while echo.conn.wants_read() {
        assert!(sent < 100, "never paused");
        echo.send(&frame, t0);
        sent += 1;
    }
    assert_eq!(echo.frames().len(), sent);
    assert!(echo.conn.wants_read());
    echo.conn.on_eof(t0);
    assert!(!echo.conn.wants_read(), "nothing to read after end of file");
}

/// Found by fuzzing (`labs/core/fuzz`, target `connection`, seed
/// `small-pipelined-index`): `read_pause` was checked per *read*, and every
/// request in one read was answered — a read of tiny pipelined requests
/// left megabytes of responses pending. Now serving stops once `read_pause`
/// bytes are pending, and resumes, woken by `written`, when the client has
/// read them; meanwhile nothing is read (an end of file would drop them).
#[test]
fn pipelined_requests_wait_while_output_is_pending() {
    let server = server_with(|c| c.read_pause = 4096);
    let page = crate::page::DEMO_PAGE.len();
    let t0 = Instant::now();
    let mut c = Client::new(&server, 3, t0);
    let count = 200;
    c.send(b"GET / HTTP/1.1\n\n".repeat(count), t0);
    let mut out = Vec::new();
    let n = c.conn.take_output(&mut out, usize::MAX);
    assert!(n < 4096 + page + 512, "one read left {n} bytes pending (read_pause 4096)");
    assert!(!c.conn.wants_read(), "requests wait: nothing more is read");
    assert!(c.wakes.take().is_empty());
    // Ten seconds without reading: the waiting requests are not the
    // client's to finish, no 408.
    c.conn.on_tick(t0 + 10 * SEC);
    assert_eq!(c.conn.status(), Status::Open);
    c.conn.written(n);
    assert_eq!(c.wakes.take(), vec![3], "drained: the connection wakes itself");
    assert!(!c.conn.wants_read(), "still not reading until they are served");
    let mut answered = responses(&out.concat()).len();
    let mut now = t0 + 10 * SEC;
    while answered < count {
        now += MS;
        c.conn.on_tick(now);
        let mut out = Vec::new();
        let n = c.conn.take_output(&mut out, usize::MAX);
        assert!(n > 0 && n < 4096 + page + 512, "{n} bytes after {answered} responses");
        answered += responses(&out.concat()).iter().inspect(|r| assert_eq!(r.status, 200)).count();
        c.conn.written(n);
    }
    assert_eq!(answered, count);
    assert!(c.conn.wants_read(), "everything answered: reading again");
    assert_eq!(c.conn.status(), Status::Open);

    // A client that pipelines and never reads is closed, silently, once
    // idle for `idle_timeout` since the last request served.
    let mut stalled = Client::new(&server, 4, t0);
    stalled.send(b"GET / HTTP/1.1\n\n".repeat(count), t0);
    let mut out = Vec::new();
    stalled.conn.take_output(&mut out, usize::MAX);
    assert_eq!(stalled.conn.next_deadline(), Some(t0 + server.config.idle_timeout));
    stalled.conn.on_tick(t0 + server.config.idle_timeout);
    assert_eq!(stalled.conn.status(), Status::Closing);
    let mut more = Vec::new();
    assert_eq!(stalled.conn.take_output(&mut more, usize::MAX), 0, "no answer to the rest");
}

// ---------------------------------------------------------------------------
// Shutdown and stats.

#[test]
fn shutdown_says_goodbye_per_transport() {
    let server = Server::with_epoch(Config::default(), "E");
    let t0 = Instant::now();
    let (mut ws, _) = open_ws(&server, "/ws?topic=t", 1, t0);
    let (mut echo, _) = open_ws(&server, "/echo", 2, t0);
    let (mut sse, _) = open_sse(&server, &get("/sse?topic=t"), 3, t0);
    let mut lp = Client::new(&server, 4, t0);
    lp.send(get("/poll?topic=t&wait=60"), t0);
    assert!(lp.output().is_empty());
    let mut idle = Client::new(&server, 5, t0);
    assert_eq!(server.hub.subscriber_count("t"), 3);

    let now = t0 + 5 * SEC;
    for c in [&mut ws, &mut echo, &mut sse, &mut lp, &mut idle] {
        c.conn.shutdown(now);
        assert_eq!(c.conn.status(), Status::Closing);
        assert_eq!(c.conn.next_deadline(), Some(now + server.config.close_linger));
    }
    for c in [&mut ws, &mut echo] {
        let frames = c.frames();
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].close_code(), 1001);
    }
    assert_eq!(one_response(&lp.output()).body, br#"{"epoch":"E","messages":[],"last_id":0}"#);
    assert!(sse.output().is_empty());
    assert!(idle.output().is_empty());
    assert_eq!(server.hub.subscriber_count("t"), 0);

    // Nothing more after that: no second goodbye, no messages — and a
    // publish now is refused, since nobody would get it.
    let mut late = Client::new(&server, 6, now);
    late.send(publish("t", "too late"), now);
    let refused = one_response(&late.output());
    assert_eq!(refused.status, 503, "the server is stopping");
    assert_eq!(server.hub.last_id("t"), 0);
    for c in [&mut ws, &mut echo, &mut sse, &mut lp, &mut idle] {
        c.conn.shutdown(now);
        assert!(c.output().is_empty());
        c.conn.on_tick(now + server.config.close_linger);
        assert_eq!(c.conn.status(), Status::Closed);
    }
}

#[test]
fn stats_count_open_connections_and_drop_unsubscribes() {
    let server = Server::with_epoch(Config::default(), "E");
    let t0 = Instant::now();
    let stats = |server: &Arc<Server>| {
        let mut asker = Client::new(server, 99, t0);
        asker.send(get("/stats"), t0);
        one_response(&asker.output()).json()
    };
    {
        let _idle = Client::new(&server, 1, t0);
        let (_ws, _) = open_ws(&server, "/ws?topic=t", 2, t0);
        let (_echo, _) = open_ws(&server, "/echo", 3, t0);
        let (_sse, _) = open_sse(&server, &get("/sse?topic=t"), 4, t0);
        let mut lp = Client::new(&server, 5, t0);
        lp.send(get("/poll?topic=t&wait=60"), t0);
        assert_eq!(server.hub.subscriber_count("t"), 3);
        let s = stats(&server);
        assert_eq!(
            s["connections"],
            json!({"http": 2, "long_poll": 1, "sse": 1, "ws": 1, "echo": 1, "total": 6}),
            "the asker counts as http"
        );
        publish_via(&server, "t", "one", t0);
        let s = stats(&server);
        assert_eq!(s["published"], 1);
        assert_eq!(s["delivered"], 2, "queued to the ws and sse subscribers");
        // A closed connection counts until the runtime drops it.
        let mut closed = Client::new(&server, 6, t0);
        closed.conn.on_eof(t0);
        assert_eq!(closed.conn.status(), Status::Closed);
        assert_eq!(server.stats.open_count(Kind::Http), 2, "idle and closed");
    }
    assert_eq!(server.hub.subscriber_count("t"), 0, "dropping a Connection unsubscribes it");
    for kind in [Kind::Http, Kind::LongPoll, Kind::Sse, Kind::Ws, Kind::Echo] {
        assert_eq!(server.stats.open_count(kind), 0, "{kind:?}");
    }
    assert_eq!(
        stats(&server)["connections"],
        json!({"http": 1, "long_poll": 0, "sse": 0, "ws": 0, "echo": 0, "total": 1})
    );
    // Publishing to a topic whose subscribers are gone queues nothing.
    publish_via(&server, "t", "two", t0);
    assert_eq!(stats(&server)["delivered"], 2);
}

// ---------------------------------------------------------------------------
// Limits: request and idle time, topics, stopping.

/// A request trickled a byte at a time (slowloris) gets `408` and is closed
/// `request_timeout` after its first byte: the bytes that keep coming do not
/// move the deadline. The idle time before it does not count against it.
#[test]
fn a_request_that_takes_too_long_gets_408_and_closes() {
    let server = server_with(|c| c.request_timeout = 10 * SEC);
    let t0 = Instant::now();
    let mut c = Client::new(&server, 1, t0);
    let started = t0 + 20 * SEC; // Idle for 20 s first (below the idle timeout).
    let head = b"GET /stats HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    for (i, byte) in head.iter().enumerate() {
        let now = started + i as u32 * 200 * MS;
        if now >= started + 10 * SEC {
            break;
        }
        c.send([*byte], now);
        assert_eq!(c.conn.next_deadline(), Some(started + 10 * SEC), "byte {i}: the deadline does not move");
        c.conn.on_tick(now);
        assert_eq!(c.conn.status(), Status::Open, "byte {i}");
    }
    assert!(c.output().is_empty());
    c.conn.on_tick(started + 10 * SEC - MS);
    assert_eq!(c.conn.status(), Status::Open);
    c.conn.on_tick(started + 10 * SEC);
    let r = one_response(&c.output());
    assert_eq!(r.status, 408, "{r:?}");
    assert_eq!(r.header("Connection"), Some("close"));
    assert!(std::str::from_utf8(&r.body).unwrap().contains("10 s after its first byte"), "{r:?}");
    assert_eq!(c.conn.status(), Status::Closing);
    assert!(server.stats.to_json().contains(r#""timed_out":{"idle":0,"request":1}"#), "{}", server.stats.to_json());
}

/// A publish whose head arrived but whose body trickles is held to the
/// same deadline (slow POST).
#[test]
fn a_body_that_takes_too_long_gets_408_and_stores_nothing() {
    let server = server_with(|c| c.request_timeout = 5 * SEC);
    let t0 = Instant::now();
    let mut c = Client::new(&server, 1, t0);
    c.send("POST /publish?topic=t HTTP/1.1\r\nContent-Length: 100\r\n\r\nsome", t0);
    for i in 1..25 {
        c.send("x", t0 + i * 200 * MS);
    }
    assert_eq!(c.conn.next_deadline(), Some(t0 + 5 * SEC));
    c.conn.on_tick(t0 + 5 * SEC);
    assert_eq!(one_response(&c.output()).status, 408);
    assert_eq!(server.hub.last_id("t"), 0);
}

/// A connection with no request in progress is closed after the idle
/// timeout, without a response: before its first request, and between two
/// keep-alive requests (counted from the end of the last one).
#[test]
fn an_idle_connection_is_closed_without_a_word() {
    let server = server_with(|c| c.idle_timeout = 30 * SEC);
    let t0 = Instant::now();
    let mut silent = Client::new(&server, 1, t0);
    assert_eq!(silent.conn.next_deadline(), Some(t0 + 30 * SEC));
    silent.conn.on_tick(t0 + 30 * SEC - MS);
    assert_eq!(silent.conn.status(), Status::Open);
    silent.conn.on_tick(t0 + 30 * SEC);
    assert_eq!(silent.conn.status(), Status::Closing);
    assert!(silent.output().is_empty(), "no request, no response");
    assert!(silent.conn.take_fin(), "just the FIN");

    let mut kept = Client::new(&server, 2, t0);
    kept.send(get("/stats"), t0 + 20 * SEC);
    assert_eq!(one_response(&kept.output()).status, 200);
    kept.conn.on_tick(t0 + 40 * SEC);
    assert_eq!(kept.conn.status(), Status::Open, "idle for 20 s only since its request");
    kept.conn.on_tick(t0 + 50 * SEC);
    assert_eq!(kept.conn.status(), Status::Closing);
    assert!(kept.output().is_empty());
    assert!(server.stats.to_json().contains(r#""timed_out":{"idle":2,"request":0}"#), "{}", server.stats.to_json());
}

/// Event streams, WebSockets and held long polls are not idle: their own
/// deadlines (keep-alive, ping, the poll's wait) are the only ones.
#[test]
fn streams_are_not_idle() {
    let server = server_with(|c| c.idle_timeout = SEC);
    let t0 = Instant::now();
    let (mut sse, _) = open_sse(&server, &get("/sse?topic=t"), 1, t0);
    let (mut ws, _) = open_ws(&server, "/ws?topic=t", 2, t0);
    let mut lp = Client::new(&server, 3, t0);
    lp.send(get("/poll?topic=t&wait=30"), t0);
    for c in [&mut sse, &mut ws, &mut lp] {
        c.conn.on_tick(t0 + 10 * SEC);
        assert_eq!(c.conn.status(), Status::Open);
    }
}

/// Past `max_topics`, a request that would create a topic gets `503` —
/// publish, SSE, WebSocket and long poll alike — while existing topics are
/// served; once a topic has been idle for the ttl, it makes room.
#[test]
fn a_topic_beyond_the_limit_is_refused_until_one_is_idle() {
    let server = server_with(|c| {
        c.max_topics = 2;
        c.topic_ttl = 60 * SEC;
    });
    let t0 = Instant::now();
    publish_via(&server, "a", "1", t0);
    let (mut sub, _) = open_sse(&server, &get("/sse?topic=b"), 1, t0);
    let ws_upgrade = upgrade("/ws?topic=c");
    for request in [publish("c", "x"), get("/sse?topic=c"), ws_upgrade, get("/poll?topic=c&wait=5")] {
        let mut c = Client::new(&server, 2, t0);
        c.send(&request, t0);
        let r = one_response(&c.output());
        assert_eq!(r.status, 503, "{request:?}: {r:?}");
        assert_eq!(r.header("Retry-After"), Some("1"));
        assert!(std::str::from_utf8(&r.body).unwrap().contains("too many topics"), "{r:?}");
        assert_eq!(c.conn.status(), Status::Closing);
    }
    // A short poll of an unknown topic creates nothing, so it is answered.
    let mut poller = Client::new(&server, 3, t0);
    poller.send(get("/poll?topic=c"), t0);
    assert_eq!(one_response(&poller.output()).status, 200);
    // Existing topics are served; the subscriber gets its messages.
    assert_eq!(publish_via(&server, "a", "2", t0 + SEC), 2);
    assert_eq!(publish_via(&server, "b", "1", t0 + SEC), 1);
    assert!(sub.text().starts_with("id: E-1\n"));
    // 61 s after a's last message, a is idle and makes room; b is held by
    // its subscriber and stays.
    assert_eq!(publish_via(&server, "c", "x", t0 + 62 * SEC), 1);
    assert_eq!(server.hub.last_id("a"), 0, "a was evicted");
    assert_eq!(publish_via(&server, "b", "2", t0 + 62 * SEC), 2, "b kept its ids");
    let stats: Value = serde_json::from_str(&server.stats.to_json()).unwrap();
    assert_eq!(stats["topics"], 2);
    assert_eq!(stats["evicted_topics"], 1);
    assert_eq!(stats["refused"]["topics"], 4);
    assert_eq!(stats["limits"]["max_topics"], 2);
}

/// A `/ws` publish while the server is stopping is refused with an error
/// frame, and nothing is stored.
#[test]
fn a_ws_publish_while_stopping_is_refused() {
    let server = Server::with_epoch(Config::default(), "E");
    let t0 = Instant::now();
    let (mut ws, _) = open_ws(&server, "/ws?topic=t", 1, t0);
    server.begin_stop();
    ws.send(text_frame(r#"{"op":"publish","data":"late"}"#), t0);
    let frames = ws.frames();
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].json(), json!({"error": "service unavailable: the server is shutting down"}));
    assert_eq!(server.hub.last_id("t"), 0);
}

/// The doors are shut with the **default** options, not only with the small
/// limits the other tests set: a slowloris head gets `408` once the default
/// request timeout has passed since its first byte, and a flood of new
/// topics levels off at the default maximum, every topic past it refused.
#[test]
fn the_default_options_close_slowloris_and_level_off_a_topic_flood() {
    let server = Server::with_epoch(Config::default(), "E");
    let defaults = Config::default();
    let t0 = Instant::now();

    let mut slow = Client::new(&server, 1, t0);
    let mut now = t0;
    for byte in b"GET /stats HTTP/1.1\r\nX-Slow: ".iter().cycle() {
        slow.send([*byte], now);
        slow.conn.on_tick(now);
        if slow.conn.status() != Status::Open {
            break;
        }
        now += SEC;
        assert!(now <= t0 + defaults.request_timeout, "still open past the default request timeout");
    }
    assert_eq!(one_response(&slow.output()).status, 408);
    assert_eq!(now, t0 + defaults.request_timeout, "closed exactly at the deadline");

    let flood = defaults.max_topics + 100;
    let refused = (0..flood)
        .filter(|i| server.hub.publish(&format!("flood-{i}"), "x", t0, &server.stats).is_err())
        .count();
    assert_eq!(refused, 100, "every topic past the default maximum is refused");
    assert_eq!(server.hub.topic_count(), defaults.max_topics, "the flood levels off");
}

/// A long poll whose cursor is from another epoch (the server restarted) is
/// answered at once with the reset and everything retained, even with
/// `wait`; an SSE resume gets the reset event first.
#[test]
fn a_cursor_from_another_epoch_is_answered_with_a_reset() {
    let server = Server::with_epoch(Config::default(), "NEW");
    let t0 = Instant::now();
    publish_via(&server, "t", "one", t0);
    let mut c = Client::new(&server, 1, t0);
    c.send(get("/poll?topic=t&after=OLD-7&wait=30"), t0);
    assert_eq!(
        one_response(&c.output()).json(),
        json!({"epoch": "NEW", "messages": [{"id": 1, "data": "one"}], "last_id": 1, "reset": {"epoch": "NEW"}})
    );
    c.send(get("/poll?topic=t&after=NEW-1"), t0);
    assert_eq!(one_response(&c.output()).json(), json!({"epoch": "NEW", "messages": [], "last_id": 1}));
    let request = "GET /sse?topic=t HTTP/1.1\r\nLast-Event-ID: OLD-3\r\n\r\n";
    let (_, replay) = open_sse(&server, request, 2, t0);
    assert_eq!(replay, "event: reset\nid: NEW-0\ndata: {\"epoch\":\"NEW\"}\n\nid: NEW-1\ndata: one\n\n");
    let (_, frames) = open_ws(&server, "/ws?topic=t&after=OLD-1", 3, t0);
    assert_eq!(frames[0].json(), json!({"reset": {"epoch": "NEW"}}));
    assert_eq!(frames[1].json(), json!({"id": 1, "epoch": "NEW", "data": "one"}));
}

// ---------------------------------------------------------------------------
// Tokens and origins (contract "Tokens and origins"), with simulated wall
// time: the wall clock says `t0` is second 1,000,000 since 1970.

const SECRET: &[u8] = b"unit-test secret";
const WALL: u64 = 1_000_000;

/// A server with a secret, whose wall clock is simulated from `t0`.
fn token_server(t0: Instant, configure: impl FnOnce(&mut Config)) -> Arc<Server> {
    server_with(|c| {
        let mut tokens = crate::auth::Tokens::new(SECRET);
        tokens.clock = crate::auth::WallClock::simulated(t0, std::time::UNIX_EPOCH + Duration::from_secs(WALL));
        c.tokens = Some(tokens);
        c.keepalive = 1000 * SEC;
        c.ping_interval = 1000 * SEC;
        configure(c);
    })
}

/// A token for `sub` that lives `ttl` seconds past `t0`.
fn token(sub: &str, ttl: u64, topics: Option<&[&str]>, publish: bool) -> String {
    let topics = topics.map(|t| t.iter().map(|s| s.to_string()).collect());
    crate::auth::mint(SECRET, &crate::auth::Claims { sub: sub.into(), exp: WALL + ttl, topics, publish })
}

fn status_and_body(c: &mut Client) -> (u16, String) {
    let r = one_response(&c.output());
    (r.status, String::from_utf8(r.body).unwrap())
}

#[test]
fn tokens_are_asked_for_and_each_refusal_says_why() {
    let t0 = Instant::now();
    let server = token_server(t0, |_| {});
    let read = token("ada", 60, Some(&["news", "room.*"]), false);
    let write = token("bob", 60, None, true);
    let cases: Vec<(String, u16, &str)> = vec![
        (publish("news", "x"), 401, "a token is required"),
        (get("/poll?topic=news&token=garbage"), 401, "malformed token"),
        (get(&format!("/poll?topic=news&token={}", token("ada", 0, None, false))), 401, "token expired"),
        (
            format!("GET /poll?topic=news HTTP/1.1\r\nAuthorization: Basic {read}\r\n\r\n"),
            401,
            "Authorization header must be",
        ),
        (
            format!("GET /poll?topic=news HTTP/1.1\r\nAuthorization: Bearer {}\r\n\r\n", crate::auth::mint(b"other", &crate::auth::Claims { sub: "x".into(), exp: WALL + 60, topics: None, publish: true })),
            401,
            "bad token signature",
        ),
        (get(&format!("/sse?topic=sports&token={read}")), 403, "does not allow topic sports"),
        (
            format!("POST /publish?topic=news HTTP/1.1\r\nAuthorization: Bearer {read}\r\nContent-Length: 1\r\n\r\nx"),
            403,
            "may not publish",
        ),
    ];
    for (request, status, why) in cases {
        let mut c = Client::new(&server, 1, t0);
        c.send(&request, t0);
        let (got, body) = status_and_body(&mut c);
        assert_eq!((got, body.contains(why)), (status, true), "{request:?} → {got} {body:?}");
        assert_eq!(c.conn.status(), Status::Closing, "a refusal closes");
    }
    assert_eq!(server.hub.last_id("news"), 0, "nothing refused was published");
    // Allowed: a prefix topic, a publish with a publishing token, the page without any.
    let mut c = Client::new(&server, 1, t0);
    c.send(
        format!("POST /publish?topic=room.1 HTTP/1.1\r\nAuthorization: Bearer {write}\r\nContent-Length: 2\r\n\r\nhi{}", get("/")),
        t0,
    );
    let all = responses(&c.output());
    assert_eq!(all.iter().map(|r| r.status).collect::<Vec<_>>(), vec![200, 200]);
    assert_eq!(c.conn.subject(), Some("bob"));
    let (sse, replay) = open_sse(&server, &get(&format!("/sse?topic=room.1&token={read}")), 2, t0);
    assert_eq!(sse.conn.subject(), Some("ada"));
    assert!(replay.is_empty(), "no resume asked: no replay");
}

#[test]
fn expiry_ends_each_transport_its_own_way() {
    let t0 = Instant::now();
    let server = token_server(t0, |_| {});
    let tok = token("ada", 30, None, false);
    // SSE: `event: expired`, then the stream ends.
    let (mut sse, _) = open_sse(&server, &get(&format!("/sse?topic=t&token={tok}")), 1, t0);
    assert_eq!(sse.conn.next_deadline(), Some(t0 + 30 * SEC), "the token's end is the next deadline");
    sse.conn.on_tick(t0 + 30 * SEC - MS);
    assert!(sse.output().is_empty());
    sse.conn.on_tick(t0 + 30 * SEC);
    assert_eq!(sse.text(), "event: expired\ndata: token expired\n\n");
    assert_eq!(sse.conn.status(), Status::Closing);
    // WebSocket: close code 4001.
    let (mut ws, _) = open_ws(&server, &format!("/ws?topic=t&token={tok}"), 2, t0);
    ws.conn.on_tick(t0 + 30 * SEC);
    let frames = ws.frames();
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].close_code(), 4001);
    // A held long poll: 401.
    let mut lp = Client::new(&server, 3, t0 + 20 * SEC);
    lp.send(get(&format!("/poll?topic=t&after=0&wait=60&token={tok}")), t0 + 20 * SEC);
    assert!(lp.output().is_empty(), "held");
    assert_eq!(lp.conn.next_deadline(), Some(t0 + 30 * SEC), "before the poll's own 60 s");
    lp.conn.on_tick(t0 + 30 * SEC);
    let (status, body) = status_and_body(&mut lp);
    assert_eq!((status, body.as_str()), (401, "unauthorized: token expired\n"));
    assert_eq!(server.hub.subscriber_count("t"), 0, "every expired subscriber left the topic");
}

#[test]
fn a_ws_refresh_moves_the_deadline_and_a_bad_one_changes_nothing() {
    let t0 = Instant::now();
    let server = token_server(t0, |_| {});
    let (mut ws, _) = open_ws(&server, &format!("/ws?topic=news&token={}", token("ada", 10, None, false)), 1, t0);
    let refresh = |t: &str| text_frame(&json!({"op": "refresh", "token": t}).to_string());
    // Refused: another subject, a topic it does not allow, garbage.
    for (bad, why) in [
        (token("bob", 100, None, false), "is for bob, not ada"),
        (token("ada", 100, Some(&["sports"]), false), "does not allow topic news"),
        ("x.y.z".to_string(), "malformed token"),
    ] {
        ws.send(refresh(&bad), t0 + SEC);
        let frames = ws.frames();
        let error = frames[0].json()["error"].as_str().unwrap().to_owned();
        assert!(error.starts_with("refresh refused") && error.contains(why), "{error}");
    }
    assert_eq!(ws.conn.next_deadline(), Some(t0 + 10 * SEC), "refused refreshes change nothing");
    // A good one: lives on to the new exp.
    ws.send(refresh(&token("ada", 100, None, false)), t0 + 5 * SEC);
    assert!(ws.output().is_empty(), "a refresh needs no answer");
    assert_eq!(ws.conn.next_deadline(), Some(t0 + 100 * SEC));
    ws.conn.on_tick(t0 + 10 * SEC);
    assert!(ws.output().is_empty() && ws.conn.status() == Status::Open);
    // A read-only token may not publish over the socket either.
    ws.send(text_frame(r#"{"op":"publish","data":"x"}"#), t0 + 11 * SEC);
    assert_eq!(ws.frames()[0].json()["error"], "forbidden: this token may not publish");
    ws.conn.on_tick(t0 + 100 * SEC);
    assert_eq!(ws.frames()[0].close_code(), 4001);
}

#[test]
fn the_spread_closes_connections_early_and_apart() {
    let t0 = Instant::now();
    let server = token_server(t0, |c| c.tokens.as_mut().unwrap().spread = 10 * SEC);
    let tok = token("ada", 60, None, false);
    let deadlines: Vec<Instant> = (0..50)
        .map(|slot| {
            let (sse, _) = open_sse(&server, &get(&format!("/sse?topic=t&token={tok}")), slot, t0);
            sse.conn.next_deadline().unwrap()
        })
        .collect();
    assert!(deadlines.iter().all(|&d| d > t0 + 50 * SEC && d <= t0 + 60 * SEC));
    let mut sorted = deadlines.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 50, "no two connections share a deadline");
}

#[test]
fn origins_off_the_list_and_refused_upgrades_get_their_status() {
    let t0 = Instant::now();
    let server = server_with(|c| {
        c.allowed_origins = vec!["https://good.example".into()];
        c.refuse_upgrade = true;
    });
    let with_origin = |origin: &str| format!("GET /poll?topic=t HTTP/1.1\r\nOrigin: {origin}\r\n\r\n");
    for (request, status) in [
        (with_origin("https://evil.example"), 403),
        (with_origin("https://good.example"), 200),
        (get("/poll?topic=t"), 200),
        (upgrade("/ws?topic=t"), 501),
    ] {
        let mut c = Client::new(&server, 1, t0);
        c.send(&request, t0);
        assert_eq!(status_and_body(&mut c).0, status, "{request}");
    }
}

// ANCHOR: small
/// Every idle connection of every lab carries a `Connection`: a field added
/// inline costs a million connections its size a million times. (The
/// tokens' grant, once inline, made it 248 bytes; boxed, one word.)
#[test]
fn a_connection_stays_small() {
    assert!(size_of::<Connection>() <= 112, "a Connection is {} bytes", size_of::<Connection>());
}
// ANCHOR_END: small
