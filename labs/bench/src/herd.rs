//! `rtlab bench reconnect`: the thundering herd.
//!
//! N subscribers (the client library, `labs/client`, one tokio task each in
//! worker processes) hold SSE or WebSocket subscriptions to one topic; the
//! server is killed with SIGKILL — no close, no goodbye — and started again
//! on the same address after a pause. Every client then reconnects as its
//! back-off strategy says. Per run the experiment records, from the
//! clients' side:
//!
//! * connection attempts and successful subscriptions per 10 ms, from which
//!   the report draws *subscriptions back per 100 ms* over time and takes the
//!   peak attempts in any one second;
//! * failed attempts (refused while the server was down, SYNs that found the
//!   accept queue full and timed out, `503`s): attempts − successes;
//! * when each client was back (its first subscription after the kill): the
//!   times until 99 % and 100 % are back, counted from the restart;
//! * messages across the restart: three are published before the kill and
//!   three as soon as the new server is up; each client's share of the
//!   second three that it never got is *lost*, either *with a signal* (the
//!   missed/reset signal) or *silently*. A new server's ids start again at 1
//!   in a new epoch (the contract's "Stream identity"): a client resuming
//!   with the old epoch's id is told with the reset signal, never silence —
//!   which the experiment checks for every client.
//!
//! The conditions under which a synchronized reconnect hurts are server
//! options passed through (`--server-arg=--backlog=64`, `--runtime threads`)
//! and named with `--label`; every strategy runs under the same ones,
//! `--repeats` times, so a strategy is called better only where the runs'
//! ranges separate (`rtlab report`, [`crate::report::herd`]).

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::ControlFlow;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rtlab_client::{Backoff, Config, Event, Strategy, Subscriber, Transport, Url};
use rtlab_testkit::{Launch, Running, Stderr};
use serde::{Deserialize, Serialize};

use crate::client::Publisher;
use crate::results::{Git, Machine, Toolchain, utc_now};
use crate::{Common, EnvProbe, RunEnv};

/// The topic every client of the herd subscribes to.
const TOPIC: &str = "herd";
/// Messages published before the kill, and again after the restart.
const BATCH: usize = 3;

/// `rtlab bench reconnect`: the options.
#[derive(Debug, Clone, clap::Args)]
pub struct ReconnectArgs {
    #[command(flatten)]
    pub common: Common,
    /// Clients in the herd.
    #[arg(long, default_value_t = 10_000)]
    pub clients: usize,
    /// Back-off strategies to run, comma-separated (none, exponential,
    /// full-jitter, equal-jitter, decorrelated-jitter).
    #[arg(long, value_delimiter = ',', default_value = "none,exponential,full-jitter,equal-jitter,decorrelated-jitter")]
    pub strategies: Vec<Strategy>,
    /// The back-off's base, milliseconds ("none" waits exactly this).
    #[arg(long, default_value_t = 100)]
    pub base_ms: u64,
    /// The back-off's cap, milliseconds.
    #[arg(long, default_value_t = 5_000)]
    pub cap_ms: u64,
    /// How long the server stays dead, milliseconds from the kill to the restart.
    #[arg(long, default_value_t = 1_000)]
    pub down_ms: u64,
    /// Runs per strategy.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Clients per worker process (each holds one descriptor per client).
    #[arg(long, default_value_t = 8_000)]
    pub per_worker: usize,
    /// The transport: sse or ws.
    #[arg(long, default_value = "sse", value_parser = ["sse", "ws"])]
    pub transport: String,
    /// Seconds to wait for the whole herd to be back before the run fails.
    #[arg(long, default_value_t = 60)]
    pub settle_secs: u64,
    /// The condition's name in the report (e.g. `backlog-64`); by default
    /// the runtime and the server options.
    #[arg(long)]
    pub label: Option<String>,
}

impl ReconnectArgs {
    fn label(&self) -> String {
        self.label.clone().unwrap_or_else(|| {
            let mut l = self.common.runtime.clone();
            for a in &self.common.server_args {
                l.push(' ');
                l.push_str(a);
            }
            l
        })
    }
}

/// One run of one strategy: what the clients recorded.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HerdRun {
    pub strategy: String,
    pub repeat: usize,
    /// Why the run is not verified (the herd did not come back, a worker
    /// failed), if it is not.
    pub failure: Option<String>,
    pub env: RunEnv,
    /// Milliseconds from the kill to the new server's `listening on` line.
    pub restart_ms: u64,
    /// Attempts per 10 ms, from the kill on.
    pub attempts_10ms: Vec<u32>,
    /// Subscriptions established per 10 ms, from the kill on.
    pub connects_10ms: Vec<u32>,
    /// Most attempts in any one second (sliding over the 10 ms bins).
    pub peak_attempts_per_s: u64,
    /// Attempts from the kill on.
    pub attempts: u64,
    /// Attempts from the kill on that did not end in a subscription.
    pub failed: u64,
    /// Clients back (subscribed again) at the end of the run.
    pub back: usize,
    /// Milliseconds from the restart until 99 % / 100 % of the clients were back.
    pub t99_ms: Option<u64>,
    pub t100_ms: Option<u64>,
    /// Of the messages published after the restart, per client: the ones a
    /// client never got although it was told (missed or reset signal),
    /// and the ones it never got without a word.
    pub lost_signalled: u64,
    pub lost_silently: u64,
    /// Clients that saw a missed or reset signal.
    pub clients_signalled: u64,
}

/// The result of `rtlab bench reconnect`: every strategy's runs under one
/// condition.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HerdResult {
    pub experiment: String,
    pub label: String,
    pub runtime: String,
    pub server_args: Vec<String>,
    pub transport: String,
    pub clients: usize,
    pub base_ms: u64,
    pub cap_ms: u64,
    pub down_ms: u64,
    pub repeats: usize,
    pub machine: Machine,
    pub toolchain: Toolchain,
    pub git: Git,
    pub utc: String,
    pub note: String,
    /// The conditions over the whole experiment.
    pub env: RunEnv,
    pub runs: Vec<HerdRun>,
}

/// Runs every strategy `repeats` times (interleaved: strategy after
/// strategy, then again, so that a slow minute of the shared machine does
/// not land on one strategy's runs only).
pub fn run(args: &ReconnectArgs) -> std::io::Result<HerdResult> {
    let (_, utc) = utc_now();
    let mut result = HerdResult {
        experiment: "reconnect".into(),
        label: args.label(),
        runtime: args.common.runtime.clone(),
        server_args: args.common.server_args.clone(),
        transport: args.transport.clone(),
        clients: args.clients,
        base_ms: args.base_ms,
        cap_ms: args.cap_ms,
        down_ms: args.down_ms,
        repeats: args.repeats,
        machine: Machine::detect(),
        toolchain: Toolchain::detect(),
        git: Git::detect(),
        utc,
        note: "shared machine: other engineers built and tested on it during the run".into(),
        env: RunEnv::default(),
        runs: Vec::new(),
    };
    let probe = EnvProbe::begin(args.common.placement);
    for repeat in 0..args.repeats {
        for strategy in &args.strategies {
            let run = one_run(args, *strategy, repeat)?;
            crate::say(&format!(
                "reconnect {} {:<20} #{repeat}: {}",
                result.label,
                strategy.name(),
                run.failure.clone().unwrap_or_else(|| format!(
                    "peak {} attempts/s, {} failed, 99% back {} ms, 100% {} ms, lost {} silently / {} signalled, {} clients told",
                    run.peak_attempts_per_s,
                    run.failed,
                    run.t99_ms.unwrap_or(0),
                    run.t100_ms.unwrap_or(0),
                    run.lost_silently,
                    run.lost_signalled,
                    run.clients_signalled
                ))
            ));
            result.runs.push(run);
        }
    }
    result.env = probe.end();
    Ok(result)
}

/// Wall-clock milliseconds: workers and the orchestrator are separate
/// processes on one machine, and this is the clock they share.
fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn start_server(args: &ReconnectArgs, addr: SocketAddr, cpu: Option<usize>) -> std::io::Result<Running> {
    Launch::new(args.common.exe()?)
        .args(["serve", "--runtime", &args.common.runtime, "--addr", &addr.to_string()])
        .args(&args.common.server_args)
        .env("RUST_LOG", "error")
        .stderr(Stderr::Inherit)
        .pin_cpu(cpu)
        .start()
}

/// The worker processes of one run, and their stdout lines on one channel.
struct Herd {
    children: Vec<(Child, ChildStdin)>,
    lines: Receiver<(usize, String)>,
}

impl Herd {
    fn start(args: &ReconnectArgs, addr: SocketAddr, strategy: Strategy, repeat: usize, cpu: Option<usize>) -> std::io::Result<Herd> {
        let exe = args.common.exe()?;
        let (tx, lines) = mpsc::channel();
        let mut children = Vec::new();
        let workers = args.clients.div_ceil(args.per_worker.max(1)).max(1);
        for w in 0..workers {
            let n = args.clients / workers + usize::from(w < args.clients % workers);
            let mut cmd = match cpu {
                Some(cpu) => {
                    let mut c = Command::new("taskset");
                    c.args(["-c", &cpu.to_string()]).arg(&exe);
                    c
                }
                None => Command::new(&exe),
            };
            // A source address of its own per worker: 127.1.<w>.1.
            let source = IpAddr::V4(Ipv4Addr::new(127, 1, w as u8, 1));
            cmd.args(["bench-herd-worker", "--addr", &addr.to_string(), "--clients", &n.to_string()])
                .args(["--source", &source.to_string(), "--strategy", strategy.name()])
                .args(["--base-ms", &args.base_ms.to_string(), "--cap-ms", &args.cap_ms.to_string()])
                .args(["--seed", &(repeat * 1000 + w).to_string(), "--transport", &args.transport])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit());
            rtlab_testkit::no_inherited_descriptors(&mut cmd);
            let mut child = cmd.spawn()?;
            let stdin = child.stdin.take().ok_or_else(|| std::io::Error::other("no stdin"))?;
            let stdout = child.stdout.take().ok_or_else(|| std::io::Error::other("no stdout"))?;
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if tx.send((w, line)).is_err() {
                        break;
                    }
                }
            });
            children.push((child, stdin));
        }
        Ok(Herd { children, lines })
    }

    /// Tells every worker `word`.
    fn tell(&mut self, word: &str) -> std::io::Result<()> {
        for (_, stdin) in &mut self.children {
            writeln!(stdin, "{word}")?;
            stdin.flush()?;
        }
        Ok(())
    }

    /// Waits until every worker printed a line containing `key`; returns
    /// those lines, or None at the timeout.
    fn await_all(&self, key: &str, timeout: Duration) -> Option<Vec<String>> {
        let end = Instant::now() + timeout;
        let mut got: Vec<Option<String>> = vec![None; self.children.len()];
        while got.iter().any(Option::is_none) {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((w, line)) if line.contains(key) => got[w] = Some(line),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        Some(got.into_iter().flatten().collect())
    }
}

impl Drop for Herd {
    fn drop(&mut self) {
        for (child, _) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Publishes `data` on a fresh connection, retrying (the herd may be in the
/// accept queue ahead of it) until `timeout`.
fn publish(addr: SocketAddr, data: &str, timeout: Duration) -> std::io::Result<u64> {
    let end = Instant::now() + timeout;
    loop {
        match Publisher::connect(addr, TOPIC).and_then(|mut p| p.publish(data.as_bytes())) {
            Ok(id) => return Ok(id),
            Err(e) if Instant::now() > end => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn one_run(args: &ReconnectArgs, strategy: Strategy, repeat: usize) -> std::io::Result<HerdRun> {
    let probe = EnvProbe::begin(args.common.placement);
    let placement = probe.placement();
    let mut run = HerdRun { strategy: strategy.name().into(), repeat, ..HerdRun::default() };
    let server = start_server(args, SocketAddr::from(([127, 0, 0, 1], 0)), placement.server)?;
    let addr = server.addr();
    let mut herd = Herd::start(args, addr, strategy, repeat, placement.clients)?;
    if herd.await_all("ready", Duration::from_secs(180)).is_none() {
        run.failure = Some("the herd did not connect within 180 s".into());
        return Ok(run);
    }
    for i in 1..=BATCH {
        publish(addr, &format!("pre-{i}"), Duration::from_secs(10))?;
    }
    std::thread::sleep(Duration::from_secs(1));
    herd.tell("mark")?;
    std::thread::sleep(Duration::from_millis(200));
    // The kill: SIGKILL, so the kernel closes every socket at once and
    // nothing of the server's shutdown path runs.
    let kill = now_ms();
    server.kill()?;
    drop(server);
    std::thread::sleep(Duration::from_millis(args.down_ms));
    let server = start_server(args, addr, placement.server)?;
    let up = now_ms();
    run.restart_ms = up - kill;
    for i in 1..=BATCH {
        publish(addr, &format!("post-{i}"), Duration::from_secs(args.settle_secs))?;
    }
    let back = herd.await_all("all_back", Duration::from_secs(args.settle_secs));
    // A last message, after everyone is back: each client shows it is live.
    let _ = publish(addr, "final", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(500));
    herd.tell("report")?;
    let reports = herd.await_all("\"clients\"", Duration::from_secs(60));
    let _ = server.stop(libc::SIGTERM, Duration::from_secs(10));
    run.env = probe.end();
    let Some(reports) = reports else {
        run.failure = Some("a worker did not report".into());
        return Ok(run);
    };
    let reports: Vec<WorkerReport> = reports
        .iter()
        .map(|l| serde_json::from_str(l))
        .collect::<Result<_, _>>()
        .map_err(std::io::Error::other)?;
    summarize(&mut run, &reports, kill, up);
    if back.is_none() {
        run.failure = Some(format!("{} of {} clients back after {} s", run.back, args.clients, args.settle_secs));
    }
    Ok(run)
}

/// Fills `run`'s numbers from the workers' reports.
fn summarize(run: &mut HerdRun, reports: &[WorkerReport], kill_ms: u64, up_ms: u64) {
    let first_bin = kill_ms / 10;
    let last_bin = reports.iter().flat_map(|r| r.bins.iter().map(|b| b.0)).max().unwrap_or(first_bin).max(first_bin);
    let len = (last_bin - first_bin + 1) as usize;
    run.attempts_10ms = vec![0; len];
    run.connects_10ms = vec![0; len];
    for (bin, attempts, connects) in reports.iter().flat_map(|r| r.bins.iter()) {
        if *bin >= first_bin {
            run.attempts_10ms[(bin - first_bin) as usize] += attempts;
            run.connects_10ms[(bin - first_bin) as usize] += connects;
        }
    }
    run.attempts = run.attempts_10ms.iter().map(|&a| u64::from(a)).sum();
    let connects: u64 = run.connects_10ms.iter().map(|&a| u64::from(a)).sum();
    run.failed = run.attempts.saturating_sub(connects);
    run.peak_attempts_per_s = run
        .attempts_10ms
        .windows(100.min(len).max(1))
        .map(|w| w.iter().map(|&a| u64::from(a)).sum::<u64>())
        .max()
        .unwrap_or(0);
    let clients: Vec<&ClientLog> = reports.iter().flat_map(|r| r.clients.iter()).collect();
    let mut back: Vec<u64> = clients.iter().filter_map(|c| c.back_ms).map(|t| t.saturating_sub(up_ms)).collect();
    back.sort_unstable();
    run.back = back.len();
    let n = clients.len();
    // Nearest rank: the time by which 99 % of all clients (not of those back) were back.
    let k99 = ((0.99 * n as f64).ceil() as usize).clamp(1, n.max(1));
    run.t99_ms = back.get(k99 - 1).copied();
    run.t100_ms = if back.len() == n { back.last().copied() } else { None };
    for c in &clients {
        let got = (1..=BATCH).filter(|i| c.post.iter().any(|d| *d == format!("post-{i}"))).count() as u64;
        let lost = BATCH as u64 - got;
        if c.signals > 0 {
            run.clients_signalled += 1;
            run.lost_signalled += lost;
        } else {
            run.lost_silently += lost;
        }
    }
}

// ---------------------------------------------------------------------------
// The worker process: `rtlab bench-herd-worker` (started by the above).

/// A herd worker: `clients` subscribers in one process.
#[derive(Debug, Clone, clap::Args)]
pub struct HerdWorkerArgs {
    #[arg(long)]
    pub addr: SocketAddr,
    #[arg(long)]
    pub clients: usize,
    #[arg(long)]
    pub source: IpAddr,
    #[arg(long)]
    pub strategy: Strategy,
    #[arg(long)]
    pub base_ms: u64,
    #[arg(long)]
    pub cap_ms: u64,
    #[arg(long, default_value_t = 0)]
    pub seed: usize,
    #[arg(long, default_value = "sse")]
    pub transport: String,
}

/// What one client of a worker saw.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClientLog {
    /// Wall-clock ms of its first subscription after the mark.
    pub back_ms: Option<u64>,
    /// Messages before the mark.
    pub pre: u32,
    /// Data of the messages after the mark.
    pub post: Vec<String>,
    /// Missed or reset signals after the mark.
    pub signals: u32,
    /// Gaps (ids skipped without a signal: a contract violation).
    pub gaps: u32,
}

/// A worker's report: `(10 ms bin, attempts, subscriptions)` and its clients.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct WorkerReport {
    pub bins: Vec<(u64, u32, u32)>,
    pub clients: Vec<ClientLog>,
}

#[derive(Debug, Default)]
struct Shared {
    bins: std::collections::BTreeMap<u64, (u32, u32)>,
    clients: Vec<ClientLog>,
    ready: usize,
    mark: bool,
    back: usize,
}

/// One client's view of [`Shared`], as the runtime's observer.
struct Observer {
    i: usize,
    shared: Arc<Mutex<Shared>>,
    total: usize,
    connected: bool,
}

// ANCHOR: observe
impl rtlab_client::tasks::Observer for Observer {
    fn attempt(&mut self) {
        let mut s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        s.bins.entry(now_ms() / 10).or_default().0 += 1;
    }

    fn event(&mut self, event: &Event) -> ControlFlow<()> {
        let mut guard = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        let s = &mut *guard;
        let mark = s.mark;
        match event {
            Event::Connected { .. } => {
                s.bins.entry(now_ms() / 10).or_default().1 += 1;
                if !self.connected {
                    self.connected = true;
                    s.ready += 1;
                    if s.ready == self.total {
                        say_line("{\"ready\":true}");
                    }
                }
                if mark && s.clients[self.i].back_ms.is_none() {
                    s.clients[self.i].back_ms = Some(now_ms());
                    s.back += 1;
                    if s.back == self.total {
                        say_line("{\"all_back\":true}");
                    }
                }
            }
            Event::Message(m) if mark => s.clients[self.i].post.push(m.data.clone()),
            Event::Message(_) => s.clients[self.i].pre += 1,
            Event::Missed { .. } | Event::Reset { .. } if mark => s.clients[self.i].signals += 1,
            Event::Gap { .. } => s.clients[self.i].gaps += 1,
            _ => {}
        }
        ControlFlow::Continue(())
    }
}
// ANCHOR_END: observe

fn say_line(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// `rtlab bench-herd-worker`: starts the subscribers, says `{"ready":true}`
/// when all are subscribed; on stdin `mark` (the kill is next) starts
/// counting who is back and says `{"all_back":true}` when all are; `report`
/// prints the [`WorkerReport`] and exits.
pub fn worker(args: &HerdWorkerArgs) -> std::io::Result<()> {
    let transport = match args.transport.as_str() {
        "ws" => Transport::Ws,
        _ => Transport::Sse,
    };
    let url: Url = format!("http://{}", args.addr).parse().map_err(std::io::Error::other)?;
    let shared = Arc::new(Mutex::new(Shared { clients: vec![ClientLog::default(); args.clients], ..Shared::default() }));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let stdin_shared = shared.clone();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            match line.trim() {
                "mark" => stdin_shared.lock().unwrap_or_else(|e| e.into_inner()).mark = true,
                "report" => {
                    let s = stdin_shared.lock().unwrap_or_else(|e| e.into_inner());
                    let report = WorkerReport {
                        bins: s.bins.iter().map(|(b, (a, c))| (*b, *a, *c)).collect(),
                        clients: s.clients.clone(),
                    };
                    say_line(&serde_json::to_string(&report).unwrap_or_default());
                    std::process::exit(0);
                }
                _ => {}
            }
        }
        std::process::exit(0);
    });
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..args.clients {
            let mut config = Config::new(url.clone(), TOPIC, transport).map_err(std::io::Error::other)?;
            config.backoff =
                Backoff::new(args.strategy, Duration::from_millis(args.base_ms), Duration::from_millis(args.cap_ms));
            config.request_timeout = Duration::from_secs(30);
            let rng = rand::rngs::SmallRng::seed_from_u64((args.seed * 1_000_003 + i) as u64);
            let mut subscriber = Subscriber::new(config, rng);
            let mut observer = Observer { i, shared: shared.clone(), total: args.clients, connected: false };
            let source = Some(args.source);
            tasks.push(tokio::spawn(async move {
                let _ = rtlab_client::tasks::run(&mut subscriber, source, &mut observer).await;
            }));
            // Open gently: the herd is formed before it is tested.
            if i % 200 == 199 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        for t in tasks {
            let _ = t.await;
        }
        Ok::<(), std::io::Error>(())
    })
}

impl crate::Outcome for HerdResult {
    fn verified(&self) -> bool {
        !self.runs.is_empty() && self.runs.iter().all(|r| r.failure.is_none())
    }

    fn failure(&self) -> Option<String> {
        self.runs.iter().find_map(|r| r.failure.clone())
    }

    fn metrics(&self) -> Vec<(&'static str, f64)> {
        Vec::new()
    }

    fn summary(&self) -> String {
        format!("reconnect {}: {} runs, {} verified", self.label, self.runs.len(), self.runs.iter().filter(|r| r.failure.is_none()).count())
    }

    fn env(&self) -> &RunEnv {
        &self.env
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}
