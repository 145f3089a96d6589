//! Sheet rows applied to the customers with the same optimistic locking as a
//! PATCH, and the conflicts that finds: the rows not applied because the
//! record changed in the CRM since the row's version (`ConflictRow`, in the
//! job's status) and, field by field, what differs and who changed it
//! (`GET /api/sync/{id}/conflicts`).

use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use serde_json::Value;

use crate::db::Tx;
use crate::error::ApiError;
use crate::history::{self, Author};
use crate::model::{FieldValue, Record};
use crate::records;
use crate::sheet::{SheetRow, FIELD_COLUMNS};
use crate::sync_model::{ConflictReason, ConflictRow};
use crate::validate::CUSTOMERS;

/// The most conflicting rows a job lists; `stats.conflicts` counts them all.
pub const MAX_LISTED_CONFLICTS: usize = 100;

/// The most conflicting fields `GET /api/sync/{id}/conflicts` lists.
pub const MAX_LISTED_CONFLICT_FIELDS: usize = 1000;

/// One field of a sheet row that was not applied because the record changed
/// in the CRM since the last sync: both values, and who set the CRM's.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({ "row": 11, "recordId": "c-0010", "field": "phone", "sheet": "+1-555-9010", "crm": "+43 660 1234567", "changedBy": "bob", "changedAt": "2026-01-01T08:55:00.000Z" }))]
pub struct SheetConflict {
    /// The row in the sheet (1 = the header row).
    pub row: u64,
    /// The customer's record id.
    pub record_id: String,
    /// The field whose values differ; `null` when the record was deleted
    /// in the CRM (then `sheet` and `crm` are `null` too).
    pub field: Option<String>,
    /// The sheet's value (`null`: an empty cell).
    #[schema(value_type = FieldValue)]
    pub sheet: Value,
    /// The CRM's value (`null`: not set).
    #[schema(value_type = FieldValue)]
    pub crm: Value,
    /// Who last changed the field in the CRM (or deleted the record).
    pub changed_by: String,
    /// When (RFC 3339 UTC).
    pub changed_at: String,
}

/// `GET /api/sync/{syncId}/conflicts`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SheetConflictList {
    /// In sheet order (at most [`MAX_LISTED_CONFLICT_FIELDS`]).
    pub items: Vec<SheetConflict>,
}

impl SheetConflict {
    /// The fields of `row` that differ from `current`, each with who last
    /// set the CRM's value (from the record's history; the record's last
    /// change where the history does not reach back).
    pub(crate) fn of_row(
        conn: &Tx<'_>,
        row: &SheetRow,
        current: &Record,
        deleted: bool,
    ) -> Result<Vec<Self>, ApiError> {
        if deleted {
            return Ok(vec![Self {
                row: row.line,
                record_id: row.id.clone(),
                field: None,
                sheet: Value::Null,
                crm: Value::Null,
                changed_by: current.updated_by.clone(),
                changed_at: current.updated_at.clone(),
            }]);
        }
        let changes = history::read(conn, CUSTOMERS, &row.id, 50)?.unwrap_or_default();
        Ok(FIELD_COLUMNS
            .iter()
            .filter_map(|field| {
                let sheet = row.fields.get(*field)?.clone();
                let crm = current.fields.get(*field).cloned().unwrap_or(Value::Null);
                if sheet == crm {
                    return None;
                }
                let (changed_by, changed_at) = changes
                    .iter()
                    .find(|e| e.changes.contains_key(*field))
                    .map_or_else(
                        || (current.updated_by.clone(), current.updated_at.clone()),
                        |e| (e.by.clone(), e.at.clone()),
                    );
                Some(Self {
                    row: row.line,
                    record_id: row.id.clone(),
                    field: Some((*field).to_owned()),
                    sheet,
                    crm,
                    changed_by,
                    changed_at,
                })
            })
            .collect())
    }
}

impl ConflictRow {
    pub(crate) fn new(row: &SheetRow, current: &Record, deleted: bool, base: Option<i64>) -> Self {
        let based = base.map_or("the row names no version".to_owned(), |b| {
            format!("the row is based on version {b}")
        });
        let (reason, what) = if deleted {
            (ConflictReason::Deleted, "deleted")
        } else {
            (ConflictReason::Changed, "changed")
        };
        Self {
            id: row.id.clone(),
            line: row.line,
            reason,
            version: current.version,
            updated_by: current.updated_by.clone(),
            message: format!(
                "{what} in the CRM by {} since the last sync (version {}; {based})",
                current.updated_by, current.version
            ),
        }
    }
}

#[derive(Debug, Default, Clone)]
pub(crate) struct RowCounts {
    /// Rows looked at (the rest of the batch was left for a cancel).
    pub(crate) handled: usize,
    /// A cancel stopped the batch before its end.
    pub(crate) stopped: bool,
    pub(crate) inserted: u64,
    pub(crate) updated: u64,
    pub(crate) unchanged: u64,
    pub(crate) conflicts: u64,
    pub(crate) conflict_rows: Vec<ConflictRow>,
    pub(crate) conflicts_by_field: Vec<SheetConflict>,
}

impl RowCounts {
    fn conflict(
        &mut self,
        conn: &Tx<'_>,
        sheet_row: &SheetRow,
        current: &Record,
        deleted: bool,
        base: Option<i64>,
    ) -> Result<(), ApiError> {
        self.conflicts += 1;
        self.conflict_rows
            .push(ConflictRow::new(sheet_row, current, deleted, base));
        if self.conflicts_by_field.len() < MAX_LISTED_CONFLICT_FIELDS {
            self.conflicts_by_field
                .extend(SheetConflict::of_row(conn, sheet_row, current, deleted)?);
        }
        Ok(())
    }
}

/// Applies sheet rows with the same optimistic locking as a PATCH. The base
/// version of a row is the record version stored at its last sync (or, for a
/// row never synced, the sheet's own `version` cell): if the record has moved
/// past it, someone changed the record since, and the row is a conflict.
/// When `stop` turns true it stops before the next row.
pub(crate) fn apply_rows(
    conn: &Tx<'_>,
    rows: &[SheetRow],
    by: &Author,
    stop: &AtomicBool,
) -> Result<RowCounts, ApiError> {
    let mut counts = RowCounts::default();
    for row in rows {
        if stop.load(Ordering::SeqCst) {
            counts.stopped = true;
            break;
        }
        counts.handled += 1;
        let synced: Option<i64> = conn
            .query_opt(
                "SELECT version FROM sheet_sync WHERE collection = ?1 AND id = ?2",
                &[&CUSTOMERS, &row.id],
            )?
            .map(|r| r.get(0))
            .transpose()?;
        let base = synced.or(row.version);
        let stored = records::load(conn, CUSTOMERS, &row.id)?;
        let version = match stored {
            None => {
                let fields = row
                    .fields
                    .iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                counts.inserted += 1;
                records::insert(conn, CUSTOMERS, &row.id, fields, by)?.version
            }
            // Deleted in the CRM since: the deletion wins, like a PATCH on a stale version.
            Some(s) if s.deleted => {
                counts.conflict(conn, row, &s.record, true, base)?;
                continue;
            }
            Some(s) => {
                let current = s.record;
                let same = FIELD_COLUMNS
                    .iter()
                    .filter(|c| row.fields.contains_key(**c))
                    .all(|c| {
                        current.fields.get(*c).unwrap_or(&Value::Null)
                            == row.fields.get(*c).unwrap_or(&Value::Null)
                    });
                if same {
                    counts.unchanged += 1;
                    current.version
                } else if base == Some(current.version) {
                    let mut merged = current.fields.clone();
                    for (k, v) in &row.fields {
                        if v.is_null() {
                            merged.remove(k);
                        } else {
                            merged.insert(k.clone(), v.clone());
                        }
                    }
                    match records::update_fields(conn, CUSTOMERS, &current, merged, by)? {
                        Some(r) => {
                            counts.updated += 1;
                            r.version
                        }
                        None => {
                            counts.conflict(conn, row, &current, false, base)?;
                            continue;
                        }
                    }
                } else {
                    counts.conflict(conn, row, &current, false, base)?;
                    continue;
                }
            }
        };
        remember_synced(conn, &row.id, version)?;
    }
    Ok(counts)
}

/// Notes that the sheet now holds `version` of customer `id`.
pub(crate) fn remember_synced(conn: &Tx<'_>, id: &str, version: i64) -> Result<(), ApiError> {
    conn.execute(
        "INSERT INTO sheet_sync (collection, id, version) VALUES (?1, ?2, ?3)
         ON CONFLICT (collection, id) DO UPDATE SET version = excluded.version",
        &[&CUSTOMERS, &id, &version],
    )?;
    Ok(())
}
