//! The worker process: holds client connections for a scenario.
//!
//! Client sockets live in worker processes, never in the server's: a process
//! may hold 20,000 descriptors here, and a measurement of the server must not
//! include its clients. Each worker binds its sockets to its own source
//! address in 127.0.0.0/8, so that many workers never run out of ephemeral
//! ports. The orchestrator talks to a worker over its stdin and stdout, one
//! JSON document (or one command word) per line.
//!
//! A worker opens its connections one after the other, says `{"ready":...}`,
//! and then does one of three things:
//!
//! * **hold** (the idle scenario): nothing, until stdin says `close`;
//! * **listen**: reads every message with the kernel's receive timestamp,
//!   answers WebSocket pings, asks the next poll as soon as one is answered
//!   (long polling) or when its period comes round (short polling), and
//!   checks that every connection gets every id once and in order;
//! * **stall** (`--stall`): never reads — a consumer that stopped — until it
//!   is asked for its report, then drains what the server still sends and
//!   reports what each connection got, missed or lost.
//!
//! Commands on stdin: `mark` (zero the request and byte counters: the
//! measured window starts), `report` (stop and print the report), `close`
//! (hold mode: close every connection).

use std::collections::HashMap;
use std::io::{self, BufRead, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token, Waker};
use serde::{Deserialize, Serialize};

use crate::client::{self, PollParser, PushParser, Signal, Transport};
use crate::headers::BrowserHeaders;

/// What a worker does once its connections are open.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    /// The server.
    #[arg(long)]
    pub addr: SocketAddr,
    /// Which transport to open.
    #[arg(long, value_enum)]
    pub transport: Transport,
    /// Topic to subscribe to.
    #[arg(long, default_value = "bench")]
    pub topic: String,
    /// Connections to open.
    #[arg(long)]
    pub connections: usize,
    /// Source address for this worker's sockets.
    #[arg(long, default_value = "127.0.0.1")]
    pub source: IpAddr,
    /// SO_RCVBUF for the client sockets (a small one makes a stalled reader
    /// stall sooner).
    #[arg(long)]
    pub rcvbuf: Option<usize>,
    /// Read pushed messages and record their latency, until told to report.
    #[arg(long)]
    pub listen: bool,
    /// With --listen: messages each connection should get; the worker says
    /// `{"done":true}` once every connection has them all. With --stall: the
    /// messages published, to account for each connection's.
    #[arg(long, default_value_t = 0)]
    pub expect: u64,
    /// Never read until asked for the report (a stalled consumer), then drain.
    #[arg(long, conflicts_with = "listen")]
    pub stall: bool,
    /// Short polling: milliseconds between a client's polls.
    #[arg(long, default_value_t = 1000)]
    pub poll_every_ms: u64,
    /// Stop opening at the first connection that fails (finding how many the
    /// server can hold) instead of trying every one.
    #[arg(long)]
    pub stop_at_failure: bool,
    /// Milliseconds an SSE or WebSocket handshake may take.
    #[arg(long, default_value_t = 10_000)]
    pub handshake_timeout_ms: u64,
    /// Send a browser's header lines (a capture by
    /// `scripts/interop/headers.mjs`) on every poll and handshake.
    #[arg(long)]
    pub browser_headers: Option<std::path::PathBuf>,
}

/// The line a worker prints once its connections are open.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ready {
    /// Connections opened (handshake done for SSE and WebSocket).
    pub opened: usize,
    /// Connections that failed to open (or were not tried after a failure
    /// with `--stop-at-failure`).
    pub failed: usize,
    /// The first error, if any.
    pub error: Option<String>,
    /// Seconds from the first connection attempt to the last successful one.
    pub open_secs: f64,
    /// The first failure was the clients' own (out of descriptors, ports or
    /// buffers), not the server's: the count says nothing about the server.
    #[serde(default)]
    pub client_limit: bool,
}

/// What became of one stalled connection (`--stall`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct StallOutcome {
    /// Messages it received once it drained.
    pub received: u64,
    /// Messages the server told it it missed.
    pub missed: u64,
    /// The server closed it.
    pub closed: bool,
}

/// What a listening (or stalled) worker reports.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    /// Messages received, all connections together.
    pub received: u64,
    /// Fewest messages any connection received.
    pub min_per_connection: u64,
    /// Most messages any connection received.
    pub max_per_connection: u64,
    /// Messages that did not carry the id right after the previous one on
    /// their connection (lost, duplicated or reordered), not counting gaps
    /// the server announced with a `missed` signal. The first id must be 1.
    pub order_errors: u64,
    /// Messages the server announced as missed (`missed` signals).
    pub missed: u64,
    /// Connections the server closed.
    pub closed_by_server: u64,
    /// HTTP requests sent since `mark` (polls; a subscription is one request).
    pub requests: u64,
    /// Bytes written since `mark`: requests, pongs.
    pub bytes_sent: u64,
    /// Bytes read since `mark`: response heads, bodies, events, frames.
    pub bytes_received: u64,
    /// Bytes written and read before `mark`: handshakes and empty polls.
    pub setup_bytes: u64,
    /// Bytes the browser's header lines added to the requests written since
    /// `mark`, over what the minimal heads would have been (0 without
    /// `--browser-headers`): the same run's bytes with minimal heads are
    /// `bytes_sent - extra_head_bytes` (the server's answers do not depend
    /// on these headers).
    #[serde(default)]
    pub extra_head_bytes: i64,
    /// The same, for the bytes before `mark` (`setup_bytes`).
    #[serde(default)]
    pub extra_setup_bytes: i64,
    /// Publish-to-receive latency of every (connection, message) pair, µs.
    pub latency: crate::Latency,
    /// The slowest of this worker's connections for each message, µs, by
    /// sequence number (the orchestrator takes the largest over workers:
    /// the last subscriber's latency).
    pub slowest_us: HashMap<u64, u64>,
    /// `--stall` only: each connection's outcome.
    pub stalled: Vec<StallOutcome>,
}

impl Report {
    /// Percentiles of every latency in `reports`, all connections and
    /// messages together, µs.
    pub fn all_latencies(reports: &[Report]) -> crate::Percentiles {
        Report::merged(reports).percentiles()
    }

    /// Every latency in `reports` in one histogram.
    pub fn merged(reports: &[Report]) -> crate::Latency {
        let mut all = crate::Latency::new();
        reports.iter().for_each(|r| all.merge(&r.latency));
        all
    }
}

fn say(line: &impl Serialize) {
    let mut out = io::stdout().lock();
    let _ = serde_json::to_writer(&mut out, line);
    let _ = writeln!(out);
    let _ = out.flush();
}

/// Runs a worker; returns when the orchestrator closes stdin or asks for
/// the report.
pub fn run(args: &WorkerArgs) -> io::Result<()> {
    crate::raise_nofile_limit();
    let start = Instant::now();
    let timeout = Duration::from_millis(args.handshake_timeout_ms.max(1));
    let mut conns = Vec::with_capacity(args.connections);
    let mut failed = 0;
    let mut error = None;
    let mut open_secs = 0.0;
    let mut client_limit = false;
    let browser = args.browser_headers.as_deref().map(BrowserHeaders::read).transpose()?;
    for _ in 0..args.connections {
        let opened = client::connect_from(args.source, args.addr, args.rcvbuf).and_then(|mut s| {
            let sub = client::subscribe_with(&mut s, args.transport, &args.topic, timeout, browser.as_ref())?;
            Ok((s, sub))
        });
        match opened {
            Ok(conn) => {
                conns.push(conn);
                open_secs = start.elapsed().as_secs_f64();
                if conns.len() % 500 == 0 {
                    say(&serde_json::json!({ "progress": 500 }));
                }
            }
            Err(e) => {
                failed += 1;
                if error.is_none() {
                    error = Some(e.to_string());
                    client_limit = matches!(
                        e.raw_os_error(),
                        Some(libc::EMFILE | libc::ENFILE | libc::EADDRINUSE | libc::EADDRNOTAVAIL | libc::ENOBUFS | libc::ENOMEM)
                    );
                }
                // Out of descriptors or ports, or the server's limit found:
                // more attempts only fail (slower).
                let exhausted = matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::EADDRNOTAVAIL));
                if exhausted || args.stop_at_failure {
                    failed = args.connections - conns.len();
                    break;
                }
            }
        }
    }
    say(&serde_json::json!({ "ready": Ready { opened: conns.len(), failed, error, open_secs, client_limit } }));
    if args.listen || args.stall {
        listen(args, browser.as_ref(), conns)
    } else {
        // Hold the connections until stdin closes or says "close".
        for line in io::stdin().lock().lines() {
            if line.map_or(true, |l| l.trim() == "close") {
                break;
            }
        }
        drop(conns);
        say(&serde_json::json!({ "closed": true }));
        Ok(())
    }
}

/// One client connection of a listening or stalled worker.
struct Conn {
    stream: mio::net::TcpStream,
    push: PushParser,
    polls: PollParser,
    /// The last id seen (or announced missed); the next must be this + 1.
    last_id: u64,
    count: u64,
    missed: u64,
    open: bool,
    done: bool,
    /// A poll has been sent and not answered yet.
    in_flight: bool,
    /// Short polling: when the next poll is due.
    due: Option<Instant>,
    /// Bytes not yet accepted by the socket.
    out: Vec<u8>,
}

const CONTROL: Token = Token(usize::MAX);

/// Flags the stdin thread raises for the event loop.
#[derive(Default)]
struct Control {
    mark: AtomicBool,
    report: AtomicBool,
}

fn listen(args: &WorkerArgs, browser: Option<&BrowserHeaders>, conns: Vec<(TcpStream, client::Subscribed)>) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), CONTROL)?);
    let control = Arc::new(Control::default());
    {
        let (waker, control) = (waker.clone(), control.clone());
        std::thread::spawn(move || {
            for line in io::stdin().lock().lines() {
                match line.as_deref().map(str::trim) {
                    Ok("mark") => control.mark.store(true, Ordering::SeqCst),
                    Ok("report") | Err(_) => break,
                    Ok(_) => continue,
                }
                let _ = waker.wake();
            }
            control.report.store(true, Ordering::SeqCst);
            let _ = waker.wake();
        });
    }
    let mut report = Report::default();
    let mut subs = Vec::with_capacity(conns.len());
    let mut leftovers = Vec::with_capacity(conns.len());
    let every = Duration::from_millis(args.poll_every_ms.max(1));
    let n = conns.len().max(1) as u32;
    let begin = Instant::now();
    for (i, (s, sub)) in conns.into_iter().enumerate() {
        s.set_nonblocking(true)?;
        client::enable_rx_timestamps(&s)?;
        report.setup_bytes += (sub.sent + sub.received) as u64;
        if sub.sent > 0 {
            report.extra_setup_bytes += sub.sent as i64 - client::subscribe_request(args.transport, &args.topic).len() as i64;
        }
        report.requests += u64::from(sub.sent > 0 && !args.transport.is_push());
        // Short polls are spread evenly over the period, not all at once.
        let due = (args.transport == Transport::ShortPoll).then(|| begin + every * (i as u32) / n);
        subs.push(Conn {
            stream: mio::net::TcpStream::from_std(s),
            push: PushParser::default(),
            polls: PollParser::default(),
            last_id: 0,
            count: 0,
            missed: 0,
            open: true,
            done: false,
            in_flight: args.transport == Transport::LongPoll,
            due,
            out: Vec::new(),
        });
        leftovers.push(sub.rest);
    }
    // A stalled worker registers nothing (so reads nothing) until the report.
    let mut draining = None;
    if !args.stall {
        register_all(&poll, &mut subs)?;
        let now_ns = client::realtime_ns();
        for (i, rest) in leftovers.iter().enumerate() {
            on_input(args, browser, &mut subs[i], rest, now_ns, &mut report);
        }
    }
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 256 * 1024];
    let mut done_count = 0;
    let mut done_said = false;
    let mut last_input = Instant::now();
    loop {
        let now = Instant::now();
        let short_poll = args.transport == Transport::ShortPoll;
        let next_due =
            if short_poll { subs.iter().filter(|c| c.open && !c.in_flight).filter_map(|c| c.due).min() } else { None };
        let wait = next_due.map_or(Duration::from_millis(200), |d| d.saturating_duration_since(now).min(Duration::from_millis(200)));
        poll.poll(&mut events, Some(wait))?;
        if control.mark.swap(false, Ordering::SeqCst) {
            report.setup_bytes += report.bytes_sent + report.bytes_received;
            report.extra_setup_bytes += report.extra_head_bytes;
            (report.requests, report.bytes_sent, report.bytes_received, report.extra_head_bytes) = (0, 0, 0, 0);
            say(&serde_json::json!({ "marked": true }));
        }
        if control.report.load(Ordering::SeqCst) {
            match draining {
                None if args.stall => {
                    register_all(&poll, &mut subs)?;
                    let now_ns = client::realtime_ns();
                    for (i, rest) in leftovers.iter().enumerate() {
                        on_input(args, browser, &mut subs[i], rest, now_ns, &mut report);
                    }
                    draining = Some(Instant::now());
                    last_input = Instant::now();
                }
                None => break,
                Some(since) => {
                    // Drained: every connection closed or has every message
                    // accounted for, or nothing came for a while, or too long.
                    let settled = subs.iter().all(|c| !c.open || (args.expect > 0 && c.count + c.missed >= args.expect));
                    let quiet = last_input.elapsed() > Duration::from_millis(1000);
                    if settled || quiet || since.elapsed() > Duration::from_secs(60) {
                        break;
                    }
                }
            }
        }
        for event in &events {
            if event.token() == CONTROL {
                continue;
            }
            let sub = &mut subs[event.token().0];
            flush(sub, &mut report);
            loop {
                match client::recv_timestamped(&sub.stream, &mut buf) {
                    Ok((0, _)) => {
                        close(&poll, sub, &mut report);
                        break;
                    }
                    Ok((n, stamp)) => {
                        last_input = Instant::now();
                        report.bytes_received += n as u64;
                        let at = stamp.unwrap_or_else(client::realtime_ns);
                        on_input(args, browser, sub, &buf[..n], at, &mut report);
                        if !sub.open {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => {
                        close(&poll, sub, &mut report);
                        break;
                    }
                }
            }
            // Done: every message received or announced missed, or the
            // connection closed (it will get no more); verification judges.
            if !sub.done && args.expect > 0 && (sub.count + sub.missed >= args.expect || !sub.open) {
                sub.done = true;
                done_count += 1;
            }
        }
        // Short polls whose time has come.
        if short_poll {
            let now = Instant::now();
            for sub in subs.iter_mut().filter(|c| c.open && !c.in_flight && c.due.is_some_and(|d| d <= now)) {
                send_poll(args, browser, sub, &mut report);
                sub.due = sub.due.map(|d| (d + every).max(now));
            }
        }
        if args.listen && args.expect > 0 && !done_said && done_count == subs.len() {
            done_said = true;
            say(&serde_json::json!({ "done": true }));
        }
    }
    report.min_per_connection = subs.iter().map(|s| s.count).min().unwrap_or(0);
    report.max_per_connection = subs.iter().map(|s| s.count).max().unwrap_or(0);
    if args.stall {
        report.stalled =
            subs.iter().map(|s| StallOutcome { received: s.count, missed: s.missed, closed: !s.open }).collect();
    }
    say(&serde_json::json!({ "report": report }));
    Ok(())
}

fn register_all(poll: &Poll, subs: &mut [Conn]) -> io::Result<()> {
    for (i, sub) in subs.iter_mut().enumerate() {
        poll.registry().register(&mut sub.stream, Token(i), Interest::READABLE | Interest::WRITABLE)?;
    }
    Ok(())
}

fn close(poll: &Poll, sub: &mut Conn, report: &mut Report) {
    if sub.open {
        sub.open = false;
        report.closed_by_server += 1;
        let _ = poll.registry().deregister(&mut sub.stream);
    }
}

/// Queues `bytes` and writes what the socket takes now.
fn send(sub: &mut Conn, bytes: &[u8], report: &mut Report) {
    sub.out.extend_from_slice(bytes);
    flush(sub, report);
}

fn flush(sub: &mut Conn, report: &mut Report) {
    while !sub.out.is_empty() && sub.open {
        match (&sub.stream).write(&sub.out) {
            Ok(n) => {
                report.bytes_sent += n as u64;
                sub.out.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
}

fn send_poll(args: &WorkerArgs, browser: Option<&BrowserHeaders>, sub: &mut Conn, report: &mut Report) {
    let long = args.transport == Transport::LongPoll;
    let request = client::poll_request_with(&args.topic, sub.last_id, long, browser);
    if browser.is_some() {
        report.extra_head_bytes += request.len() as i64 - client::poll_request(&args.topic, sub.last_id, long).len() as i64;
    }
    sub.in_flight = true;
    report.requests += 1;
    send(sub, request.as_bytes(), report);
}

// ANCHOR: verify_order
/// Handles bytes received on one connection: messages are checked for order
/// (each id must be the previous one + 1, starting at 1, unless the server
/// announced the gap), counted, and timed against the publisher's clock.
fn on_input(args: &WorkerArgs, browser: Option<&BrowserHeaders>, sub: &mut Conn, data: &[u8], at_ns: u64, report: &mut Report) {
    if data.is_empty() {
        return;
    }
    let mut signals = Vec::new();
    if args.transport.is_push() {
        signals = sub.push.feed_signals(args.transport, data);
    } else {
        for answer in sub.polls.feed(data) {
            sub.in_flight = false;
            if answer.status != 200 || answer.close {
                sub.open = false;
                report.closed_by_server += 1;
            }
            signals.extend(answer.signals);
        }
    }
    for signal in signals {
        match signal {
            Signal::Message(msg) => {
                if msg.id != sub.last_id + 1 {
                    report.order_errors += 1;
                }
                sub.last_id = msg.id;
                sub.count += 1;
                report.received += 1;
                if let (false, Some((seq, sent_ns))) = (args.stall, client::parse_payload(&msg.data)) {
                    let micros = at_ns.saturating_sub(sent_ns) / 1000;
                    report.latency.record(micros);
                    let slowest = report.slowest_us.entry(seq).or_default();
                    *slowest = (*slowest).max(micros);
                }
            }
            Signal::Missed { from, to } => {
                if from != sub.last_id + 1 {
                    report.order_errors += 1;
                }
                let missed = to.saturating_sub(from) + 1;
                sub.missed += missed;
                report.missed += missed;
                sub.last_id = sub.last_id.max(to);
            }
            // One server that keeps running never resets a stream: a reset
            // here means the run lost its stream, which fails it.
            Signal::Reset { .. } => report.order_errors += 1,
            Signal::Ping(payload) => send(sub, &client::pong_frame(&payload), report),
            Signal::Close => {
                if sub.open {
                    sub.open = false;
                    report.closed_by_server += 1;
                }
            }
        }
    }
    // A long poll is asked again as soon as it is answered.
    if args.transport == Transport::LongPoll && sub.open && !sub.in_flight && !args.stall {
        send_poll(args, browser, sub, report);
    }
}
// ANCHOR_END: verify_order
