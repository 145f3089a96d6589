//! The server's and the stored shapes of sync jobs: a job status as the
//! server answers it, the job id kept in IndexedDB, a history line.

use serde::{Deserialize, Serialize};

use super::{SyncError, SyncKind, SyncOutcome, SyncStats};
use crate::core::code::ErrorCode;
use crate::core::record::FieldValue;

/// The job being followed, as stored in IndexedDB so that a reload or the
/// next leader goes on following it ([`SyncEvent::Resume`](super::SyncEvent::Resume)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredSyncJob {
    /// The server's job id.
    pub sync_id: String,
    /// Which way it copies.
    pub kind: SyncKind,
    /// When the run started (ms since the epoch); the total timeout counts
    /// from here, also for the tab that resumes it.
    pub started_at: u64,
}

/// One finished run, as `crm.sync.history()` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncHistoryEntry {
    /// The server's job id; absent when the run ended before the server
    /// answered the start.
    pub sync_id: Option<String>,
    /// Which way it copied.
    pub kind: SyncKind,
    /// How it ended.
    pub status: SyncOutcome,
    /// When it started (ms since the epoch).
    pub started_at: u64,
    /// When it ended (ms since the epoch).
    pub finished_at: u64,
    /// `finishedAt - startedAt`.
    pub duration_ms: u64,
    /// The last counters the server reported.
    pub stats: Option<SyncStats>,
    /// The server's last words about the run ("Cancelled after 612 of
    /// 1,400 rows: 600 new, 12 updated"), when it said any (lines kept
    /// before they were recorded have none).
    #[serde(default)]
    pub message: Option<String>,
    /// Why it failed, for `status: "error"`.
    pub error: Option<SyncError>,
    /// The sheet rows a from-sheet run did not apply, and why (from the
    /// server's list of its jobs; entries kept before it have none).
    #[serde(default)]
    pub conflict_rows: Vec<SyncConflictRow>,
}

/// A sheet row a from-sheet run did not apply because the record changed
/// (or was deleted) in the CRM since the version the row was based on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncConflictRow {
    /// The customer's record id.
    pub id: String,
    /// Its line in the sheet (1 = header), when the server says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// `changed` or `deleted`.
    #[serde(default)]
    pub reason: String,
    /// The record's version in the CRM, when the server says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// Who changed it last in the CRM, when the server says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_by: Option<String>,
    /// For people.
    #[serde(default)]
    pub message: String,
}

/// One field of a sheet row that a from-sheet run did not apply, because
/// the record changed in the CRM since the last sync, as
/// `crm.sync.conflicts(syncId)` lists it (docs/backend/protocol.md,
/// "Cancelling and conflicts of a sync job").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncSheetConflict {
    /// The row in the sheet (1 = the header row).
    pub row: u64,
    /// The customer's record id.
    pub record_id: String,
    /// The field whose values differ; `None` when the record was deleted
    /// in the CRM.
    #[serde(default)]
    pub field: Option<String>,
    /// The sheet's value (`null`: an empty cell).
    #[serde(default = "no_value")]
    pub sheet: FieldValue,
    /// The CRM's value (`null`: not set).
    #[serde(default = "no_value")]
    pub crm: FieldValue,
    /// Who last changed the field in the CRM (or deleted the record).
    #[serde(default)]
    pub changed_by: String,
    /// When (RFC 3339 UTC).
    #[serde(default)]
    pub changed_at: String,
}

fn no_value() -> FieldValue {
    FieldValue::Null
}

/// A job's `error` as the server may send it: a bare string or an object.
/// Lenient on purpose: the run fails either way, this only feeds the message.
/// `Deserialize` reads the value's own type (see
/// [`crate::core::record::FieldValue`] for why not `untagged`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ServerJobError {
    /// `"error": "sheet unreachable"`.
    Text(String),
    /// `"error": { "code": "...", "message": "..." }`.
    Detail {
        /// A wire code, if any.
        code: Option<String>,
        /// A message, if any.
        message: Option<String>,
    },
}

/// The object form of [`ServerJobError`].
#[derive(Deserialize)]
struct ServerJobErrorDetail {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

impl<'de> Deserialize<'de> for ServerJobError {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = ServerJobError;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or an object with code and message")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ServerJobError, E> {
                Ok(ServerJobError::Text(v.to_owned()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<ServerJobError, A::Error> {
                let detail = ServerJobErrorDetail::deserialize(
                    serde::de::value::MapAccessDeserializer::new(map),
                )?;
                Ok(ServerJobError::Detail {
                    code: detail.code,
                    message: detail.message,
                })
            }
        }
        deserializer.deserialize_any(Visit)
    }
}

/// A job status as `GET /api/sync/{syncId}` answers it (docs/backend/protocol.md).
///
/// Every field is optional so that the web layer can deserialise whatever
/// the server sent without failing; the reducer then judges the shape
/// (unknown or missing `status` is `bad_response`) and clamps `progress`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServerSyncStatus {
    /// The job id; when present it must be the one polled.
    pub sync_id: Option<String>,
    /// `from-sheet` or `to-sheet` (kept as text: not needed to follow).
    pub kind: Option<String>,
    /// `queued`, `downloading`, `processing`, `saving`, `complete`, `error`
    /// or `cancelled`.
    pub status: Option<String>,
    /// 0-100 in theory; anything in practice (NaN, negative, over 100).
    pub progress: Option<f64>,
    /// Words for a person, e.g. "Parsing rows".
    pub message: Option<String>,
    /// Place in the user's queue.
    pub position: Option<f64>,
    /// Counters so far.
    pub stats: Option<SyncStats>,
    /// The rows a from-sheet run did not apply, and why.
    pub conflict_rows: Option<Vec<SyncConflictRow>>,
    /// Why the job failed, for `status: "error"`.
    pub error: Option<ServerJobError>,
    /// RFC 3339, unused by the reducer.
    pub created_at: Option<String>,
    /// RFC 3339, unused by the reducer.
    pub updated_at: Option<String>,
}

/// `crm.sync.history()`: the runs this browser followed (`kept`, from
/// its sync log) and the finished jobs the server `listed`, newest first.
/// A run followed here takes from the server's line which rows
/// conflicted, and its final counts and words when both ended the same
/// way (a run that ended with a poll before the job did shows what it
/// saw then).
pub fn merge_history(
    mut kept: Vec<SyncHistoryEntry>,
    listed: &[ServerSyncStatus],
) -> Vec<SyncHistoryEntry> {
    for line in listed.iter().filter_map(ServerSyncStatus::as_history) {
        let known = line
            .sync_id
            .as_ref()
            .and_then(|id| kept.iter_mut().find(|l| l.sync_id.as_ref() == Some(id)));
        match known {
            Some(kept) => {
                if kept.conflict_rows.is_empty() {
                    kept.conflict_rows = line.conflict_rows;
                }
                if line.stats.is_some() && kept.status == line.status {
                    kept.stats = line.stats;
                    kept.message = line.message;
                }
            }
            None => kept.push(line),
        }
    }
    crate::core::sort::sort_by(&mut kept, |a, b| b.finished_at.cmp(&a.finished_at));
    kept
}

impl ServerSyncStatus {
    /// A finished job as a line of `crm.sync.history()`, so that a browser
    /// that never followed it (a fresh one, another device) shows it too.
    /// `None` for a job still going, or one whose times cannot be read.
    pub fn as_history(&self) -> Option<SyncHistoryEntry> {
        let status = match self.status.as_deref()? {
            "complete" => SyncOutcome::Complete,
            "error" => SyncOutcome::Error,
            "cancelled" => SyncOutcome::Cancelled,
            _ => return None,
        };
        let time = |t: &Option<String>| {
            t.as_deref()
                .and_then(|t| crate::core::overlap::parse_rfc3339_ms(t).ok())
                .and_then(|ms| u64::try_from(ms).ok())
        };
        let started_at = time(&self.created_at)?;
        let finished_at = time(&self.updated_at)?.max(started_at);
        let kind = match self.kind.as_deref() {
            Some("to-sheet") => SyncKind::ToSheet,
            _ => SyncKind::FromSheet,
        };
        let error = (status == SyncOutcome::Error).then(|| {
            let (code, message) = match &self.error {
                Some(ServerJobError::Text(text)) => (None, Some(text.clone())),
                Some(ServerJobError::Detail { code, message }) => (code.clone(), message.clone()),
                None => (None, None),
            };
            SyncError::new(
                code.as_deref()
                    .and_then(ErrorCode::parse)
                    .unwrap_or(ErrorCode::Server),
                message.unwrap_or_else(|| "the sync failed".into()),
            )
        });
        Some(SyncHistoryEntry {
            sync_id: self.sync_id.clone(),
            kind,
            status,
            started_at,
            finished_at,
            duration_ms: finished_at - started_at,
            stats: self.stats,
            message: self.message.clone(),
            error,
            conflict_rows: self.conflict_rows.clone().unwrap_or_default(),
        })
    }
}
