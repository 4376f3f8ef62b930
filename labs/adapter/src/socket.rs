//! What a lab does to a socket that is not moving bytes: the options every
//! accepted socket gets, and the connection to itself that wakes a thread
//! blocked in `accept`.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

use rtlab_core::Config;

// ANCHOR: tune_socket
/// Applies the per-socket options every lab sets on an accepted
/// connection: no Nagle delay for small pushes, and a bounded kernel send
/// buffer ([`Config::socket_send_buffer`]), so that a stalled peer cannot pin
/// megabytes of kernel memory and backpressure reaches the outbox quickly.
/// Failures are not fatal: the connection works without them.
pub fn tune_socket(config: &Config, socket: socket2::SockRef<'_>) {
    // Failures are ignored on purpose: both options only tune performance.
    let _ = socket.set_tcp_nodelay(true);
    if config.socket_send_buffer > 0 {
        let _ = socket.set_send_buffer_size(config.socket_send_buffer);
    }
    if !config.tcp_user_timeout.is_zero() {
        let _ = socket.set_tcp_user_timeout(Some(config.tcp_user_timeout));
    }
}
// ANCHOR_END: tune_socket

/// Where to connect to reach our own listener: its address, with a wildcard
/// (`0.0.0.0`, `::`) replaced by loopback.
pub fn self_connect_addr(mut addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
        });
    }
    addr
}

// ANCHOR: wake_accept
/// Wakes an accept loop blocked in `accept` (or `poll` on its listener) by
/// connecting to it: the portable way to interrupt a blocking accept. The
/// loop sees the stop flag before it serves the new connection, and drops it.
pub fn wake_accept(listening: SocketAddr) {
    if let Err(e) = TcpStream::connect_timeout(&self_connect_addr(listening), Duration::from_secs(1)) {
        tracing::warn!("could not wake the accept loop: {e}");
    }
}
// ANCHOR_END: wake_accept

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_become_loopback() {
        let v4: SocketAddr = "0.0.0.0:80".parse().unwrap();
        let v6: SocketAddr = "[::]:81".parse().unwrap();
        let bound: SocketAddr = "127.0.0.7:82".parse().unwrap();
        assert_eq!(self_connect_addr(v4), "127.0.0.1:80".parse().unwrap());
        assert_eq!(self_connect_addr(v6), "[::1]:81".parse().unwrap());
        assert_eq!(self_connect_addr(bound), bound);
    }

    #[test]
    fn options_are_set() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let config = Config { socket_send_buffer: 32 * 1024, ..Config::default() };
        tune_socket(&config, socket2::SockRef::from(&client));
        let sock = socket2::SockRef::from(&client);
        assert!(sock.tcp_nodelay().unwrap());
        // Linux doubles the value it is given (for its bookkeeping).
        assert!(sock.send_buffer_size().unwrap() <= 2 * 32 * 1024);
    }
}
