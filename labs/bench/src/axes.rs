//! The axes of the matrix, typed: which scenario, which transport, which
//! size or variant (a cell's [`Label`]), which outbox policy, which scale.
//!
//! The harness used to carry these as strings: `"long-poll"` compared in
//! twenty places, the policies sliced out of a list by position
//! (`&POLICIES[1..]`: "every policy but the first, which is not one"). A typo
//! in a string compiles and matches nothing; an enum does not compile, and
//! `match` says which cases a new variant must handle.
//!
//! The results document still stores each as the string its `Display`
//! prints (`"long-poll"`, `"drop-oldest"`, `"max"`, `"10000"`) and reads it
//! back with `FromStr`, so its JSON is what it was when these were strings:
//! a committed run still loads.
//!
//! Runtimes are not an axis here: the labs are discovered when a run starts
//! (`rtlab runtimes`, `rtlab runtimes --baselines`), not listed in this
//! crate, so a runtime stays a string.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Declares a fieldless enum whose variants each have one name: the name is
/// its command-line value (clap), its JSON string (serde), its `Display`,
/// and what `FromStr` accepts. `ALL` lists the variants in declaration
/// order, which is also their order (`Ord`) in every table and plot.
macro_rules! named {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum, Serialize, Deserialize)]
        pub enum $name {
            $( $(#[$vmeta])* #[value(name = $text)] #[serde(rename = $text)] $variant, )+
        }

        impl $name {
            /// Every variant, in order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The name used on the command line and in results.
            pub fn name(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<$name, String> {
                $name::ALL.iter().copied().find(|v| v.name() == s).ok_or_else(|| {
                    let names: Vec<&str> = $name::ALL.iter().map(|v| v.name()).collect();
                    format!("'{s}' is not one of {}", names.join(", "))
                })
            }
        }
    };
}

named! {
    /// A transport: how a client gets its updates. The order is the order
    /// of every table and plot.
    pub enum Transport {
        /// Server-Sent Events.
        Sse = "sse",
        /// WebSocket (`/ws`).
        Ws = "ws",
        /// A held long poll (`/poll?wait=60`), asked again as soon as it is answered.
        LongPoll = "long-poll",
        /// Short polling: `GET /poll?after=N` every few seconds on a keep-alive
        /// connection (the polling-cost scenario only; nothing is held open).
        ShortPoll = "short-poll",
    }
}

impl Transport {
    /// Whether the server pushes on a connection that stays open (SSE,
    /// WebSocket), as opposed to answering requests (polls).
    pub fn is_push(self) -> bool {
        matches!(self, Transport::Sse | Transport::Ws)
    }

    /// The `/stats` connection counter for this transport.
    pub fn stats_key(self) -> &'static str {
        match self {
            Transport::Sse => "sse",
            Transport::Ws => "ws",
            Transport::LongPoll => "long_poll",
            Transport::ShortPoll => "http",
        }
    }
}

named! {
    /// A scenario of the matrix: a column of the results document's cells.
    /// Saturation is the fan-out scenario run back to back (no interval
    /// between publishes); it has its own cells, tables and plot.
    pub enum ScenarioKind {
        /// Idle connections: the server's memory per connection.
        Idle = "idle",
        /// Fan-out latency at a steady publish rate.
        Fanout = "fanout",
        /// Fan-out throughput, publishing back to back.
        Saturation = "saturation",
        /// Fast and stalled subscribers under each outbox policy.
        Backpressure = "backpressure",
        /// What each transport costs to deliver one update stream.
        Polling = "polling",
        /// Throughput at the knee: offered load ramped until the last
        /// subscriber's p99 passes a bound.
        Knee = "knee",
    }
}

impl ScenarioKind {
    /// The transports the scenario measures, in the order it runs them: a
    /// short poll holds nothing open (no idle or fan-out cell), and a poll
    /// has no outbox (no backpressure cell).
    pub fn transports(self) -> &'static [Transport] {
        use Transport::*;
        match self {
            ScenarioKind::Idle | ScenarioKind::Fanout | ScenarioKind::Saturation => &[Sse, Ws, LongPoll],
            ScenarioKind::Backpressure | ScenarioKind::Knee => &[Sse, Ws],
            ScenarioKind::Polling => &[ShortPoll, LongPoll, Sse, Ws],
        }
    }
}

named! {
    /// What a server does with a subscriber whose outbox is over its budget
    /// (`rtlab serve --policy`).
    pub enum Policy {
        /// Close the subscriber's connection.
        Disconnect = "disconnect",
        /// Discard its oldest messages and tell it which ids it missed.
        DropOldest = "drop-oldest",
        /// Keep everything: the failure the other two exist to prevent.
        Unbounded = "unbounded",
    }
}

named! {
    /// Where the server and the clients run (`--placement`).
    pub enum PlacementMode {
        /// Server on CPU 0; clients, publisher and samplers on CPU 1 (when
        /// there are two cores and `taskset`): neither steals the other's core.
        Pinned = "pinned",
        /// Nothing pinned: the scheduler spreads server and clients over
        /// every core, and a multi-loop lab may use them all.
        Shared = "shared",
    }
}

named! {
    /// How big the matrix is.
    pub enum Scale {
        /// A test of the harness: tiny sizes, seconds per scenario.
        Tiny = "tiny",
        /// The quick matrix: small sizes, a few minutes in all.
        Quick = "quick",
        /// The committed run.
        Full = "full",
    }
}

/// What tells apart the cells of one scenario, lab and transport: a size
/// (connections, subscribers, clients), `max`, or a backpressure variant.
///
/// The order (`Ord`) is the order of the tables: sizes ascending, then the
/// backpressure variants from the reference run to the baseline lab's own
/// behaviour, then `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Label {
    /// Connections (idle), subscribers (fan-out, saturation) or clients (polling).
    Size(u64),
    /// Backpressure with no stalled subscriber: the fast subscribers'
    /// reference latency.
    Baseline,
    /// Backpressure under one of the core's outbox policies.
    Policy(Policy),
    /// Backpressure in a baseline lab, which has no `--policy`: its own
    /// behaviour.
    Own,
    /// Idle: as many connections as one server process holds.
    Max,
}

impl Label {
    /// The backpressure variants, in table order.
    pub const BACKPRESSURE: [Label; 5] = [
        Label::Baseline,
        Label::Policy(Policy::Disconnect),
        Label::Policy(Policy::DropOldest),
        Label::Policy(Policy::Unbounded),
        Label::Own,
    ];

    /// The size, if the label is one.
    pub fn size(self) -> Option<u64> {
        match self {
            Label::Size(n) => Some(n),
            _ => None,
        }
    }

    /// The backpressure variants with stalled subscribers (all but
    /// [`Label::Baseline`]).
    pub fn stalled() -> impl Iterator<Item = Label> {
        Label::BACKPRESSURE.into_iter().filter(|l| *l != Label::Baseline)
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Label::Size(n) => write!(f, "{n}"),
            Label::Baseline => f.write_str("baseline"),
            Label::Policy(p) => f.write_str(p.name()),
            Label::Own => f.write_str("own"),
            Label::Max => f.write_str("max"),
        }
    }
}

impl FromStr for Label {
    type Err = String;
    fn from_str(s: &str) -> Result<Label, String> {
        match s {
            "baseline" => Ok(Label::Baseline),
            "own" => Ok(Label::Own),
            "max" => Ok(Label::Max),
            _ => match s.parse::<u64>() {
                Ok(n) => Ok(Label::Size(n)),
                Err(_) => s.parse().map(Label::Policy).map_err(|_| format!("'{s}' is not a size, max, baseline, own or a policy")),
            },
        }
    }
}

impl From<Label> for String {
    fn from(label: Label) -> String {
        label.to_string()
    }
}

impl TryFrom<String> for Label {
    type Error = String;
    fn try_from(s: String) -> Result<Label, String> {
        s.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_as_the_strings_they_replaced() {
        for t in Transport::ALL {
            assert_eq!(t.name().parse::<Transport>(), Ok(*t));
            assert_eq!(serde_json::to_value(t).unwrap(), serde_json::json!(t.name()));
        }
        assert_eq!(Transport::LongPoll.to_string(), "long-poll");
        assert_eq!(serde_json::to_value(Policy::DropOldest).unwrap(), "drop-oldest");
        assert_eq!(serde_json::from_value::<ScenarioKind>("saturation".into()).unwrap(), ScenarioKind::Saturation);
        assert!("long_poll".parse::<Transport>().is_err());
        for s in ["1000", "max", "baseline", "disconnect", "drop-oldest", "unbounded", "own"] {
            let label: Label = s.parse().unwrap();
            assert_eq!(label.to_string(), s);
            assert_eq!(serde_json::to_value(label).unwrap(), serde_json::json!(s));
            assert_eq!(serde_json::from_value::<Label>(serde_json::json!(s)).unwrap(), label);
        }
        assert!("fast".parse::<Label>().is_err());
    }

    #[test]
    fn labels_sort_sizes_then_variants_then_max() {
        let mut labels: Vec<Label> =
            ["max", "own", "unbounded", "10000", "baseline", "drop-oldest", "100", "disconnect"].map(|s| s.parse().unwrap()).to_vec();
        labels.sort();
        let names: Vec<String> = labels.iter().map(Label::to_string).collect();
        assert_eq!(names, ["100", "10000", "baseline", "disconnect", "drop-oldest", "unbounded", "own", "max"]);
        assert_eq!(Label::stalled().count(), 4);
    }
}
