//! The harness's servers and workers start with no descriptor inherited
//! from the process that starts them: a descriptor the orchestrator holds
//! without close-on-exec (as `cargo run`'s jobserver pipes or `flock`'s lock
//! are) must not reach them, or a server would hold that many connections
//! fewer than a clean process and the idle scenario's "max" would be off.

use std::os::fd::AsRawFd;
use std::time::Duration;

use rtlab_bench::client::Transport;
use rtlab_bench::server::ServerProcess;
use rtlab_bench::workers::{Plan, Workers};

/// What each of `pid`'s descriptors refers to, by number.
fn descriptors(pid: u32) -> Vec<(i32, String)> {
    let mut fds: Vec<(i32, String)> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc/<pid>/fd")
        .filter_map(|e| {
            let e = e.ok()?;
            let fd = e.file_name().to_str()?.parse().ok()?;
            Some((fd, std::fs::read_link(e.path()).ok()?.to_string_lossy().into_owned()))
        })
        .collect();
    fds.sort();
    fds
}

#[test]
fn servers_and_workers_inherit_no_descriptor() {
    // A descriptor without close-on-exec, as an inherited one would be.
    let path = std::env::temp_dir().join(format!("rtlab-inherited-{}", std::process::id()));
    let file = std::fs::File::create(&path).expect("temp file");
    // SAFETY: dup(2) of a descriptor this test owns; the copy is closed below.
    let leaky = unsafe { libc::dup(file.as_raw_fd()) };
    assert!(leaky > 2, "dup: {}", std::io::Error::last_os_error());
    // SAFETY: F_GETFD on the descriptor just made.
    assert_eq!(unsafe { libc::fcntl(leaky, libc::F_GETFD) } & libc::FD_CLOEXEC, 0, "dup gives no close-on-exec");
    let target = path.to_string_lossy().into_owned();

    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_rtlab"));
    for runtime in ["tokio", "threads"] {
        let server = ServerProcess::start(exe, runtime, &[], None).expect("server starts");
        let fds = descriptors(server.pid());
        assert!(fds.iter().all(|(_, t)| *t != target), "{runtime}: the server inherited the test's descriptor: {fds:?}");
        // Beyond stdin, stdout and stderr, only what a server opens itself:
        // its listener and connections, epoll, eventfds, signal pipes.
        let own = |t: &str| t.starts_with("socket:") || t.starts_with("anon_inode:") || t.starts_with("pipe:");
        assert!(fds.iter().filter(|(fd, _)| *fd > 2).all(|(_, t)| own(t)), "{runtime}: a descriptor the server did not open: {fds:?}");

        let plan = Plan::new(exe, server.addr, Transport::Sse, "fds", 3);
        let (workers, ready) = Workers::start(&plan).expect("workers start");
        assert_eq!(ready.opened, 3);
        for pid in workers.pids() {
            let fds = descriptors(pid);
            assert!(fds.iter().all(|(_, t)| *t != target), "a worker inherited the test's descriptor: {fds:?}");
        }
        workers.close();
        assert!(server.stop(Duration::from_secs(10)), "{runtime}: clean exit");
    }
    // SAFETY: the test's own duplicate, closed once.
    unsafe { libc::close(leaky) };
    let _ = std::fs::remove_file(&path);
}
