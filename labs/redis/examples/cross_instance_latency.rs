// Run: cargo build --release -p rtlab && cargo run --release -p rtlab-redis --example cross_instance_latency [-- MESSAGES [RUNTIME]]
//! Publish-to-receive latency on one process against across two processes
//! through Redis: the cost of the broker, measured.
//!
//! Starts its own `redis-server` (no persistence, a free port), then two
//! servers: one self-contained (`in-process`: publisher and SSE subscriber
//! on the same process) and two on the broker (`via Redis`: publish on A,
//! SSE subscriber on B). Each message carries the moment it was sent; the
//! subscriber's receive time minus it is the latency. Messages go one at a
//! time (the next after the previous one arrived), so this is the latency
//! of an idle system, not a throughput test. Prints p50, p99 and the max
//! for both, and the difference of the p50s.
//!
//! A quick look, not the committed benchmark: the issue's `rtlab bench
//! cluster` scenario (results as data, plots, the book's figures) is not
//! written yet.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rtlab_testkit::{Launch, RedisServer, Running, Sse, rtlab_bin};

fn serve(runtime: &str, extra: &[&str]) -> Running {
    let rtlab = rtlab_bin().unwrap_or_else(|e| panic!("{e}"));
    Launch::serve(rtlab, runtime).args(extra).start().unwrap_or_else(|e| panic!("starting rtlab: {e}"))
}

fn publish(addr: SocketAddr, topic: &str, body: &str) {
    let mut conn = rtlab_testkit::RawConn::connect(addr);
    let extra = format!("Content-Length: {}\r\nConnection: close\r\n", body.len());
    conn.send(&rtlab_testkit::request("POST", &format!("/publish?topic={topic}"), &extra));
    conn.send(body.as_bytes());
    let head = conn.read_head();
    assert_eq!(head.status, 200, "{head:?}");
}

/// Latencies in microseconds of `n` messages published on `publisher`,
/// received on an SSE stream of `subscriber`.
fn run(publisher: SocketAddr, subscriber: SocketAddr, n: usize) -> Vec<u64> {
    let mut sse = Sse::connect(subscriber, "/sse?topic=lat", "");
    // Warm-up: one message end to end (the topic loaded, the paths warm).
    publish(publisher, "lat", "warm-up");
    sse.message();
    let t0 = Instant::now();
    let mut latencies = Vec::with_capacity(n);
    for _ in 0..n {
        let sent = t0.elapsed().as_nanos() as u64;
        publish(publisher, "lat", &sent.to_string());
        let (_, data) = sse.message();
        let received = t0.elapsed().as_nanos() as u64;
        latencies.push((received - data.parse::<u64>().expect("a timestamp")) / 1000);
    }
    latencies.sort_unstable();
    latencies
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(2000, |a| a.parse().expect("MESSAGES: a number"));
    let runtime = args.next().unwrap_or_else(|| "tokio".into());
    let redis = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    let alone = serve(&runtime, &[]);
    let a = serve(&runtime, &["--broker", &redis.url()]);
    let b = serve(&runtime, &["--broker", &redis.url()]);
    std::thread::sleep(Duration::from_millis(200)); // The subscriber threads subscribed.

    let local = run(alone.addr(), alone.addr(), n);
    let cross = run(a.addr(), b.addr(), n);
    println!("{runtime}, {n} messages, one at a time; publish (a new HTTP connection each) to SSE receipt, µs:");
    for (name, l) in [("in-process", &local), ("via Redis", &cross)] {
        println!("  {name:<11} p50 {:>6}  p99 {:>6}  max {:>6}", pct(l, 0.5), pct(l, 0.99), l[l.len() - 1]);
    }
    let added = pct(&cross, 0.5) as i64 - pct(&local, 0.5) as i64;
    println!("  added by the broker at p50: {added} µs");
}
