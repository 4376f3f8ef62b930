//! The HTTP request parser and router: `http::parse_request` on arbitrary
//! bytes, with the default `Config`'s limits and with tight ones (the first
//! input byte picks them), so that `431` and `413` are reached too.
//!
//! Checked, besides "no panic":
//! * `Ok(None)` only while the buffer is shorter than the head limit;
//! * a routed request is one the contract allows (topic rule, `wait` range,
//!   no body except on `/publish`, within the message limit, a well-formed
//!   accept key) and its head length is within the buffer and the limit;
//! * the head alone decides: parsing just the head gives the same answer,
//!   and every prefix of it is "incomplete" (a request split across reads
//!   is never refused or misrouted);
//! * every error maps to a contract status and renders a well-formed
//!   response with a correct `Content-Length` and `Connection: close`;
//! * framing (RFC 9112 §6.1): a routed request has no `Transfer-Encoding`;
//!   one with `Transfer-Encoding` and `Content-Length` whose head `httparse`
//!   reads is never `411` (which would claim the length is missing), and
//!   one with `Transfer-Encoding` alone is never `400` for ambiguity.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtlab_core::http::{self, Request, parse_request};
use rtlab_core::{Config, HttpError, Route};
use rtlab_core_fuzz::read_response;

fuzz_target!(|data: &[u8]| {
    let config = Config::default();
    check(data, config.max_head, config.max_message);
    if let Some((&b, rest)) = data.split_first() {
        check(rest, 8 + usize::from(b & 0x7F) * 2, usize::from(b >> 4));
    }
});

/// Whether the head at the start of `buf` (as `httparse` reads it) has a
/// `Content-Length` and a `Transfer-Encoding` header; `None` if it reads no
/// complete head.
fn framing(buf: &[u8]) -> Option<(bool, bool)> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut r = httparse::Request::new(&mut headers);
    match r.parse(buf) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return None,
    }
    let has = |name: &str| r.headers.iter().any(|h| h.name.eq_ignore_ascii_case(name));
    Some((has("content-length"), has("transfer-encoding")))
}

fn check(buf: &[u8], max_head: usize, max_message: usize) {
    let result = parse_request(buf, max_head, max_message);
    match (&result, framing(buf)) {
        (Ok(Some(_)), Some((_, te))) => assert!(!te, "a request with Transfer-Encoding was routed"),
        (Err(e), Some((true, true))) => assert_ne!(e.status(), 411, "Content-Length and Transfer-Encoding: {e}"),
        (Err(HttpError::BadRequest(why)), Some((false, true))) => {
            assert!(!why.contains("Transfer-Encoding"), "Transfer-Encoding alone called ambiguous")
        }
        _ => {}
    }
    match &result {
        Ok(None) => assert!(buf.len() < max_head, "incomplete at {} bytes, limit {max_head}", buf.len()),
        Ok(Some((request, head_len))) => {
            let n = *head_len;
            assert!(n <= buf.len() && n <= max_head, "head of {n} bytes, buffer {}, limit {max_head}", buf.len());
            assert!(buf[..n].ends_with(b"\n"), "a head ends with an empty line");
            check_request(request, max_message);
            let alone = parse_request(&buf[..n], max_head, max_message);
            assert_eq!(alone, result, "the bytes after the head changed the answer");
            for k in [0, n / 2, n - 1] {
                assert_eq!(parse_request(&buf[..k], max_head, max_message), Ok(None), "a prefix of {k} bytes of a complete head");
            }
        }
        Err(e) => check_error(e),
    }
}

fn valid_topic(topic: &str) -> bool {
    (1..=64).contains(&topic.len()) && topic.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

fn check_request(request: &Request, max_message: usize) {
    match &request.route {
        Route::Publish { topic } => {
            assert!(valid_topic(topic), "{topic:?}");
            assert!(request.content_length <= max_message);
        }
        Route::Poll { topic, wait, .. } => {
            assert!(valid_topic(topic), "{topic:?}");
            assert!(wait.is_none_or(|w| (1..=60).contains(&w)), "wait {wait:?}");
        }
        Route::Sse { topic, .. } | Route::Presence { topic } => assert!(valid_topic(topic), "{topic:?}"),
        Route::Ws { topic, accept, .. } => {
            assert!(valid_topic(topic), "{topic:?}");
            check_accept(accept);
        }
        Route::Echo { accept } => check_accept(accept),
        Route::Index | Route::Stats | Route::Ticker | Route::Chat => {}
    }
    // A subscription's name in /presence follows the topic rule.
    assert!(request.client.as_deref().is_none_or(valid_topic), "client {:?}", request.client);
    if !matches!(request.route, Route::Publish { .. }) {
        assert_eq!(request.content_length, 0, "a body on {:?}", request.route);
    }
}

fn check_accept(accept: &str) {
    // Base64 of a 20-byte SHA-1: 28 characters, one `=` of padding.
    assert_eq!(accept.len(), 28, "{accept:?}");
    assert!(accept.ends_with('='));
    assert!(accept[..27].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/'));
    let response = http::websocket_accept(accept);
    let (r, used) = read_response(&response);
    assert_eq!((r.status, used), (101, response.len()));
    assert_eq!(r.header("sec-websocket-accept"), Some(accept));
}

fn check_error(e: &HttpError) {
    let status = e.status();
    assert!([400, 404, 405, 411, 413, 426, 431].contains(&status), "status {status}");
    let bytes = e.response();
    let (r, used) = read_response(&bytes);
    assert_eq!(used, bytes.len(), "bytes after the error response");
    assert_eq!(r.status, status);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(r.body.ends_with(b"\n") && std::str::from_utf8(&r.body).is_ok());
    match e {
        HttpError::MethodNotAllowed { allow } => assert_eq!(r.header("allow"), Some(*allow)),
        HttpError::UpgradeRequired => assert_eq!(r.header("sec-websocket-version"), Some("13")),
        _ => {}
    }
}
