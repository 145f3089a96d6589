//! The browser's side of the one runner (`core/engine/runner.rs`): the
//! [`Io`] of a page, with fetch, IndexedDB, timers, the tab channel and
//! the callers' promises. Each call that waits for the world spawns one
//! future, which awaits the I/O and hands what came back to the engine as
//! one event. Which effect becomes which call, the order and the timer
//! are the shared runner's; nothing here decides.

use gloo_timers::callback::Timeout;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::spawn_local;

use super::{encode, Client, SyncLogEntry};
use crate::core::engine::runner::{self, Io, Post, Request};
use crate::core::engine::{
    ClientEngine, Effect, Event, Failure, Origin, ProbeReply, ReadAnswer, ReadTarget, Refusal,
    Reply, StoreOp, StoredWork,
};
use crate::core::history::HistoryPage;
use crate::core::outbox::{EntryState, MutationOp, OutboxEntry};
use crate::core::reachability::Answer;
use crate::core::record::{Comment, Record};
use crate::core::tab_message::TabMessage;
use crate::error::Error;
use crate::web::clock::now_ms;
use crate::web::http::{send, HttpRequest, HttpResponse, Method};
use crate::web::idb::{record_key, Batch as DbBatch, Store};
use crate::web::js::{from_server, get, read_from_server, to_js};

impl Client {
    /// Hands one event to the engine and carries out what it says.
    /// Everything up to the first IndexedDB write happens now, so `view`
    /// shows a save before the call returns.
    pub(super) fn handle(&self, event: Event) {
        runner::handle(&mut self.clone(), event);
    }

    /// A request's end, as the engine's event: the body read as the
    /// protocol says, or the failure as [`Request::failed`] says.
    fn answered(&self, request: Request, result: Result<HttpResponse, Error>) {
        #[derive(serde::Deserialize)]
        struct Me {
            user: String,
        }
        if self.inner.state.borrow().engine.is_closed() {
            return;
        }
        let event = match (request, result) {
            (Request::Entry { entry, .. }, Ok(resp)) => Event::Answered {
                reply: reply_of(&entry, resp.body),
                mutation_id: entry.mutation_id,
            },
            (Request::Probe, Ok(resp)) => Event::Probed(match from_server::<Me>(resp.body) {
                Ok(me) => ProbeReply::User(me.user),
                Err(_) => ProbeReply::Unreadable,
            }),
            (Request::Feed { .. }, Ok(resp)) => Event::FeedRead(
                from_server::<super::feed::FeedPage>(resp.body)
                    .map(super::feed::FeedPage::into_engine)
                    .map_err(|e| refusal_of(&e)),
            ),
            (Request::Revoke, Ok(_)) => Event::Revoked(Ok(())),
            (Request::Read { id, target }, Ok(resp)) => Event::ReadDone {
                id,
                answer: read_answer(&target, &resp.body).map_err(|e| refusal_of(&e)),
            },
            (Request::Page { .. }, Ok(_)) => return,
            (request, Err(err)) => request.failed(refusal_of(&err)),
        };
        self.handle(event);
    }

    /// The request of one of the engine's [`Request`]s.
    fn http_request(&self, request: &Request) -> Result<HttpRequest, Error> {
        match request {
            Request::Entry { entry, keepalive } => self.build(entry, *keepalive),
            Request::Probe => self.request(Method::Get, "/me"),
            Request::Read { target, .. } => {
                let path = match target {
                    ReadTarget::Record(key) => format!("/{}/{}", key.collection, encode(&key.id)),
                    ReadTarget::History { key, limit } => format!(
                        "/{}/{}/history?limit={limit}",
                        key.collection,
                        encode(&key.id)
                    ),
                };
                self.request(Method::Get, &path)
            }
            Request::Feed { since } => self.request(
                Method::Get,
                &format!("/changes?since={}&limit=500", encode(since)),
            ),
            Request::Revoke => self.request(Method::Post, "/logout"),
            Request::Page { collection, .. } => {
                self.request(Method::Get, &format!("/{collection}"))
            }
        }
    }
}

impl Io for Client {
    fn now(&self) -> u64 {
        now_ms()
    }

    fn with_engine<R>(&mut self, f: impl FnOnce(&mut ClientEngine) -> R) -> Option<R> {
        Some(f(&mut self.inner.state.borrow_mut().engine))
    }

    fn write(&mut self, id: u64, ops: Vec<StoreOp>) {
        let batch = batch_of(&ops);
        let this = self.clone();
        spawn_local(async move {
            let written = this.persist(batch).await;
            this.handle(Event::Written { id, written });
        });
    }

    fn write_held(&mut self) {
        let this = self.clone();
        spawn_local(async move {
            // Written, or nowhere to write any more: no longer held.
            if this.persist(DbBatch::new()).await {
                this.handle(Event::HeldWritten);
            }
        });
    }

    fn request(&mut self, request: Request) {
        let this = self.clone();
        if let Request::Page {
            collection,
            after,
            size,
        } = request
        {
            // Read in slices.
            spawn_local(async move { this.read_page(collection, after, size).await });
            return;
        }
        let req = self.http_request(&request);
        spawn_local(async move {
            let result = match req {
                Ok(req) => send(&req).await,
                Err(e) => Err(e),
            };
            this.answered(request, result);
        });
    }

    fn open_stream(&mut self, since: String) {
        Client::open_stream(self, &since);
    }

    fn close_stream(&mut self) {
        self.inner.events.borrow_mut().take();
    }

    fn read_stored_ids(&mut self, collection: String) {
        let this = self.clone();
        spawn_local(async move { this.read_stored_ids(collection).await });
    }

    fn reload(&mut self, collections: Vec<String>) {
        let this = self.clone();
        spawn_local(async move { this.reload(collections).await });
    }

    fn post(&mut self, post: Post) {
        match post {
            Post::Committed { key, version } => self.tell_tabs_record(&key, version),
            Post::Reloaded { collection } => {
                self.tell_tabs(TabMessage::CollectionReloaded(collection));
            }
            Post::LoggedOut => self.tell_tabs_logged_out(),
            Post::CaughtUp => self.tell_tabs(TabMessage::CaughtUp),
            Post::CatchUpAsked => self.tell_tabs(TabMessage::CatchUpAsked),
        }
    }

    fn tell(&mut self, effect: Effect) {
        match effect {
            Effect::Settle { callers, result } => {
                let value = match result {
                    Ok(outcome) => self.outcome_js(outcome),
                    Err(Failure::PendingChanges(count)) => Err(self.pending_changes(count)),
                    Err(failure) => Err(self.error_of(failure)),
                };
                self.settle_callers(callers, &value);
            }
            Effect::RecordChanged { key, origin } => self.emit_record(
                &key,
                match origin {
                    Origin::Local => "local",
                    Origin::Server => "server",
                    Origin::Tab => "tab",
                },
            ),
            Effect::Changed => self.changed(),
            Effect::ConflictFound(kept) => self.emit_conflict(&kept),
            Effect::UndoableChanged => self.emit_undoable(),
            Effect::FailureFound(entry) => self.emit_failed(&entry),
            Effect::LoggedOut => self.emit_session("logged-out"),
            Effect::CaughtUp { .. } => {
                // Moves `lastSyncAt`, drops the snapshots (`stale` goes)
                // and raises a `status` event.
                self.set_last_sync_at(js_sys::Date::new_0().to_iso_string().as_string());
            }
            Effect::LoadFrom { collection, plan } => self.keep_load_plan(collection, plan),
            Effect::LoadProgress { collection, loaded } => self.emit_load(&collection, loaded),
            Effect::LoadEnded { collection, end } => self.load_ended(collection, end),
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
            _ => {}
        }
    }

    fn status_changed(&mut self) {
        self.emit_status();
    }

    fn timer(&self) -> Option<u64> {
        self.inner.timer.borrow().as_ref().map(|(at, _)| *at)
    }

    fn set_timer(&mut self, at: Option<u64>) {
        let mut timer = self.inner.timer.borrow_mut();
        let Some(at) = at else {
            timer.take();
            return;
        };
        let delay = at.saturating_sub(now_ms()).max(1);
        let weak = self.weak();
        let timeout = Timeout::new(u32::try_from(delay).unwrap_or(u32::MAX), move || {
            if let Some(mut client) = Client::from_weak(&weak) {
                client.inner.timer.borrow_mut().take();
                runner::handle_timeout(&mut client);
            }
        });
        *timer = Some((at, timeout));
    }
}

impl Client {
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

    /// Sends a request of the runner's own (a load, a read, a sync job)
    /// once, and tells the engine whether the server answered.
    pub(crate) async fn exchange(&self, req: &HttpRequest) -> Result<HttpResponse, Error> {
        let result = send(req).await;
        if let Some(answer) = reach_answer(&result) {
            if !self.inner.state.borrow().engine.is_closed() {
                self.handle(Event::RequestEnded(answer));
            }
        }
        result
    }
}

/// The engine's store operations as one IndexedDB batch.
fn batch_of(ops: &[StoreOp]) -> DbBatch {
    let mut batch = DbBatch::new();
    for op in ops {
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
            StoreOp::PutMark { collection, mark } => batch
                .put(Store::Meta.name(), super::local::mark_key(collection), mark)
                .map(|_| ()),
            StoreOp::PutEntry(entry) => put_entry(&mut batch, entry, None),
            StoreOp::UpdateEntry { entry, if_key } => put_entry(&mut batch, entry, Some(if_key)),
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
    batch
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

/// What a 2xx to a sent entry means to the engine.
fn reply_of(entry: &OutboxEntry, body: JsValue) -> Reply {
    let read =
        |read: Result<Reply, Error>| read.unwrap_or_else(|e| Reply::Unreadable(unreadable(e)));
    match &entry.op {
        MutationOp::Patch { .. } | MutationOp::Create { .. } => {
            read(read_from_server::<Record>(&body).map(Reply::Record))
        }
        MutationOp::Delete { .. } => Reply::Done,
        MutationOp::Comment { .. } => read(read_from_server::<Comment>(&body).map(Reply::Comment)),
    }
}

/// A read's 2xx body as the engine needs it.
fn read_answer(target: &ReadTarget, body: &JsValue) -> Result<ReadAnswer, Error> {
    match target {
        ReadTarget::Record(_) => read_from_server::<Record>(body).map(ReadAnswer::Record),
        ReadTarget::History { .. } => {
            from_server::<HistoryPage>(body.clone()).map(|page| ReadAnswer::History(page.items))
        }
    }
}

/// A failed exchange as the engine sees it.
pub(crate) fn refusal_of(err: &Error) -> Refusal {
    Refusal {
        status: err.status(),
        code: err.code(),
        transient: err.is_transient(),
        retry_after_ms: match err {
            Error::Http { retry_after_ms, .. } => *retry_after_ms,
            _ => None,
        },
        message: err.to_string(),
        // A 409's record as the server has it now (`details.current`).
        current: match err {
            Error::Http {
                status: 409,
                details,
                ..
            } => Some(
                read_from_server::<Record>(&get(details, "current")).map_err(|e| e.to_string()),
            ),
            _ => None,
        },
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
    pub(crate) fn error_of(&self, failure: Failure) -> Error {
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
    pub(super) fn error_of_refusal(&self, refusal: Refusal) -> Error {
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
