//! The claims table (`tables/claims.md`): claims about push transports that
//! are passed on more often than measured, each with the measurement that
//! tests it and a verdict computed from the results document — **holds**,
//! **does not hold**, **depends** (and on what), or **not yet measured**
//! when the document has no data for it. A verdict is never a guess: a claim
//! whose scenario did not run, or that no scenario tests, says so.
//!
//! The claims' own figures (2–14 bytes, ~20 KB, 33 requests a second) are
//! the claims' words, not measurements; they are the constants below.

use super::findings::{Diff, Stop, and_list, ceilings, cell, diff, pct, ratio, short_polls, sizes, span};
use super::format::{fmt_bytes, fmt_int, fmt_us};
use super::tables::table_text;
use crate::axes::{Label, ScenarioKind, Transport};
use crate::results::Document;

/// A claim, what would test it, and how its verdict is computed.
struct Claim {
    /// Its file, `claims/<slug>.md`: the verdict alone, for a chapter that
    /// quotes the claim.
    slug: &'static str,
    claim: &'static str,
    tested_by: &'static str,
    /// The verdict, or `None` when the document has no data for it.
    verdict: fn(&Document) -> Option<String>,
}

/// The verdict of a claim no scenario of the harness tests yet.
fn not_measured(_: &Document) -> Option<String> {
    None
}

const CLAIMS: &[Claim] = &[
    Claim {
        slug: "sse-or-ws",
        claim: "\"Use SSE, not WebSockets\": for one-way push, SSE is the cheaper choice.",
        tested_by: "idle (memory per connection) and fanout (last subscriber's p99), SSE against WebSocket in each lab",
        verdict: sse_or_ws,
    },
    Claim {
        slug: "frames-and-headers",
        claim: "A WebSocket message costs a 2–14 byte frame header, a poll ~800 bytes of HTTP headers.",
        tested_by: "the polling sweep (`rtlab bench polling-sweep`): bytes on the wire per WebSocket update and per short poll, request and response, with the request headers headless Chromium sends (captured by `scripts/interop/headers.mjs`); its own document, `bench-results/polling/sweep.json`",
        verdict: not_measured,
    },
    Claim {
        slug: "connection-cost",
        claim: "A connection costs ~20 KB (10–50 KB); 200 KB of state per connection is a mistake.",
        tested_by: "idle: user-space memory plus the kernel's share per idle connection, every lab and transport, at the largest size",
        verdict: twenty_kb,
    },
    Claim {
        slug: "limits",
        claim: "Default limits run out first: 1,024 file descriptors, or 50–100K connections per process.",
        tested_by: "idle at \"max\": as many connections as one process holds, and the limit that stopped it",
        verdict: limits,
    },
    Claim {
        slug: "polling-at-low-rates",
        claim: "\"Polling is fine at low rates.\"",
        tested_by: "the polling sweep (`rtlab bench polling-sweep`): server CPU, bytes and staleness of short polling at several periods against SSE, over a grid of update rates; its own document, `bench-results/polling/sweep.json`",
        verdict: not_measured,
    },
    Claim {
        slug: "polling-33-per-second",
        claim: "10,000 users polling every 5 minutes is 33 requests a second: nothing for a modern server.",
        tested_by: "polling: the server's CPU per short poll, times 33 a second",
        verdict: thirty_three,
    },
    Claim {
        slug: "encode-once",
        claim: "\"The event loop blocks because you're serializing JSON for 50,000 clients\": encode once, not per subscriber.",
        tested_by: "the core's criterion bench (`fanout/encode_once_shared` against `fanout/encode_per_subscriber`, `labs/core/benches/core.rs`), collected by `rtlab criterion`",
        verdict: not_measured,
    },
    Claim {
        slug: "redis",
        claim: "Redis pub/sub between servers adds ~1–2 ms.",
        tested_by: "`rtlab bench-cluster`: publish to receive on SSE and WebSocket, open-loop, a subscriber on the publishing process without a broker against one on another process through a real Redis, every lab ([Scaling out](scaling-out.md))",
        verdict: not_measured,
    },
    Claim {
        slug: "reconnection",
        claim: "SSE reconnects by itself and resumes with Last-Event-ID; WebSocket needs hand-written reconnection.",
        tested_by: "`scripts/interop/reconnect.sh`: headless Chromium, a bare EventSource, a bare WebSocket and one with hand-written reconnection, every connection cut by a proxy, every lab (bench-results/lifecycle)",
        verdict: reconnection,
    },
    Claim {
        slug: "heartbeats",
        claim: "Heartbeats every 25–30 s find dropped connections.",
        tested_by: "`rtlab bench zombies`: peers dropped in a network namespace and SIGSTOPped, reap time per lab and transport (bench-results/lifecycle)",
        verdict: heartbeats,
    },
    Claim {
        slug: "jitter",
        claim: "Reconnecting without jitter makes a thundering herd.",
        tested_by: "`rtlab bench reconnect`: N clients, the server SIGKILLed and restarted, peak attempts per strategy (bench-results/lifecycle)",
        verdict: jitter,
    },
    Claim {
        slug: "http2",
        claim: "Browsers allow six HTTP/1.1 connections per host; over HTTP/2 one connection carries many SSE streams.",
        tested_by: "`scripts/interop/seven.sh`: headless Chromium opens seven EventSources to one origin over HTTP/1.1 and over HTTP/2 (tokio lab, TLS); `rtlab bench-tls`: memory per HTTP/2 stream ([TLS and HTTP/2](tls-and-http2.md))",
        verdict: not_measured,
    },
    Claim {
        slug: "deltas",
        claim: "Sending JSON-patch deltas instead of whole documents saves ~98% of the bytes.",
        tested_by: "`rtlab deltas`: a 200-metric dashboard to SSE viewers, full state against JSON Patch, swept over the fraction changing per tick ([Sending what changed](deltas.md))",
        verdict: not_measured,
    },
    Claim {
        slug: "sticky-sessions",
        claim: "SSE needs no sticky sessions.",
        tested_by: "`rtlab bench-cluster`: SSE resumes (`Last-Event-ID`) and long polls sent to the next of three processes at every hop, without a shared broker and on Redis: lost, duplicated, resets ([Scaling out](scaling-out.md))",
        verdict: not_measured,
    },
    Claim {
        slug: "expiry-spread-row",
        claim: "Tokens minted together expire together: close connections at `exp` with a randomized deadline (Mercure), or they all reconnect at once.",
        tested_by: "the expiry spike (`labs/bench/src/expiry.rs`): reconnections per 100 ms without and with `--expiry-spread`; its own document, `expiry.json`",
        verdict: not_measured,
    },
];

/// Claims measured by another experiment with its own results document:
/// (slug, the verdict file that experiment's generator writes, relative to
/// the book's `generated/`). The table's cell includes that file (mdbook
/// resolves an include inside an included file), so the verdict comes from
/// the experiment's own results, and this run's report does not restate it.
const ELSEWHERE: &[(&str, &str)] = &[
    ("encode-once", "criterion/claims/encode-once.md"),
    ("http2", "tls/claim-http2.md"),
    ("deltas", "deltas/claims/deltas.md"),
    ("expiry-spread-row", "claims/expiry-spread.md"),
    ("redis", "cluster/claims/redis.md"),
    ("sticky-sessions", "cluster/claims/sticky-sessions.md"),
    ("frames-and-headers", "polling/claims/frames-and-headers.md"),
    ("polling-at-low-rates", "polling/claims/polling-at-low-rates.md"),
];

/// The committed lifecycle results (`bench-results/lifecycle`, from the
/// repository's root, where `rtlab report` runs): the herd and the dead
/// peers are experiments of their own, not cells of the matrix.
fn lifecycle() -> super::lifecycle::Lifecycle {
    super::lifecycle::Lifecycle::read(std::path::Path::new(super::lifecycle::COMMITTED)).unwrap_or_default()
}

fn jitter(_: &Document) -> Option<String> {
    super::lifecycle::jitter_verdict(&lifecycle().herds)
}

fn reconnection(_: &Document) -> Option<String> {
    super::lifecycle::reconnection_verdict(lifecycle().browser.as_ref())
}

fn heartbeats(_: &Document) -> Option<String> {
    super::lifecycle::heartbeats_verdict(lifecycle().zombies.as_ref())
}

/// A claim's verdict in this run (or the include of its experiment's).
fn verdict(doc: &Document, c: &Claim) -> String {
    if let Some((_, file)) = ELSEWHERE.iter().find(|(slug, _)| *slug == c.slug) {
        return format!("{{{{#include ../{file}}}}}");
    }
    (c.verdict)(doc).unwrap_or_else(|| "**not yet measured**".to_owned())
}

/// `tables/claims.md`.
pub(super) fn claims_table(doc: &Document) -> String {
    let rows: Vec<Vec<String>> =
        CLAIMS.iter().map(|c| vec![c.claim.to_owned(), c.tested_by.to_owned(), verdict(doc, c).replace('|', "\\|")]).collect();
    table_text(&["claim", "tested by", "verdict (this run)"], &rows)
}

/// Every claim's verdict alone, as `claims/<slug>.md` (not those measured
/// elsewhere: their experiments write their own).
pub(super) fn verdicts(doc: &Document) -> Vec<(String, String)> {
    CLAIMS
        .iter()
        .filter(|c| !ELSEWHERE.iter().any(|(slug, _)| *slug == c.slug))
        .map(|c| (c.slug.to_owned(), format!("{}\n", verdict(doc, c))))
        .collect()
}

/// The largest idle and fan-out sizes both transports ran at.
fn largest(doc: &Document, scenario: ScenarioKind) -> Option<u64> {
    let a = sizes(doc, scenario, Transport::Sse);
    let b = sizes(doc, scenario, Transport::Ws);
    a.into_iter().filter(|n| b.contains(n)).max()
}

/// A lab's WebSocket cost as a multiple of its SSE cost, for one measure:
/// `None` if no difference was measured.
fn ws_over_sse(doc: &Document, scenario: ScenarioKind, runtime: &str, n: u64, metric: &str) -> Option<Option<f64>> {
    let s = cell(doc, scenario, runtime, Transport::Sse, Label::Size(n))?.metrics.get(metric)?;
    let w = cell(doc, scenario, runtime, Transport::Ws, Label::Size(n))?.metrics.get(metric)?;
    Some((diff(w, s) != Diff::Same && s.mean > 0.0).then(|| w.mean / s.mean))
}

fn sse_or_ws(doc: &Document) -> Option<String> {
    let idle = largest(doc, ScenarioKind::Idle)?;
    let fan = largest(doc, ScenarioKind::Fanout)?;
    let (mut same, mut costlier, mut cheaper) = (Vec::new(), Vec::new(), Vec::new());
    let mut within: f64 = 0.0;
    for r in doc.runtimes() {
        let (Some(mem), Some(lat)) =
            (ws_over_sse(doc, ScenarioKind::Idle, &r, idle, "user_bytes_per_conn"), ws_over_sse(doc, ScenarioKind::Fanout, &r, fan, "last_p99_us"))
        else {
            continue;
        };
        let big = |x: Option<f64>| x.filter(|v| *v >= 1.5 || *v <= 1.0 / 1.5);
        match (big(mem), big(lat)) {
            (None, None) => {
                for v in [mem, lat].into_iter().flatten() {
                    within = within.max((v - 1.0).abs());
                }
                same.push(r);
            }
            (m, l) => {
                let words: Vec<String> = [(m, "the memory per idle connection"), (l, "the last subscriber's p99")]
                    .into_iter()
                    .filter_map(|(v, what)| v.map(|v| format!("{} times {what}", ratio(v))))
                    .collect();
                if m.or(l).is_some_and(|v| v > 1.0) {
                    costlier.push(format!("{r} ({})", and_list(&words)));
                } else {
                    cheaper.push(format!("{r} ({})", and_list(&words)));
                }
            }
        }
    }
    if same.is_empty() && costlier.is_empty() && cheaper.is_empty() {
        return None;
    }
    let same_text = if same.is_empty() {
        String::new()
    } else {
        format!(
            "WebSocket cost what SSE cost in {} ({})",
            and_list(&same),
            if within == 0.0 { "no difference measured".to_owned() } else { format!("within {} of each other, or no difference measured", pct(within)) }
        )
    };
    let word = match (same.is_empty(), costlier.is_empty(), cheaper.is_empty()) {
        (_, true, true) => "**does not hold on cost**",
        (true, false, true) => "**holds on cost**",
        _ => "**depends on the server**",
    };
    let mut parts = vec![same_text];
    if !costlier.is_empty() {
        parts.push(format!("WebSocket cost more in {}", and_list(&costlier)));
    }
    if !cheaper.is_empty() {
        parts.push(format!("WebSocket cost less in {}", and_list(&cheaper)));
    }
    parts.retain(|p| !p.is_empty());
    Some(format!(
        "{word}: measured at {} idle connections and {} subscribers, {}. SSE's other advantages (it reconnects by itself, it is plain HTTP) are not measured here.",
        fmt_int(idle as f64),
        fmt_int(fan as f64),
        parts.join("; ")
    ))
}

/// The claim's range, bytes per connection (KB: 1,000 bytes), and its "mistake".
const CLAIMED_LOW: f64 = 10_000.0;
const CLAIMED_HIGH: f64 = 50_000.0;
const MISTAKE: f64 = 200_000.0;

fn kb(v: f64) -> String {
    format!("{:.1} KB", v / 1000.0)
}

fn twenty_kb(doc: &Document) -> Option<String> {
    let n = ScenarioKind::Idle.transports().iter().filter_map(|&t| sizes(doc, ScenarioKind::Idle, t).last().copied()).max()?;
    // (lab, transport, total) per verified cell at the largest size.
    let mut cells: Vec<(String, Transport, f64)> = Vec::new();
    for r in doc.runtimes() {
        for &t in ScenarioKind::Idle.transports() {
            if let Some(c) = cell(doc, ScenarioKind::Idle, &r, t, Label::Size(n)) {
                if let (Some(u), Some(k)) = (c.mean("user_bytes_per_conn"), c.mean("kernel_bytes_per_conn")) {
                    cells.push((r.clone(), t, u + k));
                }
            }
        }
    }
    if cells.is_empty() {
        return None;
    }
    let class = |v: f64| if v < CLAIMED_LOW { 0 } else if v <= CLAIMED_HIGH { 1 } else { 2 };
    // Each class: its labs, or "lab over transport" where a lab's transports differ.
    let describe = |k: u8| -> Option<String> {
        let inside: Vec<&(String, Transport, f64)> = cells.iter().filter(|c| class(c.2) == k).collect();
        if inside.is_empty() {
            return None;
        }
        let mut names = Vec::new();
        for r in doc.runtimes() {
            let all: Vec<&(String, Transport, f64)> = cells.iter().filter(|c| c.0 == r).collect();
            let mine: Vec<&&(String, Transport, f64)> = inside.iter().filter(|c| c.0 == r).collect();
            if mine.is_empty() {
                continue;
            }
            if mine.len() == all.len() {
                names.push(r.clone());
            } else {
                names.extend(mine.iter().map(|c| format!("{} ({})", c.0, c.1)));
            }
        }
        let lo = inside.iter().map(|c| c.2).fold(f64::INFINITY, f64::min);
        let hi = inside.iter().map(|c| c.2).fold(0.0, f64::max);
        Some(format!("{} in {}", span(lo, hi, kb), and_list(&names)))
    };
    let (below, within, above) = (describe(0), describe(1), describe(2));
    let word = match (&below, &within, &above) {
        (None, Some(_), None) => "**holds**",
        (_, None, _) => "**does not hold**",
        _ => "**depends on the runtime**",
    };
    let mut parts = Vec::new();
    if let Some(b) = below {
        parts.push(format!("below the claim's 10–50 KB, {b}"));
    }
    if let Some(w) = within {
        parts.push(format!("within it, {w}"));
    }
    if let Some(a) = above {
        parts.push(format!("above it, {a}"));
    }
    let max = cells.iter().max_by(|a, b| a.2.total_cmp(&b.2))?;
    Some(format!(
        "{word}: at {} idle connections, user space plus the kernel's share (KB: 1,000 bytes; the kernel's share counts both ends of each loopback connection): {}. {} 200 KB: the most was {} ({} over {}).",
        fmt_int(n as f64),
        parts.join("; "),
        if max.2 >= MISTAKE { "One reached" } else { "None reached" },
        kb(max.2),
        max.0,
        max.1
    ))
}

/// The claim's "default" open-files limit, and the connections it names.
const DEFAULT_NOFILE: u64 = 1024;
const CLAIMED_CONNECTIONS: f64 = 50_000.0;

fn limits(doc: &Document) -> Option<String> {
    let c = ceilings(doc);
    if c.is_empty() {
        return None;
    }
    let m = &doc.machine;
    let mut files = Vec::new();
    let mut maps = Vec::new();
    let mut other = Vec::new();
    for x in &c {
        match x.stop {
            Stop::OpenFiles { .. } => files.push(x),
            Stop::MapCount { .. } => maps.push(x),
            Stop::Other => other.push(x),
        }
    }
    let held = |v: &[&super::findings::Ceiling]| {
        let lo = v.iter().map(|c| c.held).fold(f64::INFINITY, f64::min);
        let hi = v.iter().map(|c| c.held).fold(0.0, f64::max);
        span(lo, hi, fmt_int)
    };
    let mut parts = Vec::new();
    if !files.is_empty() {
        parts.push(format!(
            "{} at the open-files limit of {} (holding {})",
            and_list(&files.iter().map(|c| c.runtime.clone()).collect::<Vec<_>>()),
            fmt_int(m.nofile_limit as f64),
            held(&files)
        ));
    }
    for x in &maps {
        parts.push(format!(
            "{} at vm.max_map_count of {} (holding {}{})",
            x.runtime,
            fmt_int(m.max_map_count as f64),
            fmt_int(x.held),
            x.maps_per_conn.map_or(String::new(), |p| format!(", {p:.1} mappings per connection"))
        ));
    }
    for x in &other {
        parts.push(format!(
            "{} at another limit (holding {}{})",
            x.runtime,
            fmt_int(x.held),
            x.first_error.as_deref().map_or(String::new(), |e| format!("; the next connection got: {e}"))
        ));
    }
    // Memory the fullest lab used at its limit, against the machine's.
    let used = doc
        .cells_of(ScenarioKind::Idle)
        .filter(|c| c.label == Label::Max && c.verified)
        .filter_map(|c| Some(c.mean("held")? * (c.mean("user_bytes_per_conn")? + c.mean("kernel_bytes_per_conn")?)))
        .fold(0.0, f64::max);
    let asked = doc
        .cells_of(ScenarioKind::Idle)
        .filter(|c| c.label == Label::Max)
        .flat_map(|c| &c.runs)
        .filter_map(|r| r["attempted"].as_f64())
        .fold(0.0, f64::max);
    let word = if other.is_empty() { "**holds, at this run's limits**" } else { "**depends on the lab**" };
    let mut untested = Vec::new();
    if m.nofile_limit != DEFAULT_NOFILE {
        untested.push(format!("the default of {} descriptors (this run's limit was {})", fmt_int(DEFAULT_NOFILE as f64), fmt_int(m.nofile_limit as f64)));
    }
    if asked > 0.0 && asked < CLAIMED_CONNECTIONS {
        untested.push(format!("50–100K connections (no lab was asked for more than {})", fmt_int(asked)));
    }
    Some(format!(
        "{word}: an OS limit, not memory, stopped every lab{}: {}. The most memory a lab used at its limit, user space and the kernel's share (both ends of each connection), was {} of the machine's {}.{}",
        if other.is_empty() { "" } else { " but the ones named last" },
        parts.join("; "),
        fmt_bytes(used),
        fmt_bytes(m.memory_bytes as f64),
        if untested.is_empty() { String::new() } else { format!(" Not tested: {}.", and_list(&untested)) }
    ))
}

/// The claim's users and polling period (seconds).
const USERS: f64 = 10_000.0;
const PERIOD_SECS: f64 = 300.0;

fn thirty_three(doc: &Document) -> Option<String> {
    let polls = short_polls(doc);
    let worst = polls.iter().max_by(|a, b| a.cpu_per_request.total_cmp(&b.cpu_per_request))?;
    let rps = USERS / PERIOD_SECS;
    let cpu = rps * worst.cpu_per_request;
    let bytes: Vec<f64> = polls.iter().filter_map(|p| p.bytes_per_request).collect();
    let measured_rps = doc
        .cells_of(ScenarioKind::Polling)
        .filter(|c| c.transport == Transport::ShortPoll && c.verified)
        .filter_map(|c| c.mean("requests_per_sec"))
        .fold(0.0, f64::max);
    let word = if cpu < 0.01 { "**holds**" } else if cpu < 0.1 { "**holds, at a measurable cost**" } else { "**does not hold**" };
    Some(format!(
        "{word}: measured at {} short polls a second, one poll cost the server at most {} of CPU ({}; the server's whole CPU over the window divided by its requests, so an upper bound). {} polls a second would take {} of one CPU{}.",
        fmt_int(measured_rps),
        fmt_us(worst.cpu_per_request * 1e6),
        worst.runtime,
        fmt_int(rps),
        pct(cpu),
        if bytes.is_empty() {
            String::new()
        } else {
            format!(
                " and {} a second on the wire (a lower bound: rtlab's clients send only a `Host:` header)",
                fmt_bytes(rps * bytes.iter().sum::<f64>() / bytes.len() as f64)
            )
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tables::tests::fixture;

    fn verdict_column(doc: &Document) -> Vec<String> {
        claims_table(doc).lines().skip(2).map(|l| l.rsplit(" | ").next().unwrap_or("").trim_end_matches(" |").to_owned()).collect()
    }

    #[test]
    fn claims_without_data_are_not_yet_measured() {
        let mut doc = fixture();
        doc.cells.clear();
        let v = verdict_column(&doc);
        assert_eq!(v.len(), CLAIMS.len());
        assert!(v.iter().filter(|v| v.starts_with("**not yet measured**")).count() == CLAIMS.len() - ELSEWHERE.len(), "{v:?}");
        assert_eq!(v[6], "{{#include ../criterion/claims/encode-once.md}}");
        assert_eq!(v[1], "{{#include ../polling/claims/frames-and-headers.md}}");
        assert_eq!(v[4], "{{#include ../polling/claims/polling-at-low-rates.md}}");
        let files = super::verdicts(&doc);
        assert_eq!(files.len(), CLAIMS.len() - ELSEWHERE.len());
        assert!(files.contains(&("reconnection".to_owned(), "**not yet measured**\n".to_owned())), "{files:?}");
        assert_eq!(v[7], "{{#include ../cluster/claims/redis.md}}");
        let elsewhere = ["redis", "sticky-sessions", "frames-and-headers", "polling-at-low-rates"];
        assert!(!files.iter().any(|(slug, _)| elsewhere.contains(&slug.as_str())), "{files:?}");
    }

    #[test]
    fn verdicts_from_the_fixture() {
        let doc = fixture();
        let v = verdict_column(&doc);
        // SSE against WebSocket needs both transports at one fan-out size:
        // the fixture's fan-out has only WebSocket. Frames against polls
        // comes from the polling sweep's own document (an include).
        assert_eq!(v[0], "**not yet measured**");
        assert_eq!(v[1], "{{#include ../polling/claims/frames-and-headers.md}}");
        assert_eq!(
            v[2],
            "**depends on the runtime**: at 1,000 idle connections, user space plus the kernel's share (KB: 1,000 bytes; the kernel's share counts both ends of each loopback connection): \
             below the claim's 10–50 KB, 8.8 KB to 8.9 KB in tokio; within it, 28.9 KB in axum. None reached 200 KB: the most was 28.9 KB (axum over sse)."
        );
        assert_eq!(
            v[3],
            "**holds, at this run's limits**: an OS limit, not memory, stopped every lab: tokio and axum at the open-files limit of 20,000 (holding 19,985). \
             The most memory a lab used at its limit, user space and the kernel's share (both ends of each connection), was 548.9 MiB of the machine's 23.54 GiB. \
             Not tested: the default of 1,024 descriptors (this run's limit was 20,000)."
        );
        assert_eq!(
            v[5],
            "**holds**: measured at 1,000 short polls a second, one poll cost the server at most 26 µs of CPU (tokio; the server's whole CPU over the window divided by its requests, so an upper bound). \
             33 polls a second would take 0.1% of one CPU and 11.1 KiB a second on the wire (a lower bound: rtlab's clients send only a `Host:` header)."
        );
    }

    #[test]
    fn websocket_against_sse_no_difference_and_a_costlier_server() {
        let mut doc = fixture();
        // Give tokio and axum SSE fan-out cells: tokio's equal to its
        // WebSocket runs (ranges overlap), axum's a tenth of its own.
        let extra: Vec<_> = doc
            .cells
            .iter()
            .filter(|c| c.scenario == ScenarioKind::Fanout && c.transport == Transport::Ws && c.label == Label::Size(100))
            .cloned()
            .map(|mut c| {
                c.transport = Transport::Sse;
                if c.runtime == "axum" {
                    let s = &c.metrics["last_p99_us"];
                    c.metrics.insert("last_p99_us".into(), crate::results::Stat::of(s.values.iter().map(|v| v / 10.0).collect()));
                }
                c
            })
            .collect();
        doc.cells.extend(extra);
        // And the idle WebSocket cell of axum at 1,000: six times its SSE memory.
        let mut ws = doc.cells.iter().find(|c| c.scenario == ScenarioKind::Idle && c.runtime == "axum" && c.label == Label::Size(1000)).cloned().expect("axum idle");
        ws.transport = Transport::Ws;
        let s = &ws.metrics["user_bytes_per_conn"];
        ws.metrics.insert("user_bytes_per_conn".into(), crate::results::Stat::of(s.values.iter().map(|v| v * 6.0).collect()));
        doc.cells.push(ws);
        assert_eq!(
            sse_or_ws(&doc).expect("a verdict"),
            "**depends on the server**: measured at 1,000 idle connections and 100 subscribers, WebSocket cost what SSE cost in tokio (no difference measured); \
             WebSocket cost more in axum (6.0 times the memory per idle connection and 10 times the last subscriber's p99). \
             SSE's other advantages (it reconnects by itself, it is plain HTTP) are not measured here."
        );
    }
}
