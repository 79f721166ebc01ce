// The web chat in a real browser (Debian's Chromium, driven by Playwright)
// against a real `parley dev`: two people chat, one goes offline while the
// other sends, and comes back to every message exactly once, with delivered
// and read marks on the sender's side. Screenshots go to target/web-test.
import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";

import { ParleyClient } from "../../ts/src/index.js";
import { OUTPUT_DIR, Parley } from "../../testing/parley.js";

const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const PASSWORD = "correct horse battery";
const WAIT = 20_000;

let parley: Parley;
let browser: Browser;

before(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`no Chromium at ${CHROMIUM}: install Debian's chromium package (or set CHROMIUM)`);
  }
  mkdirSync(OUTPUT_DIR, { recursive: true });
  parley = await Parley.start();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
});

after(async () => {
  await browser?.close();
  await parley?.close();
});

/** One person in a browser context of their own, and what their page logged. */
interface Person {
  name: string;
  context: BrowserContext;
  page: Page;
  console: string[];
}

async function open(name: string): Promise<Person> {
  const context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  const p: Person = { name, context, page, console: [] };
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning") p.console.push(`${m.type()}: ${m.text()}`);
  });
  page.on("pageerror", (e) => p.console.push(`pageerror: ${e.message}`));
  await page.goto(parley.url);
  await page.locator("#auth-view").waitFor();
  return p;
}

async function register(p: Person, displayName: string): Promise<void> {
  await p.page.fill("#username", p.name);
  await p.page.fill("#password", PASSWORD);
  await p.page.fill("#display-name", displayName);
  await p.page.click('button[value="register"]');
  await live(p);
}

async function live(p: Person): Promise<void> {
  await p.page.locator('#connection[data-state="live"]').waitFor();
}

async function shot(p: Person, name: string): Promise<void> {
  await p.page.screenshot({ path: join(OUTPUT_DIR, `${name}.png`) });
}

/** The texts of the open conversation, top to bottom. */
function texts(p: Person): Promise<string[]> {
  return p.page.locator("#messages li .text").allTextContents();
}

/** The marks on the sender's messages whose text is in `bodies`. */
async function statuses(p: Person, bodies: string[]): Promise<string[]> {
  return p.page.$$eval(
    "#messages li.mine",
    (items, wanted) =>
      items
        .filter((li) => wanted.includes(li.querySelector(".text")?.textContent ?? ""))
        .map((li) => li.getAttribute("data-status") ?? ""),
    bodies,
  );
}

async function until<T>(what: string, get: () => Promise<T>, ok: (v: T) => boolean, ms = WAIT): Promise<T> {
  const end = Date.now() + ms;
  let last = await get();
  while (!ok(last)) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}; last saw ${JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, 50));
    last = await get();
  }
  return last;
}

async function send(p: Person, body: string): Promise<void> {
  await p.page.fill("#body", body);
  await p.page.press("#body", "Enter");
}

function inboxEntry(p: Person, displayName: string) {
  return p.page.locator("#inbox button.conversation", { hasText: displayName });
}

test("two people chat; one drops offline and comes back to everything, once, with receipts", { timeout: 180_000 }, async () => {
  const suffix = String(process.pid % 100000);
  const alice = await open(`alice_${suffix}`);
  const bob = await open(`bob_${suffix}`);
  await register(alice, "Alice");
  await register(bob, "Bob");
  await shot(alice, "01-alice-signed-in");

  // Alice finds Bob and writes.
  await alice.page.fill("#search", bob.name.slice(0, 6));
  await alice.page.click(`#search-results button[data-user="${bob.name}"]`);
  await alice.page.locator("#peer-name", { hasText: "Bob" }).waitFor();
  await send(alice, "hello bob");
  await until("hello bob sent", () => statuses(alice, ["hello bob"]), (s) => s.length === 1 && s[0] !== "sending");

  // Bob sees an unread conversation, opens it, and Alice sees it read.
  await until("bob's unread count", () => inboxEntry(bob, "Alice").getAttribute("data-unread"), (n) => n === "1");
  await shot(bob, "02-bob-inbox-unread");
  await inboxEntry(bob, "Alice").click();
  await until("bob sees it", () => texts(bob), (t) => t.join() === "hello bob");
  await until("alice sees ✓✓", () => statuses(alice, ["hello bob"]), (s) => s[0] === "read");
  await send(bob, "hi alice");
  await until("alice gets the reply", () => texts(alice), (t) => t.includes("hi alice"));
  await shot(alice, "03-alice-read-and-reply");

  // Bob leaves the conversation and goes offline; Alice writes five more.
  await bob.page.click("#back");
  await bob.context.setOffline(true);
  await bob.page.locator('#connection[data-state="offline"]').waitFor();
  await shot(bob, "04-bob-offline");
  const away = ["one", "two", "three", "four", "five"].map((w) => `while you were away: ${w}`);
  for (const body of away) await send(alice, body);
  await until("alice's five accepted", () => statuses(alice, away), (s) => s.length === 5 && s.every((x) => x === "sent"));
  await new Promise((r) => setTimeout(r, 1500));
  assert.deepEqual(await statuses(alice, away), ["sent", "sent", "sent", "sent", "sent"], "nothing delivered while Bob is offline");
  assert.equal(await inboxEntry(bob, "Alice").getAttribute("data-unread"), "0", "Bob's page heard nothing");
  await shot(alice, "05-alice-sent-while-bob-offline");

  // Bob comes back: his device gets all five (delivered ✓), unread.
  await bob.context.setOffline(false);
  await live(bob);
  await until("bob's five unread", () => inboxEntry(bob, "Alice").getAttribute("data-unread"), (n) => n === "5");
  await until("alice sees ✓ on all five", () => statuses(alice, away), (s) => s.every((x) => x === "delivered"));
  await shot(bob, "06-bob-back-online");
  await shot(alice, "07-alice-delivered");

  // Bob reads them: each once, in order; Alice sees ✓✓ on all.
  await inboxEntry(bob, "Alice").click();
  const expected = ["hello bob", "hi alice", ...away];
  await until("bob's conversation", () => texts(bob), (t) => t.length >= expected.length);
  await new Promise((r) => setTimeout(r, 500));
  assert.deepEqual(await texts(bob), expected, "nothing missing, nothing twice, in order");
  await until("alice sees ✓✓ on all", () => statuses(alice, away), (s) => s.every((x) => x === "read"));
  assert.deepEqual(await texts(alice), expected);
  await shot(bob, "08-bob-read-everything");
  await shot(alice, "09-alice-read-marks");

  // A reload keeps the session (the cookie) and shows the same history.
  await bob.page.reload();
  await live(bob);
  await inboxEntry(bob, "Alice").click();
  await until("history after a reload", () => texts(bob), (t) => t.join("|") === expected.join("|"));

  for (const p of [alice, bob]) {
    assert.deepEqual(
      p.console.filter((l) => /duplicate|Content Security Policy|pageerror/i.test(l)),
      [],
      `${p.name}: no duplicate frames, no CSP violations, no script errors`,
    );
  }
  await alice.context.close();
  await bob.context.close();
});

test("a long conversation scrolls back page by page", { timeout: 120_000 }, async () => {
  const suffix = String(process.pid % 100000);
  // Carol wrote Dana 120 messages (from a program, through the package)
  // before Dana signs in on the web.
  const dana = new ParleyClient({ baseUrl: parley.url });
  await dana.register({ username: `dana_${suffix}`, password: PASSWORD, displayName: "Dana" });
  const carol = new ParleyClient({ baseUrl: parley.url });
  await carol.register({ username: `carol_${suffix}`, password: PASSWORD, displayName: "Carol" });
  const bodies = Array.from({ length: 120 }, (_, i) => `note ${String(i).padStart(3, "0")}`);
  for (const b of bodies) await carol.send(dana.user!.id, b);

  const web = await open(`dana_${suffix}`);
  await web.page.fill("#username", web.name);
  await web.page.fill("#password", PASSWORD);
  await web.page.click('button[value="login"]');
  await live(web);
  await until("Carol in the inbox", () => inboxEntry(web, "Carol").getAttribute("data-unread"), (n) => n === "120");
  await inboxEntry(web, "Carol").click();
  await until("the newest page", () => texts(web), (t) => t.length === 50);
  assert.equal((await texts(web)).at(-1), "note 119");
  assert.ok(await web.page.locator("#older").isVisible());
  await shot(web, "10-newest-page");
  // Scrolling to the top loads the next older page, until the first message.
  // Tries until the first message shows, for as long as a slow page load
  // may take (20 s).
  for (let i = 0; i < 66 && !(await web.page.locator("#history-start").isVisible()); i++) {
    await web.page.locator("#scroller").evaluate((el) => el.scrollTo(0, 0));
    await new Promise((r) => setTimeout(r, 300));
  }
  await web.page.locator("#history-start").waitFor();
  assert.deepEqual(await texts(web), bodies);
  await web.page.locator("#scroller").evaluate((el) => el.scrollTo(0, 0));
  await shot(web, "11-beginning-of-history");

  await web.page.click("#logout");
  await web.page.locator("#auth-view").waitFor();
  assert.deepEqual(web.console.filter((l) => /duplicate|Content Security Policy|pageerror/i.test(l)), []);
  await web.context.close();
});
