//! A lab server under test: a fresh `rtlab serve` process per measurement.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::procfs::{self, ProcessSample};

/// A running server process. Dropping it kills the process.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl ServerProcess {
    /// Starts `exe serve --runtime <runtime> --addr 127.0.0.1:0 <extra...>`
    /// and waits for its `listening on` line. With `cpu` set, the server is
    /// pinned to that core (`taskset`), so that clients on the other core do
    /// not compete with it.
    pub fn start(exe: &Path, runtime: &str, extra: &[String], cpu: Option<usize>) -> std::io::Result<ServerProcess> {
        let mut cmd = match cpu {
            Some(core) if which("taskset") => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(core.to_string()).arg(exe);
                c
            }
            _ => Command::new(exe),
        };
        cmd.args(["serve", "--runtime", runtime, "--addr", "127.0.0.1:0"])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn()?;
        let stdout = child.stdout.take().expect("piped");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("{runtime}: unexpected first line {line:?}")))?;
        Ok(ServerProcess { child, addr })
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Samples the server's memory and CPU.
    pub fn sample(&self) -> ProcessSample {
        procfs::process(self.pid()).unwrap_or_default()
    }

    /// `GET /stats`, parsed.
    pub fn stats(&self) -> std::io::Result<serde_json::Value> {
        let body = http_get(self.addr, "/stats")?;
        serde_json::from_slice(&body).map_err(std::io::Error::other)
    }

    /// Polls `/stats` until `check` holds or `timeout` passes.
    pub fn wait_stats(&self, timeout: Duration, check: impl Fn(&serde_json::Value) -> bool) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if self.stats().is_ok_and(|s| check(&s)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// SIGTERM, then wait (up to `timeout`) for a clean exit; kills otherwise.
    /// Returns whether it exited 0 on its own.
    pub fn stop(mut self, timeout: Duration) -> bool {
        // SAFETY: kill(2) with a pid we own and a valid signal number.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
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
