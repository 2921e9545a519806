// Drives the console in Debian's headless Chromium with Playwright, as an operator would:
// sign in, create a subscription, publish, watch the live tail and the deliveries, replay
// a dead letter, rotate the secret, dry-run the Slack adapter, sign out. Saves a
// screenshot of each page and fails on any console error or failed page request.
// Run by tests/tests/console_browser.rs, which starts the engine and the receiver.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";

const base = process.env.WASMHOOK_BASE;
const token = process.env.WASMHOOK_TOKEN;
const receiver = process.env.RECEIVER_URL;
const shots = process.env.SCREENSHOT_DIR;
const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";
const WAIT = 30_000;
mkdirSync(shots, { recursive: true });

const problems = [];
const browser = await chromium.launch({
  executablePath: chromiumPath,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
context.setDefaultTimeout(WAIT);

function watch(page) {
  page.on("console", (m) => { if (m.type() === "error") problems.push(`console: ${m.text()}`); });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("response", (r) => {
    if (r.status() >= 400) problems.push(`${r.status()} ${r.request().method()} ${r.url()}`);
  });
  page.on("dialog", (d) => d.accept());
  return page;
}

async function shot(page, name) {
  await page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
}

async function publish(type, data) {
  const r = await fetch(`${base}/v1/events`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ type, data }),
  });
  if (r.status !== 202) throw new Error(`publish ${type}: ${r.status} ${await r.text()}`);
  return (await r.json()).id;
}

function step(name) { console.log(`-- ${name}`); }

try {
  const page = watch(await context.newPage());

  step("no session: the console sends us to sign in");
  await page.goto(`${base}/ui/subscriptions`);
  await page.waitForURL(`${base}/ui/login`);
  await shot(page, "01-login");
  await page.fill('input[name="token"]', token);
  await page.click('button[type="submit"]');
  await page.waitForURL(`${base}/ui`);
  await page.waitForSelector("#rate-accepted");
  await shot(page, "02-overview");

  step("create a subscription to the loopback receiver");
  await page.goto(`${base}/ui/subscriptions`);
  await page.fill('#create input[name="url"]', receiver);
  await page.fill('#create input[name="events"]', "host.*");
  await page.fill('#create input[name="id"]', "ops");
  await page.click('#create button[type="submit"]');
  await page.waitForSelector("#secret-box:not([hidden])");
  const first = await page.textContent("#secret-value");
  if (!first.startsWith("whsec_")) throw new Error(`no secret shown: ${first}`);
  await shot(page, "03-subscription-created");

  step("publish: events arrive in the live tail");
  const tail = watch(await context.newPage());
  await tail.goto(`${base}/ui/tail`);
  await tail.waitForFunction(() => document.getElementById("tail-state").textContent === "live");
  // The receiver fails the first message (500, retried once, 500 again: a dead letter),
  // then accepts.
  const refused = await publish("host.down", { host: "web-1" });
  await tail.waitForSelector(`#tail tr.accepted >> text=${refused}`);
  await tail.waitForSelector(`#tail tr.dead_letter >> text=${refused}`);
  const accepted = await publish("host.up", { host: "web-1" });
  await tail.waitForSelector(`#tail tr.accepted >> text=${accepted}`);
  await tail.waitForSelector(`#tail tr.delivered >> text=${accepted}`);
  await shot(tail, "04-live-tail");

  step("the subscription's deliveries show both, with attempts");
  await page.goto(`${base}/ui/subscriptions/ops`);
  await page.waitForSelector("#deliveries .badge.dead_letter");
  await page.waitForSelector("#deliveries .badge.delivered");
  await shot(page, "05-subscription-detail");

  step("replay the dead letter from the Dead letters page; it is delivered");
  await page.goto(`${base}/ui/dead-letters`);
  await page.check("input.pick");
  await Promise.all([page.waitForEvent("load"), page.click("#replay-selected")]);
  await shot(page, "06-dead-letters-replayed");
  await tail.waitForSelector(`#tail tr.delivered >> text=${refused}`);
  await page.goto(`${base}/ui/dead-letters`);
  await page.waitForSelector("#no-dead-letters");
  await page.goto(`${base}/ui/subscriptions/ops`);
  if (await page.locator("#deliveries .badge.dead_letter").count() !== 0) {
    throw new Error("the replayed delivery is still a dead letter");
  }
  if (await page.locator("#deliveries .badge.delivered").count() !== 2) {
    throw new Error("expected two delivered deliveries");
  }

  step("rotate the secret: a new one, shown once");
  await page.goto(`${base}/ui/subscriptions`);
  await page.click('tr[data-id="ops"] button.rotate');
  await page.waitForSelector("#secret-box:not([hidden])");
  const second = await page.textContent("#secret-value");
  if (!second.startsWith("whsec_") || second === first) throw new Error(`rotation showed ${second}`);
  await page.click("#copy-secret");
  await shot(page, "07-secret-rotated");
  await page.reload();
  if ((await page.content()).includes(second)) throw new Error("the secret is in the page after a reload");

  step("dry-run the Slack adapter from the Plugins page");
  await page.goto(`${base}/ui/plugins`);
  await page.selectOption('#dry-run select[name="plugin"]', "slack");
  await page.click('#dry-run button[type="submit"]');
  await page.waitForSelector("#result:not([hidden])");
  const result = JSON.parse(await page.textContent("#result"));
  if (result.action !== "deliver" || result.body.channel !== "#ops") {
    throw new Error(`unexpected dry run: ${JSON.stringify(result)}`);
  }
  await shot(page, "08-plugins-dry-run");

  step("endpoints and overview");
  await page.goto(`${base}/ui/endpoints`);
  await page.waitForSelector("#endpoints tbody tr");
  await shot(page, "09-endpoints");
  await page.goto(`${base}/ui`);
  await shot(page, "10-overview-after");

  step("sign out");
  await tail.close();
  await page.click("#logout");
  await page.waitForURL(`${base}/ui/login`);
  await page.goto(`${base}/ui`);
  await page.waitForURL(`${base}/ui/login`);
} catch (e) {
  problems.push(`step failed: ${e.stack || e}`);
} finally {
  await browser.close();
}

if (problems.length) {
  console.error(problems.join("\n"));
  process.exit(1);
}
console.log("console browser test passed");
