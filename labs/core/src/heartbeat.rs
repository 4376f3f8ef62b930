//! Heartbeat deadlines. The core owns no clock: every method takes `now`, and
//! the runtime asks [`Pinger::deadline`] / [`KeepAlive::deadline`] when to
//! call back. The intervals are server options, passed in rather than stored:
//! every idle connection carries these structs, so they hold only instants.

use std::time::{Duration, Instant};

/// Outcome of a WebSocket heartbeat tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beat {
    /// Nothing to do yet.
    Idle,
    /// Send a ping now.
    Ping,
    /// No pong for two intervals: the peer is gone, close the connection.
    Dead,
}

// ANCHOR: pinger
/// Server pings on a WebSocket: a ping every `interval`, and a connection
/// whose last pong is two intervals old is dead. A half-open TCP connection
/// (the client vanished without a FIN) is otherwise never noticed.
#[derive(Debug, Clone)]
pub struct Pinger {
    next_ping: Instant,
    last_pong: Instant,
}

impl Pinger {
    /// Starts the schedule at `now` (the upgrade).
    pub fn new(interval: Duration, now: Instant) -> Pinger {
        Pinger { next_ping: now + interval, last_pong: now }
    }

    /// A pong arrived.
    pub fn pong(&mut self, now: Instant) {
        self.last_pong = now;
    }

    /// What to do at `now`, pinging every `interval`.
    pub fn tick(&mut self, now: Instant, interval: Duration) -> Beat {
        if now >= self.last_pong + 2 * interval {
            Beat::Dead
        } else if now >= self.next_ping {
            self.next_ping = now + interval;
            Beat::Ping
        } else {
            Beat::Idle
        }
    }

    /// When `tick` next has something to do.
    pub fn deadline(&self, interval: Duration) -> Instant {
        self.next_ping.min(self.last_pong + 2 * interval)
    }
}
// ANCHOR_END: pinger

// ANCHOR: keepalive
/// SSE keep-alive comments: proxies and browsers drop a stream that is silent
/// for too long, so a comment line goes out every `interval`.
#[derive(Debug, Clone)]
pub struct KeepAlive {
    next: Instant,
}

impl KeepAlive {
    /// Starts the schedule at `now`.
    pub fn new(interval: Duration, now: Instant) -> KeepAlive {
        KeepAlive { next: now + interval }
    }

    /// Whether a comment is due at `now` (and schedules the next one,
    /// `interval` later).
    pub fn due(&mut self, now: Instant, interval: Duration) -> bool {
        if now >= self.next {
            self.next = now + interval;
            true
        } else {
            false
        }
    }

    /// When the next comment is due.
    pub fn deadline(&self) -> Instant {
        self.next
    }
}
// ANCHOR_END: keepalive

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_every_interval_and_dies_after_two_without_pong() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut p = Pinger::new(30 * s, t0);
        assert_eq!(p.tick(t0 + 29 * s, 30 * s), Beat::Idle);
        assert_eq!(p.deadline(30 * s), t0 + 30 * s);
        assert_eq!(p.tick(t0 + 30 * s, 30 * s), Beat::Ping);
        assert_eq!(p.tick(t0 + 31 * s, 30 * s), Beat::Idle);
        p.pong(t0 + 31 * s);
        assert_eq!(p.tick(t0 + 60 * s, 30 * s), Beat::Ping);
        assert_eq!(p.tick(t0 + 90 * s, 30 * s), Beat::Ping);
        // Last pong at 31 s: dead at 91 s.
        assert_eq!(p.deadline(30 * s), t0 + 91 * s);
        assert_eq!(p.tick(t0 + 91 * s, 30 * s), Beat::Dead);
    }

    #[test]
    fn keepalive_schedule() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut k = KeepAlive::new(15 * s, t0);
        assert!(!k.due(t0 + 14 * s, 15 * s));
        assert!(k.due(t0 + 15 * s, 15 * s));
        assert_eq!(k.deadline(), t0 + 30 * s);
        assert!(!k.due(t0 + 16 * s, 15 * s));
    }
}
