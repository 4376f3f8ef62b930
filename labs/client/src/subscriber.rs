//! The subscriber: one subscription to one topic, kept alive across lost
//! connections, as a sans-IO state machine.
//!
//! It never touches a socket or a clock. A runtime tells it what happened —
//! [`start`](Subscriber::start), [`handle_connected`](Subscriber::handle_connected),
//! [`handle_data`](Subscriber::handle_data), [`handle_closed`](Subscriber::handle_closed),
//! [`handle_connect_failed`](Subscriber::handle_connect_failed),
//! [`handle_timeout`](Subscriber::handle_timeout), each with the current
//! time — and does what it asks: the [`Action`]s from
//! [`poll_action`](Subscriber::poll_action), and waking it at
//! [`poll_timeout`](Subscriber::poll_timeout). Tests drive it with made-up
//! bytes and made-up instants, so a test of a ten-second back-off takes no
//! time at all.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::backoff::{Backoff, Strategy};
use crate::http::{Head, Request, Url};
use crate::wire::{self, Incoming, Refused, Stream, Transport};

/// Where a subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// With the messages published from now on (what `EventSource` does).
    /// A connection lost before the first message resumes live again, so
    /// what was published meanwhile is not seen: use [`Start::After`] to be sure.
    Live,
    /// After this id: the retained messages after it first (`After(0)`:
    /// everything the topic retains), with the missed signal if some are gone.
    After(u64),
}

/// A subscription's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The server.
    pub url: Url,
    /// The topic: 1 to 64 bytes of `A-Z a-z 0-9 . _ -`.
    pub topic: String,
    /// The transport.
    pub transport: Transport,
    /// Where to start.
    pub start: Start,
    /// The back-off between attempts.
    pub backoff: Backoff,
    /// Long polling: the `wait=` seconds of each poll (1 to 60).
    pub poll_wait: u32,
    /// How long a connection may take to be established and answered with a
    /// response head (long polling: the whole answer, on top of `poll_wait`).
    pub request_timeout: Duration,
    /// A connection that stayed up this long counts as healthy even if it
    /// delivered nothing (see [`Subscriber`]).
    pub healthy_after: Duration,
    /// The token sent with every request (`token=` query parameter), for a
    /// server started with a secret. See [`Subscriber::set_token`].
    pub token: Option<String>,
}

impl Config {
    /// Full jitter from 500 ms up to 20 s (Centrifugo's client defaults),
    /// starting live, polls held 25 s, 10 s to answer, healthy after 5 s.
    /// Fails on a topic the contract does not allow.
    pub fn new(url: Url, topic: &str, transport: Transport) -> Result<Config, String> {
        let valid = |b: u8| b.is_ascii_alphanumeric() || b"._-".contains(&b);
        if topic.is_empty() || topic.len() > 64 || !topic.bytes().all(valid) {
            return Err(format!("'{topic}' is not a topic (1 to 64 of A-Z a-z 0-9 . _ -)"));
        }
        Ok(Config {
            url,
            topic: topic.to_owned(),
            transport,
            start: Start::Live,
            backoff: Backoff::new(Strategy::FullJitter, Duration::from_millis(500), Duration::from_secs(20)),
            poll_wait: 25,
            request_timeout: Duration::from_secs(10),
            healthy_after: Duration::from_secs(5),
            token: None,
        })
    }
}

/// One message, delivered once, in id order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Its id in the topic.
    pub id: u64,
    /// Its text.
    pub data: String,
}

// ANCHOR: action
/// What the subscriber asks of its runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open a TCP connection to `host:port`, then report
    /// [`handle_connected`](Subscriber::handle_connected) (or
    /// [`handle_connect_failed`](Subscriber::handle_connect_failed)). The
    /// request's bytes follow as a [`Action::Send`] once it is connected.
    Connect(Request),
    /// Write these bytes on the connection.
    Send(Vec<u8>),
    /// Close the connection (harmless if it is closed already).
    Disconnect,
    /// Tell the application.
    Event(Event),
}

/// What the application hears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A new connection's subscription was accepted (its response head).
    Connected {
        /// The request's URL.
        url: String,
        /// The id it resumed after (`Last-Event-ID` or `after=`), if any.
        after: Option<u64>,
    },
    /// The next message.
    Message(Message),
    /// The server said ids `from..=to` are gone (retention, or its
    /// drop-oldest policy). Each id is reported once.
    Missed {
        /// The first id missed.
        from: u64,
        /// The last id missed.
        to: u64,
    },
    /// The server could not continue the sequence the client resumed in
    /// (it restarted, or lost the topic): what follows is epoch `epoch`
    /// from its beginning, ids from 1 again. Messages of the old epoch the
    /// client had not seen are gone, and there is no telling how many.
    Reset {
        /// The new epoch.
        epoch: String,
    },
    /// Ids `from..=to` were skipped *without* a missed signal: the contract
    /// says this never happens, so the subscriber checks it.
    Gap {
        /// The first id skipped.
        from: u64,
        /// The last id skipped.
        to: u64,
    },
    /// The connection was lost or refused; the next attempt is in `delay`.
    Reconnecting {
        /// Failures in a row, this one included.
        attempt: u32,
        /// The back-off before the next attempt.
        delay: Duration,
        /// What went wrong.
        reason: String,
    },
    /// SSE `retry:`: the back-off's base is now this.
    Retry(Duration),
    /// The server reported an error on the subscription (WebSocket
    /// `{"error":"..."}`); the subscription goes on.
    ServerError(String),
    /// The token is missing, was refused (`401`) or ran out (SSE
    /// `event: expired`, WebSocket close 4001). The subscriber waits —
    /// no back-off, no retries with the token it has — until the
    /// application hands it a new one with
    /// [`set_token`](Subscriber::set_token); then it reconnects at once and
    /// resumes after its last id.
    TokenNeeded {
        /// What the server said.
        reason: String,
    },
    /// The end: the server refused the request in a way retrying cannot fix
    /// (`400`, `404`...), or the back-off's attempts ran out.
    GaveUp {
        /// Why.
        reason: String,
    },
}
// ANCHOR_END: action

/// Counters, for tests and reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections opened (TCP connections established).
    pub connections: u64,
    /// Reconnections scheduled after a failure.
    pub reconnects: u64,
    /// Messages delivered.
    pub delivered: u64,
    /// Messages received again after a resume and dropped.
    pub duplicates: u64,
}

#[derive(Debug)]
enum State {
    /// Before [`Subscriber::start`].
    Idle,
    /// Backing off until `until`.
    Waiting { until: Instant },
    /// [`Action::Connect`] was asked for.
    Connecting { request: Request, deadline: Instant },
    /// Connected; the request was sent.
    Open(Box<Open>),
    /// Waiting for a new token ([`Event::TokenNeeded`]): no deadline, no retries.
    NeedToken,
    /// Gave up.
    Finished,
}

#[derive(Debug)]
struct Open {
    request: Request,
    /// When the connection was established.
    since: Instant,
    /// The response (head, or a poll's whole answer) is due by then.
    deadline: Option<Instant>,
    /// It delivered a message, or answered a poll.
    healthy: bool,
    /// [`Event::Connected`] was reported for it.
    announced: bool,
    phase: Phase,
}

#[derive(Debug)]
enum Phase {
    /// Reading the response head.
    Head(Vec<u8>),
    /// Past it.
    Stream(Stream),
}

// ANCHOR: subscriber
/// A subscription that survives lost connections.
///
/// **Resuming.** It remembers the id of the last message it delivered and
/// asks to resume after it on every new connection (SSE `Last-Event-ID`,
/// WebSocket and poll `after=`); a message at or below that id is a
/// duplicate and dropped, so the application sees each id once, in order.
/// A missed signal is passed on as [`Event::Missed`]; it does not move the
/// resume id (as `EventSource` does: the `missed` event has no id). The id
/// goes with its **epoch** (the server's name for the sequence it belongs
/// to): the subscriber resumes with `E-N`, and a server that restarted
/// answers with a reset, passed on as [`Event::Reset`], after which ids
/// start again from 1 in the new epoch.
///
/// **Backing off.** After a failed or lost connection it waits what its
/// [`Backoff`] says before the next attempt. The back-off is reset — the
/// next outage starts again from `base` — when the lost connection was
/// *healthy*: it delivered at least one message (or answered a poll), or
/// it stayed up for [`Config::healthy_after`]. Not merely when it was
/// accepted: a server that accepts and then falls over at once (a crash
/// loop, an overloaded proxy) would otherwise be hammered at the base rate
/// forever, the very herd the back-off is there to prevent. And a quiet
/// topic's long, healthy connection must not leave the counter high.
///
/// **Giving up.** A `4xx` answer (other than `408`, `425`, `429`) means the
/// request is wrong and is final, as `EventSource` fails on a non-`200`;
/// unlike `EventSource`, a `5xx` is retried, since an overloaded or
/// restarting server is exactly when backing off matters. The back-off's
/// `max_attempts`, if set, ends it too.
///
/// `R` is the random number generator of the jitter, injected so that tests
/// can seed it.
#[derive(Debug)]
pub struct Subscriber<R> {
    config: Config,
    backoff: Backoff,
    rng: R,
    state: State,
    actions: VecDeque<Action>,
    /// The last id delivered (or the start id): what a reconnection resumes after.
    last_id: Option<u64>,
    /// The epoch of `last_id`, once the server has named it.
    epoch: Option<String>,
    /// The highest id reported missed (or skipped), so that each is reported once.
    missed_to: u64,
    stats: Stats,
}
// ANCHOR_END: subscriber

impl<R: Rng> Subscriber<R> {
    /// A subscriber that has not started yet.
    pub fn new(config: Config, rng: R) -> Subscriber<R> {
        let last_id = match config.start {
            Start::Live => None,
            Start::After(id) => Some(id),
        };
        Subscriber {
            backoff: config.backoff.clone(),
            config,
            rng,
            state: State::Idle,
            actions: VecDeque::new(),
            last_id,
            epoch: None,
            missed_to: 0,
            stats: Stats::default(),
        }
    }

    /// The next thing to do, if any. Call until `None` after every `handle_*`.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When to call [`handle_timeout`](Subscriber::handle_timeout) next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::Waiting { until } => Some(*until),
            State::Connecting { deadline, .. } => Some(*deadline),
            State::Open(open) => open.deadline,
            State::Idle | State::NeedToken | State::Finished => None,
        }
    }

    /// The id a reconnection would resume after.
    pub fn last_id(&self) -> Option<u64> {
        self.last_id
    }

    /// The epoch of [`last_id`](Self::last_id), once the server named it.
    pub fn epoch(&self) -> Option<&str> {
        self.epoch.as_deref()
    }

    /// The back-off as it stands (its attempt counter, its base after `retry:`).
    pub fn backoff(&self) -> &Backoff {
        &self.backoff
    }

    /// It gave up; it will ask for nothing more.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Finished)
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    // ANCHOR: set_token
    /// A new token. On an open WebSocket it is sent as a
    /// `{"op":"refresh"}` frame and the connection lives on to the new
    /// `exp`; a subscriber waiting for a token ([`Event::TokenNeeded`])
    /// reconnects with it at once; otherwise the next request carries it.
    pub fn set_token(&mut self, token: String, now: Instant) {
        self.config.token = Some(token.clone());
        match &mut self.state {
            State::NeedToken => self.connect(now),
            State::Open(open) => {
                if let Phase::Stream(stream) = &mut open.phase {
                    let refresh = serde_json::json!({ "op": "refresh", "token": token }).to_string();
                    if let Some(bytes) = stream.ws_text(refresh) {
                        self.actions.push_back(Action::Send(bytes));
                    }
                }
            }
            _ => {}
        }
    }

    /// The token is refused or ran out: ask the application for a new one
    /// and wait for it, instead of retrying a token that cannot pass.
    fn need_token(&mut self, reason: String) {
        self.actions.push_back(Action::Disconnect);
        self.actions.push_back(Action::Event(Event::TokenNeeded { reason }));
        self.state = State::NeedToken;
    }
    // ANCHOR_END: set_token

    /// Starts: the first connection, at once.
    pub fn start(&mut self, now: Instant) {
        if matches!(self.state, State::Idle) {
            self.connect(now);
        }
    }

    /// The connection asked for by [`Action::Connect`] is established.
    pub fn handle_connected(&mut self, now: Instant) {
        if !matches!(self.state, State::Connecting { .. }) {
            return; // Not asked for: ignored.
        }
        let State::Connecting { request, .. } = std::mem::replace(&mut self.state, State::Idle) else {
            unreachable!("checked above")
        };
        self.stats.connections += 1;
        self.actions.push_back(Action::Send(request.encode()));
        self.state = State::Open(Box::new(Open {
            deadline: Some(now + self.answer_time(&request)),
            request,
            since: now,
            healthy: false,
            announced: false,
            phase: Phase::Head(Vec::new()),
        }));
    }

    /// The connection could not be established.
    pub fn handle_connect_failed(&mut self, now: Instant, reason: impl Into<String>) {
        if matches!(self.state, State::Connecting { .. }) {
            self.fail(now, format!("connect failed: {}", reason.into()));
        }
    }

    /// Bytes arrived on the connection.
    pub fn handle_data(&mut self, now: Instant, bytes: &[u8]) {
        let State::Open(open) = &mut self.state else { return };
        let transport = self.config.transport;
        let mut incoming = Vec::new();
        let result = match &mut open.phase {
            Phase::Stream(stream) => stream.feed(bytes, &mut incoming),
            Phase::Head(buf) => {
                buf.extend_from_slice(bytes);
                match Head::parse(buf) {
                    Ok(None) => return,
                    Err(e) => Err(e),
                    Ok(Some((head, len))) => {
                        let rest = buf.split_off(len);
                        match Stream::open(transport, &head, &open.request, &rest) {
                            Err(Refused::Fatal(reason)) => return self.give_up(reason),
                            Err(Refused::Token(reason)) => return self.need_token(reason),
                            Err(Refused::Retry(reason)) => Err(reason),
                            Ok(mut stream) => {
                                if transport != Transport::LongPoll {
                                    open.deadline = None;
                                }
                                if !open.announced {
                                    open.announced = true;
                                    let url = open.request.url();
                                    let after = self.last_id;
                                    self.actions.push_back(Action::Event(Event::Connected { url, after }));
                                }
                                let fed = stream.feed(&rest, &mut incoming);
                                open.phase = Phase::Stream(stream);
                                fed
                            }
                        }
                    }
                }
            }
        };
        // Items before an error still count: they arrived in order.
        self.take_in(now, incoming);
        if let Err(reason) = result {
            self.fail(now, reason);
        }
    }

    /// The connection was closed, by the server or by an error (`reason`).
    pub fn handle_closed(&mut self, now: Instant, reason: impl Into<String>) {
        let State::Open(open) = &mut self.state else { return };
        let mut incoming = Vec::new();
        if let Phase::Stream(stream) = &mut open.phase {
            match stream.eof(&mut incoming) {
                Ok(true) => return self.take_in(now, incoming),
                Ok(false) => {}
                Err(e) => return self.fail(now, e),
            }
        }
        self.fail(now, reason.into());
    }

    /// Time passed: a back-off ended, or a deadline expired.
    pub fn handle_timeout(&mut self, now: Instant) {
        match &self.state {
            State::Waiting { until } if now >= *until => self.connect(now),
            State::Connecting { deadline, .. } if now >= *deadline => self.fail(now, "connect timed out".into()),
            State::Open(open) if open.deadline.is_some_and(|d| now >= d) => self.fail(now, "no answer in time".into()),
            _ => {}
        }
    }

    /// How long a request may take to be answered.
    fn answer_time(&self, request: &Request) -> Duration {
        let held = self.config.transport == Transport::LongPoll && request.target.contains("&wait=");
        let wait = if held { Duration::from_secs(u64::from(self.config.poll_wait)) } else { Duration::ZERO };
        self.config.request_timeout + wait
    }

    fn connect(&mut self, now: Instant) {
        let c = &self.config;
        let request = wire::request(&c.url, &c.topic, c.transport, self.last_id, self.epoch.as_deref(), c.poll_wait, c.token.as_deref());
        self.actions.push_back(Action::Connect(request.clone()));
        self.state = State::Connecting { request, deadline: now + c.request_timeout };
    }

    // ANCHOR: take_in
    fn take_in(&mut self, now: Instant, incoming: Vec<Incoming>) {
        // Long polling without an id yet: the first answer only gives the
        // topic's newest id, from which the polls then start.
        let syncing = self.config.transport == Transport::LongPoll && self.last_id.is_none();
        for item in incoming {
            if !matches!(self.state, State::Open(_)) {
                return; // Failed or gave up halfway: the rest is moot.
            }
            match item {
                Incoming::Message { .. } | Incoming::Missed { .. } | Incoming::Reset { .. } if syncing => {}
                Incoming::Message { id, epoch, data } => {
                    match (epoch, &self.epoch) {
                        // A new epoch without a reset signal: the contract says
                        // it does not happen; treated as one, not as a gap.
                        (Some(e), Some(known)) if e != *known => self.reset(e),
                        (Some(e), None) => self.epoch = Some(e),
                        _ => {}
                    }
                    self.deliver(id, data)
                }
                Incoming::Missed { from, to } => self.missed(from, to),
                Incoming::Reset { epoch } => self.reset(epoch),
                Incoming::Retry(base) => {
                    self.backoff.set_base(base);
                    self.actions.push_back(Action::Event(Event::Retry(base)));
                }
                Incoming::ServerError(e) => self.actions.push_back(Action::Event(Event::ServerError(e))),
                Incoming::Send(bytes) => self.actions.push_back(Action::Send(bytes)),
                Incoming::Closed(reason) => self.fail(now, reason),
                Incoming::Expired(reason) => self.need_token(reason),
                Incoming::PollAnswered { last_id, epoch, keep_alive } => {
                    if self.epoch.is_none() || self.last_id.is_none() {
                        self.epoch = epoch;
                    }
                    self.poll_again(now, last_id, keep_alive)
                }
            }
        }
    }

    /// Delivers a message unless it is a duplicate; reports a silent gap.
    fn deliver(&mut self, id: u64, data: String) {
        if let Some(last) = self.last_id {
            if id <= last {
                self.stats.duplicates += 1;
                return;
            }
            let expected = last.max(self.missed_to) + 1;
            if id > expected {
                self.actions.push_back(Action::Event(Event::Gap { from: expected, to: id - 1 }));
                self.missed_to = id - 1;
            }
        }
        self.last_id = Some(id);
        self.stats.delivered += 1;
        if let State::Open(open) = &mut self.state {
            open.healthy = true;
        }
        self.actions.push_back(Action::Event(Event::Message(Message { id, data })));
    }

    /// The server's reset: ids start again, from 1, in `epoch`.
    fn reset(&mut self, epoch: String) {
        self.epoch = Some(epoch.clone());
        self.last_id = Some(0);
        self.missed_to = 0;
        self.actions.push_back(Action::Event(Event::Reset { epoch }));
    }

    /// Reports the part of a missed range not reported (or delivered) yet.
    fn missed(&mut self, from: u64, to: u64) {
        let from = from.max(self.missed_to + 1).max(self.last_id.map_or(0, |id| id + 1));
        if from <= to {
            self.missed_to = to;
            self.actions.push_back(Action::Event(Event::Missed { from, to }));
        }
    }
    // ANCHOR_END: take_in

    /// A poll was answered: the next one, on the same connection if it stays open.
    fn poll_again(&mut self, now: Instant, last_id: u64, keep_alive: bool) {
        if self.last_id.is_none() {
            self.last_id = Some(last_id);
        }
        if !keep_alive {
            // A complete answer: the connection was healthy.
            self.backoff.reset();
            self.actions.push_back(Action::Disconnect);
            return self.connect(now);
        }
        let c = &self.config;
        let request = wire::request(&c.url, &c.topic, c.transport, self.last_id, self.epoch.as_deref(), c.poll_wait, c.token.as_deref());
        let deadline = now + self.answer_time(&request);
        self.actions.push_back(Action::Send(request.encode()));
        if let State::Open(open) = &mut self.state {
            open.healthy = true;
            open.deadline = Some(deadline);
            open.request = request;
            open.phase = Phase::Head(Vec::new());
        }
    }

    // ANCHOR: fail
    /// The connection failed or was lost: back off, then try again.
    fn fail(&mut self, now: Instant, reason: String) {
        let healthy = match &self.state {
            State::Open(open) => open.healthy || now.duration_since(open.since) >= self.config.healthy_after,
            State::Connecting { .. } => false,
            State::Idle | State::Waiting { .. } | State::NeedToken | State::Finished => return,
        };
        self.actions.push_back(Action::Disconnect);
        if healthy {
            self.backoff.reset();
        }
        match self.backoff.next_delay(&mut self.rng) {
            Some(delay) => {
                self.stats.reconnects += 1;
                let attempt = self.backoff.attempt();
                self.actions.push_back(Action::Event(Event::Reconnecting { attempt, delay, reason }));
                self.state = State::Waiting { until: now + delay };
            }
            None => {
                let reason = format!("{reason} (after {} reconnection attempts)", self.backoff.attempt());
                self.finish(reason);
            }
        }
    }
    // ANCHOR_END: fail

    /// A refusal that retrying cannot fix.
    fn give_up(&mut self, reason: String) {
        self.actions.push_back(Action::Disconnect);
        self.finish(reason);
    }

    fn finish(&mut self, reason: String) {
        self.actions.push_back(Action::Event(Event::GaveUp { reason }));
        self.state = State::Finished;
    }
}

#[cfg(test)]
mod tests;
