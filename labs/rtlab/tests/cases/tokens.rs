//! Tokens and origins (contract "Tokens and origins"): a server started with
//! `--token-secret` asks `/publish`, `/poll`, `/sse` and `/ws` for a token,
//! refuses with `401`/`403` and a reason, ends each kind of live connection
//! at its token's `exp`, lets a WebSocket refresh, and refuses `Origin`s off
//! its allow-list. Tokens are minted by the real `rtlab token` command.

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::*;

const SECRET: &str = "conformance secret";

/// `rtlab token --secret S --sub SUB --ttl TTL EXTRA...`: the token it prints.
fn mint(secret: &str, sub: &str, ttl: &str, extra: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_rtlab"))
        .args(["token", "--secret", secret, "--sub", sub, "--ttl", ttl])
        .args(extra)
        .output()
        .expect("run rtlab token");
    assert!(
        out.status.success(),
        "rtlab token failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout)
        .expect("UTF-8")
        .trim()
        .to_owned();
    assert_eq!(
        token.split('.').count(),
        3,
        "a JWT has three parts: {token}"
    );
    token
}

/// One request on a connection of its own: status, one-line body, headers.
fn ask(addr: std::net::SocketAddr, method: &str, target: &str, extra: &str) -> (u16, String, Head) {
    let mut conn = RawConn::connect(addr);
    let body = if method == "POST" { "hi" } else { "" };
    let mut raw = request(
        method,
        target,
        &format!(
            "{extra}Content-Length: {}\r\nConnection: close\r\n",
            body.len()
        ),
    );
    raw.extend_from_slice(body.as_bytes());
    conn.send(&raw);
    let resp = conn.read_response();
    (resp.head.status, resp.text(), resp.head)
}

/// Every refusal of the contract, each with its status and reason, and the
/// requests that pass: the token in the header or the query, a topic
/// prefix, an allowed origin, a request with no Origin at all.
pub fn tokens_refuse_with_401_and_403(rt: &str) {
    let server = TestServer::start(
        rt,
        &[
            "--token-secret",
            SECRET,
            "--allowed-origin",
            "http://good.example",
        ],
    );
    let addr = server.addr;
    let reader = mint(SECRET, "ada", "60s", &["--topics", "news,room.*"]);
    let writer = mint(SECRET, "bob", "60", &["--publish"]);
    let forged = mint("another secret", "eve", "60s", &["--publish"]);
    let bearer = |t: &str| format!("Authorization: Bearer {t}\r\n");
    let cases: Vec<(&str, String, String, u16, &str)> = vec![
        (
            "POST",
            "/publish?topic=news".into(),
            String::new(),
            401,
            "a token is required",
        ),
        (
            "GET",
            "/poll?topic=news".into(),
            String::new(),
            401,
            "a token is required",
        ),
        (
            "GET",
            "/poll?topic=news&token=not-a-jwt".into(),
            String::new(),
            401,
            "malformed token",
        ),
        (
            "GET",
            "/poll?topic=news".into(),
            format!("Authorization: Basic {reader}\r\n"),
            401,
            "Bearer",
        ),
        (
            "POST",
            "/publish?topic=news".into(),
            bearer(&forged),
            401,
            "bad token signature",
        ),
        (
            "GET",
            format!("/poll?topic=sports&token={reader}"),
            String::new(),
            403,
            "does not allow topic sports",
        ),
        (
            "POST",
            "/publish?topic=news".into(),
            bearer(&reader),
            403,
            "may not publish",
        ),
        (
            "GET",
            format!("/poll?topic=news&token={reader}"),
            "Origin: http://evil.example\r\n".into(),
            403,
            "origin",
        ),
        (
            "GET",
            "/stats".into(),
            "Origin: http://evil.example\r\n".into(),
            403,
            "not allowed",
        ),
    ];
    for (method, target, extra, status, why) in &cases {
        let (got, text, head) = ask(addr, method, target, extra);
        assert_eq!(got, *status, "{method} {target} {extra:?}: {text}");
        assert!(
            text.contains(why) && text.ends_with('\n'),
            "{method} {target}: reason {text:?} should say {why:?}"
        );
        if got == 401 {
            assert!(
                head.header("www-authenticate")
                    .is_some_and(|v| v.starts_with("Bearer")),
                "{:?}",
                head.headers
            );
        }
    }
    // Allowed.
    let (status, text, _) = ask(addr, "POST", "/publish?topic=room.1", &bearer(&writer));
    assert_eq!((status, text.as_str()), (200, "{\"id\":1}"));
    let (status, text, _) = ask(
        addr,
        "GET",
        &format!("/poll?topic=room.1&token={reader}"),
        "Origin: http://good.example\r\n",
    );
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\"hi\""), "{text}");
    assert_eq!(server.get("/").0, 200, "the page needs no token");
    let mut sse = Sse::connect(addr, &format!("/sse?topic=room.2&token={reader}"), "");
    let mut ws = RawWs::connect(addr, &format!("/ws?topic=news&token={reader}"));
    ws.send(TEXT | FIN, br#"{"op":"publish","data":"x"}"#);
    assert_eq!(ws_error(&mut ws), "forbidden: this token may not publish");
    server.publish_with("room.2", &writer, "to the stream");
    assert_eq!(sse.message(), (1, "to the stream".into()));
    assert_eq!(
        server.poll_with("news", &reader)["last_id"],
        0,
        "nothing refused was published"
    );
}

/// The `{"error":...}` text of the next frame.
fn ws_error(ws: &mut RawWs) -> String {
    let frame = ws.frame();
    let v: serde_json::Value = serde_json::from_slice(&frame.payload).expect("a JSON frame");
    v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error frame: {frame:?}"))
        .to_owned()
}

/// At `exp` every live connection ends its transport's way: the event
/// stream with `event: expired`, the WebSocket with close code 4001, the held
/// long poll with `401`; the same token is then refused.
pub fn token_expiry_ends_every_transport(rt: &str) {
    let server = TestServer::start(rt, &["--token-secret", SECRET]);
    let addr = server.addr;
    let token = mint(SECRET, "ada", "1s", &[]);
    let started = Instant::now();
    let mut sse = Sse::connect(addr, &format!("/sse?topic=t&token={token}"), "");
    let mut ws = RawWs::connect(addr, &format!("/ws?topic=t&token={token}"));
    let target = format!("/poll?topic=t&after=0&wait=30&token={token}");
    let poll = thread::spawn(move || ask(addr, "GET", &target, ""));
    // `rtlab token` rounds exp up to a whole second: it comes within 2 s.
    let limit = Duration::from_secs(2) + Duration::from_millis(500);
    let ev = sse
        .next_event(limit)
        .expect("an expired event before the stream ends");
    assert_eq!(
        (ev.event.as_deref(), ev.data.as_str()),
        (Some("expired"), "token expired")
    );
    sse.expect_eof("the event stream after expired");
    let (before, code) = ws.until_close(limit);
    assert_eq!((before.len(), code), (0, Some(4001)), "{before:?}");
    let (status, text, _) = poll.join().expect("the long poll");
    assert_eq!(
        (status, text.as_str()),
        (401, "unauthorized: token expired\n")
    );
    assert!(
        started.elapsed() < limit + Duration::from_secs(1),
        "expiry took {:?}",
        started.elapsed()
    );
    let (status, text, _) = ask(addr, "GET", &format!("/poll?topic=t&token={token}"), "");
    assert_eq!(
        (status, text.as_str()),
        (401, "unauthorized: token expired\n")
    );
}

/// After `{"op":"refresh","token":"..."}` a WebSocket lives on past the old
/// `exp`, to the new one; a refused refresh says why and changes nothing.
pub fn ws_refresh_extends_the_connection(rt: &str) {
    let server = TestServer::start(rt, &["--token-secret", SECRET]);
    let short = mint(SECRET, "ada", "1s", &["--publish"]);
    let mut ws = RawWs::connect(server.addr, &format!("/ws?topic=t&token={short}"));
    let refresh = |t: &str| serde_json::json!({"op": "refresh", "token": t}).to_string();
    ws.send(
        TEXT | FIN,
        refresh(&mint(SECRET, "bob", "60s", &[])).as_bytes(),
    );
    assert!(
        ws_error(&mut ws).contains("refresh refused"),
        "another subject is refused"
    );
    let longer = mint(SECRET, "ada", "4s", &["--publish"]);
    ws.send(TEXT | FIN, refresh(&longer).as_bytes());
    thread::sleep(Duration::from_millis(2500)); // past the old exp (at most 2 s away)
    ws.send(TEXT | FIN, br#"{"op":"publish","data":"still here"}"#);
    let frame = ws.frame();
    assert!(
        String::from_utf8_lossy(&frame.payload).contains("still here"),
        "alive after the old exp: {frame:?}"
    );
    let (_, code) = ws.until_close(Duration::from_secs(4));
    assert_eq!(code, Some(4001), "closed at the new exp");
}

/// `--refuse-upgrade`: WebSocket upgrades get `501` with a reason (what the
/// demo chat's fallback meets); the other transports are served.
pub fn refused_upgrades_get_501(rt: &str) {
    let server = TestServer::start(rt, &["--refuse-upgrade"]);
    let mut conn = RawConn::connect(server.addr);
    conn.send(&rtlab_testkit::upgrade_request("/ws?topic=t"));
    let resp = conn.read_response();
    assert_eq!(resp.head.status, 501, "{}", resp.text());
    assert!(resp.text().contains("--refuse-upgrade"), "{}", resp.text());
    server.publish("t", "polled");
    assert_eq!(server.poll("t", 0)["messages"][0]["data"], "polled");
}

/// The two pages users meet, `/ticker` (EventSource) and `/chat`
/// (WebSocket with a long-poll fallback), are served by every lab, with no
/// token even on a server that asks for one (the page passes the token the
/// user gives it on). Headless Chromium drives them in scripts/interop/pages.mjs.
pub fn ticker_and_chat_pages_are_served(rt: &str) {
    let server = TestServer::start(rt, &["--token-secret", SECRET]);
    for (path, uses) in [("/ticker", "new EventSource"), ("/chat", "new WebSocket")] {
        let (status, content_type, body) = server.get(path);
        assert_eq!(status, 200, "{path}");
        assert_content_type(content_type.as_deref(), "text/html");
        assert!(body.contains(uses), "{path} must use {uses}");
    }
    assert!(server.get("/chat").2.contains("/poll?"), "the chat falls back to long polling");
}
