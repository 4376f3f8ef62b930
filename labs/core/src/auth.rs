//! Tokens and origins (contract "Tokens and origins"): who may read or
//! publish which topic, until when, and from which web page.
//!
//! A server started with a secret ([`Tokens`] in [`Config::tokens`]) asks
//! `/publish`, `/poll`, `/sse` and `/ws` for an HS256 JWT — in an
//! `Authorization: Bearer` header, or in a `token` query parameter, the only
//! thing a browser's `EventSource` and `WebSocket` can send. The signature
//! is checked by the maintained `jsonwebtoken` crate; this module decides
//! what the claims mean: `sub` (the client's name, kept on the connection
//! for presence), `exp`, `topics` (names, or prefixes ending in `*`) and
//! `publish`. Every refusal is one status and one line of reason: `401` for
//! a token that is missing, malformed, badly signed or expired, `403` for a
//! valid token that does not allow what the request asks, or an `Origin`
//! that is not on the allow-list ([`Config::allowed_origins`]).
//!
//! ## Wall-clock `exp`, monotonic deadlines
//!
//! `exp` is wall-clock time (seconds since 1970); the core runs on
//! monotonic [`Instant`]s handed in by the runtime and owns no clock. The
//! bridge is a [`WallClock`] in the config: a function from the `Instant`
//! the runtime passed to the wall-clock time it stands for. A server uses
//! [`WallClock::system`] (it reads the system clock at that moment); a test
//! uses [`WallClock::simulated`] (a fixed pair of an `Instant` and a
//! wall-clock time, nothing read), so expiry is tested with simulated time
//! like every other deadline here. The mapping is made once per token check
//! — when a request is admitted, when a WebSocket refreshes — and turns
//! `exp` into an `Instant` deadline: `now + (exp − wall(now))`. From then
//! on the connection's close deadline is one more monotonic deadline, so a
//! wall-clock step (NTP, a suspended laptop) moves neither an open
//! connection's expiry nor anything else: it is re-read only at the next
//! check. (The other choice, the runtime passing a `SystemTime` with every
//! request, would change every runtime's calls for one feature.)
//!
//! ## The spread
//!
//! Tokens minted together expire together: a thousand clients that logged
//! in in the same second are cut in the same millisecond and reconnect as a
//! herd. With [`Tokens::spread`] > 0, each connection closes at a deadline
//! drawn in `[exp − spread, exp)` — earlier, never later, so a token is
//! never honoured past its `exp` — from a hash of the seed, the token and
//! the connection's runtime token: the same connection with the same seed
//! gets the same deadline on every run, and connections holding the same
//! token in different slots get different ones. (Mercure closes a
//! subscription at its token's `exp` with a randomized deadline for the same
//! reason.) The book's chapter "Tokens, expiry and origins" measures the
//! reconnection spike with and without it.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::http::{HttpError, Request, Route};

// ANCHOR: wallclock
/// The wall-clock time an `Instant` handed to the core stands for. The core
/// has no clock: this function is how a runtime (or a test) tells it what
/// time of day `now` is, so that a token's `exp` can become a deadline.
#[derive(Clone)]
pub struct WallClock(Arc<dyn Fn(Instant) -> SystemTime + Send + Sync>);

impl WallClock {
    /// The system clock, read when a token is checked.
    pub fn system() -> WallClock {
        WallClock(Arc::new(|_| SystemTime::now()))
    }

    /// Simulated time: `at` is `wall`, and time passes as the `Instant`s do.
    pub fn simulated(at: Instant, wall: SystemTime) -> WallClock {
        WallClock(Arc::new(move |now: Instant| match now.checked_duration_since(at) {
            Some(later) => wall + later,
            None => wall - at.duration_since(now),
        }))
    }

    /// Seconds since 1970 at `now`.
    pub fn unix_at(&self, now: Instant) -> f64 {
        (self.0)(now).duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
    }

    /// The `Instant` at which wall-clock second `exp` arrives, seen from `now`
    /// (`now` itself if it has passed).
    pub fn deadline(&self, exp: u64, now: Instant) -> Instant {
        let left = exp as f64 - self.unix_at(now);
        if left <= 0.0 { now } else { now + Duration::from_secs_f64(left.min(1e9)) }
    }
}
// ANCHOR_END: wallclock

impl fmt::Debug for WallClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WallClock")
    }
}

impl Default for WallClock {
    fn default() -> Self {
        WallClock::system()
    }
}

// ANCHOR: claims
/// The claims of an rtlab token (the contract's, nothing else is read).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The client's name (presence shows it).
    pub sub: String,
    /// Expiry, seconds since 1970.
    pub exp: u64,
    /// Topics the token may use: names, or prefixes ending in `*`. Absent:
    /// every topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topics: Option<Vec<String>>,
    /// Whether the token may publish (absent or false: read only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub publish: bool,
}
// ANCHOR_END: claims

impl Claims {
    /// Whether the token allows `topic`.
    pub fn allows_topic(&self, topic: &str) -> bool {
        self.topics.as_ref().is_none_or(|list| {
            list.iter().any(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => topic.starts_with(prefix),
                None => pattern == topic,
            })
        })
    }
}

/// The verifier a server started with a secret holds: the HS256 key, the
/// expiry spread and the wall clock. Built once; every check borrows it.
#[derive(Clone)]
pub struct Tokens {
    key: DecodingKey,
    validation: Validation,
    /// Connections close at a deadline drawn in `[exp − spread, exp)`
    /// (zero: exactly at `exp`). See the module docs.
    pub spread: Duration,
    /// The seed of the spread's draw.
    pub seed: u64,
    /// What time of day an `Instant` is.
    pub clock: WallClock,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the key.
        f.debug_struct("Tokens").field("spread", &self.spread).field("seed", &self.seed).finish_non_exhaustive()
    }
}

impl Tokens {
    /// A verifier for tokens signed with `secret` (HS256), no spread, the system clock.
    pub fn new(secret: &[u8]) -> Tokens {
        let mut validation = Validation::new(Algorithm::HS256);
        // `exp` is checked here against the injected wall clock, not by the
        // crate against the system clock: that keeps the core clock-free and
        // expiry testable with simulated time. Both claims must be present.
        validation.validate_exp = false;
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Tokens { key: DecodingKey::from_secret(secret), validation, spread: Duration::ZERO, seed: 0, clock: WallClock::system() }
    }

    // ANCHOR: verify
    /// The claims of a valid, unexpired token at `now`, or the `401` that
    /// says what is wrong with it.
    pub fn verify(&self, token: &str, now: Instant) -> Result<Claims, HttpError> {
        let unauthorized = |why: &str| HttpError::Unauthorized(why.to_owned());
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => unauthorized("bad token signature"),
                ErrorKind::InvalidAlgorithm => unauthorized("token algorithm must be HS256"),
                ErrorKind::MissingRequiredClaim(claim) => unauthorized(&format!("token has no {claim} claim")),
                _ => unauthorized(&format!("malformed token ({e})")),
            })?
            .claims;
        if claims.exp as f64 <= self.clock.unix_at(now) {
            return Err(unauthorized("token expired"));
        }
        Ok(claims)
    }
    // ANCHOR_END: verify

    // ANCHOR: close_at
    /// When a connection admitted with `claims` (from `token`, in runtime
    /// slot `slot`) must end: `exp` as an `Instant`, less a deterministic
    /// draw in `[0, spread)` — never after `exp`, never before `now`.
    pub fn close_at(&self, claims: &Claims, token: &str, slot: usize, now: Instant) -> Instant {
        let exp = self.clock.deadline(claims.exp, now);
        if self.spread.is_zero() {
            return exp;
        }
        let draw = mix(self.seed ^ fnv1a(token.as_bytes()) ^ mix(slot as u64));
        let fraction = (draw >> 11) as f64 / (1u64 << 53) as f64; // uniform in [0, 1)
        let early = self.spread.mul_f64(fraction);
        exp.checked_sub(early).map_or(now, |at| at.max(now))
    }
    // ANCHOR_END: close_at
}

/// SplitMix64's finalizer: a well-mixed 64-bit hash of `x`.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// FNV-1a over `bytes`: stable across Rust versions, unlike `DefaultHasher`.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// A signed token for `claims` (what `rtlab token` prints, and what tests and
/// benchmarks send).
pub fn mint(secret: &[u8], claims: &Claims) -> String {
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret))
        .expect("HS256 signing of serializable claims cannot fail")
}

/// What a token let a request do: its claims, the topic it was checked
/// for, and its text (the spread's draw hashes it).
#[derive(Debug, Clone)]
pub struct Grant {
    /// The token's claims.
    pub claims: Claims,
    /// The topic of the request it admitted.
    pub topic: String,
    /// The token as sent.
    pub token: String,
}

/// The last event of an event stream whose token ran out.
pub const SSE_EXPIRED: &[u8] = b"event: expired\ndata: token expired\n\n";

// ANCHOR: admit
/// The checks every request passes before its route runs: the origin
/// allow-list, the upgrade refusal, and — for the four endpoints that need
/// one, on a server with a secret — the token and what it allows. `None`:
/// admitted without a token (no secret, or a route that needs none).
pub fn admit(config: &Config, req: &Request, now: Instant) -> Result<Option<Grant>, HttpError> {
    if let Some(origin) = &req.origin
        && !config.allowed_origins.is_empty()
        && !config.allowed_origins.iter().any(|o| o.eq_ignore_ascii_case(origin))
    {
        return Err(HttpError::Forbidden(format!("origin {origin} is not allowed")));
    }
    if config.refuse_upgrade && matches!(req.route, Route::Ws { .. } | Route::Echo { .. }) {
        return Err(HttpError::UpgradeRefused);
    }
    let (topic, publish) = match &req.route {
        Route::Publish { topic } => (topic, true),
        Route::Poll { topic, .. } | Route::Sse { topic, .. } | Route::Ws { topic, .. } => (topic, false),
        // The contract asks for tokens on these four only; /presence, like
        // /stats, answers without one.
        Route::Echo { .. } | Route::Index | Route::Ticker | Route::Chat | Route::Stats | Route::Presence { .. } => return Ok(None),
    };
    let Some(tokens) = &config.tokens else { return Ok(None) };
    let text = match (&req.authorization, &req.token) {
        (Some(header), _) => match header.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => return Err(HttpError::Unauthorized("the Authorization header must be \"Bearer <token>\"".into())),
        },
        (None, Some(token)) => token.as_str(),
        (None, None) => {
            return Err(HttpError::Unauthorized(
                "a token is required (Authorization: Bearer, or the token query parameter)".into(),
            ));
        }
    };
    let claims = tokens.verify(text, now)?;
    permit(&claims, topic, publish)?;
    Ok(Some(Grant { claims, topic: topic.clone(), token: text.to_owned() }))
}
// ANCHOR_END: admit

/// The `403` a valid token gets for a topic it does not list, or for a
/// publish it may not make.
pub fn permit(claims: &Claims, topic: &str, publish: bool) -> Result<(), HttpError> {
    if !claims.allows_topic(topic) {
        return Err(HttpError::Forbidden(format!("this token does not allow topic {topic}")));
    }
    if publish && !claims.publish {
        return Err(HttpError::Forbidden("this token may not publish".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"test secret";

    fn claims(exp: u64) -> Claims {
        Claims { sub: "ada".into(), exp, topics: Some(vec!["news".into(), "room.*".into()]), publish: false }
    }

    fn tokens_at(start: Instant, wall: u64) -> Tokens {
        let mut t = Tokens::new(SECRET);
        t.clock = WallClock::simulated(start, UNIX_EPOCH + Duration::from_secs(wall));
        t
    }

    #[test]
    fn a_valid_token_is_read_and_an_expired_one_is_401() {
        let start = Instant::now();
        let t = tokens_at(start, 1_000);
        let token = mint(SECRET, &claims(1_010));
        assert_eq!(t.verify(&token, start).unwrap(), claims(1_010));
        let late = t.verify(&token, start + Duration::from_secs(10)).unwrap_err();
        assert_eq!(late, HttpError::Unauthorized("token expired".into()));
    }

    #[test]
    fn bad_signature_and_garbage_are_401_with_their_reason() {
        let start = Instant::now();
        let t = tokens_at(start, 1_000);
        let forged = mint(b"another secret", &claims(2_000));
        assert_eq!(t.verify(&forged, start).unwrap_err(), HttpError::Unauthorized("bad token signature".into()));
        let garbage = t.verify("not.a.token", start).unwrap_err();
        assert!(matches!(&garbage, HttpError::Unauthorized(why) if why.starts_with("malformed token")), "{garbage:?}");
        let no_exp = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"sub": "ada"}),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        let no_exp = t.verify(&no_exp, start).unwrap_err();
        assert!(matches!(&no_exp, HttpError::Unauthorized(why) if why.contains("missing field `exp`")), "{no_exp:?}");
    }

    #[test]
    fn topics_match_names_and_prefixes() {
        let c = claims(0);
        assert!(c.allows_topic("news") && c.allows_topic("room.1") && c.allows_topic("room."));
        assert!(!c.allows_topic("news2") && !c.allows_topic("room") && !c.allows_topic("other"));
        assert!(Claims { topics: None, ..c.clone() }.allows_topic("anything"));
        assert_eq!(permit(&c, "news", true), Err(HttpError::Forbidden("this token may not publish".into())));
    }

    #[test]
    fn exp_becomes_a_monotonic_deadline() {
        let start = Instant::now();
        let t = tokens_at(start, 1_000);
        let later = start + Duration::from_secs(3);
        assert_eq!(t.clock.deadline(1_010, later), start + Duration::from_secs(10));
        assert_eq!(t.clock.deadline(900, later), later, "a passed exp is now");
    }

    #[test]
    fn the_spread_is_early_deterministic_and_spread_out() {
        let start = Instant::now();
        let mut t = tokens_at(start, 1_000);
        let c = claims(1_060);
        let token = mint(SECRET, &c);
        let exp = start + Duration::from_secs(60);
        assert_eq!(t.close_at(&c, &token, 7, start), exp, "no spread: exactly exp");
        t.spread = Duration::from_secs(10);
        let draws: Vec<Instant> = (0..1000).map(|slot| t.close_at(&c, &token, slot, start)).collect();
        assert!(draws.iter().all(|&d| d <= exp && d > exp - Duration::from_secs(10)));
        assert_eq!(draws[7], t.close_at(&c, &token, 7, start), "same seed, token and slot: same deadline");
        // Spread out: each of the ten seconds gets some, none gets most.
        let mut per_second = [0; 10];
        for d in &draws {
            per_second[((exp - *d).as_secs_f64() as usize).min(9)] += 1;
        }
        assert!(per_second.iter().all(|&n| (50..200).contains(&n)), "{per_second:?}");
        t.seed = 1;
        assert_ne!(draws[7], t.close_at(&c, &token, 7, start), "another seed, another draw");
    }
}
