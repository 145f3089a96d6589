//! Checks on names and field values that a collection knows about.

use chrono::{DateTime, FixedOffset};
use serde_json::{Map, Value};

use crate::error::ApiError;

/// Customer `status` values.
pub const CUSTOMER_STATUSES: [&str; 4] = ["lead", "prospect", "customer", "churned"];

/// The collection that gets double-booking checks.
pub const CALENDAR_EVENTS: &str = "calendar_events";

/// The collection the spreadsheet sync reads and writes.
pub const CUSTOMERS: &str = "customers";

/// Collections are any name matching `[a-z][a-z0-9_]{0,39}`; other names are
/// not collections at all, so they answer `404 not_found`.
///
/// # Errors
/// `404 not_found` for a name that cannot be a collection.
pub fn check_collection(name: &str) -> Result<(), ApiError> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if first_ok && rest_ok && name.len() <= 40 {
        Ok(())
    } else {
        Err(ApiError::not_found(format!("no collection named {name:?}")))
    }
}

/// Record ids chosen by clients: 1..=128 characters out of letters, digits and
/// `-_.:@`, so they are safe in paths, CSV cells and logs.
pub fn is_valid_record_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:@".contains(c))
}

/// Whether a string looks like an e-mail address (one `@`, something before
/// it, a dotted domain after it, no spaces). Deliberately loose.
pub fn looks_like_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(char::is_whitespace)
        && s.len() <= 254
}

/// Takes `fields` out of a request body: must be an object of scalar values.
/// `keep_nulls` is true for PATCH, where `null` clears a field.
///
/// # Errors
/// `422 invalid` listing every field whose value is an object or an array.
pub fn scalar_fields(
    value: Option<&Value>,
    keep_nulls: bool,
) -> Result<Map<String, Value>, ApiError> {
    let Some(value) = value else {
        return Err(ApiError::invalid_field(
            "fields",
            "required: an object of field values",
        ));
    };
    let Value::Object(map) = value else {
        return Err(ApiError::invalid_field(
            "fields",
            "must be an object of field values",
        ));
    };
    let mut errors = Map::new();
    let mut out = Map::new();
    for (k, v) in map {
        if k.is_empty() || k.len() > 100 {
            errors.insert(k.clone(), "field names have 1 to 100 characters".into());
            continue;
        }
        match v {
            Value::Object(_) | Value::Array(_) => {
                errors.insert(
                    k.clone(),
                    "must be a string, number, boolean or null".into(),
                );
            }
            Value::Null if !keep_nulls => {}
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(ApiError::invalid_fields(errors))
    }
}

/// Parses an RFC 3339 timestamp.
pub fn parse_time(v: Option<&Value>) -> Option<DateTime<FixedOffset>> {
    v.and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
}

/// Checks the fields a collection knows. `named` are the fields the request
/// sets (checked for customers, so an old bad value never blocks other edits);
/// `merged` is the record's fields after the change (checked for calendar
/// events, whose fields depend on each other).
///
/// # Errors
/// `422 invalid` with a message per bad field.
pub fn check_known_fields(
    collection: &str,
    named: &Map<String, Value>,
    merged: &Map<String, Value>,
) -> Result<(), ApiError> {
    let mut errors = Map::new();
    if collection == CUSTOMERS {
        customer_field_errors(named, &mut errors);
    } else if collection == CALENDAR_EVENTS {
        let start = parse_time(merged.get("start"));
        let end = parse_time(merged.get("end"));
        if start.is_none() {
            errors.insert("start".into(), "required: an RFC 3339 time".into());
        }
        if end.is_none() {
            errors.insert("end".into(), "required: an RFC 3339 time".into());
        }
        if let (Some(s), Some(e)) = (start, end) {
            if e <= s {
                errors.insert("end".into(), "must be after start".into());
            }
        }
        if !merged.get("resource").is_some_and(Value::is_string) {
            errors.insert("resource".into(), "required: a string".into());
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid_fields(errors))
    }
}

/// Adds a message to `errors` for each bad customer field among `fields`.
pub fn customer_field_errors(fields: &Map<String, Value>, errors: &mut Map<String, Value>) {
    match fields.get("email") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if looks_like_email(s) => {}
        Some(_) => {
            errors.insert("email".into(), "must look like an e-mail address".into());
        }
    }
    match fields.get("status") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if CUSTOMER_STATUSES.contains(&s.as_str()) => {}
        Some(_) => {
            errors.insert(
                "status".into(),
                "must be one of lead, prospect, customer, churned".into(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collection_names() {
        assert!(check_collection("customers").is_ok());
        assert!(check_collection("calendar_events").is_ok());
        assert!(check_collection("Customers").is_err());
        assert!(check_collection("1abc").is_err());
        assert!(check_collection("").is_err());
        assert!(check_collection(&"a".repeat(41)).is_err());
    }

    #[test]
    fn emails() {
        assert!(looks_like_email("a@b.co"));
        assert!(!looks_like_email("a@b"));
        assert!(!looks_like_email("@b.co"));
        assert!(!looks_like_email("a b@c.de"));
        assert!(!looks_like_email("not-an-email"));
    }
}
