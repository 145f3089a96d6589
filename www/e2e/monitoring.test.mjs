// Knowing what happened: toasts for a finished sheet sync, a conflict and a
// value someone else kept; the record sync log after an offline session;
// the automatic sync surviving a reload and a leader change; the Team
// activity page with the server's figures.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import {
  launch,
  openPage,
  logIn,
  logInToCustomers,
  customerRow,
  openCustomer,
  api,
  holdPatches,
  unique,
  allSaved,
  screenshot,
} from "./support.mjs";

const STATUSES = ["lead", "prospect", "customer", "churned"];

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

async function toSettings(page) {
  await page.getByRole("link", { name: "Settings" }).click();
  await page.getByRole("heading", { name: "Settings", level: 1 }).waitFor();
}

test("toasts: a conflict found, a value someone else kept, a sheet sync completed", async () => {
  const ID = "c-0150";
  const server = await api("user24");
  const original = (await server.get(`customers/${ID}`)).fields.status;
  const [firstStatus, secondStatus] = STATUSES.filter((s) => s !== original);
  const first = await openPage(browser);
  const second = await openPage(browser);
  await logInToCustomers(first, "user24");
  await logInToCustomers(second, "user25");

  // user25's PATCH is held until user24's has landed: both made on one version.
  const { sent, held } = await holdPatches(second, `customers/${ID}`);
  const firstDialog = await openCustomer(first, ID);
  const secondDialog = await openCustomer(second, ID);
  await secondDialog.getByLabel("Status").selectOption(secondStatus);
  await sent.opened;
  await firstDialog.getByLabel("Status").selectOption(firstStatus);
  await firstDialog.getByText(/^Saved \(version \d+\)/).waitFor();
  held.release();

  // The one who met the conflict hears of it in a toast, besides the dialog.
  const conflictToast = second.getByTestId("toast-conflict");
  await conflictToast.getByText(/^Conflict on .*: Status changed by user24 too\.$/).waitFor();
  const conflict = second.getByRole("dialog", { name: /^Conflict/ });
  await conflict.getByRole("button", { name: "Keep mine" }).click();
  await conflict.waitFor({ state: "detached" });
  await second.unroute(`**/api/customers/${ID}`);

  // The one whose value lost is told who kept what, in a toast that stays
  // until read, and it does not block the page: the dialog closes under it.
  const told = `user25 kept “${secondStatus}” for Status (yours was “${firstStatus}”).`;
  const keptToast = first.getByTestId("toasts").getByTestId("kept-notice");
  await keptToast.getByText(told).waitFor({ timeout: 15000 });
  await firstDialog.getByRole("button", { name: "Close" }).click();
  await firstDialog.waitFor({ state: "detached" });
  await screenshot(first, "toast-kept");
  await keptToast.getByRole("button", { name: "OK" }).click();
  await keptToast.waitFor({ state: "detached" });

  // A sheet sync started from Settings ends with a toast, on any page. To
  // the sheet: from it would add the sheet's extra rows for later tests.
  await toSettings(first);
  await first.getByLabel("From the CRM to the sheet").check();
  await first.getByRole("button", { name: "Start sync" }).click();
  await first.getByRole("link", { name: "Customers" }).click();
  const done = first.getByTestId("toast-ok");
  await done.getByText(/^Sheet sync complete: \d+ inserted, \d+ updated, \d+ conflicts?\.$/).waitFor({ timeout: 30000 });
  await screenshot(first, "toast-sync-complete");
  await done.getByRole("button", { name: "Close notice" }).click();
  await done.waitFor({ state: "detached" });
  assert.deepEqual(first.problems, []);
  assert.deepEqual(second.problems.filter((p) => !p.includes("409")), []);
});

test("the record sync log shows the offline session's edits sent when back online", async () => {
  const ID = "c-0151";
  const page = await openPage(browser);
  await logInToCustomers(page, "user27");
  await page.context().setOffline(true);
  await page.getByTestId("offline-banner").waitFor();
  const dialog = await openCustomer(page, ID);
  await dialog.getByLabel("City").fill(unique("Offline"));
  await dialog.getByText(/^Offline: queued/).waitFor();
  await page.keyboard.press("Escape");
  await dialog.waitFor({ state: "detached" });
  await page.context().setOffline(false);
  await page.getByTestId("offline-banner").waitFor({ state: "detached" });
  await allSaved(page, 15000);

  await toSettings(page);
  const log = page.getByRole("table", { name: "Record sync log" });
  const push = log.locator('tbody tr[data-direction="push"]').first();
  await push.waitFor();
  const cells = await push.locator("td").allInnerTexts();
  // At, What, Sent, Received, Merged, Conflicts, Failed, Took, Error
  assert.equal(cells[1], "Sent your changes");
  assert.ok(Number(cells[2]) >= 1, `pushed ${cells[2]}`);
  assert.equal(cells[6], "0");
  assert.match(cells[7], /^\d+ ms$/);
  // The load at the start is there too.
  await log.locator('tbody tr[data-kind="load"]').first().waitFor();
  await screenshot(page, "sync-log");
  assert.deepEqual(page.problems.filter((p) => !/ERR_INTERNET_DISCONNECTED|Failed to fetch/.test(p)), []);
});

/** Rows of the sheet sync history table. */
async function runs(page) {
  return page.getByRole("table", { name: "Sync history" }).locator("tbody tr").count();
}

async function moreRunsThan(page, n, timeout = 30000) {
  const start = Date.now();
  for (;;) {
    const now = await runs(page);
    if (now > n) return now;
    if (Date.now() - start > timeout) assert.fail(`no new run after ${n} (${timeout} ms)`);
    await page.waitForTimeout(250);
  }
}

test("the automatic sync survives a reload and the leader tab closing", async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const a = await openPage(browser, context);
  await logIn(a, "user28");
  await a.getByText("Signed in as user28").waitFor();
  await toSettings(a);
  const status = a.getByTestId("schedule-status");
  await a.getByLabel("Every (minutes)").fill("0.05");
  await a.getByRole("combobox", { name: "Direction" }).selectOption("to-sheet");
  await a.getByRole("button", { name: "Set schedule" }).click();
  await status.getByText(/^Every 3 s \(to the sheet\); next run at \d\d:\d\d:\d\d$/).waitFor();

  // A reload keeps it, and it goes on running.
  await a.reload();
  await a.getByRole("heading", { name: "Settings", level: 1 }).waitFor();
  await status.getByText(/^Every 3 s/).waitFor();
  await a.getByRole("table", { name: "Sync history" }).waitFor({ timeout: 30000 });
  let seen = await moreRunsThan(a, 0);
  const firstNext = await a.getByTestId("schedule-next").innerText();

  // A second tab; the first (the leader) closes; the second carries on.
  const b = await openPage(browser, context);
  await b.goto(a.url());
  await b.getByRole("heading", { name: "Settings", level: 1 }).waitFor();
  await b.getByTestId("schedule-status").getByText(/^Every 3 s/).waitFor();
  await a.close();
  await b.getByRole("table", { name: "Sync history" }).waitFor({ timeout: 30000 });
  seen = await runs(b);
  await moreRunsThan(b, seen);
  await moreRunsThan(b, seen + 1);
  assert.notEqual(await b.getByTestId("schedule-next").innerText(), firstNext, "the next run moved on");
  await screenshot(b, "schedule");

  // Stopped: no run after the one under way.
  await b.getByRole("button", { name: "Stop schedule" }).click();
  await b.getByTestId("schedule-status").getByText("Off").waitFor();
  await b.waitForTimeout(2500);
  const settled = await runs(b);
  await b.waitForTimeout(4000);
  assert.equal(await runs(b), settled, "no run after the schedule was stopped");
  assert.deepEqual(b.problems, []);
  await context.close();
});

test("the Team activity page speaks of people, customers and changes and follows a save; the HTTP figures are on Server health", async () => {
  const ID = "c-0152";
  const page = await openPage(browser);
  await logInToCustomers(page, "user29");
  await page.getByRole("link", { name: "Team activity" }).click();
  await page.getByRole("heading", { name: "Team activity", level: 1 }).waitFor();
  const commits = page.getByTestId("figure-commits");
  await commits.waitFor();
  const before = Number(await commits.innerText());

  // A save made elsewhere shows within a refresh or two, and the customer
  // heads the recently changed ones, with who changed it.
  const server = await api("user29");
  const record = await server.get(`customers/${ID}`);
  await server.patch(`customers/${ID}`, record.version, { city: unique("Team") });
  const start = Date.now();
  while (Number(await commits.innerText()) <= before) {
    assert.ok(Date.now() - start < 10000, "commits did not grow");
    await page.waitForTimeout(200);
  }
  const recent = page.getByRole("table", { name: "Recently changed customers" }).locator("tbody tr").first();
  await recent.and(page.locator(`[data-id="${ID}"]`)).waitFor({ timeout: 15000 });
  assert.deepEqual((await recent.locator("td").allInnerTexts()).slice(0, 2), [record.fields.name, "user29"]);
  // The plot has its points after a few refreshes.
  const plot = page.getByTestId("activity-plot");
  while (Number(await plot.getAttribute("data-points")) < 2) {
    assert.ok(Date.now() - start < 15000, "the plot has no points");
    await page.waitForTimeout(250);
  }
  assert.equal(await plot.locator("polyline").count(), 2);
  assert.match(await page.getByTestId("figure-conflicts").innerText(), /^\d+ \(\d+\.\d% of changes\)$/);
  // No HTTP on a salesperson's page.
  const said = await page.locator("main").innerText();
  assert.doesNotMatch(said, /\b(p50|p95|requests?|route|HTTP|\/api\/|ms)\b/i, said);
  await screenshot(page, "team-activity");

  // Whoever runs the server finds its figures one link away.
  await page.getByRole("link", { name: "Server health" }).click();
  await page.getByRole("heading", { name: "Server health", level: 1 }).waitFor();
  await page.getByRole("table", { name: "Requests by route" }).getByText("POST /api/login").waitFor();
  const [requests] = (await page.getByTestId("figure-requests").innerText()).split(" / ").map(Number);
  assert.ok(requests > 0, `requests ${requests}`);
  await screenshot(page, "server-health");
  assert.deepEqual(page.problems, []);
});
