//! IndexedDB on `indexed_db_futures`: opening with a timeout and migrations,
//! connections that step aside for a newer tab, atomic multi-store writes,
//! and the per-user database (`crm-sync:<user>`).
//!
//! Two layers:
//!
//! - [`Db`]: any database, given a [`Schema`] (a version and one migration
//!   per version step). Values are JS values stored by structured clone.
//! - [`UserDb`]: the user's database with the [`Store`]s the client uses,
//!   values read and written with serde.
//!
//! Every write goes through one readwrite transaction that awaits nothing but
//! IndexedDB requests (docs/toolchain.md: anything else lets the browser
//! auto-commit), so serialisation happens before a transaction starts: a
//! [`Batch`] holds JS values already. A transaction that is dropped before
//! its commit rolls back (`indexed_db_futures` aborts it on drop), which is
//! what makes `?` inside one safe.
//!
//! ```no_run
//! # async fn demo() -> crm_sync::Result<()> {
//! use crm_sync::web::idb::{record_key, Batch, Store, UserDb};
//! let db = UserDb::open("alice").await?;
//! let mut batch = Batch::new();
//! batch.put(Store::Outbox, "m-1", &serde_json::json!({ "op": "patch" }))?;
//! batch.put(Store::Records, record_key("customers", "c1"), &serde_json::json!({ "id": "c1" }))?;
//! // Both or neither.
//! db.write_batch(&batch).await?;
//! # Ok(()) }
//! ```
//!
//! The module's files: `open` has the schema and the opening (a
//! timeout, a second attempt, migrations); `db` the connection and its
//! reads and writes; `batch` the write batch; `user` the user's database;
//! `scripts` the JavaScript that runs a transaction without a Rust future
//! per request; `error` what IndexedDB's failures become.

mod batch;
mod db;
mod error;
mod open;
mod scripts;
mod user;

pub use batch::Batch;
pub use db::{CloseReason, Db, ValuePages};
pub use error::error_from_js;
pub use open::{Migration, OpenOptions, Schema, Upgrade};
pub use user::{record_key, Store, UserDb, USER_SCHEMA};
