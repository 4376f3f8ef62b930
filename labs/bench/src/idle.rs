//! The idle scenario: what an open, quiet connection costs the server.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::client::Transport;
use crate::procfs::{self, KernelSample, ProcessSample};
use crate::server::ServerProcess;
use crate::workers::{Plan, Workers};
use crate::{Common, Placement};

/// Options of one idle run.
#[derive(Debug, Clone, clap::Args)]
pub struct IdleArgs {
    #[command(flatten)]
    pub common: Common,
    /// Transport of the idle connections.
    #[arg(long, value_enum, default_value = "sse")]
    pub transport: Transport,
    /// Idle connections to open.
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
}

/// The result of one idle run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdleResult {
    pub runtime: String,
    pub transport: Transport,
    pub requested: usize,
    pub opened: usize,
    pub failed: usize,
    pub first_error: Option<String>,
    /// Seconds the clients took to open every connection.
    pub open_secs: f64,
    pub server_before: ProcessSample,
    pub server_after: ProcessSample,
    pub kernel_before: KernelSample,
    pub kernel_after: KernelSample,
    /// User-space bytes per connection: growth of resident anonymous memory / opened.
    pub user_bytes_per_conn: f64,
    /// Growth of the whole resident set / opened (includes file pages touched).
    pub rss_bytes_per_conn: f64,
    /// Kernel bytes per connection: growth of slab + TCP buffer memory / opened,
    /// system-wide (client sockets included: both ends live on this machine).
    pub kernel_bytes_per_conn: f64,
    /// The server's open-connection counter returned to zero after the clients left.
    pub sockets_released: bool,
    /// The server after the clients left.
    pub server_after_close: ProcessSample,
    /// The server exited 0 on SIGTERM.
    pub clean_exit: bool,
}

/// Runs the idle scenario once against a fresh server.
pub fn run(args: &IdleArgs) -> std::io::Result<IdleResult> {
    let exe = args.common.exe()?;
    let place = Placement::detect();
    let server = ServerProcess::start(&exe, &args.common.runtime, &args.common.server_args, place.server)?;
    std::thread::sleep(Duration::from_millis(300));
    let server_before = server.sample();
    let kernel_before = procfs::kernel();

    let plan = Plan {
        exe: &exe,
        addr: server.addr,
        transport: args.transport,
        topic: "idle",
        connections: args.connections,
        listen: None,
        rcvbuf: None,
        cpu: place.clients,
    };
    let (workers, ready) = Workers::start(&plan)?;
    let key = args.transport.stats_key();
    let opened = ready.opened;
    server.wait_stats(Duration::from_secs(30), |s| s["connections"][key].as_u64() == Some(opened as u64));
    // Let allocator and kernel settle before sampling.
    std::thread::sleep(Duration::from_millis(500));
    let server_after = server.sample();
    let kernel_after = procfs::kernel();

    workers.close();
    let sockets_released =
        server.wait_stats(Duration::from_secs(20), |s| s["connections"][key].as_u64() == Some(0));
    std::thread::sleep(Duration::from_millis(300));
    let server_after_close = server.sample();
    let clean_exit = server.stop(Duration::from_secs(10));

    let per = |after: u64, before: u64| if opened == 0 { 0.0 } else { (after as f64 - before as f64) / opened as f64 };
    Ok(IdleResult {
        runtime: args.common.runtime.clone(),
        transport: args.transport,
        requested: args.connections,
        opened,
        failed: ready.failed,
        first_error: ready.error,
        open_secs: ready.open_secs,
        user_bytes_per_conn: per(server_after.rss_anon, server_before.rss_anon),
        rss_bytes_per_conn: per(server_after.rss, server_before.rss),
        kernel_bytes_per_conn: per(
            kernel_after.slab + kernel_after.tcp_mem,
            kernel_before.slab + kernel_before.tcp_mem,
        ),
        server_before,
        server_after,
        kernel_before,
        kernel_after,
        sockets_released,
        server_after_close,
        clean_exit,
    })
}

impl IdleResult {
    /// One line for a terminal.
    pub fn summary(&self) -> String {
        format!(
            "idle {:<8} {:<9} {:>6}/{:<6} open  user {:>8.0} B/conn  rss {:>8.0} B/conn  kernel {:>7.0} B/conn  opened in {:.2}s  released {}  threads {}  maps {}{}",
            self.runtime,
            self.transport.name(),
            self.opened,
            self.requested,
            self.user_bytes_per_conn,
            self.rss_bytes_per_conn,
            self.kernel_bytes_per_conn,
            self.open_secs,
            if self.sockets_released { "yes" } else { "NO" },
            self.server_after.threads,
            self.server_after.mappings,
            self.first_error.as_ref().map(|e| format!("  first error: {e}")).unwrap_or_default(),
        )
    }
}
