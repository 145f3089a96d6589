// Editing a customer as people do: the thread shows the newest comment,
// Ctrl+Enter sends, an empty name is never saved and a bad email is said,
// not dropped.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { launch, openPage, logInToCustomers, openCustomer, api, unique } from "./support.mjs";

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

test("comments: Ctrl+Enter sends, and the thread scrolls to the newest", async () => {
  const ID = "c-0040";
  const page = await openPage(browser);
  await logInToCustomers(page, "user13");
  const dialog = await openCustomer(page, ID);
  const box = dialog.getByLabel("New comment");
  let last;
  for (let n = 0; n < 6; n++) {
    last = `${unique(`note ${n}`)}\nsecond line`;
    await box.fill(last);
    await box.press("Control+Enter");
    await dialog.locator(".comment:not(.pending)").filter({ hasText: last.split("\n")[0] }).waitFor();
  }
  assert.equal(await box.inputValue(), "", "sent and cleared");
  const thread = dialog.getByRole("list", { name: "Activity" });
  // Scrolled to the bottom, and the newest comment is in view.
  await page.waitForFunction(
    (el) => el.scrollHeight > el.clientHeight && el.scrollTop + el.clientHeight >= el.scrollHeight - 2,
    await thread.elementHandle(),
  );
  const newest = await dialog.locator(".comment").last().boundingBox();
  const view = await thread.boundingBox();
  assert.ok(newest.y + newest.height <= view.y + view.height + 1, "the newest comment is in sight");
  const stored = await (await api("user13")).get(`customers/${ID}`);
  assert.equal(stored.comments.at(-1).text, last, "Ctrl+Enter posted it, once");
  assert.equal(stored.comments.filter((c) => c.text === last).length, 1);
  assert.deepEqual(page.problems, []);
});

test("an empty name is not saved, and an invalid email is said before it is lost", async () => {
  const ID = "c-0041";
  const server = await api("user14");
  const before = await server.get(`customers/${ID}`);
  const page = await openPage(browser);
  await logInToCustomers(page, "user14");
  const dialog = await openCustomer(page, ID);

  await dialog.getByLabel("Name").fill("");
  const problems = dialog.getByTestId("field-problems");
  await problems.getByText("Name cannot be empty: not saved.").waitFor();
  assert.equal(await dialog.getByLabel("Name").getAttribute("aria-invalid"), "true");
  await dialog.getByLabel("Name").fill(before.fields.name);
  await problems.waitFor({ state: "detached" });

  await dialog.getByLabel("Email").fill("not-an-address");
  await problems.getByText("Email “not-an-address” is not an address yet: not saved.").waitFor();
  // Closing would lose it: the dialog says so and stays; a second close goes.
  await dialog.getByRole("button", { name: "Close" }).click();
  await problems.getByText("Close again to leave without it.").waitFor();
  assert.equal(await dialog.getByLabel("Email").inputValue(), "not-an-address", "still there to fix");
  await page.keyboard.press("Escape");
  await dialog.waitFor({ state: "detached" });

  await new Promise((r) => setTimeout(r, 800)); // past the debounce
  const after = await server.get(`customers/${ID}`);
  assert.equal(after.fields.name, before.fields.name, "the name was never emptied");
  assert.equal(after.fields.email, before.fields.email);
  assert.deepEqual(page.problems, []);
});
