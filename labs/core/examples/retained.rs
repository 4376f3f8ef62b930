// Run: cargo run --release -p rtlab-core --example retained -- [MESSAGES]  (one JSON line; `rtlab retained` runs it and keeps the figures)
//! What a retained message costs the server: a topic's retention is filled
//! with `MESSAGES` (default 20000) messages of 1 KiB through the core
//! (`Hub::publish`, as `POST /publish` does, no sockets), and the process's
//! resident anonymous memory (`RssAnon` in `/proc/self/status`) and its live
//! heap (counted by a global allocator wrapper) are read before and after,
//! per message, at three points:
//!
//! 1. `retained`: published, nobody has read them;
//! 2. `polled`: one short poll (`GET /poll?after=0`) read them all, and left;
//! 3. `all_transports`: an SSE and a WebSocket subscriber replayed them all
//!    (`Last-Event-ID: E-0`, `?after=0`), and left.
//!
//! It uses only the core's request-level API (`Server`, `Connection`,
//! `Hub::publish`), so the same file builds against an older core: that is
//! how the "before" figures are made (`book/src/memory-per-connection.md`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use rtlab_core::{Bytes, Config, Connection, Server, Wake};

/// The system allocator, counting the bytes live on the heap.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to `System` unchanged; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is System's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is System's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is System's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Bytes of one message's data.
const DATA: usize = 1024;

struct NoWake;
impl Wake for NoWake {
    fn wake(&self, _token: usize) {}
}

/// (`RssAnon` bytes, live heap bytes) now.
fn sample() -> (i64, i64) {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: i64 = status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:")?.trim().strip_suffix("kB")?.trim().parse().ok())
        .expect("RssAnon");
    (kb * 1024, LIVE.load(Ordering::Relaxed) as i64)
}

/// Sends `request` on a fresh connection and drains what it answers.
fn read_all(server: &Arc<Server>, request: &str, now: Instant) -> usize {
    let mut conn = Connection::new(server.clone(), Arc::new(NoWake), 1, now);
    conn.on_read(request.as_bytes(), now);
    let mut total = 0;
    loop {
        let mut out: Vec<Bytes> = Vec::new();
        let n = conn.take_output(&mut out, usize::MAX);
        if n == 0 {
            return total;
        }
        conn.written(n);
        total += n;
    }
}

fn git(args: &[&str]) -> String {
    std::process::Command::new("git")
        .args(["-C", env!("CARGO_MANIFEST_DIR")])
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn main() {
    let messages: usize = std::env::args().nth(1).map_or(20_000, |n| n.parse().expect("MESSAGES is a number"));
    let config = Config {
        retention: messages,
        max_message: DATA.max(Config::default().max_message),
        outbox_budget: messages * 4 * DATA,
        ..Config::default()
    };
    let server = Server::with_epoch(config, "E");
    let now = Instant::now();
    // The topic exists before the first sample: only messages are measured.
    server.hub.publish("t", "first", now, &server.stats).expect("publish");
    let mut data = String::with_capacity(DATA);
    let before = sample();
    for i in 0..messages {
        data.clear();
        data.extend((0..DATA).map(|j| char::from(b'a' + ((i + j) % 26) as u8)));
        server.hub.publish("t", &data, now, &server.stats).expect("publish");
    }
    let per = |(rss, heap): (i64, i64)| {
        serde_json::json!({
            "rss_anon_per_message": (rss - before.0) as f64 / messages as f64,
            "heap_per_message": (heap - before.1) as f64 / messages as f64,
        })
    };
    let mut stages = Vec::new();
    stages.push(("retained", per(sample())));
    let polled = read_all(&server, "GET /poll?topic=t&after=0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", now);
    stages.push(("polled", per(sample())));
    let sse = read_all(&server, "GET /sse?topic=t HTTP/1.1\r\nHost: x\r\nLast-Event-ID: E-0\r\n\r\n", now);
    let ws = read_all(
        &server,
        "GET /ws?topic=t&after=0 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        now,
    );
    stages.push(("all_transports", per(sample())));
    // Each reader got every message: the figures are of a full retention.
    for (what, bytes) in [("poll", polled), ("sse", sse), ("ws", ws)] {
        assert!(bytes > messages * DATA, "the {what} reader got {bytes} bytes for {messages} messages");
    }
    let doc = serde_json::json!({
        "messages": messages,
        "data_bytes": DATA,
        "commit": git(&["rev-parse", "HEAD"]),
        "dirty": !git(&["status", "--porcelain", "--untracked-files=no"]).is_empty(),
        "stages": stages.into_iter().map(|(stage, v)| serde_json::json!({"stage": stage, "per_message": v})).collect::<Vec<_>>(),
    });
    println!("{doc}");
}
