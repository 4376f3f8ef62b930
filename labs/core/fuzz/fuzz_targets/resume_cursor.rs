//! Resume cursors: `Last-Event-ID` (header) and `lastEventId` (query) on
//! `/sse`, `after=` on `/ws` and `/poll`, with arbitrary values, against a
//! topic that has published some messages and retains only the last few.
//!
//! Values are built from tokens (digits, leading zeros, `u64::MAX` and one
//! past it, signs, whitespace, letters, `%`, non-ASCII) or are raw bytes.
//!
//! Checked, besides "no panic", against a model written here:
//! * `parse_request` accepts exactly the values that are a whole number
//!   (surrounding whitespace aside) that fits in a `u64`, bare or after an
//!   epoch and a `-` (`E-N`, an epoch being 1 to 16 characters of `0-9 A-Z
//!   a-z`), and the header wins over the query;
//! * a cursor from another epoch than the server's gets the reset signal and
//!   then the topic from its beginning;
//! * an accepted cursor replays exactly the retained messages after it, in
//!   order, preceded by the "missed" signal for the ids it asked for that are
//!   no longer retained; a cursor at the newest id replays nothing, and so
//!   does one past it on `/poll`, while a stream (`/sse`, `/ws`) resuming
//!   past the newest id (an id from an earlier life of the topic) gets the
//!   topic from its beginning;
//! * a refused cursor gets `400` and the connection closes.
//!
//! An input starting with `P` is plain (the seeds are): a byte of retention,
//! one of messages published, the route (`H` `/sse` with `Last-Event-ID`,
//! `Q` `/sse?lastEventId=`, `B` both, `W` `/ws?after=`, `P` `/poll?after=`),
//! then the value (raw; for `B`, the header's value, `0xFF`, the query's).
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use rtlab_core::http::parse_request;
use rtlab_core::hub::Cursor as CoreCursor;
use rtlab_core::{Config, Route, Status};
use rtlab_core_fuzz::{EPOCH, Sim, TEXT, WS_ACCEPT, read_response, server_frames, upgrade_request};
use serde_json::{Value, json};

const TOPIC: &str = "t";

#[derive(Debug, Arbitrary)]
struct Input {
    retention: u8,
    published: u8,
    route: RouteKind,
    cursor: Cursor,
    /// `/sse` with both: the query's value (the header's is `cursor`).
    query: Cursor,
}

#[derive(Debug, Clone, Copy, Arbitrary)]
enum RouteKind {
    SseHeader,
    SseQuery,
    SseBoth,
    Ws,
    Poll,
}

#[derive(Debug, Arbitrary)]
enum Cursor {
    Number(u64),
    /// The number of messages published plus or minus a little.
    Near(i8),
    Tokens(Vec<Token>),
    Raw(Vec<u8>),
}

#[derive(Debug, Arbitrary)]
enum Token {
    Digits(u64),
    Zeros(u8),
    Max,
    MaxPlusOne,
    Huge,
    Space,
    Tab,
    Plus,
    Minus,
    Letter(u8),
    /// `E-` (the server's epoch) or `Old-` (another one).
    Epoch(bool),
    Percent,
    Dot,
    NonAscii(char),
}

impl Cursor {
    /// The value as sent, in a header (`in_query`: false) or in a query.
    fn render(&self, published: u64, in_query: bool) -> Vec<u8> {
        let bytes = match self {
            Cursor::Number(n) => n.to_string().into_bytes(),
            Cursor::Near(d) => (published as i64 + i64::from(*d)).to_string().into_bytes(),
            Cursor::Tokens(tokens) => {
                let mut s = String::new();
                for t in tokens.iter().take(8) {
                    match t {
                        Token::Digits(n) => s += &n.to_string(),
                        Token::Zeros(n) => s += &"0".repeat(usize::from(n % 24)),
                        Token::Max => s += &u64::MAX.to_string(),
                        Token::MaxPlusOne => s += "18446744073709551616",
                        Token::Huge => s += "99999999999999999999999",
                        Token::Space if !in_query => s.push(' '),
                        Token::Tab if !in_query => s.push('\t'),
                        Token::Space | Token::Tab => {}
                        Token::Plus => s.push('+'),
                        Token::Minus => s.push('-'),
                        Token::Letter(b) => s.push(char::from(b'a' + b % 26)),
                        Token::Epoch(current) => s += if *current { "E-" } else { "Old-" },
                        Token::Percent => s.push('%'),
                        Token::Dot => s.push('.'),
                        Token::NonAscii(c) if !c.is_ascii() && !c.is_control() => s.push(*c),
                        Token::NonAscii(_) => {}
                    }
                }
                s.into_bytes()
            }
            Cursor::Raw(b) => {
                // Only bytes httparse takes there (a refused byte would make
                // the whole request 400, which says nothing about cursors), and
                // in a query none of those that end or split it.
                let ok = |b: u8| match b {
                    b'\t' | b' ' => !in_query,
                    b'&' | b'#' => !in_query,
                    0x21..=0x7E | 0x80..=0xFF => true,
                    _ => false,
                };
                b.iter().copied().filter(|&b| ok(b)).take(64).collect()
            }
        };
        // A request target must be UTF-8.
        if in_query { String::from_utf8_lossy(&bytes).into_owned().into_bytes() } else { bytes }
    }
}

/// The contract's cursor: a whole number that fits in a `u64`, perhaps
/// after an epoch and a `-`, surrounding whitespace aside.
fn cursor_value(v: &[u8]) -> Option<CoreCursor> {
    let s = std::str::from_utf8(v).ok()?.trim();
    let (epoch, s) = match s.split_once('-') {
        Some((e, rest)) => {
            let ok = (1..=16).contains(&e.len()) && e.bytes().all(|b| b.is_ascii_alphanumeric());
            if !ok {
                return None;
            }
            (Some(e.to_owned()), rest)
        }
        None => (None, s),
    };
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(CoreCursor { epoch, id: s.parse().ok()? })
}

fuzz_target!(|data: &[u8]| {
    let input = match data {
        [b'P', retention, published, route, value @ ..] => {
            let mut parts = value.splitn(2, |&b| b == 0xFF);
            let cursor = Cursor::Raw(parts.next().unwrap_or_default().to_vec());
            let query = Cursor::Raw(parts.next().unwrap_or_default().to_vec());
            let route = match route {
                b'H' => RouteKind::SseHeader,
                b'Q' => RouteKind::SseQuery,
                b'B' => RouteKind::SseBoth,
                b'W' => RouteKind::Ws,
                _ => RouteKind::Poll,
            };
            Input { retention: *retention, published: *published, route, cursor, query }
        }
        _ => match Input::arbitrary_take_rest(Unstructured::new(data)) {
            Ok(input) => input,
            Err(_) => return,
        },
    };
    run(&input);
});

fn run(input: &Input) {
    let retention = usize::from(input.retention % 8) + 1;
    let published = u64::from(input.published % 21);
    let config = Config { retention, ..Config::default() };
    let mut sim = Sim::new(config);
    for id in 1..=published {
        assert_eq!(sim.server.hub.publish(TOPIC, &format!("m{id}"), sim.now, &sim.server.stats), Ok(id));
    }

    let value = input.cursor.render(published, !matches!(input.route, RouteKind::SseHeader | RouteKind::SseBoth));
    let query_value = input.query.render(published, true);
    let mut head = Vec::new();
    let header = |name: &str, value: &[u8]| [format!("{name}: ").as_bytes(), value, b"\r\n"].concat();
    // The cursor the contract reads (`None`: none given; `Some(None)`: refused).
    let cursor: Option<Option<CoreCursor>> = match input.route {
        RouteKind::SseHeader => {
            head.extend_from_slice(format!("GET /sse?topic={TOPIC} HTTP/1.1\r\n").as_bytes());
            head.extend(header("Last-Event-ID", &value));
            Some(cursor_value(&value))
        }
        RouteKind::SseQuery => {
            head.extend_from_slice(format!("GET /sse?topic={TOPIC}&lastEventId=").as_bytes());
            head.extend_from_slice(&value);
            head.extend_from_slice(b" HTTP/1.1\r\n");
            Some(cursor_value(&value))
        }
        RouteKind::SseBoth => {
            head.extend_from_slice(b"GET /sse?lastEventId=");
            head.extend_from_slice(&query_value);
            head.extend_from_slice(format!("&topic={TOPIC} HTTP/1.1\r\n").as_bytes());
            head.extend(header("Last-Event-ID", &value));
            Some(cursor_value(&value)) // The header wins, valid or not.
        }
        RouteKind::Ws | RouteKind::Poll => {
            let path = if matches!(input.route, RouteKind::Ws) { "ws" } else { "poll" };
            let target = format!("/{path}?topic={TOPIC}&after={}", String::from_utf8(value.clone()).unwrap());
            if matches!(input.route, RouteKind::Ws) {
                let upgrade = upgrade_request(&target);
                head.extend_from_slice(upgrade.strip_suffix("\r\n").unwrap().as_bytes());
            } else {
                head.extend_from_slice(format!("GET {target} HTTP/1.1\r\n").as_bytes());
            }
            Some(cursor_value(&value))
        }
    };
    head.extend_from_slice(b"\r\n");

    // The parser alone.
    let parsed = parse_request(&head, 8192, 65536);
    let accepted = cursor.clone().flatten();
    match (&parsed, &cursor) {
        (Ok(Some((req, _))), Some(Some(n))) => {
            let resume = match &req.route {
                Route::Sse { resume, .. } | Route::Ws { resume, .. } => resume.as_ref(),
                Route::Poll { after, .. } => Some(after),
                other => panic!("routed to {other:?}"),
            };
            assert_eq!(resume, Some(n), "the cursor read is not the one sent");
        }
        (Err(e), Some(None)) => assert_eq!(e.status(), 400, "{e}"),
        (other, _) => panic!("cursor {:?}: parse gave {other:?} for {:?}", cursor, String::from_utf8_lossy(&head)),
    }

    // The whole connection.
    sim.send(&head);
    let out = sim.output();
    let (response, used) = read_response(&out);
    let rest = &out[used..];
    let Some(CoreCursor { epoch, id: after }) = accepted else {
        assert_eq!(response.status, 400);
        assert!(rest.is_empty());
        assert_eq!(sim.status(), Status::Closing);
        return;
    };

    // The model: ids still retained, and what a cursor gets. A stream (SSE,
    // WebSocket) resuming after a bare id the topic never gave out comes
    // from an earlier life of the topic (evicted, or a restarted server): it
    // gets the topic from its beginning. One naming this epoch (`E-N`) was
    // given out by a process that is ahead (a broker's): it gets only what
    // follows N. A poll just gets nothing newer.
    // From another epoch: the reset signal, then the topic from its beginning.
    let stream = !matches!(input.route, RouteKind::Poll);
    let reset = epoch.as_ref().is_some_and(|e| e != EPOCH);
    let after = if reset || (stream && after > published && epoch.is_none()) { 0 } else { after };
    let first = published.saturating_sub(retention as u64) + 1; // Oldest retained (or published + 1).
    let replay: Vec<u64> = (first..=published).filter(|&id| id > after).collect();
    let missed = (u128::from(after) + 1 < u128::from(first) && after < published).then(|| (after + 1, first - 1));

    match input.route {
        RouteKind::SseHeader | RouteKind::SseQuery | RouteKind::SseBoth => {
            assert_eq!(response.status, 200);
            assert_eq!(response.header("content-type"), Some("text/event-stream"));
            let mut expected = String::new();
            if reset {
                expected += &format!("event: reset\nid: {EPOCH}-0\ndata: {{\"epoch\":\"{EPOCH}\"}}\n\n");
            }
            if let Some((from, to)) = missed {
                expected += &format!("event: missed\ndata: {{\"from\":{from},\"to\":{to}}}\n\n");
            }
            for id in &replay {
                expected += &format!("id: {EPOCH}-{id}\ndata: m{id}\n\n");
            }
            assert_eq!(String::from_utf8_lossy(rest), expected, "after {after}");
        }
        RouteKind::Ws => {
            assert_eq!((response.status, response.header("sec-websocket-accept")), (101, Some(WS_ACCEPT)));
            let mut expected = Vec::new();
            if reset {
                expected.push(json!({ "reset": { "epoch": EPOCH } }));
            }
            if let Some((from, to)) = missed {
                expected.push(json!({ "missed": { "from": from, "to": to } }));
            }
            expected.extend(replay.iter().map(|id| json!({ "id": id, "epoch": EPOCH, "data": format!("m{id}") })));
            let got: Vec<Value> = server_frames(rest)
                .iter()
                .map(|f| {
                    assert_eq!(f.opcode, TEXT);
                    serde_json::from_slice(&f.payload).unwrap()
                })
                .collect();
            assert_eq!(got, expected, "after {after}");
        }
        RouteKind::Poll => {
            assert_eq!(response.status, 200);
            assert!(rest.is_empty());
            let mut expected = json!({
                "epoch": EPOCH,
                "messages": replay.iter().map(|id| json!({ "id": id, "data": format!("m{id}") })).collect::<Vec<_>>(),
                "last_id": published,
            });
            if let Some((from, to)) = missed {
                expected["missed"] = json!({ "from": from, "to": to });
            }
            if reset {
                expected["reset"] = json!({ "epoch": EPOCH });
            }
            let got: Value = serde_json::from_slice(&response.body).unwrap();
            assert_eq!(got, expected, "after {after}");
        }
    }
    assert_eq!(sim.status(), Status::Open);
}
