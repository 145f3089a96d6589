//! IndexedDB on `indexed_db_futures`: opening with a timeout and migrations,
//! connections that step aside for a newer tab, atomic multi-store writes,
//! and the per-user database (`crm-sync:<user>`).
//!
//! Two layers:
//!
//! - [`Db`]: any database, given a [`Schema`] (a version and one migration
//!   per version step). Values are JS values stored by structured clone.
//! - [`UserDb`]: the user's database with the [`Store`]s the client uses,
//!   values read and written with serde.
//!
//! Every write goes through one readwrite transaction that awaits nothing but
//! IndexedDB requests (docs/toolchain.md: anything else lets the browser
//! auto-commit), so serialisation happens before a transaction starts: a
//! [`Batch`] holds JS values already. A transaction that is dropped before
//! its commit rolls back (`indexed_db_futures` aborts it on drop), which is
//! what makes `?` inside one safe.
//!
//! ```no_run
//! # async fn demo() -> crm_sync::Result<()> {
//! use crm_sync::web::idb::{record_key, Batch, Store, UserDb};
//! let db = UserDb::open("alice").await?;
//! let mut batch = Batch::new();
//! batch.put(Store::Outbox, "m-1", &serde_json::json!({ "op": "patch" }))?;
//! batch.put(Store::Records, record_key("customers", "c1"), &serde_json::json!({ "id": "c1" }))?;
//! // Both or neither.
//! db.write_batch(&batch).await?;
//! # Ok(()) }
//! ```

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;

use gloo_timers::future::TimeoutFuture;
use indexed_db_futures::database::Database;
use indexed_db_futures::error::{DomException, Error as IdbError, OpenDbError};
// `SystemRepr::as_sys` is the crate's documented-but-hidden door to the
// web-sys objects; it is needed for what the crate does not wrap: the
// `versionchange`/`close` events with a synchronous close, the abandoned
// open request, and the transaction's own error (quota).
use indexed_db_futures::internals::SystemRepr;
use indexed_db_futures::object_store::ObjectStore;
use indexed_db_futures::prelude::*;
use indexed_db_futures::transaction::{Transaction, TransactionMode};
use indexed_db_futures::KeyRange;
use serde::de::DeserializeOwned;
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::error::Error;
use crate::web::js::{describe, get, to_js};
use crate::web::lifecycle::EventListener;

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
  // for long. kinds: 0 put, 1 delete, 2 record put, 3 put if present.
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
            const value = values[at];
            const read = os.getKey(key);
            read.onsuccess = () => {
              if (read.result !== undefined) {
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
    fn write_batch_js(
        db: &web_sys::IdbDatabase,
        stores: &js_sys::Array,
        store_of: &[u8],
        kinds: &[u8],
        keys: &js_sys::Array,
        values: &js_sys::Array,
    ) -> js_sys::Promise;
    #[wasm_bindgen(js_name = abandonOpen)]
    fn abandon_open(request: &web_sys::IdbOpenDbRequest);
    #[wasm_bindgen(js_name = versionedPut)]
    fn versioned_put(
        db: &web_sys::IdbDatabase,
        store: &str,
        key: &str,
        entry: &JsValue,
        expected: f64,
        fail: &js_sys::Function,
    ) -> js_sys::Promise;
}

/// One schema step: brings the database from version `n` to `n + 1`.
///
/// Runs inside the upgrade transaction, synchronously: create or delete
/// stores, or issue requests on [`Upgrade::transaction`] without awaiting.
pub type Migration = fn(&Upgrade) -> Result<(), Error>;

/// What a database looks like: its version and how to get there.
#[derive(Debug, Clone, Copy)]
pub struct Schema {
    /// The version this code needs (1 or more).
    pub version: u32,
    /// `migrations[n]` upgrades version `n` to `n + 1`; one per version.
    pub migrations: &'static [Migration],
}

impl Schema {
    fn check(&self) -> Result<(), Error> {
        if self.version == 0 || self.migrations.len() != self.version as usize {
            return Err(Error::Invalid(format!(
                "schema version {} needs {} migrations, has {}",
                self.version,
                self.version,
                self.migrations.len()
            )));
        }
        Ok(())
    }
}

/// The database during an upgrade, as a [`Migration`] sees it.
pub struct Upgrade {
    /// The open request whose `upgradeneeded` this is: its `result` is the
    /// database, its `transaction` the version change.
    request: web_sys::IdbOpenDbRequest,
}

impl Upgrade {
    fn db(&self) -> Result<web_sys::IdbDatabase, Error> {
        self.request
            .result()
            .map(JsCast::unchecked_into)
            .map_err(|_| Error::Storage("the upgrade has no database".into()))
    }

    /// Creates an object store with out-of-line keys (the key is given with
    /// each put).
    ///
    /// # Errors
    /// [`Error::Storage`] if it exists already.
    pub fn create_store(&self, name: &str) -> Result<(), Error> {
        self.db()?
            .create_object_store(name)
            .map(|_| ())
            .map_err(|e| error_from_js(&e))
    }

    /// Deletes an object store and its data.
    ///
    /// # Errors
    /// [`Error::Storage`] if there is no such store.
    pub fn delete_store(&self, name: &str) -> Result<(), Error> {
        self.db()?
            .delete_object_store(name)
            .map_err(|e| error_from_js(&e))
    }

    /// The upgrade transaction, for migrations that rewrite data or add
    /// indexes to existing stores.
    pub fn transaction(&self) -> Option<web_sys::IdbTransaction> {
        self.request.transaction()
    }
}

/// How long an open may take.
#[derive(Debug, Clone, Copy)]
pub struct OpenOptions {
    /// Per attempt. A first open that does not answer in time (a known
    /// Safari failure after launch) is abandoned and tried once more; an
    /// upgrade that is still blocked by another connection when it passes
    /// fails with [`Error::Storage`].
    pub timeout_ms: u32,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self { timeout_ms: 4_000 }
    }
}

/// Why a connection closed by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Another connection (usually a newer tab) opens a newer version
    /// (`Some`) or deletes the database (`None`, e.g. logout in another
    /// tab). This one closed so as not to block it.
    VersionChange {
        /// The version being opened, `None` for a delete.
        new_version: Option<u32>,
    },
    /// The browser closed it (site data cleared, disk failure).
    Forced,
}

/// What the owner is told when the connection closes by itself.
type CloseCallback = Box<dyn FnOnce(CloseReason)>;

/// Connection state shared with the event listeners.
#[derive(Default)]
struct Shared {
    closed: Cell<bool>,
    reason: Cell<Option<CloseReason>>,
    on_close: RefCell<Option<CloseCallback>>,
}

impl Shared {
    fn closed_by(&self, reason: CloseReason) {
        self.closed.set(true);
        self.reason.set(Some(reason));
        // Taken out before the call, so a callback that touches the
        // connection again finds the cell free.
        let callback = self.on_close.borrow_mut().take();
        if let Some(callback) = callback {
            callback(reason);
        }
    }
}

/// An event listener on the connection, removed on drop.
#[must_use = "the listener is removed when dropped"]
struct Listener {
    target: web_sys::IdbDatabase,
    event: &'static str,
    callback: Closure<dyn FnMut(web_sys::Event)>,
}

impl Listener {
    fn new(
        target: &web_sys::IdbDatabase,
        event: &'static str,
        callback: impl FnMut(web_sys::Event) + 'static,
    ) -> Result<Self, Error> {
        let callback = Closure::<dyn FnMut(web_sys::Event)>::new(callback);
        target
            .add_event_listener_with_callback(event, callback.as_ref().unchecked_ref())
            .map_err(|e| error_from_js(&e))?;
        Ok(Self {
            target: target.clone(),
            event,
            callback,
        })
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.target.remove_event_listener_with_callback(
            self.event,
            self.callback.as_ref().unchecked_ref(),
        );
    }
}

/// Puts and deletes over one or more stores, written by [`Db::write`] in
/// one transaction: all of them or none.
#[derive(Debug, Default, Clone)]
#[must_use = "a batch does nothing until written"]
pub struct Batch {
    ops: Vec<BatchOp>,
}

#[derive(Debug, Clone)]
enum BatchOp {
    Put {
        store: String,
        key: String,
        value: JsValue,
    },
    Delete {
        store: String,
        key: String,
    },
    /// A put that leaves a newer version of the record in place.
    PutRecord {
        store: String,
        key: String,
        value: JsValue,
    },
    /// A put made only if the key is in the store.
    PutIfPresent {
        store: String,
        key: String,
        value: JsValue,
    },
}

impl BatchOp {
    fn store(&self) -> &str {
        match self {
            Self::Put { store, .. }
            | Self::Delete { store, .. }
            | Self::PutRecord { store, .. }
            | Self::PutIfPresent { store, .. } => store,
        }
    }

    /// The entry it writes: store and key.
    fn target(&self) -> (&str, &str) {
        match self {
            Self::Put { store, key, .. }
            | Self::Delete { store, key }
            | Self::PutRecord { store, key, .. }
            | Self::PutIfPresent { store, key, .. } => (store, key),
        }
    }
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a put of `value`, serialised now (to plain objects, never
    /// `Map`), so that the transaction later awaits nothing else.
    ///
    /// # Errors
    /// [`Error::Invalid`] if the value cannot be represented in JS.
    pub fn put<T: Serialize + ?Sized>(
        &mut self,
        store: impl AsRef<str>,
        key: impl Into<String>,
        value: &T,
    ) -> Result<&mut Self, Error> {
        let value = to_js(value)?;
        Ok(self.put_js(store, key, value))
    }

    /// Adds a put of a JS value as it is (stored by structured clone:
    /// `Date`s, typed arrays, `Map`s survive).
    pub fn put_js(
        &mut self,
        store: impl AsRef<str>,
        key: impl Into<String>,
        value: JsValue,
    ) -> &mut Self {
        self.ops.push(BatchOp::Put {
            store: store.as_ref().to_owned(),
            key: key.into(),
            value,
        });
        self
    }

    /// Adds a put of a record (`{ version, comments, ... }`) that leaves a
    /// newer version of it in place: checked inside the transaction, so it
    /// holds across tabs.
    ///
    /// # Errors
    /// [`Error::Invalid`] if the value cannot be represented in JS.
    pub fn put_record<T: Serialize + ?Sized>(
        &mut self,
        store: impl AsRef<str>,
        key: impl Into<String>,
        value: &T,
    ) -> Result<&mut Self, Error> {
        self.ops.push(BatchOp::PutRecord {
            store: store.as_ref().to_owned(),
            key: key.into(),
            value: to_js(value)?,
        });
        Ok(self)
    }

    /// [`Batch::put_record`] of a record that is a JS object already (as
    /// the server sent it).
    pub fn put_record_js(
        &mut self,
        store: impl AsRef<str>,
        key: impl Into<String>,
        value: JsValue,
    ) -> &mut Self {
        self.ops.push(BatchOp::PutRecord {
            store: store.as_ref().to_owned(),
            key: key.into(),
            value,
        });
        self
    }

    /// Adds a put made only if `key` is in the store when the transaction
    /// runs (an outbox entry another tab finished is not brought back).
    ///
    /// # Errors
    /// [`Error::Invalid`] if the value cannot be represented in JS.
    pub fn put_if_present<T: Serialize + ?Sized>(
        &mut self,
        store: impl AsRef<str>,
        key: impl Into<String>,
        value: &T,
    ) -> Result<&mut Self, Error> {
        self.ops.push(BatchOp::PutIfPresent {
            store: store.as_ref().to_owned(),
            key: key.into(),
            value: to_js(value)?,
        });
        Ok(self)
    }

    /// Adds a delete (of nothing, if the key is absent).
    pub fn delete(&mut self, store: impl AsRef<str>, key: impl Into<String>) -> &mut Self {
        self.ops.push(BatchOp::Delete {
            store: store.as_ref().to_owned(),
            key: key.into(),
        });
        self
    }

    /// Adds `later`'s writes after this batch's, dropping the writes of
    /// this batch that `later` overwrites (same store and key), so a batch
    /// that keeps taking later ones holds at most one write per entry.
    pub fn append(&mut self, later: Batch) -> &mut Self {
        if !self.ops.is_empty() {
            let mut overwritten: Vec<(&str, &str)> =
                later.ops.iter().map(BatchOp::target).collect();
            crate::core::sort::sort(&mut overwritten);
            self.ops
                .retain(|op| overwritten.binary_search(&op.target()).is_err());
        }
        self.ops.extend(later.ops);
        self
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Whether any write goes to `store`.
    pub fn touches(&self, store: &str) -> bool {
        self.ops.iter().any(|op| op.store() == store)
    }

    /// Whether a write needs the check of [`Batch::put_record`].
    fn has_record_puts(&self) -> bool {
        self.ops
            .iter()
            .any(|op| matches!(op, BatchOp::PutRecord { .. } | BatchOp::PutIfPresent { .. }))
    }

    /// Writes the batch with `writeBatch`: one transaction, requests in
    /// chunks, record puts checked against the stored version.
    fn write_js(&self, db: &web_sys::IdbDatabase) -> js_sys::Promise {
        let names = self.stores();
        let stores: js_sys::Array = names.iter().map(|n| JsValue::from_str(n)).collect();
        let mut store_of = Vec::with_capacity(self.ops.len());
        let mut kinds = Vec::with_capacity(self.ops.len());
        let keys = js_sys::Array::new();
        let values = js_sys::Array::new();
        for op in &self.ops {
            let (store, key) = op.target();
            let at = names.iter().position(|n| *n == store).unwrap_or(0);
            store_of.push(u8::try_from(at).unwrap_or(0));
            let (kind, value) = match op {
                BatchOp::Put { value, .. } => (0, value),
                BatchOp::Delete { .. } => (1, &JsValue::UNDEFINED),
                BatchOp::PutRecord { value, .. } => (2, value),
                BatchOp::PutIfPresent { value, .. } => (3, value),
            };
            kinds.push(kind);
            keys.push(&JsValue::from_str(key));
            values.push(value);
        }
        write_batch_js(db, &stores, &store_of, &kinds, &keys, &values)
    }

    /// How many writes.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// The stores the batch touches, each once.
    fn stores(&self) -> Vec<&str> {
        let mut stores: Vec<&str> = Vec::new();
        for op in &self.ops {
            if !stores.contains(&op.store()) {
                stores.push(op.store());
            }
        }
        stores
    }

    /// Issues every write in `tx` without awaiting them: the commit waits
    /// for them, and a failure of any aborts the whole transaction.
    fn issue(&self, tx: &Transaction<'_>) -> Result<(), Error> {
        // Plain requests: nobody awaits them (the commit does), so no
        // future is made per write; the store handle is reused while the
        // store stays the same.
        let mut current: Option<(&str, web_sys::IdbObjectStore)> = None;
        for op in &self.ops {
            let name = op.store();
            let store = match &current {
                Some((open, store)) if *open == name => store,
                _ => {
                    let store = tx.object_store(name).map_err(from_idb)?.as_sys().clone();
                    &current.insert((name, store)).1
                }
            };
            let issued = match op {
                BatchOp::Put { key, value, .. } => {
                    store.put_with_key(value, &JsValue::from_str(key))
                }
                BatchOp::Delete { key, .. } => store.delete(&JsValue::from_str(key)),
                // Written by `write_js` only: an explicit commit would refuse
                // the put a read's answer issues.
                BatchOp::PutRecord { key, value, .. }
                | BatchOp::PutIfPresent { key, value, .. } => {
                    store.put_with_key(value, &JsValue::from_str(key))
                }
            };
            issued.map_err(|e| error_from_js(&e))?;
        }
        Ok(())
    }
}

/// A connection to one database.
///
/// Closes itself when another connection needs a newer version or deletes
/// the database (see [`Db::on_close`]); closes on drop. Every method then
/// fails with [`Error::Closed`].
#[must_use = "the connection closes when dropped"]
pub struct Db {
    db: Database,
    raw: web_sys::IdbDatabase,
    shared: Rc<Shared>,
    _listeners: [Listener; 2],
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("name", &self.raw.name())
            .field("version", &self.raw.version())
            .field("closed", &self.shared.closed.get())
            .finish()
    }
}

impl Db {
    /// Opens (creating or upgrading) the database `name`.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a schema without one migration per version;
    /// [`Error::Storage`] when IndexedDB is unavailable, the stored version
    /// is newer than `schema.version`, a migration fails, the upgrade stays
    /// blocked by another connection for `options.timeout_ms`, or two
    /// attempts go unanswered; [`Error::Quota`] when the upgrade exceeds the
    /// quota.
    pub async fn open(name: &str, schema: Schema, options: OpenOptions) -> Result<Db, Error> {
        schema.check()?;
        let mut attempts = 0;
        let db = loop {
            attempts += 1;
            match open_attempt(name, schema, options.timeout_ms).await? {
                Attempt::Opened(db) => break db,
                Attempt::TimedOut { blocked: true } => {
                    return Err(Error::Storage(format!(
                        "opening {name:?} at version {} is blocked: another connection \
                         (a tab with an older version?) keeps it open",
                        schema.version
                    )))
                }
                Attempt::TimedOut { blocked: false } if attempts < 2 => continue,
                Attempt::TimedOut { blocked: false } => {
                    return Err(Error::Storage(format!(
                        "IndexedDB did not answer opening {name:?} within {} ms, twice",
                        options.timeout_ms
                    )))
                }
            }
        };
        Self::wrap(db)
    }

    fn wrap(db: Database) -> Result<Db, Error> {
        let raw: web_sys::IdbDatabase = db.as_sys().unchecked_ref::<web_sys::IdbDatabase>().clone();
        let shared = Rc::new(Shared::default());
        let on_version_change = {
            let (raw, shared) = (raw.clone(), Rc::clone(&shared));
            // Closing here, synchronously, is what lets the other
            // connection's upgrade go on without a `blocked` event.
            move |event: web_sys::Event| {
                raw.close();
                let new_version = get(&event, "newVersion").as_f64().map(|v| v as u32);
                shared.closed_by(CloseReason::VersionChange { new_version });
            }
        };
        let on_forced_close = {
            let shared = Rc::clone(&shared);
            move |_: web_sys::Event| shared.closed_by(CloseReason::Forced)
        };
        let listeners = Listener::new(&raw, "versionchange", on_version_change)
            .and_then(|a| Ok([a, Listener::new(&raw, "close", on_forced_close)?]));
        let listeners = match listeners {
            Ok(listeners) => listeners,
            Err(e) => {
                // Without its listener the connection would block other
                // tabs' upgrades: it must not stay open.
                raw.close();
                return Err(e);
            }
        };
        Ok(Db {
            db,
            raw,
            shared,
            _listeners: listeners,
        })
    }

    /// The database's name.
    pub fn name(&self) -> String {
        self.raw.name()
    }

    /// The version this connection opened.
    pub fn version(&self) -> u32 {
        self.raw.version() as u32
    }

    /// Whether the connection is closed (by [`Db::close`] or by itself).
    pub fn is_closed(&self) -> bool {
        self.shared.closed.get()
    }

    /// Calls `callback` once when the connection closes by itself (another
    /// tab upgrades or deletes the database, or the browser closes it), so
    /// the owner can tell the app (a status event) and reopen. Called at
    /// once if that has happened already; replaces an earlier callback.
    pub fn on_close(&self, callback: impl FnOnce(CloseReason) + 'static) {
        match self.shared.reason.get() {
            Some(reason) => callback(reason),
            None => *self.shared.on_close.borrow_mut() = Some(Box::new(callback)),
        }
    }

    /// Closes the connection (running transactions still finish).
    pub fn close(&self) {
        if !self.shared.closed.replace(true) {
            self.raw.close();
        }
    }

    fn begin(&self, stores: &[&str], mode: TransactionMode) -> Result<Transaction<'_>, Error> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        self.db
            .transaction(stores)
            .with_mode(mode)
            .build()
            .map_err(|e| match e {
                // The browser closed the connection under us.
                IdbError::DomException(DomException::InvalidStateError(_)) => Error::Closed,
                e => from_idb(e),
            })
    }

    /// The value under `key`, `None` if absent.
    ///
    /// # Errors
    /// [`Error::Closed`], or [`Error::Storage`] for an unknown store or a
    /// failing read.
    pub async fn get(&self, store: &str, key: &str) -> Result<Option<JsValue>, Error> {
        // A read-only transaction has nothing to roll back: dropping it
        // (which aborts it) ends it at once.
        let tx = self.begin(&[store], TransactionMode::Readonly)?;
        let os = tx.object_store(store).map_err(from_idb)?;
        let value: Option<JsValue> = os
            .get(key)
            .primitive()
            .map_err(from_idb)?
            .await
            .map_err(from_idb)?;
        Ok(value)
    }

    /// Every key of a store, in key order.
    ///
    /// # Errors
    /// As [`Db::get`]; [`Error::Storage`] for a key that is not a string
    /// (written by something else).
    pub async fn keys(&self, store: &str) -> Result<Vec<String>, Error> {
        let tx = self.begin(&[store], TransactionMode::Readonly)?;
        let os = tx.object_store(store).map_err(from_idb)?;
        let keys = os
            .get_all_keys::<JsValue>()
            .primitive()
            .map_err(from_idb)?
            .await
            .map_err(from_idb)?;
        keys.map(|key| key_string(store, key.map_err(from_idb)?))
            .collect()
    }

    /// The keys of a store that start with `prefix`, in key order, each
    /// taken from the array IndexedDB answered only as the caller goes on:
    /// a caller can read a large store's keys in slices.
    ///
    /// # Errors
    /// As [`Db::keys`].
    pub async fn keys_with_prefix(
        &self,
        store: &str,
        prefix: &str,
    ) -> Result<impl Iterator<Item = JsValue>, Error> {
        let tx = self.begin(&[store], TransactionMode::Readonly)?;
        let os = tx.object_store(store).map_err(from_idb)?;
        let keys = os
            .get_all_keys::<JsValue>()
            .with_query::<JsValue, _>(prefix_range(prefix))
            .primitive()
            .map_err(from_idb)?
            .await
            .map_err(from_idb)?;
        Ok(keys.filter_map(Result::ok))
    }

    /// Every `(key, value)` of a store, in key order; with `prefix`, only
    /// the keys that start with it.
    ///
    /// # Errors
    /// As [`Db::keys`].
    pub async fn entries(
        &self,
        store: &str,
        prefix: Option<&str>,
    ) -> Result<Vec<(String, JsValue)>, Error> {
        let tx = self.begin(&[store], TransactionMode::Readonly)?;
        let os = tx.object_store(store).map_err(from_idb)?;
        // Keys and values from two requests of one transaction: the same
        // snapshot, in the same (key) order.
        let (keys, values) = match prefix {
            None => (
                os.get_all_keys::<JsValue>().primitive(),
                os.get_all::<JsValue>().primitive(),
            ),
            Some(prefix) => {
                let range = prefix_range(prefix);
                (
                    os.get_all_keys::<JsValue>()
                        .with_query::<JsValue, _>(range.clone())
                        .primitive(),
                    os.get_all::<JsValue>()
                        .with_query::<JsValue, _>(range)
                        .primitive(),
                )
            }
        };
        let (keys, values) = (keys.map_err(from_idb)?, values.map_err(from_idb)?);
        let keys = keys.await.map_err(from_idb)?;
        let values = values.await.map_err(from_idb)?;
        keys.zip(values)
            .map(|(key, value)| {
                Ok((
                    key_string(store, key.map_err(from_idb)?)?,
                    value.map_err(from_idb)?,
                ))
            })
            .collect()
    }

    /// Writes every put and delete of `batch` in one readwrite
    /// transaction: all or none.
    ///
    /// # Errors
    /// [`Error::Closed`]; [`Error::Quota`] (nothing written);
    /// [`Error::Invalid`] for a value that cannot be cloned (a function, a
    /// DOM node); [`Error::Storage`] for an unknown store or another failure.
    pub async fn write(&self, batch: &Batch) -> Result<(), Error> {
        if batch.is_empty() {
            return Ok(());
        }
        if batch.has_record_puts() {
            if self.is_closed() {
                return Err(Error::Closed);
            }
            return wasm_bindgen_futures::JsFuture::from(batch.write_js(&self.raw))
                .await
                .map(|_| ())
                .map_err(|e| match get(&e, "name").as_string().as_deref() {
                    Some("InvalidStateError") => Error::Closed,
                    _ => error_from_js(&e),
                });
        }
        let tx = self.begin(&batch.stores(), TransactionMode::Readwrite)?;
        batch.issue(&tx)?;
        commit(tx).await
    }

    /// Atomic read-modify-write: reads `key` of `store`, hands the value
    /// (`None` if absent) to `decide`, and writes the batch it returns, all
    /// in one readwrite transaction over `scope` (which must name every
    /// store the batch touches, `store` included). `decide` runs inside the
    /// transaction, so it must be synchronous; its `Err` rolls back and is
    /// returned as it is.
    ///
    /// Across tabs this is atomic too: the browser runs overlapping
    /// readwrite transactions one after another.
    ///
    /// # Errors
    /// `decide`'s error, or those of [`Db::write`].
    pub async fn read_modify_write<R, E: From<Error>>(
        &self,
        scope: &[&str],
        store: &str,
        key: &str,
        decide: impl FnOnce(Option<JsValue>) -> Result<(Batch, R), E>,
    ) -> Result<R, E> {
        let tx = self.begin(scope, TransactionMode::Readwrite)?;
        let current: Option<JsValue> = {
            let os = tx.object_store(store).map_err(from_idb)?;
            os.get(key)
                .primitive()
                .map_err(from_idb)?
                .await
                .map_err(from_idb)?
        };
        let (batch, out) = decide(current)?;
        batch.issue(&tx)?;
        commit(tx).await?;
        Ok(out)
    }

    /// Writes `entry` under `key` of `store` if the stored entry's `v` is
    /// `expected` (0: absent), in one readwrite transaction whose read and
    /// write are issued back to back (as [`Db::checked_write`], but in one
    /// call into JavaScript, answered by the promise itself: no Rust future
    /// per put). The promise resolves to `expected + 1` when written, and
    /// rejects with what `fail(found, thrown, key, expected)` returns: for
    /// a version that differed, `found` is the version seen (0 absent, NaN
    /// an entry that carries no version) and `thrown` null; for an
    /// IndexedDB error, `found` is -1 and `thrown` what it threw.
    ///
    /// # Errors
    /// [`Error::Closed`] when the database is closed.
    pub fn versioned_put(
        &self,
        store: &str,
        key: &str,
        entry: &JsValue,
        expected: u64,
        fail: &js_sys::Function,
    ) -> Result<js_sys::Promise, Error> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        Ok(versioned_put(
            &self.raw,
            store,
            key,
            entry,
            expected as f64,
            fail,
        ))
    }

    /// A write that holds only if stored values are as expected: issues
    /// reads of `keys` of `store` and then every write of `batch`, in one
    /// readwrite transaction over `scope`, without waiting between them;
    /// then hands the values read (`None` where absent, in `keys` order) to
    /// `verify`. Its `Err` aborts the transaction, so nothing is written,
    /// and is returned as it is. The reads come before the writes in the
    /// transaction, so they see the values from before it: one wait for
    /// the database, not two. (`LocalStore.delete` and `putMany`; a single
    /// put has [`Db::versioned_put`].)
    ///
    /// # Errors
    /// `verify`'s error, or those of [`Db::write`].
    pub async fn checked_write<R, E: From<Error>>(
        &self,
        scope: &[&str],
        store: &str,
        keys: &[&str],
        batch: &Batch,
        verify: impl FnOnce(Vec<Option<JsValue>>) -> Result<R, E>,
    ) -> Result<R, E> {
        let tx = self.begin(scope, TransactionMode::Readwrite)?;
        let os = tx.object_store(store).map_err(from_idb)?;
        let ranged = if keys.len() >= RANGE_READ_FROM {
            read_range(&os, keys, batch, &tx).await?
        } else {
            None
        };
        let current = match ranged {
            Some(current) => current,
            None => read_keys(&os, keys, batch, &tx).await?,
        };
        // Still inside the transaction: the writes' answers come in later
        // tasks, after this check (a dropped transaction aborts).
        let out = verify(current)?;
        commit(tx).await?;
        Ok(out)
    }

    /// Deletes the database `name` (every connection of ours closes itself
    /// on the way, see [`Db::on_close`]).
    ///
    /// # Errors
    /// [`Error::Storage`] when IndexedDB is unavailable, or when another
    /// connection keeps the database open for `timeout_ms` (the delete then
    /// happens when that one closes).
    pub async fn delete_database(name: &str, timeout_ms: u32) -> Result<(), Error> {
        let mut request = Database::delete_by_name(name).map_err(from_open)?;
        let mut timer = TimeoutFuture::new(timeout_ms);
        match first(&mut request, &mut timer).await {
            Either::Left(done) => done.map_err(from_idb),
            Either::Right(()) => Err(Error::Storage(format!(
                "deleting {name:?} is blocked by an open connection; it happens when that closes"
            ))),
        }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        self.close();
    }
}

enum Attempt {
    Opened(Database),
    TimedOut { blocked: bool },
}

async fn open_attempt(name: &str, schema: Schema, timeout_ms: u32) -> Result<Attempt, Error> {
    let mut request = Database::open(name)
        .with_version(schema.version)
        .build()
        .map_err(from_open)?;
    let raw_request: web_sys::IdbOpenDbRequest = request.as_sys().clone();
    // Our own listeners rather than indexed_db_futures' handlers: those
    // format any error they are given, and that formatting pulls 14 KB of
    // float printing into the wasm. Events come later (in a task), so both
    // are in place before either can fire.
    let blocked = Rc::new(Cell::new(false));
    let failure: Rc<RefCell<Option<Error>>> = Rc::default();
    let on_blocked = {
        let blocked = Rc::clone(&blocked);
        EventListener::new(&raw_request, "blocked", move |_| blocked.set(true))?
    };
    let on_upgrade = {
        let failure = Rc::clone(&failure);
        let upgrade = Upgrade {
            request: raw_request.clone(),
        };
        EventListener::new(&raw_request, "upgradeneeded", move |event| {
            let from = get(&event, "oldVersion").as_f64().unwrap_or(0.0) as u32;
            let to = get(&event, "newVersion")
                .as_f64()
                .map_or(schema.version, |v| v as u32);
            if let Err(e) = migrate(&upgrade, from, to, schema) {
                // Aborting the version change fails the open; our own error
                // is kept to be reported instead of the AbortError the
                // request gets.
                *failure.borrow_mut() = Some(e);
                if let Some(tx) = upgrade.transaction() {
                    let _ = tx.abort();
                }
            }
        })?
    };
    let mut timer = TimeoutFuture::new(timeout_ms);
    let outcome = first(&mut request, &mut timer).await;
    drop((on_blocked, on_upgrade));
    match outcome {
        Either::Left(Ok(db)) => Ok(Attempt::Opened(db)),
        Either::Left(Err(e)) => Err(failure.borrow_mut().take().unwrap_or_else(|| from_open(e))),
        Either::Right(()) => {
            // Our listeners are gone and dropping the request removes its
            // own; then the request is left to clean up after itself.
            drop(request);
            abandon_open(&raw_request);
            Ok(Attempt::TimedOut {
                blocked: blocked.get(),
            })
        }
    }
}

fn migrate(upgrade: &Upgrade, from: u32, to: u32, schema: Schema) -> Result<(), Error> {
    for step in from..to {
        let migration = schema
            .migrations
            .get(step as usize)
            .ok_or_else(|| Error::Invalid(format!("no migration from version {step}")))?;
        migration(upgrade).map_err(|e| match e {
            Error::Storage(why) => {
                Error::Storage(format!("migration to version {}: {why}", step + 1))
            }
            e => e,
        })?;
    }
    Ok(())
}

/// From this many keys on, [`Db::checked_write`] first counts what is
/// stored between the smallest and the greatest key and, when that is
/// little, reads the range with two requests instead of one per key.
const RANGE_READ_FROM: usize = 16;

/// The range read of [`Db::checked_write`]: `None` (nothing issued but a
/// count) when the range holds more than twice as many entries as `keys`;
/// else the stored values of `keys` in their order, read before `batch` is
/// issued.
async fn read_range(
    os: &ObjectStore<'_>,
    keys: &[&str],
    batch: &Batch,
    tx: &Transaction<'_>,
) -> Result<Option<Vec<Option<JsValue>>>, Error> {
    // IndexedDB orders string keys by UTF-16 code units.
    let order = |a: &str, b: &str| a.encode_utf16().cmp(b.encode_utf16());
    let (Some(lo), Some(hi)) = (
        keys.iter().copied().min_by(|a, b| order(a, b)),
        keys.iter().copied().max_by(|a, b| order(a, b)),
    ) else {
        return Ok(None);
    };
    let range = || KeyRange::Bound(JsValue::from_str(lo), false, JsValue::from_str(hi), false);
    let stored: u32 = os
        .count()
        .with_query::<JsValue, _>(range())
        .primitive()
        .map_err(from_idb)?
        .await
        .map_err(from_idb)?;
    if stored as usize > keys.len().saturating_mul(2) {
        return Ok(None);
    }
    let found_keys = os
        .get_all_keys::<JsValue>()
        .with_query::<JsValue, _>(range())
        .primitive()
        .map_err(from_idb)?;
    let found_values = os
        .get_all::<JsValue>()
        .with_query::<JsValue, _>(range())
        .primitive()
        .map_err(from_idb)?;
    batch.issue(tx)?;
    let found_keys = found_keys.await.map_err(from_idb)?;
    let found_values = found_values.await.map_err(from_idb)?;
    let mut found: Vec<(String, JsValue)> = Vec::with_capacity(stored as usize);
    for (key, value) in found_keys.zip(found_values) {
        let key = key.map_err(from_idb)?;
        let value = value.map_err(from_idb)?;
        // A key of another type cannot equal one of ours.
        if let Some(key) = key.as_string() {
            found.push((key, value));
        }
    }
    Ok(Some(
        keys.iter()
            .map(|key| {
                found
                    .binary_search_by(|(k, _)| order(k, key))
                    .ok()
                    .and_then(|at| found.get(at))
                    .map(|(_, value)| value.clone())
            })
            .collect(),
    ))
}

/// The key-by-key read of [`Db::checked_write`]: the values of `keys` (in
/// their order) read before `batch` is issued. Plain requests, read back
/// synchronously: a future per key would cost a wake-up each. Requests of
/// a transaction answer in order, so once the last read has answered, all
/// have.
async fn read_keys(
    os: &ObjectStore<'_>,
    keys: &[&str],
    batch: &Batch,
    tx: &Transaction<'_>,
) -> Result<Vec<Option<JsValue>>, Error> {
    let Some((last_key, first_keys)) = keys.split_last() else {
        batch.issue(tx)?;
        return Ok(Vec::new());
    };
    let raw: &web_sys::IdbObjectStore = os.as_sys();
    let mut reads = Vec::with_capacity(first_keys.len());
    for key in first_keys {
        reads.push(
            raw.get(&JsValue::from_str(key))
                .map_err(|e| error_from_js(&e))?,
        );
    }
    let last = os.get(*last_key).primitive().map_err(from_idb)?;
    batch.issue(tx)?;
    let last: Option<JsValue> = last.await.map_err(from_idb)?;
    let mut current = Vec::with_capacity(keys.len());
    for read in reads {
        let value = read.result().map_err(|e| error_from_js(&e))?;
        current.push((!value.is_undefined()).then_some(value));
    }
    current.push(last);
    Ok(current)
}

/// Commits, reporting why a transaction was aborted: Chromium aborts it on
/// `QuotaExceededError` without failing any request, so only the
/// transaction's own `error` tells.
async fn commit(tx: Transaction<'_>) -> Result<(), Error> {
    let raw: web_sys::IdbTransaction = tx
        .as_sys()
        .unchecked_ref::<web_sys::IdbTransaction>()
        .clone();
    match tx.commit().await {
        Ok(()) => Ok(()),
        Err(e) => Err(match raw.error() {
            Some(cause) => from_dom(&cause.name(), &cause.message()),
            None => from_idb(e),
        }),
    }
}

fn key_string(store: &str, key: JsValue) -> Result<String, Error> {
    key.as_string()
        .ok_or_else(|| Error::Storage(format!("a key of {store:?} is not a string")))
}

/// Keys that start with `prefix`: `[prefix, prefix + U+FFFF)`. Enough for
/// the crate's keys, which never contain U+FFFF.
fn prefix_range(prefix: &str) -> KeyRange<JsValue> {
    KeyRange::Bound(
        JsValue::from_str(prefix),
        false,
        JsValue::from_str(&format!("{prefix}\u{ffff}")),
        true,
    )
}

/// Maps a thrown JS value (usually a `DOMException`) to the crate's error:
/// `QuotaExceededError` is [`Error::Quota`], a value or key IndexedDB
/// cannot take (`DataCloneError`, `DataError`) is [`Error::Invalid`], any
/// other is [`Error::Storage`] with the exception's name and message.
pub fn error_from_js(thrown: &JsValue) -> Error {
    match get(thrown, "name").as_string() {
        Some(name) => from_dom(
            &name,
            &get(thrown, "message").as_string().unwrap_or_default(),
        ),
        None => Error::Storage(describe(thrown)),
    }
}

fn from_dom(name: &str, message: &str) -> Error {
    match name {
        "QuotaExceededError" => Error::Quota,
        "DataCloneError" | "DataError" => Error::Invalid(format!("{name}: {message}")),
        _ => Error::Storage(format!("{name}: {message}")),
    }
}

fn from_idb(e: IdbError) -> Error {
    match e {
        IdbError::DomException(dom) => {
            let dom: web_sys::DomException = dom.into();
            from_dom(&dom.name(), &dom.message())
        }
        IdbError::Unknown(js) => error_from_js(&JsValue::from(js)),
        IdbError::MissingData(e) => Error::Storage(format!("IndexedDB: {e}")),
        // Not through its `Display`: that formats floats, and the float
        // formatter alone is 14 KB of wasm.
        IdbError::Serialisation(_) => {
            Error::Storage("IndexedDB returned a value of an unexpected type".into())
        }
    }
}

fn from_open(e: OpenDbError) -> Error {
    match e {
        OpenDbError::Base(e) => from_idb(e),
        OpenDbError::VersionZero => Error::Invalid("database version 0".into()),
        OpenDbError::UnsupportedEnvironment | OpenDbError::NullFactory => {
            Error::Storage("IndexedDB is not available".into())
        }
    }
}

enum Either<A, B> {
    Left(A),
    Right(B),
}

/// Whichever future is ready first; both stay with the caller, so the loser
/// can be cleaned up (an open request must be, see `abandonOpen`). The
/// left one wins a tie.
async fn first<A, B>(left: &mut A, right: &mut B) -> Either<A::Output, B::Output>
where
    A: Future + Unpin,
    B: Future + Unpin,
{
    poll_fn(|cx| {
        if let Poll::Ready(out) = Pin::new(&mut *left).poll(cx) {
            return Poll::Ready(Either::Left(out));
        }
        if let Poll::Ready(out) = Pin::new(&mut *right).poll(cx) {
            return Poll::Ready(Either::Right(out));
        }
        Poll::Pending
    })
    .await
}

/// The stores of the user's database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Store {
    /// Confirmed records and their staged changes, keyed by
    /// [`record_key`].
    Records,
    /// Mutations not yet acknowledged, keyed by mutation id (so `all`
    /// returns them in id order: make ids sortable by creation).
    Outbox,
    /// Conflicts waiting for a person, keyed by conflict id.
    Conflicts,
    /// Mutations the server refused for good (dead letters), keyed by
    /// mutation id.
    Failed,
    /// Past sync runs, keyed by sync id.
    SyncLog,
    /// Cursor, current sync job id and other single values, keyed by name.
    Meta,
}

impl Store {
    /// Every store.
    pub const ALL: [Store; 6] = [
        Store::Records,
        Store::Outbox,
        Store::Conflicts,
        Store::Failed,
        Store::SyncLog,
        Store::Meta,
    ];

    /// The object store's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Records => "records",
            Self::Outbox => "outbox",
            Self::Conflicts => "conflicts",
            Self::Failed => "failed",
            Self::SyncLog => "synclog",
            Self::Meta => "meta",
        }
    }
}

impl AsRef<str> for Store {
    fn as_ref(&self) -> &str {
        self.name()
    }
}

/// The key of a record in [`Store::Records`]: `collection/id`.
/// Collections never contain `/` (the client checks their names), so the
/// records of one collection share the prefix `collection/`.
pub fn record_key(collection: &str, id: &str) -> String {
    format!("{collection}/{id}")
}

fn user_schema_v1(upgrade: &Upgrade) -> Result<(), Error> {
    Store::ALL
        .iter()
        .try_for_each(|store| upgrade.create_store(store.name()))
}

/// The schema of the user's database. A new version appends a migration.
pub const USER_SCHEMA: Schema = Schema {
    version: 1,
    migrations: &[user_schema_v1],
};

/// The user's database, `crm-sync:<user>`: records, outbox, conflicts,
/// failed mutations, sync log, metadata.
#[derive(Debug)]
#[must_use = "the connection closes when dropped"]
pub struct UserDb {
    db: Db,
}

impl UserDb {
    /// The database name of `user`.
    pub fn name_for(user: &str) -> String {
        format!("crm-sync:{user}")
    }

    /// Opens (creating or upgrading) the database of `user`.
    ///
    /// # Errors
    /// As [`Db::open`].
    pub async fn open(user: &str) -> Result<UserDb, Error> {
        Self::open_with(user, OpenOptions::default()).await
    }

    /// [`UserDb::open`] with other timeouts.
    ///
    /// # Errors
    /// As [`Db::open`].
    pub async fn open_with(user: &str, options: OpenOptions) -> Result<UserDb, Error> {
        let db = Db::open(&Self::name_for(user), USER_SCHEMA, options).await?;
        Ok(UserDb { db })
    }

    /// Whether the user's database holds work not on the server (outbox,
    /// dead letters, conflicts). A database that cannot be read counts as
    /// holding some: it is not deleted on a guess.
    pub async fn holds_work(user: &str) -> bool {
        let Ok(db) = UserDb::open(user).await else {
            return true;
        };
        let mut holds = false;
        for store in [Store::Outbox, Store::Failed, Store::Conflicts] {
            match db.all::<serde::de::IgnoredAny>(store).await {
                Ok(entries) if entries.is_empty() => {}
                _ => holds = true,
            }
        }
        db.close();
        holds
    }

    /// Deletes the database of `user` (logout). Open connections, in this
    /// tab and others, close themselves and report
    /// [`CloseReason::VersionChange`] with `new_version: None`.
    ///
    /// # Errors
    /// As [`Db::delete_database`].
    pub async fn delete_user(user: &str, timeout_ms: u32) -> Result<(), Error> {
        Db::delete_database(&Self::name_for(user), timeout_ms).await
    }

    /// The connection, for JS-valued reads and writes and
    /// [`Db::read_modify_write`].
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// See [`Db::on_close`].
    pub fn on_close(&self, callback: impl FnOnce(CloseReason) + 'static) {
        self.db.on_close(callback);
    }

    /// Closes the connection.
    pub fn close(&self) {
        self.db.close();
    }

    /// The value under `key`, read with serde.
    ///
    /// # Errors
    /// As [`Db::get`]; [`Error::Storage`] for a stored value that does not
    /// fit `T`.
    pub async fn get<T: DeserializeOwned>(
        &self,
        store: Store,
        key: &str,
    ) -> Result<Option<T>, Error> {
        match self.db.get(store.name(), key).await? {
            Some(value) => read(store, key, value).map(Some),
            None => Ok(None),
        }
    }

    /// Writes one value (serialised to plain objects).
    ///
    /// # Errors
    /// As [`Db::write`].
    pub async fn put<T: Serialize + ?Sized>(
        &self,
        store: Store,
        key: &str,
        value: &T,
    ) -> Result<(), Error> {
        let mut batch = Batch::new();
        batch.put(store, key, value)?;
        self.db.write(&batch).await
    }

    /// Deletes one value (nothing if absent).
    ///
    /// # Errors
    /// As [`Db::write`].
    pub async fn delete(&self, store: Store, key: &str) -> Result<(), Error> {
        let mut batch = Batch::new();
        batch.delete(store, key);
        self.db.write(&batch).await
    }

    /// Every `(key, value)` of a store, in key order.
    ///
    /// # Errors
    /// As [`UserDb::get`].
    pub async fn all<T: DeserializeOwned>(&self, store: Store) -> Result<Vec<(String, T)>, Error> {
        self.read_entries(store, None).await
    }

    /// The `(key, value)`s whose key starts with `prefix`, e.g. one
    /// collection's records with `record_key(collection, "")`.
    ///
    /// # Errors
    /// As [`UserDb::get`].
    pub async fn all_with_prefix<T: DeserializeOwned>(
        &self,
        store: Store,
        prefix: &str,
    ) -> Result<Vec<(String, T)>, Error> {
        self.read_entries(store, Some(prefix)).await
    }

    async fn read_entries<T: DeserializeOwned>(
        &self,
        store: Store,
        prefix: Option<&str>,
    ) -> Result<Vec<(String, T)>, Error> {
        self.db
            .entries(store.name(), prefix)
            .await?
            .into_iter()
            .map(|(key, value)| {
                let value = read(store, &key, value)?;
                Ok((key, value))
            })
            .collect()
    }

    /// Every key of a store, in key order.
    ///
    /// # Errors
    /// As [`Db::keys`].
    pub async fn keys(&self, store: Store) -> Result<Vec<String>, Error> {
        self.db.keys(store.name()).await
    }

    /// Writes a batch atomically, e.g. an outbox entry with its staged
    /// record. See [`Db::write`].
    ///
    /// # Errors
    /// As [`Db::write`].
    pub async fn write_batch(&self, batch: &Batch) -> Result<(), Error> {
        self.db.write(batch).await
    }
}

fn read<T: DeserializeOwned>(store: Store, key: &str, value: JsValue) -> Result<T, Error> {
    super::de::from_js(value)
        .map_err(|e| Error::Storage(format!("unreadable {} entry {key:?}: {e}", store.name())))
}
