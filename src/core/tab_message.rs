//! What tabs of one user tell each other over the BroadcastChannel, and
//! the envelope around it.
//!
//! # The wire form
//!
//! One flat array per message, read by position:
//! `[v, tab, seq, kind, ...fields]`, where `kind` is a small number (see
//! [`TabMessage::kind`]) and the fields follow in the order the types below
//! list them. Only numbers (integers up to 2^53), strings and `null` occur,
//! except for the two kinds that carry a whole object (a sync state, a
//! record). Reading by position takes far less code than reading named
//! fields, and the module is shipped to every browser.
//!
//! Compatibility: fields added at the end by a newer build of the same
//! format are ignored by this one; a message of another format version
//! (an older build posted objects, `{ v: 1, ... }`) or of an unknown kind is
//! ignored and counted, never acted on.
//!
//! Everything read off the channel is untrusted (another build of the app,
//! a broken tab, a hostile script of the same origin): [`decode`] never
//! panics and names why it ignored a message. The lock protocol's own
//! messages ([`LockMessage`]) are one kind among the others; the lock table
//! itself is [`crate::core::election`].

use serde::de::DeserializeOwned;

use crate::core::election::{HandOff, LockEntry, LockMessage, LockSignal, TabId};
use crate::core::presence::{OpenRecord, Person};
use crate::core::progress::{SyncKind, SyncState};
use crate::core::record::{FieldValue, Record};

/// The envelope format of this build; messages of other formats are ignored.
/// 1 was the object form `{ v, tab, seq, kind, payload }`.
pub const FORMAT_VERSION: u64 = 2;

/// A record carried in a notice is at most about this many bytes of text;
/// a larger one is left for the receiver to read from IndexedDB.
pub const MAX_CARRIED_RECORD: usize = 8 * 1024;

/// A record committed in one tab. The others show `record` when it came
/// along and is the version named, else they read it from IndexedDB.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordChange {
    /// The collection.
    pub collection: String,
    /// The record id.
    pub id: String,
    /// The version now stored.
    pub version: u64,
    /// The record as stored, when small (see [`MAX_CARRIED_RECORD`]).
    pub record: Option<Box<Record>>,
}

impl RecordChange {
    /// A notice for `record` (or for a record gone, `None`), stored at
    /// `version`: the record rides along when it is that version and small.
    pub fn new(collection: &str, id: &str, version: u64, record: Option<&Record>) -> Self {
        let record = record
            .filter(|r| r.version == version && r.id == id && text_size(r) <= MAX_CARRIED_RECORD)
            .map(|r| Box::new(r.clone()));
        Self {
            collection: collection.to_owned(),
            id: id.to_owned(),
            version,
            record,
        }
    }

    /// The carried record, if it can stand for what IndexedDB holds: its id
    /// and version are the notice's. Anything else is left to a read.
    pub fn verified_record(self) -> Option<Record> {
        self.record
            .filter(|r| r.id == self.id && r.version == self.version)
            .map(|r| *r)
    }
}

/// About how many bytes of text a record is (its strings, plus a little
/// per value).
fn text_size(record: &Record) -> usize {
    let fields: usize = record
        .fields
        .iter()
        .map(|(k, v)| {
            k.len()
                + 8
                + match v {
                    FieldValue::Text(t) => t.len(),
                    _ => 8,
                }
        })
        .sum();
    let comments: usize = record
        .comments
        .iter()
        .map(|c| c.id.len() + c.author.len() + c.text.len() + c.created_at.len() + 16)
        .sum();
    record.id.len() + record.updated_at.len() + record.updated_by.len() + fields + comments + 32
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// A 401: the token no longer works.
    Expired,
    /// `crm.logout()`.
    LoggedOut,
}

/// The session notice every tab turns into a `session` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionNotice {
    /// How it ended.
    pub state: SessionEnd,
}

/// A tab changed the user's outbox, dead letters or conflicts in IndexedDB:
/// every other tab reads them again (the notice carries no data, so a lost
/// or forged one costs a read, never a wrong state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkNotice {}

/// A press in a tab that does not lead, forwarded to the leader, which
/// alone drives the sync reducer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncCommand {
    /// `crm.sync.start(kind)`.
    Start {
        /// Which way to copy.
        kind: crate::core::progress::SyncKind,
        /// The `Idempotency-Key` chosen where the press happened: every
        /// tab that carries the press out (a leader that died, its
        /// successor, a forward sent again) starts the job under it, so
        /// one press never starts two jobs. `None` from a build before
        /// keys were sent (or a key that is not one): the leader makes one.
        key: Option<String>,
    },
    /// `crm.sync.cancel()`.
    Cancel,
    /// `crm.sync.dismiss()`.
    Dismiss,
    /// `crm.sync.schedule(...)` changed the stored schedule: read it again.
    Reschedule,
    /// A tab that just opened asks the leader to send its sync state.
    Show,
}

/// Everything tabs tell each other.
#[derive(Debug, Clone, PartialEq)]
pub enum TabMessage {
    /// The lock protocol: `token, clock, signal, ...` (signal 0 request:
    /// `lock, stamp`; 1 hold: `lock, stamp, acquired`; 2 release: `lock,
    /// stamp[, next tab, next token, next stamp]`; 3 heartbeat: `lock,
    /// stamp, acquired or null` for each entry; 4 answer: `asker tab,
    /// asker token, asker stamp`, sent after a heartbeat).
    /// A build before answers reads signal 4 as malformed and ignores it.
    Lock(LockMessage),
    /// A record changed: `collection, id, version[, record]`.
    RecordChanged(RecordChange),
    /// The session ended: `0` expired, `1` logged out.
    Session(SessionNotice),
    /// The leader's sync state: one object.
    SyncState(Box<SyncState>),
    /// A follower's press for the leader: `0, "from-sheet" | "to-sheet"`
    /// (start), `1` cancel, `2` dismiss, `3` reschedule.
    SyncCommand(SyncCommand),
    /// The user's pending work changed: read it again (no fields).
    WorkChanged(WorkNotice),
    /// A collection was loaded again whole (the feed's cursor had
    /// expired): `collection`. Read it from IndexedDB.
    CollectionReloaded(String),
    /// A tab asked the browser to keep this origin's data (`crm.persist()`):
    /// ask the browser again whether it does (no fields; the browser's
    /// answer is the truth, so a forged notice costs one question).
    DurableChanged,
    /// A tab showing collections from IndexedDB asks the leader to say
    /// when it has read the changes feed to its end (no fields).
    CatchUpAsked,
    /// The leader read the changes feed to its end: what IndexedDB holds
    /// is checked with the server (no fields).
    CaughtUp,
    /// This tab's whole presence set: `collection, id, editing | null` for
    /// each record it has open (none: it has nothing open, or closed).
    PresenceSet(Vec<OpenRecord>),
    /// The leader heard who is on a record: `collection, id`, then `user,
    /// editing | null, since` for each person.
    PresencePeople {
        /// The collection.
        collection: String,
        /// The record's id.
        id: String,
        /// Everyone there.
        people: Vec<Person>,
    },
    /// A tab asks the others for their presence sets (no fields).
    PresenceHello,
}

impl TabMessage {
    /// The envelope's `kind` for this message: 0 lock, 1 record changed,
    /// 2 session, 3 sync state, 4 sync command, 5 work changed, 6 a
    /// collection loaded again, 7 persistent storage asked for, 8 a
    /// catch-up asked for, 9 caught up, 10 a presence set, 11 people on a
    /// record, 12 presence sets asked for.
    pub fn kind(&self) -> u64 {
        match self {
            Self::Lock(_) => 0,
            Self::RecordChanged(_) => 1,
            Self::Session(_) => 2,
            Self::SyncState(_) => 3,
            Self::SyncCommand(_) => 4,
            Self::WorkChanged(_) => 5,
            Self::CollectionReloaded(_) => 6,
            Self::DurableChanged => 7,
            Self::CatchUpAsked => 8,
            Self::CaughtUp => 9,
            Self::PresenceSet(_) => 10,
            Self::PresencePeople { .. } => 11,
            Self::PresenceHello => 12,
        }
    }
}

/// A message between tabs: `[v, tab, seq, kind, ...fields]` on the wire.
///
/// `seq` counts up per sender from 0, so a receiver can count gaps (lost
/// messages) and duplicates.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// The sender.
    pub tab: TabId,
    /// The sender's sequence number.
    pub seq: u64,
    /// What it says.
    pub message: TabMessage,
}

/// One item of the wire array.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// An integer (at most 2^53 - 1, so a JavaScript number holds it).
    Num(u64),
    /// A string.
    Text(String),
    /// `null`.
    Null,
    /// A sync state, as an object.
    SyncState(Box<SyncState>),
    /// A record, as an object.
    Record(Box<Record>),
}

fn text(s: &str) -> Item {
    Item::Text(s.to_owned())
}

/// Whether `key` can stand as a forwarded press's `Idempotency-Key`: a
/// header value of at most 64 letters, digits and dashes (a uuid is 36).
pub fn is_press_key(key: &str) -> bool {
    (1..=64).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn sync_kind_name(kind: SyncKind) -> &'static str {
    match kind {
        SyncKind::FromSheet => "from-sheet",
        SyncKind::ToSheet => "to-sheet",
    }
}

impl Envelope {
    /// The wire array.
    pub fn encode(&self) -> Vec<Item> {
        use Item::{Null, Num};
        let mut out = vec![
            Num(FORMAT_VERSION),
            Item::Text(self.tab.0.clone()),
            Num(self.seq),
            Num(self.message.kind()),
        ];
        match &self.message {
            TabMessage::Lock(m) => {
                out.extend([Num(m.token), Num(m.clock)]);
                match &m.signal {
                    LockSignal::Request { lock, stamp } => {
                        out.extend([Num(0), text(lock), Num(*stamp)]);
                    }
                    LockSignal::Hold {
                        lock,
                        stamp,
                        acquired,
                    } => out.extend([Num(1), text(lock), Num(*stamp), Num(*acquired)]),
                    LockSignal::Release { lock, stamp, next } => {
                        out.extend([Num(2), text(lock), Num(*stamp)]);
                        if let Some(n) = next {
                            out.extend([text(&n.tab.0), Num(n.token), Num(n.stamp)]);
                        }
                    }
                    LockSignal::Heartbeat { entries } => {
                        out.push(Num(3));
                        for e in entries {
                            out.extend([text(&e.lock), Num(e.stamp), e.acquired.map_or(Null, Num)]);
                        }
                    }
                    LockSignal::Answer { to } => {
                        out.extend([Num(4), text(&to.tab.0), Num(to.token), Num(to.stamp)]);
                    }
                }
            }
            TabMessage::RecordChanged(c) => {
                out.extend([text(&c.collection), text(&c.id), Num(c.version)]);
                if let Some(r) = &c.record {
                    out.push(Item::Record(r.clone()));
                }
            }
            TabMessage::Session(n) => out.push(Num(match n.state {
                SessionEnd::Expired => 0,
                SessionEnd::LoggedOut => 1,
            })),
            TabMessage::SyncState(s) => out.push(Item::SyncState(s.clone())),
            TabMessage::SyncCommand(c) => match c {
                SyncCommand::Start { kind, key } => {
                    out.extend([Num(0), text(sync_kind_name(*kind))]);
                    if let Some(key) = key {
                        out.push(text(key));
                    }
                }
                SyncCommand::Cancel => out.push(Num(1)),
                SyncCommand::Dismiss => out.push(Num(2)),
                SyncCommand::Reschedule => out.push(Num(3)),
                SyncCommand::Show => out.push(Num(4)),
            },
            TabMessage::WorkChanged(_)
            | TabMessage::DurableChanged
            | TabMessage::CatchUpAsked
            | TabMessage::CaughtUp
            | TabMessage::PresenceHello => {}
            TabMessage::PresenceSet(records) => {
                for r in records {
                    out.extend([
                        text(&r.collection),
                        text(&r.id),
                        r.editing.as_deref().map_or(Null, text),
                    ]);
                }
            }
            TabMessage::PresencePeople {
                collection,
                id,
                people,
            } => {
                out.extend([text(collection), text(id)]);
                for p in people {
                    out.extend([
                        text(&p.user),
                        p.editing.as_deref().map_or(Null, text),
                        text(&p.since),
                    ]);
                }
            }
            TabMessage::CollectionReloaded(collection) => out.push(text(collection)),
        }
        out
    }
}

/// A message as it came off the channel, not yet trusted: the web layer
/// implements this for a `JsValue`, tests for JSON. Every method answers
/// `None` for what is not there or not of its type, never panics.
pub trait UntrustedMessage {
    /// The number of items, if the message is an array.
    fn items(&self) -> Option<usize>;
    /// Item `i` as a whole number from 0 to 2^53 - 1.
    fn uint(&self, i: usize) -> Option<u64>;
    /// Item `i` as a string.
    fn text(&self, i: usize) -> Option<String>;
    /// Whether item `i` is `null` or `undefined` (or missing).
    fn is_null(&self, i: usize) -> bool;
    /// Item `i` read as a `T` (the two kinds that carry an object).
    fn read<T: DeserializeOwned>(&self, i: usize) -> Option<T>;
    /// The property `v` of an object message (the object form of format
    /// 1 and any other), to name the version of what is ignored.
    fn object_version(&self) -> Option<u64>;
}

/// Why a message was ignored; the caller counts these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// Not an envelope at all, or fields not of their kind's shape.
    Malformed,
    /// An envelope of an older format (a tab still running an older build).
    OlderVersion(u64),
    /// An envelope of a newer format (a tab already running a newer build).
    NewerVersion(u64),
    /// A kind this build does not know.
    UnknownKind,
    /// Sent by this very tab (another channel object of it).
    FromSelf,
}

/// Reads the items of a message in order.
struct Reader<'a, M> {
    raw: &'a M,
    at: usize,
}

impl<M: UntrustedMessage> Reader<'_, M> {
    fn uint(&mut self) -> Result<u64, Ignored> {
        self.at += 1;
        self.raw.uint(self.at - 1).ok_or(Ignored::Malformed)
    }
    fn text(&mut self) -> Result<String, Ignored> {
        self.at += 1;
        self.raw.text(self.at - 1).ok_or(Ignored::Malformed)
    }
    /// A number, or nothing for `null`.
    fn maybe_uint(&mut self) -> Result<Option<u64>, Ignored> {
        if self.raw.is_null(self.at) {
            self.at += 1;
            Ok(None)
        } else {
            self.uint().map(Some)
        }
    }
    fn more(&self, len: usize) -> bool {
        self.at < len
    }
    /// A string, or nothing for `null`.
    fn maybe_text(&mut self) -> Result<Option<String>, Ignored> {
        if self.raw.is_null(self.at) {
            self.at += 1;
            Ok(None)
        } else {
            self.text().map(Some)
        }
    }
}

/// Reads an envelope from untrusted input: never panics; anything not of
/// this build's format is an [`Ignored`] reason.
///
/// The version is read first and alone, so that a message of another
/// format is told apart from a broken one whatever its other items are.
pub fn decode(raw: &impl UntrustedMessage, own_tab: &TabId) -> Result<Envelope, Ignored> {
    let Some(len) = raw.items() else {
        return Err(raw
            .object_version()
            .map_or(Ignored::Malformed, Ignored::OlderVersion));
    };
    let v = raw.uint(0).ok_or(Ignored::Malformed)?;
    if v < FORMAT_VERSION {
        return Err(Ignored::OlderVersion(v));
    }
    if v > FORMAT_VERSION {
        return Err(Ignored::NewerVersion(v));
    }
    let mut r = Reader { raw, at: 1 };
    let tab = TabId(r.text()?);
    let seq = r.uint()?;
    let kind = r.uint()?;
    if &tab == own_tab {
        return Err(Ignored::FromSelf);
    }
    let message = match kind {
        0 => TabMessage::Lock(lock_message(&mut r, len)?),
        1 => {
            let collection = r.text()?;
            let id = r.text()?;
            let version = r.uint()?;
            // A record that does not read is left to IndexedDB.
            let record = raw.read::<Record>(r.at).map(Box::new);
            TabMessage::RecordChanged(RecordChange {
                collection,
                id,
                version,
                record,
            })
        }
        2 => TabMessage::Session(SessionNotice {
            state: match r.uint()? {
                0 => SessionEnd::Expired,
                1 => SessionEnd::LoggedOut,
                _ => return Err(Ignored::Malformed),
            },
        }),
        3 => TabMessage::SyncState(Box::new(raw.read(r.at).ok_or(Ignored::Malformed)?)),
        4 => TabMessage::SyncCommand(match r.uint()? {
            0 => SyncCommand::Start {
                kind: match r.text()?.as_str() {
                    "from-sheet" => SyncKind::FromSheet,
                    "to-sheet" => SyncKind::ToSheet,
                    _ => return Err(Ignored::Malformed),
                },
                // A build before keys sends none; a key that is not one
                // is dropped, and the leader makes its own.
                key: if r.more(len) {
                    r.maybe_text().ok().flatten().filter(|k| is_press_key(k))
                } else {
                    None
                },
            },
            1 => SyncCommand::Cancel,
            2 => SyncCommand::Dismiss,
            3 => SyncCommand::Reschedule,
            4 => SyncCommand::Show,
            _ => return Err(Ignored::Malformed),
        }),
        5 => TabMessage::WorkChanged(WorkNotice {}),
        6 => TabMessage::CollectionReloaded(r.text()?),
        7 => TabMessage::DurableChanged,
        8 => TabMessage::CatchUpAsked,
        9 => TabMessage::CaughtUp,
        10 => {
            let mut records = Vec::new();
            while r.more(len) && records.len() < crate::core::presence::MAX_OPEN {
                records.push(OpenRecord {
                    collection: r.text()?,
                    id: r.text()?,
                    editing: r.maybe_text()?,
                });
            }
            TabMessage::PresenceSet(records)
        }
        11 => {
            let collection = r.text()?;
            let id = r.text()?;
            let mut people = Vec::new();
            while r.more(len) && people.len() < 1_000 {
                people.push(Person {
                    user: r.text()?,
                    editing: r.maybe_text()?,
                    since: r.text()?,
                });
            }
            TabMessage::PresencePeople {
                collection,
                id,
                people,
            }
        }
        12 => TabMessage::PresenceHello,
        _ => return Err(Ignored::UnknownKind),
    };
    Ok(Envelope { tab, seq, message })
}

/// A heartbeat lists at most this many entries (what the lock table keeps
/// of a peer); the rest of a longer one is not read.
const MAX_ENTRIES: usize = 64;

/// A request named by tab, token and stamp (a hand-off, an answer's asker).
fn read_hand_off<M: UntrustedMessage>(r: &mut Reader<'_, M>) -> Result<HandOff, Ignored> {
    Ok(HandOff {
        tab: TabId(r.text()?),
        token: r.uint()?,
        stamp: r.uint()?,
    })
}

fn lock_message<M: UntrustedMessage>(
    r: &mut Reader<'_, M>,
    len: usize,
) -> Result<LockMessage, Ignored> {
    let token = r.uint()?;
    let clock = r.uint()?;
    let signal = match r.uint()? {
        0 => LockSignal::Request {
            lock: r.text()?,
            stamp: r.uint()?,
        },
        1 => LockSignal::Hold {
            lock: r.text()?,
            stamp: r.uint()?,
            acquired: r.uint()?,
        },
        2 => {
            let lock = r.text()?;
            let stamp = r.uint()?;
            let next = if r.raw.text(r.at).is_some() {
                Some(read_hand_off(r)?)
            } else {
                None
            };
            LockSignal::Release { lock, stamp, next }
        }
        3 => {
            let mut entries = Vec::new();
            while r.more(len) && entries.len() < MAX_ENTRIES {
                if r.at + 3 > len {
                    return Err(Ignored::Malformed);
                }
                entries.push(LockEntry {
                    lock: r.text()?,
                    stamp: r.uint()?,
                    acquired: r.maybe_uint()?,
                });
            }
            LockSignal::Heartbeat { entries }
        }
        4 => LockSignal::Answer {
            to: read_hand_off(r)?,
        },
        _ => return Err(Ignored::Malformed),
    };
    Ok(LockMessage {
        token,
        clock,
        signal,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::election::{LockEntry, LockSignal};
    use serde_json::{json, Value};

    struct Json(Value);

    impl UntrustedMessage for Json {
        fn items(&self) -> Option<usize> {
            self.0.as_array().map(Vec::len)
        }
        fn uint(&self, i: usize) -> Option<u64> {
            self.0.get(i)?.as_u64().filter(|n| *n < 1 << 53)
        }
        fn text(&self, i: usize) -> Option<String> {
            self.0.get(i)?.as_str().map(str::to_owned)
        }
        fn is_null(&self, i: usize) -> bool {
            self.0.get(i).is_none_or(Value::is_null)
        }
        fn read<T: DeserializeOwned>(&self, i: usize) -> Option<T> {
            serde_json::from_value(self.0.get(i)?.clone()).ok()
        }
        fn object_version(&self) -> Option<u64> {
            self.0.as_object()?.get("v")?.as_u64()
        }
    }

    fn json(envelope: &Envelope) -> Value {
        Value::Array(
            envelope
                .encode()
                .into_iter()
                .map(|item| match item {
                    Item::Num(n) => json!(n),
                    Item::Text(t) => json!(t),
                    Item::Null => Value::Null,
                    Item::SyncState(s) => serde_json::to_value(s).unwrap(),
                    Item::Record(r) => serde_json::to_value(r).unwrap(),
                })
                .collect(),
        )
    }

    fn record(id: &str, version: u64, city: &str) -> Record {
        let mut r = Record::empty(id);
        r.version = version;
        r.fields
            .insert("city".to_owned(), FieldValue::Text(city.to_owned()));
        r
    }

    fn lock(signal: LockSignal) -> TabMessage {
        TabMessage::Lock(LockMessage {
            token: 3,
            clock: 9,
            signal,
        })
    }

    #[test]
    fn every_kind_goes_through_the_envelope_and_back() {
        let me = TabId("me".into());
        let messages = vec![
            lock(LockSignal::Heartbeat {
                entries: vec![
                    LockEntry {
                        lock: "x".into(),
                        stamp: 1,
                        acquired: Some(2),
                    },
                    LockEntry {
                        lock: "y".into(),
                        stamp: 4,
                        acquired: None,
                    },
                ],
            }),
            lock(LockSignal::Heartbeat { entries: vec![] }),
            lock(LockSignal::Request {
                lock: "x".into(),
                stamp: 5,
            }),
            lock(LockSignal::Hold {
                lock: "x".into(),
                stamp: 5,
                acquired: 6,
            }),
            lock(LockSignal::Release {
                lock: "x".into(),
                stamp: 5,
                next: None,
            }),
            lock(LockSignal::Release {
                lock: "x".into(),
                stamp: 5,
                next: Some(HandOff {
                    tab: TabId("n".into()),
                    token: (1 << 53) - 1,
                    stamp: 7,
                }),
            }),
            lock(LockSignal::Answer {
                to: HandOff {
                    tab: TabId("asker".into()),
                    token: 11,
                    stamp: 12,
                },
            }),
            TabMessage::RecordChanged(RecordChange::new("customers", "c1", 4, None)),
            TabMessage::RecordChanged(RecordChange::new(
                "customers",
                "c1",
                4,
                Some(&record("c1", 4, "Lyon")),
            )),
            TabMessage::Session(SessionNotice {
                state: SessionEnd::LoggedOut,
            }),
            TabMessage::Session(SessionNotice {
                state: SessionEnd::Expired,
            }),
            TabMessage::SyncState(Box::default()),
            TabMessage::SyncCommand(SyncCommand::Start {
                kind: SyncKind::ToSheet,
                key: None,
            }),
            TabMessage::SyncCommand(SyncCommand::Start {
                kind: SyncKind::FromSheet,
                key: Some("0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0".into()),
            }),
            TabMessage::SyncCommand(SyncCommand::Cancel),
            TabMessage::SyncCommand(SyncCommand::Dismiss),
            TabMessage::SyncCommand(SyncCommand::Reschedule),
            TabMessage::SyncCommand(SyncCommand::Show),
            TabMessage::WorkChanged(WorkNotice {}),
            TabMessage::DurableChanged,
            TabMessage::CatchUpAsked,
            TabMessage::CaughtUp,
            TabMessage::PresenceSet(vec![]),
            TabMessage::PresenceSet(vec![
                OpenRecord {
                    collection: "customers".into(),
                    id: "c1".into(),
                    editing: Some("city".into()),
                },
                OpenRecord {
                    collection: "deals".into(),
                    id: "d1".into(),
                    editing: None,
                },
            ]),
            TabMessage::PresencePeople {
                collection: "customers".into(),
                id: "c1".into(),
                people: vec![
                    Person {
                        user: "bob".into(),
                        editing: None,
                        since: "2026-01-02T09:00:00.000Z".into(),
                    },
                    Person {
                        user: "carol".into(),
                        editing: Some("city".into()),
                        since: "2026-01-02T09:00:01.000Z".into(),
                    },
                ],
            },
            TabMessage::PresenceHello,
        ];
        for (seq, message) in messages.into_iter().enumerate() {
            let envelope = Envelope {
                tab: TabId("other".into()),
                seq: seq as u64,
                message,
            };
            let value = json(&envelope);
            assert_eq!(value[0], 2);
            assert_eq!(value[3], envelope.message.kind());
            assert_eq!(decode(&Json(value), &me), Ok(envelope));
        }
    }

    #[test]
    fn a_broken_presence_message_is_ignored_never_half_read() {
        let me = TabId("me".into());
        for bad in [
            json!([2, "t", 1, 10, "customers"]),
            json!([2, "t", 1, 10, "customers", "c1", 7]),
            json!([2, "t", 1, 11, "customers"]),
            json!([2, "t", 1, 11, "customers", "c1", "bob", null]),
            json!([2, "t", 1, 11, "customers", "c1", 3, null, "t"]),
        ] {
            assert_eq!(
                decode(&Json(bad.clone()), &me),
                Err(Ignored::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_start_without_a_key_or_with_a_bad_one_reads_as_keyless() {
        let me = TabId("me".into());
        let start = |key: Option<&str>| {
            Ok(TabMessage::SyncCommand(SyncCommand::Start {
                kind: SyncKind::ToSheet,
                key: key.map(str::to_owned),
            }))
        };
        let long = "k".repeat(65);
        for (raw, read) in [
            // An older build's press: the leader makes the key.
            (json!([2, "t", 1, 4, 0, "to-sheet"]), start(None)),
            (json!([2, "t", 1, 4, 0, "to-sheet", null]), start(None)),
            (json!([2, "t", 1, 4, 0, "to-sheet", 7]), start(None)),
            (json!([2, "t", 1, 4, 0, "to-sheet", ""]), start(None)),
            (json!([2, "t", 1, 4, 0, "to-sheet", "a\r\nb"]), start(None)),
            (json!([2, "t", 1, 4, 0, "to-sheet", long]), start(None)),
            (
                json!([2, "t", 1, 4, 0, "to-sheet", "ab-12"]),
                start(Some("ab-12")),
            ),
        ] {
            assert_eq!(
                decode(&Json(raw.clone()), &me).map(|e| e.message),
                read,
                "{raw}"
            );
        }
    }

    #[test]
    fn the_wire_shape_is_a_flat_array() {
        let envelope = Envelope {
            tab: TabId("t1".into()),
            seq: 5,
            message: TabMessage::Session(SessionNotice {
                state: SessionEnd::Expired,
            }),
        };
        assert_eq!(json(&envelope), json!([2, "t1", 5, 2, 0]));
        let hold = Envelope {
            tab: TabId("t1".into()),
            seq: 6,
            message: lock(LockSignal::Heartbeat {
                entries: vec![LockEntry {
                    lock: "x".into(),
                    stamp: 1,
                    acquired: None,
                }],
            }),
        };
        assert_eq!(json(&hold), json!([2, "t1", 6, 0, 3, 9, 3, "x", 1, null]));
    }

    #[test]
    fn a_small_record_rides_along_and_a_large_or_other_one_does_not() {
        let small = record("c1", 4, "Lyon");
        let change = RecordChange::new("customers", "c1", 4, Some(&small));
        assert_eq!(change.clone().verified_record(), Some(small.clone()));
        // Another version than the notice's, or another id: not carried.
        assert_eq!(
            RecordChange::new("customers", "c1", 5, Some(&small)).record,
            None
        );
        assert_eq!(
            RecordChange::new("customers", "c2", 4, Some(&small)).record,
            None
        );
        let large = record("c1", 4, &"x".repeat(MAX_CARRIED_RECORD));
        assert_eq!(
            RecordChange::new("customers", "c1", 4, Some(&large)).record,
            None
        );
        // A forged notice whose record is not the version it names: only
        // the notice is taken, the record is left to IndexedDB.
        let forged = json!([
            2,
            "t",
            1,
            1,
            "customers",
            "c1",
            5,
            serde_json::to_value(&small).unwrap()
        ]);
        let Ok(Envelope {
            message: TabMessage::RecordChanged(change),
            ..
        }) = decode(&Json(forged), &TabId("me".into()))
        else {
            panic!("not a record notice");
        };
        assert_eq!(change.version, 5);
        assert_eq!(change.verified_record(), None);
        // A record that does not read is dropped, the notice kept.
        let broken = json!([2, "t", 1, 1, "customers", "c1", 5, { "id": 7 }]);
        let decoded = decode(&Json(broken), &TabId("me".into()));
        assert!(matches!(
            decoded,
            Ok(Envelope {
                message: TabMessage::RecordChanged(RecordChange { record: None, .. }),
                ..
            })
        ));
    }

    #[test]
    fn fields_a_newer_build_appends_are_ignored() {
        let me = TabId("me".into());
        let with_more = json!([2, "t", 1, 2, 1, "a field of a newer build", { "x": 1 }]);
        assert_eq!(
            decode(&Json(with_more), &me),
            Ok(Envelope {
                tab: TabId("t".into()),
                seq: 1,
                message: TabMessage::Session(SessionNotice {
                    state: SessionEnd::LoggedOut
                })
            })
        );
    }

    #[test]
    fn untrusted_input_is_ignored_with_a_reason() {
        let me = TabId("me".into());
        let cases = [
            (json!(null), Ignored::Malformed),
            (json!(42), Ignored::Malformed),
            (json!("hello"), Ignored::Malformed),
            (json!([]), Ignored::Malformed),
            (json!({}), Ignored::Malformed),
            (json!(["2"]), Ignored::Malformed),
            (json!([-1]), Ignored::Malformed),
            (json!([2.5, "t"]), Ignored::Malformed),
            (json!([1, 2]), Ignored::OlderVersion(1)),
            (json!([0, "anything"]), Ignored::OlderVersion(0)),
            (json!([3, { "renamed": true }]), Ignored::NewerVersion(3)),
            // What a tab of the object format (1) posts.
            (
                json!({ "v": 1, "tab": "t", "seq": 1, "kind": "session", "payload": { "state": "expired" } }),
                Ignored::OlderVersion(1),
            ),
            (
                json!({ "v": 1, "tab": "t", "seq": 1, "kind": "lock", "payload": { "token": 1, "clock": 1, "signal": { "type": "request", "lock": "x", "stamp": 1 } } }),
                Ignored::OlderVersion(1),
            ),
            (json!([2, "t"]), Ignored::Malformed),
            (json!([2, "t", 1]), Ignored::Malformed),
            (json!([2, 7, 1, 2, 0]), Ignored::Malformed),
            (json!([2, "t", "one", 2, 0]), Ignored::Malformed),
            (json!([2, "t", 1, 99]), Ignored::UnknownKind),
            (json!([2, "t", 1, "lock"]), Ignored::Malformed),
            (json!([2, "t", 1, 2]), Ignored::Malformed),
            (json!([2, "t", 1, 2, 7]), Ignored::Malformed),
            (json!([2, "t", 1, 0, 1, 1, 9, "x", 1]), Ignored::Malformed),
            (json!([2, "t", 1, 0, 1, 1, 0, "x"]), Ignored::Malformed),
            (json!([2, "t", 1, 0, 1, 1, 1, "x", 1]), Ignored::Malformed),
            (json!([2, "t", 1, 0, 1, 1, 3, "x", 1]), Ignored::Malformed),
            (
                json!([2, "t", 1, 0, 1, 1, 3, "x", 1, "two"]),
                Ignored::Malformed,
            ),
            (
                json!([2, "t", 1, 0, 1, 1, 2, "x", 1, "n", 1]),
                Ignored::Malformed,
            ),
            (json!([2, "t", 1, 0, -1, 1, 0, "x", 1]), Ignored::Malformed),
            // Answers name the asker whole. A signal this build does not
            // know (as 4 is to a build before answers) is malformed, never
            // acted on.
            (json!([2, "t", 1, 0, 1, 1, 4, "a", 1]), Ignored::Malformed),
            (json!([2, "t", 1, 0, 1, 1, 4, 5, 1, 2]), Ignored::Malformed),
            (
                json!([2, "t", 1, 0, 1, 1, 5, "a", 1, 2]),
                Ignored::Malformed,
            ),
            (
                json!([2, "t", 1, 0, 9_007_199_254_740_992u64, 1, 0, "x", 1]),
                Ignored::Malformed,
            ),
            (json!([2, "t", 1, 1, "c", "i", -3]), Ignored::Malformed),
            (json!([2, "t", 1, 3, "not a state"]), Ignored::Malformed),
            (json!([2, "t", 1, 4, 0, "sideways"]), Ignored::Malformed),
            (json!([2, "t", 1, 4, 5]), Ignored::Malformed),
            (json!([2, "me", 1, 2, 0]), Ignored::FromSelf),
        ];
        for (value, reason) in cases {
            assert_eq!(decode(&Json(value.clone()), &me), Err(reason), "{value}");
        }
    }
}
