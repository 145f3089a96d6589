// The customers list at 10,000 customers: the demo pages, sorts, filters and
// searches through `crm.query` (useQuery), and a change made by someone else
// shows up in the page it belongs to.
//
// Its own server with its own database (the other tests expect the demo's
// 200 customers): the built demo from www/dist, seeded through the server's
// own bulk path, a spreadsheet import, as `make bench` does.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { launch, openPage, gate, ownServer } from "./support.mjs";

const CUSTOMERS = 10000;
const PAGE_SIZE = 250;

let browser;
let server;
let base;

async function call(method, path, { token, body, headers = {} } = {}) {
  const res = await fetch(`${base}/api${path}`, {
    method,
    headers: {
      ...(body === undefined ? {} : { "content-type": "application/json" }),
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...headers,
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

async function tokenOf(user) {
  const r = await call("POST", "/login", { body: { username: user, password: "demo" } });
  assert.equal(r.status, 200, `login ${user}`);
  return r.body.token;
}

async function count(token) {
  let n = 0;
  let after = null;
  do {
    const q = `limit=10000${after ? `&after=${encodeURIComponent(after)}` : ""}`;
    const page = (await call("GET", `/customers?${q}`, { token })).body;
    n += page.items.length;
    after = page.next;
  } while (after);
  return n;
}

before(async () => {
  server = await ownServer("crm-large-");
  base = server.base;
  const sheet = server.sheet;
  // The demo's customers, and the rest from the sheet in one import.
  const token = await tokenOf("alice");
  const have = await count(token);
  const statuses = ["lead", "prospect", "customer", "churned"];
  let csv = "id,version,name,email,phone,status,owner,city\n";
  for (let n = have + 1; n <= CUSTOMERS; n++) {
    const id = `large-${String(n).padStart(5, "0")}`;
    csv += `${id},,Large Customer ${n},l${n}@large.example,+1-555-${n},${statuses[n % 4]},alice,Large City\n`;
  }
  writeFileSync(sheet, csv);
  const started = await call("POST", "/sync", {
    token,
    body: { kind: "from-sheet" },
    headers: { "idempotency-key": crypto.randomUUID() },
  });
  assert.equal(started.status, 202);
  for (;;) {
    const s = (await call("GET", `/sync/${started.body.syncId}`, { token })).body;
    if (["complete", "error", "cancelled"].includes(s.status)) {
      assert.equal(s.status, "complete", s.message);
      break;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  assert.equal(await count(token), CUSTOMERS);
  browser = await launch();
});

after(async () => {
  await browser?.close();
  server?.stop();
});

const names = (table) => table.locator("tbody td.col-name button").allInnerTexts();

test("the list of 10,000 customers pages, sorts, filters and searches, and follows another person's change", async () => {
  const page = await openPage(browser);
  await page.goto(`${base}/`);
  await page.getByLabel("User").fill("user30");
  await page.getByLabel("Password").fill("demo");
  await page.getByRole("button", { name: "Log in" }).click();
  await page.getByText("Signed in as user30").waitFor();
  const table = page.getByRole("table", { name: "Customers" });
  const hint = page.getByText(/^\d+ of \d+ customers$/);
  await page.getByText(`${CUSTOMERS} of ${CUSTOMERS} customers`).waitFor({ timeout: 60000 });
  const pages = Math.ceil(CUSTOMERS / PAGE_SIZE);
  const pager = page.getByRole("navigation", { name: "Customer pages" });
  await pager.getByText(`Page 1 of ${pages}`).waitFor();
  assert.equal(await table.locator("tbody tr").count(), PAGE_SIZE, "one page of rows, not 10,000");

  // Sorted by name, and the next page goes on where this one stopped.
  const first = await names(table);
  const fold = (xs) => xs.map((x) => x.toLowerCase());
  assert.deepEqual(fold(first), [...fold(first)].sort());
  await pager.getByRole("button", { name: "Next page" }).click();
  await pager.getByText(`Page 2 of ${pages}`).waitFor();
  const second = await names(table);
  assert.equal(second.length, PAGE_SIZE);
  assert.ok(first.at(-1).toLowerCase() <= second[0].toLowerCase(), `${first.at(-1)} then ${second[0]}`);

  // The other way round: back to page 1, the largest name first.
  await table.getByRole("button", { name: "Name" }).click();
  await table.locator('th[aria-sort="descending"]').waitFor();
  await pager.getByText(`Page 1 of ${pages}`).waitFor();
  const down = await names(table);
  assert.deepEqual(fold(down), [...fold(down)].sort().reverse());

  // A status filter, then a search: the counts are the matches.
  await page.getByLabel("Status filter").selectOption("churned");
  await page.getByText(/^\d+ of 10000 customers$/).waitFor();
  const churned = Number((await hint.innerText()).split(" ")[0]);
  assert.ok(churned >= 2400 && churned < 2600, `${churned} churned`);
  for (const s of await table.locator("tbody td.col-status").allInnerTexts()) assert.equal(s, "churned");
  await page.getByLabel("Status filter").selectOption("");
  await page.getByRole("searchbox").fill("L777@LARGE");
  await page.getByText(`1 of ${CUSTOMERS} customers`).waitFor();
  assert.equal(await pager.count(), 0, "one page: no pager");
  await table.locator('tbody tr[data-id="large-00777"]').waitFor();

  // Someone else renames that customer: the row follows (the changes feed).
  const other = await tokenOf("bob");
  const now = (await call("GET", "/customers/large-00777", { token: other })).body;
  const renamed = await call("PATCH", "/customers/large-00777", {
    token: other,
    body: { fields: { name: "Renamed Elsewhere 777" } },
    headers: { "if-match": `"${now.version}"`, "idempotency-key": crypto.randomUUID() },
  });
  assert.equal(renamed.status, 200);
  await table.locator('tbody tr[data-id="large-00777"]', { hasText: "Renamed Elsewhere 777" }).waitFor({ timeout: 40000 });
  assert.deepEqual(page.problems, []);
});

test("a first load never takes the pages in so far for all customers; a reload shows the stored ones at once and asks for none", async () => {
  const page = await openPage(browser);
  // The first visit: the first page (1,000) arrives, the rest is held back.
  const rest = gate();
  let held = 0;
  await page.route(/\/api\/customers\?limit=\d+&after=/, async (route) => {
    held++;
    await rest.opened;
    await route.continue();
  });
  await page.goto(`${base}/`);
  await page.getByLabel("User").fill("user46");
  await page.getByLabel("Password").fill("demo");
  await page.getByRole("button", { name: "Log in" }).click();
  const count = page.getByTestId("customer-count");
  await page.getByRole("table", { name: "Customers" }).locator("tbody tr").first().waitFor({ timeout: 60000 });
  await page.getByText("Loading customers… 1000 so far").waitFor({ timeout: 60000 });
  assert.ok(held > 0, "the second page is on its way");
  const said = await count.innerText();
  assert.doesNotMatch(said, /^1000 of 1000 customers$/, said);
  rest.release();
  await page.getByText(`${CUSTOMERS} of ${CUSTOMERS} customers`).waitFor({ timeout: 60000 });
  await page.unroute(/\/api\/customers\?limit=\d+&after=/);

  // The second visit: what this device holds, at once, and no page asked for.
  const asked = [];
  page.on("request", (r) => {
    if (/\/api\/customers(\?|$)/.test(r.url())) asked.push(r.url());
  });
  await page.reload();
  await page.getByRole("table", { name: "Customers" }).locator("tbody tr").first().waitFor({ timeout: 60000 });
  // The stored copy is read a run at a time: the count is the whole or
  // says it is not yet, never a smaller whole ("4000 of 4000").
  const first = await count.innerText();
  assert.match(first, new RegExp(`^(${CUSTOMERS} of ${CUSTOMERS} customers|Loading customers… \\d+ so far)$`), first);
  await page.getByText(`${CUSTOMERS} of ${CUSTOMERS} customers`).waitFor({ timeout: 60000 });
  // Brought up to date from the changes feed: the stored-copy hint goes.
  await page.getByTestId("stale-hint").waitFor({ state: "detached", timeout: 30000 });
  assert.deepEqual(asked, [], "a reload asked for the customers again");
  assert.deepEqual(page.problems, []);
});
