// Run: node scripts/interop/reconnect.mjs 127.0.0.1:PORT RUNTIME   (as reconnect.sh does; prints one JSON line)
//
// "SSE reconnects by itself and resumes with Last-Event-ID; WebSocket needs
// hand-written reconnection", tested in a real browser. Headless Chromium
// loads a page from the server through a small TCP proxy in this script,
// and opens on one topic, with no library:
//
//   * a bare `EventSource`,
//   * a bare `WebSocket`,
//   * a `WebSocket` with hand-written reconnection: on close, open again
//     with `after=<last id>` (the contract's resume), after a fixed delay.
//
// Three messages are published and received; then the proxy cuts every
// connection at once (what a NAT, a load balancer or a network change
// does), and two messages are published while the clients are cut off. The
// script records, per client: whether it reconnected without the page doing
// anything, how long after the cut, the `Last-Event-ID` header the browser
// sent (read by the proxy from the request), and how many of the messages
// published while it was cut off it got — then one more message after
// everyone who will reconnect has. Prints one JSON line; exits non-zero if
// the browser behaves other than the claim says (so the interop step fails
// if a lab breaks resumption).
import net from "node:net";
import { launchChromium } from "./chromium.mjs";

const [server, runtime] = process.argv.slice(2);
const [host, port] = server.split(":");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const publish = (topic, body) =>
  fetch(`http://${server}/publish?topic=${topic}`, { method: "POST", body }).then((r) => r.json());

// ANCHOR: proxy
// The proxy: every browser connection goes through it, so the script can
// read each request's head and cut every connection at once.
const sockets = new Set();
const heads = [];
const proxy = net.createServer((client) => {
  const upstream = net.connect(Number(port), host);
  sockets.add(client).add(upstream);
  let first = true;
  client.on("data", (chunk) => {
    if (first) heads.push({ at: performance.now(), head: chunk.toString("latin1").split("\r\n\r\n")[0] });
    first = false;
    upstream.write(chunk);
  });
  upstream.on("data", (chunk) => client.write(chunk));
  for (const [a, b] of [[client, upstream], [upstream, client]]) {
    a.on("close", () => { sockets.delete(a); b.destroy(); });
    a.on("error", () => b.destroy());
  }
});
const cut = () => { for (const s of sockets) s.resetAndDestroy(); };
// ANCHOR_END: proxy
await new Promise((r) => proxy.listen(0, "127.0.0.1", r));
const via = `127.0.0.1:${proxy.address().port}`;

const browser = await launchChromium();
let result;
try {
  const page = await browser.newPage();
  await page.goto(`http://${via}/stats`);
  const topic = `reconnect-${Date.now()}`;
  // ANCHOR: clients
  await page.evaluate((topic) => {
    const log = (window.log = []);
    const note = (client, what, extra = {}) => log.push({ client, what, at: performance.now(), ...extra });
    // 1. EventSource: nothing but handlers that record.
    const es = new EventSource(`/sse?topic=${topic}`);
    es.onopen = () => note("sse", "open");
    es.onerror = () => note("sse", "error", { state: es.readyState });
    es.onmessage = (e) => note("sse", "message", { id: e.lastEventId, data: e.data });
    // 2. WebSocket: nothing but handlers that record.
    const ws = new WebSocket(`ws://${location.host}/ws?topic=${topic}`);
    ws.onopen = () => note("ws", "open");
    ws.onclose = (e) => note("ws", "close", { code: e.code });
    ws.onmessage = (e) => note("ws", "message", { data: JSON.parse(e.data).data });
    // 3. WebSocket with hand-written reconnection and resume (`after=`).
    let last = "";
    const connect = () => {
      const rws = new WebSocket(`ws://${location.host}/ws?topic=${topic}` + (last ? `&after=${last}` : ""));
      rws.onopen = () => note("ws-reconnecting", "open");
      rws.onmessage = (e) => {
        const m = JSON.parse(e.data);
        if (m.id === undefined) return; // a reset or missed signal: not a message
        last = `${m.epoch}-${m.id}`;
        note("ws-reconnecting", "message", { data: m.data });
      };
      rws.onclose = (e) => { note("ws-reconnecting", "close", { code: e.code }); setTimeout(connect, 1000); };
    };
    connect();
  }, topic);
  // ANCHOR_END: clients
  const log = () => page.evaluate(() => window.log);
  const count = async (client, what) => (await log()).filter((e) => e.client === client && e.what === what).length;
  const until = async (test, ms, what) => {
    const end = Date.now() + ms;
    while (!(await test())) {
      if (Date.now() > end) throw new Error(`${runtime}: timed out waiting for ${what}: ${JSON.stringify(await log())}`);
      await sleep(50);
    }
  };
  const clients = ["sse", "ws", "ws-reconnecting"];
  await until(async () => (await Promise.all(clients.map((c) => count(c, "open")))).every((n) => n === 1), 20000, "every client to open");
  for (const m of ["m1", "m2", "m3"]) await publish(topic, m);
  await until(async () => (await Promise.all(clients.map((c) => count(c, "message")))).every((n) => n === 3), 20000, "the first three messages");

  // The cut, and two messages while the clients are cut off.
  const headsBefore = heads.length;
  const cutAt = performance.now();
  const pageCutAt = await page.evaluate(() => performance.now());
  cut();
  await publish(topic, "m4");
  await publish(topic, "m5");
  // Wait for the clients that reconnect (EventSource's default retry is
  // about 3 s), bounded; then one more message.
  await until(async () => (await count("sse", "open")) >= 2 && (await count("ws-reconnecting", "open")) >= 2, 20000, "the reconnections")
    .catch(() => {});
  await sleep(500);
  await publish(topic, "m6");
  await sleep(1500);

  const events = await log();
  const after = (client) => events.filter((e) => e.client === client && e.at > pageCutAt);
  const summary = (client) => {
    const opens = after(client).filter((e) => e.what === "open");
    const got = after(client).filter((e) => e.what === "message").map((e) => e.data);
    return {
      reconnected: opens.length > 0,
      reconnect_ms: opens.length ? Math.round(opens[0].at - pageCutAt) : null,
      missed_recovered: got.filter((d) => d === "m4" || d === "m5").length,
      later_received: got.includes("m6"),
      duplicates: got.length - new Set(got).size,
      close_code: after(client).find((e) => e.what === "close")?.code ?? null,
    };
  };
  const resumed = heads.slice(headsBefore).map((h) => h.head);
  const lastEventId = resumed.map((h) => /^last-event-id: *(.*)$/im.exec(h)).find(Boolean)?.[1] ?? null;
  result = {
    runtime,
    chromium: browser.version(),
    observed_ms: Math.round(performance.now() - cutAt),
    missed_published: 2,
    sse: { ...summary("sse"), last_event_id_sent: lastEventId, ready_state_after_cut: events.find((e) => e.client === "sse" && e.what === "error" && e.at > pageCutAt)?.state ?? null },
    ws: summary("ws"),
    ws_reconnecting: summary("ws-reconnecting"),
  };
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
  proxy.close();
  cut();
}
// The claim, checked: EventSource came back by itself and resumed (both
// missed messages, Last-Event-ID sent); the bare WebSocket stayed closed
// and missed everything after the cut; the hand-written one resumed.
const ok = result.sse.reconnected && result.sse.missed_recovered === 2 && result.sse.later_received &&
  result.sse.duplicates === 0 && /^[0-9A-Za-z]+-3$/.test(result.sse.last_event_id_sent ?? "") &&
  !result.ws.reconnected && result.ws.missed_recovered === 0 && !result.ws.later_received &&
  result.ws_reconnecting.reconnected && result.ws_reconnecting.missed_recovered === 2 &&
  result.ws_reconnecting.later_received && result.ws_reconnecting.duplicates === 0;
if (!ok) {
  console.error(`${runtime}: the browser did not behave as expected: ${JSON.stringify(result)}`);
  process.exit(1);
}
