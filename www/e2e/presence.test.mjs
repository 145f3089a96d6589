// Two people on one customer see each other before they collide: who has it
// open, in the list and in the dialog, and which field they edit; gone at
// once when they close it, and within 35 s when their tab dies unseen.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { launch, openPage, logInToCustomers, customerRow, openCustomer, screenshot } from "./support.mjs";

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

test("alice sees bob on a customer in the list and the dialog, the field he edits within 1 s, and gone at once when he closes", async () => {
  const ID = "c-0020";
  const alice = await openPage(browser);
  const bob = await openPage(browser);
  await logInToCustomers(alice, "alice");
  await logInToCustomers(bob, "bob");

  // Bob opens the customer: alice's list shows him on that row (the first
  // sign waits for her page to follow the server's events).
  const bobDialog = await openCustomer(bob, ID);
  const tags = customerRow(alice, ID).getByTestId("row-presence");
  await tags.getByText("bob", { exact: true }).waitFor({ timeout: 15_000 });

  const aliceDialog = await openCustomer(alice, ID);
  const bar = aliceDialog.getByTestId("presence-bar");
  await bar.getByText("bob").waitFor({ timeout: 5_000 });
  assert.match(await bar.innerText(), /^Also here:\s*bob\b/);
  // Bob sees alice too, never himself.
  const bobBar = bobDialog.getByTestId("presence-bar");
  await bobBar.getByText("alice").waitFor({ timeout: 5_000 });
  assert.doesNotMatch(await bobBar.innerText(), /bob/);

  // Bob puts the cursor in City: alice sees it within a second.
  await bobDialog.getByLabel("City").focus();
  const hint = aliceDialog.locator('[data-testid="field-presence"][data-field="city"]');
  await hint.waitFor({ timeout: 1_000 });
  assert.equal(await hint.innerText(), "bob is editing City");
  assert.match(await bar.innerText(), /bob \(editing City\)/);
  await screenshot(alice, "presence-dialog");

  // On a phone the same words fit.
  await alice.setViewportSize({ width: 390, height: 844 });
  await hint.waitFor();
  const box = await hint.boundingBox();
  assert.ok(box && box.x >= 0 && box.x + box.width <= 390, `the hint fits the phone's width: ${JSON.stringify(box)}`);
  await screenshot(alice, "presence-dialog-phone");

  // Bob closes his tab: gone from alice's dialog at once (pagehide).
  await bob.close({ runBeforeUnload: true });
  await bar.waitFor({ state: "detached", timeout: 3_000 });
  assert.equal(await hint.count(), 0);
  assert.deepEqual(alice.problems, []);
  await alice.close();
});

test("a tab killed without a word is gone from the other person's screen within 35 s", { timeout: 120_000 }, async () => {
  const ID = "c-0021";
  const alice = await openPage(browser);
  const bob = await openPage(browser);
  await logInToCustomers(alice, "alice");
  await logInToCustomers(bob, "bob");
  await openCustomer(bob, ID);
  const aliceDialog = await openCustomer(alice, ID);
  const bar = aliceDialog.getByTestId("presence-bar");
  await bar.getByText("bob").waitFor({ timeout: 15_000 });

  // The renderer dies: no pagehide, no last request. The server forgets
  // bob's browser when its heartbeats stop (30 s).
  const cdp = await bob.context().newCDPSession(bob);
  // The answer never comes: the page it would come from is gone.
  void cdp.send("Page.crash").catch(() => {});
  await bar.waitFor({ state: "detached", timeout: 35_000 });
  await alice.close();
  await bob.context().close();
});
