// "Review changes" in plain words: record names, not ids; what changed, not
// the protocol's terms; a comment written offline says it is queued.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { launch, openPage, logInToCustomers, openCustomer, api, unique, screenshot, allSaved } from "./support.mjs";

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

test("queued work reads as people would say it, and an offline comment says queued", async () => {
  const ID = "c-0013";
  const server = await api("user15");
  const name = (await server.get(`customers/${ID}`)).fields.name;
  const page = await openPage(browser);
  await logInToCustomers(page, "user15");
  await page.context().setOffline(true);
  await page.getByTestId("offline-banner").waitFor();

  const city = unique("Lyon");
  const note = unique("Call back on Monday");
  const dialog = await openCustomer(page, ID);
  await dialog.getByLabel("City").fill(city);
  await dialog.getByText(/^Offline: queued/).waitFor();
  await dialog.getByLabel("New comment").fill(note);
  await dialog.getByRole("button", { name: "Add comment" }).click();
  const comment = dialog.locator(".comment", { hasText: note });
  await comment.getByText("queued: sent when online").waitFor();
  assert.equal(await comment.getByText("sending…").count(), 0, "not 'sending…' while offline");
  await dialog.getByRole("button", { name: "Close" }).click();

  await page.getByRole("button", { name: "Review changes" }).click();
  const review = page.getByRole("region", { name: "Unsent changes" });
  const items = await review.locator("li").allInnerTexts();
  const all = items.join("\n");
  assert.match(all, new RegExp(`${name}: change City to “${city}”`));
  assert.match(all, new RegExp(`Comment on ${name}: “${note}”`));
  assert.match(all, /waiting for the network/);
  assert.doesNotMatch(all, /c-00|customers\/|patch|comment comment/, "no ids or jargon");
  await screenshot(page, "review-changes");

  await page.context().setOffline(false);
  await allSaved(page, 15000);
  const stored = await server.get(`customers/${ID}`);
  assert.equal(stored.fields.city, city);
  assert.equal(stored.comments.at(-1).text, note);
});
