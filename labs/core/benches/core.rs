// Run: cargo bench -p rtlab-core --bench core
//! Criterion benchmarks of the protocol core's hot paths: fan-out (encode once
//! and share vs encode per subscriber), outbox cycles, request routing and
//! WebSocket frame decoding. In test mode (`cargo bench -p rtlab-core -- --test`
//! or `cargo test --benches`) each benchmark runs once.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rtlab_core::encode::{Message, Transport};
use rtlab_core::outbox::Outbox;
use rtlab_core::ws::{WsDecoder, WsEvent};
use rtlab_core::{Bytes, Policy, http};

/// A typical small chat-sized message, with characters JSON must escape.
const DATA: &str = "{\"user\":\"ada\",\"text\":\"hello, \\\"world\\\"\\nsecond line\"} padding to ~100 bytes....";

fn outboxes(n: usize) -> Vec<Outbox> {
    (0..n).map(|_| Outbox::new(Transport::Ws, 1 << 20, Policy::Disconnect)).collect()
}

/// One publish to N subscribers. "shared": the message is encoded once and
/// every outbox gets a reference-counted handle to the same bytes (what the
/// hub does). "per_subscriber": each subscriber gets its own encoding (what
/// a naive server that serializes per connection does).
fn fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout");
    for n in [100usize, 1000] {
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("encode_once_shared", n), &n, |b, &n| {
            b.iter_batched_ref(
                || outboxes(n),
                |boxes| {
                    let message = Message::new(black_box("E").into(), black_box(42), black_box(DATA));
                    for outbox in boxes.iter_mut() {
                        outbox.push_message(message.ws().clone(), message.id);
                    }
                },
                BatchSize::SmallInput,
            );
        });
        group.bench_with_input(BenchmarkId::new("encode_per_subscriber", n), &n, |b, &n| {
            b.iter_batched_ref(
                || outboxes(n),
                |boxes| {
                    for outbox in boxes.iter_mut() {
                        let message = Message::new(black_box("E").into(), black_box(42), black_box(DATA));
                        outbox.push_message(message.ws().clone(), message.id);
                    }
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

/// A subscriber's writer loop: 16 messages queued, taken in one batch,
/// reported written.
fn outbox(c: &mut Criterion) {
    let mut group = c.benchmark_group("outbox");
    let message = Message::new("E".into(), 1, DATA);
    group.throughput(Throughput::Elements(16));
    group.bench_function("push16_take_written", |b| {
        let mut outbox = Outbox::new(Transport::Ws, 1 << 20, Policy::Disconnect);
        let mut out: Vec<Bytes> = Vec::with_capacity(16);
        b.iter(|| {
            for id in 1..=16 {
                outbox.push_message(message.ws().clone(), id);
            }
            let n = outbox.take(&mut out, usize::MAX);
            outbox.written(black_box(n));
            out.clear();
        });
    });
    // Drop-oldest at its budget: every push discards the oldest message.
    group.throughput(Throughput::Elements(1));
    group.bench_function("drop_oldest_full", |b| {
        let mut outbox = Outbox::new(Transport::Ws, 64 * message.ws().len(), Policy::DropOldest);
        for id in 1..=64 {
            outbox.push_message(message.ws().clone(), id);
        }
        let mut id = 64;
        b.iter(|| {
            id += 1;
            black_box(outbox.push_message(message.ws().clone(), id));
        });
    });
    group.finish();
}

/// Parsing and routing the request heads a server sees most.
fn routing(c: &mut Criterion) {
    let mut group = c.benchmark_group("routing");
    let publish = b"POST /publish?topic=chat.room-1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\
        User-Agent: rtlab-load/0.1\r\nAccept: */*\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n";
    let sse = b"GET /sse?topic=chat.room-1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\
        User-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\
        Last-Event-ID: 12345\r\nConnection: keep-alive\r\n\r\n";
    for (name, request) in [("publish", &publish[..]), ("sse", &sse[..])] {
        group.throughput(Throughput::Bytes(request.len() as u64));
        group.bench_with_input(BenchmarkId::new("parse_request", name), request, |b, request| {
            b.iter(|| http::parse_request(black_box(request), 8 * 1024, 64 * 1024).expect("valid").expect("complete"));
        });
    }
    group.finish();
}

/// A masked 64-byte text frame from a client, decoded.
fn ws_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("ws_decode");
    let payload = [b'a'; 64];
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut frame = vec![0x81, 0x80 | 64];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    group.throughput(Throughput::Bytes(frame.len() as u64));
    group.bench_function("masked_text_64", |b| {
        let mut decoder = WsDecoder::new(64 * 1024);
        b.iter(|| {
            let mut len = 0;
            decoder
                .feed(black_box(&frame), &mut |event| {
                    if let WsEvent::Text(text) = event {
                        len += text.len();
                    }
                })
                .expect("a valid frame");
            assert_eq!(len, 64);
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    // Short runs by default: these are micro-benchmarks with stable timings.
    // Command-line options (`--warm-up-time`, `--measurement-time`) override.
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = fanout, outbox, routing, ws_decode
}
criterion_main!(benches);
