//! Reads a caller waits for: one record (before a save, a delete or an
//! undo of a record not loaded here; after a comment on one), or a
//! record's history. The runner sends each and reports what came; what a
//! failure means is decided here, as for a load's pages.
//!
//! ```text
//!  Read(target) ─► Effect::Read(id) ──(ReadDone(id, answer))──►
//!    a record:   laid in (never over a newer version), Write, Settle
//!    a history:  Settle with its entries
//!    a failure:  worth trying again (network, timeout, 5xx, 429, within
//!                the retry policy, `Retry-After` honoured): Effect::Read
//!                again at ReadRetryDue; a 401 ends the session; a body
//!                not of the protocol's shape is `bad_response`; else the
//!                caller hears the refusal as the server said it
//! ```

use super::answer::reach_of;
use super::{CallerId, ClientEngine, Effect, Failure, NextTry, Origin, Outcome, Refusal, StoreOp};
use crate::core::code::ErrorCode;
use crate::core::history::HistoryEntry;
use crate::core::reachability::Answer;
use crate::core::record::{Record, RecordKey};
use crate::core::staged::RemoteChange;

/// What a read asks the server for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadTarget {
    /// `GET /api/{collection}/{id}`.
    Record(RecordKey),
    /// `GET /api/{collection}/{id}/history?limit=`.
    History {
        /// The record.
        key: RecordKey,
        /// Entries asked for, newest first.
        limit: u32,
    },
}

/// What a read brought, as the runner read the body.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadAnswer {
    /// The record as the server has it.
    Record(Record),
    /// The record's history entries, as the server listed them.
    History(Vec<HistoryEntry>),
}

/// Who waits for a read.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Reader {
    /// An app call's promise.
    Caller(CallerId),
    /// The callers of a comment committed on a record not loaded here:
    /// they hear the record with its comments.
    Entry(String),
}

/// A read under way.
#[derive(Debug, Clone)]
pub(super) struct PendingRead {
    id: u64,
    target: ReadTarget,
    reader: Reader,
    /// Failures in a row.
    failures: u32,
    /// When it is sent again.
    retry_at: Option<u64>,
}

/// The reads under way, and the id of the last one.
#[derive(Debug, Clone, Default)]
pub(super) struct Reads {
    pending: Vec<PendingRead>,
    last_id: u64,
}

impl ClientEngine {
    /// Starts a read for `reader`.
    pub(super) fn start_read(&mut self, target: ReadTarget, reader: Reader, out: &mut Vec<Effect>) {
        self.reads.last_id += 1;
        let id = self.reads.last_id;
        self.reads.pending.push(PendingRead {
            id,
            target: target.clone(),
            reader,
            failures: 0,
            retry_at: None,
        });
        out.push(Effect::Read { id, target });
    }

    /// The read `id` ended: `answer` is what came, or why nothing did.
    pub(super) fn read_done(
        &mut self,
        id: u64,
        answer: Result<ReadAnswer, Refusal>,
        now: u64,
        out: &mut Vec<Effect>,
    ) {
        self.counters.requests += 1;
        let reach = match &answer {
            Ok(_) => Some(Answer::Answered),
            Err(refusal) => reach_of(refusal),
        };
        if let Some(reach) = reach {
            self.request_ended(reach, now, out);
        }
        let Some(at) = self
            .reads
            .pending
            .iter()
            .position(|r| r.id == id && r.retry_at.is_none())
        else {
            return;
        };
        let refusal = match answer {
            Ok(answer) => {
                let read = self.reads.pending.remove(at);
                return self.read_answered(read, answer, out);
            }
            Err(refusal) => refusal,
        };
        let failures = self.reads.pending[at].failures + 1;
        let sample = self.ids.unit();
        match self.next_try(failures, &refusal, sample) {
            NextTry::After(delay) => {
                self.counters.retries += 1;
                let read = &mut self.reads.pending[at];
                read.failures = failures;
                read.retry_at = Some(now + delay);
                return;
            }
            NextTry::EndSession => self.session_ended(out),
            NextTry::GiveUp => {}
        }
        let read = self.reads.pending.remove(at);
        let failure = if refusal.code == ErrorCode::BadResponse && refusal.status.is_none() {
            // A 2xx whose body is not what the protocol says.
            Failure::Unreadable(refusal.message)
        } else {
            Failure::Answer(Box::new(refusal))
        };
        match read.reader {
            Reader::Caller(caller) => out.push(Effect::Settle {
                callers: vec![caller],
                result: Err(failure),
            }),
            Reader::Entry(mutation_id) => self.fetched(&mutation_id, None, out),
        }
    }

    /// A read brought what it asked for: a record is laid in and stored
    /// before its reader hears it.
    fn read_answered(&mut self, read: PendingRead, answer: ReadAnswer, out: &mut Vec<Effect>) {
        let answer = match (answer, &read.target) {
            (ReadAnswer::Record(record), ReadTarget::Record(key)) => {
                let collection = key.collection.clone();
                self.record_read(
                    &collection,
                    RemoteChange::Put(record.clone()),
                    Origin::Server,
                    out,
                );
                out.push(Effect::Write {
                    id: 0,
                    ops: vec![StoreOp::PutRecord {
                        collection,
                        record: record.clone(),
                    }],
                    persisted: None,
                });
                out.push(Effect::Changed);
                // What `view` shows now (a newer version may be here).
                let record = self.records.get(&key.collection, &key.id).unwrap_or(record);
                ReadAnswer::Record(record)
            }
            (answer, _) => answer,
        };
        match read.reader {
            Reader::Caller(caller) => out.push(Effect::Settle {
                callers: vec![caller],
                result: Ok(Outcome::Read(answer)),
            }),
            Reader::Entry(mutation_id) => {
                let record = match answer {
                    ReadAnswer::Record(record) => Some(record),
                    ReadAnswer::History(_) => None,
                };
                self.fetched(&mutation_id, record, out);
            }
        }
    }

    /// The retry timer fired: the reads whose time came are sent again.
    pub(super) fn read_retry_due(&mut self, now: u64, out: &mut Vec<Effect>) {
        for read in &mut self.reads.pending {
            if read.retry_at.is_some_and(|at| at <= now) {
                read.retry_at = None;
                out.push(Effect::Read {
                    id: read.id,
                    target: read.target.clone(),
                });
            }
        }
    }

    /// When a read is sent again next.
    pub(super) fn next_read_try(&self) -> Option<u64> {
        self.reads.pending.iter().filter_map(|r| r.retry_at).min()
    }

    /// `close()`: no read is waited for any more; the app's callers among
    /// their readers.
    pub(super) fn reads_closed(&mut self) -> Vec<CallerId> {
        std::mem::take(&mut self.reads.pending)
            .into_iter()
            .filter_map(|r| match r.reader {
                Reader::Caller(caller) => Some(caller),
                Reader::Entry(_) => None,
            })
            .collect()
    }

    /// Whether a read is under way.
    pub fn is_reading(&self) -> bool {
        !self.reads.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::engine::Event;

    const C: &str = "customers";

    fn engine() -> ClientEngine {
        ClientEngine::opened(None, C, Vec::new())
    }

    fn record(id: &str, version: u64) -> Record {
        let mut r = Record::empty(id);
        r.version = version;
        r
    }

    fn key() -> RecordKey {
        RecordKey::new(C, "c1")
    }

    fn refusal(status: Option<u16>, code: ErrorCode, retry_after_ms: Option<u64>) -> Refusal {
        Refusal {
            status,
            code,
            transient: status.is_none_or(|s| s >= 500 || s == 429)
                && code != ErrorCode::BadResponse,
            retry_after_ms,
            message: "no".into(),
            current: None,
            details: None,
        }
    }

    /// Asks for c1 and returns the read's id.
    fn ask(e: &mut ClientEngine, target: ReadTarget) -> u64 {
        let out = e.step(Event::Read { target, caller: 5 }, 10);
        sent(&out).expect("the read is sent")
    }

    fn sent(out: &[Effect]) -> Option<u64> {
        out.iter().find_map(|e| match e {
            Effect::Read { id, .. } => Some(*id),
            _ => None,
        })
    }

    fn settled(out: &[Effect]) -> Option<&Result<Outcome, Failure>> {
        out.iter().find_map(|e| match e {
            Effect::Settle { callers, result } if callers == &[5] => Some(result),
            _ => None,
        })
    }

    fn done(id: u64, answer: Result<ReadAnswer, Refusal>) -> Event {
        Event::ReadDone { id, answer }
    }

    #[test]
    fn a_record_read_is_laid_in_and_stored_before_its_caller_hears_it() {
        let mut e = engine();
        let id = ask(&mut e, ReadTarget::Record(key()));
        let out = e.step(done(id, Ok(ReadAnswer::Record(record("c1", 3)))), 20);
        let write = out
            .iter()
            .position(|e| matches!(e, Effect::Write { ops, .. } if matches!(ops.as_slice(), [StoreOp::PutRecord { .. }])))
            .expect("the record is stored");
        let settle = out
            .iter()
            .position(|e| matches!(e, Effect::Settle { .. }))
            .expect("the caller hears it");
        assert!(write < settle, "heard before it was stored: {out:?}");
        assert_eq!(
            settled(&out),
            Some(&Ok(Outcome::Read(ReadAnswer::Record(record("c1", 3)))))
        );
        assert!(out.contains(&Effect::RecordChanged {
            key: key(),
            origin: Origin::Server
        }));
        assert_eq!(e.records().get(C, "c1").map(|r| r.version), Some(3));
        assert!(!e.is_reading());
    }

    #[test]
    fn a_failed_read_is_sent_again_on_the_engines_timer_until_the_policy_gives_up() {
        let mut e = engine();
        let target = ReadTarget::History {
            key: key(),
            limit: 50,
        };
        let id = ask(&mut e, target.clone());
        let attempts = e.config.retry.attempts;
        let mut now = 20;
        for n in 1..=attempts {
            let out = e.step(
                done(id, Err(refusal(Some(500), ErrorCode::Server, None))),
                now,
            );
            assert_eq!(settled(&out), None, "tried again after failure {n}");
            let at = e.next_read_try().expect("the retry's deadline");
            assert!(at > now);
            assert!(e.poll_timeout().is_some_and(|t| t <= at), "on the timer");
            e.handle_timeout(at);
            let mut resent = Vec::new();
            while let Some(effect) = e.poll_output() {
                resent.push(effect);
            }
            assert!(
                resent.contains(&Effect::Read {
                    id,
                    target: target.clone()
                }),
                "the same read again: {resent:?}"
            );
            now = at;
        }
        assert_eq!(e.counters().retries, u64::from(attempts));
        let out = e.step(
            done(id, Err(refusal(Some(500), ErrorCode::Server, None))),
            now,
        );
        assert!(matches!(
            settled(&out),
            Some(Err(Failure::Answer(r))) if r.status == Some(500)
        ));
        assert!(!e.is_reading());
    }

    #[test]
    fn a_server_out_of_reach_is_not_waited_for() {
        // No answer marks the server unreachable: the caller hears it at
        // once (the probe finds when the server is back).
        let mut e = engine();
        let id = ask(&mut e, ReadTarget::Record(key()));
        let out = e.step(done(id, Err(refusal(None, ErrorCode::Timeout, None))), 20);
        assert!(matches!(
            settled(&out),
            Some(Err(Failure::Answer(r))) if r.code == ErrorCode::Timeout
        ));
        assert!(!e.is_online());
        assert_eq!(e.next_read_try(), None);
    }

    #[test]
    fn retry_after_is_honoured() {
        let mut e = engine();
        let id = ask(&mut e, ReadTarget::Record(key()));
        let asked = e.config.retry.max_delay_ms.min(9_000);
        e.step(
            done(id, Err(refusal(Some(429), ErrorCode::Server, Some(asked)))),
            100,
        );
        let at = e.next_read_try().expect("the retry's deadline");
        assert!(at >= 100 + asked, "sent again after {} ms", at - 100);
    }

    #[test]
    fn a_401_ends_the_session_and_the_caller_hears_it() {
        let mut e = engine();
        let id = ask(&mut e, ReadTarget::Record(key()));
        let out = e.step(
            done(id, Err(refusal(Some(401), ErrorCode::Unauthorized, None))),
            20,
        );
        assert!(out.contains(&Effect::SessionEnded));
        assert!(e.is_expired());
        assert!(matches!(
            settled(&out),
            Some(Err(Failure::Answer(r))) if r.code == ErrorCode::Unauthorized
        ));
    }

    #[test]
    fn a_body_not_of_the_protocols_shape_is_bad_response_and_not_tried_again() {
        let mut e = engine();
        let id = ask(&mut e, ReadTarget::Record(key()));
        let garbage = Refusal {
            message: "expected a record".into(),
            ..refusal(None, ErrorCode::BadResponse, None)
        };
        let out = e.step(done(id, Err(garbage)), 20);
        assert_eq!(
            settled(&out),
            Some(&Err(Failure::Unreadable("expected a record".into())))
        );
        assert!(e.records().get(C, "c1").is_none());
        assert!(e.is_online(), "an answer came");
    }

    #[test]
    fn a_refusal_is_heard_as_the_server_said_it() {
        let mut e = engine();
        let id = ask(&mut e, ReadTarget::Record(key()));
        let out = e.step(
            done(id, Err(refusal(Some(404), ErrorCode::NotFound, None))),
            20,
        );
        assert!(matches!(
            settled(&out),
            Some(Err(Failure::Answer(r))) if r.status == Some(404)
        ));
        assert_eq!(e.counters().retries, 0);
    }

    #[test]
    fn close_settles_the_callers_of_reads_under_way() {
        let mut e = engine();
        ask(&mut e, ReadTarget::Record(key()));
        let out = e.step(Event::Close, 20);
        assert_eq!(settled(&out), Some(&Err(Failure::Closed)));
        assert!(!e.is_reading());
    }
}
