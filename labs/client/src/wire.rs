//! What differs between the transports: the request a subscription sends,
//! how its response head is judged, and how the bytes after it become
//! messages, missed ranges and bytes to send back.
//!
//! | transport | request | accepted head | then |
//! |---|---|---|---|
//! | SSE | `GET /sse?topic=T`, `Last-Event-ID: N` | `200`, `text/event-stream` | an event stream ([`crate::sse`]) until the connection ends |
//! | WebSocket | `GET /ws?topic=T&after=N`, upgrade | `101`, the right `Sec-WebSocket-Accept` | frames, through `tungstenite` |
//! | long poll | `GET /poll?topic=T&after=N&wait=S` | `200`, `application/json` | one JSON body; the next request on the same connection |

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use tungstenite::Message as WsMessage;
use tungstenite::protocol::{Role, WebSocketContext};

use crate::http::{Body, Framing, Head, Request, Url};
use crate::sse::{SseItem, SseParser};

/// The transport a subscriber uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Server-Sent Events: `GET /sse`, resumed with `Last-Event-ID`.
    Sse,
    /// WebSocket: `GET /ws`, resumed with `after=`.
    Ws,
    /// Long polling: `GET /poll?wait=`, one request after another, each with `after=`.
    LongPoll,
}

impl Transport {
    /// The command-line names, in the order of the variants.
    pub const NAMES: [&'static str; 3] = ["sse", "ws", "long-poll"];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Sse => "sse",
            Transport::Ws => "ws",
            Transport::LongPoll => "long-poll",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Transport {
    type Err = String;

    fn from_str(s: &str) -> Result<Transport, String> {
        match s {
            "sse" => Ok(Transport::Sse),
            "ws" | "websocket" => Ok(Transport::Ws),
            "long-poll" | "poll" => Ok(Transport::LongPoll),
            _ => Err(format!("unknown transport '{s}' (one of: {})", Transport::NAMES.join(", "))),
        }
    }
}

// ANCHOR: request
/// The request that (re)subscribes to `topic` after `last_id` (`None`: from
/// now on), of `epoch` if the client knows it: the cursor is then `E-N`, so
/// that a server that cannot continue that sequence (it restarted) says so
/// with a reset instead of resuming at a reused id. Long polling without an
/// id first asks a short poll for the topic's newest id, and delivers
/// nothing from it.
///
/// With a `token`, the target carries it as the `token` query parameter
/// (what a browser's `EventSource` and `WebSocket` must do too; the server
/// takes an `Authorization: Bearer` header as well).
pub(crate) fn request(
    url: &Url,
    topic: &str,
    transport: Transport,
    last_id: Option<u64>,
    epoch: Option<&str>,
    wait: u32,
    token: Option<&str>,
) -> Request {
    let mut request = untokened(url, topic, transport, last_id, epoch, wait);
    if let Some(token) = token {
        request.target.push_str(&format!("&token={token}"));
    }
    request
}

fn untokened(url: &Url, topic: &str, transport: Transport, last_id: Option<u64>, epoch: Option<&str>, wait: u32) -> Request {
    let last_id = last_id.map(|id| match epoch {
        Some(e) => format!("{e}-{id}"),
        None => id.to_string(),
    });
    match transport {
        Transport::Sse => {
            let r = Request::get(url, format!("/sse?topic={topic}"))
                .header("Accept", "text/event-stream")
                .header("Cache-Control", "no-store");
            match last_id {
                Some(id) => r.header("Last-Event-ID", id),
                None => r,
            }
        }
        Transport::Ws => {
            let after = last_id.map(|id| format!("&after={id}")).unwrap_or_default();
            Request::get(url, format!("/ws?topic={topic}{after}"))
                .header("Upgrade", "websocket")
                .header("Connection", "Upgrade")
                .header("Sec-WebSocket-Key", tungstenite::handshake::client::generate_key())
                .header("Sec-WebSocket-Version", "13")
        }
        Transport::LongPoll => match last_id {
            Some(id) => Request::get(url, format!("/poll?topic={topic}&after={id}&wait={wait}")),
            None => Request::get(url, format!("/poll?topic={topic}")),
        },
    }
}
// ANCHOR_END: request

/// What the bytes of a stream amount to, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Incoming {
    /// A message with its id and (when the server sent it) its epoch.
    Message { id: u64, epoch: Option<String>, data: String },
    /// The server's reset signal: the client's cursor was of another epoch;
    /// what follows is epoch `epoch` from its beginning.
    Reset { epoch: String },
    /// The server's missed-messages signal: ids `from..=to` are gone.
    Missed { from: u64, to: u64 },
    /// SSE `retry:`: the server's reconnection time.
    Retry(Duration),
    /// A WebSocket `{"error":"..."}` frame.
    ServerError(String),
    /// Bytes to send back (a pong, a close reply).
    Send(Vec<u8>),
    /// A poll answer is complete (its messages came before): the topic's
    /// newest id and its epoch, and whether the connection stays open.
    PollAnswered { last_id: u64, epoch: Option<String>, keep_alive: bool },
    /// The server ended the stream in its protocol (a WebSocket close frame).
    Closed(String),
    /// The server ended the stream because the token ran out (SSE
    /// `event: expired`, WebSocket close code 4001).
    Expired(String),
}

/// Why a response head does not start a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Retrying the same request cannot help (`400`, `404`, ...): give up.
    Fatal(String),
    /// Worth another attempt after a back-off (`503`, a broken handshake...).
    Retry(String),
    /// `401`: the token is missing, bad or expired. Retrying with the same
    /// one cannot help; a new one can.
    Token(String),
}

/// A `4xx` other than the ones that say "later" means the request itself is
/// wrong; anything else may pass on another attempt.
fn refuse(head: &Head, body: &[u8]) -> Refused {
    let reason = head.describe(body);
    match head.status {
        401 => Refused::Token(reason),
        408 | 425 | 429 => Refused::Retry(reason),
        400..=499 => Refused::Fatal(reason),
        _ => Refused::Retry(reason),
    }
}

/// A subscription past its response head.
#[derive(Debug)]
pub(crate) enum Stream {
    Sse { body: Body, parser: SseParser, decoded: Vec<u8> },
    Ws { ctx: Box<WebSocketContext>, io: MemIo },
    Poll { body: Body, json: Vec<u8>, keep_alive: bool },
}

impl Stream {
    /// Judges the response head to `request`; `body` is what followed the
    /// head in the same read (for an error's reason).
    pub(crate) fn open(transport: Transport, head: &Head, request: &Request, body: &[u8]) -> Result<Stream, Refused> {
        match transport {
            Transport::Sse => {
                if head.status != 200 {
                    return Err(refuse(head, body));
                }
                if head.media_type().as_deref() != Some("text/event-stream") {
                    return Err(Refused::Fatal(format!("not an event stream: {:?}", head.header("content-type"))));
                }
                let body = Body::new(head.framing().map_err(Refused::Retry)?);
                Ok(Stream::Sse { body, parser: SseParser::new(crate::MAX_MESSAGE), decoded: Vec::new() })
            }
            Transport::Ws => {
                if head.status != 101 {
                    return Err(refuse(head, body));
                }
                let key = request.header_value("Sec-WebSocket-Key").unwrap_or("");
                let expected = tungstenite::handshake::derive_accept_key(key.as_bytes());
                if !head.has_token("upgrade", "websocket") || head.header("sec-websocket-accept") != Some(&expected) {
                    return Err(Refused::Retry("a broken WebSocket handshake".into()));
                }
                Ok(Stream::Ws { ctx: Box::new(WebSocketContext::new(Role::Client, None)), io: MemIo::default() })
            }
            Transport::LongPoll => {
                if head.status != 200 {
                    return Err(refuse(head, body));
                }
                let body = Body::new(head.framing().map_err(Refused::Retry)?);
                Ok(Stream::Poll { body, json: Vec::new(), keep_alive: head.keep_alive() })
            }
        }
    }

    /// Feeds bytes read from the connection.
    pub(crate) fn feed(&mut self, bytes: &[u8], out: &mut Vec<Incoming>) -> Result<(), String> {
        match self {
            Stream::Sse { body, parser, decoded } => {
                decoded.clear();
                body.feed(bytes, decoded)?;
                let mut items = Vec::new();
                parser.feed(decoded, &mut items)?;
                for item in items {
                    if let Some(incoming) = sse_item(item)? {
                        out.push(incoming);
                    }
                }
                if body.is_done() {
                    out.push(Incoming::Closed("the event stream ended".into()));
                }
                Ok(())
            }
            Stream::Ws { ctx, io } => ws_feed(ctx, io, bytes, out),
            Stream::Poll { body, json, keep_alive } => {
                let used = body.feed(bytes, json)?;
                if used < bytes.len() {
                    return Err("bytes after the poll answer".into());
                }
                if body.is_done() {
                    poll_answer(json, *keep_alive, out)?;
                }
                Ok(())
            }
        }
    }

    /// A text message to send on a WebSocket stream (masked, as a client's
    /// must be): the bytes, or `None` on another transport.
    pub(crate) fn ws_text(&mut self, text: String) -> Option<Vec<u8>> {
        let Stream::Ws { ctx, io } = self else { return None };
        ctx.write(io, WsMessage::Text(text.into())).ok()?;
        let _ = ctx.flush(io);
        Some(std::mem::take(&mut io.output))
    }

    /// The server closed the connection: a poll answer delimited by the
    /// close is complete now; any other stream has just ended.
    pub(crate) fn eof(&mut self, out: &mut Vec<Incoming>) -> Result<bool, String> {
        match self {
            Stream::Poll { body, json, .. } if body.framing() == Framing::UntilClose => {
                poll_answer(json, false, out)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

// ANCHOR: sse_item
/// An SSE event as the contract defines them: a message has an id `E-N`
/// (or a bare `N`); `event: missed` carries `{"from":F,"to":T}`, `event:
/// reset` `{"epoch":"E"}`; other event types are ignored.
fn sse_item(item: SseItem) -> Result<Option<Incoming>, String> {
    Ok(match item {
        SseItem::Retry(ms) => Some(Incoming::Retry(Duration::from_millis(ms))),
        SseItem::Comment => None,
        SseItem::Event(e) if e.event == "message" => {
            let (epoch, id) = match e.id.as_deref().map(|id| id.split_once('-').unwrap_or(("", id))) {
                Some((epoch, n)) => ((!epoch.is_empty()).then(|| epoch.to_owned()), n.parse().ok()),
                None => (None, None),
            };
            let id = id.ok_or_else(|| format!("an event without an id N or E-N: {:?}", e.id))?;
            Some(Incoming::Message { id, epoch, data: e.data })
        }
        SseItem::Event(e) if e.event == "reset" => {
            let r: Epoch = serde_json::from_str(&e.data).map_err(|err| format!("a bad reset event: {err}"))?;
            Some(Incoming::Reset { epoch: r.epoch })
        }
        SseItem::Event(e) if e.event == "expired" => Some(Incoming::Expired(format!("the token expired ({})", e.data))),
        SseItem::Event(e) if e.event == "missed" => {
            let r: Range = serde_json::from_str(&e.data).map_err(|err| format!("a bad missed event: {err}"))?;
            Some(Incoming::Missed { from: r.from, to: r.to })
        }
        SseItem::Event(_) => None,
    })
}
// ANCHOR_END: sse_item

#[derive(Debug, Deserialize)]
struct Range {
    from: u64,
    to: u64,
}

/// The body of a reset signal.
#[derive(Debug, Deserialize)]
struct Epoch {
    epoch: String,
}

#[derive(Debug, Deserialize)]
struct Entry {
    id: u64,
    data: String,
}

/// A poll answer: `{"epoch":"E","messages":[...],"last_id":L}`, perhaps with
/// `"reset"` and `"missed"`.
#[derive(Debug, Deserialize)]
struct PollAnswer {
    #[serde(default)]
    epoch: Option<String>,
    messages: Vec<Entry>,
    last_id: u64,
    #[serde(default)]
    missed: Option<Range>,
    #[serde(default)]
    reset: Option<Epoch>,
}

/// A `/ws` text frame: a message, the missed or reset signal, or an error report.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum WsText {
    Message {
        id: u64,
        #[serde(default)]
        epoch: Option<String>,
        data: String,
    },
    Missed {
        missed: Range,
    },
    Reset {
        reset: Epoch,
    },
    Error {
        error: String,
    },
}

fn poll_answer(json: &[u8], keep_alive: bool, out: &mut Vec<Incoming>) -> Result<(), String> {
    let answer: PollAnswer = serde_json::from_slice(json).map_err(|e| format!("a bad poll answer: {e}"))?;
    if let Some(r) = answer.reset {
        out.push(Incoming::Reset { epoch: r.epoch });
    }
    if let Some(r) = answer.missed {
        out.push(Incoming::Missed { from: r.from, to: r.to });
    }
    let epoch = answer.epoch;
    out.extend(answer.messages.into_iter().map(|m| Incoming::Message { id: m.id, epoch: epoch.clone(), data: m.data }));
    out.push(Incoming::PollAnswered { last_id: answer.last_id, epoch, keep_alive });
    Ok(())
}

// ANCHOR: ws_feed
/// WebSocket bytes through `tungstenite`'s protocol state machine: it
/// unmasks, reassembles fragments, queues pongs for pings and the reply to a
/// close. It reads from and writes to [`MemIo`], two byte buffers, so no
/// socket is involved: whatever it wrote goes out as [`Incoming::Send`].
fn ws_feed(ctx: &mut WebSocketContext, io: &mut MemIo, bytes: &[u8], out: &mut Vec<Incoming>) -> Result<(), String> {
    io.input.extend_from_slice(bytes);
    let mut closed = None;
    loop {
        match ctx.read(io) {
            Ok(WsMessage::Text(text)) => match serde_json::from_str::<WsText>(&text) {
                Ok(WsText::Message { id, epoch, data }) => out.push(Incoming::Message { id, epoch, data }),
                Ok(WsText::Missed { missed }) => out.push(Incoming::Missed { from: missed.from, to: missed.to }),
                Ok(WsText::Reset { reset }) => out.push(Incoming::Reset { epoch: reset.epoch }),
                Ok(WsText::Error { error }) => out.push(Incoming::ServerError(error)),
                Err(_) => {} // Not the contract's: ignored, like unknown SSE events.
            },
            Ok(WsMessage::Close(Some(f))) if u16::from(f.code) == 4001 => {
                out.push(Incoming::Expired(format!("the token expired (close 4001 {})", f.reason)));
            }
            Ok(WsMessage::Close(frame)) => {
                closed = Some(match frame {
                    Some(f) if f.reason.is_empty() => {
                        format!("the server closed the WebSocket ({})", u16::from(f.code))
                    }
                    Some(f) => format!("the server closed the WebSocket ({} {})", u16::from(f.code), f.reason),
                    None => "the server closed the WebSocket".to_owned(),
                });
            }
            Ok(_) => {} // Binary, ping, pong: pongs are tungstenite's business.
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => break,
            Err(e) => return Err(format!("WebSocket: {e}")),
        }
    }
    // Pongs and the close reply, into `io.output`; once closed, nothing.
    let _ = ctx.flush(io);
    if !io.output.is_empty() {
        out.push(Incoming::Send(std::mem::take(&mut io.output)));
    }
    if let Some(reason) = closed {
        out.push(Incoming::Closed(reason));
    }
    Ok(())
}
// ANCHOR_END: ws_feed

/// An in-memory duplex "stream" for `tungstenite`: reads drain `input`
/// (`WouldBlock` when empty, as a non-blocking socket would say), writes
/// append to `output`.
#[derive(Debug, Default)]
pub(crate) struct MemIo {
    input: Vec<u8>,
    read: usize,
    output: Vec<u8>,
}

impl Read for MemIo {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let rest = &self.input[self.read..];
        if rest.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.read += n;
        if self.read == self.input.len() {
            self.input.clear();
            self.read = 0;
        }
        Ok(n)
    }
}

impl Write for MemIo {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
