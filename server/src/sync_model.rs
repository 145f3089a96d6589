//! The sync jobs' wire types: kinds, states, counters, conflicting rows and
//! the bodies of the sync routes, and the load the server's figures read.
//! Imports no route and no job runner, so the metrics and the routes can
//! name them without a circle.

use serde::Serialize;
use utoipa::ToSchema;

/// Which way a job copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub enum SyncKind {
    /// Read the sheet into the `customers` collection.
    #[serde(rename = "from-sheet")]
    FromSheet,
    /// Write the `customers` collection to the sheet.
    #[serde(rename = "to-sheet")]
    ToSheet,
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SyncStatus {
    /// Waiting for the user's earlier jobs or for a worker.
    Queued,
    /// Reading the source (progress 0-60).
    Downloading,
    /// Parsing and checking (60-80).
    Processing,
    /// Writing the destination (80-100).
    Saving,
    /// Done.
    Complete,
    /// Failed; see `error`.
    Error,
    /// Cancelled by the user.
    Cancelled,
}

impl SyncStatus {
    /// Whether the job will not change any more.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Complete | Self::Error | Self::Cancelled)
    }
}

/// Counters of a job.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct SyncStats {
    /// Bytes read from or written to the sheet.
    pub bytes: u64,
    /// Rows in the sheet (good and invalid).
    pub rows: u64,
    /// Records created.
    pub inserted: u64,
    /// Records changed.
    pub updated: u64,
    /// Rows equal to their record already.
    pub unchanged: u64,
    /// Rows not applied because the record changed since the last sync.
    pub conflicts: u64,
    /// Broken rows, skipped.
    pub invalid: u64,
}

/// Why a sheet row was not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ConflictReason {
    /// The record changed in the CRM since the row's version (or the last sync).
    Changed,
    /// The record was deleted in the CRM since.
    Deleted,
}

/// A sheet row a from-sheet run did not apply, because the CRM's record
/// moved on since the version the row was based on.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({ "id": "c-0010", "line": 11, "reason": "changed", "version": 2, "updatedBy": "bob", "message": "changed in the CRM by bob since the last sync (version 2; the row is based on version 1)" }))]
pub struct ConflictRow {
    /// The customer's record id.
    pub id: String,
    /// The row's line in the sheet (1 = header).
    pub line: u64,
    /// Why it was not applied.
    pub reason: ConflictReason,
    /// The record's version in the CRM.
    pub version: i64,
    /// Who changed (or deleted) the record last in the CRM.
    pub updated_by: String,
    /// For people.
    pub message: String,
}

/// Jobs not finished yet, for the server's figures.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct JobLoad {
    /// Per user: jobs waiting for their turn (users with none are absent).
    pub queued: std::collections::BTreeMap<String, u64>,
    /// Jobs running now, all users.
    pub running: u64,
}

/// `POST /api/sync` body.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({ "kind": "from-sheet" }))]
pub struct StartSync {
    /// Which way to copy.
    pub kind: SyncKind,
}

/// A queued sync job.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({ "syncId": "4f9a0c2b7e1d3a5c4f9a0c2b7e1d3a5c", "status": "queued", "position": 0 }))]
pub struct SyncStarted {
    /// The job's id.
    pub sync_id: String,
    /// Always `queued`.
    pub status: SyncStatus,
    /// Jobs of this user ahead of it (0 = next or running).
    pub position: u64,
}

/// The state of one sync job.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({ "syncId": "4f9a0c2b7e1d3a5c4f9a0c2b7e1d3a5c", "kind": "from-sheet", "status": "processing", "progress": 64, "message": "Checking rows", "position": 0, "stats": { "bytes": 18220, "rows": 200, "inserted": 0, "updated": 3, "unchanged": 196, "conflicts": 1, "invalid": 0 }, "conflictRows": [{ "id": "c-0010", "line": 11, "reason": "changed", "version": 2, "updatedBy": "bob", "message": "changed in the CRM by bob since the last sync (version 2; the row is based on version 1)" }], "error": null, "createdAt": "2026-01-01T09:00:00Z", "updatedAt": "2026-01-01T09:00:02Z" }))]
pub struct SyncJobStatus {
    /// The job's id.
    pub sync_id: String,
    /// Which way it copies.
    pub kind: SyncKind,
    /// Where it is.
    pub status: SyncStatus,
    /// 0 to 100, never going down.
    #[schema(minimum = 0, maximum = 100)]
    pub progress: u8,
    /// For people.
    pub message: String,
    /// Jobs of this user ahead of it (0 when running or finished).
    pub position: u64,
    /// Counters.
    pub stats: SyncStats,
    /// The sheet rows a from-sheet run did not apply because the record
    /// changed in the CRM since (the first 100; `stats.conflicts` counts all).
    pub conflict_rows: Vec<ConflictRow>,
    /// Why it failed (`status: error`), else `null`.
    #[schema(nullable)]
    pub error: Option<String>,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// RFC 3339 UTC.
    pub updated_at: String,
}

/// This user's recent sync jobs, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SyncJobList {
    /// The jobs.
    pub items: Vec<SyncJobStatus>,
}
