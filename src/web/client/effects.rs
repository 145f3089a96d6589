//! The runner: hands events to the [`ClientEngine`] and carries out the
//! effects it returns with fetch, IndexedDB, timers, the tab channel and
//! the callers' promises. It decides nothing: what to send, when, and what
//! an answer means are the engine's.

use gloo_timers::callback::Timeout;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::spawn_local;

use super::{encode, Client, SyncLogEntry};
use crate::core::engine::{
    Effect, Event, Failure, Origin, ProbeReply, Refusal, Reply, StoreOp, StoredWork,
};
use crate::core::outbox::{EntryState, MutationOp, OutboxEntry};
use crate::core::reachability::Answer;
use crate::core::record::{Comment, Record};
use crate::core::tab_message::TabMessage;
use crate::error::{Error, ErrorCode};
use crate::web::clock::now_ms;
use crate::web::http::{send, HttpRequest, HttpResponse, Method};
use crate::web::idb::{record_key, Batch as DbBatch, Store};
use crate::web::js::{from_server, get, to_js};

impl Client {
    /// Hands one event to the engine and carries out what it says.
    pub(super) fn handle(&self, event: Event) {
        self.inner.state.borrow_mut().engine.handle(event, now_ms());
        self.run();
    }

    /// Carries out what the engine says, in the order it gives (the engine
    /// holds back what follows a write until [`Event::Written`]), and keeps
    /// the one timer at its next deadline. Everything up to the first
    /// IndexedDB write happens now, so `view` shows a save before the call
    /// returns.
    fn run(&self) {
        let mut changed = false;
        loop {
            let effect = self.inner.state.borrow_mut().engine.poll_output();
            let Some(effect) = effect else { break };
            match effect {
                Effect::Write { id, ops, .. } => {
                    if changed {
                        self.emit_status();
                        changed = false;
                    }
                    let this = self.clone();
                    spawn_local(async move {
                        let written = this.persist_ops(ops).await;
                        this.handle(Event::Written { id, written });
                    });
                }
                Effect::Changed => {
                    self.changed();
                    changed = true;
                }
                other => self.carry_out_one(other),
            }
        }
        if changed {
            self.emit_status();
        }
        self.arm_timer();
    }

    /// The effects that need no waiting.
    fn carry_out_one(&self, effect: Effect) {
        match effect {
            Effect::Write { .. } | Effect::Changed => {}
            Effect::WriteHeld => {
                let this = self.clone();
                spawn_local(async move {
                    // Written, or nowhere to write any more: no longer held.
                    if this.persist(DbBatch::new()).await {
                        this.handle(Event::HeldWritten);
                    }
                });
            }
            Effect::Send { entry, keepalive } => {
                let this = self.clone();
                spawn_local(async move { this.send_entry(entry, keepalive).await });
            }
            Effect::Settle { callers, result } => {
                let value = match result {
                    Ok(outcome) => self.outcome_js(outcome),
                    Err(Failure::PendingChanges(count)) => Err(self.pending_changes(count)),
                    Err(failure) => Err(self.error_of(failure)),
                };
                self.settle_callers(callers, &value);
            }
            Effect::Probe => {
                let this = self.clone();
                spawn_local(async move { this.probe().await });
            }
            Effect::Fetch { key, mutation_id } => {
                let this = self.clone();
                spawn_local(async move {
                    let record = match this.fetch_one(&key).await {
                        Ok(()) => this
                            .inner
                            .state
                            .borrow()
                            .engine
                            .records()
                            .get(&key.collection, &key.id),
                        Err(_) => None,
                    };
                    this.handle(Event::Fetched {
                        mutation_id,
                        record,
                    });
                });
            }
            Effect::RecordChanged { key, origin } => self.emit_record(
                &key,
                match origin {
                    Origin::Local => "local",
                    Origin::Server => "server",
                    Origin::Tab => "tab",
                },
            ),
            Effect::ConflictFound(kept) => self.emit_conflict(&kept),
            Effect::UndoableChanged => self.emit_undoable(),
            Effect::FailureFound(entry) => self.emit_failed(&entry),
            Effect::TellCommitted { key, version } => self.tell_tabs_record(&key, version),
            Effect::ReadFeed { since } => {
                let this = self.clone();
                spawn_local(async move { this.read_feed_page(&since).await });
            }
            Effect::OpenStream { since } => self.open_stream(&since),
            Effect::Revoke => {
                let this = self.clone();
                spawn_local(async move {
                    let result = this.revoke().await;
                    this.handle(Event::Revoked(
                        result.as_ref().map(|_| ()).map_err(refusal_of),
                    ));
                });
            }
            Effect::LoggedOut => {
                self.tell_tabs_logged_out();
                self.emit_session("logged-out");
            }
            Effect::TellReloaded { collection } => {
                self.tell_tabs(TabMessage::CollectionReloaded(collection));
            }
            Effect::CloseStream => {
                self.inner.events.borrow_mut().take();
            }
            Effect::Reload { collections } => {
                let this = self.clone();
                spawn_local(async move { this.reload(collections).await });
            }
            Effect::LoadFrom { .. }
            | Effect::MarkLoaded { .. }
            | Effect::AskCatchUp
            | Effect::CaughtUp { .. } => self.carry_out_local(effect),
            Effect::Pulled(report) => self.log_exchange(SyncLogEntry {
                at: now_ms() as f64,
                direction: "pull".into(),
                kind: "feed".into(),
                pushed: 0,
                pulled: report.pulled,
                merged: 0,
                conflicts: 0,
                failed: 0,
                duration_ms: report.duration_ms as f64,
                error: report.error,
                reason: None,
            }),
            Effect::SessionEnded => self.session_ended_here(),
            Effect::Drained(report) => self.log_exchange(SyncLogEntry {
                at: now_ms() as f64,
                direction: "push".into(),
                kind: "outbox".into(),
                pushed: report.pushed,
                pulled: 0,
                merged: report.merged,
                conflicts: report.conflicts,
                failed: report.failed,
                duration_ms: report.duration_ms as f64,
                error: report.error,
                reason: None,
            }),
        }
    }

    /// Keeps the one timer at the engine's next deadline.
    fn arm_timer(&self) {
        let at = self.inner.state.borrow().engine.poll_timeout();
        let mut timer = self.inner.timer.borrow_mut();
        if timer.as_ref().map(|(set, _)| *set) == at {
            return;
        }
        let Some(at) = at else {
            timer.take();
            return;
        };
        let delay = at.saturating_sub(now_ms()).max(1);
        let weak = self.weak();
        let timeout = Timeout::new(u32::try_from(delay).unwrap_or(u32::MAX), move || {
            if let Some(client) = Client::from_weak(&weak) {
                client.inner.timer.borrow_mut().take();
                client
                    .inner
                    .state
                    .borrow_mut()
                    .engine
                    .handle_timeout(now_ms());
                client.run();
            }
        });
        *timer = Some((at, timeout));
    }

    /// Writes the engine's store operations; `false` when IndexedDB held
    /// them for lack of space (they are written first next time).
    async fn persist_ops(&self, ops: Vec<StoreOp>) -> bool {
        let mut batch = DbBatch::new();
        for op in &ops {
            let _ = match op {
                StoreOp::PutRecord { collection, record } => batch
                    .put_record(
                        Store::Records.name(),
                        record_key(collection, &record.id),
                        record,
                    )
                    .map(|_| ()),
                StoreOp::DeleteRecord(key) => {
                    batch.delete(Store::Records.name(), record_key(&key.collection, &key.id));
                    Ok(())
                }
                StoreOp::PutCursor(cursor) => batch
                    .put(Store::Meta.name(), super::CURSOR_KEY, cursor)
                    .map(|_| ()),
                StoreOp::DeleteCursor => {
                    batch.delete(Store::Meta.name(), super::CURSOR_KEY);
                    Ok(())
                }
                StoreOp::PutEntry(entry) => put_entry(&mut batch, entry, None),
                StoreOp::UpdateEntry { entry, if_key } => {
                    put_entry(&mut batch, entry, Some(if_key))
                }
                StoreOp::DeleteEntry {
                    mutation_id,
                    failed,
                } => {
                    let store = if *failed {
                        Store::Failed
                    } else {
                        Store::Outbox
                    };
                    batch.delete(store.name(), mutation_id.clone());
                    Ok(())
                }
                StoreOp::PutConflict(kept) => batch
                    .put(Store::Conflicts.name(), kept.conflict.id.clone(), kept)
                    .map(|_| ()),
                StoreOp::DeleteConflict(id) => {
                    batch.delete(Store::Conflicts.name(), id.clone());
                    Ok(())
                }
                StoreOp::PutUndo(entry) => batch
                    .put(
                        Store::Meta.name(),
                        super::undo::undo_key(&entry.mutation_id),
                        entry,
                    )
                    .map(|_| ()),
                StoreOp::DeleteUndo(id) => {
                    batch.delete(Store::Meta.name(), super::undo::undo_key(id));
                    Ok(())
                }
            };
        }
        self.persist(batch).await
    }

    /// The user's work as IndexedDB holds it (the engine lays the writes
    /// of this tab that have not landed over it).
    pub(super) async fn stored_work(&self) -> Option<StoredWork> {
        let db = self.db()?;
        // Read before the outbox, so that the outbox is read last, as late
        // as before: a read of it that lands after this tab's next write is
        // taken for the truth (a later read of the undo list widened that
        // window, and a browser test saw a re-sent entry dropped).
        let undo = Self::stored_undo(&db).await;
        let outbox: Result<Vec<(String, OutboxEntry)>, Error> = db.all(Store::Outbox).await;
        let failed: Result<Vec<(String, OutboxEntry)>, Error> = db.all(Store::Failed).await;
        let conflicts: Result<Vec<(String, crate::core::engine::KeptConflict)>, Error> =
            db.all(Store::Conflicts).await;
        let (Ok(outbox), Ok(failed), Ok(conflicts)) = (outbox, failed, conflicts) else {
            return None;
        };
        let work = StoredWork {
            outbox: outbox.into_iter().map(|(_, e)| e).collect(),
            failed: failed.into_iter().map(|(_, e)| e).collect(),
            conflicts: conflicts.into_iter().map(|(_, k)| k).collect(),
            undo,
        };
        Some(work)
    }

    /// Sends an outbox entry and tells the engine the answer.
    async fn send_entry(&self, entry: OutboxEntry, keepalive: bool) {
        let result = match self.build(&entry, keepalive) {
            Ok(req) => send(&req).await,
            Err(e) => Err(e),
        };
        if self.inner.state.borrow().engine.is_closed() {
            return;
        }
        let reply = reply_of(&entry, result);
        self.handle(Event::Answered {
            mutation_id: entry.mutation_id,
            reply,
        });
    }

    /// The request of an outbox entry, with its `Idempotency-Key`.
    fn build(&self, entry: &OutboxEntry, keepalive: bool) -> Result<HttpRequest, Error> {
        let c = &entry.collection;
        let id = encode(&entry.record_id);
        let body = js_sys::Object::new();
        let set = |k: &str, v: &JsValue| {
            let _ = js_sys::Reflect::set(&body, &k.into(), v);
        };
        let mut req = match &entry.op {
            MutationOp::Patch {
                base_version,
                fields,
                ..
            } => {
                set("fields", &to_js(fields)?);
                let mut r = self.request(Method::Patch, &format!("/{c}/{id}"))?;
                r.if_match = Some(*base_version);
                r
            }
            MutationOp::Create { fields } => {
                set("id", &entry.record_id.as_str().into());
                set("fields", &to_js(fields)?);
                self.request(Method::Post, &format!("/{c}"))?
            }
            MutationOp::Delete { base_version } => {
                let mut r = self.request(Method::Delete, &format!("/{c}/{id}"))?;
                r.if_match = Some(*base_version);
                r
            }
            MutationOp::Comment { comment_id, text } => {
                set("id", &comment_id.as_str().into());
                set("text", &text.as_str().into());
                self.request(Method::Post, &format!("/{c}/{id}/comments"))?
            }
        };
        if !matches!(entry.op, MutationOp::Delete { .. }) {
            req.body = Some(body.into());
        }
        req.idempotency_key = Some(entry.idempotency_key.clone());
        req.keepalive = keepalive;
        Ok(req)
    }

    /// Asks the server who the token belongs to (`GET /api/me`): the
    /// cheapest authenticated request, and the one that verifies a token
    /// opened without a login.
    async fn probe(&self) {
        #[derive(serde::Deserialize)]
        struct Me {
            user: String,
        }
        let result = match self.request(Method::Get, "/me") {
            Ok(req) => send(&req).await,
            Err(e) => Err(e),
        };
        if self.inner.state.borrow().engine.is_closed() {
            return;
        }
        let reply = match result {
            Ok(resp) => match from_server::<Me>(resp.body) {
                Ok(me) => ProbeReply::User(me.user),
                Err(_) => ProbeReply::Unreadable,
            },
            Err(e) if e.code() == ErrorCode::Unauthorized => ProbeReply::Unauthorized,
            Err(Error::Http { status, .. }) => ProbeReply::Status(status),
            Err(Error::BadResponse(_)) => ProbeReply::Garbled,
            Err(_) => ProbeReply::Unreachable,
        };
        self.handle(Event::Probed(reply));
    }

    /// Sends a request of the runner's own (feed, load, sync job, logout)
    /// once, and tells the engine whether the server answered.
    pub(super) async fn exchange(&self, req: &HttpRequest) -> Result<HttpResponse, Error> {
        let result = send(req).await;
        if let Some(answer) = reach_answer(&result) {
            if !self.inner.state.borrow().engine.is_closed() {
                self.handle(Event::RequestEnded(answer));
            }
        }
        result
    }
}

/// Puts an entry in its store (the dead letters for a failed one); with
/// `if_key` it is written only if the outbox still holds it under that
/// `Idempotency-Key` (no other tab finished it or gave it a new key).
fn put_entry(batch: &mut DbBatch, entry: &OutboxEntry, if_key: Option<&str>) -> Result<(), Error> {
    let id = entry.mutation_id.clone();
    if entry.state == EntryState::Failed {
        batch.delete(Store::Outbox.name(), id.clone());
        batch.put(Store::Failed.name(), id, entry)?;
    } else {
        batch.delete(Store::Failed.name(), id.clone());
        if let Some(key) = if_key {
            batch.put_if_present(Store::Outbox.name(), id, entry, key)?;
        } else {
            batch.put(Store::Outbox.name(), id, entry)?;
        }
    }
    Ok(())
}

/// What a sent entry's result means to the engine.
fn reply_of(entry: &OutboxEntry, result: Result<HttpResponse, Error>) -> Reply {
    match result {
        Ok(resp) => match &entry.op {
            MutationOp::Patch { .. } | MutationOp::Create { .. } => {
                match from_server::<Record>(resp.body) {
                    Ok(record) => Reply::Record(record),
                    Err(e) => Reply::Unreadable(unreadable(e)),
                }
            }
            MutationOp::Delete { .. } => Reply::Done,
            MutationOp::Comment { .. } => match from_server::<Comment>(resp.body) {
                Ok(comment) => Reply::Comment(comment),
                Err(e) => Reply::Unreadable(unreadable(e)),
            },
        },
        Err(err) => {
            let current = match &err {
                Error::Http {
                    status: 409,
                    details,
                    ..
                } => {
                    Some(from_server::<Record>(get(details, "current")).map_err(|e| e.to_string()))
                }
                _ => None,
            };
            let refusal = Refusal {
                current,
                ..refusal_of(&err)
            };
            Reply::Refused(refusal)
        }
    }
}

/// A failed exchange as the engine sees it.
pub(super) fn refusal_of(err: &Error) -> Refusal {
    Refusal {
        status: err.status(),
        code: err.code(),
        transient: err.is_transient(),
        retry_after_ms: match err {
            Error::Http { retry_after_ms, .. } => *retry_after_ms,
            _ => None,
        },
        message: err.to_string(),
        current: None,
        details: match err {
            Error::Http { details, .. } if !details.is_undefined() && !details.is_null() => {
                js_sys::JSON::stringify(details)
                    .ok()
                    .and_then(|text| text.as_string())
            }
            _ => None,
        },
    }
}

impl Client {
    /// The error a caller hears for a failure the engine names.
    pub(super) fn error_of(&self, failure: Failure) -> Error {
        match failure {
            Failure::Answer(refusal) => self.error_of_refusal(*refusal),
            Failure::Unreadable(why) => Error::BadResponse(why),
            Failure::Cancelled => Error::Cancelled,
            Failure::Closed => Error::Closed,
            Failure::Invalid(why) => Error::Invalid(why),
            Failure::NotFound(why) => super::not_found(why),
            Failure::PendingChanges(count) => Error::PendingChanges {
                count,
                details: JsValue::UNDEFINED,
            },
        }
    }

    /// The error a refusal came from, as the caller sees it: the same
    /// `code`, `message`, `status` and `details` ([`refusal_of`] the other
    /// way; status 0 stands for none, as for an error made here).
    fn error_of_refusal(&self, refusal: Refusal) -> Error {
        Error::Http {
            code: refusal.code,
            status: refusal.status.unwrap_or(0),
            message: refusal.message,
            details: refusal
                .details
                .and_then(|text| js_sys::JSON::parse(&text).ok())
                .unwrap_or(JsValue::UNDEFINED),
            retry_after_ms: refusal.retry_after_ms,
        }
    }
}

/// What a request's end says about reachability; `None` for a request that
/// never left (a body that could not be made, a closed client).
fn reach_answer(result: &Result<HttpResponse, Error>) -> Option<Answer> {
    match result {
        Ok(_) | Err(Error::BadResponse(_)) => Some(Answer::Answered),
        Err(Error::Network(_) | Error::Timeout(_)) => Some(Answer::Unreachable),
        Err(Error::Http { status, .. }) => Some(Answer::of_status(Some(*status))),
        Err(_) => None,
    }
}

/// The message of a body that could not be read, without saying twice
/// that it could not be.
fn unreadable(e: Error) -> String {
    match e {
        Error::BadResponse(message) => message,
        other => other.to_string(),
    }
}
