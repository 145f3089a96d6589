// The outbox across a closed tab: offline edits of three customers and two
// comments, the tab closed, back online, a new tab opened: everything lands
// once, in order per record, and another user's open window shows it
// without a reload.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { launch, logInToCustomers, customerRow, openCustomer, api, unique, screenshot, BASE_URL, allSaved } from "./support.mjs";

const IDS = ["c-0080", "c-0081", "c-0082"];

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

test("offline work survives a closed tab and lands once; another user sees it live", async () => {
  const server = await api("user44");
  const before = await Promise.all(IDS.map((id) => server.get(`customers/${id}`)));

  // Another user watching the same customers.
  const watcherContext = await browser.newContext();
  const watcher = await watcherContext.newPage();
  await logInToCustomers(watcher, "user45");

  const context = await browser.newContext();
  const tab = await context.newPage();
  await logInToCustomers(tab, "user44");
  await context.setOffline(true);
  await tab.getByTestId("offline-banner").waitFor();
  const cities = IDS.map(() => unique("Outbox City"));
  for (const [i, id] of IDS.entries()) {
    const dialog = await openCustomer(tab, id);
    await dialog.getByLabel("City").fill(cities[i]);
    await dialog.getByText(/^Offline: queued/).waitFor();
    if (i === 0) {
      for (const n of [1, 2]) {
        await dialog.getByLabel("New comment").fill(`offline note ${n} ${cities[0]}`);
        await dialog.getByRole("button", { name: "Add comment" }).click();
        await dialog.getByText(`offline note ${n} ${cities[0]}`).waitFor();
      }
    }
    await tab.keyboard.press("Escape");
    await dialog.waitFor({ state: "detached" });
  }
  await tab.getByTestId("outbox-count").getByText("5 changes not yet sent").waitFor();
  await screenshot(tab, "outbox-queued-offline");
  // Let IndexedDB settle, then close the tab with the work still queued.
  await tab.waitForTimeout(300);
  await tab.close();
  for (const [i, id] of IDS.entries()) {
    assert.equal((await server.get(`customers/${id}`)).version, before[i].version, "nothing sent while offline");
  }

  await context.setOffline(false);
  const next = await context.newPage();
  await next.goto(BASE_URL + "/#/customers");
  await allSaved(next, 20000);
  for (const [i, id] of IDS.entries()) {
    const now = await server.get(`customers/${id}`);
    assert.equal(now.fields.city, cities[i]);
    assert.equal(now.version, before[i].version + 1, `${id} applied exactly once`);
  }
  const withComments = await server.get(`customers/${IDS[0]}`);
  const notes = withComments.comments.filter((c) => c.text.endsWith(cities[0]));
  assert.deepEqual(
    notes.map((c) => c.text),
    [`offline note 1 ${cities[0]}`, `offline note 2 ${cities[0]}`],
    "both comments once, in order",
  );

  // The other user's window caught up by itself.
  for (const [i, id] of IDS.entries()) {
    await customerRow(watcher, id).getByText(cities[i]).waitFor({ timeout: 10000 });
  }
  await screenshot(watcher, "outbox-seen-by-another-user");
  await context.close();
  await watcherContext.close();
});
