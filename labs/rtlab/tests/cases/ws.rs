//! `/ws`: live delivery, replay, the missed signal, publishing, errors, pings.

use std::thread;
use std::time::{Duration, Instant};

use tungstenite::Message;

use crate::common::*;

fn m(i: u64) -> (u64, String) {
    (i, format!("m{i}"))
}

/// `after=N` replays the retained messages after N, then goes live; without
/// it the connection starts live.
pub fn ws_replay_via_after(rt: &str) {
    let server = TestServer::start(rt, &[]);
    for i in 1..=5 {
        assert_eq!(server.publish("wr", format!("m{i}")), i);
    }
    let mut replay = ws_connect(server.addr, "/ws?topic=wr&after=2");
    let mut live = ws_connect(server.addr, "/ws?topic=wr");
    let mut all = ws_connect(server.addr, "/ws?topic=wr&after=0");
    for i in 3..=5 {
        assert_eq!(ws_message(&mut replay), m(i), "replay");
    }
    assert_eq!(server.publish("wr", "m6"), 6);
    assert_eq!(ws_message(&mut replay), m(6), "live after the replay");
    assert_eq!(ws_message(&mut live), m(6), "no replay without after=");
    for i in 1..=6 {
        assert_eq!(ws_message(&mut all), m(i));
    }
}

/// Resuming from an id older than retention (3 here) first gets a text
/// frame `{"missed":{"from":F,"to":T}}`, then the retained messages.
pub fn ws_signals_missed_messages(rt: &str) {
    let server = TestServer::start(rt, &["--retention", "3"]);
    for i in 1..=6 {
        assert_eq!(server.publish("wg", format!("m{i}")), i);
    }
    let mut ws = ws_connect(server.addr, "/ws?topic=wg&after=1");
    let marker = ws_json(&mut ws);
    let obj = marker.as_object().unwrap_or_else(|| panic!("not an object: {marker}"));
    assert_eq!(obj.len(), 1, "the marker is exactly {{\"missed\":{{...}}}}: {marker}");
    assert_eq!(range_of(&marker["missed"]), (2, 3), "{marker}");
    for i in 4..=6 {
        assert_eq!(ws_message(&mut ws), m(i));
    }
    assert_eq!(server.publish("wg", "m7"), 7);
    assert_eq!(ws_message(&mut ws), m(7));

    let mut ws = ws_connect(server.addr, "/ws?topic=wg&after=0");
    assert_eq!(range_of(&ws_json(&mut ws)["missed"]), (1, 4));
    assert_eq!(ws_message(&mut ws), m(5));

    let mut ws = ws_connect(server.addr, "/ws?topic=wg&after=5");
    assert_eq!(ws_message(&mut ws), m(6), "no marker when nothing is missed");
}

/// Short poll reports the missed range too, as a `missed` member.
pub fn poll_signals_missed_messages(rt: &str) {
    let server = TestServer::start(rt, &["--retention", "3"]);
    for i in 1..=6 {
        assert_eq!(server.publish("pg", format!("m{i}")), i);
    }
    let v = server.poll("pg", 0);
    assert_eq!(poll_messages(&v), vec![m(4), m(5), m(6)]);
    assert_eq!(range_of(&v["missed"]), (1, 3), "{v}");
    assert_eq!(v["last_id"], 6);
    let v = server.poll("pg", 2);
    assert_eq!(poll_messages(&v), vec![m(4), m(5), m(6)]);
    assert_eq!(range_of(&v["missed"]), (3, 3), "{v}");
    let v = server.poll("pg", 3);
    assert_eq!(poll_messages(&v), vec![m(4), m(5), m(6)]);
    assert!(v.get("missed").is_none(), "nothing missed after 3: {v}");
    let v = server.poll("pg", 6);
    assert!(v.get("missed").is_none(), "{v}");
    // A long poll with messages to return carries the range as well.
    let v = server.get_json("/poll?topic=pg&after=1&wait=5");
    assert_eq!(poll_messages(&v), vec![m(4), m(5), m(6)]);
    assert_eq!(range_of(&v["missed"]), (2, 3), "{v}");
}

fn expect_error_frame(ws: &mut Ws, context: &str) {
    let v = ws_json(ws);
    let obj = v.as_object().unwrap_or_else(|| panic!("{context}: expected an error object, got {v}"));
    assert!(obj.get("error").is_some_and(|e| e.is_string()), "{context}: expected {{\"error\":\"...\"}}, got {v}");
    assert!(obj.get("id").is_none(), "{context}: an error is not a message: {v}");
}

/// A `/ws` client publishes with `{"op":"publish","data":"..."}`; every
/// subscriber (itself included) gets it. Bad input gets an `{"error":...}`
/// frame, the connection stays open, and nothing is stored.
pub fn ws_client_publish_and_errors(rt: &str) {
    let server = TestServer::start(rt, &["--max-message", "1024"]);
    let mut publisher = ws_connect(server.addr, "/ws?topic=wp");
    let mut other = ws_connect(server.addr, "/ws?topic=wp");
    let mut sse = Sse::connect(server.addr, "/sse?topic=wp", "");

    ws_publish(&mut publisher, "hello\nworld");
    assert_eq!(ws_message(&mut publisher), (1, "hello\nworld".into()), "the publisher is a subscriber too");
    assert_eq!(ws_message(&mut other), (1, "hello\nworld".into()));
    assert_eq!(sse.message(), (1, "hello\nworld".into()));

    let bad: [(&str, Message); 8] = [
        ("not JSON", Message::text("not json")),
        ("unknown op", Message::text(r#"{"op":"subscribe","data":"x"}"#)),
        ("no op", Message::text(r#"{"data":"x"}"#)),
        ("no data", Message::text(r#"{"op":"publish"}"#)),
        ("non-string data", Message::text(r#"{"op":"publish","data":5}"#)),
        ("JSON that is not an object", Message::text("[1,2,3]")),
        ("binary frame", Message::binary(br#"{"op":"publish","data":"x"}"#.to_vec())),
        (
            "data over --max-message",
            Message::text(serde_json::json!({"op": "publish", "data": "x".repeat(1025)}).to_string()),
        ),
    ];
    for (what, msg) in bad {
        publisher.send(msg).expect("send");
        expect_error_frame(&mut publisher, what);
    }
    // Still open, and nothing was stored or delivered for the bad ones.
    ws_publish(&mut publisher, &"y".repeat(1024));
    assert_eq!(ws_message(&mut publisher), (2, "y".repeat(1024)), "a message of exactly the limit is accepted");
    assert_eq!(ws_message(&mut other), (2, "y".repeat(1024)), "other subscribers got nothing for bad input");
    assert_eq!(sse.message(), (2, "y".repeat(1024)));
    let poll = server.poll("wp", 0);
    assert_eq!(poll["last_id"], 2, "{poll}");
    assert_eq!(server.stats()["published"], 2);
}

/// The server pings every interval; a client that never answers is closed
/// with 1008 after about two intervals, one that answers stays open.
pub fn ws_ping_timeout(rt: &str) {
    let server = TestServer::start(rt, &["--ping-interval", "0.3"]);
    let addr = server.addr;

    // A tungstenite client keeps reading (and so answers pings) for 1.5 s.
    let mut good = ws_connect(addr, "/ws?topic=hb");
    let good = thread::spawn(move || {
        let until = Instant::now() + Duration::from_millis(1500);
        let mut pings = 0;
        while let Some(msg) = ws_try_read(&mut good, until) {
            match msg {
                Message::Ping(_) => pings += 1,
                other => panic!("unexpected {other:?} on a quiet topic"),
            }
        }
        (good, pings)
    });

    // A raw client that never answers.
    let mut mute = RawWs::connect(addr, "/ws?topic=hb");
    let (before, code) = mute.until_close(Duration::from_secs(5));
    assert!(
        before.iter().any(|f| f.opcode == PING),
        "the server must ping before giving up; frames before the close: {before:?}"
    );
    assert!(before.iter().all(|f| f.opcode == PING), "only pings expected: {before:?}");
    assert_eq!(code, Some(1008), "a client that never answers pings is closed with 1008");
    mute.expect_eof("after the 1008 close");
    drop(mute);

    let (mut good, pings) = good.join().expect("the answering client");
    assert!(pings >= 2, "the server pings every interval: {pings} pings in 1.5 s at 0.3 s");
    assert!(good.can_write(), "the answering client must still be open");
    assert_eq!(server.publish("hb", "still here"), 1);
    assert_eq!(ws_message(&mut good), (1, "still here".into()), "the answering client is still subscribed");
    server.wait_stats("only the answering client left", |s| s["connections"]["ws"] == 1);
}
