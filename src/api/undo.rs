//! `crm.undo`, `crm.redo`, `crm.undoable()`: taking a committed change
//! back as a new change (docs/guide/undo.md).

use js_sys::Promise;
use wasm_bindgen::prelude::*;

use super::client::CrmSync;
use crate::error::Error;
use crate::web::client::UndoRequest;
use crate::web::js::get;

#[wasm_bindgen(typescript_custom_section)]
const UNDO_TS: &'static str = r#"
/** A change of the record's history, by the version it made (`crm.history`). */
export interface UndoVersion {
  collection: string;
  id: string;
  version: number;
}

/** One of this user's committed changes that can be taken back (`undoable()`). */
export interface UndoableChange {
  mutationId: string;
  collection: string;
  recordId: string;
  /** The version the change made. */
  version: number;
  /** The fields it changed. */
  fields: string[];
  /** Their values before it. */
  before: Fields;
  /** The values it wrote. */
  after: Fields;
  /** When it was committed, ms since the epoch. */
  at: number;
}
"#;

/// A mutation id, or `{ collection, id, version }` (read field by field:
/// a derived reader of its own would cost the module kilobytes).
fn request_of(target: JsValue) -> Result<UndoRequest, Error> {
    if let Some(id) = target.as_string() {
        return Ok(UndoRequest::Mutation(id));
    }
    let text = |key: &str| get(&target, key).as_string();
    let version = get(&target, "version")
        .as_f64()
        .filter(|v| v.fract() == 0.0 && *v >= 1.0 && *v <= 9_007_199_254_740_991.0);
    match (text("collection"), text("id"), version) {
        (Some(collection), Some(id), Some(version)) => Ok(UndoRequest::Version {
            collection,
            id,
            // A whole number in the safe range, checked above.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            version: version as u64,
        }),
        _ => Err(Error::Invalid(
            "undo takes a mutation id or { collection, id, version } (a whole version number)"
                .into(),
        )),
    }
}

#[wasm_bindgen]
impl CrmSync {
    /// Takes a committed change back as a new change: the fields it changed
    /// go back to the values before it, sent with `If-Match` like any save
    /// (queued offline). A field someone changed since is a conflict for a
    /// person, never overwritten. Names a change of `undoable()` by its
    /// mutation id, or one of the record's history by its version.
    ///
    /// # Errors
    /// Rejects with `CrmError` `not_found`, `invalid`, `offline` (a version
    /// needs the server's history), `closed`, or what the server said.
    #[wasm_bindgen(unchecked_return_type = "Promise<SaveResult>")]
    pub fn undo(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string | UndoVersion")] target: JsValue,
    ) -> Promise {
        let client = self.client.clone();
        let request = request_of(target);
        super::spawn_promise(async move {
            client
                .undo(request.map_err(JsValue::from)?)
                .await
                .map_err(JsValue::from)
        })
    }

    /// Takes an undo back, named by the undone change's mutation id (or the
    /// undo's).
    ///
    /// # Errors
    /// Rejects with `CrmError` `not_found` when nothing stands to be
    /// redone, `closed`, or what the server said.
    #[wasm_bindgen(unchecked_return_type = "Promise<SaveResult>")]
    pub fn redo(&self, mutation_id: String) -> Promise {
        let client = self.client.clone();
        super::spawn_promise(async move { client.redo(&mutation_id).await.map_err(JsValue::from) })
    }

    /// This user's committed changes that can be taken back, newest first
    /// (the last 50, kept in IndexedDB, the same in every tab).
    #[wasm_bindgen(unchecked_return_type = "UndoableChange[]")]
    pub fn undoable(&self) -> JsValue {
        self.client.undoable()
    }
}
