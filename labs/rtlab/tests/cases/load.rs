//! Concurrency and backpressure: many publishers, many subscribers, stalled
//! consumers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

/// 8 threads × 50 publishes to one topic: the ids are unique and gap-free
/// 1..=400, each thread sees its own ids increase, every id holds the data
/// that was published under it, and a subscriber sees all 400 in order.
pub fn concurrent_publishers_get_unique_gapless_ids(rt: &str) {
    const THREADS: usize = 8;
    const EACH: usize = 50;
    let server = TestServer::start(rt, &[]);
    let mut sse = Sse::connect(server.addr, "/sse?topic=race", "");
    let mut ws = ws_connect(server.addr, "/ws?topic=race");

    let per_thread: Vec<Vec<(u64, String)>> = thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let server = &server;
                s.spawn(move || {
                    let agent = agent();
                    (0..EACH)
                        .map(|i| {
                            let data = format!("t{t}-{i}");
                            let mut resp =
                                agent.post(server.url("/publish?topic=race")).send(data.as_bytes()).expect("publish");
                            assert_eq!(resp.status().as_u16(), 200);
                            let v: serde_json::Value =
                                serde_json::from_str(&resp.body_mut().read_to_string().expect("body")).expect("JSON");
                            (v["id"].as_u64().expect("id"), data)
                        })
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("publisher thread")).collect()
    });

    let mut by_id = HashMap::new();
    for (t, published) in per_thread.iter().enumerate() {
        assert!(published.windows(2).all(|w| w[0].0 < w[1].0), "thread {t}'s ids must increase: {published:?}");
        for (id, data) in published {
            assert!(by_id.insert(*id, data.clone()).is_none(), "id {id} was given twice");
        }
    }
    let total = (THREADS * EACH) as u64;
    let mut ids: Vec<u64> = by_id.keys().copied().collect();
    ids.sort_unstable();
    assert_eq!(ids, (1..=total).collect::<Vec<_>>(), "ids must be exactly 1..={total}");

    let polled = poll_messages(&server.poll("race", 0));
    let expected: Vec<(u64, String)> = (1..=total).map(|id| (id, by_id[&id].clone())).collect();
    assert_eq!(polled, expected, "poll returns every message under the id it was given, in order");
    for want in &expected {
        assert_eq!(&sse.message(), want, "SSE subscriber");
        assert_eq!(&ws_message(&mut ws), want, "WebSocket subscriber");
    }
}

/// A subscriber on its own async connection: a WebSocket (tokio-tungstenite)
/// or a raw SSE stream.
pub(crate) enum Sub {
    Ws(Box<tokio_tungstenite::WebSocketStream<TcpStream>>),
    Sse(BufReader<TcpStream>),
}

/// Subscribes to `topic` over `/ws` (if `ws`) or `/sse`; returns once the
/// handshake is answered, that is, once the server has subscribed it.
pub(crate) async fn connect_sub(addr: SocketAddr, ws: bool, topic: &str) -> Result<Sub, String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    if ws {
        let (ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/ws?topic={topic}"), stream)
            .await
            .map_err(|e| format!("WebSocket handshake: {e}"))?;
        return Ok(Sub::Ws(Box::new(ws)));
    }
    let mut stream = BufReader::new(stream);
    let request = format!("GET /sse?topic={topic} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n");
    stream.get_mut().write_all(request.as_bytes()).await.map_err(|e| format!("write: {e}"))?;
    let mut line = String::new();
    stream.read_line(&mut line).await.map_err(|e| format!("read: {e}"))?;
    if !line.starts_with("HTTP/1.1 200 ") {
        return Err(format!("SSE status line {line:?}"));
    }
    loop {
        line.clear();
        if stream.read_line(&mut line).await.map_err(|e| format!("read: {e}"))? == 0 {
            return Err("end of file in the SSE response head".into());
        }
        if line == "\r\n" {
            return Ok(Sub::Sse(stream));
        }
    }
}

/// The first `k` messages a subscriber receives.
async fn receive(sub: Sub, k: u64) -> Result<Vec<(u64, String)>, String> {
    receive_until(sub, Some(k)).await
}

/// Every message a subscriber receives until the server ends its stream
/// (end of file, or a WebSocket close frame).
pub(crate) async fn receive_to_end(sub: Sub) -> Result<Vec<(u64, String)>, String> {
    receive_until(sub, None).await
}

/// Messages until `k` have come (`Some`), or until the stream ends (`None`:
/// the end is then expected, not an error).
async fn receive_until(sub: Sub, k: Option<u64>) -> Result<Vec<(u64, String)>, String> {
    let mut got = Vec::new();
    let more = |got: &Vec<(u64, String)>| k.is_none_or(|k| (got.len() as u64) < k);
    match sub {
        Sub::Ws(mut ws) => {
            while more(&got) {
                match ws.next().await {
                    Some(Ok(Message::Text(t))) => {
                        let v: serde_json::Value = serde_json::from_str(t.as_str()).map_err(|e| format!("{t}: {e}"))?;
                        got.push(message_of(&v));
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(_))) | None if k.is_none() => break,
                    other => return Err(format!("WebSocket: unexpected {other:?} after {got:?}")),
                }
            }
        }
        Sub::Sse(mut stream) => {
            let mut line = String::new();
            let mut block = Vec::new();
            while more(&got) {
                line.clear();
                if stream.read_line(&mut line).await.map_err(|e| format!("read: {e}"))? == 0 {
                    if k.is_none() {
                        break;
                    }
                    return Err(format!("SSE: end of file after {got:?}"));
                }
                let l = line.trim_end_matches('\n').to_owned();
                if !l.is_empty() {
                    block.push(l);
                    continue;
                }
                if let Some(ev) = parse_sse_block(&block) {
                    match (ev.event, ev.id) {
                        (None, Some(id)) => got.push((id, ev.data)),
                        other => return Err(format!("SSE: unexpected event {other:?}")),
                    }
                }
                block.clear();
            }
        }
    }
    Ok(got)
}

/// 1,000 concurrent subscribers (500 SSE, 500 WebSocket) each receive every
/// one of K messages exactly once and in order.
pub fn thousand_subscribers_receive_everything_in_order(rt: &str) {
    const SUBSCRIBERS: usize = 1000;
    const K: u64 = 20;
    let server = TestServer::start(rt, &[]);
    let addr = server.addr;
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime");

    let subs: Vec<Sub> = runtime.block_on(async {
        let connecting = futures_util::stream::iter((0..SUBSCRIBERS).map(|i| connect_sub(addr, i % 2 == 0, "crowd")))
            .buffer_unordered(64)
            .collect::<Vec<_>>();
        let results = tokio::time::timeout(Duration::from_secs(30), connecting)
            .await
            .expect("1000 subscribers could not connect within 30 s");
        results.into_iter().collect::<Result<Vec<_>, _>>().unwrap_or_else(|e| panic!("a subscriber failed: {e}"))
    });
    // Every subscriber has its handshake answer, so it is subscribed.
    let stats = server.stats();
    assert_eq!(stats["connections"]["ws"], 500, "{stats}");
    assert_eq!(stats["connections"]["sse"], 500, "{stats}");

    let expected: Vec<(u64, String)> = (1..=K).map(|i| (i, format!("crowd message {i}\nsecond line"))).collect();
    for (id, data) in &expected {
        assert_eq!(server.publish("crowd", data), *id);
    }

    let results = runtime.block_on(async {
        let tasks: Vec<_> = subs.into_iter().map(|sub| tokio::spawn(receive(sub, K))).collect();
        let all = futures_util::future::join_all(tasks);
        tokio::time::timeout(Duration::from_secs(30), all)
            .await
            .expect("subscribers did not receive K messages within 30 s")
    });
    for (i, r) in results.into_iter().enumerate() {
        let got = r.expect("subscriber task").unwrap_or_else(|e| panic!("subscriber {i}: {e}"));
        assert_eq!(got, expected, "subscriber {i} ({})", if i % 2 == 0 { "ws" } else { "sse" });
    }
    let stats = server.stats();
    assert_eq!(stats["published"], K, "{stats}");
    assert_eq!(stats["delivered"], K * SUBSCRIBERS as u64, "every subscriber got every message: {stats}");
    assert_eq!(stats["dropped"], 0, "{stats}");
    assert_eq!(stats["slow_disconnects"], 0, "{stats}");
}

const FLOOD_MESSAGES: u64 = 800;
const FLOOD_SIZE: usize = 4000;
/// At most this many published messages may be unread by a fast subscriber,
/// so its outbox stays far below the 16 KiB budget — with room for one more
/// message still counted in flight: a client can read bytes before the
/// server's `write` has returned and told the core they were written.
const FLOOD_WINDOW: u64 = 1;

fn flood_payload(id: u64) -> String {
    let head = format!("{id}:");
    format!("{head}{}", "z".repeat(FLOOD_SIZE - head.len()))
}

/// Runs the flood: two stalled subscribers (raw SSE and WebSocket with a 4 KiB
/// receive buffer, set before connect, that never read) and two fast ones
/// (SSE and tungstenite) on one topic; publishes 800 × 4000 bytes (3.2 MB),
/// pacing the publisher on the fast subscribers so that only the stalled
/// ones fall behind. Returns the stalled clients and the fast ones.
fn flood(server: &TestServer) -> (Sse, RawWs, Sse, Ws) {
    let stalled_sse = Sse::open(RawConn::connect_small_rcvbuf(server.addr, 4096), "/sse?topic=flood", "");
    let stalled_ws = RawWs::upgrade(RawConn::connect_small_rcvbuf(server.addr, 4096), "/ws?topic=flood");
    let mut fast_sse = Sse::connect(server.addr, "/sse?topic=flood", "");
    let mut fast_ws = ws_connect(server.addr, "/ws?topic=flood");

    let (tx, rx) = mpsc::channel::<(usize, u64)>();
    let sse_tx = tx.clone();
    let sse_reader = thread::spawn(move || {
        for want in 1..=FLOOD_MESSAGES {
            let ev = fast_sse.next_event(TIMEOUT).expect("the fast SSE subscriber was disconnected");
            assert_eq!(ev.event, None, "the fast SSE subscriber got {ev:?} before id {want}");
            assert_eq!(ev.id, Some(want), "the fast SSE subscriber must get every message in order");
            assert!(ev.data == flood_payload(want), "fast SSE subscriber: wrong data for id {want}");
            let _ = sse_tx.send((0, want));
        }
        fast_sse
    });
    let ws_reader = thread::spawn(move || {
        for want in 1..=FLOOD_MESSAGES {
            let v = ws_json(&mut fast_ws);
            assert!(v.get("missed").is_none(), "the fast WebSocket subscriber got {v} before id {want}");
            let (id, data) = message_of(&v);
            assert_eq!(id, want, "the fast WebSocket subscriber must get every message in order");
            assert!(data == flood_payload(want), "fast WebSocket subscriber: wrong data for id {want}");
            let _ = tx.send((1, want));
        }
        fast_ws
    });

    let mut seen = [0u64; 2];
    for id in 1..=FLOOD_MESSAGES {
        while seen[0].min(seen[1]) + FLOOD_WINDOW + 1 < id {
            match rx.recv_timeout(TIMEOUT) {
                Ok((who, n)) => seen[who] = n,
                Err(_) => {
                    let _ = sse_reader.join();
                    let _ = ws_reader.join();
                    panic!("a fast subscriber stopped receiving (SSE at {}, WebSocket at {})", seen[0], seen[1]);
                }
            }
        }
        assert_eq!(server.publish("flood", flood_payload(id)), id);
    }
    let fast_sse = sse_reader.join().expect("the fast SSE subscriber");
    let fast_ws = ws_reader.join().expect("the fast WebSocket subscriber");
    (stalled_sse, stalled_ws, fast_sse, fast_ws)
}

/// Disconnect policy: the stalled subscribers are cut off (counted in
/// `slow_disconnects`) while the fast ones get everything. When the stalled
/// clients finally read they find a gap-free prefix of the messages, then the
/// end of the stream: after a 1008 close frame on WebSocket.
pub fn slow_consumer_is_disconnected(rt: &str) {
    let server = TestServer::start(
        rt,
        &["--outbox-budget", "16384", "--send-buffer", "4096", "--policy", "disconnect", "--close-linger", "30"],
    );
    let (mut stalled_sse, mut stalled_ws, _fast_sse, _fast_ws) = flood(&server);

    let stats = server.stats();
    assert_eq!(stats["slow_disconnects"], 2, "both stalled subscribers are cut off, no one else: {stats}");
    assert!(stats["dropped"].as_u64().expect("dropped") >= 2, "{stats}");
    assert_eq!(stats["published"], FLOOD_MESSAGES, "{stats}");

    let events = stalled_sse.drain_to_eof();
    assert!(!events.is_empty(), "the stalled SSE client got nothing at all");
    for (i, ev) in events.iter().enumerate() {
        assert_eq!((ev.event.as_deref(), ev.id), (None, Some(i as u64 + 1)), "a gap-free prefix of messages");
        assert!(ev.data == flood_payload(i as u64 + 1), "wrong data for id {}", i + 1);
    }
    assert!((events.len() as u64) < FLOOD_MESSAGES, "the stalled SSE client was not cut off");

    let (frames, code) = stalled_ws.until_close(TIMEOUT);
    assert!(!frames.is_empty(), "the stalled WebSocket client got nothing at all");
    for (i, f) in frames.iter().enumerate() {
        let (id, data) = message_of(&f.json());
        assert_eq!(id, i as u64 + 1, "a gap-free prefix of messages");
        assert!(data == flood_payload(id), "wrong data for id {id}");
    }
    assert!((frames.len() as u64) < FLOOD_MESSAGES, "the stalled WebSocket client was not cut off");
    assert_eq!(code, Some(1008), "a slow consumer is closed with 1008");
    stalled_ws.expect_eof("after the 1008 close");
}

/// What a stalled client read under drop-oldest (a message's data is
/// checked as it is read, so that a failure does not print megabytes).
#[derive(Debug)]
enum Got {
    Message(u64),
    Missed(u64, u64),
}

/// Walks what a stalled client received under drop-oldest: messages and
/// missed markers must together cover 1..=`last` exactly once, in order.
/// Returns the number of markers.
fn check_coverage(items: &[Got], last: u64, who: &str) -> usize {
    let mut next = 1;
    let mut markers = 0;
    for item in items {
        match item {
            Got::Message(id) => {
                assert_eq!(*id, next, "{who}: message {id} out of order (expected {next}); got {items:?}");
                next += 1;
            }
            Got::Missed(from, to) => {
                assert_eq!(*from, next, "{who}: missed range {from}..={to} should start at {next}");
                assert!(to >= from, "{who}: empty missed range {from}..={to}");
                next = to + 1;
                markers += 1;
            }
        }
    }
    assert_eq!(next, last + 1, "{who}: messages and missed ranges must reach {last}");
    markers
}

/// Drop-oldest policy: the stalled subscribers are not cut off; when they
/// read they get, in order, messages and `missed` markers that together
/// account for every id, and they stay subscribed.
pub fn slow_consumer_drops_oldest(rt: &str) {
    let server =
        TestServer::start(rt, &["--outbox-budget", "16384", "--send-buffer", "4096", "--policy", "drop-oldest"]);
    let (mut stalled_sse, mut stalled_ws, mut fast_sse, mut fast_ws) = flood(&server);

    let stats = server.stats();
    assert_eq!(stats["slow_disconnects"], 0, "{stats}");
    assert!(stats["dropped"].as_u64().expect("dropped") > 0, "{stats}");
    assert_eq!(stats["connections"]["sse"], 2, "{stats}");
    assert_eq!(stats["connections"]["ws"], 2, "{stats}");

    let deadline = Instant::now() + TIMEOUT;
    let mut items = Vec::new();
    let mut last = 0;
    while last < FLOOD_MESSAGES {
        assert!(Instant::now() < deadline, "the stalled SSE client did not catch up: {items:?}");
        let ev = stalled_sse.next_event(TIMEOUT).expect("the stalled SSE client was disconnected");
        match (ev.event.as_deref(), ev.id) {
            (None, Some(id)) => {
                assert!(ev.data == flood_payload(id), "stalled SSE client: wrong data for id {id}");
                last = id;
                items.push(Got::Message(id));
            }
            (Some("missed"), None) => {
                let v: serde_json::Value = serde_json::from_str(&ev.data).expect("missed data is JSON");
                let (from, to) = range_of(&v);
                last = to;
                items.push(Got::Missed(from, to));
            }
            other => panic!("stalled SSE client: unexpected event {other:?}"),
        }
    }
    let markers = check_coverage(&items, FLOOD_MESSAGES, "stalled SSE client");
    assert!(markers >= 1, "the stalled SSE client must be told it missed messages");

    let mut items = Vec::new();
    let mut last = 0;
    while last < FLOOD_MESSAGES {
        assert!(Instant::now() < deadline, "the stalled WebSocket client did not catch up");
        let f = stalled_ws.frame();
        if f.opcode == PING {
            continue;
        }
        let v = f.json();
        if let Some(range) = v.get("missed") {
            let (from, to) = range_of(range);
            last = to;
            items.push(Got::Missed(from, to));
        } else {
            let (id, data) = message_of(&v);
            assert!(data == flood_payload(id), "stalled WebSocket client: wrong data for id {id}");
            last = id;
            items.push(Got::Message(id));
        }
    }
    let markers = check_coverage(&items, FLOOD_MESSAGES, "stalled WebSocket client");
    assert!(markers >= 1, "the stalled WebSocket client must be told it missed messages");

    // Both are still subscribed.
    assert_eq!(server.publish("flood", flood_payload(FLOOD_MESSAGES + 1)), FLOOD_MESSAGES + 1);
    let ev = stalled_sse.next_event(TIMEOUT).expect("still subscribed");
    assert_eq!(ev.id, Some(FLOOD_MESSAGES + 1));
    let (id, _) = message_of(&stalled_ws.frame().json());
    assert_eq!(id, FLOOD_MESSAGES + 1);
    assert_eq!(fast_sse.message().0, FLOOD_MESSAGES + 1);
    assert_eq!(ws_message(&mut fast_ws).0, FLOOD_MESSAGES + 1);
}
