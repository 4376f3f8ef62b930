//! Fan-out spread over processes: M SSE subscribers on 1, 2 or 4 server
//! processes (subscriber `i` on process `i mod P`), one publisher on
//! process 0.
//!
//! Two phases on the same subscribers: a paced one (open loop, a fixed
//! rate) for the last subscriber's latency per message, then a burst
//! published back to back for deliveries per second. Over both, the CPU
//! time of `redis-server` and of the server processes, from the
//! scheduler's accounting in `/proc` (to the nanosecond: Redis works only a
//! few milliseconds in a measurement, less than `/proc/<pid>/stat`'s tick).
//! With pub/sub, Redis sends a message once per *subscribing process* (one
//! `PSUBSCRIBE` connection each), not once per subscriber: the processes
//! fan out to their own subscribers. One process without a broker is the
//! reference.

use std::io;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Readers, Sub, cpu_secs, start_cluster, warm_up};
use crate::axes::Transport;
use crate::client::{self, Publisher};
use crate::openloop::{self, Pace};
use crate::Percentiles;
use rtlab_testkit::RedisServer;

const WARM_UP: u64 = 2;

/// One fan-out measurement.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FanoutRun {
    pub runtime: String,
    pub subscribers: usize,
    pub processes: usize,
    /// `none` (one process, the in-process hub) or `redis`.
    pub broker: String,
    pub repeat: usize,
    /// Paced phase: the last subscriber's publish-to-receive per message, µs.
    pub last_p50_us: u64,
    pub last_p99_us: u64,
    pub last_max_us: u64,
    /// Burst: deliveries per second, first publish to the last delivery.
    pub burst_deliveries_per_sec: f64,
    /// Messages published over both phases, and deliveries (× subscribers).
    pub published: u64,
    pub delivered: u64,
    /// CPU time over both phases, seconds: redis-server, the server processes.
    pub redis_cpu_secs: f64,
    pub servers_cpu_secs: f64,
    /// Every subscriber got every message once, in order.
    pub verified: bool,
}

impl FanoutRun {
    /// Redis's CPU per delivered message, µs.
    pub fn redis_us_per_delivery(&self) -> f64 {
        self.redis_cpu_secs * 1e6 / self.delivered.max(1) as f64
    }

    /// Redis's CPU per published message, µs.
    pub fn redis_us_per_publish(&self) -> f64 {
        self.redis_cpu_secs * 1e6 / self.published.max(1) as f64
    }

    /// The server processes' CPU per delivered message, µs.
    pub fn servers_us_per_delivery(&self) -> f64 {
        self.servers_cpu_secs * 1e6 / self.delivered.max(1) as f64
    }
}

/// Every lab × subscribers × processes × repeat.
pub fn run(args: &super::ScaleoutArgs) -> io::Result<Vec<FanoutRun>> {
    let redis = RedisServer::start()?;
    let mut configs: Vec<(usize, bool)> = Vec::new();
    for &p in &args.fanout_processes {
        if p == 1 {
            configs.push((1, false));
        }
        configs.push((p, true));
    }
    let mut out = Vec::new();
    for repeat in 0..args.fanout_repeats {
        for rt in &args.fanout_runtimes {
            for &m in &args.fanout_subscribers {
                for &(p, on_redis) in &configs {
                    let r = one(args, rt, m, p, on_redis.then_some(&redis), repeat)?;
                    crate::say(&format!(
                        "fan-out {rt:>8} #{repeat} {m:>5} on {p} ({:>5}): last p50 {} µs, p99 {} µs; burst {:.0}/s; redis {:.2} µs/delivery{}",
                        r.broker,
                        r.last_p50_us,
                        r.last_p99_us,
                        r.burst_deliveries_per_sec,
                        r.redis_us_per_delivery(),
                        if r.verified { "" } else { "  NOT VERIFIED" }
                    ));
                    out.push(r);
                }
            }
        }
    }
    Ok(out)
}

// ANCHOR: spread_run
fn one(args: &super::ScaleoutArgs, rt: &str, m: usize, p: usize, redis: Option<&RedisServer>, repeat: usize) -> io::Result<FanoutRun> {
    let cluster = start_cluster(rt, p, redis)?;
    let addrs = cluster.addrs();
    let topic = format!("fan-{rt}-{m}-{p}-{}-{repeat}", redis.is_some());
    let subs: Vec<Sub> = (0..m).map(|i| Sub { addr: addrs[i % p], transport: Transport::Sse, group: 0 }).collect();
    let (paced, burst) = (args.fanout_messages, args.burst);
    let readers = Readers::open(&subs, &topic, 1, (paced + burst) as usize)?;
    warm_up(addrs[0], &topic, WARM_UP)?;
    if !readers.wait_for(m as u64 * WARM_UP, Duration::from_secs(30)) {
        return Err(io::Error::other(format!("{rt}: the warm-up did not reach all {m} subscribers")));
    }
    let redis_pid = redis.and_then(RedisServer::pid);
    let servers_cpu = || cluster.servers.iter().map(|s| cpu_secs(Some(s.pid()))).sum::<f64>();
    let (redis0, servers0) = (cpu_secs(redis_pid), servers_cpu());
    let interval = Duration::from_secs_f64(1.0 / args.fanout_rate.max(1) as f64);
    openloop::publish(addrs[0], &topic, paced, args.size, Pace::Every(interval), 4)?;
    readers.wait_for(m as u64 * (WARM_UP + paced), Duration::from_secs(60));
    // The burst: back to back, each stamped when it leaves.
    let mut publisher = Publisher::connect(addrs[0], &topic)?;
    let burst_start = client::realtime_ns();
    for seq in paced..paced + burst {
        publisher.publish(&client::bench_payload(seq, client::realtime_ns(), args.size))?;
    }
    readers.wait_for(m as u64 * (WARM_UP + paced + burst), Duration::from_secs(60));
    let (redis_cpu, servers_cpu) = (cpu_secs(redis_pid) - redis0, servers_cpu() - servers0);
    let tally = readers.finish()?.remove(0);
    cluster.stop(Duration::from_secs(10));
    // ANCHOR_END: spread_run
    let last = Percentiles::of(&tally.slowest[..paced as usize]);
    let burst_end = tally.last_rx[paced as usize..].iter().copied().max().unwrap_or(burst_start);
    let burst_secs = burst_end.saturating_sub(burst_start) as f64 / 1e9;
    Ok(FanoutRun {
        runtime: rt.to_owned(),
        subscribers: m,
        processes: p,
        broker: if redis.is_some() { "redis" } else { "none" }.to_owned(),
        repeat,
        last_p50_us: last.p50,
        last_p99_us: last.p99,
        last_max_us: last.max,
        burst_deliveries_per_sec: if burst_secs > 0.0 { (m as u64 * burst) as f64 / burst_secs } else { 0.0 },
        published: paced + burst,
        delivered: m as u64 * (paced + burst),
        redis_cpu_secs: redis_cpu,
        servers_cpu_secs: servers_cpu,
        verified: tally.order_errors == 0
            && tally.closed == 0
            && tally.delivered == m as u64 * (WARM_UP + paced + burst)
            && tally.reached.iter().all(|&r| r == m as u64),
    })
}
