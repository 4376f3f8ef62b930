//! The expiry spike: what happens when thousands of tokens minted together
//! run out together, with and without the server's `--expiry-spread`.
//!
//! One run: a fresh `rtlab serve --token-secret ...` process; N event
//! streams opened, each with its own token (`sub` = `client-i`), all minted
//! in the same second with the same `exp`; at `exp` (less the spread's draw)
//! the server ends each stream with `event: expired`, and the client
//! reconnects at once with a fresh token — what a client does whose token
//! refresh is instant. The run records, for every connection, when its
//! stream ended (relative to `exp`) and how long the reconnection took until
//! the new stream's `200`: the reconnections per 100 ms are the spike, the
//! reconnection time is what the spike costs each client (accept queue,
//! token checks, one core for all of it).
//!
//! The clients are one mio event loop in this process; the tokens are
//! minted here with `jsonwebtoken`, independently of the server's code.
//! Every connection must see its `expired` event and reconnect, or the run
//! fails and reports no numbers (verify before measuring).
//!
//! The document, `expiry.json`, holds the machine, kernel, toolchain, commit,
//! parameters and every raw value; `rtlab report DIR [--book DIR]` renders
//! its table and plot ([`report`]).

use std::collections::BTreeMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use serde::{Deserialize, Serialize};

use crate::results::{Git, Machine, Toolchain};

/// The results file's name in its directory.
pub const FILE: &str = "expiry.json";

const SECRET: &str = "expiry bench secret";

/// `cargo run --release -p rtlab-bench --example expiry_spike -- ...`.
#[derive(Debug, Clone, clap::Args)]
pub struct ExpiryArgs {
    /// The rtlab binary that serves.
    #[arg(long, default_value = "target/release/rtlab")]
    pub rtlab: PathBuf,
    /// The runtime lab to measure.
    #[arg(long, default_value = "tokio")]
    pub runtime: String,
    /// Event streams whose tokens expire together.
    #[arg(long, default_value_t = 5000)]
    pub connections: usize,
    /// The server's --expiry-spread values to compare, seconds (0: none).
    #[arg(long, value_delimiter = ',', default_value = "0,10")]
    pub spreads: Vec<f64>,
    /// Runs of each spread.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Seconds from minting to `exp`, beyond the spread: time to open every
    /// connection first.
    #[arg(long, default_value_t = 8)]
    pub lead: u64,
    /// The results directory (expiry.json is written there).
    #[arg(long)]
    pub out: PathBuf,
    /// A note stored with the results (e.g. that the machine was shared).
    #[arg(long, default_value = "")]
    pub note: String,
}

/// One run's raw values and what follows from them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExpiryRun {
    /// The server's --expiry-spread, seconds.
    pub spread_s: f64,
    /// Which repeat (0-based).
    pub repeat: usize,
    /// Every stream's end, milliseconds relative to `exp` (negative: before).
    pub closed_ms: Vec<f64>,
    /// Every reconnection's time from the end of the old stream to the new
    /// stream's `200`, milliseconds.
    pub reconnect_ms: Vec<f64>,
    /// Most streams ended (so reconnections started) in one 100 ms bin.
    pub peak_per_100ms: usize,
    /// From the first stream's end to the last reconnection, milliseconds.
    pub herd_ms: f64,
    /// Reconnection time p50, p99, max (milliseconds).
    pub reconnect_p50_ms: f64,
    pub reconnect_p99_ms: f64,
    pub reconnect_max_ms: f64,
}

/// The results document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExpiryDoc {
    pub scenario: String,
    pub runtime: String,
    pub connections: usize,
    pub lead_s: u64,
    pub started_unix: u64,
    pub note: String,
    pub machine: Machine,
    pub toolchain: Toolchain,
    pub git: Git,
    pub versions: BTreeMap<String, String>,
    pub runs: Vec<ExpiryRun>,
}

/// Runs every spread `repeats` times (interleaved) and writes `expiry.json`.
pub fn run(args: &ExpiryArgs) -> io::Result<ExpiryDoc> {
    crate::raise_nofile_limit();
    let mut doc = ExpiryDoc {
        scenario: "expiry".into(),
        runtime: args.runtime.clone(),
        connections: args.connections,
        lead_s: args.lead,
        started_unix: unix_now() as u64,
        note: args.note.clone(),
        machine: Machine::detect(),
        toolchain: Toolchain::detect(),
        git: Git::detect(),
        versions: crate::results::crate_versions(),
        runs: Vec::new(),
    };
    for repeat in 0..args.repeats {
        for &spread in &args.spreads {
            let run = one_run(args, spread, repeat)?;
            crate::say(&format!(
                "expiry: spread {spread} s, run {repeat}: peak {} reconnects per 100 ms, herd back in {:.0} ms, \
                 reconnect p99 {:.1} ms",
                run.peak_per_100ms, run.herd_ms, run.reconnect_p99_ms
            ));
            doc.runs.push(run);
        }
    }
    doc.machine.load_end = crate::procfs::loadavg();
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(args.out.join(FILE), serde_json::to_vec_pretty(&doc).map_err(io::Error::other)?)?;
    Ok(doc)
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// An HS256 token for `sub`, expiring at `exp` (any topic, read only).
fn token(sub: &str, exp: u64) -> String {
    let claims = serde_json::json!({ "sub": sub, "exp": exp });
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).expect("HS256 signing")
}

/// Where one client is.
#[derive(Debug, PartialEq)]
enum Phase {
    /// The first stream: its request is being sent, or its head awaited.
    First,
    /// The first stream is open; waiting for `event: expired`.
    Streaming,
    /// Reconnecting: the new stream's request sent, its head awaited.
    Again,
    /// The new stream answered `200`.
    Back,
}

struct Client {
    stream: TcpStream,
    phase: Phase,
    request: Vec<u8>,
    sent: usize,
    buf: Vec<u8>,
    closed: Option<Instant>,
    back: Option<Instant>,
}

// ANCHOR: one_run
/// One fresh server, N streams with tokens that share one `exp`, and the
/// reconnection of each at its stream's end.
fn one_run(args: &ExpiryArgs, spread: f64, repeat: usize) -> io::Result<ExpiryRun> {
    let mut server_args = vec!["--token-secret".to_owned(), SECRET.to_owned(), "--expiry-seed".into(), repeat.to_string()];
    if spread > 0.0 {
        server_args.extend(["--expiry-spread".to_owned(), spread.to_string()]);
    }
    let server = rtlab_testkit::Launch::serve(&args.rtlab, &args.runtime).args(&server_args).start()?;
    let addr = server.addr();
    // Minted together: one exp for all, far enough for every stream to open
    // before the first (spread) deadline.
    let exp = unix_now().ceil() as u64 + args.lead + spread.ceil() as u64;
    let exp_at = Instant::now() + Duration::from_secs_f64(exp as f64 - unix_now());
    let later = exp + 3600;
    let mut poll = Poll::new()?;
    let mut clients: Vec<Client> = Vec::with_capacity(args.connections);
    let mut opened = 0;
    let mut events = Events::with_capacity(1024);
    let give_up = exp_at + Duration::from_secs(60);
    while clients.iter().filter(|c| c.phase == Phase::Back).count() < args.connections {
        // Open new streams while fewer than 256 are still on their way.
        while clients.len() < args.connections && clients.len() - opened < 256 {
            let i = clients.len();
            let request = sse_request(&format!("client-{i}"), exp);
            clients.push(open(&poll, addr, i, request)?);
        }
        let now = Instant::now();
        if now > give_up {
            let stuck = clients.iter().filter(|c| c.phase != Phase::Back).count();
            return Err(io::Error::other(format!("{stuck} clients did not reconnect within 60 s of exp")));
        }
        poll.poll(&mut events, Some(Duration::from_millis(50)))?;
        let now = Instant::now();
        for event in &events {
            let i = event.token().0;
            let c = &mut clients[i];
            if c.sent < c.request.len() {
                match c.stream.write(&c.request[c.sent..]) {
                    Ok(n) => c.sent += n,
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::NotConnected) => continue,
                    Err(e) => return Err(io::Error::other(format!("client {i}: write: {e}"))),
                }
            }
            let mut chunk = [0u8; 4096];
            let eof = loop {
                match c.stream.read(&mut chunk) {
                    Ok(0) => break true,
                    Ok(n) => c.buf.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
                    Err(e) => return Err(io::Error::other(format!("client {i}: read: {e}"))),
                }
            };
            match c.phase {
                Phase::First | Phase::Again if has(&c.buf, b"\r\n\r\n") => {
                    if !c.buf.starts_with(b"HTTP/1.1 200") {
                        let head = String::from_utf8_lossy(&c.buf).lines().next().unwrap_or("").to_owned();
                        return Err(io::Error::other(format!("client {i}: {head}")));
                    }
                    if c.phase == Phase::First {
                        opened += 1;
                        c.phase = Phase::Streaming;
                    } else {
                        c.back = Some(now);
                        c.phase = Phase::Back;
                    }
                }
                Phase::Streaming if has(&c.buf, b"event: expired") => {
                    // The stream ended: reconnect at once with a fresh token.
                    poll.registry().deregister(&mut c.stream)?;
                    let request = sse_request(&format!("client-{i}"), later);
                    *c = Client { closed: Some(now), ..open(&poll, addr, i, request)? };
                    c.phase = Phase::Again;
                }
                _ if eof => return Err(io::Error::other(format!("client {i}: the server closed in phase {:?}", c.phase))),
                _ => {}
            }
        }
    }
    drop(server);
    Ok(summarize(spread, repeat, exp_at, &clients))
}
// ANCHOR_END: one_run

fn sse_request(sub: &str, exp: u64) -> Vec<u8> {
    format!("GET /sse?topic=expiry&token={} HTTP/1.1\r\nHost: rtlab\r\nAccept: text/event-stream\r\n\r\n", token(sub, exp))
        .into_bytes()
}

fn open(poll: &Poll, addr: SocketAddr, i: usize, request: Vec<u8>) -> io::Result<Client> {
    let mut stream = TcpStream::connect(addr)?;
    poll.registry().register(&mut stream, Token(i), Interest::READABLE | Interest::WRITABLE)?;
    Ok(Client { stream, phase: Phase::First, request, sent: 0, buf: Vec::new(), closed: None, back: None })
}

fn has(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn ms(d: f64) -> f64 {
    (d * 1e5).round() / 100.0 // milliseconds, to 10 µs
}

/// Raw values and their summary.
fn summarize(spread: f64, repeat: usize, exp_at: Instant, clients: &[Client]) -> ExpiryRun {
    let signed = |t: Instant| match t.checked_duration_since(exp_at) {
        Some(after) => after.as_secs_f64(),
        None => -exp_at.duration_since(t).as_secs_f64(),
    };
    let closed_ms: Vec<f64> = clients.iter().filter_map(|c| c.closed).map(|t| ms(signed(t))).collect();
    // Raw values in the order the clients were opened; a sorted copy for the quantiles.
    let reconnect_ms: Vec<f64> =
        clients.iter().filter_map(|c| Some(ms(c.back?.duration_since(c.closed?).as_secs_f64()))).collect();
    let mut sorted = reconnect_ms.clone();
    sorted.sort_by(f64::total_cmp);
    let q = |p: f64| sorted.get(((sorted.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0.0);
    let first = clients.iter().filter_map(|c| c.closed).min();
    let last = clients.iter().filter_map(|c| c.back).max();
    ExpiryRun {
        spread_s: spread,
        repeat,
        peak_per_100ms: per_100ms(&closed_ms).iter().map(|(_, n)| *n).max().unwrap_or(0),
        herd_ms: match (first, last) {
            (Some(a), Some(b)) => ms(b.duration_since(a).as_secs_f64()),
            _ => 0.0,
        },
        reconnect_p50_ms: q(0.5),
        reconnect_p99_ms: q(0.99),
        reconnect_max_ms: q(1.0),
        closed_ms,
        reconnect_ms,
    }
}

/// Stream ends per 100 ms bin: `(bin start in seconds relative to exp, count)`,
/// every bin from the first to the last, empty ones included.
pub fn per_100ms(closed_ms: &[f64]) -> Vec<(f64, usize)> {
    let bin = |v: &f64| (v / 100.0).floor() as i64;
    let (Some(lo), Some(hi)) = (closed_ms.iter().map(bin).min(), closed_ms.iter().map(bin).max()) else {
        return Vec::new();
    };
    let mut counts = vec![0usize; (hi - lo + 1) as usize];
    for v in closed_ms {
        counts[(bin(v) - lo) as usize] += 1;
    }
    counts.into_iter().enumerate().map(|(k, n)| ((lo + k as i64) as f64 / 10.0, n)).collect()
}

/// Whether `dir` (or the file it names) holds an expiry document.
pub fn is_expiry(path: &Path) -> bool {
    path.join(FILE).is_file() || path.file_name().is_some_and(|n| n == FILE)
}

/// Reads an expiry document from its directory or file.
pub fn read(path: &Path) -> io::Result<ExpiryDoc> {
    let file = if path.is_dir() { path.join(FILE) } else { path.to_owned() };
    serde_json::from_slice(&std::fs::read(&file)?).map_err(|e| io::Error::other(format!("{}: {e}", file.display())))
}

pub mod report;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_cover_every_100ms_from_first_to_last() {
        let bins = per_100ms(&[-250.0, -201.0, -199.0, 0.0, 99.9, 130.0]);
        assert_eq!(bins, vec![(-0.3, 2), (-0.2, 1), (-0.1, 0), (0.0, 2), (0.1, 1)]);
        assert!(per_100ms(&[]).is_empty());
    }

    #[test]
    fn a_minted_token_is_an_hs256_jwt_with_sub_and_exp() {
        let t = token("client-7", 42);
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        v.validate_exp = false;
        let key = jsonwebtoken::DecodingKey::from_secret(SECRET.as_bytes());
        let claims = jsonwebtoken::decode::<serde_json::Value>(&t, &key, &v).unwrap().claims;
        assert_eq!(claims, serde_json::json!({"sub": "client-7", "exp": 42}));
    }
}
