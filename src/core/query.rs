//! Local queries over a collection as `view` shows it: filter by field
//! values, search text in any field, sort by one field, and page
//! (`crm.query(collection, { where, search, orderBy, limit, offset })`).
//!
//! Pure: the caller hands in the records and gets back which of them, in
//! which order, and how many matched in all.

use std::cmp::Ordering;

use crate::core::record::{FieldValue, Record};
use crate::core::sort::sort_by;

/// What `query` asks for, already checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Query {
    /// Field name and the values it may have (one: equality; several: one
    /// of them). All conditions must hold.
    pub filters: Vec<(String, Vec<FieldValue>)>,
    /// Lower-cased text that must appear in some field (or the id).
    pub search: Option<String>,
    /// The field to sort by, and whether descending; by id without one.
    pub order_by: Option<(String, bool)>,
    /// How many to skip.
    pub offset: usize,
    /// At most this many (all without one).
    pub limit: Option<usize>,
}

/// What a query found: the indices of the matching records in the order
/// asked for (one page of them), and how many matched in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Indices into the records given, this page only.
    pub page: Vec<usize>,
    /// Matches before paging.
    pub total: usize,
}

/// The value a query sees for `name`: a field, or the record's own `id`,
/// `version`, `updatedAt` or `updatedBy`.
fn value_of<'a>(record: &'a Record, name: &str) -> Option<FieldValueRef<'a>> {
    match name {
        "id" => Some(FieldValueRef::Text(&record.id)),
        "version" => Some(FieldValueRef::Number(record.version as f64)),
        "updatedAt" => Some(FieldValueRef::Text(&record.updated_at)),
        "updatedBy" => Some(FieldValueRef::Text(&record.updated_by)),
        _ => record.fields.get(name).map(FieldValueRef::of),
    }
}

/// A field value borrowed, for comparing without copies.
#[derive(Debug, Clone, Copy)]
enum FieldValueRef<'a> {
    Null,
    Bool(bool),
    Number(f64),
    Text(&'a str),
}

impl<'a> FieldValueRef<'a> {
    fn of(value: &'a FieldValue) -> Self {
        match value {
            FieldValue::Null => Self::Null,
            FieldValue::Bool(b) => Self::Bool(*b),
            FieldValue::Number(n) => Self::Number(*n),
            FieldValue::Text(t) => Self::Text(t),
        }
    }

    fn equals(self, wanted: &FieldValue) -> bool {
        match (self, wanted) {
            (Self::Null, FieldValue::Null) => true,
            (Self::Bool(a), FieldValue::Bool(b)) => a == *b,
            (Self::Number(a), FieldValue::Number(b)) => a == *b,
            (Self::Text(a), FieldValue::Text(b)) => a == b,
            _ => false,
        }
    }
}

/// Whether `haystack` contains `needle_lower` (already lower case) in any
/// case. ASCII text, nearly all of a CRM's, is compared in place; other
/// text is lower-cased first.
fn contains_folded(haystack: &str, needle_lower: &str) -> bool {
    if haystack.is_ascii() && needle_lower.is_ascii() {
        let (h, n) = (haystack.as_bytes(), needle_lower.as_bytes());
        return n.is_empty()
            || h.windows(n.len())
                .any(|w| w.iter().zip(n).all(|(a, b)| a.to_ascii_lowercase() == *b));
    }
    haystack.to_lowercase().contains(needle_lower)
}

/// A value as it sorts: absent and null first, then booleans, numbers, and
/// texts without regard to case (ties by exact text).
#[derive(Debug, Clone, PartialEq, PartialOrd)]
enum SortKey {
    Null,
    Bool(bool),
    Number(f64),
    Text(String, String),
}

impl SortKey {
    fn of(value: Option<FieldValueRef<'_>>) -> Self {
        match value {
            None | Some(FieldValueRef::Null) => Self::Null,
            Some(FieldValueRef::Bool(b)) => Self::Bool(b),
            Some(FieldValueRef::Number(n)) => Self::Number(n),
            Some(FieldValueRef::Text(t)) => Self::Text(t.to_lowercase(), t.to_owned()),
        }
    }

    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Self::Number(a), Self::Number(b)) => a.total_cmp(b),
            _ => self.partial_cmp(other).unwrap_or(Ordering::Equal),
        }
    }
}

fn matches_search(record: &Record, needle: &str) -> bool {
    if needle.is_empty() || contains_folded(&record.id, needle) {
        return true;
    }
    record.fields.values().any(|v| match v {
        FieldValue::Text(t) => contains_folded(t, needle),
        // Whole numbers as digits (a phone number or an amount typed in);
        // fractions are not searched as text: Rust's float formatting alone
        // would add 14 KB to the module.
        FieldValue::Number(n) if n.fract() == 0.0 && n.abs() < 9.0e15 => {
            (*n as i64).to_string().contains(needle)
        }
        FieldValue::Number(_) => false,
        FieldValue::Bool(b) => (if *b { "true" } else { "false" }) == needle,
        FieldValue::Null => false,
    })
}

impl Query {
    /// Whether `record` passes the filters and the search.
    pub fn matches(&self, record: &Record) -> bool {
        self.filters.iter().all(|(name, allowed)| {
            let value = value_of(record, name);
            allowed.iter().any(|wanted| match value {
                Some(v) => v.equals(wanted),
                None => matches!(wanted, FieldValue::Null),
            })
        }) && self
            .search
            .as_deref()
            .is_none_or(|needle| matches_search(record, needle))
    }

    /// Runs the query over `records` (in id order, as a collection is kept).
    pub fn run(&self, records: &[&Record]) -> Found {
        let mut hits: Vec<usize> = (0..records.len())
            .filter(|&i| self.matches(records[i]))
            .collect();
        if let Some((field, descending)) = &self.order_by {
            // Each record's sort key once, not once per comparison.
            let mut keyed: Vec<(SortKey, usize)> = hits
                .iter()
                .map(|&i| (SortKey::of(value_of(records[i], field)), i))
                .collect();
            sort_by(&mut keyed, |(ka, a), (kb, b)| {
                let order = ka.cmp(kb);
                // Ties keep id order either way, so paging is stable.
                let order = if *descending { order.reverse() } else { order };
                order.then_with(|| a.cmp(b))
            });
            hits = keyed.into_iter().map(|(_, i)| i).collect();
        }
        let total = hits.len();
        let page = hits
            .into_iter()
            .skip(self.offset)
            .take(self.limit.unwrap_or(usize::MAX))
            .collect();
        Found { page, total }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::record::Fields;

    fn record(id: &str, fields: &[(&str, FieldValue)]) -> Record {
        let mut f = Fields::new();
        for (k, v) in fields {
            f.insert((*k).to_owned(), v.clone());
        }
        Record {
            id: id.into(),
            version: 1,
            updated_at: "2026-12-04T00:00:00Z".into(),
            updated_by: "alice".into(),
            fields: f,
            comments: Vec::new(),
        }
    }

    fn text(s: &str) -> FieldValue {
        FieldValue::Text(s.into())
    }

    fn people() -> Vec<Record> {
        vec![
            record(
                "c-1",
                &[
                    ("name", text("Acme")),
                    ("status", text("lead")),
                    ("owner", text("alice")),
                    ("size", FieldValue::Number(50.0)),
                ],
            ),
            record(
                "c-2",
                &[
                    ("name", text("beta")),
                    ("status", text("customer")),
                    ("owner", text("bob")),
                    ("size", FieldValue::Number(5.0)),
                ],
            ),
            record(
                "c-3",
                &[
                    ("name", text("Gamma Lyon")),
                    ("status", text("lead")),
                    ("owner", text("bob")),
                ],
            ),
            record(
                "c-4",
                &[
                    ("name", text("delta")),
                    ("status", text("lead")),
                    ("owner", text("carol")),
                    ("city", text("lyon")),
                ],
            ),
        ]
    }

    fn ids(found: &Found, records: &[Record]) -> Vec<String> {
        found.page.iter().map(|&i| records[i].id.clone()).collect()
    }

    #[test]
    fn where_is_equality_or_one_of_a_list_and_all_must_hold() {
        let records = people();
        let refs: Vec<&Record> = records.iter().collect();
        let q = Query {
            filters: vec![
                ("status".into(), vec![text("lead")]),
                ("owner".into(), vec![text("alice"), text("bob")]),
            ],
            ..Query::default()
        };
        let found = q.run(&refs);
        assert_eq!(ids(&found, &records), ["c-1", "c-3"]);
        assert_eq!(found.total, 2);
        // A missing field matches only null.
        let q = Query {
            filters: vec![("city".into(), vec![FieldValue::Null])],
            ..Query::default()
        };
        assert_eq!(ids(&q.run(&refs), &records), ["c-1", "c-2", "c-3"]);
    }

    #[test]
    fn search_is_case_insensitive_in_any_field() {
        let records = people();
        let refs: Vec<&Record> = records.iter().collect();
        let q = Query {
            search: Some("lyon".into()),
            ..Query::default()
        };
        assert_eq!(ids(&q.run(&refs), &records), ["c-3", "c-4"]);
    }

    #[test]
    fn order_by_one_field_with_missing_values_first_and_case_folded_text() {
        let records = people();
        let refs: Vec<&Record> = records.iter().collect();
        let by_name = Query {
            order_by: Some(("name".into(), false)),
            ..Query::default()
        };
        assert_eq!(
            ids(&by_name.run(&refs), &records),
            ["c-1", "c-2", "c-4", "c-3"]
        );
        let by_size_desc = Query {
            order_by: Some(("size".into(), true)),
            ..Query::default()
        };
        assert_eq!(
            ids(&by_size_desc.run(&refs), &records),
            ["c-1", "c-2", "c-3", "c-4"]
        );
    }

    #[test]
    fn paging_counts_every_match() {
        let records = people();
        let refs: Vec<&Record> = records.iter().collect();
        let q = Query {
            order_by: Some(("id".into(), true)),
            offset: 1,
            limit: Some(2),
            ..Query::default()
        };
        let found = q.run(&refs);
        assert_eq!(ids(&found, &records), ["c-3", "c-2"]);
        assert_eq!(found.total, 4);
    }
}
