//! `navigator.storage`: whether the browser keeps this origin's data
//! (`persisted()`) and asking it to (`persist()`).
//!
//! Without persistent storage a browser may clear the origin's IndexedDB
//! under storage pressure, and Safari does after seven days without a visit;
//! the user's queued changes live there. Bound by hand (as the Web Locks
//! are): the manager is missing in old browsers and in insecure contexts,
//! and then nothing is persistent (`false`), which is also what a failed
//! question answers.

use js_sys::{Function, Promise};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use crate::web::js::get;

/// `navigator.storage`, when it has the method `method`.
fn manager_with(method: &str) -> Option<(JsValue, Function)> {
    let navigator = get(&js_sys::global(), "navigator");
    let manager = get(&navigator, "storage");
    let f = get(&manager, method).dyn_into::<Function>().ok()?;
    Some((manager, f))
}

/// Calls `navigator.storage[method]()` and reads its answer as a boolean;
/// `false` when the method is missing, throws or rejects.
async fn ask(method: &str) -> bool {
    let Some((manager, f)) = manager_with(method) else {
        return false;
    };
    let Ok(answer) = f.call0(&manager) else {
        return false;
    };
    let Ok(promise) = answer.dyn_into::<Promise>() else {
        return false;
    };
    JsFuture::from(promise)
        .await
        .ok()
        .and_then(|v| v.as_bool())
        .unwrap_or(false)
}

/// Whether the browser has granted this origin persistent storage. Never
/// asks the person.
pub async fn persisted() -> bool {
    ask("persisted").await
}

/// Asks the browser for persistent storage and answers whether this origin
/// has it now. Firefox asks the person (so call it from a click); Chromium
/// and Safari decide without asking, from how the site has been used.
pub async fn persist() -> bool {
    ask("persist").await
}
