//! `rtlab bench million`: N idle connections held by a cluster of server
//! processes, then one broadcast that must reach every one of them.
//!
//! The run, in order:
//!
//! 1. **Start** P server processes ([`crate::cluster`], a set of ports;
//!    enough that none holds more than [`PER_PROCESS`]) and read each one's
//!    baseline memory.
//! 2. **Open** N connections (SSE, WebSocket or a mix) from crowd workers
//!    ([`crate::crowd`]: at most 19,000 bare sockets each, source addresses
//!    spread over 127.0.0.0/8), with a progress bar; the time to open all.
//! 3. **Hold**: every process's private memory (`RssAnon`: heap, stacks;
//!    the binary's shared pages excluded) summed, baselines included, per
//!    connection; the kernel's socket memory (slab caches + TCP buffers)
//!    per connection pair, both ends, and the server's end estimated as half
//!    of it; the descriptor and memory headroom left.
//! 4. **Broadcast**: one message carrying a fresh token, and the time from
//!    the publish until each connection has the token: first, p50, p99,
//!    last. Verified: every connection has it, none is missing. With
//!    `--broker redis` (the headline) every process is on one shared Redis
//!    broker (a `redis-server` the run starts for itself, no persistence)
//!    and the broadcast is **one publish** to one process, which Redis
//!    carries to all the others — many processes acting as one server.
//!    Without a broker each process is its own hub, and the broadcast is one
//!    publish per process, all P requests written before any answer is read.
//! 5. **Close**: the workers exit; every process's connection count must
//!    return to zero; its memory after.
//!
//! Keep-alive comments and WebSocket pings are pushed far out
//! (`--keepalive` / `--ping-interval` of an hour) so the broadcast is the
//! only traffic the million sees.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::cluster::{Cluster, ClusterPlan, ProcessStatus};
use crate::crowd::{self, Kind, Line, PER_CROWD};
use crate::procfs::{self, KernelSample};
use crate::results::{Git, Machine, Toolchain};
use crate::{Common, EnvProbe, RunEnv};

/// Most connections the run gives one server process: below its 20,000
/// open-files limit less the lab's reserve (128) and its own descriptors.
pub const PER_PROCESS: usize = 19_600;

/// Options of `rtlab bench million` (`--runtime mio` for the headline run).
#[derive(Debug, Clone, clap::Args)]
pub struct MillionArgs {
    /// Connections to open and hold (the headline: 1000000).
    #[arg(long, default_value_t = 2000)]
    pub connections: usize,
    /// Server processes (default: enough for --connections at 19,600 each).
    #[arg(long)]
    pub processes: Option<usize>,
    /// Transport of the connections: sse, ws, or mix (half each).
    #[arg(long, value_enum, default_value = "sse")]
    pub kind: Kind,
    /// Connections per crowd worker process (at most 19,000).
    #[arg(long, default_value_t = PER_CROWD)]
    pub per_worker: usize,
    /// Handshakes in flight per worker.
    #[arg(long, default_value_t = 128)]
    pub in_flight: usize,
    /// Milliseconds a crowd worker sleeps after a busy turn, to batch its
    /// wake-ups (0: none).
    #[arg(long, default_value_t = 2)]
    pub batch_ms: u64,
    /// Seconds the opening may take before the run gives up.
    #[arg(long, default_value_t = 600)]
    pub open_timeout: u64,
    /// Seconds the broadcast may take to reach everyone before the run
    /// counts the missing.
    #[arg(long, default_value_t = 120)]
    pub broadcast_timeout: u64,
    /// The broker the processes share: `redis` starts a `redis-server` of
    /// the run's own (no persistence; it must be on `PATH`), `redis://HOST:PORT`
    /// uses a running one. Without it each process is its own hub and the
    /// broadcast is one publish per process.
    #[arg(long)]
    pub broker: Option<String>,
    /// The runtime lab (`--runtime`; mio is the leanest), extra `rtlab
    /// serve` options for every process, the JSON file.
    #[command(flatten)]
    pub common: Common,
}

impl MillionArgs {
    /// The processes the run starts.
    pub fn process_count(&self) -> usize {
        self.processes.unwrap_or_else(|| self.connections.div_ceil(PER_PROCESS)).max(1)
    }
}

/// Memory of one server process at the three moments of a run.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct ProcessMemory {
    /// Process id.
    pub pid: u32,
    /// Connections it held (its `/stats`).
    pub connections: u64,
    /// `RssAnon` after start, bytes.
    pub baseline: u64,
    /// `RssAnon` holding its connections, bytes.
    pub holding: u64,
    /// `RssAnon` after its connections closed, bytes.
    pub released: u64,
}

/// The machine's limits and what the run left of them.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Headroom {
    /// `fs.file-max`.
    pub file_max: u64,
    /// Open files system-wide while holding (`/proc/sys/fs/file-nr`, first field).
    pub files_open: u64,
    /// Open-files limit of each process (`RLIMIT_NOFILE`).
    pub nofile_limit: u64,
    /// Most sockets one server process held.
    pub most_per_process: u64,
    /// `MemTotal`, bytes.
    pub mem_total: u64,
    /// `MemAvailable` before opening, bytes.
    pub mem_available_before: u64,
    /// `MemAvailable` while holding, bytes.
    pub mem_available_holding: u64,
}

/// The broadcast's timeline, milliseconds after the first publish was written.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Timeline {
    pub first_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub last_ms: f64,
    /// Milliseconds until the last publish was answered.
    pub published_ms: f64,
}

/// Everything one run asked and measured: the results document of
/// `rtlab bench million`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MillionResult {
    pub schema: String,
    pub started: String,
    pub command: Vec<String>,
    pub machine: Machine,
    pub toolchain: Toolchain,
    pub git: Git,
    /// The run's options.
    pub parameters: serde_json::Value,
    /// The run's conditions in words, from `env`: was the machine busy
    /// before it started, how much CPU the host took (steal).
    pub note: String,
    pub verified: bool,
    pub failure: Option<String>,
    pub env: RunEnv,
    pub runtime: String,
    pub kind: Kind,
    pub connections: usize,
    pub processes: usize,
    pub workers: usize,
    /// Publishes the broadcast took (one per process without a shared broker).
    pub publishes: usize,
    /// The shared broker (`redis`), if the processes had one.
    #[serde(default)]
    pub broker: Option<String>,
    /// Connections open after the opening.
    pub opened: usize,
    /// Connections that failed to open.
    pub failed: usize,
    /// Seconds from the first worker's start to the last connection open.
    pub open_secs: f64,
    /// Subscriber connections the servers counted while holding.
    pub server_counted: u64,
    /// Per process: connections and memory.
    pub server_memory: Vec<ProcessMemory>,
    /// Sum of the processes' `RssAnon` while holding, per connection (baselines included).
    pub server_bytes_per_conn: f64,
    /// The same without the baselines: growth per connection.
    pub server_growth_per_conn: f64,
    /// Sum of the baselines, bytes.
    pub server_baseline_bytes: u64,
    /// Sum of the crowd workers' `RssAnon` while holding, per connection.
    pub client_bytes_per_conn: f64,
    /// Kernel socket memory before opening and while holding.
    pub kernel_before: KernelSample,
    pub kernel_holding: KernelSample,
    pub kernel_released: KernelSample,
    /// Growth of the socket slab caches + TCP buffer memory per connection
    /// pair (client and server end together).
    pub kernel_bytes_per_pair: f64,
    /// The server's end of it, estimated as half (the two ends are the same
    /// kinds of kernel objects: a TCP socket, its inode and file, an epoll entry).
    pub kernel_bytes_server_est: f64,
    pub headroom: Headroom,
    /// Connections that had the broadcast.
    pub delivered: usize,
    /// Open connections that did not have it by the deadline, or closed.
    pub missing: usize,
    pub timeline: Timeline,
    /// Delivery times, milliseconds after the first publish, at the
    /// percentiles 0, 1, ..., 100 (the plot's CDF).
    pub cdf_ms: Vec<f64>,
    /// Seconds from closing the clients to every process counting zero.
    pub release_secs: f64,
    /// Every process's count returned to zero.
    pub released: bool,
    /// Every process exited 0 on SIGTERM.
    pub clean_exit: bool,
}

/// Schema of [`MillionResult`].
pub const SCHEMA: &str = "rtlab-million/1";

/// One crowd worker process.
struct CrowdWorker {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<Line>,
}

impl std::fmt::Debug for CrowdWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrowdWorker").field("pid", &self.child.id()).finish()
    }
}

impl Drop for CrowdWorker {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            let end = Instant::now() + Duration::from_secs(20);
            while Instant::now() < end && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn spawn_worker(args: &MillionArgs, servers: &[SocketAddr], token: &str, w: usize, first: usize, count: usize) -> std::io::Result<CrowdWorker> {
    let list = servers.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
    let mut cmd = Command::new(crate::exe()?);
    rtlab_testkit::no_inherited_descriptors(&mut cmd);
    let mut child = cmd
        .arg("bench-crowd")
        .args(["--servers", &list, "--first", &first.to_string(), "--count", &count.to_string()])
        .args(["--worker", &w.to_string(), "--kind", args.kind.name(), "--topic", TOPIC, "--token", token])
        .args(["--in-flight", &args.in_flight.to_string(), "--batch-ms", &args.batch_ms.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().ok_or_else(|| std::io::Error::other("no worker stdout"))?;
    let (tx, rx) = channel();
    std::thread::Builder::new().name(format!("crowd-{w}")).spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            match serde_json::from_str::<Line>(&line) {
                Ok(parsed) => {
                    if tx.send(parsed).is_err() {
                        break;
                    }
                }
                Err(e) => eprintln!("crowd worker {w}: unreadable line ({e}): {line}"),
            }
        }
    })?;
    Ok(CrowdWorker { stdin: child.stdin.take(), child, lines: rx })
}

/// The topic of the run.
const TOPIC: &str = "million";

/// Whether the running binary is position-independent (`pie`: relocated at
/// start, its relocated data private to each process) or not (`no-pie`,
/// built with `RTLAB_NO_PIE=1`; see `labs/rtlab/build.rs`): the ELF header's
/// type, `ET_DYN` or `ET_EXEC`.
pub fn executable_kind() -> &'static str {
    let mut head = [0u8; 18];
    let read = std::fs::File::open("/proc/self/exe").and_then(|mut f| f.read_exact(&mut head));
    match (read, u16::from_le_bytes([head[16], head[17]])) {
        (Ok(()), 2) => "no-pie",
        (Ok(()), 3) => "pie",
        _ => "unknown",
    }
}

fn mem_available() -> u64 {
    meminfo("MemAvailable:")
}

fn meminfo(field: &str) -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| t.lines().find_map(|l| l.strip_prefix(field)?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()))
        .unwrap_or(0)
        * 1024
}

fn read_u64(path: &str) -> u64 {
    std::fs::read_to_string(path).ok().and_then(|t| t.split_whitespace().next()?.parse().ok()).unwrap_or(0)
}

/// Writes one `POST /publish` of `data` on each stream, all before reading
/// any answer (so no process waits for another's fan-out); returns the
/// monotonic time the first was written and the time the last answer came.
fn publish_all(streams: &mut [TcpStream], data: &[u8]) -> std::io::Result<(u64, u64)> {
    let head = format!("POST /publish?topic={TOPIC} HTTP/1.1\r\nHost: bench\r\nContent-Length: {}\r\n\r\n", data.len());
    let mut request = head.into_bytes();
    request.extend_from_slice(data);
    let start = crowd::monotonic_ns();
    for s in streams.iter_mut() {
        s.write_all(&request)?;
    }
    for s in streams.iter_mut() {
        let mut answer = Vec::new();
        let mut chunk = [0u8; 512];
        // The answer is small: read until its head and its JSON body's end.
        while !(answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.ends_with(b"}")) {
            let n = s.read(&mut chunk)?;
            if n == 0 {
                return Err(std::io::Error::other("publish connection closed"));
            }
            answer.extend_from_slice(&chunk[..n]);
        }
        if !answer.starts_with(b"HTTP/1.1 200") {
            return Err(std::io::Error::other(format!("publish refused: {}", String::from_utf8_lossy(&answer))));
        }
    }
    Ok((start, crowd::monotonic_ns()))
}

/// Nearest-rank percentile of sorted values.
fn rank(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn bar(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template(&format!("  {what} {{pos:>7}}/{{len}} {{bar:30}} {{elapsed}} ({{per_sec}})"))
            .expect("valid template"),
    );
    crate::progress().add(bar)
}

// ANCHOR: autogroup
/// Gives this process's scheduling group the priority the process was
/// started with (`nice -n -19 rtlab bench million ...`), and returns that
/// nice value.
///
/// With `kernel.sched_autogroup_enabled`, Linux first shares the CPUs
/// between sessions (each terminal, each ssh login is a group), and only
/// then between the processes of a session by their nice values: a
/// `nice -n -19` run on a machine where other sessions compile gets no
/// more than its session's share. Setting the group's own nice value
/// (`/proc/self/autogroup`, root only for a negative value) makes the
/// priority asked for on the command line hold against the other
/// sessions too. The servers and workers started here are in the same
/// group.
pub fn prioritise_group() -> i32 {
    // SAFETY: getpriority has no memory preconditions; errno is not needed
    // (-1 is a valid nice value, and a failure reads as "no change").
    let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
    if nice < 0 {
        let _ = std::fs::write("/proc/self/autogroup", nice.to_string());
    }
    nice
}
// ANCHOR_END: autogroup

/// The conditions of a run in words: [`crate::results::conditions`] (how
/// busy the CPUs were in the second before the run, the load average at its
/// start and end), and how much CPU time the host gave to other guests
/// during it (steal).
fn conditions_note(busy_before: f64, env: &RunEnv) -> String {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!(
        "{}; the host took {:.1} s of CPU time from this machine during the run (steal)",
        crate::results::conditions(busy_before, cores, (env.load_before, env.load_after)),
        env.steal_secs
    )
}

/// Runs the scenario.
pub fn run(args: &MillionArgs) -> std::io::Result<MillionResult> {
    let nice = prioritise_group();
    let busy_before = crate::results::busy_before();
    let probe = EnvProbe::begin(args.common.placement);
    let started = crate::results::utc_now().1;
    let processes = args.process_count();
    if args.connections.div_ceil(processes) > PER_PROCESS {
        return Err(std::io::Error::other(format!(
            "{} connections over {processes} processes is more than {PER_PROCESS} per process (the open-files limit)",
            args.connections
        )));
    }
    let per_worker = args.per_worker.clamp(1, PER_CROWD);
    let exe = crate::exe()?;
    let mut serve_args: Vec<String> = ["--keepalive", "3600", "--ping-interval", "3600"].map(String::from).to_vec();
    serve_args.extend(args.common.server_args.iter().cloned());
    // The shared broker: started here (and killed when the run ends) or given.
    let redis = match args.broker.as_deref() {
        Some("redis") => Some(rtlab_testkit::redis::RedisServer::start()?),
        _ => None,
    };
    let broker = redis.as_ref().map(|r| r.url()).or_else(|| args.broker.clone());
    if let Some(url) = &broker {
        serve_args.extend(["--broker".to_owned(), url.clone()]);
    }
    // With a shared broker one publish reaches every process.
    let publishes = if broker.is_some() { 1 } else { processes };

    crate::say(&format!("million: starting {processes} {} server processes", args.common.runtime));
    let cluster = Cluster::start(&ClusterPlan {
        exe: &exe,
        runtime: &args.common.runtime,
        processes,
        addr: "127.0.0.1:0".parse().expect("an address"),
        shared_port: false,
        serve_args: &serve_args,
    })?;
    let servers = cluster.addrs();
    let baselines = cluster.status();
    let kernel_before = procfs::kernel();
    let mem_available_before = mem_available();

    // Open.
    let nonce = crowd::monotonic_ns() ^ (u64::from(std::process::id()) << 40);
    let token = crowd::token(nonce);
    let count = args.connections.div_ceil(per_worker);
    let opening = bar(args.connections as u64, &format!("opening {} connections", args.kind.name()));
    let open_start = Instant::now();
    let mut workers = Vec::with_capacity(count);
    for w in 0..count {
        let first = w * per_worker;
        let n = (args.connections - first).min(per_worker);
        workers.push(spawn_worker(args, &servers, &token, w, first, n)?);
    }
    let mut readies: Vec<Option<crowd::Ready>> = vec![None; count];
    let mut progress = vec![0usize; count];
    let deadline = open_start + Duration::from_secs(args.open_timeout);
    let mut failure: Option<String> = None;
    while readies.iter().any(Option::is_none) {
        if Instant::now() > deadline {
            failure = Some(format!("the connections did not open within {} s", args.open_timeout));
            break;
        }
        if let Some((i, how)) = cluster.dead() {
            failure = Some(format!("server process {i} died while opening ({how})"));
            break;
        }
        for (w, worker) in workers.iter().enumerate() {
            while let Ok(line) = worker.lines.try_recv() {
                match line {
                    Line::Progress(n) => progress[w] = n,
                    Line::Ready(r) => {
                        progress[w] = r.opened;
                        readies[w] = Some(r);
                    }
                    Line::Done(_) => {}
                }
            }
        }
        opening.set_position(progress.iter().sum::<usize>() as u64);
        std::thread::sleep(Duration::from_millis(50));
    }
    let open_secs = open_start.elapsed().as_secs_f64();
    opening.finish_and_clear();
    let opened: usize = readies.iter().flatten().map(|r| r.opened).sum();
    let failed: usize = readies.iter().flatten().map(|r| r.failed).sum();
    if failure.is_none() && failed > 0 {
        let why = readies.iter().flatten().find_map(|r| r.error.clone()).unwrap_or_default();
        failure = Some(format!("{failed} connections failed to open; the first: {why}"));
    }
    crate::say(&format!("million: {opened} open, {failed} failed, in {open_secs:.1} s"));

    // Hold: wait until the servers count them all, then sample.
    let count_end = Instant::now() + Duration::from_secs(60);
    let mut server_counted = cluster.subscribers().unwrap_or(0);
    while server_counted < opened as u64 && Instant::now() < count_end {
        std::thread::sleep(Duration::from_millis(200));
        server_counted = cluster.subscribers().unwrap_or(0);
    }
    // Let the allocators and the kernel settle.
    std::thread::sleep(Duration::from_secs(2));
    let holding = cluster.status();
    let per_process: Vec<u64> =
        cluster.servers.iter().map(|s| s.stats().map(|v| crate::cluster::subscribers(&v)).unwrap_or(0)).collect();
    let kernel_holding = procfs::kernel();
    let client_anon: u64 = workers.iter().filter_map(|w| procfs::process(w.child.id())).map(|p| p.rss_anon).sum();
    let headroom = Headroom {
        file_max: read_u64("/proc/sys/fs/file-max"),
        files_open: read_u64("/proc/sys/fs/file-nr"),
        nofile_limit: crate::nofile_limit(),
        most_per_process: holding.iter().map(|s| s.sockets).max().unwrap_or(0),
        mem_total: meminfo("MemTotal:"),
        mem_available_before,
        mem_available_holding: mem_available(),
    };

    // Broadcast.
    let mut delivered_at: Vec<u64> = Vec::with_capacity(opened);
    let (mut delivered, mut lost) = (0usize, 0usize);
    let mut timeline = Timeline::default();
    let mut cdf_ms = Vec::new();
    if failure.is_none() {
        crate::say(&format!("million: one broadcast to {opened} connections ({publishes} publish(es))"));
        let reached = bar(opened as u64, "broadcast reached");
        // The publishers' connections, opened now: opened before the
        // clients, they would meet the servers' idle timeout while a
        // million connections open.
        let published = servers[..publishes]
            .iter()
            .map(|a| {
                let s = TcpStream::connect_timeout(a, Duration::from_secs(10))?;
                s.set_nodelay(true)?;
                s.set_read_timeout(Some(Duration::from_secs(60)))?;
                Ok(s)
            })
            .collect::<std::io::Result<Vec<_>>>()
            .and_then(|mut publishers| publish_all(&mut publishers, token.as_bytes()));
        let (t0, answered) = match published {
            Ok(times) => times,
            Err(e) => {
                failure = Some(format!("the broadcast's publish failed: {e}"));
                (crowd::monotonic_ns(), crowd::monotonic_ns())
            }
        };
        let mut dones = vec![false; count];
        let end = Instant::now() + Duration::from_secs(args.broadcast_timeout);
        let mut asked = false;
        while failure.is_none() && dones.iter().any(|d| !d) {
            if Instant::now() > end && !asked {
                for w in &mut workers {
                    if let Some(stdin) = w.stdin.as_mut() {
                        let _ = stdin.write_all(b"report\n");
                    }
                }
                asked = true;
            }
            if Instant::now() > end + Duration::from_secs(30) {
                break;
            }
            for (w, worker) in workers.iter().enumerate() {
                match worker.lines.recv_timeout(Duration::from_millis(if dones[w] { 0 } else { 20 })) {
                    Ok(Line::Done(d)) => {
                        dones[w] = true;
                        delivered += d.got;
                        lost += d.lost;
                        delivered_at.extend(d.at_ns);
                        reached.set_position(delivered as u64);
                    }
                    Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => dones[w] = true,
                }
            }
        }
        reached.finish_and_clear();
        let mut ms: Vec<u64> = delivered_at.iter().map(|&t| t.saturating_sub(t0)).collect();
        ms.sort_unstable();
        let to_ms = |ns: u64| ns as f64 / 1e6;
        timeline = Timeline {
            first_ms: to_ms(ms.first().copied().unwrap_or(0)),
            p50_ms: to_ms(rank(&ms, 0.50)),
            p90_ms: to_ms(rank(&ms, 0.90)),
            p99_ms: to_ms(rank(&ms, 0.99)),
            last_ms: to_ms(ms.last().copied().unwrap_or(0)),
            published_ms: to_ms(answered.saturating_sub(t0)),
        };
        cdf_ms = (0..=100).map(|p| if p == 0 { timeline.first_ms } else { to_ms(rank(&ms, f64::from(p) / 100.0)) }).collect();
        crate::say(&format!(
            "million: broadcast reached {delivered}/{opened}: first {:.0} ms, p50 {:.0} ms, p99 {:.0} ms, last {:.0} ms",
            timeline.first_ms, timeline.p50_ms, timeline.p99_ms, timeline.last_ms
        ));
    }
    let missing = opened.saturating_sub(delivered);
    if failure.is_none() && (missing > 0 || delivered != args.connections) {
        failure = Some(format!("the broadcast reached {delivered} of {} connections ({lost} lost)", args.connections));
    }
    if failure.is_none() && server_counted != args.connections as u64 {
        failure = Some(format!("the servers counted {server_counted} subscribers, not {}", args.connections));
    }

    // Close.
    let close_start = Instant::now();
    drop(workers);
    let release_end = Instant::now() + Duration::from_secs(120);
    let mut released = false;
    while Instant::now() < release_end {
        if cluster.subscribers() == Some(0) {
            released = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let release_secs = close_start.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(1));
    let after = cluster.status();
    let kernel_released = procfs::kernel();
    if failure.is_none() && !released {
        failure = Some("the servers still counted connections 120 s after the clients closed".into());
    }
    if let (None, Some((i, how))) = (&failure, cluster.dead()) {
        failure = Some(format!("server process {i} died ({how})"));
    }
    let clean_exit = cluster.stop(Duration::from_secs(30));

    let server_memory: Vec<ProcessMemory> = (0..processes)
        .map(|i| {
            let at = |v: &[ProcessStatus]| v.get(i).map_or(0, |s| s.rss_anon);
            ProcessMemory {
                pid: baselines[i].pid,
                connections: per_process.get(i).copied().unwrap_or(0),
                baseline: at(&baselines),
                holding: at(&holding),
                released: at(&after),
            }
        })
        .collect();
    let env = probe.end();
    let n = opened.max(1) as f64;
    let holding_sum: u64 = server_memory.iter().map(|m| m.holding).sum();
    let baseline_sum: u64 = server_memory.iter().map(|m| m.baseline).sum();
    let kernel_growth = |k: &KernelSample| (k.socket_slab + k.tcp_mem) as f64;
    let kernel_bytes_per_pair = (kernel_growth(&kernel_holding) - kernel_growth(&kernel_before)) / n;
    Ok(MillionResult {
        schema: SCHEMA.into(),
        started,
        command: std::env::args().collect(),
        machine: Machine::detect(),
        toolchain: Toolchain::detect(),
        git: Git::detect(),
        parameters: serde_json::json!({
            "connections": args.connections, "processes": processes, "runtime": args.common.runtime,
            "kind": args.kind, "per_worker": per_worker, "in_flight": args.in_flight, "batch_ms": args.batch_ms,
            "serve_args": serve_args, "broadcast_timeout": args.broadcast_timeout,
            "broker": args.broker,
            "executable": executable_kind(), "nice": nice, "autogroup": std::fs::read_to_string("/proc/self/autogroup").unwrap_or_default().trim(),
        }),
        note: conditions_note(busy_before, &env),
        verified: failure.is_none() && clean_exit,
        failure: failure.or_else(|| (!clean_exit).then(|| "a server process did not exit cleanly".into())),
        env,
        runtime: args.common.runtime.clone(),
        kind: args.kind,
        connections: args.connections,
        processes,
        workers: count,
        publishes,
        broker: broker.map(|_| "redis".to_owned()),
        opened,
        failed,
        open_secs,
        server_counted,
        server_memory,
        server_bytes_per_conn: holding_sum as f64 / n,
        server_growth_per_conn: (holding_sum as f64 - baseline_sum as f64) / n,
        server_baseline_bytes: baseline_sum,
        client_bytes_per_conn: client_anon as f64 / n,
        kernel_before,
        kernel_holding,
        kernel_released,
        kernel_bytes_per_pair,
        kernel_bytes_server_est: kernel_bytes_per_pair / 2.0,
        headroom,
        delivered,
        missing,
        timeline,
        cdf_ms,
        release_secs,
        released,
        clean_exit,
    })
}

impl MillionResult {
    /// One line for the terminal.
    pub fn summary(&self) -> String {
        let head = format!("million {} {} × {} processes", self.runtime, self.connections, self.processes);
        match &self.failure {
            Some(why) => format!("{head}: FAILED: {why}"),
            None => format!(
                "{head}: opened in {:.1} s; server {:.0} B/conn (baselines included), kernel {:.0} B/pair; \
                 broadcast to all {} in {:.2} s (p50 {:.2} s, p99 {:.2} s); released in {:.1} s",
                self.open_secs,
                self.server_bytes_per_conn,
                self.kernel_bytes_per_pair,
                self.delivered,
                self.timeline.last_ms / 1e3,
                self.timeline.p50_ms / 1e3,
                self.timeline.p99_ms / 1e3,
                self.release_secs
            ),
        }
    }
}

impl crate::Outcome for MillionResult {
    fn verified(&self) -> bool {
        self.verified
    }

    fn failure(&self) -> Option<String> {
        self.failure.clone()
    }

    fn metrics(&self) -> Vec<(&'static str, f64)> {
        vec![
            ("open_secs", self.open_secs),
            ("server_bytes_per_conn", self.server_bytes_per_conn),
            ("kernel_bytes_per_pair", self.kernel_bytes_per_pair),
            ("broadcast_last_ms", self.timeline.last_ms),
        ]
    }

    fn summary(&self) -> String {
        MillionResult::summary(self)
    }

    fn env(&self) -> &RunEnv {
        &self.env
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enough_processes_for_the_descriptor_limit() {
        let args = |n| MillionArgs {
            connections: n,
            processes: None,
            kind: Kind::Sse,
            per_worker: PER_CROWD,
            in_flight: 128,
            batch_ms: 2,
            open_timeout: 1,
            broadcast_timeout: 1,
            broker: None,
            common: Common::new("mio"),
        };
        assert_eq!(args(1_000_000).process_count(), 52);
        assert_eq!(args(20_000).process_count(), 2);
        assert_eq!(args(10).process_count(), 1);
        assert_eq!(rank(&[1, 2, 3, 4], 0.5), 2);
        assert_eq!(rank(&[], 0.5), 0);
    }
}
