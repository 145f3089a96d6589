//! `load`: a collection fetched page by page into memory and IndexedDB
//! without blocking the page, or read back from IndexedDB when the server
//! cannot be reached. Work is done in slices with the event loop between.

use std::collections::HashSet;

use js_sys::Promise;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use super::{
    check_collection, emit_to, encode, is_unreachable, record_object, rejected, Client,
    SyncLogEntry,
};
use crate::core::engine::{Event, FullReason, LoadPlan};
use crate::core::record::Record;
use crate::core::staged::RemoteChange;
use crate::error::Error;
use crate::web::clock::now_ms;
use crate::web::idb::{record_key, Batch as DbBatch, Store};
use crate::web::js::{get, read_from_server};

/// Records a page of `load`, unless the app asks for another size.
pub const DEFAULT_PAGE: u32 = 1_000;
/// The largest page asked for (the reference server's limit).
pub const MAX_PAGE: u32 = 10_000;
/// Work done in one go on the main thread before the event loop gets a
/// turn: input and rendering stay smooth.
const SLICE_MS: f64 = 8.0;

impl Client {
    /// `load(collection)`: local first. The engine says where from: where
    /// IndexedDB holds the collection whole (a full load left its mark),
    /// from there at once, marked stale, while the leader catches up from
    /// the changes feed's cursor; the first time, after the cursor expired,
    /// or when the stored records cannot be trusted, every page from the
    /// server ([`Client::load_full`]); offline, from IndexedDB alone.
    ///
    /// # Errors
    /// `invalid` for a bad name; `bad_response` for a page that is not of
    /// the protocol's shape; the server's error when nothing is stored.
    pub async fn load(&self, collection: &str, page_size: Option<u32>) -> Result<JsValue, Error> {
        check_collection(collection)?;
        let mark = self.loaded_mark(collection).await;
        let plan = self.load_plan(
            Event::LoadAsked {
                collection: collection.to_owned(),
                mark,
            },
            collection,
        );
        self.load_by(collection, page_size, plan).await
    }

    /// The feed's cursor expired: `collection` is fetched whole again.
    pub(super) async fn load_again(&self, collection: &str) -> Result<JsValue, Error> {
        let plan = self.load_plan(
            Event::ReloadAsked {
                collection: collection.to_owned(),
            },
            collection,
        );
        self.load_by(collection, None, plan).await
    }

    async fn load_by(
        &self,
        collection: &str,
        page_size: Option<u32>,
        plan: LoadPlan,
    ) -> Result<JsValue, Error> {
        match plan {
            LoadPlan::Memory => Ok(self.list(collection)),
            LoadPlan::Local => self.load_local(collection).await,
            LoadPlan::Offline => self.load_stored(collection, Error::Offline).await,
            LoadPlan::Full(reason) => {
                let loaded = self.load_full(collection, page_size, reason).await;
                if loaded.is_err() {
                    self.handle(Event::LoadFailed {
                        collection: collection.to_owned(),
                        reading_stored: false,
                    });
                }
                loaded
            }
        }
    }

    /// Fetches a collection into memory and IndexedDB page by page
    /// (`page_size` records a page, [`DEFAULT_PAGE`] by default), without
    /// blocking the page: the next page is in flight while one is stored,
    /// and each page is read in slices of about [`SLICE_MS`] with the event
    /// loop in between. Every page raises a `load` event with how many
    /// records are in. Other people's changes are then followed from the
    /// first page's feed cursor (unless a cursor is kept already, which is
    /// older), so a write made during the load shows up. When the server
    /// cannot be reached, answers from IndexedDB, marked stale.
    async fn load_full(
        &self,
        collection: &str,
        page_size: Option<u32>,
        reason: FullReason,
    ) -> Result<JsValue, Error> {
        let size = page_size.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
        let started = now_ms();
        // What this tab and IndexedDB hold before: whatever of it no page
        // has is gone from the server.
        // Whittled down as pages come in: what is left at the end is gone
        // from the server.
        let mut not_seen = self.known_ids(collection).await;
        // The server's objects of the records applied, by id, until the
        // collection is handed out at the end.
        let fresh = js_sys::Map::new();
        let mut loaded: usize = 0;
        let mut first_cursor: Option<String> = None;
        let mut in_flight = Some(self.read_soon(format!("/{collection}?limit={size}")));
        while let Some(page) = in_flight.take() {
            let body = match JsFuture::from(page).await.map_err(rejected) {
                Ok(body) => body,
                Err(err) if first_cursor.is_none() && loaded == 0 && is_unreachable(&err) => {
                    self.handle(Event::LoadFailed {
                        collection: collection.to_owned(),
                        reading_stored: true,
                    });
                    return self.load_stored(collection, err).await;
                }
                Err(err) => return Err(err),
            };
            let items: js_sys::Array = get(&body, "items")
                .dyn_into()
                .map_err(|_| Error::BadResponse("a page without its items".into()))?;
            if first_cursor.is_none() {
                first_cursor = Some(get(&body, "cursor").as_string().unwrap_or_default());
            }
            // The next page is asked for before this one is stored.
            if let Some(after) = get(&body, "next").as_string() {
                in_flight = Some(self.read_soon(format!(
                    "/{collection}?limit={size}&after={}",
                    encode(&after)
                )));
            }
            loaded += self
                .store_page(collection, &items, &mut not_seen, &fresh)
                .await?;
            self.emit_load(collection, loaded);
        }
        let mut batch = DbBatch::new();
        {
            let mut state = self.inner.state.borrow_mut();
            // Known before and in no page: deleted on the server meanwhile.
            for id in &not_seen {
                let _ = state.engine.records_mut().apply_remote(
                    collection,
                    RemoteChange::Delete {
                        id: id.clone(),
                        version: u64::MAX,
                    },
                );
                batch.delete(Store::Records.name(), record_key(collection, id));
            }
        }
        self.persist(batch).await;
        // The feed goes on from the first page's cursor, taken before any
        // page was read (the engine keeps an older one).
        self.handle(Event::Loaded {
            collection: collection.to_owned(),
            cursor: first_cursor,
        });
        self.changed();
        self.emit_status();
        self.log_exchange(SyncLogEntry {
            at: now_ms() as f64,
            direction: "pull".into(),
            kind: "load".into(),
            pushed: 0,
            pulled: loaded as u64,
            merged: 0,
            conflicts: 0,
            failed: 0,
            duration_ms: now_ms().saturating_sub(started) as f64,
            error: None,
            reason: Some(reason.as_str().into()),
        });
        Ok(self.list_in_slices(collection, &fresh).await)
    }

    /// The collection as `list` gives it, made a run of records at a time
    /// with the event loop between (the end of a large load would otherwise
    /// make every record's object in one task). Not kept as `list`'s
    /// snapshot: a record may change between two runs. `fresh` holds
    /// objects of records just read, by id: handed out where they still
    /// show the record, rather than made again.
    async fn list_in_slices(&self, collection: &str, fresh: &js_sys::Map) -> JsValue {
        let out = js_sys::Array::new();
        let mut after: Option<String> = None;
        let mut slice = Slices::start();
        loop {
            let last = {
                let state = self.inner.state.borrow();
                let ids = state
                    .engine
                    .records()
                    .ids_after(collection, after.as_deref(), 256);
                let stale = state.engine.is_stale(collection);
                for id in &ids {
                    if let Some(record) = state.engine.records().get(collection, id) {
                        let candidate = fresh.get(&JsValue::from_str(id));
                        out.push(&record_object(
                            &self.inner.record_js,
                            collection,
                            &record,
                            stale,
                            &candidate,
                        ));
                    }
                }
                ids.last().cloned()
            };
            let Some(last) = last else {
                break;
            };
            after = Some(last);
            slice.look().await;
        }
        out.into()
    }

    /// The ids of `collection` this tab and IndexedDB hold, read in slices
    /// (a large collection's keys are not turned into strings in one task).
    async fn known_ids(&self, collection: &str) -> HashSet<String> {
        let prefix = format!("{collection}/");
        let mut known: HashSet<String> = HashSet::new();
        let mut slice = Slices::start();
        if let Some(db) = self.db() {
            if let Ok(keys) = db
                .db()
                .keys_with_prefix(Store::Records.name(), &prefix)
                .await
            {
                for key in keys {
                    if let Some(id) = key
                        .as_string()
                        .and_then(|k| k.strip_prefix(&prefix).map(str::to_owned))
                    {
                        known.insert(id);
                    }
                    slice.maybe_yield().await;
                }
            }
        }
        let mut after: Option<String> = None;
        loop {
            // A run of ids at a time, the state not borrowed across a yield.
            let run: Vec<String> = {
                let state = self.inner.state.borrow();
                state
                    .engine
                    .records()
                    .ids_after(collection, after.as_deref(), 2_000)
            };
            let Some(last) = run.last().cloned() else {
                break;
            };
            known.extend(run);
            after = Some(last);
            slice.look().await;
        }
        known
    }

    /// Starts reading `path` now (a promise: a Rust future would wait for
    /// its first poll).
    fn read_soon(&self, path: String) -> Promise {
        let client = self.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            client.read(&path).await.map_err(JsValue::from)
        })
    }

    /// Reads one page's records in slices, then lays them over memory and
    /// writes them to IndexedDB in one transaction (a page is atomic). The
    /// server's own objects are stored as they are and go into `fresh` (by
    /// id) to be handed out: one copy per record, not one per shape. Each
    /// record's id leaves `not_seen`; returns how many records the page had.
    async fn store_page(
        &self,
        collection: &str,
        items: &js_sys::Array,
        not_seen: &mut HashSet<String>,
        fresh: &js_sys::Map,
    ) -> Result<usize, Error> {
        // Read first, all of the page: a page that does not read is not
        // applied at all.
        let mut read: Vec<(Record, JsValue)> = Vec::with_capacity(items.length() as usize);
        let mut slice = Slices::start();
        for item in items.iter() {
            let record: Record = read_from_server(&item)?;
            read.push((record, item));
            slice.maybe_yield().await;
        }
        let count = read.len();
        let mut batch = DbBatch::new();
        for (record, item) in read {
            not_seen.remove(&record.id);
            batch.put_record_js(
                Store::Records.name(),
                record_key(collection, &record.id),
                item.clone(),
            );
            let id = JsValue::from_str(&record.id);
            let applied = self
                .inner
                .state
                .borrow_mut()
                .engine
                .records_mut()
                .apply_remote(collection, RemoteChange::Put(record));
            if applied {
                fresh.set(&id, &item);
            }
            slice.maybe_yield().await;
        }
        self.persist(batch).await;
        self.changed();
        Ok(count)
    }

    /// Raises `{ type: "load", collection, loaded }`.
    fn emit_load(&self, collection: &str, loaded: usize) {
        let event = js_sys::Object::new();
        let _ = js_sys::Reflect::set(&event, &"type".into(), &"load".into());
        let _ = js_sys::Reflect::set(&event, &"collection".into(), &collection.into());
        let _ = js_sys::Reflect::set(&event, &"loaded".into(), &(loaded as f64).into());
        emit_to(&self.inner.listeners, &event.into());
    }

    /// A collection as IndexedDB has it, marked stale: the server cannot be
    /// reached (`err`, returned when nothing is stored either). Read in
    /// slices, as pages are; an entry that cannot be read is skipped (it is
    /// a copy: the server has the record).
    async fn load_stored(&self, collection: &str, err: Error) -> Result<JsValue, Error> {
        // Answered before the engine hears the read ended (as `load_local`).
        let fresh = js_sys::Map::new();
        let answer = match self.read_stored(collection, Some(err), &fresh).await {
            Ok(()) => Ok(self.list_in_slices(collection, &fresh).await),
            Err(err) => Err(err),
        };
        self.handle(Event::StoredRead {
            collection: collection.to_owned(),
            found: answer.is_ok(),
        });
        answer
    }

    /// A collection a full load left whole in IndexedDB: read from there
    /// (in slices), marked stale until the catch-up from the feed's cursor
    /// is done. Nothing stored is an empty collection. The answer is made
    /// before the engine hears that the read ended: the catch-up starts
    /// after it (a catch-up that ended while the answer was made would
    /// have every record after that point made anew, unstale).
    async fn load_local(&self, collection: &str) -> Result<JsValue, Error> {
        let fresh = js_sys::Map::new();
        let answer = match self.read_stored(collection, None, &fresh).await {
            Ok(()) => Ok(self.list_in_slices(collection, &fresh).await),
            Err(err) => Err(err),
        };
        self.handle(Event::StoredRead {
            collection: collection.to_owned(),
            found: true,
        });
        answer
    }

    /// Another tab loaded `collection` again: what it stored replaces the
    /// older versions here.
    pub async fn reread_collection(&self, collection: &str) {
        let fresh = js_sys::Map::new();
        if self.read_stored(collection, None, &fresh).await.is_ok() {
            self.changed();
            self.emit_status();
        }
    }

    /// Reads `collection` from IndexedDB in slices into the confirmed
    /// records (never over a newer version), marked stale as the engine
    /// says. `none_stored`: the error when nothing is stored here at all
    /// (`None`: an empty collection is an answer). The stored objects of
    /// the records applied go into `fresh`, by id.
    async fn read_stored(
        &self,
        collection: &str,
        none_stored: Option<Error>,
        fresh: &js_sys::Map,
    ) -> Result<(), Error> {
        let Some(db) = self.db() else {
            return match none_stored {
                Some(err) => Err(err),
                None => Ok(()),
            };
        };
        let stored = db
            .db()
            .values_with_prefix(Store::Records.name(), &format!("{collection}/"))
            .await?;
        let mut read: Vec<(Record, JsValue)> = Vec::with_capacity(stored.len());
        let mut slice = Slices::start();
        for value in stored {
            if let Ok(record) = crate::web::de::read::<Record>(&value) {
                read.push((record, value));
            }
            slice.maybe_yield().await;
        }
        if read.is_empty() && self.inner.state.borrow().engine.records().count(collection) == 0 {
            if let Some(err) = none_stored {
                return Err(err);
            }
        }
        // Laid in a run at a time with the event loop between: a large
        // collection is no single long task.
        let mut read = read.into_iter().peekable();
        while read.peek().is_some() {
            {
                let mut state = self.inner.state.borrow_mut();
                // Marked as the engine says now: a catch-up may have ended
                // while the records were read.
                let stale = state.engine.is_stale(collection);
                for (record, value) in read.by_ref().take(STORED_RUN) {
                    // Ours alone (just read): marked here, handed out as it is.
                    let _ = js_sys::Reflect::set(&value, &"stale".into(), &JsValue::from(stale));
                    let id = JsValue::from_str(&record.id);
                    // Not a record deleted while the read ran.
                    if state.engine.lay_stored(collection, record) {
                        fresh.set(&id, &value);
                    }
                }
            }
            slice.look().await;
        }
        self.changed();
        Ok(())
    }
}

/// Records read back from IndexedDB laid into memory between two looks
/// at the clock.
const STORED_RUN: usize = 256;

/// Work on the main thread in slices of about [`SLICE_MS`], with a turn of
/// the event loop between them.
struct Slices {
    from: f64,
    /// Steps since the clock was last read.
    steps: u32,
}

/// The clock is read every this many steps: a step is a record's worth of
/// work, far below a millisecond, and reading the clock is a call to JS.
const STEPS_PER_LOOK: u32 = 32;

impl Slices {
    fn start() -> Self {
        Self {
            from: crate::web::clock::precise_ms(),
            steps: 0,
        }
    }

    /// Yields if this slice has run long enough, reading the clock now
    /// (after a step of many records).
    async fn look(&mut self) {
        self.steps = STEPS_PER_LOOK;
        self.maybe_yield().await;
    }

    /// Yields if this slice has run long enough.
    async fn maybe_yield(&mut self) {
        self.steps += 1;
        if self.steps < STEPS_PER_LOOK {
            return;
        }
        self.steps = 0;
        if crate::web::clock::precise_ms() - self.from > SLICE_MS {
            crate::web::clock::yield_to_page().await;
            self.from = crate::web::clock::precise_ms();
        }
    }
}
