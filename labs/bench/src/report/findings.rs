//! Findings: the sentences that say what the data shows — rankings, ratios,
//! crossovers, which limit stopped a lab — written beside each table
//! (`findings/<table>.md`), computed from the results document so that no
//! chapter has to type a number or a verdict.
//!
//! One rule runs through all of them ([`diff`]): two cells differ only when
//! the ranges of their repeats do not overlap — every run of one below every
//! run of the other. Ranges that overlap, or merely touch, are reported as
//! "no difference measured", whatever their means say.
//!
//! The facts the claims table and the decision guide also need (what
//! stopped each lab, what a short poll costs) are computed here once:
//! [`ceilings`], [`short_polls`].

use std::fmt::Write as _;

use super::format::{fmt_bytes, fmt_int, fmt_us};
use crate::axes::{Label, ScenarioKind, Transport};
use crate::results::{Cell, Document, Stat};

// ---------------------------------------------------------------------------
// Comparing two cells.

/// How one cell's metric compares with another's, by the range of their
/// repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Diff {
    /// Every run of the first is below every run of the second.
    Less,
    /// Every run of the first is above every run of the second.
    More,
    /// The ranges overlap (or touch): no difference measured.
    Same,
}

// ANCHOR: diff
/// `a` against `b`: `Less` or `More` only when the ranges of their runs
/// (every repeat's value, min to max) do not overlap; ranges that overlap or
/// touch are [`Diff::Same`]: no difference measured.
pub fn diff(a: &Stat, b: &Stat) -> Diff {
    if a.max < b.min {
        Diff::Less
    } else if a.min > b.max {
        Diff::More
    } else {
        Diff::Same
    }
}
// ANCHOR_END: diff

/// A ratio for a sentence: "2.3", "12", "596".
pub fn ratio(r: f64) -> String {
    if r < 10.0 { format!("{r:.1}") } else { fmt_int(r) }
}

/// A fraction as a percentage for a sentence: "0.4%", "8.0%", "26%".
pub fn pct(f: f64) -> String {
    let p = f * 100.0;
    if p < 10.0 { format!("{p:.1}%") } else { format!("{p:.0}%") }
}

/// `a` relative to `b`: "2.3 times as much", "8.0% more", "26% less".
pub fn relative(a: f64, b: f64) -> String {
    if b == 0.0 {
        return if a == 0.0 { "as much".into() } else { "more (against none)".into() };
    }
    let r = a / b;
    if r >= 1.5 {
        format!("{} times as much", ratio(r))
    } else if r >= 1.0 {
        format!("{} more", pct(r - 1.0))
    } else {
        format!("{} less", pct(1.0 - r))
    }
}

/// "a", "a and b", "a, b and c".
pub fn and_list<S: AsRef<str>>(items: &[S]) -> String {
    match items {
        [] => String::new(),
        [one] => one.as_ref().to_owned(),
        [init @ .., last] => format!("{} and {}", init.iter().map(|s| s.as_ref()).collect::<Vec<_>>().join(", "), last.as_ref()),
    }
}

/// A named value: a lab (or lab and transport) and one metric's runs.
type Named<'a> = (String, &'a Stat);

/// `items` in order of their means (largest first when `descending`),
/// written "a (v), b (v), c (v)", and a sentence saying which neighbours
/// differ beyond the ranges of their runs.
pub fn ranking(items: &[Named<'_>], fmt: fn(f64) -> String, descending: bool) -> (String, String) {
    let mut items: Vec<&Named<'_>> = items.iter().collect();
    items.sort_by(|a, b| a.1.mean.total_cmp(&b.1.mean));
    if descending {
        items.reverse();
    }
    let list = items.iter().map(|(name, s)| format!("{name} ({})", fmt(s.mean))).collect::<Vec<_>>().join(", ");
    let same: Vec<String> =
        items.windows(2).filter(|w| diff(w[0].1, w[1].1) == Diff::Same).map(|w| format!("{} and {}", w[0].0, w[1].0)).collect();
    let pairs = items.len().saturating_sub(1);
    let sentence = if pairs == 0 {
        String::new()
    } else if same.is_empty() {
        if pairs == 1 { "They differ beyond the ranges of their runs.".into() } else { "Each differs from the next beyond the ranges of their runs.".into() }
    } else {
        format!(
            "No difference measured between {} (the ranges of their runs overlap){}.",
            same.join(", nor between "),
            if same.len() < pairs { "; each other neighbour differs beyond them" } else { "" }
        )
    };
    (list, sentence)
}

/// The verified cell of one scenario, lab, transport and label.
pub fn cell<'a>(doc: &'a Document, scenario: ScenarioKind, runtime: &str, transport: Transport, label: Label) -> Option<&'a Cell> {
    doc.cells_of(scenario).find(|c| c.runtime == runtime && c.transport == transport && c.label == label && c.verified)
}

/// The numeric sizes a scenario ran at over `transport`, ascending.
pub fn sizes(doc: &Document, scenario: ScenarioKind, transport: Transport) -> Vec<u64> {
    let mut s: Vec<u64> = doc.cells_of(scenario).filter(|c| c.transport == transport).filter_map(|c| c.label.size()).collect();
    s.sort_unstable();
    s.dedup();
    s
}

/// The largest size at which at least two labs have `metric` over
/// `transport`: the size whose comparison says the most.
pub fn largest_compared(doc: &Document, scenario: ScenarioKind, transport: Transport, metric: &str) -> Option<u64> {
    sizes(doc, scenario, transport).into_iter().rev().find(|&n| at(doc, scenario, transport, Label::Size(n), metric).len() >= 2)
}

/// The verified cells of `scenario` over `transport` at `label`, in the
/// document's lab order, with their `metric`.
fn at<'a>(doc: &'a Document, scenario: ScenarioKind, transport: Transport, label: Label, metric: &str) -> Vec<Named<'a>> {
    doc.runtimes()
        .into_iter()
        .filter_map(|r| {
            let c = cell(doc, scenario, &r, transport, label)?;
            Some((r, c.metrics.get(metric)?))
        })
        .collect()
}

/// How `metric` over `other` compares with `base` in every lab that has
/// both (at the label `label_of` gives each transport), grouped by outcome:
/// "8.0% more in tokio and mio; no difference measured in axum".
fn against(doc: &Document, scenario: ScenarioKind, metric: &str, other: Transport, base: Transport, label: Label) -> Option<String> {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    let mut same: Vec<String> = Vec::new();
    for r in doc.runtimes() {
        let (Some(o), Some(b)) = (cell(doc, scenario, &r, other, label), cell(doc, scenario, &r, base, label)) else { continue };
        let (Some(os), Some(bs)) = (o.metrics.get(metric), b.metrics.get(metric)) else { continue };
        if diff(os, bs) == Diff::Same {
            same.push(r);
        } else {
            let rel = relative(os.mean, bs.mean);
            match groups.iter_mut().find(|(k, _)| *k == rel) {
                Some((_, labs)) => labs.push(r),
                None => groups.push((rel, vec![r])),
            }
        }
    }
    let mut parts: Vec<String> = groups.into_iter().map(|(rel, labs)| format!("{rel} in {}", and_list(&labs))).collect();
    if !same.is_empty() {
        parts.push(format!("no difference measured in {}", and_list(&same)));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// The lowest (or, `descending`, the highest) lab at each size of
/// `scenario` over `transport`: "100: mio; 1,000: mio; 10,000: tokio", a
/// leader followed by "(no difference measured from b)" when the runner-up's
/// runs overlap its own. `None` with fewer than two labs at every size.
fn leaders(doc: &Document, scenario: ScenarioKind, transport: Transport, metric: &str, descending: bool) -> Option<(String, bool)> {
    let mut parts = Vec::new();
    let mut names = Vec::new();
    for n in sizes(doc, scenario, transport) {
        let mut items = at(doc, scenario, transport, Label::Size(n), metric);
        if items.len() < 2 {
            continue;
        }
        items.sort_by(|a, b| a.1.mean.total_cmp(&b.1.mean));
        if descending {
            items.reverse();
        }
        let tie = diff(items[0].1, items[1].1) == Diff::Same;
        parts.push(format!(
            "{}: {}{}",
            fmt_int(n as f64),
            items[0].0,
            if tie { format!(" (no difference measured from {})", items[1].0) } else { String::new() }
        ));
        names.push(if tie { None } else { Some(items[0].0.clone()) });
    }
    if parts.is_empty() {
        return None;
    }
    // A crossover: two sizes with different clear leaders.
    let clear: Vec<&String> = names.iter().flatten().collect();
    let crossover = clear.windows(2).any(|w| w[0] != w[1]);
    Some((parts.join("; "), crossover))
}

/// Bytes per connection as the idle table writes them: "1,827 B".
pub fn fmt_b(v: f64) -> String {
    format!("{} B", fmt_int(v))
}

/// A plain number: "2", "2.5", "1,000".
pub fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 { fmt_int(v) } else { super::format::fmt_sig(v) }
}

/// "a to b", or "a" when both are written the same.
pub fn span(lo: f64, hi: f64, fmt: fn(f64) -> String) -> String {
    let (a, b) = (fmt(lo), fmt(hi));
    if a == b { a } else { format!("{a} to {b}") }
}

fn param(doc: &Document, key: &str) -> Option<f64> {
    doc.parameters.get(key)?.as_f64()
}

// ---------------------------------------------------------------------------
// Facts shared with the claims table and the guide.

/// Which limit stopped a lab asked for more connections than it can hold.
#[derive(Debug, Clone, PartialEq)]
pub enum Stop {
    /// It held all but `spare` of the open-files limit (the descriptors a
    /// server keeps for itself: standard streams, listener, epoll, ...).
    OpenFiles { spare: u64 },
    /// Its memory mappings reached `vm.max_map_count`.
    MapCount { maps: u64 },
    /// Neither: the first refused connection's error says what.
    Other,
}

/// A lab at "max": how many it held, what stopped it, its mappings.
#[derive(Debug, Clone)]
pub struct Ceiling {
    pub runtime: String,
    pub held: f64,
    pub stop: Stop,
    /// Memory mappings per held connection, (after − before) / held.
    pub maps_per_conn: Option<f64>,
    /// Connections at which `vm.max_map_count` would stop it at that rate.
    pub map_ceiling: Option<f64>,
    /// What the first connection it did not take got.
    pub first_error: Option<String>,
}

/// Within how many descriptors of the open-files limit a lab counts as
/// stopped by it.
const DESCRIPTOR_SLACK: u64 = 64;

/// Within what share of `vm.max_map_count` a lab counts as stopped by it.
const MAP_SHARE: f64 = 0.95;

/// One [`Ceiling`] per lab with a verified "max" idle cell, in the
/// document's lab order (a lab's transports hold the same; the one that
/// held most speaks for it).
pub fn ceilings(doc: &Document) -> Vec<Ceiling> {
    let m = &doc.machine;
    let mut out = Vec::new();
    for r in doc.runtimes() {
        let cells: Vec<&Cell> = doc.cells_of(ScenarioKind::Idle).filter(|c| c.runtime == r && c.label == Label::Max && c.verified).collect();
        let Some(best) = cells.iter().filter(|c| c.mean("held").is_some()).max_by(|a, b| a.mean("held").unwrap_or(0.0).total_cmp(&b.mean("held").unwrap_or(0.0)))
        else {
            continue;
        };
        let held = best.mean("held").unwrap_or(0.0);
        let run = best.runs.first();
        let maps = |when: &str| run.and_then(|r| r[when]["mappings"].as_f64());
        let (before, after) = (maps("server_before"), maps("server_after"));
        let maps_per_conn = match (before, after) {
            (Some(b), Some(a)) if held > 0.0 => Some((a - b) / held),
            _ => None,
        };
        let map_ceiling = match (maps_per_conn, before) {
            (Some(p), Some(b)) if p >= 0.5 && m.max_map_count > 0 => Some((m.max_map_count as f64 - b) / p),
            _ => None,
        };
        let stop = match after {
            Some(a) if m.max_map_count > 0 && a >= MAP_SHARE * m.max_map_count as f64 => Stop::MapCount { maps: a as u64 },
            _ if m.nofile_limit > 0 && held as u64 + DESCRIPTOR_SLACK >= m.nofile_limit => {
                Stop::OpenFiles { spare: m.nofile_limit.saturating_sub(held as u64) }
            }
            _ => Stop::Other,
        };
        // The error of a transport that answers (a held long poll does not).
        let first_error = cells.iter().find_map(|c| c.runs.first()?["first_error"].as_str().map(|e| e.trim().to_owned()));
        out.push(Ceiling { runtime: r, held, stop, maps_per_conn, map_ceiling, first_error });
    }
    out
}

/// What a short poll cost one lab in the polling scenario.
#[derive(Debug, Clone)]
pub struct ShortPoll {
    pub runtime: String,
    /// Server CPU seconds per request: the server's whole CPU over the
    /// window divided by the requests, so an upper bound.
    pub cpu_per_request: f64,
    /// Bytes of one poll, request and response, on the wire.
    pub bytes_per_request: Option<f64>,
}

/// One [`ShortPoll`] per lab with a verified short-poll polling cell.
pub fn short_polls(doc: &Document) -> Vec<ShortPoll> {
    doc.cells_of(ScenarioKind::Polling)
        .filter(|c| c.transport == Transport::ShortPoll && c.verified)
        .filter_map(|c| {
            let rps = c.mean("requests_per_sec").filter(|v| *v > 0.0)?;
            let cpu = c.mean("server_cpu_per_sec")?;
            let (mut bytes, mut requests) = (0.0, 0.0);
            for r in &c.runs {
                bytes += r["bytes_sent"].as_f64().unwrap_or(0.0) + r["bytes_received"].as_f64().unwrap_or(0.0);
                requests += r["requests"].as_f64().unwrap_or(0.0);
            }
            Some(ShortPoll {
                runtime: c.runtime.clone(),
                cpu_per_request: cpu / rps,
                bytes_per_request: (requests > 0.0 && bytes > 0.0).then(|| bytes / requests),
            })
        })
        .collect()
}

/// "the open-files limit (held all but 11)" and the like.
pub fn stop_text(doc: &Document, c: &Ceiling) -> String {
    match c.stop {
        Stop::OpenFiles { spare } => format!(
            "the open-files limit of {} (all but {} descriptors, which the server keeps for itself)",
            fmt_int(doc.machine.nofile_limit as f64),
            fmt_int(spare as f64)
        ),
        Stop::MapCount { maps } => format!(
            "vm.max_map_count: {} memory mappings of {}{}",
            fmt_int(maps as f64),
            fmt_int(doc.machine.max_map_count as f64),
            c.maps_per_conn.map_or(String::new(), |p| format!(", {p:.1} per connection"))
        ),
        Stop::Other => format!(
            "neither the open-files limit nor vm.max_map_count{}",
            c.first_error.as_deref().map_or(String::new(), |e| format!(" (the next connection got: {e})"))
        ),
    }
}

// ---------------------------------------------------------------------------
// The findings, one file per table.

/// `findings/idle.md`: memory per idle connection.
pub(super) fn idle(doc: &Document) -> String {
    let mut out = String::new();
    let scenario = ScenarioKind::Idle;
    let transports = scenario.transports();
    let mut largest_label = None;
    for &t in transports {
        let Some(n) = largest_compared(doc, scenario, t, "user_bytes_per_conn") else { continue };
        largest_label.get_or_insert(Label::Size(n));
        let items = at(doc, scenario, t, Label::Size(n), "user_bytes_per_conn");
        let (list, sep) = ranking(&items, fmt_b, false);
        let lo = items.iter().map(|i| i.1.mean).fold(f64::INFINITY, f64::min);
        let hi = items.iter().map(|i| i.1.mean).fold(0.0, f64::max);
        let _ = writeln!(
            out,
            "* **{t}**, {} connections: user-space memory per connection, least first: {list}. {sep} The most is {} times the least.",
            fmt_int(n as f64),
            ratio(if lo > 0.0 { hi / lo } else { 0.0 })
        );
    }
    if let Some(label) = largest_label {
        let base = transports[0];
        let mut parts = Vec::new();
        for &t in &transports[1..] {
            if let Some(s) = against(doc, scenario, "user_bytes_per_conn", t, base, label) {
                parts.push(format!("{t}: {s}"));
            }
        }
        if !parts.is_empty() {
            let _ = writeln!(
                out,
                "* The transport, in each lab against its own {base} figure ({label} connections, user space): {}.",
                parts.join("; "),
                label = fmt_int(label.size().unwrap_or(0) as f64)
            );
        }
        if let Some(s) = lab_against_transport(doc, label) {
            let _ = writeln!(out, "* {s}");
        }
        let kept: Vec<String> = transports
            .iter()
            .filter_map(|&t| {
                let shares: Vec<String> = doc
                    .runtimes()
                    .into_iter()
                    .filter_map(|r| {
                        let c = cell(doc, scenario, &r, t, label)?;
                        let (took, kept) = (c.mean("user_bytes_per_conn")?, c.mean("user_retained_bytes_per_conn")?);
                        (took > 0.0).then(|| format!("{r} {:.0}%", kept / took * 100.0))
                    })
                    .collect();
                (!shares.is_empty()).then(|| format!("{t}: {}", shares.join(", ")))
            })
            .collect();
        if !kept.is_empty() {
            let _ = writeln!(
                out,
                "* What the server kept after the clients left, as a share of what their connections took ({} connections): {}.",
                fmt_int(label.size().unwrap_or(0) as f64),
                kept.join("; ")
            );
        }
        let items = at(doc, scenario, base, label, "kernel_bytes_per_conn");
        if items.len() >= 2 {
            let (list, sep) = ranking(&items, fmt_b, false);
            let _ = writeln!(
                out,
                "* The kernel's share per connection ({base}, {} connections, both ends of each loopback connection), least first: {list}. {sep}",
                fmt_int(label.size().unwrap_or(0) as f64)
            );
        }
    }
    let ceilings = ceilings(doc);
    if !ceilings.is_empty() {
        let _ = writeln!(
            out,
            "* As many as one process held, each asked for more than the open-files limit of {}: {}.",
            fmt_int(doc.machine.nofile_limit as f64),
            ceilings.iter().map(|c| format!("{} {}, stopped by {}", c.runtime, fmt_int(c.held), stop_text(doc, c))).collect::<Vec<_>>().join("; ")
        );
        let mapped: Vec<&Ceiling> = ceilings.iter().filter(|c| c.map_ceiling.is_some()).collect();
        if !mapped.is_empty() {
            let _ = writeln!(
                out,
                "* Memory mappings per connection (every thread or coroutine stack is mappings; vm.max_map_count was {}): {}. At that rate vm.max_map_count stops {}.",
                fmt_int(doc.machine.max_map_count as f64),
                and_list(&mapped.iter().map(|c| format!("{} {:.1}", c.runtime, c.maps_per_conn.unwrap_or(0.0))).collect::<Vec<_>>()),
                and_list(
                    &mapped
                        .iter()
                        .map(|c| {
                            let at = fmt_int(c.map_ceiling.unwrap_or(0.0));
                            match c.stop {
                                Stop::MapCount { .. } => format!("{} near {at} connections (it held {})", c.runtime, fmt_int(c.held)),
                                _ => format!("{} near {at} (in this run another limit stopped it first, at {})", c.runtime, fmt_int(c.held)),
                            }
                        })
                        .collect::<Vec<_>>()
                )
            );
        }
    }
    out
}

/// Which matters more for user-space memory per idle connection at
/// `label`: the lab (the largest ratio between two labs over one transport)
/// or the transport (the largest ratio between two transports in one lab).
fn lab_against_transport(doc: &Document, label: Label) -> Option<String> {
    let scenario = ScenarioKind::Idle;
    let metric = "user_bytes_per_conn";
    let mean = |r: &str, t: Transport| cell(doc, scenario, r, t, label).and_then(|c| c.mean(metric)).filter(|v| *v > 0.0);
    let mut labs: Option<(f64, Transport, String, String)> = None;
    for &t in scenario.transports() {
        let v: Vec<(String, f64)> = doc.runtimes().into_iter().filter_map(|r| mean(&r, t).map(|m| (r, m))).collect();
        let (Some(lo), Some(hi)) = (v.iter().min_by(|a, b| a.1.total_cmp(&b.1)), v.iter().max_by(|a, b| a.1.total_cmp(&b.1))) else { continue };
        if labs.as_ref().is_none_or(|l| hi.1 / lo.1 > l.0) {
            labs = Some((hi.1 / lo.1, t, hi.0.clone(), lo.0.clone()));
        }
    }
    let stat = |r: &str, t: Transport| cell(doc, scenario, r, t, label).and_then(|c| c.metrics.get(metric)).filter(|s| s.mean > 0.0);
    let mut transports: Option<(f64, String, Transport, Transport)> = None;
    for r in doc.runtimes() {
        let v: Vec<(Transport, &Stat)> = scenario.transports().iter().filter_map(|&t| stat(&r, t).map(|s| (t, s))).collect();
        let (Some(lo), Some(hi)) = (v.iter().min_by(|a, b| a.1.mean.total_cmp(&b.1.mean)), v.iter().max_by(|a, b| a.1.mean.total_cmp(&b.1.mean))) else {
            continue;
        };
        let r_ = hi.1.mean / lo.1.mean;
        if diff(hi.1, lo.1) == Diff::More && transports.as_ref().is_none_or(|x| r_ > x.0) {
            transports = Some((r_, r.clone(), hi.0, lo.0));
        }
    }
    let (lr, lt, lhi, llo) = labs?;
    let between = format!("Between labs over one transport, the most is up to {} times the least ({lt}: {lhi} against {llo})", ratio(lr));
    Some(match transports {
        Some((tr, tlab, thi, tlo)) => format!(
            "{between}; between the transports of one lab, up to {} times ({tlab}: {thi} against {tlo}). {}",
            ratio(tr),
            if lr > tr { "The lab decides more than the transport." } else { "The transport decides as much as the lab." }
        ),
        None => format!("{between}; between the transports of one lab, no difference measured. The lab decides, not the transport."),
    })
}

/// `findings/fanout.md`: fan-out latency at a steady pace.
pub(super) fn fanout(doc: &Document) -> String {
    let mut out = String::new();
    let scenario = ScenarioKind::Fanout;
    let transports = scenario.transports();
    for &t in transports {
        let s = sizes(doc, scenario, t);
        let (Some(&small), Some(&large)) = (s.first(), s.last()) else { continue };
        if let Some(n) = largest_compared(doc, scenario, t, "last_p99_us") {
            let items = at(doc, scenario, t, Label::Size(n), "last_p99_us");
            let (list, sep) = ranking(&items, fmt_us, false);
            let lo = items.iter().map(|i| i.1.mean).fold(f64::INFINITY, f64::min);
            let hi = items.iter().map(|i| i.1.mean).fold(0.0, f64::max);
            let _ = writeln!(
                out,
                "* **{t}**, {} subscribers: the last subscriber's p99, least first: {list}. {sep} The most is {} times the least.",
                fmt_int(n as f64),
                ratio(if lo > 0.0 { hi / lo } else { 0.0 })
            );
        }
        if large > small {
            let growth: Vec<String> = doc
                .runtimes()
                .into_iter()
                .filter_map(|r| {
                    let a = cell(doc, scenario, &r, t, Label::Size(small))?.mean("last_p99_us")?;
                    let b = cell(doc, scenario, &r, t, Label::Size(large))?.mean("last_p99_us")?;
                    (a > 0.0).then(|| format!("{r} {}", ratio(b / a)))
                })
                .collect();
            if !growth.is_empty() {
                let _ = writeln!(
                    out,
                    "* **{t}**: from {} to {} subscribers ({} times as many), the last subscriber's p99 grew by a factor of: {}.",
                    fmt_int(small as f64),
                    fmt_int(large as f64),
                    ratio(large as f64 / small as f64),
                    growth.join(", ")
                );
            }
        }
        if let Some((list, crossover)) = leaders(doc, scenario, t, "last_p99_us", false) {
            let _ = writeln!(
                out,
                "* **{t}**: the lowest last-subscriber p99 at each size — {list}.{}",
                if crossover { " The lowest lab changes with the number of subscribers." } else { "" }
            );
        }
    }
    if let Some(&large) = sizes(doc, scenario, transports[0]).last() {
        let base = transports[0];
        let parts: Vec<String> = transports[1..]
            .iter()
            .filter_map(|&t| against(doc, scenario, "last_p99_us", t, base, Label::Size(large)).map(|s| format!("{t}: {s}")))
            .collect();
        if !parts.is_empty() {
            let _ = writeln!(
                out,
                "* The transport, in each lab against its own {base} figure ({} subscribers, last subscriber's p99): {}.",
                fmt_int(large as f64),
                parts.join("; ")
            );
        }
    }
    out
}

/// `findings/saturation.md`: fan-out publishing back to back.
pub(super) fn saturation(doc: &Document) -> String {
    let mut out = String::new();
    let scenario = ScenarioKind::Saturation;
    for &t in scenario.transports() {
        if let Some(n) = largest_compared(doc, scenario, t, "delivered_per_sec") {
            let items = at(doc, scenario, t, Label::Size(n), "delivered_per_sec");
            let (list, sep) = ranking(&items, fmt_int, true);
            let _ = writeln!(out, "* **{t}**, {} subscribers: messages delivered per second, most first: {list}. {sep}", fmt_int(n as f64));
        }
        if let Some((list, crossover)) = leaders(doc, scenario, t, "delivered_per_sec", true) {
            let _ = writeln!(
                out,
                "* **{t}**: the most delivered per second at each size — {list}.{}",
                if crossover { " The leading lab changes with the number of subscribers." } else { "" }
            );
        }
    }
    let cpu: Vec<f64> = doc.cells_of(scenario).filter(|c| c.verified).filter_map(|c| c.mean("server_cpu_per_sec")).collect();
    if !cpu.is_empty() {
        let busy = cpu.iter().filter(|v| **v >= 0.9).count();
        let _ = writeln!(
            out,
            "* The server's CPU while publishing back to back: from {:.2} to {:.2} CPU seconds per second; {busy} of {} cells at 0.9 or more{}.",
            cpu.iter().copied().fold(f64::INFINITY, f64::min),
            cpu.iter().copied().fold(0.0, f64::max),
            cpu.len(),
            if doc.machine.placement.server.is_some() { ", with the server pinned to one CPU" } else { "" }
        );
    }
    out
}

/// `findings/backpressure.md`: stalled subscribers under each policy.
pub(super) fn backpressure(doc: &Document) -> String {
    let mut out = String::new();
    let scenario = ScenarioKind::Backpressure;
    let stalled = param(doc, "bp_stalled").unwrap_or(0.0);
    for &t in scenario.transports() {
        for policy in Label::stalled() {
            let cells: Vec<&Cell> = doc.cells_of(scenario).filter(|c| c.transport == t && c.label == policy).collect();
            if cells.is_empty() {
                continue;
            }
            let mut parts = Vec::new();
            let failed: Vec<&Cell> = cells.iter().copied().filter(|c| !c.verified).collect();
            for c in &failed {
                let why = doc.failures.iter().find(|f| f.cell == c.key()).map_or("see the failures table".to_owned(), |f| f.message.clone());
                parts.push(format!("{} failed verification ({why})", c.runtime));
            }
            let verified: Vec<&Cell> = cells.iter().copied().filter(|c| c.verified).collect();
            if !verified.is_empty() {
                if let Some(s) = grouped(doc, t, policy, "fast_p99_us") {
                    parts.push(format!("the fast subscribers' p99 against the same lab with no stalled subscriber: {s}"));
                }
                if let Some(s) = growth_against_reference(doc, t, policy) {
                    parts.push(format!("the peak user-space growth: {s}"));
                }
                let per = |m: &str| {
                    let v: Vec<f64> = verified.iter().filter_map(|c| c.mean(m)).collect();
                    (stalled > 0.0 && !v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64 / stalled)
                };
                if let (Some(closed), Some(received), Some(missed)) = (per("stalled_closed"), per("stalled_received"), per("stalled_missed")) {
                    parts.push(format!(
                        "a stalled subscriber, on average over the labs: {} closed, {} messages received, {} announced missed",
                        if closed >= 0.995 { "always".to_owned() } else if closed <= 0.005 { "never".to_owned() } else { pct(closed) },
                        fmt_int(received),
                        fmt_int(missed)
                    ));
                }
            }
            let _ = writeln!(out, "* **{t}**, {policy}: {}.", parts.join("; "));
        }
    }
    if let Some(s) = unbounded_growth(doc) {
        let _ = writeln!(out, "* {s}");
    }
    out
}

fn growth_against_reference(doc: &Document, t: Transport, policy: Label) -> Option<String> {
    let s = grouped(doc, t, policy, "peak_user_growth")?;
    let v: Vec<f64> =
        doc.cells_of(ScenarioKind::Backpressure).filter(|c| c.transport == t && c.label == policy && c.verified).filter_map(|c| c.mean("peak_user_growth")).collect();
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(0.0, f64::max);
    let range = if v.len() == 1 { fmt_bytes(lo) } else { format!("{} to {}", fmt_bytes(lo), fmt_bytes(hi)) };
    Some(format!("{range}; against the same lab with no stalled subscriber, {s}"))
}

/// `metric` of each lab's `policy` cell against its baseline cell, grouped.
fn grouped(doc: &Document, t: Transport, policy: Label, metric: &str) -> Option<String> {
    let mut groups: Vec<(&'static str, Vec<String>)> = vec![("higher", Vec::new()), ("lower", Vec::new()), ("no difference measured", Vec::new())];
    for r in doc.runtimes() {
        let (Some(p), Some(b)) = (cell(doc, ScenarioKind::Backpressure, &r, t, policy), cell(doc, ScenarioKind::Backpressure, &r, t, Label::Baseline)) else {
            continue;
        };
        let (Some(ps), Some(bs)) = (p.metrics.get(metric), b.metrics.get(metric)) else { continue };
        match diff(ps, bs) {
            Diff::More => groups[0].1.push(format!("{r} ({})", relative(ps.mean, bs.mean))),
            Diff::Less => groups[1].1.push(format!("{r} ({})", relative(ps.mean, bs.mean))),
            Diff::Same => groups[2].1.push(r),
        }
    }
    let parts: Vec<String> = groups.into_iter().filter(|(_, l)| !l.is_empty()).map(|(what, labs)| format!("{what} in {}", and_list(&labs))).collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// Under `unbounded`: the growth above the run without stalled subscribers,
/// against the bytes published and one copy per stalled subscriber.
fn unbounded_growth(doc: &Document) -> Option<String> {
    let policy = Label::Policy(crate::axes::Policy::Unbounded);
    let mut extra = Vec::new();
    for c in doc.cells_of(ScenarioKind::Backpressure).filter(|c| c.label == policy && c.verified) {
        let b = cell(doc, ScenarioKind::Backpressure, &c.runtime, c.transport, Label::Baseline)?;
        extra.push(c.mean("peak_user_growth")? - b.mean("peak_user_growth")?);
    }
    if extra.is_empty() {
        return None;
    }
    let published = param(doc, "bp_messages")? * param(doc, "bp_size")?;
    let stalled = param(doc, "bp_stalled")?;
    let lo = extra.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = extra.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some(format!(
        "Under unbounded, the server grew {} to {} more than the same lab with no stalled subscriber: {} to {} times the bytes published ({}), where one copy for each of the {} stalled subscribers would be {}.",
        fmt_bytes(lo),
        fmt_bytes(hi),
        ratio(lo / published),
        ratio(hi / published),
        fmt_bytes(published),
        fmt_int(stalled),
        fmt_bytes(published * stalled)
    ))
}

/// `findings/polling.md`: what each transport costs for one update stream.
pub(super) fn polling(doc: &Document) -> String {
    let mut out = String::new();
    let scenario = ScenarioKind::Polling;
    let Some(&clients) = sizes(doc, scenario, Transport::ShortPoll).last().or(sizes(doc, scenario, Transport::Sse).last()) else {
        return out;
    };
    let label = Label::Size(clients);
    let mean_over = |t: Transport, m: &str| {
        let v: Vec<f64> = doc.cells_of(scenario).filter(|c| c.transport == t && c.verified).filter_map(|c| c.mean(m)).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    let every_ms = param(doc, "poll_every_ms");
    let rate = param(doc, "poll_rate");
    let mut req = Vec::new();
    for &t in scenario.transports() {
        if let Some(v) = mean_over(t, "requests_per_sec") {
            req.push(format!("{t} {}", if v < 0.5 { "none".to_owned() } else { fmt_int(v) }));
        }
    }
    if !req.is_empty() {
        let expected = match (every_ms, rate) {
            (Some(e), Some(r)) if e > 0.0 => format!(
                " Expected: a short poll per client per period, {} a second; a long poll per delivered update, {} a second.",
                fmt_int(clients as f64 * 1000.0 / e),
                fmt_int(clients as f64 * r)
            ),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "* HTTP requests per second in the measured window, the mean over the labs ({} clients; a subscription's one request is made before the window): {}.{expected}",
            fmt_int(clients as f64),
            req.join(", ")
        );
    }
    let base = Transport::Sse;
    for (metric, what) in [
        ("bytes_per_message", "Bytes on the wire per delivered update"),
        ("server_cpu_per_sec", "Server CPU seconds per second"),
        ("stale_p50_us", "Median staleness"),
    ] {
        let parts: Vec<String> = scenario
            .transports()
            .iter()
            .filter(|&&t| t != base)
            .filter_map(|&t| against(doc, scenario, metric, t, base, label).map(|s| format!("{t}: {s}")))
            .collect();
        if !parts.is_empty() {
            let _ = writeln!(out, "* {what}, in each lab against its own {base} figure — {}.", parts.join("; "));
        }
    }
    let polls = short_polls(doc);
    if !polls.is_empty() {
        let cpu_lo = polls.iter().map(|p| p.cpu_per_request).fold(f64::INFINITY, f64::min);
        let cpu_hi = polls.iter().map(|p| p.cpu_per_request).fold(0.0, f64::max);
        let bytes: Vec<f64> = polls.iter().filter_map(|p| p.bytes_per_request).collect();
        let _ = writeln!(
            out,
            "* One short poll cost the server {} of CPU (its whole CPU over the window divided by the requests, so an upper bound){}.",
            span(cpu_lo * 1e6, cpu_hi * 1e6, fmt_us),
            if bytes.is_empty() {
                String::new()
            } else {
                format!(
                    ", and {} bytes on the wire, request and response (rtlab's clients send only a `Host:` header: a lower bound)",
                    fmt_int(bytes.iter().sum::<f64>() / bytes.len() as f64)
                )
            }
        );
    }
    if let (Some(short), Some(e)) = (mean_over(Transport::ShortPoll, "stale_p50_us"), every_ms) {
        let push: Vec<String> =
            [Transport::Sse, Transport::Ws].iter().filter_map(|&t| mean_over(t, "stale_p50_us").map(|v| format!("{t} {}", fmt_us(v)))).collect();
        let _ = writeln!(
            out,
            "* Short polling's median staleness, {} over the labs, is {} of its polling period of {} ms{}.",
            fmt_us(short),
            pct(short / (e * 1000.0)),
            fmt_int(e),
            if push.is_empty() { String::new() } else { format!("; the push transports': {}", and_list(&push)) }
        );
    }
    if let (Some(r), Some(e)) = (rate, every_ms) {
        let _ = writeln!(
            out,
            "* One workload was measured: {} clients, {} updates a second, short polls every {} ms. How the costs change with the rate, the period or the number of clients — where polling stops being cheap — is not in this run.",
            fmt_int(clients as f64),
            fmt_num(r),
            fmt_int(e)
        );
    }
    out
}

/// The event-loop chapter's target for the mio lab, and whether the run met
/// it (`findings/targets-mio.md`).
pub(super) fn targets_mio(doc: &Document) -> String {
    let mut out = String::new();
    // mio: the least user-space memory per idle connection, at every size
    // and transport, and how much it changed with the size.
    let mio: Vec<&Cell> = doc.cells_of(ScenarioKind::Idle).filter(|c| c.runtime == "mio" && c.verified && c.label.size().is_some()).collect();
    if mio.is_empty() {
        let _ = writeln!(out, "* mio, a small, fixed cost per idle connection in user space: not measured in this run.");
    } else {
        let mut not_least = Vec::new();
        for c in &mio {
            let Some(m) = c.metrics.get("user_bytes_per_conn") else { continue };
            let beaten = doc
                .cells_of(ScenarioKind::Idle)
                .filter(|o| o.runtime != "mio" && o.verified && o.transport == c.transport && o.label == c.label)
                .filter_map(|o| o.metrics.get("user_bytes_per_conn"))
                .any(|o| diff(m, o) != Diff::Less);
            if beaten {
                not_least.push(format!("{} at {} connections", c.transport, fmt_int(c.label.size().unwrap_or(0) as f64)));
            }
        }
        let values: Vec<f64> = mio.iter().filter_map(|c| c.mean("user_bytes_per_conn")).collect();
        let growth: Vec<String> = ScenarioKind::Idle
            .transports()
            .iter()
            .filter_map(|&t| {
                let s = sizes(doc, ScenarioKind::Idle, t);
                let a = cell(doc, ScenarioKind::Idle, "mio", t, Label::Size(*s.first()?))?.mean("user_bytes_per_conn")?;
                let b = cell(doc, ScenarioKind::Idle, "mio", t, Label::Size(*s.last()?))?.mean("user_bytes_per_conn")?;
                (s.len() > 1 && a > 0.0).then(|| format!("{t} {}", relative(b, a)))
            })
            .collect();
        let _ = writeln!(
            out,
            "* mio, a small, fixed cost per idle connection in user space: **{}** — {}, {}{}.",
            if not_least.is_empty() { "met" } else { "not met" },
            if not_least.is_empty() {
                "the least of the labs at every size and transport, beyond the ranges of their runs".to_owned()
            } else {
                format!("not the least, beyond the ranges of the runs, at {}", and_list(&not_least))
            },
            span(values.iter().copied().fold(f64::INFINITY, f64::min), values.iter().copied().fold(0.0, f64::max), fmt_b),
            if growth.is_empty() { String::new() } else { format!("; from the smallest size to the largest: {}", growth.join(", ")) }
        );
    }
    out
}

/// The coroutines-and-threads chapter's targets for the may and threads
/// labs, and whether the run met them (`findings/targets-may-threads.md`).
pub(super) fn targets_may_threads(doc: &Document) -> String {
    let mut out = String::new();
    // may: at most 8 KiB of user-space memory per idle connection.
    const MAY_BYTES: f64 = 8.0 * 1024.0;
    let may: Vec<&Cell> = doc
        .cells_of(ScenarioKind::Idle)
        .filter(|c| c.runtime == "may" && c.verified)
        .filter(|c| c.metrics.contains_key("user_bytes_per_conn"))
        .collect();
    if may.is_empty() {
        let _ = writeln!(out, "* may, at most 8 KiB of user-space memory per idle connection: not measured in this run.");
    } else {
        let worst = may.iter().filter_map(|c| c.metrics.get("user_bytes_per_conn")).map(|s| s.max).fold(0.0, f64::max);
        let _ = writeln!(
            out,
            "* may, at most 8 KiB of user-space memory per idle connection: **{}** — at most {} in any run, at every transport and size.",
            if worst <= MAY_BYTES { "met" } else { "not met" },
            fmt_b(worst)
        );
    }
    // may: all but ten descriptors of the open-files limit held.
    const SPARE: u64 = 10;
    let limit = doc.machine.nofile_limit;
    match ceilings(doc).into_iter().find(|c| c.runtime == "may") {
        Some(c) => {
            let want = limit.saturating_sub(SPARE);
            let _ = writeln!(
                out,
                "* may, as many connections in one process as the open-files limit allows, all but {SPARE} ({} with this run's limit of {}): **{}** — it held {}{}.",
                fmt_int(want as f64),
                fmt_int(limit as f64),
                if c.held >= want as f64 { "met" } else { "not met" },
                fmt_int(c.held),
                if c.held >= want as f64 { String::new() } else { format!(", {} short", fmt_int(want as f64 - c.held)) }
            );
        }
        None => {
            let _ = writeln!(out, "* may, as many connections in one process as the open-files limit allows: not measured in this run.");
        }
    }
    match ceilings(doc).into_iter().find(|c| c.runtime == "threads") {
        Some(c) => {
            let _ = writeln!(out, "* threads, measured and reported with its ceiling: **done** — it held {}, stopped by {}.", fmt_int(c.held), stop_text(doc, &c));
        }
        None => {
            let _ = writeln!(out, "* threads, measured and reported with its ceiling: not measured in this run.");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tables::tests::fixture;

    fn stat(values: &[f64]) -> Stat {
        Stat::of(values.to_vec())
    }

    #[test]
    fn a_difference_needs_ranges_that_do_not_overlap() {
        assert_eq!(diff(&stat(&[1.0, 2.0]), &stat(&[3.0, 4.0])), Diff::Less);
        assert_eq!(diff(&stat(&[5.0, 6.0]), &stat(&[3.0, 4.0])), Diff::More);
        // Overlapping ranges: the means differ (2.5 against 3.5), no difference measured.
        assert_eq!(diff(&stat(&[1.0, 4.0]), &stat(&[3.0, 4.0])), Diff::Same);
        // The edge: ranges that touch (one run of each equal) are not apart.
        assert_eq!(diff(&stat(&[1.0, 3.0]), &stat(&[3.0, 5.0])), Diff::Same);
        assert_eq!(diff(&stat(&[3.0, 5.0]), &stat(&[1.0, 3.0])), Diff::Same);
        // A range inside another.
        assert_eq!(diff(&stat(&[2.0, 2.5]), &stat(&[1.0, 9.0])), Diff::Same);
    }

    #[test]
    fn words_for_ratios() {
        assert_eq!(relative(230.0, 100.0), "2.3 times as much");
        assert_eq!(relative(108.0, 100.0), "8.0% more");
        assert_eq!(relative(74.0, 100.0), "26% less");
        assert_eq!(relative(1200.0, 100.0), "12 times as much");
        assert_eq!(and_list(&["a", "b", "c"]), "a, b and c");
        let (a, b, c) = (stat(&[1.0, 2.0]), stat(&[2.0, 3.0]), stat(&[5.0, 6.0]));
        let items = [("x".to_owned(), &c), ("y".to_owned(), &a), ("z".to_owned(), &b)];
        let (list, sentence) = ranking(&items, |v| format!("{v}"), false);
        assert_eq!(list, "y (1.5), z (2.5), x (5.5)");
        assert_eq!(sentence, "No difference measured between y and z (the ranges of their runs overlap); each other neighbour differs beyond them.");
        let (list, _) = ranking(&items, |v| format!("{v}"), true);
        assert_eq!(list, "x (5.5), z (2.5), y (1.5)");
    }

    #[test]
    fn idle_findings() {
        let doc = fixture();
        assert_eq!(
            idle(&doc),
            "* **sse**, 1,000 connections: user-space memory per connection, least first: tokio (1,827 B), axum (22,024 B). They differ beyond the ranges of their runs. The most is 12 times the least.\n\
             * The transport, in each lab against its own sse figure (1,000 connections, user space): ws: no difference measured in tokio.\n\
             * Between labs over one transport, the most is up to 12 times the least (sse: axum against tokio); between the transports of one lab, no difference measured. The lab decides, not the transport.\n\
             * What the server kept after the clients left, as a share of what their connections took (1,000 connections): sse: tokio 100%, axum 100%; ws: tokio 100%.\n\
             * The kernel's share per connection (sse, 1,000 connections, both ends of each loopback connection), least first: axum (6,860 B), tokio (7,020 B). They differ beyond the ranges of their runs.\n\
             * As many as one process held, each asked for more than the open-files limit of 20,000: tokio 19,985, stopped by the open-files limit of 20,000 (all but 15 descriptors, which the server keeps for itself); axum 19,985, stopped by the open-files limit of 20,000 (all but 15 descriptors, which the server keeps for itself).\n"
        );
    }

    #[test]
    fn a_lab_at_the_mapping_limit_and_one_that_would_be() {
        let mut doc = fixture();
        // A threads lab that ran out of mappings, and a may lab stopped by
        // descriptors whose stacks would have run out near 32,895 (the
        // committed run's figures).
        let max = doc.cells.iter().find(|c| c.runtime == "tokio" && c.label == Label::Max).cloned().expect("max cell");
        for (lab, held, before, after) in [("threads", 16_116.0, 48.0, 64_540.0), ("may", 19_989.0, 576.0, 40_046.0)] {
            let mut c = max.clone();
            c.runtime = lab.into();
            c.metrics.insert("held".into(), Stat::of(vec![held, held]));
            for r in &mut c.runs {
                r["server_before"] = serde_json::json!({ "mappings": before });
                r["server_after"] = serde_json::json!({ "mappings": after });
                if lab == "threads" {
                    r["first_error"] = "unexpected answer: HTTP/1.1 503 Service Unavailable".into();
                }
            }
            doc.labs.push(crate::results::Lab { runtime: lab.into(), baseline: false, transports: vec![Transport::Sse] });
            doc.cells.push(c);
        }
        let c = ceilings(&doc);
        let threads = c.iter().find(|c| c.runtime == "threads").expect("threads");
        assert_eq!(threads.stop, Stop::MapCount { maps: 64_540 });
        let may = c.iter().find(|c| c.runtime == "may").expect("may");
        assert_eq!(may.stop, Stop::OpenFiles { spare: 11 });
        let text = idle(&doc);
        assert!(
            text.contains("threads 16,116, stopped by vm.max_map_count: 64,540 memory mappings of 65,530, 4.0 per connection"),
            "{text}"
        );
        assert!(
            text.contains(
                "* Memory mappings per connection (every thread or coroutine stack is mappings; vm.max_map_count was 65,530): threads 4.0 and may 2.0. \
                 At that rate vm.max_map_count stops threads near 16,363 connections (it held 16,116) and may near 32,895 (in this run another limit stopped it first, at 19,989).\n"
            ),
            "{text}"
        );
        assert_eq!(targets_mio(&doc), "* mio, a small, fixed cost per idle connection in user space: not measured in this run.\n");
        assert_eq!(
            targets_may_threads(&doc),
            "* may, at most 8 KiB of user-space memory per idle connection: **met** — at most 1,835 B in any run, at every transport and size.\n\
             * may, as many connections in one process as the open-files limit allows, all but 10 (19,990 with this run's limit of 20,000): **not met** — it held 19,989, 1 short.\n\
             * threads, measured and reported with its ceiling: **done** — it held 16,116, stopped by vm.max_map_count: 64,540 memory mappings of 65,530, 4.0 per connection.\n"
        );
    }

    #[test]
    fn the_mio_target_needs_the_least_memory_everywhere() {
        let mut doc = fixture();
        doc.labs.push(crate::results::Lab { runtime: "mio".into(), baseline: false, transports: vec![Transport::Sse, Transport::Ws] });
        let tokio: Vec<Cell> =
            doc.cells.iter().filter(|c| c.scenario == ScenarioKind::Idle && c.runtime == "tokio" && c.label.size().is_some()).cloned().collect();
        for (mut c, v) in tokio.into_iter().zip([[201.0, 201.0], [1826.816, 1900.0]]) {
            c.runtime = "mio".into();
            c.metrics.insert("user_bytes_per_conn".into(), Stat::of(v.to_vec()));
            doc.cells.push(c);
        }
        // Over ws, mio's runs (1,827 and 1,900 B) touch tokio's (1,827 B): not the least.
        assert_eq!(
            targets_mio(&doc),
            "* mio, a small, fixed cost per idle connection in user space: **not met** — not the least, beyond the ranges of the runs, at ws at 1,000 connections, 201 B to 1,863 B.\n"
        );
    }

    #[test]
    fn fanout_and_saturation_findings_say_when_no_difference_was_measured() {
        let doc = fixture();
        // tokio's two runs at 100 subscribers (1,512 and 1,898 µs) overlap
        // axum's (1,485 and 1,518 µs): no difference, though the means differ.
        assert_eq!(
            fanout(&doc),
            "* **ws**, 100 subscribers: the last subscriber's p99, least first: axum (1.50 ms), tokio (1.71 ms). No difference measured between axum and tokio (the ranges of their runs overlap). The most is 1.1 times the least.\n\
             * **ws**: from 100 to 1,000 subscribers (10 times as many), the last subscriber's p99 grew by a factor of: tokio 9.3.\n\
             * **ws**: the lowest last-subscriber p99 at each size — 100: axum (no difference measured from tokio).\n"
        );
        assert_eq!(
            saturation(&doc),
            "* **ws**, 100 subscribers: messages delivered per second, most first: axum (391,057), tokio (307,518). They differ beyond the ranges of their runs.\n\
             * **ws**: the most delivered per second at each size — 100: axum.\n\
             * The server's CPU while publishing back to back: from 0.98 to 0.99 CPU seconds per second; 2 of 2 cells at 0.9 or more, with the server pinned to one CPU.\n"
        );
    }

    #[test]
    fn backpressure_findings_compare_with_the_reference_and_name_failures() {
        assert_eq!(
            backpressure(&fixture()),
            "* **sse**, disconnect: the fast subscribers' p99 against the same lab with no stalled subscriber: higher in tokio (16% more); \
             the peak user-space growth: 3.8 MiB; against the same lab with no stalled subscriber, no difference measured in tokio; \
             a stalled subscriber, on average over the labs: always closed, 99 messages received, 0 announced missed.\n\
             * **sse**, own: axum failed verification (stalled subscribers: 0 of 20 accounted for, 20 unannounced gaps).\n"
        );
    }

    #[test]
    fn polling_findings() {
        assert_eq!(
            polling(&fixture()),
            "* HTTP requests per second in the measured window, the mean over the labs (1,000 clients; a subscription's one request is made before the window): short-poll 1,000, sse none. \
             Expected: a short poll per client per period, 1,000 a second; a long poll per delivered update, 2,000 a second.\n\
             * Bytes on the wire per delivered update, in each lab against its own sse figure — short-poll: 2.3 times as much in tokio.\n\
             * Server CPU seconds per second, in each lab against its own sse figure — short-poll: no difference measured in tokio.\n\
             * Median staleness, in each lab against its own sse figure — short-poll: 74 times as much in tokio.\n\
             * One short poll cost the server 26 µs of CPU (its whole CPU over the window divided by the requests, so an upper bound), and 340 bytes on the wire, request and response (rtlab's clients send only a `Host:` header: a lower bound).\n\
             * Short polling's median staleness, 500 ms over the labs, is 50% of its polling period of 1,000 ms; the push transports': sse 6.75 ms.\n\
             * One workload was measured: 1,000 clients, 2 updates a second, short polls every 1,000 ms. How the costs change with the rate, the period or the number of clients — where polling stops being cheap — is not in this run.\n"
        );
    }
}
