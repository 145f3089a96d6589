//! The client in the browser: the [`ClientEngine`] (every decision of the
//! write path, reachability and the user's shared work) run by the runner
//! in `client/effects.rs`, plus what only a page has: the changes feed and
//! `/api/events`, loading collections, snapshots for React, events.
//!
//! The life of a save: `save` hands the engine an event; the engine stages
//! it (so `view` shows it), debounces it, makes it an outbox entry, asks for
//! it to be written to IndexedDB and then sent; the runner does so and
//! reports the answer, and the engine commits, merges a 409, retries or
//! keeps a dead letter. Every caller of a batch is settled exactly once.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::{Rc, Weak};

use gloo_timers::callback::Timeout;
use js_sys::{Function, Promise};
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{spawn_local, JsFuture};

use crate::core::debounce::DebounceOptions;
use crate::core::engine::{
    CallerId, ClientEngine, EngineConfig, Event, IdSource, KeptConflict, Outcome, StoredWork,
    Timer, STAGED_PREFIX,
};
use crate::core::merge::{Conflict, MergeRules};
use crate::core::outbox::{EntryError, EntryState, MutationOp, OutboxEntry};
use crate::core::reachability::Answer;
use crate::core::record::{Fields, Record, RecordKey};
use crate::core::retry::RetryPolicy;
use crate::core::staged::RemoteChange;
use crate::core::tab_message::{RecordChange, SessionEnd, SessionNotice, TabMessage, WorkNotice};
use crate::core::vecmap::VecMap;
use crate::error::{Error, ErrorCode};
use crate::web::channel::EnvelopeChannel;
use crate::web::clock::{now_ms, random_unit, uuid_v4};
use crate::web::http::{HttpRequest, Method};
use crate::web::idb::{record_key, Batch as DbBatch, Store, UserDb};
use crate::web::js::{from_server, get, to_js};
use crate::web::lifecycle::{EventListener, PageEvent, PageLifecycle};

mod effects;
mod load;
mod query_cache;

pub use load::{DEFAULT_PAGE, MAX_PAGE};

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

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsComment<'a> {
    id: &'a str,
    author: &'a str,
    text: &'a str,
    created_at: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pending: Option<bool>,
}

/// A record as JavaScript gets it, with the `pending` and `stale` marks.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsRecord<'a> {
    id: &'a str,
    version: u64,
    updated_at: &'a str,
    updated_by: &'a str,
    fields: &'a Fields,
    comments: Vec<JsComment<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pending: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stale: Option<bool>,
}

impl<'a> JsRecord<'a> {
    fn of(record: &'a Record, stale: bool) -> Self {
        JsRecord {
            id: &record.id,
            version: record.version,
            updated_at: &record.updated_at,
            updated_by: &record.updated_by,
            fields: &record.fields,
            comments: record
                .comments
                .iter()
                .map(|c| JsComment {
                    id: &c.id,
                    author: &c.author,
                    text: &c.text,
                    created_at: &c.created_at,
                    pending: None,
                })
                .collect(),
            pending: None,
            stale: stale.then_some(true),
        }
    }
}

/// A conflict as JavaScript gets it: `base` as a record, so a dialog can
/// show base, mine and theirs per field.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsConflict<'a> {
    id: &'a str,
    collection: &'a str,
    record_id: &'a str,
    base: Option<JsRecord<'a>>,
    mine: &'a Fields,
    theirs: JsRecord<'a>,
    fields: &'a [String],
}

/// One row of `pending()` / `failed()`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsMutation<'a> {
    mutation_id: std::borrow::Cow<'a, str>,
    collection: &'a str,
    record_id: &'a str,
    op: &'static str,
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    fields: Option<&'a Fields>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    attempts: u32,
    created_at: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a EntryError>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsStatus<'a> {
    online: bool,
    leader: bool,
    pending: usize,
    failed: usize,
    storage: &'static str,
    last_sync_at: Option<&'a str>,
}

/// One entry of `GET /api/changes` (docs/backend/protocol.md, "Other people's changes").
#[derive(Deserialize)]
struct FeedChange {
    collection: String,
    id: String,
    #[serde(default)]
    version: u64,
    op: String,
    #[serde(default)]
    record: Option<Record>,
}

#[derive(Deserialize)]
struct FeedPage {
    changes: Vec<FeedChange>,
    cursor: String,
    #[serde(default)]
    more: bool,
}

/// How often the leader asks the changes feed for other people's changes
/// while `/api/events` is not connected.
const FEED_POLL_MS: u32 = 2_000;

/// While `/api/events` is connected, the feed is still read every this
/// many poll ticks (30 s): a safety net for an event lost on the way.
const POLLS_PER_SAFETY_READ: u32 = 15;

/// How often writes IndexedDB refused for lack of space are tried again
/// while nothing else writes.
const HELD_RETRY_MS: u32 = 30_000;

/// At most this many `/api/events` streams per page. Over HTTP/1.1 a
/// browser keeps six connections per server, for all its tabs together,
/// and a stream holds one for good: a page with clients of many users (each
/// leading for its user) would starve its own requests. Clients beyond the
/// first poll.
const STREAMS_PER_PAGE: u32 = 1;

thread_local! {
    static OPEN_STREAMS: Cell<u32> = const { Cell::new(0) };
}

/// The leader's `EventSource` on `/api/events`, used as a doorbell: each
/// `change` event starts a read of the changes feed, which stays the one
/// source of what changed (so nothing in an event needs trusting). Closed
/// when dropped.
///
/// A stream counts as connected only once something came through it since
/// it (re)opened: the reference server sends a `ready` event at once, other
/// backends their first `change`. A proxy that buffers the body answers
/// `200` and then holds every event back; counting `open` alone, the
/// leader would wait for the 30 s safety read to see any change.
struct EventFeed {
    source: web_sys::EventSource,
    heard: Rc<Cell<bool>>,
    _listeners: [EventListener; 4],
}

impl EventFeed {
    /// Opens `url`, calling `ring(true)` at each `change` event and
    /// `ring(false)` when a stream that worked drops (a read of the feed
    /// then tells whether the session still holds, and catches up).
    fn open(url: &str, ring: impl Fn(bool) + 'static) -> Option<Self> {
        let ring = Rc::new(ring);
        let ring_on_drop = Rc::clone(&ring);
        let source = web_sys::EventSource::new(url).ok()?;
        let heard = Rc::new(Cell::new(false));
        // Each listener gets the `heard` flag.
        type OnEvent = Box<dyn Fn(&Cell<bool>)>;
        let on = |kind: &'static str, f: OnEvent| {
            let heard = Rc::clone(&heard);
            EventListener::new(&source, kind, move |_| f(&heard))
        };
        let failed = source.clone();
        let listeners = (|| {
            Ok::<_, Error>([
                on("open", Box::new(|heard| heard.set(false)))?,
                on("ready", Box::new(|heard| heard.set(true)))?,
                on(
                    "change",
                    Box::new(move |heard| {
                        heard.set(true);
                        ring(true);
                    }),
                )?,
                // A stream that fails before anything came through it (a
                // proxy that cuts it, a backend without the route) is
                // closed, so it is tried again in 30 s rather than
                // reconnected by the browser every few seconds; one that
                // worked is left to the browser's reconnect, which resumes
                // after the last event id.
                on(
                    "error",
                    Box::new(move |heard| {
                        if heard.get() {
                            ring_on_drop(false);
                        } else {
                            failed.close();
                        }
                    }),
                )?,
            ])
        })();
        let Ok(listeners) = listeners else {
            source.close();
            return None;
        };
        OPEN_STREAMS.with(|n| n.set(n.get().saturating_add(1)));
        Some(Self {
            source,
            heard,
            _listeners: listeners,
        })
    }

    fn is_connected(&self) -> bool {
        self.source.ready_state() == web_sys::EventSource::OPEN && self.heard.get()
    }

    fn is_closed(&self) -> bool {
        self.source.ready_state() == web_sys::EventSource::CLOSED
    }
}

impl Drop for EventFeed {
    fn drop(&mut self) {
        self.source.close();
        OPEN_STREAMS.with(|n| n.set(n.get().saturating_sub(1)));
    }
}

/// The engine and what only the runner keeps.
struct State {
    /// Every decision of the write path, reachability and shared work.
    engine: ClientEngine,
    /// The promises of callers the engine has not settled yet.
    callers: VecMap<CallerId, Caller>,
    next_caller: CallerId,
    /// Collections read from IndexedDB while offline (shown as stale).
    stale: HashSet<String>,
    /// The record-sync log as IndexedDB has it (newest first).
    sync_log: Option<JsValue>,
    last_sync_at: Option<String>,
}

/// A handle that does not keep the engine alive (for callbacks the engine
/// itself owns, which would otherwise make a cycle).
#[derive(Clone)]
pub struct WeakClient(Weak<Inner>);

impl WeakClient {
    /// The engine, if it still exists.
    pub fn upgrade(&self) -> Option<Client> {
        Client::from_weak(&self.0)
    }
}

/// The engine behind `CrmSync`; cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Rc<Inner>,
}

struct Inner {
    config: Config,
    session: RefCell<Session>,
    state: RefCell<State>,
    db: RefCell<Option<Rc<UserDb>>>,
    /// Writes IndexedDB refused for lack of space, in order: written before
    /// the next write, in its transaction, once there is room.
    held: RefCell<Option<DbBatch>>,
    /// Tries the held writes again while nothing else writes.
    held_timer: RefCell<Option<Timeout>>,
    listeners: js_sys::Set,
    /// Snapshots handed to JS, kept until something changes, so
    /// `useSyncExternalStore` sees the same object between changes.
    snapshots: RefCell<HashMap<String, JsValue>>,
    /// Each confirmed record as a JS object, kept while the record stays
    /// as it is: `get` and `list` hand out these, so a change of one record
    /// makes one new object, not one per record of its collection.
    record_js: RefCell<HashMap<RecordKey, CachedRecord>>,
    /// `crm.query`'s kept matches and pages.
    queries: RefCell<query_cache::QueryCache>,
    /// Whether this tab leads (the engine hears it once the work a leader
    /// adopts is read).
    leader: Cell<bool>,
    /// A session end being handled came from another tab (not told back).
    from_tab: Cell<bool>,
    /// The engine's timers.
    timers: RefCell<VecMap<Timer, Timeout>>,
    /// The leader's poll of the changes feed.
    feed_timer: RefCell<Option<gloo_timers::callback::Interval>>,
    feed_busy: Cell<bool>,
    /// Rung while a read was under way: read once more after it.
    feed_again: Cell<bool>,
    feed_ticks: Cell<u32>,
    /// The poll tick at which `/api/events` was last opened.
    events_opened_at: Cell<u32>,
    /// `/api/events`, while this tab leads.
    events: RefCell<Option<EventFeed>>,
    /// Where the changes feed was read up to.
    cursor: RefCell<Option<String>>,
    /// Collections loaded here, reloaded whole when the cursor expired.
    loaded: RefCell<HashSet<String>>,
    page: RefCell<Vec<EventListener>>,
    /// The channel to this user's other tabs, once the facade opened it.
    bus: RefCell<Option<Rc<EnvelopeChannel>>>,
    lifecycle: RefCell<Option<PageLifecycle>>,
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
        };
        let seed = u64::from_str_radix(&uuid_v4().replace('-', "")[..16], 16).unwrap_or(0);
        let engine = ClientEngine::new(
            engine_config,
            &session.user,
            verified,
            navigator_online(),
            IdSource::new(seed),
        );
        let inner = Rc::new(Inner {
            config,
            session: RefCell::new(session),
            state: RefCell::new(State {
                engine,
                callers: VecMap::new(),
                next_caller: 0,
                stale: HashSet::new(),
                sync_log: None,
                last_sync_at: None,
            }),
            db: RefCell::new(None),
            held: RefCell::new(None),
            held_timer: RefCell::new(None),
            listeners: js_sys::Set::new(&JsValue::UNDEFINED),
            snapshots: RefCell::new(HashMap::new()),
            record_js: RefCell::new(HashMap::new()),
            queries: RefCell::default(),
            leader: Cell::new(false),
            from_tab: Cell::new(false),
            timers: RefCell::new(VecMap::new()),
            feed_timer: RefCell::new(None),
            feed_busy: Cell::new(false),
            feed_again: Cell::new(false),
            feed_ticks: Cell::new(0),
            events_opened_at: Cell::new(0),
            events: RefCell::new(None),
            cursor: RefCell::new(None),
            loaded: RefCell::new(HashSet::new()),
            page: RefCell::new(Vec::new()),
            bus: RefCell::new(None),
            lifecycle: RefCell::new(None),
        });
        let client = Client { inner };
        client.open_storage().await;
        client.listen_to_page();
        client.follow_feed();
        if !verified {
            // Not known to be this user's token: unreachable until the
            // probe says whose it is.
            client.handle(Event::RequestEnded(Answer::Unreachable));
            client.handle(Event::Nudge);
        } else {
            client.handle(Event::RetryDue);
        }
        client
    }

    /// A handle that does not keep the engine alive.
    pub fn downgrade(&self) -> WeakClient {
        WeakClient(self.weak())
    }

    fn weak(&self) -> Weak<Inner> {
        Rc::downgrade(&self.inner)
    }

    fn from_weak(weak: &Weak<Inner>) -> Option<Client> {
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

    /// Online, and the token is known to be this session's user: the
    /// server may be read from and written to.
    fn can_talk(&self) -> bool {
        self.inner.state.borrow().engine.can_talk()
    }

    /// Closed, or the session ended: nothing more is read or sent.
    fn is_done(&self) -> bool {
        let state = self.inner.state.borrow();
        state.engine.is_closed() || state.engine.is_expired()
    }

    /// Tells the engine whether this tab leads (sends the outbox entries
    /// of closed tabs). On gaining it, entries other tabs left in IndexedDB
    /// are adopted.
    pub fn set_leader(&self, leader: bool) {
        if self.inner.leader.replace(leader) != leader {
            if !leader {
                self.inner.events.borrow_mut().take();
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

    /// Follows other people's changes while this tab leads and is online,
    /// so they reach every tab without a reload: the changes feed is read
    /// whenever `/api/events` says something changed, and every 2 s while
    /// that stream is not connected (a backend or proxy without it, a
    /// reconnect), every 30 s while it is.
    fn follow_feed(&self) {
        let weak = self.weak();
        let interval = gloo_timers::callback::Interval::new(FEED_POLL_MS, move || {
            let Some(client) = Client::from_weak(&weak) else {
                return;
            };
            let inner = &client.inner;
            let wanted = inner.leader.get()
                && client.can_talk()
                && !inner.state.borrow().engine.is_closed()
                && !inner.state.borrow().engine.is_expired()
                && inner.cursor.borrow().is_some();
            if !wanted {
                inner.events.borrow_mut().take();
                return;
            }
            let tick = inner.feed_ticks.get().wrapping_add(1);
            inner.feed_ticks.set(tick);
            client.listen_for_events(tick);
            let connected = inner
                .events
                .borrow()
                .as_ref()
                .is_some_and(EventFeed::is_connected);
            if !connected || tick % POLLS_PER_SAFETY_READ == 0 {
                client.ring_feed();
            }
        });
        *self.inner.feed_timer.borrow_mut() = Some(interval);
    }

    /// Opens `/api/events` from the stored cursor unless it is open (or
    /// reconnecting by itself). `EventSource` cannot send headers, so the
    /// token goes in the query, as docs/backend/protocol.md allows. Where it cannot be
    /// opened (no `EventSource`, a backend without the route: the browser
    /// closes it), polling goes on, and the stream is tried again every
    /// 30 s, not at every tick.
    fn listen_for_events(&self, tick: u32) {
        let mut events = self.inner.events.borrow_mut();
        if let Some(open) = events.as_ref() {
            let tried_lately =
                tick.wrapping_sub(self.inner.events_opened_at.get()) < POLLS_PER_SAFETY_READ;
            if !open.is_closed() || tried_lately {
                return;
            }
        }
        events.take();
        if OPEN_STREAMS.with(Cell::get) >= STREAMS_PER_PAGE {
            return;
        }
        let Some(cursor) = self.inner.cursor.borrow().clone() else {
            return;
        };
        let url = format!(
            "{}/events?since={}&token={}",
            self.inner.config.base_url,
            encode(&cursor),
            encode(&self.token())
        );
        let weak = self.weak();
        let ring = move |change: bool| {
            if let Some(client) = Client::from_weak(&weak) {
                if change {
                    client.inner.state.borrow_mut().engine.count_feed_event();
                    client.ring_feed();
                } else if client.can_talk() {
                    // Dropped: while the server cannot be reached, the probe
                    // (not every reconnect of the browser) says when to read.
                    client.ring_feed();
                }
            }
        };
        if let Some(feed) = EventFeed::open(&url, ring) {
            self.inner.events_opened_at.set(tick);
            *events = Some(feed);
        }
    }

    /// Reads the changes feed now, or once more after the read under way.
    fn ring_feed(&self) {
        if self.inner.feed_busy.replace(true) {
            self.inner.feed_again.set(true);
            return;
        }
        let client = self.clone();
        spawn_local(async move {
            loop {
                client.read_feed().await;
                let again = client.inner.feed_again.replace(false);
                if !again
                    || client.inner.state.borrow().engine.is_closed()
                    || client.inner.state.borrow().engine.is_expired()
                {
                    break;
                }
            }
            client.inner.feed_busy.set(false);
        });
    }

    /// Reads the changes feed from the stored cursor to its end and shows
    /// what changed.
    async fn read_feed(&self) {
        let since = now_ms();
        let (pulled, error) = self.read_feed_pages().await;
        if pulled > 0 || error.is_some() {
            self.log_exchange(SyncLogEntry {
                at: now_ms() as f64,
                direction: "pull".into(),
                kind: "feed".into(),
                pushed: 0,
                pulled,
                merged: 0,
                conflicts: 0,
                failed: 0,
                duration_ms: now_ms().saturating_sub(since) as f64,
                error,
            });
        }
    }

    /// The pages of [`Client::read_feed`]: how many changes were applied,
    /// and what stopped it early.
    async fn read_feed_pages(&self) -> (u64, Option<String>) {
        let mut pulled = 0u64;
        for _ in 0..20 {
            let Some(cursor) = self.inner.cursor.borrow().clone() else {
                return (pulled, None);
            };
            let path = format!("/changes?since={}&limit=500", encode(&cursor));
            let page: Result<FeedPage, Error> = match self.read(&path).await {
                Ok(body) => from_server(body),
                Err(e) => Err(e),
            };
            let page = match page {
                Ok(p) => p,
                Err(e) if e.status() == Some(410) => {
                    // The server forgot our place: read everything again.
                    *self.inner.cursor.borrow_mut() = None;
                    let mut forget = DbBatch::new();
                    forget.delete(Store::Meta.name(), CURSOR_KEY);
                    self.persist(forget).await;
                    let loaded: Vec<String> = self.inner.loaded.borrow().iter().cloned().collect();
                    for collection in loaded {
                        let _ = self.load(&collection, None).await;
                    }
                    return (pulled, None);
                }
                Err(e) => return (pulled, Some(e.to_string())),
            };
            let mut batch = DbBatch::new();
            let mut changed = Vec::new();
            {
                let mut state = self.inner.state.borrow_mut();
                for change in page.changes {
                    let key = RecordKey::new(&change.collection, &change.id);
                    let applied = match (change.op.as_str(), change.record) {
                        ("delete", _) => {
                            batch.delete(
                                Store::Records.name(),
                                record_key(&key.collection, &key.id),
                            );
                            state.engine.records_mut().apply_remote(
                                &key.collection,
                                RemoteChange::Delete {
                                    id: key.id.clone(),
                                    version: change.version,
                                },
                            )
                        }
                        (_, Some(record)) => {
                            let _ = batch.put_record(
                                Store::Records.name(),
                                record_key(&key.collection, &key.id),
                                &record,
                            );
                            state
                                .engine
                                .records_mut()
                                .apply_remote(&key.collection, RemoteChange::Put(record))
                        }
                        _ => false,
                    };
                    if applied {
                        changed.push((key, change.version));
                    }
                }
            }
            // In the same transaction as the records it covers: a reload
            // goes on from here, never past a change it did not store.
            let _ = batch.put(Store::Meta.name(), CURSOR_KEY, &page.cursor);
            *self.inner.cursor.borrow_mut() = Some(page.cursor);
            self.persist(batch).await;
            pulled += changed.len() as u64;
            if !changed.is_empty() {
                self.changed();
                for (key, version) in changed {
                    self.emit_record(&key, "server");
                    self.tell_tabs_record(&key, version);
                }
            }
            if !page.more {
                return (pulled, None);
            }
        }
        (pulled, None)
    }

    /// Whether this tab leads.
    pub fn is_leader(&self) -> bool {
        self.inner.leader.get()
    }

    /// Another tab changed the user's outbox, dead letters or conflicts:
    /// read them again from IndexedDB, the one copy that counts, so every
    /// tab shows the same `pending()`, `failed()` and `conflicts()`.
    pub async fn reread_work(&self) {
        let Some(db) = self.db() else { return };
        if let Ok(Some(log)) = db.db().get(Store::Meta.name(), SYNC_LOG_KEY).await {
            self.inner.state.borrow_mut().sync_log = Some(log);
        }
        if let Some(work) = self.stored_work().await {
            self.handle(Event::WorkStored(work));
        }
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
            RecordChange::new(&key.collection, &key.id, version, record)
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
        let key = RecordKey::new(collection, id);
        let changed = {
            let mut state = self.inner.state.borrow_mut();
            match stored {
                Some(record) => state
                    .engine
                    .records_mut()
                    .apply_remote(collection, RemoteChange::Put(record)),
                None => {
                    let version = state
                        .engine
                        .records()
                        .get(collection, id)
                        .map_or(0, |r| r.version);
                    state.engine.records_mut().apply_remote(
                        collection,
                        RemoteChange::Delete {
                            id: id.to_owned(),
                            version,
                        },
                    )
                }
            }
        };
        if changed {
            self.changed();
            self.emit_record(&key, "tab");
        }
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

    async fn open_storage(&self) {
        let user = self.user();
        let db = match UserDb::open(&user).await {
            Ok(db) => db,
            Err(_) => return,
        };
        let weak = self.weak();
        db.on_close(move |_reason| {
            // A newer version of the app upgraded the database in another
            // tab: go on in memory and say so.
            if let Some(client) = Client::from_weak(&weak) {
                client.inner.db.borrow_mut().take();
                client.changed();
                client.emit_status();
            }
        });
        let entries: Vec<(String, OutboxEntry)> = db.all(Store::Outbox).await.unwrap_or_default();
        let failed: Vec<(String, OutboxEntry)> = db.all(Store::Failed).await.unwrap_or_default();
        let conflicts: Vec<(String, KeptConflict)> =
            db.all(Store::Conflicts).await.unwrap_or_default();
        // Only the records the kept work is about: a collection is read
        // when it is loaded (in slices), so opening costs nothing that
        // grows with the data.
        let mut wanted: Vec<(String, String)> = entries
            .iter()
            .chain(&failed)
            .map(|(_, e)| (e.collection.clone(), e.record_id.clone()))
            .collect();
        crate::core::sort::sort(&mut wanted);
        wanted.dedup();
        let mut records: Vec<(String, Record)> = Vec::new();
        for (collection, id) in wanted {
            if let Ok(Some(record)) = db
                .get::<Record>(Store::Records, &record_key(&collection, &id))
                .await
            {
                records.push((collection, record));
            }
        }
        let cursor: Option<String> = db.get(Store::Meta, CURSOR_KEY).await.unwrap_or_default();
        if cursor.is_some() {
            *self.inner.cursor.borrow_mut() = cursor;
        }
        let sync_log = db
            .db()
            .get(Store::Meta.name(), SYNC_LOG_KEY)
            .await
            .ok()
            .flatten();
        {
            let mut state = self.inner.state.borrow_mut();
            state.sync_log = sync_log;
            for (collection, record) in records {
                let _ = state
                    .engine
                    .records_mut()
                    .apply_remote(&collection, RemoteChange::Put(record));
                state.stale.insert(collection);
            }
            state.engine.restore(StoredWork {
                outbox: entries.into_iter().map(|(_, e)| e).collect(),
                failed: failed.into_iter().map(|(_, e)| e).collect(),
                conflicts: conflicts.into_iter().map(|(_, k)| k).collect(),
            });
        }
        *self.inner.db.borrow_mut() = Some(Rc::new(db));
        self.changed();
    }

    /// Writes `batch` if IndexedDB is in use. When the browser refuses it
    /// for lack of space (`QuotaExceededError`), the write is held in memory
    /// and `status.storage` says `"memory"`; held writes go first, in one
    /// transaction with the next write (so the database never has a later
    /// write without an earlier one), or on their own every
    /// [`HELD_RETRY_MS`]. Any other failure drops the database: the client
    /// goes on in memory (nothing the server has is lost).
    async fn persist(&self, batch: DbBatch) -> bool {
        let Some(db) = self.db() else { return true };
        let held = self.inner.held.borrow_mut().take();
        let was_full = held.is_some();
        let batch = match held {
            Some(mut earlier) => {
                earlier.append(batch);
                earlier
            }
            None => batch,
        };
        if batch.is_empty() {
            return true;
        }
        let work = [Store::Outbox, Store::Failed, Store::Conflicts]
            .iter()
            .any(|store| batch.touches(store.name()));
        match db.write_batch(&batch).await {
            Ok(()) => {
                if work {
                    self.tell_tabs(TabMessage::WorkChanged(WorkNotice {}));
                }
                if was_full && self.inner.held.borrow().is_none() {
                    self.inner.held_timer.borrow_mut().take();
                    self.changed();
                    self.emit_status();
                }
                true
            }
            Err(Error::Quota) => {
                // Before whatever was held while this one was under way:
                // the browser runs our transactions in the order they began.
                let mut held = batch;
                if let Some(later) = self.inner.held.borrow_mut().take() {
                    held.append(later);
                }
                *self.inner.held.borrow_mut() = Some(held);
                self.retry_held();
                if !was_full {
                    self.changed();
                    self.emit_status();
                }
                false
            }
            Err(e) => {
                // Said where a developer looks: `status.storage` only says
                // that it happened.
                web_sys::console::error_1(
                    &format!("crm-sync: IndexedDB refused a write ({e}); going on in memory")
                        .into(),
                );
                self.inner.db.borrow_mut().take();
                self.changed();
                self.emit_status();
                true
            }
        }
    }

    fn retry_held(&self) {
        let weak = self.weak();
        let timer = Timeout::new(HELD_RETRY_MS, move || {
            if let Some(client) = Client::from_weak(&weak) {
                spawn_local(async move {
                    if client.persist(DbBatch::new()).await {
                        client.handle(Event::HeldWritten);
                    }
                });
            }
        });
        *self.inner.held_timer.borrow_mut() = Some(timer);
    }

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
                        client.flush_now(true);
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
                    client.flush_now(true);
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

    fn ring_feed_if_leading(&self) {
        let inner = &self.inner;
        if inner.leader.get() && inner.cursor.borrow().is_some() && self.can_talk() {
            self.ring_feed();
        }
    }

    // ----- events and snapshots -------------------------------------------

    /// Adds a listener; returns the function that removes it.
    pub fn subscribe(&self, listener: &Function) -> Function {
        subscribe_to(&self.inner.listeners, listener)
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

    /// The confirmed record, or `undefined`.
    pub fn get(&self, collection: &str, id: &str) -> JsValue {
        self.snapshot(format!("get\u{0}{collection}\u{0}{id}"), || {
            let state = self.inner.state.borrow();
            let stale = state.stale.contains(collection) && !self.is_online();
            let mut cache = self.inner.record_js.borrow_mut();
            state
                .engine
                .records()
                .get(collection, id)
                .map_or(JsValue::UNDEFINED, |r| {
                    record_object(&mut cache, collection, r, stale)
                })
        })
    }

    /// All confirmed records of a collection.
    pub fn list(&self, collection: &str) -> JsValue {
        self.snapshot(format!("list\u{0}{collection}"), || {
            let state = self.inner.state.borrow();
            let stale = state.stale.contains(collection) && !self.is_online();
            let mut cache = self.inner.record_js.borrow_mut();
            let records = state.engine.records().list(collection);
            let out = js_sys::Array::new_with_length(records.len() as u32);
            for (i, r) in records.iter().enumerate() {
                out.set(i as u32, record_object(&mut cache, collection, r, stale));
            }
            // Records gone from the collection leave the cache too.
            if cache.len() > state.engine.records().len() {
                cache.retain(|key, _| {
                    state
                        .engine
                        .records()
                        .get(&key.collection, &key.id)
                        .is_some()
                });
            }
            out.into()
        })
    }

    /// The confirmed record with this tab's staged changes laid over it.
    pub fn view(&self, collection: &str, id: &str) -> JsValue {
        self.snapshot(format!("view\u{0}{collection}\u{0}{id}"), || {
            let state = self.inner.state.borrow();
            let user = self.inner.session.borrow().user.clone();
            let Some(view) = state.engine.records().view(collection, id) else {
                return JsValue::UNDEFINED;
            };
            let stale = state.stale.contains(collection) && !self.is_online();
            let mut out = JsRecord::of(&view.record, stale);
            for pending in &view.pending_comments {
                out.comments.push(JsComment {
                    id: &pending.id,
                    author: &user,
                    text: &pending.text,
                    created_at: "",
                    pending: Some(true),
                });
            }
            out.pending = view.pending.then_some(true);
            to_js(&out).unwrap_or(JsValue::UNDEFINED)
        })
    }

    /// Staged and queued mutations, oldest first.
    pub fn pending(&self) -> JsValue {
        self.snapshot("pending".into(), || {
            let state = self.inner.state.borrow();
            let mut rows: Vec<JsMutation<'_>> = Vec::new();
            for (key, change) in state.engine.debounced() {
                {
                    rows.push(JsMutation {
                        mutation_id: format!("{STAGED_PREFIX}{}/{}", key.collection, key.id).into(),
                        collection: &key.collection,
                        record_id: &key.id,
                        op: "patch",
                        state: "staged",
                        fields: Some(&change.fields),
                        text: None,
                        attempts: 0,
                        created_at: 0,
                        error: None,
                    });
                }
            }
            rows.extend(state.engine.outbox().pending().iter().map(mutation_row));
            to_js(&rows).unwrap_or_else(|_| js_sys::Array::new().into())
        })
    }

    /// Mutations the server refused for good.
    pub fn failed(&self) -> JsValue {
        self.snapshot("failed".into(), || {
            let state = self.inner.state.borrow();
            let rows: Vec<JsMutation<'_>> = state
                .engine
                .outbox()
                .failed()
                .iter()
                .map(mutation_row)
                .collect();
            to_js(&rows).unwrap_or_else(|_| js_sys::Array::new().into())
        })
    }

    /// Conflicts waiting for a person.
    pub fn conflicts(&self) -> JsValue {
        self.snapshot("conflicts".into(), || {
            let state = self.inner.state.borrow();
            let rows: Vec<JsConflict<'_>> =
                state.engine.conflicts().values().map(js_conflict).collect();
            to_js(&rows).unwrap_or_else(|_| js_sys::Array::new().into())
        })
    }

    /// `{ online, leader, pending, failed, storage, lastSyncAt }`.
    pub fn status(&self) -> JsValue {
        self.snapshot("status".into(), || {
            let state = self.inner.state.borrow();
            let staged_only = state.engine.debounced().count();
            let status = JsStatus {
                online: state.engine.is_online(),
                leader: self.inner.leader.get(),
                pending: state.engine.outbox().pending().len() + staged_only,
                failed: state.engine.outbox().failed().len(),
                storage: if self.inner.db.borrow().is_some() && self.inner.held.borrow().is_none() {
                    "indexeddb"
                } else {
                    "memory"
                },
                last_sync_at: state.last_sync_at.as_deref(),
            };
            to_js(&status).unwrap_or(JsValue::UNDEFINED)
        })
    }

    /// This tab's counters since it started, by their `metrics()` names
    /// (the facade adds the sync runs and the stored totals).
    pub fn counters(&self) -> crate::core::counters::Counters {
        let state = self.inner.state.borrow();
        to_js(state.engine.counters())
            .and_then(from_server)
            .unwrap_or_default()
    }

    /// Marks when the last spreadsheet sync ended (for `status`).
    pub fn set_last_sync_at(&self, at: Option<String>) {
        self.inner.state.borrow_mut().last_sync_at = at;
        self.changed();
        self.emit_status();
    }

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

    /// Sends a read, retrying transient failures per the retry policy.
    ///
    /// # Errors
    /// The last failure; `unauthorized` also ends the session.
    pub async fn read(&self, path: &str) -> Result<JsValue, Error> {
        let req = self.request(Method::Get, path)?;
        self.send_with_retry(&req).await
    }

    /// Sends `req`, retrying network errors, timeouts, 5xx and 429 per the
    /// retry policy (honouring `Retry-After`), never other 4xx; every retry
    /// is the same request, `Idempotency-Key` included. A 401 ends the
    /// session.
    ///
    /// # Errors
    /// The last failure.
    pub async fn send_with_retry(&self, req: &HttpRequest) -> Result<JsValue, Error> {
        let mut failures = 0u32;
        loop {
            match self.exchange(req).await {
                Ok(resp) => return Ok(resp.body),
                Err(err) => {
                    if err.code() == ErrorCode::Unauthorized {
                        self.session_expired();
                        return Err(err);
                    }
                    failures += 1;
                    let policy = &self.inner.config.retry;
                    if !err.is_transient() || !policy.allows(failures) || !self.is_online() {
                        return Err(err);
                    }
                    self.inner.state.borrow_mut().engine.count_retry();
                    let retry_after = match &err {
                        Error::Http { retry_after_ms, .. } => *retry_after_ms,
                        _ => None,
                    };
                    let delay = policy.delay_with_retry_after(failures, random_unit(), retry_after);
                    crate::web::clock::sleep(u32::try_from(delay).unwrap_or(u32::MAX)).await;
                }
            }
        }
    }

    async fn fetch_one(&self, key: &RecordKey) -> Result<(), Error> {
        let body = self
            .read(&format!("/{}/{}", key.collection, encode(&key.id)))
            .await?;
        let record: Record = from_server(body)?;
        self.inner
            .state
            .borrow_mut()
            .engine
            .records_mut()
            .apply_remote(&key.collection, RemoteChange::Put(record.clone()));
        self.persist({
            let mut b = DbBatch::new();
            let _ = b.put_record(
                Store::Records.name(),
                record_key(&key.collection, &key.id),
                &record,
            );
            b
        })
        .await;
        self.changed();
        Ok(())
    }

    // ----- callers -------------------------------------------------------------

    fn new_caller(&self) -> (u64, Promise) {
        let mut settle: Option<(Function, Function)> = None;
        let promise = Promise::new(&mut |resolve, reject| settle = Some((resolve, reject)));
        let mut state = self.inner.state.borrow_mut();
        state.next_caller += 1;
        let id = state.next_caller;
        if let Some((resolve, reject)) = settle {
            state.callers.insert(
                id,
                Caller {
                    resolve,
                    reject,
                    promise: promise.clone(),
                },
            );
        }
        (id, promise)
    }

    fn settle_callers(&self, callers: Vec<u64>, result: &Result<JsValue, Error>) {
        let mut taken = Vec::new();
        {
            let mut state = self.inner.state.borrow_mut();
            for id in callers {
                if let Some(caller) = state.callers.remove(&id) {
                    taken.push(caller);
                }
            }
        }
        for caller in taken {
            let _ = match result {
                Ok(value) => caller.resolve.call1(&JsValue::UNDEFINED, value),
                Err(err) => caller
                    .reject
                    .call1(&JsValue::UNDEFINED, &JsValue::from(err.clone())),
            };
        }
    }

    fn outcome_js(&self, outcome: Outcome) -> Result<JsValue, Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Out<'a> {
            status: &'static str,
            #[serde(skip_serializing_if = "Option::is_none")]
            record: Option<JsRecord<'a>>,
            #[serde(skip_serializing_if = "Option::is_none")]
            merged: Option<&'a [String]>,
            #[serde(skip_serializing_if = "Option::is_none")]
            conflict: Option<JsConflict<'a>>,
            #[serde(skip_serializing_if = "Option::is_none")]
            mutation_id: Option<&'a str>,
        }
        let empty = Out {
            status: "committed",
            record: None,
            merged: None,
            conflict: None,
            mutation_id: None,
        };
        match &outcome {
            Outcome::Committed(record) => to_js(&Out {
                record: Some(JsRecord::of(record, false)),
                ..empty
            }),
            Outcome::Merged(record, merged) => to_js(&Out {
                status: "merged",
                record: Some(JsRecord::of(record, false)),
                merged: Some(merged),
                ..empty
            }),
            Outcome::Conflict(conflict) => {
                let state = self.inner.state.borrow();
                let kept = state.engine.conflicts().get(&conflict.id);
                let base = kept.and_then(|k| k.base.as_ref());
                to_js(&Out {
                    status: "conflict",
                    conflict: Some(JsConflict {
                        base: base.map(|b| JsRecord::of(b, false)),
                        ..js_conflict_parts(conflict)
                    }),
                    ..empty
                })
            }
            Outcome::Queued(id) => to_js(&Out {
                status: "queued",
                mutation_id: Some(id),
                ..empty
            }),
        }
    }

    // ----- writes ----------------------------------------------------------

    fn check_open(&self) -> Result<(), Error> {
        let state = self.inner.state.borrow();
        if state.engine.is_closed() {
            return Err(Error::Closed);
        }
        if state.engine.is_expired() {
            return Err(Error::Http {
                code: ErrorCode::Unauthorized,
                status: 401,
                message: "the session has ended; log in again".into(),
                details: JsValue::UNDEFINED,
                retry_after_ms: None,
            });
        }
        Ok(())
    }

    /// A debounced, staged change of some fields.
    ///
    /// # Errors
    /// `invalid`, `not_found` (no such record), `closed`, or what the server said.
    pub async fn save(&self, collection: &str, id: &str, fields: Fields) -> Result<JsValue, Error> {
        let promise = match self.save_now(collection, id, fields.clone())? {
            Some(p) => p,
            None => {
                self.fetch_one(&RecordKey::new(collection, id)).await?;
                self.check_open()?;
                self.ask(|caller| Event::Save {
                    key: RecordKey::new(collection, id),
                    fields,
                    caller,
                })
            }
        };
        JsFuture::from(promise).await.map_err(rejected)
    }

    /// Stages a save at once when the record is known here (so `view`
    /// shows it before the call returns); `None` when it must be fetched.
    ///
    /// # Errors
    /// `invalid`, `closed`.
    pub fn save_now(
        &self,
        collection: &str,
        id: &str,
        fields: Fields,
    ) -> Result<Option<Promise>, Error> {
        self.check_open()?;
        check_collection(collection)?;
        if fields.is_empty() {
            // A PATCH of nothing changes nothing; servers refuse it.
            return Err(Error::Invalid("a save needs at least one field".into()));
        }
        let key = RecordKey::new(collection, id);
        let known = {
            let state = self.inner.state.borrow();
            let records = state.engine.records();
            records.get(collection, id).is_some() || records.staged(&key).is_some()
        };
        if !known {
            return Ok(None);
        }
        Ok(Some(self.ask(|caller| Event::Save {
            key,
            fields,
            caller,
        })))
    }

    /// A promise for a caller, and the engine told what it asks.
    fn ask(&self, event: impl FnOnce(CallerId) -> Event) -> Promise {
        let (caller, promise) = self.new_caller();
        self.handle(event(caller));
        promise
    }

    /// Stages a comment at once and queues it; the promise settles with the
    /// server's answer.
    ///
    /// # Errors
    /// `invalid` for an empty text, `closed`.
    pub fn comment_now(&self, collection: &str, id: &str, text: String) -> Result<Promise, Error> {
        self.check_open()?;
        check_collection(collection)?;
        if text.trim().is_empty() {
            return Err(Error::Invalid("a comment needs some text".into()));
        }
        let key = RecordKey::new(collection, id);
        Ok(self.ask(|caller| Event::Comment { key, text, caller }))
    }

    /// Creates a record with a client-made id.
    ///
    /// # Errors
    /// `invalid`, `closed`, or what the server said.
    pub async fn create(&self, collection: &str, fields: Fields) -> Result<JsValue, Error> {
        self.check_open()?;
        check_collection(collection)?;
        let key = RecordKey::new(collection, uuid_v4());
        let promise = self.ask(|caller| Event::Create {
            key,
            fields,
            caller,
        });
        JsFuture::from(promise).await.map_err(rejected)
    }

    /// Deletes a record (If-Match its confirmed version).
    ///
    /// # Errors
    /// `not_found`, `closed`, or what the server said.
    pub async fn remove(&self, collection: &str, id: &str) -> Result<JsValue, Error> {
        self.check_open()?;
        check_collection(collection)?;
        let key = RecordKey::new(collection, id);
        let known = self
            .inner
            .state
            .borrow()
            .engine
            .records()
            .get(collection, id)
            .is_some();
        if !known {
            self.fetch_one(&key).await?;
        }
        let promise = self.ask(|caller| Event::Delete { key, caller });
        JsFuture::from(promise).await.map_err(rejected)
    }

    /// Sends every debounced change now; returns the callers' promises.
    pub fn flush_now(&self, keepalive: bool) -> Vec<Promise> {
        let before: Vec<CallerId> = self.inner.state.borrow().callers.keys().copied().collect();
        self.handle(Event::Flush { keepalive });
        let state = self.inner.state.borrow();
        before
            .iter()
            .filter_map(|c| state.callers.get(c).map(|c| c.promise.clone()))
            .collect()
    }

    /// Puts a failed mutation back in its lane and sends it.
    ///
    /// # Errors
    /// `not_found` for an unknown id.
    pub async fn retry(&self, mutation_id: &str) -> Result<JsValue, Error> {
        self.check_open()?;
        let entry = self
            .inner
            .state
            .borrow()
            .engine
            .outbox()
            .failed()
            .iter()
            .find(|e| e.mutation_id == mutation_id)
            .cloned();
        let Some(entry) = entry else {
            return Err(not_found(format!("no failed mutation {mutation_id:?}")));
        };
        // Of two tabs retrying one entry at once, one finds it gone.
        let mut batch = DbBatch::new();
        batch.delete(Store::Failed.name(), mutation_id.to_owned());
        let mut queued = entry;
        queued.state = crate::core::outbox::EntryState::Queued;
        batch.put(Store::Outbox.name(), mutation_id.to_owned(), &queued)?;
        if let Err(e) = self.claim(Store::Failed, mutation_id, batch).await {
            self.reread_work().await;
            return Err(e);
        }
        let mutation_id = mutation_id.to_owned();
        let promise = self.ask(|caller| Event::Retry {
            mutation_id,
            caller,
        });
        JsFuture::from(promise).await.map_err(rejected)
    }

    /// Drops a failed or queued mutation and its staged change.
    ///
    /// # Errors
    /// `not_found` for an unknown id, `invalid` while it is being sent.
    pub async fn discard(&self, mutation_id: &str) -> Result<(), Error> {
        let sendable = self.inner.state.borrow().engine.can_discard(mutation_id);
        match sendable {
            Ok(()) => {}
            Err(why) if why.contains("being sent") => return Err(Error::Invalid(why)),
            Err(why) => return Err(not_found(why)),
        }
        self.handle(Event::Discard {
            mutation_id: mutation_id.to_owned(),
        });
        Ok(())
    }

    /// Writes `batch` only if `key` is still in `store`, in one readwrite
    /// transaction (atomic across tabs), and tells the other tabs. Without
    /// IndexedDB this tab's memory is the only copy: nothing to claim.
    ///
    /// # Errors
    /// `not_found` when another tab took it first; storage errors.
    async fn claim(&self, store: Store, key: &str, batch: DbBatch) -> Result<(), Error> {
        let Some(db) = self.db() else { return Ok(()) };
        let scope = [
            Store::Outbox.name(),
            Store::Failed.name(),
            Store::Conflicts.name(),
        ];
        db.db()
            .read_modify_write(&scope, store.name(), key, |current| match current {
                Some(_) => Ok((batch, ())),
                None => Err(not_found(format!(
                    "{key:?} was already handled in another tab"
                ))),
            })
            .await?;
        self.tell_tabs(TabMessage::WorkChanged(WorkNotice {}));
        Ok(())
    }

    /// Resolves a conflict with the fields a person chose; they are sent on
    /// the server's version.
    ///
    /// # Errors
    /// `not_found` for an unknown conflict, or what the server said.
    pub async fn resolve(&self, conflict_id: &str, chosen: Fields) -> Result<JsValue, Error> {
        self.check_open()?;
        if !self.inner.state.borrow().engine.has_conflict(conflict_id) {
            return Err(not_found(format!("no conflict {conflict_id:?}")));
        }
        // Of two tabs resolving one conflict at once, one finds it gone.
        let mut batch = DbBatch::new();
        batch.delete(Store::Conflicts.name(), conflict_id.to_owned());
        if let Err(e) = self.claim(Store::Conflicts, conflict_id, batch).await {
            self.reread_work().await;
            return Err(e);
        }
        let conflict_id = conflict_id.to_owned();
        let promise = self.ask(|caller| Event::Resolve {
            conflict_id,
            chosen,
            caller,
        });
        JsFuture::from(promise).await.map_err(rejected)
    }

    // ----- the outbox pump ---------------------------------------------------

    /// Adds a line to the user's record-sync log: in IndexedDB (the newest
    /// [`SYNC_LOG_KEPT`], read-modify-write in one transaction, so tabs
    /// never lose each other's lines) and in memory; other tabs are told.
    fn log_exchange(&self, entry: SyncLogEntry) {
        let Ok(line) = to_js(&entry) else { return };
        let this = self.clone();
        spawn_local(async move {
            let Some(db) = this.db() else {
                // In memory only: the log lives as long as the page.
                let log = this.sync_log_array();
                log.unshift(&line);
                log.set_length(log.length().min(SYNC_LOG_KEPT));
                this.inner.state.borrow_mut().sync_log = Some(log.into());
                this.changed();
                this.emit_status();
                return;
            };
            let meta = Store::Meta.name();
            let written = db
                .db()
                .read_modify_write(&[meta], meta, SYNC_LOG_KEY, |current| {
                    let log: js_sys::Array = current
                        .filter(js_sys::Array::is_array)
                        .map(Into::into)
                        .unwrap_or_default();
                    log.unshift(&line);
                    log.set_length(log.length().min(SYNC_LOG_KEPT));
                    let mut batch = DbBatch::new();
                    batch.put_js(meta, SYNC_LOG_KEY, log.clone().into());
                    Ok::<_, Error>((batch, log))
                })
                .await;
            if let Ok(log) = written {
                this.inner.state.borrow_mut().sync_log = Some(log.into());
                this.changed();
                // Subscribers (useSyncLog) hear of it with the status.
                this.emit_status();
                this.tell_tabs(TabMessage::WorkChanged(WorkNotice {}));
            }
        });
    }

    fn sync_log_array(&self) -> js_sys::Array {
        self.inner
            .state
            .borrow()
            .sync_log
            .clone()
            .filter(js_sys::Array::is_array)
            .map(Into::into)
            .unwrap_or_default()
    }

    /// `crm.syncLog()`: the user's record-sync log, newest first; the same
    /// array until a line is added.
    pub fn sync_log(&self) -> JsValue {
        self.snapshot("syncLog".into(), || {
            let log = self.sync_log_array();
            // A copy: the app may not change the log it was handed.
            log.slice(0, log.length()).into()
        })
    }

    /// Before a logout: sends every debounced change and waits (up to the
    /// request timeout) while queued ones are sent. Succeeds when nothing
    /// of the user's is left off the server.
    ///
    /// # Errors
    /// [`Error::PendingChanges`] listing what is left (queued, refused, or
    /// a conflict waiting for a person); the session is untouched.
    pub async fn send_before_logout(&self) -> Result<(), Error> {
        if self.inner.state.borrow().engine.is_closed() {
            return Err(Error::Closed);
        }
        let _ = self.flush_now(false);
        let deadline = now_ms().saturating_add(u64::from(self.inner.config.timeout_ms));
        loop {
            let sending = {
                let state = self.inner.state.borrow();
                !state.engine.outbox().pending().is_empty()
                    || state.engine.debounced().next().is_some()
            };
            // Without a network nothing will go out; with one, a probe
            // may bring the server back within the wait.
            let stuck = !navigator_online() || self.is_done();
            if !sending || stuck || now_ms() >= deadline {
                break;
            }
            crate::web::clock::sleep(50).await;
        }
        let count = {
            let state = self.inner.state.borrow();
            state.engine.outbox().pending().len()
                + state.engine.debounced().count()
                + state.engine.outbox().failed().len()
                + state.engine.conflicts().len()
        };
        if count == 0 {
            return Ok(());
        }
        let details = js_sys::Object::new();
        let _ = js_sys::Reflect::set(&details, &"pending".into(), &self.pending());
        let _ = js_sys::Reflect::set(&details, &"failed".into(), &self.failed());
        let _ = js_sys::Reflect::set(&details, &"conflicts".into(), &self.conflicts());
        Err(Error::PendingChanges {
            count,
            details: details.into(),
        })
    }

    /// Revokes the token on the server (`POST /api/logout`). A token the
    /// server already forgot counts as revoked.
    ///
    /// # Errors
    /// `network`, `timeout`, `server`: the token may still be valid, and
    /// nothing else was changed.
    pub async fn revoke(&self) -> Result<(), Error> {
        let req = self.request(Method::Post, "/logout")?;
        match self.exchange(&req).await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == ErrorCode::Unauthorized => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// A 401: the token is no longer good. Every tab hears it (the facade
    /// relays it); writes wait in the outbox for a new login.
    pub fn session_expired(&self) {
        self.handle(Event::SessionEnded);
    }

    /// The engine says the session ended: the app hears it, and the other
    /// tabs too unless one of them said so first.
    fn session_ended_here(&self) {
        self.emit_session("expired");
        if !self.inner.from_tab.get() {
            self.tell_tabs(TabMessage::Session(SessionNotice {
                state: SessionEnd::Expired,
            }));
        }
    }

    /// Stops timers and listeners; waiting callers are rejected with `closed`.
    pub fn close(&self) {
        if self.inner.state.borrow().engine.is_closed() {
            return;
        }
        self.handle(Event::Close);
        self.inner.timers.borrow_mut().clear();
        self.inner.held_timer.borrow_mut().take();
        self.inner.feed_timer.borrow_mut().take();
        self.inner.events.borrow_mut().take();
        self.inner.page.borrow_mut().clear();
        self.inner.lifecycle.borrow_mut().take();
        let callers: Vec<CallerId> = self.inner.state.borrow().callers.keys().copied().collect();
        self.settle_callers(callers, &Err(Error::Closed));
        if let Some(db) = self.inner.db.borrow_mut().take() {
            db.close();
        }
    }
}

fn mutation_row(e: &OutboxEntry) -> JsMutation<'_> {
    let (op, fields, text) = match &e.op {
        MutationOp::Create { fields } => ("create", Some(fields), None),
        MutationOp::Patch { fields, .. } => ("patch", Some(fields), None),
        MutationOp::Delete { .. } => ("delete", None, None),
        MutationOp::Comment { text, .. } => ("comment", None, Some(text.as_str())),
    };
    JsMutation {
        mutation_id: e.mutation_id.as_str().into(),
        collection: &e.collection,
        record_id: &e.record_id,
        op,
        state: match e.state {
            EntryState::Queued => "queued",
            EntryState::Sending => "sending",
            EntryState::Failed => "failed",
        },
        fields,
        text,
        attempts: e.attempts,
        created_at: e.created_at_ms,
        error: e.last_error.as_ref(),
    }
}

fn js_conflict_parts(c: &Conflict) -> JsConflict<'_> {
    JsConflict {
        id: &c.id,
        collection: &c.collection,
        record_id: &c.record_id,
        base: None,
        mine: &c.mine,
        theirs: JsRecord::of(&c.theirs, false),
        fields: &c.fields,
    }
}

fn js_conflict(kept: &KeptConflict) -> JsConflict<'_> {
    JsConflict {
        base: kept.base.as_ref().map(|b| JsRecord::of(b, false)),
        ..js_conflict_parts(&kept.conflict)
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

/// A confirmed record as a JS object, and what it was made from.
struct CachedRecord {
    version: u64,
    comments: usize,
    stale: bool,
    value: JsValue,
}

impl CachedRecord {
    fn of(record: &Record, stale: bool, value: JsValue) -> Self {
        Self {
            version: record.version,
            comments: record.comments.len(),
            stale,
            value,
        }
    }
}

/// The JS object of `record` from `cache`, made anew only when the record
/// changed (its version or comments) or its staleness did.
fn record_object(
    cache: &mut HashMap<RecordKey, CachedRecord>,
    collection: &str,
    record: &Record,
    stale: bool,
) -> JsValue {
    let key = RecordKey::new(collection, &record.id);
    if let Some(hit) = cache.get(&key) {
        if hit.version == record.version
            && hit.comments == record.comments.len()
            && hit.stale == stale
        {
            return hit.value.clone();
        }
    }
    let value = to_js(&JsRecord::of(record, stale)).unwrap_or(JsValue::UNDEFINED);
    cache.insert(key, CachedRecord::of(record, stale, value.clone()));
    value
}

/// Failures that say the server cannot be reached now (not that it refused).
fn is_unreachable(err: &Error) -> bool {
    matches!(
        err.code(),
        ErrorCode::Network | ErrorCode::Timeout | ErrorCode::Offline
    )
}

fn navigator_online() -> bool {
    web_sys::window().is_none_or(|w| w.navigator().on_line())
}
