// The customers list a sales team works from: add and delete a customer
// (crm.create, crm.remove), sort by any column, no developer columns, a
// message when nothing matches, and rows whose conflict was put off marked.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { launch, openPage, logInToCustomers, customerRow, openCustomer, api, unique, conflictOnCity, allSaved, BASE_URL } from "./support.mjs";

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

test("add a customer, find it, delete it", async () => {
  const server = await api("user10");
  const page = await openPage(browser);
  await logInToCustomers(page, "user10");
  const name = unique("Zebra Freight");
  await page.getByRole("button", { name: "New customer" }).click();
  const add = page.getByRole("dialog", { name: "New customer" });
  await add.getByLabel("Name").fill(name);
  await add.getByLabel("Email").fill("buyer@zebra.example");
  await add.getByLabel("City").fill("Graz");
  await add.getByRole("button", { name: "Add customer" }).click();
  await add.waitFor({ state: "detached" });
  await page.getByRole("status").filter({ hasText: `Added “${name}”` }).waitFor();

  await page.getByRole("searchbox").fill(name);
  const table = page.getByRole("table", { name: "Customers" });
  const row = table.locator("tbody tr", { hasText: name });
  await row.waitFor();
  assert.equal(await table.locator("tbody tr").count(), 1);
  const id = await row.getAttribute("data-id");
  const stored = await server.get(`customers/${id}`);
  assert.deepEqual(
    [stored.fields.name, stored.fields.email, stored.fields.city, stored.fields.owner, stored.version],
    [name, "buyer@zebra.example", "Graz", "user10", 1],
  );

  const dialog = await openCustomer(page, id);
  await dialog.getByRole("button", { name: "Delete customer" }).click();
  await dialog.getByRole("button", { name: "Yes, delete" }).click();
  await dialog.waitFor({ state: "detached" });
  await row.waitFor({ state: "detached" });
  await page.getByTestId("empty-state").getByText(`No customer matches “${name}”`).waitFor();
  const gone = await fetch(`${BASE_URL}/api/customers/${id}`, { headers: { authorization: `Bearer ${server.token}` } });
  assert.equal(gone.status, 404, "deleted on the server");
  await page.getByRole("button", { name: "Clear search" }).click();
  await customerRow(page, "c-0001").waitFor();
  await allSaved(page);
  assert.deepEqual(page.problems, []);
});

test("columns sort both ways, there is no Version column, and nothing-matches says so", async () => {
  const page = await openPage(browser);
  await logInToCustomers(page, "user11");
  const table = page.getByRole("table", { name: "Customers" });
  const headers = await table.locator("thead th").allInnerTexts();
  assert.deepEqual(headers.map((h) => h.replace(/[▲▼]/g, "").trim()), ["Name", "Status", "Email", "City", "Owner"]);
  const cities = () => table.locator("tbody td.col-city").allInnerTexts();
  const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });

  await table.getByRole("button", { name: "City" }).click();
  assert.equal(await table.locator('th[aria-sort="ascending"]').innerText().then((t) => t.replace(/[▲▼]/g, "").trim()), "City");
  const up = await cities();
  assert.deepEqual(up, [...up].sort(collator.compare), "A to Z");
  await table.getByRole("button", { name: "City" }).click();
  assert.equal(await table.locator('th[aria-sort="descending"]').count(), 1);
  const down = await cities();
  assert.deepEqual(down, [...down].sort(collator.compare).reverse(), "Z to A");

  await page.getByRole("searchbox").fill("no customer is called this");
  const empty = page.getByTestId("empty-state");
  await empty.waitFor();
  assert.match(await empty.innerText(), /No customer matches “no customer is called this”/);
  assert.equal(await table.locator("tbody tr").count(), 0);
});

test("a row whose conflict was put off for later is marked until it is resolved", async () => {
  const ID = "c-0012";
  const server = await api("user12");
  const page = await openPage(browser);
  await logInToCustomers(page, "user12");
  const { dialog, conflict } = await conflictOnCity(page, server, ID);
  await conflict.getByRole("button", { name: "Decide later" }).click();
  await conflict.waitFor({ state: "detached" });
  await dialog.getByRole("button", { name: "Close" }).click();
  const row = customerRow(page, ID);
  await row.getByText("conflict", { exact: true }).waitFor();
  assert.match(await row.getAttribute("class"), /in-conflict/);
  assert.equal(await customerRow(page, "c-0013").getByText("conflict", { exact: true }).count(), 0);

  await page.getByRole("button", { name: /^Resolve conflicts/ }).click();
  await conflict.getByRole("button", { name: "Keep theirs" }).click();
  await conflict.waitFor({ state: "detached" });
  await row.getByText("conflict", { exact: true }).waitFor({ state: "detached" });
});
