//! The one runner: what each of the engine's outputs asks of the world,
//! and what a failed request means to the engine, written once for every
//! driver. The browser (`web::client`) and the simulation (`sim/runner.rs`)
//! each implement [`Io`] (fetch, IndexedDB, the tab channel, timers, the
//! app) and report what the world did as the engine's events through
//! [`handle`] and [`handle_timeout`]; the order of outputs, the one timer
//! and which effect becomes which I/O are this file's, so what the
//! simulation runs is what the page runs.
//!
//! An [`Io`] call starts something and returns; its completion comes
//! later as one event (a browser spawns one future per call that makes a
//! request, and that future only awaits the I/O and reports it).

use super::{ClientEngine, Effect, Event, ProbeReply, ReadTarget, Refusal, Reply, StoreOp};
use crate::core::code::ErrorCode;
use crate::core::outbox::OutboxEntry;
use crate::core::record::RecordKey;

/// A request of the engine's to the server (made and moved once, never
/// kept in bulk: not boxed).
#[allow(missing_docs, clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// An outbox entry, with its `Idempotency-Key`; report
    /// [`Event::Answered`].
    Entry { entry: OutboxEntry, keepalive: bool },
    /// `GET /api/me`: who the token belongs to; report [`Event::Probed`].
    Probe,
    /// A record or its history; report [`Event::ReadDone`] with `id`.
    Read { id: u64, target: ReadTarget },
    /// One page of the changes feed from `since`; report
    /// [`Event::FeedRead`].
    Feed { since: String },
    /// `POST /api/logout`; report [`Event::Revoked`].
    Revoke,
    /// One page of a collection's load; report [`Event::PageRead`].
    Page {
        collection: String,
        after: Option<String>,
        size: u32,
    },
}

impl Request {
    /// The event a request that ended without a 2xx reports: `refusal`
    /// says how it ended (no answer, a status, a body that is not the
    /// protocol's). The engine decides what each means (a 401 to a revoke
    /// found the token forgotten already, which is what it asked for).
    pub fn failed(self, refusal: Refusal) -> Event {
        match self {
            Request::Entry { entry, .. } => Event::Answered {
                mutation_id: entry.mutation_id,
                reply: Reply::Refused(refusal),
            },
            Request::Probe => Event::Probed(match (refusal.code, refusal.status) {
                (ErrorCode::Unauthorized, _) => ProbeReply::Unauthorized,
                (_, Some(status)) => ProbeReply::Status(status),
                (ErrorCode::BadResponse, None) => ProbeReply::Garbled,
                (_, None) => ProbeReply::Unreachable,
            }),
            Request::Read { id, .. } => Event::ReadDone {
                id,
                answer: Err(refusal),
            },
            Request::Feed { .. } => Event::FeedRead(Err(refusal)),
            Request::Revoke => Event::Revoked(Err(refusal)),
            Request::Page { collection, .. } => Event::PageRead {
                collection,
                page: Err(refusal),
            },
        }
    }
}

/// A message to the user's other tabs.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq)]
pub enum Post {
    /// A record was committed at `version`: read it again.
    Committed { key: RecordKey, version: u64 },
    /// A collection was loaded again: read it from IndexedDB.
    Reloaded { collection: String },
    /// The token is revoked: log out too.
    LoggedOut,
    /// The leader read the changes feed to its end.
    CaughtUp,
    /// A follower asks the leader to say when it caught up.
    CatchUpAsked,
}

/// The world as the engine's outputs need it. Every call returns at once;
/// what it started ends later with an event handed to [`handle`].
pub trait Io {
    /// The time, ms since the epoch.
    fn now(&self) -> u64;
    /// Runs `f` on the engine, if there still is one.
    fn with_engine<R>(&mut self, f: impl FnOnce(&mut ClientEngine) -> R) -> Option<R>;
    /// Writes `ops` in one IndexedDB transaction, after the writes held
    /// for lack of space; report [`Event::Written`] with `id`, and
    /// [`Event::StoreFull`] or [`Event::HeldWritten`] as the held writes
    /// go.
    fn write(&mut self, id: u64, ops: Vec<StoreOp>);
    /// Writes the held writes on their own; report [`Event::HeldWritten`]
    /// or [`Event::StoreFull`].
    fn write_held(&mut self);
    /// Sends a request; report its event (a failure as
    /// [`Request::failed`] says).
    fn request(&mut self, request: Request);
    /// Opens `/api/events` from `since`; report what it says as
    /// [`Event::Stream`].
    fn open_stream(&mut self, since: String);
    /// Closes `/api/events`.
    fn close_stream(&mut self);
    /// Reads the ids of `collection` IndexedDB holds; report
    /// [`Event::StoredIds`].
    fn read_stored_ids(&mut self, collection: String);
    /// Loads these collections again; report [`Event::ReloadAsked`] for
    /// each.
    fn reload(&mut self, collections: Vec<String>);
    /// Tells the user's other tabs.
    fn post(&mut self, post: Post);
    /// The app's part of an effect that asks nothing of the world:
    /// [`Effect::Settle`], [`Effect::RecordChanged`], [`Effect::Changed`],
    /// [`Effect::ConflictFound`], [`Effect::UndoableChanged`],
    /// [`Effect::FailureFound`], [`Effect::SessionEnded`],
    /// [`Effect::Drained`], [`Effect::Pulled`], [`Effect::LoadFrom`],
    /// [`Effect::LoadProgress`], [`Effect::LoadEnded`],
    /// [`Effect::LoggedOut`] and [`Effect::CaughtUp`].
    fn tell(&mut self, effect: Effect);
    /// Snapshots changed ([`Effect::Changed`]): the app hears the status,
    /// once for a run of changes, before a write and at the end.
    fn status_changed(&mut self);
    /// The deadline the timer is set at.
    fn timer(&self) -> Option<u64>;
    /// Sets the one timer at `at` (or none); when it fires, call
    /// [`handle_timeout`].
    fn set_timer(&mut self, at: Option<u64>);
}

/// Hands `event` to the engine and carries out what follows.
pub fn handle(io: &mut impl Io, event: Event) {
    let now = io.now();
    if io.with_engine(|engine| engine.handle(event, now)).is_some() {
        run(io);
    }
}

/// The timer fired: the deadlines that came are handled.
pub fn handle_timeout(io: &mut impl Io) {
    let now = io.now();
    if io
        .with_engine(|engine| engine.handle_timeout(now))
        .is_some()
    {
        run(io);
    }
}

/// Carries out the engine's outputs in the order it gives them (it holds
/// back what follows a write until [`Event::Written`]), and keeps the one
/// timer at its next deadline.
pub fn run(io: &mut impl Io) {
    let mut changed = false;
    while let Some(effect) = io.with_engine(ClientEngine::poll_output).flatten() {
        match effect {
            Effect::Write { id, ops, .. } => {
                if std::mem::take(&mut changed) {
                    io.status_changed();
                }
                io.write(id, ops);
            }
            Effect::WriteHeld => io.write_held(),
            Effect::Send { entry, keepalive } => io.request(Request::Entry { entry, keepalive }),
            Effect::Probe => io.request(Request::Probe),
            Effect::Read { id, target } => io.request(Request::Read { id, target }),
            Effect::ReadFeed { since } => io.request(Request::Feed { since }),
            Effect::Revoke => io.request(Request::Revoke),
            Effect::ReadPage {
                collection,
                after,
                size,
            } => io.request(Request::Page {
                collection,
                after,
                size,
            }),
            Effect::ReadStoredIds { collection } => io.read_stored_ids(collection),
            Effect::OpenStream { since } => io.open_stream(since),
            Effect::CloseStream => io.close_stream(),
            Effect::Reload { collections } => io.reload(collections),
            Effect::TellCommitted { key, version } => io.post(Post::Committed { key, version }),
            Effect::TellReloaded { collection } => io.post(Post::Reloaded { collection }),
            Effect::AskCatchUp => io.post(Post::CatchUpAsked),
            Effect::LoggedOut => {
                io.post(Post::LoggedOut);
                io.tell(Effect::LoggedOut);
            }
            Effect::CaughtUp { collections, here } => {
                if here {
                    io.post(Post::CaughtUp);
                }
                io.tell(Effect::CaughtUp { collections, here });
            }
            Effect::Changed => {
                io.tell(Effect::Changed);
                changed = true;
            }
            notice => io.tell(notice),
        }
    }
    if changed {
        io.status_changed();
    }
    if let Some(at) = io.with_engine(|engine| engine.poll_timeout()) {
        if at != io.timer() {
            io.set_timer(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::engine::{EngineConfig, IdSource, StoredWork};
    use crate::core::record::{FieldValue, Fields, Record};

    /// An [`Io`] that keeps what it was asked, in order.
    struct Recorder {
        engine: ClientEngine,
        now: u64,
        timer: Option<u64>,
        calls: Vec<String>,
    }

    impl Io for Recorder {
        fn now(&self) -> u64 {
            self.now
        }
        fn with_engine<R>(&mut self, f: impl FnOnce(&mut ClientEngine) -> R) -> Option<R> {
            Some(f(&mut self.engine))
        }
        fn write(&mut self, id: u64, _ops: Vec<StoreOp>) {
            self.calls.push(format!("write {id}"));
        }
        fn write_held(&mut self) {
            self.calls.push("write held".into());
        }
        fn request(&mut self, request: Request) {
            let name = match request {
                Request::Entry { entry, .. } => format!("send {}", entry.record_id),
                other => format!("{other:?}"),
            };
            self.calls.push(name);
        }
        fn open_stream(&mut self, _since: String) {
            self.calls.push("open stream".into());
        }
        fn close_stream(&mut self) {
            self.calls.push("close stream".into());
        }
        fn read_stored_ids(&mut self, collection: String) {
            self.calls.push(format!("ids {collection}"));
        }
        fn reload(&mut self, collections: Vec<String>) {
            self.calls.push(format!("reload {collections:?}"));
        }
        fn post(&mut self, post: Post) {
            self.calls.push(format!("post {post:?}"));
        }
        fn tell(&mut self, effect: Effect) {
            let name = match effect {
                Effect::Settle { callers, .. } => format!("settle {callers:?}"),
                Effect::Changed => "changed".into(),
                _ => return,
            };
            self.calls.push(name);
        }
        fn status_changed(&mut self) {
            self.calls.push("status".into());
        }
        fn timer(&self) -> Option<u64> {
            self.timer
        }
        fn set_timer(&mut self, at: Option<u64>) {
            self.calls.push(format!("timer {at:?}"));
            self.timer = at;
        }
    }

    fn refusal(code: ErrorCode, status: Option<u16>) -> Refusal {
        Refusal {
            status,
            code,
            transient: status.is_none(),
            retry_after_ms: None,
            message: String::new(),
            current: None,
            details: None,
        }
    }

    #[test]
    fn a_probe_that_failed_says_how() {
        let probed = |code, status| match Request::Probe.failed(refusal(code, status)) {
            Event::Probed(reply) => reply,
            other => panic!("not a probe's answer: {other:?}"),
        };
        assert_eq!(
            probed(ErrorCode::Unauthorized, Some(401)),
            ProbeReply::Unauthorized
        );
        assert_eq!(
            probed(ErrorCode::Server, Some(503)),
            ProbeReply::Status(503)
        );
        assert_eq!(probed(ErrorCode::BadResponse, None), ProbeReply::Garbled);
        assert_eq!(probed(ErrorCode::Timeout, None), ProbeReply::Unreachable);
    }

    #[test]
    fn a_save_is_written_then_sent_and_the_timer_set_once_per_deadline() {
        let config = EngineConfig::default();
        let engine = ClientEngine::new(config, "alice", true, true, IdSource::new(7));
        let mut io = Recorder {
            engine,
            now: 0,
            timer: None,
            calls: Vec::new(),
        };
        let mut record = Record::empty("c1");
        record.version = 1;
        handle(
            &mut io,
            Event::StorageOpened {
                cursor: None,
                work: StoredWork::default(),
                records: vec![("customers".into(), record)],
            },
        );
        io.calls.clear();
        let mut fields = Fields::new();
        fields.insert("name".into(), FieldValue::Text("Ada".into()));
        let key = RecordKey::new("customers", "c1");
        handle(
            &mut io,
            Event::Save {
                key,
                fields,
                caller: 1,
            },
        );
        let due = io.timer.expect("the debounce deadline");
        let timers = |io: &Recorder| io.calls.iter().filter(|c| c.starts_with("timer")).count();
        assert_eq!(timers(&io), 1);
        // Another event that leaves the deadline as it is sets no timer.
        handle(&mut io, Event::Nudge);
        assert_eq!(timers(&io), 1);
        io.calls.clear();
        io.now = due;
        handle_timeout(&mut io);
        let write = io
            .calls
            .iter()
            .find_map(|c| c.strip_prefix("write ").map(str::to_owned))
            .expect("the entry is written");
        assert!(
            !io.calls.iter().any(|c| c.starts_with("send")),
            "sent before it was written: {:?}",
            io.calls
        );
        let id: u64 = write.parse().expect("a write id");
        handle(&mut io, Event::Written { id, written: true });
        assert!(
            io.calls.iter().any(|c| c == "send c1"),
            "sent once written: {:?}",
            io.calls
        );
    }
}
