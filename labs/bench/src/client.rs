//! The load generator's clients: opening connections of each transport,
//! publishing, and reading pushed messages with the kernel's receive time.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

use socket2::{Domain, Socket, Type};

pub use crate::axes::Transport;
use crate::headers::BrowserHeaders;

/// Connects from `source` (an address in 127.0.0.0/8, so that many source
/// addresses multiply the ephemeral ports available) to `addr`.
///
/// The source port is chosen at `connect`, not at `bind`
/// (`IP_BIND_ADDRESS_NO_PORT`): a port bound without a destination must be
/// free for every destination, so the TIME_WAIT remnants of the previous
/// run's 10,000 connections would exhaust the source address's ports; chosen
/// at connect, a port only has to be free towards this server's address.
pub fn connect_from(source: IpAddr, addr: SocketAddr, rcvbuf: Option<usize>) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    if let Some(size) = rcvbuf {
        socket.set_recv_buffer_size(size)?;
    }
    bind_source(&socket, source)?;
    socket.connect_timeout(&addr.into(), Duration::from_secs(10))?;
    socket.set_tcp_nodelay(true)?;
    Ok(socket.into())
}

/// Binds `socket` to `source` with the port left to `connect`
/// (`IP_BIND_ADDRESS_NO_PORT` for IPv4; see [`connect_from`] for why).
pub fn bind_source(socket: &Socket, source: IpAddr) -> io::Result<()> {
    if source.is_ipv4() {
        let on: libc::c_int = 1;
        // SAFETY: valid fd, option and a c_int value of the right size.
        let r = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    socket.bind(&SocketAddr::new(source, 0).into())
}

/// The request that opens a subscription of `transport` to `topic` (for
/// short polling: the first poll).
pub fn subscribe_request(transport: Transport, topic: &str) -> String {
    subscribe_request_with(transport, topic, None)
}

/// [`subscribe_request`], with a browser's header lines instead of the
/// minimal ones when `browser` is given ([`BrowserHeaders`]).
pub fn subscribe_request_with(transport: Transport, topic: &str, browser: Option<&BrowserHeaders>) -> String {
    if let Some(b) = browser {
        return match transport {
            Transport::Sse => b.head(&format!("GET /sse?topic={topic} HTTP/1.1"), transport),
            Transport::Ws => b.head(&format!("GET /ws?topic={topic} HTTP/1.1"), transport),
            Transport::LongPoll => poll_request_with(topic, 0, true, browser),
            Transport::ShortPoll => poll_request_with(topic, 0, false, browser),
        };
    }
    match transport {
        Transport::Sse => format!("GET /sse?topic={topic} HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n"),
        Transport::Ws => format!(
            "GET /ws?topic={topic} HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: cnRsYWItYmVuY2gta2V5IQ==\r\n\r\n"
        ),
        Transport::LongPoll => poll_request(topic, 0, true),
        Transport::ShortPoll => poll_request(topic, 0, false),
    }
}

/// `GET /poll?topic=T&after=N`, held up to 60 s when `long`.
pub fn poll_request(topic: &str, after: u64, long: bool) -> String {
    poll_request_with(topic, after, long, None)
}

/// [`poll_request`], with a browser's header lines when `browser` is given.
pub fn poll_request_with(topic: &str, after: u64, long: bool, browser: Option<&BrowserHeaders>) -> String {
    let wait = if long { "&wait=60" } else { "" };
    let line = format!("GET /poll?topic={topic}&after={after}{wait} HTTP/1.1");
    match browser {
        Some(b) => b.head(&line, if long { Transport::LongPoll } else { Transport::ShortPoll }),
        None => format!("{line}\r\nHost: bench\r\n\r\n"),
    }
}

/// A subscription as opened by [`subscribe`].
#[derive(Debug)]
pub struct Subscribed {
    /// Bytes that arrived after the response head (already pushed data).
    pub rest: Vec<u8>,
    /// Bytes written: the request.
    pub sent: usize,
    /// Bytes read: the response head and `rest`.
    pub received: usize,
}

/// Sends the subscription request and, for SSE and WebSocket, reads the
/// response head within `timeout` (a held long poll has no answer yet; a
/// short-polling client sends nothing until its first poll is due).
pub fn subscribe(stream: &mut TcpStream, transport: Transport, topic: &str, timeout: Duration) -> io::Result<Subscribed> {
    subscribe_with(stream, transport, topic, timeout, None)
}

/// [`subscribe`], with a browser's header lines when `browser` is given.
pub fn subscribe_with(
    stream: &mut TcpStream,
    transport: Transport,
    topic: &str,
    timeout: Duration,
    browser: Option<&BrowserHeaders>,
) -> io::Result<Subscribed> {
    if transport == Transport::ShortPoll {
        return Ok(Subscribed { rest: Vec::new(), sent: 0, received: 0 });
    }
    let request = subscribe_request_with(transport, topic, browser);
    stream.write_all(request.as_bytes())?;
    if transport == Transport::LongPoll {
        return Ok(Subscribed { rest: Vec::new(), sent: request.len(), received: 0 });
    }
    stream.set_read_timeout(Some(timeout))?;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    loop {
        let n = match stream.read(&mut chunk) {
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no answer to the {} handshake within {timeout:?}", transport.name()),
                ));
            }
            other => other?,
        };
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed during handshake"));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let expected: &[u8] = if transport == Transport::Ws { b"HTTP/1.1 101" } else { b"HTTP/1.1 200" };
            if !buf.starts_with(expected) {
                return Err(io::Error::other(format!(
                    "unexpected answer: {}",
                    String::from_utf8_lossy(&buf[..end]).lines().next().unwrap_or("")
                )));
            }
            stream.set_read_timeout(None)?;
            let received = buf.len();
            return Ok(Subscribed { rest: buf.split_off(end + 4), sent: request.len(), received });
        }
    }
}

/// A keep-alive HTTP connection that publishes.
#[derive(Debug)]
pub struct Publisher {
    stream: TcpStream,
    topic: String,
    buf: Vec<u8>,
}

impl Publisher {
    /// Connects to `addr` to publish to `topic`.
    pub fn connect(addr: SocketAddr, topic: &str) -> io::Result<Publisher> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(Publisher { stream, topic: topic.to_owned(), buf: Vec::new() })
    }

    /// Publishes `data`; returns the id the server assigned.
    pub fn publish(&mut self, data: &[u8]) -> io::Result<u64> {
        let (status, head, body) = self.publish_status(data)?;
        if status != 200 {
            return Err(io::Error::other(format!("publish failed: {head}")));
        }
        let v: serde_json::Value = serde_json::from_slice(&body).map_err(io::Error::other)?;
        v["id"].as_u64().ok_or_else(|| io::Error::other("no id in publish response"))
    }

    /// Publishes `data`; returns the answer whatever its status: the status
    /// code, the response head and the body. (A `503` from a server whose
    /// broker is down is an answer, not an error.)
    pub fn publish_status(&mut self, data: &[u8]) -> io::Result<(u16, String, Vec<u8>)> {
        let head = format!(
            "POST /publish?topic={} HTTP/1.1\r\nHost: bench\r\nContent-Length: {}\r\n\r\n",
            self.topic,
            data.len()
        );
        let mut request = head.into_bytes();
        request.extend_from_slice(data);
        self.stream.write_all(&request)?;
        // Read one response: head, then Content-Length bytes.
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).to_string();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
                    .unwrap_or(0);
                if self.buf.len() >= end + 4 + len {
                    let body: Vec<u8> = self.buf[end + 4..end + 4 + len].to_vec();
                    self.buf.drain(..end + 4 + len);
                    let status = head.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0);
                    return Ok((status, head, body));
                }
            }
            let mut chunk = [0u8; 1024];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "publisher connection closed"));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// `CLOCK_REALTIME` now, in nanoseconds: the clock the kernel's receive
/// timestamps (`SO_TIMESTAMPNS`) use, shared by every process on the machine.
pub fn realtime_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into a valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The payload of a benchmark message: its sequence number and the
/// publisher's clock when it was sent, padded to `size` bytes.
pub fn bench_payload(seq: u64, sent_ns: u64, size: usize) -> Vec<u8> {
    let mut data = format!("{seq} {sent_ns} ").into_bytes();
    data.resize(size.max(data.len()), b'x');
    data
}

/// Parses [`bench_payload`].
pub fn parse_payload(data: &str) -> Option<(u64, u64)> {
    let mut it = data.split(' ');
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// Asks the kernel to timestamp received data (`SO_TIMESTAMPNS`).
pub fn enable_rx_timestamps(stream: &impl AsRawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: valid fd, option and a c_int value of the right size.
    let r = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

// ANCHOR: rx_timestamp
/// Reads like `read(2)`, and returns the kernel's receive timestamp of the
/// data (CLOCK_REALTIME ns) when `SO_TIMESTAMPNS` is on. The timestamp is
/// taken when the data reached the socket, so a client that is slow to get
/// around to reading does not inflate the latency it measures.
pub fn recv_timestamped(fd: &impl AsRawFd, buf: &mut [u8]) -> io::Result<(usize, Option<u64>)> {
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    let mut control = [0u64; 16];
    // SAFETY: msghdr is plain data; zeroed is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: msg points to live buffers for the duration of the call.
    let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut stamp = None;
    // SAFETY: walking the control messages the kernel wrote into `control`.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                stamp = Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((n as usize, stamp))
}
// ANCHOR_END: rx_timestamp

/// One pushed message as a client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The message id.
    pub id: u64,
    /// The message data.
    pub data: String,
    /// Its epoch, where the transport carries it on each message (SSE's
    /// `id: E-N`, a WebSocket frame's `"epoch"`; a poll answer has one for
    /// all its messages, [`PollAnswer::epoch`]).
    pub epoch: Option<String>,
}

/// What a subscriber receives besides messages: the server's signals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// A message.
    Message(Pushed),
    /// "You missed ids `from..=to`" (the drop-oldest policy, or a replay
    /// older than retention): an SSE `event: missed`, a WebSocket
    /// `{"missed":...}` frame, or a poll response's `missed` member.
    Missed { from: u64, to: u64 },
    /// "The stream you resumed from is gone; what follows is epoch `epoch`
    /// from its start": an SSE `event: reset`, a WebSocket `{"reset":...}`
    /// frame, or a poll response's `reset` member (a restart, or a broker
    /// that lost the topic).
    Reset { epoch: String },
    /// A WebSocket ping with its payload: the client must answer with a pong
    /// or the server closes the connection after two ping intervals.
    Ping(Vec<u8>),
    /// A WebSocket close frame: the server is closing.
    Close,
}

/// Splits a stream of pushed bytes into [`Signal`]s (SSE events or
/// WebSocket frames); keeps partial input between calls.
#[derive(Debug, Default)]
pub struct PushParser {
    buf: Vec<u8>,
}

impl PushParser {
    /// Appends `input` and returns every complete message, ignoring signals.
    pub fn feed(&mut self, transport: Transport, input: &[u8]) -> Vec<Pushed> {
        self.feed_signals(transport, input)
            .into_iter()
            .filter_map(|s| match s {
                Signal::Message(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    /// Appends `input` and returns every complete message and signal, in order.
    pub fn feed_signals(&mut self, transport: Transport, input: &[u8]) -> Vec<Signal> {
        self.buf.extend_from_slice(input);
        let mut out = Vec::new();
        let used = match transport {
            Transport::Ws => parse_ws(&self.buf, &mut out),
            Transport::Sse => parse_sse(&self.buf, &mut out),
            Transport::LongPoll | Transport::ShortPoll => 0,
        };
        self.buf.drain(..used);
        out
    }
}

/// A client's pong to a ping: a masked frame (clients must mask), here with
/// the all-zero key, which leaves the payload as it is.
pub fn pong_frame(payload: &[u8]) -> Vec<u8> {
    let len = payload.len().min(125);
    let mut frame = vec![0x8A, 0x80 | len as u8, 0, 0, 0, 0];
    frame.extend_from_slice(&payload[..len]);
    frame
}

fn missed_of(v: &serde_json::Value) -> Option<Signal> {
    Some(Signal::Missed { from: v["from"].as_u64()?, to: v["to"].as_u64()? })
}

fn reset_of(v: &serde_json::Value) -> Option<Signal> {
    Some(Signal::Reset { epoch: v["epoch"].as_str()?.to_owned() })
}

fn parse_ws(buf: &[u8], out: &mut Vec<Signal>) -> usize {
    let mut at = 0;
    while buf.len() >= at + 2 {
        let opcode = buf[at] & 0x0f;
        let (len, head) = match buf[at + 1] & 0x7f {
            126 if buf.len() >= at + 4 => (u16::from_be_bytes([buf[at + 2], buf[at + 3]]) as usize, 4),
            127 if buf.len() >= at + 10 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&buf[at + 2..at + 10]);
                (u64::from_be_bytes(b) as usize, 10)
            }
            126 | 127 => break,
            n => (n as usize, 2),
        };
        if buf.len() < at + head + len {
            break;
        }
        let payload = &buf[at + head..at + head + len];
        match opcode {
            1 => {
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(payload) {
                    if let (Some(id), Some(data)) = (v["id"].as_u64(), v["data"].as_str()) {
                        let epoch = v["epoch"].as_str().map(str::to_owned);
                        out.push(Signal::Message(Pushed { id, data: data.to_owned(), epoch }));
                    } else if let Some(signal) = missed_of(&v["missed"]).or_else(|| reset_of(&v["reset"])) {
                        out.push(signal);
                    }
                }
            }
            8 => out.push(Signal::Close),
            9 => out.push(Signal::Ping(payload.to_vec())),
            _ => {}
        }
        at += head + len;
    }
    at
}

fn parse_sse(buf: &[u8], out: &mut Vec<Signal>) -> usize {
    let mut at = 0;
    while let Some(end) = buf[at..].windows(2).position(|w| w == b"\n\n") {
        let event = String::from_utf8_lossy(&buf[at..at + end]);
        let mut id = None;
        let mut epoch = None;
        let mut name = None;
        let mut data: Option<String> = None;
        for line in event.lines() {
            if let Some(v) = line.strip_prefix("id: ") {
                // `E-N` (the epoch, then the id) or a bare `N`.
                id = v.rsplit('-').next().and_then(|n| n.parse().ok());
                epoch = v.rsplit_once('-').map(|(e, _)| e.to_owned());
            } else if let Some(v) = line.strip_prefix("event: ") {
                name = Some(v.to_owned());
            } else if let Some(v) = line.strip_prefix("data: ") {
                data = Some(match data {
                    Some(d) => d + "\n" + v,
                    None => v.to_owned(),
                });
            }
        }
        match (name.as_deref(), id, data) {
            (Some("missed"), _, Some(data)) => {
                if let Some(missed) = serde_json::from_str(&data).ok().as_ref().and_then(missed_of) {
                    out.push(missed);
                }
            }
            (Some("reset"), _, Some(data)) => {
                if let Some(reset) = serde_json::from_str(&data).ok().as_ref().and_then(reset_of) {
                    out.push(reset);
                }
            }
            (None, Some(id), Some(data)) => out.push(Signal::Message(Pushed { id, data, epoch })),
            _ => {}
        }
        at += end + 2;
    }
    at
}

/// One answered poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollAnswer {
    /// The status code.
    pub status: u16,
    /// A `reset` signal, then a `missed` signal if there were any, then the
    /// messages, oldest first.
    pub signals: Vec<Signal>,
    /// The epoch the answer's ids belong to (its top-level `epoch`).
    pub epoch: Option<String>,
    /// The server will close the connection after this response.
    pub close: bool,
}

/// Splits a keep-alive connection's input into poll responses (a head with
/// `Content-Length`, then the JSON body); keeps partial input between calls.
#[derive(Debug, Default)]
pub struct PollParser {
    buf: Vec<u8>,
}

impl PollParser {
    /// Appends `input` and returns every complete response.
    pub fn feed(&mut self, input: &[u8]) -> Vec<PollAnswer> {
        self.buf.extend_from_slice(input);
        let mut out = Vec::new();
        let mut at = 0;
        while let Some(end) = self.buf[at..].windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&self.buf[at..at + end]).to_ascii_lowercase();
            let header = |name: &str| {
                head.lines().find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
            };
            let len: usize = header("content-length:").and_then(|v| v.parse().ok()).unwrap_or(0);
            let body_at = at + end + 4;
            if self.buf.len() < body_at + len {
                break;
            }
            let status = head.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0);
            let close = header("connection:").is_some_and(|v| v.contains("close"));
            let mut signals = Vec::new();
            let mut epoch = None;
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&self.buf[body_at..body_at + len]) {
                epoch = v["epoch"].as_str().map(str::to_owned);
                if let Some(reset) = reset_of(&v["reset"]) {
                    signals.push(reset);
                }
                if let Some(missed) = missed_of(&v["missed"]) {
                    signals.push(missed);
                }
                for m in v["messages"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
                    if let (Some(id), Some(data)) = (m["id"].as_u64(), m["data"].as_str()) {
                        signals.push(Signal::Message(Pushed { id, data: data.to_owned(), epoch: epoch.clone() }));
                    }
                }
            }
            out.push(PollAnswer { status, signals, epoch, close });
            at = body_at + len;
        }
        self.buf.drain(..at);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_split_ws_frames_and_sse_events() {
        let json = br#"{"id":7,"data":"3 1000 xx"}"#;
        let mut frame = vec![0x81, json.len() as u8];
        frame.extend_from_slice(json);
        frame.extend_from_slice(&[0x89, 0]); // a ping, ignored
        let mut p = PushParser::default();
        assert!(p.feed(Transport::Ws, &frame[..5]).is_empty());
        let got = p.feed(Transport::Ws, &frame[5..]);
        assert_eq!(got, vec![Pushed { id: 7, data: "3 1000 xx".into(), epoch: None }]);
        assert_eq!(parse_payload(&got[0].data), Some((3, 1000)));

        let mut p = PushParser::default();
        let sse = b": keep-alive\n\nid: 1\ndata: a\ndata: b\n\nid: Ep0ch-2\nda";
        let got = p.feed(Transport::Sse, sse);
        assert_eq!(got, vec![Pushed { id: 1, data: "a\nb".into(), epoch: None }]);
        assert_eq!(p.feed(Transport::Sse, b"ta: c\n\n"), vec![Pushed { id: 2, data: "c".into(), epoch: Some("Ep0ch".into()) }]);
    }

    #[test]
    fn parses_signals_and_poll_answers() {
        let mut p = PushParser::default();
        let sse = b"event: missed\ndata: {\"from\":2,\"to\":9}\n\nid: 10\ndata: x\n\n";
        assert_eq!(
            p.feed_signals(Transport::Sse, sse),
            vec![Signal::Missed { from: 2, to: 9 }, Signal::Message(Pushed { id: 10, data: "x".into(), epoch: None })]
        );
        let json = br#"{"missed":{"from":1,"to":3}}"#;
        let mut frames = vec![0x81, json.len() as u8];
        frames.extend_from_slice(json);
        frames.extend_from_slice(&[0x89, 2, b'h', b'i', 0x88, 0]);
        assert_eq!(
            p.feed_signals(Transport::Ws, &frames),
            vec![Signal::Missed { from: 1, to: 3 }, Signal::Ping(b"hi".to_vec()), Signal::Close]
        );
        assert_eq!(pong_frame(b"hi"), vec![0x8A, 0x82, 0, 0, 0, 0, b'h', b'i']);

        let sse = b"event: reset\nid: Q7-0\ndata: {\"epoch\":\"Q7\"}\n\nid: Q7-1\ndata: y\n\n";
        assert_eq!(
            p.feed_signals(Transport::Sse, sse),
            vec![Signal::Reset { epoch: "Q7".into() }, Signal::Message(Pushed { id: 1, data: "y".into(), epoch: Some("Q7".into()) })]
        );
        let json = br#"{"reset":{"epoch":"Q7"}}"#;
        let mut frame = vec![0x81, json.len() as u8];
        frame.extend_from_slice(json);
        assert_eq!(p.feed_signals(Transport::Ws, &frame), vec![Signal::Reset { epoch: "Q7".into() }]);

        let body = r#"{"epoch":"E1","messages":[{"id":4,"data":"a"},{"id":5,"data":"b"}],"last_id":5,"reset":{"epoch":"E1"}}"#;
        let response = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        let mut p = PollParser::default();
        let (first, second) = response.as_bytes().split_at(30);
        assert!(p.feed(first).is_empty());
        let got = p.feed(second);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].status, 200);
        assert!(!got[0].close);
        assert_eq!(got[0].epoch.as_deref(), Some("E1"));
        assert_eq!(got[0].signals.len(), 3);
        assert_eq!(got[0].signals[0], Signal::Reset { epoch: "E1".into() });
    }

    #[test]
    fn payload_round_trip_and_size() {
        let p = bench_payload(12, 34, 64);
        assert_eq!(p.len(), 64);
        assert_eq!(parse_payload(std::str::from_utf8(&p).unwrap()), Some((12, 34)));
    }
}
