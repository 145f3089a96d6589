//! A full load: a collection read from the server page by page, through
//! the runner, and everything it decides.
//!
//! ```text
//!  LoadFrom(Full) ─► ReadStoredIds ──(StoredIds)──► ReadPage(first)
//!  PageRead(page) ─► ReadPage(next), records laid in, Write, LoadProgress
//!  PageRead(last) ─► known before and in no page: deleted; Write;
//!                    the feed follows from the first page's cursor;
//!                    MarkLoaded; LoadEnded(Done)
//!  PageRead(Err)  ─► worth trying again (network, timeout, 5xx, 429,
//!                    within the retry policy, `Retry-After` honoured):
//!                    ReadPage again at LoadRetryDue;
//!                    a 401: the session ends, LoadEnded(Failed);
//!                    no page yet and the server out of reach:
//!                    LoadEnded(FromStore), IndexedDB answers, stale;
//!                    else LoadEnded(Failed)
//! ```
//!
//! The next page is asked for before the one that came is written, so one
//! page is in flight while another is stored. What IndexedDB and this tab
//! held before the load and no page has is gone from the server. A second
//! `load` of a collection while its load runs waits for the same load.

use std::collections::HashSet;

use super::{ClientEngine, Effect, FullReason, NextTry, Refusal, StoreOp};
use crate::core::code::ErrorCode;
use crate::core::record::{Record, RecordKey};
use crate::core::staged::RemoteChange;

/// Records a page of `load`, unless the app asks for another size.
pub const DEFAULT_PAGE: u32 = 1_000;
/// The largest page asked for (the reference server's limit).
pub const MAX_PAGE: u32 = 10_000;

/// One page of a collection as the server sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadPage {
    /// The page's records.
    pub records: Vec<Record>,
    /// Where the next page starts; `None` on the last.
    pub next: Option<String>,
    /// The changes feed's cursor when the page was read.
    pub cursor: Option<String>,
}

/// How a full load ended, as the app hears it.
#[derive(Debug, Clone, PartialEq)]
pub enum LoadEnd {
    /// Every page is in; `pulled` records in `duration_ms`.
    Done {
        /// Records the pages held.
        pulled: u64,
        /// From the ask to the last page stored.
        duration_ms: u64,
        /// Why the collection was fetched whole.
        reason: FullReason,
    },
    /// The server could not be reached before any page came: what
    /// IndexedDB holds answers, marked stale (the refusal when nothing is
    /// stored; report [`super::Event::StoredRead`] when read).
    FromStore(Refusal),
    /// The load failed.
    Failed(Refusal),
}

/// A full load under way.
#[derive(Debug, Clone)]
pub(super) struct FullLoad {
    collection: String,
    reason: FullReason,
    size: u32,
    started: u64,
    /// Known before the load and in no page yet; `None` until IndexedDB's
    /// ids are read.
    not_seen: Option<HashSet<String>>,
    /// Records the pages held so far.
    loaded: u64,
    /// The first page's cursor (the feed goes on from there).
    cursor: Option<String>,
    /// Where the page asked for last starts.
    after: Option<String>,
    /// Failures of that page in a row.
    failures: u32,
    /// When that page is asked for again.
    retry_at: Option<u64>,
}

impl ClientEngine {
    /// A full load of `collection` starts (unless one runs already): the
    /// ids IndexedDB holds are read first.
    pub(super) fn start_full_load(
        &mut self,
        collection: &str,
        reason: FullReason,
        size: Option<u32>,
        now: u64,
        out: &mut Vec<Effect>,
    ) {
        if self.loads.iter().any(|l| l.collection == collection) {
            return;
        }
        self.loads.push(FullLoad {
            collection: collection.to_owned(),
            reason,
            size: size.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE),
            started: now,
            not_seen: None,
            loaded: 0,
            cursor: None,
            after: None,
            failures: 0,
            retry_at: None,
        });
        out.push(Effect::ReadStoredIds {
            collection: collection.to_owned(),
        });
    }

    /// IndexedDB's ids of `collection` are read: with this tab's, they are
    /// what no page may have; the first page is asked for.
    pub(super) fn stored_ids(&mut self, collection: &str, ids: Vec<String>, out: &mut Vec<Effect>) {
        let mut known: HashSet<String> = ids.into_iter().collect();
        let mut after: Option<String> = None;
        loop {
            let run = self.records.ids_after(collection, after.as_deref(), 2_000);
            let Some(last) = run.last().cloned() else {
                break;
            };
            known.extend(run);
            after = Some(last);
        }
        let Some(load) = self
            .loads
            .iter_mut()
            .find(|l| l.collection == collection && l.not_seen.is_none())
        else {
            return;
        };
        load.not_seen = Some(known);
        out.push(Effect::ReadPage {
            collection: collection.to_owned(),
            after: None,
            size: load.size,
        });
    }

    /// A page of `collection` came (or its request failed).
    pub(super) fn page_read(
        &mut self,
        collection: &str,
        page: Result<LoadPage, Refusal>,
        now: u64,
        out: &mut Vec<Effect>,
    ) {
        let Some(at) = self
            .loads
            .iter()
            .position(|l| l.collection == collection && l.not_seen.is_some())
        else {
            return;
        };
        let page = match page {
            Ok(page) => page,
            Err(refusal) => {
                let failures = self.loads[at].failures + 1;
                let sample = self.ids.unit();
                match self.next_try(failures, &refusal, sample) {
                    NextTry::After(delay) => {
                        self.counters.retries += 1;
                        let load = &mut self.loads[at];
                        load.failures = failures;
                        load.retry_at = Some(now + delay);
                        return;
                    }
                    NextTry::EndSession => self.session_ended(out),
                    NextTry::GiveUp => {}
                }
                let load = self.loads.remove(at);
                // No answer at all: the server cannot be reached now (a
                // refusal, or a garbled page, is not hidden behind old
                // records).
                let unreachable = refusal.status.is_none()
                    && matches!(
                        refusal.code,
                        ErrorCode::Network | ErrorCode::Timeout | ErrorCode::Offline
                    );
                let end = if load.loaded == 0 && load.cursor.is_none() && unreachable {
                    self.local.read_from_store(collection);
                    LoadEnd::FromStore(refusal)
                } else {
                    LoadEnd::Failed(refusal)
                };
                self.full_load_ended(collection, out);
                out.push(Effect::LoadEnded {
                    collection: collection.to_owned(),
                    end,
                });
                return;
            }
        };
        let load = &mut self.loads[at];
        load.failures = 0;
        if load.cursor.is_none() {
            load.cursor = Some(page.cursor.unwrap_or_default());
        }
        if let Some(after) = page.next.clone() {
            // The next page is on its way while this one is written.
            load.after = Some(after.clone());
            out.push(Effect::ReadPage {
                collection: collection.to_owned(),
                after: Some(after),
                size: load.size,
            });
        }
        load.loaded += page.records.len() as u64;
        let mut ops = Vec::with_capacity(page.records.len());
        for record in page.records {
            if let Some(not_seen) = load.not_seen.as_mut() {
                not_seen.remove(&record.id);
            }
            ops.push(StoreOp::PutRecord {
                collection: collection.to_owned(),
                record: record.clone(),
            });
            self.records
                .apply_remote(collection, RemoteChange::Put(record));
        }
        let (loaded, last) = (load.loaded, page.next.is_none());
        if last {
            let load = self.loads.remove(at);
            // Known before and in no page: deleted on the server meanwhile.
            let mut gone: Vec<String> = load.not_seen.unwrap_or_default().into_iter().collect();
            gone.sort();
            for id in gone {
                self.records.apply_remote(
                    collection,
                    RemoteChange::Delete {
                        id: id.clone(),
                        version: u64::MAX,
                    },
                );
                ops.push(StoreOp::DeleteRecord(RecordKey::new(collection, &id)));
            }
            // The last page, the feed's cursor and the mark in one write:
            // a reload finds all three or none. The load ends when it
            // lands (`load_written`): what the person is told is loaded
            // is stored.
            let mut after = Vec::new();
            self.collection_loaded(
                collection.to_owned(),
                load.cursor,
                now,
                &mut ops,
                &mut after,
            );
            ops.push(self.mark_op(collection));
            push_write(ops, out);
            out.push(Effect::LoadProgress {
                collection: collection.to_owned(),
                loaded,
            });
            out.extend(after);
            out.push(Effect::Changed);
            self.local.storing.push((
                collection.to_owned(),
                LoadEnd::Done {
                    pulled: loaded,
                    duration_ms: now.saturating_sub(load.started),
                    reason: load.reason,
                },
            ));
        } else {
            push_write(ops, out);
            out.push(Effect::Changed);
            out.push(Effect::LoadProgress {
                collection: collection.to_owned(),
                loaded,
            });
        }
    }

    /// The retry timer fired: the pages whose time came are asked for
    /// again.
    pub(super) fn page_retry_due(&mut self, now: u64, out: &mut Vec<Effect>) {
        for load in &mut self.loads {
            if load.retry_at.is_some_and(|at| at <= now) {
                load.retry_at = None;
                out.push(Effect::ReadPage {
                    collection: load.collection.clone(),
                    after: load.after.clone(),
                    size: load.size,
                });
            }
        }
    }

    /// When a page is asked for again next.
    pub(super) fn next_page_try(&self) -> Option<u64> {
        self.loads.iter().filter_map(|l| l.retry_at).min()
    }

    /// Whether a full load of `collection` runs.
    pub fn is_loading(&self, collection: &str) -> bool {
        self.loads.iter().any(|l| l.collection == collection)
    }
}

fn push_write(ops: Vec<StoreOp>, out: &mut Vec<Effect>) {
    if !ops.is_empty() {
        out.push(Effect::Write {
            id: 0,
            ops,
            persisted: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::engine::{Event, LoadPlan};

    const C: &str = "customers";

    fn engine(records: Vec<Record>) -> ClientEngine {
        ClientEngine::opened(None, C, records)
    }

    fn record(id: &str, version: u64) -> Record {
        let mut r = Record::empty(id);
        r.version = version;
        r
    }

    fn ask(e: &mut ClientEngine, size: u32) -> Vec<Effect> {
        e.step(
            Event::LoadAsked {
                collection: C.into(),
                mark: None,
                size: Some(size),
            },
            10,
        )
    }

    fn page(records: Vec<Record>, next: Option<&str>) -> Event {
        Event::PageRead {
            collection: C.into(),
            page: Ok(LoadPage {
                records,
                next: next.map(str::to_owned),
                cursor: Some("42".into()),
            }),
        }
    }

    fn failed(status: Option<u16>, code: ErrorCode) -> Event {
        Event::PageRead {
            collection: C.into(),
            page: Err(Refusal {
                status,
                code,
                transient: status.is_none_or(|s| s >= 500),
                retry_after_ms: None,
                message: "no".into(),
                current: None,
                details: None,
            }),
        }
    }

    fn asked_page(out: &[Effect]) -> Option<Option<String>> {
        out.iter().find_map(|e| match e {
            Effect::ReadPage { after, .. } => Some(after.clone()),
            _ => None,
        })
    }

    fn ended(out: &[Effect]) -> Option<&LoadEnd> {
        out.iter().find_map(|e| match e {
            Effect::LoadEnded { end, .. } => Some(end),
            _ => None,
        })
    }

    #[test]
    fn pages_are_asked_for_one_after_another_and_what_no_page_has_is_deleted() {
        // Memory holds c1 and c9; IndexedDB holds c1 and c8.
        let mut e = engine(vec![record("c1", 1), record("c9", 1)]);
        let out = ask(&mut e, 2);
        assert!(out.contains(&Effect::ReadStoredIds {
            collection: C.into()
        }));
        assert_eq!(asked_page(&out), None, "IndexedDB's ids first");
        let out = e.step(
            Event::StoredIds {
                collection: C.into(),
                ids: vec!["c1".into(), "c8".into()],
            },
            20,
        );
        assert_eq!(asked_page(&out), Some(None));
        let out = e.step(page(vec![record("c1", 2), record("c2", 1)], Some("c2")), 30);
        assert_eq!(asked_page(&out), Some(Some("c2".into())));
        assert_eq!(ended(&out), None);
        assert_eq!(e.records().get(C, "c1").map(|r| r.version), Some(2));
        let out = e.step(page(vec![record("c3", 1)], None), 40);
        assert_eq!(asked_page(&out), None);
        let deleted: Vec<&str> = out
            .iter()
            .flat_map(|e| match e {
                Effect::Write { ops, .. } => ops.as_slice(),
                _ => &[],
            })
            .filter_map(|op| match op {
                StoreOp::DeleteRecord(key) => Some(key.id.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(deleted, ["c8", "c9"]);
        assert!(e.records().get(C, "c9").is_none());
        assert_eq!(ended(&out), None, "ends once stored");
        let id = out
            .iter()
            .find_map(|e| match e {
                Effect::Write { id, ops, .. }
                    if ops.iter().any(|op| matches!(op, StoreOp::PutMark { .. })) =>
                {
                    Some(*id)
                }
                _ => None,
            })
            .expect("the mark's write");
        let out = e.step(Event::Written { id, written: true }, 45);
        assert_eq!(
            ended(&out),
            Some(&LoadEnd::Done {
                pulled: 3,
                duration_ms: 30,
                reason: FullReason::FirstTime,
            })
        );
        assert_eq!(e.feed_cursor(), Some("42"));
        assert!(!e.is_loading(C));
    }

    #[test]
    fn a_full_load_ends_only_once_its_last_page_cursor_and_mark_are_stored_in_one_write() {
        // Seen in the end-to-end run: the list said every customer was in,
        // the person reloaded, and the reload found no mark (or no
        // cursor) in IndexedDB and fetched every page again.
        let mut e = engine(Vec::new());
        ask(&mut e, 2);
        e.step(
            Event::StoredIds {
                collection: C.into(),
                ids: Vec::new(),
            },
            20,
        );
        e.step(page(vec![record("c1", 1)], Some("c1")), 30);
        let out = e.step(page(vec![record("c2", 1)], None), 40);
        assert_eq!(ended(&out), None, "not before it is stored");
        assert!(e.full_load().is_some(), "the status says it still loads");
        let writes: Vec<(u64, &[StoreOp])> = out
            .iter()
            .filter_map(|e| match e {
                Effect::Write { id, ops, .. } => Some((*id, ops.as_slice())),
                _ => None,
            })
            .collect();
        assert_eq!(writes.len(), 1, "one write: {writes:?}");
        let (id, ops) = writes[0];
        assert!(ops
            .iter()
            .any(|op| matches!(op, StoreOp::PutRecord { record, .. } if record.id == "c2")));
        assert!(ops.contains(&StoreOp::PutCursor("42".into())));
        assert!(ops.iter().any(|op| matches!(
            op,
            StoreOp::PutMark { collection, mark } if collection == C && mark.user == "alice"
        )));
        let out = e.step(Event::Written { id, written: true }, 50);
        assert!(matches!(ended(&out), Some(LoadEnd::Done { pulled: 2, .. })));
        assert_eq!(e.full_load(), None);
    }

    #[test]
    fn a_page_that_failed_is_asked_for_again_until_the_policy_gives_up() {
        let mut e = engine(Vec::new());
        ask(&mut e, 2);
        e.step(
            Event::StoredIds {
                collection: C.into(),
                ids: Vec::new(),
            },
            20,
        );
        e.step(page(vec![record("c1", 1)], Some("c1")), 30);
        let out = e.step(failed(Some(503), ErrorCode::Server), 40);
        assert_eq!(ended(&out), None, "tried again");
        let at = e.poll_timeout().expect("the retry's deadline");
        let out = e.step(Event::LoadRetryDue, at);
        assert_eq!(asked_page(&out), Some(Some("c1".into())), "the same page");
        assert_eq!(e.counters().retries, 1);
        // A refusal is not tried again; a page came, so IndexedDB does
        // not answer.
        let out = e.step(failed(Some(400), ErrorCode::Invalid), at + 1);
        assert!(matches!(ended(&out), Some(LoadEnd::Failed(_))));
        assert!(!e.is_loading(C));
    }

    #[test]
    fn a_server_out_of_reach_before_any_page_is_answered_from_indexeddb_stale() {
        let mut e = engine(Vec::new());
        e.config.retry.attempts = 0;
        ask(&mut e, 2);
        e.step(
            Event::StoredIds {
                collection: C.into(),
                ids: Vec::new(),
            },
            20,
        );
        let out = e.step(failed(None, ErrorCode::Timeout), 30);
        assert!(matches!(ended(&out), Some(LoadEnd::FromStore(_))));
        assert!(e.is_stale(C));
        assert_eq!(e.full_load(), None);
        // Read from IndexedDB: the next load goes to the server again.
        e.step(
            Event::StoredRead {
                collection: C.into(),
                found: true,
            },
            40,
        );
        let out = ask(&mut e, 2);
        assert!(out.iter().any(|e| matches!(
            e,
            Effect::LoadFrom {
                plan: LoadPlan::Full(FullReason::FirstTime),
                ..
            }
        )));
    }

    #[test]
    fn a_401_ends_the_session_and_the_load() {
        let mut e = engine(Vec::new());
        ask(&mut e, 2);
        e.step(
            Event::StoredIds {
                collection: C.into(),
                ids: Vec::new(),
            },
            20,
        );
        let out = e.step(failed(Some(401), ErrorCode::Unauthorized), 30);
        assert!(out.contains(&Effect::SessionEnded));
        assert!(matches!(ended(&out), Some(LoadEnd::Failed(_))));
    }

    #[test]
    fn a_second_load_of_a_collection_being_loaded_waits_for_the_same_load() {
        let mut e = engine(Vec::new());
        ask(&mut e, 2);
        let out = ask(&mut e, 2);
        assert!(!out
            .iter()
            .any(|e| matches!(e, Effect::ReadStoredIds { .. })));
        assert!(e.is_loading(C));
    }
}
