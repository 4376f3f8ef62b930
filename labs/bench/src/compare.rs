//! `rtlab compare <a> <b>`: what changed between two results documents.
//!
//! Cells are matched by scenario, lab, transport and size; for every metric
//! both have, the difference and the change in percent are printed, with a
//! mark when the change is larger than the spread of either run (the runs
//! of one cell disagree by that much among themselves, so a smaller change
//! is not a difference). The machines, commits and conditions are compared
//! first: numbers from different machines or under different steal are not
//! comparable as such.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::report::{fmt_sig, table_text};
use crate::results::{Cell, Document};

/// `rtlab compare` options.
#[derive(Debug, Clone, clap::Args)]
pub struct CompareArgs {
    /// The first results directory (or results.json): the reference.
    pub a: PathBuf,
    /// The second: compared with the first.
    pub b: PathBuf,
    /// Only show changes of at least this many percent.
    #[arg(long, default_value_t = 0.0)]
    pub threshold: f64,
    /// Only these metrics, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    pub metrics: Vec<String>,
}

/// One metric of one cell in both documents.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub cell: String,
    pub metric: String,
    pub a: f64,
    pub b: f64,
    /// (b − a) / a, percent.
    pub pct: f64,
    /// |change| exceeds the larger of the two cells' spreads.
    pub beyond_spread: bool,
}

/// Every metric present in a cell of both documents.
pub fn changes(a: &Document, b: &Document) -> Vec<Change> {
    let index: BTreeMap<String, &Cell> = b.cells.iter().map(|c| (c.key(), c)).collect();
    let mut out = Vec::new();
    for ca in &a.cells {
        let Some(cb) = index.get(&ca.key()) else { continue };
        for (metric, sa) in &ca.metrics {
            let Some(sb) = cb.metrics.get(metric) else { continue };
            let pct = if sa.mean.abs() > f64::EPSILON { (sb.mean - sa.mean) / sa.mean.abs() * 100.0 } else { 0.0 };
            out.push(Change {
                cell: ca.key(),
                metric: metric.clone(),
                a: sa.mean,
                b: sb.mean,
                pct,
                beyond_spread: pct.abs() > sa.spread_pct.max(sb.spread_pct),
            });
        }
    }
    out
}

/// `rtlab compare a b`.
pub fn run(args: &CompareArgs) -> std::io::Result<()> {
    let a = Document::read(&args.a)?;
    let b = Document::read(&args.b)?;
    let short = |c: &Option<String>| c.as_deref().map_or("unknown".to_owned(), |c| c[..c.len().min(12)].to_owned());
    let context = vec![
        vec!["started".into(), a.started.clone(), b.started.clone()],
        vec!["scale".into(), a.scale.to_string(), b.scale.to_string()],
        vec!["host".into(), a.machine.host.clone(), b.machine.host.clone()],
        vec!["CPU".into(), format!("{} × {}", a.machine.cores, a.machine.cpu_model), format!("{} × {}", b.machine.cores, b.machine.cpu_model)],
        vec!["kernel".into(), a.machine.kernel.clone(), b.machine.kernel.clone()],
        vec!["toolchain".into(), a.toolchain.rustc.clone(), b.toolchain.rustc.clone()],
        vec!["profile".into(), a.toolchain.profile.clone(), b.toolchain.profile.clone()],
        vec!["commit".into(), short(&a.git.commit), short(&b.git.commit)],
        vec!["CPU steal (s)".into(), format!("{:.1}", a.machine.steal_secs), format!("{:.1}", b.machine.steal_secs)],
        vec!["failures".into(), a.failures.len().to_string(), b.failures.len().to_string()],
    ];
    println!("{}", table_text(&["", "a", "b"], &context));
    let rows: Vec<Vec<String>> = changes(&a, &b)
        .into_iter()
        .filter(|c| c.pct.abs() >= args.threshold)
        .filter(|c| args.metrics.is_empty() || args.metrics.contains(&c.metric))
        .map(|c| {
            vec![
                c.cell,
                c.metric,
                fmt_sig(c.a),
                fmt_sig(c.b),
                format!("{:+.1}%{}", c.pct, if c.beyond_spread { " *" } else { "" }),
            ]
        })
        .collect();
    println!("{}", table_text(&["cell", "metric", "a", "b", "change"], &rows));
    println!("* the change is larger than the spread of the runs in either document");
    let keys_a: Vec<String> = a.cells.iter().map(Cell::key).collect();
    let keys_b: Vec<String> = b.cells.iter().map(Cell::key).collect();
    let only_a: Vec<&String> = keys_a.iter().filter(|k| !keys_b.contains(k)).collect();
    let only_b: Vec<&String> = keys_b.iter().filter(|k| !keys_a.contains(k)).collect();
    if !only_a.is_empty() {
        println!("only in a: {}", only_a.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "));
    }
    if !only_b.is_empty() {
        println!("only in b: {}", only_b.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::axes::{Label, Scale, ScenarioKind, Transport};
    use crate::results::Stat;

    fn doc(value: f64, spread: [f64; 2]) -> Document {
        let mut d = Document::begin(Scale::Tiny, serde_json::json!({}), Vec::new());
        d.cells.push(Cell {
            scenario: ScenarioKind::Idle,
            runtime: "tokio".into(),
            transport: Transport::Ws,
            label: Label::Size(1000),
            params: serde_json::json!({}),
            verified: true,
            metrics: [("user_bytes_per_conn".to_owned(), Stat::of(vec![value * spread[0], value * spread[1]]))].into(),
            runs: Vec::new(),
        });
        d
    }

    #[test]
    fn matches_cells_and_flags_changes_beyond_spread() {
        let c = changes(&doc(1000.0, [1.0, 1.0]), &doc(1100.0, [0.99, 1.01]));
        assert_eq!(c.len(), 1);
        assert!((c[0].pct - 10.0).abs() < 1e-9);
        assert!(c[0].beyond_spread);
        let c = changes(&doc(1000.0, [0.8, 1.2]), &doc(1050.0, [1.0, 1.0]));
        assert!(!c[0].beyond_spread);
    }
}
