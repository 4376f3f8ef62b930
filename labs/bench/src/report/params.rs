//! The run's parameters as inline snippets (`params/<name>.md`), so that a
//! chapter's prose says "at {{#include generated/params/fanout-sizes.md}}
//! subscribers" instead of typing sizes that the next run may change.
//!
//! Each snippet is a bare value with no trailing newline ("100, 1,000 and
//! 10,000"; "20,000"; "4 KiB"), to be included in the middle of a sentence.
//! A value the document does not have is written "(not in this run)".

use super::findings::{and_list, ceilings, fmt_num, sizes};
use super::format::fmt_int;
use crate::axes::{ScenarioKind, Transport};
use crate::results::Document;

/// What a snippet says when the document lacks the value.
pub const MISSING: &str = "(not in this run)";

/// Bytes as a chapter says them: "64 bytes", "4 KiB", "1 MiB".
pub fn fmt_size(bytes: u64) -> String {
    const KIB: u64 = 1024;
    if bytes >= KIB * KIB && bytes % (KIB * KIB) == 0 {
        format!("{} MiB", fmt_int((bytes / KIB / KIB) as f64))
    } else if bytes >= KIB && bytes % KIB == 0 {
        format!("{} KiB", fmt_int((bytes / KIB) as f64))
    } else {
        format!("{} bytes", fmt_int(bytes as f64))
    }
}

/// A scenario's option from the first of its cells that has it.
fn cell_param(doc: &Document, scenario: ScenarioKind, key: &str) -> Option<u64> {
    doc.cells_of(scenario).find_map(|c| c.params.get(key)?.as_u64())
}

/// Every snippet: (file name without `.md`, text).
pub fn snippets(doc: &Document) -> Vec<(String, String)> {
    let p = &doc.parameters;
    let num = |key: &str| p.get(key).and_then(|v| v.as_f64()).map_or(MISSING.to_owned(), fmt_num);
    // The sizes a scenario ran at, over any transport, ascending.
    let all = |scenario: ScenarioKind| {
        let mut s: Vec<u64> = Transport::ALL.iter().flat_map(|&t| sizes(doc, scenario, t)).collect();
        s.sort_unstable();
        s.dedup();
        s
    };
    let list = |scenario: ScenarioKind| {
        let s: Vec<String> = all(scenario).into_iter().map(|n| fmt_int(n as f64)).collect();
        if s.is_empty() { MISSING.to_owned() } else { and_list(&s) }
    };
    let last = |scenario: ScenarioKind| all(scenario).last().map_or(MISSING.to_owned(), |n| fmt_int(*n as f64));
    let first = |scenario: ScenarioKind| all(scenario).first().map_or(MISSING.to_owned(), |n| fmt_int(*n as f64));
    let size = |scenario: ScenarioKind, key: &str| cell_param(doc, scenario, key).map_or(MISSING.to_owned(), fmt_size);
    let m = &doc.machine;
    let mut out: Vec<(String, String)> = vec![
        ("repeats".into(), num("repeats")),
        ("idle-sizes".into(), list(ScenarioKind::Idle)),
        ("idle-largest".into(), last(ScenarioKind::Idle)),
        ("fanout-sizes".into(), list(ScenarioKind::Fanout)),
        ("fanout-smallest".into(), first(ScenarioKind::Fanout)),
        ("fanout-largest".into(), last(ScenarioKind::Fanout)),
        ("fanout-messages".into(), num("fanout_messages")),
        ("fanout-interval".into(), p.get("fanout_interval_ms").and_then(|v| v.as_f64()).map_or(MISSING.to_owned(), |v| format!("{} ms", fmt_num(v)))),
        ("fanout-message-size".into(), size(ScenarioKind::Fanout, "size")),
        ("fanout-max-rate".into(), num("fanout_max_rate")),
        ("knee-subscribers".into(), num("knee_subscribers")),
        ("knee-messages".into(), num("knee_messages")),
        ("knee-start".into(), num("knee_start")),
        ("knee-factor".into(), p.get("knee_factor").and_then(|v| v.as_f64()).map_or(MISSING.to_owned(), |v| format!("{}×", fmt_num(v)))),
        ("knee-bound".into(), p.get("knee_bound_ms").and_then(|v| v.as_f64()).map_or(MISSING.to_owned(), |v| format!("{} ms", fmt_num(v)))),
        ("placement-mode".into(), p.get("placement").and_then(|v| v.as_str()).unwrap_or("pinned").to_owned()),
        ("bp-fast".into(), num("bp_fast")),
        ("bp-stalled".into(), num("bp_stalled")),
        ("bp-messages".into(), num("bp_messages")),
        ("bp-size".into(), p.get("bp_size").and_then(|v| v.as_u64()).map_or(MISSING.to_owned(), fmt_size)),
        ("bp-rate".into(), num("bp_rate")),
        ("bp-rcvbuf".into(), size(ScenarioKind::Backpressure, "rcvbuf")),
        ("bp-sample".into(), cell_param(doc, ScenarioKind::Backpressure, "sample_ms").map_or(MISSING.to_owned(), |v| format!("{} ms", fmt_int(v as f64)))),
        ("poll-clients".into(), num("poll_clients")),
        ("poll-rate".into(), num("poll_rate")),
        ("poll-secs".into(), p.get("poll_secs").and_then(|v| v.as_f64()).map_or(MISSING.to_owned(), |v| format!("{} s", fmt_num(v)))),
        ("poll-every".into(), p.get("poll_every_ms").and_then(|v| v.as_f64()).map_or(MISSING.to_owned(), |v| format!("{} ms", fmt_num(v)))),
        ("poll-size".into(), size(ScenarioKind::Polling, "size")),
        ("nofile-limit".into(), if m.nofile_limit > 0 { fmt_int(m.nofile_limit as f64) } else { MISSING.to_owned() }),
        // Half the open-files limit: where two descriptors per connection would stop a lab.
        ("nofile-half".into(), if m.nofile_limit > 0 { fmt_int((m.nofile_limit / 2) as f64) } else { MISSING.to_owned() }),
        ("max-map-count".into(), if m.max_map_count > 0 { fmt_int(m.max_map_count as f64) } else { MISSING.to_owned() }),
        ("pid-max".into(), if m.pid_max > 0 { fmt_int(m.pid_max as f64) } else { MISSING.to_owned() }),
        (
            "placement".into(),
            match (m.placement.server, m.placement.clients) {
                (Some(s), Some(c)) => format!("the server to CPU {s} and every worker to CPU {c}"),
                _ => "nothing (this run was not pinned)".to_owned(),
            },
        ),
    ];
    // Per lab: as many connections as one process held, the mappings each
    // connection took, and where vm.max_map_count would stop it.
    let ceilings = ceilings(doc);
    for r in doc.runtimes() {
        let c = ceilings.iter().find(|c| c.runtime == r);
        out.push((format!("max-held-{r}"), c.map_or(MISSING.to_owned(), |c| fmt_int(c.held))));
        out.push((format!("maps-per-conn-{r}"), c.and_then(|c| c.maps_per_conn).map_or(MISSING.to_owned(), |v| format!("{v:.1}"))));
        out.push((format!("map-ceiling-{r}"), c.and_then(|c| c.map_ceiling).map_or(MISSING.to_owned(), fmt_int)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tables::tests::fixture;

    #[test]
    fn snippets_from_the_fixture() {
        let all = snippets(&fixture());
        let get = |name: &str| all.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str()).unwrap_or("no such snippet");
        assert_eq!(get("fanout-sizes"), "100 and 1,000");
        assert_eq!(get("idle-sizes"), "1,000");
        assert_eq!(get("fanout-message-size"), "64 bytes");
        assert_eq!(get("fanout-interval"), "20 ms");
        assert_eq!(get("bp-size"), "1 KiB");
        assert_eq!(get("bp-rcvbuf"), "4 KiB");
        assert_eq!(get("bp-messages"), "5,000");
        assert_eq!(get("poll-rate"), "2");
        assert_eq!(get("poll-every"), "1,000 ms");
        assert_eq!(get("nofile-limit"), "20,000");
        assert_eq!(get("nofile-half"), "10,000");
        assert_eq!(get("max-held-tokio"), "19,985");
        assert_eq!(get("map-ceiling-tokio"), MISSING); // tokio's connections take no mappings
        assert_eq!(get("placement"), "the server to CPU 0 and every worker to CPU 1");
        assert!(all.iter().all(|(_, v)| !v.ends_with('\n')));
    }
}
