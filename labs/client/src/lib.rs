//! # rtlab-client: a subscriber that reconnects
//!
//! A client of the rtlab contract that keeps one subscription alive across
//! lost connections, on any of the three push-style transports: Server-Sent
//! Events, WebSocket and long polling. It resumes after the last message it
//! delivered (so nothing is lost or delivered twice while the server still
//! retains it), passes on the server's missed-messages signal, and waits
//! between attempts as its back-off strategy says.
//!
//! Like the server's core, the protocol is sans-IO, as in the
//! `quinn-proto`/`quinn` split: the [`Subscriber`] is a state machine that
//! takes bytes and the current time and returns actions (connect, send,
//! disconnect, deliver) and a deadline; it owns no socket and reads no clock,
//! so its tests run on simulated time. [`blocking`] is the thin runtime that
//! drives it over real sockets, and `rtlab listen` is that runtime on the
//! command line.
//!
//! ## Map of the crate
//!
//! | module | what it owns |
//! |---|---|
//! | [`backoff`] | the back-off [`Strategy`]s — none, exponential, full, equal and decorrelated jitter (Brooker's definitions) — and a client's [`Backoff`] state; the randomness is injected |
//! | [`subscriber`] | the [`Subscriber`] state machine: resume ids, duplicates, missed and gap reports, back-off and its reset, deadlines |
//! | [`wire`] | what differs per [`Transport`]: requests, the checks of a response head, bytes → messages (SSE through [`sse`], WebSocket through `tungstenite`, poll answers through `serde_json`) |
//! | [`sse`] | an incremental `text/event-stream` parser, by the WHATWG standard |
//! | [`http`] | the base [`Url`], request heads, response heads (`httparse`) and body framing (length, chunked, until close) |
//! | [`blocking`] | the runtime: std sockets on the caller's thread, read timeouts as the timer |
//! | [`tasks`] | the runtime for many subscriptions: one tokio task each, source address chosen, attempts observed (the herd experiment) |
//! | [`listen`] | `rtlab listen`: its arguments and output |
//!
//! ## How a runtime uses it
//!
//! ```
//! use std::time::Instant;
//! use rand::SeedableRng;
//! use rtlab_client::{Action, Config, Subscriber, Transport};
//!
//! let config = Config::new("http://127.0.0.1:8080".parse()?, "news", Transport::Sse)?;
//! let mut sub = Subscriber::new(config, rand::rngs::SmallRng::seed_from_u64(1));
//! let t0 = Instant::now();
//! sub.start(t0);
//! let Some(Action::Connect(request)) = sub.poll_action() else { panic!() };
//! assert_eq!(request.target, "/sse?topic=news");
//! // ... the runtime connects to request.host:request.port ...
//! sub.handle_connected(t0);
//! let Some(Action::Send(head)) = sub.poll_action() else { panic!() };
//! assert!(head.starts_with(b"GET /sse?topic=news HTTP/1.1\r\n"));
//! // ... writes `head`, then feeds what it reads to `handle_data`, wakes it
//! // at `poll_timeout()` with `handle_timeout`, and so on.
//! # Ok::<(), String>(())
//! ```

pub mod backoff;
pub mod blocking;
pub mod http;
pub mod listen;
pub mod sse;
pub mod subscriber;
pub mod tasks;
pub mod wire;

pub use backoff::{Backoff, Strategy};
pub use http::{Request, Url};
pub use subscriber::{Action, Config, Event, Message, Start, Stats, Subscriber};
pub use wire::Transport;

/// The largest SSE event the client accepts, in bytes (far above the
/// contract's default message limit).
pub const MAX_MESSAGE: usize = 16 * 1024 * 1024;
