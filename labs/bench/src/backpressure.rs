//! The backpressure scenario: what a stalled subscriber costs everyone else.
//!
//! Fast subscribers read everything; stalled ones open their subscription
//! with a tiny receive buffer (`SO_RCVBUF`) and then never read. A publisher
//! sends at a fixed rate. Once a stalled subscriber's socket buffers are
//! full, the server's outbox for it grows until the server's policy acts:
//! `disconnect` closes it, `drop-oldest` discards its oldest messages and
//! tells it which ids it missed, `unbounded` keeps everything (the failure
//! the other two exist to prevent: memory grows with every publish).
//!
//! The run samples the server's resident anonymous memory and the kernel's
//! TCP buffer memory every `--sample-ms`, measures the fast subscribers'
//! latency (compared, in the report, with a run with no stalled subscriber:
//! `--stalled 0`), and at the end lets the stalled subscribers drain what
//! the server still sends them, to account for every message: each stalled
//! connection must have received it, been told it missed it, or been closed.
//! The run is bounded by `--messages`: it stops by itself even with
//! `unbounded`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::client::{self, Publisher, Transport};
use crate::fanout::verify;
use crate::procfs;
use crate::server::ServerProcess;
use crate::worker::Report;
use crate::workers::{Mode, Plan, Workers};
use crate::{died_prefix, Common, EnvProbe, Outcome, Percentiles, RunEnv};

/// Options of one backpressure run.
#[derive(Debug, Clone, clap::Args)]
pub struct BackpressureArgs {
    #[command(flatten)]
    pub common: Common,
    /// The server's outbox policy: disconnect, drop-oldest or unbounded
    /// (absent: the server's default, or a baseline lab's own behaviour).
    #[arg(long)]
    pub policy: Option<String>,
    /// Transport of every subscriber (sse or ws).
    #[arg(long, value_enum, default_value = "ws")]
    pub transport: Transport,
    /// Subscribers that read everything (their latency is measured).
    #[arg(long, default_value_t = 50)]
    pub fast: usize,
    /// Subscribers that never read (0: the baseline run).
    #[arg(long, default_value_t = 10)]
    pub stalled: usize,
    /// Messages published per second.
    #[arg(long, default_value_t = 1000)]
    pub rate: u64,
    /// Messages to publish (the run's length is messages / rate).
    #[arg(long, default_value_t = 2000)]
    pub messages: u64,
    /// Message size in bytes.
    #[arg(long, default_value_t = 1024)]
    pub size: usize,
    /// SO_RCVBUF of the stalled subscribers' sockets, bytes.
    #[arg(long, default_value_t = 4096)]
    pub rcvbuf: usize,
    /// Milliseconds between memory samples.
    #[arg(long, default_value_t = 100)]
    pub sample_ms: u64,
}

/// The server's memory and the kernel's TCP memory at one moment.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct MemorySample {
    /// Seconds since the first publish.
    pub t: f64,
    /// Server resident anonymous memory, bytes.
    pub rss_anon: u64,
    /// Kernel TCP buffer memory, bytes (system-wide).
    pub tcp_mem: u64,
}

/// What the policy did to the stalled subscribers.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct StalledOutcome {
    /// Stalled subscribers.
    pub count: usize,
    /// How many the server closed.
    pub closed: u64,
    /// Messages they received once they drained, all together.
    pub received: u64,
    /// Messages they were told they missed, all together.
    pub missed: u64,
    /// Fewest and most messages one of them received.
    pub received_min: u64,
    pub received_max: u64,
    /// Connections for which every message is accounted for: received, told
    /// missed, or the connection was closed.
    pub accounted: u64,
}

/// The result of one backpressure run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackpressureResult {
    pub runtime: String,
    pub policy: String,
    pub transport: Transport,
    pub fast: usize,
    pub stalled: usize,
    pub rate: u64,
    pub messages: u64,
    pub size: usize,
    pub rcvbuf: usize,
    /// Fast subscribers got every message once, in order, and every stalled
    /// subscriber's messages are accounted for.
    pub verified: bool,
    pub failure: Option<String>,
    /// Publish-to-receive latency of the fast subscribers, every pair, µs.
    pub fast_us: Option<Percentiles>,
    /// Seconds the publisher took (messages / rate if it kept up).
    pub publish_secs: f64,
    /// Seconds since the first publish when the stalled subscribers started
    /// to drain (memory after this point is being given back).
    pub drain_at: f64,
    /// Server resident anonymous memory and kernel TCP memory before publishing.
    pub before: MemorySample,
    /// Every sample, from the first publish to the end of the drain.
    pub samples: Vec<MemorySample>,
    /// Largest growth of resident anonymous memory before the drain, bytes.
    pub peak_user_growth: u64,
    /// Largest growth of kernel TCP memory before the drain, bytes.
    pub peak_tcp_growth: u64,
    /// `/stats` after publishing: messages dropped and slow consumers cut off.
    pub dropped: u64,
    pub slow_disconnects: u64,
    pub stalled_outcome: StalledOutcome,
    pub clean_exit: bool,
    pub env: RunEnv,
}

/// Samples memory every `every` until stopped.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<MemorySample>>,
}

impl Sampler {
    fn start(pid: u32, t0: Instant, every: Duration) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !flag.load(Ordering::SeqCst) {
                let rss_anon = procfs::process(pid).map_or(0, |p| p.rss_anon);
                let tcp_mem = procfs::kernel().tcp_mem;
                samples.push(MemorySample { t: t0.elapsed().as_secs_f64(), rss_anon, tcp_mem });
                std::thread::sleep(every);
            }
            samples
        });
        Sampler { stop, thread }
    }

    fn finish(self) -> Vec<MemorySample> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap_or_default()
    }
}

/// Runs the backpressure scenario once against a fresh server.
pub fn run(args: &BackpressureArgs) -> std::io::Result<BackpressureResult> {
    if !args.transport.is_push() {
        return Err(std::io::Error::other("backpressure: only SSE and WebSocket subscribers have an outbox"));
    }
    let probe = EnvProbe::begin();
    let place = probe.placement();
    let exe = args.common.exe()?;
    let mut server_args: Vec<String> = args.policy.iter().flat_map(|p| ["--policy".to_owned(), p.clone()]).collect();
    server_args.extend(args.common.server_args.iter().cloned());
    let server = ServerProcess::start(&exe, &args.common.runtime, &server_args, place.server)?;
    let mut result = BackpressureResult {
        runtime: args.common.runtime.clone(),
        policy: args.policy.clone().unwrap_or_else(|| "(server default)".to_owned()),
        transport: args.transport,
        fast: args.fast,
        stalled: args.stalled,
        rate: args.rate,
        messages: args.messages,
        size: args.size,
        rcvbuf: args.rcvbuf,
        verified: false,
        failure: None,
        fast_us: None,
        publish_secs: 0.0,
        drain_at: 0.0,
        before: MemorySample { t: 0.0, rss_anon: 0, tcp_mem: 0 },
        samples: Vec::new(),
        peak_user_growth: 0,
        peak_tcp_growth: 0,
        dropped: 0,
        slow_disconnects: 0,
        stalled_outcome: StalledOutcome { count: args.stalled, ..StalledOutcome::default() },
        clean_exit: false,
        env: RunEnv::default(),
    };

    let mut plan = Plan::new(&exe, server.addr, args.transport, "bp", args.fast);
    plan.mode = Mode::Listen(args.messages);
    plan.cpu = place.clients;
    let (mut fast, fast_ready) = Workers::start(&plan)?;
    let stalled = if args.stalled > 0 {
        let mut plan = Plan::new(&exe, server.addr, args.transport, "bp", args.stalled);
        plan.mode = Mode::Stall(args.messages);
        plan.cpu = place.clients;
        plan.rcvbuf = Some(args.rcvbuf);
        plan.first_source = 40;
        Some(Workers::start(&plan)?)
    } else {
        None
    };
    let stalled_opened = stalled.as_ref().map_or(0, |(_, r)| r.opened);
    let key = args.transport.stats_key();
    let total = (args.fast + args.stalled) as u64;
    if fast_ready.opened != args.fast || stalled_opened != args.stalled {
        result.failure = Some(format!(
            "opened {}/{} fast and {stalled_opened}/{} stalled subscribers",
            fast_ready.opened, args.fast, args.stalled
        ));
        result.env = probe.end();
        return Ok(result);
    }
    if !server.wait_stats(Duration::from_secs(30), |s| s["connections"][key].as_u64() == Some(total)) {
        result.failure = Some("the server never counted every subscriber".into());
        result.env = probe.end();
        return Ok(result);
    }
    std::thread::sleep(Duration::from_millis(200));
    let t0 = Instant::now();
    result.before =
        MemorySample { t: 0.0, rss_anon: server.sample().rss_anon, tcp_mem: procfs::kernel().tcp_mem };
    let sampler = Sampler::start(server.pid(), t0, Duration::from_millis(args.sample_ms.max(10)));

    // ANCHOR: fixed_rate
    // A fixed rate: message i is due at t0 + i / rate, whatever the time the
    // previous publish took (a late publisher catches up, it does not drift).
    let mut publisher = Publisher::connect(server.addr, "bp")?;
    let rate = args.rate.max(1) as f64;
    for seq in 0..args.messages {
        let due = t0 + Duration::from_secs_f64(seq as f64 / rate);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        publisher.publish(&client::bench_payload(seq, client::realtime_ns(), args.size))?;
    }
    // ANCHOR_END: fixed_rate
    result.publish_secs = t0.elapsed().as_secs_f64();
    let all_done = fast.wait_done(Duration::from_secs(30));
    // A moment for the policy's last actions to show in memory and /stats.
    std::thread::sleep(Duration::from_millis(300));
    if let Ok(stats) = server.stats() {
        result.dropped = stats["dropped"].as_u64().unwrap_or(0);
        result.slow_disconnects = stats["slow_disconnects"].as_u64().unwrap_or(0);
    }
    let fast_reports = fast.reports()?;
    result.drain_at = t0.elapsed().as_secs_f64();
    let stalled_reports = match stalled {
        Some((workers, _)) => workers.reports()?,
        None => Vec::new(),
    };
    drop(publisher);
    std::thread::sleep(Duration::from_millis(200));
    result.samples = sampler.finish();
    let died = server.died();
    result.clean_exit = server.stop(Duration::from_secs(20));
    result.env = probe.end();

    let before_drain = result.samples.iter().filter(|s| s.t <= result.drain_at);
    for s in before_drain {
        result.peak_user_growth = result.peak_user_growth.max(s.rss_anon.saturating_sub(result.before.rss_anon));
        result.peak_tcp_growth = result.peak_tcp_growth.max(s.tcp_mem.saturating_sub(result.before.tcp_mem));
    }
    result.stalled_outcome = stalled_outcome(&stalled_reports, args.messages);
    let verdict = verify(&fast_reports, args.messages, args.fast, all_done)
        .map_err(|e| format!("fast subscribers: {e}"))
        .and_then(|()| {
            let o = &result.stalled_outcome;
            let order: u64 = stalled_reports.iter().map(|r| r.order_errors).sum();
            if order > 0 || o.accounted != args.stalled as u64 {
                Err(format!(
                    "stalled subscribers: {} of {} accounted for, {order} unannounced gaps",
                    o.accounted, args.stalled
                ))
            } else {
                Ok(())
            }
        });
    if let Err(failure) = verdict {
        result.failure = Some(died_prefix(died) + &failure);
        return Ok(result);
    }
    let mut all: Vec<u64> =
        fast_reports.iter().flat_map(|r| r.latency_us.values().flatten().map(|&us| us as u64)).collect();
    result.fast_us = Some(Percentiles::of(&mut all));
    result.verified = true;
    Ok(result)
}

// ANCHOR: accounting
/// What became of the stalled subscribers. Each one's messages must be
/// accounted for: received once it drained, announced missed by the server,
/// or lost with a connection the server closed. A message that vanished
/// without any of these is a failure of the run.
fn stalled_outcome(reports: &[Report], messages: u64) -> StalledOutcome {
    let conns: Vec<_> = reports.iter().flat_map(|r| r.stalled.iter().copied()).collect();
    StalledOutcome {
        count: conns.len(),
        closed: conns.iter().filter(|c| c.closed).count() as u64,
        received: conns.iter().map(|c| c.received).sum(),
        missed: conns.iter().map(|c| c.missed).sum(),
        received_min: conns.iter().map(|c| c.received).min().unwrap_or(0),
        received_max: conns.iter().map(|c| c.received).max().unwrap_or(0),
        accounted: conns.iter().filter(|c| c.closed || c.received + c.missed == messages).count() as u64,
    }
}
// ANCHOR_END: accounting

impl Outcome for BackpressureResult {
    fn verified(&self) -> bool {
        self.verified
    }

    fn failure(&self) -> Option<String> {
        self.failure.clone()
    }

    fn metrics(&self) -> Vec<(&'static str, f64)> {
        let mut m = Vec::new();
        if let Some(p) = &self.fast_us {
            m.extend([("fast_p50_us", p.p50 as f64), ("fast_p99_us", p.p99 as f64), ("fast_max_us", p.max as f64)]);
        }
        let o = &self.stalled_outcome;
        m.extend([
            ("peak_user_growth", self.peak_user_growth as f64),
            ("peak_tcp_growth", self.peak_tcp_growth as f64),
            ("publish_secs", self.publish_secs),
            ("dropped", self.dropped as f64),
            ("slow_disconnects", self.slow_disconnects as f64),
            ("stalled_closed", o.closed as f64),
            ("stalled_received", o.received as f64),
            ("stalled_missed", o.missed as f64),
        ]);
        m
    }

    fn summary(&self) -> String {
        let o = &self.stalled_outcome;
        match &self.fast_us {
            Some(p) => format!(
                "backpressure {:<8} {:<4} {:<11} {} fast + {} stalled, {} msgs of {} B at {}/s: fast p50 {} µs p99 {} µs max {} µs | peak user +{} KiB, tcp +{} KiB | stalled: {} closed, {} received, {} missed | dropped {} cut off {}",
                self.runtime, self.transport.name(), self.policy, self.fast, self.stalled, self.messages, self.size, self.rate,
                p.p50, p.p99, p.max, self.peak_user_growth / 1024, self.peak_tcp_growth / 1024,
                o.closed, o.received, o.missed, self.dropped, self.slow_disconnects
            ),
            None => format!(
                "backpressure {:<8} {:<4} {:<11}: FAILED: {}",
                self.runtime,
                self.transport.name(),
                self.policy,
                self.failure.as_deref().unwrap_or("unknown")
            ),
        }
    }

    fn env(&self) -> &RunEnv {
        &self.env
    }

    fn to_json(&self) -> serde_json::Value {
        crate::json_of(self)
    }
}
