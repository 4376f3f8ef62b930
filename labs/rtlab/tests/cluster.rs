//! Several `rtlab serve --broker redis://...` processes on one real Redis
//! server (labs/redis), checked over real sockets on every lab: fan-out
//! across instances on every transport, replay by an instance that never
//! saw the publish, ids unique and gap-free under concurrent publishers on
//! three instances, and Redis killed and restarted under live subscribers.
//!
//! Each test starts its own `redis-server` (no persistence, a free port;
//! `rtlab_testkit::RedisServer`), which must be installed (`scripts/test.sh`
//! installs Debian's `redis-server`).
//!
//! ```text
//! cargo test -p rtlab --test cluster            # every runtime
//! cargo test -p rtlab --test cluster tokio::    # one runtime
//! ```

#[allow(dead_code, unused_imports)]
mod common;

use std::collections::BTreeSet;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use rtlab_testkit::RedisServer;
use serde_json::Value;

fn redis() -> RedisServer {
    RedisServer::start().unwrap_or_else(|e| panic!("{e}"))
}

fn instance(rt: &str, redis: &RedisServer) -> TestServer {
    TestServer::start(rt, &["--broker", &redis.url()])
}

fn numbered(n: u64) -> Vec<(u64, String)> {
    (1..=n).map(|i| (i, format!("m{i}"))).collect()
}

/// Published on A; subscribers on B and C, on SSE, WebSocket and long poll,
/// each get every message once, in order; a `/ws` publish on C reaches A.
pub fn every_instance_delivers_every_message_in_order(rt: &str) {
    let redis = redis();
    let [a, b, c] = [instance(rt, &redis), instance(rt, &redis), instance(rt, &redis)];
    const N: u64 = 30;
    let mut sse = [&b, &c].map(|s| Sse::connect(s.addr, "/sse?topic=x", ""));
    let mut ws = [&b, &c].map(|s| ws_connect(s.addr, "/ws?topic=x"));
    // The subscriptions must exist before the first publish (SSE and /ws
    // start live): one warm-up message, published and seen by all.
    assert_eq!(a.publish("x", "warm-up"), 1);
    for s in &mut sse {
        assert_eq!(s.message(), (1, "warm-up".into()));
    }
    for w in &mut ws {
        assert_eq!(ws_message(w), (1, "warm-up".into()));
    }
    let pollers: Vec<_> = [&b, &c]
        .map(|s| {
            let addr = s.addr;
            thread::spawn(move || {
                let agent = agent();
                let mut got = Vec::new();
                let mut after = 1;
                let deadline = Instant::now() + TIMEOUT;
                while (got.len() as u64) < N && Instant::now() < deadline {
                    let url = format!("http://{addr}/poll?topic=x&after={after}&wait=5");
                    let text = agent.get(&url).call().unwrap().body_mut().read_to_string().unwrap();
                    let v: Value = serde_json::from_str(&text).unwrap();
                    for m in poll_messages(&v) {
                        after = m.0;
                        got.push(m);
                    }
                }
                got
            })
        })
        .into_iter()
        .collect();
    for i in 2..=N + 1 {
        assert_eq!(a.publish("x", format!("m{}", i - 1)), i);
    }
    let expect: Vec<(u64, String)> = (2..=N + 1).map(|i| (i, format!("m{}", i - 1))).collect();
    for s in &mut sse {
        let got: Vec<_> = (2..=N + 1).map(|_| s.message()).collect();
        assert_eq!(got, expect, "SSE");
    }
    for w in &mut ws {
        let got: Vec<_> = (2..=N + 1).map(|_| ws_message(w)).collect();
        assert_eq!(got, expect, "WebSocket");
    }
    for p in pollers {
        assert_eq!(p.join().unwrap(), expect, "long poll");
    }
    // A /ws publish on C, received on A.
    let mut on_a = Sse::connect(a.addr, "/sse?topic=x", "");
    ws_publish(&mut ws[1], "from C");
    assert_eq!(on_a.message(), (N + 2, "from C".into()));
}

/// An instance started after the publishes replays them (SSE and `/ws`
/// resume, polls) from Redis's stream: it never saw them.
pub fn an_instance_that_never_saw_the_publish_replays_it(rt: &str) {
    let redis = redis();
    let a = instance(rt, &redis);
    for (id, data) in numbered(5) {
        assert_eq!(a.publish("r", &data), id);
    }
    let late = instance(rt, &redis);
    assert_eq!(poll_messages(&late.poll("r", 2)), numbered(5)[2..].to_vec());
    let mut sse = Sse::connect(late.addr, "/sse?topic=r", "Last-Event-ID: 0\r\n");
    for m in numbered(5) {
        assert_eq!(sse.message(), m);
    }
    let mut ws = ws_connect(late.addr, "/ws?topic=r&after=3");
    assert_eq!(ws_message(&mut ws), (4, "m4".into()));
    assert_eq!(ws_message(&mut ws), (5, "m5".into()));
    // Both instances are in the epoch Redis gave the topic.
    assert_eq!(a.poll("r", 0)["epoch"], late.poll("r", 0)["epoch"]);
    // And live after it.
    assert_eq!(a.publish("r", "m6"), 6);
    assert_eq!(sse.message(), (6, "m6".into()));
    assert_eq!(ws_message(&mut ws), (6, "m6".into()));
}

/// Publishers on three instances at once: every id from 1 to the total is
/// given out exactly once.
pub fn concurrent_publishers_on_three_instances_get_unique_gap_free_ids(rt: &str) {
    let redis = redis();
    let servers = [instance(rt, &redis), instance(rt, &redis), instance(rt, &redis)];
    const EACH: u64 = 40;
    let ids: Vec<u64> = thread::scope(|scope| {
        let handles: Vec<_> = servers
            .iter()
            .flat_map(|s| (0..2).map(move |_| s))
            .map(|s| scope.spawn(move || (0..EACH).map(|i| s.publish("c", format!("p{i}"))).collect::<Vec<_>>()))
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let total = 6 * EACH;
    let unique: BTreeSet<u64> = ids.iter().copied().collect();
    assert_eq!(unique.len() as u64, total, "no id given twice");
    assert_eq!(unique, (1..=total).collect(), "gap-free");
    for s in &servers {
        assert_eq!(s.poll("c", 0)["last_id"], total);
    }
}

// ANCHOR: killed
/// Redis is killed under live subscribers: the instances
/// stay up and keep their connections, publishing answers 503; Redis comes
/// back empty (no persistence): the next publish starts a new epoch, and
/// every subscriber gets the reset signal and then the new messages — no
/// silent gap.
pub fn redis_killed_and_restarted(rt: &str) {
    let mut redis = redis();
    let [a, b] = [instance(rt, &redis), instance(rt, &redis)];
    let mut sse = Sse::connect(b.addr, "/sse?topic=k", "");
    let mut ws = ws_connect(b.addr, "/ws?topic=k");
    assert_eq!(a.publish("k", "before"), 1);
    assert_eq!(sse.message(), (1, "before".into()));
    assert_eq!(ws_message(&mut ws), (1, "before".into()));
    let old_epoch = b.poll("k", 0)["epoch"].as_str().unwrap().to_owned();

    redis.kill();
    let (status, _, body) = post(&a, "k", "while down");
    assert_eq!(status, 503, "{body}");
    assert_eq!(b.stats()["refused"]["broker"], 0);
    assert!(a.stats()["refused"]["broker"].as_u64() >= Some(1));

    redis.restart().unwrap_or_else(|e| panic!("{e}"));
    let back = Instant::now();
    // Publish until Redis takes it (the first attempts may still find the
    // publisher's connection broken): then id 1 of a new epoch.
    let id = loop {
        let (status, _, body) = post(&a, "k", "after");
        if status == 200 {
            break serde_json::from_str::<Value>(&body).unwrap()["id"].as_u64().unwrap();
        }
        assert!(back.elapsed() < TIMEOUT, "publishing never recovered: {status} {body}");
        thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(id, 1, "Redis lost the topic: its ids start again");
    let reset = sse.next_event(TIMEOUT).expect("the reset event");
    assert_eq!(reset.event.as_deref(), Some("reset"), "{reset:?}");
    let epoch = reset.epoch.clone().expect("the reset names the epoch");
    assert_ne!(epoch, old_epoch);
    let (id, data) = sse.message();
    let recovery = back.elapsed();
    assert_eq!((id, data.as_str()), (1, "after"));
    assert_eq!(ws_json(&mut ws), serde_json::json!({ "reset": { "epoch": epoch } }));
    assert_eq!(ws_message(&mut ws), (1, "after".into()));
    eprintln!("{rt}: Redis back to the first message delivered after it: {recovery:?}");
}
// ANCHOR_END: killed

/// Presence across instances: a named subscriber on B is listed on A; when
/// B is SIGKILLed (no goodbye), it disappears from A's list within the
/// presence TTL.
pub fn presence_spans_instances_and_a_killed_one_vanishes_within_the_ttl(rt: &str) {
    let redis = redis();
    const TTL: f64 = 1.5;
    let ttl = TTL.to_string();
    let a = TestServer::start(rt, &["--broker", &redis.url(), "--presence-ttl", &ttl]);
    let b = TestServer::start(rt, &["--broker", &redis.url(), "--presence-ttl", &ttl]);
    let _on_a = Sse::connect(a.addr, "/sse?topic=p&client=anna", "");
    let _on_b = ws_connect(b.addr, "/ws?topic=p&client=bert");
    let clients = |s: &TestServer| s.get_json("/presence?topic=p")["clients"].clone();
    let deadline = Instant::now() + TIMEOUT;
    let both = serde_json::json!(["anna", "bert"]);
    while clients(&a) != both || clients(&b) != both {
        assert!(Instant::now() < deadline, "not both on both: {} and {}", clients(&a), clients(&b));
        thread::sleep(Duration::from_millis(20));
    }
    b.signal(libc::SIGKILL);
    let killed = Instant::now();
    while clients(&a) != serde_json::json!(["anna"]) {
        assert!(killed.elapsed() < Duration::from_secs_f64(TTL + 1.0), "bert outlived the TTL: {}", clients(&a));
        thread::sleep(Duration::from_millis(20));
    }
    eprintln!("{rt}: a SIGKILLed instance's client left /presence after {:?} (TTL {TTL} s)", killed.elapsed());
}

/// `POST /publish`: status, content type and body, whatever the status.
fn post(server: &TestServer, topic: &str, body: &str) -> (u16, Option<String>, String) {
    let mut resp = server.agent().post(server.url(&format!("/publish?topic={topic}"))).send(body).expect("a response");
    let status = resp.status().as_u16();
    let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
    (status, ct, resp.body_mut().read_to_string().unwrap_or_default())
}

/// `cluster!(lab)`: one test per case against `--runtime lab`.
macro_rules! cluster {
    ($runtime:ident) => {
        mod $runtime {
            cluster!(@cases stringify!($runtime);
                every_instance_delivers_every_message_in_order,
                an_instance_that_never_saw_the_publish_replays_it,
                concurrent_publishers_on_three_instances_get_unique_gap_free_ids,
                redis_killed_and_restarted,
                presence_spans_instances_and_a_killed_one_vanishes_within_the_ttl,
            );
        }
    };
    (@cases $runtime:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                crate::$case($runtime);
            }
        )*
    };
}

cluster!(tokio);
cluster!(mio);
cluster!(may);
cluster!(threads);
