//! # rtlab-bench: the load generator and its scenarios
//!
//! Every measurement starts a **fresh server process** (`rtlab serve`): a
//! server that already served a run keeps its allocator's high-water mark and
//! would hide growth. Clients live in **worker processes** (`rtlab
//! bench-worker`), never in the server's process, each with its own source
//! address in 127.0.0.0/8 so that neither the per-process open-files limit
//! nor the ephemeral port range caps a run. Where the machine has two or more
//! cores, the server is pinned to one and the clients to another.
//!
//! ## Map
//!
//! | module | what it does |
//! |---|---|
//! | [`idle`] | N idle connections: server memory per connection, kernel share apart, release after close |
//! | [`fanout`] | M subscribers, K messages: publish-to-receive latency per pair and for the last subscriber |
//! | [`server`] | starting, sampling and stopping a server process |
//! | [`workers`] / [`worker`] | the orchestrator's side and the worker's side of the client processes |
//! | [`client`] | opening connections, publishing, reading with kernel receive timestamps |
//! | [`procfs`] | memory, CPU, mappings and kernel socket memory from `/proc` |
//!
//! Every scenario **verifies before it measures**: a fan-out run in which any
//! subscriber missed, duplicated or reordered a message reports a failure and
//! no latency numbers.

pub mod client;
pub mod fanout;
pub mod idle;
pub mod procfs;
pub mod server;
pub mod worker;
pub mod workers;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Options every scenario shares.
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// The runtime lab to measure.
    #[arg(long, default_value = "tokio")]
    pub runtime: String,
    /// Extra `rtlab serve` options for the server under test, e.g.
    /// `--server-arg=--policy=drop-oldest` (repeatable).
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    pub server_args: Vec<String>,
    /// Write the result as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

impl Common {
    /// The rtlab binary that serves and runs workers: this one.
    pub fn exe(&self) -> std::io::Result<PathBuf> {
        std::env::current_exe()
    }
}

/// The scenarios, as `rtlab bench <scenario>`.
#[derive(Debug, clap::Subcommand)]
pub enum Scenario {
    /// Idle connections: the server's memory per connection.
    Idle(idle::IdleArgs),
    /// Fan-out: publish-to-receive latency across many subscribers.
    Fanout(fanout::FanoutArgs),
}

/// Runs a scenario, prints its summary line, and writes its JSON if asked.
/// Returns false if the run failed verification.
pub fn run(scenario: &Scenario) -> std::io::Result<bool> {
    let (common, summary, ok, json) = match scenario {
        Scenario::Idle(args) => {
            let r = idle::run(args)?;
            let ok = r.opened == r.requested && r.sockets_released;
            (&args.common, r.summary(), ok, serde_json::to_value(&r))
        }
        Scenario::Fanout(args) => {
            let r = fanout::run(args)?;
            (&args.common, r.summary(), r.verified, serde_json::to_value(&r))
        }
    };
    println!("{summary}");
    if let Some(path) = &common.json {
        let json = json.map_err(std::io::Error::other)?;
        std::fs::write(path, serde_json::to_vec_pretty(&json).map_err(std::io::Error::other)?)?;
    }
    Ok(ok)
}

/// Where the server and the clients run.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Placement {
    /// Core the server is pinned to.
    pub server: Option<usize>,
    /// Core the client workers are pinned to.
    pub clients: Option<usize>,
}

impl Placement {
    /// Server on core 0 and clients on core 1 when there are two cores and
    /// `taskset` exists; no pinning otherwise.
    pub fn detect() -> Placement {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let taskset = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("taskset").is_file()));
        if cores >= 2 && taskset {
            Placement { server: Some(0), clients: Some(1) }
        } else {
            Placement::default()
        }
    }
}

/// Percentiles of a sample (nearest-rank).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: usize,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

impl Percentiles {
    /// Sorts `values` and takes nearest-rank percentiles.
    pub fn of(values: &mut [u64]) -> Percentiles {
        values.sort_unstable();
        let rank = |p: f64| {
            if values.is_empty() {
                0
            } else {
                let i = ((p * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1;
                values[i]
            }
        };
        Percentiles {
            count: values.len(),
            p50: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
            max: values.last().copied().unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<u64> = (1..=100).rev().collect();
        let p = Percentiles::of(&mut v);
        assert_eq!((p.count, p.p50, p.p90, p.p99, p.max), (100, 50, 90, 99, 100));
        let p = Percentiles::of(&mut [7]);
        assert_eq!((p.p50, p.p99, p.max), (7, 7, 7));
        assert_eq!(Percentiles::of(&mut []).count, 0);
    }
}
