//! `LocalStore`: IndexedDB with versioned values, usable without the
//! client (docs/reference.md).
//!
//! Each entry is stored by structured clone as `{ v: version, value }`, so
//! `Date`s, typed arrays and `Map`s come back as they went in, with no JSON
//! round trip. Every write compares and writes inside one readwrite
//! transaction ([`Db::checked_write`], or [`Db::read_modify_write`] for
//! `update`), which the browser runs one after another across connections
//! and tabs: a version check there is atomic.

use std::rc::Rc;

use js_sys::{Array, Function, Object, Promise, Reflect};
use wasm_bindgen::prelude::*;

use crate::error::Error;
use crate::web::idb::{Batch, Db, OpenOptions, Schema, Upgrade};
use crate::web::js::{get, prop};
use crate::web::primitives::{name, safe_integer};

#[wasm_bindgen(typescript_custom_section)]
const LOCAL_STORE_TS: &'static str = r#"
/** A value of a {@link LocalStore} with its version (1 after the first write). */
export interface Versioned<T = unknown> {
  value: T;
  version: number;
}

/**
 * IndexedDB with versioned values. Values are stored by structured clone
 * (`Date`s, typed arrays and `Map`s survive; functions do not). Several
 * stores of one name (in one tab or many) see the same data, and their
 * writes are atomic against each other.
 */
export class LocalStore {
  private constructor();
  free(): void;
  [Symbol.dispose](): void;
  /**
   * Opens (or creates) the store `name` (an IndexedDB database of that name).
   * Rejects with `CrmError` `storage` when IndexedDB cannot be used.
   */
  static open(name: string): Promise<LocalStore>;
  /** The value and its version, or `undefined` if absent. */
  get<T = unknown>(key: string): Promise<Versioned<T> | undefined>;
  /**
   * Writes `value` if the stored version is `expectedVersion` (absent,
   * `0` or `null`: the key must not exist). Resolves to the new version;
   * rejects with `CrmError` `version_mismatch` (`details: { expected, found }`)
   * and writes nothing otherwise. One round trip to the database: the
   * check and the write are one transaction.
   */
  put<T>(key: string, value: T, expectedVersion?: number | null): Promise<number>;
  /**
   * Writes several values in one transaction, each if its stored version
   * is its `expectedVersion` (as for `put`): all of them, or on any
   * mismatch none (rejecting with `version_mismatch`, `details: { key,
   * expected, found }` for the first key that differed). Resolves to the
   * new versions, in the order given. A key may appear once.
   */
  putMany<T>(entries: ReadonlyArray<{ key: string; value: T; expectedVersion?: number | null }>): Promise<number[]>;
  /**
   * Atomic read-modify-write: calls `fn` with the current value (`undefined`
   * if absent) inside the transaction and stores what it returns, with the
   * version one higher. `fn` must be synchronous. If it throws, nothing is
   * written and the promise rejects with what it threw.
   */
  update<T = unknown>(key: string, fn: (current: T | undefined) => T): Promise<Versioned<T>>;
  /**
   * Deletes the value if its version is `expectedVersion` (`0`: it must not
   * exist, and nothing is deleted). Resolves to whether a value was deleted;
   * rejects with `CrmError` `version_mismatch` otherwise.
   */
  delete(key: string, expectedVersion: number): Promise<boolean>;
  /** Every key, in order. */
  keys(): Promise<string[]>;
  /** Closes the connection; later calls reject with `CrmError` `closed`. */
  close(): void;
}
"#;

/// The one object store of a `LocalStore` database.
const ENTRIES: &str = "entries";

fn local_store_v1(upgrade: &Upgrade) -> Result<(), Error> {
    upgrade.create_store(ENTRIES)
}

const LOCAL_STORE_SCHEMA: Schema = Schema {
    version: 1,
    migrations: &[local_store_v1],
};

/// IndexedDB with versioned values: `get`, version-checked `put`,
/// `putMany` and `delete`, atomic `update`, `keys`.
#[wasm_bindgen(skip_typescript)]
pub struct LocalStore {
    db: Rc<Db>,
    /// What a failed `put` rejects with (see [`put_failure`]); made once.
    put_failure: Closure<dyn FnMut(f64, JsValue, String, f64) -> JsValue>,
}

/// The error a `put` rejects with: `found` is the version seen when it
/// differed (NaN: not an entry of a `LocalStore`), or -1 with what
/// IndexedDB threw.
fn put_failure(found: f64, thrown: JsValue, key: String, expected: f64) -> JsValue {
    let err = if found == -1.0 {
        match get(&thrown, "name").as_string().as_deref() {
            Some("InvalidStateError") => Error::Closed,
            _ => crate::web::idb::error_from_js(&thrown),
        }
    } else {
        match as_version(found) {
            Some(found) => Error::VersionMismatch {
                key,
                expected: as_version(expected).unwrap_or(0),
                found,
            },
            None => not_ours(&key),
        }
    };
    err.into()
}

impl LocalStore {
    /// As `LocalStore.open` in JavaScript, as a future (for Rust callers).
    ///
    /// # Errors
    /// As `LocalStore.open`.
    pub async fn open(name: String) -> Result<LocalStore, JsValue> {
        let db = Db::open(&name, LOCAL_STORE_SCHEMA, OpenOptions::default()).await?;
        Ok(LocalStore {
            db: Rc::new(db),
            put_failure: Closure::new(put_failure),
        })
    }
}

#[wasm_bindgen]
impl LocalStore {
    /// Opens (or creates) the store `name`, an IndexedDB database of that
    /// name.
    ///
    /// # Errors
    /// Rejects with `CrmError` `storage` when IndexedDB cannot be used (not
    /// available, blocked, no answer) or the database is not a `LocalStore`
    /// of this version.
    #[wasm_bindgen(skip_typescript, js_name = open)]
    pub fn open_promise(name: String) -> Promise {
        super::spawn_promise(async move { Ok(Self::open(name).await?.into()) })
    }

    /// `{ value, version }` under `key`, or `undefined`.
    ///
    /// # Errors
    /// Rejects with `CrmError` `closed` after `close` (or when another tab
    /// upgraded or deleted the database), `storage` when the read fails or
    /// the entry was not written by a `LocalStore`.
    #[wasm_bindgen(skip_typescript)]
    pub fn get(&self, key: String) -> Promise {
        let db = Rc::clone(&self.db);
        super::spawn_promise(async move {
            match db.get(ENTRIES, &key).await? {
                Some(entry) => {
                    let version = version_of(&key, Some(&entry))?;
                    Ok(versioned(&prop(&entry, VALUE), version))
                }
                None => Ok(JsValue::UNDEFINED),
            }
        })
    }

    /// Writes `value` if the stored version is `expected_version`
    /// (`undefined`, `null` or `0`: the key must not exist); resolves to the
    /// new version.
    ///
    /// # Errors
    /// Rejects with `CrmError` `version_mismatch` (nothing written) when the
    /// version differs, `invalid` for a bad version or a value that cannot
    /// be cloned (a function), `quota`, `closed` or `storage`.
    #[wasm_bindgen(skip_typescript)]
    pub fn put(&self, key: String, value: JsValue, expected_version: JsValue) -> Promise {
        // No Rust future: the snippet's promise is the answer, and a
        // failure is made into a `CrmError` by `put_failure`.
        let written = expected_version_of(&expected_version, true).and_then(|expected| {
            self.db.versioned_put(
                ENTRIES,
                &key,
                &entry(&value, expected + 1),
                expected,
                self.put_failure.as_ref().unchecked_ref(),
            )
        });
        written.unwrap_or_else(|e| Promise::reject(&e.into()))
    }

    /// Writes several values in one transaction, each if its stored version
    /// is its `expectedVersion`: all of them or, on any mismatch, none;
    /// resolves to the new versions in the order given.
    ///
    /// # Errors
    /// Rejects with `CrmError` `version_mismatch` (nothing written; `details`
    /// name the first key that differed), `invalid` for an entry that is not
    /// `{ key, value, expectedVersion? }`, a key given twice or a value that
    /// cannot be cloned, `quota`, `closed` or `storage`.
    #[wasm_bindgen(js_name = putMany, skip_typescript)]
    pub fn put_many(&self, entries: JsValue) -> Promise {
        let db = Rc::clone(&self.db);
        super::spawn_promise(async move {
            let items = read_entries(&entries)?;
            let mut batch = Batch::new();
            for (key, value, expected) in &items {
                batch.put_js(ENTRIES, key.as_str(), entry(value, expected + 1));
            }
            let keys: Vec<&str> = items.iter().map(|(key, _, _)| key.as_str()).collect();
            db.checked_write(&[ENTRIES], ENTRIES, &keys, &batch, |current| {
                for ((key, _, expected), found) in items.iter().zip(&current) {
                    check_version(key, *expected, found.as_ref())?;
                }
                Ok::<_, Error>(())
            })
            .await?;
            Ok(items
                .iter()
                .map(|(_, _, expected)| JsValue::from((expected + 1) as f64))
                .collect::<Array>()
                .into())
        })
    }

    /// Atomic read-modify-write: calls the synchronous `f(current)` inside
    /// the transaction and writes its result with the version one higher;
    /// resolves to `{ value, version }`.
    ///
    /// # Errors
    /// Rejects with what `f` threw (nothing written), `CrmError` `invalid`
    /// when `f` returns a promise (it must be synchronous: awaiting would
    /// end the transaction) or an uncloneable value, `quota`, `closed` or
    /// `storage`.
    #[wasm_bindgen(skip_typescript)]
    pub fn update(&self, key: String, f: Function) -> Promise {
        let db = Rc::clone(&self.db);
        super::spawn_promise(async move {
            let (value, version) = db
                .read_modify_write(&[ENTRIES], ENTRIES, &key, |current| {
                    let found = version_of(&key, current.as_ref())?;
                    let old = current.map_or(JsValue::UNDEFINED, |entry| prop(&entry, VALUE));
                    let new = f.call1(&JsValue::UNDEFINED, &old)?;
                    if is_thenable(&new) {
                        return Err(Error::Invalid(
                            "update's function must be synchronous; it returned a promise".into(),
                        )
                        .into());
                    }
                    let next = found + 1;
                    let mut batch = Batch::new();
                    batch.put_js(ENTRIES, key.as_str(), entry(&new, next));
                    Ok::<_, JsValue>((batch, (new, next)))
                })
                .await?;
            Ok(versioned(&value, version))
        })
    }

    /// Deletes the value if its version is `expected_version` (`0`: it must
    /// not exist); resolves to whether a value was deleted.
    ///
    /// # Errors
    /// Rejects with `CrmError` `version_mismatch` (nothing deleted) when the
    /// version differs, `invalid` when `expected_version` is not a version
    /// (it is required), `closed` or `storage`.
    #[wasm_bindgen(skip_typescript)]
    pub fn delete(&self, key: String, expected_version: JsValue) -> Promise {
        let db = Rc::clone(&self.db);
        super::spawn_promise(async move {
            let expected = expected_version_of(&expected_version, false)?;
            let mut batch = Batch::new();
            if expected > 0 {
                batch.delete(ENTRIES, key.as_str());
            }
            db.checked_write(&[ENTRIES], ENTRIES, &[&key], &batch, |current| {
                check_version(&key, expected, current.first().and_then(Option::as_ref))
            })
            .await?;
            Ok(JsValue::from(expected > 0))
        })
    }

    /// Every key, in order.
    ///
    /// # Errors
    /// Rejects with `CrmError` `closed` or `storage`.
    #[wasm_bindgen(skip_typescript)]
    pub fn keys(&self) -> Promise {
        let db = Rc::clone(&self.db);
        super::spawn_promise(async move {
            let keys = db.keys(ENTRIES).await?;
            Ok(keys
                .into_iter()
                .map(JsValue::from)
                .collect::<Array>()
                .into())
        })
    }

    /// Closes the connection (writes under way still finish); later calls
    /// reject with `CrmError` `closed`.
    #[wasm_bindgen(skip_typescript)]
    pub fn close(&self) {
        self.db.close();
    }
}

/// Property names of a stored entry and of a `putMany` item.
const V: &str = "v";
const VALUE: &str = "value";
const KEY: &str = "key";
const EXPECTED: &str = "expectedVersion";

/// `{ v: version, value }`, the stored form.
fn entry(value: &JsValue, version: u64) -> JsValue {
    let entry = Object::new();
    let _ = Reflect::set(&entry, &name(V), &JsValue::from(version as f64));
    let _ = Reflect::set(&entry, &name(VALUE), value);
    entry.into()
}

/// `{ value, version }`, what JavaScript gets.
fn versioned(value: &JsValue, version: u64) -> JsValue {
    let out = Object::new();
    let _ = Reflect::set(&out, &name(VALUE), value);
    let _ = Reflect::set(&out, &name("version"), &JsValue::from(version as f64));
    out.into()
}

/// `Ok` when the stored entry has version `expected` (0: absent).
fn check_version(key: &str, expected: u64, stored: Option<&JsValue>) -> Result<(), Error> {
    let found = version_of(key, stored)?;
    if found == expected {
        Ok(())
    } else {
        Err(Error::VersionMismatch {
            key: key.to_owned(),
            expected,
            found,
        })
    }
}

/// The most entries one `putMany` takes: one transaction holds them all in
/// memory, twice (the values and their stored form).
const MAX_PUT_MANY: u32 = 100_000;

/// Reads `putMany`'s array of `{ key, value, expectedVersion? }`.
fn read_entries(entries: &JsValue) -> Result<Vec<(String, JsValue, u64)>, Error> {
    if !Array::is_array(entries) {
        return Err(Error::Invalid(
            "putMany takes an array of { key, value, expectedVersion }".into(),
        ));
    }
    let entries = Array::from(entries);
    if entries.length() > MAX_PUT_MANY {
        return Err(Error::Invalid(format!(
            "putMany takes at most {MAX_PUT_MANY} entries; split the batch"
        )));
    }
    let mut out: Vec<(String, JsValue, u64)> = Vec::with_capacity(entries.length() as usize);
    for (i, item) in entries.iter().enumerate() {
        let key = prop(&item, KEY)
            .as_string()
            .ok_or_else(|| Error::Invalid(format!("putMany entry {i} has no string key")))?;
        let expected = expected_version_of(&prop(&item, EXPECTED), true)?;
        out.push((key, prop(&item, VALUE), expected));
    }
    let mut keys: Vec<&str> = out.iter().map(|(key, _, _)| key.as_str()).collect();
    crate::core::sort::sort(&mut keys);
    if let Some(twice) = keys.windows(2).find(|w| w[0] == w[1]) {
        return Err(Error::Invalid(format!(
            "putMany has the key {:?} twice",
            twice[0]
        )));
    }
    Ok(out)
}

/// The version of a stored entry, 0 if absent.
fn version_of(key: &str, entry: Option<&JsValue>) -> Result<u64, Error> {
    let Some(entry) = entry else {
        return Ok(0);
    };
    prop(entry, V)
        .as_f64()
        .and_then(as_version)
        .filter(|v| *v > 0)
        .ok_or_else(|| not_ours(key))
}

fn not_ours(key: &str) -> Error {
    Error::Storage(format!("entry {key:?} was not written by a LocalStore"))
}

/// Reads the app's expected version: a whole number from 0; where
/// `absent_is_zero`, `undefined` and `null` mean 0 too.
fn expected_version_of(value: &JsValue, absent_is_zero: bool) -> Result<u64, Error> {
    if absent_is_zero && (value.is_undefined() || value.is_null()) {
        return Ok(0);
    }
    value
        .as_f64()
        .and_then(as_version)
        .ok_or_else(|| Error::Invalid(format!("not a version: {value:?}")))
}

fn as_version(n: f64) -> Option<u64> {
    safe_integer(n).filter(|n| *n >= 0.0).map(|n| n as u64)
}

fn is_thenable(value: &JsValue) -> bool {
    value.is_instance_of::<Promise>() || get(value, "then").is_function()
}
