// Run: cargo run -p rtlab-may --example overflow [--release] [-- WORDS]
//! What a coroutine stack overflow looks like: the may lab in its naive
//! design — every step on the coroutine's own stack, no work stack — with a
//! stack too small for its deepest request (3 Ki words, 24 KiB, by default),
//! in a child process.
//!
//! A subscriber connects first and is served. Then one client sends a `/ws`
//! publish whose JSON nests 127 levels deep — valid input the contract must
//! answer — and the parser's recursion runs its coroutine off the end of its
//! stack into the guard page. The example then checks whether the server
//! still serves fresh clients and the innocent subscriber, and prints what
//! the server printed on stderr.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use rtlab_adapter::Stop;
use rtlab_core::{Config, Server};
use rtlab_may::{Options, serve_with};
use rtlab_testkit::Launch;
use rtlab_testkit::process::announce;
use rtlab_testkit::ws::{FIN, TEXT, client_frame, upgrade_request};

fn main() {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("child") => child(args.next().and_then(|w| w.parse().ok()).expect("child WORDS")),
        other => parent(other.and_then(|w| w.parse().ok()).unwrap_or(3 * 1024)),
    }
}

fn child(words: usize) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    announce(&listener);
    serve_with(
        listener,
        Server::new(Config::default()),
        Stop::new(),
        Options { stack_words: words, work_stack: false },
        None,
    )
    .unwrap();
}

fn parent(words: usize) {
    println!("== the may lab, steps on the coroutine stack, {words} words ({} KiB)", words * 8 / 1024);
    let child = Launch::this_exe().args(["child", &words.to_string()]).env("RUST_BACKTRACE", "0").start().unwrap();
    let addr = child.addr();

    // An innocent subscriber, served normally.
    let mut sse = connect(addr);
    sse.write_all(b"GET /sse?topic=t HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    println!("subscriber: {}", first_line(&mut sse));

    // One client sends valid, deeply nested JSON over /ws.
    let mut ws = connect(addr);
    ws.write_all(&upgrade_request("/ws?topic=t")).unwrap();
    let nested = format!(r#"{{"op":"publish","data":"x","n":{}{}}}"#, "[".repeat(126), "]".repeat(126));
    ws.write_all(&client_frame(FIN | TEXT, nested.as_bytes(), true)).unwrap();
    println!("deep client: sent a /ws publish nested 127 levels deep");
    std::thread::sleep(Duration::from_millis(500));
    println!("deep client: {}", outcome(&mut ws));

    // Is the server still serving? Ten fresh clients ask for /stats.
    for i in 1..=10 {
        let mut probe = connect(addr);
        let answer = probe.write_all(b"GET /stats HTTP/1.1\r\nHost: x\r\n\r\n").map(|_| first_line(&mut probe));
        println!("client {i:>2}: {}", answer.unwrap_or_else(|e| format!("write failed: {e}")));
    }
    let mut publisher = connect(addr);
    let _ = publisher.write_all(b"POST /publish?topic=t HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
    println!("publisher: {}", first_line(&mut publisher));
    println!("subscriber: {}", outcome(&mut sse));

    let running = child.exit_status().unwrap().is_none();
    let status = child.kill().unwrap();
    let err = child.stderr_text();
    println!(
        "server: {} ({status})",
        if running { "still running, killed by the example" } else { "exited by itself" }
    );
    println!("server stderr, condensed (each line once, with its count):");
    let mut lines: Vec<(String, usize)> = Vec::new();
    for line in err.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let line = strip_ids(line);
        match lines.iter_mut().find(|(l, _)| *l == line) {
            Some((_, n)) => *n += 1,
            None => lines.push((line, 1)),
        }
    }
    for (line, n) in lines {
        println!("  {n:>3} x  {line}");
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    stream
}

/// The first line of the answer, or what went wrong.
fn first_line(stream: &mut TcpStream) -> String {
    let mut buf = [0u8; 4096];
    match stream.read(&mut buf) {
        Ok(0) => "closed without an answer".into(),
        Ok(n) => String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or("").to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => "no answer within 2 s".into(),
        Err(e) => format!("error: {e}"),
    }
}

/// What reading the rest of a connection gives.
fn outcome(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return format!("{} more bytes, then the connection closed", got.len()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                return format!("{} more bytes, connection still open", got.len());
            }
            Err(e) => return format!("{} more bytes, then error: {e}", got.len()),
        }
    }
}

/// Replaces thread ids such as `(27463)` so that equal messages group.
fn strip_ids(line: &str) -> String {
    match (line.find(" ("), line.find(") panicked")) {
        (Some(a), Some(b)) if a < b => format!("{}{}", &line[..a], &line[b + 1..]),
        _ => line.to_string(),
    }
}
