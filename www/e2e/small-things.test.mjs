// Small things a person notices: nothing to report shows no "0 queued · 0
// failed", and "Resolve conflicts" appearing does not move the page.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { launch, openPage, logInToCustomers, customerRow, api, conflictOnCity } from "./support.mjs";

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
  const page = await openPage(browser);
  await logInToCustomers(page, "user16");
  await page.getByTestId("all-saved").waitFor();
  assert.equal(await page.getByTestId("outbox-count").count(), 0);
  assert.equal(await page.getByText(/0 queued|0 failed/).count(), 0);
  const top = () => page.locator("main").evaluate((m) => m.getBoundingClientRect().top);
  const before = await top();

  const { dialog, conflict } = await conflictOnCity(page, server, ID);
  await conflict.getByRole("button", { name: "Decide later" }).click();
  await dialog.getByRole("button", { name: "Close" }).click();
  await page.getByRole("button", { name: "Resolve conflicts (1)" }).waitFor();
  assert.equal(await top(), before, "the page below the status bar did not move");
  await page.getByRole("button", { name: "Resolve conflicts (1)" }).click();
  await conflict.getByRole("button", { name: "Keep theirs" }).click();
  await page.getByRole("button", { name: /^Resolve conflicts/ }).waitFor({ state: "detached" });
  assert.equal(await top(), before);
});

test("a conflict put off with “Decide later” waits over a reload, marked, until asked for", async () => {
  const ID = "c-0123";
  const server = await api("user43");
  const page = await openPage(browser);
  await logInToCustomers(page, "user43");

  // This person's city change is held until someone else's has landed.
  const { conflict } = await conflictOnCity(page, server, ID);
  await conflict.waitFor();
  await conflict.getByRole("button", { name: "Decide later" }).click();
  await conflict.waitFor({ state: "detached" });
  await page.unroute(`**/api/customers/${ID}`);

  // After a reload it waits: the row and the status bar say so, no dialog.
  await page.reload();
  const resolve = page.getByRole("button", { name: "Resolve conflicts (1)" });
  await resolve.waitFor();
  await customerRow(page, ID).locator(".badge.conflict").waitFor();
  assert.equal(await conflict.count(), 0, "not opened again by the reload");
  await page.reload();
  await resolve.waitFor();
  assert.equal(await conflict.count(), 0, "nor by the next one");

  // Asked for, it opens; decided, it is gone.
  await resolve.click();
  await conflict.waitFor();
  await conflict.getByRole("button", { name: "Keep theirs" }).click();
  await conflict.waitFor({ state: "detached" });
  await resolve.waitFor({ state: "detached" });
  assert.deepEqual(page.problems.filter((p) => !p.includes("409")), []);
});
