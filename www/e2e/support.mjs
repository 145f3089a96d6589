// What the end-to-end tests share: Debian's Chromium driven by
// playwright-core (never a downloaded browser), the server under test, and
// screenshots under e2e/screenshots/ (not committed).
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

export const BASE_URL = process.env.E2E_BASE_URL ?? "http://127.0.0.1:8080";
const SCREENSHOTS = join(dirname(fileURLToPath(import.meta.url)), "screenshots");

export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROME_BIN ?? "/usr/bin/chromium",
    args: [
      "--headless=new",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-dev-shm-usage",
    ],
  });
}

/**
 * A page whose console errors and uncaught exceptions are collected, in a
 * new browser context or in `context` (another tab of the same browser).
 */
export async function openPage(browser, context) {
  context ??= await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const page = await context.newPage();
  page.problems = [];
  page.on("pageerror", (e) => page.problems.push(`pageerror: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") page.problems.push(`console: ${m.text()}`);
  });
  return page;
}

export async function screenshot(page, name) {
  mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true });
}

export async function logIn(page, user, base = BASE_URL) {
  await page.goto(base + "/");
  await page.getByLabel("User").fill(user);
  await page.getByLabel("Password").fill("demo");
  await page.getByRole("button", { name: "Log in" }).click();
}

/** Logs in and waits until the customers table has its rows. */
export async function logInToCustomers(page, user, base = BASE_URL) {
  await logIn(page, user, base);
  await page.getByText(`Signed in as ${user}`).waitFor();
  await customerRow(page, "c-0001").waitFor();
}

/** The customers table's row of one record. */
export function customerRow(page, id) {
  return page.getByRole("table", { name: "Customers" }).locator(`tbody tr[data-id="${id}"]`);
}

/** Opens the edit dialog of a customer from its row; returns the dialog. */
export async function openCustomer(page, id) {
  await customerRow(page, id).getByRole("button").first().click();
  const dialog = page.getByRole("dialog", { name: /^Customer / });
  await dialog.waitFor();
  return dialog;
}

/** The reference server's view, to check what really landed there. */
export async function api(user, base = BASE_URL) {
  const res = await fetch(`${base}/api/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ username: user, password: "demo" }),
  });
  if (!res.ok) throw new Error(`login ${user}: ${res.status}`);
  const { token } = await res.json();
  return {
    token,
    /** Another person's new record, made straight on the server. */
    async post(collection, fields) {
      const r = await fetch(`${base}/api/${collection}`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${token}`,
          "content-type": "application/json",
          "idempotency-key": crypto.randomUUID(),
        },
        body: JSON.stringify({ fields }),
      });
      if (!r.ok) throw new Error(`POST ${collection}: ${r.status}`);
      return r.json();
    },
    async get(path) {
      const r = await fetch(`${base}/api/${path}`, { headers: { authorization: `Bearer ${token}` } });
      if (!r.ok) throw new Error(`GET ${path}: ${r.status}`);
      return r.json();
    },
    /** Another person's change, made straight on the server: PATCH on `version`. */
    async patch(path, version, fields) {
      const r = await fetch(`${base}/api/${path}`, {
        method: "PATCH",
        headers: {
          authorization: `Bearer ${token}`,
          "content-type": "application/json",
          "if-match": `"${version}"`,
          "idempotency-key": crypto.randomUUID(),
        },
        body: JSON.stringify({ fields }),
      });
      if (!r.ok) throw new Error(`PATCH ${path}: ${r.status}`);
      return r.json();
    },
  };
}

/**
 * A server of the test's own, on a free port, with its own database and
 * sheet and the built demo: for tests that change what the others expect
 * (the demo's 200 customers). `writeSheet(path)` may write the sheet first.
 * Returns `{ base, sheet, stop }`.
 */
export async function ownServer(prefix, writeSheet = () => {}, args = []) {
  const work = mkdtempSync(join(tmpdir(), prefix));
  const sheet = join(work, "sheet.csv");
  writeSheet(sheet);
  const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
  const server = spawn(
    join(root, "target/debug/crm-sync-server"),
    ["--port", "0", "--db", join(work, "crm.db"), "--demo", "--static", join(root, "www/dist"), "--sheet", sheet, ...args],
    { stdio: ["ignore", "pipe", "ignore"], env: { ...process.env, RUST_LOG: "warn" } },
  );
  const base = await new Promise((ok, fail) => {
    let out = "";
    server.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/http:\/\/[0-9.]+:[0-9]+/);
      if (m) ok(m[0]);
    });
    server.on("exit", (code) => fail(new Error(`the server ended (${code})`)));
  });
  return {
    base,
    sheet,
    stop() {
      server.kill();
      rmSync(work, { recursive: true, force: true });
    },
  };
}

/** A value unique to this run, so reruns on one database never collide. */
export function unique(prefix) {
  return `${prefix}-${Date.now().toString(36)}${Math.floor(Math.random() * 1296).toString(36)}`;
}

/** Resolves when `release()` is called: for holding a request mid-flight. */
export function gate() {
  let release;
  const opened = new Promise((r) => (release = r));
  return { opened, release };
}

/**
 * Holds every PATCH `page` sends to `/api/<path>` until `held.release()`;
 * `sent` opens when the first is on its way. For a race made deterministic:
 * another person's change lands while this one's is held.
 */
export async function holdPatches(page, path) {
  const sent = gate();
  const held = gate();
  await page.route(`**/api/${path}`, async (route) => {
    if (route.request().method() === "PATCH") {
      sent.release();
      await held.opened;
    }
    await route.continue();
  });
  return { sent, held };
}

/**
 * A conflict on customer `id`'s City for the person logged in on `page`:
 * their City `mine` is held on its way out until `server` (another person)
 * has saved City `theirs` on the same version. Returns the customer dialog
 * and the conflict dialog (a locator: it may not be open yet). The PATCHes
 * stay routed through the hold (released); unroute `customers/<id>` to end it.
 */
export async function conflictOnCity(page, server, id, mine = unique("Mine"), theirs = unique("Theirs")) {
  const current = await server.get(`customers/${id}`);
  const { sent, held } = await holdPatches(page, `customers/${id}`);
  const dialog = await openCustomer(page, id);
  await dialog.getByLabel("City").fill(mine);
  await sent.opened;
  await server.patch(`customers/${id}`, current.version, { city: theirs });
  held.release();
  return { dialog, conflict: page.getByRole("dialog", { name: /^Conflict/ }) };
}

/**
 * Waits until nothing is queued or failed: the status bar then says "All
 * changes saved" instead of a count.
 */
export async function allSaved(page, timeout = 10000) {
  await page.getByTestId("all-saved").waitFor({ timeout });
  assert.equal(await page.getByTestId("outbox-count").count(), 0);
}

/** A day next week (local date, `YYYY-MM-DD`): bookings of tests and of today stay apart. */
export function nextWeekDay() {
  const d = new Date(Date.now() + 7 * 24 * 3600 * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

/** Fills the calendar's "Book a resource" form and presses Book. */
export async function fillBooking(form, { title, resource, date, from, to }) {
  await form.getByLabel("Title").fill(title);
  await form.getByLabel("Resource").fill(resource);
  await form.getByLabel("Date").fill(date);
  await form.getByLabel("From").selectOption(from);
  await form.getByLabel("To").selectOption(to);
  await form.getByRole("button", { name: "Book" }).click();
}
