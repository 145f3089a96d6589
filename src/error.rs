//! The crate's one error type. At the facade it becomes the JavaScript
//! `CrmError` (see [`crate::api::error`]), a real `Error` subclass with a
//! stable `code`.

use wasm_bindgen::JsValue;

pub use crate::core::code::ErrorCode;

/// Every failure the module can report, named after what a caller can do
/// about it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The server answered with a non-success status (and, usually, the
    /// protocol's error body). `details` is the body's `error.details`.
    #[error("{message}")]
    Http {
        /// The code from the body's `error.code`, or derived from the status.
        code: ErrorCode,
        /// The HTTP status.
        status: u16,
        /// The server's message, or a description of the status.
        message: String,
        /// `error.details` of the body, `undefined` when absent.
        details: JsValue,
        /// `Retry-After` of a 429 or 503, in ms.
        retry_after_ms: Option<u64>,
    },
    /// The request did not reach the server or its answer was lost.
    #[error("network error: {0}")]
    Network(String),
    /// No answer within the timeout (milliseconds).
    #[error("no answer within {0} ms")]
    Timeout(u32),
    /// The server's answer is not of the protocol's shape.
    #[error("unexpected answer from the server: {0}")]
    BadResponse(String),
    /// A value given by the app is not acceptable.
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// The browser is offline and the operation cannot wait.
    #[error("offline")]
    Offline,
    /// The storage quota is exhausted; nothing was written.
    #[error("storage quota exceeded")]
    Quota,
    /// A versioned write found another version than the expected one.
    #[error("version mismatch on {key:?}: expected {expected}, found {found}")]
    VersionMismatch {
        /// The key written.
        key: String,
        /// The version the caller based the write on (0: absent).
        expected: u64,
        /// The version in storage (0: absent).
        found: u64,
    },
    /// A tab lock was not acquired in time.
    #[error("lock {name:?} not acquired within {timeout_ms} ms")]
    LockTimeout {
        /// The lock's name.
        name: String,
        /// The timeout that passed.
        timeout_ms: u32,
    },
    /// Cancelled by the caller (or by `close`).
    #[error("cancelled")]
    Cancelled,
    /// IndexedDB cannot be used.
    #[error("storage unavailable: {0}")]
    Storage(String),
    /// The object was closed.
    #[error("closed")]
    Closed,
    /// `logout` found changes of the user's that are not on the server;
    /// `details` is `{ pending, failed, conflicts }` as the client lists them.
    #[error("{count} change(s) are not on the server yet: send, resolve or discard them, or log out with discard")]
    PendingChanges {
        /// How many, in all.
        count: usize,
        /// `{ pending, failed, conflicts }`.
        details: JsValue,
    },
    /// This browser lacks an API the module needs; the message names it
    /// and the browser versions that have it.
    #[error("this browser is too old for crm-sync: {0}")]
    Unsupported(String),
    /// The server lost the sync job (expired, or a restart).
    #[error("the server does not know sync job {0}")]
    SyncNotFound(String),
}

impl Error {
    /// The stable code JavaScript sees as `CrmError.code`.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Http { code, .. } => *code,
            Self::Network(_) => ErrorCode::Network,
            Self::Timeout(_) => ErrorCode::Timeout,
            Self::BadResponse(_) => ErrorCode::BadResponse,
            Self::Invalid(_) => ErrorCode::Invalid,
            Self::Offline => ErrorCode::Offline,
            Self::Quota => ErrorCode::Quota,
            Self::VersionMismatch { .. } => ErrorCode::VersionMismatch,
            Self::LockTimeout { .. } => ErrorCode::LockTimeout,
            Self::Cancelled => ErrorCode::Cancelled,
            Self::Storage(_) => ErrorCode::Storage,
            Self::Closed => ErrorCode::Closed,
            Self::SyncNotFound(_) => ErrorCode::SyncNotFound,
            Self::PendingChanges { .. } => ErrorCode::PendingChanges,
            Self::Unsupported(_) => ErrorCode::Unsupported,
        }
    }

    /// The HTTP status, for errors that came with one.
    pub fn status(&self) -> Option<u16> {
        match self {
            // 0: made here, not answered by a server.
            Self::Http { status, .. } => (*status != 0).then_some(*status),
            _ => None,
        }
    }

    /// Whether a retry may succeed: network errors, timeouts, 5xx and 429.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Network(_) | Self::Timeout(_) => true,
            Self::Http { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16) -> Error {
        Error::Http {
            code: ErrorCode::from_http(status, None),
            status,
            message: String::new(),
            details: JsValue::UNDEFINED,
            retry_after_ms: None,
        }
    }

    #[test]
    fn only_network_timeouts_5xx_and_429_are_transient() {
        assert!(Error::Network(String::new()).is_transient());
        assert!(Error::Timeout(1).is_transient());
        for s in [429, 500, 502, 503, 504, 599] {
            assert!(status(s).is_transient(), "{s}");
        }
        for s in [400, 401, 403, 404, 408, 409, 410, 422, 428] {
            assert!(!status(s).is_transient(), "{s}");
        }
        assert!(!Error::BadResponse(String::new()).is_transient());
    }
}
