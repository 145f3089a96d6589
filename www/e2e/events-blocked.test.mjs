// The leader tab follows /api/events as a doorbell for the changes feed.
// Here something between browser and server keeps that stream from ever
// connecting: another person's change must still show, through the 2 s poll
// of /api/changes the client falls back to. Two ways a proxy refuses it: an
// error status (the browser closes the EventSource) and a cut connection
// (the browser would reconnect it by itself every few seconds; the client
// closes a stream that fails before anything came through it). Either way
// the client tries the stream again only every 30 s.
// The stream is counted as tried and refused, so the change cannot have come
// through it. A third proxy buffers: it answers 200 and holds every event
// back; the client counts a stream as connected only once something came
// through it (the reference server says `ready` at once), so it polls.
import { createServer } from "node:http";
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { launch, openPage, logInToCustomers, customerRow, api, unique, screenshot } from "./support.mjs";

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

async function until(cond, ms, what) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`not within ${ms} ms: ${what}`);
}

/**
 * Logs `user` in with every /api/events request answered by `refuse`, then
 * bob changes customer `id` on the server; returns what was seen.
 */
async function changeWhileStreamRefused(user, id, refuse, shot) {
  const page = await openPage(browser);
  const streams = [];
  const tried = [];
  // The stream itself, not the ticket asked for before it.
  await page.route((url) => url.pathname === "/api/events", (route) => {
    streams.push(route.request().url());
    tried.push(Date.now());
    return refuse(route);
  });
  const feedReads = [];
  page.on("request", (r) => {
    if (new URL(r.url()).pathname === "/api/changes") feedReads.push(r.url());
  });
  await logInToCustomers(page, user);
  // The leader opens the stream at its first feed tick; wait for that try,
  // so the change below is made while the stream is known to be refused.
  await until(() => streams.length > 0, 10000, "the leader tries /api/events");
  // A single-use ticket opens the stream; the bearer token never goes in a URL.
  assert.match(streams[0], /[?&]ticket=/, "the stream carries a ticket in its query");
  assert.doesNotMatch(streams[0], /[?&]token=/, "no token in the stream's URL");

  const bob = await api("bob");
  const current = await bob.get(`customers/${id}`);
  const city = unique("Unstreamed City");
  const readsBefore = feedReads.length;
  const changed = await bob.patch(`customers/${id}`, current.version, { city });
  const row = customerRow(page, id);
  await row.getByText(city).waitFor({ timeout: 10000 });
  // The row shows the record at the version the server holds now.
  assert.equal((await bob.get(`customers/${id}`)).version, changed.version);
  assert.equal(await row.getByText("pending").count(), 0);
  assert.ok(feedReads.length > readsBefore, "the change came from a read of /api/changes");
  await screenshot(page, shot);
  return { page, streams, tried };
}

test("a proxy answering 502 on /api/events: changes still arrive by polling, and the stream is not retried at every poll", async () => {
  const { page, streams } = await changeWhileStreamRefused(
    "user30",
    "c-0090",
    (route) => route.fulfill({ status: 502, contentType: "text/plain", body: "Bad Gateway" }),
    "events-502-change-seen",
  );
  // A refused stream is closed for good by the browser; the client opens a
  // new one only every 30 s, and this test lasts well under that.
  assert.ok(streams.length <= 2, `the stream was tried ${streams.length} times`);
  assert.deepEqual(page.problems.filter((p) => !/status of 502 \(Bad Gateway\)/.test(p)), []);
  await page.context().close();
});

test("a connection cut on /api/events: changes still arrive by polling, and the stream is closed, not reconnected every few seconds", async () => {
  const { page, streams, tried } = await changeWhileStreamRefused(
    "user31",
    "c-0091",
    (route) => route.abort("connectionreset"),
    "events-cut-change-seen",
  );
  // Closed at its first failure: in the 7 s after it, where the browser
  // alone would have reconnected about every 3 s, nothing tries again.
  await new Promise((r) => setTimeout(r, Math.max(0, tried[0] + 7000 - Date.now())));
  assert.equal(streams.length, 1, `the stream was tried ${streams.length} times`);
  // Each cut stream logs one failed load, nothing else may go wrong.
  assert.deepEqual(page.problems.filter((p) => !/Failed to load resource: net::ERR_/.test(p)), []);
  await page.context().close();
});

test("a proxy that buffers /api/events (200, then nothing): changes still arrive by polling, not after the 30 s safety read", async () => {
  // Stands in for the proxy: the stream's headers pass, its body never does.
  const held = [];
  const proxy = createServer((req, res) => {
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
    res.flushHeaders();
    held.push(res);
  });
  await new Promise((r) => proxy.listen(0, "127.0.0.1", r));
  const at = `http://127.0.0.1:${proxy.address().port}`;
  try {
    const { page, streams } = await changeWhileStreamRefused(
      "user34",
      "c-0092",
      (route) => route.continue({ url: at + new URL(route.request().url()).pathname }),
      "events-buffered-change-seen",
    );
    assert.ok(held.length >= 1, "the stream reached the buffering proxy");
    assert.equal(streams.length, 1, "an open stream is not opened again");
    assert.deepEqual(page.problems, []);
    await page.context().close();
  } finally {
    for (const res of held) res.destroy();
    proxy.close();
  }
});
