//! The `#[wasm_bindgen]` facade that JavaScript sees: `CrmSync`, `CrmError`,
//! `Debouncer`, `LocalStore`, `TabLocks`, `findOverlaps`, and their
//! TypeScript types.

pub mod calendar;
pub mod client;
pub mod debouncer;
pub mod error;
pub mod presence;
pub mod store;
pub mod tabs;
pub mod types;
pub mod undo;

use std::future::Future;
use std::pin::Pin;

use js_sys::Promise;
use wasm_bindgen::JsValue;

pub use client::CrmSync;
pub use debouncer::Debouncer;
pub use error::CrmError;
pub use store::LocalStore;
pub use tabs::{TabLockGuard, TabLocks};

/// A future an export hands to JavaScript as a promise.
type Settling = Pin<Box<dyn Future<Output = Result<JsValue, JsValue>>>>;

/// Runs `f` and settles the returned promise with its result. The future is
/// boxed so that every export shares one copy of wasm-bindgen's promise
/// plumbing instead of getting its own.
pub(crate) fn spawn_promise(
    f: impl Future<Output = Result<JsValue, JsValue>> + 'static,
) -> Promise {
    let f: Settling = Box::pin(f);
    wasm_bindgen_futures::future_to_promise(f)
}
