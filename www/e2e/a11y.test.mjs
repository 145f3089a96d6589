// Accessibility: axe-core (through @axe-core/playwright) on every screen of
// the demo, on a desktop and a phone: no serious or critical violation.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { AxeBuilder } from "@axe-core/playwright";
import { launch, openPage, BASE_URL, logInToCustomers, openCustomer, customerRow, api, conflictOnCity, unique } from "./support.mjs";

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

/** axe on the page, or only on `within` (a dialog: the page behind it was checked on its own). */
async function check(page, screen, within) {
  let axe = new AxeBuilder({ page }).withTags(["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]);
  if (within) axe = axe.include(within);
  const { violations } = await axe.analyze();
  const bad = violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join(" | ")}`);
  assert.deepEqual(bad, [], `${screen}: serious or critical accessibility violations`);
}

for (const [name, viewport] of [
  ["desktop", { width: 1280, height: 860 }],
  ["phone", { width: 390, height: 844 }],
]) {
  test(`every screen passes axe on a ${name}`, async () => {
    const context = await browser.newContext({ viewport });
    const page = await openPage(browser, context);
    await page.goto(BASE_URL + "/");
    await page.getByRole("button", { name: "Log in" }).waitFor();
    await check(page, "login");
    await page.getByLabel("Password").fill("wrong");
    await page.getByRole("button", { name: "Log in" }).click();
    await page.getByRole("alert").waitFor();
    await check(page, "login error");

    const user = name === "desktop" ? "user07" : "user08";
    await logInToCustomers(page, user);
    await check(page, "customers");
    const dialog = await openCustomer(page, "c-0003");
    await check(page, "edit dialog", "dialog[open]");
    await dialog.getByRole("button", { name: "Close" }).click();
    await page.getByRole("button", { name: "New customer" }).click();
    await page.getByRole("dialog", { name: "New customer" }).waitFor();
    await check(page, "new customer dialog", "dialog[open]");
    await page.getByRole("dialog", { name: "New customer" }).getByRole("button", { name: "Cancel" }).click();
    await page.getByRole("searchbox").fill("no such customer anywhere");
    await page.getByTestId("empty-state").waitFor();
    await check(page, "no match");
    await page.getByRole("button", { name: "Clear search" }).click();

    if (name === "phone") {
      await page.getByRole("button", { name: "Menu" }).click();
      await check(page, "open menu");
    }
    await page.getByRole("link", { name: "Calendar" }).click();
    await page.getByTestId("week").locator(".booking").first().waitFor();
    await check(page, "calendar");
    await page.getByTestId("week").locator(".booking").first().getByRole("button", { name: /^Move/ }).click();
    await page.getByRole("dialog", { name: /^Move/ }).waitFor();
    await check(page, "move dialog", "dialog[open]");
    await page.getByRole("dialog", { name: /^Move/ }).getByRole("button", { name: "Keep as it is" }).click();

    if (name === "phone") await page.getByRole("button", { name: "Menu" }).click();
    await page.getByRole("link", { name: "Settings" }).click();
    await page.getByRole("heading", { name: "Spreadsheet sync" }).waitFor();
    await check(page, "settings");
    if (name === "phone") await page.getByRole("button", { name: "Menu" }).click();
    await page.getByRole("link", { name: "Team activity" }).click();
    await page.getByTestId("figure-commits").waitFor();
    await check(page, "team activity");
    await page.getByRole("link", { name: "Server health" }).click();
    await page.getByTestId("figure-requests").waitFor();
    await check(page, "server health");

    // Offline, with queued work under review.
    if (name === "phone") await page.getByRole("button", { name: "Menu" }).click();
    await page.getByRole("link", { name: "Customers" }).click();
    await customerRow(page, "c-0004").waitFor();
    await context.setOffline(true);
    await page.getByTestId("offline-banner").waitFor();
    const edit = await openCustomer(page, "c-0004");
    await edit.getByLabel("City").fill(unique("Axe Offline City"));
    await edit.getByText(/^Offline: queued/).waitFor();
    await edit.getByRole("button", { name: "Close" }).click();
    await page.getByRole("searchbox").fill("Initech Ltd");
    await page.getByRole("button", { name: "Review changes" }).click();
    await check(page, "offline, review changes");
    await context.setOffline(false);
    await page.getByTestId("all-saved").waitFor({ timeout: 15000 });
    await context.close();
  });
}

test("the conflict dialog passes axe", async () => {
  const ID = "c-0011";
  const server = await api("user09");
  const page = await openPage(browser);
  await logInToCustomers(page, "user09");
  // Another person's change lands while this one's save is held back.
  const { conflict } = await conflictOnCity(page, server, ID, unique("Axe City Mine"), unique("Axe City Theirs"));
  await conflict.waitFor();
  await check(page, "conflict dialog", "dialog[open]");
  await conflict.getByRole("button", { name: "Keep theirs" }).click();
  await conflict.waitFor({ state: "detached" });
  await page.context().close();
});
