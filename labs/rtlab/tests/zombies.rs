//! Run: `cargo test -p rtlab --test zombies` (as root; skipped otherwise).
//!
//! Dead peers, for real, on every lab: `rtlab bench zombies` with short
//! intervals puts clients in a network namespace it creates (a veth pair to
//! the host), sets their link down (traffic dropped both ways, no FIN, no
//! RST), and SIGSTOPs another client; the test checks that every lab closed
//! each dead connection within its bound (WebSocket: ping interval + pong
//! timeout + 1 s; SSE: keep-alive interval + TCP_USER_TIMEOUT + 1 s), that
//! without heartbeats the kernel alone did not, and that no namespace is
//! left behind — also when the run fails or hangs (the test kills it after
//! a generous bound and removes what it made).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Namespaces made by the run with this process id (`rtz<pid><digit>`).
fn leftovers(pid: u32) -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.strip_prefix(&format!("rtz{pid}")).is_some_and(|rest| rest.len() == 1))
        .map(str::to_owned)
        .collect()
}

#[test]
fn dead_peers_are_reaped_within_their_bounds_on_every_lab() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: dead peers need root (network namespaces, veth links); scripts/test.sh runs as root in CI");
        return;
    }
    let json = std::env::temp_dir().join(format!("rtlab-zombies-{}.json", std::process::id()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_rtlab"))
        .args(["bench", "zombies", "--interval", "0.5", "--user-timeout", "1", "--kernel-watch", "3", "--json"])
        .arg(&json)
        .stdin(Stdio::null())
        .spawn()
        .expect("start rtlab bench zombies");
    let pid = child.id();
    // Four labs of a few seconds each, on a shared machine: generous.
    let end = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // Whatever happened, nothing of the run stays behind.
    let left = leftovers(pid);
    for ns in &left {
        let _ = Command::new("ip").args(["netns", "del", ns]).status();
    }
    let status = status.expect("rtlab bench zombies did not finish within 180 s");
    let result: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("the results file")).expect("results JSON");
    let _ = std::fs::remove_file(&json);
    let reaps = result["reaps"].as_array().expect("reaps");
    for lab in ["tokio", "mio", "may", "threads"] {
        for (how, transport) in [("dropped", "ws"), ("dropped", "sse"), ("stopped", "ws")] {
            let r = reaps
                .iter()
                .find(|r| r["runtime"] == lab && r["how"] == how && r["transport"] == transport)
                .unwrap_or_else(|| panic!("{lab}: no {how} {transport} peer in {reaps:?}"));
            let bound = r["bound_secs"].as_f64().expect("bound");
            let reap = r["reap_secs"].as_f64().unwrap_or_else(|| panic!("{lab}: the {how} {transport} peer was never reaped"));
            assert!(reap <= bound, "{lab}: the {how} {transport} peer was reaped after {reap:.2} s, bound {bound:.2} s");
        }
    }
    let kernel = reaps.iter().find(|r| r["how"] == "kernel-only").expect("the kernel-only case");
    assert!(kernel["reap_secs"].is_null(), "without heartbeats or a user timeout, nothing should reap a dead SSE peer within seconds: {kernel}");
    assert!(status.success(), "rtlab bench zombies failed: {result}");
    assert!(left.is_empty(), "the run left namespaces behind: {left:?}");
}
