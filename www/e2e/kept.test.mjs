// What a person is told after two people edited one customer at once. Two
// different fields are merged and both stand: nobody is told their value was
// replaced. One field: the person whose value lost sees what they had typed
// and can put it back with "Use mine", a new versioned save on top.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { launch, openPage, logInToCustomers, openCustomer, customerRow, api, gate, unique, screenshot } from "./support.mjs";

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

/** Waits until the input shows `value`. */
async function shows(page, input, value) {
  await page.waitForFunction(([el, v]) => el.value === v, [await input.elementHandle(), value], { timeout: 15000 });
}

/** Holds `page`'s next PATCH of `id` until `held.release()`; `sent` opens when it is on its way. */
async function holdPatch(page, id) {
  const sent = gate();
  const held = gate();
  let once = false;
  await page.route(`**/api/customers/${id}`, async (route) => {
    if (route.request().method() === "PATCH" && !once) {
      once = true;
      sent.release();
      await held.opened;
    }
    await route.continue();
  });
  return { sent, held };
}

test("two people change different fields of one customer: both values stand and nobody is told otherwise", async () => {
  const ID = "c-0121";
  const server = await api("user38");
  const city = unique("Linz");
  const phone = unique("+43 1");
  const bob = await openPage(browser);
  const alice = await openPage(browser);
  await logInToCustomers(bob, "user38");
  await logInToCustomers(alice, "user39");
  const bobDialog = await openCustomer(bob, ID);
  const aliceDialog = await openCustomer(alice, ID);

  // Earlier today Bob set the city, and later Alice changed it on purpose:
  // Bob is told that, once.
  const first = unique("Graz");
  await bobDialog.getByLabel("City").fill(first);
  await bobDialog.getByTestId("save-state").getByText(/^Saved/).waitFor();
  await shows(alice, aliceDialog.getByLabel("City"), first);
  await aliceDialog.getByLabel("City").fill(city);
  await aliceDialog.getByTestId("save-state").getByText(/^Saved/).waitFor();
  await bobDialog.getByTestId("kept-inline").getByText(new RegExp(`user39 kept “${city}” for City`)).waitFor({ timeout: 15000 });

  // Now both at once, on different fields: Alice's phone is held on its way
  // while Bob's email lands; hers is then merged on top of his.
  const { sent, held } = await holdPatch(alice, ID);
  await aliceDialog.getByLabel("Phone").fill(phone);
  await sent.opened;
  const email = `${unique("bob")}@example.com`;
  await bobDialog.getByLabel("Email").fill(email);
  await bobDialog.getByTestId("save-state").getByText(/^Saved/).waitFor();
  held.release();
  await aliceDialog.getByTestId("save-state").getByText(/^Saved, merged/).waitFor();
  await shows(bob, bobDialog.getByLabel("Phone"), phone);

  const stored = await server.get(`customers/${ID}`);
  assert.equal(stored.fields.email, email);
  assert.equal(stored.fields.phone, phone);
  // Bob's email stands: his dialog says it was saved, and nothing else.
  const state = await bobDialog.getByTestId("save-state").innerText();
  assert.doesNotMatch(state, /replaced/, state);
  assert.equal(await alice.getByTestId("kept-notice").count(), 0, "Alice lost nothing");
  assert.equal(await alice.getByTestId("kept-inline").count(), 0);
  await screenshot(bob, "kept-merged-not-replaced");
  assert.deepEqual(alice.problems.filter((p) => !p.includes("409")), []);
  assert.deepEqual(bob.problems, []);
});

test("the person whose value lost sees it and can put it back with “Use mine”", async () => {
  const ID = "c-0122";
  const server = await api("user38");
  const mine = unique("Wels");
  const theirs = unique("Steyr");
  const bob = await openPage(browser);
  const alice = await openPage(browser);
  await logInToCustomers(bob, "user40");
  await logInToCustomers(alice, "user39");
  const bobDialog = await openCustomer(bob, ID);
  const aliceDialog = await openCustomer(alice, ID);

  await bobDialog.getByLabel("City").fill(mine);
  await bobDialog.getByTestId("save-state").getByText(/^Saved/).waitFor();
  // Alice sees his value, and puts hers over it.
  await shows(alice, aliceDialog.getByLabel("City"), mine);
  await aliceDialog.getByLabel("City").fill(theirs);
  await aliceDialog.getByTestId("save-state").getByText(/^Saved/).waitFor();
  const hers = await server.get(`customers/${ID}`);
  assert.equal(hers.fields.city, theirs);

  const inline = bobDialog.getByTestId("kept-inline");
  await inline.waitFor({ timeout: 15000 });
  assert.match(await inline.innerText(), new RegExp(`user39 kept “${theirs}” for City \\(yours was “${mine}”\\)`));
  const toast = bob.getByTestId("kept-notice");
  assert.match(await toast.innerText(), new RegExp(`yours was “${mine}”`));
  await screenshot(bob, "kept-use-mine");

  await inline.getByRole("button", { name: "Use mine" }).click();
  await inline.waitFor({ state: "detached" });
  await shows(bob, bobDialog.getByLabel("City"), mine);
  const after = await server.get(`customers/${ID}`);
  assert.equal(after.fields.city, mine);
  assert.equal(after.updatedBy, "user40");
  assert.equal(after.version, hers.version + 1, "a new versioned save on top of hers");
  assert.equal(await toast.count(), 0, "the toast went with it");
  await bobDialog.getByRole("button", { name: "Close" }).click();
  await customerRow(bob, ID).getByText(mine).waitFor();
  // And now Alice is the one told, with hers to put back.
  await aliceDialog
    .getByTestId("kept-inline")
    .getByText(new RegExp(`user40 kept “${mine}” for City \\(yours was “${theirs}”\\)`))
    .waitFor({ timeout: 15000 });
  assert.deepEqual(alice.problems, []);
  assert.deepEqual(bob.problems, []);
});
