//! The fan-out scenario: one publish, many subscribers — how long until the
//! last one has it?
//!
//! M subscribers (SSE, WebSocket, or long polls asked again as soon as they
//! are answered) on one topic; one publisher sends K messages, each carrying
//! its sequence number and the publisher's `CLOCK_REALTIME` at sending. A
//! subscriber's latency for a message is the kernel's receive timestamp of
//! the bytes that completed it minus that send time: the kernel stamps data
//! when it reaches the socket, so a worker busy with other connections does
//! not add its own delay to what it measures.
//!
//! With `--interval-ms 0` the publisher sends as fast as the server answers,
//! and messages delivered per second is the saturation throughput.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::client::{self, Transport};
use crate::outcome::{Measured, Run, Verdict};
use crate::session::{Session, Stop};
use crate::worker::Report;
use crate::workers::Mode;
use crate::{Common, Percentiles};

/// Options of one fan-out run.
#[derive(Debug, Clone, clap::Args)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub common: Common,
    /// Transport of the subscribers (sse, ws or long-poll).
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

/// What one fan-out run was asked and measured ([`Run`] adds what every
/// run reports). Verified: every subscriber received every message once
/// and in order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FanoutResult {
    pub subscribers: usize,
    pub messages: u64,
    pub size: usize,
    pub interval_ms: u64,
    /// Publish-to-receive latency over every (subscriber, message) pair, µs.
    /// Absent when verification failed: a run that loses messages has no numbers.
    pub all_pairs_us: Option<Percentiles>,
    /// Latency of the last subscriber to receive each message, µs.
    pub last_subscriber_us: Option<Percentiles>,
    /// Messages delivered per second, first publish to last receipt
    /// (a saturation figure only with `--interval-ms 0`).
    pub delivered_per_sec: Option<f64>,
    /// Seconds from the first publish to the last receipt.
    pub span_secs: Option<f64>,
    /// Server CPU seconds (user + system) per second of that span.
    pub server_cpu_per_sec: Option<f64>,
}

/// What the subscribers reported, for the numbers of a verified run.
#[derive(Debug, Default)]
struct Delivery {
    /// When each message was published, `CLOCK_REALTIME` ns.
    sent_ns: Vec<u64>,
    reports: Vec<Report>,
    /// Server CPU seconds from the first publish to the last receipt.
    cpu_secs: f64,
}

/// Runs the fan-out scenario once against a fresh server.
pub fn run(args: &FanoutArgs) -> std::io::Result<Run<FanoutResult>> {
    if args.transport == Transport::ShortPoll {
        return Err(std::io::Error::other("fanout: short polling is measured by the polling scenario"));
    }
    let (info, delivery) = Session::run(&args.common, args.transport, &[], |s| deliver(s, args))?;
    let mut result = FanoutResult {
        subscribers: args.subscribers,
        messages: args.messages,
        size: args.size,
        interval_ms: args.interval_ms,
        all_pairs_us: None,
        last_subscriber_us: None,
        delivered_per_sec: None,
        span_secs: None,
        server_cpu_per_sec: None,
    };
    if info.verdict.is_verified() {
        result.latencies(&delivery);
    }
    Ok(Run { info, result })
}

/// The scenario's own part: subscribe, publish, collect, verify.
fn deliver(s: &Session, args: &FanoutArgs) -> Result<(Delivery, Verdict), Stop> {
    let mut plan = s.plan("fanout", args.subscribers);
    plan.mode = Mode::Listen(args.messages);
    let mut workers = s.open(&plan, "subscribers")?;
    s.await_count(args.subscribers, "subscriber")?;
    let cpu_before = s.server.sample().cpu_secs;
    let mut publisher = s.publisher("fanout")?;
    let mut sent_ns = Vec::with_capacity(args.messages as usize);
    for seq in 0..args.messages {
        let now = client::realtime_ns();
        sent_ns.push(now);
        publisher.publish(&client::bench_payload(seq, now, args.size))?;
        if args.interval_ms > 0 {
            std::thread::sleep(Duration::from_millis(args.interval_ms));
        }
    }
    let deliveries = args.messages * args.subscribers as u64;
    let all_done = workers.wait_done(Duration::from_secs(30 + deliveries / 50_000));
    let cpu_secs = s.server.sample().cpu_secs - cpu_before;
    let reports = workers.reports()?;
    let verdict = Verdict::of(verify(&reports, args.messages, args.subscribers, all_done));
    Ok((Delivery { sent_ns, reports, cpu_secs }, verdict))
}

impl FanoutResult {
    /// The latencies and throughput of a verified run.
    fn latencies(&mut self, d: &Delivery) {
        let received: u64 = d.reports.iter().map(|r| r.received).sum();
        let mut all = Vec::with_capacity(received as usize);
        let mut last = Vec::with_capacity(d.sent_ns.len());
        let mut last_receipt_ns = 0;
        for (seq, sent) in d.sent_ns.iter().enumerate() {
            let mut slowest = 0u64;
            for r in &d.reports {
                for &us in r.latency_us.get(&(seq as u64)).map(Vec::as_slice).unwrap_or(&[]) {
                    all.push(us as u64);
                    slowest = slowest.max(us as u64);
                }
            }
            last.push(slowest);
            last_receipt_ns = last_receipt_ns.max(sent + slowest * 1000);
        }
        let first = d.sent_ns.first().copied().unwrap_or(0);
        let span_secs = last_receipt_ns.saturating_sub(first) as f64 / 1e9;
        self.all_pairs_us = Some(Percentiles::of(&mut all));
        self.last_subscriber_us = Some(Percentiles::of(&mut last));
        self.delivered_per_sec = (span_secs > 0.0).then(|| received as f64 / span_secs);
        self.span_secs = Some(span_secs);
        self.server_cpu_per_sec = (span_secs > 0.0).then(|| d.cpu_secs / span_secs);
    }
}

// ANCHOR: verify
/// Delivery is verified when every subscriber received every one of the
/// `messages`, each exactly once and in order (the workers check each id
/// against the previous one), none was announced missed, the server closed
/// no subscriber, and every worker said it was done before the deadline.
pub fn verify(reports: &[Report], messages: u64, subscribers: usize, all_done: bool) -> Result<(), String> {
    let received: u64 = reports.iter().map(|r| r.received).sum();
    let order_errors: u64 = reports.iter().map(|r| r.order_errors).sum();
    let missed: u64 = reports.iter().map(|r| r.missed).sum();
    let min = reports.iter().map(|r| r.min_per_connection).min().unwrap_or(0);
    let max = reports.iter().map(|r| r.max_per_connection).max().unwrap_or(0);
    let closed: u64 = reports.iter().map(|r| r.closed_by_server).sum();
    if !all_done || order_errors > 0 || missed > 0 || min != messages || max != messages || closed > 0 {
        return Err(format!(
            "delivery not verified: {received} received of {}, per connection {min}..={max}, {order_errors} out of order, {missed} announced missed, {closed} closed by the server{}",
            messages * subscribers as u64,
            if all_done { "" } else { ", deadline passed" }
        ));
    }
    Ok(())
}
// ANCHOR_END: verify

impl Measured for FanoutResult {
    const SCENARIO: &'static str = "fanout";

    fn setup(&self) -> String {
        format!("{:>6} subs × {} msgs of {} B every {} ms", self.subscribers, self.messages, self.size, self.interval_ms)
    }

    fn numbers(&self) -> String {
        let (Some(all), Some(last)) = (&self.all_pairs_us, &self.last_subscriber_us) else { return String::new() };
        format!(
            "all pairs p50 {} µs p99 {} µs max {} µs | last subscriber p50 {} µs p99 {} µs max {} µs | {:.0} delivered/s",
            all.p50,
            all.p99,
            all.max,
            last.p50,
            last.p99,
            last.max,
            self.delivered_per_sec.unwrap_or(0.0)
        )
    }

    fn metrics(&self) -> Vec<(&'static str, f64)> {
        let mut m = Vec::new();
        if let (Some(all), Some(last)) = (&self.all_pairs_us, &self.last_subscriber_us) {
            m.extend([
                ("all_p50_us", all.p50 as f64),
                ("all_p99_us", all.p99 as f64),
                ("all_max_us", all.max as f64),
                ("last_p50_us", last.p50 as f64),
                ("last_p99_us", last.p99 as f64),
                ("last_max_us", last.max as f64),
            ]);
        }
        m.extend(self.delivered_per_sec.map(|v| ("delivered_per_sec", v)));
        m.extend(self.server_cpu_per_sec.map(|v| ("server_cpu_per_sec", v)));
        m
    }
}
