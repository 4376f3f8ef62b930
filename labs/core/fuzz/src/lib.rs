//! What the fuzz targets of `rtlab-core` share: client frames built by hand,
//! a reader of what the server writes (HTTP responses, WebSocket frames), and
//! a simulated runtime for one [`Connection`] (no sockets, no sleeping: time
//! is a base `Instant` plus durations the input chooses).
//!
//! Everything here *checks* what it reads: a malformed frame or response
//! from the core is a bug, and panics (libFuzzer records it as a crash).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rtlab_core::{Bytes, Config, Connection, Server, Status, Wake};

/// A waker that does nothing: the targets drive one connection and tick it
/// themselves.
#[derive(Debug)]
pub struct NoWake;

impl Wake for NoWake {
    fn wake(&self, _token: usize) {}
}

/// The RFC 6455 §1.3 example key and the accept value it must produce.
pub const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// The `Sec-WebSocket-Accept` value for [`WS_KEY`].
pub const WS_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// A WebSocket upgrade request for `target` (path and query).
pub fn upgrade_request(target: &str) -> String {
    format!(
        "GET {target} HTTP/1.1\r\nHost: fuzz\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {WS_KEY}\r\n\r\n"
    )
}

/// How a frame's payload length is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, arbitrary::Arbitrary)]
pub enum LenForm {
    /// The shortest form (7 bits, 16 bits or 64 bits), as RFC 6455 requires.
    Shortest,
    /// The 16-bit form even for a short payload (if the length fits).
    U16,
    /// The 64-bit form, whatever the length.
    U64,
}

/// A client frame: `first` is the first byte as sent (FIN, RSV1-3, opcode);
/// the payload is masked with `mask` if there is one.
pub fn client_frame(first: u8, payload: &[u8], mask: Option<[u8; 4]>, form: LenForm) -> Vec<u8> {
    let len = payload.len();
    let mut out = Vec::with_capacity(len + 14);
    out.push(first);
    let m = if mask.is_some() { 0x80 } else { 0 };
    match form {
        LenForm::Shortest if len < 126 => out.push(m | len as u8),
        LenForm::Shortest | LenForm::U16 if len <= 0xFFFF => {
            out.push(m | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(m | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// One frame the server wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFrame {
    /// The opcode (the server never fragments: FIN is checked).
    pub opcode: u8,
    /// The payload.
    pub payload: Vec<u8>,
}

/// Opcodes.
pub const TEXT: u8 = 0x1;
/// Binary.
pub const BINARY: u8 = 0x2;
/// Close.
pub const CLOSE: u8 = 0x8;
/// Ping.
pub const PING: u8 = 0x9;
/// Pong.
pub const PONG: u8 = 0xA;

/// Reads every frame in `bytes`, which must be a whole number of frames as
/// a server writes them: FIN set, no RSV bit, not masked, shortest length
/// form, a defined opcode; control frames at most 125 bytes; text frames
/// UTF-8.
pub fn server_frames(mut bytes: &[u8]) -> Vec<ServerFrame> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        assert!(bytes.len() >= 2, "truncated server frame header: {bytes:?}");
        let (first, second) = (bytes[0], bytes[1]);
        assert_eq!(first & 0xF0, 0x80, "server frame with FIN clear or an RSV bit: {first:#x}");
        assert_eq!(second & 0x80, 0, "masked server frame");
        let opcode = first & 0x0F;
        assert!(matches!(opcode, TEXT | BINARY | CLOSE | PING | PONG), "server opcode {opcode}");
        let (len, head) = match second & 0x7F {
            126 => {
                let n = u16::from_be_bytes([bytes[2], bytes[3]]) as usize;
                assert!(n >= 126, "non-minimal 16-bit length");
                (n, 4)
            }
            127 => {
                let n = u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize;
                assert!(n > 0xFFFF, "non-minimal 64-bit length");
                (n, 10)
            }
            n => (n as usize, 2),
        };
        assert!(bytes.len() >= head + len, "truncated server frame payload");
        let payload = bytes[head..head + len].to_vec();
        if opcode >= CLOSE {
            assert!(len <= 125, "control frame of {len} bytes");
        }
        if opcode == TEXT {
            assert!(std::str::from_utf8(&payload).is_ok(), "server text frame not UTF-8");
        }
        frames.push(ServerFrame { opcode, payload });
        bytes = &bytes[head + len..];
    }
    frames
}

/// One HTTP response the server wrote.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body (empty for heads without a length: 101, the SSE head, 100).
    pub body: Vec<u8>,
}

impl Response {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Reads one response from the start of `bytes`: a complete head, and, if it
/// has a `Content-Length`, that many body bytes. Returns it and the bytes
/// used; panics if the response is malformed or incomplete.
pub fn read_response(bytes: &[u8]) -> (Response, usize) {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut r = httparse::Response::new(&mut headers);
    let head = match r.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        other => panic!("malformed or incomplete response head ({other:?}): {:?}", String::from_utf8_lossy(bytes)),
    };
    let status = r.code.expect("a status code");
    let headers: Vec<(String, String)> = r
        .headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8(h.value.to_vec()).expect("ASCII header value")))
        .collect();
    let len = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map(|(_, v)| v.parse::<usize>().expect("a numeric Content-Length"));
    let body_len = len.unwrap_or(0);
    assert!(bytes.len() >= head + body_len, "response body shorter than its Content-Length");
    let body = bytes[head..head + body_len].to_vec();
    (Response { status, headers, body }, head + body_len)
}

/// Splits `data` into chunks whose sizes come from `sizes` in turn (a size of
/// 0 counts as 1); what remains when the sizes run out is the last chunk.
pub fn chunks<'a>(mut data: &'a [u8], sizes: &[u16]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    for &size in sizes {
        if data.is_empty() {
            break;
        }
        let n = (size as usize).clamp(1, data.len());
        out.push(&data[..n]);
        data = &data[n..];
    }
    if !data.is_empty() {
        out.push(data);
    }
    out
}

/// The epoch of every [`Sim::new`] server.
pub const EPOCH: &str = "E";

/// One connection and a simulated clock, driven as a runtime would drive
/// it, with every byte of output written at once (a client that reads
/// everything).
pub struct Sim {
    /// The server the connection belongs to.
    pub server: Arc<Server>,
    /// The connection.
    pub conn: Connection,
    /// The simulated time.
    pub now: Instant,
}

impl Sim {
    /// A fresh connection on a fresh server with `config`, whose epoch is
    /// [`EPOCH`] (so that models can write the bytes they expect).
    pub fn new(config: Config) -> Sim {
        let server = Server::with_epoch(config, EPOCH);
        Sim::on(server)
    }

    /// A fresh connection on `server`.
    pub fn on(server: Arc<Server>) -> Sim {
        let now = Instant::now();
        let conn = Connection::new(server.clone(), Arc::new(NoWake), 1, now);
        Sim { server, conn, now }
    }

    /// Bytes from the client.
    pub fn send(&mut self, bytes: &[u8]) {
        self.conn.on_read(bytes, self.now);
    }

    /// Moves the clock and ticks the connection.
    pub fn advance(&mut self, by: Duration) {
        self.now += by;
        self.conn.on_tick(self.now);
    }

    /// Everything the connection has to write, all written.
    pub fn output(&mut self) -> Vec<u8> {
        let mut out: Vec<Bytes> = Vec::new();
        let n = self.conn.take_output(&mut out, usize::MAX);
        assert_eq!(n, out.iter().map(Bytes::len).sum::<usize>(), "take_output counts what it gives");
        self.conn.written(n);
        out.concat()
    }

    /// The connection's status.
    pub fn status(&self) -> Status {
        self.conn.status()
    }
}
