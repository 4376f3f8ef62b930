//! The decision guide of the book's conclusion, generated: `findings/guide.md`
//! (for each question a reader brings — memory, connections, fan-out,
//! throughput, slow readers, polling or push — what this run measured) and
//! `findings/scorecard.md` (each lab's place on each measure).
//!
//! A place counts only the labs measured better beyond the ranges of their
//! runs ([`super::findings::diff`]), so labs whose runs overlap share one.

use super::findings::{Diff, Stop, and_list, ceilings, cell, diff, largest_compared, relative, sizes, span};
use super::format::{fmt_bytes, fmt_int, fmt_us};
use super::tables::table_text;
use crate::axes::{Label, Policy, ScenarioKind, Transport};
use crate::results::{Document, Stat};

/// `findings/guide.md`: one row per question.
pub(super) fn guide(doc: &Document) -> String {
    let rows: Vec<Vec<String>> = [
        ("Memory per idle connection", "Memory per connection", memory(doc)),
        ("Connections in one process", "Memory per connection", connections(doc)),
        ("Delivery to many subscribers at a steady pace", "Fan-out latency", delivery(doc, ScenarioKind::Fanout, "last_p99_us", false, fmt_us)),
        ("Messages delivered per second, publishing back to back", "Fan-out latency", delivery(doc, ScenarioKind::Saturation, "delivered_per_sec", true, fmt_int)),
        ("A reader that stops reading", "Backpressure", stalled(doc)),
        ("SSE or WebSocket, for one-way push", "Memory per connection, Fan-out latency", sse_or_ws(doc)),
        ("Polling or push, for few updates", "What polling costs", polling(doc)),
    ]
    .into_iter()
    .map(|(q, chapter, a)| vec![q.to_owned(), a.unwrap_or_else(|| "not measured in this run".to_owned()).replace('|', "\\|"), chapter.to_owned()])
    .collect();
    table_text(&["if what matters most is", "this run measured", "chapter"], &rows)
}

/// A lab's values of `metric` over transports at one label: "232 to 376 B".
fn per_lab_range(doc: &Document, scenario: ScenarioKind, label: Label, metric: &str, runtime: &str) -> Option<(f64, f64)> {
    let v: Vec<f64> = scenario.transports().iter().filter_map(|&t| cell(doc, scenario, runtime, t, label)?.mean(metric)).collect();
    (!v.is_empty()).then(|| (v.iter().copied().fold(f64::INFINITY, f64::min), v.iter().copied().fold(0.0, f64::max)))
}

fn memory(doc: &Document) -> Option<String> {
    let n = sizes(doc, ScenarioKind::Idle, Transport::Sse).last().copied()?;
    let mut labs: Vec<(String, (f64, f64))> =
        doc.runtimes().into_iter().filter_map(|r| per_lab_range(doc, ScenarioKind::Idle, Label::Size(n), "user_bytes_per_conn", &r).map(|x| (r, x))).collect();
    if labs.is_empty() {
        return None;
    }
    labs.sort_by(|a, b| a.1.0.total_cmp(&b.1.0));
    let b = |v: f64| format!("{} B", fmt_int(v));
    Some(format!(
        "User space per idle connection at {} connections, each lab over its transports, least first: {}.",
        fmt_int(n as f64),
        labs.iter().map(|(r, (lo, hi))| format!("{r} {}", span(*lo, *hi, b))).collect::<Vec<_>>().join(", ")
    ))
}

fn connections(doc: &Document) -> Option<String> {
    let c = ceilings(doc);
    if c.is_empty() {
        return None;
    }
    let parts: Vec<String> = c
        .iter()
        .map(|x| {
            let why = match x.stop {
                Stop::OpenFiles { .. } => "the open-files limit".to_owned(),
                Stop::MapCount { .. } => "vm.max_map_count".to_owned(),
                Stop::Other => "another limit".to_owned(),
            };
            format!("{} {} ({why})", x.runtime, fmt_int(x.held))
        })
        .collect();
    Some(format!("As many as one process held, with an open-files limit of {}: {}.", fmt_int(doc.machine.nofile_limit as f64), parts.join(", ")))
}

/// For each transport at the largest size: the best and the worst lab.
fn delivery(doc: &Document, scenario: ScenarioKind, metric: &str, descending: bool, fmt: fn(f64) -> String) -> Option<String> {
    let mut parts = Vec::new();
    let mut at: Option<u64> = None;
    for &t in scenario.transports() {
        let Some(n) = largest_compared(doc, scenario, t, metric) else { continue };
        let items = per_lab(doc, scenario, t, n, metric);
        if items.len() < 2 {
            continue;
        }
        if at.is_some_and(|a| a != n) {
            // Transports compared at different sizes: name each.
            at = Some(0);
        }
        at.get_or_insert(n);
        let mut sorted = items.clone();
        sorted.sort_by(|a, b| a.1.mean.total_cmp(&b.1.mean));
        if descending {
            sorted.reverse();
        }
        let (best, worst) = (&sorted[0], &sorted[sorted.len() - 1]);
        let ties: Vec<String> =
            sorted[1..].iter().filter(|x| diff(x.1, best.1) == Diff::Same).map(|x| format!("{} ({})", x.0, fmt(x.1.mean))).collect();
        let worst_tied = diff(worst.1, best.1) == Diff::Same;
        parts.push(format!(
            "{t}: {} ({}) first{}{}",
            best.0,
            fmt(best.1.mean),
            if ties.is_empty() { String::new() } else { format!(", no difference measured from {}", and_list(&ties)) },
            if worst_tied { String::new() } else { format!(", {} ({}) last", worst.0, fmt(worst.1.mean)) }
        ));
    }
    let n = at?;
    Some(format!(
        "{}, {}: {}.",
        if n == 0 { "At the largest size each transport has two labs".to_owned() } else { format!("At {} subscribers", fmt_int(n as f64)) },
        if descending { "the most delivered per second" } else { "the lowest last-subscriber p99" },
        parts.join("; ")
    ))
}

fn stalled(doc: &Document) -> Option<String> {
    let growth = |labels: &[Label]| {
        let v: Vec<f64> = doc
            .cells_of(ScenarioKind::Backpressure)
            .filter(|c| c.verified && labels.contains(&c.label))
            .filter_map(|c| c.mean("peak_user_growth"))
            .collect();
        (!v.is_empty()).then(|| span(v.iter().copied().fold(f64::INFINITY, f64::min), v.iter().copied().fold(0.0, f64::max), fmt_bytes))
    };
    let bounded = growth(&[Label::Policy(Policy::Disconnect), Label::Policy(Policy::DropOldest)])?;
    let reference = growth(&[Label::Baseline]);
    let unbounded = growth(&[Label::Policy(Policy::Unbounded)]);
    // The fast subscribers' p99 under a policy against the same lab's reference.
    let (mut same, mut more, mut less) = (0, 0, 0);
    for c in doc.cells_of(ScenarioKind::Backpressure).filter(|c| c.verified && matches!(c.label, Label::Policy(_))) {
        let Some(b) = cell(doc, ScenarioKind::Backpressure, &c.runtime, c.transport, Label::Baseline) else { continue };
        let (Some(p), Some(r)) = (c.metrics.get("fast_p99_us"), b.metrics.get("fast_p99_us")) else { continue };
        match diff(p, r) {
            Diff::Same => same += 1,
            Diff::More => more += 1,
            Diff::Less => less += 1,
        }
    }
    Some(format!(
        "The server's peak user-space growth: with a budget (disconnect, drop-oldest) {bounded}{}{}. The fast subscribers' p99 against the same lab with no stalled subscriber, in {} cells (one per lab, transport and policy): no difference measured in {same}, higher in {more}, lower in {less}.",
        reference.map_or(String::new(), |r| format!("; with no stalled subscriber {r}")),
        unbounded.map_or(String::new(), |u| format!("; unbounded {u}")),
        same + more + less
    ))
}

fn sse_or_ws(doc: &Document) -> Option<String> {
    let mut parts = Vec::new();
    for (scenario, metric, what) in [(ScenarioKind::Idle, "user_bytes_per_conn", "memory per idle connection"), (ScenarioKind::Fanout, "last_p99_us", "last subscriber's p99")] {
        let a = sizes(doc, scenario, Transport::Sse);
        let Some(n) = sizes(doc, scenario, Transport::Ws).into_iter().filter(|n| a.contains(n)).max() else { continue };
        let (mut same, mut other) = (Vec::new(), Vec::new());
        for r in doc.runtimes() {
            let (Some(s), Some(w)) = (cell(doc, scenario, &r, Transport::Sse, Label::Size(n)), cell(doc, scenario, &r, Transport::Ws, Label::Size(n))) else { continue };
            let (Some(s), Some(w)) = (s.metrics.get(metric), w.metrics.get(metric)) else { continue };
            if diff(w, s) == Diff::Same {
                same.push(r);
            } else {
                other.push(format!("{r} {}", relative(w.mean, s.mean)));
            }
        }
        let mut t = Vec::new();
        if !same.is_empty() {
            t.push(format!("no difference measured in {}", and_list(&same)));
        }
        if !other.is_empty() {
            t.push(other.join(", "));
        }
        if !t.is_empty() {
            parts.push(format!("{what} ({}), WebSocket against SSE: {}", fmt_int(n as f64), t.join("; ")));
        }
    }
    (!parts.is_empty()).then(|| format!("{}.", parts.join(". ")))
}

fn polling(doc: &Document) -> Option<String> {
    let n = sizes(doc, ScenarioKind::Polling, Transport::ShortPoll).last().copied()?;
    let mut parts = Vec::new();
    for (metric, what, fmt) in [
        ("server_cpu_per_sec", "server CPU seconds per second", (|v: f64| format!("{v:.3}")) as fn(f64) -> String),
        ("bytes_per_message", "bytes per update", (|v: f64| format!("{} B", fmt_int(v))) as fn(f64) -> String),
        ("stale_p50_us", "median staleness", fmt_us as fn(f64) -> String),
    ] {
        let mut items = Vec::new();
        for &t in ScenarioKind::Polling.transports() {
            let v: Vec<f64> = doc.cells_of(ScenarioKind::Polling).filter(|c| c.transport == t && c.verified && c.label == Label::Size(n)).filter_map(|c| c.mean(metric)).collect();
            if !v.is_empty() {
                items.push(format!("{t} {}", span(v.iter().copied().fold(f64::INFINITY, f64::min), v.iter().copied().fold(0.0, f64::max), fmt)));
            }
        }
        if !items.is_empty() {
            parts.push(format!("{what} (the labs' range): {}", items.join(", ")));
        }
    }
    (!parts.is_empty()).then(|| format!("{} clients, one workload: {}.", fmt_int(n as f64), parts.join("; ")))
}

/// A measure of the scorecard: its heading, scenario, metric, whether
/// more is better, and how its values are written.
type Measure = (&'static str, ScenarioKind, &'static str, bool, fn(f64) -> String);

/// `findings/scorecard.md`: each lab's place on each measure, over the
/// first transport (SSE) at the largest size. A place is one more than the
/// labs measured better beyond the ranges of their runs.
pub(super) fn scorecard(doc: &Document) -> String {
    let measures: [Measure; 4] = [
        ("memory per idle connection", ScenarioKind::Idle, "user_bytes_per_conn", false, |v| format!("{} B", fmt_int(v))),
        ("last subscriber's p99", ScenarioKind::Fanout, "last_p99_us", false, fmt_us),
        ("delivered per second", ScenarioKind::Saturation, "delivered_per_sec", true, fmt_int),
        ("server CPU, polling", ScenarioKind::Polling, "server_cpu_per_sec", false, |v| format!("{v:.3} s/s")),
    ];
    let t = Transport::Sse;
    let mut head = vec!["lab".to_owned()];
    let mut columns: Vec<Vec<(String, String)>> = Vec::new();
    for (what, scenario, metric, higher_is_better, fmt) in measures {
        let Some(&n) = sizes(doc, scenario, t).last() else { continue };
        let items = per_lab(doc, scenario, t, n, metric);
        if items.len() < 2 {
            continue;
        }
        head.push(format!("{what} ({t}, {})", fmt_int(n as f64)));
        let col = items
            .iter()
            .map(|(r, s)| {
                let better = items.iter().filter(|(_, o)| diff(o, s) == if higher_is_better { Diff::More } else { Diff::Less }).count();
                (r.clone(), format!("{} of {} ({})", better + 1, items.len(), fmt(s.mean)))
            })
            .collect();
        columns.push(col);
    }
    if columns.is_empty() {
        return "Not enough labs measured in this run to place them.\n".to_owned();
    }
    let rows: Vec<Vec<String>> = doc
        .runtimes()
        .into_iter()
        .map(|r| {
            let mut row = vec![r.clone()];
            row.extend(columns.iter().map(|col| col.iter().find(|(n, _)| *n == r).map_or("–".to_owned(), |(_, v)| v.clone())));
            row
        })
        .collect();
    let head: Vec<&str> = head.iter().map(String::as_str).collect();
    "Each lab's place among the labs measured (1 is best), counting only the labs better beyond the ranges of their runs, so that labs whose runs overlap share a place; the mean in brackets.\n\n"
        .to_owned()
        + &table_text(&head, &rows)
}

/// Each lab's runs of `metric` in the cell (`scenario`, `t`, size `n`), for
/// the labs that have the cell.
fn per_lab<'a>(doc: &'a Document, scenario: ScenarioKind, t: Transport, n: u64, metric: &str) -> Vec<(String, &'a Stat)> {
    doc.runtimes()
        .into_iter()
        .filter_map(|r| {
            let s = cell(doc, scenario, &r, t, Label::Size(n))?.metrics.get(metric)?;
            Some((r, s))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tables::tests::fixture;

    #[test]
    fn places_are_shared_when_runs_overlap() {
        let doc = fixture();
        // The fixture's SSE idle cells: tokio's user space is below axum's
        // beyond the runs; polling has one lab only, so no column.
        assert_eq!(
            scorecard(&doc),
            "Each lab's place among the labs measured (1 is best), counting only the labs better beyond the ranges of their runs, so that labs whose runs overlap share a place; the mean in brackets.\n\
             \n\
             | lab | memory per idle connection (sse, 1,000) |\n\
             |---|---|\n\
             | tokio | 1 of 2 (1,827 B) |\n\
             | axum | 2 of 2 (22,024 B) |\n"
        );
        let mut doc = doc;
        // An overlap: axum's runs made to touch tokio's.
        for c in doc.cells.iter_mut().filter(|c| c.scenario == ScenarioKind::Idle && c.runtime == "axum" && c.label == Label::Size(1000)) {
            c.metrics.insert("user_bytes_per_conn".into(), Stat::of(vec![1826.816, 1900.0]));
        }
        assert!(scorecard(&doc).contains("| tokio | 1 of 2 (1,827 B) |\n| axum | 1 of 2 (1,863 B) |\n"));
    }

    #[test]
    fn the_guide_has_a_row_per_question() {
        let g = guide(&fixture());
        assert_eq!(g.lines().count(), 2 + 7);
        assert!(g.contains(
            "| Memory per idle connection | User space per idle connection at 1,000 connections, each lab over its transports, least first: tokio 1,827 B, axum 22,024 B. | Memory per connection |"
        ), "{g}");
        assert!(g.contains("| Delivery to many subscribers at a steady pace | At 100 subscribers, the lowest last-subscriber p99: ws: axum (1.50 ms) first, no difference measured from tokio (1.71 ms). | Fan-out latency |"), "{g}");
    }
}

