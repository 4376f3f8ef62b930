//! The demo page, `/stats`, and graceful shutdown.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use tungstenite::Message;
use tungstenite::protocol::frame::coding::CloseCode;

use crate::common::*;

/// `GET /` is an HTML page that uses `EventSource` and `WebSocket`.
pub fn index_page_uses_eventsource_and_websocket(rt: &str) {
    let server = TestServer::start(rt, &[]);
    let (status, content_type, body) = server.get("/");
    assert_eq!(status, 200);
    assert_content_type(content_type.as_deref(), "text/html");
    assert!(body.contains("EventSource"), "the page must use EventSource");
    assert!(body.contains("WebSocket"), "the page must use WebSocket");
}

fn conn(stats: &serde_json::Value, kind: &str) -> i64 {
    stats["connections"][kind].as_i64().unwrap_or_else(|| panic!("/stats without connections.{kind}: {stats}"))
}

/// `/stats` counts open connections per transport (and their total),
/// accepted publishes, deliveries, drops and slow disconnects.
pub fn stats_count_connections_and_messages(rt: &str) {
    let server = TestServer::start(rt, &[]);
    let fresh = server.stats();
    for key in ["published", "delivered", "dropped", "slow_disconnects"] {
        assert_eq!(fresh[key], 0, "{key} on a fresh server: {fresh}");
    }
    for kind in ["long_poll", "sse", "ws", "echo"] {
        assert_eq!(conn(&fresh, kind), 0, "{kind} on a fresh server: {fresh}");
    }
    assert!(conn(&fresh, "http") >= 1, "the /stats request itself is an open HTTP connection: {fresh}");

    let sse: Vec<Sse> = (0..2).map(|_| Sse::connect(server.addr, "/sse?topic=st", "")).collect();
    let mut ws: Vec<Ws> = (0..3).map(|_| ws_connect(server.addr, "/ws?topic=st")).collect();
    let echo = ws_connect(server.addr, "/echo");
    let url = server.url("/poll?topic=st&wait=30");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut resp = agent().get(&url).call().expect("long poll");
        let _ = tx.send(resp.body_mut().read_to_string().expect("body"));
    });
    let stats = server.wait_stats("a held long poll", |s| s["connections"]["long_poll"] == 1);
    assert_eq!(conn(&stats, "sse"), 2, "{stats}");
    assert_eq!(conn(&stats, "ws"), 3, "{stats}");
    assert_eq!(conn(&stats, "echo"), 1, "{stats}");
    let sum: i64 = ["http", "long_poll", "sse", "ws", "echo"].iter().map(|k| conn(&stats, k)).sum();
    assert_eq!(conn(&stats, "total"), sum, "total is the sum: {stats}");

    // A rejected publish is not counted.
    let resp = server.agent().post(server.url("/publish?topic=st")).send(&b"\xff"[..]).expect("request");
    assert_eq!(resp.status().as_u16(), 400);
    assert_eq!(server.publish("st", "one"), 1);
    assert_eq!(server.publish("st", "two"), 2);
    let body = rx.recv_timeout(TIMEOUT).expect("the long poll was answered");
    let polled = poll_messages(&serde_json::from_str(&body).expect("JSON")).len() as u64;
    assert!(polled >= 1);
    for w in &mut ws {
        assert_eq!(ws_message(w).0, 1);
        assert_eq!(ws_message(w).0, 2);
    }

    let stats = server.wait_stats("the long poll answered", |s| s["connections"]["long_poll"] == 0);
    assert_eq!(stats["published"], 2, "{stats}");
    assert_eq!(stats["delivered"], 5 * 2 + polled, "2 messages to 5 subscribers, plus the long poll's: {stats}");
    assert_eq!(stats["dropped"], 0, "{stats}");
    assert_eq!(stats["slow_disconnects"], 0, "{stats}");

    drop(sse);
    drop(ws);
    drop(echo);
    let stats = server.wait_stats("every subscriber gone", |s| {
        ["sse", "ws", "echo", "long_poll"].iter().all(|k| s["connections"][k] == 0)
    });
    let sum: i64 = ["http", "long_poll", "sse", "ws", "echo"].iter().map(|k| conn(&stats, k)).sum();
    assert_eq!(conn(&stats, "total"), sum, "{stats}");
}

/// SIGTERM: WebSocket clients get a 1001 close frame, SSE streams end, a held
/// long poll is answered, and the process exits with status 0.
pub fn graceful_shutdown_on_sigterm(rt: &str) {
    shutdown_on(rt, libc::SIGTERM);
}

/// SIGINT does the same.
pub fn graceful_shutdown_on_sigint(rt: &str) {
    shutdown_on(rt, libc::SIGINT);
}

fn shutdown_on(rt: &str, signal: i32) {
    let mut server = TestServer::start(rt, &[]);
    let mut ws = ws_connect(server.addr, "/ws?topic=bye");
    let mut echo = ws_connect(server.addr, "/echo");
    let mut sse = Sse::connect(server.addr, "/sse?topic=bye", "");
    assert_eq!(server.publish("bye", "last words"), 1);
    assert_eq!(ws_message(&mut ws), (1, "last words".into()));
    assert_eq!(sse.message(), (1, "last words".into()));
    echo.send(Message::text("ping")).expect("send");
    assert_eq!(ws_read(&mut echo), Message::text("ping"));

    let mut long_poll = RawConn::connect(server.addr);
    long_poll.send(&request("GET", "/poll?topic=bye&after=1&wait=60", ""));
    server.wait_stats("a held long poll", |s| s["connections"]["long_poll"] == 1);

    server.signal(signal);

    for (name, client) in [("/ws", &mut ws), ("/echo", &mut echo)] {
        match ws_read(client) {
            Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Away, "{name}: close code"),
            other => panic!("{name}: expected a close frame with 1001, got {other:?}"),
        }
    }
    let rest = sse.drain_to_eof();
    assert!(rest.is_empty(), "no events after shutdown began: {rest:?}");
    let answer = long_poll.read_response();
    assert_eq!(answer.head.status, 200, "a held long poll is answered on shutdown");
    let v: serde_json::Value = serde_json::from_slice(&answer.body).expect("JSON");
    assert_eq!(v["last_id"], 1, "{v}");

    let status = server.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "exit status after the signal: {status:?}");
}
