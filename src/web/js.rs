//! Small conversions between Rust values and JavaScript values, shared by
//! every wrapper.

use std::cell::RefCell;

use serde::{de::DeserializeOwned, Serialize};
use wasm_bindgen::JsValue;

use crate::core::vecmap::VecMap;
use crate::error::Error;

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

thread_local! {
    /// Property names as JS strings, keyed by where their `&'static str`
    /// is: a record load or a batch of thousands reads the same few names
    /// many times.
    static NAMES: RefCell<VecMap<(usize, usize), JsValue>> = RefCell::new(VecMap::new());
}

/// `name` as a JS string, made once per page.
pub fn name(name: &'static str) -> JsValue {
    NAMES.with(|names| {
        // Address and length: one literal may start where another does.
        let at = (name.as_ptr() as usize, name.len());
        names
            .borrow_mut()
            .get_or_insert_with(at, || JsValue::from_str(name))
            .clone()
    })
}

/// `target[name]` for a property name known at compile time (see
/// [`name`]), `undefined` if absent or not an object.
pub fn prop(target: &JsValue, key: &'static str) -> JsValue {
    if !target.is_object() {
        return JsValue::UNDEFINED;
    }
    js_sys::Reflect::get(target, &name(key)).unwrap_or(JsValue::UNDEFINED)
}

/// The largest integer a JS number holds exactly (`Number.MAX_SAFE_INTEGER`);
/// above it, not every whole number is a JS number.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// `n` if it is a whole number a JS number holds exactly
/// (`Number.isSafeInteger`).
pub fn safe_integer(n: f64) -> Option<f64> {
    (n.fract() == 0.0 && n.abs() <= MAX_SAFE_INTEGER).then_some(n)
}
