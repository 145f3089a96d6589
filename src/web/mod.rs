//! Browser bindings: thin RAII wrappers over fetch, IndexedDB,
//! BroadcastChannel, Web Locks, timers and the page lifecycle, which carry out
//! the effects the [`crate::core`] machines return.

pub mod broadcast_locks;
pub mod channel;
pub mod client;
pub mod clock;
pub mod de;
pub mod history;
pub mod http;
pub mod idb;
pub mod js;
pub mod kept_metrics;
pub mod lifecycle;
pub mod locks;
pub mod persistence;
pub mod presence;
pub mod primitives;
pub mod ser;
pub mod support;
pub mod sync;
pub mod tab_lock_path;
