//! The user's work shared by their tabs: the outbox, dead letters and
//! conflicts as IndexedDB holds them, and who sends which entry.

use super::write::{restage, unstage};
use super::{ClientEngine, Effect, Failure, KeptConflict, Refusal, StoredWork};
use crate::core::outbox::{EntryState, Outbox, OutboxEntry};
use crate::core::record::RecordKey;
use crate::core::staged::StagedState;
use crate::core::vecmap::VecMap;
use std::collections::HashSet;

impl ClientEngine {
    /// Another tab changed the user's work: take IndexedDB's copy, the one
    /// that counts, so every tab shows the same `pending()`, `failed()` and
    /// `conflicts()`; raise `conflict` for conflicts new here, and `failed`
    /// for refusals new here (an entry this tab did not hold as failed, or
    /// held as refused at another time).
    pub(super) fn work_stored(&mut self, work: StoredWork, now: u64, out: &mut Vec<Effect>) {
        self.undo_stored(&work, out);
        let refused_elsewhere: Vec<OutboxEntry> = work
            .failed
            .iter()
            .filter(|e| {
                // New here, or refused again since this tab read it (another
                // tab retried it and met the refusal again in between).
                let at = |entry: &OutboxEntry| entry.last_error.as_ref().map(|err| err.at_ms);
                self.outbox
                    .get(&e.mutation_id)
                    .is_none_or(|local| local.state != EntryState::Failed || at(local) != at(e))
            })
            .cloned()
            .collect();
        let mut stored: VecMap<String, OutboxEntry> = VecMap::new();
        for entry in work.outbox.into_iter().chain(work.failed) {
            stored.insert(entry.mutation_id.clone(), entry);
        }
        // What is under way here, or not yet written, stays as this tab
        // has it; everything else is as IndexedDB says.
        let mut all: Vec<OutboxEntry> = Vec::new();
        let mut sending: Vec<String> = Vec::new();
        for entry in self.outbox.entries() {
            let id = &entry.mutation_id;
            if entry.state == EntryState::Sending
                || self.unpersisted.contains(id)
                || self.held.contains(id)
            {
                if entry.state == EntryState::Sending {
                    sending.push(id.clone());
                }
                if stored.remove(id).is_none()
                    && entry.state == EntryState::Sending
                    && !self.unpersisted.contains(id)
                    && !self.held.contains(id)
                {
                    self.finished_elsewhere.insert(id.clone());
                }
                all.push(entry.clone());
            }
        }
        let known: HashSet<String> = self
            .outbox
            .entries()
            .map(|e| e.mutation_id.clone())
            .collect();
        for (id, entry) in stored {
            let local = self.outbox.get(&id).cloned();
            // A failed entry of ours that another tab put back in line is
            // that tab's to send now.
            let retried_elsewhere = local.as_ref().is_some_and(|l| {
                l.state == EntryState::Failed && entry.state != EntryState::Failed
            });
            match &local {
                None => self.restage_under_waiting(&entry),
                // Another tab folded a later save into its entry: lay the
                // entry over the record as it is now (found by the
                // simulation: the older value stayed staged for good).
                Some(l) if l.op != entry.op => {
                    unstage(&mut self.records, l);
                    self.restage_under_waiting(&entry);
                }
                Some(_) => {}
            }
            if !known.contains(&id) || retried_elsewhere {
                self.own.remove(&id);
                // A retry is seen anew: its tab sends it, and the leader
                // waits as for a new entry (found by the simulation: the
                // leader sent it at once too, the two sends met different
                // answers, and the tabs kept different work).
                if self.foreign.get(&id).is_none() || retried_elsewhere {
                    self.foreign.insert(id.clone(), now);
                }
            }
            all.push(entry);
        }
        let kept: HashSet<&str> = all.iter().map(|e| e.mutation_id.as_str()).collect();
        // Entries gone from IndexedDB: sent, discarded or resolved in
        // another tab. Their staged changes go with them.
        let gone: Vec<OutboxEntry> = self
            .outbox
            .entries()
            .filter(|e| !kept.contains(e.mutation_id.as_str()))
            .cloned()
            .collect();
        for entry in &gone {
            unstage(&mut self.records, entry);
            self.own.remove(&entry.mutation_id);
            self.foreign.remove(&entry.mutation_id);
        }
        self.outbox = Outbox::restore(all);
        for id in sending {
            let _ = self.outbox.still_sending(&id);
        }
        self.drop_unbacked_changes();
        let fresh: Vec<KeptConflict> = work
            .conflicts
            .iter()
            .filter(|kept| self.conflicts.get(&kept.conflict.id).is_none())
            .cloned()
            .collect();
        self.conflicts = work
            .conflicts
            .into_iter()
            .map(|k| (k.conflict.id.clone(), k))
            .collect();
        for entry in gone {
            self.settle(&entry.mutation_id, Err(Failure::Cancelled), out);
        }
        out.push(Effect::Changed);
        for kept in fresh {
            out.push(Effect::ConflictFound(Box::new(kept)));
        }
        for entry in refused_elsewhere {
            // Only as IndexedDB holds it now (not put back in line since).
            if self
                .outbox
                .get(&entry.mutation_id)
                .is_some_and(|e| e.state == EntryState::Failed)
            {
                // Callers waiting here (a retry this tab could not send,
                // sent by the leader) hear the refusal the other tab
                // stored (seed 95290: such a retry never settled).
                let refusal = Refusal::stored(entry.last_error.as_ref());
                let failure = Failure::Answer(Box::new(refusal));
                self.settle(&entry.mutation_id, Err(failure), out);
                out.push(Effect::FailureFound(Box::new(entry)));
            }
        }
    }

    /// Lays an entry of another tab over its record, under this tab's
    /// saves still in the debounce window: they are the person's later
    /// word (found by the simulation: a save waiting here was shown under
    /// the older value of another tab's entry until it was sent).
    fn restage_under_waiting(&mut self, entry: &OutboxEntry) {
        restage(&mut self.records, entry);
        self.stage_waiting(&RecordKey::new(&entry.collection, &entry.record_id));
    }

    /// Lays the saves of a record still in the debounce window over it
    /// again, after its staged change was replaced or dropped.
    pub(super) fn stage_waiting(&mut self, key: &RecordKey) {
        if let Some(waiting) = self.debounce.waiting(key) {
            let _ = self.records.stage(key, waiting.fields.clone());
        }
    }

    /// Drops staged changes no outbox entry and no debounced save stands
    /// for: what they stood for was sent or dropped in another tab, and an
    /// unstage by value can leave a field behind (found by the simulation:
    /// a value another tab replaced in its entry stayed staged for good).
    pub(super) fn drop_unbacked_changes(&mut self) {
        let unbacked: Vec<RecordKey> = self
            .records
            .staged_changes()
            .map(|(key, _)| key.clone())
            .filter(|key| !self.debounce.is_waiting(key))
            .filter(|key| {
                !self
                    .outbox
                    .entries()
                    .any(|e| e.collection == key.collection && e.record_id == key.id)
            })
            .collect();
        for key in unbacked {
            self.records.discard(&key);
        }
        // What only dead letters stand for is failed, whatever an entry of
        // the record now gone made of it (found by the simulation: a
        // refused change showed as waiting to be sent, for good, once
        // another tab's save of the record was sent).
        let failed_only: Vec<RecordKey> = self
            .records
            .staged_changes()
            .filter(|(_, change)| change.state != StagedState::Failed)
            .map(|(key, _)| key.clone())
            .filter(|key| !self.debounce.is_waiting(key))
            .filter(|key| {
                !self
                    .outbox
                    .pending()
                    .iter()
                    .any(|e| e.collection == key.collection && e.record_id == key.id)
            })
            .collect();
        for key in failed_only {
            self.records.fail(&key);
        }
    }

    /// This tab leads now: entries other tabs left in IndexedDB become its
    /// to send (their tab may have closed; a live one's answer is the same,
    /// by its `Idempotency-Key`).
    pub(super) fn lead(&mut self, work: StoredWork, out: &mut Vec<Effect>) {
        let was = std::mem::replace(&mut self.leader, true);
        if !was {
            self.local.others_may_wait();
        }
        self.foreign.clear();
        let fresh: Vec<OutboxEntry> = work
            .outbox
            .into_iter()
            .filter(|e| self.outbox.get(&e.mutation_id).is_none())
            .collect();
        if !was || !fresh.is_empty() {
            out.push(Effect::Changed);
        }
        if fresh.is_empty() {
            return;
        }
        let sending: Vec<String> = self
            .outbox
            .pending()
            .iter()
            .filter(|e| e.state == EntryState::Sending)
            .map(|e| e.mutation_id.clone())
            .collect();
        for entry in &fresh {
            self.restage_under_waiting(entry);
        }
        self.counters.outbox_replayed += fresh.len() as u64;
        let all: Vec<OutboxEntry> = self.outbox.entries().cloned().chain(fresh).collect();
        self.outbox = Outbox::restore(all);
        // Restoring forgets what was in flight; it still is.
        for id in sending {
            let _ = self.outbox.still_sending(&id);
        }
    }

    /// At open: the outbox, dead letters and conflicts IndexedDB kept.
    /// They are this tab's to send only once it leads.
    pub(super) fn restore(&mut self, work: StoredWork) {
        self.restore_undo(&work);
        self.counters.outbox_replayed += work.outbox.len() as u64;
        let entries: Vec<OutboxEntry> = work.outbox.into_iter().chain(work.failed).collect();
        for entry in &entries {
            restage(&mut self.records, entry);
        }
        self.outbox = Outbox::restore(entries);
        self.conflicts = work
            .conflicts
            .into_iter()
            .map(|k| (k.conflict.id.clone(), k))
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::code::ErrorCode;
    use crate::core::engine::{EngineConfig, Event, IdSource};
    use crate::core::outbox::{EntryError, MutationOp};

    fn refused(at_ms: u64, attempts: u32) -> OutboxEntry {
        OutboxEntry {
            mutation_id: "m1".into(),
            idempotency_key: format!("k{attempts}"),
            collection: "customers".into(),
            record_id: "c1".into(),
            op: MutationOp::Delete { base_version: 1 },
            state: EntryState::Failed,
            attempts,
            created_at_ms: 1,
            retry_at_ms: 0,
            merge_rounds: 0,
            last_error: Some(EntryError {
                code: ErrorCode::NotFound,
                message: "no such record".into(),
                details: None,
                at_ms,
            }),
            seq: 1,
            undoes: None,
        }
    }

    fn failures_found(out: &[Effect]) -> usize {
        out.iter()
            .filter(|e| matches!(e, Effect::FailureFound(_)))
            .count()
    }

    #[test]
    fn a_refusal_met_again_in_another_tab_is_told_here_too() {
        let mut tab =
            ClientEngine::new(EngineConfig::default(), "ben", true, true, IdSource::new(3));
        let first = StoredWork {
            failed: vec![refused(100, 1)],
            ..StoredWork::default()
        };
        let out = tab.step(Event::WorkStored(first.clone()), 150);
        assert_eq!(failures_found(&out), 1, "the first refusal is told");
        let out = tab.step(Event::WorkStored(first), 160);
        assert_eq!(failures_found(&out), 0, "the same refusal is told once");
        // The other tab retried it and met the refusal again before this
        // tab read the work between the two: a new refusal all the same.
        let again = StoredWork {
            failed: vec![refused(200, 2)],
            ..StoredWork::default()
        };
        let out = tab.step(Event::WorkStored(again), 250);
        assert_eq!(failures_found(&out), 1, "the second refusal is told");
    }

    /// Seed 95290 of the long run: a person retried a refused change in
    /// this tab, which could not send it; the leader sent it (after the
    /// adoption wait) and the server refused it again. The retry's promise
    /// is rejected here with the refusal the leader stored.
    #[test]
    fn a_retry_refused_again_in_another_tab_rejects_its_caller_here() {
        let mut tab =
            ClientEngine::new(EngineConfig::default(), "ben", true, true, IdSource::new(3));
        let work = StoredWork {
            failed: vec![refused(100, 1)],
            ..StoredWork::default()
        };
        let _ = tab.step(
            Event::StorageOpened {
                cursor: None,
                work,
                records: Vec::new(),
            },
            120,
        );
        // The connection is gone: nothing is sent from here.
        let _ = tab.step(Event::Network(false), 125);
        // The runner claimed the dead letter; the person's retry waits.
        let mut claimed = refused(100, 1);
        claimed.state = EntryState::Queued;
        let out = tab.step(
            Event::Retry {
                mutation_id: "m1".into(),
                caller: 7,
            },
            130,
        );
        assert!(
            !out.iter().any(|e| matches!(e, Effect::Settle { .. })),
            "the retry waits for the server: {out:?}"
        );
        for effect in out {
            if let Effect::Write { id, .. } = effect {
                let _ = tab.step(Event::Written { id, written: true }, 135);
            }
        }
        let _ = tab.step(
            Event::WorkStored(StoredWork {
                outbox: vec![claimed],
                ..StoredWork::default()
            }),
            140,
        );
        // The leader sent it and met the refusal again.
        let again = StoredWork {
            failed: vec![refused(20_000, 2)],
            ..StoredWork::default()
        };
        let out = tab.step(Event::WorkStored(again), 20_050);
        let settled: Vec<&Effect> = out
            .iter()
            .filter(|e| matches!(e, Effect::Settle { .. }))
            .collect();
        match settled.as_slice() {
            [Effect::Settle {
                callers,
                result: Err(Failure::Answer(refusal)),
            }] => {
                assert_eq!(callers, &[7]);
                assert_eq!(refusal.code, ErrorCode::NotFound);
                assert_eq!(refusal.message, "no such record");
                assert!(!refusal.transient);
            }
            other => panic!("the retry's caller hears the refusal: {other:?}"),
        }
        assert_eq!(failures_found(&out), 1, "and the app hears `failed`");
        // Once: a later re-read of the same work settles nothing more.
        let out = tab.step(
            Event::WorkStored(StoredWork {
                failed: vec![refused(20_000, 2)],
                ..StoredWork::default()
            }),
            20_100,
        );
        assert!(!out.iter().any(|e| matches!(e, Effect::Settle { .. })));
    }
}
