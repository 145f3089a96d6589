// Taking a change back in the demo, with two people on one customer:
// Alice changes City, Bob changes Phone, Alice presses Ctrl+Z: her City is
// back, Bob's Phone stays, and the record has one new version. When Bob
// changed City too, Alice's undo is a conflict for her, and Bob's City is
// not overwritten. A change from the history is undone by its entry.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { launch, openPage, logInToCustomers, openCustomer, api, screenshot, unique } from "./support.mjs";

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

/** Types a new value into a field of the dialog and waits until it is saved. */
async function change(dialog, label, value) {
  await dialog.getByLabel(label, { exact: true }).fill(value);
  await dialog.getByTestId("save-state").getByText(/^Saved/).waitFor();
}

/**
 * Alice and Bob, each in a page of their own, with customer `id` open; and
 * the record's fields as the server has them before either changes it.
 */
async function bothOn(id) {
  const server = await api("alice");
  const original = (await server.get(`customers/${id}`)).fields;
  const alice = await openPage(browser);
  const bob = await openPage(browser);
  await logInToCustomers(alice, "alice");
  await logInToCustomers(bob, "bob");
  const aliceDialog = await openCustomer(alice, id);
  const bobDialog = await openCustomer(bob, id);
  return { server, original, alice, bob, aliceDialog, bobDialog };
}

/** Fails on any problem a page logged but a 409 (how the server says a
 * record moved on; the module merges it), then closes both pages. */
async function closeBoth(alice, bob) {
  assert.deepEqual([...alice.problems, ...bob.problems].filter((p) => !p.includes("409")), []);
  await alice.context().close();
  await bob.context().close();
}

/** Waits until `page`'s open dialog shows `city` in City. */
async function seesCity(page, city) {
  await page.waitForFunction(
    (v) => [...document.querySelectorAll('dialog input[name="city"]')].some((i) => i.value === v),
    city,
    { timeout: 15000 },
  );
}

test("Alice undoes her City with Ctrl+Z: City back, Bob's Phone kept, one new version", async () => {
  const ID = "c-0150";
  const city = unique("Undo City");
  const phone = unique("+43 1");
  const { server, original, alice, bob, aliceDialog, bobDialog } = await bothOn(ID);

  await change(aliceDialog, "City", city);
  // The "Saved" notice offers to take it back.
  await aliceDialog.getByTestId("save-state").getByRole("button", { name: "Undo" }).waitFor();
  await change(bobDialog, "Phone", phone);
  const beforeUndo = await server.get(`customers/${ID}`);
  assert.equal(beforeUndo.fields.phone, phone);

  await aliceDialog.getByLabel("City", { exact: true }).focus();
  await alice.keyboard.press("Control+z");
  await aliceDialog.getByTestId("save-state").getByText(/^Change undone \(version \d+\)\./).waitFor();
  const undone = await server.get(`customers/${ID}`);
  assert.equal(undone.fields.city ?? null, original.city ?? null, "City is back");
  assert.equal(undone.fields.phone, phone, "Bob's Phone is kept");
  assert.equal(undone.version, beforeUndo.version + 1, "one new version");
  assert.equal(await aliceDialog.getByLabel("City", { exact: true }).inputValue(), original.city ?? "");
  await screenshot(alice, "undo-ctrl-z");

  // Bob's Phone, taken back by Alice from the record's history.
  const entry = aliceDialog.getByTestId("history-entry").filter({ hasText: phone }).filter({ hasText: "bob" });
  await entry.getByRole("button", { name: "Undo this change" }).click();
  await aliceDialog.getByTestId("save-state").getByText(/^Change undone \(version \d+\)\./).waitFor({ timeout: 15000 });
  const back = await server.get(`customers/${ID}`);
  assert.equal(back.fields.phone ?? null, original.phone ?? null);
  assert.equal(back.fields.city ?? null, original.city ?? null);
  await screenshot(alice, "undo-history-entry");
  await closeBoth(alice, bob);
});

test("Bob changed City too: Alice's undo is a conflict for her, and nothing is overwritten", async () => {
  const ID = "c-0151";
  const aliceCity = unique("Alice City");
  const bobCity = unique("Bob City");
  const { server, original, alice, bob, aliceDialog, bobDialog } = await bothOn(ID);

  await change(aliceDialog, "City", aliceCity);
  // Bob sees Alice's City, then changes it himself.
  await seesCity(bob, aliceCity);
  await change(bobDialog, "City", bobCity);
  // Alice sees Bob's City arrive.
  await seesCity(alice, bobCity);

  await aliceDialog.getByLabel("City", { exact: true }).focus();
  await alice.keyboard.press("Control+z");
  await aliceDialog.getByTestId("save-state").getByText("Not undone: bob changed City since. Choose what to keep.").waitFor();
  const now = await server.get(`customers/${ID}`);
  assert.equal(now.fields.city, bobCity, "Bob's City is not overwritten");
  const conflict = alice.getByRole("dialog", { name: /^Conflict/ });
  await conflict.waitFor();
  const row = conflict.getByRole("table", { name: "Conflicting fields" }).locator('tr[data-field="city"]');
  // Base: what Alice's change wrote; mine: what was before it; theirs: now.
  assert.deepEqual(await row.locator("td").allInnerTexts().then((t) => t.slice(0, 3)), [
    aliceCity,
    original.city ?? "(empty)",
    bobCity,
  ]);
  await screenshot(alice, "undo-conflict");
  await closeBoth(alice, bob);
});
