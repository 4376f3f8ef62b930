//! The threads lab at its ceiling: when no thread can be had for a new
//! client, that client gets a `503` and everyone else keeps being served.
//!
//! The ceiling is made small with `Options::max_threads`, which takes the
//! same path as a failed `thread::Builder::spawn` (an OS limit would need
//! root-only tricks, or would exhaust the machine for other tests).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use rtlab_adapter::Stop;
use rtlab_core::{Config, Server};
use rtlab_threads::{Options, serve_with};

const TIMEOUT: Duration = Duration::from_secs(10);

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream
}

/// Reads one response head and its `Content-Length` body.
fn response(reader: &mut BufReader<TcpStream>) -> (String, String) {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).expect("read a response line") > 0, "closed before a response");
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let length = head.lines().find_map(|l| l.strip_prefix("Content-Length: ")).map_or(0, |v| v.trim().parse().unwrap());
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    (head, String::from_utf8(body).unwrap())
}

fn publish(conn: &mut BufReader<TcpStream>, data: &str) -> (String, String) {
    let request = format!("POST /publish?topic=t HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{data}", data.len());
    conn.get_mut().write_all(request.as_bytes()).unwrap();
    response(conn)
}

#[test]
fn a_client_without_a_thread_gets_503_and_the_others_carry_on() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::new(Config::default());
    let stop = Stop::new();
    let options = Options { max_threads: Some(2), ..Options::default() };
    let serving = {
        let (server, stop) = (server.clone(), stop.clone());
        thread::spawn(move || serve_with(listener, server, stop, options))
    };

    // Two clients take the two threads: a subscriber and a publisher.
    let mut sse = BufReader::new(connect(addr));
    sse.get_mut().write_all(b"GET /sse?topic=t HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut line = String::new();
    sse.read_line(&mut line).unwrap();
    assert_eq!(line, "HTTP/1.1 200 OK\r\n");
    let mut publisher = BufReader::new(connect(addr));
    let (head, body) = publish(&mut publisher, "one");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, r#"{"id":1}"#);

    // The third is refused, with a reason, and its connection is closed.
    let mut refused = BufReader::new(connect(addr));
    refused.get_mut().write_all(b"GET /poll?topic=t HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let (head, body) = response(&mut refused);
    assert!(head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{head}");
    assert!(head.contains("Connection: close\r\n"), "{head}");
    assert!(body.contains("no thread"), "{body}");
    let mut rest = Vec::new();
    refused.read_to_end(&mut rest).expect("a clean close, not a reset");
    assert!(rest.is_empty());

    // The others carry on: a publish reaches the subscriber.
    let (head, _) = publish(&mut publisher, "two");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut seen = String::new();
    while !seen.contains("data: two\n\n") {
        let mut line = String::new();
        assert!(sse.read_line(&mut line).unwrap() > 0, "the stream ended");
        seen.push_str(&line);
    }

    // A thread that ends makes room for the next client.
    drop(publisher);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let mut next = BufReader::new(connect(addr));
        let (head, body) = publish(&mut next, "three");
        if head.starts_with("HTTP/1.1 200") {
            assert_eq!(body, r#"{"id":3}"#);
            break;
        }
        assert!(head.starts_with("HTTP/1.1 503"), "{head}");
        assert!(Instant::now() < deadline, "the publisher's thread never ended");
        thread::sleep(Duration::from_millis(20));
    }

    // And the server still stops cleanly, ending the stream.
    stop.stop();
    serving.join().unwrap().unwrap();
    let mut rest = String::new();
    sse.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("data: three\n\n"), "{rest}");
}
