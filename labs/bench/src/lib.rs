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
//! | [`floor`] | `rtlab bench-floor`: the raw-socket server (mio, no protocol, no hub) that does only the kernel work a scenario needs, the reference every idle and fan-out figure is divided by |
//! | [`headers`] | a real browser's request headers (captured from Chromium by `scripts/interop/headers.mjs`), for clients that send what a page sends |
//! | [`idle`] | N idle connections: server memory per connection, kernel share apart, time to open, release after close |
//! | [`fanout`] | M subscribers, K messages: publish-to-receive latency per pair and for the last subscriber; throughput at saturation |
//! | [`knee`] | throughput at the knee: a ramp of open-loop fan-out runs until the last subscriber's p99 passes a bound; the highest sustained rate, CPU per delivery, and what limited it |
//! | [`backpressure`] | fast and stalled subscribers under each outbox policy: memory over time, fast subscribers' latency, fate of the stalled |
//! | [`million`] | a million idle connections over many server processes ([`cluster`]) and crowd workers ([`crowd`]): memory per connection summed over processes, kernel share, time to open, one broadcast's timeline to all |
//! | [`million_report`] | `rtlab report-million`: the million's tables, findings and plot, for the book |
//! | [`openloop`] | publishing on a fixed schedule of absolute times over as many connections as it takes (no coordinated omission); publish round trips apart |
//! | [`polling`] | short polling vs long polling vs SSE vs WebSocket for one update rate: requests, CPU, bytes and staleness per message |
//! | [`sweep`] | `rtlab bench polling-sweep`: the polling scenario over update rate × period × clients, every transport, on several labs; where each transport becomes the cheaper one (its own document, `bench-results/polling/sweep.json`) |
//! | [`herd`] | `rtlab bench reconnect`: the thundering herd — N reconnecting clients (the client library), the server SIGKILLed and restarted, each back-off strategy: attempts and subscriptions over time, failures, time to 99 % / 100 % back, messages lost across the restart |
//! | [`zombies`] | `rtlab bench zombies`: dead peers made for real (a network namespace whose traffic is dropped, a SIGSTOPped client): how long each lab takes to reap them, per transport, beside what the kernel alone would do |
//! | [`session`] | the skeleton every scenario shares: probe the machine, start a fresh server, the scenario's own part, stop the server, the verdict |
//! | [`outcome`] | what a run reports: its [`outcome::Verdict`] (verified, failed, environment problem), what every run shares ([`outcome::RunInfo`]: lab, transport, verdict, clean exit, conditions), a run's whole result [`outcome::Run`] (that + the scenario's own [`outcome::Measured`] result), the [`Outcome`] trait the matrix holds |
//! | [`axes`] | the matrix's axes as types: [`axes::ScenarioKind`], [`axes::Transport`], [`axes::Policy`], [`axes::Label`] (a cell's size or variant), [`axes::Scale`]; stored as the strings they print |
//! | [`matrix`] | `rtlab bench` without a scenario: the labs found by `rtlab runtimes [--baselines]`, every lab × transport × scenario, repeated, into one results document |
//! | [`results`] | the results document: machine, toolchain, versions, commit, parameters, per-run values and their spread, failures |
//! | [`report`] | `rtlab report`: markdown tables ([`report::tables`]), sentences computed from the data ([`report::notes`]), SVG plots ([`report::plots`], drawn by [`report::charts`]), number formats ([`report::format`]), also for the book |
//! | [`scaleout`] | `rtlab bench-cluster`: several processes on a real Redis — publish-to-receive in-process against through Redis, fan-out spread over 1, 2 and 4 processes, Redis's CPU per message, a killed Redis under load (lost, duplicated, silent gaps, recovery time), sticky sessions; its own document (`bench-results/cluster/`) and report |
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
pub mod cluster;
pub mod compare;
pub mod criterion_doc;
pub mod deltas;
pub mod crowd;
pub mod expiry;
pub mod fanout;
pub mod herd;
pub mod floor;
pub mod headers;
pub mod idle;
pub mod knee;
pub mod matrix;
pub mod million;
pub mod million_report;
pub mod openloop;
pub mod outcome;
pub mod polling;
pub mod procfs;
pub mod report;
pub mod results;
pub mod retained;
pub mod scaleout;
pub mod server;
pub mod session;
pub mod sweep;
pub mod tls;
pub mod worker;
pub mod workers;
pub mod zombies;

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
    /// Where the server and the clients run: pinned (server CPU 0, clients
    /// CPU 1) or shared (nothing pinned).
    #[arg(long, value_enum, default_value = "pinned")]
    pub placement: axes::PlacementMode,
}

impl Common {
    /// Options for `runtime` with no extra server options and no JSON file.
    pub fn new(runtime: &str) -> Common {
        Common { runtime: runtime.to_owned(), server_args: Vec::new(), json: None, placement: axes::PlacementMode::Pinned }
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
    /// The polling sweep: polling cost over update rate × period × clients,
    /// every transport, several labs (its own document and plots).
    PollingSweep(sweep::SweepArgs),
    /// The thundering herd: N reconnecting clients, the server killed and restarted.
    Reconnect(herd::ReconnectArgs),
    /// Dead peers: how long each lab takes to reap a vanished client (needs root).
    Zombies(zombies::ZombiesArgs),
    /// A million (any number of) idle connections over many server
    /// processes, and one broadcast that must reach every one.
    Million(million::MillionArgs),
    /// Throughput at the knee: offered load ramped until latency passes a bound.
    Knee(knee::KneeArgs),
    /// The floor: the raw-socket server's fan-out (as `fanout --runtime floor`).
    Floor(fanout::FanoutArgs),
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
            Scenario::PollingSweep(_) => {
                return Err(std::io::Error::other("the polling sweep is many runs with a document of its own: `rtlab bench polling-sweep`"));
            }
            Scenario::Reconnect(args) => Box::new(herd::run(args)?),
            Scenario::Zombies(args) => Box::new(zombies::run(args)?),
            Scenario::Million(args) => Box::new(million::run(args)?),
            Scenario::Knee(args) => Box::new(knee::run(args)?),
            Scenario::Floor(args) => {
                let args = fanout::FanoutArgs { common: Common { runtime: floor::NAME.into(), ..args.common.clone() }, ..args.clone() };
                Box::new(fanout::run(&args)?)
            }
        })
    }

    /// The options every scenario shares (the sweep has its own).
    pub fn common(&self) -> Option<&Common> {
        Some(match self {
            Scenario::Idle(a) => &a.common,
            Scenario::Fanout(a) => &a.common,
            Scenario::Backpressure(a) => &a.common,
            Scenario::Polling(a) => &a.common,
            Scenario::Reconnect(a) => &a.common,
            Scenario::Zombies(a) => &a.common,
            Scenario::Million(a) => &a.common,
            Scenario::Knee(a) => &a.fanout.common,
            Scenario::Floor(a) => &a.common,
            Scenario::PollingSweep(_) => return None,
        })
    }

    /// The scenario's options as JSON, for a matrix cell's `params`.
    pub fn params(&self) -> serde_json::Value {
        let mut json = match self {
            Scenario::Idle(a) => serde_json::json!({ "connections": a.connections.to_string() }),
            Scenario::Fanout(a) | Scenario::Floor(a) => {
                let mut p = serde_json::json!({
                    "subscribers": a.subscribers, "messages": a.messages, "size": a.size, "interval_ms": a.interval_ms,
                });
                if let Some(us) = a.interval_us {
                    p["interval_us"] = us.into();
                }
                p
            }
            Scenario::Knee(a) => serde_json::json!({
                "subscribers": a.fanout.subscribers, "start": a.start, "factor": a.factor, "bound_ms": a.bound_ms,
                "messages": a.fanout.messages, "size": a.fanout.size, "max_steps": a.max_steps,
            }),
            Scenario::Backpressure(a) => serde_json::json!({
                "policy": a.policy, "fast": a.fast, "stalled": a.stalled, "rate": a.rate,
                "messages": a.messages, "size": a.size, "rcvbuf": a.rcvbuf, "sample_ms": a.sample_ms,
            }),
            Scenario::Polling(a) => {
                let mut p = serde_json::json!({
                    "clients": a.clients, "rate": a.rate, "secs": a.secs, "every_ms": a.every_ms, "size": a.size,
                });
                if let Some(path) = &a.browser_headers {
                    p["browser_headers"] = path.display().to_string().into();
                }
                p
            }
            Scenario::Reconnect(a) => serde_json::json!({
                "clients": a.clients, "base_ms": a.base_ms, "cap_ms": a.cap_ms, "down_ms": a.down_ms, "repeats": a.repeats,
            }),
            Scenario::Zombies(a) => serde_json::json!({ "interval": a.interval, "user_timeout": a.user_timeout }),
            Scenario::Million(a) => serde_json::json!({
                "connections": a.connections, "processes": a.process_count(), "kind": a.kind,
            }),
            Scenario::PollingSweep(a) => serde_json::json!({ "runtimes": a.runtimes, "rates": a.rates, "periods": a.periods }),
        };
        json["server_args"] = serde_json::json!(self.common().map(|c| c.server_args.clone()).unwrap_or_default());
        json
    }
}

/// `rtlab bench ...`: runs one scenario (printing its summary line and
/// writing its JSON if asked) or the matrix. Returns false if anything failed
/// verification.
pub fn run_cli(args: &BenchArgs) -> std::io::Result<bool> {
    raise_nofile_limit();
    match &args.scenario {
        Some(Scenario::PollingSweep(sweep)) => sweep::run(sweep),
        Some(scenario) => {
            let result = scenario.run()?;
            println!("{}", result.summary());
            if let Some(path) = scenario.common().and_then(|c| c.json.as_ref()) {
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

/// Where the server and the clients run. The orchestrator's own threads
/// (publisher, samplers) run where the clients do ([`Placement::pin_this_thread`]).
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

    /// The placement `mode` asks for on this machine.
    pub fn of(mode: axes::PlacementMode) -> Placement {
        match mode {
            axes::PlacementMode::Pinned => Placement::detect(),
            axes::PlacementMode::Shared => Placement::default(),
        }
    }

    /// Moves the calling thread (and the threads it starts from now on: the
    /// publisher's, the samplers') to the clients' core, or lets it run on
    /// every core when the clients are not pinned.
    pub fn pin_this_thread(&self) {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes
        // within it for indexes below CPU_SETSIZE; sched_setaffinity(0, ..)
        // changes only the calling thread.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            match self.clients {
                Some(core) => libc::CPU_SET(core, &mut set),
                None => (0..cores.min(libc::CPU_SETSIZE as usize)).for_each(|c| libc::CPU_SET(c, &mut set)),
            }
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
    }
}

// ANCHOR: run_env
/// The conditions one run ran under. The machine may be shared: another
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
    /// Starts measuring; also decides the placement (`mode`) and moves this
    /// thread where the clients go.
    pub fn begin(mode: axes::PlacementMode) -> EnvProbe {
        let placement = Placement::of(mode);
        placement.pin_this_thread();
        EnvProbe {
            placement,
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

/// Percentiles of a sample, as the results document stores them. Read
/// from a [`Latency`] histogram. With fewer than 1,000 values the 99th
/// percentile is one of the ten largest, and the report calls its column
/// "max" ([`Percentiles::p99_means_max`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: usize,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

impl Percentiles {
    /// The percentiles of `values` (recorded into a [`Latency`] histogram).
    pub fn of(values: &[u64]) -> Percentiles {
        let mut h = Latency::new();
        values.iter().for_each(|&v| h.record(v));
        h.percentiles()
    }

    /// With fewer than 1,000 values, the 99th percentile is one of the ten
    /// largest (with 100, the largest): a column showing it says "max".
    pub fn p99_means_max(&self) -> bool {
        self.count < 1000
    }
}

// ANCHOR: latency
/// A latency histogram in microseconds: an HDR histogram (the
/// `hdrhistogram` crate, three significant digits, from 1 µs to an hour),
/// not a sorted vector. Workers record every (subscriber, message) pair into
/// one and send it to the orchestrator as its recorded (value, count) pairs,
/// which merge exactly: 10,000 subscribers × 1,000 messages is ten million
/// values, and a histogram of them is a few kilobytes, where the values
/// themselves would be tens of megabytes of JSON.
#[derive(Debug, Clone)]
pub struct Latency(hdrhistogram::Histogram<u64>);
// ANCHOR_END: latency

impl Default for Latency {
    fn default() -> Latency {
        Latency::new()
    }
}

impl Latency {
    /// An empty histogram, 1 µs to one hour, three significant digits.
    pub fn new() -> Latency {
        Latency(hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"))
    }

    /// Records one value (clamped into the histogram's range).
    pub fn record(&mut self, us: u64) {
        self.0.saturating_record(us.max(1));
    }

    /// Records `count` occurrences of `us`.
    fn record_n(&mut self, us: u64, count: u64) {
        let _ = self.0.record_n(us.clamp(1, 3_600_000_000), count);
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Latency) {
        self.0.add(&other.0).expect("same bounds");
    }

    /// Values recorded.
    pub fn len(&self) -> u64 {
        self.0.len()
    }

    /// Nothing recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Its percentiles (HDR's value at each quantile: equal values within
    /// three significant digits).
    pub fn percentiles(&self) -> Percentiles {
        if self.0.is_empty() {
            return Percentiles { count: 0, p50: 0, p90: 0, p99: 0, max: 0 };
        }
        Percentiles {
            count: self.0.len() as usize,
            p50: self.0.value_at_quantile(0.50),
            p90: self.0.value_at_quantile(0.90),
            p99: self.0.value_at_quantile(0.99),
            max: self.0.max(),
        }
    }
}

/// Sent between processes as `[[value, count], ...]` (the recorded buckets).
impl Serialize for Latency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let pairs: Vec<[u64; 2]> =
            self.0.iter_recorded().map(|v| [v.value_iterated_to(), v.count_at_value()]).collect();
        pairs.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Latency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Latency, D::Error> {
        let pairs = Vec::<[u64; 2]>::deserialize(d)?;
        let mut h = Latency::new();
        pairs.into_iter().for_each(|[v, n]| h.record_n(v, n));
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_histogram_and_survive_the_wire() {
        let v: Vec<u64> = (1..=1000).rev().collect();
        let p = Percentiles::of(&v);
        assert_eq!((p.count, p.p50, p.p90, p.p99, p.max), (1000, 500, 900, 990, 1000));
        assert!(!p.p99_means_max());
        let p = Percentiles::of(&[7]);
        assert_eq!((p.p50, p.p99, p.max), (7, 7, 7));
        assert!(p.p99_means_max());
        assert_eq!(Percentiles::of(&[]).count, 0);
        // Large values keep three significant digits through JSON and a merge.
        let mut a = Latency::new();
        [1_234_567u64, 20, 20, 35].iter().for_each(|&v| a.record(v));
        let back: Latency = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        let mut merged = Latency::new();
        merged.merge(&back);
        merged.merge(&a);
        let p = merged.percentiles();
        assert_eq!((p.count, p.p50), (8, 20));
        assert!(p.max.abs_diff(1_234_567) < 1_235, "{}", p.max);
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
                    ScenarioKind::Knee => same::<outcome::Run<knee::KneeResult>>(run),
                }
            }
        }
    }
}
