// Booking a resource twice: the page warns first (findOverlaps on what it
// has), and if the person insists, the server's 409 overlap is shown
// plainly and nothing is booked.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { launch, openPage, logIn, api, unique, screenshot } from "./support.mjs";

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

async function fillBooking(form, { title, resource, from, to }) {
  await form.getByLabel("Title").fill(title);
  await form.getByLabel("Resource").fill(resource);
  await form.getByLabel("Date").fill("2031-03-15");
  await form.getByLabel("From").fill(from);
  await form.getByLabel("To").fill(to);
  await form.getByRole("button", { name: "Book" }).click();
}

test("a double booking is warned about, then refused by the server with a clear message", async () => {
  const resource = unique("room-test");
  const page = await openPage(browser);
  await logIn(page, "user02");
  await page.getByRole("link", { name: "Calendar" }).click();
  const events = page.getByRole("table", { name: "Calendar events" });
  await events.locator("tbody tr").first().waitFor();
  const form = page.getByRole("form", { name: "Book a resource" });

  await fillBooking(form, { title: "Team meeting", resource, from: "10:00", to: "11:00" });
  await form.getByRole("status").filter({ hasText: "Booked “Team meeting”" }).waitFor();
  const ours = events.locator("tbody tr", { hasText: resource });
  await ours.first().waitFor();
  assert.equal(await ours.count(), 1);

  await fillBooking(form, { title: "Customer call", resource, from: "10:30", to: "11:30" });
  const warning = page.getByTestId("overlap-warning");
  await warning.waitFor();
  assert.match(await warning.innerText(), /Double booking/);
  assert.match(await warning.innerText(), /Team meeting/);
  assert.equal(await page.getByRole("alert").count(), 1);

  await warning.getByRole("button", { name: "Book anyway" }).click();
  const refused = page.getByTestId("booking-refused");
  await refused.waitFor();
  const message = await refused.innerText();
  assert.match(message, /Not booked: the server refused a double booking/);
  assert.match(message, new RegExp(`${resource} is already booked`));
  assert.match(message, /Overlaps Team meeting/);
  await screenshot(page, "calendar-double-booking");

  assert.equal(await ours.count(), 1, "no second event in the table");
  const stored = (await (await api("user02")).get("calendar_events")).items.filter((e) => e.fields.resource === resource);
  assert.deepEqual(stored.map((e) => e.fields.title), ["Team meeting"]);
  // The refused booking is not left behind as a failed change.
  assert.equal(await page.getByTestId("outbox-count").innerText(), "0 queued · 0 failed");
  assert.deepEqual(page.problems.filter((p) => !p.includes("409")), []);
});
