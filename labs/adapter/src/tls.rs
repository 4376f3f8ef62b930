//! TLS for every lab: one rustls server session per connection, driven by
//! the same [`step`](crate::step) as a plain socket.
//!
//! rustls is sans-IO at its core, like [`rtlab_core`]: a
//! [`ServerConnection`] takes ciphertext in (`read_tls`), hands plaintext
//! out (`reader`), takes plaintext in (`writer`) and hands ciphertext out
//! (`write_tls`), and never touches a socket or a clock. So TLS is one more
//! layer of the [`Socket`] the step already drives: [`Secured`] wraps a
//! lab's socket with an optional [`TlsSession`], and the lab's own code
//! changes by one line where it builds its socket for the step. A plain
//! connection (`None`) passes straight through.
//!
//! ## What TLS adds to a connection's memory
//!
//! A [`TlsSession`] is boxed (one pointer in the lab's connection when
//! TLS is off) and holds rustls' state: the keys, and three buffers:
//!
//! * received ciphertext: rustls reads at most 4 KiB at a time, grows only
//!   to hold one whole record (16 KiB + overhead; 64 KiB while a handshake
//!   message is joined) and shrinks back to 4 KiB once it is consumed;
//! * received plaintext: [`Secured::read`] always empties it into the
//!   lab's read buffer before reading more ciphertext, so it holds at most
//!   one record's plaintext, briefly;
//! * ciphertext to send: [`Secured::write_vectored`] encrypts only when
//!   the previous records have all left, and at most [`TLS_SEND_LIMIT`]
//!   bytes of plaintext at once, so backpressure stays where it was — the
//!   core's outbox — and a stalled reader pins at most that much here.
//!
//! What that costs an idle connection, and a handshake, is measured
//! (`rtlab bench tls`; the book's chapter "TLS and HTTP/2").

use std::io::{self, IoSlice, Read};
use std::path::Path;
use std::sync::Arc;

use rustls::ServerConnection;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::drive::{Socket, Writer};

// ANCHOR: limits
/// Plaintext that one write may hand rustls to encrypt (and so the most
/// ciphertext waiting in a session for a full socket): one TLS record.
pub const TLS_SEND_LIMIT: usize = 16 * 1024;
// ANCHOR_END: limits

/// The ALPN protocol name of HTTP/1.1, which every lab speaks.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";
/// The ALPN protocol name of HTTP/2 (over TLS), which the tokio lab speaks.
pub const ALPN_H2: &[u8] = b"h2";

/// A server's TLS configuration: its certificate chain and key, and the
/// application protocols it offers (ALPN). Cheap to clone (one `Arc`),
/// shared by every connection.
#[derive(Debug, Clone)]
pub struct Tls {
    /// The rustls configuration every session of this server starts from.
    pub config: Arc<rustls::ServerConfig>,
}

impl Tls {
    /// Reads a PEM certificate chain and a PEM private key (PKCS#8, PKCS#1
    /// or SEC1), offering the ALPN protocols `alpn` in order of preference.
    /// A file that cannot be read or holds no certificate or key is a clear
    /// error, naming the file.
    pub fn from_pem_files(cert: &Path, key: &Path, alpn: &[&[u8]]) -> io::Result<Tls> {
        let certs = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| invalid(format!("{}: no PEM certificate chain: {e}", cert.display())))?;
        if certs.is_empty() {
            return Err(invalid(format!("{}: no certificate in the file", cert.display())));
        }
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| invalid(format!("{}: no PEM private key: {e}", key.display())))?;
        Tls::new(certs, key, alpn)
    }

    /// The same, from certificates and a key already in memory.
    pub fn new(certs: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>, alpn: &[&[u8]]) -> io::Result<Tls> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| invalid(format!("certificate and key do not fit: {e}")))?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Tls { config: Arc::new(config) })
    }

    /// A new session for an accepted connection, its send buffer bounded.
    pub fn accept(&self) -> io::Result<Box<TlsSession>> {
        let conn = ServerConnection::new(self.config.clone()).map_err(|e| invalid(e.to_string()))?;
        Ok(TlsSession::from_connection(conn))
    }
}

/// A new connection's TLS session if the server speaks TLS (`Ok(None)`
/// if it does not); an error only if rustls refuses to start a session.
pub fn session_for(tls: Option<&Tls>) -> io::Result<Option<Box<TlsSession>>> {
    tls.map(Tls::accept).transpose()
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

// ANCHOR: session
/// One connection's TLS state: the rustls session, and the half-close it
/// owes the peer. The TCP FIN waits until the `close_notify` alert and
/// every record before it have left.
#[derive(Debug)]
pub struct TlsSession {
    conn: ServerConnection,
    /// The core asked for a half-close: `close_notify` is queued.
    closing: bool,
    /// The TCP write half is shut down (after the last record).
    fin_sent: bool,
}
// ANCHOR_END: session

impl TlsSession {
    /// Wraps a rustls session (e.g. one whose handshake another crate did,
    /// as the tokio lab's ALPN switch does), bounding its send buffer.
    pub fn from_connection(mut conn: ServerConnection) -> Box<TlsSession> {
        conn.set_buffer_limit(Some(TLS_SEND_LIMIT));
        Box::new(TlsSession { conn, closing: false, fin_sent: false })
    }

    /// The rustls session (its negotiated ALPN protocol, its state).
    pub fn connection(&self) -> &ServerConnection {
        &self.conn
    }
}

// ANCHOR: secured
/// A lab's socket, with TLS when the server has it: the [`Socket`] the
/// step drives. `tls: None` passes every call through unchanged.
#[derive(Debug)]
pub struct Secured<'a, S> {
    /// The connection's TLS session, if the server speaks TLS.
    pub tls: Option<&'a mut TlsSession>,
    /// The lab's socket (ciphertext below the session).
    pub socket: S,
}
// ANCHOR_END: secured

impl<'a, S: Socket> Secured<'a, S> {
    /// `socket`, with TLS if `tls` is some.
    pub fn new(tls: Option<&'a mut TlsSession>, socket: S) -> Self {
        Secured { tls, socket }
    }
}

/// `std::io::Read` over a [`Socket`], for rustls' `read_tls`.
struct Reader<'a, S: Socket + ?Sized>(&'a mut S);

impl<S: Socket + ?Sized> Read for Reader<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

/// Writes the session's pending records to the socket until it is empty or
/// the socket is full (`WouldBlock` is not an error here: `wants_write`
/// says there is more), then the FIN if one is owed and everything left.
fn flush_tls<S: Socket + ?Sized>(tls: &mut TlsSession, socket: &mut S) -> io::Result<()> {
    while tls.conn.wants_write() {
        match tls.conn.write_tls(&mut Writer(socket)) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if tls.closing && !tls.fin_sent {
        tls.fin_sent = true;
        socket.shutdown_write()?;
    }
    Ok(())
}

// ANCHOR: secured_socket
impl<S: Socket> Socket for Secured<'_, S> {
    /// Plaintext: what rustls has decrypted first; otherwise ciphertext
    /// from the socket, decrypted (handshake records are answered on the
    /// way), until there is plaintext, end of file, or `WouldBlock`.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(tls) = self.tls.as_deref_mut() else { return self.socket.read(buf) };
        loop {
            match tls.conn.reader().read(buf) {
                // Ok(0): the peer's close_notify, a clean end of file.
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // End of file without close_notify: the peer is gone all the same.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            match tls.conn.read_tls(&mut Reader(&mut self.socket)) {
                Ok(0) => return Ok(0),
                Ok(_) => {}
                Err(e) => return Err(e),
            }
            if let Err(e) = tls.conn.process_new_packets() {
                // Bad input: the alert rustls queued goes out, then the connection ends.
                let _ = flush_tls(tls, &mut self.socket);
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            // Handshake answers (and alerts) leave at once.
            flush_tls(tls, &mut self.socket)?;
        }
    }

    /// Encrypts at most [`TLS_SEND_LIMIT`] bytes, and only once every
    /// earlier record has left: a full socket is `WouldBlock`, as without TLS.
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let Some(tls) = self.tls.as_deref_mut() else { return self.socket.write_vectored(bufs) };
        flush_tls(tls, &mut self.socket)?;
        if tls.conn.wants_write() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = io::Write::write_vectored(&mut tls.conn.writer(), bufs)?;
        flush_tls(tls, &mut self.socket)?;
        if n == 0 && bufs.iter().any(|b| !b.is_empty()) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    /// `close_notify`, then the TCP FIN once it has left.
    fn shutdown_write(&mut self) -> io::Result<()> {
        let Some(tls) = self.tls.as_deref_mut() else { return self.socket.shutdown_write() };
        if !tls.closing {
            tls.conn.send_close_notify();
            tls.closing = true;
        }
        flush_tls(tls, &mut self.socket)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.tls.as_deref_mut() {
            Some(tls) => flush_tls(tls, &mut self.socket),
            None => self.socket.flush(),
        }
    }

    fn wants_write(&self) -> bool {
        match self.tls.as_deref() {
            Some(tls) => tls.conn.wants_write() || (tls.closing && !tls.fin_sent),
            None => self.socket.wants_write(),
        }
    }
}
// ANCHOR_END: secured_socket

/// A self-signed certificate for `localhost` and `127.0.0.1`, with its key,
/// both PEM: what tests, examples and benchmarks serve (`rtlab cert`
/// writes one). Clients trust it by adding the certificate as a root.
pub fn self_signed() -> io::Result<(String, String)> {
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let certified = rcgen::generate_simple_self_signed(names).map_err(|e| io::Error::other(e.to_string()))?;
    Ok((certified.cert.pem(), certified.signing_key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    fn tls() -> (Tls, String) {
        let (cert, key) = self_signed().unwrap();
        let certs = vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
        (Tls::new(certs, key, &[ALPN_HTTP1]).unwrap(), cert)
    }

    /// A rustls client over a real socket pair, the server's end driven
    /// through `Secured` with blocking reads: a round trip of plaintext and
    /// a clean close (close_notify, then FIN).
    #[test]
    fn a_round_trip_and_a_clean_close() {
        let (tls, cert) = tls();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client = std::thread::spawn(move || {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()).unwrap();
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
            let name = "localhost".try_into().unwrap();
            let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
            let mut stream = rustls::StreamOwned::new(conn, TcpStream::connect(addr).unwrap());
            io::Write::write_all(&mut stream, b"ping").unwrap();
            let mut got = Vec::new();
            stream.read_to_end(&mut got).unwrap();
            got
        });
        let (tcp, _) = listener.accept().unwrap();
        let mut session = tls.accept().unwrap();
        let mut socket = Secured::new(Some(&mut session), &tcp);
        let mut buf = [0u8; 64];
        let n = socket.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"ping");
        assert_eq!(socket.write_vectored(&[IoSlice::new(b"pong")]).unwrap(), 4);
        socket.shutdown_write().unwrap();
        assert!(!socket.wants_write(), "everything left, FIN sent");
        assert_eq!(client.join().unwrap(), b"pong", "read_to_end saw close_notify: a clean end");
    }

    #[test]
    fn garbage_is_an_error_not_a_hang() {
        let (tls, _) = tls();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        io::Write::write_all(&mut client, b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let (tcp, _) = listener.accept().unwrap();
        let mut session = tls.accept().unwrap();
        let mut buf = [0u8; 64];
        let err = Secured::new(Some(&mut session), &tcp).read(&mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    }

    #[test]
    fn missing_files_are_named() {
        let err = Tls::from_pem_files(Path::new("/nonexistent/cert.pem"), Path::new("/nonexistent/key.pem"), &[])
            .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
    }
}
