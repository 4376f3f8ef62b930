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
//!
//! The clients' requests carry the minimal heads (`Host:` and what the
//! transport needs) unless `--browser-headers FILE` gives them a real
//! browser's header lines ([`crate::headers`]); then the result also says
//! what the same run's bytes would have been with the minimal heads. The
//! sweep over rates, periods and clients is [`crate::sweep`].

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::client::{self, Transport};
use crate::fanout::verify;
use crate::outcome::{Measured, Run, Verdict};
use crate::session::{Session, Stop};
use crate::worker::Report;
use crate::workers::Mode;
use crate::{Common, Percentiles};

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
    /// Send a real browser's request headers on every poll and handshake: a
    /// capture by `scripts/interop/headers.mjs`, e.g.
    /// `bench-results/polling/chromium-headers.json` (default: the minimal
    /// heads, `Host:` and what the transport needs).
    #[arg(long)]
    pub browser_headers: Option<std::path::PathBuf>,
}

/// What one polling-cost run was asked and measured ([`Run`] adds what
/// every run reports). Verified: every client got every update once and in
/// order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PollingResult {
    pub clients: usize,
    pub rate: f64,
    pub secs: f64,
    pub every_ms: u64,
    pub size: usize,
    /// Updates published.
    pub messages: u64,
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
    /// The browser whose request headers the clients sent
    /// (`--browser-headers`); absent: minimal heads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub browser: Option<String>,
    /// With browser headers: the same run's bytes per delivered message and
    /// setup bytes per client had the requests carried the minimal heads
    /// (each request's length swapped for its minimal one; the server's
    /// answers are the same bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimal_bytes_per_message: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimal_setup_bytes_per_client: Option<f64>,
}

/// The measured window, for the numbers of a verified run.
#[derive(Debug, Default)]
struct Window {
    secs: f64,
    /// Server CPU seconds over the window.
    cpu_secs: f64,
    reports: Vec<Report>,
}

/// Runs the polling-cost scenario once against a fresh server.
pub fn run(args: &PollingArgs) -> std::io::Result<Run<PollingResult>> {
    // Read (and checked) here, so a bad file fails before any server starts.
    let browser = args.browser_headers.as_deref().map(crate::headers::BrowserHeaders::read).transpose()?;
    let messages = (args.rate * args.secs).round().max(1.0) as u64;
    let (info, window) = Session::run(&args.common, args.transport, &[], |s| update(s, args, messages))?;
    let mut result = PollingResult {
        clients: args.clients,
        rate: args.rate,
        secs: args.secs,
        every_ms: args.every_ms,
        size: args.size,
        messages,
        window_secs: window.secs,
        requests: 0,
        requests_per_sec: 0.0,
        server_cpu_per_sec: 0.0,
        bytes_sent: 0,
        bytes_received: 0,
        bytes_per_message: 0.0,
        setup_bytes_per_client: 0.0,
        staleness_us: None,
        browser: browser.map(|b| b.capture.browser),
        minimal_bytes_per_message: None,
        minimal_setup_bytes_per_client: None,
    };
    if info.verdict.is_verified() {
        result.cost(&window);
    }
    Ok(Run { info, result })
}

/// The scenario's own part: open the clients, mark the window, publish at
/// the rate, collect, verify.
fn update(s: &Session, args: &PollingArgs, messages: u64) -> Result<(Window, Verdict), Stop> {
    let mut plan = s.plan("updates", args.clients);
    plan.mode = Mode::Listen(messages);
    if args.transport == Transport::ShortPoll {
        plan.poll_every_ms = Some(args.every_ms);
    }
    plan.browser_headers = args.browser_headers.as_deref();
    let mut workers = s.open(&plan, "clients")?;
    if args.transport != Transport::ShortPoll {
        s.await_count(args.clients, "client")?;
    }
    workers.mark()?;
    let cpu_before = s.server.sample().cpu_secs;
    let t0 = Instant::now();
    let mut publisher = s.publisher("updates")?;
    for seq in 0..messages {
        let due = t0 + Duration::from_secs_f64(seq as f64 / args.rate.max(0.001));
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        publisher.publish(&client::bench_payload(seq, client::realtime_ns(), args.size))?;
    }
    let all_done = workers.wait_done(Duration::from_millis(args.every_ms) + Duration::from_secs(30));
    let secs = t0.elapsed().as_secs_f64();
    let cpu_secs = s.server.sample().cpu_secs - cpu_before;
    let reports = workers.reports()?;
    let verdict = Verdict::of(verify(&reports, messages, args.clients, all_done));
    Ok((Window { secs, cpu_secs, reports }, verdict))
}

impl PollingResult {
    /// The cost of a verified run.
    fn cost(&mut self, window: &Window) {
        // ANCHOR: cost
        let (reports, clients) = (&window.reports, self.clients);
        let delivered = (self.messages * clients as u64) as f64;
        self.requests = reports.iter().map(|r| r.requests).sum();
        self.bytes_sent = reports.iter().map(|r| r.bytes_sent).sum();
        self.bytes_received = reports.iter().map(|r| r.bytes_received).sum();
        self.requests_per_sec = self.requests as f64 / self.window_secs;
        self.server_cpu_per_sec = window.cpu_secs / self.window_secs;
        self.bytes_per_message = (self.bytes_sent + self.bytes_received) as f64 / delivered;
        self.setup_bytes_per_client = reports.iter().map(|r| r.setup_bytes).sum::<u64>() as f64 / clients.max(1) as f64;
        self.staleness_us = Some(Report::all_latencies(reports));
        // ANCHOR_END: cost
        if self.browser.is_some() {
            let extra: i64 = reports.iter().map(|r| r.extra_head_bytes).sum();
            let extra_setup: i64 = reports.iter().map(|r| r.extra_setup_bytes).sum();
            let all = (self.bytes_sent + self.bytes_received) as f64;
            self.minimal_bytes_per_message = Some((all - extra as f64) / delivered);
            self.minimal_setup_bytes_per_client = Some(self.setup_bytes_per_client - extra_setup as f64 / clients.max(1) as f64);
        }
    }
}

impl Measured for PollingResult {
    const SCENARIO: &'static str = "polling";

    fn setup(&self) -> String {
        format!("{} clients, {}/s for {}s", self.clients, self.rate, self.secs)
    }

    fn numbers(&self) -> String {
        let Some(p) = &self.staleness_us else { return String::new() };
        format!(
            "{:.1} req/s, server {:.3} CPU s/s, {:.0} B/msg (+{:.0} B setup/client), staleness p50 {} µs p99 {} µs max {} µs",
            self.requests_per_sec,
            self.server_cpu_per_sec,
            self.bytes_per_message,
            self.setup_bytes_per_client,
            p.p50,
            p.p99,
            p.max
        )
    }

    fn metrics(&self) -> Vec<(&'static str, f64)> {
        let mut m = vec![
            ("requests_per_sec", self.requests_per_sec),
            ("server_cpu_per_sec", self.server_cpu_per_sec),
            ("bytes_per_message", self.bytes_per_message),
            ("setup_bytes_per_client", self.setup_bytes_per_client),
        ];
        if let Some(b) = self.minimal_bytes_per_message {
            m.push(("minimal_bytes_per_message", b));
        }
        if let Some(p) = &self.staleness_us {
            m.extend([("stale_p50_us", p.p50 as f64), ("stale_p99_us", p.p99 as f64), ("stale_max_us", p.max as f64)]);
        }
        m
    }
}
