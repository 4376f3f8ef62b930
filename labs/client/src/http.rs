//! The HTTP/1.1 a subscriber needs: the base URL, request heads, response
//! heads (parsed by `httparse`) and response bodies framed by
//! `Content-Length`, chunked transfer coding, or the end of the connection.

use std::fmt;
use std::str::FromStr;

/// Response heads larger than this are refused (a server's heads are tiny).
const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 64;

/// A server's base URL: `http://HOST[:PORT][/PREFIX]`.
///
/// Only `http`: the labs serve plain HTTP, and TLS would be a layer below
/// this crate's concern (the runtime's socket), not the subscriber's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// The host name or address (an IPv6 address without its brackets).
    pub host: String,
    /// The port (80 when the URL has none).
    pub port: u16,
    /// The path prefix before `/sse`, `/ws` and `/poll`; empty or `/...`
    /// without a trailing slash.
    pub prefix: String,
}

impl FromStr for Url {
    type Err = String;

    fn from_str(s: &str) -> Result<Url, String> {
        let bad = |why: &str| format!("'{s}' is not a server URL ({why}; expected http://HOST[:PORT])");
        let rest = s.strip_prefix("http://").ok_or_else(|| bad("only http:// is supported"))?;
        let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
        if path.contains(['?', '#']) {
            return Err(bad("no query or fragment"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() || host.contains(['@', ' ']) {
            return Err(bad("no host"));
        }
        let port = match port {
            Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| bad("bad port"))?,
            None => 80,
        };
        Ok(Url { host: host.to_owned(), port, prefix: path.trim_end_matches('/').to_owned() })
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.authority(), self.prefix)
    }
}

impl Url {
    /// `HOST:PORT`, with brackets around an IPv6 address: the `Host` header.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// A request a subscriber wants sent on a new connection: where to connect,
/// and the request head (a `GET`, never a body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Where to connect.
    pub host: String,
    /// The port.
    pub port: u16,
    /// The request target: path and query, e.g. `/sse?topic=news`.
    pub target: String,
    /// Header fields after `Host`, in order.
    pub headers: Vec<(String, String)>,
    authority: String,
}

impl Request {
    /// `GET target` on the server at `url`.
    pub fn get(url: &Url, target: String) -> Request {
        Request {
            host: url.host.clone(),
            port: url.port,
            target: format!("{}{target}", url.prefix),
            headers: Vec::new(),
            authority: url.authority(),
        }
    }

    /// Adds a header field.
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Request {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// The value of the first header field named `name` (any case).
    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The URL, for messages: `http://HOST:PORT/target`.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.authority, self.target)
    }

    /// The request head's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut head = format!("GET {} HTTP/1.1\r\nHost: {}\r\n", self.target, self.authority);
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        head.into_bytes()
    }
}

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The status code.
    pub status: u16,
    /// The reason phrase.
    pub reason: String,
    /// The header fields, names as sent.
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// Parses a response head at the start of `buf`: `Ok(None)` until it is
    /// complete, then the head and its length in bytes.
    pub fn parse(buf: &[u8]) -> Result<Option<(Head, usize)>, String> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(buf) {
            Ok(httparse::Status::Complete(len)) => {
                let head = Head {
                    status: response.code.unwrap_or(0),
                    reason: response.reason.unwrap_or("").to_owned(),
                    headers: response
                        .headers
                        .iter()
                        .map(|h| (h.name.to_owned(), String::from_utf8_lossy(h.value).into_owned()))
                        .collect(),
                };
                Ok(Some((head, len)))
            }
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => Err("response head too large".into()),
            Ok(httparse::Status::Partial) => Ok(None),
            Err(e) => Err(format!("malformed response head: {e}")),
        }
    }

    /// The value of the first header field named `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Whether a comma-separated header field lists `token` (any case).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .any(|(_, v)| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }

    /// The media type of `Content-Type`, without parameters, lower case.
    pub fn media_type(&self) -> Option<String> {
        self.header("content-type").map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
    }

    /// How the body is delimited (RFC 9112 §6.3, for a response to `GET`).
    pub fn framing(&self) -> Result<Framing, String> {
        if self.has_token("transfer-encoding", "chunked") {
            Ok(Framing::Chunked)
        } else if let Some(len) = self.header("content-length") {
            len.trim().parse().map(Framing::Length).map_err(|_| format!("bad Content-Length '{len}'"))
        } else {
            Ok(Framing::UntilClose)
        }
    }

    /// Whether the connection stays open after this response (HTTP/1.1:
    /// unless `Connection: close`).
    pub fn keep_alive(&self) -> bool {
        !self.has_token("connection", "close")
    }

    /// `STATUS REASON`, and the body's first line if there is one (error
    /// responses carry a one-line reason).
    pub fn describe(&self, body: &[u8]) -> String {
        let line = String::from_utf8_lossy(body);
        let line = line.lines().next().unwrap_or("").trim();
        if line.is_empty() {
            format!("HTTP {} {}", self.status, self.reason)
        } else {
            format!("HTTP {} {}: {line}", self.status, self.reason)
        }
    }
}

/// How a response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// After this many bytes.
    Length(u64),
    /// Chunked transfer coding: at the zero-size chunk.
    Chunked,
    /// When the server closes the connection (an event stream).
    UntilClose,
}

/// Decodes a response body incrementally, whatever its [`Framing`].
#[derive(Debug)]
pub struct Body {
    framing: Framing,
    /// Length: bytes still to come. Chunked: bytes left in the current chunk.
    remaining: u64,
    chunk: ChunkState,
    /// An unfinished chunk-size or trailer line.
    line: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    Size,
    Data,
    /// The CRLF after a chunk's data.
    DataEnd,
    Trailer,
    Done,
}

impl Body {
    /// A decoder for a body framed by `framing`.
    pub fn new(framing: Framing) -> Body {
        let remaining = if let Framing::Length(n) = framing { n } else { 0 };
        Body { framing, remaining, chunk: ChunkState::Size, line: Vec::new() }
    }

    /// How this body ends.
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// Whether the whole body has arrived.
    pub fn is_done(&self) -> bool {
        match self.framing {
            Framing::Length(_) => self.remaining == 0,
            Framing::Chunked => self.chunk == ChunkState::Done,
            Framing::UntilClose => false,
        }
    }

    /// Decodes `input`, appending body bytes to `out`. Returns how many
    /// bytes of `input` belong to this body (the rest would be the next
    /// response's).
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, String> {
        match self.framing {
            Framing::UntilClose => {
                out.extend_from_slice(input);
                Ok(input.len())
            }
            Framing::Length(_) => {
                let n = input.len().min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                out.extend_from_slice(&input[..n]);
                self.remaining -= n as u64;
                Ok(n)
            }
            Framing::Chunked => self.feed_chunked(input, out),
        }
    }

    fn feed_chunked(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, String> {
        let mut i = 0;
        while i < input.len() && self.chunk != ChunkState::Done {
            match self.chunk {
                ChunkState::Data => {
                    let n = (input.len() - i).min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                    out.extend_from_slice(&input[i..i + n]);
                    self.remaining -= n as u64;
                    i += n;
                    if self.remaining == 0 {
                        self.chunk = ChunkState::DataEnd;
                    }
                }
                ChunkState::Size | ChunkState::DataEnd | ChunkState::Trailer => {
                    let Some(end) = input[i..].iter().position(|b| *b == b'\n') else {
                        self.line.extend_from_slice(&input[i..]);
                        if self.line.len() > 4096 {
                            return Err("chunked body: line too long".into());
                        }
                        return Ok(input.len());
                    };
                    self.line.extend_from_slice(&input[i..i + end]);
                    i += end + 1;
                    let line = std::mem::take(&mut self.line);
                    let line = line.strip_suffix(b"\r").unwrap_or(&line);
                    self.chunk = match self.chunk {
                        ChunkState::DataEnd if line.is_empty() => ChunkState::Size,
                        ChunkState::DataEnd => return Err("chunked body: no CRLF after a chunk".into()),
                        ChunkState::Trailer if line.is_empty() => ChunkState::Done,
                        ChunkState::Trailer => ChunkState::Trailer,
                        _ => {
                            let size = line.split(|b| *b == b';').next().unwrap_or(b"");
                            let size = std::str::from_utf8(size).ok().map(str::trim).unwrap_or("");
                            self.remaining = u64::from_str_radix(size, 16)
                                .map_err(|_| format!("chunked body: bad chunk size {size:?}"))?;
                            if self.remaining == 0 { ChunkState::Trailer } else { ChunkState::Data }
                        }
                    };
                }
                ChunkState::Done => unreachable!("the loop stops at Done"),
            }
        }
        Ok(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u: Url = "http://127.0.0.1:8080".parse().unwrap();
        assert_eq!((u.host.as_str(), u.port, u.prefix.as_str()), ("127.0.0.1", 8080, ""));
        assert_eq!(u.to_string(), "http://127.0.0.1:8080");
        let u: Url = "http://example.test/rt/".parse().unwrap();
        assert_eq!((u.port, u.prefix.as_str(), u.authority()), (80, "/rt", "example.test:80".to_owned()));
        let u: Url = "http://[::1]:9000".parse().unwrap();
        assert_eq!((u.host.as_str(), u.authority()), ("::1", "[::1]:9000".to_owned()));
        for bad in ["https://a", "127.0.0.1:8080", "http://", "http://a:0", "http://a:x", "http://a/?q", "http://[::1"]
        {
            assert!(bad.parse::<Url>().is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn request_head() {
        let url: Url = "http://h:1/p".parse().unwrap();
        let r = Request::get(&url, "/sse?topic=t".into()).header("Last-Event-ID", "7");
        assert_eq!(r.url(), "http://h:1/p/sse?topic=t");
        assert_eq!(r.header_value("last-event-id"), Some("7"));
        assert_eq!(r.encode(), b"GET /p/sse?topic=t HTTP/1.1\r\nHost: h:1\r\nLast-Event-ID: 7\r\n\r\n");
    }

    #[test]
    fn heads_and_framing() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: Text/Event-Stream; charset=utf-8\r\nConnection: keep-alive, close\r\n\r\nrest";
        assert_eq!(Head::parse(&raw[..20]).unwrap(), None);
        let (head, len) = Head::parse(raw).unwrap().unwrap();
        assert_eq!((head.status, &raw[len..]), (200, &b"rest"[..]));
        assert_eq!(head.media_type().as_deref(), Some("text/event-stream"));
        assert!(!head.keep_alive());
        assert_eq!(head.framing(), Ok(Framing::UntilClose));
        let (head, _) = Head::parse(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 4\r\n\r\n").unwrap().unwrap();
        assert_eq!((head.framing(), head.keep_alive()), (Ok(Framing::Length(4)), true));
        assert_eq!(head.describe(b"bad topic\n"), "HTTP 400 Bad Request: bad topic");
        assert!(Head::parse(b"NOT HTTP\r\n\r\n").is_err());
    }

    #[test]
    fn length_body_stops_at_its_end() {
        let mut body = Body::new(Framing::Length(5));
        let mut out = Vec::new();
        assert_eq!(body.feed(b"abc", &mut out), Ok(3));
        assert!(!body.is_done());
        assert_eq!(body.feed(b"deNEXT", &mut out), Ok(2));
        assert!(body.is_done());
        assert_eq!(out, b"abcde");
    }

    /// Chunked bodies decode the same whichever way the bytes are split.
    #[test]
    fn chunked_body_in_every_split() {
        let raw = b"4;ext=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        let body_len = raw.len() - 4;
        for split in 0..raw.len() {
            let mut body = Body::new(Framing::Chunked);
            let mut out = Vec::new();
            let a = body.feed(&raw[..split], &mut out).unwrap();
            assert_eq!(a, split.min(body_len));
            let b = body.feed(&raw[a..], &mut out).unwrap();
            assert_eq!(a + b, body_len, "split at {split}");
            assert!(body.is_done());
            assert_eq!(out, b"Wikipedia in\r\n\r\nchunks.", "split at {split}");
        }
        let mut out = Vec::new();
        assert!(Body::new(Framing::Chunked).feed(b"zz\r\n", &mut out).is_err());
    }
}
