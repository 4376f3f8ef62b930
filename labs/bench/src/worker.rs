//! The worker process: holds client connections for a scenario.
//!
//! Client sockets live in worker processes, never in the server's: a process
//! may hold 20,000 descriptors here, and a measurement of the server must not
//! include its clients. Each worker binds its sockets to its own source
//! address in 127.0.0.0/8, so that many workers never run out of ephemeral
//! ports. The orchestrator talks to a worker over its stdin and stdout, one
//! JSON document per line.

use std::collections::HashMap;
use std::io::{self, BufRead, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token, Waker};
use serde::{Deserialize, Serialize};

use crate::client::{self, PushParser, Transport};

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
    /// `{"done":true}` once every connection has them all.
    #[arg(long, default_value_t = 0)]
    pub expect: u64,
}

/// The line a worker prints once its connections are open.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ready {
    /// Connections opened (handshake done for SSE and WebSocket).
    pub opened: usize,
    /// Connections that failed to open.
    pub failed: usize,
    /// The first error, if any.
    pub error: Option<String>,
    /// Seconds it took to open them all.
    pub open_secs: f64,
}

/// What a listening worker reports.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    /// Messages received, all connections together.
    pub received: u64,
    /// Fewest messages any connection received.
    pub min_per_connection: u64,
    /// Most messages any connection received.
    pub max_per_connection: u64,
    /// Messages that did not carry the id right after the previous one on
    /// their connection (lost, duplicated or reordered).
    pub order_errors: u64,
    /// Connections the server closed.
    pub closed_by_server: u64,
    /// Publish-to-receive latency in microseconds, by message sequence
    /// number: one entry per connection that received the message.
    pub latency_us: HashMap<u64, Vec<u32>>,
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
    let start = Instant::now();
    let mut conns = Vec::with_capacity(args.connections);
    let mut leftovers = Vec::new();
    let mut failed = 0;
    let mut error = None;
    for _ in 0..args.connections {
        let opened = client::connect_from(args.source, args.addr, args.rcvbuf).and_then(|mut s| {
            let rest = client::subscribe(&mut s, args.transport, &args.topic)?;
            Ok((s, rest))
        });
        match opened {
            Ok((s, rest)) => {
                conns.push(s);
                leftovers.push(rest);
                if conns.len() % 500 == 0 {
                    say(&serde_json::json!({ "progress": 500 }));
                }
            }
            Err(e) => {
                failed += 1;
                error.get_or_insert_with(|| e.to_string());
                // Out of descriptors or ports: more attempts only fail faster.
                if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::EADDRNOTAVAIL)) {
                    failed += args.connections - conns.len() - failed;
                    break;
                }
            }
        }
    }
    say(&serde_json::json!({ "ready": Ready { opened: conns.len(), failed, error, open_secs: start.elapsed().as_secs_f64() } }));
    if args.listen {
        listen(args, conns, leftovers)
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

struct Subscriber {
    stream: mio::net::TcpStream,
    parser: PushParser,
    last_id: Option<u64>,
    count: u64,
    open: bool,
}

const STDIN: Token = Token(usize::MAX);

fn listen(args: &WorkerArgs, conns: Vec<TcpStream>, leftovers: Vec<Vec<u8>>) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), STDIN)?);
    let report_asked = Arc::new(AtomicBool::new(false));
    {
        let (waker, asked) = (waker.clone(), report_asked.clone());
        std::thread::spawn(move || {
            for line in io::stdin().lock().lines() {
                if line.map_or(true, |l| l.trim() == "report") {
                    break;
                }
            }
            asked.store(true, Ordering::SeqCst);
            let _ = waker.wake();
        });
    }
    let mut subs = Vec::with_capacity(conns.len());
    for (i, s) in conns.into_iter().enumerate() {
        s.set_nonblocking(true)?;
        client::enable_rx_timestamps(&s)?;
        let mut stream = mio::net::TcpStream::from_std(s);
        poll.registry().register(&mut stream, Token(i), Interest::READABLE)?;
        subs.push(Subscriber { stream, parser: PushParser::default(), last_id: None, count: 0, open: true });
    }
    let mut report = Report::default();
    let now_ns = client::realtime_ns();
    for (i, rest) in leftovers.iter().enumerate() {
        if !rest.is_empty() {
            record(args, &mut subs[i], rest, now_ns, &mut report);
        }
    }
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 256 * 1024];
    let mut done_said = false;
    while !report_asked.load(Ordering::SeqCst) {
        poll.poll(&mut events, Some(Duration::from_millis(200)))?;
        for event in &events {
            if event.token() == STDIN {
                continue;
            }
            let sub = &mut subs[event.token().0];
            loop {
                match client::recv_timestamped(&sub.stream, &mut buf) {
                    Ok((0, _)) => {
                        if sub.open {
                            sub.open = false;
                            report.closed_by_server += 1;
                            let _ = poll.registry().deregister(&mut sub.stream);
                        }
                        break;
                    }
                    Ok((n, stamp)) => {
                        let at = stamp.unwrap_or_else(client::realtime_ns);
                        let data = buf[..n].to_vec();
                        record(args, sub, &data, at, &mut report);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => {
                        sub.open = false;
                        report.closed_by_server += 1;
                        break;
                    }
                }
            }
        }
        if args.expect > 0 && !done_said && subs.iter().all(|s| s.count >= args.expect) {
            done_said = true;
            say(&serde_json::json!({ "done": true }));
        }
    }
    report.min_per_connection = subs.iter().map(|s| s.count).min().unwrap_or(0);
    report.max_per_connection = subs.iter().map(|s| s.count).max().unwrap_or(0);
    say(&serde_json::json!({ "report": report }));
    Ok(())
}

fn record(args: &WorkerArgs, sub: &mut Subscriber, data: &[u8], at_ns: u64, report: &mut Report) {
    for msg in sub.parser.feed(args.transport, data) {
        if sub.last_id.is_some_and(|last| msg.id != last + 1) {
            report.order_errors += 1;
        }
        sub.last_id = Some(msg.id);
        sub.count += 1;
        report.received += 1;
        if let Some((seq, sent_ns)) = client::parse_payload(&msg.data) {
            let micros = at_ns.saturating_sub(sent_ns) / 1000;
            report.latency_us.entry(seq).or_default().push(micros.min(u32::MAX as u64) as u32);
        }
    }
}
