//! Starting worker processes and talking to them.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::client::Transport;
use crate::worker::{Ready, Report};

/// Most connections one worker holds: below the 20,000 open-files limit per
/// process, with room for the worker's own descriptors.
pub const PER_WORKER: usize = 10_000;

/// One worker process.
#[derive(Debug)]
pub struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<serde_json::Value>,
}

/// What the workers do once their connections are open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Hold the connections open, quietly (idle).
    Hold,
    /// Read every message and expect this many per connection.
    Listen(u64),
    /// Never read until the report, then drain; this many were published.
    Stall(u64),
}

/// What to start workers for.
#[derive(Debug, Clone)]
pub struct Plan<'a> {
    /// The rtlab binary (workers are `rtlab bench-worker`).
    pub exe: &'a Path,
    /// The server.
    pub addr: SocketAddr,
    /// The transport to open.
    pub transport: Transport,
    /// The topic.
    pub topic: &'a str,
    /// Connections in total.
    pub connections: usize,
    /// What the workers do.
    pub mode: Mode,
    /// SO_RCVBUF for the client sockets.
    pub rcvbuf: Option<usize>,
    /// Pin the workers to this core.
    pub cpu: Option<usize>,
    /// The first worker binds to 127.0.0.`first_source`, the next to the
    /// next address: two groups of workers in one run use different ranges.
    pub first_source: u8,
    /// Short polling: milliseconds between a client's polls.
    pub poll_every_ms: Option<u64>,
    /// Stop opening at the first failure (finding the server's limit).
    pub stop_at_failure: bool,
    /// Milliseconds an SSE or WebSocket handshake may take.
    pub handshake_timeout_ms: Option<u64>,
    /// A browser's header lines to send (`--browser-headers`).
    pub browser_headers: Option<&'a Path>,
}

impl<'a> Plan<'a> {
    /// A plan with the defaults: hold, no pinning, sources from 127.0.0.10.
    pub fn new(exe: &'a Path, addr: SocketAddr, transport: Transport, topic: &'a str, connections: usize) -> Plan<'a> {
        Plan {
            exe,
            addr,
            transport,
            topic,
            connections,
            mode: Mode::Hold,
            rcvbuf: None,
            cpu: None,
            first_source: 10,
            poll_every_ms: None,
            stop_at_failure: false,
            handshake_timeout_ms: None,
            browser_headers: None,
        }
    }
}

/// The workers of one scenario run.
#[derive(Debug)]
pub struct Workers {
    workers: Vec<Worker>,
}

impl Workers {
    /// Starts enough workers for `plan.connections` (each on its own source
    /// address 127.0.0.10, .11, ...) and waits until all have opened their
    /// connections, with a progress bar. Returns the workers and their
    /// combined [`Ready`].
    pub fn start(plan: &Plan<'_>) -> std::io::Result<(Workers, Ready)> {
        let count = plan.connections.div_ceil(PER_WORKER).max(1);
        let bar = ProgressBar::new(plan.connections as u64).with_style(
            ProgressStyle::with_template("  opening {pos:>6}/{len} {transport} connections {bar:30} {elapsed}")
                .expect("valid template")
                .with_key("transport", {
                    let name = plan.transport.name().to_owned();
                    move |_: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = w.write_str(&name);
                    }
                }),
        );
        let bar = if plan.connections < 2000 {
            bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
            bar
        } else {
            crate::progress().add(bar)
        };
        let mut workers = Vec::new();
        for i in 0..count {
            let n = (plan.connections - i * PER_WORKER).min(PER_WORKER);
            let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, plan.first_source.saturating_add(i as u8)));
            let mut cmd = match plan.cpu {
                Some(core) => {
                    let mut c = Command::new("taskset");
                    c.arg("-c").arg(core.to_string()).arg(plan.exe);
                    c
                }
                None => Command::new(plan.exe),
            };
            cmd.arg("bench-worker")
                .args(["--addr", &plan.addr.to_string(), "--transport", plan.transport.name(), "--topic", plan.topic])
                .args(["--connections", &n.to_string(), "--source", &source.to_string()]);
            match plan.mode {
                Mode::Hold => {}
                Mode::Listen(expect) => {
                    cmd.args(["--listen", "--expect", &expect.to_string()]);
                }
                Mode::Stall(expect) => {
                    cmd.args(["--stall", "--expect", &expect.to_string()]);
                }
            }
            if let Some(size) = plan.rcvbuf {
                cmd.args(["--rcvbuf", &size.to_string()]);
            }
            if let Some(ms) = plan.poll_every_ms {
                cmd.args(["--poll-every-ms", &ms.to_string()]);
            }
            if let Some(ms) = plan.handshake_timeout_ms {
                cmd.args(["--handshake-timeout-ms", &ms.to_string()]);
            }
            if let Some(path) = plan.browser_headers {
                cmd.arg("--browser-headers").arg(path);
            }
            if plan.stop_at_failure {
                cmd.arg("--stop-at-failure");
            }
            rtlab_testkit::no_inherited_descriptors(&mut cmd);
            let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn()?;
            let stdout = child.stdout.take().expect("piped");
            let stdin = child.stdin.take();
            let (tx, rx) = channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                        if tx.send(v).is_err() {
                            break;
                        }
                    }
                }
            });
            workers.push(Worker { child, stdin, lines: rx });
        }
        let mut total = Ready { opened: 0, failed: 0, error: None, open_secs: 0.0, client_limit: false };
        for w in &mut workers {
            let ready = loop {
                let line = w.next(Duration::from_secs(300))?;
                if let Some(n) = line.get("progress").and_then(|v| v.as_u64()) {
                    bar.inc(n);
                } else if let Some(ready) = line.get("ready") {
                    break serde_json::from_value::<Ready>(ready.clone()).map_err(std::io::Error::other)?;
                }
            };
            total.opened += ready.opened;
            total.failed += ready.failed;
            total.client_limit |= ready.client_limit;
            total.error = total.error.or(ready.error);
            total.open_secs = total.open_secs.max(ready.open_secs);
        }
        bar.finish_and_clear();
        Ok((Workers { workers }, total))
    }

    /// Waits until every listening worker says its connections got every
    /// expected message; false on timeout.
    pub fn wait_done(&mut self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        for w in &mut self.workers {
            loop {
                let left = end.saturating_duration_since(Instant::now());
                match w.next(left) {
                    Ok(line) if line.get("done").is_some() => break,
                    Ok(_) => continue,
                    Err(_) => return false,
                }
            }
        }
        true
    }

    /// The worker processes' ids.
    pub fn pids(&self) -> Vec<u32> {
        self.workers.iter().map(|w| w.child.id()).collect()
    }

    /// CPU seconds (user + system) the worker processes used so far, all
    /// together: the clients' own cost, so that a cell whose client core
    /// was saturated is not read as the server's limit.
    pub fn cpu_secs(&self) -> f64 {
        self.workers
            .iter()
            .map(|w| {
                let pid = w.child.id();
                crate::procfs::cpu_secs_precise(pid)
                    .or_else(|| crate::procfs::process(pid).map(|s| s.cpu_secs))
                    .unwrap_or(0.0)
            })
            .sum()
    }

    /// Starts the measured window: every worker zeroes its request and byte
    /// counters (what came before is reported as setup).
    pub fn mark(&mut self) -> std::io::Result<()> {
        for w in &mut self.workers {
            if let Some(stdin) = w.stdin.as_mut() {
                writeln!(stdin, "mark")?;
            }
        }
        for w in &mut self.workers {
            while w.next(Duration::from_secs(30))?.get("marked").is_none() {}
        }
        Ok(())
    }

    /// Asks listening workers for their reports.
    pub fn reports(mut self) -> std::io::Result<Vec<Report>> {
        let mut reports = Vec::new();
        for w in &mut self.workers {
            if let Some(stdin) = w.stdin.as_mut() {
                let _ = writeln!(stdin, "report");
            }
        }
        for w in &mut self.workers {
            loop {
                let line = w.next(Duration::from_secs(120))?;
                if let Some(report) = line.get("report") {
                    reports.push(serde_json::from_value(report.clone()).map_err(std::io::Error::other)?);
                    break;
                }
            }
        }
        // The workers exit after reporting: wait, so that their connections
        // are closed before the server is stopped.
        for w in &mut self.workers {
            drop(w.stdin.take());
            let _ = w.child.wait();
        }
        Ok(reports)
    }

    /// Tells idle workers to close their connections and waits for them.
    pub fn close(mut self) {
        for w in &mut self.workers {
            if let Some(mut stdin) = w.stdin.take() {
                let _ = writeln!(stdin, "close");
            }
        }
        for w in &mut self.workers {
            let _ = w.child.wait();
        }
    }
}

impl Worker {
    fn next(&mut self, timeout: Duration) -> std::io::Result<serde_json::Value> {
        match self.lines.recv_timeout(timeout) {
            Ok(v) => Ok(v),
            Err(RecvTimeoutError::Timeout) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "worker timed out")),
            Err(RecvTimeoutError::Disconnected) => Err(std::io::Error::other("worker exited")),
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
