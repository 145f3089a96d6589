//! A seeded, deterministic simulation of sync progress: several users with
//! two or three tabs each, against a model of the server's sync jobs, over a
//! network that loses, delays, duplicates and reorders requests, answers and
//! tab messages; tabs crash (memory gone, IndexedDB kept) and the server
//! restarts (its jobs lost, its idempotency keys kept, as SQLite keeps them).
//!
//! The runner here plays `web::sync`: the leader tab feeds the reducer and
//! carries out its effects (start with one idempotency key for every retry,
//! one poll at a time, cancel, the one timer, the stored job, the history,
//! the broadcast of each new state); a follower forwards presses and feeds
//! the leader's states to its own reducer. States cross the tab channel as
//! serde turns them into a message, so the leader's bookkeeping never does.
//! Leadership moves only when the leader dies, as with Web Locks.
//!
//! Invariants, after every event and at quiescence, are listed at
//! [`World::check_step`] and [`World::check_quiet`]. `CRM_SIM_SEEDS=n` runs
//! `n` seeds; `CRM_SIM_SEED=s` replays one with its trace;
//! `CRM_SIM_GREP=word` keeps only the trace lines that mention `word`.

use super::{
    reduce, StoredSyncJob, SyncConfig, SyncEffect, SyncEvent, SyncHistoryEntry, SyncKind, SyncState,
};
use crate::core::code::ErrorCode;
use std::collections::BTreeMap;

mod invariants;
mod server;
use server::{Answer, Http, ModelServer};

/// The Web Locks hand-over after a leader tab dies.
const HANDOVER_MS: u64 = 5;
/// An IndexedDB read or write.
const IDB_MS: u64 = 2;
/// The browser's limit for a start or cancel request.
const REQUEST_TIMEOUT_MS: u64 = 3_000;
/// Attempts of one start (the web layer's retry policy), one key for all.
const START_ATTEMPTS: u32 = 3;
/// A leader shows a job running at most this long after the server ended
/// or lost it (polls back off, fail at most `max_poll_failures` times in a
/// row, a dead leader's successor polls at once).
const LATE_MS: u64 = 30_000;

/// The knobs of one run.
#[derive(Debug, Clone)]
struct Faults {
    users: usize,
    steps: usize,
    loss: f64,
    duplicate: f64,
    crash: f64,
    restart: f64,
    press: f64,
    cancel: f64,
    dismiss: f64,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            users: 3,
            steps: 120,
            loss: 0.05,
            duplicate: 0.05,
            crash: 0.02,
            restart: 0.01,
            press: 0.08,
            cancel: 0.04,
            dismiss: 0.01,
        }
    }
}

fn config() -> SyncConfig {
    SyncConfig {
        poll_ms: 500,
        // Well above `LATE_MS`, so a run that ends only by its total timeout
        // shows.
        timeout_ms: 60_000,
        poll_timeout_ms: 2_000,
        cooldown_ms: 2_000,
        max_backoff_factor: 4,
        max_poll_failures: 4,
    }
}

/// splitmix64: small, seeded, the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

/// A fetch this tab waits for.
#[derive(Debug, Clone)]
enum Pending {
    Start {
        run: u64,
        kind: SyncKind,
        key: String,
        attempt: u32,
    },
    Poll {
        sync_id: String,
    },
    Cancel {
        sync_id: String,
    },
}

#[derive(Debug, Clone)]
enum Command {
    Start(SyncKind),
    Cancel,
    Dismiss,
}

#[derive(Debug, Clone)]
enum TabMsg {
    State(Box<SyncState>),
    Command(Command),
    /// `SyncCommand::Show`: a follower asks for the leader's state.
    Show,
}

#[derive(Debug, Clone)]
enum Msg {
    Request {
        user: usize,
        tab: usize,
        epoch: u64,
        fetch: u64,
        http: Http,
    },
    Answer {
        tab: usize,
        epoch: u64,
        fetch: u64,
        answer: Answer,
    },
    FetchTimeout {
        tab: usize,
        epoch: u64,
        fetch: u64,
    },
    StartRetry {
        tab: usize,
        epoch: u64,
        pending: Pending,
    },
    Timer {
        tab: usize,
        epoch: u64,
        id: u64,
    },
    Tab {
        from: (usize, u64),
        to: usize,
        epoch: u64,
        msg: TabMsg,
    },
    DbWrite {
        tab: usize,
        epoch: u64,
        job: Option<StoredSyncJob>,
    },
    DbRead {
        tab: usize,
        epoch: u64,
    },
    Handover {
        user: usize,
    },
    Reopen {
        tab: usize,
    },
    Crash {
        tab: usize,
        epoch: u64,
    },
}

/// One tab: its runner's memory (gone in a crash) and what it showed.
struct Tab {
    user: usize,
    alive: bool,
    /// Grows at every crash: answers and messages to an older one are lost.
    epoch: u64,
    state: SyncState,
    timer: Option<u64>,
    fetches: BTreeMap<u64, Pending>,
    /// The highest progress shown per run (its `startedAt`), since this tab
    /// opened.
    shown: BTreeMap<u64, f64>,
}

impl Tab {
    fn new(user: usize) -> Self {
        Tab {
            user,
            alive: true,
            epoch: 0,
            state: SyncState::default(),
            timer: None,
            fetches: BTreeMap::new(),
            shown: BTreeMap::new(),
        }
    }
}

/// A broken invariant, with the seed and the trace that led to it.
#[derive(Debug)]
struct SimFailure(String);

struct World {
    seed: u64,
    rng: Rng,
    faults: Faults,
    config: SyncConfig,
    now: u64,
    seq: u64,
    queue: BTreeMap<(u64, u64), Msg>,
    server: ModelServer,
    tabs: Vec<Tab>,
    leaders: Vec<Option<usize>>,
    /// The model IndexedDB: the stored job of each user.
    stored: Vec<Option<StoredSyncJob>>,
    /// Finished runs each user's leaders recorded.
    history: Vec<Vec<SyncHistoryEntry>>,
    /// Start presses each user made (in any tab).
    presses: Vec<u64>,
    next_id: u64,
    healing: bool,
    tracing: bool,
    trace: Vec<String>,
    broken: Option<String>,
}

impl World {
    fn new(seed: u64, faults: Faults) -> Self {
        let mut rng = Rng(seed);
        let mut tabs = Vec::new();
        for user in 0..faults.users {
            for _ in 0..2 + rng.below(2) {
                tabs.push(Tab::new(user));
            }
        }
        let mut world = World {
            seed,
            rng,
            config: config(),
            now: 1_000_000,
            seq: 0,
            queue: BTreeMap::new(),
            server: ModelServer {
                created: vec![0; faults.users],
                advanced_to: 1_000_000,
                ..ModelServer::default()
            },
            tabs,
            leaders: vec![None; faults.users],
            stored: vec![None; faults.users],
            history: vec![Vec::new(); faults.users],
            presses: vec![0; faults.users],
            next_id: 0,
            healing: false,
            tracing: false,
            trace: Vec::new(),
            broken: None,
            faults,
        };
        for tab in 0..world.tabs.len() {
            let now = world.now;
            world.dispatch(tab, SyncEvent::Follow { now });
        }
        for user in 0..world.faults.users {
            world.handover(user);
        }
        world
    }

    fn chance(&mut self, p: f64) -> bool {
        !self.healing && self.rng.unit() < p
    }

    fn note(&mut self, line: impl FnOnce() -> String) {
        if self.tracing {
            let line = line();
            self.trace.push(format!("{:>8} {line}", self.now));
        }
    }

    fn at(&mut self, delay: u64, msg: Msg) {
        self.seq += 1;
        self.queue.insert((self.now + delay, self.seq), msg);
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn is_leader(&self, tab: usize) -> bool {
        self.leaders[self.tabs[tab].user] == Some(tab)
    }

    // ---- the runner (web::sync) ----

    fn dispatch(&mut self, tab: usize, event: SyncEvent) {
        self.note(|| format!("tab{tab} <- {}", short_event(&event)));
        let state = std::mem::take(&mut self.tabs[tab].state);
        let (next, effects) = reduce(state, event, &self.config);
        self.tabs[tab].state = next;
        for effect in effects {
            self.carry_out(tab, effect);
        }
        self.watch(tab);
    }

    fn carry_out(&mut self, tab: usize, effect: SyncEffect) {
        let user = self.tabs[tab].user;
        let epoch = self.tabs[tab].epoch;
        self.note(|| format!("tab{tab} -> {}", short_effect(&effect)));
        match effect {
            SyncEffect::PostStart { run, kind } => {
                let key = format!("key-{}", self.id());
                let pending = Pending::Start {
                    run,
                    kind,
                    key,
                    attempt: 1,
                };
                self.fetch(tab, pending, REQUEST_TIMEOUT_MS);
            }
            SyncEffect::Coalesced { .. } | SyncEffect::Notify => {}
            SyncEffect::SchedulePoll { at_ms } => {
                let id = self.id();
                self.tabs[tab].timer = Some(id);
                self.at(
                    at_ms.saturating_sub(self.now),
                    Msg::Timer { tab, epoch, id },
                );
            }
            SyncEffect::Poll {
                sync_id,
                timeout_ms,
            } => self.fetch(tab, Pending::Poll { sync_id }, timeout_ms),
            SyncEffect::SendCancel { sync_id } => {
                self.fetch(tab, Pending::Cancel { sync_id }, REQUEST_TIMEOUT_MS)
            }
            SyncEffect::Broadcast(state) => {
                // Through serde, as the tab channel carries it.
                let wire = serde_json::to_value(&*state).expect("a state serialises");
                let state: SyncState = serde_json::from_value(wire).expect("and reads back");
                for to in 0..self.tabs.len() {
                    if to != tab && self.tabs[to].user == user && self.tabs[to].alive {
                        self.post(tab, to, TabMsg::State(Box::new(state.clone())));
                    }
                }
            }
            SyncEffect::StoreJob(job) => self.at(IDB_MS, Msg::DbWrite { tab, epoch, job }),
            SyncEffect::RecordHistory(entry) => self.history[user].push(entry),
            SyncEffect::AskState => {
                if let Some(leader) = self.leaders[user].filter(|&l| l != tab) {
                    self.post(tab, leader, TabMsg::Show);
                }
            }
        }
    }

    /// A tab message from `from`: delayed, reordered, states sometimes
    /// duplicated. Lost only with its sender or its receiver (a tab that
    /// crashes before it arrives): the tab channel loses nothing between
    /// live tabs, and a follower showing an end could not tell that it
    /// missed, say, a dismiss.
    fn post(&mut self, from: usize, to: usize, msg: TabMsg) {
        let epoch = self.tabs[to].epoch;
        let from = (from, self.tabs[from].epoch);
        // States may come twice; a command may not: the tab channel never
        // duplicates, and a second Start is a second press to the leader.
        let copies = if matches!(msg, TabMsg::State(_)) && self.chance(self.faults.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = self.rng.below(40);
            self.at(
                delay,
                Msg::Tab {
                    from,
                    to,
                    epoch,
                    msg: msg.clone(),
                },
            );
        }
    }

    fn fetch(&mut self, tab: usize, pending: Pending, timeout_ms: u64) {
        let user = self.tabs[tab].user;
        let epoch = self.tabs[tab].epoch;
        let fetch = self.id();
        let http = match &pending {
            Pending::Start { key, kind, .. } => Http::Start {
                key: key.clone(),
                kind: *kind,
            },
            Pending::Poll { sync_id } => Http::Get {
                id: sync_id.clone(),
            },
            Pending::Cancel { sync_id } => Http::Delete {
                id: sync_id.clone(),
            },
        };
        self.tabs[tab].fetches.insert(fetch, pending);
        self.at(timeout_ms, Msg::FetchTimeout { tab, epoch, fetch });
        if self.chance(self.faults.loss) {
            self.note(|| format!("tab{tab} request {fetch} lost"));
            return;
        }
        let copies = if self.chance(self.faults.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = 1 + self.rng.below(150);
            self.at(
                delay,
                Msg::Request {
                    user,
                    tab,
                    epoch,
                    fetch,
                    http: http.clone(),
                },
            );
        }
    }

    /// A fetch settled: feed the answer to the reducer, as `web::sync` does.
    fn settle(&mut self, tab: usize, pending: Pending, answer: Result<Answer, ErrorCode>) {
        let now = self.now;
        let answer = match answer {
            Ok(Answer::Down) => Err(ErrorCode::Network),
            Ok(Answer::Refused(status, code)) => Err(ErrorCode::from_http(status, Some(code))),
            Ok(a) => Ok(a),
            Err(code) => Err(code),
        };
        match pending {
            Pending::Start {
                run,
                kind,
                key,
                attempt,
            } => match answer {
                Ok(Answer::Started(sync_id)) => {
                    self.dispatch(tab, SyncEvent::StartAccepted { run, sync_id, now })
                }
                Ok(_) => self.dispatch(
                    tab,
                    SyncEvent::StartFailed {
                        run,
                        code: ErrorCode::BadResponse,
                        message: "no syncId".into(),
                        now,
                    },
                ),
                Err(code) => {
                    let transient = matches!(
                        code,
                        ErrorCode::Network | ErrorCode::Timeout | ErrorCode::Server
                    );
                    if transient && attempt < START_ATTEMPTS {
                        let epoch = self.tabs[tab].epoch;
                        let delay = 200 * u64::from(attempt);
                        self.at(
                            delay,
                            Msg::StartRetry {
                                tab,
                                epoch,
                                pending: Pending::Start {
                                    run,
                                    kind,
                                    key,
                                    attempt: attempt + 1,
                                },
                            },
                        );
                    } else {
                        self.dispatch(
                            tab,
                            SyncEvent::StartFailed {
                                run,
                                code,
                                message: format!("{code:?}"),
                                now,
                            },
                        )
                    }
                }
            },
            Pending::Poll { sync_id } => match answer {
                Ok(Answer::Status(status)) => self.dispatch(
                    tab,
                    SyncEvent::PollResult {
                        sync_id,
                        status,
                        now,
                    },
                ),
                Ok(_) => self.dispatch(
                    tab,
                    SyncEvent::PollFailed {
                        sync_id,
                        code: ErrorCode::BadResponse,
                        now,
                    },
                ),
                Err(code) => self.dispatch(tab, SyncEvent::PollFailed { sync_id, code, now }),
            },
            Pending::Cancel { sync_id } => match answer {
                Ok(answer) => {
                    let status = match answer {
                        Answer::Status(status) => Some(status),
                        _ => None,
                    };
                    self.dispatch(
                        tab,
                        SyncEvent::CancelDone {
                            sync_id,
                            status,
                            now,
                        },
                    )
                }
                Err(code) => self.dispatch(tab, SyncEvent::CancelFailed { sync_id, code, now }),
            },
        }
    }

    /// `crm.sync.start()`, `cancel()`, `dismiss()` in `tab`.
    fn press(&mut self, tab: usize, command: Command) {
        let now = self.now;
        if let Command::Start(_) = command {
            self.presses[self.tabs[tab].user] += 1;
        }
        if let Command::Cancel = command {
            // `cancel()` rejects at once when the tab shows nothing running.
            if !self.tabs[tab].state.phase.is_running() {
                return;
            }
        }
        self.note(|| format!("tab{tab} press {command:?}"));
        if self.is_leader(tab) {
            self.dispatch(tab, command_event(&command, now));
            // Closed right after the press, its messages still on the way.
            if self.chance(self.faults.crash * 5.0) {
                let epoch = self.tabs[tab].epoch;
                let delay = self.rng.below(40);
                self.at(delay, Msg::Crash { tab, epoch });
            }
        } else {
            let user = self.tabs[tab].user;
            if let Some(leader) = self.leaders[user] {
                self.post(tab, leader, TabMsg::Command(command));
            }
        }
    }

    fn on_tab_message(&mut self, tab: usize, msg: TabMsg) {
        let now = self.now;
        match msg {
            TabMsg::State(state) => self.dispatch(tab, SyncEvent::RemoteState { state, now }),
            TabMsg::Command(command) if self.is_leader(tab) => {
                self.dispatch(tab, command_event(&command, now))
            }
            TabMsg::Show if self.is_leader(tab) => {
                self.dispatch(tab, SyncEvent::StateAsked { now })
            }
            _ => {}
        }
    }

    // ---- tabs, leadership, the server ----

    fn crash(&mut self, tab: usize) {
        let user = self.tabs[tab].user;
        self.note(|| format!("tab{tab} crashes"));
        let t = &mut self.tabs[tab];
        t.alive = false;
        t.epoch += 1;
        t.state = SyncState::default();
        t.timer = None;
        t.fetches.clear();
        t.shown.clear();
        if self.leaders[user] == Some(tab) {
            self.leaders[user] = None;
            self.at(HANDOVER_MS, Msg::Handover { user });
        }
        let back = 500 + self.rng.below(5_000);
        self.at(back, Msg::Reopen { tab });
    }

    /// The lock goes to a waiting tab of `user`, which reads the stored job.
    fn handover(&mut self, user: usize) {
        if self.leaders[user].is_some() {
            return;
        }
        let Some(tab) =
            (0..self.tabs.len()).find(|&t| self.tabs[t].user == user && self.tabs[t].alive)
        else {
            return;
        };
        self.leaders[user] = Some(tab);
        self.note(|| format!("tab{tab} leads user{user}"));
        let epoch = self.tabs[tab].epoch;
        self.at(IDB_MS, Msg::DbRead { tab, epoch });
    }

    fn reopen(&mut self, tab: usize) {
        let user = self.tabs[tab].user;
        self.tabs[tab].alive = true;
        self.note(|| format!("tab{tab} opens"));
        // As `web::sync` does when it gets the tab channel, before the lock.
        let now = self.now;
        self.dispatch(tab, SyncEvent::Follow { now });
        self.handover(user);
    }

    fn step_queue(&mut self) -> bool {
        let Some((&(at, seq), _)) = self.queue.iter().next() else {
            return false;
        };
        let msg = self.queue.remove(&(at, seq)).expect("just seen");
        self.now = self.now.max(at);
        let live =
            |w: &World, tab: usize, epoch: u64| w.tabs[tab].alive && w.tabs[tab].epoch == epoch;
        match msg {
            Msg::Request {
                user,
                tab,
                epoch,
                fetch,
                http,
            } => {
                let answer = self.server.handle(user, &http, self.now, &mut self.rng);
                self.note(|| format!("server {http:?} from tab{tab} -> {answer:?}"));
                if self.chance(self.faults.loss) {
                    self.note(|| format!("answer {fetch} lost"));
                } else {
                    let delay = 1 + self.rng.below(150);
                    self.at(
                        delay,
                        Msg::Answer {
                            tab,
                            epoch,
                            fetch,
                            answer,
                        },
                    );
                }
            }
            Msg::Answer {
                tab,
                epoch,
                fetch,
                answer,
            } => {
                if live(self, tab, epoch) {
                    if let Some(pending) = self.tabs[tab].fetches.remove(&fetch) {
                        self.settle(tab, pending, Ok(answer));
                    }
                }
            }
            Msg::FetchTimeout { tab, epoch, fetch } => {
                if live(self, tab, epoch) {
                    if let Some(pending) = self.tabs[tab].fetches.remove(&fetch) {
                        self.settle(tab, pending, Err(ErrorCode::Timeout));
                    }
                }
            }
            Msg::StartRetry {
                tab,
                epoch,
                pending,
            } => {
                if live(self, tab, epoch) {
                    self.fetch(tab, pending, REQUEST_TIMEOUT_MS);
                }
            }
            Msg::Timer { tab, epoch, id } => {
                if live(self, tab, epoch) && self.tabs[tab].timer == Some(id) {
                    self.tabs[tab].timer = None;
                    let now = self.now;
                    self.dispatch(tab, SyncEvent::PollTick { now });
                }
            }
            Msg::Tab {
                from: (sender, sent_in),
                to,
                epoch,
                msg,
            } => {
                if live(self, to, epoch) && self.tabs[sender].epoch == sent_in {
                    self.on_tab_message(to, msg);
                }
            }
            Msg::DbWrite { tab, epoch, job } => {
                // A transaction of a tab that died before it committed is
                // aborted.
                if live(self, tab, epoch) {
                    let user = self.tabs[tab].user;
                    self.stored[user] = job;
                }
            }
            Msg::DbRead { tab, epoch } => {
                if live(self, tab, epoch) && self.is_leader(tab) {
                    let user = self.tabs[tab].user;
                    let job = self.stored[user].clone();
                    let now = self.now;
                    self.dispatch(tab, SyncEvent::Lead { job, now });
                }
            }
            Msg::Handover { user } => self.handover(user),
            Msg::Reopen { tab } => self.reopen(tab),
            Msg::Crash { tab, epoch } => {
                if live(self, tab, epoch) {
                    self.crash(tab);
                }
            }
        }
        true
    }

    /// What the users and the faults do at one step.
    fn act(&mut self) {
        let n = self.tabs.len() as u64;
        let tab = self.rng.below(n) as usize;
        if !self.tabs[tab].alive {
            return;
        }
        let roll = self.rng.unit();
        let f = self.faults.clone();
        let kind = if self.rng.unit() < 0.5 {
            SyncKind::FromSheet
        } else {
            SyncKind::ToSheet
        };
        if roll < f.press {
            self.press(tab, Command::Start(kind));
        } else if roll < f.press + f.cancel {
            self.press(tab, Command::Cancel);
        } else if roll < f.press + f.cancel + f.dismiss {
            self.press(tab, Command::Dismiss);
        } else if roll < f.press + f.cancel + f.dismiss + f.crash {
            self.crash(tab);
        } else if roll < f.press + f.cancel + f.dismiss + f.crash + f.restart {
            self.note(|| "server restarts".into());
            self.server.restart(self.now);
        }
    }
}

fn command_event(command: &Command, now: u64) -> SyncEvent {
    match *command {
        Command::Start(kind) => SyncEvent::StartPressed { kind, now },
        Command::Cancel => SyncEvent::CancelPressed { now },
        Command::Dismiss => SyncEvent::Dismiss { now },
    }
}

/// What a tab shows, for comparing tabs.
fn view(s: &SyncState) -> String {
    format!(
        "{:?} {} {:?} run {:?} {:?}",
        s.phase,
        s.progress,
        s.sync_id,
        s.started_at,
        s.error.as_ref().map(|e| e.code)
    )
}

fn short_event(e: &SyncEvent) -> String {
    match e {
        SyncEvent::RemoteState { state, .. } => format!("RemoteState {}", view(state)),
        SyncEvent::PollResult {
            sync_id, status, ..
        } => format!(
            "PollResult {sync_id} {:?} {:?}",
            status.status, status.progress
        ),
        other => format!("{other:?}"),
    }
}

fn short_effect(e: &SyncEffect) -> String {
    match e {
        SyncEffect::Broadcast(state) => format!("Broadcast {}", view(state)),
        other => format!("{other:?}"),
    }
}

/// Runs one seed: random presses and faults, then healing (no more faults,
/// every crashed tab back) to quiescence. A failing seed runs again with
/// its trace kept.
fn run(seed: u64) -> Result<(), SimFailure> {
    run_once(seed, false).or_else(|_| run_once(seed, true))
}

fn run_once(seed: u64, tracing: bool) -> Result<(), SimFailure> {
    let mut world = World::new(seed, Faults::default());
    world.tracing = tracing;
    for _ in 0..world.faults.steps {
        // Often at the very millisecond of the next event, so that a press
        // and an answer or a state meet.
        let next = world.queue.keys().next().map(|(at, _)| *at);
        let until = match next {
            Some(at) if at > world.now && world.rng.unit() < 0.3 => at,
            _ => world.now + 1 + world.rng.below(400),
        };
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
    world.healing = true;
    world.note(|| "healing".into());
    let deadline = world.now + 600_000;
    while world.step_queue() {
        world.check_step()?;
        if world.now > deadline {
            return Err(world.fail("the world never became quiet"));
        }
    }
    world.check_quiet()
}

#[test]
fn sync_progress_holds_under_faults() {
    crate::core::seeds::run_all(5_000, 0, |seed| run(seed).map_err(|SimFailure(why)| why));
}
