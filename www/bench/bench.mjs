// The browser half of `make bench` (run.mjs is the other half). Each
// benchmark has a crm-sync side and a baseline side doing the same job with
// the platform's own API; `run(name, side, round)` runs one round of one
// side and returns its figure. The driver alternates which side goes first,
// so neither always gets a warm cache.
//
// Figures are milliseconds unless a benchmark says otherwise. Nothing here
// asserts anything: a benchmark reports.
import init, { CrmSync, LocalStore, TabLocks } from "/pkg/crm_sync.js";

export const ready = init();

const now = () => performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

/** What every record written here looks like: a small customer. */
const VALUE = {
  name: "Acme Ltd",
  email: "contact@acme.example",
  phone: "+1-555-0001",
  status: "lead",
  owner: "alice",
  city: "Berlin",
};

let session = { baseUrl: "/api", token: "", user: "" };
/** The driver hands over the token it logged in with. */
export function configure(s) {
  session = { ...session, ...s };
}

// ----- raw IndexedDB, the way a plain-JS app would use it ------------------

function request(req) {
  return new Promise((ok, fail) => {
    req.onsuccess = () => ok(req.result);
    req.onerror = () => fail(req.error);
  });
}

function done(tx) {
  return new Promise((ok, fail) => {
    tx.oncomplete = () => ok();
    tx.onerror = () => fail(tx.error);
    tx.onabort = () => fail(tx.error ?? new Error("aborted"));
  });
}

function openRaw(name, store) {
  const req = indexedDB.open(name, 1);
  req.onupgradeneeded = () => req.result.createObjectStore(store);
  return request(req);
}

async function dropDb(name) {
  await request(indexedDB.deleteDatabase(name)).catch(() => {});
}

/** One put in its own readwrite transaction, awaited to `complete`. */
async function rawPut(db, key, value) {
  const tx = db.transaction("kv", "readwrite");
  tx.objectStore("kv").put(value, key);
  await done(tx);
}

// ----- the benchmarks ------------------------------------------------------

const PUTS = 500;
const BATCH = 1000;
const GETS = 1000;
/**
 * Acquire+release loops per round. On the BroadcastChannel path a tab alone
 * takes a lock at once; beside another tab, once that tab has answered the
 * request (before answers, each acquire there waited the settle time,
 * ~100 ms, and the pair row ran 10 loops).
 */
const LOCK_ROUNDS = { "web-locks": 200, broadcast: 200, "broadcast-pair": 200 };
const HANDOFFS = { "web-locks": 40, broadcast: 10 };
const ROUND_TRIPS = 100;
const SAVES = 1000;
/** Records per page of a paged load. */
const PAGE = 1000;

/**
 * The longest stretch the main thread was busy while something ran: a
 * timer that asks for every 4 ms notes the largest gap between its turns.
 */
function heartbeat() {
  let last = now();
  let longest = 0;
  const id = setInterval(() => {
    const t = now();
    longest = Math.max(longest, t - last);
    last = t;
  }, 4);
  return {
    stop() {
      clearInterval(id);
      return Math.max(longest, now() - last);
    },
  };
}

/**
 * The long tasks (50 ms or more) the browser reports while something runs,
 * through PerformanceObserver: the longest one's duration (0 when there was
 * none) and how many there were.
 */
export function longTasks() {
  const seen = [];
  let observer = null;
  try {
    observer = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) seen.push(e.duration);
    });
    observer.observe({ type: "longtask" });
  } catch {
    observer = null; // not supported: the heartbeat still tells
  }
  return {
    stop() {
      if (observer) {
        for (const e of observer.takeRecords()) seen.push(e.duration);
        observer.disconnect();
      }
      return { longtask: seen.length ? Math.max(...seen) : 0, longtasks: seen.length };
    },
  };
}

/** The same pages crm-sync's `load` reads, fetched and parsed in plain JS. */
export async function* pages(collection = "customers") {
  let after = null;
  do {
    const query = `limit=${PAGE}${after ? `&after=${encodeURIComponent(after)}` : ""}`;
    const res = await fetch(`${session.baseUrl}/${collection}?${query}`, {
      headers: { authorization: `Bearer ${session.token}` },
    });
    if (!res.ok) throw new Error(`load: HTTP ${res.status}`);
    const page = JSON.parse(await res.text());
    yield page.items;
    after = page.next;
  } while (after);
}

/** The query of the `query` row, and the same in plain JS. */
export const QUERY = { where: { status: ["lead", "customer"] }, search: "a", orderBy: ["name", "asc"], limit: 50 };
export const matchesQuery = (r) =>
  QUERY.where.status.includes(r.fields.status) &&
  Object.values(r.fields).some((v) => String(v).toLowerCase().includes(QUERY.search));

const benches = {
  /** ms per versioned put; 20 keys written in turn, each with its version. */
  async put(side, round) {
    const name = `bench-put-${side}-${round}`;
    await dropDb(name);
    let ms;
    if (side === "crm") {
      const store = await LocalStore.open(name);
      const versions = new Map();
      const t0 = now();
      for (let i = 0; i < PUTS; i++) {
        const key = `k${i % 20}`;
        versions.set(key, await store.put(key, VALUE, versions.get(key) ?? null));
      }
      ms = (now() - t0) / PUTS;
      store.close();
    } else {
      const db = await openRaw(name, "kv");
      const t0 = now();
      for (let i = 0; i < PUTS; i++) await rawPut(db, `k${i % 20}`, { v: i, value: VALUE });
      ms = (now() - t0) / PUTS;
      db.close();
    }
    await dropDb(name);
    return ms;
  },

  /**
   * ms for 1,000 records in one transaction: `LocalStore.putMany` (each
   * entry version-checked, all or nothing) against raw puts in one
   * transaction.
   */
  async batch(side, round) {
    const name = `bench-batch-${side}-${round}`;
    await dropDb(name);
    let ms;
    if (side === "crm") {
      const store = await LocalStore.open(name);
      const t0 = now();
      await store.putMany(Array.from({ length: BATCH }, (_, i) => ({ key: `b${i}`, value: VALUE, expectedVersion: null })));
      ms = now() - t0;
      store.close();
    } else {
      const db = await openRaw(name, "kv");
      const t0 = now();
      const tx = db.transaction("kv", "readwrite");
      const os = tx.objectStore("kv");
      for (let i = 0; i < BATCH; i++) os.put({ v: 1, value: VALUE }, `b${i}`);
      await done(tx);
      ms = now() - t0;
      db.close();
    }
    await dropDb(name);
    return ms;
  },

  /** ms per get of one of 50 stored keys. */
  async get(side, round) {
    const name = `bench-get-${side}-${round}`;
    await dropDb(name);
    let ms;
    if (side === "crm") {
      const store = await LocalStore.open(name);
      await Promise.all(Array.from({ length: 50 }, (_, i) => store.put(`g${i}`, VALUE, null)));
      const t0 = now();
      for (let i = 0; i < GETS; i++) {
        if ((await store.get(`g${i % 50}`)) === undefined) throw new Error("get: missing");
      }
      ms = (now() - t0) / GETS;
      store.close();
    } else {
      const db = await openRaw(name, "kv");
      const fill = db.transaction("kv", "readwrite");
      for (let i = 0; i < 50; i++) fill.objectStore("kv").put({ v: 1, value: VALUE }, `g${i}`);
      await done(fill);
      const t0 = now();
      for (let i = 0; i < GETS; i++) {
        const tx = db.transaction("kv", "readonly");
        if ((await request(tx.objectStore("kv").get(`g${i % 50}`))) === undefined) {
          throw new Error("get: missing");
        }
      }
      ms = (now() - t0) / GETS;
      db.close();
    }
    await dropDb(name);
    return ms;
  },

  /**
   * ms to bring every customer from the server into memory and IndexedDB.
   * Both sides fetch the same `GET /api/customers`; the baseline parses it
   * with JSON.parse, keeps a Map by id and puts every record in one
   * transaction. The database of each side is reused between rounds (the
   * first round writes into an empty store, later ones overwrite).
   */
  async load(side) {
    let ms;
    let count;
    const beat = heartbeat();
    const tasks = longTasks();
    if (side === "crm") {
      // A first load: what an earlier round stored would be answered
      // from IndexedDB (the reopen rows measure that).
      await dropDb(`crm-sync:${session.user}`);
      // CrmSync.open is inside the watched time: it must do no
      // collection-sized work either.
      const crm = await CrmSync.open({ ...session });
      const t0 = now();
      const list = await crm.load("customers", { pageSize: PAGE });
      ms = now() - t0;
      count = list.length;
      crm.close();
    } else {
      // The same pages, parsed with JSON.parse, one transaction per page.
      const db = await openRaw("bench-load-raw", "records");
      const t0 = now();
      const byId = new Map();
      for await (const items of pages()) {
        const tx = db.transaction("records", "readwrite");
        const os = tx.objectStore("records");
        for (const r of items) {
          byId.set(r.id, r);
          os.put(r, `customers/${r.id}`);
        }
        await done(tx);
      }
      ms = now() - t0;
      count = byId.size;
      db.close();
    }
    return { ms, count, longest: beat.stop(), ...tasks.stop() };
  },

  /** The same as `load`, run once the server holds 100,000 customers. */
  loadLarge: (side) => benches.load(side),

  /**
   * A second visit, online: IndexedDB holds the customers (the load rows
   * left them there). crm: `open` + `load`, which answers from IndexedDB
   * and then catches up from the kept feed cursor; `ms` is until the
   * records are in hand, `caughtUp` until `stale` went. Baseline: opening
   * the same database and a raw `getAll` of the same records into a Map.
   */
  async reopen(side, _round, offline = false) {
    const beat = heartbeat();
    const tasks = longTasks();
    let ms;
    let count;
    let caughtUp = null;
    // Of `ms`, the part `CrmSync.open` took (in the raw results only).
    let opened = null;
    const t0 = now();
    if (side === "crm") {
      const crm = await CrmSync.open({ ...session });
      opened = now() - t0;
      if (offline) crm.setOnline(false);
      const list = await crm.load("customers", { pageSize: PAGE });
      ms = now() - t0;
      count = list.length;
      if (!offline) {
        await caughtUpWith(crm, list[0]?.id);
        caughtUp = now() - t0;
      }
      crm.close();
    } else {
      const db = await request(indexedDB.open(`crm-sync:${session.user}`));
      const range = IDBKeyRange.bound("customers/", "customers/\uffff");
      const all = await request(db.transaction("records").objectStore("records").getAll(range));
      const byId = new Map();
      for (const r of all) byId.set(r.id, r);
      ms = now() - t0;
      count = byId.size;
      db.close();
    }
    return { ms, count, caughtUp, opened, longest: beat.stop(), ...tasks.stop() };
  },
  /**
   * Not timed: a first load of every customer, so that the reopen rows
   * find them stored when the load rows did not run (`BENCH_ONLY`).
   */
  async prime() {
    await dropDb(`crm-sync:${session.user}`);
    const crm = await CrmSync.open({ ...session });
    const list = await crm.load("customers", { pageSize: PAGE });
    await caughtUpWith(crm, list[0]?.id);
    crm.close();
    return { count: list.length };
  },

  /** `reopen` with the server out of reach (`setOnline(false)`). */
  reopenOffline: (side, round) => benches.reopen(side, round, true),
  reopenLarge: (side, round) => benches.reopen(side, round),
  reopenLargeOffline: (side, round) => benches.reopen(side, round, true),

  /**
   * Bytes over the network (the API's requests, headers included, as
   * Resource Timing's `transferSize` gives them) of three visits: a first
   * load, a reopen with nothing changed, and a reopen after 100 customers
   * changed on the server. Each visit lasts until the catch-up is done and
   * the client closed (the event stream's bytes count then). One side.
   */
  async bytes(side) {
    if (side !== "crm") return null;
    performance.setResourceTimingBufferSize(100000);
    const visit = async () => {
      performance.clearResourceTimings();
      const crm = await CrmSync.open({ ...session });
      const list = await crm.load("customers", { pageSize: PAGE });
      await caughtUpWith(crm, list[0]?.id);
      crm.close();
      await new Promise((r) => setTimeout(r, 300));
      let bytes = 0;
      for (const e of performance.getEntriesByType("resource")) {
        if (e.name.includes("/api/")) bytes += e.transferSize || e.encodedBodySize || 0;
      }
      return { bytes, list };
    };
    await dropDb(`crm-sync:${session.user}`);
    const first = await visit();
    const unchanged = await visit();
    // 100 customers change on the server while nobody looks.
    const auth = { authorization: `Bearer ${session.token}` };
    const changed = first.list.slice(0, 100).map((r) => r.id);
    for (const id of changed) {
      const current = await (await fetch(`${session.baseUrl}/customers/${id}`, { headers: auth })).json();
      await fetch(`${session.baseUrl}/customers/${id}`, {
        method: "PATCH",
        headers: { ...auth, "content-type": "application/json", "if-match": `"${current.version}"`, "idempotency-key": crypto.randomUUID() },
        body: JSON.stringify({ fields: { note: `bench ${Math.random()}` } }),
      });
    }
    const after = await visit();
    return { first: first.bytes, unchanged: unchanged.bytes, changed: after.bytes, records: first.list.length };
  },

  /**
   * `crm.query` with a where, a search, an orderBy and a limit of 50 over
   * the loaded customers: `cold` is the first run, `warm` the run after one
   * record changed. The baseline filters and sorts the same objects with
   * Array.filter and sort.
   */
  async query(side) {
    const crm = await CrmSync.open({ ...session });
    const list = await crm.load("customers", { pageSize: PAGE });
    const q = QUERY;
    let cold;
    let warm;
    let count;
    if (side === "crm") {
      let t0 = now();
      count = crm.query("customers", q).total;
      cold = now() - t0;
      // One record changes (as a committed save or a feed change would).
      await crm.save("customers", list[0].id, { note: `bench ${Math.random()}` });
      t0 = now();
      crm.query("customers", q);
      warm = now() - t0;
    } else {
      const run = (records) =>
        records
          .filter(matchesQuery)
          .sort((a, b) => String(a.fields.name ?? "").localeCompare(String(b.fields.name ?? "")))
          .slice(0, q.limit);
      let t0 = now();
      run(list);
      cold = now() - t0;
      t0 = now();
      run(crm.list("customers"));
      warm = now() - t0;
      count = list.filter(matchesQuery).length;
    }
    crm.close();
    return { cold, warm, records: list.length, count };
  },

  /** ms per uncontended acquire + release, TabLocks on the Web Locks path. */
  lockWeb: (side, round) => lockLoop(side, round, "web-locks"),
  /** The same on the BroadcastChannel path (its baseline stays raw Web Locks). */
  lockBroadcast: (side, round) => lockLoop(side, round, "broadcast"),
  /** The same with a second tab open on the channel (idle, standing for leader). */
  lockBroadcastPair: (side, round) => lockLoop(side, round, "broadcast", true),
  /** ms from one tab's release to the waiting tab's grant, Web Locks path. */
  handoffWeb: (side, round) => handoff(side, round, "web-locks"),
  /** The same on the BroadcastChannel path. */
  handoffBroadcast: (side, round) => handoff(side, round, "broadcast"),

  /**
   * ms from a commit in one client (its `record` event, origin `local`,
   * that follows the server's answer) to the other client's `record` event
   * for that record (and, as `fromSave`, from the save's first `local`
   * event, so including the PATCH); two clients of one
   * user in one page stand for two tabs. The baseline is a raw
   * BroadcastChannel round trip between two channel objects. The crm side
   * gives up after 3 s and answers `null` (not available).
   */
  async recordEvent(side, round) {
    if (side === "base") {
      const name = `bench-bc-${round}`;
      const a = new BroadcastChannel(name);
      const b = new BroadcastChannel(name);
      b.onmessage = (e) => b.postMessage(e.data);
      const times = [];
      for (let i = 0; i < ROUND_TRIPS; i++) {
        const back = new Promise((ok) => (a.onmessage = ok));
        const t0 = now();
        a.postMessage({ i, record: VALUE });
        await back;
        times.push(now() - t0);
      }
      a.close();
      b.close();
      return median(times);
    }
    const opts = { ...session, debounceMs: 0 };
    const one = await CrmSync.open(opts);
    const other = await CrmSync.open(opts);
    try {
      await one.load("benchdeb");
      await other.load("benchdeb");
      let stagedAt = 0;
      let committedAt = 0;
      let seenAt = 0;
      let origin = "";
      const seen = new Promise((ok) => {
        const stop = other.subscribe((e) => {
          if (e.type === "record" && e.id === "r2" && e.origin !== "local") {
            seenAt = now();
            origin = e.origin;
            stop();
            ok();
          }
        });
      });
      // The committing client's first `local` event is the save staged
      // (before the PATCH); the last one before the other client's event is
      // the commit (stored, after the server's answer).
      one.subscribe((e) => {
        if (e.type === "record" && e.id === "r2" && e.origin === "local" && !seenAt) {
          if (!stagedAt) stagedAt = now();
          committedAt = now();
        }
      });
      await one.save("benchdeb", "r2", { n: round });
      const got = await Promise.race([seen.then(() => true), sleep(3000).then(() => false)]);
      return got ? { ms: seenAt - committedAt, fromSave: seenAt - stagedAt, origin } : null;
    } finally {
      one.close();
      other.close();
    }
  },

  /** Requests sent for 1,000 saves of one record within the debounce window. */
  async saves(side) {
    if (side === "base") return { requests: SAVES, ms: null }; // one PATCH per call
    const crm = await CrmSync.open({ ...session });
    try {
      await crm.load("benchdeb");
      const before = crm.metrics().requests;
      const t0 = now();
      const all = [];
      for (let i = 0; i < SAVES; i++) all.push(crm.save("benchdeb", "r1", { n: i }));
      const results = await Promise.all(all);
      const ms = now() - t0;
      const statuses = [...new Set(results.map((r) => r.status))].join(",");
      return { requests: crm.metrics().requests - before, ms, statuses };
    } finally {
      crm.close();
    }
  },
};

async function lockLoop(side, round, mode, pair = false) {
  const name = `bench-lock-${mode}${pair ? "-pair" : ""}-${round}`;
  const rounds = LOCK_ROUNDS[pair ? "broadcast-pair" : mode];
  if (side === "base") {
    const t0 = now();
    for (let i = 0; i < rounds; i++) await navigator.locks.request(name, async () => {});
    return (now() - t0) / rounds;
  }
  const locks = new TabLocks(name, { mode });
  const other = pair ? new TabLocks(name, { mode }) : null;
  try {
    // The first acquire on the BroadcastChannel path waits out the join
    // period (listening for other tabs); measure the steady state.
    (await locks.acquire("L", { timeoutMs: 10000 })).release();
    const t0 = now();
    for (let i = 0; i < rounds; i++) (await locks.acquire("L", { timeoutMs: 10000 })).release();
    return (now() - t0) / rounds;
  } finally {
    locks.close();
    other?.close();
  }
}

async function handoff(side, round, mode) {
  const times = [];
  if (side === "base") {
    const name = `bench-handoff-raw-${mode}-${round}`;
    for (let i = 0; i < HANDOFFS[mode]; i++) {
      let release;
      const held = new Promise((r) => (release = r));
      await new Promise((granted) =>
        navigator.locks.request(name, () => {
          granted();
          return held;
        }),
      );
      const waiter = navigator.locks.request(name, async () => {});
      await sleep(10); // the waiter is queued by now
      const t0 = now();
      release();
      await waiter;
      times.push(now() - t0);
    }
    return median(times);
  }
  const channel = `bench-handoff-${mode}-${round}`;
  const a = new TabLocks(channel, { mode });
  const b = new TabLocks(channel, { mode });
  try {
    (await a.acquire("H", { timeoutMs: 10000 })).release();
    (await b.acquire("H", { timeoutMs: 10000 })).release();
    for (let i = 0; i < HANDOFFS[mode]; i++) {
      const held = await a.acquire("H", { timeoutMs: 10000 });
      const waiting = b.acquire("H", { timeoutMs: 10000 });
      await sleep(10);
      const t0 = now();
      held.release();
      const got = await waiting;
      times.push(now() - t0);
      got.release();
    }
    return median(times);
  } finally {
    a.close();
    b.close();
  }
}

/** What the memory row's page keeps alive between `hold` and the weighing. */
let held = null;

/** The module's wasm memory in bytes (it grows and never shrinks). */
export async function wasmBytes() {
  return (await ready).memory.buffer.byteLength;
}

/**
 * The memory row (run.mjs weighs the page before and after, in a fresh
 * browser context each time): every customer loaded and kept, as an app
 * keeps them. crm-sync: an open client after `load` (the app reads through
 * `list`/`query`; the array `load` returns is dropped). The baseline: the
 * same pages parsed with JSON.parse and kept in a Map by id.
 */
export async function hold(side) {
  if (side === "crm") {
    const crm = await CrmSync.open({ ...session });
    const count = (await crm.load("customers", { pageSize: PAGE })).length;
    held = crm;
    return count;
  }
  const byId = new Map();
  for await (const items of pages()) for (const r of items) byId.set(r.id, r);
  held = byId;
  return byId.size;
}

/**
 * Waits until the client caught up: `status.fullLoad` is none and the
 * record `id` is no longer `stale` (30 s at most).
 */
async function caughtUpWith(crm, id) {
  const end = now() + 30000;
  while (now() < end) {
    if (crm.status.fullLoad === null && (!id || crm.get("customers", id)?.stale !== true)) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error("the catch-up did not end within 30 s");
}

/** One round of one side of one benchmark. */
export function run(name, side, round) {
  const bench = benches[name];
  if (!bench) throw new Error(`no benchmark ${name}`);
  return bench(side, round);
}
