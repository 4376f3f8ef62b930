//! The demo page served at `GET /`.

/// A small page that subscribes with `EventSource` and `WebSocket` and
/// publishes with `fetch` and a WebSocket frame, against the server that
/// served it.
pub const DEMO_PAGE: &str = include_str!("demo.html");
