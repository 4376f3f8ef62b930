//! The runtime for many subscriptions at once: each [`Subscriber`] driven by
//! one tokio task, over tokio sockets.
//!
//! The same loop as [`blocking`](crate::blocking), with the two waits made
//! async: a read bounded by the subscriber's deadline, and a sleep until it.
//! A thread per subscription is fine for one (`rtlab listen`); the herd
//! experiment (`rtlab bench reconnect`) holds ten thousand in one worker
//! process, which is what tasks are for. The state machine is the same one:
//! only this file differs from the blocking runtime.
//!
//! Two things a load generator needs and `rtlab listen` does not: the
//! source address of the client sockets (each worker process its own, so
//! that the ephemeral ports of one address do not cap a run), and a call
//! at every connection attempt (the herd counts attempts per 100 ms).

use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::http::Request;
use crate::subscriber::{Action, Event, Subscriber};

/// What [`run`] reports to its caller, besides the subscriber's events.
pub trait Observer {
    /// A connection attempt starts now.
    fn attempt(&mut self) {}
    /// The attempt failed before the HTTP exchange (refused, timed out).
    fn connect_failed(&mut self, _error: &io::Error) {}
    /// An event of the subscriber: [`ControlFlow::Break`] ends [`run`].
    fn event(&mut self, event: &Event) -> ControlFlow<()>;
}

// ANCHOR: run
/// Runs `subscriber` on the current tokio runtime until the observer's
/// [`Observer::event`] returns [`ControlFlow::Break`] (`Ok`) or the
/// subscriber gives up (`Err` with its reason). Client sockets bind to
/// `source` when given.
pub async fn run<R: Rng>(
    subscriber: &mut Subscriber<R>,
    source: Option<IpAddr>,
    observer: &mut impl Observer,
) -> Result<(), String> {
    let mut conn: Option<TcpStream> = None;
    let mut buf = vec![0u8; 16 * 1024];
    subscriber.start(Instant::now());
    loop {
        while let Some(action) = subscriber.poll_action() {
            match action {
                Action::Connect(request) => {
                    conn = None;
                    observer.attempt();
                    let deadline = subscriber.poll_timeout();
                    match connect(&request, source, deadline).await {
                        Ok(stream) => {
                            conn = Some(stream);
                            subscriber.handle_connected(Instant::now());
                        }
                        Err(e) => {
                            observer.connect_failed(&e);
                            subscriber.handle_connect_failed(Instant::now(), e.to_string());
                        }
                    }
                }
                Action::Send(bytes) => {
                    if let Some(stream) = conn.as_mut() {
                        if let Err(e) = stream.write_all(&bytes).await {
                            conn = None;
                            subscriber.handle_closed(Instant::now(), format!("write failed: {e}"));
                        }
                    }
                }
                Action::Disconnect => conn = None,
                Action::Event(event) => {
                    let flow = observer.event(&event);
                    if let Event::GaveUp { reason } = event {
                        return Err(reason);
                    }
                    if flow.is_break() {
                        return Ok(());
                    }
                }
            }
        }
        let deadline = subscriber.poll_timeout().map(tokio::time::Instant::from_std);
        match (conn.as_mut(), deadline) {
            (Some(stream), deadline) => {
                let read = stream.read(&mut buf);
                let result = match deadline {
                    Some(deadline) => tokio::time::timeout_at(deadline, read).await.ok(),
                    None => Some(read.await),
                };
                match result {
                    None => subscriber.handle_timeout(Instant::now()),
                    Some(Ok(0)) => {
                        conn = None;
                        subscriber.handle_closed(Instant::now(), "the server closed the connection");
                    }
                    Some(Ok(n)) => subscriber.handle_data(Instant::now(), &buf[..n]),
                    Some(Err(e)) => {
                        conn = None;
                        subscriber.handle_closed(Instant::now(), format!("read failed: {e}"));
                    }
                }
            }
            (None, Some(deadline)) => {
                tokio::time::sleep_until(deadline).await;
                subscriber.handle_timeout(Instant::now());
            }
            (None, None) => return Err("the subscriber has nothing to wait for".into()),
        }
    }
}
// ANCHOR_END: run

/// Connects to the request's host from `source`, bounded by the
/// subscriber's deadline.
async fn connect(request: &Request, source: Option<IpAddr>, deadline: Option<Instant>) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{} has no address", request.host));
    for addr in (request.host.as_str(), request.port).to_socket_addrs()? {
        let left = deadline.map_or(Duration::from_secs(10), |d| d.saturating_duration_since(Instant::now()));
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        if let Some(ip) = source {
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        match tokio::time::timeout(left, socket.connect(addr)).await {
            Ok(Ok(stream)) => {
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            Ok(Err(e)) => last = e,
            Err(_) => last = io::ErrorKind::TimedOut.into(),
        }
    }
    Err(last)
}
