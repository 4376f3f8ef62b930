// Run: node scripts/interop/seven.mjs 127.0.0.1:PORT h1|h2 OUT.png   (a lab serving TLS; scripts/interop/seven.sh starts it)
//
// The six-connections experiment: headless Chromium opens seven
// EventSources to one origin, then a message is published to each
// stream from outside the browser. Over HTTP/1.1 a browser keeps at most
// six connections per host, and an event stream holds its connection for
// ever: the seventh stays CONNECTING and receives nothing. Over HTTP/2
// all seven are streams of one connection and all receive. Chromium's
// own network events (DevTools protocol) say which protocol and which
// connection each stream used. Prints the result as one JSON line,
// writes a screenshot of the page, exits non-zero if the expectation for
// the protocol does not hold.
import { chromium } from "playwright-core";
import https from "node:https";

const [addr, mode, shot] = process.argv.slice(2);
if (!addr || !["h1", "h2"].includes(mode) || !shot) {
  console.error("usage: seven.mjs HOST:PORT h1|h2 OUT.png");
  process.exit(2);
}
const STREAMS = 7;
const port = addr.split(":").pop();
const origin = `https://localhost:${port}`;
const run = `seven-${mode}-${Date.now()}`;

// Publish from Node, not from the page: over HTTP/1.1 the page has no
// connection left to publish with (that is the experiment).
function publish(topic, data) {
  return new Promise((resolve, reject) => {
    const req = https.request(`${origin}/publish?topic=${topic}`, { method: "POST", rejectUnauthorized: false }, (res) => {
      res.resume();
      res.on("end", () => (res.statusCode === 200 ? resolve() : reject(new Error(`publish: ${res.statusCode}`))));
    });
    req.on("error", reject);
    req.end(data);
  });
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    // The lab's certificate is self-signed (rtlab cert).
    "--ignore-certificate-errors",
  ],
});
let ok = false;
try {
  const page = await browser.newPage({ viewport: { width: 720, height: 420 } });
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("Network.enable");
  const responses = [];
  cdp.on("Network.responseReceived", (e) => {
    if (e.response.url.includes("/sse?")) {
      responses.push({ protocol: e.response.protocol, connection: e.response.connectionId });
    }
  });
  await page.goto(`${origin}/stats`);
  await page.setContent(`<!doctype html><meta charset="utf-8"><title>seven EventSources</title>
    <style>body{font:15px sans-serif;margin:16px} td,th{padding:4px 10px;border-bottom:1px solid #ccc;text-align:left}
    .open{color:#1a7f37} .waiting{color:#b35900}</style>
    <h3>Seven EventSources to ${origin} — ${mode === "h1" ? "HTTP/1.1" : "HTTP/2"}</h3>
    <table><thead><tr><th>stream</th><th>state</th><th>received</th></tr></thead><tbody id="rows"></tbody></table>`);
  await page.evaluate(([n, run]) => {
    window.streams = [];
    for (let i = 1; i <= n; i++) {
      const row = document.createElement("tr");
      row.innerHTML = `<td>${i}</td><td class="waiting">connecting</td><td></td>`;
      document.getElementById("rows").appendChild(row);
      const s = { open: false, got: [] };
      const es = new EventSource(`/sse?topic=${run}-${i}`);
      es.onopen = () => { s.open = true; row.cells[1].textContent = "open"; row.cells[1].className = "open"; };
      es.onmessage = (m) => { s.got.push(m.data); row.cells[2].textContent = s.got.join(", "); };
      window.streams.push(s);
    }
  }, [STREAMS, run]);
  // Give every stream time to open: those that can are open in well under this.
  const settle = 3000;
  await page.waitForFunction((n) => window.streams.filter((s) => s.open).length === n, STREAMS, { timeout: settle }).catch(() => {});
  for (let i = 1; i <= STREAMS; i++) await publish(`${run}-${i}`, `hello ${i}`);
  await page.waitForFunction((n) => window.streams.filter((s) => s.got.length > 0).length === n, STREAMS, { timeout: settle }).catch(() => {});
  const state = await page.evaluate(() => window.streams.map((s) => ({ open: s.open, received: s.got.length })));
  await page.screenshot({ path: shot });
  const result = {
    mode,
    streams: STREAMS,
    open: state.filter((s) => s.open).length,
    receiving: state.filter((s) => s.received > 0).length,
    protocols: [...new Set(responses.map((r) => r.protocol))],
    connections: new Set(responses.map((r) => r.connection)).size,
  };
  console.log(JSON.stringify(result));
  const expected = mode === "h1"
    ? result.open === 6 && result.receiving === 6 && !state[6].open && result.protocols.join() === "http/1.1"
    : result.open === STREAMS && result.receiving === STREAMS && result.connections === 1 && result.protocols.join() === "h2";
  if (!expected) {
    console.error(`seven (${mode}): not what ${mode === "h1" ? "HTTP/1.1's six connections per host" : "HTTP/2's one connection"} predicts`);
  }
  ok = expected;
} finally {
  await browser.close();
}
process.exit(ok ? 0 : 1);
