//! `rtlab report-million DIR [--book DIR]`: the million's tables, findings
//! and plot, from the result documents (`*.json`, [`MillionResult`]) in a
//! directory (`bench-results/million/`).
//!
//! Written (into `--book`, e.g. `book/src/generated`, and next to the JSON):
//!
//! | file | what |
//! |---|---|
//! | `tables/million-runs.md` | every run: size, opening, memory per connection (user and kernel, both ends), broadcast timeline, release |
//! | `tables/million-processes.md` | the headline run's processes: baseline, holding, released memory (smallest, median, largest) |
//! | `findings/million-targets.md` | the targets against the headline run (the largest verified one) |
//! | `findings/million-limits.md` | the headline run's headroom: descriptors and memory left |
//! | `tables/million-anchors.md` | the published single-box figures ([`ANCHORS`]) beside the headline run |
//! | `findings/million-broadcasts.md` | the headline's broadcast against the fastest run of the same size |
//! | `plots/million-broadcast.svg` | when each connection had the broadcast (CDF), one line per run, the runtime's colour |

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::million::MillionResult;
use crate::report::charts::{Axis, Line, SIZE, line_chart};
use crate::report::colour;
use crate::report::format::{fmt_bytes, fmt_int};

/// Options of `rtlab report-million`.
#[derive(Debug, Clone, clap::Args)]
pub struct MillionReportArgs {
    /// The directory of million results (`*.json`).
    pub dir: PathBuf,
    /// Also write the book's generated files here (e.g. book/src/generated).
    #[arg(long)]
    pub book: Option<PathBuf>,
}

/// Reads every result in `dir`, ordered by size then start time.
pub fn load(dir: &Path) -> std::io::Result<Vec<MillionResult>> {
    let mut runs = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read(&path)?;
            let run: MillionResult = serde_json::from_slice(&text)
                .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))?;
            runs.push(run);
        }
    }
    runs.sort_by(|a, b| (a.connections, &a.started).cmp(&(b.connections, &b.started)));
    Ok(runs)
}

fn secs(ms: f64) -> String {
    format!("{:.2} s", ms / 1e3)
}

/// The runs table.
pub fn runs_table(runs: &[MillionResult]) -> String {
    let mut t = String::from(
        "| connections | lab | transport | server processes | broadcast via | cores | load avg. | opened in | server user memory / conn (baselines incl.) | growth / conn | kernel / pair (both ends) | server's kernel end (est.) | client user / conn | broadcast first | p50 | p99 | last | reached | released | verdict |\n\
         |---:|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for r in runs {
        let verdict = match &r.failure {
            None => "verified".to_owned(),
            Some(why) => format!("failed: {}", why.replace('|', "/")),
        };
        t.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {:.1} | {:.1} s | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} of {} | {:.1} s | {} |\n",
            fmt_int(r.connections as f64),
            r.runtime,
            r.kind.name(),
            r.processes,
            via(r),
            cores(r),
            r.env.load_before,
            r.open_secs,
            fmt_bytes(r.server_bytes_per_conn),
            fmt_bytes(r.server_growth_per_conn),
            fmt_bytes(r.kernel_bytes_per_pair),
            fmt_bytes(r.kernel_bytes_server_est),
            fmt_bytes(r.client_bytes_per_conn),
            secs(r.timeline.first_ms),
            secs(r.timeline.p50_ms),
            secs(r.timeline.p99_ms),
            secs(r.timeline.last_ms),
            fmt_int(r.delivered as f64),
            fmt_int(r.opened as f64),
            r.release_secs,
            verdict,
        ));
    }
    t
}

/// How the broadcast reached the processes: one publish carried by the
/// shared broker, or one publish per process.
fn via(r: &MillionResult) -> String {
    match &r.broker {
        Some(broker) => format!("{broker}, {} publish", r.publishes),
        None => format!("{} publishes", r.publishes),
    }
}

/// Where the processes ran: `pinned` (every server process on CPU 0,
/// every crowd worker on CPU 1: `--placement pinned`, the default) or
/// `shared` (nothing pinned: the scheduler spreads both sides over both
/// cores, `--placement shared`).
fn cores(r: &MillionResult) -> &'static str {
    if r.env.placement.server.is_some() { "pinned" } else { "shared" }
}

/// The headline run: the largest verified one (else the largest); among
/// those, one on the shared broker, then the latest — and where that run
/// was repeated with the same settings ([`repeats`]), the median of the
/// repeats by broadcast time (of an even number, the slower middle one), so
/// that one lucky run is not the headline.
pub fn headline(runs: &[MillionResult]) -> Option<&MillionResult> {
    let key = |r: &&MillionResult| (r.connections, r.broker.is_some(), r.started.clone());
    let latest = runs.iter().filter(|r| r.verified).max_by_key(key).or_else(|| runs.iter().max_by_key(key))?;
    let mut same = repeats(runs, latest);
    if same.is_empty() {
        return Some(latest);
    }
    same.sort_by(|a, b| a.timeline.last_ms.total_cmp(&b.timeline.last_ms));
    Some(same[same.len() / 2])
}

/// The verified runs with `r`'s settings: size, lab, transport, broker,
/// cores and commit (`r` itself among them, if verified), oldest first.
pub fn repeats<'a>(runs: &'a [MillionResult], r: &MillionResult) -> Vec<&'a MillionResult> {
    runs.iter()
        .filter(|o| {
            o.verified
                && o.connections == r.connections
                && o.runtime == r.runtime
                && o.kind == r.kind
                && o.broker == r.broker
                && cores(o) == cores(r)
                && o.git.commit == r.git.commit
        })
        .collect()
}

/// The processes of the headline run: smallest, median and largest memory.
pub fn processes_table(r: &MillionResult) -> String {
    let mut t = format!(
        "The run of {} connections on {} `{}` processes, memory (`RssAnon`) per process:\n\n\
         | | connections | after start | holding | after release |\n|---|---:|---:|---:|---:|\n",
        fmt_int(r.connections as f64),
        r.processes,
        r.runtime
    );
    let mut by_holding = r.server_memory.clone();
    by_holding.sort_by_key(|m| m.holding);
    let n = by_holding.len();
    if n == 0 {
        return t;
    }
    for (name, m) in [("smallest", by_holding[0]), ("median", by_holding[n / 2]), ("largest", by_holding[n - 1])] {
        t.push_str(&format!(
            "| {name} | {} | {} | {} | {} |\n",
            fmt_int(m.connections as f64),
            fmt_bytes(m.baseline as f64),
            fmt_bytes(m.holding as f64),
            fmt_bytes(m.released as f64)
        ));
    }
    let sum = |f: fn(&crate::million::ProcessMemory) -> u64| r.server_memory.iter().map(f).sum::<u64>() as f64;
    t.push_str(&format!(
        "| **all {}** | {} | {} | {} | {} |\n",
        n,
        fmt_int(sum(|m| m.connections)),
        fmt_bytes(sum(|m| m.baseline)),
        fmt_bytes(sum(|m| m.holding)),
        fmt_bytes(sum(|m| m.released))
    ));
    t
}

/// The targets against the headline run (`same`: its repeats).
pub fn targets(r: &MillionResult, same: &[&MillionResult]) -> String {
    let mark = |ok: bool| if ok { "met" } else { "**not met**" };
    let all = r.verified && r.delivered == r.connections && r.missing == 0;
    let last_s = r.timeline.last_ms / 1e3;
    let mut t = format!(
        "The headline run: {} connections, `{}` lab, {} server processes, {} crowd workers ({}; {} commit `{}`{}).\n\n\
         | target | measured | |\n|---|---|---|\n",
        fmt_int(r.connections as f64),
        r.runtime,
        r.processes,
        r.workers,
        r.kind.name(),
        r.started,
        r.git.commit.as_deref().unwrap_or("unknown").chars().take(10).collect::<String>(),
        if r.git.dirty { ", with uncommitted changes" } else { "" },
    );
    t.push_str(&format!(
        "| one million held, 0 failures | {} opened, {} failed | {} |\n",
        fmt_int(r.opened as f64),
        fmt_int(r.failed as f64),
        mark(r.connections >= 1_000_000 && r.failed == 0 && r.opened == r.connections)
    ));
    t.push_str(&format!(
        "| one broadcast reaches all, verified | {} of {} reached, {} missing | {} |\n",
        fmt_int(r.delivered as f64),
        fmt_int(r.connections as f64),
        fmt_int(r.missing as f64),
        mark(all)
    ));
    t.push_str(&format!("| broadcast complete ≤ 12 s | last connection at {last_s:.2} s | {} |\n", mark(all && last_s <= 12.0)));
    t.push_str(&format!(
        "| server user memory ≤ 300 B per connection, baselines included | {} | {} |\n",
        fmt_bytes(r.server_bytes_per_conn),
        mark(r.server_bytes_per_conn <= 300.0)
    ));
    t.push_str(&format!(
        "| opening ≤ 90 s | {:.1} s | {} |\n",
        r.open_secs,
        mark(r.connections >= 1_000_000 && r.open_secs <= 90.0)
    ));
    t.push_str(&repeats_line(r, same));
    t.push_str(&format!(
        "\nThe broadcast took {} publish request(s): {}.\n",
        r.publishes,
        if r.publishes > 1 {
            "one per server process, written all at once (each process is its own hub: the shared broker was not used)"
        } else {
            "one, carried to every process by the shared broker"
        }
    ));
    t.push_str(&format!(
        "\nCores: {}. Conditions: {}.\n",
        match cores(r) {
            "pinned" => "pinned, every server process on CPU 0 and every crowd worker on CPU 1",
            _ => "shared, nothing pinned: servers and crowd workers on both cores as the scheduler placed them",
        },
        r.note,
    ));
    t
}

/// The spread of the headline's repeats, if it has any.
fn repeats_line(r: &MillionResult, same: &[&MillionResult]) -> String {
    if same.len() < 2 {
        return String::new();
    }
    let list = |f: &dyn Fn(&MillionResult) -> f64, unit: &str, digits: usize| {
        same.iter().map(|o| format!("{:.*}{unit}", digits, f(o))).collect::<Vec<_>>().join(", ")
    };
    format!(
        "\nThe headline is the median by broadcast time of {} runs with the same settings (commit, lab, broker, cores), oldest first — broadcast complete: {}; opening: {}; server user memory per connection: {}. The table judges the median run ({:.2} s).\n",
        same.len(),
        list(&|o| o.timeline.last_ms / 1e3, " s", 2),
        list(&|o| o.open_secs, " s", 1),
        list(&|o| o.server_bytes_per_conn, " B", 0),
        r.timeline.last_ms / 1e3
    )
}

/// The headline run's headroom.
pub fn limits(r: &MillionResult) -> String {
    let h = &r.headroom;
    let gib = |b: u64| format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64);
    format!(
        "| limit | value | used while holding |\n|---|---:|---:|\n\
         | open files, machine (`fs.file-max`) | {} | {} |\n\
         | open files, one process (`RLIMIT_NOFILE`, hard) | {} | {} (the fullest server process) |\n\
         | memory (`MemTotal`) | {} | {} (`MemAvailable` fell from {} to {}) |\n",
        fmt_int(h.file_max as f64),
        fmt_int(h.files_open as f64),
        fmt_int(h.nofile_limit as f64),
        fmt_int(h.most_per_process as f64),
        gib(h.mem_total),
        gib(h.mem_available_before.saturating_sub(h.mem_available_holding)),
        gib(h.mem_available_before),
        gib(h.mem_available_holding),
    )
}

// ANCHOR: anchors
/// The published single-box figures rtlab compares itself with (quoted
/// from the issue that asked for this run; their machines are bigger):
/// who, connections, machine, memory, broadcast.
pub const ANCHORS: [[&str; 5]; 6] = [
    ["Phoenix (Elixir), WebSockets", "2,000,000", "40 cores, 128 GB", "—", "1.3 million reached in about 1–2 s, after tuning"],
    ["Pushpin, SSE", "1,000,000", "8 vCPUs, 32 GB", "—", "—"],
    ["a Go epoll server, WebSockets", "1,000,000", "—", "under 1 GB of user memory", "—"],
    ["Centrifugo", "1,000,000", "20 pods, 40 CPUs", "27 GB", "—"],
    ["a minimal C probe, idle loopback pairs", "1,000,000", "2 vCPUs, 24 GiB (this kind of machine)", "kernel about 8.4 KB per pair", "all reached in 10.8–11.9 s"],
    ["\"what a connection costs\" (the literature rtlab checks)", "default limits run out at 50–100K", "—", "10–50 KB per connection", "—"],
];
// ANCHOR_END: anchors

/// The anchors, and the headline run in the same columns.
pub fn anchors(r: &MillionResult) -> String {
    let mut t = String::from("| who | connections | machine | memory | one broadcast |\n|---|---:|---|---|---|\n");
    for row in ANCHORS {
        t.push_str(&format!("| {} |\n", row.join(" | ")));
    }
    let cores = r.machine.cores;
    let gib = r.machine.memory_bytes as f64 / (1u64 << 30) as f64;
    t.push_str(&format!(
        "| **rtlab, `{}` lab, {} processes ({})** | {} held, {} reached | {cores} vCPUs, {gib:.0} GiB, shared | server user {} per connection (all processes, baselines included), kernel {} per pair | last at {:.2} s, p50 {:.2} s |\n",
        r.runtime,
        r.processes,
        r.kind.name(),
        fmt_int(r.opened as f64),
        fmt_int(r.delivered as f64),
        fmt_bytes(r.server_bytes_per_conn),
        fmt_bytes(r.kernel_bytes_per_pair),
        r.timeline.last_ms / 1e3,
        r.timeline.p50_ms / 1e3,
    ));
    t
}

/// The broadcast CDF, one line per verified run.
pub fn plot(runs: &[MillionResult], path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let names: Vec<String> = runs.iter().map(|r| r.runtime.clone()).collect();
    let lines: Vec<Line> = runs
        .iter()
        .filter(|r| r.verified && r.cdf_ms.len() == 101)
        .map(|r| Line {
            name: format!("{} {} × {}", r.runtime, fmt_int(r.connections as f64), r.kind.name()),
            colour: colour(&r.runtime, &names),
            width: if r.connections >= 1_000_000 { 3 } else { 1 },
            dashed: r.connections < 1_000_000,
            points: r.cdf_ms.iter().enumerate().map(|(p, &ms)| (ms / 1e3, p as f64)).collect(),
        })
        .collect();
    if lines.is_empty() {
        return Ok(());
    }
    line_chart(
        &root,
        "One broadcast: share of connections that have it",
        "seconds after the publish",
        "% of connections",
        &lines,
        (Axis::Linear, Axis::Linear),
        |v| format!("{v:.1}"),
        |v| format!("{v:.0}"),
    )?;
    root.present()?;
    Ok(())
}

/// The broadcast across the runs at the headline's size: the headline's
/// against the fastest, with how each travelled and how loaded the machine
/// was — a difference between single runs, named as such.
pub fn broadcasts(runs: &[MillionResult], head: &MillionResult) -> String {
    let same: Vec<&MillionResult> = runs.iter().filter(|r| r.verified && r.connections == head.connections).collect();
    let Some(fastest) = same.iter().min_by(|a, b| a.timeline.last_ms.total_cmp(&b.timeline.last_ms)) else {
        return String::new();
    };
    let describe = |r: &MillionResult| {
        format!(
            "{:.2} s ({}; {} cores; opened in {:.1} s; {:.1} s of CPU steal)",
            r.timeline.last_ms / 1e3,
            via(r),
            cores(r),
            r.open_secs,
            r.env.steal_secs
        )
    };
    let placement = placements(&same, head);
    if std::ptr::eq(*fastest, head) {
        return format!(
            "The headline run's broadcast, {}, is the fastest of the {} verified runs at {} connections.\n{placement}",
            describe(head),
            same.len(),
            fmt_int(head.connections as f64)
        );
    }
    format!(
        "At {} connections the headline run's broadcast completed in {}; the fastest of the {} verified runs at that size, in {}. Two single runs: their difference mixes how the message travelled and where the processes ran with how much of the two cores each run got.\n",
        fmt_int(head.connections as f64),
        describe(head),
        same.len(),
        describe(fastest)
    ) + &placement
}

/// Pinned against shared cores among `same` (runs of one size): the latest
/// run of each placement with the headline's broker, if both exist.
fn placements(same: &[&MillionResult], head: &MillionResult) -> String {
    let latest = |kind: &str| {
        same.iter()
            .filter(|r| cores(r) == kind && r.broker.is_some() == head.broker.is_some())
            .max_by_key(|r| r.started.clone())
    };
    let (Some(pinned), Some(shared)) = (latest("pinned"), latest("shared")) else { return String::new() };
    format!(
        "\nThe same run with the server processes pinned to one core and the crowd workers to the other, against nothing pinned (the latest of each, {} connections, {}): \
         broadcast {:.2} s against {:.2} s, opening {:.1} s against {:.1} s. Pinned, each side has one core whatever it needs; \
         shared, the core that one side leaves idle works for the other.\n",
        fmt_int(head.connections as f64),
        via(head),
        pinned.timeline.last_ms / 1e3,
        shared.timeline.last_ms / 1e3,
        pinned.open_secs,
        shared.open_secs
    )
}

/// `rtlab report-million`.
pub fn run(args: &MillionReportArgs) -> std::io::Result<()> {
    let runs = load(&args.dir)?;
    let Some(head) = headline(&runs) else {
        return Err(std::io::Error::other(format!("no results in {}", args.dir.display())));
    };
    let files = [
        ("tables/million-runs.md", runs_table(&runs)),
        ("tables/million-processes.md", processes_table(head)),
        ("findings/million-targets.md", targets(head, &repeats(&runs, head))),
        ("findings/million-limits.md", limits(head)),
        ("tables/million-anchors.md", anchors(head)),
        ("findings/million-broadcasts.md", broadcasts(&runs, head)),
    ];
    let mut outs = vec![args.dir.clone()];
    outs.extend(args.book.clone());
    for out in &outs {
        for (name, text) in &files {
            let path = out.join(name);
            std::fs::create_dir_all(path.parent().expect("a parent"))?;
            std::fs::write(&path, text)?;
        }
        let svg = out.join("plots/million-broadcast.svg");
        std::fs::create_dir_all(svg.parent().expect("a parent"))?;
        plot(&runs, &svg).map_err(|e| std::io::Error::other(e.to_string()))?;
        println!("wrote {}", out.display());
    }
    Ok(())
}
