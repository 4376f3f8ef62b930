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

use crate::axes::Policy;
use crate::client::{self, Transport};
use crate::fanout::verify;
use crate::outcome::{Measured, Run, Verdict};
use crate::procfs;
use crate::session::{Session, Stop};
use crate::worker::Report;
use crate::workers::Mode;
use crate::{Common, Percentiles};

/// Options of one backpressure run.
#[derive(Debug, Clone, clap::Args)]
pub struct BackpressureArgs {
    #[command(flatten)]
    pub common: Common,
    /// The server's outbox policy (absent: the server's default, or a
    /// baseline lab's own behaviour).
    #[arg(long, value_enum)]
    pub policy: Option<Policy>,
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
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
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

/// What one backpressure run was asked and measured ([`Run`] adds what
/// every run reports). Verified: the fast subscribers got every message
/// once, in order, and every stalled subscriber's messages are accounted
/// for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackpressureResult {
    /// The policy's name, or "(server default)".
    pub policy: String,
    pub fast: usize,
    pub stalled: usize,
    pub rate: u64,
    pub messages: u64,
    pub size: usize,
    pub rcvbuf: usize,
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
}

/// What the scenario's own part measured (the default if it stopped early).
#[derive(Debug, Default)]
struct Pressure {
    /// The fast subscribers' latency, if the checks passed.
    fast_us: Option<Percentiles>,
    publish_secs: f64,
    drain_at: f64,
    before: MemorySample,
    samples: Vec<MemorySample>,
    dropped: u64,
    slow_disconnects: u64,
    stalled_outcome: StalledOutcome,
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
pub fn run(args: &BackpressureArgs) -> std::io::Result<Run<BackpressureResult>> {
    if !args.transport.is_push() {
        return Err(std::io::Error::other("backpressure: only SSE and WebSocket subscribers have an outbox"));
    }
    let policy_args: Vec<String> = args.policy.iter().flat_map(|p| ["--policy".to_owned(), p.to_string()]).collect();
    let (info, p) = Session::run(&args.common, args.transport, &policy_args, |s| pressure(s, args))?;
    // Growth before the drain: what the policy let the server keep.
    let before_drain = p.samples.iter().filter(|s| s.t <= p.drain_at);
    let peak = |of: fn(&MemorySample) -> u64| before_drain.clone().map(|s| of(s).saturating_sub(of(&p.before))).max().unwrap_or(0);
    let result = BackpressureResult {
        policy: args.policy.map_or_else(|| "(server default)".to_owned(), |p| p.to_string()),
        fast: args.fast,
        stalled: args.stalled,
        rate: args.rate,
        messages: args.messages,
        size: args.size,
        rcvbuf: args.rcvbuf,
        fast_us: p.fast_us.filter(|_| info.verdict.is_verified()),
        publish_secs: p.publish_secs,
        drain_at: p.drain_at,
        before: p.before,
        peak_user_growth: peak(|s| s.rss_anon),
        peak_tcp_growth: peak(|s| s.tcp_mem),
        samples: p.samples,
        dropped: p.dropped,
        slow_disconnects: p.slow_disconnects,
        stalled_outcome: StalledOutcome { count: args.stalled, ..p.stalled_outcome },
    };
    Ok(Run { info, result })
}

/// The scenario's own part: fast and stalled subscribers, publishing at a
/// fixed rate while memory is sampled, then the drain and the accounting.
fn pressure(s: &Session, args: &BackpressureArgs) -> Result<(Pressure, Verdict), Stop> {
    let mut plan = s.plan("bp", args.fast);
    plan.mode = Mode::Listen(args.messages);
    let mut fast = s.open(&plan, "fast subscribers")?;
    let stalled = if args.stalled > 0 {
        let mut plan = s.plan("bp", args.stalled);
        plan.mode = Mode::Stall(args.messages);
        plan.rcvbuf = Some(args.rcvbuf);
        plan.first_source = 40;
        Some(s.open(&plan, "stalled subscribers")?)
    } else {
        None
    };
    s.await_count(args.fast + args.stalled, "subscriber")?;
    std::thread::sleep(Duration::from_millis(200));
    let t0 = Instant::now();
    let mut p = Pressure {
        before: MemorySample { t: 0.0, rss_anon: s.server.sample().rss_anon, tcp_mem: procfs::kernel().tcp_mem },
        ..Pressure::default()
    };
    let sampler = Sampler::start(s.server.pid(), t0, Duration::from_millis(args.sample_ms.max(10)));

    // ANCHOR: fixed_rate
    // A fixed rate: message i is due at t0 + i / rate, whatever the time the
    // previous publish took (a late publisher catches up, it does not drift).
    let mut publisher = s.publisher("bp")?;
    let rate = args.rate.max(1) as f64;
    for seq in 0..args.messages {
        let due = t0 + Duration::from_secs_f64(seq as f64 / rate);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        publisher.publish(&client::bench_payload(seq, client::realtime_ns(), args.size))?;
    }
    // ANCHOR_END: fixed_rate
    p.publish_secs = t0.elapsed().as_secs_f64();
    let all_done = fast.wait_done(Duration::from_secs(30));
    // A moment for the policy's last actions to show in memory and /stats.
    std::thread::sleep(Duration::from_millis(300));
    if let Ok(stats) = s.server.stats() {
        p.dropped = stats["dropped"].as_u64().unwrap_or(0);
        p.slow_disconnects = stats["slow_disconnects"].as_u64().unwrap_or(0);
    }
    let fast_reports = fast.reports()?;
    p.drain_at = t0.elapsed().as_secs_f64();
    let stalled_reports = match stalled {
        Some(workers) => workers.reports()?,
        None => Vec::new(),
    };
    drop(publisher);
    std::thread::sleep(Duration::from_millis(200));
    p.samples = sampler.finish();

    p.stalled_outcome = stalled_outcome(&stalled_reports, args.messages);
    let check = verify(&fast_reports, args.messages, args.fast, all_done)
        .map_err(|e| format!("fast subscribers: {e}"))
        .and_then(|()| {
            let o = &p.stalled_outcome;
            let order: u64 = stalled_reports.iter().map(|r| r.order_errors).sum();
            if order > 0 || o.accounted != args.stalled as u64 {
                Err(format!("stalled subscribers: {} of {} accounted for, {order} unannounced gaps", o.accounted, args.stalled))
            } else {
                Ok(())
            }
        });
    if check.is_ok() {
        p.fast_us = Some(Report::all_latencies(&fast_reports));
    }
    Ok((p, Verdict::of(check)))
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

impl Measured for BackpressureResult {
    const SCENARIO: &'static str = "backpressure";

    fn setup(&self) -> String {
        format!(
            "{:<11} {} fast + {} stalled, {} msgs of {} B at {}/s",
            self.policy, self.fast, self.stalled, self.messages, self.size, self.rate
        )
    }

    fn numbers(&self) -> String {
        let Some(p) = &self.fast_us else { return String::new() };
        let o = &self.stalled_outcome;
        format!(
            "fast p50 {} µs p99 {} µs max {} µs | peak user +{} KiB, tcp +{} KiB | stalled: {} closed, {} received, {} missed | dropped {} cut off {}",
            p.p50,
            p.p99,
            p.max,
            self.peak_user_growth / 1024,
            self.peak_tcp_growth / 1024,
            o.closed,
            o.received,
            o.missed,
            self.dropped,
            self.slow_disconnects
        )
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
}
