//! Publish-to-receive latency in-process against through Redis.
//!
//! Each run is on fresh server processes: one without a broker (the
//! publish and its subscribers in one process, the in-process hub), or two
//! on the Redis broker with subscribers on the publishing process (the
//! message goes to Redis and comes back) and on the other one (the
//! cross-instance path). Every path has an SSE and a WebSocket subscriber.
//! The publisher is open-loop ([`crate::openloop`]): message `i` is due at
//! `t0 + i / rate` and carries that due time, so a slow answer never delays
//! the next message and a stall shows in the latency.

use std::io;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Readers, Sub, start_cluster, warm_up};
use crate::Latency;
use crate::axes::Transport;
use crate::openloop::{self, Pace};
use rtlab_testkit::RedisServer;

/// Warm-up messages before the measured ones.
const WARM_UP: u64 = 5;

/// The paths a message takes, as the document names them.
pub const PATHS: [&str; 3] = ["in-process", "redis-same", "redis-other"];

/// One histogram: one path, one transport, one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LatencyRun {
    pub runtime: String,
    pub repeat: usize,
    /// `in-process` (no broker), `redis-same` (through Redis back to the
    /// publishing process), `redis-other` (through Redis to another process).
    pub path: String,
    /// `sse` or `ws`.
    pub transport: String,
    /// Deliveries recorded.
    pub count: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    /// Messages published more than a millisecond after they were due.
    pub late: u64,
    /// Every message once, in order, on this subscriber.
    pub verified: bool,
    /// The histogram itself: (µs, count) pairs.
    pub histogram: Latency,
}

/// Every lab × repeat × path.
pub fn run(args: &super::ScaleoutArgs) -> io::Result<Vec<LatencyRun>> {
    let redis = RedisServer::start()?;
    let mut out = Vec::new();
    for repeat in 0..args.repeats {
        for rt in &args.runtimes {
            for broker in [None, Some(&redis)] {
                let runs = one(args, rt, repeat, broker)?;
                for r in &runs {
                    crate::say(&format!(
                        "latency {rt:>8} #{repeat} {:>11} {:>3}: p50 {} µs, p99 {} µs, max {} µs{}",
                        r.path,
                        r.transport,
                        r.p50_us,
                        r.p99_us,
                        r.max_us,
                        if r.verified { "" } else { "  NOT VERIFIED" }
                    ));
                }
                out.extend(runs);
            }
        }
    }
    Ok(out)
}

// ANCHOR: latency_run
/// One run: fresh processes, subscribers on each path, `messages` published
/// open-loop at `rate` on process 0.
fn one(args: &super::ScaleoutArgs, rt: &str, repeat: usize, broker: Option<&RedisServer>) -> io::Result<Vec<LatencyRun>> {
    let processes = if broker.is_some() { 2 } else { 1 };
    let cluster = start_cluster(rt, processes, broker)?;
    let addrs = cluster.addrs();
    let topic = format!("lat-{rt}-{repeat}-{processes}");
    // Group g: process g / 2, transport g % 2 (SSE, then WebSocket).
    let subs: Vec<Sub> = (0..processes * 2)
        .map(|g| Sub { addr: addrs[g / 2], transport: [Transport::Sse, Transport::Ws][g % 2], group: g })
        .collect();
    let seqs = args.messages as usize;
    let readers = Readers::open(&subs, &topic, subs.len(), seqs)?;
    warm_up(addrs[0], &topic, WARM_UP)?;
    let n = subs.len() as u64;
    if !readers.wait_for(n * WARM_UP, Duration::from_secs(10)) {
        return Err(io::Error::other(format!("{rt}: the warm-up did not reach every subscriber")));
    }
    let interval = Duration::from_secs_f64(1.0 / args.rate.max(1) as f64);
    let published = openloop::publish(addrs[0], &topic, args.messages, args.size, Pace::Every(interval), 8)?;
    readers.wait_for(n * (WARM_UP + args.messages), Duration::from_secs(30));
    let tallies = readers.finish()?;
    cluster.stop(Duration::from_secs(10));
    // ANCHOR_END: latency_run
    Ok(tallies
        .into_iter()
        .zip(&subs)
        .map(|(t, sub)| {
            let p = t.latency.percentiles();
            let path = match (broker.is_some(), sub.group / 2) {
                (false, _) => PATHS[0],
                (true, 0) => PATHS[1],
                (true, _) => PATHS[2],
            };
            LatencyRun {
                runtime: rt.to_owned(),
                repeat,
                path: path.to_owned(),
                transport: sub.transport.name().to_owned(),
                count: p.count as u64,
                p50_us: p.p50,
                p99_us: p.p99,
                max_us: p.max,
                late: published.late,
                verified: t.order_errors == 0
                    && t.closed == 0
                    && t.delivered == WARM_UP + args.messages
                    && t.reached.iter().all(|&r| r == 1),
                histogram: t.latency,
            }
        })
        .collect())
}
