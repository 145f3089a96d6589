// The words on a salesperson's screens: people, customers and changes. No
// version tags, no "pull (feed)" or "push (outbox)", no "Leader tab", no
// "IndexedDB", no byte counts, no "from-sheet" codes, no HTTP figures: those
// are on Server health, for whoever runs the server.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { launch, openPage, logInToCustomers, openCustomer, unique, screenshot } from "./support.mjs";

const JARGON = /\bv\d+\b|\bpull\b|\bpush\b|\(feed\)|\(outbox\)|Leader tab|IndexedDB|\bBytes\b|from-sheet|to-sheet|\bp50\b|\bp95\b|\/api\//;

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

async function noJargon(page, where) {
  const said = await page.locator("body").innerText();
  const found = said.match(JARGON);
  assert.equal(found, null, `${where} says “${found?.[0]}”:\n${said}`);
}

test("a salesperson's screens speak of people, customers and changes", async () => {
  const ID = "c-0124";
  const page = await openPage(browser);
  await logInToCustomers(page, "user48");
  await noJargon(page, "Customers");

  // A change of this person's, in the customer's history.
  const dialog = await openCustomer(page, ID);
  const city = unique("Krems");
  await dialog.getByLabel("City").fill(city);
  await dialog.getByTestId("history-entry").filter({ hasText: city }).waitFor();
  await noJargon(page, "the customer's dialog");
  await page.keyboard.press("Escape");
  await dialog.waitFor({ state: "detached" });

  // Settings after a spreadsheet sync: its history, the record sync log and
  // this device.
  await page.getByRole("link", { name: "Settings" }).click();
  await page.getByLabel("From the CRM to the sheet").check();
  await page.getByRole("button", { name: "Start sync" }).click();
  await page.locator('[data-testid=sync-phase][data-phase=complete]').waitFor({ timeout: 30000 });
  const runs = page.getByRole("table", { name: "Sync history" }).locator("tbody tr");
  await runs.first().waitFor();
  assert.equal((await runs.first().locator("td").allInnerTexts())[1], "To the sheet");
  await page.getByRole("table", { name: "Record sync log" }).locator("tbody tr").first().waitFor();
  await noJargon(page, "Settings");
  await screenshot(page, "settings-words");

  await page.getByRole("link", { name: "Team activity" }).click();
  await page.getByTestId("figure-commits").waitFor();
  await noJargon(page, "Team activity");
  await page.getByRole("link", { name: "Calendar" }).click();
  await page.getByTestId("week").locator(".day").first().waitFor();
  await noJargon(page, "Calendar");
  assert.deepEqual(page.problems, []);
});
