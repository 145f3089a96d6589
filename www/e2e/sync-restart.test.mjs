// The server running a sync job is killed and started again: every tab
// says the sync stopped because its server stopped, and the next start works. This test runs its own
// reference server, so it can kill and restart it on the same database.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { launch, screenshot } from "./support.mjs";
import { ownServer } from "./own-server.mjs";

// The job's lease runs out with the server that ran it, and the server
// started again ends it; a server without the job's row says it lost it.
const LOST_WORDS = /the server running this sync stopped|The server no longer knows this sync/i;
const LOST = new RegExp(`The sync stopped: (${LOST_WORDS.source})`, "i");
const server = ownServer(18961, "restart", ["--sheet-latency-ms", "6000"]);
const URL = server.url;
let browser;

before(async () => {
  await server.start();
  browser = await launch();
});
after(async () => {
  await browser?.close();
  await server.stop();
});

test("a server restart mid-sync says the server lost the sync in every tab, and the next start works", async () => {
  const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  const a = await context.newPage();
  await a.goto(URL + "/");
  await a.getByLabel("User").fill("user47");
  await a.getByLabel("Password").fill("demo");
  await a.getByRole("button", { name: "Log in" }).click();
  await a.getByText("Signed in as user47").waitFor();
  await a.goto(URL + "/#/settings");
  const b = await context.newPage();
  await b.goto(URL + "/#/settings");
  for (const p of [a, b]) await p.getByRole("heading", { name: "Spreadsheet sync" }).waitFor();

  await a.getByRole("button", { name: "Start sync" }).click();
  for (const p of [a, b]) {
    await p.locator("[data-testid=sync-phase][data-phase=downloading]").waitFor({ timeout: 10000 });
  }
  // Kill the server mid-download (jobs live in its memory) and start it
  // again on the same database: tokens and records survive, the job not.
  await server.stop();
  await server.start();
  for (const p of [a, b]) {
    await p.getByText(LOST).waitFor({ timeout: 40000 });
    assert.equal(await p.getByTestId("sync-phase").getAttribute("data-phase"), "error");
    assert.equal(await p.getByTestId("sync-phase").innerText(), "Stopped");
  }
  await screenshot(b, "sync-restart-not-found");

  // A new start works, from the tab that did not press before.
  await b.getByRole("button", { name: "Dismiss" }).click();
  await b.getByRole("button", { name: "Start sync" }).click();
  for (const p of [a, b]) {
    await p.locator("[data-testid=sync-phase][data-phase=complete]").waitFor({ timeout: 40000 });
  }
  // The lost job's line in the history speaks words, not the error's code.
  const lost = b.getByRole("table", { name: "Sync history" }).locator("tbody tr").filter({ has: b.locator("td.result-error") });
  await lost.first().waitFor();
  const words = await lost.first().innerText();
  assert.match(words, /Stopped/);
  assert.match(words, LOST_WORDS);
  assert.doesNotMatch(words, /sync_not_found/);
  await context.close();
});
