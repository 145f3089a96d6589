//! A `BroadcastChannel` as an RAII handle: the listener is removed and the
//! channel closed when the handle is dropped.
//!
//! Whatever arrives on a channel comes from another tab, possibly running
//! another version of this module, or from any script of the origin: it is
//! untrusted input. [`TabChannel`] hands raw values on; the envelope layer
//! decodes them and counts what it ignores.

use std::cell::Cell;
use std::rc::Rc;

use serde::de::DeserializeOwned;
use wasm_bindgen::prelude::*;
use web_sys::{BroadcastChannel, MessageEvent};

use crate::core::election::TabId;
use crate::core::tab_message::{decode, Envelope, Ignored, Item, TabMessage, UntrustedMessage};
use crate::error::Error;
use crate::web::js::{describe, to_js};
use crate::web::lifecycle::EventListener;
use crate::web::primitives::{name, safe_integer};
use js_sys::{Array, Reflect};

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
    pub fn open(name: &str, on_message: impl Fn(Incoming) + 'static) -> Result<TabChannel, Error> {
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

/// A raw message off the channel, read item by item (objects with
/// [`super::de`]); whatever does not fit reads as `None`, never a panic.
struct RawMessage(JsValue, Option<Array>);

impl RawMessage {
    fn new(value: JsValue) -> Self {
        let array = Array::is_array(&value).then(|| value.clone().unchecked_into::<Array>());
        Self(value, array)
    }

    fn item(&self, i: usize) -> JsValue {
        match (&self.1, u32::try_from(i)) {
            (Some(array), Ok(i)) => array.get(i),
            _ => JsValue::UNDEFINED,
        }
    }
}

impl UntrustedMessage for RawMessage {
    fn items(&self) -> Option<usize> {
        self.1.as_ref().map(|a| a.length() as usize)
    }

    fn uint(&self, i: usize) -> Option<u64> {
        let n = self.item(i).as_f64().and_then(safe_integer)?;
        (n >= 0.0).then_some(n as u64)
    }

    fn text(&self, i: usize) -> Option<String> {
        self.item(i).as_string()
    }

    fn is_null(&self, i: usize) -> bool {
        self.item(i).is_null_or_undefined()
    }

    fn read<T: DeserializeOwned>(&self, i: usize) -> Option<T> {
        super::de::from_js(self.item(i)).ok()
    }

    fn object_version(&self) -> Option<u64> {
        if !self.0.is_object() {
            return None;
        }
        let v = Reflect::get(&self.0, &name("v"))
            .ok()?
            .as_f64()
            .and_then(safe_integer)?;
        (v >= 0.0).then_some(v as u64)
    }
}

/// The wire array of an envelope (see [`crate::core::tab_message`]).
fn to_wire(envelope: &Envelope) -> Result<JsValue, Error> {
    let out = Array::new();
    for item in envelope.encode() {
        out.push(&match item {
            Item::Num(n) => JsValue::from_f64(n as f64),
            Item::Text(t) => JsValue::from_str(&t),
            Item::Null => JsValue::NULL,
            Item::SyncState(state) => to_js(&state)?,
            Item::Record(record) => to_js(&record)?,
        });
    }
    Ok(out.into())
}

/// A [`TabChannel`] that speaks [`Envelope`]s: it stamps what it posts with
/// this tab's id and a sequence number, and decodes what arrives, ignoring
/// (and counting) anything malformed or of another format version.
#[must_use = "dropping an EnvelopeChannel closes it"]
pub struct EnvelopeChannel {
    channel: TabChannel,
    tab: TabId,
    seq: Cell<u64>,
    ignored: Rc<Cell<u32>>,
}

impl std::fmt::Debug for EnvelopeChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvelopeChannel")
            .field("channel", &self.channel)
            .field("tab", &self.tab)
            .field("ignored", &self.ignored.get())
            .finish_non_exhaustive()
    }
}

impl EnvelopeChannel {
    /// Opens the channel `name` for tab `tab`; `on_envelope` gets every
    /// well-formed envelope of this format from another tab, of any kind.
    ///
    /// Counted as ignored: undecodable messages, malformed ones, and those
    /// of another format version or of an unknown kind. Not counted: a
    /// message from this very tab id (another object of the same tab), which
    /// is simply not for us.
    ///
    /// # Errors
    /// As [`TabChannel::open`].
    pub fn open(
        name: &str,
        tab: TabId,
        on_envelope: impl Fn(Envelope) + 'static,
    ) -> Result<EnvelopeChannel, Error> {
        let ignored = Rc::new(Cell::new(0u32));
        let counter = Rc::clone(&ignored);
        let own = tab.clone();
        let channel = TabChannel::open(name, move |incoming| {
            let outcome = match incoming {
                Incoming::Message(data) => decode(&RawMessage::new(data), &own),
                Incoming::Undecodable => Err(Ignored::Malformed),
            };
            match outcome {
                Ok(envelope) => on_envelope(envelope),
                Err(Ignored::FromSelf) => {}
                Err(_) => counter.set(counter.get().saturating_add(1)),
            }
        })?;
        Ok(EnvelopeChannel {
            channel,
            tab,
            seq: Cell::new(0),
            ignored,
        })
    }

    /// This tab's id, as stamped on every envelope.
    pub fn tab(&self) -> &TabId {
        &self.tab
    }

    /// How many incoming messages were ignored so far.
    pub fn ignored(&self) -> u32 {
        self.ignored.get()
    }

    /// Posts `message` to every other tab, in an envelope with the next
    /// sequence number.
    ///
    /// # Errors
    /// [`Error::Invalid`] when the message cannot be represented or the
    /// channel is closed.
    pub fn post(&self, message: TabMessage) -> Result<(), Error> {
        let seq = self.seq.get();
        self.seq.set(seq.saturating_add(1));
        let envelope = Envelope {
            tab: self.tab.clone(),
            seq,
            message,
        };
        self.channel.post(&to_wire(&envelope)?)
    }
}
