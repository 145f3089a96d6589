//! Small conversions between Rust values and JavaScript values, shared by
//! every wrapper.

use serde::{de::DeserializeOwned, Serialize};
use wasm_bindgen::JsValue;

use crate::error::Error;
use crate::web::de::FromJs;
use crate::web::primitives::name;

/// Serialises `value` to plain JS objects (never `Map`), as the app expects.
///
/// # Errors
/// [`Error::Invalid`] if the value cannot be represented (not expected for
/// the crate's own types).
pub fn to_js<T: Serialize + ?Sized>(value: &T) -> Result<JsValue, Error> {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| Error::Invalid(e.to_string()))
}

/// Reads a value the app passed in.
///
/// # Errors
/// [`Error::Invalid`] naming what did not fit.
pub fn from_app<T: DeserializeOwned>(value: JsValue) -> Result<T, Error> {
    super::de::from_js(value).map_err(|e| Error::Invalid(e.to_string()))
}

/// Reads a value the server sent.
///
/// # Errors
/// [`Error::BadResponse`] naming what did not fit.
pub fn from_server<T: DeserializeOwned>(value: JsValue) -> Result<T, Error> {
    super::de::from_js(value).map_err(|e| Error::BadResponse(e.to_string()))
}

/// Reads a value the app passed in, with its hand reader (a record's
/// fields: see [`crate::web::de::FromJs`]).
///
/// # Errors
/// [`Error::Invalid`] naming what did not fit, as [`from_app`] words it.
pub fn read_from_app<T: FromJs>(value: &JsValue) -> Result<T, Error> {
    super::de::read(value).map_err(|e| Error::Invalid(e.to_string()))
}

/// Reads a value the server sent, with its hand reader (a record).
///
/// # Errors
/// [`Error::BadResponse`] naming what did not fit, as [`from_server`]
/// words it.
pub fn read_from_server<T: FromJs>(value: &JsValue) -> Result<T, Error> {
    super::de::read(value).map_err(|e| Error::BadResponse(e.to_string()))
}

/// A property of a JS object, `undefined` if absent or not an object.
pub fn get(target: &JsValue, key: &str) -> JsValue {
    if !target.is_object() {
        return JsValue::UNDEFINED;
    }
    js_sys::Reflect::get(target, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

/// Describes a thrown JS value for an error message.
pub fn describe(thrown: &JsValue) -> String {
    if let Some(s) = thrown.as_string() {
        return s;
    }
    let message = get(thrown, "message").as_string();
    let name = get(thrown, "name").as_string();
    match (name, message) {
        (Some(n), Some(m)) => format!("{n}: {m}"),
        (None, Some(m)) => m,
        (Some(n), None) => n,
        (None, None) => "unknown error".to_owned(),
    }
}

/// `target[name]` for a property name known at compile time (see
/// [`name`]), `undefined` if absent or not an object.
pub fn prop(target: &JsValue, key: &'static str) -> JsValue {
    if !target.is_object() {
        return JsValue::UNDEFINED;
    }
    js_sys::Reflect::get(target, &name(key)).unwrap_or(JsValue::UNDEFINED)
}
