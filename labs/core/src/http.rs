//! HTTP/1.1 requests in, typed routes out; typed errors and response bytes.
//!
//! Parsing is `httparse`'s job. This module decides what a parsed request
//! *means* under the contract: which endpoint, which topic, which ids, and
//! which status code when something is wrong.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;

use crate::hub::Cursor;

// ANCHOR: max_headers
/// Most headers a request may carry before it is refused with `431`.
const MAX_HEADERS: usize = 48;
// ANCHOR_END: max_headers

/// A contract endpoint with its validated parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `POST /publish?topic=T`; the body (of `content_length` bytes) is the message.
    Publish { topic: String },
    /// `GET /poll?topic=T&after=[E-]N[&wait=S]`.
    Poll { topic: String, after: Cursor, wait: Option<u32> },
    /// `GET /sse?topic=T`, resuming after `Last-Event-ID` / `lastEventId` if given.
    Sse { topic: String, resume: Option<Cursor> },
    /// `GET /ws?topic=T[&after=[E-]N]`, a WebSocket upgrade.
    Ws { topic: String, resume: Option<Cursor>, accept: String },
    /// `GET /echo`, a WebSocket upgrade.
    Echo { accept: String },
    /// `GET /`, the demo page.
    Index,
    /// `GET /ticker`, the `EventSource` ticker page.
    Ticker,
    /// `GET /chat`, the chat page (WebSocket, long-poll fallback).
    Chat,
    /// `GET /stats`.
    Stats,
    /// `GET /presence?topic=T`: who is subscribed.
    Presence { topic: String },
}

/// A request whose head has been fully received and routed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Where the request goes.
    pub route: Route,
    /// Bytes of body that follow the head.
    pub content_length: usize,
    /// Whether the connection stays open after the response.
    pub keep_alive: bool,
    /// The client sent `Expect: 100-continue` and waits for a go-ahead.
    pub expect_continue: bool,
    /// The subscription's `client` query parameter: its name in `/presence`.
    pub client: Option<String>,
    /// The `Authorization` header's value, as sent (`crate::auth` reads it).
    pub authorization: Option<String>,
    /// The `token` query parameter: what a browser's `EventSource` and
    /// `WebSocket`, which cannot set headers, send instead.
    pub token: Option<String>,
    /// The `Origin` header: sent by browsers, checked against the allow-list.
    pub origin: Option<String>,
}

// ANCHOR: errors
/// Why a request cannot be served: each maps to one status code and a
/// one-line plain-text reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// `400`: malformed HTTP or invalid parameters.
    BadRequest(String),
    /// `404`: no such path.
    NotFound,
    /// `405`: the path exists, the method does not; `allow` lists the right one.
    MethodNotAllowed { allow: &'static str },
    /// `401`: no token, or one that is malformed, badly signed or expired
    /// (contract "Tokens and origins"); the reason says which.
    Unauthorized(String),
    /// `403`: a valid token that does not allow this topic or publishing, or
    /// an `Origin` not on the allow-list.
    Forbidden(String),
    /// `408`: the request did not arrive whole within `limit` of its first byte.
    RequestTimeout { limit: Duration },
    /// `411`: a body without `Content-Length` (chunked uploads are not accepted).
    LengthRequired,
    /// `413`: the message is larger than the server's limit.
    PayloadTooLarge { limit: usize },
    /// `426`: a WebSocket upgrade with a version other than 13.
    UpgradeRequired,
    /// `431`: the request head is larger than the server's limit.
    HeadersTooLarge,
    /// `501`: a WebSocket upgrade on a server started with
    /// `--refuse-upgrade` (how the demo chat's long-poll fallback is tested:
    /// a proxy that does not pass upgrades looks the same to a browser).
    UpgradeRefused,
    /// `503`: a limit of the server refuses what the request asks for (too
    /// many connections or topics, or the server is stopping); the reason
    /// says which.
    Unavailable(String),
}
// ANCHOR_END: errors

impl HttpError {
    // ANCHOR: status
    /// The status code.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::BadRequest(_) => 400,
            HttpError::Unauthorized(_) => 401,
            HttpError::Forbidden(_) => 403,
            HttpError::NotFound => 404,
            HttpError::MethodNotAllowed { .. } => 405,
            HttpError::RequestTimeout { .. } => 408,
            HttpError::LengthRequired => 411,
            HttpError::PayloadTooLarge { .. } => 413,
            HttpError::UpgradeRequired => 426,
            HttpError::HeadersTooLarge => 431,
            HttpError::UpgradeRefused => 501,
            HttpError::Unavailable(_) => 503,
        }
    }

    // ANCHOR_END: status

    /// The complete response: status line, headers and the reason as body.
    pub fn response(&self) -> Bytes {
        let mut extra = String::new();
        match self {
            HttpError::MethodNotAllowed { allow } => extra = format!("Allow: {allow}\r\n"),
            HttpError::UpgradeRequired => extra.push_str("Sec-WebSocket-Version: 13\r\n"),
            HttpError::Unavailable(_) => extra.push_str("Retry-After: 1\r\n"),
            // RFC 6750 §3: a 401 for a bearer token names the scheme.
            HttpError::Unauthorized(_) => extra.push_str("WWW-Authenticate: Bearer error=\"invalid_token\"\r\n"),
            _ => {}
        }
        // The connection closes after every error response (the body of a
        // refused request is never read), so say so, or a keep-alive client
        // would send its next request into a closing socket.
        extra.push_str("Connection: close\r\n");
        response_with(self.status(), "text/plain; charset=utf-8", &extra, format!("{self}\n").as_bytes())
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::BadRequest(why) => write!(f, "bad request: {why}"),
            HttpError::Unauthorized(why) => write!(f, "unauthorized: {why}"),
            HttpError::Forbidden(why) => write!(f, "forbidden: {why}"),
            HttpError::NotFound => write!(f, "not found"),
            HttpError::MethodNotAllowed { allow } => write!(f, "method not allowed (use {allow})"),
            HttpError::RequestTimeout { limit } => {
                let secs = limit.as_secs_f64();
                write!(f, "request timeout: the request was not complete {secs} s after its first byte")
            }
            HttpError::LengthRequired => write!(f, "a request body needs a Content-Length header"),
            HttpError::PayloadTooLarge { limit } => write!(f, "message larger than {limit} bytes"),
            HttpError::UpgradeRequired => write!(f, "WebSocket version 13 required"),
            HttpError::HeadersTooLarge => write!(f, "request header fields too large"),
            HttpError::UpgradeRefused => write!(f, "WebSocket upgrades are refused by this server (--refuse-upgrade)"),
            HttpError::Unavailable(why) => write!(f, "service unavailable: {why}"),
        }
    }
}

impl std::error::Error for HttpError {}

/// Parses and routes the request head at the start of `buf`.
///
/// * `Ok(None)`: the head is incomplete; read more (unless `buf` is already
///   `max_head` long, which is `431`).
/// * `Ok(Some((request, head_len)))`: the body, if any, starts at `head_len`.
/// * `Err(e)`: answer with `e.response()`.
///
/// `max_message` is checked against `Content-Length` here, before any body
/// byte is read, so an oversized upload costs nothing.
pub fn parse_request(buf: &[u8], max_head: usize, max_message: usize) -> Result<Option<(Request, usize)>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= max_head => return Err(HttpError::HeadersTooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadersTooLarge),
        Err(e) => return Err(HttpError::BadRequest(format!("malformed HTTP ({e})"))),
    };
    if head_len > max_head {
        return Err(HttpError::HeadersTooLarge);
    }
    let method = req.method.unwrap_or("");
    let target = req.path.unwrap_or("");
    let version = req.version.unwrap_or(1);

    let h = Headers::collect(req.headers)?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query = Query::parse(query);

    // ANCHOR: framing
    // RFC 9112 §6.1: a request with both Content-Length and Transfer-Encoding
    // has two answers to "where does the body end?". A proxy in front of us
    // may pick the other one, and the bytes it counts as our body it would
    // see as the next request (request smuggling). So: 400, and the
    // connection closes, as every error here does. Transfer-Encoding alone
    // (chunked uploads) is simply not supported: 411.
    let content_length = match (h.content_length, h.transfer_encoding) {
        (Some(_), true) => {
            return Err(HttpError::BadRequest(
                "Content-Length and Transfer-Encoding together: the body's length is ambiguous (RFC 9112 section 6.1)"
                    .into(),
            ));
        }
        (None, true) => return Err(HttpError::LengthRequired),
        (Some(n), false) => n,
        (None, false) => 0,
    };
    // ANCHOR_END: framing
    let keep_alive = match (version, h.connection_close, h.connection_keep_alive) {
        (_, true, _) => false,
        (0, _, keep) => keep,
        _ => true,
    };

    let get = |allow: &'static str| {
        if method == "GET" { Ok(()) } else { Err(HttpError::MethodNotAllowed { allow }) }
    };
    // ANCHOR: route
    let route = match path {
        "/publish" => {
            if method != "POST" {
                return Err(HttpError::MethodNotAllowed { allow: "POST" });
            }
            if content_length > max_message {
                return Err(HttpError::PayloadTooLarge { limit: max_message });
            }
            Route::Publish { topic: query.topic()? }
        }
        "/poll" => {
            get("GET")?;
            let wait = match query.get("wait") {
                None => None,
                Some(s) => match s.parse::<u32>() {
                    Ok(w @ 1..=60) => Some(w),
                    _ => return Err(HttpError::BadRequest("wait must be a whole number of seconds from 1 to 60".into())),
                },
            };
            Route::Poll { topic: query.topic()?, after: query.id("after")?.unwrap_or_default(), wait }
        }
        "/sse" => {
            get("GET")?;
            let resume = match h.last_event_id {
                Some(v) => Some(parse_id("Last-Event-ID", v)?),
                None => query.id("lastEventId")?,
            };
            Route::Sse { topic: query.topic()?, resume }
        }
        "/ws" => {
            get("GET")?;
            let topic = query.topic()?;
            Route::Ws { topic, resume: query.id("after")?, accept: h.websocket_accept()? }
        }
        "/echo" => {
            get("GET")?;
            Route::Echo { accept: h.websocket_accept()? }
        }
        "/" | "/index.html" => {
            get("GET")?;
            Route::Index
        }
        "/stats" => {
            get("GET")?;
            Route::Stats
        }
        "/presence" => {
            get("GET")?;
            Route::Presence { topic: query.topic()? }
        }
        "/ticker" => {
            get("GET")?;
            Route::Ticker
        }
        "/chat" => {
            get("GET")?;
            Route::Chat
        }
        _ => return Err(HttpError::NotFound),
    };
    if content_length > 0 && !matches!(route, Route::Publish { .. }) {
        // A body we would have to skip: refuse rather than guess.
        return Err(HttpError::BadRequest("this endpoint takes no request body".into()));
    }
    // ANCHOR_END: route
    let client = match query.get("client") {
        None => None,
        Some(name) if validate_topic(name).is_ok() => Some(name.to_owned()),
        Some(_) => {
            return Err(HttpError::BadRequest("client must be 1 to 64 characters of A-Z a-z 0-9 . _ -".into()));
        }
    };
    let text = |v: Option<&[u8]>| v.map(|v| String::from_utf8_lossy(v).into_owned());
    let request = Request {
        route,
        content_length,
        keep_alive,
        expect_continue: h.expect_continue,
        authorization: text(h.authorization),
        token: query.get("token").map(str::to_owned),
        origin: text(h.origin),
        client,
    };
    Ok(Some((request, head_len)))
}

/// The few headers the contract cares about.
#[derive(Default)]
struct Headers<'a> {
    content_length: Option<usize>,
    transfer_encoding: bool,
    connection_close: bool,
    connection_keep_alive: bool,
    connection_upgrade: bool,
    upgrade_websocket: bool,
    expect_continue: bool,
    ws_key: Option<&'a [u8]>,
    ws_version: Option<&'a [u8]>,
    last_event_id: Option<&'a [u8]>,
    authorization: Option<&'a [u8]>,
    origin: Option<&'a [u8]>,
}

impl<'a> Headers<'a> {
    fn collect(headers: &[httparse::Header<'a>]) -> Result<Self, HttpError> {
        let mut h = Headers::default();
        for header in headers {
            let name = header.name;
            let value = header.value;
            let has_token = |token: &str| {
                std::str::from_utf8(value)
                    .map(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
                    .unwrap_or(false)
            };
            if name.eq_ignore_ascii_case("content-length") {
                let n = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .ok_or_else(|| HttpError::BadRequest("invalid Content-Length".into()))?;
                if h.content_length.is_some_and(|m| m != n) {
                    return Err(HttpError::BadRequest("conflicting Content-Length headers".into()));
                }
                h.content_length = Some(n);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                h.transfer_encoding = true;
            } else if name.eq_ignore_ascii_case("connection") {
                h.connection_close |= has_token("close");
                h.connection_keep_alive |= has_token("keep-alive");
                h.connection_upgrade |= has_token("upgrade");
            } else if name.eq_ignore_ascii_case("upgrade") {
                h.upgrade_websocket |= has_token("websocket");
            } else if name.eq_ignore_ascii_case("expect") {
                h.expect_continue |= has_token("100-continue");
            } else if name.eq_ignore_ascii_case("sec-websocket-key") {
                h.ws_key = Some(value);
            } else if name.eq_ignore_ascii_case("sec-websocket-version") {
                h.ws_version = Some(value);
            } else if name.eq_ignore_ascii_case("last-event-id") {
                h.last_event_id = Some(value);
            } else if name.eq_ignore_ascii_case("authorization") {
                h.authorization = Some(value);
            } else if name.eq_ignore_ascii_case("origin") {
                h.origin = Some(value);
            }
        }
        Ok(h)
    }

    // ANCHOR: handshake
    /// Checks the RFC 6455 §4.2.1 opening handshake and derives the accept key.
    fn websocket_accept(&self) -> Result<String, HttpError> {
        if !self.upgrade_websocket || !self.connection_upgrade {
            return Err(HttpError::BadRequest(
                "expected a WebSocket upgrade (Upgrade: websocket, Connection: Upgrade)".into(),
            ));
        }
        if self.ws_version.map(|v| v.trim_ascii()) != Some(b"13") {
            return Err(HttpError::UpgradeRequired);
        }
        match self.ws_key.map(|k| k.trim_ascii()) {
            // A valid key is 16 random bytes in base64: 24 characters.
            Some(key) if key.len() == 24 => Ok(tungstenite::handshake::derive_accept_key(key)),
            _ => Err(HttpError::BadRequest("missing or invalid Sec-WebSocket-Key".into())),
        }
    }
    // ANCHOR_END: handshake
}

/// The query string as `name=value` pairs (no percent-decoding is needed:
/// every value the contract accepts is made of unreserved characters).
struct Query<'a>(Vec<(&'a str, &'a str)>);

impl<'a> Query<'a> {
    /// Splits at `&` and at each pair's first `=`; a pair without `=` is a
    /// name with an empty value. It cannot fail: whether a value is valid is
    /// decided by the route that reads it (`topic`, `id`).
    fn parse(query: &'a str) -> Self {
        let pairs = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').unwrap_or((p, "")))
            .collect();
        Query(pairs)
    }

    fn get(&self, name: &str) -> Option<&'a str> {
        self.0.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }

    fn topic(&self) -> Result<String, HttpError> {
        let topic = self
            .get("topic")
            .ok_or_else(|| HttpError::BadRequest("missing topic parameter".into()))?;
        validate_topic(topic)?;
        Ok(topic.to_owned())
    }

    fn id(&self, name: &str) -> Result<Option<Cursor>, HttpError> {
        self.get(name).map(|v| parse_id(name, v.as_bytes())).transpose()
    }
}

// ANCHOR: topic
/// The contract's topic rule: 1 to 64 bytes of `A-Z a-z 0-9 . _ -`.
pub fn validate_topic(topic: &str) -> Result<(), HttpError> {
    let ok_char = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
    if topic.is_empty() || topic.len() > 64 || !topic.bytes().all(ok_char) {
        return Err(HttpError::BadRequest(
            "topic must be 1 to 64 characters of A-Z a-z 0-9 . _ -".into(),
        ));
    }
    Ok(())
}
// ANCHOR_END: topic

/// A resume cursor: `E-N` or a bare `N` ([`Cursor::parse`]).
fn parse_id(name: &str, value: &[u8]) -> Result<Cursor, HttpError> {
    std::str::from_utf8(value)
        .ok()
        .map(str::trim)
        .and_then(Cursor::parse)
        .ok_or_else(|| {
            HttpError::BadRequest(format!(
                "{name} must be a message id: N or EPOCH-N (N a whole number, EPOCH 1 to 16 characters of 0-9 A-Z a-z)"
            ))
        })
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// A complete response with a body and `Content-Length`.
pub fn response(status: u16, content_type: &str, body: &[u8]) -> Bytes {
    response_with(status, content_type, "", body)
}

/// A complete response; `extra` holds additional `Name: value\r\n` lines.
pub fn response_with(status: u16, content_type: &str, extra: &str, body: &[u8]) -> Bytes {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n{extra}\r\n",
        reason(status),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out.into()
}

/// `503 Service Unavailable` with `reason`, for a client a runtime will not
/// serve (over the connection limit, no thread, no coroutine stack): the
/// runtime sends it instead of serving the connection, then closes it, and
/// keeps serving everyone else. The same bytes as [`HttpError::Unavailable`].
pub fn unavailable(reason: &str) -> Bytes {
    HttpError::Unavailable(reason.to_owned()).response()
}

/// The interim response that lets an `Expect: 100-continue` client send its body.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

// ANCHOR: sse_head
/// The head of an event stream. It has no length: the stream ends when the
/// connection does.
pub const SSE_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\nX-Accel-Buffering: no\r\nAccess-Control-Allow-Origin: *\r\nConnection: close\r\n\r\n";
// ANCHOR_END: sse_head

/// The `101 Switching Protocols` answer to a valid WebSocket upgrade.
pub fn websocket_accept(accept: &str) -> Bytes {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    )
    .into_bytes()
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<Option<(Request, usize)>, HttpError> {
        parse_request(raw.as_bytes(), 8192, 65536)
    }

    fn route(raw: &str) -> Result<Route, HttpError> {
        parse(raw).map(|r| r.expect("complete").0.route)
    }

    #[test]
    fn routes_every_endpoint() {
        assert_eq!(
            route("POST /publish?topic=a HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi").unwrap(),
            Route::Publish { topic: "a".into() }
        );
        assert_eq!(
            route("GET /poll?topic=a.b_c-D&after=7&wait=3 HTTP/1.1\r\n\r\n").unwrap(),
            Route::Poll { topic: "a.b_c-D".into(), after: Cursor::at(7), wait: Some(3) }
        );
        assert_eq!(
            route("GET /poll?topic=a HTTP/1.1\r\n\r\n").unwrap(),
            Route::Poll { topic: "a".into(), after: Cursor::at(0), wait: None }
        );
        assert_eq!(
            route("GET /sse?topic=t HTTP/1.1\r\nLast-Event-ID: 12\r\n\r\n").unwrap(),
            Route::Sse { topic: "t".into(), resume: Some(Cursor::at(12)) }
        );
        assert_eq!(
            route("GET /sse?topic=t&lastEventId=5 HTTP/1.1\r\n\r\n").unwrap(),
            Route::Sse { topic: "t".into(), resume: Some(Cursor::at(5)) }
        );
        let ws = "GET /ws?topic=t&after=3 HTTP/1.1\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
        assert_eq!(
            route(ws).unwrap(),
            // The RFC 6455 §1.3 example key and answer.
            Route::Ws { topic: "t".into(), resume: Some(Cursor::at(3)), accept: "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".into() }
        );
        assert_eq!(
            route("GET /sse?topic=t HTTP/1.1\r\nLast-Event-ID: k3J9aQ2x-12\r\n\r\n").unwrap(),
            Route::Sse { topic: "t".into(), resume: Some(Cursor { epoch: Some("k3J9aQ2x".into()), id: 12 }) }
        );
        assert_eq!(route("GET / HTTP/1.1\r\n\r\n").unwrap(), Route::Index);
        assert_eq!(route("GET /stats HTTP/1.1\r\n\r\n").unwrap(), Route::Stats);
    }

    #[test]
    fn errors_map_to_contract_statuses() {
        let status = |raw: &str| route(raw).unwrap_err().status();
        assert_eq!(status("GET /nope HTTP/1.1\r\n\r\n"), 404);
        assert_eq!(status("GET /publish?topic=a HTTP/1.1\r\n\r\n"), 405);
        assert_eq!(status("POST /sse?topic=a HTTP/1.1\r\n\r\n"), 405);
        assert_eq!(status("GET /poll HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status("GET /poll?topic= HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status("GET /poll?topic=a/b HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(&format!("GET /poll?topic={} HTTP/1.1\r\n\r\n", "x".repeat(65))), 400);
        assert_eq!(status("GET /poll?topic=a&after=-1 HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status("GET /poll?topic=a&after=E- HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status("GET /poll?topic=a&after=E_1-3 HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status("GET /poll?topic=a&after=ABCDEFGHIJKLMNOPQ-3 HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status("GET /poll?topic=a&after=E-1-3 HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status("GET /poll?topic=a&wait=0 HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status("GET /poll?topic=a&wait=61 HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status("POST /publish?topic=a HTTP/1.1\r\nContent-Length: 65537\r\n\r\n"), 413);
        assert_eq!(status("POST /publish?topic=a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"), 411);
        assert_eq!(status("POST /publish?topic=a HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), 411);
        assert_eq!(status("GET /ws?topic=a HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(
            status("GET /echo HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"),
            426
        );
        assert_eq!(status("GARBAGE\r\n\r\n"), 400);
    }

    /// RFC 9112 §6.1: both framings at once is a 400 that says so, in either
    /// order — not a 411 that claims Content-Length is missing.
    #[test]
    fn content_length_with_transfer_encoding_is_400_with_a_true_reason() {
        for raw in [
            "POST /publish?topic=a HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST /publish?topic=a HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            "POST /publish?topic=a HTTP/1.1\r\ncontent-length: 0\r\ntransfer-encoding: identity\r\n\r\n",
        ] {
            let e = route(raw).unwrap_err();
            assert_eq!(e.status(), 400, "{raw:?}");
            let text = e.to_string();
            assert!(text.contains("Content-Length and Transfer-Encoding"), "{text}");
            let response = e.response();
            let text = std::str::from_utf8(&response).unwrap();
            assert!(text.contains("\r\nConnection: close\r\n"), "and the connection closes: {text}");
        }
    }

    #[test]
    fn limits_answer_408_and_503_and_close() {
        let timeout = HttpError::RequestTimeout { limit: Duration::from_millis(1500) }.response();
        let text = std::str::from_utf8(&timeout).unwrap();
        assert!(text.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{text}");
        assert!(text.contains("\r\nConnection: close\r\n") && text.ends_with("1.5 s after its first byte\n"), "{text}");
        let full = unavailable("too many topics");
        let text = std::str::from_utf8(&full).unwrap();
        assert!(text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{text}");
        assert!(text.contains("\r\nRetry-After: 1\r\n") && text.contains("\r\nConnection: close\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\nservice unavailable: too many topics\n"), "{text}");
    }

    #[test]
    fn incomplete_and_oversized_heads() {
        assert_eq!(parse("GET /stats HTTP/1.1\r\nHost: x\r\n"), Ok(None));
        let big = format!("GET /stats HTTP/1.1\r\nX-Big: {}\r\n", "a".repeat(9000));
        assert_eq!(parse(&big), Err(HttpError::HeadersTooLarge));
        let many: String = (0..60).map(|i| format!("X-{i}: y\r\n")).collect();
        assert_eq!(parse(&format!("GET / HTTP/1.1\r\n{many}\r\n")), Err(HttpError::HeadersTooLarge));
    }

    #[test]
    fn keep_alive_follows_version_and_connection_header() {
        let ka = |raw: &str| parse(raw).unwrap().unwrap().0.keep_alive;
        assert!(ka("GET /stats HTTP/1.1\r\n\r\n"));
        assert!(!ka("GET /stats HTTP/1.1\r\nConnection: close\r\n\r\n"));
        assert!(!ka("GET /stats HTTP/1.0\r\n\r\n"));
        assert!(ka("GET /stats HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    }

    #[test]
    fn error_response_is_one_plain_line() {
        let r = HttpError::NotFound.response();
        let text = std::str::from_utf8(&r).unwrap();
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(text.ends_with("\r\n\r\nnot found\n"));
    }
}
