// Run: node scripts/interop/browser.mjs 127.0.0.1:PORT   (needs: npm ci in scripts/interop, and /usr/bin/chromium)
//
// A real browser against one lab: headless Chromium opens the demo page,
// whose EventSource and WebSocket subscribe; we publish with the page's two
// buttons (POST and a WebSocket frame) and wait until both messages show up
// in both lists. Exits non-zero on failure.
import { launchChromium } from "./chromium.mjs";

const addr = process.argv[2];
const browser = await launchChromium();
try {
  const page = await browser.newPage();
  const topic = `browser-${Date.now()}`;
  await page.goto(`http://${addr}/`);
  await page.fill("#topic", topic);
  await page.dispatchEvent("#topic", "change");
  await page.waitForFunction(() =>
    document.getElementById("sse-status").textContent === "open" &&
    document.getElementById("ws-status").textContent === "open", null, { timeout: 20000 }).catch(async (e) => {
    const state = await page.evaluate(() => [document.getElementById("sse-status").textContent, document.getElementById("ws-status").textContent]);
    throw new Error(`subscriptions not open after 20 s: EventSource "${state[0]}", WebSocket "${state[1]}" (${e.message})`);
  });

  await page.fill("#msg", "via POST");
  await page.click("text=publish with POST");
  await page.fill("#msg", "via WebSocket");
  await page.click("#wspub");

  const expected = ["#1 via POST", "#2 via WebSocket"];
  for (const list of ["sse", "ws"]) {
    await page.waitForFunction(
      ([id, n]) => document.querySelectorAll(`#${id} li`).length >= n,
      [list, expected.length], { timeout: 20000 });
    const got = await page.$$eval(`#${list} li`, (items) => items.map((li) => li.textContent));
    if (JSON.stringify(got) !== JSON.stringify(expected)) {
      throw new Error(`${list}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(got)}`);
    }
  }
  console.log("browser: ok (EventSource and WebSocket both received both messages, in order)");
} finally {
  await browser.close();
}
