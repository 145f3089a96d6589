// JavaScript the browser suites need; one file, so the test page loads one
// snippet (many parallel snippet loads have stalled the test runner's server).

// ---- tabs.rs
export function criticalSection(counter) {
  // Read, yield to the event loop, write: without mutual exclusion the
  // other instances' sections interleave here and updates get lost.
  return async () => {
    const seen = counter.value;
    await new Promise((resolve) => setTimeout(resolve, 0));
    counter.value = seen + 1;
  };
}
export function postRaw(channelName, messages) {
  const channel = new BroadcastChannel(channelName);
  for (const m of messages) channel.postMessage(m);
  channel.close();
}
export function malformedMessages() {
  return [
    42, "hello", null, true, [], {}, [1, 2, 3],
    { v: 999, from: "x", seq: 1, kind: "heartbeat", payload: {} },
    { v: 0, from: "x", seq: 1, kind: "heartbeat", payload: {} },
    { v: 1, from: 7, seq: "one", kind: 3 },
    { v: 1, from: "x", seq: 1, kind: "no-such-kind", payload: {} },
    { v: 1, from: "x", seq: -1, kind: "grant", payload: null },
    { version: 1, sender: 42, sequence: "x", kind: {}, payload: [] },
    { __proto__: null, kind: "release" },
    new Uint8Array([1, 2, 3]),
    // The object form of format 1, well formed: an older build's lock request.
    { v: 1, tab: "x", seq: 1, kind: "lock", payload: { token: 1, clock: 1, signal: { type: "request", lock: "crm-sync:leader", stamp: 1 } } },
    // Format 2 arrays: a newer format, an unknown kind, broken fields.
    [3, "x", 1, 0, 1, 1, 0, "crm-sync:leader", 1],
    [2, "x", 1, 99],
    [2, "x", "one", 0],
    [2, "x", 1, 0, 1, 1, 7, "crm-sync:leader", 1],
    [2, "x", 1, 0, 1, 1, 3, "crm-sync:leader", 1],
    [2, "x", 1, 0, -1, 1, 0, "crm-sync:leader", 1],
  ];
}
export function pageTransition(type, persisted) {
  window.dispatchEvent(new PageTransitionEvent(type, { persisted }));
}
export function throwing() {
  return () => { throw new Error("boom"); };
}
export function rejecting() {
  return async () => { await null; throw new Error("async boom"); };
}
export function returning(value) {
  return async () => { await new Promise((r) => setTimeout(r, 1)); return value; };
}

// ---- errors.rs
export function describeError(e) {
  const cls = Object.getPrototypeOf(e).constructor;
  return {
    isError: e instanceof Error,
    isCrmError: e instanceof cls && cls.name === "CrmError",
    name: e.name,
    text: String(e),
    hasStack: typeof e.stack === "string" && e.stack.length > 0,
    thrownAndCaught: (() => { try { throw e; } catch (x) { return x === e; } })(),
  };
}

// ---- calendar.rs
export function events() {
  return [
    { id: "a", resource: "room-1", start: "2026-11-23T09:00:00Z", end: "2026-11-23T10:00:00Z" },
    { id: "b", resource: "room-1", start: "2026-11-23T10:00:00Z", end: "2026-11-23T11:00:00Z" },
    { id: "c", resource: "room-2", start: "2026-11-23T09:00:00Z", end: "2026-11-23T12:00:00Z" },
    { id: "d", version: 3, fields: { resource: "room-1", start: "2026-11-23T09:30:00+01:00", end: "2026-11-23T12:00:00Z", status: "cancelled" } },
    { id: "e", fields: { resource: "room-1", start: Date.parse("2026-11-23T09:45:00Z"), end: "2026-11-23T09:50:00Z" } },
  ];
}
export function candidate(start, end) { return { id: "new", resource: "room-1", start, end }; }

// ---- store.rs
export function richValue() {
  return {
    nested: { list: [1, "two", null, { deep: true }] },
    when: new Date(1700000000000),
    bytes: new Uint8Array([1, 2, 3]),
    map: new Map([["k", 1]]),
    set: new Set(["a"]),
  };
}
export function isRichValue(v, original) {
  return v !== original
    && v.nested.list[1] === "two" && v.nested.list[2] === null && v.nested.list[3].deep === true
    && v.when instanceof Date && v.when.getTime() === 1700000000000
    && v.bytes instanceof Uint8Array && v.bytes.length === 3 && v.bytes[2] === 3
    && v.map instanceof Map && v.map.get("k") === 1
    && v.set instanceof Set && v.set.has("a");
}
export function openRaw(name, version) {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(name, version);
    req.onupgradeneeded = () => {
      if (!req.result.objectStoreNames.contains("entries")) req.result.createObjectStore("entries");
    };
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}
export function closeRaw(db) { db.close(); }
export function closeRawLater(db, ms) { setTimeout(() => db.close(), ms); }
export function deleteRaw(name) { indexedDB.deleteDatabase(name); }
export function currentVersion(name) {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(name);
    req.onsuccess = () => { const v = req.result.version; req.result.close(); resolve(v); };
    req.onerror = () => reject(req.error);
  });
}
export function storeCount(name) {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(name);
    req.onsuccess = () => { const n = req.result.objectStoreNames.length; req.result.close(); resolve(n); };
    req.onerror = () => reject(req.error);
  });
}
export function settle(promises) { return Promise.allSettled(promises); }
export function domException(name, message) { return new DOMException(message, name); }

// ---- records.rs
// A database at a version newer than this build knows (a newer app in
// another tab upgraded it): opening it at our version fails.
export function makeNewerDatabase(name) {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(name, 99);
    req.onupgradeneeded = () => req.result.createObjectStore("from-the-future");
    req.onsuccess = () => { req.result.close(); resolve(); };
    req.onerror = () => reject(req.error);
  });
}

/** Another user's change made over plain HTTP: log in, read the record, PATCH it with If-Match. */
export async function patchAs(base, username, collection, id, fields) {
  const json = { "content-type": "application/json" };
  const login = await fetch(`${base}/api/login`, { method: "POST", headers: json, body: JSON.stringify({ username, password: "demo" }) });
  const { token } = await login.json();
  const auth = { authorization: `Bearer ${token}` };
  const current = await (await fetch(`${base}/api/${collection}/${id}`, { headers: auth })).json();
  const res = await fetch(`${base}/api/${collection}/${id}`, {
    method: "PATCH",
    headers: { ...json, ...auth, "if-match": `"${current.version}"`, "idempotency-key": crypto.randomUUID() },
    body: JSON.stringify({ fields }),
  });
  if (!res.ok) throw new Error(`PATCH answered ${res.status}`);
}

/** Writes `value` under `key` of an existing database's store, bypassing LocalStore. */
export async function putRaw(name, store, key, value) {
  const db = await new Promise((ok, no) => { const r = indexedDB.open(name); r.onsuccess = () => ok(r.result); r.onerror = () => no(r.error); });
  await new Promise((ok, no) => { const tx = db.transaction(store, "readwrite"); tx.objectStore(store).put(value, key); tx.oncomplete = ok; tx.onerror = () => no(tx.error); });
  db.close();
}

// ---- oneuser.rs
/** Reads `key` of a store of an existing database, bypassing the module. */
export async function getRaw(name, store, key) {
  const db = await new Promise((ok, no) => { const r = indexedDB.open(name); r.onsuccess = () => ok(r.result); r.onerror = () => no(r.error); });
  const value = await new Promise((ok, no) => { const r = db.transaction(store).objectStore(store).get(key); r.onsuccess = () => ok(r.result); r.onerror = () => no(r.error); });
  db.close();
  return value;
}

// ---- engines.rs
/** What the browser itself says: `navigator.storage.persisted()` (false without one). */
export async function browserPersisted() {
  return navigator.storage ? navigator.storage.persisted() : false;
}
/** Whether this browser has `navigator.storage.persist` at all. */
export function storageManagerPresent() {
  return typeof navigator.storage?.persist === "function";
}
/** The browser's name as its user agent gives it, for messages. */
export function engineName() {
  const ua = navigator.userAgent;
  if (/Firefox\//.test(ua)) return "firefox";
  if (/Chrom(e|ium)\//.test(ua)) return "chromium";
  return "webkit";
}
/**
 * Makes this page look like an older browser that lacks the globals named
 * (`"navigator.storage"`, `"navigator.locks"`, `"BroadcastChannel"`):
 * shadows each with `undefined` and returns the function that puts them
 * back. The module reads them when a client opens.
 */
export function withoutApis(names) {
  const undo = [];
  for (const name of names) {
    const [owner, key] = name.startsWith("navigator.") ? [navigator, name.slice(10)] : [globalThis, name];
    const own = Object.getOwnPropertyDescriptor(owner, key);
    Object.defineProperty(owner, key, { value: undefined, configurable: true, writable: true });
    undo.push(() => {
      if (own) Object.defineProperty(owner, key, own);
      else delete owner[key];
    });
  }
  return () => { for (const f of undo.reverse()) f(); };
}

// ---- local.rs
/** Starts noting the URL of every `fetch` of this page; returns the list it fills. */
export function noteFetches() {
  const urls = [];
  const original = globalThis.fetch;
  globalThis.fetch = function (input, init) {
    urls.push(typeof input === "string" ? input : input.url);
    return original.call(this, input, init);
  };
  urls.stop = () => { globalThis.fetch = original; };
  return urls;
}
/** Stops what `noteFetches` started. */
export function stopNoting(urls) { urls.stop(); }
/** Deletes a database and waits until it is gone (or blocked by an open copy). */
export function deleteDatabase(name) {
  return new Promise((ok) => { const r = indexedDB.deleteDatabase(name); r.onsuccess = ok; r.onerror = ok; r.onblocked = ok; });
}
/**
 * Notes the lower bound of every `getAll` on a key range of this page from
 * now on (what a read of a collection back from IndexedDB asks); returns
 * the list it fills.
 */
export function noteGetAll() {
  const lowers = [];
  const original = IDBObjectStore.prototype.getAll;
  IDBObjectStore.prototype.getAll = function (...args) {
    const query = args[0];
    lowers.push(query instanceof IDBKeyRange ? String(query.lower) : String(query));
    return original.apply(this, args);
  };
  lowers.stop = () => { IDBObjectStore.prototype.getAll = original; };
  return lowers;
}
/** Stops what `noteGetAll` started. */
export function stopNotingGetAll(lowers) { lowers.stop(); }
/**
 * Holds a readwrite transaction on `store` of database `name` until the
 * returned object's `release()`: every transaction on that store asked for
 * meanwhile waits, and they run in the order they were asked for.
 */
export async function holdStore(name, store) {
  const db = await new Promise((ok, no) => { const r = indexedDB.open(name); r.onsuccess = () => ok(r.result); r.onerror = () => no(r.error); });
  const tx = db.transaction(store, "readwrite");
  const os = tx.objectStore(store);
  let held = true;
  // A transaction lives while it has requests: one more after each.
  const spin = () => { if (held) os.get("\u0000held").onsuccess = spin; };
  spin();
  const ended = new Promise((ok) => { tx.oncomplete = ok; tx.onabort = ok; tx.onerror = ok; });
  return { release: async () => { held = false; await ended; db.close(); } };
}
/** Releases what `holdStore` holds. */
export function releaseStore(hold) { return hold.release(); }
/**
 * Writes `n` copies of the record stored at `customers/<id>` under the ids
 * `<prefix>0` .. `<prefix>(n-1)`, in one transaction.
 */
export async function putCopies(name, id, prefix, n) {
  const db = await new Promise((ok, no) => { const r = indexedDB.open(name); r.onsuccess = () => ok(r.result); r.onerror = () => no(r.error); });
  const tx = db.transaction("records", "readwrite");
  const os = tx.objectStore("records");
  const original = await new Promise((ok, no) => { const r = os.get(`customers/${id}`); r.onsuccess = () => ok(r.result); r.onerror = () => no(r.error); });
  if (!original) throw new Error(`customers/${id} is not stored`);
  for (let i = 0; i < n; i++) os.put({ ...original, id: `${prefix}${i}` }, `customers/${prefix}${i}`);
  await new Promise((ok, no) => { tx.oncomplete = ok; tx.onerror = () => no(tx.error); });
  db.close();
}
