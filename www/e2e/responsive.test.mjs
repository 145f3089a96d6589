// A phone (390×844, and 360 wide for the login): no page is wider than the
// screen, the navigation collapses behind a Menu button, dialogs fill the
// screen, the calendar stacks, and what a finger presses is at least 44 px.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { launch, openPage, BASE_URL, logInToCustomers, openCustomer, screenshot } from "./support.mjs";

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

async function phone(width = 390, height = 844) {
  const context = await browser.newContext({ viewport: { width, height }, deviceScaleFactor: 2, hasTouch: true });
  return openPage(browser, context);
}

/** No sideways scrolling: the document is no wider than the window. */
async function fits(page, where) {
  const { scrollWidth, innerWidth } = await page.evaluate(() => ({
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
  }));
  assert.ok(scrollWidth <= innerWidth, `${where}: ${scrollWidth} px wide in a ${innerWidth} px window`);
}

/** Every visible control in `scope` is at least 44×44 px (text inputs: 44 high). */
async function touchTargets(page, scope, where) {
  const small = await page.locator(scope).first().evaluate((root) => {
    const out = [];
    for (const el of root.querySelectorAll("button, a[href], input, select, textarea, [role=button]")) {
      const r = el.getBoundingClientRect();
      if (r.width === 0 || r.height === 0) continue; // not shown
      if (el.closest(".visually-hidden") || r.right <= 0) continue; // hidden, or off-screen until focused
      const isRadio = el instanceof HTMLInputElement && (el.type === "radio" || el.type === "checkbox");
      // A radio's target is its label, which is checked instead.
      const box = isRadio ? (el.closest("label")?.getBoundingClientRect() ?? r) : r;
      const wide = el instanceof HTMLInputElement || el instanceof HTMLSelectElement || el instanceof HTMLTextAreaElement || isRadio ? true : box.width >= 44;
      if (box.height < 44 || !wide) out.push(`${el.tagName.toLowerCase()} “${(el.textContent || el.getAttribute("aria-label") || el.getAttribute("name") || "").trim().slice(0, 30)}” ${Math.round(box.width)}×${Math.round(box.height)}`);
    }
    return out;
  });
  assert.deepEqual(small, [], `${where}: touch targets under 44 px`);
}

test("the login page fits a 360 px phone", async () => {
  const page = await phone(360, 740);
  await page.goto(BASE_URL + "/");
  await page.getByRole("button", { name: "Log in" }).waitFor();
  await fits(page, "login");
  await touchTargets(page, "main", "login");
  await page.context().close();
});

test("every page and dialog fits 390×844, with a collapsed menu, full-screen dialogs and a stacked calendar", async () => {
  const page = await phone();
  await logInToCustomers(page, "user06");

  // Navigation collapses: the links and "Log out" sit behind Menu.
  const menu = page.getByRole("button", { name: "Menu" });
  assert.equal(await menu.getAttribute("aria-expanded"), "false");
  assert.equal(await page.getByRole("link", { name: "Calendar" }).isVisible(), false);
  assert.equal(await page.getByRole("button", { name: "Log out" }).isVisible(), false);
  await fits(page, "customers");
  await touchTargets(page, "body", "customers");
  await screenshot(page, "phone-customers");

  await menu.click();
  await page.getByRole("button", { name: "Log out" }).waitFor();
  await fits(page, "open menu");
  await touchTargets(page, "header", "open menu");
  await screenshot(page, "phone-menu");
  await page.getByRole("link", { name: "Calendar" }).click();
  // Choosing a page closes the menu.
  await page.locator('header button[aria-expanded="false"]', { hasText: "Menu" }).waitFor({ timeout: 5000 });

  // The calendar stacks: the form above the week, the days one under another.
  const week = page.getByTestId("week");
  await week.locator(".booking").first().waitFor();
  await fits(page, "calendar");
  await touchTargets(page, "main", "calendar");
  const form = await page.getByRole("form", { name: "Book a resource" }).boundingBox();
  const weekBox = await week.boundingBox();
  assert.ok(form.y + form.height <= weekBox.y, "the booking form is above the week");
  const days = await week.locator(".day").evaluateAll((els) => els.map((e) => e.getBoundingClientRect().x));
  assert.equal(new Set(days.map(Math.round)).size, 1, "the days are stacked");
  await screenshot(page, "phone-calendar");

  // A dialog is a full-screen sheet.
  await week.locator(".booking").first().getByRole("button", { name: /^Move/ }).click();
  const move = page.getByRole("dialog", { name: /^Move/ });
  await move.waitFor();
  await fullScreen(page, move, "move dialog");
  await touchTargets(page, "dialog[open]", "move dialog");
  await move.getByRole("button", { name: "Close" }).click();

  await menu.click();
  await page.getByRole("link", { name: "Settings" }).click();
  await page.getByRole("heading", { name: "Spreadsheet sync" }).waitFor();
  await fits(page, "settings");
  await touchTargets(page, "main", "settings");
  await screenshot(page, "phone-settings");

  await menu.click();
  await page.getByRole("link", { name: "Customers" }).click();
  const dialog = await openCustomer(page, "c-0002");
  await fullScreen(page, dialog, "edit dialog");
  await touchTargets(page, "dialog[open]", "edit dialog");
  await screenshot(page, "phone-edit-dialog");
  await dialog.getByRole("button", { name: "Close" }).click();

  await page.getByRole("button", { name: "New customer" }).click();
  const add = page.getByRole("dialog", { name: "New customer" });
  await fullScreen(page, add, "new customer dialog");
  await touchTargets(page, "dialog[open]", "new customer dialog");
  await add.getByRole("button", { name: "Cancel" }).click();
  assert.deepEqual(page.problems, []);
  await page.context().close();
});

async function fullScreen(page, dialog, where) {
  await fits(page, where);
  const box = await dialog.boundingBox();
  const { w, h } = await page.evaluate(() => ({ w: window.innerWidth, h: window.innerHeight }));
  assert.ok(Math.abs(box.x) < 1 && Math.abs(box.width - w) < 1, `${where}: full width (${box.x}, ${box.width} of ${w})`);
  assert.ok(Math.abs(box.y) < 1 && Math.abs(box.height - h) < 1, `${where}: full height (${box.y}, ${box.height} of ${h})`);
  const overflow = await dialog.evaluate((d) => d.scrollWidth - d.clientWidth);
  assert.ok(overflow <= 0, `${where}: nothing cut off sideways (${overflow} px)`);
}
