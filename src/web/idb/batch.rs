//! The write batch: puts and deletes over one or more stores, written in
//! one transaction, serialised before it starts.

use indexed_db_futures::internals::SystemRepr;
use indexed_db_futures::transaction::Transaction;
use serde::Serialize;
use wasm_bindgen::prelude::*;

use super::error::{error_from_js, from_idb};
use super::scripts::write_batch_js;
#[cfg(doc)]
use super::Db;
use crate::error::Error;
use crate::web::js::to_js;

/// Puts and deletes over one or more stores, written by [`Db::write`] in
/// one transaction: all of them or none.
#[derive(Debug, Default, Clone)]
#[must_use = "a batch does nothing until written"]
pub struct Batch {
    ops: Vec<BatchOp>,
}

/// One write of a batch: what it does to the entry `key` of `store`.
#[derive(Debug, Clone)]
struct BatchOp {
    store: String,
    key: String,
    write: Write,
}

#[derive(Debug, Clone)]
enum Write {
    Put(JsValue),
    Delete,
    /// A put that leaves a newer version of the record in place.
    PutRecord(JsValue),
    /// A put made only if the key is in the store.
    PutIfPresent(JsValue),
}

impl BatchOp {
    /// The entry it writes: store and key.
    fn target(&self) -> (&str, &str) {
        (&self.store, &self.key)
    }
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    fn push(&mut self, store: impl AsRef<str>, key: impl Into<String>, write: Write) -> &mut Self {
        self.ops.push(BatchOp {
            store: store.as_ref().to_owned(),
            key: key.into(),
            write,
        });
        self
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
        Ok(self.push(store, key, Write::Put(to_js(value)?)))
    }

    /// Adds a put of a JS value as it is (stored by structured clone:
    /// `Date`s, typed arrays, `Map`s survive).
    pub fn put_js(
        &mut self,
        store: impl AsRef<str>,
        key: impl Into<String>,
        value: JsValue,
    ) -> &mut Self {
        self.push(store, key, Write::Put(value))
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
        Ok(self.push(store, key, Write::PutRecord(to_js(value)?)))
    }

    /// [`Batch::put_record`] of a record that is a JS object already (as
    /// the server sent it).
    pub fn put_record_js(
        &mut self,
        store: impl AsRef<str>,
        key: impl Into<String>,
        value: JsValue,
    ) -> &mut Self {
        self.push(store, key, Write::PutRecord(value))
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
        Ok(self.push(store, key, Write::PutIfPresent(to_js(value)?)))
    }

    /// Adds a delete (of nothing, if the key is absent).
    pub fn delete(&mut self, store: impl AsRef<str>, key: impl Into<String>) -> &mut Self {
        self.push(store, key, Write::Delete)
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
        self.ops.iter().any(|op| op.store == store)
    }

    /// Whether a write needs the check of [`Batch::put_record`].
    pub(super) fn has_record_puts(&self) -> bool {
        self.ops
            .iter()
            .any(|op| matches!(op.write, Write::PutRecord(_) | Write::PutIfPresent(_)))
    }

    /// Writes the batch with `writeBatch`: one transaction, requests in
    /// chunks, record puts checked against the stored version.
    pub(super) fn write_js(&self, db: &web_sys::IdbDatabase) -> js_sys::Promise {
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
            let (kind, value) = match &op.write {
                Write::Put(value) => (0, value),
                Write::Delete => (1, &JsValue::UNDEFINED),
                Write::PutRecord(value) => (2, value),
                Write::PutIfPresent(value) => (3, value),
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
    pub(super) fn stores(&self) -> Vec<&str> {
        let mut stores: Vec<&str> = Vec::new();
        for op in &self.ops {
            if !stores.contains(&op.store.as_str()) {
                stores.push(&op.store);
            }
        }
        stores
    }

    /// Issues every write in `tx` without awaiting them: the commit waits
    /// for them, and a failure of any aborts the whole transaction.
    pub(super) fn issue(&self, tx: &Transaction<'_>) -> Result<(), Error> {
        // Plain requests: nobody awaits them (the commit does), so no
        // future is made per write; the store handle is reused while the
        // store stays the same.
        let mut current: Option<(&str, web_sys::IdbObjectStore)> = None;
        for op in &self.ops {
            let name = op.store.as_str();
            let store = match &current {
                Some((open, store)) if *open == name => store,
                _ => {
                    let store = tx.object_store(name).map_err(from_idb)?.as_sys().clone();
                    &current.insert((name, store)).1
                }
            };
            let key = JsValue::from_str(&op.key);
            let issued = match &op.write {
                Write::Put(value) => store.put_with_key(value, &key),
                Write::Delete => store.delete(&key),
                // Written by `write_js` only: an explicit commit would refuse
                // the put a read's answer issues.
                Write::PutRecord(value) | Write::PutIfPresent(value) => {
                    store.put_with_key(value, &key)
                }
            };
            issued.map_err(|e| error_from_js(&e))?;
        }
        Ok(())
    }
}
