// The demo page loads the module from the npm package and talks to the
// reference server, as a person would use it.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { launch, openPage, logIn, screenshot, BASE_URL } from "./support.mjs";

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

test("a demo user logs in and sees the customers", async () => {
  const page = await openPage(browser);
  await logIn(page, "alice");
  await page.getByText("Signed in as alice").waitFor();
  const rows = page.getByRole("table", { name: "Customers" }).locator("tbody tr");
  await rows.first().waitFor();
  assert.equal(await rows.count(), 200);
  await screenshot(page, "foundation-customers");
  assert.deepEqual(page.problems, []);
});

test("a wrong password is said in plain words (no error code), and the page keeps working", async () => {
  const page = await openPage(browser);
  await logIn(page, "alice");
  await page.getByText("Signed in as alice").waitFor();
  const page2 = await openPage(browser);
  await page2.goto(BASE_URL + "/");
  await page2.getByLabel("Password").fill("not-the-password");
  await page2.getByRole("button", { name: "Log in" }).click();
  const alert = page2.getByRole("alert");
  await alert.waitFor();
  const said = await alert.innerText();
  assert.match(said, /wrong username or password/i);
  assert.doesNotMatch(said, /unauthorized/i, "no machine code in front of the message");
  await screenshot(page2, "foundation-bad-password");
});
