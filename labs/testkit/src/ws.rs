//! WebSocket clients: by hand, frame by frame ([`RawWs`], [`client_frame`]),
//! to send what a proper client never would and see every frame the server
//! sends; and tungstenite's blocking client ([`ws_connect`]), an independent
//! RFC 6455 implementation, for ordinary traffic.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use tungstenite::Message;

use crate::TIMEOUT;
use crate::http::{RawConn, request};
use crate::tls::Stream;

/// Opcode: continuation.
pub const CONT: u8 = 0x0;
/// Opcode: text.
pub const TEXT: u8 = 0x1;
/// Opcode: binary.
pub const BINARY: u8 = 0x2;
/// Opcode: close.
pub const CLOSE: u8 = 0x8;
/// Opcode: ping.
pub const PING: u8 = 0x9;
/// Opcode: pong.
pub const PONG: u8 = 0xA;
/// The FIN bit of a frame's first byte.
pub const FIN: u8 = 0x80;
/// The RSV1 bit (meaningful only with an extension such as permessage-deflate).
pub const RSV1: u8 = 0x40;
/// The RSV2 bit.
pub const RSV2: u8 = 0x20;
/// The RSV3 bit.
pub const RSV3: u8 = 0x10;

/// The masking key of client frames: the one of RFC 6455 §5.7's examples.
pub const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// The RFC 6455 §1.3 example key, sent by [`upgrade_request`].
pub const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// The `Sec-WebSocket-Accept` value for [`WS_KEY`].
pub const WS_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// A client frame. `first` is the frame's first byte as sent: FIN, RSV1-3
/// and the opcode (`FIN | TEXT` is a whole text message, `TEXT` alone the
/// first fragment, `FIN | RSV1 | TEXT` a protocol error). The payload length
/// takes the shortest encoding (7 bits, 16 or 64); the payload is masked
/// with [`MASK`] when `masked` (as a client must; `false` makes the protocol
/// error of an unmasked client frame).
pub fn client_frame(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut out = frame_header(first, payload.len() as u64, masked.then_some(MASK));
    if masked {
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// A frame header alone: `first` as in [`client_frame`], the payload
/// length, and the masking key if any. Sent without its payload, it is a
/// frame that announces more than it delivers.
pub fn frame_header(first: u8, len: u64, mask: Option<[u8; 4]>) -> Vec<u8> {
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut out = vec![first];
    match len {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n < 65536 => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
    out.extend(mask.into_iter().flatten());
    out
}

/// The opening handshake request for `target` (`/ws?topic=T`, `/echo`),
/// with the key [`WS_KEY`].
pub fn upgrade_request(target: &str) -> Vec<u8> {
    request(
        "GET",
        target,
        &format!(
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {WS_KEY}\r\n"
        ),
    )
}

/// A frame from the server.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    /// FIN bit.
    pub fin: bool,
    /// Opcode.
    pub opcode: u8,
    /// Payload.
    pub payload: Vec<u8>,
}

/// Compact: opcode, FIN, length and the start of the payload as text.
impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let preview = String::from_utf8_lossy(&self.payload[..self.payload.len().min(48)]);
        let more = if self.payload.len() > 48 { "..." } else { "" };
        write!(
            f,
            "Frame(op={:#x}{}, {} bytes: {preview:?}{more})",
            self.opcode,
            if self.fin { "" } else { " no-FIN" },
            self.payload.len()
        )
    }
}

impl Frame {
    /// The close code of a close frame.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == CLOSE && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// A WebSocket client that writes and reads raw frames.
///
/// By hand so that a test can send fragments, reserved bits, bad opcodes and
/// unmasked frames, and check every frame the server sends (unmasked, no
/// reserved bits, the close code) rather than what a library makes of them.
#[derive(Debug)]
pub struct RawWs {
    conn: RawConn,
}

impl RawWs {
    /// Connects and upgrades `target`.
    pub fn connect(addr: SocketAddr, target: &str) -> RawWs {
        RawWs::upgrade(RawConn::connect(addr), target)
    }

    /// Upgrades an already connected socket; asserts a valid `101`.
    pub fn upgrade(mut conn: RawConn, target: &str) -> RawWs {
        conn.send(&upgrade_request(target));
        let head = conn.read_head();
        assert_eq!(head.status, 101, "upgrade of {target}: {head:?}");
        assert_eq!(head.header("sec-websocket-accept"), Some(WS_ACCEPT), "Sec-WebSocket-Accept of {target}");
        assert!(
            head.header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")),
            "101 without Upgrade: websocket"
        );
        RawWs { conn }
    }

    /// Writes raw bytes.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.conn.send(bytes);
    }

    /// Writes one masked frame (`first` as in [`client_frame`]).
    pub fn send(&mut self, first: u8, payload: &[u8]) {
        self.conn.send(&client_frame(first, payload, true));
    }

    /// The next frame, or `None` at end of file between frames. Server
    /// frames must not be masked and must not use reserved bits.
    pub fn next_frame(&mut self, timeout: Duration) -> Option<Frame> {
        let deadline = Instant::now() + timeout;
        let what = "a WebSocket frame";
        let head = self.conn.take_exact(2, deadline, what);
        let head = match head {
            Some(h) => h,
            None if self.conn.buf.is_empty() => return None,
            None => panic!("end of file inside a frame header"),
        };
        assert_eq!(head[0] & 0x70, 0, "server frame with reserved bits set");
        assert_eq!(head[1] & 0x80, 0, "server frames must not be masked (RFC 6455 §5.1)");
        let len = match head[1] & 0x7f {
            126 => {
                let b = self.conn.take_exact(2, deadline, what).expect("end of file inside a frame header");
                u16::from_be_bytes([b[0], b[1]]) as usize
            }
            127 => {
                let b = self.conn.take_exact(8, deadline, what).expect("end of file inside a frame header");
                u64::from_be_bytes(b.try_into().expect("8 bytes")) as usize
            }
            n => n as usize,
        };
        let payload = self.conn.take_exact(len, deadline, what).expect("end of file inside a frame payload");
        Some(Frame { fin: head[0] & FIN != 0, opcode: head[0] & 0x0f, payload })
    }

    /// The next frame, which must come within [`TIMEOUT`].
    pub fn frame(&mut self) -> Frame {
        self.next_frame(TIMEOUT).expect("the server closed the connection while a frame was expected")
    }

    /// Reads up to the close frame; returns the frames before it and its code.
    pub fn until_close(&mut self, timeout: Duration) -> (Vec<Frame>, Option<u16>) {
        let deadline = Instant::now() + timeout;
        let mut before = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no close frame within {timeout:?}; frames so far: {before:?}");
            let frame = self
                .next_frame(left)
                .unwrap_or_else(|| panic!("end of file without a close frame; frames before it: {before:?}"));
            if frame.opcode == CLOSE {
                return (before, frame.close_code());
            }
            before.push(frame);
        }
    }

    /// Asserts that the next frame is a close frame with `code`, followed by
    /// the end of the connection.
    pub fn expect_close(&mut self, code: u16, context: &str) {
        let (before, got) = self.until_close(TIMEOUT);
        assert!(before.is_empty(), "{context}: frames before the close frame: {before:?}");
        assert_eq!(got, Some(code), "{context}: close code");
        self.expect_eof(context);
    }

    /// Asserts the TCP connection ends cleanly.
    pub fn expect_eof(&mut self, context: &str) {
        self.conn.expect_eof(context);
    }
}

/// A blocking tungstenite client (over TLS if the address is marked).
pub type Ws = tungstenite::WebSocket<Stream>;

/// Connects a tungstenite client to `target` (`/ws?topic=...`, `/echo`);
/// every read and write is bounded by [`TIMEOUT`].
pub fn ws_connect(addr: SocketAddr, target: &str) -> Ws {
    let stream = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect");
    stream.set_read_timeout(Some(TIMEOUT)).expect("read timeout");
    stream.set_write_timeout(Some(TIMEOUT)).expect("write timeout");
    stream.set_nodelay(true).expect("TCP_NODELAY");
    let (ws, resp) = tungstenite::client(format!("ws://{addr}{target}"), Stream::wrap(stream))
        .unwrap_or_else(|e| panic!("WebSocket handshake with {target} failed: {e}"));
    assert_eq!(resp.status().as_u16(), 101);
    ws
}

/// The next message (pings included), or `None` if `deadline` passes first.
/// Reading is what makes tungstenite answer pings.
pub fn ws_try_read(ws: &mut Ws, deadline: Instant) -> Option<Message> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        ws.get_mut().tcp().set_read_timeout(Some(left)).expect("read timeout");
        match ws.read() {
            Ok(m) => return Some(m),
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => panic!("WebSocket read failed: {e}"),
        }
    }
}

/// The next message, which must come within [`TIMEOUT`].
pub fn ws_read(ws: &mut Ws) -> Message {
    ws_try_read(ws, Instant::now() + TIMEOUT).expect("timed out waiting for a WebSocket message")
}

/// The next text message, skipping pings and pongs (anything else fails).
pub fn ws_text(ws: &mut Ws) -> String {
    loop {
        match ws_read(ws) {
            Message::Text(t) => return t.as_str().to_owned(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// Sends a text message.
pub fn ws_send_text(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).expect("WebSocket send");
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;

    use super::*;

    #[test]
    fn the_masked_hello_of_rfc_6455() {
        // RFC 6455 §5.7: "A single-frame masked text message".
        let hello = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        assert_eq!(client_frame(FIN | TEXT, b"Hello", true), hello);
        // ... and unmasked: "0x81 0x05 0x48 0x65 0x6c 0x6c 0x6f".
        assert_eq!(client_frame(FIN | TEXT, b"Hello", false), [0x81, 0x05, b'H', b'e', b'l', b'l', b'o']);
        // Fragments: "0x01 0x03 0x48 0x65 0x6c" then "0x80 0x02 0x6c 0x6f".
        assert_eq!(client_frame(TEXT, b"Hel", false), [0x01, 0x03, 0x48, 0x65, 0x6c]);
        assert_eq!(client_frame(FIN | CONT, b"lo", false), [0x80, 0x02, 0x6c, 0x6f]);
    }

    #[test]
    fn lengths_take_the_shortest_encoding() {
        // RFC 6455 §5.7: 256 bytes binary, unmasked: 0x82 0x7E 0x0100.
        assert_eq!(client_frame(FIN | BINARY, &[0; 256], false)[..4], [0x82, 0x7e, 0x01, 0x00]);
        // 64 KiB: 0x82 0x7F 0x0000000000010000.
        let big = client_frame(FIN | BINARY, &[0; 65536], false);
        assert_eq!(big[..10], [0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(big.len(), 10 + 65536);
        assert_eq!(client_frame(FIN | BINARY, &[0; 125], true)[1], 0x80 | 125);
        assert_eq!(client_frame(FIN | BINARY, &[0; 65535], true)[..4], [0x82, 0xfe, 0xff, 0xff]);
        assert_eq!(frame_header(FIN | RSV1 | PING, 1_000_000, Some([1, 2, 3, 4])).len(), 2 + 8 + 4);
    }

    #[test]
    fn raw_client_handshake_and_frames() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            let mut got = Vec::new();
            let mut chunk = [0u8; 1024];
            while !got.ends_with(b"\r\n\r\n") {
                let n = s.read(&mut chunk).expect("read");
                got.extend_from_slice(&chunk[..n]);
            }
            let mut answer = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {WS_ACCEPT}\r\n\r\n"
            )
            .into_bytes();
            answer.extend(client_frame(TEXT, b"frag", false));
            answer.extend(client_frame(FIN | CONT, &[b'x'; 300], false));
            answer.extend(client_frame(FIN | CLOSE, &1000u16.to_be_bytes(), false));
            s.write_all(&answer).expect("write");
            got
        });
        let mut ws = RawWs::connect(addr, "/echo");
        let first = ws.frame();
        assert_eq!((first.fin, first.opcode, first.payload.as_slice()), (false, TEXT, &b"frag"[..]));
        let (before, code) = ws.until_close(TIMEOUT);
        assert_eq!((before.len(), before[0].payload.len(), code), (1, 300, Some(1000)));
        ws.expect_eof("after the close frame");
        assert_eq!(server.join().expect("server"), upgrade_request("/echo"));
    }
}
