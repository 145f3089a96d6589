//! `crm.presence`: who else has a record open, and which field they edit.

use std::rc::Rc;

use wasm_bindgen::prelude::*;

use crate::core::presence::{Input, OpenRecord};
use crate::error::Error;
use crate::web::presence::PresenceRunner;

#[wasm_bindgen(typescript_custom_section)]
const PRESENCE_TS: &str = r#"
/** Someone else on a record (`crm.presence.of`, the `presence` event). */
export interface PresencePerson {
  /** Their user name. */
  user: string;
  /** The field they are editing, or `null`. */
  editing: string | null;
  /** Since when they have it open (RFC 3339, UTC). */
  since: string;
}

/** `crm.presence.enter`'s options. */
export interface PresenceOptions {
  /** The field in focus, or `null` (the default). */
  editing?: string | null;
}
"#;

/// `crm.presence`: this tab's open records, and the other people on them.
#[wasm_bindgen]
pub struct CrmPresence {
    runner: Rc<PresenceRunner>,
}

impl CrmPresence {
    /// The facade of `runner`.
    pub fn new(runner: Rc<PresenceRunner>) -> Self {
        Self { runner }
    }
}

/// A collection and id as the server takes them; anything else is
/// `invalid` before it goes anywhere.
fn key(collection: &JsValue, id: &JsValue) -> Result<(String, String), Error> {
    let collection = collection
        .as_string()
        .filter(|c| {
            c.len() <= 40
                && c.starts_with(|ch: char| ch.is_ascii_lowercase())
                && c.chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_')
        })
        .ok_or_else(|| Error::Invalid("collection must be a collection name".into()))?;
    let id = id
        .as_string()
        .filter(|id| {
            !id.is_empty()
                && id.len() <= 128
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.:@".contains(c))
        })
        .ok_or_else(|| Error::Invalid("id must be a record id".into()))?;
    Ok((collection, id))
}

#[wasm_bindgen]
impl CrmPresence {
    /// This tab has the record open; `editing` names the field in focus (or
    /// `null`). Call it again as focus moves; the server hears at most every
    /// 200 ms.
    ///
    /// # Errors
    /// Throws `CrmError` `invalid` for a bad collection, id or field name.
    pub fn enter(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] collection: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string")] id: JsValue,
        #[wasm_bindgen(unchecked_param_type = "PresenceOptions | undefined")] options: JsValue,
    ) -> Result<(), JsValue> {
        let (collection, id) = key(&collection, &id)?;
        let editing = if options.is_object() {
            crate::web::js::get(&options, "editing")
        } else {
            JsValue::NULL
        };
        let editing = if editing.is_null() || editing.is_undefined() {
            None
        } else {
            Some(
                editing
                    .as_string()
                    .filter(|f| !f.is_empty() && f.len() <= 100)
                    .ok_or_else(|| Error::Invalid("editing must be a field name or null".into()))?,
            )
        };
        self.runner.handle(Input::Enter(OpenRecord {
            collection,
            id,
            editing,
        }));
        Ok(())
    }

    /// This tab closed the record (done for every record on `pagehide`,
    /// logout and `close`).
    ///
    /// # Errors
    /// Throws `CrmError` `invalid` for a bad collection or id.
    pub fn leave(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] collection: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string")] id: JsValue,
    ) -> Result<(), JsValue> {
        let (collection, id) = key(&collection, &id)?;
        self.runner.handle(Input::Leave { collection, id });
        Ok(())
    }

    /// The other people on the record: one entry per person however many
    /// tabs they use, never this user; the same array until it changes.
    #[wasm_bindgen(unchecked_return_type = "PresencePerson[]")]
    pub fn of(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] collection: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string")] id: JsValue,
    ) -> JsValue {
        match (collection.as_string(), id.as_string()) {
            (Some(c), Some(id)) => self.runner.of(&c, &id),
            _ => js_sys::Array::new().into(),
        }
    }
}
