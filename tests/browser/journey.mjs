// A new user's first minutes, in Debian's Chromium (driven by playwright-core
// over the DevTools protocol; no downloaded browser): open the home page,
// sign up, copy the test key, send a sandbox OTP and watch it arrive, see it
// on the Messages page, create a live key, rent a number, see its fee on the
// Usage page, and try the demo. A screenshot of each page goes to OUT_DIR.
//
//   BASE_URL=http://127.0.0.1:8080 OUT_DIR=/tmp/shots node journey.mjs

import { chromium } from "playwright-core";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const base = process.env.BASE_URL;
const out = process.env.OUT_DIR;
assert.ok(base && out, "set BASE_URL and OUT_DIR");
mkdirSync(out, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
  // playwright gives every launch a fresh temporary profile of its own.
});
const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: base });
const page = await context.newPage();
const problems = [];
page.on("console", (m) => { if (m.type() === "error") problems.push(m.text()); });
page.on("pageerror", (e) => problems.push(String(e)));

let shot = 0;
async function screenshot(name) {
  shot += 1;
  const file = join(out, `${String(shot).padStart(2, "0")}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`screenshot ${file}`);
}

function step(what) { console.log(`step: ${what}`); }

step("the home page says what Line is");
await page.goto(base + "/");
assert.match(await page.locator("h1").innerText(), /one-time passwords/i);
await screenshot("home");

step("sign up");
await page.getByRole("link", { name: "Sign up free" }).click();
await page.getByLabel("Company or app name").fill("Journey Ltd");
await page.getByLabel("E-mail address").fill("first.user@example.com");
await page.getByLabel("Password").fill("a long enough password");
await page.getByRole("button", { name: "Sign up" }).click();
const key = (await page.locator("#test-key").innerText()).trim();
assert.match(key, /^line_test_[0-9A-Za-z]{32}$/);
await screenshot("get-started");

step("copy the test key with the page's button, and use it");
await page.locator('button[data-copy="test-key"]').click();
await page.waitForFunction(() => document.querySelector('button[data-copy="test-key"]').textContent === "Copied");
const copied = await page.evaluate(() => navigator.clipboard.readText());
assert.equal(copied, key);
const account = await fetch(base + "/v1/account", { headers: { authorization: `Bearer ${copied}` } });
assert.equal(account.status, 200);
assert.equal((await account.json()).name, "Journey Ltd");
assert.ok((await page.locator("#curl").innerText()).includes(key), "the curl has the key filled in");

step("send a test OTP from the Get started page and see it delivered");
await page.getByRole("button", { name: "Send a test OTP" }).click();
assert.match(await page.locator("#otp-request").innerText(), /\+447700900123/);
assert.match(await page.locator("#otp-response").innerText(), /HTTP 201/);
await page.locator("#otp-message-status", { hasText: "delivered" }).waitFor({ timeout: 30_000 });
const sms = await page.locator("#otp-sms").innerText();
assert.match(sms, /Your Journey Ltd code is \d{6}\./);
await screenshot("test-otp-delivered");

step("the Messages page lists it as delivered");
await page.getByRole("link", { name: "Messages", exact: true }).click();
const row = page.locator("#messages tbody tr").first();
assert.match(await row.innerText(), /\+447700900123/);
assert.match(await row.innerText(), /delivered/);
await screenshot("messages");

step("create a live key");
await page.getByRole("link", { name: "API keys", exact: true }).click();
await page.getByLabel("Name").fill("production");
await page.getByLabel("Mode").selectOption("live");
await page.getByRole("button", { name: "Create key" }).click();
assert.match(await page.locator("#new-key").innerText(), /^line_live_/);
await screenshot("keys");

step("rent a number");
await page.getByRole("link", { name: "Numbers", exact: true }).click();
const rent = page.getByRole("button", { name: /^Rent / }).first();
const label = await rent.getAttribute("aria-label");
const [, number, price] = label.match(/^Rent (\+44\d+) for (£\d+\.\d\d) a month$/);
await rent.click();
assert.match(await page.locator("table").first().innerText(), new RegExp(number.replace("+", "\\+")));
await screenshot("numbers");

step("the fee shows on the Usage page");
await page.getByRole("link", { name: "Usage", exact: true }).click();
assert.equal((await page.locator("#number-fees").innerText()).trim(), price);
assert.equal((await page.locator("#total").innerText()).trim(), price);
await screenshot("usage");

step("the other pages render");
for (const name of ["Verifications", "Webhooks", "Settings", "Team"]) {
  await page.getByRole("link", { name, exact: true }).click();
  assert.equal((await page.locator("h1").innerText()).trim(), name);
  await screenshot(name.toLowerCase());
}

step("at phone width nothing overflows sideways");
await page.setViewportSize({ width: 390, height: 844 });
for (const path of ["/dashboard", "/dashboard/messages", "/demo"]) {
  await page.goto(base + path);
  const wide = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(wide <= 0, `${path} overflows by ${wide}px`);
}
await page.goto(base + "/dashboard");
await screenshot("phone-get-started");
await page.setViewportSize({ width: 1280, height: 900 });

step("try the demo");
await page.goto(base + "/demo");
assert.match(await page.locator("main").innerText(), /Demo only · No real SMS sent/);
await page.getByLabel("Mobile number").fill("07700 900456");
await page.getByLabel(/^Brand/).fill("Acme");
await page.getByLabel(/^Web domain/).fill("acme.example");
await page.getByRole("button", { name: "Show the SMS" }).click();
const demo = await page.locator("#demo-sms").innerText();
assert.match(demo, /^Your Acme code is (\d{6})\. It expires in 10 minutes\. Don't share it\.\s+@acme\.example #\1$/);
await screenshot("demo");

step("log out");
await page.goto(base + "/dashboard");
await page.getByRole("button", { name: "Log out" }).click();
assert.ok(page.url().endsWith("/login"));

assert.deepEqual(problems, [], "no script errors or CSP violations");
await browser.close();
console.log("journey ok");
