//! The million's machinery at a small scale: `rtlab bench million` with
//! 20,000 connections over 2 mio server processes on one real Redis (one
//! publish reaches both) and 2 crowd workers (a test of the harness —
//! several processes, the broker, the workers, the broadcast check, the
//! release, the report — not a measurement), and `rtlab cluster`
//! started, probed on every process and stopped by SIGTERM.
//! Run: cargo test -p rtlab --test million

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A directory under the system's temporary directory, removed on drop.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Waits for `child` to exit; fails the test after `timeout`.
fn exit_within(child: &mut std::process::Child, timeout: Duration) -> std::process::ExitStatus {
    let end = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(Instant::now() < end, "the cluster did not stop within {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn twenty_thousand_over_two_processes_all_reached_and_released() {
    let dir = TempDir(std::env::temp_dir().join(format!("rtlab-million-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).expect("temp dir");
    let json = dir.0.join("run.json");
    let output = Command::new(env!("CARGO_BIN_EXE_rtlab"))
        .args(["bench", "million", "--runtime", "mio", "--connections", "20000", "--processes", "2"])
        .args(["--per-worker", "10000", "--kind", "mix", "--open-timeout", "240", "--broadcast-timeout", "120"])
        // Both processes on one real Redis: one publish must reach both.
        .args(["--broker", "redis"])
        .arg("--json")
        .arg(&json)
        .output()
        .expect("rtlab runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let run: Value = serde_json::from_slice(&std::fs::read(&json).expect("the result")).expect("JSON");
    assert_eq!(run["verified"], true, "{run}");
    assert_eq!((run["opened"].as_u64(), run["failed"].as_u64()), (Some(20_000), Some(0)));
    assert_eq!((run["delivered"].as_u64(), run["missing"].as_u64()), (Some(20_000), Some(0)));
    assert_eq!(run["server_counted"].as_u64(), Some(20_000));
    assert_eq!(run["processes"].as_u64(), Some(2));
    assert_eq!(run["publishes"].as_u64(), Some(1), "one publish, carried by Redis to the other process");
    assert_eq!(run["broker"], "redis");
    assert_eq!(run["released"], true);
    // Every process held its share, and the memory figures are measured.
    let memory = run["server_memory"].as_array().expect("per process");
    assert_eq!(memory.len(), 2);
    assert!(memory.iter().all(|m| m["connections"].as_u64() == Some(10_000) && m["holding"].as_u64() > m["baseline"].as_u64()));
    assert!(run["server_bytes_per_conn"].as_f64().unwrap() > 0.0);
    assert_eq!(run["cdf_ms"].as_array().map(Vec::len), Some(101));
    let t = &run["timeline"];
    assert!(t["first_ms"].as_f64() <= t["p50_ms"].as_f64() && t["p99_ms"].as_f64() <= t["last_ms"].as_f64());

    // The report renders from it.
    let book = dir.0.join("book");
    let report = Command::new(env!("CARGO_BIN_EXE_rtlab"))
        .arg("report-million")
        .arg(&dir.0)
        .arg("--book")
        .arg(&book)
        .output()
        .expect("rtlab runs");
    assert!(report.status.success(), "{}", String::from_utf8_lossy(&report.stderr));
    let targets = std::fs::read_to_string(book.join("findings/million-targets.md")).expect("targets");
    assert!(targets.contains("20,000 connections") && targets.contains("20,000 of 20,000 reached"), "{targets}");
    assert!(std::fs::read_to_string(book.join("plots/million-broadcast.svg")).expect("plot").contains("<svg"));
}

#[test]
fn cluster_serves_on_every_process_and_stops_as_one() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rtlab"))
        .args(["cluster", "--processes", "3", "--runtime", "mio", "--addr", "127.0.0.1:0", "--status-every", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("rtlab runs");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut addrs = Vec::new();
    while addrs.len() < 3 {
        let line = lines.next().expect("a line").expect("readable");
        let addr = line.rsplit_once("listening on ").expect("listening on ADDR").1.to_owned();
        addrs.push(addr);
    }
    // Three processes, three ports, each answering for itself.
    let mut ports: Vec<&String> = addrs.iter().collect();
    ports.dedup();
    assert_eq!(ports.len(), 3);
    for addr in &addrs {
        let mut s = TcpStream::connect(addr).expect("connects");
        s.write_all(b"GET /stats HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200") && answer.contains("\"connections\""), "{answer}");
    }
    // SIGTERM to the cluster stops every process, and the cluster exits 0.
    // SAFETY: kill with our child's pid.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let status = exit_within(&mut child, Duration::from_secs(30));
    assert!(status.success(), "{status}");
    for addr in &addrs {
        assert!(TcpStream::connect(addr).is_err(), "{addr} still listens");
    }
}

#[test]
fn a_dead_process_is_reported_and_stops_the_cluster() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rtlab"))
        .args(["cluster", "--processes", "2", "--runtime", "mio", "--addr", "127.0.0.1:0", "--status-every", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rtlab runs");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    // `process I (pid P) listening on ADDR`
    let mut procs = Vec::new();
    while procs.len() < 2 {
        let line = lines.next().expect("a line").expect("readable");
        let pid: i32 = line.split("(pid ").nth(1).and_then(|r| r.split(')').next()).and_then(|p| p.parse().ok()).expect("a pid");
        procs.push((pid, line.rsplit_once("listening on ").expect("an address").1.to_owned()));
    }
    // SAFETY: kill on a pid the cluster printed, a live child of it.
    unsafe { libc::kill(procs[0].0, libc::SIGKILL) };
    let status = exit_within(&mut child, Duration::from_secs(30));
    assert!(!status.success(), "a cluster that lost a process must fail");
    let mut stderr = String::new();
    child.stderr.take().expect("stderr").read_to_string(&mut stderr).unwrap();
    assert!(stderr.contains(&format!("process 0 (pid {}) died", procs[0].0)), "{stderr}");
    assert!(TcpStream::connect(&procs[1].1).is_err(), "the other process still listens");
}
