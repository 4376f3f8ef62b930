//! `rtlab listen`: subscribe to a topic with the reconnecting client and
//! print what happens, one line each.
//!
//! | line | what |
//! |---|---|
//! | `ID DATA` | a message (in `DATA`, backslash, CR and LF are escaped: one message, one line) |
//! | `connected URL [after ID]` | a connection was accepted, resuming after `ID` |
//! | `missed FROM TO` | the server said ids `FROM` to `TO` are gone |
//! | `reset EPOCH` | the server could not continue the client's sequence (it restarted): ids start again in `EPOCH` |
//! | `gap FROM TO` | ids skipped without the server saying so (a contract violation) |
//! | `reconnect ATTEMPT DELAY_MS REASON` | the connection failed or was lost; the next attempt is in `DELAY_MS` |
//! | `retry MS` | the server's SSE `retry:`: the back-off's new base |
//! | `server-error TEXT` | the server reported an error on the subscription |
//!
//! It exits 0 after `--count` messages, 1 when the client gives up (a `4xx`,
//! or `--max-attempts` failed reconnections in a row), 2 on bad arguments.

use std::io::Write;
use std::ops::ControlFlow;
use std::process::ExitCode;
use std::time::Duration;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use rand::SeedableRng;
use rand::rngs::SmallRng;

use crate::backoff::{Backoff, Strategy};
use crate::http::Url;
use crate::subscriber::{Config, Event, Start, Subscriber};
use crate::wire::Transport;

// ANCHOR: args
// The arguments of `rtlab listen`. (A `//` comment: a doc comment here
// would become clap's help text.)
#[derive(Debug, clap::Args)]
pub struct ListenArgs {
    /// The server's base URL (http only).
    #[arg(long, default_value = "http://127.0.0.1:8080", value_parser = parse_url)]
    pub url: Url,
    /// The topic to subscribe to.
    #[arg(long)]
    pub topic: String,
    /// The transport.
    #[arg(long, default_value = "sse", value_parser = PossibleValuesParser::new(Transport::NAMES).map(|s| s.parse::<Transport>().expect("a listed name")))]
    pub transport: Transport,
    /// The back-off between attempts (Brooker's strategies; none: always --base-ms).
    #[arg(long, default_value = "full-jitter", value_parser = PossibleValuesParser::new(Strategy::NAMES).map(|s| s.parse::<Strategy>().expect("a listed name")))]
    pub backoff: Strategy,
    /// The back-off's base delay, in milliseconds (an SSE retry: field replaces it).
    #[arg(long, default_value_t = 500)]
    pub base_ms: u64,
    /// The back-off's largest delay, in milliseconds (at least --base-ms).
    #[arg(long, default_value_t = 20_000)]
    pub cap_ms: u64,
    /// Give up when this many reconnection attempts in a row have failed (default: never).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: Option<u32>,
    /// Exit after this many messages (default: never).
    #[arg(long)]
    pub count: Option<u64>,
    /// Start after this id: the retained messages after it first (0: all of
    /// them). Default: only messages published from now on.
    #[arg(long)]
    pub after: Option<u64>,
    /// Long polling: the seconds each poll is held (1 to 60).
    #[arg(long, default_value_t = 25, value_parser = clap::value_parser!(u32).range(1..=60))]
    pub wait: u32,
    /// Seed the jitter's random numbers, for a run that can be repeated
    /// (default: seeded from the OS).
    #[arg(long)]
    pub seed: Option<u64>,
    /// The token to send, for a server started with --token-secret.
    #[arg(long)]
    pub token: Option<String>,
    /// A shell command that prints a new token, run when the server refuses
    /// or ends the current one (e.g. `rtlab token --secret S --sub me --ttl 60s`);
    /// also gives the first token if --token is absent. Without it, a refused
    /// token ends the run.
    #[arg(long)]
    pub token_command: Option<String>,
}
// ANCHOR_END: args

fn parse_url(s: &str) -> Result<Url, String> {
    s.parse()
}

impl ListenArgs {
    /// The subscriber's settings; `Err` for a combination clap cannot check.
    pub fn config(&self) -> Result<Config, String> {
        if self.cap_ms < self.base_ms {
            return Err(format!("--cap-ms ({}) is below --base-ms ({})", self.cap_ms, self.base_ms));
        }
        let mut config = Config::new(self.url.clone(), &self.topic, self.transport)?;
        config.backoff =
            Backoff::new(self.backoff, Duration::from_millis(self.base_ms), Duration::from_millis(self.cap_ms))
                .with_max_attempts(self.max_attempts);
        config.start = self.after.map_or(Start::Live, Start::After);
        config.poll_wait = self.wait;
        config.token = match (&self.token, &self.token_command) {
            (Some(token), _) => Some(token.clone()),
            (None, Some(command)) => Some(run_token_command(command)?),
            (None, None) => None,
        };
        Ok(config)
    }
}

/// Runs `command` with `sh -c` and returns what it printed, trimmed: a token.
fn run_token_command(command: &str) -> Result<String, String> {
    let out = std::process::Command::new("sh")
        .args(["-c", command])
        .output()
        .map_err(|e| format!("--token-command: {e}"))?;
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || token.is_empty() {
        return Err(format!("--token-command failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(token)
}

/// One output line for an event.
pub fn line(event: &Event) -> String {
    match event {
        Event::Message(m) => {
            let data = m.data.replace('\\', "\\\\").replace('\n', "\\n").replace('\r', "\\r");
            format!("{} {data}", m.id)
        }
        Event::Connected { url, after: Some(id) } => format!("connected {url} after {id}"),
        Event::Connected { url, after: None } => format!("connected {url}"),
        Event::Missed { from, to } => format!("missed {from} {to}"),
        Event::Reset { epoch } => format!("reset {epoch}"),
        Event::Gap { from, to } => format!("gap {from} {to}"),
        Event::Reconnecting { attempt, delay, reason } => format!("reconnect {attempt} {} {reason}", delay.as_millis()),
        Event::Retry(base) => format!("retry {}", base.as_millis()),
        Event::ServerError(text) => format!("server-error {text}"),
        Event::TokenNeeded { reason } => format!("token-needed {reason}"),
        Event::GaveUp { reason } => format!("gave-up {reason}"),
    }
}

/// Runs `rtlab listen`; errors are one line on stderr.
pub fn run(args: &ListenArgs) -> ExitCode {
    let config = match args.config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("rtlab listen: {e}");
            return ExitCode::from(2);
        }
    };
    let rng = match args.seed {
        Some(seed) => SmallRng::seed_from_u64(seed),
        None => rand::make_rng(),
    };
    let mut subscriber = Subscriber::new(config, rng);
    let mut received = 0u64;
    let mut stdout = std::io::stdout().lock();
    let new_token = |_: &str| {
        let command = args.token_command.as_deref()?;
        run_token_command(command).map_err(|e| eprintln!("rtlab listen: {e}")).ok()
    };
    let result = crate::blocking::run_with_tokens(&mut subscriber, |event| {
        if matches!(event, Event::GaveUp { .. }) {
            return ControlFlow::Continue(()); // Reported below, on stderr.
        }
        if writeln!(stdout, "{}", line(event)).and_then(|()| stdout.flush()).is_err() {
            return ControlFlow::Break(()); // stdout is gone (a closed pipe): stop.
        }
        if let Event::Message(_) = event {
            received += 1;
            if args.count.is_some_and(|count| received >= count) {
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }, new_token);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(reason) => {
            eprintln!("rtlab listen: gave up: {reason}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: ListenArgs,
    }

    fn parse(args: &[&str]) -> Result<ListenArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("listen").chain(args.iter().copied())).map(|c| c.args)
    }

    #[test]
    fn arguments() {
        let a =
            parse(&["--topic", "t", "--transport", "long-poll", "--backoff", "decorrelated-jitter", "--after", "0"])
                .unwrap();
        let c = a.config().unwrap();
        assert_eq!(
            (c.transport, c.backoff.strategy(), c.start),
            (Transport::LongPoll, Strategy::Decorrelated, Start::After(0))
        );
        assert_eq!((c.backoff.base(), c.backoff.cap()), (Duration::from_millis(500), Duration::from_secs(20)));
        assert!(parse(&["--topic", "t", "--transport", "carrier-pigeon"]).is_err());
        assert!(parse(&["--topic", "t", "--url", "https://x"]).is_err());
        assert!(parse(&["--topic", "t", "--wait", "61"]).is_err());
        assert!(parse(&["--topic", "bad topic"]).unwrap().config().is_err());
        assert!(parse(&["--topic", "t", "--base-ms", "200", "--cap-ms", "100"]).unwrap().config().is_err());
    }

    #[test]
    fn lines() {
        let m = Event::Message(crate::Message { id: 7, data: "a\nb\\c".into() });
        assert_eq!(line(&m), "7 a\\nb\\\\c");
        let r = Event::Reconnecting { attempt: 2, delay: Duration::from_millis(150), reason: "closed".into() };
        assert_eq!(line(&r), "reconnect 2 150 closed");
        assert_eq!(line(&Event::Missed { from: 1, to: 6 }), "missed 1 6");
    }
}
