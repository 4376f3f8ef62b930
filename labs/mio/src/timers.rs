//! The deadlines of every connection of one event loop.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

// ANCHOR: timers
/// Deadlines of thousands of connections: a min-heap of `(when, key)` with
/// lazy invalidation.
///
/// Every connection with a deadline (a keep-alive comment, a ping, a held long
/// poll, a closing linger) is *filed* in the heap under one time, and
/// remembers that time itself (`filed`). Nothing is ever removed from the
/// middle of the heap. Instead:
///
/// * when a connection's deadline moves **earlier**, a new entry is pushed;
///   the old one no longer matches what the connection remembers and is
///   skipped when it reaches the top;
/// * when it moves **later** (a pong arrived), nothing happens: the old
///   entry fires early, the core finds nothing due (it checks the time
///   itself), and the connection is filed again under its new deadline;
/// * when a connection closes, its entry stays until it comes up and finds
///   an empty slot (or a newer connection that is not filed under that time).
///
/// Filing and expiring are O(log n). An entry is one `u64`: the deadline in
/// whole milliseconds since the loop started (rounded up, so that it never
/// fires early) in the high 40 bits — 34 years — and the connection's key in
/// the low 24 — 16 million connections per loop. Comparing two entries
/// compares their deadlines first, so the heap needs no comparator, and an
/// idle connection costs it 8 bytes. A timer wheel would make filing O(1),
/// but with a resolution to choose and a cascade to explain; at ten thousand
/// connections a heap is a dozen comparisons deep.
#[derive(Debug)]
pub(crate) struct Timers {
    epoch: Instant,
    heap: BinaryHeap<Reverse<u64>>,
}
// ANCHOR_END: timers

/// Bits of a heap entry that hold the connection's key.
const KEY_BITS: u32 = 24;

/// Connections one loop can file: keys must fit in `KEY_BITS`.
pub(crate) const MAX_KEYS: usize = 1 << KEY_BITS;

/// The latest time an entry can hold (the rest of the 64 bits).
const MAX_AT: u64 = (1 << (64 - KEY_BITS)) - 1;

/// What a connection remembers when it is not filed in the heap. (A `u64`
/// with a sentinel rather than an `Option<u64>`: 8 bytes in every connection
/// instead of 16.)
pub(crate) const NOT_FILED: u64 = u64::MAX;

impl Timers {
    /// No deadlines; times are counted from `epoch`.
    pub(crate) fn new(epoch: Instant) -> Timers {
        Timers { epoch, heap: BinaryHeap::new() }
    }

    // ANCHOR: schedule
    /// Files connection `key` under `deadline`. `filed` is the time the
    /// connection is already filed under, or [`NOT_FILED`] (kept in the
    /// connection).
    pub(crate) fn schedule(&mut self, key: usize, filed: &mut u64, deadline: Option<Instant>) {
        let Some(deadline) = deadline else {
            *filed = NOT_FILED; // An entry still in the heap is now stale.
            return;
        };
        let at = self.millis_ceil(deadline).min(MAX_AT);
        if *filed <= at {
            return; // Fires early, finds nothing due, files the connection again.
        }
        debug_assert!(key < MAX_KEYS, "key {key} does not fit in a timer entry");
        *filed = at;
        self.heap.push(Reverse(at << KEY_BITS | key as u64));
    }
    // ANCHOR_END: schedule

    /// Pops every entry that is due at `now` and passes it to `fire` as
    /// `(key, at)`; `fire` compares `at` with what the connection remembers.
    pub(crate) fn expire(&mut self, now: Instant, mut fire: impl FnMut(usize, u64)) {
        let now = self.millis_floor(now);
        while let Some(&Reverse(entry)) = self.heap.peek() {
            let at = entry >> KEY_BITS;
            if at > now {
                break;
            }
            self.heap.pop();
            fire((entry & (MAX_KEYS as u64 - 1)) as usize, at);
        }
    }

    /// When the earliest entry comes up (perhaps a stale one: the loop wakes,
    /// skips it and sleeps again).
    pub(crate) fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(entry)| self.epoch + Duration::from_millis(entry >> KEY_BITS))
    }

    /// Entries in the heap, stale ones included.
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Rebuilds the heap from the live filings `(key, at)`, dropping every
    /// stale entry. Stale entries normally leave as they come up; a loop
    /// calls this when they outnumber the live ones (many short long polls,
    /// say), so that the heap stays proportional to the connections.
    pub(crate) fn compact(&mut self, live: impl Iterator<Item = (usize, u64)>) {
        self.heap = live.map(|(key, at)| Reverse(at << KEY_BITS | key as u64)).collect();
    }

    fn millis_ceil(&self, t: Instant) -> u64 {
        let d = t.saturating_duration_since(self.epoch);
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        ms.saturating_add(u64::from(d.subsec_nanos() % 1_000_000 != 0))
    }

    fn millis_floor(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fired(timers: &mut Timers, now: Instant) -> Vec<(usize, u64)> {
        let mut out = Vec::new();
        timers.expire(now, |key, at| out.push((key, at)));
        out
    }

    #[test]
    fn never_fires_early_and_in_order() {
        let t0 = Instant::now();
        let ms = Duration::from_millis(1);
        let mut timers = Timers::new(t0);
        let (mut a, mut b) = (NOT_FILED, NOT_FILED);
        timers.schedule(1, &mut a, Some(t0 + 30 * ms + Duration::from_micros(1)));
        timers.schedule(2, &mut b, Some(t0 + 10 * ms));
        assert_eq!(timers.next(), Some(t0 + 10 * ms));
        assert!(fired(&mut timers, t0 + 9 * ms).is_empty());
        assert_eq!(fired(&mut timers, t0 + 10 * ms), vec![(2, 10)]);
        assert!(fired(&mut timers, t0 + 30 * ms).is_empty(), "31 ms after rounding up");
        assert_eq!(fired(&mut timers, t0 + 31 * ms), vec![(1, 31)]);
    }

    #[test]
    fn entries_keep_large_keys_and_far_deadlines() {
        let t0 = Instant::now();
        let mut timers = Timers::new(t0);
        let (mut a, mut b) = (NOT_FILED, NOT_FILED);
        let far = t0 + Duration::from_secs(86_400 * 365);
        timers.schedule(MAX_KEYS - 1, &mut a, Some(far));
        timers.schedule(0, &mut b, Some(far));
        assert_eq!(fired(&mut timers, far), vec![(0, a), (MAX_KEYS - 1, a)]);
    }

    #[test]
    fn earlier_deadlines_push_later_ones_do_not() {
        let t0 = Instant::now();
        let ms = Duration::from_millis(1);
        let mut timers = Timers::new(t0);
        let mut filed = NOT_FILED;
        timers.schedule(7, &mut filed, Some(t0 + 50 * ms));
        timers.schedule(7, &mut filed, Some(t0 + 80 * ms));
        assert_eq!((filed, timers.len()), (50, 1), "a later deadline keeps the early entry");
        timers.schedule(7, &mut filed, Some(t0 + 20 * ms));
        assert_eq!((filed, timers.len()), (20, 2), "an earlier one is pushed");
        // Both come up; only the one the connection remembers is live.
        let live: Vec<_> = fired(&mut timers, t0 + 60 * ms).into_iter().filter(|&(_, at)| at == filed).collect();
        assert_eq!(live, vec![(7, 20)]);
        timers.schedule(7, &mut filed, None);
        assert_eq!(filed, NOT_FILED);
        timers.schedule(7, &mut filed, Some(t0 + 90 * ms));
        let mut other = NOT_FILED;
        timers.schedule(8, &mut other, Some(t0 + 95 * ms));
        timers.compact([(7, filed)].into_iter());
        assert_eq!(timers.len(), 1, "only the live entry is kept");
        assert_eq!(fired(&mut timers, t0 + 100 * ms), vec![(7, 90)]);
    }
}
