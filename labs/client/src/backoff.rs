//! Back-off strategies: how long a client waits before its next attempt to
//! reconnect. Pure functions of the attempt number, the previous delay and an
//! injected random number generator: no clock, no sleeping, no I/O.
//!
//! The definitions are Marc Brooker's, from "Exponential Backoff And Jitter"
//! (AWS Architecture Blog, 2015), with `attempt` counted from 0 and
//! `random_between(a, b)` uniform over `[a, b]`:
//!
//! | strategy | delay before attempt n |
//! |---|---|
//! | [`Constant`](Strategy::Constant) | `base` (zero: reconnect at once) |
//! | [`Exponential`](Strategy::Exponential) | `min(cap, base · 2^n)` |
//! | [`FullJitter`](Strategy::FullJitter) | `random_between(0, min(cap, base · 2^n))` |
//! | [`EqualJitter`](Strategy::EqualJitter) | `t / 2 + random_between(0, t / 2)`, `t = min(cap, base · 2^n)` |
//! | [`Decorrelated`](Strategy::Decorrelated) | `min(cap, random_between(base, previous · 3))`, `previous` starting at `base` |

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rand::{Rng, RngExt};

// ANCHOR: strategy
/// How the delay between reconnection attempts grows.
///
/// Why jitter at all: when a server restarts, every client it had loses its
/// connection at the same instant. Without randomness they all come back at
/// the same instants too — `base`, `2·base`, `4·base` later — and each wave
/// meets a server that is busiest exactly then: a thundering herd. Spreading
/// each client's delay at random over an interval turns the waves into a
/// trickle. Brooker's simulation of contending clients found full jitter
/// needed less than half the calls of plain exponential back-off, with
/// equal jitter slightly behind and decorrelated jitter close to full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// No back-off: always `base` (with a zero base, reconnect at once). The
    /// strategy to measure the others against, and a herd's favourite.
    Constant,
    /// `min(cap, base · 2^attempt)`: each failure doubles the wait, but every
    /// client that failed together retries together.
    Exponential,
    /// Brooker's "Full Jitter": `random_between(0, min(cap, base · 2^attempt))`.
    /// The exponential ceiling, and anywhere below it.
    FullJitter,
    /// Brooker's "Equal Jitter": half the exponential delay, plus a random
    /// amount up to the other half. Never retries almost at once.
    EqualJitter,
    /// Brooker's "Decorrelated Jitter":
    /// `min(cap, random_between(base, previous · 3))`. Grows from the previous
    /// delay rather than from the attempt number.
    Decorrelated,
}
// ANCHOR_END: strategy

impl Strategy {
    /// The command-line names, in the order of the variants.
    pub const NAMES: [&'static str; 5] = ["none", "exponential", "full-jitter", "equal-jitter", "decorrelated-jitter"];

    const ALL: [Strategy; 5] = [
        Strategy::Constant,
        Strategy::Exponential,
        Strategy::FullJitter,
        Strategy::EqualJitter,
        Strategy::Decorrelated,
    ];

    /// The command-line name (`none` for [`Strategy::Constant`]).
    pub fn name(self) -> &'static str {
        Strategy::NAMES[Strategy::ALL.iter().position(|s| *s == self).expect("every strategy is in ALL")]
    }

    // ANCHOR: delay
    /// The delay before attempt `attempt` (0 for the first retry after a
    /// failure). `previous` is the delay this returned last time, or `base`
    /// after a reset; only [`Strategy::Decorrelated`] reads it.
    pub fn delay<R: Rng + ?Sized>(
        self,
        base: Duration,
        cap: Duration,
        attempt: u32,
        previous: Duration,
        rng: &mut R,
    ) -> Duration {
        let cap = cap.max(base);
        match self {
            Strategy::Constant => base,
            Strategy::Exponential => ceiling(base, cap, attempt),
            Strategy::FullJitter => between(rng, Duration::ZERO, ceiling(base, cap, attempt)),
            Strategy::EqualJitter => {
                let t = ceiling(base, cap, attempt);
                t / 2 + between(rng, Duration::ZERO, t - t / 2)
            }
            Strategy::Decorrelated => between(rng, base, previous.max(base).saturating_mul(3)).min(cap),
        }
    }
    // ANCHOR_END: delay
}

/// `min(cap, base · 2^attempt)`, without overflowing for large attempts.
fn ceiling(base: Duration, cap: Duration, attempt: u32) -> Duration {
    2u32.checked_pow(attempt).and_then(|factor| base.checked_mul(factor)).map_or(cap, |d| d.min(cap))
}

/// Uniform over `[low, high]` (nanosecond resolution).
fn between<R: Rng + ?Sized>(rng: &mut R, low: Duration, high: Duration) -> Duration {
    let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    let (low, high) = (nanos(low), nanos(high));
    if high <= low {
        return Duration::from_nanos(low);
    }
    Duration::from_nanos(rng.random_range(low..=high))
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Strategy {
    type Err = String;

    fn from_str(s: &str) -> Result<Strategy, String> {
        match Strategy::NAMES.iter().position(|n| *n == s) {
            Some(i) => Ok(Strategy::ALL[i]),
            None if s == "constant" => Ok(Strategy::Constant),
            None => Err(format!("unknown back-off '{s}' (one of: {})", Strategy::NAMES.join(", "))),
        }
    }
}

// ANCHOR: backoff
/// One client's back-off: a [`Strategy`] with its parameters, and the state
/// it needs between failures (the attempt number, the previous delay).
///
/// The caller asks for [`next_delay`](Backoff::next_delay) after each failed
/// or lost connection and calls [`reset`](Backoff::reset) once a connection
/// has proved healthy, so that the next outage starts from `base` again.
/// The random number generator is a parameter, not a field: tests pass a
/// seeded one and get the same delays on every run.
#[derive(Debug, Clone)]
pub struct Backoff {
    strategy: Strategy,
    base: Duration,
    cap: Duration,
    max_attempts: Option<u32>,
    /// Failures since the last reset: the next delay is for this attempt.
    attempt: u32,
    /// The last delay returned (decorrelated jitter grows from it).
    previous: Duration,
}
// ANCHOR_END: backoff

impl Backoff {
    /// `strategy` between `base` and `cap` (a cap below `base` is raised to
    /// it), with no limit on attempts.
    pub fn new(strategy: Strategy, base: Duration, cap: Duration) -> Backoff {
        Backoff { strategy, base, cap: cap.max(base), max_attempts: None, attempt: 0, previous: base }
    }

    /// Gives up after `max` attempts in a row: [`next_delay`](Backoff::next_delay)
    /// returns `None` once it has returned `max` delays since the last reset
    /// (`None`: never).
    pub fn with_max_attempts(mut self, max: Option<u32>) -> Backoff {
        self.max_attempts = max;
        self
    }

    /// The strategy.
    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// The base delay.
    pub fn base(&self) -> Duration {
        self.base
    }

    /// The largest delay.
    pub fn cap(&self) -> Duration {
        self.cap
    }

    /// Failures since the last reset.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Changes the base delay (an SSE `retry:` field does this), raising the
    /// cap to it if needed: a server that asks for a longer wait gets it.
    pub fn set_base(&mut self, base: Duration) {
        self.base = base;
        self.cap = self.cap.max(base);
        if self.attempt == 0 {
            self.previous = base;
        }
    }

    /// The delay before the next attempt, counting the attempt; `None` once
    /// `max_attempts` consecutive attempts have been used up.
    pub fn next_delay<R: Rng + ?Sized>(&mut self, rng: &mut R) -> Option<Duration> {
        if self.max_attempts.is_some_and(|max| self.attempt >= max) {
            return None;
        }
        let delay = self.strategy.delay(self.base, self.cap, self.attempt, self.previous, rng);
        self.attempt = self.attempt.saturating_add(1);
        self.previous = delay;
        Some(delay)
    }

    /// A connection proved healthy: the next failure starts from attempt 0.
    pub fn reset(&mut self) {
        self.attempt = 0;
        self.previous = self.base;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    const DRAWS: usize = 20_000;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn rng() -> SmallRng {
        SmallRng::seed_from_u64(0x5eed)
    }

    /// `DRAWS` delays for one attempt number, each from a fresh state.
    fn draws(strategy: Strategy, base: Duration, cap: Duration, attempt: u32) -> Vec<Duration> {
        let mut rng = rng();
        (0..DRAWS).map(|_| strategy.delay(base, cap, attempt, base, &mut rng)).collect()
    }

    fn mean(ds: &[Duration]) -> f64 {
        ds.iter().map(Duration::as_secs_f64).sum::<f64>() / ds.len() as f64
    }

    /// Asserts the sample's mean is within 3% of `expected`.
    fn assert_mean(ds: &[Duration], expected: Duration, what: &str) {
        let (m, e) = (mean(ds), expected.as_secs_f64());
        assert!((m - e).abs() <= 0.03 * e, "{what}: mean {m} s, expected about {e} s");
    }

    #[test]
    fn constant_is_always_base() {
        let mut b = Backoff::new(Strategy::Constant, ms(250), ms(10_000));
        let mut r = rng();
        assert!((0..50).all(|_| b.next_delay(&mut r) == Some(ms(250))));
        let mut immediate = Backoff::new(Strategy::Constant, Duration::ZERO, ms(10_000));
        assert_eq!(immediate.next_delay(&mut r), Some(Duration::ZERO));
    }

    #[test]
    fn exponential_doubles_up_to_the_cap_and_never_overflows() {
        let mut b = Backoff::new(Strategy::Exponential, ms(100), ms(1000));
        let mut r = rng();
        let got: Vec<_> = (0..6).map(|_| b.next_delay(&mut r).unwrap()).collect();
        assert_eq!(got, [ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000)]);
        for attempt in [31, 32, 64, u32::MAX] {
            assert_eq!(Strategy::Exponential.delay(ms(100), ms(1000), attempt, ms(100), &mut r), ms(1000));
        }
        // A cap far above: still no overflow, the product itself.
        assert_eq!(Strategy::Exponential.delay(ms(1), Duration::MAX, 20, ms(1), &mut r), ms(1 << 20));
    }

    /// Full jitter stays in [0, min(cap, base·2^n)], is uniform there (mean
    /// half the ceiling, both ends reached), for every attempt up to past the cap.
    #[test]
    fn full_jitter_is_uniform_below_the_exponential_ceiling() {
        let (base, cap) = (ms(100), ms(10_000));
        for attempt in 0..10 {
            let ceiling = ms(100 << attempt).min(cap);
            let ds = draws(Strategy::FullJitter, base, cap, attempt);
            assert!(ds.iter().all(|d| *d <= ceiling), "attempt {attempt}: over {ceiling:?}");
            assert_mean(&ds, ceiling / 2, &format!("full jitter, attempt {attempt}"));
            assert!(ds.iter().any(|d| *d < ceiling / 20), "attempt {attempt}: nothing near 0");
            assert!(ds.iter().any(|d| *d > ceiling * 19 / 20), "attempt {attempt}: nothing near the ceiling");
            // Spread: a quarter of the draws in each quarter of the range, give or take.
            for q in 0..4u32 {
                let n = ds.iter().filter(|d| **d >= ceiling * q / 4 && **d < ceiling * (q + 1) / 4).count();
                assert!(n.abs_diff(DRAWS / 4) < DRAWS / 40, "attempt {attempt}, quarter {q}: {n} of {DRAWS}");
            }
        }
    }

    #[test]
    fn equal_jitter_stays_in_the_upper_half() {
        let (base, cap) = (ms(100), ms(3000));
        for attempt in 0..8 {
            let t = ms(100 << attempt).min(cap);
            let ds = draws(Strategy::EqualJitter, base, cap, attempt);
            assert!(ds.iter().all(|d| *d >= t / 2 && *d <= t), "attempt {attempt}: outside [{:?}, {t:?}]", t / 2);
            assert_mean(&ds, t * 3 / 4, &format!("equal jitter, attempt {attempt}"));
        }
    }

    /// Decorrelated jitter stays in [base, cap], never more than triples the
    /// previous delay, starts uniform over [base, 3·base], and reaches the cap.
    #[test]
    fn decorrelated_jitter_stays_between_base_and_cap() {
        let (base, cap) = (ms(100), ms(5000));
        let mut r = rng();
        let mut reached_cap = false;
        for _ in 0..500 {
            let mut b = Backoff::new(Strategy::Decorrelated, base, cap);
            let mut previous = base;
            for _ in 0..30 {
                let d = b.next_delay(&mut r).unwrap();
                assert!(d >= base && d <= cap, "{d:?} outside [{base:?}, {cap:?}]");
                assert!(d <= previous * 3, "{d:?} more than three times {previous:?}");
                reached_cap |= d == cap;
                previous = d;
            }
        }
        assert!(reached_cap, "30 failures in a row never reached the cap");
        let first = draws(Strategy::Decorrelated, base, cap, 0);
        assert!(first.iter().all(|d| *d >= base && *d <= base * 3));
        assert_mean(&first, base * 2, "decorrelated, first delay");
    }

    #[test]
    fn reset_starts_again_from_base() {
        let mut r = rng();
        let mut exp = Backoff::new(Strategy::Exponential, ms(100), ms(10_000));
        for _ in 0..5 {
            exp.next_delay(&mut r);
        }
        assert_eq!(exp.attempt(), 5);
        exp.reset();
        assert_eq!((exp.attempt(), exp.next_delay(&mut r)), (0, Some(ms(100))));

        let mut full = Backoff::new(Strategy::FullJitter, ms(100), ms(10_000));
        for _ in 0..8 {
            full.next_delay(&mut r);
        }
        full.reset();
        assert!((0..100).all(|_| {
            let d = full.next_delay(&mut r).unwrap();
            full.reset();
            d <= ms(100)
        }));

        let mut dec = Backoff::new(Strategy::Decorrelated, ms(100), ms(10_000));
        for _ in 0..20 {
            dec.next_delay(&mut r);
        }
        dec.reset();
        assert!(dec.next_delay(&mut r).unwrap() <= ms(300), "after a reset the previous delay is base again");
    }

    #[test]
    fn max_attempts_gives_up_until_reset() {
        let mut r = rng();
        let mut b = Backoff::new(Strategy::FullJitter, ms(10), ms(100)).with_max_attempts(Some(3));
        assert!((0..3).all(|_| b.next_delay(&mut r).is_some()));
        assert_eq!(b.next_delay(&mut r), None);
        assert_eq!(b.next_delay(&mut r), None);
        b.reset();
        assert!(b.next_delay(&mut r).is_some());
    }

    #[test]
    fn a_seed_fixes_the_sequence() {
        let run = |seed| {
            let mut r = SmallRng::seed_from_u64(seed);
            let mut b = Backoff::new(Strategy::FullJitter, ms(100), ms(10_000));
            (0..10).map(|_| b.next_delay(&mut r).unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }

    /// What SSE's `retry:` does: a new base, and a cap raised to it.
    #[test]
    fn set_base_moves_the_range() {
        let mut r = rng();
        let mut b = Backoff::new(Strategy::Exponential, ms(100), ms(1000));
        b.set_base(ms(3000));
        assert_eq!((b.base(), b.cap()), (ms(3000), ms(3000)));
        assert_eq!(b.next_delay(&mut r), Some(ms(3000)));
        let mut c = Backoff::new(Strategy::Constant, ms(100), ms(1000));
        c.set_base(ms(20));
        assert_eq!(c.next_delay(&mut r), Some(ms(20)));
    }

    #[test]
    fn names_round_trip() {
        for s in Strategy::ALL {
            assert_eq!(s.name().parse::<Strategy>(), Ok(s));
            assert_eq!(s.to_string(), s.name());
        }
        assert_eq!("constant".parse::<Strategy>(), Ok(Strategy::Constant));
        assert!("linear".parse::<Strategy>().is_err());
    }
}
