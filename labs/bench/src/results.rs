//! The results document: one JSON file per matrix run,
//! `bench-results/<date>-<host>/results.json`.
//!
//! It holds everything needed to judge and reproduce the numbers: the
//! machine (CPU model, cores, memory, kernel, open-files limit), the
//! toolchain and build profile, the versions of every crate in the build,
//! the git commit (and whether the tree had uncommitted changes), the exact
//! command and sizes, the labs and the transports each serves, and for every
//! cell of the matrix each run's complete result plus, per metric, the
//! per-run values, their mean and spread. Runs that failed verification are
//! listed as failures, and their cells carry no numbers.
//!
//! Numbers in the book come only from this document, through `rtlab report`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::axes::{Label, Scale, ScenarioKind, Transport};
use crate::{Placement, RunEnv};

/// The document's format, checked when a document is read.
pub const SCHEMA: &str = "rtlab-bench/1";

// ANCHOR: document
/// One matrix run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Document {
    /// [`SCHEMA`].
    pub schema: String,
    /// `tiny`, `quick` or `full`.
    pub scale: Scale,
    /// When the run started and ended, UTC (RFC 3339).
    pub started: String,
    pub finished: Option<String>,
    pub wall_secs: f64,
    /// The command line.
    pub command: Vec<String>,
    pub machine: Machine,
    pub toolchain: Toolchain,
    /// Every crate in the build (from the workspace's `Cargo.lock` at build
    /// time): name → version.
    pub crates: BTreeMap<String, String>,
    pub git: Git,
    /// The sizes and options every scenario ran with.
    pub parameters: serde_json::Value,
    /// The labs measured and the transports each serves.
    pub labs: Vec<Lab>,
    /// One entry per (scenario, runtime, transport, size or variant).
    pub cells: Vec<Cell>,
    /// Every run that failed, with its reason.
    pub failures: Vec<Failure>,
}

/// One cell of the matrix, run `runs.len()` times.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cell {
    /// `idle`, `fanout`, `saturation`, `backpressure` or `polling`.
    pub scenario: ScenarioKind,
    /// A lab: discovered, not an enum (see [`crate::axes`]).
    pub runtime: String,
    pub transport: Transport,
    /// The size or variant: connections (`1000`, `max`), subscribers,
    /// `baseline`, a policy or `own`, clients.
    pub label: Label,
    /// The scenario's options.
    pub params: serde_json::Value,
    /// Every run verified. Metrics are only computed from verified runs.
    pub verified: bool,
    /// Per metric: each verified run's value, mean and spread.
    pub metrics: BTreeMap<String, Stat>,
    /// Each run's complete result (including its conditions: steal, load).
    pub runs: Vec<serde_json::Value>,
}
// ANCHOR_END: document

impl Cell {
    /// `scenario/runtime/transport/label`: what `rtlab compare` matches on.
    pub fn key(&self) -> String {
        format!("{}/{}/{}/{}", self.scenario, self.runtime, self.transport, self.label)
    }

    /// The mean of a metric, if the cell has it.
    pub fn mean(&self, metric: &str) -> Option<f64> {
        self.metrics.get(metric).map(|s| s.mean)
    }

    /// The median of `metric` over the runs, if the cell has it.
    pub fn median(&self, metric: &str) -> Option<f64> {
        self.metrics.get(metric).map(Stat::median)
    }
}

/// A metric over repeated runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stat {
    /// One value per verified run, in run order.
    pub values: Vec<f64>,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    /// (max − min) / mean, in percent: how far apart the runs are.
    pub spread_pct: f64,
}

impl Stat {
    /// The statistics of `values` (empty: all zero).
    pub fn of(values: Vec<f64>) -> Stat {
        let n = values.len().max(1) as f64;
        let mean = values.iter().sum::<f64>() / n;
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let (min, max) = if values.is_empty() { (0.0, 0.0) } else { (min, max) };
        let spread_pct = if mean.abs() > f64::EPSILON { (max - min) / mean.abs() * 100.0 } else { 0.0 };
        Stat { values, mean, min, max, spread_pct }
    }

    /// The median of the runs (of two, their mean): what the tables show,
    /// so one disturbed run of three does not move the figure.
    pub fn median(&self) -> f64 {
        let mut v = self.values.clone();
        v.sort_by(f64::total_cmp);
        match v.len() {
            0 => 0.0,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }

    /// Half the range of the runs as a share of the median, in percent: the
    /// "±" of a table.
    pub fn half_range_pct(&self) -> f64 {
        let m = self.median();
        if m.abs() > f64::EPSILON { (self.max - self.min) / 2.0 / m.abs() * 100.0 } else { 0.0 }
    }
}

/// A run that failed verification or could not run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Failure {
    /// [`Cell::key`].
    pub cell: String,
    /// Which repeat (0-based).
    pub run: usize,
    pub message: String,
}

/// A lab and the transports it serves (probed, not assumed).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lab {
    pub runtime: String,
    /// A framework baseline (listed by `rtlab runtimes --baselines`, not by
    /// `rtlab runtimes`), not one of the full labs.
    pub baseline: bool,
    pub transports: Vec<Transport>,
}

/// The machine the run ran on.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Machine {
    pub host: String,
    pub cpu_model: String,
    /// CPUs this process may run on.
    pub cores: usize,
    pub memory_bytes: u64,
    /// `uname -r` and the kernel's build line.
    pub kernel: String,
    pub kernel_version: String,
    /// The open-files limit servers and workers run with.
    pub nofile_limit: u64,
    /// Memory mappings one process may have (`vm.max_map_count`): each
    /// thread or coroutine stack takes some.
    #[serde(default)]
    pub max_map_count: u64,
    /// Process and thread ids (`kernel.pid_max`) and threads
    /// (`kernel.threads-max`) on the whole machine.
    #[serde(default)]
    pub pid_max: u64,
    #[serde(default)]
    pub threads_max: u64,
    /// Where servers and clients ran.
    pub placement: Placement,
    /// CPU steal over the whole run, seconds (all CPUs).
    pub steal_secs: f64,
    /// One-minute load average at the start and at the end.
    pub load_start: f64,
    pub load_end: f64,
}

impl Machine {
    /// Reads `/proc` and `/etc/hostname`-equivalents.
    pub fn detect() -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default().trim().to_owned();
        let cpuinfo = read("/proc/cpuinfo");
        let meminfo = read("/proc/meminfo");
        Machine {
            host: read("/proc/sys/kernel/hostname"),
            cpu_model: cpuinfo
                .lines()
                .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned()))
                .unwrap_or_default(),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_bytes: meminfo
                .lines()
                .find_map(|l| l.strip_prefix("MemTotal:")?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
                .unwrap_or(0)
                * 1024,
            kernel: read("/proc/sys/kernel/osrelease"),
            kernel_version: read("/proc/version"),
            nofile_limit: crate::nofile_limit(),
            max_map_count: read("/proc/sys/vm/max_map_count").parse().unwrap_or(0),
            pid_max: read("/proc/sys/kernel/pid_max").parse().unwrap_or(0),
            threads_max: read("/proc/sys/kernel/threads-max").parse().unwrap_or(0),
            placement: Placement::detect(),
            steal_secs: 0.0,
            load_start: crate::procfs::loadavg(),
            load_end: 0.0,
        }
    }
}

/// The toolchain: what `rustc` and `cargo` say now, and how this binary was built.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Toolchain {
    pub rustc: String,
    pub cargo: String,
    /// `release` or `debug` (debug assertions on).
    pub profile: String,
}

impl Toolchain {
    /// Asks `rustc -V` and `cargo -V`.
    pub fn detect() -> Toolchain {
        Toolchain {
            rustc: command_line("rustc", &["-V"]).unwrap_or_default(),
            cargo: command_line("cargo", &["-V"]).unwrap_or_default(),
            profile: if cfg!(debug_assertions) { "debug" } else { "release" }.to_owned(),
        }
    }
}

/// The source tree the run was built from.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Git {
    pub commit: Option<String>,
    /// `git status --porcelain` listed changes (the run measured uncommitted code).
    pub dirty: bool,
}

impl Git {
    /// Asks git about the current directory's repository.
    pub fn detect() -> Git {
        Git {
            commit: command_line("git", &["rev-parse", "HEAD"]),
            dirty: command_line("git", &["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty()),
        }
    }
}

fn command_line(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The workspace's lock file as it was when this binary was built.
const CARGO_LOCK: &str = include_str!("../../../Cargo.lock");

/// Every package in the build and its version (`Cargo.lock` at build time).
pub fn crate_versions() -> BTreeMap<String, String> {
    let mut versions = BTreeMap::new();
    for package in CARGO_LOCK.split("[[package]]").skip(1) {
        let field = |name: &str| {
            package.lines().find_map(|l| {
                l.strip_prefix(name)?.trim_start().strip_prefix('=')?.trim().strip_prefix('"')?.strip_suffix('"').map(str::to_owned)
            })
        };
        if let (Some(name), Some(version)) = (field("name"), field("version")) {
            versions
                .entry(name)
                .and_modify(|v: &mut String| {
                    if !v.split(", ").any(|x| x == version) {
                        v.push_str(", ");
                        v.push_str(&version);
                    }
                })
                .or_insert(version);
        }
    }
    versions
}

/// Where a results document's numbers come from, for the experiments that
/// write their own documents (`rtlab criterion`, `rtlab deltas`): the command,
/// the machine, the toolchain, every crate's version and the commit.
/// Flattened into each document, so its JSON reads like [`Document`]'s.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Provenance {
    pub command: Vec<String>,
    pub machine: Machine,
    pub toolchain: Toolchain,
    pub crates: BTreeMap<String, String>,
    pub git: Git,
}

impl Provenance {
    /// This process's command line, machine, toolchain, crates and commit.
    pub fn detect() -> Provenance {
        Provenance {
            command: std::env::args().collect(),
            machine: Machine::detect(),
            toolchain: Toolchain::detect(),
            crates: crate_versions(),
            git: Git::detect(),
        }
    }
}

/// Where an experiment that writes its own document (`rtlab deltas`,
/// `rtlab retained`) puts it, and whether it only renders one again.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Output {
    /// Where to write the document (default: a directory under
    /// `bench-results/` named after the experiment).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also write the markdown into this directory, under the experiment's
    /// name (the book's `book/src/generated`).
    #[arg(long)]
    pub book: Option<PathBuf>,
    /// Render an existing document's directory instead of measuring.
    #[arg(long)]
    pub render: Option<PathBuf>,
}

/// Reads the document `file` in `dir`, checking its `schema`.
pub fn read_document<T: serde::de::DeserializeOwned>(dir: &Path, file: &str, schema: &str) -> std::io::Result<T> {
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join(file))?).map_err(std::io::Error::other)?;
    if doc["schema"] != schema {
        return Err(std::io::Error::other(format!("{}: schema {}, expected {schema:?}", dir.display(), doc["schema"])));
    }
    serde_json::from_value(doc).map_err(std::io::Error::other)
}

/// Writes an experiment's rendering — (file name, markdown) pairs — into
/// its results directory `dir` and, when given, into `book` (its directory
/// under the book's `generated/`); prints the first file.
pub fn write_rendering<N: AsRef<Path>>(files: &[(N, String)], dir: &Path, book: Option<PathBuf>) -> std::io::Result<()> {
    write_rendering_with_plots(files, dir, book, |_| Ok(()))
}

/// [`write_rendering`], and `plots` draws the experiment's plots into each
/// root's `plots/` directory (created first).
pub fn write_rendering_with_plots<N: AsRef<Path>>(
    files: &[(N, String)],
    dir: &Path,
    book: Option<PathBuf>,
    plots: impl Fn(&Path) -> Result<(), Box<dyn std::error::Error>>,
) -> std::io::Result<()> {
    for root in std::iter::once(dir.to_owned()).chain(book) {
        for (name, text) in files {
            let path = root.join(name);
            std::fs::create_dir_all(path.parent().unwrap_or(&root))?;
            std::fs::write(path, text)?;
        }
        let plot_dir = root.join("plots");
        std::fs::create_dir_all(&plot_dir)?;
        plots(&plot_dir).map_err(|e| std::io::Error::other(e.to_string()))?;
    }
    if let Some((_, first)) = files.first() {
        println!("{first}");
    }
    println!("wrote {} files and their plots under {}", files.len(), dir.display());
    Ok(())
}

/// How busy the machine was as an experiment started, measured: the share
/// of CPU time not idle in the second before ([`crate::procfs::busy_fraction`];
/// it sleeps that second). Feed it to [`conditions`].
pub fn busy_before() -> f64 {
    crate::procfs::busy_fraction(std::time::Duration::from_secs(1))
}

/// An experiment's conditions in words, from what was measured — never a
/// fixed sentence: how busy the CPUs were in the second before it started
/// (5% or more: other work shared them), and the one-minute load average at
/// the start and at the end (the run's own processes included).
pub fn conditions(busy_before: f64, cores: usize, load: (f64, f64)) -> String {
    let before = if busy_before >= 0.05 {
        format!(
            "the {cores} CPUs were {:.0}% busy in the second before the run started: other work shared them",
            busy_before * 100.0
        )
    } else {
        format!("the {cores}-CPU machine was idle when the run started ({:.0}% busy in the second before)", busy_before * 100.0)
    };
    format!("{before}; one-minute load average {:.2} at the start, {:.2} at the end (the run's own processes included)", load.0, load.1)
}

/// Now, UTC: (`YYYY-MM-DD`, RFC 3339 `YYYY-MM-DDTHH:MM:SSZ`).
pub fn utc_now() -> (String, String) {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let date = format!("{year:04}-{month:02}-{day:02}");
    let stamp = format!("{date}T{:02}:{:02}:{:02}Z", rest / 3600, rest / 60 % 60, rest % 60);
    (date, stamp)
}

impl Document {
    /// A new document for a run that starts now.
    pub fn begin(scale: Scale, parameters: serde_json::Value, labs: Vec<Lab>) -> Document {
        Document {
            schema: SCHEMA.to_owned(),
            scale,
            started: utc_now().1,
            finished: None,
            wall_secs: 0.0,
            command: std::env::args().collect(),
            machine: Machine::detect(),
            toolchain: Toolchain::detect(),
            crates: crate_versions(),
            git: Git::detect(),
            parameters,
            labs,
            cells: Vec::new(),
            failures: Vec::new(),
        }
    }

    /// Reads `results.json` from a results directory (or the file itself).
    pub fn read(path: &Path) -> std::io::Result<Document> {
        let file = if path.is_dir() { path.join("results.json") } else { path.to_owned() };
        let bytes = std::fs::read(&file).map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", file.display())))?;
        let doc: Document = serde_json::from_slice(&bytes)
            .map_err(|e| std::io::Error::other(format!("{}: not a results document: {e}", file.display())))?;
        if doc.schema != SCHEMA {
            return Err(std::io::Error::other(format!("{}: schema {} (expected {SCHEMA})", file.display(), doc.schema)));
        }
        Ok(doc)
    }

    /// Writes `results.json` into `dir` (atomically: a partial run never
    /// leaves a truncated document).
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join("results.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?)?;
        std::fs::rename(tmp, dir.join("results.json"))
    }

    /// The cells of one scenario.
    pub fn cells_of(&self, scenario: ScenarioKind) -> impl Iterator<Item = &Cell> {
        self.cells.iter().filter(move |c| c.scenario == scenario)
    }

    /// The runtimes measured, in the order of [`Document::labs`].
    pub fn runtimes(&self) -> Vec<String> {
        self.labs.iter().map(|l| l.runtime.clone()).collect()
    }

    /// The largest per-run steal and load seen in the document's runs.
    pub fn worst_conditions(&self) -> RunEnv {
        let mut worst = RunEnv::default();
        for run in self.cells.iter().flat_map(|c| &c.runs) {
            if let Ok(env) = serde_json::from_value::<RunEnv>(run["env"].clone()) {
                worst.steal_secs = worst.steal_secs.max(env.steal_secs);
                worst.load_before = worst.load_before.max(env.load_before);
                worst.load_after = worst.load_after.max(env.load_after);
                worst.wall_secs = worst.wall_secs.max(env.wall_secs);
            }
        }
        worst
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_spread_and_lock_versions() {
        let s = Stat::of(vec![100.0, 104.0]);
        assert_eq!((s.mean, s.min, s.max), (102.0, 100.0, 104.0));
        assert!((s.spread_pct - 3.92).abs() < 0.01);
        assert_eq!(Stat::of(Vec::new()).mean, 0.0);
        let crates = crate_versions();
        assert!(crates.contains_key("serde") && crates.contains_key("rtlab-bench"));
        let (date, stamp) = utc_now();
        assert_eq!(date.len(), 10);
        assert!(stamp.starts_with(&date) && stamp.ends_with('Z'));
    }

    #[test]
    fn the_committed_run_loads_and_writes_back_the_same_json() {
        // The cells' scenario, transport and label are enums now; the
        // document they are read from was written when they were strings.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench-results/2026-11-24-vm");
        let doc = Document::read(&dir).expect("the committed run loads");
        assert_eq!((doc.cells.len(), doc.scale), (180, crate::axes::Scale::Full));
        let raw: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("results.json")).expect("read")).expect("JSON");
        assert!(serde_json::to_value(&doc).expect("serializes") == raw, "the document does not write back as it was read");
    }
}
