//! A real browser's request headers, for clients that should send what a
//! browser sends.
//!
//! rtlab's own clients send the shortest request heads the contract
//! accepts (`Host:` and what the transport needs), so a poll's bytes on the
//! wire are a lower bound of what a page pays. `scripts/interop/headers.mjs`
//! captures, byte for byte, the heads headless Chromium sends to a lab for
//! a `fetch` poll, an `EventSource` and a `WebSocket` upgrade
//! (`bench-results/polling/chromium-headers.json`); with `--browser-headers
//! FILE` the polling scenario's clients send those header lines after their
//! own request line, on every poll and in every handshake.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::axes::Transport;

/// The captured header lines of one request kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Captured {
    /// The browser's request line (the clients send their own).
    pub request_line: String,
    /// Every header line after it, in the browser's order, without CRLF.
    pub headers: Vec<String>,
    /// The whole head's bytes as captured, request line to blank line.
    pub bytes: usize,
}

/// The capture file, as `scripts/interop/headers.mjs` writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Capture {
    /// The browser and its version (`156.0.8078.114`, as Playwright says it).
    pub browser: String,
    #[serde(default)]
    pub user_agent: Option<String>,
    #[serde(default)]
    pub captured: Option<String>,
    pub kinds: Kinds,
}

/// The three request kinds a page makes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Kinds {
    /// A `fetch` of `/poll` (short and long polls alike).
    pub poll: Captured,
    /// An `EventSource`'s `GET /sse`.
    pub sse: Captured,
    /// A `WebSocket`'s upgrade `GET /ws`.
    pub ws: Captured,
}

// ANCHOR: browser_headers
/// Header lines a real browser sends, per request kind, checked: each line
/// is `Name: value` with no CR or LF, each kind has a `Host`, the SSE kind
/// accepts `text/event-stream` and the WebSocket kind carries the upgrade
/// and a key. A request built from it is the client's own request line,
/// these lines, and the blank line.
#[derive(Debug, Clone, PartialEq)]
pub struct BrowserHeaders {
    pub capture: Capture,
}
// ANCHOR_END: browser_headers

impl BrowserHeaders {
    /// Reads and checks a capture file.
    pub fn read(path: &Path) -> std::io::Result<BrowserHeaders> {
        let text = std::fs::read_to_string(path).map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        BrowserHeaders::parse(&text).map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))
    }

    /// Parses and checks a capture (JSON).
    pub fn parse(json: &str) -> Result<BrowserHeaders, String> {
        let capture: Capture = serde_json::from_str(json).map_err(|e| e.to_string())?;
        for (kind, c) in [("poll", &capture.kinds.poll), ("sse", &capture.kinds.sse), ("ws", &capture.kinds.ws)] {
            for line in &c.headers {
                let Some((name, _)) = line.split_once(':') else { return Err(format!("{kind}: not a header line: {line:?}")) };
                if name.is_empty() || name.contains(|ch: char| ch.is_ascii_whitespace() || ch.is_control()) || line.contains(['\r', '\n']) {
                    return Err(format!("{kind}: not a header line: {line:?}"));
                }
            }
            if !c.has("host", "") {
                return Err(format!("{kind}: no Host header"));
            }
        }
        if !capture.kinds.sse.has("accept", "text/event-stream") {
            return Err("sse: no Accept: text/event-stream".into());
        }
        let ws = &capture.kinds.ws;
        if !ws.has("upgrade", "websocket") || !ws.has("sec-websocket-key", "") || !ws.has("sec-websocket-version", "13") {
            return Err("ws: not a WebSocket upgrade (Upgrade, Sec-WebSocket-Key, Sec-WebSocket-Version: 13)".into());
        }
        Ok(BrowserHeaders { capture })
    }

    /// The captured lines for a request of `transport` (polls of both kinds
    /// use the `fetch` poll's).
    pub fn lines(&self, transport: Transport) -> &[String] {
        let k = &self.capture.kinds;
        match transport {
            Transport::ShortPoll | Transport::LongPoll => &k.poll.headers,
            Transport::Sse => &k.sse.headers,
            Transport::Ws => &k.ws.headers,
        }
    }

    /// A request head: `request_line`, then the browser's lines for
    /// `transport`, then the blank line.
    pub fn head(&self, request_line: &str, transport: Transport) -> String {
        let mut head = String::with_capacity(512);
        head.push_str(request_line);
        head.push_str("\r\n");
        for line in self.lines(transport) {
            head.push_str(line);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        head
    }
}

impl Captured {
    /// Has a header `name` (case-insensitive) whose value contains `value`
    /// (case-insensitive; "" for any).
    fn has(&self, name: &str, value: &str) -> bool {
        self.headers.iter().any(|l| {
            l.split_once(':').is_some_and(|(n, v)| n.trim().eq_ignore_ascii_case(name) && v.to_ascii_lowercase().contains(value))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture(ws_extra: &str) -> String {
        format!(
            r#"{{"browser": "Chromium 1.2.3", "kinds": {{
                "poll": {{"request_line": "GET /poll?topic=t&after=0 HTTP/1.1", "headers": ["Host: 127.0.0.1:9", "Accept: */*"], "bytes": 60}},
                "sse": {{"request_line": "GET /sse?topic=t HTTP/1.1", "headers": ["Host: 127.0.0.1:9", "Accept: text/event-stream"], "bytes": 70}},
                "ws": {{"request_line": "GET /ws?topic=t HTTP/1.1", "headers": ["Host: 127.0.0.1:9", "Upgrade: websocket", "Connection: Upgrade",
                        "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="{ws_extra}], "bytes": 80}}
            }}}}"#
        )
    }

    #[test]
    fn a_capture_parses_and_builds_request_heads() {
        let h = BrowserHeaders::parse(&capture("")).expect("a valid capture");
        assert_eq!(h.capture.browser, "Chromium 1.2.3");
        let head = h.head("GET /poll?topic=x&after=4 HTTP/1.1", Transport::ShortPoll);
        assert_eq!(head, "GET /poll?topic=x&after=4 HTTP/1.1\r\nHost: 127.0.0.1:9\r\nAccept: */*\r\n\r\n");
        assert_eq!(h.lines(Transport::LongPoll), h.lines(Transport::ShortPoll));
        assert!(h.head("GET /ws?topic=x HTTP/1.1", Transport::Ws).contains("\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"));
        // The head parses as HTTP, with every header.
        let mut fields = [httparse::EMPTY_HEADER; 16];
        let mut req = httparse::Request::new(&mut fields);
        let sse = h.head("GET /sse?topic=x HTTP/1.1", Transport::Sse);
        assert!(req.parse(sse.as_bytes()).expect("parses").is_complete());
        assert_eq!(req.headers.len(), 2);
    }

    #[test]
    fn a_broken_capture_is_refused() {
        assert!(BrowserHeaders::parse(&capture(r#", "X-Evil: a\r\nInjected: b""#)).unwrap_err().contains("not a header line"));
        assert!(BrowserHeaders::parse(&capture(r#", "no colon here""#)).unwrap_err().contains("not a header line"));
        let no_key = capture("").replace(r#", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==""#, "");
        assert!(BrowserHeaders::parse(&no_key).unwrap_err().starts_with("ws:"));
        let no_host = capture("").replacen(r#""Host: 127.0.0.1:9", "#, "", 1);
        assert_eq!(BrowserHeaders::parse(&no_host).unwrap_err(), "poll: no Host header");
        assert!(BrowserHeaders::parse("{}").is_err());
    }

    #[test]
    fn the_committed_capture_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench-results/polling/chromium-headers.json");
        let h = BrowserHeaders::read(&path).expect("the committed capture reads");
        assert!(h.capture.browser.contains(char::is_numeric), "{}", h.capture.browser);
        for &t in Transport::ALL {
            assert!(!h.lines(t).is_empty());
        }
    }
}
