//! The scaling-out experiment (`rtlab bench-cluster`): several `rtlab serve
//! --broker redis://...` processes on one real `redis-server` that this
//! command starts itself (no persistence, a free port: the test kit's
//! [`RedisServer`]), measured in four parts, one results document.
//!
//! | part | what it measures |
//! |---|---|
//! | latency ([`latency`]) | publish-to-receive on SSE and WebSocket, open-loop at a fixed rate: a subscriber on the publishing process with the in-process broker (no Redis), against subscribers through Redis on the publishing process and on another one; HDR histograms per run, p50/p99/max, the added p50 and p99 |
//! | fan-out ([`spread`]) | M SSE subscribers spread over 1, 2 and 4 processes, one publisher: the last subscriber's latency per message, deliveries per second of a burst, Redis's CPU per delivered and per published message (`/proc/<pid>/stat`) |
//! | broker failure ([`failure`]) | three instances, subscribers of SSE, WebSocket and long poll on each, publishers on each; `redis-server` SIGKILLed and restarted empty: per subscriber lost, duplicated, out-of-order and silent gaps (each must be 0), `503`s while down, time from Redis's return to the first delivered message, instances and connections that survived |
//! | sticky sessions ([`sticky`]) | long polls and SSE resumes (`Last-Event-ID`) sent to the next process at every hop, as a round-robin balancer would, on processes without a shared broker and on the Redis broker: lost, duplicated and resets per client |
//!
//! Message bodies carry the publisher's clock (`CLOCK_REALTIME`, one clock
//! for every process on the machine); receive times are the kernel's
//! (`SO_TIMESTAMPNS`), so a reader slow to get to a socket does not inflate
//! what it measures. Every part verifies before it reports: a run in which
//! a subscriber lost, duplicated or reordered a message is marked so, and
//! the command fails.
//!
//! The document (`<date>-cluster.json`) carries the usual provenance; its
//! tables, findings, plots and two claim verdicts ("Redis pub/sub between
//! servers adds ~1–2 ms", "SSE needs no sticky sessions") are rendered from
//! it ([`render`]), again at will with `--render FILE`.

pub mod failure;
pub mod latency;
pub mod render;
pub mod spread;
pub mod sticky;

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::Latency;
use crate::axes::Transport;
use crate::client::{self, PushParser, Signal, subscribe};
use crate::cluster::{Cluster, ClusterPlan};
use crate::results::{Provenance, utc_now};
use rtlab_testkit::RedisServer;

/// The document's format, checked when a document is read.
pub const SCHEMA: &str = "rtlab-cluster/1";

/// Where the committed documents and their rendering live.
pub const COMMITTED: &str = "bench-results/cluster";

/// The parts of the experiment, for `--parts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Part {
    Latency,
    Fanout,
    Failure,
    Sticky,
}

/// `rtlab bench-cluster`: latency through Redis against in-process, fan-out
/// over processes, a killed Redis, and sticky sessions.
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
pub struct ScaleoutArgs {
    /// The parts to run, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "latency,fanout,failure,sticky")]
    pub parts: Vec<Part>,
    /// Labs of the latency part and of the failure run.
    #[arg(long, value_delimiter = ',', default_value = "tokio,mio,may,threads")]
    pub runtimes: Vec<String>,
    /// Latency: messages published per second (open loop).
    #[arg(long, default_value_t = 200)]
    pub rate: u64,
    /// Latency: messages per run (each subscriber gets every one).
    #[arg(long, default_value_t = 1000)]
    pub messages: u64,
    /// Latency and fan-out: runs per cell, each on fresh server processes.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Message size, bytes.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Fan-out: labs.
    #[arg(long, value_delimiter = ',', default_value = "mio")]
    pub fanout_runtimes: Vec<String>,
    /// Fan-out: subscribers (SSE), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,4000")]
    pub fanout_subscribers: Vec<usize>,
    /// Fan-out: server processes the subscribers are spread over.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    pub fanout_processes: Vec<usize>,
    /// Fan-out: messages per second of the paced phase.
    #[arg(long, default_value_t = 10)]
    pub fanout_rate: u64,
    /// Fan-out: runs per cell.
    #[arg(long, default_value_t = 2)]
    pub fanout_repeats: usize,
    /// Fan-out: messages of the paced phase.
    #[arg(long, default_value_t = 100)]
    pub fanout_messages: u64,
    /// Fan-out: messages published back to back after it (deliveries per second).
    #[arg(long, default_value_t = 50)]
    pub burst: u64,
    /// Failure run: subscribers of each transport on each of the three instances.
    #[arg(long, default_value_t = 2)]
    pub failure_subscribers: usize,
    /// Failure run: publishes per second of each instance's publisher.
    #[arg(long, default_value_t = 50)]
    pub failure_rate: u64,
    /// Failure run: seconds of publishing before Redis is killed, down, and after it is back.
    #[arg(long, value_delimiter = ',', default_value = "2,2,3")]
    pub failure_phases: Vec<f64>,
    /// Sticky sessions: the lab (the result is about ids, not runtimes).
    #[arg(long, default_value = "mio")]
    pub sticky_runtime: String,
    /// Sticky sessions: messages published.
    #[arg(long, default_value_t = 60)]
    pub sticky_messages: u64,
    /// Sticky sessions: messages per second.
    #[arg(long, default_value_t = 20)]
    pub sticky_rate: u64,
    /// Where the document goes (a directory; the file is `<date>-cluster.json`).
    #[arg(long, default_value = COMMITTED)]
    #[serde(skip)]
    pub out: PathBuf,
    /// Also write the rendering into this directory's `cluster/` (the book's `book/src/generated`).
    #[arg(long)]
    #[serde(skip)]
    pub book: Option<PathBuf>,
    /// Render an existing document (a JSON file) instead of measuring; its
    /// rendering goes beside it (and into --book).
    #[arg(long)]
    #[serde(skip)]
    pub render: Option<PathBuf>,
}

/// One run of the experiment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterDoc {
    /// [`SCHEMA`].
    pub schema: String,
    pub started: String,
    pub wall_secs: f64,
    /// This command, the machine, the toolchain, the crates and the commit.
    #[serde(flatten)]
    pub provenance: Provenance,
    /// `/proc/loadavg` at the start and at the end (1-minute figures).
    pub load: (f64, f64),
    /// The run's conditions in words, measured
    /// ([`crate::results::conditions`]; the name is older than the
    /// measurement). Nothing is pinned: the server processes, redis-server
    /// and the clients share every core.
    pub shared_machine: String,
    /// `redis-server --version`.
    pub redis_version: String,
    /// The options of the run.
    pub parameters: ScaleoutArgs,
    pub latency: Vec<latency::LatencyRun>,
    pub fanout: Vec<spread::FanoutRun>,
    pub failure: Vec<failure::FailureRun>,
    pub sticky: Vec<sticky::StickyClient>,
}

impl ClusterDoc {
    /// Every run verified (nothing lost, duplicated or out of order where
    /// that is the target).
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        for r in &self.latency {
            if !r.verified {
                out.push(format!("latency {} {} repeat {}: not verified", r.runtime, r.path, r.repeat));
            }
        }
        for r in &self.fanout {
            if !r.verified {
                out.push(format!("fan-out {} {}×{} repeat {}: not verified", r.runtime, r.subscribers, r.processes, r.repeat));
            }
        }
        for r in &self.failure {
            if !r.passed() {
                out.push(format!("failure run {}: {}", r.runtime, r.problems().join("; ")));
            }
        }
        for c in self.sticky.iter().filter(|c| c.broker == "redis") {
            if c.lost + c.duplicated + c.resets > 0 {
                out.push(format!("sticky {} {} on redis: {} lost, {} duplicated, {} resets", c.transport, c.routing, c.lost, c.duplicated, c.resets));
            }
        }
        out
    }
}

/// Server processes of one measurement, on the broker or each on its own.
pub(crate) fn start_cluster(runtime: &str, processes: usize, broker: Option<&RedisServer>) -> io::Result<Cluster> {
    let exe = crate::exe()?;
    let serve_args: Vec<String> = broker.map(|r| vec!["--broker".to_owned(), r.url()]).unwrap_or_default();
    Cluster::start(&ClusterPlan {
        exe: &exe,
        runtime,
        processes,
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        shared_port: false,
        serve_args: &serve_args,
    })
}

/// A process's CPU time (user + system), seconds, to the nanosecond
/// ([`crate::procfs::cpu_secs_precise`]); 0 if it is gone.
pub(crate) fn cpu_secs(pid: Option<u32>) -> f64 {
    pid.and_then(crate::procfs::cpu_secs_precise).unwrap_or(0.0)
}

/// One subscriber connection of a [`Readers`] set.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sub {
    pub addr: SocketAddr,
    pub transport: Transport,
    /// Which tally its deliveries go to.
    pub group: usize,
}

/// What the readers counted for one group of subscribers.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// Publish-to-receive of every delivery, µs.
    pub latency: Latency,
    /// Per message (by its sequence number): the slowest delivery, µs.
    pub slowest: Vec<u64>,
    /// Per message: the latest kernel receive time, ns.
    pub last_rx: Vec<u64>,
    /// Per message: how many subscribers got it.
    pub reached: Vec<u64>,
    /// Messages received (bench payloads and others).
    pub delivered: u64,
    /// A message whose id was not the previous one's + 1 on its connection,
    /// or a missed/reset signal: must stay 0.
    pub order_errors: u64,
    /// Connections the server closed.
    pub closed: u64,
}

/// Subscriber connections read on one thread (mio), each delivery
/// timestamped by the kernel and tallied by its payload's sequence number.
pub(crate) struct Readers {
    handle: std::thread::JoinHandle<io::Result<Vec<Tally>>>,
    /// Messages received so far, over every connection.
    pub delivered: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

// ANCHOR: readers
impl Readers {
    /// Subscribes every `subs` connection to `topic` (the handshake read
    /// here), then reads them all on a thread of their own. `seqs` bounds
    /// the payload sequence numbers tallied per message.
    pub fn open(subs: &[Sub], topic: &str, groups: usize, seqs: usize) -> io::Result<Readers> {
        let mut conns = Vec::with_capacity(subs.len());
        for sub in subs {
            let mut s = TcpStream::connect_timeout(&sub.addr, Duration::from_secs(5))?;
            let opened = subscribe(&mut s, sub.transport, topic, Duration::from_secs(10))?;
            client::enable_rx_timestamps(&s)?;
            s.set_nonblocking(true)?;
            let mut parser = PushParser::default();
            // Nothing is published before every subscriber is open: what
            // came with the head is the stream's preamble, not a message.
            let early = parser.feed_signals(sub.transport, &opened.rest);
            if !early.is_empty() {
                return Err(io::Error::other(format!("{} signals before the first publish", early.len())));
            }
            conns.push((mio::net::TcpStream::from_std(s), *sub, parser, 0u64));
        }
        let delivered = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, halt) = (delivered.clone(), stop.clone());
        let handle = std::thread::spawn(move || {
            let mut tallies: Vec<Tally> = (0..groups)
                .map(|_| Tally { slowest: vec![0; seqs], last_rx: vec![0; seqs], reached: vec![0; seqs], ..Tally::default() })
                .collect();
            let mut poll = mio::Poll::new()?;
            for (i, (s, ..)) in conns.iter_mut().enumerate() {
                poll.registry().register(s, mio::Token(i), mio::Interest::READABLE)?;
            }
            let mut events = mio::Events::with_capacity(1024);
            let mut buf = vec![0u8; 64 * 1024];
            while !halt.load(Ordering::Relaxed) {
                poll.poll(&mut events, Some(Duration::from_millis(20)))?;
                for ev in &events {
                    let (s, sub, parser, last_id) = &mut conns[ev.token().0];
                    let tally = &mut tallies[sub.group];
                    loop {
                        let (n, stamp) = match client::recv_timestamped(&*s, &mut buf) {
                            Ok((0, _)) => {
                                tally.closed += 1;
                                let _ = poll.registry().deregister(s);
                                break;
                            }
                            Ok(got) => got,
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                                tally.closed += 1;
                                let _ = poll.registry().deregister(s);
                                break;
                            }
                            Err(e) => return Err(e),
                        };
                        let rx = stamp.unwrap_or_else(client::realtime_ns);
                        for signal in parser.feed_signals(sub.transport, &buf[..n]) {
                            match signal {
                                Signal::Message(m) => {
                                    if *last_id != 0 && m.id != *last_id + 1 {
                                        tally.order_errors += 1;
                                    }
                                    *last_id = m.id;
                                    tally.delivered += 1;
                                    count.fetch_add(1, Ordering::Relaxed);
                                    let Some((seq, sent_ns)) = client::parse_payload(&m.data) else { continue };
                                    let us = rx.saturating_sub(sent_ns) / 1000;
                                    tally.latency.record(us);
                                    if let Some(i) = usize::try_from(seq).ok().filter(|&i| i < seqs) {
                                        tally.slowest[i] = tally.slowest[i].max(us);
                                        tally.last_rx[i] = tally.last_rx[i].max(rx);
                                        tally.reached[i] += 1;
                                    }
                                }
                                Signal::Missed { .. } | Signal::Reset { .. } => tally.order_errors += 1,
                                Signal::Ping(payload) => {
                                    let _ = s.write_all(&client::pong_frame(&payload));
                                }
                                Signal::Close => tally.closed += 1,
                            }
                        }
                    }
                }
            }
            Ok(tallies)
        });
        Ok(Readers { handle, delivered, stop })
    }
    // ANCHOR_END: readers

    /// Waits until `n` messages have been received in all (false: not
    /// within `timeout`).
    pub fn wait_for(&self, n: u64, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while self.delivered.load(Ordering::Relaxed) < n {
            if Instant::now() > end || self.handle.is_finished() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }

    /// Stops reading; the tallies, one per group.
    pub fn finish(self) -> io::Result<Vec<Tally>> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().map_err(|_| io::Error::other("the reader thread panicked"))?
    }
}

/// Publishes `count` plain messages (`warm-up`) one after the other on
/// `addr`, so that every subscription on every process is known to be live
/// before the measured messages leave: SSE and WebSocket start live.
pub(crate) fn warm_up(addr: SocketAddr, topic: &str, count: u64) -> io::Result<()> {
    let mut publisher = client::Publisher::connect(addr, topic)?;
    for _ in 0..count {
        publisher.publish(b"warm-up")?;
    }
    Ok(())
}

/// `redis-server --version`'s line.
fn redis_version() -> String {
    std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|e| format!("unknown: {e}"))
}

/// A document read back, its schema checked.
pub fn read(path: &Path) -> io::Result<ClusterDoc> {
    let doc: ClusterDoc = serde_json::from_slice(&std::fs::read(path)?).map_err(io::Error::other)?;
    if doc.schema != SCHEMA {
        return Err(io::Error::other(format!("{}: schema {:?}, expected {SCHEMA:?}", path.display(), doc.schema)));
    }
    Ok(doc)
}

/// `rtlab bench-cluster`.
pub fn run(args: &ScaleoutArgs) -> io::Result<()> {
    if let Some(file) = &args.render {
        let doc = read(file)?;
        return render::write(&doc, file.parent().unwrap_or(Path::new(".")), args.book.as_deref());
    }
    crate::raise_nofile_limit();
    let started = Instant::now();
    // The commit and the tree as the run starts (what the binary was built
    // from, if it was built from this tree), not as it ends.
    let provenance = Provenance::detect();
    let busy0 = crate::results::busy_before();
    let load0 = crate::procfs::loadavg();
    let cores = provenance.machine.cores;
    let (date, stamp) = utc_now();
    let mut doc = ClusterDoc {
        schema: SCHEMA.to_owned(),
        started: stamp,
        wall_secs: 0.0,
        provenance,
        load: (load0, load0),
        shared_machine: crate::results::conditions(busy0, cores, (load0, load0)),
        redis_version: redis_version(),
        parameters: args.clone(),
        latency: Vec::new(),
        fanout: Vec::new(),
        failure: Vec::new(),
        sticky: Vec::new(),
    };
    if args.parts.contains(&Part::Latency) {
        doc.latency = latency::run(args)?;
    }
    if args.parts.contains(&Part::Fanout) {
        doc.fanout = spread::run(args)?;
    }
    if args.parts.contains(&Part::Failure) {
        for rt in &args.runtimes {
            let run = failure::run(args, rt)?;
            crate::say(&failure::summary(&run));
            doc.failure.push(run);
        }
    }
    if args.parts.contains(&Part::Sticky) {
        doc.sticky = sticky::run(args)?;
    }
    doc.load.1 = crate::procfs::loadavg();
    doc.shared_machine = crate::results::conditions(busy0, cores, doc.load);
    doc.wall_secs = started.elapsed().as_secs_f64();
    std::fs::create_dir_all(&args.out)?;
    let file = args.out.join(format!("{date}-cluster.json"));
    std::fs::write(&file, serde_json::to_string_pretty(&doc).map_err(io::Error::other)? + "\n")?;
    println!("wrote {}", file.display());
    render::write(&doc, &args.out, args.book.as_deref())?;
    let failures = doc.failures();
    if !failures.is_empty() {
        return Err(io::Error::other(format!("not verified: {}", failures.join("; "))));
    }
    Ok(())
}
