// The calendar in the words and the time of the person using it: a booking
// made for 09:00 in Vienna shows 09:00 in a browser in Vienna, in its date
// format, in the week, in a conflict and in the history; another person's
// booking is moved or cancelled only after saying whose it is, and the
// history says who moved it.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { launch, openPage, logIn, api, unique, holdPatches, screenshot } from "./support.mjs";

const ZONE = "Europe/Vienna";
const LOCALE = "de-AT";

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

/** "YYYY-MM-DD HH:MM" as Vienna's clock shows the instant `ms`. */
function viennaClock(ms) {
  return new Date(ms).toLocaleString("sv-SE", { timeZone: ZONE }).slice(0, 16);
}

/** The day a week from now, as a calendar in Vienna names it. */
function nextWeekInVienna() {
  return viennaClock(Date.now() + 7 * 24 * 3600 * 1000).slice(0, 10);
}

/** The instant (RFC 3339) that is `hhmm` on `date` in Vienna. */
function inVienna(date, hhmm) {
  const wanted = Date.parse(`${date}T${hhmm}:00Z`);
  let guess = wanted;
  for (let i = 0; i < 3; i++) guess -= Date.parse(`${viennaClock(guess).replace(" ", "T")}:00Z`) - wanted;
  return new Date(guess).toISOString();
}

/** How a browser in Vienna with the de-AT locale writes the day of `iso` next to a time. */
function viennaDay(iso) {
  return new Date(iso).toLocaleDateString(LOCALE, { timeZone: ZONE, weekday: "short", day: "numeric", month: "short" });
}

/** A page in Vienna, its person logged in, on next week's calendar. */
async function calendarInVienna(user) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 }, timezoneId: ZONE, locale: LOCALE });
  const page = await openPage(browser, context);
  await logIn(page, user);
  await page.getByText(`Signed in as ${user}`).waitFor();
  await page.getByRole("link", { name: "Calendar" }).click();
  await page.getByRole("button", { name: "Next ›" }).click();
  return page;
}

test("a conflict over a booking speaks of its title, its room and Vienna's time, never of ids or UTC", async () => {
  const date = nextWeekInVienna();
  const resource = unique("room-vie");
  const title = unique("Quarterly review");
  const mine = await api("user35");
  const other = await api("user36");
  const booking = await mine.post("calendar_events", {
    title,
    resource,
    start: inVienna(date, "09:00"),
    end: inVienna(date, "10:00"),
    status: "confirmed",
    bookedBy: "user35",
  });

  const page = await calendarInVienna("user35");
  const row = page.getByTestId("week").locator(`[data-day="${date}"] .booking`, { hasText: resource });
  await row.waitFor({ timeout: 15000 });
  assert.match(await row.innerText(), /^09:00–10:00/, "09:00 in Vienna is 09:00 on a browser in Vienna");

  // This person moves it to 11:00 while someone else moves it to 13:00: the
  // move is held on its way out until the other one has landed.
  const { sent, held } = await holdPatches(page, `calendar_events/${booking.id}`);
  await row.getByRole("button", { name: /^Move/ }).click();
  const move = page.getByRole("dialog", { name: /^Move/ });
  await move.getByLabel("From").selectOption("11:00");
  await move.getByLabel("To").selectOption("12:00");
  await move.getByRole("button", { name: "Move", exact: true }).click();
  await sent.opened;
  await other.patch(`calendar_events/${booking.id}`, booking.version, {
    start: inVienna(date, "13:00"),
    end: inVienna(date, "14:00"),
  });
  held.release();

  const conflict = page.getByRole("dialog", { name: /^Conflict/ });
  await conflict.waitFor({ timeout: 15000 });
  const said = await conflict.innerText();
  assert.match(said, new RegExp(`^Conflict: ${title}`), said);
  assert.match(said, /user36 changed this booking/);
  const toast = page.getByTestId("toast-conflict");
  await toast.waitFor();
  const toastSaid = await toast.innerText();
  assert.match(toastSaid, new RegExp(`Conflict on ${title}`));
  for (const text of [said, toastSaid]) {
    assert.doesNotMatch(text, new RegExp(booking.id), "no internal id");
    assert.doesNotMatch(text, /calendar_event/, "no collection name");
    assert.doesNotMatch(text, /\d{4}-\d\d-\d\dT\d\d:\d\d/, "no raw UTC time");
  }
  const on = viennaDay(booking.fields.start);
  const start = conflict.getByRole("table", { name: "Conflicting fields" }).locator('tr[data-field="start"]');
  assert.deepEqual((await start.locator("td").allInnerTexts()).slice(0, 3), [`${on}, 09:00`, `${on}, 11:00`, `${on}, 13:00`]);
  await screenshot(page, "calendar-conflict-vienna");

  await conflict.getByRole("button", { name: "Keep theirs" }).click();
  await conflict.waitFor({ state: "detached" });
  await page.unroute(`**/api/calendar_events/${booking.id}`);
  await move.getByRole("button", { name: "Keep as it is" }).click();
  await row.getByText("13:00–14:00").waitFor();
  assert.deepEqual(page.problems.filter((p) => !p.includes("409")), []);
});

test("someone else's booking: moving or cancelling it asks first and names whose it is; the history says who moved it", async () => {
  const date = nextWeekInVienna();
  const resource = unique("room-own");
  const title = unique("Supplier visit");
  const owner = await api("user36");
  const booking = await owner.post("calendar_events", {
    title,
    resource,
    start: inVienna(date, "09:00"),
    end: inVienna(date, "10:00"),
    status: "confirmed",
    bookedBy: "user36",
  });

  const page = await calendarInVienna("user37");
  const row = page.getByTestId("week").locator(`[data-day="${date}"] .booking`, { hasText: resource });
  await row.waitFor({ timeout: 15000 });

  // Cancel: the question names whose booking it is.
  await row.getByRole("button", { name: /^Cancel/ }).click();
  const ask = row.getByRole("group", { name: "Confirm cancel" });
  assert.match(await ask.innerText(), /user36's booking/);
  await ask.getByRole("button", { name: "Keep" }).click();

  // Move: asked first, nothing sent until the person says yes.
  await row.getByRole("button", { name: /^Move/ }).click();
  const move = page.getByRole("dialog", { name: /^Move/ });
  await move.getByLabel("From").selectOption("15:00");
  await move.getByLabel("To").selectOption("16:00");
  await move.getByRole("button", { name: "Move", exact: true }).click();
  const asked = move.getByTestId("move-ask");
  await asked.waitFor();
  assert.match(await asked.innerText(), /user36's booking/);
  await screenshot(page, "calendar-move-ask");
  assert.equal((await owner.get(`calendar_events/${booking.id}`)).version, booking.version, "nothing sent yet");
  await asked.getByRole("button", { name: "Yes, move user36's booking" }).click();
  await move.waitFor({ state: "detached" });
  await row.getByText("15:00–16:00").waitFor();
  assert.match(await row.innerText(), /booked by user36 · changed by user37/);
  const moved = await owner.get(`calendar_events/${booking.id}`);
  assert.equal(moved.updatedBy, "user37");
  assert.equal(moved.fields.start, inVienna(date, "15:00"));

  // The history, in the booking's dialog: who moved it, from when to when.
  await row.getByRole("button", { name: /^Move/ }).click();
  await move.getByText("History").click();
  const entry = move.getByTestId("history-entry").filter({ hasText: "user37 moved it" });
  await entry.waitFor();
  const on = viennaDay(booking.fields.start);
  assert.match(await entry.innerText(), new RegExp(`Start: “${on}, 09:00” → “${on}, 15:00”`));
  assert.doesNotMatch(await move.innerText(), /\d{4}-\d\d-\d\dT/);
  await screenshot(page, "calendar-booking-history");
  assert.deepEqual(page.problems, []);
});
