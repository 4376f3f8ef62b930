//! The polling sweep (`rtlab bench polling-sweep`): where each transport
//! becomes the cheaper one.
//!
//! The polling scenario ([`crate::polling`]) measures one workload; "polling
//! is fine at low rates" is a statement about many. The sweep runs it over
//! a grid — update rate U × short-poll period P × clients C, for short
//! polling, long polling, SSE and WebSocket, on each lab asked for — each
//! cell against a fresh server, each repeated, the repeats interleaved (the
//! whole grid once, then again) so that a slow minute of the shared machine
//! does not land on one cell's every run. Long polling's "period" is its
//! hold timeout, 60 s, longer than any window: a long poll is always
//! answered by an update.
//!
//! A cell publishes `max(min_updates, U × min_secs)` updates at U a second,
//! so the lowest rates still deliver several, and measures what
//! [`crate::polling::PollingResult`] does: requests per second, server CPU
//! (per second and per delivered message), bytes per delivered message
//! (with the browser's request headers of `--browser-headers`, and what the
//! same requests would have cost with minimal heads), staleness p50/p99
//! (HDR histograms). The document (`sweep.json`, under
//! `bench-results/polling/`) keeps every run with its provenance and
//! conditions; [`render`] turns it into a table, findings (a difference
//! only where the repeats' ranges do not overlap), two crossover plots
//! (server CPU per second and bytes per second against the update rate, a
//! panel per lab) and the verdicts of two claims.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Instant;

use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::axes::{PlacementMode, Transport};
use crate::headers::BrowserHeaders;
use crate::outcome::Run;
use crate::polling::{PollingArgs, PollingResult};
use crate::report::charts::{Axis, Line, PlotResult, SIZE, line_chart, no_data};
use crate::report::findings::{Diff, and_list, diff, ratio};
use crate::report::format::{fmt_bytes, fmt_int, fmt_sig, fmt_us};
use crate::results::{Provenance, Stat, utc_now};
use crate::{Common, procfs};

/// The document's format, checked when a document is read.
pub const SCHEMA: &str = "rtlab-polling-sweep/1";

/// The file name of the document inside its directory.
pub const FILE: &str = "sweep.json";

/// Where the committed sweep and the browser capture live.
pub const COMMITTED: &str = "bench-results/polling";

/// `rtlab bench polling-sweep`: the polling scenario over update rate ×
/// period × clients, every transport, each lab asked for.
#[derive(Debug, Clone, clap::Args)]
pub struct SweepArgs {
    /// Labs to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "mio,tokio")]
    pub runtimes: Vec<String>,
    /// Transports, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "short-poll,long-poll,sse,ws")]
    pub transports: Vec<Transport>,
    /// Update rates U (per second), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0.1,1,10")]
    pub rates: Vec<f64>,
    /// Short polling's periods P (seconds), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,5,15")]
    pub periods: Vec<f64>,
    /// Clients C of every cell.
    #[arg(long, default_value_t = 1000)]
    pub clients: usize,
    /// A larger C, measured at one rate and period only (0: none).
    #[arg(long, default_value_t = 10_000)]
    pub large_clients: usize,
    /// The rate of the larger C's cells.
    #[arg(long, default_value_t = 1.0)]
    pub large_rate: f64,
    /// The short-poll period of the larger C's cells (seconds); its other
    /// transports are SSE only.
    #[arg(long, default_value_t = 5.0)]
    pub large_period: f64,
    /// Runs per cell (the whole grid is run once per repeat).
    #[arg(long, default_value_t = 2)]
    pub repeats: usize,
    /// Fewest updates a cell publishes.
    #[arg(long, default_value_t = 2)]
    pub min_updates: u64,
    /// A cell publishes for at least this long (seconds), at high rates.
    #[arg(long, default_value_t = 3.0)]
    pub min_secs: f64,
    /// Update size in bytes.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// The browser header capture the clients send ("none": minimal heads).
    #[arg(long, default_value = "bench-results/polling/chromium-headers.json")]
    pub browser_headers: String,
    /// Where the server and the clients run.
    #[arg(long, value_enum, default_value = "pinned")]
    pub placement: PlacementMode,
    /// Where to write the document and its rendering.
    #[arg(long, default_value = COMMITTED)]
    pub out: PathBuf,
    /// Also write the rendering into this directory's `polling/` (the
    /// book's `book/src/generated`).
    #[arg(long)]
    pub book: Option<PathBuf>,
    /// Render an existing document's directory instead of measuring.
    #[arg(long)]
    pub render: Option<PathBuf>,
}

// ANCHOR: document
/// One sweep: provenance, conditions, the grid, and every run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SweepDoc {
    /// [`SCHEMA`].
    pub schema: String,
    pub started: String,
    pub wall_secs: f64,
    /// This command, the machine, the toolchain, the crates and the commit.
    #[serde(flatten)]
    pub provenance: Provenance,
    /// `/proc/loadavg` at the start and at the end (1-minute figures).
    pub load: (f64, f64),
    /// The run's conditions in words, measured
    /// ([`crate::results::conditions`]; the name is older than the
    /// measurement): said in every rendering.
    pub shared_machine: String,
    pub placement: PlacementMode,
    pub repeats: usize,
    pub size: usize,
    /// The browser capture the clients sent (absent: minimal heads).
    pub browser_headers: Option<crate::headers::Capture>,
    /// Every run, in the order they ran.
    pub runs: Vec<SweepRun>,
}

/// One run of one cell.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SweepRun {
    /// Which pass over the grid (0-based).
    pub repeat: usize,
    /// Lab, transport, verdict, conditions, and the polling result.
    #[serde(flatten)]
    pub run: Run<PollingResult>,
}
// ANCHOR_END: document

/// A cell of the grid: what a run was asked.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub runtime: String,
    pub transport: Transport,
    pub rate: f64,
    /// Short polling only: its period, ms.
    pub every_ms: Option<u64>,
    pub clients: usize,
}

impl Point {
    fn of(r: &SweepRun) -> Point {
        let (info, res) = (&r.run.info, &r.run.result);
        Point {
            runtime: info.runtime.clone(),
            transport: info.transport,
            rate: res.rate,
            every_ms: (info.transport == Transport::ShortPoll).then_some(res.every_ms),
            clients: res.clients,
        }
    }

    /// The transport as the tables and plots name it: short polls with
    /// their period.
    pub fn series(&self) -> String {
        match self.every_ms {
            Some(ms) => format!("short-poll {}", secs(ms as f64 / 1000.0)),
            None => self.transport.name().to_owned(),
        }
    }
}

/// "1 s", "0.5 s", "30 s".
fn secs(s: f64) -> String {
    format!("{} s", fmt_num(s))
}

/// A rate or period as typed: "0.1", "1", "10".
fn fmt_num(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// The cells of the grid, in the order one pass runs them.
pub fn grid(args: &SweepArgs) -> Vec<Point> {
    let mut points = Vec::new();
    let every = |p: f64| Some((p * 1000.0).round() as u64);
    for runtime in &args.runtimes {
        for &transport in &args.transports {
            for &rate in &args.rates {
                if transport == Transport::ShortPoll {
                    for &p in &args.periods {
                        points.push(Point { runtime: runtime.clone(), transport, rate, every_ms: every(p), clients: args.clients });
                    }
                } else {
                    points.push(Point { runtime: runtime.clone(), transport, rate, every_ms: None, clients: args.clients });
                }
            }
        }
        if args.large_clients > 0 {
            for transport in [Transport::ShortPoll, Transport::Sse].into_iter().filter(|t| args.transports.contains(t)) {
                let every_ms = (transport == Transport::ShortPoll).then(|| every(args.large_period)).flatten();
                points.push(Point { runtime: runtime.clone(), transport, rate: args.large_rate, every_ms, clients: args.large_clients });
            }
        }
    }
    points
}

/// The updates a cell publishes, and for how long (seconds).
pub fn updates(args: &SweepArgs, rate: f64) -> (u64, f64) {
    let n = ((rate * args.min_secs).round() as u64).max(args.min_updates).max(1);
    (n, n as f64 / rate.max(1e-3))
}

/// `rtlab bench polling-sweep`: runs the grid (or renders a document);
/// returns false if a run failed verification.
pub fn run(args: &SweepArgs) -> io::Result<bool> {
    if let Some(dir) = &args.render {
        let doc = read(dir)?;
        write_rendering(&doc, dir, args.book.as_deref())?;
        return Ok(doc.runs.iter().all(|r| r.run.info.verdict.is_verified()));
    }
    let started = Instant::now();
    let provenance = Provenance::detect();
    let headers = if args.browser_headers == "none" { None } else { Some(PathBuf::from(&args.browser_headers)) };
    let capture = headers.as_deref().map(BrowserHeaders::read).transpose()?.map(|b| b.capture);
    let busy0 = crate::results::busy_before();
    let load0 = procfs::loadavg();
    let points = grid(args);
    let mut runs = Vec::new();
    let total = points.len() * args.repeats;
    for repeat in 0..args.repeats {
        for p in &points {
            let (messages, secs) = updates(args, p.rate);
            let polling = PollingArgs {
                common: Common { placement: args.placement, ..Common::new(&p.runtime) },
                transport: p.transport,
                clients: p.clients,
                rate: p.rate,
                secs,
                every_ms: p.every_ms.unwrap_or(1000),
                size: args.size,
                browser_headers: headers.clone(),
            };
            let run = crate::polling::run(&polling)?;
            crate::say(&format!(
                "[{}/{total}] {} {} {}/s C={} ({messages} updates): {}",
                runs.len() + 1,
                p.runtime,
                p.series(),
                fmt_num(p.rate),
                p.clients,
                match run.info.verdict.reason() {
                    None => crate::outcome::Measured::numbers(&run.result),
                    Some(why) => format!("NOT VERIFIED: {why}"),
                }
            ));
            runs.push(SweepRun { repeat, run });
        }
    }
    let (_, stamp) = utc_now();
    let load = (load0, procfs::loadavg());
    let doc = SweepDoc {
        schema: SCHEMA.to_owned(),
        started: stamp,
        wall_secs: started.elapsed().as_secs_f64(),
        shared_machine: crate::results::conditions(busy0, provenance.machine.cores, load),
        provenance,
        load,
        placement: args.placement,
        repeats: args.repeats,
        size: args.size,
        browser_headers: capture,
        runs,
    };
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(args.out.join(FILE), serde_json::to_string_pretty(&doc).map_err(io::Error::other)? + "\n")?;
    write_rendering(&doc, &args.out, args.book.as_deref())?;
    Ok(doc.runs.iter().all(|r| r.run.info.verdict.is_verified()))
}

/// Reads `dir/sweep.json`, checking its schema.
pub fn read(dir: &Path) -> io::Result<SweepDoc> {
    let doc: SweepDoc = serde_json::from_slice(&std::fs::read(dir.join(FILE))?).map_err(io::Error::other)?;
    if doc.schema != SCHEMA {
        return Err(io::Error::other(format!("{}: schema {:?}, expected {SCHEMA:?}", dir.display(), doc.schema)));
    }
    Ok(doc)
}

fn write_rendering(doc: &SweepDoc, dir: &Path, book: Option<&Path>) -> io::Result<()> {
    crate::results::write_rendering_with_plots(&render(doc), dir, book.map(|b| b.join("polling")), |p| plots(doc, p))
}

/// One cell's runs, summarized: each measure's [`Stat`] over the verified
/// repeats.
#[derive(Debug, Clone)]
pub struct CellStats {
    pub point: Point,
    pub runs: usize,
    pub verified: usize,
    pub requests_per_sec: Stat,
    pub cpu_per_sec: Stat,
    /// Server CPU per delivered message, µs.
    pub cpu_us_per_message: Stat,
    pub bytes_per_message: Stat,
    pub minimal_bytes_per_message: Stat,
    /// Bytes on the wire per second (browser heads when sent).
    pub bytes_per_sec: Stat,
    pub minimal_bytes_per_sec: Stat,
    /// Bytes per HTTP request, request and response (polls only).
    pub bytes_per_request: Stat,
    pub stale_p50_us: Stat,
    pub stale_p99_us: Stat,
}

/// Every cell of the document, in the order they first ran.
pub fn cells(doc: &SweepDoc) -> Vec<CellStats> {
    let mut points: Vec<Point> = Vec::new();
    for r in &doc.runs {
        let p = Point::of(r);
        if !points.contains(&p) {
            points.push(p);
        }
    }
    points
        .into_iter()
        .map(|point| {
            let runs: Vec<&PollingResult> = doc.runs.iter().filter(|r| Point::of(r) == point).map(|r| &r.run.result).collect();
            let ok: Vec<&PollingResult> = doc
                .runs
                .iter()
                .filter(|r| Point::of(r) == point && r.run.info.verdict.is_verified())
                .map(|r| &r.run.result)
                .collect();
            let stat = |f: &dyn Fn(&PollingResult) -> f64| Stat::of(ok.iter().map(|r| f(r)).collect());
            let delivered = |r: &PollingResult| (r.clients as u64 * r.messages) as f64;
            let minimal = |r: &PollingResult| r.minimal_bytes_per_message.unwrap_or(r.bytes_per_message);
            CellStats {
                runs: runs.len(),
                verified: ok.len(),
                requests_per_sec: stat(&|r| r.requests_per_sec),
                cpu_per_sec: stat(&|r| r.server_cpu_per_sec),
                cpu_us_per_message: stat(&|r| r.server_cpu_per_sec * r.window_secs * 1e6 / delivered(r)),
                bytes_per_message: stat(&|r| r.bytes_per_message),
                minimal_bytes_per_message: stat(&|r| minimal(r)),
                bytes_per_sec: stat(&|r| r.bytes_per_message * delivered(r) / r.window_secs),
                minimal_bytes_per_sec: stat(&|r| minimal(r) * delivered(r) / r.window_secs),
                bytes_per_request: stat(&|r| r.bytes_per_message * delivered(r) / (r.requests.max(1)) as f64),
                stale_p50_us: stat(&|r| r.staleness_us.map_or(0.0, |p| p.p50 as f64)),
                stale_p99_us: stat(&|r| r.staleness_us.map_or(0.0, |p| p.p99 as f64)),
                point,
            }
        })
        .collect()
}

/// A stat as a table shows it: the median, and ± half the range when the
/// repeats differ by more than 1%.
fn cell_text(s: &Stat, fmt: fn(f64) -> String) -> String {
    if s.values.is_empty() {
        return "—".to_owned();
    }
    let spread = s.half_range_pct();
    if s.values.len() > 1 && spread >= 1.0 { format!("{} ±{spread:.0}%", fmt(s.median())) } else { fmt(s.median()) }
}

fn fmt_cpu(v: f64) -> String {
    format!("{v:.4}")
}

/// The transports' order in tables and legends: short polls by period, then the rest.
fn order(p: &Point) -> (String, usize, u64, u64, usize) {
    let t = Transport::ALL.iter().position(|&t| t == p.transport).unwrap_or(0);
    (p.runtime.clone(), p.clients, t as u64, p.every_ms.unwrap_or(0), (p.rate * 1000.0) as usize)
}

/// Every file of the rendering but the plots, by path relative to its root.
pub fn render(doc: &SweepDoc) -> Vec<(PathBuf, String)> {
    let mut cs = cells(doc);
    cs.sort_by_key(|c| order(&c.point));
    let mut table = String::from(
        "| lab | clients | transport | updates/s | requests/s | server CPU s/s | server CPU per delivered update | bytes per update, browser heads | bytes per update, minimal heads | staleness p50 | staleness p99 | runs verified |\n\
         |---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for c in &cs {
        let _ = writeln!(
            table,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {}/{} |",
            c.point.runtime,
            fmt_int(c.point.clients as f64),
            c.point.series(),
            fmt_num(c.point.rate),
            cell_text(&c.requests_per_sec, fmt_sig),
            cell_text(&c.cpu_per_sec, fmt_cpu),
            cell_text(&c.cpu_us_per_message, fmt_us),
            if doc.browser_headers.is_some() { cell_text(&c.bytes_per_message, fmt_int) } else { "—".to_owned() },
            cell_text(&c.minimal_bytes_per_message, fmt_int),
            cell_text(&c.stale_p50_us, fmt_us),
            cell_text(&c.stale_p99_us, fmt_us),
            c.verified,
            c.runs,
        );
    }
    let _ = writeln!(
        table,
        "\nEach value is the median of the verified runs of the cell, ± half their range when they differ; the sweep ran the whole grid {} time{}, one pass after the other, each run against a fresh server ({} placement). {}.",
        doc.repeats,
        if doc.repeats == 1 { "" } else { "s" },
        doc.placement.name(),
        capitalize(&doc.shared_machine)
    );
    let findings = findings(doc, &cs);
    let headers = headers_table(doc);
    vec![
        (PathBuf::from("tables/sweep.md"), table),
        (PathBuf::from("findings/sweep.md"), findings.iter().map(|f| format!("* {f}\n")).collect()),
        (PathBuf::from("findings/crossover.md"), crossover_sentence(&cs) + "\n"),
        (PathBuf::from("tables/browser-headers.md"), headers),
        (PathBuf::from("claims/frames-and-headers.md"), frames_verdict(doc, &cs).replace('|', "\\|") + "\n"),
        (PathBuf::from("claims/polling-at-low-rates.md"), low_rates_verdict(&cs).replace('|', "\\|") + "\n"),
    ]
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next().map_or(String::new(), |f| f.to_uppercase().chain(c).collect())
}

/// The capture: per request kind, its header lines and its bytes.
fn headers_table(doc: &SweepDoc) -> String {
    let Some(cap) = &doc.browser_headers else {
        return "The clients sent minimal request heads (no browser capture).\n".to_owned();
    };
    let mut t = format!("Captured from headless Chromium {} (no cookies):\n\n| request | head, bytes | header lines |\n|---|---:|---|\n", cap.browser);
    for (what, k) in [("`fetch` poll", &cap.kinds.poll), ("`EventSource`", &cap.kinds.sse), ("`WebSocket` upgrade", &cap.kinds.ws)] {
        let names: Vec<String> = k.headers.iter().map(|l| format!("`{}`", l.split(':').next().unwrap_or(l))).collect();
        let _ = writeln!(t, "| {what} | {} | {} |", fmt_int(k.bytes as f64), names.join(", "));
    }
    t
}

/// The cells at one (runtime, clients), by series.
fn at<'a>(cs: &'a [CellStats], runtime: &str, clients: usize, series: &str) -> Vec<&'a CellStats> {
    let mut v: Vec<&CellStats> =
        cs.iter().filter(|c| c.point.runtime == runtime && c.point.clients == clients && c.point.series() == series && c.verified > 0).collect();
    v.sort_by(|a, b| a.point.rate.total_cmp(&b.point.rate));
    v
}

/// The main grid's clients (the most cells) and the labs, in order.
fn main_grid(cs: &[CellStats]) -> Option<(usize, Vec<String>)> {
    let clients: BTreeSet<usize> = cs.iter().map(|c| c.point.clients).collect();
    let main = clients.into_iter().max_by_key(|n| cs.iter().filter(|c| c.point.clients == *n).count())?;
    let mut labs: Vec<String> = Vec::new();
    for c in cs {
        if !labs.contains(&c.point.runtime) {
            labs.push(c.point.runtime.clone());
        }
    }
    Some((main, labs))
}

/// The short-poll series of the grid, by period.
fn poll_series(cs: &[CellStats]) -> Vec<(u64, String)> {
    let mut p: Vec<(u64, String)> = cs.iter().filter_map(|c| Some((c.point.every_ms?, c.point.series()))).collect();
    p.sort();
    p.dedup();
    p
}

/// Where short polling with one period stops costing the server less CPU
/// than `push` does, in one lab: the rates at which it cost less, the same,
/// more (repeat ranges compared).
struct Crossing {
    less: Vec<f64>,
    same: Vec<f64>,
    more: Vec<f64>,
}

fn crossing(polls: &[&CellStats], push: &[&CellStats], measure: fn(&CellStats) -> &Stat) -> Crossing {
    let mut out = Crossing { less: Vec::new(), same: Vec::new(), more: Vec::new() };
    for p in polls {
        let Some(s) = push.iter().find(|s| s.point.rate == p.point.rate) else { continue };
        match diff(measure(p), measure(s)) {
            Diff::Less => out.less.push(p.point.rate),
            Diff::Same => out.same.push(p.point.rate),
            Diff::More => out.more.push(p.point.rate),
        }
    }
    out
}

fn rates(v: &[f64]) -> String {
    and_list(&v.iter().map(|r| fmt_num(*r)).collect::<Vec<_>>())
}

impl Crossing {
    /// "more at 0.1 and 1, no difference measured at 10, less at 20 updates/s"
    /// (in rate order, each group once).
    fn text(&self, more: &str, less: &str) -> String {
        let mut groups: Vec<(f64, String)> = Vec::new();
        if !self.more.is_empty() {
            groups.push((self.more[0], format!("{more} at {}", rates(&self.more))));
        }
        if !self.same.is_empty() {
            groups.push((self.same[0], format!("no difference measured at {}", rates(&self.same))));
        }
        if !self.less.is_empty() {
            groups.push((self.less[0], format!("{less} at {}", rates(&self.less))));
        }
        groups.sort_by(|a, b| a.0.total_cmp(&b.0));
        let n = groups.len();
        groups.into_iter().enumerate().map(|(i, (_, t))| if i + 1 == n { format!("{t} updates/s") } else { t }).collect::<Vec<_>>().join(", ")
    }
}

/// The rate where two series cross, interpolated on log-log axes between
/// the two measured rates where their order flips (medians); `None` if they
/// never flip.
fn crossover_rate(polls: &[&CellStats], push: &[&CellStats], measure: fn(&CellStats) -> &Stat) -> Option<f64> {
    let pairs: Vec<(f64, f64, f64)> = polls
        .iter()
        .filter_map(|p| {
            let s = push.iter().find(|s| s.point.rate == p.point.rate)?;
            Some((p.point.rate, measure(p).median(), measure(s).median()))
        })
        .filter(|(_, a, b)| *a > 0.0 && *b > 0.0)
        .collect();
    for w in pairs.windows(2) {
        let (r0, p0, s0) = w[0];
        let (r1, p1, s1) = w[1];
        let (d0, d1) = ((p0 / s0).ln(), (p1 / s1).ln());
        if d0 > 0.0 && d1 <= 0.0 || d0 <= 0.0 && d1 > 0.0 {
            let t = d0 / (d0 - d1);
            return Some((r0.ln() + t * (r1.ln() - r0.ln())).exp());
        }
    }
    None
}

fn cpu(c: &CellStats) -> &Stat {
    &c.cpu_per_sec
}

fn bytes(c: &CellStats) -> &Stat {
    &c.bytes_per_sec
}

/// The sentences of `findings/sweep.md`, computed from the data.
fn findings(doc: &SweepDoc, cs: &[CellStats]) -> Vec<String> {
    let mut out = Vec::new();
    let Some((main, labs)) = main_grid(cs) else { return vec!["The sweep has no runs.".to_owned()] };
    let failed: usize = cs.iter().map(|c| c.runs - c.verified).sum();
    if failed > 0 {
        out.push(format!("{failed} run{} failed verification and {} no numbers (see the table's last column).", if failed == 1 { "" } else { "s" }, if failed == 1 { "has" } else { "have" }));
    }
    let heads = if doc.browser_headers.is_some() { "with the browser's request headers" } else { "with minimal request heads" };
    for lab in &labs {
        let sse = at(cs, lab, main, "sse");
        for (ms, series) in poll_series(cs) {
            let polls = at(cs, lab, main, &series);
            if polls.is_empty() || sse.is_empty() {
                continue;
            }
            let c = crossing(&polls, &sse, cpu);
            let b = crossing(&polls, &sse, bytes);
            let cross = crossover_rate(&polls, &sse, cpu)
                .map_or(String::new(), |r| format!(" (the medians cross near {} updates/s)", fmt_sig(r)));
            out.push(format!(
                "{lab}, {} clients, short polling every {} against SSE: server CPU {}{cross}; bytes on the wire ({heads}) {}.",
                fmt_int(main as f64),
                secs(ms as f64 / 1000.0),
                c.text("more", "less"),
                b.text("more", "fewer"),
            ));
        }
        let stale: Vec<String> = poll_series(cs)
            .into_iter()
            .filter_map(|(ms, series)| {
                let v: Vec<f64> = at(cs, lab, main, &series).iter().map(|c| c.stale_p50_us.median()).collect();
                let (lo, hi) = (v.iter().copied().fold(f64::INFINITY, f64::min), v.iter().copied().fold(0.0, f64::max));
                (!v.is_empty()).then(|| format!("{} to {} every {}", fmt_us(lo), fmt_us(hi), secs(ms as f64 / 1000.0)))
            })
            .collect();
        let push_stale: Vec<f64> = ["sse", "ws", "long-poll"].iter().flat_map(|s| at(cs, lab, main, s)).map(|c| c.stale_p50_us.median()).collect();
        if !stale.is_empty() && !push_stale.is_empty() {
            out.push(format!(
                "{lab}: short polling's median staleness was {} (about half the period, whatever the rate); SSE's, WebSocket's and long polling's stayed within {} at every rate.",
                and_list(&stale),
                fmt_us(push_stale.iter().copied().fold(0.0, f64::max))
            ));
        }
        let lp = at(cs, lab, main, "long-poll");
        if !lp.is_empty() && !sse.is_empty() {
            let c = crossing(&lp, &sse, cpu);
            out.push(format!("{lab}: long polling against SSE, server CPU {}.", c.text("more", "less")));
        }
    }
    // The larger C.
    for c in cs.iter().filter(|c| c.point.clients != main && c.verified > 0) {
        let requests = if c.point.transport.is_push() { String::new() } else { format!("{} requests/s, ", fmt_sig(c.requests_per_sec.median())) };
        out.push(format!(
            "{} clients on {}, {} at {} updates/s: {requests}{} CPU-seconds per second of server, {} per delivered update.",
            fmt_int(c.point.clients as f64),
            c.point.runtime,
            c.point.series(),
            fmt_num(c.point.rate),
            fmt_cpu(c.cpu_per_sec.median()),
            fmt_us(c.cpu_us_per_message.median())
        ));
    }
    out.push(capitalize(&doc.shared_machine) + ".");
    out
}

/// The conclusion's sentence: short polling's server CPU against SSE's, at
/// each period and rate, per lab.
fn crossover_sentence(cs: &[CellStats]) -> String {
    let Some((main, labs)) = main_grid(cs) else { return "The polling sweep has not run.".to_owned() };
    let mut parts = Vec::new();
    for (ms, series) in poll_series(cs) {
        let per_lab: Vec<String> = labs
            .iter()
            .filter_map(|lab| {
                let (polls, sse) = (at(cs, lab, main, &series), at(cs, lab, main, "sse"));
                if polls.is_empty() || sse.is_empty() {
                    return None;
                }
                let cross = crossover_rate(&polls, &sse, cpu).map_or(String::new(), |r| format!(", crossing near {} updates/s", fmt_sig(r)));
                Some(format!("{lab} {}{cross}", crossing(&polls, &sse, cpu).text("more", "less")))
            })
            .collect();
        if !per_lab.is_empty() {
            parts.push(format!("every {}: {}", secs(ms as f64 / 1000.0), per_lab.join("; ")))
        }
    }
    if parts.is_empty() {
        return "The polling sweep has no short-poll and SSE cells to compare.".to_owned();
    }
    format!(
        "Short polling's server CPU against SSE's, {} clients, by polling period (a difference only where the repeats' ranges do not overlap) — {}.",
        fmt_int(main as f64),
        parts.join(" — ")
    )
}

/// The claim's figures: "a 2–14 byte frame header, ~800 bytes of headers".
const CLAIMED_POLL_BYTES: f64 = 800.0;

/// "A WebSocket message costs a 2–14 byte frame header, a poll ~800 bytes
/// of HTTP headers", from the sweep: the browser's poll, request and
/// response, against a WebSocket update.
pub fn frames_verdict(doc: &SweepDoc, cs: &[CellStats]) -> String {
    let Some(cap) = &doc.browser_headers else { return "**not yet measured**: the sweep ran without a browser capture.".to_owned() };
    // Polls at the lowest rate are mostly empty: the price of asking.
    let low = cs.iter().filter(|c| c.point.transport == Transport::ShortPoll && c.verified > 0).map(|c| c.point.rate).fold(f64::INFINITY, f64::min);
    let polls: Vec<&CellStats> = cs.iter().filter(|c| c.point.transport == Transport::ShortPoll && c.verified > 0 && c.point.rate == low).collect();
    let ws: Vec<&CellStats> = cs.iter().filter(|c| c.point.transport == Transport::Ws && c.verified > 0).collect();
    if polls.is_empty() || ws.is_empty() {
        return "**not yet measured**: the sweep has no verified short-poll or WebSocket cell.".to_owned();
    }
    let mean = |v: Vec<f64>| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let poll = mean(polls.iter().map(|c| c.bytes_per_request.median()).collect());
    let head = cap.kinds.poll.bytes as f64;
    // The minimal head with the same request line: what rtlab's clients send.
    let minimal_head = format!("{}\r\nHost: bench\r\n\r\n", cap.kinds.poll.request_line).len() as f64;
    let w = mean(ws.iter().map(|c| c.bytes_per_message.median()).collect());
    let frame = w - doc.size as f64;
    let word = if (CLAIMED_POLL_BYTES * 0.75..=CLAIMED_POLL_BYTES * 1.5).contains(&poll) {
        "**holds**"
    } else if poll < CLAIMED_POLL_BYTES * 0.75 {
        "**holds in direction; a poll cost less than ~800 bytes**"
    } else {
        "**holds in direction; a poll cost more than ~800 bytes**"
    };
    format!(
        "{word}: Chromium {} (headless, no cookies) sent a {}-byte request head for a `fetch` poll, against rtlab's minimal {} bytes; with it, a short poll, request and response, cost {} on the wire at {} updates/s (mostly empty polls), {} times a WebSocket update's {} ({} beyond its {}-byte payload: the frame header and the `{{\"id\":N,\"data\":…}}` envelope). A site's cookies would come on top of the poll's bytes.",
        cap.browser,
        fmt_int(head),
        fmt_int(minimal_head),
        fmt_bytes_plain(poll),
        fmt_num(low),
        ratio(poll / w),
        fmt_bytes_plain(w),
        fmt_int(frame),
        doc.size
    )
}

fn fmt_bytes_plain(v: f64) -> String {
    format!("{} bytes", fmt_int(v))
}

/// "Polling is fine at low rates", from the sweep: at the lowest rate
/// measured, short polling's server CPU against SSE's for every lab and
/// period, and the rates from which it cost less.
pub fn low_rates_verdict(cs: &[CellStats]) -> String {
    let Some((main, labs)) = main_grid(cs) else { return "**not yet measured**".to_owned() };
    let (mut more, mut not_more) = (Vec::new(), Vec::new());
    let mut cheaper_from = Vec::new();
    let (mut poll_cpu, mut sse_cpu) = (Vec::new(), Vec::new());
    let mut low = f64::INFINITY;
    for lab in &labs {
        let sse = at(cs, lab, main, "sse");
        for (ms, series) in poll_series(cs) {
            let polls = at(cs, lab, main, &series);
            let (Some(p0), Some(s0)) = (polls.first(), sse.first()) else { continue };
            if p0.point.rate != s0.point.rate {
                continue;
            }
            low = low.min(p0.point.rate);
            poll_cpu.push(p0.cpu_per_sec.median());
            sse_cpu.push(s0.cpu_per_sec.median());
            let name = format!("{lab} every {}", secs(ms as f64 / 1000.0));
            if diff(&p0.cpu_per_sec, &s0.cpu_per_sec) == Diff::More { more.push(name.clone()) } else { not_more.push(name.clone()) }
            let c = crossing(&polls, &sse, cpu);
            if let Some(r) = c.less.first() {
                cheaper_from.push(format!("{name} from {} updates/s", fmt_num(*r)));
            }
        }
    }
    if more.is_empty() && not_more.is_empty() {
        return "**not yet measured**: the sweep has no short-poll and SSE cells to compare.".to_owned();
    }
    let word = if not_more.is_empty() {
        "**does not hold against push**: at low rates an SSE stream costs the server almost nothing, a poll still costs a request"
    } else if more.is_empty() {
        "**holds in server CPU**"
    } else {
        "**depends on the period**"
    };
    let span = |v: &[f64]| crate::report::findings::span(v.iter().copied().fold(f64::INFINITY, f64::min), v.iter().copied().fold(0.0, f64::max), fmt_cpu);
    let mut parts = vec![format!(
        "at {} updates/s, {} clients short-polling took {} CPU-seconds per second of server against SSE's {}",
        fmt_num(low),
        fmt_int(main as f64),
        span(&poll_cpu),
        span(&sse_cpu)
    )];
    if !more.is_empty() {
        parts.push(format!("more than SSE: {}", and_list(&more)));
    }
    if !not_more.is_empty() {
        parts.push(format!("no more than SSE: {}", and_list(&not_more)));
    }
    parts.push(if cheaper_from.is_empty() {
        "short polling cost less than SSE at no rate measured".to_owned()
    } else {
        format!("short polling cost less than SSE only where updates outnumber polls: {}", and_list(&cheaper_from))
    });
    format!(
        "{word} ({}). Short polling's median staleness stayed about half its period at every rate, and each poll paid a request and a response head whether or not an update waited: see [the sweep](polling-cost.md#where-polling-stops-being-cheap).",
        parts.join("; ")
    )
}

/// A fixed colour per transport series (the labs are panels, side by side).
fn series_colour(series: &str) -> RGBColor {
    match series {
        "sse" => RGBColor(0, 114, 178),
        "ws" => RGBColor(0, 158, 115),
        "long-poll" => RGBColor(204, 121, 167),
        s if s.starts_with("short-poll") => {
            // Darker for shorter periods.
            let shade = ["short-poll 1 s", "short-poll 5 s", "short-poll 30 s"].iter().position(|x| *x == s).unwrap_or(1);
            [RGBColor(170, 60, 0), RGBColor(213, 94, 0), RGBColor(240, 160, 60)][shade]
        }
        _ => RGBColor(90, 90, 90),
    }
}

/// `plots/sweep-cpu.svg` and `plots/sweep-bytes.svg`: per lab, each
/// transport's cost per second against the update rate (log-log).
pub fn plots(doc: &SweepDoc, dir: &Path) -> PlotResult {
    let cs = cells(doc);
    type Measure = (&'static str, &'static str, fn(&CellStats) -> &Stat, fn(f64) -> String);
    let measures: [Measure; 2] = [
        ("sweep-cpu.svg", "server CPU-seconds per second", cpu, |v| format!("{v:.3}")),
        ("sweep-bytes.svg", "bytes on the wire per second", bytes, |v| fmt_bytes(v)),
    ];
    for (file, what, measure, fmt) in measures {
        let path = dir.join(file);
        let Some((main, labs)) = main_grid(&cs) else {
            no_data(&path, what)?;
            continue;
        };
        let size = (SIZE.0 * labs.len().max(1) as u32 / 2 + 200, SIZE.1 + 60);
        let root = SVGBackend::new(&path, size).into_drawing_area();
        root.fill(&WHITE)?;
        let panels = root.split_evenly((1, labs.len().max(1)));
        let mut series: Vec<String> = poll_series(&cs).into_iter().map(|(_, s)| s).collect();
        series.extend(["long-poll", "sse", "ws"].map(str::to_owned));
        for (lab, area) in labs.iter().zip(panels.iter()) {
            let lines: Vec<Line> = series
                .iter()
                .filter_map(|s| {
                    let pts: Vec<(f64, f64)> =
                        at(&cs, lab, main, s).iter().map(|c| (c.point.rate, measure(c).median())).filter(|p| p.1 > 0.0).collect();
                    (!pts.is_empty()).then(|| Line {
                        name: s.clone(),
                        colour: series_colour(s),
                        width: 2,
                        dashed: s.starts_with("short-poll"),
                        points: pts,
                    })
                })
                .collect();
            if lines.is_empty() {
                continue;
            }
            let title = format!("{lab}, {} clients: {what}", fmt_int(main as f64));
            line_chart(area, &title, "updates per second", what, &lines, (Axis::Log, Axis::Log), fmt_num, fmt)?;
        }
        root.present()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Percentiles;
    use crate::outcome::{RunInfo, Verdict};

    fn run(runtime: &str, transport: Transport, rate: f64, every_ms: u64, cpu: f64, repeat: usize) -> SweepRun {
        let clients = 100;
        let messages = 4;
        let result = PollingResult {
            clients,
            rate,
            secs: 4.0 / rate,
            every_ms,
            size: 64,
            messages,
            window_secs: 10.0,
            requests: if transport == Transport::ShortPoll { 1000 } else { 0 },
            requests_per_sec: 100.0,
            server_cpu_per_sec: cpu,
            bytes_sent: 100_000,
            bytes_received: 100_000,
            bytes_per_message: 500.0,
            setup_bytes_per_client: 300.0,
            staleness_us: Some(Percentiles { count: 400, p50: if transport == Transport::ShortPoll { every_ms * 500 } else { 900 }, p90: 0, p99: 2000, max: 3000 }),
            browser: None,
            minimal_bytes_per_message: Some(120.0),
            minimal_setup_bytes_per_client: None,
        };
        let info = RunInfo { runtime: runtime.to_owned(), transport, verdict: Verdict::Verified, clean_exit: true, env: Default::default() };
        SweepRun { repeat, run: Run { info, result } }
    }

    fn doc(runs: Vec<SweepRun>) -> SweepDoc {
        SweepDoc {
            schema: SCHEMA.to_owned(),
            started: String::new(),
            wall_secs: 0.0,
            provenance: Provenance::default(),
            load: (0.0, 0.0),
            shared_machine: "a shared machine".to_owned(),
            placement: PlacementMode::Pinned,
            repeats: 2,
            size: 64,
            browser_headers: None,
            runs,
        }
    }

    #[test]
    fn the_grid_and_the_updates_per_cell() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            sweep: SweepArgs,
        }
        let args = Cli::parse_from(["x", "--runtimes", "mio", "--rates", "0.1,10", "--periods", "1,30", "--large-clients", "5000"]).sweep;
        let g = grid(&args);
        // short-poll: 2 rates × 2 periods; long-poll, sse, ws: 2 rates each; the large C: short-poll and sse.
        assert_eq!(g.len(), 4 + 3 * 2 + 2);
        assert_eq!(g.iter().filter(|p| p.clients == 5000).map(|p| p.series()).collect::<Vec<_>>(), ["short-poll 5 s", "sse"]);
        assert_eq!(updates(&args, 0.1), (2, 20.0));
        assert_eq!(updates(&args, 10.0), (30, 3.0));
    }

    #[test]
    fn crossings_come_from_non_overlapping_repeats() {
        // Short polling every 1 s costs 0.02 CPU-s/s at every rate; SSE's
        // grows with the rate: 0.001, 0.02 (overlapping), 0.2.
        let mut runs = Vec::new();
        for repeat in 0..2 {
            let jitter = repeat as f64 * 0.0001;
            for (rate, sse) in [(0.1, 0.001), (1.0, 0.02), (10.0, 0.2)] {
                runs.push(run("mio", Transport::ShortPoll, rate, 1000, 0.02 + jitter, repeat));
                runs.push(run("mio", Transport::Sse, rate, 1000, sse + jitter, repeat));
            }
        }
        let d = doc(runs);
        let cs = cells(&d);
        assert_eq!(cs.len(), 6);
        assert_eq!(
            crossover_sentence(&cs),
            "Short polling's server CPU against SSE's, 100 clients, by polling period (a difference only where the repeats' ranges do not overlap) \
             — every 1 s: mio more at 0.1, no difference measured at 1, less at 10 updates/s, crossing near 1.00 updates/s."
        );
        let v = low_rates_verdict(&cs);
        assert!(v.starts_with("**does not hold against push**"), "{v}");
        assert!(v.contains("at 0.1 updates/s, 100 clients short-polling took 0.0200 CPU-seconds per second of server against SSE's 0.001"), "{v}");
        assert!(v.contains("more than SSE: mio every 1 s;"), "{v}");
        assert!(v.contains("only where updates outnumber polls: mio every 1 s from 10 updates/s"), "{v}");
        // Ranges that overlap are "no difference".
        let f = findings(&d, &cs);
        assert!(f[0].starts_with("mio, 100 clients, short polling every 1 s against SSE: server CPU more at 0.1, no difference measured at 1, less at 10 updates/s"), "{}", f[0]);
        // Failed runs count, and have no numbers.
        let mut d = d;
        d.runs[0].run.info.verdict = Verdict::Failed("lost one".into());
        let cs = cells(&d);
        assert_eq!((cs[0].runs, cs[0].verified), (2, 1));
        assert!(findings(&d, &cs)[0].starts_with("1 run failed verification"));
    }
}
