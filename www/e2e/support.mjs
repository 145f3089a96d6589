// What the end-to-end tests share: Debian's Chromium driven by
// playwright-core (never a downloaded browser), the server under test, and
// screenshots under e2e/screenshots/ (not committed).
import { mkdirSync } from "node:fs";
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

export async function logIn(page, user) {
  await page.goto(BASE_URL + "/");
  await page.getByLabel("User").fill(user);
  await page.getByLabel("Password").fill("demo");
  await page.getByRole("button", { name: "Log in" }).click();
}

/** Logs in and waits until the customers table has its rows. */
export async function logInToCustomers(page, user) {
  await logIn(page, user);
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
export async function api(user) {
  const res = await fetch(`${BASE_URL}/api/login`, {
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
      const r = await fetch(`${BASE_URL}/api/${collection}`, {
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
      const r = await fetch(`${BASE_URL}/api/${path}`, { headers: { authorization: `Bearer ${token}` } });
      if (!r.ok) throw new Error(`GET ${path}: ${r.status}`);
      return r.json();
    },
    /** Another person's change, made straight on the server: PATCH on `version`. */
    async patch(path, version, fields) {
      const r = await fetch(`${BASE_URL}/api/${path}`, {
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
