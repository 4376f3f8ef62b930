//! The broker-failure run: `redis-server` SIGKILLed under load and
//! restarted empty.
//!
//! Three instances on one Redis; on each, subscribers of SSE, WebSocket and
//! long poll, and a publisher at a fixed rate (its messages are `pI-SEQ`,
//! so every delivery names the publish it came from). After a while Redis
//! is killed; publishes answer `503` while it is down; it is restarted
//! without its data, and publishing goes on. Then each subscriber's record
//! is checked against every publish that was answered `200`:
//!
//! * **lost**: acknowledged, never received, and covered by no signal;
//! * **duplicated**: received twice (the same id in the same epoch);
//! * **out of order**: an id lower than one already received in its epoch;
//! * **silent gap**: an id more than one past the previous, with no
//!   `missed` signal in between — the failure the contract forbids;
//! * **signalled**: not received, but announced — inside a `missed` range,
//!   or after the last id received in an epoch the subscriber was told is
//!   gone (`reset`).
//!
//! A publish is in the first epoch if it was answered before Redis came
//! back, in the second after: Redis came back empty, so its first publish
//! started a new epoch, and every subscriber must be reset into it.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::start_cluster;
use crate::axes::Transport;
use crate::client::{self, PollParser, Publisher, PushParser, Signal, subscribe};
use rtlab_testkit::RedisServer;

/// What one subscriber got, checked.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// Acknowledged publishes this subscriber should see (after its start).
    pub expected: u64,
    /// Messages received (acknowledged or not).
    pub received: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    pub silent_gaps: u64,
    /// Not received, but announced by a `missed` or `reset` signal.
    pub signalled: u64,
    pub resets: u64,
    pub missed_signals: u64,
    /// Received, but the publisher never saw the answer (it was in flight
    /// when Redis died): not an error.
    pub unacknowledged: u64,
}

/// One acknowledged publish: (epoch index, id, data).
pub type Acked = (usize, u64, String);

// ANCHOR: check
/// Checks a subscriber's signals, in the order received, against the
/// acknowledged publishes. `start` is the last id of the first epoch the
/// subscriber was not meant to see (its starting point); messages whose
/// data is not a publish of the run (the warm-up) are skipped.
pub fn check(acked: &[Acked], start: u64, signals: &[Signal]) -> Check {
    let mut c = Check::default();
    let mut epoch = 0usize;
    // The id each message must follow in the current epoch.
    let mut prev = start;
    // The last id received in each epoch that was reset away.
    let mut ended: Vec<u64> = Vec::new();
    let mut missed: Vec<(usize, u64, u64)> = Vec::new();
    let mut seen: HashSet<(usize, u64)> = HashSet::new();
    let mut got: HashMap<&str, u64> = HashMap::new();
    let published: HashSet<&str> = acked.iter().map(|a| a.2.as_str()).collect();
    for signal in signals {
        match signal {
            Signal::Message(m) if m.data.starts_with('p') => {
                if !seen.insert((epoch, m.id)) {
                    c.duplicated += 1;
                    continue;
                }
                c.received += 1;
                if m.id <= prev {
                    c.out_of_order += 1;
                } else if m.id > prev + 1 {
                    c.silent_gaps += 1;
                }
                prev = prev.max(m.id);
                *got.entry(m.data.as_str()).or_default() += 1;
                if !published.contains(m.data.as_str()) {
                    c.unacknowledged += 1;
                }
            }
            Signal::Missed { from, to } => {
                c.missed_signals += 1;
                missed.push((epoch, *from, *to));
                prev = prev.max(*to);
            }
            Signal::Reset { .. } => {
                c.resets += 1;
                ended.push(prev);
                epoch += 1;
                prev = 0;
            }
            _ => {}
        }
    }
    for (e, id, data) in acked {
        if *e == 0 && *id <= start {
            continue;
        }
        c.expected += 1;
        if got.contains_key(data.as_str()) {
            continue;
        }
        let in_missed = missed.iter().any(|&(me, from, to)| me == *e && (from..=to).contains(id));
        let reset_away = ended.get(*e).is_some_and(|last| id > last);
        if in_missed || reset_away {
            c.signalled += 1;
        } else {
            c.lost += 1;
        }
    }
    c
}
// ANCHOR_END: check

/// One subscriber of the run, checked.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubscriberResult {
    pub instance: usize,
    /// `sse`, `ws` or `long-poll`.
    pub transport: String,
    #[serde(flatten)]
    pub check: Check,
    /// Redis back (answering `PING`) to this subscriber's first message
    /// after it, ms.
    pub recovery_ms: Option<f64>,
    /// Its connection stayed open the whole run (SSE and WebSocket); a
    /// long poller's reconnections are counted instead.
    pub connection_kept: bool,
    pub reconnects: u64,
}

/// The publishes of the run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Publishes {
    pub attempted: u64,
    /// Answered `200`, before Redis was killed / after it came back.
    pub ok_before: u64,
    pub ok_after: u64,
    /// Answered `503` (the broker is unreachable).
    pub unavailable: u64,
    /// Any other status, or no answer (connection broken).
    pub other: u64,
}

/// One lab's failure run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailureRun {
    pub runtime: String,
    pub instances: usize,
    /// Seconds from the start of publishing: Redis killed, Redis answering again.
    pub killed_at: f64,
    pub back_at: f64,
    pub publishes: Publishes,
    /// Redis back to the first `200` publish, ms.
    pub first_publish_ms: Option<f64>,
    pub instances_alive: usize,
    pub subscribers: Vec<SubscriberResult>,
}

impl FailureRun {
    /// Sums a field over the subscribers.
    pub fn total(&self, f: impl Fn(&Check) -> u64) -> u64 {
        self.subscribers.iter().map(|s| f(&s.check)).sum()
    }

    /// Recovery times, ms, sorted.
    pub fn recoveries(&self) -> Vec<f64> {
        let mut r: Vec<f64> = self.subscribers.iter().filter_map(|s| s.recovery_ms).collect();
        r.sort_by(f64::total_cmp);
        r
    }

    /// What is wrong with the run (empty: it met every target).
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        for (what, n) in [
            ("lost", self.total(|c| c.lost)),
            ("duplicated", self.total(|c| c.duplicated)),
            ("out of order", self.total(|c| c.out_of_order)),
            ("silent gaps", self.total(|c| c.silent_gaps)),
        ] {
            if n > 0 {
                p.push(format!("{n} {what}"));
            }
        }
        if self.instances_alive < self.instances {
            p.push(format!("{} of {} instances died", self.instances - self.instances_alive, self.instances));
        }
        let dropped = self.subscribers.iter().filter(|s| !s.connection_kept).count();
        if dropped > 0 {
            p.push(format!("{dropped} subscriber connections closed"));
        }
        if self.publishes.ok_after == 0 {
            p.push("no publish succeeded after Redis came back".into());
        }
        if self.subscribers.iter().any(|s| s.recovery_ms.is_none()) {
            p.push("a subscriber received nothing after Redis came back".into());
        }
        p
    }

    /// Met every target.
    pub fn passed(&self) -> bool {
        self.problems().is_empty()
    }
}

/// One line for the terminal.
pub fn summary(r: &FailureRun) -> String {
    let rec = r.recoveries();
    format!(
        "failure {:>8}: {} subscribers, {} publishes ok + {} answered 503; lost {}, duplicated {}, out of order {}, silent gaps {}, signalled {}; recovery median {:.0} ms, max {:.0} ms; {}",
        r.runtime,
        r.subscribers.len(),
        r.publishes.ok_before + r.publishes.ok_after,
        r.publishes.unavailable,
        r.total(|c| c.lost),
        r.total(|c| c.duplicated),
        r.total(|c| c.out_of_order),
        r.total(|c| c.silent_gaps),
        r.total(|c| c.signalled),
        rec.get(rec.len() / 2).copied().unwrap_or(f64::NAN),
        rec.last().copied().unwrap_or(f64::NAN),
        if r.passed() { "passed".to_owned() } else { format!("FAILED: {}", r.problems().join("; ")) }
    )
}

/// What a subscriber thread hands back: its signals with their arrival
/// (since the run's start), whether its connection stayed open, reconnects.
type Record = (Vec<(Duration, Signal)>, bool, u64);

/// An SSE or WebSocket subscriber, already subscribed, read until `stop`.
fn stream_reader(mut s: TcpStream, rest: Vec<u8>, transport: Transport, t0: Instant, warmed: Arc<AtomicU64>, stop: Arc<AtomicBool>) -> JoinHandle<Record> {
    std::thread::spawn(move || {
        let mut parser = PushParser::default();
        let mut signals = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        let mut input = rest;
        let mut kept = true;
        let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
        loop {
            for signal in parser.feed_signals(transport, &input) {
                if let Signal::Ping(payload) = &signal {
                    let _ = s.write_all(&client::pong_frame(payload));
                }
                if matches!(signal, Signal::Close) {
                    kept = false;
                }
                if matches!(&signal, Signal::Message(m) if m.data == "warm-up") {
                    warmed.fetch_add(1, Ordering::Relaxed);
                }
                signals.push((t0.elapsed(), signal));
            }
            input.clear();
            if stop.load(Ordering::Relaxed) {
                break;
            }
            match s.read(&mut buf) {
                Ok(0) => {
                    kept = false;
                    break;
                }
                Ok(n) => input.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
                Err(_) => {
                    kept = false;
                    break;
                }
            }
        }
        (signals, kept, 0)
    })
}

// ANCHOR: poller
/// A long poller: `GET /poll?topic=T&after=E-N&wait=1` again and again on
/// one keep-alive connection (a new one if it breaks), its cursor moved by
/// every message, `missed` and `reset` it is answered with.
fn poller(addr: SocketAddr, topic: String, start: u64, t0: Instant, stop: Arc<AtomicBool>) -> JoinHandle<Record> {
    std::thread::spawn(move || {
        let (mut epoch, mut last) = (None::<String>, start);
        let (mut signals, mut reconnects) = (Vec::new(), 0);
        let mut conn: Option<(TcpStream, PollParser)> = None;
        let mut buf = vec![0u8; 64 * 1024];
        while !stop.load(Ordering::Relaxed) {
            if conn.is_none() {
                match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                    Ok(s) => {
                        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                        conn = Some((s, PollParser::default()));
                    }
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    }
                }
            }
            let Some((s, parser)) = conn.as_mut() else { continue };
            let cursor = epoch.as_ref().map_or(last.to_string(), |e| format!("{e}-{last}"));
            let request = format!("GET /poll?topic={topic}&after={cursor}&wait=1 HTTP/1.1\r\nHost: bench\r\n\r\n");
            let answer = s.write_all(request.as_bytes()).and_then(|()| loop {
                if let Some(a) = parser.feed(&[]).pop() {
                    break Ok(a);
                }
                match s.read(&mut buf)? {
                    0 => break Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
                    n => {
                        if let Some(a) = parser.feed(&buf[..n]).pop() {
                            break Ok(a);
                        }
                    }
                }
            });
            let Ok(answer) = answer else {
                conn = None;
                reconnects += 1;
                continue;
            };
            if answer.close {
                conn = None;
            }
            if answer.status != 200 {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            for signal in answer.signals {
                match &signal {
                    Signal::Reset { epoch: e } => (epoch, last) = (Some(e.clone()), 0),
                    Signal::Missed { to, .. } => last = last.max(*to),
                    Signal::Message(m) => last = m.id,
                    _ => {}
                }
                signals.push((t0.elapsed(), signal));
            }
            if answer.epoch.is_some() {
                epoch = answer.epoch;
            }
        }
        (signals, true, reconnects)
    })
}
// ANCHOR_END: poller

/// A publisher at a fixed rate on one instance until `stop`: every
/// attempt's (time since start, status, id, data); status 0: no answer.
fn publisher(addr: SocketAddr, topic: String, index: usize, rate: u64, t0: Instant, stop: Arc<AtomicBool>) -> JoinHandle<Vec<(Duration, u16, u64, String)>> {
    std::thread::spawn(move || {
        let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
        let mut out = Vec::new();
        let mut conn: Option<Publisher> = None;
        let begin = Instant::now();
        for seq in 0u64.. {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            std::thread::sleep((begin + interval * seq as u32).saturating_duration_since(Instant::now()));
            let data = format!("p{index}-{seq}");
            if conn.is_none() {
                conn = Publisher::connect(addr, &topic).ok();
            }
            let answer = match conn.as_mut() {
                Some(p) => p.publish_status(data.as_bytes()),
                None => Err(io::Error::other("cannot connect")),
            };
            let at = t0.elapsed();
            match answer {
                Ok((status, head, body)) => {
                    let id = serde_json::from_slice::<serde_json::Value>(&body).ok().and_then(|v| v["id"].as_u64()).unwrap_or(0);
                    if head.to_ascii_lowercase().contains("connection: close") {
                        conn = None;
                    }
                    out.push((at, status, id, data));
                }
                Err(_) => {
                    conn = None;
                    out.push((at, 0, 0, data));
                }
            }
        }
        out
    })
}

// ANCHOR: failure_run
/// One lab: three instances, the subscribers, the publishers, Redis killed
/// and restarted, every subscriber checked.
pub fn run(args: &super::ScaleoutArgs, rt: &str) -> io::Result<FailureRun> {
    const INSTANCES: usize = 3;
    let phase = |i: usize| Duration::from_secs_f64(args.failure_phases.get(i).copied().unwrap_or(2.0));
    let mut redis = RedisServer::start()?;
    let cluster = start_cluster(rt, INSTANCES, Some(&redis))?;
    let addrs = cluster.addrs();
    let topic = format!("fail-{rt}");
    let t0 = Instant::now();
    let stop_subs = Arc::new(AtomicBool::new(false));
    let warmed = Arc::new(AtomicU64::new(0));
    let mut readers: Vec<(usize, Transport, JoinHandle<Record>)> = Vec::new();
    for (i, &addr) in addrs.iter().enumerate() {
        for transport in [Transport::Sse, Transport::Ws] {
            for _ in 0..args.failure_subscribers {
                let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
                let opened = subscribe(&mut s, transport, &topic, Duration::from_secs(10))?;
                let handle = stream_reader(s, opened.rest, transport, t0, warmed.clone(), stop_subs.clone());
                readers.push((i, transport, handle));
            }
        }
    }
    // Every stream subscriber has the warm-up: all are live on every instance.
    let start = Publisher::connect(addrs[0], &topic)?.publish(b"warm-up")?;
    let end = Instant::now() + Duration::from_secs(10);
    while warmed.load(Ordering::Relaxed) < readers.len() as u64 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(5));
    }
    for (i, &addr) in addrs.iter().enumerate() {
        for _ in 0..args.failure_subscribers {
            readers.push((i, Transport::LongPoll, poller(addr, topic.clone(), start, t0, stop_subs.clone())));
        }
    }
    let stop_pubs = Arc::new(AtomicBool::new(false));
    let publishers: Vec<_> =
        addrs.iter().enumerate().map(|(i, &a)| publisher(a, topic.clone(), i, args.failure_rate, t0, stop_pubs.clone())).collect();
    std::thread::sleep(phase(0));
    let killed_at = t0.elapsed();
    redis.kill();
    std::thread::sleep(phase(1));
    redis.restart()?;
    let back_at = t0.elapsed();
    std::thread::sleep(phase(2));
    stop_pubs.store(true, Ordering::Relaxed);
    let attempts: Vec<_> = publishers.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect();
    // Long enough for a held poll (wait=1) to answer and the last
    // deliveries to arrive.
    std::thread::sleep(Duration::from_millis(2000));
    stop_subs.store(true, Ordering::Relaxed);
    let instances_alive = cluster.servers.iter().filter(|s| !s.died()).count();
    // ANCHOR_END: failure_run
    let mut publishes = Publishes { attempted: attempts.len() as u64, ..Publishes::default() };
    let mut acked: Vec<Acked> = Vec::new();
    let mut first_ok_after: Option<Duration> = None;
    for (at, status, id, data) in &attempts {
        match *status {
            200 if *at < back_at => {
                publishes.ok_before += 1;
                acked.push((0, *id, data.clone()));
            }
            200 => {
                publishes.ok_after += 1;
                acked.push((1, *id, data.clone()));
                first_ok_after = Some(first_ok_after.map_or(*at, |f| f.min(*at)));
            }
            503 => publishes.unavailable += 1,
            _ => publishes.other += 1,
        }
    }
    let mut subscribers = Vec::new();
    for (instance, transport, handle) in readers {
        let (signals, kept, reconnects) = handle.join().map_err(|_| io::Error::other("a subscriber thread panicked"))?;
        let recovery = signals
            .iter()
            .find(|(at, s)| *at >= back_at && matches!(s, Signal::Message(m) if m.data.starts_with('p')))
            .map(|(at, _)| (*at - back_at).as_secs_f64() * 1e3);
        let only: Vec<Signal> = signals.into_iter().map(|(_, s)| s).collect();
        subscribers.push(SubscriberResult {
            instance,
            transport: transport.name().to_owned(),
            check: check(&acked, start, &only),
            recovery_ms: recovery,
            connection_kept: kept,
            reconnects,
        });
    }
    cluster.stop(Duration::from_secs(10));
    Ok(FailureRun {
        runtime: rt.to_owned(),
        instances: INSTANCES,
        killed_at: killed_at.as_secs_f64(),
        back_at: back_at.as_secs_f64(),
        publishes,
        first_publish_ms: first_ok_after.map(|f| (f - back_at).as_secs_f64() * 1e3),
        instances_alive,
        subscribers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Pushed;

    fn msg(id: u64, data: &str) -> Signal {
        Signal::Message(Pushed { id, data: data.to_owned(), epoch: None })
    }

    fn acked(list: &[(usize, u64, &str)]) -> Vec<Acked> {
        list.iter().map(|&(e, id, d)| (e, id, d.to_owned())).collect()
    }

    #[test]
    fn a_reset_covers_the_old_epochs_tail_and_a_jump_is_a_silent_gap() {
        let a = acked(&[(0, 2, "p0-0"), (0, 3, "p1-0"), (0, 4, "p0-1"), (1, 1, "p0-5"), (1, 2, "p1-5")]);
        // Got 2, then the reset, then the new epoch whole: 3 and 4 announced.
        let good = [msg(1, "warm-up"), msg(2, "p0-0"), Signal::Reset { epoch: "B".into() }, msg(1, "p0-5"), msg(2, "p1-5")];
        let c = check(&a, 1, &good);
        assert_eq!((c.expected, c.received, c.lost, c.signalled, c.silent_gaps, c.resets), (5, 3, 0, 2, 0, 1));
        // No reset: the new epoch's ids look old — 1 is out of order, 2 a
        // duplicate (so its message is not received) — and 3, 4 and p1-5 are lost.
        let silent = [msg(2, "p0-0"), msg(1, "p0-5"), msg(2, "p1-5")];
        let c = check(&a, 1, &silent);
        assert_eq!((c.lost, c.out_of_order, c.duplicated), (3, 1, 1), "{c:?}");
        // A jump within an epoch without a missed signal is a silent gap; with one, it is not.
        let c = check(&a, 1, &[msg(2, "p0-0"), msg(4, "p0-1")]);
        assert_eq!((c.silent_gaps, c.lost), (1, 1 + 2));
        let c = check(&a, 1, &[msg(2, "p0-0"), Signal::Missed { from: 3, to: 3 }, msg(4, "p0-1")]);
        assert_eq!((c.silent_gaps, c.signalled, c.lost), (0, 1, 2));
        // A message whose publisher never saw the answer is not an error.
        let c = check(&a, 1, &[msg(2, "p0-0"), msg(3, "p1-0"), msg(4, "p0-1"), msg(5, "p2-9")]);
        assert_eq!((c.unacknowledged, c.silent_gaps), (1, 0));
    }
}
