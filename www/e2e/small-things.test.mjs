// Small things a person notices: nothing to report shows no "0 queued · 0
// failed", and "Resolve conflicts" appearing does not move the page.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { launch, openPage, logInToCustomers, openCustomer, api, unique, gate } from "./support.mjs";

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

test("no zero counts, and no layout jump when a conflict is put off", async () => {
  const ID = "c-0014";
  const server = await api("user16");
  const current = await server.get(`customers/${ID}`);
  const page = await openPage(browser);
  await logInToCustomers(page, "user16");
  await page.getByTestId("all-saved").waitFor();
  assert.equal(await page.getByTestId("outbox-count").count(), 0);
  assert.equal(await page.getByText(/0 queued|0 failed/).count(), 0);
  const top = () => page.locator("main").evaluate((m) => m.getBoundingClientRect().top);
  const before = await top();

  const sent = gate();
  const held = gate();
  await page.route(`**/api/customers/${ID}`, async (route) => {
    if (route.request().method() === "PATCH") {
      sent.release();
      await held.opened;
    }
    await route.continue();
  });
  const dialog = await openCustomer(page, ID);
  await dialog.getByLabel("City").fill(unique("Mine"));
  await sent.opened;
  await server.patch(`customers/${ID}`, current.version, { city: unique("Theirs") });
  held.release();
  const conflict = page.getByRole("dialog", { name: /^Conflict/ });
  await conflict.getByRole("button", { name: "Decide later" }).click();
  await dialog.getByRole("button", { name: "Close" }).click();
  await page.getByRole("button", { name: "Resolve conflicts (1)" }).waitFor();
  assert.equal(await top(), before, "the page below the status bar did not move");
  await page.getByRole("button", { name: "Resolve conflicts (1)" }).click();
  await conflict.getByRole("button", { name: "Keep theirs" }).click();
  await page.getByRole("button", { name: /^Resolve conflicts/ }).waitFor({ state: "detached" });
  assert.equal(await top(), before);
});
