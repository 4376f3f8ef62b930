//! Server-Sent Events: live delivery, replay, the missed signal, keep-alive.

use std::time::Duration;

use crate::common::*;

fn publish_n(server: &TestServer, topic: &str, n: u64) {
    for i in 1..=n {
        assert_eq!(server.publish(topic, format!("m{i}")), i);
    }
}

fn m(i: u64) -> (u64, String) {
    (i, format!("m{i}"))
}

/// Without a resume point a stream starts live: no replay of older messages.
pub fn sse_without_resume_starts_live(rt: &str) {
    let server = TestServer::start(rt, &[]);
    publish_n(&server, "live", 2);
    let mut sse = Sse::connect(server.addr, "/sse?topic=live", "");
    assert_eq!(server.publish("live", "m3"), 3);
    assert_eq!(sse.message(), m(3), "the first event of a fresh stream is the next live message");
    assert_eq!(server.publish("live", "m4"), 4);
    assert_eq!(sse.message(), m(4));
}

/// `Last-Event-ID` replays the retained messages after it, then goes live.
pub fn sse_replay_via_last_event_id_header(rt: &str) {
    let server = TestServer::start(rt, &[]);
    publish_n(&server, "rp", 5);
    let mut sse = Sse::connect(server.addr, "/sse?topic=rp", "Last-Event-ID: 2\r\n");
    for i in 3..=5 {
        assert_eq!(sse.message(), m(i), "replay");
    }
    assert_eq!(server.publish("rp", "m6"), 6);
    assert_eq!(sse.message(), m(6), "live after the replay");

    // From 0: everything; from the newest id: nothing but what comes next.
    let mut from_zero = Sse::connect(server.addr, "/sse?topic=rp", "Last-Event-ID: 0\r\n");
    let mut from_last = Sse::connect(server.addr, "/sse?topic=rp", "Last-Event-ID: 6\r\n");
    assert_eq!(server.publish("rp", "m7"), 7);
    for i in 1..=7 {
        assert_eq!(from_zero.message(), m(i));
    }
    assert_eq!(from_last.message(), m(7));
}

/// The `lastEventId` query parameter does the same (for clients that cannot
/// set headers).
pub fn sse_replay_via_query_param(rt: &str) {
    let server = TestServer::start(rt, &[]);
    publish_n(&server, "rq", 5);
    let mut sse = Sse::connect(server.addr, "/sse?topic=rq&lastEventId=3", "");
    assert_eq!(sse.message(), m(4));
    assert_eq!(sse.message(), m(5));
    assert_eq!(server.publish("rq", "m6"), 6);
    assert_eq!(sse.message(), m(6));
}

/// Resuming from an id older than retention (3 here) first gets an
/// `event: missed` with the inclusive range that is gone and no id line,
/// then the retained messages, then live ones.
pub fn sse_signals_missed_messages(rt: &str) {
    let server = TestServer::start(rt, &["--retention", "3"]);
    publish_n(&server, "gone", 6);

    let mut sse = Sse::connect(server.addr, "/sse?topic=gone", "Last-Event-ID: 1\r\n");
    let block = sse.next_block(TIMEOUT).expect("the missed event");
    assert!(!block.iter().any(|l| l.starts_with("id:")), "the missed event has no id line: {block:?}");
    let ev = parse_sse_block(&block).expect("an event");
    assert_eq!(ev.event.as_deref(), Some("missed"), "{block:?}");
    let range: serde_json::Value = serde_json::from_str(&ev.data).expect("missed data is JSON");
    assert_eq!(range_of(&range), (2, 3), "ids 2..=3 are gone: {}", ev.data);
    for i in 4..=6 {
        assert_eq!(sse.message(), m(i));
    }
    assert_eq!(server.publish("gone", "m7"), 7);
    assert_eq!(sse.message(), m(7));

    // Via the query parameter, from 0.
    let mut sse = Sse::connect(server.addr, "/sse?topic=gone&lastEventId=0", "");
    let ev = sse.next_event(TIMEOUT).expect("the missed event");
    assert_eq!((ev.event.as_deref(), ev.id), (Some("missed"), None));
    let range: serde_json::Value = serde_json::from_str(&ev.data).expect("JSON");
    assert_eq!(range_of(&range), (1, 4));
    for i in 5..=7 {
        assert_eq!(sse.message(), m(i));
    }

    // Resuming inside retention: no missed event.
    let mut sse = Sse::connect(server.addr, "/sse?topic=gone", "Last-Event-ID: 4\r\n");
    assert_eq!(sse.message(), m(5), "no missed event when nothing is missed");
}

/// A quiet stream gets `: keep-alive` comments (every 0.3 s here) and still
/// delivers messages between them.
pub fn sse_keepalive_comments(rt: &str) {
    let server = TestServer::start(rt, &["--keepalive", "0.3"]);
    let mut sse = Sse::connect(server.addr, "/sse?topic=ka", "");
    for n in 1..=2 {
        let block = sse.next_block(Duration::from_secs(5)).expect("the stream ended");
        assert_eq!(block, [": keep-alive"], "keep-alive #{n} on a quiet stream");
    }
    assert_eq!(server.publish("ka", "between"), 1);
    let ev = sse.next_event(TIMEOUT).expect("an event");
    assert_eq!((ev.id, ev.data.as_str()), (Some(1), "between"));
    let block = sse.next_block(Duration::from_secs(5)).expect("the stream ended");
    assert_eq!(block, [": keep-alive"], "keep-alives continue after a message");
}
