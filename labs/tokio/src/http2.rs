//! The HTTP/2 front of the tokio lab: many requests as streams of one
//! connection, each served by the same core as an HTTP/1.1 request.
//!
//! The `h2` crate (hyper's own HTTP/2) owns the framing, HPACK, flow
//! control and the connection's streams. The contract stays in
//! [`rtlab_core`], untouched: each stream gets its own core
//! [`Connection`], is handed its request as the HTTP/1.1 bytes it means
//! (`Connection: close`: one request per stream), and its HTTP/1.1 answer
//! is turned back into a `HEADERS` frame and `DATA` frames. The shared
//! [`step`] drives it through [`StreamSocket`], the [`Socket`] a stream
//! is: reads give the request, writes go out as `DATA` within the
//! stream's flow-control window (an empty window is `WouldBlock`, so a
//! slow subscriber fills its core outbox as it would over HTTP/1.1), and
//! the half-close ends the stream.
//!
//! What is not here: WebSocket over HTTP/2 (RFC 8441, extended `CONNECT`).
//! `h2` can accept it (`enable_connect_protocol`), but the core's
//! WebSocket is an HTTP/1.1 upgrade, so a stream would need a second
//! handshake path in the core; `/ws` and `/echo` stay on HTTP/1.1.

use std::io::{self, IoSlice};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{RecvStream, SendStream};
use http::{HeaderName, Request, Response, StatusCode};
use rtlab_adapter::{Socket, Ticket, Unsent};
use rtlab_core::{Connection, Server};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::{Next, TaskWaker, after, step_task};

// ANCHOR: limits
/// Streams one client may have open at once on a connection (its
/// `SETTINGS_MAX_CONCURRENT_STREAMS`). A stream costs a core
/// [`Connection`], as an HTTP/1.1 connection does, so this bounds what one
/// TCP connection can make the server hold.
pub const MAX_STREAMS: u32 = 256;
// ANCHOR_END: limits

// ANCHOR: connection
/// One HTTP/2 connection: accepts streams and serves each on a task of its
/// own, until the client closes or the server stops (then `GOAWAY`, and
/// the open streams say goodbye as HTTP/1.1 connections do). The gate's
/// `ticket` is held for the whole connection: the limit counts TCP
/// connections, [`MAX_STREAMS`] bounds the streams on each.
pub(crate) async fn connection<IO>(io: IO, server: Arc<Server>, mut stop: watch::Receiver<bool>, ticket: Ticket)
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let _admitted = ticket;
    let mut builder = h2::server::Builder::new();
    builder.max_concurrent_streams(MAX_STREAMS);
    let mut h2 = match builder.handshake::<_, Bytes>(io).await {
        Ok(h2) => h2,
        Err(e) => return tracing::debug!("HTTP/2 handshake failed: {e}"),
    };
    let mut streams = JoinSet::new();
    let mut stopping = *stop.borrow_and_update();
    if stopping {
        h2.graceful_shutdown();
    }
    loop {
        tokio::select! {
            // Accepting also drives the connection: every stream's frames
            // go in and out while this future is polled.
            next = h2.accept() => match next {
                Some(Ok((request, respond))) => {
                    streams.spawn(stream(request, respond, server.clone(), stop.clone()));
                }
                Some(Err(e)) => {
                    tracing::debug!("HTTP/2 connection failed: {e}");
                    break;
                }
                None => break,
            },
            _ = stop.changed(), if !stopping => {
                stopping = true;
                h2.graceful_shutdown();
            }
        }
        while streams.try_join_next().is_some() {}
    }
    streams.abort_all();
}
// ANCHOR_END: connection

// ANCHOR: stream
/// One stream: its request into a core [`Connection`] as HTTP/1.1 bytes,
/// then the same loop as an HTTP/1.1 connection's task — step, then wait
/// for a wake, the deadline, the stop, room in the stream's window, or
/// the client's reset (an `EventSource` closed).
async fn stream(request: Request<RecvStream>, respond: SendResponse<Bytes>, server: Arc<Server>, mut stop: watch::Receiver<bool>) {
    let Some(input) = request_bytes(request, server.config.max_message).await else { return };
    let waker = Arc::new(TaskWaker(Notify::new()));
    let mut conn = Connection::new(server, waker.clone(), 0, Instant::now());
    let mut socket = StreamSocket { input, respond, send: None, head: Vec::new() };
    let mut unsent = Unsent::new();
    let mut stopping = *stop.borrow_and_update();
    let mut woken = false;
    loop {
        let next = step_task(&mut conn, &mut unsent, &mut socket, woken, stopping);
        woken = false;
        let (write, deadline) = match after(next).await {
            Next::Over => break,
            Next::Again => continue,
            Next::Wait { write, deadline, .. } => (write, deadline),
        };
        tokio::select! {
            event = std::future::poll_fn(|cx| socket.poll_event(cx, write)) => if !event { break },
            _ = waker.0.notified() => woken = true,
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)), if deadline.is_some() => woken = true,
            _ = stop.changed(), if !stopping => stopping = true,
        }
    }
}
// ANCHOR_END: stream

// ANCHOR: request_bytes
/// The HTTP/1.1 request a stream means: request line, the headers that
/// mean the same in both versions, `Host` from `:authority`, the body read
/// whole (at most one byte more than the largest message: a larger one
/// gets the core's `413`) with its `Content-Length`, and `Connection:
/// close`. `None` if the client reset the stream before its body ended.
async fn request_bytes(request: Request<RecvStream>, max_message: usize) -> Option<Vec<u8>> {
    let (parts, mut body) = request.into_parts();
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut head = format!("{} {target} HTTP/1.1\r\n", parts.method).into_bytes();
    if let Some(authority) = parts.uri.authority() {
        head.extend_from_slice(format!("Host: {authority}\r\n").as_bytes());
    }
    // HTTP/2 forbids connection-specific headers (RFC 9113 section
    // 8.2.2); the body's length and the connection's fate are ours to say.
    const OURS: [&str; 6] = ["connection", "keep-alive", "transfer-encoding", "content-length", "host", "expect"];
    for (name, value) in &parts.headers {
        if !OURS.contains(&name.as_str()) {
            head.extend_from_slice(name.as_str().as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
    }
    let declared = parts.headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let mut data = Vec::new();
    while data.len() <= max_message {
        match body.data().await {
            Some(Ok(chunk)) => {
                let _ = body.flow_control().release_capacity(chunk.len());
                data.extend_from_slice(&chunk);
            }
            Some(Err(_)) => return None,
            None => break,
        }
    }
    let length = declared.unwrap_or(data.len() as u64).max(data.len() as u64);
    head.extend_from_slice(format!("Content-Length: {length}\r\nConnection: close\r\n\r\n").as_bytes());
    data.truncate(length as usize);
    head.extend_from_slice(&data);
    Some(head)
}
// ANCHOR_END: request_bytes

// ANCHOR: stream_socket
/// A stream as the shared step sees it: [`Socket`] over h2's handles.
struct StreamSocket {
    /// The request's bytes not yet read by the core.
    input: Vec<u8>,
    /// Where the response head goes (until it is sent).
    respond: SendResponse<Bytes>,
    /// Where the body goes, once the head is sent.
    send: Option<SendStream<Bytes>>,
    /// The HTTP/1.1 response head, while it is incomplete.
    head: Vec<u8>,
}

impl StreamSocket {
    /// Waits for what the stream's task waits on: room in the window (if
    /// `write`), or the client's reset. `false`: the stream is over.
    fn poll_event(&mut self, cx: &mut Context<'_>, write: bool) -> Poll<bool> {
        let reset = match &mut self.send {
            Some(send) => send.poll_reset(cx),
            None => self.respond.poll_reset(cx),
        };
        if reset.is_ready() {
            return Poll::Ready(false);
        }
        match &mut self.send {
            Some(send) if write => match send.poll_capacity(cx) {
                Poll::Ready(Some(Ok(_))) => Poll::Ready(true),
                Poll::Ready(_) => Poll::Ready(false),
                Poll::Pending => Poll::Pending,
            },
            _ => Poll::Pending,
        }
    }

    /// Sends the response head, once the HTTP/1.1 head is complete;
    /// returns how many of `bytes` it took.
    fn take_head(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let before = self.head.len();
        self.head.extend_from_slice(bytes);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut parsed = httparse::Response::new(&mut headers);
        let end = match parsed.parse(&self.head).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))? {
            httparse::Status::Partial => return Ok(bytes.len()),
            httparse::Status::Complete(end) => end,
        };
        let status = StatusCode::from_u16(parsed.code.unwrap_or(500)).map_err(io::Error::other)?;
        let mut response = Response::builder().status(status);
        for h in parsed.headers.iter() {
            let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(io::Error::other)?;
            if !matches!(name.as_str(), "connection" | "keep-alive" | "transfer-encoding") {
                response = response.header(name, h.value);
            }
        }
        let response = response.body(()).map_err(io::Error::other)?;
        let send = self.respond.send_response(response, false).map_err(io::Error::other)?;
        self.send = Some(send);
        self.head = Vec::new();
        Ok(end - before)
    }
}

impl Socket for StreamSocket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.input.is_empty() {
            // The request is all there is: the stream waits for the core's answer.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.input.len());
        buf[..n].copy_from_slice(&self.input[..n]);
        self.input.drain(..n);
        Ok(n)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut taken = 0;
        for buf in bufs.iter().filter(|b| !b.is_empty()) {
            let Some(send) = &mut self.send else {
                let n = self.take_head(buf)?;
                taken += n;
                if n < buf.len() {
                    // The rest of this buffer is body: the next call sends it.
                    break;
                }
                continue;
            };
            send.reserve_capacity(buf.len());
            let room = send.capacity().min(buf.len());
            if room == 0 {
                break;
            }
            send.send_data(Bytes::copy_from_slice(&buf[..room]), false).map_err(io::Error::other)?;
            taken += room;
            if room < buf.len() {
                break;
            }
        }
        if taken == 0 && bufs.iter().any(|b| !b.is_empty()) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(taken)
    }

    /// The core's half-close ends the stream (`END_STREAM`).
    fn shutdown_write(&mut self) -> io::Result<()> {
        match &mut self.send {
            Some(send) => send.send_data(Bytes::new(), true).map_err(io::Error::other),
            None => Err(io::Error::new(io::ErrorKind::InvalidData, "the core closed before a response head")),
        }
    }
}
// ANCHOR_END: stream_socket
