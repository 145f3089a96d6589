// The peer rows of `make bench`: crm-sync beside another library doing the
// same job in the same page and the same run. Each benchmark here has a
// "crm" side (crm-sync) and a "base" side (the peer), like those of
// bench.mjs, so run.mjs drives both alike and prints crm-sync ÷ peer.
//
// scripts/bench.sh bundles this file with esbuild (the peers come from
// www/bench/node_modules; "/pkg/crm_sync.js" stays external, so the page
// has one crm-sync module, initialised by bench.mjs). Nothing of the peers
// ships in pkg/.
//
// Figures are milliseconds. Nothing here asserts anything.
import { LocalStore, TabLocks } from "/pkg/crm_sync.js";
// The page's own bench.mjs (kept external by bench.sh: one module, one session).
import { longTasks, pages, QUERY, matchesQuery } from "/bench.mjs";
import Dexie from "dexie";
import { createStore, get as kvGet, set as kvSet } from "idb-keyval";
import { BroadcastChannel as PeerChannel, createLeaderElection } from "broadcast-channel";

const now = () => performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
/** `promise`, or a rejection naming `what` after `ms`. */
const within = (promise, ms, what) =>
  Promise.race([promise, sleep(ms).then(() => Promise.reject(new Error(`${what}: nothing after ${ms} ms`)))]);

/** The record every row writes: the same small customer as bench.mjs. */
const VALUE = {
  name: "Acme Ltd",
  email: "contact@acme.example",
  phone: "+1-555-0001",
  status: "lead",
  owner: "alice",
  city: "Berlin",
};

const PUTS = 500; // per round, over KEYS keys in turn
const KEYS = 20;
const GETS = 1000; // per round, over 50 stored keys
const BATCH = 1000;

function deleteDb(name) {
  return new Promise((ok) => {
    const req = indexedDB.deleteDatabase(name);
    req.onsuccess = req.onerror = req.onblocked = () => ok();
  });
}

// ----- crm-sync's side of the storage rows ---------------------------------
// The same calls as bench.mjs's put/get/batch rows: LocalStore is
// crm-sync's only local key-value API, and each of its writes carries the
// version it expects (the check and the write are one transaction).

async function crmPut(name) {
  const store = await LocalStore.open(name);
  const versions = new Map();
  const t0 = now();
  for (let i = 0; i < PUTS; i++) {
    const key = `k${i % KEYS}`;
    versions.set(key, await store.put(key, VALUE, versions.get(key) ?? null));
  }
  const ms = (now() - t0) / PUTS;
  store.close();
  return ms;
}

async function crmGet(name) {
  const store = await LocalStore.open(name);
  await store.putMany(Array.from({ length: 50 }, (_, i) => ({ key: `g${i}`, value: VALUE, expectedVersion: null })));
  const t0 = now();
  for (let i = 0; i < GETS; i++) {
    if ((await store.get(`g${i % 50}`)) === undefined) throw new Error("get: missing");
  }
  const ms = (now() - t0) / GETS;
  store.close();
  return ms;
}

async function crmPutMany(name) {
  const store = await LocalStore.open(name);
  const entries = Array.from({ length: BATCH }, (_, i) => ({ key: `b${i}`, value: VALUE, expectedVersion: null }));
  const t0 = now();
  await store.putMany(entries);
  const ms = now() - t0;
  store.close();
  return ms;
}

/** Runs `crm` or `peer` on a fresh database of its own, deleted after. */
async function storageRow(label, side, round, crm, peer) {
  const name = `bench-${label}-${side}-${round}`;
  await deleteDb(name);
  try {
    return await (side === "crm" ? crm : peer)(name);
  } finally {
    await deleteDb(name);
  }
}

// ----- Dexie 4 ---------------------------------------------------------------
// As Dexie's getting started sets a database up: `new Dexie(name)`, one
// `version(1).stores(...)` declaring a table and its primary key (inbound:
// the record carries its key), then `table.put`, `table.get` and
// `table.bulkPut`. Dexie writes without a version check.

function openDexie(name) {
  const db = new Dexie(name);
  db.version(1).stores({ customers: "key" });
  return db.open();
}

async function dexiePut(name) {
  const db = await openDexie(name);
  const t0 = now();
  for (let i = 0; i < PUTS; i++) await db.customers.put({ key: `k${i % KEYS}`, v: i, ...VALUE });
  const ms = (now() - t0) / PUTS;
  db.close();
  return ms;
}

async function dexieGet(name) {
  const db = await openDexie(name);
  await db.customers.bulkPut(Array.from({ length: 50 }, (_, i) => ({ key: `g${i}`, ...VALUE })));
  const t0 = now();
  for (let i = 0; i < GETS; i++) {
    if ((await db.customers.get(`g${i % 50}`)) === undefined) throw new Error("get: missing");
  }
  const ms = (now() - t0) / GETS;
  db.close();
  return ms;
}

async function dexieBulkPut(name) {
  const db = await openDexie(name);
  const records = Array.from({ length: BATCH }, (_, i) => ({ key: `b${i}`, ...VALUE }));
  const t0 = now();
  await db.customers.bulkPut(records);
  const ms = now() - t0;
  db.close();
  return ms;
}

// ----- idb-keyval ------------------------------------------------------------
// `set(key, value, store)` and `get(key, store)` on a store of our own
// (`createStore(dbName, storeName)`, as idb-keyval's README shows for
// anything but its single default store). idb-keyval keeps its connection
// open and has no close, so its databases are not deleted (a delete would
// wait for that connection); each round uses a new name.

async function kvPut(name) {
  const store = createStore(name, "kv");
  await kvSet("warm", 0, store); // opens the database
  const t0 = now();
  for (let i = 0; i < PUTS; i++) await kvSet(`k${i % KEYS}`, { v: i, ...VALUE }, store);
  return (now() - t0) / PUTS;
}

async function kvGetLoop(name) {
  const store = createStore(name, "kv");
  for (let i = 0; i < 50; i++) await kvSet(`g${i}`, VALUE, store);
  const t0 = now();
  for (let i = 0; i < GETS; i++) {
    if ((await kvGet(`g${i % 50}`, store)) === undefined) throw new Error("get: missing");
  }
  return (now() - t0) / GETS;
}

async function kvRow(side, round, crm, peer) {
  if (side === "crm") return storageRow("kv", side, round, crm, null);
  return peer(`bench-idbkeyval-${round}-${Math.random().toString(36).slice(2)}`);
}

// ----- leader hand-off when the leader tab closes ------------------------------
// TABS "tabs" in one page (as bench.mjs's hand-off rows do: Web Locks and
// BroadcastChannel messages go through the browser even within a page) on
// one fresh channel. Once one leads and the rest have settled, the leader
// closes (what `pagehide` does: crm-sync's `TabLocks.close()`, the
// broadcast-channel package's `channel.close()`, which makes its elector
// `die()`); the figure is the time until another tab is told it leads
// (crm-sync's `onLeaderChange(true)`, the package's `awaitLeadership()`
// resolving). Then the new leader closes, and so on: TABS - 1 hand-offs a
// round, the median is the round's figure.
//
// Web Locks path: crm-sync `mode: "web-locks"`; the package as it is in
// Chromium (it elects with `navigator.locks` whenever the browser has it).
// BroadcastChannel path: crm-sync `mode: "broadcast"`; the package's own
// message protocol, the one it uses in a browser without Web Locks (made to
// choose it by hiding `navigator.locks` while the elector is created; its
// `responseTime` is its default for native channels, 150 ms).

const TABS = { "web-locks": 21, broadcast: 11 };
/** How long the tabs are left to settle before the first close, and between closes. */
const SETTLE = {
  // All tabs open at once, so by the time the first leads (crm-sync's
  // BroadcastChannel path: after its 2.5 s join wait; the package's message
  // elector: after 2 × 150 ms of applying) the others are past their own
  // first wait; half a second more lets their messages settle.
  first: { "web-locks": 50, broadcast: 500 },
  between: { "web-locks": 10, broadcast: 50 },
};

function withoutWebLocks(fn) {
  Object.defineProperty(navigator, "locks", { value: undefined, configurable: true });
  try {
    return fn();
  } finally {
    delete navigator.locks; // the prototype's getter is back
  }
}

/**
 * Opens `TABS[mode]` tabs with `open(channel, onLead)` (each returns its
 * close function and calls `onLead()` when told it leads) and measures
 * each hand-off.
 */
async function handOffs(channel, mode, open) {
  let told = null; // resolves the wait for the next leader
  const early = []; // tabs told they lead while nobody waited for one
  const tabs = [];
  for (let i = 0; i < TABS[mode]; i++) {
    const tab = { led: false };
    tab.close = open(channel, () => {
      if (tab.led) return;
      tab.led = true;
      const waiting = told;
      told = null;
      if (waiting) waiting(tab);
      else early.push(tab);
    });
    tabs.push(tab);
  }
  const nextLeader = (ms) =>
    within(
      new Promise((ok) => {
        told = ok;
      }),
      ms,
      "no tab was told it leads",
    );
  try {
    let leader = early.shift() ?? (await nextLeader(30000));
    await sleep(SETTLE.first[mode]);
    const times = [];
    for (let i = 1; i < TABS[mode]; i++) {
      if (early.length) throw new Error(`${early.length + 1} tabs were told they lead at once`);
      const next = nextLeader(10000);
      const t0 = now();
      leader.close();
      leader = await next;
      times.push(now() - t0);
      await sleep(SETTLE.between[mode]);
    }
    return median(times);
  } finally {
    for (const t of tabs) t.close();
  }
}

function crmTab(mode) {
  return (channel, onLead) => {
    const tabs = new TabLocks(channel, { mode });
    tabs.onLeaderChange((leads) => leads && onLead());
    if (tabs.isLeader) onLead();
    return () => tabs.close();
  };
}

function peerTab(mode) {
  return (channel, onLead) => {
    const ch = new PeerChannel(channel);
    const elector =
      mode === "broadcast" ? withoutWebLocks(() => createLeaderElection(ch)) : createLeaderElection(ch);
    elector.awaitLeadership().then(onLead, () => {});
    let closed = false;
    return () => {
      if (!closed) ch.close();
      closed = true;
    };
  };
}

function election(side, round, mode) {
  const channel = `bench-elect-${side}-${mode}-${round}-${Math.random().toString(36).slice(2)}`;
  return handOffs(channel, mode, side === "crm" ? crmTab(mode) : peerTab(mode));
}

// ----- Dexie on the large rows ----------------------------------------------
// The same pages as crm-sync's `load` and the same query as its `query` row,
// over the server's customers (100,000 by then). The crm-sync side of these
// rows is measured once, by bench.mjs's `loadLarge` and `query`: run.mjs
// sets Dexie's figures beside those, so the crm side here answers null.

const DEXIE_LOAD = "bench-dexie-load";

function dexieCustomers() {
  const db = new Dexie(DEXIE_LOAD);
  db.version(1).stores({ customers: "id, fields.status, fields.name" });
  return db;
}

/** ms to bring every customer into a Dexie table, `bulkPut` per page. */
async function dexieLoad(side) {
  if (side === "crm") return null;
  const tasks = longTasks();
  const db = dexieCustomers();
  await db.open();
  const t0 = now();
  let count = 0;
  for await (const items of pages()) {
    await db.customers.bulkPut(items);
    count += items.length;
  }
  const ms = now() - t0;
  db.close();
  return { ms, count, ...tasks.stop() };
}

/**
 * The `query` row's query with Dexie: an indexed `where(...).anyOf`, the
 * search as a `filter`, `sortBy` and the first 50; then again after one
 * record changed. Over the table `dexieLoad` filled.
 */
async function dexieQuery(side) {
  if (side === "crm") return null;
  const db = dexieCustomers();
  await db.open();
  const run = async () =>
    (
      await db.customers
        .where("fields.status")
        .anyOf(QUERY.where.status)
        .filter(matchesQuery)
        .sortBy("fields.name")
    ).slice(0, QUERY.limit);
  let t0 = now();
  const first = await run();
  const cold = now() - t0;
  if (!first.length) {
    db.close();
    throw new Error("dexieQuery: the table is empty (dexieLoad runs first)");
  }
  await db.customers.update(first[0].id, { "fields.note": `bench ${Math.random()}` });
  t0 = now();
  await run();
  const warm = now() - t0;
  const records = await db.customers.count();
  db.close();
  return { cold, warm, records };
}

// ----- the rows ----------------------------------------------------------------

export const benches = {
  /** ms per put of one record: `LocalStore.put` against Dexie's `table.put`. */
  dexiePut: (side, round) => storageRow("dexie-put", side, round, crmPut, dexiePut),
  /** ms per get of one record: `LocalStore.get` against `table.get`. */
  dexieGet: (side, round) => storageRow("dexie-get", side, round, crmGet, dexieGet),
  /** ms for 1,000 new records in one transaction: `putMany` against `bulkPut`. */
  dexieBulkPut: (side, round) => storageRow("dexie-bulk", side, round, crmPutMany, dexieBulkPut),
  /** ms per put of one record: `LocalStore.put` against idb-keyval's `set`. */
  kvSet: (side, round) => kvRow(side, round, crmPut, kvPut),
  /** ms per get of one record: `LocalStore.get` against idb-keyval's `get`. */
  kvGet: (side, round) => kvRow(side, round, crmGet, kvGetLoop),
  /** ms from the leader's close to the next leader, Web Locks path. */
  electWeb: (side, round) => election(side, round, "web-locks"),
  /** The same on the BroadcastChannel path. */
  electBroadcast: (side, round) => election(side, round, "broadcast"),
  /** Dexie's side of the 100,000-customer load (`bulkPut` per page). */
  dexieLoad,
  /** Dexie's side of the query row (indexed where + sortBy). */
  dexieQuery,
};

export function run(name, side, round) {
  const bench = benches[name];
  if (!bench) throw new Error(`no peer benchmark ${name}`);
  return bench(side, round);
}
