//! `rtlab bench` without a scenario: the matrix of every lab × transport ×
//! scenario, each cell repeated, into one results document, then the report.
//!
//! The labs are found, not listed here: the full labs are what `rtlab
//! runtimes` prints, the baselines what `rtlab runtimes --baselines` prints
//! (the framework baseline). Which transports a lab serves is probed against
//! a fresh server of it, so a baseline that lacks one is measured on the
//! others. The scenarios, transports and variants are typed ([`crate::axes`]):
//! which transports a scenario measures is [`ScenarioKind::transports`],
//! which variants it runs [`Sizes`]' business, which labs run a variant
//! one `match`.
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

use crate::axes::{Label, Policy, ScenarioKind};
pub use crate::axes::Scale;
use crate::backpressure::BackpressureArgs;
use crate::client::{self, Transport};
use crate::fanout::FanoutArgs;
use crate::idle::{Count, IdleArgs};
use crate::polling::PollingArgs;
use crate::results::{Cell, Document, Failure, Lab, Stat};
use crate::server::ServerProcess;
use crate::{Common, Scenario};

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
    /// Scenarios to run, comma-separated (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub scenarios: Vec<ScenarioKind>,
    /// Transports, comma-separated (default: every one a scenario and a lab
    /// support).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub transports: Vec<Transport>,
    /// Runs of each cell (three or more: a median and a spread).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=20))]
    pub repeats: u64,
    /// Where the server and the clients run in every cell: pinned (server
    /// CPU 0, clients CPU 1) or shared (nothing pinned).
    #[arg(long, value_enum, default_value = "pinned")]
    pub placement: crate::axes::PlacementMode,
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
    /// Fan-out subscribers per run, messages (1,000 or more: a last-subscriber
    /// p99 that is not the max), and milliseconds between them, stretched
    /// for large cells so that deliveries per second stay below
    /// `fanout_max_rate` (a latency cell, not a throughput one).
    pub fanout: Vec<usize>,
    pub fanout_messages: u64,
    /// Cells of more than `fanout_large` subscribers send
    /// `fanout_large_messages` (100 or more: nearest-rank p99 is then the
    /// second slowest, not the max) and no long polls (a poll storm of that
    /// many requests a message is the polling sweep's business): at 10,000
    /// subscribers, 1,000 messages at a latency cell's rate take minutes a run.
    pub fanout_large: usize,
    pub fanout_large_messages: u64,
    pub fanout_interval_ms: u64,
    pub fanout_max_rate: u64,
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
    pub bp_policies: Vec<Policy>,
    /// Knee: subscribers, messages a step, first step's deliveries per
    /// second, growth per step, most steps, the p99 bound in ms.
    pub knee_subscribers: usize,
    pub knee_messages: u64,
    pub knee_start: u64,
    pub knee_factor: f64,
    pub knee_max_steps: u32,
    pub knee_bound_ms: u64,
    /// Polling cost: clients, updates per second, seconds, short-poll period.
    pub poll_clients: usize,
    pub poll_rate: f64,
    pub poll_secs: f64,
    pub poll_every_ms: u64,
}

impl Sizes {
    /// The sizes of `scale`.
    pub fn of(scale: Scale) -> Sizes {
        let policies = Policy::ALL.to_vec();
        match scale {
            Scale::Tiny => Sizes {
                idle: vec![Count::N(50)],
                fanout: vec![20],
                fanout_messages: 10,
                fanout_large: usize::MAX,
                fanout_large_messages: 10,
                fanout_interval_ms: 5,
                fanout_max_rate: 50_000,
                saturation: vec![20],
                saturation_deliveries: 2_000,
                bp_fast: 5,
                bp_stalled: 3,
                bp_rate: 500,
                bp_messages: 400,
                bp_size: 2048,
                bp_policies: policies,
                knee_subscribers: 20,
                knee_messages: 50,
                knee_start: 2_000,
                knee_factor: 2.0,
                knee_max_steps: 3,
                knee_bound_ms: 50,
                poll_clients: 10,
                poll_rate: 10.0,
                poll_secs: 1.0,
                poll_every_ms: 200,
            },
            Scale::Quick => Sizes {
                idle: vec![Count::N(1000)],
                fanout: vec![100],
                fanout_messages: 1000,
                fanout_large: usize::MAX,
                fanout_large_messages: 1000,
                fanout_interval_ms: 1,
                fanout_max_rate: 100_000,
                saturation: vec![100],
                saturation_deliveries: 50_000,
                bp_fast: 20,
                bp_stalled: 10,
                bp_rate: 1000,
                bp_messages: 500,
                bp_size: 1024,
                bp_policies: policies,
                knee_subscribers: 100,
                knee_messages: 100,
                knee_start: 10_000,
                knee_factor: 2.0,
                knee_max_steps: 6,
                knee_bound_ms: 50,
                poll_clients: 100,
                poll_rate: 5.0,
                poll_secs: 1.0,
                poll_every_ms: 500,
            },
            // ANCHOR: full_sizes
            Scale::Full => Sizes {
                idle: vec![Count::N(1000), Count::N(10_000), Count::Max],
                fanout: vec![100, 1000, 10_000],
                fanout_messages: 1000,
                fanout_large: 1000,
                fanout_large_messages: 100,
                fanout_interval_ms: 3,
                fanout_max_rate: 100_000,
                saturation: vec![100, 1000, 10_000],
                saturation_deliveries: 1_000_000,
                bp_fast: 100,
                bp_stalled: 20,
                bp_rate: 1000,
                bp_messages: 2000,
                bp_size: 1024,
                bp_policies: policies,
                knee_subscribers: 1000,
                knee_messages: 100,
                knee_start: 25_000,
                knee_factor: 2.0,
                knee_max_steps: 6,
                knee_bound_ms: 50,
                poll_clients: 1000,
                poll_rate: 2.0,
                poll_secs: 5.0,
                poll_every_ms: 1000,
            },
            // ANCHOR_END: full_sizes
        }
    }
}

/// One planned cell: what to run, `repeats` times.
#[derive(Debug, Clone)]
struct Planned {
    scenario: ScenarioKind,
    runtime: String,
    transport: Transport,
    label: Label,
    run: Scenario,
}

impl Sizes {
    /// The cells of `scenario` per lab and transport: its sizes, or for
    /// backpressure the reference run, each policy, and a baseline lab's
    /// own behaviour.
    fn labels(&self, scenario: ScenarioKind) -> Vec<Label> {
        let sizes = |v: &[usize]| v.iter().map(|&n| Label::Size(n as u64)).collect();
        match scenario {
            ScenarioKind::Idle => self.idle.iter().map(|&c| Label::from(c)).collect(),
            ScenarioKind::Fanout => sizes(&self.fanout),
            ScenarioKind::Saturation => sizes(&self.saturation),
            ScenarioKind::Backpressure => std::iter::once(Label::Baseline)
                .chain(self.bp_policies.iter().map(|&p| Label::Policy(p)))
                .chain(std::iter::once(Label::Own))
                .collect(),
            ScenarioKind::Polling => vec![Label::Size(self.poll_clients as u64)],
            ScenarioKind::Knee => vec![Label::Size(self.knee_subscribers as u64)],
        }
    }

    /// What to run for one cell.
    fn scenario(&self, scenario: ScenarioKind, label: Label, common: Common, transport: Transport) -> Scenario {
        let size = label.size().unwrap_or(0) as usize;
        match scenario {
            ScenarioKind::Idle => Scenario::Idle(IdleArgs {
                common,
                transport,
                connections: if label == Label::Max { Count::Max } else { Count::N(size) },
                drain_time_wait: 0,
            }),
            ScenarioKind::Fanout => Scenario::Fanout(FanoutArgs {
                common,
                transport,
                subscribers: size,
                messages: if size > self.fanout_large { self.fanout_large_messages } else { self.fanout_messages },
                size: 64,
                interval_ms: self.fanout_interval_ms.max((size as u64 * 1000).div_ceil(self.fanout_max_rate.max(1))),
                interval_us: None,
            }),
            ScenarioKind::Saturation => Scenario::Fanout(FanoutArgs {
                common,
                transport,
                subscribers: size,
                messages: (self.saturation_deliveries / size.max(1) as u64).clamp(10, 1000),
                size: 64,
                interval_ms: 0,
                interval_us: None,
            }),
            ScenarioKind::Knee => Scenario::Knee(crate::knee::KneeArgs {
                fanout: FanoutArgs {
                    common,
                    transport,
                    subscribers: size,
                    messages: self.knee_messages,
                    size: 64,
                    interval_ms: 0,
                    interval_us: None,
                },
                start: self.knee_start,
                factor: self.knee_factor,
                bound_ms: self.knee_bound_ms,
                max_steps: self.knee_max_steps,
            }),
            ScenarioKind::Backpressure => Scenario::Backpressure(BackpressureArgs {
                common,
                // The reference run (no stalled subscriber) and a baseline
                // lab's own behaviour pass no --policy.
                policy: match label {
                    Label::Policy(p) => Some(p),
                    _ => None,
                },
                transport,
                fast: self.bp_fast,
                stalled: if label == Label::Baseline { 0 } else { self.bp_stalled },
                rate: self.bp_rate,
                messages: self.bp_messages,
                size: self.bp_size,
                rcvbuf: 4096,
                sample_ms: 100,
            }),
            ScenarioKind::Polling => Scenario::Polling(PollingArgs {
                common,
                transport,
                clients: self.poll_clients,
                rate: self.poll_rate,
                secs: self.poll_secs,
                every_ms: self.poll_every_ms,
                size: 64,
                browser_headers: None,
            }),
        }
    }
}

/// Whether a lab runs a cell labelled `label` of `scenario`: the floor
/// ([`crate::floor`]) runs idle, fan-out and the knee only (pushing over
/// SSE and WebSocket: it answers no poll); a baseline lab has no `--policy`, so it runs under its
/// own behaviour instead of the core's policies; every lab runs the rest.
fn runs(lab: &Lab, scenario: ScenarioKind, label: Label) -> bool {
    if lab.runtime == crate::floor::NAME {
        return matches!(scenario, ScenarioKind::Idle | ScenarioKind::Fanout | ScenarioKind::Knee);
    }
    match label {
        Label::Policy(_) => !lab.baseline,
        Label::Own => lab.baseline,
        _ => true,
    }
}

fn plan(sizes: &Sizes, labs: &[Lab], args: &MatrixArgs) -> Vec<Planned> {
    let wanted = |transport: &Transport| args.transports.is_empty() || args.transports.contains(transport);
    let mut cells = Vec::new();
    for &scenario in ScenarioKind::ALL {
        // Back-to-back saturation is run only when asked for by name: the
        // knee (offered load, a latency bound) replaced it.
        let asked = args.scenarios.contains(&scenario);
        if !asked && (!args.scenarios.is_empty() || scenario == ScenarioKind::Saturation) {
            continue;
        }
        // Sizes (or variants) first, then labs, then transports: cells that
        // belong together in a table run close together in time.
        for label in sizes.labels(scenario) {
            for lab in labs.iter().filter(|lab| runs(lab, scenario, label)) {
                let floor_skips = |t: &Transport| {
                    lab.runtime == crate::floor::NAME && scenario != ScenarioKind::Idle && !crate::floor::FANOUT.contains(t)
                };
                let large_poll = |t: &Transport| {
                    scenario == ScenarioKind::Fanout
                        && *t == Transport::LongPoll
                        && label.size().is_some_and(|n| n as usize > sizes.fanout_large)
                };
                for &transport in
                    scenario.transports().iter().filter(|t| lab.transports.contains(t) && wanted(t) && !floor_skips(t) && !large_poll(t))
                {
                    let run = sizes.scenario(scenario, label, Common { placement: args.placement, ..Common::new(&lab.runtime) }, transport);
                    cells.push(Planned { scenario, runtime: lab.runtime.clone(), transport, label, run });
                }
            }
        }
    }
    cells
}

/// The names `rtlab runtimes` prints: the full labs, or with `baselines`
/// the baselines (`rtlab runtimes --baselines`). The binary is the one place
/// that knows which labs exist.
pub fn runtimes(exe: &Path, baselines: bool) -> std::io::Result<Vec<String>> {
    let out = Command::new(exe).arg("runtimes").args(baselines.then_some("--baselines")).output()?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!(
            "`rtlab runtimes{}` failed: {}",
            if baselines { " --baselines" } else { "" },
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect())
}

/// Finds the labs: the full labs (`rtlab runtimes`), then the baselines
/// (`rtlab runtimes --baselines`), each probed for the transports it serves.
pub fn discover(exe: &Path, only: &[String]) -> std::io::Result<Vec<Lab>> {
    let full = runtimes(exe, false)?;
    let baselines = runtimes(exe, true)?;
    let mut labs = Vec::new();
    for (runtime, baseline) in full.into_iter().map(|r| (r, false)).chain(baselines.into_iter().map(|r| (r, true))) {
        if !only.is_empty() && !only.contains(&runtime) {
            continue;
        }
        let transports = probe(exe, &runtime);
        if transports.is_empty() {
            eprintln!("rtlab bench: {runtime}: the server did not start or serves no transport; skipped");
            continue;
        }
        labs.push(Lab { runtime, baseline, transports });
    }
    // The floor: the harness's own raw-socket server, measured beside the
    // labs in idle and fan-out (it holds every transport open, and pushes
    // SSE and WebSocket).
    if only.is_empty() || only.iter().any(|r| r == crate::floor::NAME) {
        let transports = probe(exe, crate::floor::NAME).into_iter().filter(|t| t.is_push()).collect::<Vec<_>>();
        if transports.is_empty() {
            return Err(std::io::Error::other("the floor server (rtlab bench-floor) did not start"));
        }
        let transports = transports.into_iter().chain([Transport::LongPoll]).collect();
        labs.push(Lab { runtime: crate::floor::NAME.to_owned(), baseline: true, transports });
    }
    for name in only {
        if !labs.iter().any(|l| &l.runtime == name) {
            return Err(std::io::Error::other(format!(
                "no lab named '{name}' (`rtlab runtimes` and `rtlab runtimes --baselines` list them)"
            )));
        }
    }
    Ok(labs)
}

/// Which transports a lab serves: one subscription (or poll) of each
/// against a fresh server.
fn probe(exe: &Path, runtime: &str) -> Vec<Transport> {
    let Ok(server) = ServerProcess::start(exe, runtime, &[], None) else { return Vec::new() };
    let served = Transport::ALL.iter().copied().filter(|&t| probe_one(server.addr, t).is_ok()).collect();
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
    parameters["placement"] = serde_json::json!(args.placement);
    parameters["scenarios"] = serde_json::json!(args.scenarios);
    parameters["transports"] = serde_json::json!(args.transports);
    let mut doc = Document::begin(scale, parameters, labs.clone());
    doc.machine.placement = crate::Placement::of(args.placement);
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
            scenario: p.scenario,
            runtime: p.runtime.clone(),
            transport: p.transport,
            label: p.label,
            params: p.run.params(),
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
            Lab { runtime: "a".into(), baseline: false, transports: Transport::ALL.to_vec() },
            Lab { runtime: "b".into(), baseline: true, transports: vec![Transport::Ws] },
        ];
        let args = MatrixArgs {
            full: true,
            scale: None,
            runtimes: vec![],
            scenarios: vec![],
            transports: vec![],
            repeats: 3,
            placement: crate::axes::PlacementMode::Pinned,
            out: None,
            book: None,
        };
        let cells = plan(&Sizes::of(Scale::Full), &labs, &args);
        use ScenarioKind::*;
        let count = |s: ScenarioKind, r: &str| cells.iter().filter(|c| c.scenario == s && c.runtime == r).count();
        assert_eq!(count(Idle, "a"), 9);
        // Three sizes × three transports, less long polls at 10,000
        // subscribers (more than `fanout_large`), which send fewer messages.
        assert_eq!(count(Fanout, "a"), 8);
        assert!(!cells.iter().any(|c| c.scenario == Fanout && c.transport == Transport::LongPoll && c.label == Label::Size(10_000)));
        let messages = |n: u64| {
            cells.iter().find_map(|c| match &c.run {
                Scenario::Fanout(f) if c.scenario == Fanout && c.label == Label::Size(n) => Some(f.messages),
                _ => None,
            })
        };
        assert_eq!((messages(1000), messages(10_000)), (Some(1000), Some(100)));
        assert_eq!(count(Saturation, "a"), 0, "the knee replaced saturation");
        assert_eq!(count(Knee, "a"), 2);
        assert_eq!(count(Backpressure, "a"), 8);
        assert_eq!(count(Polling, "a"), 4);
        // The baseline is measured on the transports it serves only, and
        // under its own backpressure behaviour.
        assert_eq!(count(Backpressure, "b"), 2);
        assert!(cells.iter().any(|c| c.runtime == "b" && c.label == Label::Own));
        assert!(!cells.iter().any(|c| c.runtime == "a" && c.label == Label::Own));
        assert_eq!(count(Idle, "b"), 3);
        assert_eq!(count(Polling, "b"), 1);
        assert!(cells.iter().filter(|c| c.runtime == "b").all(|c| c.transport == Transport::Ws));
        // The cells' arguments follow their labels.
        let bp = |label: Label| cells.iter().find(|c| c.scenario == Backpressure && c.label == label).map(|c| &c.run);
        assert!(matches!(bp(Label::Baseline), Some(Scenario::Backpressure(a)) if a.stalled == 0 && a.policy.is_none()));
        assert!(matches!(
            bp(Label::Policy(Policy::DropOldest)),
            Some(Scenario::Backpressure(a)) if a.stalled == 20 && a.policy == Some(Policy::DropOldest)
        ));
        let idle_max = cells.iter().find(|c| c.scenario == Idle && c.label == Label::Max).map(|c| &c.run);
        assert!(matches!(idle_max, Some(Scenario::Idle(a)) if a.connections == Count::Max));
        let fanout = cells.iter().find(|c| c.scenario == Fanout && c.label == Label::Size(10_000)).map(|c| &c.run);
        assert!(matches!(fanout, Some(Scenario::Fanout(a)) if a.subscribers == 10_000 && a.messages == 100 && a.interval_ms == 100));
        let knee = cells.iter().find(|c| c.scenario == Knee).map(|c| &c.run);
        assert!(matches!(knee, Some(Scenario::Knee(a)) if a.fanout.subscribers == 1000 && a.bound_ms == 50));
    }
}
