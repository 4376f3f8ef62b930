//! Criterion's results as a results document: the second instrument's
//! numbers in `bench-results/`, where the book can read them.
//!
//! `cargo bench` leaves criterion's estimates in `target/criterion/` — one
//! directory per benchmark with `benchmark.json` (its group, function and
//! parameter), `estimates.json` (mean and median with their confidence
//! intervals) and `sample.json` (the raw samples: iterations and total value
//! per sample). Nothing there says which machine, commit or toolchain
//! produced them, and `target/` is not committed. `rtlab criterion` collects
//! them into one document with the same provenance as a harness run
//! ([`Machine`], [`Toolchain`], [`Git`], crate versions) and renders tables,
//! findings and claim verdicts from it, so the criterion chapter states what
//! the benches measured the way the other chapters state the harness's runs:
//! generated, never typed.
//!
//! With `--harness DIR` the findings also compare the two instruments where
//! they measure the same thing (the runtimes' latency ranking and memory per
//! idle connection), and say where they agree and where they do not.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::axes::{Label, ScenarioKind, Transport};
use crate::report::format::{fmt_bytes, fmt_sig};
use crate::results::{Document, Provenance, utc_now};

/// The document's format, checked when a document is read.
pub const SCHEMA: &str = "rtlab-criterion/1";

/// The file name of the document inside its directory.
pub const FILE: &str = "criterion.json";

/// `rtlab criterion`: collect criterion's estimates into a results document
/// and render its tables, findings and claim verdicts.
#[derive(Debug, clap::Args)]
pub struct CriterionArgs {
    /// Criterion's output directory (`target/criterion`) to collect, or a
    /// directory that already holds a `criterion.json` to render again.
    pub source: PathBuf,
    /// Where to write the document and its rendering (default: the source
    /// when it holds a document, else `bench-results/<date>-criterion`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// A harness results directory to compare with (same machine, ideally).
    #[arg(long)]
    pub harness: Option<PathBuf>,
    /// Also write the markdown into this directory's `criterion/` (the
    /// book's `book/src/generated`).
    #[arg(long)]
    pub book: Option<PathBuf>,
}

// ANCHOR: document
/// Every criterion benchmark of one `cargo bench` run, with its provenance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CriterionDoc {
    /// [`SCHEMA`].
    pub schema: String,
    /// When the results were collected, UTC (RFC 3339); criterion's files
    /// carry no date of their own.
    pub collected: String,
    /// This command, the machine, the toolchain, the crates and the commit.
    #[serde(flatten)]
    pub provenance: Provenance,
    /// `/proc/loadavg`'s three load averages when the results were
    /// collected: criterion does not record how busy the machine was.
    pub load_avg: Vec<f64>,
    /// One entry per benchmark, sorted by id.
    pub benches: Vec<Bench>,
}

/// One criterion benchmark: its id, its estimates and its raw samples.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bench {
    /// `fanout/encode_once_shared/100`: group, function, parameter.
    pub id: String,
    pub group: String,
    pub function: Option<String>,
    pub parameter: Option<String>,
    /// `ns` (time per iteration) or `bytes` (the memory groups' own
    /// measurement: bytes per held connection).
    pub unit: String,
    /// Elements or bytes per iteration, when the bench declared them.
    pub throughput: Option<serde_json::Value>,
    pub mean: Estimate,
    pub median: Estimate,
    /// Per sample: the value of one iteration (total ÷ iterations).
    pub samples: Vec<f64>,
}

/// A point estimate with its confidence interval (criterion's bootstrap).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Estimate {
    pub point: f64,
    pub lower: f64,
    pub upper: f64,
    pub confidence: f64,
}
// ANCHOR_END: document

impl Estimate {
    /// True when the two intervals do not overlap: the only case in which
    /// the findings call two benchmarks different.
    pub fn separates(&self, other: &Estimate) -> bool {
        self.upper < other.lower || other.upper < self.lower
    }
}

impl CriterionDoc {
    /// Reads `dir/criterion.json` (or the file itself).
    pub fn read(path: &Path) -> std::io::Result<CriterionDoc> {
        let file = if path.is_dir() {
            path.join(FILE)
        } else {
            path.to_owned()
        };
        let doc: CriterionDoc = serde_json::from_slice(&std::fs::read(&file)?)
            .map_err(|e| std::io::Error::other(format!("{}: {e}", file.display())))?;
        if doc.schema != SCHEMA {
            return Err(std::io::Error::other(format!(
                "{}: schema {:?}, expected {SCHEMA:?}",
                file.display(),
                doc.schema
            )));
        }
        Ok(doc)
    }

    /// Collects every benchmark under criterion's output directory.
    pub fn collect(criterion_dir: &Path) -> std::io::Result<CriterionDoc> {
        let mut benches = Vec::new();
        let mut stack = vec![criterion_dir.to_owned()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir)? {
                let path = entry?.path();
                if path.is_dir() {
                    // `base` and `change` are earlier runs and comparisons; `report` is HTML.
                    if path.file_name().is_some_and(|n| n == "new") {
                        benches.push(read_bench(&path)?);
                    } else if !path
                        .file_name()
                        .is_some_and(|n| n == "base" || n == "change" || n == "report")
                    {
                        stack.push(path);
                    }
                }
            }
        }
        if benches.is_empty() {
            return Err(std::io::Error::other(format!(
                "no criterion results under {}: run `cargo bench` first",
                criterion_dir.display()
            )));
        }
        benches.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(CriterionDoc {
            schema: SCHEMA.to_owned(),
            collected: utc_now().1,
            provenance: Provenance::detect(),
            load_avg: std::fs::read_to_string("/proc/loadavg")
                .map(|s| {
                    s.split_whitespace()
                        .take(3)
                        .filter_map(|v| v.parse().ok())
                        .collect()
                })
                .unwrap_or_default(),
            benches,
        })
    }

    /// The benchmark with this id.
    pub fn bench(&self, id: &str) -> Option<&Bench> {
        self.benches.iter().find(|b| b.id == id)
    }

    /// The benchmarks of one group, in id order.
    pub fn group(&self, group: &str) -> impl Iterator<Item = &Bench> + '_ {
        let group = group.to_owned();
        self.benches.iter().filter(move |b| b.group == group)
    }
}

/// One benchmark from its `new/` directory.
fn read_bench(new: &Path) -> std::io::Result<Bench> {
    let json = |name: &str| -> std::io::Result<serde_json::Value> {
        let path = new.join(name);
        serde_json::from_slice(&std::fs::read(&path)?)
            .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))
    };
    let meta = json("benchmark.json")?;
    let est = json("estimates.json")?;
    let sample = json("sample.json")?;
    let text = |v: &serde_json::Value| v.as_str().map(str::to_owned);
    let estimate = |name: &str| -> std::io::Result<Estimate> {
        let e = &est[name];
        let f = |v: &serde_json::Value| {
            v.as_f64()
                .ok_or_else(|| std::io::Error::other(format!("{}: no {name}", new.display())))
        };
        Ok(Estimate {
            point: f(&e["point_estimate"])?,
            lower: f(&e["confidence_interval"]["lower_bound"])?,
            upper: f(&e["confidence_interval"]["upper_bound"])?,
            confidence: f(&e["confidence_interval"]["confidence_level"])?,
        })
    };
    let numbers = |v: &serde_json::Value| {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(serde_json::Value::as_f64)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    let (iters, totals) = (numbers(&sample["iters"]), numbers(&sample["times"]));
    let group = text(&meta["group_id"]).unwrap_or_default();
    Ok(Bench {
        id: text(&meta["full_id"]).unwrap_or_default(),
        unit: if group.starts_with("memory/") {
            "bytes"
        } else {
            "ns"
        }
        .to_owned(),
        group,
        function: text(&meta["function_id"]),
        parameter: text(&meta["value_str"]),
        throughput: meta.get("throughput").filter(|t| !t.is_null()).cloned(),
        mean: estimate("mean")?,
        median: estimate("median")?,
        samples: iters
            .iter()
            .zip(&totals)
            .map(|(i, t)| t / i.max(1.0))
            .collect(),
    })
}

/// A value in the bench's unit, three significant digits: "1.23 µs", "812 B".
fn fmt_value(unit: &str, v: f64) -> String {
    if unit == "bytes" {
        fmt_bytes(v)
    } else if v < 1e3 {
        format!("{} ns", fmt_sig(v))
    } else if v < 1e6 {
        format!("{} µs", fmt_sig(v / 1e3))
    } else {
        format!("{} ms", fmt_sig(v / 1e6))
    }
}

/// `median (lower – upper)`: the median and its confidence interval.
fn fmt_estimate(b: &Bench) -> String {
    format!(
        "{} ({} – {})",
        fmt_value(&b.unit, b.median.point),
        fmt_value(&b.unit, b.median.lower),
        fmt_value(&b.unit, b.median.upper)
    )
}

/// `tables/criterion.md`: every benchmark, one row each, grouped.
pub fn table(doc: &CriterionDoc) -> String {
    let mut out = String::from(
        "| group | benchmark | median (its 95% interval) | samples |\n|---|---|---|---:|\n",
    );
    for b in &doc.benches {
        let name = [b.function.as_deref(), b.parameter.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" / ");
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} |",
            b.group,
            name,
            fmt_estimate(b),
            b.samples.len()
        );
    }
    out
}

/// Encode once and share, against encode per subscriber, at each size both
/// ran: the ratio of their medians, stated only where the intervals separate.
pub fn encode_once(doc: &CriterionDoc) -> Option<String> {
    let mut lines = Vec::new();
    for once in doc
        .group("fanout")
        .filter(|b| b.function.as_deref() == Some("encode_once_shared"))
    {
        let n = once.parameter.as_deref()?;
        let Some(per) = doc.bench(&format!("fanout/encode_per_subscriber/{n}")) else {
            continue;
        };
        let subs: f64 = n.parse().ok()?;
        lines.push(if once.median.separates(&per.median) {
            format!(
                "At {n} subscribers, encoding once and sharing the bytes took {} per publish ({} per subscriber); encoding per subscriber took {} ({} per subscriber), {} times as long.",
                fmt_value("ns", once.median.point),
                fmt_value("ns", once.median.point / subs),
                fmt_value("ns", per.median.point),
                fmt_value("ns", per.median.point / subs),
                fmt_sig(per.median.point / once.median.point),
            )
        } else {
            format!("At {n} subscribers, no difference was measured between encoding once and encoding per subscriber (their intervals overlap).")
        });
    }
    (!lines.is_empty()).then(|| lines.join(" "))
}

/// The claim "the event loop blocks because you're serializing JSON for
/// 50,000 clients": what encoding per subscriber costs at the largest size,
/// extrapolated to no more clients than the claim names, and what sharing saves.
pub fn encode_once_verdict(doc: &CriterionDoc) -> Option<String> {
    const CLAIMED_CLIENTS: f64 = 50_000.0;
    let (once, per) = doc
        .group("fanout")
        .filter(|b| b.function.as_deref() == Some("encode_once_shared"))
        .filter_map(|once| {
            let n = once.parameter.as_deref()?;
            Some((
                once,
                doc.bench(&format!("fanout/encode_per_subscriber/{n}"))?,
                n.parse::<f64>().ok()?,
            ))
        })
        .max_by(|a, b| a.2.total_cmp(&b.2))
        .map(|(o, p, n)| ((o, n), (p, n)))?;
    let ((once, n), (per, _)) = (once, per);
    if !once.median.separates(&per.median) {
        return Some(format!(
            "**does not hold** on this machine: at {n} subscribers the core's criterion bench measured no difference between encoding once and per subscriber."
        ));
    }
    let per_sub = per.median.point / n;
    let blocked = per_sub * CLAIMED_CLIENTS;
    Some(format!(
        "**holds in part**: encoding per subscriber cost {} per subscriber at {n} subscribers, {} times encoding once and sharing; at the claim's {} clients that is about {} of one core's time per publish (a linear extrapolation), which sharing one encoding removes. \"Blocks\" depends on the publish rate: the loop is busy that long per message.",
        fmt_value("ns", per_sub),
        fmt_sig(per.median.point / once.median.point),
        crate::report::format::fmt_int(CLAIMED_CLIENTS),
        fmt_value("ns", blocked),
    ))
}

/// The smallest size a scenario ran at for one transport in a harness run.
fn smallest(harness: &Document, scenario: ScenarioKind, transport: Transport) -> Option<u64> {
    harness
        .cells_of(scenario)
        .filter(|c| c.transport == transport)
        .filter_map(|c| if let Label::Size(n) = c.label { Some(n) } else { None })
        .min()
}

/// Where the two instruments measure the same thing: the runtimes' order by
/// latency, and memory per idle connection, each side by side.
pub fn against_harness(doc: &CriterionDoc, harness: &Document) -> Vec<String> {
    let mut out = Vec::new();
    for (transport, name) in [(Transport::Sse, "sse"), (Transport::Ws, "ws")] {
        // Latency: criterion's mean per publish to a few subscribers, the harness's
        // last-subscriber p50 at its smallest fan-out size.
        let crit: Vec<(&str, &Bench)> = doc
            .group(&format!("latency/{name}"))
            .filter_map(|b| Some((b.parameter.as_deref().or(b.function.as_deref())?, b)))
            .collect();
        let Some(size) = smallest(harness, ScenarioKind::Fanout, transport) else { continue };
        let mut both: Vec<(&str, f64, f64)> = crit
            .iter()
            .filter_map(|(rt, b)| {
                let cell = harness.cells_of(ScenarioKind::Fanout).find(|c| {
                    c.runtime == *rt && c.transport == transport && c.label == Label::Size(size)
                })?;
                Some((*rt, b.median.point, cell.mean("last_p50_us")?))
            })
            .collect();
        if both.len() < 2 {
            continue;
        }
        both.sort_by(|a, b| a.1.total_cmp(&b.1));
        let by_crit: Vec<&str> = both.iter().map(|b| b.0).collect();
        let mut by_harness = both.clone();
        by_harness.sort_by(|a, b| a.2.total_cmp(&b.2));
        let by_harness: Vec<&str> = by_harness.iter().map(|b| b.0).collect();
        // How many of criterion's neighbouring pairs its intervals separate.
        let benches: Vec<&Bench> = by_crit.iter().filter_map(|rt| crit.iter().find(|(r, _)| r == rt).map(|(_, b)| *b)).collect();
        let separated = benches.windows(2).filter(|w| w[0].median.separates(&w[1].median)).count();
        let first = |v: &[&str]| v.first().copied().unwrap_or_default().to_owned();
        let agreement = if by_crit == by_harness {
            "both instruments rank the runtimes the same way".to_owned()
        } else if first(&by_crit) == first(&by_harness) {
            format!("both instruments put {} first and order the rest differently", first(&by_crit))
        } else {
            "the instruments disagree on the order".to_owned()
        };
        out.push(format!(
            "{} latency: {agreement} (criterion, a publish to a few subscribers: {}; the harness's last-subscriber median at {size} subscribers: {}). Criterion's intervals separate {separated} of the {} neighbouring pairs in its order, so {}.",
            name.to_uppercase(),
            by_crit.join(", "),
            by_harness.join(", "),
            benches.len().saturating_sub(1),
            if separated + 1 == benches.len() {
                "its order is measured, not noise"
            } else if separated == 0 {
                "none of its order is measured: every step is within its own uncertainty"
            } else {
                "the rest of its order is within its own uncertainty"
            },
        ));
    }
    // Memory: criterion's bytes per held connection against the harness's idle
    // user bytes per connection at its smallest size.
    for (transport, name) in [(Transport::Sse, "sse"), (Transport::Ws, "ws")] {
        let Some(size) = smallest(harness, ScenarioKind::Idle, transport) else { continue };
        let pairs: Vec<String> = doc
            .group(&format!("memory/{name}"))
            .filter_map(|b| {
                let rt = b.parameter.as_deref().or(b.function.as_deref())?;
                let cell = harness.cells_of(ScenarioKind::Idle).find(|c| {
                    c.runtime == rt && c.transport == transport && c.label == Label::Size(size)
                })?;
                let h = cell.mean("user_bytes_per_conn")?;
                Some(format!(
                    "{rt} {} against {} ({}×)",
                    fmt_bytes(b.median.point),
                    fmt_bytes(h),
                    fmt_sig(b.median.point / h)
                ))
            })
            .collect();
        if !pairs.is_empty() {
            out.push(format!(
                "{} memory per idle connection, criterion (about a thousand connections from one process) against the harness at {size}: {}.",
                name.to_uppercase(),
                pairs.join("; ")
            ));
        }
    }
    out
}

/// `rtlab criterion SOURCE [--out DIR] [--harness DIR] [--book DIR]`.
pub fn run(args: &CriterionArgs) -> std::io::Result<()> {
    let existing = args.source.join(FILE).is_file();
    let doc = if existing {
        CriterionDoc::read(&args.source)?
    } else {
        CriterionDoc::collect(&args.source)?
    };
    let out = match (&args.out, existing) {
        (Some(out), _) => out.clone(),
        (None, true) => args.source.clone(),
        (None, false) => PathBuf::from("bench-results").join(format!("{}-criterion", utc_now().0)),
    };
    std::fs::create_dir_all(&out)?;
    if !existing || args.out.is_some() {
        std::fs::write(
            out.join(FILE),
            serde_json::to_string_pretty(&doc).map_err(std::io::Error::other)? + "\n",
        )?;
    }
    let harness = args.harness.as_deref().map(Document::read).transpose()?;
    let files = render(&doc, harness.as_ref());
    for root in std::iter::once(out.clone()).chain(args.book.as_ref().map(|b| b.join("criterion")))
    {
        for (name, text) in &files {
            let path = root.join(name);
            std::fs::create_dir_all(path.parent().unwrap_or(&root))?;
            std::fs::write(path, text)?;
        }
    }
    println!(
        "{}",
        files.first().map(|f| f.1.as_str()).unwrap_or_default()
    );
    println!(
        "{} benchmarks; wrote {} files under {}",
        doc.benches.len(),
        files.len(),
        out.display()
    );
    Ok(())
}

/// Every markdown file of the rendering, by path relative to its root.
pub fn render(doc: &CriterionDoc, harness: Option<&Document>) -> Vec<(PathBuf, String)> {
    let mut files = vec![(PathBuf::from("tables/criterion.md"), table(doc))];
    let mut findings = Vec::new();
    if let Some(s) = encode_once(doc) {
        findings.push(s);
    }
    if let Some(h) = harness {
        findings.extend(against_harness(doc, h));
    }
    let load = match doc.load_avg.as_slice() {
        [one, five, _] => format!(
            " The load average when collected was {} (1 min) and {} (5 min) on {} cores{}.",
            fmt_sig(*one),
            fmt_sig(*five),
            doc.provenance.machine.cores,
            if *five > doc.provenance.machine.cores as f64 {
                ": the machine was busy with other work, so absolute times are inflated; ratios measured in the same run are what to read"
            } else {
                ""
            }
        ),
        _ => String::new(),
    };
    let provenance = format!(
        "Collected {} from `target/criterion` at commit {}{}, {}, {} cores, {}.{load}",
        doc.collected,
        doc.provenance
            .git
            .commit
            .as_deref()
            .map_or("unknown", |c| &c[..c.len().min(7)]),
        if doc.provenance.git.dirty {
            " with uncommitted changes"
        } else {
            ""
        },
        doc.provenance.toolchain.rustc,
        doc.provenance.machine.cores,
        doc.provenance.machine.cpu_model,
    );
    findings.push(provenance);
    files.push((
        PathBuf::from("findings/criterion.md"),
        findings
            .iter()
            .map(|f| format!("{f}\n"))
            .collect::<Vec<_>>()
            .join("\n"),
    ));
    let verdict = encode_once_verdict(doc)
        .unwrap_or_else(|| "**not yet measured**: the run holds no `fanout` group.".to_owned());
    // One line, no trailing newline: it is included inside a table cell.
    files.push((
        PathBuf::from("claims/encode-once.md"),
        verdict.replace('|', "\\|"),
    ));
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bench(id: &str, point: f64, lower: f64, upper: f64) -> Bench {
        let parts: Vec<&str> = id.split('/').collect();
        Bench {
            id: id.to_owned(),
            group: parts[0].to_owned(),
            function: parts.get(1).map(|s| (*s).to_owned()),
            parameter: parts.get(2).map(|s| (*s).to_owned()),
            unit: "ns".to_owned(),
            throughput: None,
            mean: Estimate {
                point,
                lower,
                upper,
                confidence: 0.95,
            },
            median: Estimate {
                point,
                lower,
                upper,
                confidence: 0.95,
            },
            samples: vec![point],
        }
    }

    fn doc(benches: Vec<Bench>) -> CriterionDoc {
        CriterionDoc {
            schema: SCHEMA.to_owned(),
            collected: "2026-12-03T19:00:00Z".to_owned(),
            provenance: Provenance::default(),
            load_avg: vec![],
            benches,
        }
    }

    #[test]
    fn encode_once_states_a_ratio_only_when_intervals_separate() {
        let d = doc(vec![
            bench(
                "fanout/encode_once_shared/1000",
                10_000.0,
                9_000.0,
                11_000.0,
            ),
            bench(
                "fanout/encode_per_subscriber/1000",
                400_000.0,
                390_000.0,
                410_000.0,
            ),
        ]);
        let s = encode_once(&d).unwrap();
        assert!(s.contains("40.0 times as long"), "{s}");
        let v = encode_once_verdict(&d).unwrap();
        assert!(v.starts_with("**holds in part**"), "{v}");
        // 400 ns per subscriber × 50,000 = 20 ms.
        assert!(v.contains("20.0 ms"), "{v}");

        let same = doc(vec![
            bench("fanout/encode_once_shared/100", 10_000.0, 9_000.0, 11_000.0),
            bench(
                "fanout/encode_per_subscriber/100",
                10_500.0,
                10_000.0,
                12_000.0,
            ),
        ]);
        assert!(
            encode_once(&same)
                .unwrap()
                .contains("no difference was measured")
        );
        assert!(
            encode_once_verdict(&same)
                .unwrap()
                .starts_with("**does not hold**")
        );
        assert!(encode_once(&doc(vec![])).is_none());
    }

    #[test]
    fn collects_criterion_output() {
        let root = std::env::temp_dir().join(format!("rtlab-criterion-{}", std::process::id()));
        let new = root
            .join("fanout")
            .join("encode_once_shared")
            .join("100")
            .join("new");
        std::fs::create_dir_all(&new).unwrap();
        std::fs::create_dir_all(
            root.join("fanout")
                .join("encode_once_shared")
                .join("100")
                .join("base"),
        )
        .unwrap();
        std::fs::write(
            new.join("benchmark.json"),
            r#"{"group_id":"fanout","function_id":"encode_once_shared","value_str":"100","throughput":{"Elements":100},"full_id":"fanout/encode_once_shared/100","directory_name":"fanout/encode_once_shared/100","title":"fanout/encode_once_shared/100"}"#,
        )
        .unwrap();
        let e = r#"{"confidence_interval":{"confidence_level":0.95,"lower_bound":1.0,"upper_bound":3.0},"point_estimate":2.0,"standard_error":0.1}"#;
        std::fs::write(
            new.join("estimates.json"),
            format!(
                r#"{{"mean":{e},"median":{e},"median_abs_dev":{e},"slope":null,"std_dev":{e}}}"#
            ),
        )
        .unwrap();
        std::fs::write(
            new.join("sample.json"),
            r#"{"sampling_mode":"Linear","iters":[1.0,2.0],"times":[2.0,6.0]}"#,
        )
        .unwrap();
        let d = CriterionDoc::collect(&root).unwrap();
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(d.benches.len(), 1);
        let b = &d.benches[0];
        assert_eq!(b.id, "fanout/encode_once_shared/100");
        assert_eq!(b.parameter.as_deref(), Some("100"));
        assert_eq!(b.samples, vec![2.0, 3.0]);
        assert_eq!((b.mean.lower, b.mean.point, b.mean.upper), (1.0, 2.0, 3.0));
        assert!(table(&d).contains("encode_once_shared / 100"));
    }
}
