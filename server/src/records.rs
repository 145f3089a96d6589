//! Records: versioned field maps with an append-only comment log, stored per
//! collection, with tombstones for deleted records so the changes feed can
//! report deletions.

use crate::openapi::*;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use rusqlite::{Connection, OptionalExtension};
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::auth::AuthUser;
use crate::changes::cursor;
use crate::db::{random_hex, rfc3339_now};
use crate::error::ApiError;
use crate::http::{body_bytes, if_match, json_body, path_params, Answer};
use crate::idempotency::Mutation;
use crate::limits::Limits;
use crate::validate::{
    check_collection, check_known_fields, is_valid_record_id, parse_time, scalar_fields,
    CALENDAR_EVENTS,
};
use crate::AppState;

/// A record as docs/backend/protocol.md shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({ "id": "c-123", "version": 7, "updatedAt": "2026-01-01T09:00:00Z", "updatedBy": "alice", "fields": { "name": "Acme", "status": "lead", "employees": 42, "vip": false }, "comments": [{ "id": "5b0e7c1e-2f43-4d0c-9a57-3f1d2c4b5a69", "author": "bob", "text": "Called them", "createdAt": "2026-01-01T08:30:00Z" }] }))]
pub struct Record {
    /// Id, unique within its collection.
    pub id: String,
    /// Starts at 1, grows by exactly 1 on every change of `fields`.
    pub version: i64,
    /// Time of the last change (RFC 3339 UTC).
    pub updated_at: String,
    /// User who made the last change.
    pub updated_by: String,
    /// Free-form scalar fields.
    #[schema(value_type = Fields)]
    pub fields: Map<String, Value>,
    /// Append-only comment log, oldest first.
    pub comments: Vec<Comment>,
}

/// One comment on a record.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(example = json!({ "id": "5b0e7c1e-2f43-4d0c-9a57-3f1d2c4b5a69", "author": "bob", "text": "Called them", "createdAt": "2026-01-01T08:30:00Z" }))]
#[serde(rename_all = "camelCase")]
pub struct Comment {
    /// Client-chosen id (a uuid); the same id is never stored twice.
    pub id: String,
    /// User who wrote it.
    pub author: String,
    /// The text.
    pub text: String,
    /// When the server stored it.
    pub created_at: String,
}

/// A stored row: a live record or the tombstone of a deleted one.
#[derive(Debug, Clone)]
pub struct StoredRecord {
    /// The record (a tombstone keeps id and version, with no fields).
    pub record: Record,
    /// Whether this is a tombstone.
    pub deleted: bool,
}

impl Record {
    /// This record as a JSON value.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

fn parse_fields(text: &str) -> Result<Map<String, Value>, ApiError> {
    serde_json::from_str(text).map_err(|e| ApiError::internal(format!("stored fields: {e}")))
}

fn fields_text(fields: &Map<String, Value>) -> Result<String, ApiError> {
    serde_json::to_string(fields).map_err(ApiError::internal)
}

/// Loads a record or tombstone with its comments.
///
/// # Errors
/// Internal errors from SQLite.
pub fn load(
    conn: &Connection,
    collection: &str,
    id: &str,
) -> Result<Option<StoredRecord>, ApiError> {
    let row: Option<(i64, String, String, String, bool)> = conn
        .query_row(
            "SELECT version, updated_at, updated_by, fields, deleted FROM records
             WHERE collection = ?1 AND id = ?2",
            [collection, id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .optional()?;
    let Some((version, updated_at, updated_by, fields, deleted)) = row else {
        return Ok(None);
    };
    let comments = if deleted {
        Vec::new()
    } else {
        load_comments(conn, collection, id)?
    };
    Ok(Some(StoredRecord {
        record: Record {
            id: id.to_owned(),
            version,
            updated_at,
            updated_by,
            fields: parse_fields(&fields)?,
            comments,
        },
        deleted,
    }))
}

/// Loads a live (not deleted) record.
///
/// # Errors
/// Internal errors from SQLite.
pub fn load_live(
    conn: &Connection,
    collection: &str,
    id: &str,
) -> Result<Option<Record>, ApiError> {
    Ok(load(conn, collection, id)?
        .filter(|s| !s.deleted)
        .map(|s| s.record))
}

fn load_comments(conn: &Connection, collection: &str, id: &str) -> Result<Vec<Comment>, ApiError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, author, text, created_at FROM comments
         WHERE collection = ?1 AND record_id = ?2 ORDER BY seq",
    )?;
    let rows = stmt.query_map([collection, id], |r| {
        Ok(Comment {
            id: r.get(0)?,
            author: r.get(1)?,
            text: r.get(2)?,
            created_at: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Every live record of a collection, ordered by id, with comments.
///
/// # Errors
/// Internal errors from SQLite.
pub fn list(conn: &Connection, collection: &str) -> Result<Vec<Record>, ApiError> {
    list_page(conn, collection, "", usize::MAX)
}

/// Up to `limit` live records of a collection with ids after `after` (""
/// for the first page), in id order, with their comments: a keyset page,
/// served by the records table's primary key.
///
/// # Errors
/// Internal errors from SQLite.
pub fn list_page(
    conn: &Connection,
    collection: &str,
    after: &str,
    limit: usize,
) -> Result<Vec<Record>, ApiError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, version, updated_at, updated_by, fields FROM records
         WHERE collection = ?1 AND id > ?2 AND deleted = 0 ORDER BY id LIMIT ?3",
    )?;
    let sql_limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut rows = stmt.query(rusqlite::params![collection, after, sql_limit])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let fields: String = r.get(4)?;
        out.push(Record {
            comments: Vec::new(),
            id: r.get(0)?,
            version: r.get(1)?,
            updated_at: r.get(2)?,
            updated_by: r.get(3)?,
            fields: parse_fields(&fields)?,
        });
    }
    let Some(last) = out.last().map(|r| r.id.clone()) else {
        return Ok(out);
    };
    // The comments of this page's id range, in the order they were made.
    let mut comments: std::collections::HashMap<String, Vec<Comment>> = Default::default();
    let mut stmt = conn.prepare_cached(
        "SELECT record_id, id, author, text, created_at FROM comments
         WHERE collection = ?1 AND record_id > ?2 AND record_id <= ?3 ORDER BY seq",
    )?;
    let mut rows = stmt.query(rusqlite::params![collection, after, last])?;
    while let Some(r) = rows.next()? {
        comments.entry(r.get(0)?).or_default().push(Comment {
            id: r.get(1)?,
            author: r.get(2)?,
            text: r.get(3)?,
            created_at: r.get(4)?,
        });
    }
    for record in &mut out {
        record.comments = comments.remove(&record.id).unwrap_or_default();
    }
    Ok(out)
}

/// Creates a record at version 1, or brings a tombstone back to life one
/// version above it (so versions in the changes feed never go down).
///
/// # Errors
/// Internal errors from SQLite.
pub fn insert(
    conn: &Connection,
    collection: &str,
    id: &str,
    fields: Map<String, Value>,
    user: &str,
) -> Result<Record, ApiError> {
    let tombstone: Option<i64> = conn
        .query_row(
            "SELECT version FROM records WHERE collection = ?1 AND id = ?2 AND deleted = 1",
            [collection, id],
            |r| r.get(0),
        )
        .optional()?;
    let version = tombstone.map_or(1, |v| v + 1);
    let now = rfc3339_now();
    conn.execute(
        "INSERT OR REPLACE INTO records (collection, id, version, updated_at, updated_by, fields, deleted)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0)",
        rusqlite::params![collection, id, version, now, user, fields_text(&fields)?],
    )?;
    let record = Record {
        id: id.to_owned(),
        version,
        updated_at: now,
        updated_by: user.to_owned(),
        fields,
        comments: Vec::new(),
    };
    record_change(
        conn,
        collection,
        &record,
        "put",
        Some(&json!({ "fields": record.fields, "before": {} })),
    )?;
    Ok(record)
}

/// Replaces a live record's fields if it is still at `expected_version`, in the
/// caller's transaction: `UPDATE ... WHERE version = ?` is the optimistic lock.
/// Returns `None` when the version moved on.
///
/// # Errors
/// Internal errors from SQLite.
pub fn update_fields(
    conn: &Connection,
    collection: &str,
    current: &Record,
    fields: Map<String, Value>,
    user: &str,
) -> Result<Option<Record>, ApiError> {
    let changed: Map<String, Value> = fields
        .iter()
        .filter(|(k, v)| current.fields.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .chain(
            current
                .fields
                .keys()
                .filter(|k| !fields.contains_key(*k))
                .map(|k| (k.clone(), Value::Null)),
        )
        .collect();
    let before: Map<String, Value> = changed
        .keys()
        .map(|k| {
            (
                k.clone(),
                current.fields.get(k).cloned().unwrap_or(Value::Null),
            )
        })
        .collect();
    let now = rfc3339_now();
    let version = current.version + 1;
    let n = conn.execute(
        "UPDATE records SET version = ?1, updated_at = ?2, updated_by = ?3, fields = ?4
         WHERE collection = ?5 AND id = ?6 AND version = ?7 AND deleted = 0",
        rusqlite::params![
            version,
            now,
            user,
            fields_text(&fields)?,
            collection,
            current.id,
            current.version
        ],
    )?;
    if n == 0 {
        return Ok(None);
    }
    let record = Record {
        id: current.id.clone(),
        version,
        updated_at: now,
        updated_by: user.to_owned(),
        fields,
        comments: current.comments.clone(),
    };
    record_change(
        conn,
        collection,
        &record,
        "put",
        Some(&json!({ "fields": changed, "before": before })),
    )?;
    Ok(Some(record))
}

/// Appends one entry to the changes feed and returns its sequence number.
/// `what` says what changed (`fields`: the new values of the fields that
/// changed, `before`: their old ones; or a comment's id), never a copy of the
/// record: the feed serves records from their current state, and an older
/// state is rebuilt by undoing `before`s (see [`record_at`]).
///
/// # Errors
/// Internal errors from SQLite.
pub fn record_change(
    conn: &Connection,
    collection: &str,
    record: &Record,
    op: &str,
    what: Option<&Value>,
) -> Result<i64, ApiError> {
    let what = what.map(Value::to_string);
    conn.prepare_cached(
        "INSERT INTO changes (collection, id, version, op, what) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(rusqlite::params![
        collection,
        record.id,
        record.version,
        op,
        what
    ])?;
    Ok(conn.last_insert_rowid())
}

/// Where a record answer can be rebuilt from: the record's version written
/// by one request, the change that wrote it and the comments it had then.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordRef {
    /// Collection.
    pub collection: String,
    /// Record id.
    pub id: String,
    /// Version the request wrote.
    pub version: i64,
    /// `updatedAt` of that version.
    pub updated_at: String,
    /// `updatedBy` of that version.
    pub updated_by: String,
    /// Sequence number of the change that wrote it.
    pub seq: i64,
    /// Highest comment sequence number of the record then (0: none).
    pub comments_upto: i64,
}

impl RecordRef {
    /// The reference to `record` just written by change `seq`.
    ///
    /// # Errors
    /// Internal errors from SQLite.
    pub fn new(
        conn: &Connection,
        collection: &str,
        record: &Record,
        seq: i64,
    ) -> Result<Self, ApiError> {
        let comments_upto: i64 = conn.query_row(
            "SELECT COALESCE(MAX(seq), 0) FROM comments WHERE collection = ?1 AND record_id = ?2",
            [collection, &record.id],
            |r| r.get(0),
        )?;
        Ok(Self {
            collection: collection.to_owned(),
            id: record.id.clone(),
            version: record.version,
            updated_at: record.updated_at.clone(),
            updated_by: record.updated_by.clone(),
            seq,
            comments_upto,
        })
    }
}

/// The record as `r` names it, rebuilt from the current fields by undoing
/// every later change; `None` when a later change was pruned already.
///
/// # Errors
/// Internal errors from SQLite.
pub fn record_at(conn: &Connection, r: &RecordRef) -> Result<Option<Record>, ApiError> {
    if r.seq < crate::changes::floor(conn)? {
        return Ok(None);
    }
    let current: Option<String> = conn
        .query_row(
            "SELECT fields FROM records WHERE collection = ?1 AND id = ?2",
            [&r.collection, &r.id],
            |row| row.get(0),
        )
        .optional()?;
    let Some(current) = current else {
        return Ok(None);
    };
    let mut fields = parse_fields(&current)?;
    let mut stmt = conn.prepare_cached(
        "SELECT what FROM changes WHERE collection = ?1 AND id = ?2 AND seq > ?3
         ORDER BY seq DESC",
    )?;
    let mut rows = stmt.query(rusqlite::params![r.collection, r.id, r.seq])?;
    while let Some(row) = rows.next()? {
        let what: Option<String> = row.get(0)?;
        let what: Value = what
            .as_deref()
            .map_or(Ok(Value::Null), serde_json::from_str)
            .map_err(ApiError::internal)?;
        let Some(before) = what.get("before").and_then(Value::as_object) else {
            continue;
        };
        if what.get("fields").is_none() {
            // A deletion: the fields it cleared are the whole record.
            fields.clone_from(before);
            continue;
        }
        for (k, v) in before {
            if v.is_null() {
                fields.remove(k);
            } else {
                fields.insert(k.clone(), v.clone());
            }
        }
    }
    let mut stmt = conn.prepare_cached(
        "SELECT id, author, text, created_at FROM comments
         WHERE collection = ?1 AND record_id = ?2 AND seq <= ?3 ORDER BY seq",
    )?;
    let comments = stmt
        .query_map(
            rusqlite::params![r.collection, r.id, r.comments_upto],
            |row| {
                Ok(Comment {
                    id: row.get(0)?,
                    author: row.get(1)?,
                    text: row.get(2)?,
                    created_at: row.get(3)?,
                })
            },
        )?
        .collect::<Result<_, _>>()?;
    Ok(Some(Record {
        id: r.id.clone(),
        version: r.version,
        updated_at: r.updated_at.clone(),
        updated_by: r.updated_by.clone(),
        fields,
        comments,
    }))
}

/// Refuses fields over the limits: more than `max_fields` of them, or more
/// than `max_bytes` as JSON.
///
/// # Errors
/// `422 invalid` with `details.fields.fields`.
pub fn check_size(fields: &Map<String, Value>, limits: &Limits) -> Result<(), ApiError> {
    if fields.len() > limits.max_fields {
        return Err(ApiError::invalid_field(
            "fields",
            format!("a record has at most {} fields", limits.max_fields),
        ));
    }
    let bytes = serde_json::to_vec(fields).map_or(usize::MAX, |v| v.len());
    if bytes > limits.max_fields_bytes {
        return Err(ApiError::invalid_field(
            "fields",
            format!(
                "a record's fields are at most {} bytes as JSON",
                limits.max_fields_bytes
            ),
        ));
    }
    Ok(())
}

/// Refuses a calendar event whose `[start, end)` overlaps a non-cancelled
/// event of the same resource. Runs inside the write transaction, so two
/// overlapping bookings can never both pass.
fn check_overlap(conn: &Connection, id: &str, fields: &Map<String, Value>) -> Result<(), ApiError> {
    if is_cancelled(fields) {
        return Ok(());
    }
    let (Some(start), Some(end), Some(resource)) = (
        parse_time(fields.get("start")),
        parse_time(fields.get("end")),
        fields.get("resource").and_then(Value::as_str),
    ) else {
        return Ok(());
    };
    let ids: Vec<String> = {
        let mut stmt = conn.prepare_cached(
            "SELECT id FROM records WHERE collection = ?1 AND deleted = 0 AND id != ?2
             AND json_extract(fields, '$.resource') = ?3 ORDER BY id",
        )?;
        let rows = stmt.query_map([CALENDAR_EVENTS, id, resource], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    let mut conflicts = Vec::new();
    for other_id in ids {
        let Some(other) = load_live(conn, CALENDAR_EVENTS, &other_id)? else {
            continue;
        };
        if is_cancelled(&other.fields) {
            continue;
        }
        let (Some(os), Some(oe)) = (
            parse_time(other.fields.get("start")),
            parse_time(other.fields.get("end")),
        ) else {
            continue;
        };
        if start < oe && os < end {
            conflicts.push(other.to_json());
        }
    }
    if conflicts.is_empty() {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::CONFLICT,
            "overlap",
            format!("{resource} is already booked in that time"),
        )
        .with_details(json!({ "conflicts": conflicts })))
    }
}

fn is_cancelled(fields: &Map<String, Value>) -> bool {
    fields.get("status").and_then(Value::as_str) == Some("cancelled")
}

fn not_found(collection: &str, id: &str) -> ApiError {
    ApiError::not_found(format!("no record {id:?} in {collection}"))
}

/// The largest page `GET /api/{collection}?limit=` serves.
pub const MAX_PAGE: usize = 10_000;
/// Ids are at most 128 bytes (see `validate`): no `after` is longer.
const MAX_AFTER: usize = 128;

/// Query of `GET /api/{collection}`: paging, both or neither.
#[derive(Debug, serde::Deserialize)]
pub struct PageQuery {
    limit: Option<String>,
    after: Option<String>,
}

impl PageQuery {
    /// `(after, limit)` of a paged read, `None` for the whole collection.
    fn page(&self) -> Result<Option<(String, usize)>, ApiError> {
        let invalid = |message: &str| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                message.to_owned(),
            )
        };
        let Some(limit) = self.limit.as_deref() else {
            return match self.after {
                Some(_) => Err(invalid("after needs a limit")),
                None => Ok(None),
            };
        };
        let limit = match limit.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
            _ => return Err(invalid("limit must be a whole number from 1 to 10000")),
        };
        let after = match self.after.as_deref() {
            None => String::new(),
            Some(a) if !a.is_empty() && a.len() <= MAX_AFTER => a.to_owned(),
            Some(_) => return Err(invalid("after must be a record id")),
        };
        Ok(Some((after, limit)))
    }
}

/// `GET /api/{collection}`: every live record and the cursor to follow
/// changes from; with `?limit=N&after=<id>`, one keyset page in id order
/// and `next`, the `after` of the following page (`null` after the last).
/// `cursor` is the feed's position when the page was read: a client keeps
/// the first page's, and follows the feed from it once every page is in,
/// so that no write made during the load is missed.
///
/// # Errors
/// `404` for a name that cannot be a collection; `422 invalid` for a bad
/// `limit` or `after`.
#[utoipa::path(
    get,
    path = "/api/{collection}",
    tag = "records",
    operation_id = "listRecords",
    params(
        ("collection" = CollectionName, Path, description = "The collection"),
        ("limit" = Option<i64>, Query, nullable = false, description = "Page size; without it, the whole collection", minimum = 1, maximum = 10000),
        ("after" = Option<String>, Query, nullable = false, description = "The `next` of the previous page (needs `limit`)", min_length = 1, max_length = 128),
    ),
    responses(
        (status = 200, description = "The records (`next` only with `limit`)", body = RecordList),
        (status = 400, description = "`invalid`: the request cannot be read (malformed JSON, bad header or path)", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no, unknown or expired token", body = ErrorBody),
        (status = 404, description = "`not_found`: a name that cannot be a collection", body = ErrorBody),
        (status = 408, description = "`timeout`: the request took longer than the server allows", body = ErrorBody),
        (status = 422, description = "`invalid`: a bad `limit` or `after`, or `after` without `limit`", body = ErrorBody),
        (status = 500, description = "`internal`", body = ErrorBody),
    )
)]
pub async fn list_route(
    State(state): State<AppState>,
    _user: AuthUser,
    path: Result<Path<String>, PathRejection>,
    query: Result<axum::extract::Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let collection = path_params(path)?;
    check_collection(&collection)?;
    let axum::extract::Query(query) = query
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", e.body_text()))?;
    let page = query.page()?;
    let epoch = state.db.epoch().to_owned();
    let body = state
        .db
        .read(move |tx| {
            // The position first: a write after it is in the feed from it.
            let head = crate::changes::head(tx)?;
            let cursor = cursor::encode(&epoch, head);
            Ok(match page {
                None => json!({ "items": list(tx, &collection)?, "cursor": cursor }),
                Some((after, limit)) => {
                    let mut items = list_page(tx, &collection, &after, limit + 1)?;
                    let next = if items.len() > limit {
                        items.truncate(limit);
                        items.last().map(|r| r.id.clone())
                    } else {
                        None
                    };
                    json!({ "items": items, "next": next, "cursor": cursor })
                }
            })
        })
        .await?;
    Ok(axum::Json(body).into_response())
}

/// `GET /api/{collection}/{id}` with `ETag: "version"`.
///
/// # Errors
/// `404 not_found`.
#[utoipa::path(
    get,
    path = "/api/{collection}/{id}",
    tag = "records",
    operation_id = "getRecord",
    params(
        ("collection" = CollectionName, Path, description = "The collection"),
        ("id" = RecordId, Path, description = "The record's id"),
    ),
    responses(
        (status = 200, description = "The record", body = Record, headers(("ETag" = String, description = "The version, quoted: `\"7\"`"))),
        (status = 400, description = "`invalid`: the request cannot be read (malformed JSON, bad header or path)", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no, unknown or expired token", body = ErrorBody),
        (status = 404, description = "`not_found`: no such record, or a name that cannot be a collection", body = ErrorBody),
        (status = 408, description = "`timeout`: the request took longer than the server allows", body = ErrorBody),
        (status = 500, description = "`internal`", body = ErrorBody),
    )
)]
pub async fn get_route(
    State(state): State<AppState>,
    _user: AuthUser,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let (collection, id) = path_params(path)?;
    check_collection(&collection)?;
    let record = state
        .db
        .read(move |tx| load_live(tx, &collection, &id)?.ok_or_else(|| not_found(&collection, &id)))
        .await?;
    let mut response = axum::Json(&record).into_response();
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", record.version)) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    Ok(response)
}

/// `POST /api/{collection}` `{ "id"?, "fields" }` -> `201` record at version 1.
///
/// # Errors
/// `409 conflict` when the id exists, `409 overlap`, `422 invalid`, `400`.
#[utoipa::path(
    post,
    path = "/api/{collection}",
    tag = "records",
    operation_id = "createRecord",
    request_body(content = CreateRecord, content_type = "application/json"),
    params(
        ("collection" = CollectionName, Path, description = "The collection"),
        ("Idempotency-Key" = Option<String>, Header, nullable = false, description = "1 to 200 visible ASCII characters (a uuid); a key seen before returns the stored answer", pattern = r"^[!-~]{1,200}$"),
    ),
    responses(
        (status = 201, description = "The record at version 1", body = Record),
        (status = 400, description = "`invalid`: the request cannot be read (malformed JSON, bad header or path)", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no, unknown or expired token", body = ErrorBody),
        (status = 404, description = "`not_found`: a name that cannot be a collection", body = ErrorBody),
        (status = 408, description = "`timeout`: the request took longer than the server allows", body = ErrorBody),
        (status = 409, description = "`conflict`: the id exists (`details.current`); `overlap`: a calendar event in the way (`details.conflicts`)", body = ErrorBody),
        (status = 413, description = "`too_large`: the body is larger than the server accepts (1 MiB)", body = ErrorBody),
        (status = 422, description = "`invalid` with `details.fields`; `idempotency_mismatch` for a key reused on another request", body = ErrorBody),
        (status = 500, description = "`internal`", body = ErrorBody),
    )
)]
pub async fn create_route(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    path: Result<Path<String>, PathRejection>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Answer, ApiError> {
    let collection = path_params(path)?;
    check_collection(&collection)?;
    let mutation = Mutation::new(&user, &headers, &method, uri.path(), body_bytes(&body))?;
    let body = json_body(body)?;
    let Some(obj) = body.as_object() else {
        return Err(ApiError::invalid_field(
            "body",
            "must be an object { id?, fields }",
        ));
    };
    let id = match obj.get("id") {
        None | Some(Value::Null) => random_hex(16)?,
        Some(Value::String(s)) if is_valid_record_id(s) => s.clone(),
        Some(_) => {
            return Err(ApiError::invalid_field(
                "id",
                "1 to 128 letters, digits or -_.:@",
            ))
        }
    };
    let fields = scalar_fields(obj.get("fields"), false)?;
    check_known_fields(&collection, &fields, &fields)?;
    check_size(&fields, &state.limits)?;
    state
        .db
        .write(move |tx| {
            if let Some(answer) = mutation.replay(tx)? {
                return Ok(answer);
            }
            if let Some(existing) = load_live(tx, &collection, &id)? {
                return Err(ApiError::conflict(
                    format!("a record {id:?} already exists in {collection}"),
                    existing.to_json(),
                ));
            }
            if collection == CALENDAR_EVENTS {
                check_overlap(tx, &id, &fields)?;
            }
            let record = insert(tx, &collection, &id, fields, &user)?;
            let answer = Answer::json(StatusCode::CREATED, &record)?;
            let written = RecordRef::new(tx, &collection, &record, crate::changes::head(tx)?)?;
            mutation.remember_record(tx, &answer, &written)?;
            Ok(answer)
        })
        .await
}

/// `PATCH /api/{collection}/{id}` `{ "fields" }` + `If-Match`.
///
/// # Errors
/// `428`, `404`, `409 conflict` with the current record, `409 overlap`, `422`, `400`.
#[utoipa::path(
    patch,
    path = "/api/{collection}/{id}",
    tag = "records",
    operation_id = "patchRecord",
    request_body(content = PatchRecord, content_type = "application/json"),
    params(
        ("collection" = CollectionName, Path, description = "The collection"),
        ("id" = RecordId, Path, description = "The record's id"),
        ("If-Match" = String, Header, description = "The version the change is based on: `\"7\"` (also `7` or `W/\"7\"`)", pattern = r#"^(W/)?("0*[1-9][0-9]{0,17}"|0*[1-9][0-9]{0,17})$"#),
        ("Idempotency-Key" = Option<String>, Header, nullable = false, description = "1 to 200 visible ASCII characters (a uuid); a key seen before returns the stored answer", pattern = r"^[!-~]{1,200}$"),
    ),
    responses(
        (status = 200, description = "The record at its next version", body = Record),
        (status = 400, description = "`invalid`: the request cannot be read (malformed JSON, bad header or path)", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no, unknown or expired token", body = ErrorBody),
        (status = 404, description = "`not_found`: no such record, or a name that cannot be a collection", body = ErrorBody),
        (status = 408, description = "`timeout`: the request took longer than the server allows", body = ErrorBody),
        (status = 409, description = "`conflict`: `If-Match` is not the current version (`details.current` = the record); `overlap` (`details.conflicts`)", body = ErrorBody),
        (status = 413, description = "`too_large`: the body is larger than the server accepts (1 MiB)", body = ErrorBody),
        (status = 422, description = "`invalid` with `details.fields` (bad values, or no field named); `idempotency_mismatch`", body = ErrorBody),
        (status = 428, description = "`precondition_required`: no `If-Match`", body = ErrorBody),
        (status = 500, description = "`internal`", body = ErrorBody),
    )
)]
pub async fn patch_route(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    path: Result<Path<(String, String)>, PathRejection>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Answer, ApiError> {
    let (collection, id) = path_params(path)?;
    check_collection(&collection)?;
    let mutation = Mutation::new(&user, &headers, &method, uri.path(), body_bytes(&body))?;
    let expected = if_match(&headers)?.ok_or_else(ApiError::precondition_required)?;
    let body = json_body(body)?;
    let Some(obj) = body.as_object() else {
        return Err(ApiError::invalid_field(
            "body",
            "must be an object { fields }",
        ));
    };
    let patch = scalar_fields(obj.get("fields"), true)?;
    if patch.is_empty() {
        return Err(ApiError::invalid_field(
            "fields",
            "name at least one field to change",
        ));
    }
    let limits = Arc::clone(&state.limits);
    state
        .db
        .write(move |tx| {
            if let Some(answer) = mutation.replay(tx)? {
                return Ok(answer);
            }
            let current =
                load_live(tx, &collection, &id)?.ok_or_else(|| not_found(&collection, &id))?;
            if current.version != expected {
                return Err(stale(&current, expected));
            }
            let mut merged = current.fields.clone();
            for (k, v) in &patch {
                if v.is_null() {
                    merged.remove(k);
                } else {
                    merged.insert(k.clone(), v.clone());
                }
            }
            check_known_fields(&collection, &patch, &merged)?;
            check_size(&merged, &limits)?;
            if collection == CALENDAR_EVENTS {
                check_overlap(tx, &id, &merged)?;
            }
            let Some(record) = update_fields(tx, &collection, &current, merged, &user)? else {
                return Err(stale(&current, expected));
            };
            let answer = Answer::json(StatusCode::OK, &record)?;
            let written = RecordRef::new(tx, &collection, &record, crate::changes::head(tx)?)?;
            mutation.remember_record(tx, &answer, &written)?;
            Ok(answer)
        })
        .await
}

fn stale(current: &Record, expected: i64) -> ApiError {
    ApiError::conflict(
        format!(
            "version {expected} is out of date; the record is at version {}",
            current.version
        ),
        current.to_json(),
    )
}

/// `DELETE /api/{collection}/{id}` + `If-Match` -> `204`, leaving a tombstone.
///
/// # Errors
/// `428`, `404`, `409 conflict` with the current record.
#[utoipa::path(
    delete,
    path = "/api/{collection}/{id}",
    tag = "records",
    operation_id = "deleteRecord",
    params(
        ("collection" = CollectionName, Path, description = "The collection"),
        ("id" = RecordId, Path, description = "The record's id"),
        ("If-Match" = String, Header, description = "The version the change is based on: `\"7\"` (also `7` or `W/\"7\"`)", pattern = r#"^(W/)?("0*[1-9][0-9]{0,17}"|0*[1-9][0-9]{0,17})$"#),
        ("Idempotency-Key" = Option<String>, Header, nullable = false, description = "1 to 200 visible ASCII characters (a uuid); a key seen before returns the stored answer", pattern = r"^[!-~]{1,200}$"),
    ),
    responses(
        (status = 204, description = "Deleted (a tombstone stays in the feed)"),
        (status = 400, description = "`invalid`: the request cannot be read (malformed JSON, bad header or path)", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no, unknown or expired token", body = ErrorBody),
        (status = 404, description = "`not_found`: no such record, or a name that cannot be a collection", body = ErrorBody),
        (status = 408, description = "`timeout`: the request took longer than the server allows", body = ErrorBody),
        (status = 409, description = "`conflict`: `If-Match` is not the current version (`details.current`)", body = ErrorBody),
        (status = 422, description = "`idempotency_mismatch`", body = ErrorBody),
        (status = 428, description = "`precondition_required`: no `If-Match`", body = ErrorBody),
        (status = 500, description = "`internal`", body = ErrorBody),
    )
)]
pub async fn delete_route(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    path: Result<Path<(String, String)>, PathRejection>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Answer, ApiError> {
    let (collection, id) = path_params(path)?;
    check_collection(&collection)?;
    let mutation = Mutation::new(&user, &headers, &method, uri.path(), b"")?;
    let expected = if_match(&headers)?.ok_or_else(ApiError::precondition_required)?;
    state
        .db
        .write(move |tx| {
            if let Some(answer) = mutation.replay(tx)? {
                return Ok(answer);
            }
            let current =
                load_live(tx, &collection, &id)?.ok_or_else(|| not_found(&collection, &id))?;
            if current.version != expected {
                return Err(stale(&current, expected));
            }
            let now = rfc3339_now();
            let n = tx.execute(
                "UPDATE records SET version = version + 1, updated_at = ?1, updated_by = ?2,
                 fields = '{}', deleted = 1
                 WHERE collection = ?3 AND id = ?4 AND version = ?5 AND deleted = 0",
                rusqlite::params![now, user, collection, id, expected],
            )?;
            if n == 0 {
                return Err(stale(&current, expected));
            }
            tx.execute(
                "DELETE FROM comments WHERE collection = ?1 AND record_id = ?2",
                [&collection, &id],
            )?;
            let tombstone = Record {
                id: id.clone(),
                version: expected + 1,
                updated_at: now,
                updated_by: user.clone(),
                fields: Map::new(),
                comments: Vec::new(),
            };
            // The fields the deletion cleared, so an older answer can be rebuilt.
            record_change(
                tx,
                &collection,
                &tombstone,
                "delete",
                Some(&json!({ "before": current.fields })),
            )?;
            let answer = Answer::empty(StatusCode::NO_CONTENT);
            mutation.remember(tx, &answer)?;
            Ok(answer)
        })
        .await
}

/// `POST /api/{collection}/{id}/comments` `{ "id", "text" }` -> `201 comment`;
/// the same comment id again -> `200` with the stored comment, never a copy.
/// Comments never conflict and never change `version`.
///
/// # Errors
/// `404`, `422`, `400`.
#[utoipa::path(
    post,
    path = "/api/{collection}/{id}/comments",
    tag = "records",
    operation_id = "addComment",
    request_body(content = NewComment, content_type = "application/json"),
    params(
        ("collection" = CollectionName, Path, description = "The collection"),
        ("id" = RecordId, Path, description = "The record's id"),
        ("Idempotency-Key" = Option<String>, Header, nullable = false, description = "1 to 200 visible ASCII characters (a uuid); a key seen before returns the stored answer", pattern = r"^[!-~]{1,200}$"),
    ),
    responses(
        (status = 200, description = "A comment of this id existed: the stored one", body = Comment),
        (status = 201, description = "The new comment", body = Comment),
        (status = 400, description = "`invalid`: the request cannot be read (malformed JSON, bad header or path)", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no, unknown or expired token", body = ErrorBody),
        (status = 404, description = "`not_found`: no such record, or a name that cannot be a collection", body = ErrorBody),
        (status = 408, description = "`timeout`: the request took longer than the server allows", body = ErrorBody),
        (status = 413, description = "`too_large`: the body is larger than the server accepts (1 MiB)", body = ErrorBody),
        (status = 422, description = "`invalid` with `details.fields` (`text`, `id`, or too many comments); `idempotency_mismatch`", body = ErrorBody),
        (status = 500, description = "`internal`", body = ErrorBody),
    )
)]
pub async fn comment_route(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    path: Result<Path<(String, String)>, PathRejection>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Answer, ApiError> {
    let (collection, id) = path_params(path)?;
    check_collection(&collection)?;
    let mutation = Mutation::new(&user, &headers, &method, uri.path(), body_bytes(&body))?;
    let body = json_body(body)?;
    let Some(obj) = body.as_object() else {
        return Err(ApiError::invalid_field(
            "body",
            "must be an object { id, text }",
        ));
    };
    let comment_id = match obj.get("id") {
        None | Some(Value::Null) => random_hex(16)?,
        Some(Value::String(s)) if is_valid_record_id(s) => s.clone(),
        Some(_) => {
            return Err(ApiError::invalid_field(
                "id",
                "1 to 128 letters, digits or -_.:@",
            ))
        }
    };
    let max_chars = state.limits.max_comment_chars;
    let max_comments = state.limits.max_comments;
    let text = match obj.get("text") {
        Some(Value::String(s)) if !s.trim().is_empty() && s.chars().count() <= max_chars => {
            s.clone()
        }
        _ => {
            return Err(ApiError::invalid_field(
                "text",
                format!("required: 1 to {max_chars} characters"),
            ))
        }
    };
    state
        .db
        .write(move |tx| {
            if let Some(answer) = mutation.replay(tx)? {
                return Ok(answer);
            }
            let record =
                load_live(tx, &collection, &id)?.ok_or_else(|| not_found(&collection, &id))?;
            if let Some(stored) = record.comments.iter().find(|c| c.id == comment_id) {
                let answer = Answer::json(StatusCode::OK, stored)?;
                mutation.remember(tx, &answer)?;
                return Ok(answer);
            }
            if record.comments.len() >= max_comments {
                return Err(ApiError::invalid_field(
                    "comments",
                    format!("a record has at most {max_comments} comments"),
                ));
            }
            let comment = Comment {
                id: comment_id,
                author: user,
                text,
                created_at: rfc3339_now(),
            };
            tx.execute(
                "INSERT INTO comments (collection, record_id, id, author, text, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                rusqlite::params![
                    collection,
                    id,
                    comment.id,
                    comment.author,
                    comment.text,
                    comment.created_at
                ],
            )?;
            // The feed serves the record as it is now, new comment included,
            // so other screens see it; the change itself names the comment.
            record_change(
                tx,
                &collection,
                &record,
                "put",
                Some(&json!({ "comment": comment.id })),
            )?;
            let answer = Answer::json(StatusCode::CREATED, &comment)?;
            mutation.remember(tx, &answer)?;
            Ok(answer)
        })
        .await
}
