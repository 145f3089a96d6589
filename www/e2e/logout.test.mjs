// Logging out never drops edits queued offline: the person is asked, and
// keeping them keeps the session. A logout that cannot reach the server
// changes nothing and says so.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { launch, openPage, logInToCustomers, openCustomer, api, unique } from "./support.mjs";

const ID = "c-0042";

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

test("logging out with an edit queued offline asks first, keeps it, and it lands", async () => {
  const server = await api("user08");
  const page = await openPage(browser);
  await logInToCustomers(page, "user08");
  const dialogs = [];
  page.on("dialog", (d) => {
    dialogs.push(`${d.type()}: ${d.message()}`);
    d.dismiss();
  });

  await page.context().setOffline(true);
  await page.getByTestId("offline-banner").waitFor();
  const city = unique("Kept City");
  const dialog = await openCustomer(page, ID);
  await dialog.getByLabel("City").fill(city);
  await dialog.getByText(/^Offline: queued/).waitFor();
  await page.keyboard.press("Escape");

  // "Log out anyway and discard them?" — no.
  await page.getByRole("button", { name: "Log out" }).click();
  for (let i = 0; i < 50 && dialogs.length === 0; i += 1) await new Promise((r) => setTimeout(r, 100));
  assert.equal(dialogs.length, 1);
  assert.match(dialogs[0], /^confirm: 1 change\(s\) are not on the server yet/);
  await page.getByText("Signed in as user08").waitFor();
  assert.equal(await page.getByTestId("outbox-count").innerText(), "1 change not yet sent");

  // Back online the edit lands, and then the logout goes through.
  await page.context().setOffline(false);
  for (let i = 0; i < 100; i += 1) {
    if ((await server.get(`customers/${ID}`)).fields.city === city) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal((await server.get(`customers/${ID}`)).fields.city, city);
  await page.getByRole("button", { name: "Log out" }).click();
  await page.getByRole("button", { name: "Log in" }).waitFor();
  assert.equal(dialogs.length, 1, "nothing left to ask about");
});

test("a logout that cannot reach the server changes nothing and says so", async () => {
  const page = await openPage(browser);
  await logInToCustomers(page, "user09");
  const dialogs = [];
  page.on("dialog", (d) => {
    dialogs.push(`${d.type()}: ${d.message()}`);
    d.accept();
  });
  await page.context().setOffline(true);
  await page.getByRole("button", { name: "Log out" }).click();
  for (let i = 0; i < 50 && dialogs.length === 0; i += 1) await new Promise((r) => setTimeout(r, 100));
  assert.equal(dialogs.length, 1);
  assert.match(dialogs[0], /^alert: Could not log out: network/);
  await page.getByText("Signed in as user09").waitFor();
  // The token still works: the session was kept whole.
  await page.context().setOffline(false);
  await page.getByTestId("offline-banner").waitFor({ state: "detached" });
  await page.getByRole("button", { name: "Log out" }).click();
  await page.getByRole("button", { name: "Log in" }).waitFor();
});
