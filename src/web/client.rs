//! The client's engine: runs the record cores ([`StagedRecords`],
//! [`Debounce`], [`Outbox`], the merge) with real timers, fetch and
//! IndexedDB, and tells subscribers what changed.
//!
//! The life of a save: it is staged at once (so `view` shows it), waits in
//! the debouncer, becomes an outbox entry written to IndexedDB, and only then
//! is sent. A 2xx commits it; a 409 is merged and re-sent or becomes a
//! conflict; a transient failure is retried with backoff (the caller hears
//! `queued` once the attempts are used up or the browser is offline); a
//! permanent 4xx moves it to the failed mutations. Every caller of a batch is
//! settled exactly once.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::{Rc, Weak};

use gloo_timers::callback::Timeout;
use js_sys::{Function, Promise};
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{spawn_local, JsFuture};

use crate::core::debounce::{Batch, Debounce, DebounceOptions, Pushed, SavePayload};
use crate::core::merge::{Conflict, MergeRules};
use crate::core::outbox::{
    ConflictHandled, EntryError, EntryState, MutationOp, NewMutation, Outbox, OutboxEntry,
};
use crate::core::reachability::{Answer, Reachability};
use crate::core::record::{Comment, Fields, PendingComment, Record, RecordKey};
use crate::core::retry::RetryPolicy;
use crate::core::sort::CollectMap;
use crate::core::staged::{RemoteChange, StageError, StagedChange, StagedRecords, StagedState};
use crate::core::tab_message::{RecordChange, SessionEnd, SessionNotice, TabMessage, WorkNotice};
use crate::core::vecmap::VecMap;
use crate::error::{Error, ErrorCode};
use crate::web::channel::EnvelopeChannel;
use crate::web::clock::{now_ms, random_unit, uuid_v4};
use crate::web::http::{send, HttpRequest, HttpResponse, Method};
use crate::web::idb::{record_key, Batch as DbBatch, Store, UserDb};
use crate::web::js::{from_server, get, to_js};
use crate::web::lifecycle::{EventListener, PageEvent, PageLifecycle};

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

/// Counters since the client was made (docs/reference.md, `metrics()`).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct Metrics {
    operations: u64,
    commits: u64,
    conflicts: u64,
    merged: u64,
    retries: u64,
    requests: u64,
    outbox_replayed: u64,
    /// `change` events received from `/api/events` (each rings for a read
    /// of the changes feed).
    feed_events: u64,
    /// Mutations the server refused for good.
    failed: u64,
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

/// A drain of the outbox under way: when it began and the counters then.
#[derive(Debug, Clone)]
struct Drain {
    since: u64,
    at_start: Metrics,
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

/// What an entry's callers hear when it ends.
enum Outcome {
    Committed(Record),
    Merged(Record, Vec<String>),
    Conflict(Box<Conflict>),
    Queued(String),
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

/// A kept conflict and the record as the change was based on it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeptConflict {
    conflict: Conflict,
    base: Option<Record>,
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

/// `pending()` names a change still in the debounce window
/// `staged:<collection>/<id>`, so `discard` can drop it too.
const STAGED_PREFIX: &str = "staged:";

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

/// Mutable state of the engine.
#[derive(Default)]
struct State {
    records: StagedRecords,
    outbox: Outbox,
    debounce: Option<Debounce<RecordKey, SavePayload>>,
    callers: VecMap<u64, Caller>,
    /// Callers waiting for each outbox entry.
    waiting: VecMap<String, Vec<u64>>,
    /// Fields re-sent after a merge, per entry (`merged` in docs/guide/conflicts.md).
    merged: VecMap<String, Vec<String>>,
    /// Entries not yet written to IndexedDB: never sent before they are.
    unpersisted: HashSet<String>,
    /// Entries this tab made: it sends them itself, leader or not, so its
    /// callers hear the server's answer. Entries restored from IndexedDB
    /// (a closed tab's, a reload's) are sent by the leader.
    own: HashSet<String>,
    /// Entries another live tab made, known here from IndexedDB so that
    /// `pending()` and `failed()` are the same in every tab; that tab sends
    /// them (or the leader, once it adopts them).
    foreign: HashSet<String>,
    /// Entries whose send should outlive the page (`pagehide`).
    keepalive: HashSet<String>,
    conflicts: VecMap<String, KeptConflict>,
    stale: HashSet<String>,
    metrics: Metrics,
    /// The outbox drain under way, for the sync log.
    drain: Option<Drain>,
    /// The record-sync log as IndexedDB has it (newest first).
    sync_log: Option<JsValue>,
    next_caller: u64,
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
    /// Whether the server can be reached (not `navigator.onLine` alone).
    reach: RefCell<Reachability>,
    /// The next probe of the server while it cannot be reached.
    probe_timer: RefCell<Option<Timeout>>,
    /// The server said the token is this session's user (`GET /api/me`, or
    /// the login). Until then nothing is read from or sent to the server
    /// with it, so one user's local data never goes out with another's token.
    verified: Cell<bool>,
    leader: Cell<bool>,
    closed: Cell<bool>,
    expired: Cell<bool>,
    debounce_timer: RefCell<Option<Timeout>>,
    retry_timer: RefCell<Option<Timeout>>,
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
        let debounce = Debounce::new(config.debounce);
        let inner = Rc::new(Inner {
            config,
            session: RefCell::new(session),
            state: RefCell::new(State {
                debounce: Some(debounce),
                ..State::default()
            }),
            db: RefCell::new(None),
            held: RefCell::new(None),
            held_timer: RefCell::new(None),
            listeners: js_sys::Set::new(&JsValue::UNDEFINED),
            snapshots: RefCell::new(HashMap::new()),
            record_js: RefCell::new(HashMap::new()),
            queries: RefCell::default(),
            reach: RefCell::new(Reachability::new(navigator_online())),
            probe_timer: RefCell::new(None),
            verified: Cell::new(verified),
            leader: Cell::new(false),
            closed: Cell::new(false),
            expired: Cell::new(false),
            debounce_timer: RefCell::new(None),
            retry_timer: RefCell::new(None),
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
            let mut reach = client.inner.reach.borrow_mut();
            let _ = reach.request_ended(Answer::Unreachable, now_ms(), 0.0);
            reach.nudge(now_ms());
        }
        client.schedule_probe();
        client.pump();
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
        self.inner.reach.borrow().online()
    }

    /// Online, and the token is known to be this session's user: the
    /// server may be read from and written to.
    fn can_talk(&self) -> bool {
        self.is_online() && self.inner.verified.get()
    }

    /// Tells the engine whether this tab leads (sends the outbox entries
    /// of closed tabs). On gaining it, entries other tabs left in IndexedDB
    /// are adopted.
    pub fn set_leader(&self, leader: bool) {
        if self.inner.leader.replace(leader) != leader {
            if !leader {
                self.inner.events.borrow_mut().take();
            }
            self.changed();
            self.emit_status();
            if leader {
                let this = self.clone();
                spawn_local(async move {
                    this.adopt_orphans().await;
                    this.pump();
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
                && !inner.closed.get()
                && !inner.expired.get()
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
                    client.inner.state.borrow_mut().metrics.feed_events += 1;
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
                if !again || client.inner.closed.get() || client.inner.expired.get() {
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
                            state.records.apply_remote(
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
                                .records
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

    /// Reads outbox entries from IndexedDB that this tab does not know
    /// (written by a tab that closed) and adds them to its outbox.
    async fn adopt_orphans(&self) {
        // Entries known from other tabs become this leader's to send too
        // (their tab may have closed; a live one's answer is the same, by
        // its Idempotency-Key).
        self.inner.state.borrow_mut().foreign.clear();
        let Some(db) = self.db() else { return };
        let stored: Vec<(String, OutboxEntry)> = db.all(Store::Outbox).await.unwrap_or_default();
        let mut state = self.inner.state.borrow_mut();
        let fresh: Vec<OutboxEntry> = stored
            .into_iter()
            .map(|(_, e)| e)
            .filter(|e| state.outbox.get(&e.mutation_id).is_none())
            .collect();
        if fresh.is_empty() {
            return;
        }
        let sending: Vec<String> = state
            .outbox
            .pending()
            .iter()
            .filter(|e| e.state == EntryState::Sending)
            .map(|e| e.mutation_id.clone())
            .collect();
        for entry in &fresh {
            restage(&mut state.records, entry);
        }
        state.metrics.outbox_replayed += fresh.len() as u64;
        let all: Vec<OutboxEntry> = state.outbox.entries().cloned().chain(fresh).collect();
        state.outbox = Outbox::restore(all);
        // Restoring forgets what was in flight; it still is.
        for id in sending {
            let _ = state.outbox.mark_sending(&id);
        }
        drop(state);
        self.changed();
        self.emit_status();
    }

    /// Another tab changed the user's outbox, dead letters or conflicts:
    /// read them again from IndexedDB, the one copy that counts, so every
    /// tab shows the same `pending()`, `failed()` and `conflicts()`, and
    /// raise `conflict` events for conflicts new here.
    pub async fn reread_work(&self) {
        let Some(db) = self.db() else { return };
        let outbox: Result<Vec<(String, OutboxEntry)>, Error> = db.all(Store::Outbox).await;
        let failed: Result<Vec<(String, OutboxEntry)>, Error> = db.all(Store::Failed).await;
        let conflicts: Result<Vec<(String, KeptConflict)>, Error> = db.all(Store::Conflicts).await;
        let (Ok(outbox), Ok(failed), Ok(conflicts)) = (outbox, failed, conflicts) else {
            return;
        };
        if let Ok(Some(log)) = db.db().get(Store::Meta.name(), SYNC_LOG_KEY).await {
            self.inner.state.borrow_mut().sync_log = Some(log);
        }
        let (fresh_conflicts, gone_callers) = {
            let mut guard = self.inner.state.borrow_mut();
            let state = &mut *guard;
            let mut stored: VecMap<String, OutboxEntry> = VecMap::new();
            for (_, entry) in outbox.into_iter().chain(failed) {
                stored.insert(entry.mutation_id.clone(), entry);
            }
            // What is under way here, or not yet written, stays as this tab
            // has it; everything else is as IndexedDB says.
            let mut all: Vec<OutboxEntry> = Vec::new();
            let mut sending: Vec<String> = Vec::new();
            for entry in state.outbox.entries() {
                let id = &entry.mutation_id;
                if entry.state == EntryState::Sending || state.unpersisted.contains(id) {
                    if entry.state == EntryState::Sending {
                        sending.push(id.clone());
                    }
                    stored.remove(id);
                    all.push(entry.clone());
                }
            }
            let known: HashSet<String> = state
                .outbox
                .entries()
                .map(|e| e.mutation_id.clone())
                .collect();
            for (id, entry) in stored {
                let local = state.outbox.get(&id);
                // A failed entry of ours that another tab put back in line
                // is that tab's to send now.
                let retried_elsewhere = local.is_some_and(|l| {
                    l.state == EntryState::Failed && entry.state != EntryState::Failed
                });
                if !known.contains(&id) {
                    restage(&mut state.records, &entry);
                }
                if !known.contains(&id) || retried_elsewhere {
                    state.own.remove(&id);
                    state.foreign.insert(id.clone());
                }
                all.push(entry);
            }
            let kept: HashSet<String> = all.iter().map(|e| e.mutation_id.clone()).collect();
            // Entries gone from IndexedDB: sent, discarded or resolved in
            // another tab. Their staged changes go with them.
            let gone: Vec<OutboxEntry> = state
                .outbox
                .entries()
                .filter(|e| !kept.contains(&e.mutation_id))
                .cloned()
                .collect();
            for entry in &gone {
                unstage(&mut state.records, entry);
                state.own.remove(&entry.mutation_id);
                state.foreign.remove(&entry.mutation_id);
            }
            let gone_callers: Vec<String> = gone
                .iter()
                .map(|e| e.mutation_id.clone())
                .filter(|id| state.waiting.get(id).is_some())
                .collect();
            state.outbox = Outbox::restore(all);
            for id in sending {
                let _ = state.outbox.mark_sending(&id);
            }
            let fresh: Vec<KeptConflict> = conflicts
                .iter()
                .filter(|(id, _)| state.conflicts.get(id).is_none())
                .map(|(_, kept)| kept.clone())
                .collect();
            state.conflicts = conflicts.into_iter().collect_map();
            (fresh, gone_callers)
        };
        for id in gone_callers {
            self.settle(&id, Err(Error::Cancelled));
        }
        self.changed();
        for kept in &fresh_conflicts {
            self.emit_conflict(kept);
        }
        self.emit_status();
        self.pump();
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
    fn tell_tabs_record(&self, key: &RecordKey, version: u64) {
        let change = {
            let state = self.inner.state.borrow();
            let record = state.records.get(&key.collection, &key.id);
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
                    .records
                    .apply_remote(collection, RemoteChange::Put(record)),
                None => {
                    let version = state.records.get(collection, id).map_or(0, |r| r.version);
                    state.records.apply_remote(
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
                if !self.inner.expired.replace(true) {
                    self.emit_session("expired");
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
        self.inner.state.borrow_mut().sync_log = sync_log;
        {
            let mut state = self.inner.state.borrow_mut();
            for (collection, record) in records {
                let _ = state
                    .records
                    .apply_remote(&collection, RemoteChange::Put(record));
                state.stale.insert(collection);
            }
            let restored = entries.len() as u64;
            let all: Vec<OutboxEntry> = entries
                .into_iter()
                .chain(failed)
                .map(|(_, entry)| entry)
                .collect();
            state.outbox = Outbox::restore(all);
            state.metrics.outbox_replayed += restored;
            let outbox_entries: Vec<OutboxEntry> = state.outbox.entries().cloned().collect();
            for entry in &outbox_entries {
                restage(&mut state.records, entry);
            }
            for (id, kept) in conflicts {
                state.conflicts.insert(id, kept);
            }
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
    async fn persist(&self, batch: DbBatch) {
        let Some(db) = self.db() else { return };
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
            return;
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
            }
        }
    }

    fn retry_held(&self) {
        let weak = self.weak();
        let timer = Timeout::new(HELD_RETRY_MS, move || {
            if let Some(client) = Client::from_weak(&weak) {
                spawn_local(async move { client.persist(DbBatch::new()).await });
            }
        });
        *self.inner.held_timer.borrow_mut() = Some(timer);
    }

    fn entry_batch(entry: &OutboxEntry) -> DbBatch {
        let mut batch = DbBatch::new();
        let store = if entry.state == EntryState::Failed {
            Store::Failed
        } else {
            Store::Outbox
        };
        let _ = batch.put(store.name(), entry.mutation_id.clone(), entry);
        batch
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
        let changed = self
            .inner
            .reach
            .borrow_mut()
            .network_changed(online, now_ms());
        if online {
            self.inner.state.borrow_mut().outbox.retry_all_now();
        }
        self.schedule_probe();
        if changed.0 {
            self.online_changed();
        }
    }

    /// Window focus or a page made visible: if the server could not be
    /// reached, try it now rather than at the next backoff step.
    fn nudge(&self) {
        self.inner.reach.borrow_mut().nudge(now_ms());
        self.schedule_probe();
    }

    /// Sets the timer for the next probe (or clears it).
    fn schedule_probe(&self) {
        let at = self.inner.reach.borrow().next_probe_at();
        let Some(at) = at.filter(|_| !self.inner.closed.get()) else {
            self.inner.probe_timer.borrow_mut().take();
            return;
        };
        let delay = at.saturating_sub(now_ms());
        let weak = self.weak();
        let timer = Timeout::new(u32::try_from(delay).unwrap_or(u32::MAX), move || {
            if let Some(client) = Client::from_weak(&weak) {
                if client.inner.reach.borrow_mut().take_due_probe(now_ms()) {
                    spawn_local(async move { client.probe().await });
                } else {
                    client.schedule_probe();
                }
            }
        });
        *self.inner.probe_timer.borrow_mut() = Some(timer);
    }

    /// Asks the server who the token belongs to (`GET /api/me`): the
    /// cheapest authenticated request, and the one that verifies a token
    /// opened without a login.
    async fn probe(&self) {
        #[derive(Deserialize)]
        struct Me {
            user: String,
        }
        let result = match self.request(Method::Get, "/me") {
            Ok(req) => {
                self.inner.state.borrow_mut().metrics.requests += 1;
                send(&req).await
            }
            Err(e) => Err(e),
        };
        if self.inner.closed.get() {
            return;
        }
        let answer = reach_answer(&result).unwrap_or(Answer::Unreachable);
        match result {
            Ok(resp) => match from_server::<Me>(resp.body) {
                Ok(me) if me.user == self.user() => self.inner.verified.set(true),
                // Another user's token (or an answer we cannot read): this
                // database's data never goes out with it.
                _ => self.session_expired(),
            },
            Err(e) if e.code() == ErrorCode::Unauthorized => self.session_expired(),
            Err(_) => {}
        }
        let changed = self
            .inner
            .reach
            .borrow_mut()
            .probed(answer, now_ms(), random_unit());
        self.schedule_probe();
        if changed.0 {
            self.online_changed();
        } else if answer == Answer::Answered {
            // Verified while already believed online: start what waited.
            self.pump();
        }
    }

    /// Sends `req` once, counting it and telling reachability how it went.
    async fn exchange(&self, req: &HttpRequest) -> Result<HttpResponse, Error> {
        self.inner.state.borrow_mut().metrics.requests += 1;
        let result = send(req).await;
        let Some(answer) = reach_answer(&result).filter(|_| !self.inner.closed.get()) else {
            return result;
        };
        let changed = self
            .inner
            .reach
            .borrow_mut()
            .request_ended(answer, now_ms(), random_unit());
        if changed.0 {
            self.schedule_probe();
            self.online_changed();
        }
        result
    }

    /// `status.online` flipped: tell the app; offline, callers waiting on
    /// entries that cannot be sent now hear `queued`; online again, send
    /// what waited and catch up with other people's changes.
    fn online_changed(&self) {
        if self.is_online() {
            self.ring_feed_if_leading();
        } else {
            // Callers waiting on entries that cannot be sent now hear
            // `queued` at once.
            let ids: Vec<String> = self.inner.state.borrow().waiting.keys().cloned().collect();
            for id in ids {
                let sending = self
                    .inner
                    .state
                    .borrow()
                    .outbox
                    .get(&id)
                    .is_some_and(|e| e.state == EntryState::Sending);
                if !sending {
                    self.settle(&id, Ok(Outcome::Queued(id.clone())));
                }
            }
        }
        self.changed();
        self.emit_status();
        self.pump();
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
                .records
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
            let records = state.records.list(collection);
            let out = js_sys::Array::new_with_length(records.len() as u32);
            for (i, r) in records.iter().enumerate() {
                out.set(i as u32, record_object(&mut cache, collection, r, stale));
            }
            // Records gone from the collection leave the cache too.
            if cache.len() > state.records.len() {
                cache.retain(|key, _| state.records.get(&key.collection, &key.id).is_some());
            }
            out.into()
        })
    }

    /// The confirmed record with this tab's staged changes laid over it.
    pub fn view(&self, collection: &str, id: &str) -> JsValue {
        self.snapshot(format!("view\u{0}{collection}\u{0}{id}"), || {
            let state = self.inner.state.borrow();
            let user = self.inner.session.borrow().user.clone();
            let Some(view) = state.records.view(collection, id) else {
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
            for (key, change) in debounced(&state) {
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
            rows.extend(state.outbox.pending().iter().map(mutation_row));
            to_js(&rows).unwrap_or_else(|_| js_sys::Array::new().into())
        })
    }

    /// Mutations the server refused for good.
    pub fn failed(&self) -> JsValue {
        self.snapshot("failed".into(), || {
            let state = self.inner.state.borrow();
            let rows: Vec<JsMutation<'_>> =
                state.outbox.failed().iter().map(mutation_row).collect();
            to_js(&rows).unwrap_or_else(|_| js_sys::Array::new().into())
        })
    }

    /// Conflicts waiting for a person.
    pub fn conflicts(&self) -> JsValue {
        self.snapshot("conflicts".into(), || {
            let state = self.inner.state.borrow();
            let rows: Vec<JsConflict<'_>> = state.conflicts.values().map(js_conflict).collect();
            to_js(&rows).unwrap_or_else(|_| js_sys::Array::new().into())
        })
    }

    /// `{ online, leader, pending, failed, storage, lastSyncAt }`.
    pub fn status(&self) -> JsValue {
        self.snapshot("status".into(), || {
            let state = self.inner.state.borrow();
            let staged_only = debounced(&state).count();
            let status = JsStatus {
                online: self.is_online(),
                leader: self.inner.leader.get(),
                pending: state.outbox.pending().len() + staged_only,
                failed: state.outbox.failed().len(),
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
        to_js(&state.metrics)
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
        if self.inner.closed.get() {
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
                    self.inner.state.borrow_mut().metrics.retries += 1;
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
            .records
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

    /// Settles everyone waiting for an entry.
    fn settle(&self, mutation_id: &str, result: Result<Outcome, Error>) {
        let callers = self
            .inner
            .state
            .borrow_mut()
            .waiting
            .remove(mutation_id)
            .unwrap_or_default();
        if callers.is_empty() {
            return;
        }
        let value = result.and_then(|outcome| self.outcome_js(outcome));
        self.settle_callers(callers, &value);
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
                let kept = state.conflicts.get(&conflict.id);
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
        if self.inner.closed.get() {
            return Err(Error::Closed);
        }
        if self.inner.expired.get() {
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
                self.stage_and_debounce(RecordKey::new(collection, id), fields)?
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
            state.records.get(collection, id).is_some() || state.records.staged(&key).is_some()
        };
        if !known {
            return Ok(None);
        }
        self.stage_and_debounce(key, fields).map(Some)
    }

    fn stage_and_debounce(&self, key: RecordKey, fields: Fields) -> Result<Promise, Error> {
        self.inner
            .state
            .borrow_mut()
            .records
            .stage(&key, fields.clone())
            .map_err(stage_error)?;
        let (caller, promise) = self.new_caller();
        let pushed = {
            let mut state = self.inner.state.borrow_mut();
            state.metrics.operations += 1;
            match state.debounce.as_mut() {
                Some(d) => d.push(key.clone(), SavePayload::fields(fields), caller, now_ms()),
                None => return Err(Error::Closed),
            }
        };
        self.changed();
        self.emit_record(&key, "local");
        self.emit_status();
        match pushed {
            Pushed::Fired(batch) => self.dispatch(batch, false),
            Pushed::Waiting { .. } => self.schedule_debounce(),
        }
        Ok(promise)
    }

    fn schedule_debounce(&self) {
        let deadline = self
            .inner
            .state
            .borrow()
            .debounce
            .as_ref()
            .and_then(|d| d.next_deadline());
        let Some(deadline) = deadline else {
            self.inner.debounce_timer.borrow_mut().take();
            return;
        };
        let delay = deadline.saturating_sub(now_ms());
        let weak = self.weak();
        let timer = Timeout::new(u32::try_from(delay).unwrap_or(u32::MAX), move || {
            if let Some(client) = Client::from_weak(&weak) {
                let due = client
                    .inner
                    .state
                    .borrow_mut()
                    .debounce
                    .as_mut()
                    .map(|d| d.due(now_ms()))
                    .unwrap_or_default();
                for batch in due {
                    client.dispatch(batch, false);
                }
                client.schedule_debounce();
            }
        });
        *self.inner.debounce_timer.borrow_mut() = Some(timer);
    }

    /// Turns a debounced batch into an outbox entry.
    fn dispatch(&self, batch: Batch<RecordKey, SavePayload>, keepalive: bool) {
        let key = batch.key;
        let fields = batch.value.fields;
        let (base_version, base_fields) = {
            let state = self.inner.state.borrow();
            match state.records.staged(&key) {
                Some(change) => (change.base_version, change.base_of(&fields)),
                None => (
                    state
                        .records
                        .get(&key.collection, &key.id)
                        .map_or(0, |r| r.version),
                    Fields::new(),
                ),
            }
        };
        let op = MutationOp::Patch {
            base_version,
            base_fields,
            fields,
        };
        self.enqueue(key, op, batch.callers, keepalive);
    }

    /// Puts a mutation in the outbox, writes it to IndexedDB, then sends it.
    fn enqueue(&self, key: RecordKey, op: MutationOp, callers: Vec<u64>, keepalive: bool) {
        let mutation = NewMutation {
            mutation_id: uuid_v4(),
            idempotency_key: uuid_v4(),
            collection: key.collection.clone(),
            record_id: key.id.clone(),
            op,
        };
        let enqueued = self
            .inner
            .state
            .borrow_mut()
            .outbox
            .enqueue(mutation, now_ms());
        let target = match enqueued {
            Ok(crate::core::outbox::Enqueued::Added { mutation_id }) => mutation_id,
            Ok(crate::core::outbox::Enqueued::Folded { into }) => into,
            Err(e) => {
                self.settle_callers(callers, &Err(Error::Invalid(e.to_string())));
                return;
            }
        };
        let entry = {
            let mut state = self.inner.state.borrow_mut();
            state
                .waiting
                .get_or_insert_with(target.clone(), Vec::new)
                .extend(callers);
            state.unpersisted.insert(target.clone());
            state.own.insert(target.clone());
            if keepalive {
                state.keepalive.insert(target.clone());
            }
            state.records.set_state(&key, StagedState::Queued);
            state.outbox.get(&target).cloned()
        };
        self.changed();
        self.emit_status();
        let Some(entry) = entry else { return };
        if !self.is_online() {
            self.settle(&target, Ok(Outcome::Queued(target.clone())));
        }
        if keepalive {
            // The page is going away: IndexedDB may not finish, the
            // keepalive fetch will. Send first, then write.
            self.inner.state.borrow_mut().unpersisted.remove(&target);
            self.pump();
            let this = self.clone();
            spawn_local(async move {
                this.persist(Self::entry_batch(&entry)).await;
            });
            return;
        }
        let this = self.clone();
        spawn_local(async move {
            this.persist(Self::entry_batch(&entry)).await;
            this.inner.state.borrow_mut().unpersisted.remove(&target);
            this.pump();
        });
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
        let comment_id = uuid_v4();
        {
            let mut state = self.inner.state.borrow_mut();
            state.records.stage_comment(
                &key,
                PendingComment {
                    id: comment_id.clone(),
                    text: text.clone(),
                },
            );
            state.metrics.operations += 1;
        }
        let (caller, promise) = self.new_caller();
        self.changed();
        self.emit_record(&key, "local");
        self.enqueue(
            key,
            MutationOp::Comment { comment_id, text },
            vec![caller],
            false,
        );
        Ok(promise)
    }

    /// Creates a record with a client-made id.
    ///
    /// # Errors
    /// `invalid`, `closed`, or what the server said.
    pub async fn create(&self, collection: &str, fields: Fields) -> Result<JsValue, Error> {
        self.check_open()?;
        check_collection(collection)?;
        let key = RecordKey::new(collection, uuid_v4());
        self.inner
            .state
            .borrow_mut()
            .records
            .stage_create(&key, fields.clone())
            .map_err(stage_error)?;
        self.inner.state.borrow_mut().metrics.operations += 1;
        let (caller, promise) = self.new_caller();
        self.changed();
        self.emit_record(&key, "local");
        self.enqueue(key, MutationOp::Create { fields }, vec![caller], false);
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
        if self
            .inner
            .state
            .borrow()
            .records
            .get(collection, id)
            .is_none()
        {
            self.fetch_one(&key).await?;
        }
        let base_version = {
            let mut state = self.inner.state.borrow_mut();
            state.records.stage_delete(&key).map_err(stage_error)?;
            state.metrics.operations += 1;
            state.records.get(collection, id).map_or(0, |r| r.version)
        };
        let (caller, promise) = self.new_caller();
        self.changed();
        self.emit_record(&key, "local");
        self.enqueue(
            key,
            MutationOp::Delete { base_version },
            vec![caller],
            false,
        );
        JsFuture::from(promise).await.map_err(rejected)
    }

    /// Sends every debounced change now; returns the callers' promises.
    pub fn flush_now(&self, keepalive: bool) -> Vec<Promise> {
        let batches = self
            .inner
            .state
            .borrow_mut()
            .debounce
            .as_mut()
            .map(|d| d.flush())
            .unwrap_or_default();
        let promises: Vec<Promise> = {
            let state = self.inner.state.borrow();
            batches
                .iter()
                .flat_map(|b| b.callers.iter())
                .filter_map(|c| state.callers.get(c).map(|c| c.promise.clone()))
                .collect()
        };
        for batch in batches {
            self.dispatch(batch, keepalive);
        }
        self.schedule_debounce();
        promises
    }

    /// Puts a failed mutation back in its lane and sends it.
    ///
    /// # Errors
    /// `not_found` for an unknown id.
    pub async fn retry(&self, mutation_id: &str) -> Result<JsValue, Error> {
        self.check_open()?;
        let entry = {
            let mut state = self.inner.state.borrow_mut();
            state
                .outbox
                .retry(mutation_id)
                .map_err(|e| not_found(e.to_string()))?;
            let entry = state.outbox.get(mutation_id).cloned();
            state.own.insert(mutation_id.to_owned());
            state.foreign.remove(mutation_id);
            if let Some(e) = &entry {
                state.records.set_state(
                    &RecordKey::new(&e.collection, &e.record_id),
                    StagedState::Queued,
                );
            }
            entry
        };
        let (caller, promise) = self.new_caller();
        self.inner
            .state
            .borrow_mut()
            .waiting
            .get_or_insert_with(mutation_id.to_owned(), Vec::new)
            .push(caller);
        if let Some(entry) = entry {
            let mut batch = Self::entry_batch(&entry);
            batch.delete(Store::Failed.name(), entry.mutation_id.clone());
            // Of two tabs retrying one entry at once, one finds it gone.
            if let Err(e) = self.claim(Store::Failed, mutation_id, batch).await {
                self.settle(mutation_id, Err(Error::Cancelled));
                self.reread_work().await;
                return Err(e);
            }
        }
        self.changed();
        self.emit_status();
        self.pump();
        JsFuture::from(promise).await.map_err(rejected)
    }

    /// Drops a failed or queued mutation and its staged change.
    ///
    /// # Errors
    /// `not_found` for an unknown id, `invalid` while it is being sent.
    pub async fn discard(&self, mutation_id: &str) -> Result<(), Error> {
        if let Some(key) = mutation_id
            .strip_prefix(STAGED_PREFIX)
            .and_then(|rest| rest.split_once('/'))
            .map(|(c, id)| RecordKey::new(c, id))
        {
            self.discard_staged(&key);
            return Ok(());
        }
        let entry = self
            .inner
            .state
            .borrow_mut()
            .outbox
            .discard(mutation_id)
            .map_err(|e| not_found(e.to_string()))?;
        let key = RecordKey::new(&entry.collection, &entry.record_id);
        unstage(&mut self.inner.state.borrow_mut().records, &entry);
        self.settle(mutation_id, Err(Error::Cancelled));
        let mut batch = DbBatch::new();
        batch.delete(Store::Outbox.name(), mutation_id.to_owned());
        batch.delete(Store::Failed.name(), mutation_id.to_owned());
        self.persist(batch).await;
        self.changed();
        self.emit_record(&key, "local");
        self.emit_status();
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

    /// Drops the changes of a record that still wait in the debounce
    /// window (not yet in the outbox); their callers hear `cancelled`.
    fn discard_staged(&self, key: &RecordKey) {
        let callers = {
            let mut state = self.inner.state.borrow_mut();
            let callers = state
                .debounce
                .as_mut()
                .map(|d| d.cancel_key(key))
                .unwrap_or_default();
            let queued: HashSet<String> = state
                .outbox
                .pending()
                .iter()
                .filter(|e| e.collection == key.collection && e.record_id == key.id)
                .filter_map(|e| e.op.fields())
                .flat_map(|f| f.keys().cloned())
                .collect();
            let waiting: Fields = state
                .records
                .staged(key)
                .map(|c| {
                    c.fields
                        .iter()
                        .filter(|(k, _)| !queued.contains(*k))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect_map()
                })
                .unwrap_or_default();
            state.records.unstage(key, &waiting);
            callers
        };
        self.settle_callers(callers, &Err(Error::Cancelled));
        self.schedule_debounce();
        self.changed();
        self.emit_record(key, "local");
        self.emit_status();
    }

    /// Resolves a conflict with the fields a person chose; they are sent on
    /// the server's version.
    ///
    /// # Errors
    /// `not_found` for an unknown conflict, or what the server said.
    pub async fn resolve(&self, conflict_id: &str, chosen: Fields) -> Result<JsValue, Error> {
        self.check_open()?;
        if self
            .inner
            .state
            .borrow()
            .conflicts
            .get(conflict_id)
            .is_none()
        {
            return Err(not_found(format!("no conflict {conflict_id:?}")));
        }
        // Of two tabs resolving one conflict at once, one finds it gone.
        let mut batch = DbBatch::new();
        batch.delete(Store::Conflicts.name(), conflict_id.to_owned());
        let claimed = self.claim(Store::Conflicts, conflict_id, batch).await;
        let kept = self.inner.state.borrow_mut().conflicts.remove(conflict_id);
        if let Err(e) = claimed {
            self.changed();
            self.emit_status();
            return Err(e);
        }
        let conflict = kept
            .ok_or_else(|| not_found(format!("no conflict {conflict_id:?}")))?
            .conflict;
        let resolution = conflict.resolve(&chosen);
        let key = RecordKey::new(&conflict.collection, &conflict.record_id);
        if resolution.patch.is_empty() {
            self.changed();
            self.emit_status();
            return self.outcome_js(Outcome::Committed(conflict.theirs));
        }
        let base_fields: Fields = resolution
            .patch
            .keys()
            .map(|k| {
                (
                    k.clone(),
                    conflict
                        .theirs
                        .fields
                        .get(k)
                        .cloned()
                        .unwrap_or(crate::core::record::FieldValue::Null),
                )
            })
            .collect_map();
        {
            let mut state = self.inner.state.borrow_mut();
            state
                .records
                .apply_remote(&key.collection, RemoteChange::Put(conflict.theirs.clone()));
            let _ = state.records.stage(&key, resolution.patch.clone());
            state.metrics.operations += 1;
        }
        let (caller, promise) = self.new_caller();
        self.changed();
        self.emit_record(&key, "local");
        self.enqueue(
            key,
            MutationOp::Patch {
                base_version: resolution.if_match,
                base_fields,
                fields: resolution.patch,
            },
            vec![caller],
            false,
        );
        JsFuture::from(promise).await.map_err(rejected)
    }

    // ----- the outbox pump ---------------------------------------------------

    /// Sends what can be sent now: one entry per record lane, in parallel.
    pub fn pump(&self) {
        if self.inner.closed.get() || self.inner.expired.get() {
            return;
        }
        if !self.can_talk() {
            return;
        }
        let leader = self.inner.leader.get();
        let now = now_ms();
        let ready: Vec<OutboxEntry> = {
            let mut state = self.inner.state.borrow_mut();
            let ids: Vec<String> = state
                .outbox
                .next_sendable(now)
                .into_iter()
                .filter(|e| !state.unpersisted.contains(&e.mutation_id))
                .filter(|e| !state.foreign.contains(&e.mutation_id))
                .filter(|e| leader || state.own.contains(&e.mutation_id))
                .map(|e| e.mutation_id.clone())
                .collect();
            let mut ready = Vec::new();
            for id in ids {
                if let Ok(entry) = state.outbox.mark_sending(&id) {
                    let entry = entry.clone();
                    state.records.set_state(
                        &RecordKey::new(&entry.collection, &entry.record_id),
                        StagedState::Sending,
                    );
                    ready.push(entry);
                }
            }
            ready
        };
        if !ready.is_empty() {
            let mut state = self.inner.state.borrow_mut();
            if state.drain.is_none() {
                state.drain = Some(Drain {
                    since: now,
                    at_start: state.metrics.clone(),
                });
            }
        }
        for entry in ready {
            let this = self.clone();
            spawn_local(async move { this.send_entry(entry).await });
        }
        self.schedule_retry();
    }

    fn schedule_retry(&self) {
        let at = self.inner.state.borrow().outbox.next_retry_at(now_ms());
        let Some(at) = at else {
            self.inner.retry_timer.borrow_mut().take();
            return;
        };
        let delay = at.saturating_sub(now_ms()).max(1);
        let weak = self.weak();
        let timer = Timeout::new(u32::try_from(delay).unwrap_or(u32::MAX), move || {
            if let Some(client) = Client::from_weak(&weak) {
                client.pump();
            }
        });
        *self.inner.retry_timer.borrow_mut() = Some(timer);
    }

    fn build(&self, entry: &OutboxEntry) -> Result<HttpRequest, Error> {
        let c = &entry.collection;
        let id = encode(&entry.record_id);
        let body = js_sys::Object::new();
        let set = |k: &str, v: &JsValue| {
            let _ = js_sys::Reflect::set(&body, &k.into(), v);
        };
        let mut req = match &entry.op {
            MutationOp::Patch {
                base_version,
                fields,
                ..
            } => {
                set("fields", &to_js(fields)?);
                let mut r = self.request(Method::Patch, &format!("/{c}/{id}"))?;
                r.if_match = Some(*base_version);
                r
            }
            MutationOp::Create { fields } => {
                set("id", &entry.record_id.as_str().into());
                set("fields", &to_js(fields)?);
                self.request(Method::Post, &format!("/{c}"))?
            }
            MutationOp::Delete { base_version } => {
                let mut r = self.request(Method::Delete, &format!("/{c}/{id}"))?;
                r.if_match = Some(*base_version);
                r
            }
            MutationOp::Comment { comment_id, text } => {
                set("id", &comment_id.as_str().into());
                set("text", &text.as_str().into());
                self.request(Method::Post, &format!("/{c}/{id}/comments"))?
            }
        };
        if !matches!(entry.op, MutationOp::Delete { .. }) {
            req.body = Some(body.into());
        }
        req.idempotency_key = Some(entry.idempotency_key.clone());
        req.keepalive = self
            .inner
            .state
            .borrow()
            .keepalive
            .contains(&entry.mutation_id);
        Ok(req)
    }

    async fn send_entry(&self, entry: OutboxEntry) {
        let result = match self.build(&entry) {
            Ok(req) => self.exchange(&req).await,
            Err(e) => Err(e),
        };
        if self.inner.closed.get() {
            return;
        }
        self.inner
            .state
            .borrow_mut()
            .keepalive
            .remove(&entry.mutation_id);
        match result {
            Ok(resp) => self.on_success(&entry, resp.body).await,
            Err(err) => {
                let is_version_conflict = matches!(
                    &err,
                    Error::Http {
                        status: 409,
                        code: ErrorCode::Conflict,
                        ..
                    }
                );
                if is_version_conflict && !matches!(entry.op, MutationOp::Comment { .. }) {
                    self.on_conflict(&entry, err).await;
                } else if err.code() == ErrorCode::Unauthorized {
                    let _ = self
                        .inner
                        .state
                        .borrow_mut()
                        .outbox
                        .release(&entry.mutation_id);
                    self.session_expired();
                    self.settle(&entry.mutation_id, Err(err));
                } else if err.is_transient() {
                    self.on_transient(&entry, err).await;
                } else if err.status() == Some(409) {
                    // A 409 that is not a version conflict (a double
                    // booking): resending can never succeed, and docs/guide/errors.md
                    // keeps only other 4xx for a person to retry. The
                    // caller hears why; the change is dropped.
                    self.on_permanent(&entry, err).await;
                    let _ = self.discard(&entry.mutation_id).await;
                } else {
                    self.on_permanent(&entry, err).await;
                }
            }
        }
        self.end_drain_if_quiet();
        self.changed();
        self.emit_status();
        self.pump();
    }

    /// When nothing of the outbox is on the wire any more, the drain that
    /// began ends: one line of the sync log.
    fn end_drain_if_quiet(&self) {
        let entry = {
            let mut state = self.inner.state.borrow_mut();
            let on_the_wire = state
                .outbox
                .pending()
                .iter()
                .any(|e| e.state == EntryState::Sending);
            if on_the_wire {
                return;
            }
            let Some(drain) = state.drain.take() else {
                return;
            };
            let (now, then) = (&state.metrics, &drain.at_start);
            let waiting = state
                .outbox
                .pending()
                .iter()
                .find_map(|e| e.last_error.as_ref());
            SyncLogEntry {
                at: now_ms() as f64,
                direction: "push".into(),
                kind: "outbox".into(),
                pushed: now.commits.saturating_sub(then.commits),
                pulled: 0,
                merged: now.merged.saturating_sub(then.merged),
                conflicts: now.conflicts.saturating_sub(then.conflicts),
                failed: now.failed.saturating_sub(then.failed),
                duration_ms: now_ms().saturating_sub(drain.since) as f64,
                error: waiting.map(|e| e.message.clone()),
            }
        };
        self.log_exchange(entry);
    }

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

    async fn on_success(&self, entry: &OutboxEntry, body: JsValue) {
        let key = RecordKey::new(&entry.collection, &entry.record_id);
        let mut batch = DbBatch::new();
        batch.delete(Store::Outbox.name(), entry.mutation_id.clone());
        let outcome = match &entry.op {
            MutationOp::Patch { fields, .. } | MutationOp::Create { fields } => {
                match from_server::<Record>(body) {
                    Ok(record) => {
                        let merged = {
                            let mut state = self.inner.state.borrow_mut();
                            let _ = state.outbox.on_success(&entry.mutation_id, Some(&record));
                            state
                                .records
                                .commit(&entry.collection, record.clone(), fields);
                            state.metrics.commits += 1;
                            state.merged.remove(&entry.mutation_id)
                        };
                        let _ = batch.put_record(
                            Store::Records.name(),
                            record_key(&key.collection, &key.id),
                            &record,
                        );
                        match merged {
                            Some(m) if !m.is_empty() => Ok(Outcome::Merged(record, m)),
                            _ => Ok(Outcome::Committed(record)),
                        }
                    }
                    Err(e) => {
                        // 2xx with a body we cannot read: the change is in,
                        // but we do not know its record; reload it.
                        let mut state = self.inner.state.borrow_mut();
                        let _ = state.outbox.on_success(&entry.mutation_id, None);
                        state.records.unstage(&key, fields);
                        Err(e)
                    }
                }
            }
            MutationOp::Delete { .. } => {
                let last = {
                    let mut state = self.inner.state.borrow_mut();
                    let _ = state.outbox.on_success(&entry.mutation_id, None);
                    let last = state.records.get(&key.collection, &key.id).cloned();
                    state.records.commit_delete(&key);
                    state.metrics.commits += 1;
                    last
                };
                batch.delete(Store::Records.name(), record_key(&key.collection, &key.id));
                Ok(Outcome::Committed(
                    last.unwrap_or_else(|| Record::empty(&key.id)),
                ))
            }
            MutationOp::Comment { .. } => match from_server::<Comment>(body) {
                Ok(comment) => {
                    let record = {
                        let mut state = self.inner.state.borrow_mut();
                        let _ = state.outbox.on_success(&entry.mutation_id, None);
                        state.records.commit_comment(&key, comment);
                        state.metrics.commits += 1;
                        state.records.get(&key.collection, &key.id).cloned()
                    };
                    if let Some(r) = &record {
                        let _ = batch.put_record(
                            Store::Records.name(),
                            record_key(&key.collection, &key.id),
                            r,
                        );
                    }
                    match record {
                        Some(r) => Ok(Outcome::Committed(r)),
                        None => {
                            // Commented without loading the record: read it
                            // now, so the caller gets the record with its log.
                            match self.fetch_one(&key).await {
                                Ok(()) => self
                                    .inner
                                    .state
                                    .borrow()
                                    .records
                                    .get(&key.collection, &key.id)
                                    .cloned()
                                    .map(Outcome::Committed)
                                    .ok_or_else(|| Error::BadResponse("record vanished".into())),
                                Err(e) => Err(e),
                            }
                        }
                    }
                }
                Err(e) => {
                    let _ = self
                        .inner
                        .state
                        .borrow_mut()
                        .outbox
                        .on_success(&entry.mutation_id, None);
                    Err(e)
                }
            },
        };
        self.persist(batch).await;
        self.changed();
        self.emit_record(&key, "local");
        let version = self
            .inner
            .state
            .borrow()
            .records
            .get(&key.collection, &key.id)
            .map_or(0, |r| r.version);
        self.tell_tabs_record(&key, version);
        self.settle(&entry.mutation_id, outcome);
    }

    async fn on_conflict(&self, entry: &OutboxEntry, err: Error) {
        let key = RecordKey::new(&entry.collection, &entry.record_id);
        let details = match &err {
            Error::Http { details, .. } => details.clone(),
            _ => JsValue::UNDEFINED,
        };
        let theirs: Record = match from_server(get(&details, "current")) {
            Ok(r) => r,
            Err(e) => {
                self.on_permanent(entry, e).await;
                return;
            }
        };
        let rules = self.inner.config.rules;
        let outcome = match entry.merge_with(&theirs, &rules) {
            Some(o) => o,
            None => {
                self.on_permanent(entry, err).await;
                return;
            }
        };
        let fresh_id = uuid_v4();
        let base_record = {
            let state = self.inner.state.borrow();
            state
                .records
                .get(&key.collection, &key.id)
                .cloned()
                .map(|mut r| {
                    // The base as the change saw it: confirmed values with the
                    // base values of the changed fields.
                    if let MutationOp::Patch {
                        base_fields,
                        base_version,
                        ..
                    } = &entry.op
                    {
                        r.version = *base_version;
                        for (k, v) in base_fields {
                            r.fields.insert(k.clone(), v.clone());
                        }
                    }
                    r
                })
        };
        let handled = self.inner.state.borrow_mut().outbox.on_conflict(
            &entry.mutation_id,
            &theirs,
            outcome,
            fresh_id,
        );
        let mut batch = DbBatch::new();
        let _ = batch.put_record(
            Store::Records.name(),
            record_key(&key.collection, &key.id),
            &theirs,
        );
        match handled {
            Ok(ConflictHandled::Resend { merged }) => {
                let updated = {
                    let mut state = self.inner.state.borrow_mut();
                    state.metrics.merged += 1;
                    state
                        .records
                        .apply_remote(&key.collection, RemoteChange::Put(theirs.clone()));
                    state.records.rebase(&key, &theirs);
                    let acc = state
                        .merged
                        .get_or_insert_with(entry.mutation_id.clone(), Vec::new);
                    for m in merged {
                        if !acc.contains(&m) {
                            acc.push(m);
                        }
                    }
                    state.outbox.get(&entry.mutation_id).cloned()
                };
                if let Some(updated) = updated {
                    let _ = batch.put(Store::Outbox.name(), updated.mutation_id.clone(), &updated);
                }
                self.persist(batch).await;
            }
            Ok(ConflictHandled::Settled(settled)) => {
                {
                    let mut state = self.inner.state.borrow_mut();
                    state.metrics.merged += 1;
                    let sent = settled.op.fields().cloned().unwrap_or_default();
                    state.records.commit(&key.collection, theirs.clone(), &sent);
                }
                batch.delete(Store::Outbox.name(), entry.mutation_id.clone());
                self.persist(batch).await;
                let merged = self
                    .inner
                    .state
                    .borrow_mut()
                    .merged
                    .remove(&entry.mutation_id)
                    .unwrap_or_default();
                self.emit_record(&key, "server");
                self.settle(&entry.mutation_id, Ok(Outcome::Merged(theirs, merged)));
            }
            Ok(ConflictHandled::Conflict(conflict, _)) => {
                let kept = KeptConflict {
                    conflict: (*conflict).clone(),
                    base: base_record,
                };
                {
                    let mut state = self.inner.state.borrow_mut();
                    state.metrics.conflicts += 1;
                    state
                        .records
                        .apply_remote(&key.collection, RemoteChange::Put(theirs.clone()));
                    state.records.discard(&key);
                    state.merged.remove(&entry.mutation_id);
                    state.conflicts.insert(conflict.id.clone(), kept.clone());
                }
                batch.delete(Store::Outbox.name(), entry.mutation_id.clone());
                let _ = batch.put(Store::Conflicts.name(), conflict.id.clone(), &kept);
                self.persist(batch).await;
                self.changed();
                self.emit_record(&key, "server");
                self.emit_conflict(&kept);
                self.settle(&entry.mutation_id, Ok(Outcome::Conflict(conflict)));
            }
            Err(e) => {
                self.on_permanent(entry, Error::Invalid(e.to_string()))
                    .await;
            }
        }
    }

    async fn on_transient(&self, entry: &OutboxEntry, err: Error) {
        let retry_after = match &err {
            Error::Http { retry_after_ms, .. } => *retry_after_ms,
            _ => None,
        };
        let error = EntryError {
            code: err.code(),
            message: err.to_string(),
        };
        let retrying = {
            let mut state = self.inner.state.borrow_mut();
            state.metrics.retries += 1;
            let r = state.outbox.on_transient_failure(
                &entry.mutation_id,
                error,
                now_ms(),
                &self.inner.config.retry,
                random_unit(),
                retry_after,
            );
            state.records.set_state(
                &RecordKey::new(&entry.collection, &entry.record_id),
                StagedState::Queued,
            );
            r
        };
        let exhausted = retrying.map(|r| r.exhausted).unwrap_or(true);
        if exhausted || !self.is_online() {
            self.settle(
                &entry.mutation_id,
                Ok(Outcome::Queued(entry.mutation_id.clone())),
            );
        }
        if let Some(updated) = self
            .inner
            .state
            .borrow()
            .outbox
            .get(&entry.mutation_id)
            .cloned()
        {
            let this = self.clone();
            spawn_local(async move { this.persist(Self::entry_batch(&updated)).await });
        }
    }

    async fn on_permanent(&self, entry: &OutboxEntry, err: Error) {
        let key = RecordKey::new(&entry.collection, &entry.record_id);
        let failed = {
            let mut state = self.inner.state.borrow_mut();
            state.metrics.failed += 1;
            let failed = state
                .outbox
                .on_permanent_failure(
                    &entry.mutation_id,
                    EntryError {
                        code: err.code(),
                        message: err.to_string(),
                    },
                )
                .ok()
                .cloned();
            state.records.fail(&key);
            failed
        };
        let mut batch = DbBatch::new();
        batch.delete(Store::Outbox.name(), entry.mutation_id.clone());
        if let Some(f) = &failed {
            let _ = batch.put(Store::Failed.name(), f.mutation_id.clone(), f);
        }
        self.persist(batch).await;
        self.changed();
        self.emit_record(&key, "local");
        self.settle(&entry.mutation_id, Err(err));
    }

    /// Before a logout: sends every debounced change and waits (up to the
    /// request timeout) while queued ones are sent. Succeeds when nothing
    /// of the user's is left off the server.
    ///
    /// # Errors
    /// [`Error::PendingChanges`] listing what is left (queued, refused, or
    /// a conflict waiting for a person); the session is untouched.
    pub async fn send_before_logout(&self) -> Result<(), Error> {
        if self.inner.closed.get() {
            return Err(Error::Closed);
        }
        let _ = self.flush_now(false);
        let deadline = now_ms().saturating_add(u64::from(self.inner.config.timeout_ms));
        loop {
            let sending = {
                let state = self.inner.state.borrow();
                !state.outbox.pending().is_empty() || debounced(&state).next().is_some()
            };
            // Without a network nothing will go out; with one, a probe
            // may bring the server back within the wait.
            let stuck = !self.inner.reach.borrow().network()
                || self.inner.expired.get()
                || self.inner.closed.get();
            if !sending || stuck || now_ms() >= deadline {
                break;
            }
            crate::web::clock::sleep(50).await;
        }
        let count = {
            let state = self.inner.state.borrow();
            state.outbox.pending().len()
                + debounced(&state).count()
                + state.outbox.failed().len()
                + state.conflicts.len()
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
        if self.inner.expired.replace(true) {
            return;
        }
        self.emit_session("expired");
        self.tell_tabs(TabMessage::Session(SessionNotice {
            state: SessionEnd::Expired,
        }));
    }

    /// Stops timers and listeners; waiting callers are rejected with `closed`.
    pub fn close(&self) {
        if self.inner.closed.replace(true) {
            return;
        }
        self.inner.debounce_timer.borrow_mut().take();
        self.inner.retry_timer.borrow_mut().take();
        self.inner.probe_timer.borrow_mut().take();
        self.inner.held_timer.borrow_mut().take();
        self.inner.feed_timer.borrow_mut().take();
        self.inner.events.borrow_mut().take();
        self.inner.page.borrow_mut().clear();
        self.inner.lifecycle.borrow_mut().take();
        let callers: Vec<u64> = {
            let mut state = self.inner.state.borrow_mut();
            if let Some(d) = state.debounce.as_mut() {
                d.cancel();
            }
            state.waiting.clear();
            state.callers.keys().copied().collect()
        };
        self.settle_callers(callers, &Err(Error::Closed));
        if let Some(db) = self.inner.db.borrow_mut().take() {
            db.close();
        }
    }
}

/// Staged changes still waiting in the debounce window: not yet in the
/// outbox (so `pending()` lists them apart, and `status.pending` counts them).
fn debounced(state: &State) -> impl Iterator<Item = (&RecordKey, &StagedChange)> {
    let in_outbox: HashSet<(&str, &str)> = state
        .outbox
        .pending()
        .iter()
        .map(|e| (e.collection.as_str(), e.record_id.as_str()))
        .collect();
    state.records.staged_changes().filter(move |(key, change)| {
        change.state == StagedState::Staged
            && !change.fields.is_empty()
            && !in_outbox.contains(&(key.collection.as_str(), key.id.as_str()))
    })
}

/// Lays an outbox entry's change over the confirmed record again (after a
/// reload, the outbox is the truth about what is staged).
fn restage(records: &mut StagedRecords, entry: &OutboxEntry) {
    let key = RecordKey::new(&entry.collection, &entry.record_id);
    let _ = match &entry.op {
        MutationOp::Patch { fields, .. } => records.stage(&key, fields.clone()),
        MutationOp::Create { fields } => records.stage_create(&key, fields.clone()),
        MutationOp::Delete { .. } => records.stage_delete(&key),
        MutationOp::Comment { comment_id, text } => {
            records.stage_comment(
                &key,
                PendingComment {
                    id: comment_id.clone(),
                    text: text.clone(),
                },
            );
            Ok(())
        }
    };
    let state = if entry.state == EntryState::Failed {
        StagedState::Failed
    } else {
        StagedState::Queued
    };
    records.set_state(&key, state);
}

/// Takes an outbox entry's change off the confirmed record (it was
/// discarded, or another tab sent or dropped it).
fn unstage(records: &mut StagedRecords, entry: &OutboxEntry) {
    let key = RecordKey::new(&entry.collection, &entry.record_id);
    match &entry.op {
        MutationOp::Patch { fields, .. } => records.unstage(&key, fields),
        MutationOp::Comment { comment_id, .. } => records.unstage_comment(&key, comment_id),
        MutationOp::Create { .. } | MutationOp::Delete { .. } => {
            records.discard(&key);
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

fn stage_error(e: StageError) -> Error {
    match e {
        StageError::UnknownRecord(_) => not_found(e.to_string()),
        StageError::AlreadyExists(_) | StageError::Deleted(_) => Error::Invalid(e.to_string()),
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

/// What a request's end says about reachability; `None` for a request that
/// never left (a body that could not be made, a closed client).
fn reach_answer(result: &Result<HttpResponse, Error>) -> Option<Answer> {
    match result {
        Ok(_) | Err(Error::BadResponse(_)) => Some(Answer::Answered),
        Err(Error::Network(_) | Error::Timeout(_)) => Some(Answer::Unreachable),
        Err(Error::Http { status, .. }) => Some(Answer::of_status(Some(*status))),
        Err(_) => None,
    }
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
