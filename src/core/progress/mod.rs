//! The sync-progress reducer: one state machine for the spreadsheet sync
//! (docs/guide/sync-jobs.md; docs/backend/protocol.md, "Sync jobs").
//!
//! The leader tab feeds [`SyncEvent`]s into [`reduce`] and carries out the
//! [`SyncEffect`]s it returns: the start request, one poll at a time, the
//! cancel request, the single timer, the stored job id, the history log and
//! the broadcast of every new state to the other tabs. Followers feed
//! [`SyncEvent::RemoteState`] and only show what the leader sends: a state
//! older than the one shown is dropped (the leader's stamps grow with each
//! state), and a run's percentage never goes down in a tab. A tab that
//! opens asks for the state ([`SyncEvent::Follow`], answered by
//! [`SyncEvent::StateAsked`]); a new leader says what it shows and goes on
//! with the stored job, or the one it shows ([`SyncEvent::Lead`]).
//! `sim.rs` runs all this under faults ([`SyncEvent`]s from a model of tabs,
//! network and server).
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

mod events;
pub use events::{SyncEffect, SyncEvent};

mod machine;
pub use machine::{
    Input, Output, StartAnswer, SyncMachine, SyncRequest, SyncSchedule, DEFAULT_SCHEDULE_MS,
    FORWARD_AGAIN_MS, MIN_SCHEDULE_MS, NOT_TAKEN,
};
pub mod runner;

mod wire;
pub use wire::{
    merge_history, ServerJobError, ServerSyncStatus, StoredSyncJob, SyncConflictRow,
    SyncHistoryEntry, SyncSheetConflict,
};

/// The message shown while a cancel request is on its way.
const CANCELLING: &str = "Cancelling";

/// Lower bound of the poll interval, whatever the app configures: a zero
/// interval would poll in a tight loop.
const MIN_POLL_MS: u64 = 50;

/// How many locally cancelled starts are remembered, so that their job is
/// cancelled on the server if the start answer still arrives. Cooldown keeps
/// starts rare, so a handful is plenty.
const ORPHANS_KEPT: usize = 8;

/// How many runs' highest progress a tab remembers ([`SyncState::keep_peak`]).
const PEAKS_KEPT: usize = 8;

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
    /// The highest progress this tab showed of each recent run, by its
    /// `startedAt`.
    peaks: VecMap<u64, f64>,
    /// This tab leads ([`SyncEvent::Lead`]): other tabs' states only tell
    /// it how far the run it shows got.
    leads: bool,
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

    /// Stamps a state about to be shown: `now`, but at least a millisecond
    /// after the last stamp, so that two states shown in the same
    /// millisecond are told apart by the tabs that receive them.
    fn stamp(&mut self, now: u64) {
        self.updated_at = now.max(self.updated_at.saturating_add(1));
    }

    /// Never shows a run's progress lower than this tab showed it before.
    /// A new leader may know less of a run than a follower did (the dead
    /// leader's last states reached one tab and not the other), and says
    /// so until its next poll: the follower then shows that run's phase
    /// again, but not a lower percentage.
    fn keep_peak(&mut self) {
        let Some(run) = self.started_at else { return };
        if self.phase == SyncPhase::Idle {
            return;
        }
        let peak = self.ledger.peaks.get(&run).copied().unwrap_or(0.0);
        self.progress = self.progress.max(peak);
        self.ledger.peaks.insert(run, self.progress);
        while self.ledger.peaks.len() > PEAKS_KEPT {
            self.ledger.peaks.pop_first();
        }
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
        state.keep_peak();
        let view = state.view();
        if view == self.shown {
            return;
        }
        state.stamp(self.now);
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
            return self.mirror(*state, now);
        }
        let mut step = Step {
            now,
            config,
            effects: Vec::new(),
            shown: self.view(),
        };
        let leads = matches!(event, SyncEvent::Lead { .. });
        self.apply(event, &mut step);
        self.advance(&mut step);
        step.publish(&mut self);
        if leads
            && !step
                .effects
                .iter()
                .any(|e| matches!(e, SyncEffect::Broadcast(_)))
        {
            // A new leader says what it shows, stamped now: the followers
            // drop what they still show of the dead leader's (a start that
            // died with it, say) for it.
            self.stamp(now);
            step.effects
                .push(SyncEffect::Broadcast(Box::new(self.clone())));
        }
        self.schedule(&mut step);
        (self, step.effects)
    }

    /// A follower shows the leader's state, but never lets a stale message
    /// (an older leader's, or one overtaken by a newer) move a run backwards.
    fn mirror(mut self, remote: SyncState, now: u64) -> (SyncState, Vec<SyncEffect>) {
        let same_run = remote.started_at.is_some() && remote.started_at == self.started_at;
        let told = clamp_progress(remote.progress).unwrap_or(0.0);
        if self.ledger.driving || self.ledger.leads {
            // This tab's own state is the authority, but a follower may
            // have seen the run further along (a dead leader's last poll):
            // the server's progress never goes down, so take it.
            if same_run && self.phase != SyncPhase::Idle && told > self.progress {
                self.progress = told;
                self.keep_peak();
                self.stamp(now);
                return (
                    self.clone(),
                    vec![SyncEffect::Broadcast(Box::new(self)), SyncEffect::Notify],
                );
            }
            return (self, Vec::new());
        }
        let same_job = remote.sync_id.is_some() && remote.sync_id == self.sync_id;
        // Tab messages may cross (a dead leader's late ones, a new
        // leader's): an older state never replaces a newer one. A leader's
        // stamps grow with every state it shows ([`SyncState::stamp`]).
        let older = remote.updated_at < self.updated_at;
        if older || (same_job && self.phase.is_terminal() && remote.phase.is_running()) {
            return (self, Vec::new());
        }
        let before = self.view();
        self.phase = remote.phase;
        self.progress = clamp_progress(remote.progress).unwrap_or(0.0);
        self.message = remote.message;
        self.sync_id = remote.sync_id;
        self.stats = remote.stats;
        self.error = remote.error;
        self.started_at = remote.started_at;
        self.updated_at = remote.updated_at;
        self.keep_peak();
        let mut effects = Vec::new();
        if self.view() != before {
            effects.push(SyncEffect::Notify);
        }
        if same_run && self.progress > told {
            // This tab saw the run further along than the sender: say so,
            // so that the leader (and every tab) shows it too.
            effects.push(SyncEffect::Broadcast(Box::new(self.clone())));
        }
        (self, effects)
    }

    fn apply(&mut self, event: SyncEvent, step: &mut Step<'_>) {
        match event {
            SyncEvent::StartPressed { kind, .. } => self.press(kind, step),
            SyncEvent::ScheduledStart { kind, .. } => {
                if !self.phase.is_running() {
                    self.press(kind, step);
                }
            }
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
            SyncEvent::CancelDone {
                sync_id, status, ..
            } => {
                if self.follows(&sync_id) {
                    // The answer comes once the job stopped: its counts are
                    // the rows it wrote, newer than any poll's.
                    if let Some(mut status) = status {
                        self.take_figures(&mut status);
                    }
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
            SyncEvent::Lead { job, .. } => {
                self.ledger.leads = true;
                match job {
                    Some(job) => self.resume(job, step),
                    None => self.lead_without_job(step),
                }
            }
            SyncEvent::Follow { .. } => {
                if !self.ledger.driving {
                    step.effects.push(SyncEffect::AskState);
                }
            }
            SyncEvent::StateAsked { .. } => step
                .effects
                .push(SyncEffect::Broadcast(Box::new(self.clone()))),
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

    /// Takes a job status's progress (never lower), words and counters.
    fn take_figures(&mut self, status: &mut ServerSyncStatus) {
        if let Some(p) = status.progress.and_then(clamp_progress) {
            self.progress = self.progress.max(p);
        }
        if let Some(message) = status.message.take() {
            self.message = Some(message);
        }
        if status.stats.is_some() {
            self.stats = status.stats;
        }
    }

    /// Takes in a poll's answer: a new phase and progress, or the end.
    fn absorb(&mut self, mut status: ServerSyncStatus, step: &mut Step<'_>) {
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
        self.take_figures(&mut status);
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

    /// A new leader found no stored job: a run it shows as going ended with
    /// its old leader, or is still going without a stored id.
    fn lead_without_job(&mut self, step: &mut Step<'_>) {
        if self.ledger.driving || !self.phase.is_running() {
            return;
        }
        match (self.sync_id.clone(), self.started_at) {
            // Poll it once at least: the job tells how it ended.
            (Some(sync_id), Some(started_at)) => self.resume(
                StoredSyncJob {
                    sync_id,
                    kind: self.ledger.kind.unwrap_or_default(),
                    started_at,
                },
                step,
            ),
            // Its start died with the tab that sent it: nobody can follow it.
            _ => self.finish(
                SyncOutcome::Error,
                Some(SyncError::new(
                    ErrorCode::Closed,
                    "the tab that started the sync closed before the server answered",
                )),
                step,
            ),
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
                message: self.message.clone(),
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
mod tests;

#[cfg(all(test, not(target_arch = "wasm32")))]
mod properties;

#[cfg(all(test, not(target_arch = "wasm32")))]
mod sim;
