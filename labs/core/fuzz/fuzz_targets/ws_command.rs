//! The `/ws` JSON command parser, through a `Connection` upgraded to `/ws`:
//! masked text frames carrying arbitrary text (raw bytes, any string, or a
//! publish command the input shapes), cut into fragments at arbitrary
//! places, with a ping between fragments.
//!
//! Checked, besides "no panic", against a model of the contract written
//! here, after every command:
//! * exactly the frames the contract prescribes, in order: the pong; then
//!   the message published back to the connection (it is subscribed to its
//!   own topic) with the next id and the same data, or a `{"error":...}`
//!   text frame for a command that is not a valid publish (the connection
//!   stays open), or a close frame with 1007 (invalid UTF-8) or 1009 (too
//!   big) after which nothing more is written and the input is ignored;
//! * the topic's last id moves by one for a valid publish, by none otherwise;
//! * a message larger than the outbox budget once encoded (64 KiB of control
//!   characters) still comes back — it fits an empty outbox — unless the
//!   pong of a ping between its fragments is queued before it: then the
//!   connection is cut off with 1008.
//!
//! An input starting with `P` is plain (the seeds are): one byte of message
//! limit (0: the default), then commands separated by `0xFF` bytes (never
//! in UTF-8), each `[p]N<text>`: `p` sends a ping after the first fragment,
//! the digit `N` cuts the text into that many fragments of equal length.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use std::time::Duration;

use rtlab_core::{Config, Message, Status};
use rtlab_core_fuzz::{CLOSE, LenForm, PONG, Sim, TEXT, WS_ACCEPT, client_frame, read_response, server_frames, upgrade_request};
use serde_json::{Value, json};

const TOPIC: &str = "fuzz";

#[derive(Debug, Arbitrary)]
struct Input {
    /// A small message limit (`None`: the default, 64 KiB).
    max_message: Option<u8>,
    commands: Vec<Command>,
}

#[derive(Debug, Arbitrary)]
struct Command {
    text: Text,
    /// Where the message is cut into fragments (offsets modulo its length).
    cuts: Vec<u16>,
    mask: [u8; 4],
    /// A ping sent after the first fragment.
    ping: Option<Vec<u8>>,
}

#[derive(Debug, Arbitrary)]
enum Text {
    Raw(Vec<u8>),
    Str(String),
    /// `{"op":..,"data":..}` and maybe one more member, in a random order.
    Publish { op: Option<String>, data: Data, extra: Option<(String, String)>, data_first: bool },
}

#[derive(Debug, Arbitrary)]
enum Data {
    Str(String),
    Missing,
    Null,
    Number(i64),
    Array(Vec<String>),
    /// A long string (the byte repeated), to reach the size limits.
    Long(u8, u16),
}

impl Text {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Text::Raw(b) => b.clone(),
            Text::Str(s) => s.as_bytes().to_vec(),
            Text::Publish { op, data, extra, data_first } => {
                let op = json!(op.as_deref().unwrap_or("publish"));
                let data = match data {
                    Data::Str(s) => Some(json!(s)),
                    Data::Missing => None,
                    Data::Null => Some(Value::Null),
                    Data::Number(n) => Some(json!(n)),
                    Data::Array(a) => Some(json!(a)),
                    Data::Long(b, n) => Some(json!(char::from(*b & 0x7F).to_string().repeat(usize::from(*n)))),
                };
                let mut members = vec![format!("\"op\":{op}")];
                if let Some(d) = data {
                    let d = format!("\"data\":{d}");
                    if *data_first { members.insert(0, d) } else { members.push(d) }
                }
                if let Some((k, v)) = extra {
                    members.push(format!("{}:{}", json!(k), json!(v)));
                }
                format!("{{{}}}", members.join(",")).into_bytes()
            }
        }
    }
}

/// What the server must answer to one command.
#[derive(Debug, PartialEq)]
enum Answer {
    Published(String),
    /// Published, but this subscriber is cut off (closed with 1008).
    CutOff,
    Error,
    Close(u16),
}

fuzz_target!(|data: &[u8]| {
    let input = match data {
        [b'P', max, rest @ ..] => Input {
            max_message: (*max != 0).then_some(*max),
            commands: rest.split(|&b| b == 0xFF).map(plain_command).collect(),
        },
        _ => match Input::arbitrary_take_rest(Unstructured::new(data)) {
            Ok(input) => input,
            Err(_) => return,
        },
    };
    run(&input);
});

fn plain_command(mut s: &[u8]) -> Command {
    let ping = s.first() == Some(&b'p');
    if ping {
        s = &s[1..];
    }
    let parts = match s.first() {
        Some(d @ b'1'..=b'9') => {
            s = &s[1..];
            usize::from(d - b'0')
        }
        _ => 1,
    };
    let cuts = (1..parts).map(|i| (s.len() * i / parts) as u16).collect();
    Command { text: Text::Raw(s.to_vec()), cuts, mask: [0x37, 0xfa, 0x21, 0x3d], ping: ping.then(|| b"ping".to_vec()) }
}

fn run(input: &Input) {
    let mut config = Config::default();
    if let Some(m) = input.max_message {
        config.max_message = usize::from(m);
    }
    let max = config.max_message;
    let budget = config.outbox_budget;
    // The decoder's limit on /ws (JSON escaping can make a message six times longer).
    let frame_limit = max * 6 + 1024;
    let mut sim = Sim::new(config);
    sim.send(upgrade_request(&format!("/ws?topic={TOPIC}")).as_bytes());
    let out = sim.output();
    let (r, used) = read_response(&out);
    assert_eq!((r.status, r.header("sec-websocket-accept"), used), (101, Some(WS_ACCEPT), out.len()));

    for cmd in input.commands.iter().take(64) {
        let text = cmd.text.bytes();
        // Fragments: cut at the command's offsets (sorted, deduplicated).
        let mut cuts: Vec<usize> = cmd.cuts.iter().take(4).map(|&c| usize::from(c) % (text.len() + 1)).collect();
        cuts.sort_unstable();
        cuts.dedup();
        let mut bounds = vec![0];
        bounds.extend(cuts.into_iter().filter(|&c| c > 0 && c < text.len()));
        bounds.push(text.len());
        let fragments: Vec<&[u8]> = bounds.windows(2).map(|w| &text[w[0]..w[1]]).collect();
        let ping = cmd.ping.as_ref().map(|p| &p[..p.len().min(125)]);

        let mut bytes = Vec::new();
        for (i, fragment) in fragments.iter().enumerate() {
            let fin = i + 1 == fragments.len();
            let opcode = if i == 0 { TEXT } else { 0 };
            bytes.extend(client_frame((u8::from(fin) << 7) | opcode, fragment, Some(cmd.mask), LenForm::Shortest));
            if i == 0 && let Some(p) = ping {
                bytes.extend(client_frame(0x80 | 0x9, p, Some(cmd.mask), LenForm::Shortest));
            }
        }

        // The model: fragment by fragment, the size limit (judged on each
        // header), then UTF-8 (fail fast); the pong after the first one.
        let mut expected_pong = None;
        let mut answer = None;
        for (i, _) in fragments.iter().enumerate() {
            let so_far = &text[..bounds[i + 1]];
            let fin = i + 1 == fragments.len();
            if so_far.len() > frame_limit {
                answer = Some(Answer::Close(1009));
                break;
            }
            if let Err(e) = std::str::from_utf8(so_far)
                && (e.error_len().is_some() || fin)
            {
                answer = Some(Answer::Close(1007));
                break;
            }
            if i == 0 {
                expected_pong = ping;
            }
        }
        let last_id = sim.server.hub.last_id(TOPIC);
        let answer = answer.unwrap_or_else(|| {
            let text = std::str::from_utf8(&text).unwrap();
            let value: Option<Value> = serde_json::from_str(text).ok();
            match value.as_ref().map(|v| (v.get("op"), v.get("data"))) {
                Some((Some(Value::String(op)), Some(Value::String(data)))) if op == "publish" && data.len() <= max => {
                    // The outbox budget bounds the backlog: a message whose
                    // frame alone exceeds it still fits an empty outbox, but
                    // not one that holds the pong of a ping sent between its
                    // fragments — then it cuts its own publisher off
                    // (README.md, "Findings").
                    let pong_first = ping.is_some() && fragments.len() > 1;
                    if Message::new(rtlab_core_fuzz::EPOCH.into(), last_id + 1, data).ws().len() > budget && pong_first {
                        Answer::CutOff
                    } else {
                        Answer::Published(data.clone())
                    }
                }
                _ => Answer::Error,
            }
        });

        if answer == Answer::CutOff && fragments.len() > 1 {
            // Cut off when the message completes: everything queued is
            // discarded, the pong (already queued) too.
            expected_pong = None;
        }

        sim.send(&bytes);
        let mut frames = server_frames(&sim.output());
        if let Some(p) = expected_pong {
            // The ping follows the first fragment: its pong comes before the
            // answer, unless that fragment was the whole message: then it
            // comes last.
            assert!(!frames.is_empty(), "no pong ({} fragments, answer {})", fragments.len(), short(&answer));
            let at = if fragments.len() == 1 { frames.len() - 1 } else { 0 };
            let f = frames.remove(at);
            assert_eq!((f.opcode, f.payload.as_slice()), (PONG, p));
        }
        if answer == Answer::CutOff {
            assert_eq!(sim.server.hub.last_id(TOPIC), last_id + 1);
            assert!(frames.is_empty(), "a cut-off subscriber got {} frames", frames.len());
            sim.advance(Duration::from_millis(1));
            let frames = server_frames(&sim.output());
            assert_eq!(frames.len(), 1);
            assert_eq!((frames[0].opcode, &frames[0].payload[..2]), (CLOSE, &1008u16.to_be_bytes()[..]));
            assert_eq!(sim.status(), Status::Closing);
            return;
        }
        let mut frames = frames.iter();
        let f = frames.next().unwrap_or_else(|| panic!("no answer; expected {}", short(&answer)));
        match &answer {
            Answer::Published(data) => {
                assert_eq!(sim.server.hub.last_id(TOPIC), last_id + 1);
                assert_eq!(f.opcode, TEXT);
                let got: Value = serde_json::from_slice(&f.payload).expect("JSON message");
                assert!(got == json!({ "id": last_id + 1, "epoch": rtlab_core_fuzz::EPOCH, "data": data }), "the message came back changed");
            }
            Answer::Error => {
                assert_eq!(sim.server.hub.last_id(TOPIC), last_id);
                assert_eq!(f.opcode, TEXT);
                let got: Value = serde_json::from_slice(&f.payload).expect("JSON error");
                assert!(got.get("error").is_some_and(Value::is_string), "{got}");
            }
            Answer::CutOff => unreachable!(),
            Answer::Close(code) => {
                assert_eq!(sim.server.hub.last_id(TOPIC), last_id);
                assert_eq!(f.opcode, CLOSE);
                assert_eq!(u16::from_be_bytes([f.payload[0], f.payload[1]]), *code);
            }
        }
        assert_eq!(frames.next(), None, "more frames than the contract says");
        if let Answer::Close(_) = answer {
            assert_eq!(sim.status(), Status::Closing);
            sim.send(&bytes);
            assert!(sim.output().is_empty(), "output after the close frame");
            return;
        }
        assert_eq!(sim.status(), Status::Open);
    }
}

/// An answer for a panic message, without megabytes of data.
fn short(answer: &Answer) -> String {
    let s = format!("{answer:?}");
    if s.len() > 200 { format!("{}... ({} bytes)", &s[..s.floor_char_boundary(200)], s.len()) } else { s }
}
