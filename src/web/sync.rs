//! The page's side of the sync-jobs runner ([`crate::core::progress::runner`]):
//! fetch, one timer, IndexedDB and the tab channel, and the bindings of
//! `crm.sync`. Every decision (who carries out a press, when a start is
//! tried again, a 401, how a caller is answered, when a scheduled run is
//! due) is the [`SyncMachine`]'s; this file only does what it asks and
//! reports what happened.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use gloo_timers::callback::Timeout;
use js_sys::{Function, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::spawn_local;

use crate::core::engine::{Failure, IdSource};
use crate::core::progress::runner::{self, Io};
use crate::core::progress::{
    merge_history, Input, Output, ServerSyncStatus, StartAnswer, StoredSyncJob, SyncConfig,
    SyncHistoryEntry, SyncKind, SyncMachine, SyncRequest, SyncSchedule, SyncSheetConflict,
};
use crate::core::tab_message::TabMessage;
use crate::core::vecmap::VecMap;
use crate::error::Error;
use crate::web::channel::EnvelopeChannel;
use crate::web::client::{encode, refusal_of, Client};
use crate::web::clock::{now_ms, uuid_v4};
use crate::web::http::{send, Method};
use crate::web::idb::Store;
use crate::web::js::{from_server, get, to_js};

pub use crate::core::progress::{DEFAULT_SCHEDULE_MS, MIN_SCHEDULE_MS};

/// The key of the followed job in the user's `meta` store.
const JOB_KEY: &str = "sync-job";
/// The key of the shared schedule in the user's `meta` store.
const SCHEDULE_KEY: &str = "sync-schedule";

/// The sync jobs of one client.
pub struct SyncRunner {
    client: Client,
    machine: RefCell<SyncMachine>,
    snapshot: RefCell<Option<JsValue>>,
    listeners: js_sys::Set,
    timer: RefCell<Option<(u64, Timeout)>>,
    bus: RefCell<Option<Rc<EnvelopeChannel>>>,
    /// The promises of `start()` and `cancel()` callers, by caller.
    callers: RefCell<VecMap<u64, (Function, Function)>>,
    next_caller: Cell<u64>,
    me: RefCell<Weak<SyncRunner>>,
}

/// The page as the runner's [`Io`].
struct Page(Rc<SyncRunner>);

impl SyncRunner {
    /// A runner for `client`, idle.
    pub fn new(client: Client, config: SyncConfig) -> Rc<SyncRunner> {
        let seed = u64::from_str_radix(&uuid_v4().replace('-', "")[..16], 16).unwrap_or(0);
        let machine = SyncMachine::new(config, client.retry_policy(), IdSource::new(seed));
        let runner = Rc::new(SyncRunner {
            client,
            machine: RefCell::new(machine),
            snapshot: RefCell::new(None),
            listeners: js_sys::Set::new(&JsValue::UNDEFINED),
            timer: RefCell::new(None),
            bus: RefCell::new(None),
            callers: RefCell::new(VecMap::new()),
            next_caller: Cell::new(0),
            me: RefCell::new(Weak::new()),
        });
        *runner.me.borrow_mut() = Rc::downgrade(&runner);
        runner
    }

    /// Hands `input` to the machine and carries out what follows.
    fn handle(&self, input: Input) {
        if let Some(me) = self.me.borrow().upgrade() {
            runner::handle(&mut Page(me), input);
        }
    }

    /// The channel to the other tabs. A tab that does not lead yet asks
    /// the leader for its sync state through it.
    pub fn set_bus(&self, bus: Option<Rc<EnvelopeChannel>>) {
        let open = bus.is_some();
        *self.bus.borrow_mut() = bus;
        self.handle(Input::Channel(open));
    }

    /// `crm.sync.state`: the same object until the state changes.
    pub fn state_js(&self) -> JsValue {
        if let Some(s) = self.snapshot.borrow().as_ref() {
            return s.clone();
        }
        let value = to_js(self.machine.borrow().state()).unwrap_or(JsValue::UNDEFINED);
        *self.snapshot.borrow_mut() = Some(value.clone());
        value
    }

    /// Adds a state listener; returns its unsubscribe function.
    pub fn subscribe(&self, listener: &Function) -> Function {
        crate::web::client::subscribe_fn(&self.listeners, listener)
    }

    /// The runs this tab counted, by their `metrics()` counter names.
    pub fn counters(&self) -> crate::core::counters::Counters {
        self.machine.borrow().counters()
    }

    /// A promise whose settling the machine decides, and its caller.
    fn caller(&self) -> (u64, Promise) {
        let caller = self.next_caller.get();
        self.next_caller.set(caller.wrapping_add(1));
        let mut slot = None;
        let promise = Promise::new(&mut |resolve, reject| slot = Some((resolve, reject)));
        if let Some(pair) = slot {
            self.callers.borrow_mut().insert(caller, pair);
        }
        (caller, promise)
    }

    /// `crm.sync.start(kind)`: resolves once the server queued the job (or
    /// the press was folded into a follow-up run).
    pub fn start(&self, kind: SyncKind) -> Promise {
        let (caller, promise) = self.caller();
        self.handle(Input::Start { kind, caller });
        promise
    }

    /// `crm.sync.cancel()`: settles when the server answered the cancel
    /// (in a tab that does not lead: when the leader shows the run ended);
    /// rejects `already_finished` when no run is going on, or with the
    /// server's error (`already_finished`, `network`, ...).
    pub fn cancel(&self) -> Promise {
        let (caller, promise) = self.caller();
        self.handle(Input::Cancel { caller });
        promise
    }

    /// `crm.sync.dismiss()`.
    pub fn dismiss(&self) {
        self.handle(Input::Dismiss);
    }

    /// A message from another tab.
    pub fn on_tab_message(&self, message: &TabMessage) {
        self.handle(Input::Tab(message.clone()));
    }

    /// This tab became leader: the machine reads the stored job and the
    /// schedule and goes on with them.
    pub fn on_leadership(&self) {
        self.handle(Input::Leading);
    }

    /// `crm.sync.history()`: finished runs, newest first: those this
    /// browser followed (IndexedDB) and, when the server can be reached,
    /// the user's recent jobs it lists (`GET /api/sync`), so a fresh
    /// browser shows past runs too.
    pub async fn history(&self) -> Result<JsValue, Error> {
        let kept: Vec<SyncHistoryEntry> = match self.client.db() {
            Some(db) => db
                .all::<SyncHistoryEntry>(Store::SyncLog)
                .await?
                .into_iter()
                .map(|(_, e)| e)
                .collect(),
            None => Vec::new(),
        };
        let mut listed = Vec::new();
        if self.client.is_online() {
            let answer = match self.client.request(Method::Get, "/sync") {
                Ok(req) => send(&req).await.map(|r| get(&r.body, "items")),
                Err(e) => Err(e),
            };
            if let Ok(items) = answer.and_then(from_server::<Vec<ServerSyncStatus>>) {
                listed = items;
            }
        }
        to_js(&merge_history(kept, &listed))
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
        let plan = interval_ms.map(|ms| SyncSchedule::every(ms, kind, now_ms()));
        self.handle(Input::Rescheduling);
        if let Some(db) = self.client.db() {
            match &plan {
                Some(plan) => db.put(Store::Meta, SCHEDULE_KEY, plan).await?,
                None => db.delete(Store::Meta, SCHEDULE_KEY).await?,
            }
        }
        self.handle(Input::Scheduled(plan));
        Ok(())
    }

    /// `crm.sync.scheduled`: `{ intervalMs, kind, nextAt }`, or `null`.
    pub fn scheduled_js(&self) -> JsValue {
        match self.machine.borrow().schedule() {
            Some(plan) => to_js(plan).unwrap_or(JsValue::NULL),
            None => JsValue::NULL,
        }
    }

    /// Stops the timer; every caller still waiting is told `closed`.
    pub fn close(&self) {
        self.handle(Input::Closed);
        self.timer.borrow_mut().take();
    }

    fn settle(&self, caller: u64, answer: Result<JsValue, Failure>) {
        let Some((resolve, reject)) = self.callers.borrow_mut().remove(&caller) else {
            return;
        };
        let _ = match answer {
            Ok(value) => resolve.call1(&JsValue::UNDEFINED, &value),
            Err(failure) => reject.call1(
                &JsValue::UNDEFINED,
                &JsValue::from(self.client.error_of(failure)),
            ),
        };
    }
}

impl Io for Page {
    fn now(&self) -> u64 {
        now_ms()
    }

    fn online(&self) -> bool {
        self.0.client.is_online()
    }

    fn with_machine<R>(&mut self, f: impl FnOnce(&mut SyncMachine) -> R) -> Option<R> {
        let mut machine = self.0.machine.try_borrow_mut().ok()?;
        Some(f(&mut machine))
    }

    fn request(&mut self, request: SyncRequest) {
        let me = Rc::clone(&self.0);
        spawn_local(async move {
            let input = me.exchange(request).await;
            me.handle(input);
        });
    }

    fn store_job(&mut self, job: Option<StoredSyncJob>) {
        let Some(db) = self.0.client.db() else { return };
        spawn_local(async move {
            let _ = match job {
                Some(job) => db.put(Store::Meta, JOB_KEY, &job).await,
                None => db.delete(Store::Meta, JOB_KEY).await,
            };
        });
    }

    fn record_history(&mut self, entry: SyncHistoryEntry) {
        let Some(db) = self.0.client.db() else { return };
        spawn_local(async move {
            let key = format!("{:016}-{}", entry.finished_at, uuid_v4());
            let _ = db.put(Store::SyncLog, &key, &entry).await;
        });
    }

    fn post(&mut self, message: TabMessage) {
        if let Some(bus) = self.0.bus.borrow().as_ref() {
            let _ = bus.post(message);
        }
    }

    fn read_job(&mut self) {
        let me = Rc::clone(&self.0);
        spawn_local(async move {
            let job = match me.client.db() {
                Some(db) => db
                    .get::<StoredSyncJob>(Store::Meta, JOB_KEY)
                    .await
                    .ok()
                    .flatten(),
                None => None,
            };
            me.handle(Input::JobRead(job));
        });
    }

    fn read_schedule(&mut self, writes: u64) {
        let me = Rc::clone(&self.0);
        spawn_local(async move {
            let read = match me.client.db() {
                Some(db) => db.get::<SyncSchedule>(Store::Meta, SCHEDULE_KEY).await.ok(),
                None => None,
            };
            me.handle(Input::ScheduleRead { read, writes });
        });
    }

    fn claim_schedule(&mut self, now: u64) {
        let me = Rc::clone(&self.0);
        spawn_local(async move {
            let claimed = match me.client.db() {
                Some(db) => {
                    let meta = Store::Meta.name();
                    let claim = db
                        .db()
                        .read_modify_write(&[meta], meta, SCHEDULE_KEY, |current| {
                            let stored = current.and_then(|v| crate::web::de::from_js(v).ok());
                            let mut batch = crate::web::idb::Batch::new();
                            let due = SyncSchedule::claim(stored, now);
                            if let Some(next) = &due {
                                batch.put(meta, SCHEDULE_KEY, next)?;
                            }
                            Ok::<_, Error>((batch, due))
                        })
                        .await;
                    Some(claim.ok().flatten())
                }
                None => None,
            };
            me.handle(Input::ScheduleClaimed(claimed));
        });
    }

    fn tell(&mut self, output: Output) {
        let me = &self.0;
        match output {
            Output::Changed => {
                me.snapshot.borrow_mut().take();
                let state = me.state_js();
                crate::web::client::emit_fn(&me.listeners, &state);
            }
            Output::StartAnswered { caller, answer } => {
                me.settle(caller, answer.map(|a| start_answer(&a)));
            }
            Output::CancelAnswered { caller, answer } => {
                me.settle(caller, answer.map(|()| JsValue::UNDEFINED));
            }
            Output::SessionEnded => me.client.session_expired(),
            Output::Synced { at } => {
                let at = js_sys::Date::new(&JsValue::from(at as f64));
                me.client.set_last_sync_at(at.to_iso_string().as_string());
            }
            _ => {}
        }
    }

    fn timer(&self) -> Option<u64> {
        self.0.timer.borrow().as_ref().map(|(at, _)| *at)
    }

    fn set_timer(&mut self, at: Option<u64>) {
        let timer = at.map(|at| {
            let delay = at.saturating_sub(now_ms());
            let weak = Rc::downgrade(&self.0);
            let timeout = Timeout::new(u32::try_from(delay).unwrap_or(u32::MAX), move || {
                if let Some(me) = weak.upgrade() {
                    me.timer.borrow_mut().take();
                    runner::handle_timeout(&mut Page(me));
                }
            });
            (at, timeout)
        });
        *self.0.timer.borrow_mut() = timer;
    }
}

impl SyncRunner {
    /// Sends one of the machine's requests and reads its answer as the
    /// protocol says.
    async fn exchange(&self, request: SyncRequest) -> Input {
        let (method, path) = match &request {
            SyncRequest::Start { .. } => (Method::Post, "/sync".to_owned()),
            SyncRequest::Poll { sync_id, .. } => {
                (Method::Get, format!("/sync/{}", encode(sync_id)))
            }
            SyncRequest::Cancel { sync_id } => {
                (Method::Delete, format!("/sync/{}", encode(sync_id)))
            }
        };
        let answer = match self.client.request(method, &path) {
            Ok(mut req) => {
                match &request {
                    SyncRequest::Start { kind, key, .. } => {
                        let body = js_sys::Object::new();
                        let kind = kind_str(*kind);
                        let _ = js_sys::Reflect::set(&body, &"kind".into(), &kind.into());
                        req.body = Some(body.into());
                        req.idempotency_key = Some(key.clone());
                    }
                    SyncRequest::Poll { timeout_ms, .. } => {
                        req.timeout_ms = u32::try_from(*timeout_ms).unwrap_or(u32::MAX);
                    }
                    SyncRequest::Cancel { .. } => {}
                }
                self.client.exchange(&req).await.map(|r| r.body)
            }
            Err(e) => Err(e),
        };
        let read = answer.and_then(|body| {
            Ok(match &request {
                SyncRequest::Start { run, .. } => Input::Started {
                    run: *run,
                    answer: Ok(get(&body, "syncId")
                        .as_string()
                        .ok_or_else(|| Error::BadResponse("no syncId in the answer".into()))?),
                },
                SyncRequest::Poll { sync_id, .. } => Input::Polled {
                    sync_id: sync_id.clone(),
                    answer: Ok(Box::new(from_server::<ServerSyncStatus>(body)?)),
                },
                // The job as it stopped: its counts are the rows it wrote.
                SyncRequest::Cancel { sync_id } => Input::CancelAnswered {
                    sync_id: sync_id.clone(),
                    answer: Ok(from_server::<ServerSyncStatus>(body).ok().map(Box::new)),
                },
            })
        });
        read.unwrap_or_else(|err| request.failed(refusal_of(&err)))
    }
}

fn start_answer(answer: &StartAnswer) -> JsValue {
    let o = js_sys::Object::new();
    let sync_id = answer
        .sync_id
        .as_deref()
        .map_or(JsValue::NULL, JsValue::from_str);
    let status = if answer.coalesced {
        "coalesced"
    } else {
        "queued"
    };
    let _ = js_sys::Reflect::set(&o, &"syncId".into(), &sync_id);
    let _ = js_sys::Reflect::set(&o, &"status".into(), &status.into());
    o.into()
}

fn kind_str(kind: SyncKind) -> &'static str {
    match kind {
        SyncKind::FromSheet => "from-sheet",
        SyncKind::ToSheet => "to-sheet",
    }
}
