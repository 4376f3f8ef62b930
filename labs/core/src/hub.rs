//! The hub: topics, per-topic ids and their epochs, retention, replay, and
//! fan-out to subscribers' outboxes; the limit on topics and their eviction;
//! and the stop that makes publishing refuse what it could no longer deliver.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::broker::{Applied, Broker, Loaded};
use crate::encode::{Message, Transport};
use crate::outbox::Outbox;
use crate::stats::{Refusal, Stats};

/// How long a sweep for evictable topics keeps the next one from running. A
/// sweep walks every topic and frees every idle one at once; without a pause,
/// a flood of new topic names at the limit would cost a walk each (under the
/// map's lock, which every lookup needs), with it, one lookup each.
pub const SWEEP_PAUSE: Duration = Duration::from_secs(1);

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

    /// Connections `tokens` have work: one publish's subscribers that share
    /// this waker (one event loop's). A runtime that keeps a ready list
    /// takes them all in one step, so its loop is woken once with every
    /// one of them ready — not once per connection while the publisher is
    /// still adding them, from another thread (a broker's). By default,
    /// one `wake` each.
    fn wake_all(&self, tokens: &[usize]) {
        for &token in tokens {
            self.wake(token);
        }
    }
}
// ANCHOR_END: wake

/// Wakes `peers` with one [`Wake::wake_all`] per waker: a topic's
/// subscribers on one event loop share its waker, so a publish wakes each
/// loop once, with all of its connections.
fn wake_peers(peers: &mut [Arc<Peer>]) {
    // Group by waker (the order within a group is kept).
    peers.sort_by_key(|p| Arc::as_ptr(&p.waker).cast::<()>() as usize);
    let mut tokens = Vec::new();
    let mut rest = &peers[..];
    while let Some(first) = rest.first() {
        let same = rest.iter().take_while(|p| Arc::ptr_eq(&p.waker, &first.waker)).count();
        tokens.clear();
        tokens.extend(rest[..same].iter().map(|p| p.token));
        first.waker.wake_all(&tokens);
        rest = &rest[same..];
    }
}

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

    /// How to wake the connection (for a [`Ticket`](crate::broker::Ticket)).
    pub fn waker(&self) -> Arc<dyn Wake> {
        self.waker.clone()
    }

    /// The connection's number, for its waker.
    pub fn token(&self) -> usize {
        self.token
    }
}

// ANCHOR: epoch
/// A resume position as a client sends it: `E-N` (id `N` of epoch `E`), or a
/// bare `N`, which means "id `N` of the current epoch".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cursor {
    /// The epoch the id belongs to; `None`: whatever the topic's is now.
    pub epoch: Option<String>,
    /// The last id the client has.
    pub id: u64,
}

impl Cursor {
    /// A bare id (no epoch).
    pub fn at(id: u64) -> Cursor {
        Cursor { epoch: None, id }
    }

    /// Parses `E-N` or `N`. An epoch is 1 to 16 characters of `0-9 A-Z a-z`,
    /// an id a whole number; anything else is `None` (the caller's `400`).
    pub fn parse(text: &str) -> Option<Cursor> {
        let (epoch, id) = match text.split_once('-') {
            Some((e, id)) if is_epoch(e) => (Some(e.to_owned()), id),
            Some(_) => return None,
            None => (None, text),
        };
        let id = Some(id).filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))?.parse().ok()?;
        Some(Cursor { epoch, id })
    }

    /// Whether this cursor belongs to another sequence than `epoch`'s.
    pub fn is_other_epoch(&self, epoch: &str) -> bool {
        self.epoch.as_deref().is_some_and(|e| e != epoch)
    }
}

/// The contract's epoch rule: 1 to 16 characters of `0-9 A-Z a-z`.
pub fn is_epoch(s: &str) -> bool {
    (1..=16).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A fresh random epoch of 8 characters: 62⁸ (about 2·10¹⁴) values, so two
/// starts of a server practically never share one.
///
/// The core has no I/O, and asking the OS for random bytes is I/O, so it
/// borrows the randomness the standard library already drew: every
/// [`RandomState`](std::hash::RandomState) is keyed from the OS's random
/// source once per thread (then varied per instance), which is exactly "new
/// on every start of the process".
pub fn new_epoch() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut x = std::hash::RandomState::new().build_hasher().finish();
    (0..8)
        .map(|_| {
            let c = BASE62[(x % 62) as usize] as char;
            x /= 62;
            c
        })
        .collect()
}

/// `n` in base 62 (at least one digit).
fn base62(mut n: u64) -> String {
    let mut digits = Vec::new();
    loop {
        digits.push(BASE62[(n % 62) as usize]);
        n /= 62;
        if n == 0 {
            break;
        }
    }
    digits.reverse();
    String::from_utf8(digits).expect("ASCII")
}
// ANCHOR_END: epoch

/// One topic: its epoch and last id, its retained messages and its live
/// subscribers.
#[derive(Debug)]
pub struct Topic {
    /// Its name (what a broker knows it by).
    name: Arc<str>,
    /// The epoch its ids belong to (see [`Hub::epoch_for_new_topics`]).
    epoch: Arc<str>,
    last_id: u64,
    retained: VecDeque<Arc<Message>>,
    /// Live subscribers by key. Each peer's outbox knows its transport, so
    /// an entry is just a key and a pointer: 16 bytes per idle subscriber.
    subscribers: HashMap<u64, Arc<Peer>>,
    /// Subscribers that resumed from an id of this epoch that this process
    /// has not numbered yet, with that id: with a broker, the client came
    /// from another process that is ahead (pub/sub brings the ids here a
    /// moment later). They get only what follows it. Empty almost always.
    ahead: HashMap<u64, u64>,
    /// Named subscriptions (`client=`), by name, with how many are live:
    /// what `/presence` lists. Unnamed subscribers cost nothing here.
    present: HashMap<Arc<str>, usize>,
    /// When its newest message was published (its creation, before any):
    /// the topic may be evicted `topic_ttl` after this, once nobody holds it.
    touched: Instant,
    /// With a broker: filled from it ([`Broker::load`]). Until then it may
    /// not be read, nor take messages from the broker.
    loaded: bool,
}

/// A topic and its lock. Connections hold one to unsubscribe without a lookup.
pub type TopicRef = Arc<Mutex<Topic>>;

/// The name of a topic.
pub fn name_of(topic: &TopicRef) -> Arc<str> {
    lock(topic).name.clone()
}

/// What a subscriber or poller gets back from the retained history.
#[derive(Debug, Default)]
pub struct Replay {
    /// The topic's epoch: the one every id here belongs to.
    pub epoch: Arc<str>,
    /// The client's cursor was from another epoch: it is told so, and gets
    /// the current epoch from its beginning.
    pub reset: bool,
    /// Retained messages newer than the requested id, oldest first.
    pub messages: Vec<Arc<Message>>,
    /// Ids the client asked for that are no longer retained.
    pub missed: Option<(u64, u64)>,
    /// The topic's newest id.
    pub last_id: u64,
}

impl Topic {
    fn new(name: &str, epoch: Arc<str>, now: Instant) -> Topic {
        Topic { name: name.into(), epoch, last_id: 0, retained: VecDeque::new(), subscribers: HashMap::new(), ahead: HashMap::new(), present: HashMap::new(), touched: now, loaded: false }
    }

    /// What a client resuming at `cursor` gets: from another epoch, a reset
    /// and everything retained; otherwise what follows its id.
    fn resume(&self, cursor: &Cursor) -> Replay {
        if cursor.is_other_epoch(&self.epoch) {
            return Replay { reset: true, ..self.replay(0) };
        }
        self.replay(cursor.id)
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
            epoch: self.epoch.clone(),
            reset: false,
            messages: self.retained.iter().skip(skip).cloned().collect(),
            missed,
            last_id: self.last_id,
        }
    }
    // ANCHOR_END: replay
}

/// Every topic of one server.
///
/// Locking: the map's lock is held only to find or create a topic (and,
/// when the map is full, to evict idle ones). A topic's lock is held while a
/// publish assigns its id and pushes it to every outbox, which is what keeps
/// ids gap-free and every subscriber's messages in id order; outbox locks are
/// taken inside it, never the other way round. The map's lock may be taken
/// before a topic's, never after. Waking the subscribers' connections
/// happens after the topic's lock is released ([`publish_to`](Hub::publish_to)).
#[derive(Debug)]
pub struct Hub {
    topics: Mutex<Topics>,
    retention: usize,
    max_topics: usize,
    topic_ttl: Duration,
    next_subscriber: AtomicU64,
    /// Set once, when the server begins to stop ([`begin_stop`](Hub::begin_stop)).
    stopping: AtomicBool,
    /// This hub's random epoch, drawn when it was made ([`new_epoch`]).
    epoch: String,
    /// The broker that numbers messages, if the server has one.
    broker: Option<Arc<dyn Broker>>,
}

/// The map of topics by name, and when the next sweep for evictable topics
/// may run.
#[derive(Debug, Default)]
struct Topics {
    by_name: HashMap<String, TopicRef>,
    next_sweep: Option<Instant>,
    /// Sweeps that evicted at least one topic: a topic made after the `g`th
    /// has the epoch `{hub epoch}{g in base 62}`.
    generation: u64,
}

/// A live subscription; dropping it does not unsubscribe (call
/// [`Hub::unsubscribe`]), so that a connection decides when it stops.
#[derive(Debug)]
pub struct Subscription {
    /// The topic subscribed to.
    pub topic: TopicRef,
    /// The subscriber's key in the topic.
    pub key: u64,
    /// Its name in `/presence`, if it gave one.
    pub client: Option<Arc<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Hub {
    /// An empty hub whose topics retain `retention` messages each, with no
    /// limit on topics (the unit tests' hub; a server's is [`with_limits`](Hub::with_limits)).
    pub fn new(retention: usize) -> Hub {
        Hub::with_limits(retention, usize::MAX, Duration::MAX)
    }

    /// An empty hub that holds at most `max_topics` topics, and may evict a
    /// topic nobody holds once it has had no message for `topic_ttl`.
    pub fn with_limits(retention: usize, max_topics: usize, topic_ttl: Duration) -> Hub {
        Hub {
            topics: Mutex::new(Topics::default()),
            retention: retention.max(1),
            max_topics,
            topic_ttl,
            next_subscriber: 1.into(),
            stopping: AtomicBool::new(false),
            epoch: new_epoch(),
            broker: None,
        }
    }

    /// The same hub, numbering through `broker` ([`crate::broker`]).
    pub fn with_broker(mut self, broker: Arc<dyn Broker>) -> Hub {
        self.broker = Some(broker);
        self
    }

    /// The broker, if the hub has one.
    pub fn broker(&self) -> Option<&Arc<dyn Broker>> {
        self.broker.as_ref()
    }

    /// The same hub with a chosen epoch instead of a random one (tests).
    pub fn with_epoch(mut self, epoch: &str) -> Hub {
        assert!(is_epoch(epoch) && epoch.len() <= 8, "an epoch of 1 to 8 characters of 0-9 A-Z a-z");
        self.epoch = epoch.to_owned();
        self
    }

    // ANCHOR: epoch_for_new_topics
    /// The epoch a topic created now gets.
    ///
    /// A hub that keeps its topics in memory loses them twice: when the
    /// process ends, and when it evicts an idle topic. Both start the topic's
    /// ids again at 1, so both must start a new epoch. The first is the
    /// hub's random epoch, drawn at every start. For the second, the hub
    /// counts its evicting sweeps: a topic created after the `g`th gets the
    /// hub's epoch followed by `g` in base 62. A topic evicted in sweep `g`
    /// can only come back after it, with a larger `g`: a new epoch, without
    /// remembering anything about the topics it forgot. Until the first
    /// eviction, every topic of the server has the server's epoch.
    fn epoch_for_new_topics(&self, topics: &Topics) -> Arc<str> {
        match topics.generation {
            0 => self.epoch.as_str().into(),
            g => format!("{}{}", self.epoch, base62(g)).into(),
        }
    }
    // ANCHOR_END: epoch_for_new_topics

    // ANCHOR: topic
    /// The topic named `name`, created if it does not exist — unless the hub
    /// already holds `max_topics`: then idle topics are evicted to make room
    /// (`evict_idle`, below), and if none is idle the request is
    /// refused ([`Refusal::Topics`], a `503`). Below the limit nothing is
    /// ever evicted.
    ///
    /// The handle returned keeps the topic from being evicted for as long as
    /// it lives: that is what makes it safe to use after the map's lock is
    /// released.
    pub fn topic(&self, name: &str, now: Instant, stats: &Stats) -> Result<TopicRef, Refusal> {
        let topic = self.topic_unloaded(name, now, stats)?;
        self.load(name, &topic, stats)?;
        Ok(topic)
    }
    // ANCHOR_END: topic

    // ANCHOR: load
    /// With a broker, fills a topic this process has just created from what
    /// the broker holds, once: its epoch, newest id and retained messages.
    /// Under the topic's lock (not the map's): messages the broker delivers
    /// meanwhile wait for it, and then find it loaded — any the load already
    /// read are duplicates, and dropped.
    fn load(&self, name: &str, topic: &TopicRef, stats: &Stats) -> Result<(), Refusal> {
        let Some(broker) = &self.broker else { return Ok(()) };
        let mut t = lock(topic);
        if t.loaded {
            return Ok(());
        }
        let Loaded { epoch, last_id, messages } = broker.load(name).inspect_err(|&why| stats.refused(why))?;
        if let Some(epoch) = epoch {
            t.epoch = epoch.into();
        }
        t.last_id = last_id;
        let skip = messages.len().saturating_sub(self.retention);
        for (id, data) in messages.into_iter().skip(skip) {
            let message = Arc::new(Message::new(t.epoch.clone(), id, &data));
            t.retained.push_back(message);
        }
        t.loaded = true;
        Ok(())
    }
    // ANCHOR_END: load

    fn topic_unloaded(&self, name: &str, now: Instant, stats: &Stats) -> Result<TopicRef, Refusal> {
        let mut topics = lock(&self.topics);
        if let Some(t) = topics.by_name.get(name) {
            return Ok(t.clone());
        }
        if topics.by_name.len() >= self.max_topics && self.evict_idle(&mut topics, now, stats) == 0 {
            stats.refused(Refusal::Topics);
            return Err(Refusal::Topics);
        }
        let mut topic = Topic::new(name, self.epoch_for_new_topics(&topics), now);
        topic.loaded = self.broker.is_none();
        let t = Arc::new(Mutex::new(topic));
        topics.by_name.insert(name.to_owned(), t.clone());
        stats.topics.fetch_add(1, Relaxed);
        Ok(t)
    }

    // ANCHOR: evict
    /// Forgets every idle topic and returns how many: a topic is idle when
    /// no one but the map holds a handle to it — no subscription, no request
    /// in the middle of using it — and its newest message (or its creation)
    /// is at least `topic_ttl` old.
    ///
    /// "No one else holds a handle" is read from the handle's reference
    /// count, under the map's lock: a new handle can only be cloned from the
    /// map, which this holds, so the count cannot rise while it looks. That
    /// is why nothing can publish into, or subscribe to, a topic that is
    /// being forgotten. An evicted topic has no subscriber to surprise; a
    /// client that comes back later finds a new topic whose ids start again
    /// at 1 (the book's chapter "Bad input and hostile clients" says what a
    /// resume then gets).
    ///
    /// A walk over every topic, under the map's lock: it runs only when the
    /// map is full, and at most once per [`SWEEP_PAUSE`].
    fn evict_idle(&self, topics: &mut Topics, now: Instant, stats: &Stats) -> usize {
        if topics.next_sweep.is_some_and(|at| now < at) {
            return 0;
        }
        let before = topics.by_name.len();
        let ttl = self.topic_ttl;
        topics.by_name.retain(|_, topic| {
            if Arc::strong_count(topic) > 1 {
                return true; // Held: subscribed to, or in use by a request.
            }
            let t = lock(topic); // Never waits: nobody else holds it.
            !t.subscribers.is_empty() || now.saturating_duration_since(t.touched) < ttl
        });
        let evicted = before - topics.by_name.len();
        topics.next_sweep = Some(now + SWEEP_PAUSE);
        if evicted > 0 {
            topics.generation += 1;
        }
        stats.topics.fetch_sub(evicted as i64, Relaxed);
        stats.evicted_topics.fetch_add(evicted as u64, Relaxed);
        evicted
    }
    // ANCHOR_END: evict

    fn existing(&self, name: &str) -> Option<TopicRef> {
        lock(&self.topics).by_name.get(name).cloned()
    }

    /// Topics held now.
    pub fn topic_count(&self) -> usize {
        lock(&self.topics).by_name.len()
    }

    // ANCHOR: begin_stop
    /// The server begins to stop: from now on every publish is refused
    /// ([`Refusal::Stopping`]).
    ///
    /// Set before any connection leaves its topic because of the stop
    /// ([`Connection::shutdown`](crate::Connection::shutdown) calls it
    /// first), and read by [`publish_to`](Hub::publish_to) under the topic's
    /// lock. A subscriber's leaving takes that lock too, so every publish is
    /// on one side of it: either it took the lock first — it saw "not
    /// stopping", and its message is already in the subscriber's outbox,
    /// which a closing connection still flushes — or it took it after, and
    /// then it sees "stopping" and is refused. No publish is acknowledged
    /// that a subscriber connected when the stop began will not get.
    pub fn begin_stop(&self) {
        self.stopping.store(true, SeqCst);
    }
    // ANCHOR_END: begin_stop

    /// Whether [`begin_stop`](Hub::begin_stop) was called.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(SeqCst)
    }

    // ANCHOR: publish
    /// Publishes `data` to `topic` (created if needed, see
    /// [`topic`](Hub::topic)): assigns the next id, encodes the message once,
    /// retains it and pushes the same bytes to every subscriber. Subscribers
    /// over budget under the disconnect policy are removed here and woken so
    /// that their connection closes. Refused when the topic would be one too
    /// many, or the server is stopping.
    pub fn publish(&self, topic: &str, data: &str, now: Instant, stats: &Stats) -> Result<u64, Refusal> {
        if self.is_stopping() {
            // Only a shortcut: the check that counts is under the topic's lock.
            stats.refused(Refusal::Stopping);
            return Err(Refusal::Stopping);
        }
        self.publish_to(&self.topic(topic, now, stats)?, data, now, stats)
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
    pub fn publish_to(&self, topic: &TopicRef, data: &str, now: Instant, stats: &Stats) -> Result<u64, Refusal> {
        let mut to_wake = Vec::new();
        let id = {
            let mut t = lock(topic);
            // Under the topic's lock: see `begin_stop`.
            if self.is_stopping() {
                stats.refused(Refusal::Stopping);
                return Err(Refusal::Stopping);
            }
            t.last_id += 1;
            let message = Arc::new(Message::new(t.epoch.clone(), t.last_id, data));
            self.fan_out(&mut t, message, now, stats, &mut to_wake)
        };
        // The topic is unlocked: other publishers proceed while we wake.
        wake_peers(&mut to_wake);
        Ok(id)
    }
    // ANCHOR_END: publish

    /// Retains `message` (the topic's newest) and pushes it to every
    /// subscriber; collects the peers to wake once the topic is unlocked.
    fn fan_out(
        &self,
        t: &mut Topic,
        message: Arc<Message>,
        now: Instant,
        stats: &Stats,
        to_wake: &mut Vec<Arc<Peer>>,
    ) -> u64 {
        {
            t.touched = now;
            if t.retained.len() == self.retention {
                t.retained.pop_front();
            }
            t.retained.push_back(message.clone());

            let mut delivered = 0;
            let mut dropped = 0;
            let mut cut_off = Vec::new();
            for (key, peer) in &t.subscribers {
                if t.ahead.get(key).is_some_and(|&after| message.id <= after) {
                    continue; // It resumed past this id: it has it.
                }
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
                t.ahead.remove(key);
            }
            if !t.ahead.is_empty() {
                t.ahead.retain(|_, after| *after > message.id);
            }
            stats.published.fetch_add(1, Relaxed);
            stats.delivered.fetch_add(delivered, Relaxed);
            stats.dropped.fetch_add(dropped as u64, Relaxed);
            stats.slow_disconnects.fetch_add(cut_off.len() as u64, Relaxed);
            message.id
        }
    }

    // ANCHOR: apply
    /// A message the broker numbered — published on this process or another
    /// — for the subscribers of this one. Delivered only in id order: the
    /// next id is retained and fanned out; an older one is a duplicate; a
    /// newer one means some are missing, and the broker is told which
    /// ([`Applied::Gap`]) to fetch them first. A message of another epoch
    /// means the broker lost the topic and started it again: every
    /// subscriber gets the reset signal, and the retained history of the old
    /// epoch is dropped — unless the topic has had no message here yet (the
    /// broker had none of it when it was loaded): then the broker's epoch is
    /// simply its first.
    pub fn apply(&self, topic: &str, epoch: &str, id: u64, data: &str, now: Instant, stats: &Stats) -> Applied {
        let Some(topic) = self.existing(topic) else { return Applied::NotHeld };
        let mut to_wake = Vec::new();
        let applied = {
            let mut t = lock(&topic);
            if !t.loaded {
                return Applied::NotHeld; // Its loader reads it from the broker.
            }
            if *t.epoch != *epoch && t.last_id == 0 {
                // Nothing numbered here yet (the broker had no data when the
                // topic was loaded): its first epoch, nothing to reset.
                t.epoch = epoch.into();
            } else if *t.epoch != *epoch {
                t.epoch = epoch.into();
                t.last_id = 0;
                t.retained.clear();
                t.ahead.clear();
                for peer in t.subscribers.values() {
                    let mut outbox = peer.outbox();
                    let transport = outbox.transport();
                    if transport != Transport::LongPoll {
                        outbox.push_control(crate::encode::reset(transport, epoch));
                    }
                    drop(outbox);
                    to_wake.push(peer.clone());
                }
            }
            if id <= t.last_id {
                Applied::Duplicate
            } else if id > t.last_id + 1 {
                Applied::Gap { from: t.last_id + 1, to: id - 1 }
            } else {
                t.last_id = id;
                let message = Arc::new(Message::new(t.epoch.clone(), id, data));
                self.fan_out(&mut t, message, now, stats, &mut to_wake);
                Applied::Delivered
            }
        };
        wake_peers(&mut to_wake);
        applied
    }

    /// Ids up to `to` of `topic` are gone from the broker too: its
    /// subscribers get the missed signal for them, and the topic continues
    /// after `to`.
    pub fn skip(&self, topic: &str, to: u64) {
        let Some(topic) = self.existing(topic) else { return };
        let mut to_wake = Vec::new();
        {
            let mut t = lock(&topic);
            if to <= t.last_id {
                return;
            }
            let from = t.last_id + 1;
            t.last_id = to;
            for peer in t.subscribers.values() {
                let mut outbox = peer.outbox();
                let transport = outbox.transport();
                if transport != Transport::LongPoll {
                    outbox.push_control(crate::encode::missed(transport, from, to));
                }
                drop(outbox);
                to_wake.push(peer.clone());
            }
        }
        wake_peers(&mut to_wake);
    }
    // ANCHOR_END: apply

    /// Every topic held, with its epoch and newest id (for a broker that
    /// lost touch and must catch up on each).
    pub fn held(&self) -> Vec<(String, Arc<str>, u64)> {
        let topics: Vec<_> = lock(&self.topics).by_name.iter().map(|(n, t)| (n.clone(), t.clone())).collect();
        topics
            .into_iter()
            .filter_map(|(name, t)| {
                let t = lock(&t);
                t.loaded.then(|| (name, t.epoch.clone(), t.last_id))
            })
            .collect()
    }

    // ANCHOR: subscribe
    /// Subscribes `peer` to `topic` (a handle from [`topic`](Hub::topic))
    /// with `transport` (which its outbox remembers). With `resume =
    /// Some(cursor)` the retained messages after it are queued first
    /// (preceded by a missed marker if some are gone) under the same lock
    /// that publishes take, so nothing can fall between the replay and the
    /// live stream.
    ///
    /// A cursor from another epoch names an id of a sequence that is gone
    /// (the server restarted, or the topic was evicted): the subscriber gets
    /// the reset signal, then the current epoch from its beginning. So does,
    /// without the signal, a bare id the topic has never given out (above its
    /// newest), which can only come from such an earlier life: resuming
    /// after it would silently skip everything this life has published up to
    /// that id. A cursor that names this epoch and an id not numbered here
    /// yet is not from an earlier life: another process on the broker gave
    /// that id out and this one has not heard of it yet. That subscriber
    /// gets only the ids after it, when they come.
    pub fn subscribe(
        &self,
        topic: TopicRef,
        peer: &Arc<Peer>,
        transport: Transport,
        resume: Option<&Cursor>,
        stats: &Stats,
    ) -> Subscription {
        let key = self.next_subscriber.fetch_add(1, Relaxed);
        {
            let mut t = lock(&topic);
            let mut outbox = peer.outbox();
            outbox.set_transport(transport);
            if let (Some(cursor), Transport::Sse | Transport::Ws) = (resume, transport) {
                let ahead = cursor.id > t.last_id && !cursor.is_other_epoch(&t.epoch);
                let replay = if ahead && cursor.epoch.is_none() {
                    t.replay(0)
                } else {
                    if ahead {
                        t.ahead.insert(key, cursor.id);
                    }
                    t.resume(cursor)
                };
                if replay.reset {
                    outbox.push_control(crate::encode::reset(transport, &replay.epoch));
                }
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
        Subscription { topic, key, client: None }
    }

    /// [`subscribe`](Self::subscribe), listed in `/presence` as `client`
    /// until it unsubscribes.
    pub fn subscribe_as(
        &self,
        topic: TopicRef,
        peer: &Arc<Peer>,
        transport: Transport,
        resume: Option<&Cursor>,
        client: Option<&str>,
        stats: &Stats,
    ) -> Subscription {
        let mut sub = self.subscribe(topic, peer, transport, resume, stats);
        if let Some(name) = client {
            *lock(&sub.topic).present.entry(name.into()).or_default() += 1;
            // A thin pointer (`Arc<String>`, one word, not `Arc<str>`'s
            // two): every subscription carries the field, named or not.
            sub.client = Some(Arc::new(name.to_owned()));
        }
        sub
    }
    // ANCHOR_END: subscribe

    /// Removes a subscriber (a no-op if the policy already removed it).
    pub fn unsubscribe(&self, sub: &Subscription) {
        let mut t = lock(&sub.topic);
        t.subscribers.remove(&sub.key); // Perhaps removed already (a slow consumer cut off).
        t.ahead.remove(&sub.key);
        if let Some(name) = &sub.client
            && let Some(n) = t.present.get_mut(name.as_str())
        {
            *n -= 1;
            if *n == 0 {
                t.present.remove(name.as_str());
            }
        }
    }

    // ANCHOR: presence
    /// The names subscribed to `topic` in this process, sorted.
    pub fn presence(&self, topic: &str) -> Vec<String> {
        let mut names: Vec<String> =
            self.existing(topic).map_or_else(Vec::new, |t| lock(&t).present.keys().map(|n| n.to_string()).collect());
        names.sort();
        names
    }

    /// Every `(topic, name)` subscribed in this process (a broker's
    /// heartbeat refreshes them).
    pub fn presence_all(&self) -> Vec<(String, String)> {
        let topics: Vec<_> = lock(&self.topics).by_name.values().cloned().collect();
        let mut all = Vec::new();
        for t in topics {
            let t = lock(&t);
            all.extend(t.present.keys().map(|n| (t.name.to_string(), n.to_string())));
        }
        all
    }
    // ANCHOR_END: presence

    /// The retained messages of `topic` after `after` (a short poll, or a
    /// long poll that has something to return), with a reset if `after` is
    /// from another epoch. An unknown topic is empty, in the epoch it would
    /// get if it were created now.
    pub fn poll(&self, topic: &str, after: &Cursor) -> Replay {
        match self.existing(topic) {
            Some(t) => lock(&t).resume(after),
            None => {
                let epoch = self.epoch_for_new_topics(&lock(&self.topics));
                Replay { reset: after.is_other_epoch(&epoch), epoch, ..Replay::default() }
            }
        }
    }

    /// The epoch of `topic`, or the one it would get if created now.
    pub fn epoch(&self, topic: &str) -> Arc<str> {
        match self.existing(topic) {
            Some(t) => lock(&t).epoch.clone(),
            None => self.epoch_for_new_topics(&lock(&self.topics)),
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

    /// The one time these tests need (nothing here depends on it passing).
    fn now() -> Instant {
        static T0: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *T0.get_or_init(Instant::now)
    }

    fn publish(hub: &Hub, topic: &str, data: &str, s: &Stats) -> u64 {
        hub.publish(topic, data, now(), s).expect("published")
    }

    /// Records each `wake_all` it gets: the tokens of one call.
    #[derive(Default)]
    struct Batches(Mutex<Vec<Vec<usize>>>);
    impl Wake for Batches {
        fn wake(&self, token: usize) {
            self.wake_all(&[token]);
        }
        fn wake_all(&self, tokens: &[usize]) {
            let mut b = self.0.lock().unwrap();
            b.push(tokens.to_vec());
            b.last_mut().unwrap().sort_unstable();
        }
    }

    #[test]
    fn a_publish_wakes_each_loop_once_with_all_its_connections() {
        let hub = Hub::new(8).with_epoch("E");
        let s = Stats::default();
        let loops = [Arc::new(Batches::default()), Arc::new(Batches::default())];
        let topic = hub.topic("t", now(), &s).unwrap();
        let mut subs = Vec::new();
        for token in 0..10 {
            let waker: Arc<dyn Wake> = loops[token % 2].clone();
            let peer = Arc::new(Peer::new(Outbox::new(Transport::Sse, 1 << 20, Policy::Disconnect), waker, token));
            subs.push(hub.subscribe(topic.clone(), &peer, Transport::Sse, None, &s));
        }
        hub.publish_to(&topic, "m", now(), &s).unwrap();
        assert_eq!(*loops[0].0.lock().unwrap(), vec![vec![0, 2, 4, 6, 8]]);
        assert_eq!(*loops[1].0.lock().unwrap(), vec![vec![1, 3, 5, 7, 9]]);
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
        let hub = Hub::new(8).with_epoch("E");
        let s = Stats::default();
        assert_eq!(publish(&hub, "a", "x", &s), 1);
        assert_eq!(publish(&hub, "a", "y", &s), 2);
        assert_eq!(publish(&hub, "b", "z", &s), 1);
        assert_eq!(hub.last_id("a"), 2);
        assert_eq!(hub.last_id("nope"), 0);
    }

    #[test]
    fn retention_and_missed_range() {
        let hub = Hub::new(3).with_epoch("E");
        let s = Stats::default();
        for i in 1..=5 {
            publish(&hub, "t", &format!("m{i}"), &s);
        }
        let r = hub.poll("t", &Cursor::at(0));
        assert_eq!(r.messages.iter().map(|m| m.id).collect::<Vec<_>>(), vec![3, 4, 5]);
        assert_eq!(r.missed, Some((1, 2)));
        assert_eq!(r.last_id, 5);
        let r = hub.poll("t", &Cursor::at(2));
        assert_eq!(r.messages.len(), 3);
        assert_eq!(r.missed, None);
        let r = hub.poll("t", &Cursor::at(4));
        assert_eq!(r.messages.iter().map(|m| m.id).collect::<Vec<_>>(), vec![5]);
        let r = hub.poll("t", &Cursor::at(5));
        assert!(r.messages.is_empty());
        assert_eq!(r.missed, None);
        let r = hub.poll("t", &Cursor::at(99));
        assert!(r.messages.is_empty());
    }

    #[test]
    fn subscribe_replays_then_goes_live_without_gaps() {
        let hub = Hub::new(3).with_epoch("E");
        let s = Stats::default();
        for i in 1..=5 {
            publish(&hub, "t", &format!("m{i}"), &s);
        }
        let (p, wakes) = peer(Transport::Sse, 1 << 20, Policy::Disconnect);
        let sub = hub.subscribe(hub.topic("t", now(), &s).unwrap(), &p, Transport::Sse, Some(&Cursor::at(1)), &s);
        publish(&hub, "t", "m6", &s);
        let got = ids(&p);
        assert_eq!(got[0], "event: missed\ndata: {\"from\":2,\"to\":2}\n\n");
        assert!(got[1].starts_with("id: E-3\n"));
        assert!(got[4].starts_with("id: E-6\ndata: m6\n"));
        assert_eq!(got.len(), 5);
        // The outbox already held the replay, so the live push did not wake.
        assert_eq!(wakes.0.load(Relaxed), 0);
        hub.unsubscribe(&sub);
        publish(&hub, "t", "m7", &s);
        assert!(ids(&p).is_empty());
        assert_eq!(hub.subscriber_count("t"), 0);
    }

    #[test]
    fn every_subscriber_shares_the_same_bytes() {
        let hub = Hub::new(3).with_epoch("E");
        let s = Stats::default();
        let (a, _) = peer(Transport::Ws, 1 << 20, Policy::Disconnect);
        let (b, _) = peer(Transport::Ws, 1 << 20, Policy::Disconnect);
        hub.subscribe(hub.topic("t", now(), &s).unwrap(), &a, Transport::Ws, None, &s);
        hub.subscribe(hub.topic("t", now(), &s).unwrap(), &b, Transport::Ws, None, &s);
        publish(&hub, "t", "shared", &s);
        let (mut x, mut y) = (Vec::new(), Vec::new());
        a.outbox().take(&mut x, usize::MAX);
        b.outbox().take(&mut y, usize::MAX);
        assert_eq!(x[0].as_ptr(), y[0].as_ptr(), "one encoding, shared");
    }

    #[test]
    fn slow_subscriber_is_cut_off_and_others_continue() {
        let hub = Hub::new(16).with_epoch("E");
        let s = Stats::default();
        let (slow, slow_wakes) = peer(Transport::Ws, 100, Policy::Disconnect);
        let (fast, _) = peer(Transport::Ws, 100, Policy::Disconnect);
        hub.subscribe(hub.topic("t", now(), &s).unwrap(), &slow, Transport::Ws, None, &s);
        hub.subscribe(hub.topic("t", now(), &s).unwrap(), &fast, Transport::Ws, None, &s);
        for i in 0..10 {
            publish(&hub, "t", &format!("message number {i}"), &s);
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
        let hub = Hub::new(3).with_epoch("E");
        let s = Stats::default();
        let mut seen = Vec::new();
        for transport in [Transport::Sse, Transport::Ws, Transport::LongPoll] {
            let w = Arc::new(SeesTopic::default());
            let p = Arc::new(Peer::new(Outbox::new(transport, 1 << 20, Policy::Disconnect), w.clone(), 0));
            let sub = hub.subscribe(hub.topic("t", now(), &s).unwrap(), &p, transport, None, &s);
            *lock(&w.topic) = Some(sub.topic.clone());
            seen.push((w, p));
        }
        publish(&hub, "t", "x", &s);
        for (w, _) in &seen {
            assert_eq!(w.woken_unlocked.load(Relaxed), 1);
            assert_eq!(w.woken_locked.load(Relaxed), 0, "no wake while the topic is locked");
        }
    }

    #[test]
    fn long_poll_subscribers_are_woken_not_queued() {
        let hub = Hub::new(3).with_epoch("E");
        let s = Stats::default();
        let (p, wakes) = peer(Transport::LongPoll, 100, Policy::Disconnect);
        hub.subscribe(hub.topic("t", now(), &s).unwrap(), &p, Transport::LongPoll, None, &s);
        publish(&hub, "t", "x", &s);
        assert_eq!(wakes.0.load(Relaxed), 1);
        assert!(p.outbox().is_empty());
    }

    // ---------------------------------------------------------------------
    // The topic limit and eviction (simulated time: `now()` plus seconds).

    const SEC: Duration = Duration::from_secs(1);

    fn at(secs: u64) -> Instant {
        now() + Duration::from_secs(secs)
    }

    #[test]
    fn past_the_limit_a_new_topic_is_refused_until_one_has_been_idle_for_the_ttl() {
        let hub = Hub::with_limits(8, 3, 10 * SEC).with_epoch("E");
        let s = Stats::default();
        for name in ["a", "b", "c"] {
            assert_eq!(hub.publish(name, "x", at(0), &s), Ok(1));
        }
        assert_eq!(hub.publish("d", "x", at(0), &s), Err(Refusal::Topics));
        assert_eq!(hub.publish("a", "y", at(0), &s), Ok(2), "existing topics are still served");
        assert_eq!(hub.publish("d", "x", at(5), &s), Err(Refusal::Topics), "not idle for the ttl yet");
        assert_eq!(s.refused_count(Refusal::Topics), 2);
        assert_eq!((hub.topic_count(), s.topic_count()), (3, 3));
        // b and c have been quiet for 11 s, a (published at 0 too) as well:
        // all three go, and d takes a place.
        assert_eq!(hub.publish("d", "x", at(11), &s), Ok(1));
        assert_eq!((hub.topic_count(), s.topic_count()), (1, 1));
        assert_eq!(s.evicted_topics.load(Relaxed), 3);
        // A topic that comes back starts a new life: ids from 1.
        assert_eq!(hub.publish("a", "again", at(11), &s), Ok(1));
        assert_eq!(hub.poll("a", &Cursor::at(0)).messages.len(), 1);
    }

    #[test]
    fn a_sweep_that_frees_some_pauses_the_next_too() {
        let hub = Hub::with_limits(8, 2, 2 * SEC).with_epoch("E");
        let s = Stats::default();
        let ms = |n| now() + Duration::from_millis(n);
        assert_eq!(hub.publish("a", "x", ms(0), &s), Ok(1));
        assert_eq!(hub.publish("b", "x", ms(500), &s), Ok(1));
        assert_eq!(hub.publish("c", "x", ms(2000), &s), Ok(1), "the sweep at 2 s frees a, not b");
        assert_eq!(hub.publish("d", "x", ms(2600), &s), Err(Refusal::Topics), "b is idle, but the next sweep waits");
        assert_eq!(hub.publish("d", "x", ms(2000) + SWEEP_PAUSE, &s), Ok(1));
        assert_eq!(s.evicted_topics.load(Relaxed), 2);
    }

    #[test]
    fn a_sweep_that_finds_nothing_pauses_the_next() {
        let hub = Hub::with_limits(8, 1, 2 * SEC).with_epoch("E");
        let s = Stats::default();
        assert_eq!(hub.publish("a", "x", at(0), &s), Ok(1));
        assert_eq!(hub.publish("b", "x", at(1), &s), Err(Refusal::Topics), "a is 1 s old: a sweep finds nothing");
        // a is idle from 2 s on, but the next sweep may only run at 1 s + SWEEP_PAUSE.
        let paused = now() + SEC + SWEEP_PAUSE;
        assert_eq!(hub.publish("b", "x", paused - Duration::from_millis(1), &s), Err(Refusal::Topics));
        assert_eq!(hub.publish("b", "x", paused.max(at(2)), &s), Ok(1));
    }

    #[test]
    fn a_topic_with_a_subscriber_or_a_handle_in_use_is_never_evicted() {
        let hub = Hub::with_limits(8, 2, SEC).with_epoch("E");
        let s = Stats::default();
        let (p, _) = peer(Transport::Ws, 1 << 20, Policy::Disconnect);
        let sub = hub.subscribe(hub.topic("held", at(0), &s).unwrap(), &p, Transport::Ws, None, &s);
        assert_eq!(hub.publish("held", "1", at(0), &s), Ok(1));
        let in_use = hub.topic("busy", at(0), &s).unwrap(); // A request between lookup and use.
        assert_eq!(hub.publish("new", "x", at(100), &s), Err(Refusal::Topics), "both are held");
        drop(in_use);
        assert_eq!(hub.publish("new", "x", at(200), &s), Ok(1), "busy is free now, and idle");
        assert_eq!(s.evicted_topics.load(Relaxed), 1);
        // The subscriber's topic kept its ids and its subscriber.
        assert_eq!(hub.publish("held", "2", at(200), &s), Ok(2));
        assert_eq!(ids(&p).len(), 2);
        hub.unsubscribe(&sub);
    }

    /// A resume id the topic never gave out comes from an earlier life of the
    /// topic: the subscriber gets this life from its beginning, not a silent
    /// jump to live messages.
    #[test]
    fn resuming_from_an_id_the_topic_never_gave_out_starts_from_its_beginning() {
        let hub = Hub::new(2).with_epoch("E");
        let s = Stats::default();
        for i in 1..=3 {
            publish(&hub, "t", &format!("m{i}"), &s);
        }
        let (p, _) = peer(Transport::Sse, 1 << 20, Policy::Disconnect);
        hub.subscribe(hub.topic("t", now(), &s).unwrap(), &p, Transport::Sse, Some(&Cursor::at(57)), &s);
        let got = ids(&p);
        assert_eq!(got[0], "event: missed\ndata: {\"from\":1,\"to\":1}\n\n");
        assert!(got[1].starts_with("id: E-2\n") && got[2].starts_with("id: E-3\n"), "{got:?}");
        assert_eq!(got.len(), 3);
        // A poll answer carries last_id, below the client's id: nothing to change there.
        let r = hub.poll("t", &Cursor::at(57));
        assert!(r.messages.is_empty() && r.last_id == 3);
    }

    // ---------------------------------------------------------------------
    // Epochs.

    #[test]
    fn cursors_parse_with_or_without_an_epoch() {
        assert_eq!(Cursor::parse("12"), Some(Cursor::at(12)));
        assert_eq!(Cursor::parse("aZ09-7"), Some(Cursor { epoch: Some("aZ09".into()), id: 7 }));
        for bad in ["", "-", "-3", "E-", "E--3", "E-3-4", "E_x-3", "12345678901234567-1", "E-x", "+3"] {
            assert_eq!(Cursor::parse(bad), None, "{bad:?}");
        }
        let e = new_epoch();
        assert!(is_epoch(&e) && e.len() == 8, "{e}");
        assert_ne!(new_epoch(), new_epoch(), "random per hub");
        assert_eq!(base62(0), "0");
        assert_eq!(base62(62), "10");
    }

    /// A cursor from another epoch (a restart) gets the reset signal, then the
    /// current epoch from its first retained message; one from this epoch
    /// resumes as before; a bare id means this epoch.
    #[test]
    fn resuming_from_another_epoch_is_a_reset_then_everything_retained() {
        let hub = Hub::new(2).with_epoch("NEW");
        let s = Stats::default();
        for i in 1..=3 {
            publish(&hub, "t", &format!("m{i}"), &s);
        }
        let old = Cursor { epoch: Some("OLD".into()), id: 2 };
        let (p, _) = peer(Transport::Sse, 1 << 20, Policy::Disconnect);
        hub.subscribe(hub.topic("t", now(), &s).unwrap(), &p, Transport::Sse, Some(&old), &s);
        let got = ids(&p);
        assert_eq!(got[0], "event: reset\nid: NEW-0\ndata: {\"epoch\":\"NEW\"}\n\n");
        assert_eq!(got[1], "event: missed\ndata: {\"from\":1,\"to\":1}\n\n");
        assert!(got[2].starts_with("id: NEW-2\n") && got[3].starts_with("id: NEW-3\n"), "{got:?}");
        assert_eq!(got.len(), 4);

        let same = Cursor { epoch: Some("NEW".into()), id: 2 };
        let (p, _) = peer(Transport::Ws, 1 << 20, Policy::Disconnect);
        hub.subscribe(hub.topic("t", now(), &s).unwrap(), &p, Transport::Ws, Some(&same), &s);
        let got = ids(&p);
        assert_eq!(got.len(), 1);
        assert!(got[0].ends_with(r#"{"id":3,"epoch":"NEW","data":"m3"}"#), "{got:?}");

        let r = hub.poll("t", &old);
        assert!(r.reset && &*r.epoch == "NEW");
        assert_eq!(r.messages.iter().map(|m| m.id).collect::<Vec<_>>(), vec![2, 3]);
        let r = hub.poll("t", &Cursor::at(2));
        assert!(!r.reset && r.messages.len() == 1);
        let r = hub.poll("never", &old);
        assert!(r.reset && r.messages.is_empty() && &*r.epoch == "NEW", "an unknown topic is in the hub's epoch");
    }

    /// An evicted topic that comes back starts at id 1 in a new epoch, so a
    /// client of its earlier life is reset instead of resuming at a reused id.
    #[test]
    fn an_evicted_topic_comes_back_in_a_new_epoch() {
        let hub = Hub::with_limits(8, 1, SEC).with_epoch("E");
        let s = Stats::default();
        assert_eq!(hub.publish("a", "x", at(0), &s), Ok(1));
        assert_eq!(&*hub.epoch("a"), "E");
        assert_eq!(hub.publish("b", "x", at(2), &s), Ok(1), "a is evicted");
        assert_eq!(&*hub.epoch("b"), "E1");
        assert_eq!(hub.publish("a", "y", at(4), &s), Ok(1), "b is evicted, a is back");
        assert_eq!(&*hub.epoch("a"), "E2");
        let r = hub.poll("a", &Cursor { epoch: Some("E".into()), id: 1 });
        assert!(r.reset && r.messages.len() == 1 && r.messages[0].id == 1);
    }

    // ---------------------------------------------------------------------
    // Messages numbered by a broker (`apply`, `skip`).

    /// Delivered in id order only: the next id goes out, an old one is a
    /// duplicate, a newer one reports the gap before it; a skipped range is
    /// the missed signal; another epoch (the broker lost the topic) is the
    /// reset signal — but not for a topic that had no message yet.
    #[test]
    fn broker_messages_are_applied_in_id_order() {
        let hub = Hub::new(8).with_epoch("local");
        let s = Stats::default();
        assert_eq!(hub.apply("t", "R1", 1, "x", now(), &s), Applied::NotHeld, "not held: nothing to do");
        let (p, _) = peer(Transport::Sse, 1 << 20, Policy::Disconnect);
        hub.subscribe(hub.topic("t", now(), &s).unwrap(), &p, Transport::Sse, None, &s);
        assert_eq!(hub.apply("t", "R1", 1, "a", now(), &s), Applied::Delivered);
        assert_eq!(&*hub.epoch("t"), "R1", "the broker's first epoch, silently");
        assert_eq!(hub.apply("t", "R1", 1, "a", now(), &s), Applied::Duplicate);
        assert_eq!(hub.apply("t", "R1", 4, "d", now(), &s), Applied::Gap { from: 2, to: 3 });
        assert_eq!(hub.apply("t", "R1", 2, "b", now(), &s), Applied::Delivered);
        hub.skip("t", 3);
        assert_eq!(hub.apply("t", "R1", 4, "d", now(), &s), Applied::Delivered);
        assert_eq!(hub.apply("t", "R2", 1, "new", now(), &s), Applied::Delivered);
        let got = ids(&p);
        assert_eq!(
            got,
            [
                "id: R1-1\ndata: a\n\n",
                "id: R1-2\ndata: b\n\n",
                "event: missed\ndata: {\"from\":3,\"to\":3}\n\n",
                "id: R1-4\ndata: d\n\n",
                "event: reset\nid: R2-0\ndata: {\"epoch\":\"R2\"}\n\n",
                "id: R2-1\ndata: new\n\n",
            ]
        );
        let r = hub.poll("t", &Cursor::at(0));
        assert_eq!((r.messages.len(), r.last_id, &*r.epoch), (1, 1, "R2"), "the old epoch's history is gone");
    }

    /// A client resuming at `E-N` on a process that has not numbered `N`
    /// yet (with a broker: it came from a process that is ahead) gets only
    /// what follows `N`, not `N` again when it arrives; a bare id above the
    /// newest still means an earlier life and replays from the start.
    #[test]
    fn a_cursor_of_this_epoch_ahead_of_the_process_skips_what_it_has() {
        let hub = Hub::new(8).with_epoch("E");
        let s = Stats::default();
        publish(&hub, "t", "m1", &s);
        let (p, _) = peer(Transport::Sse, 1 << 20, Policy::Disconnect);
        let sub = hub.subscribe(hub.topic("t", now(), &s).unwrap(), &p, Transport::Sse, Some(&Cursor { epoch: Some("E".into()), id: 3 }), &s);
        assert!(ids(&p).is_empty(), "nothing after 3 yet");
        for i in 2..=4 {
            publish(&hub, "t", &format!("m{i}"), &s);
        }
        assert_eq!(ids(&p), ["id: E-4\ndata: m4\n\n"], "2 and 3 are not sent again");
        publish(&hub, "t", "m5", &s);
        assert_eq!(ids(&p), ["id: E-5\ndata: m5\n\n"]);
        hub.unsubscribe(&sub);
        let (q, _) = peer(Transport::Ws, 1 << 20, Policy::Disconnect);
        hub.subscribe(hub.topic("t", now(), &s).unwrap(), &q, Transport::Ws, Some(&Cursor::at(9)), &s);
        assert_eq!(ids(&q).len(), 5, "a bare id from an earlier life: everything retained");
    }

    // ---------------------------------------------------------------------
    // Stopping.

    #[test]
    fn once_stopping_every_publish_is_refused() {
        let hub = Hub::new(8).with_epoch("E");
        let s = Stats::default();
        publish(&hub, "t", "before", &s);
        hub.begin_stop();
        assert_eq!(hub.publish("t", "after", now(), &s), Err(Refusal::Stopping));
        let topic = hub.topic("t", now(), &s).unwrap();
        assert_eq!(hub.publish_to(&topic, "after", now(), &s), Err(Refusal::Stopping));
        assert_eq!(hub.last_id("t"), 1, "nothing refused was stored");
        assert_eq!(s.refused_count(Refusal::Stopping), 2);
    }

    /// The stop's promise under a real race: publishers on four threads, and
    /// a stop that, as a connection's shutdown does, sets the flag and then
    /// unsubscribes. Every publish that was acknowledged must be in the
    /// subscriber's outbox. (Without the flag, publishes after the
    /// unsubscribe are acknowledged and missing; with the flag read outside
    /// the topic's lock, one can slip between the read and the lock.)
    #[test]
    fn a_publish_acknowledged_while_stopping_reached_every_subscriber() {
        for _ in 0..20 {
            let hub = Hub::new(1 << 16).with_epoch("E");
            let s = Stats::default();
            let (p, _) = peer(Transport::Ws, 1 << 30, Policy::Unbounded);
            let sub = hub.subscribe(hub.topic("t", now(), &s).unwrap(), &p, Transport::Ws, None, &s);
            let acked: Vec<u64> = std::thread::scope(|scope| {
                let publishers: Vec<_> = (0..4)
                    .map(|_| {
                        scope.spawn(|| {
                            let mut acked = Vec::new();
                            // Bounded, so that a hub that never refuses fails instead of hanging.
                            for _ in 0..100_000 {
                                match hub.publish("t", "x", now(), &s) {
                                    Ok(id) => acked.push(id),
                                    Err(_) => break,
                                }
                            }
                            acked
                        })
                    })
                    .collect();
                while hub.last_id("t") < 100 {
                    std::thread::yield_now();
                }
                hub.begin_stop();
                hub.unsubscribe(&sub);
                publishers.into_iter().flat_map(|h| h.join().unwrap()).collect()
            });
            let mut out = Vec::new();
            let n = p.outbox().take(&mut out, usize::MAX);
            p.outbox().written(n);
            let delivered = out.len() as u64;
            let max = acked.iter().copied().max().unwrap_or(0);
            assert!(max <= delivered, "id {max} was acknowledged, the subscriber got {delivered}");
        }
    }

    /// Found by fuzzing (`labs/core/fuzz`, target `resume_cursor`): a cursor of
    /// u64::MAX overflowed `after + 1` (a panic in debug builds; in release
    /// it wrapped to 0 and replayed the whole retention).
    #[test]
    fn cursor_at_u64_max_replays_nothing() {
        let hub = Hub::new(4).with_epoch("E");
        let s = Stats::default();
        for _ in 0..6 {
            hub.publish("t", "x", now(), &s).unwrap();
        }
        let r = hub.poll("t", &Cursor::at(u64::MAX));
        assert!(r.messages.is_empty());
        assert_eq!((r.missed, r.last_id), (None, 6));
        assert_eq!(hub.poll("t", &Cursor::at(u64::MAX - 1)).messages.len(), 0);
        let r = hub.poll("t", &Cursor::at(0));
        assert_eq!((r.messages.len(), r.missed), (4, Some((1, 2))), "ordinary cursors unchanged");
    }
}
