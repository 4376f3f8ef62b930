//! # rtlab-redis: the shared broker on a real Redis server
//!
//! `rtlab serve --broker redis://HOST:PORT` makes several server processes
//! one server: a message published to any of them gets its topic's next id
//! from Redis, reaches the subscribers of every one of them in id order, and
//! replay and polls on any of them see the same retained messages. This
//! crate is the [`Broker`] of `rtlab-core` that does it, with the `redis`
//! crate; the core stays sans-IO.
//!
//! ## What lives in Redis, per topic `T`
//!
//! | key | type | what |
//! |---|---|---|
//! | `rtlab:{T}:epoch` | string | the topic's epoch, made by the first publish (from Redis's clock) |
//! | `rtlab:{T}:id` | string | the newest id (`INCR`) |
//! | `rtlab:{T}:log` | stream | the retained messages, entry id `N-0` for message `N`, capped at the retention |
//! | channel `rtlab:m:{T}` | pub/sub | every message as it is numbered: `EPOCH ID DATA` |
//! | `rtlab:{T}:presence` | sorted set | `INSTANCE\|NAME` of every named subscriber, scored by when it expires (ms since the Unix epoch) |
//!
//! One Lua script per publish ([`PUBLISH_LUA`]) takes the next id, appends to
//! the stream and publishes, atomically: Redis runs one script at a time, so
//! ids are unique and gap-free across every instance, and the stream and the
//! channel see them in the same order.
//!
//! ## Threads, beside any runtime
//!
//! The client runs on threads of its own, the same for all four labs, so no
//! lab needs a Redis client of its own kind (an async one for tokio, another
//! for may's coroutines): one *publisher* thread owns a connection and runs
//! the publish script for every request queued to it, answering each through
//! its [`Ticket`] (which wakes the connection through the core's `Wake`);
//! one *subscriber* thread owns the pub/sub connection (`PSUBSCRIBE
//! rtlab:m:*`) and hands every message to [`Hub::apply`], fetching from the
//! stream whatever a gap says is missing. A runtime thread waits for Redis
//! only in [`Broker::load`], once per topic and process.
//!
//! ## When Redis goes away
//!
//! Publishing answers `503` (the script could not run, so nothing was
//! numbered). The subscriber thread reconnects with a short back-off and,
//! once subscribed again, catches every held topic up from the stream:
//! what is still there is delivered, in order; what is gone is announced
//! with the missed signal; a topic whose data Redis lost (a restart without
//! persistence) gets a new epoch with its next publish, and its subscribers
//! the reset signal.

use std::collections::BTreeSet;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::{Client, Connection, RedisResult, Script};
use rtlab_core::Refusal;
use rtlab_core::Server;
use rtlab_core::broker::{Applied, Broker, Loaded, Ticket};

/// How long connecting to Redis may take before a publish answers `503`.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// How long one command may take before the connection is given up.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// The subscriber's wait between attempts while Redis is away.
const RETRY: Duration = Duration::from_millis(100);

// ANCHOR: publish_lua
/// The publish script: `KEYS` = epoch, id, stream; `ARGV` = data, retention,
/// channel. Returns `{epoch, id}`.
pub const PUBLISH_LUA: &str = r#"
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  -- The topic has no data here (never had, or Redis lost it): a new epoch,
  -- from Redis's own clock, in hex (0-9 a-f, at most 13 characters).
  local t = redis.call('TIME')
  epoch = string.format('%x%05x', tonumber(t[1]), tonumber(t[2]))
  redis.call('SET', KEYS[1], epoch)
  redis.call('DEL', KEYS[2], KEYS[3])
end
local id = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[3], 'MAXLEN', ARGV[2], id .. '-0', 'd', ARGV[1])
redis.call('PUBLISH', ARGV[3], epoch .. ' ' .. id .. ' ' .. ARGV[1])
return {epoch, id}
"#;
// ANCHOR_END: publish_lua

/// The load script: `KEYS` = epoch, id, stream; `ARGV` = retention. Returns
/// `{epoch or '', newest id, [entry id, [field, data]]...}`, oldest first.
const LOAD_LUA: &str = r#"
local epoch = redis.call('GET', KEYS[1]) or ''
local id = tonumber(redis.call('GET', KEYS[2]) or '0')
local entries = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', ARGV[1])
return {epoch, id, entries}
"#;

/// A stream entry as `XRANGE` returns it: its id (`N-0`) and its fields.
type Entry = (String, Vec<(String, String)>);

/// `(id, data)` of a stream entry written by [`PUBLISH_LUA`].
fn entry_message((entry, fields): Entry) -> Option<(u64, String)> {
    let id = entry.split('-').next()?.parse().ok()?;
    let data = fields.into_iter().find(|(k, _)| k == "d")?.1;
    Some((id, data))
}

fn keys(topic: &str) -> [String; 3] {
    [format!("rtlab:{{{topic}}}:epoch"), format!("rtlab:{{{topic}}}:id"), format!("rtlab:{{{topic}}}:log")]
}

fn presence_key(topic: &str) -> String {
    format!("rtlab:{{{topic}}}:presence")
}

/// Milliseconds since the Unix epoch (presence expiries; every process on
/// one broker is assumed to have a synchronised clock).
fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn channel_of(topic: &str) -> String {
    format!("rtlab:m:{topic}")
}

/// A publish waiting for the publisher thread.
struct Job {
    topic: String,
    data: String,
    ticket: Arc<Ticket>,
}

// ANCHOR: redis_broker
/// The broker: a queue to the publisher thread, a connection for loads, and
/// the subscriber thread (started by [`RedisBroker::attach`]).
pub struct RedisBroker {
    client: Client,
    retention: usize,
    jobs: Mutex<Sender<Job>>,
    /// For [`Broker::load`] (from runtime threads) and the subscriber's gap
    /// fills: one connection, made when first needed and after every error.
    query: Mutex<Option<Connection>>,
    server: OnceLock<Weak<Server>>,
    /// How long a presence entry lives without a heartbeat.
    presence_ttl: Duration,
    /// This process's name in presence entries (random per start).
    instance: String,
}
// ANCHOR_END: redis_broker

impl std::fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBroker").field("retention", &self.retention).finish_non_exhaustive()
    }
}

impl RedisBroker {
    /// A broker on `url` (`redis://HOST:PORT`) for topics retaining
    /// `retention` messages. Starts the publisher thread; Redis need not be
    /// up yet (publishes answer `503` until it is).
    /// `presence_ttl`: how long a named subscriber outlives its process in
    /// `/presence`.
    pub fn new(url: &str, retention: usize, presence_ttl: Duration) -> RedisResult<Arc<RedisBroker>> {
        let client = Client::open(url)?;
        let (tx, rx) = channel();
        let broker = Arc::new(RedisBroker {
            client: client.clone(),
            retention: retention.max(1),
            jobs: Mutex::new(tx),
            query: Mutex::new(None),
            server: OnceLock::new(),
            presence_ttl,
            instance: rtlab_core::hub::new_epoch(),
        });
        let retention = broker.retention;
        thread::Builder::new()
            .name("redis-publish".into())
            .spawn(move || publisher(&client, retention, &rx))
            .map_err(|e| redis::RedisError::from(std::io::Error::other(e)))?;
        Ok(broker)
    }

    /// Starts delivering to `server` (whose hub was built with this broker):
    /// the subscriber thread. It ends when the server is dropped.
    pub fn attach(self: &Arc<Self>, server: &Arc<Server>) {
        if self.server.set(Arc::downgrade(server)).is_err() {
            return; // Already attached.
        }
        let broker = self.clone();
        thread::Builder::new()
            .name("redis-subscribe".into())
            .spawn(move || broker.subscriber())
            .expect("spawning the Redis subscriber thread");
        let broker = self.clone();
        thread::Builder::new()
            .name("redis-presence".into())
            .spawn(move || broker.heartbeat())
            .expect("spawning the Redis presence thread");
    }

    // ANCHOR: heartbeat
    /// The presence thread: every third of the TTL, this process's named
    /// subscribers are written again with a new expiry, and the ones gone
    /// since the last beat are removed. A process that dies stops beating:
    /// its entries expire within the TTL, and `/presence` reads only
    /// unexpired ones.
    fn heartbeat(&self) {
        let mut sent: BTreeSet<(String, String)> = BTreeSet::new();
        loop {
            let Some(server) = self.server.get().and_then(Weak::upgrade) else { return };
            let now: BTreeSet<(String, String)> = server.hub.presence_all().into_iter().collect();
            drop(server);
            let expires = unix_ms() + self.presence_ttl.as_millis() as u64;
            let mut pipe = redis::pipe();
            for (topic, name) in &now {
                let key = presence_key(topic);
                pipe.cmd("ZADD").arg(&key).arg(expires).arg(format!("{}|{name}", self.instance)).ignore();
                pipe.cmd("ZREMRANGEBYSCORE").arg(&key).arg("-inf").arg(unix_ms()).ignore();
            }
            for (topic, name) in sent.difference(&now) {
                pipe.cmd("ZREM").arg(presence_key(topic)).arg(format!("{}|{name}", self.instance)).ignore();
            }
            if self.query(|con| pipe.query::<()>(con)).is_ok() {
                sent = now;
            }
            thread::sleep((self.presence_ttl / 3).clamp(Duration::from_millis(50), Duration::from_secs(10)));
        }
    }
    // ANCHOR_END: heartbeat

    fn connect(client: &Client) -> RedisResult<Connection> {
        let con = client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
        con.set_read_timeout(Some(IO_TIMEOUT))?;
        con.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(con)
    }

    /// Runs `f` on the query connection (connecting if needed; dropped on error).
    fn query<T>(&self, f: impl FnOnce(&mut Connection) -> RedisResult<T>) -> RedisResult<T> {
        let mut slot = self.query.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(RedisBroker::connect(&self.client)?);
        }
        let result = f(slot.as_mut().expect("connected above"));
        if result.is_err() {
            *slot = None;
        }
        result
    }

    fn load_now(&self, topic: &str) -> RedisResult<Loaded> {
        let [epoch, id, log] = keys(topic);
        let (epoch, last_id, entries): (String, u64, Vec<Entry>) = self.query(|con| {
            Script::new(LOAD_LUA).key(&epoch).key(&id).key(&log).arg(self.retention).invoke(con)
        })?;
        let mut messages: Vec<(u64, String)> = entries.into_iter().filter_map(entry_message).collect();
        messages.reverse();
        Ok(Loaded { epoch: (!epoch.is_empty()).then_some(epoch), last_id, messages })
    }

    /// Messages `from..=to` of `topic` still in its stream, oldest first.
    fn range(&self, topic: &str, from: u64, to: u64) -> RedisResult<Vec<(u64, String)>> {
        let [_, _, log] = keys(topic);
        let entries: Vec<Entry> =
            self.query(|con| redis::cmd("XRANGE").arg(&log).arg(format!("{from}-0")).arg(format!("{to}-0")).query(con))?;
        Ok(entries.into_iter().filter_map(entry_message).collect())
    }

    // ANCHOR: subscriber
    /// The subscriber thread: `PSUBSCRIBE rtlab:m:*`, every message to the
    /// hub in id order; after every (re)connection, every held topic caught
    /// up from its stream first.
    fn subscriber(self: Arc<Self>) {
        loop {
            let Some(server) = self.server.get().and_then(Weak::upgrade) else { return };
            drop(server);
            match self.subscribe_once() {
                Ok(()) => return, // The server is gone.
                Err(e) => tracing::warn!(error = %e, "redis subscriber: connection lost, retrying"),
            }
            thread::sleep(RETRY);
        }
    }

    fn subscribe_once(&self) -> RedisResult<()> {
        let mut con = self.client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
        let mut pubsub = con.as_pubsub();
        pubsub.psubscribe("rtlab:m:*")?;
        // Subscribed: from now on nothing is missed, so catch up on what
        // was published while we were not.
        self.catch_up()?;
        tracing::info!("redis subscriber: subscribed");
        pubsub.set_read_timeout(Some(Duration::from_secs(1)))?;
        loop {
            let Some(server) = self.server.get().and_then(Weak::upgrade) else { return Ok(()) };
            let msg = match pubsub.get_message() {
                Ok(msg) => msg,
                Err(e) if e.is_timeout() => continue,
                Err(e) => return Err(e),
            };
            let Some(topic) = msg.get_channel_name().strip_prefix("rtlab:m:").map(str::to_owned) else { continue };
            let payload: String = msg.get_payload()?;
            let mut parts = payload.splitn(3, ' ');
            let (Some(epoch), Some(Ok(id)), Some(data)) = (parts.next(), parts.next().map(str::parse), parts.next())
            else {
                continue;
            };
            self.deliver(&server, &topic, epoch, id, data)?;
        }
    }

    /// Applies one message, filling a gap before it from the stream first.
    fn deliver(&self, server: &Server, topic: &str, epoch: &str, id: u64, data: &str) -> RedisResult<()> {
        let now = Instant::now();
        if let Applied::Gap { from, to } = server.hub.apply(topic, epoch, id, data, now, &server.stats) {
            for (gap_id, gap_data) in self.range(topic, from, to)? {
                apply_or_skip(server, topic, epoch, gap_id, &gap_data, now);
            }
            apply_or_skip(server, topic, epoch, id, data, now);
        }
        Ok(())
    }

    /// Every held topic, caught up from Redis: the messages after its newest
    /// id that the stream still has, with the missed signal for the rest.
    fn catch_up(&self) -> RedisResult<()> {
        let Some(server) = self.server.get().and_then(Weak::upgrade) else { return Ok(()) };
        for (topic, _, _) in server.hub.held() {
            let loaded = self.load_now(&topic)?;
            let Some(epoch) = loaded.epoch else { continue }; // Lost: the next publish starts a new epoch.
            if let Some((newest, data)) = loaded.messages.last() {
                // Delivering the newest fills everything before it that the
                // stream still has, through the gap path.
                self.deliver(&server, &topic, &epoch, *newest, data)?;
            }
        }
        Ok(())
    }
    // ANCHOR_END: subscriber
}

/// Applies a message whose predecessors are all applied or gone: ids still
/// missing before it (trimmed from the stream) are announced as missed.
fn apply_or_skip(server: &Server, topic: &str, epoch: &str, id: u64, data: &str, now: Instant) {
    if let Applied::Gap { to, .. } = server.hub.apply(topic, epoch, id, data, now, &server.stats) {
        server.hub.skip(topic, to);
        server.hub.apply(topic, epoch, id, data, now, &server.stats);
    }
}

// ANCHOR: publisher
/// The publisher thread: runs the publish script for each queued publish,
/// in order, and answers its ticket: the id, or `503` if Redis could not be
/// reached (nothing was numbered then, so nothing will be delivered).
fn publisher(client: &Client, retention: usize, jobs: &Receiver<Job>) {
    let script = Script::new(PUBLISH_LUA);
    let mut con: Option<Connection> = None;
    while let Ok(job) = jobs.recv() {
        if con.is_none() {
            con = RedisBroker::connect(client).ok();
        }
        let answer = match con.as_mut() {
            None => Err(Refusal::Broker),
            Some(c) => {
                let [epoch, id, log] = keys(&job.topic);
                let result: RedisResult<(String, u64)> = script
                    .key(epoch)
                    .key(id)
                    .key(log)
                    .arg(&job.data)
                    .arg(retention)
                    .arg(channel_of(&job.topic))
                    .invoke(c);
                match result {
                    Ok((_epoch, id)) => Ok(id),
                    Err(e) => {
                        tracing::warn!(error = %e, "redis publish failed");
                        con = None;
                        Err(Refusal::Broker)
                    }
                }
            }
        };
        job.ticket.complete(answer);
    }
}
// ANCHOR_END: publisher

impl Broker for RedisBroker {
    fn publish(&self, topic: &str, data: String, ticket: Arc<Ticket>) {
        let job = Job { topic: topic.to_owned(), data, ticket };
        if let Err(e) = self.jobs.lock().unwrap_or_else(PoisonError::into_inner).send(job) {
            e.0.ticket.complete(Err(Refusal::Broker));
        }
    }

    fn presence(&self, topic: &str, local: Vec<String>) -> Result<Vec<String>, Refusal> {
        let members: Vec<String> = self
            .query(|con| redis::cmd("ZRANGEBYSCORE").arg(presence_key(topic)).arg(unix_ms()).arg("+inf").query(con))
            .map_err(|e| {
                tracing::warn!(error = %e, topic, "redis presence failed");
                Refusal::Broker
            })?;
        let mut names: BTreeSet<String> = local.into_iter().collect();
        names.extend(members.into_iter().filter_map(|m| m.split_once('|').map(|(_, n)| n.to_owned())));
        Ok(names.into_iter().collect())
    }

    fn load(&self, topic: &str) -> Result<Loaded, Refusal> {
        self.load_now(topic).map_err(|e| {
            tracing::warn!(error = %e, topic, "redis load failed");
            Refusal::Broker
        })
    }
}
