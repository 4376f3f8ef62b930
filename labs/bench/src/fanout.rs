//! The fan-out scenario: one publish, many subscribers — how long until the
//! last one has it?

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::client::{self, Publisher, Transport};
use crate::server::ServerProcess;
use crate::workers::{Plan, Workers};
use crate::{Common, Percentiles, Placement};

/// Options of one fan-out run.
#[derive(Debug, Clone, clap::Args)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub common: Common,
    /// Transport of the subscribers.
    #[arg(long, value_enum, default_value = "ws")]
    pub transport: Transport,
    /// Subscribers.
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    /// Messages to publish.
    #[arg(long, default_value_t = 50)]
    pub messages: u64,
    /// Message size in bytes.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Milliseconds between publishes (0: as fast as the publisher can).
    #[arg(long, default_value_t = 20)]
    pub interval_ms: u64,
}

/// The result of one fan-out run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FanoutResult {
    pub runtime: String,
    pub transport: Transport,
    pub subscribers: usize,
    pub messages: u64,
    pub size: usize,
    pub interval_ms: u64,
    /// Every subscriber received every message once and in order.
    pub verified: bool,
    /// Why verification failed.
    pub failure: Option<String>,
    /// Publish-to-receive latency over every (subscriber, message) pair, µs.
    /// Absent when verification failed: a run that loses messages has no numbers.
    pub all_pairs_us: Option<Percentiles>,
    /// Latency of the last subscriber to receive each message, µs.
    pub last_subscriber_us: Option<Percentiles>,
    /// Messages delivered per second, first publish to last receipt
    /// (a saturation figure only with `--interval-ms 0`).
    pub delivered_per_sec: Option<f64>,
    /// The server exited 0 on SIGTERM afterwards.
    pub clean_exit: bool,
}

/// Runs the fan-out scenario once against a fresh server.
pub fn run(args: &FanoutArgs) -> std::io::Result<FanoutResult> {
    let exe = args.common.exe()?;
    let place = Placement::detect();
    let server = ServerProcess::start(&exe, &args.common.runtime, &args.common.server_args, place.server)?;
    let plan = Plan {
        exe: &exe,
        addr: server.addr,
        transport: args.transport,
        topic: "fanout",
        connections: args.subscribers,
        listen: Some(args.messages),
        rcvbuf: None,
        cpu: place.clients,
    };
    let (mut workers, ready) = Workers::start(&plan)?;
    let key = args.transport.stats_key();
    let mut result = FanoutResult {
        runtime: args.common.runtime.clone(),
        transport: args.transport,
        subscribers: args.subscribers,
        messages: args.messages,
        size: args.size,
        interval_ms: args.interval_ms,
        verified: false,
        failure: None,
        all_pairs_us: None,
        last_subscriber_us: None,
        delivered_per_sec: None,
        clean_exit: false,
    };
    if ready.opened != args.subscribers {
        result.failure = Some(format!("opened {}/{} subscribers: {:?}", ready.opened, args.subscribers, ready.error));
        return Ok(result);
    }
    if !server.wait_stats(Duration::from_secs(30), |s| s["connections"][key].as_u64() == Some(args.subscribers as u64)) {
        result.failure = Some("the server never counted every subscriber".into());
        return Ok(result);
    }
    let mut publisher = Publisher::connect(server.addr, "fanout")?;
    let mut sent_ns = Vec::with_capacity(args.messages as usize);
    for seq in 0..args.messages {
        let now = client::realtime_ns();
        sent_ns.push(now);
        publisher.publish(&client::bench_payload(seq, now, args.size))?;
        if args.interval_ms > 0 {
            std::thread::sleep(Duration::from_millis(args.interval_ms));
        }
    }
    let all_done = workers.wait_done(Duration::from_secs(30));
    let reports = workers.reports()?;
    result.clean_exit = server.stop(Duration::from_secs(10));

    let received: u64 = reports.iter().map(|r| r.received).sum();
    let order_errors: u64 = reports.iter().map(|r| r.order_errors).sum();
    let min = reports.iter().map(|r| r.min_per_connection).min().unwrap_or(0);
    let max = reports.iter().map(|r| r.max_per_connection).max().unwrap_or(0);
    let closed: u64 = reports.iter().map(|r| r.closed_by_server).sum();
    if !all_done || order_errors > 0 || min != args.messages || max != args.messages || closed > 0 {
        result.failure = Some(format!(
            "delivery not verified: {received} received of {}, per connection {min}..={max}, {order_errors} out of order, {closed} closed by the server",
            args.messages * args.subscribers as u64
        ));
        return Ok(result);
    }
    let mut all = Vec::with_capacity(received as usize);
    let mut last = Vec::with_capacity(args.messages as usize);
    let mut last_receipt_ns = 0;
    for (seq, sent) in sent_ns.iter().enumerate() {
        let mut slowest = 0u64;
        for r in &reports {
            for &us in r.latency_us.get(&(seq as u64)).map(Vec::as_slice).unwrap_or(&[]) {
                all.push(us as u64);
                slowest = slowest.max(us as u64);
            }
        }
        last.push(slowest);
        last_receipt_ns = last_receipt_ns.max(sent + slowest * 1000);
    }
    let span_secs = last_receipt_ns.saturating_sub(sent_ns[0]) as f64 / 1e9;
    result.verified = true;
    result.all_pairs_us = Some(Percentiles::of(&mut all));
    result.last_subscriber_us = Some(Percentiles::of(&mut last));
    result.delivered_per_sec = (span_secs > 0.0).then(|| received as f64 / span_secs);
    Ok(result)
}

impl FanoutResult {
    /// One line for a terminal.
    pub fn summary(&self) -> String {
        match (&self.all_pairs_us, &self.last_subscriber_us) {
            (Some(all), Some(last)) => format!(
                "fanout {:<8} {:<4} {:>6} subs × {} msgs of {} B: all pairs p50 {} µs p99 {} µs max {} µs | last subscriber p50 {} µs p99 {} µs max {} µs",
                self.runtime, self.transport.name(), self.subscribers, self.messages, self.size,
                all.p50, all.p99, all.max, last.p50, last.p99, last.max
            ),
            _ => format!(
                "fanout {:<8} {:<4} {:>6} subs: FAILED: {}",
                self.runtime,
                self.transport.name(),
                self.subscribers,
                self.failure.as_deref().unwrap_or("unknown")
            ),
        }
    }
}
