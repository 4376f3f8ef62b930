//! The deltas experiment (`rtlab deltas`): a live dashboard of many metrics
//! pushed to many viewers over SSE, as its whole state on every tick or as a
//! JSON Patch (RFC 6902, the `json-patch` crate) of what changed.
//!
//! The claim it tests: "sending only what changed saves ~98% of the bytes of
//! a 200-metric dashboard". Whether it does depends on one number the claim
//! leaves out — how much of the dashboard changes per tick — so the
//! experiment sweeps it: for each fraction of metrics changing per tick, the
//! same ticks are published once as full states and once as patches to a
//! fresh set of viewers on a real server, and the viewers count every byte
//! the kernel hands them (SSE framing included). A few viewers also parse
//! every event and rebuild the dashboard, which must equal the publisher's
//! at the end: a delta stream that loses or reorders a patch would fail that
//! check, where a byte count would not notice.
//!
//! The publisher is closed-loop on purpose: it publishes tick `k + 1` when
//! every viewer has tick `k`. Bytes and CPU per tick are what this measures,
//! not latency; closing the loop keeps the kernel's buffers from deciding the
//! result.
//!
//! The results document (`deltas.json`) carries the usual provenance; its
//! tables, findings and the claim's verdict are rendered from it.

use std::fmt::Write as _;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::client::{Publisher, Transport, subscribe};
use crate::report::format::{fmt_bytes, fmt_int, fmt_sig, fmt_us};
use crate::results::{Provenance, utc_now};
use crate::server::ServerProcess;

/// The document's format, checked when a document is read.
pub const SCHEMA: &str = "rtlab-deltas/1";

/// The file name of the document inside its directory.
pub const FILE: &str = "deltas.json";

/// How many viewers parse every event and rebuild the dashboard.
const CHECKED_VIEWERS: usize = 4;

/// `rtlab deltas`: full state against JSON Patch deltas, swept over the
/// fraction of metrics that change per tick.
#[derive(Debug, Clone, clap::Args)]
pub struct DeltasArgs {
    /// The lab that serves the viewers.
    #[arg(long, default_value = "mio")]
    pub runtime: String,
    /// Metrics on the dashboard.
    #[arg(long, default_value_t = 200)]
    pub metrics: usize,
    /// SSE viewers of the dashboard (the claim's figure is 10000).
    #[arg(long, default_value_t = 1000)]
    pub viewers: usize,
    /// Ticks published per measurement.
    #[arg(long, default_value_t = 40)]
    pub ticks: u64,
    /// Fractions of the metrics that change per tick, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0.01,0.05,0.2,0.5,1")]
    pub changed: Vec<f64>,
    /// Seed of the dashboard's values and of which metrics change.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The document (default `bench-results/<date>-deltas`) and its
    /// rendering (under `deltas/` of `--book`).
    #[command(flatten)]
    pub output: crate::results::Output,
}

// ANCHOR: document
/// One run of the experiment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeltasDoc {
    /// [`SCHEMA`].
    pub schema: String,
    pub started: String,
    pub wall_secs: f64,
    /// This command, the machine, the toolchain, the crates and the commit.
    #[serde(flatten)]
    pub provenance: Provenance,
    /// `/proc/loadavg` at the start and at the end (1-minute figures).
    pub load: (f64, f64),
    pub runtime: String,
    pub metrics: usize,
    pub viewers: usize,
    pub ticks: u64,
    pub seed: u64,
    /// One row per (fraction changed, encoding).
    pub rows: Vec<Row>,
}

/// One measurement: one encoding of one sweep point, to fresh viewers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    /// The fraction of the metrics that changed on each tick.
    pub changed: f64,
    /// `full` (the whole dashboard every tick) or `delta` (a JSON Patch).
    pub encoding: String,
    /// The published messages' sizes, bytes: mean, min, max.
    pub payload_mean: f64,
    pub payload_min: u64,
    pub payload_max: u64,
    /// Bytes every viewer received per tick on the wire (SSE framing
    /// included), averaged over viewers and ticks.
    pub wire_per_viewer_tick: f64,
    /// The server's CPU time (user + system) over the measurement, seconds.
    pub server_cpu_secs: f64,
    /// Events received, summed over viewers (must be viewers × ticks).
    pub events: u64,
    /// The checked viewers rebuilt the publisher's final dashboard exactly.
    pub verified: bool,
}
// ANCHOR_END: document

impl Row {
    /// Server CPU per tick, microseconds.
    pub fn cpu_per_tick_us(&self, ticks: u64) -> f64 {
        self.server_cpu_secs * 1e6 / ticks.max(1) as f64
    }
}

/// The dashboard: named metrics with two-decimal values, and the seeded
/// random walk that moves a fraction of them per tick.
#[derive(Debug, Clone)]
pub struct Dashboard {
    state: Map<String, Value>,
    rng: u64,
}

impl Dashboard {
    /// `metrics` metrics named `metric_000`… with seeded values.
    pub fn new(metrics: usize, seed: u64) -> Dashboard {
        let mut d = Dashboard { state: Map::new(), rng: seed ^ 0x9E37_79B9_7F4A_7C15 };
        for i in 0..metrics {
            let v = d.value();
            d.state.insert(format!("metric_{i:03}"), v);
        }
        d
    }

    /// splitmix64: a fixed, documented sequence (the data must be the same on
    /// every machine; no statistics rest on it).
    fn next(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value between 0 and 1000 with two decimals, as a dashboard shows it.
    fn value(&mut self) -> Value {
        Value::from((self.next() % 100_000) as f64 / 100.0)
    }

    /// The dashboard as JSON.
    pub fn json(&self) -> Value {
        Value::Object(self.state.clone())
    }

    /// Changes `round(fraction × metrics)` distinct metrics (at least one).
    pub fn tick(&mut self, fraction: f64) {
        let n = self.state.len();
        let k = ((fraction * n as f64).round() as usize).clamp(1, n);
        // A partial Fisher–Yates shuffle picks k distinct metrics.
        let mut idx: Vec<usize> = (0..n).collect();
        for i in 0..k {
            let j = i + (self.next() as usize) % (n - i);
            idx.swap(i, j);
        }
        for &i in &idx[..k] {
            let v = self.value();
            let key = format!("metric_{i:03}");
            self.state.insert(key, v);
        }
    }
}

/// The messages one sweep point publishes: (full states, patches), one per tick.
pub fn messages(metrics: usize, seed: u64, fraction: f64, ticks: u64) -> (Value, Vec<String>, Vec<String>) {
    let mut d = Dashboard::new(metrics, seed);
    let initial = d.json();
    let (mut full, mut delta) = (Vec::new(), Vec::new());
    let mut prev = initial.clone();
    for _ in 0..ticks {
        d.tick(fraction);
        let next = d.json();
        full.push(next.to_string());
        delta.push(serde_json::to_string(&json_patch::diff(&prev, &next)).expect("a patch serializes"));
        prev = next;
    }
    (initial, full, delta)
}

/// What the reader thread counted.
#[derive(Debug, Default)]
struct Counts {
    bytes: u64,
    events: u64,
    /// The checked viewers' raw streams.
    checked: Vec<Vec<u8>>,
}

/// Counts SSE events in a viewer's stream as it arrives in pieces: an event
/// is a line that starts with `data:` (each event here has one; keep-alive
/// comments and `id:` lines are not events). The state carries a line
/// start, or a `data:` prefix, across reads.
#[derive(Debug, Clone, Copy)]
struct EventCounter {
    /// How many bytes of `data:` the current line has matched so far;
    /// `None` when the line cannot be a data line any more.
    matched: Option<u8>,
}

impl EventCounter {
    const PREFIX: &'static [u8] = b"data:";

    fn new() -> EventCounter {
        EventCounter { matched: Some(0) }
    }

    /// Feeds bytes; returns the events that started in them.
    fn feed(&mut self, bytes: &[u8]) -> u64 {
        let mut events = 0;
        for &b in bytes {
            if b == b'\n' {
                self.matched = Some(0);
                continue;
            }
            if let Some(m) = self.matched {
                let m = usize::from(m);
                if m < Self::PREFIX.len() && b == Self::PREFIX[m] {
                    self.matched = Some(m as u8 + 1);
                    if m + 1 == Self::PREFIX.len() {
                        events += 1;
                        self.matched = None;
                    }
                } else {
                    self.matched = None;
                }
            }
        }
        events
    }
}

/// Subscribes `viewers` SSE clients to `topic`, then reads them all on one
/// thread (mio) until `stop`, counting bytes and events.
fn open_viewers(
    addr: SocketAddr,
    topic: &str,
    viewers: usize,
    events: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> io::Result<std::thread::JoinHandle<io::Result<Counts>>> {
    let mut streams = Vec::with_capacity(viewers);
    let mut counts = Counts { checked: vec![Vec::new(); CHECKED_VIEWERS.min(viewers)], ..Counts::default() };
    for i in 0..viewers {
        let mut s = TcpStream::connect(addr)?;
        let sub = subscribe(&mut s, Transport::Sse, topic, Duration::from_secs(10))?;
        s.set_nonblocking(true)?;
        counts.bytes += sub.rest.len() as u64;
        let mut counter = EventCounter::new();
        let n = counter.feed(&sub.rest);
        counts.events += n;
        events.fetch_add(n, Ordering::Relaxed);
        if let Some(c) = counts.checked.get_mut(i) {
            c.extend_from_slice(&sub.rest);
        }
        streams.push((mio::net::TcpStream::from_std(s), counter));
    }
    Ok(std::thread::spawn(move || {
        let mut poll = mio::Poll::new()?;
        for (i, (s, _)) in streams.iter_mut().enumerate() {
            poll.registry().register(s, mio::Token(i), mio::Interest::READABLE)?;
        }
        let mut evs = mio::Events::with_capacity(1024);
        let mut buf = vec![0u8; 64 * 1024];
        while !stop.load(Ordering::Relaxed) {
            poll.poll(&mut evs, Some(Duration::from_millis(50)))?;
            for ev in &evs {
                let i = ev.token().0;
                let (s, counter) = &mut streams[i];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            let chunk = &buf[..n];
                            counts.bytes += n as u64;
                            let e = counter.feed(chunk);
                            counts.events += e;
                            events.fetch_add(e, Ordering::Relaxed);
                            if let Some(c) = counts.checked.get_mut(i) {
                                c.extend_from_slice(chunk);
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(counts)
    }))
}

/// The data lines of an SSE stream's events, in order (comments and
/// events without data, such as keep-alives, are skipped).
fn sse_data(stream: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stream).lines().filter_map(|l| l.strip_prefix("data: ")).map(str::to_owned).collect()
}

/// Rebuilds the dashboard from a checked viewer's stream.
fn rebuild(initial: &Value, encoding: &str, stream: &[u8]) -> Option<Value> {
    let mut doc = initial.clone();
    for data in sse_data(stream) {
        let v: Value = serde_json::from_str(&data).ok()?;
        if encoding == "full" {
            doc = v;
        } else {
            let p: json_patch::Patch = serde_json::from_value(v).ok()?;
            json_patch::patch(&mut doc, &p).ok()?;
        }
    }
    Some(doc)
}

/// One measurement: fresh viewers on `topic`, every tick published and
/// received by all of them.
fn measure(server: &ServerProcess, topic: &str, args: &DeltasArgs, fraction: f64, encoding: &str) -> io::Result<Row> {
    let (initial, full, delta) = messages(args.metrics, args.seed, fraction, args.ticks);
    let msgs = if encoding == "full" { full } else { delta };
    let events = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = open_viewers(server.addr, topic, args.viewers, events.clone(), stop.clone())?;
    let mut publisher = Publisher::connect(server.addr, topic)?;
    let cpu0 = server.sample().cpu_secs;
    let mut outcome = Ok(());
    for (k, m) in msgs.iter().enumerate() {
        publisher.publish(m.as_bytes())?;
        let want = (k as u64 + 1) * args.viewers as u64;
        let deadline = Instant::now() + Duration::from_secs(30);
        while events.load(Ordering::Relaxed) < want {
            if Instant::now() > deadline {
                outcome = Err(io::Error::other(format!(
                    "tick {}: {} of {want} events arrived within 30 s",
                    k + 1,
                    events.load(Ordering::Relaxed)
                )));
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        if outcome.is_err() {
            break;
        }
    }
    let cpu = server.sample().cpu_secs - cpu0;
    stop.store(true, Ordering::Relaxed);
    let counts = reader.join().map_err(|_| io::Error::other("the reader thread panicked"))??;
    outcome?;
    let expected = final_state(args, fraction);
    let verified = counts.events == args.ticks * args.viewers as u64
        && counts.checked.iter().all(|c| rebuild(&initial, encoding, c).is_some_and(|d| Some(&d) == expected.as_ref()));
    let sizes: Vec<u64> = msgs.iter().map(|m| m.len() as u64).collect();
    Ok(Row {
        changed: fraction,
        encoding: encoding.to_owned(),
        payload_mean: sizes.iter().sum::<u64>() as f64 / sizes.len().max(1) as f64,
        payload_min: sizes.iter().copied().min().unwrap_or(0),
        payload_max: sizes.iter().copied().max().unwrap_or(0),
        wire_per_viewer_tick: counts.bytes as f64 / (args.viewers as f64 * args.ticks as f64),
        server_cpu_secs: cpu,
        events: counts.events,
        verified,
    })
}

/// The publisher's dashboard after every tick of one sweep point.
fn final_state(args: &DeltasArgs, fraction: f64) -> Option<Value> {
    let mut d = Dashboard::new(args.metrics, args.seed);
    for _ in 0..args.ticks {
        d.tick(fraction);
    }
    Some(d.json())
}

/// `rtlab deltas`.
pub fn run(args: &DeltasArgs) -> io::Result<()> {
    if let Some(dir) = &args.output.render {
        let doc: DeltasDoc = crate::results::read_document(dir, FILE, SCHEMA)?;
        return write_rendering(&doc, dir, args.output.book.as_deref());
    }
    crate::raise_nofile_limit();
    let started = Instant::now();
    // The commit and the tree as the run starts (what the binary was built
    // from, if it was built from this tree), not as it ends.
    let provenance = Provenance::detect();
    let exe = crate::exe()?;
    let server = ServerProcess::start(&exe, &args.runtime, &[], None)?;
    let mut rows = Vec::new();
    let load0 = crate::procfs::loadavg();
    for (i, &fraction) in args.changed.iter().enumerate() {
        for encoding in ["full", "delta"] {
            let topic = format!("dash{i}-{encoding}");
            let row = measure(&server, &topic, args, fraction, encoding)?;
            crate::say(&format!(
                "changed {:>5}: {encoding:>5}: {} per viewer per tick, server CPU {} per tick{}",
                percent(fraction),
                fmt_bytes(row.wire_per_viewer_tick),
                fmt_us(row.cpu_per_tick_us(args.ticks)),
                if row.verified { "" } else { "  NOT VERIFIED" }
            ));
            rows.push(row);
        }
    }
    server.stop(Duration::from_secs(5));
    let (date, stamp) = utc_now();
    let doc = DeltasDoc {
        schema: SCHEMA.to_owned(),
        started: stamp,
        wall_secs: started.elapsed().as_secs_f64(),
        provenance,
        load: (load0, crate::procfs::loadavg()),
        runtime: args.runtime.clone(),
        metrics: args.metrics,
        viewers: args.viewers,
        ticks: args.ticks,
        seed: args.seed,
        rows,
    };
    let dir = args.output.out.clone().unwrap_or_else(|| PathBuf::from("bench-results").join(format!("{date}-deltas")));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join(FILE), serde_json::to_string_pretty(&doc).map_err(io::Error::other)? + "\n")?;
    write_rendering(&doc, &dir, args.output.book.as_deref())?;
    if doc.rows.iter().any(|r| !r.verified) {
        return Err(io::Error::other("a measurement failed its check (see NOT VERIFIED above)"));
    }
    Ok(())
}

fn write_rendering(doc: &DeltasDoc, dir: &Path, book: Option<&Path>) -> io::Result<()> {
    crate::results::write_rendering(&render(doc), dir, book.map(|b| b.join("deltas")))
}

/// The pairs (full, delta) of each sweep point, in sweep order.
fn pairs(doc: &DeltasDoc) -> Vec<(&Row, &Row)> {
    let mut out = Vec::new();
    for full in doc.rows.iter().filter(|r| r.encoding == "full") {
        if let Some(delta) = doc.rows.iter().find(|r| r.encoding == "delta" && r.changed == full.changed) {
            out.push((full, delta));
        }
    }
    out
}

fn pct_of(part: f64, whole: f64) -> String {
    percent(part / whole)
}

/// A fraction as a percentage, three significant digits, no trailing
/// zeros: 0.01 → "1%", 0.982 → "98.2%".
fn percent(x: f64) -> String {
    let s = fmt_sig(x * 100.0);
    let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.') } else { &s };
    format!("{s}%")
}

/// Every markdown file of the rendering, by path relative to its root.
pub fn render(doc: &DeltasDoc) -> Vec<(PathBuf, String)> {
    let mut table = String::from(
        "| metrics changed per tick | full state, per viewer per tick | JSON Patch, per viewer per tick | patch ÷ full | server CPU per tick, full | server CPU per tick, patch | verified |\n|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for (full, delta) in pairs(doc) {
        let _ = writeln!(
            table,
            "| {} | {} | {} | {} | {} | {} | {} |",
            percent(full.changed),
            fmt_bytes(full.wire_per_viewer_tick),
            fmt_bytes(delta.wire_per_viewer_tick),
            pct_of(delta.wire_per_viewer_tick, full.wire_per_viewer_tick),
            fmt_us(full.cpu_per_tick_us(doc.ticks)),
            fmt_us(delta.cpu_per_tick_us(doc.ticks)),
            if full.verified && delta.verified { "yes" } else { "**no**" },
        );
    }
    let mut findings = vec![format!(
        "A dashboard of {} metrics, {} SSE viewers on the {} lab, {} ticks per measurement; bytes are what each viewer's socket received (SSE framing included), CPU is the server's over the measurement. The load average was {} at the start and {} at the end on {} cores{}.",
        fmt_int(doc.metrics as f64),
        fmt_int(doc.viewers as f64),
        doc.runtime,
        doc.ticks,
        fmt_sig(doc.load.0),
        fmt_sig(doc.load.1),
        doc.provenance.machine.cores,
        if doc.load.0.max(doc.load.1) > doc.provenance.machine.cores as f64 { " — the machine was busy with other work, so the CPU figures are inflated; the bytes are exact" } else { "" },
    )];
    for (full, delta) in pairs(doc) {
        let saved = 1.0 - delta.wire_per_viewer_tick / full.wire_per_viewer_tick;
        findings.push(format!(
            "With {} of the metrics changing per tick, a patch carried {} per viewer against the full state's {}: {} {} bytes; at {} viewers that is {} against {} per tick leaving the server.",
            percent(full.changed),
            fmt_bytes(delta.wire_per_viewer_tick),
            fmt_bytes(full.wire_per_viewer_tick),
            percent(saved.abs()),
            if saved >= 0.0 { "fewer" } else { "more" },
            fmt_int(doc.viewers as f64),
            fmt_bytes(delta.wire_per_viewer_tick * doc.viewers as f64),
            fmt_bytes(full.wire_per_viewer_tick * doc.viewers as f64),
        ));
    }
    let findings_text = findings.iter().map(|f| format!("{f}\n")).collect::<Vec<_>>().join("\n");
    vec![
        (PathBuf::from("tables/deltas.md"), table),
        (PathBuf::from("findings/deltas.md"), findings_text),
        (PathBuf::from("claims/deltas.md"), verdict(doc).replace('|', "\\|")),
    ]
}

/// The claim's verdict, one line (it is included in a table cell).
pub fn verdict(doc: &DeltasDoc) -> String {
    let p = pairs(doc);
    if p.is_empty() || p.iter().any(|(f, d)| !f.verified || !d.verified) {
        return "**not yet measured**: the run has no verified pair of measurements.".to_owned();
    }
    const CLAIMED_SAVING: f64 = 0.98;
    let saving = |f: &Row, d: &Row| 1.0 - d.wire_per_viewer_tick / f.wire_per_viewer_tick;
    let points: Vec<String> = p
        .iter()
        .map(|(f, d)| {
            let s = saving(f, d);
            let what = if s >= 0.0 { "saved" } else { "more bytes than the full state" };
            format!("{} changing: {} {what}", percent(f.changed), percent(s.abs()))
        })
        .collect();
    let holds: Vec<f64> = p.iter().filter(|(f, d)| saving(f, d) >= CLAIMED_SAVING - 0.005).map(|(f, _)| f.changed).collect();
    let best = p.iter().map(|(f, d)| (saving(f, d), f.changed)).fold((f64::MIN, 0.0), |a, b| if b.0 > a.0 { b } else { a });
    let worse_from = p.iter().filter(|(f, d)| saving(f, d) < 0.0).map(|(f, _)| f.changed).fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.min(x))));
    let word = if holds.len() == p.len() {
        "**holds**".to_owned()
    } else if holds.is_empty() {
        format!(
            "**does not hold as stated; the saving depends on how much changes per tick** and stayed below ~98% at every fraction measured (at most {} saved, with {} changing)",
            percent(best.0),
            percent(best.1)
        )
    } else {
        "**depends on how much of the dashboard changes per tick**".to_owned()
    };
    format!(
        "{word}, measured with {} metrics and {} SSE viewers (bytes per viewer, SSE framing included): {}.{}{}",
        fmt_int(doc.metrics as f64),
        fmt_int(doc.viewers as f64),
        points.join("; "),
        match holds.iter().copied().fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x)))) {
            Some(max) if holds.len() < p.len() => format!(" The claim's ~98% holds up to {} of the metrics changing per tick.", percent(max)),
            _ => String::new(),
        },
        match worse_from {
            Some(f) => format!(" From {} changing, the patch cost more than the whole state.", percent(f)),
            None => String::new(),
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dashboard_moves_the_asked_fraction_and_patches_rebuild_it() {
        let (initial, full, delta) = messages(200, 7, 0.05, 5);
        assert_eq!(full.len(), 5);
        // 5% of 200: every patch replaces 10 metrics.
        for d in &delta {
            let p: Vec<Value> = serde_json::from_str(d).unwrap();
            assert_eq!(p.len(), 10, "{d}");
            assert!(p.iter().all(|op| op["op"] == "replace"));
        }
        // Rebuilding from an SSE stream of the patches gives the last full state.
        let stream: String = delta.iter().enumerate().map(|(i, d)| format!("id: {}\ndata: {d}\n\n", i + 1)).collect();
        let rebuilt = rebuild(&initial, "delta", stream.as_bytes()).unwrap();
        assert_eq!(rebuilt, serde_json::from_str::<Value>(full.last().unwrap()).unwrap());
        // Keep-alive comments are not events, split anywhere across reads.
        let with_comments = format!(": keep-alive\n\n{stream}: keep-alive\n\n");
        for split in [1, 3, 7, 100] {
            let mut counter = EventCounter::new();
            let events: u64 = with_comments.as_bytes().chunks(split).map(|c| counter.feed(c)).sum();
            assert_eq!(events, 5, "split every {split} bytes");
        }
        assert_eq!(rebuild(&initial, "delta", with_comments.as_bytes()).unwrap(), rebuilt);
        // A lost patch is caught.
        let lossy: String = delta.iter().skip(1).map(|d| format!("data: {d}\n\n")).collect();
        assert_ne!(rebuild(&initial, "delta", lossy.as_bytes()).unwrap(), rebuilt);
        // The same seed gives the same data.
        assert_eq!(messages(200, 7, 0.05, 5).1, full);
    }

    fn row(changed: f64, encoding: &str, wire: f64) -> Row {
        Row {
            changed,
            encoding: encoding.to_owned(),
            payload_mean: wire,
            payload_min: 0,
            payload_max: 0,
            wire_per_viewer_tick: wire,
            server_cpu_secs: 0.5,
            events: 0,
            verified: true,
        }
    }

    #[test]
    fn the_verdict_depends_on_the_fraction() {
        let mut doc = DeltasDoc {
            schema: SCHEMA.to_owned(),
            started: String::new(),
            wall_secs: 0.0,
            provenance: Provenance::default(),
            load: (0.5, 0.5),
            runtime: "mio".to_owned(),
            metrics: 200,
            viewers: 10_000,
            ticks: 10,
            seed: 1,
            rows: vec![row(0.01, "full", 5000.0), row(0.01, "delta", 90.0), row(1.0, "full", 5000.0), row(1.0, "delta", 9000.0)],
        };
        let v = verdict(&doc);
        assert!(v.starts_with("**depends on how much of the dashboard changes per tick**"), "{v}");
        assert!(v.contains("1% changing: 98.2% saved; 100% changing: 80% more bytes than the full state."), "{v}");
        assert!(v.contains("holds up to 1% of the metrics"), "{v}");
        assert!(v.ends_with("From 100% changing, the patch cost more than the whole state."), "{v}");
        doc.rows[1].wire_per_viewer_tick = 200.0;
        let v = verdict(&doc);
        assert!(v.starts_with("**does not hold as stated; the saving depends on how much changes per tick** and stayed below ~98% at every fraction measured (at most 96% saved, with 1% changing)"), "{v}");
        let files = render(&doc);
        assert!(files[1].1.contains(": 80% more bytes; at 10,000 viewers"), "{}", files[1].1);
        doc.rows[1].verified = false;
        assert!(verdict(&doc).starts_with("**not yet measured**"));
    }
}
