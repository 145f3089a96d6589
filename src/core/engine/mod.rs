//! The client's decisions as one sans-IO state machine.
//!
//! [`ClientEngine`] joins the record machines ([`StagedRecords`],
//! [`Debounce`], [`Outbox`], the merge) with reachability and the tab's
//! leader duties. It changes only through [`ClientEngine::handle`] (an
//! [`Event`] and the time) and [`ClientEngine::handle_timeout`]; what to do
//! is pulled with [`ClientEngine::poll_output`], in the order it must be
//! carried out (a write holds back what follows it, see `output.rs`), and
//! [`ClientEngine::poll_timeout`] says when to call again: one timer. It
//! never waits, never reads a clock and never touches the browser;
//! `web::client` carries out the effects (fetch, IndexedDB, the tab
//! channel, promises) and reports what happened as the next events, as the
//! simulation's runner does with its model of them.
//!
//! The life of a save, as the engine sees it:
//!
//! ```text
//!  Save ──► stage + debounce ──(DebounceDue)──► outbox entry
//!         ──► Effect::Write(entry) ──(Written)──► Effect::Send(entry)
//!         ──(Answered)──► 2xx: commit, Write, Settle, Tell
//!                         409 version: merge ──► Send again | Conflict
//!                         401: SessionEnded;  5xx/network: retry timer
//!                         any other refusal (422, 403, 404, 409 overlap):
//!                         dead letter (Failed store), FailureFound
//! ```
//!
//! Because nothing here waits, the whole client can be run by a seeded
//! simulation of many users and tabs against a model server (see
//! `sim` in the tests), on a simulated clock and a faulty network.

mod answer;
mod feed;
mod load;
mod local;
mod output;
mod reach;
mod read;
mod requests;
pub mod runner;
mod session;
mod undo;
mod work;
mod write;

#[cfg(test)]
mod sim;

use serde::{Deserialize, Serialize};

use crate::core::code::ErrorCode;
use crate::core::debounce::{Debounce, DebounceOptions};
use crate::core::merge::{Conflict, MergeRules};
use crate::core::outbox::{Outbox, OutboxEntry};
use crate::core::reachability::{Answer, Reachability};
use crate::core::record::{Comment, Fields, Record, RecordKey};
use crate::core::retry::RetryPolicy;
use crate::core::staged::{RemoteChange, StagedRecords};

use crate::core::undo::{UndoEntry, UndoList};
use crate::core::vecmap::VecMap;
use std::collections::{BTreeSet, HashSet};

pub use crate::core::debounce::SavePayload;
pub use feed::{FeedChange, FeedPage, PullReport, StreamSignal, FEED_POLL_MS, SAFETY_READ_MS};
pub use load::{LoadEnd, LoadPage, DEFAULT_PAGE, MAX_PAGE};
pub use local::{FullReason, LoadPlan, LoadedMark, LOCAL_SCHEMA};
pub use read::{ReadAnswer, ReadTarget};
pub use requests::NextTry;
pub use undo::UndoTarget;
pub use write::STAGED_PREFIX;

/// How long the leader leaves another tab's entry to that tab before it
/// sends it itself.
pub const ADOPT_AFTER_MS: u64 = 10_000;

/// How often writes IndexedDB refused for lack of space are tried again
/// while nothing else writes (a later write carries them along sooner).
pub const HELD_RETRY_MS: u64 = 30_000;

/// A caller of `save`, `comment`, ... waiting for its promise; the runner
/// hands out the ids and keeps the promises.
pub type CallerId = u64;

/// The engine's settings.
#[derive(Debug, Clone, Default)]
pub struct EngineConfig {
    /// How saves of one record are batched.
    pub debounce: DebounceOptions,
    /// Retries of transient failures.
    pub retry: RetryPolicy,
    /// The merge policy on a 409.
    pub rules: MergeRules,
    /// How long `logout` waits for the outbox to drain (the request
    /// timeout).
    pub logout_wait_ms: u64,
}

/// A kept conflict and the record as the change was based on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeptConflict {
    /// The conflict as a person decides it.
    pub conflict: Conflict,
    /// The record as the refused change saw it.
    pub base: Option<Record>,
}

/// Counters since the client was made (`metrics()` in the reference).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ClientCounters {
    /// Saves, comments, creates and deletes asked for.
    pub operations: u64,
    /// Mutations the server committed.
    pub commits: u64,
    /// Changes that became a conflict for a person.
    pub conflicts: u64,
    /// 409s merged and re-sent, or found already applied.
    pub merged: u64,
    /// Transient failures retried.
    pub retries: u64,
    /// Requests sent.
    pub requests: u64,
    /// Entries adopted from IndexedDB (a closed tab's, a reload's).
    pub outbox_replayed: u64,
    /// `change` events received from `/api/events`.
    pub feed_events: u64,
    /// Mutations the server refused for good.
    pub failed: u64,
}

/// Where a record event comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// This tab's own change (staged, settled, discarded).
    Local,
    /// The server's record replaced what this tab had.
    Server,
    /// Another tab stored the record.
    Tab,
}

/// What an entry's callers hear when it ends well.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The server took it; its record.
    Committed(Record),
    /// Taken after a merge; the record and the re-sent fields.
    Merged(Record, Vec<String>),
    /// A person must decide.
    Conflict(Box<Conflict>),
    /// Cannot be sent now; kept in the outbox under this mutation id.
    Queued(String),
    /// `logout` revoked the token.
    LoggedOut,
    /// What a read asked for ([`Event::Read`]).
    Read(ReadAnswer),
}

/// Why a caller's promise is rejected.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// The server's refusal, as the runner reported it with
    /// [`Event::Answered`] or [`Event::Revoked`].
    Answer(Box<Refusal>),
    /// The server said 2xx with a body that is not of the protocol's shape.
    Unreadable(String),
    /// Dropped: discarded, or gone from IndexedDB in another tab.
    Cancelled,
    /// The client was closed.
    Closed,
    /// The app's input.
    Invalid(String),
    /// No such entry, record or conflict.
    NotFound(String),
    /// `logout` found this many changes not on the server.
    PendingChanges(usize),
}

/// The server's answer to a sent outbox entry, as far as the engine
/// needs it: the runner parses bodies, the engine decides.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// A 2xx with the record (PATCH, create).
    Record(Record),
    /// A 2xx with the comment (a comment post).
    Comment(Comment),
    /// A 2xx with no body of interest (a delete).
    Done,
    /// A 2xx whose body could not be read.
    Unreadable(String),
    /// Not a 2xx, or no answer.
    Refused(Refusal),
}

/// A failed exchange.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// The HTTP status; `None` when no answer came (network, timeout).
    pub status: Option<u16>,
    /// The protocol's error code.
    pub code: ErrorCode,
    /// Worth trying again (network, timeout, 5xx, 429).
    pub transient: bool,
    /// `Retry-After`, in ms.
    pub retry_after_ms: Option<u64>,
    /// Said to the person.
    pub message: String,
    /// For a 409: the server's current record (`details.current`), or why
    /// it could not be read.
    pub current: Option<Result<Record, String>>,
    /// The body's `error.details` as JSON text, kept with a refused change
    /// for the person (the bookings in the way of a `409 overlap`).
    pub details: Option<String>,
}

/// The answer to the probe `GET /api/me`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeReply {
    /// A 2xx naming the token's user.
    User(String),
    /// A 2xx that names no user.
    Unreadable,
    /// 401.
    Unauthorized,
    /// Another status.
    Status(u16),
    /// An answer that is not HTTP as the protocol says (garbage).
    Garbled,
    /// No answer.
    Unreachable,
}

/// The user's work as IndexedDB holds it (read by the runner).
#[derive(Debug, Clone, Default)]
pub struct StoredWork {
    /// The outbox store.
    pub outbox: Vec<OutboxEntry>,
    /// The dead letters.
    pub failed: Vec<OutboxEntry>,
    /// The conflicts store.
    pub conflicts: Vec<KeptConflict>,
    /// The undo list.
    pub undo: Vec<UndoEntry>,
}

impl StoredWork {
    /// Lays writes not yet in IndexedDB (held for lack of space) over what
    /// was read, so a re-read never takes back what this tab already
    /// decided (found by the simulation: a conflict came back as an entry
    /// and was sent again).
    pub fn overlay(&mut self, ops: &[StoreOp]) {
        for op in ops {
            match op {
                StoreOp::UpdateEntry { entry, if_key }
                    if !self.outbox.iter().any(|e| {
                        e.mutation_id == entry.mutation_id && &e.idempotency_key == if_key
                    }) => {}
                StoreOp::PutEntry(entry) | StoreOp::UpdateEntry { entry, .. } => {
                    self.outbox.retain(|e| e.mutation_id != entry.mutation_id);
                    self.failed.retain(|e| e.mutation_id != entry.mutation_id);
                    if entry.state == crate::core::outbox::EntryState::Failed {
                        self.failed.push(entry.clone());
                    } else {
                        self.outbox.push(entry.clone());
                    }
                }
                StoreOp::DeleteEntry {
                    mutation_id,
                    failed,
                } => {
                    let list = if *failed {
                        &mut self.failed
                    } else {
                        &mut self.outbox
                    };
                    list.retain(|e| &e.mutation_id != mutation_id);
                }
                StoreOp::PutConflict(kept) => {
                    self.conflicts.retain(|k| k.conflict.id != kept.conflict.id);
                    self.conflicts.push(kept.clone());
                }
                StoreOp::DeleteConflict(id) => self.conflicts.retain(|k| &k.conflict.id != id),
                StoreOp::PutUndo(entry) => {
                    self.undo.retain(|e| e.mutation_id != entry.mutation_id);
                    self.undo.push(entry.clone());
                }
                StoreOp::DeleteUndo(id) => self.undo.retain(|e| &e.mutation_id != id),
                StoreOp::PutRecord { .. }
                | StoreOp::DeleteRecord(_)
                | StoreOp::PutCursor(_)
                | StoreOp::DeleteCursor
                | StoreOp::PutMark { .. } => {}
            }
        }
    }
}

/// Something that happened: an app call, a timer, an answer, a tab.
/// (Fields are named for what they hold: `key` the record, `caller` the
/// promise to settle.)
#[allow(missing_docs)]
#[derive(Debug, Clone)]
pub enum Event {
    /// `save`: stage fields and debounce them. The record must be known
    /// (the runner reads it first with [`Event::Read`] otherwise).
    Save {
        key: RecordKey,
        fields: Fields,
        caller: CallerId,
    },
    /// `comment`.
    Comment {
        key: RecordKey,
        text: String,
        caller: CallerId,
    },
    /// `create` with a fresh id.
    Create {
        key: RecordKey,
        fields: Fields,
        caller: CallerId,
    },
    /// `remove`; the record is known here.
    Delete { key: RecordKey, caller: CallerId },
    /// `flush()` (or the page going away, with `keepalive`).
    Flush { keepalive: bool },
    /// `retry(mutationId)`, after the runner claimed it in IndexedDB.
    Retry {
        mutation_id: String,
        caller: CallerId,
    },
    /// `discard(mutationId)`.
    Discard { mutation_id: String },
    /// `resolve(conflictId, chosen)`, after the runner claimed it.
    Resolve {
        conflict_id: String,
        chosen: Fields,
        caller: CallerId,
    },
    /// `undo(...)` or `redo(mutationId)`: a new change that takes a
    /// committed one back (the runner read the history for a version).
    Undo {
        target: UndoTarget,
        caller: CallerId,
    },
    /// A claim lost to another tab: the caller is told, the entry stays.
    ClaimLost { caller: CallerId },
    /// The debounce timer fired.
    DebounceDue,
    /// The retry timer fired.
    RetryDue,
    /// The probe timer fired.
    ProbeDue,
    /// A write ended: `written` in IndexedDB, or held in memory by the
    /// runner because IndexedDB refused it (quota).
    Written { id: u64, written: bool },
    /// The writes the runner held were written at last.
    HeldWritten,
    /// IndexedDB refused a write for lack of space (any write, the
    /// runner's own included): the runner holds it, and the engine says
    /// when to try again ([`Effect::WriteHeld`]).
    StoreFull,
    /// The held-writes timer fired.
    HeldDue,
    /// The timer of a load's page tried again fired.
    LoadRetryDue,
    /// A sent entry's answer.
    Answered { mutation_id: String, reply: Reply },
    /// `caller` waits for a record or a record's history from the
    /// server (a record read before a save, a delete or an undo of one not
    /// loaded here; `history`). Answered with [`Outcome::Read`].
    Read {
        target: ReadTarget,
        caller: CallerId,
    },
    /// A read ([`Effect::Read`]) ended: what came, or why nothing did.
    ReadDone {
        id: u64,
        answer: Result<ReadAnswer, Refusal>,
    },
    /// The timer of a read tried again fired.
    ReadRetryDue,
    /// The probe's answer.
    Probed(ProbeReply),
    /// A request of the runner's own (feed, load, sync job) ended:
    /// answered or not (counted as a request).
    RequestEnded(Answer),
    /// Another tab changed the user's work: IndexedDB holds this now.
    WorkStored(StoredWork),
    /// This tab gained leadership; what IndexedDB holds (orphans adopted).
    Leading(StoredWork),
    /// This tab stopped leading.
    NotLeading,
    /// The browser's network came or went (`online`/`offline` events).
    Network(bool),
    /// Focus or a visible page: try the server now if it was unreachable.
    Nudge,
    /// The token stopped working elsewhere (another tab, the server).
    SessionEnded,
    /// `close()`.
    Close,
    /// The start: IndexedDB was read (or cannot be used: all empty). The
    /// kept feed cursor, the user's work, and the records it is about.
    StorageOpened {
        cursor: Option<String>,
        work: StoredWork,
        records: Vec<(String, Record)>,
    },
    /// A record as it is now stored, read apart from the engine's own
    /// requests (a record read before a save, another tab's notice):
    /// what `view` shows follows it unless it is older.
    RecordRead {
        collection: String,
        change: RemoteChange,
        origin: Origin,
    },
    /// The feed's poll timer fired.
    FeedPollDue,
    /// `/api/events` said something.
    Stream(StreamSignal),
    /// A page of the changes feed, or why there is none.
    FeedRead(Result<FeedPage, Refusal>),
    /// `logout({ discard })`.
    Logout { discard: bool, caller: CallerId },
    /// The logout's wait for the outbox is over.
    LogoutDue,
    /// `POST /api/logout` answered, or not.
    Revoked(Result<(), Refusal>),
    /// `load(collection)` was called; `mark` is what IndexedDB keeps of an
    /// earlier full load of it, `size` the records a page the app asks
    /// for. Answered with [`Effect::LoadFrom`].
    LoadAsked {
        collection: String,
        mark: Option<LoadedMark>,
        size: Option<u32>,
    },
    /// [`Effect::Reload`] is carried out for `collection`: answered with
    /// [`Effect::LoadFrom`].
    ReloadAsked { collection: String },
    /// A run of records a read of `collection` from IndexedDB found:
    /// laid in (never over a newer version, never a record deleted while
    /// the read ran).
    StoredRecords {
        collection: String,
        records: Vec<Record>,
    },
    /// A read of `collection` from IndexedDB ended (`found`: it held
    /// records).
    StoredRead { collection: String, found: bool },
    /// The ids of `collection` IndexedDB holds ([`Effect::ReadStoredIds`]).
    StoredIds {
        collection: String,
        ids: Vec<String>,
    },
    /// A page of a full load of `collection` ([`Effect::ReadPage`]), or
    /// why there is none.
    PageRead {
        collection: String,
        page: Result<LoadPage, Refusal>,
    },
    /// Another tab asks the leader to say when it caught up.
    CatchUpAsked,
    /// The leader said it read the feed to its end.
    CaughtUpElsewhere,
}

/// Something the runner must do, in order.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Write these operations in one IndexedDB transaction and report
    /// [`Event::Written`] with this `id` (given by `handle`). `persisted`
    /// names the entry whose first write it is.
    Write {
        id: u64,
        ops: Vec<StoreOp>,
        persisted: Option<String>,
    },
    /// Send an outbox entry; report [`Event::Answered`].
    Send { entry: OutboxEntry, keepalive: bool },
    /// Settle these callers' promises.
    Settle {
        callers: Vec<CallerId>,
        result: Result<Outcome, Failure>,
    },
    /// Write what IndexedDB refused for lack of space, on its own; report
    /// [`Event::HeldWritten`] if it went in, [`Event::StoreFull`] if not.
    WriteHeld,
    /// Ask the server who the token belongs to; report [`Event::Probed`].
    Probe,
    /// Read a record or its history from the server; report
    /// [`Event::ReadDone`] with this `id` (the same for each try).
    Read { id: u64, target: ReadTarget },
    /// A record's view changed here.
    RecordChanged { key: RecordKey, origin: Origin },
    /// A conflict new to this tab.
    ConflictFound(Box<KeptConflict>),
    /// The undo list changed: the app hears `undoable`.
    UndoableChanged,
    /// A refusal for good new to this tab (the entry as `failed()` holds
    /// it): the app hears a `failed` event, once per refusal in each tab.
    FailureFound(Box<OutboxEntry>),
    /// Tell the user's other tabs that a record was committed.
    TellCommitted { key: RecordKey, version: u64 },
    /// Snapshots and status changed: drop them and tell subscribers.
    Changed,
    /// The session ended (401, another user's token).
    SessionEnded,
    /// An outbox drain ended: one line of the sync log.
    Drained(DrainReport),
    /// Read one page of the changes feed from `since`; report
    /// [`Event::FeedRead`].
    ReadFeed { since: String },
    /// Open `/api/events` from `since`; report what it says with
    /// [`Event::Stream`] (an [`StreamSignal::Error`] if it cannot be opened).
    OpenStream { since: String },
    /// Close `/api/events`.
    CloseStream,
    /// The feed's cursor expired: load these collections again (and
    /// report [`Event::ReloadAsked`] for each).
    Reload { collections: Vec<String> },
    /// Tell the user's other tabs that a collection was loaded again:
    /// they read it from IndexedDB.
    TellReloaded { collection: String },
    /// A read of the feed ended: one line of the sync log.
    Pulled(PullReport),
    /// Revoke the token (`POST /api/logout`); report [`Event::Revoked`].
    Revoke,
    /// The token is revoked: tell the other tabs and the app.
    LoggedOut,
    /// Where `load(collection)` answers from: IndexedDB (report
    /// [`Event::StoredRead`]) or every page from the server (the engine
    /// asks for them, and says [`Effect::LoadEnded`]).
    LoadFrom { collection: String, plan: LoadPlan },
    /// Read the ids of `collection` IndexedDB holds; report
    /// [`Event::StoredIds`].
    ReadStoredIds { collection: String },
    /// Read a page of `collection` from the server (`after` the last id of
    /// the page before); report [`Event::PageRead`].
    ReadPage {
        collection: String,
        after: Option<String>,
        size: u32,
    },
    /// A full load of `collection` holds this many records now (stored).
    LoadProgress { collection: String, loaded: u64 },
    /// A full load of `collection` ended: its callers hear it.
    LoadEnded { collection: String, end: LoadEnd },
    /// Ask the leader tab to say when it caught up.
    AskCatchUp,
    /// These collections are checked with the server now: `stale` goes,
    /// `status.lastSyncAt` moves. `here`: this tab read the feed (a line
    /// of the sync log; the other tabs are told).
    CaughtUp {
        collections: Vec<String>,
        here: bool,
    },
}

/// The engine's timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Timer {
    /// The next debounce deadline.
    Debounce,
    /// The next retry of a transient failure.
    Retry,
    /// The next probe of an unreachable server.
    Probe,
    /// The leader's next look at the changes feed.
    FeedPoll,
    /// The end of a logout's wait for the outbox.
    Logout,
    /// The next try of writes held for lack of space.
    Held,
    /// The next try of a load's page.
    Load,
    /// The next try of a read.
    Read,
}

/// One operation of an IndexedDB write.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq)]
pub enum StoreOp {
    /// Put the confirmed record.
    PutRecord { collection: String, record: Record },
    /// Delete the confirmed record.
    DeleteRecord(RecordKey),
    /// Put an entry in the outbox, or in the dead letters when its state
    /// is `failed` (taking it out of the other store).
    PutEntry(OutboxEntry),
    /// As `PutEntry`, only if the entry is still in the outbox store under
    /// the `Idempotency-Key` this tab sent (`if_key`): an entry another
    /// tab finished meanwhile is not brought back (found by the
    /// simulation: a retry's write revived a sent entry), and a stale copy
    /// does not undo another tab's merge, which gave the entry a new key
    /// (found by the simulation: the old key came back and was sent again).
    UpdateEntry { entry: OutboxEntry, if_key: String },
    /// Delete an entry from the outbox or the dead letters.
    DeleteEntry { mutation_id: String, failed: bool },
    /// Put a conflict.
    PutConflict(KeptConflict),
    /// Delete a conflict.
    DeleteConflict(String),
    /// Put an entry of the undo list.
    PutUndo(UndoEntry),
    /// Delete an entry of the undo list.
    DeleteUndo(String),
    /// Keep the changes feed's cursor (always in the write of the records
    /// it covers).
    PutCursor(String),
    /// Forget the changes feed's cursor.
    DeleteCursor,
    /// Keep the mark of a finished full load of `collection` (always in
    /// the write of its last page and the feed's cursor: a later visit
    /// trusts the three together or none).
    PutMark {
        collection: String,
        mark: LoadedMark,
    },
}

impl StoreOp {
    /// An entry done with for good (on the server, made a conflict, or
    /// discarded): out of the outbox and the dead letters both. Two tabs
    /// may send one entry under one key, and a server that keeps no
    /// refusal may answer them differently: a refusal for good in one tab
    /// and a commit in the other leaves no dead letter behind (found by
    /// the simulation: the commit cleared the outbox only, and one tab
    /// showed as failed a change the server had taken).
    pub(crate) fn entry_gone(mutation_id: &str) -> [StoreOp; 2] {
        [false, true].map(|failed| StoreOp::DeleteEntry {
            mutation_id: mutation_id.to_owned(),
            failed,
        })
    }
}

/// What one drain of the outbox did (a `push` line of the sync log).
#[derive(Debug, Clone, PartialEq)]
pub struct DrainReport {
    /// When it began, ms.
    pub since: u64,
    /// How long it took, ms.
    pub duration_ms: u64,
    /// Entries committed.
    pub pushed: u64,
    /// Entries merged and re-sent.
    pub merged: u64,
    /// Entries that became conflicts.
    pub conflicts: u64,
    /// Entries refused for good.
    pub failed: u64,
    /// The error of an entry still waiting, if any.
    pub error: Option<String>,
}

/// A small, seeded generator for ids (UUID v4 shaped): the runner seeds it
/// from `crypto.getRandomValues`, the simulation from its seed.
#[derive(Debug, Clone)]
pub struct IdSource(u64);

impl IdSource {
    /// A source from a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next_u64(&mut self) -> u64 {
        // SplitMix64.
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A sample in `[0, 1)` (retry jitter).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A fresh UUID v4.
    pub fn uuid(&mut self) -> String {
        let (a, b) = (self.next_u64(), self.next_u64());
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&a.to_le_bytes());
        bytes[8..].copy_from_slice(&b.to_le_bytes());
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        let mut out = String::with_capacity(36);
        for (i, b) in bytes.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                out.push('-');
            }
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0xf)] as char);
        }
        out
    }
}

/// The outbox drain under way.
#[derive(Debug, Clone)]
struct Drain {
    since: u64,
    at_start: ClientCounters,
}

/// The client's state and decisions; see the module docs.
pub struct ClientEngine {
    config: EngineConfig,
    /// The session's user.
    user: String,
    records: StagedRecords,
    outbox: Outbox,
    debounce: Debounce<RecordKey, SavePayload>,
    /// Callers waiting for each outbox entry.
    waiting: VecMap<String, Vec<CallerId>>,
    /// Fields re-sent after a merge, per entry.
    merged: VecMap<String, Vec<String>>,
    /// Entries not yet written to IndexedDB: never sent before they are.
    unpersisted: HashSet<String>,
    /// Entries whose write IndexedDB refused, held by the runner until
    /// there is room: another tab's re-read cannot know them, so they stay
    /// as this tab has them (found by the simulation: they were dropped as
    /// "sent elsewhere" and never sent).
    held: HashSet<String>,
    /// Writes not yet reported as written, in the order they were asked
    /// for, with the entry whose first write each is.
    unwritten: VecMap<u64, (Vec<StoreOp>, Option<String>)>,
    /// Writes the runner holds for lack of space, in the order made.
    held_writes: BTreeSet<u64>,
    next_write: u64,
    /// Entries on the wire here that another tab finished meanwhile (gone
    /// from IndexedDB): if their send fails, they are dropped, not retried
    /// (found by the simulation: such an entry stayed in memory for good).
    finished_elsewhere: HashSet<String>,
    /// Entries this tab made: it sends them itself, leader or not, so its
    /// callers hear the server's answer.
    own: HashSet<String>,
    /// Entries another tab made, and when this tab first saw them: shown
    /// here, sent by that tab; the leader sends them too once they waited
    /// [`ADOPT_AFTER_MS`] (their tab may have closed without a word; if it
    /// lives, the `Idempotency-Key` makes the two sends one).
    foreign: VecMap<String, u64>,
    /// Entries whose send should outlive the page.
    keepalive: HashSet<String>,
    conflicts: VecMap<String, KeptConflict>,
    /// The user's committed changes that can be taken back.
    undo: UndoList,
    counters: ClientCounters,
    drain: Option<Drain>,
    reach: Reachability,
    /// The server said the token is this session's user.
    verified: bool,
    leader: bool,
    closed: bool,
    expired: bool,
    ids: IdSource,
    /// Each timer's deadline.
    timers: VecMap<Timer, Option<u64>>,
    /// Other people's changes: the feed, its cursor and the stream.
    feed: feed::FeedFollower,
    /// A logout under way.
    logging_out: Option<session::LoggingOut>,
    /// When writes held for lack of space are tried again.
    held_retry_at: Option<u64>,
    /// The effects not yet taken by [`ClientEngine::poll_output`].
    outputs: output::Outputs,
    /// Where `load` answers from, and what is stale.
    local: local::LocalFirst,
    loads: Vec<load::FullLoad>,
    /// Reads callers wait for.
    reads: read::Reads,
}

impl ClientEngine {
    /// An engine for `user`'s session. `verified` says the server confirmed
    /// the token's user; `network` is `navigator.onLine`.
    pub fn new(
        config: EngineConfig,
        user: &str,
        verified: bool,
        network: bool,
        ids: IdSource,
    ) -> Self {
        Self {
            debounce: Debounce::new(config.debounce),
            config,
            user: user.to_owned(),
            records: StagedRecords::new(),
            outbox: Outbox::new(),
            waiting: VecMap::new(),
            merged: VecMap::new(),
            unpersisted: HashSet::new(),
            held: HashSet::new(),
            unwritten: VecMap::new(),
            held_writes: BTreeSet::new(),
            next_write: 0,
            finished_elsewhere: HashSet::new(),
            own: HashSet::new(),
            foreign: VecMap::new(),
            keepalive: HashSet::new(),
            conflicts: VecMap::new(),
            undo: UndoList::default(),
            counters: ClientCounters::default(),
            drain: None,
            reach: Reachability::new(network),
            verified,
            leader: false,
            closed: false,
            expired: false,
            ids,
            timers: VecMap::new(),
            feed: feed::FeedFollower::default(),
            logging_out: None,
            held_retry_at: None,
            outputs: output::Outputs::default(),
            local: local::LocalFirst::default(),
            loads: Vec::new(),
            reads: read::Reads::default(),
        }
    }

    /// The one entry point: what happened at `now`. What to do follows
    /// from [`ClientEngine::poll_output`], in order.
    pub fn handle(&mut self, event: Event, now: u64) {
        let effects = self.step(event, now);
        self.outputs.push(effects);
    }

    fn step(&mut self, event: Event, now: u64) -> Vec<Effect> {
        let mut out = Vec::new();
        if self.closed {
            // A closed client settles what still asks, and does nothing else.
            if let Some(caller) = event_caller(&event) {
                out.push(Effect::Settle {
                    callers: vec![caller],
                    result: Err(Failure::Closed),
                });
            }
            return out;
        }
        if self.logging_out.is_some() && is_change(&event) {
            // The token is on its way out: a change made now could not be
            // sent (found by the simulation: a save made during a logout
            // was lost with the session).
            if let Some(caller) = event_caller(&event) {
                out.push(Effect::Settle {
                    callers: vec![caller],
                    result: Err(Failure::Closed),
                });
            }
            return out;
        }
        // A timer that fired is no longer set, whether or not its time had
        // come by this clock (a browser may fire a little early): the next
        // deadline is set again below (found in a browser test: a debounce
        // fired 1 ms early was never set again).
        let fired = match &event {
            Event::DebounceDue => Some(Timer::Debounce),
            Event::RetryDue => Some(Timer::Retry),
            Event::ProbeDue => Some(Timer::Probe),
            Event::FeedPollDue => Some(Timer::FeedPoll),
            Event::LogoutDue => Some(Timer::Logout),
            Event::HeldDue => Some(Timer::Held),
            Event::LoadRetryDue => Some(Timer::Load),
            Event::ReadRetryDue => Some(Timer::Read),
            _ => None,
        };
        if let Some(timer) = fired {
            self.timers.remove(&timer);
        }
        match event {
            Event::Save {
                key,
                fields,
                caller,
            } => self.save(key, fields, caller, now, &mut out),
            Event::Comment { key, text, caller } => self.comment(key, text, caller, now, &mut out),
            Event::Create {
                key,
                fields,
                caller,
            } => self.create(key, fields, caller, now, &mut out),
            Event::Delete { key, caller } => self.delete(key, caller, now, &mut out),
            Event::Flush { keepalive } => self.flush(keepalive, now, &mut out),
            Event::Retry {
                mutation_id,
                caller,
            } => self.retry(&mutation_id, caller, now, &mut out),
            Event::Discard { mutation_id } => self.discard(&mutation_id, now, &mut out),
            Event::Resolve {
                conflict_id,
                chosen,
                caller,
            } => self.resolve(&conflict_id, &chosen, caller, now, &mut out),
            Event::Undo { target, caller } => self.undo(target, caller, now, &mut out),
            Event::ClaimLost { caller } => out.push(Effect::Settle {
                callers: vec![caller],
                result: Err(Failure::NotFound("already handled in another tab".into())),
            }),
            Event::DebounceDue => {
                for batch in self.debounce.due(now) {
                    self.dispatch(batch, false, now, &mut out);
                }
            }
            Event::RetryDue => {}
            Event::ProbeDue => self.probe_due(now, &mut out),
            Event::Written { id, written } => {
                self.outputs.written(id);
                self.load_written(id, &mut out);
                self.written(id, written);
            }
            Event::StoreFull => {
                self.held_retry_at.get_or_insert(now + HELD_RETRY_MS);
            }
            Event::HeldDue => {
                if self.held_retry_at.is_some() {
                    self.held_retry_at = Some(now + HELD_RETRY_MS);
                    out.push(Effect::WriteHeld);
                }
            }
            Event::HeldWritten => {
                self.held_retry_at = None;
                self.held.clear();
                for id in std::mem::take(&mut self.held_writes) {
                    // The other tabs were told of these records when IndexedDB
                    // did not have them yet: tell them again (found by the
                    // simulation: a tab kept the version before for good).
                    for op in self
                        .unwritten
                        .remove(&id)
                        .map(|(ops, _)| ops)
                        .unwrap_or_default()
                    {
                        if let StoreOp::PutRecord { collection, record } = op {
                            out.push(Effect::TellCommitted {
                                key: RecordKey::new(&collection, &record.id),
                                version: record.version,
                            });
                        }
                    }
                }
            }
            Event::Answered { mutation_id, reply } => {
                self.answered(&mutation_id, reply, now, &mut out)
            }
            Event::Read { target, caller } => {
                self.start_read(target, read::Reader::Caller(caller), &mut out)
            }
            Event::ReadDone { id, answer } => self.read_done(id, answer, now, &mut out),
            Event::ReadRetryDue => self.read_retry_due(now, &mut out),
            Event::Probed(reply) => self.probed(reply, now, &mut out),
            Event::RequestEnded(answer) => {
                self.counters.requests += 1;
                self.request_ended(answer, now, &mut out);
            }
            Event::WorkStored(work) => {
                let work = self.with_unwritten(work);
                self.work_stored(work, now, &mut out);
            }
            Event::Leading(work) => {
                let work = self.with_unwritten(work);
                // The feed is read at the next poll (within 2 s), or now
                // for collections shown from IndexedDB.
                let was = self.leader;
                self.lead(work, &mut out);
                if !was {
                    self.began_leading(now, &mut out);
                }
            }
            Event::NotLeading => {
                if self.leader {
                    self.leader = false;
                    self.stop_following(&mut out);
                    out.push(Effect::Changed);
                }
            }
            Event::Network(up) => self.network(up, now, &mut out),
            Event::Nudge => self.reach.nudge(now),
            Event::SessionEnded => self.session_ended(&mut out),
            Event::Close => self.close(&mut out),
            Event::StorageOpened {
                cursor,
                work,
                records,
            } => {
                for (collection, record) in records {
                    self.records
                        .apply_remote(&collection, RemoteChange::Put(record));
                }
                self.restore(work);
                self.storage_opened(cursor, now);
                if !self.verified {
                    // Not known to be this user's token: unreachable until
                    // the probe says whose it is, and the probe goes now.
                    self.request_ended(Answer::Unreachable, now, &mut out);
                    self.reach.nudge(now);
                }
            }
            Event::RecordRead {
                collection,
                change,
                origin,
            } => self.record_read(&collection, change, origin, &mut out),
            Event::FeedPollDue => self.feed_poll_due(now, &mut out),
            Event::Stream(signal) => self.stream_signal(signal, now, &mut out),
            Event::FeedRead(result) => self.feed_read(result, now, &mut out),
            Event::Logout { discard, caller } => self.logout(discard, caller, now, &mut out),
            Event::LogoutDue => {}
            Event::Revoked(result) => self.revoked(result, &mut out),
            Event::LoadAsked {
                collection,
                mark,
                size,
            } => self.load_asked(collection, mark, size, now, &mut out),
            Event::ReloadAsked { collection } => self.reload_asked(collection, now, &mut out),
            Event::StoredRead { collection, found } => {
                self.stored_read(&collection, found, now, &mut out)
            }
            Event::LoadRetryDue => self.page_retry_due(now, &mut out),
            Event::StoredRecords {
                collection,
                records,
            } => self.lay_stored(&collection, records),
            Event::StoredIds { collection, ids } => self.stored_ids(&collection, ids, &mut out),
            Event::PageRead { collection, page } => {
                self.page_read(&collection, page, now, &mut out)
            }
            Event::CatchUpAsked => self.catch_up_asked(now, &mut out),
            Event::CaughtUpElsewhere => self.caught_up_elsewhere(&mut out),
        }
        if !self.closed {
            self.pump(now, &mut out);
            self.logout_step(now, &mut out);
            self.set_timers(now);
        }
        self.number_writes(&mut out);
        out
    }

    /// A record as stored now, read apart from the feed: what `view`
    /// shows follows it unless it is older.
    fn record_read(
        &mut self,
        collection: &str,
        change: RemoteChange,
        origin: Origin,
        out: &mut Vec<Effect>,
    ) {
        let key = match &change {
            RemoteChange::Put(record) => RecordKey::new(collection, &record.id),
            RemoteChange::Delete { id, .. } => {
                let key = RecordKey::new(collection, id);
                self.local.gone(&key);
                key
            }
        };
        if self.records.apply_remote(collection, change) {
            out.push(Effect::Changed);
            out.push(Effect::RecordChanged { key, origin });
        }
    }

    /// Gives each write its id and keeps its operations until the runner
    /// says they are in IndexedDB: a re-read of IndexedDB made before then
    /// has them laid over it, so it never takes back what this tab decided
    /// (found by the simulation: a conflict whose write had not landed came
    /// back from a re-read as an entry no tab would send).
    fn number_writes(&mut self, out: &mut [Effect]) {
        for effect in out.iter_mut() {
            if let Effect::Write { id, ops, persisted } = effect {
                self.next_write += 1;
                *id = self.next_write;
                self.unwritten.insert(*id, (ops.clone(), persisted.clone()));
            }
        }
    }

    /// A write ended.
    fn written(&mut self, id: u64, written: bool) {
        let persisted = self.unwritten.get(&id).and_then(|(_, p)| p.clone());
        if let Some(mutation_id) = persisted {
            self.unpersisted.remove(&mutation_id);
            if !written {
                self.held.insert(mutation_id);
            }
        }
        if written {
            self.unwritten.remove(&id);
        } else {
            self.held_writes.insert(id);
        }
    }

    /// What IndexedDB will hold once this tab's writes land.
    fn with_unwritten(&self, mut work: StoredWork) -> StoredWork {
        for (ops, _) in self.unwritten.values() {
            work.overlay(ops);
        }
        work
    }

    /// Keeps each timer's deadline ([`ClientEngine::poll_timeout`] gives
    /// the earliest).
    fn set_timers(&mut self, now: u64) {
        let probe = self.reach.next_probe_at();
        let wanted = [
            (Timer::Debounce, self.debounce.next_deadline()),
            (Timer::Retry, self.next_send_at(now)),
            (Timer::Probe, probe),
            (Timer::FeedPoll, self.feed.next_poll()),
            (
                Timer::Logout,
                self.logging_out
                    .as_ref()
                    .and_then(session::LoggingOut::deadline),
            ),
            (Timer::Held, self.held_retry_at),
            (Timer::Load, self.next_page_try()),
            (Timer::Read, self.next_read_try()),
        ];
        for (timer, at) in wanted {
            self.timers.insert(timer, at);
        }
    }

    // ----- what the runner reads ---------------------------------------------

    /// The confirmed records and the staged changes.
    pub fn records(&self) -> &StagedRecords {
        &self.records
    }

    /// The outbox and dead letters.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// The kept conflicts.
    pub fn conflicts(&self) -> &VecMap<String, KeptConflict> {
        &self.conflicts
    }

    /// The user's committed changes, for `undoable()`.
    pub fn undo_list(&self) -> &UndoList {
        &self.undo
    }

    /// Where the changes feed was read up to.
    pub fn feed_cursor(&self) -> Option<&str> {
        self.feed.cursor()
    }

    /// Whether a read of the changes feed is under way.
    pub fn is_reading_feed(&self) -> bool {
        self.feed.is_reading()
    }

    /// The counters.
    pub fn counters(&self) -> &ClientCounters {
        &self.counters
    }

    /// Staged changes still waiting in the debounce window: not yet in
    /// the outbox (so `pending()` lists them apart, and `status.pending`
    /// counts them).
    pub fn debounced(
        &self,
    ) -> impl Iterator<Item = (&RecordKey, &crate::core::staged::StagedChange)> {
        let in_outbox: HashSet<(&str, &str)> = self
            .outbox
            .pending()
            .iter()
            .map(|e| (e.collection.as_str(), e.record_id.as_str()))
            .collect();
        self.records.staged_changes().filter(move |(key, change)| {
            change.state == crate::core::staged::StagedState::Staged
                && !change.fields.is_empty()
                && !in_outbox.contains(&(key.collection.as_str(), key.id.as_str()))
        })
    }

    /// Whether saves wait in the debounce window.
    pub fn is_debouncing(&self) -> bool {
        self.debounce.pending() > 0
    }

    /// Whether the server can be reached.
    pub fn is_online(&self) -> bool {
        self.reach.online()
    }

    /// Online, and the token is known to be this session's user.
    pub fn can_talk(&self) -> bool {
        self.reach.online() && self.verified && !self.expired
    }

    /// Whether this tab leads.
    pub fn is_leader(&self) -> bool {
        self.leader
    }

    /// Whether the session ended.
    pub fn is_expired(&self) -> bool {
        self.expired
    }

    /// Whether the client was closed.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Whether anything of the user's is left off the server here:
    /// debounced, queued, failed or a conflict.
    pub fn is_quiet(&self) -> bool {
        self.debounce.pending() == 0
            && self.outbox.entries().next().is_none()
            && self.conflicts.is_empty()
    }

    /// The session's user.
    pub fn user(&self) -> &str {
        &self.user
    }
}

#[cfg(test)]
impl ClientEngine {
    /// Alice's engine as a unit test opens it: IndexedDB read back with
    /// `cursor` and the `records` of `collection`, no work stored.
    pub(crate) fn opened(cursor: Option<&str>, collection: &str, records: Vec<Record>) -> Self {
        let mut e = ClientEngine::new(
            EngineConfig::default(),
            "alice",
            true,
            true,
            IdSource::new(7),
        );
        e.step(
            Event::StorageOpened {
                cursor: cursor.map(str::to_owned),
                work: StoredWork::default(),
                records: records
                    .into_iter()
                    .map(|r| (collection.to_owned(), r))
                    .collect(),
            },
            0,
        );
        e
    }

    /// Whether this tab made the entry.
    pub(crate) fn is_own(&self, mutation_id: &str) -> bool {
        self.own.contains(mutation_id)
    }

    /// How this tab sees an entry (the simulation's diagnostics).
    pub(crate) fn describe(&self, mutation_id: &str, now: u64) -> String {
        format!(
            "{:?} own {} foreign {:?} unpersisted {} leader {} can_talk {} next_send_at {:?} timers {:?}",
            self.outbox.get(mutation_id).map(|e| (e.state, e.retry_at_ms, e.attempts)),
            self.own.contains(mutation_id),
            self.foreign.get(mutation_id),
            self.unpersisted.contains(mutation_id),
            self.leader,
            self.can_talk(),
            self.next_send_at(now),
            self.timers,
        )
    }
}

/// The caller an app call carries, for settling it when closed.
/// A record's view changed here by this tab's own doing: the snapshots
/// go, and the app hears of the record.
fn changed_here(key: RecordKey, out: &mut Vec<Effect>) {
    out.push(Effect::Changed);
    out.push(Effect::RecordChanged {
        key,
        origin: Origin::Local,
    });
}

/// Whether the event is the app changing data. (`retry` and `resolve`
/// come after the runner claimed their entry in IndexedDB, so they go on.)
fn is_change(event: &Event) -> bool {
    matches!(
        event,
        Event::Save { .. }
            | Event::Comment { .. }
            | Event::Create { .. }
            | Event::Delete { .. }
            | Event::Discard { .. }
            | Event::Undo { .. }
    )
}

fn event_caller(event: &Event) -> Option<CallerId> {
    match event {
        Event::Save { caller, .. }
        | Event::Comment { caller, .. }
        | Event::Create { caller, .. }
        | Event::Delete { caller, .. }
        | Event::Retry { caller, .. }
        | Event::Resolve { caller, .. }
        | Event::Undo { caller, .. }
        | Event::Read { caller, .. }
        | Event::ClaimLost { caller }
        | Event::Logout { caller, .. } => Some(*caller),
        _ => None,
    }
}
