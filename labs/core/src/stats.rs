//! The counters behind `GET /stats`.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

// ANCHOR: refusal
/// Why a client was turned away with a `503`. Each has its own counter in
/// `/stats` (`refused`), so that an operator sees which limit is biting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Refusal {
    /// The process serves `max_connections` already (the adapter's gate).
    Connections = 0,
    /// The runtime had no room for one more: no thread, no coroutine stack.
    Capacity = 1,
    /// The request would have created a topic beyond `max_topics`, and no
    /// topic was idle long enough to be evicted.
    Topics = 2,
    /// A publish after the server began to stop: it would not be delivered.
    Stopping = 3,
    /// The broker (`--broker`) could not be reached: nothing was published,
    /// or a topic could not be loaded.
    Broker = 4,
}
// ANCHOR_END: refusal

const REFUSALS: [(&str, Refusal); 5] = [
    ("connections", Refusal::Connections),
    ("capacity", Refusal::Capacity),
    ("topics", Refusal::Topics),
    ("stopping", Refusal::Stopping),
    ("broker", Refusal::Broker),
];

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
/// * `topics`: topics the server holds now; `evicted_topics`: topics
///   forgotten to make room for new ones.
/// * `refused`: clients turned away with a `503`, by [`Refusal`].
/// * `timed_out`: requests answered `408` because they took longer than the
///   request timeout (`request`), and connections closed after the idle
///   timeout with no request in progress (`idle`).
/// * `limits`: the connection and topic limits in force (`max_connections`
///   as the runtime resolved it; 0 until a runtime says).
#[derive(Debug, Default)]
pub struct Stats {
    open: [AtomicI64; 5],
    pub(crate) published: AtomicU64,
    pub(crate) delivered: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) slow_disconnects: AtomicU64,
    pub(crate) topics: AtomicI64,
    pub(crate) evicted_topics: AtomicU64,
    refused: [AtomicU64; 5],
    pub(crate) request_timeouts: AtomicU64,
    pub(crate) idle_timeouts: AtomicU64,
    max_connections: AtomicU64,
    pub(crate) max_topics: AtomicU64,
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

    /// A client was turned away with a `503` for `why`.
    pub fn refused(&self, why: Refusal) {
        self.refused[why as usize].fetch_add(1, Relaxed);
    }

    /// Clients turned away for `why` so far.
    pub fn refused_count(&self, why: Refusal) -> u64 {
        self.refused[why as usize].load(Relaxed)
    }

    /// Records the connection limit a runtime enforces, for `/stats`.
    pub fn set_max_connections(&self, max: usize) {
        self.max_connections.store(max as u64, Relaxed);
    }

    /// Topics held now.
    pub fn topic_count(&self) -> i64 {
        self.topics.load(Relaxed)
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
        let refused: serde_json::Map<_, _> =
            REFUSALS.iter().map(|&(name, why)| (name.into(), self.refused_count(why).into())).collect();
        serde_json::json!({
            "connections": conns,
            "published": self.published.load(Relaxed),
            "delivered": self.delivered.load(Relaxed),
            "dropped": self.dropped.load(Relaxed),
            "slow_disconnects": self.slow_disconnects.load(Relaxed),
            "topics": self.topic_count(),
            "evicted_topics": self.evicted_topics.load(Relaxed),
            "refused": refused,
            "timed_out": {
                "request": self.request_timeouts.load(Relaxed),
                "idle": self.idle_timeouts.load(Relaxed),
            },
            "limits": {
                "max_connections": self.max_connections.load(Relaxed),
                "max_topics": self.max_topics.load(Relaxed),
            },
        })
        .to_string()
    }
    // ANCHOR_END: stats_json
}
