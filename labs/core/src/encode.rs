//! Wire encodings: a published message holds its data once, and is encoded
//! for a transport once, when a subscriber of that transport first needs it.

use std::sync::{Arc, OnceLock};

use bytes::{BufMut, Bytes, BytesMut};
use tungstenite::protocol::frame::{
    FrameHeader,
    coding::{Data, OpCode},
};

/// The transports a subscriber can use; each has its own encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Server-Sent Events.
    Sse,
    /// A WebSocket text frame.
    Ws,
    /// A held long poll: it is woken, and reads the retained messages itself.
    LongPoll,
}

// ANCHOR: message
/// One published message: its data, stored once, and each transport's
/// encoding, built the first time a subscriber of that transport needs it.
///
/// A topic retains its last messages (1024 by default), most of which no
/// subscriber may ever read again, and many topics have subscribers of one
/// transport only. So the message keeps the data once (and its topic's epoch,
/// shared with the topic), and an encoding is made on first use — the first
/// WebSocket subscriber it is pushed to, the first poll that returns it —
/// and then kept, and shared: fan-out to ten thousand subscribers clones a
/// `Bytes` handle to the same encoding (a reference-count increment), never
/// the bytes, and never encodes again.
///
/// One encoding is the data itself with a few bytes around it: the SSE
/// event of a one-line message, `id: E-N\ndata: ` + data + `\n\n`. For such
/// a message (most are: JSON has no raw line breaks) that event is built at
/// once and *is* where the data is kept — `data` is a view into it — so it
/// costs no more than the data. A message with line breaks keeps its data
/// alone, and its event (one `data:` line per line) is built on first use.
#[derive(Debug)]
pub struct Message {
    /// The message id, per topic, from 1 (within its topic's epoch).
    pub id: u64,
    /// The epoch the id belongs to (the topic's, shared with it).
    epoch: Arc<str>,
    /// The data as published (UTF-8): the one copy every encoding is built
    /// from — a view into the SSE event when the data is one line.
    data: Bytes,
    /// `id: E-N\ndata: ...\n\n`, one `data:` line per line of the message.
    sse: OnceLock<Bytes>,
    /// A complete unmasked WebSocket text frame carrying
    /// `{"id":N,"epoch":"E","data":"..."}`.
    ws: OnceLock<Bytes>,
    /// The JSON object `{"id":N,"data":"..."}`, an entry of a poll response.
    json: OnceLock<Bytes>,
}

impl Message {
    /// Message `id` of epoch `epoch`, holding `data`; nothing is encoded
    /// yet. The epoch travels with every WebSocket frame and every SSE id
    /// (`E-N`), so that a client resuming later names the id *and* the
    /// sequence it belongs to; a poll answer carries it once, at the top.
    pub fn new(epoch: Arc<str>, id: u64, data: &str) -> Message {
        let sse = OnceLock::new();
        let data = if data.contains(['\r', '\n']) {
            Bytes::copy_from_slice(data.as_bytes())
        } else {
            // One line: the event is the data between a prefix and "\n\n".
            let event = sse_event(&epoch, id, data);
            let start = event.len() - 2 - data.len();
            let view = event.slice(start..start + data.len());
            let _ = sse.set(event);
            view
        };
        Message { id, epoch, data, sse, ws: OnceLock::new(), json: OnceLock::new() }
    }

    /// The data as published.
    pub fn data(&self) -> &str {
        std::str::from_utf8(&self.data).expect("the data was a str")
    }

    /// The SSE event (for data of several lines, built on first use).
    pub fn sse(&self) -> &Bytes {
        self.sse.get_or_init(|| sse_event(&self.epoch, self.id, self.data()))
    }

    /// The WebSocket text frame, built on first use.
    pub fn ws(&self) -> &Bytes {
        self.ws.get_or_init(|| {
            // Written by hand so that the keys keep the contract's order; the
            // frame's JSON is the poll entry with the epoch after the id.
            let frame = format!("{{\"id\":{},\"epoch\":\"{}\",\"data\":{}}}", self.id, self.epoch, self.data_json());
            let mut buf = BytesMut::with_capacity(frame.len() + 10);
            put_ws_header(&mut buf, OpCode::Data(Data::Text), frame.len());
            buf.put_slice(frame.as_bytes());
            exact(buf.into())
        })
    }

    /// The poll entry, built on first use.
    pub fn json(&self) -> &Bytes {
        self.json.get_or_init(|| exact(format!("{{\"id\":{},\"data\":{}}}", self.id, self.data_json()).into_bytes()))
    }

    /// The encoding for one transport (built now if it is the first use).
    pub fn bytes_for(&self, transport: Transport) -> &Bytes {
        match transport {
            Transport::Sse => self.sse(),
            Transport::Ws | Transport::LongPoll => self.ws(),
        }
    }

    fn data_json(&self) -> String {
        serde_json::to_string(self.data()).expect("a str always serializes")
    }
}

/// The SSE event of message `id` of `epoch`, exactly as long as it is.
fn sse_event(epoch: &str, id: u64, data: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(data.len() + epoch.len() + 40);
    put_sse_event(&mut buf, Some((epoch, id)), None, data);
    exact(buf.into())
}

/// The buffer's bytes without its spare capacity: an encoding lives as long
/// as its message is retained, so it should not keep room it will never use.
fn exact(bytes: Vec<u8>) -> Bytes {
    Bytes::from(bytes.into_boxed_slice())
}
// ANCHOR_END: message

// ANCHOR: sse_event
/// Writes one SSE event. The SSE format ends a line at `\n`, `\r` or `\r\n`,
/// so each of them starts a new `data:` line; the reader joins the lines with
/// `\n` (a message's `\r\n` line ends therefore arrive as `\n`).
fn put_sse_event(buf: &mut BytesMut, id: Option<(&str, u64)>, event: Option<&str>, data: &str) {
    if let Some(event) = event {
        buf.put_slice(b"event: ");
        buf.put_slice(event.as_bytes());
        buf.put_u8(b'\n');
    }
    if let Some((epoch, id)) = id {
        buf.put_slice(format!("id: {epoch}-{id}\n").as_bytes());
    }
    let mut rest = data;
    loop {
        let end = rest.find(['\r', '\n']).unwrap_or(rest.len());
        buf.put_slice(b"data: ");
        buf.put_slice(&rest.as_bytes()[..end]);
        buf.put_u8(b'\n');
        if end == rest.len() {
            break;
        }
        let skip = if rest[end..].starts_with("\r\n") { 2 } else { 1 };
        rest = &rest[end + skip..];
    }
    buf.put_u8(b'\n');
}
// ANCHOR_END: sse_event

fn put_ws_header(buf: &mut BytesMut, opcode: OpCode, len: usize) {
    let header = FrameHeader { opcode, ..FrameHeader::default() };
    let mut head = [0u8; 14];
    let n = header.len(len as u64);
    header
        .format(len as u64, &mut &mut head[..])
        .expect("a frame header fits in 14 bytes");
    buf.put_slice(&head[..n]);
}

/// A complete unmasked (server-to-client) WebSocket frame.
pub fn ws_frame(opcode: OpCode, payload: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(payload.len() + 10);
    put_ws_header(&mut buf, opcode, payload.len());
    buf.put_slice(payload);
    buf.freeze()
}

/// A close frame with a status code and a short reason.
pub fn ws_close(code: u16, reason: &str) -> Bytes {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    ws_frame(OpCode::Control(tungstenite::protocol::frame::coding::Control::Close), &payload)
}

/// A text frame `{"error":"..."}` telling a `/ws` client what was wrong with
/// what it sent; the connection stays open.
pub fn ws_error(reason: &str) -> Bytes {
    let text = serde_json::json!({ "error": reason }).to_string();
    ws_frame(OpCode::Data(Data::Text), text.as_bytes())
}

// ANCHOR: missed
/// The "you missed messages" signal: ids `from..=to` are gone for this client,
/// either because they fell out of the topic's retention before it asked, or
/// because the drop-oldest policy discarded them from its outbox.
///
/// * SSE: an event named `missed` (no `id:` line, so `Last-Event-ID` is kept):
///   `event: missed` / `data: {"from":F,"to":T}`.
/// * WebSocket: a text frame `{"missed":{"from":F,"to":T}}`.
/// * Poll: a `"missed":{"from":F,"to":T}` member of the response object.
pub fn missed(transport: Transport, from: u64, to: u64) -> Bytes {
    let range = format!("{{\"from\":{from},\"to\":{to}}}");
    match transport {
        Transport::Sse => {
            let mut buf = BytesMut::new();
            put_sse_event(&mut buf, None, Some("missed"), &range);
            buf.freeze()
        }
        Transport::Ws | Transport::LongPoll => {
            ws_frame(OpCode::Data(Data::Text), format!("{{\"missed\":{range}}}").as_bytes())
        }
    }
}
// ANCHOR_END: missed

// ANCHOR: reset
/// The "reset" signal: the client resumed from an id of another epoch — a
/// sequence this server (or its broker) can no longer continue, such as the
/// one before a restart. Its id means nothing here, so what follows is the
/// current epoch `epoch` from its first retained message.
///
/// * SSE: `event: reset` / `id: E-0` / `data: {"epoch":"E"}`. The `id:` line
///   moves the browser's `Last-Event-ID` into the new epoch (id 0: before its
///   first message), so a reconnect right after it resumes there instead of
///   being reset again.
/// * WebSocket: a text frame `{"reset":{"epoch":"E"}}`.
/// * Poll: a `"reset":{"epoch":"E"}` member of the response object.
pub fn reset(transport: Transport, epoch: &str) -> Bytes {
    let body = format!("{{\"epoch\":\"{epoch}\"}}");
    match transport {
        Transport::Sse => {
            let mut buf = BytesMut::new();
            put_sse_event(&mut buf, Some((epoch, 0)), Some("reset"), &body);
            buf.freeze()
        }
        Transport::Ws | Transport::LongPoll => {
            ws_frame(OpCode::Data(Data::Text), format!("{{\"reset\":{body}}}").as_bytes())
        }
    }
}
// ANCHOR_END: reset

/// The SSE keep-alive comment.
pub const SSE_KEEPALIVE: &[u8] = b": keep-alive\n\n";

// ANCHOR: poll_body
/// A poll response body: `{"epoch":"E","messages":[...],"last_id":L}`, plus
/// `"reset"` when the client's cursor was from another epoch, and `"missed"`
/// when it asked for ids older than the topic retains.
pub fn poll_body(epoch: &str, messages: &[Arc<Message>], last_id: u64, missed: Option<(u64, u64)>, reset: bool) -> Vec<u8> {
    let mut body = Vec::with_capacity(64 + messages.iter().map(|m| m.json().len() + 1).sum::<usize>());
    body.extend_from_slice(format!("{{\"epoch\":\"{epoch}\",\"messages\":[").as_bytes());
    for (i, m) in messages.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(m.json());
    }
    body.extend_from_slice(format!("],\"last_id\":{last_id}").as_bytes());
    if reset {
        body.extend_from_slice(format!(",\"reset\":{{\"epoch\":\"{epoch}\"}}").as_bytes());
    }
    if let Some((from, to)) = missed {
        body.extend_from_slice(format!(",\"missed\":{{\"from\":{from},\"to\":{to}}}").as_bytes());
    }
    body.push(b'}');
    body
}
// ANCHOR_END: poll_body

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_splits_lines() {
        let m = Message::new("E".into(), 7, "one\ntwo\r\nthree\rfour");
        assert_eq!(&m.sse()[..], b"id: E-7\ndata: one\ndata: two\ndata: three\ndata: four\n\n");
        let m = Message::new("E".into(), 1, "");
        assert_eq!(&m.sse()[..], b"id: E-1\ndata: \n\n");
        let m = Message::new("E".into(), 2, "end\n");
        assert_eq!(&m.sse()[..], b"id: E-2\ndata: end\ndata: \n\n");
    }

    #[test]
    fn ws_and_json_carry_id_epoch_and_data() {
        let m = Message::new("Ab9".into(), 3, "hi \"you\"");
        assert_eq!(&m.json()[..], br#"{"id":3,"data":"hi \"you\""}"#);
        let v: serde_json::Value = serde_json::from_slice(m.json()).unwrap();
        assert_eq!(v["id"], 3);
        assert_eq!(v["data"], "hi \"you\"");
        // Text frame, FIN set, unmasked, 7-bit length; the epoch beside the id.
        assert_eq!(m.ws()[0], 0x81);
        let frame = br#"{"id":3,"epoch":"Ab9","data":"hi \"you\""}"#;
        assert_eq!(m.ws()[1] as usize, frame.len());
        assert_eq!(&m.ws()[2..], &frame[..]);
    }

    #[test]
    fn data_is_held_once_and_each_encoding_built_once_on_first_use() {
        // Several lines: the data alone, nothing encoded up front.
        let m = Message::new("E".into(), 1, "x\ny");
        assert_eq!(m.data(), "x\ny");
        assert!(m.sse.get().is_none() && m.ws.get().is_none() && m.json.get().is_none(), "nothing encoded up front");
        assert_eq!(&m.sse()[..], b"id: E-1\ndata: x\ndata: y\n\n");
        // One line: the data is a view into its SSE event, the one copy.
        let m = Message::new("E".into(), 1, "x");
        assert_eq!(m.data(), "x");
        let event = m.sse.get().expect("a one-line message's event holds its data");
        assert!(event.as_ptr_range().contains(&m.data.as_ptr()));
        assert!(m.ws.get().is_none() && m.json.get().is_none(), "no other encoding up front");
        // A WebSocket subscriber builds the frame; the others stay unbuilt.
        let first = m.bytes_for(Transport::Ws).clone();
        assert!(m.ws.get().is_some() && m.json.get().is_none());
        // Every later subscriber shares the same bytes: no second encoding.
        let second = m.bytes_for(Transport::Ws).clone();
        assert_eq!(first.as_ptr(), second.as_ptr());
        assert_eq!(m.sse().as_ptr(), m.bytes_for(Transport::Sse).as_ptr());
        assert_eq!(m.json().as_ptr(), m.json().as_ptr());
        assert_eq!(&m.sse()[..], b"id: E-1\ndata: x\n\n");
    }

    #[test]
    fn long_frames_use_extended_lengths() {
        let f = ws_frame(OpCode::Data(Data::Binary), &[0u8; 300]);
        assert_eq!(&f[..4], &[0x82, 126, 1, 44]);
        let f = ws_frame(OpCode::Data(Data::Binary), &vec![0u8; 70000]);
        assert_eq!(f[1], 127);
        assert_eq!(f.len(), 70000 + 10);
    }

    #[test]
    fn poll_body_is_json() {
        let msgs = [Arc::new(Message::new("E".into(), 4, "a")), Arc::new(Message::new("E".into(), 5, "b\nc"))];
        let body = poll_body("E", &msgs, 5, Some((1, 3)), true);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["epoch"], "E");
        assert_eq!(v["reset"]["epoch"], "E");
        assert_eq!(v["messages"][1]["data"], "b\nc");
        assert_eq!(v["last_id"], 5);
        assert_eq!(v["missed"]["from"], 1);
        assert_eq!(v["missed"]["to"], 3);
    }

    #[test]
    fn missed_markers() {
        assert_eq!(&missed(Transport::Sse, 2, 9)[..], b"event: missed\ndata: {\"from\":2,\"to\":9}\n\n");
        let ws = missed(Transport::Ws, 2, 9);
        assert_eq!(&ws[2..], br#"{"missed":{"from":2,"to":9}}"#);
    }

    #[test]
    fn reset_markers() {
        assert_eq!(&reset(Transport::Sse, "Q7")[..], b"event: reset\nid: Q7-0\ndata: {\"epoch\":\"Q7\"}\n\n");
        assert_eq!(&reset(Transport::Ws, "Q7")[2..], br#"{"reset":{"epoch":"Q7"}}"#);
    }
}
