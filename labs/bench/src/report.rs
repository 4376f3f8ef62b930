//! `rtlab report <dir>`: SVG plots and markdown tables from a results
//! document.
//!
//! Writes `<dir>/tables/*.md`, `<dir>/plots/*.svg` and `<dir>/report.md`
//! (every table and plot on one page). With `--book DIR` (the committed run
//! uses `book/src/generated`) the same tables and plots are also written
//! there, because mdbook only publishes files under `book/src`: the book's
//! chapters include `generated/tables/*.md` and show `generated/plots/*.svg`,
//! so every number in the book comes from this generator, never typed.
//!
//! File names do not depend on which labs ran (a plot per transport or
//! policy, one line or bar per lab), so the chapters can name them; a plot
//! with no data says so. Each runtime has one fixed colour in every plot
//! ([`RUNTIME_COLOURS`]). Values are the mean of the repeated runs, shown
//! with their spread ((max − min) / mean); bars carry a min–max whisker.

use std::collections::BTreeMap;
use std::error::Error;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::backpressure::MemorySample;
use crate::results::{Cell, Document, Stat};

/// `rtlab report` options.
#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// A results directory (bench-results/<date>-<host>) or its results.json.
    pub dir: PathBuf,
    /// Also write the tables and plots the book includes into this
    /// directory (the committed run: book/src/generated).
    #[arg(long)]
    pub book: Option<PathBuf>,
}

// ANCHOR: colours
/// One fixed colour per runtime, the same in every plot (the Tableau 10
/// palette). Labs not in the table take the spare colours in order.
pub const RUNTIME_COLOURS: [(&str, RGBColor); 5] = [
    ("tokio", RGBColor(31, 119, 180)),
    ("mio", RGBColor(255, 127, 14)),
    ("may", RGBColor(44, 160, 44)),
    ("threads", RGBColor(214, 39, 40)),
    ("axum", RGBColor(148, 103, 189)),
];
// ANCHOR_END: colours

const SPARE_COLOURS: [RGBColor; 5] = [
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// The colour of `runtime` among `all` (the document's runtimes).
pub fn colour(runtime: &str, all: &[String]) -> RGBColor {
    if let Some((_, c)) = RUNTIME_COLOURS.iter().find(|(name, _)| *name == runtime) {
        return *c;
    }
    let unknown: Vec<&String> = all.iter().filter(|r| !RUNTIME_COLOURS.iter().any(|(n, _)| n == r)).collect();
    let i = unknown.iter().position(|r| *r == runtime).unwrap_or(0);
    SPARE_COLOURS[i % SPARE_COLOURS.len()]
}

/// Transports in the order every table and plot uses.
pub const TRANSPORTS: [&str; 4] = ["sse", "ws", "long-poll", "short-poll"];
/// The policies of the backpressure scenario, baseline (no stalled
/// subscriber) first, and last "own": a baseline lab's own behaviour.
pub const POLICIES: [&str; 5] = ["baseline", "disconnect", "drop-oldest", "unbounded", "own"];

/// What [`render`] produced.
#[derive(Debug)]
pub struct Rendered {
    /// The tables, as printed at the end of `rtlab bench`.
    pub summary: String,
    /// Files written, relative to the results directory.
    pub files: Vec<PathBuf>,
}

/// `rtlab report <dir> [--book DIR]`.
pub fn run(args: &ReportArgs) -> std::io::Result<()> {
    let doc = Document::read(&args.dir)?;
    let dir = if args.dir.is_dir() { args.dir.clone() } else { args.dir.parent().map(Path::to_owned).unwrap_or_default() };
    let rendered = render(&doc, &dir, args.book.as_deref())?;
    println!("{}", rendered.summary);
    println!("wrote {} files under {}", rendered.files.len(), dir.display());
    if let Some(book) = &args.book {
        println!("and the book's copies under {}", book.display());
    }
    Ok(())
}

/// Renders every table and plot of `doc` into `dir` (and `book`).
pub fn render(doc: &Document, dir: &Path, book: Option<&Path>) -> std::io::Result<Rendered> {
    let tables = tables(doc);
    let plots_dir = dir.join("plots");
    let tables_dir = dir.join("tables");
    std::fs::create_dir_all(&plots_dir)?;
    std::fs::create_dir_all(&tables_dir)?;
    let mut files = Vec::new();
    for (name, text) in &tables {
        std::fs::write(tables_dir.join(format!("{name}.md")), text)?;
        files.push(PathBuf::from("tables").join(format!("{name}.md")));
    }
    let plots = plots(doc, &plots_dir).map_err(|e| std::io::Error::other(format!("plotting: {e}")))?;
    for name in &plots {
        files.push(PathBuf::from("plots").join(name));
    }
    let mut page = String::from("# rtlab benchmark report\n\n");
    for (name, text) in &tables {
        let _ = writeln!(page, "## {name}\n\n{text}");
    }
    page.push_str("## plots\n\n");
    for name in &plots {
        let _ = writeln!(page, "![{name}](plots/{name})\n");
    }
    std::fs::write(dir.join("report.md"), page)?;
    files.push(PathBuf::from("report.md"));
    if let Some(book) = book {
        std::fs::create_dir_all(book.join("tables"))?;
        std::fs::create_dir_all(book.join("plots"))?;
        for (name, text) in &tables {
            std::fs::write(book.join("tables").join(format!("{name}.md")), text)?;
        }
        for name in &plots {
            std::fs::copy(plots_dir.join(name), book.join("plots").join(name))?;
        }
    }
    let summary = tables
        .iter()
        .filter(|(name, _)| !name.ends_with("-notes"))
        .map(|(name, text)| format!("## {name}\n\n{text}"))
        .collect::<Vec<_>>()
        .join("\n");
    Ok(Rendered { summary, files })
}

// ---------------------------------------------------------------------------
// Number formatting
// ---------------------------------------------------------------------------

/// 12345.6 → "12,346".
pub fn fmt_int(v: f64) -> String {
    let n = v.round() as i64;
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// Bytes with a binary unit: "812 B", "34.5 KiB", "12.0 MiB".
pub fn fmt_bytes(v: f64) -> String {
    let a = v.abs();
    if a < 10_240.0 {
        format!("{} B", fmt_int(v))
    } else if a < 1024.0 * 1024.0 {
        format!("{:.1} KiB", v / 1024.0)
    } else if a < 1024.0 * 1024.0 * 1024.0 {
        format!("{:.1} MiB", v / 1024.0 / 1024.0)
    } else {
        format!("{:.2} GiB", v / 1024.0 / 1024.0 / 1024.0)
    }
}

/// Microseconds with a unit: "850 µs", "12.3 ms", "1.20 s".
pub fn fmt_us(v: f64) -> String {
    if v < 1000.0 {
        format!("{v:.0} µs")
    } else if v < 100_000.0 {
        format!("{:.2} ms", v / 1000.0)
    } else if v < 1_000_000.0 {
        format!("{:.0} ms", v / 1000.0)
    } else {
        format!("{:.2} s", v / 1e6)
    }
}

/// A count for a short label: 100, 1k, 10k.
pub fn fmt_count(n: u64) -> String {
    if n >= 1000 && n % 1000 == 0 { format!("{}k", n / 1000) } else { n.to_string() }
}

/// A number with 3 significant digits.
pub fn fmt_sig(v: f64) -> String {
    if v.abs() < 1e-9 {
        return "0".into();
    }
    let digits = (2 - v.abs().log10().floor() as i32).max(0) as usize;
    if v.abs() >= 1000.0 { fmt_int(v) } else { format!("{v:.digits$}") }
}

/// The mean of a cell's metric, formatted, with the spread of the runs.
fn cell_value(cell: &Cell, metric: &str, fmt: fn(f64) -> String) -> String {
    if !cell.verified {
        return "FAILED".into();
    }
    match cell.metrics.get(metric) {
        Some(s) if s.values.len() > 1 && (s.min != 0.0 || s.max != 0.0) => format!("{} ({:.1}%)", fmt(s.mean), s.spread_pct),
        Some(s) => fmt(s.mean),
        None => "–".into(),
    }
}

/// A markdown table.
pub fn table_text(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut t = format!("| {} |\n|{}|\n", head.join(" | "), head.iter().map(|_| "---").collect::<Vec<_>>().join("|"));
    for row in rows {
        let _ = writeln!(t, "| {} |", row.join(" | "));
    }
    t
}

/// One table per transport (the first column), under a bold transport name:
/// a long table split where the reader's question changes.
fn by_transport(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    let mut start = 0;
    while start < rows.len() {
        let transport = &rows[start][0];
        let end = start + rows[start..].iter().take_while(|r| &r[0] == transport).count();
        let body: Vec<Vec<String>> = rows[start..end].iter().map(|r| r[1..].to_vec()).collect();
        let _ = write!(out, "\n**{transport}**\n\n{}", table_text(&head[1..], &body));
        start = end;
    }
    out
}

/// The order of labels: numbers ascending, then words in `order`.
fn label_rank(label: &str) -> (u64, usize, String) {
    match label.parse::<u64>() {
        Ok(n) => (0, n as usize, String::new()),
        Err(_) => (1, POLICIES.iter().position(|p| *p == label).unwrap_or(usize::MAX), label.to_owned()),
    }
}

fn sorted<'a>(doc: &'a Document, scenario: &str) -> Vec<&'a Cell> {
    let runtimes = doc.runtimes();
    let mut cells: Vec<&Cell> = doc.cells_of(scenario).collect();
    cells.sort_by_key(|c| {
        (
            TRANSPORTS.iter().position(|t| *t == c.transport).unwrap_or(9),
            label_rank(&c.label),
            runtimes.iter().position(|r| *r == c.runtime).unwrap_or(99),
        )
    });
    cells
}

fn spread_note(doc: &Document) -> String {
    format!(
        "Each value is the mean of {} runs; in brackets the spread of the runs, (max − min) / mean. FAILED: a run of that cell failed verification (see the failures table), so the cell has no numbers.\n",
        doc.parameters["repeats"].as_u64().unwrap_or(1)
    )
}

// ---------------------------------------------------------------------------
// Tables
// ---------------------------------------------------------------------------

fn tables(doc: &Document) -> Vec<(String, String)> {
    let mut out = vec![("run".to_owned(), run_table(doc))];
    out.push(("idle".into(), idle_table(doc)));
    out.push(("idle-notes".into(), idle_notes(doc)));
    out.push(("fanout".into(), fanout_table(doc)));
    out.push(("saturation".into(), saturation_table(doc)));
    out.push(("fanout-notes".into(), fanout_notes(doc)));
    out.push(("backpressure".into(), backpressure_table(doc)));
    out.push(("backpressure-notes".into(), backpressure_notes(doc)));
    out.push(("polling".into(), polling_table(doc)));
    out.push(("polling-notes".into(), polling_notes(doc)));
    out.push(("conditions".into(), conditions_table(doc)));
    out.push(("failures".into(), failures_table(doc)));
    out
}

fn run_table(doc: &Document) -> String {
    let m = &doc.machine;
    let place = match (m.placement.server, m.placement.clients) {
        (Some(s), Some(c)) => format!("server pinned to CPU {s}, clients to CPU {c} (taskset)"),
        _ => "not pinned (fewer than 2 CPUs or no taskset)".into(),
    };
    let key_crates = ["tokio", "mio", "may", "axum", "hyper", "tungstenite", "socket2", "plotters"]
        .iter()
        .filter_map(|c| doc.crates.get(*c).map(|v| format!("{c} {v}")))
        .collect::<Vec<_>>()
        .join(", ");
    let labs = doc
        .labs
        .iter()
        .map(|l| format!("{}{}: {}", l.runtime, if l.baseline { " (baseline)" } else { "" }, l.transports.join(", ")))
        .collect::<Vec<_>>()
        .join("; ");
    let rows = vec![
        vec!["scale".into(), doc.scale.clone()],
        vec!["started (UTC)".into(), doc.started.clone()],
        vec!["wall time".into(), format!("{:.0} min", doc.wall_secs / 60.0)],
        vec!["command".into(), format!("`{}`", doc.command.join(" "))],
        vec!["CPU".into(), format!("{} × {}", m.cores, m.cpu_model)],
        vec!["memory".into(), fmt_bytes(m.memory_bytes as f64)],
        vec!["kernel".into(), m.kernel.clone()],
        vec!["open-files limit".into(), fmt_int(m.nofile_limit as f64)],
        vec![
            "kernel limits".into(),
            format!(
                "vm.max_map_count {}, kernel.pid_max {}, kernel.threads-max {}",
                fmt_int(m.max_map_count as f64),
                fmt_int(m.pid_max as f64),
                fmt_int(m.threads_max as f64)
            ),
        ],
        vec!["placement".into(), place],
        vec!["CPU steal, whole run".into(), format!("{:.1} s", m.steal_secs)],
        vec!["load average (1 min), start → end".into(), format!("{:.2} → {:.2}", m.load_start, m.load_end)],
        vec!["toolchain".into(), format!("{} ({} build)", doc.toolchain.rustc, doc.toolchain.profile)],
        vec![
            "commit".into(),
            format!(
                "{}{}",
                doc.git.commit.as_deref().map_or("unknown", |c| &c[..c.len().min(12)]),
                if doc.git.dirty { " with uncommitted changes" } else { "" }
            ),
        ],
        vec!["labs and transports".into(), labs],
        vec!["crates".into(), key_crates],
        vec!["repeats per cell".into(), doc.parameters["repeats"].to_string()],
    ];
    table_text(&["", ""], &rows)
}

fn idle_table(doc: &Document) -> String {
    let rows: Vec<Vec<String>> = sorted(doc, "idle")
        .into_iter()
        .map(|c| {
            vec![
                c.transport.clone(),
                c.label.clone(),
                c.runtime.clone(),
                cell_value(c, "held", fmt_int),
                cell_value(c, "user_bytes_per_conn", fmt_int),
                cell_value(c, "kernel_bytes_per_conn", fmt_int),
                cell_value(c, "open_secs", |v| format!("{v:.2}")),
                cell_value(c, "user_retained_bytes_per_conn", fmt_int),
                cell_value(c, "threads", fmt_int),
            ]
        })
        .collect();
    if rows.is_empty() {
        return "No idle runs in this results document.\n".into();
    }
    spread_note(doc)
        + "\n"
        + &by_transport(
            &[
                "transport",
                "asked",
                "lab",
                "held",
                "user B/conn",
                "kernel B/conn",
                "open (s)",
                "user B/conn kept after close",
                "threads",
            ],
            &rows,
        )
}

fn fanout_table(doc: &Document) -> String {
    let rows: Vec<Vec<String>> = sorted(doc, "fanout")
        .into_iter()
        .map(|c| {
            vec![
                c.transport.clone(),
                c.label.clone(),
                c.runtime.clone(),
                cell_value(c, "all_p50_us", fmt_us),
                cell_value(c, "all_p99_us", fmt_us),
                cell_value(c, "all_max_us", fmt_us),
                cell_value(c, "last_p50_us", fmt_us),
                cell_value(c, "last_p99_us", fmt_us),
                cell_value(c, "last_max_us", fmt_us),
            ]
        })
        .collect();
    if rows.is_empty() {
        return "No fan-out runs in this results document.\n".into();
    }
    let p = &doc.parameters;
    format!(
        "{} messages of 64 bytes, one every {} ms, to every subscriber. {}\n",
        p["fanout_messages"], p["fanout_interval_ms"], spread_note(doc)
    ) + "\n"
        + &by_transport(
            &[
                "transport",
                "subscribers",
                "lab",
                "all pairs p50",
                "all pairs p99",
                "all pairs max",
                "last subscriber p50",
                "last subscriber p99",
                "last subscriber max",
            ],
            &rows,
        )
}

fn saturation_table(doc: &Document) -> String {
    let rows: Vec<Vec<String>> = sorted(doc, "saturation")
        .into_iter()
        .map(|c| {
            vec![
                c.transport.clone(),
                c.label.clone(),
                c.runtime.clone(),
                c.params["messages"].to_string(),
                cell_value(c, "delivered_per_sec", fmt_int),
                cell_value(c, "server_cpu_per_sec", |v| format!("{v:.2}")),
                cell_value(c, "last_p99_us", fmt_us),
            ]
        })
        .collect();
    if rows.is_empty() {
        return "No saturation runs in this results document.\n".into();
    }
    format!("Messages published back to back (the next publish as soon as the server answered the last). {}\n", spread_note(doc))
        + &by_transport(
            &["transport", "subscribers", "lab", "messages", "delivered / s", "server CPU s / s", "last subscriber p99"],
            &rows,
        )
}

fn backpressure_table(doc: &Document) -> String {
    let cells = sorted(doc, "backpressure");
    let baseline = |c: &Cell| {
        cells
            .iter()
            .find(|b| b.label == "baseline" && b.runtime == c.runtime && b.transport == c.transport)
            .and_then(|b| b.mean("fast_p99_us"))
    };
    let rows: Vec<Vec<String>> = cells
        .iter()
        .map(|c| {
            let ratio = match (c.label.as_str(), c.mean("fast_p99_us"), baseline(c)) {
                ("baseline", _, _) => "1×".into(),
                (_, Some(p), Some(b)) if b > 0.0 && c.verified => format!("{:.1}×", p / b),
                _ => "–".into(),
            };
            let stalled = if c.label == "baseline" {
                "–".to_owned()
            } else if !c.verified {
                "FAILED".to_owned()
            } else {
                ["stalled_closed", "stalled_received", "stalled_missed"]
                    .map(|m| c.mean(m).map_or("–".to_owned(), fmt_int))
                    .join(" / ")
            };
            vec![
                c.transport.clone(),
                c.runtime.clone(),
                match c.label.as_str() {
                    "baseline" => "no stalled subscriber".into(),
                    "own" => "its own (no --policy)".into(),
                    other => other.to_owned(),
                },
                cell_value(c, "fast_p99_us", fmt_us),
                ratio,
                cell_value(c, "peak_user_growth", fmt_bytes),
                cell_value(c, "peak_tcp_growth", fmt_bytes),
                stalled,
                cell_value(c, "dropped", fmt_int),
            ]
        })
        .collect();
    if rows.is_empty() {
        return "No backpressure runs in this results document.\n".into();
    }
    let p = &doc.parameters;
    format!(
        "{} fast subscribers and {} stalled ones (receive buffer 4 KiB, never read); {} messages of {} bytes at {} per second. The stalled column adds up all stalled subscribers: how many the server closed / messages they received once they drained / messages the server told them they missed. {}\n",
        p["bp_fast"], p["bp_stalled"], p["bp_messages"], p["bp_size"], p["bp_rate"], spread_note(doc)
    ) + &by_transport(
        &[
            "transport",
            "lab",
            "policy",
            "fast p99",
            "vs no stalled",
            "peak user-space growth",
            "peak kernel TCP growth",
            "stalled: closed / received / told missed",
            "dropped (/stats)",
        ],
        &rows,
    )
}

fn polling_table(doc: &Document) -> String {
    let rows: Vec<Vec<String>> = sorted(doc, "polling")
        .into_iter()
        .map(|c| {
            vec![
                c.transport.clone(),
                c.runtime.clone(),
                cell_value(c, "requests_per_sec", fmt_sig),
                cell_value(c, "server_cpu_per_sec", |v| format!("{v:.3}")),
                cell_value(c, "bytes_per_message", fmt_int),
                cell_value(c, "setup_bytes_per_client", fmt_int),
                cell_value(c, "stale_p50_us", fmt_us),
                cell_value(c, "stale_p99_us", fmt_us),
                cell_value(c, "stale_max_us", fmt_us),
            ]
        })
        .collect();
    if rows.is_empty() {
        return "No polling-cost runs in this results document.\n".into();
    }
    let p = &doc.parameters;
    format!(
        "{} clients, {} updates of 64 bytes per second for {} s; short polls every {} ms. Bytes: everything the clients wrote and read after their connections were open, HTTP heads and framing included, divided by the messages delivered; opening a connection is counted apart. {}\n",
        p["poll_clients"], p["poll_rate"], p["poll_secs"], p["poll_every_ms"], spread_note(doc)
    ) + &table_text(
        &[
            "transport",
            "lab",
            "requests / s",
            "server CPU s / s",
            "bytes / message",
            "setup bytes / client",
            "staleness p50",
            "staleness p99",
            "staleness max",
        ],
        &rows,
    )
}

fn conditions_table(doc: &Document) -> String {
    let mut by: BTreeMap<String, (usize, f64, f64, f64)> = BTreeMap::new();
    for cell in &doc.cells {
        let e = by.entry(cell.scenario.clone()).or_default();
        for run in &cell.runs {
            e.0 += 1;
            e.1 += run["env"]["steal_secs"].as_f64().unwrap_or(0.0);
            e.2 = e.2.max(run["env"]["steal_secs"].as_f64().unwrap_or(0.0));
            e.3 = e.3.max(run["env"]["load_before"].as_f64().unwrap_or(0.0).max(run["env"]["load_after"].as_f64().unwrap_or(0.0)));
        }
    }
    let rows: Vec<Vec<String>> = by
        .into_iter()
        .map(|(s, (n, total, max, load))| vec![s, n.to_string(), format!("{total:.2}"), format!("{max:.2}"), format!("{load:.2}")])
        .collect();
    "The machine is shared. CPU steal is time the hypervisor gave this machine's virtual CPUs to someone else; the load average counts every runnable task on the machine, the run's own included.\n\n".to_owned()
        + &table_text(&["scenario", "runs", "CPU steal, total (s)", "CPU steal, worst run (s)", "highest load average"], &rows)
}

fn failures_table(doc: &Document) -> String {
    if doc.failures.is_empty() {
        return "No run failed verification.\n".into();
    }
    let rows: Vec<Vec<String>> = doc
        .failures
        .iter()
        .map(|f| vec![f.cell.clone(), (f.run + 1).to_string(), f.message.replace('|', "\\|")])
        .collect();
    table_text(&["cell (scenario/lab/transport/size)", "run", "why"], &rows)
}

// ---------------------------------------------------------------------------
// Notes: sentences computed from the data
// ---------------------------------------------------------------------------

/// The cells of `scenario` with `metric`, at the largest numeric label.
fn largest<'a>(doc: &'a Document, scenario: &str, transport: &str) -> Vec<&'a Cell> {
    let cells: Vec<&Cell> = doc.cells_of(scenario).filter(|c| c.transport == transport && c.verified).collect();
    let top = cells.iter().filter_map(|c| c.label.parse::<u64>().ok()).max();
    cells.into_iter().filter(|c| c.label.parse::<u64>().ok() == top).collect()
}

/// A cell and the mean of one of its metrics.
type Valued<'a> = (&'a Cell, f64);

/// The cells with the lowest and the highest mean of `metric`.
fn extremes<'a>(cells: &[&'a Cell], metric: &str) -> Option<(Valued<'a>, Valued<'a>)> {
    let with: Vec<(&Cell, f64)> = cells.iter().filter_map(|c| c.mean(metric).map(|v| (*c, v))).collect();
    let lo = with.iter().copied().min_by(|a, b| a.1.total_cmp(&b.1))?;
    let hi = with.iter().copied().max_by(|a, b| a.1.total_cmp(&b.1))?;
    Some((lo, hi))
}

fn idle_notes(doc: &Document) -> String {
    let mut notes = String::new();
    for t in TRANSPORTS {
        let cells = largest(doc, "idle", t);
        if let Some(((lo, lv), (hi, hv))) = extremes(&cells, "user_bytes_per_conn") {
            let _ = writeln!(
                notes,
                "* {t}, {} connections: the least user-space memory per connection is {} B ({}), the most {} B ({}){}.",
                fmt_int(lo.label.parse().unwrap_or(0) as f64),
                fmt_int(lv),
                lo.runtime,
                fmt_int(hv),
                hi.runtime,
                if lv > 0.0 { format!(", {:.1} times as much", hv / lv) } else { String::new() }
            );
        }
    }
    let max: Vec<&Cell> = doc.cells_of("idle").filter(|c| c.label == "max" && c.verified).collect();
    if !max.is_empty() {
        let most = max.iter().filter_map(|c| c.mean("held").map(|v| (c, v))).max_by(|a, b| a.1.total_cmp(&b.1));
        let least = max.iter().filter_map(|c| c.mean("held").map(|v| (c, v))).min_by(|a, b| a.1.total_cmp(&b.1));
        if let (Some((mc, mv)), Some((lc, lv))) = (most, least) {
            let _ = writeln!(
                notes,
                "* As many as one process holds, with an open-files limit of {}: from {} ({} over {}) to {} ({} over {}).",
                fmt_int(doc.machine.nofile_limit as f64),
                fmt_int(lv),
                lc.runtime,
                lc.transport,
                fmt_int(mv),
                mc.runtime,
                mc.transport
            );
        }
    }
    // Why each lab stopped at "max": the first connection it did not take.
    let mut stops: Vec<String> = Vec::new();
    for r in doc.runtimes() {
        let errors: Vec<String> = doc
            .cells_of("idle")
            .filter(|c| c.label == "max" && c.runtime == r && c.transport != "long-poll")
            .filter_map(|c| c.runs.first()?["first_error"].as_str().map(|e| format!("({}) {}", c.transport, e.trim())))
            .collect();
        if let Some(first) = errors.first() {
            stops.push(format!("{r} {first}"));
        }
    }
    if !stops.is_empty() {
        let _ = writeln!(
            notes,
            "* What the first connection beyond \"max\" got (a held long poll has no answer to show): {}.",
            stops.join("; ")
        );
    }
    let unreleased: Vec<String> = doc
        .cells_of("idle")
        .filter(|c| c.runs.iter().any(|r| r["sockets_released"] == false))
        .map(Cell::key)
        .collect();
    let _ = writeln!(
        notes,
        "* {}",
        if unreleased.is_empty() {
            "Every server's connection count went back to zero after the clients left.".to_owned()
        } else {
            format!("Connections not released after the clients left: {}.", unreleased.join(", "))
        }
    );
    notes
}

fn fanout_notes(doc: &Document) -> String {
    let mut notes = String::new();
    for t in TRANSPORTS {
        let cells = largest(doc, "fanout", t);
        if let Some(((lo, lv), (hi, hv))) = extremes(&cells, "last_p99_us") {
            let _ = writeln!(
                notes,
                "* {t}, {} subscribers: the last subscriber's p99 ranges from {} ({}) to {} ({}).",
                fmt_int(lo.label.parse().unwrap_or(0) as f64),
                fmt_us(lv),
                lo.runtime,
                fmt_us(hv),
                hi.runtime
            );
        }
        let cells = largest(doc, "saturation", t);
        if let Some((_, (hi, hv))) = extremes(&cells, "delivered_per_sec") {
            let _ = writeln!(
                notes,
                "* {t}, {} subscribers, publishing back to back: the most messages delivered per second, {}, by {}.",
                fmt_int(hi.label.parse().unwrap_or(0) as f64),
                fmt_int(hv),
                hi.runtime
            );
        }
    }
    notes
}

fn backpressure_notes(doc: &Document) -> String {
    let mut notes = String::new();
    for policy in &POLICIES[1..] {
        let cells: Vec<&Cell> = doc.cells_of("backpressure").filter(|c| c.label == *policy && c.verified).collect();
        if let Some(((lo, lv), (hi, hv))) = extremes(&cells, "peak_user_growth") {
            let closed: f64 = cells.iter().filter_map(|c| c.mean("stalled_closed")).sum::<f64>();
            let missed: f64 = cells.iter().filter_map(|c| c.mean("stalled_missed")).sum::<f64>();
            let range = if cells.len() == 1 {
                format!("is {} ({} over {})", fmt_bytes(lv), lo.runtime, lo.transport)
            } else {
                format!(
                    "ranges from {} ({} over {}) to {} ({} over {})",
                    fmt_bytes(lv),
                    lo.runtime,
                    lo.transport,
                    fmt_bytes(hv),
                    hi.runtime,
                    hi.transport
                )
            };
            let _ = writeln!(
                notes,
                "* {policy}: the server's peak user-space growth {range}; summed over the verified cells (each the mean of its runs), {} stalled subscribers were closed and {} messages announced missed.",
                fmt_int(closed),
                fmt_int(missed)
            );
        }
    }
    notes
}

fn polling_notes(doc: &Document) -> String {
    let mut notes = String::new();
    let cells: Vec<&Cell> = doc.cells_of("polling").filter(|c| c.verified).collect();
    let mean_over = |t: &str, m: &str| {
        let v: Vec<f64> = cells.iter().filter(|c| c.transport == t).filter_map(|c| c.mean(m)).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    for t in TRANSPORTS {
        if let (Some(b), Some(cpu), Some(stale)) =
            (mean_over(t, "bytes_per_message"), mean_over(t, "server_cpu_per_sec"), mean_over(t, "stale_p50_us"))
        {
            let _ = writeln!(
                notes,
                "* {t}, averaged over the labs: {} bytes per message, {:.3} server CPU seconds per second, median staleness {}.",
                fmt_int(b),
                cpu,
                fmt_us(stale)
            );
        }
    }
    notes
}

// ---------------------------------------------------------------------------
// Plots
// ---------------------------------------------------------------------------

type PlotResult<T = ()> = Result<T, Box<dyn Error>>;

const SIZE: (u32, u32) = (820, 440);

/// An axis drawn linear or logarithmic (log: values are plotted as log10).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Axis {
    Linear,
    Log,
}

impl Axis {
    fn to(self, v: f64) -> f64 {
        match self {
            Axis::Linear => v,
            Axis::Log => v.max(1e-9).log10(),
        }
    }

    fn from(self, v: f64) -> f64 {
        match self {
            Axis::Linear => v,
            Axis::Log => 10f64.powf(v),
        }
    }

    /// A range covering `lo..=hi` (in data units), padded.
    fn range(self, lo: f64, hi: f64, from_zero: bool) -> (f64, f64) {
        match self {
            Axis::Linear => {
                let lo = if from_zero { 0.0_f64.min(lo) } else { lo };
                let span = (hi - lo).max(hi.abs() * 0.1).max(1e-9);
                (if from_zero { lo } else { lo - span * 0.05 }, hi + span * 0.12)
            }
            Axis::Log => {
                let (a, b) = (self.to(lo), self.to(hi));
                let pad = ((b - a) * 0.1).max(0.15);
                (a - pad, b + pad)
            }
        }
    }
}

/// Round values (1, 2, 5 × 10^k; only 10^k when those are too many) in
/// `lo..=hi`, for a logarithmic axis.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let (lo, hi) = (lo.max(1e-9), hi.max(1e-9));
    let mut ticks = Vec::new();
    for k in (lo.log10().floor() as i32 - 1)..=(hi.log10().ceil() as i32) {
        for m in [1.0, 2.0, 5.0] {
            let v = m * 10f64.powi(k);
            if v >= lo && v <= hi {
                ticks.push(v);
            }
        }
    }
    if ticks.len() > 12 {
        ticks.retain(|v| (v.log10() - v.log10().round()).abs() < 1e-9);
    }
    ticks
}

/// Draws `ticks` (data units) as labelled light lines across a chart whose
/// own labels on that axis are turned off.
fn draw_ticks(
    chart: &mut ChartContext<'_, SVGBackend<'_>, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    ticks: &[f64],
    axis: Axis,
    horizontal: bool,
    fmt: fn(f64) -> String,
) -> PlotResult {
    let (x0, x1) = (chart.x_range().start, chart.x_range().end);
    let (y0, y1) = (chart.y_range().start, chart.y_range().end);
    let grid = RGBColor(200, 200, 200);
    for &t in ticks {
        let v = axis.to(t);
        let (line, anchor, pos) = if horizontal {
            (vec![(x0, v), (x1, v)], (x0, v), Pos::new(HPos::Right, VPos::Center))
        } else {
            (vec![(v, y0), (v, y1)], (v, y0), Pos::new(HPos::Center, VPos::Top))
        };
        chart.draw_series(std::iter::once(PathElement::new(line, grid.stroke_width(1))))?;
        let (px, py) = chart.backend_coord(&anchor);
        let at = if horizontal { (px - 6, py) } else { (px, py + 8) };
        root.draw(&Text::new(fmt(t), at, TextStyle::from(("sans-serif", 13).into_font()).pos(pos)))?;
    }
    Ok(())
}

fn no_data(path: &Path, title: &str) -> PlotResult {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let style = TextStyle::from(("sans-serif", 18).into_font()).pos(Pos::new(HPos::Center, VPos::Center));
    root.draw(&Text::new(format!("{title}: no data in this run"), (SIZE.0 as i32 / 2, SIZE.1 as i32 / 2), style))?;
    root.present()?;
    Ok(())
}

/// One bar per (category, series): the mean, with a min–max whisker.
#[derive(Debug)]
struct Bars {
    title: String,
    y_desc: String,
    categories: Vec<String>,
    /// (lab, colour, one value per category).
    series: Vec<(String, RGBColor, Vec<Option<Stat>>)>,
    y: Axis,
    fmt: fn(f64) -> String,
}

fn bar_chart(path: &Path, b: &Bars) -> PlotResult {
    let values: Vec<&Stat> = b.series.iter().flat_map(|s| s.2.iter().flatten()).collect();
    if values.is_empty() || b.categories.is_empty() {
        return no_data(path, &b.title);
    }
    let hi = values.iter().map(|s| s.max.max(s.mean)).fold(f64::MIN, f64::max);
    let lo = values.iter().map(|s| s.min.min(s.mean)).fold(f64::MAX, f64::min);
    let lo = if b.y == Axis::Log { lo.max(hi * 1e-6).max(1e-9) } else { lo };
    let (y0, y1) = b.y.range(lo, hi, true);
    let n = b.categories.len();
    // Room for the category labels under the bars.
    let size = (SIZE.0.max(100 * n as u32), SIZE.1);
    let root = SVGBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(&b.title, ("sans-serif", 18))
        .margin(14)
        .x_label_area_size(36)
        .y_label_area_size(86)
        .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), y0..y1)?;
    let (axis, fmt) = (b.y, b.fmt);
    let y_fmt = move |v: &f64| if axis == Axis::Log { String::new() } else { fmt(axis.from(*v)) };
    let mut mesh = chart.configure_mesh();
    mesh.disable_x_mesh().x_labels(0).y_label_formatter(&y_fmt).y_desc(b.y_desc.as_str()).label_style(("sans-serif", 13));
    if b.y == Axis::Log {
        mesh.disable_y_mesh().y_labels(0);
    }
    mesh.draw()?;
    if b.y == Axis::Log {
        draw_ticks(&mut chart, &root, &log_ticks(b.y.from(y0), b.y.from(y1)), b.y, true, b.fmt)?;
    }
    let k = b.series.len().max(1);
    let width = 0.8 / k as f64;
    for (i, (name, colour, stats)) in b.series.iter().enumerate() {
        let colour = *colour;
        let rects = stats.iter().enumerate().filter_map(|(c, s)| {
            let s = s.as_ref()?;
            let x0 = c as f64 - 0.4 + i as f64 * width;
            Some(Rectangle::new([(x0 + width * 0.08, y0), (x0 + width * 0.92, b.y.to(s.mean))], colour.filled()))
        });
        chart
            .draw_series(rects)?
            .label(name.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled()));
        let whiskers = stats.iter().enumerate().filter_map(|(c, s)| {
            let s = s.as_ref().filter(|s| s.values.len() > 1)?;
            let x = c as f64 - 0.4 + (i as f64 + 0.5) * width;
            Some(PathElement::new(vec![(x, b.y.to(s.min)), (x, b.y.to(s.max))], BLACK.stroke_width(1)))
        });
        chart.draw_series(whiskers)?;
    }
    let style = TextStyle::from(("sans-serif", 13).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
    for (i, category) in b.categories.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(i as f64, y0));
        root.draw(&Text::new(category.clone(), (px, py + 8), style.clone()))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()?;
    root.present()?;
    Ok(())
}

/// One line of a line chart.
#[derive(Debug)]
struct Line {
    name: String,
    colour: RGBColor,
    width: u32,
    dashed: bool,
    points: Vec<(f64, f64)>,
}

#[allow(clippy::too_many_arguments)]
fn line_chart(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    lines: &[Line],
    (x_axis, y_axis): (Axis, Axis),
    x_fmt: fn(f64) -> String,
    y_fmt: fn(f64) -> String,
) -> PlotResult {
    let points: Vec<(f64, f64)> = lines.iter().flat_map(|l| l.points.iter().copied()).collect();
    let (xl, xh) = points.iter().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (yl, yh) = points.iter().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let (x0, x1) = if x_axis == Axis::Log {
        x_axis.range(xl, xh, false)
    } else {
        (xl.min(0.0), xh + ((xh - xl.min(0.0)) * 0.03).max(0.1))
    };
    let (y0, y1) = y_axis.range(yl.min(if y_axis == Axis::Linear { 0.0 } else { yl }), yh, y_axis == Axis::Linear);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 17))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(86)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    // Logarithmic axes get round ticks drawn here; linear ones plotters' own.
    let xf = move |v: &f64| if x_axis == Axis::Log { String::new() } else { x_fmt(x_axis.from(*v)) };
    let yf = move |v: &f64| if y_axis == Axis::Log { String::new() } else { y_fmt(y_axis.from(*v)) };
    let mut mesh = chart.configure_mesh();
    mesh.x_label_formatter(&xf).y_label_formatter(&yf).x_desc(x_desc).y_desc(y_desc).label_style(("sans-serif", 13));
    if x_axis == Axis::Log {
        mesh.disable_x_mesh().x_labels(0);
    }
    if y_axis == Axis::Log {
        mesh.disable_y_mesh().y_labels(0);
    }
    mesh.draw()?;
    if x_axis == Axis::Log {
        // The sizes measured are the ticks.
        let mut xs: Vec<f64> = points.iter().map(|p| p.0).collect();
        xs.sort_by(f64::total_cmp);
        xs.dedup();
        draw_ticks(&mut chart, area, &xs, x_axis, false, x_fmt)?;
    }
    if y_axis == Axis::Log {
        draw_ticks(&mut chart, area, &log_ticks(y_axis.from(y0), y_axis.from(y1)), y_axis, true, y_fmt)?;
    }
    for line in lines {
        let colour = line.colour;
        let pts: Vec<(f64, f64)> = line.points.iter().map(|&(x, y)| (x_axis.to(x), y_axis.to(y))).collect();
        let style = colour.stroke_width(line.width);
        let anno = if line.dashed {
            chart.draw_series(DashedLineSeries::new(pts.clone(), 6, 4, style))?
        } else {
            chart.draw_series(LineSeries::new(pts.clone(), style))?
        };
        let dashed = line.dashed;
        anno.label(line.name.as_str()).legend(move |(x, y)| {
            let style = colour.stroke_width(if dashed { 1 } else { 2 });
            PathElement::new(vec![(x, y), (x + 18, y)], style)
        });
        if pts.len() <= 12 {
            chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, if line.dashed { colour.stroke_width(1) } else { colour.filled() })))?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 12))
        .draw()?;
    Ok(())
}

fn series_by_runtime(
    doc: &Document,
    cells: &[&Cell],
    categories: &[Category<'_>],
    metric: &str,
) -> Vec<(String, RGBColor, Vec<Option<Stat>>)> {
    let runtimes = doc.runtimes();
    runtimes
        .iter()
        .map(|r| {
            let values = categories
                .iter()
                .map(|(_, pick)| {
                    cells
                        .iter()
                        .find(|c| c.runtime == *r && c.verified && pick(c))
                        .and_then(|c| c.metrics.get(metric).cloned())
                })
                .collect();
            (r.clone(), colour(r, &runtimes), values)
        })
        .collect()
}

/// A group of bars: its label, and which cells belong to it.
type Category<'a> = (String, Box<dyn Fn(&Cell) -> bool + 'a>);

fn plots(doc: &Document, dir: &Path) -> PlotResult<Vec<String>> {
    let mut written = Vec::new();
    let runtimes = doc.runtimes();
    let save = |name: String, written: &mut Vec<String>| written.push(name);

    // Idle: user-space and kernel bytes per connection, per transport.
    for t in &TRANSPORTS[..3] {
        let cells: Vec<&Cell> = doc.cells_of("idle").filter(|c| c.transport == *t).collect();
        let mut labels: Vec<String> = cells.iter().map(|c| c.label.clone()).collect();
        labels.sort_by_key(|l| label_rank(l));
        labels.dedup();
        for (metric, what) in [("user_bytes_per_conn", "user"), ("kernel_bytes_per_conn", "kernel")] {
            let categories: Vec<Category<'_>> = labels
                .iter()
                .map(|l| {
                    let l2 = l.clone();
                    let name = if l == "max" { "as many as it holds".to_owned() } else { format!("{} connections", fmt_int(l.parse().unwrap_or(0) as f64)) };
                    (name, Box::new(move |c: &Cell| c.label == l2) as Box<dyn Fn(&Cell) -> bool>)
                })
                .collect();
            let name = format!("idle-{what}-{t}.svg");
            bar_chart(
                &dir.join(&name),
                &Bars {
                    title: format!(
                        "Idle {t}: {} bytes per connection",
                        if what == "user" { "server user-space" } else { "kernel (slab + TCP, both ends)" }
                    ),
                    y_desc: if what == "user" { "bytes per connection (log scale)" } else { "bytes per connection" }.into(),
                    categories: categories.iter().map(|c| c.0.clone()).collect(),
                    series: series_by_runtime(doc, &cells, &categories, metric),
                    // User-space costs span orders of magnitude between labs.
                    y: if what == "user" { Axis::Log } else { Axis::Linear },
                    fmt: fmt_int,
                },
            )?;
            save(name, &mut written);
        }
    }

    // Fan-out latency against subscribers, per transport.
    for t in &TRANSPORTS[..3] {
        let name = format!("fanout-{t}.svg");
        let path = dir.join(&name);
        let cells: Vec<&Cell> = doc.cells_of("fanout").filter(|c| c.transport == *t && c.verified).collect();
        let mut lines = Vec::new();
        for r in &runtimes {
            for (metric, what, width, dashed) in [("last_p99_us", "p99, last subscriber", 2, false), ("all_p50_us", "p50, all pairs", 1, true)] {
                let mut points: Vec<(f64, f64)> = cells
                    .iter()
                    .filter(|c| c.runtime == *r)
                    .filter_map(|c| Some((c.label.parse::<f64>().ok()?, c.mean(metric)? / 1000.0)))
                    .collect();
                points.sort_by(|a, b| a.0.total_cmp(&b.0));
                if !points.is_empty() {
                    lines.push(Line { name: format!("{r} {what}"), colour: colour(r, &runtimes), width, dashed, points });
                }
            }
        }
        if lines.is_empty() {
            no_data(&path, &format!("Fan-out latency over {t}"))?;
        } else {
            let root = SVGBackend::new(&path, SIZE).into_drawing_area();
            root.fill(&WHITE)?;
            line_chart(
                &root,
                &format!("Fan-out over {t}: publish-to-receive latency"),
                "subscribers",
                "milliseconds",
                &lines,
                (Axis::Log, Axis::Log),
                fmt_int,
                fmt_sig,
            )?;
            root.present()?;
        }
        save(name, &mut written);
    }

    // Saturation throughput.
    {
        let cells: Vec<&Cell> = doc.cells_of("saturation").collect();
        let mut keys: Vec<(usize, u64, String, String)> = cells
            .iter()
            .map(|c| {
                (
                    TRANSPORTS.iter().position(|t| *t == c.transport).unwrap_or(9),
                    c.label.parse().unwrap_or(0),
                    c.transport.clone(),
                    c.label.clone(),
                )
            })
            .collect();
        keys.sort();
        keys.dedup();
        let categories: Vec<Category<'_>> = keys
            .iter()
            .map(|(_, _, t, l)| {
                let (t2, l2) = (t.clone(), l.clone());
                (format!("{t} {}", fmt_count(l.parse().unwrap_or(0))), Box::new(move |c: &Cell| c.transport == t2 && c.label == l2) as Box<dyn Fn(&Cell) -> bool>)
            })
            .collect();
        let name = "saturation.svg".to_owned();
        bar_chart(
            &dir.join(&name),
            &Bars {
                title: "Fan-out at saturation: messages delivered per second".into(),
                y_desc: "messages delivered / s".into(),
                categories: categories.iter().map(|c| c.0.clone()).collect(),
                series: series_by_runtime(doc, &cells, &categories, "delivered_per_sec"),
                y: Axis::Linear,
                fmt: fmt_int,
            },
        )?;
        save(name, &mut written);
    }

    // Backpressure: fast subscribers' p99 per policy, and memory over time.
    for t in &TRANSPORTS[..2] {
        let cells: Vec<&Cell> = doc.cells_of("backpressure").filter(|c| c.transport == *t).collect();
        let categories: Vec<Category<'_>> = POLICIES
            .iter()
            .map(|p| {
                let label = match *p {
                    "baseline" => "no stalled".to_owned(),
                    "own" => "baseline lab's own".to_owned(),
                    other => other.to_owned(),
                };
                (label, Box::new(move |c: &Cell| c.label == *p) as Box<dyn Fn(&Cell) -> bool>)
            })
            .collect();
        let name = format!("backpressure-latency-{t}.svg");
        bar_chart(
            &dir.join(&name),
            &Bars {
                title: format!("Backpressure over {t}: fast subscribers' p99 latency"),
                y_desc: "p99 latency, µs".into(),
                categories: categories.iter().map(|c| c.0.clone()).collect(),
                series: series_by_runtime(doc, &cells, &categories, "fast_p99_us"),
                y: Axis::Log,
                fmt: fmt_sig,
            },
        )?;
        save(name, &mut written);
        for policy in &POLICIES[1..] {
            let name = format!("backpressure-memory-{t}-{policy}.svg");
            let path = dir.join(&name);
            let mut user = Vec::new();
            let mut tcp = Vec::new();
            for c in cells.iter().filter(|c| c.label == *policy && c.verified) {
                let Some(run) = c.runs.iter().find(|r| r["verified"] == true) else { continue };
                let samples: Vec<MemorySample> = serde_json::from_value(run["samples"].clone()).unwrap_or_default();
                let before: MemorySample = match serde_json::from_value(run["before"].clone()) {
                    Ok(b) => b,
                    Err(_) => continue,
                };
                let mib = |v: u64, b: u64| (v as f64 - b as f64) / 1024.0 / 1024.0;
                let colour = colour(&c.runtime, &runtimes);
                user.push(Line {
                    name: c.runtime.clone(),
                    colour,
                    width: 2,
                    dashed: false,
                    points: samples.iter().map(|s| (s.t, mib(s.rss_anon, before.rss_anon))).collect(),
                });
                tcp.push(Line {
                    name: c.runtime.clone(),
                    colour,
                    width: 2,
                    dashed: false,
                    points: samples.iter().map(|s| (s.t, mib(s.tcp_mem, before.tcp_mem))).collect(),
                });
            }
            if user.is_empty() {
                no_data(&path, &format!("Backpressure over {t}, {policy}: memory"))?;
            } else {
                let root = SVGBackend::new(&path, (SIZE.0, SIZE.1 * 2 - 40)).into_drawing_area();
                root.fill(&WHITE)?;
                let panels = root.split_evenly((2, 1));
                line_chart(
                    &panels[0],
                    &format!("{t}, {policy}: server user-space memory growth (the drain starts at the end)"),
                    "seconds since the first publish",
                    "MiB",
                    &user,
                    (Axis::Linear, Axis::Linear),
                    fmt_sig,
                    fmt_sig,
                )?;
                line_chart(
                    &panels[1],
                    &format!("{t}, {policy}: kernel TCP buffer memory growth (system-wide)"),
                    "seconds since the first publish",
                    "MiB",
                    &tcp,
                    (Axis::Linear, Axis::Linear),
                    fmt_sig,
                    fmt_sig,
                )?;
                root.present()?;
            }
            save(name, &mut written);
        }
    }

    // Polling cost: one bar chart per measure, a group per transport.
    let cells: Vec<&Cell> = doc.cells_of("polling").collect();
    let categories: Vec<Category<'_>> = TRANSPORTS
        .iter()
        .map(|t| ((*t).to_owned(), Box::new(move |c: &Cell| c.transport == *t) as Box<dyn Fn(&Cell) -> bool>))
        .collect();
    for (file, metric, title, y_desc, axis, fmt) in [
        ("polling-requests.svg", "requests_per_sec", "Polling cost: HTTP requests per second", "requests / s", Axis::Linear, fmt_sig as fn(f64) -> String),
        ("polling-cpu.svg", "server_cpu_per_sec", "Polling cost: server CPU seconds per second", "CPU s / s", Axis::Linear, fmt_sig),
        ("polling-bytes.svg", "bytes_per_message", "Polling cost: bytes on the wire per delivered message", "bytes / message", Axis::Log, fmt_int),
        ("polling-staleness.svg", "stale_p50_us", "Polling cost: median staleness (publish to seen)", "µs", Axis::Log, fmt_sig),
    ] {
        bar_chart(
            &dir.join(file),
            &Bars {
                title: title.into(),
                y_desc: y_desc.into(),
                categories: categories.iter().map(|c| c.0.clone()).collect(),
                series: series_by_runtime(doc, &cells, &categories, metric),
                y: axis,
                fmt,
            },
        )?;
        save(file.to_owned(), &mut written);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_colours() {
        assert_eq!(fmt_int(1234567.4), "1,234,567");
        assert_eq!(fmt_int(-999.0), "-999");
        assert_eq!(fmt_bytes(512.0), "512 B");
        assert_eq!(fmt_bytes(20480.0), "20.0 KiB");
        assert_eq!(fmt_us(850.0), "850 µs");
        assert_eq!(fmt_us(12_345.0), "12.35 ms");
        assert_eq!(fmt_sig(0.01234), "0.0123");
        assert_eq!((fmt_count(100), fmt_count(10_000)), ("100".to_owned(), "10k".to_owned()));
        let all = vec!["tokio".to_owned(), "zeta".to_owned()];
        assert_eq!(colour("tokio", &all), RUNTIME_COLOURS[0].1);
        assert_eq!(colour("zeta", &all), SPARE_COLOURS[0]);
    }
}
