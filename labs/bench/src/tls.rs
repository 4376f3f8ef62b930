//! `rtlab bench-tls`: what TLS and HTTP/2 cost a connection, per lab.
//!
//! A scenario of its own rather than a cell of the matrix: its questions
//! are per connection and per handshake, not per transport and load, so it
//! measures each lab plain and over TLS side by side, and the tokio lab's
//! HTTP/2 streams beside its HTTP/1.1 connections:
//!
//! * **idle**: the server's anonymous resident memory (`RssAnon`) and the
//!   kernel's socket slab caches, before and after opening `--connections`
//!   idle SSE streams; the difference per connection. The kernel figure is
//!   system-wide and counts both ends of each loopback connection.
//! * **handshake**: the server's CPU time (user + system, `/proc`) over
//!   `--handshakes` sequential new connections, each one request
//!   (`GET /stats`, `Connection: close`); per connection. Over TLS, that is
//!   a full handshake (TLS 1.3, X25519, ECDSA P-256: rcgen's default key).
//! * **HTTP/2 streams** (tokio): one HTTP/2 connection, `--streams` idle
//!   SSE streams on it (through the test kit's HTTP/1.1-to-HTTP/2 gateway,
//!   in this process); the server's memory per stream.
//!
//! Every server is a fresh `rtlab serve` process; the certificate is made
//! by `rtlab cert`. The results are one JSON document (`tls.json`, with the
//! machine, toolchain and commit, every raw value) and its tables
//! (`--render` renders a committed one again, `--book` into the book).

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rtlab_testkit::http::request;
use rtlab_testkit::{Launch, RawConn, Running, Sse, rtlab_bin};
use serde_json::{Value, json};

use crate::procfs;
use crate::report::format::fmt_bytes;
use crate::results::{Git, Machine, Stat, Toolchain, utc_now};

/// `rtlab bench-tls` options.
#[derive(Debug, clap::Args)]
pub struct TlsArgs {
    /// Idle connections per lab, plain and TLS.
    #[arg(long, default_value_t = 500)]
    pub connections: usize,
    /// New connections timed for the handshake cost, per lab, plain and TLS.
    #[arg(long, default_value_t = 300)]
    pub handshakes: usize,
    /// SSE streams on one HTTP/2 connection (the tokio lab); at most the
    /// lab's concurrent streams per connection (`rtlab_tokio::MAX_STREAMS`):
    /// a client waits for a free stream beyond it.
    #[arg(long, default_value_t = 200)]
    pub streams: usize,
    /// Runs of every measurement (each on a fresh server).
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// The labs measured.
    #[arg(long, value_delimiter = ',', default_value = "tokio,mio,may,threads")]
    pub runtimes: Vec<String>,
    /// Where the results go: DIR/tls.json and DIR/tables/.
    #[arg(long, default_value = "target/bench-tls")]
    pub out: PathBuf,
    /// Measure nothing: render DIR/tls.json again.
    #[arg(long, value_name = "DIR")]
    pub render: Option<PathBuf>,
    /// Also write the tables into the book (book/src/generated).
    #[arg(long)]
    pub book: Option<PathBuf>,
}

/// Runs the measurements (or only renders, with `--render`).
pub fn run(args: &TlsArgs) -> io::Result<()> {
    if let Some(dir) = &args.render {
        let doc: Value = serde_json::from_slice(&std::fs::read(dir.join("tls.json"))?).map_err(io::Error::other)?;
        return render(&doc, dir, args.book.as_deref());
    }
    let bin = rtlab_bin()?;
    std::fs::create_dir_all(&args.out)?;
    let cert = Cert::make(&bin, &args.out)?;
    let (date, time) = utc_now();
    let git = Git::detect();
    let mut labs = Vec::new();
    for lab in &args.runtimes {
        let mut row = json!({ "runtime": lab });
        for (variant, tls) in [("plain", None), ("tls", Some(&cert))] {
            let (mut user, mut kernel, mut cpu) = (Vec::new(), Vec::new(), Vec::new());
            for run in 0..args.repeat {
                eprintln!("bench-tls: {lab} {variant} run {}", run + 1);
                let (u, k) = idle(&bin, lab, tls, args.connections)?;
                user.push(u);
                kernel.push(k);
                cpu.push(handshakes(&bin, lab, tls, args.handshakes)?);
            }
            row[variant] = json!({
                "user_bytes_per_connection": Stat::of(user),
                "kernel_bytes_per_connection": Stat::of(kernel),
                "server_cpu_us_per_connection": Stat::of(cpu),
            });
        }
        labs.push(row);
    }
    let mut per_stream = Vec::new();
    for run in 0..args.repeat {
        eprintln!("bench-tls: tokio HTTP/2 streams run {}", run + 1);
        per_stream.push(h2_streams(&bin, &cert, args.streams)?);
    }
    let doc = json!({
        "scenario": "tls",
        "date": date, "time": time,
        "machine": Machine::detect(),
        "shared_machine": "yes: measured on a 2-core machine shared with other builds and tests, under flock /tmp/rtlab-measure.lock at nice -19",
        "toolchain": Toolchain::detect(),
        "git": git,
        "parameters": {
            "connections": args.connections, "handshakes": args.handshakes, "streams": args.streams,
            "repeat": args.repeat, "runtimes": args.runtimes,
            "tls": "rustls 0.23 (ring), TLS 1.3, self-signed ECDSA P-256 certificate from rtlab cert",
        },
        "labs": labs,
        "h2": { "runtime": "tokio", "streams": args.streams, "user_bytes_per_stream": Stat::of(per_stream) },
    });
    std::fs::write(args.out.join("tls.json"), serde_json::to_vec_pretty(&doc).map_err(io::Error::other)?)?;
    render(&doc, &args.out, args.book.as_deref())
}

/// The self-signed pair every TLS server of the run serves.
struct Cert {
    pem: String,
    cert: PathBuf,
    key: PathBuf,
}

impl Cert {
    fn make(bin: &Path, dir: &Path) -> io::Result<Cert> {
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let status = std::process::Command::new(bin).arg("cert").arg("--cert").arg(&cert).arg("--key").arg(&key).status()?;
        if !status.success() {
            return Err(io::Error::other("rtlab cert failed"));
        }
        Ok(Cert { pem: std::fs::read_to_string(&cert)?, cert, key })
    }
}

/// A fresh server of `lab`, over TLS with `tls` (HTTP/2 offered only if `h2`).
fn serve(bin: &Path, lab: &str, tls: Option<&Cert>, h2: bool) -> io::Result<Running> {
    let mut launch = Launch::serve(bin, lab);
    if let Some(cert) = tls {
        launch = launch.arg("--tls-cert").arg(&cert.cert).arg("--tls-key").arg(&cert.key);
        if !h2 {
            launch = launch.arg("--no-http2");
        }
    }
    let server = launch.start()?;
    if let Some(cert) = tls {
        rtlab_testkit::tls::mark(server.addr(), &cert.pem);
    }
    // One exchange first: what a lab sets up lazily is not a connection's cost.
    one_request(server.addr());
    Ok(server)
}

fn one_request(addr: SocketAddr) {
    let mut conn = RawConn::connect(addr);
    conn.send(&request("GET", "/stats", "Connection: close\r\n"));
    conn.read_response();
}

fn sample(pid: u32) -> io::Result<procfs::ProcessSample> {
    procfs::process(pid).ok_or_else(|| io::Error::other("the server's /proc entry is gone"))
}

/// Idle SSE connections: (user, kernel) bytes per connection.
fn idle(bin: &Path, lab: &str, tls: Option<&Cert>, n: usize) -> io::Result<(f64, f64)> {
    let server = serve(bin, lab, tls, false)?;
    std::thread::sleep(Duration::from_millis(300));
    let (before, kernel_before) = (sample(server.pid())?, procfs::kernel());
    let streams: Vec<Sse> = (0..n).map(|_| Sse::connect(server.addr(), "/sse?topic=idle", "")).collect();
    std::thread::sleep(Duration::from_millis(500));
    let (after, kernel_after) = (sample(server.pid())?, procfs::kernel());
    drop(streams);
    rtlab_testkit::tls::unmark(server.addr());
    let per = |a: u64, b: u64| (a as f64 - b as f64) / n as f64;
    Ok((per(after.rss_anon, before.rss_anon), per(kernel_after.socket_slab, kernel_before.socket_slab)))
}

/// New connections one after another: server CPU microseconds per connection.
fn handshakes(bin: &Path, lab: &str, tls: Option<&Cert>, n: usize) -> io::Result<f64> {
    let server = serve(bin, lab, tls, false)?;
    let before = sample(server.pid())?;
    for _ in 0..n {
        one_request(server.addr());
    }
    let after = sample(server.pid())?;
    rtlab_testkit::tls::unmark(server.addr());
    Ok((after.cpu_secs - before.cpu_secs) / n as f64 * 1e6)
}

/// Idle SSE streams on one HTTP/2 connection to the tokio lab: bytes per stream.
fn h2_streams(bin: &Path, cert: &Cert, n: usize) -> io::Result<f64> {
    let server = serve(bin, "tokio", Some(cert), true)?;
    rtlab_testkit::tls::unmark(server.addr());
    let gate = rtlab_testkit::h2gate::H2Gate::start(server.addr(), &cert.pem)?;
    // The connection itself, and a first stream, before the baseline.
    let first = Sse::connect(gate.addr, "/sse?topic=idle", "");
    std::thread::sleep(Duration::from_millis(300));
    let before = sample(server.pid())?;
    let streams: Vec<Sse> = (0..n).map(|_| Sse::connect(gate.addr, "/sse?topic=idle", "")).collect();
    std::thread::sleep(Duration::from_millis(500));
    let after = sample(server.pid())?;
    drop((first, streams));
    Ok((after.rss_anon as f64 - before.rss_anon as f64) / n as f64)
}

// ANCHOR: render
/// The tables of a `tls.json`: idle memory, handshake CPU, HTTP/2 streams,
/// and (if `browser-seven.json` is beside its directory, as in
/// `bench-results/`) the browser
/// experiment. Written to `dir/tables/` and, with `book`, `book/tls/`.
pub fn render(doc: &Value, dir: &Path, book: Option<&Path>) -> io::Result<()> {
    let mean = |v: &Value| v["mean"].as_f64().unwrap_or(f64::NAN);
    let us = |v: f64| format!("{v:.0} µs");
    let mut idle = String::from(
        "| lab | user memory, plain | user memory, TLS | TLS adds | kernel, plain | kernel, TLS |\n|---|--:|--:|--:|--:|--:|\n",
    );
    let mut cpu = String::from("| lab | server CPU, plain | server CPU, TLS | TLS adds |\n|---|--:|--:|--:|\n");
    let mut added = Vec::new();
    for lab in doc["labs"].as_array().into_iter().flatten() {
        let name = lab["runtime"].as_str().unwrap_or("?");
        let (p, t) = (&lab["plain"], &lab["tls"]);
        let (pu, tu) = (mean(&p["user_bytes_per_connection"]), mean(&t["user_bytes_per_connection"]));
        let (pk, tk) = (mean(&p["kernel_bytes_per_connection"]), mean(&t["kernel_bytes_per_connection"]));
        let (pc, tc) = (mean(&p["server_cpu_us_per_connection"]), mean(&t["server_cpu_us_per_connection"]));
        idle.push_str(&format!(
            "| {name} | {} | {} | {} | {} | {} |\n",
            fmt_bytes(pu),
            fmt_bytes(tu),
            fmt_bytes(tu - pu),
            fmt_bytes(pk),
            fmt_bytes(tk)
        ));
        cpu.push_str(&format!("| {name} | {} | {} | {} |\n", us(pc), us(tc), us(tc - pc)));
        added.push((name.to_owned(), tu - pu, tc - pc, tu));
    }
    let params = &doc["parameters"];
    let (conns, shakes) = (params["connections"].as_u64().unwrap_or(0), params["handshakes"].as_u64().unwrap_or(0));
    idle.push_str(&format!(
        "\nPer connection: {conns} idle SSE connections per lab and variant, the mean of {} runs (`tls.json` has every value). Kernel: the socket slab caches, system-wide, both ends of each loopback connection.\n",
        params["repeat"]
    ));
    cpu.push_str(&format!(
        "\nServer CPU (user + system) per new connection, {shakes} connections one after another, each one `GET /stats` and closed.\n"
    ));
    let h2 = mean(&doc["h2"]["user_bytes_per_stream"]);
    let tokio_tls = added.iter().find(|a| a.0 == "tokio").map_or(f64::NAN, |a| a.3);
    let streams = format!(
        "| tokio lab, one more idle SSE subscriber | server memory |\n|---|--:|\n| an HTTP/1.1 connection over TLS | {} |\n| a stream on one HTTP/2 connection | {} |\n\n{} streams on one HTTP/2 connection, the mean of {} runs.\n",
        fmt_bytes(tokio_tls),
        fmt_bytes(h2),
        doc["h2"]["streams"],
        params["repeat"]
    );
    let lo = added.iter().map(|a| a.1).fold(f64::INFINITY, f64::min);
    let hi = added.iter().map(|a| a.1).fold(f64::NEG_INFINITY, f64::max);
    let clo = added.iter().map(|a| a.2).fold(f64::INFINITY, f64::min);
    let chi = added.iter().map(|a| a.2).fold(f64::NEG_INFINITY, f64::max);
    let finding = format!(
        "An idle TLS connection costs the server {} to {} more user memory than a plain one (rustls' session and its buffers), depending on the lab; a new TLS connection costs it {} to {} more CPU than a plain one (the handshake). On the tokio lab, one more SSE subscriber costs {} as a stream of an HTTP/2 connection against {} as an HTTP/1.1 connection over TLS.\n",
        fmt_bytes(lo),
        fmt_bytes(hi),
        us(clo),
        us(chi),
        fmt_bytes(h2),
        fmt_bytes(tokio_tls)
    );
    let mut files = vec![("tls-idle.md", idle), ("tls-handshake.md", cpu), ("h2-streams.md", streams), ("tls-finding.md", finding)];
    let seven = dir.parent().map(|results| results.join("browser-seven.json")).unwrap_or_default();
    if let Ok(text) = std::fs::read_to_string(seven) {
        let seven: Value = serde_json::from_str(&text).map_err(io::Error::other)?;
        let mut table = String::from("| protocol | EventSources | opened | received a message | connections used |\n|---|--:|--:|--:|--:|\n");
        for run in seven["runs"].as_array().into_iter().flatten() {
            let protocol = if run["mode"] == "h1" { "HTTP/1.1" } else { "HTTP/2" };
            table.push_str(&format!(
                "| {protocol} | {} | {} | {} | {} |\n",
                run["streams"], run["open"], run["receiving"], run["connections"]
            ));
        }
        table.push_str(&format!("\n{}, {}.\n", seven["chromium"].as_str().unwrap_or("Chromium"), seven["experiment"].as_str().unwrap_or("")));
        files.push(("browser-seven.md", table));
        files.push(("claim-http2.md", http2_verdict(&seven, h2, tokio_tls)));
    }
    for root in std::iter::once(dir.join("tables")).chain(book.map(|b| b.join("tls"))) {
        std::fs::create_dir_all(&root)?;
        for (name, text) in &files {
            std::fs::write(root.join(name), text)?;
        }
    }
    println!("{}", files.iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>().join("\n"));
    Ok(())
}
// ANCHOR_END: render

/// The claims table's verdict on "six HTTP/1.1 connections per host; over
/// HTTP/2 one connection carries many SSE streams", from the browser run and
/// the per-stream cost: one line, no newline (it is included in a table cell).
fn http2_verdict(seven: &Value, h2_stream: f64, h1_connection: f64) -> String {
    let run = |mode: &str| seven["runs"].as_array().into_iter().flatten().find(|r| r["mode"] == mode);
    let n = |r: &Value, key: &str| r[key].as_u64().unwrap_or(0);
    let (Some(h1), Some(h2)) = (run("h1"), run("h2")) else {
        return "**not yet measured**: the browser run has no HTTP/1.1 and HTTP/2 pair.".to_owned();
    };
    let six = n(h1, "open") < n(h1, "streams") && n(h1, "connections") <= 6;
    let one = n(h2, "open") == n(h2, "streams") && n(h2, "connections") == 1;
    let word = match (six, one) {
        (true, true) => "**holds**",
        (false, false) => "**does not hold**",
        _ => "**holds in part**",
    };
    format!(
        "{word} in {}: over HTTP/1.1, {} of {} EventSources to one origin opened, on {} connections; over HTTP/2, {} of {} opened, on {} connection(s). On the tokio lab one more SSE subscriber cost the server {} as an HTTP/2 stream against {} as an HTTP/1.1 connection over TLS.",
        seven["chromium"].as_str().unwrap_or("Chromium"),
        n(h1, "open"),
        n(h1, "streams"),
        n(h1, "connections"),
        n(h2, "open"),
        n(h2, "streams"),
        n(h2, "connections"),
        fmt_bytes(h2_stream),
        fmt_bytes(h1_connection),
    )
    .replace('|', "\\|")
}
