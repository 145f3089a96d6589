//! A seeded, deterministic simulation of the client engine: several users
//! with several tabs each, against [`server::ModelServer`], over a network
//! that loses, delays, duplicates and reorders requests and answers, with
//! tabs that crash (memory gone, IndexedDB kept), connections cut for a
//! while, IndexedDB refusing writes, a restarting server, and a server
//! that refuses some changes for good; each seed draws its own mix of
//! these faults ([`Faults::drawn`]).
//!
//! The runner here plays the part of `web::client`: it carries out the
//! engine's effects on model stores and a model network, and reports the
//! results as events. Invariants are checked after every event and at
//! quiescence, among them what a person is owed (`owed.rs`). Seeds run as
//! `core/seeds.rs` says: `CRM_SIM_SEEDS=n` runs seeds 1 to `n`,
//! `CRM_SIM_FRESH=n` takes `n` fresh ones, `CRM_SIM_SEED=s` replays one.

mod act;
mod checks;
mod election;
mod feed;
mod msg;
mod names;
mod owed;
mod runner;
mod server;
mod undo;

use names::{op_name, outcome_name, reply_name, short, work_view};
use owed::{Change, Expected, Made};

use super::{
    CallerId, ClientEngine, Effect, EngineConfig, Event, FeedPage, IdSource, KeptConflict, Origin,
    Outcome, ProbeReply, ReadAnswer, ReadTarget, Refusal, Reply, StoreOp, StoredWork, StreamSignal,
};
use crate::core::code::ErrorCode;
use crate::core::outbox::{EntryState, OutboxEntry};
use crate::core::record::{FieldValue, Fields, Record, RecordKey};
use crate::core::staged::RemoteChange;
use server::ModelServer;
use std::collections::{BTreeMap, BTreeSet};

const COLLECTION: &str = "customers";
const FIELDS: [&str; 3] = ["name", "city", "phone"];
const REQUEST_TIMEOUT_MS: u64 = 3_000;
/// The Web Locks hand-over after a leader tab dies (the browser releases
/// its lock; the next tab's request is granted).
const HANDOVER_MS: u64 = 5;

/// The knobs of one run.
#[derive(Debug, Clone)]
pub struct Faults {
    pub users: usize,
    pub tabs: usize,
    pub records: usize,
    pub steps: usize,
    pub loss: f64,
    pub duplicate: f64,
    pub crash: f64,
    pub cut: f64,
    pub idb_refusal: f64,
    pub server_restart: f64,
    /// The server refuses a change for good (`422`, `403`, `409 overlap`).
    pub refusal: f64,
    /// The chance that a user's browser has no Web Locks: its tabs elect
    /// their leader over `BroadcastChannel` (`election.rs`).
    pub broadcast: f64,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            users: 3,
            tabs: 3,
            records: 4,
            steps: 120,
            loss: 0.05,
            duplicate: 0.05,
            crash: 0.02,
            cut: 0.03,
            idb_refusal: 0.02,
            server_restart: 0.01,
            refusal: 0.0,
            broadcast: 0.0,
        }
    }
}

impl Faults {
    /// The fault mix of one seed, drawn from it (as TigerBeetle's VOPR
    /// draws its): about a tenth of the seeds run without faults, a quarter
    /// with many faults of one kind, the rest with each kind off or at up
    /// to twice its usual rate. The usual rates are the default's, with
    /// refusals for good besides.
    pub fn drawn(seed: u64) -> Self {
        let mut rng = IdSource::new(seed ^ 0x6661_756c_7473_2121);
        let mut faults = Self {
            refusal: 0.03,
            ..Self::default()
        };
        // Each kind: the usual rate, and "many".
        let many = [0.3, 0.3, 0.08, 0.12, 0.1, 0.05, 0.3];
        let kinds = [
            &mut faults.loss,
            &mut faults.duplicate,
            &mut faults.crash,
            &mut faults.cut,
            &mut faults.idb_refusal,
            &mut faults.server_restart,
            &mut faults.refusal,
        ];
        let shape = rng.unit();
        if shape < 0.1 {
            for kind in kinds {
                *kind = 0.0;
            }
        } else if shape < 0.35 {
            let one = ((rng.unit() * kinds.len() as f64) as usize).min(kinds.len() - 1);
            for (i, kind) in kinds.into_iter().enumerate() {
                *kind = if i == one { many[i] } else { 0.0 };
            }
        } else {
            for kind in kinds {
                *kind = if rng.unit() < 0.3 {
                    0.0
                } else {
                    *kind * 2.0 * rng.unit()
                };
            }
        }
        // Which users elect over BroadcastChannel: none, about half, or all.
        faults.broadcast = [0.0, 0.0, 0.5, 1.0][((rng.unit() * 4.0) as usize).min(3)];
        faults
    }
}

/// What the model IndexedDB of one user holds.
#[derive(Debug, Default, Clone)]
struct UserDb {
    outbox: BTreeMap<String, OutboxEntry>,
    failed: BTreeMap<String, OutboxEntry>,
    conflicts: BTreeMap<String, KeptConflict>,
    undo: BTreeMap<String, crate::core::undo::UndoEntry>,
    records: BTreeMap<String, Record>,
    /// The changes feed's cursor (`meta` store).
    cursor: Option<String>,
    /// The mark a full load of the collection left (`meta` store).
    mark: Option<super::LoadedMark>,
    /// The next write is refused (quota).
    refuse_next: bool,
}

impl UserDb {
    fn work(&self) -> StoredWork {
        StoredWork {
            outbox: self.outbox.values().cloned().collect(),
            failed: self.failed.values().cloned().collect(),
            conflicts: self.conflicts.values().cloned().collect(),
            undo: self.undo.values().cloned().collect(),
        }
    }

    fn apply(&mut self, ops: &[StoreOp]) {
        for op in ops {
            match op {
                StoreOp::PutRecord { record, .. } => {
                    // The versioned put: never an older version over a newer.
                    let mut record = record.clone();
                    match self.records.get(&record.id) {
                        Some(r) if r.version > record.version => continue,
                        Some(r) if r.version == record.version => {
                            crate::core::staged::join_comments(&mut record, r)
                        }
                        _ => {}
                    }
                    self.records.insert(record.id.clone(), record);
                }
                StoreOp::DeleteRecord(key) => {
                    self.records.remove(&key.id);
                }
                StoreOp::UpdateEntry { entry, if_key }
                    if self
                        .outbox
                        .get(&entry.mutation_id)
                        .is_none_or(|e| &e.idempotency_key != if_key) => {}
                StoreOp::PutEntry(entry) | StoreOp::UpdateEntry { entry, .. } => {
                    let id = entry.mutation_id.clone();
                    if entry.state == EntryState::Failed {
                        self.outbox.remove(&id);
                        self.failed.insert(id, entry.clone());
                    } else {
                        self.failed.remove(&id);
                        self.outbox.insert(id, entry.clone());
                    }
                }
                StoreOp::DeleteEntry {
                    mutation_id,
                    failed,
                } => {
                    if *failed {
                        self.failed.remove(mutation_id);
                    } else {
                        self.outbox.remove(mutation_id);
                    }
                }
                StoreOp::PutConflict(kept) => {
                    self.conflicts
                        .insert(kept.conflict.id.clone(), kept.clone());
                }
                StoreOp::DeleteConflict(id) => {
                    self.conflicts.remove(id);
                }
                StoreOp::PutCursor(cursor) => self.cursor = Some(cursor.clone()),
                StoreOp::DeleteCursor => self.cursor = None,
                StoreOp::PutMark { mark, .. } => self.mark = Some(mark.clone()),
                StoreOp::PutUndo(e) => {
                    self.undo.insert(e.mutation_id.clone(), e.clone());
                }
                StoreOp::DeleteUndo(id) => {
                    self.undo.remove(id);
                }
            }
        }
    }
}

struct Tab {
    user: usize,
    /// When this tab's last write completes (writes complete in order).
    writes_free_at: u64,
    engine: Option<ClientEngine>,
    /// Incarnation: messages for an older one are dropped.
    epoch: u32,
    /// The one timer, at the engine's `poll_timeout()`.
    timer: Option<u64>,
    /// Callers not yet settled, and what they asked.
    callers: BTreeMap<CallerId, String>,
    cut_until: Option<u64>,
    /// `Idempotency-Key`s whose answer (not a transient failure) this tab
    /// received: a key names one request, so none may be sent again.
    answered: BTreeSet<String>,
    /// Writes IndexedDB refused for lack of space, written first next time.
    held: Vec<StoreOp>,
    /// A logout asked here, and whether it discards.
    logout: Option<bool>,
    /// The open `/api/events` stream: its number (signals of an older one
    /// are dropped) and whether the browser has it connected.
    stream: Option<(u64, bool)>,
    /// Its side of the `BroadcastChannel` election, if its user elects so.
    locks: Option<election::TabLocks>,
    /// Entries this tab had on the wire when it read the user's work
    /// without them, the server having answered their key: finished by
    /// another tab, never to be sent from here again.
    finished_elsewhere: BTreeSet<String>,
}

#[derive(Debug, Clone)]
enum Msg {
    Request {
        tab: usize,
        epoch: u32,
        attempt: u64,
        entry: Box<OutboxEntry>,
    },
    Answer {
        tab: usize,
        epoch: u32,
        attempt: u64,
        reply: Reply,
    },
    Deadline {
        tab: usize,
        epoch: u32,
        attempt: u64,
    },
    Probe {
        tab: usize,
        epoch: u32,
        attempt: u64,
    },
    Timer {
        tab: usize,
        epoch: u32,
        at: u64,
    },
    WorkNotice {
        tab: usize,
        epoch: u32,
    },
    RecordNotice {
        tab: usize,
        epoch: u32,
        id: String,
    },
    Leading {
        tab: usize,
        epoch: u32,
    },
    /// A message of the `BroadcastChannel` election from tab `from`.
    Channel {
        from: usize,
        tab: usize,
        epoch: u32,
        message: Box<crate::core::election::LockMessage>,
    },
    /// The election's timer of a tab.
    LockTick {
        tab: usize,
        epoch: u32,
        at: u64,
    },
    /// `GET /api/changes` on its way to the server.
    FeedRequest {
        tab: usize,
        epoch: u32,
        attempt: u64,
        since: String,
    },
    FeedAnswer {
        tab: usize,
        epoch: u32,
        attempt: u64,
        page: Result<FeedPage, Refusal>,
    },
    /// What `/api/events` says, to the stream numbered `stream`.
    Stream {
        tab: usize,
        epoch: u32,
        stream: u64,
        signal: StreamSignal,
    },
    /// `POST /api/logout` on its way.
    RevokeRequest {
        tab: usize,
        epoch: u32,
        attempt: u64,
    },
    RevokeAnswer {
        tab: usize,
        epoch: u32,
        attempt: u64,
    },
    /// The user's tabs hear the logout and close; IndexedDB is deleted.
    LoggedOut {
        user: usize,
        discard: bool,
    },
    /// Another tab loaded the collection again: read it from IndexedDB.
    ReloadNotice {
        tab: usize,
        epoch: u32,
    },
    /// Another tab asks the leader to say when it caught up.
    CatchUpAsked {
        tab: usize,
        epoch: u32,
    },
    /// The leader says it caught up.
    CaughtUp {
        tab: usize,
        epoch: u32,
    },
    /// The runner loads the collection again (the feed's cursor expired).
    Reload {
        tab: usize,
        epoch: u32,
    },
    /// `GET /api/customers?limit=&after=` on its way to the server.
    PageRequest {
        tab: usize,
        epoch: u32,
        attempt: u64,
        after: Option<String>,
        size: u32,
    },
    PageAnswer {
        tab: usize,
        epoch: u32,
        attempt: u64,
        page: super::LoadPage,
    },
    /// `GET /api/customers/{id}` on its way to the server, for the
    /// engine's read `read`.
    ReadRequest {
        tab: usize,
        epoch: u32,
        attempt: u64,
        read: u64,
        id: String,
    },
    ReadAnswer {
        tab: usize,
        epoch: u32,
        attempt: u64,
        read: u64,
        answer: Result<ReadAnswer, Refusal>,
    },
    /// A read of the collection's ids from IndexedDB ends.
    StoredIds {
        tab: usize,
        epoch: u32,
    },
    /// A read of the collection from IndexedDB ends; `or_none`: nothing
    /// stored is a failure (the server could not be reached).
    StoredRead {
        tab: usize,
        epoch: u32,
        or_none: bool,
    },
    Reconnect {
        tab: usize,
        epoch: u32,
    },
    /// A write's transaction completes; the effects after it follow.
    WriteDone {
        tab: usize,
        epoch: u32,
        write: Box<Effect>,
    },
}

/// What a request on the wire is.
#[derive(Debug, Clone)]
enum Wire {
    /// An outbox entry: its mutation id and `Idempotency-Key`.
    Entry(String, String),
    Probe,
    Feed,
    Revoke,
    Page,
    /// A read of the engine's, by its id.
    Read(u64),
}

/// A request on the wire: the tab, its incarnation, and what it is.
type OnTheWire = (usize, u32, Wire);

/// A record read apart from the engine's requests, as the web runner
/// reports one.
fn record_read(record: Record, origin: Origin) -> Event {
    Event::RecordRead {
        collection: COLLECTION.into(),
        change: RemoteChange::Put(record),
        origin,
    }
}

/// A request that got no answer.
fn no_answer(code: ErrorCode, message: &str) -> Refusal {
    Refusal {
        status: None,
        code,
        transient: true,
        retry_after_ms: None,
        message: message.into(),
        current: None,
        details: None,
    }
}

struct World {
    seed: u64,
    rng: IdSource,
    faults: Faults,
    now: u64,
    seq: u64,
    queue: BTreeMap<(u64, u64), Msg>,
    server: ModelServer,
    dbs: Vec<UserDb>,
    tabs: Vec<Tab>,
    leaders: Vec<Option<usize>>,
    /// The users whose tabs elect over `BroadcastChannel`.
    broadcast: Vec<bool>,
    /// Draws of the channel (which users, delays, closed or lost tabs),
    /// apart so that runs without it stay as they were.
    channel_rng: IdSource,
    /// When the last message from one tab to another arrives (the channel
    /// keeps each sender's order).
    channel_at: BTreeMap<(usize, usize), u64>,
    /// Requests on the wire, by attempt: the tab, the entry (None: a probe).
    inflight: BTreeMap<u64, OnTheWire>,
    next_attempt: u64,
    next_stream: u64,
    next_caller: CallerId,
    trace: Vec<String>,
    /// An invariant an effect broke, reported at the next check.
    broken: Option<String>,
    /// Runs are traced only when replayed after a failure: the same seed
    /// makes the same run.
    tracing: bool,
    healing: bool,
    /// Every change a person made, in the order made.
    ledger: Vec<Made>,
    /// The ledger's length and the server's feed length when the ledger
    /// was last settled (`owed.rs`).
    settled: (usize, usize),
    /// What each caller of a change must find in the record it is
    /// acknowledged with.
    expected: BTreeMap<CallerId, Expected>,
    /// Makes every saved value and comment text unique.
    next_value: u64,
    /// Messages handled in a row without the clock moving.
    same_instant: u64,
    /// Values an undo put back (record, field, value): the only values a
    /// person saves twice.
    restored: BTreeSet<(String, String, String)>,
    /// Tabs told their feed cursor expired (410), by the incarnation
    /// told, and by when they must have asked to load again.
    reload_due: BTreeMap<usize, (u32, u64)>,
}

/// A broken invariant, with the seed and the trace that led to it.
#[derive(Debug)]
pub struct SimFailure(pub String);

impl World {
    fn new(seed: u64, faults: Faults) -> Self {
        let ids: Vec<String> = (0..faults.records).map(|i| format!("c{i}")).collect();
        let server = ModelServer::with_records(&ids);
        let mut channel_rng = IdSource::new(seed ^ 0x6368_616e_6e65_6c21);
        let broadcast = (0..faults.users)
            .map(|_| channel_rng.unit() < faults.broadcast)
            .collect();
        let mut world = World {
            seed,
            rng: IdSource::new(seed),
            now: 1_000,
            seq: 0,
            queue: BTreeMap::new(),
            dbs: vec![UserDb::default(); faults.users],
            tabs: Vec::new(),
            leaders: vec![None; faults.users],
            broadcast,
            channel_rng,
            channel_at: BTreeMap::new(),
            inflight: BTreeMap::new(),
            next_attempt: 0,
            next_stream: 0,
            next_caller: 0,
            trace: Vec::new(),
            broken: None,
            tracing: false,
            healing: false,
            ledger: Vec::new(),
            settled: (0, 0),
            expected: BTreeMap::new(),
            next_value: 0,
            same_instant: 0,
            restored: BTreeSet::new(),
            reload_due: BTreeMap::new(),
            server,
            faults,
        };
        for user in 0..world.faults.users {
            for _ in 0..world.faults.tabs {
                world.tabs.push(Tab {
                    user,
                    engine: None,
                    epoch: 0,
                    timer: None,
                    callers: BTreeMap::new(),
                    cut_until: None,
                    answered: BTreeSet::new(),
                    writes_free_at: 0,
                    held: Vec::new(),
                    logout: None,
                    stream: None,
                    locks: None,
                    finished_elsewhere: BTreeSet::new(),
                });
            }
        }
        for tab in 0..world.tabs.len() {
            world.open_tab(tab);
        }
        world
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.unit() < p
    }

    fn pick(&mut self, n: usize) -> usize {
        ((self.rng.unit() * n as f64) as usize).min(n.saturating_sub(1))
    }

    fn note(&mut self, line: String) {
        if !self.tracing {
            return;
        }
        self.trace.push(format!("{:>7} {line}", self.now));
    }

    fn at(&mut self, delay: u64, msg: Msg) {
        self.seq += 1;
        self.queue.insert((self.now + delay, self.seq), msg);
    }

    fn user_name(user: usize) -> String {
        format!("user{user}")
    }

    /// A tab opens (first time, or after a crash): its engine restores the
    /// user's IndexedDB and loads the records kept there.
    fn open_tab(&mut self, tab: usize) {
        let user = self.tabs[tab].user;
        let ids = IdSource::new(
            self.seed ^ ((tab as u64 + 1) << 32) ^ u64::from(self.tabs[tab].epoch) << 48,
        );
        let engine = ClientEngine::new(
            EngineConfig {
                logout_wait_ms: REQUEST_TIMEOUT_MS,
                ..EngineConfig::default()
            },
            &Self::user_name(user),
            true,
            true,
            ids,
        );
        // The app loads the collection at open (below): the engine says
        // from where (the server's pages, or IndexedDB and the feed from
        // the kept cursor).
        let kept = self.dbs[user].cursor.clone();
        let mark = self.dbs[user].mark.clone();
        let records: Vec<(String, Record)> = self.dbs[user]
            .records
            .values()
            .map(|r| (COLLECTION.to_owned(), r.clone()))
            .collect();
        let work = self.dbs[user].work();
        let t = &mut self.tabs[tab];
        t.epoch += 1;
        t.engine = Some(engine);
        t.timer = None;
        t.callers.clear();
        t.held.clear();
        t.answered.clear();
        t.cut_until = None;
        t.stream = None;
        t.logout = None;
        t.finished_elsewhere.clear();
        self.note(format!("tab {tab} (user{user}) opens"));
        self.deliver(
            tab,
            Event::StorageOpened {
                cursor: kept,
                work,
                records,
            },
        );
        self.load(tab, mark);
        if self.on_channel(user) {
            self.join_channel(tab);
        } else {
            self.elect(user);
        }
    }

    /// The person's app loads the collection (`load()`), a few records a
    /// page.
    fn load(&mut self, tab: usize, mark: Option<super::LoadedMark>) {
        let size = 1 + self.pick(3) as u32;
        self.note(format!("tab {tab} loads the collection"));
        self.deliver(
            tab,
            Event::LoadAsked {
                collection: COLLECTION.into(),
                mark,
                size: Some(size),
            },
        );
    }

    /// Web Locks: the lowest live tab of a user leads (the users that
    /// elect over `BroadcastChannel` do so in `election.rs`).
    fn elect(&mut self, user: usize) {
        if self.on_channel(user) {
            return;
        }
        let next = (0..self.tabs.len())
            .find(|&t| self.tabs[t].user == user && self.tabs[t].engine.is_some());
        if self.leaders[user] == next {
            return;
        }
        if let Some(old) = self.leaders[user] {
            if self.tabs[old].engine.is_some() {
                self.deliver(old, Event::NotLeading);
            }
        }
        self.leaders[user] = next;
        if let Some(tab) = next {
            let epoch = self.tabs[tab].epoch;
            self.at(HANDOVER_MS, Msg::Leading { tab, epoch });
        }
    }

    fn crash(&mut self, tab: usize) {
        let user = self.tabs[tab].user;
        self.note(format!("tab {tab} crashes"));
        if self.on_channel(user) {
            let closed = self.closes();
            self.leave_channel(tab, closed);
        }
        let t = &mut self.tabs[tab];
        t.engine = None;
        t.callers.clear();
        t.epoch += 1;
        self.tab_went(user);
        self.elect(user);
    }

    /// `tab` reads the user's work: entries it has on the wire that
    /// IndexedDB no longer holds, pending or failed (nor a write held
    /// here), with their key answered by the server, were finished by
    /// another tab.
    fn reads_work(&mut self, tab: usize) {
        let db = &self.dbs[self.tabs[tab].user];
        let held: BTreeSet<&str> = self.tabs[tab]
            .held
            .iter()
            .filter_map(|op| match op {
                StoreOp::PutEntry(e) | StoreOp::UpdateEntry { entry: e, .. } => {
                    Some(e.mutation_id.as_str())
                }
                _ => None,
            })
            .collect();
        let done: Vec<String> = self
            .inflight
            .values()
            .filter(|(t, _, _)| *t == tab)
            .filter_map(|(_, _, wire)| match wire {
                Wire::Entry(id, key)
                    if !db.outbox.contains_key(id)
                        && !db.failed.contains_key(id)
                        && !held.contains(id.as_str())
                        && self.server.knows(key) =>
                {
                    Some(id.clone())
                }
                _ => None,
            })
            .collect();
        self.tabs[tab].finished_elsewhere.extend(done);
    }

    /// Hands one event to a tab's engine and carries out the effects.
    fn deliver(&mut self, tab: usize, event: Event) {
        let now = self.now;
        let Some(engine) = self.tabs[tab].engine.as_mut() else {
            return;
        };
        let label = self
            .tracing
            .then(|| format!("tab {tab} <- {}", short(&event)));
        engine.handle(event, now);
        if let Some(label) = label {
            self.note(label);
        }
        self.run_effects(tab);
    }

    /// A request's answer or deadline came: what it was, if it was still
    /// on the wire (the first of the two wins) and its tab still lives.
    fn ended(&mut self, attempt: u64, tab: usize, epoch: u32) -> Option<Wire> {
        let (_, _, wire) = self.inflight.remove(&attempt)?;
        let live = self.tabs[tab].engine.is_some() && self.tabs[tab].epoch == epoch;
        live.then_some(wire)
    }

    fn new_caller(&mut self, tab: usize, what: String) -> CallerId {
        self.next_caller += 1;
        self.tabs[tab].callers.insert(self.next_caller, what);
        self.next_caller
    }

    fn step_queue(&mut self) -> bool {
        let Some((&(at, seq), _)) = self.queue.iter().next() else {
            return false;
        };
        let msg = self.queue.remove(&(at, seq)).expect("present");
        // A machine that asks to be woken at once for ever stops time.
        self.same_instant = if at > self.now {
            0
        } else {
            self.same_instant + 1
        };
        if self.same_instant > 100_000 && self.broken.is_none() {
            self.broken = Some(format!("time stands still at {}: {msg:?}", self.now));
        }
        self.now = self.now.max(at);
        self.on_msg(msg);
        true
    }

    fn fail(&self, what: &str) -> SimFailure {
        SimFailure(format!(
            "seed {} broke an invariant: {what}\nreplay: CRM_SIM_SEED={} cargo test --lib engine::sim\nlast events:\n{}",
            self.seed,
            self.seed,
            self.trace_tail()
        ))
    }

    /// The last events, or with `CRM_SIM_GREP` those that mention it.
    fn trace_tail(&self) -> String {
        let lines: Vec<&String> = match std::env::var("CRM_SIM_GREP") {
            Ok(needle) => self.trace.iter().filter(|l| l.contains(&needle)).collect(),
            Err(_) => self.trace.iter().rev().take(60).rev().collect(),
        };
        lines
            .iter()
            .map(|l| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Runs one seed: random work with faults, then healing to quiescence. A
/// failing seed is shrunk (see [`shrink`]) and run again with its trace
/// kept, for the report.
pub fn run(seed: u64, faults: Faults) -> Result<(), SimFailure> {
    if run_once(seed, faults.clone(), false).is_ok() {
        return Ok(());
    }
    let (small, said) = shrink(seed, faults);
    match run_once(seed, small, true) {
        Err(SimFailure(why)) => Err(SimFailure(format!("{why}\nshrunk: {said}"))),
        Ok(()) => Err(SimFailure(format!("seed {seed} failed once and not again"))),
    }
}

/// The smallest run of this seed that still fails: the fewest actions
/// (the same seed makes the same first actions, so this is a prefix of
/// the run), then each kind of fault turned off where it still fails
/// without it.
fn shrink(seed: u64, faults: Faults) -> (Faults, String) {
    let fails = |f: &Faults| run_once(seed, f.clone(), false).is_err();
    let mut best = faults;
    let (mut low, mut high) = (0, best.steps);
    while low < high {
        let mid = (low + high) / 2;
        let tried = Faults {
            steps: mid,
            ..best.clone()
        };
        if fails(&tried) {
            high = mid;
        } else {
            low = mid + 1;
        }
    }
    best.steps = high;
    let mut off = Vec::new();
    type TurnOff = fn(&mut Faults);
    let kinds: [(&str, TurnOff); 8] = [
        ("loss", |f| f.loss = 0.0),
        ("duplicates", |f| f.duplicate = 0.0),
        ("crashes", |f| f.crash = 0.0),
        ("cuts", |f| f.cut = 0.0),
        ("IndexedDB refusals", |f| f.idb_refusal = 0.0),
        ("server restarts", |f| f.server_restart = 0.0),
        ("refusals", |f| f.refusal = 0.0),
        ("BroadcastChannel", |f| f.broadcast = 0.0),
    ];
    for (name, turn_off) in kinds {
        let mut tried = best.clone();
        turn_off(&mut tried);
        if fails(&tried) {
            best = tried;
            off.push(name);
        }
    }
    let said = format!(
        "{} actions of {}; not needed: {}",
        best.steps,
        Faults::default().steps,
        if off.is_empty() {
            "none".to_owned()
        } else {
            off.join(", ")
        }
    );
    (best, said)
}

fn run_once(seed: u64, faults: Faults, tracing: bool) -> Result<(), SimFailure> {
    let mut world = World::new(seed, faults);
    world.tracing = tracing;
    for _ in 0..world.faults.steps {
        // Between actions, the world moves on a little.
        let until = world.now + 1 + world.pick(400) as u64;
        while world
            .queue
            .keys()
            .next()
            .is_some_and(|(at, _)| *at <= until)
        {
            world.step_queue();
            world.check_step()?;
        }
        world.now = until;
        world.act();
        world.check_step()?;
    }
    // Healing: no more faults; crashed tabs stay closed (their work is the
    // leader's to send); every connection comes back.
    world.healing = true;
    for tab in 0..world.tabs.len() {
        if world.tabs[tab].engine.is_some() && world.tabs[tab].cut_until.is_some() {
            world.tabs[tab].cut_until = None;
            world.deliver(tab, Event::Network(true));
        }
    }
    for user in 0..world.faults.users {
        let open = (0..world.tabs.len())
            .any(|t| world.tabs[t].user == user && world.tabs[t].engine.is_some());
        if !open {
            if let Some(tab) = (0..world.tabs.len()).find(|&t| world.tabs[t].user == user) {
                world.open_tab(tab);
            }
        }
    }
    let deadline = world.now + 600_000;
    for round in 0.. {
        while !world.quiet() {
            if world.now > deadline || !world.step_queue() {
                let why = world.why_not_quiet().unwrap_or_default();
                return Err(world.fail(&format!("the world never became quiet: {why}")));
            }
            world.check_step()?;
        }
        // A person whose tab shows what it could not check with the
        // server (its load found the server out of reach, and IndexedDB
        // answered) opens the list again, as a person would.
        let unfollowed: Vec<usize> = (0..world.tabs.len())
            .filter(|&t| {
                world.tabs[t]
                    .engine
                    .as_ref()
                    .is_some_and(|e| e.feed_cursor().is_none() && !e.is_loading(COLLECTION))
            })
            .collect();
        if unfollowed.is_empty() || round == 3 {
            break;
        }
        for tab in unfollowed {
            let mark = world.dbs[world.tabs[tab].user].mark.clone();
            world.load(tab, mark);
        }
    }
    world.check_quiescence()
}

/// Seeds found failing by runs of 25,000 seeds, each kept for its cause:
/// 11383 and 13967, a logout that ends after the healing began (the user's
/// next login, which sends the work kept for it, never came); 7561, 21469,
/// 15201 and 20199, a tab that opened without a kept cursor, loaded the
/// collection and led on from the load's cursor without telling the other
/// tabs, which never heard of the changes before it.
const FOUND: [u64; 6] = [11_383, 13_967, 7_561, 21_469, 15_201, 20_199];

/// Seeds found failing under the fault mix each draws (fresh seeds, and
/// seeds of the long run, `scripts/sim-long.sh`), replayed with that mix:
/// 28198894 and 711965815, a retry of a refused entry under the key of a
/// duplicate the server took after refusing the first copy (the model's
/// check of answered keys, not the engine, was wrong); 459126681, two
/// tabs sent one entry under one key, one met a refusal for good and kept
/// it as a dead letter, the other a 409 whose merge the server then took,
/// and its commit cleared the outbox but not the dead letter; 2794, a tab
/// crashed between its claim of a conflict and the write of the
/// resolution's entry, and the ledger took another tab's copy of the
/// conflict, not yet re-read, for the resolution (the ledger was wrong;
/// the resolution went with its tab); 38768, a resolution (made on the
/// version the conflict showed) folded into an entry of the record on a
/// newer version, which already held the value the resolution put back:
/// the merge of the 409 took it for no change, a lost update; 95290, a
/// person's retry in a tab that could not send it (its connection cut):
/// the leader sent it after the adoption wait and the server refused it
/// again, and the retry's promise never settled, since a tab settled no
/// caller of an entry another tab refused (now the refusal that tab
/// stored rejects it); 44838 and 45338 (the long run of 7 December, at
/// the commit before that fix), a save's promise that never settled: in
/// 44838 its entry was refused for good in another tab while the caller
/// waited, the cause of 95290; 45338 passes since, its cause not traced;
/// 57140, 58851, 75278, 78650, 85396 and 88925 (the long run of 8
/// December, seeds 46,001 to 100,000, at simlong's d5f940f, before the
/// election on the channel and the re-send keys changed every seed's
/// run): a person discarded the saves of a record still waiting while an
/// entry of the same field was on its way, and the discarded value stayed
/// on screen instead of the entry's (seed 75278: c3.name n15 sent, n18
/// waiting and discarded, n15 refused `409 overlap`, n18 shown beside a
/// `failed()` that held n15); `discard_staged` now shows the entry's value
/// again.
const FOUND_DRAWN: [u64; 14] = [
    28_198_894,
    711_965_815,
    459_126_681,
    2_794,
    38_768,
    95_290,
    44_838,
    45_338,
    57_140,
    58_851,
    75_278,
    78_650,
    85_396,
    88_925,
];

/// Seeds found failing under the fault mix each draws, the election on
/// the channel included, replayed with that mix: 18881 (the long run of
/// seeds 1 to 100,000 at e21f333), a conflict kept in a write IndexedDB
/// refused for lack of space, resolved (the claim took another tab's
/// copy of it out of IndexedDB) before the held write landed and put it
/// back: the resolution met a 409 too, and one change was two conflicts;
/// 55513 (the same run), a lost update: a conflict's resolution (`phone`
/// Null, made on the server's newer value) folded into a queued entry of
/// the record whose change of `phone` was made on Null; the fold kept
/// that older base, the entry's 409 merge took `phone` as unchanged by
/// the person and settled for the server's value. A patch made on another
/// value of a field than the entry's is an entry of its own now; 78027
/// (the same run, one change two conflicts), which passes since that
/// change, its cause not traced.
const FOUND_WITH_ELECTION: [u64; 3] = [18_881, 55_513, 78_027];

/// Seeds the long run found failing whose defect is found and not yet
/// fixed, replayed with their drawn mix by an ignored test: 80343 (the
/// long run at e21f333), 18881's defect across tabs. Tab 8's write of a
/// conflict was held for lack of space; another tab sent the same entry
/// again and kept the same conflict, a third tab resolved it, and tab 8's
/// held write landed long after and put it back (one change, two
/// conflicts). `resolve` deletes it again only after its own tab's held
/// put; a put of a conflict from another tab's held write needs to be
/// conditional (only while its entry is still stored), as `UpdateEntry`
/// is.
const STILL_FAILING: [u64; 1] = [80_343];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_users_and_tabs_end_equal_to_the_server() {
        crate::core::seeds::run_all(800, 200, |seed| {
            run(seed, Faults::drawn(seed)).map_err(|SimFailure(why)| why)
        });
    }

    /// Every user's tabs elect their leader over `BroadcastChannel` (no
    /// Web Locks), whatever the seed draws, under the fault mix it draws.
    #[test]
    fn tabs_without_web_locks_elect_over_the_channel() {
        crate::core::seeds::run_all(100, 20, |seed| {
            let faults = Faults {
                broadcast: 1.0,
                ..Faults::drawn(seed)
            };
            run(seed, faults).map_err(|SimFailure(why)| why)
        });
    }

    /// Seeds that longer runs found failing, replayed on every run with the
    /// fault mix they failed under.
    #[test]
    fn seeds_found_failing_by_longer_runs() {
        crate::core::seeds::run_fixed(&FOUND, |seed| {
            run(seed, Faults::default()).map_err(|SimFailure(why)| why)
        });
        // Found before the election over BroadcastChannel was simulated:
        // replayed as they failed, on Web Locks.
        crate::core::seeds::run_fixed(&FOUND_DRAWN, |seed| {
            let faults = Faults {
                broadcast: 0.0,
                ..Faults::drawn(seed)
            };
            run(seed, faults).map_err(|SimFailure(why)| why)
        });
        crate::core::seeds::run_fixed(&FOUND_WITH_ELECTION, |seed| {
            run(seed, Faults::drawn(seed)).map_err(|SimFailure(why)| why)
        });
    }

    /// Seeds whose defect is known and not yet fixed (see
    /// [`STILL_FAILING`]): `cargo test --lib -- --ignored
    /// seeds_the_long_run_found_still_failing`.
    #[test]
    #[ignore = "a defect the long run found, not yet fixed"]
    fn seeds_the_long_run_found_still_failing() {
        crate::core::seeds::run_fixed(&STILL_FAILING, |seed| {
            run(seed, Faults::drawn(seed)).map_err(|SimFailure(why)| why)
        });
    }
}
