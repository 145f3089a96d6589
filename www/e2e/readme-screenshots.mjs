// The README's screenshots of the demo, desktop and phone, through the same
// headless Chromium as the tests:
//   E2E_BASE_URL=http://127.0.0.1:18940 node www/e2e/readme-screenshots.mjs
// (not a test: node --test runs *.test.mjs only). Writes www/screenshots/.
import { mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { launch, openPage, logInToCustomers, openCustomer, unique } from "./support.mjs";

const OUT = join(dirname(fileURLToPath(import.meta.url)), "..", "screenshots");
mkdirSync(OUT, { recursive: true });
const browser = await launch();
try {
  // Desktop: the customers list, offline, with a queued edit under review.
  const desk = await openPage(browser, await browser.newContext({ viewport: { width: 1280, height: 800 } }));
  await logInToCustomers(desk, "alice");
  await desk.context().setOffline(true);
  await desk.getByTestId("offline-banner").waitFor();
  const dialog = await openCustomer(desk, "c-0002");
  await dialog.getByLabel("City").fill("Graz");
  await dialog.getByText(/^Offline: queued/).waitFor();
  await dialog.getByRole("button", { name: "Close" }).click();
  await desk.getByRole("button", { name: "Review changes" }).click();
  await desk.mouse.move(0, 0);
  await desk.screenshot({ path: join(OUT, "demo-desktop.png") });
  await desk.context().setOffline(false);
  await desk.getByTestId("all-saved").waitFor({ timeout: 15000 });
  await desk.context().close();

  // Phone: the week on the calendar, and the customers list with its menu.
  const phone = await openPage(
    browser,
    await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, hasTouch: true }),
  );
  await logInToCustomers(phone, "bob");
  await phone.screenshot({ path: join(OUT, "demo-phone-customers.png") });
  await phone.getByRole("button", { name: "Menu" }).click();
  await phone.getByRole("link", { name: "Calendar" }).click();
  await phone.getByTestId("week").locator(".booking").first().waitFor();
  await phone.getByTestId("week").locator(".day.today").scrollIntoViewIfNeeded();
  await phone.screenshot({ path: join(OUT, "demo-phone-calendar.png") });
  await phone.context().close();
  console.log(`screenshots in ${OUT} (${unique("run")})`);
} finally {
  await browser.close();
}
