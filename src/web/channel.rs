//! A `BroadcastChannel` as an RAII handle: the listener is removed and the
//! channel closed when the handle is dropped.
//!
//! Whatever arrives on a channel comes from another tab, possibly running
//! another version of this module, or from any script of the origin: it is
//! untrusted input. [`TabChannel`] hands raw values on; the envelope layer
//! decodes them and counts what it ignores.

use wasm_bindgen::prelude::*;
use web_sys::{BroadcastChannel, MessageEvent};

use crate::error::Error;
use crate::web::js::describe;
use crate::web::lifecycle::EventListener;

/// What a channel delivers.
#[derive(Debug, Clone)]
pub enum Incoming {
    /// A message's `data`, as posted by another channel object.
    Message(JsValue),
    /// A `messageerror`: a message arrived that could not be deserialised.
    Undecodable,
}

/// A named `BroadcastChannel`, listening until dropped.
///
/// The object that posts a message never hears it itself; other objects of
/// the same name do, in this page or another tab of the origin.
#[must_use = "dropping a TabChannel closes it"]
pub struct TabChannel {
    channel: BroadcastChannel,
    _on_message: EventListener,
    _on_message_error: EventListener,
}

impl std::fmt::Debug for TabChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TabChannel")
            .field("name", &self.channel.name())
            .finish_non_exhaustive()
    }
}

/// Whether this browser (window or worker) has `BroadcastChannel`.
pub fn broadcast_channel_available() -> bool {
    crate::web::js::get(&js_sys::global(), "BroadcastChannel").is_function()
}

impl TabChannel {
    /// Opens the channel `name` and calls `on_message` for each message.
    ///
    /// `on_message` runs from the event loop; it must not expect to be
    /// called while the code that posted (in another object) still runs.
    ///
    /// # Errors
    /// [`Error::Invalid`] when the browser has no `BroadcastChannel` or
    /// refuses the name.
    pub fn open(
        name: &str,
        on_message: impl Fn(Incoming) + 'static,
    ) -> Result<TabChannel, Error> {
        let channel = BroadcastChannel::new(name).map_err(|e| Error::Invalid(describe(&e)))?;
        let on_message = std::rc::Rc::new(on_message);
        let deliver = std::rc::Rc::clone(&on_message);
        let message = EventListener::new(channel.as_ref(), "message", move |event| {
            let data = event
                .dyn_ref::<MessageEvent>()
                .map_or(JsValue::UNDEFINED, MessageEvent::data);
            deliver(Incoming::Message(data));
        });
        let message = match message {
            Ok(l) => l,
            Err(e) => {
                channel.close();
                return Err(e);
            }
        };
        let message_error = EventListener::new(channel.as_ref(), "messageerror", move |_| {
            on_message(Incoming::Undecodable);
        });
        let message_error = match message_error {
            Ok(l) => l,
            Err(e) => {
                channel.close();
                return Err(e);
            }
        };
        Ok(TabChannel {
            channel,
            _on_message: message,
            _on_message_error: message_error,
        })
    }

    /// The channel's name.
    pub fn name(&self) -> String {
        self.channel.name()
    }

    /// Posts `value` (structured-cloned) to every other object of this name.
    ///
    /// # Errors
    /// [`Error::Invalid`] when the value cannot be cloned or the channel is
    /// closed.
    pub fn post(&self, value: &JsValue) -> Result<(), Error> {
        self.channel
            .post_message(value)
            .map_err(|e| Error::Invalid(describe(&e)))
    }
}

impl Drop for TabChannel {
    fn drop(&mut self) {
        // Closed first, so no message is queued for a listener about to go.
        self.channel.close();
    }
}

// ---- placeholder until core::election lands ----

/// The BroadcastChannel lock and leader path.
pub struct BroadcastLocks {}
/// A request on the BroadcastChannel path.
pub struct PendingBroadcastLock {}
/// Withdraws a [`PendingBroadcastLock`].
#[derive(Clone)]
pub struct BroadcastCanceller {}
/// A lock held on the BroadcastChannel path.
pub struct BroadcastHeld {}

impl BroadcastLocks {
    /// Opens.
    pub fn open(_c: &str, _t: &str, _f: impl Fn() + 'static) -> Result<Self, Error> {
        Err(Error::Invalid("not yet".into()))
    }
    /// Requests.
    pub fn request(&self, _n: &str, _t: Option<u32>) -> Result<PendingBroadcastLock, Error> {
        Err(Error::Invalid("not yet".into()))
    }
    /// Leader?
    pub fn is_leader(&self) -> bool { false }
    /// Ignored.
    pub fn ignored_messages(&self) -> u32 { 0 }
    /// Campaign.
    pub fn campaign(&self) {}
    /// Suspend.
    pub fn suspend(&self) {}
    /// Restore.
    pub fn restore(&self) {}
    /// Resume.
    pub fn resume(&self) {}
    /// Crash.
    pub fn crash(self) {}
}
impl PendingBroadcastLock {
    /// Canceller.
    pub fn canceller(&self) -> BroadcastCanceller { BroadcastCanceller {} }
    /// Granted.
    pub async fn granted(self) -> Result<BroadcastHeld, Error> { Err(Error::Cancelled) }
}
impl BroadcastCanceller {
    /// Cancel.
    pub fn cancel(&self) {}
}
