//! The `#[wasm_bindgen]` facade that JavaScript sees: `CrmSync`, `CrmError`,
//! `Debouncer`, `LocalStore`, `TabLocks`, `findOverlaps`, and their
//! TypeScript types.

pub mod calendar;
pub mod client;
pub mod error;
pub mod types;

pub use client::CrmSync;
pub use error::CrmError;
