// The edit dialog's activity timeline: who changed which field from what to
// what, and when, with the comments in between, oldest first; another
// person's change appears in it by itself.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { launch, openPage, logInToCustomers, openCustomer, api, unique, screenshot } from "./support.mjs";

// A customer and users no other end-to-end test touches.
const ID = "c-0077";

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

/** The timeline's entries, oldest first, as their text. */
async function timeline(dialog) {
  return dialog.getByRole("list", { name: "Activity" }).locator(":scope > li").allInnerTexts();
}

test("the dialog's timeline shows each change and the comments in between", async () => {
  const page = await openPage(browser);
  await logInToCustomers(page, "user27");
  const other = await api("user28");
  const city = unique("Graz");
  const phone = unique("+43");
  const note = unique("called about the move");

  const dialog = await openCustomer(page, ID);
  const before = await other.get(`customers/${ID}`);
  const entries = dialog.getByTestId("history-entry");
  // The seeded record's first entry is its creation.
  await entries.first().getByText("created it").waitFor();
  const start = await entries.count();

  // This person's change: field, old value, new value.
  await dialog.getByLabel("City").fill(city);
  await dialog.getByTestId("save-state").getByText(/^Saved \(version/).waitFor();
  const mine = entries.filter({ hasText: "user27 changed" }).filter({ hasText: city });
  await mine.waitFor();
  assert.match(await mine.innerText(), new RegExp(`City: “${before.fields.city}” → “${city}”`));

  // A comment lands after it.
  await dialog.getByLabel("New comment").fill(note);
  await dialog.getByRole("button", { name: "Add comment" }).click();
  await dialog.locator(".comment:not(.pending)", { hasText: note }).waitFor();

  // Someone else's change arrives through the feed and is read into the timeline.
  const now = await other.get(`customers/${ID}`);
  await other.patch(`customers/${ID}`, now.version, { phone });
  const theirs = entries.filter({ hasText: "user28 changed" }).filter({ hasText: phone });
  await theirs.waitFor({ timeout: 15000 });
  assert.match(await theirs.innerText(), new RegExp(`Phone: “${before.fields.phone.replace(/[+]/g, "\\+")}” → “\\${phone}”`));
  assert.equal(await entries.count(), start + 2);

  const items = await timeline(dialog);
  const at = (needle) => items.findIndex((t) => t.includes(needle));
  assert.ok(at("created it") === 0, items.join("\n---\n"));
  assert.ok(at(city) < at(note) && at(note) < at(phone), items.join("\n---\n"));

  // The server's history says the same, newest first.
  const history = await other.get(`customers/${ID}/history?limit=2`);
  assert.deepEqual(
    history.items.map((e) => [e.by, Object.keys(e.changes)]),
    [
      ["user28", ["phone"]],
      ["user27", ["city"]],
    ],
  );
  await screenshot(page, "history-timeline");
});
