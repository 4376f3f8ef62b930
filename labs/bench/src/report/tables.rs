//! The markdown tables of a results document: one per scenario (split
//! per transport where the reader's question changes), plus the run, its
//! conditions and its failures. Values are the mean of the repeated runs
//! with their spread; a cell with a failed run says FAILED, not a number.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::format::{fmt_bytes, fmt_int, fmt_sig, fmt_us};
use crate::axes::{Label, ScenarioKind};
use crate::results::{Cell, Document};

/// Runs further apart than this (max − min over the median) are marked †.
pub const WIDE_SPREAD_PCT: f64 = 20.0;

/// The median of a cell's metric over its runs, formatted, ± half the range
/// of the runs (marked † when the runs are more than
/// [`WIDE_SPREAD_PCT`] apart).
fn cell_value(cell: &Cell, metric: &str, fmt: fn(f64) -> String) -> String {
    if !cell.verified {
        return "FAILED".into();
    }
    match cell.metrics.get(metric) {
        Some(s) if s.values.len() > 1 && (s.min != 0.0 || s.max != 0.0) => {
            let half = s.half_range_pct();
            format!("{} ±{:.0}%{}", fmt(s.median()), half, if half * 2.0 > WIDE_SPREAD_PCT { "†" } else { "" })
        }
        Some(s) => fmt(s.median()),
        None => "–".into(),
    }
}

/// The floor's cell for `cell` (same scenario, size and transport; for a
/// long poll, which the floor answers in no fan-out, its SSE cell).
fn floor_cell<'a>(doc: &'a Document, cell: &Cell) -> Option<&'a Cell> {
    let find = |t| {
        doc.cells_of(cell.scenario)
            .find(|c| c.runtime == crate::floor::NAME && c.label == cell.label && c.transport == t && c.verified)
    };
    find(cell.transport).or_else(|| find(crate::axes::Transport::Sse).filter(|_| cell.scenario == ScenarioKind::Fanout))
}

/// `value(cell) / value(floor's cell)`, as "1.16×"; "–" where the floor has
/// no cell or a zero.
fn floor_ratio(doc: &Document, cell: &Cell, value: impl Fn(&Cell) -> Option<f64>) -> String {
    match (value(cell), floor_cell(doc, cell).and_then(&value)) {
        _ if !cell.verified => "–".into(),
        (Some(v), Some(f)) if f > 0.0 => format!("{:.2}×", v / f),
        _ => "–".into(),
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

/// The cells of `scenario` in table order: by transport, then label
/// (sizes ascending, then the backpressure variants, then `max`: see
/// [`Label`]'s order), then lab in the document's order.
fn sorted(doc: &Document, scenario: ScenarioKind) -> Vec<&Cell> {
    let runtimes = doc.runtimes();
    let mut cells: Vec<&Cell> = doc.cells_of(scenario).collect();
    cells.sort_by_key(|c| (c.transport, c.label, runtimes.iter().position(|r| *r == c.runtime).unwrap_or(99)));
    cells
}

/// The sentence under every table of medians.
fn spread_note(doc: &Document) -> String {
    format!(
        "Each value is the median of {} runs, ± half their range (max − min) as a share of the median; † marks runs more than {WIDE_SPREAD_PCT:.0}% apart (the machine was shared: see the conditions table for load and steal). The results document has every run's value. FAILED: a run of that cell failed verification (see the failures table), so the cell has no numbers.\n",
        doc.parameters["repeats"].as_u64().unwrap_or(1)
    )
}

pub(super) fn run_table(doc: &Document) -> String {
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
        .map(|l| {
            let transports: Vec<&str> = l.transports.iter().map(|t| t.name()).collect();
            format!("{}{}: {}", l.runtime, if l.baseline { " (baseline)" } else { "" }, transports.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ");
    let rows = vec![
        vec!["scale".into(), doc.scale.to_string()],
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

/// A column of a scenario's table: its heading, and what a cell shows in it.
struct Column<'a> {
    head: &'static str,
    show: Box<dyn Fn(&Cell) -> String + 'a>,
}

impl<'a> Column<'a> {
    fn new(head: &'static str, show: impl Fn(&Cell) -> String + 'a) -> Column<'a> {
        Column { head, show: Box::new(show) }
    }

    /// The cell's transport (the column a table is split by).
    fn transport() -> Column<'a> {
        Column::new("transport", |c| c.transport.to_string())
    }

    /// The cell's lab.
    fn lab() -> Column<'a> {
        Column::new("lab", |c| c.runtime.clone())
    }

    /// The cell's size or variant, as the document stores it.
    fn label(head: &'static str) -> Column<'a> {
        Column::new(head, |c| c.label.to_string())
    }

    /// The median of `metric` over the cell's runs, formatted, with their spread.
    fn mean(head: &'static str, metric: &'static str, fmt: fn(f64) -> String) -> Column<'a> {
        Column::new(head, move |c| cell_value(c, metric, fmt))
    }
}

/// How a scenario's rows are laid out.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Layout {
    /// One table.
    One,
    /// One table per transport, without the transport column.
    PerTransport,
}

/// The table of `scenario`'s cells, in table order, under `intro`; or, if
/// the document has none, a sentence that says so (`what`: "fan-out").
fn scenario_table(doc: &Document, scenario: ScenarioKind, what: &str, intro: String, layout: Layout, columns: &[Column<'_>]) -> String {
    let cells = sorted(doc, scenario);
    if cells.is_empty() {
        return format!("No {what} runs in this results document.\n");
    }
    let head: Vec<&str> = columns.iter().map(|c| c.head).collect();
    let rows: Vec<Vec<String>> = cells.iter().map(|cell| columns.iter().map(|c| (c.show)(cell)).collect()).collect();
    intro
        + &match layout {
            Layout::One => table_text(&head, &rows),
            Layout::PerTransport => by_transport(&head, &rows),
        }
}

pub(super) fn idle_table(doc: &Document) -> String {
    scenario_table(doc, ScenarioKind::Idle, "idle", spread_note(doc) + "\n", Layout::PerTransport, &[
        Column::transport(),
        Column::label("asked"),
        Column::lab(),
        Column::mean("held", "held", fmt_int),
        Column::mean("user B/conn", "user_bytes_per_conn", fmt_int),
        Column::mean("kernel B/conn", "kernel_bytes_per_conn", fmt_int),
        Column::new("× floor (user + kernel)", |c| {
            floor_ratio(doc, c, |c| Some(c.median("user_bytes_per_conn")? + c.median("kernel_bytes_per_conn")?))
        }),
        Column::mean("open (s)", "open_secs", |v| format!("{v:.2}")),
        Column::mean("user B/conn kept after close", "user_retained_bytes_per_conn", fmt_int),
        Column::mean("threads", "threads", fmt_int),
    ])
}

/// A scenario's option as its cells ran with it (the first cell that has
/// it), written as the document stores it.
fn cell_option(doc: &Document, scenario: ScenarioKind, key: &str) -> String {
    doc.cells_of(scenario).find_map(|c| c.params.get(key).filter(|v| !v.is_null())).map_or("?".to_owned(), ToString::to_string)
}

pub(super) fn fanout_table(doc: &Document) -> String {
    let p = &doc.parameters;
    // With fewer than 100 messages a cell, nearest-rank p99 is the slowest
    // message: the column says so.
    let p99_is_max = doc.cells_of(ScenarioKind::Fanout).any(|c| c.params["messages"].as_u64().is_some_and(|m| m < 100));
    // Large cells may send fewer messages (`fanout_large_messages`).
    let large = match (p.get("fanout_large").and_then(|v| v.as_u64()), p.get("fanout_large_messages")) {
        (Some(n), Some(m)) if n < u64::from(u32::MAX) && doc.cells_of(ScenarioKind::Fanout).any(|c| c.label.size().is_some_and(|s| s > n)) => {
            format!(" (cells of more than {} subscribers: {m}, their p99 the second slowest, and no long polls)", fmt_int(n as f64))
        }
        _ => String::new(),
    };
    let intro = format!(
        "{} messages{large} of {} bytes, one every {} ms (longer for large cells: at most {} deliveries per second), to every subscriber, published open-loop: each message carries the time it was due, and a message that waited for a free publishing connection counts the wait. × floor: the last subscriber's p50 over the floor's (the raw-socket server writing the same bytes to each subscriber, same size and placement; for long polls its SSE cell). Client CPU: the client workers' CPU seconds per second (1.00 is a core); saturated: their pinned core was over 90% busy, so the cell measured the clients too. {}\n\n",
        p["fanout_messages"],
        cell_option(doc, ScenarioKind::Fanout, "size"),
        p["fanout_interval_ms"],
        p.get("fanout_max_rate").map_or("?".to_owned(), ToString::to_string),
        spread_note(doc)
    );
    scenario_table(doc, ScenarioKind::Fanout, "fan-out", intro, Layout::PerTransport, &[
        Column::transport(),
        Column::label("subscribers"),
        Column::lab(),
        Column::mean("all pairs p50", "all_p50_us", fmt_us),
        Column::mean("all pairs p99", "all_p99_us", fmt_us),
        Column::mean("all pairs max", "all_max_us", fmt_us),
        Column::mean("last subscriber p50", "last_p50_us", fmt_us),
        Column::new("× floor", |c| floor_ratio(doc, c, |c| c.median("last_p50_us"))),
        Column::mean(if p99_is_max { "last subscriber p99 (= max)" } else { "last subscriber p99" }, "last_p99_us", fmt_us),
        Column::mean("last subscriber max", "last_max_us", fmt_us),
        Column::mean("publish round trip p99", "publish_rtt_p99_us", fmt_us),
        Column::new("client CPU", |c| {
            let cpu = cell_value(c, "client_cpu_per_sec", |v| format!("{v:.2}"));
            let saturated = c.runs.iter().any(|r| r["client_saturated"] == true);
            if saturated { format!("{cpu} (saturated)") } else { cpu }
        }),
    ])
}

pub(super) fn saturation_table(doc: &Document) -> String {
    let intro = format!(
        "Messages published back to back (the next publish as soon as the server answered the last). {}\n",
        spread_note(doc)
    );
    scenario_table(doc, ScenarioKind::Saturation, "saturation", intro, Layout::PerTransport, &[
        Column::transport(),
        Column::label("subscribers"),
        Column::lab(),
        Column::new("messages", |c| c.params["messages"].to_string()),
        Column::mean("delivered / s", "delivered_per_sec", fmt_int),
        Column::mean("server CPU s / s", "server_cpu_per_sec", |v| format!("{v:.2}")),
        Column::mean("last subscriber p99", "last_p99_us", fmt_us),
    ])
}

pub(super) fn knee_table(doc: &Document) -> String {
    let p = &doc.parameters;
    let intro = format!(
        "Offered load ramped (open-loop fan-out runs of {} messages, each step {}× the deliveries per second of the one before, from {}) until the last subscriber's p99 passed {} ms or delivery failed. Knee: the highest delivered rate within the bound (0: not even the first step was within it); × floor: over the floor's knee (the raw-socket server, same subscribers and placement); limited by: what the first step past the knee ran out of (server or client CPU over 90% of its cores, else the bound: queueing). {}\n",
        p["knee_messages"], p["knee_factor"], p["knee_start"], p["knee_bound_ms"], spread_note(doc)
    );
    scenario_table(doc, ScenarioKind::Knee, "knee", intro, Layout::PerTransport, &[
        Column::transport(),
        Column::label("subscribers"),
        Column::lab(),
        Column::mean("knee (delivered / s)", "knee_per_sec", fmt_int),
        Column::new("× floor", |c| floor_ratio(doc, c, |c| c.median("knee_per_sec"))),
        Column::mean("server CPU ms / 1,000 deliveries", "server_cpu_ms_per_1000", |v| format!("{v:.1}")),
        Column::mean("last subscriber p99 at the knee", "knee_last_p99_us", fmt_us),
        Column::new("limited by", |c| {
            let mut limits: Vec<String> = c.runs.iter().filter_map(|r| r["limit"].as_str().map(str::to_owned)).collect();
            limits.sort();
            limits.dedup();
            if limits.is_empty() { "–".into() } else { limits.join(", ") }
        }),
    ])
}

pub(super) fn backpressure_table(doc: &Document) -> String {
    // The fast subscribers' p99 of the same lab and transport with no
    // stalled subscriber: what each variant is compared with.
    let reference = |c: &Cell| {
        doc.cells_of(ScenarioKind::Backpressure)
            .find(|b| b.label == Label::Baseline && b.runtime == c.runtime && b.transport == c.transport)
            .and_then(|b| b.mean("fast_p99_us"))
    };
    let ratio = move |c: &Cell| match (c.label, c.mean("fast_p99_us"), reference(c)) {
        (Label::Baseline, _, _) => "1×".into(),
        (_, Some(p), Some(b)) if b > 0.0 && c.verified => format!("{:.1}×", p / b),
        _ => "–".into(),
    };
    let stalled = |c: &Cell| {
        if c.label == Label::Baseline {
            "–".to_owned()
        } else if !c.verified {
            "FAILED".to_owned()
        } else {
            ["stalled_closed", "stalled_received", "stalled_missed"].map(|m| c.mean(m).map_or("–".to_owned(), fmt_int)).join(" / ")
        }
    };
    let policy = |c: &Cell| match c.label {
        Label::Baseline => "no stalled subscriber".into(),
        Label::Own => "its own (no --policy)".into(),
        other => other.to_string(),
    };
    let p = &doc.parameters;
    let intro = format!(
        "{} fast subscribers and {} stalled ones (receive buffer {}, never read); {} messages of {} bytes at {} per second. The stalled column adds up all stalled subscribers: how many the server closed / messages they received once they drained / messages the server told them they missed. {}\n",
        p["bp_fast"],
        p["bp_stalled"],
        doc.cells_of(ScenarioKind::Backpressure).find_map(|c| c.params.get("rcvbuf")?.as_u64()).map_or("?".to_owned(), super::params::fmt_size),
        p["bp_messages"],
        p["bp_size"],
        p["bp_rate"],
        spread_note(doc)
    );
    scenario_table(doc, ScenarioKind::Backpressure, "backpressure", intro, Layout::PerTransport, &[
        Column::transport(),
        Column::lab(),
        Column::new("policy", policy),
        Column::mean("fast p99", "fast_p99_us", fmt_us),
        Column::new("vs no stalled", ratio),
        Column::mean("peak user-space growth", "peak_user_growth", fmt_bytes),
        Column::mean("peak kernel TCP growth", "peak_tcp_growth", fmt_bytes),
        Column::new("stalled: closed / received / told missed", stalled),
        Column::mean("dropped (/stats)", "dropped", fmt_int),
    ])
}

pub(super) fn polling_table(doc: &Document) -> String {
    let p = &doc.parameters;
    let intro = format!(
        "{} clients, {} updates of {} bytes per second for {} s; short polls every {} ms. Bytes: everything the clients wrote and read after their connections were open, HTTP heads and framing included, divided by the messages delivered; opening a connection is counted apart. {}\n",
        p["poll_clients"],
        p["poll_rate"],
        cell_option(doc, ScenarioKind::Polling, "size"),
        p["poll_secs"],
        p["poll_every_ms"],
        spread_note(doc)
    );
    // Four rows per lab at most: one table, transports side by side.
    scenario_table(doc, ScenarioKind::Polling, "polling-cost", intro, Layout::One, &[
        Column::transport(),
        Column::lab(),
        Column::mean("requests / s", "requests_per_sec", fmt_sig),
        Column::mean("server CPU s / s", "server_cpu_per_sec", |v| format!("{v:.3}")),
        Column::mean("bytes / message", "bytes_per_message", fmt_int),
        Column::mean("setup bytes / client", "setup_bytes_per_client", fmt_int),
        Column::mean("staleness p50", "stale_p50_us", fmt_us),
        Column::mean("staleness p99", "stale_p99_us", fmt_us),
        Column::mean("staleness max", "stale_max_us", fmt_us),
    ])
}

pub(super) fn conditions_table(doc: &Document) -> String {
    // By the scenario's name: alphabetical, as the table always was.
    let mut by: BTreeMap<&str, (usize, f64, f64, f64)> = BTreeMap::new();
    for cell in &doc.cells {
        let e = by.entry(cell.scenario.name()).or_default();
        for run in &cell.runs {
            e.0 += 1;
            e.1 += run["env"]["steal_secs"].as_f64().unwrap_or(0.0);
            e.2 = e.2.max(run["env"]["steal_secs"].as_f64().unwrap_or(0.0));
            e.3 = e.3.max(run["env"]["load_before"].as_f64().unwrap_or(0.0).max(run["env"]["load_after"].as_f64().unwrap_or(0.0)));
        }
    }
    let rows: Vec<Vec<String>> = by
        .into_iter()
        .map(|(s, (n, total, max, load))| vec![s.to_owned(), n.to_string(), format!("{total:.2}"), format!("{max:.2}"), format!("{load:.2}")])
        .collect();
    "The machine may be shared: with other processes, and as a virtual machine with other guests. CPU steal is time the hypervisor gave this machine's virtual CPUs to someone else; the load average counts every runnable task on the machine, the run's own included.\n\n".to_owned()
        + &table_text(&["scenario", "runs", "CPU steal, total (s)", "CPU steal, worst run (s)", "highest load average"], &rows)
}

pub(super) fn failures_table(doc: &Document) -> String {
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


#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A cut-down copy of the committed run (`bench-results/2026-11-24-vm`):
    /// tokio and the axum baseline, a few cells of every scenario, each run
    /// cut to the fields the tables, notes and findings read, and the failed
    /// backpressure cell of axum with its failures. Cells are deliberately
    /// not in table order.
    pub(in crate::report) fn fixture() -> Document {
        serde_json::from_str(include_str!("../../tests/fixtures/results-small.json")).expect("the fixture is a results document")
    }

    #[test]
    fn idle_table_is_split_by_transport_and_sorted_by_size_then_lab() {
        assert_eq!(
            idle_table(&fixture()),
            "Each value is the median of 2 runs, ± half their range (max − min) as a share of the median; † marks runs more than 20% apart \
             (the machine was shared: see the conditions table for load and steal). The results document has every run's value. \
             FAILED: a run of that cell failed verification (see the failures table), so the cell has no numbers.\n\
             \n\
             \n\
             **sse**\n\
             \n\
             | asked | lab | held | user B/conn | kernel B/conn | × floor (user + kernel) | open (s) | user B/conn kept after close | threads |\n\
             |---|---|---|---|---|---|---|---|---|\n\
             | 1000 | tokio | 1,000 ±0% | 1,827 ±0% | 7,020 ±1% | – | 0.13 ±1% | 1,827 ±0% | 3 ±0% |\n\
             | 1000 | axum | 1,000 ±0% | 22,024 ±0% | 6,860 ±0% | – | 0.15 ±1% | 22,024 ±0% | 3 ±0% |\n\
             | max | tokio | 19,985 ±0% | 1,835 ±0% | 6,547 ±1% | – | 0.99 ±0% | 1,835 ±0% | 3 ±0% |\n\
             | max | axum | 19,985 ±0% | 21,974 ±0% | 6,828 ±2% | – | 1.09 ±1% | 21,974 ±0% | 3 ±0% |\n\
             \n\
             **ws**\n\
             \n\
             | asked | lab | held | user B/conn | kernel B/conn | × floor (user + kernel) | open (s) | user B/conn kept after close | threads |\n\
             |---|---|---|---|---|---|---|---|---|\n\
             | 1000 | tokio | 1,000 ±0% | 1,827 ±0% | 7,060 ±1% | – | 0.12 ±2% | 1,827 ±0% | 3 ±0% |\n"
        );
    }

    #[test]
    fn fanout_and_saturation_rows() {
        let doc = fixture();
        let fanout = fanout_table(&doc);
        assert!(fanout.starts_with("50 messages of 64 bytes, one every 20 ms (longer for large cells"), "{fanout}");
        let rows: Vec<&str> = fanout.lines().filter(|l| l.starts_with("| 1")).collect();
        assert_eq!(
            rows,
            [
                "| 100 | tokio | 664 µs ±0% | 1.41 ms ±4% | 1.71 ms ±11%† | 984 µs ±0% | – | 1.71 ms ±11%† | 1.71 ms ±11%† | – | – |",
                "| 100 | axum | 608 µs ±0% | 1.26 ms ±1% | 1.50 ms ±1% | 924 µs ±0% | – | 1.50 ms ±1% | 1.50 ms ±1% | – | – |",
                "| 1000 | tokio | 4.77 ms ±0% | 13.04 ms ±5% | 15.79 ms ±11%† | 8.30 ms ±1% | – | 15.79 ms ±11%† | 15.79 ms ±11%† | – | – |",
            ]
        );
        let saturation = saturation_table(&doc);
        assert!(saturation.contains(
            "| subscribers | lab | messages | delivered / s | server CPU s / s | last subscriber p99 |\n\
             |---|---|---|---|---|---|\n\
             | 100 | tokio | 1000 | 307,518 ±8% | 0.98 ±1% | 1.77 ms ±2% |\n\
             | 100 | axum | 1000 | 391,057 ±11%† | 0.99 ±1% | 2.78 ms ±35%† |\n"
        ));
    }

    #[test]
    fn backpressure_rows_compare_with_the_reference_and_show_failures() {
        let table = backpressure_table(&fixture());
        let rows: Vec<&str> = table.lines().filter(|l| l.starts_with("| tokio") || l.starts_with("| axum")).collect();
        assert_eq!(
            rows,
            [
                "| tokio | no stalled subscriber | 935 µs ±5% | 1× | 4.2 MiB ±14%† | 280.0 KiB ±100%† | – | 0 |",
                "| axum | no stalled subscriber | 16.30 ms ±1% | 1× | 68.0 KiB ±0% | 516.0 KiB ±100%† | – | 0 |",
                "| tokio | disconnect | 1.08 ms ±2% | 1.2× | 3.8 MiB ±0% | 3.0 MiB ±2% | 20 / 1,976 / 0 | 5,040 ±0% |",
                "| axum | its own (no --policy) | FAILED | – | FAILED | FAILED | FAILED | FAILED |",
            ]
        );
        assert!(table.starts_with("100 fast subscribers and 20 stalled ones (receive buffer 4 KiB, never read); 5000 messages"));
    }

    #[test]
    fn polling_rows_in_transport_order() {
        let table = polling_table(&fixture());
        assert!(table.ends_with(
            "| transport | lab | requests / s | server CPU s / s | bytes / message | setup bytes / client | staleness p50 | staleness p99 | staleness max |\n\
             |---|---|---|---|---|---|---|---|---|\n\
             | sse | tokio | 0 | 0.026 ±8% | 79 ±0% | 226 ±0% | 6.75 ms ±8% | 15.16 ms ±2% | 16.21 ms ±1% |\n\
             | short-poll | tokio | 1,000 ±0% | 0.026 ±5% | 179 ±0% | 0 ±100%† | 500 ms ±0% | 990 ms ±0% | 1.00 s ±0% |\n"
        ));
    }

    #[test]
    fn run_conditions_and_failures() {
        let doc = fixture();
        let run = run_table(&doc);
        for row in [
            "| scale | full |",
            "| labs and transports | tokio: sse, ws, long-poll, short-poll; axum (baseline): sse, ws |",
            "| commit | 174814d5b878 with uncommitted changes |",
            "| repeats per cell | 2 |",
        ] {
            assert!(run.contains(row), "{row} not in\n{run}");
        }
        let conditions = conditions_table(&doc);
        let rows: Vec<&str> = conditions.lines().skip_while(|l| !l.starts_with("|---")).skip(1).collect();
        assert_eq!(
            rows,
            [
                "| backpressure | 8 | 0.00 | 0.00 | 13.13 |",
                "| fanout | 6 | 0.00 | 0.00 | 44.82 |",
                "| idle | 10 | 0.00 | 0.00 | 536.27 |",
                "| polling | 4 | 0.00 | 0.00 | 7.72 |",
                "| saturation | 4 | 0.00 | 0.00 | 9.99 |",
            ]
        );
        assert_eq!(
            failures_table(&doc),
            "| cell (scenario/lab/transport/size) | run | why |\n\
             |---|---|---|\n\
             | backpressure/axum/sse/own | 1 | stalled subscribers: 0 of 20 accounted for, 20 unannounced gaps |\n\
             | backpressure/axum/sse/own | 2 | stalled subscribers: 0 of 20 accounted for, 20 unannounced gaps |\n"
        );
    }

    #[test]
    fn a_scenario_without_cells_says_so() {
        let mut doc = fixture();
        doc.cells.retain(|c| c.scenario != ScenarioKind::Polling);
        assert_eq!(polling_table(&doc), "No polling-cost runs in this results document.\n");
        doc.failures.clear();
        assert_eq!(failures_table(&doc), "No run failed verification.\n");
    }

    #[test]
    fn the_fixture_round_trips_unchanged() {
        // The typed document writes back exactly the JSON it read: the
        // enums are stored as the strings they replaced.
        let raw: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/fixtures/results-small.json")).expect("JSON");
        assert_eq!(serde_json::to_value(fixture()).expect("serializes"), raw);
    }
}
