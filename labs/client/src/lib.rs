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
//! | [`sse`] | an incremental `text/event-stream` parser, by the WHATWG standard |
//! | [`http`] | the base [`Url`], request heads, response heads (`httparse`) and body framing (length, chunked, until close) |

pub mod backoff;
pub mod http;
pub mod sse;

pub use backoff::{Backoff, Strategy};
pub use http::{Request, Url};
