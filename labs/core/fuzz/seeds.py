#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets: corpus/<target>/<name>.

The seeds are hand-made: valid requests of every route, WebSocket frames of
every opcode, fragmented messages, resume cursors, whole-connection scripts,
and the edge cases around each. The arbitrary-driven targets read a seed in
their plain form (a first byte `P`, documented at the top of each target).
Run it again after changing a seed here: python3 seeds.py
"""
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
MASK = bytes([0x37, 0xFA, 0x21, 0x3D])


def upgrade(target):
    return (f"GET {target} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n\r\n").encode()


def frame(first, payload, masked=True, form=None):
    """A client frame; form forces the 16- or 64-bit length."""
    n = len(payload)
    m = 0x80 if masked else 0
    if form is None:
        form = 7 if n < 126 else 16 if n <= 0xFFFF else 64
    head = bytes([first])
    if form == 7:
        head += bytes([m | n])
    elif form == 16:
        head += bytes([m | 126]) + struct.pack(">H", n)
    else:
        head += bytes([m | 127]) + struct.pack(">Q", n)
    if not masked:
        return head + payload
    return head + MASK + bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))


def close(code, reason=b""):
    return frame(0x88, struct.pack(">H", code) + reason)


def write(target, seeds):
    d = os.path.join(HERE, "corpus", target)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    for name, data in seeds.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


def http_request():
    r = lambda s: s.encode()
    return {
        "publish": r("POST /publish?topic=demo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"),
        "publish-expect": r("POST /publish?topic=a.b_c-D HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"),
        "publish-chunked": r("POST /publish?topic=t HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        "publish-too-big": r("POST /publish?topic=t HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n"),
        "publish-two-lengths": r("POST /publish?topic=t HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"),
        "publish-get": r("GET /publish?topic=t HTTP/1.1\r\n\r\n"),
        "poll": r("GET /poll?topic=demo&after=7&wait=30 HTTP/1.1\r\nConnection: keep-alive\r\n\r\n"),
        "poll-bad-wait": r("GET /poll?topic=demo&wait=61 HTTP/1.1\r\n\r\n"),
        "poll-no-topic": r("GET /poll?after=1 HTTP/1.1\r\n\r\n"),
        "poll-long-topic": r("GET /poll?topic=" + "x" * 65 + " HTTP/1.1\r\n\r\n"),
        "sse-last-event-id": r("GET /sse?topic=demo HTTP/1.1\r\nAccept: text/event-stream\r\nLast-Event-ID: 42\r\n\r\n"),
        "sse-query-id": r("GET /sse?topic=demo&lastEventId=0042 HTTP/1.1\r\n\r\n"),
        "ws": upgrade("/ws?topic=demo&after=3"),
        "ws-version-8": upgrade("/ws?topic=demo").replace(b"Version: 13", b"Version: 8"),
        "ws-short-key": upgrade("/echo").replace(KEY.encode(), b"abc"),
        "echo": upgrade("/echo"),
        "index": r("GET / HTTP/1.1\r\n\r\n"),
        "index-html": r("GET /index.html HTTP/1.0\r\n\r\n"),
        "stats-close": r("GET /stats HTTP/1.1\r\nConnection: close\r\n\r\n"),
        "stats-lf-only": r("GET /stats HTTP/1.1\nHost: x\n\n"),
        "not-found": r("GET /nope?topic=a HTTP/1.1\r\n\r\n"),
        "pipelined": r("GET /stats HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n"),
        "partial": r("GET /sse?topic=demo HTTP/1.1\r\nHost: x\r\n"),
        "garbage": r("GARBAGE\r\n\r\n"),
        "empty-lines-first": r("\r\n\r\nGET /stats HTTP/1.1\r\n\r\n"),
    }


def ws_decoder():
    plain = lambda limit, cut, stream: b"P" + struct.pack(">H", limit) + bytes([cut]) + stream
    e = "é".encode()
    return {
        "text": plain(1024, 0, frame(0x81, b"hello")),
        "every-opcode": plain(1024, 3, frame(0x81, b"hi") + frame(0x82, b"\x00\xff") + frame(0x89, b"p")
                              + frame(0x8A, b"") + close(1000, b"bye")),
        "fragmented-ping-between": plain(1024, 1, frame(0x01, "héllo ".encode()) + frame(0x89, b"x")
                                         + frame(0x00, b"w") + frame(0x80, "örld".encode())),
        "utf8-split": plain(1024, 2, frame(0x01, b"a" + e[:1]) + frame(0x80, e[1:])),
        "binary-fragmented": plain(64, 5, frame(0x02, b"\x01\x02") + frame(0x00, b"\x03") + frame(0x80, b"\x04")),
        "len16": plain(4096, 7, frame(0x82, bytes(range(200)))),
        "len64-non-minimal": plain(4096, 0, frame(0x81, b"abc", form=64)),
        "len16-non-minimal": plain(4096, 0, frame(0x81, b"abc", form=16)),
        "close-empty": plain(1024, 0, frame(0x88, b"") + frame(0x81, b"after close")),
        "close-4999": plain(1024, 0, close(4999, "ok".encode())),
        "close-1005": plain(1024, 0, close(1005)),
        "close-1014": plain(1024, 0, close(1014)),
        "close-one-byte": plain(1024, 0, frame(0x88, b"\x03")),
        "close-bad-utf8": plain(1024, 0, close(1000, b"\xff")),
        "unmasked": plain(1024, 0, frame(0x81, b"a", masked=False)),
        "rsv1": plain(1024, 0, frame(0xC1, b"a")),
        "reserved-opcode": plain(1024, 0, frame(0x83, b"") + frame(0x8B, b"")),
        "ping-fragmented": plain(1024, 0, frame(0x09, b"")),
        "ping-126": plain(1024, 0, frame(0x89, bytes(126))),
        "continuation-alone": plain(1024, 0, frame(0x80, b"a")),
        "text-inside-text": plain(1024, 0, frame(0x01, b"a") + frame(0x81, b"b")),
        "too-big": plain(10, 3, frame(0x82, bytes(11))),
        "too-big-fragments": plain(10, 0, frame(0x02, bytes(6)) + frame(0x80, bytes(6))),
        "invalid-utf8": plain(1024, 0, frame(0x81, b"\xce\xba\xff")),
        "truncated-code-point": plain(1024, 0, frame(0x81, b"a\xce")),
        "partial-header": plain(1024, 0, frame(0x81, bytes(300))[:3]),
        "huge-length-after-fragment": plain(1024, 0, frame(0x01, b"a")
                                            + bytes([0x80, 0xFF]) + b"\xff" * 8 + MASK),
    }


def ws_command():
    cmds = [
        b'1{"op":"publish","data":"hi"}',
        b'p2{"op":"publish","data":"h\xc3\xa9llo w\xc3\xb6rld"}',
        b'3{"data":"line\\nbreak \\u0000 \\"q\\"","op":"publish"}',
        b'1{"op":"publish","data":""}',
        b'1not json',
        b'1{"op":"subscribe","data":"x"}',
        b'1{"op":"publish"}',
        b'1{"op":"publish","data":5}',
        b'1[]',
        b'1',
        b'p1{"op":"publish","data":"\xf0\x9f\x98\x80"}',
        b'4{"op":"publish","data":"\xf0\x9f\x98\x80 split"}',
    ]
    seeds = {"all-commands": b"P\x00" + b"\xff".join(cmds)}
    for i, c in enumerate(cmds):
        seeds[f"command-{i:02}"] = b"P\x00" + c
    seeds["limit-8"] = b"P\x08" + b"\xff".join([b'1{"op":"publish","data":"12345678"}',
                                                  b'1{"op":"publish","data":"123456789"}'])
    seeds["invalid-utf8"] = b"P\x00" + b'1{"op":"publish","data":"\xc3"}'
    seeds["utf8-cut-by-fragments"] = b"P\x00" + b'2\xc3\xa9\xc3\xa9\xc3'
    seeds["too-big-for-limit-1"] = b"P\x01" + b"1" + b"x" * 1031
    return seeds


def resume_cursor():
    def plain(retention, published, route, value, query=None):
        v = value.encode() if isinstance(value, str) else value
        if query is not None:
            v += b"\xff" + query.encode()
        return b"P" + bytes([retention, published, ord(route)]) + v
    return {
        "sse-header": plain(4, 10, "H", "7"),
        "sse-header-missed": plain(4, 10, "H", "2"),
        "sse-header-spaces": plain(4, 10, "H", "  3\t"),
        "sse-header-zero": plain(4, 10, "H", "0"),
        "sse-header-future": plain(4, 10, "H", "11"),
        "sse-header-letters": plain(4, 10, "H", "3a"),
        "sse-header-empty": plain(4, 10, "H", ""),
        "sse-query": plain(4, 10, "Q", "5"),
        "sse-query-leading-zeros": plain(4, 10, "Q", "0009"),
        "sse-query-negative": plain(4, 10, "Q", "-1"),
        "sse-both": plain(4, 10, "B", "8", "1"),
        "sse-both-bad-header": plain(4, 10, "B", "x", "1"),
        "ws-after": plain(3, 5, "W", "1"),
        "ws-after-last": plain(3, 5, "W", "5"),
        "ws-after-plus": plain(3, 5, "W", "+1"),
        "ws-after-max": plain(3, 5, "W", "18446744073709551615"),
        "ws-after-max-plus-one": plain(3, 5, "W", "18446744073709551616"),
        "poll-after": plain(8, 20, "P", "10"),
        "poll-after-max": plain(8, 20, "P", "18446744073709551615"),
        "poll-nothing-published": plain(1, 0, "P", "0"),
        "sse-header-max": plain(2, 3, "H", "18446744073709551615"),
    }


def connection():
    def plain(*steps):
        return b"P" + b"~~~\n".join(s.encode() if isinstance(s, str) else s for s in steps)
    pub = "POST /publish?topic=a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
    return {
        "publish-then-poll": plain(pub, "GET /poll?topic=a HTTP/1.1\r\n\r\n", "!eof"),
        "publish-expect-continue": plain("POST /publish?topic=a HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n",
                                         "!wait 10", "abc", "!eof"),
        "sse-keepalive": plain("GET /sse?topic=a HTTP/1.1\r\nLast-Event-ID: 0\r\n\r\n", "!pub a one", "!wait 16000",
                               "!pub a two\nlines", "!eof"),
        "ws-publish-ping-dead": plain(upgrade("/ws?topic=a&after=0"),
                                      frame(0x81, b'{"op":"publish","data":"hi"}') + frame(0x89, b"p"),
                                      "!wait 31000", frame(0x8A, b"rtlab"), "!wait 31000", "!wait 31000"),
        "ws-close": plain(upgrade("/ws?topic=b"), "!pub b x", close(1000, b"bye"), "!wait 3000"),
        "long-poll-answered": plain("GET /poll?topic=c.d-e_f&after=0&wait=5 HTTP/1.1\r\n\r\nGET /stats HTTP/1.1\r\n\r\n",
                                    "!wait 100", "!pub c.d-e_f m", "!eof"),
        "long-poll-timeout": plain("GET /poll?topic=a&wait=1 HTTP/1.1\r\nConnection: close\r\n\r\n", "!wait 1500"),
        "echo": plain(upgrade("/echo"), frame(0x01, b"ab") + frame(0x80, b"c") + frame(0x82, b"\x00"),
                      frame(0x88, b"")),
        "pipelined-index": plain("GET / HTTP/1.1\r\n\r\n" * 40, "!drain 0", "!wait 10", "!drain 100000", "!eof"),
        "slow-sse-consumer": plain("GET /sse?topic=a HTTP/1.1\r\n\r\n", "!drain 0",
                                   *[f"!pub a {'x' * 200} {i}" for i in range(20)], "!wait 10"),
        "shutdown-ws": plain(upgrade("/ws?topic=a"), "!shutdown", "!wait 2500"),
        "http10-stats": plain("GET /stats HTTP/1.0\r\n\r\n"),
        # One read answered whole: fails with --features strict_read_pause.
        "small-pipelined-index": plain("!small", "!drain 0", "GET / HTTP/1.1\n\n" * 300, "!drain 65535"),
        "bad-request-then-more": plain("GET /nope HTTP/1.1\r\n\r\n", "GET /stats HTTP/1.1\r\n\r\n", "!wait 2500"),
        "split-request": plain("GET /sse?to", "pic=a HTTP/1.1\r", "\n\r\n", "!pub a split"),
    }


write("http_request", http_request())
write("ws_decoder", ws_decoder())
write("ws_command", ws_command())
write("resume_cursor", resume_cursor())
write("connection", connection())
