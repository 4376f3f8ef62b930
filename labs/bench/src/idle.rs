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
use crate::procfs::{self, KernelSample, ProcessSample};
use crate::server::ServerProcess;
use crate::workers::{Plan, Workers};
use crate::{Common, EnvProbe, Outcome, RunEnv};

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

/// The result of one idle run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdleResult {
    pub runtime: String,
    pub transport: Transport,
    /// What was asked: a number or `max`.
    pub requested: Count,
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
    /// buffer memory + kernel stacks / held, system-wide (client sockets
    /// included: both ends live on this machine). Falls back to the whole
    /// slab where `/proc/slabinfo` is not readable.
    pub kernel_bytes_per_conn: f64,
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
    /// The server exited 0 on SIGTERM.
    pub clean_exit: bool,
    /// Verification: the counts matched (or, for `max`, the server held some).
    pub verified: bool,
    pub failure: Option<String>,
    pub env: RunEnv,
}

/// Runs the idle scenario once against a fresh server.
pub fn run(args: &IdleArgs) -> std::io::Result<IdleResult> {
    if !matches!(args.transport, Transport::Sse | Transport::Ws | Transport::LongPoll) {
        return Err(std::io::Error::other("idle: a short-polling client holds nothing open; use sse, ws or long-poll"));
    }
    let probe = EnvProbe::begin();
    let place = probe.placement();
    let exe = args.common.exe()?;
    let server = ServerProcess::start(&exe, &args.common.runtime, &args.common.server_args, place.server)?;
    std::thread::sleep(Duration::from_millis(300));
    let server_before = server.sample();
    let kernel_before = procfs::kernel();

    let attempted = match args.connections {
        Count::N(n) => n,
        // The server inherits this process's limit; ask for more than it allows.
        Count::Max => (crate::nofile_limit() as usize).saturating_add(1000).min(MAX_ATTEMPTS),
    };
    let max = args.connections == Count::Max;
    let mut plan = Plan::new(&exe, server.addr, args.transport, "idle", attempted);
    plan.cpu = place.clients;
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
    let died = server.died();
    let kernel_after_close = procfs::kernel();
    let clean_exit = server.stop(Duration::from_secs(20));

    // ANCHOR: per_connection
    let per = |after: u64, before: u64| if held == 0 { 0.0 } else { (after as f64 - before as f64) / held as f64 };
    let readable = kernel_before.socket_slab > 0;
    let kernel_total =
        |k: &KernelSample| if readable { k.socket_slab } else { k.slab } + k.tcp_mem + k.kernel_stack;
    let whole_slab = |k: &KernelSample| k.slab + k.tcp_mem + k.kernel_stack;
    // ANCHOR_END: per_connection
    let failure = if died {
        Some("the server process died during the run (its stderr is above)".to_owned())
    } else if too_slow {
        Some("opening took longer than the 60 s a long poll is held: the first ones were answered".to_owned())
    } else if max && ready.client_limit {
        Some(format!("the clients, not the server, ran out: {}", ready.error.clone().unwrap_or_default()))
    } else if max {
        (held == 0).then(|| format!("the server held no connection: {:?}", ready.error))
    } else if opened != attempted {
        Some(format!("opened {opened}/{attempted}: {}", ready.error.clone().unwrap_or_default()))
    } else if held != opened as u64 {
        Some(format!("the server counted {held} of {opened} connections"))
    } else {
        None
    };
    let failure = failure.or_else(|| (!sockets_released).then(|| "the server did not release its connections".into()));
    Ok(IdleResult {
        runtime: args.common.runtime.clone(),
        transport: args.transport,
        requested: args.connections,
        attempted,
        opened,
        failed: ready.failed,
        first_error: ready.error,
        held,
        open_secs: ready.open_secs,
        user_bytes_per_conn: per(server_after.rss_anon, server_before.rss_anon),
        rss_bytes_per_conn: per(server_after.rss, server_before.rss),
        kernel_bytes_per_conn: per(kernel_total(&kernel_after), kernel_total(&kernel_before)),
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
        clean_exit,
        verified: failure.is_none(),
        failure,
        env: probe.end(),
    })
}

impl Outcome for IdleResult {
    fn verified(&self) -> bool {
        self.verified
    }

    fn failure(&self) -> Option<String> {
        self.failure.clone()
    }

    fn metrics(&self) -> Vec<(&'static str, f64)> {
        vec![
            ("held", self.held as f64),
            ("user_bytes_per_conn", self.user_bytes_per_conn),
            ("kernel_bytes_per_conn", self.kernel_bytes_per_conn),
            ("kernel_total_slab_bytes_per_conn", self.kernel_total_slab_bytes_per_conn),
            ("rss_bytes_per_conn", self.rss_bytes_per_conn),
            ("open_secs", self.open_secs),
            ("user_retained_bytes_per_conn", self.user_retained_bytes_per_conn),
            ("kernel_retained_bytes_per_conn", self.kernel_retained_bytes_per_conn),
            ("threads", self.server_after.threads as f64),
            ("mappings", self.server_after.mappings as f64),
        ]
    }

    fn summary(&self) -> String {
        format!(
            "idle {:<8} {:<9} {:>6}/{:<6} held  user {:>8.0} B/conn  rss {:>8.0} B/conn  kernel {:>7.0} B/conn  opened in {:.2}s  released {} (user kept {:.0} B/conn)  threads {}  maps {}{}",
            self.runtime,
            self.transport.name(),
            self.held,
            self.requested,
            self.user_bytes_per_conn,
            self.rss_bytes_per_conn,
            self.kernel_bytes_per_conn,
            self.open_secs,
            if self.sockets_released { "yes" } else { "NO" },
            self.user_retained_bytes_per_conn,
            self.server_after.threads,
            self.server_after.mappings,
            self.first_error.as_ref().map(|e| format!("  first error: {e}")).unwrap_or_default(),
        ) + &self.failure.as_ref().map(|f| format!("  FAILED: {f}")).unwrap_or_default()
    }

    fn env(&self) -> &RunEnv {
        &self.env
    }

    fn to_json(&self) -> serde_json::Value {
        crate::json_of(self)
    }
}
