//! Undo and redo: a committed change taken back as a new change on the
//! write path (staged, queued, sent with `If-Match`, merged on a 409), by
//! the three-way rule of [`crate::core::undo`]; and the user's undo list,
//! kept with each commit.

use super::{changed_here, CallerId, ClientEngine, Effect, Failure, KeptConflict, Outcome};
use super::{StoreOp, StoredWork};
use crate::core::merge::Conflict;
use crate::core::outbox::{MutationOp, OutboxEntry};
use crate::core::record::{FieldValue, Fields, Record, RecordKey};
use crate::core::undo::{plan_undo, UndoEntry, UndoList};

/// What to take back.
#[derive(Debug, Clone, PartialEq)]
pub enum UndoTarget {
    /// A change of the undo list, by its mutation id.
    Mutation(String),
    /// The undo standing against a change of the list (`redo`), named by
    /// the change or by the undo.
    Redo(String),
    /// A change from the record's history (any person's): the values it
    /// replaced and wrote, as the server's history says.
    Version {
        /// The record.
        key: RecordKey,
        /// The version the change made.
        version: u64,
        /// The values it replaced.
        before: Fields,
        /// The values it wrote.
        after: Fields,
    },
}

impl ClientEngine {
    /// `undo` / `redo`: puts back the values the change replaced, for the
    /// fields it changed; fields someone changed since become a conflict
    /// for a person, never overwritten.
    pub(super) fn undo(
        &mut self,
        target: UndoTarget,
        caller: CallerId,
        now: u64,
        out: &mut Vec<Effect>,
    ) {
        let found = match &target {
            UndoTarget::Mutation(id) => self.undo.get(id).filter(|e| e.undone_by.is_none()),
            UndoTarget::Redo(id) => self.undo.redo_target(id),
            UndoTarget::Version { key, version, .. } => {
                self.undo.by_version(&key.collection, &key.id, *version)
            }
        };
        let (key, before, after, undoes) = match (found, target) {
            (Some(e), _) => (
                RecordKey::new(&e.collection, &e.record_id),
                e.before.clone(),
                e.after.clone(),
                Some(e.mutation_id.clone()),
            ),
            (
                None,
                UndoTarget::Version {
                    key, before, after, ..
                },
            ) => (key, before, after, None),
            (None, UndoTarget::Mutation(id) | UndoTarget::Redo(id)) => {
                return out.push(Effect::Settle {
                    callers: vec![caller],
                    result: Err(Failure::NotFound(format!(
                        "nothing to take back for {id:?}"
                    ))),
                });
            }
        };
        let (Some(confirmed), Some(view)) = (
            self.records.get(&key.collection, &key.id),
            self.records.view(&key.collection, &key.id),
        ) else {
            return out.push(Effect::Settle {
                callers: vec![caller],
                result: Err(Failure::NotFound(format!(
                    "no record {}/{}",
                    key.collection, key.id
                ))),
            });
        };
        // What the person sees now, their own unsent changes included.
        let plan = plan_undo(&before, &after, &view.record.fields);
        self.counters.operations += 1;
        let conflict = if plan.conflicting.is_empty() {
            None
        } else {
            Some(self.undo_conflict(&key, &confirmed, &before, &after, plan.conflicting, out))
        };
        if plan.patch.is_empty() {
            let result = match conflict {
                Some(c) => Outcome::Conflict(Box::new(c)),
                None => Outcome::Committed(confirmed),
            };
            return out.push(Effect::Settle {
                callers: vec![caller],
                result: Ok(result),
            });
        }
        // Saves of the record still in the debounce window go first: the
        // undo is the person's later word.
        if let Some(batch) = self.debounce.take(&key) {
            self.dispatch(batch, false, now, out);
        }
        if let Err(e) = self.records.stage(&key, plan.patch.clone()) {
            return out.push(Effect::Settle {
                callers: vec![caller],
                result: Err(Failure::Invalid(e.to_string())),
            });
        }
        changed_here(key.clone(), out);
        // Based on what the change wrote, so a 409 merges by the same rule.
        let base_fields: Fields = plan
            .patch
            .keys()
            .map(|k| (k.clone(), after.get(k).cloned().unwrap_or(FieldValue::Null)))
            .collect();
        let op = MutationOp::Patch {
            base_version: confirmed.version,
            base_fields,
            fields: plan.patch,
        };
        self.enqueue_undo(key, op, caller, undoes, now, out);
    }

    /// Keeps a conflict for the fields of an undo someone changed since:
    /// base what the change wrote, mine the values before it, theirs now.
    fn undo_conflict(
        &mut self,
        key: &RecordKey,
        confirmed: &Record,
        before: &Fields,
        after: &Fields,
        fields: Vec<String>,
        out: &mut Vec<Effect>,
    ) -> Conflict {
        let mine: Fields = fields
            .iter()
            .map(|k| {
                (
                    k.clone(),
                    before.get(k).cloned().unwrap_or(FieldValue::Null),
                )
            })
            .collect();
        let mut base = confirmed.clone();
        for k in &fields {
            base.fields
                .insert(k.clone(), after.get(k).cloned().unwrap_or(FieldValue::Null));
        }
        let conflict = Conflict {
            id: self.ids.uuid(),
            collection: key.collection.clone(),
            record_id: key.id.clone(),
            base: confirmed.version,
            mine,
            theirs: confirmed.clone(),
            fields,
        };
        let kept = KeptConflict {
            conflict: conflict.clone(),
            base: Some(base),
        };
        self.counters.conflicts += 1;
        self.conflicts.insert(conflict.id.clone(), kept.clone());
        out.push(Effect::Changed);
        out.push(Effect::Write {
            id: 0,
            ops: vec![StoreOp::PutConflict(kept.clone())],
            persisted: None,
        });
        out.push(Effect::ConflictFound(Box::new(kept)));
        conflict
    }

    /// A committed patch goes on the undo list (an undo marks the change
    /// it took back); the writes join the commit's.
    pub(super) fn keep_undoable(
        &mut self,
        entry: &OutboxEntry,
        record: &Record,
        now: u64,
        ops: &mut Vec<StoreOp>,
        out: &mut Vec<Effect>,
    ) {
        let MutationOp::Patch {
            base_fields,
            fields,
            ..
        } = &entry.op
        else {
            return;
        };
        let after: Fields = fields
            .keys()
            .map(|k| {
                (
                    k.clone(),
                    record.fields.get(k).cloned().unwrap_or(FieldValue::Null),
                )
            })
            .collect();
        let kept = UndoEntry {
            mutation_id: entry.mutation_id.clone(),
            collection: entry.collection.clone(),
            record_id: entry.record_id.clone(),
            version: record.version,
            before: base_fields.clone(),
            after,
            at_ms: now,
            undoes: entry.undoes.clone(),
            undone_by: None,
        };
        if kept.changed_fields().is_empty() {
            return;
        }
        let writes = self.undo.record(kept);
        ops.extend(writes.put.into_iter().map(StoreOp::PutUndo));
        ops.extend(writes.deleted.into_iter().map(StoreOp::DeleteUndo));
        out.push(Effect::UndoableChanged);
    }

    /// IndexedDB's undo list, the one that counts (another tab committed).
    pub(super) fn undo_stored(&mut self, work: &StoredWork, out: &mut Vec<Effect>) {
        let stored = UndoList::restore(work.undo.iter().cloned());
        if stored != self.undo {
            self.undo = stored;
            out.push(Effect::UndoableChanged);
        }
    }

    /// At open: the undo list IndexedDB kept.
    pub(super) fn restore_undo(&mut self, work: &StoredWork) {
        self.undo = UndoList::restore(work.undo.iter().cloned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::engine::{EngineConfig, Event, IdSource};

    fn text(pairs: &[(&str, &str)]) -> Fields {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), FieldValue::Text((*v).to_owned())))
            .collect()
    }

    /// Alice changed City and Phone (version 2); Bob changed City since
    /// (version 3). Her undo.
    fn undo_after_bob() -> (ClientEngine, Vec<Effect>) {
        let mut engine = ClientEngine::new(
            EngineConfig::default(),
            "alice",
            true,
            true,
            IdSource::new(7),
        );
        let mut now = Record::empty("c1");
        now.version = 3;
        now.fields = text(&[("city", "Nice"), ("phone", "2")]);
        engine.handle(
            Event::StorageOpened {
                cursor: None,
                work: StoredWork::default(),
                records: vec![("customers".into(), now)],
            },
            0,
        );
        engine.restore(StoredWork {
            undo: vec![UndoEntry {
                mutation_id: "m1".into(),
                collection: "customers".into(),
                record_id: "c1".into(),
                version: 2,
                before: text(&[("city", "Paris"), ("phone", "1")]),
                after: text(&[("city", "Lyon"), ("phone", "2")]),
                at_ms: 1,
                undoes: None,
                undone_by: None,
            }],
            ..StoredWork::default()
        });
        let target = UndoTarget::Mutation("m1".into());
        let out = engine.step(Event::Undo { target, caller: 1 }, 10);
        (engine, out)
    }

    #[test]
    fn a_field_changed_since_is_a_conflict_and_the_others_are_sent_as_a_change() {
        let (engine, out) = undo_after_bob();
        let kept = out.iter().find_map(|e| match e {
            Effect::ConflictFound(k) => Some(k.clone()),
            _ => None,
        });
        let kept = kept.expect("a conflict for a person");
        assert_eq!(kept.conflict.fields, vec!["city".to_string()]);
        assert_eq!(kept.conflict.mine, text(&[("city", "Paris")]));
        assert_eq!(
            kept.conflict.theirs.fields.get("city"),
            Some(&FieldValue::Text("Nice".into()))
        );
        let base = kept.base.expect("the base");
        assert_eq!(
            base.fields.get("city"),
            Some(&FieldValue::Text("Lyon".into()))
        );
        assert!(engine.conflicts().get(&kept.conflict.id).is_some());

        let pending = engine.outbox().pending();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].undoes.as_deref(), Some("m1"));
        assert_eq!(
            pending[0].op,
            MutationOp::Patch {
                base_version: 3,
                base_fields: text(&[("phone", "2")]),
                fields: text(&[("phone", "1")]),
            }
        );
        // Shown at once: the phone is back in the view, Bob's city stays.
        let view = engine
            .records()
            .view("customers", "c1")
            .expect("the record");
        assert_eq!(
            view.record.fields,
            text(&[("city", "Nice"), ("phone", "1")])
        );
    }

    #[test]
    fn nothing_left_to_take_back_is_not_found() {
        let (mut engine, _) = undo_after_bob();
        let target = UndoTarget::Redo("m1".into());
        let out = engine.step(Event::Undo { target, caller: 2 }, 20);
        assert!(out.iter().any(|e| matches!(
            e,
            Effect::Settle { callers, result: Err(Failure::NotFound(_)) } if callers == &[2]
        )));
    }
}
