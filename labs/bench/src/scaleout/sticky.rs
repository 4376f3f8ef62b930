//! Sticky sessions: clients behind a round-robin "balancer" — each new
//! request (a long poll) or reconnection (an SSE resume with
//! `Last-Event-ID`) goes to the next of three processes — against sticky
//! ones that always go back to the same process.
//!
//! Two set-ups of three processes:
//!
//! * **none**: no shared broker; the publisher sends every message to every
//!   process (the only way all their subscribers can see it), so each
//!   process holds every message, under ids of its own epoch;
//! * **redis**: the Redis broker; the publisher sends each message to one
//!   process, the next each time (the balancer's way).
//!
//! Each client counts, by the messages' data (`sSEQ`), what it lost,
//! received twice and how often it was told its stream was reset.

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::start_cluster;
use crate::axes::Transport;
use crate::client::{PollParser, Publisher, PushParser, Signal};
use rtlab_testkit::RedisServer;

const PROCESSES: usize = 3;

/// One client's count.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StickyClient {
    pub runtime: String,
    /// `none` or `redis`.
    pub broker: String,
    /// `long-poll` or `sse`.
    pub transport: String,
    /// `sticky` (always process 0) or `round-robin` (the next process at every hop).
    pub routing: String,
    /// Requests (polls) or connections (SSE) made.
    pub hops: u64,
    /// Hops that went to another process than the previous one.
    pub switches: u64,
    pub published: u64,
    pub received: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub resets: u64,
    pub missed_signals: u64,
}

/// A client's cursor: the epoch and id it resumes after (`E-N`, or a bare
/// `N` before it knows the epoch).
#[derive(Debug, Default)]
struct Cursor {
    epoch: Option<String>,
    id: u64,
}

impl Cursor {
    fn text(&self) -> String {
        self.epoch.as_ref().map_or(self.id.to_string(), |e| format!("{e}-{}", self.id))
    }
}

/// What a client has seen.
#[derive(Debug, Default)]
struct Seen {
    cursor: Cursor,
    data: Vec<String>,
    resets: u64,
    missed: u64,
}

impl Seen {
    fn take(&mut self, signal: Signal) {
        match signal {
            Signal::Message(m) => {
                self.cursor.id = m.id;
                if m.epoch.is_some() {
                    self.cursor.epoch = m.epoch;
                }
                self.data.push(m.data);
            }
            Signal::Reset { epoch } => {
                self.resets += 1;
                self.cursor = Cursor { epoch: Some(epoch), id: 0 };
            }
            Signal::Missed { to, .. } => {
                self.missed += 1;
                self.cursor.id = self.cursor.id.max(to);
            }
            _ => {}
        }
    }

    fn unique(&self) -> usize {
        self.data.iter().collect::<HashSet<_>>().len()
    }
}

// ANCHOR: hop
/// One hop: a long poll, or an SSE connection that resumes with
/// `Last-Event-ID` and is closed once it has delivered something (or after
/// a second of nothing), as a client whose connection the balancer moves.
fn hop(addr: SocketAddr, transport: Transport, topic: &str, seen: &mut Seen) -> io::Result<()> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_millis(100)))?;
    let cursor = seen.cursor.text();
    let request = match transport {
        Transport::Sse => format!("GET /sse?topic={topic} HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\nLast-Event-ID: {cursor}\r\n\r\n"),
        _ => format!("GET /poll?topic={topic}&after={cursor}&wait=1 HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"),
    };
    s.write_all(request.as_bytes())?;
    let (mut polls, mut push) = (PollParser::default(), PushParser::default());
    let mut head_done = transport != Transport::Sse;
    let mut pending = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let end = Instant::now() + Duration::from_secs(2);
    let mut got_any = false;
    while Instant::now() < end {
        let n = match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => continue,
            Err(e) => return Err(e),
        };
        if transport == Transport::Sse {
            pending.extend_from_slice(&buf[..n]);
            if !head_done {
                let Some(at) = pending.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
                pending.drain(..at + 4);
                head_done = true;
            }
            for signal in push.feed_signals(Transport::Sse, &pending) {
                got_any |= matches!(signal, Signal::Message(_));
                seen.take(signal);
            }
            pending.clear();
            if got_any {
                // What the stream had to replay came with this read: the
                // balancer moves the client now.
                break;
            }
        } else if let Some(answer) = polls.feed(&buf[..n]).pop() {
            if let Some(e) = answer.epoch.clone() {
                seen.cursor.epoch = Some(e);
            }
            for signal in answer.signals {
                seen.take(signal);
            }
            break;
        }
    }
    Ok(())
}
// ANCHOR_END: hop

/// Both set-ups, every client kind at once in each.
pub fn run(args: &super::ScaleoutArgs) -> io::Result<Vec<StickyClient>> {
    let redis = RedisServer::start()?;
    let rt = args.sticky_runtime.as_str();
    let mut out = Vec::new();
    for broker in [None, Some(&redis)] {
        let cluster = start_cluster(rt, PROCESSES, broker)?;
        let addrs = cluster.addrs();
        let topic = "sticky";
        let done = Arc::new(AtomicBool::new(false));
        let k = args.sticky_messages;
        let clients: Vec<_> = [Transport::LongPoll, Transport::Sse]
            .into_iter()
            .flat_map(|t| [(t, false), (t, true)])
            .map(|(transport, round_robin)| {
                let (addrs, done) = (addrs.clone(), done.clone());
                std::thread::spawn(move || {
                    let mut seen = Seen::default();
                    let (mut hops, mut switches, mut finished) = (0u64, 0u64, None::<Instant>);
                    loop {
                        if done.load(Ordering::Relaxed) {
                            let since = *finished.get_or_insert_with(Instant::now);
                            if seen.unique() as u64 >= k || since.elapsed() > Duration::from_secs(3) {
                                break;
                            }
                        }
                        let target = if round_robin { hops as usize % PROCESSES } else { 0 };
                        switches += u64::from(round_robin && hops > 0);
                        hops += 1;
                        if hop(addrs[target], transport, topic, &mut seen).is_err() {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    }
                    (transport, round_robin, hops, switches, seen)
                })
            })
            .collect();
        let mut publishers = addrs.iter().map(|&a| Publisher::connect(a, topic)).collect::<io::Result<Vec<_>>>()?;
        let interval = Duration::from_secs_f64(1.0 / args.sticky_rate.max(1) as f64);
        let begin = Instant::now();
        for seq in 0..k {
            std::thread::sleep((begin + interval * seq as u32).saturating_duration_since(Instant::now()));
            let data = format!("s{seq}");
            if broker.is_some() {
                publishers[seq as usize % PROCESSES].publish(data.as_bytes())?;
            } else {
                for p in &mut publishers {
                    p.publish(data.as_bytes())?;
                }
            }
        }
        done.store(true, Ordering::Relaxed);
        for c in clients {
            let (transport, round_robin, hops, switches, seen) = c.join().map_err(|_| io::Error::other("a client thread panicked"))?;
            let unique = seen.unique() as u64;
            let client = StickyClient {
                runtime: rt.to_owned(),
                broker: if broker.is_some() { "redis" } else { "none" }.to_owned(),
                transport: transport.name().to_owned(),
                routing: if round_robin { "round-robin" } else { "sticky" }.to_owned(),
                hops,
                switches,
                published: k,
                received: seen.data.len() as u64,
                lost: k.saturating_sub(unique),
                duplicated: seen.data.len() as u64 - unique,
                resets: seen.resets,
                missed_signals: seen.missed,
            };
            crate::say(&format!(
                "sticky {:>5} {:>9} {:>11}: {} hops, {} received, {} lost, {} duplicated, {} resets",
                client.broker, client.transport, client.routing, client.hops, client.received, client.lost, client.duplicated, client.resets
            ));
            out.push(client);
        }
        cluster.stop(Duration::from_secs(10));
    }
    Ok(out)
}
