//! The client in the browser: the [`ClientEngine`] (every decision of the
//! write path, reachability and the user's shared work) run by the one
//! runner (`core::engine::runner`) over the page's I/O in
//! `client/effects.rs`, plus what only a page has: the changes feed and
//! `/api/events`, loading collections, snapshots for React, events.
//!
//! The life of a save: `save` hands the engine an event; the engine stages
//! it (so `view` shows it), debounces it, makes it an outbox entry, asks for
//! it to be written to IndexedDB and then sent; the runner does so and
//! reports the answer, and the engine commits, merges a 409, retries or
//! keeps a dead letter. Every caller of a batch is settled exactly once.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::{Rc, Weak};

use gloo_timers::callback::Timeout;
use js_sys::{Function, Promise};
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{spawn_local, JsFuture};

use crate::core::debounce::DebounceOptions;
use crate::core::engine::{
    CallerId, ClientEngine, EngineConfig, Event, IdSource, KeptConflict, Origin, Outcome,
    ReadTarget, StoredWork, STAGED_PREFIX,
};
use crate::core::merge::{Conflict, MergeRules};
use crate::core::outbox::{EntryState, MutationOp, OutboxEntry};
use crate::core::record::{Fields, Record, RecordKey};
use crate::core::retry::RetryPolicy;
use crate::core::staged::RemoteChange;
use crate::core::tab_message::{RecordChange, SessionEnd, SessionNotice, TabMessage, WorkNotice};
use crate::core::vecmap::VecMap;
use crate::error::{Error, ErrorCode};
use crate::web::channel::EnvelopeChannel;
use crate::web::clock::uuid_v4;
use crate::web::http::{HttpRequest, Method};
use crate::web::idb::{record_key, Batch as DbBatch, Store, UserDb};
use crate::web::js::{from_server, get, to_js};
use crate::web::lifecycle::{EventListener, PageEvent, PageLifecycle};

mod durable;
mod effects;
mod feed;
mod load;
mod local;
mod query_cache;
mod reads;
mod storage;
mod undo;
mod writes;

pub use crate::core::engine::{DEFAULT_PAGE, MAX_PAGE};
use crate::web::http::RecordObjects;
pub(crate) use effects::refusal_of;
use feed::EventFeed;
use reads::{js_conflict, record_object};
pub use undo::UndoRequest;

/// The key of the changes-feed cursor in the user's `meta` store: a reload
/// catches up from it rather than reading every collection again.
const CURSOR_KEY: &str = "feed-cursor";

/// Adds `listener` to `set`; the returned function removes it again
/// (`Set.prototype.delete` bound to both, so no Rust closure is kept).
fn subscribe_to(set: &js_sys::Set, listener: &Function) -> Function {
    set.add(listener);
    match js_sys::Reflect::get(set, &"delete".into()).map(JsCast::dyn_into::<Function>) {
        Ok(Ok(delete)) => JsValue::from(delete.bind1(set, listener)).unchecked_into(),
        _ => Function::new_no_args(""),
    }
}

/// Calls every listener with `event`; one that throws is logged and the
/// others still hear it.
fn emit_to(set: &js_sys::Set, event: &JsValue) {
    let listeners = js_sys::Array::from(set);
    for listener in listeners.iter() {
        if let Ok(f) = listener.dyn_into::<Function>() {
            if let Err(thrown) = f.call1(&JsValue::UNDEFINED, event) {
                web_sys::console::error_2(&"crm-sync: a subscriber threw".into(), &thrown);
            }
        }
    }
}

/// Adds `listener` to `set`; returns the function that removes it.
pub fn subscribe_fn(set: &js_sys::Set, listener: &Function) -> Function {
    subscribe_to(set, listener)
}

/// Calls every listener in `set` with `event`; one that throws is logged.
pub fn emit_fn(set: &js_sys::Set, event: &JsValue) {
    emit_to(set, event)
}

/// Hears the data (JSON text) of each `presence` event of `/api/events`,
/// and `undefined` when the stream (re)connected.
pub type PresenceListener = Rc<dyn Fn(JsValue)>;

/// Settings of one client, from the app's options with the defaults of docs/guide/getting-started.md.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the API lives, without a trailing slash.
    pub base_url: String,
    /// Per-request timeout.
    pub timeout_ms: u32,
    /// Backoff of transient failures.
    pub retry: RetryPolicy,
    /// What a 409 does.
    pub rules: MergeRules,
    /// Batching of saves per record.
    pub debounce: DebounceOptions,
}

/// Who is logged in.
#[derive(Debug, Clone)]
pub struct Session {
    /// The bearer token.
    pub token: String,
    /// The user name.
    pub user: String,
}

/// One exchange with the server in the record-sync log (`crm.syncLog()`):
/// a drained outbox (`push`), a feed catch-up or a load (`pull`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SyncLogEntry {
    /// When it ended, ms since the epoch.
    at: f64,
    /// `push` or `pull`.
    direction: String,
    /// `outbox`, `feed` or `load`.
    kind: String,
    pushed: u64,
    pulled: u64,
    merged: u64,
    conflicts: u64,
    failed: u64,
    duration_ms: f64,
    error: Option<String>,
    /// Why a load fetched the whole collection (`first-load`,
    /// `cursor-expired`, `other-user`, `older-schema`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// The key of the record-sync log in the user's `meta` store.
const SYNC_LOG_KEY: &str = "sync-log";
/// Entries the log keeps, the newest.
const SYNC_LOG_KEPT: u32 = 500;

/// A JS promise's settle functions, for a caller of save/comment/....
struct Caller {
    resolve: Function,
    reject: Function,
    promise: Promise,
}

/// The engine and what only the runner keeps.
struct RunnerState {
    /// Every decision of the write path, reachability and shared work.
    engine: ClientEngine,
    /// The promises of callers the engine has not settled yet.
    callers: VecMap<CallerId, Caller>,
    next_caller: CallerId,
    /// The record-sync log as IndexedDB has it (newest first).
    sync_log: Option<JsValue>,
    last_sync_at: Option<String>,
    /// The engine's answers to loads, until `load_plan` takes them.
    load_plans: Vec<(String, crate::core::engine::LoadPlan)>,
    /// The callers of a full load under way: its collection, and the
    /// promise's resolve and reject.
    load_waiters: Vec<(String, js_sys::Function, js_sys::Function)>,
}

/// A handle that does not keep the engine alive (for callbacks the engine
/// itself owns, which would otherwise make a cycle).
#[derive(Clone)]
pub struct WeakClient(Weak<ClientShared>);

impl WeakClient {
    /// The engine, if it still exists.
    pub fn upgrade(&self) -> Option<Client> {
        Client::from_weak(&self.0)
    }
}

/// The engine behind `CrmSync`; cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Rc<ClientShared>,
}

struct ClientShared {
    config: Config,
    session: RefCell<Session>,
    state: RefCell<RunnerState>,
    db: RefCell<Option<Rc<UserDb>>>,
    /// Writes IndexedDB refused for lack of space, in order: written before
    /// the next write, in its transaction, once there is room.
    held: RefCell<Option<DbBatch>>,
    listeners: js_sys::Set,
    /// Snapshots handed to JS, kept until something changes, so
    /// `useSyncExternalStore` sees the same object between changes.
    snapshots: RefCell<HashMap<String, JsValue>>,
    /// The record objects `get`, `list` and `query` handed out, held
    /// weakly: while the app holds one it gets the same object until the
    /// record changes, so a change of one record makes one new object.
    record_js: RecordObjects,
    /// `crm.query`'s kept matches and pages.
    queries: RefCell<query_cache::QueryCache>,
    /// Whether this tab leads (the engine hears it once the work a leader
    /// adopts is read).
    leader: Cell<bool>,
    /// A session end being handled came from another tab (not told back).
    from_tab: Cell<bool>,
    /// Whether the browser keeps this origin's data (`status.durable`).
    durable: Cell<bool>,
    /// The one timer, at the engine's next deadline.
    timer: RefCell<Option<(u64, Timeout)>>,
    /// `/api/events`, while this tab leads.
    events: RefCell<Option<EventFeed>>,
    page: RefCell<Vec<EventListener>>,
    /// The channel to this user's other tabs, once the facade opened it.
    bus: RefCell<Option<Rc<EnvelopeChannel>>>,
    lifecycle: RefCell<Option<PageLifecycle>>,
    /// Hears the `presence` events of `/api/events` (the data, JSON text).
    presence_listener: RefCell<Option<PresenceListener>>,
}

impl Client {
    /// A client for a logged-in session. Opens the user's IndexedDB
    /// database and restores the outbox and conflicts kept there; where
    /// IndexedDB cannot be used, the client works in memory (`status.storage`
    /// says so).
    ///
    /// `verified` says the server confirmed the token's user; a client
    /// opened offline with a user the app named is not, and probes the
    /// server before it reads or sends anything.
    pub async fn start(config: Config, session: Session, verified: bool) -> Client {
        let engine_config = EngineConfig {
            debounce: config.debounce,
            retry: config.retry,
            rules: config.rules,
            logout_wait_ms: u64::from(config.timeout_ms),
        };
        let seed = u64::from_str_radix(&uuid_v4().replace('-', "")[..16], 16).unwrap_or(0);
        let engine = ClientEngine::new(
            engine_config,
            &session.user,
            verified,
            navigator_online(),
            IdSource::new(seed),
        );
        let inner = Rc::new(ClientShared {
            config,
            session: RefCell::new(session),
            state: RefCell::new(RunnerState {
                engine,
                callers: VecMap::new(),
                next_caller: 0,
                sync_log: None,
                last_sync_at: None,
                load_plans: Vec::new(),
                load_waiters: Vec::new(),
            }),
            db: RefCell::new(None),
            held: RefCell::new(None),
            listeners: js_sys::Set::new(&JsValue::UNDEFINED),
            snapshots: RefCell::new(HashMap::new()),
            record_js: RecordObjects::new(),
            queries: RefCell::default(),
            leader: Cell::new(false),
            from_tab: Cell::new(false),
            durable: Cell::new(false),
            timer: RefCell::new(None),
            events: RefCell::new(None),
            page: RefCell::new(Vec::new()),
            bus: RefCell::new(None),
            lifecycle: RefCell::new(None),
            presence_listener: RefCell::new(None),
        });
        let client = Client { inner };
        client.open_storage().await;
        client.read_durable().await;
        client.listen_to_page();
        client
    }

    /// A handle that does not keep the engine alive.
    pub fn downgrade(&self) -> WeakClient {
        WeakClient(self.weak())
    }

    fn weak(&self) -> Weak<ClientShared> {
        Rc::downgrade(&self.inner)
    }

    fn from_weak(weak: &Weak<ClientShared>) -> Option<Client> {
        weak.upgrade().map(|inner| Client { inner })
    }

    /// The logged-in user.
    pub fn user(&self) -> String {
        self.inner.session.borrow().user.clone()
    }

    /// The bearer token.
    pub fn token(&self) -> String {
        self.inner.session.borrow().token.clone()
    }

    /// The API's base URL.
    pub fn base_url(&self) -> &str {
        &self.inner.config.base_url
    }

    /// Per-request timeout.
    pub fn timeout_ms(&self) -> u32 {
        self.inner.config.timeout_ms
    }

    /// Whether the server can be reached (and the browser has a network).
    pub fn is_online(&self) -> bool {
        self.inner.state.borrow().engine.is_online()
    }

    /// Tells the engine whether this tab leads (sends the outbox entries
    /// of closed tabs). On gaining it, entries other tabs left in IndexedDB
    /// are adopted.
    pub fn set_leader(&self, leader: bool) {
        if self.inner.leader.replace(leader) != leader {
            if !leader {
                self.handle(Event::NotLeading);
            }
            self.changed();
            self.emit_status();
            if leader {
                let this = self.clone();
                spawn_local(async move {
                    let work = this.stored_work().await.unwrap_or_default();
                    if this.inner.leader.get() {
                        this.handle(Event::Leading(work));
                    }
                });
            }
        }
    }

    /// How a failed request of the app's is tried again.
    pub fn retry_policy(&self) -> RetryPolicy {
        self.inner.config.retry
    }

    /// Whether this tab leads.
    pub fn is_leader(&self) -> bool {
        self.inner.leader.get()
    }

    /// Lets the engine tell other tabs about commits and session ends.
    pub fn set_bus(&self, bus: Option<Rc<EnvelopeChannel>>) {
        *self.inner.bus.borrow_mut() = bus;
    }

    fn tell_tabs(&self, message: TabMessage) {
        if let Some(bus) = self.inner.bus.borrow().as_ref() {
            let _ = bus.post(message);
        }
    }

    /// Tells the other tabs that `key` is stored at `version`, with the
    /// record itself when it is that version and small.
    pub(super) fn tell_tabs_record(&self, key: &RecordKey, version: u64) {
        let change = {
            let state = self.inner.state.borrow();
            let record = state.engine.records().get(&key.collection, &key.id);
            RecordChange::new(&key.collection, &key.id, version, record.as_ref())
        };
        self.tell_tabs(TabMessage::RecordChanged(change));
    }

    /// Another tab committed a record: show the record the notice carried
    /// when it is the version the notice names, else read it from
    /// IndexedDB (the copy that counts) and show that.
    pub async fn record_from_tab(&self, change: RecordChange) {
        let (collection, id) = (change.collection.clone(), change.id.clone());
        let (collection, id) = (collection.as_str(), id.as_str());
        let stored = match change.verified_record() {
            Some(record) => Some(record),
            None => {
                let Some(db) = self.db() else { return };
                let stored: Result<Option<Record>, Error> =
                    db.get(Store::Records, &record_key(collection, id)).await;
                let Ok(stored) = stored else { return };
                stored
            }
        };
        let change = match stored {
            Some(record) => RemoteChange::Put(record),
            None => RemoteChange::Delete {
                id: id.to_owned(),
                version: self
                    .inner
                    .state
                    .borrow()
                    .engine
                    .records()
                    .get(collection, id)
                    .map_or(0, |r| r.version),
            },
        };
        self.handle(Event::RecordRead {
            collection: collection.to_owned(),
            change,
            origin: Origin::Tab,
        });
    }

    /// Tells the other tabs that this user logged out.
    pub fn tell_tabs_logged_out(&self) {
        self.tell_tabs(TabMessage::Session(SessionNotice {
            state: SessionEnd::LoggedOut,
        }));
    }

    /// Another tab's session ended: this one's did too.
    pub fn session_from_tab(&self, end: SessionEnd) {
        match end {
            SessionEnd::Expired => {
                if !self.inner.state.borrow().engine.is_expired() {
                    self.inner.from_tab.set(true);
                    self.handle(Event::SessionEnded);
                    self.inner.from_tab.set(false);
                }
            }
            SessionEnd::LoggedOut => {
                self.emit_session("logged-out");
                self.close();
            }
        }
    }

    /// The user's database, when IndexedDB is in use.
    pub fn db(&self) -> Option<Rc<UserDb>> {
        self.inner.db.borrow().clone()
    }

    // ----- storage ---------------------------------------------------------

    // ----- page and network ------------------------------------------------

    fn listen_to_page(&self) {
        let Some(window) = web_sys::window() else {
            return;
        };
        let target: &web_sys::EventTarget = window.as_ref();
        let mut listeners = Vec::new();
        for (kind, online) in [("online", true), ("offline", false)] {
            let weak = self.weak();
            if let Ok(l) = EventListener::new(target, kind, move |_| {
                if let Some(client) = Client::from_weak(&weak) {
                    client.set_online(online);
                }
            }) {
                listeners.push(l);
            }
        }
        if let Some(document) = window.document() {
            let weak = self.weak();
            let doc = document.clone();
            if let Ok(l) = EventListener::new(document.as_ref(), "visibilitychange", move |_| {
                if let Some(client) = Client::from_weak(&weak) {
                    if doc.visibility_state() == web_sys::VisibilityState::Hidden {
                        client.flush_all(true);
                    } else {
                        client.nudge();
                    }
                }
            }) {
                listeners.push(l);
            }
        }
        let weak = self.weak();
        if let Ok(l) = EventListener::new(target, "focus", move |_| {
            if let Some(client) = Client::from_weak(&weak) {
                client.nudge();
            }
        }) {
            listeners.push(l);
        }
        *self.inner.page.borrow_mut() = listeners;
        let weak = self.weak();
        *self.inner.lifecycle.borrow_mut() = Some(PageLifecycle::listen(move |event| {
            if let PageEvent::Hide { .. } = event {
                if let Some(client) = Client::from_weak(&weak) {
                    client.flush_all(true);
                }
            }
        }));
    }

    /// The browser says it has a network (`online`) or lost it (`offline`);
    /// also the app's and tests' hook. Regained, the server is probed at
    /// once and counts as reachable when it answers.
    pub fn set_online(&self, online: bool) {
        self.handle(Event::Network(online));
    }

    /// Window focus or a page made visible: if the server could not be
    /// reached, try it now rather than at the next backoff step.
    fn nudge(&self) {
        self.handle(Event::Nudge);
    }

    // ----- events and snapshots -------------------------------------------

    /// Adds a listener; returns the function that removes it.
    pub fn subscribe(&self, listener: &Function) -> Function {
        subscribe_to(&self.inner.listeners, listener)
    }

    /// Who hears the `presence` events of `/api/events` while this tab
    /// leads (`web::presence`).
    pub fn set_presence_listener(&self, listener: Option<PresenceListener>) {
        *self.inner.presence_listener.borrow_mut() = listener;
    }

    /// Raises `event` to this tab's subscribers.
    pub fn emit_event(&self, event: &JsValue) {
        emit_to(&self.inner.listeners, event);
    }

    /// Raises a `conflict` event.
    fn emit_conflict(&self, kept: &KeptConflict) {
        let event = js_sys::Object::new();
        let _ = js_sys::Reflect::set(&event, &"type".into(), &"conflict".into());
        if let Ok(c) = to_js(&js_conflict(kept)) {
            let _ = js_sys::Reflect::set(&event, &"conflict".into(), &c);
        }
        emit_to(&self.inner.listeners, &event.into());
    }

    /// `{ type: "failed", failure }`: a change refused for good, as
    /// `failed()` lists it.
    fn emit_failed(&self, entry: &OutboxEntry) {
        let event = js_sys::Object::new();
        let _ = js_sys::Reflect::set(&event, &"type".into(), &"failed".into());
        let _ = js_sys::Reflect::set(&event, &"failure".into(), &reads::failure_object(entry));
        emit_to(&self.inner.listeners, &event.into());
    }

    /// Drops the snapshots: the next read makes new ones.
    fn changed(&self) {
        self.inner.snapshots.borrow_mut().clear();
    }

    fn emit_status(&self) {
        let status = self.status();
        let event = js_sys::Object::new();
        let _ = js_sys::Reflect::set(&event, &"type".into(), &"status".into());
        let _ = js_sys::Reflect::set(&event, &"status".into(), &status);
        emit_to(&self.inner.listeners, &event.into());
    }

    fn emit_record(&self, key: &RecordKey, origin: &str) {
        let record = self.get(&key.collection, &key.id);
        let event = js_sys::Object::new();
        let set = |k: &str, v: &JsValue| {
            let _ = js_sys::Reflect::set(&event, &k.into(), v);
        };
        set("type", &"record".into());
        set("collection", &key.collection.as_str().into());
        set("id", &key.id.as_str().into());
        set(
            "record",
            &if record.is_undefined() {
                JsValue::NULL
            } else {
                record
            },
        );
        set("origin", &origin.into());
        emit_to(&self.inner.listeners, &event.into());
    }

    /// Emits a session event to this tab's subscribers.
    pub fn emit_session(&self, state: &str) {
        let event = js_sys::Object::new();
        let _ = js_sys::Reflect::set(&event, &"type".into(), &"session".into());
        let _ = js_sys::Reflect::set(&event, &"state".into(), &state.into());
        emit_to(&self.inner.listeners, &event.into());
    }

    fn snapshot(&self, key: String, make: impl FnOnce() -> JsValue) -> JsValue {
        if let Some(v) = self.inner.snapshots.borrow().get(&key) {
            return v.clone();
        }
        let value = make();
        self.inner.snapshots.borrow_mut().insert(key, value.clone());
        value
    }

    // ----- reads -------------------------------------------------------------

    // ----- requests ------------------------------------------------------------

    /// A request to the API with the session's token and timeout.
    ///
    /// # Errors
    /// `closed` after `close`.
    pub fn request(&self, method: Method, path: &str) -> Result<HttpRequest, Error> {
        if self.inner.state.borrow().engine.is_closed() {
            return Err(Error::Closed);
        }
        let mut req = HttpRequest::new(method, format!("{}{}", self.inner.config.base_url, path));
        req.token = Some(self.token());
        req.timeout_ms = self.inner.config.timeout_ms;
        Ok(req)
    }

    /// A record or its history read from the server by the engine (tried
    /// again as it says; a 401 ends the session); a record is laid in and
    /// stored before the promise settles. A history is its entries, newest
    /// first; a record `undefined`.
    ///
    /// # Errors
    /// What the server said after the retries, `bad_response`, `closed`.
    pub(crate) async fn read_from_server(&self, target: ReadTarget) -> Result<JsValue, Error> {
        let promise = self.ask(|caller| Event::Read { target, caller });
        JsFuture::from(promise).await.map_err(rejected)
    }

    /// Reads one record from the server into this tab and IndexedDB.
    async fn fetch_one(&self, key: &RecordKey) -> Result<(), Error> {
        self.read_from_server(ReadTarget::Record(key.clone()))
            .await
            .map(|_| ())
    }
}

fn not_found(message: String) -> Error {
    Error::Http {
        code: ErrorCode::NotFound,
        status: 404,
        message,
        details: JsValue::UNDEFINED,
        retry_after_ms: None,
    }
}

/// A promise of ours rejected with a `CrmError` already; keep it as is.
pub fn rejected(value: JsValue) -> Error {
    let code = get(&value, "code").as_string();
    let message = get(&value, "message").as_string().unwrap_or_default();
    match code.as_deref() {
        Some("closed") => Error::Closed,
        Some("cancelled") => Error::Cancelled,
        Some("pending_changes") => {
            let details = get(&value, "details");
            let count = ["pending", "failed", "conflicts"]
                .iter()
                .map(|k| js_sys::Array::from(&get(&details, k)).length() as usize)
                .sum();
            Error::PendingChanges { count, details }
        }
        _ => Error::Http {
            code: code
                .as_deref()
                .and_then(ErrorCode::parse)
                .unwrap_or(ErrorCode::Server),
            status: get(&value, "status").as_f64().map_or(0, |s| s as u16),
            message,
            details: get(&value, "details"),
            retry_after_ms: None,
        },
    }
}

/// Collection names as the reference server accepts them.
///
/// # Errors
/// `invalid` for anything else (it would end up in a URL path).
pub fn check_collection(collection: &str) -> Result<(), Error> {
    let mut bytes = collection.bytes();
    let ok = collection.len() <= 40
        && bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "not a collection name: {collection:?}"
        )))
    }
}

/// Percent-encodes an id for a URL path or query.
pub fn encode(id: &str) -> String {
    String::from(js_sys::encode_uri_component(id))
}

fn navigator_online() -> bool {
    web_sys::window().is_none_or(|w| w.navigator().on_line())
}
