//! One run of a scenario against a fresh server: the skeleton every
//! scenario shares, written once.
//!
//! ```text
//! look at the machine (steal, load, placement)
//!   → start a fresh server
//!     → the scenario's own part: open the clients, wait until the server
//!       counts them, publish, collect the workers' reports, check them
//!   → stop the server (did it die? did it exit cleanly?)
//! → look at the machine again: the run's conditions
//! → the verdict
//! ```
//!
//! [`Session::run`] does the outer steps and calls the scenario's part with
//! a [`Session`], whose helpers cover the steps most scenarios take (a
//! worker plan pinned where the clients go, opening every connection or
//! stopping early, waiting for the server's count). The scenario's part
//! returns what it measured and its checks' [`Verdict`], or stops early
//! ([`Stop`]); either way the server is stopped and the conditions recorded
//! the same way for every scenario.

use std::path::PathBuf;
use std::time::Duration;

use crate::axes::Transport;
use crate::client::Publisher;
use crate::outcome::{RunInfo, Verdict};
use crate::server::ServerProcess;
use crate::workers::{Plan, Workers};
use crate::{Common, EnvProbe, Placement};

/// Why a scenario's part stopped before the end.
#[derive(Debug)]
pub enum Stop {
    /// A check failed before anything was measured (the clients could not
    /// open their connections, the server never counted them): the run
    /// ends with this verdict and no numbers.
    Early(Verdict),
    /// The run could not go on (a worker or the publisher could not start):
    /// `rtlab bench` reports the error instead of a result.
    Io(std::io::Error),
}

impl From<std::io::Error> for Stop {
    fn from(e: std::io::Error) -> Stop {
        Stop::Io(e)
    }
}

/// A run in progress: the server under test and where things run. See the
/// module documentation for the skeleton.
#[derive(Debug)]
pub struct Session {
    probe: EnvProbe,
    exe: PathBuf,
    transport: Transport,
    /// The server under test, fresh for this run.
    pub server: ServerProcess,
}

impl Session {
    /// Runs `part` against a fresh server of `common.runtime`, started with
    /// `server_args` and then the user's `--server-arg`s, and returns what
    /// every result shares and what `part` measured (the default if it
    /// stopped early).
    ///
    /// The verdict is `part`'s, unless the server process died during the
    /// run: then it is a failure, whatever the checks said.
    pub fn run<M: Default>(
        common: &Common,
        transport: Transport,
        server_args: &[String],
        part: impl FnOnce(&Session) -> Result<(M, Verdict), Stop>,
    ) -> std::io::Result<(RunInfo, M)> {
        let probe = EnvProbe::begin(common.placement);
        let exe = common.exe()?;
        let args: Vec<String> = server_args.iter().chain(&common.server_args).cloned().collect();
        let server = ServerProcess::start(&exe, &common.runtime, &args, probe.placement().server)?;
        let session = Session { probe, exe, transport, server };
        let (measured, verdict) = match part(&session) {
            Ok(done) => done,
            Err(Stop::Early(verdict)) => (M::default(), verdict),
            Err(Stop::Io(e)) => return Err(e),
        };
        let Session { probe, server, .. } = session;
        let died = server.died();
        let clean_exit = server.stop(Duration::from_secs(20));
        let verdict = if died { verdict.server_died() } else { verdict };
        let info = RunInfo { runtime: common.runtime.clone(), transport, verdict, clean_exit, env: probe.end() };
        Ok((info, measured))
    }

    /// Where the server and the clients run.
    pub fn placement(&self) -> Placement {
        self.probe.placement()
    }

    /// A worker plan for `connections` of the run's transport to `topic`,
    /// pinned to the clients' core.
    pub fn plan<'a>(&'a self, topic: &'a str, connections: usize) -> Plan<'a> {
        let mut plan = Plan::new(&self.exe, self.server.addr, self.transport, topic, connections);
        plan.cpu = self.placement().clients;
        plan
    }

    /// Starts the workers of `plan` and stops the run unless every
    /// connection opened (`what`: "subscribers", "clients"). When the
    /// clients' own side ran out (descriptors, ports), that is an
    /// environment problem, not the lab's.
    pub fn open(&self, plan: &Plan<'_>, what: &str) -> Result<Workers, Stop> {
        let (workers, ready) = Workers::start(plan)?;
        if ready.opened == plan.connections {
            return Ok(workers);
        }
        let why = format!("opened {}/{} {what}: {}", ready.opened, plan.connections, ready.error.unwrap_or_default());
        Err(Stop::Early(if ready.client_limit {
            Verdict::Environment(format!("the clients, not the server, ran out: {why}"))
        } else {
            Verdict::Failed(why)
        }))
    }

    /// Waits (up to 30 s) until the server's `/stats` counts `n` open
    /// connections of the run's transport; stops the run if it never does.
    pub fn await_count(&self, n: usize, what: &str) -> Result<(), Stop> {
        let key = self.transport.stats_key();
        if self.server.wait_stats(Duration::from_secs(30), |s| s["connections"][key].as_u64() == Some(n as u64)) {
            Ok(())
        } else {
            Err(Stop::Early(Verdict::Failed(format!("the server never counted every {what}"))))
        }
    }

    /// A publisher on `topic`, on its own keep-alive connection.
    pub fn publisher(&self, topic: &str) -> std::io::Result<Publisher> {
        Publisher::connect(self.server.addr, topic)
    }
}
