//! The polling-cost scenario: what it costs to keep C clients up to date
//! with a stream of U updates per second, by transport.
//!
//! * `short-poll`: each client asks `GET /poll?after=N` every `--every-ms`
//!   on a keep-alive connection (the clients' polls are spread evenly over
//!   the period);
//! * `long-poll`: each client holds `GET /poll?after=N&wait=60` and asks
//!   again as soon as it is answered;
//! * `sse` and `ws`: each client holds one subscription.
//!
//! Measured over the window from the first publish to the moment every
//! client has every message: HTTP requests per second (counted by the
//! clients), the server's CPU seconds per second (`/proc/<pid>/stat`),
//! bytes on the wire per delivered message — every byte the clients wrote
//! and read, HTTP heads and framing included, TCP/IP headers not — and
//! staleness, publish to seen, with the kernel's receive timestamp. The
//! bytes of opening the connections (handshakes) are reported apart, per
//! client.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::client::{self, Publisher, Transport};
use crate::fanout::verify;
use crate::server::ServerProcess;
use crate::workers::{Mode, Plan, Workers};
use crate::{died_prefix, Common, EnvProbe, Outcome, Percentiles, RunEnv};

/// Options of one polling-cost run.
#[derive(Debug, Clone, clap::Args)]
pub struct PollingArgs {
    #[command(flatten)]
    pub common: Common,
    /// How the clients get their updates: short-poll, long-poll, sse or ws.
    #[arg(long, value_enum, default_value = "short-poll")]
    pub transport: Transport,
    /// Clients.
    #[arg(long, default_value_t = 100)]
    pub clients: usize,
    /// Updates published per second.
    #[arg(long, default_value_t = 2.0)]
    pub rate: f64,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 5.0)]
    pub secs: f64,
    /// Short polling: milliseconds between one client's polls.
    #[arg(long, default_value_t = 1000)]
    pub every_ms: u64,
    /// Update size in bytes.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
}

/// The result of one polling-cost run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PollingResult {
    pub runtime: String,
    pub transport: Transport,
    pub clients: usize,
    pub rate: f64,
    pub secs: f64,
    pub every_ms: u64,
    pub size: usize,
    /// Updates published.
    pub messages: u64,
    /// Every client got every update once and in order.
    pub verified: bool,
    pub failure: Option<String>,
    /// Seconds from the first publish to the last client having everything.
    pub window_secs: f64,
    /// HTTP requests the clients sent in the window.
    pub requests: u64,
    pub requests_per_sec: f64,
    /// Server CPU seconds (user + system) per second of the window.
    pub server_cpu_per_sec: f64,
    /// Bytes the clients wrote and read in the window.
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// (bytes_sent + bytes_received) / (clients × messages).
    pub bytes_per_message: f64,
    /// Bytes written and read to open one client's connection (handshake).
    pub setup_bytes_per_client: f64,
    /// Publish to seen, every (client, update) pair, µs.
    pub staleness_us: Option<Percentiles>,
    pub clean_exit: bool,
    pub env: RunEnv,
}

/// Runs the polling-cost scenario once against a fresh server.
pub fn run(args: &PollingArgs) -> std::io::Result<PollingResult> {
    let probe = EnvProbe::begin();
    let place = probe.placement();
    let exe = args.common.exe()?;
    let server = ServerProcess::start(&exe, &args.common.runtime, &args.common.server_args, place.server)?;
    let messages = (args.rate * args.secs).round().max(1.0) as u64;
    let mut result = PollingResult {
        runtime: args.common.runtime.clone(),
        transport: args.transport,
        clients: args.clients,
        rate: args.rate,
        secs: args.secs,
        every_ms: args.every_ms,
        size: args.size,
        messages,
        verified: false,
        failure: None,
        window_secs: 0.0,
        requests: 0,
        requests_per_sec: 0.0,
        server_cpu_per_sec: 0.0,
        bytes_sent: 0,
        bytes_received: 0,
        bytes_per_message: 0.0,
        setup_bytes_per_client: 0.0,
        staleness_us: None,
        clean_exit: false,
        env: RunEnv::default(),
    };
    let mut plan = Plan::new(&exe, server.addr, args.transport, "updates", args.clients);
    plan.mode = Mode::Listen(messages);
    plan.cpu = place.clients;
    if args.transport == Transport::ShortPoll {
        plan.poll_every_ms = Some(args.every_ms);
    }
    let (mut workers, ready) = Workers::start(&plan)?;
    if ready.opened != args.clients {
        result.failure = Some(format!("opened {}/{} clients: {:?}", ready.opened, args.clients, ready.error));
        result.env = probe.end();
        return Ok(result);
    }
    if args.transport != Transport::ShortPoll {
        let key = args.transport.stats_key();
        if !server.wait_stats(Duration::from_secs(30), |s| s["connections"][key].as_u64() == Some(args.clients as u64)) {
            result.failure = Some("the server never counted every client".into());
            result.env = probe.end();
            return Ok(result);
        }
    }
    workers.mark()?;
    let cpu_before = server.sample().cpu_secs;
    let t0 = Instant::now();
    let mut publisher = Publisher::connect(server.addr, "updates")?;
    for seq in 0..messages {
        let due = t0 + Duration::from_secs_f64(seq as f64 / args.rate.max(0.001));
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        publisher.publish(&client::bench_payload(seq, client::realtime_ns(), args.size))?;
    }
    let all_done = workers.wait_done(Duration::from_millis(args.every_ms) + Duration::from_secs(30));
    result.window_secs = t0.elapsed().as_secs_f64();
    let cpu_after = server.sample().cpu_secs;
    let reports = workers.reports()?;
    drop(publisher);
    let died = server.died();
    result.clean_exit = server.stop(Duration::from_secs(20));
    result.env = probe.end();
    if let Err(failure) = verify(&reports, messages, args.clients, all_done) {
        result.failure = Some(died_prefix(died) + &failure);
        return Ok(result);
    }
    // ANCHOR: cost
    let delivered = (messages * args.clients as u64) as f64;
    result.requests = reports.iter().map(|r| r.requests).sum();
    result.bytes_sent = reports.iter().map(|r| r.bytes_sent).sum();
    result.bytes_received = reports.iter().map(|r| r.bytes_received).sum();
    result.requests_per_sec = result.requests as f64 / result.window_secs;
    result.server_cpu_per_sec = (cpu_after - cpu_before) / result.window_secs;
    result.bytes_per_message = (result.bytes_sent + result.bytes_received) as f64 / delivered;
    result.setup_bytes_per_client =
        reports.iter().map(|r| r.setup_bytes).sum::<u64>() as f64 / args.clients.max(1) as f64;
    let mut all: Vec<u64> = reports.iter().flat_map(|r| r.latency_us.values().flatten().map(|&us| us as u64)).collect();
    result.staleness_us = Some(Percentiles::of(&mut all));
    // ANCHOR_END: cost
    result.verified = true;
    Ok(result)
}

impl Outcome for PollingResult {
    fn verified(&self) -> bool {
        self.verified
    }

    fn failure(&self) -> Option<String> {
        self.failure.clone()
    }

    fn metrics(&self) -> Vec<(&'static str, f64)> {
        let mut m = vec![
            ("requests_per_sec", self.requests_per_sec),
            ("server_cpu_per_sec", self.server_cpu_per_sec),
            ("bytes_per_message", self.bytes_per_message),
            ("setup_bytes_per_client", self.setup_bytes_per_client),
        ];
        if let Some(p) = &self.staleness_us {
            m.extend([("stale_p50_us", p.p50 as f64), ("stale_p99_us", p.p99 as f64), ("stale_max_us", p.max as f64)]);
        }
        m
    }

    fn summary(&self) -> String {
        match &self.staleness_us {
            Some(p) => format!(
                "polling {:<8} {:<10} {} clients, {}/s for {}s: {:.1} req/s, server {:.3} CPU s/s, {:.0} B/msg (+{:.0} B setup/client), staleness p50 {} µs p99 {} µs max {} µs",
                self.runtime, self.transport.name(), self.clients, self.rate, self.secs,
                self.requests_per_sec, self.server_cpu_per_sec, self.bytes_per_message, self.setup_bytes_per_client,
                p.p50, p.p99, p.max
            ),
            None => format!(
                "polling {:<8} {:<10}: FAILED: {}",
                self.runtime,
                self.transport.name(),
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
