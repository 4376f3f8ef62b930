//! The floor: the least a server can do for a scenario, measured in the
//! same run as the labs, under the same placement.
//!
//! `rtlab bench-floor` is a raw-socket server with no protocol core, no hub
//! and no outbox: one thread on mio (epoll), a slab of sockets, and for each
//! request exactly the kernel work the scenario needs:
//!
//! * **idle**: one accepted socket per connection, answered with the
//!   shortest head its transport allows (SSE `200`, WebSocket `101`, a long
//!   poll held unanswered), then nothing;
//! * **fan-out**: each `POST /publish` is framed once (SSE event, WebSocket
//!   text frame) and queued to every subscriber, the same bytes to each;
//!   once every ready event of a `poll` is handled, each subscriber gets
//!   **one `write`** of what was queued for it (the messages of the
//!   publishes that arrived together), and then the publishes are answered.
//!
//! Why the batch: a publisher that is open-loop keeps several publishes in
//! flight, and an event loop that wrote each message to each subscriber on
//! its own would make one `send` (and one wake-up of the reader) per
//! message per subscriber where one per subscriber carries them all. The
//! first floor did exactly that, and under a burst of publishes it spent
//! several times a lab's CPU on sends, fell behind the schedule and
//! measured seconds where the labs took milliseconds: it was no floor. The
//! least kernel work is one write per subscriber per batch, as the labs'
//! outboxes do.
//!
//! It answers `GET /stats` with the open connections per transport, like a
//! lab, so the scenarios drive it unchanged (`--runtime floor`, or the
//! matrix's `floor` row). Whatever a lab spends beyond the floor's figure —
//! latency over it, bytes per connection over a bare socket — is the lab's
//! own cost: a ratio of 1.0 is the wall. (A single thread: in shared
//! placement a multi-loop lab can go below it, which the tables show.)

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

/// The name the floor goes by where a lab's runtime name goes (`--runtime
/// floor`, the matrix's row, the results document).
pub const NAME: &str = "floor";

/// The transports the floor serves for fan-out (it holds long polls for
/// idle, but answers none).
pub const FANOUT: [crate::axes::Transport; 2] = [crate::axes::Transport::Sse, crate::axes::Transport::Ws];

/// `rtlab bench-floor`: serve until SIGTERM or SIGINT.
#[derive(Debug, Clone, clap::Args)]
pub struct FloorArgs {
    /// Address to listen on; the first line on stdout says the real one.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub addr: SocketAddr,
}

/// What a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Request and response (publish, stats) until it asks for more.
    Http,
    Sse,
    Ws,
    /// A long poll, held and never answered.
    LongPoll,
}

#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    kind: Kind,
    input: Vec<u8>,
    /// Bytes a write could not take yet (the socket buffer was full).
    pending: Vec<u8>,
}

const LISTENER: Token = Token(usize::MAX);

/// Runs the floor server: prints `listening on ADDR`, serves until SIGTERM.
pub fn serve(args: &FloorArgs) -> io::Result<()> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&args.addr.into())?;
    socket.listen(65_535)?;
    socket.set_nonblocking(true)?;
    let std_listener: std::net::TcpListener = socket.into();
    let addr = std_listener.local_addr()?;
    let mut listener = TcpListener::from_std(std_listener);
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&stop))?;
    signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&stop))?;
    let mut poll = Poll::new()?;
    poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
    {
        let mut out = io::stdout().lock();
        writeln!(out, "listening on {addr}")?;
        out.flush()?;
    }
    let mut floor = Floor { conns: slab::Slab::new(), last_id: 0, dirty: Vec::new() };
    let mut events = Events::with_capacity(1024);
    while !stop.load(Ordering::Relaxed) {
        match poll.poll(&mut events, Some(Duration::from_millis(100))) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => other?,
        }
        for event in &events {
            if event.token() == LISTENER {
                floor.accept(&listener, &poll)?;
                continue;
            }
            let key = event.token().0;
            if event.is_writable() {
                floor.flush(key, &poll);
            }
            if event.is_readable() || event.is_read_closed() {
                floor.read(key, &poll);
            }
        }
        floor.flush_dirty(&poll);
    }
    Ok(())
}

#[derive(Debug)]
struct Floor {
    conns: slab::Slab<Conn>,
    last_id: u64,
    /// Connections with bytes queued in this round of events, in the
    /// order they were queued (subscribers before the publisher's answer).
    dirty: Vec<usize>,
}

impl Floor {
    fn accept(&mut self, listener: &TcpListener, poll: &Poll) -> io::Result<()> {
        loop {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let entry = self.conns.vacant_entry();
                    poll.registry().register(&mut stream, Token(entry.key()), Interest::READABLE)?;
                    entry.insert(Conn { stream, kind: Kind::Http, input: Vec::new(), pending: Vec::new() });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                // Out of descriptors: the connection waits in the backlog, as in a lab.
                Err(_) => return Ok(()),
            }
        }
    }

    fn close(&mut self, key: usize, poll: &Poll) {
        if let Some(mut conn) = self.conns.try_remove(key) {
            let _ = poll.registry().deregister(&mut conn.stream);
        }
    }

    fn read(&mut self, key: usize, poll: &Poll) {
        let mut chunk = [0u8; 4096];
        loop {
            let Some(conn) = self.conns.get_mut(key) else { return };
            match conn.stream.read(&mut chunk) {
                Ok(0) => return self.close(key, poll),
                // A subscriber's input (a WebSocket pong) is read and dropped.
                Ok(n) if conn.kind != Kind::Http => {
                    let _ = n;
                }
                Ok(n) => {
                    conn.input.extend_from_slice(&chunk[..n]);
                    while self.request(key, poll) {}
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.close(key, poll),
            }
        }
    }

    /// Handles one complete request in `key`'s input, if there is one.
    fn request(&mut self, key: usize, poll: &Poll) -> bool {
        let Some(conn) = self.conns.get_mut(key) else { return false };
        if conn.kind != Kind::Http {
            return false;
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        let head_len = match req.parse(&conn.input) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return false,
            Err(_) => {
                self.close(key, poll);
                return false;
            }
        };
        let header = |name: &str| {
            req.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| String::from_utf8_lossy(h.value).into_owned())
        };
        let body_len: usize = header("content-length").and_then(|v| v.trim().parse().ok()).unwrap_or(0);
        if conn.input.len() < head_len + body_len {
            return false;
        }
        let path = req.path.unwrap_or("/").to_owned();
        let ws_key = header("sec-websocket-key");
        let body: Vec<u8> = conn.input[head_len..head_len + body_len].to_vec();
        conn.input.drain(..head_len + body_len);
        let route = path.split('?').next().unwrap_or("");
        let (kind, answer) = match route {
            "/sse" => (Kind::Sse, b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n".to_vec()),
            "/ws" => {
                let accept = tungstenite::handshake::derive_accept_key(ws_key.unwrap_or_default().trim().as_bytes());
                let head = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
                );
                (Kind::Ws, head.into_bytes())
            }
            "/poll" if path.contains("wait=") => (Kind::LongPoll, Vec::new()),
            "/stats" => (Kind::Http, json_response(&self.stats())),
            "/publish" => {
                self.publish(&body, poll);
                (Kind::Http, json_response(&serde_json::json!({ "id": self.last_id })))
            }
            _ => (Kind::Http, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec()),
        };
        let Some(conn) = self.conns.get_mut(key) else { return false };
        conn.kind = kind;
        self.send(key, &answer, poll);
        kind == Kind::Http
    }

    fn stats(&self) -> serde_json::Value {
        let count = |k: Kind| self.conns.iter().filter(|(_, c)| c.kind == k).count();
        serde_json::json!({ "connections": {
            "sse": count(Kind::Sse), "ws": count(Kind::Ws), "long_poll": count(Kind::LongPoll), "http": count(Kind::Http),
        } })
    }

    // ANCHOR: floor_publish
    /// Frames the message once per transport and writes it to every
    /// subscriber: one `write` each, the same bytes.
    fn publish(&mut self, data: &[u8], poll: &Poll) {
        self.last_id += 1;
        let id = self.last_id;
        let text = String::from_utf8_lossy(data);
        let sse = format!("id: {id}\ndata: {text}\n\n").into_bytes();
        let json = serde_json::json!({ "id": id, "data": text }).to_string();
        let mut ws = vec![0x81];
        match json.len() {
            n if n < 126 => ws.push(n as u8),
            n if n <= 0xffff => {
                ws.push(126);
                ws.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                ws.push(127);
                ws.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        ws.extend_from_slice(json.as_bytes());
        let subscribers: Vec<(usize, Kind)> =
            self.conns.iter().filter(|(_, c)| matches!(c.kind, Kind::Sse | Kind::Ws)).map(|(k, c)| (k, c.kind)).collect();
        for (key, kind) in subscribers {
            self.send(key, if kind == Kind::Sse { &sse } else { &ws }, poll);
        }
    }
    // ANCHOR_END: floor_publish

    /// Queues `bytes` for `key`: written at the end of this round of
    /// events ([`Floor::flush_dirty`]), behind anything already waiting.
    fn send(&mut self, key: usize, bytes: &[u8], _poll: &Poll) {
        let Some(conn) = self.conns.get_mut(key) else { return };
        if bytes.is_empty() {
            return;
        }
        if conn.pending.is_empty() {
            self.dirty.push(key);
        }
        conn.pending.extend_from_slice(bytes);
    }

    /// One `write` per connection of what this round queued; what a socket
    /// does not take waits for it to be writable.
    fn flush_dirty(&mut self, poll: &Poll) {
        for key in std::mem::take(&mut self.dirty) {
            let Some(conn) = self.conns.get_mut(key) else { continue };
            if conn.pending.is_empty() {
                continue;
            }
            match conn.stream.write(&conn.pending) {
                Ok(n) if n == conn.pending.len() => conn.pending.clear(),
                Ok(n) => {
                    conn.pending.drain(..n);
                    let _ = poll.registry().reregister(&mut conn.stream, Token(key), Interest::READABLE | Interest::WRITABLE);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let _ = poll.registry().reregister(&mut conn.stream, Token(key), Interest::READABLE | Interest::WRITABLE);
                }
                Err(_) => self.close(key, poll),
            }
        }
    }

    /// Writes what waited; back to reading only once it is all out.
    fn flush(&mut self, key: usize, poll: &Poll) {
        let Some(conn) = self.conns.get_mut(key) else { return };
        while !conn.pending.is_empty() {
            match conn.stream.write(&conn.pending) {
                Ok(n) => {
                    conn.pending.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => return self.close(key, poll),
            }
        }
        let _ = poll.registry().reregister(&mut conn.stream, Token(key), Interest::READABLE);
    }
}

fn json_response(body: &serde_json::Value) -> Vec<u8> {
    let body = body.to_string();
    format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
}
