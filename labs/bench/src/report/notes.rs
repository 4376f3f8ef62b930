//! Notes: sentences computed from the data, under the tables ("the least
//! user-space memory per connection is … (lab), the most … (lab)"), so that
//! the book's prose around a table never states a number by hand.

use std::fmt::Write as _;

use super::format::{fmt_bytes, fmt_int, fmt_us};
use crate::axes::{Label, ScenarioKind, Transport};
use crate::results::{Cell, Document};

/// The cells of `scenario` with `metric`, at the largest numeric label.
fn largest(doc: &Document, scenario: ScenarioKind, transport: Transport) -> Vec<&Cell> {
    let cells: Vec<&Cell> = doc.cells_of(scenario).filter(|c| c.transport == transport && c.verified).collect();
    let top = cells.iter().filter_map(|c| c.label.size()).max();
    cells.into_iter().filter(|c| c.label.size() == top).collect()
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

pub(super) fn idle_notes(doc: &Document) -> String {
    let mut notes = String::new();
    for &t in Transport::ALL {
        let cells = largest(doc, ScenarioKind::Idle, t);
        if let Some(((lo, lv), (hi, hv))) = extremes(&cells, "user_bytes_per_conn") {
            let _ = writeln!(
                notes,
                "* {t}, {} connections: the least user-space memory per connection is {} B ({}), the most {} B ({}){}.",
                fmt_int(lo.label.size().unwrap_or(0) as f64),
                fmt_int(lv),
                lo.runtime,
                fmt_int(hv),
                hi.runtime,
                if lv > 0.0 { format!(", {:.1} times as much", hv / lv) } else { String::new() }
            );
        }
    }
    let max: Vec<&Cell> = doc.cells_of(ScenarioKind::Idle).filter(|c| c.label == Label::Max && c.verified).collect();
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
            .cells_of(ScenarioKind::Idle)
            .filter(|c| c.label == Label::Max && c.runtime == r && c.transport != Transport::LongPoll)
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
        .cells_of(ScenarioKind::Idle)
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

pub(super) fn fanout_notes(doc: &Document) -> String {
    let mut notes = String::new();
    for &t in Transport::ALL {
        let cells = largest(doc, ScenarioKind::Fanout, t);
        if let Some(((lo, lv), (hi, hv))) = extremes(&cells, "last_p99_us") {
            let _ = writeln!(
                notes,
                "* {t}, {} subscribers: the last subscriber's p99 ranges from {} ({}) to {} ({}).",
                fmt_int(lo.label.size().unwrap_or(0) as f64),
                fmt_us(lv),
                lo.runtime,
                fmt_us(hv),
                hi.runtime
            );
        }
        let cells = largest(doc, ScenarioKind::Saturation, t);
        if let Some((_, (hi, hv))) = extremes(&cells, "delivered_per_sec") {
            let _ = writeln!(
                notes,
                "* {t}, {} subscribers, publishing back to back: the most messages delivered per second, {}, by {}.",
                fmt_int(hi.label.size().unwrap_or(0) as f64),
                fmt_int(hv),
                hi.runtime
            );
        }
    }
    notes
}

pub(super) fn backpressure_notes(doc: &Document) -> String {
    let mut notes = String::new();
    for policy in Label::stalled() {
        let cells: Vec<&Cell> = doc.cells_of(ScenarioKind::Backpressure).filter(|c| c.label == policy && c.verified).collect();
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

pub(super) fn polling_notes(doc: &Document) -> String {
    let mut notes = String::new();
    let cells: Vec<&Cell> = doc.cells_of(ScenarioKind::Polling).filter(|c| c.verified).collect();
    let mean_over = |t: Transport, m: &str| {
        let v: Vec<f64> = cells.iter().filter(|c| c.transport == t).filter_map(|c| c.mean(m)).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    for &t in Transport::ALL {
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


#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tables::tests::fixture;

    #[test]
    fn notes_name_the_extremes() {
        let doc = fixture();
        assert_eq!(
            idle_notes(&doc),
            "* sse, 1,000 connections: the least user-space memory per connection is 1,827 B (tokio), the most 22,024 B (axum), 12.1 times as much.\n\
             * ws, 1,000 connections: the least user-space memory per connection is 1,827 B (tokio), the most 1,827 B (tokio), 1.0 times as much.\n\
             * As many as one process holds, with an open-files limit of 20,000: from 19,985 (tokio over sse) to 19,985 (axum over sse).\n\
             * What the first connection beyond \"max\" got (a held long poll has no answer to show): tokio (sse) no answer to the sse handshake within 3s; axum (sse) no answer to the sse handshake within 3s.\n\
             * Every server's connection count went back to zero after the clients left.\n"
        );
        assert_eq!(
            fanout_notes(&doc),
            "* ws, 1,000 subscribers: the last subscriber's p99 ranges from 15.79 ms (tokio) to 15.79 ms (tokio).\n\
             * ws, 100 subscribers, publishing back to back: the most messages delivered per second, 391,057, by axum.\n"
        );
        // The failed "own" cell is left out: only verified cells are summed.
        assert_eq!(
            backpressure_notes(&doc),
            "* disconnect: the server's peak user-space growth is 3.8 MiB (tokio over sse); summed over the verified cells (each the mean of its runs), 20 stalled subscribers were closed and 0 messages announced missed.\n"
        );
        assert_eq!(
            polling_notes(&doc),
            "* sse, averaged over the labs: 79 bytes per message, 0.026 server CPU seconds per second, median staleness 6.75 ms.\n\
             * short-poll, averaged over the labs: 179 bytes per message, 0.026 server CPU seconds per second, median staleness 500 ms.\n"
        );
    }
}
