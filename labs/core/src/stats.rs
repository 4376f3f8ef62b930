//! The counters behind `GET /stats`.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

/// What a connection is currently doing, for the per-transport counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Plain request/response HTTP (publish, short poll, stats, the page), or
    /// a connection that has not finished its first request yet.
    Http = 0,
    /// A long poll being held open.
    LongPoll = 1,
    /// A Server-Sent Events stream.
    Sse = 2,
    /// A `/ws` WebSocket.
    Ws = 3,
    /// An `/echo` WebSocket.
    Echo = 4,
}

const KINDS: [(&str, Kind); 5] = [
    ("http", Kind::Http),
    ("long_poll", Kind::LongPoll),
    ("sse", Kind::Sse),
    ("ws", Kind::Ws),
    ("echo", Kind::Echo),
];

// ANCHOR: stats
/// Process-wide counters, updated with relaxed atomics on the hot paths.
///
/// * `published`: accepted publishes.
/// * `delivered`: messages handed to a subscriber (queued to an SSE or
///   WebSocket outbox, or returned by a poll).
/// * `dropped`: messages a subscriber will never get from this connection: the
///   drop-oldest policy discarded them, or the subscriber was disconnected as a
///   slow consumer with them still queued.
/// * `slow_disconnects`: subscribers disconnected by the `disconnect` policy.
#[derive(Debug, Default)]
pub struct Stats {
    open: [AtomicI64; 5],
    pub(crate) published: AtomicU64,
    pub(crate) delivered: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) slow_disconnects: AtomicU64,
}
// ANCHOR_END: stats

impl Stats {
    pub(crate) fn open(&self, kind: Kind) {
        self.open[kind as usize].fetch_add(1, Relaxed);
    }

    pub(crate) fn close(&self, kind: Kind) {
        self.open[kind as usize].fetch_sub(1, Relaxed);
    }

    pub(crate) fn switch(&self, from: Kind, to: Kind) {
        if from != to {
            self.close(from);
            self.open(to);
        }
    }

    /// Open connections of one kind.
    pub fn open_count(&self, kind: Kind) -> i64 {
        self.open[kind as usize].load(Relaxed)
    }

    // ANCHOR: stats_json
    /// The `/stats` document.
    pub fn to_json(&self) -> String {
        let mut conns = serde_json::Map::new();
        let mut total = 0;
        for (name, kind) in KINDS {
            let n = self.open_count(kind);
            total += n;
            conns.insert(name.into(), n.into());
        }
        conns.insert("total".into(), total.into());
        serde_json::json!({
            "connections": conns,
            "published": self.published.load(Relaxed),
            "delivered": self.delivered.load(Relaxed),
            "dropped": self.dropped.load(Relaxed),
            "slow_disconnects": self.slow_disconnects.load(Relaxed),
        })
        .to_string()
    }
    // ANCHOR_END: stats_json
}
