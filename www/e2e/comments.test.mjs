// Comments are an append-only thread: two people comment on one customer,
// and each comment shows once in both windows (never twice, never lost).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { launch, openPage, logInToCustomers, openCustomer, api, gate, unique, screenshot } from "./support.mjs";

const ID = "c-0020";

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

/** How often each text appears in a window's comment thread. */
async function countIn(dialog, texts) {
  const shown = await dialog.getByRole("list", { name: "Activity" }).locator(".comment-text").allInnerTexts();
  return texts.map((t) => shown.filter((s) => s === t).length);
}

test("both users' comments appear once each in both windows", async (t) => {
  const alice = await openPage(browser);
  const bob = await openPage(browser);
  await logInToCustomers(alice, "alice");
  await logInToCustomers(bob, "bob");
  const aliceText = unique("alice says");
  const bobText = unique("bob says");

  let aliceDialog = await openCustomer(alice, ID);
  let bobDialog = await openCustomer(bob, ID);

  // Alice's comment is held on the wire: meanwhile it shows as pending.
  const held = gate();
  await alice.route(`**/api/customers/${ID}/comments`, async (route) => {
    await held.opened;
    await route.continue();
  });
  await aliceDialog.getByLabel("New comment").fill(aliceText);
  await aliceDialog.getByRole("button", { name: "Add comment" }).click();
  const aliceItem = aliceDialog.locator(".comment", { hasText: aliceText });
  await aliceItem.getByText("sending…").waitFor();
  held.release();
  await aliceItem.getByText("sending…").waitFor({ state: "detached" });
  await alice.unroute(`**/api/customers/${ID}/comments`);

  await bobDialog.getByLabel("New comment").fill(bobText);
  await bobDialog.getByRole("button", { name: "Add comment" }).click();
  await bobDialog.locator(".comment:not(.pending)", { hasText: bobText }).waitFor();

  // Other people's changes would arrive by themselves through the changes
  // feed; where they do not (yet), a reload shows them.
  const live = await bobDialog
    .getByText(aliceText)
    .waitFor({ timeout: 2000 })
    .then(() => true, () => false);
  t.diagnostic(live ? "live update across users: yes" : "live update across users: no, windows reloaded");
  if (!live) {
    for (const page of [alice, bob]) {
      await page.reload();
      await page.getByRole("table", { name: "Customers" }).locator(`tbody tr[data-id="${ID}"]`).waitFor();
    }
    aliceDialog = await openCustomer(alice, ID);
    bobDialog = await openCustomer(bob, ID);
  }
  await aliceDialog.getByText(bobText).waitFor();
  await bobDialog.getByText(aliceText).waitFor();
  assert.deepEqual(await countIn(aliceDialog, [aliceText, bobText]), [1, 1]);
  assert.deepEqual(await countIn(bobDialog, [aliceText, bobText]), [1, 1]);
  assert.equal(await aliceDialog.locator(".comment.pending").count(), 0);

  const stored = (await (await api("alice")).get(`customers/${ID}`)).comments;
  assert.equal(stored.filter((c) => c.text === aliceText && c.author === "alice").length, 1);
  assert.equal(stored.filter((c) => c.text === bobText && c.author === "bob").length, 1);
  await screenshot(bob, "comments-both-windows");
  assert.deepEqual([...alice.problems, ...bob.problems], []);
});
