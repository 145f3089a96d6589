//! Local first, as the runner carries it out: the mark a full load leaves
//! in IndexedDB, the engine's answer to where `load` reads from, and the
//! catch-up told between tabs. The engine decides (see
//! `core::engine::local`); this file reads, writes and tells.

use super::Client;
use crate::core::engine::{Event, LoadPlan, LoadedMark};
use crate::core::tab_message::TabMessage;
use crate::web::idb::{Batch as DbBatch, Store};

/// The key of a collection's mark in the user's `meta` store.
pub(super) fn mark_key(collection: &str) -> String {
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
