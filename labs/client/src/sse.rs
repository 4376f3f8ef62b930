//! An incremental parser of the `text/event-stream` format, as the WHATWG
//! HTML standard's "Interpreting an event stream" (§9.2.6) defines it for
//! `EventSource`.
//!
//! The format is small enough to parse by hand, which is why this crate does:
//! lines end at CRLF, LF or CR; a blank line dispatches the event; a line
//! starting with `:` is a comment; otherwise `field: value` (one leading
//! space of the value dropped) for the fields `event`, `data`, `id` and
//! `retry`, every other field ignored.

// ANCHOR: item
/// What the parser hands back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseItem {
    /// A dispatched event.
    Event(SseEvent),
    /// A `retry:` field: the server's reconnection time, in milliseconds.
    Retry(u64),
    /// A comment line (the server's keep-alive, `: keep-alive`).
    Comment,
}

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The event type: `message` unless an `event:` field named another.
    pub event: String,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
    /// The last event id at dispatch, as `EventSource` defines it: the last
    /// `id:` field seen on this stream, by this event or an earlier one.
    pub id: Option<String>,
}
// ANCHOR_END: item

// ANCHOR: parser
/// The parser's state for one stream (one connection).
///
/// It buffers only an unfinished line and the event being built; the
/// event's `data` grows up to `max_event` bytes, then the stream is refused
/// (a server that never sends a blank line must not eat the client's memory).
#[derive(Debug)]
pub struct SseParser {
    /// The current line, before its end arrives.
    line: Vec<u8>,
    /// The last byte fed was a CR: an LF right after it ends nothing.
    after_cr: bool,
    /// The stream's first bytes have been checked for a byte order mark.
    started: bool,
    data: String,
    has_data: bool,
    event: String,
    /// The last event ID buffer: kept across events, per the standard.
    id: Option<String>,
    max_event: usize,
}
// ANCHOR_END: parser

impl SseParser {
    /// A parser for a new stream, refusing events over `max_event` bytes.
    pub fn new(max_event: usize) -> SseParser {
        SseParser {
            line: Vec::new(),
            after_cr: false,
            started: false,
            data: String::new(),
            has_data: false,
            event: String::new(),
            id: None,
            max_event,
        }
    }

    /// Parses `bytes`, appending what they complete to `out`.
    pub fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<SseItem>) -> Result<(), String> {
        if !self.started && !bytes.is_empty() {
            // A UTF-8 byte order mark may open the stream (split BOMs are
            // not worth the code: servers send their head and first bytes
            // at once).
            self.started = true;
            bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        }
        for &b in bytes {
            match b {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    let line = std::mem::take(&mut self.line);
                    self.on_line(&String::from_utf8_lossy(&line), out);
                    self.line = line;
                    self.line.clear();
                }
                _ => {
                    self.after_cr = false;
                    self.line.push(b);
                }
            }
            if self.line.len() + self.data.len() > self.max_event {
                return Err(format!("an event over {} bytes", self.max_event));
            }
        }
        Ok(())
    }

    // ANCHOR: line
    fn on_line(&mut self, line: &str, out: &mut Vec<SseItem>) {
        if line.is_empty() {
            return self.dispatch(out);
        }
        if line.starts_with(':') {
            return out.push(SseItem::Comment);
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = value.to_owned(),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                if let Ok(ms) = value.parse() {
                    out.push(SseItem::Retry(ms));
                }
            }
            _ => {}
        }
    }

    /// A blank line: the event is complete. No data, no event (but the id
    /// it carried is kept for the next ones).
    fn dispatch(&mut self, out: &mut Vec<SseItem>) {
        let event = std::mem::take(&mut self.event);
        if !std::mem::take(&mut self.has_data) {
            return;
        }
        out.push(SseItem::Event(SseEvent {
            event: if event.is_empty() { "message".to_owned() } else { event },
            data: std::mem::take(&mut self.data),
            id: self.id.clone().filter(|id| !id.is_empty()),
        }));
    }
    // ANCHOR_END: line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(input: &[u8]) -> Vec<SseItem> {
        let mut p = SseParser::new(1 << 20);
        let mut out = Vec::new();
        p.feed(input, &mut out).unwrap();
        out
    }

    fn event(event: &str, data: &str, id: Option<&str>) -> SseItem {
        SseItem::Event(SseEvent { event: event.into(), data: data.into(), id: id.map(Into::into) })
    }

    #[test]
    fn the_contracts_events() {
        let stream = b": keep-alive\n\nid: 7\ndata: hello\n\nevent: missed\ndata: {\"from\":1,\"to\":6}\n\nid: 8\ndata: two\ndata: lines\n\n";
        assert_eq!(
            parse(stream),
            [
                SseItem::Comment,
                event("message", "hello", Some("7")),
                // No id line: the last event id stays 7, as in a browser.
                event("missed", "{\"from\":1,\"to\":6}", Some("7")),
                event("message", "two\nlines", Some("8")),
            ]
        );
    }

    /// The same events whatever the line ends and however the bytes are
    /// split across reads (every split point, one byte at a time too).
    #[test]
    fn line_ends_and_splits() {
        let want = [SseItem::Retry(3000), event("message", "a\nb", Some("1")), event("x", "c", Some("1"))];
        for eol in ["\n", "\r", "\r\n"] {
            let text = ["retry: 3000", "id: 1", "data: a", "data:b", "", "event: x", "data: c", "", ""].join(eol);
            let bytes = text.as_bytes();
            assert_eq!(parse(bytes), want, "{eol:?}");
            for split in 0..bytes.len() {
                let mut p = SseParser::new(1 << 20);
                let mut out = Vec::new();
                p.feed(&bytes[..split], &mut out).unwrap();
                p.feed(&bytes[split..], &mut out).unwrap();
                assert_eq!(out, want, "{eol:?} split at {split}");
            }
            let mut p = SseParser::new(1 << 20);
            let mut out = Vec::new();
            for b in bytes {
                p.feed(std::slice::from_ref(b), &mut out).unwrap();
            }
            assert_eq!(out, want, "{eol:?} byte by byte");
        }
    }

    #[test]
    fn the_standards_corner_cases() {
        // A BOM, a field without a colon, an unknown field, no space after the colon.
        assert_eq!(parse(b"\xEF\xBB\xBFdata\nfoo: bar\ndata:x\n\n"), [event("message", "\nx", None)]);
        // No data: nothing dispatched, but the id is remembered.
        assert_eq!(parse(b"id: 5\n\ndata: y\n\n"), [event("message", "y", Some("5"))]);
        // An id with NUL is ignored; an empty id clears it.
        assert_eq!(
            parse(b"id: 1\ndata: a\n\nid: 2\0\ndata: b\n\nid\ndata: c\n\n")[1..],
            [event("message", "b", Some("1")), event("message", "c", None)]
        );
        // retry: only digits counts.
        assert_eq!(parse(b"retry: 1.5\nretry: x\nretry:\nretry: 20\n"), [SseItem::Retry(20)]);
        // An unfinished event at the end of the bytes is not dispatched yet.
        assert_eq!(parse(b"data: half"), []);
    }

    #[test]
    fn an_endless_event_is_refused() {
        let mut p = SseParser::new(100);
        let mut out = Vec::new();
        assert!(p.feed(&[b'x'; 50], &mut out).is_ok());
        assert!(p.feed(b"\ndata: ", &mut out).is_ok());
        assert!(p.feed(&[b'y'; 200], &mut out).is_err());
    }
}
