//! Running out of file descriptors is survived.
//!
//! Run: `cargo test -p rtlab-mio --test emfile`
//!
//! The test binary starts itself again as a child process whose open-files
//! limit (`RLIMIT_NOFILE`) is [`LIMIT`], set before it execs, and which
//! serves on the mio lab.
//! The parent — with the normal limit — opens more connections than the
//! child has descriptors for, and checks that the child:
//!
//! 1. serves as many as its limit allows, and the rest wait in the backlog;
//! 2. does not crash and does not spin (its CPU time over a second at the
//!    limit stays small: `accept` is retried on a timer, not in a loop);
//! 3. serves the waiting connections within a second once descriptors are
//!    free again, and accepts new ones;
//! 4. still exits cleanly when asked to stop.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use rtlab_adapter::Stop;
use rtlab_core::{Config, Server};
use rtlab_testkit::process::{announce, on_stdin_eof};
use rtlab_testkit::{Launch, RawConn, request};

/// The child's open-files limit.
const LIMIT: usize = 64;
/// Connections beyond what the child can hold.
const EXTRA: usize = 16;
/// Set in the child's environment.
const CHILD: &str = "RTLAB_MIO_EMFILE_CHILD";

fn main() {
    if std::env::var_os(CHILD).is_some() {
        child();
    } else {
        parent();
        println!("emfile: ok");
    }
}

/// The server under test: the mio lab with `LIMIT` file descriptors (the
/// parent set the limit). Stops when its stdin closes.
fn child() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    announce(&listener);
    let stop = Stop::new();
    let on_eof = stop.clone();
    on_stdin_eof(move || on_eof.stop());
    // A connection limit above the open-files limit: by default the gate
    // would refuse with a 503 before the descriptors run out; this test is
    // about what happens when they do run out.
    let config = Config { max_connections: 1_000_000, ..Config::default() };
    rtlab_mio::serve(listener, Server::new(config), stop, None).expect("serve");
}

/// One SSE subscriber: the request is sent at once; the response head comes
/// when (if) the server accepts the connection.
struct Subscriber {
    stream: TcpStream,
    served: bool,
}

impl Subscriber {
    fn open(addr: SocketAddr) -> Subscriber {
        let mut stream = TcpStream::connect(addr).expect("connect (the backlog holds what is not accepted)");
        stream.write_all(&request("GET", "/sse?topic=emfile", "")).expect("send request");
        Subscriber { stream, served: false }
    }

    /// Whether the response head has arrived (waiting at most `wait`).
    fn check(&mut self, wait: Duration) -> bool {
        if !self.served {
            self.stream.set_read_timeout(Some(wait)).expect("timeout");
            let mut buf = [0u8; 512];
            match self.stream.read(&mut buf) {
                Ok(n) if n > 0 => {
                    assert!(buf.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
                    self.served = true;
                }
                Ok(_) => panic!("the server closed a waiting connection"),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => panic!("read: {e}"),
            }
        }
        self.served
    }
}

fn parent() {
    let server = Launch::this_exe()
        .env(CHILD, "1")
        .rlimit_nofile(LIMIT as u64)
        .stdin_piped()
        .start()
        .expect("start the child server");
    let (addr, pid) = (server.addr(), server.pid());

    // 1. More subscribers than the child has descriptors for.
    let mut subscribers: Vec<Subscriber> = (0..LIMIT + EXTRA).map(|_| Subscriber::open(addr)).collect();
    std::thread::sleep(Duration::from_millis(500));
    let served = subscribers.iter_mut().map(|s| s.check(Duration::from_millis(20))).filter(|&ok| ok).count();
    println!("emfile: {served} of {} connections served at a limit of {LIMIT} descriptors", subscribers.len());
    assert!(served < subscribers.len(), "the limit was never reached");
    assert!(served >= LIMIT - 16, "only {served} served: the server holds too many descriptors of its own");
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        let mut own: Vec<String> = dir
            .flatten()
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .map(|p| p.display().to_string())
            .filter(|p| !p.starts_with("socket:"))
            .collect();
        own.sort();
        println!("emfile: the server's other descriptors: {own:?}");
    }

    // 2. At the limit: alive, and not spinning.
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_ticks(pid) - before;
    println!("emfile: {used} CPU ticks (1/100 s) used in one second at the limit");
    assert!(used < 50, "the server spins at the limit: {used} ticks in one second");
    assert!(server.exit_status().expect("try_wait").is_none(), "the server died");

    // 3. Free some descriptors: the waiting connections are served within a second.
    let freed = 8;
    let mut closed = 0;
    subscribers.retain(|s| {
        let close = s.served && closed < freed;
        closed += usize::from(close);
        !close
    });
    let start = Instant::now();
    let mut newly = 0;
    while newly < freed && start.elapsed() < Duration::from_secs(3) {
        for s in subscribers.iter_mut().filter(|s| !s.served) {
            newly += usize::from(s.check(Duration::from_millis(1)));
        }
    }
    let took = start.elapsed();
    println!("emfile: {newly} waiting connections served {took:?} after {freed} were closed");
    assert!(newly >= freed / 2, "only {newly} waiting connections were served");
    assert!(took < Duration::from_millis(1500), "recovery took {took:?}");

    // Free everything: a brand-new connection is accepted and answered.
    drop(subscribers);
    let mut publish = RawConn::connect(addr);
    publish.send(&request("POST", "/publish?topic=emfile", "Content-Length: 2\r\nConnection: close\r\n"));
    publish.send(b"hi");
    let response = publish.read_response();
    assert_eq!(response.head.status, 200, "{response:?}");

    // 4. A clean stop.
    server.close_stdin();
    let status = server.wait_exit(Duration::from_secs(10)).expect("the server did not stop");
    assert!(status.success(), "the server exited with {status}");
}

/// User + system CPU time of a process, in clock ticks (`/proc/<pid>/stat`).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/<pid>/stat");
    // Fields after the command name (which may contain spaces) start at field 3.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields[n - 3].parse::<u64>().expect("a number");
    field(14) + field(15)
}
