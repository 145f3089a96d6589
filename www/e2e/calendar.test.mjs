// The calendar as a team uses it: a week view with who booked what, 24-hour
// times, a double booking warned about before anything is sent (and no
// "Book anyway" that the server would refuse), and cancel and move through
// the same staged, versioned path as every other change.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { launch, openPage, logIn, api, unique, screenshot, allSaved, gate, nextWeekDay, fillBooking } from "./support.mjs";

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

async function stored(server, resource) {
  return (await server.get("calendar_events")).items.filter((e) => e.fields.resource === resource);
}

test("a week view: book, be warned of a double booking, move and cancel a booking", async () => {
  const resource = unique("room-test");
  const date = nextWeekDay();
  const server = await api("user02");
  const page = await openPage(browser);
  await logIn(page, "user02");
  await page.getByText("Signed in as user02").waitFor();
  await page.getByRole("link", { name: "Calendar" }).click();
  const week = page.getByTestId("week");
  // The seeded bookings of today, with who booked them, in 24-hour time.
  await week.locator(".booking").first().waitFor();
  assert.equal(await week.locator(".day").count(), 7, "seven days");
  assert.match(await week.locator(".booking").first().innerText(), /\d\d:\d\d–\d\d:\d\d[\s\S]*booked by demo/);
  const form = page.getByRole("form", { name: "Book a resource" });
  const times = await form.getByLabel("From").locator("option").allInnerTexts();
  assert.ok(times.includes("14:00") && times.includes("23:45"), "24-hour choices");
  assert.doesNotMatch(await page.locator("main").innerText(), /\b(AM|PM)\b/);

  await fillBooking(form, { title: "Team meeting", resource, date, from: "10:00", to: "11:00" });
  await form.getByRole("status").filter({ hasText: "Booked “Team meeting”" }).waitFor();
  // The week view moved to the booking's week.
  const ours = week.locator(`[data-day="${date}"] .booking`, { hasText: resource });
  await ours.first().waitFor();
  assert.equal(await ours.count(), 1);
  assert.match(await ours.innerText(), /10:00–11:00[\s\S]*Team meeting[\s\S]*booked by user02/);

  // A double booking is said before anything is sent, with no way to insist.
  await fillBooking(form, { title: "Customer call", resource, date, from: "10:30", to: "11:30" });
  const warning = page.getByTestId("overlap-warning");
  await warning.waitFor();
  assert.match(await warning.innerText(), /Double booking[\s\S]*Team meeting[\s\S]*10:00–11:00[\s\S]*Nothing was booked/);
  assert.equal(await page.getByRole("button", { name: "Book anyway" }).count(), 0);
  await screenshot(page, "calendar-double-booking");
  assert.equal(await ours.count(), 1, "no second booking");

  // Move it: a versioned save of start and end.
  const [booked] = await stored(server, resource);
  assert.equal(booked.fields.bookedBy, "user02");
  await ours.getByRole("button", { name: /^Move/ }).click();
  const move = page.getByRole("dialog", { name: /^Move “Team meeting”/ });
  await move.getByLabel("From").selectOption("15:00");
  await move.getByLabel("To").selectOption("16:30");
  await move.getByRole("button", { name: "Move", exact: true }).click();
  await move.waitFor({ state: "detached" });
  await ours.getByText("15:00–16:30").waitFor();
  const [moved] = await stored(server, resource);
  assert.equal(moved.version, booked.version + 1, "one versioned change");
  assert.equal(new Date(moved.fields.start).getHours(), 15);
  assert.equal(new Date(moved.fields.end).getMinutes(), 30);

  // The freed slot can be booked now; the moved one cannot be doubled.
  await fillBooking(form, { title: "Customer call", resource, date, from: "10:30", to: "11:30" });
  await form.getByRole("status").filter({ hasText: "Booked “Customer call”" }).waitFor();
  await ours.nth(1).waitFor();

  // Cancel: a versioned save of the status, asked once.
  const meeting = ours.filter({ hasText: "Team meeting" });
  await meeting.getByRole("button", { name: /^Cancel/ }).click();
  await meeting.getByRole("button", { name: "Yes, cancel it" }).click();
  await meeting.getByText("cancelled").first().waitFor();
  const cancelled = (await stored(server, resource)).find((e) => e.fields.title === "Team meeting");
  assert.equal(cancelled.fields.status, "cancelled");
  assert.equal(cancelled.version, moved.version + 1);
  assert.equal(await meeting.getByRole("button", { name: /^Move/ }).count(), 0, "a cancelled booking is not moved");
  await screenshot(page, "calendar-week");
  await allSaved(page);
  assert.deepEqual(page.problems, []);
});

test("a booking made elsewhere meanwhile: the server's refusal names who has the slot and waits in the week until discarded", async () => {
  const resource = unique("room-race");
  const date = nextWeekDay();
  const page = await openPage(browser);
  await logIn(page, "user03");
  await page.getByText("Signed in as user03").waitFor();
  await page.getByRole("link", { name: "Calendar" }).click();
  await page.getByTestId("week").locator(".booking").first().waitFor();
  // Someone else books 10:00–11:00 on the server; this page has not heard of
  // it when it books an overlapping slot (the feed is held back: held, not
  // refused, so that the page does not take itself for offline and queue it).
  const feed = gate();
  await page.route("**/api/changes**", async (route) => {
    await feed.opened;
    await route.continue().catch(() => {});
  });
  const other = await api("bob");
  const start = new Date(`${date}T10:00`).toISOString();
  const end = new Date(`${date}T11:00`).toISOString();
  await other.post("calendar_events", { title: "Bob's demo", resource, start, end, status: "confirmed", bookedBy: "bob" });
  const form = page.getByRole("form", { name: "Book a resource" });
  await fillBooking(form, { title: "My call", resource, date, from: "10:30", to: "11:30" });
  const refused = page.getByTestId("booking-refused");
  await refused.waitFor();
  assert.match(await refused.innerText(), new RegExp(`Not booked: the server refused a double booking[\\s\\S]*${resource} is already booked[\\s\\S]*Taken by bob's “Bob's demo”`));
  // Kept, not dropped: in the week, with who has the slot, until discarded.
  const card = page.getByTestId("week").getByTestId("week-refused").filter({ hasText: "My call" });
  await card.waitFor();
  assert.match(await card.innerText(), new RegExp(`Not booked: ${resource} is taken then by bob's “Bob's demo”`));
  assert.equal(await page.getByTestId("all-saved").count(), 0, "not “All changes saved” while it waits");
  feed.release();
  await card.getByRole("button", { name: "Discard" }).click();
  await card.waitFor({ state: "detached" });
  await allSaved(page);
  assert.deepEqual(page.problems.filter((p) => !/409|ERR_FAILED|changes/.test(p)), []);
});

test("a booking made offline shows in the week as not yet confirmed; refused when sent, it says who has the slot and is booked at another time", async () => {
  const resource = unique("room-offline");
  const date = nextWeekDay();
  const server = await api("user49");
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const page = await openPage(browser, context);
  await logIn(page, "user49");
  await page.getByText("Signed in as user49").waitFor();
  await page.getByRole("link", { name: "Calendar" }).click();
  await page.getByTestId("week").locator(".booking").first().waitFor();

  // Offline, Bob books 10:00–11:00: queued, and in the week at once.
  await context.setOffline(true);
  await page.getByTestId("offline-banner").waitFor();
  const form = page.getByRole("form", { name: "Book a resource" });
  await fillBooking(form, { title: "Offline call", resource, date, from: "10:00", to: "11:00" });
  await form.getByRole("status").filter({ hasText: "Offline: queued" }).waitFor();
  const queued = page.getByTestId("week").locator(`[data-day="${date}"]`).getByTestId("week-queued").filter({ hasText: resource });
  await queued.waitFor();
  assert.match(await queued.innerText(), /10:00–11:00[\s\S]*Offline call[\s\S]*not yet confirmed/);
  await screenshot(page, "calendar-queued-offline");

  // Meanwhile Alice books 10:30–11:30 of the same room online.
  const alice = await api("user50");
  await alice.post("calendar_events", {
    title: "Alice's demo",
    resource,
    start: new Date(`${date}T10:30`).toISOString(),
    end: new Date(`${date}T11:30`).toISOString(),
    status: "confirmed",
    bookedBy: "user50",
  });

  // Back online the server refuses Bob's: the week says who has the slot.
  await context.setOffline(false);
  const refused = page.getByTestId("week").locator(`[data-day="${date}"]`).getByTestId("week-refused").filter({ hasText: resource });
  await refused.waitFor({ timeout: 20000 });
  assert.match(await refused.innerText(), new RegExp(`Offline call[\\s\\S]*Not booked: ${resource} is taken then by user50's “Alice's demo”`));
  assert.equal(await queued.count(), 0);
  await form.getByText("Sent, and not booked: the week says why.").waitFor();
  assert.equal(await page.getByTestId("all-saved").count(), 0, "not “All changes saved” while it waits");
  await screenshot(page, "calendar-refused");

  // Another time: booked as a new booking, and the refused one is gone.
  await refused.getByRole("button", { name: "Choose another time" }).click();
  const again = page.getByRole("dialog", { name: /^Another time for “Offline call”/ });
  await again.getByLabel("From").selectOption("12:00");
  await again.getByLabel("To").selectOption("13:00");
  await again.getByRole("button", { name: "Book this time" }).click();
  await again.waitFor({ state: "detached" });
  const booked = page.getByTestId("week").locator(`[data-day="${date}"] .booking`, { hasText: resource }).filter({ hasText: "Offline call" });
  await booked.getByText("12:00–13:00").waitFor();
  await refused.waitFor({ state: "detached" });
  await allSaved(page);
  const mine = (await stored(server, resource)).filter((e) => e.fields.title === "Offline call");
  assert.equal(mine.length, 1, "booked once, at the new time");
  assert.equal(new Date(mine[0].fields.start).getHours(), 12);
  assert.deepEqual(page.problems.filter((p) => !/409|ERR_INTERNET_DISCONNECTED|Failed to fetch/.test(p)), []);
  await context.close();
});

test("a move made offline and refused when sent stays on the booking, says who has the slot, and is sent again at another time", async () => {
  const resource = unique("room-move");
  const date = nextWeekDay();
  const mine = await api("user22");
  const booking = await mine.post("calendar_events", {
    title: "Site walk",
    resource,
    start: new Date(`${date}T09:00`).toISOString(),
    end: new Date(`${date}T10:00`).toISOString(),
    status: "confirmed",
    bookedBy: "user22",
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const page = await openPage(browser, context);
  await logIn(page, "user22");
  await page.getByText("Signed in as user22").waitFor();
  await page.getByRole("link", { name: "Calendar" }).click();
  await page.getByRole("button", { name: "Next ›" }).click();
  const row = page.getByTestId("week").locator(`[data-day="${date}"] .booking`, { hasText: resource });
  await row.waitFor({ timeout: 15000 });

  // Offline, moved to 14:00: queued, shown at its new time, not yet confirmed.
  await context.setOffline(true);
  await page.getByTestId("offline-banner").waitFor();
  await row.getByRole("button", { name: /^Move/ }).click();
  const move = page.getByRole("dialog", { name: /^Move “Site walk”/ });
  await move.getByLabel("From").selectOption("14:00");
  await move.getByLabel("To").selectOption("15:00");
  await move.getByRole("button", { name: "Move", exact: true }).click();
  await move.getByText(/^Offline: queued/).waitFor();
  await move.getByRole("button", { name: "Keep as it is" }).click();
  assert.match(await row.innerText(), /14:00–15:00[\s\S]*not yet confirmed/);

  // Someone else takes 14:30 meanwhile; back online the move is refused.
  await (await api("user23")).post("calendar_events", {
    title: "Supplier call",
    resource,
    start: new Date(`${date}T14:30`).toISOString(),
    end: new Date(`${date}T15:30`).toISOString(),
    status: "confirmed",
    bookedBy: "user23",
  });
  await context.setOffline(false);
  const refusal = row.getByTestId("refusal");
  await refusal.waitFor({ timeout: 20000 });
  assert.match(await refusal.innerText(), new RegExp(`Not moved: ${resource} is taken then by user23's “Supplier call” \\(14:30–15:30\\)`));
  await row.getByText("09:00–10:00").waitFor();
  assert.equal(await page.getByTestId("all-saved").count(), 0, "not “All changes saved” while it waits");

  // Another time: the move goes again, and the refusal is gone.
  await refusal.getByRole("button", { name: "Choose another time" }).click();
  const again = page.getByRole("dialog", { name: /^Another time for “Site walk”/ });
  await again.getByLabel("From").selectOption("16:00");
  await again.getByLabel("To").selectOption("17:00");
  await again.getByRole("button", { name: "Book this time" }).click();
  await again.waitFor({ state: "detached" });
  await row.getByText("16:00–17:00").waitFor();
  await refusal.waitFor({ state: "detached" });
  await allSaved(page);
  const now = await mine.get(`calendar_events/${booking.id}`);
  assert.equal(new Date(now.fields.start).getHours(), 16);
  assert.equal(now.version, booking.version + 1, "one move landed");
  assert.deepEqual(page.problems.filter((p) => !/409|ERR_INTERNET_DISCONNECTED|Failed to fetch/.test(p)), []);
  await context.close();
});
