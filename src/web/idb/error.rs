//! What IndexedDB's failures become: the crate's [`Error`].

use indexed_db_futures::error::{Error as IdbError, OpenDbError};
use wasm_bindgen::prelude::*;

use crate::error::Error;
use crate::web::js::{describe, get};

/// Maps a thrown JS value (usually a `DOMException`) to the crate's error:
/// `QuotaExceededError` is [`Error::Quota`], a value or key IndexedDB
/// cannot take (`DataCloneError`, `DataError`) is [`Error::Invalid`], any
/// other is [`Error::Storage`] with the exception's name and message.
pub fn error_from_js(thrown: &JsValue) -> Error {
    match get(thrown, "name").as_string() {
        Some(name) => from_dom(
            &name,
            &get(thrown, "message").as_string().unwrap_or_default(),
        ),
        None => Error::Storage(describe(thrown)),
    }
}

pub(super) fn from_dom(name: &str, message: &str) -> Error {
    match name {
        "QuotaExceededError" => Error::Quota,
        "DataCloneError" | "DataError" => Error::Invalid(format!("{name}: {message}")),
        _ => Error::Storage(format!("{name}: {message}")),
    }
}

pub(super) fn from_idb(e: IdbError) -> Error {
    match e {
        IdbError::DomException(dom) => {
            let dom: web_sys::DomException = dom.into();
            from_dom(&dom.name(), &dom.message())
        }
        IdbError::Unknown(js) => error_from_js(&JsValue::from(js)),
        IdbError::MissingData(e) => Error::Storage(format!("IndexedDB: {e}")),
        // Not through its `Display`: that formats floats, and the float
        // formatter alone is 14 KB of wasm.
        IdbError::Serialisation(_) => {
            Error::Storage("IndexedDB returned a value of an unexpected type".into())
        }
    }
}

pub(super) fn from_open(e: OpenDbError) -> Error {
    match e {
        OpenDbError::Base(e) => from_idb(e),
        OpenDbError::VersionZero => Error::Invalid("database version 0".into()),
        OpenDbError::UnsupportedEnvironment | OpenDbError::NullFactory => {
            Error::Storage("IndexedDB is not available".into())
        }
    }
}
