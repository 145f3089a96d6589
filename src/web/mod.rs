//! Browser bindings: thin RAII wrappers over fetch, IndexedDB,
//! BroadcastChannel, Web Locks, timers and the page lifecycle, which carry out
//! the effects the [`crate::core`] machines return.

pub mod clock;
pub mod http;
pub mod js;
