//! `load`: a collection fetched page by page into memory and IndexedDB
//! without blocking the page, or read back from IndexedDB when the server
//! cannot be reached. The engine decides (`core::engine::load` and
//! `core::engine::local`): where from, the pages, what is deleted, the
//! fallback to IndexedDB; this file reads pages and IndexedDB for it, in
//! slices with the event loop between, and answers the app.

use js_sys::Promise;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use super::{check_collection, emit_to, encode, record_object, rejected, Client, SyncLogEntry};
use crate::core::engine::{Event, LoadEnd, LoadPage, LoadPlan};
use crate::core::record::Record;
use crate::error::Error;
use crate::web::clock::now_ms;
use crate::web::idb::Store;
use crate::web::js::{get, read_from_server};

/// A record read: its id, version and number of comments, and its
/// object (the server's, or IndexedDB's): the snapshot of the record the
/// engine holds if that is the same.
type PageItem = (String, u64, usize, JsValue);

/// Whether the engine's `record` is the one `item` was read as.
fn same(record: &Record, item: &PageItem) -> bool {
    record.version == item.1 && record.comments.len() == item.2
}

/// Work done in one go on the main thread before the event loop gets a
/// turn: input and rendering stay smooth.
const SLICE_MS: f64 = 8.0;

impl Client {
    /// `load(collection)`: local first. The engine says where from: where
    /// IndexedDB holds the collection whole (a full load left its mark),
    /// from there at once, marked stale, while the leader catches up from
    /// the changes feed's cursor; the first time, after the cursor expired,
    /// or when the stored records cannot be trusted, every page from the
    /// server (`page_size` records a page); offline, from IndexedDB alone.
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
                size: page_size,
            },
            collection,
        );
        self.load_by(collection, plan).await
    }

    /// The feed's cursor expired: `collection` is fetched whole again.
    pub(super) async fn load_again(&self, collection: &str) -> Result<JsValue, Error> {
        let plan = self.load_plan(
            Event::ReloadAsked {
                collection: collection.to_owned(),
            },
            collection,
        );
        self.load_by(collection, plan).await
    }

    async fn load_by(&self, collection: &str, plan: LoadPlan) -> Result<JsValue, Error> {
        match plan {
            LoadPlan::Memory => Ok(self.list(collection)),
            LoadPlan::Local => self.load_local(collection).await,
            LoadPlan::Offline => self.load_stored(collection, Error::Offline).await,
            LoadPlan::Full(_) => {
                // The engine reads the pages; this waits for its end.
                let mut waiter = None;
                let promise = Promise::new(&mut |resolve, reject| {
                    waiter = Some((collection.to_owned(), resolve, reject));
                });
                if let Some(waiter) = waiter {
                    self.inner.state.borrow_mut().load_waiters.push(waiter);
                }
                let answer = JsFuture::from(promise).await.map_err(rejected)?;
                if answer.is_undefined() {
                    Ok(self.list_in_slices(collection, &js_sys::Map::new()).await)
                } else {
                    Ok(answer)
                }
            }
        }
    }

    /// A full load ended ([`LoadEnd`]): its callers hear it, with the
    /// records as IndexedDB holds them when the server could not be
    /// reached.
    pub(super) fn load_ended(&self, collection: String, end: LoadEnd) {
        let waiters: Vec<_> = {
            let mut state = self.inner.state.borrow_mut();
            let (these, others) = std::mem::take(&mut state.load_waiters)
                .into_iter()
                .partition(|(c, _, _)| *c == collection);
            state.load_waiters = others;
            these
        };
        let settle = move |answer: Result<JsValue, Error>| {
            for (_, resolve, reject) in &waiters {
                let _ = match &answer {
                    Ok(value) => resolve.call1(&JsValue::NULL, value),
                    Err(err) => reject.call1(&JsValue::NULL, &JsValue::from(err.clone())),
                };
            }
        };
        match end {
            LoadEnd::Done {
                pulled,
                duration_ms,
                reason,
            } => {
                self.emit_status();
                self.log_exchange(SyncLogEntry {
                    at: now_ms() as f64,
                    direction: "pull".into(),
                    kind: "load".into(),
                    pushed: 0,
                    pulled,
                    merged: 0,
                    conflicts: 0,
                    failed: 0,
                    duration_ms: duration_ms as f64,
                    error: None,
                    reason: Some(reason.as_str().into()),
                });
                // The engine ends a load once its last page, cursor and
                // mark are stored: a reload now reads it from IndexedDB.
                settle(Ok(JsValue::UNDEFINED));
            }
            LoadEnd::FromStore(refusal) => {
                let err = self.error_of_refusal(refusal);
                let this = self.clone();
                wasm_bindgen_futures::spawn_local(async move {
                    settle(this.load_stored(&collection, err).await);
                });
            }
            LoadEnd::Failed(refusal) => settle(Err(self.error_of_refusal(refusal))),
        }
    }

    /// Reads one page of a load for the engine ([`Request::Page`]), in
    /// slices (a failure is the engine's to try again); the server's own objects
    /// are kept as the records' JS snapshots (and stored as they are).
    ///
    /// [`Request::Page`]: crate::core::engine::runner::Request::Page
    pub(super) async fn read_page(&self, collection: String, after: Option<String>, size: u32) {
        let mut path = format!("/{collection}?limit={size}");
        if let Some(after) = &after {
            path.push_str(&format!("&after={}", encode(after)));
        }
        let read = match self.request(crate::web::http::Method::Get, &path) {
            Ok(req) => match self.exchange(&req).await {
                Ok(resp) => self.page_of(&resp.body).await,
                Err(err) => Err(err),
            },
            Err(err) => Err(err),
        };
        let (page, items) = match read {
            Ok((page, items)) => (Ok(page), items),
            Err(err) => (Err(super::effects::refusal_of(&err)), Vec::new()),
        };
        self.handle(Event::PageRead {
            collection: collection.clone(),
            page,
        });
        // Laid in by the engine: the server's objects are the snapshots of
        // the records it holds at their versions.
        let state = self.inner.state.borrow();
        for item in items {
            if let Some(record) = state.engine.records().get(&collection, &item.0) {
                if same(&record, &item) {
                    // Kept (weakly) as the object of this version: handed
                    // out while the app holds it.
                    let key = format!("{collection}\u{0}{}", item.0);
                    let comments = u32::try_from(item.2).unwrap_or(u32::MAX);
                    let _ =
                        self.inner
                            .record_js
                            .take(&key, item.1 as f64, comments, false, &item.3);
                }
            }
        }
    }

    /// A page's records, read in slices, and each record's id, version
    /// and object as the server sent it; a page that does not read is not
    /// laid in at all.
    async fn page_of(&self, body: &JsValue) -> Result<(LoadPage, Vec<PageItem>), Error> {
        let items: js_sys::Array = get(body, "items")
            .dyn_into()
            .map_err(|_| Error::BadResponse("a page without its items".into()))?;
        let mut records: Vec<Record> = Vec::with_capacity(items.length() as usize);
        let mut objects: Vec<PageItem> = Vec::with_capacity(items.length() as usize);
        let mut slice = Slices::start();
        for item in items.iter() {
            let record: Record = read_from_server(&item)?;
            objects.push((
                record.id.clone(),
                record.version,
                record.comments.len(),
                item,
            ));
            records.push(record);
            slice.maybe_yield().await;
        }
        let page = LoadPage {
            records,
            next: get(body, "next").as_string(),
            cursor: get(body, "cursor").as_string(),
        };
        Ok((page, objects))
    }

    /// The ids of `collection` IndexedDB holds, for the engine
    /// ([`Event::StoredIds`]), read in slices.
    pub(super) async fn read_stored_ids(&self, collection: String) {
        let prefix = format!("{collection}/");
        let mut ids = Vec::new();
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
                        ids.push(id);
                    }
                    slice.maybe_yield().await;
                }
            }
        }
        self.handle(Event::StoredIds { collection, ids });
    }

    /// Raises `{ type: "load", collection, loaded }`.
    pub(super) fn emit_load(&self, collection: &str, loaded: u64) {
        let event = js_sys::Object::new();
        let _ = js_sys::Reflect::set(&event, &"type".into(), &"load".into());
        let _ = js_sys::Reflect::set(&event, &"collection".into(), &collection.into());
        let _ = js_sys::Reflect::set(&event, &"loaded".into(), &(loaded as f64).into());
        emit_to(&self.inner.listeners, &event.into());
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

    /// A collection as IndexedDB has it, marked stale: the server cannot be
    /// reached (`err`, returned when nothing is stored either). Read in
    /// slices, as pages are; an entry that cannot be read is skipped (it is
    /// a copy: the server has the record).
    async fn load_stored(&self, collection: &str, err: Error) -> Result<JsValue, Error> {
        // Answered before the engine hears the read ended (as `load_local`).
        let answer = self.read_and_answer(collection, Some(err)).await;
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
        let answer = self.read_and_answer(collection, None).await;
        self.handle(Event::StoredRead {
            collection: collection.to_owned(),
            found: true,
        });
        answer
    }

    /// [`Client::read_stored`], then the collection as `list` gives it:
    /// the answer made as the records were laid in when that is the one,
    /// else made now from what the engine holds.
    async fn read_and_answer(
        &self,
        collection: &str,
        none_stored: Option<Error>,
    ) -> Result<JsValue, Error> {
        let fresh = js_sys::Map::new();
        match self
            .read_stored(collection, none_stored, &fresh, true)
            .await
        {
            Ok(Some(answer)) => Ok(answer),
            Ok(None) => Ok(self.list_in_slices(collection, &fresh).await),
            Err(err) => Err(err),
        }
    }

    /// Another tab loaded `collection` again: what it stored replaces the
    /// older versions here.
    pub async fn reread_collection(&self, collection: &str) {
        let fresh = js_sys::Map::new();
        if self
            .read_stored(collection, None, &fresh, false)
            .await
            .is_ok()
        {
            self.changed();
            self.emit_status();
        }
    }

    /// Reads `collection` from IndexedDB a page at a time (the next read
    /// meanwhile) and lays it in a run at a time, with the event loop
    /// between, into the confirmed records (never over a newer version),
    /// marked stale as the engine says. `none_stored`: the error when
    /// nothing is stored here at all (`None`: an empty collection is an
    /// answer). The stored objects of the records applied go into `fresh`,
    /// by id. With `answering`, the answer `list` would give is made as
    /// the records are laid in, and returned if it is that one (the engine
    /// held none of the collection before, and holds just these records,
    /// at these versions and equally stale, after): no second pass over a
    /// large collection before the records are on screen.
    async fn read_stored(
        &self,
        collection: &str,
        none_stored: Option<Error>,
        fresh: &js_sys::Map,
        answering: bool,
    ) -> Result<Option<JsValue>, Error> {
        let Some(db) = self.db() else {
            return match none_stored {
                Some(err) => Err(err),
                None => Ok(None),
            };
        };
        let pages = db.db().value_pages(
            Store::Records.name(),
            &format!("{collection}/"),
            STORED_PAGE,
        )?;
        let held_before = self.inner.state.borrow().engine.records().count(collection);
        let answer = (answering && held_before == 0).then(js_sys::Array::new);
        let mut in_answer: Vec<(String, u64, usize)> = Vec::new();
        // Whether every run was laid in equally stale, and how.
        let mut staleness: Option<bool> = None;
        let mut one_staleness = true;
        let mut read_any = false;
        let mut slice = Slices::start();
        while let Some(page) = pages.next().await? {
            let len = page.length();
            let mut from = 0;
            while from < len {
                let to = len.min(from + STORED_RUN);
                let read = crate::web::de::read_records(&page, from, to);
                let stamps: Vec<Option<(String, u64, usize)>> = read
                    .iter()
                    .map(|r| {
                        r.as_ref()
                            .map(|r| (r.id.clone(), r.version, r.comments.len()))
                    })
                    .collect();
                // An entry that cannot be read is skipped (a copy: the
                // server has the record).
                let records: Vec<Record> = read.into_iter().flatten().collect();
                if !records.is_empty() {
                    read_any = true;
                    // The engine lays them in (not a record deleted while
                    // the read ran, never over a newer version).
                    self.handle(Event::StoredRecords {
                        collection: collection.to_owned(),
                        records,
                    });
                }
                let (same, stale) = {
                    let state = self.inner.state.borrow();
                    // Marked as the engine says now: a catch-up may have
                    // ended while the records were read.
                    let stale = state.engine.is_stale(collection);
                    let same: Vec<u8> = stamps
                        .iter()
                        .map(|stamp| {
                            u8::from(stamp.as_ref().is_some_and(|(id, version, comments)| {
                                state.engine.records().stamp(collection, id)
                                    == Some((*version, *comments))
                            }))
                        })
                        .collect();
                    (same, stale)
                };
                one_staleness &= staleness.is_none_or(|s| s == stale);
                staleness = Some(stale);
                if answer.is_some() {
                    in_answer.extend(
                        same.iter()
                            .zip(stamps)
                            .filter(|(same, _)| **same == 1)
                            .filter_map(|(_, stamp)| stamp),
                    );
                }
                // Ours alone (just read): marked here, handed out as they are.
                self.inner.record_js.lay_run(
                    collection,
                    &page,
                    from,
                    &same,
                    stale,
                    fresh,
                    answer.as_ref().map_or(&JsValue::UNDEFINED, |a| a.as_ref()),
                );
                from = to;
                slice.look().await;
            }
        }
        if !read_any && self.inner.state.borrow().engine.records().count(collection) == 0 {
            if let Some(err) = none_stored {
                return Err(err);
            }
        }
        self.changed();
        let Some(answer) = answer else {
            return Ok(None);
        };
        let state = self.inner.state.borrow();
        let records = state.engine.records();
        let whole = one_staleness
            && staleness.is_none_or(|s| s == state.engine.is_stale(collection))
            && records.count(collection) == in_answer.len()
            && records
                .stamps(collection)
                .zip(&in_answer)
                .all(|((id, version, comments), laid)| {
                    id == laid.0 && version == laid.1 && comments == laid.2
                });
        Ok(whole.then(|| answer.into()))
    }
}

/// Records read back from IndexedDB laid into memory between two looks
/// at the clock.
const STORED_RUN: u32 = 256;

/// Records read back from IndexedDB in one request: a page is taken in
/// (made into JS objects) in one task, about 1.5 to 4 ms per 1,000 records
/// on the bench's machine.
const STORED_PAGE: u32 = 2_000;

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
