//! The app's changes: callers' promises, `save`, `comment`, `create`,
//! `remove`, `flush`, `retry`, `discard`, `resolve`, `logout` and `close`.
//! Each hands the engine an event; the engine decides.

use super::*;

impl Client {
    // ----- callers -------------------------------------------------------------

    pub(super) fn new_caller(&self) -> (u64, Promise) {
        let mut settle: Option<(Function, Function)> = None;
        let promise = Promise::new(&mut |resolve, reject| settle = Some((resolve, reject)));
        let mut state = self.inner.state.borrow_mut();
        state.next_caller += 1;
        let id = state.next_caller;
        if let Some((resolve, reject)) = settle {
            state.callers.insert(
                id,
                Caller {
                    resolve,
                    reject,
                    promise: promise.clone(),
                },
            );
        }
        (id, promise)
    }

    pub(super) fn settle_callers(&self, callers: Vec<u64>, result: &Result<JsValue, Error>) {
        let mut taken = Vec::new();
        {
            let mut state = self.inner.state.borrow_mut();
            for id in callers {
                if let Some(caller) = state.callers.remove(&id) {
                    taken.push(caller);
                }
            }
        }
        for caller in taken {
            let _ = match result {
                Ok(value) => caller.resolve.call1(&JsValue::UNDEFINED, value),
                Err(err) => caller
                    .reject
                    .call1(&JsValue::UNDEFINED, &JsValue::from(err.clone())),
            };
        }
    }

    // ----- writes ----------------------------------------------------------

    pub(super) fn check_open(&self) -> Result<(), Error> {
        let state = self.inner.state.borrow();
        if state.engine.is_closed() {
            return Err(Error::Closed);
        }
        if state.engine.is_expired() {
            return Err(Error::Http {
                code: ErrorCode::Unauthorized,
                status: 401,
                message: "the session has ended; log in again".into(),
                details: JsValue::UNDEFINED,
                retry_after_ms: None,
            });
        }
        Ok(())
    }

    /// A debounced, staged change of some fields.
    ///
    /// # Errors
    /// `invalid`, `not_found` (no such record), `closed`, or what the server said.
    pub async fn save(&self, collection: &str, id: &str, fields: Fields) -> Result<JsValue, Error> {
        let promise = match self.stage_save(collection, id, fields.clone())? {
            Some(p) => p,
            None => {
                self.fetch_one(&RecordKey::new(collection, id)).await?;
                self.check_open()?;
                self.ask(|caller| Event::Save {
                    key: RecordKey::new(collection, id),
                    fields,
                    caller,
                })
            }
        };
        JsFuture::from(promise).await.map_err(rejected)
    }

    /// Stages a save at once when the record is known here (so `view`
    /// shows it before the call returns); `None` when it must be fetched.
    ///
    /// # Errors
    /// `invalid`, `closed`.
    pub fn stage_save(
        &self,
        collection: &str,
        id: &str,
        fields: Fields,
    ) -> Result<Option<Promise>, Error> {
        self.check_open()?;
        check_collection(collection)?;
        if fields.is_empty() {
            // A PATCH of nothing changes nothing; servers refuse it.
            return Err(Error::Invalid("a save needs at least one field".into()));
        }
        let key = RecordKey::new(collection, id);
        let known = {
            let state = self.inner.state.borrow();
            let records = state.engine.records();
            records.contains(collection, id) || records.staged(&key).is_some()
        };
        if !known {
            return Ok(None);
        }
        Ok(Some(self.ask(|caller| Event::Save {
            key,
            fields,
            caller,
        })))
    }

    /// A promise for a caller, and the engine told what it asks.
    pub(super) fn ask(&self, event: impl FnOnce(CallerId) -> Event) -> Promise {
        let (caller, promise) = self.new_caller();
        self.handle(event(caller));
        promise
    }

    /// Stages a comment at once and queues it; the promise settles with the
    /// server's answer.
    ///
    /// # Errors
    /// `invalid` for an empty text, `closed`.
    pub fn stage_comment(
        &self,
        collection: &str,
        id: &str,
        text: String,
    ) -> Result<Promise, Error> {
        self.check_open()?;
        check_collection(collection)?;
        if text.trim().is_empty() {
            return Err(Error::Invalid("a comment needs some text".into()));
        }
        let key = RecordKey::new(collection, id);
        Ok(self.ask(|caller| Event::Comment { key, text, caller }))
    }

    /// Creates a record with a client-made id.
    ///
    /// # Errors
    /// `invalid`, `closed`, or what the server said.
    pub async fn create(&self, collection: &str, fields: Fields) -> Result<JsValue, Error> {
        self.check_open()?;
        check_collection(collection)?;
        let key = RecordKey::new(collection, uuid_v4());
        let promise = self.ask(|caller| Event::Create {
            key,
            fields,
            caller,
        });
        JsFuture::from(promise).await.map_err(rejected)
    }

    /// Deletes a record (If-Match its confirmed version).
    ///
    /// # Errors
    /// `not_found`, `closed`, or what the server said.
    pub async fn remove(&self, collection: &str, id: &str) -> Result<JsValue, Error> {
        self.check_open()?;
        check_collection(collection)?;
        let key = RecordKey::new(collection, id);
        let known = self
            .inner
            .state
            .borrow()
            .engine
            .records()
            .get(collection, id)
            .is_some();
        if !known {
            self.fetch_one(&key).await?;
        }
        let promise = self.ask(|caller| Event::Delete { key, caller });
        JsFuture::from(promise).await.map_err(rejected)
    }

    /// Sends every debounced change now; returns the callers' promises.
    pub fn flush_all(&self, keepalive: bool) -> Vec<Promise> {
        let before: Vec<CallerId> = self.inner.state.borrow().callers.keys().copied().collect();
        self.handle(Event::Flush { keepalive });
        let state = self.inner.state.borrow();
        before
            .iter()
            .filter_map(|c| state.callers.get(c).map(|c| c.promise.clone()))
            .collect()
    }

    /// Puts a failed mutation back in its lane and sends it.
    ///
    /// # Errors
    /// `not_found` for an unknown id.
    pub async fn retry(&self, mutation_id: &str) -> Result<JsValue, Error> {
        self.check_open()?;
        let entry = self
            .inner
            .state
            .borrow()
            .engine
            .outbox()
            .failed()
            .iter()
            .find(|e| e.mutation_id == mutation_id)
            .cloned();
        let Some(entry) = entry else {
            return Err(not_found(format!("no failed mutation {mutation_id:?}")));
        };
        // Of two tabs retrying one entry at once, one finds it gone.
        let mut batch = DbBatch::new();
        batch.delete(Store::Failed.name(), mutation_id.to_owned());
        let mut queued = entry;
        queued.state = crate::core::outbox::EntryState::Queued;
        batch.put(Store::Outbox.name(), mutation_id.to_owned(), &queued)?;
        let claimed = self.claim(Store::Failed, mutation_id, batch).await?;
        let mutation_id = mutation_id.to_owned();
        let promise = self.ask(|caller| match claimed {
            true => Event::Retry {
                mutation_id,
                caller,
            },
            false => Event::ClaimLost { caller },
        });
        JsFuture::from(promise).await.map_err(rejected)
    }

    /// Drops a failed or queued mutation and its staged change.
    ///
    /// # Errors
    /// `not_found` for an unknown id, `invalid` while it is being sent.
    pub async fn discard(&self, mutation_id: &str) -> Result<(), Error> {
        let sendable = self.inner.state.borrow().engine.can_discard(mutation_id);
        sendable.map_err(|failure| self.error_of(failure))?;
        self.handle(Event::Discard {
            mutation_id: mutation_id.to_owned(),
        });
        Ok(())
    }

    /// Resolves a conflict with the fields a person chose; they are sent on
    /// the server's version.
    ///
    /// # Errors
    /// `not_found` for an unknown conflict, or what the server said.
    pub async fn resolve(&self, conflict_id: &str, chosen: Fields) -> Result<JsValue, Error> {
        self.check_open()?;
        if !self.inner.state.borrow().engine.has_conflict(conflict_id) {
            return Err(not_found(format!("no conflict {conflict_id:?}")));
        }
        // Of two tabs resolving one conflict at once, one finds it gone.
        let mut batch = DbBatch::new();
        batch.delete(Store::Conflicts.name(), conflict_id.to_owned());
        let claimed = self.claim(Store::Conflicts, conflict_id, batch).await?;
        let conflict_id = conflict_id.to_owned();
        let promise = self.ask(|caller| match claimed {
            true => Event::Resolve {
                conflict_id,
                chosen,
                caller,
            },
            false => Event::ClaimLost { caller },
        });
        JsFuture::from(promise).await.map_err(rejected)
    }

    // ----- the outbox pump ---------------------------------------------------

    /// Logs out as the engine decides: sends what is queued first and
    /// refuses with `pending_changes` if anything is left (unless
    /// `discard`), then revokes the token and tells the other tabs. The
    /// caller then shuts the tab down and deletes the user's data.
    ///
    /// # Errors
    /// `closed`.
    pub fn logout(&self, discard: bool) -> Result<Promise, Error> {
        self.check_open()?;
        Ok(self.ask(|caller| Event::Logout { discard, caller }))
    }

    /// The error of a logout that found `count` changes not on the server:
    /// its `details` list them as `pending()`, `failed()` and `conflicts()`.
    pub(super) fn pending_changes(&self, count: usize) -> Error {
        let details = js_sys::Object::new();
        let _ = js_sys::Reflect::set(&details, &"pending".into(), &self.pending());
        let _ = js_sys::Reflect::set(&details, &"failed".into(), &self.failed());
        let _ = js_sys::Reflect::set(&details, &"conflicts".into(), &self.conflicts());
        Error::PendingChanges {
            count,
            details: details.into(),
        }
    }

    /// A 401: the token is no longer good. Every tab hears it (the facade
    /// relays it); writes wait in the outbox for a new login.
    pub fn session_expired(&self) {
        self.handle(Event::SessionEnded);
    }

    /// The engine says the session ended: the app hears it, and the other
    /// tabs too unless one of them said so first.
    pub(super) fn session_ended_here(&self) {
        self.emit_session("expired");
        if !self.inner.from_tab.get() {
            self.tell_tabs(TabMessage::Session(SessionNotice {
                state: SessionEnd::Expired,
            }));
        }
    }

    /// Stops timers and listeners; waiting callers are rejected with `closed`.
    pub fn close(&self) {
        if self.inner.state.borrow().engine.is_closed() {
            return;
        }
        self.handle(Event::Close);
        self.inner.timer.borrow_mut().take();
        self.inner.events.borrow_mut().take();
        self.inner.page.borrow_mut().clear();
        self.inner.lifecycle.borrow_mut().take();
        let callers: Vec<CallerId> = self.inner.state.borrow().callers.keys().copied().collect();
        self.settle_callers(callers, &Err(Error::Closed));
        let loads = std::mem::take(&mut self.inner.state.borrow_mut().load_waiters);
        for (_, _, reject) in loads {
            let _ = reject.call1(&JsValue::NULL, &JsValue::from(Error::Closed));
        }
        if let Some(db) = self.inner.db.borrow_mut().take() {
            db.close();
        }
    }
}
