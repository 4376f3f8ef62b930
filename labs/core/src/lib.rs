//! # rtlab-core: the sans-IO protocol core
//!
//! Everything the rtlab servers have in common, with no sockets, no threads
//! and no clock. A runtime lab (tokio, mio, may, OS threads) owns the sockets
//! and the timers; it hands this crate the bytes it read and the current
//! time, and writes the bytes this crate gives back. That split — as in
//! `quinn-proto`/`quinn` or `rustls` — is what lets four very different
//! runtimes serve one contract with one implementation of it, and lets the
//! whole protocol be tested in memory with simulated time.
//!
//! ## Map of the crate
//!
//! | module | what it owns |
//! |---|---|
//! | [`http`] | request heads (parsed by `httparse`) → typed [`Route`]s or [`HttpError`]s with their status codes; response bytes |
//! | [`hub`] | topics, per-topic ids, the retention ring, replay after an id, the missed-messages signal, fan-out; the topic limit and the eviction of idle topics; the "stopping" flag that makes a `200` a promise |
//! | [`broker`] | the seam to a shared broker: [`broker::Broker`] (publish with a [`broker::Ticket`], load a topic), what the hub does with the broker's messages ([`broker::Applied`]) |
//! | [`encode`] | a published [`Message`]: its data held once, each transport's encoding built **once**, on first use, and shared by every subscriber |
//! | [`outbox`] | a connection's unsent output, its byte budget and the backpressure [`Policy`] |
//! | [`ws`] | WebSocket frames from clients: RFC 6455 checks on top of `tungstenite`'s frame header parser |
//! | [`heartbeat`] | SSE keep-alive and WebSocket ping/pong deadlines |
//! | [`conn`] | one [`Connection`] as a state machine: bytes and time in, bytes and deadlines out (the request and idle deadlines among them) |
//! | [`stats`] | the `/stats` counters, refusals by reason ([`Refusal`]) and timeouts among them |
//! | [`auth`] | tokens (HS256 JWTs via `jsonwebtoken`), what they allow, their expiry as a deadline, the origin allow-list |
//! | [`config`] | every server option ([`Config`]) |
//!
//! What every runtime adapter needs besides the protocol — socket options,
//! a stop request, pending writes, the one "drive" step, the shutdown wait —
//! is runtime plumbing, not protocol, and lives in `rtlab-adapter`
//! (`labs/adapter`).
//!
//! ## How a runtime uses it
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Instant;
//! use rtlab_core::{Config, Connection, Server, Status, Wake};
//!
//! struct NoWake;
//! impl Wake for NoWake { fn wake(&self, _token: usize) {} }
//!
//! let server = Server::new(Config::default());
//! let mut conn = Connection::new(server, Arc::new(NoWake), 0, Instant::now());
//! conn.on_read(b"POST /publish?topic=demo HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", Instant::now());
//! let mut out = Vec::new();
//! let n = conn.take_output(&mut out, usize::MAX); // write these bytes to the socket...
//! conn.written(n);                                   // ...and say how many went
//! let response: Vec<u8> = out.concat();
//! assert!(response.ends_with(b"{\"id\":1}"));
//! assert_eq!(conn.status(), Status::Open);            // keep-alive: wait for the next request
//! ```

pub mod broker;
pub mod auth;
pub mod config;
pub mod conn;
pub mod encode;
pub mod heartbeat;
pub mod http;
pub mod hub;
pub mod outbox;
pub mod page;
pub mod stats;
pub mod ws;

pub use bytes::Bytes;
pub use config::Config;
pub use conn::{Connection, Server, Status};
pub use encode::{Message, Transport};
pub use http::{HttpError, Route};
pub use hub::{Hub, Wake};
pub use outbox::Policy;
pub use stats::{Kind, Refusal, Stats};
