//! Open-loop publishing: messages leave on a fixed schedule of absolute
//! times, whatever the server answers.
//!
//! A closed-loop publisher (send, wait for the answer, sleep, send) lets a
//! slow server slow the load down: while the server stalls, nothing is sent,
//! so nothing is late, and the stall never shows in the latencies
//! ("coordinated omission", as wrk2 calls it). Here message `i` is due at
//! `t0 + i × interval`; its payload carries that *due* time, not the time it
//! actually left, so a message that waited for a free connection counts the
//! wait. When every publishing connection is busy waiting for an answer, a
//! new one is opened (up to a cap), as many independent clients would.
//!
//! The publish round trip (request written to answer read) is recorded on
//! its own, apart from delivery.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::Latency;
use crate::client::{self, Publisher};

/// When messages leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Message `i` is due at `t0 + i × interval`; its timestamp is that due
    /// time.
    Every(Duration),
    /// Back to back on one connection, each as soon as the previous one is
    /// answered; its timestamp is when it was sent (a closed loop: for the
    /// old saturation figure only).
    BackToBack,
}

/// What the publishers did.
#[derive(Debug, Default)]
pub struct Published {
    /// Each message's timestamp, `CLOCK_REALTIME` ns, by sequence number.
    pub sent_ns: Vec<u64>,
    /// Publish round trips, µs.
    pub round_trip: Latency,
    /// Connections used to keep to the schedule.
    pub connections: usize,
    /// Messages written more than a millisecond after they were due (no
    /// connection was free, or the publishing core was busy).
    pub late: u64,
}

/// The work queue the publishing threads share.
#[derive(Debug, Default)]
struct Queue {
    due: VecDeque<(u64, u64)>,
    idle: usize,
    closed: bool,
    failed: Option<String>,
}

/// Publishes `messages` of `size` bytes to `topic` at `pace`, over at most
/// `max_connections` connections. Returns when every message is answered.
pub fn publish(addr: SocketAddr, topic: &str, messages: u64, size: usize, pace: Pace, max_connections: usize) -> std::io::Result<Published> {
    if pace == Pace::BackToBack {
        let mut publisher = Publisher::connect(addr, topic)?;
        let mut out = Published { connections: 1, ..Published::default() };
        for seq in 0..messages {
            let now = client::realtime_ns();
            let start = Instant::now();
            publisher.publish(&client::bench_payload(seq, now, size))?;
            out.round_trip.record(start.elapsed().as_micros() as u64);
            out.sent_ns.push(now);
        }
        return Ok(out);
    }
    let Pace::Every(interval) = pace else { unreachable!() };
    let shared = Arc::new((Mutex::new(Queue::default()), Condvar::new()));
    let mut threads = Vec::new();
    let spawn = |threads: &mut Vec<std::thread::JoinHandle<std::io::Result<(Latency, u64)>>>| -> std::io::Result<()> {
        let mut publisher = Publisher::connect(addr, topic)?;
        let shared = Arc::clone(&shared);
        shared.0.lock().expect("queue").idle += 1;
        threads.push(std::thread::spawn(move || {
            let (queue, ready) = &*shared;
            let mut rtt = Latency::new();
            let mut late = 0;
            loop {
                let (seq, due_ns) = {
                    let mut q = queue.lock().expect("queue");
                    loop {
                        if let Some(job) = q.due.pop_front() {
                            q.idle -= 1;
                            break job;
                        }
                        if q.closed || q.failed.is_some() {
                            return Ok((rtt, late));
                        }
                        q = ready.wait(q).expect("queue");
                    }
                };
                let start = Instant::now();
                late += u64::from(client::realtime_ns() > due_ns + 1_000_000);
                if let Err(e) = publisher.publish(&client::bench_payload(seq, due_ns, size)) {
                    queue.lock().expect("queue").failed = Some(e.to_string());
                    ready.notify_all();
                    return Err(e);
                }
                rtt.record(start.elapsed().as_micros() as u64);
                queue.lock().expect("queue").idle += 1;
            }
        }));
        Ok(())
    };
    // Two connections to start with; more when both are busy at a due time.
    spawn(&mut threads)?;
    spawn(&mut threads)?;
    // ANCHOR: open_loop
    let t0 = Instant::now();
    let t0_ns = client::realtime_ns();
    let mut sent_ns = Vec::with_capacity(messages as usize);
    for seq in 0..messages {
        let offset = interval * seq as u32;
        std::thread::sleep((t0 + offset).saturating_duration_since(Instant::now()));
        let due_ns = t0_ns + offset.as_nanos() as u64;
        sent_ns.push(due_ns);
        let busy = {
            let mut q = shared.0.lock().expect("queue");
            if let Some(e) = &q.failed {
                return Err(std::io::Error::other(format!("publish failed: {e}")));
            }
            q.due.push_back((seq, due_ns));
            q.idle < q.due.len()
        };
        shared.1.notify_one();
        if busy && threads.len() < max_connections {
            spawn(&mut threads)?;
            shared.1.notify_one();
        }
    }
    // ANCHOR_END: open_loop
    shared.0.lock().expect("queue").closed = true;
    shared.1.notify_all();
    let mut out = Published { sent_ns, connections: threads.len(), ..Published::default() };
    for t in threads {
        let (rtt, late) = t.join().map_err(|_| std::io::Error::other("publisher thread panicked"))??;
        out.round_trip.merge(&rtt);
        out.late += late;
    }
    Ok(out)
}
