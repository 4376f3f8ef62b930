//! The expiry spike's report, from `expiry.json`: a table (per spread, the
//! range over the runs), a finding (sentences computed from the data), the
//! parameters, and one plot (stream ends per 100 ms around `exp`, one line
//! per spread and run). `rtlab report DIR --book book/src/generated` writes
//! the book's copies (`expiry/*.md`, `plots/expiry-spike.svg`).

use std::io;
use std::path::Path;

use plotters::prelude::*;

use super::{ExpiryDoc, ExpiryRun, per_100ms};
use crate::report::charts::{Axis, Line, SIZE, line_chart};
use crate::report::format::{fmt_int, fmt_sig};
use crate::report::tables::table_text;

/// The plot's file name.
pub const PLOT: &str = "expiry-spike.svg";

/// The spreads of the document, in the order they first ran.
fn spreads(doc: &ExpiryDoc) -> Vec<f64> {
    let mut out: Vec<f64> = Vec::new();
    for r in &doc.runs {
        if !out.contains(&r.spread_s) {
            out.push(r.spread_s);
        }
    }
    out
}

fn runs_of(doc: &ExpiryDoc, spread: f64) -> impl Iterator<Item = &ExpiryRun> {
    doc.runs.iter().filter(move |r| r.spread_s == spread)
}

/// "lo–hi" over the runs (one value when they agree).
fn range(values: impl Iterator<Item = f64>, fmt: fn(f64) -> String) -> String {
    let v: Vec<f64> = values.collect();
    let (lo, hi) = v.iter().fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
    if v.is_empty() {
        "–".into()
    } else if fmt(lo) == fmt(hi) {
        fmt(lo)
    } else {
        format!("{}–{}", fmt(lo), fmt(hi))
    }
}

fn spread_name(s: f64) -> String {
    if s == 0.0 { "none (all at exp)".into() } else { format!("{} s", fmt_sig(s)) }
}

/// The table: one row per spread, each cell the range over its runs.
pub fn table(doc: &ExpiryDoc) -> String {
    let rows: Vec<Vec<String>> = spreads(doc)
        .into_iter()
        .map(|s| {
            let runs = || runs_of(doc, s);
            vec![
                spread_name(s),
                runs().count().to_string(),
                range(runs().map(|r| r.peak_per_100ms as f64), fmt_int),
                range(runs().map(|r| r.herd_ms), |v| format!("{} ms", fmt_int(v))),
                range(runs().map(|r| r.reconnect_p50_ms), |v| format!("{} ms", fmt_sig(v))),
                range(runs().map(|r| r.reconnect_p99_ms), |v| format!("{} ms", fmt_sig(v))),
                range(runs().map(|r| r.reconnect_max_ms), |v| format!("{} ms", fmt_sig(v))),
            ]
        })
        .collect();
    table_text(
        &[
            "expiry spread",
            "runs",
            "peak reconnections per 100 ms",
            "first end to last reconnection",
            "reconnection p50",
            "reconnection p99",
            "reconnection max",
        ],
        &rows,
    )
}

/// The spread compared: none (0) and the widest one that ran, if both did.
fn compared(doc: &ExpiryDoc) -> Option<(f64, f64)> {
    let all = spreads(doc);
    let widest = all.iter().copied().filter(|s| *s > 0.0).max_by(f64::total_cmp)?;
    all.contains(&0.0).then_some((0.0, widest))
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::MIN, f64::max)
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::MAX, f64::min)
}

fn peaks(doc: &ExpiryDoc, spread: f64) -> Vec<f64> {
    runs_of(doc, spread).map(|r| r.peak_per_100ms as f64).collect()
}

/// Sentences computed from the data: the spike without a spread against the
/// widest spread, said as measured (ranges over runs; "lower" only where
/// the ranges do not overlap).
pub fn finding(doc: &ExpiryDoc) -> String {
    let Some((none, widest)) = compared(doc) else {
        return "The run has no pair of runs without and with a spread to compare.\n".into();
    };
    let p99 = |s| runs_of(doc, s).map(|r| r.reconnect_p99_ms).collect::<Vec<_>>();
    let (a, b) = (peaks(doc, none), peaks(doc, widest));
    let n = doc.connections as f64;
    let mut text = format!(
        "Of {} streams whose tokens expired together, without a spread up to {} ({} % of all) ended in the same \
         100 ms and reconnected at once; with a {} s spread, at most {} did.",
        fmt_int(n),
        fmt_int(max(&a)),
        fmt_sig(100.0 * max(&a) / n),
        fmt_sig(widest),
        fmt_int(max(&b)),
    );
    let separated = min(&a) > max(&b);
    text.push_str(if separated {
        " The ranges over the runs do not overlap: the spread lowers the spike on this machine."
    } else {
        " The ranges over the runs overlap: this run does not separate them."
    });
    let (pa, pb) = (p99(none), p99(widest));
    text.push_str(&format!(
        " A reconnection's p99 was {}–{} ms without the spread and {}–{} ms with it{}\n",
        fmt_sig(min(&pa)),
        fmt_sig(max(&pa)),
        fmt_sig(min(&pb)),
        fmt_sig(max(&pb)),
        if min(&pa) > max(&pb) {
            ": what the spike costs each client."
        } else if max(&pa) < min(&pb) {
            "."
        } else {
            " (overlapping ranges: no difference shown)."
        }
    ));
    text
}

/// The verdict on the claims table's `expiry-spread` row
/// (`claims/expiry-spread.md`): holds where the peaks' ranges separate.
pub fn claim_verdict(doc: &ExpiryDoc) -> String {
    let Some((none, widest)) = compared(doc) else {
        return "**not yet measured**: the expiry run has no runs without and with a spread\n".into();
    };
    let (a, b) = (peaks(doc, none), peaks(doc, widest));
    if min(&a) > max(&b) {
        format!(
            "**holds**: {} streams minted together, no spread: {}–{} reconnections in one 100 ms; a {} s spread: {}–{} \
             (every run; {} runs each)\n",
            fmt_int(doc.connections as f64),
            fmt_int(min(&a)),
            fmt_int(max(&a)),
            fmt_sig(widest),
            fmt_int(min(&b)),
            fmt_int(max(&b)),
            a.len().min(b.len()),
        )
    } else {
        format!(
            "**does not hold** in this run: the peaks without a spread ({}–{}) and with a {} s spread ({}–{}) overlap\n",
            fmt_int(min(&a)),
            fmt_int(max(&a)),
            fmt_sig(widest),
            fmt_int(min(&b)),
            fmt_int(max(&b)),
        )
    }
}

/// The parameters and conditions, for the chapter to include.
pub fn params(doc: &ExpiryDoc) -> String {
    let spreads: Vec<String> = spreads(doc).into_iter().map(spread_name).collect();
    let repeats = doc.runs.iter().map(|r| r.repeat).max().map_or(0, |m| m + 1);
    format!(
        "{} event streams on the {} lab, tokens minted together with one `exp` ({} s after minting, plus the \
         spread); spreads: {}; {} runs each, interleaved; seed = run number. Machine: {} ({} cores), kernel {}, \
         {}, {} build; commit {}{}. {}\n",
        fmt_int(doc.connections as f64),
        doc.runtime,
        doc.lead_s,
        spreads.join(", "),
        repeats,
        doc.machine.cpu_model,
        doc.machine.cores,
        doc.machine.kernel,
        doc.toolchain.rustc,
        doc.toolchain.profile,
        doc.git.commit.as_deref().map_or("unknown", |c| &c[..c.len().min(12)]),
        if doc.git.dirty { " (with uncommitted changes)" } else { "" },
        doc.note,
    )
}

/// The plot: stream ends (so reconnections) per 100 ms against seconds from
/// `exp`; one line per spread and run, in the lab's colour, solid without a
/// spread and dashed with one.
pub fn plot(doc: &ExpiryDoc, path: &Path) -> crate::report::charts::PlotResult {
    let colour = crate::report::colour(&doc.runtime, std::slice::from_ref(&doc.runtime));
    let lines: Vec<Line> = doc
        .runs
        .iter()
        .map(|r| Line {
            name: format!("{}, spread {}, run {}", doc.runtime, spread_name(r.spread_s), r.repeat + 1),
            colour,
            width: if r.spread_s == 0.0 { 2 } else { 1 },
            dashed: r.spread_s > 0.0,
            points: per_100ms(&r.closed_ms).into_iter().map(|(t, n)| (t, n as f64)).collect(),
        })
        .collect();
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    line_chart(
        &root,
        &format!("{} streams whose tokens expire together: reconnections per 100 ms", fmt_int(doc.connections as f64)),
        "seconds from exp",
        "reconnections per 100 ms",
        &lines,
        (Axis::Linear, Axis::Linear),
        fmt_sig,
        fmt_int,
    )?;
    root.present()?;
    Ok(())
}

/// Writes `expiry/{table,finding,params}.md` and `plots/expiry-spike.svg`
/// under `dir` and, if given, under `book`.
pub fn render(doc: &ExpiryDoc, dir: &Path, book: Option<&Path>) -> io::Result<()> {
    for root in std::iter::once(dir).chain(book) {
        let sub = root.join("expiry");
        std::fs::create_dir_all(&sub)?;
        std::fs::write(sub.join("table.md"), table(doc))?;
        std::fs::write(sub.join("finding.md"), finding(doc))?;
        std::fs::write(sub.join("params.md"), params(doc))?;
        std::fs::create_dir_all(root.join("claims"))?;
        // One line, no newline: the claims table includes it in a cell.
        std::fs::write(root.join("claims").join("expiry-spread.md"), claim_verdict(doc).trim_end())?;
        std::fs::create_dir_all(root.join("plots"))?;
        plot(doc, &root.join("plots").join(PLOT)).map_err(|e| io::Error::other(format!("plotting: {e}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(spread_s: f64, repeat: usize, peak: usize, p99: f64) -> ExpiryRun {
        ExpiryRun {
            spread_s,
            repeat,
            closed_ms: vec![0.0; peak],
            reconnect_ms: vec![1.0; peak],
            peak_per_100ms: peak,
            herd_ms: 100.0,
            reconnect_p50_ms: 1.0,
            reconnect_p99_ms: p99,
            reconnect_max_ms: p99,
        }
    }

    fn doc(runs: Vec<ExpiryRun>) -> ExpiryDoc {
        ExpiryDoc {
            scenario: "expiry".into(),
            runtime: "tokio".into(),
            connections: 1000,
            lead_s: 8,
            started_unix: 0,
            note: String::new(),
            machine: Default::default(),
            toolchain: Default::default(),
            git: Default::default(),
            versions: Default::default(),
            runs,
        }
    }

    #[test]
    fn the_finding_separates_only_ranges_that_do_not_overlap() {
        let apart = doc(vec![run(0.0, 0, 900, 80.0), run(10.0, 0, 30, 2.0), run(0.0, 1, 950, 90.0), run(10.0, 1, 25, 3.0)]);
        let f = finding(&apart);
        assert!(f.contains("up to 950 (95.0 % of all)") && f.contains("at most 30 did"), "{f}");
        assert!(f.contains("do not overlap") && f.contains("what the spike costs"), "{f}");
        let close = doc(vec![run(0.0, 0, 40, 2.0), run(10.0, 0, 45, 2.5)]);
        assert!(finding(&close).contains("does not separate"), "{}", finding(&close));
        assert!(finding(&doc(vec![run(10.0, 0, 1, 1.0)])).contains("no pair"));
        assert!(claim_verdict(&apart).starts_with("**holds**: 1,000 streams minted together, no spread: 900–950"));
        assert!(claim_verdict(&close).starts_with("**does not hold** in this run"));
    }

    #[test]
    fn the_table_has_one_row_per_spread_with_ranges() {
        let t = table(&doc(vec![run(0.0, 0, 900, 80.0), run(10.0, 0, 30, 2.0), run(0.0, 1, 950, 90.0)]));
        assert!(t.contains("| none (all at exp) | 2 | 900–950 |"), "{t}");
        assert!(t.contains("| 10.0 s | 1 | 30 |"), "{t}");
    }
}
