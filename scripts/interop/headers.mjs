// Run: node scripts/interop/headers.mjs target/release/rtlab bench-results/polling/chromium-headers.json   (needs: npm ci in scripts/interop, /usr/bin/chromium)
//
// The request heads a real browser sends, byte for byte: headless Chromium
// loads a lab's demo page (its EventSource and its WebSocket subscribe) and
// then, in the page, polls twice with `fetch` as the chat page's fallback
// does (`GET /poll?topic=T&after=N`). Between the browser and the lab sits a
// plain TCP relay (node:net) that copies every byte both ways and keeps the
// request heads it sees going to the server — what crossed the wire, not
// what DevTools reconstructs. The output (JSON) gives the browser's version
// and, per request kind (poll, sse, ws), the head's lines and its byte count
// (request line through the blank line). `rtlab bench polling
// --browser-headers FILE` sends these header lines (the request line is its
// own). No cookie is set: a site's cookies would come on top.
import { launchChromium } from "./chromium.mjs";
import { spawn } from "node:child_process";
import { createServer, connect } from "node:net";
import { writeFileSync, mkdirSync } from "node:fs";
import { dirname } from "node:path";

const [rtlab, out, runtime = "tokio"] = process.argv.slice(2);
if (!rtlab || !out) throw new Error("usage: headers.mjs RTLAB OUT.json [RUNTIME]");

/** Starts `rtlab serve`; resolves to { addr, child } once it prints its address. */
function serve() {
  const child = spawn(rtlab, ["serve", "--runtime", runtime, "--addr", "127.0.0.1:0"], { stdio: ["ignore", "pipe", "ignore"] });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${runtime} did not start`)), 10000);
    let text = "";
    child.stdout.on("data", (d) => {
      text += d;
      const m = text.match(/listening on 127\.0\.0\.1:(\d+)/);
      if (m) { clearTimeout(timer); resolve({ port: Number(m[1]), child }); }
    });
    child.once("exit", (code) => reject(new Error(`${runtime} exited (${code}) before listening`)));
  });
}

/** Splits the client's bytes into request heads (skipping bodies by
 * Content-Length); stops at an upgrade (what follows is frames). */
function headSplitter(onHead) {
  let buf = Buffer.alloc(0);
  let skip = 0;
  let upgraded = false;
  return (chunk) => {
    if (upgraded) return;
    buf = Buffer.concat([buf, chunk]);
    for (;;) {
      if (skip > 0) {
        const n = Math.min(skip, buf.length);
        buf = buf.subarray(n);
        skip -= n;
        if (skip > 0) return;
      }
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) return;
      const head = buf.subarray(0, end + 4);
      buf = buf.subarray(end + 4);
      const text = head.toString("latin1");
      onHead(text, head.length);
      const len = text.match(/\r\ncontent-length:\s*(\d+)/i);
      skip = len ? Number(len[1]) : 0;
      if (/\r\nupgrade:/i.test(text)) { upgraded = true; return; }
    }
  };
}

const lab = await serve();
const heads = [];
const relay = createServer((client) => {
  const upstream = connect(lab.port, "127.0.0.1");
  const split = headSplitter((text, bytes) => heads.push({ text, bytes }));
  client.on("data", (d) => { split(d); upstream.write(d); });
  upstream.on("data", (d) => client.write(d));
  client.on("error", () => upstream.destroy());
  upstream.on("error", () => client.destroy());
  client.on("close", () => upstream.end());
  upstream.on("close", () => client.end());
});
await new Promise((ok) => relay.listen(0, "127.0.0.1", ok));
const addr = `127.0.0.1:${relay.address().port}`;

const browser = await launchChromium();
let version;
try {
  version = browser.version();
  const page = await browser.newPage();
  await page.goto(`http://${addr}/`);
  await page.waitForFunction(() =>
    document.getElementById("sse-status").textContent === "open" &&
    document.getElementById("ws-status").textContent === "open", null, { timeout: 20000 });
  // Two short polls, as a polling page sends them (the second on the kept-alive connection).
  await page.evaluate(async () => {
    const topic = document.getElementById("topic").value;
    const first = await (await fetch(`/poll?topic=${encodeURIComponent(topic)}`)).json();
    await (await fetch(`/poll?topic=${encodeURIComponent(topic)}&after=${first.last_id}`)).json();
  });
} finally {
  await browser.close();
  relay.close();
  lab.child.kill("SIGTERM");
}

/** The last head whose request line matches `re`. */
function kind(re, what) {
  const found = heads.filter((h) => re.test(h.text.split("\r\n")[0])).pop();
  if (!found) throw new Error(`no ${what} request seen; saw: ${heads.map((h) => h.text.split("\r\n")[0]).join(", ")}`);
  const lines = found.text.split("\r\n").filter((l) => l !== "");
  return { request_line: lines[0], headers: lines.slice(1), bytes: found.bytes };
}

const doc = {
  what: "request heads headless Chromium sent to an rtlab lab's demo page, captured byte for byte by a TCP relay (scripts/interop/headers.mjs); no cookies",
  browser: version,
  user_agent: kind(/^GET \/poll/, "poll").headers.find((h) => /^user-agent:/i.test(h))?.replace(/^user-agent:\s*/i, "") ?? null,
  runtime,
  captured: new Date().toISOString(),
  kinds: {
    poll: kind(/^GET \/poll\?.*after=/, "poll"),
    sse: kind(/^GET \/sse/, "sse"),
    ws: kind(/^GET \/ws/, "ws"),
  },
};
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, JSON.stringify(doc, null, 2) + "\n");
console.log(`headers: ${out}: ${doc.browser}; poll ${doc.kinds.poll.bytes} B, sse ${doc.kinds.sse.bytes} B, ws ${doc.kinds.ws.bytes} B`);
