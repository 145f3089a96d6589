//! `crm-sync`: staged, offline-first, multi-tab record sync for CRM web apps.
//!
//! The crate compiles to WebAssembly and is imported from npm by a React app
//! (see `README.md` and the guides in `docs/`). It is laid out in
//! three layers:
//!
//! - [`core`]: pure Rust state machines (debounce, staged records, three-way
//!   merge, outbox, retry, sync progress, tab election, calendar overlap). No
//!   browser types, time passed in; tested natively with `cargo test`.
//! - [`web`]: thin RAII wrappers over browser APIs (fetch, IndexedDB,
//!   BroadcastChannel, Web Locks, timers, page lifecycle) that run the
//!   effects the cores return.
//! - [`api`]: the `#[wasm_bindgen]` facade: `CrmSync`, `CrmError`,
//!   `Debouncer`, `LocalStore`, `TabLocks`, `findOverlaps`.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
#![warn(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]

pub mod api;
pub mod core;
pub mod error;
pub mod web;

pub use error::{Error, Result};
