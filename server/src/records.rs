//! Records: versioned field maps with an append-only comment log, stored per
//! collection, with tombstones for deleted records so the changes feed can
//! report deletions.

use crate::wire::*;

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::db::{timestamp_rfc3339, Row, Tx};
use crate::error::ApiError;
use crate::history::{self, Author, HistoryOp};

/// A stored row: a live record or the tombstone of a deleted one.
#[derive(Debug, Clone)]
pub struct StoredRecord {
    /// The record (a tombstone keeps id and version, with no fields).
    pub record: Record,
    /// Whether this is a tombstone.
    pub deleted: bool,
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
/// Internal errors from the database.
pub fn load(conn: &Tx<'_>, collection: &str, id: &str) -> Result<Option<StoredRecord>, ApiError> {
    let row = conn.query_opt(
        "SELECT version, updated_at, updated_by, fields, deleted FROM records
         WHERE collection = ?1 AND id = ?2",
        &[&collection, &id],
    )?;
    let Some(r) = row else {
        return Ok(None);
    };
    let (version, updated_at, updated_by, fields, deleted): (i64, String, String, String, bool) =
        (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?);
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
/// Internal errors from the database.
pub fn load_live(conn: &Tx<'_>, collection: &str, id: &str) -> Result<Option<Record>, ApiError> {
    Ok(load(conn, collection, id)?
        .filter(|s| !s.deleted)
        .map(|s| s.record))
}

fn load_comments(conn: &Tx<'_>, collection: &str, id: &str) -> Result<Vec<Comment>, ApiError> {
    conn.query(
        "SELECT id, author, text, created_at FROM comments
         WHERE collection = ?1 AND record_id = ?2 ORDER BY seq",
        &[&collection, &id],
    )?
    .iter()
    .map(|r| comment_at(r, 0))
    .collect()
}

/// The comment in columns `at..at + 4` (id, author, text, created_at).
fn comment_at(r: &Row, at: usize) -> Result<Comment, ApiError> {
    Ok(Comment {
        id: r.get(at)?,
        author: r.get(at + 1)?,
        text: r.get(at + 2)?,
        created_at: r.get(at + 3)?,
    })
}

/// Every live record of a collection, ordered by id, with comments.
///
/// # Errors
/// Internal errors from the database.
pub fn list(conn: &Tx<'_>, collection: &str) -> Result<Vec<Record>, ApiError> {
    list_page(conn, collection, "", usize::MAX)
}

/// Up to `limit` live records of a collection with ids after `after` (""
/// for the first page), in id order, with their comments: a keyset page,
/// served by the records table's primary key.
///
/// # Errors
/// Internal errors from the database.
pub fn list_page(
    conn: &Tx<'_>,
    collection: &str,
    after: &str,
    limit: usize,
) -> Result<Vec<Record>, ApiError> {
    let sql_limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = conn.query(
        "SELECT id, version, updated_at, updated_by, fields FROM records
         WHERE collection = ?1 AND id > ?2 AND deleted = 0 ORDER BY id LIMIT ?3",
        &[&collection, &after, &sql_limit],
    )?;
    let mut out = Vec::new();
    for r in rows {
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
    let rows = conn.query(
        "SELECT record_id, id, author, text, created_at FROM comments
         WHERE collection = ?1 AND record_id > ?2 AND record_id <= ?3 ORDER BY seq",
        &[&collection, &after, &last],
    )?;
    for r in rows {
        comments
            .entry(r.get(0)?)
            .or_default()
            .push(comment_at(&r, 1)?);
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
/// Internal errors from the database.
pub fn insert(
    conn: &Tx<'_>,
    collection: &str,
    id: &str,
    fields: Map<String, Value>,
    by: &Author,
) -> Result<Record, ApiError> {
    let user = by.user.as_str();
    let tombstone: Option<i64> = conn
        .query_opt(
            "SELECT version FROM records WHERE collection = ?1 AND id = ?2 AND deleted = 1",
            &[&collection, &id],
        )?
        .map(|r| r.get(0))
        .transpose()?;
    let version = tombstone.map_or(1, |v| v + 1);
    let now = timestamp_rfc3339();
    // Conditional, like every write: only a tombstone is replaced, so of
    // two instances creating one id at once, the second finds it taken.
    let n = conn.execute(
        "INSERT INTO records (collection, id, version, updated_at, updated_by, fields, deleted)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0)
         ON CONFLICT (collection, id) DO UPDATE SET version = excluded.version,
           updated_at = excluded.updated_at, updated_by = excluded.updated_by,
           fields = excluded.fields, deleted = 0
         WHERE records.deleted = 1 AND records.version = ?3 - 1",
        &[
            &collection,
            &id,
            &version,
            &now,
            &user,
            &fields_text(&fields)?,
        ],
    )?;
    if n == 0 {
        let current = load_live(conn, collection, id)?;
        return Err(ApiError::conflict(
            format!("a record {id:?} already exists in {collection}"),
            current.map_or(Value::Null, |r| r.to_json()),
        ));
    }
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
    let changes = history::diff(&Map::new(), &record.fields);
    history::append(conn, collection, &record, HistoryOp::Create, &changes, by)?;
    Ok(record)
}

/// Replaces a live record's fields if it is still at `expected_version`, in the
/// caller's transaction: `UPDATE ... WHERE version = ?` is the optimistic lock.
/// Returns `None` when the version moved on.
///
/// # Errors
/// Internal errors from the database.
pub fn update_fields(
    conn: &Tx<'_>,
    collection: &str,
    current: &Record,
    fields: Map<String, Value>,
    by: &Author,
) -> Result<Option<Record>, ApiError> {
    let user = by.user.as_str();
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
    let now = timestamp_rfc3339();
    let version = current.version + 1;
    let n = conn.execute(
        "UPDATE records SET version = ?1, updated_at = ?2, updated_by = ?3, fields = ?4
         WHERE collection = ?5 AND id = ?6 AND version = ?7 AND deleted = 0",
        &[
            &version,
            &now,
            &user,
            &fields_text(&fields)?,
            &collection,
            &current.id,
            &current.version,
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
    let changes = history::diff(&current.fields, &record.fields);
    history::append(conn, collection, &record, HistoryOp::Update, &changes, by)?;
    Ok(Some(record))
}

/// Deletes a live record still at `current.version`, leaving a tombstone one
/// version above it; its comments go. Returns the tombstone, or `None` when
/// the version moved on.
///
/// # Errors
/// Internal errors from the database.
pub fn delete(
    conn: &Tx<'_>,
    collection: &str,
    current: &Record,
    by: &Author,
) -> Result<Option<Record>, ApiError> {
    let now = timestamp_rfc3339();
    let n = conn.execute(
        "UPDATE records SET version = version + 1, updated_at = ?1, updated_by = ?2,
         fields = '{}', deleted = 1
         WHERE collection = ?3 AND id = ?4 AND version = ?5 AND deleted = 0",
        &[&now, &by.user, &collection, &current.id, &current.version],
    )?;
    if n == 0 {
        return Ok(None);
    }
    conn.execute(
        "DELETE FROM comments WHERE collection = ?1 AND record_id = ?2",
        &[&collection, &current.id],
    )?;
    let tombstone = Record {
        id: current.id.clone(),
        version: current.version + 1,
        updated_at: now,
        updated_by: by.user.clone(),
        fields: Map::new(),
        comments: Vec::new(),
    };
    // The fields the deletion cleared, so an older answer can be rebuilt.
    record_change(
        conn,
        collection,
        &tombstone,
        "delete",
        Some(&json!({ "before": current.fields })),
    )?;
    let changes = history::diff(&current.fields, &Map::new());
    history::append(
        conn,
        collection,
        &tombstone,
        HistoryOp::Delete,
        &changes,
        by,
    )?;
    Ok(Some(tombstone))
}

/// Appends one entry to the changes feed and returns its sequence number.
/// `what` says what changed (`fields`: the new values of the fields that
/// changed, `before`: their old ones; or a comment's id), never a copy of the
/// record: the feed serves records from their current state, and an older
/// state is rebuilt by undoing `before`s (see [`record_at`]).
///
/// # Errors
/// Internal errors from the database.
pub fn record_change(
    conn: &Tx<'_>,
    collection: &str,
    record: &Record,
    op: &str,
    what: Option<&Value>,
) -> Result<i64, ApiError> {
    let what = what.map(Value::to_string);
    conn.insert_change(collection, &record.id, record.version, op, what.as_deref())
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
    /// Internal errors from the database.
    pub fn new(
        conn: &Tx<'_>,
        collection: &str,
        record: &Record,
        seq: i64,
    ) -> Result<Self, ApiError> {
        let comments_upto: i64 = conn
            .query_one(
                "SELECT COALESCE(MAX(seq), 0) FROM comments WHERE collection = ?1 AND record_id = ?2",
                &[&collection, &record.id],
            )?
            .get(0)?;
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
/// Internal errors from the database.
pub fn record_at(conn: &Tx<'_>, r: &RecordRef) -> Result<Option<Record>, ApiError> {
    if r.seq < floor(conn)? {
        return Ok(None);
    }
    let current: Option<String> = conn
        .query_opt(
            "SELECT fields FROM records WHERE collection = ?1 AND id = ?2",
            &[&r.collection, &r.id],
        )?
        .map(|row| row.get(0))
        .transpose()?;
    let Some(current) = current else {
        return Ok(None);
    };
    let mut fields = parse_fields(&current)?;
    let rows = conn.query(
        "SELECT what FROM changes WHERE collection = ?1 AND id = ?2 AND seq > ?3
         ORDER BY seq DESC",
        &[&r.collection, &r.id, &r.seq],
    )?;
    for row in rows {
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
    let comments = conn
        .query(
            "SELECT id, author, text, created_at FROM comments
             WHERE collection = ?1 AND record_id = ?2 AND seq <= ?3 ORDER BY seq",
            &[&r.collection, &r.id, &r.comments_upto],
        )?
        .iter()
        .map(|row| comment_at(row, 0))
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

/// The sequence number below which changes were pruned: a cursor before it
/// cannot be served.
///
/// # Errors
/// Internal errors from the database.
pub fn floor(conn: &Tx<'_>) -> Result<i64, ApiError> {
    let cut: Option<String> = conn
        .query_opt("SELECT value FROM meta WHERE key = 'pruned_through'", &[])?
        .map(|r| r.get(0))
        .transpose()?;
    Ok(cut.and_then(|c| c.parse().ok()).unwrap_or(0))
}
