//! The framework baseline (`rtlab serve --runtime axum`) through the real
//! binary: what it does serve — publish, SSE and WebSocket with per-topic ids
//! — works, `rtlab runtimes` keeps it apart from the full labs, and it stops
//! cleanly. It is not expected to pass the conformance suite (no replay, no
//! polling, no echo), so this is its only test.
//!
//! Every read is bounded by [`TIMEOUT`], which only a failure ever reaches.

use std::net::SocketAddr;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use rtlab_testkit::ws::{Ws, ws_connect, ws_read, ws_text};
use rtlab_testkit::{Launch, RawConn, Running, Sse, TIMEOUT, request};
use serde_json::Value;
use tungstenite::Message;

/// The rtlab binary that cargo built for these tests.
fn rtlab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rtlab"))
}

/// `rtlab serve --runtime axum` on a free port; killed when dropped (its
/// stderr is printed if the test fails).
struct Server(Running);

impl Server {
    fn start() -> Server {
        let process = Launch::serve(env!("CARGO_BIN_EXE_rtlab"), "axum")
            .env("RUST_LOG", "warn")
            .start()
            .unwrap_or_else(|e| panic!("starting the axum baseline failed: {e}"));
        Server(process)
    }

    fn addr(&self) -> SocketAddr {
        self.0.addr()
    }

    /// One request on a fresh connection (`Connection: close`): status and body.
    fn request(&self, method: &str, target: &str, body: &[u8]) -> (u16, String) {
        let mut conn = RawConn::connect(self.addr());
        conn.send(&request(method, target, &format!("Content-Length: {}\r\nConnection: close\r\n", body.len())));
        conn.send(body);
        let response = conn.read_response();
        (response.head.status, response.text())
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

/// A baseline server with an SSE subscriber (a raw socket; the stream is
/// chunked, HTTP/1.1 without a length, and the kit's reader decodes it) and
/// a WebSocket subscriber on `topic`, both counted by `/stats`.
fn subscribed(topic: &str) -> (Server, Sse, Ws) {
    let server = Server::start();
    let sse = Sse::connect(server.addr(), &format!("/sse?topic={topic}"), "");
    let ws = ws_connect(server.addr(), &format!("/ws?topic={topic}"));
    server.wait_subscribers(1, 1);
    (server, sse, ws)
}

/// The next text message as (id, data).
fn ws_next(ws: &mut Ws) -> (u64, String) {
    let text = ws_text(ws);
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("frame {text:?}: {e}"));
    let id = v["id"].as_u64().unwrap_or_else(|| panic!("no id in {text}"));
    let data = v["data"].as_str().unwrap_or_else(|| panic!("no data in {text}")).to_owned();
    (id, data)
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
    // The baseline has no replay: publish only once both are subscribed.
    let (server, mut sse, mut ws) = subscribed("news");

    assert_eq!(server.publish("news", "first"), 1);
    assert_eq!(server.publish("other", "elsewhere"), 1, "ids are per topic");
    assert_eq!(server.publish("news", "two\nlines"), 2);
    ws.send(Message::text(r#"{"op":"publish","data":"from ws"}"#)).expect("WebSocket publish");
    // Both subscribers see all three, in id order; the WebSocket publish took id 3.
    let expected = [(1, "first".to_owned()), (2, "two\nlines".to_owned()), (3, "from ws".to_owned())];
    assert_eq!((0..3).map(|_| sse.message()).collect::<Vec<_>>(), expected);
    assert_eq!((0..3).map(|_| ws_next(&mut ws)).collect::<Vec<_>>(), expected);
    // Ids go on from there, whichever transport published.
    assert_eq!(server.publish("news", "after"), 4);
    assert_eq!(sse.message(), (4, "after".to_owned()));
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
    let (server, mut sse, mut ws) = subscribed("bye");
    server.0.signal(libc::SIGTERM).expect("SIGTERM");

    // The WebSocket gets a close frame with 1001 (going away).
    let close = loop {
        if let Message::Close(frame) = ws_read(&mut ws) {
            break frame;
        }
    };
    assert_eq!(close.map(|f| u16::from(f.code)), Some(1001));
    // The event stream ends: the last chunk, then end of file.
    assert!(sse.is_chunked(), "an HTTP/1.1 stream without a length is chunked");
    sse.drain_to_eof();
    sse.expect_eof("the chunked stream must end properly");

    let status = server.0.wait_exit(TIMEOUT).expect("the server did not exit after SIGTERM");
    assert!(status.success(), "exit status {status}");
}
