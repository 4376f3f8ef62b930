//! The hub: topics, per-topic ids, retention, replay, and fan-out to
//! subscribers' outboxes.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::encode::{Message, Transport};
use crate::outbox::Outbox;
use crate::stats::Stats;

// ANCHOR: wake
/// How a runtime is told that a connection has work: new output in its
/// outbox, a held long poll to answer, or a slow consumer to close.
///
/// The core never blocks and never spawns; it calls `wake` from whichever
/// thread published, and the runtime turns that into its own kind of wake-up:
/// a `tokio::sync::Notify`, a `mio::Waker` plus a ready list, a condition
/// variable. `token` is the number the runtime gave the connection, so that one
/// waker can serve a whole event loop.
pub trait Wake: Send + Sync {
    /// Connection `token` has work; make sure it runs soon. Must not block.
    fn wake(&self, token: usize);
}
// ANCHOR_END: wake

/// The part of a connection that publishers reach: its outbox and how to
/// wake it. Shared between the connection and the topics it subscribes to.
pub struct Peer {
    outbox: Mutex<Outbox>,
    waker: Arc<dyn Wake>,
    token: usize,
}

impl fmt::Debug for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Peer").field("token", &self.token).finish_non_exhaustive()
    }
}

impl Peer {
    /// A peer with an empty outbox.
    pub fn new(outbox: Outbox, waker: Arc<dyn Wake>, token: usize) -> Peer {
        Peer { outbox: Mutex::new(outbox), waker, token }
    }

    /// Locks the outbox. A panic elsewhere while holding it leaves the queue
    /// consistent (every mutation is a single step), so poisoning is ignored.
    pub fn outbox(&self) -> MutexGuard<'_, Outbox> {
        self.outbox.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes the connection's runtime.
    pub fn wake(&self) {
        self.waker.wake(self.token);
    }
}

/// One topic: its last id, its retained messages and its live subscribers.
#[derive(Debug)]
pub struct Topic {
    last_id: u64,
    retained: VecDeque<Arc<Message>>,
    /// Live subscribers by key. Each peer's outbox knows its transport, so
    /// an entry is just a key and a pointer: 16 bytes per idle subscriber.
    subscribers: HashMap<u64, Arc<Peer>>,
}

/// A topic and its lock. Connections hold one to unsubscribe without a lookup.
pub type TopicRef = Arc<Mutex<Topic>>;

/// What a subscriber or poller gets back from the retained history.
#[derive(Debug, Default)]
pub struct Replay {
    /// Retained messages newer than the requested id, oldest first.
    pub messages: Vec<Arc<Message>>,
    /// Ids the client asked for that are no longer retained.
    pub missed: Option<(u64, u64)>,
    /// The topic's newest id.
    pub last_id: u64,
}

impl Topic {
    fn new() -> Topic {
        Topic { last_id: 0, retained: VecDeque::new(), subscribers: HashMap::new() }
    }

    // ANCHOR: replay
    /// Retained messages with id > `after`, and the gap if some are gone.
    fn replay(&self, after: u64) -> Replay {
        let first = self.retained.front().map_or(self.last_id + 1, |m| m.id);
        // `after` comes from the client: u64::MAX is a cursor too (nothing follows it).
        let next = after.saturating_add(1);
        let missed = (next < first && after < self.last_id).then(|| (next, first - 1));
        let skip = next.saturating_sub(first).min(self.retained.len() as u64) as usize;
        Replay {
            messages: self.retained.iter().skip(skip).cloned().collect(),
            missed,
            last_id: self.last_id,
        }
    }
    // ANCHOR_END: replay
}

/// Every topic of one server.
///
/// Locking: the map's lock is held only to find or create a topic. A topic's
/// lock is held while a publish assigns its id and pushes it to every
/// outbox, which is what keeps ids gap-free and every subscriber's messages
/// in id order; outbox locks are taken inside it, never the other way round.
/// Waking the subscribers' connections happens after the topic's lock is
/// released ([`publish_to`](Hub::publish_to)).
#[derive(Debug)]
pub struct Hub {
    topics: Mutex<HashMap<String, TopicRef>>,
    retention: usize,
    next_subscriber: std::sync::atomic::AtomicU64,
}

/// A live subscription; dropping it does not unsubscribe (call
/// [`Hub::unsubscribe`]), so that a connection decides when it stops.
#[derive(Debug)]
pub struct Subscription {
    /// The topic subscribed to.
    pub topic: TopicRef,
    /// The subscriber's key in the topic.
    pub key: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Hub {
    /// An empty hub whose topics retain `retention` messages each.
    pub fn new(retention: usize) -> Hub {
        Hub { topics: Mutex::new(HashMap::new()), retention: retention.max(1), next_subscriber: 1.into() }
    }

    fn topic(&self, name: &str) -> TopicRef {
        let mut topics = lock(&self.topics);
        if let Some(t) = topics.get(name) {
            return t.clone();
        }
        let t = Arc::new(Mutex::new(Topic::new()));
        topics.insert(name.to_owned(), t.clone());
        t
    }

    fn existing(&self, name: &str) -> Option<TopicRef> {
        lock(&self.topics).get(name).cloned()
    }

    // ANCHOR: publish
    /// Publishes `data` to `topic`: assigns the next id, encodes the message
    /// once, retains it and pushes the same bytes to every subscriber.
    /// Subscribers over budget under the disconnect policy are removed here
    /// and woken so that their connection closes.
    pub fn publish(&self, topic: &str, data: &str, stats: &Stats) -> u64 {
        self.publish_to(&self.topic(topic), data, stats)
    }

    /// [`publish`](Self::publish) to a topic already looked up (a `/ws`
    /// client publishing to the topic it subscribed to).
    ///
    /// The topic's lock is held while the message gets its id and reaches
    /// every outbox — that is what keeps ids gap-free and each subscriber's
    /// messages in order — but not while subscribers are woken: a wake is
    /// the runtime's business (a `Notify`, an eventfd write, a signal to a
    /// thread) and may cost a system call, which would make every other
    /// publisher to the topic wait. The peers to wake are collected under the
    /// lock and woken after it is released. A connection woken late finds its
    /// messages already in its outbox, in order; one woken for a message it
    /// has already written finds nothing to do.
    pub fn publish_to(&self, topic: &TopicRef, data: &str, stats: &Stats) -> u64 {
        let mut to_wake = Vec::new();
        let id = {
            let mut t = lock(topic);
            t.last_id += 1;
            let message = Arc::new(Message::encode(t.last_id, data));
            if t.retained.len() == self.retention {
                t.retained.pop_front();
            }
            t.retained.push_back(message.clone());

            let mut delivered = 0;
            let mut dropped = 0;
            let mut cut_off = Vec::new();
            for (key, peer) in &t.subscribers {
                let mut outbox = peer.outbox();
                let transport = outbox.transport();
                if transport == Transport::LongPoll {
                    // A held long poll answers from retention: only wake it.
                    drop(outbox);
                    to_wake.push(peer.clone());
                    continue;
                }
                let pushed = outbox.push_message(message.bytes_for(transport).clone(), message.id);
                drop(outbox);
                delivered += 1;
                dropped += pushed.dropped;
                if pushed.overflow {
                    cut_off.push(*key);
                }
                if pushed.wake {
                    to_wake.push(peer.clone());
                }
            }
            for key in &cut_off {
                t.subscribers.remove(key);
            }
            stats.published.fetch_add(1, Relaxed);
            stats.delivered.fetch_add(delivered, Relaxed);
            stats.dropped.fetch_add(dropped as u64, Relaxed);
            stats.slow_disconnects.fetch_add(cut_off.len() as u64, Relaxed);
            message.id
        };
        // The topic is unlocked: other publishers proceed while we wake.
        for peer in &to_wake {
            peer.wake();
        }
        id
    }
    // ANCHOR_END: publish

    // ANCHOR: subscribe
    /// Subscribes `peer` to `topic` with `transport` (which its outbox
    /// remembers). With `resume = Some(id)` the retained messages after `id`
    /// are queued first (preceded by a missed marker if some are gone) under
    /// the same lock that publishes take, so nothing can fall between the
    /// replay and the live stream.
    pub fn subscribe(
        &self,
        topic: &str,
        peer: &Arc<Peer>,
        transport: Transport,
        resume: Option<u64>,
        stats: &Stats,
    ) -> Subscription {
        let topic = self.topic(topic);
        let key = self.next_subscriber.fetch_add(1, Relaxed);
        {
            let mut t = lock(&topic);
            let mut outbox = peer.outbox();
            outbox.set_transport(transport);
            if let (Some(after), Transport::Sse | Transport::Ws) = (resume, transport) {
                let replay = t.replay(after);
                if let Some((from, to)) = replay.missed {
                    outbox.push_control(crate::encode::missed(transport, from, to));
                }
                for m in &replay.messages {
                    outbox.push_replay(m.bytes_for(transport).clone(), m.id);
                }
                stats.delivered.fetch_add(replay.messages.len() as u64, Relaxed);
            }
            drop(outbox);
            t.subscribers.insert(key, peer.clone());
        }
        Subscription { topic, key }
    }
    // ANCHOR_END: subscribe

    /// Removes a subscriber (a no-op if the policy already removed it).
    pub fn unsubscribe(&self, sub: &Subscription) {
        lock(&sub.topic).subscribers.remove(&sub.key);
    }

    /// The retained messages of `topic` after id `after` (a short poll, or a
    /// long poll that has something to return). An unknown topic is empty.
    pub fn poll(&self, topic: &str, after: u64) -> Replay {
        match self.existing(topic) {
            Some(t) => lock(&t).replay(after),
            None => Replay::default(),
        }
    }

    /// The topic's newest id (0 if nothing was published).
    pub fn last_id(&self, topic: &str) -> u64 {
        self.existing(topic).map_or(0, |t| lock(&t).last_id)
    }

    /// Live subscribers of `topic`.
    pub fn subscriber_count(&self, topic: &str) -> usize {
        self.existing(topic).map_or(0, |t| lock(&t).subscribers.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::Policy;
    use std::sync::atomic::AtomicUsize;

    #[derive(Default)]
    struct CountWakes(AtomicUsize);
    impl Wake for CountWakes {
        fn wake(&self, _token: usize) {
            self.0.fetch_add(1, Relaxed);
        }
    }

    fn peer(transport: Transport, budget: usize, policy: Policy) -> (Arc<Peer>, Arc<CountWakes>) {
        let w = Arc::new(CountWakes::default());
        (Arc::new(Peer::new(Outbox::new(transport, budget, policy), w.clone(), 0)), w)
    }

    fn ids(peer: &Peer) -> Vec<String> {
        let mut out = Vec::new();
        let mut outbox = peer.outbox();
        let n = outbox.take(&mut out, usize::MAX);
        outbox.written(n);
        out.iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect()
    }

    #[test]
    fn ids_are_per_topic_and_gap_free() {
        let hub = Hub::new(8);
        let s = Stats::default();
        assert_eq!(hub.publish("a", "x", &s), 1);
        assert_eq!(hub.publish("a", "y", &s), 2);
        assert_eq!(hub.publish("b", "z", &s), 1);
        assert_eq!(hub.last_id("a"), 2);
        assert_eq!(hub.last_id("nope"), 0);
    }

    #[test]
    fn retention_and_missed_range() {
        let hub = Hub::new(3);
        let s = Stats::default();
        for i in 1..=5 {
            hub.publish("t", &format!("m{i}"), &s);
        }
        let r = hub.poll("t", 0);
        assert_eq!(r.messages.iter().map(|m| m.id).collect::<Vec<_>>(), vec![3, 4, 5]);
        assert_eq!(r.missed, Some((1, 2)));
        assert_eq!(r.last_id, 5);
        let r = hub.poll("t", 2);
        assert_eq!(r.messages.len(), 3);
        assert_eq!(r.missed, None);
        let r = hub.poll("t", 4);
        assert_eq!(r.messages.iter().map(|m| m.id).collect::<Vec<_>>(), vec![5]);
        let r = hub.poll("t", 5);
        assert!(r.messages.is_empty());
        assert_eq!(r.missed, None);
        let r = hub.poll("t", 99);
        assert!(r.messages.is_empty());
    }

    #[test]
    fn subscribe_replays_then_goes_live_without_gaps() {
        let hub = Hub::new(3);
        let s = Stats::default();
        for i in 1..=5 {
            hub.publish("t", &format!("m{i}"), &s);
        }
        let (p, wakes) = peer(Transport::Sse, 1 << 20, Policy::Disconnect);
        let sub = hub.subscribe("t", &p, Transport::Sse, Some(1), &s);
        hub.publish("t", "m6", &s);
        let got = ids(&p);
        assert_eq!(got[0], "event: missed\ndata: {\"from\":2,\"to\":2}\n\n");
        assert!(got[1].starts_with("id: 3\n"));
        assert!(got[4].starts_with("id: 6\ndata: m6\n"));
        assert_eq!(got.len(), 5);
        // The outbox already held the replay, so the live push did not wake.
        assert_eq!(wakes.0.load(Relaxed), 0);
        hub.unsubscribe(&sub);
        hub.publish("t", "m7", &s);
        assert!(ids(&p).is_empty());
        assert_eq!(hub.subscriber_count("t"), 0);
    }

    #[test]
    fn every_subscriber_shares_the_same_bytes() {
        let hub = Hub::new(3);
        let s = Stats::default();
        let (a, _) = peer(Transport::Ws, 1 << 20, Policy::Disconnect);
        let (b, _) = peer(Transport::Ws, 1 << 20, Policy::Disconnect);
        hub.subscribe("t", &a, Transport::Ws, None, &s);
        hub.subscribe("t", &b, Transport::Ws, None, &s);
        hub.publish("t", "shared", &s);
        let (mut x, mut y) = (Vec::new(), Vec::new());
        a.outbox().take(&mut x, usize::MAX);
        b.outbox().take(&mut y, usize::MAX);
        assert_eq!(x[0].as_ptr(), y[0].as_ptr(), "one encoding, shared");
    }

    #[test]
    fn slow_subscriber_is_cut_off_and_others_continue() {
        let hub = Hub::new(16);
        let s = Stats::default();
        let (slow, slow_wakes) = peer(Transport::Ws, 100, Policy::Disconnect);
        let (fast, _) = peer(Transport::Ws, 100, Policy::Disconnect);
        hub.subscribe("t", &slow, Transport::Ws, None, &s);
        hub.subscribe("t", &fast, Transport::Ws, None, &s);
        for i in 0..10 {
            hub.publish("t", &format!("message number {i}"), &s);
            assert_eq!(ids(&fast).len(), 1);
        }
        assert!(slow.outbox().overflowed());
        assert_eq!(hub.subscriber_count("t"), 1);
        assert_eq!(s.slow_disconnects.load(Relaxed), 1);
        assert!(slow_wakes.0.load(Relaxed) >= 2);
    }

    /// A waker that records whether the topic was locked when it was called.
    #[derive(Default)]
    struct SeesTopic {
        topic: Mutex<Option<TopicRef>>,
        woken_unlocked: AtomicUsize,
        woken_locked: AtomicUsize,
    }
    impl Wake for SeesTopic {
        fn wake(&self, _token: usize) {
            let topic = lock(&self.topic).clone().expect("set");
            let counter = if topic.try_lock().is_ok() { &self.woken_unlocked } else { &self.woken_locked };
            counter.fetch_add(1, Relaxed);
        }
    }

    #[test]
    fn subscribers_are_woken_after_the_topic_is_unlocked() {
        let hub = Hub::new(3);
        let s = Stats::default();
        let mut seen = Vec::new();
        for transport in [Transport::Sse, Transport::Ws, Transport::LongPoll] {
            let w = Arc::new(SeesTopic::default());
            let p = Arc::new(Peer::new(Outbox::new(transport, 1 << 20, Policy::Disconnect), w.clone(), 0));
            let sub = hub.subscribe("t", &p, transport, None, &s);
            *lock(&w.topic) = Some(sub.topic.clone());
            seen.push((w, p));
        }
        hub.publish("t", "x", &s);
        for (w, _) in &seen {
            assert_eq!(w.woken_unlocked.load(Relaxed), 1);
            assert_eq!(w.woken_locked.load(Relaxed), 0, "no wake while the topic is locked");
        }
    }

    #[test]
    fn long_poll_subscribers_are_woken_not_queued() {
        let hub = Hub::new(3);
        let s = Stats::default();
        let (p, wakes) = peer(Transport::LongPoll, 100, Policy::Disconnect);
        hub.subscribe("t", &p, Transport::LongPoll, None, &s);
        hub.publish("t", "x", &s);
        assert_eq!(wakes.0.load(Relaxed), 1);
        assert!(p.outbox().is_empty());
    }

    /// Found by fuzzing (`labs/core/fuzz`, target `resume_cursor`): a cursor of
    /// u64::MAX overflowed `after + 1` (a panic in debug builds; in release
    /// it wrapped to 0 and replayed the whole retention).
    #[test]
    fn cursor_at_u64_max_replays_nothing() {
        let hub = Hub::new(4);
        let s = Stats::default();
        for _ in 0..6 {
            hub.publish("t", "x", &s);
        }
        let r = hub.poll("t", u64::MAX);
        assert!(r.messages.is_empty());
        assert_eq!((r.missed, r.last_id), (None, 6));
        assert_eq!(hub.poll("t", u64::MAX - 1).messages.len(), 0);
        let r = hub.poll("t", 0);
        assert_eq!((r.messages.len(), r.missed), (4, Some((1, 2))), "ordinary cursors unchanged");
    }
}
