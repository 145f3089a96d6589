//! `undo`, `redo` and `undoable()` as the runner carries them out: the
//! record (and, to undo a version, its history) is read first; the engine
//! decides what the undo sends and what is a conflict.

use super::*;
use crate::core::engine::{ReadTarget, UndoTarget};
use crate::core::history::{HistoryEntry, HistoryOp, MAX_LIMIT};
use crate::core::record::FieldValue;
use crate::core::undo::UndoEntry;

/// The prefix of the undo list's keys in the `meta` store (one key per
/// change, so two tabs committing at once never write over each other).
pub(super) const UNDO_PREFIX: &str = "undo/";

/// The key of an undo entry in the `meta` store.
pub(super) fn undo_key(mutation_id: &str) -> String {
    format!("{UNDO_PREFIX}{mutation_id}")
}

/// What `undo` names.
#[derive(Debug, Clone, PartialEq)]
pub enum UndoRequest {
    /// A change of `undoable()`, by its mutation id.
    Mutation(String),
    /// A change from the record's history, by the version it made.
    Version {
        /// The record's collection.
        collection: String,
        /// The record's id.
        id: String,
        /// The version the change made.
        version: u64,
    },
}

/// One change of `undoable()`, as the app sees it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsUndoable<'a> {
    mutation_id: &'a str,
    collection: &'a str,
    record_id: &'a str,
    version: u64,
    fields: Vec<String>,
    before: &'a Fields,
    after: &'a Fields,
    at: u64,
}

impl Client {
    /// The undo list as IndexedDB holds it (empty when it cannot be read:
    /// what the list names stays on the server either way).
    pub(super) async fn stored_undo(db: &UserDb) -> Vec<UndoEntry> {
        db.all_with_prefix::<UndoEntry>(Store::Meta, UNDO_PREFIX)
            .await
            .map(|rows| rows.into_iter().map(|(_, e)| e).collect())
            .unwrap_or_default()
    }

    /// `undoable()`: this user's committed changes that can be taken back,
    /// newest first; the same array until the list changes.
    pub fn undoable(&self) -> JsValue {
        self.snapshot("undoable".into(), || {
            let state = self.inner.state.borrow();
            let rows: Vec<JsUndoable<'_>> = state
                .engine
                .undo_list()
                .undoable()
                .map(|e| JsUndoable {
                    mutation_id: &e.mutation_id,
                    collection: &e.collection,
                    record_id: &e.record_id,
                    version: e.version,
                    fields: e.changed_fields(),
                    before: &e.before,
                    after: &e.after,
                    at: e.at_ms,
                })
                .collect();
            to_js(&rows).unwrap_or_else(|_| js_sys::Array::new().into())
        })
    }

    /// `{ type: "undoable", changes }`.
    pub(super) fn emit_undoable(&self) {
        self.inner.snapshots.borrow_mut().remove("undoable");
        let event = js_sys::Object::new();
        let _ = js_sys::Reflect::set(&event, &"type".into(), &"undoable".into());
        let _ = js_sys::Reflect::set(&event, &"changes".into(), &self.undoable());
        emit_to(&self.inner.listeners, &event.into());
    }

    /// Takes a committed change back as a new change.
    ///
    /// # Errors
    /// `not_found` (no such change, record or version), `invalid` (a
    /// version that created or deleted the record), `offline` (a version
    /// needs the server's history), `closed`, or what the server said.
    pub async fn undo(&self, request: UndoRequest) -> Result<JsValue, Error> {
        self.check_open()?;
        let target = match request {
            UndoRequest::Mutation(id) => {
                self.fetch_listed(&id).await?;
                UndoTarget::Mutation(id)
            }
            UndoRequest::Version {
                collection,
                id,
                version,
            } => self.version_target(&collection, &id, version).await?,
        };
        self.check_open()?;
        let promise = self.ask(|caller| Event::Undo { target, caller });
        JsFuture::from(promise).await.map_err(rejected)
    }

    /// Takes an undo back.
    ///
    /// # Errors
    /// `not_found` (nothing to redo), `closed`, or what the server said.
    pub async fn redo(&self, mutation_id: &str) -> Result<JsValue, Error> {
        self.check_open()?;
        self.fetch_listed(mutation_id).await?;
        self.check_open()?;
        let target = UndoTarget::Redo(mutation_id.to_owned());
        let promise = self.ask(|caller| Event::Undo { target, caller });
        JsFuture::from(promise).await.map_err(rejected)
    }

    /// Reads the record of a listed change if this tab has not loaded it.
    async fn fetch_listed(&self, mutation_id: &str) -> Result<(), Error> {
        let key = {
            let state = self.inner.state.borrow();
            let Some(e) = state.engine.undo_list().get(mutation_id) else {
                // The engine says so.
                return Ok(());
            };
            let key = RecordKey::new(&e.collection, &e.record_id);
            let known = state
                .engine
                .records()
                .get(&key.collection, &key.id)
                .is_some();
            if known {
                return Ok(());
            }
            key
        };
        self.fetch_one(&key).await
    }

    /// What a version of the record's history changed, read from the
    /// server.
    async fn version_target(
        &self,
        collection: &str,
        id: &str,
        version: u64,
    ) -> Result<UndoTarget, Error> {
        check_collection(collection)?;
        if id.is_empty() {
            return Err(Error::Invalid("undo needs a record id".into()));
        }
        if !self.is_online() {
            return Err(Error::Offline);
        }
        let key = RecordKey::new(collection, id);
        let history = ReadTarget::History {
            key: key.clone(),
            limit: MAX_LIMIT,
        };
        // The entries as `history` hands them to the app.
        let items: Vec<HistoryEntry> = from_server(self.read_from_server(history).await?)?;
        let Some(change) = items.into_iter().find(|e| e.version == version) else {
            return Err(not_found(format!(
                "no version {version} in the history of {collection}/{id}"
            )));
        };
        if matches!(change.op, Some(HistoryOp::Create | HistoryOp::Delete)) {
            return Err(Error::Invalid(
                "only a change of fields can be undone, not a creation or a deletion".into(),
            ));
        }
        let (mut before, mut after) = (Fields::new(), Fields::new());
        for (name, c) in change.changes {
            before.insert(name.clone(), c.from.unwrap_or(FieldValue::Null));
            after.insert(name, c.to.unwrap_or(FieldValue::Null));
        }
        // The record as it is now: the change may be someone else's, not
        // yet seen here.
        self.fetch_one(&key).await?;
        Ok(UndoTarget::Version {
            key,
            version,
            before,
            after,
        })
    }
}
