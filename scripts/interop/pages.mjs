// Run: node scripts/interop/pages.mjs path/to/rtlab RUNTIME [SCREENSHOT_DIR]   (needs: npm ci in scripts/interop, /usr/bin/chromium)
//
// The two pages as users meet them (/ticker and /chat, served by the core on
// every lab), in headless Chromium against real `rtlab serve` processes this
// script starts, stops and restarts:
//
//   1. the ticker survives a server restart on the same address: the browser's
//      EventSource reconnects by itself and the page shows the messages
//      published after the restart, and that the stream started again;
//   2. the chat round-trips between two pages over WebSockets;
//   3. the chat falls back to long polling when upgrades are refused
//      (`--refuse-upgrade`) and still round-trips;
//   4. a token's end is seen by both pages (`--token-secret`, `rtlab token`).
//
// With SCREENSHOT_DIR, it saves ticker.png and chat.png there (the book shows
// them). Exits non-zero on the first failure; every wait is bounded.
import { chromium } from "playwright-core";
import { spawn, execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";

const [rtlab, runtime, shots] = process.argv.slice(2);
if (!rtlab || !runtime) throw new Error("usage: pages.mjs RTLAB RUNTIME [SCREENSHOT_DIR]");
const WAIT = { timeout: 20000 };

/** Starts `rtlab serve`; resolves to { addr, stop() } once it prints its address. */
function serve(addr, options = []) {
  const child = spawn(rtlab, ["serve", "--runtime", runtime, "--addr", addr, ...options], { stdio: ["ignore", "pipe", "ignore"] });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${runtime} did not start on ${addr}`)), 10000);
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/listening on (\S+)/);
      if (m) {
        clearTimeout(timer);
        resolve({
          addr: m[1],
          stop: () => new Promise((done) => {
            if (child.exitCode !== null || child.signalCode !== null) return done();
            child.once("exit", done);
            child.kill("SIGTERM");
          }),
        });
      }
    });
    child.once("exit", (code) => reject(new Error(`${runtime} exited (${code}) before listening`)));
  });
}

async function publish(addr, topic, data) {
  const r = await fetch(`http://${addr}/publish?topic=${topic}`, { method: "POST", body: data });
  if (r.status !== 200) throw new Error(`publish ${data}: ${r.status}`);
}

/** Waits until the list `selector` has an item containing `text`. */
async function seen(page, selector, text, what) {
  await page.waitForFunction(([s, t]) => [...document.querySelectorAll(s)].some((li) => li.textContent.includes(t)),
    [selector, text], WAIT).catch(async () => {
    const items = await page.$$eval(selector, (els) => els.map((e) => e.textContent));
    throw new Error(`${what}: no "${text}" in ${JSON.stringify(items)}`);
  });
}

async function statusIs(page, text, what) {
  await page.waitForFunction((t) => document.getElementById("status").textContent === t, text, WAIT).catch(async () => {
    throw new Error(`${what}: status "${await page.textContent("#status")}", expected "${text}"`);
  });
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
const servers = [];
try {
  const context = await browser.newContext({ viewport: { width: 720, height: 480 } });

  // 1. The ticker across a restart.
  let server = await serve("127.0.0.1:0");
  servers.push(server);
  const addr = server.addr;
  const ticker = await context.newPage();
  await ticker.goto(`http://${addr}/ticker?topic=prices`);
  await statusIs(ticker, "open", "ticker");
  await publish(addr, "prices", "EUR 1.08");
  await publish(addr, "prices", "GBP 0.86");
  await seen(ticker, "#ticks li", "#2 GBP 0.86", "ticker before the restart");
  await server.stop();
  await statusIs(ticker, "reconnecting", "ticker while the server is down");
  server = await serve(addr); // the same address
  servers.push(server);
  await publish(addr, "prices", "JPY 161.2");
  await seen(ticker, "#ticks li", "JPY 161.2", "ticker after the restart");
  await seen(ticker, "#ticks li.note", "started again", "ticker shows the reset");
  await statusIs(ticker, "open", "ticker after the restart");
  if (shots) await ticker.screenshot({ path: `${shots}/ticker.png` });
  console.log("pages: ticker ok (reconnected by itself after a restart, showed the reset)");

  // 2. The chat over WebSockets, between two pages.
  const alice = await context.newPage();
  const bob = await context.newPage();
  await alice.goto(`http://${addr}/chat?topic=room&name=alice`);
  await bob.goto(`http://${addr}/chat?topic=room&name=bob`);
  for (const p of [alice, bob]) {
    await statusIs(p, "open", "chat");
    if (await p.textContent("#transport") !== "websocket") throw new Error("chat: not over a WebSocket");
  }
  await alice.fill("#text", "hello bob");
  await alice.press("#text", "Enter");
  await seen(bob, "#log li", "alice: hello bob", "bob's chat");
  await bob.fill("#text", "hi alice");
  await bob.press("#text", "Enter");
  await seen(alice, "#log li", "bob: hi alice", "alice's chat");
  if (shots) await alice.screenshot({ path: `${shots}/chat.png` });
  console.log("pages: chat ok (round trip over WebSockets)");
  await server.stop();

  // 3. The fallback: upgrades refused, the chat long-polls.
  server = await serve("127.0.0.1:0", ["--refuse-upgrade"]);
  servers.push(server);
  const carol = await context.newPage();
  const dave = await context.newPage();
  await carol.goto(`http://${server.addr}/chat?topic=room&name=carol`);
  await dave.goto(`http://${server.addr}/chat?topic=room&name=dave`);
  for (const p of [carol, dave]) {
    await statusIs(p, "open", "fallback chat");
    if (await p.textContent("#transport") !== "long-poll") throw new Error("fallback chat: not long polling");
  }
  await carol.fill("#text", "over long polls");
  await carol.press("#text", "Enter");
  await seen(dave, "#log li", "carol: over long polls", "dave's long-poll chat");
  await seen(carol, "#log li", "carol: over long polls", "carol's own long-poll chat");
  console.log("pages: fallback ok (upgrade refused, long polling round-trips)");
  await server.stop();

  // 4. A token's end, seen by both pages.
  server = await serve("127.0.0.1:0", ["--token-secret", "pages secret"]);
  servers.push(server);
  const token = execFileSync(rtlab, ["token", "--secret", "pages secret", "--sub", "erin", "--ttl", "2s", "--publish"]).toString().trim();
  const t = await context.newPage();
  const c = await context.newPage();
  await t.goto(`http://${server.addr}/ticker?topic=news&token=${token}`);
  await c.goto(`http://${server.addr}/chat?topic=news&name=erin&token=${token}`);
  await statusIs(t, "open", "ticker with a token");
  await statusIs(c, "open", "chat with a token");
  await statusIs(t, "token expired", "ticker at exp");
  await statusIs(c, "token expired", "chat at exp");
  console.log("pages: token expiry ok (the ticker got event: expired, the chat close code 4001)");
  await server.stop();
} finally {
  await browser.close();
  for (const s of servers) await s.stop().catch(() => {});
}
