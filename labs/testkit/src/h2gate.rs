//! A client-side gateway from HTTP/1.1 to HTTP/2: the kit's HTTP/1.1
//! clients, unchanged, reach a server over HTTP/2 through it.
//!
//! The gateway listens on a loopback port of its own. It holds ONE
//! HTTP/2 connection to the server (TLS, ALPN `h2`, through the `h2`
//! crate's client) and turns each HTTP/1.1 request a client sends it into
//! a stream on that connection; the stream's response comes back to the
//! client as an HTTP/1.1 response that ends with the stream (`Connection:
//! close`). A client that hangs up cancels its stream (`RST_STREAM`). So
//! a test's event streams, polls and publishes are all streams of one
//! connection — the case HTTP/2 exists for — and the conformance suite's
//! SSE cases run over HTTP/2 as they are.
//!
//! A test gateway, not a proxy: one request per client connection,
//! `Content-Length` bodies only, no upgrades (WebSocket stays on HTTP/1.1).

use std::io;
use std::net::SocketAddr;

use bytes::Bytes;
use h2::client::SendRequest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A running gateway: where its clients connect. It lives as long as the
/// process (its runtime is on a thread of its own).
#[derive(Debug, Clone, Copy)]
pub struct H2Gate {
    /// Where HTTP/1.1 clients connect.
    pub addr: SocketAddr,
}

impl H2Gate {
    /// Connects to `server` over TLS (trusting `cert_pem`, ALPN `h2`
    /// only), and starts listening for HTTP/1.1 clients.
    pub fn start(server: SocketAddr, cert_pem: &str) -> io::Result<H2Gate> {
        let config = crate::tls::client_config(cert_pem, &[b"h2"]);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (listener, h2) = runtime.block_on(async {
            let tcp = TcpStream::connect(server).await?;
            let name = rustls::pki_types::ServerName::IpAddress(server.ip().into());
            let tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await?;
            if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
                return Err(io::Error::other("the server did not choose HTTP/2 (ALPN h2)"));
            }
            let (h2, connection) = h2::client::handshake(tls).await.map_err(io::Error::other)?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    eprintln!("h2 gateway: the connection to the server ended: {e}");
                }
            });
            Ok::<_, io::Error>((TcpListener::bind("127.0.0.1:0").await?, h2))
        })?;
        let addr = listener.local_addr()?;
        std::thread::Builder::new().name("h2-gateway".into()).spawn(move || {
            runtime.block_on(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let _ = client.set_nodelay(true);
                    tokio::spawn(exchange(client, h2.clone(), server));
                }
            })
        })?;
        Ok(H2Gate { addr })
    }
}

/// One client: its request as a stream, the stream's response back.
async fn exchange(mut client: TcpStream, h2: SendRequest<Bytes>, server: SocketAddr) {
    if let Err(e) = forward(&mut client, h2, server).await {
        // The client sees its connection close without a response.
        eprintln!("h2 gateway: {e}");
    }
}

async fn forward(client: &mut TcpStream, h2: SendRequest<Bytes>, server: SocketAddr) -> io::Result<()> {
    // The request head, then its Content-Length body.
    let mut buf = Vec::new();
    let (request, body_start, length) = loop {
        let mut chunk = [0u8; 4096];
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(()); // Gone before a whole request.
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Request::new(&mut headers);
        if let httparse::Status::Complete(end) = parsed.parse(&buf).map_err(io::Error::other)? {
            let uri = format!("https://{server}{}", parsed.path.unwrap_or("/"));
            let mut request = http::Request::builder().method(parsed.method.unwrap_or("GET")).uri(uri);
            let mut length = 0;
            for h in parsed.headers.iter() {
                let name = h.name.to_ascii_lowercase();
                if name == "content-length" {
                    length = std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(0);
                }
                // Connection-specific headers do not exist in HTTP/2.
                if !matches!(name.as_str(), "host" | "connection" | "keep-alive" | "transfer-encoding" | "expect") {
                    request = request.header(name, h.value);
                }
            }
            break (request.body(()).map_err(io::Error::other)?, end, length);
        }
    };
    let mut body = buf.split_off(body_start);
    while body.len() < length {
        let mut chunk = [0u8; 4096];
        match client.read(&mut chunk).await? {
            0 => return Ok(()),
            n => body.extend_from_slice(&chunk[..n]),
        }
    }
    // The stream.
    let mut h2 = h2.ready().await.map_err(io::Error::other)?;
    let (response, mut send) = h2.send_request(request, body.is_empty()).map_err(io::Error::other)?;
    if !body.is_empty() {
        send.send_data(Bytes::from(body), true).map_err(io::Error::other)?;
    }
    let response = response.await.map_err(io::Error::other)?;
    let (parts, mut data) = response.into_parts();
    let mut head = format!("HTTP/1.1 {}\r\n", parts.status).into_bytes();
    for (name, value) in &parts.headers {
        head.extend_from_slice(format!("{name}: ").as_bytes());
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"Connection: close\r\n\r\n");
    client.write_all(&head).await?;
    // The body, as it comes, until the stream ends or the client hangs up
    // (then dropping `data` resets the stream).
    let mut probe = [0u8; 1];
    loop {
        tokio::select! {
            chunk = data.data() => match chunk {
                Some(Ok(chunk)) => {
                    let _ = data.flow_control().release_capacity(chunk.len());
                    client.write_all(&chunk).await?;
                }
                Some(Err(e)) => return Err(io::Error::other(e)),
                None => break,
            },
            _ = client.read(&mut probe) => break,
        }
    }
    client.shutdown().await
}
