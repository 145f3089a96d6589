// The storage quota runs out mid-session (Chromium's DevTools quota
// override, so IndexedDB writes really fail with QuotaExceededError). The
// client does not reject saves with a `quota` error: it holds the refused
// writes in memory, says so (status.storage "memory", the app's warning),
// and writes them with its next write once there is room again (or on its
// own every 30 s). An offline edit made meanwhile is lost only if the tab
// closes before there is room, as the warning says.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { launch, openPage, logInToCustomers, customerRow, openCustomer, api, unique, screenshot, BASE_URL, allSaved } from "./support.mjs";

const MEMORY_WARNING = "This browser does not let the app store data: unsent changes are lost on reload.";

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

/**
 * Controls the page origin's quota. Chromium caches an origin's free space
 * for about 30 s and asks again sooner only for a write bigger than what it
 * has cached, so the quota is small (4 MiB) from the start, and `fill`
 * makes one 5 MiB write (in a database of the test's own) to make a new
 * quota bite at once.
 */
async function quotaControl(page) {
  const cdp = await page.context().newCDPSession(page);
  const origin = new URL(BASE_URL).origin;
  const set = (quotaSize) =>
    cdp.send("Storage.overrideQuotaForOrigin", quotaSize === undefined ? { origin } : { origin, quotaSize });
  const write = (bytes) =>
    page.evaluate(
      (bytes) =>
        new Promise((resolve) => {
          const open = indexedDB.open("e2e-quota-probe", 1);
          open.onupgradeneeded = () => open.result.createObjectStore("probe");
          open.onerror = () => resolve(`open failed: ${open.error?.name}`);
          open.onsuccess = () => {
            const db = open.result;
            const tx = db.transaction("probe", "readwrite");
            tx.objectStore("probe").put("x".repeat(bytes), "probe");
            tx.oncomplete = () => (db.close(), resolve("written"));
            tx.onabort = () => (db.close(), resolve(tx.error?.name ?? "aborted"));
          };
        }),
      bytes,
    );
  await set(4 << 20);
  return {
    async exhaust() {
      await set(1);
      assert.equal(await write(5 << 20), "QuotaExceededError", "IndexedDB writes now fail");
    },
    async restore() {
      await set(undefined);
      assert.equal(await write(1000), "written", "IndexedDB writes work again");
    },
  };
}

test("quota exceeded, then room again: edits held in memory are written at the next write, survive a closed tab and land exactly once", async () => {
  const [FIRST, SECOND] = ["c-0100", "c-0102"];
  const server = await api("user32");
  const page = await openPage(browser);
  const quota = await quotaControl(page);
  await logInToCustomers(page, "user32");
  const warning = page.getByText(MEMORY_WARNING);
  const count = page.getByTestId("outbox-count");
  assert.equal(await warning.count(), 0, "IndexedDB in use before the quota runs out");
  const before = [await server.get(`customers/${FIRST}`), await server.get(`customers/${SECOND}`)];

  await quota.exhaust();
  await page.context().setOffline(true);
  await page.getByTestId("offline-banner").waitFor();
  const cities = [unique("Full Disk City"), unique("Room Again City")];
  const edit = async (id, city) => {
    const dialog = await openCustomer(page, id);
    await dialog.getByLabel("City").fill(city);
    // The save answers "queued", not a `quota` error: the change is kept
    // (in memory while IndexedDB refuses it), and the status tells.
    await dialog.getByText("Offline: queued, will be sent when you are back online.").waitFor();
    await page.keyboard.press("Escape");
    await dialog.waitFor({ state: "detached" });
  };
  await edit(FIRST, cities[0]);
  await warning.waitFor();
  assert.equal(await count.innerText(), "1 change not yet sent");
  await screenshot(page, "quota-offline-queued-in-memory");

  // Room again: the next write takes the held one with it.
  await quota.restore();
  await edit(SECOND, cities[1]);
  await warning.waitFor({ state: "detached" });
  assert.equal(await count.innerText(), "2 changes not yet sent");

  // Closed while still offline; the next tab of the browser opens online
  // and sends both, each once.
  const context = page.context();
  assert.deepEqual(page.problems.filter((p) => !/ERR_INTERNET_DISCONNECTED|Failed to fetch/.test(p)), []);
  await page.close();
  await context.setOffline(false);
  const next = await openPage(browser, context);
  await next.goto(BASE_URL + "/#/customers");
  const nextCount = next.getByTestId("outbox-count");
  await customerRow(next, FIRST).waitFor();
  await allSaved(next, 15000);
  assert.equal(await nextCount.count(), 0, "no count shown when nothing is queued or failed");
  for (const [i, id] of [FIRST, SECOND].entries()) {
    const landed = await server.get(`customers/${id}`);
    assert.equal(landed.fields.city, cities[i], `${id} landed`);
    assert.equal(landed.version, before[i].version + 1, `${id} applied exactly once`);
  }
  assert.equal(await next.getByText(MEMORY_WARNING).count(), 0);
  await next.goto(BASE_URL + "/#/settings");
  assert.notEqual(await next.locator('dt:has-text("Storage") + dd').innerText(), "memory only");
  assert.deepEqual(next.problems, []);
  await context.close();
});

test("quota exceeded: an offline edit is lost when the tab closes before there is room again, as the warning said", async () => {
  const ID = "c-0101";
  const server = await api("user33");
  const page = await openPage(browser);
  const quota = await quotaControl(page);
  await logInToCustomers(page, "user33");
  const before = await server.get(`customers/${ID}`);

  await quota.exhaust();
  await page.context().setOffline(true);
  const dialog = await openCustomer(page, ID);
  await dialog.getByLabel("City").fill(unique("Lost City"));
  await dialog.getByText("Offline: queued, will be sent when you are back online.").waitFor();
  await page.getByText(MEMORY_WARNING).waitFor();
  await quota.restore();

  // Closed while offline; the next tab of the same browser opens online.
  const context = page.context();
  await page.close();
  await context.setOffline(false);
  const next = await openPage(browser, context);
  await next.goto(BASE_URL + "/#/customers");
  await customerRow(next, ID).waitFor();
  assert.equal(await next.getByText(MEMORY_WARNING).count(), 0, "IndexedDB in use again after a reload");
  await allSaved(next);
  // Time for a leader to send anything it found (the leader sends at once).
  await new Promise((r) => setTimeout(r, 3000));
  const after = await server.get(`customers/${ID}`);
  assert.equal(after.version, before.version, "the edit never reached the server");
  assert.equal(after.fields.city, before.fields.city);
  assert.match(await customerRow(next, ID).innerText(), new RegExp(before.fields.city), "the row shows the server's record");
  assert.deepEqual(next.problems, []);
  await context.close();
});
