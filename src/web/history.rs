//! `crm.history(collection, id)`: a record's change history read from the
//! server. Not kept locally: it is only asked for when a person looks.

use wasm_bindgen::JsValue;

use crate::core::engine::ReadTarget;
use crate::core::history::HistoryOptions;
use crate::core::record::RecordKey;
use crate::error::Error;
use crate::web::client::{check_collection, Client};

/// Who changed which field of `collection`/`id` from what to what, and
/// when: the newest entries first, as JS values.
///
/// # Errors
/// `invalid` for a bad collection name, an empty id or a bad limit;
/// `offline` while the server cannot be reached; `not_found` for a record
/// the server never had; `bad_response` for an answer not of the
/// contract's shape; `network`, `timeout`, `server` after retries.
pub async fn record_history(
    client: &Client,
    collection: &str,
    id: &str,
    options: &HistoryOptions,
) -> Result<JsValue, Error> {
    check_collection(collection)?;
    if id.is_empty() {
        return Err(Error::Invalid("history needs a record id".into()));
    }
    let limit = options.limit()?;
    if !client.is_online() {
        return Err(Error::Offline);
    }
    let key = RecordKey::new(collection, id);
    client
        .read_from_server(ReadTarget::History { key, limit })
        .await
}
