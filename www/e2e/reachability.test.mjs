// Reachability is not navigator.onLine: after one failed request (here a
// connection reset on the customers load of a reload) the client probes the
// server and comes back by itself, with no `online` event and no reload;
// and an answer far too large to be a collection is a typed error, not an
// offline read.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { launch, openPage, logIn, logInToCustomers, customerRow, openCustomer, api, unique } from "./support.mjs";

const ID = "c-0041";

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

/** Matches the collection read itself, not a record's path under it. */
const LIST = /\/api\/customers(\?.*)?$/;

test("after one connection reset the client probes, comes back, and the edit lands", async () => {
  const server = await api("user05");
  const before = await server.get(`customers/${ID}`);
  const page = await openPage(browser);
  await logInToCustomers(page, "user05");

  // The reload reads what changed since the stored copy (or the whole
  // collection): that one request is reset.
  let resets = 0;
  await page.route(/\/api\/(customers|changes)(\?.*)?$/, (route) => {
    if (route.request().method() === "GET" && resets === 0) {
      resets += 1;
      return route.abort("connectionreset");
    }
    return route.continue();
  });
  await page.reload();
  await customerRow(page, ID).waitFor();
  // The stored customers show at once; the catch-up follows.
  for (let i = 0; i < 150 && resets === 0; i += 1) await new Promise((r) => setTimeout(r, 100));
  assert.equal(resets, 1);
  assert.equal(await page.evaluate(() => navigator.onLine), true);

  // The server answers again at once; no `online` event ever comes.
  const city = unique("Flaky City");
  const dialog = await openCustomer(page, ID);
  const t0 = Date.now();
  await dialog.getByLabel("City").fill(city);
  await page.keyboard.press("Escape");
  let after;
  for (let i = 0; i < 100; i += 1) {
    after = await server.get(`customers/${ID}`);
    if (after.fields.city === city) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const ms = Date.now() - t0;
  assert.equal(after.fields.city, city, "the edit never reached the server");
  assert.equal(after.version, before.version + 1, "applied exactly once");
  console.log(`# edit committed ${ms} ms after it was made, following a reset`);
  await page.getByTestId("offline-banner").waitFor({ state: "detached" });
  await customerRow(page, ID).getByText("pending").waitFor({ state: "detached" });
  assert.deepEqual(page.problems.filter((p) => !/ERR_CONNECTION_RESET|Failed to fetch/.test(p)), []);
});

test("an answer too large to be a collection is a typed bad_response, not an offline read", async () => {
  const page = await openPage(browser);
  const padding = " ".repeat(20 * 1024 * 1024);
  await page.route(LIST, (route) =>
    route.request().method() === "GET"
      ? route.fulfill({ status: 200, contentType: "application/json", body: `${padding}{"items":[],"cursor":"0"}` })
      : route.continue(),
  );
  await logIn(page, "user06");
  await page.getByText("Signed in as user06").waitFor();
  const alert = page.getByRole("alert");
  await alert.waitFor();
  assert.match(await alert.innerText(), /bad_response/);
  assert.equal(await page.getByTestId("offline-banner").count(), 0, "not taken for an offline read");
});
