//! A connection to one database: it closes itself for another tab's
//! upgrade or delete, reads, and writes batches in one transaction each.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use gloo_timers::future::TimeoutFuture;
use indexed_db_futures::database::Database;
use indexed_db_futures::error::{DomException, Error as IdbError};
// `SystemRepr::as_sys` is the crate's documented-but-hidden door to the
// web-sys objects; it is needed for what the crate does not wrap: the
// `versionchange`/`close` events with a synchronous close, the abandoned
// open request, and the transaction's own error (quota).
use indexed_db_futures::internals::SystemRepr;
use indexed_db_futures::object_store::ObjectStore;
use indexed_db_futures::prelude::*;
use indexed_db_futures::transaction::{Transaction, TransactionMode};
use indexed_db_futures::KeyRange;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use super::batch::Batch;
use super::error::{error_from_js, from_dom, from_idb, from_open};
use super::open::{first, open_attempt, Attempt, Either, OpenOptions, Schema};
use super::scripts::{read_pages, versioned_put};
use crate::error::Error;
use crate::web::js::get;

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

/// Whether and why the connection closed, and whom to tell: shared with
/// the event listeners that see it close.
#[derive(Default)]
struct CloseStatus {
    closed: Cell<bool>,
    reason: Cell<Option<CloseReason>>,
    on_close: RefCell<Option<CloseCallback>>,
}

impl CloseStatus {
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

/// A connection to one database.
///
/// Closes itself when another connection needs a newer version or deletes
/// the database (see [`Db::on_close`]); closes on drop. Every method then
/// fails with [`Error::Closed`].
#[must_use = "the connection closes when dropped"]
pub struct Db {
    db: Database,
    raw: web_sys::IdbDatabase,
    close_status: Rc<CloseStatus>,
    _listeners: [Listener; 2],
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("name", &self.raw.name())
            .field("version", &self.raw.version())
            .field("closed", &self.close_status.closed.get())
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
        let close_status = Rc::new(CloseStatus::default());
        let on_version_change = {
            let (raw, close_status) = (raw.clone(), Rc::clone(&close_status));
            // Closing here, synchronously, is what lets the other
            // connection's upgrade go on without a `blocked` event.
            move |event: web_sys::Event| {
                raw.close();
                let new_version = get(&event, "newVersion").as_f64().map(|v| v as u32);
                close_status.closed_by(CloseReason::VersionChange { new_version });
            }
        };
        let on_forced_close = {
            let close_status = Rc::clone(&close_status);
            move |_: web_sys::Event| close_status.closed_by(CloseReason::Forced)
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
            close_status,
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
        self.close_status.closed.get()
    }

    /// Calls `callback` once when the connection closes by itself (another
    /// tab upgrades or deletes the database, or the browser closes it), so
    /// the owner can tell the app (a status event) and reopen. Called at
    /// once if that has happened already; replaces an earlier callback.
    pub fn on_close(&self, callback: impl FnOnce(CloseReason) + 'static) {
        match self.close_status.reason.get() {
            Some(reason) => callback(reason),
            None => *self.close_status.on_close.borrow_mut() = Some(Box::new(callback)),
        }
    }

    /// Closes the connection (running transactions still finish).
    pub fn close(&self) {
        if !self.close_status.closed.replace(true) {
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

    /// The values of the keys of `store` that start with `prefix`, in key
    /// order, `page` at a time from one readonly transaction: each page is
    /// asked for as the one before it answers, so IndexedDB reads on while
    /// the caller works, and taking a page in is no long task (one
    /// `getAll` of 100,000 records was a task of 0.2 to 0.4 s).
    ///
    /// # Errors
    /// [`Error::Closed`] when the database is closed.
    pub fn value_pages(&self, store: &str, prefix: &str, page: u32) -> Result<ValuePages, Error> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        Ok(ValuePages {
            reader: read_pages(
                &self.raw,
                store,
                prefix,
                &format!("{prefix}\u{ffff}"),
                page.max(1),
            ),
        })
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

/// The pages of [`Db::value_pages`].
pub struct ValuePages {
    /// The reader of `readPages` (`scripts.rs`).
    reader: JsValue,
}

impl ValuePages {
    /// The next page's values; `None` after the last.
    ///
    /// # Errors
    /// [`Error::Closed`] when the connection closed meanwhile,
    /// [`Error::Storage`] for a failing read.
    pub async fn next(&self) -> Result<Option<js_sys::Array>, Error> {
        let next: js_sys::Function = get(&self.reader, "next").unchecked_into();
        let asked = next
            .call0(&self.reader)
            .map_err(|e| error_from_js(&e))?
            .unchecked_into::<js_sys::Promise>();
        let page = wasm_bindgen_futures::JsFuture::from(asked)
            .await
            .map_err(|e| match get(&e, "name").as_string().as_deref() {
                Some("InvalidStateError") => Error::Closed,
                _ => error_from_js(&e),
            })?;
        Ok(page.dyn_into::<js_sys::Array>().ok())
    }
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
