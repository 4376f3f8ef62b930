//! What the kernel says about a process and about TCP, from `/proc`.

use std::fs;

/// Memory and CPU of one process, from `/proc/<pid>/status` and `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ProcessSample {
    /// Resident set size, bytes (`VmRSS`).
    pub rss: u64,
    /// Resident anonymous memory, bytes (`RssAnon`): heap, stacks, anonymous
    /// mappings — the user-space memory a connection costs. File-backed pages
    /// (the binary's code) are excluded.
    pub rss_anon: u64,
    /// Threads of the process.
    pub threads: u64,
    /// Memory mappings (lines of `/proc/<pid>/maps`): a coroutine or thread
    /// stack is one (or two, with its guard page).
    pub mappings: u64,
    /// User plus system CPU time consumed so far, seconds.
    pub cpu_secs: f64,
    /// The process's page tables, bytes (`VmPTE`): kernel memory, but its
    /// own — every thread or coroutine stack it maps needs some.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub page_tables: u64,
}

/// Kernel memory attributable to sockets, system-wide.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KernelSample {
    /// TCP sockets in use (`/proc/net/sockstat`).
    pub tcp_inuse: u64,
    /// Pages of TCP buffer memory, in bytes (`/proc/net/sockstat` "mem", pages × page size).
    pub tcp_mem: u64,
    /// Slab memory, bytes (`/proc/meminfo` "Slab"): socket structures, dentries
    /// and inodes for each socket file, and everything else the kernel caches.
    pub slab: u64,
    /// The slab caches a TCP connection allocates from, bytes (active
    /// objects × object size in `/proc/slabinfo`, see [`SOCKET_CACHES`]):
    /// far less disturbed by unrelated activity (a compiler creating files)
    /// than the whole slab. 0 where `/proc/slabinfo` is not readable (then
    /// [`slabinfo_error`](Self::slabinfo_error) says why).
    #[serde(default)]
    pub socket_slab: u64,
    /// Kernel stacks of every thread on the machine, bytes (`/proc/meminfo`
    /// "KernelStack"): a server with a thread per connection pays one each.
    #[serde(default)]
    pub kernel_stack: u64,
    /// The slab caches a thread allocates from, bytes ([`THREAD_CACHES`]:
    /// its task_struct, the VMAs of its stack, signal and pid structures):
    /// the kernel share a thread-per-connection lab hides from the socket
    /// caches. 0 where `/proc/slabinfo` is not readable.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub thread_slab: u64,
    /// Page tables of every process, bytes (`/proc/meminfo` "PageTables"):
    /// a thread's stack mapping needs its own.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub page_tables: u64,
    /// Sockets in TIME_WAIT on the machine (`/proc/net/sockstat` "tw"): a
    /// previous run's closed connections, still held by the kernel.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub time_wait: u64,
    /// The TIME_WAIT remnants' slab cache (`tw_sock_TCP`), bytes: kept
    /// apart from [`socket_slab`](Self::socket_slab), because a previous
    /// run's remnants expire during the next one and would count there.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub time_wait_slab: u64,
    /// `/proc/slabinfo` could not be read (it is readable by root only):
    /// the per-cache figures are 0, and no kernel share is reported.
    #[serde(default, skip_serializing_if = "is_false")]
    pub slabinfo_unreadable: bool,
}

fn is_false(v: &bool) -> bool {
    !*v
}

/// Why there is no kernel figure when `/proc/slabinfo` is unreadable.
pub const SLABINFO_UNREADABLE: &str =
    "/proc/slabinfo is not readable (root only): no kernel figure, since the whole slab moves with every other process";

impl KernelSample {
    /// The per-cache figures are real: `/proc/slabinfo` was read.
    pub fn has_slabinfo(&self) -> bool {
        !self.slabinfo_unreadable
    }
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// The slab caches counted in [`KernelSample::thread_slab`]: what the kernel
/// allocates for each thread (and each thread's stack mapping).
pub const THREAD_CACHES: [&str; 5] = ["task_struct", "vm_area_struct", "signal_cache", "sighand_cache", "pid"];

// ANCHOR: socket_caches
/// The slab caches counted in [`KernelSample::socket_slab`]: the TCP socket
/// itself, its inode and open file, epoll's entry for it and socket buffer
/// heads. A socket's dentry is not counted: the dentry cache moves with
/// every file any process touches. Nor is the TIME_WAIT remnant
/// (`tw_sock_TCP`) a closed connection leaves: it is counted apart
/// ([`KernelSample::time_wait_slab`]), since a previous run's remnants
/// expire during the next run.
pub const SOCKET_CACHES: [&str; 11] = [
    "TCP",
    "TCPv6",
    "request_sock_TCP",
    "sock_inode_cache",
    "filp",
    "eventpoll_epi",
    "eventpoll_pwq",
    "lsm_file_cache",
    "skbuff_head_cache",
    "skbuff_small_head",
    "skbuff_fclone_cache",
];
// ANCHOR_END: socket_caches

/// Bytes in use in the [`SOCKET_CACHES`], from `/proc/slabinfo` text.
pub fn socket_slab(slabinfo: &str) -> u64 {
    caches(slabinfo, &SOCKET_CACHES)
}

/// Bytes in use (active objects × object size) in the caches `names`.
fn caches(slabinfo: &str, names: &[&str]) -> u64 {
    slabinfo
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let name = f.next()?;
            let active: u64 = f.next()?.parse().ok()?;
            let _total = f.next()?;
            let size: u64 = f.next()?.parse().ok()?;
            names.contains(&name).then_some(active * size)
        })
        .sum()
}

/// A field of the `TCP:` line of `/proc/net/sockstat` text (`inuse`, `tw`,
/// `mem`...); 0 if absent.
fn sockstat_field(sockstat: &str, name: &str) -> u64 {
    let tcp = sockstat.lines().find(|l| l.starts_with("TCP:")).unwrap_or("");
    let mut it = tcp.split_whitespace();
    while let Some(word) = it.next() {
        if word == name {
            return it.next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    0
}

fn kb_field(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 { size as u64 } else { 4096 }
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// Samples process `pid`; `None` if it is gone.
pub fn process(pid: u32) -> Option<ProcessSample> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let maps = fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start after ')'.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after ')'.
    let cpu_secs = (ticks(11) + ticks(12)) as f64 / clock_ticks();
    Some(ProcessSample {
        rss: kb_field(&status, "VmRSS:"),
        rss_anon: kb_field(&status, "RssAnon:"),
        threads: status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:")?.trim().parse().ok())
            .unwrap_or(0),
        mappings: maps.lines().count() as u64,
        cpu_secs,
        page_tables: kb_field(&status, "VmPTE:"),
    })
}

/// Samples the kernel's socket memory.
pub fn kernel() -> KernelSample {
    let sockstat = fs::read_to_string("/proc/net/sockstat").unwrap_or_default();
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| sockstat_field(&sockstat, name);
    let slabinfo = fs::read_to_string("/proc/slabinfo");
    let slabinfo_unreadable = slabinfo.is_err();
    let slabinfo = slabinfo.unwrap_or_default();
    KernelSample {
        tcp_inuse: field("inuse"),
        tcp_mem: field("mem") * page_size(),
        slab: kb_field(&meminfo, "Slab:"),
        socket_slab: socket_slab(&slabinfo),
        kernel_stack: kb_field(&meminfo, "KernelStack:"),
        thread_slab: caches(&slabinfo, &THREAD_CACHES),
        page_tables: kb_field(&meminfo, "PageTables:"),
        time_wait: field("tw"),
        time_wait_slab: caches(&slabinfo, &["tw_sock_TCP"]),
        slabinfo_unreadable,
    }
}

/// Sockets in TIME_WAIT on the machine now (`/proc/net/sockstat` "tw").
pub fn time_wait() -> u64 {
    sockstat_field(&fs::read_to_string("/proc/net/sockstat").unwrap_or_default(), "tw")
}

/// CPU steal so far, in seconds (from the `cpu` line of `/proc/stat`): time a
/// hypervisor gave this machine's virtual CPUs to someone else.
pub fn steal_secs() -> f64 {
    let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
    stat.lines()
        .find(|l| l.starts_with("cpu "))
        .and_then(|l| l.split_whitespace().nth(8))
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(0.0, |t| t as f64 / clock_ticks())
}

/// How busy the machine's CPUs were over the next `over`: the fraction of
/// CPU time (all CPUs, from the `cpu` line of `/proc/stat`) that was not
/// idle or waiting for I/O, 0.0 to 1.0. Unlike the load average, which
/// decays over a minute and so still counts a run that has just ended, it
/// says what is running now.
pub fn busy_fraction(over: std::time::Duration) -> f64 {
    let sample = || -> (u64, u64) {
        let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
        let fields: Vec<u64> = stat
            .lines()
            .find(|l| l.starts_with("cpu "))
            .map(|l| l.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect())
            .unwrap_or_default();
        // user nice system idle iowait irq softirq steal (guest time is
        // already inside user and nice).
        let total: u64 = fields.iter().take(8).sum();
        let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
        (total, idle)
    };
    let (t0, i0) = sample();
    std::thread::sleep(over);
    let (t1, i1) = sample();
    let total = t1.saturating_sub(t0);
    if total == 0 { 0.0 } else { 1.0 - i1.saturating_sub(i0) as f64 / total as f64 }
}

/// CPU time (user + system) of every live thread of process `pid`,
/// seconds, from the scheduler's own accounting
/// (`/proc/<pid>/task/*/schedstat`, nanoseconds): exact, where
/// `/proc/<pid>/stat` counts whole clock ticks (10 ms) — too coarse for a
/// process that works a few milliseconds in a measurement (redis-server).
/// Threads that have exited are not counted; `None` if the process is gone.
pub fn cpu_secs_precise(pid: u32) -> Option<f64> {
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let ns: u64 = tasks
        .filter_map(Result::ok)
        .filter_map(|t| fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Some(ns as f64 / 1e9)
}

/// The one-minute load average (`/proc/loadavg`): runnable and waiting
/// tasks on the whole machine, whoever they belong to.
pub fn loadavg() -> f64 {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

/// Sockets (open descriptors that are sockets) process `pid` holds, from
/// `/proc/<pid>/fd`: the server's own view of its connections, readable
/// even when it cannot accept one more.
pub fn socket_fds(pid: u32) -> u64 {
    fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |dir| {
        dir.filter_map(Result::ok)
            .filter(|e| fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().starts_with("socket:")))
            .count() as u64
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sockstat_and_status_fields() {
        let sockstat = "sockets: used 290\nTCP: inuse 27 orphan 0 tw 1042 alloc 30 mem 5\nUDP: inuse 3 mem 2\n";
        assert_eq!(sockstat_field(sockstat, "tw"), 1042);
        assert_eq!(sockstat_field(sockstat, "inuse"), 27);
        assert_eq!(sockstat_field(sockstat, "mem"), 5);
        assert_eq!(sockstat_field("UDP: inuse 3 mem 2\n", "mem"), 0, "only the TCP line");
        let status = "Name:\trtlab\nVmPTE:\t     132 kB\nRssAnon:\t    2048 kB\n";
        assert_eq!(kb_field(status, "VmPTE:"), 132 * 1024);
        assert_eq!(kb_field(status, "VmSwap:"), 0);
    }

    #[test]
    fn slabinfo_is_read_or_its_absence_said() {
        // As root the caches are read; otherwise the sample says why not.
        let _listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let k = kernel();
        let readable = fs::read_to_string("/proc/slabinfo").is_ok();
        assert_eq!(k.has_slabinfo(), readable);
        assert_eq!(k.socket_slab > 0, readable, "a machine with a TCP socket has TCP slab objects");
        assert!(process(std::process::id()).expect("own /proc entry").page_tables > 0);
    }

    #[test]
    fn samples_this_process() {
        let me = process(std::process::id()).expect("own /proc entry");
        assert!(me.rss > 0 && me.rss_anon > 0 && me.rss_anon <= me.rss);
        assert!(me.threads >= 1);
        assert!(me.mappings > 5);
        assert!(kernel().slab > 0);
        assert!(loadavg() >= 0.0);
        let text = "slabinfo - version: 2.1\nTCP  10 13 2368 13 8 : tunables 0 0 0\nfilp 4 21 192 21 1\ndentry 9 9 192 21 1\n\
                    tw_sock_TCP 7 30 248 16 1\ntask_struct 3 5 10560 3 8\nvm_area_struct 20 40 176 23 1\n";
        assert_eq!(socket_slab(text), 10 * 2368 + 4 * 192);
        assert_eq!(caches(text, &THREAD_CACHES), 3 * 10560 + 20 * 176);
        assert_eq!(caches(text, &["tw_sock_TCP"]), 7 * 248);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        assert!(socket_fds(std::process::id()) >= 1);
        drop(listener);
    }
}
