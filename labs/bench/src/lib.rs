//! # rtlab-bench: the load generator, its scenarios, and their report
//!
//! Every measurement starts a **fresh server process** (`rtlab serve`): a
//! server that already served a run keeps its allocator's high-water mark and
//! would hide growth. Clients live in **worker processes** (`rtlab
//! bench-worker`), never in the server's process, each with its own source
//! address in 127.0.0.0/8 so that neither the per-process open-files limit
//! nor the ephemeral port range caps a run. Where the machine has two or more
//! cores, the server is pinned to one and the clients to another. Every run
//! records the CPU steal and the load average it ran under.
//!
//! ## Map
//!
//! | module | what it does |
//! |---|---|
//! | [`idle`] | N idle connections: server memory per connection, kernel share apart, time to open, release after close |
//! | [`fanout`] | M subscribers, K messages: publish-to-receive latency per pair and for the last subscriber; throughput at saturation |
//! | [`backpressure`] | fast and stalled subscribers under each outbox policy: memory over time, fast subscribers' latency, fate of the stalled |
//! | [`polling`] | short polling vs long polling vs SSE vs WebSocket for one update rate: requests, CPU, bytes and staleness per message |
//! | [`session`] | the skeleton every scenario shares: probe the machine, start a fresh server, the scenario's own part, stop the server, the verdict |
//! | [`outcome`] | what a run reports: its [`outcome::Verdict`] (verified, failed, environment problem), what every run shares ([`outcome::RunInfo`]: lab, transport, verdict, clean exit, conditions), a run's whole result [`outcome::Run`] (that + the scenario's own [`outcome::Measured`] result), the [`Outcome`] trait the matrix holds |
//! | [`axes`] | the matrix's axes as types: [`axes::ScenarioKind`], [`axes::Transport`], [`axes::Policy`], [`axes::Label`] (a cell's size or variant), [`axes::Scale`]; stored as the strings they print |
//! | [`matrix`] | `rtlab bench` without a scenario: the labs found by `rtlab runtimes [--baselines]`, every lab × transport × scenario, repeated, into one results document |
//! | [`results`] | the results document: machine, toolchain, versions, commit, parameters, per-run values and their spread, failures |
//! | [`report`] | `rtlab report`: markdown tables ([`report::tables`]), sentences computed from the data ([`report::notes`]), SVG plots ([`report::plots`], drawn by [`report::charts`]), number formats ([`report::format`]), also for the book |
//! | [`expiry`] | the expiry spike: N event streams whose tokens expire together, with and without the server's expiry spread; reconnections per 100 ms; its own document (`expiry.json`) and report |
//! | [`compare`] | `rtlab compare`: the differences between two results documents |
//! | [`server`] | starting, sampling and stopping a server process |
//! | [`workers`] / [`worker`] | the orchestrator's side and the worker's side of the client processes |
//! | [`client`] | opening connections, publishing, polling, reading with kernel receive timestamps |
//! | [`procfs`] | memory, CPU, mappings, steal and kernel socket memory from `/proc` |
//!
//! A scenario module holds only what is its own: its options, its result's
//! fields and numbers ([`outcome::Measured`]), and the part of the run
//! between "the server is up" and "the clients have reported"
//! ([`session::Session::run`] does the rest, the same way for all four).
//!
//! Every scenario **verifies before it measures**: a run in which any
//! subscriber missed, duplicated or reordered a message reports a failure and
//! no numbers.

pub mod axes;
pub mod backpressure;
pub mod client;
pub mod compare;
pub mod expiry;
pub mod fanout;
pub mod idle;
pub mod matrix;
pub mod outcome;
pub mod polling;
pub mod procfs;
pub mod report;
pub mod results;
pub mod server;
pub mod session;
pub mod worker;
pub mod workers;

pub use outcome::Outcome;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// This process's own binary, as `/proc/<pid>/exe`: the file this process
/// was started from even if `cargo build` has since replaced it, so that a
/// run started before a rebuild runs every server and worker from the same
/// binary to its end (a path like `target/release/rtlab` would start the new
/// one half-way through).
pub fn exe() -> std::io::Result<PathBuf> {
    let own = PathBuf::from(format!("/proc/{}/exe", std::process::id()));
    if own.exists() { Ok(own) } else { std::env::current_exe() }
}

/// Options every scenario shares.
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// The runtime lab to measure.
    #[arg(long, default_value = "tokio")]
    pub runtime: String,
    /// Extra `rtlab serve` options for the server under test, e.g.
    /// `--server-arg=--policy=drop-oldest` (repeatable).
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    pub server_args: Vec<String>,
    /// Write the result as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

impl Common {
    /// Options for `runtime` with no extra server options and no JSON file.
    pub fn new(runtime: &str) -> Common {
        Common { runtime: runtime.to_owned(), server_args: Vec::new(), json: None }
    }

    /// The rtlab binary that serves and runs workers: this one. See [`exe`].
    pub fn exe(&self) -> std::io::Result<PathBuf> {
        exe()
    }
}

// ANCHOR: scenario
/// The scenarios, as `rtlab bench <scenario>`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Scenario {
    /// Idle connections: the server's memory per connection.
    Idle(idle::IdleArgs),
    /// Fan-out: publish-to-receive latency across many subscribers.
    Fanout(fanout::FanoutArgs),
    /// Backpressure: fast and stalled subscribers under an outbox policy.
    Backpressure(backpressure::BackpressureArgs),
    /// Polling cost: what one transport costs to deliver an update stream.
    Polling(polling::PollingArgs),
}
// ANCHOR_END: scenario

/// `rtlab bench`: one scenario, or without one the matrix of every lab ×
/// transport × scenario.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub scenario: Option<Scenario>,
    #[command(flatten)]
    pub matrix: matrix::MatrixArgs,
}

impl Scenario {
    /// Runs the scenario once; returns the result as an [`Outcome`].
    pub fn run(&self) -> std::io::Result<Box<dyn Outcome>> {
        Ok(match self {
            Scenario::Idle(args) => Box::new(idle::run(args)?),
            Scenario::Fanout(args) => Box::new(fanout::run(args)?),
            Scenario::Backpressure(args) => Box::new(backpressure::run(args)?),
            Scenario::Polling(args) => Box::new(polling::run(args)?),
        })
    }

    /// The options every scenario shares.
    pub fn common(&self) -> &Common {
        match self {
            Scenario::Idle(a) => &a.common,
            Scenario::Fanout(a) => &a.common,
            Scenario::Backpressure(a) => &a.common,
            Scenario::Polling(a) => &a.common,
        }
    }

    /// The scenario's options as JSON, for a matrix cell's `params`.
    pub fn params(&self) -> serde_json::Value {
        let mut json = match self {
            Scenario::Idle(a) => serde_json::json!({ "connections": a.connections.to_string() }),
            Scenario::Fanout(a) => serde_json::json!({
                "subscribers": a.subscribers, "messages": a.messages, "size": a.size, "interval_ms": a.interval_ms,
            }),
            Scenario::Backpressure(a) => serde_json::json!({
                "policy": a.policy, "fast": a.fast, "stalled": a.stalled, "rate": a.rate,
                "messages": a.messages, "size": a.size, "rcvbuf": a.rcvbuf, "sample_ms": a.sample_ms,
            }),
            Scenario::Polling(a) => serde_json::json!({
                "clients": a.clients, "rate": a.rate, "secs": a.secs, "every_ms": a.every_ms, "size": a.size,
            }),
        };
        json["server_args"] = serde_json::json!(self.common().server_args);
        json
    }
}

/// `rtlab bench ...`: runs one scenario (printing its summary line and
/// writing its JSON if asked) or the matrix. Returns false if anything failed
/// verification.
pub fn run_cli(args: &BenchArgs) -> std::io::Result<bool> {
    raise_nofile_limit();
    match &args.scenario {
        Some(scenario) => {
            let result = scenario.run()?;
            println!("{}", result.summary());
            if let Some(path) = &scenario.common().json {
                std::fs::write(path, serde_json::to_vec_pretty(&result.to_json()).map_err(std::io::Error::other)?)?;
            }
            Ok(result.verified())
        }
        None => matrix::run(&args.matrix),
    }
}

/// The progress bars of a run share one terminal area, so that a scenario's
/// "opening connections" bar and the matrix's bar do not overwrite each
/// other. Hidden when stderr is not a terminal.
pub fn progress() -> &'static indicatif::MultiProgress {
    static BARS: OnceLock<indicatif::MultiProgress> = OnceLock::new();
    BARS.get_or_init(indicatif::MultiProgress::new)
}

/// Prints a line to stdout above the progress bars (also when they are
/// hidden, unlike `MultiProgress::println`).
pub fn say(line: &str) {
    progress().suspend(|| println!("{line}"));
}

/// Raises this process's soft open-files limit to its hard limit. Servers
/// and workers started from here inherit it.
pub fn raise_nofile_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid resource and a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// The hard open-files limit a server started from here gets.
pub fn nofile_limit() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit with a valid resource and a valid struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 { limit.rlim_max } else { 1024 }
}

/// Where the server and the clients run.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Placement {
    /// Core the server is pinned to.
    pub server: Option<usize>,
    /// Core the client workers are pinned to.
    pub clients: Option<usize>,
}

impl Placement {
    /// Server on core 0 and clients on core 1 when there are two cores and
    /// `taskset` exists; no pinning otherwise.
    pub fn detect() -> Placement {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let taskset = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("taskset").is_file()));
        if cores >= 2 && taskset {
            Placement { server: Some(0), clients: Some(1) }
        } else {
            Placement::default()
        }
    }
}

// ANCHOR: run_env
/// The conditions one run ran under. The machine is shared: another
/// process's load, or a hypervisor giving the virtual CPUs to another guest
/// (steal), slows a run down without any fault of the lab measured, so every
/// run records both and the report shows them.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct RunEnv {
    /// Where the server and the clients ran.
    pub placement: Placement,
    /// CPU steal during the run, seconds (all CPUs together).
    pub steal_secs: f64,
    /// One-minute load average when the run started.
    pub load_before: f64,
    /// One-minute load average when it ended.
    pub load_after: f64,
    /// Wall-clock seconds of the whole run (server start to stop).
    pub wall_secs: f64,
}
// ANCHOR_END: run_env

/// Measures a [`RunEnv`] from its creation to [`EnvProbe::end`].
#[derive(Debug)]
pub struct EnvProbe {
    placement: Placement,
    steal: f64,
    load: f64,
    start: Instant,
}

impl EnvProbe {
    /// Starts measuring; also decides the placement.
    pub fn begin() -> EnvProbe {
        EnvProbe {
            placement: Placement::detect(),
            steal: procfs::steal_secs(),
            load: procfs::loadavg(),
            start: Instant::now(),
        }
    }

    /// Where the server and the clients go.
    pub fn placement(&self) -> Placement {
        self.placement
    }

    /// The conditions from [`EnvProbe::begin`] until now.
    pub fn end(&self) -> RunEnv {
        RunEnv {
            placement: self.placement,
            steal_secs: (procfs::steal_secs() - self.steal).max(0.0),
            load_before: self.load,
            load_after: procfs::loadavg(),
            wall_secs: self.start.elapsed().as_secs_f64(),
        }
    }
}

/// Percentiles of a sample (nearest-rank).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: usize,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

impl Percentiles {
    /// Sorts `values` and takes nearest-rank percentiles.
    pub fn of(values: &mut [u64]) -> Percentiles {
        values.sort_unstable();
        let rank = |p: f64| {
            if values.is_empty() {
                0
            } else {
                let i = ((p * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1;
                values[i]
            }
        };
        Percentiles {
            count: values.len(),
            p50: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
            max: values.last().copied().unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<u64> = (1..=100).rev().collect();
        let p = Percentiles::of(&mut v);
        assert_eq!((p.count, p.p50, p.p90, p.p99, p.max), (100, 50, 90, 99, 100));
        let p = Percentiles::of(&mut [7]);
        assert_eq!((p.p50, p.p99, p.max), (7, 7, 7));
        assert_eq!(Percentiles::of(&mut []).count, 0);
    }

    #[test]
    fn every_committed_run_reads_back_into_its_result_and_writes_the_same_json() {
        // Each run of the committed document was written by the scenario
        // results before they shared `RunInfo` and `Verdict`; read into
        // today's types and written again, it must be the same JSON.
        use crate::axes::ScenarioKind;
        fn same<T: Serialize + serde::de::DeserializeOwned>(run: &serde_json::Value) {
            let typed: T = serde_json::from_value(run.clone()).expect("a run reads into its result type");
            assert!(serde_json::to_value(&typed).expect("serializes") == *run, "{run}");
        }
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench-results/2026-11-24-vm");
        let doc = results::Document::read(&dir).expect("the committed run loads");
        for cell in &doc.cells {
            for run in &cell.runs {
                match cell.scenario {
                    ScenarioKind::Idle => same::<outcome::Run<idle::IdleResult>>(run),
                    ScenarioKind::Fanout | ScenarioKind::Saturation => same::<outcome::Run<fanout::FanoutResult>>(run),
                    ScenarioKind::Backpressure => same::<outcome::Run<backpressure::BackpressureResult>>(run),
                    ScenarioKind::Polling => same::<outcome::Run<polling::PollingResult>>(run),
                }
            }
        }
    }
}
