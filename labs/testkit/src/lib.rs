//! The rtlab test kit: what a test, an example or the benchmark harness needs
//! to start a server process and talk to it over real sockets, written once.
//!
//! None of it is rtlab code: the kit does not depend on `rtlab-core`, so its
//! clients check the server from the outside, the way any other client would.
//! It knows only the one line every server process prints first on stdout,
//! `listening on ADDR`, and the HTTP, SSE and WebSocket wire formats.
//!
//! | module | what |
//! |---|---|
//! | [`process`] | [`Launch`] a server process (`rtlab serve ...`, or an example that starts itself again as a child) and wait for its `listening on ADDR` line; the [`Running`] process: its address, signals, exit status, captured stderr, killed when dropped. [`Launch::this_exe`] for an example or test that starts itself again as the server; the child's side: [`process::announce`], [`process::on_stdin_eof`]. Where the workspace's built `rtlab` is: [`rtlab_bin`]. |
//! | [`h2gate`] | [`H2Gate`](h2gate::H2Gate): a gateway from HTTP/1.1 to HTTP/2 (one `h2` client connection over TLS, a stream per request), so the HTTP/1.1 clients above test a server's HTTP/2 |
//! | [`http`] | [`RawConn`], a raw TCP connection with a read buffer and deadlines: write any bytes ([`request`] builds a head), read a response [`Head`] or a whole [`Response`], expect a clean close |
//! | [`redis`] | [`RedisServer`]: a real `redis-server` on a free port, without persistence, that a test can kill and restart on the same port |
//! | [`sse`] | [`Sse`], an event-stream reader over a raw connection: blocks, [`SseEvent`]s (id, event, data), comments counted |
//! | [`tls`] | TLS for the clients: [`tls::mark`] an address as speaking TLS (trusting a given certificate) and every raw client connecting there speaks it, through rustls' blocking client ([`tls::Stream`]) |
//! | [`ws`] | WebSocket by hand: the opcodes, the masked [`client_frame`] builder (FIN, RSV and opcode in its first byte, so fragments and reserved bits are the caller's to set) and [`ws::frame_header`], the [`upgrade_request`], [`RawWs`] (handshake, send frames, read server [`Frame`]s, expect a close); and a blocking tungstenite client ([`ws_connect`], [`ws_read`], ...) |
//!
//! The clients are test clients: every read has a deadline ([`TIMEOUT`]
//! unless a call takes its own), and they panic with a message that says what
//! was awaited when something is wrong. [`Launch`] returns `io::Result`
//! instead, so that the benchmark harness can report a server that does not
//! start rather than stop.

pub mod h2gate;
pub mod http;
pub mod process;
pub mod redis;
pub mod sse;
pub mod tls;
pub mod ws;

use std::time::Duration;

pub use http::{Head, RawConn, Response, assert_content_type, request};
pub use process::{Launch, Running, Stderr, no_inherited_descriptors, rtlab_bin};
pub use redis::RedisServer;
pub use sse::{Sse, SseEvent, parse_sse_block};
pub use ws::{
    Frame, RawWs, Ws, client_frame, upgrade_request, ws_connect, ws_read, ws_send_text, ws_text, ws_try_read,
};

/// How long any single expected event may take before a client helper
/// panics. Only ever reached when something is wrong.
pub const TIMEOUT: Duration = Duration::from_secs(10);
