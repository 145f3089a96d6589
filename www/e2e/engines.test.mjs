// The demo in Firefox and WebKit (Safari's engine), driven over W3C
// WebDriver (webdriver.mjs), each against a server of its own that the test
// stops and starts: log in; an edit saved; with the server gone an edit
// says it waits, a reload keeps it and the settings page warns that it is
// not safe from the browser's clean-up; with the server back it is saved
// without a reload; a second window sees the first one's change; a version
// conflict shows its dialog. Chromium runs the same paths in the Playwright
// suites. E2E_ENGINES picks engines (default: firefox,webkit).
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { ownServer } from "./own-server.mjs";
import { Session, startDriver } from "./webdriver.mjs";

const SCREENSHOTS = join(dirname(fileURLToPath(import.meta.url)), "screenshots");
const ENGINES = (process.env.E2E_ENGINES ?? "firefox,webkit").split(",").filter(Boolean);
// Ports of this suite: a server, a second process on its database (the
// other person's change made while the first is down) and a driver.
const PORTS = { firefox: [19053, 19055, 19057], webkit: [19054, 19056, 19058] };

const unique = (prefix) => `${prefix} ${Date.now().toString(36)}${Math.floor(Math.random() * 1296).toString(36)}`;

/** The server's view of a customer, as `user`. */
async function serverRecord(base, user, id) {
  const login = await fetch(`${base}/api/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ username: user, password: "demo" }),
  });
  const { token } = await login.json();
  const r = await fetch(`${base}/api/customers/${id}`, { headers: { authorization: `Bearer ${token}` } });
  return { token, record: await r.json() };
}

const row = (id) => `table[aria-label="Customers"] tbody tr[data-id="${id}"]`;
const EDIT = "dialog[open] form[aria-label='Customer fields']";

async function openCustomer(s, id) {
  await s.click(`${row(id)} button`);
  await s.waitFor(`${EDIT} input[name=city]`);
}

async function closeDialog(s) {
  await s.click("dialog[open] .dialog-head button[aria-label=Close]");
  await s.waitGone("dialog[open]");
}

for (const engine of ENGINES) {
  test(`the demo in ${engine}: saved, offline and back, settings, two windows, a conflict`, async (t) => {
    const [port, otherPort, driverPort] = PORTS[engine];
    const server = ownServer(port, `smoke-${engine}`);
    await server.start();
    const driver = await startDriver(engine, driverPort);
    let s;
    let failed = true;
    t.after(async () => {
      if (failed) {
        mkdirSync(SCREENSHOTS, { recursive: true });
        await s?.screenshot(join(SCREENSHOTS, `engines-${engine}-failed.png`)).catch(() => {});
      }
      await s?.quit();
      await driver.stop();
      await server.stop();
    });
    s = await Session.start(driver.url, engine);
    t.diagnostic(`browser: ${s.browser}`);
    const user = engine === "firefox" ? "user41" : "user42";
    const [id, otherId] = engine === "firefox" ? ["c-0061", "c-0062"] : ["c-0071", "c-0072"];

    // Log in.
    await s.goto(server.url + "/");
    await s.fill("input[name=username]", user);
    await s.fill("input[name=password]", "demo");
    await s.click("form[aria-label='Log in'] button[type=submit]");
    await s.waitFor(row(id), { timeout: 30000 });
    // The demo's service worker serves the page while the server is down
    // (the reload below): wait until it controls this page.
    await s.run(() => new Promise((resolve) => {
      const check = () => (navigator.serviceWorker?.controller ? resolve() : setTimeout(check, 100));
      check();
    }));

    // An edit, saved.
    const saved = unique("Saved City");
    await openCustomer(s, id);
    await s.fill(`${EDIT} input[name=city]`, saved);
    await s.waitFor("[data-testid=save-state]", { text: /^Saved \(version \d+\)/ });
    assert.equal((await serverRecord(server.url, user, id)).record.fields.city, saved);
    await closeDialog(s);

    // The server gone: an edit says it waits, and a reload keeps it.
    await server.stop();
    const waiting = unique("Waiting City");
    await openCustomer(s, id);
    await s.fill(`${EDIT} input[name=city]`, waiting);
    await s.waitFor("[data-testid=save-state]", { text: /queued, will be sent/, timeout: 30000 });
    await closeDialog(s);
    await s.waitFor("[data-testid=outbox-count]", { text: "1 change not yet sent" });
    await s.reload();
    await s.waitFor(row(id), { text: waiting, timeout: 30000 });
    await s.waitFor("[data-testid=outbox-count]", { text: "1 change not yet sent" });

    // The settings page says the waiting change is not safe from the
    // browser's clean-up, and asks for persistent storage from the click:
    // Firefox grants it (its prompt answered yes); WebKitGTK has no
    // navigator.storage, so it stays unsafe and says the browser said no.
    await s.run(() => {
      location.hash = "#/settings";
    });
    await s.waitFor("[data-testid=kept-state][data-durable=false]");
    await s.waitFor("[data-testid=kept-warning]", { text: "1 change is waiting to be sent" });
    await s.click("[data-testid=kept-changes] button");
    if (engine === "firefox") {
      await s.waitFor("[data-testid=kept-state][data-durable=true]");
      await s.waitGone("[data-testid=kept-warning]");
    } else {
      await s.waitFor("[data-testid=kept-refused]");
      await s.waitFor("[data-testid=kept-warning]");
    }
    await s.run(() => {
      location.hash = "#/customers";
    });
    await s.waitFor(row(id), { text: waiting });

    // The server back: saved without a reload.
    await server.start();
    await s.waitFor("[data-testid=all-saved]", { timeout: 30000 });
    assert.equal((await serverRecord(server.url, user, id)).record.fields.city, waiting);

    // A second window of the same person sees the first one's change.
    const first = await s.window();
    const second = await s.newWindow();
    await s.switchTo(second);
    await s.goto(server.url + "/");
    await s.waitFor(row(id), { text: waiting, timeout: 30000 });
    await s.switchTo(first);
    const shared = unique("Shared City");
    await openCustomer(s, otherId);
    await s.fill(`${EDIT} input[name=city]`, shared);
    await s.waitFor("[data-testid=save-state]", { text: /^Saved \(version \d+\)/ });
    const savedAt = Date.now();
    await closeDialog(s);
    await s.switchTo(second);
    await s.waitFor(row(otherId), { text: shared, timeout: 10000 });
    t.diagnostic(`the second window showed the change ${Date.now() - savedAt} ms after the first saved it`);
    await s.cmd("DELETE", "/window");
    await s.switchTo(first);

    // A version conflict: an edit waits while the server is down; meanwhile
    // another person changes the same field (through a second server process
    // on the same database); when the server is back, the edit's version is
    // old and the person is asked.
    await server.stop();
    const mine = unique("My City");
    await openCustomer(s, id);
    await s.fill(`${EDIT} input[name=city]`, mine);
    await s.waitFor("[data-testid=save-state]", { text: /queued, will be sent/, timeout: 30000 });
    await closeDialog(s);
    const stopOther = await server.startOn(otherPort);
    const otherBase = `http://127.0.0.1:${otherPort}`;
    const { token, record } = await serverRecord(otherBase, "bob", id);
    const theirs = unique("Their City");
    const patched = await fetch(`${otherBase}/api/customers/${id}`, {
      method: "PATCH",
      headers: {
        authorization: `Bearer ${token}`,
        "content-type": "application/json",
        "if-match": `"${record.version}"`,
        "idempotency-key": crypto.randomUUID(),
      },
      body: JSON.stringify({ fields: { city: theirs } }),
    });
    assert.equal(patched.status, 200);
    await stopOther();
    await server.start();
    await s.waitFor("dialog[open].conflict-dialog", { timeout: 30000 });
    const conflict = await s.text("dialog[open].conflict-dialog");
    assert.match(conflict, new RegExp(mine));
    assert.match(conflict, new RegExp(theirs));
    failed = false;
  });
}
