//! Server options shared by every runtime.

use std::time::Duration;

use crate::outbox::Policy;

// ANCHOR: config
/// Every tunable of a lab server. The same struct drives every runtime, so a
/// benchmark that changes one option changes it for all labs alike.
///
/// The defaults are the contract's (the book's chapter "The contract",
/// `book/src/contract.md`): 1024 retained messages per topic, 64 KiB
/// messages, a keep-alive comment every 15 s, a WebSocket ping every 30 s.
/// They are written only here: `rtlab serve` takes its option defaults from
/// `Config::default()`.
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
    /// `SO_SNDBUF` for every accepted socket (0: the kernel's autotuning).
    /// Without it a stalled peer lets the kernel buffer grow to megabytes per
    /// socket; with it, backpressure reaches the outbox quickly.
    pub socket_send_buffer: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            retention: 1024,
            max_message: 64 * 1024,
            max_echo_message: 16 * 1024 * 1024,
            max_head: 8 * 1024,
            keepalive: Duration::from_secs(15),
            ping_interval: Duration::from_secs(30),
            outbox_budget: 256 * 1024,
            policy: Policy::Disconnect,
            close_linger: Duration::from_secs(2),
            read_pause: 64 * 1024,
            socket_send_buffer: 64 * 1024,
        }
    }
}
// ANCHOR_END: config
