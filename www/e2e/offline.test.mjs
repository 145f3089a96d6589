// Offline, an edit goes to the outbox at once and shows as queued; back
// online it is sent and lands on the server.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { launch, openPage, logInToCustomers, customerRow, openCustomer, api, unique, screenshot, allSaved } from "./support.mjs";

const ID = "c-0030";

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

test("an offline edit shows as queued and lands after reconnect", async () => {
  const server = await api("user01");
  const before = await server.get(`customers/${ID}`);
  const city = unique("Offline City");
  const page = await openPage(browser);
  await logInToCustomers(page, "user01");
  const banner = page.getByTestId("offline-banner");
  const count = page.getByTestId("outbox-count");
  assert.equal(await banner.count(), 0);

  await page.context().setOffline(true);
  await banner.waitFor();
  const dialog = await openCustomer(page, ID);
  await dialog.getByLabel("City").fill(city);
  await dialog.getByText(/^Offline: queued/).waitFor();
  await page.keyboard.press("Escape");
  await dialog.waitFor({ state: "detached" });

  const row = customerRow(page, ID);
  await row.getByText("pending").waitFor();
  assert.match(await row.innerText(), new RegExp(city));
  assert.equal(await count.innerText(), "1 change not yet sent");
  await screenshot(page, "offline-queued");
  assert.equal((await server.get(`customers/${ID}`)).fields.city, before.fields.city, "nothing sent while offline");

  await page.context().setOffline(false);
  await banner.waitFor({ state: "detached" });
  await row.getByText("pending").waitFor({ state: "detached", timeout: 15000 });
  await allSaved(page);
  const after = await server.get(`customers/${ID}`);
  assert.equal(after.fields.city, city);
  assert.equal(after.version, before.version + 1, "applied exactly once");
  // The row shows the confirmed record at the server's version.
  assert.match(await row.innerText(), new RegExp(city));
  assert.equal((await server.get(`customers/${ID}`)).version, after.version);
  await screenshot(page, "offline-landed");
  // Requests that failed while offline are the point of this test.
  assert.deepEqual(page.problems.filter((p) => !/ERR_INTERNET_DISCONNECTED|Failed to fetch/.test(p)), []);
});
