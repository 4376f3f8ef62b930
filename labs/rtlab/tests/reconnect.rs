//! The reconnecting client (`rtlab-client`, `rtlab listen`) against a real
//! `rtlab serve --runtime tokio`, over real sockets: connections are lost in
//! two real ways, and each time the client must resume where it stopped,
//! so that it delivers every message exactly once, in order.
//!
//! * The server cuts the client off: with `--outbox-budget 1` and the
//!   `disconnect` policy, a subscriber may have one message waiting and no
//!   more (a message always fits an empty outbox). Messages are published in
//!   bursts, pipelined on one connection, so the second of a burst finds the
//!   first still waiting: the server closes the stream (SSE) or sends close
//!   `1008` (WebSocket), and the client gets what it missed by reconnecting
//!   with `Last-Event-ID`/`after=` (replayed messages are exempt from the
//!   budget).
//! * The network cuts it off: a TCP proxy in this test, between client and
//!   server, shuts every connection through it down after each third
//!   message (for long polling too, mid-poll).
//!
//! Every wait is bounded by [`TIMEOUT`], which only a failure reaches.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::ops::ControlFlow;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::SmallRng;
use rtlab_client::{Backoff, Config, Event, Start, Strategy, Subscriber, Transport};
use rtlab_testkit::{Launch, RawConn, Running, TIMEOUT, request};
use serde_json::Value;

const ALL: [Transport; 3] = [Transport::Sse, Transport::Ws, Transport::LongPoll];

/// `rtlab serve --runtime tokio` on a free port with `options`.
fn serve(options: &[&str]) -> Running {
    Launch::serve(env!("CARGO_BIN_EXE_rtlab"), "tokio")
        .args(options)
        .env("RUST_LOG", "warn")
        .start()
        .unwrap_or_else(|e| panic!("starting the server failed: {e}"))
}

/// One request on a fresh connection: status and body.
fn http(addr: SocketAddr, method: &str, target: &str, body: &[u8]) -> (u16, String) {
    let mut conn = RawConn::connect(addr);
    conn.send(&request(method, target, &format!("Content-Length: {}\r\nConnection: close\r\n", body.len())));
    conn.send(body);
    let response = conn.read_response();
    (response.head.status, response.text())
}

fn publish(addr: SocketAddr, topic: &str, data: &str) -> u64 {
    let (status, body) = http(addr, "POST", &format!("/publish?topic={topic}"), data.as_bytes());
    assert_eq!(status, 200, "publish: {body}");
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("publish body {body:?}: {e}"));
    v["id"].as_u64().unwrap_or_else(|| panic!("no id in {body}"))
}

fn stats(addr: SocketAddr) -> Value {
    let (_, body) = http(addr, "GET", "/stats", b"");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("stats {body:?}: {e}"))
}

/// A subscriber from the start of `topic` (`after=0`), on its own thread,
/// with a quick back-off (full jitter, 20 ms to 500 ms, seeded), until
/// `count` messages; its events come through the channel.
fn subscribe(addr: SocketAddr, topic: &str, transport: Transport, count: usize) -> Client {
    let url = format!("http://{addr}").parse().expect("a URL");
    let mut config = Config::new(url, topic, transport).expect("a valid topic");
    config.start = Start::After(0);
    config.backoff = Backoff::new(Strategy::FullJitter, Duration::from_millis(20), Duration::from_millis(500));
    config.poll_wait = 5;
    let (tx, events) = mpsc::channel();
    let thread = thread::spawn(move || {
        let mut subscriber = Subscriber::new(config, SmallRng::seed_from_u64(7));
        let mut messages = 0;
        rtlab_client::blocking::run(&mut subscriber, |event| {
            messages += usize::from(matches!(event, Event::Message(_)));
            let _ = tx.send(event.clone());
            if messages == count { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
        })
    });
    Client { events, log: Vec::new(), thread: Some(thread), transport }
}

/// A running subscriber and everything it reported so far.
struct Client {
    events: Receiver<Event>,
    log: Vec<Event>,
    thread: Option<JoinHandle<Result<(), String>>>,
    transport: Transport,
}

impl Client {
    /// Reads events until one matches.
    fn until(&mut self, what: &str, done: impl Fn(&Event) -> bool) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(event) => {
                    let hit = done(&event);
                    self.log.push(event);
                    if hit {
                        return;
                    }
                }
                Err(e) => panic!("{}: no {what} ({e}); events so far: {:#?}", self.transport, self.log),
            }
        }
    }

    fn until_message(&mut self, id: u64) {
        self.until(&format!("message {id}"), |e| matches!(e, Event::Message(m) if m.id == id));
    }

    /// Waits for the subscriber's thread, which stops at its count.
    fn finish(&mut self) {
        let thread = self.thread.take().expect("finished once");
        let result = thread.join().expect("the subscriber thread panicked");
        assert_eq!(result, Ok(()), "{}", self.transport);
        self.log.extend(self.events.try_iter());
    }

    fn messages(&self) -> Vec<(u64, String)> {
        self.log
            .iter()
            .filter_map(|e| if let Event::Message(m) = e { Some((m.id, m.data.clone())) } else { None })
            .collect()
    }

    fn reconnects(&self) -> Vec<&str> {
        self.log
            .iter()
            .filter_map(|e| if let Event::Reconnecting { reason, .. } = e { Some(reason.as_str()) } else { None })
            .collect()
    }
}

fn ten() -> Vec<(u64, String)> {
    (1..=10).map(|id| (id, format!("m{id}"))).collect()
}

// ANCHOR: server_cuts
/// The server cuts the subscriber off when a burst of messages is over its
/// budget; each message still arrives — live or by replay on the next
/// connection — exactly once, in order.
#[test]
fn the_server_cuts_every_live_message() {
    let server = serve(&["--outbox-budget", "1", "--policy", "disconnect"]);
    for transport in [Transport::Sse, Transport::Ws] {
        let topic = format!("cut-{transport}");
        let mut client = subscribe(server.addr(), &topic, transport, 10);
        // Subscribed before the first publish, so that it is live too.
        client.until("a connection", |e| matches!(e, Event::Connected { .. }));
        for burst in ten().chunks(2) {
            let data: Vec<&str> = burst.iter().map(|(_, d)| d.as_str()).collect();
            let ids = publish_burst(server.addr(), &topic, &data);
            assert_eq!(ids, burst.iter().map(|(id, _)| *id).collect::<Vec<_>>());
            client.until_message(*ids.last().expect("a burst"));
        }
        client.finish();
        assert_eq!(client.messages(), ten(), "{transport}: every message once, in order");
        let reconnects = client.reconnects();
        // A burst is two publishes a few microseconds apart on one thread;
        // the subscriber would have to write the first in between to escape
        // the cut, five times over.
        assert!(!reconnects.is_empty(), "{transport}: the server cut the subscriber off: {reconnects:?}");
        if transport == Transport::Ws {
            assert!(reconnects.iter().all(|r| r.contains("1008 slow consumer")), "{reconnects:?}");
        }
        assert!(!client.log.iter().any(|e| matches!(e, Event::Missed { .. } | Event::Gap { .. })), "{transport}");
    }
    let slow = stats(server.addr())["slow_disconnects"].as_u64().unwrap_or(0);
    assert!(slow >= 2, "the server counts the cuts it made: {slow}");
}

/// Publishes `data` as pipelined requests in one write on one connection
/// (so the server handles them back to back); returns their ids.
fn publish_burst(addr: SocketAddr, topic: &str, data: &[&str]) -> Vec<u64> {
    let mut conn = RawConn::connect(addr);
    let mut requests = Vec::new();
    for d in data {
        requests.extend(request("POST", &format!("/publish?topic={topic}"), &format!("Content-Length: {}\r\n", d.len())));
        requests.extend_from_slice(d.as_bytes());
    }
    conn.send(&requests);
    data.iter()
        .map(|_| {
            let response = conn.read_response();
            assert_eq!(response.head.status, 200, "publish: {}", response.text());
            let v: Value = serde_json::from_str(&response.text()).expect("publish body");
            v["id"].as_u64().expect("an id")
        })
        .collect()
}
// ANCHOR_END: server_cuts

/// A TCP proxy that can cut every connection through it at once.
struct Proxy {
    addr: SocketAddr,
    /// Both sockets of every connection made so far (closed ones too).
    sockets: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let sockets = Arc::new(Mutex::new(Vec::new()));
        let registry = Arc::clone(&sockets);
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(upstream) else { continue };
                let clone = |s: &TcpStream| s.try_clone().expect("clone a socket");
                registry.lock().unwrap().extend([clone(&client), clone(&server)]);
                pump(clone(&client), clone(&server));
                pump(server, client);
            }
        });
        Proxy { addr, sockets }
    }

    /// Shuts every connection down, both ways, on both sides.
    fn cut(&self) {
        for socket in self.sockets.lock().unwrap().drain(..) {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
}

/// Copies `from` to `to` until either ends.
fn pump(mut from: TcpStream, mut to: TcpStream) {
    thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        while let Ok(n @ 1..) = from.read(&mut buf) {
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

// ANCHOR: network_cuts
/// The network cuts every connection after each third message; messages
/// published while the client is away are retained and replayed.
#[test]
fn the_network_cuts_every_third_message() {
    let server = serve(&[]);
    for transport in ALL {
        let proxy = Proxy::start(server.addr());
        let topic = format!("net-{transport}");
        // From after=0: what is published before it connects is replayed.
        let mut client = subscribe(proxy.addr, &topic, transport, 10);
        for batch in ten().chunks(3) {
            for (id, data) in batch {
                assert_eq!(publish(server.addr(), &topic, data), *id);
            }
            client.until_message(batch.last().expect("a batch").0);
            proxy.cut();
        }
        client.finish();
        assert_eq!(client.messages(), ten(), "{transport}: every message once, in order");
        let reconnects = client.reconnects().len();
        assert!(reconnects >= 3, "{transport}: a reconnection per cut: {:#?}", client.log);
    }
}
// ANCHOR_END: network_cuts

/// A resume older than the retention: the missed range, then what is left.
#[test]
fn the_missed_range_is_reported() {
    let server = serve(&["--retention", "4"]);
    for transport in ALL {
        let topic = format!("gone-{transport}");
        for (_, data) in ten() {
            publish(server.addr(), &topic, &data);
        }
        let mut client = subscribe(server.addr(), &topic, transport, 4);
        client.finish();
        let missed: Vec<&Event> = client.log.iter().filter(|e| matches!(e, Event::Missed { .. })).collect();
        assert_eq!(missed, [&Event::Missed { from: 1, to: 6 }], "{transport}");
        assert_eq!(client.messages(), ten()[6..], "{transport}");
    }
}

/// `rtlab listen` prints one line per message and exits after `--count`;
/// a bad argument is one line on stderr and exit code 2.
#[test]
fn rtlab_listen_prints_and_exits() {
    let server = serve(&[]);
    for (id, data) in [(1, "one"), (2, "two\nlines"), (3, "three")] {
        assert_eq!(publish(server.addr(), "cli", data), id);
    }
    for transport in ["sse", "ws", "long-poll"] {
        let url = format!("http://{}", server.addr());
        let args =
            ["listen", "--url", &url, "--topic", "cli", "--transport", transport, "--after", "0", "--count", "3"];
        let (code, stdout, stderr) = rtlab(&args);
        assert_eq!(code, Some(0), "{transport}: {stderr}");
        let lines: Vec<&str> = stdout.lines().filter(|l| !l.starts_with("connected ")).collect();
        assert_eq!(lines, ["1 one", "2 two\\nlines", "3 three"], "{transport}: {stdout}");
    }
    let (code, _, stderr) = rtlab(&["listen", "--topic", "cli", "--transport", "pigeon"]);
    assert_eq!((code, stderr.lines().count()), (Some(2), 1), "{stderr}");
    let (code, _, stderr) = rtlab(&["listen", "--topic", "cli", "--base-ms", "10", "--cap-ms", "5"]);
    assert_eq!((code, stderr.lines().count()), (Some(2), 1), "{stderr}");
    // A 404 from the server is final: exit 1, one line.
    let url = format!("http://{}/nowhere", server.addr());
    let (code, _, stderr) = rtlab(&["listen", "--url", &url, "--topic", "cli", "--transport", "ws"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.starts_with("rtlab listen: gave up: HTTP 404") && stderr.lines().count() == 1, "{stderr}");
}

/// Runs `rtlab ARGS` with a deadline: exit code, stdout, stderr.
fn rtlab(args: &[&str]) -> (Option<i32>, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rtlab"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rtlab");
    let deadline = Instant::now() + TIMEOUT;
    while child.try_wait().expect("wait for rtlab").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("rtlab {args:?} did not exit");
        }
        thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("rtlab's output");
    let text = |b: Vec<u8>| String::from_utf8(b).expect("UTF-8");
    (out.status.code(), text(out.stdout), text(out.stderr))
}

/// Tokens that run out: `rtlab listen --token-command` gets a new token each
/// time the server refuses or ends the current one (SSE `event: expired`,
/// WebSocket close 4001, a held long poll's `401`), says so
/// (`token-needed ...`), and resumes after its last message — on every
/// transport, with tokens that live a second.
#[test]
fn rtlab_listen_gets_a_new_token_when_its_token_ends() {
    let server = serve(&["--token-secret", "listen secret"]);
    let addr = server.addr();
    let bin = env!("CARGO_BIN_EXE_rtlab");
    let publisher = rtlab(&["token", "--secret", "listen secret", "--sub", "pub", "--ttl", "60s", "--publish"]).1;
    let target = format!("/publish?topic=tok&token={}", publisher.trim());
    assert_eq!(http(addr, "POST", &target, b"one").0, 200);
    let command = format!("{bin} token --secret 'listen secret' --sub reader --ttl 1s");
    let listeners: Vec<_> = ["sse", "ws", "long-poll"]
        .into_iter()
        .map(|transport| {
            let url = format!("http://{addr}");
            let command = command.clone();
            thread::spawn(move || {
                let args = ["listen", "--url", &url, "--topic", "tok", "--transport", transport, "--after", "0"];
                let out = rtlab(&[&args[..], &["--count", "2", "--wait", "5", "--token-command", &command]].concat());
                (transport, out)
            })
        })
        .collect();
    // Past the first tokens' end (at most 2 s away: exp is rounded up).
    thread::sleep(Duration::from_millis(2500));
    assert_eq!(http(addr, "POST", &target, b"two").0, 200);
    for listener in listeners {
        let (transport, (code, stdout, stderr)) = listener.join().expect("a listener");
        assert_eq!(code, Some(0), "{transport}: {stdout}\n{stderr}");
        let messages: Vec<&str> = stdout.lines().filter(|l| l.starts_with(|c: char| c.is_ascii_digit())).collect();
        assert_eq!(messages, ["1 one", "2 two"], "{transport}: {stdout}");
        assert!(stdout.lines().any(|l| l.starts_with("token-needed ")), "{transport}: no token-needed line: {stdout}");
        assert!(!stdout.contains("reconnect "), "{transport}: a token's end is no failure to back off from: {stdout}");
    }
}
