#!/usr/bin/env python3
# Run: python3 scripts/interop/ws_client.py 127.0.0.1:PORT   (needs: pip install websockets==17.4)
"""An independent RFC 6455 client (the `websockets` library) against one lab.

Checks /echo (text, binary, a fragmented message, ping/pong, a clean close
handshake) and /ws (replay with ?after=, a client publish, the error frame for
bad input). Exits non-zero with a message on the first failure.
"""
import asyncio
import json
import sys
import urllib.request

from websockets.asyncio.client import connect


def check(cond, what):
    if not cond:
        raise SystemExit(f"ws_client: FAILED: {what}")


async def main(addr):
    base = f"ws://{addr}"
    async with connect(f"{base}/echo", max_size=None) as ws:
        await ws.send("héllo")
        check(await ws.recv() == "héllo", "echo text")
        await ws.send(bytes(range(256)) * 300)
        check(await ws.recv() == bytes(range(256)) * 300, "echo 76800-byte binary")
        # An iterable is sent as one fragmented message.
        await ws.send(["frag", "men", "ted ✓"])
        check(await ws.recv() == "fragmented ✓", "echo fragmented text")
        pong = await ws.ping(b"are you there")
        await asyncio.wait_for(pong, 2)
    check(ws.close_code == 1000, f"echo close handshake code {ws.close_code}")

    topic = "interop-py"
    for i in (1, 2):
        req = urllib.request.Request(f"http://{addr}/publish?topic={topic}", data=f"m{i}".encode(), method="POST")
        body = json.load(urllib.request.urlopen(req, timeout=5))
        check(body["id"] >= 1, "publish id")
    async with connect(f"{base}/ws?topic={topic}&after=0") as ws:
        first = json.loads(await asyncio.wait_for(ws.recv(), 2))
        second = json.loads(await asyncio.wait_for(ws.recv(), 2))
        check((first["id"], first["data"], second["id"], second["data"]) == (1, "m1", 2, "m2"), f"ws replay {first} {second}")
        await ws.send(json.dumps({"op": "publish", "data": "from python\nline 2"}))
        third = json.loads(await asyncio.wait_for(ws.recv(), 2))
        check(third == {"id": 3, "epoch": first["epoch"], "data": "from python\nline 2"}, f"ws publish echo {third}")
        await ws.send("not json")
        err = json.loads(await asyncio.wait_for(ws.recv(), 2))
        check("error" in err, f"error frame {err}")
        await ws.send(json.dumps({"op": "publish", "data": "still open"}))
        fourth = json.loads(await asyncio.wait_for(ws.recv(), 2))
        check(fourth["id"] == 4, f"connection still open after bad input {fourth}")
    print("ws_client: ok")


asyncio.run(main(sys.argv[1]))
