// A change the server refuses never reads as saved: the status bar says
// "All changes saved" only when nothing is waiting, refused or in conflict,
// and otherwise counts them in plain words; the refused change stays listed,
// with why, until the person discards (or retries, or edits) it.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { launch, openPage, logIn, api, unique, allSaved, nextWeekDay, fillBooking } from "./support.mjs";

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

test("a booking made offline and refused when sent is counted as refused until discarded", async () => {
  const resource = unique("room-refused");
  const date = nextWeekDay();
  const page = await openPage(browser);
  await logIn(page, "user07");
  await page.getByText("Signed in as user07").waitFor();
  await page.getByRole("link", { name: "Calendar" }).click();
  await page.getByTestId("week").locator(".booking").first().waitFor();
  await allSaved(page);

  await page.context().setOffline(true);
  await page.getByTestId("offline-banner").waitFor();
  const form = page.getByRole("form", { name: "Book a resource" });
  await fillBooking(form, { title: "Offline call", resource, date, from: "09:00", to: "10:00" });
  const count = page.getByTestId("outbox-count");
  await count.getByText("1 change not yet sent").waitFor();
  assert.equal(await page.getByTestId("all-saved").count(), 0);

  // Meanwhile someone else takes the slot.
  const other = await api("user17");
  const start = new Date(`${date}T09:00`).toISOString();
  const end = new Date(`${date}T10:00`).toISOString();
  await other.post("calendar_events", { title: "Demo for a client", resource, start, end, status: "confirmed" });

  await page.context().setOffline(false);
  await count.getByText("1 change was refused").waitFor({ timeout: 20000 });
  assert.equal(await page.getByTestId("all-saved").count(), 0, "never 'All changes saved' while refused");

  await page.getByRole("button", { name: "Review changes" }).click();
  const review = page.getByRole("region", { name: "Unsent changes" });
  const item = review.locator("li", { hasText: "Offline call" });
  assert.match(await item.innerText(), /New booking “Offline call”[\s\S]*The time is already booked by user17\./);
  assert.doesNotMatch(await review.innerText(), /409|overlap|calendar_events|[0-9a-f]{8}-[0-9a-f]{4}/, "no codes or ids");
  await item.getByRole("button", { name: "Discard" }).click();
  await allSaved(page);
  assert.deepEqual(page.problems.filter((p) => !/409|ERR_INTERNET_DISCONNECTED|ERR_FAILED|net::/.test(p)), []);
});
