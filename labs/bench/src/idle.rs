//! The idle scenario: what an open, quiet connection costs the server.
//!
//! N clients open a subscription (an SSE stream, a WebSocket, or a long poll
//! held for 60 s) and say nothing more. The server's resident anonymous
//! memory before and after, divided by the connections it holds, is its
//! user-space cost per connection; the growth of the kernel's memory for
//! them — socket slab caches and TCP buffers, and for a lab that starts
//! threads, their task_struct, kernel stacks, VMAs and page tables — is the
//! kernel's share, reported apart ([`kernel_share`]), and only where
//! `/proc/slabinfo` could be read. Then the clients leave, and the run
//! checks that the server's connection count returns to zero and how much
//! of the memory it gives back.
//!
//! A previous run's closed connections linger in TIME_WAIT for a minute and
//! expire during this one: their slab cache is kept out of the kernel share,
//! their count is recorded, and `--drain-time-wait` waits (bounded) for them
//! to go first ([`drain_time_wait`]).
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
    /// Before the run, wait up to this many seconds for the machine's
    /// TIME_WAIT sockets to drain: to none before this process's first idle
    /// run, and back to the count after that first wait before each later
    /// one (a closed connection stays in TIME_WAIT for a minute: 65 drains
    /// them). 0: do not wait — their slab cache is left out of the kernel
    /// share either way.
    #[arg(long, default_value_t = 0)]
    pub drain_time_wait: u64,
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
    /// Kernel bytes per connection: the sum of [`KernelParts`] (the socket
    /// and thread slab caches, TCP buffers, kernel stacks, the server's page
    /// tables), system-wide but for the page tables (client sockets
    /// included: both ends live on this machine). `null` where
    /// `/proc/slabinfo` is not readable: see `kernel_unavailable`.
    pub kernel_bytes_per_conn: Option<f64>,
    /// What the kernel figure is made of, per connection (absent with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_parts_per_conn: Option<KernelParts>,
    /// Where the kernel figure came from ([`KERNEL_SOURCE`]); `null` when
    /// there is no kernel figure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_source: Option<String>,
    /// Why there is no kernel figure (`/proc/slabinfo` not readable: it is
    /// for root only). The whole slab would be no substitute: every other
    /// process moves it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_unavailable: Option<String>,
    /// TIME_WAIT sockets on the machine, and the wait for them.
    #[serde(default, skip_serializing_if = "TimeWait::is_unset")]
    pub time_wait: TimeWait,
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
    /// The kernel figure's memory still held per connection after the
    /// clients left (the clients' TIME_WAIT remnants are not in it: see
    /// `time_wait`); `null` with the kernel figure.
    pub kernel_retained_bytes_per_conn: Option<f64>,
}

// ANCHOR: kernel_parts
/// Where the kernel figure comes from, recorded with it.
pub const KERNEL_SOURCE: &str = "slabinfo (socket and thread caches) + sockstat mem + meminfo KernelStack + server VmPTE";

/// The kernel's share of a connection, by where it lives (bytes per
/// connection, growth from before the clients connected).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct KernelParts {
    /// The socket slab caches ([`procfs::SOCKET_CACHES`]): socket, inode,
    /// file, epoll entry, buffer heads — both ends of the connection.
    pub socket_slab: f64,
    /// TCP buffer memory (`/proc/net/sockstat` "mem").
    pub tcp_buffers: f64,
    /// The thread slab caches ([`procfs::THREAD_CACHES`]): a thread's
    /// task_struct, its signal and pid structures, and the VMAs of every
    /// mapping — a thread's or a coroutine's stack is one or two.
    pub thread_slab: f64,
    /// Kernel stacks (`KernelStack` in `/proc/meminfo`): one per thread.
    pub kernel_stacks: f64,
    /// The server's page tables (`VmPTE`): they map its stacks and heap.
    pub page_tables: f64,
}

impl KernelParts {
    /// The growth from `before` to `after` per connection (`held`), or
    /// `None` when either kernel sample lacks `/proc/slabinfo`.
    pub fn growth(
        (k0, p0): (&KernelSample, &ProcessSample),
        (k1, p1): (&KernelSample, &ProcessSample),
        held: u64,
    ) -> Option<KernelParts> {
        if !k0.has_slabinfo() || !k1.has_slabinfo() || held == 0 {
            return None;
        }
        let per = |after: u64, before: u64| (after as f64 - before as f64) / held as f64;
        Some(KernelParts {
            socket_slab: per(k1.socket_slab, k0.socket_slab),
            tcp_buffers: per(k1.tcp_mem, k0.tcp_mem),
            thread_slab: per(k1.thread_slab, k0.thread_slab),
            kernel_stacks: per(k1.kernel_stack, k0.kernel_stack),
            page_tables: per(p1.page_tables, p0.page_tables),
        })
    }

    /// The kernel figure: every part.
    pub fn total(&self) -> f64 {
        self.socket_slab + self.tcp_buffers + self.thread_slab + self.kernel_stacks + self.page_tables
    }
}
// ANCHOR_END: kernel_parts

/// TIME_WAIT sockets around an idle run (`/proc/net/sockstat` "tw").
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct TimeWait {
    /// The level the wait drained towards: 0 for this process's first idle
    /// run, then the count that first wait ended with (what other processes
    /// keep in TIME_WAIT).
    pub baseline: u64,
    /// When this run began, before any wait.
    pub at_start: u64,
    /// Seconds waited for them to drain (`--drain-time-wait`).
    pub waited_secs: f64,
    /// They were back at the baseline when the run started (without a
    /// wait: only if they already were).
    pub drained: bool,
    /// When the connections were sampled (the run's own are not closed yet).
    pub when_held: u64,
}

impl TimeWait {
    /// Not recorded (a document from before it was).
    fn is_unset(&self) -> bool {
        *self == TimeWait::default()
    }
}

// ANCHOR: drain
/// Reads the TIME_WAIT count (`read`) until it is at most `target`, pausing
/// (`pause`) between reads, at most `polls` times. After `expired` pauses
/// every socket that was in TIME_WAIT at the start has left it (it lasts a
/// minute): those still there are newer, other processes', and the wait
/// ends drained. Returns the last count, the pauses taken and whether it
/// drained.
pub fn drain_time_wait(
    target: u64,
    polls: u32,
    expired: u32,
    mut read: impl FnMut() -> u64,
    mut pause: impl FnMut(),
) -> (u64, u32, bool) {
    let mut count = read();
    let mut paused = 0;
    while count > target && paused < polls && paused < expired {
        pause();
        paused += 1;
        count = read();
    }
    (count, paused, count <= target || paused >= expired)
}
// ANCHOR_END: drain

/// Waits (up to `secs`) for the TIME_WAIT sockets to drain: to none before
/// this process's first idle run, then to the count that first wait ended
/// with.
fn wait_for_time_wait(secs: u64) -> TimeWait {
    static BASELINE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let baseline = BASELINE.get().copied().unwrap_or(0);
    let started = std::time::Instant::now();
    let step = Duration::from_millis(250);
    let polls = (secs * 4) as u32;
    let at_start = procfs::time_wait();
    // A socket stays in TIME_WAIT for 60 s (the kernel's TCP_TIMEWAIT_LEN).
    let expired = 61 * 4;
    let (left, _, drained) = drain_time_wait(baseline, polls, expired, procfs::time_wait, || std::thread::sleep(step));
    BASELINE.get_or_init(|| left);
    TimeWait { baseline, at_start, waited_secs: started.elapsed().as_secs_f64(), drained, when_held: 0 }
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
    let time_wait = wait_for_time_wait(args.drain_time_wait);
    let (info, mut cost) = Session::run(&args.common, args.transport, server_args, |s| hold(s, args))?;
    cost.time_wait = TimeWait { when_held: cost.time_wait.when_held, ..time_wait };
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
    let before = (&kernel_before, &server_before);
    let parts = KernelParts::growth(before, (&kernel_after, &server_after), held);
    let retained = KernelParts::growth(before, (&kernel_after_close, &server_after_close), held);
    let unreadable = !kernel_before.has_slabinfo() || !kernel_after.has_slabinfo();
    let kernel_unavailable = unreadable.then(|| procfs::SLABINFO_UNREADABLE.to_owned());
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
        kernel_bytes_per_conn: parts.map(|p| p.total()),
        kernel_parts_per_conn: parts,
        kernel_source: parts.map(|_| KERNEL_SOURCE.to_owned()),
        kernel_unavailable,
        time_wait: TimeWait { when_held: kernel_after.time_wait, ..TimeWait::default() },
        kernel_total_slab_bytes_per_conn: per(whole_slab(&kernel_after), whole_slab(&kernel_before)),
        user_retained_bytes_per_conn: per(server_after_close.rss_anon, server_before.rss_anon),
        kernel_retained_bytes_per_conn: retained.map(|p| p.total()),
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
            "user {:>8.0} B/conn  rss {:>8.0} B/conn  kernel {:>7} B/conn  opened in {:.2}s  released {} (user kept {:.0} B/conn)  threads {}  maps {}{}",
            h.user_bytes_per_conn,
            h.rss_bytes_per_conn,
            h.kernel_bytes_per_conn.map_or_else(|| "n/a".to_owned(), |k| format!("{k:.0}")),
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
        // No kernel figure without /proc/slabinfo: none is made up.
        if let Some(parts) = h.kernel_parts_per_conn {
            m.push(("kernel_bytes_per_conn", parts.total()));
            m.push(("kernel_thread_bytes_per_conn", parts.thread_slab + parts.kernel_stacks + parts.page_tables));
        }
        if let Some(k) = h.kernel_retained_bytes_per_conn {
            m.push(("kernel_retained_bytes_per_conn", k));
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
    fn time_wait_drains_or_the_wait_ends() {
        // Already at the baseline: no pause.
        assert_eq!(drain_time_wait(10, 8, 100, || 7, || panic!("no pause needed")), (7, 0, true));
        // Drains on the third read.
        let mut reads = [900, 400, 10].into_iter();
        let mut pauses = 0;
        assert_eq!(drain_time_wait(10, 8, 100, || reads.next().unwrap(), || pauses += 1), (10, 2, true));
        assert_eq!(pauses, 2);
        // Never drains: bounded by the polls, and says so.
        assert_eq!(drain_time_wait(10, 3, 100, || 500, || {}), (500, 3, false));
        // Others keep some in TIME_WAIT: once every socket there at the
        // start has expired, what is left is theirs, and the wait is over.
        assert_eq!(drain_time_wait(0, 400, 5, || 13, || {}), (13, 5, true));
    }

    #[test]
    fn no_kernel_figure_without_slabinfo() {
        let k = |socket_slab, thread_slab, kernel_stack, unreadable| KernelSample {
            socket_slab,
            thread_slab,
            kernel_stack,
            tcp_mem: 4096,
            slab: 1 << 30,
            slabinfo_unreadable: unreadable,
            ..KernelSample::default()
        };
        let p = |page_tables| ProcessSample { page_tables, ..ProcessSample::default() };
        let (k0, k1) = (k(1000, 500, 16_384, false), k(3000, 1500, 32_768, false));
        let parts = KernelParts::growth((&k0, &p(0)), (&k1, &p(8192)), 2).expect("slabinfo read");
        assert_eq!(
            parts,
            KernelParts { socket_slab: 1000.0, tcp_buffers: 0.0, thread_slab: 500.0, kernel_stacks: 8192.0, page_tables: 4096.0 }
        );
        assert_eq!(parts.total(), 1000.0 + 500.0 + 8192.0 + 4096.0);
        // Without /proc/slabinfo no figure, however large the whole slab grew.
        let unread = k(0, 0, 32_768, true);
        assert_eq!(KernelParts::growth((&k0, &p(0)), (&unread, &p(8192)), 2), None);
        assert_eq!(KernelParts::growth((&unread, &p(0)), (&k1, &p(8192)), 2), None);
        let result = IdleResult {
            requested: Count::N(2),
            cost: Cost { held: 2, kernel_unavailable: Some(procfs::SLABINFO_UNREADABLE.into()), ..Cost::default() },
        };
        assert!(result.metrics().iter().all(|(name, _)| !name.starts_with("kernel_bytes") && !name.starts_with("kernel_retained")));
        let json = serde_json::to_value(&result).unwrap();
        assert!(json["kernel_bytes_per_conn"].is_null() && json["kernel_source"].is_null());
        assert_eq!(json["kernel_unavailable"], procfs::SLABINFO_UNREADABLE);
    }

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
