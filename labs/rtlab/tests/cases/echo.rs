//! `/echo`: an RFC 6455 echo server, and the close codes for bad input.

use tungstenite::Message;
use tungstenite::protocol::frame::coding::CloseCode;

use crate::common::*;

/// Reads one complete data message (reassembling fragments); control frames
/// met on the way are returned too.
fn read_message(ws: &mut RawWs) -> (u8, Vec<u8>, Vec<Frame>) {
    let mut controls = Vec::new();
    let mut message: Option<(u8, Vec<u8>)> = None;
    loop {
        let f = ws.frame();
        match f.opcode {
            PING | PONG | CLOSE => {
                assert_ne!(f.opcode, CLOSE, "unexpected close frame {f:?}");
                controls.push(f);
            }
            TEXT | BINARY => {
                assert!(message.is_none(), "a new data frame inside a fragmented message");
                message = Some((f.opcode, f.payload));
                if f.fin {
                    let (op, data) = message.expect("set above");
                    return (op, data, controls);
                }
            }
            CONT => {
                let (_, data) = message.as_mut().expect("a continuation frame without a message");
                data.extend_from_slice(&f.payload);
                if f.fin {
                    let (op, data) = message.expect("set above");
                    return (op, data, controls);
                }
            }
            other => panic!("unexpected opcode {other:#x}"),
        }
    }
}

/// Text and binary messages come back unchanged; ping gets a pong with the
/// same payload; fragmented messages (with a ping between fragments and a
/// code point split across them) come back whole; a close is answered.
pub fn echo_round_trips(rt: &str) {
    let server = TestServer::start(rt, &[]);
    let mut ws = ws_connect(server.addr, "/echo");
    let big = "0123456789abcdef".repeat(12 * 1024); // 192 KiB: over max-message, fine for echo.
    let messages = [
        Message::text("héllo wörld"),
        Message::text(""),
        Message::binary(vec![0u8, 1, 2, 254, 255]),
        Message::binary(Vec::new()),
        Message::text(big.as_str()),
        Message::binary(big.clone().into_bytes()),
    ];
    for msg in messages {
        ws.send(msg.clone()).expect("send");
        assert_eq!(ws_read(&mut ws), msg, "echoed unchanged");
    }
    ws.send(Message::Ping(b"are you there".to_vec().into())).expect("ping");
    assert_eq!(ws_read(&mut ws), Message::Pong(b"are you there".to_vec().into()), "pong with the ping's payload");

    // Fragmented, by hand.
    let mut raw = RawWs::connect(server.addr, "/echo");
    let e_acute = "é".as_bytes();
    raw.send(TEXT, b"hel");
    raw.send(CONT, &[b'l', b'o', b' ', e_acute[0]]);
    raw.send(FIN | PING, b"mid");
    raw.send(CONT, &[e_acute[1]]);
    raw.send(FIN | CONT, " wörld".as_bytes());
    let (op, data, controls) = read_message(&mut raw);
    assert_eq!(controls, [Frame { fin: true, opcode: PONG, payload: b"mid".to_vec() }], "the ping between fragments");
    assert_eq!((op, String::from_utf8(data).expect("UTF-8")), (TEXT, "hello é wörld".to_owned()));

    raw.send(BINARY, &[1, 2]);
    raw.send(FIN | CONT, &[3]);
    let (op, data, controls) = read_message(&mut raw);
    assert!(controls.is_empty());
    assert_eq!((op, data), (BINARY, vec![1, 2, 3]));

    // A close is answered with a close (same code), then the server closes.
    raw.send(FIN | CLOSE, &[0x03, 0xE8, b'b', b'y', b'e']);
    raw.expect_close(1000, "closing handshake");

    // The tungstenite client's closing handshake completes too.
    ws.close(None).expect("close");
    match ws_read(&mut ws) {
        Message::Close(frame) => {
            if let Some(frame) = frame {
                assert_eq!(frame.code, CloseCode::Normal);
            }
        }
        other => panic!("expected the close answer, got {other:?}"),
    }
}

/// Protocol violations are closed with 1002 (and a close frame first).
pub fn echo_protocol_errors_close_1002(rt: &str) {
    let server = TestServer::start(rt, &[]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("unmasked frame", client_frame(FIN | TEXT, b"hi", false)),
        ("RSV1 without an extension", client_frame(FIN | 0x40 | TEXT, b"hi", true)),
        ("RSV3 on a ping", client_frame(FIN | 0x10 | PING, b"", true)),
        ("reserved data opcode 0x3", client_frame(FIN | 0x3, b"", true)),
        ("reserved control opcode 0xB", client_frame(FIN | 0xB, b"", true)),
        ("continuation without a message", client_frame(FIN | CONT, b"x", true)),
        (
            "new message inside a fragmented one",
            [client_frame(TEXT, b"a", true), client_frame(FIN | TEXT, b"b", true)].concat(),
        ),
        ("fragmented ping", client_frame(PING, b"", true)),
        ("ping over 125 bytes", client_frame(FIN | PING, &[7; 126], true)),
        ("close with a one-byte payload", client_frame(FIN | CLOSE, &[3], true)),
        ("close code 1005 (reserved)", client_frame(FIN | CLOSE, &[0x03, 0xED], true)),
        ("close code 999", client_frame(FIN | CLOSE, &[0x03, 0xE7], true)),
    ];
    for (what, bytes) in cases {
        let mut ws = RawWs::connect(server.addr, "/echo");
        ws.send_raw(&bytes);
        ws.expect_close(1002, what);
    }
    // The client sees the close frame before the server has finished its
    // side of the close (FIN, then the count), so the count may lag a moment.
    server.wait_stats("no echo connection left", |s| s["connections"]["echo"] == 0);
}

/// Invalid UTF-8 in a text message (or close reason) is closed with 1007.
pub fn echo_invalid_utf8_closes_1007(rt: &str) {
    let server = TestServer::start(rt, &[]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("invalid byte", client_frame(FIN | TEXT, b"ok \xff", true)),
        ("truncated code point", client_frame(FIN | TEXT, b"abc\xc3", true)),
        ("encoded surrogate", client_frame(FIN | TEXT, b"\xed\xa0\x80", true)),
        (
            "invalid in the last fragment",
            [client_frame(TEXT, b"fine so far", true), client_frame(FIN | CONT, b"\xff", true)].concat(),
        ),
        (
            "truncated at the end of the last fragment",
            [client_frame(TEXT, b"a", true), client_frame(FIN | CONT, b"\xe2\x82", true)].concat(),
        ),
        ("close reason", client_frame(FIN | CLOSE, b"\x03\xe8\xff", true)),
    ];
    for (what, bytes) in cases {
        let mut ws = RawWs::connect(server.addr, "/echo");
        ws.send_raw(&bytes);
        ws.expect_close(1007, what);
    }
}

/// A message over `--max-echo-message` is closed with 1009, whole or
/// fragmented, and judged from the frame header before its payload arrives.
pub fn echo_too_big_closes_1009(rt: &str) {
    let server = TestServer::start(rt, &["--max-echo-message", "1000"]);
    let mut ws = RawWs::connect(server.addr, "/echo");
    ws.send(FIN | BINARY, &[9; 1000]);
    let f = ws.frame();
    assert_eq!((f.opcode, f.payload.len()), (BINARY, 1000), "a message of exactly the limit is echoed");
    ws.send(FIN | TEXT, &[b'a'; 1001]);
    ws.expect_close(1009, "a 1001-byte text message");

    let mut ws = RawWs::connect(server.addr, "/echo");
    ws.send(TEXT, &[b'a'; 600]);
    ws.send(FIN | CONT, &[b'b'; 600]);
    ws.expect_close(1009, "two fragments of 600 bytes");

    // Only the header of a 1 MB frame: the payload is never sent.
    let mut ws = RawWs::connect(server.addr, "/echo");
    ws.send_raw(&frame_header(FIN | BINARY, 1_000_000, Some([1, 2, 3, 4])));
    ws.expect_close(1009, "the header of a 1 MB frame");
}
