//! `CrmError`: the Rust [`Error`] as a real JavaScript `Error` subclass.
//!
//! wasm-bindgen cannot declare an exported class that `extends Error`, so the
//! exported `CrmError` class gets `Error.prototype` spliced into its
//! prototype chain the first time an error is made. Its data are own
//! properties of the object (`code`, `message`, `status`, `details`, `stack`),
//! so they show in `console.log`, survive `structuredClone`-free logging and
//! need no wasm memory once thrown.

use std::cell::Cell;

use js_sys::{Object, Reflect};
use wasm_bindgen::prelude::*;

use crate::error::Error;

#[wasm_bindgen(typescript_custom_section)]
const CRM_ERROR_TS: &'static str = r#"
/** The stable codes of {@link CrmError.code}. */
export type CrmErrorCode =
  | "unauthorized" | "forbidden" | "not_found" | "invalid" | "conflict"
  | "overlap" | "network" | "timeout" | "server" | "bad_response" | "offline"
  | "quota" | "version_mismatch" | "lock_timeout" | "cancelled"
  | "sync_not_found" | "already_finished" | "pending_changes" | "storage" | "closed"
  | "unsupported";

/** Every failure of crm-sync: a real `Error` with a machine-readable code. */
export class CrmError extends Error {
  private constructor();
  readonly name: "CrmError";
  /** What went wrong, stable across releases. */
  readonly code: CrmErrorCode;
  /** The HTTP status, when the server answered. */
  readonly status: number | undefined;
  /** More about it: the server's `error.details`, or the module's. */
  readonly details: unknown;
  free(): void;
}
"#;

/// The JavaScript error class. Instances are only made by the module.
#[wasm_bindgen(skip_typescript)]
pub struct CrmError {
    _private: (),
}

thread_local! {
    static PROTOTYPE_READY: Cell<bool> = const { Cell::new(false) };
}

/// Makes `CrmError.prototype` inherit from `Error.prototype`, once.
fn ensure_error_prototype(instance: &JsValue) {
    if PROTOTYPE_READY.with(Cell::get) {
        return;
    }
    let proto = Object::get_prototype_of(instance);
    let error_proto = Object::get_prototype_of(&js_sys::Error::new(""));
    Object::set_prototype_of(&proto, &error_proto);
    let _ = Reflect::set(&proto, &"name".into(), &"CrmError".into());
    PROTOTYPE_READY.with(|ready| ready.set(true));
}

impl From<Error> for JsValue {
    fn from(err: Error) -> JsValue {
        to_js_error(&err)
    }
}

/// Builds the JavaScript `CrmError` for `err`.
pub fn to_js_error(err: &Error) -> JsValue {
    let obj: JsValue = CrmError { _private: () }.into();
    ensure_error_prototype(&obj);
    let message = err.to_string();
    let set = |key: &str, value: &JsValue| {
        let _ = Reflect::set(&obj, &JsValue::from_str(key), value);
    };
    set("code", &JsValue::from_str(err.code().as_str()));
    set("message", &JsValue::from_str(&message));
    set(
        "status",
        &err.status().map_or(JsValue::UNDEFINED, JsValue::from),
    );
    let details = match err {
        Error::Http { details, .. } | Error::PendingChanges { details, .. } => details.clone(),
        Error::VersionMismatch {
            key,
            expected,
            found,
        } => {
            let d = Object::new();
            let _ = Reflect::set(&d, &"key".into(), &JsValue::from_str(key));
            let _ = Reflect::set(&d, &"expected".into(), &JsValue::from(*expected as f64));
            let _ = Reflect::set(&d, &"found".into(), &JsValue::from(*found as f64));
            d.into()
        }
        _ => JsValue::UNDEFINED,
    };
    set("details", &details);
    // A stack from here points into the glue, but still tells which call
    // of the app's failed, which is what a developer reads it for.
    let stack =
        Reflect::get(&js_sys::Error::new(&message), &"stack".into()).unwrap_or(JsValue::UNDEFINED);
    set("stack", &stack);
    obj
}
