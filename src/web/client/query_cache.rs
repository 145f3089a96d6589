//! `crm.query`'s answers, kept between calls. Each query (its `where`,
//! `search` and `orderBy`) keeps its matches in order; a change of one
//! record is laid into them (see [`Matches::update`]) instead of running
//! the query again over the whole collection, and each page asked for keeps
//! its `{ items, total }` object until a record the query covers changed.

use wasm_bindgen::prelude::*;

use super::{record_object, Client};
use crate::core::query::{Matches, Query};
use crate::core::record::RecordKey;
use crate::core::staged::{StagedRecords, Touched};

/// Queries kept at most; the least recently asked goes first.
const KEPT: usize = 8;

/// Pages kept per query (a list paged through asks for many).
const PAGES_KEPT: usize = 16;

/// The queries asked lately, the most recent last.
#[derive(Default)]
pub(super) struct QueryCache {
    entries: Vec<Entry>,
    /// The records' mark of touched records last laid in.
    seen: Option<u64>,
}

/// One query's matches and the pages of it handed out.
struct Entry {
    collection: String,
    /// The query without `offset` and `limit`.
    query: Query,
    matches: Matches,
    pages: Vec<Page>,
}

/// One `{ items, total }` handed out, and what it was made for.
struct Page {
    offset: usize,
    limit: Option<usize>,
    stale: bool,
    value: JsValue,
}

impl QueryCache {
    /// Lays the records touched since the last call into every kept query;
    /// a query whose matches changed drops its pages.
    fn catch_up(&mut self, records: &StagedRecords) {
        let (touched, mark) = records.touched_since(self.seen);
        self.seen = Some(mark);
        match touched {
            Touched::All => self.entries.clear(),
            Touched::Keys(mut keys) => {
                crate::core::sort::sort(&mut keys);
                keys.dedup();
                for key in keys {
                    self.lay_in(records, &key);
                }
            }
        }
    }

    fn lay_in(&mut self, records: &StagedRecords, key: &RecordKey) {
        let mut entries = self
            .entries
            .iter_mut()
            .filter(|e| e.collection == key.collection)
            .peekable();
        if entries.peek().is_none() {
            return;
        }
        let view = records.view(&key.collection, &key.id);
        for entry in entries {
            let record = view.as_ref().map(|v| &v.record);
            if entry.matches.update(&entry.query, &key.id, record) {
                entry.pages.clear();
            }
        }
    }

    /// The kept entry of `query` over `collection`, made now if there is none.
    fn entry(&mut self, records: &StagedRecords, collection: &str, query: Query) -> &mut Entry {
        let found = self
            .entries
            .iter()
            .position(|e| e.collection == collection && e.query == query);
        let entry = match found {
            Some(at) => self.entries.remove(at),
            None => {
                let mut matches = Matches::default();
                records.for_each_view(collection, |record| matches.add(&query, record));
                matches.sort(&query);
                Entry {
                    collection: collection.to_owned(),
                    query,
                    matches,
                    pages: Vec::new(),
                }
            }
        };
        if self.entries.len() >= KEPT {
            self.entries.remove(0);
        }
        self.entries.push(entry);
        let last = self.entries.len() - 1;
        &mut self.entries[last]
    }
}

impl Client {
    /// `crm.query`: the records of a collection as `view` shows them,
    /// filtered, searched, sorted and paged: `{ items, total }`. The same
    /// object comes back until a record the query covers changed (or the
    /// collection's staleness did); `_key` is the app's options as text.
    pub fn query(&self, collection: &str, query: &Query, _key: &str) -> JsValue {
        let stale = self.inner.state.borrow().engine.is_stale(collection);
        let mut cache = self.inner.queries.borrow_mut();
        cache.catch_up(self.inner.state.borrow().engine.records());
        let state = self.inner.state.borrow();
        let entry = cache.entry(state.engine.records(), collection, query.unpaged());
        let kept = entry
            .pages
            .iter()
            .find(|p| p.offset == query.offset && p.limit == query.limit && p.stale == stale);
        if let Some(page) = kept {
            return page.value.clone();
        }
        let items = js_sys::Array::new();
        for id in entry.matches.page(query.offset, query.limit) {
            let key = RecordKey::new(collection, id);
            let item = if state.engine.records().staged(&key).is_some() {
                self.view(collection, id)
            } else {
                match state.engine.records().get(collection, id) {
                    Some(record) => record_object(
                        &self.inner.record_js,
                        collection,
                        &record,
                        stale,
                        &JsValue::UNDEFINED,
                    ),
                    None => continue,
                }
            };
            items.push(&item);
        }
        let out = js_sys::Object::new();
        let _ = js_sys::Reflect::set(&out, &"items".into(), &items);
        let total = entry.matches.total() as f64;
        let _ = js_sys::Reflect::set(&out, &"total".into(), &total.into());
        let value: JsValue = out.into();
        entry.pages.retain(|p| p.stale == stale);
        if entry.pages.len() >= PAGES_KEPT {
            entry.pages.remove(0);
        }
        entry.pages.push(Page {
            offset: query.offset,
            limit: query.limit,
            stale,
            value: value.clone(),
        });
        value
    }
}
