//! Confirmed records and this tab's staged changes.
//!
//! A change is *staged* from the moment the app asks for it until the server
//! has answered 2xx. [`StagedRecords::get`] and [`StagedRecords::list`] show
//! only what the server acknowledged; [`StagedRecords::view`] lays the staged
//! fields (and unsent comments) over it and says `pending`. A failure never
//! touches the confirmed record.
//!
//! ```no_run
//! use crm_sync::core::record::{Fields, RecordKey};
//! use crm_sync::core::staged::StagedRecords;
//!
//! let mut store = StagedRecords::new();
//! # let (record, fields): (crm_sync::core::record::Record, Fields) = unimplemented!();
//! store.apply_remote("customers", crm_sync::core::staged::RemoteChange::Put(record.clone()));
//! let key = RecordKey::new("customers", &record.id);
//! store.stage(&key, fields.clone())?;          // view shows it, get does not
//! # let answer = record;
//! store.commit("customers", answer, &fields);   // the server said 200
//! # Ok::<(), crm_sync::core::staged::StageError>(())
//! ```

use serde::{Deserialize, Serialize};

use crate::core::query::RecordRead;
use crate::core::record::{Comment, FieldValue, Fields, PendingComment, Record, RecordKey};
use crate::core::shelf::Shelf;
use crate::core::sort::CollectMap;
use crate::core::vecmap::VecMap;

/// Where a staged change is on its way to the server (docs/guide/offline.md, `pending()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StagedState {
    /// Waiting for its debounce batch.
    #[default]
    Staged,
    /// In the outbox, not being sent (offline, or waiting for a retry).
    Queued,
    /// A request is in flight.
    Sending,
    /// The server refused it for good; kept until retried or discarded.
    Failed,
}

/// What the staged change does to the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StagedKind {
    /// Changes fields of an existing record.
    #[default]
    Update,
    /// Makes a new record (not on the server yet).
    Create,
    /// Deletes the record.
    Delete,
}

/// This tab's not yet acknowledged changes of one record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StagedChange {
    /// Update, create or delete.
    pub kind: StagedKind,
    /// The confirmed version the change was made on (`If-Match`); 0 for a
    /// create.
    pub base_version: u64,
    /// For each staged field, the confirmed value it had when it was first
    /// staged (`null` when absent): the *base* of a three-way merge.
    pub base_fields: Fields,
    /// The changed fields; a later value of a field replaces an earlier one.
    pub fields: Fields,
    /// Comments not yet acknowledged, in the order they were written.
    pub comments: Vec<PendingComment>,
    /// Where the change is on its way to the server.
    pub state: StagedState,
}

impl StagedChange {
    /// A change that changes nothing (an update with no fields and no comments).
    pub fn is_empty(&self) -> bool {
        self.kind == StagedKind::Update && self.fields.is_empty() && self.comments.is_empty()
    }

    /// The base values of `fields` (for an outbox `Patch` of them).
    pub fn base_of(&self, fields: &Fields) -> Fields {
        fields
            .keys()
            .map(|name| {
                let value = self
                    .base_fields
                    .get(name)
                    .cloned()
                    .unwrap_or(FieldValue::Null);
                (name.clone(), value)
            })
            .collect_map()
    }
}

/// A record as this tab sees it: confirmed, with staged changes laid over.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordView {
    /// The record with staged fields applied (version and comments are the
    /// confirmed ones; a staged create has version 0).
    pub record: Record,
    /// Whether anything of it is not acknowledged yet.
    pub pending: bool,
    /// Comments written here that the server does not have yet, to show
    /// after `record.comments`.
    pub pending_comments: Vec<PendingComment>,
}

/// A change other people (or other tabs) made, from the changes feed.
#[derive(Debug, Clone, PartialEq)]
pub enum RemoteChange {
    /// The record as it is now.
    Put(Record),
    /// The record was deleted at this version.
    Delete {
        /// The record's id.
        id: String,
        /// The version of the delete.
        version: u64,
    },
}

/// Why a change cannot be staged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StageError {
    /// An update of a record this tab has not loaded: its base version is
    /// unknown, so the change could not carry `If-Match`.
    #[error("{}/{} is not loaded", .0.collection, .0.id)]
    UnknownRecord(RecordKey),
    /// A create with the id of a record that exists.
    #[error("{}/{} already exists", .0.collection, .0.id)]
    AlreadyExists(RecordKey),
    /// A change of a record that is being deleted.
    #[error("{}/{} is being deleted", .0.collection, .0.id)]
    Deleted(RecordKey),
}

/// What a commit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// The server's record became the confirmed one (false when a newer
    /// version had already arrived).
    pub replaced: bool,
    /// Changes staged after the send began are still staged.
    pub still_staged: bool,
}

/// Which records changed since a mark of [`StagedRecords::touched_since`]:
/// what a kept query result needs to lay in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Touched {
    /// Too many, or not known: anything kept must be made anew.
    #[default]
    All,
    /// These records (confirmed, staged or both), in the order touched.
    Keys(Vec<RecordKey>),
}

/// Past this many touched records, [`Touched::All`] is cheaper to act on.
const TOUCHED_MAX: usize = 2_048;

/// Confirmed records per `(collection, id)` and the staged change of each.
///
/// The confirmed records are kept packed, a [`Shelf`] per collection: the
/// methods that read them hand out [`Record`]s unpacked for the caller.
#[derive(Debug, Clone, Default)]
pub struct StagedRecords {
    confirmed: VecMap<String, Shelf>,
    staged: VecMap<RecordKey, StagedChange>,
    /// The records touched, in order, since mark `touched_from`.
    touched: Vec<RecordKey>,
    /// The mark of `touched[0]`; a reader at an older mark hears
    /// [`Touched::All`].
    touched_from: u64,
}

impl PartialEq for StagedRecords {
    /// Equal records and staged changes (what was touched does not count).
    fn eq(&self, other: &Self) -> bool {
        let shelves_equal = |a: &Self, b: &Self| {
            a.confirmed.iter().all(|(collection, shelf)| {
                shelf.is_empty()
                    || b.confirmed
                        .get(collection)
                        .is_some_and(|theirs| shelf.iter().eq(theirs.iter()))
            })
        };
        shelves_equal(self, other) && shelves_equal(other, self) && self.staged == other.staged
    }
}

impl StagedRecords {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces a collection's confirmed records with a full load (staged
    /// changes stay). A record that is already confirmed at a higher version
    /// (a feed event that overtook the load) is kept.
    pub fn load(&mut self, collection: &str, records: impl IntoIterator<Item = Record>) {
        let known = self.confirmed.remove(collection).unwrap_or_default();
        let fresh = records
            .into_iter()
            .map(|record| match known.get(&record.id) {
                Some(kept) if kept.version > record.version => kept,
                _ => record,
            });
        self.confirmed
            .insert(collection.to_owned(), Shelf::of(fresh));
        self.touch_all();
    }

    fn confirmed_record(&self, key: &RecordKey) -> Option<Record> {
        self.confirmed.get(key.collection.as_str())?.get(&key.id)
    }

    fn is_confirmed(&self, key: &RecordKey) -> bool {
        self.confirmed
            .get(key.collection.as_str())
            .is_some_and(|shelf| shelf.contains(&key.id))
    }

    fn confirmed_version(&self, key: &RecordKey) -> Option<u64> {
        self.confirmed
            .get(key.collection.as_str())?
            .version(&key.id)
    }

    /// Which records changed since the mark `since` (everything for
    /// `None`, or a mark too old), and the mark to ask from next time. A
    /// query, for any number of readers: nothing is taken.
    pub fn touched_since(&self, since: Option<u64>) -> (Touched, u64) {
        let now = self.touched_from + self.touched.len() as u64;
        let touched = match since {
            Some(since) if since >= self.touched_from => {
                let from = usize::try_from(since - self.touched_from).unwrap_or(usize::MAX);
                Touched::Keys(self.touched.get(from..).unwrap_or_default().to_vec())
            }
            _ => Touched::All,
        };
        (touched, now)
    }

    fn touch(&mut self, key: &RecordKey) {
        if self.touched.len() >= TOUCHED_MAX {
            self.touch_all();
        } else {
            self.touched.push(key.clone());
        }
    }

    /// Every record may have changed: a reader at any mark before now
    /// hears [`Touched::All`].
    fn touch_all(&mut self) {
        self.touched_from += self.touched.len() as u64 + 1;
        self.touched.clear();
    }

    /// Each record of a collection as [`StagedRecords::view`] shows it
    /// (staged deletes left out): the confirmed ones in id order, then
    /// staged creates in id order. Records nothing is staged on are read
    /// where they are kept, not unpacked (a query reads a field or two).
    pub fn for_each_view(&self, collection: &str, mut each: impl FnMut(&dyn RecordRead)) {
        let mut creates: Vec<&RecordKey> = Vec::new();
        let mut staged_ids: Vec<&str> = Vec::new();
        for key in self
            .staged
            .keys()
            .filter(|key| key.collection == collection)
        {
            staged_ids.push(&key.id);
            if !self.is_confirmed(key) {
                creates.push(key);
            }
        }
        crate::core::sort::sort(&mut staged_ids);
        if let Some(shelf) = self.confirmed.get(collection) {
            for packed in shelf.each_packed() {
                if staged_ids.binary_search(&packed.id()).is_err() {
                    each(&packed);
                    continue;
                }
                let key = RecordKey::new(collection, packed.id());
                if let Some(view) = self.view_of(&key, shelf.get(&key.id), self.staged.get(&key)) {
                    each(&view.record);
                }
            }
        }
        crate::core::sort::sort(&mut creates);
        for key in creates {
            if let Some(view) = self.view_of(key, None, self.staged.get(key)) {
                each(&view.record);
            }
        }
    }

    /// Up to `count` ids of a collection's confirmed records after `after`
    /// (from the first without it), in id order: a collection read a run at
    /// a time.
    pub fn ids_after(&self, collection: &str, after: Option<&str>, count: usize) -> Vec<String> {
        self.confirmed
            .get(collection)
            .map(|shelf| shelf.ids_after(after, count))
            .unwrap_or_default()
    }

    /// How many confirmed records there are, in every collection.
    pub fn len(&self) -> usize {
        self.confirmed.values().map(Shelf::len).sum()
    }

    /// Whether no record is confirmed.
    pub fn is_empty(&self) -> bool {
        self.confirmed.values().all(Shelf::is_empty)
    }

    /// The confirmed record: what the server last acknowledged.
    pub fn get(&self, collection: &str, id: &str) -> Option<Record> {
        self.confirmed.get(collection)?.get(id)
    }

    /// Whether a record is confirmed (without reading it).
    pub fn contains(&self, collection: &str, id: &str) -> bool {
        self.confirmed
            .get(collection)
            .is_some_and(|shelf| shelf.contains(id))
    }

    /// The version and comment count of a confirmed record, without
    /// reading it whole.
    pub fn stamp(&self, collection: &str, id: &str) -> Option<(u64, usize)> {
        self.confirmed.get(collection)?.stamp(id)
    }

    /// Each confirmed record's id, version and comment count, in id order,
    /// without reading the records whole.
    pub fn stamps<'a>(
        &'a self,
        collection: &str,
    ) -> impl Iterator<Item = (&'a str, u64, usize)> + 'a {
        self.confirmed
            .get(collection)
            .into_iter()
            .flat_map(Shelf::stamps)
    }

    /// How many confirmed records a collection has.
    pub fn count(&self, collection: &str) -> usize {
        self.confirmed.get(collection).map_or(0, Shelf::len)
    }

    /// All confirmed records of a collection, by id.
    pub fn list(&self, collection: &str) -> Vec<Record> {
        self.confirmed
            .get(collection)
            .map(|shelf| shelf.iter().collect())
            .unwrap_or_default()
    }

    /// The staged change of a record, if any.
    pub fn staged(&self, key: &RecordKey) -> Option<&StagedChange> {
        self.staged.get(key)
    }

    /// Every staged change, by key.
    pub fn staged_changes(&self) -> impl Iterator<Item = (&RecordKey, &StagedChange)> {
        self.staged.iter()
    }

    /// The record with this tab's staged changes laid over it; `None` when
    /// it neither exists nor is being created, or is being deleted.
    pub fn view(&self, collection: &str, id: &str) -> Option<RecordView> {
        let key = RecordKey::new(collection, id);
        self.view_of(&key, self.confirmed_record(&key), self.staged.get(&key))
    }

    /// [`StagedRecords::view`] of every record of a collection (staged
    /// creates included, staged deletes left out), by id.
    pub fn view_list(&self, collection: &str) -> Vec<RecordView> {
        let mut keys: Vec<RecordKey> = self
            .confirmed
            .get(collection)
            .into_iter()
            .flat_map(Shelf::ids)
            .map(|id| RecordKey::new(collection, id))
            .chain(
                self.staged
                    .keys()
                    .filter(|key| key.collection == collection)
                    .cloned(),
            )
            .collect();
        crate::core::sort::sort(&mut keys);
        keys.dedup();
        keys.into_iter()
            .filter_map(|key| {
                self.view_of(&key, self.confirmed_record(&key), self.staged.get(&key))
            })
            .collect()
    }

    fn view_of(
        &self,
        key: &RecordKey,
        confirmed: Option<Record>,
        staged: Option<&StagedChange>,
    ) -> Option<RecordView> {
        let Some(change) = staged else {
            return confirmed.map(|record| RecordView {
                record,
                pending: false,
                pending_comments: Vec::new(),
            });
        };
        let mut record = match (change.kind, confirmed) {
            (StagedKind::Delete, _) => return None,
            (_, Some(record)) => record,
            (StagedKind::Create, None) => Record::empty(&key.id),
            (StagedKind::Update, None) => return None,
        };
        record.fields.extend(change.fields.clone());
        // The server may have a comment before this tab heard back (another
        // tab sent it, or the answer was lost): show it once.
        let pending_comments: Vec<PendingComment> = change
            .comments
            .iter()
            .filter(|pending| {
                !record
                    .comments
                    .iter()
                    .any(|comment| comment.id == pending.id)
            })
            .cloned()
            .collect();
        Some(RecordView {
            pending: !change.is_empty(),
            record,
            pending_comments,
        })
    }

    /// Stages changed fields of an existing record.
    ///
    /// # Errors
    ///
    /// [`StageError::UnknownRecord`] when the record is neither confirmed
    /// nor being created; [`StageError::Deleted`] when it is being deleted.
    pub fn stage(&mut self, key: &RecordKey, fields: Fields) -> Result<(), StageError> {
        if fields.is_empty() {
            return Ok(());
        }
        let confirmed = self.confirmed_record(key);
        let change = match self.staged.get_mut(key) {
            Some(change) if change.kind == StagedKind::Delete => {
                return Err(StageError::Deleted(key.clone()))
            }
            Some(change) => change,
            None => {
                let Some(record) = &confirmed else {
                    return Err(StageError::UnknownRecord(key.clone()));
                };
                self.staged.get_or_insert_with(key.clone(), || {
                    empty_change(StagedKind::Update, record.version)
                })
            }
        };
        for name in fields.keys() {
            if !change.base_fields.contains_key(name) {
                let base = confirmed
                    .as_ref()
                    .and_then(|record| record.fields.get(name))
                    .cloned()
                    .unwrap_or(FieldValue::Null);
                change.base_fields.insert(name.clone(), base);
            }
        }
        change.fields.extend(fields);
        if change.state == StagedState::Failed {
            // New intent of the person: the change is on its way again.
            change.state = StagedState::Staged;
        }
        self.touch(key);
        Ok(())
    }

    /// Stages a new record.
    ///
    /// # Errors
    ///
    /// [`StageError::AlreadyExists`] when a record with this key is
    /// confirmed or staged.
    pub fn stage_create(&mut self, key: &RecordKey, fields: Fields) -> Result<(), StageError> {
        if self.is_confirmed(key) || self.staged.contains_key(key) {
            return Err(StageError::AlreadyExists(key.clone()));
        }
        let mut change = empty_change(StagedKind::Create, 0);
        change.base_fields = fields
            .keys()
            .map(|name| (name.clone(), FieldValue::Null))
            .collect_map();
        change.fields = fields;
        self.staged.insert(key.clone(), change);
        self.touch(key);
        Ok(())
    }

    /// Stages the deletion of a record. Staged fields are dropped (they
    /// would be deleted anyway); unsent comments stay so nothing written
    /// is silently lost before the delete is acknowledged.
    ///
    /// # Errors
    ///
    /// [`StageError::UnknownRecord`] when the record is neither confirmed
    /// nor being created.
    pub fn stage_delete(&mut self, key: &RecordKey) -> Result<(), StageError> {
        let confirmed_version = self.confirmed_version(key);
        match (self.staged.get_mut(key), confirmed_version) {
            (Some(change), _) => {
                change.kind = StagedKind::Delete;
                change.fields.clear();
                change.base_fields.clear();
                change.state = StagedState::Staged;
            }
            (None, Some(version)) => {
                self.staged
                    .insert(key.clone(), empty_change(StagedKind::Delete, version));
            }
            (None, None) => return Err(StageError::UnknownRecord(key.clone())),
        }
        self.touch(key);
        Ok(())
    }

    /// Stages a comment. Comments never conflict, so a record this tab has
    /// not loaded may be commented on.
    pub fn stage_comment(&mut self, key: &RecordKey, comment: PendingComment) {
        let version = self.confirmed_version(key).unwrap_or(0);
        let change = self
            .staged
            .get_or_insert_with(key.clone(), || empty_change(StagedKind::Update, version));
        if !change
            .comments
            .iter()
            .any(|pending| pending.id == comment.id)
        {
            change.comments.push(comment);
        }
        self.touch(key);
    }

    /// Sets where the staged change is on its way; false when there is none.
    pub fn set_state(&mut self, key: &RecordKey, state: StagedState) -> bool {
        let Some(change) = self.staged.get_mut(key) else {
            return false;
        };
        change.state = state;
        self.touch(key);
        true
    }

    /// The server answered 2xx with `record` to a create or patch that sent
    /// `sent`.
    ///
    /// The record becomes the confirmed one unless a newer version is
    /// confirmed already. The sent fields leave the staged change; a field
    /// staged again with another value after the send began stays staged,
    /// now based on the record's version.
    pub fn commit(&mut self, collection: &str, record: Record, sent: &Fields) -> Committed {
        let key = RecordKey::new(collection, &record.id);
        let version = record.version;
        let replaced = self.put_confirmed(key.clone(), record);
        let mut still_staged = false;
        if let Some(change) = self.staged.get_mut(&key) {
            for (name, value) in sent {
                if change.fields.get(name) == Some(value) {
                    change.fields.remove(name);
                    change.base_fields.remove(name);
                }
            }
            if change.kind == StagedKind::Create {
                change.kind = StagedKind::Update;
            }
            change.base_version = change.base_version.max(version);
            still_staged = !change.is_empty();
            if still_staged {
                if change.state != StagedState::Failed {
                    change.state = StagedState::Staged;
                }
            } else {
                self.staged.remove(&key);
            }
        }
        self.touch(&key);
        Committed {
            replaced,
            still_staged,
        }
    }

    /// The server answered 2xx to a delete: the record is gone, with
    /// whatever was staged on it.
    pub fn commit_delete(&mut self, key: &RecordKey) {
        if let Some(shelf) = self.confirmed.get_mut(key.collection.as_str()) {
            shelf.remove(&key.id);
        }
        self.staged.remove(key);
        self.touch(key);
    }

    /// The server acknowledged a comment: it leaves the pending ones and
    /// joins the confirmed record's log (comments do not change the version).
    pub fn commit_comment(&mut self, key: &RecordKey, comment: Comment) {
        if let Some(change) = self.staged.get_mut(key) {
            change.comments.retain(|pending| pending.id != comment.id);
            if change.is_empty() {
                self.staged.remove(key);
            }
        }
        if let Some(mut record) = self.confirmed_record(key) {
            if !record.comments.iter().any(|known| known.id == comment.id) {
                record.comments.push(comment);
                self.shelf(&key.collection).insert(&record);
            }
        }
        self.touch(key);
    }

    /// The server refused the change for good: it is marked failed (kept for
    /// a retry); the confirmed record is untouched. False when nothing is staged.
    pub fn fail(&mut self, key: &RecordKey) -> bool {
        self.set_state(key, StagedState::Failed)
    }

    /// Drops the staged fields that still hold the given values (a
    /// discarded mutation, or fields the merge gave to theirs), and the
    /// change if nothing is left.
    pub fn unstage(&mut self, key: &RecordKey, fields: &Fields) {
        if let Some(change) = self.staged.get_mut(key) {
            for (name, value) in fields {
                if change.fields.get(name) == Some(value) {
                    change.fields.remove(name);
                    change.base_fields.remove(name);
                }
            }
            if change.is_empty() {
                self.staged.remove(key);
            }
            self.touch(key);
        }
    }

    /// Drops one unsent comment.
    pub fn unstage_comment(&mut self, key: &RecordKey, comment_id: &str) {
        if let Some(change) = self.staged.get_mut(key) {
            change.comments.retain(|pending| pending.id != comment_id);
            if change.is_empty() {
                self.staged.remove(key);
            }
            self.touch(key);
        }
    }

    /// Drops the whole staged change of a record (discard, or a conflict
    /// handed to a person) and returns it.
    pub fn discard(&mut self, key: &RecordKey) -> Option<StagedChange> {
        self.touch(key);
        self.staged.remove(key)
    }

    /// After a merge re-sent the change on `theirs`: the change is now based
    /// on theirs' version and values.
    pub fn rebase(&mut self, key: &RecordKey, theirs: &Record) {
        if let Some(change) = self.staged.get_mut(key) {
            change.base_version = theirs.version;
            for (name, base) in change.base_fields.iter_mut() {
                *base = theirs.fields.get(name).cloned().unwrap_or(FieldValue::Null);
            }
            self.touch(key);
        }
    }

    /// A change from the changes feed or another tab. The confirmed record
    /// follows it (never going back to an older version); staged changes
    /// stay laid over it. Returns whether the confirmed record changed.
    pub fn apply_remote(&mut self, collection: &str, change: RemoteChange) -> bool {
        match change {
            RemoteChange::Put(record) => {
                let key = RecordKey::new(collection, &record.id);
                self.put_confirmed(key, record)
            }
            RemoteChange::Delete { id, version } => {
                let key = RecordKey::new(collection, id);
                match self.confirmed_version(&key) {
                    Some(known) if known <= version => {
                        self.shelf(collection).remove(&key.id);
                        self.touch(&key);
                        true
                    }
                    _ => false,
                }
            }
        }
    }

    /// Confirms `record` unless a newer version is confirmed already. At
    /// the same version the comment logs are joined: comments do not change
    /// `version`, so an answer read before a comment was posted can arrive
    /// after the record that has it (found by the engine's simulation).
    fn put_confirmed(&mut self, key: RecordKey, mut record: Record) -> bool {
        match self.confirmed_version(&key) {
            Some(known) if known > record.version => false,
            Some(known) if known == record.version => {
                let Some(known) = self.confirmed_record(&key) else {
                    return false;
                };
                join_comments(&mut record, &known);
                if known == record {
                    return false;
                }
                self.shelf(&key.collection).insert(&record);
                true
            }
            _ => {
                self.touch(&key);
                self.shelf(&key.collection).insert(&record);
                true
            }
        }
    }

    /// The shelf of `collection`, made empty if there is none.
    fn shelf(&mut self, collection: &str) -> &mut Shelf {
        self.confirmed
            .get_or_insert_with(collection.to_owned(), Shelf::default)
    }
}

/// Adds to `record` the comments of `other` (the same record at the same
/// version) that it lacks, keeping the log in the order it was written.
pub fn join_comments(record: &mut Record, other: &Record) {
    let missing: Vec<Comment> = other
        .comments
        .iter()
        .filter(|c| !record.comments.iter().any(|mine| mine.id == c.id))
        .cloned()
        .collect();
    if missing.is_empty() {
        return;
    }
    record.comments.extend(missing);
    // Stable: comments of one instant keep the order they came in.
    crate::core::sort::sort_by(&mut record.comments, |a, b| a.created_at.cmp(&b.created_at));
}

fn empty_change(kind: StagedKind, base_version: u64) -> StagedChange {
    StagedChange {
        kind,
        base_version,
        base_fields: Fields::new(),
        fields: Fields::new(),
        comments: Vec::new(),
        state: StagedState::Staged,
    }
}

#[cfg(test)]
mod tests;

#[cfg(all(test, not(target_arch = "wasm32")))]
mod properties;
