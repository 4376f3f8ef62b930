//! The million's client side: a worker process (`rtlab bench-crowd`, started
//! by `rtlab bench million`) that holds up to [`PER_CROWD`] bare sockets and
//! reads only the broadcast.
//!
//! The ordinary bench workers ([`crate::worker`]) parse every message and
//! keep a parser and buffers per connection; a million of those would cost
//! more than the server. A crowd worker keeps, per connection, the socket
//! itself (a 4-byte descriptor) and three one-byte states — where it is in
//! the handshake, how much of the response head's `\r\n\r\n` it has seen,
//! how much of the broadcast's token — plus the time the token arrived (8
//! bytes): 16 bytes a connection, in two flat vectors. One 64 KiB read
//! buffer serves every socket (mio, edge-triggered: a socket is read until
//! it would block, so nothing stays behind in user space).
//!
//! Every socket binds its source address before connecting: worker `w`
//! uses `127.(16 + w / 256).(w % 256).(1..=SOURCES)`, so that no (source,
//! destination) pair needs more than a few hundred of its 64,000 ephemeral
//! ports, whatever is left in TIME_WAIT from the last run.
//!
//! The conversation with the orchestrator is JSON lines on stdout
//! ([`Line`]) and commands on stdin: `report` (say what you have now) and
//! end of file (close every socket and exit).

use std::io::{self, BufRead, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::{FromRawFd, IntoRawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};
use serde::{Deserialize, Serialize};
use socket2::{Domain, Socket, Type};

/// Most sockets one crowd worker holds: below the 20,000 open-files limit per
/// process, with room for its own descriptors.
pub const PER_CROWD: usize = 19_000;

/// Source addresses each worker spreads its sockets over.
pub const SOURCES: usize = 32;

/// Which transport the connections use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Every connection an SSE stream.
    Sse,
    /// Every connection a WebSocket.
    Ws,
    /// Even connections SSE, odd ones WebSocket.
    Mix,
}

impl Kind {
    /// Whether the connection with global index `g` is a WebSocket.
    pub fn is_ws(self, g: usize) -> bool {
        match self {
            Kind::Sse => false,
            Kind::Ws => true,
            Kind::Mix => g % 2 == 1,
        }
    }

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Sse => "sse",
            Kind::Ws => "ws",
            Kind::Mix => "mix",
        }
    }
}

/// Options of one crowd worker.
#[derive(Debug, Clone, clap::Args)]
pub struct CrowdArgs {
    /// The server processes, comma-separated: connection `g` goes to
    /// `servers[g % len]`.
    #[arg(long, value_delimiter = ',', required = true)]
    pub servers: Vec<SocketAddr>,
    /// Global index of this worker's first connection.
    #[arg(long)]
    pub first: usize,
    /// Connections to open (at most [`PER_CROWD`]).
    #[arg(long)]
    pub count: usize,
    /// This worker's number: it picks the source addresses.
    #[arg(long)]
    pub worker: usize,
    /// Transport.
    #[arg(long, value_enum)]
    pub kind: Kind,
    /// The topic.
    #[arg(long)]
    pub topic: String,
    /// The broadcast's token: a connection has the broadcast when these
    /// bytes went past in its stream. Its first byte must not occur again in
    /// it (see [`Matcher`]).
    #[arg(long)]
    pub token: String,
    /// Connects in progress at once (handshakes not yet answered).
    #[arg(long, default_value_t = 256)]
    pub in_flight: usize,
    /// Milliseconds to sleep after a turn that had events, so that the next
    /// turn finds many (see [`run`]); 0: none.
    #[arg(long, default_value_t = 2)]
    pub batch_ms: u64,
}

/// One line a crowd worker prints.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Line {
    /// Opening: connections open so far.
    Progress(usize),
    /// Every connection attempted.
    Ready(Ready),
    /// Every open connection has the broadcast (or `report` was asked).
    Done(Done),
}

/// What a worker says when it has attempted every connection.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Ready {
    /// Connections open (handshake answered 200 or 101).
    pub opened: usize,
    /// Connections that failed to open.
    pub failed: usize,
    /// The first failure's reason.
    pub error: Option<String>,
}

/// What a worker says about the broadcast.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Done {
    /// Connections that received the token.
    pub got: usize,
    /// Connections that were open and closed (or failed) before they had it.
    pub lost: usize,
    /// `CLOCK_MONOTONIC` nanoseconds at which each connection had it
    /// (unsorted), one per connection in `got`.
    pub at_ns: Vec<u64>,
}

/// `CLOCK_MONOTONIC` now, in nanoseconds: one clock for every process on
/// the machine, so a worker's receive time and the orchestrator's publish
/// time can be subtracted.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid clock id and a valid timespec to write.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

// ANCHOR: matcher
/// Finds a token in a byte stream that arrives in pieces, with one byte of
/// state: how many of the token's bytes the stream has just shown.
///
/// Without a backtracking table this is exact only when the token's first
/// byte does not occur again in it (then, on a mismatch, the only place a
/// match can restart is this very byte): the harness's tokens are `!`
/// followed by hex digits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Matcher(pub u8);

impl Matcher {
    /// Feeds `input`; true when the token completes in it.
    pub fn feed(&mut self, token: &[u8], input: &[u8]) -> bool {
        for &b in input {
            let at = self.0 as usize;
            if b == token[at] {
                self.0 += 1;
                if self.0 as usize == token.len() {
                    self.0 = 0;
                    return true;
                }
            } else {
                self.0 = u8::from(b == token[0]);
            }
        }
        false
    }
}
// ANCHOR_END: matcher

/// A token for [`Matcher`]: `!` and 16 hex digits.
pub fn token(nonce: u64) -> String {
    format!("!{nonce:016x}")
}

/// Where a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// `connect` in progress.
    Connecting,
    /// Request sent; nothing read yet.
    Status,
    /// Status line good; reading to the end of the response head.
    Head,
    /// Open and waiting for the broadcast.
    Open,
    /// Has the broadcast.
    Got,
    /// Failed or closed.
    Dead,
}

// ANCHOR: crowd_conn
/// One connection: the socket and three bytes of state (16 bytes with the
/// arrival time kept beside it in its own vector).
#[derive(Debug)]
struct Conn {
    stream: Option<TcpStream>,
    phase: Phase,
    /// Bytes of `\r\n\r\n` matched at the end of what was read.
    head: Matcher,
    /// Bytes of the token matched.
    token: Matcher,
}
// ANCHOR_END: crowd_conn

const WAKE: Token = Token(usize::MAX);

/// Source address of connection `j` of worker `worker`.
pub fn source(worker: usize, j: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 16 + (worker / 256) as u8, (worker % 256) as u8, 1 + (j % SOURCES) as u8))
}

/// A non-blocking connect from `source` to `addr`, the port chosen at
/// connect (`IP_BIND_ADDRESS_NO_PORT`, see [`crate::client::connect_from`]).
fn start_connect(source: IpAddr, addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    crate::client::bind_source(&socket, source)?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    // SAFETY: the descriptor is a connected (or connecting) TCP socket we own.
    Ok(unsafe { TcpStream::from_raw_fd(socket.into_raw_fd()) })
}

fn request(ws: bool, topic: &str) -> Vec<u8> {
    let transport = if ws { crate::client::Transport::Ws } else { crate::client::Transport::Sse };
    crate::client::subscribe_request(transport, topic).into_bytes()
}

fn say(line: &Line) -> io::Result<()> {
    let mut out = io::stdout().lock();
    serde_json::to_writer(&mut out, line).map_err(io::Error::other)?;
    out.write_all(b"\n")?;
    out.flush()
}

/// The worker: opens its connections, says it is ready, waits for the
/// broadcast on every one, reports, and exits at the end of stdin.
pub fn run(args: &CrowdArgs) -> io::Result<()> {
    if args.count > PER_CROWD {
        return Err(io::Error::other(format!("at most {PER_CROWD} connections per crowd worker")));
    }
    let token = args.token.as_bytes();
    if token.is_empty() || token.len() > 64 || token[1..].contains(&token[0]) {
        return Err(io::Error::other("the token's first byte must not occur again in it (1 to 64 bytes)"));
    }
    let mut poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
    // stdin: `report` sets `report`, end of file sets `quit`; both wake the loop.
    let report = Arc::new(AtomicBool::new(false));
    let quit = Arc::new(AtomicBool::new(false));
    {
        let (waker, report, quit) = (waker.clone(), report.clone(), quit.clone());
        std::thread::Builder::new().name("stdin".into()).stack_size(64 * 1024).spawn(move || {
            for line in io::stdin().lock().lines() {
                match line.as_deref() {
                    Ok("report") => report.store(true, Ordering::SeqCst),
                    Ok(_) => {}
                    Err(_) => break,
                }
                let _ = waker.wake();
            }
            quit.store(true, Ordering::SeqCst);
            let _ = waker.wake();
        })?;
    }

    let requests = [request(false, &args.topic), request(true, &args.topic)];
    let mut conns: Vec<Conn> = Vec::with_capacity(args.count);
    let mut at_ns: Vec<u64> = vec![0; args.count];
    let mut events = Events::with_capacity(4096);
    let mut buf = vec![0u8; 64 * 1024];
    let (mut ready, mut got, mut lost) = (Ready::default(), 0usize, 0usize);
    let mut in_flight = 0usize;
    let mut ready_said = false;
    let mut done_said = false;
    let mut last_progress = Instant::now();

    loop {
        // Start connects while there is room.
        while conns.len() < args.count && in_flight < args.in_flight {
            let j = conns.len();
            let g = args.first + j;
            let addr = args.servers[g % args.servers.len()];
            match start_connect(source(args.worker, j), addr) {
                Ok(mut stream) => {
                    poll.registry().register(&mut stream, Token(j), Interest::READABLE | Interest::WRITABLE)?;
                    conns.push(Conn { stream: Some(stream), phase: Phase::Connecting, head: Matcher(0), token: Matcher(0) });
                    in_flight += 1;
                }
                Err(e) => {
                    conns.push(Conn { stream: None, phase: Phase::Dead, head: Matcher(0), token: Matcher(0) });
                    ready.failed += 1;
                    ready.error.get_or_insert_with(|| format!("connect to {addr}: {e}"));
                }
            }
        }
        if !ready_said && conns.len() == args.count && in_flight == 0 {
            say(&Line::Ready(ready.clone()))?;
            ready_said = true;
        } else if !ready_said && last_progress.elapsed() > Duration::from_millis(250) {
            say(&Line::Progress(ready.opened))?;
            last_progress = Instant::now();
        }
        if ready_said && !done_said && (got + lost == ready.opened || report.load(Ordering::SeqCst)) {
            let at: Vec<u64> = at_ns.iter().copied().filter(|&t| t != 0).collect();
            say(&Line::Done(Done { got, lost, at_ns: at }))?;
            done_said = true;
        }
        if quit.load(Ordering::SeqCst) {
            // Dropping the vector closes every socket.
            return Ok(());
        }

        // Batching: a process asleep in epoll_wait is woken by every
        // segment that arrives, and on two cores each wake-up preempts the
        // server that is writing the broadcast — one context switch per
        // delivery. Sleeping a moment after a busy turn lets the segments
        // pile up in the ready list, and the server writes on without
        // waking anyone. The arrival times taken here are later by at most
        // that moment.
        if args.batch_ms > 0 && !events.is_empty() {
            std::thread::sleep(Duration::from_millis(args.batch_ms));
        }
        poll.poll(&mut events, Some(Duration::from_millis(250)))?;
        for event in events.iter() {
            if event.token() == WAKE {
                continue;
            }
            let j = event.token().0;
            let g = args.first + j;
            let conn = &mut conns[j];
            let Some(stream) = conn.stream.as_mut() else { continue };
            let before = conn.phase;
            let mut failure: Option<String> = None;
            if conn.phase == Phase::Connecting && (event.is_writable() || event.is_error()) {
                match stream.take_error() {
                    Ok(None) if event.is_writable() => {
                        let req = &requests[usize::from(args.kind.is_ws(g))];
                        match stream.write(req) {
                            Ok(n) if n == req.len() => conn.phase = Phase::Status,
                            Ok(_) => failure = Some("the request did not fit the send buffer".into()),
                            Err(e) => failure = Some(format!("send: {e}")),
                        }
                    }
                    Ok(Some(e)) | Err(e) => failure = Some(format!("connect: {e}")),
                    Ok(None) => {}
                }
            }
            if failure.is_none() && conn.phase != Phase::Connecting && event.is_readable() {
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) => {
                            failure = Some("closed by the server".into());
                            break;
                        }
                        Ok(n) => {
                            let mut input = &buf[..n];
                            if conn.phase == Phase::Status {
                                if !(input.starts_with(b"HTTP/1.1 200") || input.starts_with(b"HTTP/1.1 101")) {
                                    let head = String::from_utf8_lossy(&input[..input.len().min(40)]).into_owned();
                                    failure = Some(format!("refused: {head:?}"));
                                    break;
                                }
                                conn.phase = Phase::Head;
                            }
                            if conn.phase == Phase::Head {
                                // Where the head ends in this piece, if it does.
                                let end = (1..=input.len()).find(|&k| conn.head.feed(b"\r\n\r\n", &input[k - 1..k]));
                                match end {
                                    Some(k) => {
                                        conn.phase = Phase::Open;
                                        input = &input[k..];
                                    }
                                    None => continue,
                                }
                            }
                            if conn.phase == Phase::Open && conn.token.feed(token, input) {
                                conn.phase = Phase::Got;
                                at_ns[j] = monotonic_ns();
                                got += 1;
                            }
                            // A short read emptied the socket, and a
                            // connection that has the broadcast needs nothing
                            // more: either way, no second read that would
                            // only say "would block" (half the reads of a
                            // broadcast). Edge-triggered readiness reports
                            // the next bytes that arrive.
                            if n < buf.len() || conn.phase == Phase::Got {
                                break;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            failure = Some(format!("read: {e}"));
                            break;
                        }
                    }
                }
            }
            let now_open = matches!(conn.phase, Phase::Open | Phase::Got);
            let was_open = matches!(before, Phase::Open | Phase::Got);
            if now_open && !was_open {
                in_flight -= 1;
                ready.opened += 1;
            }
            if let Some(why) = failure {
                if let Some(mut s) = conn.stream.take() {
                    let _ = poll.registry().deregister(&mut s);
                }
                match conn.phase {
                    Phase::Open | Phase::Got => {
                        // A connection lost after it opened (counted once:
                        // a `Got` one already has its message).
                        if conn.phase == Phase::Open {
                            lost += 1;
                        }
                    }
                    _ => {
                        in_flight -= 1;
                        ready.failed += 1;
                        ready.error.get_or_insert_with(|| format!("connection {g}: {why}"));
                    }
                }
                conn.phase = Phase::Dead;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_token_split_anywhere() {
        let t = token(0xfeed_beef);
        let stream = format!("id: 1\ndata: xx!!{t}yy\n\n");
        for cut in 0..stream.len() {
            let mut m = Matcher::default();
            let (a, b) = stream.as_bytes().split_at(cut);
            assert!(m.feed(t.as_bytes(), a) || m.feed(t.as_bytes(), b), "cut at {cut}");
        }
        let mut m = Matcher::default();
        assert!(!m.feed(t.as_bytes(), b"data: !00000000feedbee"));
        assert!(!m.feed(t.as_bytes(), &t.as_bytes()[..5]));
    }

    #[test]
    fn sources_differ_per_worker_and_stay_in_loopback() {
        assert_ne!(source(0, 0), source(1, 0));
        assert_ne!(source(0, 0), source(0, 1));
        assert_eq!(source(0, 0), source(0, SOURCES));
        assert!(source(300, 31).is_loopback());
        assert!(Kind::Mix.is_ws(1) && !Kind::Mix.is_ws(2) && Kind::Ws.is_ws(0) && !Kind::Sse.is_ws(1));
    }
}
