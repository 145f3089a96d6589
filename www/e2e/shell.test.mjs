// The offline app shell: a service worker (vite-plugin-pwa, Workbox)
// precaches the built app, the wasm included, so a reload without a network
// opens the app with the customers from IndexedDB, the offline banner and the
// queued work. A new build does not take over a running tab: it asks.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { launch, openPage, logInToCustomers, customerRow, openCustomer, api, unique, screenshot } from "./support.mjs";

const DIST = join(dirname(fileURLToPath(import.meta.url)), "..", "dist");

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

/** Waits until the service worker is active and has precached the app. */
async function shellReady(page) {
  // Active is enough: the next navigation in its scope goes through it.
  await page.waitForFunction(async () => !!(await navigator.serviceWorker.getRegistration())?.active, null, {
    timeout: 15000,
  });
  const cached = await page.evaluate(async () => {
    const urls = [];
    for (const name of await caches.keys()) {
      for (const req of await (await caches.open(name)).keys()) urls.push(new URL(req.url).pathname);
    }
    return urls;
  });
  assert.ok(cached.some((u) => u.endsWith(".wasm")), `the wasm is precached: ${cached.join(", ")}`);
  assert.ok(cached.some((u) => u.endsWith("/index.html")), "the page is precached");
}

test("a reload while offline opens the app with the stored customers, the banner and the queued work", async () => {
  const ID = "c-0031";
  const server = await api("user04");
  const before = await server.get(`customers/${ID}`);
  const page = await openPage(browser);
  await logInToCustomers(page, "user04");
  await shellReady(page);

  const context = page.context();
  await context.setOffline(true);
  const city = unique("Shell City");
  const dialog = await openCustomer(page, ID);
  await dialog.getByLabel("City").fill(city);
  await dialog.getByText(/^Offline: queued/).waitFor();
  await page.keyboard.press("Escape");

  await page.reload();
  await page.getByText("Signed in as user04").waitFor();
  await page.getByTestId("offline-banner").waitFor();
  const row = customerRow(page, ID);
  await row.waitFor();
  assert.match(await row.innerText(), new RegExp(city), "the queued edit shows on its row");
  await row.getByText("pending").waitFor();
  assert.ok((await page.getByRole("table", { name: "Customers" }).locator("tbody tr").count()) > 100, "every customer from IndexedDB");
  assert.equal(await page.getByTestId("outbox-count").innerText(), "1 change not yet sent");
  await page.getByRole("button", { name: "Review changes" }).click();
  await page.getByRole("region", { name: "Unsent changes" }).getByText(`City to “${city}”`).waitFor();
  await screenshot(page, "shell-offline-reload");
  assert.equal((await server.get(`customers/${ID}`)).fields.city, before.fields.city, "nothing sent while offline");

  await context.setOffline(false);
  await page.getByTestId("all-saved").waitFor({ timeout: 15000 });
  assert.equal((await server.get(`customers/${ID}`)).version, before.version + 1, "sent once when back online");
  assert.deepEqual(page.problems.filter((p) => !/ERR_INTERNET_DISCONNECTED|Failed to fetch/.test(p)), []);
  await context.close();
});

test("a new build asks before it replaces the running one", async () => {
  const page = await openPage(browser);
  await logInToCustomers(page, "user05");
  await shellReady(page);
  const sw = join(DIST, "sw.js");
  const original = readFileSync(sw, "utf8");
  try {
    // A new build: the service worker's script changed on the server.
    writeFileSync(sw, `${original}\n// next build ${Date.now()}\n`);
    await page.evaluate(async () => (await navigator.serviceWorker.getRegistration())?.update());
    const prompt = page.getByTestId("update-prompt");
    await prompt.waitFor({ timeout: 15000 });
    assert.match(await prompt.innerText(), /A new version of the app is ready/);
    await screenshot(page, "shell-update-prompt");
    const reloaded = page.waitForEvent("load");
    await prompt.getByRole("button", { name: "Reload" }).click();
    await reloaded;
    await page.getByText("Signed in as user05").waitFor();
    await customerRow(page, "c-0001").waitFor();
    assert.equal(await page.getByTestId("update-prompt").count(), 0, "the new build runs; nothing left to ask");
  } finally {
    writeFileSync(sw, original);
  }
  assert.deepEqual(page.problems, []);
  await page.context().close();
});
