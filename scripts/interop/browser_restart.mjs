// Run: node scripts/interop/browser_restart.mjs 127.0.0.1:PORT SERVER_PID path/to/rtlab RUNTIME   (as run.sh does)
//
// A browser's EventSource across a server restart. Headless Chromium opens
// the demo page on a fresh topic and gets two messages; then the server
// (SERVER_PID) is stopped with SIGTERM and a new one is started on the same
// address. The EventSource reconnects on its own, sending the Last-Event-ID
// it last saw — an id of the old server's epoch — and the new server must
// answer with the reset event, then its own messages from id 1. Stops the
// server it started. Exits non-zero on failure.
import { spawn } from "node:child_process";
import { launchChromium } from "./chromium.mjs";

const [addr, pid, rtlab, runtime] = process.argv.slice(2);
const publish = (topic, body) =>
  fetch(`http://${addr}/publish?topic=${topic}`, { method: "POST", body }).then((r) => r.json());
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const browser = await launchChromium();
let next;
try {
  const page = await browser.newPage();
  const topic = `restart-${Date.now()}`;
  await page.goto(`http://${addr}/`);
  await page.fill("#topic", topic);
  await page.dispatchEvent("#topic", "change");
  await page.waitForFunction(() => document.getElementById("sse-status").textContent === "open", null, { timeout: 20000 });
  await publish(topic, "before 1");
  await publish(topic, "before 2");
  const items = () => page.$$eval("#sse li", (lis) => lis.map((li) => li.textContent));
  await page.waitForFunction(() => document.querySelectorAll("#sse li").length >= 2, null, { timeout: 20000 });

  // Stop the server, start another on the same address.
  process.kill(Number(pid), "SIGTERM");
  for (let i = 0; i < 100; i++) {
    try { process.kill(Number(pid), 0); await sleep(50); } catch { break; }
  }
  next = spawn(rtlab, ["serve", "--runtime", runtime, "--addr", addr], { stdio: ["ignore", "pipe", "ignore"] });
  await new Promise((resolve, reject) => {
    next.stdout.on("data", (d) => { if (String(d).includes("listening on")) resolve(); });
    next.on("exit", (code) => reject(new Error(`the restarted ${runtime} server exited (${code})`)));
    setTimeout(() => reject(new Error("the restarted server did not start")), 20000);
  });
  await publish(topic, "after 1");

  // EventSource retries after about 3 s by itself.
  await page.waitForFunction(() => document.querySelectorAll("#sse li").length >= 4, null, { timeout: 30000 })
    .catch(async (e) => { throw new Error(`after the restart: ${JSON.stringify(await items())} (${e.message})`); });
  const got = await items();
  const ok = got[0] === "#1 before 1" && got[1] === "#2 before 2" && /^reset [0-9A-Za-z]{1,16}$/.test(got[2]) &&
    got[3] === "#1 after 1";
  if (!ok) throw new Error(`EventSource across a restart: expected #1, #2, reset E, #1 after 1; got ${JSON.stringify(got)}`);
  console.log(`browser restart: ok (the EventSource reconnected by itself, got "${got[2]}", then the new epoch from #1)`);
} finally {
  await browser.close();
  if (next && next.exitCode === null) {
    const exited = new Promise((r) => next.on("exit", r));
    next.kill("SIGTERM");
    const code = await exited;
    if (code !== 0) { console.error(`the restarted server exited ${code} on SIGTERM`); process.exitCode = 1; }
  }
}
