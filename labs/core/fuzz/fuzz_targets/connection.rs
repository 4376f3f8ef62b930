//! A whole `Connection`, driven the way `rtlab-adapter`'s `step` drives it:
//! client bytes (raw, well-formed requests of every route, WebSocket
//! frames) cut into reads, a send buffer that takes what the client lets it,
//! simulated time that advances, messages published by others, end of file,
//! server shutdown — under server options the input picks.
//!
//! The runtime model obeys the core: it reads only while `wants_read`, at
//! most `READ_CHUNK` bytes per read; ticks when the waker fired or a deadline
//! passed; half-closes when `take_fin` says so; drops the connection once
//! `Closed`. It takes all output at once (`take_output(usize::MAX)`, which a
//! runtime may do), so what it holds unwritten *is* the connection's pending
//! output.
//!
//! Checked after every step, besides "no panic":
//! * `take_output` returns the number of bytes it gave;
//! * the status only moves forward (open, closing, closed); a closing
//!   connection has a deadline (its linger), and a closed one wants no
//!   input (the runtime drops it); `take_fin` is true at most once, only while closing, and only
//!   once everything taken was written;
//! * a closing connection produces nothing more from input;
//! * `wants_read` is false while the pending output reaches `read_pause`,
//!   and after end of file;
//! * one read, or one tick, leaves at most `read_pause` plus one largest
//!   response pending (more only if more was pending before); on a
//!   WebSocket, plus the answers to the frames of that one read (each
//!   frame is answered alone: a pong, an error frame, an echo);
//! * a publish by someone else adds at most what the outbox budget allows
//!   (plus a missed marker) to this connection's pending output, or one
//!   whole message if nothing was pending (the budget bounds the backlog),
//!   unless the policy is `unbounded`; it is refused with "stopping" once
//!   the server stops, refused with "topics" only when the server holds
//!   `max_topics` topics, and otherwise gets the topic's next id;
//! * after a tick, no deadline is left in the past (or the connection is
//!   closed): a runtime never spins;
//! * a tick of an HTTP connection waiting for a request (not woken by
//!   `written`) writes nothing or exactly one `408` response, after which the
//!   connection closes; and once `idle_timeout` has passed without a step,
//!   it closes (idle: silently; a request in progress: `408`);
//! * the first bytes ever written are an HTTP response.
//!
//! An input starting with `P` is plain (the seeds are): the default options
//! and a script of steps separated by `~~~\n`, each either bytes the client
//! sends or a command: `!pub TOPIC DATA`, `!wait MS`, `!drain N` (the client
//! reads N bytes; the first one makes the send buffer finite), `!eof`,
//! `!shutdown`; a first step `!small` sets small limits instead.
//!
//! With small limits the input also picks the request and idle timeouts (so
//! that `408` and idle closes happen within the script's time) and a limit
//! of one to three topics (so that `503` does).
#![no_main]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use rtlab_core::{Bytes, Config, Connection, Kind, Message, Policy, Refusal, Server, Status, Wake};
use rtlab_core_fuzz::{LenForm, client_frame, read_response, upgrade_request};

/// `rtlab-adapter`'s read buffer (`READ_CHUNK`).
const READ_CHUNK: usize = 16 * 1024;
/// `rtlab-adapter`'s reads per step before yielding (`READS_PER_STEP`).
const READS_PER_STEP: usize = 16;
const TOPICS: [&str; 3] = ["a", "b", "c.d-e_f"];

#[derive(Debug, Arbitrary)]
struct Input {
    knobs: Knobs,
    ops: Vec<Op>,
}

#[derive(Debug, Arbitrary)]
struct Knobs {
    small: bool,
    retention: u8,
    max_message: u16,
    max_head: u16,
    read_pause: u16,
    budget: u16,
    policy: u8,
    linger_ms: u16,
    /// With `small`: the request timeout, 1 to 30 s.
    request_s: u8,
    /// With `small`: the idle timeout, 1 to 90 s.
    idle_s: u8,
    /// With `small`, if not 0: one to three topics at most.
    max_topics: u8,
    /// With `small`: the idle time after which a topic may be evicted, 0 to 59 s.
    topic_ttl_s: u8,
}

impl Knobs {
    fn config(&self) -> Config {
        let mut c = Config::default();
        if self.small {
            c.retention = usize::from(self.retention % 16);
            c.max_message = usize::from(self.max_message % 4096);
            c.max_echo_message = usize::from(self.max_message);
            c.max_head = usize::from(self.max_head % 2048) + 16;
            c.read_pause = usize::from(self.read_pause) + 1;
            c.outbox_budget = usize::from(self.budget);
            c.request_timeout = Duration::from_secs(u64::from(self.request_s % 30) + 1);
            c.idle_timeout = Duration::from_secs(u64::from(self.idle_s % 90) + 1);
            if self.max_topics != 0 {
                c.max_topics = usize::from(self.max_topics % 3) + 1;
            }
            c.topic_ttl = Duration::from_secs(u64::from(self.topic_ttl_s % 60));
        }
        c.policy = match self.policy % 3 {
            0 => Policy::Disconnect,
            1 => Policy::DropOldest,
            _ => Policy::Unbounded,
        };
        c.close_linger = Duration::from_millis(u64::from(self.linger_ms % 5000) + 1);
        c
    }
}

#[derive(Debug, Arbitrary)]
enum Op {
    /// The client sends bytes (read when the connection wants them).
    Send(Chunk),
    /// The client reads up to this many bytes: room in the send buffer.
    Drain(u16),
    /// The client reads everything from now on.
    DrainAll,
    /// Time passes.
    Advance(u16),
    /// Another client publishes.
    Publish(u8, String),
    /// The client closes its side.
    Eof,
    /// The server shuts down.
    Shutdown,
}

#[derive(Debug, Arbitrary)]
enum Chunk {
    Raw(Vec<u8>),
    Request(Req),
    /// A masked frame: first byte, payload.
    Frame(u8, Vec<u8>, [u8; 4]),
    /// A `/ws` publish command in a text frame.
    WsPublish(String),
}

#[derive(Debug, Arbitrary)]
enum Req {
    Publish { topic: u8, body: String, expect: bool, close: bool },
    Poll { topic: u8, after: u8, wait: Option<u8>, close: bool },
    Sse { topic: u8, last: Option<u8> },
    Ws { topic: u8, after: Option<u8> },
    Echo,
    Index,
    Stats,
    Http10,
}

impl Chunk {
    fn bytes(&self) -> Vec<u8> {
        let topic = |t: &u8| TOPICS[usize::from(*t) % TOPICS.len()];
        match self {
            Chunk::Raw(b) => b.clone(),
            Chunk::Frame(first, payload, mask) => client_frame(*first, payload, Some(*mask), LenForm::Shortest),
            Chunk::WsPublish(data) => {
                let text = serde_json::json!({ "op": "publish", "data": data }).to_string();
                client_frame(0x81, text.as_bytes(), Some([1, 2, 3, 4]), LenForm::Shortest)
            }
            Chunk::Request(r) => match r {
                Req::Publish { topic: t, body, expect, close } => format!(
                    "POST /publish?topic={} HTTP/1.1\r\nContent-Length: {}\r\n{}{}\r\n{body}",
                    topic(t),
                    body.len(),
                    if *expect { "Expect: 100-continue\r\n" } else { "" },
                    if *close { "Connection: close\r\n" } else { "" },
                )
                .into_bytes(),
                Req::Poll { topic: t, after, wait, close } => format!(
                    "GET /poll?topic={}&after={after}{} HTTP/1.1\r\n{}\r\n",
                    topic(t),
                    wait.map(|w| format!("&wait={}", w % 61)).unwrap_or_default(),
                    if *close { "Connection: close\r\n" } else { "" },
                )
                .into_bytes(),
                Req::Sse { topic: t, last } => format!(
                    "GET /sse?topic={} HTTP/1.1\r\n{}\r\n",
                    topic(t),
                    last.map(|l| format!("Last-Event-ID: {l}\r\n")).unwrap_or_default()
                )
                .into_bytes(),
                Req::Ws { topic: t, after } => {
                    upgrade_request(&format!("/ws?topic={}{}", topic(t), after.map(|a| format!("&after={a}")).unwrap_or_default()))
                        .into_bytes()
                }
                Req::Echo => upgrade_request("/echo").into_bytes(),
                Req::Index => b"GET / HTTP/1.1\r\n\r\n".to_vec(),
                Req::Stats => b"GET /stats HTTP/1.1\r\n\r\n".to_vec(),
                Req::Http10 => b"GET /stats HTTP/1.0\r\n\r\n".to_vec(),
            },
        }
    }
}

#[derive(Debug, Default)]
struct Woken(AtomicBool);

impl Wake for Woken {
    fn wake(&self, _token: usize) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The simulated runtime and client around one connection.
struct Rt {
    server: Arc<Server>,
    conn: Connection,
    woken: Arc<Woken>,
    now: Instant,
    /// Client bytes the connection has not read yet.
    input: Vec<u8>,
    /// The client closed its side (read returns 0 once `input` is empty).
    eof_sent: bool,
    /// Output taken and not yet written (the connection's pending output).
    unsent: usize,
    /// Room in the socket's send buffer (`None`: unlimited).
    room: Option<usize>,
    written: Vec<u8>,
    stopping: bool,
    fin: bool,
    status: Status,
    config: Config,
}

fn rank(s: Status) -> u8 {
    match s {
        Status::Open => 0,
        Status::Closing => 1,
        Status::Closed => 2,
    }
}

impl Rt {
    /// Takes everything the connection has; returns the number of bytes.
    fn take(&mut self) -> usize {
        self.take_bytes().len()
    }

    /// Takes everything the connection has; returns the bytes.
    fn take_bytes(&mut self) -> Vec<u8> {
        let mut out: Vec<Bytes> = Vec::new();
        let n = self.conn.take_output(&mut out, usize::MAX);
        assert_eq!(n, out.iter().map(Bytes::len).sum::<usize>(), "take_output counts what it gives");
        if self.written.len() < 16 {
            self.written.extend(out.iter().flat_map(|b| b.iter()).take(16));
        }
        self.unsent += n;
        out.concat()
    }

    /// Writes what the send buffer has room for.
    fn write(&mut self) {
        let n = self.room.map_or(self.unsent, |r| r.min(self.unsent));
        if n > 0 {
            self.conn.written(n);
            self.unsent -= n;
            if let Some(r) = &mut self.room {
                *r -= n;
            }
        }
    }

    fn check(&mut self) {
        let status = self.conn.status();
        assert!(rank(status) >= rank(self.status), "status went back from {:?} to {status:?}", self.status);
        self.status = status;
        match status {
            Status::Open => {}
            Status::Closing => assert!(self.conn.next_deadline().is_some(), "closing without a linger deadline"),
            Status::Closed => assert!(!self.conn.wants_read(), "a closed connection wants input"),
        }
        if self.unsent >= self.config.read_pause {
            assert!(!self.conn.wants_read(), "wants input with {} bytes pending", self.unsent);
        }
        if self.written.len() >= 9 {
            assert!(self.written.starts_with(b"HTTP/1.1 "), "first output: {:?}", String::from_utf8_lossy(&self.written));
        }
    }

    /// One `rtlab_adapter::step`: tick if due, write, obey, read; until
    /// nothing more can be done. Returns false once the connection is gone.
    /// `quiet`: the time that passed since the last step (the model of the
    /// request and idle deadlines).
    fn step(&mut self, quiet: Duration) -> bool {
        if self.stopping {
            self.conn.shutdown(self.now);
            assert!(self.server.is_stopping(), "shutdown did not stop the server");
        }
        let woken = self.woken.0.swap(false, Ordering::Relaxed);
        if woken || self.conn.next_deadline().is_some_and(|d| d <= self.now) {
            // An HTTP connection waiting for a request, not woken by `written`
            // (requests waiting for the output to drain): its tick is a deadline.
            let waiting = !woken && self.conn.kind() == Kind::Http && self.conn.status() == Status::Open;
            let before = self.unsent;
            self.conn.on_tick(self.now);
            if self.conn.status() != Status::Closed {
                assert!(
                    self.conn.next_deadline().is_none_or(|d| d > self.now),
                    "a deadline left in the past after a tick ({:?}, {:?})",
                    self.conn.kind(),
                    self.conn.status()
                );
            }
            let out = self.take_bytes();
            let c = &self.config;
            let largest = largest_response(c);
            assert!(
                self.unsent <= before.max(c.read_pause) + largest,
                "a tick left {} bytes pending (read_pause {}, largest response {largest})",
                self.unsent,
                c.read_pause
            );
            if waiting {
                if !out.is_empty() {
                    let (r, used) = read_response(&out);
                    assert_eq!((r.status, used), (408, out.len()), "a waiting connection's tick wrote {}", String::from_utf8_lossy(&out));
                    assert_eq!(r.header("connection"), Some("close"));
                    assert_ne!(self.conn.status(), Status::Open, "open after a 408");
                }
                if quiet >= c.idle_timeout.max(c.request_timeout) {
                    assert_ne!(self.conn.status(), Status::Open, "an HTTP connection outlived its deadlines by {quiet:?}");
                }
            }
        }
        let mut reads = 0;
        loop {
            self.take();
            self.write();
            self.check();
            if self.conn.status() == Status::Closed {
                return false;
            }
            if self.conn.take_fin() {
                assert!(!self.fin, "take_fin was true twice");
                assert_eq!(self.unsent, 0, "FIN due with output unwritten");
                assert_eq!(self.conn.status(), Status::Closing, "FIN due while not closing");
                self.fin = true;
            }
            if !self.conn.wants_read() || reads == READS_PER_STEP {
                return true;
            }
            reads += 1;
            if self.input.is_empty() {
                if !self.eof_sent {
                    return true; // Would block.
                }
                self.conn.on_eof(self.now);
                assert!(!self.conn.wants_read(), "wants input after end of file");
                continue;
            }
            let n = self.input.len().min(READ_CHUNK);
            let data: Vec<u8> = self.input.drain(..n).collect();
            let closing = self.conn.status() != Status::Open;
            let before = self.unsent;
            let websocket = matches!(self.conn.kind(), Kind::Ws | Kind::Echo);
            self.conn.on_read(&data, self.now);
            let produced = self.take();
            if closing {
                assert_eq!(produced, 0, "a closing connection answered input");
            }
            // Requests are served only while less than `read_pause` is
            // pending; the frames of one read are all answered (each with a
            // pong, an error frame or an echo of at most its own size).
            let c = &self.config;
            let largest = largest_response(c);
            let frames = if websocket { (n / 6 + 1) * WS_ANSWER } else { 0 };
            assert!(
                self.unsent <= before.max(c.read_pause) + largest + frames,
                "one read of {n} bytes left {} bytes pending (read_pause {}, largest response {largest})",
                self.unsent,
                c.read_pause
            );
        }
    }
}

/// The most bytes one WebSocket frame of a read (at least 6 bytes: a masked
/// header) is answered with, besides an echo of itself: an error frame.
const WS_ANSWER: usize = 256;

/// An upper bound of the largest single answer to one request or frame:
/// a poll of a full retention of the largest messages, JSON-escaped.
fn largest_response(c: &Config) -> usize {
    let page = rtlab_core::page::DEMO_PAGE.len() + 256;
    let poll = c.retention.max(1) * (c.max_message * 6 + 64) + 256;
    let echo = c.max_echo_message + 16;
    page.max(poll).max(echo).max(4096)
}

fuzz_target!(|data: &[u8]| {
    let input = match data {
        [b'P', script @ ..] => {
            let small = script.starts_with(b"!small");
            Input { knobs: Knobs::plain(small), ops: plain_ops(script) }
        }
        _ => match Input::arbitrary_take_rest(Unstructured::new(data)) {
            Ok(input) => input,
            Err(_) => return,
        },
    };
    run(&input);
});

impl Knobs {
    /// The default options, or (`small`) small limits: retention 1, 1 KiB
    /// messages and heads, `read_pause` 4 KiB, a 16 KiB budget.
    fn plain(small: bool) -> Knobs {
        Knobs {
            small,
            retention: 1,
            max_message: 1024,
            max_head: 1024,
            read_pause: 4095,
            budget: 16384,
            policy: 0,
            linger_ms: 1999,
            request_s: 9,
            idle_s: 59,
            max_topics: 0,
            topic_ttl_s: 0,
        }
    }
}

fn plain_ops(script: &[u8]) -> Vec<Op> {
    let mut ops = Vec::new();
    let mut rest = script;
    while !rest.is_empty() {
        let end = rest.windows(4).position(|w| w == b"~~~\n").unwrap_or(rest.len());
        let step = &rest[..end];
        rest = &rest[(end + 4).min(rest.len())..];
        let text = String::from_utf8_lossy(step);
        let mut words = text.trim_end().splitn(3, ' ');
        let number = |w: Option<&str>| w.and_then(|w| w.parse::<u64>().ok()).unwrap_or(0);
        ops.push(match words.next().unwrap_or("") {
            "!pub" => {
                let topic = words.next().unwrap_or("a");
                let t = TOPICS.iter().position(|&t| t == topic).unwrap_or(0) as u8;
                Op::Publish(t, words.next().unwrap_or("").to_owned())
            }
            "!wait" => Op::Advance((number(words.next()) / 4).min(u64::from(u16::MAX)) as u16),
            "!drain" => Op::Drain(number(words.next()).min(u64::from(u16::MAX)) as u16),
            "!eof" => Op::Eof,
            "!shutdown" => Op::Shutdown,
            "!small" => continue,
            _ => Op::Send(Chunk::Raw(step.to_vec())),
        });
    }
    ops
}

fn run(input: &Input) {
    let config = input.knobs.config();
    let server = Server::new(config.clone());
    let woken = Arc::new(Woken::default());
    let now = Instant::now();
    let conn = Connection::new(server.clone(), woken.clone(), 7, now);
    let mut rt = Rt {
        server,
        conn,
        woken,
        now,
        input: Vec::new(),
        eof_sent: false,
        unsent: 0,
        room: Some(usize::MAX / 2),
        written: Vec::new(),
        stopping: false,
        fin: false,
        status: Status::Open,
        config,
    };
    for op in input.ops.iter().take(256) {
        let mut quiet = Duration::ZERO;
        match op {
            Op::Send(chunk) => {
                if !rt.eof_sent {
                    rt.input.extend(chunk.bytes());
                }
            }
            Op::Drain(n) => {
                // The first Drain turns the send buffer into a limited one.
                let room = rt.room.filter(|&r| r < usize::MAX / 4).unwrap_or(0);
                rt.room = Some(room + usize::from(*n));
            }
            Op::DrainAll => rt.room = None,
            Op::Advance(ms) => {
                quiet = Duration::from_millis(u64::from(*ms) * 4);
                rt.now += quiet;
            }
            Op::Publish(t, data) => {
                let topic = TOPICS[usize::from(*t) % TOPICS.len()];
                if data.len() <= rt.config.max_message {
                    let before = rt.unsent;
                    let (topics, last_id) = (rt.server.hub.topic_count(), rt.server.hub.last_id(topic));
                    let result = rt.server.hub.publish(topic, data, rt.now, &rt.server.stats);
                    match result {
                        _ if rt.server.is_stopping() => assert_eq!(result, Err(Refusal::Stopping)),
                        Ok(id) => assert_eq!(id, last_id + 1, "ids are gap-free"),
                        Err(Refusal::Topics) => {
                            assert!(topics >= rt.config.max_topics, "a topic refused with {topics} of {}", rt.config.max_topics)
                        }
                        Err(why) => panic!("a publish refused for {why:?}"),
                    }
                    let added = rt.take();
                    if rt.config.policy != Policy::Unbounded {
                        // A missed marker, or a whole message within the budget
                        // — or any one message, if nothing was pending.
                        let message = Message::new(rt.server.hub.epoch(topic), last_id + 1, data);
                        let whole = if before == 0 { message.sse().len().max(message.ws().len()) } else { 0 };
                        let allowed = rt.config.outbox_budget.saturating_sub(before).max(64).max(whole);
                        assert!(added <= allowed, "a publish added {added} bytes to {before} pending (budget {})", rt.config.outbox_budget);
                    }
                }
            }
            Op::Eof => rt.eof_sent = true,
            Op::Shutdown => rt.stopping = true,
        }
        if !rt.step(quiet) {
            return;
        }
    }
    // The end: the client reads everything and goes away; time runs out.
    rt.room = None;
    rt.eof_sent = true;
    rt.input.clear();
    // A runtime steps a woken connection at once: requests waiting for the
    // output to drain are served without time passing.
    let mut quiet = Duration::ZERO;
    let (mut steps, mut wakes) = (0, 0);
    while steps < 8 {
        if !rt.step(quiet) {
            return;
        }
        if rt.woken.0.load(Ordering::Relaxed) {
            wakes += 1;
            assert!(wakes < 100_000, "a connection that keeps waking itself");
            quiet = Duration::ZERO;
            continue;
        }
        steps += 1;
        quiet = Duration::from_secs(61);
        rt.now += quiet;
    }
    panic!("the connection never closed after end of file and time passing: {:?}", rt.conn.status());
}
