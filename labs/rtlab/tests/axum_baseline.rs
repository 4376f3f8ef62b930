//! The framework baseline (`rtlab serve --runtime axum`) through the real
//! binary: what it does serve — publish, SSE and WebSocket with per-topic ids
//! — works, `rtlab runtimes` keeps it apart from the full labs, and it stops
//! cleanly. It is not expected to pass the conformance suite (no replay, no
//! polling, no echo), so this is its only test.
//!
//! Every read is bounded by [`TIMEOUT`], which only a failure ever reaches.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use tungstenite::Message;

const TIMEOUT: Duration = Duration::from_secs(10);

/// The rtlab binary that cargo built for these tests.
fn rtlab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rtlab"))
}

/// `rtlab serve --runtime axum` on a free port; killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start() -> Server {
        let mut child = rtlab()
            .args(["serve", "--runtime", "axum", "--addr", "127.0.0.1:0"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn rtlab");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line).expect("first stdout line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("first line must be `listening on ADDR`, got {line:?}"));
        Server { child, addr }
    }

    /// One request on a fresh connection (`Connection: close`): status and body.
    fn request(&self, method: &str, target: &str, body: &[u8]) -> (u16, String) {
        let mut s = TcpStream::connect(self.addr).expect("connect");
        s.set_read_timeout(Some(TIMEOUT)).expect("timeout");
        write!(
            s,
            "{method} {target} HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .expect("write head");
        s.write_all(body).expect("write body");
        let mut response = String::new();
        s.read_to_string(&mut response).expect("read response");
        let status = response.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
        (status, body)
    }

    /// Publishes `data` to `topic` and returns the id.
    fn publish(&self, topic: &str, data: &str) -> u64 {
        let (status, body) = self.request("POST", &format!("/publish?topic={topic}"), data.as_bytes());
        assert_eq!(status, 200, "publish: {body}");
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("publish body {body:?}: {e}"));
        v["id"].as_u64().unwrap_or_else(|| panic!("no id in {body}"))
    }

    /// Waits until `/stats` counts `sse` event streams and `ws` WebSockets.
    fn wait_subscribers(&self, sse: u64, ws: u64) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let (_, body) = self.request("GET", "/stats", b"");
            let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            if v["connections"]["sse"].as_u64() == Some(sse) && v["connections"]["ws"].as_u64() == Some(ws) {
                return;
            }
            assert!(Instant::now() < deadline, "/stats never showed {sse} SSE and {ws} WebSocket: {body}");
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An SSE subscriber on a raw socket.
struct Sse {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Sse {
    fn open(addr: SocketAddr, topic: &str) -> Sse {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
        write!(stream, "GET /sse?topic={topic} HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n\r\n").expect("write");
        let mut sse = Sse { stream, buf: Vec::new() };
        let head = sse.until(b"\r\n\r\n");
        assert!(head.starts_with("HTTP/1.1 200"), "SSE answer: {head}");
        assert!(head.to_ascii_lowercase().contains("content-type: text/event-stream"), "SSE head: {head}");
        sse
    }

    /// Reads until `delimiter`; returns what came before it (lossy UTF-8).
    fn until(&mut self, delimiter: &[u8]) -> String {
        loop {
            if let Some(at) = self.buf.windows(delimiter.len()).position(|w| w == delimiter) {
                let text = String::from_utf8_lossy(&self.buf[..at]).into_owned();
                self.buf.drain(..at + delimiter.len());
                return text;
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).expect("SSE read (timed out?)");
            assert!(n > 0, "the SSE stream ended early");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next event as (id, data), skipping comments. The response is
    /// chunked (HTTP/1.1, no length), so chunk-size lines are skipped too.
    fn next_event(&mut self) -> (u64, String) {
        loop {
            let mut id = None;
            let mut data: Vec<String> = Vec::new();
            loop {
                let line = self.until(b"\n");
                let line = line.trim_end_matches('\r');
                if line.is_empty() {
                    break;
                }
                if let Some(v) = line.strip_prefix("id: ") {
                    id = Some(v.parse().expect("numeric id"));
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data.push(v.to_owned());
                }
            }
            if let Some(id) = id {
                return (id, data.join("\n"));
            }
        }
    }
}

type Ws = tungstenite::WebSocket<TcpStream>;

fn ws_open(addr: SocketAddr, topic: &str) -> Ws {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    let (ws, response) = tungstenite::client(format!("ws://{addr}/ws?topic={topic}"), stream).expect("WebSocket handshake");
    assert_eq!(response.status().as_u16(), 101);
    ws
}

/// The next text message as (id, data).
fn ws_next(ws: &mut Ws) -> (u64, String) {
    loop {
        match ws.read().expect("WebSocket read (timed out?)") {
            Message::Text(text) => {
                let v: Value = serde_json::from_str(text.as_str()).unwrap_or_else(|e| panic!("frame {text:?}: {e}"));
                let id = v["id"].as_u64().unwrap_or_else(|| panic!("no id in {text}"));
                let data = v["data"].as_str().unwrap_or_else(|| panic!("no data in {text}")).to_owned();
                return (id, data);
            }
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected WebSocket message {other:?}"),
        }
    }
}

#[test]
fn runtimes_lists_the_baseline_apart() {
    let list = |args: &[&str]| {
        let out = rtlab().arg("runtimes").args(args).output().expect("rtlab runtimes");
        assert!(out.status.success());
        String::from_utf8(out.stdout).expect("UTF-8").lines().map(str::to_owned).collect::<Vec<_>>()
    };
    let full = list(&[]);
    assert!(full.iter().any(|r| r == "tokio"), "full labs: {full:?}");
    assert!(!full.iter().any(|r| r == "axum"), "`rtlab runtimes` must list full labs only: {full:?}");
    assert_eq!(list(&["--baselines"]), ["axum"]);
}

#[test]
fn publish_sse_and_ws_deliver_with_per_topic_ids() {
    let server = Server::start();
    let mut sse = Sse::open(server.addr, "news");
    let mut ws = ws_open(server.addr, "news");
    // The baseline has no replay: publish only once both are subscribed.
    server.wait_subscribers(1, 1);

    assert_eq!(server.publish("news", "first"), 1);
    assert_eq!(server.publish("other", "elsewhere"), 1, "ids are per topic");
    assert_eq!(server.publish("news", "two\nlines"), 2);
    ws.send(Message::text(r#"{"op":"publish","data":"from ws"}"#)).expect("WebSocket publish");
    // Both subscribers see all three, in id order; the WebSocket publish took id 3.
    let expected = [(1, "first".to_owned()), (2, "two\nlines".to_owned()), (3, "from ws".to_owned())];
    assert_eq!((0..3).map(|_| sse.next_event()).collect::<Vec<_>>(), expected);
    assert_eq!((0..3).map(|_| ws_next(&mut ws)).collect::<Vec<_>>(), expected);
    // Ids go on from there, whichever transport published.
    assert_eq!(server.publish("news", "after"), 4);
    assert_eq!(sse.next_event(), (4, "after".to_owned()));
    assert_eq!(ws_next(&mut ws), (4, "after".to_owned()));

    let (status, _) = server.request("POST", "/publish?topic=bad/topic", b"x");
    assert_eq!(status, 400, "an invalid topic is the contract's 400");
    let (status, _) = server.request("GET", "/sse", b"");
    assert_eq!(status, 400, "a missing topic is a 400");
    let (_, stats) = server.request("GET", "/stats", b"");
    let stats: Value = serde_json::from_str(&stats).expect("stats JSON");
    assert_eq!(stats["published"], 5, "{stats}");
}

#[test]
fn stops_on_sigterm_closing_streams_and_websockets() {
    let mut server = Server::start();
    let mut sse = Sse::open(server.addr, "bye");
    let mut ws = ws_open(server.addr, "bye");
    server.wait_subscribers(1, 1);
    // SAFETY: kill(2) on our own child's pid; no memory is involved.
    assert_eq!(unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) }, 0);

    // The WebSocket gets a close frame with 1001 (going away).
    let close = loop {
        match ws.read() {
            Ok(Message::Close(frame)) => break frame,
            Ok(_) => continue,
            Err(e) => panic!("expected a close frame, got {e}"),
        }
    };
    assert_eq!(close.map(|f| u16::from(f.code)), Some(1001));
    // The event stream ends: the last chunk, then end of file.
    let mut rest = Vec::new();
    sse.stream.read_to_end(&mut rest).expect("SSE end (timed out?)");
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.ends_with("0\r\n\r\n"), "the chunked stream must end properly, got {rest:?}");

    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = server.child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the server did not exit after SIGTERM");
        thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status}");
}
