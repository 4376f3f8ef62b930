//! The distance to the wall, in sentences computed from the data: the
//! floor's figure ([`crate::floor`]) in each fan-out and knee cell, and each
//! lab's as a multiple of it. The conclusion quotes it.

use std::fmt::Write as _;

use super::format::{fmt_int, fmt_us};
use crate::axes::ScenarioKind;
use crate::floor;
use crate::results::{Cell, Document};

/// One sentence per (transport, size) of `scenario` that has a floor cell:
/// the floor's median of `metric`, then each verified lab's and its ratio.
fn sentences(doc: &Document, scenario: ScenarioKind, metric: &str, what: &str, fmt: fn(f64) -> String) -> String {
    let mut out = String::new();
    let floors: Vec<&Cell> = doc.cells_of(scenario).filter(|c| c.runtime == floor::NAME && c.verified).collect();
    for f in floors {
        let Some(base) = f.median(metric).filter(|v| *v > 0.0) else { continue };
        let labs: Vec<String> = doc
            .cells_of(scenario)
            .filter(|c| c.runtime != floor::NAME && c.verified && c.transport == f.transport && c.label == f.label)
            .filter_map(|c| Some(format!("{} {} ({:.2}×)", c.runtime, fmt(c.median(metric)?), c.median(metric)? / base)))
            .collect();
        if labs.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "* {} over {}, {} subscribers: the floor {}; {}.",
            what,
            f.transport,
            f.label,
            fmt(base),
            labs.join(", ")
        );
    }
    out
}

/// The floor and each lab's distance from it: fan-out (last subscriber's
/// median) and the knee (deliveries per second).
pub fn distance(doc: &Document) -> String {
    let fanout = sentences(doc, ScenarioKind::Fanout, "last_p50_us", "Last subscriber's median latency", fmt_us);
    let knee = sentences(doc, ScenarioKind::Knee, "knee_per_sec", "Deliveries per second at the knee", |v| fmt_int(v) + "/s");
    if fanout.is_empty() && knee.is_empty() {
        return String::new();
    }
    format!(
        "Medians of the runs; in brackets each lab's figure over the floor's (the raw-socket server doing only the kernel work, same cell and placement). Latency: above one is slower than the wall; the knee: below one delivers less. {}\n\n{fanout}{knee}",
        below_floor(doc)
    )
}

/// Whether the floor is a floor: the fan-out cells in which a lab's last
/// subscriber was ahead of the floor's (median against median), named.
fn below_floor(doc: &Document) -> String {
    let mut compared = 0;
    let mut ahead = Vec::new();
    for f in doc.cells_of(ScenarioKind::Fanout).filter(|c| c.runtime == floor::NAME && c.verified) {
        let Some(base) = f.median("last_p50_us") else { continue };
        for c in doc.cells_of(ScenarioKind::Fanout).filter(|c| {
            c.runtime != floor::NAME && c.verified && c.transport == f.transport && c.label == f.label
        }) {
            let Some(v) = c.median("last_p50_us") else { continue };
            compared += 1;
            if v < base {
                ahead.push(format!("{} over {} to {}", c.runtime, c.transport, c.label));
            }
        }
    }
    match (compared, ahead.is_empty()) {
        (0, _) => String::new(),
        (n, true) => format!("In all {n} fan-out cells compared, the floor's last subscriber was ahead of the lab's."),
        (n, false) => format!(
            "In {} of the {n} fan-out cells compared a lab's last subscriber was ahead of the floor's ({}): there the floor is not the wall.",
            ahead.len(),
            ahead.join("; ")
        ),
    }
}
