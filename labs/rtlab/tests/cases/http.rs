//! Publishing, polling and the HTTP error statuses.

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::*;

/// Ids start at 1 and go up by 1 per topic, whichever transport published:
/// `POST /publish` and `/ws` publishes interleaved on one topic.
pub fn ids_are_sequential_per_topic_across_transports(rt: &str) {
    let server = TestServer::start(rt, &[]);
    let mut ws = ws_connect(server.addr, "/ws?topic=ids");
    for round in 0..3u64 {
        let post = format!("post {round}");
        assert_eq!(server.publish("ids", &post), 2 * round + 1, "POST publish #{round}");
        assert_eq!(ws_message(&mut ws), (2 * round + 1, post), "subscriber sees the POSTed message");
        let over_ws = format!("ws {round}");
        ws_publish(&mut ws, &over_ws);
        assert_eq!(ws_message(&mut ws), (2 * round + 2, over_ws), "the /ws publish gets the next id");
    }
    // Another topic has its own ids, and its messages do not reach "ids".
    assert_eq!(server.publish("other", "x"), 1);
    assert_eq!(server.publish("other", "y"), 2);
    assert_eq!(server.publish("ids", "post 3"), 7);
    assert_eq!(ws_message(&mut ws), (7, "post 3".to_owned()), "no message of another topic in between");

    let poll = server.poll("ids", 0);
    let expected: Vec<(u64, String)> = vec![
        (1, "post 0".into()),
        (2, "ws 0".into()),
        (3, "post 1".into()),
        (4, "ws 1".into()),
        (5, "post 2".into()),
        (6, "ws 2".into()),
        (7, "post 3".into()),
    ];
    assert_eq!(poll_messages(&poll), expected);
    assert_eq!(poll["last_id"], 7);
    assert_eq!(poll_messages(&server.poll("other", 0)), vec![(1, "x".into()), (2, "y".into())]);
}

/// Messages arrive unchanged (quotes, backslashes, control characters,
/// non-ASCII, empty) on poll and WebSocket, and on SSE up to its line rules.
pub fn message_data_round_trips_unchanged(rt: &str) {
    let server = TestServer::start(rt, &[]);
    let mut ws = ws_connect(server.addr, "/ws?topic=rt");
    let mut sse = Sse::connect(server.addr, "/sse?topic=rt", "");
    let samples = [
        "plain",
        "with \"quotes\" and \\backslashes\\ and a \t tab",
        "ünïcødé ✓ 日本語 🦀",
        "",
        "{\"looks\":\"like json\"}",
        "\u{1}\u{1f} control characters",
    ];
    for (i, data) in samples.iter().enumerate() {
        assert_eq!(server.publish("rt", data), i as u64 + 1);
    }
    let polled = poll_messages(&server.poll("rt", 0));
    for (i, data) in samples.iter().enumerate() {
        let id = i as u64 + 1;
        assert_eq!(polled[i], (id, data.to_string()), "poll");
        assert_eq!(ws_message(&mut ws), (id, data.to_string()), "WebSocket");
        assert_eq!(sse.message(), (id, data.to_string()), "SSE");
    }
}

/// A multi-line message: one `data:` line per line on SSE, the exact text on
/// WebSocket and poll.
pub fn multiline_data_on_every_transport(rt: &str) {
    let server = TestServer::start(rt, &[]);
    let mut ws = ws_connect(server.addr, "/ws?topic=ml");
    let mut sse = Sse::connect(server.addr, "/sse?topic=ml", "");
    let data = "line one\nline two\n\nline four";
    assert_eq!(server.publish("ml", data), 1);

    let block = sse.next_block(TIMEOUT).expect("an SSE event");
    let epoch = server.poll("ml", 0)["epoch"].as_str().expect("an epoch").to_owned();
    let id = format!("id: {epoch}-1");
    assert_eq!(block, [id.as_str(), "data: line one", "data: line two", "data: ", "data: line four"]);
    let ev = parse_sse_block(&block).expect("an event");
    assert_eq!((ev.data.as_str(), ev.data_lines), (data, 4));

    assert_eq!(ws_message(&mut ws), (1, data.to_owned()));
    assert_eq!(poll_messages(&server.poll("ml", 0)), vec![(1, data.to_owned())]);

    // A CRLF message keeps its bytes on poll and WebSocket; on SSE each line
    // is still its own data line.
    let crlf = "first\r\nsecond";
    assert_eq!(server.publish("ml", crlf), 2);
    assert_eq!(ws_message(&mut ws), (2, crlf.to_owned()));
    assert_eq!(poll_messages(&server.poll("ml", 1)), vec![(2, crlf.to_owned())]);
    let ev = sse.next_event(TIMEOUT).expect("an SSE event");
    assert_eq!((ev.id, ev.data.as_str(), ev.data_lines), (Some(2), "first\nsecond", 2));
}

/// Short polls: `after` filters, `last_id` is the newest id, an unknown topic
/// is empty, and no `missed` member appears when nothing was missed.
pub fn short_poll_after(rt: &str) {
    let server = TestServer::start(rt, &[]);
    let empty = server.poll("sp", 0);
    assert_eq!(poll_messages(&empty), vec![]);
    assert_eq!(empty["last_id"], 0);
    assert!(empty.get("missed").is_none(), "nothing missed on an empty topic: {empty}");

    for i in 1..=3 {
        assert_eq!(server.publish("sp", format!("m{i}")), i);
    }
    let all = server.get_json("/poll?topic=sp");
    assert_eq!(poll_messages(&all), vec![(1, "m1".into()), (2, "m2".into()), (3, "m3".into())], "after defaults to 0");
    assert_eq!(all["last_id"], 3);
    assert!(all.get("missed").is_none(), "{all}");

    let tail = server.poll("sp", 2);
    assert_eq!(poll_messages(&tail), vec![(3, "m3".into())]);
    assert_eq!(tail["last_id"], 3);

    let none = server.poll("sp", 3);
    assert_eq!(poll_messages(&none), vec![]);
    assert_eq!(none["last_id"], 3);

    let beyond = server.poll("sp", 10);
    assert_eq!(poll_messages(&beyond), vec![]);
    assert_eq!(beyond["last_id"], 3);
}

/// A held long poll is answered as soon as a message is published.
pub fn long_poll_wakes_on_publish(rt: &str) {
    let server = TestServer::start(rt, &[]);
    let url = server.url("/poll?topic=lp&after=0&wait=30");
    let (tx, rx) = mpsc::channel();
    let waiter = thread::spawn(move || {
        let started = Instant::now();
        let mut resp = agent().get(&url).call().expect("long poll");
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_string().expect("long poll body");
        let _ = tx.send((started.elapsed(), status, body));
    });
    server.wait_stats("one held long poll", |s| s["connections"]["long_poll"] == 1);
    assert!(rx.try_recv().is_err(), "the long poll answered before anything was published");

    assert_eq!(server.publish("lp", "wake up"), 1);
    let (elapsed, status, body) = rx.recv_timeout(TIMEOUT).expect("the long poll was not answered after a publish");
    waiter.join().expect("long poll thread");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(poll_messages(&v), vec![(1, "wake up".into())]);
    assert_eq!(v["last_id"], 1);
    assert!(elapsed < Duration::from_secs(30), "answered only at the deadline");
    server.wait_stats("no held long poll", |s| s["connections"]["long_poll"] == 0);

    // With something newer than `after` already there, it answers at once.
    let (tx, rx) = mpsc::channel();
    let url = server.url("/poll?topic=lp&after=0&wait=30");
    thread::spawn(move || {
        let mut resp = agent().get(&url).call().expect("long poll");
        let _ = tx.send(resp.body_mut().read_to_string().expect("body"));
    });
    let body = rx.recv_timeout(TIMEOUT).expect("a long poll with messages available must answer at once");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(poll_messages(&v), vec![(1, "wake up".into())]);
}

/// A long poll with nothing new answers `messages: []` when `wait` expires.
pub fn long_poll_times_out_empty(rt: &str) {
    let server = TestServer::start(rt, &[]);
    let started = Instant::now();
    let v = server.get_json("/poll?topic=quiet&wait=1");
    let elapsed = started.elapsed();
    assert_eq!(poll_messages(&v), vec![]);
    assert_eq!(v["last_id"], 0);
    assert!(elapsed >= Duration::from_millis(950), "answered after {elapsed:?}, before wait=1 expired");

    // Same with messages that are all at or before `after`.
    assert_eq!(server.publish("quiet", "old"), 1);
    let started = Instant::now();
    let v = server.get_json("/poll?topic=quiet&after=1&wait=1");
    let elapsed = started.elapsed();
    assert_eq!(poll_messages(&v), vec![]);
    assert_eq!(v["last_id"], 1);
    assert!(elapsed >= Duration::from_millis(950), "answered after {elapsed:?}, before wait=1 expired");
}

/// Sends `raw` on a fresh connection and checks the error answer: `status`,
/// a one-line `text/plain` reason, and what happens to the connection. The
/// statuses after which the request boundary is lost (400, 411, 413, 431)
/// must carry `Connection: close` and be followed by a clean close; for the
/// others, the connection must behave as the response says. Returns the head.
fn expect_error(server: &TestServer, raw: &[u8], status: u16) -> Head {
    let what = String::from_utf8_lossy(&raw[..raw.len().min(80)]).into_owned();
    let mut conn = RawConn::connect(server.addr);
    conn.send(raw);
    let resp = conn.read_response();
    assert_eq!(resp.head.status, status, "{what:?}: body {:?}", String::from_utf8_lossy(&resp.body));
    assert_content_type(resp.head.header("content-type"), "text/plain");
    let text = resp.text();
    assert!(
        text.len() > 1 && text.ends_with('\n') && text.matches('\n').count() == 1,
        "{what:?}: the body must be one line of reason, got {text:?}"
    );
    let closes = resp.head.connection_close();
    if matches!(status, 400 | 411 | 413 | 431) {
        assert!(closes, "{what:?}: a {status} must say Connection: close: {:?}", resp.head.headers);
    }
    if closes {
        conn.expect_eof(&what);
    } else {
        conn.send(&request("GET", "/stats", ""));
        let next = conn.read_response();
        assert_eq!(next.head.status, 200, "{what:?}: the connection was kept, so it must serve the next request");
    }
    resp.head
}

/// 400 for invalid topics and parameters, bad headers, malformed request
/// lines; nothing is published by any of them.
pub fn bad_requests_get_400(rt: &str) {
    let server = TestServer::start(rt, &[]);
    let long_topic = "x".repeat(65);
    let cases: Vec<Vec<u8>> = vec![
        request("GET", "/poll", ""),
        request("GET", "/poll?topic=", ""),
        request("GET", "/poll?topic=a/b", ""),
        request("GET", "/poll?topic=a%20b", ""),
        request("GET", "/poll?topic=caf%C3%A9", ""),
        request("GET", &format!("/poll?topic={long_topic}"), ""),
        request("GET", "/sse", ""),
        request("GET", "/sse?topic=a!", ""),
        request("GET", "/ws?after=1", ""),
        request("GET", "/poll?topic=a&after=-1", ""),
        request("GET", "/poll?topic=a&after=abc", ""),
        request("GET", "/poll?topic=a&wait=0", ""),
        request("GET", "/poll?topic=a&wait=61", ""),
        request("GET", "/poll?topic=a&wait=1.5", ""),
        request("GET", "/poll?topic=a&wait=", ""),
        request("GET", "/sse?topic=a", "Last-Event-ID: nope\r\n"),
        request("GET", "/sse?topic=a&lastEventId=x", ""),
        request(
            "GET",
            "/ws?topic=a&after=z",
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
        ),
        // A plain GET of /ws is not an upgrade.
        request("GET", "/ws?topic=a", ""),
        request("POST", "/publish", "Content-Length: 2\r\n").into_iter().chain(*b"hi").collect(),
        request("POST", "/publish?topic=", "Content-Length: 2\r\n").into_iter().chain(*b"hi").collect(),
        request("POST", "/publish?topic=a:b", "Content-Length: 2\r\n").into_iter().chain(*b"hi").collect(),
        request("POST", "/publish?topic=a", "Content-Length: nope\r\n"),
        request("POST", "/publish?topic=a", "Content-Length: 2\r\nContent-Length: 3\r\n")
            .into_iter()
            .chain(*b"hi")
            .collect(),
        // Malformed request lines and garbage.
        b"GARBAGE\r\n\r\n".to_vec(),
        b"GET /poll?topic=a HTTX/1.1\r\n\r\n".to_vec(),
        b"GET /poll?topic=a b HTTP/1.1\r\n\r\n".to_vec(),
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n".to_vec(),
        b"GET /stats HTTP/1.1\r\nBad Header Name: x\r\n\r\n".to_vec(),
    ];
    for raw in &cases {
        expect_error(&server, raw, 400);
    }
    // Nothing was published, nothing was subscribed, and the server still serves.
    let stats = server.stats();
    assert_eq!(stats["published"], 0, "{stats}");
    assert_eq!(server.poll("a", 0)["last_id"], 0);
    assert_eq!(server.publish("a", "still fine"), 1);
}

/// 404 for unknown paths.
pub fn unknown_path_gets_404(rt: &str) {
    let server = TestServer::start(rt, &[]);
    for raw in [
        request("GET", "/nope", ""),
        request("GET", "/publish/extra?topic=a", ""),
        request("GET", "/Poll?topic=a", ""),
        request("POST", "/nope?topic=a", "Content-Length: 0\r\n"),
        request("GET", "/favicon.ico", ""),
    ] {
        expect_error(&server, &raw, 404);
    }
    assert_eq!(server.publish("a", "still fine"), 1);
}

/// 405, with an `Allow` header naming the right method (RFC 9110 §15.5.6).
pub fn wrong_method_gets_405(rt: &str) {
    let server = TestServer::start(rt, &[]);
    for (raw, allow) in [
        (request("GET", "/publish?topic=a", ""), "POST"),
        (request("PUT", "/publish?topic=a", "Content-Length: 0\r\n"), "POST"),
        (request("POST", "/poll?topic=a", "Content-Length: 0\r\n"), "GET"),
        (request("DELETE", "/sse?topic=a", ""), "GET"),
        (request("POST", "/ws?topic=a", "Content-Length: 0\r\n"), "GET"),
        (request("POST", "/echo", "Content-Length: 0\r\n"), "GET"),
        (request("POST", "/stats", "Content-Length: 0\r\n"), "GET"),
        (request("PUT", "/", "Content-Length: 0\r\n"), "GET"),
    ] {
        let head = expect_error(&server, &raw, 405);
        let allowed = head.header("allow").unwrap_or_else(|| panic!("405 without Allow: {:?}", head.headers));
        assert!(
            allowed.split(',').any(|m| m.trim() == allow),
            "{:?}: Allow {allowed:?} should list {allow}",
            String::from_utf8_lossy(&raw)
        );
    }
    let stats = server.stats();
    assert_eq!(stats["published"], 0, "{stats}");
}

/// A chunked upload is refused with 411 and nothing is stored.
pub fn chunked_publish_gets_411(rt: &str) {
    let server = TestServer::start(rt, &[]);
    let mut raw = request("POST", "/publish?topic=ch", "Transfer-Encoding: chunked\r\n");
    raw.extend_from_slice(b"5\r\nhello\r\n0\r\n\r\n");
    expect_error(&server, &raw, 411);
    assert_eq!(server.poll("ch", 0)["last_id"], 0, "a refused publish stores nothing");
    assert_eq!(server.publish("ch", "hello"), 1);
}

/// `Content-Length` together with `Transfer-Encoding` is `400` with a reason
/// that says so, and the connection closes (RFC 9112 §6.1: the two disagree
/// on where the body ends, the classic request-smuggling split); nothing is
/// stored.
pub fn content_length_with_transfer_encoding_gets_400(rt: &str) {
    let server = TestServer::start(rt, &[]);
    for extra in [
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
    ] {
        let mut raw = request("POST", "/publish?topic=cl", extra);
        raw.extend_from_slice(b"hello");
        let mut conn = RawConn::connect(server.addr);
        conn.send(&raw);
        let resp = conn.read_response();
        assert_eq!(resp.head.status, 400, "{extra:?}: {}", resp.text());
        assert!(resp.text().contains("Content-Length and Transfer-Encoding"), "{extra:?}: {:?}", resp.text());
        assert!(resp.head.connection_close(), "{extra:?}");
        conn.expect_eof(extra);
    }
    assert_eq!(server.poll("cl", 0)["last_id"], 0, "a refused publish stores nothing");
}

/// A body larger than the limit is refused with 413, judged from
/// Content-Length alone (the body is never sent here, so a server that
/// waited for it would time out); the limit itself is accepted.
pub fn oversized_publish_gets_413(rt: &str) {
    // The default limit: 64 KiB.
    let server = TestServer::start(rt, &[]);
    expect_error(&server, &request("POST", "/publish?topic=big", "Content-Length: 65537\r\n"), 413);
    expect_error(&server, &request("POST", "/publish?topic=big", "Content-Length: 1000000000\r\n"), 413);
    assert_eq!(server.poll("big", 0)["last_id"], 0);
    // A client that sends the oversized body anyway (as curl does) still gets
    // the answer: the server must not reset the connection while unread input
    // is pending (a reset can destroy the response before the client reads it).
    let mut conn = RawConn::connect(server.addr);
    let mut raw = request("POST", "/publish?topic=big", "Content-Length: 300000\r\n");
    raw.extend(std::iter::repeat_n(b'x', 300_000));
    conn.send(&raw);
    let resp = conn.read_response();
    assert_eq!(resp.head.status, 413, "{}", resp.text());
    assert!(resp.head.connection_close());
    conn.expect_eof("after a 413 whose body was sent anyway");
    let exactly = "a".repeat(65536);
    assert_eq!(server.publish("big", &exactly), 1, "a message of exactly 64 KiB is accepted");
    assert_eq!(poll_messages(&server.poll("big", 0))[0].1.len(), 65536);
    drop(server);

    // A configured limit.
    let server = TestServer::start(rt, &["--max-message", "1024"]);
    expect_error(&server, &request("POST", "/publish?topic=big", "Content-Length: 1025\r\n"), 413);
    assert_eq!(server.poll("big", 0)["last_id"], 0);
    assert_eq!(server.publish("big", "b".repeat(1024)), 1);
}

/// A request head over 8 KiB, or with more than 48 header fields, gets 431.
pub fn oversized_head_gets_431(rt: &str) {
    let server = TestServer::start(rt, &[]);
    // Just under the limit is fine.
    let mut conn = RawConn::connect(server.addr);
    conn.send(&request("GET", "/stats", &format!("X-Big: {}\r\n", "a".repeat(7 * 1024))));
    assert_eq!(conn.read_response().head.status, 200, "a 7 KiB head is accepted");

    expect_error(&server, &request("GET", "/stats", &format!("X-Big: {}\r\n", "a".repeat(9000))), 431);
    // An unfinished head that is already too long.
    expect_error(&server, format!("GET /stats HTTP/1.1\r\nX-Big: {}", "a".repeat(10_000)).as_bytes(), 431);
    let fields = |n: usize| (0..n).map(|i| format!("X-F{i}: v\r\n")).collect::<String>();
    // Host plus 47 more: 48 fields, accepted.
    let mut conn = RawConn::connect(server.addr);
    conn.send(&request("GET", "/stats", &fields(47)));
    assert_eq!(conn.read_response().head.status, 200, "48 header fields are accepted");
    // Host plus 48 more: 49, refused.
    expect_error(&server, &request("GET", "/stats", &fields(48)), 431);
    expect_error(&server, &request("GET", "/stats", &fields(200)), 431);
    assert_eq!(server.publish("a", "still fine"), 1);
}

/// A publish whose body is not UTF-8 gets 400 and stores nothing: no id is
/// used up.
pub fn invalid_utf8_publish_gets_400(rt: &str) {
    let server = TestServer::start(rt, &[]);
    assert_eq!(server.publish("u", "valid"), 1);
    for body in [&b"\xff\xfe"[..], b"abc\xc3", b"\xed\xa0\x80 surrogate", b"ok \xc0\xaf overlong"] {
        let mut resp = server.agent().post(server.url("/publish?topic=u")).send(body).expect("publish request");
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().expect("body");
        assert_eq!(status, 400, "body {body:?}: {text}");
        // And on a raw connection, the connection closes after the answer.
        let mut raw = request("POST", "/publish?topic=u", &format!("Content-Length: {}\r\n", body.len()));
        raw.extend_from_slice(body);
        expect_error(&server, &raw, 400);
    }
    let poll = server.poll("u", 0);
    assert_eq!(poll["last_id"], 1, "rejected publishes must not be stored: {poll}");
    assert_eq!(poll_messages(&poll), vec![(1, "valid".into())]);
    assert_eq!(server.publish("u", "next"), 2, "no id was used up by the rejected publishes");
    assert_eq!(server.stats()["published"], 2);
}

/// `Expect: 100-continue` gets a `100 Continue` before the body is sent.
pub fn publish_honours_expect_continue(rt: &str) {
    let server = TestServer::start(rt, &[]);
    let mut conn = RawConn::connect(server.addr);
    conn.send(&request("POST", "/publish?topic=ec", "Content-Length: 5\r\nExpect: 100-continue\r\n"));
    let interim = conn.read_head();
    assert_eq!(interim.status, 100, "{interim:?}");
    conn.send(b"hello");
    let resp = conn.read_response();
    assert_eq!(resp.head.status, 200);
    assert_eq!(resp.text(), r#"{"id":1}"#);
    assert_eq!(poll_messages(&server.poll("ec", 0)), vec![(1, "hello".into())]);
}

/// Pipelined requests on one connection are all answered, in order.
pub fn pipelined_requests_are_answered_in_order(rt: &str) {
    let server = TestServer::start(rt, &[]);
    let mut conn = RawConn::connect(server.addr);
    let mut raw = Vec::new();
    for body in ["one", "two"] {
        raw.extend(request("POST", "/publish?topic=pl", &format!("Content-Length: {}\r\n", body.len())));
        raw.extend_from_slice(body.as_bytes());
    }
    raw.extend(request("GET", "/poll?topic=pl", ""));
    raw.extend(request("POST", "/publish?topic=pl", "Content-Length: 5\r\nConnection: close\r\n"));
    raw.extend_from_slice(b"three");
    conn.send(&raw);
    assert_eq!(conn.read_response().text(), r#"{"id":1}"#);
    assert_eq!(conn.read_response().text(), r#"{"id":2}"#);
    let poll: serde_json::Value = serde_json::from_slice(&conn.read_response().body).expect("JSON");
    assert_eq!(poll_messages(&poll), vec![(1, "one".into()), (2, "two".into())]);
    let last = conn.read_response();
    assert_eq!(last.text(), r#"{"id":3}"#);
    conn.expect_eof("after a request with Connection: close");
}

/// Malformed and abandoned requests on some connections disturb no other
/// connection: an open SSE stream and WebSocket keep receiving, a kept-alive
/// HTTP connection keeps serving.
pub fn bad_client_does_not_disturb_others(rt: &str) {
    let server = TestServer::start(rt, &[]);
    let mut sse = Sse::connect(server.addr, "/sse?topic=calm", "");
    let mut ws = ws_connect(server.addr, "/ws?topic=calm");
    let mut keep = RawConn::connect(server.addr);
    let publish_on_keep = |keep: &mut RawConn, body: &str| {
        keep.send(&request("POST", "/publish?topic=calm", &format!("Content-Length: {}\r\n", body.len())));
        keep.send(body.as_bytes());
        let resp = keep.read_response();
        assert_eq!(resp.head.status, 200);
        resp.text()
    };
    assert_eq!(publish_on_keep(&mut keep, "before"), r#"{"id":1}"#);
    assert_eq!(sse.message(), (1, "before".into()));
    assert_eq!(ws_message(&mut ws), (1, "before".into()));

    // Garbage, an oversized head, binary junk: each answered and closed.
    expect_error(&server, b"GARBAGE\r\n\r\n", 400);
    expect_error(&server, &request("GET", "/stats", &format!("X-Big: {}\r\n", "a".repeat(9000))), 431);
    expect_error(&server, b"\x00\x01\x02\x03\xff\xfe\xfd\r\n\r\n", 400);
    // Half a request, then gone; a request, then an abortive reset; a reset
    // in the middle of a body.
    {
        let mut half = RawConn::connect(server.addr);
        half.send(b"GET /poll?topic=calm HTTP/1.1\r\nHo");
    }
    RawConn::connect_and_reset(server.addr, b"GET /sse?topic=calm HTTP/1.1\r\n\r\n");
    RawConn::connect_and_reset(server.addr, b"POST /publish?topic=calm HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc");
    // A WebSocket that breaks the protocol gets closed with 1002.
    let mut bad_ws = RawWs::connect(server.addr, "/ws?topic=calm");
    bad_ws.send_raw(&client_frame(FIN | TEXT, b"unmasked", false));
    bad_ws.expect_close(1002, "unmasked frame on /ws");

    assert_eq!(publish_on_keep(&mut keep, "after"), r#"{"id":2}"#);
    assert_eq!(server.publish("calm", "and more"), 3);
    assert_eq!(sse.message(), (2, "after".into()));
    assert_eq!(sse.message(), (3, "and more".into()));
    assert_eq!(ws_message(&mut ws), (2, "after".into()));
    assert_eq!(ws_message(&mut ws), (3, "and more".into()));
    let poll = server.poll("calm", 0);
    assert_eq!(poll["last_id"], 3, "the truncated publish must not be stored: {poll}");
}
