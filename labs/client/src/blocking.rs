//! The runtime: a [`Subscriber`] driven over std sockets, on the caller's
//! thread.
//!
//! Why blocking std sockets and not tokio: one subscription is one socket
//! at a time and one timer, and a blocking `read` with a timeout is both —
//! the timeout is the subscriber's next deadline. An async runtime would
//! add a reactor, tasks and a second way to write the same loop, for no
//! concurrency to gain. A program with thousands of subscriptions would
//! want one; the state machine would not change, only this file (that is
//! what the sans-IO split buys).

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::http::Request;
use crate::subscriber::{Action, Event, Subscriber};

// ANCHOR: run
/// Runs `subscriber` until `on_event` returns [`ControlFlow::Break`]
/// (`Ok`) or the subscriber gives up (`Err` with its reason, after
/// `on_event` saw the [`Event::GaveUp`]).
pub fn run<R: Rng>(subscriber: &mut Subscriber<R>, on_event: impl FnMut(&Event) -> ControlFlow<()>) -> Result<(), String> {
    run_with_tokens(subscriber, on_event, |_| None)
}

/// Like [`run`], and when the server refuses or ends the token
/// ([`Event::TokenNeeded`]), asks `new_token` for another (with the
/// server's reason): `Some` reconnects with it at once (on a WebSocket, an
/// early call of [`Subscriber::set_token`] refreshes in place); `None` ends
/// the run with the reason. One call per refusal: no retry storm.
pub fn run_with_tokens<R: Rng>(
    subscriber: &mut Subscriber<R>,
    mut on_event: impl FnMut(&Event) -> ControlFlow<()>,
    mut new_token: impl FnMut(&str) -> Option<String>,
) -> Result<(), String> {
    let mut conn: Option<TcpStream> = None;
    let mut buf = vec![0u8; 64 * 1024];
    subscriber.start(Instant::now());
    loop {
        // Do what the subscriber asks, until it asks nothing more.
        while let Some(action) = subscriber.poll_action() {
            match action {
                Action::Connect(request) => {
                    conn = None;
                    let deadline = subscriber.poll_timeout();
                    match connect(&request, deadline) {
                        Ok(stream) => {
                            conn = Some(stream);
                            subscriber.handle_connected(Instant::now());
                        }
                        Err(e) => subscriber.handle_connect_failed(Instant::now(), e.to_string()),
                    }
                }
                Action::Send(bytes) => {
                    if let Some(stream) = conn.as_mut() {
                        if let Err(e) = stream.write_all(&bytes) {
                            conn = None;
                            subscriber.handle_closed(Instant::now(), format!("write failed: {e}"));
                        }
                    }
                }
                Action::Disconnect => conn = None,
                Action::Event(event) => {
                    let flow = on_event(&event);
                    if let Event::GaveUp { reason } = event {
                        return Err(reason);
                    }
                    if let Event::TokenNeeded { reason } = &event {
                        match new_token(reason) {
                            Some(token) => subscriber.set_token(token, Instant::now()),
                            None => return Err(format!("{reason}, and no new token")),
                        }
                    }
                    if flow.is_break() {
                        return Ok(());
                    }
                }
            }
        }
        // Then wait for bytes or the next deadline, whichever comes first.
        let now = Instant::now();
        let deadline = subscriber.poll_timeout();
        let left = deadline.map(|d| d.saturating_duration_since(now));
        match conn.as_mut() {
            _ if left == Some(Duration::ZERO) => subscriber.handle_timeout(now),
            Some(stream) => {
                stream.set_read_timeout(left).map_err(|e| e.to_string())?;
                match stream.read(&mut buf) {
                    Ok(0) => {
                        conn = None;
                        subscriber.handle_closed(Instant::now(), "the server closed the connection");
                    }
                    Ok(n) => subscriber.handle_data(Instant::now(), &buf[..n]),
                    Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                        subscriber.handle_timeout(Instant::now())
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        conn = None;
                        subscriber.handle_closed(Instant::now(), format!("read failed: {e}"));
                    }
                }
            }
            None => match left {
                Some(left) => {
                    std::thread::sleep(left);
                    subscriber.handle_timeout(Instant::now());
                }
                None => return Err("the subscriber has nothing to wait for".into()),
            },
        }
    }
}
// ANCHOR_END: run

/// Connects to the request's host, trying each of its addresses, each
/// bounded by the subscriber's deadline.
fn connect(request: &Request, deadline: Option<Instant>) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{} has no address", request.host));
    for addr in (request.host.as_str(), request.port).to_socket_addrs()? {
        let left = deadline.map_or(Duration::from_secs(10), |d| d.saturating_duration_since(Instant::now()));
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}
