//! A seeded, deterministic simulation of the client engine: several users
//! with several tabs each, against [`server::ModelServer`], over a network
//! that loses, delays, duplicates and reorders requests and answers, with
//! tabs that crash (memory gone, IndexedDB kept), connections cut for a
//! while, IndexedDB refusing writes, and a restarting server.
//!
//! The runner here plays the part of `web::client`: it carries out the
//! engine's effects on model stores and a model network, and reports the
//! results as events. Invariants are checked after every event and at
//! quiescence. `CRM_SIM_SEEDS=n` runs `n` seeds; `CRM_SIM_SEED=s` replays one.

mod server;

use super::{
    CallerId, ClientEngine, Effect, EngineConfig, Event, FeedPage, IdSource, KeptConflict, Outcome,
    ProbeReply, Refusal, Reply, StoreOp, StoredWork, StreamSignal, Timer,
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
        }
    }
}

/// What the model IndexedDB of one user holds.
#[derive(Debug, Default, Clone)]
struct UserDb {
    outbox: BTreeMap<String, OutboxEntry>,
    failed: BTreeMap<String, OutboxEntry>,
    conflicts: BTreeMap<String, KeptConflict>,
    records: BTreeMap<String, Record>,
    /// The changes feed's cursor (`meta` store).
    cursor: Option<String>,
    /// The next write is refused (quota).
    refuse_next: bool,
}

impl UserDb {
    fn work(&self) -> StoredWork {
        StoredWork {
            outbox: self.outbox.values().cloned().collect(),
            failed: self.failed.values().cloned().collect(),
            conflicts: self.conflicts.values().cloned().collect(),
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
                StoreOp::UpdateEntry(entry) if !self.outbox.contains_key(&entry.mutation_id) => {}
                StoreOp::PutEntry(entry) | StoreOp::UpdateEntry(entry) => {
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
    timers: BTreeMap<Timer, u64>,
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
        timer: Timer,
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
    /// A load of the collection (after the feed's cursor expired) ends.
    Reload {
        tab: usize,
        epoch: u32,
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
        after: Vec<Effect>,
    },
    /// The runner tries writes IndexedDB refused again.
    HeldRetry {
        tab: usize,
        epoch: u32,
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
}

/// A request on the wire: the tab, its incarnation, and what it is.
type OnTheWire = (usize, u32, Wire);

/// A request that got no answer.
fn no_answer(code: ErrorCode, message: &str) -> Refusal {
    Refusal {
        status: None,
        code,
        transient: true,
        retry_after_ms: None,
        message: message.into(),
        current: None,
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
}

/// A broken invariant, with the seed and the trace that led to it.
#[derive(Debug)]
pub struct SimFailure(pub String);

impl World {
    fn new(seed: u64, faults: Faults) -> Self {
        let ids: Vec<String> = (0..faults.records).map(|i| format!("c{i}")).collect();
        let server = ModelServer::with_records(&ids);
        let mut world = World {
            seed,
            rng: IdSource::new(seed),
            now: 1_000,
            seq: 0,
            queue: BTreeMap::new(),
            dbs: vec![UserDb::default(); faults.users],
            tabs: Vec::new(),
            leaders: vec![None; faults.users],
            inflight: BTreeMap::new(),
            next_attempt: 0,
            next_stream: 0,
            next_caller: 0,
            trace: Vec::new(),
            broken: None,
            tracing: false,
            healing: false,
            server,
            faults,
        };
        for user in 0..world.faults.users {
            for _ in 0..world.faults.tabs {
                world.tabs.push(Tab {
                    user,
                    engine: None,
                    epoch: 0,
                    timers: BTreeMap::new(),
                    callers: BTreeMap::new(),
                    cut_until: None,
                    answered: BTreeSet::new(),
                    writes_free_at: 0,
                    held: Vec::new(),
                    logout: None,
                    stream: None,
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
        let mut engine = ClientEngine::new(
            EngineConfig {
                logout_wait_ms: REQUEST_TIMEOUT_MS,
                ..EngineConfig::default()
            },
            &Self::user_name(user),
            true,
            true,
            ids,
        );
        // The app loads the collection at open: from the server when
        // IndexedDB keeps no cursor (first open, or after a 410), else
        // from IndexedDB, the feed catching up from the kept cursor.
        let kept = self.dbs[user].cursor.clone();
        let loaded_cursor = if kept.is_none() {
            let records: Vec<Record> = self.server.records.values().cloned().collect();
            let ops: Vec<StoreOp> = records
                .iter()
                .map(|r| StoreOp::PutRecord {
                    collection: COLLECTION.into(),
                    record: r.clone(),
                })
                .collect();
            self.dbs[user].apply(&ops);
            Some(self.server.feed.len().to_string())
        } else {
            None
        };
        let records: Vec<Record> = self.dbs[user].records.values().cloned().collect();
        engine.records_mut().load(COLLECTION, records);
        engine.restore(self.dbs[user].work());
        let t = &mut self.tabs[tab];
        t.epoch += 1;
        t.engine = Some(engine);
        t.timers.clear();
        t.callers.clear();
        t.held.clear();
        t.answered.clear();
        t.cut_until = None;
        t.stream = None;
        t.logout = None;
        self.note(format!("tab {tab} (user{user}) opens"));
        self.deliver(tab, Event::StorageOpened { cursor: kept });
        self.deliver(
            tab,
            Event::Loaded {
                collection: COLLECTION.into(),
                cursor: loaded_cursor,
            },
        );
        self.elect(user);
    }

    /// Web Locks: the lowest live tab of a user leads.
    fn elect(&mut self, user: usize) {
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
        let t = &mut self.tabs[tab];
        t.engine = None;
        t.callers.clear();
        t.epoch += 1;
        self.elect(user);
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
        let effects = engine.handle(event, now);
        if let Some(label) = label {
            self.note(label);
        }
        self.run_effects(tab, effects);
    }

    /// Carries out effects as the web runner does: timers at once, the
    /// rest in order, and what follows a write only once its transaction
    /// completed (a few ms later, a tab's writes in the order they began).
    fn run_effects(&mut self, tab: usize, effects: Vec<Effect>) {
        let (timers, rest): (Vec<Effect>, Vec<Effect>) = effects
            .into_iter()
            .partition(|e| matches!(e, Effect::Timer { .. }));
        for timer in timers {
            self.carry_out(tab, timer);
        }
        let mut rest = rest.into_iter();
        while let Some(effect) = rest.next() {
            if matches!(effect, Effect::Write { .. }) {
                let after: Vec<Effect> = rest.collect();
                let done =
                    (self.now + 1 + self.pick(5) as u64).max(self.tabs[tab].writes_free_at + 1);
                self.tabs[tab].writes_free_at = done;
                let epoch = self.tabs[tab].epoch;
                let delay = done - self.now;
                self.at(
                    delay,
                    Msg::WriteDone {
                        tab,
                        epoch,
                        write: Box::new(effect),
                        after,
                    },
                );
                return;
            }
            self.carry_out(tab, effect);
        }
    }

    fn carry_out(&mut self, tab: usize, effect: Effect) {
        let user = self.tabs[tab].user;
        let epoch = self.tabs[tab].epoch;
        match effect {
            Effect::Write { id, ops, .. } => {
                if self.tracing {
                    let names: Vec<String> = ops.iter().map(op_name).collect();
                    self.note(format!("tab {tab} writes {names:?}"));
                }
                let mut all = std::mem::take(&mut self.tabs[tab].held);
                let was_held = !all.is_empty();
                all.extend(ops);
                let mut written = true;
                if self.dbs[user].refuse_next {
                    written = false;
                    self.dbs[user].refuse_next = false;
                    self.note(format!("tab {tab} IndexedDB refuses a write (quota)"));
                    self.tabs[tab].held = all;
                    self.at(1_000, Msg::HeldRetry { tab, epoch });
                } else {
                    let work = all.iter().any(|op| {
                        !matches!(op, StoreOp::PutRecord { .. } | StoreOp::DeleteRecord(_))
                    });
                    self.dbs[user].apply(&all);
                    if work {
                        self.tell_tabs(tab, |tab, epoch| Msg::WorkNotice { tab, epoch });
                    }
                    if was_held {
                        self.deliver(tab, Event::HeldWritten);
                    }
                }
                self.deliver(tab, Event::Written { id, written });
            }
            Effect::Send { entry, .. } => {
                // A tab re-sending its own entry under a key it saw answered
                // would only get the old answer again (another tab's stale
                // copy may bring a key back; its replay is harmless).
                let own = self.tabs[tab]
                    .engine
                    .as_ref()
                    .is_some_and(|e| e.is_own(&entry.mutation_id));
                if own && self.tabs[tab].answered.contains(&entry.idempotency_key) {
                    self.broken = Some(format!(
                        "tab {tab} sent {} again under an Idempotency-Key already answered",
                        entry.mutation_id
                    ));
                }
                if self.tracing {
                    let (m, k) = (&entry.mutation_id[..8], &entry.idempotency_key[..8]);
                    self.note(format!("tab {tab} sends {m} key {k}"));
                }
                let attempt = self.next_attempt;
                self.next_attempt += 1;
                let wire = Wire::Entry(entry.mutation_id.clone(), entry.idempotency_key.clone());
                if self.tabs[tab].cut_until.is_some() {
                    let reply = Reply::Refused(no_answer(ErrorCode::Network, "network error: cut"));
                    self.inflight.insert(attempt, (tab, epoch, wire));
                    self.at(
                        1,
                        Msg::Answer {
                            tab,
                            epoch,
                            attempt,
                            reply,
                        },
                    );
                    return;
                }
                self.inflight.insert(attempt, (tab, epoch, wire));
                self.at(
                    REQUEST_TIMEOUT_MS,
                    Msg::Deadline {
                        tab,
                        epoch,
                        attempt,
                    },
                );
                self.send_over_network(Msg::Request {
                    tab,
                    epoch,
                    attempt,
                    entry: Box::new(entry),
                });
            }
            Effect::Settle { callers, result } => {
                for caller in callers {
                    let Some(what) = self.tabs[tab].callers.remove(&caller) else {
                        panic!(
                            "seed {}: caller {caller} of tab {tab} settled twice or never made",
                            self.seed
                        );
                    };
                    if let Ok(Outcome::Committed(record) | Outcome::Merged(record, _)) = &result {
                        self.check_acknowledged(record, &what);
                    }
                    self.note(format!(
                        "tab {tab} settles {what}: {}",
                        outcome_name(&result)
                    ));
                }
            }
            Effect::Timer { timer, at } => match at {
                Some(at) => {
                    self.tabs[tab].timers.insert(timer, at);
                    // Browsers may fire a timer a millisecond before the
                    // clock says its time has come.
                    let early = u64::from(self.chance(0.2));
                    let delay = at.saturating_sub(self.now).saturating_sub(early);
                    self.at(
                        delay,
                        Msg::Timer {
                            tab,
                            epoch,
                            timer,
                            at,
                        },
                    );
                }
                None => {
                    self.tabs[tab].timers.remove(&timer);
                }
            },
            Effect::Probe => {
                let attempt = self.next_attempt;
                self.next_attempt += 1;
                self.inflight.insert(attempt, (tab, epoch, Wire::Probe));
                if self.tabs[tab].cut_until.is_some() {
                    self.at(
                        1,
                        Msg::Deadline {
                            tab,
                            epoch,
                            attempt,
                        },
                    );
                } else {
                    self.at(
                        REQUEST_TIMEOUT_MS,
                        Msg::Deadline {
                            tab,
                            epoch,
                            attempt,
                        },
                    );
                    self.send_over_network(Msg::Probe {
                        tab,
                        epoch,
                        attempt,
                    });
                }
            }
            Effect::Fetch { key, mutation_id } => {
                let record = self.server.records.get(&key.id).cloned();
                self.deliver(
                    tab,
                    Event::Fetched {
                        mutation_id,
                        record,
                    },
                );
            }
            Effect::TellCommitted { key, .. } => {
                let id = key.id.clone();
                self.tell_tabs(tab, move |tab, epoch| Msg::RecordNotice {
                    tab,
                    epoch,
                    id: id.clone(),
                });
            }
            Effect::ReadFeed { since } => {
                let attempt = self.next_attempt;
                self.next_attempt += 1;
                self.inflight.insert(attempt, (tab, epoch, Wire::Feed));
                if self.tabs[tab].cut_until.is_some() {
                    let page = Err(no_answer(ErrorCode::Network, "network error: cut"));
                    self.at(
                        1,
                        Msg::FeedAnswer {
                            tab,
                            epoch,
                            attempt,
                            page,
                        },
                    );
                } else {
                    self.at(
                        REQUEST_TIMEOUT_MS,
                        Msg::Deadline {
                            tab,
                            epoch,
                            attempt,
                        },
                    );
                    self.send_over_network(Msg::FeedRequest {
                        tab,
                        epoch,
                        attempt,
                        since,
                    });
                }
            }
            Effect::OpenStream { .. } => {
                self.next_stream += 1;
                let stream = self.next_stream;
                self.tabs[tab].stream = Some((stream, false));
                // A stream that cannot get through, or a proxy that cuts
                // it before anything came, fails; else the browser opens
                // it and the server says `ready`.
                let fails = self.tabs[tab].cut_until.is_some() || self.chance(0.1);
                let signals: &[StreamSignal] = if fails {
                    &[StreamSignal::Error]
                } else {
                    &[StreamSignal::Opened, StreamSignal::Ready]
                };
                for (i, &signal) in signals.iter().enumerate() {
                    let delay = 5 + 10 * i as u64 + self.pick(100) as u64;
                    self.at(
                        delay,
                        Msg::Stream {
                            tab,
                            epoch,
                            stream,
                            signal,
                        },
                    );
                }
            }
            Effect::CloseStream => self.tabs[tab].stream = None,
            Effect::Revoke => {
                let attempt = self.next_attempt;
                self.next_attempt += 1;
                self.inflight.insert(attempt, (tab, epoch, Wire::Revoke));
                if self.tabs[tab].cut_until.is_some() {
                    self.at(
                        1,
                        Msg::Deadline {
                            tab,
                            epoch,
                            attempt,
                        },
                    );
                } else {
                    self.at(
                        REQUEST_TIMEOUT_MS,
                        Msg::Deadline {
                            tab,
                            epoch,
                            attempt,
                        },
                    );
                    self.send_over_network(Msg::RevokeRequest {
                        tab,
                        epoch,
                        attempt,
                    });
                }
            }
            Effect::LoggedOut => {
                // Logout keeps work: unless discarded, nothing of the
                // user's is left off the server when the token goes.
                // Logout keeps work: unless discarded, nothing this tab
                // made is left off the server when the token goes (what
                // other tabs queue meanwhile stays in IndexedDB, below).
                let discard = self.tabs[tab].logout.take().unwrap_or(true);
                let own_left = self.tabs[tab].engine.as_ref().map_or(0, |e| {
                    e.outbox()
                        .entries()
                        .filter(|x| e.is_own(&x.mutation_id))
                        .count()
                        + e.debounced().count()
                });
                if !discard && own_left > 0 {
                    self.broken = Some(format!(
                        "tab {tab} logged user{user} out with {own_left} of its changes off the server"
                    ));
                }
                self.note(format!(
                    "tab {tab} logged user{user} out (discard {discard})"
                ));
                self.at(1, Msg::LoggedOut { user, discard });
            }
            Effect::TellReloaded { .. } => {
                self.tell_tabs(tab, |tab, epoch| Msg::ReloadNotice { tab, epoch });
            }
            Effect::Reload { .. } => {
                let delay = 5 + self.pick(300) as u64;
                self.at(delay, Msg::Reload { tab, epoch });
            }
            Effect::RecordChanged { .. }
            | Effect::Changed
            | Effect::ConflictFound(_)
            | Effect::SessionEnded
            | Effect::Drained(_)
            | Effect::Pulled(_) => {}
        }
    }

    /// A BroadcastChannel message to the user's other live tabs: delayed
    /// and reordered, never lost (the browser delivers within a profile).
    fn tell_tabs(&mut self, from: usize, make: impl Fn(usize, u32) -> Msg) {
        let user = self.tabs[from].user;
        for tab in 0..self.tabs.len() {
            if tab != from && self.tabs[tab].user == user && self.tabs[tab].engine.is_some() {
                let delay = 1 + self.pick(20) as u64;
                let msg = make(tab, self.tabs[tab].epoch);
                self.at(delay, msg);
            }
        }
    }

    fn send_over_network(&mut self, msg: Msg) {
        if !self.healing && self.chance(self.faults.loss) {
            self.note("network loses a request".into());
            return;
        }
        let delay = 5 + self.pick(300) as u64;
        if !self.healing && self.chance(self.faults.duplicate) {
            let again = 5 + self.pick(600) as u64;
            self.at(again, msg.clone());
        }
        self.at(delay, msg);
    }

    fn check_acknowledged(&self, record: &Record, what: &str) {
        if record.version == 0 {
            return;
        }
        let kept = self
            .server
            .history
            .get(&(record.id.clone(), record.version));
        assert!(
            kept == Some(&record.fields),
            "seed {}: {what} acknowledged {}@v{} with fields the server never had at that version",
            self.seed,
            record.id,
            record.version
        );
    }

    fn on_msg(&mut self, msg: Msg) {
        let live = |w: &World, tab: usize, epoch: u32| {
            w.tabs[tab].engine.is_some() && w.tabs[tab].epoch == epoch
        };
        match msg {
            Msg::Request {
                tab,
                epoch,
                attempt,
                entry,
            } => {
                let user = Self::user_name(self.tabs[tab].user);
                let changes = self.server.feed.len();
                let reply = self.server.handle(&user, &entry);
                if self.server.feed.len() > changes {
                    self.ring_streams();
                }
                self.note(format!(
                    "server handles {} of tab {tab}: {}",
                    entry.mutation_id.get(..8).unwrap_or(""),
                    reply_name(&reply)
                ));
                self.send_over_network(Msg::Answer {
                    tab,
                    epoch,
                    attempt,
                    reply,
                });
            }
            Msg::Probe {
                tab,
                epoch,
                attempt,
            } => {
                let user = Self::user_name(self.tabs[tab].user);
                let reply = Reply::Refused(Refusal {
                    status: Some(200),
                    code: ErrorCode::Server,
                    transient: false,
                    retry_after_ms: None,
                    message: user,
                    current: None,
                });
                self.send_over_network(Msg::Answer {
                    tab,
                    epoch,
                    attempt,
                    reply,
                });
            }
            Msg::Answer {
                tab,
                epoch,
                attempt,
                reply,
            } => {
                let Some((_, _, mutation)) = self.inflight.remove(&attempt) else {
                    return;
                };
                if !live(self, tab, epoch) {
                    return;
                }
                match mutation {
                    Wire::Entry(mutation_id, key) => {
                        let transient = matches!(&reply, Reply::Refused(r) if r.transient);
                        if !transient {
                            self.tabs[tab].answered.insert(key);
                        }
                        self.deliver(tab, Event::Answered { mutation_id, reply });
                    }
                    Wire::Probe => {
                        let user = Self::user_name(self.tabs[tab].user);
                        self.deliver(tab, Event::Probed(ProbeReply::User(user)));
                    }
                    Wire::Feed | Wire::Revoke => {}
                }
            }
            Msg::Deadline {
                tab,
                epoch,
                attempt,
            } => {
                let Some((_, _, mutation)) = self.inflight.remove(&attempt) else {
                    return;
                };
                if !live(self, tab, epoch) {
                    return;
                }
                match mutation {
                    Wire::Entry(mutation_id, _) => {
                        let reply = Reply::Refused(no_answer(ErrorCode::Timeout, "timeout"));
                        self.deliver(tab, Event::Answered { mutation_id, reply });
                    }
                    Wire::Probe => self.deliver(tab, Event::Probed(ProbeReply::Unreachable)),
                    Wire::Feed => self.deliver(
                        tab,
                        Event::FeedRead(Err(no_answer(ErrorCode::Timeout, "timeout"))),
                    ),
                    Wire::Revoke => self.deliver(
                        tab,
                        Event::Revoked(Err(no_answer(ErrorCode::Timeout, "timeout"))),
                    ),
                }
            }
            Msg::Timer {
                tab,
                epoch,
                timer,
                at,
            } => {
                if live(self, tab, epoch) && self.tabs[tab].timers.get(&timer) == Some(&at) {
                    self.tabs[tab].timers.remove(&timer);
                    let event = match timer {
                        Timer::Debounce => Event::DebounceDue,
                        Timer::Retry => Event::RetryDue,
                        Timer::Probe => Event::ProbeDue,
                        Timer::FeedPoll => Event::FeedPollDue,
                        Timer::Logout => Event::LogoutDue,
                    };
                    self.deliver(tab, event);
                }
            }
            Msg::WorkNotice { tab, epoch } => {
                if live(self, tab, epoch) {
                    let work = self.dbs[self.tabs[tab].user].work();
                    self.deliver(tab, Event::WorkStored(work));
                }
            }
            Msg::RecordNotice { tab, epoch, id } => {
                if live(self, tab, epoch) {
                    if let Some(record) = self.dbs[self.tabs[tab].user].records.get(&id).cloned() {
                        if let Some(engine) = self.tabs[tab].engine.as_mut() {
                            engine
                                .records_mut()
                                .apply_remote(COLLECTION, RemoteChange::Put(record));
                        }
                    }
                }
            }
            Msg::Leading { tab, epoch } => {
                if live(self, tab, epoch) && self.leaders[self.tabs[tab].user] == Some(tab) {
                    let work = self.dbs[self.tabs[tab].user].work();
                    self.deliver(tab, Event::Leading(work));
                }
            }
            Msg::FeedRequest {
                tab,
                epoch,
                attempt,
                since,
            } => {
                let page = self.server.changes(&since, COLLECTION);
                self.send_over_network(Msg::FeedAnswer {
                    tab,
                    epoch,
                    attempt,
                    page,
                });
            }
            Msg::FeedAnswer {
                tab,
                epoch,
                attempt,
                page,
            } => {
                if self.inflight.remove(&attempt).is_some() && live(self, tab, epoch) {
                    self.deliver(tab, Event::FeedRead(page));
                }
            }
            Msg::Stream {
                tab,
                epoch,
                stream,
                signal,
            } => {
                let current = self.tabs[tab].stream.map(|(n, _)| n);
                if live(self, tab, epoch) && current == Some(stream) {
                    // Nothing gets through a cut connection.
                    let signal = if self.tabs[tab].cut_until.is_some() {
                        StreamSignal::Error
                    } else {
                        signal
                    };
                    let connected = match signal {
                        StreamSignal::Ready | StreamSignal::Change => true,
                        StreamSignal::Opened | StreamSignal::Error => false,
                    };
                    self.tabs[tab].stream = Some((stream, connected));
                    self.deliver(tab, Event::Stream(signal));
                }
            }
            Msg::RevokeRequest {
                tab,
                epoch,
                attempt,
            } => {
                self.send_over_network(Msg::RevokeAnswer {
                    tab,
                    epoch,
                    attempt,
                });
            }
            Msg::RevokeAnswer {
                tab,
                epoch,
                attempt,
            } => {
                if self.inflight.remove(&attempt).is_some() && live(self, tab, epoch) {
                    self.deliver(tab, Event::Revoked(Ok(())));
                }
            }
            Msg::LoggedOut { user, discard } => {
                for tab in 0..self.tabs.len() {
                    if self.tabs[tab].user == user && self.tabs[tab].engine.is_some() {
                        self.deliver(tab, Event::Close);
                        let t = &mut self.tabs[tab];
                        t.engine = None;
                        t.callers.clear();
                        t.epoch += 1;
                    }
                }
                // As the web facade: the user's data is deleted unless it
                // holds work another tab queued meanwhile (kept for the
                // next login, which sends it).
                let db = &self.dbs[user];
                let holds_work =
                    !db.outbox.is_empty() || !db.failed.is_empty() || !db.conflicts.is_empty();
                if discard || !holds_work {
                    self.dbs[user] = UserDb::default();
                } else {
                    self.note(format!("user{user}'s IndexedDB is kept: it holds work"));
                }
                self.elect(user);
            }
            Msg::ReloadNotice { tab, epoch } => {
                if live(self, tab, epoch) {
                    let records: Vec<Record> = self.dbs[self.tabs[tab].user]
                        .records
                        .values()
                        .cloned()
                        .collect();
                    if let Some(engine) = self.tabs[tab].engine.as_mut() {
                        for record in records {
                            engine
                                .records_mut()
                                .apply_remote(COLLECTION, RemoteChange::Put(record));
                        }
                    }
                }
            }
            Msg::Reload { tab, epoch } => {
                if live(self, tab, epoch) {
                    self.reload(tab);
                }
            }
            Msg::WriteDone {
                tab,
                epoch,
                write,
                after,
            } => {
                if live(self, tab, epoch) {
                    self.carry_out(tab, *write);
                    self.run_effects(tab, after);
                }
            }
            Msg::HeldRetry { tab, epoch } => {
                if live(self, tab, epoch) && !self.tabs[tab].held.is_empty() {
                    self.carry_out(
                        tab,
                        Effect::Write {
                            id: 0,
                            ops: Vec::new(),
                            persisted: None,
                        },
                    );
                }
            }
            Msg::Reconnect { tab, epoch } => {
                if live(self, tab, epoch) {
                    self.tabs[tab].cut_until = None;
                    self.deliver(tab, Event::Network(true));
                }
            }
        }
    }

    /// The server tells every connected `/api/events` stream that
    /// something changed (an event may be lost on the way).
    fn ring_streams(&mut self) {
        for tab in 0..self.tabs.len() {
            let Some((stream, true)) = self.tabs[tab].stream else {
                continue;
            };
            if self.tabs[tab].cut_until.is_some() {
                continue;
            }
            let epoch = self.tabs[tab].epoch;
            if !self.healing && self.chance(self.faults.loss) {
                continue;
            }
            let delay = 5 + self.pick(100) as u64;
            self.at(
                delay,
                Msg::Stream {
                    tab,
                    epoch,
                    stream,
                    signal: StreamSignal::Change,
                },
            );
        }
    }

    /// `load()` of the collection, as the runner does it after a 410: the
    /// server's records into IndexedDB and the engine, then the cursor
    /// taken before the pages. A load that cannot reach the server fails
    /// (the engine asks again later).
    fn reload(&mut self, tab: usize) {
        if self.tabs[tab].cut_until.is_some() {
            self.note(format!("tab {tab} cannot load: cut"));
            return;
        }
        let user = self.tabs[tab].user;
        let cursor = self.server.feed.len().to_string();
        let records: Vec<Record> = self.server.records.values().cloned().collect();
        for record in records {
            self.dbs[user].apply(&[StoreOp::PutRecord {
                collection: COLLECTION.into(),
                record: record.clone(),
            }]);
            if let Some(engine) = self.tabs[tab].engine.as_mut() {
                engine
                    .records_mut()
                    .apply_remote(COLLECTION, RemoteChange::Put(record));
            }
        }
        self.note(format!("tab {tab} loads the collection again"));
        self.deliver(
            tab,
            Event::Loaded {
                collection: COLLECTION.into(),
                cursor: Some(cursor),
            },
        );
    }

    fn new_caller(&mut self, tab: usize, what: String) -> CallerId {
        self.next_caller += 1;
        self.tabs[tab].callers.insert(self.next_caller, what);
        self.next_caller
    }

    /// One thing a person, the browser or the world does.
    fn act(&mut self) {
        let tab = self.pick(self.tabs.len());
        let roll = self.rng.unit();
        if self.tabs[tab].engine.is_none() {
            if roll < 0.3 {
                self.open_tab(tab);
            }
            return;
        }
        let user = self.tabs[tab].user;
        let id = format!("c{}", self.pick(self.faults.records));
        let key = RecordKey::new(COLLECTION, &id);
        let f = self.faults.clone();
        if roll < 0.45 {
            let field = FIELDS[self.pick(FIELDS.len())];
            let value = format!("u{user}t{tab}n{}", self.seq);
            let mut fields = Fields::new();
            fields.insert(field.into(), FieldValue::Text(value.clone()));
            let caller = self.new_caller(tab, format!("save {id}.{field}={value}"));
            self.deliver(
                tab,
                Event::Save {
                    key,
                    fields,
                    caller,
                },
            );
        } else if roll < 0.55 {
            let caller = self.new_caller(tab, format!("comment on {id}"));
            let text = format!("note {}", self.seq);
            self.deliver(tab, Event::Comment { key, text, caller });
        } else if roll < 0.6 {
            self.deliver(tab, Event::Flush { keepalive: false });
        } else if roll < 0.7 {
            // A person resolves a conflict, keeping theirs or mine.
            let engine = self.tabs[tab].engine.as_ref().expect("live");
            let first = engine.conflicts().values().next().cloned();
            if let Some(kept) = first {
                let chosen: Fields = if self.chance(0.5) {
                    kept.conflict.mine.clone()
                } else {
                    kept.conflict
                        .fields
                        .iter()
                        .filter_map(|k| {
                            kept.conflict
                                .theirs
                                .fields
                                .get(k)
                                .map(|v| (k.clone(), v.clone()))
                        })
                        .collect()
                };
                let cid = kept.conflict.id.clone();
                // The claim: one transaction over the user's stores.
                let caller = self.new_caller(tab, format!("resolve {}", &cid[..8]));
                if self.dbs[user].conflicts.remove(&cid).is_some() {
                    self.tell_tabs(tab, |tab, epoch| Msg::WorkNotice { tab, epoch });
                    self.deliver(
                        tab,
                        Event::Resolve {
                            conflict_id: cid,
                            chosen,
                            caller,
                        },
                    );
                } else {
                    self.deliver(tab, Event::ClaimLost { caller });
                }
            }
        } else if roll < 0.71 {
            // A person logs out, now and then throwing away what is left.
            if self.tabs[tab].logout.is_none() {
                let discard = self.chance(0.3);
                self.tabs[tab].logout = Some(discard);
                let caller = self.new_caller(tab, format!("logout (discard {discard})"));
                self.deliver(tab, Event::Logout { discard, caller });
            }
        } else if roll < 0.71 + f.crash {
            self.crash(tab);
        } else if roll < 0.71 + f.crash + f.cut {
            if self.tabs[tab].cut_until.is_none() {
                let len = 500 + self.pick(10_000) as u64;
                self.tabs[tab].cut_until = Some(self.now + len);
                let epoch = self.tabs[tab].epoch;
                self.at(len, Msg::Reconnect { tab, epoch });
                self.note(format!("tab {tab} loses its connection for {len} ms"));
                self.deliver(tab, Event::Network(false));
                self.drop_stream(tab);
            }
        } else if roll < 0.71 + f.crash + f.cut + f.idb_refusal {
            self.dbs[user].refuse_next = true;
        } else if roll < 0.71 + f.crash + f.cut + f.idb_refusal + f.server_restart {
            // A restart: requests on their way in are lost, streams drop,
            // and the feed may come back pruned (its older entries gone).
            self.note("server restarts".into());
            self.queue.retain(|_, m| {
                !matches!(
                    m,
                    Msg::Request { .. } | Msg::Probe { .. } | Msg::FeedRequest { .. }
                )
            });
            if self.chance(0.5) {
                self.server.feed_floor = self.server.feed.len();
                self.note("the server prunes its changes feed".into());
            }
            for tab in 0..self.tabs.len() {
                self.drop_stream(tab);
            }
        }
    }

    /// A connected stream drops: the browser says so, and reconnects by
    /// itself a while later if the server answers then.
    fn drop_stream(&mut self, tab: usize) {
        let Some((stream, true)) = self.tabs[tab].stream else {
            return;
        };
        let epoch = self.tabs[tab].epoch;
        self.tabs[tab].stream = Some((stream, false));
        self.deliver(tab, Event::Stream(StreamSignal::Error));
        if self.tabs[tab].stream.is_some() {
            let delay = 3_000 + self.pick(11_000) as u64;
            for (i, signal) in [StreamSignal::Opened, StreamSignal::Ready]
                .into_iter()
                .enumerate()
            {
                self.at(
                    delay + i as u64,
                    Msg::Stream {
                        tab,
                        epoch,
                        stream,
                        signal,
                    },
                );
            }
        }
    }

    fn step_queue(&mut self) -> bool {
        let Some((&(at, seq), _)) = self.queue.iter().next() else {
            return false;
        };
        let msg = self.queue.remove(&(at, seq)).expect("present");
        self.now = self.now.max(at);
        self.on_msg(msg);
        true
    }

    fn check_step(&self) -> Result<(), SimFailure> {
        if let Some(what) = &self.broken {
            return Err(self.fail(what));
        }
        for user in 0..self.faults.users {
            let leaders = self
                .tabs
                .iter()
                .filter(|t| t.user == user)
                .filter(|t| t.engine.as_ref().is_some_and(ClientEngine::is_leader))
                .count();
            if leaders > 1 {
                return Err(self.fail(&format!("user{user} has {leaders} leading tabs")));
            }
        }
        for (key, n) in &self.server.applied {
            if *n > 1 {
                return Err(self.fail(&format!("the request {key} was applied {n} times")));
            }
        }
        for record in self.server.records.values() {
            let ids: BTreeSet<&str> = record.comments.iter().map(|c| c.id.as_str()).collect();
            if ids.len() != record.comments.len() {
                return Err(self.fail(&format!("a comment of {} was posted twice", record.id)));
            }
        }
        Ok(())
    }

    fn quiet(&self) -> bool {
        self.why_not_quiet().is_none()
    }

    fn why_not_quiet(&self) -> Option<String> {
        let in_flight = self.queue.values().any(|m| {
            matches!(
                m,
                Msg::Request { .. }
                    | Msg::Answer { .. }
                    | Msg::Probe { .. }
                    | Msg::WorkNotice { .. }
                    | Msg::Leading { .. }
                    | Msg::RecordNotice { .. }
                    | Msg::WriteDone { .. }
                    | Msg::FeedRequest { .. }
                    | Msg::FeedAnswer { .. }
                    | Msg::Reload { .. }
                    | Msg::ReloadNotice { .. }
                    | Msg::RevokeRequest { .. }
                    | Msg::RevokeAnswer { .. }
                    | Msg::LoggedOut { .. }
            )
        });
        if in_flight || !self.inflight.is_empty() {
            return Some("messages in flight".into());
        }
        for (i, t) in self.tabs.iter().enumerate() {
            let Some(e) = &t.engine else { continue };
            if !t.held.is_empty() {
                return Some(format!("tab {i} holds writes IndexedDB refused"));
            }
            if !e.is_online() {
                return Some(format!("tab {i} believes it is offline"));
            }
            if let Some(p) = e.outbox().pending().first() {
                let views: Vec<String> =
                    self.tabs
                        .iter()
                        .enumerate()
                        .filter(|(_, o)| o.user == t.user)
                        .map(|(j, o)| {
                            format!(
                                "  tab {j}: {}",
                                o.engine.as_ref().map_or("closed".into(), |e| e
                                    .describe(&p.mutation_id, self.now))
                            )
                        })
                        .collect();
                return Some(format!(
                    "tab {i} still has {} in its outbox; in IndexedDB: {}\n{}",
                    p.mutation_id,
                    self.dbs[t.user].outbox.contains_key(&p.mutation_id),
                    views.join("\n")
                ));
            }
            if e.is_debouncing() {
                return Some(format!("tab {i} has saves in the debounce window"));
            }
            if let Some((key, change)) = e.debounced().next() {
                let confirmed = e.records().get(&key.collection, &key.id);
                return Some(format!(
                    "tab {i} still debounces {}: {:?}; confirmed {:?}",
                    key.id,
                    change,
                    confirmed.map(|r| (r.version, &r.fields))
                ));
            }
        }
        for (u, db) in self.dbs.iter().enumerate() {
            if let Some(id) = db.outbox.keys().next() {
                return Some(format!("user{u}'s IndexedDB outbox still holds {id}"));
            }
        }
        None
    }

    /// Whether every user's leader has read the changes feed to its end.
    fn feed_behind(&self) -> Option<String> {
        let end = self.server.feed.len().to_string();
        for user in 0..self.faults.users {
            let Some(leader) = self.leaders[user] else {
                continue;
            };
            let Some(engine) = &self.tabs[leader].engine else {
                continue;
            };
            if !engine.is_leader() {
                return Some(format!("user{user}'s tab {leader} has not taken the lead"));
            }
            if engine.feed_cursor() != Some(end.as_str()) || engine.is_reading_feed() {
                return Some(format!(
                    "user{user}'s leader (tab {leader}) read the feed to {:?} of {end}",
                    engine.feed_cursor()
                ));
            }
        }
        None
    }

    /// Every tab ends with the server's records: the leaders follow the
    /// changes feed (polled every 2 s, or rung by `/api/events` with a
    /// safety read every 30 s) and tell their other tabs.
    fn settle_feed(&mut self) -> Result<(), SimFailure> {
        let deadline = self.now + 3 * super::SAFETY_READ_MS;
        while !(self.quiet() && self.feed_behind().is_none()) {
            if self.now > deadline || !self.step_queue() {
                let why = self
                    .feed_behind()
                    .or_else(|| self.why_not_quiet())
                    .unwrap_or_default();
                return Err(self.fail(&format!("the feed never caught up: {why}")));
            }
            self.check_step()?;
        }
        Ok(())
    }

    fn check_quiescence(&mut self) -> Result<(), SimFailure> {
        self.settle_feed()?;
        for (user, db) in self.dbs.iter().enumerate() {
            if !self
                .tabs
                .iter()
                .any(|t| t.user == user && t.engine.is_some())
            {
                continue;
            }
            for (id, theirs) in &self.server.records {
                if db.records.get(id) != Some(theirs) {
                    return Err(self.fail(&format!(
                        "user{user}'s IndexedDB has {id} as {:?}, the server v{}",
                        db.records.get(id).map(|r| r.version),
                        theirs.version
                    )));
                }
            }
        }
        for (tab, t) in self.tabs.iter().enumerate() {
            let Some(engine) = &t.engine else { continue };
            if let Some((caller, what)) = t.callers.iter().next() {
                return Err(self.fail(&format!(
                    "tab {tab}: caller {caller} ({what}) never settled"
                )));
            }
            for (id, theirs) in &self.server.records {
                let mine = engine.records().get(COLLECTION, id);
                if mine != Some(theirs) {
                    return Err(self.fail(&format!(
                        "tab {tab}: {id} is {:?}, the server has v{} {:?}",
                        mine.map(|r| (r.version, &r.fields, r.comments.len())),
                        theirs.version,
                        (&theirs.fields, theirs.comments.len())
                    )));
                }
            }
        }
        for user in 0..self.faults.users {
            let views: Vec<(usize, String)> = self
                .tabs
                .iter()
                .enumerate()
                .filter(|(_, t)| t.user == user)
                .filter_map(|(i, t)| t.engine.as_ref().map(|e| (i, work_view(e))))
                .collect();
            if let Some((first_tab, first)) = views.first() {
                for (tab, view) in &views[1..] {
                    if view != first {
                        return Err(self.fail(&format!("user{user}'s work differs: tab {first_tab} {first} vs tab {tab} {view}")));
                    }
                }
            }
        }
        Ok(())
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

/// What a tab shows of the user's work: outbox, dead letters, conflicts.
fn work_view(engine: &ClientEngine) -> String {
    let pending: BTreeSet<&str> = engine
        .outbox()
        .pending()
        .iter()
        .map(|e| e.mutation_id.as_str())
        .collect();
    let failed: BTreeSet<&str> = engine
        .outbox()
        .failed()
        .iter()
        .map(|e| e.mutation_id.as_str())
        .collect();
    let conflicts: BTreeSet<&str> = engine.conflicts().keys().map(String::as_str).collect();
    format!("pending {pending:?} failed {failed:?} conflicts {conflicts:?}")
}

fn op_name(op: &StoreOp) -> String {
    match op {
        StoreOp::PutRecord { record, .. } => format!("put {}@v{}", record.id, record.version),
        StoreOp::DeleteRecord(key) => format!("delete {}", key.id),
        StoreOp::PutEntry(e) => format!("put entry {} {:?}", &e.mutation_id[..8], e.state),
        StoreOp::UpdateEntry(e) => format!("update entry {} {:?}", &e.mutation_id[..8], e.state),
        StoreOp::DeleteEntry {
            mutation_id,
            failed,
        } => format!("delete entry {} failed {failed}", &mutation_id[..8]),
        StoreOp::PutConflict(k) => format!("put conflict {}", &k.conflict.id[..8]),
        StoreOp::DeleteConflict(id) => format!("delete conflict {}", &id[..8]),
        StoreOp::PutCursor(c) => format!("put cursor {c}"),
        StoreOp::DeleteCursor => "delete cursor".into(),
    }
}

fn short(event: &Event) -> String {
    match event {
        Event::Save {
            key,
            fields,
            caller,
        } => format!(
            "Save {} {:?} (caller {caller})",
            key.id,
            fields.keys().collect::<Vec<_>>()
        ),
        Event::Answered { mutation_id, reply } => {
            format!("Answered {} {}", &mutation_id[..8], reply_name(reply))
        }
        Event::Written { id, written } => format!("Written {id} written {written}"),
        Event::WorkStored(w) | Event::Leading(w) => format!(
            "{} outbox {:?} failed {} conflicts {}",
            if matches!(event, Event::Leading(_)) {
                "Leading"
            } else {
                "WorkStored"
            },
            w.outbox
                .iter()
                .map(|e| &e.mutation_id[..8])
                .collect::<Vec<_>>(),
            w.failed.len(),
            w.conflicts.len()
        ),
        Event::Comment { key, .. } => format!("Comment on {}", key.id),
        Event::Resolve { conflict_id, .. } => format!("Resolve {}", &conflict_id[..8]),
        other => {
            let s = format!("{other:?}");
            s.chars().take(80).collect()
        }
    }
}

fn outcome_name(result: &Result<Outcome, super::Failure>) -> String {
    match result {
        Ok(Outcome::Committed(r)) => format!("committed v{}", r.version),
        Ok(Outcome::Merged(r, f)) => format!("merged v{} {f:?}", r.version),
        Ok(Outcome::Conflict(c)) => format!("conflict on {:?}", c.fields),
        Ok(Outcome::Queued(_)) => "queued".into(),
        Ok(Outcome::LoggedOut) => "logged out".into(),
        Err(e) => format!("{e:?}"),
    }
}

fn reply_name(reply: &Reply) -> String {
    match reply {
        Reply::Record(r) => format!("200 v{}", r.version),
        Reply::Comment(_) => "201 comment".into(),
        Reply::Done => "204".into(),
        Reply::Unreadable(_) => "unreadable".into(),
        Reply::Refused(r) => format!("{:?} {:?}", r.status, r.code),
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
    let kinds: [(&str, TurnOff); 6] = [
        ("loss", |f| f.loss = 0.0),
        ("duplicates", |f| f.duplicate = 0.0),
        ("crashes", |f| f.crash = 0.0),
        ("cuts", |f| f.cut = 0.0),
        ("IndexedDB refusals", |f| f.idb_refusal = 0.0),
        ("server restarts", |f| f.server_restart = 0.0),
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
        if world.leaders[user].is_none() {
            if let Some(tab) = (0..world.tabs.len()).find(|&t| world.tabs[t].user == user) {
                world.open_tab(tab);
            }
        }
    }
    let deadline = world.now + 600_000;
    while !world.quiet() {
        if world.now > deadline || !world.step_queue() {
            let why = world.why_not_quiet().unwrap_or_default();
            return Err(world.fail(&format!("the world never became quiet: {why}")));
        }
        world.check_step()?;
    }
    world.check_quiescence()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seeds() -> Vec<u64> {
        if let Ok(seed) = std::env::var("CRM_SIM_SEED") {
            return vec![seed.parse().expect("CRM_SIM_SEED is a number")];
        }
        let n: u64 = std::env::var("CRM_SIM_SEEDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(2_000);
        (1..=n).collect()
    }

    #[test]
    fn many_users_and_tabs_end_equal_to_the_server() {
        let seeds = seeds();
        let threads = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(8);
        let failures: Vec<String> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|t| {
                    let mine: Vec<u64> = seeds.iter().copied().skip(t).step_by(threads).collect();
                    scope.spawn(move || {
                        mine.into_iter()
                            .find_map(|seed| run(seed, Faults::default()).err())
                    })
                })
                .collect();
            workers
                .into_iter()
                .filter_map(|w| w.join().ok().flatten())
                .map(|SimFailure(why)| why)
                .collect()
        });
        if let Some(first) = failures.first() {
            panic!(
                "{} of {} seeds failed (each worker stops at its first failure); the first:\n{first}",
                failures.len(),
                seeds.len()
            );
        }
    }
}
