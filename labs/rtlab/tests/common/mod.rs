//! The conformance suite's harness: a real `rtlab serve` process and
//! independent clients (ureq for HTTP, tungstenite for WebSocket, and small
//! hand-written raw clients for SSE, crafted WebSocket frames and malformed
//! HTTP). None of it is rtlab code.
//!
//! Every read is bounded: helpers take a timeout and panic with a message
//! that says what was awaited when it expires.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;
use tungstenite::Message;

/// How long any single expected event may take before the test fails. Only
/// ever reached when something is wrong.
pub const TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// The server process
// ---------------------------------------------------------------------------

/// One `rtlab serve` process on its own port, killed when dropped. If the test
/// panics, the server's stderr (its logs) is printed with the failure.
#[derive(Debug)]
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    child: Child,
    log: Arc<Mutex<Vec<u8>>>,
    log_thread: Option<JoinHandle<()>>,
    exited: Option<ExitStatus>,
    agent: ureq::Agent,
}

impl TestServer {
    /// Starts `rtlab serve --runtime <runtime> --addr 127.0.0.1:0 <options>`
    /// and waits for its first stdout line, `listening on 127.0.0.1:PORT`.
    pub fn start(runtime: &str, options: &[&str]) -> TestServer {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rtlab"))
            .args(["serve", "--runtime", runtime, "--addr", "127.0.0.1:0"])
            .args(options)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("failed to spawn the rtlab binary");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut stderr = child.stderr.take().expect("piped stderr");

        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let log_thread = thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = stderr.read(&mut chunk) {
                sink.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(&chunk[..n]);
            }
        });

        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut out = BufReader::new(stdout);
            let mut first = String::new();
            let read = out.read_line(&mut first).map(|_| first);
            let _ = tx.send(read);
            // Keep draining so that the server never blocks on a full pipe.
            let _ = io::copy(&mut out, &mut io::sink());
        });

        let mut server = TestServer {
            addr: (Ipv4Addr::LOCALHOST, 0).into(),
            child,
            log,
            log_thread: Some(log_thread),
            exited: None,
            agent: agent(),
        };
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => panic!("reading the server's stdout failed: {e}"),
            Err(_) => panic!("the server printed no first line within 30 s"),
        };
        let addr: SocketAddr = line
            .strip_suffix('\n')
            .and_then(|l| l.strip_prefix("listening on "))
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "the server's first stdout line must be exactly `listening on 127.0.0.1:PORT`, got {line:?} \
                     (status: {:?})",
                    server.child.try_wait()
                )
            });
        assert_eq!(addr.ip(), Ipv4Addr::LOCALHOST, "the server must listen where --addr says");
        assert_ne!(addr.port(), 0, "the printed port must be the real one, not 0");
        server.addr = addr;
        server
    }

    /// `http://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A ureq agent (keep-alive pool) that never treats 4xx as an error.
    pub fn agent(&self) -> &ureq::Agent {
        &self.agent
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends a signal to the server process.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let rc = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(rc, 0, "kill({}, {signal}) failed: {}", self.pid(), io::Error::last_os_error());
    }

    /// Waits for the process to exit, at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.exited = Some(status);
                return status;
            }
            assert!(Instant::now() < deadline, "the server did not exit within {timeout:?}");
            thread::sleep(Duration::from_millis(20));
        }
    }

    // -- HTTP through ureq ----------------------------------------------------

    /// `POST /publish?topic=T` with `body`; asserts `200 application/json
    /// {"id":N}` and returns N.
    pub fn publish(&self, topic: &str, body: impl AsRef<[u8]>) -> u64 {
        let mut resp = self
            .agent
            .post(self.url(&format!("/publish?topic={topic}")))
            .send(body.as_ref())
            .unwrap_or_else(|e| panic!("publish to {topic} failed: {e}"));
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().expect("publish response body");
        assert_eq!(status, 200, "publish to {topic}: {text}");
        assert_content_type(header(&resp, "content-type"), "application/json");
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("publish body {text:?}: {e}"));
        let obj = v.as_object().unwrap_or_else(|| panic!("publish body is not an object: {text}"));
        assert_eq!(obj.len(), 1, "publish body must be exactly {{\"id\":N}}: {text}");
        obj["id"].as_u64().unwrap_or_else(|| panic!("publish id is not a number: {text}"))
    }

    /// `GET path`, asserting `200 application/json`; returns the JSON.
    pub fn get_json(&self, path: &str) -> Value {
        let (status, content_type, body) = self.get(path);
        assert_eq!(status, 200, "GET {path}: {body}");
        assert_content_type(content_type.as_deref(), "application/json");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: body {body:?} is not JSON: {e}"))
    }

    /// `GET path`: status, Content-Type and body.
    pub fn get(&self, path: &str) -> (u16, Option<String>, String) {
        let mut resp = self.agent.get(self.url(path)).call().unwrap_or_else(|e| panic!("GET {path} failed: {e}"));
        let status = resp.status().as_u16();
        let content_type = header(&resp, "content-type").map(str::to_owned);
        let body = resp.body_mut().read_to_string().expect("response body");
        (status, content_type, body)
    }

    /// A short poll: `GET /poll?topic=T&after=N`.
    pub fn poll(&self, topic: &str, after: u64) -> Value {
        self.get_json(&format!("/poll?topic={topic}&after={after}"))
    }

    /// `GET /stats`.
    pub fn stats(&self) -> Value {
        self.get_json("/stats")
    }

    /// Polls `/stats` until `ready` holds for it (at most [`TIMEOUT`]);
    /// returns the last document.
    pub fn wait_stats(&self, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let stats = self.stats();
            if ready(&stats) {
                return stats;
            }
            assert!(Instant::now() < deadline, "timed out waiting for /stats to show {what}; last: {stats}");
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(t) = self.log_thread.take() {
            let _ = t.join();
        }
        if thread::panicking() {
            let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
            let tail = &log[log.len().saturating_sub(8192)..];
            eprintln!(
                "---- rtlab server {} (pid {}) stderr, last {} bytes ----\n{}",
                self.addr,
                self.child.id(),
                tail.len(),
                String::from_utf8_lossy(tail)
            );
        }
    }
}

/// A ureq agent that reports 4xx/5xx as responses and bounds every call.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(TIMEOUT)).build().into()
}

fn header<'a>(resp: &'a ureq::http::Response<ureq::Body>, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Asserts a Content-Type's media type (parameters such as `charset` allowed).
pub fn assert_content_type(value: Option<&str>, expected: &str) {
    let value = value.unwrap_or_else(|| panic!("no Content-Type header (expected {expected})"));
    let media = value.split(';').next().unwrap_or("").trim();
    assert!(media.eq_ignore_ascii_case(expected), "Content-Type {value:?}, expected {expected}");
}

// ---------------------------------------------------------------------------
// Raw TCP: malformed HTTP, SSE, crafted WebSocket frames
// ---------------------------------------------------------------------------

/// A response head.
#[derive(Debug, Clone)]
pub struct Head {
    /// The status code.
    pub status: u16,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Whether `Connection` lists `close`.
    pub fn connection_close(&self) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n == "connection")
            .any(|(_, v)| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
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
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("the body is UTF-8")
    }
}

/// A raw TCP connection with a read buffer; every read has a deadline.
#[derive(Debug)]
pub struct RawConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RawConn {
    /// Connects to the server.
    pub fn connect(addr: SocketAddr) -> RawConn {
        let stream = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect");
        RawConn::from_stream(stream)
    }

    /// Connects with a small `SO_RCVBUF`, set before `connect` so that the
    /// TCP window is negotiated small: a client that then stops reading
    /// stalls the server quickly.
    pub fn connect_small_rcvbuf(addr: SocketAddr, bytes: usize) -> RawConn {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, Some(socket2::Protocol::TCP))
            .expect("socket");
        socket.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
        socket.connect_timeout(&addr.into(), TIMEOUT).expect("connect");
        RawConn::from_stream(socket.into())
    }

    /// Connects, then closes abortively (`SO_LINGER` 0: an RST, not a FIN).
    pub fn connect_and_reset(addr: SocketAddr, send_first: &[u8]) {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, Some(socket2::Protocol::TCP))
            .expect("socket");
        socket.connect_timeout(&addr.into(), TIMEOUT).expect("connect");
        let mut stream: TcpStream = socket.into();
        stream.write_all(send_first).expect("write");
        socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO)).expect("SO_LINGER");
        drop(stream);
    }

    fn from_stream(stream: TcpStream) -> RawConn {
        stream.set_nodelay(true).expect("TCP_NODELAY");
        stream.set_write_timeout(Some(TIMEOUT)).expect("write timeout");
        RawConn { stream, buf: Vec::new() }
    }

    /// Writes all of `bytes`.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to the server");
    }

    /// Reads more into the buffer; `0` at end of file. Panics at `deadline`.
    fn fill(&mut self, deadline: Instant, what: &str) -> usize {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "timed out waiting for {what}");
            self.stream.set_read_timeout(Some(left)).expect("read timeout");
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
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        assert!(version == "HTTP/1.1" || version == "HTTP/1.0", "bad status line {status_line:?}");
        let status =
            parts.next().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let headers = lines
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap_or_else(|| panic!("bad header line {l:?}"));
                (n.trim().to_ascii_lowercase(), v.trim().to_owned())
            })
            .collect();
        Head { status, headers }
    }

    /// Reads a complete response whose body has a `Content-Length`.
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
            self.stream.set_read_timeout(Some(left)).expect("read timeout");
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

    /// Consumes `n` buffered-or-read bytes.
    fn take_exact(&mut self, n: usize, deadline: Instant, what: &str) -> Option<Vec<u8>> {
        while self.buf.len() < n {
            if self.fill(deadline, what) == 0 {
                return None;
            }
        }
        Some(self.buf.drain(..n).collect())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A minimal request head with `Host`.
pub fn request(method: &str, target: &str, extra: &str) -> Vec<u8> {
    format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n").into_bytes()
}

// ---------------------------------------------------------------------------
// Server-Sent Events
// ---------------------------------------------------------------------------

/// One dispatched SSE event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `id:` field, if any.
    pub id: Option<u64>,
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// How many `data:` lines there were.
    pub data_lines: usize,
}

/// An event-stream reader over a raw socket.
#[derive(Debug)]
pub struct Sse {
    conn: RawConn,
    /// Comment-only blocks (keep-alives) skipped by [`Sse::next_event`].
    pub comments: usize,
}

impl Sse {
    /// `GET target` with `extra` header lines; asserts `200 text/event-stream`.
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
        Sse { conn, comments: 0 }
    }

    /// The next block of lines up to a blank line, or `None` at end of file
    /// (an unfinished block at end of file is discarded, as the SSE spec says).
    pub fn next_block(&mut self, timeout: Duration) -> Option<Vec<String>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(pos) = find(&self.conn.buf, b"\n\n") {
                let block: Vec<u8> = self.conn.buf.drain(..pos + 2).collect();
                let text = String::from_utf8(block[..pos].to_vec()).expect("an event stream is UTF-8");
                return Some(text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l).to_owned()).collect());
            }
            if self.conn.fill(deadline, "an SSE event") == 0 {
                return None;
            }
        }
    }

    /// The next event, skipping comment-only blocks; `None` at end of file.
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
}

/// Parses one block; `None` if it dispatches nothing (comments only).
pub fn parse_sse_block(lines: &[String]) -> Option<SseEvent> {
    let mut ev = SseEvent { id: None, event: None, data: String::new(), data_lines: 0 };
    let mut fields = 0;
    for line in lines {
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        fields += 1;
        match field {
            "id" => ev.id = Some(value.parse().unwrap_or_else(|_| panic!("non-numeric SSE id {value:?}"))),
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

// ---------------------------------------------------------------------------
// WebSocket: raw frames
// ---------------------------------------------------------------------------

/// Opcodes.
pub const CONT: u8 = 0x0;
/// Text.
pub const TEXT: u8 = 0x1;
/// Binary.
pub const BINARY: u8 = 0x2;
/// Close.
pub const CLOSE: u8 = 0x8;
/// Ping.
pub const PING: u8 = 0x9;
/// Pong.
pub const PONG: u8 = 0xA;
/// The FIN bit.
pub const FIN: u8 = 0x80;

/// A frame from the server.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    /// FIN bit.
    pub fin: bool,
    /// Opcode.
    pub opcode: u8,
    /// Payload.
    pub payload: Vec<u8>,
}

/// Compact: opcode, FIN, length and the start of the payload as text.
impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let preview = String::from_utf8_lossy(&self.payload[..self.payload.len().min(48)]);
        let more = if self.payload.len() > 48 { "..." } else { "" };
        write!(
            f,
            "Frame(op={:#x}{}, {} bytes: {preview:?}{more})",
            self.opcode,
            if self.fin { "" } else { " no-FIN" },
            self.payload.len()
        )
    }
}

impl Frame {
    /// The close code of a close frame.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == CLOSE && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }

    /// A text frame's payload as JSON.
    pub fn json(&self) -> Value {
        assert_eq!(self.opcode, TEXT, "expected a text frame, got {self:?}");
        serde_json::from_slice(&self.payload).unwrap_or_else(|e| panic!("frame is not JSON ({e}): {self:?}"))
    }
}

/// A client frame: `first` is FIN/RSV/opcode, masked when `masked`.
pub fn client_frame(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mask_bit = if masked { 0x80 } else { 0 };
    let mut out = vec![first];
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n < 65536 => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// A WebSocket client that writes and reads raw frames.
#[derive(Debug)]
pub struct RawWs {
    conn: RawConn,
}

/// The RFC 6455 §1.3 example key and its accept value.
const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const WS_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

impl RawWs {
    /// Connects and upgrades `target`.
    pub fn connect(addr: SocketAddr, target: &str) -> RawWs {
        RawWs::upgrade(RawConn::connect(addr), target)
    }

    /// Upgrades an already connected socket; asserts a valid `101`.
    pub fn upgrade(mut conn: RawConn, target: &str) -> RawWs {
        conn.send(&request(
            "GET",
            target,
            &format!(
                "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {WS_KEY}\r\n"
            ),
        ));
        let head = conn.read_head();
        assert_eq!(head.status, 101, "upgrade of {target}: {head:?}");
        assert_eq!(head.header("sec-websocket-accept"), Some(WS_ACCEPT), "Sec-WebSocket-Accept of {target}");
        assert!(
            head.header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")),
            "101 without Upgrade: websocket"
        );
        RawWs { conn }
    }

    /// Writes raw bytes.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.conn.send(bytes);
    }

    /// Writes one masked frame.
    pub fn send(&mut self, first: u8, payload: &[u8]) {
        self.conn.send(&client_frame(first, payload, true));
    }

    /// The next frame, or `None` at end of file between frames. Server
    /// frames must not be masked and must not use reserved bits.
    pub fn next_frame(&mut self, timeout: Duration) -> Option<Frame> {
        let deadline = Instant::now() + timeout;
        let what = "a WebSocket frame";
        let head = self.conn.take_exact(2, deadline, what);
        let head = match head {
            Some(h) => h,
            None if self.conn.buf.is_empty() => return None,
            None => panic!("end of file inside a frame header"),
        };
        assert_eq!(head[0] & 0x70, 0, "server frame with reserved bits set");
        assert_eq!(head[1] & 0x80, 0, "server frames must not be masked (RFC 6455 §5.1)");
        let len = match head[1] & 0x7f {
            126 => {
                let b = self.conn.take_exact(2, deadline, what).expect("end of file inside a frame header");
                u16::from_be_bytes([b[0], b[1]]) as usize
            }
            127 => {
                let b = self.conn.take_exact(8, deadline, what).expect("end of file inside a frame header");
                u64::from_be_bytes(b.try_into().expect("8 bytes")) as usize
            }
            n => n as usize,
        };
        let payload = self.conn.take_exact(len, deadline, what).expect("end of file inside a frame payload");
        Some(Frame { fin: head[0] & FIN != 0, opcode: head[0] & 0x0f, payload })
    }

    /// The next frame, which must exist.
    pub fn frame(&mut self) -> Frame {
        self.next_frame(TIMEOUT).expect("the server closed the connection while a frame was expected")
    }

    /// Reads up to the close frame; returns the frames before it and its code.
    pub fn until_close(&mut self, timeout: Duration) -> (Vec<Frame>, Option<u16>) {
        let deadline = Instant::now() + timeout;
        let mut before = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no close frame within {timeout:?}; frames so far: {before:?}");
            let frame = self
                .next_frame(left)
                .unwrap_or_else(|| panic!("end of file without a close frame; frames before it: {before:?}"));
            if frame.opcode == CLOSE {
                return (before, frame.close_code());
            }
            before.push(frame);
        }
    }

    /// Asserts that the next frame is a close frame with `code`, followed by
    /// the end of the connection.
    pub fn expect_close(&mut self, code: u16, context: &str) {
        let (before, got) = self.until_close(TIMEOUT);
        assert!(before.is_empty(), "{context}: frames before the close frame: {before:?}");
        assert_eq!(got, Some(code), "{context}: close code");
        self.expect_eof(context);
    }

    /// Asserts the TCP connection ends cleanly.
    pub fn expect_eof(&mut self, context: &str) {
        self.conn.expect_eof(context);
    }
}

// ---------------------------------------------------------------------------
// WebSocket: tungstenite (blocking)
// ---------------------------------------------------------------------------

/// A blocking tungstenite client.
pub type Ws = tungstenite::WebSocket<TcpStream>;

/// Connects a tungstenite client to `target` (`/ws?topic=...`, `/echo`).
pub fn ws_connect(addr: SocketAddr, target: &str) -> Ws {
    let stream = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect");
    stream.set_read_timeout(Some(TIMEOUT)).expect("read timeout");
    stream.set_write_timeout(Some(TIMEOUT)).expect("write timeout");
    stream.set_nodelay(true).expect("TCP_NODELAY");
    let (ws, resp) = tungstenite::client(format!("ws://{addr}{target}"), stream)
        .unwrap_or_else(|e| panic!("WebSocket handshake with {target} failed: {e}"));
    assert_eq!(resp.status().as_u16(), 101);
    ws
}

/// The next message (pings included), or `None` if `deadline` passes first.
/// Reading is what makes tungstenite answer pings.
pub fn ws_try_read(ws: &mut Ws, deadline: Instant) -> Option<Message> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        ws.get_mut().set_read_timeout(Some(left)).expect("read timeout");
        match ws.read() {
            Ok(m) => return Some(m),
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => panic!("WebSocket read failed: {e}"),
        }
    }
}

/// The next message, which must come within [`TIMEOUT`].
pub fn ws_read(ws: &mut Ws) -> Message {
    ws_try_read(ws, Instant::now() + TIMEOUT).expect("timed out waiting for a WebSocket message")
}

/// The next text message as JSON, skipping pings and pongs.
pub fn ws_json(ws: &mut Ws) -> Value {
    loop {
        match ws_read(ws) {
            Message::Text(t) => {
                return serde_json::from_str(t.as_str())
                    .unwrap_or_else(|e| panic!("text frame {t:?} is not JSON: {e}"));
            }
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// The next text message, which must be `{"id":N,"data":"..."}`.
pub fn ws_message(ws: &mut Ws) -> (u64, String) {
    let v = ws_json(ws);
    message_of(&v)
}

/// Splits a `{"id":N,"data":"..."}` object (and checks it has nothing else).
pub fn message_of(v: &Value) -> (u64, String) {
    let obj = v.as_object().unwrap_or_else(|| panic!("expected a message object, got {v}"));
    assert_eq!(obj.len(), 2, "a message is exactly {{\"id\":N,\"data\":\"...\"}}: {v}");
    let id = obj["id"].as_u64().unwrap_or_else(|| panic!("message without a numeric id: {v}"));
    let data = obj["data"].as_str().unwrap_or_else(|| panic!("message without string data: {v}"));
    (id, data.to_owned())
}

/// Sends a text message.
pub fn ws_send_text(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).expect("WebSocket send");
}

/// Publishes over a `/ws` connection.
pub fn ws_publish(ws: &mut Ws, data: &str) {
    ws_send_text(ws, &serde_json::json!({ "op": "publish", "data": data }).to_string());
}

/// The `(id, data)` pairs of a poll response, checking its shape.
pub fn poll_messages(v: &Value) -> Vec<(u64, String)> {
    v["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("poll response without a messages array: {v}"))
        .iter()
        .map(message_of)
        .collect()
}

/// `(from, to)` of a `{"from":F,"to":T}` object.
pub fn range_of(v: &Value) -> (u64, u64) {
    let from = v["from"].as_u64().unwrap_or_else(|| panic!("missed range without from: {v}"));
    let to = v["to"].as_u64().unwrap_or_else(|| panic!("missed range without to: {v}"));
    (from, to)
}
