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

/// What a query reads of a record: a [`Record`], or a record read where it
/// is kept packed without unpacking the rest of it
/// ([`crate::core::shelf`]).
pub trait RecordRead {
    /// The record's id.
    fn id(&self) -> &str;
    /// The record's version.
    fn version(&self) -> u64;
    /// `updatedAt`.
    fn updated_at(&self) -> &str;
    /// `updatedBy`.
    fn updated_by(&self) -> &str;
    /// The field `name`, if the record has it.
    fn field(&self, name: &str) -> Option<FieldValueRef<'_>>;
    /// Whether `found` holds for some field's value.
    fn any_field(&self, found: &mut dyn FnMut(FieldValueRef<'_>) -> bool) -> bool;
}

impl RecordRead for Record {
    fn id(&self) -> &str {
        &self.id
    }

    fn version(&self) -> u64 {
        self.version
    }

    fn updated_at(&self) -> &str {
        &self.updated_at
    }

    fn updated_by(&self) -> &str {
        &self.updated_by
    }

    fn field(&self, name: &str) -> Option<FieldValueRef<'_>> {
        self.fields.get(name).map(FieldValueRef::of)
    }

    fn any_field(&self, found: &mut dyn FnMut(FieldValueRef<'_>) -> bool) -> bool {
        self.fields.values().any(|v| found(FieldValueRef::of(v)))
    }
}

/// The value a query sees for `name`: a field, or the record's own `id`,
/// `version`, `updatedAt` or `updatedBy`.
fn value_of<'a, R: RecordRead + ?Sized>(record: &'a R, name: &str) -> Option<FieldValueRef<'a>> {
    match name {
        "id" => Some(FieldValueRef::Text(record.id())),
        "version" => Some(FieldValueRef::Number(record.version() as f64)),
        "updatedAt" => Some(FieldValueRef::Text(record.updated_at())),
        "updatedBy" => Some(FieldValueRef::Text(record.updated_by())),
        _ => record.field(name),
    }
}

/// A field value borrowed, for comparing without copies.
#[derive(Debug, Clone, Copy)]
#[allow(missing_docs)]
pub enum FieldValueRef<'a> {
    Null,
    Bool(bool),
    Number(f64),
    Text(&'a str),
}

impl<'a> FieldValueRef<'a> {
    /// The borrowed form of `value`.
    pub fn of(value: &'a FieldValue) -> Self {
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
    lower_case(haystack).contains(needle_lower)
}

/// `text` in lower case by Unicode's full mappings (`"ÄRGER"` → `"ärger"`,
/// a final `Σ` → `ς`), as [`str::to_lowercase`] gives it.
///
/// In the browser the page's own `String.prototype.toLowerCase` does it:
/// Rust's would bring its Unicode case tables into the module (11.7 KB of
/// wasm data and 4 KB of code: 7.1 KB of the gzipped module) for what the browser
/// already holds. The two follow the same Unicode rules; only text that
/// is not all ASCII gets here from the searches and sorts below.
pub fn lower_case(text: &str) -> String {
    #[cfg(target_arch = "wasm32")]
    {
        js_sys::JsString::from(text).to_lower_case().into()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        text.to_lowercase()
    }
}

/// A value as it sorts: absent and null first, then booleans, numbers, and
/// texts without regard to case (ties by exact text).
#[derive(Debug, Clone, PartialEq)]
enum SortKey {
    Null,
    Bool(bool),
    Number(f64),
    /// The text folded to lower case, and the exact text only where it
    /// differs (most texts are stored once).
    Text(Box<str>, Option<Box<str>>),
}

impl SortKey {
    fn of(value: Option<FieldValueRef<'_>>) -> Self {
        match value {
            None | Some(FieldValueRef::Null) => Self::Null,
            Some(FieldValueRef::Bool(b)) => Self::Bool(b),
            Some(FieldValueRef::Number(n)) => Self::Number(n),
            Some(FieldValueRef::Text(t)) => {
                let folded = if t.is_ascii() {
                    t.to_ascii_lowercase()
                } else {
                    lower_case(t)
                };
                let exact = (folded != t).then(|| Box::from(t));
                Self::Text(folded.into_boxed_str(), exact)
            }
        }
    }

    fn rank(&self) -> u8 {
        match self {
            Self::Null => 0,
            Self::Bool(_) => 1,
            Self::Number(_) => 2,
            Self::Text(..) => 3,
        }
    }

    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Self::Bool(a), Self::Bool(b)) => a.cmp(b),
            (Self::Number(a), Self::Number(b)) => a.total_cmp(b),
            (Self::Text(fa, ea), Self::Text(fb, eb)) => fa.cmp(fb).then_with(|| {
                let ea = ea.as_deref().unwrap_or(fa);
                let eb = eb.as_deref().unwrap_or(fb);
                ea.cmp(eb)
            }),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

/// One matching record in a [`Matches`]: its sort key and id.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    key: SortKey,
    id: Box<str>,
}

/// A query's matches in the order asked for, kept between runs: a change
/// of one record is laid in with [`Matches::update`] (a binary search and
/// one move of the rows after it), not by sorting everything again.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Matches {
    rows: Vec<Row>,
}

impl Matches {
    /// The matches of `query` among `records` (any order).
    pub fn build<'a>(query: &Query, records: impl IntoIterator<Item = &'a Record>) -> Self {
        let mut matches = Self::default();
        for record in records {
            matches.add(query, record);
        }
        matches.sort(query);
        matches
    }

    /// Adds `record` if it matches, unordered: [`Matches::sort`] once all
    /// are added.
    pub fn add(&mut self, query: &Query, record: &(impl RecordRead + ?Sized)) {
        if query.matches(record) {
            self.rows.push(query.row(record));
        }
    }

    /// Puts the added matches in order.
    pub fn sort(&mut self, query: &Query) {
        sort_by(&mut self.rows, |a, b| query.order(a, b));
    }

    /// Lays in the record `id` as it is now (`None`: gone or not shown).
    /// Returns whether the matches changed (the record was or is one).
    pub fn update(&mut self, query: &Query, id: &str, record: Option<&Record>) -> bool {
        let was = self.rows.iter().position(|row| &*row.id == id);
        if let Some(at) = was {
            self.rows.remove(at);
        }
        let Some(record) = record.filter(|r| query.matches(*r)) else {
            return was.is_some();
        };
        let row = query.row(record);
        let at = self
            .rows
            .partition_point(|other| query.order(other, &row) == Ordering::Less);
        self.rows.insert(at, row);
        true
    }

    /// How many records match.
    pub fn total(&self) -> usize {
        self.rows.len()
    }

    /// The ids of one page: `offset` skipped, at most `limit`.
    pub fn page(&self, offset: usize, limit: Option<usize>) -> impl Iterator<Item = &str> {
        self.rows
            .iter()
            .skip(offset)
            .take(limit.unwrap_or(usize::MAX))
            .map(|row| &*row.id)
    }
}

fn matches_search<R: RecordRead + ?Sized>(record: &R, needle: &str) -> bool {
    if needle.is_empty() || contains_folded(record.id(), needle) {
        return true;
    }
    record.any_field(&mut |v| match v {
        FieldValueRef::Text(t) => contains_folded(t, needle),
        // Whole numbers as digits (a phone number or an amount typed in);
        // fractions are not searched as text: Rust's float formatting alone
        // would add 14 KB to the module.
        FieldValueRef::Number(n) if n.fract() == 0.0 && n.abs() < 9.0e15 => {
            (n as i64).to_string().contains(needle)
        }
        FieldValueRef::Number(_) => false,
        FieldValueRef::Bool(b) => (if b { "true" } else { "false" }) == needle,
        FieldValueRef::Null => false,
    })
}

impl Query {
    /// The same query without paging: what its [`Matches`] depend on.
    pub fn unpaged(&self) -> Self {
        Self {
            offset: 0,
            limit: None,
            ..self.clone()
        }
    }

    fn row<R: RecordRead + ?Sized>(&self, record: &R) -> Row {
        let key = match &self.order_by {
            Some((field, _)) => SortKey::of(value_of(record, field)),
            None => SortKey::Null,
        };
        Row {
            key,
            id: record.id().into(),
        }
    }

    /// The order of two matches: by the sort key (reversed when
    /// descending), ties in id order either way so paging is stable.
    fn order(&self, a: &Row, b: &Row) -> Ordering {
        let by_key = a.key.cmp(&b.key);
        let by_key = match self.order_by {
            Some((_, true)) => by_key.reverse(),
            _ => by_key,
        };
        by_key.then_with(|| a.id.cmp(&b.id))
    }

    /// Whether `record` passes the filters and the search.
    pub fn matches<R: RecordRead + ?Sized>(&self, record: &R) -> bool {
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
        let mut hits: Vec<(Row, usize)> = (0..records.len())
            .filter(|&i| self.matches(records[i]))
            .map(|i| (self.row(records[i]), i))
            .collect();
        sort_by(&mut hits, |(a, _), (b, _)| self.order(a, b));
        let total = hits.len();
        let page = hits
            .into_iter()
            .skip(self.offset)
            .take(self.limit.unwrap_or(usize::MAX))
            .map(|(_, i)| i)
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

    fn page_ids(m: &Matches, q: &Query) -> Vec<String> {
        m.page(q.offset, q.limit).map(str::to_owned).collect()
    }

    fn run_ids(q: &Query, records: &[Record]) -> (Vec<String>, usize) {
        let refs: Vec<&Record> = records.iter().collect();
        let found = q.run(&refs);
        (ids(&found, records), found.total)
    }

    #[test]
    fn kept_matches_patched_one_record_at_a_time_equal_a_fresh_run() {
        let mut base = people();
        for n in 5..60 {
            let name = format!("{}name {n}", if n % 3 == 0 { "A" } else { "b" });
            let status = if n % 2 == 0 { "lead" } else { "customer" };
            base.push(record(
                &format!("c-{n:02}"),
                &[("name", text(&name)), ("status", text(status))],
            ));
        }
        for q in [
            Query {
                filters: vec![("status".into(), vec![text("lead")])],
                order_by: Some(("name".into(), false)),
                offset: 2,
                limit: Some(7),
                ..Query::default()
            },
            Query {
                search: Some("a".into()),
                order_by: Some(("name".into(), true)),
                limit: Some(10),
                ..Query::default()
            },
            Query::default(),
        ] {
            let mut records = base.clone();
            let mut kept = Matches::build(&q, &records);
            assert_eq!((page_ids(&kept, &q), kept.total()), run_ids(&q, &records));
            // A record changes its sort key, one stops matching, one starts,
            // one is deleted, one is created: each laid in alone.
            records[6].fields.insert("name".into(), text("aaa first"));
            assert!(
                kept.update(&q, &records[6].id.clone(), Some(&records[6]))
                    || !q.matches(&records[6])
            );
            records[7].fields.insert("status".into(), text("churned"));
            kept.update(&q, &records[7].id.clone(), Some(&records[7]));
            records[9].fields.insert("status".into(), text("lead"));
            kept.update(&q, &records[9].id.clone(), Some(&records[9]));
            let gone = records.remove(10);
            kept.update(&q, &gone.id, None);
            records.push(record(
                "c-99",
                &[("name", text("Zed")), ("status", text("lead"))],
            ));
            kept.update(&q, "c-99", records.last());
            assert_eq!(
                (page_ids(&kept, &q), kept.total()),
                run_ids(&q, &records),
                "{q:?}"
            );
            assert_eq!(kept, Matches::build(&q, &records));
        }
    }

    #[test]
    fn a_change_outside_the_matches_leaves_them_alone() {
        let records = people();
        let q = Query {
            filters: vec![("status".into(), vec![text("customer")])],
            ..Query::default()
        };
        let mut kept = Matches::build(&q, &records);
        let mut other = records[0].clone();
        other.fields.insert("city".into(), text("Paris"));
        assert!(!kept.update(&q, "c-1", Some(&other)));
        assert!(!kept.update(&q, "c-3", None));
        let mut covered = records[1].clone();
        covered.fields.insert("city".into(), text("Paris"));
        assert!(kept.update(&q, "c-2", Some(&covered)));
        assert_eq!(kept.total(), 1);
    }
}
