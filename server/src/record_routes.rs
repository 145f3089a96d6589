//! The records' routes: list, read, create, change, delete and comment,
//! with the checks a write must pass (size, double booking) inside its
//! transaction. Storage is in [`crate::records`].

use crate::wire::*;
use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use crate::auth::AuthUser;
use crate::changes::cursor;
use crate::db::{random_hex, timestamp_rfc3339, Engine, Tx};
use crate::error::ApiError;
use crate::extract::{if_match, path_params, Answer};
use crate::history::Author;
use crate::idempotency::{write_once, Mutating, Written};
use crate::limits::Limits;
use crate::records::{
    self, insert, list, list_page, load_live, record_change, update_fields, RecordRef,
};
use crate::validate::{
    check_collection, check_known_fields, is_valid_record_id, parse_time, scalar_fields,
    CALENDAR_EVENTS,
};
use crate::AppState;

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
fn check_overlap(conn: &Tx<'_>, id: &str, fields: &Map<String, Value>) -> Result<(), ApiError> {
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
    // Held until commit: two instances booking one resource at once take
    // turns, so the second sees the first's booking.
    conn.lock(&format!("booking\n{resource}"))?;
    let sql = match conn.engine() {
        Engine::Sqlite => {
            "SELECT id FROM records WHERE collection = ?1 AND deleted = 0 AND id != ?2
             AND json_extract(fields, '$.resource') = ?3 ORDER BY id"
        }
        Engine::Postgres => {
            "SELECT id FROM records WHERE collection = ?1 AND deleted = 0 AND id != ?2
             AND (fields::jsonb ->> 'resource') = ?3 ORDER BY id"
        }
    };
    let ids: Vec<String> = conn
        .query(sql, &[&CALENDAR_EVENTS, &id, &resource])?
        .iter()
        .map(|r| r.get(0))
        .collect::<Result<_, _>>()?;
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
/// The page size of `?after=` without `limit`.
pub const DEFAULT_PAGE: usize = 500;
/// Ids are at most 128 bytes (see `validate`): no `after` is longer.
const MAX_AFTER: usize = 128;

/// Query of `GET /api/{collection}`: paging (`after` alone pages by
/// [`DEFAULT_PAGE`]), or neither for the whole collection.
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
        let limit = match (self.limit.as_deref(), &self.after) {
            (None, None) => return Ok(None),
            // Every query the document allows is served: `after` alone
            // (Schemathesis sent it) takes the default page size.
            (None, Some(_)) => DEFAULT_PAGE,
            (Some(limit), _) => match limit.parse::<usize>() {
                Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
                _ => return Err(invalid("limit must be a whole number from 1 to 10000")),
            },
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
        ("after" = Option<String>, Query, nullable = false, description = "The `next` of the previous page; without `limit`, pages are 500 records", min_length = 1, max_length = 128),
    ),
    responses(
        (status = 200, description = "The records (`next` only with `limit`)", body = RecordList),
        RequestErrors, CollectionNotFound,
        (status = 422, description = "`invalid`: a bad `limit` or `after`", body = ErrorBody),
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
        RequestErrors, RecordNotFound,
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
        IdempotencyKey,
    ),
    responses(
        (status = 201, description = "The record at version 1", body = Record),
        RequestErrors, CollectionNotFound, BodyTooLarge,
        (status = 409, description = "`conflict`: the id exists (`details.current`); `overlap`: a calendar event in the way (`details.conflicts`)", body = ErrorBody),
        (status = 422, description = "`invalid` with `details.fields`; `idempotency_mismatch` for a key reused on another request", body = ErrorBody),
    )
)]
pub async fn create_route(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    mut req: Mutating,
) -> Result<Answer, ApiError> {
    let collection = path_params(path)?;
    check_collection(&collection)?;
    let mutation = req.mutation()?;
    let body = req.json()?;
    let user = req.user;
    let obj = body_object(&body, "{ id?, fields }")?;
    let id = named_or_new_id(obj)?;
    let fields = scalar_fields(obj.get("fields"), false)?;
    check_known_fields(&collection, &fields, &fields)?;
    check_size(&fields, &state.limits)?;
    write_once(&state.db, mutation, move |tx| {
        if let Some(existing) = load_live(tx, &collection, &id)? {
            return Err(ApiError::conflict(
                format!("a record {id:?} already exists in {collection}"),
                existing.to_json(),
            ));
        }
        if collection == CALENDAR_EVENTS {
            check_overlap(tx, &id, &fields)?;
        }
        let record = insert(tx, &collection, &id, fields, &Author::person(&user))?;
        record_written(tx, StatusCode::CREATED, &collection, &record)
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
        IfMatch,
        IdempotencyKey,
    ),
    responses(
        (status = 200, description = "The record at its next version", body = Record),
        RequestErrors, RecordNotFound, BodyTooLarge, IfMatchRequired,
        (status = 409, description = "`conflict`: `If-Match` is not the current version (`details.current` = the record); `overlap` (`details.conflicts`)", body = ErrorBody),
        (status = 422, description = "`invalid` with `details.fields` (bad values, or no field named); `idempotency_mismatch`", body = ErrorBody),
    )
)]
pub async fn patch_route(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    mut req: Mutating,
) -> Result<Answer, ApiError> {
    let (collection, id) = path_params(path)?;
    check_collection(&collection)?;
    let mutation = req.mutation()?;
    let expected = if_match(&req.headers)?.ok_or_else(ApiError::precondition_required)?;
    let body = req.json()?;
    let user = req.user;
    let obj = body_object(&body, "{ fields }")?;
    let patch = scalar_fields(obj.get("fields"), true)?;
    if patch.is_empty() {
        return Err(ApiError::invalid_field(
            "fields",
            "name at least one field to change",
        ));
    }
    let limits = Arc::clone(&state.limits);
    write_once(&state.db, mutation, move |tx| {
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
        let Some(record) =
            update_fields(tx, &collection, &current, merged, &Author::person(&user))?
        else {
            return Err(lost_race(tx, &collection, &current, expected)?);
        };
        record_written(tx, StatusCode::OK, &collection, &record)
    })
    .await
}

/// The request body as a JSON object; `shape` says which one is expected.
fn body_object<'a>(body: &'a Value, shape: &str) -> Result<&'a Map<String, Value>, ApiError> {
    body.as_object()
        .ok_or_else(|| ApiError::invalid_field("body", format!("must be an object {shape}")))
}

/// The `id` a new record or comment is given: the one the body names, or
/// a random one.
fn named_or_new_id(body: &Map<String, Value>) -> Result<String, ApiError> {
    match body.get("id") {
        None | Some(Value::Null) => random_hex(16),
        Some(Value::String(s)) if is_valid_record_id(s) => Ok(s.clone()),
        Some(_) => Err(ApiError::invalid_field(
            "id",
            "1 to 128 letters, digits or -_.:@",
        )),
    }
}

/// A record answer, kept by the idempotency store as a reference to the
/// version just written rather than a copy.
fn record_written(
    tx: &Tx<'_>,
    status: StatusCode,
    collection: &str,
    record: &Record,
) -> Result<Written, ApiError> {
    let answer = Answer::json(status, record)?;
    // The change this transaction wrote (on PostgreSQL another instance's
    // later change may already be visible, so not simply the newest).
    let seq = match tx.last_seq() {
        0 => crate::changes::head(tx)?,
        seq => seq,
    };
    let written = RecordRef::new(tx, collection, record, seq)?;
    Ok(Written {
        answer,
        record: Some(written),
    })
}

/// The answer when the conditional write found the version moved on after
/// `current` was read: another writer committed in between (on PostgreSQL,
/// possibly through another instance). The record is read again, so the
/// `409` shows what that writer left, or `404` if it deleted the record.
fn lost_race(
    tx: &Tx<'_>,
    collection: &str,
    current: &Record,
    expected: i64,
) -> Result<ApiError, ApiError> {
    Ok(match load_live(tx, collection, &current.id)? {
        Some(now) => stale(&now, expected),
        None => not_found(collection, &current.id),
    })
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
        IfMatch,
        IdempotencyKey,
    ),
    responses(
        (status = 204, description = "Deleted (a tombstone stays in the feed)"),
        RequestErrors, RecordNotFound, IfMatchRequired,
        (status = 409, description = "`conflict`: `If-Match` is not the current version (`details.current`)", body = ErrorBody),
        (status = 422, description = "`idempotency_mismatch`", body = ErrorBody),
    )
)]
pub async fn delete_route(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    req: Mutating,
) -> Result<Answer, ApiError> {
    let (collection, id) = path_params(path)?;
    check_collection(&collection)?;
    let mutation = req.mutation()?;
    let expected = if_match(&req.headers)?.ok_or_else(ApiError::precondition_required)?;
    let user = req.user;
    write_once(&state.db, mutation, move |tx| {
        let current =
            load_live(tx, &collection, &id)?.ok_or_else(|| not_found(&collection, &id))?;
        if current.version != expected {
            return Err(stale(&current, expected));
        }
        if records::delete(tx, &collection, &current, &Author::person(&user))?.is_none() {
            return Err(lost_race(tx, &collection, &current, expected)?);
        }
        Ok(Answer::empty(StatusCode::NO_CONTENT).into())
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
        IdempotencyKey,
    ),
    responses(
        (status = 200, description = "A comment of this id existed: the stored one", body = Comment),
        (status = 201, description = "The new comment", body = Comment),
        RequestErrors, RecordNotFound, BodyTooLarge,
        (status = 422, description = "`invalid` with `details.fields` (`text`, `id`, or too many comments); `idempotency_mismatch`", body = ErrorBody),
    )
)]
pub async fn comment_route(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    mut req: Mutating,
) -> Result<Answer, ApiError> {
    let (collection, id) = path_params(path)?;
    check_collection(&collection)?;
    let mutation = req.mutation()?;
    let body = req.json()?;
    let user = req.user;
    let obj = body_object(&body, "{ id, text }")?;
    let comment_id = named_or_new_id(obj)?;
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
    write_once(&state.db, mutation, move |tx| {
        let record = load_live(tx, &collection, &id)?.ok_or_else(|| not_found(&collection, &id))?;
        if let Some(stored) = record.comments.iter().find(|c| c.id == comment_id) {
            return Ok(Answer::json(StatusCode::OK, stored)?.into());
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
            created_at: timestamp_rfc3339(),
        };
        let added = tx.execute(
            "INSERT INTO comments (collection, record_id, id, author, text, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
            &[
                &collection,
                &id,
                &comment.id,
                &comment.author,
                &comment.text,
                &comment.created_at,
            ],
        )?;
        if added == 0 {
            // Stored meanwhile through another instance: the same answer as above.
            let record =
                load_live(tx, &collection, &id)?.ok_or_else(|| not_found(&collection, &id))?;
            if let Some(stored) = record.comments.iter().find(|c| c.id == comment.id) {
                return Ok(Answer::json(StatusCode::OK, stored)?.into());
            }
        }
        // The feed serves the record as it is now, new comment included,
        // so other screens see it; the change itself names the comment.
        record_change(
            tx,
            &collection,
            &record,
            "put",
            Some(&json!({ "comment": comment.id })),
        )?;
        Ok(Answer::json(StatusCode::CREATED, &comment)?.into())
    })
    .await
}
