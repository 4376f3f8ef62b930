//! `rtlab bench` without a scenario: the matrix of every lab × transport ×
//! scenario, each cell repeated, into one results document, then the report.
//!
//! The labs are found, not listed here: the full labs are what `rtlab
//! runtimes` prints, and any other value `rtlab serve --runtime` accepts is
//! a baseline (the framework baseline). Which transports a lab serves is
//! probed against a fresh server of it, so a baseline that lacks one is
//! measured on the others.
//!
//! Three scales: `quick` (the default: a few minutes, small sizes), `full`
//! (`--full`: the committed run, idle at 1,000 / 10,000 / as many as one
//! process holds, fan-out to 100 / 1,000 / 10,000 subscribers) and `tiny`
//! (a test of the harness, not a measurement).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::backpressure::BackpressureArgs;
use crate::client::{self, Transport};
use crate::fanout::FanoutArgs;
use crate::idle::{Count, IdleArgs};
use crate::polling::PollingArgs;
use crate::results::{Cell, Document, Failure, Lab, Stat};
use crate::server::ServerProcess;
use crate::{Common, Scenario};

/// How big the matrix is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scale {
    /// A test of the harness: tiny sizes, seconds per scenario.
    Tiny,
    /// The quick matrix: small sizes, a few minutes in all.
    Quick,
    /// The committed run.
    Full,
}

impl Scale {
    fn name(self) -> &'static str {
        match self {
            Scale::Tiny => "tiny",
            Scale::Quick => "quick",
            Scale::Full => "full",
        }
    }
}

/// Options of the matrix (`rtlab bench [--full] ...`).
#[derive(Debug, Clone, clap::Args)]
pub struct MatrixArgs {
    /// The committed run: idle at 1,000 / 10,000 / max connections, fan-out
    /// to 100 / 1,000 / 10,000 subscribers, every policy, polling cost; its
    /// tables and plots also go to the book.
    #[arg(long, conflicts_with = "scale")]
    pub full: bool,
    /// The sizes: tiny (a harness test), quick (the default) or full.
    #[arg(long, value_enum)]
    pub scale: Option<Scale>,
    /// Labs to measure, comma-separated (default: every lab and baseline).
    #[arg(long, value_delimiter = ',')]
    pub runtimes: Vec<String>,
    /// Scenarios to run, comma-separated: idle, fanout, saturation,
    /// backpressure, polling (default: all).
    #[arg(long, value_delimiter = ',')]
    pub scenarios: Vec<String>,
    /// Transports, comma-separated: sse, ws, long-poll, short-poll (default:
    /// every one a scenario and a lab support).
    #[arg(long, value_delimiter = ',')]
    pub transports: Vec<String>,
    /// Runs of each cell (two or more show the spread).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=20))]
    pub repeats: u64,
    /// Results directory (default: bench-results/<date>-<host>, with a
    /// -quick or -tiny suffix for those scales).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also write the tables and plots the book includes into this
    /// directory (default for a complete --full run, one without --runtimes,
    /// --scenarios or --transports: book/src/generated, if it exists here).
    #[arg(long)]
    pub book: Option<PathBuf>,
}

impl MatrixArgs {
    fn scale(&self) -> Scale {
        if self.full { Scale::Full } else { self.scale.unwrap_or(Scale::Quick) }
    }
}

/// The sizes of every scenario at one scale.
#[derive(Debug, Clone, Serialize)]
pub struct Sizes {
    /// Idle connections per run.
    pub idle: Vec<Count>,
    /// Fan-out subscribers per run, messages, and milliseconds between them.
    pub fanout: Vec<usize>,
    pub fanout_messages: u64,
    pub fanout_interval_ms: u64,
    /// Saturation: subscribers per run; messages = min(1000, deliveries / subscribers).
    pub saturation: Vec<usize>,
    pub saturation_deliveries: u64,
    /// Backpressure: fast and stalled subscribers, rate, messages, size.
    pub bp_fast: usize,
    pub bp_stalled: usize,
    pub bp_rate: u64,
    pub bp_messages: u64,
    pub bp_size: usize,
    /// The policies compared (each also against a run without stalled subscribers).
    pub bp_policies: Vec<String>,
    /// Polling cost: clients, updates per second, seconds, short-poll period.
    pub poll_clients: usize,
    pub poll_rate: f64,
    pub poll_secs: f64,
    pub poll_every_ms: u64,
}

impl Sizes {
    /// The sizes of `scale`.
    pub fn of(scale: Scale) -> Sizes {
        let policies = ["disconnect", "drop-oldest", "unbounded"].map(String::from).to_vec();
        match scale {
            Scale::Tiny => Sizes {
                idle: vec![Count::N(50)],
                fanout: vec![20],
                fanout_messages: 10,
                fanout_interval_ms: 5,
                saturation: vec![20],
                saturation_deliveries: 2_000,
                bp_fast: 5,
                bp_stalled: 3,
                bp_rate: 500,
                bp_messages: 400,
                bp_size: 2048,
                bp_policies: policies,
                poll_clients: 10,
                poll_rate: 10.0,
                poll_secs: 1.0,
                poll_every_ms: 200,
            },
            Scale::Quick => Sizes {
                idle: vec![Count::N(1000)],
                fanout: vec![100],
                fanout_messages: 50,
                fanout_interval_ms: 10,
                saturation: vec![100],
                saturation_deliveries: 50_000,
                bp_fast: 20,
                bp_stalled: 10,
                bp_rate: 1000,
                bp_messages: 1000,
                bp_size: 1024,
                bp_policies: policies,
                poll_clients: 100,
                poll_rate: 5.0,
                poll_secs: 2.0,
                poll_every_ms: 500,
            },
            // ANCHOR: full_sizes
            Scale::Full => Sizes {
                idle: vec![Count::N(1000), Count::N(10_000), Count::Max],
                fanout: vec![100, 1000, 10_000],
                fanout_messages: 50,
                fanout_interval_ms: 20,
                saturation: vec![100, 1000, 10_000],
                saturation_deliveries: 1_000_000,
                bp_fast: 100,
                bp_stalled: 20,
                bp_rate: 1000,
                bp_messages: 5000,
                bp_size: 1024,
                bp_policies: policies,
                poll_clients: 1000,
                poll_rate: 2.0,
                poll_secs: 10.0,
                poll_every_ms: 1000,
            },
            // ANCHOR_END: full_sizes
        }
    }
}

/// The scenarios in the order they run, and the transports each measures.
pub const SCENARIOS: [(&str, &[Transport]); 5] = [
    ("idle", &[Transport::Sse, Transport::Ws, Transport::LongPoll]),
    ("fanout", &[Transport::Sse, Transport::Ws, Transport::LongPoll]),
    ("saturation", &[Transport::Sse, Transport::Ws, Transport::LongPoll]),
    ("backpressure", &[Transport::Sse, Transport::Ws]),
    ("polling", &[Transport::ShortPoll, Transport::LongPoll, Transport::Sse, Transport::Ws]),
];

/// One planned cell: what to run, `repeats` times.
#[derive(Debug, Clone)]
struct Planned {
    scenario: &'static str,
    runtime: String,
    transport: Transport,
    label: String,
    run: Scenario,
}

fn plan(sizes: &Sizes, labs: &[Lab], args: &MatrixArgs) -> Vec<Planned> {
    let mut cells = Vec::new();
    let wanted = |list: &[String], name: &str| list.is_empty() || list.iter().any(|x| x == name);
    for (scenario, transports) in SCENARIOS {
        if !wanted(&args.scenarios, scenario) {
            continue;
        }
        // Sizes (or variants) first, then labs, then transports: cells that
        // belong together in a table run close together in time.
        let variants: Vec<String> = match scenario {
            "idle" => sizes.idle.iter().map(Count::to_string).collect(),
            "fanout" => sizes.fanout.iter().map(usize::to_string).collect(),
            "saturation" => sizes.saturation.iter().map(usize::to_string).collect(),
            // A baseline lab (--policy is not its option) runs with its own
            // behaviour, labelled "own", instead of the core's policies.
            "backpressure" => std::iter::once("baseline".to_owned())
                .chain(sizes.bp_policies.iter().cloned())
                .chain(std::iter::once("own".to_owned()))
                .collect(),
            _ => vec![sizes.poll_clients.to_string()],
        };
        for variant in &variants {
            for lab in labs {
                if scenario == "backpressure" && (lab.baseline != (variant == "own")) && variant != "baseline" {
                    continue;
                }
                for &transport in transports {
                    if !lab.transports.iter().any(|t| t == transport.name()) || !wanted(&args.transports, transport.name()) {
                        continue;
                    }
                    let common = Common::new(&lab.runtime);
                    let run = match scenario {
                        "idle" => Scenario::Idle(IdleArgs {
                            common,
                            transport,
                            connections: variant.parse().unwrap_or(Count::N(1000)),
                        }),
                        "fanout" | "saturation" => {
                            let subscribers: usize = variant.parse().unwrap_or(100);
                            let (messages, interval_ms) = if scenario == "fanout" {
                                (sizes.fanout_messages, sizes.fanout_interval_ms)
                            } else {
                                ((sizes.saturation_deliveries / subscribers.max(1) as u64).clamp(10, 1000), 0)
                            };
                            Scenario::Fanout(FanoutArgs { common, transport, subscribers, messages, size: 64, interval_ms })
                        }
                        "backpressure" => Scenario::Backpressure(BackpressureArgs {
                            common,
                            // The baseline run (no stalled subscriber) and a baseline
                            // lab's own behaviour pass no --policy.
                            policy: (variant != "baseline" && variant != "own").then(|| variant.clone()),
                            transport,
                            fast: sizes.bp_fast,
                            stalled: if variant == "baseline" { 0 } else { sizes.bp_stalled },
                            rate: sizes.bp_rate,
                            messages: sizes.bp_messages,
                            size: sizes.bp_size,
                            rcvbuf: 4096,
                            sample_ms: 100,
                        }),
                        _ => Scenario::Polling(PollingArgs {
                            common,
                            transport,
                            clients: sizes.poll_clients,
                            rate: sizes.poll_rate,
                            secs: sizes.poll_secs,
                            every_ms: sizes.poll_every_ms,
                            size: 64,
                        }),
                    };
                    cells.push(Planned {
                        scenario,
                        runtime: lab.runtime.clone(),
                        transport,
                        label: variant.clone(),
                        run,
                    });
                }
            }
        }
    }
    cells
}

/// The scenario's options as JSON, for the cell's `params`.
fn params_of(run: &Scenario) -> serde_json::Value {
    let (json, common) = match run {
        Scenario::Idle(a) => (serde_json::json!({ "connections": a.connections.to_string() }), &a.common),
        Scenario::Fanout(a) => (
            serde_json::json!({ "subscribers": a.subscribers, "messages": a.messages, "size": a.size, "interval_ms": a.interval_ms }),
            &a.common,
        ),
        Scenario::Backpressure(a) => (
            serde_json::json!({
                "policy": a.policy, "fast": a.fast, "stalled": a.stalled, "rate": a.rate,
                "messages": a.messages, "size": a.size, "rcvbuf": a.rcvbuf, "sample_ms": a.sample_ms,
            }),
            &a.common,
        ),
        Scenario::Polling(a) => (
            serde_json::json!({ "clients": a.clients, "rate": a.rate, "secs": a.secs, "every_ms": a.every_ms, "size": a.size }),
            &a.common,
        ),
    };
    let mut json = json;
    json["server_args"] = serde_json::json!(common.server_args);
    json
}

/// Finds the labs: `rtlab runtimes` (full labs) plus the other values
/// `rtlab serve --runtime` accepts (baselines), then probes each one's
/// transports.
pub fn discover(exe: &Path, only: &[String]) -> std::io::Result<Vec<Lab>> {
    let full: Vec<String> = String::from_utf8_lossy(&Command::new(exe).arg("runtimes").output()?.stdout)
        .lines()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect();
    let mut all = full.clone();
    let help = String::from_utf8_lossy(&Command::new(exe).args(["serve", "-h"]).output()?.stdout).to_string();
    let mut lines = help.lines().skip_while(|l| !l.trim_start().starts_with("--runtime"));
    if let Some(values) = lines
        .by_ref()
        .take(3)
        .find_map(|l| l.split_once("[possible values: ").map(|(_, v)| v.trim_end_matches(']').to_owned()))
    {
        for v in values.split(',').map(str::trim).filter(|v| !v.is_empty()) {
            if !all.iter().any(|a| a == v) {
                all.push(v.to_owned());
            }
        }
    }
    let mut labs = Vec::new();
    for runtime in all.into_iter().filter(|r| only.is_empty() || only.contains(r)) {
        let transports = probe(exe, &runtime);
        if transports.is_empty() {
            eprintln!("rtlab bench: {runtime}: the server did not start or serves no transport; skipped");
            continue;
        }
        labs.push(Lab { baseline: !full.contains(&runtime), runtime, transports });
    }
    for name in only {
        if !labs.iter().any(|l| &l.runtime == name) {
            return Err(std::io::Error::other(format!("no lab named '{name}' (rtlab serve -h lists them)")));
        }
    }
    Ok(labs)
}

/// Which transports a lab serves: one subscription (or poll) of each
/// against a fresh server.
fn probe(exe: &Path, runtime: &str) -> Vec<String> {
    let Ok(server) = ServerProcess::start(exe, runtime, &[], None) else { return Vec::new() };
    let mut served = Vec::new();
    for transport in [Transport::Sse, Transport::Ws, Transport::LongPoll, Transport::ShortPoll] {
        if probe_one(server.addr, transport).is_ok() {
            served.push(transport.name().to_owned());
        }
    }
    server.stop(Duration::from_secs(10));
    served
}

fn probe_one(addr: SocketAddr, transport: Transport) -> std::io::Result<()> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    let timeout = Duration::from_secs(5);
    if transport.is_push() {
        client::subscribe(&mut s, transport, "probe", timeout).map(drop)
    } else {
        let long = transport == Transport::LongPoll;
        let request = client::poll_request("probe", 0, long).replace("&wait=60", "&wait=1");
        s.write_all(request.as_bytes())?;
        s.set_read_timeout(Some(timeout))?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head)?;
        if &head == b"HTTP/1.1 200" { Ok(()) } else { Err(std::io::Error::other("not 200")) }
    }
}

/// Runs the matrix, writes the results document and the report, prints the
/// summary tables. Returns false if any run failed.
pub fn run(args: &MatrixArgs) -> std::io::Result<bool> {
    let scale = args.scale();
    let sizes = Sizes::of(scale);
    let exe = crate::exe()?;
    let started = Instant::now();
    let labs = discover(&exe, &args.runtimes)?;
    let (date, _) = crate::results::utc_now();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_else(|_| "host".into());
    let out = args.out.clone().unwrap_or_else(|| {
        let suffix = if scale == Scale::Full { String::new() } else { format!("-{}", scale.name()) };
        PathBuf::from("bench-results").join(format!("{date}-{}{suffix}", host.trim()))
    });
    // Only a complete full run replaces what the book shows.
    let complete = args.runtimes.is_empty() && args.scenarios.is_empty() && args.transports.is_empty();
    let book = args.book.clone().or_else(|| {
        (scale == Scale::Full && complete && Path::new("book/src/SUMMARY.md").is_file())
            .then(|| PathBuf::from("book/src/generated"))
    });
    let planned = plan(&sizes, &labs, args);
    let mut parameters = serde_json::to_value(&sizes).map_err(std::io::Error::other)?;
    parameters["repeats"] = args.repeats.into();
    parameters["scenarios"] = serde_json::json!(args.scenarios);
    parameters["transports"] = serde_json::json!(args.transports);
    let mut doc = Document::begin(scale.name(), parameters, labs.clone());
    let steal_start = crate::procfs::steal_secs();

    let bars = crate::progress();
    crate::say(&format!(
        "rtlab bench ({} scale): {} labs ({}), {} cells × {} runs → {}",
        scale.name(),
        labs.len(),
        labs.iter().map(|l| if l.baseline { format!("{} (baseline)", l.runtime) } else { l.runtime.clone() }).collect::<Vec<_>>().join(", "),
        planned.len(),
        args.repeats,
        out.display()
    ));
    let bar = bars.add(ProgressBar::new(planned.len() as u64 * args.repeats));
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} runs, eta {eta}  {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let mut all_ok = true;
    for p in &planned {
        let mut cell = Cell {
            scenario: p.scenario.to_owned(),
            runtime: p.runtime.clone(),
            transport: p.transport.name().to_owned(),
            label: p.label.clone(),
            params: params_of(&p.run),
            verified: true,
            metrics: Default::default(),
            runs: Vec::new(),
        };
        let mut values: Vec<(&'static str, Vec<f64>)> = Vec::new();
        for repeat in 0..args.repeats as usize {
            bar.set_message(format!("{} (run {})", cell.key(), repeat + 1));
            match p.run.run() {
                Ok(result) => {
                    crate::say(&format!("  {}", result.summary()));
                    if result.verified() {
                        for (name, value) in result.metrics() {
                            match values.iter_mut().find(|(n, _)| *n == name) {
                                Some((_, v)) => v.push(value),
                                None => values.push((name, vec![value])),
                            }
                        }
                    } else {
                        cell.verified = false;
                        doc.failures.push(Failure {
                            cell: cell.key(),
                            run: repeat,
                            message: result.failure().unwrap_or_else(|| "not verified".into()),
                        });
                    }
                    cell.runs.push(result.to_json());
                }
                Err(e) => {
                    crate::say(&format!("  {}: run {} failed: {e}", cell.key(), repeat + 1));
                    cell.verified = false;
                    doc.failures.push(Failure { cell: cell.key(), run: repeat, message: e.to_string() });
                }
            }
            bar.inc(1);
        }
        // A cell with a failed run reports no numbers: a lab that loses or
        // reorders messages in one run of two is not measured by the other.
        if cell.verified {
            cell.metrics = values.into_iter().map(|(name, v)| (name.to_owned(), Stat::of(v))).collect();
        }
        all_ok &= cell.verified;
        doc.cells.push(cell);
        doc.machine.steal_secs = crate::procfs::steal_secs() - steal_start;
        doc.wall_secs = started.elapsed().as_secs_f64();
        doc.write(&out)?;
    }
    bar.finish_and_clear();
    doc.finished = Some(crate::results::utc_now().1);
    doc.machine.load_end = crate::procfs::loadavg();
    doc.machine.steal_secs = crate::procfs::steal_secs() - steal_start;
    doc.wall_secs = started.elapsed().as_secs_f64();
    doc.write(&out)?;

    let tables = crate::report::render(&doc, &out, book.as_deref())?;
    println!("{}", tables.summary);
    println!(
        "results: {}  report: {}  {}wall time {:.0} s, CPU steal {:.1} s, {} failure(s)",
        out.join("results.json").display(),
        out.join("report.md").display(),
        book.as_ref().map(|b| format!("book: {}  ", b.display())).unwrap_or_default(),
        doc.wall_secs,
        doc.machine.steal_secs,
        doc.failures.len()
    );
    Ok(all_ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_plan_covers_every_scenario_and_transport() {
        let labs = vec![
            Lab { runtime: "a".into(), baseline: false, transports: ["sse", "ws", "long-poll", "short-poll"].map(String::from).to_vec() },
            Lab { runtime: "b".into(), baseline: true, transports: vec!["ws".into()] },
        ];
        let args = MatrixArgs {
            full: true,
            scale: None,
            runtimes: vec![],
            scenarios: vec![],
            transports: vec![],
            repeats: 2,
            out: None,
            book: None,
        };
        let cells = plan(&Sizes::of(Scale::Full), &labs, &args);
        let count = |s: &str, r: &str| cells.iter().filter(|c| c.scenario == s && c.runtime == r).count();
        assert_eq!(count("idle", "a"), 9);
        assert_eq!(count("fanout", "a"), 9);
        assert_eq!(count("saturation", "a"), 9);
        assert_eq!(count("backpressure", "a"), 8);
        assert_eq!(count("polling", "a"), 4);
        // The baseline is measured on the transports it serves only, and
        // under its own backpressure behaviour.
        assert_eq!(count("backpressure", "b"), 2);
        assert!(cells.iter().any(|c| c.runtime == "b" && c.label == "own"));
        assert!(!cells.iter().any(|c| c.runtime == "a" && c.label == "own"));
        assert_eq!(count("idle", "b"), 3);
        assert_eq!(count("polling", "b"), 1);
        assert!(cells.iter().filter(|c| c.runtime == "b").all(|c| c.transport == Transport::Ws));
    }
}
