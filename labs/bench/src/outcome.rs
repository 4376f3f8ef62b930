//! What a run reports, whatever the scenario: its [`Verdict`], the lab,
//! transport, server exit and conditions every result shares ([`RunInfo`]),
//! and a run's complete result, [`Run`]: that, plus the scenario's own
//! result ([`Measured`]). The matrix and `rtlab bench <scenario>` see any
//! scenario's run through the [`Outcome`] trait, implemented once.

use serde::{Deserialize, Serialize};

use crate::RunEnv;
use crate::axes::Transport;

/// How a run ended, judged. Every scenario **verifies before it measures**:
/// only a [`Verdict::Verified`] run has numbers.
///
/// Two ways not to be verified are told apart, because they mean different
/// things for the lab: [`Verdict::Failed`] is the lab's fault (a message
/// lost, duplicated or reordered, a connection not counted or not released,
/// the server died); [`Verdict::Environment`] is not (the client side ran
/// out of descriptors or ports first, or the run could not be timed as the
/// scenario needs), so the run says nothing about the lab either way.
///
/// In the results document a verdict is the two fields every run has
/// always had, `verified` and `failure` (the reason); an environment problem
/// is a failure there, with its reason, since neither has numbers. (Read
/// back, it is a [`Verdict::Failed`]: the document's format predates the
/// distinction.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "VerdictFields", from = "VerdictFields")]
pub enum Verdict {
    /// Every check passed: the run's numbers stand.
    Verified,
    /// The lab under test failed a check; why.
    Failed(String),
    /// The run could not judge the lab; why.
    Environment(String),
}

impl Verdict {
    /// [`Verdict::Verified`] if `check` passed, else [`Verdict::Failed`].
    pub fn of(check: Result<(), String>) -> Verdict {
        check.map_or_else(Verdict::Failed, |()| Verdict::Verified)
    }

    /// Every check passed.
    pub fn is_verified(&self) -> bool {
        *self == Verdict::Verified
    }

    /// Why the run is not verified (either kind).
    pub fn reason(&self) -> Option<&str> {
        match self {
            Verdict::Verified => None,
            Verdict::Failed(why) | Verdict::Environment(why) => Some(why),
        }
    }

    /// The verdict of a run whose server process died: a failure, whatever
    /// the checks said, and if they failed too, why.
    pub fn server_died(self) -> Verdict {
        const DIED: &str = "the server process died during the run (its stderr is above)";
        match self.reason() {
            Some(why) => Verdict::Failed(format!("{DIED}: {why}")),
            None => Verdict::Failed(DIED.to_owned()),
        }
    }
}

/// A [`Verdict`] as the results document stores it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct VerdictFields {
    verified: bool,
    failure: Option<String>,
}

impl From<Verdict> for VerdictFields {
    fn from(v: Verdict) -> VerdictFields {
        VerdictFields { verified: v.is_verified(), failure: v.reason().map(str::to_owned) }
    }
}

impl From<VerdictFields> for Verdict {
    fn from(f: VerdictFields) -> Verdict {
        match (f.verified, f.failure) {
            (true, _) => Verdict::Verified,
            (false, why) => Verdict::Failed(why.unwrap_or_else(|| "not verified".to_owned())),
        }
    }
}

/// What every run reports besides its scenario's own parameters and
/// numbers: the lab and transport, the verdict, how the server exited, and
/// the conditions of the run. One struct, flattened into each run's JSON
/// (the keys are the ones each scenario's result always had), so that what
/// every run offers is written once, in [`Run`]'s [`Outcome`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunInfo {
    pub runtime: String,
    pub transport: Transport,
    /// Verified, or why not (`verified`, `failure` in the JSON).
    #[serde(flatten)]
    pub verdict: Verdict,
    /// The server exited 0 on SIGTERM at the end of the run.
    pub clean_exit: bool,
    pub env: RunEnv,
}

/// One run's complete result: what every run reports ([`RunInfo`]) and what
/// its scenario was asked and measured (`T`: [`crate::idle::IdleResult`],
/// [`crate::fanout::FanoutResult`], ...). Both are flattened into one JSON
/// object, the one each scenario always wrote.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Run<T> {
    /// Lab, transport, verdict, server exit, conditions.
    #[serde(flatten)]
    pub info: RunInfo,
    /// The scenario's own parameters and numbers.
    #[serde(flatten)]
    pub result: T,
}

/// What a scenario's own result offers: the few things that differ between
/// scenarios. Everything else a run offers is written once, for any
/// scenario, in the [`Outcome`] of [`Run`].
pub trait Measured: std::fmt::Debug + Serialize {
    /// The scenario's word at the start of its summary line.
    const SCENARIO: &'static str;
    /// What the run was asked to do, for the summary line: "1000 subs × 50
    /// msgs of 64 B every 20 ms".
    fn setup(&self) -> String;
    /// The numbers of a verified run, for the summary line.
    fn numbers(&self) -> String;
    /// The named numbers of a verified run, for tables, plots and spread.
    fn metrics(&self) -> Vec<(&'static str, f64)>;
}

/// What any scenario's result offers the matrix and `rtlab bench
/// <scenario>` (object safe, so that the matrix can hold any scenario's
/// result). Its one implementation is [`Run`]'s.
pub trait Outcome: std::fmt::Debug {
    /// Delivery (or, for idle, the connection counts) verified: only then
    /// are [`Outcome::metrics`] reported.
    fn verified(&self) -> bool;
    /// Why the run is not verified.
    fn failure(&self) -> Option<String>;
    /// The named numbers of a verified run, for tables, plots and spread.
    fn metrics(&self) -> Vec<(&'static str, f64)>;
    /// One line for a terminal: scenario, lab, transport, setup, then the
    /// numbers or why there are none.
    fn summary(&self) -> String;
    /// The conditions it ran under.
    fn env(&self) -> &RunEnv;
    /// The whole result, as JSON.
    fn to_json(&self) -> serde_json::Value;
}

impl<T: Measured> Outcome for Run<T> {
    fn verified(&self) -> bool {
        self.info.verdict.is_verified()
    }

    fn failure(&self) -> Option<String> {
        self.info.verdict.reason().map(str::to_owned)
    }

    fn metrics(&self) -> Vec<(&'static str, f64)> {
        self.result.metrics()
    }

    fn summary(&self) -> String {
        let info = &self.info;
        let outcome = match &info.verdict {
            Verdict::Verified => self.result.numbers(),
            Verdict::Failed(why) => format!("FAILED: {why}"),
            Verdict::Environment(why) => format!("NOT MEASURED (not the lab's fault): {why}"),
        };
        format!("{} {:<8} {:<10} {}: {outcome}", T::SCENARIO, info.runtime, info.transport, self.result.setup())
    }

    fn env(&self) -> &RunEnv {
        &self.info.env
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verdict_is_stored_as_verified_and_failure() {
        let info = |verdict| RunInfo {
            runtime: "tokio".into(),
            transport: Transport::Ws,
            verdict,
            clean_exit: true,
            env: RunEnv::default(),
        };
        let ok = serde_json::to_value(info(Verdict::Verified)).unwrap();
        assert_eq!((ok["verified"].clone(), ok["failure"].clone()), (true.into(), serde_json::Value::Null));
        assert_eq!(ok["transport"], "ws");
        let env = serde_json::to_value(info(Verdict::Environment("the clients ran out".into()))).unwrap();
        assert_eq!((env["verified"].clone(), env["failure"].clone()), (false.into(), "the clients ran out".into()));
        let back: RunInfo = serde_json::from_value(env).unwrap();
        assert_eq!(back.verdict, Verdict::Failed("the clients ran out".into()));
        assert_eq!(
            Verdict::Failed("lost one".into()).server_died().reason(),
            Some("the server process died during the run (its stderr is above): lost one")
        );
        assert_eq!(Verdict::Verified.server_died().reason(), Some("the server process died during the run (its stderr is above)"));
    }
}
