//! The JavaScript of the database: what must run inside a transaction
//! without a Rust future per request (a batch with its record checks, a
//! versioned put, a key range read a page at a time) and the clean-up of
//! an open request given up on.

use wasm_bindgen::prelude::*;

#[wasm_bindgen(inline_js = r#"
export function abandonOpen(req) {
  // An open request cannot be cancelled. When it answers after all, give
  // back what it brings: abort an upgrade (so no half-migrated version is
  // left behind) and close a connection nobody holds (an unclosed one would
  // block every later upgrade). Plain JS so that no Rust closure has to
  // outlive the request.
  req.onblocked = null;
  req.onupgradeneeded = () => { try { req.transaction.abort(); } catch (_) {} };
  req.onsuccess = () => { try { req.result.close(); } catch (_) {} };
  req.onerror = (event) => event.preventDefault();
}

export function versionedPut(db, store, key, entry, expected, fail) {
  // One versioned put in plain JS: the read and the write issued back to
  // back in one transaction, the version checked when the read answers
  // (the transaction is still active then) and the transaction aborted on
  // a mismatch, else committed at once: nothing more will be asked of it,
  // so the commit need not wait for the put's success to reach the page.
  // Resolves to expected + 1 (the version written); rejects with what
  // fail(found, thrown, key, expected) makes of a mismatch (found: the
  // version found, 0 absent, NaN an entry a LocalStore did not write) or
  // of what IndexedDB threw (found: -1), so that no Rust future is needed.
  return new Promise((resolve, reject) => {
    let found = -1;
    let tx;
    try {
      tx = db.transaction(store, "readwrite");
      const os = tx.objectStore(store);
      const read = os.get(key);
      os.put(entry, key);
      read.onsuccess = () => {
        const v = read.result === undefined ? 0 : read.result && read.result.v;
        const version = typeof v === "number" && (v > 0 || read.result === undefined) ? v : NaN;
        if (version !== expected) {
          found = version;
          tx.abort();
        } else if (tx.commit) {
          tx.commit();
        }
      };
    } catch (e) {
      if (tx) { try { tx.abort(); } catch (_) {} }
      reject(fail(-1, e, key, expected));
      return;
    }
    tx.oncomplete = () => resolve(expected + 1);
    tx.onabort = () => reject(fail(found, found !== -1 ? null : tx.error || new DOMException("aborted", "AbortError"), key, expected));
  });
}

export function readPages(db, store, lower, upper, size) {
  // The values of the keys from lower (in) to upper (out), size at a time,
  // in one readonly transaction: each page is asked for from the answer to
  // the one before (its keys and values by two requests, one snapshot), so
  // IndexedDB reads on while the caller works on the pages it has, and no
  // page is one long task to take in. next() resolves to the next page's
  // values, null after the last; it rejects with what IndexedDB threw.
  const pages = [];
  let ended = false;
  let failure = null;
  let wake = null;
  const tell = () => { if (wake) { const w = wake; wake = null; w(); } };
  const stop = (e) => { failure = failure || e; ended = true; tell(); };
  let tx;
  const ask = (range) => {
    const os = tx.objectStore(store);
    const keys = os.getAllKeys(range, size);
    const values = os.getAll(range, size);
    values.onsuccess = () => {
      const got = values.result;
      const last = keys.result[keys.result.length - 1];
      if (got.length > 0) pages.push(got);
      if (got.length >= size && last !== undefined) {
        try { ask(IDBKeyRange.bound(last, upper, true, true)); } catch (e) { stop(e); return; }
      } else {
        ended = true;
      }
      tell();
    };
  };
  try {
    tx = db.transaction(store, "readonly");
    tx.onabort = () => stop(tx.error || new DOMException("aborted", "AbortError"));
    ask(IDBKeyRange.bound(lower, upper, false, true));
  } catch (e) {
    stop(e);
  }
  return {
    next() {
      return new Promise((resolve, reject) => {
        const answer = () => {
          if (pages.length > 0) resolve(pages.shift());
          else if (failure) reject(failure);
          else if (ended) resolve(null);
          else wake = answer;
        };
        answer();
      });
    },
  };
}

export function writeBatch(db, stores, storeOf, kinds, keys, values) {
  // One batch in one readwrite transaction, all or nothing, in plain JS so
  // that a record put can look at the stored copy first: a record is never
  // replaced by an older copy of itself (the changes feed and a local
  // commit race; a tab may write what it read before another tab's
  // commit). The check runs when the read answers, while the transaction
  // is still active, and the transaction is left to commit by itself once
  // nothing is pending (an explicit commit() would refuse that late put).
  // An equal version with more comments is newer too: comments do not
  // change the version. Requests go out in chunks, the next one from the
  // answer to the last of the one before (a task of its own, the
  // transaction still active), so a page of records never holds the page
  // for long. kinds: 0 put, 1 delete, 2 record put, 3 put if present
  // under the same idempotencyKey (its value is [value, key]).
  // storeOf and kinds are views of the module's memory, good only during
  // this call: later chunks read copies.
  storeOf = storeOf.slice();
  kinds = kinds.slice();
  return new Promise((resolve, reject) => {
    let tx;
    try {
      tx = db.transaction(stores, "readwrite");
    } catch (e) {
      reject(e);
      return;
    }
    const version = (r) => (r && typeof r.version === "number" ? r.version : -1);
    const comments = (r) => (r && Array.isArray(r.comments) ? r.comments.length : 0);
    // What made us abort, for the rejection (tx.error is null then).
    let failure = null;
    const fail = (e) => {
      failure = failure || e;
      try { tx.abort(); } catch (_) {}
    };
    const n = kinds.length;
    let at = 0;
    const issue = () => {
      try {
        const end = Math.min(n, at + 200);
        let last;
        for (; at < end; at++) {
          const os = tx.objectStore(stores[storeOf[at]]);
          const key = keys[at];
          if (kinds[at] === 0) last = os.put(values[at], key);
          else if (kinds[at] === 1) last = os.delete(key);
          else if (kinds[at] === 3) {
            const [value, ifKey] = values[at];
            const read = os.get(key);
            read.onsuccess = () => {
              const cur = read.result;
              if (cur !== undefined && cur !== null && cur.idempotencyKey === ifKey) {
                try { os.put(value, key); } catch (e) { fail(e); }
              }
            };
            last = read;
          } else {
            const value = values[at];
            const read = os.get(key);
            read.onsuccess = () => {
              const cur = read.result;
              const newer = version(cur) > version(value)
                || (version(cur) === version(value) && comments(cur) > comments(value));
              if (!newer) {
                try { os.put(value, key); } catch (e) { fail(e); }
              }
            };
            last = read;
          }
        }
        if (at < n && last) last.addEventListener("success", issue, { once: true });
      } catch (e) {
        fail(e);
      }
    };
    issue();
    tx.oncomplete = () => resolve();
    tx.onabort = () => reject(failure || tx.error || new DOMException("aborted", "AbortError"));
  });
}
"#)]
extern "C" {
    #[wasm_bindgen(js_name = writeBatch)]
    pub(super) fn write_batch_js(
        db: &web_sys::IdbDatabase,
        stores: &js_sys::Array,
        store_of: &[u8],
        kinds: &[u8],
        keys: &js_sys::Array,
        values: &js_sys::Array,
    ) -> js_sys::Promise;
    #[wasm_bindgen(js_name = readPages)]
    pub(super) fn read_pages(
        db: &web_sys::IdbDatabase,
        store: &str,
        lower: &str,
        upper: &str,
        size: u32,
    ) -> JsValue;
    #[wasm_bindgen(js_name = abandonOpen)]
    pub(super) fn abandon_open(request: &web_sys::IdbOpenDbRequest);
    #[wasm_bindgen(js_name = versionedPut)]
    pub(super) fn versioned_put(
        db: &web_sys::IdbDatabase,
        store: &str,
        key: &str,
        entry: &JsValue,
        expected: f64,
        fail: &js_sys::Function,
    ) -> js_sys::Promise;
}
