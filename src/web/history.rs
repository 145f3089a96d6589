//! `crm.history(collection, id)`: a record's change history read from the
//! server. Not kept locally: it is only asked for when a person looks.

use wasm_bindgen::JsValue;

use crate::core::history::{newest_first, HistoryOptions, HistoryPage};
use crate::error::Error;
use crate::web::client::{check_collection, encode, Client};
use crate::web::js::{from_server, to_js};

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
    let path = format!("/{collection}/{}/history?limit={limit}", encode(id));
    let page: HistoryPage = from_server(client.read(&path).await?)?;
    to_js(&newest_first(page.items))
}
