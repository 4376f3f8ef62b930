// Run: cargo bench -p rtlab-bench --bench runtimes
//! # The runtimes side by side, measured by criterion
//!
//! The lab's three axes, one [`BenchmarkGroup`] per axis and transport, one
//! [`BenchmarkId`] per runtime, so that criterion's own report (the terminal,
//! and `target/criterion/report/index.html`) puts the runtimes next to each
//! other:
//!
//! | group | one iteration | value |
//! |---|---|---|
//! | `latency/ws`, `latency/sse` | one publish, until all [`SUBSCRIBERS`] have it | publish → last kernel receive timestamp ([`iter_custom`]) |
//! | `memory/ws`, `memory/sse` | one more idle connection held by a running server | the server's resident anonymous memory per held connection, bytes ([`ServerBytes`]) |
//! | `backpressure/<policy>` | one publish with [`STALLED`] stalled WebSocket readers connected | publish → last fast subscriber's receive, server started with `--policy <policy>` |
//!
//! The servers are the real binary (`rtlab serve`), one fresh process per
//! benchmark id, started lazily inside the benchmark closure (so that a
//! filter such as `cargo bench -p rtlab-bench --bench runtimes -- latency/ws`
//! starts only the servers it measures). The clients run in this process,
//! from `rtlab_bench::client`. The runtimes are every name that `rtlab
//! runtimes` prints, then the baselines of `rtlab runtimes --baselines`
//! (publish, SSE and WebSocket are all these groups need).
//!
//! ## The binary must be built first
//!
//! The benches never build the server: `cargo bench` needs
//! `cargo build --release -p rtlab` first (it looks for `target/release/rtlab`,
//! next to its own `deps` directory), and `cargo test -p rtlab-bench --bench
//! runtimes` (criterion's test mode: every benchmark once) needs
//! `cargo build -p rtlab` (`target/debug/rtlab`). `RTLAB_BIN=/path/to/rtlab`
//! overrides both. A stale binary measures the old code.
//!
//! ## Criterion and `rtlab bench`: the same things, two instruments
//!
//! The harness (`rtlab bench ...`) measures the same axes with thousands of
//! connections held by worker processes and one verified run per scenario;
//! criterion measures small, repeated steps in one client process and
//! brings statistics (confidence intervals, outliers, change since the last
//! run). The book's chapter "Criterion and the harness" says when each is
//! the better instrument.
//!
//! [`BenchmarkGroup`]: criterion::BenchmarkGroup
//! [`iter_custom`]: criterion::Bencher::iter_custom

use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::thread;
use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use rtlab_bench::client::{self, Publisher, PushParser, Transport};
use rtlab_bench::server::ServerProcess;
use rtlab_bench::axes::Policy;
use rtlab_bench::{Placement, matrix, procfs};

/// Subscribers that must receive each message in the latency groups.
const SUBSCRIBERS: usize = 10;
/// Payload of a latency message, bytes.
const PAYLOAD: usize = 64;
/// Fast subscribers whose latency the backpressure groups measure.
const FAST: usize = 5;
/// Subscribers that never read, in the backpressure groups.
const STALLED: usize = 8;
/// `SO_RCVBUF` of a stalled reader: small, so that it stalls early.
const STALLED_RCVBUF: usize = 4096;
/// Payload of a backpressure message: large enough that the stalled readers
/// exceed the default outbox budget (256 KiB) during the warm-up.
const BACKPRESSURE_PAYLOAD: usize = 1024;
/// Any single expected event; only a broken server ever reaches it.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Options for every server: no pings and no keep-alive comments during a
/// run (the clients here do not answer pings; a ping would close a quiet
/// connection after two intervals).
const SERVER_ARGS: [&str; 4] = ["--ping-interval", "3600", "--keepalive", "3600"];

// ---------------------------------------------------------------------------
// The binary and its runtimes
// ---------------------------------------------------------------------------

/// What every group needs: the binary and the runtimes it serves.
#[derive(Debug)]
struct Lab {
    exe: PathBuf,
    runtimes: Vec<String>,
    /// Criterion's test mode (`cargo test`, or `cargo bench -- --test`):
    /// every benchmark runs one iteration; setups are kept small.
    test_mode: bool,
    placement: Placement,
}

/// Finds the binary once, lists its runtimes once, and pins this process to
/// the clients' core (the servers get the other one).
fn lab() -> &'static Lab {
    static LAB: OnceLock<Lab> = OnceLock::new();
    LAB.get_or_init(|| {
        let exe = rtlab_binary();
        let list = |baselines| matrix::runtimes(&exe, baselines).unwrap_or_else(|e| panic!("{e}"));
        let mut runtimes = list(false);
        runtimes.extend(list(true));
        let args: Vec<String> = std::env::args().collect();
        let test_mode = !args.iter().any(|a| a == "--bench") || args.iter().any(|a| a == "--test");
        let placement = Placement::detect();
        if let Some(core) = placement.clients {
            pin_to(core);
        }
        Lab { exe, runtimes, test_mode, placement }
    })
}

/// `$RTLAB_BIN`, or `rtlab` in the profile directory this bench was built
/// into (`target/<profile>/deps/runtimes-HASH` → `target/<profile>/rtlab`).
fn rtlab_binary() -> PathBuf {
    rtlab_testkit::rtlab_bin().unwrap_or_else(|e| panic!("these benches measure the rtlab binary: {e}"))
}

/// Pins this process to `core`, as the harness pins its client workers.
fn pin_to(core: usize) {
    // SAFETY: cpu_set_t is plain data; CPU_SET writes inside it; 0 = this thread
    // (criterion runs the benchmarks on the main thread).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// A fresh server of `runtime` with `extra` options, pinned like the harness's.
fn start_server(runtime: &str, extra: &[&str]) -> ServerProcess {
    let lab = lab();
    let args: Vec<String> = SERVER_ARGS.iter().chain(extra).map(|s| (*s).to_owned()).collect();
    ServerProcess::start(&lab.exe, runtime, &args, lab.placement.server)
        .unwrap_or_else(|e| panic!("starting `rtlab serve --runtime {runtime}` failed: {e}"))
}

// ---------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------

/// A subscriber that reads: every message, with the kernel's receive time.
#[derive(Debug)]
struct Subscriber {
    stream: TcpStream,
    transport: Transport,
    parser: PushParser,
}

impl Subscriber {
    fn open(server: &ServerProcess, transport: Transport, topic: &str) -> io::Result<Subscriber> {
        let mut stream = client::connect_from(IpAddr::V4(Ipv4Addr::LOCALHOST), server.addr, None)?;
        let subscribed = client::subscribe(&mut stream, transport, topic, TIMEOUT)?;
        client::enable_rx_timestamps(&stream)?;
        stream.set_read_timeout(Some(TIMEOUT))?;
        let mut parser = PushParser::default();
        // Whatever came with the response head (nothing is published yet).
        parser.feed(transport, &subscribed.rest);
        Ok(Subscriber { stream, transport, parser })
    }

    /// Reads until the message `id` is complete; returns the kernel's
    /// receive timestamp (CLOCK_REALTIME ns) of the bytes that completed it.
    fn receive(&mut self, id: u64) -> io::Result<u64> {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let (n, stamp) = client::recv_timestamped(&self.stream, &mut buf)?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("closed before message {id}")));
            }
            if self.parser.feed(self.transport, &buf[..n]).iter().any(|m| m.id >= id) {
                return Ok(stamp.unwrap_or_else(client::realtime_ns));
            }
        }
    }
}

/// A publisher and the subscribers that must all receive each message.
#[derive(Debug)]
struct Fanout {
    publisher: Publisher,
    subscribers: Vec<Subscriber>,
    payload: usize,
    seq: u64,
}

impl Fanout {
    /// Opens `subscribers` of `transport` to `topic`, on which `already`
    /// connections of that transport are open, and a publisher of messages
    /// of `payload` bytes.
    fn open(server: &ServerProcess, transport: Transport, topic: &str, subscribers: usize, already: usize, payload: usize) -> Fanout {
        let subscribers = (0..subscribers)
            .map(|_| Subscriber::open(server, transport, topic))
            .collect::<io::Result<Vec<_>>>()
            .unwrap_or_else(|e| panic!("opening {transport:?} subscribers failed: {e}"));
        wait_counted(server, transport, already + subscribers.len());
        let publisher = Publisher::connect(server.addr, topic).expect("publisher connection");
        Fanout { publisher, subscribers, payload, seq: 0 }
    }

    /// One publish; the time from just before it was sent until the last
    /// subscriber's kernel received it.
    fn round(&mut self) -> Duration {
        self.seq += 1;
        let sent = client::realtime_ns();
        let id = self
            .publisher
            .publish(&client::bench_payload(self.seq, sent, self.payload))
            .unwrap_or_else(|e| panic!("publish failed: {e}"));
        let mut last = sent;
        for s in &mut self.subscribers {
            let received = s.receive(id).unwrap_or_else(|e| panic!("subscriber did not get message {id}: {e}"));
            last = last.max(received);
        }
        Duration::from_nanos(last - sent)
    }
}

/// Waits until the server's `/stats` counts `n` connections of `transport`:
/// only then is every subscription registered (the framework baseline has
/// no replay, so a message published earlier would be lost).
fn wait_counted(server: &ServerProcess, transport: Transport, n: usize) {
    let key = transport.stats_key();
    assert!(
        server.wait_stats(TIMEOUT, |s| s["connections"][key].as_u64() == Some(n as u64)),
        "the server never counted {n} {key} connections"
    );
}

// ---------------------------------------------------------------------------
// Latency
// ---------------------------------------------------------------------------

// ANCHOR: latency
/// `latency/<transport>`: one publish, received by all [`SUBSCRIBERS`].
///
/// `iter_custom` because criterion's own timer would measure the wrong
/// thing: the clock starts just before the publish and stops at the kernel
/// receive timestamp of the last subscriber's copy (`SO_TIMESTAMPNS`), so
/// the order in which this one thread reads the subscribers does not count.
fn latency(c: &mut Criterion) {
    let lab = lab();
    for transport in [Transport::Ws, Transport::Sse] {
        let mut group = c.benchmark_group(format!("latency/{}", transport.name()));
        group.sample_size(30).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
        for runtime in &lab.runtimes {
            let mut state: Option<(ServerProcess, Fanout)> = None;
            group.bench_with_input(BenchmarkId::from_parameter(runtime), runtime, |b, runtime| {
                let (_, fanout) = state.get_or_insert_with(|| {
                    let server = start_server(runtime, &[]);
                    let fanout = Fanout::open(&server, transport, "latency", SUBSCRIBERS, 0, PAYLOAD);
                    (server, fanout)
                });
                b.iter_custom(|iters| (0..iters).map(|_| fanout.round()).sum());
            });
        }
        group.finish();
    }
}
// ANCHOR_END: latency

// ---------------------------------------------------------------------------
// Memory
// ---------------------------------------------------------------------------

// ANCHOR: measurement
/// A criterion [`Measurement`] in bytes: the growth of the resident
/// anonymous memory of the server under test (heap, stacks, anonymous
/// mappings; not the binary's code, not the kernel's socket buffers).
///
/// The server measured is the one in [`ServerBytes::target`] (set by the
/// memory bench when it starts a server): `start` samples it and `end`
/// returns the growth since, so `b.iter(|| open_one())` would measure a
/// batch's growth. The memory bench uses `iter_custom` with the same
/// sampling function instead: it must wait until the server has accounted
/// for the last connection of a batch, and it values a batch by the
/// running mean per connection (see [`memory`] for why).
#[derive(Debug)]
struct ServerBytes;

impl ServerBytes {
    /// Measure server `pid` from now on.
    fn target(pid: u32) {
        TARGET.store(pid, Relaxed);
    }
}

/// The pid [`ServerBytes`] samples.
static TARGET: AtomicU32 = AtomicU32::new(0);

impl Measurement for ServerBytes {
    type Intermediate = (u32, i64);
    type Value = i64;

    fn start(&self) -> (u32, i64) {
        let pid = TARGET.load(Relaxed);
        (pid, anon_bytes(pid))
    }
    fn end(&self, (pid, before): (u32, i64)) -> i64 {
        anon_bytes(pid) - before
    }
    fn add(&self, a: &i64, b: &i64) -> i64 {
        a + b
    }
    fn zero(&self) -> i64 {
        0
    }
    fn to_f64(&self, value: &i64) -> f64 {
        *value as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &BytesFormatter
    }
}

/// Resident anonymous bytes of process `pid`, from `/proc/<pid>/smaps_rollup`
/// ("Anonymous": counted by walking the page tables, so exact at the moment
/// of reading) or, where that file is missing, `RssAnon` of
/// `/proc/<pid>/status` (kept by the kernel in per-CPU counters that may
/// lag by a few pages). 0 if the process is gone.
fn anon_bytes(pid: u32) -> i64 {
    if let Ok(rollup) = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) {
        let kb = rollup
            .lines()
            .find_map(|l| l.strip_prefix("Anonymous:")?.trim().strip_suffix("kB")?.trim().parse::<i64>().ok());
        if let Some(kb) = kb {
            return kb * 1024;
        }
    }
    procfs::process(pid).map_or(0, |p| p.rss_anon as i64)
}

/// Formats bytes as B, KiB or MiB.
#[derive(Debug)]
struct BytesFormatter;

impl ValueFormatter for BytesFormatter {
    fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
        let (divisor, unit) = match typical.abs() {
            t if t >= 1024.0 * 1024.0 => (1024.0 * 1024.0, "MiB"),
            t if t >= 1024.0 => (1024.0, "KiB"),
            _ => (1.0, "B"),
        };
        values.iter_mut().for_each(|v| *v /= divisor);
        unit
    }
    fn scale_throughputs(&self, typical: f64, throughput: &Throughput, values: &mut [f64]) -> &'static str {
        // Bytes of server memory per unit of the throughput: per element
        // (e.g. per connection of a batch) or per byte.
        let per = match throughput {
            Throughput::Bits(n) => *n as f64 / 8.0,
            Throughput::Bytes(n) | Throughput::BytesDecimal(n) => *n as f64,
            Throughput::Elements(n) => *n as f64,
            Throughput::ElementsAndBytes { elements, .. } => *elements as f64,
        }
        .max(1.0);
        values.iter_mut().for_each(|v| *v /= per);
        let unit = self.scale_values(typical / per, values);
        match (unit, throughput) {
            ("MiB", Throughput::Elements(_) | Throughput::ElementsAndBytes { .. }) => "MiB/elem",
            ("KiB", Throughput::Elements(_) | Throughput::ElementsAndBytes { .. }) => "KiB/elem",
            (_, Throughput::Elements(_) | Throughput::ElementsAndBytes { .. }) => "B/elem",
            _ => "B/B",
        }
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "B"
    }
}
// ANCHOR_END: measurement

/// After a batch of connections, before the sample: the server has counted
/// them all (see [`wait_counted`]); this lets the last ones finish setting
/// up (a WebSocket task touches its read buffer on its first read, after
/// the 101 went out) and the allocator settle. It also fixes criterion's
/// estimate of one iteration's cost, and so how many connections a run
/// opens (see [`memory`]).
const SETTLE: Duration = Duration::from_millis(50);

/// Idle connections opened before criterion's first sample, so that even
/// the first sample averages over hundreds of connections: a lab that
/// needs a few hundred bytes per connection holds its first hundred or so
/// in memory it already had (its resident growth is exactly 0 there).
const PREOPENED: u64 = 500;

/// The server of one memory benchmark and what it holds.
#[derive(Debug)]
struct IdleServer {
    server: ServerProcess,
    transport: Transport,
    /// The server's resident anonymous memory before any connection.
    base: i64,
    /// The idle connections, held until the benchmark ends.
    idle: Vec<TcpStream>,
}

impl IdleServer {
    fn start(runtime: &str, transport: Transport, preopened: u64) -> IdleServer {
        let server = start_server(runtime, &[]);
        thread::sleep(SETTLE);
        let base = anon_bytes(server.pid());
        ServerBytes::target(server.pid());
        let mut s = IdleServer { server, transport, base, idle: Vec::new() };
        s.open(preopened);
        s
    }

    /// Opens `n` more idle connections and waits until the server has them
    /// all and has settled.
    fn open(&mut self, n: u64) {
        for _ in 0..n {
            let mut stream = client::connect_from(IpAddr::V4(Ipv4Addr::LOCALHOST), self.server.addr, None)
                .unwrap_or_else(|e| panic!("connect: {e}"));
            client::subscribe(&mut stream, self.transport, "idle", TIMEOUT)
                .unwrap_or_else(|e| panic!("subscribe: {e}"));
            self.idle.push(stream);
        }
        wait_counted(&self.server, self.transport, self.idle.len());
        thread::sleep(SETTLE);
    }

    /// Resident anonymous bytes per held connection: the server's growth
    /// since before the first connection, over the connections it holds.
    fn per_connection(&self) -> f64 {
        (anon_bytes(self.server.pid()) - self.base) as f64 / self.idle.len().max(1) as f64
    }
}

// ANCHOR: memory
/// `memory/<transport>`: server bytes per idle connection.
///
/// One iteration opens one more idle connection to a server started once
/// per runtime. The connections stay open until the runtime's benchmark
/// ends, so every sample is taken on a server that holds all the earlier
/// ones (and [`PREOPENED`] more, opened before the first sample). A batch of
/// `iters` connections is valued at `iters` times the server's resident
/// anonymous bytes per held connection after it — its growth since before
/// the first connection, divided by the connections held: the harness's
/// `idle` figure, taken at a growing number of connections.
///
/// Why not simply the growth across the batch: resident memory moves in
/// 4 KiB pages, and the allocator takes memory from the kernel in larger
/// steps (heap growth, arenas, a mapping per large buffer) and reuses what
/// it already has, so a batch of a runtime that needs a few hundred bytes
/// per connection often grows by exactly 0 — which criterion rejects ("took
/// zero time") — and the next by a whole step. Dividing the total growth by
/// the total count averages those steps away; it still needs a few hundred
/// connections before the first sample (see [`PREOPENED`]).
///
/// Statistical caveats, which is why the harness's `idle` scenario (up to
/// tens of thousands of connections from worker processes, one number per
/// run) is the instrument for the absolute figure:
///
/// * **The samples are not independent.** Each is a running mean over all
///   connections so far, so successive samples share most of their data:
///   criterion's confidence interval says how stable that mean is as
///   connections are added, not how far it is from a true value.
/// * **Iteration counts come from wall time.** Criterion sizes the batches
///   (d, 2d, ... 10d with linear sampling) from how long the warm-up's
///   single iteration took ([`SETTLE`] dominates), not from bytes: a run
///   holds about a thousand connections per runtime, a different allocator
///   state than at 10,000.
/// * **Touched, not allocated.** A buffer that is allocated but never
///   written costs no resident memory; what is counted is what the kernel
///   had to back with pages.
/// * **User space only.** Kernel socket memory is not included (the
///   harness samples it, system-wide).
fn memory(c: &mut Criterion<ServerBytes>) {
    let lab = lab();
    let preopened = if lab.test_mode { 2 } else { PREOPENED };
    for transport in [Transport::Ws, Transport::Sse] {
        let mut group = c.benchmark_group(format!("memory/{}", transport.name()));
        group
            .sample_size(10)
            .sampling_mode(SamplingMode::Linear)
            // One warm-up batch of one connection (it always takes longer).
            .warm_up_time(Duration::from_millis(1))
            // With ~60 ms per warm-up iteration: d ≈ 10, about 550 connections
            // (plus the preopened ones).
            .measurement_time(Duration::from_secs(33));
        for runtime in &lab.runtimes {
            let mut state: Option<IdleServer> = None;
            group.bench_with_input(BenchmarkId::from_parameter(runtime), runtime, |b, runtime| {
                let server = state.get_or_insert_with(|| IdleServer::start(runtime, transport, preopened));
                b.iter_custom(|iters| {
                    server.open(iters);
                    (server.per_connection() * iters as f64).round() as i64
                });
            });
        }
        group.finish();
    }
}
// ANCHOR_END: memory

/// Criterion for the memory groups: values in bytes.
fn memory_criterion() -> Criterion<ServerBytes> {
    Criterion::default().with_measurement(ServerBytes)
}

// ---------------------------------------------------------------------------
// Backpressure
// ---------------------------------------------------------------------------

// ANCHOR: backpressure
/// `backpressure/<policy>`: the fast subscribers' latency while [`STALLED`]
/// WebSocket subscribers that never read are connected to the same topic,
/// with the server started with `--policy <policy>`.
///
/// The stalled readers fill their socket buffers, then their outboxes,
/// during the warm-up; from then on each publish meets the policy: with
/// `disconnect` the server has shed them, with `drop-oldest` it keeps
/// discarding for them, with `unbounded` their queues (and the server's
/// memory) grow with every iteration — bounded here by the run's length.
/// The framework baseline has no policy (it ignores `--policy`): its
/// broadcast channel overwrites what a stalled reader has not taken.
fn backpressure(c: &mut Criterion) {
    let lab = lab();
    let stalled_readers = if lab.test_mode { 2 } else { STALLED };
    for policy in Policy::ALL.iter().map(|p| p.name()) {
        let mut group = c.benchmark_group(format!("backpressure/{policy}"));
        group.sample_size(30).warm_up_time(Duration::from_secs(2)).measurement_time(Duration::from_secs(3));
        for runtime in &lab.runtimes {
            let mut state: Option<(ServerProcess, Vec<TcpStream>, Fanout)> = None;
            group.bench_with_input(BenchmarkId::from_parameter(runtime), runtime, |b, runtime| {
                let (_, _, fanout) = state.get_or_insert_with(|| {
                    let server = start_server(runtime, &["--policy", policy]);
                    let stalled = (0..stalled_readers)
                        .map(|_| {
                            let source = IpAddr::V4(Ipv4Addr::LOCALHOST);
                            let mut s = client::connect_from(source, server.addr, Some(STALLED_RCVBUF))?;
                            client::subscribe(&mut s, Transport::Ws, "pressure", TIMEOUT)?;
                            Ok(s)
                        })
                        .collect::<io::Result<Vec<_>>>()
                        .unwrap_or_else(|e| panic!("opening stalled readers failed: {e}"));
                    let fanout =
                        Fanout::open(&server, Transport::Ws, "pressure", FAST, stalled.len(), BACKPRESSURE_PAYLOAD);
                    (server, stalled, fanout)
                });
                b.iter_custom(|iters| (0..iters).map(|_| fanout.round()).sum());
            });
        }
        group.finish();
    }
}
// ANCHOR_END: backpressure

criterion_group!(latency_groups, latency);
criterion_group! {
    name = memory_groups;
    config = memory_criterion();
    targets = memory
}
criterion_group!(backpressure_groups, backpressure);
criterion_main!(latency_groups, memory_groups, backpressure_groups);
