//! Per-connection outboxes: what a subscriber has not been sent yet, with a
//! byte budget and a policy for when a consumer falls behind.

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;

use bytes::Bytes;

use crate::encode::{self, Transport};

// ANCHOR: policy
/// What to do with a subscriber whose outbox would exceed its byte budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Close the slow consumer's connection. An SSE client reconnects with
    /// `Last-Event-ID` and gets what it missed replayed from retention; a
    /// WebSocket client reconnects with `?after=`. The default.
    Disconnect,
    /// Discard the oldest queued messages to make room, then tell the client
    /// which ids it missed (see [`encode::missed`]).
    DropOldest,
    /// No budget at all. **A demonstration of the failure**, not a policy: one
    /// stalled reader makes the server hold every message published after it
    /// stalled, and memory grows until the process dies. Used by the
    /// backpressure benchmark to show why the other two exist.
    Unbounded,
}
// ANCHOR_END: policy

impl FromStr for Policy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "disconnect" => Ok(Policy::Disconnect),
            "drop-oldest" => Ok(Policy::DropOldest),
            "unbounded" => Ok(Policy::Unbounded),
            _ => Err(format!("unknown outbox policy '{s}' (expected disconnect, drop-oldest or unbounded)")),
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Policy::Disconnect => "disconnect",
            Policy::DropOldest => "drop-oldest",
            Policy::Unbounded => "unbounded",
        })
    }
}

/// One queued piece of output. `id` is the message id of a published message,
/// or 0 for everything else (responses, control frames, markers), which the
/// drop-oldest policy never discards.
#[derive(Debug)]
struct Chunk {
    bytes: Bytes,
    id: u64,
}

/// The result of pushing a published message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pushed {
    /// The outbox was empty: the connection's writer may be asleep, wake it.
    pub wake: bool,
    /// Messages discarded to make room (drop-oldest), or discarded with the
    /// queue when the subscriber was cut off (disconnect).
    pub dropped: usize,
    /// The subscriber is over budget under [`Policy::Disconnect`]; it must be
    /// removed from its topic and closed.
    pub overflow: bool,
}

// ANCHOR: outbox
/// A connection's queue of unsent output.
///
/// The publisher pushes shared [`Bytes`] handles (no copy); the connection's
/// writer [`take`](Outbox::take)s them in batches, writes them with one
/// vectored write, and reports what the socket accepted with
/// [`written`](Outbox::written). Bytes taken but not yet written still count
/// against the budget, so a writer stuck on a stalled socket cannot hide
/// its backlog.
///
/// The budget bounds the *backlog*, not a message: a message always fits an
/// empty outbox (nothing queued, nothing in flight), however large. The
/// largest legal message, once encoded, can be bigger than the default
/// budget — 64 KiB of control characters is a WebSocket frame of about
/// 384 KiB of `\u00XX` escapes — and without this rule publishing it would
/// cut off (or, under drop-oldest, skip) every subscriber, however fast it
/// reads. So the most an outbox holds is the budget, or one message.
///
/// An empty outbox allocates nothing: the queue exists only while it holds
/// something, and is given back as soon as the writer has taken it all. An
/// idle subscriber costs the 24 bytes of this struct.
#[derive(Debug)]
pub struct Outbox {
    /// What is queued; `None` whenever nothing is.
    queue: Option<Box<Queue>>,
    in_flight: usize,
    /// The byte budget (budgets of 4 GiB and more are clamped to 4 GiB).
    budget: u32,
    policy: Policy,
    transport: Transport,
    overflowed: bool,
}

/// The queued part of an outbox, allocated only while there is one: never
/// empty (it holds a chunk or a missed range).
#[derive(Debug, Default)]
struct Queue {
    chunks: VecDeque<Chunk>,
    /// Bytes in `chunks`.
    bytes: usize,
    /// Ids discarded by drop-oldest that the client has not been told about.
    missed: Option<(u64, u64)>,
}
// ANCHOR_END: outbox

impl Outbox {
    /// An empty outbox for a subscriber of `transport`.
    pub fn new(transport: Transport, budget: usize, policy: Policy) -> Outbox {
        Outbox {
            queue: None,
            in_flight: 0,
            budget: u32::try_from(budget).unwrap_or(u32::MAX),
            policy,
            transport,
            overflowed: false,
        }
    }

    /// Changes the transport: which encoding of a message is pushed and
    /// how missed markers are written (set when a connection subscribes).
    pub fn set_transport(&mut self, transport: Transport) {
        self.transport = transport;
    }

    /// The subscriber's transport.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// Bytes waiting or being written.
    pub fn pending(&self) -> usize {
        self.queue.as_ref().map_or(0, |q| q.bytes) + self.in_flight
    }

    /// Nothing is queued (bytes may still be in flight).
    pub fn is_empty(&self) -> bool {
        self.queue.is_none()
    }

    /// The subscriber was cut off by [`Policy::Disconnect`].
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// The queue, allocated if the outbox was empty.
    fn queue(&mut self) -> &mut Queue {
        self.queue.get_or_insert_with(Box::default)
    }

    /// Queues output that is not a published message (a response, a control
    /// frame): it is never dropped and never triggers the policy.
    pub fn push_control(&mut self, bytes: Bytes) -> bool {
        let wake = self.is_empty();
        self.queue().push(Chunk { bytes, id: 0 });
        wake
    }

    // ANCHOR: push
    /// Queues a published message under the budget and policy.
    pub fn push_message(&mut self, bytes: Bytes, id: u64) -> Pushed {
        let mut pushed = Pushed { wake: self.is_empty(), dropped: 0, overflow: false };
        if self.overflowed {
            return Pushed { wake: false, ..pushed };
        }
        let len = bytes.len();
        let budget = self.budget as usize;
        // The budget bounds the backlog: into an empty outbox, anything fits.
        let fits = |pending: usize| pending == 0 || pending + len <= budget;
        if self.policy != Policy::Unbounded && !fits(self.pending()) {
            match self.policy {
                Policy::Disconnect => {
                    pushed.dropped = self.clear() + 1;
                    self.overflowed = true;
                    pushed.overflow = true;
                    pushed.wake = true;
                    return pushed;
                }
                Policy::DropOldest => {
                    // Discard the oldest messages until the new one fits.
                    while !fits(self.pending()) {
                        let Some(queue) = self.queue.as_mut() else { break };
                        let Some(pos) = queue.chunks.iter().position(|c| c.id != 0) else { break };
                        let old = queue.chunks.remove(pos).expect("position is in range");
                        queue.bytes -= old.bytes.len();
                        queue.note_missed(old.id);
                        pushed.dropped += 1;
                    }
                    if !fits(self.pending()) {
                        // Still no room (the writer holds too much in flight):
                        // the new message is the one that is missed.
                        self.queue().note_missed(id);
                        pushed.dropped += 1;
                        return pushed;
                    }
                }
                Policy::Unbounded => unreachable!(),
            }
        }
        self.queue().push(Chunk { bytes, id });
        pushed
    }
    // ANCHOR_END: push

    /// Queues a message as part of a replay: replayed bytes are already held by
    /// the topic's retention, so they are queued regardless of the budget (but
    /// count against it for the live messages that follow).
    pub fn push_replay(&mut self, bytes: Bytes, id: u64) {
        self.queue().push(Chunk { bytes, id });
    }

    // ANCHOR: take
    /// Moves queued output into `out` for the writer, up to about `max` bytes
    /// (at least one chunk). Returns the number of bytes taken.
    pub fn take(&mut self, out: &mut Vec<Bytes>, max: usize) -> usize {
        let Some(queue) = self.queue.as_mut() else { return 0 };
        let mut taken = 0;
        if let Some((from, to)) = queue.missed.take() {
            let marker = encode::missed(self.transport, from, to);
            taken += marker.len();
            out.push(marker);
        }
        while taken < max {
            let Some(chunk) = queue.chunks.pop_front() else { break };
            taken += chunk.bytes.len();
            queue.bytes -= chunk.bytes.len();
            out.push(chunk.bytes);
        }
        self.in_flight += taken;
        if queue.chunks.is_empty() {
            // Everything was taken: give the queue's memory back.
            self.queue = None;
        }
        taken
    }

    /// The writer wrote `n` of the bytes it took.
    pub fn written(&mut self, n: usize) {
        self.in_flight = self.in_flight.saturating_sub(n);
    }
    // ANCHOR_END: take

    /// Discards everything queued (the connection is closing). Returns the
    /// number of published messages discarded.
    pub fn clear(&mut self) -> usize {
        self.queue.take().map_or(0, |q| q.chunks.iter().filter(|c| c.id != 0).count())
    }
}

impl Queue {
    fn push(&mut self, chunk: Chunk) {
        self.bytes += chunk.bytes.len();
        self.chunks.push_back(chunk);
    }

    fn note_missed(&mut self, id: u64) {
        self.missed = Some(match self.missed {
            None => (id, id),
            Some((from, to)) => (from.min(id), to.max(id)),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: u64, len: usize) -> Bytes {
        Bytes::from(vec![id as u8; len])
    }

    fn drain(o: &mut Outbox) -> Vec<Bytes> {
        let mut out = Vec::new();
        let n = o.take(&mut out, usize::MAX);
        o.written(n);
        out
    }

    #[test]
    fn an_idle_outbox_holds_no_memory() {
        let mut o = Outbox::new(Transport::Sse, 1000, Policy::DropOldest);
        assert!(o.queue.is_none());
        o.push_message(msg(1, 10), 1);
        o.push_control(msg(0, 10));
        assert!(o.queue.is_some());
        assert_eq!(drain(&mut o).len(), 2);
        assert!(o.queue.is_none(), "everything taken: the queue is given back");
        assert!(size_of::<Outbox>() <= 24, "an idle subscriber's outbox is {} bytes", size_of::<Outbox>());
    }

    #[test]
    fn wakes_only_when_it_was_empty() {
        let mut o = Outbox::new(Transport::Ws, 1000, Policy::Disconnect);
        assert!(o.push_message(msg(1, 10), 1).wake);
        assert!(!o.push_message(msg(2, 10), 2).wake);
        assert_eq!(drain(&mut o).len(), 2);
        assert!(o.push_message(msg(3, 10), 3).wake);
    }

    #[test]
    fn in_flight_bytes_count_against_the_budget() {
        let mut o = Outbox::new(Transport::Ws, 100, Policy::Disconnect);
        o.push_message(msg(1, 60), 1);
        let mut out = Vec::new();
        assert_eq!(o.take(&mut out, usize::MAX), 60);
        assert_eq!(o.pending(), 60);
        // The socket has not accepted the first 60 bytes: 60 + 50 > 100.
        let p = o.push_message(msg(2, 50), 2);
        assert!(p.overflow);
        assert!(o.overflowed());
    }

    #[test]
    fn disconnect_policy_drops_the_queue() {
        let mut o = Outbox::new(Transport::Sse, 100, Policy::Disconnect);
        for id in 1..=3 {
            assert!(!o.push_message(msg(id, 30), id).overflow);
        }
        let p = o.push_message(msg(4, 30), 4);
        assert_eq!(p, Pushed { wake: true, dropped: 4, overflow: true });
        assert_eq!(o.pending(), 0);
        // Once cut off, nothing more is queued.
        assert!(!o.push_message(msg(5, 1), 5).wake);
        assert!(drain(&mut o).is_empty());
    }

    #[test]
    fn drop_oldest_keeps_the_newest_and_reports_the_gap() {
        let mut o = Outbox::new(Transport::Ws, 100, Policy::DropOldest);
        o.push_control(Bytes::from_static(b"ctl"));
        for id in 1..=5 {
            o.push_message(msg(id, 30), id);
        }
        // 3 + 5*30 = 153 > 100: messages 1 and 2 were dropped, ctl kept.
        let out = drain(&mut o);
        let missed: serde_json::Value = serde_json::from_slice(&out[0][2..]).unwrap();
        assert_eq!(missed["missed"]["from"], 1);
        assert_eq!(missed["missed"]["to"], 2);
        assert_eq!(&out[1][..], b"ctl");
        assert_eq!(out[2][0], 3);
        assert_eq!(out.len(), 5);
    }

    #[test]
    fn drop_oldest_drops_the_new_message_when_nothing_else_can_go() {
        let mut o = Outbox::new(Transport::Sse, 100, Policy::DropOldest);
        o.push_message(msg(1, 90), 1);
        let mut out = Vec::new();
        o.take(&mut out, usize::MAX); // 90 bytes in flight
        let p = o.push_message(msg(2, 20), 2);
        assert_eq!(p.dropped, 1);
        o.written(90);
        let out = drain(&mut o);
        assert_eq!(&out[0][..], b"event: missed\ndata: {\"from\":2,\"to\":2}\n\n");
    }

    /// README of `labs/core/fuzz`, "Findings": the largest legal message,
    /// encoded, may exceed the budget; it must still reach a subscriber that
    /// has read everything, under either policy — and count against the
    /// budget for what follows.
    #[test]
    fn a_message_larger_than_the_budget_fits_an_empty_outbox() {
        for policy in [Policy::Disconnect, Policy::DropOldest] {
            let mut o = Outbox::new(Transport::Ws, 100, policy);
            let p = o.push_message(msg(1, 300), 1);
            assert_eq!(p, Pushed { wake: true, dropped: 0, overflow: false }, "{policy}");
            assert!(!o.overflowed());
            assert_eq!(o.pending(), 300);
            // Behind it, the budget holds as before.
            let p = o.push_message(msg(2, 10), 2);
            assert!(p.overflow || p.dropped == 1, "{policy}: {p:?}");
            if policy == Policy::DropOldest {
                // Dropping the big one makes the outbox empty: the new one fits.
                let out = drain(&mut o);
                assert_eq!(out.len(), 2, "a missed marker and message 2");
                assert_eq!(out[1][0], 2);
            }
        }
        // Not into an outbox that holds anything, even a control frame.
        let mut o = Outbox::new(Transport::Ws, 100, Policy::Disconnect);
        o.push_control(Bytes::from_static(b"pong"));
        assert!(o.push_message(msg(1, 300), 1).overflow);
    }

    #[test]
    fn unbounded_never_drops() {
        let mut o = Outbox::new(Transport::Ws, 10, Policy::Unbounded);
        for id in 1..=100 {
            let p = o.push_message(msg(id, 100), id);
            assert_eq!(p.dropped, 0);
            assert!(!p.overflow);
        }
        assert_eq!(o.pending(), 100 * 100);
    }

    #[test]
    fn take_respects_max_but_takes_at_least_one() {
        let mut o = Outbox::new(Transport::Ws, 10_000, Policy::Disconnect);
        for id in 1..=10 {
            o.push_message(msg(id, 100), id);
        }
        let mut out = Vec::new();
        assert_eq!(o.take(&mut out, 250), 300);
        assert_eq!(out.len(), 3);
        let mut out = Vec::new();
        assert_eq!(o.take(&mut out, 1), 100);
    }
}
