//! Throughput at the knee: the highest delivery rate a lab sustains while
//! its last subscriber still gets each message within a bound.
//!
//! Publishing back to back ("saturation") measures whatever is slowest in
//! the loop — often the publisher's own round trip — and its runs scatter.
//! Here the load is *offered*: a ramp of open-loop fan-out runs
//! ([`crate::fanout`], each against a fresh server), each step offering
//! `factor` times the deliveries per second of the one before (messages
//! per second × subscribers), until the last subscriber's p99 passes the
//! bound (50 ms by default) or delivery fails. The knee is the step before:
//! its delivered rate, its server CPU per 1,000 deliveries, and what
//! stopped the next step — the server's core (busy above 90%), the
//! clients' core (same), or neither (then the bound: queueing in the lab).
//!
//! One write per message is what a lab does when each message leaves before
//! the next arrives (small messages, a subscriber that keeps up); where
//! frames pile up in an outbox, a lab may write several in one `write`
//! (coalescing), and the same ramp shows it as a higher knee at the same
//! CPU. The step's server CPU per delivery tells the two apart.

use serde::{Deserialize, Serialize};

use crate::fanout::{self, FanoutArgs, FanoutResult};
use crate::outcome::{Measured, Outcome, Run, Verdict};

/// Options of one ramp: a fan-out run's (whose interval each step sets)
/// and the ramp's own.
#[derive(Debug, Clone, clap::Args)]
pub struct KneeArgs {
    /// Lab, transport, subscribers, messages per step, size.
    #[command(flatten)]
    pub fanout: FanoutArgs,
    /// The first step's offered deliveries per second.
    #[arg(long, default_value_t = 10_000)]
    pub start: u64,
    /// Each step offers this many times the one before.
    #[arg(long, default_value_t = 1.5)]
    pub factor: f64,
    /// Stop when the last subscriber's p99 passes this, ms.
    #[arg(long, default_value_t = 50)]
    pub bound_ms: u64,
    /// Most steps (the last offers start × factor^(steps − 1)).
    #[arg(long, default_value_t = 12)]
    pub max_steps: u32,
}

/// One step of the ramp.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Step {
    /// Deliveries per second offered (messages per second × subscribers).
    pub offered_per_sec: f64,
    /// Microseconds between publishes.
    pub interval_us: u64,
    pub verified: bool,
    pub failure: Option<String>,
    pub delivered_per_sec: Option<f64>,
    pub last_p99_us: Option<u64>,
    pub server_cpu_per_sec: Option<f64>,
    pub client_cpu_per_sec: Option<f64>,
}

/// What limited the ramp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Limit {
    /// The server's core was busy (over 90% of a core per server core
    /// available to it) at the first step past the knee.
    ServerCpu,
    /// The clients' core was.
    ClientCpu,
    /// Neither: the latency bound (queueing in the lab) or a failed delivery.
    Bound,
    /// The ramp ended at its last step without passing the bound.
    Ramp,
}

/// The ramp's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KneeResult {
    pub subscribers: usize,
    pub bound_ms: u64,
    pub messages: u64,
    pub steps: Vec<Step>,
    /// The highest delivered rate among the steps within the bound (0: not
    /// even the first step was within it).
    pub knee_per_sec: Option<f64>,
    /// Server CPU milliseconds per 1,000 deliveries at the knee.
    pub server_cpu_ms_per_1000: Option<f64>,
    /// The last subscriber's p99 at the knee, µs.
    pub knee_last_p99_us: Option<u64>,
    pub limit: Option<Limit>,
}

/// Runs the ramp.
pub fn run(args: &KneeArgs) -> std::io::Result<Run<KneeResult>> {
    let mut steps = Vec::new();
    let mut last_info = None;
    let mut limit = Limit::Ramp;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    for i in 0..args.max_steps {
        let offered = args.start as f64 * args.factor.powi(i as i32);
        let subscribers = args.fanout.subscribers;
        let per_sec = offered / subscribers.max(1) as f64;
        let interval_us = ((1e6 / per_sec).round() as u64).max(1);
        let fan = FanoutArgs { interval_ms: 0, interval_us: Some(interval_us), ..args.fanout.clone() };
        let run: Run<FanoutResult> = fanout::run(&fan)?;
        let r = &run.result;
        let p99 = r.last_subscriber_us.map(|p| p.p99);
        let within = run.info.verdict.is_verified() && p99.is_some_and(|p| p <= args.bound_ms * 1000);
        steps.push(Step {
            offered_per_sec: subscribers as f64 * 1e6 / interval_us as f64,
            interval_us,
            verified: run.info.verdict.is_verified(),
            failure: run.info.verdict.reason().map(str::to_owned),
            delivered_per_sec: r.delivered_per_sec,
            last_p99_us: p99,
            server_cpu_per_sec: r.server_cpu_per_sec,
            client_cpu_per_sec: r.client_cpu_per_sec,
        });
        crate::say(&format!("    knee step {}: {}", i + 1, run.summary()));
        last_info = Some(run.info.clone());
        if !within {
            let server_cores = if run.info.env.placement.server.is_some() { 1.0 } else { cores };
            limit = if r.client_saturated == Some(true) {
                Limit::ClientCpu
            } else if r.server_cpu_per_sec.is_some_and(|c| c > 0.9 * server_cores) {
                Limit::ServerCpu
            } else {
                Limit::Bound
            };
            break;
        }
    }
    let mut info = last_info.ok_or_else(|| std::io::Error::other("knee: no step ran"))?;
    let best = steps
        .iter()
        .filter(|s| s.verified && s.last_p99_us.is_some_and(|p| p <= args.bound_ms * 1000))
        .max_by(|a, b| a.delivered_per_sec.unwrap_or(0.0).total_cmp(&b.delivered_per_sec.unwrap_or(0.0)));
    // The ramp ends past the knee by design: the run is verified when the
    // first step delivered every message once and in order, whatever the
    // last did; a first step already over the bound is a knee below the
    // ramp (reported as 0 deliveries per second), not a lost message.
    info.verdict = match steps.first() {
        Some(first) if first.verified => Verdict::Verified,
        first => Verdict::Failed(format!(
            "the first step ({:.0} deliveries/s) was not delivered: {}",
            first.map_or(0.0, |s| s.offered_per_sec),
            first.and_then(|s| s.failure.clone()).unwrap_or_default()
        )),
    };
    let result = KneeResult {
        subscribers: args.fanout.subscribers,
        bound_ms: args.bound_ms,
        messages: args.fanout.messages,
        knee_per_sec: best.map_or(Some(0.0), |s| s.delivered_per_sec),
        server_cpu_ms_per_1000: best
            .and_then(|s| Some(s.server_cpu_per_sec? / s.delivered_per_sec.filter(|d| *d > 0.0)? * 1e6)),
        knee_last_p99_us: best.and_then(|s| s.last_p99_us),
        limit: Some(limit),
        steps,
    };
    Ok(Run { info, result })
}

impl Measured for KneeResult {
    const SCENARIO: &'static str = "knee";

    fn setup(&self) -> String {
        format!("{:>6} subs, {} msgs a step, bound {} ms, {} steps", self.subscribers, self.messages, self.bound_ms, self.steps.len())
    }

    fn numbers(&self) -> String {
        let Some(knee) = self.knee_per_sec else { return String::new() };
        format!(
            "knee {:.0} delivered/s, {:.1} server CPU ms per 1,000, last p99 {} µs, limited by {:?}",
            knee,
            self.server_cpu_ms_per_1000.unwrap_or(0.0),
            self.knee_last_p99_us.unwrap_or(0),
            self.limit.unwrap_or(Limit::Ramp)
        )
    }

    fn metrics(&self) -> Vec<(&'static str, f64)> {
        let mut m = Vec::new();
        m.extend(self.knee_per_sec.map(|v| ("knee_per_sec", v)));
        m.extend(self.server_cpu_ms_per_1000.map(|v| ("server_cpu_ms_per_1000", v)));
        m.extend(self.knee_last_p99_us.map(|v| ("knee_last_p99_us", v as f64)));
        m
    }
}
