//! The `#[wasm_bindgen]` facade that JavaScript sees: `CrmSync`, `CrmError`,
//! `Debouncer`, `LocalStore`, `TabLocks`, `findOverlaps`, and their
//! TypeScript types.

pub mod calendar;
pub mod client;
pub mod debouncer;
pub mod error;
pub mod store;
pub mod tabs;
pub mod types;

pub use client::CrmSync;
pub use debouncer::Debouncer;
pub use error::CrmError;
pub use store::LocalStore;
pub use tabs::{TabLockGuard, TabLocks};
