// Run: cargo run -p rtlab-threads --example stack_floor [--release]
//! Finds the smallest thread stack on which the threads lab survives its
//! deepest request, by trying smaller and smaller stacks.
//!
//! Each try starts the lab in a child process with connection threads of a
//! given stack size, sends the deepest request a client can send — a `/ws`
//! publish whose JSON nests 127 levels, serde_json's limit — and then asks
//! `/stats` on a fresh connection. A stack that is too small overflows into
//! its guard page; Rust's handler prints `thread '...' has overflowed its
//! stack` and aborts the whole process. A binary search between 16 KiB and
//! the lab's [`STACK_SIZE`] finds the floor (to 4 KiB); the example prints
//! it, the margin the chosen size leaves, and what the first overflow looked
//! like.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use rtlab_adapter::Stop;
use rtlab_core::{Config, Server};
use rtlab_testkit::process::announce;
use rtlab_testkit::ws::{FIN, TEXT, client_frame, upgrade_request};
use rtlab_testkit::{Launch, Running};
use rtlab_threads::{Options, STACK_SIZE, serve_with};

const STEP: usize = 4096;

fn main() {
    let mut args = std::env::args().skip(1);
    if let Some("child") = args.next().as_deref() {
        let stack_size = args.next().and_then(|s| s.parse().ok()).expect("child STACK_SIZE");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        announce(&listener);
        let options = Options { stack_size, ..Options::default() };
        serve_with(listener, Server::new(Config::default()), Stop::new(), options, None).unwrap();
        return;
    }
    let build = if cfg!(debug_assertions) { "debug" } else { "release" };
    println!("threads lab, {build} build: the deepest request against smaller and smaller thread stacks");
    let (mut low, mut high) = (16 * 1024 / STEP, STACK_SIZE / STEP); // In steps; `high` must survive.
    let mut overflow = None;
    assert!(survives(high * STEP, &mut overflow), "the lab's own stack size does not survive");
    while high - low > 1 {
        let mid = (low + high) / 2;
        if survives(mid * STEP, &mut overflow) {
            high = mid;
        } else {
            low = mid;
        }
    }
    let floor = high * STEP;
    println!(
        "smallest stack that survives: {} KiB; the lab's: {} KiB ({:.1}x the floor)",
        floor / 1024,
        STACK_SIZE / 1024,
        STACK_SIZE as f64 / floor as f64
    );
    if let Some(text) = overflow {
        println!("what an overflow looked like (the server's stderr):\n{text}");
    }
}

/// Starts the lab with `stack_size`, sends the deepest request, and tells
/// whether the server is still there to answer `/stats`.
fn survives(stack_size: usize, overflow: &mut Option<String>) -> bool {
    let child = Launch::this_exe().args(["child", &stack_size.to_string()]).env("RUST_BACKTRACE", "0").start().unwrap();
    let addr = child.addr();

    let mut ws = TcpStream::connect(addr).unwrap();
    ws.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    ws.write_all(&upgrade_request("/ws?topic=t")).unwrap();
    let nested = format!(r#"{{"op":"publish","data":"x","n":{}{}}}"#, "[".repeat(126), "]".repeat(126));
    let _ = ws.write_all(&client_frame(FIN | TEXT, nested.as_bytes(), true));
    let mut sink = [0u8; 4096];
    while matches!(ws.read(&mut sink), Ok(1..)) {}

    let alive = stats_answer(addr);
    println!("  {:>5} KiB: {}", stack_size / 1024, if alive { "survives" } else { "overflows" });
    stop(child, if alive { None } else { Some(overflow) });
    alive
}

fn stats_answer(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else { return false };
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 64];
    s.write_all(b"GET /stats HTTP/1.1\r\n\r\n").is_ok()
        && matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"HTTP/1.1 200"))
}

/// Ends the child; on the first overflow, keeps its stderr.
fn stop(child: Running, overflow: Option<&mut Option<String>>) {
    let status = child.kill().unwrap();
    if let Some(slot) = overflow.filter(|slot| slot.is_none()) {
        let err = child.stderr_text();
        *slot = Some(format!("{}    (exit: {status})", err.lines().map(|l| format!("    {l}\n")).collect::<String>()));
    }
}
