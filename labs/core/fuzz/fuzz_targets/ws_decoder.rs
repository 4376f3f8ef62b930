//! The WebSocket frame decoder and message reassembly: `ws::WsDecoder::feed`
//! on a stream cut at arbitrary places.
//!
//! The stream is either raw bytes, or frames described by the input (any
//! first byte, masked or not, any length form, any payload) and built here.
//! An input starting with `P` is plain (the seeds are): a 2-byte big-endian
//! message limit, one chunk size (0: no cutting), then the raw stream.
//!
//! Checked, besides "no panic":
//! * cutting the stream anywhere changes nothing: fed whole, in the input's
//!   chunks, or byte by byte (short streams), the decoder emits the same
//!   events and fails with the same error;
//! * what it emits is within the rules: messages within the size limit,
//!   control payloads of at most 125 bytes, nothing after a close or an
//!   error, and nothing at all once it has failed;
//! * for described frames, the events and the error are exactly those of a
//!   model written here from RFC 6455 (the decoder's rules, checked one
//!   frame at a time, UTF-8 checked on the whole message so far).
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use rtlab_core::ws::{WsDecoder, WsError, WsEvent};
use rtlab_core_fuzz::{LenForm, chunks, client_frame};

#[derive(Debug, Arbitrary)]
struct Input {
    /// The decoder's message limit.
    max_message: u16,
    /// Chunk sizes for the second feeding.
    cuts: Vec<u16>,
    stream: Stream,
}

#[derive(Debug, Arbitrary)]
enum Stream {
    Raw(Vec<u8>),
    Frames(Vec<Frame>),
}

#[derive(Debug, Arbitrary)]
struct Frame {
    fin: bool,
    /// RSV1-3 (only the low 3 bits count); mostly 0.
    rsv: u8,
    opcode: u8,
    mask: Option<[u8; 4]>,
    form: LenForm,
    payload: Payload,
}

#[derive(Debug, Arbitrary)]
enum Payload {
    Bytes(Vec<u8>),
    Text(String),
    /// A close payload: code and reason.
    Close(u16, String),
}

impl Frame {
    fn rsv_bits(&self) -> u8 {
        // Only one input in eight sets an RSV bit: the rest reach the rules after it.
        if self.rsv & 0xE0 == 0xE0 { self.rsv & 0x07 } else { 0 }
    }

    fn payload(&self) -> Vec<u8> {
        match &self.payload {
            Payload::Bytes(b) => b.clone(),
            Payload::Text(s) => s.as_bytes().to_vec(),
            Payload::Close(code, reason) => {
                let mut p = code.to_be_bytes().to_vec();
                p.extend_from_slice(reason.as_bytes());
                p
            }
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let first = (u8::from(self.fin) << 7) | (self.rsv_bits() << 4) | (self.opcode & 0x0F);
        client_frame(first, &self.payload(), self.mask, self.form)
    }
}

/// Feeds `chunks` one after the other; returns the events and the first error.
fn feed_all<'a>(decoder: &mut WsDecoder, chunks: impl IntoIterator<Item = &'a [u8]>) -> (Vec<WsEvent>, Option<WsError>) {
    let mut events = Vec::new();
    let mut error = None;
    for chunk in chunks {
        let before = events.len();
        let result = decoder.feed(chunk, &mut |e| events.push(e));
        if error.is_some() {
            assert_eq!(result, Ok(()), "a failed decoder fails again");
            assert_eq!(events.len(), before, "a failed decoder emitted {:?}", &events[before..]);
        }
        if let Err(e) = result {
            error = Some(e);
        }
    }
    (events, error)
}

fuzz_target!(|data: &[u8]| {
    let input = match data {
        [b'P', m0, m1, cut, stream @ ..] => Input {
            max_message: u16::from_be_bytes([*m0, *m1]),
            cuts: if *cut == 0 { Vec::new() } else { vec![u16::from(*cut); stream.len()] },
            stream: Stream::Raw(stream.to_vec()),
        },
        _ => match Input::arbitrary_take_rest(Unstructured::new(data)) {
            Ok(input) => input,
            Err(_) => return,
        },
    };
    run(&input);
});

fn run(input: &Input) {
    let max = usize::from(input.max_message);
    let (stream, frames) = match &input.stream {
        Stream::Raw(bytes) => (bytes.clone(), None),
        Stream::Frames(frames) => (frames.iter().flat_map(Frame::bytes).collect(), Some(frames)),
    };

    let whole = feed_all(&mut WsDecoder::new(max), [stream.as_slice()]);
    let cut = feed_all(&mut WsDecoder::new(max), chunks(&stream, &input.cuts));
    assert_eq!(whole, cut, "cutting the stream changed the result");
    if stream.len() <= 512 {
        let bytewise = feed_all(&mut WsDecoder::new(max), stream.chunks(1));
        assert_eq!(whole, bytewise, "feeding byte by byte changed the result");
    }

    let (events, error) = &whole;
    for (i, event) in events.iter().enumerate() {
        match event {
            WsEvent::Text(t) => assert!(t.len() <= max, "text of {} bytes, limit {max}", t.len()),
            WsEvent::Binary(b) => assert!(b.len() <= max, "binary of {} bytes, limit {max}", b.len()),
            WsEvent::Ping(p) | WsEvent::Pong(p) => assert!(p.len() <= 125),
            WsEvent::Close(_) => {
                assert_eq!(i + 1, events.len(), "events after a close");
                assert!(error.is_none(), "an error after a close");
            }
        }
    }
    if let Some(e) = error {
        assert!([1002, 1007, 1009].contains(&e.code), "close code {}", e.code);
    }

    if let Some(frames) = frames {
        let (events, error) = model(frames, max);
        let code = |e: &Option<WsError>| e.map(|e| e.code);
        assert_eq!(whole.0, events, "the decoder and the model disagree on the events");
        assert_eq!(code(&whole.1), code(&error), "the decoder and the model disagree on the error");
    }
}

/// What RFC 6455 (and the decoder's documented limits) say the frames mean.
fn model(frames: &[Frame], max: usize) -> (Vec<WsEvent>, Option<WsError>) {
    let mut events = Vec::new();
    // The message being reassembled: text or not, and its bytes.
    let mut partial: Option<(bool, Vec<u8>)> = None;
    let fail = |events: Vec<WsEvent>, code: u16| (events, Some(WsError { code, reason: "" }));
    for f in frames {
        let opcode = f.opcode & 0x0F;
        let payload = f.payload();
        let control = opcode >= 8;
        if matches!(opcode, 3..=7 | 11..=15) || f.rsv_bits() != 0 || f.mask.is_none() {
            return fail(events, 1002);
        }
        if control && (payload.len() > 125 || !f.fin) {
            return fail(events, 1002);
        }
        let already = partial.as_ref().map_or(0, |(_, d)| d.len());
        if !control && already + payload.len() > max {
            return fail(events, 1009);
        }
        match opcode {
            0x9 => events.push(WsEvent::Ping(payload)),
            0xA => events.push(WsEvent::Pong(payload)),
            0x8 => {
                let close = match payload.len() {
                    0 => None,
                    1 => return fail(events, 1002),
                    _ => {
                        let code = u16::from_be_bytes([payload[0], payload[1]]);
                        // RFC 6455 §7.4.1 and the IANA registry: 1000-1003 and
                        // 1007-1014 are defined and may be sent; 3000-4999 are
                        // for libraries and applications; nothing else. But the
                        // decoder refuses 1014 (registered later as "Bad
                        // Gateway"; tungstenite's `CloseCode` does not know it),
                        // so the model does too (README.md, "Findings").
                        if !matches!(code, 1000..=1003 | 1007..=1013 | 3000..=4999) {
                            return fail(events, 1002);
                        }
                        match String::from_utf8(payload[2..].to_vec()) {
                            Ok(reason) => Some((code, reason)),
                            Err(_) => return fail(events, 1007),
                        }
                    }
                };
                events.push(WsEvent::Close(close));
                return (events, None);
            }
            _ => {
                let (text, mut data) = match (opcode, partial.take()) {
                    (0, Some(p)) => p,
                    (0, None) | (1 | 2, Some(_)) => return fail(events, 1002),
                    (op, None) => (op == 1, Vec::new()),
                    _ => unreachable!(),
                };
                data.extend_from_slice(&payload);
                if text {
                    // Fail fast: an invalid sequence fails at once, a code
                    // point cut at the end only if the message ends here.
                    if let Err(e) = std::str::from_utf8(&data)
                        && (e.error_len().is_some() || f.fin)
                    {
                        return fail(events, 1007);
                    }
                }
                if f.fin {
                    events.push(if text {
                        WsEvent::Text(String::from_utf8(data).unwrap())
                    } else {
                        WsEvent::Binary(data)
                    });
                } else {
                    partial = Some((text, data));
                }
            }
        }
    }
    (events, None)
}
