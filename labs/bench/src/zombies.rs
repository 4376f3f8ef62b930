//! `rtlab bench zombies`: dead peers, made the way they happen, and how long
//! each lab takes to notice.
//!
//! A peer that vanishes without a FIN or RST — its link cut, a NAT or a
//! proxy on the way dropped the connection's entry, the machine froze —
//! leaves the server with a half-open connection. Nothing arrives to say so:
//! only a write that is never acknowledged, or a heartbeat that is never
//! answered, finds it. The experiment makes such peers for real:
//!
//! * **dropped**: clients (`rtlab listen`) in a network namespace made for
//!   the run (`ip netns add`, a veth pair, addresses; the server listens on
//!   the host's end), whose traffic is then dropped both ways (the
//!   namespace's end of the veth pair set down: the packets vanish, and TCP
//!   is not told of link states);
//! * **stopped**: a client that SIGSTOP froze: its kernel still acknowledges
//!   every byte, but nothing reads or answers.
//!
//! The server is started with short heartbeats (`--ping-interval`,
//! `--keepalive`) and a `--tcp-user-timeout`; the reap time is measured from
//! the moment the traffic stops to the moment the server's `/stats` no longer
//! counts the connection. Beside it, **kernel only**: the same dropped SSE
//! stream on a server with neither a user timeout nor a ping, watched for a
//! while (it stays), and the kernel's own bounds computed from its settings
//! (`tcp_retries2` retransmissions, keepalive time) — why application
//! heartbeats exist.
//!
//! Needs root (namespaces, links); Linux only. Every namespace and link made
//! here is removed on the way out, also on failure ([`Netns`]'s `Drop`).

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::results::{Git, Machine, Toolchain, utc_now};
use crate::server::http_get;
use crate::{Common, EnvProbe, RunEnv};
use rtlab_testkit::{Launch, Running, Stderr};

/// `rtlab bench zombies`: the options.
#[derive(Debug, Clone, clap::Args)]
pub struct ZombiesArgs {
    #[command(flatten)]
    pub common: Common,
    /// The labs to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "tokio,mio,may,threads")]
    pub runtimes: Vec<String>,
    /// Seconds between WebSocket pings and between SSE keep-alive comments.
    #[arg(long, default_value_t = 2.0)]
    pub interval: f64,
    /// The server's TCP_USER_TIMEOUT, seconds.
    #[arg(long, default_value_t = 5.0)]
    pub user_timeout: f64,
    /// Seconds the kernel-only case is watched (0: not run).
    #[arg(long, default_value_t = 20.0)]
    pub kernel_watch: f64,
    /// The server's --close-linger, seconds: how long a connection declared
    /// dead still waits for its close handshake (part of the reap time).
    #[arg(long, default_value_t = 0.2)]
    pub close_linger: f64,
    /// Runs per lab.
    #[arg(long, default_value_t = 1)]
    pub repeats: usize,
}

/// One dead peer and how long its lab took to reap it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reap {
    pub runtime: String,
    /// `dropped` (traffic lost both ways) or `stopped` (SIGSTOP).
    pub how: String,
    /// `ws` or `sse`.
    pub transport: String,
    pub repeat: usize,
    /// Seconds from the peer's death to the server closing its connection;
    /// None: still open at the end of the wait.
    pub reap_secs: Option<f64>,
    /// How long the experiment waited.
    pub waited_secs: f64,
    /// The target: WebSocket ping interval + pong timeout (one more
    /// interval, `labs/core/src/heartbeat.rs`) + 1 s; SSE keep-alive
    /// interval plus TCP_USER_TIMEOUT plus 1 s. The 1 s holds the close linger (the
    /// connection declared dead still waits that long for its close
    /// handshake) and the 20 ms polling of `/stats`.
    pub bound_secs: f64,
}

/// The kernel's own bounds, from its settings on this machine.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KernelBounds {
    /// `net.ipv4.tcp_retries2`.
    pub tcp_retries2: u64,
    /// Seconds of retransmissions before the kernel gives up on
    /// unacknowledged data (the RFC 6298 back-off from the 200 ms minimum
    /// RTO, doubling to the 120 s maximum, `tcp_retries2` times).
    pub retransmit_give_up_secs: f64,
    /// `net.ipv4.tcp_keepalive_time`, `_intvl`, `_probes`: an idle socket with
    /// SO_KEEPALIVE is probed after time, then every intvl, probes times.
    pub keepalive_time: u64,
    pub keepalive_intvl: u64,
    pub keepalive_probes: u64,
    /// keepalive_time + intvl × probes: the soonest a keepalive socket is
    /// declared dead (and only if the application asked for keepalive).
    pub keepalive_give_up_secs: f64,
}

impl KernelBounds {
    pub fn detect() -> KernelBounds {
        let read = |name: &str| {
            std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}"))
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        let retries = read("tcp_retries2");
        let (mut rto, mut total) = (0.2_f64, 0.0);
        for _ in 0..=retries {
            total += rto;
            rto = (rto * 2.0).min(120.0);
        }
        let (time, intvl, probes) = (read("tcp_keepalive_time"), read("tcp_keepalive_intvl"), read("tcp_keepalive_probes"));
        KernelBounds {
            tcp_retries2: retries,
            retransmit_give_up_secs: total,
            keepalive_time: time,
            keepalive_intvl: intvl,
            keepalive_probes: probes,
            keepalive_give_up_secs: (time + intvl * probes) as f64,
        }
    }
}

/// The result of `rtlab bench zombies`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ZombiesResult {
    pub experiment: String,
    pub interval: f64,
    pub user_timeout: f64,
    pub close_linger: f64,
    pub kernel_watch: f64,
    pub machine: Machine,
    pub toolchain: Toolchain,
    pub git: Git,
    pub utc: String,
    pub note: String,
    pub kernel: KernelBounds,
    pub env: RunEnv,
    pub reaps: Vec<Reap>,
    pub failure: Option<String>,
}

/// A network namespace with a veth pair to the host, removed on drop.
#[derive(Debug)]
pub struct Netns {
    /// The namespace's name.
    pub name: String,
    host_link: String,
    ns_link: String,
    /// The host's end (the server listens here) and the namespace's.
    pub host_ip: Ipv4Addr,
    pub ns_ip: Ipv4Addr,
}

fn ip(args: &[&str]) -> std::io::Result<()> {
    sh("ip", args)
}

fn sh(program: &str, args: &[&str]) -> std::io::Result<()> {
    let out = Command::new(program).args(args).stdin(Stdio::null()).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

// ANCHOR: netns
impl Netns {
    /// Makes namespace `rtz<tag>` with a veth pair and a /24 of its own in
    /// 10.213.0.0/16.
    pub fn create(tag: u32) -> std::io::Result<Netns> {
        let k = (tag % 250 + 1) as u8;
        let ns = Netns {
            name: format!("rtz{tag}"),
            host_link: format!("rtzh{}", tag % 100_000),
            ns_link: format!("rtzn{}", tag % 100_000),
            host_ip: Ipv4Addr::new(10, 213, k, 1),
            ns_ip: Ipv4Addr::new(10, 213, k, 2),
        };
        ip(&["netns", "add", &ns.name])?;
        // From here on, Drop cleans up whatever of the rest was made.
        ip(&["link", "add", &ns.host_link, "type", "veth", "peer", "name", &ns.ns_link, "netns", &ns.name])?;
        ip(&["addr", "add", &format!("{}/24", ns.host_ip), "dev", &ns.host_link])?;
        ip(&["link", "set", &ns.host_link, "up"])?;
        ip(&["-n", &ns.name, "addr", "add", &format!("{}/24", ns.ns_ip), "dev", &ns.ns_link])?;
        ip(&["-n", &ns.name, "link", "set", &ns.ns_link, "up"])?;
        ip(&["-n", &ns.name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Drops every packet both ways from now on: the namespace's end of the
    /// pair goes down, so what the server sends is dropped by the veth
    /// driver (the peer is down) and the client can send nothing. TCP is
    /// not told of link states: the server's socket sees only silence, as
    /// behind a NAT that forgot the connection.
    pub fn drop_traffic(&self) -> std::io::Result<()> {
        ip(&["-n", &self.name, "link", "set", &self.ns_link, "down"])
    }

    // ANCHOR_END: netns

    /// Lets traffic through again.
    pub fn restore_traffic(&self) {
        let _ = ip(&["-n", &self.name, "link", "set", &self.ns_link, "up"]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting one end of a veth pair deletes both; the namespace last.
        let _ = ip(&["link", "del", &self.host_link]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// A client process (`rtlab listen`), killed on drop.
struct Client(std::process::Child);

impl Drop for Client {
    fn drop(&mut self) {
        // A stopped process is killed all the same (SIGKILL needs no CONT).
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn client(netns: Option<&str>, addr: SocketAddr, transport: &str) -> std::io::Result<Client> {
    let exe = crate::exe()?;
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(&exe);
            c
        }
        None => Command::new(&exe),
    };
    cmd.args(["listen", "--url", &format!("http://{addr}"), "--topic", "zombies", "--transport", transport])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    rtlab_testkit::no_inherited_descriptors(&mut cmd);
    Ok(Client(cmd.spawn()?))
}

/// Open connections of `kind` (`ws`, `sse`) in the server's `/stats`.
fn open(addr: SocketAddr, kind: &str) -> Option<i64> {
    let body = http_get(addr, "/stats").ok()?;
    let json: serde_json::Value = serde_json::from_slice(&body).ok()?;
    json["connections"][kind].as_i64()
}

/// Waits until `/stats` shows `ws` and `sse` open connections as given.
fn await_open(addr: SocketAddr, ws: i64, sse: i64, timeout: Duration) -> std::io::Result<()> {
    let end = Instant::now() + timeout;
    loop {
        if open(addr, "ws") == Some(ws) && open(addr, "sse") == Some(sse) {
            return Ok(());
        }
        if Instant::now() > end {
            return Err(std::io::Error::other(format!(
                "expected {ws} WebSocket and {sse} SSE connections, /stats says {:?} and {:?}",
                open(addr, "ws"),
                open(addr, "sse")
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Watches `/stats` from `start` until each kind in `watch` drops by one, or
/// `wait` passes; returns the reap time per kind.
fn watch_reaps(addr: SocketAddr, start: Instant, watch: &[(&str, i64)], wait: Duration) -> Vec<Option<f64>> {
    let mut reaped: Vec<Option<f64>> = vec![None; watch.len()];
    while start.elapsed() < wait && reaped.iter().any(Option::is_none) {
        for (i, (kind, before)) in watch.iter().enumerate() {
            if reaped[i].is_none() && open(addr, kind).is_some_and(|n| n < *before) {
                reaped[i] = Some(start.elapsed().as_secs_f64());
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    reaped
}

fn serve(runtime: &str, host: Ipv4Addr, extra: &[String]) -> std::io::Result<Running> {
    Launch::new(crate::exe()?)
        .args(["serve", "--runtime", runtime, "--addr", &format!("{host}:0")])
        .args(extra)
        .env("RUST_LOG", "error")
        .stderr(Stderr::Inherit)
        .start()
}

/// Whether this process runs as root (namespaces and links need it).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs every lab: dropped WebSocket and SSE peers, a stopped WebSocket
/// peer, then the kernel-only case once.
pub fn run(args: &ZombiesArgs) -> std::io::Result<ZombiesResult> {
    if !is_root() {
        return Err(std::io::Error::other("rtlab bench zombies needs root (network namespaces, veth links)"));
    }
    if args.interval <= 0.0 || args.user_timeout <= 0.0 {
        return Err(std::io::Error::other("--interval and --user-timeout must be above 0"));
    }
    let (_, utc) = utc_now();
    let probe = EnvProbe::begin(args.common.placement);
    let mut result = ZombiesResult {
        experiment: "zombies".into(),
        interval: args.interval,
        user_timeout: args.user_timeout,
        close_linger: args.close_linger,
        kernel_watch: args.kernel_watch,
        machine: Machine::detect(),
        toolchain: Toolchain::detect(),
        git: Git::detect(),
        utc,
        note: "shared machine: other engineers built and tested on it during the run".into(),
        kernel: KernelBounds::detect(),
        env: RunEnv::default(),
        reaps: Vec::new(),
        failure: None,
    };
    let ws_bound = 2.0 * args.interval + 1.0;
    let sse_bound = args.interval + args.user_timeout + 1.0;
    let wait = Duration::from_secs_f64(3.0 * ws_bound.max(sse_bound) + 5.0);
    let heartbeats = vec![
        format!("--ping-interval={}", args.interval),
        format!("--keepalive={}", args.interval),
        format!("--tcp-user-timeout={}", args.user_timeout),
        format!("--close-linger={}", args.close_linger),
    ];
    for repeat in 0..args.repeats {
        for runtime in &args.runtimes {
            let netns = Netns::create(std::process::id() * 10 + repeat as u32 % 10)?;
            let server = serve(runtime, netns.host_ip, &heartbeats)?;
            let addr = server.addr();
            // Dropped: one WebSocket and one SSE client in the namespace.
            let ws = client(Some(&netns.name), addr, "ws")?;
            let sse = client(Some(&netns.name), addr, "sse")?;
            await_open(addr, 1, 1, Duration::from_secs(20))?;
            netns.drop_traffic()?;
            let start = Instant::now();
            let reaped = watch_reaps(addr, start, &[("ws", 1), ("sse", 1)], wait);
            for ((transport, bound), reap) in [("ws", ws_bound), ("sse", sse_bound)].into_iter().zip(reaped) {
                result.reaps.push(Reap {
                    runtime: runtime.clone(),
                    how: "dropped".into(),
                    transport: transport.into(),
                    repeat,
                    reap_secs: reap,
                    waited_secs: wait.as_secs_f64(),
                    bound_secs: bound,
                });
            }
            drop((ws, sse));
            // Stopped: a WebSocket client on the host, then SIGSTOP.
            await_open(addr, 0, 0, wait)?;
            let stopped = client(None, addr, "ws")?;
            await_open(addr, 1, 0, Duration::from_secs(20))?;
            // SAFETY: kill(2) on our own child, not yet reaped.
            unsafe { libc::kill(stopped.0.id() as libc::pid_t, libc::SIGSTOP) };
            let start = Instant::now();
            let reap = watch_reaps(addr, start, &[("ws", 1)], wait)[0];
            result.reaps.push(Reap {
                runtime: runtime.clone(),
                how: "stopped".into(),
                transport: "ws".into(),
                repeat,
                reap_secs: reap,
                waited_secs: wait.as_secs_f64(),
                bound_secs: ws_bound,
            });
            drop(stopped);
            let _ = server.stop(libc::SIGTERM, Duration::from_secs(10));
            let line = result
                .reaps
                .iter()
                .filter(|r| r.runtime == *runtime && r.repeat == repeat)
                .map(|r| format!("{} {}: {}", r.how, r.transport, r.reap_secs.map_or("not reaped".into(), |s| format!("{s:.2} s"))))
                .collect::<Vec<_>>()
                .join(", ");
            crate::say(&format!("zombies {runtime} #{repeat}: {line}"));
        }
    }
    // Kernel only: no ping, no user timeout; the dropped SSE stream is watched.
    if args.kernel_watch > 0.0 {
        let runtime = args.runtimes.first().cloned().unwrap_or_else(|| "tokio".into());
        let netns = Netns::create(std::process::id() * 10 + 9)?;
        let server = serve(&runtime, netns.host_ip, &[format!("--keepalive={}", args.interval)])?;
        let addr = server.addr();
        let sse = client(Some(&netns.name), addr, "sse")?;
        await_open(addr, 0, 1, Duration::from_secs(20))?;
        netns.drop_traffic()?;
        let watch = Duration::from_secs_f64(args.kernel_watch);
        let reap = watch_reaps(addr, Instant::now(), &[("sse", 1)], watch)[0];
        result.reaps.push(Reap {
            runtime,
            how: "kernel-only".into(),
            transport: "sse".into(),
            repeat: 0,
            reap_secs: reap,
            waited_secs: watch.as_secs_f64(),
            bound_secs: result.kernel.retransmit_give_up_secs,
        });
        netns.restore_traffic();
        drop(sse);
        let _ = server.stop(libc::SIGTERM, Duration::from_secs(10));
    }
    result.env = probe.end();
    if let Some(late) = result.reaps.iter().find(|r| r.how != "kernel-only" && r.reap_secs.is_none_or(|s| s > r.bound_secs)) {
        result.failure = Some(format!(
            "{} {} {}: reaped in {:?} s, bound {:.1} s",
            late.runtime, late.how, late.transport, late.reap_secs, late.bound_secs
        ));
    }
    Ok(result)
}

impl crate::Outcome for ZombiesResult {
    fn verified(&self) -> bool {
        self.failure.is_none()
    }

    fn failure(&self) -> Option<String> {
        self.failure.clone()
    }

    fn metrics(&self) -> Vec<(&'static str, f64)> {
        Vec::new()
    }

    fn summary(&self) -> String {
        let reaped = self.reaps.iter().filter(|r| r.reap_secs.is_some()).count();
        match &self.failure {
            None => format!("zombies: {} dead peers, {reaped} reaped, all within their bounds", self.reaps.len()),
            Some(f) => format!("zombies: FAILED: {f}"),
        }
    }

    fn env(&self) -> &RunEnv {
        &self.env
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}
