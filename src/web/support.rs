//! What a browser must have for a client to open, checked before anything
//! is asked of the server or stored: a browser too old for the module gets
//! one clear `unsupported` error naming what it lacks, not a failure
//! somewhere later.
//!
//! What has a fallback is not checked here: without IndexedDB the client
//! works in memory (`status.storage`), without `EventSource` the leader
//! polls the changes feed, without `navigator.storage` nothing is durable
//! (`status.durable`), without Web Locks tabs elect a leader over
//! BroadcastChannel. The versions named are the first that have the API
//! (docs/guide/browsers.md has the table).

use crate::error::Error;
use crate::web::js::get;

/// One API the module cannot do without: whether this browser has it, and
/// what to tell a person whose browser does not.
struct Needed {
    present: fn(&wasm_bindgen::JsValue) -> bool,
    missing: &'static str,
}

const NEEDED: [Needed; 4] = [
    Needed {
        present: |g| get(g, "fetch").is_function(),
        missing: "fetch (Chrome 42, Firefox 39, Safari 10.1)",
    },
    Needed {
        present: |g| get(g, "AbortController").is_function(),
        missing: "AbortController, which ends a request that takes too long \
                  (Chrome 66, Firefox 57, Safari 12.1)",
    },
    Needed {
        present: |g| get(&get(g, "crypto"), "getRandomValues").is_function(),
        missing: "crypto.getRandomValues, which makes the ids of changes \
                  (Chrome 11, Firefox 21, Safari 6.1)",
    },
    Needed {
        present: |g| {
            get(&get(&get(g, "navigator"), "locks"), "request").is_function()
                || get(g, "BroadcastChannel").is_function()
        },
        missing: "Web Locks and BroadcastChannel (it needs one of them), which keep \
                  a person's tabs in step (Chrome 54, Firefox 38, Safari 15.4)",
    },
];

/// Checks that this browser has everything a client needs.
///
/// # Errors
/// [`Error::Unsupported`] naming each API this browser lacks and the
/// browser versions that have it.
pub fn check() -> Result<(), Error> {
    let global = js_sys::global();
    let missing: Vec<&str> = NEEDED
        .iter()
        .filter(|n| !(n.present)(&global))
        .map(|n| n.missing)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::Unsupported(format!(
            "it lacks {}",
            missing.join("; and ")
        )))
    }
}
