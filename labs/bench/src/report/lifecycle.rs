//! The connection's life: the report of `rtlab bench reconnect` (the herd)
//! and `rtlab bench zombies` (dead peers), from a directory of their
//! results (`reconnect-*.json`, `zombies.json`; the committed one is
//! `bench-results/lifecycle/`).
//!
//! These experiments are not cells of the matrix: each is one file of its
//! own, with the machine, the toolchain, the commit and the raw values. The
//! report writes, beside the matrix's, `tables/herd.md`,
//! `findings/herd.md`, `params/herd.md`, `plots/herd-<condition>.svg`,
//! `plots/herd-peak.svg`, `tables/zombies.md`, `params/zombies.md`,
//! `plots/zombies.svg`, `tables/browser-reconnect.md` (from
//! `browser-reconnect.json`, written by `scripts/interop/reconnect.sh
//! --record`: a real browser's EventSource and WebSocket when every
//! connection is cut), and the verdicts of the claims they test
//! (`claims/jitter.md`, `claims/heartbeats.md`, `claims/reconnection.md`).
//!
//! A strategy is called better than another only where the runs' ranges
//! (min to max over the repeats) do not overlap.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use super::charts::{Axis, Bars, Line, SIZE, bar_chart, line_chart};
use super::format::fmt_int;
use super::tables::table_text;
use crate::herd::{HerdResult, HerdRun};
use crate::results::Stat;
use crate::zombies::ZombiesResult;

/// Where the committed lifecycle results live, from the repository's root
/// (where `rtlab report` runs).
pub const COMMITTED: &str = "bench-results/lifecycle";

// ANCHOR: strategy_colours
/// One fixed colour per back-off strategy, in every plot: the Tableau 10
/// colours the runtimes do not use.
pub const STRATEGY_COLOURS: [(&str, RGBColor); 5] = [
    ("none", RGBColor(127, 127, 127)),
    ("exponential", RGBColor(140, 86, 75)),
    ("full-jitter", RGBColor(23, 190, 207)),
    ("equal-jitter", RGBColor(188, 189, 34)),
    ("decorrelated-jitter", RGBColor(227, 119, 194)),
];
// ANCHOR_END: strategy_colours

fn strategy_colour(name: &str) -> RGBColor {
    STRATEGY_COLOURS.iter().find(|(n, _)| *n == name).map_or(RGBColor(0, 0, 0), |(_, c)| *c)
}

/// The lifecycle results found in a directory.
#[derive(Debug, Default)]
pub struct Lifecycle {
    pub herds: Vec<HerdResult>,
    pub zombies: Option<ZombiesResult>,
    pub browser: Option<BrowserReconnect>,
}

/// `browser-reconnect.json`: what headless Chromium's clients did when a
/// proxy cut every connection (`scripts/interop/reconnect.mjs`), per lab.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct BrowserReconnect {
    pub experiment: String,
    pub date: String,
    pub commit: String,
    pub runs: Vec<BrowserRun>,
}

/// One lab's run of the browser experiment.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct BrowserRun {
    pub runtime: String,
    pub chromium: String,
    /// Messages published while the clients were cut off.
    pub missed_published: u64,
    pub sse: BrowserClient,
    pub ws: BrowserClient,
    pub ws_reconnecting: BrowserClient,
}

/// What one client did after the cut.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct BrowserClient {
    /// It opened again without the page doing anything (the bare clients),
    /// or by its own code (the hand-written one).
    pub reconnected: bool,
    /// Milliseconds from the cut to the new connection's open.
    pub reconnect_ms: Option<u64>,
    /// Of the messages published while cut off, how many it got.
    pub missed_recovered: u64,
    /// It got the message published after the reconnections.
    pub later_received: bool,
    pub duplicates: u64,
    /// The `Last-Event-ID` the browser sent when it reconnected (SSE).
    #[serde(default)]
    pub last_event_id_sent: Option<String>,
}

impl Lifecycle {
    /// Reads `reconnect-*.json` and `zombies.json` in `dir` (none: empty).
    pub fn read(dir: &Path) -> std::io::Result<Lifecycle> {
        let mut found = Lifecycle::default();
        let Ok(entries) = std::fs::read_dir(dir) else { return Ok(found) };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
            if name.starts_with("reconnect-") && name.ends_with(".json") {
                found.herds.push(parse(&path)?);
            } else if name == "zombies.json" {
                found.zombies = Some(parse(&path)?);
            } else if name == "browser-reconnect.json" {
                found.browser = Some(parse(&path)?);
            }
        }
        Ok(found)
    }

    /// Whether there is anything to render.
    pub fn is_empty(&self) -> bool {
        self.herds.is_empty() && self.zombies.is_none() && self.browser.is_none()
    }
}

fn parse<T: serde::de::DeserializeOwned>(path: &Path) -> std::io::Result<T> {
    serde_json::from_slice(&std::fs::read(path)?).map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))
}

/// The runs of one strategy in one condition, verified ones only.
fn runs_of<'a>(h: &'a HerdResult, strategy: &str) -> Vec<&'a HerdRun> {
    h.runs.iter().filter(|r| r.strategy == strategy && r.failure.is_none()).collect()
}

fn strategies(h: &HerdResult) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for r in &h.runs {
        if !names.contains(&r.strategy) {
            names.push(r.strategy.clone());
        }
    }
    names
}

/// One number of a run, for the ranges.
type Metric = fn(&HerdRun) -> Option<f64>;

const METRICS: [(&str, Metric); 4] = [
    ("peak attempts in one second", |r| Some(r.peak_attempts_per_s as f64)),
    ("failed attempts", |r| Some(r.failed as f64)),
    ("ms until 99 % back", |r| r.t99_ms.map(|v| v as f64)),
    ("ms until all back", |r| r.t100_ms.map(|v| v as f64)),
];

fn stat(runs: &[&HerdRun], metric: Metric) -> Option<Stat> {
    let values: Vec<f64> = runs.iter().filter_map(|r| metric(r)).collect();
    (!values.is_empty()).then(|| Stat::of(values))
}

fn range(s: Option<Stat>) -> String {
    match s {
        None => "—".into(),
        Some(s) if s.min == s.max => fmt_int(s.min),
        Some(s) => format!("{}–{}", fmt_int(s.min), fmt_int(s.max)),
    }
}

/// `tables/herd.md`: per condition and strategy, the ranges over the runs.
pub fn herd_table(herds: &[HerdResult]) -> String {
    let mut rows = Vec::new();
    for h in herds {
        for s in strategies(h) {
            let runs = runs_of(h, &s);
            let failed_runs = h.runs.iter().filter(|r| r.strategy == s && r.failure.is_some()).count();
            let mut row = vec![h.label.clone(), s.clone(), format!("{}/{}", runs.len(), runs.len() + failed_runs)];
            row.extend(METRICS.iter().map(|(_, m)| range(stat(&runs, *m))));
            let silently: u64 = runs.iter().map(|r| r.lost_silently).sum();
            let signalled: u64 = runs.iter().map(|r| r.lost_signalled).sum();
            row.push(format!("{} / {}", fmt_int(silently as f64), fmt_int(signalled as f64)));
            row.push(range(stat(&runs, |r| Some(r.clients_signalled as f64))));
            rows.push(row);
        }
    }
    table_text(
        &[
            "condition",
            "strategy",
            "runs ok",
            "peak attempts/s",
            "failed attempts",
            "99 % back (ms after restart)",
            "all back (ms after restart)",
            "messages lost: silently / with a signal (all runs)",
            "clients told (reset or missed signal), per run",
        ],
        &rows,
    )
}

/// Whether `a`'s range lies wholly below `b`'s.
fn below(a: &Stat, b: &Stat) -> bool {
    a.max < b.min
}

/// `findings/herd.md`: per condition and measure, which strategies' ranges
/// separate, and the lost messages.
pub fn herd_findings(herds: &[HerdResult]) -> String {
    let mut out = String::new();
    for h in herds {
        out.push_str(&format!("**{}**, {} runs per strategy:\n\n", h.label, h.repeats));
        for (what, metric) in METRICS {
            let stats: Vec<(String, Stat)> =
                strategies(h).into_iter().filter_map(|s| stat(&runs_of(h, &s), metric).map(|st| (s, st))).collect();
            let mut pairs = Vec::new();
            for (a, sa) in &stats {
                let beaten: Vec<&str> = stats.iter().filter(|(b, sb)| b != a && below(sa, sb)).map(|(b, _)| b.as_str()).collect();
                if !beaten.is_empty() {
                    pairs.push(format!("{a} below {}", beaten.join(", ")));
                }
            }
            if pairs.is_empty() {
                out.push_str(&format!("* {what}: the ranges of all strategies overlap — no strategy is better here.\n"));
            } else {
                out.push_str(&format!("* {what}, where the ranges separate: {}.\n", pairs.join("; ")));
            }
        }
        let silently: u64 = h.runs.iter().map(|r| r.lost_silently).sum();
        let signalled: u64 = h.runs.iter().map(|r| r.lost_signalled).sum();
        out.push_str(&format!(
            "* messages published right after the restart and never delivered: {} without any signal, {} with the missed/reset signal.\n\n",
            fmt_int(silently as f64),
            fmt_int(signalled as f64)
        ));
    }
    out
}

/// `params/herd.md`: the experiment's parameters, one sentence.
pub fn herd_params(herds: &[HerdResult]) -> String {
    let Some(h) = herds.first() else { return "no herd experiment in this run".into() };
    let conditions: Vec<String> = herds.iter().map(|h| format!("`{}`", h.label)).collect();
    format!(
        "{} clients over {}, back-off base {} ms and cap {} ms, the server SIGKILLed and a new one started on the same address after a pause of {} ms (the times count from its `listening on` line), {} runs per strategy, under {}",
        fmt_int(h.clients as f64),
        if h.transport == "ws" { "WebSocket" } else { "SSE" },
        h.base_ms,
        h.cap_ms,
        h.down_ms,
        h.repeats,
        conditions.join(", ")
    )
}

fn slug(label: &str) -> String {
    label.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect::<String>().trim_matches('-').to_owned()
}

/// The plots: subscriptions back per 100 ms over time, one per condition
/// (the first run of each strategy), and the peak attempts per strategy and
/// condition. Returns the file names written under `dir`.
pub fn herd_plots(herds: &[HerdResult], dir: &Path) -> super::charts::PlotResult<Vec<String>> {
    let mut names = Vec::new();
    for h in herds {
        let name = format!("herd-{}.svg", slug(&h.label));
        let path = dir.join(&name);
        let root = SVGBackend::new(&path, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let mut lines = Vec::new();
        for s in strategies(h) {
            let Some(run) = h.runs.iter().find(|r| r.strategy == s && r.failure.is_none()) else { continue };
            let points = run
                .connects_10ms
                .chunks(10)
                .enumerate()
                .map(|(i, c)| (i as f64 * 0.1, c.iter().map(|&v| f64::from(v)).sum::<f64>()))
                .collect();
            lines.push(Line { name: s.clone(), colour: strategy_colour(&s), width: 2, dashed: false, points });
        }
        line_chart(
            &root,
            &format!("Subscriptions back per 100 ms after the kill — {}", h.label),
            "seconds since the SIGKILL",
            "subscriptions per 100 ms",
            &lines,
            (Axis::Linear, Axis::Linear),
            |v| format!("{v:.1}"),
            fmt_int,
        )?;
        root.present()?;
        names.push(name);
    }
    if !herds.is_empty() {
        let name = "herd-peak.svg".to_owned();
        let all: Vec<String> = herds.first().map(strategies).unwrap_or_default();
        let bars = Bars {
            title: "Peak connection attempts in one second (min–max over the runs)".into(),
            y_desc: "attempts per second".into(),
            categories: herds.iter().map(|h| h.label.clone()).collect(),
            series: all
                .iter()
                .map(|s| {
                    let values = herds.iter().map(|h| stat(&runs_of(h, s), METRICS[0].1)).collect();
                    (s.clone(), strategy_colour(s), values)
                })
                .collect(),
            y: Axis::Log,
            fmt: fmt_int,
        };
        bar_chart(&dir.join(&name), &bars)?;
        names.push(name);
    }
    Ok(names)
}

/// The claim "reconnecting without jitter makes a thundering herd": holds
/// where, in some condition, a jittered strategy's peak attempts lie wholly
/// below plain exponential's and none's.
pub fn jitter_verdict(herds: &[HerdResult]) -> Option<String> {
    if herds.is_empty() {
        return None;
    }
    let jittered = ["full-jitter", "equal-jitter", "decorrelated-jitter"];
    let mut holds = Vec::new();
    let mut not = Vec::new();
    for h in herds {
        let peak = |s: &str| stat(&runs_of(h, s), METRICS[0].1);
        let (Some(exp), Some(none)) = (peak("exponential"), peak("none")) else { continue };
        let lower: Vec<&str> = jittered.iter().copied().filter(|j| peak(j).is_some_and(|s| below(&s, &exp) && below(&s, &none))).collect();
        if lower.is_empty() {
            not.push(h.label.clone());
        } else {
            holds.push(format!(
                "`{}` ({} against {} without jitter)",
                h.label,
                lower.iter().map(|j| format!("{j} {}", range(peak(j)))).collect::<Vec<_>>().join(", "),
                range(Some(exp))
            ));
        }
    }
    Some(match (holds.is_empty(), not.is_empty()) {
        (true, true) => return None,
        (false, true) => format!("**holds**: peak attempts per second, jitter's range wholly below exponential's and none's in {}", holds.join("; ")),
        (false, false) => format!(
            "**depends**: jitter's peak lies wholly below in {}; the ranges overlap in {}",
            holds.join("; "),
            not.join(", ")
        ),
        (true, _) => format!(
            "**not shown on this machine**: the peak attempts' ranges of jittered and unjittered strategies overlap in {} (a tie, not a refutation: see the chapter on why a restart is not Brooker's contest)",
            not.join(", ")
        ),
    })
}

/// `tables/zombies.md`: reap time per lab, transport and way of dying.
pub fn zombies_table(z: &ZombiesResult) -> String {
    let mut rows = Vec::new();
    for r in &z.reaps {
        rows.push(vec![
            r.runtime.clone(),
            r.how.clone(),
            r.transport.clone(),
            r.reap_secs.map_or(format!("not reaped in {:.0} s", r.waited_secs), |s| format!("{s:.2}")),
            format!("{:.1}", r.bound_secs),
        ]);
    }
    table_text(&["lab", "peer", "transport", "reaped after (s)", "bound (s)"], &rows)
}

/// `params/zombies.md`: the options the reap times follow from, and the
/// kernel's bounds on this machine.
pub fn zombies_params(z: &ZombiesResult) -> String {
    let k = &z.kernel;
    format!(
        "ping interval and keep-alive interval {} s, TCP_USER_TIMEOUT {} s, close linger {} s; on this machine the kernel alone gives up on unacknowledged data after `tcp_retries2` = {} retransmissions, about {:.0} s, and TCP keepalive (only where the application turns it on) declares a silent peer dead after {} s + {} × {} s = {:.0} s",
        z.interval,
        z.user_timeout,
        z.close_linger,
        k.tcp_retries2,
        k.retransmit_give_up_secs,
        k.keepalive_time,
        k.keepalive_probes,
        k.keepalive_intvl,
        k.keepalive_give_up_secs
    )
}

/// The zombies plot: reap time per lab (bars: dropped WebSocket, dropped
/// SSE, stopped WebSocket), in the runtimes' colours.
pub fn zombies_plot(z: &ZombiesResult, dir: &Path) -> super::charts::PlotResult<String> {
    let name = "zombies.svg".to_owned();
    let cases = [("dropped", "ws"), ("dropped", "sse"), ("stopped", "ws")];
    let mut runtimes: Vec<String> = Vec::new();
    for r in z.reaps.iter().filter(|r| r.how != "kernel-only") {
        if !runtimes.contains(&r.runtime) {
            runtimes.push(r.runtime.clone());
        }
    }
    let bars = Bars {
        title: "Seconds until the server closed a dead peer's connection".into(),
        y_desc: "seconds".into(),
        categories: cases.iter().map(|(h, t)| format!("{h} {t}")).collect(),
        series: runtimes
            .iter()
            .map(|rt| {
                let values = cases
                    .iter()
                    .map(|(how, t)| {
                        let v: Vec<f64> = z
                            .reaps
                            .iter()
                            .filter(|r| &r.runtime == rt && r.how == *how && r.transport == *t)
                            .filter_map(|r| r.reap_secs)
                            .collect();
                        (!v.is_empty()).then(|| Stat::of(v))
                    })
                    .collect();
                (rt.clone(), super::colour(rt, &runtimes), values)
            })
            .collect(),
        y: Axis::Linear,
        fmt: |v| format!("{v:.1}"),
    };
    bar_chart(&dir.join(&name), &bars)?;
    Ok(name)
}

/// The claim "heartbeats every 25–30 s find dropped connections".
pub fn heartbeats_verdict(z: Option<&ZombiesResult>) -> Option<String> {
    let z = z?;
    let beat: Vec<_> = z.reaps.iter().filter(|r| r.how != "kernel-only").collect();
    if beat.is_empty() {
        return None;
    }
    let within = beat.iter().filter(|r| r.reap_secs.is_some_and(|s| s <= r.bound_secs)).count();
    let kernel = z.reaps.iter().find(|r| r.how == "kernel-only");
    let kernel_part = kernel.map_or(String::new(), |k| match k.reap_secs {
        None => format!(
            "; without them the same dead SSE peer was still open after {:.0} s, and the kernel alone would retransmit for about {:.0} s",
            k.waited_secs, z.kernel.retransmit_give_up_secs
        ),
        Some(s) => format!("; without them the kernel closed it after {s:.1} s"),
    });
    let head = if within == beat.len() { "**holds, scaled**" } else { "**does not hold for every lab**" };
    Some(format!(
        "{head}: with pings and keep-alives every {} s, {within} of {} dead peers (every lab, dropped and stopped) were closed within interval + pong timeout + 1 s (WebSocket) or interval + TCP_USER_TIMEOUT + 1 s (SSE){kernel_part}. The bound scales with the interval: at 25–30 s it is about a minute",
        z.interval,
        beat.len()
    ))
}

/// The browser experiment, one row per lab and client.
pub fn browser_table(b: &BrowserReconnect) -> String {
    let mut rows = Vec::new();
    for r in &b.runs {
        for (client, c) in [("EventSource", &r.sse), ("WebSocket", &r.ws), ("WebSocket + hand-written reconnection", &r.ws_reconnecting)] {
            rows.push(vec![
                r.runtime.clone(),
                client.to_owned(),
                if c.reconnected { "yes".into() } else { "no".into() },
                c.reconnect_ms.map_or("—".into(), |ms| fmt_int(ms as f64)),
                c.last_event_id_sent.clone().map_or("—".into(), |id| format!("`{id}`")),
                format!("{} of {}", c.missed_recovered, r.missed_published),
                if c.later_received { "yes".into() } else { "no".into() },
                fmt_int(c.duplicates as f64),
            ]);
        }
    }
    let mut t = table_text(
        &["lab", "client", "came back", "ms after the cut", "Last-Event-ID sent", "missed messages recovered", "got the next one", "duplicates"],
        &rows,
    );
    let chromium = b.runs.first().map_or("", |r| r.chromium.as_str());
    t.push_str(&format!("
Headless Chromium {chromium}, commit `{}`, {}.
", b.commit, b.date));
    t
}

/// The claim "SSE reconnects by itself and resumes with Last-Event-ID;
/// WebSocket needs hand-written reconnection".
pub fn reconnection_verdict(b: Option<&BrowserReconnect>) -> Option<String> {
    let b = b?;
    if b.runs.is_empty() {
        return None;
    }
    let n = b.runs.len();
    let all = |f: &dyn Fn(&BrowserRun) -> bool| b.runs.iter().filter(|r| f(r)).count();
    let sse = all(&|r| r.sse.reconnected && r.sse.missed_recovered == r.missed_published && r.sse.last_event_id_sent.is_some());
    let ws_stayed = all(&|r| !r.ws.reconnected && !r.ws.later_received);
    let hand = all(&|r| r.ws_reconnecting.reconnected && r.ws_reconnecting.missed_recovered == r.missed_published);
    let ms = |f: fn(&BrowserRun) -> Option<u64>| {
        let v: Vec<f64> = b.runs.iter().filter_map(f).map(|v| v as f64).collect();
        (!v.is_empty()).then(|| Stat::of(v))
    };
    let head = if sse == n && ws_stayed == n && hand == n { "**holds**" } else { "**does not hold in every lab**" };
    Some(format!(
        "{head}: with every connection cut, Chromium's EventSource came back by itself in {sse} of {n} labs (after {} ms, its built-in retry), sent the last id it had as `Last-Event-ID` and got every message published while it was cut off; the bare WebSocket came back in {} of {n} and missed everything after the cut; a WebSocket with a few lines of hand-written reconnection that resumes with `after=` recovered everything in {hand} of {n} (after {} ms, its own delay)",
        range(ms(|r| r.sse.reconnect_ms)),
        n - ws_stayed,
        range(ms(|r| r.ws_reconnecting.reconnect_ms)),
    ))
}

/// Writes every lifecycle file of `found` under `root` (the results
/// directory, and the book's generated directory). Returns the files
/// written, relative to `root`.
pub fn write(found: &Lifecycle, root: &Path) -> std::io::Result<Vec<PathBuf>> {
    // Every file is written, with "not measured" where its experiment has
    // no results here, so that a chapter's include never dangles.
    let absent = |what: &str| format!("*{what}: not measured in this run*\n");
    let mut md: Vec<(PathBuf, String)> = Vec::new();
    if found.herds.is_empty() {
        for name in ["tables/herd.md", "findings/herd.md"] {
            md.push((name.into(), absent("the herd")));
        }
    } else {
        md.push(("tables/herd.md".into(), herd_table(&found.herds)));
        md.push(("findings/herd.md".into(), herd_findings(&found.herds)));
    }
    md.push(("params/herd.md".into(), herd_params(&found.herds)));
    let verdict = |v: Option<String>| format!("{}\n", v.unwrap_or_else(|| "**not yet measured**".into()));
    md.push(("claims/jitter.md".into(), verdict(jitter_verdict(&found.herds))));
    match &found.zombies {
        Some(z) => {
            md.push(("tables/zombies.md".into(), zombies_table(z)));
            md.push(("params/zombies.md".into(), zombies_params(z)));
        }
        None => {
            md.push(("tables/zombies.md".into(), absent("dead peers")));
            md.push(("params/zombies.md".into(), "dead peers not measured in this run".into()));
        }
    }
    md.push(("claims/heartbeats.md".into(), verdict(heartbeats_verdict(found.zombies.as_ref()))));
    md.push((
        "tables/browser-reconnect.md".into(),
        found.browser.as_ref().map_or_else(|| absent("the browser's reconnection"), browser_table),
    ));
    md.push(("claims/reconnection.md".into(), verdict(reconnection_verdict(found.browser.as_ref()))));
    let mut files = Vec::new();
    for (path, text) in md {
        let full = root.join(&path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(full, text)?;
        files.push(path);
    }
    let plots = root.join("plots");
    std::fs::create_dir_all(&plots)?;
    let plot_err = |e: Box<dyn std::error::Error>| std::io::Error::other(format!("plotting: {e}"));
    for name in herd_plots(&found.herds, &plots).map_err(plot_err)? {
        files.push(PathBuf::from("plots").join(name));
    }
    if let Some(z) = &found.zombies {
        files.push(PathBuf::from("plots").join(zombies_plot(z, &plots).map_err(plot_err)?));
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(reconnected: bool, ms: Option<u64>, recovered: u64, later: bool, id: Option<&str>) -> serde_json::Value {
        serde_json::json!({ "reconnected": reconnected, "reconnect_ms": ms, "missed_recovered": recovered,
            "later_received": later, "duplicates": 0, "last_event_id_sent": id })
    }

    fn run(runtime: &str, sse_back: bool) -> serde_json::Value {
        serde_json::json!({ "runtime": runtime, "chromium": "156.0", "missed_published": 2,
            "sse": client(sse_back, sse_back.then_some(3050), if sse_back { 2 } else { 0 }, sse_back, Some("abc-3")),
            "ws": client(false, None, 0, false, None),
            "ws_reconnecting": client(true, Some(1070), 2, true, None) })
    }

    fn doc(runs: Vec<serde_json::Value>) -> BrowserReconnect {
        serde_json::from_value(serde_json::json!({ "experiment": "x", "date": "d", "commit": "c", "runs": runs })).expect("parses")
    }

    #[test]
    fn the_reconnection_verdict_reads_the_browser_runs() {
        assert_eq!(reconnection_verdict(None), None);
        let held = reconnection_verdict(Some(&doc(vec![run("tokio", true), run("mio", true)]))).expect("a verdict");
        assert!(held.starts_with("**holds**: "), "{held}");
        assert!(held.contains("came back by itself in 2 of 2 labs (after 3,050 ms"), "{held}");
        assert!(held.contains("the bare WebSocket came back in 0 of 2"), "{held}");
        let broken = reconnection_verdict(Some(&doc(vec![run("tokio", true), run("mio", false)]))).expect("a verdict");
        assert!(broken.starts_with("**does not hold in every lab**"), "{broken}");
        assert!(broken.contains("in 1 of 2 labs"), "{broken}");
        let table = browser_table(&doc(vec![run("tokio", true)]));
        assert!(table.contains("| tokio | EventSource | yes | 3,050 | `abc-3` | 2 of 2 | yes | 0 |"), "{table}");
    }
}
