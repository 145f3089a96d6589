// Two people change the same customer's status at once: the second one's
// save answers 409 on the same field, and that person sees base, mine and
// theirs and decides; the one whose value lost is told who kept what.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { launch, openPage, logInToCustomers, customerRow, openCustomer, api, holdPatches, screenshot } from "./support.mjs";

const ID = "c-0010";
const STATUSES = ["lead", "prospect", "customer", "churned"];

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

test("two users change one customer's status at once; the second sees the conflict and resolves it", async () => {
  const server = await api("alice");
  const original = (await server.get(`customers/${ID}`)).fields.status;
  const [aliceStatus, bobStatus] = STATUSES.filter((s) => s !== original);

  const alice = await openPage(browser);
  const bob = await openPage(browser);
  await logInToCustomers(alice, "alice");
  await logInToCustomers(bob, "bob");

  // Bob's PATCH is held on its way out, so it is made on the version both
  // saw while Alice's lands first: a real race, made deterministic.
  const { sent: bobSent, held: bobHeld } = await holdPatches(bob, `customers/${ID}`);

  const aliceDialog = await openCustomer(alice, ID);
  const bobDialog = await openCustomer(bob, ID);
  await bobDialog.getByLabel("Status").selectOption(bobStatus);
  await bobSent.opened;
  await aliceDialog.getByLabel("Status").selectOption(aliceStatus);
  await aliceDialog.getByText(/^Saved \(version \d+\)/).waitFor();
  assert.equal((await server.get(`customers/${ID}`)).fields.status, aliceStatus);
  bobHeld.release();

  const conflict = bob.getByRole("dialog", { name: /^Conflict/ });
  await conflict.waitFor();
  const row = conflict.getByRole("table", { name: "Conflicting fields" }).locator('tr[data-field="status"]');
  assert.deepEqual(await row.locator("td").allInnerTexts().then((t) => t.slice(0, 3)), [original, bobStatus, aliceStatus]);
  assert.equal(await conflict.evaluate((d) => d.contains(document.activeElement)), true, "focus is in the dialog");
  await screenshot(bob, "conflict-dialog");

  // Bob keeps his value on purpose: the resolution goes on Alice's version.
  await conflict.getByRole("button", { name: "Keep mine" }).click();
  await conflict.waitFor({ state: "detached" });
  await bob.unroute(`**/api/customers/${ID}`);
  // The resolver's own dialog no longer asks him to choose.
  await bobDialog.getByTestId("save-state").getByText(/^Conflict resolved: now version \d+/).waitFor();
  await bobDialog.getByRole("button", { name: "Close" }).click();
  const bobRow = customerRow(bob, ID);
  await bobRow.getByText(bobStatus, { exact: true }).waitFor();
  const after = await server.get(`customers/${ID}`);
  assert.equal(after.fields.status, bobStatus);
  assert.equal(after.updatedBy, "bob");

  // Alice, whose value lost, is told who kept what: in her open dialog and
  // in the status bar.
  const told = `bob kept “${bobStatus}” for Status (yours was “${aliceStatus}”).`;
  await aliceDialog.getByTestId("kept-inline").getByText(told).waitFor({ timeout: 15000 });
  await alice.getByTestId("kept-notice").getByText(told).waitFor();
  await aliceDialog.getByTestId("save-state").getByText(/^Saved \(version \d+\), then replaced by bob's change\.$/).waitFor();
  await screenshot(alice, "conflict-loser-told");
  await aliceDialog.getByRole("button", { name: "Close" }).click();
  await alice.getByTestId("kept-notice").getByRole("button", { name: "OK" }).click();
  await alice.getByTestId("kept-notice").waitFor({ state: "detached" });

  // A reload shows the resolved record.
  await alice.reload();
  await customerRow(alice, ID).getByText(bobStatus, { exact: true }).waitFor();
  assert.equal((await server.get(`customers/${ID}`)).version, after.version, "nothing changed it since");
  assert.deepEqual(alice.problems.filter((p) => !p.includes("409")), []);
  assert.deepEqual(bob.problems.filter((p) => !p.includes("409")), []);
});
