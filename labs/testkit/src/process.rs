//! Starting a server process and waiting for its address.
//!
//! Every server the tests, examples and benchmarks start — `rtlab serve`,
//! or an example or test binary that starts itself again as a child —
//! binds a port chosen by the kernel and prints `listening on ADDR` as its
//! first stdout line. [`Launch`] builds the command (arguments, environment,
//! CPU pinning, an open-files limit, where stderr goes), starts it and waits
//! for that line; [`Running`] is the process that printed it. The child's
//! side of the same convention is [`announce`] (and [`on_stdin_eof`], for a
//! child that stops when its parent closes its stdin).

use std::ffi::{OsStr, OsString};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::thread;
use std::time::{Duration, Instant};

/// What a server prints before its address on its first stdout line.
pub const LISTENING: &str = "listening on ";

/// How many bytes of captured stderr an error message or a failing test
/// shows (the end of it).
const STDERR_TAIL: usize = 8192;

/// Where the child's stderr goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stderr {
    /// Kept in memory (drained by a thread, so the child never blocks on a
    /// full pipe): shown in start-up errors, by [`Running::stderr_text`],
    /// and printed when a [`Running`] is dropped while a test panics.
    Capture,
    /// This process's stderr.
    Inherit,
    /// Discarded.
    Null,
}

/// How to start a server process: the command, and how long to wait for its
/// `listening on ADDR` line.
///
/// A builder rather than a `Command` so that every user gets the same
/// plumbing — piped stdout read by a thread, the first line parsed, a
/// deadline on it, errors that show the child's stderr, kill on drop —
/// while keeping its own arguments, environment and stderr.
#[derive(Debug, Clone)]
pub struct Launch {
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    cpu: Option<usize>,
    stdin: bool,
    stderr: Stderr,
    keep_stdout: bool,
    rlimit_nofile: Option<u64>,
    timeout: Duration,
}

impl Launch {
    /// `program` with no arguments yet; stdin null, stderr captured, 30 s
    /// for the first line.
    pub fn new(program: impl AsRef<OsStr>) -> Launch {
        Launch {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            cpu: None,
            stdin: false,
            stderr: Stderr::Capture,
            keep_stdout: false,
            rlimit_nofile: None,
            timeout: Duration::from_secs(30),
        }
    }

    /// `rtlab serve --runtime <runtime> --addr 127.0.0.1:0`: a lab on a port
    /// of its own; more options with [`Launch::args`].
    pub fn serve(rtlab: impl AsRef<OsStr>, runtime: &str) -> Launch {
        Launch::new(rtlab).args(["serve", "--runtime", runtime, "--addr", "127.0.0.1:0"])
    }

    /// This very executable ([`std::env::current_exe`]): for an example or a
    /// test that starts itself again as the server, telling the child apart
    /// by an argument or an environment variable. (Should the path be
    /// unknown, `/proc/self/exe`, which the forked child still resolves to
    /// this binary; [`Launch::start`] reports it if that fails too.)
    pub fn this_exe() -> Launch {
        Launch::new(std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe")))
    }

    /// One more argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Launch {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// More arguments.
    pub fn args<I, S>(mut self, args: I) -> Launch
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// An environment variable for the child (on top of this process's).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Launch {
        self.env.push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Pins the child to one CPU with `taskset -c CPU` (which then execs the
    /// program, so the process id is the server's). Without `taskset` on
    /// `PATH`, or with `None`, it runs unpinned.
    pub fn pin_cpu(mut self, cpu: Option<usize>) -> Launch {
        self.cpu = cpu;
        self
    }

    /// Gives the child a stdin pipe that stays open until
    /// [`Running::close_stdin`] (or the drop of the [`Running`]): for a
    /// child that stops at end of file ([`on_stdin_eof`]). Otherwise stdin
    /// is null.
    pub fn stdin_piped(mut self) -> Launch {
        self.stdin = true;
        self
    }

    /// Where the child's stderr goes ([`Stderr::Capture`] by default).
    pub fn stderr(mut self, stderr: Stderr) -> Launch {
        self.stderr = stderr;
        self
    }

    /// Keeps the stdout lines after the first for [`Running::next_line`]
    /// (otherwise they are read and discarded, so that the child never
    /// blocks on a full pipe).
    pub fn keep_stdout(mut self) -> Launch {
        self.keep_stdout = true;
        self
    }

    /// Sets the child's open-files limit (`RLIMIT_NOFILE`, soft and hard)
    /// to `files` before it execs: a server that runs out of descriptors
    /// while its parent does not.
    pub fn rlimit_nofile(mut self, files: u64) -> Launch {
        self.rlimit_nofile = Some(files);
        self
    }

    /// How long to wait for the `listening on ADDR` line (30 s by default).
    pub fn timeout(mut self, timeout: Duration) -> Launch {
        self.timeout = timeout;
        self
    }

    /// The command line, for messages.
    fn describe(&self) -> String {
        let mut words = vec![self.program.to_string_lossy().into_owned()];
        words.extend(self.args.iter().map(|a| a.to_string_lossy().into_owned()));
        format!("`{}`", words.join(" "))
    }

    /// Starts the process and waits for its first stdout line, which must be
    /// `listening on ADDR`. An error (the process could not start, ended,
    /// printed something else, or nothing before the timeout) says which,
    /// with the end of the captured stderr; the process is killed then.
    pub fn start(self) -> io::Result<Running> {
        let what = self.describe();
        let mut cmd = match self.cpu {
            Some(cpu) if on_path("taskset") => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpu.to_string()).arg(&self.program);
                c
            }
            _ => Command::new(&self.program),
        };
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(if self.stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(match self.stderr {
                Stderr::Capture => Stdio::piped(),
                Stderr::Inherit => Stdio::inherit(),
                Stderr::Null => Stdio::null(),
            });
        no_inherited_descriptors(&mut cmd);
        if let Some(files) = self.rlimit_nofile {
            let limit = libc::rlimit { rlim_cur: files as libc::rlim_t, rlim_max: files as libc::rlim_t };
            // SAFETY: the closure runs in the child between fork and exec,
            // where only async-signal-safe calls are allowed: setrlimit(2) is
            // one, and `last_os_error` only reads errno.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                        Ok(())
                    } else {
                        Err(io::Error::last_os_error())
                    }
                });
            }
        }
        let mut child = cmd.spawn().map_err(|e| io::Error::new(e.kind(), format!("cannot start {what}: {e}")))?;
        let pid = child.id();
        let stdout = child.stdout.take().expect("stdout is piped");
        let stdin = child.stdin.take();

        let captured = child.stderr.take().map(|mut stderr| {
            let log = Captured::default();
            let sink = log.clone();
            thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                while let Ok(n @ 1..) = stderr.read(&mut chunk) {
                    sink.bytes.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(&chunk[..n]);
                }
                sink.done.store(true, Ordering::Release);
            });
            log
        });

        let (first_tx, first_rx) = mpsc::channel();
        let (lines_tx, lines_rx) = mpsc::channel();
        let keep = self.keep_stdout;
        thread::spawn(move || {
            let mut out = BufReader::new(stdout);
            let mut first = String::new();
            let read = out.read_line(&mut first).map(|_| first);
            let _ = first_tx.send(read);
            if keep {
                for line in out.lines() {
                    let Ok(line) = line else { return };
                    if lines_tx.send(line).is_err() {
                        return;
                    }
                }
            } else {
                let _ = io::copy(&mut out, &mut io::sink());
            }
        });

        let mut running = Running {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            pid,
            what,
            state: Mutex::new(State { child, status: None, stdin }),
            captured,
            lines: keep.then(|| Mutex::new(lines_rx)),
        };
        let line = match first_rx.recv_timeout(self.timeout) {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => {
                return Err(io::Error::new(e.kind(), format!("reading the stdout of {}: {e}", running.what)));
            }
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{} printed no `{LISTENING}ADDR` line within {:?}{}",
                        running.what,
                        self.timeout,
                        running.stderr_note()
                    ),
                ));
            }
        };
        if line.is_empty() {
            // End of file: the process is ending. Its status and all of its
            // stderr make the best error message.
            let status = running.wait_exit(Duration::from_secs(2)).map_or_else(|e| e.to_string(), |s| s.to_string());
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{} ended its stdout without a `{LISTENING}ADDR` line ({status}){}",
                    running.what,
                    running.stderr_note()
                ),
            ));
        }
        match parse_listening(&line) {
            Some(addr) => {
                running.addr = addr;
                Ok(running)
            }
            None => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the first stdout line of {} must be exactly `{LISTENING}ADDR`, got {line:?}{}",
                    running.what,
                    running.stderr_note()
                ),
            )),
        }
    }
}

// ANCHOR: no_inherited
/// Makes the child start with no descriptor but stdin, stdout and stderr.
///
/// Rust opens its own descriptors close-on-exec, but a process may have
/// inherited some that are not (`cargo run` passes its jobserver pipes on,
/// `flock FILE cmd` its lock), and a child started from it would inherit
/// them again: a server would then hold that many connections fewer than a
/// clean process, and a measured "max" would not be its real ceiling. So
/// between fork and exec every descriptor from 3 up is marked close-on-exec
/// (`close_range(2)` with `CLOSE_RANGE_CLOEXEC`; on a kernel without it, one
/// `fcntl` per possible descriptor). They close at the exec — which keeps
/// the pipe through which the standard library reports a failed exec.
pub fn no_inherited_descriptors(cmd: &mut Command) {
    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe calls are allowed: close_range(2), getrlimit(2) and
    // fcntl(2) are system calls, and nothing here allocates.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(cmd, || {
            if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) == 0 {
                return Ok(());
            }
            let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            let top = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 { limit.rlim_cur.min(1 << 20) } else { 1 << 16 };
            for fd in 3..top as libc::c_int {
                // Fails with EBADF where nothing is open: nothing to do.
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            }
            Ok(())
        });
    }
}
// ANCHOR_END: no_inherited

/// `listening on ADDR\n` → ADDR.
pub fn parse_listening(line: &str) -> Option<SocketAddr> {
    line.strip_suffix('\n')?.strip_prefix(LISTENING)?.parse().ok()
}

/// Stderr read so far, and whether the reader met end of file.
#[derive(Debug, Clone, Default)]
struct Captured {
    bytes: Arc<Mutex<Vec<u8>>>,
    done: Arc<AtomicBool>,
}

#[derive(Debug)]
struct State {
    child: Child,
    /// Set once the child is reaped: no signal may go to its pid after that.
    status: Option<ExitStatus>,
    stdin: Option<ChildStdin>,
}

impl State {
    fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self.child.try_wait()?;
        }
        Ok(self.status)
    }
}

/// A process started by [`Launch`], after its `listening on ADDR` line: its
/// address, its pid, signals, its exit status. Killed (and reaped) when
/// dropped if it is still running; if that drop happens while a test panics
/// and stderr was captured, the end of the server's stderr (its logs) is
/// printed with the failure.
///
/// Every method takes `&self`, so that a harness can share one across
/// threads (the state is behind a lock).
#[derive(Debug)]
pub struct Running {
    addr: SocketAddr,
    pid: u32,
    what: String,
    state: Mutex<State>,
    captured: Option<Captured>,
    lines: Option<Mutex<mpsc::Receiver<String>>>,
}

impl Running {
    /// Where it listens: the address of its first line.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends `signal` (`libc::SIGTERM`, ...). An error if the process has
    /// already been reaped (its pid may belong to another process by now).
    pub fn signal(&self, signal: i32) -> io::Result<()> {
        let mut state = self.state();
        if let Some(status) = state.try_wait()? {
            return Err(io::Error::other(format!("{} (pid {}) has already exited ({status})", self.what, self.pid)));
        }
        // SAFETY: kill(2) on our own child, not yet reaped (checked under the
        // lock that reaping takes); no memory is involved.
        if unsafe { libc::kill(self.pid as libc::pid_t, signal) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// The exit status if the process has exited (reaping it), `None` while
    /// it runs.
    pub fn exit_status(&self) -> io::Result<Option<ExitStatus>> {
        self.state().try_wait()
    }

    /// Waits at most `timeout` for the process to exit; a `TimedOut` error
    /// if it does not. Once it has, the captured stderr is complete.
    pub fn wait_exit(&self, timeout: Duration) -> io::Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit_status()? {
                self.settle_stderr(Duration::from_secs(2));
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{} (pid {}) did not exit within {timeout:?}", self.what, self.pid),
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal`, then [`Running::wait_exit`].
    pub fn stop(&self, signal: i32, timeout: Duration) -> io::Result<ExitStatus> {
        self.signal(signal)?;
        self.wait_exit(timeout)
    }

    /// Kills the process (SIGKILL) unless it has exited, and reaps it.
    pub fn kill(&self) -> io::Result<ExitStatus> {
        let status = {
            let mut state = self.state();
            match state.try_wait()? {
                Some(status) => status,
                None => {
                    state.child.kill()?;
                    let status = state.child.wait()?;
                    state.status = Some(status);
                    status
                }
            }
        };
        self.settle_stderr(Duration::from_secs(2));
        Ok(status)
    }

    /// Closes the child's stdin (see [`Launch::stdin_piped`]).
    pub fn close_stdin(&self) {
        drop(self.state().stdin.take());
    }

    /// The next stdout line after the first (see [`Launch::keep_stdout`]),
    /// or `None` if none comes within `timeout` or stdout has ended.
    pub fn next_line(&self, timeout: Duration) -> Option<String> {
        let lines = self.lines.as_ref()?.lock().unwrap_or_else(|e| e.into_inner());
        lines.recv_timeout(timeout).ok()
    }

    /// The captured stderr so far (see [`Stderr::Capture`]), lossily decoded;
    /// empty if it was not captured. Complete once the process has exited.
    pub fn stderr_text(&self) -> String {
        match &self.captured {
            Some(c) => String::from_utf8_lossy(&c.bytes.lock().unwrap_or_else(|e| e.into_inner())).into_owned(),
            None => String::new(),
        }
    }

    /// Waits (at most `timeout`) for the stderr reader to meet end of file.
    fn settle_stderr(&self, timeout: Duration) {
        let Some(c) = &self.captured else { return };
        let deadline = Instant::now() + timeout;
        while !c.done.load(Ordering::Acquire) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// The end of the captured stderr, for an error message.
    fn stderr_note(&self) -> String {
        if self.captured.is_none() {
            return String::new();
        }
        let text = self.stderr_text();
        if text.trim().is_empty() {
            return "; its stderr is empty".into();
        }
        format!("; the end of its stderr:\n{}", tail(&text, STDERR_TAIL))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.kill();
        if thread::panicking() && self.captured.is_some() {
            let text = self.stderr_text();
            let tail = tail(&text, STDERR_TAIL);
            eprintln!(
                "---- {} {} (pid {}) stderr, last {} bytes ----\n{tail}",
                self.what,
                self.addr,
                self.pid,
                tail.len()
            );
        }
    }
}

/// The last `max` bytes of `text` (or a little less, at a character boundary).
fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

/// The workspace's built `rtlab` binary, for code outside the `rtlab` package
/// (where cargo's `CARGO_BIN_EXE_rtlab` does not exist): `$RTLAB_BIN` if set,
/// otherwise `rtlab` in the cargo profile directory this executable was built
/// into (`target/<profile>/{deps,examples}/NAME` → `target/<profile>/rtlab`).
/// An error that says how to build it if it is not there.
pub fn rtlab_bin() -> io::Result<PathBuf> {
    rtlab_bin_for(std::env::var_os("RTLAB_BIN"), &std::env::current_exe()?)
}

fn rtlab_bin_for(var: Option<OsString>, exe: &Path) -> io::Result<PathBuf> {
    if let Some(path) = var {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(io::Error::new(io::ErrorKind::NotFound, format!("RTLAB_BIN={} is not a file", path.display())))
        };
    }
    let dir = exe.parent().ok_or_else(|| io::Error::other(format!("{} has no directory", exe.display())))?;
    let profile_dir = match dir.file_name().and_then(OsStr::to_str) {
        Some("deps" | "examples") => dir.parent().unwrap_or(dir),
        _ => dir,
    };
    let path = profile_dir.join("rtlab");
    if path.is_file() {
        return Ok(path);
    }
    let profile = profile_dir.file_name().map_or("release".into(), |p| p.to_string_lossy().into_owned());
    let build = if profile == "debug" { "cargo build -p rtlab" } else { "cargo build --release -p rtlab" };
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} does not exist: run `{build}` first (or set RTLAB_BIN=/path/to/rtlab)", path.display()),
    ))
}

/// The child's side of [`Launch`]: prints `listening on ADDR` (the
/// listener's address) as the first stdout line, and flushes it.
pub fn announce(listener: &TcpListener) {
    let addr = listener.local_addr().expect("the listener's address");
    let mut out = io::stdout().lock();
    writeln!(out, "{LISTENING}{addr}").and_then(|()| out.flush()).expect("stdout");
}

/// Runs `stop` on a thread of its own once stdin reaches end of file: when
/// the parent calls [`Running::close_stdin`], drops its [`Running`] or dies.
pub fn on_stdin_eof(stop: impl FnOnce() + Send + 'static) {
    thread::spawn(move || {
        let _ = io::stdin().read_to_end(&mut Vec::new());
        stop();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Launch {
        Launch::new("sh").args(["-c", script])
    }

    #[test]
    fn parses_only_the_exact_line() {
        assert_eq!(parse_listening("listening on 127.0.0.1:8080\n"), Some(SocketAddr::from(([127, 0, 0, 1], 8080))));
        assert_eq!(parse_listening("listening on [::1]:80\n").map(|a| a.port()), Some(80));
        assert_eq!(parse_listening("listening on 127.0.0.1:8080"), None, "a complete line");
        assert_eq!(parse_listening("listening on 127.0.0.1:8080\r\n"), None);
        assert_eq!(parse_listening(" listening on 127.0.0.1:8080\n"), None);
        assert_eq!(parse_listening("listening on localhost:8080\n"), None);
    }

    #[test]
    fn starts_reads_the_address_and_stops_with_a_signal() {
        let p = sh("echo 'listening on 127.0.0.1:4321'; exec sleep 30").start().expect("start");
        assert_eq!(p.addr(), SocketAddr::from(([127, 0, 0, 1], 4321)));
        assert_eq!(p.exit_status().expect("try_wait"), None);
        let status = p.stop(libc::SIGTERM, Duration::from_secs(5)).expect("stop");
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGTERM));
        assert!(p.signal(libc::SIGTERM).is_err(), "no signal after the process was reaped");
    }

    #[test]
    fn a_wrong_first_line_is_an_error_with_stderr() {
        let e = sh("echo 'hello'; echo 'oops' >&2; exec sleep 30").start().expect_err("not a listening line");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("\"hello\\n\""), "{e}");
    }

    #[test]
    fn an_early_exit_is_an_error_with_status_and_stderr() {
        let e = sh("echo 'no such runtime' >&2; exit 2").start().expect_err("exited");
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        let text = e.to_string();
        assert!(text.contains("exit status: 2") && text.contains("no such runtime"), "{text}");
    }

    #[test]
    fn silence_times_out() {
        let started = Instant::now();
        let e =
            sh("echo 'starting' >&2; exec sleep 30").timeout(Duration::from_millis(300)).start().expect_err("silent");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(e.to_string().contains("starting"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn env_rlimit_stdin_and_later_lines() {
        let p = sh("echo 'listening on 127.0.0.1:1'; echo \"$GREETING\"; ulimit -n; cat >/dev/null; echo bye; exit 3")
            .env("GREETING", "hi")
            .rlimit_nofile(40)
            .stdin_piped()
            .keep_stdout()
            .start()
            .expect("start");
        let second = Duration::from_secs(5);
        assert_eq!(p.next_line(second).as_deref(), Some("hi"));
        assert_eq!(p.next_line(second).as_deref(), Some("40"));
        assert_eq!(p.next_line(Duration::from_millis(100)), None, "waits for stdin to close");
        p.close_stdin();
        assert_eq!(p.next_line(second).as_deref(), Some("bye"));
        assert_eq!(p.wait_exit(second).expect("exit").code(), Some(3));
    }

    #[test]
    fn kill_on_drop_and_stderr_after_exit() {
        let p = sh("echo 'to stderr' >&2; echo 'listening on 127.0.0.1:1'; exec sleep 30").start().expect("start");
        let pid = p.pid();
        let status = p.kill().expect("kill");
        assert!(!status.success());
        assert_eq!(p.stderr_text(), "to stderr\n");
        drop(p);
        let p = sh("echo 'listening on 127.0.0.1:1'; exec sleep 30").start().expect("start");
        let pid2 = p.pid();
        drop(p);
        for pid in [pid, pid2] {
            // Reaped: no such process (or, rarely, a new one with its pid).
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            assert!(!stat.contains("(sleep)"), "pid {pid} still there: {stat}");
        }
    }

    #[test]
    fn finds_rtlab_next_to_the_profile_directory() {
        let dir = std::env::temp_dir().join(format!("rtlab-testkit-bin-{}", std::process::id()));
        let profile = dir.join("debug");
        std::fs::create_dir_all(profile.join("examples")).expect("mkdir");
        let missing = rtlab_bin_for(None, &profile.join("examples/stack_depth")).expect_err("not built");
        assert!(missing.to_string().contains("cargo build -p rtlab"), "{missing}");
        std::fs::write(profile.join("rtlab"), b"").expect("write");
        for exe in ["examples/stack_depth", "deps/emfile-0123", "rtlab"] {
            assert_eq!(rtlab_bin_for(None, &profile.join(exe)).expect("found"), profile.join("rtlab"), "{exe}");
        }
        let other = dir.join("elsewhere");
        std::fs::write(&other, b"").expect("write");
        assert_eq!(rtlab_bin_for(Some(other.clone().into()), &profile.join("rtlab")).expect("RTLAB_BIN"), other);
        assert!(rtlab_bin_for(Some(dir.join("nope").into()), &profile.join("rtlab")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
