//! Many server processes as one server: `rtlab cluster`, and the server side
//! of `rtlab bench million`.
//!
//! One process may hold at most as many connections as it may open files
//! (20,000 here, a hard limit that root cannot raise for a running session's
//! processes), so a million connections need at least 51 processes. The
//! cluster starts N `rtlab serve` processes, watches them (a dead one is
//! reported, and stops the rest), reads each one's memory and connection
//! count, and stops them all on SIGINT/SIGTERM.
//!
//! ## A set of ports, or one port with `SO_REUSEPORT`
//!
//! Two ways to put N processes behind "one server":
//!
//! * **A set of ports** (the default): process `i` listens on `PORT + i`.
//!   Each process stays addressable: its `/stats` and its publish reach *it*,
//!   so the harness reads every process's connection count, and — until the
//!   shared broker exists — a broadcast is one publish per process. The
//!   clients also get N destinations, and every (source address,
//!   destination) pair has its own ephemeral port range: a million
//!   connections need many pairs (see [`crate::crowd`]).
//! * **One port, `SO_REUSEPORT`** (`--shared-port`): every process binds the
//!   same port and the kernel spreads incoming connections over them by a
//!   hash of the 4-tuple. One address for clients and load balancers, but a
//!   request cannot choose its process: a publish reaches one process only
//!   (so a broadcast needs the shared broker), and per-process counts come
//!   from `/proc` (its socket descriptors), not from `/stats`.
//!
//! The benchmark uses the set of ports for the reasons above.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rtlab_testkit::Launch;

use crate::procfs;
use crate::server::ServerProcess;

/// The processes of one cluster, in order: process `i` listens on the
/// `i`-th address (or all on one, with `SO_REUSEPORT`).
///
/// Dropping a cluster kills its processes (each [`ServerProcess`] does).
#[derive(Debug)]
pub struct Cluster {
    /// The server processes.
    pub servers: Vec<ServerProcess>,
    /// All on one port with `SO_REUSEPORT`.
    pub shared_port: bool,
}

/// How to start a cluster.
#[derive(Debug, Clone)]
pub struct ClusterPlan<'a> {
    /// The rtlab binary.
    pub exe: &'a Path,
    /// The runtime lab every process serves.
    pub runtime: &'a str,
    /// How many processes.
    pub processes: usize,
    /// The first address; port 0 lets each process pick its own (a set of
    /// ports), or the first pick one the others share (`shared_port`).
    pub addr: SocketAddr,
    /// One port for all, with `SO_REUSEPORT`.
    pub shared_port: bool,
    /// More `rtlab serve` options for every process.
    pub serve_args: &'a [String],
}

/// One process's state, as [`Cluster::status`] reads it.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ProcessStatus {
    /// Process id.
    pub pid: u32,
    /// Where it listens.
    pub port: u16,
    /// Its private (anonymous) resident memory, bytes.
    pub rss_anon: u64,
    /// Sockets it holds, its listener included (`/proc/<pid>/fd`).
    pub sockets: u64,
}

impl Cluster {
    /// Starts the processes one after the other, each waiting for its
    /// `listening on` line and its first `/stats` answer.
    pub fn start(plan: &ClusterPlan<'_>) -> std::io::Result<Cluster> {
        let mut servers: Vec<ServerProcess> = Vec::with_capacity(plan.processes);
        for i in 0..plan.processes {
            let addr = match (plan.shared_port, servers.first()) {
                // Every later process joins the port the first one got.
                (true, Some(first)) => first.addr,
                (true, None) => plan.addr,
                (false, _) if plan.addr.port() == 0 => plan.addr,
                (false, _) => {
                    let port = u16::try_from(plan.addr.port() as usize + i)
                        .map_err(|_| std::io::Error::other("the port range of the cluster passes 65535"))?;
                    SocketAddr::new(plan.addr.ip(), port)
                }
            };
            let mut launch = Launch::new(plan.exe).args(["serve", "--runtime", plan.runtime, "--addr", &addr.to_string()]);
            if plan.shared_port {
                launch = launch.arg("--reuseport");
            }
            let launch = launch.args(plan.serve_args).timeout(Duration::from_secs(60));
            servers.push(ServerProcess::launch(launch, &format!("{} #{i}", plan.runtime))?);
        }
        Ok(Cluster { servers, shared_port: plan.shared_port })
    }

    /// Where each process listens (all the same with a shared port).
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.servers.iter().map(|s| s.addr).collect()
    }

    /// The first process that has exited, with its exit status.
    pub fn dead(&self) -> Option<(usize, String)> {
        self.servers.iter().enumerate().find(|(_, s)| s.died()).map(|(i, s)| {
            let how = s.exit_status().map_or_else(|| "gone".to_owned(), |st| st.to_string());
            (i, how)
        })
    }

    /// Memory and sockets of every process, from `/proc`.
    pub fn status(&self) -> Vec<ProcessStatus> {
        self.servers
            .iter()
            .map(|s| ProcessStatus {
                pid: s.pid(),
                port: s.addr.port(),
                rss_anon: s.sample().rss_anon,
                sockets: procfs::socket_fds(s.pid()),
            })
            .collect()
    }

    /// Open subscriber streams (SSE and WebSocket) summed over the
    /// processes, from each one's `/stats`; `None` if one does not answer.
    pub fn subscribers(&self) -> Option<u64> {
        self.servers.iter().map(|s| s.stats().ok().map(|v| subscribers(&v))).sum()
    }

    /// Waits for every process to exit on a signal it already has (the
    /// terminal's SIGINT); SIGTERM to those still running after `timeout`.
    pub fn wait_stopped(self, timeout: Duration) -> bool {
        let end = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < end && self.servers.iter().any(|s| !s.died()) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let clean = self.servers.iter().all(|s| s.exit_status().is_some_and(|st| st.success()));
        self.stop(Duration::from_secs(5)) && clean
    }

    /// SIGTERM to every process at once, then waits for each; returns
    /// whether all exited 0 on their own.
    pub fn stop(self, timeout: Duration) -> bool {
        let servers = self.servers;
        // Signal them all first, so that they stop in parallel.
        for server in &servers {
            server.request_stop();
        }
        // Every one is waited for (no short cut at the first failure).
        let stopped: Vec<bool> = servers.into_iter().map(|s| s.wait_stopped(timeout)).collect();
        stopped.iter().all(|&ok| ok)
    }
}

/// `rtlab cluster`: N `rtlab serve` processes as one server.
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    /// How many server processes.
    #[arg(long, default_value_t = 2)]
    pub processes: usize,
    /// The runtime lab every process serves.
    #[arg(long, default_value = "mio")]
    pub runtime: String,
    /// The first process's address; process i listens on PORT + i (port 0:
    /// each picks a free one). With --shared-port, all listen on this one.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// All processes on one port with SO_REUSEPORT (the kernel spreads the
    /// connections; a publish then reaches one process only).
    #[arg(long)]
    pub shared_port: bool,
    /// Seconds between status lines (each process's connections and memory); 0: none.
    #[arg(long, default_value_t = 10)]
    pub status_every: u64,
    /// More `rtlab serve` options for every process, after `--`.
    #[arg(last = true)]
    pub serve_args: Vec<String>,
}

/// Runs a cluster until `terminate` (SIGTERM to the cluster: it is passed
/// on to every process) or `interrupt` (SIGINT: Ctrl-C in a terminal, which
/// the kernel sends to the whole process group, so every process has it
/// already and is only waited for) is set, or one of its processes dies;
/// prints `listening on ADDR` per process, then status lines. Returns false
/// if a process died or did not stop cleanly.
pub fn run_cli(args: &ClusterArgs, terminate: &AtomicBool, interrupt: &AtomicBool) -> std::io::Result<bool> {
    crate::raise_nofile_limit();
    let exe = crate::exe()?;
    let cluster = Cluster::start(&ClusterPlan {
        exe: &exe,
        runtime: &args.runtime,
        processes: args.processes,
        addr: args.addr,
        shared_port: args.shared_port,
        serve_args: &args.serve_args,
    })?;
    for (i, s) in cluster.servers.iter().enumerate() {
        println!("process {i} (pid {}) listening on {}", s.pid(), s.addr);
    }
    let mut last = std::time::Instant::now();
    let mut ok = true;
    while !terminate.load(Ordering::SeqCst) && !interrupt.load(Ordering::SeqCst) {
        if let Some((i, how)) = cluster.dead() {
            eprintln!("rtlab cluster: process {i} (pid {}) died: {how}; stopping the others", cluster.servers[i].pid());
            ok = false;
            break;
        }
        if args.status_every > 0 && last.elapsed() >= Duration::from_secs(args.status_every) {
            last = std::time::Instant::now();
            let status = cluster.status();
            // Sockets less the listener: a process's connections (its
            // /stats connection from here among them).
            let conns: u64 = status.iter().map(|s| s.sockets.saturating_sub(1)).sum();
            let anon: u64 = status.iter().map(|s| s.rss_anon).sum();
            println!("cluster: {} processes, {conns} connections, {} KiB private memory", status.len(), anon / 1024);
            for (i, s) in status.iter().enumerate() {
                println!("  process {i} pid {} port {}: {} connections, {} KiB", s.pid, s.port, s.sockets.saturating_sub(1), s.rss_anon / 1024);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    if interrupt.load(Ordering::SeqCst) && !terminate.load(Ordering::SeqCst) {
        return Ok(cluster.wait_stopped(Duration::from_secs(30)) && ok);
    }
    Ok(cluster.stop(Duration::from_secs(30)) && ok)
}

/// The open SSE and WebSocket subscriber streams a `/stats` document counts
/// (not its plain HTTP connections: the harness's own `/stats` and publish
/// connections are among those).
pub fn subscribers(stats: &serde_json::Value) -> u64 {
    ["sse", "ws"].iter().filter_map(|k| stats["connections"][k].as_u64()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_subscriber_streams_only() {
        let v = serde_json::json!({"connections": {"http": 2, "sse": 3, "ws": 4, "long_poll": 0, "total": 9}});
        assert_eq!(subscribers(&v), 7);
        assert_eq!(subscribers(&serde_json::json!({})), 0);
    }
}
