//! `crm.query`'s answers, kept per query until something changed.

use wasm_bindgen::prelude::*;

use super::{record_object, Client};
use crate::core::record::Record;

impl Client {
    /// `crm.query`: the records of a collection as `view` shows them,
    /// filtered, searched, sorted and paged: `{ items, total }`. The same
    /// object comes back until something changed; `key` names the query
    /// (the app's options as text).
    pub fn query(&self, collection: &str, query: &crate::core::query::Query, key: &str) -> JsValue {
        self.snapshot(format!("query\u{0}{collection}\u{0}{key}"), || {
            let state = self.inner.state.borrow();
            let stale = state.stale.contains(collection) && !self.is_online();
            let staged = state
                .records
                .staged_changes()
                .any(|(k, _)| k.collection == collection);
            let items = js_sys::Array::new();
            let total = if staged {
                // Staged changes count: match against the views.
                let views = state.records.view_list(collection);
                let refs: Vec<&Record> = views.iter().map(|v| &v.record).collect();
                let found = query.run(&refs);
                for i in found.page {
                    items.push(&self.view(collection, &views[i].record.id));
                }
                found.total
            } else {
                let records = state.records.list(collection);
                let found = query.run(&records);
                let mut cache = self.inner.record_js.borrow_mut();
                for i in found.page {
                    items.push(&record_object(&mut cache, collection, records[i], stale));
                }
                found.total
            };
            let out = js_sys::Object::new();
            let _ = js_sys::Reflect::set(&out, &"items".into(), &items);
            let _ = js_sys::Reflect::set(&out, &"total".into(), &(total as f64).into());
            out.into()
        })
    }
}
