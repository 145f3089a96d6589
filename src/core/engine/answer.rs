//! A sent entry's answer: commit a 2xx, merge a 409 (re-send, settle, or
//! keep a conflict for a person), end the session on a 401, retry what is
//! transient, keep a dead letter for the rest (a 409 overlap included) and
//! tell the app of it.

use super::read::{ReadTarget, Reader};
use super::write::unstage;
use super::{
    changed_here, ClientEngine, DrainReport, Effect, Failure, KeptConflict, Origin, Outcome,
    Refusal, Reply, StoreOp,
};
use crate::core::code::ErrorCode;
use crate::core::outbox::{ConflictHandled, EntryError, EntryState, MutationOp, OutboxEntry};
use crate::core::reachability::Answer;
use crate::core::record::{Record, RecordKey};
use crate::core::staged::{RemoteChange, StagedState};

impl ClientEngine {
    /// A sent entry's answer.
    pub(super) fn answered(
        &mut self,
        mutation_id: &str,
        reply: Reply,
        now: u64,
        out: &mut Vec<Effect>,
    ) {
        let answer = match &reply {
            Reply::Refused(refusal) => reach_of(refusal),
            _ => Some(Answer::Answered),
        };
        if let Some(answer) = answer {
            self.request_ended(answer, now, out);
        }
        let Some(entry) = self
            .outbox
            .get(mutation_id)
            .filter(|e| e.state == EntryState::Sending)
            .cloned()
        else {
            // Not ours any more (discarded, re-read from another tab).
            return;
        };
        match reply {
            Reply::Record(record) => self.committed(&entry, Ok(record), now, out),
            Reply::Unreadable(why) => self.committed(&entry, Err(why), now, out),
            Reply::Comment(comment) => {
                let key = RecordKey::new(&entry.collection, &entry.record_id);
                let _ = self.outbox.on_success(mutation_id, None);
                self.records.commit_comment(&key, comment);
                self.counters.commits += 1;
                let done = StoreOp::entry_gone(mutation_id).to_vec();
                match self.records.get(&key.collection, &key.id) {
                    Some(record) => {
                        self.tell_committed(&key, &record, done, out);
                        self.settle(mutation_id, Ok(Outcome::Committed(record)), out);
                    }
                    // Commented without loading the record: read it, so the
                    // caller gets the record with its log.
                    None => {
                        out.push(Effect::Write {
                            id: 0,
                            ops: done,
                            persisted: None,
                        });
                        self.start_read(
                            ReadTarget::Record(key),
                            Reader::Entry(mutation_id.to_owned()),
                            out,
                        );
                    }
                }
            }
            Reply::Done => {
                let key = RecordKey::new(&entry.collection, &entry.record_id);
                let _ = self.outbox.on_success(mutation_id, None);
                let last = self.records.get(&key.collection, &key.id);
                self.records.commit_delete(&key);
                self.local.gone(&key);
                self.counters.commits += 1;
                out.push(Effect::Write {
                    id: 0,
                    ops: [
                        StoreOp::entry_gone(mutation_id).to_vec(),
                        vec![StoreOp::DeleteRecord(key.clone())],
                    ]
                    .concat(),
                    persisted: None,
                });
                changed_here(key.clone(), out);
                out.push(Effect::TellCommitted {
                    key: key.clone(),
                    version: 0,
                });
                let record = last.unwrap_or_else(|| Record::empty(&key.id));
                self.settle(mutation_id, Ok(Outcome::Committed(record)), out);
            }
            Reply::Refused(refusal) => self.refused(&entry, refusal, now, out),
        }
        self.drop_unbacked_changes();
        self.end_drain_if_quiet(now, out);
        out.push(Effect::Changed);
    }

    /// A 2xx of a PATCH or create: the record is confirmed.
    fn committed(
        &mut self,
        entry: &OutboxEntry,
        record: Result<Record, String>,
        now: u64,
        out: &mut Vec<Effect>,
    ) {
        let key = RecordKey::new(&entry.collection, &entry.record_id);
        let id = &entry.mutation_id;
        match record {
            Ok(record) => {
                let sent = entry.op.fields().cloned().unwrap_or_default();
                let _ = self.outbox.on_success(id, Some(&record));
                self.records
                    .commit(&entry.collection, record.clone(), &sent);
                self.counters.commits += 1;
                let merged = self.merged.remove(id).unwrap_or_default();
                let mut done = StoreOp::entry_gone(id).to_vec();
                self.keep_undoable(entry, &record, now, &mut done, out);
                self.tell_committed(&key, &record, done, out);
                let outcome = if merged.is_empty() {
                    Outcome::Committed(record)
                } else {
                    Outcome::Merged(record, merged)
                };
                self.settle(id, Ok(outcome), out);
            }
            Err(why) => {
                // In, but we do not know its record: drop the staged change
                // and let the caller hear why.
                let _ = self.outbox.on_success(id, None);
                unstage(&mut self.records, entry);
                out.push(Effect::Write {
                    id: 0,
                    ops: StoreOp::entry_gone(id).to_vec(),
                    persisted: None,
                });
                out.push(Effect::RecordChanged {
                    key,
                    origin: Origin::Local,
                });
                self.settle(id, Err(Failure::Unreadable(why)), out);
            }
        }
    }

    /// Writes a committed record (and drops its entry), tells the page and
    /// the other tabs.
    fn tell_committed(
        &mut self,
        key: &RecordKey,
        record: &Record,
        mut ops: Vec<StoreOp>,
        out: &mut Vec<Effect>,
    ) {
        ops.push(StoreOp::PutRecord {
            collection: key.collection.clone(),
            record: record.clone(),
        });
        out.push(Effect::Write {
            id: 0,
            ops,
            persisted: None,
        });
        changed_here(key.clone(), out);
        out.push(Effect::TellCommitted {
            key: key.clone(),
            version: record.version,
        });
    }

    /// The record read for a comment made on a record not loaded here.
    pub(super) fn fetched(
        &mut self,
        mutation_id: &str,
        record: Option<Record>,
        out: &mut Vec<Effect>,
    ) {
        match record {
            Some(record) => {
                self.settle(mutation_id, Ok(Outcome::Committed(record)), out);
            }
            None => self.settle(
                mutation_id,
                Err(Failure::Unreadable("record vanished".into())),
                out,
            ),
        }
    }

    /// Not a 2xx: a version conflict, an ended session, a transient
    /// failure, or a refusal for good (a double booking among them).
    fn refused(&mut self, entry: &OutboxEntry, refusal: Refusal, now: u64, out: &mut Vec<Effect>) {
        let version_conflict = refusal.status == Some(409) && refusal.code == ErrorCode::Conflict;
        if version_conflict && !matches!(entry.op, MutationOp::Comment { .. }) {
            return self.version_conflict(entry, refusal, now, out);
        }
        if refusal.code == ErrorCode::Unauthorized {
            let _ = self.outbox.release(&entry.mutation_id);
            self.session_ended(out);
            let failure = Failure::Answer(Box::new(refusal));
            self.settle(&entry.mutation_id, Err(failure), out);
            return;
        }
        if refusal.transient {
            return self.transient(entry, refusal, now, out);
        }
        // Everything else (422, 403, 404, a 409 overlap, ...) is kept as
        // the server said it, for a person: resending as it is cannot
        // succeed, but the person may move the booking, fix the value, or
        // drop the change, and must hear of it either way.
        let error = EntryError {
            code: refusal.code,
            message: refusal.message.clone(),
            details: refusal.details.clone(),
            at_ms: now,
        };
        self.permanent(entry, error, Failure::Answer(Box::new(refusal)), out);
    }

    fn version_conflict(
        &mut self,
        entry: &OutboxEntry,
        mut refusal: Refusal,
        now: u64,
        out: &mut Vec<Effect>,
    ) {
        // Another tab finished this entry while it was on the wire here
        // (its copy met the same 409 and became a conflict, or was
        // merged and sent): merging again here would make one change two
        // conflicts, or send it again beside its conflict (found by the
        // simulation).
        if self.dropped_if_finished_elsewhere(entry, out) {
            return;
        }
        let unreadable = |why: String| EntryError {
            code: ErrorCode::BadResponse,
            message: why,
            details: None,
            at_ms: now,
        };
        let key = RecordKey::new(&entry.collection, &entry.record_id);
        let theirs = match refusal.current.take() {
            Some(Ok(record)) => record,
            Some(Err(why)) => {
                let failure = Failure::Unreadable(why.clone());
                return self.permanent(entry, unreadable(why), failure, out);
            }
            None => {
                let why = "a 409 without the current record".to_owned();
                let failure = Failure::Unreadable(why.clone());
                return self.permanent(entry, unreadable(why), failure, out);
            }
        };
        let Some(outcome) = entry.merge_with(&theirs, &self.config.rules) else {
            let error = EntryError {
                code: refusal.code,
                message: refusal.message.clone(),
                details: refusal.details.clone(),
                at_ms: now,
            };
            let failure = Failure::Answer(Box::new(refusal));
            return self.permanent(entry, error, failure, out);
        };
        // The base as the change saw it: confirmed values with the base
        // values of the changed fields.
        let base_record = self.records.get(&key.collection, &key.id).map(|mut r| {
            if let MutationOp::Patch {
                base_fields,
                base_version,
                ..
            } = &entry.op
            {
                r.version = *base_version;
                for (k, v) in base_fields {
                    r.fields.insert(k.clone(), v.clone());
                }
            }
            r
        });
        let fresh_id = resend_key(&entry.idempotency_key);
        let handled = self
            .outbox
            .on_conflict(&entry.mutation_id, &theirs, outcome, fresh_id);
        let mut ops = vec![StoreOp::PutRecord {
            collection: key.collection.clone(),
            record: theirs.clone(),
        }];
        let id = entry.mutation_id.clone();
        // The server's record, stored here, is told to the other tabs too
        // (found by the simulation: a tab that learned a version only from
        // a 409 kept it to itself, and its other tabs an older one).
        let told = Effect::TellCommitted {
            key: key.clone(),
            version: theirs.version,
        };
        let stored = handled.is_ok();
        match handled {
            Ok(ConflictHandled::Resend { merged }) => {
                self.counters.merged += 1;
                self.records
                    .apply_remote(&key.collection, RemoteChange::Put(theirs.clone()));
                self.records.rebase(&key, &theirs);
                let acc = self.merged.get_or_insert_with(id.clone(), Vec::new);
                for m in merged {
                    if !acc.contains(&m) {
                        acc.push(m);
                    }
                }
                if let Some(updated) = self.outbox.get(&id).cloned() {
                    ops.push(StoreOp::UpdateEntry {
                        entry: updated,
                        if_key: entry.idempotency_key.clone(),
                    });
                }
                out.push(Effect::Write {
                    id: 0,
                    ops,
                    persisted: None,
                });
            }
            Ok(ConflictHandled::Settled(settled)) => {
                self.counters.merged += 1;
                let sent = settled.op.fields().cloned().unwrap_or_default();
                self.records.commit(&key.collection, theirs.clone(), &sent);
                ops.extend(StoreOp::entry_gone(&id));
                out.push(Effect::Write {
                    id: 0,
                    ops,
                    persisted: None,
                });
                let merged = self.merged.remove(&id).unwrap_or_default();
                out.push(Effect::RecordChanged {
                    key,
                    origin: Origin::Server,
                });
                self.settle(&id, Ok(Outcome::Merged(theirs, merged)), out);
            }
            Ok(ConflictHandled::Conflict(conflict, _)) => {
                let kept = KeptConflict {
                    conflict: (*conflict).clone(),
                    base: base_record,
                };
                self.counters.conflicts += 1;
                self.records
                    .apply_remote(&key.collection, RemoteChange::Put(theirs.clone()));
                self.records.discard(&key);
                // Saves made since, still in the debounce window, are not
                // part of the conflict (found by the simulation: one was
                // shown nowhere until it was sent).
                self.stage_waiting(&key);
                self.merged.remove(&id);
                self.conflicts.insert(conflict.id.clone(), kept.clone());
                ops.extend(StoreOp::entry_gone(&id));
                ops.push(StoreOp::PutConflict(kept.clone()));
                out.push(Effect::Write {
                    id: 0,
                    ops,
                    persisted: None,
                });
                out.push(Effect::Changed);
                out.push(Effect::RecordChanged {
                    key,
                    origin: Origin::Server,
                });
                out.push(Effect::ConflictFound(Box::new(kept)));
                self.settle(&id, Ok(Outcome::Conflict(conflict)), out);
            }
            Err(e) => {
                let why = e.to_string();
                let error = EntryError {
                    code: ErrorCode::Invalid,
                    message: why.clone(),
                    details: None,
                    at_ms: now,
                };
                self.permanent(entry, error, Failure::Invalid(why), out);
            }
        }
        if stored {
            out.push(told);
        }
    }

    fn transient(
        &mut self,
        entry: &OutboxEntry,
        refusal: Refusal,
        now: u64,
        out: &mut Vec<Effect>,
    ) {
        if self.dropped_if_finished_elsewhere(entry, out) {
            return;
        }
        let error = EntryError {
            code: refusal.code,
            message: refusal.message,
            details: refusal.details,
            at_ms: now,
        };
        self.counters.retries += 1;
        let sample = self.ids.unit();
        let retrying = self.outbox.on_transient_failure(
            &entry.mutation_id,
            error,
            now,
            &self.config.retry,
            sample,
            refusal.retry_after_ms,
        );
        let key = RecordKey::new(&entry.collection, &entry.record_id);
        self.records.set_state(&key, StagedState::Queued);
        let exhausted = retrying.map(|r| r.exhausted).unwrap_or(true);
        if exhausted || !self.reach.online() {
            let id = entry.mutation_id.clone();
            self.settle(&id, Ok(Outcome::Queued(id.clone())), out);
        }
        if let Some(updated) = self.outbox.get(&entry.mutation_id).cloned() {
            out.push(Effect::Write {
                id: 0,
                ops: vec![StoreOp::UpdateEntry {
                    entry: updated,
                    if_key: entry.idempotency_key.clone(),
                }],
                persisted: None,
            });
        }
    }

    /// An entry another tab finished (sent, or resolved into a conflict)
    /// while it was on the wire here is dropped, whatever this send's
    /// answer (a transient failure, a refusal, a 409): not retried, not
    /// merged again, and not kept as a dead letter IndexedDB no longer has (found by the simulation: two tabs sent a retried entry,
    /// one met a conflict and the other a refusal, and kept it failed).
    fn dropped_if_finished_elsewhere(
        &mut self,
        entry: &OutboxEntry,
        out: &mut Vec<Effect>,
    ) -> bool {
        if self.finished_elsewhere.remove(&entry.mutation_id) {
            if let Ok(gone) = self.outbox.discard_sending(&entry.mutation_id) {
                unstage(&mut self.records, &gone);
            }
            self.settle(&entry.mutation_id, Err(Failure::Cancelled), out);
            return true;
        }
        false
    }

    /// Refused for good: a dead letter, kept with the server's words until
    /// a person retries, edits or discards it, and told to the app.
    fn permanent(
        &mut self,
        entry: &OutboxEntry,
        error: EntryError,
        failure: Failure,
        out: &mut Vec<Effect>,
    ) {
        if self.dropped_if_finished_elsewhere(entry, out) {
            return;
        }
        let key = RecordKey::new(&entry.collection, &entry.record_id);
        self.counters.failed += 1;
        let failed = self
            .outbox
            .on_permanent_failure(&entry.mutation_id, error)
            .ok()
            .cloned();
        self.records.fail(&key);
        // Moved from the outbox to the dead letters, if no other tab
        // finished it meanwhile.
        let ops = match &failed {
            Some(f) => vec![StoreOp::UpdateEntry {
                entry: f.clone(),
                if_key: entry.idempotency_key.clone(),
            }],
            None => vec![StoreOp::DeleteEntry {
                mutation_id: entry.mutation_id.clone(),
                failed: false,
            }],
        };
        out.push(Effect::Write {
            id: 0,
            ops,
            persisted: None,
        });
        changed_here(key, out);
        if let Some(f) = failed {
            out.push(Effect::FailureFound(Box::new(f)));
        }
        self.settle(&entry.mutation_id, Err(failure), out);
    }

    /// When nothing of the outbox is on the wire any more, the drain that
    /// began ends: one line of the sync log.
    fn end_drain_if_quiet(&mut self, now: u64, out: &mut Vec<Effect>) {
        let on_the_wire = self
            .outbox
            .pending()
            .iter()
            .any(|e| e.state == EntryState::Sending);
        if on_the_wire {
            return;
        }
        let Some(drain) = self.drain.take() else {
            return;
        };
        let (c, then) = (&self.counters, &drain.at_start);
        let error = self
            .outbox
            .pending()
            .iter()
            .find_map(|e| e.last_error.as_ref())
            .map(|e| e.message.clone());
        out.push(Effect::Drained(DrainReport {
            since: drain.since,
            duration_ms: now.saturating_sub(drain.since),
            pushed: c.commits.saturating_sub(then.commits),
            merged: c.merged.saturating_sub(then.merged),
            conflicts: c.conflicts.saturating_sub(then.conflicts),
            failed: c.failed.saturating_sub(then.failed),
            error,
        }));
    }
}

/// What a failed exchange says about reachability; `None` for a request
/// that never left.
/// The `Idempotency-Key` of the request that re-sends an entry merged
/// after a 409, made from the key the 409 answered: two tabs that sent one
/// request and merged its one (kept) answer re-send one request, not two
/// (found by the simulation: with a new random key in each tab, one change
/// became two requests, both refused, and two conflicts).
fn resend_key(answered: &str) -> String {
    // FNV-1a of the answered key seeds the id source.
    let seed = answered.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    super::IdSource::new(seed).uuid()
}

pub(super) fn reach_of(refusal: &Refusal) -> Option<Answer> {
    match refusal.status {
        Some(status) => Some(Answer::of_status(Some(status))),
        None if matches!(refusal.code, ErrorCode::Network | ErrorCode::Timeout) => {
            Some(Answer::Unreachable)
        }
        None if refusal.code == ErrorCode::BadResponse => Some(Answer::Answered),
        None => None,
    }
}

impl Refusal {
    /// A refusal for good as another tab stored it with its dead letter
    /// (the status is not kept: `None`, as for an error made here).
    pub(super) fn stored(error: Option<&EntryError>) -> Self {
        let (code, message, details) = match error {
            Some(e) => (e.code, e.message.clone(), e.details.clone()),
            None => (ErrorCode::Server, "refused by the server".to_owned(), None),
        };
        Refusal {
            status: None,
            code,
            transient: false,
            retry_after_ms: None,
            message,
            current: None,
            details,
        }
    }
}
