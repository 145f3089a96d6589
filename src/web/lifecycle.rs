//! The page lifecycle events that matter to tab coordination, and an RAII
//! event listener (the shape of `gloo-events`' `EventListener`, written out
//! to avoid a dependency for one small type).
//!
//! - `pagehide`: the page is going away or into the back/forward cache; a
//!   tab gives up its locks and leadership here, since it may never run
//!   again (or not for a long time).
//! - `pageshow` with `persisted`: back from the back/forward cache.
//! - `freeze` / `resume` (Chromium's Page Lifecycle API, on `document`): a
//!   background tab was frozen and runs again. Timers did not fire in
//!   between, so anything a lease or heartbeat promised may have lapsed.

use wasm_bindgen::prelude::*;
use web_sys::{Event, EventTarget};

use crate::error::Error;
use crate::web::js::{describe, get};

/// A listener on an `EventTarget`, removed when dropped.
#[must_use = "dropping an EventListener removes it at once"]
pub struct EventListener {
    target: EventTarget,
    kind: &'static str,
    callback: Closure<dyn FnMut(Event)>,
}

impl std::fmt::Debug for EventListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventListener")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl EventListener {
    /// Calls `on_event` for every `kind` event on `target`.
    ///
    /// # Errors
    /// [`Error::Invalid`] if the target refuses the listener.
    pub fn new(
        target: &EventTarget,
        kind: &'static str,
        on_event: impl FnMut(Event) + 'static,
    ) -> Result<EventListener, Error> {
        let callback = Closure::<dyn FnMut(Event)>::new(on_event);
        target
            .add_event_listener_with_callback(kind, callback.as_ref().unchecked_ref())
            .map_err(|e| Error::Invalid(describe(&e)))?;
        Ok(EventListener {
            target: target.clone(),
            kind,
            callback,
        })
    }
}

impl Drop for EventListener {
    fn drop(&mut self) {
        let _ = self
            .target
            .remove_event_listener_with_callback(self.kind, self.callback.as_ref().unchecked_ref());
    }
}

/// A lifecycle change of the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageEvent {
    /// `pagehide`; `persisted` when the page goes into the back/forward
    /// cache rather than being unloaded.
    Hide {
        /// Whether the page may come back from the back/forward cache.
        persisted: bool,
    },
    /// `pageshow` with `persisted`: back from the back/forward cache.
    /// (A first load's `pageshow` is not reported.)
    Restore,
    /// `freeze`: timers and tasks stop until `resume`.
    Freeze,
    /// `resume` after `freeze`.
    Resume,
}

/// Listeners for [`PageEvent`]s; all removed when dropped.
#[must_use = "dropping a PageLifecycle stops listening"]
#[derive(Debug)]
pub struct PageLifecycle {
    _listeners: Vec<EventListener>,
}

impl PageLifecycle {
    /// Reports page lifecycle changes to `on_event`. Outside a window (a
    /// worker) there is no page, and nothing is ever reported.
    pub fn listen(on_event: impl Fn(PageEvent) + 'static) -> PageLifecycle {
        let mut listeners = Vec::new();
        let Some(window) = web_sys::window() else {
            return PageLifecycle {
                _listeners: listeners,
            };
        };
        let on_event = std::rc::Rc::new(on_event);
        let window_target: &EventTarget = window.as_ref();
        let mut add =
            |target: &EventTarget, kind: &'static str, map: fn(&Event) -> Option<PageEvent>| {
                let on_event = std::rc::Rc::clone(&on_event);
                // A listener that cannot be added only loses a hint; the locks
                // still work (leases and the browser cover a tab that vanishes).
                if let Ok(l) = EventListener::new(target, kind, move |e| {
                    if let Some(event) = map(&e) {
                        on_event(event);
                    }
                }) {
                    listeners.push(l);
                }
            };
        add(window_target, "pagehide", |e| {
            Some(PageEvent::Hide {
                persisted: persisted(e),
            })
        });
        add(window_target, "pageshow", |e| {
            persisted(e).then_some(PageEvent::Restore)
        });
        if let Some(document) = window.document() {
            let document_target: &EventTarget = document.as_ref();
            add(document_target, "freeze", |_| Some(PageEvent::Freeze));
            add(document_target, "resume", |_| Some(PageEvent::Resume));
        }
        PageLifecycle {
            _listeners: listeners,
        }
    }
}

/// `PageTransitionEvent.persisted`, read without the web-sys feature.
fn persisted(event: &Event) -> bool {
    get(event, "persisted").as_bool().unwrap_or(false)
}
