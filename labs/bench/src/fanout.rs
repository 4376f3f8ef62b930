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
//! Publishing is **open-loop** ([`crate::openloop`]): message `i` is due at
//! `t0 + i × interval` and carries that due time, over as many publishing
//! connections as it takes to keep to the schedule, so a server that stalls
//! its publisher is charged for the stall. Latencies go into HDR histograms
//! ([`crate::Latency`]); the publish round trip is recorded on its own. The
//! workers' CPU is sampled too: a cell whose client core was saturated
//! measured the clients, and says so.
//!
//! With `--interval-ms 0` the publisher sends back to back on one
//! connection, each as soon as the previous is answered (the closed loop of
//! the saturation figure).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::client::Transport;
use crate::openloop::{self, Pace};
use crate::outcome::{Measured, Run, Verdict};
use crate::session::{Session, Stop};
use crate::worker::Report;
use crate::workers::Mode;
use crate::{Common, Latency, Percentiles};

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
    /// Milliseconds between publishes (0: back to back, closed-loop).
    #[arg(long, default_value_t = 20)]
    pub interval_ms: u64,
    /// Microseconds between publishes, instead of --interval-ms (the knee's
    /// ramp needs finer steps than a millisecond).
    #[arg(long)]
    pub interval_us: Option<u64>,
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
    /// Microseconds between publishes, when finer than a millisecond (the knee's steps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_us: Option<u64>,
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
    /// The client workers' CPU seconds per second of that span (all workers
    /// together; 1.0 is one core).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cpu_per_sec: Option<f64>,
    /// The clients' core was saturated (pinned, and its workers used more
    /// than 90% of it): the cell measured the clients as much as the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_saturated: Option<bool>,
    /// Publish round trip (request written to answer read), µs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_rtt_us: Option<Percentiles>,
    /// Publishing connections it took to keep to the schedule (open loop).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publishers: Option<usize>,
    /// Messages that left more than a millisecond after they were due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_publishes: Option<u64>,
}

/// What the subscribers reported, for the numbers of a verified run.
#[derive(Debug, Default)]
struct Delivery {
    /// When each message was due (sent, back to back), and the round trips.
    published: openloop::Published,
    reports: Vec<Report>,
    /// Server CPU seconds from the first publish to the last receipt.
    cpu_secs: f64,
    /// The workers' CPU seconds over the same time.
    client_cpu_secs: f64,
    /// The workers were pinned to a core of their own.
    clients_pinned: bool,
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
        interval_us: args.interval_us,
        all_pairs_us: None,
        last_subscriber_us: None,
        delivered_per_sec: None,
        span_secs: None,
        server_cpu_per_sec: None,
        client_cpu_per_sec: None,
        client_saturated: None,
        publish_rtt_us: None,
        publishers: None,
        late_publishes: None,
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
    // The scheduler's own nanoseconds, not /proc/<pid>/stat's 10 ms ticks:
    // a knee step lasts a fraction of a second.
    let server_cpu = || crate::procfs::cpu_secs_precise(s.server.pid()).unwrap_or_else(|| s.server.sample().cpu_secs);
    let cpu_before = server_cpu();
    let client_before = workers.cpu_secs();
    let pace = match (args.interval_us, args.interval_ms) {
        (Some(us), _) => Pace::Every(Duration::from_micros(us.max(1))),
        (None, 0) => Pace::BackToBack,
        (None, ms) => Pace::Every(Duration::from_millis(ms)),
    };
    let published = openloop::publish(s.server.addr, "fanout", args.messages, args.size, pace, 64)?;
    let deliveries = args.messages * args.subscribers as u64;
    let all_done = workers.wait_done(Duration::from_secs(30 + deliveries / 50_000));
    let cpu_secs = server_cpu() - cpu_before;
    let client_cpu_secs = workers.cpu_secs() - client_before;
    let reports = workers.reports()?;
    let verdict = Verdict::of(verify(&reports, args.messages, args.subscribers, all_done));
    let clients_pinned = s.placement().clients.is_some();
    Ok((Delivery { published, reports, cpu_secs, client_cpu_secs, clients_pinned }, verdict))
}

impl FanoutResult {
    /// The latencies and throughput of a verified run.
    fn latencies(&mut self, d: &Delivery) {
        let received: u64 = d.reports.iter().map(|r| r.received).sum();
        let sent_ns = &d.published.sent_ns;
        let mut last = Latency::new();
        let mut last_receipt_ns = 0;
        for (seq, sent) in sent_ns.iter().enumerate() {
            let slowest = d.reports.iter().filter_map(|r| r.slowest_us.get(&(seq as u64))).copied().max().unwrap_or(0);
            last.record(slowest);
            last_receipt_ns = last_receipt_ns.max(sent + slowest * 1000);
        }
        let first = sent_ns.first().copied().unwrap_or(0);
        let span_secs = last_receipt_ns.saturating_sub(first) as f64 / 1e9;
        let per_sec = |v: f64| (span_secs > 0.0).then(|| v / span_secs);
        self.all_pairs_us = Some(Report::merged(&d.reports).percentiles());
        self.last_subscriber_us = Some(last.percentiles());
        self.delivered_per_sec = per_sec(received as f64);
        self.span_secs = Some(span_secs);
        self.server_cpu_per_sec = per_sec(d.cpu_secs);
        self.client_cpu_per_sec = per_sec(d.client_cpu_secs);
        self.client_saturated = self.client_cpu_per_sec.map(|c| d.clients_pinned && c > 0.9);
        self.publish_rtt_us = Some(d.published.round_trip.percentiles());
        self.publishers = Some(d.published.connections);
        self.late_publishes = Some(d.published.late);
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
            + &self.interval_us.map(|us| format!(" ({us} µs)")).unwrap_or_default()
    }

    fn numbers(&self) -> String {
        let (Some(all), Some(last)) = (&self.all_pairs_us, &self.last_subscriber_us) else { return String::new() };
        format!(
            "all pairs p50 {} µs p99 {} µs max {} µs | last subscriber p50 {} µs p99 {} µs max {} µs | {:.0} delivered/s | client CPU {:.2}{}",
            all.p50,
            all.p99,
            all.max,
            last.p50,
            last.p99,
            last.max,
            self.delivered_per_sec.unwrap_or(0.0),
            self.client_cpu_per_sec.unwrap_or(0.0),
            if self.client_saturated == Some(true) { " (client core saturated)" } else { "" }
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
        m.extend(self.client_cpu_per_sec.map(|v| ("client_cpu_per_sec", v)));
        m.extend(self.publish_rtt_us.map(|p| ("publish_rtt_p99_us", p.p99 as f64)));
        m
    }
}
