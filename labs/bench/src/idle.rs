//! The idle scenario: what an open, quiet connection costs the server.
//!
//! N clients open a subscription (an SSE stream, a WebSocket, or a long poll
//! held for 60 s) and say nothing more. The server's resident anonymous
//! memory before and after, divided by the connections it holds, is its
//! user-space cost per connection; the growth of the kernel's slab and TCP
//! buffer memory is the kernel's share, reported apart. Then the clients
//! leave, and the run checks that the server's connection count returns to
//! zero and how much of the memory it gives back.
//!
//! `--connections max` asks for more connections than the server's
//! open-files limit allows: the workers stop at the first connection that
//! fails, and the server's own count says how many one process can hold.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::client::Transport;
use crate::outcome::{Measured, Run, Verdict};
use crate::procfs::{self, KernelSample, ProcessSample};
use crate::session::{Session, Stop};
use crate::worker::Ready;
use crate::workers::Workers;
use crate::Common;

/// How many connections: a number, or as many as the server can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Count {
    /// Exactly this many.
    N(usize),
    /// More than the server's descriptor limit: find how many it holds.
    Max,
}

impl FromStr for Count {
    type Err = String;
    fn from_str(s: &str) -> Result<Count, String> {
        match s {
            "max" => Ok(Count::Max),
            n => n.parse().map(Count::N).map_err(|_| format!("'{s}' is neither a number nor 'max'")),
        }
    }
}

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Count::N(n) => write!(f, "{n}"),
            Count::Max => f.write_str("max"),
        }
    }
}

/// Most connections a `max` run asks for, whatever the descriptor limit.
pub const MAX_ATTEMPTS: usize = 100_000;

/// Options of one idle run.
#[derive(Debug, Clone, clap::Args)]
pub struct IdleArgs {
    #[command(flatten)]
    pub common: Common,
    /// Transport of the idle connections (sse, ws or long-poll).
    #[arg(long, value_enum, default_value = "sse")]
    pub transport: Transport,
    /// Idle connections to open, or `max`: as many as the server will hold.
    #[arg(long, default_value = "1000")]
    pub connections: Count,
}

/// What one idle run was asked and measured ([`Run`] adds what every run
/// reports). Verified: the counts matched (for `max`: the server held
/// some), and the server released them all.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdleResult {
    /// What was asked: a number or `max`.
    pub requested: Count,
    /// What the connections cost.
    #[serde(flatten)]
    pub cost: Cost,
}

/// What an idle run measured: the connections held and what they cost
/// (flattened into [`IdleResult`]'s JSON).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Cost {
    /// Connection attempts the clients made.
    pub attempted: usize,
    /// Connections the clients opened (for a long poll: sent, since a held
    /// poll has no answer; the server's count is the one that matters).
    pub opened: usize,
    pub failed: usize,
    pub first_error: Option<String>,
    /// Connections the server counted as open once the count was steady.
    pub held: u64,
    /// Seconds the clients took to open their connections (from the first
    /// attempt to the last success; the workers open in parallel).
    pub open_secs: f64,
    pub server_before: ProcessSample,
    pub server_after: ProcessSample,
    pub kernel_before: KernelSample,
    pub kernel_after: KernelSample,
    /// User-space bytes per connection: growth of resident anonymous memory / held.
    pub user_bytes_per_conn: f64,
    /// Growth of the whole resident set / held (includes file pages touched).
    pub rss_bytes_per_conn: f64,
    /// Kernel bytes per connection: growth of the socket slab caches + TCP
    /// buffer memory + kernel stacks + the thread caches (task_struct,
    /// VMAs) and page tables / held, system-wide (client sockets included:
    /// both ends live on this machine). Where `/proc/slabinfo` is not
    /// readable it is the whole slab's growth, and not reported as a metric
    /// (see `kernel_source`).
    pub kernel_bytes_per_conn: f64,
    /// Where the slab figure came from: `slabinfo` (the socket and thread
    /// caches), or `meminfo-slab` (the whole slab: `/proc/slabinfo` was not
    /// readable, so no kernel figure is reported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_source: Option<String>,
    /// The same with the whole slab (`/proc/meminfo` "Slab"): includes every
    /// other cache, so other processes' activity shows.
    pub kernel_total_slab_bytes_per_conn: f64,
    /// The server's open-connection counter returned to zero after the clients left.
    pub sockets_released: bool,
    /// The server after the clients left.
    pub server_after_close: ProcessSample,
    /// The kernel after the clients left.
    pub kernel_after_close: KernelSample,
    /// Resident anonymous memory still held per connection after the clients
    /// left (the allocator keeps freed memory for reuse; 0: all given back).
    pub user_retained_bytes_per_conn: f64,
    /// Slab + TCP memory still held per connection after the clients left
    /// (system-wide; includes the clients' TIME_WAIT sockets).
    pub kernel_retained_bytes_per_conn: f64,
}

/// Runs the idle scenario once against a fresh server.
pub fn run(args: &IdleArgs) -> std::io::Result<Run<IdleResult>> {
    if !matches!(args.transport, Transport::Sse | Transport::Ws | Transport::LongPoll) {
        return Err(std::io::Error::other("idle: a short-polling client holds nothing open; use sse, ws or long-poll"));
    }
    // "How many can one process hold" asks for the runtime's own ceiling
    // (descriptors, threads, stacks), not for the connection gate's `503`,
    // which by default refuses a little below the open-files limit: past
    // that limit the gate is lifted for this run.
    let lift_gate = vec![format!("--max-connections={}", crate::nofile_limit().saturating_add(1000))];
    let server_args: &[String] = if args.connections == Count::Max { &lift_gate } else { &[] };
    let (info, cost) = Session::run(&args.common, args.transport, server_args, |s| hold(s, args))?;
    Ok(Run { info, result: IdleResult { requested: args.connections, cost } })
}

/// The scenario's own part: open, let the server count, sample, close,
/// sample again, and check the counts.
fn hold(s: &Session, args: &IdleArgs) -> Result<(Cost, Verdict), Stop> {
    let server = &s.server;
    std::thread::sleep(Duration::from_millis(300));
    let server_before = server.sample();
    let kernel_before = procfs::kernel();

    let attempted = match args.connections {
        Count::N(n) => n,
        // The server inherits this process's limit; ask for more than it allows.
        Count::Max => (crate::nofile_limit() as usize).saturating_add(1000).min(MAX_ATTEMPTS),
    };
    let max = args.connections == Count::Max;
    let mut plan = s.plan("idle", attempted);
    if max {
        plan.stop_at_failure = true;
        plan.handshake_timeout_ms = Some(3000);
    }
    let opening = std::time::Instant::now();
    let (workers, ready) = Workers::start(&plan)?;
    let key = args.transport.stats_key();
    let opened = ready.opened;
    let held = if max {
        server.wait_stable(key, Duration::from_secs(1), Duration::from_secs(60)).unwrap_or(0)
    } else {
        server.wait_stats(Duration::from_secs(30), |s| s["connections"][key].as_u64() == Some(opened as u64));
        server.stats().ok().and_then(|s| s["connections"][key].as_u64()).unwrap_or(0)
    };
    // Let allocator and kernel settle before sampling.
    std::thread::sleep(Duration::from_millis(500));
    let server_after = server.sample();
    let kernel_after = procfs::kernel();
    // A held long poll is answered after 60 s (`wait=60`): sampled later, the
    // first ones are no longer held.
    let too_slow = args.transport == Transport::LongPoll && opening.elapsed() > Duration::from_secs(55);

    workers.close();
    let sockets_released = server.wait_stats(Duration::from_secs(30), |s| s["connections"][key].as_u64() == Some(0));
    std::thread::sleep(Duration::from_millis(300));
    let server_after_close = server.sample();
    let kernel_after_close = procfs::kernel();

    // ANCHOR: per_connection
    let per = |after: u64, before: u64| if held == 0 { 0.0 } else { (after as f64 - before as f64) / held as f64 };
    let readable = kernel_before.socket_slab > 0;
    let kernel_total = |k: &KernelSample| {
        (if readable { k.socket_slab + k.thread_slab } else { k.slab }) + k.tcp_mem + k.kernel_stack + k.page_tables
    };
    let whole_slab = |k: &KernelSample| k.slab + k.tcp_mem + k.kernel_stack;
    // ANCHOR_END: per_connection
    let verdict = judge(max, attempted, &ready, held, too_slow, sockets_released);
    let cost = Cost {
        attempted,
        opened,
        failed: ready.failed,
        first_error: ready.error,
        held,
        open_secs: ready.open_secs,
        user_bytes_per_conn: per(server_after.rss_anon, server_before.rss_anon),
        rss_bytes_per_conn: per(server_after.rss, server_before.rss),
        kernel_bytes_per_conn: per(kernel_total(&kernel_after), kernel_total(&kernel_before)),
        kernel_source: Some(if readable { "slabinfo" } else { "meminfo-slab" }.to_owned()),
        kernel_total_slab_bytes_per_conn: per(whole_slab(&kernel_after), whole_slab(&kernel_before)),
        user_retained_bytes_per_conn: per(server_after_close.rss_anon, server_before.rss_anon),
        kernel_retained_bytes_per_conn: per(kernel_total(&kernel_after_close), kernel_total(&kernel_before)),
        server_before,
        server_after,
        kernel_before,
        kernel_after,
        sockets_released,
        server_after_close,
        kernel_after_close,
    };
    Ok((cost, verdict))
}

/// The verdict of an idle run, from what the clients opened (`ready`),
/// what the server held and whether it let them all go.
fn judge(max: bool, attempted: usize, ready: &Ready, held: u64, too_slow: bool, sockets_released: bool) -> Verdict {
    let opened = ready.opened;
    let first_error = ready.error.clone().unwrap_or_default();
    if too_slow {
        return Verdict::Environment("opening took longer than the 60 s a long poll is held: the first ones were answered".into());
    }
    if ready.client_limit && (max || opened != attempted) {
        return Verdict::Environment(format!("the clients, not the server, ran out: {first_error}"));
    }
    // The counts: for `max`, that the server held any; otherwise that every
    // connection opened and the server counted each. Then, for both, that
    // it let them all go.
    let counted = if max && held == 0 {
        Err(format!("the server held no connection: {:?}", ready.error))
    } else if !max && opened != attempted {
        Err(format!("opened {opened}/{attempted}: {first_error}"))
    } else if !max && held != opened as u64 {
        Err(format!("the server counted {held} of {opened} connections"))
    } else {
        Ok(())
    };
    Verdict::of(counted.and_then(|()| {
        if sockets_released { Ok(()) } else { Err("the server did not release its connections".into()) }
    }))
}

impl Measured for IdleResult {
    const SCENARIO: &'static str = "idle";

    fn setup(&self) -> String {
        format!("{:>6}/{:<6} held", self.cost.held, self.requested)
    }

    fn numbers(&self) -> String {
        let h = &self.cost;
        format!(
            "user {:>8.0} B/conn  rss {:>8.0} B/conn  kernel {:>7.0} B/conn  opened in {:.2}s  released {} (user kept {:.0} B/conn)  threads {}  maps {}{}",
            h.user_bytes_per_conn,
            h.rss_bytes_per_conn,
            h.kernel_bytes_per_conn,
            h.open_secs,
            if h.sockets_released { "yes" } else { "NO" },
            h.user_retained_bytes_per_conn,
            h.server_after.threads,
            h.server_after.mappings,
            h.first_error.as_ref().map(|e| format!("  first error: {e}")).unwrap_or_default(),
        )
    }

    fn metrics(&self) -> Vec<(&'static str, f64)> {
        let h = &self.cost;
        // No kernel figure from the whole slab: other processes move it.
        let kernel = h.kernel_source.as_deref() != Some("meminfo-slab");
        let mut m = vec![
            ("held", h.held as f64),
            ("user_bytes_per_conn", h.user_bytes_per_conn),
            ("kernel_total_slab_bytes_per_conn", h.kernel_total_slab_bytes_per_conn),
            ("rss_bytes_per_conn", h.rss_bytes_per_conn),
            ("open_secs", h.open_secs),
            ("user_retained_bytes_per_conn", h.user_retained_bytes_per_conn),
            ("threads", h.server_after.threads as f64),
            ("mappings", h.server_after.mappings as f64),
        ];
        if kernel {
            m.push(("kernel_bytes_per_conn", h.kernel_bytes_per_conn));
            m.push(("kernel_retained_bytes_per_conn", h.kernel_retained_bytes_per_conn));
        }
        m
    }
}

impl From<Count> for crate::axes::Label {
    fn from(count: Count) -> crate::axes::Label {
        match count {
            Count::N(n) => crate::axes::Label::Size(n as u64),
            Count::Max => crate::axes::Label::Max,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judges_counts_release_and_the_clients_own_limits() {
        let ready = |opened, client_limit| Ready { opened, failed: 0, error: None, open_secs: 0.1, client_limit };
        assert_eq!(judge(false, 100, &ready(100, false), 100, false, true), Verdict::Verified);
        assert_eq!(
            judge(false, 100, &ready(100, false), 99, false, true),
            Verdict::Failed("the server counted 99 of 100 connections".into())
        );
        assert_eq!(judge(false, 100, &ready(90, false), 90, false, true), Verdict::Failed("opened 90/100: ".into()));
        // `max` is verified by holding any, but must release them too.
        assert_eq!(judge(true, 21_000, &ready(19_985, false), 19_985, false, true), Verdict::Verified);
        assert_eq!(
            judge(true, 21_000, &ready(19_985, false), 19_985, false, false),
            Verdict::Failed("the server did not release its connections".into())
        );
        // The clients running out first says nothing about the lab.
        assert!(matches!(judge(true, 21_000, &ready(5_000, true), 5_000, false, true), Verdict::Environment(_)));
        assert!(matches!(judge(false, 100, &ready(100, false), 100, true, true), Verdict::Environment(_)));
    }
}
