// Run: cargo build --release && cargo run --release -p rtlab-bench --example concurrent_publish -- [--rtlab target/release/rtlab] [--runtimes tokio,mio,may,threads] [--publishers 8] [--subscribers 200] [--seconds 5] [--repeats 2]
//! Concurrent publishing: several publishers, a few hundred subscribers of
//! one topic.
//!
//! Every publish takes the topic's lock, assigns the next id, retains the
//! message and hands it to every subscriber's outbox; how much else happens
//! under that lock (waking each subscriber's connection: an atomic, a
//! `Notify`, an eventfd write, a `pthread_kill`) decides how many publishers
//! can make progress at once. This example measures it from the outside:
//! `P` publishers, each on its own keep-alive connection, publish as fast as
//! the server answers (closed loop) for a fixed time, while `S` SSE
//! subscribers read everything. It then **verifies** that every subscriber
//! received every id, in order, once, and only then prints the rate.
//!
//! The server is pinned to CPU 0 and this process to CPU 1 (where the
//! machine has two), and both processes' CPU time is printed, so that a run
//! limited by the clients can be told from one limited by the server; so is
//! the number of publishes per CPU-second of the server, the figure that
//! least depends on what else the machine was doing.
//!
//! It talks to any `rtlab` binary (`--rtlab`), so that the same command
//! measures two builds: that is how the "wakes after the lock" change of
//! the hub was measured before and after.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rtlab_testkit::{Launch, Running, Stderr};

/// A 16-byte message: small, so that the cost measured is the hub's, not copying.
const MESSAGE: &[u8] = b"0123456789abcdef";

struct Args {
    rtlab: String,
    runtimes: Vec<String>,
    publishers: usize,
    subscribers: usize,
    seconds: u64,
    repeats: usize,
}

fn parse_args() -> Args {
    let mut args = Args {
        rtlab: "target/release/rtlab".into(),
        runtimes: ["tokio", "mio", "may", "threads"].map(String::from).to_vec(),
        publishers: 8,
        subscribers: 200,
        seconds: 5,
        repeats: 2,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        let number = || value.parse::<usize>().unwrap_or_else(|_| panic!("{flag}: not a number: {value}"));
        match flag.as_str() {
            "--rtlab" => args.rtlab = value.clone(),
            "--runtimes" => args.runtimes = value.split(',').map(String::from).collect(),
            "--publishers" => args.publishers = number(),
            "--subscribers" => args.subscribers = number(),
            "--seconds" => args.seconds = number() as u64,
            "--repeats" => args.repeats = number(),
            _ => panic!("unknown option {flag}"),
        }
    }
    args
}

fn main() {
    let args = parse_args();
    let two_cores = std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2;
    if two_cores {
        pin_self(1);
    }
    println!(
        "# {} publishers, {} SSE subscribers, {} s closed-loop publishing per run; {}",
        args.publishers, args.subscribers, args.seconds, args.rtlab
    );
    println!("runtime  run  publishes/s  deliveries/s  server CPU s/s  client CPU s/s  publishes/server CPU-s  verified");
    for runtime in &args.runtimes {
        for run in 1..=args.repeats {
            match measure(&args, runtime, two_cores) {
                Ok(r) => println!(
                    "{runtime:<8} {run:>3}  {:>11.0}  {:>12.0}  {:>14.2}  {:>14.2}  {:>22.0}  yes ({} ids to each subscriber)",
                    r.published as f64 / r.secs,
                    (r.published * args.subscribers as u64) as f64 / r.secs,
                    r.server_cpu / r.secs,
                    r.client_cpu / r.secs,
                    r.published as f64 / r.server_cpu.max(1e-9),
                    r.published
                ),
                Err(e) => println!("{runtime:<8} {run:>3}  FAILED: {e}"),
            }
        }
    }
}

struct Run {
    published: u64,
    secs: f64,
    server_cpu: f64,
    client_cpu: f64,
}

fn measure(args: &Args, runtime: &str, pin: bool) -> Result<Run, String> {
    let server = Server::start(&args.rtlab, runtime, pin)?;
    let topic = format!("storm-{}", std::process::id());
    // Subscribers first; each reads on its own thread and checks ids.
    let last = Arc::new(AtomicU64::new(u64::MAX));
    let mut readers = Vec::new();
    for _ in 0..args.subscribers {
        let mut s = TcpStream::connect(server.addr).map_err(|e| format!("subscribe: {e}"))?;
        s.write_all(format!("GET /sse?topic={topic} HTTP/1.1\r\nHost: bench\r\n\r\n").as_bytes())
            .map_err(|e| e.to_string())?;
        let last = last.clone();
        readers.push(std::thread::spawn(move || read_events(s, &last)));
    }
    // Until the server has them all, a publish would miss some.
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.subscribers(&topic)? < args.subscribers {
        if Instant::now() > deadline {
            return Err("subscribers did not all arrive".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let cpu0 = (server.cpu(), process_cpu());
    let start = Instant::now();
    let publishers: Vec<_> = (0..args.publishers)
        .map(|_| {
            let (stop, addr, topic) = (stop.clone(), server.addr, topic.clone());
            std::thread::spawn(move || publish_until(addr, &topic, &stop))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(args.seconds));
    stop.store(true, Ordering::SeqCst);
    let mut published = 0;
    for p in publishers {
        published += p.join().map_err(|_| "publisher panicked")??;
    }
    let secs = start.elapsed().as_secs_f64();
    let (server_cpu, client_cpu) = (server.cpu() - cpu0.0, process_cpu() - cpu0.1);

    // Verify: every subscriber gets ids 1..=published, in order, once.
    last.store(published, Ordering::SeqCst);
    for r in readers {
        let got = r.join().map_err(|_| "reader panicked")??;
        if got != published {
            return Err(format!("a subscriber received {got} of {published} messages"));
        }
    }
    Ok(Run { published, secs, server_cpu, client_cpu })
}

/// Reads an SSE stream until id `last` (known only at the end) has arrived;
/// fails on any gap, duplicate or reordering.
fn read_events(stream: TcpStream, last: &AtomicU64) -> Result<u64, String> {
    stream.set_read_timeout(Some(Duration::from_secs(1))).map_err(|e| e.to_string())?;
    let mut lines = BufReader::new(stream);
    let mut line = String::new();
    let mut expected = 1;
    let mut idle_since = Instant::now();
    loop {
        if expected > last.load(Ordering::SeqCst) {
            return Ok(expected - 1);
        }
        line.clear();
        match lines.read_line(&mut line) {
            Ok(0) => return Err(format!("stream closed after id {}", expected - 1)),
            Ok(_) => {
                idle_since = Instant::now();
                if let Some(id) = line.strip_prefix("id: ") {
                    let id: u64 = id.trim().parse().map_err(|_| format!("bad id line {line:?}"))?;
                    if id != expected {
                        return Err(format!("expected id {expected}, got {id}"));
                    }
                    expected += 1;
                } else if line.starts_with("event: missed") {
                    return Err("the server reported missed messages".into());
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                if last.load(Ordering::SeqCst) != u64::MAX && idle_since.elapsed() > Duration::from_secs(10) {
                    return Ok(expected - 1); // Reported as a shortfall by the caller.
                }
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Publishes on one keep-alive connection, one request at a time, until told
/// to stop. Returns how many publishes the server acknowledged.
fn publish_until(addr: SocketAddr, topic: &str, stop: &AtomicBool) -> Result<u64, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut request = format!("POST /publish?topic={topic} HTTP/1.1\r\nHost: bench\r\nContent-Length: {}\r\n\r\n", MESSAGE.len())
        .into_bytes();
    request.extend_from_slice(MESSAGE);
    let mut buf = [0u8; 512];
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        s.write_all(&request).map_err(|e| e.to_string())?;
        // The answer is `200` with a small JSON body; read until it is complete.
        let mut got = 0;
        loop {
            let k = s.read(&mut buf[got..]).map_err(|e| e.to_string())?;
            if k == 0 {
                return Err("server closed a publisher".into());
            }
            got += k;
            if let Some(head) = find(&buf[..got], b"\r\n\r\n") {
                let text = String::from_utf8_lossy(&buf[..head]);
                if !text.starts_with("HTTP/1.1 200") {
                    return Err(format!("publish answered {}", text.lines().next().unwrap_or("")));
                }
                let len: usize = text
                    .lines()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                if got >= head + 4 + len {
                    break;
                }
            }
        }
        n += 1;
    }
    Ok(n)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A fresh `rtlab serve` process (the test kit's [`Running`]: killed on drop).
struct Server {
    process: Running,
    addr: SocketAddr,
}

impl Server {
    fn start(rtlab: &str, runtime: &str, pin: bool) -> Result<Server, String> {
        let process = Launch::serve(rtlab, runtime)
            .env("RUST_LOG", "error")
            .stderr(Stderr::Inherit)
            .pin_cpu(pin.then_some(0))
            .start()
            .map_err(|e| format!("{rtlab}: {e}"))?;
        Ok(Server { addr: process.addr(), process })
    }

    /// Subscribers of `topic`, from `/stats`' connection counts (SSE streams).
    fn subscribers(&self, _topic: &str) -> Result<usize, String> {
        let mut s = TcpStream::connect(self.addr).map_err(|e| e.to_string())?;
        s.write_all(b"GET /stats HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n").map_err(|e| e.to_string())?;
        let mut body = String::new();
        s.read_to_string(&mut body).map_err(|e| e.to_string())?;
        let json = &body[body.find("\r\n\r\n").map_or(0, |i| i + 4)..];
        let v: serde_json::Value = serde_json::from_str(json).map_err(|e| format!("/stats: {e}"))?;
        Ok(v["connections"]["sse"].as_u64().unwrap_or(0) as usize)
    }

    /// The server's CPU time so far (user + system), in seconds.
    fn cpu(&self) -> f64 {
        // With taskset the child execs the server: same pid.
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.process.pid())).unwrap_or_default();
        cpu_from_stat(&stat)
    }
}

/// This process's CPU time so far, in seconds.
fn process_cpu() -> f64 {
    cpu_from_stat(&std::fs::read_to_string("/proc/self/stat").unwrap_or_default())
}

/// utime + stime from a `/proc/<pid>/stat` line, in seconds.
fn cpu_from_stat(stat: &str) -> f64 {
    // Fields after the command name (which may hold spaces) start at state.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz
}

/// Pins this process (every thread started after this) to `cpu`.
fn pin_self(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET writes inside it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
    }
}
