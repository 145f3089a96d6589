//! What the app reads: records, views, pending work, conflicts, status and
//! counters as JavaScript values, each kept as one object until something
//! changes (a cheap snapshot for `useSyncExternalStore`).

use super::*;
use crate::core::engine::ReadAnswer;
use crate::core::history::newest_first;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsComment<'a> {
    id: &'a str,
    author: &'a str,
    text: &'a str,
    created_at: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pending: Option<bool>,
}

/// A record as JavaScript gets it, with the `pending` and `stale` marks.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct JsRecord<'a> {
    id: &'a str,
    version: u64,
    updated_at: &'a str,
    updated_by: &'a str,
    fields: &'a Fields,
    comments: Vec<JsComment<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pending: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stale: Option<bool>,
}

impl<'a> JsRecord<'a> {
    pub(super) fn of(record: &'a Record, stale: bool) -> Self {
        JsRecord {
            id: &record.id,
            version: record.version,
            updated_at: &record.updated_at,
            updated_by: &record.updated_by,
            fields: &record.fields,
            comments: record
                .comments
                .iter()
                .map(|c| JsComment {
                    id: &c.id,
                    author: &c.author,
                    text: &c.text,
                    created_at: &c.created_at,
                    pending: None,
                })
                .collect(),
            pending: None,
            stale: stale.then_some(true),
        }
    }
}

/// A conflict as JavaScript gets it: `base` as a record, so a dialog can
/// show base, mine and theirs per field.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct JsConflict<'a> {
    id: &'a str,
    collection: &'a str,
    record_id: &'a str,
    base: Option<JsRecord<'a>>,
    mine: &'a Fields,
    theirs: JsRecord<'a>,
    fields: &'a [String],
}

/// One row of `pending()` / `failed()`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsMutation<'a> {
    mutation_id: std::borrow::Cow<'a, str>,
    collection: &'a str,
    record_id: &'a str,
    op: &'static str,
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    fields: Option<&'a Fields>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    attempts: u32,
    created_at: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<JsEntryError<'a>>,
}

/// The last error of a row, as `{ code, message }`.
#[derive(Serialize)]
struct JsEntryError<'a> {
    code: ErrorCode,
    message: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsStatus<'a> {
    online: bool,
    leader: bool,
    pending: usize,
    failed: usize,
    storage: &'static str,
    durable: bool,
    last_sync_at: Option<&'a str>,
    /// The full load under way, and why it is not answered from
    /// IndexedDB.
    full_load: Option<JsFullLoad<'a>>,
}

#[derive(Serialize)]
struct JsFullLoad<'a> {
    collection: &'a str,
    reason: &'static str,
}

impl Client {
    /// The confirmed record, or `undefined`.
    pub fn get(&self, collection: &str, id: &str) -> JsValue {
        self.snapshot(format!("get\u{0}{collection}\u{0}{id}"), || {
            let state = self.inner.state.borrow();
            let stale = state.engine.is_stale(collection);
            state
                .engine
                .records()
                .get(collection, id)
                .map_or(JsValue::UNDEFINED, |r| {
                    record_object(
                        &self.inner.record_js,
                        collection,
                        &r,
                        stale,
                        &JsValue::UNDEFINED,
                    )
                })
        })
    }

    /// All confirmed records of a collection.
    pub fn list(&self, collection: &str) -> JsValue {
        self.snapshot(format!("list\u{0}{collection}"), || {
            let state = self.inner.state.borrow();
            let stale = state.engine.is_stale(collection);
            let records = state.engine.records().list(collection);
            let out = js_sys::Array::new_with_length(records.len() as u32);
            for (i, r) in records.iter().enumerate() {
                let object = record_object(
                    &self.inner.record_js,
                    collection,
                    r,
                    stale,
                    &JsValue::UNDEFINED,
                );
                out.set(i as u32, object);
            }
            out.into()
        })
    }

    /// The confirmed record with this tab's staged changes laid over it.
    pub fn view(&self, collection: &str, id: &str) -> JsValue {
        self.snapshot(format!("view\u{0}{collection}\u{0}{id}"), || {
            let state = self.inner.state.borrow();
            let user = self.inner.session.borrow().user.clone();
            let Some(view) = state.engine.records().view(collection, id) else {
                return JsValue::UNDEFINED;
            };
            let stale = state.engine.is_stale(collection);
            let mut out = JsRecord::of(&view.record, stale);
            for pending in &view.pending_comments {
                out.comments.push(JsComment {
                    id: &pending.id,
                    author: &user,
                    text: &pending.text,
                    created_at: "",
                    pending: Some(true),
                });
            }
            out.pending = view.pending.then_some(true);
            to_js(&out).unwrap_or(JsValue::UNDEFINED)
        })
    }

    /// Staged and queued mutations, oldest first.
    pub fn pending(&self) -> JsValue {
        self.snapshot("pending".into(), || {
            let state = self.inner.state.borrow();
            let mut rows: Vec<JsMutation<'_>> = Vec::new();
            for (key, change) in state.engine.debounced() {
                {
                    rows.push(JsMutation {
                        mutation_id: format!("{STAGED_PREFIX}{}/{}", key.collection, key.id).into(),
                        collection: &key.collection,
                        record_id: &key.id,
                        op: "patch",
                        state: "staged",
                        fields: Some(&change.fields),
                        text: None,
                        attempts: 0,
                        created_at: 0,
                        error: None,
                    });
                }
            }
            rows.extend(state.engine.outbox().pending().iter().map(mutation_row));
            to_js(&rows).unwrap_or_else(|_| js_sys::Array::new().into())
        })
    }

    /// Mutations the server refused for good, oldest refusal first, each
    /// as [`failure_object`] makes it.
    pub fn failed(&self) -> JsValue {
        self.snapshot("failed".into(), || {
            let state = self.inner.state.borrow();
            let rows = js_sys::Array::new();
            for entry in state.engine.outbox().failed() {
                rows.push(&failure_object(entry));
            }
            rows.into()
        })
    }

    /// Conflicts waiting for a person.
    pub fn conflicts(&self) -> JsValue {
        self.snapshot("conflicts".into(), || {
            let state = self.inner.state.borrow();
            let rows: Vec<JsConflict<'_>> =
                state.engine.conflicts().values().map(js_conflict).collect();
            to_js(&rows).unwrap_or_else(|_| js_sys::Array::new().into())
        })
    }

    /// `{ online, leader, pending, failed, storage, durable, lastSyncAt, fullLoad }`.
    pub fn status(&self) -> JsValue {
        self.snapshot("status".into(), || {
            let state = self.inner.state.borrow();
            let staged_only = state.engine.debounced().count();
            let status = JsStatus {
                online: state.engine.is_online(),
                leader: self.inner.leader.get(),
                pending: state.engine.outbox().pending().len() + staged_only,
                failed: state.engine.outbox().failed().len(),
                storage: if self.inner.db.borrow().is_some() && self.inner.held.borrow().is_none() {
                    "indexeddb"
                } else {
                    "memory"
                },
                durable: self.inner.durable.get(),
                last_sync_at: state.last_sync_at.as_deref(),
                full_load: state
                    .engine
                    .full_load()
                    .map(|(collection, reason)| JsFullLoad {
                        collection,
                        reason: reason.as_str(),
                    }),
            };
            to_js(&status).unwrap_or(JsValue::UNDEFINED)
        })
    }

    /// This tab's counters since it started, by their `metrics()` names
    /// (the facade adds the sync runs and the stored totals).
    pub fn counters(&self) -> crate::core::counters::Counters {
        let state = self.inner.state.borrow();
        to_js(state.engine.counters())
            .and_then(from_server)
            .unwrap_or_default()
    }

    /// Marks when the last spreadsheet sync ended (for `status`).
    pub fn set_last_sync_at(&self, at: Option<String>) {
        self.inner.state.borrow_mut().last_sync_at = at;
        self.changed();
        self.emit_status();
    }

    pub(super) fn outcome_js(&self, outcome: Outcome) -> Result<JsValue, Error> {
        let outcome = match outcome {
            Outcome::Read(ReadAnswer::History(items)) => return to_js(&newest_first(items)),
            outcome => outcome,
        };
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Out<'a> {
            status: &'static str,
            #[serde(skip_serializing_if = "Option::is_none")]
            record: Option<JsRecord<'a>>,
            #[serde(skip_serializing_if = "Option::is_none")]
            merged: Option<&'a [String]>,
            #[serde(skip_serializing_if = "Option::is_none")]
            conflict: Option<JsConflict<'a>>,
            #[serde(skip_serializing_if = "Option::is_none")]
            mutation_id: Option<&'a str>,
        }
        let empty = Out {
            status: "committed",
            record: None,
            merged: None,
            conflict: None,
            mutation_id: None,
        };
        match &outcome {
            // A record read is in `get` now.
            Outcome::LoggedOut | Outcome::Read(_) => Ok(JsValue::UNDEFINED),
            Outcome::Committed(record) => to_js(&Out {
                record: Some(JsRecord::of(record, false)),
                ..empty
            }),
            Outcome::Merged(record, merged) => to_js(&Out {
                status: "merged",
                record: Some(JsRecord::of(record, false)),
                merged: Some(merged),
                ..empty
            }),
            Outcome::Conflict(conflict) => {
                let state = self.inner.state.borrow();
                let kept = state.engine.conflicts().get(&conflict.id);
                let base = kept.and_then(|k| k.base.as_ref());
                to_js(&Out {
                    status: "conflict",
                    conflict: Some(JsConflict {
                        base: base.map(|b| JsRecord::of(b, false)),
                        ..js_conflict_parts(conflict)
                    }),
                    ..empty
                })
            }
            Outcome::Queued(id) => to_js(&Out {
                status: "queued",
                mutation_id: Some(id),
                ..empty
            }),
        }
    }
}

/// A refused mutation as `failed()` lists it and a `failed` event carries
/// it: the row of `pending()` plus `code`, `message`, `details` (the
/// server's, as it sent them, or `null`), `at` (when it was refused, ms
/// since the epoch) and `fields` (`null` for a delete or a comment).
pub(super) fn failure_object(entry: &OutboxEntry) -> JsValue {
    let object = to_js(&mutation_row(entry)).unwrap_or_else(|_| js_sys::Object::new().into());
    let set = |k: &str, v: &JsValue| {
        let _ = js_sys::Reflect::set(&object, &k.into(), v);
    };
    let error = entry.last_error.as_ref();
    let code = error.map_or(ErrorCode::Server, |e| e.code);
    set("code", &code.as_str().into());
    set("message", &error.map_or("", |e| e.message.as_str()).into());
    let details = error
        .and_then(|e| e.details.as_deref())
        .and_then(|text| js_sys::JSON::parse(text).ok())
        .unwrap_or(JsValue::NULL);
    set("details", &details);
    let at = error.map_or(0, |e| e.at_ms);
    let at = if at == 0 { entry.created_at_ms } else { at };
    set("at", &(at as f64).into());
    if entry.op.fields().is_none() {
        set("fields", &JsValue::NULL);
    }
    object
}

fn mutation_row(e: &OutboxEntry) -> JsMutation<'_> {
    let (op, fields, text) = match &e.op {
        MutationOp::Create { fields } => ("create", Some(fields), None),
        MutationOp::Patch { fields, .. } => ("patch", Some(fields), None),
        MutationOp::Delete { .. } => ("delete", None, None),
        MutationOp::Comment { text, .. } => ("comment", None, Some(text.as_str())),
    };
    JsMutation {
        mutation_id: e.mutation_id.as_str().into(),
        collection: &e.collection,
        record_id: &e.record_id,
        op,
        state: match e.state {
            EntryState::Queued => "queued",
            EntryState::Sending => "sending",
            EntryState::Failed => "failed",
        },
        fields,
        text,
        attempts: e.attempts,
        created_at: e.created_at_ms,
        error: e.last_error.as_ref().map(|e| JsEntryError {
            code: e.code,
            message: &e.message,
        }),
    }
}

fn js_conflict_parts(c: &Conflict) -> JsConflict<'_> {
    JsConflict {
        id: &c.id,
        collection: &c.collection,
        record_id: &c.record_id,
        base: None,
        mine: &c.mine,
        theirs: JsRecord::of(&c.theirs, false),
        fields: &c.fields,
    }
}

pub(super) fn js_conflict(kept: &KeptConflict) -> JsConflict<'_> {
    JsConflict {
        base: kept.base.as_ref().map(|b| JsRecord::of(b, false)),
        ..js_conflict_parts(&kept.conflict)
    }
}

/// The JS object of `record`: the one handed out before while it is held
/// and still shows this version, comments and staleness; else `candidate`
/// if it does (`undefined`: none); else made now.
pub(super) fn record_object(
    cache: &RecordObjects,
    collection: &str,
    record: &Record,
    stale: bool,
    candidate: &JsValue,
) -> JsValue {
    let key = format!("{collection}\u{0}{}", record.id);
    let comments = u32::try_from(record.comments.len()).unwrap_or(u32::MAX);
    let found = cache.take(&key, record.version as f64, comments, stale, candidate);
    if !found.is_undefined() {
        return found;
    }
    let value = to_js(&JsRecord::of(record, stale)).unwrap_or(JsValue::UNDEFINED);
    if !value.is_undefined() {
        cache.keep(&key, &value);
    }
    value
}
