//! # rtlab-axum: the framework baseline
//!
//! The contract's publish, SSE and WebSocket endpoints written the way a
//! reader would write them **first** with [axum]: a `Router`, extractors, a
//! [`tokio::sync::broadcast`] channel per topic, [`Sse`] with a [`KeepAlive`],
//! [`WebSocketUpgrade`] with its default configuration and the two-task
//! split of axum's own chat example. Defaults everywhere, nothing tuned.
//!
//! It exists to be measured against the hand-tuned labs, so that the book
//! (chapter "The framework baseline") can show what they change and why:
//! where an idle SSE or WebSocket connection's bytes go in a stock
//! axum/hyper/tungstenite server, what a broadcast channel does to a slow
//! subscriber, what encoding per subscriber costs. It deliberately does
//! **not** use [`rtlab_core`]'s hub, outboxes or codec — only its topic rule
//! ([`rtlab_core::http::validate_topic`]), its demo page and its [`Config`].
//!
//! ## What it serves
//!
//! | request | served as |
//! |---|---|
//! | `POST /publish?topic=T` | `{"id":N}`, ids per topic from 1; body limit `Config::max_message` (413 above), non-UTF-8 400 |
//! | `GET /sse?topic=T` | live events (`id:` + `data:` lines), `: keep-alive` every `Config::keepalive` |
//! | `GET /ws?topic=T` | live messages as text frames `{"id":N,"data":"..."}`; client frames `{"op":"publish","data":"..."}` publish |
//! | `GET /stats` | the contract's counters (open SSE and WebSocket connections, published, delivered, dropped) |
//! | `GET /` | the demo page |
//!
//! ## What it does not do (and is not expected to)
//!
//! It does **not** pass the full conformance suite, on purpose: no replay
//! (`Last-Event-ID`, `after=`) and no retention, no `/poll`, no `/echo`, no
//! server pings on `/ws`, no outbox budget or `--policy` (a lagging
//! subscriber gets the broadcast channel's behaviour: on SSE it silently
//! skips what it missed, on WebSocket its connection ends), and the
//! framework's own answers for malformed requests. `rtlab runtimes` does not
//! list it; `rtlab runtimes --baselines` does, for the benchmarks that only
//! need publish, SSE and WebSocket.
//!
//! ## Map
//!
//! * [`serve`] — the runtime, `axum::serve` with graceful shutdown, and the
//!   wait for WebSocket sessions (which axum does not track) on stop.
//! * `router` — the routes.
//! * `publish`, `sse`, `ws` / `ws_session` — the handlers.
//! * `App` — shared state: topics (id counter + broadcast sender) and counters.
//!
//! [axum]: https://docs.rs/axum/0.8
//! [`Sse`]: axum::response::sse::Sse
//! [`KeepAlive`]: axum::response::sse::KeepAlive
//! [`WebSocketUpgrade`]: axum::extract::ws::WebSocketUpgrade

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::{SinkExt, Stream, StreamExt, stream};
use rtlab_adapter::{Stop, shutdown_wait};
use rtlab_core::Config;
use serde::Deserialize;
use tokio::sync::{broadcast, mpsc, watch};

/// Capacity of each topic's broadcast channel. A subscriber that falls this
/// many messages behind loses the oldest ones (`RecvError::Lagged`). The
/// number a reader picks first: the contract's default retention.
const CHANNEL_CAPACITY: usize = 1024;

// ANCHOR: serve
/// Serves the baseline on `listener` until `stop` is requested, then stops
/// accepting, ends every event stream and closes every WebSocket with 1001,
/// and returns (after at most `close_linger` + 1 s).
pub fn serve(listener: std::net::TcpListener, config: Config, stop: Arc<Stop>) -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let (stop_tx, stopping) = watch::channel(false);
        stop.on_stop(move || {
            let _ = stop_tx.send(true);
        });
        // As long as the labs wait (the close linger plus the shared grace).
        let grace = shutdown_wait(&config);
        // `App` holds the only sender: `recv` returns None once the last
        // reference to the state is gone. axum's graceful shutdown waits for
        // HTTP connections (SSE streams included), not for the tasks it
        // spawned for upgraded sockets, which hold the state too.
        let (alive, mut all_gone) = mpsc::channel::<()>(1);
        let app = Arc::new(App::new(config, stopping.clone(), alive));
        let server = axum::serve(listener, router(app.clone())).with_graceful_shutdown(stopped(stopping.clone()));
        let graceful = async move {
            server.await?;
            drop(app);
            let _ = all_gone.recv().await;
            Ok(())
        };
        tokio::select! {
            result = graceful => result,
            () = async { stopped(stopping).await; tokio::time::sleep(grace).await } => {
                tracing::warn!("connections did not close in time; dropping them");
                Ok(())
            }
        }
    })
}
// ANCHOR_END: serve

/// Resolves once the stop was requested.
async fn stopped(mut stopping: watch::Receiver<bool>) {
    let _ = stopping.wait_for(|&stop| stop).await;
}

// ANCHOR: state
/// One published message as the broadcast channel carries it. `recv`
/// clones it for every subscriber (a `String` allocation and copy each), and
/// each subscriber then encodes it for its own transport.
#[derive(Debug, Clone)]
struct Published {
    id: u64,
    data: String,
}

/// A topic: the last id given and the channel its subscribers receive from.
#[derive(Debug)]
struct Topic {
    last_id: u64,
    sender: broadcast::Sender<Published>,
}

/// The state every handler shares (behind an `Arc`, as axum's `State`).
#[derive(Debug)]
struct App {
    config: Config,
    /// Topics by name, created on first use. One mutex for all topics: ids
    /// are assigned and messages sent under it, so ids reach every
    /// subscriber in order.
    topics: Mutex<HashMap<String, Topic>>,
    /// The `/stats` counters.
    stats: Counters,
    /// Becomes true when the server is asked to stop.
    stopping: watch::Receiver<bool>,
    /// Never sent on: its channel closes when the last `Arc<App>` is dropped.
    _alive: mpsc::Sender<()>,
}
// ANCHOR_END: state

impl App {
    fn new(config: Config, stopping: watch::Receiver<bool>, alive: mpsc::Sender<()>) -> App {
        App { config, topics: Mutex::default(), stats: Counters::default(), stopping, _alive: alive }
    }

    fn topics(&self) -> std::sync::MutexGuard<'_, HashMap<String, Topic>> {
        self.topics.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A receiver of everything published to `topic` from now on.
    fn subscribe(&self, topic: &str) -> broadcast::Receiver<Published> {
        let mut topics = self.topics();
        match topics.get(topic) {
            Some(t) => t.sender.subscribe(),
            None => {
                let (sender, receiver) = broadcast::channel(CHANNEL_CAPACITY);
                topics.insert(topic.to_owned(), Topic { last_id: 0, sender });
                receiver
            }
        }
    }

    /// The open-connection counter of SSE (`sse`) or WebSocket.
    fn counter(&self, sse: bool) -> &AtomicI64 {
        if sse { &self.stats.sse } else { &self.stats.ws }
    }

    /// Assigns the next id of `topic` and sends the message to its subscribers.
    fn publish(&self, topic: &str, data: String) -> u64 {
        let mut topics = self.topics();
        let topic = topics.entry(topic.to_owned()).or_insert_with(|| Topic {
            last_id: 0,
            sender: broadcast::channel(CHANNEL_CAPACITY).0,
        });
        topic.last_id += 1;
        let id = topic.last_id;
        // An error only means that nobody is subscribed right now.
        let _ = topic.sender.send(Published { id, data });
        self.stats.published.fetch_add(1, Relaxed);
        id
    }
}

/// The `/stats` counters, in the contract's shape (only the transports this
/// baseline serves are ever non-zero).
#[derive(Debug, Default)]
struct Counters {
    sse: AtomicI64,
    ws: AtomicI64,
    published: AtomicU64,
    delivered: AtomicU64,
    dropped: AtomicU64,
}

impl Counters {
    fn to_json(&self) -> serde_json::Value {
        let (sse, ws) = (self.sse.load(Relaxed), self.ws.load(Relaxed));
        serde_json::json!({
            "connections": { "http": 0, "long_poll": 0, "sse": sse, "ws": ws, "echo": 0, "total": sse + ws },
            "published": self.published.load(Relaxed),
            "delivered": self.delivered.load(Relaxed),
            "dropped": self.dropped.load(Relaxed),
            "slow_disconnects": 0,
        })
    }
}

/// Counts one open SSE stream (`sse`) or WebSocket in `/stats` for as long
/// as it lives.
#[derive(Debug)]
struct Open {
    app: Arc<App>,
    sse: bool,
}

impl Open {
    fn new(app: &Arc<App>, sse: bool) -> Open {
        app.counter(sse).fetch_add(1, Relaxed);
        Open { app: app.clone(), sse }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.app.counter(self.sse).fetch_sub(1, Relaxed);
    }
}

// ANCHOR: router
/// The routes. Unknown paths get axum's 404, wrong methods its 405.
fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/publish", post(publish))
        .route("/sse", get(sse))
        .route("/ws", get(ws))
        .route("/stats", get(stats))
        .route("/", get(|| async { Html(rtlab_core::page::DEMO_PAGE) }))
        // axum's default body limit is 2 MB; the contract's is a server option.
        .layer(DefaultBodyLimit::max(app.config.max_message))
        .with_state(app)
}
// ANCHOR_END: router

/// The `topic` query parameter every endpoint takes.
#[derive(Debug, Deserialize)]
struct TopicQuery {
    topic: String,
}

/// A missing topic is axum's own 400 (the `Query` rejection); an invalid
/// one is the contract's.
fn check_topic(q: &TopicQuery) -> Result<(), (StatusCode, String)> {
    rtlab_core::http::validate_topic(&q.topic).map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))
}

// ANCHOR: publish
/// `POST /publish?topic=T`: the body as a `String` (axum answers 400 for
/// non-UTF-8 and 413 above the body limit), `{"id":N}` back.
async fn publish(
    State(app): State<Arc<App>>,
    Query(q): Query<TopicQuery>,
    body: String,
) -> Result<axum::Json<serde_json::Value>, (StatusCode, String)> {
    check_topic(&q)?;
    let id = app.publish(&q.topic, body);
    Ok(axum::Json(serde_json::json!({ "id": id })))
}
// ANCHOR_END: publish

// ANCHOR: sse
/// `GET /sse?topic=T`: a stream of events from the topic's broadcast
/// channel, with axum's keep-alive comments.
async fn sse(
    State(app): State<Arc<App>>,
    Query(q): Query<TopicQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, (StatusCode, String)> {
    check_topic(&q)?;
    let receiver = app.subscribe(&q.topic);
    let open = Open::new(&app, true);
    let events = stream::unfold((receiver, open), |(mut receiver, open)| async move {
        loop {
            match receiver.recv().await {
                Ok(m) => {
                    open.app.stats.delivered.fetch_add(1, Relaxed);
                    // Encoded here, once per subscriber.
                    let event = Event::default().id(m.id.to_string()).data(m.data);
                    return Some((Ok(event), (receiver, open)));
                }
                // The channel overwrote messages this subscriber had not
                // read yet. The first version skips them without a word.
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    open.app.stats.dropped.fetch_add(n, Relaxed);
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    // End the stream (and so the response) when the server stops.
    let events = events.take_until(stopped(app.stopping.clone()));
    let keep_alive = KeepAlive::new().interval(app.config.keepalive).text("keep-alive");
    Ok(Sse::new(events).keep_alive(keep_alive))
}
// ANCHOR_END: sse

async fn stats(State(app): State<Arc<App>>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], app.stats.to_json().to_string()).into_response()
}

// ANCHOR: ws
/// `GET /ws?topic=T`: the upgrade, with tungstenite's default
/// `WebSocketConfig` (axum's `WebSocketUpgrade` starts from it).
async fn ws(
    State(app): State<Arc<App>>,
    Query(q): Query<TopicQuery>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, (StatusCode, String)> {
    check_topic(&q)?;
    Ok(upgrade.on_upgrade(move |socket| ws_session(socket, app, q.topic)))
}

/// A client's publish frame.
#[derive(Debug, Deserialize)]
struct ClientFrame {
    op: String,
    data: String,
}

/// One WebSocket session, as in axum's chat example: the socket split in a
/// sending and a receiving half, one task each, and the first to finish
/// ends the other.
async fn ws_session(socket: WebSocket, app: Arc<App>, topic: String) {
    // Subscribed before counted: once `/stats` shows the session, it receives.
    let mut receiver = app.subscribe(&topic);
    let _open = Open::new(&app, false);
    let (mut sink, mut frames) = socket.split();
    let stopping = app.stopping.clone();
    let sender_app = app.clone();

    let mut send_task = tokio::spawn(async move {
        let mut stop = std::pin::pin!(stopped(stopping));
        loop {
            tokio::select! {
                // A lagging subscriber gets `Err(Lagged)` here: the loop (and
                // the connection) ends, as in the chat example.
                received = receiver.recv() => {
                    let m = match received {
                        Ok(m) => m,
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            sender_app.stats.dropped.fetch_add(n, Relaxed);
                            break;
                        }
                        Err(broadcast::error::RecvError::Closed) => break,
                    };
                    // Encoded here, once per subscriber.
                    let text = serde_json::json!({ "id": m.id, "data": m.data }).to_string();
                    if sink.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                    sender_app.stats.delivered.fetch_add(1, Relaxed);
                }
                () = &mut stop => {
                    let close = CloseFrame { code: 1001, reason: "server stopping".into() };
                    let _ = sink.send(Message::Close(Some(close))).await;
                    break;
                }
            }
        }
    });

    let mut recv_task = tokio::spawn(async move {
        while let Some(Ok(frame)) = frames.next().await {
            match frame {
                Message::Text(text) => match serde_json::from_str::<ClientFrame>(text.as_str()) {
                    Ok(f) if f.op == "publish" && f.data.len() <= app.config.max_message => {
                        app.publish(&topic, f.data);
                    }
                    _ => tracing::debug!("ignored a client frame"),
                },
                Message::Close(_) => break,
                _ => {}
            }
        }
    });

    tokio::select! {
        _ = &mut send_task => recv_task.abort(),
        _ = &mut recv_task => send_task.abort(),
    }
}
// ANCHOR_END: ws
