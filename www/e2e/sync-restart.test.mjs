// The server loses a running sync job (it restarts): every tab shows
// `sync_not_found`, and the next start works. This test runs its own
// reference server, so it can kill and restart it on the same database.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { launch, screenshot } from "./support.mjs";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const PORT = 18961;
const URL = `http://127.0.0.1:${PORT}`;
const DIR = mkdtempSync(join(tmpdir(), "crm-sync-restart-"));
let server;
let browser;

async function startServer() {
  server = spawn(
    join(ROOT, "target/debug/crm-sync-server"),
    ["--port", String(PORT), "--db", join(DIR, "crm.db"), "--demo", "--sheet", join(DIR, "sheet.csv"),
     "--static", join(ROOT, "www/dist"), "--sheet-latency-ms", "6000"],
    { stdio: ["ignore", "pipe", "ignore"] },
  );
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("server did not start")), 30000);
    server.stdout.on("data", (d) => {
      if (String(d).includes("listening on")) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}

before(async () => {
  await startServer();
  browser = await launch();
});
after(async () => {
  await browser?.close();
  server?.kill("SIGKILL");
});

test("a server restart mid-sync shows sync_not_found in every tab, and the next start works", async () => {
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
    await p.getByTestId("sync-phase").filter({ hasText: "downloading" }).waitFor({ timeout: 10000 });
  }
  // Kill the server mid-download (jobs live in its memory) and start it
  // again on the same database: tokens and records survive, the job not.
  server.kill("SIGKILL");
  await new Promise((r) => server.on("exit", r));
  await startServer();
  for (const p of [a, b]) {
    await p.getByText(/Sync failed: sync_not_found/).waitFor({ timeout: 30000 });
    assert.equal((await p.getByTestId("sync-phase").innerText()).toLowerCase(), "error");
  }
  await screenshot(b, "sync-restart-not-found");

  // A new start works, from the tab that did not press before.
  await b.getByRole("button", { name: "Dismiss" }).click();
  await b.getByRole("button", { name: "Start sync" }).click();
  for (const p of [a, b]) {
    await p.getByTestId("sync-phase").filter({ hasText: "complete" }).waitFor({ timeout: 40000 });
  }
  await context.close();
});
