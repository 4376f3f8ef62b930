//! The threads lab at its ceiling: when no thread can be had for a new
//! client, that client gets a `503` and everyone else keeps being served.
//!
//! The ceiling is made small with `Options::max_threads`, which takes the
//! same path as a failed `thread::Builder::spawn` (an OS limit would need
//! root-only tricks, or would exhaust the machine for other tests).

use std::net::TcpListener;
use std::thread;
use std::time::{Duration, Instant};

use rtlab_adapter::Stop;
use rtlab_core::{Config, Server};
use rtlab_testkit::{RawConn, Response, Sse, TIMEOUT, request};
use rtlab_threads::{Options, serve_with};

/// A publish of `data` on `conn` (head and body in one write), and its answer.
fn publish(conn: &mut RawConn, data: &str) -> Response {
    let mut raw = request("POST", "/publish?topic=t", &format!("Content-Length: {}\r\n", data.len()));
    raw.extend_from_slice(data.as_bytes());
    conn.send(&raw);
    conn.read_response()
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
        thread::spawn(move || serve_with(listener, server, stop, options, None))
    };

    // Two clients take the two threads: a subscriber and a publisher.
    let mut sse = Sse::connect(addr, "/sse?topic=t", "");
    let mut publisher = RawConn::connect(addr);
    let answer = publish(&mut publisher, "one");
    assert_eq!(answer.head.status, 200, "{answer:?}");
    assert_eq!(answer.text(), r#"{"id":1}"#);

    // The third is refused, with a reason, and its connection is closed.
    let mut refused = RawConn::connect(addr);
    refused.send(&request("GET", "/poll?topic=t", ""));
    let answer = refused.read_response();
    assert_eq!((answer.head.status, answer.head.reason.as_str()), (503, "Service Unavailable"), "{answer:?}");
    assert!(answer.head.connection_close(), "{answer:?}");
    assert!(answer.text().contains("no thread"), "{answer:?}");
    refused.expect_eof("a clean close, not a reset");

    // The others carry on: a publish reaches the subscriber.
    let answer = publish(&mut publisher, "two");
    assert_eq!(answer.head.status, 200, "{answer:?}");
    while sse.next_event(TIMEOUT).expect("the stream ended").data != "two" {}

    // A thread that ends makes room for the next client.
    drop(publisher);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let answer = publish(&mut RawConn::connect(addr), "three");
        if answer.head.status == 200 {
            assert_eq!(answer.text(), r#"{"id":3}"#);
            break;
        }
        assert_eq!(answer.head.status, 503, "{answer:?}");
        assert!(Instant::now() < deadline, "the publisher's thread never ended");
        thread::sleep(Duration::from_millis(20));
    }

    // And the server still stops cleanly, ending the stream.
    stop.stop();
    serving.join().unwrap().unwrap();
    let rest = sse.drain_to_eof();
    assert!(rest.iter().any(|ev| ev.data == "three"), "{rest:?}");
}
