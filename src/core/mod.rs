//! Pure state machines: no browser types, no `JsValue`, time passed in as
//! milliseconds. Each module is driven by events and returns effects that the
//! [`crate::web`] layer carries out.

pub mod code;
pub mod counters;
pub mod debounce;
pub mod election;
pub mod engine;
pub mod handed;
pub mod history;
pub mod login;
pub mod merge;
pub mod outbox;
pub mod overlap;
pub mod presence;
pub mod progress;
pub mod query;
pub mod reachability;
pub mod record;
pub mod retry;
#[cfg(test)]
pub mod seeds;
pub mod shelf;
pub mod sort;
pub mod staged;
pub mod tab_message;
pub mod undo;
pub mod vecmap;
