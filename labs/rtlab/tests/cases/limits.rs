//! The contract's limits ("Limits" in the contract text): what a client may
//! make the server hold — time, topics, connections — is bounded, and what is
//! refused gets a clear status without touching anyone else. Each case starts
//! its server with a small limit, pushes past it, and checks both sides: the
//! refusal, and the clients that are still served.

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use rtlab_testkit::{Response, upgrade_request};

use crate::common::*;

/// A publish on a connection of its own (`Connection: close`), and its
/// answer: no connection is left idle in a pool, where an idle timeout
/// would close it under the next request.
fn publish_once(addr: SocketAddr, topic: &str, data: &str) -> Response {
    let mut conn = RawConn::connect(addr);
    let extra = format!("Content-Length: {}\r\nConnection: close\r\n", data.len());
    let mut raw = request("POST", &format!("/publish?topic={topic}"), &extra);
    raw.extend_from_slice(data.as_bytes());
    conn.send(&raw);
    conn.read_response()
}

/// `GET /stats` on a keep-alive connection the test already holds (at the
/// connection limit, a new one would be refused).
fn stats_on(conn: &mut RawConn) -> serde_json::Value {
    conn.send(&request("GET", "/stats", ""));
    let resp = conn.read_response();
    assert_eq!(resp.head.status, 200, "{}", resp.text());
    serde_json::from_slice(&resp.body).expect("/stats is JSON")
}

/// Checks a `503`: the status, a one-line reason that says `why`, a
/// `Retry-After`, `Connection: close`, then a clean close (FIN, not reset).
fn expect_503(conn: &mut RawConn, why: &str, context: &str) {
    let resp = conn.read_response();
    let text = resp.text();
    assert_eq!((resp.head.status, resp.head.reason.as_str()), (503, "Service Unavailable"), "{context}: {text}");
    assert!(text.contains(why) && text.ends_with('\n') && text.matches('\n').count() == 1, "{context}: {text:?}");
    assert!(resp.head.header("retry-after").is_some(), "{context}: no Retry-After: {:?}", resp.head.headers);
    assert!(resp.head.connection_close(), "{context}: {:?}", resp.head.headers);
    conn.expect_eof(context);
}

/// Slowloris: connections that send their request head a byte at a time
/// get `408 Request Timeout` and are closed, `--request-timeout` after their
/// first byte however steadily the bytes keep coming; a connection that sends
/// nothing, or nothing more after a request, is closed after
/// `--idle-timeout`, without a response. Meanwhile a subscriber and
/// publishers are served as usual.
pub fn slow_requests_get_408_and_idle_connections_close(rt: &str) {
    const SLOW: usize = 20;
    let timeout = Duration::from_secs(1);
    let idle = Duration::from_secs(2);
    let server = TestServer::start(rt, &["--request-timeout", "1", "--idle-timeout", "2"]);
    let addr = server.addr;
    let mut sse = Sse::connect(addr, "/sse?topic=calm", "");

    // Each slow client starts a head, then a trickler thread sends one more
    // byte to every one of them every 100 ms, until told to stop.
    let mut writers = Vec::new();
    let mut readers = Vec::new();
    for _ in 0..SLOW {
        let stream = TcpStream::connect(addr).expect("connect");
        let mut writer = stream.try_clone().expect("clone");
        std::io::Write::write_all(&mut writer, b"GET /stats HTTP/1.1\r\nX-Slow: ").expect("write");
        readers.push((Instant::now(), RawConn::from_stream(stream)));
        writers.push(writer);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let trickling = {
        let stop = stop.clone();
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for w in &mut writers {
                    // Errors are expected once the server has closed.
                    let _ = std::io::Write::write_all(w, b"a");
                }
                thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let (tx, rx) = mpsc::channel();
    for (i, (started, mut conn)) in readers.into_iter().enumerate() {
        let tx = tx.clone();
        thread::spawn(move || {
            let resp = conn.read_response();
            let elapsed = started.elapsed();
            conn.expect_eof(&format!("slow client {i} after its 408"));
            let _ = tx.send((i, resp, elapsed));
        });
    }
    drop(tx);

    // The others are served while the slow ones trickle.
    for n in 1..=3 {
        assert_eq!(publish_once(addr, "calm", &format!("m{n}")).head.status, 200);
        assert_eq!(sse.message(), (n, format!("m{n}")));
    }

    for _ in 0..SLOW {
        let (i, resp, elapsed) = rx.recv_timeout(TIMEOUT).expect("every slow client gets an answer");
        assert_eq!((resp.head.status, resp.head.reason.as_str()), (408, "Request Timeout"), "slow client {i}");
        assert!(resp.head.connection_close(), "slow client {i}: {:?}", resp.head.headers);
        assert!(resp.text().contains("after its first byte"), "slow client {i}: {:?}", resp.text());
        assert!(elapsed >= timeout - Duration::from_millis(100), "slow client {i}: 408 after {elapsed:?}, too early");
        assert!(elapsed < timeout + Duration::from_secs(2), "slow client {i}: 408 only after {elapsed:?}");
    }
    stop.store(true, Ordering::Relaxed);
    trickling.join().expect("trickler");

    // Idle: a connection that never sends, and one that goes quiet after a request.
    let started = Instant::now();
    let mut silent = RawConn::connect(addr);
    let mut quiet = RawConn::connect(addr);
    quiet.send(&request("GET", "/stats", ""));
    assert_eq!(quiet.read_response().head.status, 200);
    let answered = Instant::now();
    silent.expect_eof("a connection that never sent a request");
    assert!(started.elapsed() >= idle - Duration::from_millis(100), "closed after {:?}", started.elapsed());
    quiet.expect_eof("a kept-alive connection with no next request");
    assert!(answered.elapsed() >= idle - Duration::from_millis(100), "closed after {:?}", answered.elapsed());
    assert!(answered.elapsed() < idle + Duration::from_secs(2), "closed only after {:?}", answered.elapsed());

    // The subscriber is still there, and /stats counted it all.
    assert_eq!(publish_once(addr, "calm", "m4").head.status, 200);
    assert_eq!(sse.message(), (4, "m4".into()));
    let stats = server.stats();
    assert_eq!(stats["timed_out"]["request"], SLOW as u64, "{stats}");
    assert!(stats["timed_out"]["idle"].as_u64().expect("idle count") >= 2, "{stats}");
}

/// A flood of publishes and subscriptions to new topics levels off at
/// `--max-topics`: past it each gets `503` and nothing is created, while the
/// topics that exist keep being served. Polling an unknown topic creates
/// nothing and is answered.
pub fn topic_flood_levels_off_with_503(rt: &str) {
    const MAX: u64 = 20;
    let server = TestServer::start(rt, &["--max-topics", "20", "--topic-ttl", "3600"]);
    let addr = server.addr;
    let mut sse = Sse::connect(addr, "/sse?topic=kept", "");
    assert_eq!(server.publish("kept", "one"), 1);
    assert_eq!(sse.message(), (1, "one".into()));

    let mut accepted = 0;
    for i in 0..50 {
        let topic = format!("flood-{i}");
        let mut conn = RawConn::connect(addr);
        conn.send(&request("POST", &format!("/publish?topic={topic}"), "Content-Length: 1\r\n"));
        conn.send(b"x");
        if accepted < MAX - 1 {
            let resp = conn.read_response();
            assert_eq!(resp.head.status, 200, "topic {} of {MAX}: {}", accepted + 2, resp.text());
            accepted += 1;
        } else {
            expect_503(&mut conn, "too many topics", &format!("publish to {topic}"));
        }
    }
    // Subscriptions that would create a topic are refused the same way.
    for target in ["/sse?topic=one-more", "/poll?topic=one-more&wait=5"] {
        let mut conn = RawConn::connect(addr);
        conn.send(&request("GET", target, ""));
        expect_503(&mut conn, "too many topics", target);
    }
    let mut ws = RawConn::connect(addr);
    ws.send(&upgrade_request("/ws?topic=one-more"));
    expect_503(&mut ws, "too many topics", "/ws");

    // The flood levelled off; the existing topics are served.
    let stats = server.stats();
    assert_eq!(stats["topics"], MAX, "{stats}");
    assert_eq!(stats["refused"]["topics"], 50 - (MAX - 1) + 3, "{stats}");
    assert_eq!(stats["evicted_topics"], 0, "nothing is idle for an hour yet: {stats}");
    assert_eq!(stats["limits"]["max_topics"], MAX, "{stats}");
    assert_eq!(server.publish("kept", "two"), 2);
    assert_eq!(sse.message(), (2, "two".into()));
    assert_eq!(server.publish("flood-0", "again"), 2);
    let unknown = server.poll("never-created", 0);
    assert_eq!(unknown["last_id"], 0, "{unknown}");
    assert_eq!(server.stats()["topics"], MAX);
}

/// At `--max-topics`, a topic with no subscriber and no message for
/// `--topic-ttl` is evicted to make room for a new one; a topic with a
/// subscriber is never evicted and keeps its ids. A topic that comes back
/// starts again at id 1, and a client resuming from an id of its earlier
/// life gets the new life from its beginning, not a silent jump.
pub fn idle_topics_make_room_and_held_ones_stay(rt: &str) {
    let server = TestServer::start(rt, &["--max-topics", "4", "--topic-ttl", "1"]);
    let addr = server.addr;
    let mut held = Sse::connect(addr, "/sse?topic=held", "");
    assert_eq!(server.publish("held", "h1"), 1);
    assert_eq!(held.message(), (1, "h1".into()));
    for topic in ["old-a", "old-b"] {
        for n in 1..=3 {
            assert_eq!(publish_once(addr, topic, &format!("{topic} {n}")).head.status, 200);
        }
    }
    assert_eq!(publish_once(addr, "old-c", "c").head.status, 200);
    let mut refused = RawConn::connect(addr);
    refused.send(&request("POST", "/publish?topic=new", "Content-Length: 1\r\n"));
    refused.send(b"x");
    expect_503(&mut refused, "too many topics", "a fifth topic");

    // Past the ttl (and the sweep's pause after the refusal), the three idle
    // topics make room; the held one stays.
    thread::sleep(Duration::from_millis(1300));
    assert_eq!(publish_once(addr, "new", "x").head.status, 200, "an idle topic made room");
    let stats = server.stats();
    assert_eq!(stats["evicted_topics"], 3, "{stats}");
    assert_eq!(stats["topics"], 2, "{stats}");
    assert_eq!(server.publish("held", "h2"), 2, "the held topic kept its ids");
    assert_eq!(held.message(), (2, "h2".into()));

    // old-a comes back: ids from 1. A client of its earlier life resumes
    // from 3, an id this life has not given out: it gets this life from its
    // beginning. A poll answer shows last_id below the client's id.
    assert_eq!(server.publish("old-a", "reborn"), 1);
    let mut resumed = Sse::connect(addr, "/sse?topic=old-a", "Last-Event-ID: 3\r\n");
    assert_eq!(resumed.message(), (1, "reborn".into()));
    let poll = server.poll("old-a", 3);
    assert_eq!((poll_messages(&poll).len(), poll["last_id"].as_u64()), (0, Some(1)), "{poll}");
}

/// A flood of connections past `--max-connections`: each one over the limit
/// gets `503` with a reason and a clean close, while the connections inside
/// the limit are served; when some go, new ones are admitted again.
pub fn connection_flood_gets_503_while_others_are_served(rt: &str) {
    const MAX: usize = 8;
    const FLOOD: usize = 20;
    let server = TestServer::start(rt, &["--max-connections", "8"]);
    let addr = server.addr;
    // Inside the limit: one keep-alive connection for publishing and
    // /stats, and subscribers in the other places.
    let mut keep = RawConn::connect(addr);
    let publish_on = |keep: &mut RawConn, data: &str| {
        keep.send(&request("POST", "/publish?topic=full", &format!("Content-Length: {}\r\n", data.len())));
        keep.send(data.as_bytes());
        let resp = keep.read_response();
        assert_eq!(resp.head.status, 200, "{}", resp.text());
    };
    publish_on(&mut keep, "zero");
    let mut subs: Vec<Sse> = (1..MAX).map(|_| Sse::connect(addr, "/sse?topic=full", "")).collect();
    assert_eq!(stats_on(&mut keep)["connections"]["total"], MAX as u64);

    for i in 0..FLOOD {
        let mut conn = RawConn::connect(addr);
        conn.send(&request("GET", "/stats", ""));
        expect_503(&mut conn, "too many connections", &format!("connection {} of the flood", i + 1));
    }

    // Everyone inside the limit is still served.
    publish_on(&mut keep, "one");
    for sub in &mut subs {
        assert_eq!(sub.message(), (2, "one".into()));
    }
    let stats = stats_on(&mut keep);
    assert_eq!(stats["refused"]["connections"], FLOOD as u64, "{stats}");
    assert_eq!(stats["connections"]["total"], MAX as u64, "{stats}");
    assert_eq!(stats["limits"]["max_connections"], MAX as u64, "{stats}");

    // Places come free when connections go.
    subs.truncate(MAX - 3);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let mut conn = RawConn::connect(addr);
        conn.send(&request("GET", "/stats", "Connection: close\r\n"));
        let resp = conn.read_response();
        if resp.head.status == 200 {
            break;
        }
        assert_eq!(resp.head.status, 503, "{}", resp.text());
        assert!(Instant::now() < deadline, "no place came free after two subscribers left");
        thread::sleep(Duration::from_millis(20));
    }
    publish_on(&mut keep, "two");
    for sub in &mut subs {
        assert_eq!(sub.message(), (3, "two".into()));
    }
}
