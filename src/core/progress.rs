//! The sync-progress reducer: one state machine for the spreadsheet sync
//! (docs/guide/sync-jobs.md; docs/backend/protocol.md, "Sync jobs").
//!
//! The leader tab feeds [`SyncEvent`]s into [`reduce`] and carries out the
//! [`SyncEffect`]s it returns: the start request, one poll at a time, the
//! cancel request, the single timer, the stored job id, the history log and
//! the broadcast of every new state to the other tabs. Followers feed
//! [`SyncEvent::RemoteState`] and only show what the leader sends.
//!
//! A *run* lasts from the press that starts it to exactly one of
//! `complete`, `error` or `cancelled`, and leaves exactly one
//! [`SyncHistoryEntry`]. Presses while a run is going, or within the
//! cooldown after a start, are folded into at most one follow-up run, which
//! starts when the current one ends and the cooldown has passed.
//!
//! Timer: the web layer keeps one timer. Each [`SyncEffect::SchedulePoll`]
//! replaces the previous one; when it fires, feed [`SyncEvent::PollTick`].
//! The tick is also how the total timeout and a deferred follow-up start are
//! noticed, so the name says "poll" but the timer serves all three.
//!
//! ```no_run
//! use crm_sync::core::progress::{reduce, SyncConfig, SyncEvent, SyncKind, SyncState};
//!
//! let config = SyncConfig::default();
//! let (state, effects) = reduce(
//!     SyncState::default(),
//!     SyncEvent::StartPressed { kind: SyncKind::FromSheet, now: 1_000 },
//!     &config,
//! );
//! // effects: PostStart { run: 1, kind: FromSheet }, Broadcast(..), Notify, SchedulePoll { .. }
//! # let _ = (state, effects);
//! ```

use crate::core::vecmap::VecMap;

use serde::{Deserialize, Serialize};

use crate::core::code::ErrorCode;

/// The message shown while a cancel request is on its way.
const CANCELLING: &str = "Cancelling";

/// Lower bound of the poll interval, whatever the app configures: a zero
/// interval would poll in a tight loop.
const MIN_POLL_MS: u64 = 50;

/// How many locally cancelled starts are remembered, so that their job is
/// cancelled on the server if the start answer still arrives. Cooldown keeps
/// starts rare, so a handful is plenty.
const ORPHANS_KEPT: usize = 8;

/// Which way a sync job copies records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SyncKind {
    /// From the spreadsheet into the CRM (the default of `crm.sync.start()`).
    #[default]
    FromSheet,
    /// From the CRM into the spreadsheet.
    ToSheet,
}

/// Where the sync stands, as `crm.sync.state.phase` shows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncPhase {
    /// No run, or a finished run dismissed.
    #[default]
    Idle,
    /// The start request is on its way; no job id yet.
    Starting,
    /// The server queued the job behind others.
    Queued,
    /// The server reads the sheet (progress 0-60).
    Downloading,
    /// The server parses rows (60-80).
    Processing,
    /// The server writes records (80-100).
    Saving,
    /// The run ended well.
    Complete,
    /// The run failed; `error` says why.
    Error,
    /// The run was cancelled, here or elsewhere.
    Cancelled,
}

impl SyncPhase {
    /// Whether a run ended in this phase (`complete`, `error`, `cancelled`).
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Complete | Self::Error | Self::Cancelled)
    }

    /// Whether a run is going in this phase (`starting` to `saving`).
    pub fn is_running(self) -> bool {
        matches!(
            self,
            Self::Starting | Self::Queued | Self::Downloading | Self::Processing | Self::Saving
        )
    }

    /// The phase a server `status` string stands for; `None` for anything
    /// docs/backend/protocol.md does not list (the caller turns that into `bad_response`).
    pub fn from_server(status: &str) -> Option<Self> {
        match status {
            "queued" => Some(Self::Queued),
            "downloading" => Some(Self::Downloading),
            "processing" => Some(Self::Processing),
            "saving" => Some(Self::Saving),
            "complete" => Some(Self::Complete),
            "error" => Some(Self::Error),
            "cancelled" => Some(Self::Cancelled),
            _ => None,
        }
    }
}

/// How a run ended, as a history entry's `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncOutcome {
    /// Ended well.
    Complete,
    /// Failed.
    Error,
    /// Cancelled.
    Cancelled,
}

impl SyncOutcome {
    /// The terminal phase of this outcome.
    pub fn phase(self) -> SyncPhase {
        match self {
            Self::Complete => SyncPhase::Complete,
            Self::Error => SyncPhase::Error,
            Self::Cancelled => SyncPhase::Cancelled,
        }
    }
}

/// The counters of a job, as the server reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SyncStats {
    /// Bytes read from or written to the sheet.
    pub bytes: u64,
    /// Rows read or written.
    pub rows: u64,
    /// Records created.
    pub inserted: u64,
    /// Records changed.
    pub updated: u64,
    /// Rows equal to their record already (the reference server counts them).
    pub unchanged: u64,
    /// Rows not applied because the record changed since the last sync.
    pub conflicts: u64,
    /// Broken rows, skipped (the reference server counts them).
    pub invalid: u64,
}

/// Why a run failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncError {
    /// The stable code (`sync_not_found`, `timeout`, `network`, `server`,
    /// `unauthorized`, `bad_response`, ...).
    pub code: ErrorCode,
    /// Words for a person.
    pub message: String,
}

impl SyncError {
    /// An error of `code` with `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// The job being followed, as stored in IndexedDB so that a reload or the
/// next leader goes on following it ([`SyncEvent::Resume`]).
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
            error,
            conflict_rows: self.conflict_rows.clone().unwrap_or_default(),
        })
    }
}

/// Settings of the reducer; `sync` of the client's options (docs/guide/sync-jobs.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SyncConfig {
    /// Interval between polls while all goes well (1000).
    pub poll_ms: u64,
    /// A run that has not ended this long after its start ends in `error`
    /// with code `timeout`; the server's job is left alone (120000).
    pub timeout_ms: u64,
    /// One poll without an answer this long counts as a failed poll (10000).
    pub poll_timeout_ms: u64,
    /// Presses within this long after a start are folded into the follow-up
    /// run (3000).
    pub cooldown_ms: u64,
    /// Failed polls double the interval, up to this many times `poll_ms` (8).
    pub max_backoff_factor: u64,
    /// This many failed polls in a row end the run in `error` (5).
    pub max_poll_failures: u32,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            poll_ms: 1_000,
            timeout_ms: 120_000,
            poll_timeout_ms: 10_000,
            cooldown_ms: 3_000,
            max_backoff_factor: 8,
            max_poll_failures: 5,
        }
    }
}

impl SyncConfig {
    fn poll_interval(&self) -> u64 {
        self.poll_ms.max(MIN_POLL_MS)
    }

    /// The wait before the next poll after `failures` failed polls in a row.
    fn poll_delay(&self, failures: u32) -> u64 {
        let base = self.poll_interval();
        if failures == 0 {
            return base;
        }
        let cap = base.saturating_mul(self.max_backoff_factor.max(1));
        let factor = 1u64 << failures.min(16);
        base.saturating_mul(factor).min(cap).max(base)
    }
}

/// The sync state every tab shows (`crm.sync.state`), plus the leader's
/// bookkeeping, which is neither serialised nor sent to other tabs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncState {
    /// Where the sync stands.
    pub phase: SyncPhase,
    /// 0-100; never goes down within a run.
    pub progress: f64,
    /// The server's words for the current step, or ours.
    pub message: Option<String>,
    /// The job being followed, once the server gave one.
    pub sync_id: Option<String>,
    /// The latest counters.
    pub stats: Option<SyncStats>,
    /// Why the run failed, in phase `error`.
    pub error: Option<SyncError>,
    /// When the run started (ms since the epoch).
    pub started_at: Option<u64>,
    /// When the state shown last changed (ms since the epoch).
    pub updated_at: u64,
    #[serde(skip)]
    ledger: RunLedger,
}

/// The leader's bookkeeping of the current run and of the cooldown. Kept out
/// of serde: other tabs only show the state, and a new leader rebuilds this
/// from the stored job ([`SyncEvent::Resume`]).
#[derive(Debug, Clone, Default, PartialEq)]
struct RunLedger {
    /// Number of the latest run started here; matches start answers to runs.
    run: u64,
    /// Whether this tab drives the current run (false for a mirror of the
    /// leader's state).
    driving: bool,
    kind: Option<SyncKind>,
    deadline: u64,
    cooldown_until: u64,
    follow_up: Option<SyncKind>,
    poll_failures: u32,
    poll_in_flight: bool,
    next_poll_at: Option<u64>,
    /// Kept across runs, so that no two polls are closer than `poll_ms`.
    last_poll_at: Option<u64>,
    /// Kept across runs, for the cooldown check of every start.
    last_start_at: Option<u64>,
    cancel_requested: bool,
    /// Runs cancelled before their start was answered: their job, if the
    /// answer still comes, is cancelled on the server.
    orphans: VecMap<u64, ()>,
    /// The wake-up last asked for, so an unchanged one is not asked again.
    scheduled: Option<u64>,
}

impl SyncState {
    /// The follow-up run waiting for the current one (or the cooldown) to
    /// end, if any.
    pub fn follow_up(&self) -> Option<SyncKind> {
        self.ledger.follow_up
    }

    /// Whether this tab drives the current run (polls, times out, records
    /// history), as opposed to showing another tab's state.
    pub fn is_driving(&self) -> bool {
        self.ledger.driving
    }

    /// The kind of the current or last run, when this tab knows it.
    pub fn kind(&self) -> Option<SyncKind> {
        self.ledger.kind
    }

    /// The number of the latest run this tab started (the `run` of
    /// [`SyncEffect::PostStart`]).
    pub fn run(&self) -> u64 {
        self.ledger.run
    }

    /// Until when presses are folded into a follow-up (ms since the epoch).
    pub fn cooldown_until(&self) -> u64 {
        self.ledger.cooldown_until
    }

    /// The part every tab shows, to tell whether anything visible changed.
    fn view(&self) -> SyncView {
        SyncView {
            phase: self.phase,
            progress: self.progress,
            message: self.message.clone(),
            sync_id: self.sync_id.clone(),
            stats: self.stats,
            error: self.error.clone(),
            started_at: self.started_at,
        }
    }
}

/// What a tab shows, without `updatedAt`.
#[derive(Debug, Clone, PartialEq)]
struct SyncView {
    phase: SyncPhase,
    progress: f64,
    message: Option<String>,
    sync_id: Option<String>,
    stats: Option<SyncStats>,
    error: Option<SyncError>,
    started_at: Option<u64>,
}

/// Everything that happens to the sync. `now` is milliseconds since the
/// epoch (`Date.now()`, the same clock in every tab).
#[derive(Debug, Clone, PartialEq)]
pub enum SyncEvent {
    /// `crm.sync.start(kind)` in the leader (followers forward presses).
    StartPressed {
        /// Which way to copy.
        kind: SyncKind,
        /// When.
        now: u64,
    },
    /// `POST /api/sync` answered 202 for run `run`.
    StartAccepted {
        /// The `run` of the [`SyncEffect::PostStart`] answered.
        run: u64,
        /// The job id the server gave.
        sync_id: String,
        /// When.
        now: u64,
    },
    /// `POST /api/sync` failed for good (after the web layer's retries).
    StartFailed {
        /// The `run` of the [`SyncEffect::PostStart`] that failed.
        run: u64,
        /// What went wrong.
        code: ErrorCode,
        /// Words for a person.
        message: String,
        /// When.
        now: u64,
    },
    /// The timer asked for by [`SyncEffect::SchedulePoll`] fired.
    PollTick {
        /// When.
        now: u64,
    },
    /// A poll answered 200 and its body deserialised.
    PollResult {
        /// The job polled (the `sync_id` of the [`SyncEffect::Poll`]).
        sync_id: String,
        /// The body (boxed: it is by far the largest event).
        status: Box<ServerSyncStatus>,
        /// When.
        now: u64,
    },
    /// A poll failed: `network`, `timeout`, `server`, `bad_response` (the
    /// body did not deserialise), `unauthorized`, `sync_not_found`, ...
    PollFailed {
        /// The job polled.
        sync_id: String,
        /// What went wrong.
        code: ErrorCode,
        /// When.
        now: u64,
    },
    /// `crm.sync.cancel()`.
    CancelPressed {
        /// When.
        now: u64,
    },
    /// `DELETE /api/sync/{syncId}` answered 200.
    CancelDone {
        /// The job cancelled.
        sync_id: String,
        /// When.
        now: u64,
    },
    /// `DELETE /api/sync/{syncId}` failed: `conflict` (already finished: the
    /// next poll tells how), `sync_not_found`, or a transient failure (the
    /// run goes on; the user may press cancel again).
    CancelFailed {
        /// The job.
        sync_id: String,
        /// What went wrong.
        code: ErrorCode,
        /// When.
        now: u64,
    },
    /// `crm.sync.dismiss()`.
    Dismiss {
        /// When.
        now: u64,
    },
    /// The leader's state, received by a follower.
    RemoteState {
        /// What the leader shows.
        state: Box<SyncState>,
        /// When it arrived.
        now: u64,
    },
    /// This tab became leader (or reloaded) and finds a stored job to follow.
    Resume {
        /// The stored job.
        job: StoredSyncJob,
        /// When.
        now: u64,
    },
}

impl SyncEvent {
    /// When the event happened.
    pub fn now(&self) -> u64 {
        match self {
            Self::StartPressed { now, .. }
            | Self::StartAccepted { now, .. }
            | Self::StartFailed { now, .. }
            | Self::PollTick { now }
            | Self::PollResult { now, .. }
            | Self::PollFailed { now, .. }
            | Self::CancelPressed { now }
            | Self::CancelDone { now, .. }
            | Self::CancelFailed { now, .. }
            | Self::Dismiss { now }
            | Self::RemoteState { now, .. }
            | Self::Resume { now, .. } => *now,
        }
    }
}

/// What the web layer must do after an event.
#[derive(Debug, Clone, PartialEq)]
pub enum SyncEffect {
    /// `POST /api/sync { kind }` with a fresh `Idempotency-Key`; answer with
    /// [`SyncEvent::StartAccepted`] or [`SyncEvent::StartFailed`] for `run`.
    PostStart {
        /// Matches the answer to this start.
        run: u64,
        /// Which way to copy.
        kind: SyncKind,
    },
    /// The press was folded into the follow-up run: `start()` resolves with
    /// `{ syncId, status: "coalesced" }`.
    Coalesced {
        /// The job currently followed, if any.
        sync_id: Option<String>,
    },
    /// (Re)arm the one timer for `at_ms` (ms since the epoch), replacing the
    /// previous one; when it fires, feed [`SyncEvent::PollTick`].
    SchedulePoll {
        /// When.
        at_ms: u64,
    },
    /// `GET /api/sync/{sync_id}`, aborted after `timeout_ms`; answer with
    /// [`SyncEvent::PollResult`] or [`SyncEvent::PollFailed`].
    Poll {
        /// The job.
        sync_id: String,
        /// Abort the request after this long and report `timeout`.
        timeout_ms: u64,
    },
    /// `DELETE /api/sync/{sync_id}`; answer with [`SyncEvent::CancelDone`]
    /// or [`SyncEvent::CancelFailed`] (unless the run already ended).
    SendCancel {
        /// The job.
        sync_id: String,
    },
    /// Send the new state to the other tabs.
    Broadcast(Box<SyncState>),
    /// Store the followed job (or clear it with `None`).
    StoreJob(Option<StoredSyncJob>),
    /// Append a finished run to the sync log.
    RecordHistory(SyncHistoryEntry),
    /// Tell this tab's subscribers that `state` changed.
    Notify,
}

/// One step of the reducer: the effects so far and what was last shown.
struct Step<'a> {
    now: u64,
    config: &'a SyncConfig,
    effects: Vec<SyncEffect>,
    shown: SyncView,
}

impl Step<'_> {
    /// Stamps and announces `state` if what it shows changed.
    fn publish(&mut self, state: &mut SyncState) {
        let view = state.view();
        if view == self.shown {
            return;
        }
        state.updated_at = self.now;
        self.shown = view;
        self.effects
            .push(SyncEffect::Broadcast(Box::new(state.clone())));
        self.effects.push(SyncEffect::Notify);
    }
}

/// Applies `event` to `state`: the new state and what to do.
///
/// Pure: time comes from the event, nothing is read from the world. Every
/// input is accepted; stale answers (of an earlier run or job) are ignored.
pub fn reduce(
    state: SyncState,
    event: SyncEvent,
    config: &SyncConfig,
) -> (SyncState, Vec<SyncEffect>) {
    state.reduce(event, config)
}

impl SyncState {
    /// Method form of [`reduce`].
    pub fn reduce(mut self, event: SyncEvent, config: &SyncConfig) -> (SyncState, Vec<SyncEffect>) {
        let now = event.now();
        if let SyncEvent::RemoteState { state, .. } = event {
            return self.mirror(*state);
        }
        let mut step = Step {
            now,
            config,
            effects: Vec::new(),
            shown: self.view(),
        };
        self.apply(event, &mut step);
        self.advance(&mut step);
        step.publish(&mut self);
        self.schedule(&mut step);
        (self, step.effects)
    }

    /// A follower shows the leader's state, but never lets a stale message
    /// (an older leader's, or one overtaken by a newer) move a run backwards.
    fn mirror(mut self, remote: SyncState) -> (SyncState, Vec<SyncEffect>) {
        if self.ledger.driving {
            // This tab drives the run: its own state is the authority.
            return (self, Vec::new());
        }
        let same_job = remote.sync_id.is_some() && remote.sync_id == self.sync_id;
        if same_job && self.phase.is_terminal() && remote.phase.is_running() {
            return (self, Vec::new());
        }
        let before = self.view();
        let floor = if same_job && !self.phase.is_terminal() {
            self.progress
        } else {
            0.0
        };
        self.phase = remote.phase;
        self.progress = clamp_progress(remote.progress).unwrap_or(0.0).max(floor);
        self.message = remote.message;
        self.sync_id = remote.sync_id;
        self.stats = remote.stats;
        self.error = remote.error;
        self.started_at = remote.started_at;
        self.updated_at = remote.updated_at;
        let effects = if self.view() == before {
            Vec::new()
        } else {
            vec![SyncEffect::Notify]
        };
        (self, effects)
    }

    fn apply(&mut self, event: SyncEvent, step: &mut Step<'_>) {
        match event {
            SyncEvent::StartPressed { kind, .. } => self.press(kind, step),
            SyncEvent::StartAccepted { run, sync_id, .. } => self.accepted(run, sync_id, step),
            SyncEvent::StartFailed {
                run, code, message, ..
            } => {
                if self.ledger.driving
                    && run == self.ledger.run
                    && self.phase == SyncPhase::Starting
                {
                    self.finish(
                        SyncOutcome::Error,
                        Some(SyncError::new(code, message)),
                        step,
                    );
                }
            }
            // The timer fired: whatever comes next needs a new one.
            SyncEvent::PollTick { .. } => self.ledger.scheduled = None,
            SyncEvent::PollResult {
                sync_id, status, ..
            } => {
                if self.follows(&sync_id) {
                    self.ledger.poll_in_flight = false;
                    self.absorb(*status, step);
                }
            }
            SyncEvent::PollFailed { sync_id, code, .. } => {
                if self.follows(&sync_id) {
                    self.ledger.poll_in_flight = false;
                    self.poll_failed(code, step);
                }
            }
            SyncEvent::CancelPressed { .. } => self.cancel(step),
            SyncEvent::CancelDone { sync_id, .. } => {
                if self.follows(&sync_id) {
                    self.finish(SyncOutcome::Cancelled, None, step);
                }
            }
            SyncEvent::CancelFailed { sync_id, code, .. } => {
                if self.follows(&sync_id) {
                    self.cancel_failed(code, step);
                }
            }
            SyncEvent::Dismiss { .. } => {
                if self.phase.is_terminal() {
                    self.phase = SyncPhase::Idle;
                    self.progress = 0.0;
                    self.message = None;
                    self.sync_id = None;
                    self.stats = None;
                    self.error = None;
                    self.started_at = None;
                }
            }
            SyncEvent::Resume { job, .. } => self.resume(job, step),
            // Handled before `apply`, by `mirror`.
            SyncEvent::RemoteState { .. } => {}
        }
    }

    /// Whether an answer about `sync_id` belongs to the run this tab drives.
    fn follows(&self, sync_id: &str) -> bool {
        self.ledger.driving && self.phase.is_running() && self.sync_id.as_deref() == Some(sync_id)
    }

    fn press(&mut self, kind: SyncKind, step: &mut Step<'_>) {
        let busy = self.phase.is_running();
        if busy || step.now < self.ledger.cooldown_until {
            // The first press's kind is kept: later presses only say "again".
            if self.ledger.follow_up.is_none() {
                self.ledger.follow_up = Some(kind);
            }
            step.effects.push(SyncEffect::Coalesced {
                sync_id: self.sync_id.clone(),
            });
            return;
        }
        self.begin(kind, step);
    }

    fn begin(&mut self, kind: SyncKind, step: &mut Step<'_>) {
        let now = step.now;
        let ledger = &mut self.ledger;
        ledger.run = ledger.run.saturating_add(1);
        ledger.driving = true;
        ledger.kind = Some(kind);
        ledger.deadline = now.saturating_add(step.config.timeout_ms);
        ledger.cooldown_until = now.saturating_add(step.config.cooldown_ms);
        ledger.follow_up = None;
        ledger.poll_failures = 0;
        ledger.poll_in_flight = false;
        ledger.next_poll_at = None;
        ledger.last_start_at = Some(now);
        ledger.cancel_requested = false;
        self.phase = SyncPhase::Starting;
        self.progress = 0.0;
        self.message = None;
        self.sync_id = None;
        self.stats = None;
        self.error = None;
        self.started_at = Some(now);
        step.effects.push(SyncEffect::PostStart {
            run: self.ledger.run,
            kind,
        });
    }

    fn accepted(&mut self, run: u64, sync_id: String, step: &mut Step<'_>) {
        if self.ledger.orphans.remove(&run).is_some() {
            // Cancelled before the server answered: cancel the job it made.
            step.effects.push(SyncEffect::SendCancel { sync_id });
            return;
        }
        if !(self.ledger.driving && run == self.ledger.run && self.phase == SyncPhase::Starting) {
            // A run that timed out while starting: its job is left alone.
            return;
        }
        self.phase = SyncPhase::Queued;
        self.sync_id = Some(sync_id.clone());
        self.ledger.next_poll_at = Some(step.now.saturating_add(step.config.poll_interval()));
        step.effects.push(SyncEffect::StoreJob(Some(StoredSyncJob {
            sync_id,
            kind: self.ledger.kind.unwrap_or_default(),
            started_at: self.started_at.unwrap_or(step.now),
        })));
    }

    /// Takes in a poll's answer: a new phase and progress, or the end.
    fn absorb(&mut self, status: ServerSyncStatus, step: &mut Step<'_>) {
        self.ledger.poll_failures = 0;
        if let Some(id) = &status.sync_id {
            if self.sync_id.as_ref() != Some(id) {
                let message = format!("status of job {id} while following another");
                self.finish(
                    SyncOutcome::Error,
                    Some(SyncError::new(ErrorCode::BadResponse, message)),
                    step,
                );
                return;
            }
        }
        let Some(phase) = status.status.as_deref().and_then(SyncPhase::from_server) else {
            let message = match status.status {
                Some(s) => format!("unknown sync status {s:?}"),
                None => "sync status without a status".to_string(),
            };
            self.finish(
                SyncOutcome::Error,
                Some(SyncError::new(ErrorCode::BadResponse, message)),
                step,
            );
            return;
        };
        if let Some(p) = status.progress.and_then(clamp_progress) {
            self.progress = self.progress.max(p);
        }
        if status.message.is_some() {
            self.message = status.message;
        }
        if status.stats.is_some() {
            self.stats = status.stats;
        }
        match phase {
            SyncPhase::Complete => {
                self.progress = 100.0;
                self.finish(SyncOutcome::Complete, None, step);
            }
            SyncPhase::Cancelled => self.finish(SyncOutcome::Cancelled, None, step),
            SyncPhase::Error => {
                let (code, message) = match status.error {
                    Some(ServerJobError::Text(text)) => (ErrorCode::Server, text),
                    Some(ServerJobError::Detail { code, message }) => (
                        ErrorCode::from_http(500, code.as_deref()),
                        message.unwrap_or_else(|| "the sync job failed".to_string()),
                    ),
                    None => (ErrorCode::Server, "the sync job failed".to_string()),
                };
                self.finish(
                    SyncOutcome::Error,
                    Some(SyncError::new(code, message)),
                    step,
                );
            }
            running => {
                self.phase = running;
                self.ledger.next_poll_at =
                    Some(step.now.saturating_add(step.config.poll_interval()));
            }
        }
    }

    fn poll_failed(&mut self, code: ErrorCode, step: &mut Step<'_>) {
        let fatal = match code {
            ErrorCode::SyncNotFound | ErrorCode::NotFound => Some(SyncError::new(
                ErrorCode::SyncNotFound,
                "the server no longer knows this sync job",
            )),
            ErrorCode::Unauthorized => {
                Some(SyncError::new(ErrorCode::Unauthorized, "the session ended"))
            }
            ErrorCode::Forbidden => Some(SyncError::new(
                ErrorCode::Forbidden,
                "this sync job belongs to someone else",
            )),
            ErrorCode::BadResponse => Some(SyncError::new(
                ErrorCode::BadResponse,
                "the sync status is not of the protocol's shape",
            )),
            _ => None,
        };
        if let Some(error) = fatal {
            self.finish(SyncOutcome::Error, Some(error), step);
            return;
        }
        self.ledger.poll_failures = self.ledger.poll_failures.saturating_add(1);
        if self.ledger.poll_failures >= step.config.max_poll_failures.max(1) {
            // Repeated 5xx says the server is broken; anything else says we
            // cannot reach it.
            let error = if code == ErrorCode::Server {
                SyncError::new(ErrorCode::Server, "the server keeps failing")
            } else {
                SyncError::new(ErrorCode::Network, "the server cannot be reached")
            };
            self.finish(SyncOutcome::Error, Some(error), step);
            return;
        }
        let delay = step.config.poll_delay(self.ledger.poll_failures);
        self.ledger.next_poll_at = Some(step.now.saturating_add(delay));
    }

    fn cancel(&mut self, step: &mut Step<'_>) {
        // Cancel means "no more syncing now": the follow-up goes too.
        self.ledger.follow_up = None;
        if !self.phase.is_running() {
            return;
        }
        match self.sync_id.clone() {
            None => {
                if self.ledger.driving {
                    self.ledger.orphans.insert(self.ledger.run, ());
                    while self.ledger.orphans.len() > ORPHANS_KEPT {
                        self.ledger.orphans.pop_first();
                    }
                    self.finish(SyncOutcome::Cancelled, None, step);
                }
            }
            Some(sync_id) => {
                if !self.ledger.cancel_requested {
                    self.ledger.cancel_requested = true;
                    self.message = Some(CANCELLING.to_string());
                    step.effects.push(SyncEffect::SendCancel { sync_id });
                }
            }
        }
    }

    fn cancel_failed(&mut self, code: ErrorCode, step: &mut Step<'_>) {
        self.ledger.cancel_requested = false;
        match code {
            ErrorCode::SyncNotFound | ErrorCode::NotFound => self.finish(
                SyncOutcome::Error,
                Some(SyncError::new(
                    ErrorCode::SyncNotFound,
                    "the server no longer knows this sync job",
                )),
                step,
            ),
            ErrorCode::Unauthorized => self.finish(
                SyncOutcome::Error,
                Some(SyncError::new(ErrorCode::Unauthorized, "the session ended")),
                step,
            ),
            // `already_finished` and transient failures: keep following; the
            // next poll tells how the job ended.
            _ => {}
        }
    }

    fn resume(&mut self, job: StoredSyncJob, step: &mut Step<'_>) {
        if self.ledger.driving && self.phase.is_running() {
            return;
        }
        let same_job = self.sync_id.as_deref() == Some(job.sync_id.as_str());
        if same_job && self.phase.is_terminal() {
            // The old leader saw it end but did not clear the stored id.
            step.effects.push(SyncEffect::StoreJob(None));
            return;
        }
        if !(same_job && self.phase.is_running()) {
            self.phase = SyncPhase::Queued;
            self.progress = 0.0;
            self.message = None;
            self.stats = None;
        }
        self.error = None;
        self.sync_id = Some(job.sync_id);
        self.started_at = Some(job.started_at);
        let ledger = &mut self.ledger;
        ledger.run = ledger.run.saturating_add(1);
        ledger.driving = true;
        ledger.kind = Some(job.kind);
        // The timeout counts from the job's start, but a resumed run gets at
        // least one poll, so that a job that ended meanwhile shows how.
        let one_poll = step
            .now
            .saturating_add(step.config.poll_interval())
            .saturating_add(step.config.poll_timeout_ms);
        ledger.deadline = job
            .started_at
            .saturating_add(step.config.timeout_ms)
            .max(one_poll);
        ledger.poll_failures = 0;
        ledger.poll_in_flight = false;
        ledger.cancel_requested = false;
        ledger.next_poll_at = Some(step.now);
    }

    /// Ends the run: exactly one terminal phase, one history entry.
    fn finish(&mut self, outcome: SyncOutcome, error: Option<SyncError>, step: &mut Step<'_>) {
        let now = step.now;
        let started_at = self.started_at.unwrap_or(now);
        self.phase = outcome.phase();
        self.error = error.clone();
        if self.message.as_deref() == Some(CANCELLING) {
            // Our own words, not the server's: over once the run is.
            self.message = None;
        }
        let ledger = &mut self.ledger;
        ledger.driving = false;
        ledger.poll_in_flight = false;
        ledger.next_poll_at = None;
        ledger.cancel_requested = false;
        if self.sync_id.is_some() {
            step.effects.push(SyncEffect::StoreJob(None));
        }
        step.effects
            .push(SyncEffect::RecordHistory(SyncHistoryEntry {
                sync_id: self.sync_id.clone(),
                kind: self.ledger.kind.unwrap_or_default(),
                status: outcome,
                started_at,
                finished_at: now,
                duration_ms: now.saturating_sub(started_at),
                stats: self.stats,
                error,
                conflict_rows: Vec::new(),
            }));
        // Shown now, even if a follow-up starts in the same step: every tab
        // sees how the run ended.
        step.publish(self);
    }

    /// What is due at `now`: the total timeout, a poll, a deferred follow-up.
    fn advance(&mut self, step: &mut Step<'_>) {
        let now = step.now;
        if self.ledger.driving && self.phase.is_running() && now >= self.ledger.deadline {
            self.finish(
                SyncOutcome::Error,
                Some(SyncError::new(
                    ErrorCode::Timeout,
                    "the sync did not finish in time",
                )),
                step,
            );
        }
        if self.ledger.driving
            && self.phase.is_running()
            && self.phase != SyncPhase::Starting
            && !self.ledger.poll_in_flight
        {
            if let (Some(at), Some(sync_id)) = (self.ledger.next_poll_at, self.sync_id.clone()) {
                let spaced = self
                    .ledger
                    .last_poll_at
                    .map_or(now, |last| last.saturating_add(step.config.poll_interval()));
                if now >= at && now >= spaced {
                    let left = self.ledger.deadline.saturating_sub(now);
                    self.ledger.poll_in_flight = true;
                    self.ledger.next_poll_at = None;
                    self.ledger.last_poll_at = Some(now);
                    step.effects.push(SyncEffect::Poll {
                        sync_id,
                        timeout_ms: step.config.poll_timeout_ms.min(left).max(1),
                    });
                } else {
                    self.ledger.next_poll_at = Some(at.max(spaced));
                }
            }
        }
        if !self.phase.is_running() && now >= self.ledger.cooldown_until {
            if let Some(kind) = self.ledger.follow_up {
                step.publish(self);
                self.begin(kind, step);
            }
        }
    }

    /// Asks for the one timer at the earliest thing due, if that changed.
    fn schedule(&mut self, step: &mut Step<'_>) {
        let mut next: Option<u64> = None;
        let mut consider = |at: u64| next = Some(next.map_or(at, |n: u64| n.min(at)));
        if self.ledger.driving && self.phase.is_running() {
            consider(self.ledger.deadline);
            if !self.ledger.poll_in_flight {
                if let Some(at) = self.ledger.next_poll_at {
                    consider(at);
                }
            }
        }
        if !self.phase.is_running() && self.ledger.follow_up.is_some() {
            consider(self.ledger.cooldown_until);
        }
        if let Some(at) = next {
            let at = at.max(step.now);
            if self.ledger.scheduled != Some(at) {
                self.ledger.scheduled = Some(at);
                step.effects.push(SyncEffect::SchedulePoll { at_ms: at });
            }
        } else {
            self.ledger.scheduled = None;
        }
    }
}

/// A server's progress as 0-100, or `None` when it says nothing usable.
fn clamp_progress(p: f64) -> Option<f64> {
    if p.is_nan() {
        None
    } else {
        Some(p.clamp(0.0, 100.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fields of `crm.sync.state`, in key order (docs/guide/sync-jobs.md).
    const STATE_KEYS: [&str; 8] = [
        "error",
        "message",
        "phase",
        "progress",
        "startedAt",
        "stats",
        "syncId",
        "updatedAt",
    ];

    /// A leader tab with a simulated clock, remembering every effect.
    struct Tab {
        state: SyncState,
        config: SyncConfig,
    }

    impl Tab {
        fn new() -> Self {
            Self {
                state: SyncState::default(),
                config: SyncConfig::default(),
            }
        }

        fn with(config: SyncConfig) -> Self {
            Self {
                state: SyncState::default(),
                config,
            }
        }

        fn on(&mut self, event: SyncEvent) -> Vec<SyncEffect> {
            let state = std::mem::take(&mut self.state);
            let (state, effects) = reduce(state, event, &self.config);
            self.state = state;
            effects
        }

        fn press(&mut self, now: u64) -> Vec<SyncEffect> {
            self.on(SyncEvent::StartPressed {
                kind: SyncKind::FromSheet,
                now,
            })
        }

        fn accept(&mut self, run: u64, id: &str, now: u64) -> Vec<SyncEffect> {
            self.on(SyncEvent::StartAccepted {
                run,
                sync_id: id.to_string(),
                now,
            })
        }

        fn tick(&mut self, now: u64) -> Vec<SyncEffect> {
            self.on(SyncEvent::PollTick { now })
        }

        fn result(
            &mut self,
            id: &str,
            status: &str,
            progress: Option<f64>,
            now: u64,
        ) -> Vec<SyncEffect> {
            self.on(SyncEvent::PollResult {
                sync_id: id.to_string(),
                status: Box::new(ServerSyncStatus {
                    sync_id: Some(id.to_string()),
                    status: Some(status.to_string()),
                    progress,
                    ..ServerSyncStatus::default()
                }),
                now,
            })
        }

        fn fail(&mut self, id: &str, code: ErrorCode, now: u64) -> Vec<SyncEffect> {
            self.on(SyncEvent::PollFailed {
                sync_id: id.to_string(),
                code,
                now,
            })
        }

        /// Press at 0, accepted as `job-1` at 100, first poll at 1100.
        fn running() -> Self {
            let mut tab = Tab::new();
            tab.press(0);
            tab.accept(1, "job-1", 100);
            let fx = tab.tick(1_100);
            assert!(polls(&fx) == 1);
            tab
        }
    }

    fn polls(fx: &[SyncEffect]) -> usize {
        fx.iter()
            .filter(|e| matches!(e, SyncEffect::Poll { .. }))
            .count()
    }

    fn starts(fx: &[SyncEffect]) -> usize {
        fx.iter()
            .filter(|e| matches!(e, SyncEffect::PostStart { .. }))
            .count()
    }

    fn history(fx: &[SyncEffect]) -> Vec<SyncHistoryEntry> {
        fx.iter()
            .filter_map(|e| match e {
                SyncEffect::RecordHistory(h) => Some(h.clone()),
                _ => None,
            })
            .collect()
    }

    fn scheduled(fx: &[SyncEffect]) -> Option<u64> {
        fx.iter().rev().find_map(|e| match e {
            SyncEffect::SchedulePoll { at_ms } => Some(*at_ms),
            _ => None,
        })
    }

    #[test]
    fn a_press_posts_a_start_and_the_first_poll_waits_one_interval() {
        let mut tab = Tab::new();
        let fx = tab.press(0);
        assert_eq!(
            fx[0],
            SyncEffect::PostStart {
                run: 1,
                kind: SyncKind::FromSheet
            }
        );
        assert!(fx
            .iter()
            .any(|e| matches!(e, SyncEffect::Broadcast(s) if s.phase == SyncPhase::Starting)));
        assert!(fx.contains(&SyncEffect::Notify));
        assert_eq!(tab.state.started_at, Some(0));

        let fx = tab.accept(1, "job-1", 100);
        assert_eq!(tab.state.phase, SyncPhase::Queued);
        assert!(fx.contains(&SyncEffect::StoreJob(Some(StoredSyncJob {
            sync_id: "job-1".into(),
            kind: SyncKind::FromSheet,
            started_at: 0,
        }))));
        assert_eq!(scheduled(&fx), Some(1_100));

        assert_eq!(polls(&tab.tick(1_099)), 0);
        let fx = tab.tick(1_100);
        assert_eq!(
            fx[0],
            SyncEffect::Poll {
                sync_id: "job-1".into(),
                timeout_ms: 10_000
            }
        );
    }

    #[test]
    fn progress_is_clamped_and_never_goes_down() {
        let mut tab = Tab::running();
        tab.result("job-1", "downloading", Some(50.0), 1_200);
        assert_eq!(tab.state.progress, 50.0);
        for (i, p) in [
            Some(30.0),
            Some(f64::NAN),
            Some(-5.0),
            None,
            Some(f64::NEG_INFINITY),
        ]
        .into_iter()
        .enumerate()
        {
            let now = 2_200 + 1_000 * i as u64;
            assert_eq!(polls(&tab.tick(now)), 1);
            tab.result("job-1", "processing", p, now);
            assert_eq!(tab.state.progress, 50.0, "after {p:?}");
        }
        tab.tick(9_000);
        tab.result("job-1", "saving", Some(250.0), 9_010);
        assert_eq!(tab.state.progress, 100.0);
        assert_eq!(tab.state.phase, SyncPhase::Saving);
    }

    #[test]
    fn complete_ends_the_run_with_one_history_entry() {
        let mut tab = Tab::running();
        tab.on(SyncEvent::PollResult {
            sync_id: "job-1".into(),
            status: Box::new(ServerSyncStatus {
                status: Some("complete".into()),
                progress: Some(97.0),
                stats: Some(SyncStats {
                    rows: 10,
                    ..SyncStats::default()
                }),
                ..ServerSyncStatus::default()
            }),
            now: 1_500,
        });
        let fx = tab.on(SyncEvent::PollResult {
            sync_id: "job-1".into(),
            status: Box::new(ServerSyncStatus {
                status: Some("complete".into()),
                ..ServerSyncStatus::default()
            }),
            now: 1_600,
        });
        // The second answer is stale: the run is over.
        assert!(fx.is_empty());
        assert_eq!(tab.state.phase, SyncPhase::Complete);
        assert_eq!(tab.state.progress, 100.0);
        assert!(!tab.state.is_driving());
    }

    #[test]
    fn completion_records_history_and_clears_the_stored_job() {
        let mut tab = Tab::running();
        let fx = tab.result("job-1", "complete", Some(100.0), 1_500);
        assert!(fx.contains(&SyncEffect::StoreJob(None)));
        assert_eq!(
            history(&fx),
            vec![SyncHistoryEntry {
                sync_id: Some("job-1".into()),
                kind: SyncKind::FromSheet,
                status: SyncOutcome::Complete,
                started_at: 0,
                finished_at: 1_500,
                duration_ms: 1_500,
                stats: None,
                error: None,
                conflict_rows: Vec::new(),
            }]
        );
        assert!(fx
            .iter()
            .any(|e| matches!(e, SyncEffect::Broadcast(s) if s.phase == SyncPhase::Complete)));
        // Nothing more to wake up for.
        assert_eq!(scheduled(&fx), None);
    }

    #[test]
    fn a_status_not_of_the_protocols_shape_is_bad_response() {
        for status in [Some("exploded"), None] {
            let mut tab = Tab::running();
            let fx = tab.on(SyncEvent::PollResult {
                sync_id: "job-1".into(),
                status: Box::new(ServerSyncStatus {
                    status: status.map(str::to_string),
                    ..ServerSyncStatus::default()
                }),
                now: 1_200,
            });
            assert_eq!(tab.state.phase, SyncPhase::Error);
            assert_eq!(
                tab.state.error.as_ref().map(|e| e.code),
                Some(ErrorCode::BadResponse)
            );
            assert_eq!(history(&fx).len(), 1);
        }
        // Another job's status in the answer for ours.
        let mut tab = Tab::running();
        tab.on(SyncEvent::PollResult {
            sync_id: "job-1".into(),
            status: Box::new(ServerSyncStatus {
                sync_id: Some("job-9".into()),
                status: Some("saving".into()),
                ..ServerSyncStatus::default()
            }),
            now: 1_200,
        });
        assert_eq!(
            tab.state.error.map(|e| e.code),
            Some(ErrorCode::BadResponse)
        );
        // A body that did not deserialise, as the web layer reports it.
        let mut tab = Tab::running();
        tab.fail("job-1", ErrorCode::BadResponse, 1_200);
        assert_eq!(
            tab.state.error.map(|e| e.code),
            Some(ErrorCode::BadResponse)
        );
    }

    #[test]
    fn a_failed_job_reports_the_servers_words() {
        let mut tab = Tab::running();
        tab.on(SyncEvent::PollResult {
            sync_id: "job-1".into(),
            status: Box::new(ServerSyncStatus {
                status: Some("error".into()),
                error: Some(ServerJobError::Text("sheet unreachable".into())),
                ..ServerSyncStatus::default()
            }),
            now: 1_200,
        });
        assert_eq!(
            tab.state.error,
            Some(SyncError::new(ErrorCode::Server, "sheet unreachable"))
        );
        let mut tab = Tab::running();
        tab.on(SyncEvent::PollResult {
            sync_id: "job-1".into(),
            status: Box::new(ServerSyncStatus {
                status: Some("error".into()),
                error: Some(ServerJobError::Detail {
                    code: Some("unauthorized".into()),
                    message: None,
                }),
                ..ServerSyncStatus::default()
            }),
            now: 1_200,
        });
        assert_eq!(
            tab.state.error.map(|e| e.code),
            Some(ErrorCode::Unauthorized)
        );
    }

    #[test]
    fn failed_polls_back_off_doubling_up_to_a_cap_and_recover() {
        let mut tab = Tab::with(SyncConfig {
            max_poll_failures: 10,
            ..SyncConfig::default()
        });
        tab.press(0);
        tab.accept(1, "job-1", 0);
        let mut now = 1_000;
        assert_eq!(polls(&tab.tick(now)), 1);
        let mut delays = Vec::new();
        for _ in 0..5 {
            let fx = tab.fail("job-1", ErrorCode::Network, now);
            let at = scheduled(&fx).unwrap();
            delays.push(at - now);
            now = at;
            assert_eq!(polls(&tab.tick(now)), 1);
        }
        assert_eq!(delays, vec![2_000, 4_000, 8_000, 8_000, 8_000]);
        let fx = tab.result("job-1", "downloading", Some(10.0), now);
        assert_eq!(scheduled(&fx), Some(now + 1_000));
    }

    #[test]
    fn too_many_failed_polls_end_in_network_error() {
        let mut tab = Tab::running();
        let mut now = 1_100;
        for i in 1..=5 {
            let fx = tab.fail("job-1", ErrorCode::Timeout, now);
            if i < 5 {
                now = scheduled(&fx).unwrap();
                assert_eq!(polls(&tab.tick(now)), 1);
            } else {
                assert_eq!(history(&fx).len(), 1);
            }
        }
        assert_eq!(tab.state.phase, SyncPhase::Error);
        assert_eq!(tab.state.error.map(|e| e.code), Some(ErrorCode::Network));

        // All 5xx: the server is named.
        let mut tab = Tab::running();
        let mut now = 1_100;
        for _ in 0..5 {
            let fx = tab.fail("job-1", ErrorCode::Server, now);
            if let Some(at) = scheduled(&fx) {
                now = at;
                tab.tick(now);
            }
        }
        assert_eq!(tab.state.error.map(|e| e.code), Some(ErrorCode::Server));
    }

    #[test]
    fn the_total_timeout_ends_the_run_and_leaves_the_job_alone() {
        let mut tab = Tab::running();
        let mut now = 1_100;
        let mut fx = tab.result("job-1", "queued", None, now + 5);
        loop {
            let at = scheduled(&fx).unwrap();
            assert!(at <= 120_000);
            now = at;
            fx = tab.tick(now);
            if tab.state.phase.is_terminal() {
                break;
            }
            fx.extend(tab.result("job-1", "downloading", Some(1.0), now + 5));
        }
        assert_eq!(now, 120_000);
        assert_eq!(
            tab.state.error.as_ref().map(|e| e.code),
            Some(ErrorCode::Timeout)
        );
        assert!(!fx
            .iter()
            .any(|e| matches!(e, SyncEffect::SendCancel { .. })));
        assert_eq!(history(&fx)[0].duration_ms, 120_000);
    }

    #[test]
    fn a_poll_never_outlives_the_total_timeout() {
        let mut tab = Tab::new();
        tab.press(0);
        tab.accept(1, "job-1", 115_000);
        let fx = tab.tick(116_000);
        assert_eq!(
            fx[0],
            SyncEffect::Poll {
                sync_id: "job-1".into(),
                timeout_ms: 4_000
            }
        );
    }

    #[test]
    fn a_start_that_times_out_leaves_its_late_job_alone() {
        let mut tab = Tab::new();
        let fx = tab.press(0);
        assert_eq!(scheduled(&fx), Some(120_000));
        tab.tick(120_000);
        assert_eq!(
            tab.state.error.as_ref().map(|e| e.code),
            Some(ErrorCode::Timeout)
        );
        let fx = tab.accept(1, "job-1", 121_000);
        assert!(fx.is_empty());
        assert_eq!(tab.state.phase, SyncPhase::Error);
    }

    #[test]
    fn a_failed_start_ends_the_run() {
        let mut tab = Tab::new();
        tab.press(0);
        let fx = tab.on(SyncEvent::StartFailed {
            run: 1,
            code: ErrorCode::Network,
            message: "offline".into(),
            now: 300,
        });
        assert_eq!(tab.state.phase, SyncPhase::Error);
        let h = history(&fx);
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].sync_id, None);
        assert!(!fx.contains(&SyncEffect::StoreJob(None)));
    }

    #[test]
    fn presses_within_the_cooldown_start_one_follow_up_when_it_ends() {
        let mut tab = Tab::running();
        tab.result("job-1", "complete", None, 1_200);
        let fx = tab.press(2_000);
        assert_eq!(
            fx,
            vec![
                SyncEffect::Coalesced {
                    sync_id: Some("job-1".into())
                },
                SyncEffect::SchedulePoll { at_ms: 3_000 },
            ]
        );
        assert_eq!(starts(&tab.press(2_500)), 0);
        assert_eq!(starts(&tab.tick(2_999)), 0);
        let fx = tab.tick(3_000);
        assert_eq!(
            fx[0],
            SyncEffect::PostStart {
                run: 2,
                kind: SyncKind::FromSheet
            }
        );
        assert_eq!(tab.state.phase, SyncPhase::Starting);
        assert_eq!(tab.state.follow_up(), None);
    }

    #[test]
    fn presses_while_a_job_runs_fold_into_one_follow_up() {
        let mut tab = Tab::running();
        for now in [4_000, 4_100, 4_200] {
            let fx = tab.press(now);
            assert_eq!(
                fx,
                vec![SyncEffect::Coalesced {
                    sync_id: Some("job-1".into())
                }]
            );
        }
        let fx = tab.result("job-1", "complete", None, 5_000);
        assert_eq!(history(&fx).len(), 1);
        assert_eq!(starts(&fx), 1);
        // The terminal state is broadcast before the follow-up's start.
        let phases: Vec<SyncPhase> = fx
            .iter()
            .filter_map(|e| match e {
                SyncEffect::Broadcast(s) => Some(s.phase),
                _ => None,
            })
            .collect();
        assert_eq!(phases, vec![SyncPhase::Complete, SyncPhase::Starting]);
        tab.accept(2, "job-2", 5_100);
        tab.tick(6_100);
        let fx = tab.result("job-2", "complete", None, 6_200);
        assert_eq!(starts(&fx), 0, "no second follow-up without a new press");
        assert_eq!(tab.state.phase, SyncPhase::Complete);
    }

    #[test]
    fn cancel_before_the_job_exists_is_local_and_cancels_the_late_job() {
        let mut tab = Tab::new();
        tab.press(0);
        let fx = tab.on(SyncEvent::CancelPressed { now: 50 });
        assert_eq!(tab.state.phase, SyncPhase::Cancelled);
        assert_eq!(history(&fx)[0].status, SyncOutcome::Cancelled);
        let fx = tab.accept(1, "job-1", 80);
        assert_eq!(
            fx,
            vec![SyncEffect::SendCancel {
                sync_id: "job-1".into()
            }]
        );
        assert_eq!(tab.state.phase, SyncPhase::Cancelled);
    }

    #[test]
    fn cancel_with_a_job_asks_the_server_once() {
        let mut tab = Tab::running();
        tab.press(1_150); // a follow-up, which cancel drops
        let fx = tab.on(SyncEvent::CancelPressed { now: 1_200 });
        assert!(fx.contains(&SyncEffect::SendCancel {
            sync_id: "job-1".into()
        }));
        let fx = tab.on(SyncEvent::CancelPressed { now: 1_210 });
        assert!(!fx
            .iter()
            .any(|e| matches!(e, SyncEffect::SendCancel { .. })));
        let fx = tab.on(SyncEvent::CancelDone {
            sync_id: "job-1".into(),
            now: 1_300,
        });
        assert_eq!(tab.state.phase, SyncPhase::Cancelled);
        assert_eq!(history(&fx).len(), 1);
        assert_eq!(starts(&fx), 0);
        assert!(tab
            .on(SyncEvent::CancelDone {
                sync_id: "job-1".into(),
                now: 1_400
            })
            .is_empty());
    }

    #[test]
    fn cancel_of_a_finished_job_keeps_following_until_the_poll_says_how() {
        let mut tab = Tab::running();
        tab.result("job-1", "saving", Some(90.0), 1_150);
        tab.on(SyncEvent::CancelPressed { now: 1_200 });
        tab.on(SyncEvent::CancelFailed {
            sync_id: "job-1".into(),
            code: ErrorCode::Conflict,
            now: 1_250,
        });
        assert_eq!(tab.state.phase, SyncPhase::Saving);
        assert_eq!(polls(&tab.tick(2_150)), 1);
        tab.result("job-1", "complete", None, 2_200);
        assert_eq!(tab.state.phase, SyncPhase::Complete);
    }

    #[test]
    fn cancel_when_nothing_runs_changes_nothing() {
        let mut tab = Tab::new();
        assert!(tab.on(SyncEvent::CancelPressed { now: 5 }).is_empty());
        assert_eq!(tab.state.phase, SyncPhase::Idle);
    }

    #[test]
    fn a_finished_job_from_the_server_is_a_history_line() {
        let job = ServerSyncStatus {
            sync_id: Some("s-1".into()),
            kind: Some("to-sheet".into()),
            status: Some("error".into()),
            error: Some(ServerJobError::Text("sheet unreachable".into())),
            created_at: Some("2026-12-04T10:00:00Z".into()),
            updated_at: Some("2026-12-04T10:00:03Z".into()),
            ..ServerSyncStatus::default()
        };
        let line = job.as_history().unwrap();
        assert_eq!(line.sync_id.as_deref(), Some("s-1"));
        assert_eq!(
            (line.kind, line.status),
            (SyncKind::ToSheet, SyncOutcome::Error)
        );
        assert_eq!(line.duration_ms, 3_000);
        assert_eq!(line.error.unwrap().message, "sheet unreachable");
        // Still going, or without readable times: not a line.
        for status in ["queued", "downloading"] {
            let going = ServerSyncStatus {
                status: Some(status.into()),
                ..job.clone()
            };
            assert!(going.as_history().is_none());
        }
        let undated = ServerSyncStatus {
            updated_at: Some("yesterday".into()),
            ..job
        };
        assert!(undated.as_history().is_none());
    }

    #[test]
    fn a_finished_jobs_conflicting_rows_are_in_its_history_line() {
        let job: ServerSyncStatus = serde_json::from_value(serde_json::json!({
            "syncId": "s-2", "kind": "from-sheet", "status": "complete",
            "stats": { "conflicts": 1 },
            "conflictRows": [{ "id": "c-0010", "line": 11, "reason": "changed",
                "version": 2, "updatedBy": "bob", "message": "changed by bob" }],
            "createdAt": "2026-12-04T10:00:00Z", "updatedAt": "2026-12-04T10:00:01Z"
        }))
        .unwrap();
        let line = job.as_history().unwrap();
        assert_eq!(
            line.conflict_rows,
            [SyncConflictRow {
                id: "c-0010".into(),
                line: Some(11),
                reason: "changed".into(),
                version: Some(2),
                updated_by: Some("bob".into()),
                message: "changed by bob".into(),
            }]
        );
        // A line kept before rows were listed reads as none.
        let mut old = serde_json::to_value(&line).unwrap();
        old.as_object_mut().unwrap().remove("conflictRows");
        let old: SyncHistoryEntry = serde_json::from_value(old).unwrap();
        assert!(old.conflict_rows.is_empty());
    }

    #[test]
    fn sync_not_found_while_following_is_an_error_and_a_new_start_works() {
        let mut tab = Tab::running();
        let fx = tab.fail("job-1", ErrorCode::SyncNotFound, 1_200);
        assert_eq!(
            tab.state.error.as_ref().map(|e| e.code),
            Some(ErrorCode::SyncNotFound)
        );
        assert_eq!(history(&fx).len(), 1);
        let fx = tab.press(3_000);
        assert_eq!(
            fx[0],
            SyncEffect::PostStart {
                run: 2,
                kind: SyncKind::FromSheet
            }
        );
        assert_eq!(tab.state.error, None);
        assert_eq!(tab.state.progress, 0.0);
    }

    #[test]
    fn unauthorized_ends_the_run() {
        let mut tab = Tab::running();
        tab.fail("job-1", ErrorCode::Unauthorized, 1_200);
        assert_eq!(
            tab.state.error.map(|e| e.code),
            Some(ErrorCode::Unauthorized)
        );
    }

    #[test]
    fn dismiss_returns_to_idle_only_from_an_end() {
        let mut tab = Tab::running();
        tab.on(SyncEvent::Dismiss { now: 1_150 });
        assert_eq!(tab.state.phase, SyncPhase::Queued);
        tab.result("job-1", "complete", None, 1_200);
        let fx = tab.on(SyncEvent::Dismiss { now: 1_300 });
        assert_eq!(tab.state.phase, SyncPhase::Idle);
        assert_eq!(tab.state.sync_id, None);
        assert_eq!(tab.state.updated_at, 1_300);
        assert!(fx.iter().any(|e| matches!(e, SyncEffect::Broadcast(_))));
    }

    #[test]
    fn stale_answers_of_another_job_are_ignored() {
        let mut tab = Tab::running();
        assert!(tab.result("job-0", "complete", None, 1_200).is_empty());
        assert!(tab.fail("job-0", ErrorCode::SyncNotFound, 1_200).is_empty());
        assert!(tab
            .on(SyncEvent::StartFailed {
                run: 7,
                code: ErrorCode::Server,
                message: String::new(),
                now: 1_200
            })
            .is_empty());
        assert_eq!(tab.state.phase, SyncPhase::Queued);
    }

    #[test]
    fn followers_mirror_the_leader_without_going_backwards() {
        let mut leader = Tab::running();
        let mut follower = Tab::new();
        let shared = |fx: &[SyncEffect]| {
            fx.iter()
                .find_map(|e| match e {
                    SyncEffect::Broadcast(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap()
        };
        let at_60 = shared(&leader.result("job-1", "processing", Some(60.0), 1_200));
        leader.tick(2_200);
        let at_70 = shared(&leader.result("job-1", "processing", Some(70.0), 2_300));
        let done = shared(&leader.result("job-1", "complete", None, 2_400));

        let fx = follower.on(SyncEvent::RemoteState {
            state: at_70.clone(),
            now: 2_301,
        });
        assert_eq!(fx, vec![SyncEffect::Notify]);
        assert_eq!(follower.state.progress, 70.0);
        assert!(!follower.state.is_driving());
        // An overtaken message does not lower progress.
        follower.on(SyncEvent::RemoteState {
            state: at_60,
            now: 2_302,
        });
        assert_eq!(follower.state.progress, 70.0);
        follower.on(SyncEvent::RemoteState {
            state: done,
            now: 2_401,
        });
        assert_eq!(follower.state.phase, SyncPhase::Complete);
        assert!(follower
            .on(SyncEvent::RemoteState {
                state: at_70,
                now: 2_402
            })
            .is_empty());
        assert_eq!(follower.state.phase, SyncPhase::Complete);
        // Its own ticks do nothing: it does not poll.
        assert!(follower.tick(9_000).is_empty());
    }

    #[test]
    fn a_new_leader_resumes_the_stored_job() {
        let mut tab = Tab::new();
        let job = StoredSyncJob {
            sync_id: "job-1".into(),
            kind: SyncKind::ToSheet,
            started_at: 10_000,
        };
        let fx = tab.on(SyncEvent::Resume {
            job: job.clone(),
            now: 20_000,
        });
        assert_eq!(
            fx[0],
            SyncEffect::Poll {
                sync_id: "job-1".into(),
                timeout_ms: 10_000
            }
        );
        assert!(tab.state.is_driving());
        assert_eq!(tab.state.kind(), Some(SyncKind::ToSheet));
        let fx = tab.result("job-1", "complete", None, 20_100);
        let h = history(&fx);
        assert_eq!((h[0].started_at, h[0].duration_ms), (10_000, 10_100));
        // The same job again (the old leader had not cleared it): no second run.
        let fx = tab.on(SyncEvent::Resume { job, now: 20_200 });
        assert_eq!(fx, vec![SyncEffect::StoreJob(None)]);
    }

    #[test]
    fn no_two_polls_closer_than_the_interval_even_across_runs() {
        let mut tab = Tab::running(); // polled at 1_100
        tab.fail("job-1", ErrorCode::SyncNotFound, 1_150);
        let job = StoredSyncJob {
            sync_id: "job-2".into(),
            kind: SyncKind::FromSheet,
            started_at: 1_000,
        };
        let fx = tab.on(SyncEvent::Resume { job, now: 1_200 });
        assert_eq!(polls(&fx), 0);
        assert_eq!(scheduled(&fx), Some(2_100));
        assert_eq!(polls(&tab.tick(2_100)), 1);
    }

    #[test]
    fn a_resumed_job_past_its_timeout_gets_one_poll() {
        let mut tab = Tab::new();
        let job = StoredSyncJob {
            sync_id: "job-1".into(),
            kind: SyncKind::FromSheet,
            started_at: 0,
        };
        let fx = tab.on(SyncEvent::Resume { job, now: 500_000 });
        assert_eq!(polls(&fx), 1);
        tab.result("job-1", "complete", None, 500_050);
        assert_eq!(tab.state.phase, SyncPhase::Complete);
    }

    #[test]
    fn the_state_serialises_as_api_md_says() {
        let mut tab = Tab::running();
        tab.result("job-1", "processing", Some(71.0), 1_200);
        let json = serde_json::to_value(&tab.state).unwrap();
        let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
        assert_eq!(keys, STATE_KEYS.to_vec());
        assert_eq!(json["phase"], "processing");
        let back: SyncState = serde_json::from_value(json).unwrap();
        assert_eq!(back.progress, 71.0);
        assert!(!back.is_driving());
    }

    #[test]
    fn the_server_status_deserialises_leniently() {
        let status: ServerSyncStatus = serde_json::from_str(
            r#"{ "syncId": "s1", "kind": "from-sheet", "status": "processing", "progress": 71,
                 "message": "Parsing rows", "position": 0,
                 "stats": { "bytes": 524288, "rows": 1523, "inserted": 10, "updated": 40, "conflicts": 2 },
                 "error": null, "createdAt": "x", "updatedAt": "y", "extra": [1] }"#,
        )
        .unwrap();
        assert_eq!(status.progress, Some(71.0));
        assert_eq!(status.stats.map(|s| s.rows), Some(1523));
        let bare: ServerSyncStatus = serde_json::from_str("{}").unwrap();
        assert_eq!(bare, ServerSyncStatus::default());
        let detail: ServerSyncStatus =
            serde_json::from_str(r#"{ "status": "error", "error": { "message": "no sheet" } }"#)
                .unwrap();
        assert!(matches!(detail.error, Some(ServerJobError::Detail { .. })));
        assert!(serde_json::from_str::<ServerSyncStatus>(r#"{ "progress": "lots" }"#).is_err());
    }

    #[test]
    fn the_state_serialises_only_the_api_fields() {
        let json = serde_json::to_value(SyncState::default()).unwrap();
        let mut keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        keys.sort_unstable();
        assert_eq!(keys, STATE_KEYS);
    }

    #[test]
    fn the_history_entry_serialises_in_camel_case() {
        let entry = SyncHistoryEntry {
            sync_id: Some("s".into()),
            kind: SyncKind::ToSheet,
            status: SyncOutcome::Error,
            started_at: 1,
            finished_at: 3,
            duration_ms: 2,
            stats: None,
            error: Some(SyncError::new(ErrorCode::SyncNotFound, "gone")),
            conflict_rows: Vec::new(),
        };
        let json = serde_json::to_value(&entry).unwrap();
        assert_eq!(json["kind"], "to-sheet");
        assert_eq!(json["durationMs"], 2);
        assert_eq!(json["error"]["code"], "sync_not_found");
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// What the world does next, in a simulated leader tab.
    #[derive(Debug, Clone)]
    enum Act {
        Press(bool),
        AnswerStart(Option<u8>),
        AnswerPoll(u8, Option<f64>),
        FailPoll(u8),
        StaleAnswer,
        Cancel,
        AnswerCancel(Option<u8>),
        Dismiss,
        Wait,
    }

    const STATUSES: [&str; 9] = [
        "queued",
        "downloading",
        "processing",
        "saving",
        "complete",
        "error",
        "cancelled",
        "exploded",
        "queued",
    ];
    const FAILURES: [ErrorCode; 7] = [
        ErrorCode::Network,
        ErrorCode::Timeout,
        ErrorCode::Server,
        ErrorCode::BadResponse,
        ErrorCode::Unauthorized,
        ErrorCode::SyncNotFound,
        ErrorCode::Network,
    ];

    fn progress() -> impl Strategy<Value = Option<f64>> {
        prop_oneof![
            Just(None),
            Just(Some(f64::NAN)),
            Just(Some(f64::INFINITY)),
            Just(Some(f64::NEG_INFINITY)),
            (-50.0f64..150.0).prop_map(Some),
        ]
    }

    fn act() -> impl Strategy<Value = Act> {
        prop_oneof![
            3 => any::<bool>().prop_map(Act::Press),
            3 => prop::option::of(0u8..7).prop_map(Act::AnswerStart),
            6 => (0u8..9, progress()).prop_map(|(s, p)| Act::AnswerPoll(s, p)),
            2 => (0u8..7).prop_map(Act::FailPoll),
            1 => Just(Act::StaleAnswer),
            1 => Just(Act::Cancel),
            1 => prop::option::of(0u8..7).prop_map(Act::AnswerCancel),
            1 => Just(Act::Dismiss),
            2 => Just(Act::Wait),
        ]
    }

    fn config() -> impl Strategy<Value = SyncConfig> {
        (200u64..2_000, 5_000u64..60_000, 0u64..5_000, 1u32..6).prop_map(
            |(poll_ms, timeout_ms, cooldown_ms, max_poll_failures)| SyncConfig {
                poll_ms,
                timeout_ms,
                poll_timeout_ms: poll_ms * 3,
                cooldown_ms,
                max_backoff_factor: 8,
                max_poll_failures,
            },
        )
    }

    /// The web layer of one leader tab, with a simulated clock and a log of
    /// what the reducer asked for, checked as it goes.
    #[derive(Default)]
    struct World {
        state: SyncState,
        config: SyncConfig,
        now: u64,
        timer: Option<u64>,
        starts: Vec<u64>,
        poll: Option<String>,
        cancel: Option<String>,
        jobs: u64,
        presses: u64,
        // What was observed.
        post_times: Vec<u64>,
        poll_times: Vec<u64>,
        histories: Vec<SyncHistoryEntry>,
        runs_begun: u64,
        follow_ups: u64,
        presses_at_last_follow_up: Option<u64>,
        run_floor: f64,
    }

    impl World {
        fn feed(&mut self, event: SyncEvent) -> Result<(), TestCaseError> {
            let is_press = matches!(event, SyncEvent::StartPressed { .. });
            let now = event.now();
            let state = std::mem::take(&mut self.state);
            let (state, effects) = reduce(state, event, &self.config);
            self.state = state;
            let mut terminal_broadcasts = 0;
            let mut recorded = 0;
            for effect in effects {
                match effect {
                    SyncEffect::PostStart { run, .. } => {
                        if let Some(last) = self.post_times.last() {
                            prop_assert!(now - last >= self.config.cooldown_ms, "cooldown broken");
                        }
                        prop_assert_eq!(
                            self.runs_begun,
                            self.histories.len() as u64,
                            "two runs at once"
                        );
                        self.post_times.push(now);
                        self.runs_begun += 1;
                        self.starts.push(run);
                        self.run_floor = 0.0;
                        if !is_press {
                            // A follow-up: it needs a press since the last one.
                            self.follow_ups += 1;
                            prop_assert!(
                                self.presses_at_last_follow_up != Some(self.presses),
                                "two follow-ups from the same presses"
                            );
                            self.presses_at_last_follow_up = Some(self.presses);
                        }
                    }
                    SyncEffect::Poll {
                        sync_id,
                        timeout_ms,
                    } => {
                        // A poll of an ended run may still be out (its answer
                        // is stale); two of one job at once never.
                        prop_assert!(self.poll.as_ref() != Some(&sync_id), "two polls in flight");
                        if let Some(last) = self.poll_times.last() {
                            prop_assert!(
                                now - last >= self.config.poll_ms,
                                "polls {} and {} too close",
                                last,
                                now
                            );
                        }
                        prop_assert!(timeout_ms >= 1 && timeout_ms <= self.config.poll_timeout_ms);
                        self.poll_times.push(now);
                        self.poll = Some(sync_id);
                    }
                    SyncEffect::SendCancel { sync_id } => self.cancel = Some(sync_id),
                    SyncEffect::SchedulePoll { at_ms } => {
                        prop_assert!(at_ms >= now);
                        self.timer = Some(at_ms);
                    }
                    SyncEffect::Broadcast(shown) => {
                        prop_assert!(shown.progress.is_finite());
                        prop_assert!((0.0..=100.0).contains(&shown.progress));
                        if shown.phase.is_running() || shown.phase.is_terminal() {
                            prop_assert!(shown.progress >= self.run_floor, "progress went down");
                            self.run_floor = shown.progress;
                        }
                        if shown.phase.is_terminal() {
                            terminal_broadcasts += 1;
                        }
                    }
                    SyncEffect::RecordHistory(entry) => {
                        prop_assert!(
                            entry.duration_ms <= self.config.timeout_ms,
                            "run outlived the timeout"
                        );
                        recorded += 1;
                        self.histories.push(entry);
                        prop_assert_eq!(
                            self.runs_begun,
                            self.histories.len() as u64,
                            "a run ended twice"
                        );
                    }
                    SyncEffect::Coalesced { .. } | SyncEffect::StoreJob(_) | SyncEffect::Notify => {
                    }
                }
            }
            prop_assert_eq!(recorded, terminal_broadcasts, "every end is shown once");
            if self.state.is_driving() && self.state.phase.is_running() {
                let started = self.state.started_at.unwrap_or(now);
                prop_assert!(
                    now < started + self.config.timeout_ms,
                    "a run outlived the timeout"
                );
            }
            Ok(())
        }

        /// Lets time pass, firing the timer on time.
        fn wait(&mut self, until: u64) -> Result<(), TestCaseError> {
            while let Some(at) = self.timer.filter(|at| *at <= until) {
                self.timer = None;
                self.now = self.now.max(at);
                self.feed(SyncEvent::PollTick { now: self.now })?;
            }
            self.now = self.now.max(until);
            Ok(())
        }

        fn act(&mut self, act: Act) -> Result<(), TestCaseError> {
            let now = self.now;
            match act {
                Act::Press(to_sheet) => {
                    self.presses += 1;
                    let kind = if to_sheet {
                        SyncKind::ToSheet
                    } else {
                        SyncKind::FromSheet
                    };
                    self.feed(SyncEvent::StartPressed { kind, now })
                }
                Act::AnswerStart(failure) => {
                    if self.starts.is_empty() {
                        return Ok(());
                    }
                    let run = self.starts.remove(0);
                    match failure {
                        None => {
                            self.jobs += 1;
                            let sync_id = format!("job-{}", self.jobs);
                            self.feed(SyncEvent::StartAccepted { run, sync_id, now })
                        }
                        Some(f) => self.feed(SyncEvent::StartFailed {
                            run,
                            code: FAILURES[f as usize % FAILURES.len()],
                            message: "no".into(),
                            now,
                        }),
                    }
                }
                Act::AnswerPoll(s, progress) => {
                    let Some(sync_id) = self.poll.take() else {
                        return Ok(());
                    };
                    let status = ServerSyncStatus {
                        sync_id: Some(sync_id.clone()),
                        status: Some(STATUSES[s as usize % STATUSES.len()].to_string()),
                        progress,
                        ..ServerSyncStatus::default()
                    };
                    self.feed(SyncEvent::PollResult {
                        sync_id,
                        status: Box::new(status),
                        now,
                    })
                }
                Act::FailPoll(f) => {
                    let Some(sync_id) = self.poll.take() else {
                        return Ok(());
                    };
                    let code = FAILURES[f as usize % FAILURES.len()];
                    self.feed(SyncEvent::PollFailed { sync_id, code, now })
                }
                Act::StaleAnswer => {
                    let status = ServerSyncStatus {
                        status: Some("complete".into()),
                        ..ServerSyncStatus::default()
                    };
                    self.feed(SyncEvent::PollResult {
                        sync_id: "job-0".into(),
                        status: Box::new(status),
                        now,
                    })
                }
                Act::Cancel => self.feed(SyncEvent::CancelPressed { now }),
                Act::AnswerCancel(failure) => {
                    let Some(sync_id) = self.cancel.take() else {
                        return Ok(());
                    };
                    match failure {
                        None => self.feed(SyncEvent::CancelDone { sync_id, now }),
                        Some(f) => self.feed(SyncEvent::CancelFailed {
                            sync_id,
                            code: [
                                ErrorCode::Conflict,
                                ErrorCode::Network,
                                ErrorCode::SyncNotFound,
                            ][f as usize % 3],
                            now,
                        }),
                    }
                }
                Act::Dismiss => self.feed(SyncEvent::Dismiss { now }),
                Act::Wait => Ok(()),
            }
        }

        /// Runs the script, then lets everything settle: every run ends.
        fn run(config: SyncConfig, script: Vec<(u64, Act)>) -> Result<World, TestCaseError> {
            let mut world = World {
                config,
                ..World::default()
            };
            for (dt, act) in script {
                world.wait(world.now + dt)?;
                world.act(act)?;
            }
            // The web layer's requests all end; the timer does the rest.
            let end = world.now + 10 * world.config.timeout_ms;
            while world.now < end {
                let dt = world.config.poll_ms;
                world.wait(world.now + dt)?;
                world.act(Act::AnswerStart(None))?;
                world.act(Act::AnswerPoll(1, Some(1.0)))?;
                world.act(Act::AnswerCancel(None))?;
            }
            Ok(world)
        }
    }

    proptest! {
        // 256 cases unless PROPTEST_CASES says otherwise; no regression
        // files in the source tree.
        #![proptest_config(ProptestConfig {
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Progress, polls, timeout, cooldown and runs, checked at every step
        /// (see `World::feed`), and at the end every run has ended once.
        #[test]
        fn every_script_keeps_the_rules(
            config in config(),
            script in prop::collection::vec((0u64..4_000, act()), 0..120),
        ) {
            let world = World::run(config, script)?;
            prop_assert!(!world.state.phase.is_running(), "a run never ended: {:?}", world.state.phase);
            prop_assert_eq!(world.runs_begun, world.histories.len() as u64);
            prop_assert!(world.runs_begun <= world.presses);
            prop_assert!(world.follow_ups <= world.presses);
        }

        /// Presses however fast: one run plus at most one follow-up per run,
        /// and never more starts than the cooldown allows.
        #[test]
        fn presses_fold_into_at_most_one_follow_up(
            gaps in prop::collection::vec(0u64..500, 1..40),
        ) {
            let config = SyncConfig::default();
            let mut world = World { config, ..World::default() };
            for gap in gaps {
                world.wait(world.now + gap)?;
                world.act(Act::Press(false))?;
                world.act(Act::AnswerStart(None))?;
            }
            // While presses came (each < 500 ms apart, no job ended), at
            // most the first run started.
            prop_assert_eq!(world.runs_begun, 1);
            prop_assert_eq!(world.state.follow_up().is_some(), world.presses > 1);
            let end = world.now + 3 * world.config.timeout_ms;
            while world.now < end {
                world.wait(world.now + 1_000)?;
                world.act(Act::AnswerStart(None))?;
                world.act(Act::AnswerPoll(4, Some(100.0)))?;
            }
            prop_assert_eq!(world.runs_begun, if world.presses > 1 { 2 } else { 1 });
            prop_assert_eq!(world.histories.len() as u64, world.runs_begun);
        }
    }
}
