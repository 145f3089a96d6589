//! The sync jobs of one tab as one machine: the reducer ([`SyncState`])
//! and every decision around it that the page used to make by itself:
//! whether a press is this tab's to carry out or the leader's, when a
//! start that failed is tried again (under the same `Idempotency-Key`),
//! that a 401 ends the session, how the callers of `start()` and
//! `cancel()` are answered (here or through the leader's states), the
//! counters, and when the user's schedule is due.
//!
//! Changed only through [`SyncMachine::handle`] and
//! [`SyncMachine::handle_timeout`]; its outputs are pulled
//! ([`SyncMachine::poll_output`], [`SyncMachine::poll_timeout`]), and
//! `runner.rs` turns them into I/O, the same for the page and the
//! simulation.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::{
    reduce, ServerSyncStatus, StoredSyncJob, SyncConfig, SyncEffect, SyncEvent, SyncHistoryEntry,
    SyncKind, SyncOutcome, SyncPhase, SyncState,
};
use crate::core::code::ErrorCode;
use crate::core::counters::Counters;
use crate::core::engine::{Failure, IdSource, Refusal};
use crate::core::retry::RetryPolicy;
use crate::core::tab_message::{SyncCommand, TabMessage};

/// `schedule()` without an interval runs a sync every two hours.
pub const DEFAULT_SCHEDULE_MS: u64 = 2 * 60 * 60 * 1000;
/// Shorter schedules are refused: a sync job is not a heartbeat.
pub const MIN_SCHEDULE_MS: u64 = 1_000;
/// A scheduled run is looked at this long after it is due, so that a
/// timer that fires a little early still finds it due.
const SCHEDULE_SLACK_MS: u64 = 20;
/// A press forwarded to the leader and not yet answered is sent again
/// this often, under its one key, so that a leader that died with it is
/// replaced by the next one; a repeat of a press carried out already only
/// makes the leader show its state again.
pub const FORWARD_AGAIN_MS: u64 = 1_000;
/// The words of the `timeout` a forwarded press no tab took is answered
/// with.
pub const NOT_TAKEN: &str = "no open tab took this sync in time; it can be started again";
/// How many keys of presses carried out a leader remembers, to know a
/// press sent again.
const KEYS_KEPT: usize = 32;

/// The user's sync schedule, kept in IndexedDB and shared by their tabs:
/// whichever tab leads starts the run that is due, and claims it in the
/// same transaction that moves `next_at` on, so no run is doubled and
/// none is lost when the leader changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncSchedule {
    /// Time between runs.
    pub interval_ms: u64,
    /// Which way the runs copy.
    pub kind: SyncKind,
    /// When the next run is due (ms since the epoch).
    pub next_at: u64,
}

impl SyncSchedule {
    /// A run every `interval_ms` from `now` on.
    pub fn every(interval_ms: u64, kind: SyncKind, now: u64) -> Self {
        Self {
            interval_ms,
            kind,
            next_at: now.saturating_add(interval_ms),
        }
    }

    /// The schedule `stored` with its due run claimed at `now` (its
    /// `next_at` moved on), or `None` when no run is due: the write the
    /// claiming transaction makes.
    pub fn claim(stored: Option<SyncSchedule>, now: u64) -> Option<SyncSchedule> {
        stored.filter(|p| p.next_at <= now).map(|mut p| {
            p.next_at = now.saturating_add(p.interval_ms);
            p
        })
    }
}

/// A request of the sync machine's to the server.
#[derive(Debug, Clone, PartialEq)]
pub enum SyncRequest {
    /// `POST /api/sync { kind }` under `Idempotency-Key: key` (the same
    /// key for every try of run `run`); report [`Input::Started`].
    Start {
        /// The run it starts.
        run: u64,
        /// Which way to copy.
        kind: SyncKind,
        /// The `Idempotency-Key`.
        key: String,
    },
    /// `GET /api/sync/{sync_id}`, aborted after `timeout_ms`; report
    /// [`Input::Polled`].
    Poll {
        /// The job.
        sync_id: String,
        /// The request's limit.
        timeout_ms: u64,
    },
    /// `DELETE /api/sync/{sync_id}`; report [`Input::CancelAnswered`].
    Cancel {
        /// The job.
        sync_id: String,
    },
}

impl SyncRequest {
    /// The input a request that ended without a 2xx reports.
    pub fn failed(self, refusal: Refusal) -> Input {
        match self {
            SyncRequest::Start { run, .. } => Input::Started {
                run,
                answer: Err(refusal),
            },
            SyncRequest::Poll { sync_id, .. } => Input::Polled {
                sync_id,
                answer: Err(refusal),
            },
            SyncRequest::Cancel { sync_id } => Input::CancelAnswered {
                sync_id,
                answer: Err(refusal),
            },
        }
    }
}

/// What happens to a tab's sync jobs.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// `crm.sync.start(kind)` in this tab; `caller` is answered with
    /// [`Output::StartAnswered`].
    Start {
        /// Which way to copy.
        kind: SyncKind,
        /// Who waits for the answer.
        caller: u64,
    },
    /// `crm.sync.cancel()`; `caller` is answered with
    /// [`Output::CancelAnswered`].
    Cancel {
        /// Who waits for the answer.
        caller: u64,
    },
    /// `crm.sync.dismiss()`.
    Dismiss,
    /// The tab channel opened (`true`) or there is none: the schedule is
    /// read, and a tab that does not lead asks the leader for its state.
    Channel(bool),
    /// A message from another tab (all but the sync's are ignored).
    Tab(TabMessage),
    /// This tab leads now: it reads the stored job and the schedule.
    Leading,
    /// The stored job, read after [`Output::ReadJob`].
    JobRead(Option<StoredSyncJob>),
    /// A start answered: the job id, or why not.
    Started {
        /// The run of the [`SyncRequest::Start`].
        run: u64,
        /// The job id the server gave.
        answer: Result<String, Refusal>,
    },
    /// A poll answered: the job's status (its body read), or why not.
    Polled {
        /// The job polled.
        sync_id: String,
        /// The body, boxed: by far the largest input.
        answer: Result<Box<ServerSyncStatus>, Refusal>,
    },
    /// A cancel answered: the job as it stopped (`None` when its body
    /// could not be read), or why not.
    CancelAnswered {
        /// The job.
        sync_id: String,
        /// The body.
        answer: Result<Option<Box<ServerSyncStatus>>, Refusal>,
    },
    /// This tab is about to write the schedule: a read of it that began
    /// before is older than the write, and not taken.
    Rescheduling,
    /// This tab wrote the schedule (`None`: stopped).
    Scheduled(Option<SyncSchedule>),
    /// The schedule as stored, after [`Output::ReadSchedule`]: `None`
    /// when nothing is kept (no IndexedDB, or it could not be read), and
    /// the schedule in memory stands.
    ScheduleRead {
        /// What was read.
        read: Option<Option<SyncSchedule>>,
        /// The `writes` of the [`Output::ReadSchedule`].
        writes: u64,
    },
    /// The claim of a due run, after [`Output::ClaimSchedule`]: the
    /// schedule the transaction wrote (the run claimed) or `Some(None)`
    /// (none due, or the transaction failed); `None` when nothing is kept,
    /// and the schedule in memory is claimed.
    ScheduleClaimed(Option<Option<SyncSchedule>>),
    /// The tab closes: every caller still waiting is told `closed`.
    Closed,
}

/// How a `start()` went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartAnswer {
    /// The job started, or the one the press was folded into.
    pub sync_id: Option<String>,
    /// Folded into a follow-up run (`"coalesced"`), or queued.
    pub coalesced: bool,
}

/// What the machine asks of the world, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send a request; report its input ([`SyncRequest::failed`] when it
    /// ended without a 2xx).
    Request(SyncRequest),
    /// Store the followed job (or clear it).
    StoreJob(Option<StoredSyncJob>),
    /// Append a finished run to the sync log.
    RecordHistory(SyncHistoryEntry),
    /// Tell the user's other tabs.
    Post(TabMessage),
    /// Read the stored job; report [`Input::JobRead`].
    ReadJob,
    /// Read the schedule; report [`Input::ScheduleRead`] with `writes`.
    ReadSchedule {
        /// This tab's count of writes of the schedule when the read began.
        writes: u64,
    },
    /// Claim the due run in the stored schedule, in one transaction, with
    /// [`SyncSchedule::claim`]; report [`Input::ScheduleClaimed`].
    ClaimSchedule {
        /// When.
        now: u64,
    },
    /// The state shown changed: tell the app.
    Changed,
    /// A `start()` caller's answer.
    StartAnswered {
        /// Who asked.
        caller: u64,
        /// The answer, or the error it rejects with.
        answer: Result<StartAnswer, Failure>,
    },
    /// A `cancel()` caller's answer.
    CancelAnswered {
        /// Who asked.
        caller: u64,
        /// Settled, or the error it rejects with.
        answer: Result<(), Failure>,
    },
    /// The server said the session ended (a 401).
    SessionEnded,
    /// A run ended well at `at`: `lastSyncAt` moves.
    Synced {
        /// When (ms since the epoch).
        at: u64,
    },
}

/// A `start()` caller waiting for its answer.
#[derive(Debug, Clone)]
struct StartCaller {
    caller: u64,
    /// Whether a run was going on when the press came (a follower's press
    /// is answered `coalesced` then).
    busy: bool,
    /// The job shown when the press came: a follower's press is answered
    /// with the first other job the leader shows (the one it started).
    seen: Option<String>,
    /// The run shown when the press came (its `startedAt`): a later run
    /// that ended answers a follower's press too (cancelled before the
    /// server named its job).
    run: Option<u64>,
    /// Which way to copy.
    kind: SyncKind,
    /// The press's `Idempotency-Key`, chosen here once.
    key: String,
    /// Sent to the leader to carry out: when it is sent again, and when
    /// its caller is told that no tab took it.
    forward: Option<Forward>,
}

/// When a forwarded press is sent again, and given up.
#[derive(Debug, Clone, Copy)]
struct Forward {
    again_at: u64,
    give_up_at: u64,
}

/// A start request under way, tried again after transient failures.
#[derive(Debug, Clone)]
struct StartTry {
    run: u64,
    kind: SyncKind,
    key: String,
    failures: u32,
    /// When it is tried again; `None` while it is on the wire.
    retry_at: Option<u64>,
}

/// The runs this tab counted, for `metrics()`.
#[derive(Debug, Default, Clone, Copy)]
struct SyncCounts {
    started: u64,
    completed: u64,
    failed: u64,
    total_ms: u64,
    finished: u64,
}

/// The sync jobs of one tab; see the module docs.
pub struct SyncMachine {
    state: SyncState,
    config: SyncConfig,
    retry: RetryPolicy,
    ids: IdSource,
    leader: bool,
    channel: bool,
    out: VecDeque<Output>,
    /// The reducer's one timer.
    poll_at: Option<u64>,
    starts: Vec<StartCaller>,
    cancels: Vec<u64>,
    /// A `DELETE /api/sync/{id}` is under way.
    cancelling: bool,
    tries: Vec<StartTry>,
    counts: SyncCounts,
    /// The schedule as last read or written.
    plan: Option<SyncSchedule>,
    /// Whether the schedule's next run is waited for (not while a read
    /// or claim of it is under way).
    plan_armed: bool,
    /// Counts this tab's writes of the schedule.
    plan_writes: u64,
    /// Closed: nothing more is done.
    closed: bool,
    /// The key of the press being reduced, for the start it begins.
    press_key: Option<String>,
    /// The key of the press that made the follow-up run, for its start.
    follow_up_key: Option<String>,
    /// Keys of the presses this tab carried out lately, newest last.
    keys: VecDeque<String>,
}

impl SyncMachine {
    /// A machine for a tab that does not lead (yet); `retry` says how a
    /// start that failed is tried again, `ids` makes its keys and jitter.
    pub fn new(config: SyncConfig, retry: RetryPolicy, ids: IdSource) -> Self {
        Self {
            state: SyncState::default(),
            config,
            retry,
            ids,
            leader: false,
            channel: false,
            out: VecDeque::new(),
            poll_at: None,
            starts: Vec::new(),
            cancels: Vec::new(),
            cancelling: false,
            tries: Vec::new(),
            counts: SyncCounts::default(),
            plan: None,
            plan_armed: false,
            plan_writes: 0,
            closed: false,
            press_key: None,
            follow_up_key: None,
            keys: VecDeque::new(),
        }
    }

    /// What the tab shows (`crm.sync.state`).
    pub fn state(&self) -> &SyncState {
        &self.state
    }

    /// The schedule (`crm.sync.scheduled`).
    pub fn schedule(&self) -> Option<&SyncSchedule> {
        self.plan.as_ref()
    }

    /// The runs this tab counted, by their `metrics()` counter names.
    pub fn counters(&self) -> Counters {
        let c = self.counts;
        [
            ("syncStarted", c.started),
            ("syncCompleted", c.completed),
            ("syncFailed", c.failed),
            ("syncTotalMs", c.total_ms),
            ("syncFinished", c.finished),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v as f64))
        .collect()
    }

    /// The next output, in order.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// The one timer: the earliest of the reducer's deadline, a start
    /// tried again and the schedule's next run.
    pub fn poll_timeout(&self) -> Option<u64> {
        let retries = self.tries.iter().filter_map(|t| t.retry_at);
        let plan = self
            .plan
            .as_ref()
            .filter(|_| self.plan_armed)
            .map(|p| p.next_at.saturating_add(SCHEDULE_SLACK_MS));
        // A tab that leads carries its forwarded presses out once it read
        // the stored job; until then they wait.
        let forwards = self
            .starts
            .iter()
            .filter_map(|w| w.forward.filter(|_| !self.leader))
            .map(|f| f.again_at.min(f.give_up_at));
        retries
            .chain(self.poll_at)
            .chain(plan)
            .chain(forwards)
            .min()
    }

    /// The timer fired: what is due at `now` is done. `online`: whether
    /// the server can be reached (a scheduled run starts only then).
    pub fn handle_timeout(&mut self, now: u64, online: bool) {
        if self.closed {
            return;
        }
        for i in 0..self.tries.len() {
            if self.tries[i].retry_at.is_some_and(|at| at <= now) {
                self.tries[i].retry_at = None;
                let t = &self.tries[i];
                let request = SyncRequest::Start {
                    run: t.run,
                    kind: t.kind,
                    key: t.key.clone(),
                };
                self.out.push_back(Output::Request(request));
            }
        }
        if self.poll_at.is_some_and(|at| at <= now) {
            self.poll_at = None;
            self.reduce(SyncEvent::PollTick { now });
        }
        if !self.leader {
            self.forward_again(now);
        }
        let due = self
            .plan
            .as_ref()
            .filter(|_| self.plan_armed)
            .map(|p| p.next_at);
        if due.is_some_and(|at| at.saturating_add(SCHEDULE_SLACK_MS) <= now) {
            // Every tab reads the schedule again once the run is due; the
            // leader claims it first, so that of two tabs that both think
            // they lead only one starts it.
            self.plan_armed = false;
            self.out.push_back(if self.leader && online {
                Output::ClaimSchedule { now }
            } else {
                Output::ReadSchedule {
                    writes: self.plan_writes,
                }
            });
        }
    }

    /// Takes `input` at `now`; `online` as for [`Self::handle_timeout`].
    pub fn handle(&mut self, input: Input, now: u64, online: bool) {
        if self.closed {
            return;
        }
        match input {
            Input::Start { kind, caller } => {
                // The key is chosen here, once: whichever tab carries the
                // press out starts its job under it.
                let key = self.ids.uuid();
                let forward = (!self.leader && self.channel).then_some(Forward {
                    again_at: now.saturating_add(FORWARD_AGAIN_MS),
                    give_up_at: now.saturating_add(self.config.timeout_ms),
                });
                self.starts.push(StartCaller {
                    caller,
                    busy: self.state.phase.is_running(),
                    seen: self.state.sync_id.clone(),
                    run: self.state.started_at,
                    kind,
                    key: key.clone(),
                    forward,
                });
                let key = Some(key);
                self.command(SyncCommand::Start { kind, key }, now);
            }
            Input::Cancel { caller } => {
                if !self.state.phase.is_running() {
                    self.out.push_back(Output::CancelAnswered {
                        caller,
                        answer: Err(already_finished()),
                    });
                    return;
                }
                self.cancels.push(caller);
                self.command(SyncCommand::Cancel, now);
                // Cancelled before the server named the job: nothing to
                // ask it.
                if self.leader && !self.cancelling {
                    let ended = self.state.phase == SyncPhase::Cancelled;
                    self.settle_cancels(if ended {
                        Ok(())
                    } else {
                        Err(already_finished())
                    });
                }
            }
            Input::Dismiss => self.command(SyncCommand::Dismiss, now),
            Input::Channel(open) => {
                self.channel = open;
                self.out.push_back(Output::ReadSchedule {
                    writes: self.plan_writes,
                });
                if open && !self.leader {
                    self.reduce(SyncEvent::Follow { now });
                }
            }
            Input::Tab(message) => self.tab_message(message, now),
            Input::Leading => {
                self.leader = true;
                self.out.push_back(Output::ReadSchedule {
                    writes: self.plan_writes,
                });
                self.out.push_back(Output::ReadJob);
            }
            Input::JobRead(job) => {
                if self.leader {
                    self.reduce(SyncEvent::Lead { job, now });
                    self.answer_when_leading(now);
                }
            }
            Input::Started { run, answer } => self.started(run, answer, now, online),
            Input::Polled { sync_id, answer } => {
                let event = match answer {
                    Ok(status) => SyncEvent::PollResult {
                        sync_id,
                        status,
                        now,
                    },
                    Err(refusal) => {
                        self.session_check(&refusal);
                        SyncEvent::PollFailed {
                            sync_id,
                            code: refusal.code,
                            now,
                        }
                    }
                };
                self.reduce(event);
            }
            Input::CancelAnswered { sync_id, answer } => {
                self.cancelling = false;
                let event = match answer {
                    Ok(status) => {
                        self.settle_cancels(Ok(()));
                        SyncEvent::CancelDone {
                            sync_id,
                            status,
                            now,
                        }
                    }
                    Err(refusal) => {
                        let code = refusal.code;
                        self.settle_cancels(Err(Failure::Answer(Box::new(refusal))));
                        SyncEvent::CancelFailed { sync_id, code, now }
                    }
                };
                self.reduce(event);
            }
            Input::Rescheduling => self.plan_writes = self.plan_writes.saturating_add(1),
            Input::Scheduled(plan) => {
                self.plan = plan;
                self.plan_armed = true;
                if self.channel {
                    self.post(TabMessage::SyncCommand(SyncCommand::Reschedule));
                }
            }
            Input::ScheduleRead { read, writes } => {
                if let Some(plan) = read.filter(|_| writes == self.plan_writes) {
                    self.plan = plan;
                }
                self.plan_armed = true;
            }
            Input::ScheduleClaimed(claimed) => {
                let claimed = match claimed {
                    Some(stored) => stored,
                    // Kept in memory only: this tab's schedule is the only one.
                    None => {
                        let claimed = SyncSchedule::claim(self.plan.clone(), now);
                        if claimed.is_some() {
                            self.plan.clone_from(&claimed);
                        }
                        claimed
                    }
                };
                if let Some(plan) = claimed {
                    let key = self.ids.uuid();
                    let kind = plan.kind;
                    self.keyed(key, SyncEvent::ScheduledStart { kind, now });
                }
                self.out.push_back(Output::ReadSchedule {
                    writes: self.plan_writes,
                });
            }
            Input::Closed => {
                self.closed = true;
                self.poll_at = None;
                self.plan_armed = false;
                self.tries.clear();
                for w in std::mem::take(&mut self.starts) {
                    self.out.push_back(Output::StartAnswered {
                        caller: w.caller,
                        answer: Err(Failure::Closed),
                    });
                }
                self.settle_cancels(Err(Failure::Closed));
            }
        }
    }

    /// A press in this tab: the leader's to carry out; another tab's
    /// press goes to the leader, or is carried out here when there is no
    /// channel to send it on.
    fn command(&mut self, command: SyncCommand, now: u64) {
        if self.leader || !self.channel {
            self.carry_out(command, now);
        } else {
            self.post(TabMessage::SyncCommand(command));
        }
    }

    /// A press this tab carries out, its own or another tab's.
    fn carry_out(&mut self, command: SyncCommand, now: u64) {
        match command {
            SyncCommand::Start { kind, key } => {
                // Without a key (a build before keys): one is made here.
                let key = key.unwrap_or_else(|| self.ids.uuid());
                self.press(kind, key, now);
            }
            SyncCommand::Cancel => self.reduce(SyncEvent::CancelPressed { now }),
            SyncCommand::Dismiss => self.reduce(SyncEvent::Dismiss { now }),
            // Written to IndexedDB already, or only for a leader.
            SyncCommand::Reschedule | SyncCommand::Show => {}
        }
    }

    /// A start press under `key`: the start it begins (now, or as the
    /// follow-up run) goes out under that key. The same key again is the
    /// same press (sent again, or to this tab as the new leader): it was
    /// carried out, and the state is only shown again.
    fn press(&mut self, kind: SyncKind, key: String, now: u64) {
        if self.keys.contains(&key) {
            self.reduce(SyncEvent::StateAsked { now });
            return;
        }
        self.keys.push_back(key.clone());
        while self.keys.len() > KEYS_KEPT {
            self.keys.pop_front();
        }
        self.keyed(key, SyncEvent::StartPressed { kind, now });
    }

    /// Reduces a press `event` (a start, or the schedule's) under `key`.
    fn keyed(&mut self, key: String, event: SyncEvent) {
        let had_follow_up = self.state.follow_up().is_some();
        self.press_key = Some(key);
        self.reduce(event);
        if let Some(key) = self.press_key.take() {
            if !had_follow_up && self.state.follow_up().is_some() {
                self.follow_up_key = Some(key);
            }
        }
    }

    /// A follower's presses not answered yet are sent to the leader again
    /// (the one they went to may have died with them), under their keys;
    /// those no tab took within the run's timeout are answered `timeout`.
    fn forward_again(&mut self, now: u64) {
        let mut again = Vec::new();
        let mut still = Vec::new();
        for mut w in std::mem::take(&mut self.starts) {
            match &mut w.forward {
                Some(f) if f.give_up_at <= now => {
                    self.out.push_back(Output::StartAnswered {
                        caller: w.caller,
                        answer: Err(made(ErrorCode::Timeout, NOT_TAKEN)),
                    });
                    continue;
                }
                Some(f) if f.again_at <= now => {
                    f.again_at = now.saturating_add(FORWARD_AGAIN_MS);
                    again.push(SyncCommand::Start {
                        kind: w.kind,
                        key: Some(w.key.clone()),
                    });
                }
                _ => {}
            }
            still.push(w);
        }
        self.starts = still;
        if self.channel {
            for command in again {
                self.post(TabMessage::SyncCommand(command));
            }
        }
    }

    fn tab_message(&mut self, message: TabMessage, now: u64) {
        match message {
            // The leader too: the reducer takes from another tab's state
            // only how far the run it drives got.
            TabMessage::SyncState(state) => self.reduce(SyncEvent::RemoteState { state, now }),
            TabMessage::SyncCommand(SyncCommand::Reschedule) => {
                self.plan_armed = false;
                self.out.push_back(Output::ReadSchedule {
                    writes: self.plan_writes,
                });
            }
            TabMessage::SyncCommand(SyncCommand::Show) if self.leader => {
                self.reduce(SyncEvent::StateAsked { now });
            }
            TabMessage::SyncCommand(command) if self.leader => self.carry_out(command, now),
            _ => {}
        }
    }

    fn started(&mut self, run: u64, answer: Result<String, Refusal>, now: u64, online: bool) {
        let Some(at) = self.tries.iter().position(|t| t.run == run) else {
            return;
        };
        match answer {
            Ok(sync_id) => {
                self.tries.remove(at);
                self.answer_starts(Some(sync_id.clone()), false);
                self.reduce(SyncEvent::StartAccepted { run, sync_id, now });
            }
            Err(refusal) => {
                let t = &mut self.tries[at];
                t.failures = t.failures.saturating_add(1);
                let again = refusal.code != ErrorCode::Unauthorized
                    && refusal.transient
                    && online
                    && self.retry.allows(t.failures);
                if again {
                    let sample = self.ids.unit();
                    let delay = self.retry.delay_with_retry_after(
                        t.failures,
                        sample,
                        refusal.retry_after_ms,
                    );
                    t.retry_at = Some(now.saturating_add(delay));
                    return;
                }
                self.tries.remove(at);
                self.session_check(&refusal);
                let (code, message) = (refusal.code, refusal.message.clone());
                for w in std::mem::take(&mut self.starts) {
                    self.out.push_back(Output::StartAnswered {
                        caller: w.caller,
                        answer: Err(Failure::Answer(Box::new(refusal.clone()))),
                    });
                }
                self.reduce(SyncEvent::StartFailed {
                    run,
                    code,
                    message,
                    now,
                });
            }
        }
    }

    fn session_check(&mut self, refusal: &Refusal) {
        if refusal.code == ErrorCode::Unauthorized {
            self.out.push_back(Output::SessionEnded);
        }
    }

    fn post(&mut self, message: TabMessage) {
        self.out.push_back(Output::Post(message));
    }

    /// Runs the reducer and turns its effects into outputs.
    fn reduce(&mut self, event: SyncEvent) {
        let state = std::mem::take(&mut self.state);
        let (next, effects) = reduce(state, event, &self.config);
        self.state = next;
        for effect in effects {
            match effect {
                SyncEffect::PostStart { run, kind } => {
                    self.counts.started += 1;
                    // The press's own run, or the follow-up a press made.
                    let key = match self.press_key.take().or(self.follow_up_key.take()) {
                        Some(key) => key,
                        None => self.ids.uuid(),
                    };
                    self.tries.push(StartTry {
                        run,
                        kind,
                        key: key.clone(),
                        failures: 0,
                        retry_at: None,
                    });
                    self.out
                        .push_back(Output::Request(SyncRequest::Start { run, kind, key }));
                }
                SyncEffect::Coalesced { sync_id } => self.answer_starts(sync_id, true),
                SyncEffect::SchedulePoll { at_ms } => self.poll_at = Some(at_ms),
                SyncEffect::Poll {
                    sync_id,
                    timeout_ms,
                } => self.out.push_back(Output::Request(SyncRequest::Poll {
                    sync_id,
                    timeout_ms,
                })),
                SyncEffect::SendCancel { sync_id } => {
                    self.cancelling = true;
                    self.out
                        .push_back(Output::Request(SyncRequest::Cancel { sync_id }));
                }
                SyncEffect::Broadcast(state) => {
                    if self.channel {
                        self.post(TabMessage::SyncState(state));
                    }
                }
                SyncEffect::StoreJob(job) => self.out.push_back(Output::StoreJob(job)),
                SyncEffect::RecordHistory(entry) => {
                    let c = &mut self.counts;
                    match entry.status {
                        SyncOutcome::Complete => c.completed += 1,
                        SyncOutcome::Error => c.failed += 1,
                        SyncOutcome::Cancelled => {}
                    }
                    c.total_ms += entry.duration_ms;
                    c.finished += 1;
                    if entry.status == SyncOutcome::Complete {
                        self.out.push_back(Output::Synced {
                            at: entry.finished_at,
                        });
                    }
                    self.out.push_back(Output::RecordHistory(entry));
                }
                SyncEffect::Notify => {
                    self.out.push_back(Output::Changed);
                    if !self.leader {
                        self.answer_from_leader();
                    }
                }
                SyncEffect::AskState => {
                    if self.channel {
                        self.post(TabMessage::SyncCommand(SyncCommand::Show));
                    }
                }
            }
        }
        if self.state.follow_up().is_none() {
            self.follow_up_key = None;
        }
    }

    /// A follower hears how its presses went through the leader's states:
    /// a start is answered once the leader shows the job it started (or
    /// the run it was folded into), or fails with the run's error; a
    /// cancel once no run is shown going.
    fn answer_from_leader(&mut self) {
        let state = &self.state;
        let mut still = Vec::new();
        for w in std::mem::take(&mut self.starts) {
            let fresh = state.sync_id.is_some() && state.sync_id != w.seen;
            let ended = state.phase.is_terminal() && state.started_at != w.run;
            let answer = if w.busy || fresh || (ended && state.phase != SyncPhase::Error) {
                Ok(StartAnswer {
                    sync_id: state.sync_id.clone(),
                    coalesced: w.busy,
                })
            } else if let (SyncPhase::Error, Some(error)) = (state.phase, &state.error) {
                Err(made(error.code, &error.message))
            } else {
                still.push(w);
                continue;
            };
            self.out.push_back(Output::StartAnswered {
                caller: w.caller,
                answer,
            });
        }
        self.starts = still;
        // Idle too: a dismiss can overtake the end it dismissed (states
        // of two leaders, one dead, cross on the channel).
        if !self.state.phase.is_running() {
            let ended = self.state.phase == SyncPhase::Cancelled;
            self.settle_cancels(if ended {
                Ok(())
            } else {
                Err(already_finished())
            });
        }
    }

    /// This tab leads now: the presses it sent the old leader are
    /// answered by what it shows (the job the old leader started, or how
    /// its run ended); a press the old leader never showed is carried out
    /// here, under its key (the server answers a key it saw with the job
    /// it started then, so a press the old leader did start is not started
    /// twice).
    fn answer_when_leading(&mut self, now: u64) {
        self.answer_from_leader();
        let (forwarded, own): (Vec<_>, Vec<_>) = std::mem::take(&mut self.starts)
            .into_iter()
            .partition(|w| w.forward.is_some());
        self.starts = own;
        for mut w in forwarded {
            w.forward = None;
            let (kind, key) = (w.kind, w.key.clone());
            if self.keys.contains(&key) {
                // Carried out here before (this tab led then): the run
                // shown is its answer.
                self.out.push_back(Output::StartAnswered {
                    caller: w.caller,
                    answer: Ok(StartAnswer {
                        sync_id: self.state.sync_id.clone(),
                        coalesced: false,
                    }),
                });
                continue;
            }
            self.starts.push(w);
            self.press(kind, key, now);
        }
        if !self.cancelling {
            let lost = made(
                ErrorCode::Closed,
                "the tab that was to carry this out closed first",
            );
            self.settle_cancels(Err(lost));
        }
    }

    fn answer_starts(&mut self, sync_id: Option<String>, coalesced: bool) {
        for w in std::mem::take(&mut self.starts) {
            self.out.push_back(Output::StartAnswered {
                caller: w.caller,
                answer: Ok(StartAnswer {
                    sync_id: sync_id.clone(),
                    coalesced,
                }),
            });
        }
    }

    fn settle_cancels(&mut self, answer: Result<(), Failure>) {
        for caller in std::mem::take(&mut self.cancels) {
            self.out.push_back(Output::CancelAnswered {
                caller,
                answer: answer.clone(),
            });
        }
    }
}

/// An error made here, not answered by a server.
fn made(code: ErrorCode, message: &str) -> Failure {
    Failure::Answer(Box::new(Refusal {
        status: None,
        code,
        transient: false,
        retry_after_ms: None,
        message: message.to_owned(),
        current: None,
        details: None,
    }))
}

fn already_finished() -> Failure {
    made(ErrorCode::AlreadyFinished, "no sync is running")
}
