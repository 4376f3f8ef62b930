//! What a retained message costs (`rtlab retained`): the core's `retained`
//! example (`labs/core/examples/retained.rs`) built from two commits — the
//! core that encoded every message for all three transports up front, and
//! one that keeps the data once and encodes on first use — run in turn, a
//! few times each, and the figures kept as a results document with its
//! provenance. The example fills a topic's retention with 1 KiB messages and
//! reads the process's resident anonymous memory and live heap per message
//! after each of three steps (nobody read them; a poll read them; SSE and
//! WebSocket subscribers read them too); this module runs it, keeps every
//! run and renders the table the book includes.

use std::fmt::Write as _;
use std::io;
use std::path::PathBuf;
use std::process::Command;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::report::format::{fmt_bytes, fmt_int};
use crate::results::{Provenance, Stat, utc_now};

/// The document's format, checked when a document is read.
pub const SCHEMA: &str = "rtlab-retained/1";

/// The file name of the document inside its directory.
pub const FILE: &str = "retained.json";

/// The example's steps, in order, with what each means.
const STAGES: [(&str, &str); 3] = [
    ("retained", "published, read by nobody"),
    ("polled", "after one poll read them all"),
    ("all_transports", "after a poll, an SSE and a WebSocket subscriber read them all"),
];

/// `rtlab retained`: run the `retained` example built before and after,
/// in turn, and keep the figures.
#[derive(Debug, Clone, clap::Args)]
pub struct RetainedArgs {
    /// The example built from the core before the change (`target/release/examples/retained` of that checkout).
    #[arg(long)]
    pub before: Option<PathBuf>,
    /// The example built from this tree.
    #[arg(long)]
    pub after: Option<PathBuf>,
    /// Messages retained (the topic's retention is set to this).
    #[arg(long, default_value_t = 20_000)]
    pub messages: usize,
    /// Runs of each build, alternating.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// The document (default `bench-results/retained`) and its rendering
    /// (under `retained/` of `--book`).
    #[command(flatten)]
    pub output: crate::results::Output,
}

/// One build's runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Build {
    /// The example binary that ran.
    pub exe: String,
    /// The commit it was built from, and whether that tree had changes.
    pub commit: String,
    pub dirty: bool,
    /// Every run's output, as the example printed it.
    pub runs: Vec<Value>,
}

/// The results document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RetainedDoc {
    /// [`SCHEMA`].
    pub schema: String,
    /// When the runs began (RFC 3339, UTC).
    pub started: String,
    #[serde(flatten)]
    pub provenance: Provenance,
    /// The run's conditions in words, measured
    /// ([`crate::results::conditions`]; the name is older than the measurement).
    pub shared_machine: String,
    pub messages: usize,
    pub data_bytes: usize,
    pub before: Build,
    pub after: Build,
}

/// `rtlab retained`.
pub fn run(args: &RetainedArgs) -> io::Result<()> {
    let book = args.output.book.as_ref().map(|b| b.join("retained"));
    if let Some(dir) = &args.output.render {
        let doc: RetainedDoc = crate::results::read_document(dir, FILE, SCHEMA)?;
        return crate::results::write_rendering(&render(&doc), dir, book);
    }
    let (Some(before), Some(after)) = (&args.before, &args.after) else {
        return Err(io::Error::other("give --before and --after (the example's two builds), or --render DIR"));
    };
    let provenance = Provenance::detect();
    let busy0 = crate::results::busy_before();
    let load0 = crate::procfs::loadavg();
    let (_, started) = utc_now();
    let mut builds = [before, after].map(|exe| Build { exe: exe.display().to_string(), commit: String::new(), dirty: false, runs: Vec::new() });
    for run in 0..args.runs {
        for build in &mut builds {
            let output = Command::new(&build.exe).arg(args.messages.to_string()).output()?;
            if !output.status.success() {
                return Err(io::Error::other(format!("{} failed: {}", build.exe, String::from_utf8_lossy(&output.stderr))));
            }
            let v: Value = serde_json::from_slice(&output.stdout).map_err(io::Error::other)?;
            build.commit = v["commit"].as_str().unwrap_or_default().to_owned();
            build.dirty = v["dirty"].as_bool().unwrap_or(true);
            crate::say(&format!("run {}: {}: {}", run + 1, build.exe, v["stages"]));
            build.runs.push(v);
        }
    }
    let [before, after] = builds;
    let conditions = crate::results::conditions(busy0, provenance.machine.cores, (load0, crate::procfs::loadavg()));
    let doc = RetainedDoc {
        schema: SCHEMA.to_owned(),
        started,
        provenance,
        shared_machine: conditions,
        messages: args.messages,
        data_bytes: before.runs.first().and_then(|v| v["data_bytes"].as_u64()).unwrap_or(0) as usize,
        before,
        after,
    };
    let dir = args.output.out.clone().unwrap_or_else(|| PathBuf::from("bench-results").join("retained"));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join(FILE), serde_json::to_string_pretty(&doc).map_err(io::Error::other)? + "\n")?;
    crate::results::write_rendering(&render(&doc), &dir, book)
}

/// The median over a build's runs of one stage's figure (`rss_anon` or `heap`).
fn figure(build: &Build, stage: &str, what: &str) -> Option<Stat> {
    let key = format!("{what}_per_message");
    let values: Vec<f64> = build
        .runs
        .iter()
        .filter_map(|v| v["stages"].as_array()?.iter().find(|s| s["stage"] == stage)?["per_message"][&key].as_f64())
        .collect();
    (!values.is_empty()).then(|| Stat::of(values))
}

/// The table and the finding, as (file name, markdown).
fn render(doc: &RetainedDoc) -> Vec<(String, String)> {
    let short = |b: &Build| format!("`{}`{}", b.commit.get(..7).unwrap_or(&b.commit), if b.dirty { " (with changes)" } else { "" });
    let mut table = format!(
        "Resident anonymous memory (`RssAnon`) and live heap per retained message of {}, {} messages in one topic, \
         median of {} runs per build; before: {}, after: {}.\n\n\
         | retained messages … | resident before | resident after | heap before | heap after |\n|---|--:|--:|--:|--:|\n",
        fmt_bytes(doc.data_bytes as f64),
        fmt_int(doc.messages as f64),
        doc.before.runs.len().min(doc.after.runs.len()),
        short(&doc.before),
        short(&doc.after),
    );
    let cell = |b: &Build, stage: &str, what: &str| figure(b, stage, what).map_or("—".to_owned(), |s| fmt_bytes(s.median()));
    for (stage, what) in STAGES {
        let _ = writeln!(
            table,
            "| {what} | {} | {} | {} | {} |",
            cell(&doc.before, stage, "rss_anon"),
            cell(&doc.after, stage, "rss_anon"),
            cell(&doc.before, stage, "heap"),
            cell(&doc.after, stage, "heap"),
        );
    }
    let ratio = |stage: &str| {
        let (b, a) = (figure(&doc.before, stage, "rss_anon")?, figure(&doc.after, stage, "rss_anon")?);
        Some((b.median(), a.median()))
    };
    let finding = match (ratio("retained"), ratio("all_transports")) {
        (Some((b0, a0)), Some((b1, a1))) => format!(
            "A retained message that nobody reads takes {} of resident memory after the change, against {} before \
             ({} of it). Once subscribers of all three transports have read it, it holds the three encodings, \
             as before: {} against {} ({} of it).\n",
            fmt_bytes(a0),
            fmt_bytes(b0),
            percent(a0 / b0),
            fmt_bytes(a1),
            fmt_bytes(b1),
            percent(a1 / b1),
        ),
        _ => "The document has no runs of both builds.\n".to_owned(),
    };
    vec![("table.md".to_owned(), table), ("finding.md".to_owned(), finding)]
}

fn percent(fraction: f64) -> String {
    format!("{}%", fmt_int(fraction * 100.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(commit: &str, per_stage: [f64; 3]) -> Build {
        let stages: Vec<Value> = STAGES
            .iter()
            .zip(per_stage)
            .map(|((stage, _), v)| serde_json::json!({"stage": stage, "per_message": {"rss_anon_per_message": v, "heap_per_message": v - 20.0}}))
            .collect();
        Build { exe: "x".into(), commit: commit.into(), dirty: false, runs: vec![serde_json::json!({"stages": stages})] }
    }

    #[test]
    fn renders_medians_and_the_finding_from_the_runs() {
        let doc = RetainedDoc {
            schema: SCHEMA.into(),
            started: String::new(),
            provenance: Provenance::default(),
            shared_machine: String::new(),
            messages: 20_000,
            data_bytes: 1024,
            before: build("8870803abc", [3400.0, 3400.0, 3450.0]),
            after: build("1234567def", [1240.0, 2300.0, 4600.0]),
        };
        let files = render(&doc);
        let table = &files[0].1;
        assert!(table.contains("| published, read by nobody | 3,400 B | 1,240 B | 3,380 B | 1,220 B |"), "{table}");
        assert!(table.contains("`8870803`") && table.contains("`1234567`"));
        let finding = &files[1].1;
        assert!(finding.starts_with("A retained message that nobody reads takes 1,240 B of resident memory after the change, against 3,400 B before (36% of it)"), "{finding}");
        assert!(finding.contains("4,600 B against 3,450 B (133% of it)"), "{finding}");
    }
}
