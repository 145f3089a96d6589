//! What an app passes to `CrmSync.login`, `CrmSync.open` and `crm.query`,
//! read and checked.

use serde::Deserialize;
use tsify::Tsify;
use wasm_bindgen::prelude::*;

use crate::core::debounce::DebounceOptions;
use crate::core::merge::{MergeRules, OnConflict};
use crate::core::retry::RetryPolicy;
use crate::error::Error;

use crate::api::tabs::TabLocksMode;
use crate::core::progress::SyncConfig;
use crate::web::client::Config;
use crate::web::js::{from_app, read_from_app};

/// Options shared by `login` and `open`; every one is optional (docs/guide/getting-started.md,
/// "The client", gives the defaults).
#[derive(Debug, Clone, Default, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct CrmOptions {
    /// Save calls for one record within this many ms become one request (300).
    #[serde(default)]
    #[tsify(optional)]
    pub debounce_ms: Option<u32>,
    /// Upper bound of the debounce delay while calls keep coming (2000).
    #[serde(default)]
    #[tsify(optional)]
    pub max_wait_ms: Option<u32>,
    /// Retries of transient failures.
    #[serde(default)]
    #[tsify(optional, type = "RetryOptions")]
    pub retry: Option<RetryOptions>,
    /// Abort a request after this many ms (15000).
    #[serde(default)]
    #[tsify(optional)]
    pub request_timeout_ms: Option<u32>,
    /// How a 409 is handled ("merge").
    #[serde(default)]
    #[tsify(optional, type = "ConflictPolicy")]
    pub on_conflict: Option<String>,
    /// Sync job polling, total timeout and cooldown.
    #[serde(default)]
    #[tsify(optional, type = "SyncOptions")]
    pub sync: Option<SyncOptions>,
    /// How tabs coordinate: Web Locks where present (`"auto"`), or the
    /// BroadcastChannel protocol (`"broadcast"`, also for tests).
    #[serde(default)]
    #[tsify(optional, type = "TabLocksMode")]
    pub tabs: Option<String>,
}

/// `retry` option.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryOptions {
    /// Attempts in all, the first included (4).
    pub attempts: Option<u32>,
    /// First backoff delay (500).
    pub base_delay_ms: Option<u64>,
    /// Largest backoff delay (8000).
    pub max_delay_ms: Option<u64>,
}

/// `sync` option.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncOptions {
    /// Poll interval (1000).
    pub poll_ms: Option<u64>,
    /// Total time a run may take (120000).
    pub timeout_ms: Option<u64>,
    /// Presses within this time of a start are folded (3000).
    pub cooldown_ms: Option<u64>,
}

/// `CrmSync.login` arguments. The derive gives the TypeScript type; they
/// are read by `LoginOptions::read`, in two plain steps, because serde's
/// `flatten` buffers every value first (code size and time).
#[derive(Debug, Clone, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct LoginOptions {
    /// Where the API lives, e.g. `/api` or `http://127.0.0.1:8080/api`.
    pub base_url: String,
    /// The user name.
    pub username: String,
    /// The password.
    pub password: String,
    /// The other options.
    #[serde(flatten)]
    pub options: CrmOptions,
}

/// `CrmSync.open` arguments: a token the app already has. Read by
/// `OpenOptions::read`.
#[derive(Debug, Clone, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct OpenOptions {
    /// Where the API lives.
    pub base_url: String,
    /// A bearer token from an earlier `login`.
    pub token: String,
    /// The user the token belongs to, if the app knows it.
    #[serde(default)]
    #[tsify(optional)]
    pub user: Option<String>,
    /// The other options.
    #[serde(flatten)]
    pub options: CrmOptions,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LoginFields {
    base_url: String,
    username: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OpenFields {
    base_url: String,
    token: String,
    #[serde(default)]
    user: Option<String>,
}

/// Reads an app's argument as its own fields `F` and the shared options,
/// both from the same object.
fn with_options<F: serde::de::DeserializeOwned>(value: JsValue) -> Result<(F, CrmOptions), Error> {
    Ok((from_app(value.clone())?, from_app(value)?))
}

impl LoginOptions {
    pub(super) fn read(value: JsValue) -> Result<Self, Error> {
        let (own, options) = with_options::<LoginFields>(value)?;
        Ok(Self {
            base_url: own.base_url,
            username: own.username,
            password: own.password,
            options,
        })
    }
}

impl OpenOptions {
    pub(super) fn read(value: JsValue) -> Result<Self, Error> {
        let (own, options) = with_options::<OpenFields>(value)?;
        Ok(Self {
            base_url: own.base_url,
            token: own.token,
            user: own.user,
            options,
        })
    }
}

impl CrmOptions {
    pub(super) fn config(&self, base_url: &str) -> Result<Config, Error> {
        let mut retry = RetryPolicy::default();
        if let Some(r) = &self.retry {
            if let Some(a) = r.attempts {
                // docs/guide/errors.md ("Retries") counts attempts in all; the policy counts retries.
                retry.attempts = a.saturating_sub(1);
            }
            if let Some(b) = r.base_delay_ms {
                retry.base_delay_ms = b;
            }
            if let Some(m) = r.max_delay_ms {
                retry.max_delay_ms = m;
            }
        }
        let on_conflict = match self.on_conflict.as_deref() {
            None | Some("merge") => OnConflict::Merge,
            Some("manual") => OnConflict::Manual,
            Some("theirs") => OnConflict::Theirs,
            Some("mine") => OnConflict::Mine,
            Some("latest") => OnConflict::Latest,
            Some(other) => {
                return Err(Error::Invalid(format!(
                    "onConflict must be merge, manual, theirs, mine or latest, not {other:?}"
                )))
            }
        };
        let defaults = DebounceOptions::default();
        Ok(Config {
            base_url: base_url.trim_end_matches('/').to_owned(),
            timeout_ms: self.request_timeout_ms.unwrap_or(15_000),
            retry,
            rules: MergeRules {
                on_conflict,
                // Thirty people saving one record at once: each round one of
                // them wins, so a loser may need many rounds of
                // one-sided merges before its turn.
                max_rounds: 64,
            },
            debounce: DebounceOptions {
                wait_ms: self.debounce_ms.map_or(defaults.wait_ms, u64::from),
                max_wait_ms: self.max_wait_ms.map(u64::from).or(defaults.max_wait_ms),
                leading: false,
            },
        })
    }
}

impl CrmOptions {
    pub(super) fn sync_config(&self) -> SyncConfig {
        let mut c = SyncConfig::default();
        if let Some(s) = &self.sync {
            if let Some(v) = s.poll_ms {
                c.poll_ms = v;
            }
            if let Some(v) = s.timeout_ms {
                c.timeout_ms = v;
            }
            if let Some(v) = s.cooldown_ms {
                c.cooldown_ms = v;
            }
        }
        c
    }

    pub(super) fn tabs_mode(&self) -> Result<TabLocksMode, Error> {
        match self.tabs.as_deref() {
            None | Some("auto") => Ok(TabLocksMode::Auto),
            Some("web-locks") => Ok(TabLocksMode::WebLocks),
            Some("broadcast") => Ok(TabLocksMode::Broadcast),
            Some(other) => Err(Error::Invalid(format!(
                "tabs must be auto, web-locks or broadcast, not {other:?}"
            ))),
        }
    }
}

/// Reads `crm.query`'s options; anything else than documented is `invalid`.
pub(super) fn read_query(options: &JsValue) -> Result<crate::core::query::Query, Error> {
    use crate::core::query::Query;
    use crate::core::record::FieldValue;
    use crate::web::js::get;
    let mut query = Query::default();
    if options.is_undefined() || options.is_null() {
        return Ok(query);
    }
    if !options.is_object() {
        return Err(Error::Invalid("query options must be an object".into()));
    }
    let value = |v: JsValue, field: &str| -> Result<FieldValue, Error> {
        read_from_app::<FieldValue>(&v).map_err(|_| {
            Error::Invalid(format!(
                "where.{field}: a value (text, number, true/false, null) or a list of them"
            ))
        })
    };
    let filters = get(options, "where");
    if !filters.is_undefined() {
        let obj: &js_sys::Object = filters
            .dyn_ref()
            .filter(|_| !js_sys::Array::is_array(&filters))
            .ok_or_else(|| Error::Invalid("where must be an object".into()))?;
        for entry in js_sys::Object::entries(obj).iter() {
            let pair = js_sys::Array::from(&entry);
            let field = pair.get(0).as_string().unwrap_or_default();
            let wanted = pair.get(1);
            let allowed = if js_sys::Array::is_array(&wanted) {
                js_sys::Array::from(&wanted)
                    .iter()
                    .map(|v| value(v, &field))
                    .collect::<Result<Vec<_>, _>>()?
            } else {
                vec![value(wanted, &field)?]
            };
            query.filters.push((field, allowed));
        }
    }
    let search = get(options, "search");
    if !search.is_undefined() {
        let text = search
            .as_string()
            .ok_or_else(|| Error::Invalid("search must be a text".into()))?;
        query.search = Some(crate::core::query::lower_case(&text));
    }
    let order = get(options, "orderBy");
    if !order.is_undefined() {
        let bad = || Error::Invalid("orderBy must be [field, \"asc\" | \"desc\"]".into());
        let pair = order.dyn_ref::<js_sys::Array>().ok_or_else(bad)?;
        let field = pair.get(0).as_string().ok_or_else(bad)?;
        let descending = match pair.get(1).as_string().as_deref() {
            None if pair.length() == 1 => false,
            Some("asc") if pair.length() == 2 => false,
            Some("desc") if pair.length() == 2 => true,
            _ => return Err(bad()),
        };
        query.order_by = Some((field, descending));
    }
    let count = |name: &str| -> Result<Option<usize>, Error> {
        let v = get(options, name);
        if v.is_undefined() {
            return Ok(None);
        }
        match v.as_f64() {
            Some(n) if n.fract() == 0.0 && (0.0..=9_007_199_254_740_991.0).contains(&n) => {
                Ok(Some(n as usize))
            }
            _ => Err(Error::Invalid(format!(
                "{name} must be a whole number, 0 or more"
            ))),
        }
    };
    query.limit = count("limit")?;
    query.offset = count("offset")?.unwrap_or(0);
    Ok(query)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_attempts_count_tries_in_all_with_one_default() {
        let default = CrmOptions::default().config("/api").unwrap().retry;
        let explicit = CrmOptions {
            retry: Some(RetryOptions {
                attempts: Some(4),
                ..RetryOptions::default()
            }),
            ..CrmOptions::default()
        }
        .config("/api")
        .unwrap()
        .retry;
        assert_eq!(default, explicit);
        // Four tries in all: the first and three retries.
        assert_eq!(default.attempts, 3);
    }
}
