//! A lab server under test: a fresh `rtlab serve` process per measurement.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rtlab_testkit::{Launch, Running, Stderr};

use crate::procfs::{self, ProcessSample};

/// A running server process. Dropping it kills the process.
#[derive(Debug)]
pub struct ServerProcess {
    process: Running,
    /// Where it listens.
    pub addr: SocketAddr,
    /// A keep-alive connection for `/stats`, opened before any client: a
    /// server that holds as many connections as its descriptor limit allows
    /// cannot accept one more, but still answers on this one.
    stats_conn: Mutex<Option<KeepAlive>>,
}

impl ServerProcess {
    /// Starts `exe serve --runtime <runtime> --addr 127.0.0.1:0 <extra...>`
    /// (for the runtime `floor`: `exe bench-floor`, see [`crate::floor`])
    /// (with the test kit's [`Launch`]) and waits for its `listening on`
    /// line. With `cpu` set, the server is pinned to that core (`taskset`),
    /// so that clients on the other core do not compete with it.
    pub fn start(exe: &Path, runtime: &str, extra: &[String], cpu: Option<usize>) -> std::io::Result<ServerProcess> {
        // The floor is the harness's own raw-socket server, not a lab.
        let launch = if runtime == crate::floor::NAME {
            Launch::new(exe).args(["bench-floor", "--addr", "127.0.0.1:0"])
        } else {
            Launch::serve(exe, runtime).args(extra)
        };
        ServerProcess::launch(launch.pin_cpu(cpu), runtime)
    }

    /// Starts a server from a prepared [`Launch`] (an `rtlab serve` command
    /// line, e.g. on a fixed port: the cluster) the same way as
    /// [`ServerProcess::start`]; `name` is for messages.
    pub fn launch(launch: Launch, name: &str) -> std::io::Result<ServerProcess> {
        let runtime = name;
        let process = launch
            // Errors only: a server at its descriptor limit warns about every
            // refused accept, which is the expected outcome of that run.
            .env("RUST_LOG", "error")
            .stderr(Stderr::Inherit)
            .start()?;
        let server = ServerProcess { addr: process.addr(), process, stats_conn: Mutex::new(None) };
        // Opens the keep-alive /stats connection (and checks the server answers).
        let end = Instant::now() + Duration::from_secs(10);
        while let Err(e) = server.stats() {
            if Instant::now() > end {
                return Err(std::io::Error::other(format!("{runtime}: /stats does not answer: {e}")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The server process has exited (crashed: nothing here stops it but
    /// [`ServerProcess::stop`]); it is reaped when found so.
    pub fn died(&self) -> bool {
        !matches!(self.process.exit_status(), Ok(None))
    }

    /// How the process ended, once it has (`None` while it runs).
    pub fn exit_status(&self) -> Option<std::process::ExitStatus> {
        self.process.exit_status().ok().flatten()
    }

    /// Samples the server's memory and CPU.
    pub fn sample(&self) -> ProcessSample {
        procfs::process(self.pid()).unwrap_or_default()
    }

    /// `GET /stats`, parsed, on the keep-alive connection (opened again if
    /// the server closed it).
    pub fn stats(&self) -> std::io::Result<serde_json::Value> {
        let mut conn = self.stats_conn.lock().unwrap_or_else(|e| e.into_inner());
        let body = match conn.as_mut().map(|c| c.get("/stats")) {
            Some(Ok(body)) => body,
            _ => {
                let mut fresh = KeepAlive::connect(self.addr)?;
                let body = fresh.get("/stats")?;
                *conn = Some(fresh);
                body
            }
        };
        serde_json::from_slice(&body).map_err(std::io::Error::other)
    }

    /// Polls `/stats` until the open-connection count of `key` has not
    /// changed for `quiet`, or `timeout` passes; returns the last count.
    pub fn wait_stable(&self, key: &str, quiet: Duration, timeout: Duration) -> Option<u64> {
        let end = Instant::now() + timeout;
        let mut last: Option<(u64, Instant)> = None;
        while Instant::now() < end && !self.died() {
            if let Some(n) = self.stats().ok().and_then(|s| s["connections"][key].as_u64()) {
                match last {
                    Some((m, since)) if m == n => {
                        if since.elapsed() >= quiet {
                            return Some(n);
                        }
                    }
                    _ => last = Some((n, Instant::now())),
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        last.map(|(n, _)| n)
    }

    /// Polls `/stats` until `check` holds or `timeout` passes.
    pub fn wait_stats(&self, timeout: Duration, check: impl Fn(&serde_json::Value) -> bool) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end && !self.died() {
            if self.stats().is_ok_and(|s| check(&s)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// SIGTERM, then wait (up to `timeout`) for a clean exit; kills otherwise.
    /// Returns whether it exited 0 on its own.
    pub fn stop(self, timeout: Duration) -> bool {
        self.request_stop();
        self.wait_stopped(timeout)
    }

    /// Closes the `/stats` connection and sends SIGTERM, without waiting:
    /// to stop many servers in parallel, then [`ServerProcess::wait_stopped`]
    /// on each. (A second SIGTERM would make a server exit at once.)
    pub fn request_stop(&self) {
        // Our own /stats connection would otherwise hold the server in its
        // close linger, waiting for the peer to finish.
        drop(self.stats_conn.lock().unwrap_or_else(|e| e.into_inner()).take());
        let _ = self.process.signal(libc::SIGTERM);
    }

    /// Waits (up to `timeout`) for the exit a [`ServerProcess::request_stop`]
    /// asked for; returns whether it exited 0.
    pub fn wait_stopped(self, timeout: Duration) -> bool {
        self.process.wait_exit(timeout).is_ok_and(|status| status.success())
    }
}

/// One HTTP/1.1 keep-alive connection for `GET`s.
#[derive(Debug)]
struct KeepAlive {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl KeepAlive {
    fn connect(addr: SocketAddr) -> std::io::Result<KeepAlive> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.set_nodelay(true)?;
        Ok(KeepAlive { stream, buf: Vec::new() })
    }

    fn get(&mut self, path: &str) -> std::io::Result<Vec<u8>> {
        write!(self.stream, "GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n")?;
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:").and_then(|v| v.trim().parse().ok()))
                    .ok_or_else(|| std::io::Error::other("no Content-Length"))?;
                if self.buf.len() >= end + 4 + len {
                    let body = self.buf[end + 4..end + 4 + len].to_vec();
                    self.buf.drain(..end + 4 + len);
                    return Ok(body);
                }
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed"));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// One `GET` on a fresh connection; returns the body.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")?;
    let mut response = Vec::new();
    s.read_to_end(&mut response)?;
    let head_end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no response head"))?;
    Ok(response.split_off(head_end + 4))
}
