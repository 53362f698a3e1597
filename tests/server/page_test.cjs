// The chat page at / in headless Chromium (Debian's): type a message, send it, and the
// streamed reply and its timing line appear; a screenshot is left at SCREENSHOT.
// Usage: node page_test.cjs BASE_URL API_KEY SCREENSHOT
"use strict";
const { chromium } = require("playwright-core");

const [base, key, screenshot] = process.argv.slice(2);

(async () => {
  // Without the background-networking flags Chromium keeps trying hosts this machine cannot reach.
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
           "--disable-component-update", "--disable-sync"],
  });
  let ok = false;
  try {
    const page = await browser.newPage();
    const outside = [];
    page.on("request", (r) => { if (!r.url().startsWith(base)) outside.push(r.url()); });
    await page.goto(base + "/");
    await page.fill("#key", key);
    await page.dispatchEvent("#key", "change");
    await page.waitForFunction(() => document.getElementById("title").textContent.includes("toy-e2b"), null, { timeout: 10000 });
    await page.fill("#input", "Tell me a story about the fox.");
    await page.click("#send");
    await page.waitForFunction(() => document.getElementById("timing").textContent.includes("tok/s"), null, { timeout: 30000 });
    const reply = await page.textContent(".turn.assistant:not(.thought)");
    await page.screenshot({ path: screenshot });
    ok = reply.length > 20 && outside.length === 0;
    console.log(`${ok ? "ok" : "FAILED"}: the chat page streams a reply in Chromium (${reply.length} characters, ` +
                `${outside.length} requests elsewhere; screenshot ${screenshot})`);
  } catch (e) {
    console.log(`FAILED: the chat page: ${e.message}`);
  } finally {
    await browser.close();
  }
  process.exit(ok ? 0 : 1);
})();
