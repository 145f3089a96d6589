//! Runs the sync-progress reducer ([`crate::core::progress`]) with fetch,
//! one timer, IndexedDB and the tab channel.
//!
//! Only the leader tab drives the reducer: it posts starts, polls the job,
//! stores the followed job id and the history, and sends every new state to
//! the other tabs. A follower shows the leader's states and forwards its
//! presses as [`SyncCommand`]s.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use gloo_timers::callback::Timeout;
use js_sys::{Function, Promise};
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::spawn_local;

use crate::core::progress::{
    reduce, ServerSyncStatus, StoredSyncJob, SyncConfig, SyncEffect, SyncEvent, SyncHistoryEntry,
    SyncKind, SyncOutcome, SyncPhase, SyncSheetConflict, SyncState,
};
use crate::core::tab_message::{SyncCommand, TabMessage};
use crate::error::{Error, ErrorCode};
use crate::web::channel::EnvelopeChannel;
use crate::web::client::{encode, Client};
use crate::web::clock::{now_ms, uuid_v4};
use crate::web::http::{send, Method};
use crate::web::idb::Store;
use crate::web::js::{from_server, get, to_js};

/// The key of the followed job in the user's `meta` store.
const JOB_KEY: &str = "sync-job";
/// The key of the shared schedule in the user's `meta` store.
const SCHEDULE_KEY: &str = "sync-schedule";
/// `schedule()` without an interval runs a sync every two hours.
pub const DEFAULT_SCHEDULE_MS: u64 = 2 * 60 * 60 * 1000;
/// Shorter schedules are refused: a sync job is not a heartbeat.
pub const MIN_SCHEDULE_MS: u64 = 1_000;

/// The user's sync schedule, kept in IndexedDB and shared by their tabs:
/// whichever tab leads starts the run that is due, and claims it in the
/// same transaction that moves `next_at` on, so no run is doubled and
/// none is lost when the leader changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncSchedule {
    /// Time between runs.
    pub interval_ms: u64,
    /// Which way the runs copy.
    pub kind: SyncKind,
    /// When the next run is due (ms since the epoch).
    pub next_at: u64,
}

#[derive(Default, Clone, Copy)]
struct SyncCounts {
    started: u64,
    completed: u64,
    failed: u64,
    total_ms: u64,
    finished: u64,
}

/// A start caller waiting for its answer.
struct StartWaiter {
    resolve: Function,
    reject: Function,
    /// Whether a run was going on when the press came (a follower's press
    /// is answered `coalesced` then).
    busy: bool,
    /// The job shown when the press came: a follower's press is answered
    /// with the first other job the leader shows (the one it started).
    seen: Option<String>,
}

/// A `cancel()` caller, settled with the server's answer.
struct CancelWaiter {
    resolve: Function,
    reject: Function,
}

/// The sync follower of one client.
pub struct SyncRunner {
    client: Client,
    config: SyncConfig,
    state: RefCell<SyncState>,
    snapshot: RefCell<Option<JsValue>>,
    listeners: js_sys::Set,
    timer: RefCell<Option<Timeout>>,
    bus: RefCell<Option<Rc<EnvelopeChannel>>>,
    waiters: RefCell<Vec<StartWaiter>>,
    cancels: RefCell<Vec<CancelWaiter>>,
    /// A `DELETE /api/sync/{id}` is under way.
    cancelling: Cell<bool>,
    counts: Cell<SyncCounts>,
    /// The timer of the next scheduled run.
    schedule: RefCell<Option<Timeout>>,
    /// The schedule as last read or written.
    planned: RefCell<Option<SyncSchedule>>,
    /// Counts this tab's writes of the schedule: a read that began before
    /// one is older than it and is not taken.
    schedule_writes: Cell<u64>,
    me: RefCell<Weak<SyncRunner>>,
}

impl SyncRunner {
    /// A runner for `client`, idle.
    pub fn new(client: Client, config: SyncConfig) -> Rc<SyncRunner> {
        let runner = Rc::new(SyncRunner {
            client,
            config,
            state: RefCell::new(SyncState::default()),
            snapshot: RefCell::new(None),
            listeners: js_sys::Set::new(&JsValue::UNDEFINED),
            timer: RefCell::new(None),
            bus: RefCell::new(None),
            waiters: RefCell::new(Vec::new()),
            cancels: RefCell::new(Vec::new()),
            cancelling: Cell::new(false),
            counts: Cell::new(SyncCounts::default()),
            schedule: RefCell::new(None),
            planned: RefCell::new(None),
            schedule_writes: Cell::new(0),
            me: RefCell::new(Weak::new()),
        });
        *runner.me.borrow_mut() = Rc::downgrade(&runner);
        runner
    }

    fn me(&self) -> Option<Rc<SyncRunner>> {
        self.me.borrow().upgrade()
    }

    /// The channel to the other tabs. A tab that does not lead yet asks
    /// the leader for its sync state through it ([`SyncEvent::Follow`]).
    pub fn set_bus(&self, bus: Option<Rc<EnvelopeChannel>>) {
        let follows = bus.is_some();
        *self.bus.borrow_mut() = bus;
        if follows && !self.client.is_leader() {
            self.dispatch(SyncEvent::Follow { now: now_ms() });
        }
    }

    /// `crm.sync.state`: the same object until the state changes.
    pub fn state_js(&self) -> JsValue {
        if let Some(s) = self.snapshot.borrow().as_ref() {
            return s.clone();
        }
        let value = to_js(&*self.state.borrow()).unwrap_or(JsValue::UNDEFINED);
        *self.snapshot.borrow_mut() = Some(value.clone());
        value
    }

    /// Adds a state listener; returns its unsubscribe function.
    pub fn subscribe(&self, listener: &Function) -> Function {
        crate::web::client::subscribe_fn(&self.listeners, listener)
    }

    /// The runs this tab counted, by their `metrics()` counter names.
    pub fn counters(&self) -> crate::core::counters::Counters {
        let c = self.counts.get();
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

    fn dispatch(&self, event: SyncEvent) {
        let current = self.state.replace(SyncState::default());
        let (next, effects) = reduce(current, event, &self.config);
        *self.state.borrow_mut() = next;
        for effect in effects {
            self.run(effect);
        }
    }

    fn run(&self, effect: SyncEffect) {
        let Some(me) = self.me() else { return };
        match effect {
            SyncEffect::PostStart { run, kind } => {
                let mut c = self.counts.get();
                c.started += 1;
                self.counts.set(c);
                spawn_local(async move { me.post_start(run, kind).await });
            }
            SyncEffect::Coalesced { sync_id } => self.answer_waiters(sync_id, "coalesced"),
            SyncEffect::SchedulePoll { at_ms } => {
                let delay = at_ms.saturating_sub(now_ms());
                let weak = Rc::downgrade(&me);
                let timer = Timeout::new(u32::try_from(delay).unwrap_or(u32::MAX), move || {
                    if let Some(runner) = weak.upgrade() {
                        runner.dispatch(SyncEvent::PollTick { now: now_ms() });
                    }
                });
                *self.timer.borrow_mut() = Some(timer);
            }
            SyncEffect::Poll {
                sync_id,
                timeout_ms,
            } => spawn_local(async move { me.poll(sync_id, timeout_ms).await }),
            SyncEffect::SendCancel { sync_id } => {
                self.cancelling.set(true);
                spawn_local(async move { me.cancel_job(sync_id).await })
            }
            SyncEffect::Broadcast(state) => {
                if let Some(bus) = self.bus.borrow().as_ref() {
                    let _ = bus.post(TabMessage::SyncState(state));
                }
            }
            SyncEffect::StoreJob(job) => spawn_local(async move {
                if let Some(db) = me.client.db() {
                    let _ = match job {
                        Some(job) => db.put(Store::Meta, JOB_KEY, &job).await,
                        None => db.delete(Store::Meta, JOB_KEY).await,
                    };
                }
            }),
            SyncEffect::RecordHistory(entry) => {
                let mut c = self.counts.get();
                match entry.status {
                    SyncOutcome::Complete => c.completed += 1,
                    SyncOutcome::Error => c.failed += 1,
                    SyncOutcome::Cancelled => {}
                }
                c.total_ms += entry.duration_ms;
                c.finished += 1;
                self.counts.set(c);
                if entry.status == SyncOutcome::Complete {
                    let at = js_sys::Date::new(&JsValue::from(entry.finished_at as f64));
                    self.client.set_last_sync_at(at.to_iso_string().as_string());
                }
                spawn_local(async move {
                    if let Some(db) = me.client.db() {
                        let key = format!("{:016}-{}", entry.finished_at, uuid_v4());
                        let _ = db.put(Store::SyncLog, &key, &entry).await;
                    }
                });
            }
            SyncEffect::Notify => self.notify(),
            SyncEffect::AskState => {
                if let Some(bus) = self.bus.borrow().as_ref() {
                    let _ = bus.post(TabMessage::SyncCommand(SyncCommand::Show));
                }
            }
        }
    }

    fn notify(&self) {
        self.snapshot.borrow_mut().take();
        let state = self.state_js();
        crate::web::client::emit_fn(&self.listeners, &state);
        if !self.client.is_leader() {
            self.answer_follower_waiters();
        }
    }

    /// A follower hears how its presses went through the leader's states:
    /// a start is answered once the leader shows the job it started (or
    /// the run it was folded into), or fails with the run's error; a
    /// cancel once the run ended.
    fn answer_follower_waiters(&self) {
        let state = self.state.borrow().clone();
        let waiters: Vec<StartWaiter> = self.waiters.borrow_mut().drain(..).collect();
        let mut still = Vec::new();
        for w in waiters {
            let fresh = state.sync_id.is_some() && state.sync_id != w.seen;
            if w.busy || fresh {
                let status = if w.busy { "coalesced" } else { "queued" };
                let _ = w.resolve.call1(
                    &JsValue::UNDEFINED,
                    &start_answer(state.sync_id.as_deref(), status),
                );
            } else if let (SyncPhase::Error, Some(error)) = (state.phase, &state.error) {
                let err = sync_error(error.code, &error.message);
                let _ = w.reject.call1(&JsValue::UNDEFINED, &JsValue::from(err));
            } else {
                still.push(w);
            }
        }
        self.waiters.borrow_mut().extend(still);
        if state.phase.is_terminal() {
            let ended = if state.phase == SyncPhase::Cancelled {
                Ok(())
            } else {
                Err(already_finished())
            };
            self.settle_cancels(&ended);
        }
    }

    fn settle_cancels(&self, result: &Result<(), Error>) {
        let waiters: Vec<CancelWaiter> = self.cancels.borrow_mut().drain(..).collect();
        for w in waiters {
            let _ = match result {
                Ok(()) => w.resolve.call0(&JsValue::UNDEFINED),
                Err(e) => w
                    .reject
                    .call1(&JsValue::UNDEFINED, &JsValue::from(e.clone())),
            };
        }
    }

    fn answer_waiters(&self, sync_id: Option<String>, status: &str) {
        let waiters: Vec<StartWaiter> = self.waiters.borrow_mut().drain(..).collect();
        for w in waiters {
            let _ = w.resolve.call1(
                &JsValue::UNDEFINED,
                &start_answer(sync_id.as_deref(), status),
            );
        }
    }

    fn fail_waiters(&self, err: &Error) {
        let waiters: Vec<StartWaiter> = self.waiters.borrow_mut().drain(..).collect();
        for w in waiters {
            let _ = w
                .reject
                .call1(&JsValue::UNDEFINED, &JsValue::from(err.clone()));
        }
    }

    async fn post_start(&self, run: u64, kind: SyncKind) {
        // One key for every attempt of this start: a retry after a lost
        // answer never queues a second job.
        let answer = match self.client.request(Method::Post, "/sync") {
            Ok(mut req) => {
                let body = js_sys::Object::new();
                let _ = js_sys::Reflect::set(&body, &"kind".into(), &kind_str(kind).into());
                req.body = Some(body.into());
                req.idempotency_key = Some(uuid_v4());
                self.client.send_with_retry(&req).await
            }
            Err(e) => Err(e),
        };
        let sync_id = answer.and_then(|body| {
            get(&body, "syncId")
                .as_string()
                .ok_or_else(|| Error::BadResponse("no syncId in the answer".into()))
        });
        match sync_id {
            Ok(sync_id) => {
                self.answer_waiters(Some(sync_id.clone()), "queued");
                self.dispatch(SyncEvent::StartAccepted {
                    run,
                    sync_id,
                    now: now_ms(),
                });
            }
            Err(err) => {
                if err.code() == ErrorCode::Unauthorized {
                    self.client.session_expired();
                }
                self.fail_waiters(&err);
                self.dispatch(SyncEvent::StartFailed {
                    run,
                    code: err.code(),
                    message: err.to_string(),
                    now: now_ms(),
                });
            }
        }
    }

    async fn poll(&self, sync_id: String, timeout_ms: u64) {
        let now = now_ms;
        let answer = match self
            .client
            .request(Method::Get, &format!("/sync/{}", encode(&sync_id)))
        {
            Ok(mut req) => {
                req.timeout_ms = u32::try_from(timeout_ms).unwrap_or(u32::MAX);
                send(&req).await.map(|r| r.body)
            }
            Err(e) => Err(e),
        };
        match answer.and_then(from_server::<ServerSyncStatus>) {
            Ok(status) => self.dispatch(SyncEvent::PollResult {
                sync_id,
                status: Box::new(status),
                now: now(),
            }),
            Err(err) => {
                if err.code() == ErrorCode::Unauthorized {
                    self.client.session_expired();
                }
                self.dispatch(SyncEvent::PollFailed {
                    sync_id,
                    code: err.code(),
                    now: now(),
                })
            }
        }
    }

    async fn cancel_job(&self, sync_id: String) {
        let answer = match self
            .client
            .request(Method::Delete, &format!("/sync/{}", encode(&sync_id)))
        {
            Ok(req) => send(&req).await.map(|r| r.body),
            Err(e) => Err(e),
        };
        self.cancelling.set(false);
        self.settle_cancels(&answer.as_ref().map(|_| ()).map_err(Clone::clone));
        match answer {
            Ok(body) => self.dispatch(SyncEvent::CancelDone {
                sync_id,
                // The job as it stopped: its counts are the rows it wrote.
                status: from_server::<ServerSyncStatus>(body).ok().map(Box::new),
                now: now_ms(),
            }),
            Err(err) => self.dispatch(SyncEvent::CancelFailed {
                sync_id,
                code: err.code(),
                now: now_ms(),
            }),
        }
    }

    /// `crm.sync.start(kind)`: resolves once the server queued the job (or
    /// the press was folded into a follow-up run).
    pub fn start(&self, kind: SyncKind) -> Promise {
        let busy = self.state.borrow().phase.is_running();
        let seen = self.state.borrow().sync_id.clone();
        let mut slot = None;
        let promise = Promise::new(&mut |resolve, reject| slot = Some((resolve, reject)));
        if let Some((resolve, reject)) = slot {
            self.waiters.borrow_mut().push(StartWaiter {
                resolve,
                reject,
                busy,
                seen,
            });
        }
        if self.client.is_leader() {
            self.dispatch(SyncEvent::StartPressed {
                kind,
                now: now_ms(),
            });
        } else {
            self.forward(SyncCommand::Start { kind });
        }
        promise
    }

    /// `crm.sync.cancel()`: settles when the server answered the cancel
    /// (in a tab that does not lead: when the leader shows the run ended);
    /// rejects `already_finished` when no run is going on, or with the
    /// server's error (`already_finished`, `network`, ...).
    pub fn cancel(&self) -> Promise {
        if !self.state.borrow().phase.is_running() {
            return Promise::reject(&JsValue::from(already_finished()));
        }
        let mut slot = None;
        let promise = Promise::new(&mut |resolve, reject| slot = Some((resolve, reject)));
        if let Some((resolve, reject)) = slot {
            self.cancels
                .borrow_mut()
                .push(CancelWaiter { resolve, reject });
        }
        if self.client.is_leader() {
            self.dispatch(SyncEvent::CancelPressed { now: now_ms() });
            // Cancelled before the server named the job: nothing to ask it.
            if !self.cancelling.get() {
                let ended = self.state.borrow().phase == SyncPhase::Cancelled;
                self.settle_cancels(&if ended {
                    Ok(())
                } else {
                    Err(already_finished())
                });
            }
        } else {
            self.forward(SyncCommand::Cancel);
        }
        promise
    }

    /// `crm.sync.dismiss()`.
    pub fn dismiss(&self) {
        if self.client.is_leader() {
            self.dispatch(SyncEvent::Dismiss { now: now_ms() });
        } else {
            self.forward(SyncCommand::Dismiss);
        }
    }

    fn forward(&self, command: SyncCommand) {
        let sent = self
            .bus
            .borrow()
            .as_ref()
            .map(|bus| bus.post(TabMessage::SyncCommand(command)));
        if !matches!(sent, Some(Ok(()))) {
            // No channel (or no leader yet): act here rather than lose it.
            let now = now_ms();
            self.dispatch(match command {
                SyncCommand::Start { kind } => SyncEvent::StartPressed { kind, now },
                SyncCommand::Cancel => SyncEvent::CancelPressed { now },
                SyncCommand::Dismiss => SyncEvent::Dismiss { now },
                // Written to IndexedDB already, or only for a leader.
                SyncCommand::Reschedule | SyncCommand::Show => return,
            });
        }
    }

    /// A message from another tab.
    pub fn on_tab_message(&self, message: &TabMessage) {
        match message {
            // The leader too: the reducer takes from another tab's state
            // only how far the run it drives got.
            TabMessage::SyncState(state) => {
                self.dispatch(SyncEvent::RemoteState {
                    state: state.clone(),
                    now: now_ms(),
                });
            }
            TabMessage::SyncCommand(SyncCommand::Reschedule) => {
                if let Some(me) = self.me() {
                    spawn_local(async move { me.restore_schedule().await });
                }
            }
            TabMessage::SyncCommand(command) if self.client.is_leader() => {
                let now = now_ms();
                self.dispatch(match *command {
                    SyncCommand::Start { kind } => SyncEvent::StartPressed { kind, now },
                    SyncCommand::Cancel => SyncEvent::CancelPressed { now },
                    SyncCommand::Dismiss => SyncEvent::Dismiss { now },
                    SyncCommand::Show => SyncEvent::StateAsked { now },
                    SyncCommand::Reschedule => return,
                });
            }
            _ => {}
        }
    }

    /// This tab became leader: go on following a job a closed leader (or
    /// this tab before a reload) left in IndexedDB, or settle a run this tab
    /// shows as going that none is stored for ([`SyncEvent::Lead`]).
    pub async fn on_leadership(&self) {
        self.restore_schedule().await;
        let job = match self.client.db() {
            Some(db) => {
                let stored: Result<Option<StoredSyncJob>, Error> =
                    db.get(Store::Meta, JOB_KEY).await;
                stored.ok().flatten()
            }
            None => None,
        };
        self.dispatch(SyncEvent::Lead { job, now: now_ms() });
    }

    /// `crm.sync.history()`: finished runs, newest first: those this
    /// browser followed (IndexedDB) and, when the server can be reached,
    /// the user's recent jobs it lists (`GET /api/sync`), so a fresh
    /// browser shows past runs too.
    pub async fn history(&self) -> Result<JsValue, Error> {
        let mut list: Vec<SyncHistoryEntry> = match self.client.db() {
            Some(db) => db
                .all::<SyncHistoryEntry>(Store::SyncLog)
                .await?
                .into_iter()
                .map(|(_, e)| e)
                .collect(),
            None => Vec::new(),
        };
        if self.client.is_online() {
            let listed = match self.client.request(Method::Get, "/sync") {
                Ok(req) => send(&req).await.map(|r| get(&r.body, "items")),
                Err(e) => Err(e),
            };
            if let Ok(items) = listed.and_then(from_server::<Vec<ServerSyncStatus>>) {
                for line in items.iter().filter_map(ServerSyncStatus::as_history) {
                    let known = line
                        .sync_id
                        .as_ref()
                        .and_then(|id| list.iter_mut().find(|l| l.sync_id.as_ref() == Some(id)));
                    match known {
                        // Followed here: the server's list adds which rows
                        // conflicted, and its counts and words are the job's
                        // final ones (a run that ended with a poll before the
                        // job did shows what it saw then).
                        Some(kept) => {
                            if kept.conflict_rows.is_empty() {
                                kept.conflict_rows = line.conflict_rows;
                            }
                            if line.stats.is_some() && kept.status == line.status {
                                kept.stats = line.stats;
                                kept.message = line.message;
                            }
                        }
                        None => list.push(line),
                    }
                }
            }
        }
        crate::core::sort::sort_by(&mut list, |a, b| b.finished_at.cmp(&a.finished_at));
        to_js(&list)
    }

    /// `crm.sync.conflicts(syncId)`: field by field, the sheet rows the
    /// job did not apply because the record changed in the CRM since the
    /// last sync (`GET /api/sync/{syncId}/conflicts`).
    ///
    /// # Errors
    /// `forbidden` (another user's job), `sync_not_found` (unknown, expired
    /// or lost in a server restart), `network`, `offline`, `bad_response`, ...
    pub async fn conflicts(&self, sync_id: &str) -> Result<JsValue, Error> {
        let path = format!("/sync/{}/conflicts", encode(sync_id));
        let body = send(&self.client.request(Method::Get, &path)?).await?.body;
        let items: Vec<SyncSheetConflict> = from_server(get(&body, "items"))?;
        to_js(&items)
    }

    /// `crm.sync.schedule(ms | null, kind)`: a sync every `ms` from now on
    /// (`None`: stop), kept in IndexedDB so it survives reloads, and
    /// carried out by whichever tab leads.
    ///
    /// # Errors
    /// [`Error::Storage`] when IndexedDB refused the write.
    pub async fn schedule(&self, interval_ms: Option<u64>, kind: SyncKind) -> Result<(), Error> {
        let plan = interval_ms.map(|ms| SyncSchedule {
            interval_ms: ms,
            kind,
            next_at: now_ms().saturating_add(ms),
        });
        self.schedule_writes.set(self.schedule_writes.get() + 1);
        if let Some(db) = self.client.db() {
            match &plan {
                Some(plan) => db.put(Store::Meta, SCHEDULE_KEY, plan).await?,
                None => db.delete(Store::Meta, SCHEDULE_KEY).await?,
            }
        }
        *self.planned.borrow_mut() = plan;
        self.arm();
        if let Some(bus) = self.bus.borrow().as_ref() {
            let _ = bus.post(TabMessage::SyncCommand(SyncCommand::Reschedule));
        }
        Ok(())
    }

    /// `crm.sync.scheduled`: `{ intervalMs, kind, nextAt }`, or `null`.
    pub fn scheduled_js(&self) -> JsValue {
        match &*self.planned.borrow() {
            Some(plan) => to_js(plan).unwrap_or(JsValue::NULL),
            None => JsValue::NULL,
        }
    }

    /// Reads the schedule from IndexedDB (at start, on leadership, when
    /// another tab changed it) and sets the timer.
    pub async fn restore_schedule(&self) {
        let writes = self.schedule_writes.get();
        if let Some(db) = self.client.db() {
            if let Ok(plan) = db.get::<SyncSchedule>(Store::Meta, SCHEDULE_KEY).await {
                if self.schedule_writes.get() == writes {
                    *self.planned.borrow_mut() = plan;
                }
            }
        }
        self.arm();
    }

    /// Sets the one timer for the next scheduled run.
    fn arm(&self) {
        let Some(at) = self.planned.borrow().as_ref().map(|p| p.next_at) else {
            self.schedule.borrow_mut().take();
            return;
        };
        let delay = at.saturating_sub(now_ms()).saturating_add(20);
        let weak = self.me.borrow().clone();
        let timer = Timeout::new(u32::try_from(delay).unwrap_or(u32::MAX), move || {
            if let Some(runner) = weak.upgrade() {
                spawn_local(async move { runner.run_due().await });
            }
        });
        *self.schedule.borrow_mut() = Some(timer);
    }

    /// The timer fired. The leader claims the due run in IndexedDB (moving
    /// `next_at` on in the same transaction, so of two tabs that both
    /// think they lead only one starts it) and starts it; every tab then
    /// re-arms from what is stored.
    async fn run_due(&self) {
        let leads = self.client.is_leader() && self.client.is_online();
        let now = now_ms();
        let claimed = match self.client.db() {
            Some(db) if leads => {
                let meta = Store::Meta.name();
                db.db()
                    .read_modify_write(&[meta], meta, SCHEDULE_KEY, |current| {
                        let stored: Option<SyncSchedule> =
                            current.and_then(|v| crate::web::de::from_js(v).ok());
                        let mut batch = crate::web::idb::Batch::new();
                        let due = stored.filter(|p| p.next_at <= now).map(|mut p| {
                            p.next_at = now.saturating_add(p.interval_ms);
                            p
                        });
                        if let Some(next) = &due {
                            batch.put(meta, SCHEDULE_KEY, next)?;
                        }
                        Ok::<_, Error>((batch, due))
                    })
                    .await
                    .ok()
                    .flatten()
            }
            // In memory only: this tab's schedule is the only one.
            None if leads => {
                let mut planned = self.planned.borrow_mut();
                match planned.as_mut().filter(|p| p.next_at <= now) {
                    Some(p) => {
                        p.next_at = now.saturating_add(p.interval_ms);
                        Some(p.clone())
                    }
                    None => None,
                }
            }
            _ => None,
        };
        if let Some(plan) = &claimed {
            self.dispatch(SyncEvent::ScheduledStart {
                kind: plan.kind,
                now,
            });
        }
        self.restore_schedule().await;
    }

    /// Stops the timers.
    pub fn close(&self) {
        self.timer.borrow_mut().take();
        self.schedule.borrow_mut().take();
        self.fail_waiters(&Error::Closed);
        self.settle_cancels(&Err(Error::Closed));
    }
}

fn already_finished() -> Error {
    sync_error(ErrorCode::AlreadyFinished, "no sync is running")
}

fn sync_error(code: ErrorCode, message: &str) -> Error {
    Error::Http {
        code,
        status: 0,
        message: message.to_owned(),
        details: JsValue::UNDEFINED,
        retry_after_ms: None,
    }
}

fn start_answer(sync_id: Option<&str>, status: &str) -> JsValue {
    let o = js_sys::Object::new();
    let _ = js_sys::Reflect::set(
        &o,
        &"syncId".into(),
        &sync_id.map_or(JsValue::NULL, JsValue::from_str),
    );
    let _ = js_sys::Reflect::set(&o, &"status".into(), &status.into());
    o.into()
}

fn kind_str(kind: SyncKind) -> &'static str {
    match kind {
        SyncKind::FromSheet => "from-sheet",
        SyncKind::ToSheet => "to-sheet",
    }
}
