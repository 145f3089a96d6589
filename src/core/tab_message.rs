//! What tabs of one user tell each other over the BroadcastChannel, and
//! the envelope around it: `{ v, tab, seq, kind, payload }` on the wire.
//!
//! Everything read off the channel is untrusted (another build of the app,
//! a broken tab, a hostile script of the same origin): [`decode`] never
//! panics and names why it ignored a message. The lock protocol's own
//! messages ([`LockMessage`]) are one kind among the others; the lock table
//! itself is [`crate::core::election`].

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::core::election::{LockMessage, TabId};
use crate::core::progress::SyncState;

/// The envelope format of this build; messages of other formats are ignored.
pub const FORMAT_VERSION: u64 = 1;

/// A record committed in one tab, so others re-read it from IndexedDB.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordChange {
    /// The collection.
    pub collection: String,
    /// The record id.
    pub id: String,
    /// The version now stored.
    pub version: u64,
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SessionEnd {
    /// A 401: the token no longer works.
    Expired,
    /// `crm.logout()`.
    LoggedOut,
}

/// The session notice every tab turns into a `session` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionNotice {
    /// How it ended.
    pub state: SessionEnd,
}

/// A tab changed the user's outbox, dead letters or conflicts in IndexedDB:
/// every other tab reads them again (the notice carries no data, so a lost
/// or forged one costs a read, never a wrong state).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkNotice {}

/// A press in a tab that does not lead, forwarded to the leader, which
/// alone drives the sync reducer. Read through [`RawCommand`] (see
/// [`crate::core::outbox::MutationOp`] for why).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "command", try_from = "RawCommand")]
pub enum SyncCommand {
    /// `crm.sync.start(kind)`.
    Start {
        /// Which way to copy.
        kind: crate::core::progress::SyncKind,
    },
    /// `crm.sync.cancel()`.
    Cancel,
    /// `crm.sync.dismiss()`.
    Dismiss,
    /// `crm.sync.schedule(...)` changed the stored schedule: read it again.
    Reschedule,
}

/// Every field any [`SyncCommand`] has: `command` says which apply.
#[derive(Deserialize)]
struct RawCommand {
    command: String,
    #[serde(default)]
    kind: Option<crate::core::progress::SyncKind>,
}

impl TryFrom<RawCommand> for SyncCommand {
    type Error = &'static str;

    fn try_from(raw: RawCommand) -> Result<Self, &'static str> {
        Ok(match raw.command.as_str() {
            "start" => SyncCommand::Start {
                kind: raw.kind.ok_or("a start command without its kind")?,
            },
            "cancel" => SyncCommand::Cancel,
            "dismiss" => SyncCommand::Dismiss,
            "reschedule" => SyncCommand::Reschedule,
            _ => return Err("an unknown sync command"),
        })
    }
}

/// Everything tabs tell each other.
#[derive(Debug, Clone, PartialEq)]
pub enum TabMessage {
    /// The lock protocol (kind `lock`).
    Lock(LockMessage),
    /// A record changed (kind `record-changed`).
    RecordChanged(RecordChange),
    /// The session ended (kind `session`).
    Session(SessionNotice),
    /// The leader's sync state (kind `sync-state`).
    SyncState(Box<SyncState>),
    /// A follower's press for the leader (kind `sync-command`).
    SyncCommand(SyncCommand),
    /// The user's pending work changed: read it again (kind `work-changed`).
    WorkChanged(WorkNotice),
}

impl TabMessage {
    /// The envelope's `kind` for this message.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Lock(_) => "lock",
            Self::RecordChanged(_) => "record-changed",
            Self::Session(_) => "session",
            Self::SyncState(_) => "sync-state",
            Self::SyncCommand(_) => "sync-command",
            Self::WorkChanged(_) => "work-changed",
        }
    }
}

/// A message between tabs: `{ v, tab, seq, kind, payload }` on the wire.
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

/// The wire shape, written out field by field so that the same shape is
/// read back in two steps by [`decode`].
#[derive(Serialize)]
struct Wire<'a, P: Serialize> {
    v: u64,
    tab: &'a TabId,
    seq: u64,
    kind: &'static str,
    payload: &'a P,
}

impl Serialize for Envelope {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let kind = self.message.kind();
        let (tab, seq) = (&self.tab, self.seq);
        match &self.message {
            TabMessage::Lock(p) => wire(tab, seq, kind, p).serialize(serializer),
            TabMessage::RecordChanged(p) => wire(tab, seq, kind, p).serialize(serializer),
            TabMessage::Session(p) => wire(tab, seq, kind, p).serialize(serializer),
            TabMessage::SyncState(p) => wire(tab, seq, kind, p.as_ref()).serialize(serializer),
            TabMessage::SyncCommand(p) => wire(tab, seq, kind, p).serialize(serializer),
            TabMessage::WorkChanged(p) => wire(tab, seq, kind, p).serialize(serializer),
        }
    }
}

fn wire<'a, P: Serialize>(
    tab: &'a TabId,
    seq: u64,
    kind: &'static str,
    payload: &'a P,
) -> Wire<'a, P> {
    Wire {
        v: FORMAT_VERSION,
        tab,
        seq,
        kind,
        payload,
    }
}

/// A message as it came off the channel, not yet trusted: the web layer
/// implements this for a `JsValue` (with `web::de`), tests for
/// JSON. `read` is asked several times, for ever more of the message.
pub trait UntrustedMessage {
    /// The message read as a `T`, or `None` if it is not of that shape.
    fn read<T: DeserializeOwned>(&self) -> Option<T>;
}

/// Why a message was ignored; the caller counts these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// Not an envelope at all, or a payload not of its kind's shape.
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

#[derive(Deserialize)]
struct VersionOnly {
    v: u64,
}

#[derive(Deserialize)]
struct Header {
    tab: TabId,
    seq: u64,
    kind: String,
}

#[derive(Deserialize)]
struct PayloadOnly<P> {
    payload: P,
}

/// Reads an envelope from untrusted input: never panics; anything not of
/// this build's format is an [`Ignored`] reason.
///
/// The version is read first and alone, so that a message of another
/// format is told apart from a broken one even if its other fields changed.
pub fn decode(raw: &impl UntrustedMessage, own_tab: &TabId) -> Result<Envelope, Ignored> {
    let VersionOnly { v } = raw.read().ok_or(Ignored::Malformed)?;
    if v < FORMAT_VERSION {
        return Err(Ignored::OlderVersion(v));
    }
    if v > FORMAT_VERSION {
        return Err(Ignored::NewerVersion(v));
    }
    let Header { tab, seq, kind } = raw.read().ok_or(Ignored::Malformed)?;
    if &tab == own_tab {
        return Err(Ignored::FromSelf);
    }
    let message = match kind.as_str() {
        "lock" => TabMessage::Lock(payload(raw)?),
        "record-changed" => TabMessage::RecordChanged(payload(raw)?),
        "session" => TabMessage::Session(payload(raw)?),
        "sync-state" => TabMessage::SyncState(Box::new(payload(raw)?)),
        "sync-command" => TabMessage::SyncCommand(payload(raw)?),
        "work-changed" => TabMessage::WorkChanged(payload(raw)?),
        _ => return Err(Ignored::UnknownKind),
    };
    Ok(Envelope { tab, seq, message })
}

fn payload<P: DeserializeOwned>(raw: &impl UntrustedMessage) -> Result<P, Ignored> {
    raw.read::<PayloadOnly<P>>()
        .map(|p| p.payload)
        .ok_or(Ignored::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::election::{LockEntry, LockSignal};

    struct Json(serde_json::Value);

    impl UntrustedMessage for Json {
        fn read<T: DeserializeOwned>(&self) -> Option<T> {
            serde_json::from_value(self.0.clone()).ok()
        }
    }

    fn json(envelope: &Envelope) -> serde_json::Value {
        serde_json::to_value(envelope).unwrap()
    }

    #[test]
    fn every_kind_goes_through_the_envelope_and_back() {
        let me = TabId("me".into());
        let messages = vec![
            TabMessage::Lock(LockMessage {
                token: 3,
                clock: 9,
                signal: LockSignal::Heartbeat {
                    entries: vec![LockEntry {
                        lock: "x".into(),
                        stamp: 1,
                        acquired: Some(2),
                    }],
                },
            }),
            TabMessage::RecordChanged(RecordChange {
                collection: "customers".into(),
                id: "c1".into(),
                version: 4,
            }),
            TabMessage::Session(SessionNotice {
                state: SessionEnd::LoggedOut,
            }),
            TabMessage::SyncState(Box::default()),
        ];
        for (seq, message) in messages.into_iter().enumerate() {
            let envelope = Envelope {
                tab: TabId("other".into()),
                seq: seq as u64,
                message,
            };
            let value = json(&envelope);
            assert_eq!(value["v"], 1);
            assert_eq!(value["kind"], envelope.message.kind());
            assert_eq!(decode(&Json(value), &me), Ok(envelope));
        }
    }

    #[test]
    fn the_wire_shape_is_plain() {
        let envelope = Envelope {
            tab: TabId("t1".into()),
            seq: 5,
            message: TabMessage::Session(SessionNotice {
                state: SessionEnd::Expired,
            }),
        };
        assert_eq!(
            json(&envelope),
            serde_json::json!({ "v": 1, "tab": "t1", "seq": 5, "kind": "session", "payload": { "state": "expired" } })
        );
        let lock = Envelope {
            tab: TabId("t1".into()),
            seq: 6,
            message: TabMessage::Lock(LockMessage {
                token: 1,
                clock: 2,
                signal: LockSignal::Request {
                    lock: "x".into(),
                    stamp: 2,
                },
            }),
        };
        assert_eq!(
            json(&lock)["payload"],
            serde_json::json!({ "token": 1, "clock": 2, "signal": { "type": "request", "lock": "x", "stamp": 2 } })
        );
    }

    #[test]
    fn untrusted_input_is_ignored_with_a_reason() {
        use serde_json::json;
        let me = TabId("me".into());
        let cases = [
            (json!(null), Ignored::Malformed),
            (json!(42), Ignored::Malformed),
            (json!("hello"), Ignored::Malformed),
            (json!([1, 2]), Ignored::Malformed),
            (json!({}), Ignored::Malformed),
            (json!({ "v": "1" }), Ignored::Malformed),
            (json!({ "v": -1 }), Ignored::Malformed),
            (
                json!({ "v": 0, "anything": true }),
                Ignored::OlderVersion(0),
            ),
            (
                json!({ "v": 2, "sender": "renamed" }),
                Ignored::NewerVersion(2),
            ),
            (
                json!({ "v": 1, "tab": "t", "kind": "session", "payload": { "state": "expired" } }),
                Ignored::Malformed,
            ),
            (
                json!({ "v": 1, "tab": "t", "seq": 1, "kind": "gossip", "payload": {} }),
                Ignored::UnknownKind,
            ),
            (
                json!({ "v": 1, "tab": "t", "seq": 1, "kind": "session", "payload": { "state": "asleep" } }),
                Ignored::Malformed,
            ),
            (
                json!({ "v": 1, "tab": "t", "seq": 1, "kind": "session" }),
                Ignored::Malformed,
            ),
            (
                json!({ "v": 1, "tab": "t", "seq": 1, "kind": "lock", "payload": { "token": 1, "clock": 1, "signal": { "type": "shout" } } }),
                Ignored::Malformed,
            ),
            (
                json!({ "v": 1, "tab": "t", "seq": 1, "kind": "record-changed", "payload": { "collection": "c", "id": "i", "version": -3 } }),
                Ignored::Malformed,
            ),
            (
                json!({ "v": 1, "tab": "me", "seq": 1, "kind": "session", "payload": { "state": "expired" } }),
                Ignored::FromSelf,
            ),
        ];
        for (value, reason) in cases {
            assert_eq!(decode(&Json(value.clone()), &me), Err(reason), "{value}");
        }
    }
}
