//! The conformance suite's harness: a real `rtlab serve` process and
//! independent clients (ureq for HTTP, tungstenite for WebSocket, and the
//! test kit's raw clients for SSE, crafted WebSocket frames and malformed
//! HTTP). None of it is rtlab code.
//!
//! The process and the raw clients are `rtlab-testkit`'s (re-exported here);
//! what is left is the contract's: `/publish`, `/poll` and `/stats` through
//! ureq, and the shapes of its JSON documents.
//!
//! Every read is bounded: helpers take a timeout and panic with a message
//! that says what was awaited when it expires.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitStatus;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

pub use rtlab_testkit::TIMEOUT;
pub use rtlab_testkit::http::{Head, RawConn, assert_content_type, request};
pub use rtlab_testkit::sse::{Sse, parse_sse_block};
pub use rtlab_testkit::ws::{
    BINARY, CLOSE, CONT, FIN, Frame, PING, PONG, RawWs, TEXT, Ws, client_frame, frame_header, ws_connect, ws_read,
    ws_send_text, ws_text, ws_try_read,
};
use rtlab_testkit::{Launch, Running};

// ---------------------------------------------------------------------------
// The server process
// ---------------------------------------------------------------------------

/// One `rtlab serve` process on its own port, killed when dropped. If the test
/// panics, the server's stderr (its logs) is printed with the failure.
#[derive(Debug)]
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    process: Running,
    agent: ureq::Agent,
    /// It speaks TLS (`https`, and the test kit's clients know it).
    tls: bool,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if self.tls {
            rtlab_testkit::tls::unmark(self.addr);
        }
    }
}

/// The self-signed certificate (PEM) and the files of the pair that TLS
/// test servers serve, made once per test process.
pub fn test_certificate() -> &'static (String, std::path::PathBuf, std::path::PathBuf) {
    static PAIR: std::sync::OnceLock<(String, std::path::PathBuf, std::path::PathBuf)> = std::sync::OnceLock::new();
    PAIR.get_or_init(|| {
        let (cert, key) = rtlab_adapter::self_signed().expect("a self-signed certificate");
        let dir = std::env::temp_dir().join(format!("rtlab-test-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory for the test certificate");
        let (cert_file, key_file) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert_file, &cert).and_then(|()| std::fs::write(&key_file, key)).expect("writing the pair");
        (cert, cert_file, key_file)
    })
}

impl TestServer {
    /// Starts `rtlab serve --runtime <runtime> --addr 127.0.0.1:0 <options>`
    /// and waits for its first stdout line, `listening on 127.0.0.1:PORT`.
    /// A runtime written `lab+tls` serves TLS with [`test_certificate`]
    /// (HTTP/1.1 only), and every client here speaks TLS to it; `lab+h2`
    /// serves TLS with HTTP/2, and `addr` is then an [`H2Gate`]'s: every
    /// client's request is a stream of one HTTP/2 connection.
    ///
    /// [`H2Gate`]: rtlab_testkit::h2gate::H2Gate
    pub fn start(runtime: &str, options: &[&str]) -> TestServer {
        TestServer::start_with(runtime, options, |lab| Launch::serve(env!("CARGO_BIN_EXE_rtlab"), lab))
    }

    /// Like [`start`](TestServer::start) on a chosen address: a server
    /// restarted where the last one listened (`--addr` of an exited one).
    pub fn start_at(runtime: &str, addr: SocketAddr, options: &[&str]) -> TestServer {
        let addr = addr.to_string();
        TestServer::start_with(runtime, options, |lab| {
            Launch::new(env!("CARGO_BIN_EXE_rtlab")).args(["serve", "--runtime", lab, "--addr", &addr])
        })
    }

    /// `runtime` may end in `+tls` or `+h2` (see [`start`](TestServer::start));
    /// `serve` makes the command line for the lab's name.
    fn start_with(runtime: &str, options: &[&str], serve: impl FnOnce(&str) -> Launch) -> TestServer {
        let (runtime, tls, h2) = match (runtime.strip_suffix("+tls"), runtime.strip_suffix("+h2")) {
            (Some(lab), _) => (lab, true, false),
            (_, Some(lab)) => (lab, false, true),
            _ => (runtime, false, false),
        };
        let (_, cert_file, key_file) = test_certificate();
        let mut launch = serve(runtime).args(options);
        if tls || h2 {
            launch = launch.arg("--tls-cert").arg(cert_file).arg("--tls-key").arg(key_file);
        }
        if tls {
            launch = launch.arg("--no-http2");
        }
        TestServer::launch(launch, tls, h2)
    }

    fn launch(launch: Launch, tls: bool, h2: bool) -> TestServer {
        let cert = &test_certificate().0;
        let process = launch
            .start()
            .unwrap_or_else(|e| panic!("starting the rtlab server failed: {e}"));
        let mut addr = process.addr();
        assert_eq!(addr.ip(), Ipv4Addr::LOCALHOST, "the server must listen where --addr says");
        assert_ne!(addr.port(), 0, "the printed port must be the real one, not 0");
        if h2 {
            // Every client goes through one HTTP/2 connection to the server.
            addr = rtlab_testkit::h2gate::H2Gate::start(addr, cert).expect("the HTTP/2 gateway").addr;
        }
        if tls {
            rtlab_testkit::tls::mark(addr, cert);
        }
        TestServer { addr, process, agent: agent(), tls }
    }

    /// `http://ADDR{path}`, or `https://` for a TLS server.
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.addr)
    }

    /// A ureq agent (keep-alive pool) that never treats 4xx as an error.
    pub fn agent(&self) -> &ureq::Agent {
        &self.agent
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.process.pid() as i32
    }

    /// Sends a signal to the server process.
    pub fn signal(&self, signal: i32) {
        self.process.signal(signal).unwrap_or_else(|e| panic!("kill({}, {signal}) failed: {e}", self.pid()));
    }

    /// Waits for the process to exit, at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        self.process.wait_exit(timeout).unwrap_or_else(|e| panic!("the server did not exit within {timeout:?}: {e}"))
    }

    // -- HTTP through ureq ----------------------------------------------------

    /// `POST /publish?topic=T` with `body`; asserts `200 application/json
    /// {"id":N}` and returns N.
    pub fn publish(&self, topic: &str, body: impl AsRef<[u8]>) -> u64 {
        let mut resp = self
            .agent
            .post(self.url(&format!("/publish?topic={topic}")))
            .send(body.as_ref())
            .unwrap_or_else(|e| panic!("publish to {topic} failed: {e}"));
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().expect("publish response body");
        assert_eq!(status, 200, "publish to {topic}: {text}");
        assert_content_type(header(&resp, "content-type"), "application/json");
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("publish body {text:?}: {e}"));
        let obj = v.as_object().unwrap_or_else(|| panic!("publish body is not an object: {text}"));
        assert_eq!(obj.len(), 1, "publish body must be exactly {{\"id\":N}}: {text}");
        obj["id"].as_u64().unwrap_or_else(|| panic!("publish id is not a number: {text}"))
    }

    /// Like [`publish`](Self::publish), with `Authorization: Bearer token`.
    pub fn publish_with(&self, topic: &str, token: &str, body: &str) -> u64 {
        let mut resp = self
            .agent
            .post(self.url(&format!("/publish?topic={topic}")))
            .header("Authorization", format!("Bearer {token}"))
            .send(body.as_bytes())
            .unwrap_or_else(|e| panic!("publish to {topic} failed: {e}"));
        let text = resp.body_mut().read_to_string().expect("publish response body");
        assert_eq!(resp.status().as_u16(), 200, "publish to {topic}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("publish body {text:?}: {e}"));
        v["id"].as_u64().unwrap_or_else(|| panic!("publish id is not a number: {text}"))
    }

    /// A short poll with the token in the query.
    pub fn poll_with(&self, topic: &str, token: &str) -> Value {
        self.get_json(&format!("/poll?topic={topic}&after=0&token={token}"))
    }

    /// `GET path`, asserting `200 application/json`; returns the JSON.
    pub fn get_json(&self, path: &str) -> Value {
        let (status, content_type, body) = self.get(path);
        assert_eq!(status, 200, "GET {path}: {body}");
        assert_content_type(content_type.as_deref(), "application/json");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: body {body:?} is not JSON: {e}"))
    }

    /// `GET path`: status, Content-Type and body.
    pub fn get(&self, path: &str) -> (u16, Option<String>, String) {
        let mut resp = self.agent.get(self.url(path)).call().unwrap_or_else(|e| panic!("GET {path} failed: {e}"));
        let status = resp.status().as_u16();
        let content_type = header(&resp, "content-type").map(str::to_owned);
        let body = resp.body_mut().read_to_string().expect("response body");
        (status, content_type, body)
    }

    /// A short poll: `GET /poll?topic=T&after=N`.
    pub fn poll(&self, topic: &str, after: u64) -> Value {
        self.get_json(&format!("/poll?topic={topic}&after={after}"))
    }

    /// `GET /stats`.
    pub fn stats(&self) -> Value {
        self.get_json("/stats")
    }

    /// Polls `/stats` until `ready` holds for it (at most [`TIMEOUT`]);
    /// returns the last document.
    pub fn wait_stats(&self, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let stats = self.stats();
            if ready(&stats) {
                return stats;
            }
            assert!(Instant::now() < deadline, "timed out waiting for /stats to show {what}; last: {stats}");
            thread::sleep(Duration::from_millis(20));
        }
    }
}


/// A ureq agent that reports 4xx/5xx as responses and bounds every call;
/// for `https`, it trusts the [`test_certificate`] only.
pub fn agent() -> ureq::Agent {
    use ureq::tls::{Certificate, RootCerts, TlsConfig};
    let root = Certificate::from_pem(test_certificate().0.as_bytes()).expect("the test certificate");
    let tls = TlsConfig::builder().root_certs(RootCerts::Specific(std::sync::Arc::new(vec![root]))).build();
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(TIMEOUT))
        .tls_config(tls)
        .build()
        .into()
}

fn header<'a>(resp: &'a ureq::http::Response<ureq::Body>, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

// ---------------------------------------------------------------------------
// WebSocket frames and messages as JSON
// ---------------------------------------------------------------------------

/// A text frame's payload as JSON (`frame.json()`).
pub trait FrameJson {
    /// The payload as JSON; fails the test for a non-text or non-JSON frame.
    fn json(&self) -> Value;
}

impl FrameJson for Frame {
    fn json(&self) -> Value {
        assert_eq!(self.opcode, TEXT, "expected a text frame, got {self:?}");
        serde_json::from_slice(&self.payload).unwrap_or_else(|e| panic!("frame is not JSON ({e}): {self:?}"))
    }
}

// ---------------------------------------------------------------------------
// WebSocket: the contract's messages through tungstenite (blocking)
// ---------------------------------------------------------------------------

/// The next text message as JSON, skipping pings and pongs.
pub fn ws_json(ws: &mut Ws) -> Value {
    let t = ws_text(ws);
    serde_json::from_str(&t).unwrap_or_else(|e| panic!("text frame {t:?} is not JSON: {e}"))
}

/// The next text message, which must be `{"id":N,"epoch":"E","data":"..."}`.
pub fn ws_message(ws: &mut Ws) -> (u64, String) {
    let v = ws_json(ws);
    let epoch = v["epoch"].as_str().unwrap_or_else(|| panic!("a /ws message carries its epoch: {v}"));
    assert_epoch(epoch);
    message_of(&v)
}

/// The contract's epoch: 1 to 16 characters of `0-9 A-Z a-z`.
pub fn assert_epoch(epoch: &str) {
    assert!(
        (1..=16).contains(&epoch.len()) && epoch.bytes().all(|b| b.is_ascii_alphanumeric()),
        "{epoch:?} is not an epoch (1 to 16 of 0-9 A-Z a-z)"
    );
}

/// Splits a `{"id":N,"data":"..."}` object — a poll entry, or a `/ws`
/// message, which has `"epoch"` too — and checks it has nothing else.
pub fn message_of(v: &Value) -> (u64, String) {
    let obj = v.as_object().unwrap_or_else(|| panic!("expected a message object, got {v}"));
    let fields = if obj.contains_key("epoch") { 3 } else { 2 };
    assert_eq!(obj.len(), fields, "a message is exactly {{\"id\":N,[\"epoch\":\"E\",]\"data\":\"...\"}}: {v}");
    let id = obj["id"].as_u64().unwrap_or_else(|| panic!("message without a numeric id: {v}"));
    let data = obj["data"].as_str().unwrap_or_else(|| panic!("message without string data: {v}"));
    (id, data.to_owned())
}

/// Publishes over a `/ws` connection.
pub fn ws_publish(ws: &mut Ws, data: &str) {
    ws_send_text(ws, &serde_json::json!({ "op": "publish", "data": data }).to_string());
}

/// The `(id, data)` pairs of a poll response, checking its shape.
pub fn poll_messages(v: &Value) -> Vec<(u64, String)> {
    v["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("poll response without a messages array: {v}"))
        .iter()
        .map(message_of)
        .collect()
}

/// `(from, to)` of a `{"from":F,"to":T}` object.
pub fn range_of(v: &Value) -> (u64, u64) {
    let from = v["from"].as_u64().unwrap_or_else(|| panic!("missed range without from: {v}"));
    let to = v["to"].as_u64().unwrap_or_else(|| panic!("missed range without to: {v}"));
    (from, to)
}
