//! One connection as a state machine: bytes and time in, bytes and deadlines
//! out. This is the whole contract, with no I/O: a runtime lab owns the
//! socket and the timers and calls these methods.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

use crate::broker::{Broker, Ticket};
use crate::auth::{self, Grant};
use crate::config::Config;
use crate::encode::{self, Transport};
use crate::heartbeat::{Beat, KeepAlive, Pinger};
use crate::http::{self, HttpError, Request, Route};
use crate::hub::{Cursor, Hub, Peer, Subscription, TopicRef, Wake};
use crate::outbox::Outbox;
use crate::stats::{Kind, Refusal, Stats};
use crate::ws::{WsDecoder, WsError, WsEvent};

/// Everything connections share: options, topics and counters. A runtime
/// creates one per server and hands an `Arc` of it to every connection.
#[derive(Debug)]
pub struct Server {
    /// The options.
    pub config: Config,
    /// The topics.
    pub hub: Hub,
    /// The `/stats` counters.
    pub stats: Stats,
}

impl Server {
    /// A server with no topics yet.
    pub fn new(config: Config) -> Arc<Server> {
        let hub = Hub::with_limits(config.retention, config.max_topics, config.topic_ttl);
        Server::with_hub(config, hub)
    }

    /// A server whose epoch is `epoch` rather than a random one: tests that
    /// compare bytes need to know it.
    pub fn with_epoch(config: Config, epoch: &str) -> Arc<Server> {
        let hub = Hub::with_limits(config.retention, config.max_topics, config.topic_ttl).with_epoch(epoch);
        Server::with_hub(config, hub)
    }

    /// A server whose topics are numbered and shared through `broker`
    /// ([`crate::broker`]): one of several processes serving one topic space.
    pub fn with_broker(config: Config, broker: Arc<dyn Broker>) -> Arc<Server> {
        let hub = Hub::with_limits(config.retention, config.max_topics, config.topic_ttl).with_broker(broker);
        Server::with_hub(config, hub)
    }

    fn with_hub(config: Config, hub: Hub) -> Arc<Server> {
        let stats = Stats::default();
        stats.max_topics.store(config.max_topics as u64, std::sync::atomic::Ordering::Relaxed);
        Arc::new(Server { hub, config, stats })
    }

    /// The server begins to stop: publishing is refused from now on
    /// ([`Hub::begin_stop`] says why that makes a `200` a promise). Every
    /// [`Connection::shutdown`] calls it before anything else, so no runtime
    /// can forget it; a runtime may call it earlier.
    pub fn begin_stop(&self) {
        self.hub.begin_stop();
    }

    /// Whether [`begin_stop`](Server::begin_stop) was called.
    pub fn is_stopping(&self) -> bool {
        self.hub.is_stopping()
    }

    /// The one-line reason of a `503` for `why`.
    fn refusal(&self, why: Refusal) -> HttpError {
        HttpError::Unavailable(match why {
            Refusal::Topics => format!(
                "too many topics (this server keeps at most {}; \
                 a topic with no subscriber and no message for {} s makes room)",
                self.config.max_topics,
                self.config.topic_ttl.as_secs_f64()
            ),
            Refusal::Stopping => "the server is shutting down".into(),
            Refusal::Broker => "the broker is unreachable: nothing was published".into(),
            Refusal::Connections | Refusal::Capacity => "server at capacity".into(),
        })
    }
}

// ANCHOR: status
/// What the runtime should do with the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Keep reading, writing and calling back at deadlines.
    Open,
    /// Write what [`Connection::take_output`] still gives; once everything
    /// is written, [`take_fin`](Connection::take_fin) says so, and the runtime
    /// shuts down the write half (sends FIN) and reads (the input is
    /// discarded) until end of file or the next deadline. Closing this way,
    /// not with an abrupt `close()`, lets the peer read the last response or
    /// close frame: closing a socket that still has unread input makes the
    /// kernel send a reset, which can destroy data the peer has not read yet.
    Closing,
    /// Drop the socket now.
    Closed,
}
// ANCHOR_END: status

// ANCHOR: state
/// Where a connection is in its life.
#[derive(Debug)]
enum State {
    /// Waiting for (the rest of) a request. `buf` holds unprocessed input.
    /// `since`: when the wait began — the first byte of the request in `buf`,
    /// or, with `buf` empty, the end of the last request (or the
    /// connection's start): see [`http_deadline`]. `paused`: requests in
    /// `buf` wait, unparsed, for the output to drain below `read_pause`
    /// (see [`serve_requests`](Connection::serve_requests)).
    Http { buf: Vec<u8>, continue_sent: bool, since: Instant, paused: bool },
    /// A long poll held until a message arrives or its deadline passes.
    LongPoll(Box<HeldPoll>),
    /// A publish handed to the broker, waiting for its answer.
    Publishing(Box<PendingPublish>),
    /// An event stream.
    Sse { sub: Subscription, keepalive: KeepAlive },
    /// A `/ws` WebSocket subscribed to a topic.
    Ws { sub: Subscription, decoder: WsDecoder, pinger: Pinger },
    /// An `/echo` WebSocket.
    Echo { decoder: WsDecoder },
    /// Closing or closed: input is discarded, and the socket is dropped at
    /// `linger` at the latest.
    Done { linger: Instant },
}

/// A publish waiting for the broker ([`crate::broker::Ticket`]). Requests
/// pipelined behind it wait, unparsed, in `buf`, as behind a long poll.
#[derive(Debug)]
struct PendingPublish {
    ticket: Arc<Ticket>,
    /// Past it without an answer: `503`.
    deadline: Instant,
    keep_alive: bool,
    buf: Vec<u8>,
}

/// A held long poll. Boxed in [`State`]: it is the largest state, and an enum
/// is as big as its largest variant — inline, it would make every connection,
/// idle event streams and WebSockets included, pay for it.
#[derive(Debug)]
struct HeldPoll {
    sub: Subscription,
    topic: String,
    after: Cursor,
    deadline: Instant,
    keep_alive: bool,
    /// Requests pipelined behind the poll, unparsed until it is answered.
    buf: Vec<u8>,
}
// ANCHOR_END: state

// ANCHOR: connection
/// One client connection, runtime-free.
///
/// The runtime's loop for each connection is always the same:
///
/// 1. bytes arrive → [`on_read`](Self::on_read); end of file → [`on_eof`](Self::on_eof);
/// 2. the connection's [`Wake`] fired, or [`next_deadline`](Self::next_deadline)
///    passed → [`on_tick`](Self::on_tick);
/// 3. write what [`take_output`](Self::take_output) gives (one vectored write),
///    report it with [`written`](Self::written);
/// 4. obey [`status`](Self::status): drop the socket once `Closed`, shut
///    down its write half when [`take_fin`](Self::take_fin) says so; read only
///    while [`wants_read`](Self::wants_read).
///
/// Output from every source — responses, replayed and live messages, pongs,
/// close frames — goes through the connection's one outbox, so it leaves in
/// the order it was produced.
#[derive(Debug)]
pub struct Connection {
    server: Arc<Server>,
    peer: Arc<Peer>,
    state: State,
    kind: Kind,
    eof: bool,
    closed: bool,
    /// The runtime has been told to half-close ([`take_fin`](Self::take_fin)).
    fin: bool,
    /// `/ws` publishes handed to the broker, oldest first: a refusal is
    /// reported with an error frame when its answer comes. Boxed, and only
    /// made by the first such publish: every other connection pays one word.
    #[allow(clippy::box_collection)] // One word per connection, not four: see above.
    ws_publishes: Option<Box<std::collections::VecDeque<Arc<Ticket>>>>,
    /// The token the last request was admitted with and when it ends the
    /// connection (servers with a secret). Boxed: inline it would add over
    /// a hundred bytes to every connection, token or not; a million idle
    /// connections pay one word each instead.
    admission: Option<Box<Admission>>,
}

/// A connection's token: the grant ([`auth::admit`]: the subject, what it
/// may do, its `exp`, the topic) and when it ends this event stream,
/// WebSocket or held long poll ([`Tokens::close_at`](crate::auth::Tokens::close_at)):
/// one more deadline.
#[derive(Debug)]
struct Admission {
    grant: Grant,
    expires: Option<Instant>,
}
// ANCHOR_END: connection

impl Connection {
    /// A new connection, accepted at `now` (its idle time counts from here).
    /// `waker.wake(token)` is how publishers reach it.
    pub fn new(server: Arc<Server>, waker: Arc<dyn Wake>, token: usize, now: Instant) -> Connection {
        let c = &server.config;
        let peer = Arc::new(Peer::new(Outbox::new(Transport::Sse, c.outbox_budget, c.policy), waker, token));
        server.stats.open(Kind::Http);
        Connection {
            server,
            peer,
            state: State::Http { buf: Vec::new(), continue_sent: false, since: now, paused: false },
            kind: Kind::Http,
            eof: false,
            closed: false,
            fin: false,
            ws_publishes: None,
            admission: None,
        }
    }

    /// What the runtime should do with the socket.
    pub fn status(&self) -> Status {
        if self.closed || (self.is_closing() && self.eof && self.peer.outbox().pending() == 0) {
            Status::Closed
        } else if self.is_closing() {
            Status::Closing
        } else {
            Status::Open
        }
    }

    // ANCHOR: take_fin
    /// Whether the runtime must shut down the socket's write half (send FIN)
    /// now: `true` exactly once, when the connection is closing and every
    /// byte it produced has been written. The runtime then keeps reading
    /// (the core discards the input) until end of file or the linger
    /// deadline, and drops the socket when [`status`](Self::status) says
    /// `Closed`. Every runtime's close is the same three steps, so the core
    /// decides when, and the runtime only makes the system call.
    pub fn take_fin(&mut self) -> bool {
        let due = !self.fin && !self.closed && self.is_closing() && self.peer.outbox().pending() == 0;
        self.fin |= due;
        due
    }
    // ANCHOR_END: take_fin

    /// Whether the runtime should read: not after end of file, and not while
    /// too much output is waiting (a client that sends requests or echo
    /// messages without reading the answers is slowed down by TCP itself).
    ///
    /// Not either while pipelined requests wait for the output to drain
    /// (see [`written`](Self::written)): they are served first, and an end
    /// of file read meanwhile would drop them.
    pub fn wants_read(&self) -> bool {
        // Requests pipelined behind a held long poll wait unparsed: they count too.
        let held = match &self.state {
            State::LongPoll(poll) => poll.buf.len(),
            State::Publishing(p) => p.buf.len(),
            State::Http { paused: true, .. } => return false,
            _ => 0,
        };
        !self.eof && !self.closed && self.peer.outbox().pending() + held < self.server.config.read_pause
    }

    /// What kind of connection this is now.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The subject (`sub`) of the token this connection was admitted with,
    /// on a server with a secret: who is connected (presence shows it).
    pub fn subject(&self) -> Option<&str> {
        self.admission.as_ref().map(|a| a.grant.claims.sub.as_str())
    }

    /// When the token ends this connection, if it is a live one (an event
    /// stream, a WebSocket, a held long poll) on a server with a secret.
    fn expiry(&self) -> Option<Instant> {
        let expires = self.admission.as_ref().and_then(|a| a.expires);
        expires.filter(|_| matches!(self.state, State::Sse { .. } | State::Ws { .. } | State::LongPoll(_)))
    }

    /// When [`on_tick`](Self::on_tick) must be called even if nothing else happens.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        let at = match &self.state {
            State::Done { linger } => Some(*linger),
            State::LongPoll(poll) => Some(poll.deadline),
            State::Publishing(p) => Some(p.deadline),
            State::Sse { keepalive, .. } => Some(keepalive.deadline()),
            State::Ws { pinger, .. } => Some(pinger.deadline(self.server.config.ping_interval)),
            State::Http { buf, since, paused, .. } => Some(http_deadline(&self.server.config, buf, *since, *paused).0),
            State::Echo { .. } => None,
        };
        // The token's end is one more deadline: the earliest one wins.
        at.into_iter().chain(self.expiry()).min()
    }

    /// Moves up to about `max` bytes of output into `out` (cheap handles to
    /// shared buffers). Returns the number of bytes. Write them, then call
    /// [`written`](Self::written).
    pub fn take_output(&mut self, out: &mut Vec<Bytes>, max: usize) -> usize {
        self.peer.outbox().take(out, max)
    }

    // ANCHOR: written
    /// The socket accepted `n` bytes of what `take_output` gave.
    ///
    /// If pipelined requests were waiting for the output to drain below
    /// `read_pause` and now it has, the connection wakes itself (its
    /// [`Wake`]): the runtime then calls [`on_tick`](Self::on_tick), which
    /// serves them with the current time. Meanwhile
    /// [`wants_read`](Self::wants_read) stays false.
    pub fn written(&mut self, n: usize) {
        let pending = {
            let mut outbox = self.peer.outbox();
            outbox.written(n);
            outbox.pending()
        };
        if n > 0
            && matches!(self.state, State::Http { paused: true, .. })
            && pending < self.server.config.read_pause
        {
            self.peer.wake();
        }
    }
    // ANCHOR_END: written

    // ANCHOR: on_read
    /// Bytes arrived from the peer.
    pub fn on_read(&mut self, data: &[u8], now: Instant) {
        if self.is_closing() || self.closed {
            return; // Draining a closing connection: input is discarded.
        }
        match &mut self.state {
            State::Http { buf, since, .. } => {
                if buf.is_empty() && !data.is_empty() {
                    *since = now; // The first byte of a request: its clock starts.
                }
                buf.extend_from_slice(data);
                self.serve_requests(now);
            }
            // Pipelined behind a held long poll: parsed once it is answered.
            State::LongPoll(poll) => poll.buf.extend_from_slice(data),
            State::Publishing(p) => p.buf.extend_from_slice(data),
            State::Ws { decoder, .. } | State::Echo { decoder } => {
                let mut events = Vec::new();
                let result = decoder.feed(data, &mut |e| events.push(e));
                for event in events {
                    self.on_ws_event(event, now);
                }
                if let Err(e) = result {
                    self.ws_fail(e, now);
                }
            }
            // An event stream ignores anything the client sends.
            State::Sse { .. } | State::Done { .. } => {}
        }
    }
    // ANCHOR_END: on_read

    /// The peer closed its side (read returned 0).
    pub fn on_eof(&mut self, now: Instant) {
        self.eof = true;
        match &self.state {
            // A complete request may still be answered; a partial one never
            // will. A connection already closing still flushes its last
            // response or close frame.
            State::Http { .. } | State::Done { .. } => self.close(now),
            // Streams and WebSockets end with their peer.
            _ => {
                self.closed = true;
                self.close(now);
            }
        }
    }

    // ANCHOR: on_tick
    /// The waker fired or a deadline passed: check the outbox, heartbeats,
    /// the long poll and the closing linger.
    pub fn on_tick(&mut self, now: Instant) {
        if let State::Done { linger } = self.state {
            if now >= linger {
                self.closed = true;
            }
            return;
        }
        if self.peer.outbox().overflowed() {
            // Cut off by the disconnect policy while publishing.
            let goodbye = matches!(self.state, State::Ws { .. }).then(|| encode::ws_close(1008, "slow consumer"));
            self.close_with(goodbye, now);
            return;
        }
        if self.expiry().is_some_and(|at| now >= at) {
            return self.expire(now);
        }
        if let State::Http { since, paused: paused @ true, .. } = &mut self.state
            && self.peer.outbox().pending() < self.server.config.read_pause
        {
            // The output has drained: serve the requests that waited for it.
            // The next one's clock starts now, not when it was paused.
            *paused = false;
            *since = now;
            self.serve_requests(now);
            return;
        }
        if matches!(self.state, State::Ws { .. }) && self.ws_publishes.as_ref().is_some_and(|q| !q.is_empty()) {
            self.ws_publish_refused();
        }
        match &mut self.state {
            State::Http { buf, since, paused, .. } => {
                let (deadline, wait) = http_deadline(&self.server.config, buf, *since, *paused);
                if now >= deadline {
                    match wait {
                        HttpWait::Idle => {
                            self.server.stats.idle_timeouts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            self.close(now);
                        }
                        HttpWait::Request(limit) => {
                            self.server.stats.request_timeouts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            self.fail(HttpError::RequestTimeout { limit }, now);
                        }
                    }
                }
            }
            State::LongPoll(poll) => {
                let replay = self.server.hub.poll(&poll.topic, &poll.after);
                if !replay.messages.is_empty() || replay.reset || now >= poll.deadline {
                    self.answer_long_poll(replay, now);
                }
            }
            State::Publishing(p) => {
                let answer = match p.ticket.peek() {
                    Some(answer) => answer,
                    None if now >= p.deadline => Err(Refusal::Broker),
                    None => return,
                };
                self.answer_publish(answer, now);
            }
            State::Sse { keepalive, .. } => {
                if keepalive.due(now, self.server.config.keepalive) {
                    let mut outbox = self.peer.outbox();
                    if outbox.pending() == 0 {
                        outbox.push_control(Bytes::from_static(encode::SSE_KEEPALIVE));
                    }
                }
            }
            State::Ws { pinger, .. } => match pinger.tick(now, self.server.config.ping_interval) {
                Beat::Idle => {}
                Beat::Ping => {
                    self.peer.outbox().push_control(encode::ws_frame(OpCode::Control(Control::Ping), b"rtlab"));
                }
                Beat::Dead => self.close_with(Some(encode::ws_close(1008, "no pong")), now),
            },
            State::Echo { .. } | State::Done { .. } => {}
        }
    }
    // ANCHOR_END: on_tick

    // ANCHOR: expire
    /// The token has run out: each transport ends the way the contract says
    /// — a WebSocket with close code 4001, an event stream with an
    /// `expired` event, a held long poll with `401`.
    fn expire(&mut self, now: Instant) {
        match &self.state {
            State::Ws { .. } => self.close_with(Some(encode::ws_close(4001, "token expired")), now),
            State::Sse { .. } => self.close_with(Some(Bytes::from_static(auth::SSE_EXPIRED)), now),
            _ => self.fail(HttpError::Unauthorized("token expired".into()), now),
        }
    }
    // ANCHOR_END: expire

    // ANCHOR: shutdown
    /// The server is shutting down: say goodbye the way each transport
    /// expects, then close.
    ///
    /// First of all, the server is marked as stopping ([`Server::begin_stop`]),
    /// before this connection leaves its topic: from then on no publish is
    /// acknowledged that this subscriber would miss.
    pub fn shutdown(&mut self, now: Instant) {
        self.server.begin_stop();
        if self.is_closing() || self.closed {
            return;
        }
        match &self.state {
            State::Ws { .. } | State::Echo { .. } => {
                self.close_with(Some(encode::ws_close(1001, "server shutting down")), now);
            }
            State::LongPoll(poll) => {
                let replay = self.server.hub.poll(&poll.topic, &poll.after);
                self.answer_long_poll(replay, now);
                self.close(now);
            }
            _ => self.close(now),
        }
    }
    // ANCHOR_END: shutdown

    /// Starts closing: no more input is processed, subscriptions end, the
    /// output is flushed within the linger time.
    fn close(&mut self, now: Instant) {
        self.close_with(None, now);
    }

    // ANCHOR: close_with
    /// Closes after a last frame. The subscription ends *before* the frame
    /// is queued, so that no message can follow a WebSocket close frame.
    /// Messages already queued are still flushed.
    fn close_with(&mut self, last: Option<Bytes>, now: Instant) {
        self.leave_topic();
        let linger = match self.state {
            State::Done { linger } => linger, // Already closing: the first linger stands.
            _ => now + self.server.config.close_linger,
        };
        self.state = State::Done { linger };
        if let Some(frame) = last {
            self.respond(frame);
        }
    }
    // ANCHOR_END: close_with

    /// Whether the connection is closing (or closed).
    fn is_closing(&self) -> bool {
        matches!(self.state, State::Done { .. })
    }

    fn leave_topic(&mut self) {
        let sub = match &self.state {
            State::LongPoll(poll) => &poll.sub,
            State::Sse { sub, .. } | State::Ws { sub, .. } => sub,
            State::Http { .. } | State::Publishing(_) | State::Echo { .. } | State::Done { .. } => return,
        };
        self.server.hub.unsubscribe(sub);
    }

    fn set_kind(&mut self, kind: Kind) {
        self.server.stats.switch(self.kind, kind);
        self.kind = kind;
    }

    fn respond(&mut self, response: Bytes) {
        self.peer.outbox().push_control(response);
    }

    // ANCHOR: serve_requests
    /// Serves the complete requests in the input buffer (clients may
    /// pipeline), one at a time, until the output pending reaches
    /// `read_pause`: then the rest waits, unparsed (`paused`), until the
    /// client has read enough ([`written`](Self::written) wakes the
    /// connection, [`on_tick`](Self::on_tick) serves them). Pausing only the
    /// *reads* is not enough: one read of 16 KiB can hold a thousand tiny
    /// requests, each answered with a demo page or a poll of the retention.
    fn serve_requests(&mut self, now: Instant) {
        loop {
            let pending = self.peer.outbox().pending();
            let State::Http { buf, continue_sent, since, paused } = &mut self.state else { return };
            let config = &self.server.config;
            if !buf.is_empty() && pending >= config.read_pause {
                *paused = true;
                return;
            }
            *paused = false;
            let (req, head_len) = match http::parse_request(buf, config.max_head, config.max_message) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => {
                    if buf.is_empty() {
                        *buf = Vec::new(); // An idle keep-alive connection holds no buffer.
                    }
                    return;
                }
                Err(e) => return self.fail(e, now),
            };
            let total = head_len + req.content_length;
            if buf.len() < total {
                if req.expect_continue && !*continue_sent {
                    *continue_sent = true;
                    self.respond(Bytes::from_static(http::CONTINUE));
                }
                return; // Wait for the body.
            }
            let body: Vec<u8> = buf[head_len..total].to_vec();
            let rest = buf.split_off(total);
            *buf = rest;
            *continue_sent = false;
            // The next wait — for the next request, or idle — starts now.
            *since = now;
            let keep_alive = req.keep_alive;
            self.route(req, body, now);
            if !keep_alive && matches!(self.state, State::Http { .. }) {
                return self.close(now);
            }
        }
    }
    // ANCHOR_END: serve_requests

    fn fail(&mut self, e: HttpError, now: Instant) {
        self.respond(e.response());
        self.close(now);
    }

    /// Answers `503` for `why` and closes.
    fn refuse(&mut self, why: Refusal, now: Instant) {
        let e = self.server.refusal(why);
        self.fail(e, now);
    }

    /// The topic a subscription is about to join: found, or created within
    /// the limit. `None`: refused, and the `503` is already on its way.
    fn topic_or_refuse(&mut self, name: &str, now: Instant) -> Option<TopicRef> {
        match self.server.hub.topic(name, now, &self.server.stats) {
            Ok(topic) => Some(topic),
            Err(why) => {
                self.refuse(why, now);
                None
            }
        }
    }

    // ANCHOR: route_admit
    /// Serves one request: first the checks of [`auth::admit`] (origin,
    /// token), then the route; a live connection it starts gets its token's
    /// close deadline.
    fn route(&mut self, req: Request, body: Vec<u8>, now: Instant) {
        let grant = match auth::admit(&self.server.config, &req, now) {
            Ok(grant) => grant,
            Err(e) => return self.fail(e, now),
        };
        if let Some(a) = &mut self.admission {
            a.expires = None;
        }
        if let Some(grant) = grant
            && let Some(tokens) = &self.server.config.tokens
        {
            let expires = Some(tokens.close_at(&grant.claims, &grant.token, self.peer.token(), now));
            self.admission = Some(Box::new(Admission { grant, expires }));
        }
        self.dispatch(req, body, now);
    }
    // ANCHOR_END: route_admit

    // ANCHOR: dispatch
    fn dispatch(&mut self, req: Request, body: Vec<u8>, now: Instant) {
        let server = self.server.clone();
        match req.route {
            Route::Publish { topic } => match String::from_utf8(body) {
                Ok(data) if server.hub.broker().is_some() => self.publish_via_broker(&topic, data, req.keep_alive, now),
                Ok(data) => match server.hub.publish(&topic, &data, now, &server.stats) {
                    Ok(id) => {
                        self.respond(http::response(200, "application/json", format!("{{\"id\":{id}}}").as_bytes()))
                    }
                    Err(why) => self.refuse(why, now),
                },
                Err(_) => self.fail(HttpError::BadRequest("message is not valid UTF-8".into()), now),
            },
            Route::Poll { topic, after, wait } => {
                // With a broker another process may hold what this one does
                // not: the topic is loaded from the broker first.
                if server.hub.broker().is_some() && self.topic_or_refuse(&topic, now).is_none() {
                    return;
                }
                let replay = server.hub.poll(&topic, &after);
                match wait {
                    // A reset is news: answered at once, like a message.
                    Some(secs) if replay.messages.is_empty() && !replay.reset => {
                        let Some(handle) = self.topic_or_refuse(&topic, now) else { return };
                        let deadline = now + Duration::from_secs(secs.into());
                        self.hold_long_poll(handle, topic, after, deadline, req.keep_alive, now)
                    }
                    _ => self.answer_poll(replay),
                }
            }
            // A subscription finds (or creates) its topic before it answers,
            // so that a refusal is a plain 503 and not a broken stream.
            Route::Sse { topic, resume } => {
                let Some(topic) = self.topic_or_refuse(&topic, now) else { return };
                self.respond(Bytes::from_static(http::SSE_HEAD));
                self.set_kind(Kind::Sse);
                let sub = self.subscribe(topic, Transport::Sse, resume.as_ref(), req.client.as_deref());
                self.state = State::Sse { sub, keepalive: KeepAlive::new(server.config.keepalive, now) };
            }
            Route::Ws { topic, resume, accept } => {
                let Some(topic) = self.topic_or_refuse(&topic, now) else { return };
                self.respond(http::websocket_accept(&accept));
                self.set_kind(Kind::Ws);
                let sub = self.subscribe(topic, Transport::Ws, resume.as_ref(), req.client.as_deref());
                // A /ws publish carries the message JSON-escaped: allow for that.
                let decoder = WsDecoder::new(server.config.max_message.saturating_mul(6).saturating_add(1024));
                self.upgrade(State::Ws { sub, decoder, pinger: Pinger::new(server.config.ping_interval, now) }, now);
            }
            Route::Echo { accept } => {
                self.respond(http::websocket_accept(&accept));
                self.set_kind(Kind::Echo);
                self.upgrade(State::Echo { decoder: WsDecoder::new(server.config.max_echo_message) }, now);
            }
            page @ (Route::Index | Route::Ticker | Route::Chat) => {
                self.respond(http::response(200, "text/html; charset=utf-8", crate::page::html(&page).as_bytes()))
            }
            Route::Stats => self.respond(http::response(200, "application/json", server.stats.to_json().as_bytes())),
            Route::Presence { topic } => {
                let local = server.hub.presence(&topic);
                let names = match server.hub.broker() {
                    Some(broker) => broker.presence(&topic, local),
                    None => Ok(local),
                };
                match names {
                    Ok(clients) => {
                        let body = serde_json::json!({ "topic": topic, "clients": clients }).to_string();
                        self.respond(http::response(200, "application/json", body.as_bytes()))
                    }
                    Err(why) => {
                        server.stats.refused(why);
                        self.refuse(why, now)
                    }
                }
            }
        }
    }
    // ANCHOR_END: dispatch

    /// Switches to a WebSocket state; frames the client sent right behind
    /// its handshake are decoded at once.
    fn upgrade(&mut self, state: State, now: Instant) {
        let State::Http { buf, .. } = std::mem::replace(&mut self.state, state) else { return };
        if !buf.is_empty() {
            self.on_read(&buf, now);
        }
    }

    fn subscribe(
        &mut self,
        topic: TopicRef,
        transport: Transport,
        resume: Option<&Cursor>,
        client: Option<&str>,
    ) -> Subscription {
        self.server.hub.subscribe_as(topic, &self.peer, transport, resume, client, &self.server.stats)
    }

    fn answer_poll(&mut self, replay: crate::hub::Replay) {
        self.server
            .stats
            .delivered
            .fetch_add(replay.messages.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let body = encode::poll_body(&replay.epoch, &replay.messages, replay.last_id, replay.missed, replay.reset);
        self.respond(http::response(200, "application/json", &body));
    }

    // ANCHOR: publish_via_broker
    /// A `POST /publish` with a broker: the message goes to the broker with a
    /// [`Ticket`], and the connection waits for the answer without blocking
    /// anything — it is woken when the ticket is completed, like a
    /// subscriber for a message ([`on_tick`](Self::on_tick)).
    fn publish_via_broker(&mut self, topic: &str, data: String, keep_alive: bool, now: Instant) {
        if self.server.is_stopping() {
            self.server.stats.refused(Refusal::Stopping);
            return self.refuse(Refusal::Stopping, now);
        }
        let State::Http { buf, .. } = &mut self.state else { return };
        let buf = std::mem::take(buf);
        let ticket = Ticket::new(self.peer.waker(), self.peer.token());
        let deadline = now + self.server.config.request_timeout;
        self.state = State::Publishing(Box::new(PendingPublish { ticket: ticket.clone(), deadline, keep_alive, buf }));
        if let Some(broker) = self.server.hub.broker() {
            broker.publish(topic, data, ticket);
        }
        self.on_tick(now); // Answered already (a broker that refused at once)?
    }

    fn answer_publish(&mut self, answer: Result<u64, Refusal>, now: Instant) {
        let placeholder = State::Http { buf: Vec::new(), continue_sent: false, since: now, paused: false };
        let State::Publishing(p) = std::mem::replace(&mut self.state, placeholder) else { return };
        let PendingPublish { keep_alive, buf, .. } = *p;
        match answer {
            Ok(id) => {
                self.server.stats.published.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.respond(http::response(200, "application/json", format!("{{\"id\":{id}}}").as_bytes()));
            }
            Err(why) => {
                self.server.stats.refused(why);
                return self.refuse(why, now);
            }
        }
        self.state = State::Http { buf, continue_sent: false, since: now, paused: false };
        if keep_alive {
            self.serve_requests(now); // Requests pipelined behind the publish.
        } else {
            self.close(now);
        }
    }

    /// Reports the oldest answered `/ws` publish if the broker refused it;
    /// `true` if a frame was queued.
    fn ws_publish_refused(&mut self) -> bool {
        let mut reported = false;
        let Some(queue) = self.ws_publishes.as_mut() else { return false };
        let mut answers = Vec::new();
        while let Some(answer) = queue.front().and_then(|t| t.peek()) {
            queue.pop_front();
            answers.push(answer);
        }
        for answer in answers {
            if let Err(why) = answer {
                self.server.stats.refused(why);
                let e = self.server.refusal(why);
                self.respond(encode::ws_error(&e.to_string()));
                reported = true;
            } else {
                self.server.stats.published.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        reported
    }
    // ANCHOR_END: publish_via_broker

    // ANCHOR: long_poll
    fn hold_long_poll(
        &mut self,
        handle: TopicRef,
        topic: String,
        after: Cursor,
        deadline: Instant,
        keep_alive: bool,
        now: Instant,
    ) {
        let State::Http { buf, .. } = &mut self.state else { return };
        let buf = std::mem::take(buf);
        self.set_kind(Kind::LongPoll);
        // Subscribe first, then look again: a message published between the
        // first look and the subscription would otherwise be slept through.
        let sub = self.server.hub.subscribe(handle, &self.peer, Transport::LongPoll, None, &self.server.stats);
        self.state = State::LongPoll(Box::new(HeldPoll { sub, topic, after, deadline, keep_alive, buf }));
        if let State::LongPoll(poll) = &self.state {
            let replay = self.server.hub.poll(&poll.topic, &poll.after);
            if !replay.messages.is_empty() || replay.reset {
                self.answer_long_poll(replay, now);
            }
        }
    }

    fn answer_long_poll(&mut self, replay: crate::hub::Replay, now: Instant) {
        let placeholder = State::Http { buf: Vec::new(), continue_sent: false, since: now, paused: false };
        let State::LongPoll(poll) = std::mem::replace(&mut self.state, placeholder) else {
            return;
        };
        let HeldPoll { sub, keep_alive, buf, .. } = *poll;
        self.server.hub.unsubscribe(&sub);
        self.set_kind(Kind::Http);
        self.answer_poll(replay);
        self.state = State::Http { buf, continue_sent: false, since: now, paused: false };
        if keep_alive {
            self.serve_requests(now); // Requests pipelined behind the poll.
        } else {
            self.close(now);
        }
    }
    // ANCHOR_END: long_poll

    // ANCHOR: ws_event
    fn on_ws_event(&mut self, event: WsEvent, now: Instant) {
        if self.is_closing() {
            return;
        }
        let echo = matches!(self.state, State::Echo { .. });
        match event {
            WsEvent::Ping(payload) => self.respond(encode::ws_frame(OpCode::Control(Control::Pong), &payload)),
            WsEvent::Pong(_) => {
                if let State::Ws { pinger, .. } = &mut self.state {
                    pinger.pong(now);
                }
            }
            WsEvent::Close(code) => {
                // Answer with the same code (RFC 6455 §5.5.1), then close.
                let reply = match code {
                    Some((code, _)) => encode::ws_close(code, ""),
                    None => encode::ws_frame(OpCode::Control(Control::Close), b""),
                };
                self.close_with(Some(reply), now);
            }
            WsEvent::Text(text) if echo => self.respond(encode::ws_frame(OpCode::Data(Data::Text), text.as_bytes())),
            WsEvent::Binary(data) if echo => self.respond(encode::ws_frame(OpCode::Data(Data::Binary), &data)),
            WsEvent::Text(text) => self.ws_publish(&text, now),
            WsEvent::Binary(_) => self.respond(encode::ws_error("binary frames are not accepted on /ws")),
        }
    }
    // ANCHOR_END: ws_event

    // ANCHOR: ws_publish
    /// A `/ws` client frame: `{"op":"publish","data":"..."}`.
    fn ws_publish(&mut self, text: &str, now: Instant) {
        let State::Ws { sub, .. } = &self.state else { return };
        let request: serde_json::Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(_) => return self.respond(encode::ws_error("expected JSON: {\"op\":\"publish\",\"data\":\"...\"}")),
        };
        match request.get("op").and_then(|v| v.as_str()) {
            Some("publish") => {}
            Some("refresh") => return self.ws_refresh(&request, now),
            _ => return self.respond(encode::ws_error("unknown op (expected \"publish\" or \"refresh\")")),
        }
        if let Some(grant) = self.admission.as_ref().map(|a| &a.grant)
            && let Err(e) = auth::permit(&grant.claims, &grant.topic, true)
        {
            return self.respond(encode::ws_error(&e.to_string()));
        }
        let Some(data) = request.get("data").and_then(|v| v.as_str()) else {
            return self.respond(encode::ws_error("publish needs a string \"data\""));
        };
        let max = self.server.config.max_message;
        if data.len() > max {
            return self.respond(encode::ws_error(&format!("message larger than {max} bytes")));
        }
        let topic = sub.topic.clone();
        if let Some(broker) = self.server.hub.broker() {
            let ticket = Ticket::new(self.peer.waker(), self.peer.token());
            self.ws_publishes.get_or_insert_default().push_back(ticket.clone());
            broker.publish(&crate::hub::name_of(&topic), data.to_owned(), ticket);
            return;
        }
        if let Err(why) = self.server.hub.publish_to(&topic, data, now, &self.server.stats) {
            let e = self.server.refusal(why);
            self.respond(encode::ws_error(&e.to_string()));
        }
    }
    // ANCHOR_END: ws_publish

    // ANCHOR: ws_refresh
    /// A `/ws` client frame `{"op":"refresh","token":"..."}`: a new token for
    /// the same subject and topic moves the close deadline to its `exp`. A
    /// refused refresh is reported and changes nothing: the old token's
    /// deadline stands.
    fn ws_refresh(&mut self, request: &serde_json::Value, now: Instant) {
        if !matches!(self.state, State::Ws { .. }) {
            return;
        }
        let Some(tokens) = &self.server.config.tokens else {
            return self.respond(encode::ws_error("this server asks for no tokens: nothing to refresh"));
        };
        let Some(token) = request.get("token").and_then(|v| v.as_str()) else {
            return self.respond(encode::ws_error("refresh needs a string \"token\""));
        };
        let Some(old) = self.admission.as_ref().map(|a| &a.grant) else { return };
        let checked = tokens.verify(token, now).and_then(|claims| {
            auth::permit(&claims, &old.topic, false)?;
            if old.claims.sub != claims.sub {
                return Err(HttpError::Forbidden(format!("the new token is for {}, not {}", claims.sub, old.claims.sub)));
            }
            Ok(claims)
        });
        match checked {
            Ok(claims) => {
                let expires = Some(tokens.close_at(&claims, token, self.peer.token(), now));
                let grant = Grant { claims, topic: old.topic.clone(), token: token.to_owned() };
                self.admission = Some(Box::new(Admission { grant, expires }));
            }
            Err(e) => self.respond(encode::ws_error(&format!("refresh refused: {e}"))),
        }
    }
    // ANCHOR_END: ws_refresh

    fn ws_fail(&mut self, e: WsError, now: Instant) {
        if !self.is_closing() {
            self.close_with(Some(encode::ws_close(e.code, e.reason)), now);
        }
    }
}

// ANCHOR: http_deadline
/// The deadline of a connection waiting for a request, and what passing it
/// means.
///
/// With part of a request in `buf` (a head, or a head and part of a
/// publish's body), the whole request must have arrived within
/// `request_timeout` of its first byte (`since`): past it, `408` and close —
/// the answer to a client that trickles its request a byte at a time to hold
/// a connection forever (slowloris), or its body (slow POST). With nothing
/// in `buf`, no request is in progress: the connection is idle, before its
/// first request or between two (`since` is when the last one was served,
/// or when the connection was accepted), and after `idle_timeout` it is
/// closed without a word — there is no request to answer. (A client that
/// sends one just as the server closes sees the connection end, as it may
/// at any time, and retries on a new one if it can: RFC 9112 §9.3.1.)
/// Requests that wait, `paused`, for the client to read the answers to
/// earlier ones are the server's to serve, not the client's to finish: the
/// idle timeout applies, counted from the last request served — a client
/// that reads nothing for that long is closed without a word.
fn http_deadline(config: &Config, buf: &[u8], since: Instant, paused: bool) -> (Instant, HttpWait) {
    let (limit, wait) = if buf.is_empty() || paused {
        (config.idle_timeout, HttpWait::Idle)
    } else {
        (config.request_timeout, HttpWait::Request(config.request_timeout))
    };
    // A limit too far away to add is no limit (a year is as good as forever here).
    (since.checked_add(limit).unwrap_or(since + Duration::from_secs(365 * 86_400)), wait)
}
// ANCHOR_END: http_deadline

/// What a connection waiting for a request is waiting for (see
/// [`http_deadline`]).
#[derive(Debug, Clone, Copy)]
enum HttpWait {
    /// Nothing yet: the idle timeout applies.
    Idle,
    /// The rest of a request: the request timeout (this one) applies.
    Request(Duration),
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.leave_topic();
        self.server.stats.close(self.kind);
    }
}

#[cfg(test)]
mod tests;
