//! `rtlab`: the one binary of the workspace.
//!
//! `rtlab serve --runtime <lab> --addr 127.0.0.1:8080` serves the contract
//! (the book's chapter "The contract", `book/src/contract.md`) on one runtime
//! lab. Every lab gets the same listening socket, the same
//! [`rtlab_core::Config`] and the same stop signal, so that the only
//! difference between two servers is the runtime.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use rtlab_adapter::Stop;
use rtlab_core::{Config, Policy, Server};

/// rtlab: real-time web transports (polling, long polling, SSE, WebSockets)
/// on several Rust runtimes, behind one HTTP contract.
#[derive(Debug, Parser)]
#[command(name = "rtlab", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the contract on one runtime until SIGINT or SIGTERM.
    ///
    /// The first line on stdout is `listening on ADDR` (with the real port
    /// when --addr ends in :0); logs go to stderr (RUST_LOG sets the level).
    Serve(ServeArgs),
    /// Measure labs: without a scenario, the quick matrix of every lab ×
    /// transport × scenario (--full: the committed run); each run starts a
    /// fresh server process. Writes bench-results/<date>-<host>/.
    Bench(rtlab_bench::BenchArgs),
    /// Measure what TLS and HTTP/2 cost per connection, handshake and
    /// stream, each lab plain and over TLS (labs/bench/src/tls.rs).
    BenchTls(rtlab_bench::tls::TlsArgs),
    /// Measure several processes on a real Redis (started here): latency
    /// through Redis against in-process, fan-out over 1/2/4 processes,
    /// Redis's CPU per message, a killed Redis, sticky sessions
    /// (labs/bench/src/scaleout.rs). --render FILE renders a document again.
    BenchCluster(rtlab_bench::scaleout::ScaleoutArgs),
    /// Render a results directory's plots (SVG) and tables (markdown).
    Report(rtlab_bench::report::ReportArgs),
    /// Render the million's results (bench-results/million/*.json): tables,
    /// findings and the broadcast plot (--book: also into the book).
    ReportMillion(rtlab_bench::million_report::MillionReportArgs),
    /// Print the differences between two results directories.
    Compare(rtlab_bench::compare::CompareArgs),
    /// Collect criterion's results (target/criterion, after `cargo bench`)
    /// into a results document with the run's provenance, and render its
    /// tables, findings and claim verdict (--harness: compare with a run).
    Criterion(rtlab_bench::criterion_doc::CriterionArgs),
    /// The deltas experiment: a dashboard pushed to SSE viewers as its full
    /// state or as JSON Patch deltas, swept over how much changes per tick.
    Deltas(rtlab_bench::deltas::DeltasArgs),
    /// What a retained message costs: the core's `retained` example, built
    /// before and after a change, run in turn (bench-results/retained).
    Retained(rtlab_bench::retained::RetainedArgs),
    /// A load-generator worker process (started by `rtlab bench`).
    #[command(hide = true)]
    BenchWorker(rtlab_bench::worker::WorkerArgs),
    /// A herd worker process (started by `rtlab bench reconnect`).
    #[command(hide = true)]
    BenchHerdWorker(rtlab_bench::herd::HerdWorkerArgs),
    /// A crowd worker: up to 19,000 bare sockets (started by `rtlab bench million`).
    #[command(hide = true)]
    BenchCrowd(rtlab_bench::crowd::CrowdArgs),
    /// Serve on N processes as one server: process i on PORT + i (or all on
    /// one port with --shared-port, SO_REUSEPORT), watched and stopped as
    /// one (SIGINT/SIGTERM stops all; a dead process is reported and stops
    /// the rest). Options after `--` go to every `rtlab serve`.
    Cluster(rtlab_bench::cluster::ClusterArgs),
    /// The benchmark's floor: a raw-socket server doing only the kernel
    /// work of a scenario (started by `rtlab bench`).
    #[command(hide = true)]
    BenchFloor(rtlab_bench::floor::FloorArgs),
    /// Print the names of the runtime labs, one per line (for scripts).
    ///
    /// Only the labs that serve the whole contract (the conformance suite
    /// and the interop checks iterate this list); `--baselines` prints the
    /// baselines instead.
    #[command(hide = true)]
    Runtimes(RuntimesArgs),
    /// Write a self-signed certificate for localhost and 127.0.0.1 and its
    /// key (PEM), for `rtlab serve --tls-cert CERT --tls-key KEY`.
    Cert(CertArgs),
    /// Subscribe to a topic as a reconnecting client (labs/client): print
    /// each message (`ID DATA`), each reconnection and missed range, one per
    /// line; resume after the last id on every new connection.
    Listen(rtlab_client::listen::ListenArgs),
    /// Mint a token (an HS256 JWT) for a server started with --token-secret,
    /// and print it: for readers, scripts and tests.
    Token(TokenArgs),
}

/// `rtlab token --secret S --sub NAME --ttl 60s [--topics a,b.*] [--publish]`.
#[derive(Debug, clap::Args)]
struct TokenArgs {
    /// The server's secret (its --token-secret).
    #[arg(long)]
    secret: String,
    /// The client's name (the `sub` claim; presence shows it).
    #[arg(long)]
    sub: String,
    /// How long the token lives from now: seconds, with an optional `s`
    /// (`60s`, `90`, `0.5s`).
    #[arg(long, value_parser = ttl)]
    ttl: Seconds,
    /// Topics the token may use, comma-separated: names, or prefixes ending
    /// in `*` (`news,room.*`). Absent: every topic.
    #[arg(long, value_delimiter = ',')]
    topics: Option<Vec<String>>,
    /// The token may publish (without it: read only).
    #[arg(long)]
    publish: bool,
}

/// A time to live: seconds, with an optional `s` suffix.
fn ttl(s: &str) -> Result<Seconds, String> {
    seconds(s.strip_suffix('s').unwrap_or(s))
}

/// Prints a token whose `exp` is now (the system clock) plus the ttl,
/// rounded up to a whole second (`exp` is whole seconds).
fn mint(args: &TokenArgs) -> ExitCode {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let exp = (now + args.ttl.0).as_secs_f64().ceil() as u64;
    let claims =
        rtlab_core::auth::Claims { sub: args.sub.clone(), exp, topics: args.topics.clone(), publish: args.publish };
    println!("{}", rtlab_core::auth::mint(args.secret.as_bytes(), &claims));
    ExitCode::SUCCESS
}

#[derive(Debug, clap::Args)]
struct CertArgs {
    /// Where the certificate goes.
    #[arg(long, default_value = "cert.pem")]
    cert: std::path::PathBuf,
    /// Where the private key goes.
    #[arg(long, default_value = "key.pem")]
    key: std::path::PathBuf,
}

#[derive(Debug, clap::Args)]
struct RuntimesArgs {
    /// Print the baselines instead: servers of publish, SSE and WebSocket
    /// only, not of the whole contract (for the benchmarks of those).
    #[arg(long)]
    baselines: bool,
}

/// The runtime labs. Adding a lab adds a variant and a line in [`serve`].
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Runtime {
    /// One tokio task per connection on a multi-threaded runtime.
    Tokio,
    /// Hand-written mio event loops, one per core: readiness, explicit state machines.
    Mio,
    /// One may stackful coroutine per connection, blocking-style code on a few threads.
    May,
    /// One OS thread per connection with a small stack (the baseline); 503 when threads run out.
    Threads,
    /// The framework baseline, not a full lab: publish, SSE and WebSocket
    /// written first with axum and its defaults (not in `rtlab runtimes`).
    Axum,
}

impl Runtime {
    /// A baseline serves only part of the contract (publish, SSE, WebSocket)
    /// and is left out of `rtlab runtimes`, so that the conformance suite
    /// and the interop checks only meet full labs.
    fn is_baseline(self) -> bool {
        matches!(self, Runtime::Axum)
    }
}

// The options of `rtlab serve`. Their defaults are not written here: each is
// read from `Config::default()`, the one place they are written, and `--help`
// shows it. (A `//` comment: a doc comment here would become clap's help text.)
#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Which runtime lab serves.
    #[arg(long)]
    runtime: Runtime,
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// A shared broker, `redis://HOST:PORT`: every server on the same one
    /// serves one topic space (ids, fan-out, replay). Without it the server
    /// is self-contained.
    #[arg(long, value_name = "URL")]
    broker: Option<String>,
    /// With --broker: seconds a subscriber of a process that stopped
    /// refreshing it (it died) stays in /presence (decimals allowed).
    #[arg(long, default_value_t = Seconds(Config::default().presence_ttl), value_parser = seconds)]
    presence_ttl: Seconds,
    /// Messages each topic retains for replay.
    #[arg(long, default_value_t = Config::default().retention as u64, value_parser = clap::value_parser!(u64).range(1..))]
    retention: u64,
    /// Largest message a publish may carry, in bytes (larger: 413).
    #[arg(long, default_value_t = Config::default().max_message)]
    max_message: usize,
    /// Largest message /echo accepts, in bytes (larger: close 1009).
    #[arg(long, default_value_t = Config::default().max_echo_message)]
    max_echo_message: usize,
    /// Seconds between SSE keep-alive comments (decimals allowed).
    #[arg(long, default_value_t = Seconds(Config::default().keepalive), value_parser = seconds)]
    keepalive: Seconds,
    /// Seconds between WebSocket pings on /ws; no pong for two intervals closes (decimals allowed).
    #[arg(long, default_value_t = Seconds(Config::default().ping_interval), value_parser = seconds)]
    ping_interval: Seconds,
    /// Bytes a subscriber may have waiting in the server before the policy acts.
    #[arg(long, default_value_t = Config::default().outbox_budget)]
    outbox_budget: usize,
    /// What happens to a subscriber over its budget: disconnect it; drop its
    /// oldest messages and tell it; or unbounded (a demonstration of the
    /// failure: memory grows without limit).
    #[arg(long, default_value_t = Config::default().policy)]
    policy: Policy,
    /// Seconds a closing connection may take to flush and let the peer finish (decimals allowed).
    #[arg(long, default_value_t = Seconds(Config::default().close_linger), value_parser = seconds)]
    close_linger: Seconds,
    /// SO_SNDBUF for accepted sockets, in bytes (0: the kernel's autotuning).
    #[arg(long, default_value_t = Config::default().socket_send_buffer)]
    send_buffer: usize,
    // Limits: what a client may make the server hold (the book's chapter
    // "Bad input and hostile clients").
    /// Largest request head (request line and headers), in bytes (larger: 431).
    #[arg(long, default_value_t = Config::default().max_head as u64, value_parser = clap::value_parser!(u64).range(256..))]
    max_head: u64,
    /// Seconds a request may take to arrive, head and body, from its first
    /// byte; slower: 408 and close (decimals allowed).
    #[arg(long, default_value_t = Seconds(Config::default().request_timeout), value_parser = seconds)]
    request_timeout: Seconds,
    /// Seconds a connection may stay open with no request in progress,
    /// before its first and between keep-alive requests; then it is closed
    /// without a response (decimals allowed).
    #[arg(long, default_value_t = Seconds(Config::default().idle_timeout), value_parser = seconds)]
    idle_timeout: Seconds,
    /// Most topics kept at once; a publish or subscription that would create
    /// one more gets 503, unless an idle topic can be evicted.
    #[arg(long, default_value_t = Config::default().max_topics as u64, value_parser = clap::value_parser!(u64).range(1..))]
    max_topics: u64,
    /// Seconds a topic must have had no subscriber and no new message before
    /// it may be evicted to make room (only at --max-topics) (decimals allowed).
    #[arg(long, default_value_t = Seconds(Config::default().topic_ttl), value_parser = seconds)]
    topic_ttl: Seconds,
    /// Most connections served at once; the next client gets 503. 0: the
    /// open-files limit (ulimit -n) less a reserve for the server's own
    /// descriptors.
    #[arg(long, default_value_t = Config::default().max_connections)]
    max_connections: usize,
    /// Seconds sent bytes may stay unacknowledged before the kernel drops
    /// the connection (TCP_USER_TIMEOUT; 0: the kernel's default, about 15
    /// minutes of retransmissions) (decimals allowed).
    #[arg(long, default_value_t = Config::default().tcp_user_timeout.as_secs_f64(), value_parser = non_negative_seconds)]
    tcp_user_timeout: f64,
    /// Length of the listen socket's accept queue (listen(2)'s backlog; the
    /// kernel caps it at net.core.somaxconn). A small one makes a herd of
    /// reconnecting clients wait for SYN retransmissions.
    #[arg(long, default_value_t = DEFAULT_BACKLOG, value_parser = clap::value_parser!(i32).range(1..))]
    backlog: i32,
    /// Set SO_REUSEPORT on the listener, so that several processes can
    /// listen on one port and the kernel spreads connections over them
    /// (`rtlab cluster --shared-port`).
    #[arg(long)]
    reuseport: bool,
    /// Serve TLS with this PEM certificate chain (with --tls-key); `rtlab
    /// cert` writes a self-signed pair. The tokio lab then also offers
    /// HTTP/2 (ALPN "h2"), unless --no-http2.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Offer only HTTP/1.1 over TLS, also on the tokio lab.
    #[arg(long)]
    no_http2: bool,
    // Tokens and origins (contract "Tokens and origins"; the book's chapter
    // "Tokens, expiry and origins").
    /// Ask /publish, /poll, /sse and /ws for an HS256 token signed with this
    /// secret (`rtlab token` mints them); live connections end at its exp.
    #[arg(long)]
    token_secret: Option<String>,
    /// Seconds over which connections whose tokens expire together are
    /// spread: each closes at a deadline drawn in [exp - spread, exp),
    /// seeded, the same on every run (decimals allowed; absent: at exp).
    #[arg(long, value_parser = seconds, requires = "token_secret")]
    expiry_spread: Option<Seconds>,
    /// The seed of the expiry spread's draw.
    #[arg(long, default_value_t = 0, requires = "token_secret")]
    expiry_seed: u64,
    /// An Origin a browser request may come from (repeatable, e.g.
    /// https://example.org); others get 403. Absent: any origin.
    #[arg(long = "allowed-origin")]
    allowed_origins: Vec<String>,
    /// Refuse WebSocket upgrades with 501 (tests clients that fall back to
    /// long polling).
    #[arg(long)]
    refuse_upgrade: bool,
}

/// The accept backlog by default: deep, because the benchmarks open
/// thousands of connections at once, and std's default (128) would make
/// clients wait for SYN retransmits.
const DEFAULT_BACKLOG: i32 = 4096;

/// Parses a number of seconds, zero allowed ("0", "2.5").
fn non_negative_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(secs) if (0.0..=86_400.0).contains(&secs) => Ok(secs),
        _ => Err(format!("'{s}' is not a number of seconds between 0 and 86400")),
    }
}

/// A duration given on the command line as a number of seconds. It prints as
/// it parses ("15", "0.3"), so that `--help` can show a [`Config`] default.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Seconds(Duration);

impl std::fmt::Display for Seconds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.as_secs_f64())
    }
}

/// Parses a positive number of seconds, decimals allowed ("15", "0.3").
fn seconds(s: &str) -> Result<Seconds, String> {
    match s.parse::<f64>() {
        Ok(secs) if secs > 0.0 && secs.is_finite() && secs <= 86_400.0 => Ok(Seconds(Duration::from_secs_f64(secs))),
        _ => Err(format!("'{s}' is not a number of seconds between 0 and 86400")),
    }
}

impl ServeArgs {
    fn config(&self) -> Config {
        Config {
            retention: self.retention as usize,
            max_message: self.max_message,
            max_echo_message: self.max_echo_message,
            keepalive: self.keepalive.0,
            ping_interval: self.ping_interval.0,
            outbox_budget: self.outbox_budget,
            policy: self.policy,
            close_linger: self.close_linger.0,
            socket_send_buffer: self.send_buffer,
            max_head: self.max_head as usize,
            request_timeout: self.request_timeout.0,
            idle_timeout: self.idle_timeout.0,
            max_topics: self.max_topics as usize,
            topic_ttl: self.topic_ttl.0,
            max_connections: self.max_connections,
            tcp_user_timeout: Duration::from_secs_f64(self.tcp_user_timeout),
            presence_ttl: self.presence_ttl.0,
            tokens: self.token_secret.as_ref().map(|secret| {
                let mut tokens = rtlab_core::auth::Tokens::new(secret.as_bytes());
                tokens.spread = self.expiry_spread.map_or(Duration::ZERO, |s| s.0);
                tokens.seed = self.expiry_seed;
                tokens
            }),
            allowed_origins: self.allowed_origins.clone(),
            refuse_upgrade: self.refuse_upgrade,
            ..Config::default()
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // One line: clap's message without its usage block.
            let rendered = e.render().to_string();
            let line = rendered.lines().take_while(|l| !l.trim().is_empty()).map(str::trim).collect::<Vec<_>>().join(" ");
            eprintln!("{line} (see rtlab --help)");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            // may logs every socket it registers at info: keep it to warnings.
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,may=warn".into()),
        )
        .init();
    match cli.command {
        Command::Runtimes(args) => {
            for runtime in Runtime::value_variants().iter().filter(|r| r.is_baseline() == args.baselines) {
                if let Some(name) = runtime.to_possible_value() {
                    println!("{}", name.get_name());
                }
            }
            ExitCode::SUCCESS
        }
        Command::Report(args) => match rtlab_bench::report::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("rtlab report: {e}");
                ExitCode::FAILURE
            }
        },
        Command::ReportMillion(args) => match rtlab_bench::million_report::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("rtlab report-million: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Compare(args) => match rtlab_bench::compare::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("rtlab compare: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Deltas(args) => match rtlab_bench::deltas::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("rtlab deltas: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Retained(args) => match rtlab_bench::retained::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("rtlab retained: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Criterion(args) => match rtlab_bench::criterion_doc::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("rtlab criterion: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Bench(args) => match rtlab_bench::run_cli(&args) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("rtlab bench: {e}");
                ExitCode::FAILURE
            }
        },
        Command::BenchCluster(args) => match rtlab_bench::scaleout::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("rtlab bench-cluster: {e}");
                ExitCode::FAILURE
            }
        },
        Command::BenchTls(args) => match rtlab_bench::tls::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("rtlab bench-tls: {e}");
                ExitCode::FAILURE
            }
        },
        Command::BenchWorker(args) => match rtlab_bench::worker::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("rtlab bench-worker: {e}");
                ExitCode::FAILURE
            }
        },
        Command::BenchHerdWorker(args) => match rtlab_bench::herd::worker(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("rtlab bench-herd-worker: {e}");
                ExitCode::FAILURE
            }
        },
        Command::BenchCrowd(args) => match rtlab_bench::crowd::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("rtlab bench-crowd: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Cluster(args) => {
            let terminate = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let interrupt = Arc::new(std::sync::atomic::AtomicBool::new(false));
            for (signal, flag) in [(signal_hook::consts::SIGTERM, &terminate), (signal_hook::consts::SIGINT, &interrupt)] {
                if let Err(e) = signal_hook::flag::register(signal, flag.clone()) {
                    eprintln!("rtlab cluster: {e}");
                    return ExitCode::FAILURE;
                }
            }
            match rtlab_bench::cluster::run_cli(&args, &terminate, &interrupt) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("rtlab cluster: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::BenchFloor(args) => match rtlab_bench::floor::serve(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("rtlab bench-floor: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Listen(args) => rtlab_client::listen::run(&args),
        Command::Cert(args) => match rtlab_adapter::self_signed()
            .and_then(|(cert, key)| std::fs::write(&args.cert, cert).and_then(|()| std::fs::write(&args.key, key)))
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("rtlab cert: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Token(args) => mint(&args),
        Command::Serve(args) => match serve(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("rtlab: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn serve(args: &ServeArgs) -> std::io::Result<()> {
    // ANCHOR: tls_options
    // TLS first: a certificate that does not load is an error before listening.
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            use rtlab_adapter::tls::{ALPN_H2, ALPN_HTTP1};
            let h2 = matches!(args.runtime, Runtime::Tokio) && !args.no_http2;
            let alpn: &[&[u8]] = if h2 { &[ALPN_H2, ALPN_HTTP1] } else { &[ALPN_HTTP1] };
            Some(rtlab_adapter::Tls::from_pem_files(cert, key, alpn)?)
        }
        _ => None,
    };
    // ANCHOR_END: tls_options
    if tls.is_some() && matches!(args.runtime, Runtime::Axum) {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "the axum baseline serves no TLS"));
    }
    let listener = listen(args.addr, args.backlog, args.reuseport)?;
    let addr = listener.local_addr()?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {addr}")?;
    stdout.flush()?;
    drop(stdout);
    tracing::info!(runtime = ?args.runtime, %addr, tls = tls.is_some(), "serving");

    let core_options = args.token_secret.is_some() || !args.allowed_origins.is_empty() || args.refuse_upgrade;
    if args.runtime.is_baseline() && core_options {
        return Err(std::io::Error::other("the axum baseline has no core: no tokens, origins or upgrade refusal"));
    }
    let stop = Stop::new();
    watch_signals(stop.clone())?;
    let server = match &args.broker {
        None => Server::new(args.config()),
        Some(url) => {
            let broker = rtlab_redis::RedisBroker::new(url, args.retention as usize, args.presence_ttl.0)
                .map_err(|e| std::io::Error::other(format!("--broker {url}: {e}")))?;
            let server = Server::with_broker(args.config(), broker.clone());
            broker.attach(&server);
            server
        }
    };
    // ANCHOR: dispatch
    match args.runtime {
        Runtime::Tokio => rtlab_tokio::serve(listener, server, stop, tls)?,
        Runtime::Mio => rtlab_mio::serve(listener, server, stop, tls)?,
        Runtime::May => rtlab_may::serve(listener, server, stop, tls)?,
        Runtime::Threads => rtlab_threads::serve(listener, server, stop, tls)?,
        Runtime::Axum => rtlab_axum::serve(listener, server.config.clone(), stop)?,
    }
    // ANCHOR_END: dispatch
    tracing::info!("stopped");
    Ok(())
}

/// Binds with an accept backlog of `backlog` ([`DEFAULT_BACKLOG`] unless
/// `--backlog` says otherwise), with SO_REUSEPORT when `reuseport` (several
/// processes on one port: `rtlab cluster --shared-port`).
fn listen(addr: SocketAddr, backlog: i32, reuseport: bool) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if reuseport {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

/// The first SIGINT/SIGTERM requests a graceful stop; a second one exits at once.
fn watch_signals(stop: Arc<Stop>) -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        let mut forever = signals.forever();
        if let Some(signal) = forever.next() {
            tracing::info!(signal, "stop requested");
            stop.stop();
        }
        if forever.next().is_some() {
            std::process::exit(130);
        }
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `rtlab serve` without options serves exactly `Config::default()`: the
    /// defaults clap shows and applies survive their round trip through text.
    #[test]
    fn serve_defaults_are_config_defaults() {
        let cli = Cli::try_parse_from(["rtlab", "serve", "--runtime", "tokio"]).unwrap();
        let Command::Serve(args) = cli.command else { panic!("not serve") };
        assert_eq!(format!("{:?}", args.config()), format!("{:?}", Config::default()));
    }

    /// clap's own consistency checks, among them that every default parses.
    #[test]
    fn cli_is_consistent() {
        <Cli as clap::CommandFactory>::command().debug_assert();
    }

    #[test]
    fn seconds_print_as_they_parse() {
        for s in ["15", "0.3", "2.5", "86400"] {
            assert_eq!(seconds(s).unwrap().to_string(), s);
        }
        assert!(seconds("0").is_err() && seconds("-1").is_err() && seconds("nan").is_err());
    }
}
