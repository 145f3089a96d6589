//! The user's IndexedDB database as the client uses it: opening it and
//! restoring the kept work, writing (holding writes refused for lack of
//! space), claiming an entry against other tabs, and the record-sync log.

use super::*;

impl Client {
    pub(super) async fn open_storage(&self) {
        let user = self.user();
        let db = match UserDb::open(&user).await {
            Ok(db) => db,
            Err(_) => {
                self.handle(Event::StorageOpened {
                    cursor: None,
                    work: StoredWork::default(),
                    records: Vec::new(),
                });
                return;
            }
        };
        let weak = self.weak();
        db.on_close(move |_reason| {
            // A newer version of the app upgraded the database in another
            // tab: go on in memory and say so.
            if let Some(client) = Client::from_weak(&weak) {
                client.inner.db.borrow_mut().take();
                client.changed();
                client.emit_status();
            }
        });
        let entries: Vec<(String, OutboxEntry)> = db.all(Store::Outbox).await.unwrap_or_default();
        let failed: Vec<(String, OutboxEntry)> = db.all(Store::Failed).await.unwrap_or_default();
        let conflicts: Vec<(String, KeptConflict)> =
            db.all(Store::Conflicts).await.unwrap_or_default();
        let undo = Self::stored_undo(&db).await;
        // Only the records the kept work is about: a collection is read
        // when it is loaded (in slices), so opening costs nothing that
        // grows with the data.
        let mut wanted: Vec<(String, String)> = entries
            .iter()
            .chain(&failed)
            .map(|(_, e)| (e.collection.clone(), e.record_id.clone()))
            .collect();
        crate::core::sort::sort(&mut wanted);
        wanted.dedup();
        let mut records: Vec<(String, Record)> = Vec::new();
        for (collection, id) in wanted {
            if let Ok(Some(record)) = db
                .get::<Record>(Store::Records, &record_key(&collection, &id))
                .await
            {
                records.push((collection, record));
            }
        }
        let cursor: Option<String> = db.get(Store::Meta, CURSOR_KEY).await.unwrap_or_default();
        let sync_log = db
            .db()
            .get(Store::Meta.name(), SYNC_LOG_KEY)
            .await
            .ok()
            .flatten();
        {
            let mut state = self.inner.state.borrow_mut();
            state.sync_log = sync_log;
        }
        *self.inner.db.borrow_mut() = Some(Rc::new(db));
        self.handle(Event::StorageOpened {
            cursor,
            work: StoredWork {
                outbox: entries.into_iter().map(|(_, e)| e).collect(),
                failed: failed.into_iter().map(|(_, e)| e).collect(),
                conflicts: conflicts.into_iter().map(|(_, k)| k).collect(),
                undo,
            },
            records,
        });
        self.changed();
    }

    /// Writes `batch` if IndexedDB is in use. When the browser refuses it
    /// for lack of space (`QuotaExceededError`), the write is held in memory
    /// and `status.storage` says `"memory"`; held writes go first, in one
    /// transaction with the next write (so the database never has a later
    /// write without an earlier one), or on their own every
    /// `HELD_RETRY_MS` (the engine's). Any other failure drops the database: the client
    /// goes on in memory (nothing the server has is lost).
    pub(super) async fn persist(&self, batch: DbBatch) -> bool {
        let Some(db) = self.db() else { return true };
        let held = self.inner.held.borrow_mut().take();
        let was_full = held.is_some();
        let batch = match held {
            Some(mut earlier) => {
                earlier.append(batch);
                earlier
            }
            None => batch,
        };
        if batch.is_empty() {
            return true;
        }
        let work = [Store::Outbox, Store::Failed, Store::Conflicts]
            .iter()
            .any(|store| batch.touches(store.name()));
        match db.write_batch(&batch).await {
            Ok(()) => {
                if work {
                    self.tell_tabs(TabMessage::WorkChanged(WorkNotice {}));
                }
                if was_full && self.inner.held.borrow().is_none() {
                    self.changed();
                    self.emit_status();
                    self.handle(Event::HeldWritten);
                }
                true
            }
            Err(Error::Quota) => {
                // Before whatever was held while this one was under way:
                // the browser runs our transactions in the order they began.
                let mut held = batch;
                if let Some(later) = self.inner.held.borrow_mut().take() {
                    held.append(later);
                }
                *self.inner.held.borrow_mut() = Some(held);
                // The engine says when to try again.
                self.handle(Event::StoreFull);
                if !was_full {
                    self.changed();
                    self.emit_status();
                }
                false
            }
            Err(e) => {
                // Said where a developer looks: `status.storage` only says
                // that it happened.
                web_sys::console::error_1(
                    &format!("crm-sync: IndexedDB refused a write ({e}); going on in memory")
                        .into(),
                );
                self.inner.db.borrow_mut().take();
                self.changed();
                self.emit_status();
                true
            }
        }
    }

    /// Adds a line to the user's record-sync log: in IndexedDB (the newest
    /// [`SYNC_LOG_KEPT`], read-modify-write in one transaction, so tabs
    /// never lose each other's lines) and in memory; other tabs are told.
    pub(super) fn log_exchange(&self, entry: SyncLogEntry) {
        let Ok(line) = to_js(&entry) else { return };
        let this = self.clone();
        spawn_local(async move {
            let Some(db) = this.db() else {
                // In memory only: the log lives as long as the page.
                let log = this.sync_log_array();
                log.unshift(&line);
                log.set_length(log.length().min(SYNC_LOG_KEPT));
                this.inner.state.borrow_mut().sync_log = Some(log.into());
                this.changed();
                this.emit_status();
                return;
            };
            let meta = Store::Meta.name();
            let written = db
                .db()
                .read_modify_write(&[meta], meta, SYNC_LOG_KEY, |current| {
                    let log: js_sys::Array = current
                        .filter(js_sys::Array::is_array)
                        .map(Into::into)
                        .unwrap_or_default();
                    log.unshift(&line);
                    log.set_length(log.length().min(SYNC_LOG_KEPT));
                    let mut batch = DbBatch::new();
                    batch.put_js(meta, SYNC_LOG_KEY, log.clone().into());
                    Ok::<_, Error>((batch, log))
                })
                .await;
            if let Ok(log) = written {
                this.inner.state.borrow_mut().sync_log = Some(log.into());
                this.changed();
                // Subscribers (useSyncLog) hear of it with the status.
                this.emit_status();
                this.tell_tabs(TabMessage::WorkChanged(WorkNotice {}));
            }
        });
    }

    pub(super) fn sync_log_array(&self) -> js_sys::Array {
        self.inner
            .state
            .borrow()
            .sync_log
            .clone()
            .filter(js_sys::Array::is_array)
            .map(Into::into)
            .unwrap_or_default()
    }

    /// `crm.syncLog()`: the user's record-sync log, newest first; the same
    /// array until a line is added.
    pub fn sync_log(&self) -> JsValue {
        self.snapshot("syncLog".into(), || {
            let log = self.sync_log_array();
            // A copy: the app may not change the log it was handed.
            log.slice(0, log.length()).into()
        })
    }

    /// Another tab changed the user's outbox, dead letters or conflicts:
    /// read them again from IndexedDB, the one copy that counts, so every
    /// tab shows the same `pending()`, `failed()` and `conflicts()`.
    pub async fn reread_work(&self) {
        let Some(db) = self.db() else { return };
        if let Ok(Some(log)) = db.db().get(Store::Meta.name(), SYNC_LOG_KEY).await {
            self.inner.state.borrow_mut().sync_log = Some(log);
        }
        if let Some(work) = self.stored_work().await {
            self.handle(Event::WorkStored(work));
        }
    }

    /// Writes `batch` only if `key` is still in `store`, in one readwrite
    /// transaction (atomic across tabs), and tells the other tabs; `false`
    /// when another tab took it first (this tab then reads the work again,
    /// and the engine says what the caller hears). Without IndexedDB this
    /// tab's memory is the only copy: nothing to claim.
    ///
    /// # Errors
    /// Storage errors.
    pub(super) async fn claim(
        &self,
        store: Store,
        key: &str,
        batch: DbBatch,
    ) -> Result<bool, Error> {
        let Some(db) = self.db() else { return Ok(true) };
        let scope = [
            Store::Outbox.name(),
            Store::Failed.name(),
            Store::Conflicts.name(),
        ];
        let claimed = db
            .db()
            .read_modify_write(&scope, store.name(), key, |current| {
                Ok::<_, Error>(match current {
                    Some(_) => (batch, true),
                    None => (DbBatch::new(), false),
                })
            })
            .await?;
        if claimed {
            self.tell_tabs(TabMessage::WorkChanged(WorkNotice {}));
        } else {
            self.reread_work().await;
        }
        Ok(claimed)
    }
}
