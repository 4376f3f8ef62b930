//! TLS for the kit's clients: a server address can be marked as speaking
//! TLS (with the certificate that signs it), and every raw client that
//! connects there — [`RawConn`](crate::RawConn), [`Sse`](crate::Sse),
//! [`RawWs`](crate::RawWs), [`ws_connect`](crate::ws_connect) — then
//! speaks TLS through a rustls client that trusts that certificate.
//!
//! A mark per address, rather than a switch per process, lets one test
//! binary hold plain and TLS servers at once (the conformance suite runs
//! a TLS line per lab beside the plain one). The clients are rustls'
//! own blocking `StreamOwned`: no rtlab code on the client side.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, StreamOwned};

/// Addresses that speak TLS, each with the client configuration that
/// trusts its certificate.
fn marked() -> &'static Mutex<HashMap<SocketAddr, Arc<ClientConfig>>> {
    static MARKED: OnceLock<Mutex<HashMap<SocketAddr, Arc<ClientConfig>>>> = OnceLock::new();
    MARKED.get_or_init(Default::default)
}

/// A client configuration that trusts `cert_pem` (a self-signed server
/// certificate, or a test CA) and offers `alpn`.
pub fn client_config(cert_pem: &str, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(cert_pem.as_bytes()) {
        roots.add(cert.expect("a PEM certificate")).expect("a usable root certificate");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// From now on, clients connecting to `addr` speak TLS (HTTP/1.1 by
/// ALPN), trusting `cert_pem`.
pub fn mark(addr: SocketAddr, cert_pem: &str) {
    let config = client_config(cert_pem, &[b"http/1.1"]);
    marked().lock().expect("tls marks").insert(addr, config);
}

/// `addr` is plain again (its server is gone; the port may be reused).
pub fn unmark(addr: SocketAddr) {
    marked().lock().expect("tls marks").remove(&addr);
}

/// Whether clients speak TLS to `addr`.
pub fn is_marked(addr: SocketAddr) -> bool {
    marked().lock().expect("tls marks").contains_key(&addr)
}

// ANCHOR: stream
/// A client's connection: plain TCP, or TLS over it when its address is
/// marked. Timeouts and socket options go to [`Stream::tcp`].
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS (rustls' blocking client stream) over TCP.
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}
// ANCHOR_END: stream

impl Stream {
    /// Wraps a connected socket: TLS if its peer's address is marked (the
    /// handshake happens on the first read or write).
    pub fn wrap(tcp: TcpStream) -> Stream {
        let config = tcp.peer_addr().ok().and_then(|addr| marked().lock().expect("tls marks").get(&addr).cloned());
        match config {
            None => Stream::Plain(tcp),
            Some(config) => {
                let ip = tcp.peer_addr().expect("peer address").ip();
                let conn = ClientConnection::new(config, ServerName::IpAddress(ip.into())).expect("a TLS client");
                Stream::Tls(Box::new(StreamOwned::new(conn, tcp)))
            }
        }
    }

    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => tls.get_ref(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.read(buf),
            Stream::Tls(tls) => match tls.read(buf) {
                // A FIN without close_notify: over plain TCP this is the
                // end of file the tests expect; say so here too.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                other => other,
            },
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.write(buf),
            Stream::Tls(tls) => tls.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(tcp) => tcp.flush(),
            Stream::Tls(tls) => tls.flush(),
        }
    }
}
