// Run: cargo run -p rtlab-may --example stack_depth [--release] [-- WORDS [own-stack]]
//! Measures how deep the may lab's stacks really go, by painting them.
//!
//! `may` paints a coroutine's whole stack with a marker word when its stack
//! size (in words) is odd, and when the coroutine ends prints how many words
//! from the top were touched: `stack size = S, used size = U`; the lab then
//! paints its work stacks too and prints `work stack used = B` for each
//! connection. This example serves the contract that way (with a painted
//! coroutine stack of 64 Ki + 1 words by default, far more than needed, so
//! that nothing overflows while measuring) in a child process, runs one
//! scenario per connection — each client behaviour that could push a
//! connection deep, the worst being a `/ws` publish whose JSON nests as deep
//! as serde_json allows — closes it, and reads the child's reports. It prints
//! the deepest use of both stacks per scenario, and how much of the lab's
//! chosen sizes ([`STACK_WORDS`], [`WORK_STACK`]) that is. With `own-stack`
//! it measures the naive design, whose steps run on the coroutine stack.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use rtlab_adapter::Stop;
use rtlab_core::{Config, Server};
use rtlab_may::{Options, STACK_WORDS, WORK_STACK, serve_with};
use rtlab_testkit::process::{announce, on_stdin_eof};
use rtlab_testkit::ws::{BINARY, CLOSE, CONT, FIN, PING, TEXT, client_frame, upgrade_request};
use rtlab_testkit::{Launch, Stderr};

const WORD: usize = std::mem::size_of::<usize>();
const PAGE: usize = 4096;

fn main() {
    let mut args = std::env::args().skip(1);
    if let Some("child") = args.next().as_deref() {
        let words = args.next().and_then(|w| w.parse().ok()).expect("child WORDS");
        let work_stack = args.next().as_deref() != Some("own-stack");
        return child(words, work_stack);
    }
    // Measure with room to spare: a painted stack much larger than the lab's.
    let words: usize = std::env::args().nth(1).and_then(|w| w.parse().ok()).unwrap_or(64 * 1024) | 1;
    let own_stack = std::env::args().nth(2).as_deref() == Some("own-stack");
    parent(words, own_stack);
}

/// The server: the may lab with a painted stack of `words` words; stops when
/// stdin closes.
fn child(words: usize, work_stack: bool) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    announce(&listener);
    let stop = Stop::new();
    let on_eof = stop.clone();
    on_stdin_eof(move || on_eof.stop());
    let config = Config { close_linger: Duration::from_millis(200), ..Config::default() };
    serve_with(listener, Server::new(config), stop, Options { stack_words: words, work_stack }, None).unwrap();
}

fn parent(words: usize, own_stack: bool) {
    let child = Launch::this_exe()
        .args(["child", &words.to_string(), if own_stack { "own-stack" } else { "work-stack" }])
        .stdin_piped()
        .keep_stdout()
        .stderr(Stderr::Inherit)
        .start()
        .unwrap();
    let addr = child.addr();

    let build = if cfg!(debug_assertions) { "debug" } else { "release" };
    let design = if own_stack { "steps on the coroutine stack (naive)" } else { "steps on the work stack" };
    println!(
        "may lab, {build} build, {design}, painted coroutine stacks of {words} words ({} KiB)",
        words * WORD / 1024
    );
    println!("{:<44} {:>16} {:>6} {:>16}", "scenario (one connection each)", "coroutine stack", "pages", "work stack");
    let (mut deepest, mut deepest_work) = (0, 0);
    for (name, scenario) in scenarios() {
        let stream = connect(addr);
        scenario(&stream);
        drop(stream);
        // One report per coroutine that ended: this connection's, and any
        // helper connection's the scenario opened.
        let (mut used, mut work) = (0, 0);
        let mut wait = Duration::from_secs(10);
        while let Some(line) = child.next_line(wait) {
            if let Some(words) = used_words(&line) {
                used = used.max(words * WORD);
                wait = Duration::from_millis(500);
            } else if let Some(bytes) = line.strip_prefix("work stack used = ").and_then(|b| b.parse().ok()) {
                work = work.max(bytes);
            }
        }
        assert!(used > 0, "no stack report for {name}");
        deepest = deepest.max(used);
        deepest_work = deepest_work.max(work);
        println!("{name:<44} {:>16} {:>6} {:>16}", format!("{used} B"), used.div_ceil(PAGE), format!("{work} B"));
    }
    child.close_stdin(); // Stop the server.
    let status = child.wait_exit(Duration::from_secs(30)).unwrap();
    println!("server exit: {status}");
    println!(
        "deepest coroutine stack use: {deepest} B; the lab's coroutine stack: {} B ({:.0}% used)",
        STACK_WORDS * WORD,
        100.0 * deepest as f64 / (STACK_WORDS * WORD) as f64
    );
    println!(
        "deepest work stack use: {deepest_work} B; the lab's work stack: {} B ({:.0}% used)",
        WORK_STACK,
        100.0 * deepest_work as f64 / WORK_STACK as f64
    );
}

/// Parses may's `coroutine name = .., stack size = S,  used size = U`.
fn used_words(line: &str) -> Option<usize> {
    line.split("used size = ").nth(1)?.trim().parse().ok()
}

type Scenario = fn(&TcpStream);

fn scenarios() -> Vec<(&'static str, Scenario)> {
    vec![
        ("GET /poll, then close", |s| exchange(s, b"GET /poll?topic=t HTTP/1.1\r\nHost: x\r\n\r\n")),
        ("POST /publish of 64 KiB", |s| {
            let body = "x".repeat(64 * 1024);
            let head = format!("POST /publish?topic=t HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len());
            exchange(s, &[head.as_bytes(), body.as_bytes()].concat());
        }),
        ("10 pipelined requests", |s| {
            exchange(s, "GET /poll?topic=t&after=0 HTTP/1.1\r\n\r\n".repeat(10).as_bytes());
        }),
        ("GET / (the page) and /stats", |s| exchange(s, b"GET / HTTP/1.1\r\n\r\nGET /stats HTTP/1.1\r\n\r\n")),
        ("8 KiB of headers (431)", |s| {
            let headers: String = (0..200).map(|i| format!("X-Header-{i}: {}\r\n", "v".repeat(40))).collect();
            exchange(s, format!("GET /poll?topic=t HTTP/1.1\r\n{headers}\r\n").as_bytes());
        }),
        ("malformed request (400)", |s| exchange(s, b"GET /\x00\x01 HTTP/9\r\n\r\n")),
        ("long poll answered by a publish", |s| {
            let mut w = s;
            w.write_all(b"GET /poll?topic=lp&wait=5 HTTP/1.1\r\n\r\n").unwrap();
            std::thread::sleep(Duration::from_millis(50));
            let addr = s.peer_addr().unwrap();
            exchange(&connect(addr), b"POST /publish?topic=lp HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi");
            drain(s);
        }),
        ("SSE with replay and live messages", |s| {
            exchange(s, b"GET /sse?topic=t HTTP/1.1\r\nLast-Event-ID: 0\r\n\r\n");
            let addr = s.peer_addr().unwrap();
            exchange(&connect(addr), b"POST /publish?topic=t HTTP/1.1\r\nContent-Length: 4\r\n\r\nlive");
            drain(s);
        }),
        ("/ws: replay, publish, ping, close", |s| {
            handshake(s, "/ws?topic=t&after=0");
            let mut frames = frame(TEXT, br#"{"op":"publish","data":"from ws"}"#);
            frames.extend(frame(PING, b"ping"));
            frames.extend(frame(TEXT, b"not json"));
            frames.extend(frame(CLOSE, &1000u16.to_be_bytes()));
            exchange(s, &frames);
        }),
        ("/ws: publish with JSON nested 127 deep", |s| {
            handshake(s, "/ws?topic=t");
            let nested = format!(r#"{{"op":"publish","data":"x","n":{}{}}}"#, "[".repeat(126), "]".repeat(126));
            exchange(s, &frame(TEXT, nested.as_bytes()));
        }),
        ("/ws: publish with JSON nested 10,000 deep", |s| {
            handshake(s, "/ws?topic=t");
            let nested = format!(r#"{{"n":{}{}}}"#, "[".repeat(10_000), "]".repeat(10_000));
            exchange(s, &frame(TEXT, nested.as_bytes()));
        }),
        ("/echo: 1 MiB in 64 fragments", |s| {
            handshake(s, "/echo");
            let part = vec![b'e'; 16 * 1024];
            let mut frames = Vec::new();
            for i in 0..64 {
                let opcode = if i == 0 { BINARY } else { CONT };
                let fin = if i == 63 { FIN } else { 0 }; // Only the last fragment is final.
                frames.extend(client_frame(fin | opcode, &part, true));
            }
            exchange(s, &frames);
        }),
        ("/echo: protocol error (1002)", |s| {
            handshake(s, "/echo");
            exchange(s, &frame(0x3, b"reserved opcode"));
        }),
    ]
}

/// A client connection whose reads give up after a moment of silence.
fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    stream
}

/// Sends `bytes`, then reads what comes back for a moment.
fn exchange(mut s: &TcpStream, bytes: &[u8]) {
    s.write_all(bytes).unwrap();
    drain(s);
}

fn drain(mut s: &TcpStream) {
    let mut buf = [0u8; 64 * 1024];
    while matches!(s.read(&mut buf), Ok(1..)) {}
}

fn handshake(mut s: &TcpStream, path: &str) {
    s.write_all(&upgrade_request(path)).unwrap();
}

/// A final, masked client frame.
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    client_frame(FIN | opcode, payload, true)
}
