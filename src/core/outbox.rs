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
                .filter(|tail| made_on_tail(tail, &base_fields))
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
    /// [`MergeOutcome::Conflict`] removes it and returns a [`Conflict`] for
    /// a person, named by the key of the request the 409 answered: two tabs
    /// that sent one entry under one key both get the server's kept 409,
    /// and the conflict each stores is then one conflict, not two.
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
                    id: entry.idempotency_key.clone(),
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

/// Whether a later patch was made on what `tail` holds of each field
/// both change: the value the tail's change was made on, or the tail's
/// value. A patch made on another value (a conflict's resolution, made on
/// the server's newer value) is an entry of its own: folded, the tail's
/// older base would stand for it, and a resolution putting the field back
/// to that base would read as no change to a 409's merge, which settled
/// for the server's value (found by the simulation's long run, seed 55513:
/// a lost update).
fn made_on_tail(tail: &OutboxEntry, base_fields: &Fields) -> bool {
    let MutationOp::Patch {
        base_fields: tail_base,
        fields: tail_fields,
        ..
    } = &tail.op
    else {
        return true;
    };
    base_fields.iter().all(|(name, base)| {
        tail_base
            .get(name)
            .is_none_or(|tail_base| tail_base == base || tail_fields.get(name) == Some(base))
    })
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
mod tests;

#[cfg(all(test, not(target_arch = "wasm32")))]
mod properties;
