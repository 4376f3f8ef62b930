//! The subscriber against scripted servers, on simulated time: every
//! instant is `t0` plus a duration the test chooses, nothing sleeps.

use super::*;
use rand::SeedableRng;
use rand::rngs::SmallRng;

const ALL: [Transport; 3] = [Transport::Sse, Transport::Ws, Transport::LongPoll];

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A subscriber, the simulated clock, and what it asked for.
struct Sim {
    sub: Subscriber<SmallRng>,
    t0: Instant,
    now: Instant,
    transport: Transport,
    /// The request head of the open connection.
    request: Option<Vec<u8>>,
    /// Every event, in order.
    events: Vec<Event>,
    /// Every request target sent, in order.
    targets: Vec<String>,
    /// Every `Last-Event-ID` sent (SSE), in order.
    last_event_ids: Vec<Option<String>>,
    /// Bytes sent after the request heads (WebSocket pongs and closes).
    sent: Vec<Vec<u8>>,
    connects: usize,
    disconnects: usize,
}

impl Sim {
    fn new(transport: Transport, start: Start, backoff: Backoff) -> Sim {
        let url = "http://127.0.0.1:8080".parse().unwrap();
        let mut config = Config::new(url, "t", transport).unwrap();
        config.start = start;
        config.backoff = backoff;
        Sim::from_config(config)
    }

    /// A subscriber with these settings, started at once.
    fn from_config(config: Config) -> Sim {
        let transport = config.transport;
        let t0 = Instant::now();
        let mut sim = Sim {
            sub: Subscriber::new(config, SmallRng::seed_from_u64(42)),
            t0,
            now: t0,
            transport,
            request: None,
            events: Vec::new(),
            targets: Vec::new(),
            last_event_ids: Vec::new(),
            sent: Vec::new(),
            connects: 0,
            disconnects: 0,
        };
        sim.sub.start(t0);
        sim.drain();
        sim
    }

    /// Full jitter, 100 ms to 10 s.
    fn jitter(transport: Transport, start: Start) -> Sim {
        Sim::new(transport, start, Backoff::new(Strategy::FullJitter, ms(100), ms(10_000)))
    }

    /// Takes the subscriber's actions, recording them.
    fn drain(&mut self) {
        while let Some(action) = self.sub.poll_action() {
            match action {
                Action::Connect(r) => {
                    self.connects += 1;
                    self.targets.push(r.target.clone());
                    self.last_event_ids.push(r.header_value("Last-Event-ID").map(str::to_owned));
                }
                Action::Send(bytes) if bytes.starts_with(b"GET ") => {
                    let head = String::from_utf8(bytes.clone()).unwrap();
                    let target = head.split(' ').nth(1).unwrap().to_owned();
                    if self.request.is_some() {
                        self.targets.push(target); // A poll on the same connection.
                    }
                    self.request = Some(bytes);
                }
                Action::Send(bytes) => self.sent.push(bytes),
                Action::Disconnect => {
                    self.disconnects += 1;
                    self.request = None;
                }
                Action::Event(e) => self.events.push(e),
            }
        }
    }

    fn connected(&mut self) {
        self.sub.handle_connected(self.now);
        self.drain();
    }

    fn data(&mut self, bytes: &[u8]) {
        self.sub.handle_data(self.now, bytes);
        self.drain();
    }

    fn closed(&mut self) {
        self.sub.handle_closed(self.now, "closed by the peer");
        self.request = None;
        self.drain();
    }

    /// Moves the clock to the subscriber's deadline and wakes it; returns
    /// how long that was.
    fn wait(&mut self) -> Duration {
        let deadline = self.sub.poll_timeout().expect("a deadline");
        let waited = deadline.saturating_duration_since(self.now);
        self.now = self.now.max(deadline);
        self.sub.handle_timeout(self.now);
        self.drain();
        waited
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.sub.handle_timeout(self.now);
        self.drain();
    }

    /// The resume id of the request on the connection (`Last-Event-ID` or `after=`).
    fn resume_id(&self) -> Option<u64> {
        let head = String::from_utf8(self.request.clone().expect("a request was sent")).unwrap();
        let target = head.split(' ').nth(1).unwrap();
        let from_query = target.split(['?', '&']).find_map(|kv| kv.strip_prefix("after="));
        let from_header = head
            .lines()
            .find_map(|l| l.strip_prefix("Last-Event-ID: ").map(str::to_owned))
            .map(|v| v.trim().to_owned());
        from_query.map(str::to_owned).or(from_header).map(|v| v.parse().unwrap())
    }

    fn messages(&self) -> Vec<(u64, String)> {
        self.events
            .iter()
            .filter_map(|e| if let Event::Message(m) = e { Some((m.id, m.data.clone())) } else { None })
            .collect()
    }

    fn reconnect_delays(&self) -> Vec<(u32, Duration)> {
        self.events
            .iter()
            .filter_map(|e| {
                if let Event::Reconnecting { attempt, delay, .. } = e { Some((*attempt, *delay)) } else { None }
            })
            .collect()
    }

    fn missed(&self) -> Vec<(u64, u64)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Missed { from, to } => Some((*from, *to)),
                _ => None,
            })
            .collect()
    }

    /// The server's accepting head for this transport (a poll answer is
    /// written whole by [`poll_answer`]).
    fn accept(&mut self) {
        match self.transport {
            Transport::Sse => {
                self.data(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")
            }
            Transport::Ws => {
                let head = String::from_utf8(self.request.clone().unwrap()).unwrap();
                let key = head.lines().find_map(|l| l.strip_prefix("Sec-WebSocket-Key: ")).unwrap();
                let accept = tungstenite::handshake::derive_accept_key(key.trim().as_bytes());
                let head = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
                );
                self.data(head.as_bytes());
            }
            Transport::LongPoll => {}
        }
    }

    /// The server sends `messages` (and `missed` first), in this transport's encoding.
    fn send(&mut self, missed: Option<(u64, u64)>, messages: &[(u64, &str)], last_id: u64) {
        let bytes = match self.transport {
            Transport::Sse => {
                let mut s = String::new();
                if let Some((f, t)) = missed {
                    s += &format!("event: missed\ndata: {{\"from\":{f},\"to\":{t}}}\n\n");
                }
                for (id, data) in messages {
                    s += &format!("id: {id}\ndata: {data}\n\n");
                }
                s.into_bytes()
            }
            Transport::Ws => {
                let mut b = Vec::new();
                if let Some((f, t)) = missed {
                    b.extend(ws_text(&format!("{{\"missed\":{{\"from\":{f},\"to\":{t}}}}}")));
                }
                for (id, data) in messages {
                    b.extend(ws_text(&format!("{{\"id\":{id},\"data\":\"{data}\"}}")));
                }
                b
            }
            Transport::LongPoll => poll_answer(missed, messages, last_id, true),
        };
        self.data(&bytes);
    }
}

/// A server's (unmasked) WebSocket text frame.
fn ws_text(text: &str) -> Vec<u8> {
    ws_frame(0x81, text.as_bytes())
}

fn ws_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut f = vec![first, payload.len() as u8];
    f.extend_from_slice(payload);
    f
}

/// A whole poll answer.
fn poll_answer(missed: Option<(u64, u64)>, messages: &[(u64, &str)], last_id: u64, keep_alive: bool) -> Vec<u8> {
    poll_answer_in(None, missed, messages, last_id, keep_alive)
}

/// A whole poll answer, with `"epoch"` and perhaps `"reset"` (`(epoch, reset)`).
fn poll_answer_in(
    epoch: Option<(&str, bool)>,
    missed: Option<(u64, u64)>,
    messages: &[(u64, &str)],
    last_id: u64,
    keep_alive: bool,
) -> Vec<u8> {
    let entries: Vec<String> = messages.iter().map(|(id, d)| format!("{{\"id\":{id},\"data\":\"{d}\"}}")).collect();
    let missed = missed.map(|(f, t)| format!(",\"missed\":{{\"from\":{f},\"to\":{t}}}")).unwrap_or_default();
    let (head, reset) = match epoch {
        None => (String::new(), String::new()),
        Some((e, reset)) => {
            (format!("\"epoch\":\"{e}\","), if reset { format!(",\"reset\":{{\"epoch\":\"{e}\"}}") } else { String::new() })
        }
    };
    let body = format!("{{{head}\"messages\":[{}],\"last_id\":{last_id}{missed}{reset}}}", entries.join(","));
    let close = if keep_alive { "" } else { "Connection: close\r\n" };
    format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{close}Content-Length: {}\r\n\r\n{body}", body.len())
        .into_bytes()
}

// ANCHOR: every_three
/// A server that drops the connection after every third message. Each
/// reconnection resumes after the last message delivered, and a server
/// that replays one message too many (the resume id itself) costs no
/// duplicate: the application sees ids 1 to 10 once each, in order.
#[test]
fn resumes_after_every_lost_connection_without_duplicates() {
    for transport in ALL {
        let mut sim = Sim::jitter(transport, Start::After(0));
        let topic: Vec<(u64, String)> = (1..=10).map(|id| (id, format!("m{id}"))).collect();
        let mut resumed = Vec::new();
        while sim.messages().len() < 10 {
            sim.connected();
            let after = sim.resume_id().expect("every request resumes");
            resumed.push(after);
            sim.accept();
            // One message too many (the resume id itself), then three new ones.
            let batch: Vec<(u64, &str)> = topic
                .iter()
                .filter(|(id, _)| *id >= after.max(1) && *id <= after + 3)
                .map(|(id, d)| (*id, d.as_str()))
                .collect();
            sim.send(None, &batch, 10);
            sim.closed();
            let waited = sim.wait();
            assert!(waited <= ms(100), "{transport}: a healthy connection resets the back-off, waited {waited:?}");
        }
        assert_eq!(resumed, [0, 3, 6, 9], "{transport}: resume ids");
        assert_eq!(sim.messages(), topic, "{transport}");
        assert_eq!(sim.sub.stats().duplicates, 3, "{transport}");
        assert_eq!(sim.reconnect_delays().len(), 4, "{transport}");
        assert!(sim.reconnect_delays().iter().all(|(attempt, _)| *attempt == 1), "{transport}");
    }
}
// ANCHOR_END: every_three

/// The same, with the server's bytes arriving one at a time.
#[test]
fn byte_by_byte() {
    for transport in ALL {
        let mut sim = Sim::jitter(transport, Start::After(4));
        sim.connected();
        assert_eq!(sim.resume_id(), Some(4));
        let bytes = match transport {
            Transport::Sse => {
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\nid: 5\r\ndata: a\r\n\r\nid: 6\rdata: b\r\r"
                    .to_vec()
            }
            Transport::Ws => {
                sim.accept();
                [ws_text(r#"{"id":5,"data":"a"}"#), ws_text(r#"{"id":6,"data":"b"}"#)].concat()
            }
            Transport::LongPoll => poll_answer(None, &[(5, "a"), (6, "b")], 6, true),
        };
        for b in &bytes {
            sim.data(std::slice::from_ref(b));
        }
        assert_eq!(sim.messages(), [(5, "a".into()), (6, "b".into())], "{transport}");
    }
}

/// A resume older than the retention: the missed range first, then what
/// is retained. The same range again (the connection was lost before any
/// message) is not reported twice.
#[test]
fn missed_signal_is_reported_once() {
    for transport in ALL {
        let mut sim = Sim::jitter(transport, Start::After(0));
        sim.connected();
        sim.accept();
        sim.send(Some((1, 6)), &[], 10);
        if transport != Transport::LongPoll {
            sim.closed();
            sim.wait();
            sim.connected();
            assert_eq!(sim.resume_id(), Some(0), "{transport}: a missed signal does not move the resume id");
            sim.accept();
            sim.send(Some((1, 6)), &[(7, "m7"), (8, "m8"), (9, "m9"), (10, "m10")], 10);
        } else {
            // A poll answer has both at once: the next poll has a message.
            sim.send(Some((1, 6)), &[(7, "m7"), (8, "m8"), (9, "m9"), (10, "m10")], 10);
        }
        assert_eq!(sim.missed(), [(1, 6)], "{transport}");
        let ids: Vec<u64> = sim.messages().iter().map(|m| m.0).collect();
        assert_eq!(ids, [7, 8, 9, 10], "{transport}");
        assert!(
            !sim.events.iter().any(|e| matches!(e, Event::Gap { .. })),
            "{transport}: the signalled range is no gap"
        );
        // A later signal (drop-oldest) extends the range.
        sim.send(Some((11, 12)), &[(13, "m13")], 13);
        assert_eq!(sim.missed(), [(1, 6), (11, 12)], "{transport}");
    }
}

/// Ids skipped without a signal are reported as a gap, not hidden.
#[test]
fn a_silent_gap_is_reported() {
    for transport in ALL {
        let mut sim = Sim::jitter(transport, Start::After(2));
        sim.connected();
        sim.accept();
        sim.send(None, &[(3, "a"), (5, "b")], 5);
        assert!(sim.events.contains(&Event::Gap { from: 4, to: 4 }), "{transport}: {:?}", sim.events);
        assert_eq!(sim.messages().len(), 2);
    }
}

/// Refused connections: the delays are exactly the strategy's, drawn from
/// the injected generator, and each deadline is now + delay.
#[test]
fn delays_follow_the_strategy() {
    let mut sim = Sim::new(Transport::Sse, Start::Live, Backoff::new(Strategy::Exponential, ms(100), ms(1000)));
    let mut waited = Vec::new();
    for _ in 0..6 {
        sim.sub.handle_connect_failed(sim.now, "refused");
        sim.drain();
        waited.push(sim.wait());
    }
    assert_eq!(waited, [ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000)]);
    assert_eq!(sim.connects, 7);

    for strategy in [Strategy::FullJitter, Strategy::EqualJitter, Strategy::Decorrelated] {
        let backoff = Backoff::new(strategy, ms(100), ms(5000));
        let mut sim = Sim::new(Transport::Ws, Start::Live, backoff.clone());
        let mut reference = backoff;
        let mut rng = SmallRng::seed_from_u64(42);
        for _ in 0..20 {
            sim.sub.handle_connect_failed(sim.now, "refused");
            sim.drain();
            assert_eq!(Some(sim.wait()), reference.next_delay(&mut rng), "{strategy}");
        }
        let attempts: Vec<u32> = sim.reconnect_delays().iter().map(|(a, _)| *a).collect();
        assert_eq!(attempts, (1..=20).collect::<Vec<_>>(), "{strategy}");
    }
}

/// Whether a lost connection resets the back-off: it delivered, or it
/// stayed up for `healthy_after` — not merely that it was accepted.
#[test]
fn only_a_healthy_connection_resets_the_backoff() {
    let mut sim = Sim::new(Transport::Sse, Start::Live, Backoff::new(Strategy::Exponential, ms(100), ms(60_000)));
    for _ in 0..3 {
        sim.sub.handle_connect_failed(sim.now, "refused");
        sim.drain();
        sim.wait();
    }
    // Accepted, then dropped at once: the fourth failure in a row.
    sim.connected();
    sim.accept();
    sim.closed();
    assert_eq!(sim.wait(), ms(800));
    // Accepted and up for five seconds without a message: healthy.
    sim.connected();
    sim.accept();
    sim.advance(Duration::from_secs(5));
    sim.closed();
    assert_eq!(sim.wait(), ms(100));
    sim.sub.handle_connect_failed(sim.now, "refused");
    sim.drain();
    assert_eq!(sim.wait(), ms(200));
    // Delivered a message, dropped at once: healthy.
    sim.connected();
    sim.accept();
    sim.send(None, &[(1, "x")], 1);
    sim.closed();
    assert_eq!(sim.wait(), ms(100));
}

/// SSE `retry:` is the reconnection time: the back-off's new base.
#[test]
fn sse_retry_sets_the_base() {
    for strategy in [Strategy::Constant, Strategy::Exponential] {
        let mut sim = Sim::new(Transport::Sse, Start::Live, Backoff::new(strategy, ms(100), ms(1000)));
        sim.connected();
        sim.data(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\nretry: 3000\n\nid: 1\ndata: x\n\n");
        assert!(sim.events.contains(&Event::Retry(ms(3000))));
        sim.closed();
        assert_eq!(sim.wait(), ms(3000), "{strategy}");
        assert_eq!(sim.last_event_ids.last(), Some(&Some("1".to_owned())));
    }
    // Full jitter: the range is now [0, 3000 ms], and the cap rose with it.
    let mut sim = Sim::jitter(Transport::Sse, Start::Live);
    sim.connected();
    sim.data(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\nretry: 3000\n\n");
    assert_eq!(sim.sub.backoff().base(), ms(3000));
    let mut longest = Duration::ZERO;
    for _ in 0..50 {
        sim.closed();
        let waited = sim.wait();
        assert!(waited <= ms(3000));
        longest = longest.max(waited);
        sim.connected();
        sim.data(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n: hi\n");
        sim.advance(Duration::from_secs(5));
    }
    assert!(longest > ms(1000), "the draws use the new base: longest {longest:?}");
}

/// `4xx` is final (the request is wrong); `5xx` and `429` are retried.
#[test]
fn a_client_error_gives_up_a_server_error_retries() {
    for transport in ALL {
        let mut sim = Sim::jitter(transport, Start::After(0));
        sim.connected();
        sim.data(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 9\r\nRetry-After: 1\r\n\r\nbusy now\n");
        assert!(matches!(sim.events.last(), Some(Event::Reconnecting { .. })), "{transport}: {:?}", sim.events);
        sim.wait();
        sim.connected();
        sim.data(b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\n\r\n");
        assert!(matches!(sim.events.last(), Some(Event::Reconnecting { .. })), "{transport}");
        sim.wait();
        sim.connected();
        sim.data(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 14\r\n\r\ninvalid topic\n");
        assert_eq!(
            sim.events.last(),
            Some(&Event::GaveUp { reason: "HTTP 400 Bad Request: invalid topic".into() }),
            "{transport}"
        );
        assert!(sim.sub.is_finished() && sim.sub.poll_timeout().is_none());
        assert_eq!(sim.disconnects, 3);
        let connects = sim.connects;
        sim.advance(Duration::from_secs(3600));
        assert_eq!(sim.connects, connects, "{transport}: nothing after giving up");
    }
    // Not an event stream at all: EventSource fails the connection too.
    let mut sim = Sim::jitter(Transport::Sse, Start::Live);
    sim.connected();
    sim.data(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n");
    assert!(matches!(sim.events.last(), Some(Event::GaveUp { .. })));
}

#[test]
fn max_attempts_gives_up() {
    let backoff = Backoff::new(Strategy::Constant, ms(10), ms(10)).with_max_attempts(Some(3));
    let mut sim = Sim::new(Transport::Sse, Start::Live, backoff);
    for _ in 0..3 {
        sim.sub.handle_connect_failed(sim.now, "refused");
        sim.drain();
        sim.wait();
    }
    sim.sub.handle_connect_failed(sim.now, "refused");
    sim.drain();
    assert!(
        matches!(sim.events.last(), Some(Event::GaveUp { reason }) if reason.contains("after 3 reconnection attempts")),
        "{:?}",
        sim.events
    );
    assert!(sim.sub.is_finished());
}

/// Deadlines: connecting, the response head, and a held poll's answer
/// (its `wait` on top).
#[test]
fn deadlines() {
    let mut sim = Sim::jitter(Transport::Sse, Start::Live);
    assert_eq!(sim.sub.poll_timeout(), Some(sim.t0 + Duration::from_secs(10)));
    sim.wait();
    assert!(matches!(&sim.events[0], Event::Reconnecting { reason, .. } if reason == "connect timed out"));
    sim.wait();
    sim.connected();
    let wait = sim.wait();
    assert_eq!(wait, Duration::from_secs(10));
    assert!(matches!(sim.events.last(), Some(Event::Reconnecting { reason, .. }) if reason == "no answer in time"));
    // Once the stream is open, no deadline: a quiet topic is not an error.
    sim.wait();
    sim.connected();
    sim.accept();
    assert_eq!(sim.sub.poll_timeout(), None);

    let mut poll = Sim::jitter(Transport::LongPoll, Start::After(3));
    let connected_at = poll.now;
    poll.connected();
    assert_eq!(poll.sub.poll_timeout(), Some(connected_at + Duration::from_secs(25 + 10)));
    poll.advance(Duration::from_secs(30));
    assert!(!poll.events.iter().any(|e| matches!(e, Event::Reconnecting { .. })), "a held poll is not late yet");
    poll.advance(Duration::from_secs(5));
    assert!(matches!(poll.events.last(), Some(Event::Reconnecting { .. })));
}

/// WebSocket: tungstenite answers a ping with a masked pong; a close frame
/// is answered, the connection dropped and the subscription resumed.
#[test]
fn websocket_ping_and_close() {
    let mut sim = Sim::jitter(Transport::Ws, Start::After(0));
    sim.connected();
    sim.accept();
    sim.data(&ws_frame(0x89, b"hb"));
    let pong = sim.sent.pop().expect("a pong");
    assert_eq!((pong[0], pong[1]), (0x8A, 0x80 | 2), "a final, masked pong of two bytes");
    sim.send(None, &[(1, "a")], 1);
    sim.data(&ws_frame(0x88, b"\x03\xF0slow consumer"));
    let close = sim.sent.pop().expect("a close reply");
    assert_eq!(close[0], 0x88);
    assert!(matches!(
        sim.events.last(),
        Some(Event::Reconnecting { reason, .. }) if reason.contains("1008 slow consumer")
    ));
    sim.wait();
    assert_eq!(sim.targets.last().map(String::as_str), Some("/ws?topic=t&after=1"));
    // An error report keeps the subscription.
    sim.connected();
    sim.accept();
    sim.data(&ws_text(r#"{"error":"not JSON"}"#));
    assert_eq!(sim.events.last(), Some(&Event::ServerError("not JSON".into())));
    assert!(sim.request.is_some());
}

/// Long polling from now on: a short poll learns the newest id and delivers
/// nothing; then held polls on the same connection, each after the last id.
#[test]
fn long_poll_live_start_and_keep_alive() {
    let mut sim = Sim::jitter(Transport::LongPoll, Start::Live);
    sim.connected();
    assert_eq!(sim.targets, ["/poll?topic=t"]);
    sim.data(&poll_answer(Some((1, 2)), &[(3, "old"), (4, "old")], 4, true));
    assert!(sim.messages().is_empty() && sim.missed().is_empty());
    assert_eq!(sim.targets.last().map(String::as_str), Some("/poll?topic=t&after=4&wait=25"));
    sim.data(&poll_answer(None, &[], 4, true)); // Held, then empty.
    sim.data(&poll_answer(None, &[(5, "new")], 5, true));
    assert_eq!(sim.messages(), [(5, "new".into())]);
    assert_eq!(sim.targets.last().map(String::as_str), Some("/poll?topic=t&after=5&wait=25"));
    assert_eq!((sim.connects, sim.disconnects), (1, 0), "one connection throughout");
    // A server that closes after each answer: a new connection, no back-off.
    sim.data(&poll_answer(None, &[(6, "x")], 6, false));
    assert_eq!((sim.connects, sim.disconnects), (2, 1));
    assert!(sim.reconnect_delays().is_empty());
    assert_eq!(sim.targets.last().map(String::as_str), Some("/poll?topic=t&after=6&wait=25"));
}

/// SSE from now on: the first connections send no `Last-Event-ID`, the
/// next ones the last id delivered. A message event with no id at all
/// breaks the contract and costs the connection; one without its own `id:`
/// line carries the stream's last id (the standard's rule), so it is a
/// duplicate.
#[test]
fn sse_live_start_and_resume_header() {
    let mut sim = Sim::jitter(Transport::Sse, Start::Live);
    sim.connected();
    sim.accept();
    sim.data(b"data: no id\n\n");
    assert!(matches!(sim.events.last(), Some(Event::Reconnecting { reason, .. }) if reason.contains("an id N or E-N")));
    sim.wait();
    sim.connected();
    sim.accept();
    sim.send(None, &[(41, "a"), (42, "b")], 42);
    sim.data(b"data: again\n\n");
    assert_eq!(sim.sub.stats().duplicates, 1);
    sim.closed();
    sim.wait();
    assert_eq!(sim.last_event_ids, [None, None, Some("42".to_owned())]);
    assert_eq!(sim.targets, ["/sse?topic=t"; 3]);
    assert_eq!(sim.messages(), [(41, "a".into()), (42, "b".into())]);
}

/// The server's bytes for messages of `epoch`, after a reset signal if
/// `reset`, in this transport's encoding.
fn epoch_bytes(transport: Transport, reset: bool, epoch: &str, messages: &[(u64, &str)], last_id: u64) -> Vec<u8> {
    match transport {
        Transport::Sse => {
            let mut s = String::new();
            if reset {
                s += &format!("event: reset\nid: {epoch}-0\ndata: {{\"epoch\":\"{epoch}\"}}\n\n");
            }
            for (id, data) in messages {
                s += &format!("id: {epoch}-{id}\ndata: {data}\n\n");
            }
            s.into_bytes()
        }
        Transport::Ws => {
            let mut b = Vec::new();
            if reset {
                b.extend(ws_text(&format!("{{\"reset\":{{\"epoch\":\"{epoch}\"}}}}")));
            }
            for (id, data) in messages {
                b.extend(ws_text(&format!("{{\"id\":{id},\"epoch\":\"{epoch}\",\"data\":\"{data}\"}}")));
            }
            b
        }
        Transport::LongPoll => poll_answer_in(Some((epoch, reset)), None, messages, last_id, true),
    }
}

// ANCHOR: reset
/// A server restart between two connections: the subscriber resumes with
/// `E-N` (the epoch it learned with its messages), the restarted server
/// answers with a reset and its new epoch from id 1; the subscriber reports
/// the reset, delivers ids 1.. of the new epoch (not as duplicates of the
/// old ones) and resumes in the new epoch from then on.
#[test]
fn a_reset_starts_the_ids_again_in_the_new_epoch() {
    for transport in ALL {
        let mut sim = Sim::jitter(transport, Start::After(0));
        sim.connected();
        sim.accept();
        sim.data(&epoch_bytes(transport, false, "old", &[(1, "a"), (2, "b"), (3, "c")], 3));
        assert_eq!(sim.sub.epoch(), Some("old"), "{transport}");
        sim.closed();
        sim.wait();
        sim.connected();
        let head = String::from_utf8(sim.request.clone().unwrap()).unwrap();
        assert!(head.contains("Last-Event-ID: old-3\r\n") || head.contains("after=old-3"), "{transport}: {head}");
        sim.accept();
        sim.data(&epoch_bytes(transport, true, "new", &[(1, "x"), (2, "y")], 2));
        assert!(sim.events.contains(&Event::Reset { epoch: "new".into() }), "{transport}: {:?}", sim.events);
        let got: Vec<_> = sim.messages().into_iter().map(|(id, d)| format!("{id}{d}")).collect();
        assert_eq!(got, ["1a", "2b", "3c", "1x", "2y"], "{transport}");
        assert_eq!(sim.sub.stats().duplicates, 0);
        assert!(!sim.events.iter().any(|e| matches!(e, Event::Gap { .. })), "{transport}");
        assert_eq!((sim.sub.last_id(), sim.sub.epoch()), (Some(2), Some("new")));
        sim.closed();
        sim.wait();
        sim.connected();
        let head = String::from_utf8(sim.request.clone().unwrap()).unwrap();
        assert!(head.contains("Last-Event-ID: new-2\r\n") || head.contains("after=new-2"), "{transport}: {head}");
    }
}
// ANCHOR_END: reset

// ---------------------------------------------------------------------------
// Tokens (contract "Tokens and origins").

/// A subscriber with a token, started at once.
fn with_token(transport: Transport, token: &str) -> Sim {
    let url = "http://127.0.0.1:8080".parse().unwrap();
    let mut config = Config::new(url, "t", transport).unwrap();
    config.backoff = Backoff::new(Strategy::FullJitter, ms(100), ms(10_000));
    config.token = Some(token.to_owned());
    Sim::from_config(config)
}

fn token_needed(sim: &Sim) -> usize {
    sim.events.iter().filter(|e| matches!(e, Event::TokenNeeded { .. })).count()
}

#[test]
fn a_401_asks_for_a_token_once_and_waits_without_retrying() {
    for transport in ALL {
        let mut sim = with_token(transport, "old");
        assert!(sim.targets[0].ends_with("&token=old"), "{transport}: {:?}", sim.targets);
        sim.connected();
        sim.data(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 28\r\n\r\nunauthorized: token expired\n");
        assert_eq!(token_needed(&sim), 1, "{transport}: {:?}", sim.events);
        assert_eq!(sim.sub.poll_timeout(), None, "{transport}: no back-off, no retry with the same token");
        assert_eq!(sim.connects, 1);
        sim.sub.set_token("new".into(), sim.now + ms(5));
        sim.drain();
        assert_eq!(sim.connects, 2, "{transport}: a new token reconnects at once");
        assert!(sim.targets[1].ends_with("&token=new"), "{transport}: {:?}", sim.targets);
    }
}

#[test]
fn an_expired_stream_asks_for_a_token_and_resumes_after_its_last_id() {
    for transport in [Transport::Sse, Transport::Ws] {
        let mut sim = with_token(transport, "a");
        sim.connected();
        sim.accept();
        sim.send(None, &[(1, "one")], 1);
        let end = match transport {
            Transport::Sse => b"event: expired\ndata: token expired\n\n".to_vec(),
            _ => ws_frame(0x88, &[&4001u16.to_be_bytes()[..], b"token expired"].concat()),
        };
        sim.data(&end);
        assert_eq!(token_needed(&sim), 1, "{transport}: {:?}", sim.events);
        assert_eq!(sim.sub.poll_timeout(), None);
        sim.sub.set_token("b".into(), sim.now);
        sim.drain();
        sim.connected();
        let target = sim.targets.last().unwrap();
        assert!(target.ends_with("&token=b"), "{transport}: {target}");
        assert_eq!(sim.resume_id(), Some(1), "{transport}: resumes after the last message");
    }
}

#[test]
fn a_new_token_on_an_open_websocket_is_a_refresh_frame() {
    let mut sim = with_token(Transport::Ws, "a");
    sim.connected();
    sim.accept();
    sim.sub.set_token("b".into(), sim.now);
    sim.drain();
    assert_eq!(sim.connects, 1, "no reconnection");
    let frame = sim.sent.last().expect("a frame");
    assert_eq!(frame[0], 0x81, "a final text frame");
    assert_ne!(frame[1] & 0x80, 0, "masked, as a client's frames must be");
    let len = (frame[1] & 0x7f) as usize;
    let mask = &frame[2..6];
    let text: Vec<u8> = frame[6..6 + len].iter().enumerate().map(|(i, b)| b ^ mask[i % 4]).collect();
    assert_eq!(String::from_utf8(text).unwrap(), r#"{"op":"refresh","token":"b"}"#);
}
