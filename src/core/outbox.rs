//! The outbox: every mutation on its way to the server, kept until the
//! server has answered it for good (docs/architecture.md, docs/guide/offline.md).
//!
//! Entries form one *lane* per record: within a lane they are sent one after
//! another in order (a patch must not overtake the create before it);
//! different lanes go in parallel. A permanent failure moves the entry to
//! the failed list (dead letters) and the lane behind it goes on. Each entry
//! keeps its `Idempotency-Key` for life, so a resend after a lost answer, a
//! reload or a closed tab is applied once.
//!
//! The outbox is plain data: the web layer stores its entries in IndexedDB
//! (they are serde types), calls the methods below as requests start and
//! answer, and reads [`Outbox::next_sendable`] to know what to send.
//!
//! ```no_run
//! use crm_sync::core::outbox::{Outbox, MutationOp, NewMutation};
//! use crm_sync::core::record::Fields;
//!
//! let mut outbox = Outbox::new();
//! outbox.enqueue(NewMutation {
//!     mutation_id: "m-1".into(),
//!     idempotency_key: "k-1".into(),
//!     collection: "customers".into(),
//!     record_id: "c-1".into(),
//!     op: MutationOp::Patch { base_version: 7, base_fields: Fields::new(), fields: Fields::new() },
//! }, 0)?;
//! let ids: Vec<String> = outbox.next_sendable(0).iter().map(|e| e.mutation_id.clone()).collect();
//! for id in ids {
//!     outbox.mark_sending(&id)?;
//!     // ... fetch; then on_success / on_transient_failure / on_permanent_failure / on_conflict
//! }
//! # Ok::<(), crm_sync::core::outbox::OutboxError>(())
//! ```

use serde::{Deserialize, Serialize};

use crate::core::code::ErrorCode;
use crate::core::merge::{merge_at, merge_delete_at, Conflict, MergeOutcome, MergeRules};
use crate::core::record::{FieldValue, Fields, Record};
use crate::core::retry::RetryPolicy;
use crate::core::sort::{sort_by, CollectMap};

/// What a mutation does to its record.
///
/// Read through `RawOp`, not with serde's internally tagged enum support,
/// which buffers every value before it knows the variant (a copy of that
/// machinery in the wasm, and time on every stored entry).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase", try_from = "RawOp")]
pub enum MutationOp {
    /// `POST /api/{collection}` with a client-made id.
    Create {
        /// The new record's fields.
        fields: Fields,
    },
    /// `PATCH` with `If-Match: base_version`.
    Patch {
        /// The version the change was made on.
        #[serde(rename = "baseVersion")]
        base_version: u64,
        /// The values `fields` had at the base (`null` when absent), so a
        /// 409 can be merged three-way even after a reload.
        #[serde(rename = "baseFields", default)]
        base_fields: Fields,
        /// The changed fields.
        fields: Fields,
    },
    /// `DELETE` with `If-Match: base_version`.
    Delete {
        /// The version the delete was made on.
        #[serde(rename = "baseVersion")]
        base_version: u64,
    },
    /// `POST .../comments` with the client-made comment id; never conflicts.
    Comment {
        /// The comment's client-made UUID.
        #[serde(rename = "commentId")]
        comment_id: String,
        /// The comment's text.
        text: String,
    },
}

/// Every field any [`MutationOp`] has, as stored: `kind` says which apply.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawOp {
    kind: String,
    #[serde(default)]
    fields: Option<Fields>,
    #[serde(default)]
    base_version: Option<u64>,
    #[serde(default)]
    base_fields: Option<Fields>,
    #[serde(default)]
    comment_id: Option<String>,
    #[serde(default)]
    text: Option<String>,
}

impl TryFrom<RawOp> for MutationOp {
    type Error = String;

    fn try_from(raw: RawOp) -> Result<Self, String> {
        let missing = |field: &str| format!("a {} mutation needs `{field}`", raw.kind);
        Ok(match raw.kind.as_str() {
            "create" => MutationOp::Create {
                fields: raw.fields.ok_or_else(|| missing("fields"))?,
            },
            "patch" => MutationOp::Patch {
                base_version: raw.base_version.ok_or_else(|| missing("baseVersion"))?,
                base_fields: raw.base_fields.unwrap_or_default(),
                fields: raw.fields.ok_or_else(|| missing("fields"))?,
            },
            "delete" => MutationOp::Delete {
                base_version: raw.base_version.ok_or_else(|| missing("baseVersion"))?,
            },
            "comment" => MutationOp::Comment {
                comment_id: raw.comment_id.ok_or_else(|| missing("commentId"))?,
                text: raw.text.ok_or_else(|| missing("text"))?,
            },
            other => return Err(format!("unknown mutation kind {other:?}")),
        })
    }
}

impl MutationOp {
    /// The version the request is based on (`If-Match`), for ops that have one.
    pub fn base_version(&self) -> Option<u64> {
        match self {
            Self::Create { .. } => Some(0),
            Self::Patch { base_version, .. } | Self::Delete { base_version } => Some(*base_version),
            Self::Comment { .. } => None,
        }
    }

    /// The fields the op sets (empty for deletes and comments).
    pub fn fields(&self) -> Option<&Fields> {
        match self {
            Self::Create { fields } | Self::Patch { fields, .. } => Some(fields),
            Self::Delete { .. } | Self::Comment { .. } => None,
        }
    }
}

/// Where an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryState {
    /// Waiting to be sent (first time, or for its retry time).
    #[default]
    Queued,
    /// A request is in flight.
    Sending,
    /// Refused for good; waits for a person to retry or discard it.
    Failed,
}

/// The last error an entry met.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntryError {
    /// The error's code, as JavaScript sees it.
    pub code: ErrorCode,
    /// A human-readable message.
    pub message: String,
    /// The server's `error.details` as JSON text, as it sent them (the
    /// overlapping bookings of a `409 overlap`, `fields` of a `422`).
    /// Kept as text: the engine never reads them, it keeps them for the
    /// person who decides what to do with a refused change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
    /// When it was met, ms since the epoch (0 in entries stored before
    /// the time was kept).
    #[serde(default)]
    pub at_ms: u64,
}

/// One mutation on its way to the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboxEntry {
    /// The mutation's id (a UUID made by the web layer); `pending()`,
    /// `retry()` and `discard()` name it.
    pub mutation_id: String,
    /// Sent with every attempt of this entry, for life.
    pub idempotency_key: String,
    /// The record's collection.
    pub collection: String,
    /// The record's id (its lane).
    pub record_id: String,
    /// What it does.
    pub op: MutationOp,
    /// Where it is.
    pub state: EntryState,
    /// How many times it was sent.
    pub attempts: u32,
    /// When it was made.
    pub created_at_ms: u64,
    /// Not sent before this time (a retry's backoff); 0 for "now".
    #[serde(default)]
    pub retry_at_ms: u64,
    /// How many times a 409 made it be re-sent on a newer version.
    #[serde(default)]
    pub merge_rounds: u32,
    /// The last error it met.
    #[serde(default)]
    pub last_error: Option<EntryError>,
    /// Its place in the outbox: entries of a lane go in `seq` order.
    #[serde(default)]
    pub seq: u64,
    /// The committed change this entry takes back, if it is an undo
    /// ([`crate::core::undo`]); nothing is folded into it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undoes: Option<String>,
}

impl OutboxEntry {
    /// Whether it was never sent, so its content may still change (folding).
    /// Once sent, the server may have applied it under its key, and a
    /// different body under the same key would be lost.
    pub fn never_sent(&self) -> bool {
        self.state == EntryState::Queued && self.attempts == 0
    }

    /// Merges this entry's change into `theirs` after a 409
    /// ([`crate::core::merge::merge`] for creates and patches,
    /// [`crate::core::merge::merge_delete`] for deletes); `None` for a
    /// comment, which never conflicts.
    pub fn merge_with(&self, theirs: &Record, rules: &MergeRules) -> Option<MergeOutcome> {
        match &self.op {
            MutationOp::Create { fields } => {
                // A create found the id taken: nothing of it was there before.
                let base = fields
                    .keys()
                    .map(|name| (name.clone(), FieldValue::Null))
                    .collect_map();
                Some(merge_at(
                    &base,
                    fields,
                    theirs,
                    rules,
                    self.merge_rounds,
                    self.created_at_ms,
                ))
            }
            MutationOp::Patch {
                base_fields,
                fields,
                ..
            } => Some(merge_at(
                base_fields,
                fields,
                theirs,
                rules,
                self.merge_rounds,
                self.created_at_ms,
            )),
            MutationOp::Delete { .. } => Some(merge_delete_at(
                theirs,
                rules,
                self.merge_rounds,
                self.created_at_ms,
            )),
            MutationOp::Comment { .. } => None,
        }
    }

    fn in_lane(&self, collection: &str, record_id: &str) -> bool {
        self.collection == collection && self.record_id == record_id
    }
}

/// What a new save did to a refused change of its record
/// ([`Outbox::supersede_failed`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Superseded {
    /// A refused create took the saved values and is back in line; its
    /// mutation id.
    Requeued(String),
    /// A refused patch gave up the saved fields; the rest stays refused.
    Trimmed(OutboxEntry),
    /// A refused patch all of whose fields were saved again: gone.
    Dropped(OutboxEntry),
}

/// A mutation to put in the outbox; ids are made by the web layer.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMutation {
    /// The mutation's id.
    pub mutation_id: String,
    /// Its `Idempotency-Key`.
    pub idempotency_key: String,
    /// The record's collection.
    pub collection: String,
    /// The record's id.
    pub record_id: String,
    /// What it does.
    pub op: MutationOp,
}

/// What [`Outbox::enqueue`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    /// A new entry at the end of its lane.
    Added {
        /// Its id.
        mutation_id: String,
    },
    /// Folded into the lane's last entry, which was never sent; the new
    /// mutation id (and its key) are not used: its callers wait for `into`.
    Folded {
        /// The entry it joined.
        into: String,
    },
}

/// What a transient failure did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retrying {
    /// The entry is sent again from this time on.
    pub retry_at_ms: u64,
    /// The retry policy's attempts are used up. The entry stays queued (it
    /// leaves the outbox only on a 2xx or a permanent 4xx), but a caller
    /// waiting for it may be told it is `queued`.
    pub exhausted: bool,
}

/// What a 409 did to an entry.
#[derive(Debug, Clone, PartialEq)]
pub enum ConflictHandled {
    /// Rewritten on theirs' version and queued to be sent again at once.
    Resend {
        /// The re-sent field names.
        merged: Vec<String>,
    },
    /// Nothing left to send: theirs is the result; the entry left the outbox.
    Settled(OutboxEntry),
    /// A person decides; the entry left the outbox.
    Conflict(Box<Conflict>, OutboxEntry),
}

/// Why an outbox call was refused (a bug in the caller, or an answer for an
/// entry another tab already settled).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboxError {
    /// No entry has this mutation id.
    #[error("no mutation {0:?} in the outbox")]
    UnknownMutation(String),
    /// An entry with this mutation id exists already.
    #[error("mutation {0:?} is already in the outbox")]
    DuplicateMutation(String),
    /// The entry is not at the head of its lane, or is sending already.
    #[error("mutation {0:?} cannot be sent now")]
    NotSendable(String),
    /// The entry is not being sent, so it cannot have an answer.
    #[error("mutation {0:?} is not being sent")]
    NotSending(String),
    /// Only failed entries can be retried.
    #[error("mutation {0:?} has not failed")]
    NotFailed(String),
    /// A request for the entry is in flight.
    #[error("mutation {0:?} is being sent")]
    InFlight(String),
    /// A comment never conflicts.
    #[error("mutation {0:?} cannot be merged")]
    NotMergeable(String),
}

/// The mutations on their way, in lanes, and the failed ones.
///
/// Serialised as the list of its entries (failed ones included), which is
/// what the web layer stores.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "Vec<OutboxEntry>", into = "Vec<OutboxEntry>")]
pub struct Outbox {
    /// Queued and sending entries, in `seq` order; a lane is the
    /// subsequence of one record. A plain list keeps the order obvious; an
    /// outbox holds at most a few hundred entries.
    entries: Vec<OutboxEntry>,
    /// Failed entries, oldest failure first.
    failed: Vec<OutboxEntry>,
    next_seq: u64,
}

impl From<Vec<OutboxEntry>> for Outbox {
    fn from(entries: Vec<OutboxEntry>) -> Self {
        Self::restore(entries)
    }
}

impl From<Outbox> for Vec<OutboxEntry> {
    fn from(outbox: Outbox) -> Self {
        let mut all = outbox.entries;
        all.extend(outbox.failed);
        all
    }
}

impl Outbox {
    /// An empty outbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// The outbox stored entries describe (after a reload, or in another tab).
    /// An entry that was sending when its tab went away is queued again: its
    /// answer was lost, and its key makes the resend safe.
    pub fn restore(entries: impl IntoIterator<Item = OutboxEntry>) -> Self {
        let mut outbox = Self::new();
        for mut entry in entries {
            outbox.next_seq = outbox.next_seq.max(entry.seq.saturating_add(1));
            match entry.state {
                EntryState::Failed => outbox.failed.push(entry),
                EntryState::Sending => {
                    entry.state = EntryState::Queued;
                    outbox.entries.push(entry);
                }
                EntryState::Queued => outbox.entries.push(entry),
            }
        }
        crate::core::sort::sort_by_key(&mut outbox.entries, |entry| entry.seq);
        crate::core::sort::sort_by_key(&mut outbox.failed, |entry| entry.seq);
        outbox
    }

    /// Queued and sending entries, oldest first.
    pub fn pending(&self) -> &[OutboxEntry] {
        &self.entries
    }

    /// Failed entries (dead letters), oldest failure first.
    pub fn failed(&self) -> &[OutboxEntry] {
        &self.failed
    }

    /// Every entry, pending then failed (what to store).
    pub fn entries(&self) -> impl Iterator<Item = &OutboxEntry> {
        self.entries.iter().chain(self.failed.iter())
    }

    /// The entry with this mutation id, pending or failed.
    pub fn get(&self, mutation_id: &str) -> Option<&OutboxEntry> {
        self.entries()
            .find(|entry| entry.mutation_id == mutation_id)
    }

    /// Whether nothing is pending (failed entries do not count).
    pub fn is_idle(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds a mutation at the end of its record's lane.
    ///
    /// A patch whose lane ends with a create or patch that was never sent is
    /// folded into it (later values win), so an offline afternoon of edits
    /// is one request. Comments are never folded, nor is anything folded
    /// into a comment, a delete, or an entry that was ever sent.
    ///
    /// # Errors
    ///
    /// [`OutboxError::DuplicateMutation`] when the mutation id is in use.
    pub fn enqueue(&mut self, mutation: NewMutation, now_ms: u64) -> Result<Enqueued, OutboxError> {
        self.enqueue_folding(mutation, now_ms, |_| true)
    }

    /// [`Outbox::enqueue`], folding only into an entry `may_fold` allows
    /// (by its mutation id): a tab folds only into entries it made, since
    /// another tab sends its own entries as it has them in memory.
    ///
    /// # Errors
    ///
    /// As [`Outbox::enqueue`].
    pub fn enqueue_folding(
        &mut self,
        mutation: NewMutation,
        now_ms: u64,
        may_fold: impl Fn(&str) -> bool,
    ) -> Result<Enqueued, OutboxError> {
        if self.get(&mutation.mutation_id).is_some() {
            return Err(OutboxError::DuplicateMutation(mutation.mutation_id));
        }
        let NewMutation {
            mutation_id,
            idempotency_key,
            collection,
            record_id,
            op,
        } = mutation;
        let op = match op {
            MutationOp::Patch {
                base_version,
                base_fields,
                fields,
            } => match self
                .fold_target(&collection, &record_id)
                .filter(|tail| may_fold(&tail.mutation_id))
                .filter(|tail| !based_later(tail, base_version))
            {
                Some(tail) => {
                    fold_patch(tail, base_fields, fields);
                    return Ok(Enqueued::Folded {
                        into: tail.mutation_id.clone(),
                    });
                }
                None => MutationOp::Patch {
                    base_version,
                    base_fields,
                    fields,
                },
            },
            other => other,
        };
        let seq = self.take_seq();
        self.entries.push(OutboxEntry {
            mutation_id: mutation_id.clone(),
            idempotency_key,
            collection,
            record_id,
            op,
            state: EntryState::Queued,
            attempts: 0,
            created_at_ms: now_ms,
            retry_at_ms: 0,
            merge_rounds: 0,
            last_error: None,
            seq,
            undoes: None,
        });
        Ok(Enqueued::Added { mutation_id })
    }

    /// Marks an entry as the undo of `undoes`.
    pub fn set_undoes(&mut self, mutation_id: &str, undoes: String) {
        if let Some(entry) = self
            .entries
            .iter_mut()
            .find(|e| e.mutation_id == mutation_id)
        {
            entry.undoes = Some(undoes);
        }
    }

    /// The lane's last entry, if a patch may be folded into it.
    fn fold_target(&mut self, collection: &str, record_id: &str) -> Option<&mut OutboxEntry> {
        let tail = self
            .entries
            .iter_mut()
            .rev()
            .find(|entry| entry.in_lane(collection, record_id))?;
        let foldable = tail.never_sent()
            && matches!(
                tail.op,
                MutationOp::Create { .. } | MutationOp::Patch { .. }
            );
        foldable.then_some(tail)
    }

    /// What to send now: the head of each lane, if it is queued and its
    /// retry time has come. At most one entry per lane.
    pub fn next_sendable(&self, now_ms: u64) -> Vec<&OutboxEntry> {
        self.lane_heads()
            .filter(|head| head.state == EntryState::Queued && head.retry_at_ms <= now_ms)
            .collect()
    }

    /// The first entry of each lane, in the outbox's order. (By sorting
    /// with the crate's one sort rather than a set of seen lanes: a set
    /// type of its own is kilobytes of wasm.)
    fn lane_heads(&self) -> impl Iterator<Item = &OutboxEntry> {
        fn lane(e: &OutboxEntry) -> (&str, &str) {
            (e.collection.as_str(), e.record_id.as_str())
        }
        let mut by_lane: Vec<(usize, &OutboxEntry)> = self.entries.iter().enumerate().collect();
        // Stable: within a lane, entries keep their order.
        sort_by(&mut by_lane, |a, b| lane(a.1).cmp(&lane(b.1)));
        let mut heads: Vec<(usize, &OutboxEntry)> = Vec::new();
        for (at, entry) in by_lane {
            if heads
                .last()
                .is_none_or(|(_, head)| lane(head) != lane(entry))
            {
                heads.push((at, entry));
            }
        }
        sort_by(&mut heads, |a, b| a.0.cmp(&b.0));
        heads.into_iter().map(|(_, entry)| entry)
    }

    /// When a lane head waiting for its retry time becomes sendable (the
    /// time to set a timer for), if one waits after `now_ms`.
    pub fn next_retry_at(&self, now_ms: u64) -> Option<u64> {
        self.lane_heads()
            .filter(|head| head.state == EntryState::Queued && head.retry_at_ms > now_ms)
            .map(|head| head.retry_at_ms)
            .min()
    }

    /// Clears every retry time (the browser came back online: try at once).
    pub fn clear_retry_times(&mut self) {
        for entry in &mut self.entries {
            entry.retry_at_ms = 0;
        }
    }

    /// The entry's request starts. Its retry time is not checked, so the
    /// caller may send early (e.g. when the browser comes back online).
    ///
    /// # Errors
    ///
    /// [`OutboxError::UnknownMutation`], or [`OutboxError::NotSendable`] when
    /// it is not the queued head of its lane.
    pub fn mark_sending(&mut self, mutation_id: &str) -> Result<&OutboxEntry, OutboxError> {
        let index = self.index_of(mutation_id)?;
        let head = self.entries.get(index).and_then(|it| {
            self.entries
                .iter()
                .position(|entry| entry.in_lane(&it.collection, &it.record_id))
        });
        let is_head = head == Some(index);
        let entry = self
            .entries
            .get_mut(index)
            .ok_or_else(|| OutboxError::UnknownMutation(mutation_id.to_owned()))?;
        if !is_head || entry.state != EntryState::Queued {
            return Err(OutboxError::NotSendable(mutation_id.to_owned()));
        }
        entry.state = EntryState::Sending;
        entry.attempts = entry.attempts.saturating_add(1);
        Ok(entry)
    }

    /// Drops an entry being sent (another tab finished it).
    ///
    /// # Errors
    ///
    /// [`OutboxError::UnknownMutation`], [`OutboxError::NotSending`].
    pub fn discard_sending(&mut self, mutation_id: &str) -> Result<OutboxEntry, OutboxError> {
        self.sending_mut(mutation_id)?;
        let index = self.index_of(mutation_id)?;
        Ok(self.entries.remove(index))
    }

    /// Keeps an entry marked as being sent after [`Outbox::restore`] (which
    /// forgets what is on the wire), whatever its place in the lane now and
    /// without counting an attempt: its answer is still to come.
    ///
    /// # Errors
    ///
    /// [`OutboxError::UnknownMutation`].
    pub fn still_sending(&mut self, mutation_id: &str) -> Result<(), OutboxError> {
        let index = self.index_of(mutation_id)?;
        if let Some(entry) = self.entries.get_mut(index) {
            entry.state = EntryState::Sending;
        }
        Ok(())
    }

    /// The request ended without an answer that says anything (the tab
    /// lost leadership, the page is going away): queued again, not counted
    /// as a failure.
    ///
    /// # Errors
    ///
    /// [`OutboxError::UnknownMutation`], [`OutboxError::NotSending`].
    pub fn release(&mut self, mutation_id: &str) -> Result<(), OutboxError> {
        let entry = self.sending_mut(mutation_id)?;
        entry.state = EntryState::Queued;
        Ok(())
    }

    /// The server answered 2xx: the entry leaves the outbox.
    ///
    /// `record` is the server's record from the answer (none for a delete
    /// or a comment). Entries behind it in its lane were made on the same
    /// base, knowing this change; they are moved onto the new version so
    /// they do not meet a 409 against their own earlier change.
    ///
    /// # Errors
    ///
    /// [`OutboxError::UnknownMutation`], [`OutboxError::NotSending`].
    pub fn on_success(
        &mut self,
        mutation_id: &str,
        record: Option<&Record>,
    ) -> Result<OutboxEntry, OutboxError> {
        self.sending_mut(mutation_id)?;
        let index = self.index_of(mutation_id)?;
        let entry = self.entries.remove(index);
        if let (Some(record), Some(sent_base)) = (record, entry.op.base_version()) {
            let changed = entry.op.fields().cloned().unwrap_or_default();
            // PATCH and POST make exactly one new version, so the record is
            // precisely "base + this change".
            let successor = record.version == sent_base.saturating_add(1);
            for follower in self
                .entries
                .iter_mut()
                .filter(|other| other.in_lane(&entry.collection, &entry.record_id))
            {
                rebase_follower(follower, record, sent_base, successor, &changed);
            }
        }
        Ok(entry)
    }

    /// The server refused the entry for good (a 4xx other than 409 and
    /// 429): it moves to the failed list and the lane behind it goes on.
    ///
    /// # Errors
    ///
    /// [`OutboxError::UnknownMutation`] (also for an entry failed already).
    pub fn on_permanent_failure(
        &mut self,
        mutation_id: &str,
        error: EntryError,
    ) -> Result<&OutboxEntry, OutboxError> {
        let index = self.index_of(mutation_id)?;
        let mut entry = self.entries.remove(index);
        entry.state = EntryState::Failed;
        entry.last_error = Some(error);
        self.failed.push(entry);
        self.failed
            .last()
            .ok_or_else(|| OutboxError::UnknownMutation(mutation_id.to_owned()))
    }

    /// The request failed in a way worth retrying (network, timeout, 5xx,
    /// 429): queued again with a retry time from `policy`, using
    /// `sample` in `[0, 1)` for the jitter and the server's `Retry-After`.
    ///
    /// # Errors
    ///
    /// [`OutboxError::UnknownMutation`], [`OutboxError::NotSending`].
    pub fn on_transient_failure(
        &mut self,
        mutation_id: &str,
        error: EntryError,
        now_ms: u64,
        policy: &RetryPolicy,
        sample: f64,
        retry_after_ms: Option<u64>,
    ) -> Result<Retrying, OutboxError> {
        let entry = self.sending_mut(mutation_id)?;
        let retry = entry.attempts.max(1);
        let delay = policy.delay_with_retry_after(retry, sample, retry_after_ms);
        entry.state = EntryState::Queued;
        entry.retry_at_ms = now_ms.saturating_add(delay);
        entry.last_error = Some(error);
        Ok(Retrying {
            retry_at_ms: entry.retry_at_ms,
            exhausted: !policy.allows(retry),
        })
    }

    /// The server answered 409 with `theirs`; `outcome` is the merge of the
    /// entry's change into it (see [`OutboxEntry::merge_with`]).
    ///
    /// [`MergeOutcome::Resend`] rewrites the entry on theirs' version,
    /// under `fresh_id` as its new `Idempotency-Key` (a key names one
    /// request, and the re-sent one differs), and keeps its place at the
    /// head of its lane; [`MergeOutcome::Settled`] removes it;
    /// [`MergeOutcome::Conflict`] removes it and returns a [`Conflict`] with
    /// id `fresh_id` for a person.
    ///
    /// # Errors
    ///
    /// [`OutboxError::UnknownMutation`], [`OutboxError::NotSending`], and
    /// [`OutboxError::NotMergeable`] for a comment (they never conflict).
    pub fn on_conflict(
        &mut self,
        mutation_id: &str,
        theirs: &Record,
        outcome: MergeOutcome,
        fresh_id: String,
    ) -> Result<ConflictHandled, OutboxError> {
        let entry = self.sending_mut(mutation_id)?;
        if matches!(entry.op, MutationOp::Comment { .. }) {
            return Err(OutboxError::NotMergeable(mutation_id.to_owned()));
        }
        match outcome {
            MergeOutcome::Resend {
                patch,
                if_match,
                merged,
                ..
            } => {
                entry.op = match entry.op {
                    MutationOp::Delete { .. } => MutationOp::Delete {
                        base_version: if_match,
                    },
                    _ => MutationOp::Patch {
                        base_version: if_match,
                        base_fields: patch
                            .keys()
                            .map(|name| {
                                let value =
                                    theirs.fields.get(name).cloned().unwrap_or(FieldValue::Null);
                                (name.clone(), value)
                            })
                            .collect_map(),
                        fields: patch,
                    },
                };
                entry.idempotency_key = fresh_id;
                entry.state = EntryState::Queued;
                entry.retry_at_ms = 0;
                entry.merge_rounds = entry.merge_rounds.saturating_add(1);
                Ok(ConflictHandled::Resend { merged })
            }
            MergeOutcome::Settled { .. } => {
                let index = self.index_of(mutation_id)?;
                Ok(ConflictHandled::Settled(self.entries.remove(index)))
            }
            MergeOutcome::Conflict { fields } => {
                let index = self.index_of(mutation_id)?;
                let entry = self.entries.remove(index);
                let conflict = Conflict {
                    id: fresh_id,
                    collection: entry.collection.clone(),
                    record_id: entry.record_id.clone(),
                    base: entry.op.base_version().unwrap_or(0),
                    mine: entry.op.fields().cloned().unwrap_or_default(),
                    theirs: theirs.clone(),
                    fields,
                };
                Ok(ConflictHandled::Conflict(Box::new(conflict), entry))
            }
        }
    }

    /// A person retries a failed entry: it goes to the end of its lane with
    /// its key (the server keeps no answer for a refused request, so the
    /// key is still fresh).
    ///
    /// # Errors
    ///
    /// [`OutboxError::NotFailed`] when the entry is pending,
    /// [`OutboxError::UnknownMutation`] when there is none.
    pub fn retry(&mut self, mutation_id: &str) -> Result<(), OutboxError> {
        let Some(index) = self
            .failed
            .iter()
            .position(|entry| entry.mutation_id == mutation_id)
        else {
            return Err(self.not_failed_or_unknown(mutation_id));
        };
        let mut entry = self.failed.remove(index);
        entry.state = EntryState::Queued;
        entry.retry_at_ms = 0;
        entry.seq = self.take_seq();
        self.entries.push(entry);
        Ok(())
    }

    /// A person saved `fields` of a record that has refused changes: the
    /// new values take the place of the refused ones (docs/guide/offline.md,
    /// "Refused changes"). A refused create takes the saved values (later
    /// values win) and goes back to the end of its lane under `fresh_key`,
    /// as an entry never sent under that key; a refused patch gives up the
    /// saved fields, and is gone once none is left. Deletes and comments are
    /// left as they are.
    pub fn supersede_failed(
        &mut self,
        collection: &str,
        record_id: &str,
        fields: &Fields,
        mut fresh_key: impl FnMut() -> String,
    ) -> Vec<Superseded> {
        let mut done = Vec::new();
        let mut index = 0;
        while let Some(entry) = self.failed.get_mut(index) {
            if !entry.in_lane(collection, record_id) {
                index += 1;
                continue;
            }
            match &mut entry.op {
                MutationOp::Create { fields: created } => {
                    created.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
                    let mut entry = self.failed.remove(index);
                    entry.idempotency_key = fresh_key();
                    entry.state = EntryState::Queued;
                    entry.attempts = 0;
                    entry.retry_at_ms = 0;
                    entry.seq = self.take_seq();
                    done.push(Superseded::Requeued(entry.mutation_id.clone()));
                    self.entries.push(entry);
                }
                MutationOp::Patch {
                    fields: changed,
                    base_fields,
                    ..
                } => {
                    changed.retain(|name, _| !fields.contains_key(name));
                    base_fields.retain(|name, _| !fields.contains_key(name));
                    if changed.is_empty() {
                        done.push(Superseded::Dropped(self.failed.remove(index)));
                    } else {
                        done.push(Superseded::Trimmed(entry.clone()));
                        index += 1;
                    }
                }
                MutationOp::Delete { .. } | MutationOp::Comment { .. } => index += 1,
            }
        }
        done
    }

    /// Removes a failed or queued entry for good (API `discard`) and returns
    /// it, so the caller can unstage its change.
    ///
    /// # Errors
    ///
    /// [`OutboxError::InFlight`] while it is being sent,
    /// [`OutboxError::UnknownMutation`] when there is none.
    pub fn discard(&mut self, mutation_id: &str) -> Result<OutboxEntry, OutboxError> {
        if let Some(index) = self
            .failed
            .iter()
            .position(|entry| entry.mutation_id == mutation_id)
        {
            return Ok(self.failed.remove(index));
        }
        let index = self.index_of(mutation_id)?;
        if self
            .entries
            .get(index)
            .is_some_and(|entry| entry.state == EntryState::Sending)
        {
            return Err(OutboxError::InFlight(mutation_id.to_owned()));
        }
        Ok(self.entries.remove(index))
    }

    fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.saturating_add(1);
        seq
    }

    fn index_of(&self, mutation_id: &str) -> Result<usize, OutboxError> {
        self.entries
            .iter()
            .position(|entry| entry.mutation_id == mutation_id)
            .ok_or_else(|| OutboxError::UnknownMutation(mutation_id.to_owned()))
    }

    fn sending_mut(&mut self, mutation_id: &str) -> Result<&mut OutboxEntry, OutboxError> {
        let entry = self
            .entries
            .iter_mut()
            .find(|entry| entry.mutation_id == mutation_id)
            .ok_or_else(|| OutboxError::UnknownMutation(mutation_id.to_owned()))?;
        if entry.state != EntryState::Sending {
            return Err(OutboxError::NotSending(mutation_id.to_owned()));
        }
        Ok(entry)
    }

    fn not_failed_or_unknown(&self, mutation_id: &str) -> OutboxError {
        if self.index_of(mutation_id).is_ok() {
            OutboxError::NotFailed(mutation_id.to_owned())
        } else {
            OutboxError::UnknownMutation(mutation_id.to_owned())
        }
    }
}

/// Whether `tail` is a patch on a later version than `base_version`: a
/// patch made on an older version (a conflict's resolution, made on the
/// version the conflict showed) is not folded into it, whose newer base
/// would hide what the patch changes (found by the simulation: a
/// resolution put back a value the newer version held, and the merge of
/// the folded entry took it for no change at all, a lost update).
fn based_later(tail: &OutboxEntry, base_version: u64) -> bool {
    matches!(tail.op, MutationOp::Patch { base_version: tail_base, .. } if tail_base > base_version)
}

/// Folds a later patch into a never-sent create or patch: later values win;
/// a field's base is the oldest one known (the value the first change of it
/// was made on).
fn fold_patch(tail: &mut OutboxEntry, base_fields: Fields, fields: Fields) {
    match &mut tail.op {
        MutationOp::Create {
            fields: tail_fields,
        } => tail_fields.extend(fields),
        MutationOp::Patch {
            base_fields: tail_base,
            fields: tail_fields,
            ..
        } => {
            for name in fields.keys() {
                if !tail_base.contains_key(name) {
                    let base = base_fields.get(name).cloned().unwrap_or(FieldValue::Null);
                    tail_base.insert(name.clone(), base);
                }
            }
            tail_fields.extend(fields);
        }
        MutationOp::Delete { .. } | MutationOp::Comment { .. } => {}
    }
}

/// Moves an entry queued behind a committed one onto the new version.
fn rebase_follower(
    follower: &mut OutboxEntry,
    record: &Record,
    sent_base: u64,
    successor: bool,
    changed: &Fields,
) {
    let value_of = |name: &str| record.fields.get(name).cloned().unwrap_or(FieldValue::Null);
    match &mut follower.op {
        MutationOp::Patch {
            base_version,
            base_fields,
            ..
        } => {
            if successor && *base_version == sent_base {
                // Made on the same base: the record is exactly that base
                // plus the committed change.
                *base_version = record.version;
                for (name, base) in base_fields.iter_mut() {
                    *base = value_of(name);
                }
            } else {
                // Other changes came in between: only what the committed
                // entry changed is known to be part of the follower's base.
                for (name, base) in base_fields.iter_mut() {
                    if changed.contains_key(name) {
                        *base = value_of(name);
                    }
                }
            }
        }
        MutationOp::Delete { base_version } if successor && *base_version == sent_base => {
            *base_version = record.version;
        }
        MutationOp::Create { .. } | MutationOp::Delete { .. } | MutationOp::Comment { .. } => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::merge::OnConflict;

    fn text(pairs: &[(&str, &str)]) -> Fields {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), FieldValue::Text((*value).to_owned())))
            .collect()
    }

    fn new(id: &str, record: &str, op: MutationOp) -> NewMutation {
        NewMutation {
            mutation_id: id.into(),
            idempotency_key: format!("key-{id}"),
            collection: "customers".into(),
            record_id: record.into(),
            op,
        }
    }

    fn patch(base_version: u64, fields: &[(&str, &str)]) -> MutationOp {
        let fields = text(fields);
        MutationOp::Patch {
            base_version,
            base_fields: fields
                .keys()
                .map(|name| (name.clone(), FieldValue::Null))
                .collect(),
            fields,
        }
    }

    fn comment(id: &str) -> MutationOp {
        MutationOp::Comment {
            comment_id: id.into(),
            text: "hello".into(),
        }
    }

    fn record(version: u64, fields: &[(&str, &str)]) -> Record {
        Record {
            id: "c-1".into(),
            version,
            updated_at: String::new(),
            updated_by: String::new(),
            fields: text(fields),
            comments: Vec::new(),
        }
    }

    fn error(code: ErrorCode) -> EntryError {
        EntryError {
            code,
            message: code.as_str().into(),
            details: None,
            at_ms: 0,
        }
    }

    fn sendable(outbox: &Outbox, now: u64) -> Vec<String> {
        outbox
            .next_sendable(now)
            .into_iter()
            .map(|entry| entry.mutation_id.clone())
            .collect()
    }

    #[test]
    fn one_head_per_lane_lanes_in_parallel() {
        let mut outbox = Outbox::new();
        outbox
            .enqueue(new("m1", "a", patch(1, &[("x", "1")])), 0)
            .unwrap();
        outbox.enqueue(new("m2", "a", comment("k1")), 1).unwrap();
        outbox
            .enqueue(new("m3", "b", patch(1, &[("x", "1")])), 2)
            .unwrap();
        assert_eq!(sendable(&outbox, 0), ["m1", "m3"]);
        outbox.mark_sending("m1").unwrap();
        assert_eq!(sendable(&outbox, 0), ["m3"]);
        // Nothing overtakes the head of its lane.
        assert_eq!(
            outbox.mark_sending("m2"),
            Err(OutboxError::NotSendable("m2".into()))
        );
        assert_eq!(
            outbox.mark_sending("m1"),
            Err(OutboxError::NotSendable("m1".into()))
        );
        let done = outbox
            .on_success("m1", Some(&record(2, &[("x", "1")])))
            .unwrap();
        assert_eq!(done.mutation_id, "m1");
        assert_eq!(sendable(&outbox, 0), ["m2", "m3"]);
        assert_eq!(outbox.pending().len(), 2);
    }

    /// Sends and refuses each of these entries for good.
    fn refuse(outbox: &mut Outbox, ids: &[&str]) {
        for id in ids {
            outbox.mark_sending(id).unwrap();
            outbox
                .on_permanent_failure(id, error(ErrorCode::Invalid))
                .unwrap();
        }
    }

    #[test]
    fn a_save_takes_the_place_of_the_refused_values_of_its_record() {
        let mut outbox = Outbox::new();
        let create = MutationOp::Create {
            fields: text(&[("start", "9"), ("title", "Call")]),
        };
        outbox.enqueue(new("c", "booking", create), 0).unwrap();
        outbox
            .enqueue(
                new("p", "a", patch(1, &[("email", "x"), ("city", "Graz")])),
                0,
            )
            .unwrap();
        outbox
            .enqueue(new("d", "b", MutationOp::Delete { base_version: 1 }), 0)
            .unwrap();
        refuse(&mut outbox, &["c", "p", "d"]);
        assert_eq!(outbox.failed().len(), 3);

        // A refused patch gives up the saved field, and goes with the last.
        let done =
            outbox.supersede_failed("customers", "a", &text(&[("email", "y")]), || "k".into());
        let trimmed = outbox.get("p").unwrap();
        assert_eq!(done, [Superseded::Trimmed(trimmed.clone())]);
        assert_eq!(trimmed.op.fields(), Some(&text(&[("city", "Graz")])));
        let done =
            outbox.supersede_failed("customers", "a", &text(&[("city", "Linz")]), || "k".into());
        assert!(matches!(&done[..], [Superseded::Dropped(e)] if e.mutation_id == "p"));
        assert!(outbox.get("p").is_none());

        // A refused create takes the values and is back in line, fresh.
        let done =
            outbox.supersede_failed("customers", "booking", &text(&[("start", "11")]), || {
                "fresh".into()
            });
        assert_eq!(done, [Superseded::Requeued("c".into())]);
        let again = outbox.get("c").unwrap();
        assert_eq!(
            again.op.fields(),
            Some(&text(&[("start", "11"), ("title", "Call")]))
        );
        assert_eq!(
            (again.state, again.idempotency_key.as_str()),
            (EntryState::Queued, "fresh")
        );
        assert!(again.never_sent());
        assert_eq!(sendable(&outbox, 0), ["c"]);

        // A refused delete is left for the person to retry or discard.
        assert!(outbox
            .supersede_failed("customers", "b", &text(&[("x", "1")]), || "k".into())
            .is_empty());
        assert_eq!(outbox.failed().len(), 1);
    }

    #[test]
    fn never_sent_patches_fold_later_values_win() {
        let mut outbox = Outbox::new();
        outbox
            .enqueue(new("m1", "a", patch(3, &[("x", "1"), ("y", "1")])), 0)
            .unwrap();
        let folded = outbox
            .enqueue(new("m2", "a", patch(4, &[("x", "2"), ("z", "2")])), 1)
            .unwrap();
        assert_eq!(folded, Enqueued::Folded { into: "m1".into() });
        assert_eq!(outbox.pending().len(), 1);
        let entry = outbox.get("m1").unwrap();
        let MutationOp::Patch {
            base_version,
            fields,
            ..
        } = &entry.op
        else {
            panic!("a patch")
        };
        assert_eq!(*base_version, 3);
        assert_eq!(fields, &text(&[("x", "2"), ("y", "1"), ("z", "2")]));
        assert_eq!(entry.idempotency_key, "key-m1");
    }

    #[test]
    fn a_patch_on_an_older_version_is_not_folded() {
        let mut outbox = Outbox::new();
        outbox
            .enqueue(new("m1", "a", patch(8, &[("x", "1")])), 0)
            .unwrap();
        let added = outbox
            .enqueue(new("m2", "a", patch(7, &[("x", "2")])), 1)
            .unwrap();
        assert_eq!(
            added,
            Enqueued::Added {
                mutation_id: "m2".into()
            }
        );
        assert_eq!(outbox.pending().len(), 2);
    }

    #[test]
    fn folding_keeps_the_oldest_base_of_a_field() {
        let mut outbox = Outbox::new();
        let first = MutationOp::Patch {
            base_version: 3,
            base_fields: text(&[("x", "base")]),
            fields: text(&[("x", "1")]),
        };
        outbox.enqueue(new("m1", "a", first), 0).unwrap();
        let second = MutationOp::Patch {
            base_version: 3,
            base_fields: text(&[("x", "1"), ("y", "yb")]),
            fields: text(&[("x", "2"), ("y", "2")]),
        };
        outbox.enqueue(new("m2", "a", second), 0).unwrap();
        let MutationOp::Patch { base_fields, .. } = &outbox.get("m1").unwrap().op else {
            panic!("a patch")
        };
        assert_eq!(base_fields, &text(&[("x", "base"), ("y", "yb")]));
    }

    #[test]
    fn patches_fold_into_an_unsent_create() {
        let mut outbox = Outbox::new();
        outbox
            .enqueue(
                new(
                    "m1",
                    "a",
                    MutationOp::Create {
                        fields: text(&[("name", "N")]),
                    },
                ),
                0,
            )
            .unwrap();
        outbox
            .enqueue(new("m2", "a", patch(0, &[("phone", "1")])), 0)
            .unwrap();
        assert_eq!(
            outbox.get("m1").unwrap().op,
            MutationOp::Create {
                fields: text(&[("name", "N"), ("phone", "1")])
            }
        );
    }

    #[test]
    fn nothing_folds_into_sent_entries_comments_or_deletes() {
        let mut outbox = Outbox::new();
        outbox
            .enqueue(new("m1", "a", patch(1, &[("x", "1")])), 0)
            .unwrap();
        outbox.mark_sending("m1").unwrap();
        assert_eq!(
            outbox
                .enqueue(new("m2", "a", patch(1, &[("x", "2")])), 0)
                .unwrap(),
            Enqueued::Added {
                mutation_id: "m2".into()
            }
        );
        // Sent once and back in the queue after a network error: still not folded.
        outbox
            .on_transient_failure(
                "m1",
                error(ErrorCode::Network),
                0,
                &RetryPolicy::default(),
                0.0,
                None,
            )
            .unwrap();
        outbox
            .enqueue(new("m3", "b", patch(1, &[("x", "1")])), 0)
            .unwrap();
        outbox.mark_sending("m3").unwrap();
        outbox
            .on_transient_failure(
                "m3",
                error(ErrorCode::Timeout),
                0,
                &RetryPolicy::default(),
                0.0,
                None,
            )
            .unwrap();
        assert!(matches!(
            outbox
                .enqueue(new("m4", "b", patch(1, &[("y", "1")])), 0)
                .unwrap(),
            Enqueued::Added { .. }
        ));
        // Comments are separate entries and never folded.
        outbox.enqueue(new("m5", "c", comment("k1")), 0).unwrap();
        outbox.enqueue(new("m6", "c", comment("k2")), 0).unwrap();
        assert!(matches!(
            outbox
                .enqueue(new("m7", "c", patch(1, &[("y", "1")])), 0)
                .unwrap(),
            Enqueued::Added { .. }
        ));
        outbox
            .enqueue(new("m8", "d", MutationOp::Delete { base_version: 1 }), 0)
            .unwrap();
        assert!(matches!(
            outbox
                .enqueue(new("m9", "d", patch(1, &[("y", "1")])), 0)
                .unwrap(),
            Enqueued::Added { .. }
        ));
        assert_eq!(outbox.pending().len(), 9);
        assert_eq!(
            outbox.enqueue(new("m9", "z", comment("k")), 0),
            Err(OutboxError::DuplicateMutation("m9".into()))
        );
    }

    #[test]
    fn permanent_failures_go_to_dead_letters_and_the_lane_goes_on() {
        let mut outbox = Outbox::new();
        outbox
            .enqueue(new("m1", "a", patch(1, &[("email", "bad")])), 0)
            .unwrap();
        outbox.enqueue(new("m2", "a", comment("k1")), 0).unwrap();
        outbox.mark_sending("m1").unwrap();
        let failed = outbox
            .on_permanent_failure("m1", error(ErrorCode::Invalid))
            .unwrap();
        assert_eq!(failed.state, EntryState::Failed);
        assert_eq!(
            failed.last_error.as_ref().map(|e| e.code),
            Some(ErrorCode::Invalid)
        );
        assert_eq!(sendable(&outbox, 0), ["m2"]);
        assert_eq!(outbox.failed().len(), 1);
        assert!(outbox.get("m1").is_some());
        // Retry puts it at the end of its lane, with its key.
        outbox.enqueue(new("m3", "a", comment("k2")), 0).unwrap();
        assert_eq!(outbox.retry("m2"), Err(OutboxError::NotFailed("m2".into())));
        outbox.retry("m1").unwrap();
        let lane: Vec<_> = outbox
            .pending()
            .iter()
            .map(|e| e.mutation_id.as_str())
            .collect();
        assert_eq!(lane, ["m2", "m3", "m1"]);
        assert_eq!(outbox.get("m1").unwrap().idempotency_key, "key-m1");
        assert_eq!(outbox.get("m1").unwrap().state, EntryState::Queued);
        assert!(outbox.failed().is_empty());
        assert_eq!(
            outbox.retry("nope"),
            Err(OutboxError::UnknownMutation("nope".into()))
        );
    }

    #[test]
    fn transient_failures_back_off_and_keep_the_entry() {
        let mut outbox = Outbox::new();
        let policy = RetryPolicy::default();
        outbox
            .enqueue(new("m1", "a", patch(1, &[("x", "1")])), 0)
            .unwrap();
        let mut now = 1_000;
        for attempt in 1..=6_u32 {
            outbox.mark_sending("m1").unwrap();
            let retrying = outbox
                .on_transient_failure("m1", error(ErrorCode::Server), now, &policy, 0.5, None)
                .unwrap();
            assert_eq!(retrying.retry_at_ms, now + policy.delay_ms(attempt, 0.5));
            assert_eq!(retrying.exhausted, attempt > policy.attempts);
            assert!(sendable(&outbox, retrying.retry_at_ms - 1).is_empty());
            assert_eq!(outbox.next_retry_at(now), Some(retrying.retry_at_ms));
            now = retrying.retry_at_ms;
            assert_eq!(sendable(&outbox, now), ["m1"]);
        }
        assert_eq!(outbox.get("m1").unwrap().attempts, 6);
        // Retry-After is honoured, bounded by the policy's max.
        outbox.mark_sending("m1").unwrap();
        let retrying = outbox
            .on_transient_failure(
                "m1",
                error(ErrorCode::Server),
                now,
                &policy,
                0.0,
                Some(60_000),
            )
            .unwrap();
        assert_eq!(retrying.retry_at_ms, now + 8_000);
        outbox.clear_retry_times();
        assert_eq!(sendable(&outbox, now), ["m1"]);
    }

    #[test]
    fn answers_need_a_sending_entry() {
        let mut outbox = Outbox::new();
        outbox
            .enqueue(new("m1", "a", patch(1, &[("x", "1")])), 0)
            .unwrap();
        assert_eq!(
            outbox.on_success("m1", None),
            Err(OutboxError::NotSending("m1".into()))
        );
        assert_eq!(
            outbox.on_success("zz", None),
            Err(OutboxError::UnknownMutation("zz".into()))
        );
        outbox.mark_sending("m1").unwrap();
        assert_eq!(
            outbox.discard("m1"),
            Err(OutboxError::InFlight("m1".into()))
        );
        outbox.release("m1").unwrap();
        assert_eq!(outbox.get("m1").unwrap().state, EntryState::Queued);
        assert_eq!(outbox.discard("m1").unwrap().mutation_id, "m1");
        assert!(outbox.is_idle());
    }

    #[test]
    fn followers_are_rebased_on_the_committed_version() {
        let mut outbox = Outbox::new();
        let first = MutationOp::Patch {
            base_version: 7,
            base_fields: text(&[("x", "0")]),
            fields: text(&[("x", "1")]),
        };
        outbox.enqueue(new("m1", "c-1", first), 0).unwrap();
        outbox.mark_sending("m1").unwrap();
        // Staged while m1 was in flight, on the same base.
        let second = MutationOp::Patch {
            base_version: 7,
            base_fields: text(&[("x", "0"), ("y", "0")]),
            fields: text(&[("x", "2"), ("y", "2")]),
        };
        outbox.enqueue(new("m2", "c-1", second), 0).unwrap();
        outbox
            .enqueue(new("m3", "c-1", MutationOp::Delete { base_version: 7 }), 0)
            .unwrap();
        outbox
            .on_success("m1", Some(&record(8, &[("x", "1"), ("y", "0")])))
            .unwrap();
        let MutationOp::Patch {
            base_version,
            base_fields,
            ..
        } = &outbox.get("m2").unwrap().op
        else {
            panic!("a patch")
        };
        assert_eq!(
            (*base_version, base_fields),
            (8, &text(&[("x", "1"), ("y", "0")]))
        );
        assert_eq!(
            outbox.get("m3").unwrap().op,
            MutationOp::Delete { base_version: 8 }
        );
    }

    #[test]
    fn followers_of_a_merged_entry_learn_its_values_only() {
        let mut outbox = Outbox::new();
        let first = MutationOp::Patch {
            base_version: 7,
            base_fields: text(&[("x", "0")]),
            fields: text(&[("x", "1")]),
        };
        outbox.enqueue(new("m1", "c-1", first), 0).unwrap();
        outbox.mark_sending("m1").unwrap();
        let second = MutationOp::Patch {
            base_version: 7,
            base_fields: text(&[("x", "0"), ("y", "0")]),
            fields: text(&[("x", "2"), ("y", "2")]),
        };
        outbox.enqueue(new("m2", "c-1", second), 0).unwrap();
        // m1 met a 409 and was re-sent on version 9.
        let theirs = record(9, &[("x", "0"), ("y", "9")]);
        let outcome = outbox
            .get("m1")
            .unwrap()
            .merge_with(&theirs, &MergeRules::default())
            .unwrap();
        assert!(matches!(
            outbox
                .on_conflict("m1", &theirs, outcome, "k".into())
                .unwrap(),
            ConflictHandled::Resend { .. }
        ));
        outbox.mark_sending("m1").unwrap();
        outbox
            .on_success("m1", Some(&record(10, &[("x", "1"), ("y", "9")])))
            .unwrap();
        let MutationOp::Patch {
            base_version,
            base_fields,
            ..
        } = &outbox.get("m2").unwrap().op
        else {
            panic!("a patch")
        };
        // Still on 7 (it will meet a 409), but x's base is now its own earlier value,
        // so the merge will not call it a conflict with itself; y keeps its real base.
        assert_eq!(
            (*base_version, base_fields),
            (7, &text(&[("x", "1"), ("y", "0")]))
        );
    }

    #[test]
    fn a_merged_resend_goes_under_a_new_idempotency_key() {
        // The key names one request: the re-sent change has another body and
        // If-Match, so a server that checks keys against requests would
        // refuse it under the old one (docs/backend/protocol.md, "Exactly once").
        let mut outbox = Outbox::new();
        let op = MutationOp::Patch {
            base_version: 7,
            base_fields: text(&[("x", "0")]),
            fields: text(&[("x", "1")]),
        };
        outbox.enqueue(new("m1", "c-1", op), 0).unwrap();
        let first_key = outbox.get("m1").unwrap().idempotency_key.clone();
        outbox.mark_sending("m1").unwrap();
        let theirs = record(8, &[("x", "0"), ("y", "9")]);
        let outcome = outbox
            .get("m1")
            .unwrap()
            .merge_with(&theirs, &MergeRules::default())
            .unwrap();
        let handled = outbox
            .on_conflict("m1", &theirs, outcome, "fresh-key".into())
            .unwrap();
        assert!(matches!(handled, ConflictHandled::Resend { .. }));
        let entry = outbox.get("m1").unwrap();
        assert_ne!(entry.idempotency_key, first_key);
        assert_eq!(entry.idempotency_key, "fresh-key");
    }

    #[test]
    fn a_merged_conflict_is_resent_on_theirs_version() {
        let mut outbox = Outbox::new();
        let mine = MutationOp::Patch {
            base_version: 7,
            base_fields: text(&[("phone", "1")]),
            fields: text(&[("phone", "2")]),
        };
        outbox.enqueue(new("m1", "c-1", mine), 0).unwrap();
        outbox.enqueue(new("m2", "c-1", comment("k")), 0).unwrap();
        outbox.mark_sending("m1").unwrap();
        let theirs = record(8, &[("name", "Other"), ("phone", "1")]);
        let outcome = outbox
            .get("m1")
            .unwrap()
            .merge_with(&theirs, &MergeRules::default())
            .unwrap();
        let handled = outbox
            .on_conflict("m1", &theirs, outcome, "conflict-1".into())
            .unwrap();
        assert_eq!(
            handled,
            ConflictHandled::Resend {
                merged: vec!["phone".into()]
            }
        );
        let entry = outbox.get("m1").unwrap();
        assert_eq!(
            entry.op,
            MutationOp::Patch {
                base_version: 8,
                base_fields: text(&[("phone", "1")]),
                fields: text(&[("phone", "2")])
            }
        );
        assert_eq!((entry.state, entry.merge_rounds), (EntryState::Queued, 1));
        // Re-sent under the fresh key given (a key names one request).
        assert_ne!(entry.idempotency_key, "key-m1");
        // It keeps its place at the head of its lane.
        assert_eq!(sendable(&outbox, 0), ["m1"]);
    }

    #[test]
    fn an_overlapping_conflict_leaves_the_outbox_as_a_conflict() {
        let mut outbox = Outbox::new();
        let mine = MutationOp::Patch {
            base_version: 7,
            base_fields: text(&[("status", "lead")]),
            fields: text(&[("status", "won")]),
        };
        outbox.enqueue(new("m1", "c-1", mine), 0).unwrap();
        outbox.enqueue(new("m2", "c-1", comment("k")), 0).unwrap();
        outbox.mark_sending("m1").unwrap();
        let theirs = record(8, &[("status", "lost")]);
        let outcome = outbox
            .get("m1")
            .unwrap()
            .merge_with(&theirs, &MergeRules::default())
            .unwrap();
        let ConflictHandled::Conflict(conflict, entry) = outbox
            .on_conflict("m1", &theirs, outcome, "conflict-1".into())
            .unwrap()
        else {
            panic!("a conflict");
        };
        assert_eq!(entry.mutation_id, "m1");
        assert_eq!(
            *conflict,
            Conflict {
                id: "conflict-1".into(),
                collection: "customers".into(),
                record_id: "c-1".into(),
                base: 7,
                mine: text(&[("status", "won")]),
                theirs,
                fields: vec!["status".into()],
            }
        );
        assert_eq!(sendable(&outbox, 0), ["m2"]);
    }

    #[test]
    fn settled_conflicts_and_deletes() {
        let mut outbox = Outbox::new();
        outbox
            .enqueue(new("m1", "c-1", patch(7, &[("status", "won")])), 0)
            .unwrap();
        outbox.mark_sending("m1").unwrap();
        let theirs = record(8, &[("status", "won")]);
        let outcome = outbox
            .get("m1")
            .unwrap()
            .merge_with(&theirs, &MergeRules::default())
            .unwrap();
        assert!(matches!(
            outbox
                .on_conflict("m1", &theirs, outcome, "x".into())
                .unwrap(),
            ConflictHandled::Settled(_)
        ));
        assert!(outbox.is_idle());

        outbox
            .enqueue(new("m2", "c-1", MutationOp::Delete { base_version: 7 }), 0)
            .unwrap();
        outbox.mark_sending("m2").unwrap();
        let rules = MergeRules {
            on_conflict: OnConflict::Mine,
            ..MergeRules::default()
        };
        let outcome = outbox
            .get("m2")
            .unwrap()
            .merge_with(&theirs, &rules)
            .unwrap();
        outbox
            .on_conflict("m2", &theirs, outcome, "x".into())
            .unwrap();
        assert_eq!(
            outbox.get("m2").unwrap().op,
            MutationOp::Delete { base_version: 8 }
        );

        outbox.enqueue(new("m3", "c-2", comment("k")), 0).unwrap();
        outbox.mark_sending("m3").unwrap();
        assert!(outbox
            .get("m3")
            .unwrap()
            .merge_with(&theirs, &rules)
            .is_none());
        assert_eq!(
            outbox.on_conflict(
                "m3",
                &theirs,
                MergeOutcome::Settled {
                    conflicting: vec![]
                },
                "x".into()
            ),
            Err(OutboxError::NotMergeable("m3".into()))
        );
    }

    #[test]
    fn restores_from_stored_entries() {
        let mut outbox = Outbox::new();
        outbox
            .enqueue(new("m1", "a", patch(1, &[("x", "1")])), 0)
            .unwrap();
        outbox.enqueue(new("m2", "a", comment("k1")), 0).unwrap();
        outbox.enqueue(new("m3", "b", comment("k2")), 0).unwrap();
        outbox.mark_sending("m1").unwrap();
        outbox.mark_sending("m3").unwrap();
        outbox
            .on_permanent_failure("m3", error(ErrorCode::Forbidden))
            .unwrap();
        let json = serde_json::to_string(&outbox).unwrap();
        assert!(json.contains(r#""kind":"patch""#) && json.contains(r#""baseVersion":1"#));
        assert!(json.contains(r#""idempotencyKey":"key-m1""#));
        // Stored in any order (IndexedDB returns them by key).
        let mut stored: Vec<OutboxEntry> = serde_json::from_str(&json).unwrap();
        stored.reverse();
        let restored = Outbox::restore(stored);
        // The one that was sending when the tab died is queued again.
        assert_eq!(restored.get("m1").unwrap().state, EntryState::Queued);
        assert_eq!(restored.get("m1").unwrap().attempts, 1);
        assert_eq!(sendable(&restored, 0), ["m1"]);
        assert_eq!(restored.failed().len(), 1);
        let back: Outbox = serde_json::from_str(&json).unwrap();
        assert_eq!(back, restored);
        // New entries come after the restored ones.
        let mut restored = restored;
        restored.enqueue(new("m4", "a", comment("k3")), 0).unwrap();
        assert!(restored.get("m4").unwrap().seq > restored.get("m2").unwrap().seq);
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod properties {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, VecDeque};

    #[derive(Debug, Clone)]
    enum Step {
        Patch { lane: u8, field: u8 },
        Comment { lane: u8 },
        Send(usize),
        Succeed(usize),
        Transient(usize),
        Permanent(usize),
        Merge(usize),
        Retry(usize),
        Advance(u64),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (0_u8..3, 0_u8..3).prop_map(|(lane, field)| Step::Patch { lane, field }),
            2 => (0_u8..3).prop_map(|lane| Step::Comment { lane }),
            4 => any::<usize>().prop_map(Step::Send),
            3 => any::<usize>().prop_map(Step::Succeed),
            2 => any::<usize>().prop_map(Step::Transient),
            1 => any::<usize>().prop_map(Step::Permanent),
            1 => any::<usize>().prop_map(Step::Merge),
            1 => any::<usize>().prop_map(Step::Retry),
            2 => (0_u64..10_000).prop_map(Step::Advance),
        ]
    }

    fn pick<T: Clone>(items: &[T], index: usize) -> Option<T> {
        if items.is_empty() {
            None
        } else {
            items.get(index % items.len()).cloned()
        }
    }

    /// The test's own account of the outbox, to check it against.
    #[derive(Default)]
    struct Model {
        lanes: BTreeMap<String, VecDeque<String>>,
        ever_sent: BTreeMap<String, bool>,
        is_comment: BTreeMap<String, bool>,
        ended: BTreeMap<String, u32>,
        added: Vec<String>,
    }

    fn sending(outbox: &Outbox) -> Vec<String> {
        outbox
            .pending()
            .iter()
            .filter(|entry| entry.state == EntryState::Sending)
            .map(|entry| entry.mutation_id.clone())
            .collect()
    }

    fn check_lanes(outbox: &Outbox, model: &Model) -> Result<(), TestCaseError> {
        // The outbox's lanes are exactly the model's, in the same order, and
        // only a lane's head is ever in flight.
        let mut lanes: BTreeMap<String, VecDeque<String>> = BTreeMap::new();
        for entry in outbox.pending() {
            let lane = lanes.entry(entry.record_id.clone()).or_default();
            if entry.state == EntryState::Sending {
                prop_assert!(
                    lane.is_empty(),
                    "{} is sending behind another entry",
                    entry.mutation_id
                );
            }
            lane.push_back(entry.mutation_id.clone());
        }
        let expected: BTreeMap<String, VecDeque<String>> = model
            .lanes
            .iter()
            .filter(|(_, ids)| !ids.is_empty())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        prop_assert_eq!(lanes, expected);
        Ok(())
    }

    fn end(model: &mut Model, id: &str, lane: &str) -> Result<(), TestCaseError> {
        let queue = model.lanes.entry(lane.to_owned()).or_default();
        // Order within a lane: only the head ever gets its final answer.
        prop_assert_eq!(queue.front().map(String::as_str), Some(id));
        queue.pop_front();
        *model.ended.entry(id.to_owned()).or_default() += 1;
        Ok(())
    }

    proptest! {
        #[test]
        fn lanes_keep_order_and_every_entry_ends_once(steps in proptest::collection::vec(step(), 0..80)) {
            let mut outbox = Outbox::new();
            let mut model = Model::default();
            let policy = RetryPolicy::default();
            let mut now = 0_u64;
            let mut next = 0_u32;

            for step in steps {
                match step {
                    Step::Patch { lane, field } => {
                        let id = format!("m{next}");
                        next += 1;
                        let lane = format!("r{lane}");
                        let fields: Fields = [(format!("f{field}"), FieldValue::Number(f64::from(next)))].into();
                        let op = MutationOp::Patch { base_version: 1, base_fields: Fields::new(), fields };
                        let mutation = NewMutation {
                            mutation_id: id.clone(), idempotency_key: format!("k{id}"),
                            collection: "c".into(), record_id: lane.clone(), op,
                        };
                        match outbox.enqueue(mutation, now).unwrap() {
                            Enqueued::Added { .. } => {
                                model.lanes.entry(lane).or_default().push_back(id.clone());
                                model.added.push(id.clone());
                                model.is_comment.insert(id, false);
                            }
                            Enqueued::Folded { into } => {
                                // Folded only into the lane's tail, never sent, not a comment.
                                prop_assert_eq!(model.lanes.get(&lane).and_then(|q| q.back()), Some(&into));
                                prop_assert!(!model.ever_sent.get(&into).copied().unwrap_or(false));
                                prop_assert!(!model.is_comment.get(&into).copied().unwrap_or(true));
                            }
                        }
                    }
                    Step::Comment { lane } => {
                        let id = format!("m{next}");
                        next += 1;
                        let lane = format!("r{lane}");
                        let mutation = NewMutation {
                            mutation_id: id.clone(), idempotency_key: format!("k{id}"),
                            collection: "c".into(), record_id: lane.clone(),
                            op: MutationOp::Comment { comment_id: id.clone(), text: "t".into() },
                        };
                        prop_assert_eq!(outbox.enqueue(mutation, now).unwrap(), Enqueued::Added { mutation_id: id.clone() });
                        model.lanes.entry(lane).or_default().push_back(id.clone());
                        model.added.push(id.clone());
                        model.is_comment.insert(id, true);
                    }
                    Step::Send(i) => {
                        let ready: Vec<String> = outbox.next_sendable(now).iter().map(|e| e.mutation_id.clone()).collect();
                        if let Some(id) = pick(&ready, i) {
                            outbox.mark_sending(&id).unwrap();
                            model.ever_sent.insert(id, true);
                        }
                    }
                    Step::Succeed(i) => {
                        if let Some(id) = pick(&sending(&outbox), i) {
                            let entry = outbox.on_success(&id, None).unwrap();
                            end(&mut model, &id, &entry.record_id)?;
                        }
                    }
                    Step::Transient(i) => {
                        if let Some(id) = pick(&sending(&outbox), i) {
                            let error = EntryError { code: ErrorCode::Network, message: String::new(), details: None, at_ms: now };
                            let retrying = outbox.on_transient_failure(&id, error, now, &policy, 0.5, None).unwrap();
                            prop_assert!(retrying.retry_at_ms >= now);
                        }
                    }
                    Step::Permanent(i) => {
                        if let Some(id) = pick(&sending(&outbox), i) {
                            let error = EntryError { code: ErrorCode::Invalid, message: String::new(), details: None, at_ms: now };
                            let lane = outbox.on_permanent_failure(&id, error).unwrap().record_id.clone();
                            end(&mut model, &id, &lane)?;
                        }
                    }
                    Step::Merge(i) => {
                        if let Some(id) = pick(&sending(&outbox), i) {
                            let entry = outbox.get(&id).unwrap().clone();
                            let theirs = Record {
                                id: entry.record_id.clone(), version: 5, updated_at: String::new(),
                                updated_by: String::new(), fields: Fields::new(), comments: Vec::new(),
                            };
                            match entry.merge_with(&theirs, &MergeRules::default()) {
                                None => {
                                    // Comments never conflict: answer it as a success instead.
                                    outbox.on_success(&id, None).unwrap();
                                    end(&mut model, &id, &entry.record_id)?;
                                }
                                Some(outcome) => match outbox.on_conflict(&id, &theirs, outcome, format!("c{id}")).unwrap() {
                                    ConflictHandled::Resend { .. } => {}
                                    ConflictHandled::Settled(_) | ConflictHandled::Conflict(..) => {
                                        end(&mut model, &id, &entry.record_id)?;
                                    }
                                },
                            }
                        }
                    }
                    Step::Retry(i) => {
                        let failed: Vec<String> = outbox.failed().iter().map(|e| e.mutation_id.clone()).collect();
                        if let Some(id) = pick(&failed, i) {
                            let lane = outbox.get(&id).unwrap().record_id.clone();
                            outbox.retry(&id).unwrap();
                            // Back at the end of its lane: it will end once more.
                            model.lanes.entry(lane).or_default().push_back(id.clone());
                            *model.ended.entry(id).or_default() -= 1;
                        }
                    }
                    Step::Advance(ms) => now += ms,
                }
                check_lanes(&outbox, &model)?;
            }

            // Drain: everything pending ends, successes and refusals alike.
            let mut rounds = 0;
            while !outbox.is_idle() {
                rounds += 1;
                prop_assert!(rounds < 1_000);
                outbox.clear_retry_times();
                for id in sending(&outbox) {
                    outbox.release(&id).unwrap();
                }
                let ready: Vec<String> = outbox.next_sendable(now).iter().map(|e| e.mutation_id.clone()).collect();
                prop_assert!(!ready.is_empty());
                for (n, id) in ready.into_iter().enumerate() {
                    outbox.mark_sending(&id).unwrap();
                    let lane = if n % 3 == 2 {
                        let error = EntryError { code: ErrorCode::Invalid, message: String::new(), details: None, at_ms: now };
                        outbox.on_permanent_failure(&id, error).unwrap().record_id.clone()
                    } else {
                        outbox.on_success(&id, None).unwrap().record_id
                    };
                    end(&mut model, &id, &lane)?;
                }
                check_lanes(&outbox, &model)?;
            }
            // Every entry that was added (not folded) ended exactly once:
            // removed, or in the failed list.
            for id in &model.added {
                prop_assert_eq!(model.ended.get(id).copied(), Some(1), "{}", id);
            }
            prop_assert_eq!(model.ended.len(), model.added.len());
            for entry in outbox.failed() {
                prop_assert_eq!(entry.state, EntryState::Failed);
            }
        }
    }
}
