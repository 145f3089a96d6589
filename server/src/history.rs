//! A record's change history: for every committed change of its fields
//! (create, change, delete, and rows a sheet sync applied), the version it
//! made, when, who, and each changed field's value before and after.
//!
//! Kept in its own table keyed by (collection, id, version), so reading a
//! record's newest entries walks the primary key and costs the same in a
//! collection of ten or of a hundred thousand records. Unlike the changes
//! feed it is not pruned by age: a record keeps its newest
//! [`KEPT_PER_RECORD`] entries, older ones are dropped as new ones come.

use crate::wire::*;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::auth::AuthUser;
use crate::db::Tx;
use crate::error::ApiError;
use crate::extract::path_params;
use crate::model::Record;
use crate::validate::check_collection;
use crate::AppState;

/// Entries kept per record; a record changed more often loses its oldest.
pub const KEPT_PER_RECORD: i64 = 1000;

/// Entries served when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 50;

/// The most entries one request may ask for.
pub const MAX_LIMIT: usize = 1000;

/// Who made a change: a person, or a sheet sync run started by one.
#[derive(Debug, Clone)]
pub struct Author {
    /// The user (of the sync run, for a sync).
    pub user: String,
    /// The sync run that applied the change, if one did.
    pub sync_id: Option<String>,
}

impl Author {
    /// A change made by `user` through the API.
    pub fn person(user: &str) -> Self {
        Self {
            user: user.to_owned(),
            sync_id: None,
        }
    }

    /// A change applied by `user`'s sheet sync run `sync_id`.
    pub fn sheet_sync(user: &str, sync_id: &str) -> Self {
        Self {
            user: user.to_owned(),
            sync_id: Some(sync_id.to_owned()),
        }
    }
}

/// What a change did to its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HistoryOp {
    /// The record was created (or brought back after a deletion).
    Create,
    /// Some of its fields changed.
    Update,
    /// It was deleted.
    Delete,
}

impl HistoryOp {
    fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::Delete => "delete",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "create" => Self::Create,
            "delete" => Self::Delete,
            _ => Self::Update,
        }
    }
}

/// One field's value before and after a change (`null`: absent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({ "from": "lead", "to": "customer" }))]
pub struct FieldChange {
    /// The value before (`null`: the field was not set).
    #[schema(value_type = FieldValue)]
    pub from: Value,
    /// The value after (`null`: the field was cleared).
    #[schema(value_type = FieldValue)]
    pub to: Value,
}

/// One committed change of a record.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({ "version": 8, "at": "2026-01-01T09:05:00.000Z", "by": "bob", "op": "update", "changes": { "status": { "from": "lead", "to": "customer" } } }))]
pub struct HistoryEntry {
    /// The version the change made.
    pub version: i64,
    /// When it was committed (RFC 3339 UTC).
    pub at: String,
    /// Who made it (for a sheet sync: the user who ran it).
    pub by: String,
    /// Create, update or delete.
    pub op: HistoryOp,
    /// The sheet sync run that applied it; absent for changes made through the API.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub sync_id: Option<String>,
    /// Each changed field's value before and after.
    #[schema(value_type = std::collections::HashMap<String, FieldChange>)]
    pub changes: FieldChanges,
}

/// Changed fields by name, in name order.
pub type FieldChanges = BTreeMap<String, FieldChange>;

/// `GET /api/{collection}/{id}/history`: newest first.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HistoryList {
    /// The entries, newest first.
    pub items: Vec<HistoryEntry>,
}

/// The field changes from `before` to `after`: every field whose value
/// differs, absent fields counting as `null`.
pub fn diff(before: &Map<String, Value>, after: &Map<String, Value>) -> FieldChanges {
    let mut changes = FieldChanges::new();
    for (k, to) in after {
        let from = before.get(k).unwrap_or(&Value::Null);
        if from != to {
            changes.insert(k.clone(), change(from, to));
        }
    }
    for (k, from) in before {
        if !after.contains_key(k) && !from.is_null() {
            changes.insert(k.clone(), change(from, &Value::Null));
        }
    }
    changes
}

fn change(from: &Value, to: &Value) -> FieldChange {
    FieldChange {
        from: from.clone(),
        to: to.clone(),
    }
}

/// Records that `record` (as the change left it) was made by `by`, with the
/// field changes `changes`, in the caller's transaction; drops the record's
/// entries beyond the newest [`KEPT_PER_RECORD`].
///
/// # Errors
/// Internal errors from the database.
pub fn append(
    conn: &Tx<'_>,
    collection: &str,
    record: &Record,
    op: HistoryOp,
    changes: &FieldChanges,
    by: &Author,
) -> Result<(), ApiError> {
    let text = serde_json::to_string(changes).map_err(ApiError::internal)?;
    conn.execute(
        "INSERT INTO history (collection, id, version, at, \"by\", op, sync_id, changes)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (collection, id, version) DO UPDATE SET at = excluded.at,
           \"by\" = excluded.\"by\", op = excluded.op, sync_id = excluded.sync_id,
           changes = excluded.changes",
        &[
            &collection,
            &record.id,
            &record.version,
            &record.updated_at,
            &by.user,
            &op.as_str(),
            &by.sync_id,
            &text,
        ],
    )?;
    conn.execute(
        "DELETE FROM history WHERE collection = ?1 AND id = ?2 AND version <= ?3",
        &[&collection, &record.id, &(record.version - KEPT_PER_RECORD)],
    )?;
    Ok(())
}

/// The newest `limit` entries of a record, newest first; `None` when no
/// record of that id ever existed (a deleted record keeps its history).
///
/// # Errors
/// Internal errors from the database.
pub fn read(
    conn: &Tx<'_>,
    collection: &str,
    id: &str,
    limit: usize,
) -> Result<Option<Vec<HistoryEntry>>, ApiError> {
    let known = conn.query_opt(
        "SELECT version FROM records WHERE collection = ?1 AND id = ?2",
        &[&collection, &id],
    )?;
    if known.is_none() {
        return Ok(None);
    }
    let sql_limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = conn.query(
        "SELECT version, at, \"by\", op, sync_id, changes FROM history
         WHERE collection = ?1 AND id = ?2 ORDER BY version DESC LIMIT ?3",
        &[&collection, &id, &sql_limit],
    )?;
    let mut items = Vec::new();
    for r in rows {
        let op: String = r.get(3)?;
        let changes: String = r.get(5)?;
        items.push(HistoryEntry {
            version: r.get(0)?,
            at: r.get(1)?,
            by: r.get(2)?,
            op: HistoryOp::parse(&op),
            sync_id: r.get(4)?,
            changes: serde_json::from_str(&changes)
                .map_err(|e| ApiError::internal(format!("stored history: {e}")))?,
        });
    }
    Ok(Some(items))
}

/// Query of the history route.
#[derive(Debug, Deserialize)]
pub struct HistoryQuery {
    limit: Option<String>,
}

impl HistoryQuery {
    fn limit(&self) -> Result<usize, ApiError> {
        match self.limit.as_deref() {
            None => Ok(DEFAULT_LIMIT),
            Some(text) => match text.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) && !text.starts_with('+') => Ok(n),
                _ => Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid",
                    format!("limit must be a whole number from 1 to {MAX_LIMIT}"),
                )),
            },
        }
    }
}

/// `GET /api/{collection}/{id}/history?limit=` -> `{ items }`, newest first.
///
/// # Errors
/// `404 not_found` for a record that never existed or a name that cannot be
/// a collection; `422 invalid` for a bad `limit`.
#[utoipa::path(
    get,
    path = "/api/{collection}/{id}/history",
    tag = "records",
    operation_id = "recordHistory",
    params(
        ("collection" = CollectionName, Path, description = "The collection"),
        ("id" = RecordId, Path, description = "The record's id"),
        ("limit" = Option<i64>, Query, nullable = false, description = "How many entries, newest first (default 50)", minimum = 1, maximum = 1000),
    ),
    responses(
        (status = 200, description = "Who changed which field from what to what, and when; newest first. A deleted record keeps its history.", body = HistoryList),
        RequestErrors, RecordNotFound,
        (status = 422, description = "`invalid`: a bad `limit`", body = ErrorBody),
    )
)]
pub async fn history_route(
    State(state): State<AppState>,
    _user: AuthUser,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<HistoryList>, ApiError> {
    let (collection, id) = path_params(path)?;
    check_collection(&collection)?;
    let Query(query) = query
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", e.body_text()))?;
    let limit = query.limit()?;
    let items = state
        .db
        .read(move |tx| {
            read(tx, &collection, &id, limit)?
                .ok_or_else(|| ApiError::not_found(format!("no record {id:?} in {collection}")))
        })
        .await?;
    Ok(Json(HistoryList { items }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[tokio::test]
    async fn a_record_keeps_its_newest_entries_only() {
        let dir = tempfile::tempdir().unwrap();
        let db = std::sync::Arc::new(crate::db::Db::open(&dir.path().join("h.db")).unwrap());
        let kept = db
            .write(|tx| {
                let by = Author::person("alice");
                let mut record =
                    crate::records::insert(tx, "deals", "d-1", map(json!({ "n": 0 })), &by)?;
                for n in 1..=KEPT_PER_RECORD + 5 {
                    record = crate::records::update_fields(
                        tx,
                        "deals",
                        &record,
                        map(json!({ "n": n })),
                        &by,
                    )?
                    .unwrap();
                }
                let all = read(tx, "deals", "d-1", usize::MAX)?.unwrap();
                Ok((record.version, all))
            })
            .await
            .unwrap();
        let (version, all) = kept;
        assert_eq!(all.len() as i64, KEPT_PER_RECORD);
        assert_eq!(all[0].version, version);
        assert_eq!(all.last().unwrap().version, version - KEPT_PER_RECORD + 1);
    }

    #[test]
    fn diff_names_changed_added_and_cleared_fields_only() {
        let before = map(json!({ "a": 1, "b": "x", "c": true }));
        let after = map(json!({ "a": 1, "b": "y", "d": null, "e": 2 }));
        assert_eq!(
            serde_json::to_value(diff(&before, &after)).unwrap(),
            json!({
                "b": { "from": "x", "to": "y" },
                "c": { "from": true, "to": null },
                "e": { "from": null, "to": 2 },
            })
        );
    }
}
