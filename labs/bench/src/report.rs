//! `rtlab report <dir>`: SVG plots and markdown tables from a results
//! document.
//!
//! Writes `<dir>/tables/*.md`, `<dir>/findings/*.md`, `<dir>/params/*.md`,
//! `<dir>/claims/*.md` (each claim's verdict alone), `<dir>/plots/*.svg` and
//! `<dir>/report.md` (every table with its findings,
//! and every plot, on one page). With `--book DIR` (the committed run uses
//! `book/src/generated`) the same files are also written there, because
//! mdbook only publishes files under `book/src`: the book's chapters include
//! `generated/tables/*.md` and `generated/findings/*.md`, inline
//! `generated/params/*.md` in their sentences and show
//! `generated/plots/*.svg`, so every number and every finding in the book
//! comes from this generator, never typed (`scripts/check-digits.py` checks
//! the prose).
//!
//! File names do not depend on which labs ran (a plot per transport or
//! policy, one line or bar per lab), so the chapters can name them; a plot
//! with no data says so. Each runtime has one fixed colour in every plot
//! ([`RUNTIME_COLOURS`]). Values are the mean of the repeated runs, shown
//! with their spread ((max − min) / mean); bars carry a min–max whisker.
//!
//! | module | concern |
//! |---|---|
//! | this one | the command: reading the document, writing the files, the page that shows them all; the runtimes' colours |
//! | [`tables`] | the markdown tables |
//! | [`notes`] | sentences computed from the data, under the tables |
//! | [`findings`] | what the data shows beside each table: rankings, ratios, crossovers, which limit stopped a lab; a difference only where the runs' ranges do not overlap |
//! | [`claims`] | the claims table: each claim, what tests it, its verdict in this run |
//! | [`guide`] | the conclusion's decision guide and the labs' scorecard |
//! | [`lifecycle`] | the connection's life: the herd (`rtlab bench reconnect`) and dead peers (`rtlab bench zombies`), from their own result files |
//! | [`params`] | the run's parameters as inline snippets for the chapters' sentences |
//! | [`plots`] | the plot catalogue: which SVG files, showing what |
//! | [`charts`] | drawing bar and line charts (plotters) |
//! | [`format`](mod@format) | how numbers are written |

pub mod charts;
pub mod claims;
pub mod distance;
pub mod findings;
pub mod format;
pub mod guide;
pub mod lifecycle;
pub mod notes;
pub mod params;
pub mod plots;
pub mod tables;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::style::RGBColor;

pub use self::format::{fmt_bytes, fmt_count, fmt_int, fmt_sig, fmt_us};
pub use self::tables::table_text;
use crate::results::Document;

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
pub const RUNTIME_COLOURS: [(&str, RGBColor); 6] = [
    ("tokio", RGBColor(31, 119, 180)),
    ("mio", RGBColor(255, 127, 14)),
    ("may", RGBColor(44, 160, 44)),
    ("threads", RGBColor(214, 39, 40)),
    ("axum", RGBColor(148, 103, 189)),
    // The floor (the harness's raw-socket server): black, the reference.
    ("floor", RGBColor(0, 0, 0)),
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
    // A directory of lifecycle results (herd, zombies) has no matrix document.
    let found = lifecycle::Lifecycle::read(&args.dir)?;
    if !found.is_empty() && !args.dir.join("results.json").exists() {
        let files = lifecycle::write(&found, &args.dir)?;
        if let Some(book) = &args.book {
            lifecycle::write(&found, book)?;
        }
        println!("wrote {} files under {}", files.len(), args.dir.display());
        return Ok(());
    }
    if crate::expiry::is_expiry(&args.dir) {
        // The expiry spike keeps a document of its own (`expiry.json`).
        let doc = crate::expiry::read(&args.dir)?;
        let dir = if args.dir.is_dir() { args.dir.clone() } else { args.dir.parent().map(Path::to_owned).unwrap_or_default() };
        crate::expiry::report::render(&doc, &dir, args.book.as_deref())?;
        println!("{}", crate::expiry::report::table(&doc));
        return Ok(());
    }
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

/// Renders every table, finding, parameter and plot of `doc` into `dir`
/// (and `book`).
pub fn render(doc: &Document, dir: &Path, book: Option<&Path>) -> std::io::Result<Rendered> {
    let tables = pages(doc);
    let findings = findings(doc);
    let params = params::snippets(doc);
    let verdicts = claims::verdicts(doc);
    let plots_dir = dir.join("plots");
    std::fs::create_dir_all(&plots_dir)?;
    // Every markdown file, relative to the results directory (and the book's).
    let markdown: Vec<(PathBuf, &str)> = [("tables", &tables), ("findings", &findings), ("params", &params), ("claims", &verdicts)]
        .into_iter()
        .flat_map(|(sub, list)| list.iter().map(move |(name, text)| (PathBuf::from(sub).join(format!("{name}.md")), text.as_str())))
        .collect();
    let mut files = Vec::new();
    for root in std::iter::once(dir).chain(book) {
        for (path, text) in &markdown {
            let path = root.join(path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, text)?;
        }
    }
    files.extend(markdown.iter().map(|(path, _)| path.clone()));
    let plots = plots::plots(doc, &plots_dir).map_err(|e| std::io::Error::other(format!("plotting: {e}")))?;
    for name in &plots {
        files.push(PathBuf::from("plots").join(name));
    }
    let mut page = String::from("# rtlab benchmark report\n\n");
    for (name, text) in &tables {
        let _ = writeln!(page, "## {name}\n\n{text}");
        if let Some((_, f)) = findings.iter().find(|(n, _)| n == name) {
            let _ = writeln!(page, "Findings:\n\n{f}");
        }
    }
    for (name, text) in findings.iter().filter(|(n, _)| !tables.iter().any(|(t, _)| t == n)) {
        let _ = writeln!(page, "## {name}\n\n{text}");
    }
    page.push_str("## plots\n\n");
    for name in &plots {
        let _ = writeln!(page, "![{name}](plots/{name})\n");
    }
    std::fs::write(dir.join("report.md"), page)?;
    files.push(PathBuf::from("report.md"));
    if let Some(book) = book {
        std::fs::create_dir_all(book.join("plots"))?;
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

/// Every table and note, named as its file (`tables/<name>.md`), in the
/// order of the report's page.
fn pages(doc: &Document) -> Vec<(String, String)> {
    [
        ("run", tables::run_table(doc)),
        ("idle", tables::idle_table(doc)),
        ("idle-notes", notes::idle_notes(doc)),
        ("fanout", tables::fanout_table(doc)),
        ("saturation", tables::saturation_table(doc)),
        ("knee", tables::knee_table(doc)),
        ("fanout-notes", notes::fanout_notes(doc)),
        ("backpressure", tables::backpressure_table(doc)),
        ("backpressure-notes", notes::backpressure_notes(doc)),
        ("polling", tables::polling_table(doc)),
        ("polling-notes", notes::polling_notes(doc)),
        ("conditions", tables::conditions_table(doc)),
        ("failures", tables::failures_table(doc)),
        ("claims", claims::claims_table(doc)),
    ]
    .into_iter()
    .map(|(name, text)| (name.to_owned(), text))
    .collect()
}

/// Every findings file (`findings/<name>.md`): those named as a table go
/// beside it on the report's page, the others after the tables.
fn findings(doc: &Document) -> Vec<(String, String)> {
    [
        ("idle", findings::idle(doc)),
        ("fanout", findings::fanout(doc)),
        ("saturation", findings::saturation(doc)),
        ("backpressure", findings::backpressure(doc)),
        ("polling", findings::polling(doc)),
        ("targets-mio", findings::targets_mio(doc)),
        ("targets-may-threads", findings::targets_may_threads(doc)),
        ("distance", distance::distance(doc)),
        ("guide", guide::guide(doc)),
        ("scorecard", guide::scorecard(doc)),
    ]
    .into_iter()
    .map(|(name, text)| {
        let text = if text.is_empty() { "Nothing to compare in this results document.\n".to_owned() } else { text };
        (name.to_owned(), text)
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours() {
        let all = vec!["tokio".to_owned(), "zeta".to_owned()];
        assert_eq!(colour("tokio", &all), RUNTIME_COLOURS[0].1);
        assert_eq!(colour("zeta", &all), SPARE_COLOURS[0]);
    }
}
