//! The plot catalogue: which SVG files a report has, and what each shows.
//!
//! File names do not depend on which labs ran (a plot per transport or
//! policy, one line or bar per lab), so the book's chapters can name them; a
//! plot with no data says so. The drawing itself is [`super::charts`].
//!
//! | files | what |
//! |---|---|
//! | `idle-{user,kernel}-{sse,ws,long-poll}.svg` | bytes per idle connection, a group per size |
//! | `fanout-{sse,ws,long-poll}.svg` | publish-to-receive latency against subscribers |
//! | `saturation.svg` | messages delivered per second, publishing back to back |
//! | `knee.svg` | deliveries per second at the knee (p99 within the bound), the floor beside the labs |
//! | `backpressure-latency-{sse,ws}.svg` | fast subscribers' p99 per variant |
//! | `backpressure-memory-{sse,ws}-{policy,own}.svg` | server and kernel memory over time |
//! | `polling-{requests,cpu,bytes,staleness}.svg` | what each transport costs |

use std::path::Path;

use plotters::prelude::*;

use super::charts::{Axis, Bars, Line, PlotResult, SIZE, bar_chart, line_chart, no_data};
use super::colour;
use super::format::{fmt_count, fmt_int, fmt_sig};
use crate::axes::{Label, ScenarioKind, Transport};
use crate::backpressure::MemorySample;
use crate::results::{Cell, Document, Stat};

/// A group of bars: its label, and which cells belong to it.
type Category<'a> = (String, Box<dyn Fn(&Cell) -> bool + 'a>);

/// One series per lab, in the document's order and the lab's colour: the
/// `metric` of the verified cell of each category.
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

/// Draws every plot of `doc` into `dir`; returns the file names, in the
/// order the report lists them.
pub fn plots(doc: &Document, dir: &Path) -> PlotResult<Vec<String>> {
    let mut written = Vec::new();
    idle(doc, dir, &mut written)?;
    fanout(doc, dir, &mut written)?;
    saturation(doc, dir, &mut written)?;
    knee(doc, dir, &mut written)?;
    backpressure(doc, dir, &mut written)?;
    polling(doc, dir, &mut written)?;
    Ok(written)
}

/// Idle: user-space and kernel bytes per connection, per transport.
fn idle(doc: &Document, dir: &Path, written: &mut Vec<String>) -> PlotResult {
    for &t in ScenarioKind::Idle.transports() {
        let cells: Vec<&Cell> = doc.cells_of(ScenarioKind::Idle).filter(|c| c.transport == t).collect();
        let mut labels: Vec<Label> = cells.iter().map(|c| c.label).collect();
        labels.sort();
        labels.dedup();
        for (metric, what) in [("user_bytes_per_conn", "user"), ("kernel_bytes_per_conn", "kernel")] {
            let categories: Vec<Category<'_>> = labels
                .iter()
                .map(|&l| {
                    let name = match l {
                        Label::Max => "as many as it holds".to_owned(),
                        _ => format!("{} connections", fmt_int(l.size().unwrap_or(0) as f64)),
                    };
                    (name, Box::new(move |c: &Cell| c.label == l) as Box<dyn Fn(&Cell) -> bool>)
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
            written.push(name);
        }
    }
    Ok(())
}

/// Fan-out latency against subscribers, per transport.
fn fanout(doc: &Document, dir: &Path, written: &mut Vec<String>) -> PlotResult {
    let runtimes = doc.runtimes();
    for &t in ScenarioKind::Fanout.transports() {
        let name = format!("fanout-{t}.svg");
        let path = dir.join(&name);
        let cells: Vec<&Cell> = doc.cells_of(ScenarioKind::Fanout).filter(|c| c.transport == t && c.verified).collect();
        let mut lines = Vec::new();
        for r in &runtimes {
            for (metric, what, width, dashed) in [("last_p99_us", "p99, last subscriber", 2, false), ("all_p50_us", "p50, all pairs", 1, true)] {
                let mut points: Vec<(f64, f64)> = cells
                    .iter()
                    .filter(|c| c.runtime == *r)
                    .filter_map(|c| Some((c.label.size()? as f64, c.mean(metric)? / 1000.0)))
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
        written.push(name);
    }
    Ok(())
}

/// Saturation throughput: a group per transport and size.
fn saturation(doc: &Document, dir: &Path, written: &mut Vec<String>) -> PlotResult {
    let title = "Fan-out at saturation: messages delivered per second";
    rate_bars(doc, dir, written, ScenarioKind::Saturation, "saturation.svg", title, "delivered_per_sec")
}

/// Throughput at the knee: a group per transport and size, the floor's bar
/// (black) the reference.
fn knee(doc: &Document, dir: &Path, written: &mut Vec<String>) -> PlotResult {
    let title = "Throughput at the knee: deliveries per second within the p99 bound";
    rate_bars(doc, dir, written, ScenarioKind::Knee, "knee.svg", title, "knee_per_sec")
}

/// Deliveries per second (`metric`) of `scenario`'s cells as bars, a group
/// per transport and size, with min–max whiskers.
fn rate_bars(
    doc: &Document,
    dir: &Path,
    written: &mut Vec<String>,
    scenario: ScenarioKind,
    name: &str,
    title: &str,
    metric: &str,
) -> PlotResult {
    let cells: Vec<&Cell> = doc.cells_of(scenario).collect();
    let mut keys: Vec<(Transport, Label)> = cells.iter().map(|c| (c.transport, c.label)).collect();
    keys.sort();
    keys.dedup();
    let categories: Vec<Category<'_>> = keys
        .iter()
        .map(|&(t, l)| {
            let name = format!("{t} {}", fmt_count(l.size().unwrap_or(0)));
            (name, Box::new(move |c: &Cell| c.transport == t && c.label == l) as Box<dyn Fn(&Cell) -> bool>)
        })
        .collect();
    bar_chart(
        &dir.join(name),
        &Bars {
            title: title.into(),
            y_desc: "messages delivered / s".into(),
            categories: categories.iter().map(|c| c.0.clone()).collect(),
            series: series_by_runtime(doc, &cells, &categories, metric),
            y: Axis::Linear,
            fmt: fmt_int,
        },
    )?;
    written.push(name.to_owned());
    Ok(())
}

/// Backpressure: the fast subscribers' p99 per variant, and memory over
/// time per variant with stalled subscribers, per transport.
fn backpressure(doc: &Document, dir: &Path, written: &mut Vec<String>) -> PlotResult {
    let runtimes = doc.runtimes();
    for &t in ScenarioKind::Backpressure.transports() {
        let cells: Vec<&Cell> = doc.cells_of(ScenarioKind::Backpressure).filter(|c| c.transport == t).collect();
        let categories: Vec<Category<'_>> = Label::BACKPRESSURE
            .iter()
            .map(|&l| {
                let name = match l {
                    Label::Baseline => "no stalled".to_owned(),
                    Label::Own => "baseline lab's own".to_owned(),
                    other => other.to_string(),
                };
                (name, Box::new(move |c: &Cell| c.label == l) as Box<dyn Fn(&Cell) -> bool>)
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
        written.push(name);
        for policy in Label::stalled() {
            let name = format!("backpressure-memory-{t}-{policy}.svg");
            let path = dir.join(&name);
            let mut user = Vec::new();
            let mut tcp = Vec::new();
            for c in cells.iter().filter(|c| c.label == policy && c.verified) {
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
            written.push(name);
        }
    }
    Ok(())
}

/// Polling cost: one bar chart per measure, a group per transport (in
/// table order, not the order the scenario runs them).
fn polling(doc: &Document, dir: &Path, written: &mut Vec<String>) -> PlotResult {
    let cells: Vec<&Cell> = doc.cells_of(ScenarioKind::Polling).collect();
    let categories: Vec<Category<'_>> = Transport::ALL
        .iter()
        .map(|&t| (t.to_string(), Box::new(move |c: &Cell| c.transport == t) as Box<dyn Fn(&Cell) -> bool>))
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
        written.push(file.to_owned());
    }
    Ok(())
}
