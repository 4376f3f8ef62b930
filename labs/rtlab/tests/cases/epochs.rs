//! Stream identity (epochs): every id names its epoch, and a resume from
//! another epoch — here, from before a restart of the server on the same
//! address — gets the reset signal, then the new epoch from its first
//! retained message, then live messages. On every transport.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;

/// The topic's epoch, as a poll answer names it.
fn epoch_of(server: &TestServer, topic: &str) -> String {
    let v = server.poll(topic, 0);
    let epoch = v["epoch"].as_str().unwrap_or_else(|| panic!("a poll answer carries the epoch: {v}")).to_owned();
    assert_epoch(&epoch);
    epoch
}

/// Ids carry the epoch on every transport: SSE `id: E-N`, `/ws` frames
/// `"epoch"`, poll answers a top-level `"epoch"`; and a resume in the current
/// epoch (`E-N`, or a bare `N`) is an ordinary resume, with no reset.
pub fn ids_carry_their_epoch_on_every_transport(rt: &str) {
    let server = TestServer::start(rt, &[]);
    for i in 1..=3 {
        assert_eq!(server.publish("ep", format!("m{i}")), i);
    }
    let epoch = epoch_of(&server, "ep");
    let mut sse = Sse::connect(server.addr, "/sse?topic=ep", &format!("Last-Event-ID: {epoch}-1\r\n"));
    for i in 2..=3 {
        let ev = sse.next_event(TIMEOUT).expect("a replayed event");
        assert_eq!((ev.event.as_deref(), ev.epoch.as_deref(), ev.id), (None, Some(epoch.as_str()), Some(i)), "{ev:?}");
    }
    let mut ws = ws_connect(server.addr, &format!("/ws?topic=ep&after={epoch}-2"));
    let v = ws_json(&mut ws);
    assert_eq!((v["id"].as_u64(), v["epoch"].as_str()), (Some(3), Some(epoch.as_str())), "{v}");
    let v = server.get_json(&format!("/poll?topic=ep&after={epoch}-2"));
    assert_eq!(poll_messages(&v), [(3, "m3".to_owned())]);
    assert!(v.get("reset").is_none(), "no reset within the epoch: {v}");
    // Malformed cursors are refused.
    for bad in ["x_y-1", "-1", "E-", "E-1-2", "ABCDEFGHIJKLMNOPQ-1"] {
        assert_eq!(server.get(&format!("/poll?topic=ep&after={bad}")).0, 400, "after={bad}");
    }
}

// ANCHOR: restart
/// A server restarted on the same address starts a new epoch. Clients of
/// the old one resume with ids the new one has given out again (2 here):
/// each is told the stream was reset, then gets the new epoch from its
/// start — never a silent resume at the wrong place.
pub fn resume_across_a_restart_is_a_reset(rt: &str) {
    let old = TestServer::start(rt, &[]);
    for i in 1..=3 {
        assert_eq!(old.publish("rs", format!("old{i}")), i);
    }
    let old_epoch = epoch_of(&old, "rs");
    let addr = old.addr;
    let mut old = old;
    old.signal(libc::SIGTERM);
    assert!(old.wait_exit(TIMEOUT).success());

    let new = TestServer::start_at(rt, addr, &[]);
    for i in 1..=2 {
        assert_eq!(new.publish("rs", format!("new{i}")), i);
    }
    let epoch = epoch_of(&new, "rs");
    assert_ne!(epoch, old_epoch, "a restarted server is in a new epoch");
    let new_messages = vec![(1, "new1".to_owned()), (2, "new2".to_owned())];

    // SSE, Last-Event-ID from the old epoch (as a browser sends it).
    let mut sse = Sse::connect(addr, "/sse?topic=rs", &format!("Last-Event-ID: {old_epoch}-2\r\n"));
    let reset = sse.next_event(TIMEOUT).expect("the reset event");
    assert_eq!((reset.event.as_deref(), reset.epoch.as_deref(), reset.id), (Some("reset"), Some(epoch.as_str()), Some(0)));
    let body: Value = serde_json::from_str(&reset.data).expect("JSON data");
    assert_eq!(body["epoch"], epoch.as_str());
    for (id, data) in &new_messages {
        assert_eq!(sse.message(), (*id, data.clone()));
    }
    // WebSocket, after= from the old epoch.
    let mut ws = ws_connect(addr, &format!("/ws?topic=rs&after={old_epoch}-2"));
    let v = ws_json(&mut ws);
    assert_eq!(v, serde_json::json!({ "reset": { "epoch": epoch } }));
    for m in &new_messages {
        assert_eq!(&ws_message(&mut ws), m);
    }
    // A long poll from the old epoch is answered at once, wait or not.
    let started = Instant::now();
    let v = new.get_json(&format!("/poll?topic=rs&after={old_epoch}-2&wait=30"));
    assert!(started.elapsed() < Duration::from_secs(10), "a reset is not held");
    assert_eq!((v["epoch"].as_str(), &v["reset"]["epoch"]), (Some(epoch.as_str()), &Value::from(epoch.as_str())), "{v}");
    assert_eq!(poll_messages(&v), new_messages);

    // Then live, in the new epoch, on both streams.
    assert_eq!(new.publish("rs", "new3"), 3);
    assert_eq!(sse.message(), (3, "new3".to_owned()));
    assert_eq!(ws_message(&mut ws), (3, "new3".to_owned()));
}
// ANCHOR_END: restart

/// `GET /presence?topic=T` lists the `client=` names subscribed to T (SSE
/// and WebSocket), sorted, once each, until they leave; an invalid name is
/// `400`.
pub fn presence_lists_named_subscribers(rt: &str) {
    let server = TestServer::start(rt, &[]);
    let clients = |topic: &str| server.get_json(&format!("/presence?topic={topic}"))["clients"].clone();
    assert_eq!(clients("pr"), serde_json::json!([]));
    let sse = Sse::connect(server.addr, "/sse?topic=pr&client=bob", "");
    let ws = ws_connect(server.addr, "/ws?topic=pr&client=alice");
    let _anonymous = Sse::connect(server.addr, "/sse?topic=pr", "");
    let _twice = ws_connect(server.addr, "/ws?topic=pr&client=alice");
    assert_eq!(clients("pr"), serde_json::json!(["alice", "bob"]));
    assert_eq!(clients("other"), serde_json::json!([]));
    drop(sse);
    drop(ws);
    let deadline = Instant::now() + TIMEOUT;
    while clients("pr") != serde_json::json!(["alice"]) {
        assert!(Instant::now() < deadline, "bob still listed: {}", clients("pr"));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(server.get("/sse?topic=pr&client=no%20spaces").0, 400);
    assert_eq!(server.get("/presence").0, 400);
}
