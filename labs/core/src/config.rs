//! Server options shared by every runtime.

use std::time::Duration;

use crate::auth::Tokens;
use crate::outbox::Policy;

// ANCHOR: config
/// Every tunable of a lab server. The same struct drives every runtime, so a
/// benchmark that changes one option changes it for all labs alike.
///
/// The defaults are the contract's (the book's chapter "The contract",
/// `book/src/contract.md`): 1024 retained messages per topic, 64 KiB
/// messages, a keep-alive comment every 15 s, a WebSocket ping every 30 s.
/// The limits on what a client may make the server hold — request time,
/// idle time, topics, connections — and why their defaults are what they
/// are, are the book's chapter "Bad input and hostile clients"
/// (`book/src/hostile-clients.md`). Every default is written only here:
/// `rtlab serve` takes its option defaults from `Config::default()`.
#[derive(Debug, Clone)]
pub struct Config {
    /// Messages each topic keeps for replay.
    pub retention: usize,
    /// Largest message accepted by `POST /publish` or a WebSocket publish (bytes).
    pub max_message: usize,
    /// Largest message `/echo` accepts before it closes with 1009 (bytes).
    /// Conformance suites send messages of many megabytes, so it is separate.
    pub max_echo_message: usize,
    /// Largest request head (request line and headers) before `431`.
    pub max_head: usize,
    /// How long one request may take to arrive, counted from its first byte:
    /// its head and, for a publish, its body. Past it the server answers
    /// `408 Request Timeout` and closes. A client that trickles a request a
    /// byte at a time (slowloris) holds a connection this long, not forever.
    pub request_timeout: Duration,
    /// How long a connection may stay open with no request in progress:
    /// before its first request, and between keep-alive requests. Past it
    /// the connection is closed without a word: there is no request to
    /// answer. (Event streams, WebSockets and held long polls are not idle.)
    pub idle_timeout: Duration,
    /// Most topics the server keeps at once. A publish or subscription that
    /// would create one more, when no topic can be evicted, gets `503`.
    pub max_topics: usize,
    /// How long a topic must have been quiet — no subscriber, and no message
    /// published since this long — before it may be evicted to make room for
    /// a new one. Eviction happens only when the server is at `max_topics`.
    pub topic_ttl: Duration,
    /// Most connections served at once by the process; the next client gets
    /// a `503` and is closed. 0: derived when the server starts from the
    /// open-files limit (`RLIMIT_NOFILE`), less a reserve for the server's own
    /// descriptors (`rtlab_adapter::gate`), so that the server refuses while
    /// it still has descriptors to refuse with.
    pub max_connections: usize,
    /// Interval of SSE `: keep-alive` comments on an otherwise quiet stream.
    pub keepalive: Duration,
    /// Interval of server pings on `/ws`; a pong missing for two intervals closes.
    pub ping_interval: Duration,
    /// Bytes one subscriber may have waiting in the server before the policy acts.
    pub outbox_budget: usize,
    /// What happens to a subscriber whose outbox is over budget.
    pub policy: Policy,
    /// How long a closing connection may take to flush its last bytes and let
    /// the peer finish, before the socket is dropped.
    pub close_linger: Duration,
    /// Input is not read while this many response bytes are still unsent: a
    /// client that sends but never reads cannot make the server buffer without
    /// bound.
    pub read_pause: usize,
    /// With a broker: how long a subscriber stays in `/presence` after its
    /// process stopped saying so (it is refreshed every third of this):
    /// the longest a client of a process that died is still listed.
    pub presence_ttl: Duration,
    /// `SO_SNDBUF` for every accepted socket (0: the kernel's autotuning).
    /// Without it a stalled peer lets the kernel buffer grow to megabytes per
    /// socket; with it, backpressure reaches the outbox quickly.
    pub socket_send_buffer: usize,
    /// `TCP_USER_TIMEOUT` for every accepted socket (zero: the kernel's
    /// default). How long sent bytes may stay unacknowledged before the
    /// kernel gives the connection up and the next read or write fails.
    /// Without it, a peer that vanished (link cut, NAT entry dropped) holds an
    /// SSE stream through about 15 minutes of retransmissions
    /// (`net.ipv4.tcp_retries2`); with it, the keep-alive comment that goes
    /// unanswered reaps the stream within keep-alive interval + this (the
    /// book's chapter "Dead connections").
    pub tcp_user_timeout: Duration,
    /// The token verifier (`--token-secret`): with it, `/publish`, `/poll`,
    /// `/sse` and `/ws` need a token, and a live connection ends at its
    /// token's `exp` (less the spread). `None`: no tokens asked.
    pub tokens: Option<Tokens>,
    /// Origins a browser request may come from (`--allowed-origin`, e.g.
    /// `https://example.org`); another `Origin` gets `403`. Empty: any.
    /// Requests without an `Origin` (not from a browser page) pass.
    pub allowed_origins: Vec<String>,
    /// Refuse WebSocket upgrades with `501` (`--refuse-upgrade`): a test
    /// switch for clients that fall back to long polling.
    pub refuse_upgrade: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            retention: 1024,
            max_message: 64 * 1024,
            max_echo_message: 16 * 1024 * 1024,
            max_head: 8 * 1024,
            request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_topics: 10_000,
            topic_ttl: Duration::from_secs(300),
            max_connections: 0,
            keepalive: Duration::from_secs(15),
            ping_interval: Duration::from_secs(30),
            outbox_budget: 256 * 1024,
            policy: Policy::Disconnect,
            close_linger: Duration::from_secs(2),
            read_pause: 64 * 1024,
            socket_send_buffer: 64 * 1024,
            tcp_user_timeout: Duration::ZERO,
            presence_ttl: Duration::from_secs(30),
            tokens: None,
            allowed_origins: Vec::new(),
            refuse_upgrade: false,
        }
    }
}
// ANCHOR_END: config
