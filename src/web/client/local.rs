//! Local first, as the runner carries it out: the mark a full load leaves
//! in IndexedDB, the engine's answer to where `load` reads from, and the
//! catch-up told between tabs. The engine decides (see
//! `core::engine::local`); this file reads, writes and tells.

use wasm_bindgen::JsValue;

use super::Client;
use crate::core::engine::{Event, LoadPlan, LoadedMark};
use crate::core::tab_message::TabMessage;
use crate::web::idb::{Batch as DbBatch, Store};

/// The key of a collection's mark in the user's `meta` store.
fn mark_key(collection: &str) -> String {
    format!("{MARK_PREFIX}{collection}")
}

/// Where the marks of full loads are kept.
const MARK_PREFIX: &str = "loaded/";

impl Client {
    /// What IndexedDB keeps of an earlier full load of `collection`; a
    /// mark that does not read is none (the collection is fetched whole).
    pub(super) async fn loaded_mark(&self, collection: &str) -> Option<LoadedMark> {
        let db = self.db()?;
        db.get::<LoadedMark>(Store::Meta, &mark_key(collection))
            .await
            .ok()
            .flatten()
    }

    /// Hands `event` (a load asked for) to the engine and returns where
    /// the load reads from; the other effects are carried out.
    pub(super) fn load_plan(&self, event: Event, collection: &str) -> LoadPlan {
        self.handle(event);
        let mut state = self.inner.state.borrow_mut();
        let at = state.load_plans.iter().position(|(c, _)| c == collection);
        // The engine always answers a load; closed, it answers nothing and
        // IndexedDB is all there is.
        at.map_or(LoadPlan::Offline, |at| state.load_plans.remove(at).1)
    }

    /// The marks of every collection are no longer trusted (the feed's
    /// cursor expired): a load before the next full one fetches whole.
    pub(super) async fn forget_marks(&self) {
        let Some(db) = self.db() else { return };
        let Ok(keys) = db
            .db()
            .keys_with_prefix(Store::Meta.name(), MARK_PREFIX)
            .await
        else {
            return;
        };
        let mut batch = DbBatch::new();
        for key in keys {
            if let Some(key) = key.as_string() {
                batch.delete(Store::Meta.name(), key);
            }
        }
        self.persist(batch).await;
    }

    /// Stores that a full load of `collection` left it whole here (the
    /// mark a later visit trusts). The load's callers are answered once
    /// it is written ([`Client::mark_writes`]): a reload right after the
    /// answer finds the mark (seen in the end-to-end run: a reload as soon
    /// as the list showed every customer fetched them all again).
    pub(super) fn store_loaded_mark(&self, collection: String, mark: LoadedMark) {
        let this = self.clone();
        let key = mark_key(&collection);
        let written = wasm_bindgen_futures::future_to_promise(async move {
            let mut batch = DbBatch::new();
            if batch.put(Store::Meta.name(), key, &mark).is_ok() {
                this.persist(batch).await;
            }
            Ok(JsValue::UNDEFINED)
        });
        self.inner
            .state
            .borrow_mut()
            .mark_writes
            .push((collection, written));
    }

    /// The writes of `collection`'s loaded mark still under way, taken.
    pub(super) fn mark_writes(&self, collection: &str) -> Vec<js_sys::Promise> {
        let mut state = self.inner.state.borrow_mut();
        let (these, others): (Vec<_>, Vec<_>) = std::mem::take(&mut state.mark_writes)
            .into_iter()
            .partition(|(c, _)| c == collection);
        state.mark_writes = others;
        these.into_iter().map(|(_, written)| written).collect()
    }

    /// The engine's answer to `load_plan`: taken by it, which handed the
    /// engine the load.
    pub(super) fn keep_load_plan(&self, collection: String, plan: LoadPlan) {
        self.inner
            .state
            .borrow_mut()
            .load_plans
            .push((collection, plan));
    }

    /// A catch-up asked for, or told, by another tab.
    pub fn catch_up_from_tab(&self, message: &TabMessage) {
        match message {
            TabMessage::CatchUpAsked => self.handle(Event::CatchUpAsked),
            TabMessage::CaughtUp => self.handle(Event::CaughtUpElsewhere),
            _ => {}
        }
    }
}
