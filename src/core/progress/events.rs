//! The events fed into the sync reducer and the effects it asks of the
//! web layer.

use crate::core::code::ErrorCode;

use super::{ServerSyncStatus, StoredSyncJob, SyncHistoryEntry, SyncKind, SyncState};

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
        /// The answer's body: the job as it stopped, with the counts of the
        /// rows it wrote (`None` when the body could not be read).
        status: Option<Box<ServerSyncStatus>>,
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
    /// This tab became leader and read the stored job: [`SyncEvent::Resume`]
    /// when there is one; without one, a run this tab shows as going (its
    /// leader died before this tab heard how it ended) is followed to its end
    /// by its job id, or ended here when it had none yet.
    Lead {
        /// The stored job, if any.
        job: Option<StoredSyncJob>,
        /// When.
        now: u64,
    },
    /// This tab opened as a follower: it asks the leader for its state
    /// ([`SyncEffect::AskState`]).
    Follow {
        /// When.
        now: u64,
    },
    /// A follower asked for the state: the leader sends it again.
    StateAsked {
        /// When.
        now: u64,
    },
    /// A run of the user's schedule fell due in the leader: a press, unless
    /// a run is going (the run going is as fresh as the one due: skipped).
    ScheduledStart {
        /// Which way to copy.
        kind: SyncKind,
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
            | Self::Resume { now, .. }
            | Self::Lead { now, .. }
            | Self::Follow { now }
            | Self::StateAsked { now }
            | Self::ScheduledStart { now, .. } => *now,
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
    /// Ask the leader to send its state (`SyncCommand::Show`); feed the
    /// leader [`SyncEvent::StateAsked`].
    AskState,
}
